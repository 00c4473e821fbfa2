#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# read_kafka_ts keeps each series in time order through collectd's write threads (REAL collectd
# with its default WriteThreads 5, stock rrdtool and csv writers, REAL Kafka):
#   1     a backlog of SERIES × POINTS time-ordered values (key = series) is in Kafka
#   2-3   replay with the test knob OrderedDispatch false (KTS_TEST_KNOBS=1; every value
#         dispatched at once, as a naive consumer would): all values pass the write path;
#         "Value too old", csv rows out of order, csv rows lost and rrdtool errors are reported
#         (not asserted: they depend on scheduling)
#   4-7   replay with the default OrderedDispatch true: all values reach csv, collectd's cache
#         logs no "Value too old", no csv file has a row out of time order, rrdtool logs no error
#         (the rrdtool plugin drops older values silently in its own cache, so the cache's
#         "Value too old" and the csv order are the visible measures)
# docs/read_kafka_ts.md quotes the numbers this prints.
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
e2e_plan 7
RUN=rkto-$$-$(date +%s)
SERIES=${KTS_ORDER_SERIES:-10}
POINTS=${KTS_ORDER_POINTS:-2000}
TOTAL=$((SERIES * POINTS))

rows() { find "$1" -type f ! -path '*/read_kafka_ts-*' -exec cat {} + 2>/dev/null | grep -vc '^epoch'; }
wait_rows() { # DIR N TIMEOUT
    local n=0
    for _ in $(seq $(($3 * 5))); do
        n=$(rows "$1")
        [ "$n" -ge "$2" ] && break
        sleep 0.2
    done
    echo "$n"
}

# ------------------------------------------------------------------ 1 backlog
D=$(collectd_dir gen)
python3 - "$SERIES" "$POINTS" >"$D/msgs" <<'EOF'
import json, sys
series, points = int(sys.argv[1]), int(sys.argv[2])
t0 = 1700000000
for k in range(points):              # time order, series interleaved as an agent sends them
    for s in range(series):
        m = {"v": 1, "host": "order", "plugin": "o", "plugin_instance": "s%d" % s,
             "type": "gauge", "type_instance": "", "time": t0 + 10 * k, "interval": 10,
             "ds": [{"name": "value", "type": "gauge", "value": k}]}
        print("order/o-s%d/gauge\t%s" % (s, json.dumps(m, separators=(",", ":"))))
EOF
kcat -P -b "$B" -t "$RUN" -X "$KAFKA_KCAT_ORDER" -K $'\t' <"$D/msgs" 2>"$D/kcat.err"
n=$(kcat -C -b "$B" -t "$RUN" -o beginning -e -q -f 'x\n' 2>/dev/null | wc -l)
is "$n" "$TOTAL" "backlog of $SERIES series × $POINTS points in Kafka"

replay() { # NAME ORDERED
    local d
    d=$(collectd_dir "$1")
    {
        collectd_conf_header "$1"
        echo "WriteThreads 5"
        collectd_conf_stock csv rrdtool
        collectd_conf_ours read_kafka_ts
        cat <<EOF
<Plugin csv>
  DataDir "$d/csv"
</Plugin>
<Plugin rrdtool>
  DataDir "$d/rrd"
</Plugin>
<Plugin read_kafka_ts>
  Property "bootstrap.servers" "$B"
  GroupId "$RUN-$1"
  Topic "$RUN"
  OrderedDispatch $2
</Plugin>
EOF
    } >"$d/collectd.conf"
    collectd_start "$d/collectd.conf" "$1" || return 1
    wait_rows "$d/csv/order" "$TOTAL" 50 >"$d/rows"
    collectd_stop "$1"
}
# Rows of a csv file whose time is not after the previous row's: what a writer saw out of order.
csv_out_of_order() {
    python3 - "$(collectd_dir "$1")/csv/order" <<'EOF'
import glob, sys
bad = 0
for path in glob.glob(sys.argv[1] + "/*/*"):
    last = None
    for line in open(path):
        if line.startswith("epoch"):
            continue
        t = float(line.split(",")[0])
        if last is not None and t <= last:
            bad += 1
        last = t if last is None else max(last, t)
print(bad)
EOF
}
too_old() { collectd_log_count 'uc_update: Value too old' "$1"; }
rrd_rejected() { collectd_log_count 'rrdtool plugin: .*(illegal attempt|minimum one second|failed)' "$1"; }

# ------------------------------------------------------------------ 2-3 naive
# OrderedDispatch false is a test knob (plugins/read_kafka_ts.c): refused without KTS_TEST_KNOBS=1.
export KTS_TEST_KNOBS=1
replay naive false
unset KTS_TEST_KNOBS
collectd_log_has "every dispatched value was written \\($TOTAL written in total\\)" naive
ok $? "OrderedDispatch false: all $TOTAL values passed the write path"
diag "OrderedDispatch false, WriteThreads 5: $(too_old naive) 'Value too old', $(csv_out_of_order naive) csv rows out of order, $(rrd_rejected naive) rrdtool errors, $(cat "$(collectd_dir naive)/rows") csv rows, of $TOTAL values"
ok 0 "measured without ordering (numbers above; csv and rrdtool race on a file written by two threads at once)"

# ------------------------------------------------------------------ 4-7 ordered (default)
replay ordered true
ok $? "OrderedDispatch true: replay stops cleanly"
is "$(cat "$(collectd_dir ordered)/rows")" "$TOTAL" "OrderedDispatch true: all $TOTAL values reach csv"
is "$(too_old ordered)" 0 "OrderedDispatch true, WriteThreads 5: no 'uc_update: Value too old'"
is "$(csv_out_of_order ordered)/$(rrd_rejected ordered)" 0/0 "OrderedDispatch true: no csv row out of order, no rrdtool error"
diag "OrderedDispatch true, WriteThreads 5: $(too_old ordered) 'Value too old', $(csv_out_of_order ordered) csv rows out of order, $(rrd_rejected ordered) rrdtool errors, of $TOTAL values"

collectd_tap_status
