#!/usr/bin/env bash
# Fuzz smoke run (docs/RELIABILITY.md section 5): builds the libFuzzer targets of tests/fuzz/
# with clang-14 (ASan + UBSan + LeakSanitizer), replays every committed seed and regression
# input once, then fuzzes each target for KTS_FUZZ_SMOKE_SECONDS (default 15) seconds.
# Any crash, leak, sanitizer report, timeout or failed oracle fails the test. clang-14 missing
# is a failure, not a skip: CI installs it (contrib/install-deps). The 10-minute runs are
# tests/fuzz/run TARGET 600, on demand.
# shellcheck source=tests/lib/tap.sh
. "$KTS_TOP_SRCDIR/tests/lib/tap.sh"
FUZZ="$KTS_TOP_SRCDIR/tests/fuzz"
export KTS_FUZZ_BUILD="$KTS_TOP_BUILDDIR/fuzz-smoke"
secs=${KTS_FUZZ_SMOKE_SECONDS:-15}
targets="decode-ts decode-collectd conf"

plan 8

if ! ok "$(command -v clang-14 >/dev/null; echo $?)" "clang-14 is installed"; then
    diag "clang-14 not found: install clang-14 and libfuzzer-14-dev (contrib/install-deps)"
fi
# A fresh work corpus every run: the result depends only on the committed seeds.
rm -rf "$KTS_FUZZ_BUILD/corpus" "$KTS_FUZZ_BUILD/artifacts" "$KTS_FUZZ_BUILD/log"
run_ok "tests/fuzz/build: the three targets build with clang-14" "$FUZZ/build" "$KTS_FUZZ_BUILD"

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
