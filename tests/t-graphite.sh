#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# read_kafka_ts → pipeline → write_graphite → Debian's carbon-cache → whisper:
# REAL collectd, the suite's REAL Kafka broker, REAL carbon-cache (graphite-carbon) started here.
#   1-2   a gauge series (60 points 10 s apart, two spikes, one message sent twice in a row and
#         three redelivered after newer ones) → Kafka (kcat); kts-filter computes the expected
#         output of the pipeline (dedup → outlier hampel → smooth ema) from the same messages
#   3     carbon-cache (tests/lib/carbon.sh: its own carbon.conf and storage-schemas.conf in a
#         temp dir, line receiver on a free 127.0.0.1 port, pickle receiver off, retention
#         10s:1d so that every point owns one slot) starts in the foreground (Debian's unit
#         runs the same entry point forking; --nodaemon keeps it our child, logging to stdout)
#   4-5   aggregator (read_kafka_ts in copy mode → write_graphite with two <Node>s: flat and
#         SeparateInstances + AlwaysAppendDS; csv to see progress) writes every raw and
#         filtered value, and stops cleanly (the shutdown flush sends write_graphite's buffer)
#   6     the whisper files carry write_graphite's names: host dots escaped ("db1_example"),
#         the filtered series under the pipeline's plugin instance suffix
#   7-9   whisper-fetch --json: the filtered series holds exactly kts-filter's values at the
#         original timestamps (= float("%.15g"), write_graphite's format), empty slots
#         elsewhere; both spikes were replaced; the raw series holds the input (a duplicate is
#         one point)
#   10    the same values under the second node's names (…sensor.s1-filtered.gauge.value)
#   11    carbon-cache stops on TERM by its PID (orderly; twistd then re-raises SIGTERM: 143)
# Environment: KTS_KEEP_TMP=1 keeps the temp dir (carbon's log and whisper files);
# CARBON_BIN (default /usr/bin/carbon-cache, Debian's graphite-carbon).
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILDDIR=${KTS_TOP_BUILDDIR:-$(pwd)}
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
e2e_plan 11
RUN=rktg-$$-$(date +%s)
KF="$BUILDDIR/tools/kts-filter"
CHECK="$SRCDIR/tests/lib/chain_check.py"
W=$(collectd_dir work)
STEP=10
N=60
# whisper keeps points newer than now - retention only: the series ends 10 minutes ago.
T0=$(( ($(date +%s) - 600 - N * STEP) / STEP * STEP ))
TL=$((T0 + (N - 1) * STEP))

# ------------------------------------------------------------------ 1-2 input and expectation
cat >"$W/pipelines.conf" <<'EOF'
<Pipeline "clean">
  <Match>
    Plugin "sensor"
  </Match>
  <Filter "dedup">
  </Filter>
  <Filter "outlier">
    Method "hampel"
    Window 300
    MaxPoints 31
    MinPoints 10
    Threshold 5
    MaxRun 1
    Action "replace"
  </Filter>
  <Filter "smooth">
    Method "ema"
    Tau 30
  </Filter>
  OutputPluginInstanceSuffix "-filtered"
</Pipeline>
EOF
# shellcheck source=tests/lib/chain.sh
. "$SRCDIR/tests/lib/chain.sh"
chain_messages "$T0" "$N" "$STEP" "$W/msgs.jsonl"
NMSG=$(wc -l <"$W/msgs.jsonl")
chain_expect "$KF" "$W/pipelines.conf" "$W/msgs.jsonl" "$W/expect.csv" "$N"
NOUT=$CHAIN_NOUT
kcat -P -b "$B" -t "$RUN-in" -p 0 -X "$KAFKA_KCAT_ORDER" <"$W/msgs.jsonl" 2>"$W/kcat.err" || diag "kcat: $(cat "$W/kcat.err")"
is "$(kcat -C -b "$B" -t "$RUN-in" -o beginning -e -q 2>/dev/null | wc -l)" "$NMSG" \
    "$NMSG crafted messages in Kafka"

# ------------------------------------------------------------------ 3 carbon-cache
# shellcheck source=tests/lib/carbon.sh
. "$SRCDIR/tests/lib/carbon.sh"
G="$COLLECTD_TMP/carbon"
carbon_start "$G" "$STEP"
st=$?
LINE_PORT=$CARBON_LINE_PORT
is "$st/$(cat "$G/carbon.pid" 2>/dev/null)" "0/$CARBON_PID" \
    "carbon-cache runs in the foreground, line receiver on 127.0.0.1:$LINE_PORT, PID file = its PID"
if [ $st -ne 0 ]; then # nothing below can pass: fail the rest at once instead of waiting
    for k in $(seq 4 11); do ok 1 "test $k: not run, carbon-cache did not start"; done
    exit 1
fi

# ------------------------------------------------------------------ 4-5 the aggregator
A=$(collectd_dir agg)
{
    collectd_conf_header agg
    collectd_conf_stock csv write_graphite
    collectd_conf_ours read_kafka_ts
    cat <<EOF
<Plugin csv>
  DataDir "$A/csv"
  StoreRates false
</Plugin>
<Plugin write_graphite>
  <Node "flat">
    Host "127.0.0.1"
    Port "$LINE_PORT"
    Protocol "tcp"
    Prefix "kts."
    StoreRates false
    EscapeCharacter "_"
    SeparateInstances false
    AlwaysAppendDS false
  </Node>
  <Node "tree">
    Host "127.0.0.1"
    Port "$LINE_PORT"
    Protocol "tcp"
    Prefix "tree."
    StoreRates false
    SeparateInstances true
    AlwaysAppendDS true
  </Node>
</Plugin>
<Plugin read_kafka_ts>
  Property "bootstrap.servers" "$B"
  GroupId "$RUN"
  Instance "agg"
  Topic "$RUN-in"
  StartPosition "earliest"
$(cat "$W/pipelines.conf")
</Plugin>
EOF
} >"$A/collectd.conf"
collectd_start "$A/collectd.conf" agg
st=$?
# raw: every message (the duplicates too); filtered: kts-filter's output
want=$((NMSG + NOUT))
n=0
for _ in $(seq 300); do
    n=$(find "$A/csv/db1.example" -type f -exec cat {} + 2>/dev/null | grep -vc '^epoch')
    [ "$n" -ge "$want" ] && break
    sleep 0.2
done
is "$st/$n" "0/$want" "aggregator (read_kafka_ts copy mode → write_graphite, csv) writes $NMSG raw + $NOUT filtered values"
collectd_stop agg
st=$?
collectd_log_has 'shutdown: every dispatched value was written' agg
drained=$?
ok "$([ $st -eq 0 ] && [ $drained -eq 0 ]; echo $?)" \
    "the aggregator stops cleanly, every dispatched value written (write_graphite flushed at shutdown)"

# ------------------------------------------------------------------ 6 names
F="$G/whisper/kts/db1_example/sensor-s1-filtered/gauge.wsp"
R="$G/whisper/kts/db1_example/sensor-s1/gauge.wsp"
F2="$G/whisper/tree/db1_example/sensor/s1-filtered/gauge/value.wsp"
R2="$G/whisper/tree/db1_example/sensor/s1/gauge/value.wsp"
# carbon writes its cache to whisper within about a second; wait for the last point's slot.
last_written() { # FILE: 0 once the slot of TL holds a value
    [ -f "$1" ] && whisper-fetch --json --from $((TL - STEP)) --until "$TL" "$1" 2>/dev/null |
        python3 -c 'import json, sys; v = json.load(sys.stdin)["values"]; sys.exit(0 if v and v[0] is not None else 1)'
}
for _ in $(seq 300); do
    last_written "$F" && last_written "$R" && last_written "$F2" && last_written "$R2" && break
    sleep 0.2
done
names=$(cd "$G/whisper" && find kts/db1_example tree/db1_example -name '*.wsp' 2>/dev/null | sort | paste -sd' ')
is "$names" "kts/db1_example/sensor-s1-filtered/gauge.wsp kts/db1_example/sensor-s1/gauge.wsp tree/db1_example/sensor/s1-filtered/gauge/value.wsp tree/db1_example/sensor/s1/gauge/value.wsp" \
    "whisper files: host dots escaped, raw next to filtered (kts.db1_example.sensor-s1-filtered.gauge …)"

# ------------------------------------------------------------------ 7-10 whisper-fetch
fetch() { whisper-fetch --json --from $((T0 - 20 * STEP)) --until $((TL + 10 * STEP)) "$1" >"$2" 2>&1; }
compare() { # NAME KIND FETCH DESCRIPTION
    local out st
    out=$(python3 "$CHECK" whisper "$W/expect.csv" "$W/msgs.jsonl" "$2" "$3" \
        $((T0 - 19 * STEP)) $((TL + 10 * STEP)))
    st=$?
    [ $st -eq 0 ] || diag "$out" "$(head -c 300 "$3")"
    ok $st "$4 ($(echo "$out" | tail -n1))"
}
fetch "$F" "$W/f.json"
compare f filtered "$W/f.json" "filtered series: exactly kts-filter's values at the original timestamps, nothing else"
spikes=$(python3 - "$W/f.json" "$W/expect.csv" <<'EOF'
import csv, json, sys
j = json.load(open(sys.argv[1]))
got = {j["start"] + i * j["step"]: v for i, v in enumerate(j["values"])}
out = []
for r in csv.DictReader(open(sys.argv[2])):
    if r["action"] == "replaced":
        t, v = int(r["timestamp"]), got.get(int(r["timestamp"]))
        # a spike is 80 or 120 away from a series within 50 +- 11
        if v is not None and abs(v - float(r["input"])) > 60 and 35 < v < 65:
            out.append("t=%d: %s -> %.2f" % (t, r["input"], v))
print("; ".join(out))
EOF
)
is "$(echo "$spikes" | grep -o 't=' | wc -l)" 2 "both spikes are replaced in Graphite ($spikes)"
fetch "$R" "$W/r.json"
compare r raw "$W/r.json" "raw series: the input values, the duplicates one point each"
fetch "$F2" "$W/f2.json"
compare f2 filtered "$W/f2.json" "second node: the same filtered values under tree.db1_example.sensor.s1-filtered.gauge.value"

# ------------------------------------------------------------------ 11 stop carbon
carbon_stop
shut=$(grep -c 'Server Shut Down' "$G/carbon.out")
# twistd (Twisted >= 21) re-raises the signal that stopped its reactor: 128 + 15.
is "$CARBON_STATUS/$shut/$([ -e "$G/carbon.pid" ] && echo pidfile-left)" "143/1/" \
    "carbon-cache stops on TERM by its PID: orderly shutdown, PID file removed"

collectd_tap_status
