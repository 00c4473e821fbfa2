# SPDX-License-Identifier: MIT
"""The duration options of every filter and their defaults, from the option reference.

Imported by the tests that scale contrib/pipelines/spikes.conf to a compressed day
(tests/t-demo-pipeline.sh, tests/lib/state.sh's state_spikes_pipeline):

  sys.path.insert(0, SRCDIR + "/tests/lib"); from filter_durations import durations
  durations("docs/FILTERS.md") -> {filter: {option: (default seconds, only)}}

`only` is None when the option always applies, else the list the reference names before a
colon in its description: methods ("robust/ewz: ...") or ["with Option"] ("with
SuppressUnchanged: ...").
"""
import re


def durations(ref):
    res, section = {}, None
    for line in open(ref):
        m = re.match(r'### `<Filter "([^"]+)">`', line)
        if m:
            section = res.setdefault(m.group(1), {})
        m = re.match(r'\| `(\w+)` \| seconds \| ([^|]+) \|[^|]*\| ([^|]*)\|', line)
        if m and section is not None:
            only = re.match(r'\s*([a-z]+(?:/[a-z]+)*|with \w+):', m.group(3))
            section[m.group(1)] = (float(m.group(2)), only.group(1).split('/') if only else None)
    return res
