#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check what collectd's csv plugin wrote (read_kafka_ts end-to-end tests).

usage:
  compare_csv.py golden EXPECT.jsonl CSVDIR [HOST_PREFIX HOST_SUFFIX PI_SUFFIX]
      every value list of kts_testgen's ExpectFile is in the CSV files (names after output
      naming), time to the millisecond (csv writes %.3f), integers exactly, gauges as csv's "%lf", NaN/inf by kind. Last line: "compared N value lists, M problems".
  compare_csv.py burst CSVDIR COUNT SERIES [HOST]
      kts_testgen burst mode: series s (plugin_instance s<s>) must hold every sequence number
      k in 0..COUNT/SERIES-1 as its value, at least once. Last line:
      "burst: N of COUNT values present (D duplicates), M problems".
      CSVDIR may be several directories joined by ':' (e.g. two aggregators of one group):
      their rows are taken together.
  compare_csv.py burst-exact CSVDIR COUNT SERIES [HOST [PI_SUFFIX]]
      as burst, and also: every value at most once, and in each CSV file the values of a series
      never decrease row by row and times never go back (the order they were written; a value
      repeated right after itself counts as a duplicate only).
      Last line: "burst-exact: N of COUNT values present, D duplicates, O out of order,
      M problems" (problems = missing + duplicates + out of order); the duplicated values are
      listed (at most 20) as "duplicate: series sS value K xC".
      With PI_SUFFIX (a pipeline's OutputPluginInstanceSuffix, e.g. "-f"): the filtered copies
      of the gauge series (s % 3 == 0) in plugin instance "s<s>PI_SUFFIX" are checked instead
      (COUNT then counts only those values).
Exit status 0 only without problems.
"""
import glob
import json
import os
import re
import sys
from decimal import Decimal


def read_csv_dir(csvdir):
    """{(host, plugin_dir, type_name): [(time_str, [values...])]}"""
    out = {}
    paths = [(d, p) for d in csvdir.split(':') for p in glob.glob(os.path.join(d, '*', '*', '*'))]
    for base, path in paths:
        rel = os.path.relpath(path, base).split(os.sep)
        if len(rel) != 3:
            continue
        host, pdir, fname = rel
        tname = fname[:-11]  # strip -YYYY-MM-DD
        rows = out.setdefault((host, pdir, tname), [])
        with open(path, encoding='utf-8', errors='surrogateescape') as f:
            for line in f:
                line = line.rstrip('\n')
                if not line or line.startswith('epoch'):
                    continue
                parts = line.split(',')
                rows.append((parts[0], parts[1:]))
    return out


def same_value(got, want, dstype):
    if want is None:  # non-finite gauge in the expect file: NaN or inf
        return got.lower() in ('nan', '-nan', 'inf', '-inf')
    if dstype == 'gauge':
        # collectd 5.12's csv writes gauges with "%lf" (6 decimals): compare at that precision.
        return got == '%f' % float(want)
    return int(got) == int(want)


def golden(expect_path, csvdir, prefix='', suffix='', pi_suffix=''):
    files = read_csv_dir(csvdir)
    problems = []
    n = 0
    with open(expect_path, encoding='utf-8') as f:
        for line in f:
            o = json.loads(line, parse_float=Decimal, parse_int=Decimal)
            n += 1
            host = prefix + o['host'] + suffix
            pi = o.get('plugin_instance', '')
            # the plugins' naming rule (src/format/kts_value.h, kts_name_suffix): a suffix appended to
            # an empty name loses its leading separators
            pi += pi_suffix if pi else pi_suffix.lstrip('-_.')
            pdir = o['plugin'] + ('-' + pi if pi else '')
            ti = o.get('type_instance', '')
            tname = o['type'] + ('-' + ti if ti else '')
            rows = files.get((host, pdir, tname))
            if rows is None:
                problems.append('missing file for %r' % ((host, pdir, tname),))
                continue
            t = '%.3f' % (Decimal(o['time_cdtime']) / (1 << 30))
            match = [r for r in rows if r[0] == t]
            if not match:
                problems.append('%r: no row at time %s (have %s)' %
                                ((host, pdir, tname), t, [r[0] for r in rows][:5]))
                continue
            vals = match[0][1]
            want = o['values']
            if len(vals) != len(want):
                problems.append('%r: %d values, want %d' % ((host, pdir, tname), len(vals), len(want)))
                continue
            for i, (g, w) in enumerate(zip(vals, want)):
                if not same_value(g, w, o['dstypes'][i]):
                    problems.append('%r ds %d: got %s want %s' % ((host, pdir, tname), i, g, w))
    for p in problems:
        print(p)
    print('compared %d value lists, %d problems' % (n, len(problems)))
    return 1 if problems else 0


def burst(csvdir, count, series, host='kts-burst'):
    files = read_csv_dir(csvdir)
    per = count // series
    present = 0
    dups = 0
    problems = []
    for s in range(series):
        tname = ('gauge', 'derive', 'counter')[s % 3]
        rows = files.get((host, 'kts_testgen-s%d' % s, tname), [])
        seen = {}
        for t, vals in rows:
            k = int(float(vals[0]))
            seen[k] = seen.get(k, 0) + 1
        for k in range(per):
            c = seen.get(k, 0)
            if c:
                present += 1
                dups += c - 1
            elif len(problems) < 20:
                problems.append('series s%d: value %d missing' % (s, k))
    missing = count - present
    for p in problems:
        print(p)
    print('burst: %d of %d values present (%d duplicates), %d problems' %
          (present, count, dups, missing))
    return 1 if missing else 0


def burst_exact(csvdir, count, series, host='kts-burst', pi_suffix=''):
    per = count // series
    wanted = [s for s in range(series) if not pi_suffix or s % 3 == 0]
    count = per * len(wanted)
    seen = {}  # (s, k) -> times present, over every directory
    disorder = 0
    lines = []
    name = re.compile('^kts_testgen-s([0-9]+)' + re.escape(pi_suffix) + '$')
    for d in csvdir.split(':'):
        for path in sorted(glob.glob(os.path.join(d, host, 'kts_testgen-s*', '*'))):
            m = name.match(path.split(os.sep)[-2])
            if m is None:
                continue
            s = int(m.group(1))
            prev_k = prev_t = None
            with open(path, encoding='utf-8') as f:
                for line in f:
                    if not line.strip() or line.startswith('epoch'):
                        continue
                    t, v = line.rstrip('\n').split(',')[:2]
                    k = int(float(v))
                    seen[(s, k)] = seen.get((s, k), 0) + 1
                    # one file = one series, one day, one aggregator: rows in write order; a
                    # value right after itself is a duplicate (counted there), not disorder
                    if prev_k is not None and (k < prev_k or float(t) < prev_t):
                        disorder += 1
                        if len(lines) < 40:
                            lines.append('out of order in %s: value %d at %s after %d at %s' %
                                         (path, k, t, prev_k, prev_t))
                    prev_k, prev_t = k, float(t)
    present = dups = 0
    for s in wanted:
        for k in range(per):
            c = seen.get((s, k), 0)
            if c:
                present += 1
                dups += c - 1
                if c > 1 and len(lines) < 40:
                    lines.append('duplicate: series s%d value %d x%d' % (s, k, c))
            elif len(lines) < 40:
                lines.append('series s%d: value %d missing' % (s, k))
    for line in lines:
        print(line)
    problems = (count - present) + dups + disorder
    print('burst-exact: %d of %d values present, %d duplicates, %d out of order, %d problems' %
          (present, count, dups, disorder, problems))
    return 1 if problems else 0


if __name__ == '__main__':
    if sys.argv[1] == 'golden':
        sys.exit(golden(*sys.argv[2:]))
    if sys.argv[1] == 'burst':
        a = sys.argv[2:]
        sys.exit(burst(a[0], int(a[1]), int(a[2]), *a[3:]))
    if sys.argv[1] == 'burst-exact':
        a = sys.argv[2:]
        sys.exit(burst_exact(a[0], int(a[1]), int(a[2]), *a[3:]))
    sys.exit(2)
