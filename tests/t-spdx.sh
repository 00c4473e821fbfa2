#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# t-spdx.sh: the project's licence (MIT) is stated in the tree and on every file we wrote.
#
#   1   contrib/spdx-check --list covers every kind of file we write (C, headers, shell and
#       extensionless scripts, Python, Java, POD, Makefile.am, configure.ac, pom.xml,
#       debian/rules, collectd configurations) and none of the exclusions (licence, prose,
#       images, test data and golden outputs, fuzzing corpus, third-party data)
#   2   contrib/spdx-check: every listed file has "SPDX-License-Identifier: MIT" in its first
#       three lines (the files lacking it are listed; fix with contrib/spdx-check --add)
#   3   C sources and headers have it as line 1, exactly "/* SPDX-License-Identifier: MIT */"
#   4   scripts with a shebang have it on line 2, as "# SPDX-License-Identifier: MIT"
#   5   LICENSE is the MIT licence of "The collectd-kafka-ts authors", and the Debian copyright
#       file (DEP-5) says MIT for the tree and for the NAB data of bench/data/nab/
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=tests/lib/tap.sh
. "$SRCDIR/tests/lib/tap.sh"
plan 5
cd "$SRCDIR" || bail_out "cannot cd to $SRCDIR"
CHECK=contrib/spdx-check

list=$("$CHECK" --list)
problems=""
for f in src/util/kts_conf.c src/util/kts_conf.h src/pipeline/filters/dedup.c plugins/write_kafka_ts.c \
    tools/kts-filter.c tests/tap.h tests/t-spdx.sh tests/lib/tap.sh tests/run-suite run-tests \
    .ci/run autogen.sh Makefile.am configure.ac contrib/debian/rules contrib/kafka/pom.xml \
    contrib/kafka/kafka-local contrib/spdx-check docs/collectd-kafka-ts.pod \
    tests/java/Murmur2Partition.java tests/data/filters/gen.py contrib/examples/agent.conf; do
    grep -qxF -- "$f" <<<"$list" || problems="$problems missing:$f"
done
bad=$(grep -E '^(LICENSE|.*\.md|.*\.png|.*\.csv|tests/data/.*\.(json|vl|expect|conf|tsv)|tests/fuzz/corpus/.*|bench/data/.*)$' <<<"$list" | head -n 5 | tr '\n' ' ')
[ -z "$bad" ] || problems="$problems excluded-but-listed:$bad"
n=$(grep -c . <<<"$list")
[ "$n" -ge 100 ] || problems="$problems only-$n-files"
is "$problems" "" "contrib/spdx-check --list: $n files, every kind we write, none of the exclusions"

out=$("$CHECK" 2>&1)
st=$?
ok "$st" "every file we wrote carries SPDX-License-Identifier: MIT" ||
    diag "lacking (add with contrib/spdx-check --add):" "$(head -n 40 <<<"$out")"

bad=""
while IFS= read -r f; do
    case $f in *.c | *.h) ;; *) continue ;; esac
    [ "$(head -n 1 -- "$f")" = "/* SPDX-License-Identifier: MIT */" ] || bad="$bad $f"
done <<<"$list"
is "$bad" "" "C sources and headers: line 1 is /* SPDX-License-Identifier: MIT */"

bad=""
while IFS= read -r f; do
    case $(head -c 2 -- "$f") in '#!') ;; *) continue ;; esac
    [ "$(sed -n 2p -- "$f")" = "# SPDX-License-Identifier: MIT" ] || bad="$bad $f"
done <<<"$list"
is "$bad" "" "scripts with a shebang: line 2 is the SPDX comment"

problems=""
head -n 1 LICENSE | grep -qx 'MIT License' || problems="$problems LICENSE-not-MIT"
grep -qx 'Copyright (c) 2026 The collectd-kafka-ts authors' LICENSE || problems="$problems LICENSE-holder"
grep -q 'Permission is hereby granted, free of charge' LICENSE || problems="$problems LICENSE-text"
copyright=contrib/debian/copyright
head -n 1 "$copyright" | grep -qx 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' ||
    problems="$problems copyright-not-DEP-5"
awk '/^Files: \*$/ { f = 1; next } f && /^License:/ { print; exit }' "$copyright" | grep -qx 'License: MIT' ||
    problems="$problems copyright-Files-*-not-MIT"
awk '/^Files: bench\/data\/nab\/\*$/ { f = 1; next } f && /^License:/ { print; exit }' "$copyright" |
    grep -qx 'License: MIT' || problems="$problems copyright-nab-not-MIT"
grep -q '^Copyright: 2014-2024 Numenta Inc\.$' "$copyright" || problems="$problems copyright-nab-holder"
grep -q '^License: MIT$' "$copyright" && grep -q '^ Permission is hereby granted' "$copyright" ||
    problems="$problems copyright-licence-text"
grep -qi 'unspecified\|localhost' "$copyright" contrib/debian/control contrib/debian/changelog &&
    problems="$problems placeholder-left"
is "$problems" "" "LICENSE is MIT (The collectd-kafka-ts authors); DEP-5 copyright: MIT, NAB data MIT"
done_testing
