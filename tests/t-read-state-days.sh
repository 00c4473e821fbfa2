#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# read_kafka_ts StateTopic after days of history: a REAL collectd with read_kafka_ts running
# contrib/pipelines/spikes.conf (deseasonalize with a daily profile, the outlier filter) on the
# REAL broker of the suite, killed with SIGKILL after more than two days of history, once the
# daily profile has warmed up, and restarted: the filtered csv after the restart equals what an
# uninterrupted run computes (kts-filter over the whole stream) and no value after the restart
# is passed through as warming. The day is compressed: PERIOD points 1 s apart, spikes.conf's
# durations scaled by PERIOD/86400 as contrib/demo does (state_spikes_pipeline). 4 series with a
# daily pattern, noise, a large spike now and then and moderate ones more often (the warmed
# profile replaces those; a fresh pipeline's warming day passes some through: without the
# state the filtered values after a restart differ), DAYS days, the kill after CUT points.
#   1     kts-filter computes the uninterrupted run; its warming points all lie in the first day
#   2     input topic of 2 partitions, the first CUT points in it
#   3-4   aggregator with StateTopic starts and writes the first part's filtered rows
#   5     before the kill the warming counter had stopped growing, at kts-filter's count of
#         points flagged warming (passed through or replaced)
#   6     killed with SIGKILL
#   7-8   the rest produced, aggregator restarted: it installs the state of both partitions
#         (waiting for the second "installed" line of each: the log keeps the first run's)
#   9     every filtered value equals kts-filter's, every timestamp present (after the restart
#         too: counted on their own)
#   10    the restarted pipeline's warming counter stays 0: no value after the restart warming
#   11    clean stop
#   12-15 control, the same without StateTopic (offsets committed as usual: CommitInterval 1,
#         auto.commit.interval.ms 500, 4 s after the first part is filtered): killed and
#         restarted; the restart goes on from the committed offsets (a redelivery from offset 0
#         would recompute everything from scratch and equal the uninterrupted run without any
#         state); after the restart every value is there but some differ from the uninterrupted
#         run (the moderate spikes a fresh pipeline's warming day passes through), and the
#         restarted pipeline warms up again
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILDDIR=${KTS_TOP_BUILDDIR:-$(pwd)}
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
# shellcheck source=tests/lib/state.sh
. "$SRCDIR/tests/lib/state.sh"
e2e_plan 15
RUN=rktsd-$$-$(date +%s)
PERIOD=240 # the compressed day, in points (1 s apart)
DAYS=4
N=$((DAYS * PERIOD))
CUT=$((PERIOD * 5 / 2)) # the kill after two and a half days
NS=4
TCUT=$((T0 + CUT))
produce() { state_produce "$1" "$2" 2; } # TOPIC SEGMENT (in file order: state_produce)

state_spikes_pipeline "$PERIOD" 48 >"$W/pipelines.conf"
STATE_STEP=1 STATE_VALUE="100 + 10 * s + 30 * math.sin(2 * math.pi * k / $PERIOD + s)
    + ((k * 37 + s) % 11 - 5) / 5 + (60 if (k * 7 + 31 * s) % 113 == 0 else 0)
    + (6 if (k * 5 + 17 * s) % 37 == 0 else 0)" \
    state_series "$T0" "$N" "$NS" 2 "$CUT"
"$KF" --config "$W/pipelines.conf" "$W/all.jsonl" >"$W/expect.csv" 2>"$W/kts-filter.err"
st=$?
# warming points: how many, and the last one's time
read -r warming wlast <<<"$(awk -F, '$6 == "warming" { n++; if ($3 > t) t = $3 } END { print n + 0, t + 0 }' "$W/expect.csv")"
ok "$([ "$st" = 0 ] && [ "$warming" -gt 0 ] && [ "$wlast" -lt $((T0 + 2 * PERIOD)) ]; echo $?)" \
    "kts-filter computes the uninterrupted run ($(tail -n1 "$W/kts-filter.err" | cut -d: -f3- | sed "s/^ //")); its $warming warming points are in the first day"

"$BUILDDIR/tests/kafka-pc" create -b "$B" -t "$RUN-in" -p 2 >/dev/null 2>"$W/create.err" &&
    produce "$RUN-in" 0
ok $? "input topic of 2 partitions with the first $CUT points ($((CUT / PERIOD)).$((CUT % PERIOD * 10 / PERIOD)) days)"

conf=$(state_conf agg "$RUN" "$RUN-in" "$RUN-state" "$W/pipelines.conf" auto.commit.interval.ms=500 \
    session.timeout.ms=6000 heartbeat.interval.ms=1000)
D=$(collectd_dir agg)
collectd_start "$conf" agg
ok $? "aggregator with StateTopic and the spikes pipeline starts"
# the last 2 points of each series are held back by the outlier's Delay
state_wait_present $((NS * (CUT - 2))) --suffix -despiked "$W/expect.csv" "$D/csv"
ok $? "it writes the first part's filtered rows ($STATE_PRESENT present)"
# Checkpointed and committed (CommitInterval 1, auto.commit.interval.ms 500) while the warming
# counter settles: the restart goes on from there.
sleep 2
w0=$(state_settled agg agg-spikes warming)
# The plugin counts every point flagged warming, the ones the outlier replaced included (their
# action in kts-filter's csv is "replaced"): in kts-filter's csv every row of a series up to its
# last "warming" one.
wflag=$(awk -F, 'NR == FNR { if ($6 == "warming" && $3 > last[$1]) last[$1] = $3; next }
    FNR > 1 && ($1 in last) && $3 <= last[$1] { n++ } END { print n + 0 }' "$W/expect.csv" "$W/expect.csv")
is "$w0" "$wflag" "before the kill the profile had warmed up: warming settled at kts-filter's $wflag flagged ($warming passed as warming, the rest replaced)"
state_kill agg
ok $? "aggregator killed with SIGKILL after $CUT points (status $STATE_KILLED)"

produce "$RUN-in" 1
collectd_start "$conf" agg
ok $? "restarted with the rest of the $DAYS days in the topic"
state_wait_installed 2 agg 60 0 1
ok $? "the state of both partitions was installed (again)"
# The last 2 points of each series stay held by the outlier's Delay (no later point comes);
# kts-filter flushes them at the end of its input.
TEND=$((T0 + N - 2))
state_wait_check --suffix -despiked --before "$TEND" "$W/expect.csv" "$D/csv"
out=$(state_check --suffix -despiked --before "$TEND" "$W/expect.csv" "$D/csv")
st=$?
after=$(state_check --suffix -despiked --from "$TCUT" --before "$TEND" "$W/expect.csv" "$D/csv")
diag "$out"
diag "after the restart: $(tail -n1 <<<"$after")"
ok $st "after SIGKILL and restart every filtered value equals the uninterrupted run's ($(tail -n1 <<<"$after" | cut -d' ' -f1) after the restart)"
w1=$(state_settled agg agg-spikes warming)
is "$w1" 0 "no value after the restart was warming (the restarted pipeline's counter)"
collectd_stop agg
ok $? "the restarted aggregator stops cleanly"

# Control: no StateTopic, the same kill and restart. It commits its offsets as the aggregator
# did (CommitInterval 1, auto.commit.interval.ms 500): 4 s after the first part is filtered
# they are at the cut, so the restart does not recompute the first part from scratch.
conf=$(state_conf ctl "$RUN-ctl" "$RUN-ctl-in" "" "$W/pipelines.conf" auto.commit.interval.ms=500 \
    session.timeout.ms=6000 heartbeat.interval.ms=1000)
C=$(collectd_dir ctl)
"$BUILDDIR/tests/kafka-pc" create -b "$B" -t "$RUN-ctl-in" -p 2 >/dev/null 2>>"$W/create.err" &&
    produce "$RUN-ctl-in" 0 && collectd_start "$conf" ctl &&
    state_wait_present $((NS * (CUT - 2))) --suffix -despiked "$W/expect.csv" "$C/csv" &&
    sleep 4 && state_kill ctl && produce "$RUN-ctl-in" 1 && collectd_start "$conf" ctl
ok $? "control: without StateTopic, the first part filtered, committed, killed with SIGKILL, restarted"
# after the restart: every timestamp from the cut on but the 2 the Delay holds at the end
nafter=$((NS * (N - CUT - 2)))
state_wait_present "$nafter" --suffix -despiked --from "$TCUT" --before "$TEND" "$W/expect.csv" "$C/csv"
sleep 1
# raw (copy mode) rows beyond one per point: values the restart redelivered
redelivered=$(($(cat "$C"/csv/st/sensor-s[0-9]/gauge-* | grep -vc '^epoch') - NS * N))
ok "$([ "$redelivered" -ge 0 ] && [ "$redelivered" -lt $((NS * CUT / 2)) ]; echo $?)" \
    "control: the restart went on from the offsets committed before the kill ($redelivered of the first part's $((NS * CUT)) values redelivered)"
out=$(state_check --suffix -despiked --from "$TCUT" --before "$TEND" "$W/expect.csv" "$C/csv")
st=$?
diag "control, after the restart: $out"
diag "control, the whole run: $(state_check --suffix -despiked --before "$TEND" "$W/expect.csv" "$C/csv" | tail -n1) (the points held at the kill are lost without StateTopic)"
differ=$(tail -n1 <<<"$out" | awk '{ print $(NF - 1) }')
ok "$([ "$st" != 0 ] && [ "$differ" -gt 0 ] && case "$(tail -n1 <<<"$out")" in "$nafter of $nafter "*) true ;; *) false ;; esac; echo $?)" \
    "control: without StateTopic every value after the restart is there but $differ differ from the uninterrupted run"
w1=$(state_settled ctl ctl-spikes warming)
ok "$([ "$w1" -gt 0 ]; echo $?)" "control: the restarted pipeline warmed up again ($w1 warming)"
collectd_stop ctl
