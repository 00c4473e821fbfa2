#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# t-long-functions.sh: no C function in src/, plugins/ or tools/ is over 100 lines, unless a
# comment right above it begins "long function:" and says why it reads better long
# (contrib/long-functions), or it is in the allow-list below.
#
#   1   contrib/long-functions finds a function of 101 lines, not one of 100, counts from the
#       definition's first line to its closing brace, and leaves out one whose comment begins
#       "long function:" (listed by --all as allowed)
#   2   every function over 100 lines in src/, plugins/ and tools/ is in the allow-list
#   3   every allow-list entry is still over 100 lines (a function that was shortened leaves
#       the list in the same commit); the check itself is tried on the file of test 1, where an
#       entry naming its 100-line function must be caught, so that it means something while the
#       list is empty
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=tests/lib/tap.sh
. "$SRCDIR/tests/lib/tap.sh"
plan 3
cd "$SRCDIR" || bail_out "cannot cd to $SRCDIR"
TOOL=contrib/long-functions

# The functions over 100 lines that are allowed today, as "FILE NAME", one a line. This list
# must only shrink, and it is empty now: never add one (a function that reads better long gets
# a "long function:" comment saying why, next to it, where a reviewer sees it).
ALLOW=''

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A C file with functions of 100 and 101 lines (definition to closing brace) and one of 101
# lines under a "long function:" comment.
body() { # NAME LINES: a function of LINES lines in all
    printf 'static int %s(int x)\n{\n' "$1"
    for _ in $(seq 1 $(($2 - 4))); do printf '    x++;\n'; done
    printf '    return x;\n}\n\n'
}
{
    printf '/* SPDX-License-Identifier: MIT */\n#include <stdio.h>\n\n'
    body hundred 100
    body hundred_and_one 101
    printf '/* long function: one table, read top to bottom. */\n'
    body allowed_long 101
    printf '/* A comment that\n * long function: is not its first line. */\n'
    body not_allowed 102
} >"$tmp/f.c"
got=$("$TOOL" "$tmp/f.c")
st=$?
all=$("$TOOL" --all "$tmp/f.c")
# Lines 1-3 the header, 4-103 hundred, 105-205 hundred_and_one, 207 the comment, 208-308
# allowed_long, 310-311 the comment, 312-413 not_allowed.
want="102 $tmp/f.c:312 not_allowed
101 $tmp/f.c:105 hundred_and_one"
want_all="102 $tmp/f.c:312 not_allowed
101 $tmp/f.c:105 hundred_and_one
101 $tmp/f.c:208 allowed_long (long function: allowed)"
if [ "$got" = "$want" ] && [ "$st" -eq 1 ] && [ "$all" = "$want_all" ]; then
    ok 0 "contrib/long-functions: 101 lines listed, 100 not, \"long function:\" comment honoured"
else
    ok 1 "contrib/long-functions: 101 lines listed, 100 not, \"long function:\" comment honoured"
    diag "exit $st, got:" "$got" "want:" "$want" "--all got:" "$all" "want:" "$want_all"
fi

found=$("$TOOL")
st=$?
if [ "$st" -gt 1 ]; then
    bail_out "contrib/long-functions failed (exit $st)"
fi
new=""
while read -r lines where name; do
    [ -n "$lines" ] || continue
    grep -qxF -- "${where%%:*} $name" <<<"$ALLOW" || new="$new
$lines $where $name"
done <<<"$found"
is "$new" "" "no function over 100 lines in src/, plugins/, tools/ but the allow-list" ||
    diag "split it, or put a comment beginning \"long function:\" (why) right above it"

# stale_entries LIST FOUND: the entries of LIST ("FILE NAME" lines; blank lines are none) that
# FOUND (contrib/long-functions' output) does not list as over 100 lines.
stale_entries() {
    local file name out=""
    while read -r file name; do
        [ -n "$file" ] || continue
        awk -v f="$file" -v n="$name" '{ split($2, a, ":") } a[1] == f && $3 == n { found = 1 }
            END { exit !found }' <<<"$2" || out="$out
$file $name"
    done <<<"$1"
    printf '%s' "$out"
}
self=$(stale_entries "$tmp/f.c hundred
$tmp/f.c hundred_and_one" "$got")
stale=$(stale_entries "$ALLOW" "$found")
entries=$(grep -c . <<<"$ALLOW")
if [ "$entries" -eq 0 ]; then
    what="the allow-list is empty (an entry naming a function of 100 lines is caught as stale)"
else
    what="every allow-list entry ($entries) is still over 100 lines (the list only shrinks)"
fi
if [ "$self" = "
$tmp/f.c hundred" ] && [ -z "$stale" ]; then
    ok 0 "$what"
else
    ok 1 "$what"
    [ -z "$stale" ] || diag "remove these lines from ALLOW in tests/t-long-functions.sh:" \
        "${stale#$'\n'}"
    [ "$self" = "
$tmp/f.c hundred" ] || diag "the stale check on $tmp/f.c found:" "$self" \
        "want: $tmp/f.c hundred"
fi
done_testing
