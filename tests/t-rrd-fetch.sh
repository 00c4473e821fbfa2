#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# read_kafka_ts → pipeline → collectd's rrdtool plugin → `rrdtool fetch`:
# REAL collectd, the suite's REAL Kafka broker, stock rrdtool plugin and rrdtool(1).
#   1-2   a gauge series s1 (60 points 10 s apart at timestamps that are multiples of the step,
#         two spikes, one message sent twice in a row and three redelivered after newer ones)
#         and a series u1 whose timestamps are 5 s off the step grid → Kafka (kcat);
#         kts-filter computes the expected output of the pipeline (dedup → outlier hampel →
#         smooth sma) from the same messages
#   3-5   aggregator (read_kafka_ts, copy mode → rrdtool with StepSize 10 = the interval,
#         HeartBeat 20, CacheTimeout 3600 / CacheFlush 36000, and csv to see progress) writes
#         every raw and filtered value; the RRD files exist but hold no update yet: the values
#         are in the rrdtool plugin's cache (it writes a file once its cached values span
#         CacheTimeout seconds of value time: never within this 600-s series), so what the
#         files hold at the end was written by the flush at shutdown; the stop is clean
#   6     the files collectd created: step 10, first RRA AVERAGE with 1 step per row
#   7-9   rrdtool fetch AVERAGE -r 10: the filtered series returns kts-filter's values at the
#         original timestamps; both spikes replaced; the raw series returns the input; in
#         both the first point is unknown (below), every other slot empty
#   10    the 4 raw duplicates reach the writers (collectd's cache: "Value too old"); the rrdtool
#         plugin drops them without an error (the stored values are those of test 9)
#   11    u1 (timestamps 5 s off the grid): each step holds the mean of two neighbouring
#         points, not the points: aligned timestamps are what makes RRD values exact
#
# Why aligned timestamps: rrdtool treats a gauge update at time t as the value over
# (previous update, t] and a step's value as the time-weighted mean over (T - step, T]. With
# points at multiples of the step, one step holds exactly one point's value (with StepSize =
# the series interval and an RRA of 1 step per row, fetch returns it unchanged, up to the
# "%.15g" text collectd passes and the "%.10e" fetch prints). Off the grid, a step mixes two.
# Why the first point is unknown: collectd creates the RRD with start = first time - 1, and
# rrdtool counts the time of a step before the start as unknown (9 s of the first 10-s step
# here): more than half a step unknown makes the step unknown. So the first value of every new
# file only opens it; the test asserts that it is unknown (nan) and compares the rest.
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILDDIR=${KTS_TOP_BUILDDIR:-$(pwd)}
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
e2e_plan 11
RUN=rktr-$$-$(date +%s)
KF="$BUILDDIR/tools/kts-filter"
CHECK="$SRCDIR/tests/lib/chain_check.py"
W=$(collectd_dir work)
STEP=10
N=60
T0=1700000000 # a multiple of STEP
TL=$((T0 + (N - 1) * STEP))

# ------------------------------------------------------------------ 1-2 input and expectation
cat >"$W/pipelines.conf" <<'EOF'
<Pipeline "despike">
  <Match>
    Plugin "sensor"
    PluginInstance "s1"
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
    Method "sma"
    Window 60
  </Filter>
  OutputPluginInstanceSuffix "-despiked"
</Pipeline>
EOF
# shellcheck source=tests/lib/chain.sh
. "$SRCDIR/tests/lib/chain.sh"
chain_messages "$T0" "$N" "$STEP" "$W/msgs.jsonl" "$W/u1.jsonl"
NMSG=$(wc -l <"$W/msgs.jsonl")
chain_expect "$KF" "$W/pipelines.conf" "$W/msgs.jsonl" "$W/expect.csv" "$N"
NOUT=$CHAIN_NOUT
cat "$W/msgs.jsonl" "$W/u1.jsonl" | kcat -P -b "$B" -t "$RUN-in" -p 0 -X "$KAFKA_KCAT_ORDER" 2>"$W/kcat.err" ||
    diag "kcat: $(cat "$W/kcat.err")"
is "$(kcat -C -b "$B" -t "$RUN-in" -o beginning -e -q 2>/dev/null | wc -l)" $((NMSG + N)) \
    "$((NMSG + N)) crafted messages in Kafka"

# ------------------------------------------------------------------ 3-5 the aggregator
A=$(collectd_dir agg)
{
    collectd_conf_header agg
    collectd_conf_stock csv rrdtool
    collectd_conf_ours read_kafka_ts
    cat <<EOF
<Plugin csv>
  DataDir "$A/csv"
  StoreRates false
</Plugin>
<Plugin rrdtool>
  DataDir "$A/rrd"
  CreateFilesAsync false
  StepSize $STEP
  HeartBeat $((2 * STEP))
  RRARows 1200
  RRATimespan 3600
  RRATimespan 86400
  XFF 0.1
  CacheTimeout 3600
  CacheFlush 36000
  WritesPerSecond 0
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
want=$((NMSG + N + NOUT)) # raw s1 (duplicates too), raw u1, filtered s1
n=0
for _ in $(seq 300); do
    n=$(find "$A/csv/db1.example" -type f -exec cat {} + 2>/dev/null | grep -vc '^epoch')
    [ "$n" -ge "$want" ] && break
    sleep 0.2
done
is "$st/$n" "0/$want" "aggregator (read_kafka_ts copy mode → rrdtool, csv) writes $((NMSG + N)) raw + $NOUT filtered values"
# Every value has passed the rrdtool plugin's write callback: into its cache only. `rrdtool
# last` is still the creation time (first value - 1 s) for every file.
lasts=$(for f in sensor-s1-despiked sensor-s1 sensor-u1; do
    rrdtool last "$A/rrd/db1.example/$f/gauge.rrd" 2>&1
done | paste -sd' ')
is "$lasts" "$((T0 - 1)) $((T0 - 1)) $((T0 + 4))" \
    "before the stop the 3 RRD files hold no update (last = creation = first time - 1): all values are in the rrdtool plugin's cache"
collectd_stop agg
st=$?
collectd_log_has 'shutdown: every dispatched value was written' agg
drained=$?
ok "$([ $st -eq 0 ] && [ $drained -eq 0 ]; echo $?)" \
    "the aggregator stops cleanly, every dispatched value written (the rrdtool plugin flushes its cache at shutdown)"

# ------------------------------------------------------------------ 6 the files
R="$A/rrd/db1.example"
F="$R/sensor-s1-despiked/gauge.rrd"
info=$(rrdtool info "$F" 2>&1 | grep -E '^(step|rra\[0\]\.(cf|pdp_per_row|rows)|ds\[value\]\.(type|minimal_heartbeat)) ' | paste -sd' ')
files=$(cd "$R" 2>/dev/null && find . -name '*.rrd' | sort | paste -sd' ')
is "$files | $info" "./sensor-s1-despiked/gauge.rrd ./sensor-s1/gauge.rrd ./sensor-u1/gauge.rrd | step = 10 ds[value].type = \"GAUGE\" ds[value].minimal_heartbeat = 20 rra[0].cf = \"AVERAGE\" rra[0].rows = 1200 rra[0].pdp_per_row = 1" \
    "RRD files next to each other (raw, -despiked); step 10, RRA 0 AVERAGE with 1 step per row"

# ------------------------------------------------------------------ 7-9 rrdtool fetch
fetch() { rrdtool fetch "$1" AVERAGE -r $STEP -s $((T0 - 20 * STEP)) -e $((TL + 10 * STEP)) >"$2" 2>&1; }
compare() { # KIND FETCH DESCRIPTION
    local out st
    out=$(python3 "$CHECK" rrd "$W/expect.csv" "$W/msgs.jsonl" "$1" "$2" \
        $((T0 - 19 * STEP)) $((TL + 10 * STEP)))
    st=$?
    [ $st -eq 0 ] || diag "$out" "$(head -n 5 "$2")"
    ok $st "$3 ($(echo "$out" | tail -n1))"
}
fetch "$F" "$W/f.txt"
compare filtered "$W/f.txt" "filtered series: rrdtool fetch returns kts-filter's values at the original timestamps, the first unknown, nothing else"
spikes=$(python3 - "$W/f.txt" "$W/expect.csv" <<'EOF'
import csv, sys
got = {}
for line in open(sys.argv[1]):
    h, s, t = line.partition(":")
    if s and h.strip().isdigit():
        got[int(h)] = float(t)
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
is "$(echo "$spikes" | grep -o 't=' | wc -l)" 2 "both spikes are replaced in the RRD ($spikes)"
fetch "$R/sensor-s1/gauge.rrd" "$W/r.txt"
compare raw "$W/r.txt" "raw series: the input values, the first unknown, nothing else"

# ------------------------------------------------------------------ 10 duplicates
# copy mode dispatches the raw duplicates too: collectd's cache notes each ("Value too old"),
# the rrdtool plugin (5.12) drops a time not after the last one of its cache entry without a
# word, and rrdtool itself is never asked to store it (no "illegal attempt to update").
n=$(collectd_log_count 'Value too old: name = db1.example/sensor-s1/gauge;' agg)
e=$(collectd_log_count '\[(warning|error)\]' agg)
is "$n/$e" 4/0 "the 4 raw duplicates pass collectd's cache (Value too old) and the rrdtool plugin drops them: no warning or error logged"

# ------------------------------------------------------------------ 11 off the step grid
fetch "$R/sensor-u1/gauge.rrd" "$W/u.txt"
out=$(python3 - "$W/u.txt" "$W/u1.jsonl" "$T0" "$STEP" "$N" <<'EOF'
import json, sys
t0, step, n = (int(a) for a in sys.argv[3:6])
got = {}
for line in open(sys.argv[1]):
    h, s, t = line.partition(":")
    if s and h.strip().isdigit():
        got[int(h)] = float(t)
v = [float(json.loads(l)["ds"][0]["value"]) for l in open(sys.argv[2])]
# the step ending at t0 + 10 j covers the second half of point j-1 and the first half of point j
# (from j = 2: the first step also holds unknown time before the file's start)
bad = same = 0
for j in range(2, n):
    g, w = got.get(t0 + step * j), (v[j - 1] + v[j]) / 2
    bad += g is None or abs(g - w) > 1e-9 * max(1, abs(w))
    same += g == v[j] or g == v[j - 1]
print("%d steps checked, %d not the mean of their two points, %d equal to a point" % (n - 2, bad, same))
sys.exit(1 if bad else 0)
EOF
)
st=$?
[ $st -eq 0 ] || diag "$(head -n 8 "$W/u.txt")"
ok $st "timestamps 5 s off the step grid: each step holds the mean of two neighbouring points ($out)"

collectd_tap_status
