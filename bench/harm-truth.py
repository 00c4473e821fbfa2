#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Is a "harmful" replacement (further from the mean of its two raw neighbours than the input
was, as bench/filter-eval.py and bench/nab-harm.py count it) really harmful? On the synthetic
series of bench/filter-eval.py the series before injection is known. Per series and seed:

  * replaced, harmful: as the kit counts them;
  * nearer: harmful ones that lie nearer the series before injection than the input did;
  * in run: harmful ones in a run of consecutive replaced points;
  * run-harmful: harmful when a point of a replaced run is judged against the raw points on
    either side of the run instead of its own raw neighbours (the same for a one-point spike);
  * F1, RMSE / Hampel of the stream, and with two candidate rules applied to its output:
    "keep": a replaced point lying between its two raw neighbours is kept;
    "bound": a replacement is bounded to the measure (never further from the mean of the raw
    neighbours than the input).
Also prints run-harmful for the NAB series as they are.

    bench/harm-truth.py --kts-filter BUILD/tools/kts-filter [--seeds 1,2,3]

It reuses bench/filter-eval.py's generator, stream runner and baselines (same options).
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = open(os.path.join(HERE, 'filter-eval.py')).read()
MARK = "\n\nprint('| data | series |"
if MARK not in SRC:
    sys.exit('harm-truth: bench/filter-eval.py has changed (no table header line)')
fe = {'__file__': os.path.join(HERE, 'filter-eval.py'), '__name__': 'filter_eval'}
exec(compile(SRC.split(MARK)[0], 'filter-eval.py', 'exec'), fe)  # definitions and options only


def judge(x, y, rep):
    idx = np.flatnonzero(~np.isnan(x))
    xs, ys, rs = x[idx], y[idx], rep[idx]
    harmful, run_harmful, in_run = [], 0, 0
    for i in np.flatnonzero(rs):
        nb = [xs[j] for j in (i - 1, i + 1) if 0 <= j < len(xs)]
        ref = sum(nb) / len(nb)
        a, b = i - 1, i + 1
        while a >= 0 and rs[a]:
            a -= 1
        while b < len(rs) and rs[b]:
            b += 1
        onb = [xs[j] for j in (a, b) if 0 <= j < len(xs)]
        oref = sum(onb) / len(onb)
        run_harmful += abs(ys[i] - oref) > abs(xs[i] - oref)
        if abs(ys[i] - ref) > abs(xs[i] - ref):
            harmful.append(idx[i])
            in_run += bool(a < i - 1 or b > i + 1)
    return int(rs.sum()), harmful, in_run, run_harmful


def candidates(x, y, rep, flag):
    idx = np.flatnonzero(~np.isnan(x))
    yb, yk, fk = y.copy(), y.copy(), flag.copy()
    for k, i in enumerate(idx):
        if not rep[i]:
            continue
        nb = [x[idx[j]] for j in (k - 1, k + 1) if 0 <= j < len(idx)]
        ref = sum(nb) / len(nb)
        d = abs(x[i] - ref)
        yb[i] = min(max(y[i], ref - d), ref + d)
        if len(nb) == 2 and min(nb) <= x[i] <= max(nb):
            yk[i], fk[i] = x[i], False
    return yb, yk, fk


print('| series | seed | replaced | harmful | nearer | in run | run-harmful | F1 | F1 keep | '
      'RMSE / Hampel | keep | bound |')
print('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
for kind in fe['KINDS']:
    for seed in fe['SEEDS']:
        t, x, clean, truth = fe['make_series'](kind, seed)
        m = np.ones(len(x), bool)
        flag, y, rep = fe['run_stream'](t, x)
        nrep, harmful, in_run, run_harmful = judge(x, y, rep)
        nearer = sum(abs(y[i] - clean[i]) < abs(x[i] - clean[i]) for i in harmful)
        best = None
        for w in fe['HAMPEL_W']:
            for thr in fe['THRESH']:
                fl, cl = fe['hampel'](x, w, thr)
                sc = fe['prf'](fl, truth, m)
                if best is None or sc[2] > best[0]:
                    best = (sc[2], fe['rmse'](cl, clean, m))
        yb, yk, fk = candidates(x, y, rep, flag)
        hr = best[1]
        print('| %s | %d | %d | %d | %d | %d | %d | %.3f | %.3f | %.2f | %.2f | %.2f |' % (
            kind, seed, nrep, len(harmful), nearer, in_run, run_harmful,
            fe['prf'](flag, truth, m)[2], fe['prf'](fk, truth, m)[2],
            fe['rmse'](y, clean, m) / hr, fe['rmse'](yk, clean, m) / hr,
            fe['rmse'](yb, clean, m) / hr), flush=True)
for name in fe['nab_files']():
    t, x = fe['load_nab'](name)
    flag, y, rep = fe['run_stream'](t, x)
    nrep, harmful, in_run, run_harmful = judge(x, y, rep)
    print('| nab %s | - | %d | %d | | %d | %d | | | | | |' % (
        name, nrep, len(harmful), in_run, run_harmful), flush=True)
