#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# read_kafka_ts end to end: REAL collectd daemons and the REAL Kafka broker of the suite.
#   1-5   agent (kts_testgen golden → write_kafka_ts, Format json) → Kafka → aggregator
#         (read_kafka_ts → stock csv): every value list of the golden set in the CSV files
#   6-8   the same golden set written as collectd's JSON (Format collectd), read by an aggregator
#         with output naming (host prefix/suffix, plugin_instance suffix)
#   9-11  stock write_kafka (Format JSON, random partitions) as the producer: all values in csv
#   12-15 a topic salted with garbage, truncated JSON, wrong types (types.db mismatch), invalid
#         UTF-8, next to a valid 1 MB message: each bad one counted, copied to the dead-letter topic with headers
#         naming source partition/offset and the error; every valid message delivered
#   16-17 self-metrics (plugin read_kafka_ts) reach the writers; the shutdown drains
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
e2e_plan 17
RUN=rkt-$$-$(date +%s)
CMP="$SRCDIR/tests/lib/compare_csv.py"

# aggregator NAME TOPIC [extra lines for the read_kafka_ts block]: writes its config
aggregator_conf() {
    local name=$1 topic=$2 extra=${3:-} d
    d=$(collectd_dir "$name")
    {
        collectd_conf_csv_reader "$name" "$B"
        cat <<EOF
  GroupId "$RUN-$name"
  Topic "$topic"
  StartPosition "earliest"
$extra
</Plugin>
EOF
    } >"$d/collectd.conf"
    echo "$d/collectd.conf"
}
# wait_rows DIR N TIMEOUT: until the csv files under DIR (self-metrics excluded) hold at least N
# rows; prints the count
wait_rows() {
    local n=0
    for _ in $(seq $(($3 * 5))); do
        n=$(find "$1" -type f ! -path '*/read_kafka_ts-*' -exec cat {} + 2>/dev/null | grep -vc '^epoch')
        [ "$n" -ge "$2" ] && break
        sleep 0.2
    done
    echo "$n"
}

# ------------------------------------------------------------------ 1-5 golden, json
A=$(collectd_dir agent)
{
    collectd_conf_header agent
    collectd_conf_ours write_kafka_ts kts_testgen
    cat <<EOF
<Plugin write_kafka_ts>
  Property "bootstrap.servers" "$B"
  Topic "$RUN-json"
  Format "json"
</Plugin>
<Plugin write_kafka_ts>
  Property "bootstrap.servers" "$B"
  Topic "$RUN-collectd"
  Format "collectd"
</Plugin>
<Plugin kts_testgen>
  Mode "golden"
  ExpectFile "$A/expect.jsonl"
</Plugin>
EOF
} >"$A/collectd.conf"
collectd_start "$A/collectd.conf" agent &&
    collectd_wait_log 'kts_testgen: golden done: 36 value lists' 30 agent
collectd_stop agent
ok $? "agent: golden set (36 value lists) produced with write_kafka_ts in both formats"

G=$(collectd_dir gold)
conf=$(aggregator_conf gold "$RUN-json")
collectd_start "$conf" gold
ok $? "aggregator with read_kafka_ts + csv starts"
rows=$(wait_rows "$G/csv" 36 30)
ok "$([ "$rows" -ge 36 ]; echo $?)" "36 rows reach the csv writer ($rows)"
# 36 rows can be there before every golden value list is (a series written twice counts
# twice; seen under ASan at load 25: 8 still queued when the aggregator stopped): wait, up to
# 30 s, until the comparison below would pass, then stop
for _ in $(seq 60); do
    python3 "$CMP" golden "$A/expect.jsonl" "$G/csv" >/dev/null 2>&1 && break
    sleep 0.5
done
collectd_stop gold
ok $? "aggregator stops cleanly"
out=$(python3 "$CMP" golden "$A/expect.jsonl" "$G/csv")
st=$?
[ $st -eq 0 ] || diag "$out"
ok $st "Format json: every golden value list in csv, exact ($(echo "$out" | tail -n1))"

# ------------------------------------------------------------------ 6-8 golden, collectd JSON, naming
N=$(collectd_dir named)
conf=$(aggregator_conf named "$RUN-collectd" '  OutputHostPrefix "agg-"
  OutputPluginInstanceSuffix "-r"')
collectd_start "$conf" named
rows=$(wait_rows "$N/csv" 34 30)
for _ in $(seq 60); do # as above: until only the two too-long names are missing (up to 30 s)
    python3 "$CMP" golden "$A/expect.jsonl" "$N/csv" agg- "" -r |
        grep -v "^missing file for .*L1234567890123456789012345678901234567890" |
        grep -qv '^compared' || break
    sleep 0.5
done
collectd_stop named
ok $? "aggregator (collectd JSON input, output naming) stops cleanly"
# Names of 127 bytes cannot take a prefix: those value lists are bad messages (counted).
log=$(cat "$(collectd_logfile named)")
ok "$(echo "$log" | grep -q 'bad message at .* output name too long'; echo $?)" \
    "a value list whose name cannot take the prefix is a bad message, logged with its offset"
out=$(python3 "$CMP" golden "$A/expect.jsonl" "$N/csv" agg- "" -r)
# The golden set has two value lists with a 127-byte host or plugin_instance (L1234567890…).
nlong=$(echo "$out" | grep -c "^missing file for .*L1234567890123456789012345678901234567890")
nother=$(echo "$out" | grep -v "^missing file for .*L1234567890123456789012345678901234567890" | grep -vc '^compared')
diag "$(echo "$out" | tail -n1); $nlong of them: names too long for the prefix/suffix"
[ "$nother" -eq 0 ] || diag "$out"
ok "$([ "$nother" -eq 0 ] && [ "$nlong" -eq 2 ]; echo $?)" \
    "Format collectd + naming: every other golden value list in csv under agg-HOST / PI-r, exact"

# ------------------------------------------------------------------ 9-11 stock write_kafka
S=$(collectd_dir stock)
{
    collectd_conf_header stock
    collectd_conf_stock write_kafka
    collectd_conf_ours kts_testgen
    cat <<EOF
<Plugin write_kafka>
  Property "metadata.broker.list" "$B"
  <Topic "$RUN-stock">
    Format JSON
    StoreRates false
  </Topic>
</Plugin>
<Plugin kts_testgen>
  Mode "burst"
  Count 600
  Series 30
  Rate 3000
</Plugin>
EOF
} >"$S/collectd.conf"
collectd_start "$S/collectd.conf" stock &&
    collectd_wait_log 'kts_testgen: burst done: 600 value lists' 30 stock
sleep 2 # stock write_kafka never flushes: give librdkafka time to send
collectd_stop stock
ok $? "stock write_kafka (Format JSON) produced a 600-value burst"
T=$(collectd_dir stockagg)
conf=$(aggregator_conf stockagg "$RUN-stock")
collectd_start "$conf" stockagg
rows=$(wait_rows "$T/csv/kts-burst" 600 30)
collectd_stop stockagg
ok $? "aggregator stops cleanly"
out=$(python3 "$CMP" burst "$T/csv" 600 30)
st=$?
[ $st -eq 0 ] || diag "$out"
ok $st "collectd's own JSON consumed: $(echo "$out" | tail -n1)"

# ------------------------------------------------------------------ 12-15 bad messages, DLQ
Z=$(collectd_dir salt)
good='{"v":1,"host":"salt","plugin":"p","plugin_instance":"","type":"gauge","type_instance":"","time":1700000000.5,"interval":10,"ds":[{"name":"value","type":"gauge","value":1.5}]}'
{
    echo 'garbage that is not JSON'
    echo "$good" | sed 's/1.5/2.5/; s/000.5/001.5/'
    echo '{"v":1,"host":"salt","plugin":"p","type":"gauge","time":17000'
    echo '{"v":1,"host":"salt","plugin":"p","plugin_instance":"","type":"if_octets","type_instance":"","time":1700000002,"interval":10,"ds":[{"name":"value","type":"gauge","value":1}]}'
    printf '{"v":1,"host":"s\xffalt","plugin":"p","plugin_instance":"","type":"gauge","type_instance":"","time":1700000003,"interval":10,"ds":[{"name":"value","type":"gauge","value":1}]}\n'
    # a valid 1 MB message: collectd's JSON array of 4100 value lists
    python3 -c 'import json; print(json.dumps([{"values":[k],"dstypes":["gauge"],"dsnames":["value"],"time":1700000000+k,"interval":10,"host":"big","plugin":"p","plugin_instance":"x"*64,"type":"gauge","type_instance":"i%d" % k} for k in range(4100)], separators=(",",":")))'
    echo "$good" | sed 's/1.5/3.5/; s/000.5/004.5/'
} >"$Z/msgs"
kcat -P -b "$B" -t "$RUN-salt" -p 0 -X message.max.bytes=2000000 <"$Z/msgs" 2>"$Z/kcat.err" ||
    diag "kcat: $(cat "$Z/kcat.err")"
conf=$(aggregator_conf salt "$RUN-salt" "  DeadLetterTopic \"$RUN-dlq\"")
collectd_start "$conf" salt
rows=$(wait_rows "$Z/csv/salt" 2 30)
big=$(wait_rows "$Z/csv/big" 4100 30)
sleep 2.5 # two self-metric rounds
collectd_stop salt
is "$rows/$big" 2/4100 "the valid messages among the garbage reach csv (2 small, 4100 value lists of a 1 MB one)"
n=$(collectd_log_count "bad message at $RUN-salt \\[0\\] offset [0-9]+ \\([0-9]+ bytes\\): " salt)
ok "$([ "$n" -ge 1 ] && [ "$n" -le 4 ]; echo $?)" "bad messages are logged rate-limited with partition, offset and size ($n lines)"
kcat -C -b "$B" -t "$RUN-dlq" -o beginning -e -q -f '%h|%s\n' 2>/dev/null | grep -a 'kts.source.topic' >"$Z/dlq"
is "$(wc -l <"$Z/dlq")" 4 "4 copies in the dead-letter topic"
ok "$(grep -aq "kts.source.topic=$RUN-salt,kts.source.partition=0,kts.source.offset=0,kts.error=.*|garbage that is not JSON" "$Z/dlq"; echo $?)" \
    "the copy names source topic, partition, offset and the error in its headers"

# ------------------------------------------------------------------ 16-17 self-metrics, drain
sm=$(cat "$Z/csv"/*/read_kafka_ts-*/total_values-decode_errors-* 2>/dev/null | grep -v epoch | tail -n1 | cut -d, -f2)
is "$sm" 4 "self-metric total_values-decode_errors reaches csv"
collectd_log_has 'shutdown: every dispatched value was written' salt
ok $? "shutdown: the read-thread hook drained every dispatched value before the write threads stopped"

collectd_tap_status
