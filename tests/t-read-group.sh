#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# read_kafka_ts scale-out: two aggregators (REAL collectd, read_kafka_ts → stock csv) in one
# consumer group share a 4-partition topic (REAL Kafka of the suite); one is killed with SIGKILL
# in the middle, the other takes its partitions over from the offsets it had committed:
#   1     the topic has 4 partitions
#   2-3   both aggregators joined the group before the backlog and hold 2 partitions each
#   4     an agent (kts_testgen burst at a fixed rate → write_kafka_ts, Key series) writes the
#         values while both aggregators consume; both wrote rows
#   5     aggregator B is killed with SIGKILL while the agent is still producing
#   6     A is assigned all 4 partitions after B's session expired
#   7     the agent delivered every value to Kafka
#   8     the union of A's and B's CSV files holds every value at least once
#   9     A stops cleanly
#   10    both share one DedupStateFile (KTS_GROUP_DEDUP=1, the default): A skipped what B had
#         written after its last commit, so the union holds every value exactly once and in
#         order per CSV file, except at most WriteThreads (5) duplicates: B's residual window
#         (docs/read_kafka_ts.md "Exactly once"). KTS_GROUP_DEDUP=0: no state file, the
#         duplicates of at-least-once are counted and reported instead.
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
DEDUP=${KTS_GROUP_DEDUP:-1}
e2e_plan 10
RUN=rktg-$$-$(date +%s)
CMP="$SRCDIR/tests/lib/compare_csv.py"
KAFKA_PC=${KAFKA_PC:-${KTS_TOP_BUILDDIR:-$SRCDIR}/tests/kafka-pc}
COUNT=${KTS_GROUP_COUNT:-60000}
SERIES=200
RATE=${KTS_GROUP_RATE:-6000} # values/s of the agent: the backlog is written over ~10 s

rows() { find "$1" -type f ! -path '*/read_kafka_ts-*' -exec cat {} + 2>/dev/null | grep -vc '^epoch'; }
# wait_complete DIRS TIMEOUT: until compare_csv burst passes on DIRS (a:b); prints its last line
wait_complete() {
    local out
    for _ in $(seq "$2"); do
        out=$(python3 "$CMP" burst "$1" "$COUNT" "$SERIES" | tail -n1)
        case "$out" in *", 0 problems") break ;; esac
        sleep 1
    done
    echo "$out"
}
aggregator_conf() { # NAME
    local d
    d=$(collectd_dir "$1")
    local dedup=""
    [ "$DEDUP" = 1 ] && dedup="DedupStateFile \"$COLLECTD_TMP/group-dedup.state\""
    {
        collectd_conf_csv_reader "$1" "$B"
        cat <<EOF
  Property "auto.commit.interval.ms" "1000"
  Property "session.timeout.ms" "6000"
  Property "heartbeat.interval.ms" "1000"
  GroupId "$RUN"
  Topic "$RUN"
  StartPosition "earliest"
  $dedup
</Plugin>
EOF
    } >"$d/collectd.conf"
    echo "$d/collectd.conf"
}

# ------------------------------------------------------------------ 1 topic
"$KAFKA_PC" create -b "$B" -t "$RUN" -p 4 >/dev/null
ok $? "topic with 4 partitions"

# ------------------------------------------------------------------ 2-3 two members
A=$(collectd_dir a)
BB=$(collectd_dir b)
collectd_start "$(aggregator_conf a)" a &&
    collectd_wait_log 'assigned 4 partition' 60 a
ok $? "aggregator A joined the group (all 4 partitions)"
collectd_start "$(aggregator_conf b)" b &&
    collectd_wait_log 'assigned 2 partition' 60 b &&
    collectd_wait_log 'assigned 2 partition' 60 a
ok $? "aggregator B joined: 2 partitions each"

# ------------------------------------------------------------------ 4-5 backlog, kill B
G=$(collectd_dir agent)
{
    collectd_conf_header agent
    collectd_conf_ours write_kafka_ts kts_testgen
    # One write thread: with 5, a stalled thread can put a series' value into Kafka after the
    # next one (t-read-crash), which DedupStateFile would drop as not newer than what was written.
    cat <<EOF
WriteThreads 1
<Plugin write_kafka_ts>
  Property "bootstrap.servers" "$B"
  Topic "$RUN"
  Key series
</Plugin>
<Plugin kts_testgen>
  Mode "burst"
  Count $COUNT
  Series $SERIES
  Rate $RATE
  CountWritten true
</Plugin>
EOF
} >"$G/collectd.conf"
collectd_start "$G/collectd.conf" agent
# Both consume while the agent produces: wait until each wrote at least 5% of the values.
for _ in $(seq 600); do
    na=$(rows "$A/csv")
    nb=$(rows "$BB/csv")
    [ "$na" -ge $((COUNT / 20)) ] && [ "$nb" -ge $((COUNT / 20)) ] && break
    sleep 0.1
done
ok "$([ "$na" -ge $((COUNT / 20)) ] && [ "$nb" -ge $((COUNT / 20)) ]; echo $?)" \
    "both aggregators consume their share (A $na rows, B $nb rows)"
producing=1
collectd_log_has "kts_testgen: burst done" agent && producing=0
pid=$(collectd_pid b)
kill -KILL "$pid"
# Reap it here: right after the signal it can still look alive to collectd_stop (see
# t-read-crash). 137 = 128 + SIGKILL.
wait "$pid" 2>/dev/null
killed=$?
collectd_stop b 5 2>/dev/null
ok "$([ "$killed" -eq 137 ] && [ "$producing" = 1 ]; echo $?)" \
    "B killed with SIGKILL while the agent was still producing ($(rows "$BB/csv") rows in B's csv)"

# ------------------------------------------------------------------ 6-9 takeover, union
st=1
for _ in $(seq 600); do # A logged "assigned 4" once at its start; the second is the takeover
    [ "$(collectd_log_count 'assigned 4 partition' a)" -ge 2 ] && { st=0; break; }
    sleep 0.1
done
ok $st "A took over all 4 partitions after B's session expired"
collectd_wait_log "kts_testgen: burst written: $COUNT value lists" 120 agent
collectd_stop agent
collectd_log_has "shutdown: all [0-9]+ value lists sent were delivered; 0 dropped" agent
ok $? "the agent delivered all $COUNT values to Kafka"
out=$(wait_complete "$A/csv:$BB/csv" 120)
diag "A $(rows "$A/csv") rows + B $(rows "$BB/csv") rows: $out"
case "$out" in *", 0 problems") st=0 ;; *) st=1 ;; esac
ok $st "the union of both aggregators' CSV files holds every value at least once"
collectd_stop a
ok $? "A stops cleanly"
exact=$(python3 "$CMP" burst-exact "$A/csv:$BB/csv" "$COUNT" "$SERIES")
printf '%s\n' "$exact" | tail -n 6 | while IFS= read -r l; do diag "$l"; done
last=$(printf '%s\n' "$exact" | tail -n1)
dups=$(printf '%s\n' "$last" | sed -n 's/.*present, \([0-9]*\) duplicates, .*/\1/p')
disorder=$(printf '%s\n' "$last" | sed -n 's/.*duplicates, \([0-9]*\) out of order.*/\1/p')
skipped=$(grep -Eo 'DedupStateFile: [0-9]+ value\(s\) not dispatched' "$(collectd_logfile a)" |
    tail -n1 | grep -Eo '[0-9]+')
if [ "$DEDUP" = 1 ]; then
    ok "$([ -n "$dups" ] && [ "$dups" -le 5 ] && [ "$disorder" = 0 ]; echo $?)" \
        "shared DedupStateFile: exactly once: $last; A skipped ${skipped:-?} value(s) already written (by B after its last commit, by A before a rebalance)"
else
    ok "$([ -n "$dups" ]; echo $?)" "without DedupStateFile (at least once): $last"
fi

collectd_tap_status
