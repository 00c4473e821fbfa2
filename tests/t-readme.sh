#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# t-readme.sh: README.md's "Build and install" and "Without make install" instructions work as
# written, and ./run-tests copes with a tree built the other way (configured in place).
#
#   1   the "Build and install" block builds out of tree (mkdir build && cd build, ../configure)
#       and never runs ./configure in the source tree
#   2   in a copy of the source tree (no git), that block's commands but contrib/install-deps,
#       make and make install (./autogen.sh, mkdir build && cd build, ../configure …) succeed
#   3   ./configure in the copy itself (in place) succeeds as well
#   4   ./run-tests --prepare-only in that in-place configured copy does not refuse: it prints
#       .build/src, a clean copy (no config.status, no Makefile, no build/)
#   5   autoconf accepts that clean copy: ../configure from it in a new build directory
#   6   the copy as a git checkout: --prepare-only copies git's file list (tracked, untracked
#       but not ignored): again no in-place build product, and configure regenerated
#   7   the README's "Without make install" configuration, with its PluginDir pointed at this
#       build's .libs and the suite's broker, is accepted by the real collectd: collectd -T
#       (one read of every plugin, then shutdown) exits 0, write_kafka_ts loaded from .libs
#   8   the three plugins in .libs are regular files, not links (collectd refuses links)
# Runs no code of a sanitizer build: ./run-tests leaves it out of the asan phase.
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILDDIR=${KTS_TOP_BUILDDIR:-$(pwd)}
# shellcheck source=tests/lib/tap.sh
. "$SRCDIR/tests/lib/tap.sh"
W=$(mktemp -d "${TMPDIR:-/tmp}/kts-readme.XXXXXX") || bail_out "mktemp failed"
trap 'rm -rf "$W"' EXIT
plan 8

# block AFTER-ERE: the first fenced code block after the first README line matching AFTER-ERE
block() {
    awk -v re="$1" '
        !seen && $0 ~ re { seen = 1; next }
        seen && !in_block && /^```/ { in_block = 1; next }
        in_block && /^```/ { exit }
        in_block { print }' "$SRCDIR/README.md"
}

# ------------------------------------------------------------------ 1 the Install block
INSTALL=$(block '^### Build and install')
cmds=$(printf '%s\n' "$INSTALL" | sed 's/[[:space:]]*#.*$//' | sed '/^[[:space:]]*$/d')
printf '%s\n' "$cmds" | grep -qx 'mkdir build && cd build' &&
    printf '%s\n' "$cmds" | grep -q '^\.\./configure' &&
    ! printf '%s\n' "$cmds" | grep -q '^\./configure'
ok $? "README Build and install: out of tree (mkdir build && cd build, ../configure)" ||
    diag "the block:" "$INSTALL"

# ------------------------------------------------------------------ 2-3 run it in a copy
C=$W/tree
mkdir -p "$C"
(
    cd "$SRCDIR" || exit 1
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
            tar --null -T - -cf -
    else
        tar --exclude=./.git --exclude=./.build --exclude=./build --exclude=./demo-out \
            --exclude=./contrib/kafka/.cache --exclude=./contrib/kafka/.run -cf - .
    fi
) | tar -C "$C" -xf - || bail_out "cannot copy the source tree into $C"
# the commands but the installs and the (long) build
run=$(printf '%s\n' "$cmds" | grep -vE '^(contrib/install-deps|make|sudo)([[:space:]]|$)')
(cd "$C" && set -e && eval "$run") >"$W/install.out" 2>&1
ok $? "README Build and install ($(printf '%s' "$run" | tr '\n' ';' | sed 's/;/; /g')) in a copy" ||
    diag "$(tail -n 30 "$W/install.out")"
(cd "$C" && ./configure) >"$W/inplace.out" 2>&1 && [ -f "$C/config.status" ]
ok $? "./configure in the source tree itself (in place) works too" ||
    diag "$(tail -n 30 "$W/inplace.out")"

# ------------------------------------------------------------------ 4-5 run-tests copes
got=$(cd "$C" && ./run-tests --prepare-only 2>"$W/prep.err")
st=$?
[ "$st" -eq 0 ] && [ "$got" = "$C/.build/src" ] && [ -x "$got/configure" ] &&
    [ ! -e "$got/config.status" ] && [ ! -e "$got/Makefile" ] && [ ! -e "$got/build" ]
ok $? "./run-tests --prepare-only in the in-place configured tree: a clean copy in .build/src" ||
    diag "exit $st, printed '$got'" "$(cat "$W/prep.err")"
mkdir -p "$W/vpath" && (cd "$W/vpath" && "$got/configure") >"$W/vpath.out" 2>&1
ok $? "autoconf configures a build directory from that copy" ||
    diag "$(tail -n 20 "$W/vpath.out")"

# ------------------------------------------------------------------ 6 the same as a git checkout
if command -v git >/dev/null; then
    (cd "$C" && git init -q && git add -A && git -c user.name=t -c user.email=t@localhost commit -qm t) \
        >"$W/git.out" 2>&1
    got=$(cd "$C" && ./run-tests --prepare-only 2>"$W/prep2.err")
    st=$?
    [ "$st" -eq 0 ] && [ "$got" = "$C/.build/src" ] && [ -x "$got/configure" ] &&
        [ ! -e "$got/config.status" ] && [ ! -e "$got/Makefile" ] && [ ! -e "$got/build" ] &&
        [ ! -e "$got/.git" ] && [ -f "$got/src/format/kts_format.c" ]
    ok $? "the same tree as a git checkout: --prepare-only copies git's file list only" ||
        diag "exit $st, printed '$got'" "$(cat "$W/git.out" "$W/prep2.err")"
else
    fail "git is installed (contrib/install-deps --test)"
fi

# ------------------------------------------------------------------ 7-8 PluginDir = build/.libs
CONF=$(block '^[*][*]Without `make install`[*][*]')
D=$W/collectd
mkdir -p "$D"
{
    cat <<EOF
Hostname "kts-readme"
FQDNLookup false
Interval 1
BaseDir "$D"
PIDFile "$D/collectd.pid"
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "$D/collectd.log"
  PrintSeverity true
</Plugin>
EOF
    printf '%s\n' "$CONF" |
        sed -E "s|^PluginDir \"[^\"]*\"|PluginDir \"$BUILDDIR/.libs\"|
                s|127\\.0\\.0\\.1:9092|${KTS_BOOTSTRAP:-127.0.0.1:9}|
                s|^(  Topic )\"collectd\"|\\1\"kts-readme-$$\"|"
} >"$D/collectd.conf"
timeout 120 "${COLLECTD_BIN:-/usr/sbin/collectd}" -T -C "$D/collectd.conf" >"$D/stderr" 2>&1
st=$?
[ "$st" -eq 0 ] && printf '%s\n' "$CONF" | grep -q '^PluginDir ".*/build/\.libs"' &&
    grep -q 'plugin "write_kafka_ts" successfully loaded' "$D/collectd.log" &&
    ! grep -q '\[error\]' "$D/collectd.log"
ok $? "README's PluginDir configuration with $BUILDDIR/.libs: collectd -T exits 0, write_kafka_ts loaded" ||
    diag "exit $st; configuration:" "$(cat "$D/collectd.conf")" "log:" "$(cat "$D/collectd.log" "$D/stderr" 2>/dev/null | tail -n 30)"
links=""
for p in write_kafka_ts read_kafka_ts ts_filter; do
    [ -f "$BUILDDIR/.libs/$p.so" ] && [ ! -L "$BUILDDIR/.libs/$p.so" ] || links="$links $p.so"
done
is "${links# }" "" "the plugins in .libs are regular files (collectd refuses links)"
done_testing
