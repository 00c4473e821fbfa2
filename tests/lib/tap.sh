# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# tests/lib/tap.sh: TAP for bash tests, the shell twin of tests/tap.h.
# Source it:  . "$KTS_TOP_SRCDIR/tests/lib/tap.sh"
#
#   plan 3
#   ok $? "the command succeeded"           # shell truth: status 0 passes
#   is "$got" "42" "the answer"
#   done_testing                            # last line: its status is the script's
#
# What it guarantees:
#  1. Every line on stdout is TAP: the plan, "ok N - NAME" / "not ok N - NAME", and "# " lines
#     from note. Diagnostics (diag, the details of a failure) go to stderr as "# " lines, so
#     prove shows them even when not verbose.
#  2. `ok` takes an exit status, not a C truth value: 0 passes, anything else (or a
#     non-number) fails. So `cmd; ok $? "name"`, `[ -f x ]; ok $? "name"` and
#     `run_ok "name" cmd args` all read naturally. (tests/tap.h's ok(cond) is the C twin.)
#  3. Every assertion returns 0 when it passed and 1 when it failed, like Test::More, so
#     `is … || diag …` works. Consequence: don't `set -e` in a test, or the first failure ends
#     it (prove still reports that as a failure: nothing is hidden, but later tests don't run).
#  4. done_testing returns 0 only if every planned test ran and passed (no plan: at least one
#     test ran and all passed); it says why on stderr otherwise.
#  5. bail_out prints "Bail out! REASON" and exits 255: for set-up that nothing can do without.
#  6. TAP_TODO="reason" marks the following assertions as TODO (known to fail; prove does not
#     count them as failures but reports when they unexpectedly pass). Unset it afterwards.
#  7. Sourcing twice is harmless; counters live in TAP_RUN, TAP_FAILED, TAP_PLANNED.
#
# API: plan N | ok STATUS NAME | run_ok NAME CMD [ARG...] | is GOT WANT NAME |
#      isnt GOT UNWANTED NAME | like GOT ERE NAME | unlike GOT ERE NAME |
#      cmp_ok GOT OP WANT NAME (OP: -eq -ne -lt -le -gt -ge) | pass NAME | fail NAME |
#      diag MSG... | note MSG... | bail_out REASON | done_testing

[ -z "${_KTS_TAP_SH_LOADED:-}" ] || return 0
_KTS_TAP_SH_LOADED=1

TAP_PLANNED=-1
TAP_RUN=0
TAP_FAILED=0
TAP_TODO=""

plan() {
    TAP_PLANNED=$1
    echo "1..$1"
}

# diag MSG...: prints every line of every argument as "# line" on stderr.
diag() {
    local arg line
    for arg in "$@"; do
        while IFS= read -r line; do
            printf '# %s\n' "$line"
        done <<<"$arg"
    done >&2
}

# note MSG...: like diag, on stdout (shown by `prove -v` only).
note() {
    local arg line
    for arg in "$@"; do
        while IFS= read -r line; do
            printf '# %s\n' "$line"
        done <<<"$arg"
    done
}

# ok STATUS NAME: passes when STATUS is 0.
ok() {
    local status=${1:-} name=${2:-} result=1
    [[ $status =~ ^[0-9]+$ ]] && [ "$status" -eq 0 ] && result=0
    TAP_RUN=$((TAP_RUN + 1))
    local todo=""
    [ -z "$TAP_TODO" ] || todo=" # TODO $TAP_TODO"
    # A "#" in the name would start a directive; escape it as TAP says.
    name=${name//\#/\\#}
    if [ "$result" -eq 0 ]; then
        echo "ok $TAP_RUN - $name$todo"
    else
        echo "not ok $TAP_RUN - $name$todo"
        [ -n "$TAP_TODO" ] || TAP_FAILED=$((TAP_FAILED + 1))
        local caller_line=${BASH_LINENO[0]} caller_file=${BASH_SOURCE[1]:-?}
        # Report the test script's line, not this library's, when called through is/like/….
        if [ "${BASH_SOURCE[1]:-}" = "${BASH_SOURCE[0]}" ]; then
            caller_line=${BASH_LINENO[1]}
            caller_file=${BASH_SOURCE[2]:-?}
        fi
        diag "  Failed test '$2'" "  at ${caller_file##*/} line $caller_line."
    fi
    return "$result"
}

pass() { ok 0 "$1"; }
fail() { ok 1 "$1"; }

# run_ok NAME CMD [ARG...]: runs CMD; passes if it exits 0. Its output goes to stderr as
# diagnostics when it fails (and nowhere when it passes).
run_ok() {
    local name=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    if ok "$rc" "$name"; then
        return 0
    fi
    diag "  command: $*" "  exit status: $rc"
    [ -z "$out" ] || diag "$(printf '%s\n' "$out" | tail -n 40 | sed 's/^/    /')"
    return 1
}

is() {
    local got=$1 want=$2 name=$3 rc=0
    [ "$got" = "$want" ] || rc=1
    ok "$rc" "$name" && return 0
    diag "         got: '$got'" "    expected: '$want'"
    return 1
}

isnt() {
    local got=$1 unwanted=$2 name=$3 rc=0
    [ "$got" != "$unwanted" ] || rc=1
    ok "$rc" "$name" && return 0
    diag "         got: '$got'" "    expected: anything else"
    return 1
}

like() {
    local got=$1 re=$2 name=$3 rc=0
    [[ $got =~ $re ]] || rc=1
    ok "$rc" "$name" && return 0
    diag "                  '$got'" "    doesn't match /$re/"
    return 1
}

unlike() {
    local got=$1 re=$2 name=$3 rc=0
    [[ $got =~ $re ]] && rc=1
    ok "$rc" "$name" && return 0
    diag "                  '$got'" "    matches /$re/"
    return 1
}

# cmp_ok GOT OP WANT NAME: integer comparison with test(1)'s operators.
cmp_ok() {
    local got=$1 op=$2 want=$3 name=$4 rc=1
    case $op in
        -eq | -ne | -lt | -le | -gt | -ge) ;;
        *)
            ok 1 "$name"
            diag "    cmp_ok: unknown operator '$op'"
            return 1
            ;;
    esac
    if [[ $got =~ ^-?[0-9]+$ ]] && [[ $want =~ ^-?[0-9]+$ ]]; then
        test "$got" "$op" "$want" && rc=0
    fi
    ok "$rc" "$name" && return 0
    diag "    '$got'" "        $op" "    '$want'"
    return 1
}

bail_out() {
    echo "Bail out! $*"
    exit 255
}

done_testing() {
    local rc=0
    if [ "$TAP_PLANNED" -lt 0 ]; then
        # No plan yet: print one now (TAP allows the plan at the end).
        echo "1..$TAP_RUN"
        [ "$TAP_RUN" -gt 0 ] || { diag "No tests run."; rc=1; }
    elif [ "$TAP_RUN" -ne "$TAP_PLANNED" ]; then
        diag "Looks like you planned $TAP_PLANNED tests but ran $TAP_RUN."
        rc=1
    fi
    if [ "$TAP_FAILED" -gt 0 ]; then
        diag "Looks like you failed $TAP_FAILED test(s) of $TAP_RUN run."
        rc=1
    fi
    return "$rc"
}
