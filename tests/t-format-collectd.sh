#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kts_format against collectd itself: the REAL daemon (Debian collectd-core 5.12) dispatches the
# kts_testgen golden set (every DS type and limit, multi-DS, UTF-8 and control characters,
# 127-byte names, meta data of every type) and the stock write_http plugin ("Format JSON",
# StoreRates false: the same format_json code stock write_kafka uses) posts it to a small HTTP
# sink on 127.0.0.1. Then:
#   1-4  collectd starts, dispatches, posts all 36 value lists, stops
#   5    our collectd encoder (tests/format-tool) writes byte for byte what collectd wrote for
#        every value list whose strings are printable ASCII (guarantee 3 of kts_format.h)
#   6    for the others, the bytes differ only inside strings (collectd writes '?' for
#        control characters and non-ASCII; we escape and keep UTF-8: the documented deviation)
#   7    our decoder reads collectd's whole batch (one array of 36) and re-encoding it gives
#        collectd's bytes back, byte for byte
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILDDIR=${KTS_TOP_BUILDDIR:-$PWD}
# shellcheck source=tests/lib/tap.sh
. "$SRCDIR/tests/lib/tap.sh"
# shellcheck source=tests/lib/collectd.sh
. "$SRCDIR/tests/lib/collectd.sh"

plan 7
TOOL="$BUILDDIR/tests/format-tool"
D=$(collectd_dir fmt)

# ------------------------------------------------------------------ the HTTP sink
cat >"$D/sink.py" <<'EOF'
import http.server, sys
out = open(sys.argv[2], 'ab')
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        out.write(body + b'\n')
        out.flush()
        self.send_response(200)
        self.send_header('Content-Length', '0')
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(('127.0.0.1', 0), H)
with open(sys.argv[1] + '.tmp', 'w') as f:
    f.write(str(s.server_address[1]))
import os
os.rename(sys.argv[1] + '.tmp', sys.argv[1])
s.serve_forever()
EOF
python3 "$D/sink.py" "$D/port" "$D/bodies" &
SINK_PID=$!
stop_sink() { kill "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null; }
# collectd.sh owns the EXIT trap; put ours in front of it.
trap "$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//"); stop_sink" EXIT
for _ in $(seq 100); do
    [ -s "$D/port" ] && break
    sleep 0.1
done
PORT=$(cat "$D/port" 2>/dev/null)
[ -n "$PORT" ] || bail_out "the HTTP sink did not start"

# ------------------------------------------------------------------ collectd
{
    collectd_conf_header fmt
    collectd_conf_stock write_http
    cat <<EOF
<Plugin write_http>
  <Node "sink">
    URL "http://127.0.0.1:$PORT/"
    Format "JSON"
    StoreRates false
    BufferSize 262144
  </Node>
</Plugin>
EOF
    collectd_conf_ours kts_testgen
    cat <<EOF
<Plugin kts_testgen>
  Mode "golden"
  ExpectFile "$D/expect.jsonl"
</Plugin>
EOF
} >"$D/collectd.conf"

collectd_start "$D/collectd.conf" fmt
ok $? "collectd started with kts_testgen and stock write_http (Format JSON)"
collectd_wait_log 'kts_testgen: golden done: 36 value lists' 30 fmt
ok $? "36 golden value lists dispatched"
# write_http sends its buffer when it is full or flushed: stopping collectd flushes it.
collectd_stop fmt
ok $? "collectd stopped cleanly"
for _ in $(seq 50); do
    [ "$(grep -o '{"values"' "$D/bodies" 2>/dev/null | wc -l)" -ge 36 ] && break
    sleep 0.1
done
stop_sink
is "$(grep -o '{"values"' "$D/bodies" 2>/dev/null | wc -l)" 36 "write_http posted 36 value lists"

# ------------------------------------------------------------------ compare
# The ExpectFile holds exact values (cdtime integers, shortest doubles): turn it into value
# list descriptions for format-tool, encode them, and match collectd's objects by time.
python3 - "$D/expect.jsonl" "$D/desc" <<'EOF' || bail_out "cannot read the ExpectFile"
import json, sys
def esc(s):
    out = ''
    for b in s.encode('utf-8'):
        c = chr(b)
        out += c if (c.isalnum() or c in '._:-') and b < 0x80 else '\\x%02x' % b
    return out or '\\z'
descs = []
for line in open(sys.argv[1], encoding='utf-8'):
    e = json.loads(line, parse_float=str, parse_int=str)
    d = []
    for k in ('host', 'plugin', 'plugin_instance', 'type', 'type_instance'):
        if e[k] != '':
            d.append('%s %s' % (k, esc(e[k])))
    d.append('time %s' % e['time_cdtime'])
    d.append('interval %s' % e['interval_cdtime'])
    for n, t, v in zip(e['dsnames'], e['dstypes'], e['values']):
        d.append('ds %s %s %s' % (esc(n), t, 'nan' if v is None else v))
    for k, m in e.get('meta', {}).items():
        v = m['value']
        if m['type'] == 'string':
            v = esc(v)
        elif m['type'] == 'boolean':
            v = 'true' if v else 'false'
        elif v is None:
            v = 'nan'
        d.append('meta %s %s %s' % (esc(k), m['type'], v))
    descs.append('\n'.join(d))
open(sys.argv[2], 'w').write('\n---\n'.join(descs) + '\n')
EOF
"$TOOL" encode collectd <"$D/desc" >"$D/ours" 2>"$D/tool.err" || diag "$(cat "$D/tool.err")"

python3 - "$D/ours" "$D/bodies" "$D/expect.jsonl" >"$D/compare" <<'EOF'
import json, re, sys
ours = [l.rstrip('\n') for l in open(sys.argv[1], encoding='utf-8', errors='surrogateescape')]
raw = open(sys.argv[2], 'rb').read().decode('utf-8', 'surrogateescape')
expect = [json.loads(l) for l in open(sys.argv[3], encoding='utf-8')]
# collectd's objects: the batch is "[{...},{...}]"; strings never contain '},{"values":'.
stock = []
for body in raw.split('\n'):
    if body:
        stock += re.split(r'(?<=\}),(?=\{"values":)', body[1:-1])
by_time = {}
for o in stock:
    by_time[re.search(r'"time":([0-9.]+)', o).group(1)] = o
def plain(s):
    return all(0x20 <= ord(c) < 0x7f for c in s)
def blank(s):
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', s)
same = exact_total = 0
strdiff_ok = strdiff_total = 0
for e, o in zip(expect, ours):
    body = o[1:-1]
    t = re.search(r'"time":([0-9.]+)', body).group(1)
    s = by_time.get(t)
    strings = [e[k] for k in ('host', 'plugin', 'plugin_instance', 'type', 'type_instance')]
    strings += e['dsnames']
    for k, m in e.get('meta', {}).items():
        strings.append(k)
        if m['type'] == 'string':
            strings.append(m['value'])
    if all(plain(x) for x in strings):
        exact_total += 1
        if s == body:
            same += 1
        else:
            print('DIFF collectd: %s\nDIFF ours:     %s' % (s, body))
    else:
        strdiff_total += 1
        if s is not None and blank(s) == blank(body):
            strdiff_ok += 1
        else:
            print('STRDIFF collectd: %s\nSTRDIFF ours:     %s' % (s, body))
print('exact %d/%d strings %d/%d' % (same, exact_total, strdiff_ok, strdiff_total))
EOF
SUMMARY=$(tail -n 1 "$D/compare")
note "$SUMMARY"
grep '^DIFF\|^STRDIFF' "$D/compare" | while read -r l; do diag "$l"; done
SAME=0 EXACT=0 SOK=0 STOTAL=0
if [[ "$SUMMARY" =~ ^exact\ ([0-9]+)/([0-9]+)\ strings\ ([0-9]+)/([0-9]+)$ ]]; then
    SAME=${BASH_REMATCH[1]} EXACT=${BASH_REMATCH[2]} SOK=${BASH_REMATCH[3]} STOTAL=${BASH_REMATCH[4]}
fi
ok $((SAME == EXACT && EXACT >= 25 ? 0 : 1)) \
    "our collectd encoding is byte-identical to collectd's for $SAME/$EXACT value lists"
ok $((SOK == STOTAL && STOTAL >= 5 ? 0 : 1)) \
    "for $SOK/$STOTAL value lists with UTF-8 or control characters only strings differ"

# The whole batch, decoded and encoded again.
head -n 1 "$D/bodies" >"$D/batch"
"$TOOL" recode <"$D/batch" >"$D/recoded" 2>"$D/recode.err"
cmp -s "$D/batch" "$D/recoded"
ok $? "collectd's batch of 36 decodes, and re-encoding gives the same bytes"
[ -s "$D/recode.err" ] && diag "$(cat "$D/recode.err")"
done_testing
