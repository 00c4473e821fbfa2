#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Kafka smoke test on three nodes (a cluster of this test's own; all nodes broker+controller):
#  1. a topic with 4 partitions gets replication factor 3 by default, every replica in sync;
#  2. a producer with acks=all sends 5,000 messages, node 1 is killed (SIGKILL) while the
#     producer waits at that point, the producer sends 5,000 more: every one of the 10,000
#     delivery reports is a success (min.insync.replicas=2 is met by the two nodes left);
#  3. node 1 comes back, is listed in metadata again, and every partition's ISR returns to 3;
#  4. a fresh consumer group reads all 10,000 messages back, each key and payload checked
#     (duplicates from retries are allowed and reported; nothing may be missing).
set -u
. "${KTS_TOP_SRCDIR:?run through make check}/tests/lib/tap.sh"
. "$KTS_TOP_SRCDIR/tests/lib/kafka.sh"

plan 11

# Prints "PARTITIONS REPLICAS_TOTAL ISR_TOTAL" of topic $1 from a metadata request.
topic_replicas() {
    kcat -L -b "$KTS_BOOTSTRAP" -t "$1" -m 5 2>/dev/null | awk '
        /^    partition / {
            n++
            r = $0; sub(/.*replicas: /, "", r); sub(/,? isrs:.*/, "", r)
            i = $0; sub(/.*isrs: /, "", i)
            nr += split(r, a, ","); ni += split(i, b, ",")
        }
        END { printf "%d %d %d\n", n, nr, ni }'
}

kafka_start --brokers 3 || bail_out "kafka-local start --brokers 3 failed"
diag "bootstrap $KTS_BOOTSTRAP"
is "$(kafka_metadata_brokers)" "1 2 3" "metadata lists the 3 brokers"

# ---- 1
t=$(kafka_topic outage)
run_ok "1: create topic $t with 4 partitions (broker default RF)" kafka_create_topic "$t" 4
is "$(topic_replicas "$t")" "4 12 12" "1: 4 partitions, 3 replicas each, all in sync"

# ---- 2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kts-t3node.XXXXXX")
kafka_pc produce -t "$t" -n 10000 -m outage -P 5000 -R "$tmp/ready" -G "$tmp/go" -T 180 \
    >"$tmp/produce.out" 2>"$tmp/produce.err" &
producer=$!
kafka_track_pid "$producer"
for ((i = 0; i < 600; i++)); do
    [ -f "$tmp/ready" ] || ! kill -0 "$producer" 2>/dev/null && break
    sleep 0.1
done
is "$(cat "$tmp/ready" 2>/dev/null)" 5000 "2: the producer paused after queueing 5,000 messages"
run_ok "2: node 1 killed while the producer is mid-way" kafka_stop_node 1 --kill
touch "$tmp/go"
wait "$producer"
ok $? "2: the producer finished with node 1 down"
is "$(cat "$tmp/produce.out")" "produced=10000 delivered=10000 failed=0" \
    "2: all 10,000 delivery reports are successes (acks=all, min ISR 2 of 3)" ||
    diag "$(cat "$tmp/produce.err")"

# ---- 3
run_ok "3: node 1 starts again" kafka_start_node 1
is "$(kafka_metadata_brokers)" "1 2 3" "3: metadata lists the 3 brokers again"
# The restarted node catches up and rejoins every ISR; bounded wait (no timing asserted).
for ((i = 0; i < 600; i++)); do
    got=$(topic_replicas "$t")
    [ "$got" = "4 12 12" ] && break
    sleep 0.1
done
is "$got" "4 12 12" "3: every partition's ISR is back to 3"

# ---- 4
out=$(kafka_pc consume -t "$t" -n 10000 -m outage -T 90)
rc=$?
diag "consumer: $out"
ok "$rc" "4: a fresh consumer group reads all 10,000 distinct messages, all valid"

rm -rf "$tmp"
done_testing
