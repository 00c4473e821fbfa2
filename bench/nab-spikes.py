#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run a pipeline (default contrib/pipelines/spikes.conf) with kts-filter over the NAB series
and count what it flags: labelled anomalies (combined_labels.json) and NAB anomaly windows
(combined_windows.json) against the clean points outside the windows. Standard library only.

    bench/nab-spikes.py --kts-filter BUILD/tools/kts-filter [--config FILE] [--data DIR]

A point counts as flagged when kts-filter reports it replaced, marked or dropped.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)

ap = argparse.ArgumentParser()
ap.add_argument('--kts-filter', required=True)
ap.add_argument('--config', default=os.path.join(TOP, 'contrib/pipelines/spikes.conf'))
ap.add_argument('--data', default=os.path.join(HERE, 'data/nab'))
ap.add_argument('--near', type=int, default=2, help='a label counts as hit when a point within '
                'this many steps of it is flagged')
args = ap.parse_args()

labels = json.load(open(os.path.join(args.data, 'combined_labels.json')))
windows = json.load(open(os.path.join(args.data, 'combined_windows.json')))


def parse(ts):
    return datetime.strptime(ts[:19], '%Y-%m-%d %H:%M:%S')


print('| series | points | flagged | labels hit (±%d steps) | flagged in windows | flagged outside '
      'windows (clean) | clean flag rate |' % args.near)
print('| --- | ---: | ---: | ---: | ---: | ---: | ---: |')
tot = [0, 0, 0, 0, 0, 0, 0]
for name in sorted(os.listdir(args.data)):
    if not name.endswith('.csv'):
        continue
    key = [k for k in labels if k.endswith('/' + name)][0]
    out = subprocess.run([args.kts_filter, '--config', args.config, os.path.join(args.data, name)],
                         capture_output=True, text=True, check=True).stdout
    rows = [r for r in csv.DictReader(out.splitlines()) if r['input'] != '']
    times = [parse(r['timestamp']) for r in rows]
    flagged = [r['action'] in ('replaced', 'marked', 'dropped') for r in rows]
    wins = [(parse(a), parse(b)) for a, b in windows[key]]
    inwin = [any(a <= t <= b for a, b in wins) for t in times]
    hit = 0
    for lab in labels[key]:
        lt = parse(lab)
        idx = min(range(len(times)), key=lambda i: abs((times[i] - lt).total_seconds()))
        lo, hi = max(0, idx - args.near), min(len(times), idx + args.near + 1)
        hit += any(flagged[lo:hi])
    f_in = sum(f and w for f, w in zip(flagged, inwin))
    f_out = sum(f and not w for f, w in zip(flagged, inwin))
    clean = sum(not w for w in inwin)
    row = [len(rows), sum(flagged), hit, len(labels[key]), f_in, f_out, clean]
    tot = [a + b for a, b in zip(tot, row)]
    print('| %s | %d | %d | %d / %d | %d | %d of %d | %.2f%% |' % (
        name, row[0], row[1], hit, row[3], f_in, f_out, clean, 100.0 * f_out / max(clean, 1)))
print('| total | %d | %d | %d / %d | %d | %d of %d | %.2f%% |' % (
    tot[0], tot[1], tot[2], tot[3], tot[4], tot[5], tot[6], 100.0 * tot[5] / max(tot[6], 1)))
