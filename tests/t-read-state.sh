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
# shellcheck source=tests/lib/state.sh
. "$SRCDIR/tests/lib/state.sh"
e2e_plan 9
RUN=rkts-$$-$(date +%s)
N=600

state_pipeline 5 >"$W/pipelines.conf"
# 4 series s1..s4, N points 10 s apart, spikes now and then; s1, s2 go to partition 0, s3, s4 to
# partition 1, the first half in segment 0, the second in segment 1.
state_series "$T0" "$N" 4 2
"$KF" --config "$W/pipelines.conf" "$W/all.jsonl" >"$W/expect.csv" 2>"$W/kts-filter.err"
ok $? "kts-filter computes the uninterrupted run's output ($(grep -c despike "$W/expect.csv") rows)"

"$BUILDDIR/tests/kafka-pc" create -b "$B" -t "$RUN-in" -p 2 >/dev/null 2>"$W/create.err" &&
    state_produce "$RUN-in" 0 2
ok $? "input topic of 2 partitions with the first half of the stream"

conf=$(state_conf agg "$RUN" "$RUN-in" "$RUN-state" "$W/pipelines.conf" auto.commit.interval.ms=500)
D=$(collectd_dir agg)

collectd_start "$conf" agg
ok $? "aggregator with StateTopic starts"
state_wait_present 1200 "$W/expect.csv" "$D/csv"
ok $? "it writes the first half's filtered rows ($STATE_PRESENT present)"
# Checkpointed and committed (CommitInterval 1, StateInterval 1, auto.commit.interval.ms 500):
# the restart goes on from there, so without the restored state the filters would start afresh
# (values differ).
sleep 4
state_kill agg
ok $? "aggregator killed with SIGKILL (status $STATE_KILLED, $(state_present "$W/expect.csv" "$D/csv") present)"

state_produce "$RUN-in" 1 2
collectd_start "$conf" agg
ok $? "restarted with the second half in the topic"
# The log keeps the first run's lines: wait for the second "installed" of each partition.
state_wait_installed 2 agg 60 1 0
ok $? "the state of both partitions was installed"
state_wait_check "$W/expect.csv" "$D/csv"
out=$(state_check "$W/expect.csv" "$D/csv")
st=$?
diag "$out"
ok $st "after SIGKILL and restart every filtered value equals the uninterrupted run's"
collectd_stop agg
ok $? "the restarted aggregator stops cleanly"
