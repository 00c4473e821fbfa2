#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# read_kafka_ts StateTopic end to end: a REAL collectd with read_kafka_ts (a despiking and
# smoothing pipeline → csv) on the REAL broker of the suite, killed with SIGKILL in the middle
# of the stream and restarted: the filtered csv equals what an uninterrupted run computes
# (kts-filter over the whole stream, offline), value for value, because the pipeline state was
# restored from the state topic (without it the smoothing restarts and the values differ).
#   1     kts-filter computes the uninterrupted run's output
#   2     input topic of 2 partitions, first half of the stream in it
#   3-4   aggregator starts, creates the state topic, and writes the first half's filtered rows
#   5     killed with SIGKILL
#   6-7   second half produced, aggregator restarted: it restores the state of both partitions
#   8     every filtered value of the 4 series equals kts-filter's, every timestamp present
#   9     clean stop
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILDDIR=${KTS_TOP_BUILDDIR:-$(pwd)}
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
e2e_plan 9
RUN=rkts-$$-$(date +%s)
KF="$BUILDDIR/tools/kts-filter"
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
# 4 series s1..s4, N points 10 s apart, spikes now and then; s1, s2 go to partition 0, s3, s4 to
# partition 1. Files: part-P-HALF.jsonl, and all.jsonl in time order for kts-filter.
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
ok $? "kts-filter computes the uninterrupted run's output ($(grep -c despike "$W/expect.csv") rows)"

produce_half() { # HALF
    local p
    for p in 0 1; do
        kcat -P -b "$B" -t "$RUN-in" -p "$p" <"$W/part-$p-$1.jsonl" 2>>"$W/kcat.err" || return 1
    done
}
"$BUILDDIR/tests/kafka-pc" create -b "$B" -t "$RUN-in" -p 2 >/dev/null 2>"$W/create.err" &&
    produce_half 0
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

# check: every filtered row equals kts-filter's value ("%f", as csv writes it); prints a summary,
# exits 0 when every expected timestamp of every series is there and no value differs.
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
    missing = len(set(want) - set(got))
    if missing and len(sys.argv) > 3:
        bad.append("%s: %d timestamps missing" % (s, missing))
total = sum(len(w) for w in exp.values())
for b in bad[:8]:
    print(b)
print("%d of %d filtered values present (%d rows), %d problems" % (seen, total, rows, len(bad)))
sys.exit(0 if not bad and seen == total else 1)
EOF
}
count_present() { check 2>/dev/null | tail -n1 | cut -d' ' -f1; }

collectd_start "$D/collectd.conf" agg
ok $? "aggregator with StateTopic starts"
for _ in $(seq 300); do
    [ "$(count_present)" -ge 1200 ] && break
    sleep 0.2
done
n=$(count_present)
ok "$([ "$n" -ge 1200 ]; echo $?)" "it writes the first half's filtered rows ($n present)"
# Checkpointed and committed (CommitInterval 1, auto.commit.interval.ms 500): the restart goes
# on from there, so without the restored state the filters would start afresh (values differ).
sleep 4
pid=$(collectd_pid agg)
kill -KILL "$pid"
wait "$pid" 2>/dev/null
killed=$?
collectd_stop agg 5 2>/dev/null
ok "$([ "$killed" -eq 137 ]; echo $?)" "aggregator killed with SIGKILL (status $killed, $(count_present) present)"

produce_half 1
collectd_start "$D/collectd.conf" agg
ok $? "restarted with the second half in the topic"
# The log keeps the first run's lines: wait for the second "installed" line of each partition.
st=1
for _ in $(seq 600); do
    [ "$(collectd_log_count 'state of partition 1 installed' agg)" -ge 2 ] &&
        [ "$(collectd_log_count 'state of partition 0 installed' agg)" -ge 2 ] && { st=0; break; }
    sleep 0.1
done
ok $st "the state of both partitions was installed"
for _ in $(seq 600); do
    check >/dev/null 2>&1 && break
    sleep 0.2
done
out=$(check)
st=$?
diag "$out"
ok $st "after SIGKILL and restart every filtered value equals the uninterrupted run's"
collectd_stop agg
ok $? "the restarted aggregator stops cleanly"
