#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# read_kafka_ts StateTopic on a three-node cluster of this test's own (every node broker +
# controller, replication factor 3, min.insync.replicas 2), with the leader of a state partition
# down while the aggregator restores: the REAL collectd with read_kafka_ts (t-read-state.sh's
# despiking and smoothing pipeline → csv), killed with SIGKILL after the first half of the
# stream; the node leading state partition 0 is killed, the second half produced, the
# aggregator restarted: the restore reads the state from the new leader and the filtered csv
# equals kts-filter's uninterrupted run value for value.
#   1     three nodes up
#   2     kts-filter computes the uninterrupted run's output
#   3     input topic of 2 partitions (RF 3), first half in it
#   4-5   aggregator starts, creates the state topic (3 replicas per partition), writes the
#         first half's filtered rows
#   6     killed with SIGKILL
#   7     the node leading state partition 0 is killed; another node leads it
#   8     second half produced (acks all: 2 of 3 in sync), aggregator restarted
#   9     the state of both partitions installed with the node down, records restored
#   10    every filtered value of the 4 series equals kts-filter's, every timestamp present
#   11    clean stop
set -u
. "${KTS_TOP_SRCDIR:?run through make check}/tests/lib/tap.sh"
. "$KTS_TOP_SRCDIR/tests/lib/kafka.sh"
. "$KTS_TOP_SRCDIR/tests/lib/collectd.sh"
BUILDDIR=${KTS_TOP_BUILDDIR:-$(pwd)}
SRCDIR=$KTS_TOP_SRCDIR
# shellcheck source=tests/lib/state.sh
. "$SRCDIR/tests/lib/state.sh"
plan 11
kafka_start --brokers 3 || bail_out "kafka-local start --brokers 3 failed"
B=$KTS_BOOTSTRAP
is "$(kafka_metadata_brokers)" "1 2 3" "three nodes up ($B)"
RUN=$(kafka_topic rkts3)
N=600

state_pipeline 5 >"$W/pipelines.conf"
# As t-read-state.sh: 4 series, s1, s2 on partition 0, s3, s4 on partition 1.
state_series "$T0" "$N" 4 2
"$KF" --config "$W/pipelines.conf" "$W/all.jsonl" >"$W/expect.csv" 2>"$W/kts-filter.err"
ok $? "kts-filter computes the uninterrupted run's output ($(($(wc -l <"$W/expect.csv") - 1)) rows)"

kafka_create_topic "$RUN-in" 2 >/dev/null 2>"$W/create.err" && state_produce "$RUN-in" 0 2 -X acks=all
ok $? "input topic of 2 partitions with the first half of the stream"

conf=$(state_conf agg "$RUN" "$RUN-in" "$RUN-state" "$W/pipelines.conf" auto.commit.interval.ms=500 \
    session.timeout.ms=6000 heartbeat.interval.ms=1000)
D=$(collectd_dir agg)
# state_partition P: the node leading partition P of the state topic, and its replicas
state_partition() {
    kcat -L -b "$B" -t "$RUN-state" -m 5 2>/dev/null |
        awk -v p="$1" '$1 == "partition" && $2 == p"," { sub(/,$/, "", $4); sub(/,$/, "", $6); print $4, $6 }'
}

collectd_start "$conf" agg
ok $? "aggregator with StateTopic starts"
state_wait_present 1200 "$W/expect.csv" "$D/csv"
ok $? "it writes the first half's filtered rows ($STATE_PRESENT present)"
sleep 4
state_kill agg
ok $? "aggregator killed with SIGKILL (status $STATE_KILLED)"

read -r leader replicas <<<"$(state_partition 0)"
diag "state partition 0: leader ${leader:-?}, replicas ${replicas:-?}"
st=1
if [ -n "${leader:-}" ] && [ "$(echo "${replicas:-}" | tr ',' '\n' | grep -c .)" = 3 ] &&
    kafka_stop_node "$leader" --kill >/dev/null 2>&1; then
    for _ in $(seq 300); do
        read -r now _ <<<"$(state_partition 0)"
        [ -n "${now:-}" ] && [ "$now" != "$leader" ] && [ "$now" != -1 ] && { st=0; break; }
        sleep 0.2
    done
fi
ok $st "node ${leader:-?} (leader of state partition 0, replicas ${replicas:-?}) killed; node ${now:-?} leads it now"

state_produce "$RUN-in" 1 2 -X acks=all && collectd_start "$conf" agg
ok $? "second half produced, aggregator restarted with node $leader down"
state_wait_installed 2 agg 90 0 1
st=$?
for _ in $(seq 20); do
    restored=$(state_metric agg agg state_restored)
    [ "$restored" -ge 4 ] && break
    sleep 0.5
done
ok "$([ "$st" = 0 ] && [ "$restored" -ge 4 ]; echo $?)" \
    "the state of both partitions was installed with the node down ($restored records)"
state_wait_check "$W/expect.csv" "$D/csv"
out=$(state_check "$W/expect.csv" "$D/csv")
st=$?
diag "$out"
ok $st "after the leader moved every filtered value equals the uninterrupted run's"
collectd_stop agg
ok $? "the restarted aggregator stops cleanly"
done_testing
