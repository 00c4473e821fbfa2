#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# t-install-deps.sh: contrib/install-deps's options, its package names by Debian release, and
# that every outside command the build, the demo and the tests run comes from a package of the
# right set (what a bare `debootstrap --variant=minbase` root lacks: procps for pgrep, perl for
# prove, git …). Installs nothing (--list).
#
#   1   --help exits 0 and names every option
#   2   an unknown option exits 2, naming it and the allowed ones
#   3   a release other than bookworm and trixie (or none) is an error naming it and those two
#   4   bookworm: the runtime set is exactly collectd-core, librdkafka1, libyajl2; clang-14 with
#       libfuzzer-14-dev and libclang-rt-14-dev (libFuzzer's runtime) and OpenJDK 17
#   5   trixie: clang-19, libfuzzer-19-dev, libclang-rt-19-dev, OpenJDK 21, librrd8t64; no 14/17
#   6   no set named = all four
#   7-  one point per command (and collectd's rrdtool plugin's librrd): the package that owns
#       it on this machine is in its set, or a direct dependency of a package of its set
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=tests/lib/tap.sh
. "$SRCDIR/tests/lib/tap.sh"
D="$SRCDIR/contrib/install-deps"
W=$(mktemp -d "${TMPDIR:-/tmp}/kts-install-deps.XXXXXX") || bail_out "mktemp failed"
trap 'rm -rf "$W"' EXIT

# command set: the commands of the build (configure, make, pod2man), contrib/demo and
# contrib/kafka/kafka-local, and the tests; python3 also runs the tests' helpers.
CMDS=(
    "collectd runtime"
    "autoreconf build" "automake build" "libtoolize build" "pkg-config build" "pod2man build"
    "java demo" "mvn demo" "kcat demo" "rrdtool demo" "python3 demo"
    "javac test" "valgrind test" "openssl test" "pgrep test" "prove test" "podchecker test"
    "git test" "dpkg-buildpackage test" "fakeroot test" "dh test" "carbon-cache test"
    "whisper-fetch test"
)
plan $((6 + ${#CMDS[@]} + 2))

out=$("$D" --help 2>&1)
st=$?
miss=""
for o in --runtime --build --demo --test --all --list; do
    grep -q -- "$o" <<<"$out" || miss="$miss $o"
done
is "$st/${miss# }" "0/" "--help exits 0 and names every option"

"$D" --bogus >/dev/null 2>"$W/err"
st=$?
is "$st/$(head -n 1 "$W/err")" \
    "2/install-deps: unknown argument '--bogus' (allowed: --runtime, --build, --demo, --test, --all, --list, --help)" \
    "an unknown option exits 2 naming it and the allowed ones"

printf 'ID=ubuntu\nVERSION_CODENAME=noble\n' >"$W/noble"
printf 'ID=debian\n' >"$W/none"
KTS_OS_RELEASE=$W/noble "$D" --list >/dev/null 2>"$W/err1"
st1=$?
KTS_OS_RELEASE=$W/none "$D" --list >/dev/null 2>"$W/err2"
st2=$?
[ "$st1" -eq 1 ] && [ "$st2" -eq 1 ] &&
    grep -q "release 'noble' in $W/noble is not supported (allowed: bookworm = Debian 12, trixie = Debian 13)" "$W/err1" &&
    grep -q "release '(no VERSION_CODENAME)'" "$W/err2"
ok $? "an unknown release (noble, none) is an error naming it and the supported ones" ||
    diag "exit $st1, $st2" "$(cat "$W/err1" "$W/err2")"

list() { # OS-RELEASE-CODENAME ARGS...: the packages, space-separated
    local c=$1
    shift
    printf 'VERSION_CODENAME=%s\n' "$c" >"$W/os-$c"
    KTS_OS_RELEASE=$W/os-$c "$D" --list "$@" | tr '\n' ' ' | sed 's/ $//'
}
has() { # LIST PKG...: status 0 when every PKG is a word of LIST
    local l=" $1 " p
    shift
    for p in "$@"; do [[ $l == *" $p "* ]] || return 1; done
}
rt=$(list bookworm --runtime)
bw=$(list bookworm --all)
[ "$rt" = "collectd-core librdkafka1 libyajl2" ] &&
    has "$bw" clang-14 libfuzzer-14-dev libclang-rt-14-dev openjdk-17-jre-headless openjdk-17-jdk-headless librrd8 procps
ok $? "bookworm: runtime = collectd-core librdkafka1 libyajl2; clang-14 + libfuzzer-14-dev + libclang-rt-14-dev, OpenJDK 17" ||
    diag "runtime: $rt" "all: $bw"
tx=$(list trixie --all)
has "$tx" clang-19 libfuzzer-19-dev libclang-rt-19-dev openjdk-21-jre-headless openjdk-21-jdk-headless librrd8t64 &&
    ! grep -qE -- '-(14|17)-|librrd8( |$)' <<<"$tx"
ok $? "trixie: clang-19 + libfuzzer-19-dev + libclang-rt-19-dev, OpenJDK 21, librrd8t64, nothing of bookworm's" ||
    diag "all: $tx"
is "$(list bookworm)" "$bw" "no set named installs all four (--all)"

# owner PATH: the package that owns PATH (or its real path: alternatives, /lib → /usr/lib)
owner() {
    local o
    o=$(dpkg -S "$1" 2>/dev/null | head -n 1 | cut -d: -f1)
    [ -n "$o" ] || o=$(dpkg -S "$(readlink -f "$1")" 2>/dev/null | head -n 1 | cut -d: -f1)
    printf '%s' "$o"
}
codename=$(sed -n 's/^VERSION_CODENAME=["'\'']\{0,1\}\([^"'\'']*\).*/\1/p' /etc/os-release 2>/dev/null | head -n 1)
# in_set SET PKG: PKG is in SET or a direct dependency of a package of SET
in_set() {
    local pkgs p deps
    pkgs=$(KTS_OS_RELEASE=/etc/os-release "$D" --list "--$1" 2>/dev/null | tr '\n' ' ')
    has "$pkgs" "$2" && return 0
    for p in $pkgs; do
        deps=$(dpkg-query -W -f='${Depends}, ${Pre-Depends}' "$p" 2>/dev/null |
            tr ',|' '\n\n' | sed 's/([^)]*)//g; s/:any//g' | awk '{ print $1 }' | tr '\n' ' ')
        has "$deps" "$2" && return 0
    done
    return 1
}
for e in "${CMDS[@]}"; do
    set -- $e
    cmd=$1 set=$2
    # Debian's own (a machine may put others first on the PATH, e.g. pyenv's python3)
    path=""
    for d in /usr/bin /usr/sbin /bin /sbin; do [ -x "$d/$cmd" ] && { path=$d/$cmd; break; }; done
    [ -n "$path" ] || path=$(command -v "$cmd")
    pkg=""
    [ -z "$path" ] || pkg=$(owner "$path")
    [ -n "$pkg" ] && in_set "$set" "$pkg"
    ok $? "$cmd (${path:-not found}) comes from ${pkg:-no package}, in the $set set ($codename)" ||
        diag "contrib/install-deps --list --$set: $(KTS_OS_RELEASE=/etc/os-release "$D" --list "--$set" 2>&1 | tr '\n' ' ')"
done
lib=$(ldd /usr/lib/collectd/rrdtool.so 2>/dev/null | awk '$1 ~ /^librrd\.so/ { print $3 }')
pkg=""
[ -z "$lib" ] || pkg=$(owner "$lib")
[ -n "$pkg" ] && in_set demo "$pkg"
ok $? "collectd's rrdtool plugin finds ${lib:-no librrd} from ${pkg:-no package}, in the demo set"
# libFuzzer's runtime: tests/fuzz/find-cc links a target with the clang of the test set
cc=$("$SRCDIR/tests/fuzz/find-cc" 2>"$W/cc.err")
st=$?
[ "$st" -eq 0 ] && in_set test "$cc"
ok $? "tests/fuzz/find-cc links a libFuzzer target with ${cc:-no clang}, of the test set" ||
    diag "$(cat "$W/cc.err")"
done_testing
