#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# read_kafka_ts StateTopic on a three-node cluster of this test's own (every node broker +
# controller, replication factor 3, min.insync.replicas 2), with the leader of a state partition
# down while the aggregator restores: the REAL collectd with read_kafka_ts (t-read-state.sh's
# despiking and smoothing pipeline → csv), killed with SIGKILL after the first half of the
# stream; the node leading state partition 0 is killed, the second half produced, the
# aggregator restarted: the restore reads the state from the new leader and the filtered csv
# equals kts-filter's uninterrupted run value for value.
#   1     three nodes up
#   2     kts-filter computes the uninterrupted run's output
#   3     input topic of 2 partitions (RF 3), first half in it
#   4-5   aggregator starts, creates the state topic (3 replicas per partition), writes the
#         first half's filtered rows
#   6     killed with SIGKILL
#   7     the node leading state partition 0 is killed; another node leads it
#   8     second half produced (acks all: 2 of 3 in sync), aggregator restarted
#   9     the state of both partitions installed with the node down, records restored
#   10    every filtered value of the 4 series equals kts-filter's, every timestamp present
#   11    clean stop
set -u
. "${KTS_TOP_SRCDIR:?run through make check}/tests/lib/tap.sh"
. "$KTS_TOP_SRCDIR/tests/lib/kafka.sh"
. "$KTS_TOP_SRCDIR/tests/lib/collectd.sh"
BUILDDIR=${KTS_TOP_BUILDDIR:-$(pwd)}
KF="$BUILDDIR/tools/kts-filter"
plan 11
kafka_start --brokers 3 || bail_out "kafka-local start --brokers 3 failed"
B=$KTS_BOOTSTRAP
is "$(kafka_metadata_brokers)" "1 2 3" "three nodes up ($B)"
RUN=$(kafka_topic rkts3)
W=$(collectd_dir work)
T0=1700000000
N=600

cat >"$W/pipelines.conf" <<'EOF'
<Pipeline "despike">
  <Match>
    Plugin "sensor"
  </Match>
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
    Tau 60
  </Filter>
  OutputPluginInstanceSuffix "-filtered"
</Pipeline>
EOF
# As t-read-state.sh: 4 series, s1, s2 on partition 0, s3, s4 on partition 1.
python3 - "$T0" "$N" "$W" <<'EOF'
import json, math, sys
t0, n, w = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out = {(p, h): open("%s/part-%d-%d.jsonl" % (w, p, h), "w") for p in (0, 1) for h in (0, 1)}
allf = open(w + "/all.jsonl", "w")
for k in range(n):
    for s in range(1, 5):
        v = 50 + 10 * s + 10 * math.sin(k / (7 + s)) + ((k * 37 + s) % 11 - 5) / 10
        v += 90 if (k + 13 * s) % 97 == 0 else 0
        line = json.dumps({"v": 1, "host": "st", "plugin": "sensor", "plugin_instance": "s%d" % s,
                           "type": "gauge", "type_instance": "", "time": t0 + 10 * k,
                           "interval": 10,
                           "ds": [{"name": "value", "type": "gauge", "value": round(v, 3)}]},
                          separators=(",", ":"))
        out[((s - 1) // 2, 0 if k < n // 2 else 1)].write(line + "\n")
        allf.write(line + "\n")
EOF
"$KF" --config "$W/pipelines.conf" "$W/all.jsonl" >"$W/expect.csv" 2>"$W/kts-filter.err"
ok $? "kts-filter computes the uninterrupted run's output ($(($(wc -l <"$W/expect.csv") - 1)) rows)"

produce_half() { # HALF
    local p
    for p in 0 1; do
        kcat -P -b "$B" -t "$RUN-in" -p "$p" -X acks=all <"$W/part-$p-$1.jsonl" 2>>"$W/kcat.err" || return 1
    done
}
kafka_create_topic "$RUN-in" 2 >/dev/null 2>"$W/create.err" && produce_half 0
ok $? "input topic of 2 partitions with the first half of the stream"

D=$(collectd_dir agg)
{
    collectd_conf_header agg
    collectd_conf_stock csv
    collectd_conf_ours read_kafka_ts
    cat <<EOF
<Plugin csv>
  DataDir "$D/csv"
  StoreRates false
</Plugin>
<Plugin read_kafka_ts>
  Property "bootstrap.servers" "$B"
  Property "auto.commit.interval.ms" "500"
  Property "session.timeout.ms" "6000"
  Property "heartbeat.interval.ms" "1000"
  GroupId "$RUN"
  Instance "agg"
  Topic "$RUN-in"
  StateTopic "$RUN-state"
  CommitInterval 1
  StartPosition "earliest"
$(cat "$W/pipelines.conf")
</Plugin>
EOF
} >"$D/collectd.conf"

check() {
    python3 - "$W/expect.csv" "$D/csv/st" <<'EOF'
import csv, glob, os, sys
exp = {}
for r in csv.DictReader(open(sys.argv[1])):
    if r["action"] == "dropped" or r["output"] == "":
        continue
    s = r["series"].split("/")[1].split("-", 1)[1]  # st/sensor-s1/gauge: s1
    exp.setdefault(s, {})[int(r["timestamp"])] = float(r["output"])
bad, seen, rows = [], 0, 0
for s, want in sorted(exp.items()):
    got = {}
    for f in glob.glob(os.path.join(sys.argv[2], "sensor-%s-filtered" % s, "gauge-*")):
        for line in open(f):
            if line.startswith("epoch"):
                continue
            t, v = line.strip().split(",")
            rows += 1
            got.setdefault(round(float(t)), set()).add(v)
    for t, vs in got.items():
        if t not in want or vs != {"%f" % want[t]}:
            bad.append("%s t=%d: csv %s, kts-filter %s" % (s, t, sorted(vs), want.get(t)))
    seen += len(set(got) & set(want))
total = sum(len(w) for w in exp.values())
for b in bad[:8]:
    print(b)
print("%d of %d filtered values present (%d rows), %d problems" % (seen, total, rows, len(bad)))
sys.exit(0 if not bad and seen == total else 1)
EOF
}
# wait_count RE COUNT NAME TIMEOUT: until NAME's log has COUNT lines matching RE (the log
# is appended to across restarts: an earlier run's lines count too)
wait_count() {
    local i
    for ((i = 0; i < $4 * 10; i++)); do
        [ "$(collectd_log_count "$1" "$3")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
count_present() { check 2>/dev/null | tail -n1 | cut -d' ' -f1; }
# state_partition P: the node leading partition P of the state topic, and its replicas
state_partition() {
    kcat -L -b "$B" -t "$RUN-state" -m 5 2>/dev/null |
        awk -v p="$1" '$1 == "partition" && $2 == p"," { sub(/,$/, "", $4); sub(/,$/, "", $6); print $4, $6 }'
}

collectd_start "$D/collectd.conf" agg
ok $? "aggregator with StateTopic starts"
for _ in $(seq 300); do
    [ "$(count_present)" -ge 1200 ] && break
    sleep 0.2
done
n=$(count_present)
ok "$([ "$n" -ge 1200 ]; echo $?)" "it writes the first half's filtered rows ($n present)"
sleep 4
pid=$(collectd_pid agg)
kill -KILL "$pid"
wait "$pid" 2>/dev/null
killed=$?
collectd_stop agg 5 2>/dev/null
ok "$([ "$killed" -eq 137 ]; echo $?)" "aggregator killed with SIGKILL (status $killed)"

read -r leader replicas <<<"$(state_partition 0)"
diag "state partition 0: leader ${leader:-?}, replicas ${replicas:-?}"
st=1
if [ -n "${leader:-}" ] && [ "$(echo "${replicas:-}" | tr ',' '\n' | grep -c .)" = 3 ] &&
    kafka_stop_node "$leader" --kill >/dev/null 2>&1; then
    for _ in $(seq 300); do
        read -r now _ <<<"$(state_partition 0)"
        [ -n "${now:-}" ] && [ "$now" != "$leader" ] && [ "$now" != -1 ] && { st=0; break; }
        sleep 0.2
    done
fi
ok $st "node ${leader:-?} (leader of state partition 0, replicas ${replicas:-?}) killed; node ${now:-?} leads it now"

produce_half 1 && collectd_start "$D/collectd.conf" agg
ok $? "second half produced, aggregator restarted with node $leader down"
wait_count "state of partition 0 installed" 2 agg 90 && wait_count "state of partition 1 installed" 2 agg 90
st=$?
restored=0
for _ in $(seq 20); do
    f=$(find "$D/csv/kts-test/read_kafka_ts-agg" -name 'total_values-state_restored-*' 2>/dev/null | sort | tail -n1)
    [ -n "$f" ] && restored=$(tail -n1 "$f" | cut -d, -f2 | cut -d. -f1)
    [ "$restored" -ge 4 ] && break
    sleep 0.5
done
ok "$([ "$st" = 0 ] && [ "$restored" -ge 4 ]; echo $?)" \
    "the state of both partitions was installed with the node down ($restored records)"
for _ in $(seq 600); do
    check >/dev/null 2>&1 && break
    sleep 0.2
done
out=$(check)
st=$?
diag "$out"
ok $st "after the leader moved every filtered value equals the uninterrupted run's"
collectd_stop agg
ok $? "the restarted aggregator stops cleanly"
done_testing
