#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kts-filter: the offline tool over CSV, with the shipped contrib/pipelines/spikes.conf.
# shellcheck source=tests/lib/tap.sh
. "$KTS_TOP_SRCDIR/tests/lib/tap.sh"
KF="$KTS_TOP_BUILDDIR/tools/kts-filter"
SPIKES="$KTS_TOP_SRCDIR/contrib/pipelines/spikes.conf"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

plan 34

# Three days of a 5-minute daily pattern with two spikes on day 3, dates as in NAB.
# Noise: Park-Miller LCG (exact in double arithmetic, so every awk gives the same numbers).
awk 'BEGIN {
  print "timestamp,value"
  x = 42
  for (i = 0; i < 864; i++) {
    t = 1396310400 + 300 * i
    n = 0
    for (k = 0; k < 4; k++) { x = (x * 16807) % 2147483647; n += x / 2147483647 }
    v = 50 + 20 * sin(2 * 3.141592653589793 * i / 288) + (n - 2)
    if (i == 700) v += 60
    if (i == 800) v -= 60
    print strftime("%Y-%m-%d %H:%M:%S", t, 1) "," v
  }
}' >"$tmp/in.csv"

"$KF" --config "$SPIKES" "$tmp/in.csv" >"$tmp/out.csv" 2>"$tmp/err"
ok $? "spikes.conf is accepted as is and the run succeeds"
is "$(head -1 "$tmp/out.csv")" "timestamp,input,output,action" "CSV header"
is "$(($(wc -l <"$tmp/out.csv") - 1))" "864" "one line per input point"
is "$(grep -c ',warming$' "$tmp/out.csv")" "298" "the first day is warming (deseasonalize), then 10 points (outlier MinPoints)"
cmp_ok "$(grep -c ',replaced$' "$tmp/out.csv")" -le 3 "the spikes and at most one noise point are replaced"
like "$(sed -n 702p "$tmp/out.csv")" '^2014-04-03 10:20:00,[0-9.]+,[0-9.]+,replaced$' "spike 1 replaced at its timestamp"
like "$(sed -n 802p "$tmp/out.csv")" '^2014-04-03 18:40:00,-[0-9.]+,[0-9.]+,replaced$' "spike 2 (downwards) too"
spike_out=$(sed -n 702p "$tmp/out.csv" | cut -d, -f3)
cmp_ok "$(printf '%.0f' "$spike_out")" -lt 80 "the replacement is near the pattern, not the spike"
like "$(cat "$tmp/err")" '864 points, interval 300 s: [0-9]+ kept [23] replaced 0 marked 298 warming 0 dropped' "summary on stderr"

# Epoch seconds, gaps, duplicates, fill and dedup.
printf 'timestamp,value\n1000,1\n1010,2\n1010,2\n1040,5\n1050,\n1060,7\n' >"$tmp/e.csv"
cat >"$tmp/fill.conf" <<'CONF'
<Pipeline "fill">
  <Filter "dedup">
  </Filter>
  <Filter "fill">
    MaxGap 3
  </Filter>
</Pipeline>
CONF
"$KF" --config "$tmp/fill.conf" "$tmp/e.csv" >"$tmp/e.out" 2>/dev/null
ok $? "epoch timestamps accepted"
is "$(sed -n 4p "$tmp/e.out")" "1010,2,,dropped" "a duplicate is dropped"
is "$(sed -n 5,6p "$tmp/e.out" | tr '\n' ' ')" "1020,,3,filled 1030,,4,filled " "a gap is filled linearly, flagged filled"
is "$(sed -n 8p "$tmp/e.out")" "1050,,nan,kept" "an empty value is NaN"

# Errors.
printf '<Pipeline "x">\n<Filter "smooth">\nMethod "nope"\n</Filter>\n</Pipeline>\n' >"$tmp/bad.conf"
"$KF" --config "$tmp/bad.conf" "$tmp/e.csv" >/dev/null 2>"$tmp/bad.err"
is "$?" "1" "a bad configuration exits 1"
like "$(cat "$tmp/bad.err")" 'invalid value "nope" for option "Method"' "and names the option"
printf 'timestamp,value\nyesterday,1\n' >"$tmp/bad.csv"
"$KF" --config "$tmp/fill.conf" "$tmp/bad.csv" >/dev/null 2>"$tmp/bad.err"
is "$?" "1" "a bad timestamp exits 1"
like "$(cat "$tmp/bad.err")" 'bad.csv:2: bad timestamp "yesterday"' "naming file and line"

# Time-series JSON input, one message per line, two data sources, counters -> rates.
for i in 0 1 2 3; do
  printf '{"v":1,"host":"h1","plugin":"interface","plugin_instance":"eth0","type":"if_octets","type_instance":"","time":%d,"interval":10,"ds":[{"name":"rx","type":"derive","value":%d},{"name":"tx","type":"derive","value":%d}]}\n' \
    $((1700000000 + 10 * i)) $((1000 * i)) $((100 * i))
done >"$tmp/in.json"
printf '{"v":1,"host":"h2","plugin":"memory","plugin_instance":"","type":"memory","type_instance":"free","time":1700000000,"interval":10,"ds":[{"name":"value","type":"gauge","value":5}]}\n' >>"$tmp/in.json"
cat >"$tmp/rate.conf" <<'CONF'
<Pipeline "rates">
  <Match>
    Plugin "interface"
  </Match>
  <Filter "difference">
  </Filter>
  OutputPluginInstanceSuffix "-rate"
</Pipeline>
CONF
"$KF" --config "$tmp/rate.conf" "$tmp/in.json" >"$tmp/j.out" 2>"$tmp/j.err"
ok $? "JSON input accepted"
is "$(sed -n '1p;4,5p' "$tmp/j.out" | tr '\n' ' ')" "series,ds,timestamp,input,output,action h1/interface-eth0/if_octets,0,1700000010,1000,100,kept h1/interface-eth0/if_octets,1,1700000010,100,10,kept " \
  "per data source lines with series, rates of both data sources"
like "$(cat "$tmp/j.err")" '5 value lists \(1 matched no pipeline\)' "value lists no pipeline matches are counted"

# --state-out / --state-in: pre-train on the first 400 points, continue with the rest; the lines
# after the cut equal the uninterrupted run's, and the two points that outlier's Delay 2 held at
# the cut come out of the restored state as "delayed" lines with the uninterrupted outputs.
head -401 "$tmp/in.csv" >"$tmp/part1.csv"
{ echo "timestamp,value"; tail -n +402 "$tmp/in.csv"; } >"$tmp/part2.csv"
"$KF" --config "$SPIKES" --state-out "$tmp/state" "$tmp/part1.csv" >"$tmp/p1.out" 2>"$tmp/p1.err"
ok $? "--state-out: the first 400 points run and the state is saved"
like "$(cat "$tmp/p1.err")" 'state .*/state: 1 series saved' "--state-out reports the series saved"
"$KF" --config "$SPIKES" --state-in "$tmp/state" "$tmp/part2.csv" >"$tmp/p2.out" 2>"$tmp/p2.err"
ok $? "--state-in: the rest runs from the saved state"
like "$(cat "$tmp/p2.err")" 'state .*/state: 1 series restored, 0 refused' "--state-in reports the series restored"
tail -n +402 "$tmp/out.csv" >"$tmp/whole.tail"
grep -v ',delayed$' "$tmp/p2.out" | tail -n +2 >"$tmp/p2.tail"
cmp -s "$tmp/whole.tail" "$tmp/p2.tail"
ok $? "after the cut, the output equals the uninterrupted run's (no warming: the day was learned)" ||
  diag "$(diff "$tmp/whole.tail" "$tmp/p2.tail" | head -5)"
delayed_ok=1
n_delayed=0
while IFS=, read -r ts _in outv action; do
  n_delayed=$((n_delayed + 1))
  want=$(grep "^$ts," "$tmp/out.csv" | cut -d, -f3)
  [ "$want" = "$outv" ] || { delayed_ok=0; diag "delayed $ts: $outv, uninterrupted $want"; }
done < <(grep ',delayed$' "$tmp/p2.out")
ok "$([ "$delayed_ok" = 1 ] && [ "$n_delayed" = 2 ]; echo $?)" \
  "the 2 points held at the cut come out of the restored state with the uninterrupted outputs"
sed 's/Threshold 5 /Threshold 6 /' "$SPIKES" >"$tmp/other.conf"
"$KF" --config "$tmp/other.conf" --state-in "$tmp/state" "$tmp/part2.csv" >/dev/null 2>"$tmp/p3.err"
like "$(cat "$tmp/p3.err")" '0 series restored, 1 refused \(pipeline "spikes": 1 config\)' \
  "a state from another configuration is refused (counted by reason); the series starts fresh"
head -c 100 "$tmp/state" >"$tmp/cut-state"
"$KF" --config "$SPIKES" --state-in "$tmp/cut-state" "$tmp/part2.csv" >/dev/null 2>"$tmp/p4.err"
rc=$?
like "$rc $(cat "$tmp/p4.err")" '^1 kts-filter: --state-in .*cut-state: entry 1: cut short' \
  "a damaged state file is an error of kts-filter (exit 1, with where)"

# Every shipped pipeline file is valid as it is.
bad=0
for conf in "$KTS_TOP_SRCDIR"/contrib/pipelines/*.conf; do
  "$KF" --config "$conf" --check >"$tmp/check.out" 2>&1 || { bad=1; diag "$conf: $(cat "$tmp/check.out")"; }
done
ok "$bad" "kts-filter --check accepts every contrib/pipelines/*.conf"
like "$("$KF" --config "$KTS_TOP_SRCDIR/contrib/pipelines/aggregator.conf" --check)" 'pipeline "memory": dedup deseasonalize outlier reseasonalize' "--check lists the pipelines and their filters"

# --seed-topic (the Kafka side is tests/t-read-seed.sh): the combinations it refuses, before
# any connection.
"$KF" --config "$SPIKES" --state-in "$tmp/state" --seed-topic st >/dev/null 2>"$tmp/seed.err"
like "$?:$(cat "$tmp/seed.err")" '^1:.*--seed-topic needs --input-topic and --bootstrap' "--seed-topic without --input-topic and --bootstrap is a usage error"
"$KF" --config "$SPIKES" --seed-topic st --input-topic in --bootstrap 127.0.0.1:1 "$tmp/in.csv" >/dev/null 2>"$tmp/seed.err"
like "$?:$(cat "$tmp/seed.err")" '^1:.*needs --config and --state-in, and no input' "--seed-topic needs --state-in and takes no input file"
"$KF" --config "$SPIKES" --state-in "$tmp/state" --seed-topic st --input-topic in --bootstrap 127.0.0.1:1 --key none >/dev/null 2>"$tmp/seed.err"
like "$?:$(cat "$tmp/seed.err")" '^1:.*--key: allowed: series, host' "--seed-topic refuses --key none (no partition to seed)"

# docs/FILTERS.md's option reference is generated from the option tables: keep it in sync.
"$KF" --options-markdown >"$tmp/ref.md"
sed -n '/^<!-- generated by `kts-filter --options-markdown`/,$p' "$KTS_TOP_SRCDIR/docs/FILTERS.md" >"$tmp/doc.md"
cmp -s "$tmp/ref.md" "$tmp/doc.md"
ok $? "docs/FILTERS.md option reference matches the option tables (regenerate: kts-filter --options-markdown)"
done_testing
