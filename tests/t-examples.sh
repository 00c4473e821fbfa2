#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# t-examples.sh: every example configuration in contrib/examples/ is accepted by the REAL collectd
# with our built plugins and works against the suite's REAL Kafka, so the examples never rot.
#
# Each example runs as shipped except for what must differ in a test (example_conf below): the
# broker address, topic and group names (prefixed by a per-run id), the log file and data paths
# (under the test's directory), Interval 1 instead of 10, write_graphite's Host/Port (a local
# listener), and PluginDir lines so that our plugins load from the build and stock ones from
# /usr/lib/collectd.
#
#   1-3  agent.conf: starts; write_kafka_ts delivers the host's metrics to Kafka, including the
#        ts_filter target's smoothed copy of the load average (plugin instance "ema"); no
#        [error] line in the log and a clean stop (exit status 0 after TERM)
#   4-6  aggregator.conf: starts with its 3 pipelines, reading what agent.conf sent; the agent's
#        values reach csv, rrdtool (.rrd files) and write_graphite (lines on the listener),
#        CPU jiffies also as the cpu pipeline's smoothed rate (cpu-N-rate5m/percent-*); no
#        [error] line, clean stop
#   7-10 migration.conf: the stock write_kafka producer block in its comment (uncommented) runs
#        in a producer daemon; the aggregator as shipped writes its collectd-JSON values to csv
#        and rrd; read_kafka_ts counted no bad message; no [error] line, clean stops
#   11   contrib/examples/ holds exactly the examples tested here (a new one needs a test)
#   12-14 the man page's EXAMPLES (docs/collectd-kafka-ts.pod: Agent, Aggregator, Migration), each
#        with a logfile block added and rewritten the same way: the agent delivers to Kafka, the
#        aggregator writes the agent's load to rrdtool and write_graphite, the migration
#        aggregator starts; no [error] line and a clean stop for each
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
EX="$SRCDIR/contrib/examples"
GPID=""
# Set before e2e.sh, whose EXIT trap then runs first (stops the daemons, then this).
trap '[ -n "$GPID" ] && kill "$GPID" 2>/dev/null; wait 2>/dev/null' EXIT
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
e2e_plan 14
RUN=kex-$$-$(date +%s)
OURS="write_kafka_ts read_kafka_ts ts_filter"
collectd_conf_ours $OURS >/dev/null || diag "our plugins are not all built"

# example_conf EXAMPLE NAME [GRAPHITE_PORT]: the example rewritten for daemon NAME (see the head);
# topic and group names are prefixed with $PREFIX.
PREFIX=$RUN
example_conf() {
    local d
    d=$(collectd_dir "$2")
    python3 - "$1" "$d" "$B" "$PREFIX" "$COLLECTD_TMP/plugins" "$OURS" "${3:-0}" "$COLLECTD_STOCK_PLUGIN_DIR" \
        >"$d/collectd.conf" <<'PYEOF'
import re, sys
path, d, broker, run, plugdir, ours, gport, stock = sys.argv[1:9]
ours = ours.split()
s = open(path).read()
s = s.replace('"/var/log/collectd.log"', '"%s/collectd.log"' % d)
s = s.replace('"/var/lib/collectd', '"%s' % d)
s = re.sub(r'^(\s*)Interval 10\b', r'\1Interval 1', s, flags=re.M)
s = re.sub(r'("bootstrap\.servers"|"metadata\.broker\.list") "[^"]*"', r'\1 "%s"' % broker, s)
s = re.sub(r'^(\s*(?:Topic|DeadLetterTopic|GroupId) )"([^"^]*)"', r'\1"%s-\2"' % run, s, flags=re.M)
if gport != '0':
    s = re.sub(r'^(\s*Host) "[^"]*"', r'\1 "127.0.0.1"', s, flags=re.M)
    s = re.sub(r'^(\s*Port) "[^"]*"', r'\1 "%s"' % gport, s, flags=re.M)
def load(m):
    if m.group(2) in ours:
        return 'PluginDir "%s"\n%s\nPluginDir "%s"' % (plugdir, m.group(0), stock)
    return m.group(0)
s = re.sub(r'^(\s*)LoadPlugin "?(\w+)"?\s*$', load, s, flags=re.M)
print('BaseDir "%s"\nPIDFile "%s/collectd.pid"\nPluginDir "%s"' % (d, d, stock))
print(s)
PYEOF
    echo "$d/collectd.conf"
}
# no_errors NAME: the log has no [error] line (printed as diagnostics when it has).
no_errors() {
    if collectd_log_has '\[error\]' "$1"; then
        grep '\[error\]' "$(collectd_logfile "$1")" | head -n 20 | sed 's/^/#   /' >&2
        return 1
    fi
}
# wait_for TIMEOUT CMD...: poll CMD every 0.5 s until it succeeds.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.5
    done
}
topic_has() { kcat -C -b "$B" -t "$1" -o beginning -e -q 2>/dev/null | grep -q "$2"; }

# ------------------------------------------------------------------ 1-3 agent.conf
conf=$(example_conf "$EX/agent.conf" agent)
collectd_start "$conf" agent
ok $? "agent.conf starts (write_kafka_ts, ts_filter target in the PreCache chain)"
# The load average raw and as the pipeline's copy with plugin instance "ema"; CPU for 4-6.
wait_for 60 topic_has "$RUN-collectd" '"plugin":"load","plugin_instance":"ema"' &&
    wait_for 60 topic_has "$RUN-collectd" '"plugin":"load","plugin_instance":""' &&
    wait_for 60 topic_has "$RUN-collectd" '"plugin":"cpu"'
ok $? "agent.conf: write_kafka_ts delivers cpu and load, and ts_filter's smoothed load copy (ema)"
sleep 2 # a few more rounds, so the aggregator has several CPU points for its rates
collectd_stop agent
st=$?
no_errors agent
is "$?/$st" 0/0 "agent.conf: no [error] in the log, clean stop"
n=$(kcat -C -b "$B" -t "$RUN-collectd" -o beginning -e -q 2>/dev/null | wc -l)
diag "agent.conf sent $n messages"

# ------------------------------------------------------------------ 4-6 aggregator.conf
G=$(collectd_dir graphite)
python3 - "$G" <<'PYEOF' &
import socket, sys, threading
d = sys.argv[1]
srv = socket.socket()
srv.bind(('127.0.0.1', 0))
srv.listen(8)
open(d + '/port.tmp', 'w').write(str(srv.getsockname()[1]))
__import__('os').rename(d + '/port.tmp', d + '/port')
out = open(d + '/lines', 'ab', buffering=0)
def serve(c):
    while True:
        b = c.recv(65536)
        if not b:
            return
        out.write(b)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PYEOF
GPID=$!
wait_for 30 test -s "$G/port" || diag "graphite listener did not start"
conf=$(example_conf "$EX/aggregator.conf" aggregator "$(cat "$G/port" 2>/dev/null)")
A=$(collectd_dir aggregator)
collectd_start "$conf" aggregator
st=$?
is "$st/$(collectd_log_count 'pipeline "(memory|cpu|df)", mode copy' aggregator)" 0/3 \
    "aggregator.conf starts with its 3 pipelines (copy mode)"
has_rate() { compgen -G "$A/csv/*/cpu-*-rate5m/percent-*" >/dev/null; }
has_rrd() { compgen -G "$A/rrd/*/load/load.rrd" >/dev/null; }
has_graphite() { grep -q '^collectd\.[^ ]*\.load\.load\.shortterm ' "$G/lines" 2>/dev/null; }
wait_for 60 has_rate && wait_for 30 has_rrd && wait_for 30 has_graphite
ok $? "aggregator.conf: the agent's values reach csv, rrdtool and write_graphite; cpu as smoothed rate5m percent"
collectd_stop aggregator
st=$?
no_errors aggregator
is "$?/$st" 0/0 "aggregator.conf: no [error] in the log, clean stop"

# ------------------------------------------------------------------ 7-10 migration.conf
P=$(collectd_dir producer)
{
    collectd_conf_header producer
    collectd_conf_stock load
    # The commented stock write_kafka block, uncommented, as the agents run it.
    python3 - "$EX/migration.conf" "$B" "$RUN" <<'PYEOF'
import re, sys
s = open(sys.argv[1]).read()
m = re.search(r'^#   (LoadPlugin write_kafka\n.*?^#   </Plugin>)\n', s, re.S | re.M)
block = re.sub(r'^#   ?', '', m.group(1), flags=re.M) if m else 'MISSING write_kafka block'
block = re.sub(r'"metadata\.broker\.list" "[^"]*"', '"metadata.broker.list" "%s"' % sys.argv[2], block)
block = re.sub(r'<Topic "([^"]*)">', r'<Topic "%s-\1">' % sys.argv[3], block)
print(block)
PYEOF
} >"$P/collectd.conf"
collectd_start "$P/collectd.conf" producer
ok $? "migration.conf's stock write_kafka block (uncommented) starts in a producer daemon"
conf=$(example_conf "$EX/migration.conf" migration)
M=$(collectd_dir migration)
collectd_start "$conf" migration
ok $? "migration.conf starts"
has_load() {
    compgen -G "$M/csv/kts-test/load/load-*" >/dev/null && compgen -G "$M/rrd/kts-test/load/load.rrd" >/dev/null
}
wait_for 60 has_load
st=$?
sleep 2 # a self-metric round after the first values
collectd_stop producer
st2=$?
collectd_stop migration
st3=$?
# The last value of the decode_errors counter ("none" when it never reached csv).
bad=$(cat "$M"/csv/*/read_kafka_ts-*/total_values-decode_errors-* 2>/dev/null | grep -v '^epoch' |
    tail -n 1 | awk -F, '{ print $2 + 0 } END { if (NR == 0) print "none" }')
is "$st/$bad" "0/0" "migration.conf: stock write_kafka's collectd JSON reaches csv and rrd; 0 bad messages"
no_errors producer
e1=$?
no_errors migration
is "$e1/$?/$st2/$st3" 0/0/0/0 "migration: no [error] in either log, clean stops"

# ------------------------------------------------------------------ 11
is "$(cd "$EX" && ls -- *.conf | tr '\n' ' ')" "agent.conf aggregator.conf migration.conf " \
    "contrib/examples holds exactly the examples tested here"

# ------------------------------------------------------------------ 12-14 the man page's EXAMPLES
PREFIX=$RUN-pod
# pod_example TITLE: the verbatim lines of "=head2 TITLE" under "=head1 EXAMPLES", after a logfile
# block (the man page's examples leave logging to the reader).
pod_example() {
    printf 'LoadPlugin logfile\n<Plugin logfile>\n  LogLevel "info"\n  File "/var/log/collectd.log"\n'
    printf '  Timestamp true\n  PrintSeverity true\n</Plugin>\n'
    awk -v t="$1" '/^=head1/ { ex = ($0 == "=head1 EXAMPLES") } ex && /^=head2/ { on = ($0 == "=head2 " t); next }
        ex && on && /^ / { print substr($0, 2) }' "$SRCDIR/docs/collectd-kafka-ts.pod"
}
# pod_run TITLE NAME CHECK...: start the example, run CHECK (polled), stop; one test point.
pod_run() {
    local title=$1 name=$2 conf st=1
    shift 2
    pod_example "$title" >"$W/pod-$name.conf"
    conf=$(example_conf "$W/pod-$name.conf" "$name" "$(cat "$G/port" 2>/dev/null)")
    if collectd_start "$conf" "$name"; then
        wait_for 60 "$@"
        st=$?
        collectd_stop "$name" || st=1
        no_errors "$name" || st=1
    fi
    ok "$st" "collectd-kafka-ts(5) EXAMPLES \"$title\": starts, $DESC, no [error], clean stop"
}
W=$(collectd_dir work)
DESC="delivers cpu and the smoothed load copy to Kafka"
pod_run Agent pod-agent topic_has "$PREFIX-collectd" '"plugin":"load","plugin_instance":"ema"'
PA=$(collectd_dir pod-aggregator)
pod_rrd() { compgen -G "$PA/rrd/*/load/load.rrd" >/dev/null && [ "$(grep -c '\.load\.load\.shortterm ' "$G/lines")" -gt "$NG" ]; }
NG=$(grep -c '\.load\.load\.shortterm ' "$G/lines" 2>/dev/null)
DESC="writes the agent's load to rrdtool and write_graphite"
pod_run Aggregator pod-aggregator pod_rrd
DESC="joins its group and is assigned partitions"
pod_run "Migration from stock write_kafka" pod-migration collectd_wait_log 'read_kafka_ts plugin .*assigned [1-9][0-9]* partition' 1 pod-migration

collectd_tap_status
