#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ts_filter end to end: the REAL collectd daemon, the stock unixsock (input with exact
# timestamps, duplicates, spikes and a gap) and csv plugins, and tools/kts-filter as the oracle.
#   1-9   replace mode (WriteThreads 1): dedup → outlier (Hampel, replace) → fill → smooth (EMA)
#         in a PreCache chain; the CSV holds exactly what kts-filter computes offline for the
#         same input (to csv's 6 decimals), duplicates dropped via FC_TARGET_STOP never reach
#         csv, filled points appear, the raw series is gone (replaced), self-metrics counted
#   10    write_log (JSON): the same values to 15 digits, the meta marks, the marker
#   11-14 copy mode (Output* names): raw series unchanged next to the filtered one, which
#         equals kts-filter's output (suffix "-filtered" on the empty plugin instance of
#         tsf_copy: tsf_copy-filtered, never tsf_copy--filtered); a DERIVE series smoothed in
#         place holds the rounded EMA
#   15-18 WriteThreads 5, kts_testgen burst of 30 series: every value list reaches the
#         writers exactly once through the target (CountWritten), self-metric "in" = 3000
#   19-21 a bad <Pipeline> stops start-up with a message naming the option; Mode "copy"
#         without an Output* name is refused
#   22-30 StateFile: the first 100 points, collectd stopped (state written at shutdown and every
#         StateInterval), restarted with the rest: the CSV of both runs equals kts-filter's
#         uninterrupted run; a damaged state file is logged and set aside, collectd runs
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILDDIR=${KTS_TOP_BUILDDIR:-$SRCDIR}
# shellcheck source=tests/lib/collectd.sh
. "$SRCDIR/tests/lib/collectd.sh"
ok() { collectd_tap_ok "$@"; }
is() { collectd_tap_is "$@"; }
diag() { collectd_tap_diag "$@"; }

collectd_tap_plan 30
KF="$BUILDDIR/tools/kts-filter"
[ -x "$KF" ] || { echo "Bail out! $KF is not built"; exit 255; }

PIPE_EDGE='<Pipeline "edge">
  <Match>
    Plugin "tsf_in"
  </Match>
  <Filter "dedup">
  </Filter>
  <Filter "outlier">
    Method "hampel"
    Window 600
    MinPoints 5
    Threshold 4
    Action "replace"
  </Filter>
  <Filter "fill">
    Method "linear"
    MaxGap 5
  </Filter>
  <Filter "smooth">
    Method "ema"
    Tau 60
  </Filter>
</Pipeline>'
PIPE_COPY='<Pipeline "copy">
  <Match>
    Plugin "tsf_copy"
  </Match>
  <Filter "dedup">
  </Filter>
  <Filter "smooth">
    Method "sma"
    Window 50
  </Filter>
  OutputPluginInstanceSuffix "-filtered"
</Pipeline>'
PIPE_INT='<Pipeline "int">
  <Match>
    Plugin "tsf_int"
  </Match>
  <Filter "smooth">
    Method "ema"
    Tau 30
  </Filter>
</Pipeline>'

D=$(collectd_dir main)
SOCK="$D/sock"
# The input: 200 points every 10 s of a noisy sine; spikes at 50 and 120; points 30, 31 and 90
# sent twice (redelivery); 150 and 151 missing (a gap that fill closes).
python3 - "$D/input.csv" <<'EOF'
import math, random, sys
random.seed(7)
rows = []
for i in range(200):
    if i in (150, 151):
        continue
    v = 50 + 10 * math.sin(2 * math.pi * i / 60) + random.gauss(0, 0.5)
    if i in (50, 120):
        v += 60
    v = round(v, 4)
    rows.append((1700000000 + 10 * i, v))
    if i in (30, 31, 90):
        rows.append((1700000000 + 10 * i, v))
with open(sys.argv[1], "w") as f:
    f.write("timestamp,value\n")
    for t, v in rows:
        f.write("%d,%r\n" % (t, v))
EOF

{
    collectd_conf_header main
    echo "WriteThreads 1"
    collectd_conf_stock csv unixsock match_regex write_log
    cat <<EOF
<Plugin write_log>
  Format "JSON"
</Plugin>
<Plugin csv>
  DataDir "$D/csv"
  StoreRates false
</Plugin>
<Plugin unixsock>
  SocketFile "$SOCK"
</Plugin>
EOF
    collectd_conf_ours ts_filter
    cat <<EOF
<Chain "PreCache">
  <Rule "edge">
    <Match "regex">
      Plugin "^tsf_"
    </Match>
    <Target "ts_filter">
$PIPE_EDGE
$PIPE_COPY
$PIPE_INT
    </Target>
  </Rule>
</Chain>
EOF
} >"$D/collectd.conf"

collectd_start "$D/collectd.conf" main
ok $? "collectd started with a ts_filter target in the PreCache chain"

# putval PLUGIN: send every row of input.csv through unixsock, one reply per line; then a
# sentinel series sentinel-PLUGIN: with one write thread the queue is FIFO, so when the sentinel is in csv,
# everything before it has been written.
putval() {
    python3 - "$SOCK" "$1" "$D/input.csv" <<'EOF'
import socket, sys
sock, plugin, path = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
f = s.makefile("rw")
lines = [l.strip().split(",") for l in open(path).read().splitlines()[1:]]
lines.append(("1700009999", "1"))
for i, (t, v) in enumerate(lines):
    p = plugin if i < len(lines) - 1 else "sentinel-" + plugin
    typ, val = ("derive", str(round(float(v)))) if p == "tsf_int" else ("gauge", v)
    f.write('PUTVAL "kts-test/%s/%s" interval=10 %s:%s\n' % (p, typ, t, val))
    f.flush()
    reply = f.readline()
    if not reply.startswith("0 "):
        sys.exit("PUTVAL failed: " + reply)
EOF
}
wait_file() {
    for _ in $(seq 100); do
        compgen -G "$1" >/dev/null && return 0
        sleep 0.1
    done
    return 1
}

putval tsf_in && wait_file "$D/csv/kts-test/sentinel-tsf_in/gauge-*"
ok $? "input sent through unixsock and written"
# Points the target dispatched may queue behind the sentinel: wait (bounded) for all 200 rows.
for _ in $(seq 50); do
    [ "$(cat "$D"/csv/kts-test/tsf_in/gauge-* 2>/dev/null | grep -vc epoch)" -ge 200 ] && break
    sleep 0.1
done

"$KF" --config <(echo "$PIPE_EDGE") --interval 10 --host kts-test --plugin tsf_in --type gauge \
    "$D/input.csv" >"$D/offline.csv" 2>"$D/offline.err"
ok $? "kts-filter ran the same pipeline offline ($(cat "$D/offline.err"))"

# compare OFFLINE CSVGLOB: kts-filter's output rows against csv's rows
compare() {
    python3 - "$1" "$2" <<'EOF'
import csv, glob, sys
off, pattern = sys.argv[1], sys.argv[2]
want = []
for r in csv.DictReader(open(off)):
    if r["output"] != "":
        want.append("%.3f,%f" % (float(r["timestamp"]), float(r["output"])))
got = []
for f in sorted(glob.glob(pattern)):
    got += [l for l in open(f).read().splitlines() if not l.startswith("epoch")]
# Points the target dispatched (filled, re-dispatched) queue behind what was already queued, so
# csv may write them after later points: compare in time order, report the inversions.
inv = sum(1 for a, b in zip(got, got[1:]) if float(b.split(",")[0]) < float(a.split(",")[0]))
print("# rows written out of time order: %d" % inv)
got.sort(key=lambda r: float(r.split(",")[0]))
bad = [(g, w) for g, w in zip(got, want) if g != w]
for g, w in bad[:5]:
    print("# got %s want %s" % (g, w))
print("rows %d/%d mismatches %d" % (len(got), len(want), len(bad) + abs(len(got) - len(want))))
EOF
}
res=$(compare "$D/offline.csv" "$D/csv/kts-test/tsf_in/gauge-*")
echo "$res" | grep '^#' >&2
is "$(echo "$res" | tail -n 1)" "rows 200/200 mismatches 0" \
    "replace: csv holds exactly kts-filter's output (198 distinct times + 2 filled)"
is "$(grep -c ',dropped$' "$D/offline.csv")/$(grep -c ',filled$' "$D/offline.csv")/$(grep -cE '^(1700000500|1700001200),.*,replaced$' "$D/offline.csv")" \
    "3/2/2" "offline: 3 duplicates dropped, 2 points filled, both spikes replaced"
n_dup=$(cut -d, -f1 "$D"/csv/kts-test/tsf_in/gauge-* | grep -v epoch | sort | uniq -d | wc -l)
is "$n_dup" 0 "replace: no timestamp twice in csv (the dropped duplicates never reached it)"
grep -q '^1700000500.000,11' "$D"/csv/kts-test/tsf_in/gauge-*
is "$?" 1 "replace: the spike at 1700000500 (~110) is not in csv"

# Self-metrics: written by the read callback every second.
selfm() { tail -n 1 "$D"/csv/kts-test/ts_filter-edge/total_values-"$1"-* 2>/dev/null | cut -d, -f2; }
for _ in $(seq 50); do
    [ "$(selfm in)" = 201 ] && break
    sleep 0.1
done
is "$(selfm in)/$(selfm stopped)/$(selfm in_place)/$(selfm dispatched)" "201/4/197/3" \
    "self-metrics: 201 in, 4 stopped (3 duplicates + the point closing the gap, re-dispatched), 197 in place, 3 dispatched (2 filled + it)"
is "$(collectd_log_count '\[error\]' main)" 0 "no error in the log"
# write_log (JSON, %.15g values, meta data) sees the same values to 15 digits, and the marks.
python3 - "$D/offline.csv" "$(collectd_logfile main)" >"$D/wlog.out" <<'EOF'
import csv, json, sys
want = {}
for r in csv.DictReader(open(sys.argv[1])):
    if r["output"] != "":
        want[float(r["timestamp"])] = (float(r["output"]), r["action"])
got = {}
for l in open(sys.argv[2]):
    if l.startswith('[{"values"'):
        for v in json.loads(l):
            if v["plugin"] == "tsf_in":
                got[v["time"]] = (v["values"][0], v.get("meta", {}))
bad = [t for t in want if t not in got or "%.15g" % got[t][0] != "%.15g" % want[t][0]]
marks = {"replaced": "ts_filter:replaced", "filled": "ts_filter:filled"}
badmeta = [t for t in want if want[t][1] in marks and t in got and not got[t][1].get(marks[want[t][1]])]
emitted = sorted(t for t in got if got[t][1].get("ts_filter:emitted"))
print("points %d/%d value mismatches %d mark mismatches %d emitted %s" % (len(got), len(want), len(bad), len(badmeta), ",".join("%d" % t for t in emitted)))
EOF
is "$(cat "$D/wlog.out")" "points 200/200 value mismatches 0 mark mismatches 0 emitted 1700001500,1700001510,1700001520" \
    "replace: write_log shows kts-filter's values to 15 digits, replaced/filled marks, and the marker on the 3 dispatched points"

# ------------------------------------------------------------------ copy mode
putval tsf_copy && wait_file "$D/csv/kts-test/sentinel-tsf_copy/gauge-*"
for _ in $(seq 50); do
    [ "$(cat "$D"/csv/kts-test/tsf_copy-filtered/gauge-* 2>/dev/null | grep -vc epoch)" -ge 198 ] && break
    sleep 0.1
done
"$KF" --config <(echo "$PIPE_COPY") --interval 10 --host kts-test --plugin tsf_copy --type gauge \
    "$D/input.csv" >"$D/offline-copy.csv" 2>/dev/null
res=$(compare "$D/offline-copy.csv" "$D/csv/kts-test/tsf_copy-filtered/gauge-*")
echo "$res" | grep '^#' >&2
is "$(echo "$res" | tail -n 1)" "rows 198/198 mismatches 0" "copy: the filtered series equals kts-filter's output"
# The raw series: every input row (duplicates included: collectd's cache complains, csv writes)
python3 - "$D/input.csv" "$D"/csv/kts-test/tsf_copy/gauge-* >"$D/raw.out" <<'EOF'
import sys
want = ["%.3f,%f" % (float(t), float(v)) for t, v in (l.split(",") for l in open(sys.argv[1]).read().splitlines()[1:])]
got = []
for f in sorted(sys.argv[2:]):
    got += [l for l in open(f).read().splitlines() if not l.startswith("epoch")]
print("equal" if got == want else "differ: %d vs %d rows" % (len(got), len(want)))
EOF
is "$(cat "$D/raw.out")" "equal" "copy: the raw series is unchanged (201 rows, duplicates included)"
# A DERIVE data source in place: the smoothed value rounded to an integer (counted "rounded").
putval tsf_int && wait_file "$D/csv/kts-test/sentinel-tsf_int/gauge-*"
python3 -c '
import sys
rows = [l.split(",") for l in open(sys.argv[1]).read().splitlines()[1:]]
print("timestamp,value")
for t, v in rows:
    print("%s,%d" % (t, round(float(v))))' "$D/input.csv" >"$D/input-int.csv"
"$KF" --config <(echo "$PIPE_INT") --interval 10 --host kts-test --plugin tsf_int --type derive \
    "$D/input-int.csv" >"$D/offline-int.csv" 2>/dev/null
python3 - "$D/offline-int.csv" "$D"/csv/kts-test/tsf_int/derive-* >"$D/int.out" <<'EOF'
import csv, sys
import math
def cround(x):  # C round(): halves away from zero (Python's round() goes to even)
    return int(math.copysign(math.floor(abs(x) + 0.5), x))
want = ["%.3f,%d" % (float(r["timestamp"]), cround(float(r["output"]))) for r in csv.DictReader(open(sys.argv[1])) if r["output"] != ""]
got = []
for f in sorted(sys.argv[2:]):
    got += [l for l in open(f).read().splitlines() if not l.startswith("epoch")]
print("rows %d/%d mismatches %d" % (len(got), len(want), sum(1 for g, w in zip(got, want) if g != w) + abs(len(got) - len(want))))
EOF
is "$(cat "$D/int.out")" "rows 201/201 mismatches 0" "derive in place: csv holds kts-filter's EMA rounded to integers"
collectd_stop main
ok $? "stopped by TERM with exit status 0"

# ------------------------------------------------------------------ write threads
B=$(collectd_dir burst)
{
    collectd_conf_header burst
    echo "WriteThreads 5"
    collectd_conf_ours ts_filter kts_testgen
    cat <<EOF
<Plugin kts_testgen>
  Mode "burst"
  Count 3000
  Series 30
  CountWritten true
</Plugin>
<Chain "PreCache">
  <Target "ts_filter">
    <Pipeline "burst">
      <Match>
        Plugin "kts_testgen"
      </Match>
      <Filter "dedup">
      </Filter>
      <Filter "smooth">
        Method "ema"
        Tau 5
      </Filter>
    </Pipeline>
  </Target>
</Chain>
EOF
    collectd_conf_stock csv
    printf '<Plugin csv>\n  DataDir "%s/csv"\n</Plugin>\n' "$B"
} >"$B/collectd.conf"
collectd_start "$B/collectd.conf" burst
ok $? "burst: collectd with WriteThreads 5 and a ts_filter target started"
collectd_wait_log 'kts_testgen: burst written: 3000 value lists' 60 burst
ok $? "burst: all 3000 value lists passed the target and reached the writers"
bself() { tail -q -n 1 "$B"/csv/kts-test/ts_filter-burst/total_values-"$1"-* 2>/dev/null | cut -d, -f2; }
for _ in $(seq 50); do
    [ "$(bself in)" = 3000 ] && break
    sleep 0.1
done
is "$(bself in)/$(bself in_place)" "3000/3000" "burst: self-metrics 3000 in, 3000 rewritten in place"
collectd_stop burst
ok $? "burst: stopped by TERM with exit status 0"

# ------------------------------------------------------------------ bad configurations
X=$(collectd_dir broken)
{
    collectd_conf_header broken
    collectd_conf_ours ts_filter
    cat <<'EOF'
<Chain "PreCache">
  <Target "ts_filter">
    <Pipeline "bad">
      <Filter "smooth">
        Method "ema"
        Tau -5
      </Filter>
    </Pipeline>
  </Target>
</Chain>
EOF
} >"$X/collectd.conf"
COLLECTD_START_TIMEOUT=10 collectd_start "$X/collectd.conf" broken 2>/dev/null
is "$?" 1 "bad pipeline: collectd does not start"
grep -hE 'ts_filter.*Tau' "$X/collectd.log" "$X/collectd.stderr" | head -n 1 | sed "s/^/# /" >&2
grep -qE 'ts_filter.*Tau' "$X/collectd.log" "$X/collectd.stderr"
ok $? "bad pipeline: the message names the option (Tau)"

Y=$(collectd_dir copymode)
{
    collectd_conf_header copymode
    collectd_conf_ours ts_filter
    cat <<'EOF'
<Chain "PreCache">
  <Target "ts_filter">
    Mode "copy"
    <Pipeline "noname">
      <Filter "dedup">
      </Filter>
    </Pipeline>
  </Target>
</Chain>
EOF
} >"$Y/collectd.conf"
COLLECTD_START_TIMEOUT=10 collectd_start "$Y/collectd.conf" copymode 2>/dev/null
rc=$?
grep -q 'Mode "copy" needs an Output\* option' "$Y/collectd.log" "$Y/collectd.stderr"
is "$rc/$?" "1/0" "Mode copy without Output* names: refused, naming the problem"

# ------------------------------------------------------------------ StateFile
S=$(collectd_dir state1)
PIPE_ST=${PIPE_EDGE//tsf_in/tsf_st}
PIPE_ST=${PIPE_ST//\"edge\"/\"st\"}
# state_conf NAME: the same daemon each time (the csv and the state file are in $S)
state_conf() {
    {
        collectd_conf_header "$1"
        echo "WriteThreads 1"
        collectd_conf_stock csv unixsock match_regex
        cat <<EOF
<Plugin csv>
  DataDir "$S/csv"
  StoreRates false
</Plugin>
<Plugin unixsock>
  SocketFile "$S/sock"
</Plugin>
EOF
        collectd_conf_ours ts_filter
        cat <<EOF
<Chain "PreCache">
  <Rule "st">
    <Match "regex">
      Plugin "^tsf_st$"
    </Match>
    <Target "ts_filter">
      StateFile "$S/state"
      StateInterval 1
$PIPE_ST
    </Target>
  </Rule>
</Chain>
EOF
    } >"$S/$1.conf"
}
# putval_rows FIRST LAST SENTINEL: rows FIRST..LAST-1 of input.csv as tsf_st, then a sentinel
putval_rows() {
    python3 - "$S/sock" "$D/input.csv" "$1" "$2" "$3" <<'EOF'
import socket, sys
sock, path, first, last, sentinel = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
f = s.makefile("rw")
rows = [l.strip().split(",") for l in open(path).read().splitlines()[1:]][first:last]
rows.append(("1700009999", "1"))
for i, (t, v) in enumerate(rows):
    p = "tsf_st" if i < len(rows) - 1 else sentinel
    f.write('PUTVAL "kts-test/%s/gauge" interval=10 %s:%s\n' % (p, t, v))
    f.flush()
    if not f.readline().startswith("0 "):
        sys.exit("PUTVAL failed")
EOF
}
state_conf state1
collectd_start "$S/state1.conf" state1 && putval_rows 0 100 sentinel1 &&
    wait_file "$S/csv/kts-test/sentinel1/gauge-*" && wait_file "$S/state"
ok $? "StateFile: 100 points filtered, the state file written while running (StateInterval 1)"
collectd_stop state1
collectd_log_has 'StateFile ".*/state": 1 series written' state1
ok $? "StateFile: written at shutdown (1 series)"
state_conf state2
collectd_start "$S/state2.conf" state2 && putval_rows 100 1000 sentinel2 &&
    wait_file "$S/csv/kts-test/sentinel2/gauge-*"
ok $? "StateFile: restarted, the rest of the points sent"
collectd_log_has 'StateFile ".*/state": 1 series restored, 0 refused' state2
ok $? "StateFile: the series' state restored at start"
wait_file "$S/csv/kts-test/ts_filter-st/total_values-state_restored-*" &&
    [ "$(tail -n 1 "$S"/csv/kts-test/ts_filter-st/total_values-state_restored-* | cut -d, -f2)" = 1 ]
ok $? "StateFile: self-metric state_restored = 1"
for _ in $(seq 50); do
    [ "$(cat "$S"/csv/kts-test/tsf_st/gauge-* 2>/dev/null | grep -vc epoch)" -ge 200 ] && break
    sleep 0.1
done
collectd_stop state2
"$KF" --config <(echo "$PIPE_ST") --interval 10 --host kts-test --plugin tsf_st --type gauge \
    "$D/input.csv" >"$S/offline.csv" 2>/dev/null
res=$(compare "$S/offline.csv" "$S/csv/kts-test/tsf_st/gauge-*")
echo "$res" | grep '^#' >&2
is "$(echo "$res" | tail -n 1)" "rows 200/200 mismatches 0" \
    "StateFile: the CSV of the two runs equals one uninterrupted run (kts-filter)"
printf 'KTSF\001\000\000\000\377\377' >"$S/state"
state_conf state3
collectd_start "$S/state3.conf" state3
ok $? "StateFile damaged: collectd starts anyway"
collectd_log_has 'StateFile: .*/state: entry 1: cut short .*set aside as .*/state\.bad-' state3
ok $? "StateFile damaged: logged, with the name it was set aside as"
collectd_stop state3
ls "$S"/state.bad-* >/dev/null 2>&1 && [ -f "$S/state" ]
ok $? "StateFile damaged: the bad file kept aside, a new state written at shutdown"

collectd_tap_status
