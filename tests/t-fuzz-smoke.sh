#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fuzz smoke run (docs/RELIABILITY.md section 5): builds the libFuzzer targets of tests/fuzz/
# with the installed clang whose libFuzzer runtime is present (tests/fuzz/find-cc: clang-14 on
# Debian 12, clang-19 on Debian 13; ASan + UBSan + LeakSanitizer), replays every committed seed
# and regression input once, then fuzzes each target for KTS_FUZZ_SMOKE_SECONDS (default 15)
# seconds. Any crash, leak, sanitizer report, timeout or failed oracle fails the test. No such
# clang is a failure, not a skip: CI installs it (contrib/install-deps --test). The 10-minute
# runs are tests/fuzz/run TARGET 600, on demand.
# shellcheck source=tests/lib/tap.sh
. "$KTS_TOP_SRCDIR/tests/lib/tap.sh"
FUZZ="$KTS_TOP_SRCDIR/tests/fuzz"
export KTS_FUZZ_BUILD="$KTS_TOP_BUILDDIR/fuzz-smoke"
secs=${KTS_FUZZ_SMOKE_SECONDS:-15}
targets="decode-ts decode-collectd conf state-record"

plan 10

cc=$("$FUZZ/find-cc" 2>"$KTS_TOP_BUILDDIR/fuzz-find-cc.err")
ok $? "a clang that links libFuzzer targets is installed (${cc:-none})" ||
    diag "$(cat "$KTS_TOP_BUILDDIR/fuzz-find-cc.err")"
export KTS_FUZZ_CC=${cc:-clang}
# A fresh work corpus every run: the result depends only on the committed seeds.
rm -rf "$KTS_FUZZ_BUILD/corpus" "$KTS_FUZZ_BUILD/artifacts" "$KTS_FUZZ_BUILD/log"
run_ok "tests/fuzz/build: the four targets build with ${cc:-clang}" "$FUZZ/build" "$KTS_FUZZ_BUILD"

# Every committed input once (seeds and regression inputs of earlier findings): libFuzzer
# runs the files given and exits non-zero on the first crash, leak or sanitizer report.
for t in $targets; do
    files=$(ls "$FUZZ/corpus/$t" | wc -l)
    run_ok "fuzz-$t: all $files committed inputs replay cleanly" \
        env ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$KTS_FUZZ_BUILD/fuzz-$t" -detect_leaks=1 -timeout=10 "$FUZZ/corpus/$t"/*
done
for t in $targets; do
    out=$("$FUZZ/run" "$t" "$secs" 2>&1)
    rc=$?
    ok "$rc" "fuzz-$t: $secs s from the seed corpus without a finding" ||
        diag "$(printf '%s\n' "$out" | tail -n 60)"
    [ "$rc" -eq 0 ] && note "$out"
done
