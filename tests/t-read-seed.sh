#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Seeding a read_kafka_ts StateTopic from history (docs/read_kafka_ts.md "Seeding the state from
# history"), then absorbed values ("Absorbed values"): kts-filter --state-out pre-trains the
# pipeline on the first part of 8 series, kts-filter --seed-topic produces those states to the
# state topic, and a REAL collectd with read_kafka_ts on the REAL broker consumes the next part
# from an input topic keyed and partitioned as write_kafka_ts does (key
# host/plugin-instance/type, murmur2_random); then the group's committed offsets are set back
# behind the states' positions (as a crash after a checkpoint was acknowledged but before its
# offsets were committed leaves them) and the last part is produced:
#   1     kts-filter computes the uninterrupted run over the whole series (the oracle)
#   2     kts-filter --state-out pre-trains on the first part (what it emitted is left out below)
#   3     input topic of 4 partitions with the rest, keyed, partitioner murmur2_random; every
#         message is on the Java client's partition for its key (tests/java/Murmur2Partition)
#   4     kts-filter --seed-topic creates the state topic (compact, 4 partitions) and seeds it
#   5     every seeded record is on the state partition of its series' input partition (the
#         Java client's murmur2 over the series' message key), one record per series
#   6     the seeded records carry no position (-1/-1), read back from the topic
#   7     aggregator with StateTopic starts and installs the state of all 4 partitions
#   8     every filtered value equals the uninterrupted run's (timestamps and values)
#   9     self-metrics: 8 states restored, no point emitted while warming up, no value absorbed
#         (a seeded record has no position: no message counts as already in it)
#   10    clean stop, every offset committed
#   11    the group's committed offsets are halved (kafka-pc rewind): the states are ahead
#   12    restarted: the state of the 4 partitions (now with positions) is installed
#   13    after the last part every filtered value equals the uninterrupted run's over all points,
#         and no timestamp was written twice: the redelivered values were not applied again
#   14    self-metrics: every redelivered value list absorbed (counted), none warming
#   15    clean stop
# Without the seed, 1,585 of the 1,600 values of the rest differ from the oracle's and 80 are
# emitted while warming up (kts-filter over the rest alone), so 8 and 9 fail if the seed is lost.
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILDDIR=${KTS_TOP_BUILDDIR:-$(pwd)}
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
# shellcheck source=tests/lib/state.sh
. "$SRCDIR/tests/lib/state.sh"
e2e_plan 15
RUN=rksd-$$-$(date +%s)
N=700
CUT=400  # points 0..CUT-1 pre-train the state, CUT..N-1 go through Kafka:
CUT2=600 # CUT..CUT2-1 before the rewind, CUT2..N-1 after it
NS=8
KAFKA_LIB=${KTS_KAFKA_CACHE:-$SRCDIR/contrib/kafka/.cache}/lib

state_pipeline 5 >"$W/pipelines.conf"
# NS series, N points 10 s apart, spikes now and then: all.jsonl (time order), seg-0.jsonl (the
# first CUT points), seg-1.tsv and seg-2.tsv ("key<TAB>message" of the others, the key as
# write_kafka_ts's).
state_series "$T0" "$N" "$NS" "$NS" "$CUT" "$CUT2"
"$KF" --config "$W/pipelines.conf" "$W/all.jsonl" >"$W/expect.csv" 2>"$W/kts-filter.err"
ok $? "kts-filter computes the uninterrupted run's output ($(grep -c despike "$W/expect.csv") rows)"
"$KF" --config "$W/pipelines.conf" --state-out "$W/pre.state" "$W/seg-0.jsonl" \
    >"$W/first.csv" 2>"$W/pre.err"
ok $? "kts-filter --state-out pre-trains on the first $CUT points ($(tail -n1 "$W/pre.err"))"

"$BUILDDIR/tests/kafka-pc" create -b "$B" -t "$RUN-in" -p 4 >/dev/null 2>"$W/create.err" &&
    kcat -P -b "$B" -t "$RUN-in" -X "$KAFKA_KCAT_ORDER" -K '\t' -X topic.partitioner=murmur2_random \
        <"$W/seg-1.tsv" 2>"$W/kcat.err" &&
    kcat -C -b "$B" -t "$RUN-in" -e -J 2>/dev/null >"$W/in.json" &&
    out=$(java -cp "$KAFKA_LIB/*" "$SRCDIR/tests/java/Murmur2Partition.java" 4 <"$W/in.json" 2>&1)
st=$?
diag "${out:-}"
ok $st "input topic of 4 partitions with the rest, each series on its murmur2 partition"

"$KF" --config "$W/pipelines.conf" --state-in "$W/pre.state" --seed-topic "$RUN-state" \
    --input-topic "$RUN-in" --bootstrap "$B" >"$W/seed.out" 2>"$W/seed.err"
st=$?
diag "$(tail -n2 "$W/seed.err")"
ok $st "kts-filter --seed-topic seeds the state topic"

# The state topic's partitions and keys (kcat: "P KLEN KEY\n", keys hold NUL bytes), reduced to
# {"partition": P, "key": input key} for the Java check, and compared with the input topic's.
kcat -C -b "$B" -t "$RUN-state" -e -f '%p %K %k\n' 2>/dev/null >"$W/state.keys"
python3 - "$W/state.keys" "$W/state-keys.json" "$W/in.json" "$NS" <<'EOF' >"$W/state-check.out"
import json, sys
d, recs = open(sys.argv[1], "rb").read(), []
while d:
    p, kl, rest = d.split(b" ", 2)
    recs.append((int(p), rest[:int(kl)].decode()))
    d = rest[int(kl) + 1:]
inpart = {}
for l in open(sys.argv[3]):
    if l.startswith("{"):
        m = json.loads(l)
        inpart[m["key"]] = m["partition"]
bad = 0
with open(sys.argv[2], "w") as out:
    for part, k in recs:
        pipe, host, plugin, pi, typ, ti = k.split("\0")[:6]
        key = "%s/%s%s/%s%s" % (host, plugin, "-" + pi if pi else "", typ, "-" + ti if ti else "")
        out.write(json.dumps({"partition": part, "key": key}, separators=(",", ":")) + "\n")
        if inpart.get(key) != part:
            bad += 1
keys = {k for _, k in recs}
print("%d records, %d series, %d not on their input partition" % (len(recs), len(keys), bad))
sys.exit(0 if bad == 0 and len(recs) == len(keys) == int(sys.argv[4]) else 1)
EOF
st=$?
out=$(java -cp "$KAFKA_LIB/*" "$SRCDIR/tests/java/Murmur2Partition.java" 4 <"$W/state-keys.json" 2>&1) ||
    st=1
diag "$(cat "$W/state-check.out"); $out"
ok $st "every seeded record is on its series' input partition (Java's murmur2), one per series"

pos=$(kcat -C -b "$B" -t "$RUN-state" -e -D '' -f '%s' 2>/dev/null | python3 -c '
import struct, sys
d = sys.stdin.buffer.read()
print(sorted({struct.unpack_from("<iq", d, i + 24) for i in range(len(d)) if d[i:i + 4] == b"KTSS"}))')
is "$pos" "[(-1, -1)]" "the seeded records carry no position (partition -1, offset -1)"

conf=$(state_conf agg "$RUN" "$RUN-in" "$RUN-state" "$W/pipelines.conf")
D=$(collectd_dir agg)
# check BEFORE: the filtered rows equal the uninterrupted run's minus what the pre-training
# emitted (same timestamps, every value equal as csv writes it, "%f") for the points before
# point BEFORE; no timestamp in more than one row.
check() {
    state_check --once --before $((T0 + 10 * $1)) --exclude "$W/first.csv" "$W/expect.csv" "$D/csv"
}
# check_ok BEFORE DESCRIPTION: a test point, once check BEFORE passes (at most 120 s)
check_ok() {
    local out st
    for _ in $(seq 600); do
        check "$1" >/dev/null 2>&1 && break
        sleep 0.2
    done
    out=$(check "$1")
    st=$?
    diag "$out"
    ok $st "$2"
}
# metrics_is WANT DESCRIPTION PLUGIN-INSTANCE/TYPE-INSTANCE...: a test point, the self-metrics
# joined by "/" are WANT. They are read every interval: wait (at most 20 s) for a row written
# after the last restore.
metrics_is() {
    local want=$1 what=$2 got m
    shift 2
    for _ in $(seq 100); do
        got=""
        for m in "$@"; do got="$got/$(state_metric agg "${m%/*}" "${m#*/}")"; done
        got=${got#/}
        [ "$got" = "$want" ] && break
        sleep 0.2
    done
    is "$got" "$want" "$what"
}

collectd_start "$conf" agg
st=$?
state_wait_installed 1 agg 60 0 1 2 3 || st=1
ok $st "aggregator with StateTopic starts and installs the seeded state of the 4 partitions"
check_ok "$CUT2" "every filtered value after the seed equals the uninterrupted run's"
metrics_is "$NS/0/0" "self-metrics: $NS states restored, no point emitted while warming up, none absorbed" \
    agg/state_restored agg-despike/warming agg-despike/absorbed
collectd_stop agg
ok $? "the aggregator stops cleanly, committing every offset"

"$BUILDDIR/tests/kafka-pc" rewind -b "$B" -t "$RUN-in" -g "$RUN" >"$W/rewind.out" 2>"$W/rewind.err"
st=$?
diag "$(tr '\n' ' ' <"$W/rewind.out") $(cat "$W/rewind.err")"
# Redelivered after the rewind: committed - rewound of each partition.
redelivered=$(awk -F'[= ]' '{ n += $4 - $6 } END { print n + 0 }' "$W/rewind.out")
ok "$([ "$st" -eq 0 ] && [ "$redelivered" -gt 0 ]; echo $?)" \
    "the group's offsets set back behind the states' positions ($redelivered values to redeliver)"

: >"$D/collectd.log"
collectd_start "$conf" agg
st=$?
state_wait_installed 1 agg 60 0 1 2 3 || st=1
ok $st "restarted: the state of the 4 partitions is installed"
kcat -P -b "$B" -t "$RUN-in" -X "$KAFKA_KCAT_ORDER" -K '\t' -X topic.partitioner=murmur2_random \
    <"$W/seg-2.tsv" 2>>"$W/kcat.err"
check_ok "$N" "every filtered value equals the uninterrupted run's, none written twice"
metrics_is "$redelivered/0" "self-metrics: the $redelivered redelivered value lists absorbed, none warming" \
    agg-despike/absorbed agg-despike/warming
collectd_stop agg
ok $? "the restarted aggregator stops cleanly"
