#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Where the streaming spike filter goes wrong: the same spike injection as
bench/spike-quality.py (same seeds give the same spikes), then per series the F1 of a pipeline
file, the missed spikes by magnitude (4, 6, 10, 20 sigma) and, with -v, the indices of the false
positives and of the missed spikes with their time-of-day bin, to look at with kts-filter.

    /usr/bin/python3 bench/spike-errors.py --kts-filter BUILD/tools/kts-filter \\
        [--config FILE] [--seeds 1,2,3,4,5] [--series SUBSTR ...] [-v]

Averaging over several seeds tells a real difference between two configurations from the
sampling noise of ~34 spikes per series (one seed's F1 moves by +-0.05-0.1). Not a test.
"""
import argparse
import io
import os
import subprocess

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
ap = argparse.ArgumentParser()
ap.add_argument('--kts-filter', required=True)
ap.add_argument('--config', default=os.path.join(TOP, 'contrib/pipelines/spikes.conf'))
ap.add_argument('--data', default=os.path.join(HERE, 'data/nab'))
ap.add_argument('--seeds', default='5')
ap.add_argument('--series', nargs='*', default=[])
ap.add_argument('-v', action='store_true')
args = ap.parse_args()


def mad(x):
    return 1.4826 * np.median(np.abs(x - np.median(x)))


def f1(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 0
    r = tp / (tp + fn) if tp + fn else 0
    return 2 * p * r / (p + r) if p + r else 0


per = {}
tot = [0, 0, 0]
for seed in [int(s) for s in args.seeds.split(',')]:
    for name in sorted(os.listdir(args.data)):
        if not name.endswith('.csv') or (args.series and not any(s in name for s in args.series)):
            continue
        # Injection: identical to bench/spike-quality.py.
        df = pd.read_csv(os.path.join(args.data, name))
        ts = pd.to_datetime(df.timestamp)
        clean = df.value.to_numpy(dtype=float)
        n = len(clean)
        step = float(np.median(np.diff(ts.values).astype('timedelta64[s]').astype(float)))
        per_day = int(round(86400 / step))
        start = 2 * per_day
        rng = np.random.default_rng(seed)
        sigma = mad(np.diff(clean)) / np.sqrt(2)
        if sigma == 0:
            sigma = np.std(np.diff(clean)) / np.sqrt(2)
        k = max(1, int(0.01 * (n - start)))
        pos = []
        for c in rng.permutation(np.arange(start, n)):
            if all(abs(c - q) >= 10 for q in pos):
                pos.append(c)
            if len(pos) == k:
                break
        pos = np.array(sorted(pos))
        ks = rng.choice([4, 6, 10, 20], len(pos))
        x = clean.copy()
        x[pos] += ks * rng.choice([-1, 1], len(pos)) * sigma
        truth = np.zeros(n, bool)
        truth[pos] = True
        mask = np.arange(n) >= start

        buf = io.StringIO()
        pd.DataFrame({'timestamp': df.timestamp, 'value': x}).to_csv(buf, index=False,
                                                                   float_format='%.17g')
        out = subprocess.run([args.kts_filter, '--config', args.config, '-'],
                             input=buf.getvalue(), capture_output=True, text=True,
                             check=True).stdout
        o = pd.read_csv(io.StringIO(out))
        o = o[o.input.notna()].reset_index(drop=True)
        fl = o.action.isin(['replaced', 'marked', 'dropped']).to_numpy()
        dropped = (o.action == 'dropped').to_numpy()
        tp = int(np.sum(fl & truth & mask))
        fp = int(np.sum(fl & ~truth & mask))
        fn = int(np.sum(~fl & truth & mask))
        for i, v in enumerate((tp, fp, fn)):
            tot[i] += v
        per.setdefault(name, []).append(f1(tp, fp, fn))
        missed = {m: '%d/%d' % (np.sum(~fl[pos] & (ks == m)), np.sum(ks == m)) for m in (4, 6, 10, 20)}
        print('seed %d %-40s F1 %.3f  tp %d fp %d (dropped %d) fn %d  missed by sigma %s' % (
            seed, name, f1(tp, fp, fn), tp, fp, int(np.sum(dropped & ~truth & mask)), fn, missed))
        if args.v:
            fpi = np.where(fl & ~truth & mask)[0]
            print('  false positives (index:bin):', ' '.join('%d:%d' % (i, i % per_day) for i in fpi))
            print('  missed (index:bin:sigma):', ' '.join(
                '%d:%d:%d' % (p, p % per_day, m) for p, m in zip(pos, ks) if not fl[p]))
print()
for name, v in per.items():
    print('%-40s mean F1 %.3f over %d seed(s)' % (name, float(np.mean(v)), len(v)))
print('pooled F1 %.3f (tp %d fp %d fn %d)' % (f1(*tot), *tot))
