#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# read_kafka_ts StateTopic with partitions moving between aggregators, and a changed pipeline:
# REAL collectd processes with read_kafka_ts (t-read-state.sh's despiking and smoothing pipeline
# → csv) on the REAL broker of the suite, 12 series on a 4-partition input topic (3 per
# partition). kts-filter over the whole stream is the uninterrupted run.
#   1       kts-filter computes the uninterrupted run's output (and the other configuration's)
#   Cases a (TERM), b (kill -9), c (kill -9, no StateTopic: the control), 9 checks each:
#   +1-2    aggregators A and B in one group, 2 partitions each, before any input
#   +3      the first half goes in; both write filtered rows (B's own share too)
#   +4      B is stopped with TERM (a) or killed with SIGKILL (b, c)
#   +5      A takes all 4 partitions; (a, b) state_restored > 0 records installed from the
#           state topic (the series A did not own before among them)
#   +6      the second half goes in; the union of A's and B's csv has every timestamp of every
#           series, and every row (duplicates of at-least-once included) carries kts-filter's
#           value. In b B committed no offset (auto.commit.interval.ms 600000): A redelivers
#           all of B's first half (counted as raw copy-mode duplicates), which the restored
#           states have absorbed (no differing filtered row). Control c (B's offsets committed
#           as in a): the same comparison FAILS (values differ after the move)
#   +7      no value after the move was warming: A's pipeline warming counter did not grow
#           (control c: it grew, the moved series relearned)
#   +8      A stops cleanly
#   +9      a: B's TERM wrote every dispatched value before it gave its partitions back; b: B
#           had installed its 2 partitions' state when it joined; c: no StateTopic anywhere
#   Case d, a pipeline whose options changed (Threshold 5 → 4) between runs:
#   +1      one aggregator with Threshold 5 over the first half, stopped with TERM
#   +2      restarted with Threshold 4: state_refused-config counts all 12 series (one log line)
#   +3      every row after the restart equals kts-filter of Threshold 4 over the second half
#           alone (a fresh start), and some differ from Threshold 4 over the whole stream: the
#           series relearned; its warming counter grew
#   +4      clean stop
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILDDIR=${KTS_TOP_BUILDDIR:-$(pwd)}
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
# shellcheck source=tests/lib/state.sh
. "$SRCDIR/tests/lib/state.sh"
e2e_plan 32
RUN=rktsg-$$-$(date +%s)
N=400
NS=12

state_pipeline 5 >"$W/p5.conf"
state_pipeline 4 >"$W/p4.conf"
# NS series s1..s12, N points 10 s apart, spikes now and then; series s goes to partition
# (s-1)/3; segment 0 is the first half, 1 the second (seg-1.jsonl for kts-filter).
state_series "$T0" "$N" "$NS" 3
"$KF" --config "$W/p5.conf" "$W/all.jsonl" >"$W/expect.csv" 2>"$W/kts-filter.err" &&
    "$KF" --config "$W/p4.conf" "$W/all.jsonl" >"$W/expect4-all.csv" 2>>"$W/kts-filter.err" &&
    "$KF" --config "$W/p4.conf" "$W/seg-1.jsonl" >"$W/expect4-half1.csv" 2>>"$W/kts-filter.err"
st=$?
rows=$(($(wc -l <"$W/expect.csv") - 1))
ok "$([ "$st" = 0 ] && [ "$rows" -ge $((NS * N)) ]; echo $?)" \
    "kts-filter computes the uninterrupted runs ($rows rows)"
THALF=$((T0 + 10 * (N / 2)))

produce_half() { state_produce "$1" "$2" 4; } # TOPIC HALF
# aggregator_conf NAME GROUP TOPIC STATE-TOPIC-OR-EMPTY PIPELINE-FILE [AUTO-COMMIT-MS]
aggregator_conf() {
    state_conf "$1" "$2" "$3" "$4" "$5" auto.commit.interval.ms="${6:-500}" \
        session.timeout.ms=6000 heartbeat.interval.ms=1000
}
# check EXPECT-CSV FROM-TIME DIR...: every filtered row of the csv dirs at or after FROM-TIME
# equals kts-filter's value, and every expected timestamp from FROM-TIME on is there.
check() { state_check --from "$2" "$1" "${@:3}"; }
# raw_dups DIR...: raw (copy mode) rows written more than once: values redelivered
raw_dups() {
    python3 - "$@" <<'EOF'
import glob, os, sys
seen, dups = set(), 0
for d in sys.argv[1:]:
    for f in glob.glob(os.path.join(d, "st", "sensor-s*[0-9]", "gauge-*")):
        s = f.split(os.sep)[-2]
        for line in open(f):
            if not line.startswith("epoch"):
                k = (s, line.split(",")[0])
                dups += k in seen
                seen.add(k)
print(dups)
EOF
}
present() { check "$@" 2>/dev/null | tail -n1 | cut -d' ' -f1; }
# wait_present N EXPECT FROM DIR...: until N values are present (at most 60 s)
wait_present() { state_wait_present "$1" --from "$3" "$2" "${@:4}"; }

# group_case CASE SIGNAL STATE(1|0)
group_case() {
    local c=$1 sig=$2 withstate=$3 topic="$RUN-$1-in" grp="$RUN-$1" stopic="" da db ca cb
    [ "$withstate" = 1 ] && stopic="$RUN-$1-state"
    da=$(collectd_dir "$c-a")
    db=$(collectd_dir "$c-b")
    ca=$(aggregator_conf "$c-a" "$grp" "$topic" "$stopic" "$W/p5.conf")
    # In b, B (killed) commits no offset before its end: A redelivers all of B's values, which
    # its restored states have already absorbed (state ahead of offsets). In the control c, B
    # commits as A does: redelivered from the start, a series would be recomputed from scratch
    # and equal the uninterrupted run without any state.
    cb=$(aggregator_conf "$c-b" "$grp" "$topic" "$stopic" "$W/p5.conf" \
        "$([ "$sig" = KILL ] && [ "$withstate" = 1 ] && echo 600000 || echo 500)")
    "$BUILDDIR/tests/kafka-pc" create -b "$B" -t "$topic" -p 4 >/dev/null 2>"$W/create.err" &&
        collectd_start "$ca" "$c-a" && collectd_wait_log 'assigned 4 partition' 60 "$c-a"
    ok $? "$c: aggregator A ($sig${stopic:+, StateTopic}) holds the 4 partitions"
    collectd_start "$cb" "$c-b" && collectd_wait_log 'assigned 2 partition' 60 "$c-b" &&
        collectd_wait_log 'assigned 2 partition' 60 "$c-a"
    ok $? "$c: aggregator B joined: 2 partitions each"

    produce_half "$topic" 0
    local half=$((NS * N / 2)) na nb
    wait_present "$half" "$W/expect.csv" 0 "$da/csv" "$db/csv"
    na=$(present "$W/expect.csv" 0 "$da/csv")
    nb=$(present "$W/expect.csv" 0 "$db/csv")
    ok "$([ $((na + nb)) -ge "$half" ] && [ "$na" -gt 0 ] && [ "$nb" -gt 0 ]; echo $?)" \
        "$c: the first half is filtered by both (A $na, B $nb values)"
    # Checkpointed and committed (CommitInterval 1, StateInterval 1, auto.commit.interval.ms 500).
    sleep 4
    local warm0 restored0 st p
    warm0=$(state_settled "$c-a" "$c-a-despike" warming)
    restored0=$(state_metric "$c-a" "$c-a" state_restored)
    # A's log already has 'installed' lines for each partition (its earlier assignments): the
    # takeover's are the next ones.
    local -A inst0=()
    for p in 0 1 2 3; do inst0[$p]=$(collectd_log_count "state of partition $p installed" "$c-a"); done
    if [ "$sig" = TERM ]; then
        collectd_stop "$c-b" 30
        st=$?
    else
        state_kill "$c-b"
        st=$?
    fi
    ok "$st" "$c: B stopped with $sig"

    st=1
    for _ in $(seq 600); do # "assigned 4" once at the start; the second is the takeover
        [ "$(collectd_log_count 'assigned 4 partition' "$c-a")" -ge 2 ] && { st=0; break; }
        sleep 0.1
    done
    local restored
    if [ "$withstate" = 1 ]; then
        for p in 0 1 2 3; do
            [ "$st" = 0 ] && state_wait_count "state of partition $p installed" \
                $((inst0[$p] + 1)) "$c-a" 30 || st=1
        done
        restored=$(state_settled "$c-a" "$c-a" state_restored)
        # B's 2 partitions hold NS/2 series: at least their records are installed (eager
        # rebalancing: A's own 2 partitions are revoked and restored as well)
        ok "$([ "$st" = 0 ] && [ $((restored - restored0)) -ge $((NS / 2)) ]; echo $?)" \
            "$c: A took the 4 partitions and installed their state ($restored0 → $restored records)"
    else
        ok "$st" "$c: A took the 4 partitions (no StateTopic)"
    fi

    produce_half "$topic" 1
    local out
    for _ in $(seq 300); do
        [ "$(present "$W/expect.csv" 0 "$da/csv" "$db/csv")" -ge $((NS * N)) ] && break
        sleep 0.2
    done
    sleep 1
    out=$(check "$W/expect.csv" 0 "$da/csv" "$db/csv")
    st=$?
    diag "$c: $out"
    local dups
    dups=$(raw_dups "$da/csv" "$db/csv")
    if [ "$withstate" = 1 ] && [ "$sig" = KILL ]; then
        ok "$([ "$st" = 0 ] && [ "$dups" -ge "$nb" ]; echo $?)" \
            "$c: the union of A's and B's filtered values equals the uninterrupted run's ($dups raw values redelivered, absorbed)"
    elif [ "$withstate" = 1 ]; then
        ok "$st" "$c: the union of A's and B's filtered values equals the uninterrupted run's ($dups raw values redelivered)"
    else
        ok "$([ "$st" != 0 ] && case "$(echo "$out" | tail -n1)" in "$((NS * N)) of"*) true ;; *) false ;; esac; echo $?)" \
            "$c (control): without StateTopic every value is there but some differ"
    fi
    local warm1
    warm1=$(state_settled "$c-a" "$c-a-despike" warming)
    if [ "$withstate" = 1 ]; then
        ok "$([ "$warm1" = "$warm0" ]; echo $?)" "$c: no value after the move was warming (A: $warm0 → $warm1)"
    else
        ok "$([ "$warm1" -gt "$warm0" ]; echo $?)" "$c (control): the moved series relearned (A warming $warm0 → $warm1)"
    fi
    collectd_stop "$c-a"
    ok $? "$c: A stops cleanly"
    if [ "$sig" = TERM ]; then
        collectd_log_has "shutdown: every dispatched value was written" "$c-b"
        ok $? "$c: B's TERM shutdown wrote every dispatched value before giving the partitions back"
    elif [ "$withstate" = 1 ]; then
        is "$(collectd_log_count 'state of partition [0-9]+ installed' "$c-b")" 2 \
            "$c: B had restored its 2 partitions at its join"
    else
        is "$(($(collectd_log_count 'StateTopic' "$c-a") + $(collectd_log_count 'StateTopic' "$c-b")))" 0 \
            "$c (control): neither aggregator had a StateTopic"
    fi
}

group_case a TERM 1
group_case b KILL 1
group_case c KILL 0

# ------------------------------------------------------------------ d: the options changed
topic="$RUN-d-in"
D=$(collectd_dir d)
"$BUILDDIR/tests/kafka-pc" create -b "$B" -t "$topic" -p 4 >/dev/null 2>"$W/create.err" &&
    produce_half "$topic" 0 &&
    collectd_start "$(aggregator_conf d "$RUN-d" "$topic" "$RUN-d-state" "$W/p5.conf")" d &&
    wait_present $((NS * N / 2)) "$W/expect.csv" 0 "$D/csv" && sleep 2 && collectd_stop d
ok $? "d: Threshold 5 over the first half ($(present "$W/expect.csv" 0 "$D/csv") values), stopped with TERM"
produce_half "$topic" 1
collectd_start "$(aggregator_conf d "$RUN-d" "$topic" "$RUN-d-state" "$W/p4.conf")" d
state_wait_installed 2 d 60 0 1 2 3
refused=$(state_settled d d state_refused-config)
restored=$(state_metric d d state_restored)
ok "$([ "$refused" = "$NS" ] && [ "$restored" = 0 ] &&
    [ "$(collectd_log_count 'refused \(config' d)" -eq 1 ]; echo $?)" \
    "d: restarted with Threshold 4: $refused of $NS states refused (config), $restored installed, logged once"
wait_present $((NS * N / 2)) "$W/expect4-half1.csv" "$THALF" "$D/csv"
sleep 1
out=$(check "$W/expect4-half1.csv" "$THALF" "$D/csv")
st=$?
diag "d: against a fresh Threshold 4 run over the second half: $out"
out2=$(check "$W/expect4-all.csv" "$THALF" "$D/csv")
st2=$?
diag "d: against an uninterrupted Threshold 4 run: $out2"
warm=$(state_settled d d-despike warming)
ok "$([ "$st" = 0 ] && [ "$st2" != 0 ] && [ "$warm" -gt 0 ]; echo $?)" \
    "d: the series relearned: a fresh run's output, not the uninterrupted one's ($warm warming)"
collectd_stop d
ok $? "d: the restarted aggregator stops cleanly"
