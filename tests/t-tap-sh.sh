#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/lib/tap.sh checked from outside (this file prints its own TAP with printf, so a broken
# tap.sh cannot hide its own failures):
#  1. ok takes an exit status: 0 passes, non-zero and non-numbers fail; numbering is sequential;
#  2. is/isnt/like/unlike/cmp_ok/run_ok pass and fail as documented and explain failures on
#     stderr only, so stdout stays pure TAP;
#  3. done_testing's status: 0 only if all planned tests ran and passed; wrong count fails;
#     no plan prints one at the end;
#  4. TAP_TODO marks a test "# TODO" and its failure does not fail the script;
#  5. a "#" in a test name is escaped; bail_out exits 255 with "Bail out!".
set -u
lib="${KTS_TOP_SRCDIR:?run through make check}/tests/lib/tap.sh"
n=0 failed=0
check() { # STATUS NAME
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi
}
# Runs the script body $1 with tap.sh sourced; sets OUT, ERR and RC.
run() {
    local e
    e=$(mktemp)
    OUT=$(bash -c ". '$lib'; $1" 2>"$e")
    RC=$?
    ERR=$(cat "$e")
    rm -f "$e"
}
echo "1..14"

run 'plan 4; ok 0 a; ok 1 b; ok x c; ok "" d; done_testing'
[ "$OUT" = $'1..4\nok 1 - a\nnot ok 2 - b\nnot ok 3 - c\nnot ok 4 - d' ]; check $? "1: ok: only status 0 passes"
[ "$RC" -ne 0 ]; check $? "3: failures make done_testing fail"
[[ $ERR == *"Failed test 'b'"* && $ERR == *"failed 3 test(s) of 4"* ]]; check $? "2: failures explained on stderr"

run 'plan 6; is a a s1; isnt a b s2; like abc "^a" s3; unlike abc "^b" s4; cmp_ok 2 -lt 3 s5; run_ok s6 true; done_testing'
[ "$RC" -eq 0 ] && [ "$(grep -c '^ok ' <<<"$OUT")" -eq 6 ] && [ -z "$ERR" ]; check $? "2: passing assertions pass silently"

run 'plan 6; is a b f1; isnt a a f2; like abc "^b" f3; unlike abc "^a" f4; cmp_ok 3 -lt 2 f5; run_ok f6 sh -c "echo boom; exit 3"; done_testing'
[ "$(grep -c '^not ok ' <<<"$OUT")" -eq 6 ] && [ "$RC" -ne 0 ]; check $? "2: failing assertions fail"
[[ $ERR == *"got: 'a'"* && $ERR == *"boom"* && $ERR == *"exit status: 3"* ]]; check $? "2: with got/expected and command output on stderr"
! grep -qv '^\(1\.\.6\|not ok [0-9]* - f[0-9]\)$' <<<"$OUT"; check $? "2: stdout is pure TAP"

run 'plan 2; ok 0 a; done_testing'
[ "$RC" -ne 0 ] && [[ $ERR == *"planned 2 tests but ran 1"* ]]; check $? "3: fewer tests than planned fails"

run 'ok 0 a; ok 0 b; done_testing'
[ "$RC" -eq 0 ] && [ "$OUT" = $'ok 1 - a\nok 2 - b\n1..2' ]; check $? "3: no plan: printed at the end"

run 'done_testing'
[ "$RC" -ne 0 ]; check $? "3: no plan and no tests fails"

run 'plan 2; TAP_TODO="later"; ok 1 t; TAP_TODO=""; ok 0 u; done_testing'
[ "$RC" -eq 0 ] && [ "$(sed -n 2p <<<"$OUT")" = "not ok 1 - t # TODO later" ]; check $? "4: TODO failure does not fail the script"

run 'plan 1; ok 0 "a # b"; done_testing'
[ "$(sed -n 2p <<<"$OUT")" = 'ok 1 - a \# b' ]; check $? "5: # in a name is escaped"

run 'plan 2; bail_out "no broker"; ok 0 never'
[ "$RC" -eq 255 ] && [ "$(sed -n 2p <<<"$OUT")" = "Bail out! no broker" ]; check $? "5: bail_out exits 255"

run '. "'"$lib"'"; plan 1; ok 0 again; done_testing'
[ "$RC" -eq 0 ] && [ "$OUT" = $'1..1\nok 1 - again' ]; check $? "sourcing twice is harmless"

[ "$failed" -eq 0 ]
