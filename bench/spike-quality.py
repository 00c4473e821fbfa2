#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Spike removal quality on real series: inject spikes at known positions into
the NAB series, run the streaming pipeline (kts-filter with contrib/pipelines/spikes.conf) and two
batch (non-causal) baselines on the same data, and report precision, recall, F1 of the spike
flags and the RMSE of the cleaned series to the series without injected spikes.

    /usr/bin/python3 bench/spike-quality.py --kts-filter BUILD/tools/kts-filter [--data DIR]

Needs Debian's python3-pandas and python3-statsmodels. Not a test.

Injection: after the first two days (the streaming pipeline learns the daily pattern on day
one), 1% of the points, at least 10 points apart, get +/- k * sigma with k drawn from
{4, 6, 10, 20} and sigma the series' noise level (1.4826 * MAD of first differences / sqrt 2).
Baselines, each with its best threshold among 3, 3.5, 4, 5, 6, 8, 10 per series (an advantage the
streaming pipeline does not get):
  * Hampel, centred: pandas rolling(window, center=True) median and MAD, window = 2 h of points
    (at least 7), flagged points replaced by the median.
  * Robust STL: statsmodels STL(period = points per day, robust=True), residuals thresholded at
    t * 1.4826 * MAD(resid), flagged points replaced by trend + seasonal.
Scores count only points after the first two days.
"""
import argparse
import io
import os
import subprocess

import numpy as np
import pandas as pd
from statsmodels.tsa.seasonal import STL

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
ap = argparse.ArgumentParser()
ap.add_argument('--kts-filter', required=True)
ap.add_argument('--config', default=os.path.join(TOP, 'contrib/pipelines/spikes.conf'))
ap.add_argument('--data', default=os.path.join(HERE, 'data/nab'))
ap.add_argument('--seed', type=int, default=5)
ap.add_argument('--streaming-only', action='store_true', help='skip the batch baselines')
args = ap.parse_args()


def scores(flag, truth, cleaned, clean, mask):
    f, t = flag[mask], truth[mask]
    tp = int(np.sum(f & t))
    fp = int(np.sum(f & ~t))
    fn = int(np.sum(~f & t))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    rmse = float(np.sqrt(np.mean((cleaned[mask] - clean[mask]) ** 2)))
    return p, r, f1, rmse, tp, fp, fn


THRESHOLDS = (3, 3.5, 4, 5, 6, 8, 10)


def mad(x):
    return 1.4826 * np.median(np.abs(x - np.median(x)))


rows = []
for name in sorted(os.listdir(args.data)):
    if not name.endswith('.csv'):
        continue
    df = pd.read_csv(os.path.join(args.data, name))
    ts = pd.to_datetime(df.timestamp)
    clean = df.value.to_numpy(dtype=float)
    n = len(clean)
    step = float(np.median(np.diff(ts.values).astype('timedelta64[s]').astype(float)))
    per_day = int(round(86400 / step))
    start = 2 * per_day
    rng = np.random.default_rng(args.seed)
    sigma = mad(np.diff(clean)) / np.sqrt(2)
    if sigma == 0:
        sigma = np.std(np.diff(clean)) / np.sqrt(2)
    k = max(1, int(0.01 * (n - start)))
    pos = []
    cand = rng.permutation(np.arange(start, n))
    for c in cand:
        if all(abs(c - q) >= 10 for q in pos):
            pos.append(c)
        if len(pos) == k:
            break
    pos = np.array(sorted(pos))
    mags = rng.choice([4, 6, 10, 20], len(pos)) * rng.choice([-1, 1], len(pos)) * sigma
    x = clean.copy()
    x[pos] += mags
    truth = np.zeros(n, bool)
    truth[pos] = True
    mask = np.arange(n) >= start

    # Streaming pipeline.
    buf = io.StringIO()
    pd.DataFrame({'timestamp': df.timestamp, 'value': x}).to_csv(buf, index=False,
                                                               float_format='%.17g')
    out = subprocess.run([args.kts_filter, '--config', args.config, '-'], input=buf.getvalue(),
                         capture_output=True, text=True, check=True).stdout
    o = pd.read_csv(io.StringIO(out))
    o = o[o.input.notna()].reset_index(drop=True)
    s_flag = o.action.isin(['replaced', 'marked', 'dropped']).to_numpy()
    s_clean = o.output.fillna(pd.Series(x)).to_numpy(dtype=float)
    res = {'streaming (spikes.conf)': scores(s_flag, truth, s_clean, clean, mask)}

    if args.streaming_only:
        rows.append((name, len(pos), float(np.sqrt(np.mean((x[mask] - clean[mask]) ** 2))), res))
        continue

    # Batch Hampel, centred.
    w = max(7, int(round(7200 / step)) | 1)
    s = pd.Series(x)
    med = s.rolling(w, center=True, min_periods=1).median()
    madr = (s - med).abs().rolling(w, center=True, min_periods=1).median() * 1.4826
    best = None
    for t in THRESHOLDS:
        fl = ((s - med).abs() > t * madr.clip(lower=1e-12)).to_numpy()
        cl = np.where(fl, med.to_numpy(), x)
        sc = scores(fl, truth, cl, clean, mask)
        if best is None or sc[2] > best[2]:
            best = sc + (t,)
    res['Hampel centred (batch, window %d)' % w] = best[:7]

    # Batch robust STL residual thresholding.
    stl = STL(x, period=per_day, robust=True).fit()
    resid = stl.resid
    fit = stl.trend + stl.seasonal
    best = None
    for t in THRESHOLDS:
        fl = np.abs(resid - np.median(resid)) > t * mad(resid)
        cl = np.where(fl, fit, x)
        sc = scores(fl, truth, cl, clean, mask)
        if best is None or sc[2] > best[2]:
            best = sc + (t,)
    res['robust STL residuals (batch)'] = best[:7]
    raw_rmse = float(np.sqrt(np.mean((x[mask] - clean[mask]) ** 2)))
    rows.append((name, len(pos), raw_rmse, res))

print('| series | spikes | method | precision | recall | F1 | RMSE to clean (raw: spiked) |')
print('| --- | ---: | --- | ---: | ---: | ---: | ---: |')
tot = {}
for name, k, raw, res in rows:
    for m, (p, r, f1, rmse, tp, fp, fn) in res.items():
        print('| %s | %d | %s | %.3f | %.3f | %.3f | %.4g (%.4g) |' % (name, k, m, p, r, f1, rmse, raw))
        a = tot.setdefault(m.split(' (')[0], [0, 0, 0])
        a[0] += tp
        a[1] += fp
        a[2] += fn
print()
print('| method (all series) | precision | recall | F1 |')
print('| --- | ---: | ---: | ---: |')
for m, (tp, fp, fn) in tot.items():
    p = tp / (tp + fp) if tp + fp else 0
    r = tp / (tp + fn) if tp + fn else 0
    print('| %s | %.3f | %.3f | %.3f |' % (m, p, r, 2 * p * r / (p + r) if p + r else 0))
