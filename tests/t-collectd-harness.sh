#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The collectd harness (tests/lib/collectd.sh) and the test plugin kts_testgen, with the REAL
# daemon and stock plugins only (logfile, csv):
#   1-12  golden mode through csv: every golden value list lands in its CSV file with exactly
#         the values of the ExpectFile (csv's StoreRates defaults to false: raw counters)
#   13-18 burst mode in a second daemon running at the same time: every series gets its whole
#         sequence with strictly increasing times; CountWritten sees every value list
#   19-21 shutdown in the middle of an endless rate-limited burst
#   22-23 a bad plugin config: collectd_start fails and leaves no daemon behind
#   24    collectd_start refuses to run in a subshell (its daemon would escape the EXIT trap)
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=tests/lib/collectd.sh
. "$SRCDIR/tests/lib/collectd.sh"

ok() { collectd_tap_ok "$@"; }
is() { collectd_tap_is "$@"; }
diag() { collectd_tap_diag "$@"; }

collectd_tap_plan 24

# ------------------------------------------------------------------ golden through csv
G=$(collectd_dir golden)
{
    collectd_conf_header golden
    collectd_conf_stock csv
    cat <<EOF
<Plugin csv>
  DataDir "$G/csv"
</Plugin>
EOF
    collectd_conf_ours kts_testgen
    cat <<EOF
<Plugin kts_testgen>
  Mode "golden"
  ExpectFile "$G/expect.jsonl"
  MetaBoolean "kts:marker" true
</Plugin>
EOF
} >"$G/collectd.conf"

collectd_start "$G/collectd.conf" golden
ok $? "golden: collectd started with kts_testgen and csv"
GOLDEN_PID=$(collectd_pid golden)
collectd_wait_log 'kts_testgen: golden done: 36 value lists' 30 golden
ok $? "golden: 36 value lists dispatched"

# The csv plugin writes from collectd's write threads: wait (bounded) for all 36 rows.
csv_rows() { find "$1" -type f -exec tail -n +2 {} + 2>/dev/null | grep -c '^[0-9]'; }
for _ in $(seq 100); do
    [ "$(csv_rows "$G/csv")" -ge 36 ] && break
    sleep 0.1
done

collectd_stop golden
ok $? "golden: collectd stopped by TERM with exit status 0"
is "$COLLECTD_STOPPED_BY/$COLLECTD_EXIT_STATUS" "TERM/0" "golden: stopped by TERM to its PID"
[ ! -e "/proc/$GOLDEN_PID" ]
ok $? "golden: PID $GOLDEN_PID is gone"
collectd_log_has 'Exiting normally' golden
ok $? "golden: collectd logged 'Exiting normally'"
is "$(collectd_log_count '\[error\]' golden)" 0 "golden: no error in the log"

is "$(wc -l <"$G/expect.jsonl")" 36 "golden: ExpectFile has 36 lines"
is "$(find "$G/csv" -type f -printf x | wc -c)/$(csv_rows "$G/csv")" "36/36" \
    "golden: 36 CSV files with one row each"

# Every expected value list against its CSV file. csv writes
#   DataDir/host/plugin[-pinst]/type[-tinst]-YYYY-MM-DD, header "epoch,<ds names>",
#   rows "%.3f" of the time, "%lf" gauges, integers as they are.
python3 - "$G/expect.jsonl" "$G/csv" >"$G/compare.out" 2>&1 <<'EOF'
import json, math, os, re, sys
expect, datadir = sys.argv[1], sys.argv[2]
bad = 0
for line in open(expect, encoding="utf-8"):
    e = json.loads(line)
    d = os.path.join(datadir, e["host"], e["plugin"] + ("-" + e["plugin_instance"] if e["plugin_instance"] else ""))
    base = e["type"] + ("-" + e["type_instance"] if e["type_instance"] else "")
    files = [f for f in os.listdir(d) if re.fullmatch(re.escape(base) + r"-\d{4}-\d\d-\d\d", f)] if os.path.isdir(d) else []
    if len(files) != 1:
        print("# no (or several) CSV files for", repr(d), repr(base), files); bad += 1; continue
    rows = open(os.path.join(d, files[0]), encoding="utf-8").read().splitlines()
    want_rows = ["epoch," + ",".join(e["dsnames"])]
    fields = ["%.3f" % (float(e["time_cdtime"]) / 1073741824.0)]
    # "values" has null for non-finite gauges: the golden set names them nan / inf / neginf.
    special = {"nan": "nan", "inf": "inf", "neginf": "-inf"}
    for t, v in zip(e["dstypes"], e["values"]):
        if t == "gauge":
            fields.append(special[e["type_instance"]] if v is None else "%f" % v)
        else:
            fields.append(str(v))
    want_rows.append(",".join(fields))
    if rows != want_rows:
        print("# mismatch", repr(d), repr(base), "got", rows, "want", want_rows); bad += 1
print("mismatches:", bad)
EOF
grep '^#' "$G/compare.out" >&2
is "$(tail -n 1 "$G/compare.out")" "mismatches: 0" "golden: every CSV file holds exactly the expected values"

# A few exact values, spelled out.
row() { tail -n 1 "$G/csv/$1"-20* 2>/dev/null; }
is "$(row kts-golden/kts_testgen-golden/counter-max)|$(row kts-golden/kts_testgen-golden/derive-min)|$(row kts-golden/kts_testgen-golden/gauge-nan)" \
    "1700000012.000,18446744073709551615|1700000015.000,-9223372036854775808|1700000007.000,nan" \
    "golden: counter 2^64-1, derive -2^63 and NaN are exact (csv StoreRates false)"
is "$(row kts-golden/kts_testgen/load)|$(row kts-golden/kts_testgen-eth0/if_octets)|$(row 'kts-golden/kts_testgen-zürich/gauge-日本語')" \
    "1700000020.500,0.250000,0.500000,1.750000|1700000019.000,123456789012,0|1700000023.000,3.000000" \
    "golden: multi-DS types and UTF-8 names"

# ------------------------------------------------------------------ burst, two daemons at once
# Restart the golden daemon so that two run side by side while the burst runs.
collectd_start "$G/collectd.conf" golden >/dev/null
B=$(collectd_dir burst)
{
    collectd_conf_header burst
    # One write thread: with several, stock csv races when two threads create the same file
    # (seen: a truncated first row "37,1").
    echo "WriteThreads 1"
    collectd_conf_stock csv
    cat <<EOF
<Plugin csv>
  DataDir "$B/csv"
</Plugin>
EOF
    collectd_conf_ours kts_testgen
    cat <<EOF
<Plugin kts_testgen>
  Mode "burst"
  Count 3000
  Series 30
  CountWritten true
  MetaString "kts:marker" "x"
</Plugin>
EOF
} >"$B/collectd.conf"
collectd_start "$B/collectd.conf" burst
ok $? "burst: a second collectd started while the first runs"
[ "$(collectd_pid burst)" != "$(collectd_pid golden)" ] && [ -n "$(collectd_pid golden)" ]
ok $? "burst: two daemons with their own PIDs"
collectd_wait_log 'kts_testgen: burst done: 3000 value lists in [0-9.]+ s' 60 burst
ok $? "burst: 3000 value lists dispatched"
collectd_wait_log 'kts_testgen: burst written: 3000 value lists in [0-9.]+ s' 60 burst
ok $? "burst: CountWritten saw all 3000 after the writers"
collectd_stop burst
ok $? "burst: stopped by TERM with exit status 0"

# Series s has plugin_instance "s<s>", value k = its sequence number, times strictly increasing.
python3 - "$B/csv/kts-burst" >"$B/compare.out" 2>&1 <<'EOF'
import os, sys
root = sys.argv[1]
bad, series = 0, 0
for s in range(30):
    typ = ["gauge", "derive", "counter"][s % 3]
    d = os.path.join(root, "kts_testgen-s%d" % s)
    files = [f for f in os.listdir(d) if f.startswith(typ + "-")] if os.path.isdir(d) else []
    rows = []
    for f in files:
        rows += [r.split(",") for r in open(os.path.join(d, f)).read().splitlines()[1:]]
    pts = sorted((float(v), float(t)) for t, v in rows)
    seq = [int(v) for v, _ in pts]
    times = [t for _, t in pts]
    # csv prints times with 3 decimals: equal neighbours are possible, decreasing ones are not
    if seq != list(range(100)) or any(b < a for a, b in zip(times, times[1:])):
        print("# series", s, "bad:", seq[:5], "...", len(seq)); bad += 1
    series += 1
print("series %d bad %d" % (series, bad))
EOF
grep '^#' "$B/compare.out" >&2
is "$(tail -n 1 "$B/compare.out")" "series 30 bad 0" \
    "burst: 30 series, each with values 0..99 in time order"

# ------------------------------------------------------------------ shutdown mid-burst
collectd_stop golden >/dev/null 2>&1
R=$(collectd_dir endless)
{
    collectd_conf_header endless
    collectd_conf_ours kts_testgen
    cat <<EOF
<Plugin kts_testgen>
  Mode "burst"
  Count 0
  Rate 200
  CountWritten true
</Plugin>
EOF
} >"$R/collectd.conf"
collectd_start "$R/collectd.conf" endless
ok $? "endless: collectd started with Count 0, Rate 200"
collectd_wait_log 'Initialization complete' 10 endless && sleep 1
collectd_stop endless 20
ok $? "endless: stopped by TERM with exit status 0 in the middle of a burst"
collectd_log_has 'kts_testgen: stopped after [0-9]+ value lists' endless
ok $? "endless: kts_testgen logged how many it dispatched before shutdown"

# ------------------------------------------------------------------ a broken config
X=$(collectd_dir broken)
{
    collectd_conf_header broken
    collectd_conf_ours kts_testgen
    printf '<Plugin kts_testgen>\n  Mode "nope"\n</Plugin>\n'
} >"$X/collectd.conf"
COLLECTD_START_TIMEOUT=10 collectd_start "$X/collectd.conf" broken 2>"$X/start.err"
is "$?" 1 "broken: collectd_start fails on an invalid kts_testgen Mode"
grep -q 'Mode "nope": must be "golden" or "burst"' "$X/collectd.log" "$X/collectd.stderr" &&
    [ -z "$(collectd_pid broken)" ]
ok $? "broken: the error names the option and no daemon is left"

( collectd_start "$R/collectd.conf" sub 2>/dev/null ) && out=started || out=refused
is "$out/$(pgrep -f -c -- "-C $R/collectd.conf" || true)" "refused/0" \
    "subshell: collectd_start refuses and starts nothing"

collectd_tap_status
