#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tests/lib/chain_check.py: compare what Graphite (whisper) or RRD holds with what was expected.

Used by tests/t-graphite.sh and tests/t-rrd-fetch.sh (read_kafka_ts → write_graphite / rrdtool).

  chain_check.py whisper EXPECT.csv MSGS.jsonl KIND FETCH.json FIRST LAST
  chain_check.py rrd     EXPECT.csv MSGS.jsonl KIND FETCH.txt  FIRST LAST

KIND is "filtered" (the expectation is kts-filter's output, EXPECT.csv: series,ds,timestamp,
input,output,action; rows "dropped" or without output are not expected in the writer) or "raw"
(the input messages, MSGS.jsonl, time-series JSON one per line; a timestamp sent twice must carry
the same value). FETCH is `whisper-fetch --json` output or `rrdtool fetch` output. Every slot of
FETCH from FIRST to LAST (epoch seconds, inclusive) is checked:

 1. a slot with an expected point holds it;
      whisper: exactly float("%.15g" % v): write_graphite prints gauges with "%.15g", carbon
        parses that text into the double whisper stores, so nothing else may differ;
      rrd: within half a unit of the 11th significant digit: collectd's rrdtool plugin also
        passes "%.15g" text, and `rrdtool fetch` prints "%.10e";
 2. a slot without one is empty (whisper null, rrd nan): no extra points;
 3. rrd only: the first expected point is unknown (nan) instead (see t-rrd-fetch.sh: collectd
    creates the file one second before that point's time, so its step is mostly unknown time);
 4. a slot inside FIRST..LAST that FETCH does not list counts as a problem.

Prints up to 10 problems and a one-line summary; exit status 0 only with no problem and at least
one point compared.
"""
import csv
import json
import math
import sys


def expected_filtered(path):
    want = {}
    for r in csv.DictReader(open(path)):
        if r["action"] == "dropped" or r["output"] == "":
            continue
        t = int(float(r["timestamp"]))
        if t in want:
            sys.exit("chain_check: kts-filter emitted two points at t=%d" % t)
        want[t] = float(r["output"])
    return want


def expected_raw(path):
    want = {}
    for line in open(path):
        j = json.loads(line)
        t = int(j["time"])
        v = float(j["ds"][0]["value"])
        if t in want and want[t] != v:
            sys.exit("chain_check: the input holds two values at t=%d" % t)
        want[t] = v
    return want


def fetch_whisper(path):
    j = json.load(open(path))
    return {j["start"] + i * j["step"]: v for i, v in enumerate(j["values"])}


def fetch_rrd(path):
    got = {}
    for line in open(path):
        head, sep, tail = line.partition(":")
        if sep and head.strip().isdigit():
            got[int(head)] = float(tail)  # "-nan" and "nan" parse to nan
    return got


def close_rrd(g, w):
    w = float("%.15g" % w)
    if w == 0:
        return g == 0
    unit = 10.0 ** (math.floor(math.log10(abs(w))) - 10)  # last digit of "%.10e"
    return abs(g - w) <= 0.5 * unit * (1 + 1e-9)


def main():
    mode, expect, msgs, kind, fetch, first, last = sys.argv[1:8]
    first, last = int(first), int(last)
    want = expected_filtered(expect) if kind == "filtered" else expected_raw(msgs)
    got = fetch_whisper(fetch) if mode == "whisper" else fetch_rrd(fetch)
    steps = sorted(t for t in got if first <= t <= last)
    if len(steps) < 2:
        print("the fetch output has fewer than two slots in %d..%d" % (first, last))
        print("%s %s: 0 points equal, 0 empty slots, 1 problems" % (mode, kind))
        sys.exit(1)
    step = steps[1] - steps[0]
    problems = []
    opener = min(want) if want else None
    npoints = nempty = nrounded = 0
    for t in range(first, last + 1, step):
        w = want.get(t)
        if t not in got:
            problems.append("t=%d: no slot in the fetch output" % t)
            continue
        g = got[t]
        empty = g is None or (isinstance(g, float) and math.isnan(g))
        if mode == "rrd" and t == opener:
            if not empty:
                problems.append("t=%d: the first point should be unknown in the RRD, got %r" % (t, g))
            nempty += 1
        elif w is None:
            if not empty:
                problems.append("t=%d: extra point %r (nothing expected)" % (t, g))
            nempty += 1
        elif empty:
            problems.append("t=%d: empty, expected %r" % (t, w))
        elif mode == "whisper" and g != float("%.15g" % w):
            problems.append("t=%d: whisper %r, expected %r (%%.15g: %s)" % (t, g, w, "%.15g" % w))
        elif mode == "rrd" and not close_rrd(g, w):
            problems.append("t=%d: rrd %r, expected %r" % (t, g, w))
        else:
            npoints += 1
            nrounded += float("%.15g" % w) != w
    missing = [t for t in want if not first <= t <= last]
    if missing:
        problems.append("expected points outside %d..%d: %s" % (first, last, missing[:5]))
    for p in problems[:10]:
        print(p)
    print("%s %s: %d points equal (%d of them only as %%.15g), %d empty slots, %d problems" % (
        mode, kind, npoints, nrounded, nempty, len(problems)))
    sys.exit(1 if problems or npoints == 0 else 0)


if __name__ == "__main__":
    main()
