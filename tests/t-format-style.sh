#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# t-format-style.sh: every C file we wrote is formatted as the committed .clang-format says,
# by clang-format-14 (Debian 12's; contrib/clang-format-all reformats them all).
#
#   1   clang-format-14 is installed (missing is a failure, not a skip: contrib/install-deps
#       installs it)
#   2   contrib/clang-format-all --list covers the C code of src/, src/pipeline/filters/, plugins/,
#       tools/, tests/ (with lib/, plugins/, fuzz/) and bench/
#   3-  one test point per file: clang-format would change nothing; on failure the first lines
#       of the diff it would apply
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=tests/lib/tap.sh
. "$SRCDIR/tests/lib/tap.sh"
cd "$SRCDIR" || exit 1
# clang-format-14 is the reference (Debian 12); on Debian 13, whose test set has clang-format-19
# instead, that one is used (contrib/install-deps): both give the committed layout on every file
# (where they differ, e.g. braced macros, the code is laid out by hand between
# /* clang-format off */ and /* clang-format on */)
CF=${CLANG_FORMAT:-clang-format-14}
command -v "$CF" >/dev/null 2>&1 || ! command -v clang-format-19 >/dev/null 2>&1 || CF=clang-format-19
mapfile -t FILES < <(contrib/clang-format-all --list)
plan $((2 + ${#FILES[@]}))

command -v "$CF" >/dev/null 2>&1
ok $? "$CF is installed" || diag "install it: contrib/install-deps --test (clang-format-14 on Debian 12, clang-format-19 on 13)"

problems=""
[ -f .clang-format ] || problems="$problems no-.clang-format"
for f in src/util/kts_conf.c src/util/kts_conf.h src/pipeline/filters/dedup.c plugins/write_kafka_ts.c \
    tools/kts-filter.c tests/t-conf.c tests/tap.h tests/lib/vl_same.h tests/plugins/kts_testgen.c \
    tests/fuzz/fuzz-conf.c bench/bench-filters.c; do
    printf '%s\n' "${FILES[@]}" | grep -qxF -- "$f" || problems="$problems missing:$f"
done
is "$problems" "" "the checked files: ${#FILES[@]} C files of src, plugins, tools, tests, bench"

for f in "${FILES[@]}"; do
    if ! command -v "$CF" >/dev/null 2>&1; then
        fail "$f: formatted as .clang-format says ($CF missing)"
        continue
    fi
    d=$("$CF" --style=file "$f" 2>&1 | diff -u --label "$f" --label "$f (clang-format)" "$f" -)
    ok $? "$f: formatted as .clang-format says" ||
        diag "contrib/clang-format-all would change it; first lines:" "$(head -n 24 <<<"$d")"
done
done_testing
