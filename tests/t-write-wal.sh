#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# write_kafka_ts write-ahead mode (SpoolMode "always"): a kill -9 of the agent
# loses nothing its write callback accepted. The REAL collectd daemon, the REAL Kafka broker (a
# one-node cluster of this test's own, so it can be stopped), kts_testgen with one write thread.
# Each case has its own topic and spool directory (SpoolDirectory, so that the restarted agent,
# a new collectd with its own BaseDir, finds it); after each kill -9 a new agent starts on the
# same spool with a generator of its own (Host CASE-2, 1,000 value lists) and must send what
# was not acknowledged first:
#   a  broker down: 150,000 value lists accepted (spooled), agent killed (-9)
#   b  broker down: 150,000 accepted; broker started; agent killed while the spool drains
#      (after at least KTS_WAL_DRAIN_MIN acknowledgements, default 20,000, and before all);
#      this agent's produce batches are small (batch.size 4000) so that the drain takes a while
#   c  broker up: a steady 10,000 value lists/s, agent killed after 5 s
# Checks per topic (tests/lib/check_series.py, first appearances): what arrived of the killed
# agent's generator is exactly the first D value lists it dispatched, no gap (extra = 0), D at
# least the `spooled` counter last sampled before the kill (the value lists accepted; a and b:
# all 150,000), per-series order (values and timestamps) kept; the restarted agent's 1,000 all
# arrive; duplicates are counted and shown. Agents are stopped with TERM at the end (FlushTimeout
# 60): their shutdown log says everything was delivered.
set -u
. "${KTS_TOP_SRCDIR:?run through make check}/tests/lib/tap.sh"
. "$KTS_TOP_SRCDIR/tests/lib/kafka.sh"
. "$KTS_TOP_SRCDIR/tests/lib/collectd.sh"
. "$KTS_TOP_SRCDIR/tests/lib/write_outage.sh"

N=${KTS_WAL_COUNT:-150000}
DRAIN_MIN=${KTS_WAL_DRAIN_MIN:-20000}
SERIES=100
N2=1000
W=$(collectd_dir wal)

plan 29

# wal_agent NAME TOPIC HOST RATE COUNT SPOOL [EXTRA]
wal_agent() {
    wo_conf "$1" "$2" "$3" "$4" "$5" "$SERIES" "  SpoolMode \"always\"
  SpoolDirectory \"$6\"
  FlushTimeout 60${7:+
$7}"
}
# wait_counter NAME TYPE_INSTANCE MIN TIMEOUT: until the self-metric reaches MIN; 0 or 1
wait_counter() {
    local v
    for _ in $(seq $(($4 * 5))); do
        v=$(wo_counter "$1" "$2")
        [ "$v" != none ] && [ "$v" -ge "$3" ] && return 0
        sleep 0.2
    done
    return 1
}
kill9() { # NAME: kill -9, then reap
    kill -KILL "$(collectd_pid "$1")"
    collectd_stop "$1" 10 2>/dev/null
    [ "$COLLECTD_STOPPED_BY" = gone ] || [ "$COLLECTD_EXIT_STATUS" = 137 ]
}
# check TOPIC CASE ACCEPTED DISPATCHED-AT-MOST: the test points of one case (5)
check() {
    local topic=$1 c=$2 accepted=$3 f res d
    f="$W/$c.txt"
    wo_read "$topic" "$f"
    res=$(wo_check "$f" "$c" "$SERIES" "$4" 2>/dev/null)
    d=$(wo_field "$(grep "^$c " <<<"$res")" distinct)
    res=$(wo_check "$f" "$c" "$SERIES" "${d:-0}" "$c-2" "$SERIES" "$N2")
    diag "$res"
    local r1 r2
    r1=$(grep "^$c " <<<"$res")
    r2=$(grep "^$c-2 " <<<"$res")
    is "$(wo_field "$r1" missing)/$(wo_field "$r1" extra)" 0/0 \
        "$c: what arrived of the killed agent is exactly the first $d value lists dispatched, no gap"
    cmp_ok "${d:-0}" -ge "$accepted" "$c: ... and at least every value list accepted before the kill ($accepted)"
    is "$(wo_field "$r1" order)/$(wo_field "$r1" time)/$(wo_field "$r1" partitions)" 0/0/0 \
        "$c: per-series order kept across the kill -9 and the restart"
    is "$(wo_field "$r2" missing)" 0 "$c: the restarted agent's $N2 value lists all arrive"
    diag "$c: duplicates (sent before the kill, acknowledged but not yet recorded): $(wo_field "$r1" duplicates) + $(wo_field "$r2" duplicates)"
    collectd_log_has "write_kafka_ts plugin \\($c-2\\): shutdown: all [0-9]+ value lists sent were delivered" "$c-2"
    ok $? "$c: the restarted agent delivers everything before it stops"
}

kafka_start --brokers 1 || bail_out "kafka-local start failed"
run=$(kafka_topic wal)
for c in a b c; do
    kafka_create_topic "$run-$c" 4 >/dev/null || bail_out "cannot create topic $run-$c"
done
diag "bootstrap $KTS_BOOTSTRAP; $N value lists per outage case"

# ---- a and b: broker down, both agents accept N each
run_ok "broker stopped (TERM)" kafka_stop_node 1
wal_agent a "$run-a" a 30000 "$N" "$W/spool-a"
wal_agent b "$run-b" b 30000 "$N" "$W/spool-b" '  Property "batch.size" "4000"'
collectd_start "$(collectd_dir a)/collectd.conf" a && collectd_start "$(collectd_dir b)/collectd.conf" b
ok $? "a, b: two write-ahead agents start with the broker down"
wait_counter a spooled "$N" 120 && wait_counter b spooled "$N" 120
ok $? "a, b: each accepted all $N value lists into its spool (broker down: none acknowledged)"
kill9 a
ok $? "a: agent killed (-9) with $N value lists in its spool"
ls "$W/spool-a"/*.seg >/dev/null 2>&1
ok $? "a: the spool survived the kill"
wal_agent a-2 "$run-a" a-2 1000 "$N2" "$W/spool-a"
collectd_start "$(collectd_dir a-2)/collectd.conf" a-2
ok $? "a: a new agent starts on the same spool, broker still down"
collectd_log_has 'write_kafka_ts plugin \(a-2\): spool .* had not acknowledged when the previous run ended: sending them first' a-2
ok $? "a: it finds the value lists not acknowledged and sends them first"

# ---- b: kill while draining
run_ok "broker started again" kafka_start_node 1
wait_counter b acked "$DRAIN_MIN" 120
acked=$(wo_counter b acked)
kill9 b
ok $? "b: agent killed (-9) while its spool drains ($acked of $N acknowledged when last sampled)"
cmp_ok "$acked" -lt "$N" "b: the drain was not finished when it was killed"
wal_agent b-2 "$run-b" b-2 1000 "$N2" "$W/spool-b"
collectd_start "$(collectd_dir b-2)/collectd.conf" b-2
ok $? "b: a new agent starts on the same spool"

# ---- c: steady rate, broker up
wal_agent c "$run-c" c 10000 $((10000 * 30)) "$W/spool-c"
collectd_start "$(collectd_dir c)/collectd.conf" c
ok $? "c: a write-ahead agent at 10,000 value lists/s, broker up"
sleep 5
accepted_c=$(wo_counter c spooled)
kill9 c
ok $? "c: agent killed (-9) after 5 s ($accepted_c accepted when last sampled)"
wal_agent c-2 "$run-c" c-2 1000 "$N2" "$W/spool-c"
collectd_start "$(collectd_dir c-2)/collectd.conf" c-2
ok $? "c: a new agent starts on the same spool"

# ---- the restarted agents finish their generators and stop (TERM: FlushTimeout sends the rest)
for c in a b c; do
    collectd_wait_log 'kts_testgen: burst done' 60 "$c-2"
    sleep 2
    collectd_stop "$c-2" 90 2>/dev/null
done
check "$run-a" a "$N" "$N"
check "$run-b" b "$N" "$N"
check "$run-c" c "${accepted_c:-1}" $((10000 * 30))
kafka_stop
done_testing
