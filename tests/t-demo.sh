#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# contrib/demo end to end, in its short mode: the README's first command with
# the packages already installed and the suite's build (--no-install --no-build --build-dir),
# for KTS_DEMO_TEST_MINUTES (default 1) minutes. The demo starts its own REAL Kafka broker, two
# REAL collectd daemons and contrib/demo-series; this test checks what a user gets:
#   1   the demo exits 0, printed progress lines and the list of graphs
#   2   every process it recorded in DIR/pids (broker, its watchdog, both collectd daemons,
#       demo-series) is gone afterwards
#   3-7 the PNGs (demonstration series, cpu, memory, load, interface lo) are valid PNG files
#   8   the RRD files of the raw and the filtered demonstration series hold values
#   9   the csv files of both exist; the raw one has every duplicate demo-series sent, the
#       filtered one no timestamp twice
#   10  every spike sent after the warm-up (first compressed day + MinPoints) is gone from the
#       filtered series (within 0.25 x the daily amplitude of the noise-free pattern; a spike is
#       at least 0.4 x away, the filter's worst error seen offline 0.14 x), and the
#       filtered maximum after warm-up is below the raw one
#   11  every missing interval (gaps of 2-4) has a filled point in the filtered series
#   12  every progress line shows no more values consumed than sent (the two counters are
#       sampled at one moment), and the last one (totals, after the drain) all sent consumed
#   13  the memory graph states one unit: MiB on the axis (its values, from rrdtool graphv, are
#       MiB, not bytes) and plain numbers in the legend (no "MB", "GB", "%sB" prefixes)
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILDDIR=${KTS_TOP_BUILDDIR:-$(pwd)}
# shellcheck source=tests/lib/tap.sh
. "$SRCDIR/tests/lib/tap.sh"
plan 13

OUT=$(mktemp -d "${TMPDIR:-/tmp}/kts-demo.XXXXXX") || bail_out "mktemp failed"
DEMO_PID=""
cleanup() {
    local rc=$?
    # The demo stops what it started itself; this only covers a test killed mid-run.
    [ -n "$DEMO_PID" ] && kill -TERM "$DEMO_PID" 2>/dev/null && wait "$DEMO_PID" 2>/dev/null
    if [ $rc -eq 0 ] && [ "${KTS_KEEP_TMP:-0}" != 1 ]; then rm -rf "$OUT"; else echo "# kept $OUT" >&2; fi
}
trap cleanup EXIT
trap 'exit 129' INT TERM HUP

# ------------------------------------------------------------------ 1 the run
"$SRCDIR/contrib/demo" --no-install --no-build --build-dir "$BUILDDIR" \
    --minutes "${KTS_DEMO_TEST_MINUTES:-1}" --out "$OUT" >"$OUT.log" 2>&1 &
DEMO_PID=$!
wait "$DEMO_PID"
st=$?
DEMO_PID=""
mv "$OUT.log" "$OUT/demo.log"
progress=$(grep -c 'agent→Kafka [0-9]* values sent · aggregator consumed [0-9]* of them' "$OUT/demo.log")
listed=$(grep -c "$OUT/graphs/.*\.png" "$OUT/demo.log")
[ $st -eq 0 ] && [ "$progress" -ge 2 ] && [ "$listed" -ge 5 ]
ok $? "contrib/demo --minutes ${KTS_DEMO_TEST_MINUTES:-1} exits 0 (status $st), $progress progress lines, $listed graphs listed" ||
    diag "$(tail -n 30 "$OUT/demo.log")"

# ------------------------------------------------------------------ 2 processes
left="" n=0
while read -r name pid; do
    n=$((n + 1))
    # Gone, or the PID now belongs to something else (reused).
    if [ -r "/proc/$pid/cmdline" ] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -Eq 'collectd|java|kafka-local|demo-series'; then
        left+=" $name:$pid"
    fi
done <"$OUT/pids"
[ "$n" -ge 5 ] && [ -z "$left" ]
ok $? "every process the demo started is gone ($n recorded: $(cut -d' ' -f1 "$OUT/pids" | tr '\n' ' '))" ||
    diag "still running:$left"

# ------------------------------------------------------------------ 3-7 PNGs
for g in demo-series cpu memory load interface-lo; do
    f="$OUT/graphs/$g.png"
    magic=$(head -c 8 "$f" 2>/dev/null | od -An -tx1 | tr -d ' \n')
    size=$(stat -c %s "$f" 2>/dev/null || echo 0)
    [ "$magic" = 89504e470d0a1a0a ] && [ "$size" -gt 5000 ]
    ok $? "graphs/$g.png is a PNG ($size bytes)"
done

# ------------------------------------------------------------------ 8 RRD
R="$OUT/rrd/demo-agent"
. "$OUT/run.times" 2>/dev/null
count_rrd() { # FILE: non-NaN rows of the first RRA over the run
    rrdtool fetch "$1" AVERAGE -r 2 -s "${T_FIRST:-0}" -e "${T_STOP:-0}" 2>/dev/null |
        grep -E '^[0-9]+: ' | grep -vc -- '-nan\|nan$'
}
nr=$(count_rrd "$R/demo-web/gauge-requests.rrd")
nf=$(count_rrd "$R/demo-web-filtered/gauge-requests.rrd")
[ "$nr" -ge 150 ] && [ "$nf" -ge 150 ]
ok $? "RRD files of the raw and the filtered demo series hold values ($nr and $nf known points)"

# ------------------------------------------------------------------ 9-11 csv against the events
CHECK=$(cat <<'EOF'
import glob, importlib.machinery, importlib.util, sys
out, src, what = sys.argv[1], sys.argv[2], sys.argv[3]
loader = importlib.machinery.SourceFileLoader("demo_series", src + "/contrib/demo-series")
spec = importlib.util.spec_from_loader("demo_series", loader)
ds = importlib.util.module_from_spec(spec)
loader.exec_module(ds)
PERIOD, AMP, BASE, INTERVAL = 120, 250.0, 100.0, 2   # contrib/demo's and demo-series' defaults
def rows(pattern):
    r = []
    for f in sorted(glob.glob(pattern)):
        for line in open(f):
            if not line.startswith("epoch"):
                t, v = line.strip().split(",")
                r.append((round(float(t)), float(v)))
    return r
raw = rows(out + "/csv/demo-agent/demo-web/gauge-requests-*")
flt = rows(out + "/csv/demo-agent/demo-web-filtered/gauge-requests-*")
ev = [l.split() for l in open(out + "/demo-events.txt")]
times = dict(l.split("=") for l in open(out + "/run.times").read().split())
t_first = int(times["T_FIRST"])
ft = [t for t, _ in flt]
fv = dict(flt)
rv = dict(raw)
if what == "dups":
    dups = sum(1 for k, _ in ev if k == "dup")
    print("raw %d rows, %d distinct, %d duplicates sent; filtered %d rows, %d distinct" % (
        len(raw), len(set(t for t, _ in raw)), dups, len(flt), len(set(ft))))
    # >=: a Kafka redelivery (consumer group rebalance) may add more; the filter removes those too
    ok = len(raw) > 100 and len(raw) - len(set(t for t, _ in raw)) >= dups and dups > 0 \
        and len(ft) == len(set(ft)) and len(flt) > 100
elif what == "spikes":
    warm = t_first + PERIOD + 10 * INTERVAL + 20  # deseasonalize's first period, outlier's MinPoints
    spikes = [int(t) for k, t in ev if k == "spike" and int(t) >= warm and int(t) in rv]
    bad = []
    for t in spikes:
        p = ds.pattern(t, PERIOD, BASE, AMP)
        if t not in fv or abs(fv[t] - p) > 0.25 * AMP:
            bad.append("t=%d raw %.1f filtered %s pattern %.1f" % (t, rv[t], fv.get(t), p))
    rmax = max(v for t, v in raw if t >= warm)
    fmax = max(v for t, v in flt if t >= warm)
    for b in bad:
        print(b)
    print("%d spikes after warm-up, %d left in the filtered series; max raw %.1f, filtered %.1f"
          % (len(spikes), len(bad), rmax, fmax))
    ok = len(spikes) > 0 and not bad and fmax < rmax
elif what == "gaps":
    last = max(ft)
    gaps = [int(t) for k, t in ev if k == "gap" and int(t) < last]
    missing = [t for t in gaps if t not in fv]
    print("%d missing intervals, %d without a filled point %s" % (len(gaps), len(missing), missing[:5]))
    ok = len(gaps) > 0 and not missing
sys.exit(0 if ok else 1)
EOF
)
for what in dups spikes gaps; do
    res=$(python3 -c "$CHECK" "$OUT" "$SRCDIR" $what 2>&1)
    st=$?
    case $what in
        dups) name="csv: the raw series has every duplicate demo-series sent, the filtered one none" ;;
        spikes) name="spikes sent after the warm-up are gone from the filtered series" ;;
        gaps) name="every missing interval has a filled point in the filtered series" ;;
    esac
    ok $st "$name ($(echo "$res" | tail -n 1))" || diag "$res"
done

# ------------------------------------------------------------------ 12 progress counters
res=$(sed -n 's/.*agent→Kafka \([0-9]*\) values sent · aggregator consumed \([0-9]*\) of them (\([^;]*\);.*/\1 \2 \3/p' \
    "$OUT/demo.log" | awk '{ n++; last = $0; s1 = $1; c1 = $2 }
        !/totals/ && $2 > $1 { bad = bad " " $2 ">" $1 }
        END { printf "%d lines, %s; last: %s\n", n,
              bad == "" ? "consumed <= sent in each" : "consumed > sent:" bad, last
              # the last: after the drain, everything sent was consumed (more: a redelivery)
              exit !(n >= 2 && bad == "" && last ~ /totals/ && c1 >= s1 && s1 > 0) }')
ok $? "progress lines: $res"

# ------------------------------------------------------------------ 13 memory graph unit
info="$OUT/tmp/graph-memory.txt"
vmax=$(sed -n 's/^value_max = //p' "$info" 2>/dev/null)
legend=$(sed -n 's/^legend\[[0-9]*\] = //p' "$info" 2>/dev/null | tr '\n' ' ')
awk -v v="${vmax:-0}" 'BEGIN { exit !(v > 1 && v < 1048576) }' &&
    ! grep -Eq '[0-9] *[kMGT]?i?B|%s' <<<"$legend" && grep -q 'last' <<<"$legend"
ok $? "memory graph: axis in MiB (value_max $vmax), legend without a unit of its own: $legend"

done_testing
