#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/t-read-flush.sh: read_kafka_ts FlushBeforeCommit (docs/read_kafka_ts.md "Caching
# writers", kts_consumer.h 11) against a kill -9 of the aggregator. REAL collectd, the suite's
# REAL Kafka broker, stock rrdtool plugin with CacheTimeout 3600, stock write_graphite → REAL
# carbon-cache (tests/lib/carbon.sh). Grown from bench/chain-kill. Each phase: 60 gauge points
# (10 s apart) → Kafka → read_kafka_ts → rrdtool, write_graphite, csv; every value passed the
# writers (csv rows); 3 s later (30 auto-commit intervals) kill -9; restart; wait (bounded) for
# the RRD to hold 59 values (the first value only creates the file, t-rrd-fetch.sh); clean stop.
#   1-4  control, without FlushBeforeCommit: the offsets were committed while the values sat in
#        rrdtool's cache: after the kill nothing is redelivered and the RRD holds fewer than 59
#        (docs: 0 of 59); this proves the phase below can see a loss
#   5-9  FlushBeforeCommit "rrdtool" + "write_graphite/carbon", CommitInterval 1, with
#        DedupStateFile: every value in the RRD and in whisper after kill -9 and a restart
#   10-13 the same with the kill at once after the last value passed the writers (values still
#        cached and unflushed: redelivered, partly skipped by the watermarks)
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
e2e_plan 13
# shellcheck source=tests/lib/carbon.sh
. "$SRCDIR/tests/lib/carbon.sh"
RUN=rktf-$$-$(date +%s)
W=$(collectd_dir work)
N=60
T0=$(( ($(date +%s) - 600 - 10 * N) / 10 * 10 )) # whisper keeps the last day
python3 - "$T0" "$N" >"$W/msgs.jsonl" <<'EOF'
import json, sys
t0, n = int(sys.argv[1]), int(sys.argv[2])
for k in range(n):
    print(json.dumps({"v": 1, "host": "k", "plugin": "sensor", "plugin_instance": "s1",
                      "type": "gauge", "type_instance": "", "time": t0 + 10 * k, "interval": 10,
                      "ds": [{"name": "value", "type": "gauge", "value": 50 + k % 7}]}))
EOF
G="$COLLECTD_TMP/carbon"
carbon_start "$G" 10 || diag "carbon-cache did not start"

# phase NAME WAIT EXTRA: writes $A/collectd.conf for one aggregator (own topic, group, RRD dir and
# graphite prefix) with EXTRA lines in the read_kafka_ts block, runs the kill -9 scenario and
# sets ROWS (csv rows before the kill), KILLED, STOP_ST, STORED, WSP, REDELIVERED. WAIT: seconds
# between the last value passing the writers and the kill.
phase() {
    local name=$1 wait=$2 extra=$3
    kcat -P -b "$B" -t "$RUN-$name" -p 0 -X "$KAFKA_KCAT_ORDER" <"$W/msgs.jsonl" 2>/dev/null
    A=$(collectd_dir "$name")
    {
        collectd_conf_header "$name"
        collectd_conf_stock csv rrdtool write_graphite
        collectd_conf_ours read_kafka_ts
        cat <<EOF
<Plugin csv>
  DataDir "$A/csv"
</Plugin>
<Plugin rrdtool>
  DataDir "$A/rrd"
  StepSize 10
  HeartBeat 20
  CacheTimeout 3600
  CacheFlush 36000
</Plugin>
<Plugin write_graphite>
  <Node "carbon">
    Host "127.0.0.1"
    Port "$CARBON_LINE_PORT"
    Prefix "kts$name."
    StoreRates false
  </Node>
</Plugin>
<Plugin read_kafka_ts>
  Property "bootstrap.servers" "$B"
  Property "auto.commit.interval.ms" "100"
  Property "session.timeout.ms" "6000"
  Property "heartbeat.interval.ms" "1000"
  GroupId "$RUN-$name"
  Instance "agg"
  Topic "$RUN-$name"
  StartPosition "earliest"
$extra
</Plugin>
EOF
    } >"$A/collectd.conf"
    F="$A/rrd/k/sensor-s1/gauge.rrd"
    rows() { find "$A/csv/k" -type f -exec cat {} + 2>/dev/null | grep -vc '^epoch'; }
    stored() { rrdtool fetch "$F" AVERAGE -r 10 -s $((T0 - 10)) -e $((T0 + 10 * N - 10)) 2>/dev/null | grep -c 'e[+-]'; }
    collectd_start "$A/collectd.conf" "$name"
    for _ in $(seq 300); do [ "$(rows)" -ge $N ] && break; sleep 0.2; done
    ROWS=$(rows)
    sleep "$wait"
    local pid
    pid=$(collectd_pid "$name")
    kill -KILL "$pid"
    # collectd_stop would send a TERM to a process not yet gone; its status is 137 anyway
    for _ in $(seq 100); do _collectd_alive "$pid" || break; sleep 0.05; done
    collectd_stop "$name" 5
    KILLED=$COLLECTD_EXIT_STATUS
    collectd_start "$A/collectd.conf" "$name"
    # the restarted member gets the partition once the group dropped the killed one
    # (session.timeout.ms 6 s), then consumes from the committed offsets
    for _ in $(seq 300); do
        [ "$(grep -c 'assigned [1-9]' "$(collectd_logfile "$name")")" -ge 2 ] && break
        sleep 0.2
    done
    ASSIGNED=$(grep -c 'assigned [1-9]' "$(collectd_logfile "$name")")
    # wait for a redelivery to be written (with FlushBeforeCommit the RRD fills within a commit
    # interval or two); the control phase never gets there: bounded
    for _ in $(seq 50); do [ "$(stored)" -ge $((N - 1)) ] && break; sleep 0.2; done
    sleep 1
    collectd_stop "$name"
    STOP_ST=$?
    STORED=$(stored)
    REDELIVERED=$(($(rows) - N))
    WSP=0
    for _ in $(seq 20); do # carbon writes its cache to whisper about every second
        WSP=$(whisper-fetch --json --from $((T0 - 10)) --until $((T0 + 10 * N - 10)) "$G/whisper/kts$name/k/sensor-s1/gauge.wsp" 2>/dev/null |
            python3 -c 'import json, sys; print(sum(v is not None for v in json.load(sys.stdin)["values"]))' 2>/dev/null)
        WSP=${WSP:-0}
        [ "$WSP" -ge $N ] && break
        sleep 0.5
    done
    [ "$ASSIGNED" -ge 2 ] || diag "$name: the restarted aggregator got no partition"
    diag "$name: after kill -9 and a restart: $STORED of $((N - 1)) values in the RRD, $WSP of $N in whisper, $REDELIVERED redelivered"
}

phase plain 3 "" # 3 s = 30 auto-commit intervals
is "$ROWS/$KILLED" "$N/137" "control: $N values passed the writers, then kill -9"
ok $STOP_ST "control: restarted and stopped cleanly"
is "$REDELIVERED" 0 "control: nothing redelivered (the offsets had been committed)"
if [ "$STORED" -lt $((N - 1)) ]; then r=0; else r=1; fi
ok $r "control: without FlushBeforeCommit the RRD lost values in rrdtool's cache ($STORED of $((N - 1)) stored; docs: 0)"

phase flush 3 "  FlushBeforeCommit \"rrdtool\"
  FlushBeforeCommit \"write_graphite/carbon\"
  CommitInterval 1
  DedupStateFile \"$COLLECTD_TMP/flush.written\"
  DedupStateSeries 1000"
is "$ROWS/$KILLED" "$N/137" "FlushBeforeCommit: $N values passed the writers, then kill -9"
ok $STOP_ST "FlushBeforeCommit: restarted and stopped cleanly ($REDELIVERED redelivered)"
is "$STORED" $((N - 1)) "FlushBeforeCommit: every value in the RRD after kill -9 and a restart"
is "$WSP" "$N" "FlushBeforeCommit: every value in whisper after kill -9 and a restart"
if grep -q 'FlushBeforeCommit: offsets (and watermarks) are stored every 1 s' "$(collectd_logfile flush)"; then r=0; else r=1; fi
ok $r "FlushBeforeCommit: the plugin says it is on"

# The kill as soon as the last value passed the writers: some values are cached, not flushed,
# and their offsets not stored: they are redelivered, and those whose watermark was raised are
# skipped (kts_consumer.h 11)
phase early 0 "  FlushBeforeCommit \"rrdtool\"
  FlushBeforeCommit \"write_graphite/carbon\"
  CommitInterval 1
  DedupStateFile \"$COLLECTD_TMP/early.written\"
  DedupStateSeries 1000"
is "$ROWS/$KILLED" "$N/137" "early kill: $N values passed the writers, then at once kill -9"
ok $STOP_ST "early kill: restarted and stopped cleanly ($REDELIVERED redelivered)"
is "$STORED" $((N - 1)) "early kill: every value in the RRD after kill -9 and a restart"
is "$WSP" "$N" "early kill: every value in whisper after kill -9 and a restart"
carbon_stop
collectd_tap_status
