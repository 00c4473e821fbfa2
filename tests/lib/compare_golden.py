#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compare kts_testgen's ExpectFile with messages read back from Kafka (kcat -J output).

usage: compare_golden.py EXPECT.jsonl KCAT.jsonl FORMAT [PLUGIN]
FORMAT is "json" (time-series JSON v1) or "collectd" (stock format_json). Only messages whose
plugin is PLUGIN (default kts_testgen) are compared. Prints one line per problem and a last line
"compared N value lists, M problems"; exit status 0 only without problems.

Exactness: numbers are parsed as Decimal from their JSON text, so times compare at collectd's
2^-30 s resolution and doubles bit for bit (the collectd format writes times with 3 decimals
and gauges with %g-like precision, so there they are compared at that precision).
"""
import json
import struct
import sys
from decimal import Decimal, ROUND_HALF_EVEN

def cdtime(text_decimal):
    return int((Decimal(text_decimal) * (1 << 30)).to_integral_value(rounding=ROUND_HALF_EVEN))

def bits(x):
    return struct.pack('<d', float(x))

def ident(o):
    return (o['host'], o['plugin'], o.get('plugin_instance', ''), o['type'], o.get('type_instance', ''))

def series_key(o):
    h, p, pi, t, ti = ident(o)
    return h + '/' + p + ('-' + pi if pi else '') + '/' + t + ('-' + ti if ti else '')

def main():
    expect_path, got_path, fmt = sys.argv[1:4]
    plugin = sys.argv[4] if len(sys.argv) > 4 else 'kts_testgen'
    problems = []
    expect = {}
    with open(expect_path, encoding='utf-8') as f:
        for line in f:
            o = json.loads(line, parse_float=Decimal, parse_int=Decimal)
            expect[ident(o)] = o
    got = {}
    with open(got_path, encoding='utf-8') as f:
        for line in f:
            env = json.loads(line)
            payload = json.loads(env['payload'], parse_float=Decimal, parse_int=Decimal)
            items = payload if fmt == 'collectd' else [payload]
            for o in items:
                if o['plugin'] != plugin:
                    continue
                if ident(o) in got:
                    problems.append('duplicate message for %r' % (ident(o),))
                got[ident(o)] = o
                if env.get('key') != series_key(o):
                    problems.append('key %r is not the series %r' % (env.get('key'), series_key(o)))
    for k in expect:
        if k not in got:
            problems.append('missing: %r' % (k,))
    for k in got:
        if k not in expect:
            problems.append('unexpected: %r' % (k,))
    for k, e in expect.items():
        g = got.get(k)
        if g is None:
            continue
        where = '/'.join(k)
        if fmt == 'json':
            if g.get('v') != 1:
                problems.append('%s: v is %r' % (where, g.get('v')))
            if cdtime(g['time']) != int(e['time_cdtime']):
                problems.append('%s: time %s != cdtime %s' % (where, g['time'], e['time_cdtime']))
            if cdtime(g['interval']) != int(e['interval_cdtime']):
                problems.append('%s: interval %s != cdtime %s' % (where, g['interval'], e['interval_cdtime']))
            names = [d['name'] for d in g['ds']]
            types = [d['type'] for d in g['ds']]
            values = [d['value'] for d in g['ds']]
            meta = g.get('meta', {})
        else:
            if abs(Decimal(g['time']) - Decimal(e['time'])) > Decimal('0.0005'):
                problems.append('%s: time %s != %s' % (where, g['time'], e['time']))
            names, types, values = g['dsnames'], g['dstypes'], g['values']
            meta = {}  # collectd's format loses meta types; checked loosely below
        if names != e['dsnames']:
            problems.append('%s: dsnames %r != %r' % (where, names, e['dsnames']))
        if types != e['dstypes']:
            problems.append('%s: dstypes %r != %r' % (where, types, e['dstypes']))
        for i, (gv, ev) in enumerate(zip(values, e['values'])):
            t = e['dstypes'][i]
            if ev is None or gv is None:
                ok = ev is None and gv is None
            elif t == 'gauge' and fmt == 'json':
                ok = bits(gv) == bits(ev)
            elif t == 'gauge':
                # collectd's format_json prints gauges with 15 significant digits.
                exact = Decimal(float(ev))  # the double's exact value, not its shortest text
                ok = abs(Decimal(gv) - exact) <= abs(exact) * Decimal('1e-14')
            else:
                ok = int(gv) == int(ev)
            if not ok:
                problems.append('%s: value[%d] %s != %s (%s)' % (where, i, gv, ev, t))
        if fmt == 'json' and meta != e.get('meta', {}):
            # Compare typed meta exactly (doubles bit for bit).
            em = e.get('meta', {})
            if set(meta) != set(em):
                problems.append('%s: meta keys %r != %r' % (where, sorted(meta), sorted(em)))
            else:
                for mk in em:
                    a, b = meta[mk], em[mk]
                    same = a['type'] == b['type'] and (
                        bits(a['value']) == bits(b['value']) if a['type'] == 'double' and a['value'] is not None and b['value'] is not None
                        else a['value'] == b['value'])
                    if not same:
                        problems.append('%s: meta %s %r != %r' % (where, mk, a, b))
    for p in problems[:50]:
        print(p)
    print('compared %d value lists, %d problems' % (len(expect), len(problems)))
    return 1 if problems else 0

if __name__ == '__main__':
    sys.exit(main())
