#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# No password in any log the suite produced. Runs last (TEST_FILES order; "zz" also sorts last).
#   tests/run-suite exports KTS_LOG_ARCHIVE; tests/lib/collectd.sh copies every collectd log and
#   stderr there when a test ends, contrib/kafka/kafka-local copies every broker log there when a
#   cluster stops and appends the passwords it made to $KTS_LOG_ARCHIVE/.secrets, and tests
#   register the other passwords they use, right or wrong (kafka_register_secret).
#   1  passwords were registered (run it with the tests that use them, e.g. t-security.sh)
#   2  the archive holds logs (files and bytes named), plus the suite's shared broker's live logs
#   3  the search works: a copy of one log with a registered password planted in it is found
#   4  not one of those passwords occurs in any of those files (fixed-string search)
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$SRCDIR/tests/lib/tap.sh"

plan 4
A=${KTS_LOG_ARCHIVE:-}
[ -n "$A" ] && [ -d "$A" ] || bail_out "KTS_LOG_ARCHIVE is not a directory: run through make check (tests/run-suite)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kts-secrets.XXXXXX") || bail_out "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
# Distinct, non-empty passwords.
{ [ -f "$A/.secrets" ] && grep -v '^$' "$A/.secrets"; } | sort -u >"$tmp/secrets"
npw=$(wc -l <"$tmp/secrets")
cmp_ok "$npw" -gt 0 "1: $npw distinct passwords registered by the suite" ||
    diag "none in $A/.secrets: run this with the tests that use passwords (t-security.sh, t-kafka-sasl.sh)"

# Every file of the archive but the password list, and the shared cluster's logs (still running).
files=()
while IFS= read -r -d '' f; do files+=("$f"); done < <(
    find "$A" -type f ! -path "$A/.secrets" -print0
    if [ -n "${KTS_KAFKA_RUN_DIR:-}" ] && [ -d "$KTS_KAFKA_RUN_DIR" ]; then
        find "$KTS_KAFKA_RUN_DIR" -maxdepth 1 -type f -name '*.log' -print0
    fi)
bytes=0
[ "${#files[@]}" -eq 0 ] || bytes=$(cat "${files[@]}" | wc -c)
ncd=$(find "$A" -type f -path '*/collectd.*' | wc -l)
nkf=$(find "$A" -type f -path '*/kafka-local.*' | wc -l)
[ "${#files[@]}" -gt 0 ] && [ "$bytes" -gt 0 ]
ok $? "2: ${#files[@]} log files, $bytes bytes ($ncd copied by tests/lib/collectd.sh, $nkf by kafka-local)"

# Control: the same search over a copy of a log with the last password planted mid-line.
planted=""
if [ "$npw" -gt 0 ] && [ "${#files[@]}" -gt 0 ]; then
    { head -c 2000 "${files[0]}"; printf 'x=%s;\n' "$(tail -n1 "$tmp/secrets")"; } >"$tmp/planted.log"
    planted=$(grep -lF -f "$tmp/secrets" "$tmp/planted.log")
fi
[ -n "$planted" ]
ok $? "3: the search finds a password planted in a copy of a log"

hits=""
[ "$npw" -eq 0 ] || [ "${#files[@]}" -eq 0 ] || hits=$(grep -lF -f "$tmp/secrets" "${files[@]}")
[ -z "$hits" ] && [ "$npw" -gt 0 ]
ok $? "4: none of the $npw passwords occurs in those ${#files[@]} files" || {
    [ -z "$hits" ] || diag "password(s) found in:"
    for f in $hits; do diag "  $f ($(grep -cF -f "$tmp/secrets" "$f") lines)"; done
}

done_testing
