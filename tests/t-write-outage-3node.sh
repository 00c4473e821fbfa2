#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# write_kafka_ts through outages of a three-node cluster: the REAL collectd
# daemon, a REAL three-node Kafka of this test's own (every node broker + controller; topic
# with 4 partitions, replication factor 3, min.insync.replicas 2, acks=all). Two agents at
# KTS_OUTAGE_RATE value lists/s each (default 10,000), one write thread each:
#   mem    BufferMessages sized for the outage, no spool (SpoolDirectory "none")
#   spool  BufferMessages 50,000 and SpoolDirectory
# Timeline: PRE s all up; node 2 stopped (TERM) for ONE s: leaders move, writes go on; then
# nodes 1 and 3 stopped too: ALL s with no broker and no controller quorum; then all three
# started again (node 1 first, which waits for a quorum, then 2 and 3). Checks: every value of
# both agents arrives, each series on one partition; the spool agent spooled, replayed
# everything and dropped nothing. Per-series order (values and timestamps) is checked: with
# enable.idempotence (write_kafka_ts's default from librdkafka 2.3.0 on) it must hold; with
# librdkafka 2.0.2, where idempotence is unsafe and off, it is reported as a TODO: across this
# full-cluster outage librdkafka without idempotence can write a retried batch after a later one
# (docs/write_kafka_ts.md, Ordering). (The last node is killed: without a controller quorum it
# cannot shut down in order.)
# Environment: KTS_OUTAGE_RATE (10000), KTS_OUTAGE_PRE (3), KTS_OUTAGE_ONE (8),
# KTS_OUTAGE_ALL (15), KTS_OUTAGE_POST (2).
set -u
. "${KTS_TOP_SRCDIR:?run through make check}/tests/lib/tap.sh"
. "$KTS_TOP_SRCDIR/tests/lib/kafka.sh"
. "$KTS_TOP_SRCDIR/tests/lib/collectd.sh"
. "$KTS_TOP_SRCDIR/tests/lib/write_outage.sh"

RATE=${KTS_OUTAGE_RATE:-10000}
PRE=${KTS_OUTAGE_PRE:-3}
ONE=${KTS_OUTAGE_ONE:-8}
ALL=${KTS_OUTAGE_ALL:-15}
POST=${KTS_OUTAGE_POST:-2}
SERIES=100
COUNT=$((RATE * (PRE + ONE + ALL + POST)))
MEM_MSGS=$((RATE * (ONE + ALL) * 3 / 2 + 100000))

plan 21
kafka_start --brokers 3 || bail_out "kafka-local start --brokers 3 failed"
diag "cluster up at $SECONDS s; bootstrap $KTS_BOOTSTRAP; $RATE value lists/s; one node down $ONE s, then all down $ALL s"
run=$(kafka_topic outage3)
for a in mem spool; do
    kafka_create_topic "$run-$a" 4 >/dev/null || bail_out "cannot create topic $run-$a"
done
SPOOL_DIR=$(collectd_dir spool)/spool
wo_conf mem "$run-mem" mem "$RATE" "$COUNT" "$SERIES" "  BufferMessages $MEM_MSGS
  BufferBytes 536870912
  FlushTimeout 120
  SpoolDirectory \"none\""
wo_conf spool "$run-spool" spool "$RATE" "$COUNT" "$SERIES" "  BufferMessages 50000
  BlockTimeout 1
  FlushTimeout 120
  SpoolDirectory \"$SPOOL_DIR\""
started=0
for a in mem spool; do
    collectd_start "$(collectd_dir $a)/collectd.conf" $a && started=$((started + 1))
done
is "$started" 2 "two agents (mem, spool) start"
sleep "$PRE"
run_ok "node 2 stopped (TERM)" kafka_stop_node 2
sleep "$ONE"
run_ok "node 1 stopped" kafka_stop_node 1
# The last node has no controller quorum to shut down in order with (TERM waits, then kafka-local
# KILLs it after 20 s): kill it outright, as a crash of the whole cluster would.
run_ok "node 3 killed (SIGKILL): no broker left" kafka_stop_node 3 --kill
sleep "$ALL"
# Node 1 alone has no controller quorum: kafka-local's wait for it to be ready ends at the
# timeout (the node keeps running); nodes 2 and 3 then complete the quorum.
KTS_KAFKA_START_TIMEOUT=2 kafka_start_node 1 >/dev/null 2>&1
run_ok "node 2 started again (quorum with node 1)" kafka_start_node 2
run_ok "node 3 started again" kafka_start_node 3
is "$(kafka_metadata_brokers)" "1 2 3" "metadata lists the 3 brokers again"
diag "all nodes back at $SECONDS s"

for a in mem spool; do
    collectd_wait_log 'kts_testgen: burst done' $((PRE + ONE + ALL + POST + 120)) $a
    ok $? "$a: all $COUNT value lists dispatched"
done
collectd_wait_log 'spool drained' 180 spool
ok $? "spool: the spool is drained"
for a in mem spool; do
    for _ in $(seq 120); do
        q=$(ls "$(collectd_dir $a)"/csv/*/write_kafka_ts-$a/queue_length-* 2>/dev/null | tail -n 1)
        [ -n "$q" ] && [ "$(tail -n 1 "$q" | awk -F, '{ printf "%d", $2 }')" = 0 ] && break
        sleep 1
    done
done
spooled=$(wo_counter spool spooled)
replayed=$(wo_counter spool replayed)
for a in mem spool; do
    collectd_stop $a 180
    ok $? "$a: collectd stops cleanly"
done
diag "agents stopped at $SECONDS s"
for a in mem spool; do
    D=$(collectd_dir $a)
    wo_read "$run-$a" "$D/got.txt"
    res=$(wo_check "$D/got.txt" $a "$SERIES" "$COUNT")
    diag "$res"
    is "$(wo_field "$res" missing)" 0 "$a: every value arrives ($COUNT)"
    is "$(wo_field "$res" partitions)" 0 "$a: one partition per series"
    # Per-series order: without idempotence librdkafka can write a produce request it retried
    # (NOT_ENOUGH_REPLICAS while the restarted cluster rebuilds its ISRs) after a later one,
    # max.in.flight 1 notwithstanding. Seen once with 2.0.2 (CI asan phase, commit afe8f66):
    # spool agent, one block of 4,026 values of partition 3 written after the next request;
    # reproduced with the mem agent (no spool): one block of 4,094 values. write_kafka_ts turns
    # enable.idempotence on where librdkafka's idempotent producer is safe (>= 2.3.0,
    # docs/LIBRDKAFKA.md): there this is an ordinary test; a TODO naming the limitation only
    # where it is not (2.0.2). docs/write_kafka_ts.md "Ordering", docs/RELIABILITY.md section 1.
    # The check still runs and prints its result (a TODO failure is listed by prove, not hidden).
    TAP_TODO=$(kafka_rdkafka_limit idempotence)
    is "$(wo_field "$res" order)/$(wo_field "$res" time)" 0/0 \
        "$a: per-series order kept (out of order: $(wo_field "$res" blocks) block(s))"
    TAP_TODO=""
done
diag "read back and checked at $SECONDS s"
cmp_ok "$spooled" -gt 0 "spool: values were spooled ($spooled)"
is "$replayed" "$spooled" "spool: every spooled value was replayed"
is "$(wo_counter spool dropped-spool_full)/$(wo_counter spool dropped-queue_full)" 0/0 "spool: nothing dropped"
done_testing
