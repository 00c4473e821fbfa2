#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# t-testhooks.sh: test knobs stay behind one door (src/util/kts_testhooks.h, docs/DESIGN.md).
#
#   1   nothing in plugins/ or tools/ includes kts_testhooks.h
#   2   what kts_testhooks.h declares (KTS_DECODE_NO_FAST, kts_format_decode_array) is declared
#       in no other header of src/
#   3   kts_testhooks.h lists the knobs kept by their owners in other headers of src/, and each
#       still exists there (a knob moved or removed: update the list and this test together)
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=tests/lib/tap.sh
. "$SRCDIR/tests/lib/tap.sh"
plan 3
cd "$SRCDIR" || bail_out "cannot cd to $SRCDIR"
HOOKS=src/util/kts_testhooks.h
[ -f "$HOOKS" ] || bail_out "$HOOKS is missing"

users=$(grep -rlE '#include +"kts_testhooks\.h"' plugins tools 2>/dev/null | tr '\n' ' ')
is "$users" "" "no file in plugins/ or tools/ includes kts_testhooks.h"

dups=""
for sym in KTS_DECODE_NO_FAST kts_format_decode_array; do
    grep -qE "(#define +$sym\\b|\\b$sym\\()" "$HOOKS" || dups="$dups not-in-hooks:$sym"
    for h in src/*.h src/*/*.h; do
        [ -f "$h" ] && [ "$h" != "$HOOKS" ] || continue
        grep -qE "(#define +$sym\\b|^[a-z].*\\b$sym\\()" "$h" && dups="$dups $h:$sym"
    done
done
is "$dups" "" "KTS_DECODE_NO_FAST and kts_format_decode_array are declared in kts_testhooks.h only"

missing=""
for knob in spool_segment_bytes topic_check_timeout kts_consumer_apply_naming kts_state_topic_policy; do
    grep -q "$knob" "$HOOKS" || missing="$missing unlisted:$knob"
    grep -rqw --include='*.h' --exclude=kts_testhooks.h "$knob" src || missing="$missing gone:$knob"
done
is "$missing" "" "the knobs kept elsewhere are listed in kts_testhooks.h and still exist" ||
    diag "update the list at the top of $HOOKS and this test together"
done_testing
