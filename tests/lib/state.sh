# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# tests/lib/state.sh: what the read_kafka_ts StateTopic tests (t-read-state*.sh, t-read-seed.sh)
# share: a pipeline, a series generator, the aggregator's configuration, the check of its csv
# against kts-filter's uninterrupted run, waiting for restored state, reading self-metrics.
# Source it after tests/lib/e2e.sh (or tap.sh and collectd.sh) with SRCDIR set:
#   . "$SRCDIR/tests/lib/state.sh"
# It sets W (the test's work directory, collectd_dir work), KF (kts-filter) and T0 (the first
# timestamp of the series). The functions read B (the bootstrap address) and W.
#
#   state_pipeline THRESHOLD            the despiking (Hampel, Threshold 5 in most tests) and
#                                       smoothing (EMA) pipeline "despike" of plugin "sensor",
#                                       output suffix "-filtered"
#   state_spikes_pipeline PERIOD BINS   contrib/pipelines/spikes.conf for plugin "sensor" with a
#                                       compressed day of PERIOD s: every duration (an option of
#                                       type seconds in docs/FILTERS.md, defaults included)
#                                       scaled by PERIOD/86400 and BINS bins, as contrib/demo
#                                       does (tests/t-demo-pipeline.sh)
#   state_series T0 N NS PER-PART [CUT...]  NS series s1.. (host st, plugin sensor, gauge) of
#                                       N points STATE_STEP (10) s apart, the value the python
#                                       expression STATE_VALUE in k (point), s (series) (default:
#                                       a sine with noise and a spike now and then); series s
#                                       on partition (s-1)/PER-PART. The points are cut into
#                                       segments at the CUTs (default N/2). Writes $W/all.jsonl,
#                                       per segment H $W/part-P-H.jsonl (partition P),
#                                       $W/seg-H.jsonl and $W/seg-H.tsv ("key<TAB>message", the
#                                       key as write_kafka_ts's), all in time order
#   state_produce TOPIC H NPART [KCAT-ARG...]  segment H into partitions 0..NPART-1 of TOPIC,
#                                       in file order (kcat -X "$KAFKA_KCAT_ORDER")
#   state_conf NAME GROUP TOPIC STATE-TOPIC PIPELINE-FILE [PROPERTY=VALUE...]
#                                       write NAME's collectd.conf (read_kafka_ts → csv; no
#                                       StateTopic when STATE-TOPIC is empty), print its path;
#                                       CommitInterval 1 and StateInterval STATE_INTERVAL
#                                       (default 1: a checkpoint at every commit point; set
#                                       and empty: no StateInterval line, the plugin's 60 s)
#   state_check [--from T] [--before T2] [--exclude CSV] [--once] [--suffix S] EXPECT-CSV
#       CSV-DIR...                      every filtered row of series sN (plugin instance sN+S,
#                                       default -filtered) in the DataDirs at or after T equals
#                                       kts-filter's value in EXPECT-CSV ("%f", as csv writes
#                                       it); expected are its values from T on, before T2, but
#                                       for the timestamps the kts-filter csv of --exclude also
#                                       has (a row not expected differs); prints the first
#                                       differences and "N of M filtered values present (R rows,
#                                       D duplicates), X differ"; 0 when none differs and all M
#                                       are there (--once: and no timestamp twice)
#   state_present CHECK-ARG...          N of that line
#   state_wait_present N CHECK-ARG...   until N values are present (at most 60 s); not in a
#                                       subshell: STATE_PRESENT = the last count
#   state_wait_check CHECK-ARG...       until state_check passes (at most 120 s)
#   state_wait_installed COUNT NAME TIMEOUT P...  until NAME's log says "state of partition P
#                                       installed" COUNT times for every P (the log is appended
#                                       to across restarts: an earlier run's lines count too)
#   state_wait_count RE COUNT NAME TIMEOUT   until NAME's log has COUNT lines matching RE
#   state_metric NAME PLUGIN-INSTANCE TYPE-INSTANCE   the last value of the self-metric
#                                       read_kafka_ts-PLUGIN-INSTANCE/total_values-TYPE-INSTANCE
#                                       in NAME's csv (0 when none yet)
#   state_settled NAME PLUGIN-INSTANCE TYPE-INSTANCE  the same once two reads in a row agree
#   state_kill NAME                     kill -9 NAME; 0 when it died of it; STATE_KILLED = status
# shellcheck source=tests/lib/collectd.sh
. "$SRCDIR/tests/lib/collectd.sh"
# shellcheck source=tests/lib/kcat.sh
. "$SRCDIR/tests/lib/kcat.sh"

# shellcheck disable=SC2034 # for the caller
KF="${BUILDDIR:-${KTS_TOP_BUILDDIR:-$(pwd)}}/tools/kts-filter"
W=$(collectd_dir work)
# shellcheck disable=SC2034 # for the caller
T0=1700000000
STATE_KILLED=""
STATE_PRESENT=0

state_pipeline() {
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

state_spikes_pipeline() {
    python3 - "$SRCDIR/contrib/pipelines/spikes.conf" "$SRCDIR/docs/FILTERS.md" "$1" "$2" \
        "$SRCDIR/tests/lib" <<'EOF'
import re, sys
conf, ref, period, bins = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
sys.path.insert(0, sys.argv[5])
from filter_durations import durations as read_durations
scale = period / 86400
durations = read_durations(ref)
out, filt, opts = [], None, {}
for line in open(conf):
    line = re.sub(r'\s*#.*$', '', line.rstrip())
    if not line.strip():
        continue
    m = re.match(r'\s*<Filter\s+"([^"]+)">', line)
    if m:
        filt, opts = m.group(1), {}
    elif line.strip().startswith('</Filter') and filt:
        # the defaults of the durations that apply (to the method, with an option set)
        for k, (d, only) in sorted(durations.get(filt, {}).items()):
            applies = only is None or (only[0][5:] in opts if only[0].startswith('with ')
                                       else opts.get('Method', only[0]) in only)
            if k not in opts and applies:
                out.append('    %s %g' % (k, d * scale))
        filt = None
    elif filt:
        k, _, v = line.strip().partition(' ')
        opts[k] = v.strip().strip('"')
        if k in durations.get(filt, {}):
            line = '    %s %g' % (k, float(v) * scale)
        elif filt == 'deseasonalize' and k == 'Bins':
            line = '    Bins ' + bins
    out.append(line)
    if re.match(r'\s*<Pipeline', line):
        out += ['  <Match>', '    Plugin "sensor"', '  </Match>']
print('\n'.join(out))
EOF
}

state_series() {
    python3 - "$W" "${STATE_STEP:-10}" "${STATE_VALUE:-}" "$@" <<'EOF'
import json, math, sys
w, step, expr = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0, n, ns, perpart = (int(a) for a in sys.argv[4:8])
cuts = [int(a) for a in sys.argv[8:]] or [n // 2]
expr = expr or ("50 + 10 * s + 10 * math.sin(k / (7 + s)) + ((k * 37 + s) % 11 - 5) / 10"
                " + (90 if (k + 13 * s) % 97 == 0 else 0)")
value = eval("lambda k, s: " + " ".join(expr.split()), {"math": math})
nseg, npart = len(cuts) + 1, (ns + perpart - 1) // perpart
part = {(p, h): open("%s/part-%d-%d.jsonl" % (w, p, h), "w") for p in range(npart) for h in range(nseg)}
seg = [open("%s/seg-%d.jsonl" % (w, h), "w") for h in range(nseg)]
tsv = [open("%s/seg-%d.tsv" % (w, h), "w") for h in range(nseg)]
allf = open(w + "/all.jsonl", "w")
for k in range(n):
    h = sum(k >= c for c in cuts)
    for s in range(1, ns + 1):
        line = json.dumps({"v": 1, "host": "st", "plugin": "sensor", "plugin_instance": "s%d" % s,
                           "type": "gauge", "type_instance": "", "time": t0 + step * k,
                           "interval": step,
                           "ds": [{"name": "value", "type": "gauge",
                                   "value": round(value(k, s), 3)}]},
                          separators=(",", ":"))
        part[((s - 1) // perpart, h)].write(line + "\n")
        seg[h].write(line + "\n")
        tsv[h].write("st/sensor-s%d/gauge\t%s\n" % (s, line))
        allf.write(line + "\n")
EOF
}

state_produce() {
    local topic=$1 h=$2 n=$3 p
    shift 3
    for ((p = 0; p < n; p++)); do
        kcat -P -b "$B" -t "$topic" -p "$p" -X "$KAFKA_KCAT_ORDER" "$@" <"$W/part-$p-$h.jsonl" \
            2>>"$W/kcat.err" || return 1
    done
}

state_conf() {
    local d kv state="" interval=${STATE_INTERVAL-1}
    d=$(collectd_dir "$1")
    [ -n "$4" ] && state="  StateTopic \"$4\""
    [ -n "$4" ] && [ -n "$interval" ] && state="$state
  StateInterval $interval"
    {
        collectd_conf_csv_reader "$1" "$B"
        for kv in "${@:6}"; do
            echo "  Property \"${kv%%=*}\" \"${kv#*=}\""
        done
        cat <<EOF
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

state_check() {
    local tmin=0 tmax=-1 exclude="" once=0 suffix=-filtered
    while :; do
        case $1 in
            --from) tmin=$2; shift 2 ;;
            --before) tmax=$2; shift 2 ;;
            --exclude) exclude=$2; shift 2 ;;
            --once) once=1; shift ;;
            --suffix) suffix=$2; shift 2 ;;
            *) break ;;
        esac
    done
    python3 - "$tmin" "$tmax" "$exclude" "$once" "$suffix" "$@" <<'EOF'
import csv, glob, os, sys
tmin, tmax, exclude = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
once, suffix, expf, dirs = sys.argv[4] == "1", sys.argv[5], sys.argv[6], sys.argv[7:]
def rows(path):
    out = {}
    for r in csv.DictReader(open(path)):
        t = int(r["timestamp"]) if r["output"] != "" else -1
        if r["action"] == "dropped" or t < tmin or 0 <= tmax <= t:
            continue
        s = r["series"].split("/")[1].split("-", 1)[1]  # st/sensor-s1/gauge: s1
        out.setdefault(s, {})[t] = float(r["output"])
    return out
exp, pre = rows(expf), rows(exclude) if exclude else {}
bad, seen, total, nrows, dups = [], 0, 0, 0, 0
for s, want in sorted(exp.items()):
    want = {t: v for t, v in want.items() if t not in pre.get(s, {})}
    total += len(want)
    got = {}
    for d in dirs:
        for f in glob.glob(os.path.join(d, "st", "sensor-%s%s" % (s, suffix), "gauge-*")):
            for line in open(f):
                if line.startswith("epoch"):
                    continue
                t, v = line.strip().split(",")
                t = round(float(t))
                if t < tmin:
                    continue
                nrows += 1
                dups += t in got
                got.setdefault(t, set()).add(v)
    for t, vs in sorted(got.items()):
        if t not in want or vs != {"%f" % want[t]}:
            bad.append("%s t=%d: csv %s, kts-filter %s" % (s, t, sorted(vs), want.get(t)))
    seen += len(set(got) & set(want))
for b in bad[:8]:
    print(b)
print("%d of %d filtered values present (%d rows, %d duplicates), %d differ" % (seen, total, nrows, dups, len(bad)))
sys.exit(0 if not bad and seen == total and (not once or dups == 0) else 1)
EOF
}

state_present() { state_check "$@" 2>/dev/null | tail -n1 | cut -d' ' -f1; }

state_wait_present() {
    local n=$1
    shift
    for _ in $(seq 300); do
        STATE_PRESENT=$(state_present "$@")
        [ "$STATE_PRESENT" -ge "$n" ] && return 0
        sleep 0.2
    done
    return 1
}

state_wait_check() {
    for _ in $(seq 600); do
        state_check "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

state_wait_count() {
    local i
    for ((i = 0; i < $4 * 10; i++)); do
        [ "$(collectd_log_count "$1" "$3")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

state_wait_installed() {
    local count=$1 name=$2 timeout=$3 p
    shift 3
    for p in "$@"; do
        state_wait_count "state of partition $p installed" "$count" "$name" "$timeout" || return 1
    done
}

state_metric() {
    local f
    f=$(find "$(collectd_dir "$1")/csv/kts-test/read_kafka_ts-$2" -name "total_values-$3-*" 2>/dev/null | sort | tail -n1)
    if [ -n "$f" ]; then tail -n1 "$f" | cut -d, -f2 | cut -d. -f1; else echo 0; fi
}

# The read callback runs every second (COLLECTD_INTERVAL).
state_settled() {
    local a b
    b=$(state_metric "$@")
    for _ in $(seq 20); do
        sleep 1.2
        a=$b
        b=$(state_metric "$@")
        [ "$a" = "$b" ] && break
    done
    echo "$b"
}

# Not in a subshell: wait reaps our own child.
state_kill() {
    local pid
    pid=$(collectd_pid "$1")
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    STATE_KILLED=$?
    collectd_stop "$1" 5 2>/dev/null
    [ "$STATE_KILLED" -eq 137 ]
}
