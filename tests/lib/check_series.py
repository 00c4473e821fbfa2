#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check what kts_testgen's burst mode wrote to a topic, read back with
    kcat -C -b B -t TOPIC -o beginning -e -q -f '%p %o %s\\n'
(partition, offset, payload of the time-series JSON, one message a line) on stdin.

usage: check_series.py HOST SERIES COUNT [HOST SERIES COUNT ...]

For each HOST (kts_testgen's Host option) that dispatched COUNT value lists over SERIES series
(value list i → series s = i % SERIES with value k = i / SERIES, tests/plugins/kts_testgen.c
guarantee 3), it compares the topic with what was dispatched and prints one line
    HOST expected=E distinct=D missing=M duplicates=U order=O time=T partitions=P extra=X
      expected     value lists dispatched
      distinct     different (series, value) found
      missing      dispatched but not found
      duplicates   found more than once (at-least-once redelivery; not a loss)
      order        first appearances of a series' values out of increasing order, in the order
                   the partition holds them (per-series order broken)
      time         first appearances whose timestamp is not after the previous one of the series
      partitions   series found in more than one partition (must be 0: keyed by series)
      extra        values never dispatched (k beyond the count of the series)
      blocks       runs of consecutive out-of-order first appearances within one partition:
                   a produce request that librdkafka retried and the broker wrote after a later
                   one shows as ONE block (docs/write_kafka_ts.md, Ordering); scattered
                   reordering (e.g. several write threads) shows as many
and, on stderr, the first few missing values per host (run lengths) to help a diagnosis.
Exit 0 always: the caller decides what must be 0.
"""
import re
import sys

PAT = re.compile(rb'"host":"([^"]*)","plugin":"kts_testgen","plugin_instance":"s(\d+)"'
                 rb'.*?"time":([0-9.]+).*?"value":(-?\d+)')


def main():
    args = sys.argv[1:]
    if len(args) < 3 or len(args) % 3:
        sys.exit(__doc__)
    hosts = {}
    for i in range(0, len(args), 3):
        hosts[args[i].encode()] = (int(args[i + 1]), int(args[i + 2]))
    # per (host, series): partition, last value, last time, seen set, counters
    state = {}
    stats = {h: dict(distinct=0, duplicates=0, order=0, time=0, partitions=0, extra=0, blocks=0)
             for h in hosts}
    # per (host, partition): [inside an out-of-order run?, its first offset, its length]
    runs = {}
    for line in sys.stdin.buffer:
        m = PAT.search(line)
        if not m:
            continue
        host = m.group(1)
        if host not in hosts:
            continue
        part = line.split(b' ', 1)[0]
        s, t, k = int(m.group(2)), m.group(3), int(m.group(4))
        nseries, count = hosts[host]
        st = stats[host]
        key = (host, s)
        e = state.get(key)
        if e is None:
            e = state[key] = [part, -1, b'', set()]
        elif e[0] != part:
            st['partitions'] += 1
            e[0] = part
        if k in e[3]:
            st['duplicates'] += 1
            continue
        e[3].add(k)
        if s >= nseries or k >= (count - s + nseries - 1) // nseries:
            st['extra'] += 1
            continue
        st['distinct'] += 1
        r = runs.setdefault((host, part), [False, b'', 0])
        if k < e[1] and not r[0]:
            st['blocks'] += 1
            r[0], r[1], r[2] = True, line.split(b' ', 2)[1], 0
        elif k >= e[1] and r[0]:
            print('# %s partition %s: out-of-order block of %d values from offset %s' %
                  (host.decode(), part.decode(), r[2], r[1].decode()), file=sys.stderr)
            r[0] = False
        if k < e[1]:
            r[2] += 1
            st['order'] += 1
            if st['order'] <= 5:
                print('# %s s%d: value %d at partition %s offset %s after value %d' %
                      (host.decode(), s, k, part.decode(), line.split(b' ', 2)[1].decode(),
                       e[1]), file=sys.stderr)
        else:
            e[1] = k
        # times have a fixed number of decimals: equal lengths compare exactly as bytes
        if e[2] and ((t <= e[2]) if len(t) == len(e[2]) else float(t) <= float(e[2])):
            st['time'] += 1
        e[2] = t
    for host, (nseries, count) in hosts.items():
        st = stats[host]
        missing = count - st['distinct']
        for (h, part), r in runs.items():
            if h == host and r[0]:
                print('# %s partition %s: out-of-order block of %d values from offset %s' %
                      (host.decode(), part.decode(), r[2], r[1].decode()), file=sys.stderr)
        print('%s expected=%d distinct=%d missing=%d duplicates=%d order=%d time=%d '
              'partitions=%d extra=%d blocks=%d' % (host.decode(), count, st['distinct'], missing,
                                                    st['duplicates'], st['order'], st['time'],
                                                    st['partitions'], st['extra'], st['blocks']))
        if missing:
            shown = 0
            for s in range(nseries):
                want = (count - s + nseries - 1) // nseries
                seen = state.get((host, s), [None, -1, b'', set()])[3]
                gaps, k = [], 0
                while k < want and len(gaps) < 3:
                    if k not in seen:
                        j = k
                        while j < want and j not in seen:
                            j += 1
                        gaps.append('%d..%d' % (k, j - 1))
                        k = j
                    k += 1
                if gaps:
                    print('# %s s%d missing %s' % (host.decode(), s, ' '.join(gaps)),
                          file=sys.stderr)
                    shown += 1
                if shown >= 5:
                    break


if __name__ == '__main__':
    main()
