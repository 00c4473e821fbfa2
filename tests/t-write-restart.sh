#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# write_kafka_ts: the agent restarts while the broker is down. The REAL
# collectd daemon and a REAL one-node Kafka of this test's own. Two agents side by side, each
# kts_testgen at KTS_RESTART_RATE value lists/s (default 10,000), one write thread:
#   spool    SpoolDirectory set: run 1 writes PRE s with the broker up and DOWN s with it down,
#            is stopped (what librdkafka still holds goes to the front of the spool), run 2
#            starts on the same spool while the broker is still down (replays it first), the
#            broker returns: every value of both runs arrives, per-series order kept (also for
#            the values put back from librdkafka's queue at shutdown).
#   nospool  the same without a spool (SpoolDirectory "none"): what is missing in Kafka
#            equals, exactly, the numbers the shutdown log line and the drop counters give (run 1: not delivered at shutdown
#            + dropped; run 2: dropped).
# Runs are told apart by kts_testgen's Host (spool-1, spool-2, nospool-1, nospool-2); each
# generator finishes its Count before its collectd is stopped, so nothing is left in
# collectd's own write queue (which collectd frees at shutdown, outside the plugin).
# Environment: KTS_RESTART_RATE (10000), KTS_RESTART_PRE (3), KTS_RESTART_DOWN (8).
set -u
. "${KTS_TOP_SRCDIR:?run through make check}/tests/lib/tap.sh"
. "$KTS_TOP_SRCDIR/tests/lib/kafka.sh"
. "$KTS_TOP_SRCDIR/tests/lib/collectd.sh"
. "$KTS_TOP_SRCDIR/tests/lib/write_outage.sh"

RATE=${KTS_RESTART_RATE:-10000}
PRE=${KTS_RESTART_PRE:-3}
DOWN=${KTS_RESTART_DOWN:-8}
SERIES=100
COUNT1=$((RATE * (PRE + DOWN)))
COUNT2=$((RATE * DOWN))

plan 23
kafka_start --brokers 1 || bail_out "kafka-local start failed"
run=$(kafka_topic restart)
kafka_create_topic "$run-spool" 4 >/dev/null || bail_out "cannot create $run-spool"
kafka_create_topic "$run-nospool" 4 >/dev/null || bail_out "cannot create $run-nospool"
SPOOL_DIR=$(collectd_dir spool)/spool
SPOOL_OPTS="  BlockTimeout 1
  FlushTimeout 2
  BufferMessages 50000
  SpoolDirectory \"$SPOOL_DIR\""
NOSPOOL_OPTS="  BlockTimeout 1
  FlushTimeout 2
  BufferMessages 50000
  SpoolDirectory \"none\""

# ---- run 1: broker up, then down; agents stopped while it is down
wo_conf spool1 "$run-spool" spool-1 "$RATE" "$COUNT1" "$SERIES" "$SPOOL_OPTS"
wo_conf nospool1 "$run-nospool" nospool-1 "$RATE" "$COUNT1" "$SERIES" "$NOSPOOL_OPTS"
collectd_start "$(collectd_dir spool1)/collectd.conf" spool1
ok $? "run 1: spool agent starts"
collectd_start "$(collectd_dir nospool1)/collectd.conf" nospool1
ok $? "run 1: nospool agent starts"
sleep "$PRE"
run_ok "broker stopped after $PRE s" kafka_stop_node 1
collectd_wait_log 'kts_testgen: burst done' $((DOWN + 120)) spool1
ok $? "run 1: spool agent dispatched $COUNT1"
collectd_wait_log 'kts_testgen: burst done' $((DOWN + 120)) nospool1
ok $? "run 1: nospool agent dispatched $COUNT1"
sleep 2 # the write thread empties collectd's queue (spool or drop, no waiting: queue overflowing)
collectd_stop spool1 60
ok $? "run 1: spool agent stops while the broker is down"
collectd_stop nospool1 60
# collectd exits with status 1 here: write_kafka_ts's shutdown reports the loss
is "$COLLECTD_STOPPED_BY/$COLLECTD_EXIT_STATUS" TERM/1 "run 1: nospool agent stops while the broker is down (exit status 1: values lost)"
line=$(grep 'write_kafka_ts plugin (spool1): shutdown: the spool keeps' "$(collectd_logfile spool1)")
diag "$line"
requeued=$(sed -n 's/.*bytes of value lists for the next start (\([0-9]*\) of them put back.*/\1/p' <<<"$line")
cmp_ok "${requeued:-0}" -gt 0 "run 1: spool agent: the values librdkafka still held went to the spool ($requeued)"
collectd_log_has 'write_kafka_ts plugin \(spool1\): shutdown: .*value lists were NOT delivered' spool1
ok "$([ $? -ne 0 ]; echo $?)" "run 1: spool agent: nothing reported lost at shutdown"
nlog=$(grep 'write_kafka_ts plugin (nospool1): shutdown:' "$(collectd_logfile nospool1)")
diag "$nlog"
n_undelivered=$(sed -n 's/.*shutdown: \([0-9]*\) value lists were NOT delivered.*/\1/p' <<<"$nlog")
n_dropped=$(sed -n 's/.* \([0-9]*\) dropped before sending.*/\1/p' <<<"$nlog")
n_unsure=$(sed -n 's/.* \([0-9]*\) of them possibly written by the broker.*/\1/p' <<<"$nlog")
cmp_ok "${n_undelivered:-0}" -gt 0 "run 1: nospool agent: the shutdown log says how many were not delivered ($n_undelivered)"
is "$(wo_counter nospool1 dropped-queue_full)" "$n_dropped" "run 1: nospool agent: the dropped-queue_full counter matches the log ($n_dropped)"
collectd_log_has 'value lists were left after shutting down' nospool1
ok "$([ $? -ne 0 ]; echo $?)" "run 1: collectd's own write queue was empty at shutdown"

# ---- run 2: agents start while the broker is still down; then the broker returns
wo_conf spool2 "$run-spool" spool-2 "$RATE" "$COUNT2" "$SERIES" "$SPOOL_OPTS
  FlushTimeout 60"
wo_conf nospool2 "$run-nospool" nospool-2 "$RATE" "$COUNT2" "$SERIES" "$NOSPOOL_OPTS
  FlushTimeout 60"
collectd_start "$(collectd_dir spool2)/collectd.conf" spool2
ok $? "run 2: spool agent starts on the same spool, broker still down"
collectd_log_has 'write_kafka_ts plugin \(spool2\): spool .* holds [0-9]+ bytes from a previous run: replaying them before new value lists' spool2
ok $? "run 2: it finds the spool of run 1 and replays it first"
collectd_start "$(collectd_dir nospool2)/collectd.conf" nospool2
collectd_wait_log 'kts_testgen: burst done' $((DOWN + 120)) spool2
collectd_wait_log 'kts_testgen: burst done' $((DOWN + 120)) nospool2
ok $? "run 2: both agents dispatched $COUNT2 with the broker down"
run_ok "broker started again" kafka_start_node 1
collectd_wait_log 'spool drained' 180 spool2
ok $? "run 2: the spool is drained"
sleep 2
collectd_stop spool2 120
collectd_stop nospool2 120
ok $? "run 2: both agents stop"

# ---- read back
D=$(collectd_dir check)
wo_read "$run-spool" "$D/spool.txt"
wo_read "$run-nospool" "$D/nospool.txt"
res=$(wo_check "$D/spool.txt" spool-1 "$SERIES" "$COUNT1" spool-2 "$SERIES" "$COUNT2")
diag "$res"
r1=$(grep '^spool-1 ' <<<"$res")
r2=$(grep '^spool-2 ' <<<"$res")
is "$(wo_field "$r1" missing)/$(wo_field "$r2" missing)" 0/0 "spool: every value of both runs arrives ($COUNT1 + $COUNT2)"
is "$(wo_field "$r1" order)/$(wo_field "$r1" time)/$(wo_field "$r2" order)/$(wo_field "$r2" time)/$(wo_field "$r1" partitions)" 0/0/0/0/0 \
    "spool: per-series order kept across the restart (queue put back in front of the spool)"
res=$(wo_check "$D/nospool.txt" nospool-1 "$SERIES" "$COUNT1" nospool-2 "$SERIES" "$COUNT2")
diag "$res"
r1=$(grep '^nospool-1 ' <<<"$res")
r2=$(grep '^nospool-2 ' <<<"$res")
# Exact, except for value lists whose request reached the broker but whose answer never came
# (the log line counts them: "possibly written by the broker"): they may or may not be in Kafka.
m1=$(wo_field "$r1" missing)
lo=$((n_undelivered - ${n_unsure:-0} + n_dropped))
hi=$((n_undelivered + n_dropped))
ok "$([ "$m1" -ge "$lo" ] && [ "$m1" -le "$hi" ]; echo $?)" \
    "nospool run 1: missing in Kafka ($m1) = not delivered at shutdown + dropped ($n_undelivered + $n_dropped), less at most the ${n_unsure:-0} possibly written"
n2_dropped=$(sed -n 's/.*write_kafka_ts plugin (nospool2): shutdown: .* \([0-9]*\) dropped before sending.*/\1/p' "$(collectd_logfile nospool2)")
is "$(wo_field "$r2" missing)" "${n2_dropped:-?}" "nospool run 2: missing in Kafka = dropped, exactly (${n2_dropped:-?})"
is "$(wo_field "$r1" order)/$(wo_field "$r2" order)" 0/0 "nospool: what arrived is in per-series order"
done_testing
