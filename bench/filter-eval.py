#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Evaluation kit for spike removal: the shipped pipeline (default
contrib/pipelines/spikes.conf, run with kts-filter as a user would) against two batch
baselines tuned per series with hindsight, on

  * gen:  seeded synthetic host metrics (see make_series below): a daily pattern with
          harmonics, weaker weekends, slow drift, one level shift, noise that grows with the
          level, integer counts for one kind, a few short gaps, and spikes of 4-15 local
          standard deviations, up or down, one or two points wide, spread uniformly over the
          series (the kit exits if a third of it holds under 20 %); at 10 s (4 days), 1 min
          (14 days) and 5 min (35 days);
  * nab+: the NAB series with spikes injected as bench/spike-quality.py does (1 % of the points
          after the first two days, +-4, 6, 10, 20 sigma);
  * nab:  the NAB series as they are (no truth: replacements, harmful, out of range only).

    /usr/bin/python3 bench/filter-eval.py --kts-filter BUILD/tools/kts-filter \\
        [--config FILE] [--data bench/data/nab] [--seeds 1,2,3] [--only gen|nab+|nab] [--no-stl]

Needs Debian's python3-numpy, python3-pandas, python3-statsmodels. Not a test.

Per series and seed it prints precision, recall, F1 of the flags (replaced, marked or dropped
points against the injected positions, every point scored, the first day included), the F1
ratio to the best baseline, the RMSE of the output to the series before injection and its ratio
to the batch Hampel's (centred median replacement, at its best-F1 setting), the replacements,
the harmful ones (further from the mean of the two raw neighbours than the input was) and the
ones outside the 24 raw points around them. Baselines, each with its best setting per series:
  * Hampel, centred: pandas rolling(window, center=True) median and 1.4826 * MAD, windows 7, 15,
    31, 61 points, thresholds 3, 3.5, 4, 5; flagged points replaced by the median;
  * robust STL: statsmodels STL(period = points per day, robust=True) on the series with gaps
    interpolated, residuals thresholded at t * 1.4826 * MAD(resid), t in 3, 3.5, 4, 5; flagged
    points replaced by trend + seasonal.
Goals: F1 >= 0.95 x the best baseline, RMSE <= 1.25 x Hampel's; on NAB as it is at
most 5 % of the replacements harmful and none out of range.
"""
import argparse
import io
import os
import subprocess
import sys

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
ap = argparse.ArgumentParser()
ap.add_argument('--kts-filter', required=True)
ap.add_argument('--config', default=os.path.join(TOP, 'contrib/pipelines/spikes.conf'))
ap.add_argument('--data', default=os.path.join(TOP, 'bench/data/nab'))
ap.add_argument('--seeds', default='1,2,3')
ap.add_argument('--only', choices=['gen', 'nab+', 'nab'], action='append')
ap.add_argument('--no-stl', action='store_true', help='skip the STL baseline (slow at 10 s)')
ap.add_argument('--csv', help='also write the synthetic series here (DIR/KIND-SEED.csv)')
args = ap.parse_args()
SEEDS = [int(s) for s in args.seeds.split(',')]
ONLY = args.only or ['gen', 'nab+', 'nab']

HAMPEL_W = (7, 15, 31, 61)
THRESH = (3, 3.5, 4, 5)

# ------------------------------------------------------------------ synthetic series
KINDS = {
    # name: (interval s, days, base level, daily amplitude (share of level), integer counts)
    '10s-cpu': (10, 4, 40.0, 0.5, False),
    '1min-requests': (60, 14, 2000.0, 0.6, True),
    '5min-memory': (300, 35, 6.0e9, 0.15, False),
}


def check_spread(pos, lo, hi, what):
    """Exit unless each third of [lo, hi) holds at least 20 % of the spikes (15 or more)."""
    if len(pos) < 15:
        return
    thirds = np.bincount(np.minimum(3 * (np.asarray(pos) - lo) // (hi - lo), 2), minlength=3)
    if thirds.min() < 0.2 * len(pos):
        sys.exit('filter-eval: %s: spikes not spread over the series (thirds %s of %d)' % (
            what, '/'.join(map(str, thirds)), len(pos)))


def make_series(kind, seed):
    """(t seconds, x with spikes and NaN in the gaps, clean, truth) for one kind and seed."""
    step, days, base, amp, integer = KINDS[kind]
    rng = np.random.default_rng([seed, sum(map(ord, kind))])
    n = int(days * 86400 / step)
    t0 = 1_700_006_400 - 1_700_006_400 % 86400 + 86400 * int(rng.integers(0, 7))
    t = t0 + step * np.arange(n, dtype=np.int64)
    ph = (t % 86400) / 86400.0
    # Daily pattern: fundamental and two harmonics with random phases, busy in the day.
    pattern = (np.sin(2 * np.pi * (ph - 0.3)) + 0.35 * np.sin(4 * np.pi * ph + rng.uniform(0, 6.3)) +
               0.15 * np.sin(6 * np.pi * ph + rng.uniform(0, 6.3)))
    dow = ((t // 86400) + 4) % 7  # 1970-01-01 was a Thursday: 5, 6 = Saturday, Sunday
    weekend = np.where(dow >= 5, 0.5, 1.0)
    level = base * (1 + amp * weekend * pattern)
    # Slow drift: a smoothed random walk, +-10 % over the series.
    walk = np.cumsum(rng.normal(0, 1, n))
    k = max(1, int(6 * 3600 / step))
    walk = np.convolve(walk, np.ones(k) / k, mode='same')
    walk = (walk - walk.mean()) / (np.abs(walk).max() + 1e-9)
    level = level * (1 + 0.1 * walk)
    # One level shift of 8-20 %, up or down, after the first day.
    at = int(rng.integers(int(86400 / step) + 10, n - 10))
    level[at:] *= 1 + rng.choice([-1, 1]) * rng.uniform(0.08, 0.2)
    # Noise that grows with the level.
    sd = 0.02 * base * np.sqrt(level / base)
    clean = level + rng.normal(0, 1, n) * sd
    if integer:
        clean = np.maximum(np.round(clean), 0)
    clean = np.maximum(clean, 0)
    # Spikes: 0.5 % of the points, at least 20 apart, one or two wide, 4-15 local sd.
    nsp = max(5, int(0.005 * n))
    # Candidates in random order (choice shuffles), each accepted when >= 20 points from every
    # accepted one: spread uniformly over the series. (Taking the first of the candidates in
    # sorted order put nearly all spikes in the first third, overweighting the warm-up.)
    cand = rng.choice(np.arange(5, n - 5), nsp * 3, replace=False)
    chosen = []
    for p in cand:
        if all(abs(p - q) >= 20 for q in chosen):
            chosen.append(p)
        if len(chosen) == nsp:
            break
    assert len(chosen) == nsp, (kind, seed, len(chosen), nsp)
    chosen.sort()
    check_spread(chosen, 0, n, '%s seed %d' % (kind, seed))
    x = clean.copy()
    truth = np.zeros(n, bool)
    for p in chosen:
        mag = rng.uniform(4, 15) * rng.choice([-1, 1]) * sd[p]
        width = 1 if rng.random() < 0.6 else 2
        for q in range(p, p + width):
            x[q] = clean[q] + mag * rng.uniform(0.8, 1.2)
            truth[q] = True
    x = np.maximum(x, 0)
    if integer:
        x = np.round(x)
    truth &= x != clean
    # A few short gaps (2-10 points), none over a spike.
    for _ in range(int(rng.integers(2, 5))):
        g = int(rng.integers(10, n - 20))
        w = int(rng.integers(2, 11))
        if not truth[g - 1:g + w + 1].any():
            x[g:g + w] = np.nan
    return t, x, clean, truth


# ------------------------------------------------------------------ methods
def run_stream(t, x):
    """kts-filter over the points present: (flag, output) arrays aligned with x."""
    present = ~np.isnan(x)
    buf = io.StringIO()
    pd.DataFrame({'timestamp': t[present], 'value': x[present]}).to_csv(buf, index=False,
                                                                       float_format='%.17g')
    out = subprocess.run([args.kts_filter, '--config', args.config, '-'], input=buf.getvalue(),
                         capture_output=True, text=True, check=True).stdout
    o = pd.read_csv(io.StringIO(out))
    o = o[o.input.notna()].reset_index(drop=True)
    if len(o) != present.sum():
        sys.exit('filter-eval: %d output lines for %d points' % (len(o), present.sum()))
    flag = np.zeros(len(x), bool)
    y = x.copy()
    flag[present] = o.action.isin(['replaced', 'marked', 'dropped']).to_numpy()
    rep = np.zeros(len(x), bool)
    rep[present] = o.action.eq('replaced').to_numpy()
    y[present] = np.where(o.output.notna(), o.output.to_numpy(dtype=float), x[present])
    return flag, y, rep


def hampel(x, w, thr):
    s = pd.Series(x).interpolate(limit_direction='both')
    med = s.rolling(w, center=True, min_periods=1).median()
    madr = (s - med).abs().rolling(w, center=True, min_periods=1).median() * 1.4826
    fl = ((s - med).abs() > thr * madr.clip(lower=1e-12)).to_numpy() & ~np.isnan(x)
    return fl, np.where(fl, med.to_numpy(), x)


def mad(v):
    v = v[~np.isnan(v)]
    return 1.4826 * np.median(np.abs(v - np.median(v)))


def stl_fits(x, per_day):
    from statsmodels.tsa.seasonal import STL
    s = pd.Series(x).interpolate(limit_direction='both').to_numpy()
    jump = max(1, per_day // 100)  # LOESS evaluated every `jump` points, interpolated between
    r = STL(s, period=per_day, robust=True, seasonal_jump=jump, trend_jump=jump,
            low_pass_jump=jump).fit()
    return r.resid, r.trend + r.seasonal


def prf(flag, truth, mask):
    f, tr = flag[mask], truth[mask]
    tp, fp, fn = int(np.sum(f & tr)), int(np.sum(f & ~tr)), int(np.sum(~f & tr))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def rmse(y, clean, mask):
    m = mask & ~np.isnan(y) & ~np.isnan(clean)
    return float(np.sqrt(np.mean((y[m] - clean[m]) ** 2)))


def harm(x, y, rep):
    """Replacements, harmful ones, ones outside the 24 raw points around (gaps skipped)."""
    idx = np.flatnonzero(~np.isnan(x))
    xs, ys, rs = x[idx], y[idx], rep[idx]
    nrep = nharm = nout = 0
    for i in np.flatnonzero(rs):
        nrep += 1
        nb = [xs[j] for j in (i - 1, i + 1) if 0 <= j < len(xs)]
        ref = sum(nb) / len(nb)
        nharm += abs(ys[i] - ref) > abs(xs[i] - ref)
        around = np.concatenate([xs[max(0, i - 12):i], xs[i + 1:i + 13]])
        nout += not (around.min() <= ys[i] <= around.max())
    return nrep, nharm, nout


def evaluate(name, seed, t, x, clean, truth, mask):
    per_day = int(round(86400 / float(np.median(np.diff(t)))))
    flag, y, rep = run_stream(t, x)
    sp = prf(flag, truth, mask)
    best_h = None
    for w in HAMPEL_W:
        for thr in THRESH:
            fl, cl = hampel(x, w, thr)
            sc = prf(fl, truth, mask)
            if best_h is None or sc[2] > best_h[0][2]:
                best_h = (sc, rmse(cl, clean, mask), 'Hampel w%d t%g' % (w, thr))
    best = best_h
    if not args.no_stl:
        resid, fit = stl_fits(x, per_day)
        m = mad(resid)
        for thr in THRESH:
            fl = (np.abs(resid - np.median(resid)) > thr * m) & ~np.isnan(x)
            sc = prf(fl, truth, mask)
            if sc[2] > best[0][2]:
                best = (sc, rmse(np.where(fl, fit, x), clean, mask), 'STL t%g' % thr)
    r = rmse(y, clean, mask)
    nrep, nharm, nout = harm(x, y, rep)
    row = (name, seed, sp[0], sp[1], sp[2], best[2], best[0][2],
           sp[2] / best[0][2] if best[0][2] else float('nan'), r,
           r / best_h[1] if best_h[1] else float('nan'), nrep, nharm, nout)
    print('| %s | %d | %.3f | %.3f | %.3f | %s | %.3f | %.2f | %.4g | %.2f | %d | %d | %d |' % row,
          flush=True)
    return row


def nab_files():
    if not os.path.isdir(args.data):
        sys.exit('filter-eval: no NAB data in %s (--data)' % args.data)
    return sorted(n for n in os.listdir(args.data) if n.endswith('.csv'))


def load_nab(name):
    df = pd.read_csv(os.path.join(args.data, name))
    t = (pd.to_datetime(df.timestamp).astype('int64') // 10**9).to_numpy()
    return t, df.value.to_numpy(dtype=float)


def inject_nab(name, t, clean, seed):
    """bench/spike-quality.py's injection."""
    n = len(clean)
    step = float(np.median(np.diff(t)))
    start = 2 * int(round(86400 / step))
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
    check_spread(pos, start, n, '%s seed %d' % (name, seed))
    x = clean.copy()
    x[pos] += rng.choice([4, 6, 10, 20], len(pos)) * rng.choice([-1, 1], len(pos)) * sigma
    truth = np.zeros(n, bool)
    truth[pos] = True
    return x, truth, np.arange(n) >= start


print('| data | series | seed | precision | recall | F1 | best baseline | its F1 | F1 ratio | '
      'RMSE | RMSE / Hampel | replaced | harmful | out of range |')
print('| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
rows = []
if 'gen' in ONLY:
    for kind in KINDS:
        for seed in SEEDS:
            t, x, clean, truth = make_series(kind, seed)
            if args.csv:
                os.makedirs(args.csv, exist_ok=True)
                pd.DataFrame({'timestamp': t, 'value': x}).dropna().to_csv(
                    os.path.join(args.csv, '%s-%d.csv' % (kind, seed)), index=False)
            sys.stdout.write('| gen ')
            rows.append(('gen',) + evaluate(kind, seed, t, x, clean, truth, np.ones(len(x), bool)))
if 'nab+' in ONLY:
    for name in nab_files():
        t, clean = load_nab(name)
        for seed in SEEDS:
            x, truth, mask = inject_nab(name, t, clean, seed)
            sys.stdout.write('| nab+ ')
            rows.append(('nab+',) + evaluate(name, seed, t, x, clean, truth, mask))
if 'nab' in ONLY:
    for name in nab_files():
        t, x = load_nab(name)
        flag, y, rep = run_stream(t, x)
        nrep, nharm, nout = harm(x, y, rep)
        print('| nab | %s | - | | | | | | | | | %d | %d | %d |' % (name, nrep, nharm, nout))
        rows.append(('nab', name, 0) + (np.nan,) * 8 + (nrep, nharm, nout))

scored = [r for r in rows if r[0] != 'nab']
if scored:
    met = sum(1 for r in scored if r[8] >= 0.95 and r[10] <= 1.25)
    print('\nGoals met (F1 ratio >= 0.95 and RMSE / Hampel <= 1.25): %d of %d series x seeds; '
          'F1 ratio min %.2f median %.2f; RMSE / Hampel max %.2f median %.2f' % (
              met, len(scored), min(r[8] for r in scored), float(np.median([r[8] for r in scored])),
              max(r[10] for r in scored), float(np.median([r[10] for r in scored]))))
nab = [r for r in rows if r[0] == 'nab']
if nab:
    rep = sum(r[11] for r in nab)
    print('NAB as it is: %d replaced, %d harmful (%.1f %%), %d out of range' % (
        rep, sum(r[12] for r in nab), 100.0 * sum(r[12] for r in nab) / max(rep, 1),
        sum(r[13] for r in nab)))
