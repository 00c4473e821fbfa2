#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Does spike removal harm real series? Run a pipeline (default
contrib/pipelines/spikes.conf) with kts-filter over the NAB series as they are (no spikes
injected) and judge every replacement against the raw data around it. Standard library only.

    bench/nab-harm.py --kts-filter BUILD/tools/kts-filter [--config FILE] [--data DIR] [--check]

Per series:
  * replaced: points the pipeline replaced;
  * harmful: replacements that lie further from the mean of the two raw neighbours (the raw
    points just before and after) than the input did;
  * out of range: replacements outside [min, max] of the 24 raw points around them (12 before,
    12 after, the point itself left out);
  * negative: replacements below zero in a series that is never negative.
--check exits 1 when any replacement is out of range or negative, or more than --max-harmful
(default 5) % of all replacements are harmful.
"""
import argparse
import csv
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)

ap = argparse.ArgumentParser()
ap.add_argument('--kts-filter', required=True)
ap.add_argument('--config', default=os.path.join(TOP, 'contrib/pipelines/spikes.conf'))
ap.add_argument('--data', default=os.path.join(TOP, 'bench/data/nab'))
ap.add_argument('--around', type=int, default=12, help='raw points on each side for the range')
ap.add_argument('--check', action='store_true')
ap.add_argument('--max-harmful', type=float, default=5.0, help='percent, for --check')
ap.add_argument('--list', action='store_true', help='print every harmful or out-of-range one')
args = ap.parse_args()


def judge(name, rows):
    """rows: [(timestamp, input, output, action)] of the input points, in order."""
    x = [float(r[1]) for r in rows]
    never_neg = min(x) >= 0
    rep = harm = oor = neg = 0
    for i, (ts, _, out, action) in enumerate(rows):
        if action != 'replaced':
            continue
        rep += 1
        y = float(out)
        nb = [x[j] for j in (i - 1, i + 1) if 0 <= j < len(x)]
        ref = sum(nb) / len(nb)
        bad = []
        if abs(y - ref) > abs(x[i] - ref):
            harm += 1
            bad.append('harmful')
        around = x[max(0, i - args.around):i] + x[i + 1:i + 1 + args.around]
        if around and not (min(around) <= y <= max(around)):
            oor += 1
            bad.append('out of range')
        if never_neg and y < 0:
            neg += 1
            bad.append('negative')
        if bad and args.list:
            print('  %s %s input %g -> %g (neighbours %s): %s' % (
                name, ts, x[i], y, ', '.join('%g' % v for v in nb), ', '.join(bad)))
    return rep, harm, oor, neg


names = sorted(n for n in os.listdir(args.data) if n.endswith('.csv'))
if not names:
    sys.exit('nab-harm: no *.csv in %s (--data)' % args.data)
table = []
for name in names:
    out = subprocess.run([args.kts_filter, '--config', args.config, os.path.join(args.data, name)],
                         capture_output=True, text=True, check=True).stdout
    lines = list(csv.DictReader(out.splitlines()))
    # A point an outlier filter held back (Delay) comes out later with an empty input column.
    late = {r['timestamp']: r for r in lines if r['input'] == '' and r['output'] != ''}
    rows = []
    for r in lines:
        if r['input'] == '':
            continue
        if r['action'] == 'dropped' and r['timestamp'] in late:
            r = dict(late[r['timestamp']], input=r['input'])
        rows.append((r['timestamp'], r['input'], r['output'], r['action']))
    table.append((name, len(rows)) + judge(name, rows))

print('| series | points | replaced | harmful | out of range (%d around) | negative |'
      % (2 * args.around))
print('| --- | ---: | ---: | ---: | ---: | ---: |')
tot = [0, 0, 0, 0, 0]
for name, n, rep, harm, oor, neg in table:
    tot = [a + b for a, b in zip(tot, (n, rep, harm, oor, neg))]
    print('| %s | %d | %d | %d | %d | %d |' % (name, n, rep, harm, oor, neg))
print('| total | %d | %d | %d (%.1f %%) | %d | %d |' % (
    tot[0], tot[1], tot[2], 100.0 * tot[2] / max(tot[1], 1), tot[3], tot[4]))
if args.check:
    bad = tot[3] > 0 or tot[4] > 0 or 100.0 * tot[2] > args.max_harmful * max(tot[1], 1)
    sys.exit(1 if bad else 0)
