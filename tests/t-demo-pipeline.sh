#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# t-demo-pipeline.sh: the demo removes spikes with the shipped configuration, not its own.
# The "demo" pipeline of `contrib/demo --print-pipelines` against contrib/pipelines/spikes.conf:
#   1   every filter of spikes.conf is in the demo pipeline, in the same order (the demo may
#       add others between them, e.g. fill, and after them, e.g. smooth)
#   2   each of those filters has the same options with the same values, every duration
#       (an option of type "seconds" in the option reference of docs/FILTERS.md, defaults
#       included) scaled by the demo's compressed day (its deseasonalize Period / spikes.conf's);
#       the one exception is deseasonalize's Bins (a 288th of the compressed day would be
#       shorter than the demo's interval)
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=tests/lib/tap.sh
. "$SRCDIR/tests/lib/tap.sh"
plan 2
cd "$SRCDIR" || bail_out "cannot cd to $SRCDIR"

demo=$(contrib/demo --print-pipelines) || bail_out "contrib/demo --print-pipelines failed"
out=$(DEMO_PIPELINES=$demo python3 - contrib/pipelines/spikes.conf docs/FILTERS.md <<'EOF'
import re
import os
import sys


def pipelines(text):
    """{pipeline: [(filter, {option: value})]} of a collectd-syntax configuration."""
    res, pipe, filt = {}, None, None
    for line in text.splitlines():
        line = re.sub(r'\s+#.*$|^\s*#.*$', '', line).strip()
        m = re.match(r'<Pipeline\s+"([^"]+)">', line)
        if m:
            pipe = res.setdefault(m.group(1), [])
            continue
        m = re.match(r'<Filter\s+"([^"]+)">', line)
        if m and pipe is not None:
            filt = (m.group(1), {})
            pipe.append(filt)
            continue
        if line.startswith('</Filter'):
            filt = None
        elif line.startswith('</Pipeline'):
            pipe = None
        elif filt is not None and line:
            k, _, v = line.partition(' ')
            filt[1][k] = v.strip().strip('"')
    return res


spikes = pipelines(open(sys.argv[1]).read())['spikes']
demo = pipelines(os.environ["DEMO_PIPELINES"])['demo']
# Durations and their defaults, per filter, from the option reference.
sys.path.insert(0, "tests/lib")
from filter_durations import durations as read_durations
durations = read_durations(sys.argv[2])
names = [f for f, _ in demo]
order, at = [], 0
for f, _ in spikes:
    at = names.index(f, at) + 1 if f in names[at:] else None
    if at is None:
        break
    order.append(at - 1)
print('order %s' % ('ok' if len(order) == len(spikes) else 'demo %s, spikes.conf %s' % (
    names, [f for f, _ in spikes])))
scale = float(dict(demo[names.index('deseasonalize')][1])['Period']) / float(
    dict(spikes[[f for f, _ in spikes].index('deseasonalize')][1])['Period'])
diff = []
for (f, opts), i in zip(spikes, order):
    dopts = demo[i][1]
    method = opts.get('Method')
    durs = {k: d for k, (d, only) in durations.get(f, {}).items()
            if only is None or k in opts or k in dopts or
            (only[0].startswith('with ') and only[0][5:] in set(opts) | set(dopts)) or
            (not only[0].startswith('with ') and (method is None or method in only))}
    for k in sorted(set(opts) | set(dopts) | set(durs)):
        if f == 'deseasonalize' and k == 'Bins':
            continue
        want, got = opts.get(k), dopts.get(k)
        if k in durs:
            want = float(want) if want is not None else durs[k]
            got = float(got) if got is not None else durs[k]
            if abs(got - want * scale) > 1e-9 * max(1.0, want):
                diff.append('%s %s: %g, want %g x %g' % (f, k, got, want, scale))
        elif want != got:
            diff.append('%s %s: %s, spikes.conf %s' % (f, k, got, want))
print('options %s' % ('ok' if not diff else '; '.join(diff)))
EOF
)
order=$(sed -n 's/^order //p' <<<"$out")
opts=$(sed -n 's/^options //p' <<<"$out")
is "$order" "ok" "1 spikes.conf's filters are in the demo pipeline, in order"
is "$opts" "ok" "2 with the same options, durations scaled to the demo's compressed day"
