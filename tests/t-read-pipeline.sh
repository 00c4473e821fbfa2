#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# read_kafka_ts <Pipeline> blocks end to end: REAL collectd daemons, the REAL
# Kafka broker of the suite, stock rrdtool and csv writers.
#   1-2   crafted time-series JSON (a gauge with two spikes and a 2-point gap, a DERIVE
#         counter, a series no pipeline matches) → Kafka (kcat); kts-filter computes the
#         expected output offline from the same messages and the same <Pipeline> blocks
#   3-4   aggregator (read_kafka_ts with two pipelines in copy mode → rrdtool + csv) starts,
#         and every raw and filtered row arrives
#   5-8   csv: raw series unchanged next to the filtered ones; filtered values equal
#         kts-filter's (csv's %lf), the rate pipeline writes OutputType gauge; no copy of the
#         unmatched series
#   9-11  rrdtool fetch (StepSize = interval: unconsolidated) returns kts-filter's values at the
#         original timestamps (from the second one: the first value of a new RRD only opens
#         it), the raw values (the gap unknown, HeartBeat 20); rrdtool graph renders a PNG
#   12-14 pipeline self-metrics reach csv (replaced 2, filled 2); offsets: every dispatched
#         value written, lag 0; clean drain at shutdown
#   15-17 configuration errors: OutputType with a DERIVE data source, copy mode without an
#         Output* option, an unknown filter option: clear messages, the plugin does not start
#   18-19 PipelineMode "replace": only the filtered series is written, under the input's name
#   20-21 contrib/examples/aggregator.conf: its csv, rrdtool and read_kafka_ts blocks as shipped
#         (paths, broker and topic replaced) start with their three pipelines; CPU jiffies
#         (DERIVE) come out as a smoothed rate of OutputType "percent" next to the raw series
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILDDIR=${KTS_TOP_BUILDDIR:-$(pwd)}
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
e2e_plan 21
RUN=rktp-$$-$(date +%s)
KF="$BUILDDIR/tools/kts-filter"
W=$(collectd_dir work)
T0=1700000000

# ------------------------------------------------------------------ 1-2 input and expectation
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
  <Filter "fill">
    Method "linear"
    MaxGap 3
  </Filter>
  <Filter "smooth">
    Method "ema"
    Tau 30
  </Filter>
  OutputPluginInstanceSuffix "-filtered"
</Pipeline>
<Pipeline "rate">
  <Match>
    Type "derive"
  </Match>
  <Filter "difference">
    Method "rate"
  </Filter>
  OutputType "gauge"
  OutputPluginInstanceSuffix "-rate"
</Pipeline>
EOF
# 120 points, 10 s apart: sensor (gauge; spikes at k=40 and 77, gap at k=90,91), net (DERIVE
# counter), plain (gauge, no pipeline).
python3 - "$T0" >"$W/msgs.jsonl" <<'EOF'
import json, math, sys
t0 = int(sys.argv[1])
def m(plugin, pi, typ, t, dstype, v):
    return json.dumps({"v": 1, "host": "pipe", "plugin": plugin, "plugin_instance": pi,
                       "type": typ, "type_instance": "", "time": t, "interval": 10,
                       "ds": [{"name": "value", "type": dstype, "value": v}]},
                      separators=(",", ":"))
cnt = 1000
for k in range(120):
    t = t0 + 10 * k
    if k not in (90, 91):
        v = 50 + 10 * math.sin(k / 10) + ((k * 37) % 11 - 5) / 10
        v += 80 if k == 40 else -120 if k == 77 else 0
        print(m("sensor", "s1", "gauge", t, "gauge", round(v, 3)))
    print(m("plain", "p1", "gauge", t, "gauge", k * 0.5))
    cnt += 50 + (k % 7) * 3
    print(m("net", "n1", "derive", t, "derive", cnt))
EOF
"$KF" --config "$W/pipelines.conf" "$W/msgs.jsonl" >"$W/expect.csv" 2>"$W/kts-filter.err"
st=$?
diag "kts-filter: $(tail -n1 "$W/kts-filter.err")"
ok $st "kts-filter computes the expected output offline (same messages, same <Pipeline> blocks)"
kcat -P -b "$B" -t "$RUN-in" -p 0 -X "$KAFKA_KCAT_ORDER" <"$W/msgs.jsonl" 2>"$W/kcat.err" || diag "kcat: $(cat "$W/kcat.err")"
is "$(kcat -C -b "$B" -t "$RUN-in" -o beginning -e -q 2>/dev/null | wc -l)" 358 \
    "358 crafted messages in Kafka"

# aggregator NAME TOPIC EXTRA: config with rrdtool + csv writers and read_kafka_ts
aggregator_conf() {
    local name=$1 topic=$2 extra=$3 d
    d=$(collectd_dir "$name")
    {
        collectd_conf_header "$name"
        collectd_conf_stock csv rrdtool
        collectd_conf_ours read_kafka_ts
        cat <<EOF
<Plugin csv>
  DataDir "$d/csv"
  StoreRates false
</Plugin>
<Plugin rrdtool>
  DataDir "$d/rrd"
  StepSize 10
  HeartBeat 20
</Plugin>
<Plugin read_kafka_ts>
  Property "bootstrap.servers" "$B"
  GroupId "$RUN-$name"
  Instance "agg"
  Topic "$topic"
  StartPosition "earliest"
$extra
</Plugin>
EOF
    } >"$d/collectd.conf"
    echo "$d/collectd.conf"
}
# rows FILE-GLOB: data rows in csv files
rows() { cat "$@" 2>/dev/null | grep -vc '^epoch'; }
wait_rows_dir() { # N TIMEOUT DIR: until the csv files under DIR hold N rows; prints the count
    local n=0
    for _ in $(seq $(($2 * 5))); do
        n=$(find "$3" -type f -exec cat {} + 2>/dev/null | grep -vc '^epoch')
        [ "$n" -ge "$1" ] && break
        sleep 0.2
    done
    echo "$n"
}
# ------------------------------------------------------------------ 3-4 the aggregator
A=$(collectd_dir agg)
conf=$(aggregator_conf agg "$RUN-in" "$(cat "$W/pipelines.conf")")
collectd_start "$conf" agg
ok $? "aggregator (read_kafka_ts with two pipelines, rrdtool + csv) starts"
C="$A/csv/pipe"
# raw 118 + 120 + 120, filtered 120 (2 filled) + 119 (first rate point dropped)
n=$(wait_rows_dir 597 60 "$C")
sleep 2.5 # two self-metric rounds after the last value
collectd_stop agg
st=$?
is "$n" 597 "every raw and filtered row reaches csv"

# ------------------------------------------------------------------ 5-8 csv
is "$(rows "$C"/sensor-s1/gauge-*)/$(rows "$C"/net-n1/derive-*)/$(rows "$C"/plain-p1/gauge-*)" \
    118/120/120 "raw series are written unchanged next to the filtered ones (copy mode)"
CHECK=$(cat <<'EOF'
import csv, glob, math, sys
mode, expect, t0 = sys.argv[1], sys.argv[2], int(sys.argv[3])
# kts-filter: series,ds,timestamp,input,output,action; filled rows carry the output name
exp = {}
for r in csv.DictReader(open(expect)):
    if r["action"] == "dropped" or r["output"] == "":
        continue
    s = r["series"].split("/")[1].split("-")[0]
    exp.setdefault(s, {})[int(r["timestamp"])] = float(r["output"])
problems = []
def report(name, n):
    for p in problems[:10]:
        print(p)
    print("%s: %d values compared, %d problems" % (name, n, len(problems)))
    sys.exit(1 if problems or n == 0 else 0)
if mode == "csv":           # csv FILE SERIES: epoch,value rows equal "%lf" of kts-filter's double
    rows = {}
    for f in glob.glob(sys.argv[4]):
        for line in open(f):
            if not line.startswith("epoch"):
                t, v = line.strip().split(",")
                rows[round(float(t))] = v
    want = exp[sys.argv[5]]
    if sorted(rows) != sorted(want):
        problems.append("timestamps differ: %d rows, %d expected; missing %s extra %s" % (
            len(rows), len(want), sorted(set(want) - set(rows))[:5], sorted(set(rows) - set(want))[:5]))
    for t in sorted(set(rows) & set(want)):
        if rows[t] != "%f" % want[t]:
            problems.append("t=%d: csv %s, kts-filter %r" % (t, rows[t], want[t]))
    report("csv " + sys.argv[5], len(rows))
if mode == "rrd":           # rrd FETCH-OUTPUT SERIES [raw MSGS]: rrdtool fetch rows
    got = {}
    for line in open(sys.argv[4]):
        if ":" in line and line.split(":")[0].strip().isdigit():
            t, v = line.split(":")
            got[int(t)] = float(v)
    if len(sys.argv) > 6:   # raw: the input values; the gap is unknown
        import json
        want = {}
        for l in open(sys.argv[6]):
            j = json.loads(l)
            if j["plugin"] == sys.argv[5]:
                want[int(j["time"])] = float(j["ds"][0]["value"])
        for k in range(120):
            want.setdefault(t0 + 10 * k, float("nan"))
        # HeartBeat 20: the first point after the 30-s gap (k=92) is unknown too, as rrdtool does
        want[t0 + 920] = float("nan")
    else:
        want = exp[sys.argv[5]]
    n = 0
    # collectd's rrdtool plugin creates a new file at the time of its first value, which is
    # therefore not stored (seen); compare from the second point on.
    want.pop(t0, None)
    for t, w in sorted(want.items()):
        g = got.get(t)
        n += 1
        if g is None:
            problems.append("t=%d: no row in rrdtool fetch" % t)
        elif math.isnan(w) != math.isnan(g) or (not math.isnan(w) and abs(g - w) > 1e-9 * max(1, abs(w))):
            problems.append("t=%d: rrd %r, expected %r" % (t, g, w))
    report("rrd " + sys.argv[5], n)
EOF
)
out=$(python3 -c "$CHECK" csv "$W/expect.csv" $T0 "$C/sensor-s1-filtered/gauge-*" sensor)
st=$?
[ $st -eq 0 ] || diag "$out"
ok $st "despike: filtered csv rows equal kts-filter's output, incl. replaced and filled points ($(echo "$out" | tail -n1))"
out=$(python3 -c "$CHECK" csv "$W/expect.csv" $T0 "$C/net-n1-rate/gauge-*" net)
st=$?
[ $st -eq 0 ] || diag "$out"
ok $st "rate: DERIVE counter → per-second gauge (OutputType gauge) equal to kts-filter ($(echo "$out" | tail -n1))"
ok "$(ls -d "$C"/plain-p1* | wc -l | grep -qx 1; echo $?)" "a series no pipeline matches is written raw only"

# ------------------------------------------------------------------ 9-11 rrdtool
R="$A/rrd/pipe"
TE=$((T0 + 1190))
rrdtool fetch "$R/sensor-s1-filtered/gauge.rrd" AVERAGE -r 10 -s $((T0 - 10)) -e $TE >"$W/fetch-f" 2>&1
out=$(python3 -c "$CHECK" rrd "$W/expect.csv" $T0 "$W/fetch-f" sensor)
st=$?
[ $st -eq 0 ] || { diag "$out"; diag "$(head -5 "$W/fetch-f")"; }
ok $st "rrdtool fetch of the filtered series returns kts-filter's values at the original timestamps ($(echo "$out" | tail -n1))"
rrdtool fetch "$R/sensor-s1/gauge.rrd" AVERAGE -r 10 -s $((T0 - 10)) -e $TE >"$W/fetch-r" 2>&1
out=$(python3 -c "$CHECK" rrd "$W/expect.csv" $T0 "$W/fetch-r" sensor "$W/msgs.jsonl")
st=$?
[ $st -eq 0 ] || diag "$out"
ok $st "rrdtool fetch of the raw series returns the input (gap unknown) ($(echo "$out" | tail -n1))"
PNG="$W/raw-vs-filtered.png"
rrdtool graph "$PNG" --start $((T0 - 10)) --end $TE --width 800 --height 300 \
    --title "pipe/sensor-s1: raw vs despike pipeline" \
    "DEF:raw=$R/sensor-s1/gauge.rrd:value:AVERAGE" \
    "DEF:flt=$R/sensor-s1-filtered/gauge.rrd:value:AVERAGE" \
    "LINE1:raw#cc0000:raw" "LINE2:flt#0044cc:filtered" >"$W/graph.out" 2>&1
st=$?
[ $st -eq 0 ] || diag "$(cat "$W/graph.out")"
magic=$(head -c 8 "$PNG" 2>/dev/null | od -An -tx1 | tr -d ' \n')
ok "$([ $st -eq 0 ] && [ "$magic" = 89504e470d0a1a0a ] && [ "$(stat -c %s "$PNG")" -gt 5000 ]; echo $?)" \
    "rrdtool graph of raw vs filtered renders a PNG ($(stat -c %s "$PNG" 2>/dev/null) bytes)"
[ -n "${KTS_KEEP_PNG:-}" ] && cp "$PNG" "$KTS_KEEP_PNG"

# ------------------------------------------------------------------ 12-14 self-metrics, offsets
last() { cat "$@" 2>/dev/null | grep -v '^epoch' | tail -n1 | cut -d, -f2; }
S="$A/csv/kts-test"
is "$(last "$S"/read_kafka_ts-agg-despike/total_values-replaced-*)/$(last "$S"/read_kafka_ts-agg-despike/total_values-filled-*)/$(last "$S"/read_kafka_ts-agg-despike/count-series-*)" \
    2/2/1.000000 "pipeline self-metrics reach csv: 2 replaced, 2 filled, 1 series"
is "$(last "$S"/read_kafka_ts-agg/total_values-dispatched-*)/$(last "$S"/read_kafka_ts-agg/total_values-written-*)/$(last "$S"/read_kafka_ts-agg/gauge-lag-"$RUN"-in-0-*)" \
    597/597/0.000000 "at least once with pipelines: 597 dispatched, 597 written, lag 0"
collectd_log_has 'shutdown: every dispatched value was written' agg
ok $? "shutdown drains every dispatched value (raw and filtered)"

# ------------------------------------------------------------------ 15-17 configuration errors
bad() { # NAME EXTRA REGEX DESCRIPTION
    local conf st log
    conf=$(aggregator_conf "$1" "$RUN-in" "$2")
    collectd_start "$conf" "$1" 2>/dev/null
    st=$?
    [ $st -eq 0 ] && collectd_stop "$1"
    log="$(cat "$(collectd_logfile "$1")" "$(collectd_dir "$1")"/*.stderr 2>/dev/null)"
    echo "$log" | grep -Eq "$3"
    local found=$?
    [ $found -eq 0 ] || diag "$(echo "$log" | grep -i 'read_kafka_ts\|pipeline' | head -5)"
    ok "$([ $st -ne 0 ] && [ $found -eq 0 ]; echo $?)" "$4"
}
bad bad1 '<Pipeline "r">
  <Filter "difference">
  </Filter>
  OutputType "derive"
  OutputPluginInstanceSuffix "-r"
</Pipeline>' 'pipeline "r": OutputType "derive": data source "value" is DERIVE, but filtered values are gauges' \
    "OutputType with a DERIVE data source is refused at configuration, naming type and data source"
bad bad2 'PipelineMode "copy"
<Pipeline "c">
  <Filter "smooth">
  </Filter>
</Pipeline>' 'pipeline "c": PipelineMode "copy" needs an Output\* option' \
    "copy mode without an Output* option is refused (the copy would be the raw series)"
bad bad3 '<Pipeline "u">
  <Filter "smooth">
    Tua 30
  </Filter>
  OutputHostSuffix "-u"
</Pipeline>' 'Tua' "an unknown filter option is refused, naming it"

# ------------------------------------------------------------------ 18-19 replace mode
P=$(collectd_dir rep)
conf=$(aggregator_conf rep "$RUN-in" 'PipelineMode "replace"
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
  <Filter "fill">
    Method "linear"
    MaxGap 3
  </Filter>
  <Filter "smooth">
    Method "ema"
    Tau 30
  </Filter>
</Pipeline>')
collectd_start "$conf" rep
n=$(wait_rows_dir 360 60 "$P/csv/pipe")
collectd_stop rep
is "$n/$(ls "$P"/csv/pipe | tr '\n' ' ')" "360/net-n1 plain-p1 sensor-s1 " \
    "replace mode: no extra series; the filtered values take the input's name"
out=$(python3 -c "$CHECK" csv "$W/expect.csv" $T0 "$P/csv/pipe/sensor-s1/gauge-*" sensor)
st=$?
[ $st -eq 0 ] || diag "$out"
ok $st "replace mode: sensor-s1 holds kts-filter's output ($(echo "$out" | tail -n1))"

# ------------------------------------------------------------------ 20-21 the example config
E=$(collectd_dir example)
python3 - "$T0" >"$E/msgs.jsonl" <<'PYEOF'
import json, sys
t0 = int(sys.argv[1])
for k in range(6):
    print(json.dumps({"v": 1, "host": "web1", "plugin": "cpu", "plugin_instance": "0",
                      "type": "cpu", "type_instance": "user", "time": t0 + 10 * k,
                      "interval": 10, "ds": [{"name": "value", "type": "derive",
                                              "value": 5000 + 250 * k}]}))
PYEOF
kcat -P -b "$B" -t "$RUN-example" -p 0 -X "$KAFKA_KCAT_ORDER" <"$E/msgs.jsonl" 2>/dev/null
{
    collectd_conf_header example
    collectd_conf_stock csv rrdtool
    collectd_conf_ours read_kafka_ts
    python3 - "$SRCDIR/contrib/examples/aggregator.conf" "$E" "$B" "$RUN" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"^<Plugin (?:csv|rrdtool|read_kafka_ts)>\n.*?^</Plugin>\n", text, re.S | re.M)
s = "".join(blocks).replace("/var/lib/collectd", sys.argv[2])
s = re.sub(r'Property "bootstrap.servers" "[^"]*"', 'Property "bootstrap.servers" "%s"' % sys.argv[3], s)
s = s.replace('DeadLetterTopic "collectd-dlq"', 'DeadLetterTopic "%s-dlq"' % sys.argv[4])
s = s.replace('Topic "collectd"', 'Topic "%s-example"' % sys.argv[4])
s = s.replace('GroupId "collectd-aggregator"', 'GroupId "%s-example"' % sys.argv[4])
print(s)
PYEOF
} >"$E/collectd.conf"
collectd_start "$E/collectd.conf" example
st=$?
n=$(collectd_log_count 'pipeline "(memory|cpu|df)", mode copy' example)
is "$st/$n" 0/3 "contrib/examples/aggregator.conf starts as shipped, with its 3 pipelines in copy mode"
n=$(wait_rows_dir 11 30 "$E/csv/web1")
collectd_stop example
r=$(cat "$E"/csv/web1/cpu-0-rate5m/percent-user-* 2>/dev/null | grep -v '^epoch' | cut -d, -f2 | tr '\n' ' ')
is "$n/$r" "11/25.000000 25.000000 25.000000 25.000000 25.000000 " \
    "example cpu pipeline: 6 raw jiffy counters + 5 smoothed rates (25/s) as percent-user in cpu-0-rate5m"

collectd_tap_status
