#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Kafka smoke test on one node (the suite's shared cluster when it has one):
#  1. a topic with 4 partitions takes 10,000 messages with acks=all, every delivery report is a
#     success, and a fresh consumer group reads back exactly those 10,000 (each key and payload
#     checked, no duplicates, all 4 partitions used); the partitions' end offsets add up to 10,000;
#  2. librdkafka 2.0.2 produces lz4- and zstd-compressed batches to the Kafka 4.x broker: they
#     are consumed back intact, and the broker's log segment says the batches are compressed
#     with that codec (librdkafka silently drops compression on brokers it misjudges, #4948).
set -u
. "${KTS_TOP_SRCDIR:?run through make check}/tests/lib/tap.sh"
. "$KTS_TOP_SRCDIR/tests/lib/kafka.sh"

plan 14

kafka_shared || bail_out "no Kafka cluster to test against"
# The on-disk check needs the cluster's data directory: start our own if the shared one is not
# a kafka-local cluster we can look into.
if ! kafka_data_dir >/dev/null; then
    kafka_start || bail_out "kafka-local start failed"
fi
diag "bootstrap $KTS_BOOTSTRAP"

# ---- 1. 10,000 messages through 4 partitions
t=$(kafka_topic smoke)
run_ok "1: create topic $t with 4 partitions" kafka_create_topic "$t" 4
out=$(kafka_pc produce -t "$t" -n 10000 -m smoke)
ok $? "1: produce 10,000 messages with acks=all"
is "$out" "produced=10000 delivered=10000 failed=0" "1: every delivery report is a success"
out=$(kafka_pc consume -t "$t" -n 10000 -m smoke -T 60)
ok $? "1: a fresh consumer group reads them all back"
is "$out" "consumed=10000 distinct=10000 duplicates=0 invalid=0 foreign=0 partitions=4" \
    "1: exactly the 10,000 messages produced, from 4 partitions"
sum=0
for p in 0 1 2 3; do
    # kcat -Q with timestamp -1 answers the partition's end offset ("topic [p] offset N").
    end=$(kcat -Q -b "$KTS_BOOTSTRAP" -t "$t:$p:-1" 2>/dev/null | sed -n 's/.* offset \([0-9][0-9]*\)$/\1/p')
    sum=$((sum + ${end:-0}))
done
is "$sum" 10000 "1: the 4 partitions' end offsets add up to 10,000"

# ---- 2. compressed produce
data=$(kafka_data_dir)
for codec in lz4 zstd; do
    tz=$(kafka_topic "z$codec")
    kafka_create_topic "$tz" 1 >/dev/null
    out=$(kafka_pc produce -t "$tz" -n 1000 -m "$codec" -z "$codec")
    is "$out" "produced=1000 delivered=1000 failed=0" "2: $codec: 1000 messages delivered"
    out=$(kafka_pc consume -t "$tz" -n 1000 -m "$codec" -T 60)
    is "$out" "consumed=1000 distinct=1000 duplicates=0 invalid=0 foreign=0 partitions=1" \
        "2: $codec: read back intact"
    dump=$(kafka_tool kafka.tools.DumpLogSegments --files "$data/node-1/$tz-0/00000000000000000000.log" 2>&1)
    # librdkafka sends a batch uncompressed when compressing does not make it smaller, as for
    # a batch of one small message: look at the batches of more than one message.
    batches=$(sed -n 's/.* count: \([0-9]*\) .* compresscodec: \([a-z0-9]*\) .*/\1 \2/p' <<<"$dump")
    codecs=$(awk '$1 > 1 { print $2 }' <<<"$batches" | sort -u | paste -sd,)
    is "$codecs" "$codec" "2: $codec: the broker stored every multi-message batch as $codec" ||
        diag "$(head -n 6 <<<"$dump")"
    is "$(awk '{ n += $1 } END { print n + 0 }' <<<"$batches")" 1000 \
        "2: $codec: the log segment holds the 1000 messages"
done

done_testing
