# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# The input and the expectation shared by the chaining tests (t-graphite.sh, t-rrd-fetch.sh);
# sourced after tests/lib/e2e.sh (uses `is` and `diag`).

# chain_messages T0 N STEP S1_FILE [U1_FILE]: writes to S1_FILE the time-series JSON messages of
# sensor-s1 on db1.example: N gauge points STEP seconds apart from T0, a smooth pattern with two
# spikes (points 25 and 44), point 30 sent twice in a row and points 36-38 redelivered after
# point 40 (N + 4 messages). With U1_FILE, also writes there sensor-u1: N integer points 5 s off
# the STEP grid.
chain_messages() {
    python3 - "$@" <<'PY'
import json, math, sys
t0, n, step = (int(a) for a in sys.argv[1:4])
def m(pi, t, v):
    return json.dumps({"v": 1, "host": "db1.example", "plugin": "sensor", "plugin_instance": pi,
                       "type": "gauge", "type_instance": "", "time": t, "interval": step,
                       "ds": [{"name": "value", "type": "gauge", "value": v}]},
                      separators=(",", ":"))
def s1(k):
    v = 50 + 10 * math.sin(k / 8) + ((k * 37) % 11 - 5) / 10
    v += 80 if k == 25 else -120 if k == 44 else 0
    return m("s1", t0 + step * k, round(v, 4))
with open(sys.argv[4], "w") as f:
    for k in range(n):
        print(s1(k), file=f)
        if k == 30:
            print(s1(k), file=f)            # sent twice in a row
        if k == 40:
            for r in (36, 37, 38):          # redelivered after newer ones
                print(s1(r), file=f)
if len(sys.argv) > 5:
    with open(sys.argv[5], "w") as f:
        for k in range(n):
            print(m("u1", t0 + 5 + step * k, float((k * k) % 17)), file=f)
PY
}

# chain_expect KTS_FILTER CONF MSGS OUT N: runs the pipelines of CONF over MSGS with kts-filter
# (the oracle) into OUT, and is one test point: N points out, both spikes replaced, the 4
# duplicates dropped. Sets CHAIN_NOUT to the number of points out.
chain_expect() {
    local kf=$1 conf=$2 msgs=$3 out=$4 n=$5 st nmsg nout nrep ndrop
    nmsg=$(wc -l <"$msgs")
    "$kf" --config "$conf" "$msgs" >"$out" 2>"$out.err"
    st=$?
    diag "kts-filter: $(tail -n1 "$out.err")"
    nout=$(grep -c ',\(kept\|replaced\|filled\|warming\|marked\)$' "$out")
    CHAIN_NOUT=$nout
    nrep=$(grep -c ',replaced$' "$out")
    ndrop=$(grep -c ',dropped$' "$out")
    is "$st/$nout/$nrep/$ndrop" "0/$n/2/4" \
        "kts-filter: $n points out of $nmsg messages, both spikes replaced, 4 duplicates dropped"
}
