#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# write_kafka_ts end to end: the REAL collectd daemon (Debian collectd-core) and the REAL Kafka
# broker of the suite ($KTS_BOOTSTRAP, started by tests/run-suite with contrib/kafka/kafka-local).
#   1-9   golden set (every DS type, multi-DS, meta of every type, UTF-8 and control characters,
#         NaN/±Inf, extreme integers, sub-second times) through two instances at once, Format
#         json and Format collectd, read back with kcat and compared value by value
#   10-13 self-metrics are written to Kafka like any other value
#   14-17 loop prevention: value lists carrying read_kafka_ts's marker are skipped and counted
#   18-20 an invalid configuration stops collectd's start-up, naming every bad option
#   21-24 a burst over 1000 series: every value list delivered; each key on the partition the
#         Java client's murmur2 partitioner picks (checked with Kafka's own Utils.murmur2)
#   25-30 the start-up topic check (kafka-local has auto.create.topics.enable=true): a new topic
#         is reported as created by the broker, with its partitions; an existing one is not
#         reported; with Property allow.auto.create.topics "false" the topic is reported missing
#         and stays missing; an address with no listener ends the check at once (collectd starts)
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
e2e_plan 30
RUN=e2e-$$-$(date +%s)

# Reads a whole topic (every partition, from the beginning) as kcat JSON envelopes.
read_topic() { kcat -C -b "$B" -t "$1" -o beginning -e -J -q 2>/dev/null; }
# Waits until the topic holds at least N messages (bounded); prints the count.
wait_topic() {
    local n=0
    for _ in $(seq 60); do
        n=$(read_topic "$1" | wc -l)
        [ "$n" -ge "$2" ] && break
        sleep 0.5
    done
    echo "$n"
}

# ------------------------------------------------------------------ 1-13 golden, two formats
D=$(collectd_dir golden)
{
    collectd_conf_header golden
    collectd_conf_ours write_kafka_ts kts_testgen
    cat <<EOF
<Plugin write_kafka_ts>
  Property "bootstrap.servers" "$B"
  Topic "$RUN-json"
  Format "json"
  Key "series"
</Plugin>
<Plugin write_kafka_ts>
  Property "bootstrap.servers" "$B"
  Property "compression.codec" "zstd"
  Topic "$RUN-collectd"
  Format "collectd"
</Plugin>
<Plugin kts_testgen>
  Mode "golden"
  ExpectFile "$D/expect.jsonl"
</Plugin>
EOF
} >"$D/collectd.conf"

collectd_start "$D/collectd.conf" golden
ok $? "collectd starts with two write_kafka_ts instances"
collectd_wait_log 'kts_testgen: golden done: 36 value lists' 30 golden
ok $? "the golden set (36 value lists) is dispatched"
# Let at least two self-metric rounds happen (Interval 1) before stopping.
sleep 2.5
collectd_stop golden
ok $? "collectd stops cleanly"
collectd_log_has "write_kafka_ts plugin \\($RUN-json\\): shutdown: all [0-9]+ value lists sent were delivered" golden
ok $? "json instance: shutdown reports everything delivered"
collectd_log_has "write_kafka_ts plugin \\($RUN-collectd\\): shutdown: all [0-9]+ value lists sent were delivered" golden
ok $? "collectd instance: shutdown reports everything delivered"
collectd_log_has "\\[warning\\] write_kafka_ts plugin \\($RUN-json\\): topic \"$RUN-json\" did not exist: the broker created it automatically \\(auto.create.topics.enable\\) with 4 partitions" golden
ok $? "25: a new topic: WARNING at start-up that the broker created it (4 partitions, kafka-local)"

read_topic "$RUN-json" >"$D/json.jsonl"
read_topic "$RUN-collectd" >"$D/collectd.jsonl"
out=$(python3 "$SRCDIR/tests/lib/compare_golden.py" "$D/expect.jsonl" "$D/json.jsonl" json)
st=$?
[ $st -eq 0 ] || diag "$out"
ok $st "Format json: all 36 value lists read back identical (exact times, doubles bit for bit, typed meta)"
is "$(echo "$out" | tail -n1)" "compared 36 value lists, 0 problems" "Format json: comparison summary"
out=$(python3 "$SRCDIR/tests/lib/compare_golden.py" "$D/expect.jsonl" "$D/collectd.jsonl" collectd)
st=$?
[ $st -eq 0 ] || diag "$out"
ok $st "Format collectd (zstd-compressed): all 36 value lists read back, as stock format_json writes them"
first=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["payload"][:1])' <"$D/collectd.jsonl")
is "$first" "[" "Format collectd: the payload is a JSON array, as stock write_kafka's"

# Self-metrics: plugin write_kafka_ts, type total_values, in the topic like any other value.
selfm() { # TOPIC TYPE_INSTANCE -> the last value
    python3 - "$1" "$2" <<'EOF'
import json, sys
last = None
for line in open(sys.argv[1], encoding='utf-8'):
    o = json.loads(json.loads(line)['payload'])
    if o.get('plugin') == 'write_kafka_ts' and o.get('type') == 'total_values' and o.get('type_instance') == sys.argv[2]:
        if last is None or o['time'] > last[0]:
            last = (o['time'], o['ds'][0]['value'])
print(last[1] if last else 'none')
EOF
}
sent=$(selfm "$D/json.jsonl" sent)
ok "$([ "$sent" != none ] && [ "$sent" -ge 36 ]; echo $?)" "self-metric sent reaches Kafka ($sent ≥ 36)"
delivered=$(selfm "$D/json.jsonl" delivered)
ok "$([ "$delivered" != none ] && [ "$delivered" -ge 36 ]; echo $?)" "self-metric delivered reaches Kafka ($delivered ≥ 36)"
is "$(selfm "$D/json.jsonl" dropped-queue_full)" 0 "self-metric dropped-queue_full is 0"
is "$(grep -c '"queue_length' "$D/json.jsonl" | awk '{print ($1 > 0)}')" 1 "self-metric queue_length is reported"

# ------------------------------------------------------------------ 14-17 loop prevention
L=$(collectd_dir loop)
{
    collectd_conf_header loop
    collectd_conf_ours write_kafka_ts kts_testgen
    cat <<EOF
<Plugin write_kafka_ts>
  Property "bootstrap.servers" "$B"
  Topic "$RUN-loop"
</Plugin>
<Plugin kts_testgen>
  Mode "burst"
  Count 1000
  Series 10
  MetaBoolean "kafka_ts:dispatched" true
</Plugin>
EOF
} >"$L/collectd.conf"
collectd_start "$L/collectd.conf" loop
ok $? "collectd starts with a generator that marks its values"
collectd_wait_log 'kts_testgen: burst done: 1000 value lists' 30 loop
ok $? "1000 marked value lists dispatched"
sleep 2.5
collectd_stop loop
read_topic "$RUN-loop" >"$L/got.jsonl"
is "$(grep -c '\\"plugin\\":\\"kts_testgen\\"' "$L/got.jsonl")" 0 "no marked value list reached Kafka"
is "$(selfm "$L/got.jsonl" skipped-marked)" 1000 "all 1000 counted as skipped-marked"

# ------------------------------------------------------------------ 18-20 bad configuration
X=$(collectd_dir bad)
{
    collectd_conf_header bad
    collectd_conf_ours write_kafka_ts
    cat <<EOF
<Plugin write_kafka_ts>
  Property "bootstrap.servers" "$B"
  Property "security.protocol" "carrier-pigeon"
  Format "xml"
  BufferMessages 0
</Plugin>
EOF
} >"$X/collectd.conf"
collectd_start "$X/collectd.conf" bad 2>/dev/null
ok "$([ $? -ne 0 ]; echo $?)" "an invalid configuration stops collectd's start-up"
log="$(cat "$(collectd_logfile bad)" "$(collectd_dir bad)"/*.stderr 2>/dev/null)"
ok "$(echo "$log" | grep -q 'invalid value "xml" for option "Format"; allowed: one of "json", "collectd"'; echo $?)" \
    "the message names the option, the value and the allowed values"
ok "$(echo "$log" | grep -q 'option "Topic" is required' && echo "$log" | grep -q 'Invalid value "carrier-pigeon" for configuration property "security.protocol"' && echo "$log" | grep -q 'invalid value 0 for option "BufferMessages"'; echo $?)" \
    "every problem is reported, including librdkafka's message for a bad property"

# ------------------------------------------------------------------ 21-24 burst, partitions
U=$(collectd_dir burst)
{
    collectd_conf_header burst
    collectd_conf_ours write_kafka_ts kts_testgen
    cat <<EOF
<Plugin write_kafka_ts>
  Property "bootstrap.servers" "$B"
  Topic "$RUN-burst"
</Plugin>
<Plugin kts_testgen>
  Mode "burst"
  Count 20000
  Series 1000
</Plugin>
EOF
} >"$U/collectd.conf"
collectd_start "$U/collectd.conf" burst
collectd_wait_log 'kts_testgen: burst done: 20000 value lists' 60 burst
ok $? "20000 value lists over 1000 series dispatched"
# Dispatched is not written: collectd discards what its write queue still holds when it stops
# ("N value lists were left after shutting down the write threads"; 1,846 under TSan once).
# So stop only once the topic holds them all (or the bounded wait ends).
wait_topic "$RUN-burst" 20000 >/dev/null
collectd_stop burst
collectd_log_has "shutdown: all [0-9]+ value lists sent were delivered; 0 dropped" burst
ok $? "the plugin reports every value list delivered, none dropped"
wait_topic "$RUN-burst" 20000 >/dev/null # one read can come back short on a loaded broker
read_topic "$RUN-burst" >"$U/got.jsonl"
is "$(grep -c 'kts_testgen' "$U/got.jsonl")" 20000 "all 20000 are in the topic"
# The topic was auto-created with the broker's num.partitions (kafka-local: 4).
nparts=$(kcat -L -b "$B" -t "$RUN-burst" 2>/dev/null | grep -c 'partition [0-9]*, leader')
KAFKA_LIB=${KTS_KAFKA_CACHE:-$SRCDIR/contrib/kafka/.cache}/lib
out=$(cat "$U/got.jsonl" "$D/json.jsonl" | java -cp "$KAFKA_LIB/*" "$SRCDIR/tests/java/Murmur2Partition.java" "$nparts" 2>&1)
st=$?
diag "$out"
ok $st "every key (incl. UTF-8 and control characters) is on the Java client's partition ($nparts partitions)"

# ------------------------------------------------------------------ 26-30 the topic check
T=$(collectd_dir topics)
NOPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
    collectd_conf_header topics
    collectd_conf_ours write_kafka_ts
    cat <<EOF
<Plugin write_kafka_ts>
  Property "bootstrap.servers" "$B"
  Topic "$RUN-json"
  FlushTimeout 1
</Plugin>
<Plugin write_kafka_ts>
  Property "bootstrap.servers" "$B"
  Property "allow.auto.create.topics" "false"
  Topic "$RUN-nocreate"
  FlushTimeout 1
</Plugin>
<Plugin write_kafka_ts>
  Property "bootstrap.servers" "127.0.0.1:$NOPORT"
  Topic "$RUN-nobroker"
  FlushTimeout 1
</Plugin>
EOF
} >"$T/collectd.conf"
collectd_start "$T/collectd.conf" topics
ok $? "26: collectd starts with an existing topic, one it may not create and no broker"
collectd_stop topics >/dev/null # the last two cannot deliver their self-metrics: not asserted
ok "$(collectd_log_has "\\($RUN-json\\): (topic|could not check)" topics; [ $? -ne 0 ]; echo $?)" \
    "27: an existing topic: nothing said about it"
collectd_log_has "\\[warning\\] write_kafka_ts plugin \\($RUN-nocreate\\): topic \"$RUN-nocreate\" does not exist and auto-creation is off \\(Property \"allow.auto.create.topics\" is \"false\"\\): value lists for it are lost" topics
ok $? "28: allow.auto.create.topics false: WARNING that the topic does not exist and will not be created"
# (kcat -L for all topics: asking for this one topic would make the broker create it)
ok "$(kcat -L -b "$B" 2>/dev/null | grep -q "topic \"$RUN-nocreate\""; [ $? -ne 0 ]; echo $?)" \
    "29: ... and it was not created"
collectd_log_has "write_kafka_ts plugin \\($RUN-nobroker\\): could not check whether topic \"$RUN-nobroker\" exists: no broker reachable at start-up" topics
ok $? "30: no listener at the address: the check ends at once (all brokers down), with a NOTICE"

collectd_tap_status
