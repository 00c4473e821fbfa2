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
e2e_plan 32
RUN=rktsg-$$-$(date +%s)
KF="$BUILDDIR/tools/kts-filter"
W=$(collectd_dir work)
T0=1700000000
N=400
NS=12

pipeline() { # THRESHOLD
    cat <<EOF
<Pipeline "despike">
  <Match>
    Plugin "sensor"
  </Match>
  <Filter "outlier">
    Method "hampel"
    Window 300
    MaxPoints 31
    MinPoints 10
    Threshold $1
    MaxRun 1
    Action "replace"
  </Filter>
  <Filter "smooth">
    Method "ema"
    Tau 60
  </Filter>
  OutputPluginInstanceSuffix "-filtered"
</Pipeline>
EOF
}
pipeline 5 >"$W/p5.conf"
pipeline 4 >"$W/p4.conf"
# NS series s1..s12, N points 10 s apart, spikes now and then; series s goes to partition
# (s-1)/3. Files: part-P-HALF.jsonl, all.jsonl and half-1.jsonl in time order for kts-filter.
python3 - "$T0" "$N" "$W" "$NS" <<'EOF'
import json, math, sys
t0, n, w, ns = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
out = {(p, h): open("%s/part-%d-%d.jsonl" % (w, p, h), "w") for p in range(4) for h in (0, 1)}
allf, h1 = open(w + "/all.jsonl", "w"), open(w + "/half-1.jsonl", "w")
for k in range(n):
    for s in range(1, ns + 1):
        v = 50 + 10 * s + 10 * math.sin(k / (7 + s)) + ((k * 37 + s) % 11 - 5) / 10
        v += 90 if (k + 13 * s) % 97 == 0 else 0
        line = json.dumps({"v": 1, "host": "st", "plugin": "sensor", "plugin_instance": "s%d" % s,
                           "type": "gauge", "type_instance": "", "time": t0 + 10 * k,
                           "interval": 10,
                           "ds": [{"name": "value", "type": "gauge", "value": round(v, 3)}]},
                          separators=(",", ":"))
        half = 0 if k < n // 2 else 1
        out[((s - 1) // 3, half)].write(line + "\n")
        allf.write(line + "\n")
        if half:
            h1.write(line + "\n")
EOF
"$KF" --config "$W/p5.conf" "$W/all.jsonl" >"$W/expect.csv" 2>"$W/kts-filter.err" &&
    "$KF" --config "$W/p4.conf" "$W/all.jsonl" >"$W/expect4-all.csv" 2>>"$W/kts-filter.err" &&
    "$KF" --config "$W/p4.conf" "$W/half-1.jsonl" >"$W/expect4-half1.csv" 2>>"$W/kts-filter.err"
st=$?
rows=$(($(wc -l <"$W/expect.csv") - 1))
ok "$([ "$st" = 0 ] && [ "$rows" -ge $((NS * N)) ]; echo $?)" \
    "kts-filter computes the uninterrupted runs ($rows rows)"
THALF=$((T0 + 10 * (N / 2)))

produce_half() { # TOPIC HALF
    local p
    for p in 0 1 2 3; do
        kcat -P -b "$B" -t "$1" -p "$p" <"$W/part-$p-$2.jsonl" 2>>"$W/kcat.err" || return 1
    done
}

aggregator_conf() { # NAME GROUP TOPIC STATE-TOPIC-OR-EMPTY PIPELINE-FILE [AUTO-COMMIT-MS]
    local d state=""
    d=$(collectd_dir "$1")
    [ -n "$4" ] && state="StateTopic \"$4\""
    {
        collectd_conf_header "$1"
        collectd_conf_stock csv
        collectd_conf_ours read_kafka_ts
        cat <<EOF
<Plugin csv>
  DataDir "$d/csv"
  StoreRates false
</Plugin>
<Plugin read_kafka_ts>
  Property "bootstrap.servers" "$B"
  Property "auto.commit.interval.ms" "${6:-500}"
  Property "session.timeout.ms" "6000"
  Property "heartbeat.interval.ms" "1000"
  GroupId "$2"
  Instance "$1"
  Topic "$3"
  $state
  CommitInterval 1
  StartPosition "earliest"
$(cat "$5")
</Plugin>
EOF
    } >"$d/collectd.conf"
    echo "$d/collectd.conf"
}

# check EXPECT-CSV FROM-TIME DIR...: every filtered row of the csv dirs at or after FROM-TIME
# equals kts-filter's value ("%f", as csv writes it), and every expected timestamp from FROM-TIME
# on is there. Prints a summary; exits 0 when complete with no differing value.
check() {
    python3 - "$@" <<'EOF'
import csv, glob, os, sys
expf, tmin, dirs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
exp = {}
for r in csv.DictReader(open(expf)):
    if r["action"] == "dropped" or r["output"] == "" or int(r["timestamp"]) < tmin:
        continue
    s = r["series"].split("/")[1].split("-", 1)[1]  # st/sensor-s1/gauge: s1
    exp.setdefault(s, {})[int(r["timestamp"])] = float(r["output"])
bad, seen, rows, dups = [], 0, 0, 0
for s, want in sorted(exp.items()):
    got = {}
    for d in dirs:
        for f in glob.glob(os.path.join(d, "st", "sensor-%s-filtered" % s, "gauge-*")):
            for line in open(f):
                if line.startswith("epoch"):
                    continue
                t, v = line.strip().split(",")
                t = round(float(t))
                if t < tmin:
                    continue
                rows += 1
                if t in got:
                    dups += 1
                got.setdefault(t, set()).add(v)
    for t, vs in sorted(got.items()):
        if t not in want or vs != {"%f" % want[t]}:
            bad.append("%s t=%d: csv %s, kts-filter %s" % (s, t, sorted(vs), want.get(t)))
    seen += len(set(got) & set(want))
total = sum(len(w) for w in exp.values())
for b in bad[:5]:
    print(b)
print("%d of %d filtered values present (%d rows, %d duplicates), %d differ" % (seen, total, rows, dups, len(bad)))
sys.exit(0 if not bad and seen == total else 1)
EOF
}
# wait_count RE COUNT NAME TIMEOUT: until NAME's log has COUNT lines matching RE (the log
# is appended to across restarts: an earlier run's lines count too)
wait_count() {
    local i
    for ((i = 0; i < $4 * 10; i++)); do
        [ "$(collectd_log_count "$1" "$3")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
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
wait_present() {
    local n=$1
    shift
    for _ in $(seq 300); do
        [ "$(present "$@")" -ge "$n" ] && return 0
        sleep 0.2
    done
    return 1
}
# metric NAME PLUGIN-INSTANCE TYPE-INSTANCE: the last value of a self-metric in NAME's csv (0
# when none yet)
metric() {
    local f
    f=$(find "$(collectd_dir "$1")/csv/kts-test/read_kafka_ts-$2" -name "total_values-$3-*" 2>/dev/null | sort | tail -n1)
    if [ -n "$f" ]; then tail -n1 "$f" | cut -d, -f2 | cut -d. -f1; else echo 0; fi
}
# settled NAME PLUGIN-INSTANCE TYPE-INSTANCE: the metric once two reads in a row agree (the
# read callback runs every second)
settled() {
    local a b
    b=$(metric "$@")
    for _ in $(seq 20); do
        sleep 1.2
        a=$b
        b=$(metric "$@")
        [ "$a" = "$b" ] && break
    done
    echo "$b"
}

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
    # Checkpointed and committed (CommitInterval 1, auto.commit.interval.ms 500).
    sleep 4
    local warm0 restored0 pid st
    warm0=$(settled "$c-a" "$c-a-despike" warming)
    restored0=$(metric "$c-a" "$c-a" state_restored)
    pid=$(collectd_pid "$c-b")
    if [ "$sig" = TERM ]; then
        collectd_stop "$c-b" 30
        st=$?
    else
        kill -KILL "$pid"
        wait "$pid" 2>/dev/null
        st=$?
        collectd_stop "$c-b" 5 2>/dev/null
        st=$([ "$st" -eq 137 ]; echo $?)
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
            [ "$st" = 0 ] && collectd_wait_log "state of partition $p installed" 30 "$c-a" || st=1
        done
        restored=$(settled "$c-a" "$c-a" state_restored)
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
    warm1=$(settled "$c-a" "$c-a-despike" warming)
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
for p in 0 1 2 3; do wait_count "state of partition $p installed" 2 d 60; done
refused=$(settled d d state_refused-config)
restored=$(metric d d state_restored)
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
warm=$(settled d d-despike warming)
ok "$([ "$st" = 0 ] && [ "$st2" != 0 ] && [ "$warm" -gt 0 ]; echo $?)" \
    "d: the series relearned: a fresh run's output, not the uninterrupted one's ($warm warming)"
collectd_stop d
ok $? "d: the restarted aggregator stops cleanly"
