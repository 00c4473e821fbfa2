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
e2e_plan 15
RUN=rksd-$$-$(date +%s)
KF="$BUILDDIR/tools/kts-filter"
W=$(collectd_dir work)
T0=1700000000
N=700
CUT=400  # points 0..CUT-1 pre-train the state, CUT..N-1 go through Kafka:
CUT2=600 # CUT..CUT2-1 before the rewind, CUT2..N-1 after it
NS=8
KAFKA_LIB=${KTS_KAFKA_CACHE:-$SRCDIR/contrib/kafka/.cache}/lib

cat >"$W/pipelines.conf" <<'EOF'
<Pipeline "despike">
  <Match>
    Plugin "sensor"
  </Match>
  <Filter "outlier">
    Method "hampel"
    Window 300
    MaxPoints 31
    MinPoints 10
    Threshold 5
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
# NS series, N points 10 s apart, spikes now and then. all.jsonl (time order), first.jsonl (the
# first CUT points), rest.tsv ("key<TAB>message" of the others, the key as write_kafka_ts's).
python3 - "$T0" "$N" "$CUT" "$NS" "$W" "$CUT2" <<'EOF'
import json, math, sys
t0, n, cut, ns, w = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
cut2 = int(sys.argv[6])
allf, first, rest, last = (open(w + f, "w") for f in ("/all.jsonl", "/first.jsonl", "/rest.tsv",
                                                       "/last.tsv"))
for k in range(n):
    for s in range(1, ns + 1):
        v = 50 + 10 * s + 10 * math.sin(k / (7 + s)) + ((k * 37 + s) % 11 - 5) / 10
        v += 90 if (k + 13 * s) % 97 == 0 else 0
        line = json.dumps({"v": 1, "host": "st", "plugin": "sensor", "plugin_instance": "s%d" % s,
                           "type": "gauge", "type_instance": "", "time": t0 + 10 * k,
                           "interval": 10,
                           "ds": [{"name": "value", "type": "gauge", "value": round(v, 3)}]},
                          separators=(",", ":"))
        allf.write(line + "\n")
        if k < cut:
            first.write(line + "\n")
        else:
            (rest if k < cut2 else last).write("st/sensor-s%d/gauge\t%s\n" % (s, line))
EOF
"$KF" --config "$W/pipelines.conf" "$W/all.jsonl" >"$W/expect.csv" 2>"$W/kts-filter.err"
ok $? "kts-filter computes the uninterrupted run's output ($(grep -c despike "$W/expect.csv") rows)"
"$KF" --config "$W/pipelines.conf" --state-out "$W/pre.state" "$W/first.jsonl" \
    >"$W/first.csv" 2>"$W/pre.err"
ok $? "kts-filter --state-out pre-trains on the first $CUT points ($(tail -n1 "$W/pre.err"))"

"$BUILDDIR/tests/kafka-pc" create -b "$B" -t "$RUN-in" -p 4 >/dev/null 2>"$W/create.err" &&
    kcat -P -b "$B" -t "$RUN-in" -K '\t' -X topic.partitioner=murmur2_random \
        <"$W/rest.tsv" 2>"$W/kcat.err" &&
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

D=$(collectd_dir agg)
{
    collectd_conf_header agg
    collectd_conf_stock csv
    collectd_conf_ours read_kafka_ts
    cat <<EOF
<Plugin csv>
  DataDir "$D/csv"
  StoreRates false
</Plugin>
<Plugin read_kafka_ts>
  Property "bootstrap.servers" "$B"
  GroupId "$RUN"
  Instance "agg"
  Topic "$RUN-in"
  StateTopic "$RUN-state"
  CommitInterval 1
  StartPosition "earliest"
$(cat "$W/pipelines.conf")
</Plugin>
EOF
} >"$D/collectd.conf"

# check: the filtered rows equal the uninterrupted run's minus what the pre-training emitted
# (same timestamps, every value equal as csv writes it, "%f") for the points before point
# $1; no timestamp in more than one row.
check() {
    python3 - "$W/expect.csv" "$W/first.csv" "$D/csv/st" "$((T0 + 10 * $1))" <<'EOF'
import csv, glob, os, sys
tmax = int(sys.argv[4])
def rows(path):
    out = {}
    for r in csv.DictReader(open(path)):
        if r["action"] == "dropped" or r["output"] == "":
            continue
        s = r["series"].split("/")[1].split("-", 1)[1]  # st/sensor-s1/gauge: s1
        if int(r["timestamp"]) < tmax:
            out.setdefault(s, {})[int(r["timestamp"])] = float(r["output"])
    return out
exp, pre = rows(sys.argv[1]), rows(sys.argv[2])
bad, seen, total, rows = [], 0, 0, 0
for s, want in sorted(exp.items()):
    want = {t: v for t, v in want.items() if t not in pre.get(s, {})}
    total += len(want)
    got = {}
    for f in glob.glob(os.path.join(sys.argv[3], "sensor-%s-filtered" % s, "gauge-*")):
        for line in open(f):
            if not line.startswith("epoch"):
                t, v = line.strip().split(",")
                rows += 1
                got.setdefault(round(float(t)), set()).add(v)
    for t, vs in got.items():
        if t not in want or vs != {"%f" % want[t]}:
            bad.append("%s t=%d: csv %s, kts-filter %s" % (s, t, sorted(vs), want.get(t)))
    seen += len(set(got) & set(want))
for b in bad[:8]:
    print(b)
print("%d of %d filtered values present (%d rows), %d problems" % (seen, total, rows, len(bad)))
sys.exit(0 if not bad and seen == total == rows else 1)
EOF
}

collectd_start "$D/collectd.conf" agg
st=$?
for p in 0 1 2 3; do
    collectd_wait_log "state of partition $p installed" 60 agg || st=1
done
ok $st "aggregator with StateTopic starts and installs the seeded state of the 4 partitions"
for _ in $(seq 600); do
    check "$CUT2" >/dev/null 2>&1 && break
    sleep 0.2
done
out=$(check "$CUT2")
st=$?
diag "$out"
ok $st "every filtered value after the seed equals the uninterrupted run's"

last() { cat "$@" 2>/dev/null | grep -v '^epoch' | tail -n1 | cut -d, -f2; }
S="$D/csv/kts-test"
# The self-metrics are read every interval: wait for a row written after the last restore.
for _ in $(seq 100); do
    got="$(last "$S"/read_kafka_ts-agg/total_values-state_restored-*)/$(last "$S"/read_kafka_ts-agg-despike/total_values-warming-*)/$(last "$S"/read_kafka_ts-agg-despike/total_values-absorbed-*)"
    [ "$got" = "$NS/0/0" ] && break
    sleep 0.2
done
is "$got" "$NS/0/0" "self-metrics: $NS states restored, no point emitted while warming up, none absorbed"
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
collectd_start "$D/collectd.conf" agg
st=$?
for p in 0 1 2 3; do
    collectd_wait_log "state of partition $p installed" 60 agg || st=1
done
ok $st "restarted: the state of the 4 partitions is installed"
kcat -P -b "$B" -t "$RUN-in" -K '\t' -X topic.partitioner=murmur2_random <"$W/last.tsv" \
    2>>"$W/kcat.err"
for _ in $(seq 600); do
    check "$N" >/dev/null 2>&1 && break
    sleep 0.2
done
out=$(check "$N")
st=$?
diag "$out"
ok $st "every filtered value equals the uninterrupted run's, none written twice"
want="$redelivered/0"
for _ in $(seq 100); do
    got="$(last "$S"/read_kafka_ts-agg-despike/total_values-absorbed-*)/$(last "$S"/read_kafka_ts-agg-despike/total_values-warming-*)"
    [ "$got" = "$want" ] && break
    sleep 0.2
done
is "$got" "$want" "self-metrics: the $redelivered redelivered value lists absorbed, none warming"
collectd_stop agg
ok $? "the restarted aggregator stops cleanly"
