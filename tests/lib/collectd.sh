# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# tests/lib/collectd.sh: run the REAL collectd daemon (Debian collectd-core 5.12) in tests and
# benchmarks. Source it from bash:  . "$KTS_TOP_SRCDIR/tests/lib/collectd.sh"
#
# What it guarantees:
#  1. Everything lives under one `mktemp -d` directory ($COLLECTD_TMP), so tests can run in
#     parallel; it is removed at exit unless KTS_KEEP_TMP=1, the test exited with a status
#     other than 0 or one of its TAP assertions failed (tests/lib/tap.sh's or the minimal
#     TAP's below).
#  2. Every daemon is started as a child of the calling shell (`collectd -f`), its PID recorded;
#     it is stopped by that PID only: TERM, a bounded wait, then KILL.
#  3. An EXIT trap (chained in front of any trap already set, and on INT/TERM/HUP too) stops
#     every daemon still running, so a failing test never leaks one.
#  4. Our plugins are copied (collectd refuses symlinked .so files) into $COLLECTD_TMP/plugins;
#     stock plugins load from /usr/lib/collectd. Each group of LoadPlugin lines is preceded by
#     its own PluginDir line (PluginDir applies to the LoadPlugin lines after it).
#  5. Several daemons can run at once: each has a NAME (default "main") with its own BaseDir,
#     log file and PID.
#  6. When a daemon fails to start, collectd_start prints its log as TAP diagnostics and fails.
#  7. At exit, every *.log and *.stderr under $COLLECTD_TMP is copied into $KTS_LOG_ARCHIVE when
#     that names a directory (tests/run-suite sets it; tests/t-zz-secrets.sh greps the copies).
#
# API (NAME is optional everywhere and defaults to "main"):
#   collectd_conf_header [NAME]        print the common config head (Hostname, Interval, BaseDir,
#                                      TypesDB, logfile plugin to the daemon's log)
#   collectd_conf_stock PLUGIN...      print PluginDir /usr/lib/collectd + LoadPlugin lines
#   collectd_conf_ours PLUGIN...       copy PLUGIN.so from $KTS_PLUGIN_DIR or $KTS_TEST_PLUGIN_DIR
#                                      and print PluginDir $COLLECTD_TMP/plugins + LoadPlugin lines
#   collectd_conf_csv_reader NAME BOOTSTRAP   print the head of an aggregator's config: header,
#                                      the csv writer into $(collectd_dir NAME)/csv (StoreRates
#                                      false), read_kafka_ts, and its block opened with
#                                      bootstrap.servers; the caller prints the block's other
#                                      lines and "</Plugin>"
#   collectd_dir [NAME]                print the daemon's own directory (for DataDir, files …)
#   collectd_start CONFFILE [NAME]     start, wait for "Initialization complete"; 0 or 1
#                                      (refuses to run in a subshell: $(...), pipelines)
#   collectd_pid [NAME]                print the PID
#   collectd_logfile [NAME]            print the log file's path
#   collectd_wait_log REGEX [TIMEOUT] [NAME]   wait (default 30 s) for an ERE in the log; 0 or 1
#   collectd_log_has REGEX [NAME]      0 if the log has a line matching the ERE
#   collectd_log_count REGEX [NAME]    print the number of matching lines
#   collectd_cpu_seconds [NAME]        print utime+stime of the running daemon in seconds
#   collectd_stop [NAME] [TIMEOUT]     TERM, wait (default 30 s), KILL; sets COLLECTD_EXIT_STATUS
#                                      and COLLECTD_STOPPED_BY (TERM|KILL|gone); 0 only if it
#                                      exited by itself after TERM with status 0
#   collectd_stop_all                  stop every daemon still running (the EXIT trap does this)
#   collectd_dump_log [NAME]           print the log (and stderr) as "# " lines on stderr
#
# Environment: COLLECTD_BIN (default /usr/sbin/collectd), KTS_PLUGIN_DIR (our built plugins,
# build dir .libs), KTS_TEST_PLUGIN_DIR (default $KTS_TOP_BUILDDIR/tests/plugins/.libs),
# COLLECTD_INTERVAL (default 1), COLLECTD_LOGLEVEL (default info), COLLECTD_TYPESDB_EXTRA
# (space-separated extra types.db files), COLLECTD_STOCK_PLUGIN_DIR (default /usr/lib/collectd).
# COLLECTD_LOGLEVEL must be info or debug: collectd_start waits for an INFO line.

[ -z "${_COLLECTD_SH_LOADED:-}" ] || return 0
_COLLECTD_SH_LOADED=1

: "${COLLECTD_BIN:=/usr/sbin/collectd}"
: "${COLLECTD_STOCK_PLUGIN_DIR:=/usr/lib/collectd}"
: "${COLLECTD_INTERVAL:=1}"
: "${COLLECTD_LOGLEVEL:=info}"
: "${COLLECTD_TYPESDB:=/usr/share/collectd/types.db}"
if [ -z "${KTS_TEST_PLUGIN_DIR:-}" ] && [ -n "${KTS_TOP_BUILDDIR:-}" ]; then
    KTS_TEST_PLUGIN_DIR="$KTS_TOP_BUILDDIR/tests/plugins/.libs"
fi

declare -gA _COLLECTD_PID=()
COLLECTD_EXIT_STATUS=""
COLLECTD_STOPPED_BY=""

# Run once when sourced: the temp dir and the traps.
COLLECTD_TMP=$(mktemp -d "${TMPDIR:-/tmp}/kts-collectd.XXXXXX") || {
    echo "collectd.sh: mktemp failed" >&2
    exit 1
}
mkdir -p "$COLLECTD_TMP/plugins"

# Copies every *.log and *.stderr under $COLLECTD_TMP into $KTS_LOG_ARCHIVE (set by
# tests/run-suite) for tests/t-zz-secrets.sh.
_collectd_archive() {
    [ -n "${KTS_LOG_ARCHIVE:-}" ] && [ -d "$KTS_LOG_ARCHIVE" ] || return 0
    local dst f rel
    dst="$KTS_LOG_ARCHIVE/collectd.$(basename "$0").$$"
    while IFS= read -r -d '' f; do
        rel=${f#"$COLLECTD_TMP"/}
        mkdir -p "$dst/$(dirname "$rel")" && cp "$f" "$dst/$rel" 2>/dev/null
    done < <(find "$COLLECTD_TMP" -type f \( -name '*.log' -o -name '*.stderr' \) -print0 2>/dev/null)
    return 0
}

_collectd_cleanup() {
    local rc=$?
    collectd_stop_all
    _collectd_archive
    local failed=$((${TAP_FAILED:-0} + _COLLECTD_TAP_FAILED))
    if [ "${KTS_KEEP_TMP:-0}" = 1 ] || [ "$rc" -ne 0 ] || [ "$failed" -gt 0 ]; then
        echo "# collectd.sh: kept $COLLECTD_TMP (exit status $rc, $failed assertion(s) failed)" >&2
    else
        rm -rf "$COLLECTD_TMP"
    fi
    return "$rc"
}

# Puts CMD in front of whatever trap SIG already has (guarantee 3). CMD sees the status the
# shell is exiting with in $?, and so does the trap that was there before.
_collectd_trap_prepend() {
    local cmd=$1 sig=$2 prev=""
    local cur
    cur=$(trap -p "$sig")
    if [ -n "$cur" ]; then
        eval "set -- $cur" # trap -- 'CMD' SIG
        prev=$3
    fi
    case "$prev" in *"$cmd"*) return 0 ;; esac
    # shellcheck disable=SC2064
    trap "_collectd_st=\$?; (exit \$_collectd_st); $cmd; (exit \$_collectd_st)${prev:+; $prev}" "$sig"
}
_collectd_trap_prepend _collectd_cleanup EXIT
# A signal would end bash without running the EXIT trap: turn it into an exit, unless the
# caller already handles that signal (its handler is expected to exit).
for _collectd_sig in INT TERM HUP; do
    [ -n "$(trap -p "$_collectd_sig")" ] || trap "exit 129" "$_collectd_sig"
done
unset _collectd_sig

_collectd_name() { printf '%s' "${1:-main}"; }

collectd_dir() {
    local d
    d="$COLLECTD_TMP/$(_collectd_name "${1:-}")"
    mkdir -p "$d"
    printf '%s\n' "$d"
}

collectd_logfile() { printf '%s/collectd.log\n' "$(collectd_dir "${1:-}")"; }

collectd_pid() { printf '%s\n' "${_COLLECTD_PID[$(_collectd_name "${1:-}")]:-}"; }

collectd_conf_header() {
    local d t
    d=$(collectd_dir "${1:-}")
    cat <<EOF
# generated by tests/lib/collectd.sh
Hostname "kts-test"
FQDNLookup false
Interval $COLLECTD_INTERVAL
BaseDir "$d"
PIDFile "$d/collectd.pid"
TypesDB "$COLLECTD_TYPESDB"
EOF
    for t in ${COLLECTD_TYPESDB_EXTRA:-}; do
        printf 'TypesDB "%s"\n' "$t"
    done
    cat <<EOF
PluginDir "$COLLECTD_STOCK_PLUGIN_DIR"
LoadPlugin logfile
<Plugin logfile>
  LogLevel "$COLLECTD_LOGLEVEL"
  File "$d/collectd.log"
  Timestamp true
  PrintSeverity true
</Plugin>
EOF
}

collectd_conf_stock() {
    local p
    printf 'PluginDir "%s"\n' "$COLLECTD_STOCK_PLUGIN_DIR"
    for p in "$@"; do
        printf 'LoadPlugin %s\n' "$p"
    done
}

# Returns 1 (and says why on stderr) when a plugin is not built; the config is then incomplete
# and collectd_start will fail on it, so a test notices either way.
collectd_conf_ours() {
    local p dir rc=0 found
    printf 'PluginDir "%s"\n' "$COLLECTD_TMP/plugins"
    for p in "$@"; do
        found=""
        for dir in ${KTS_PLUGIN_DIR:-} ${KTS_TEST_PLUGIN_DIR:-}; do
            if [ -f "$dir/$p.so" ]; then
                found="$dir/$p.so"
                break
            fi
        done
        if [ -z "$found" ]; then
            echo "collectd.sh: $p.so not found in KTS_PLUGIN_DIR='${KTS_PLUGIN_DIR:-}'" \
                "KTS_TEST_PLUGIN_DIR='${KTS_TEST_PLUGIN_DIR:-}'" >&2
            rc=1
        else
            # cp -L: a copy, never a link; install atomically for parallel callers.
            cp -L "$found" "$COLLECTD_TMP/plugins/.$p.so.$$" &&
                mv -f "$COLLECTD_TMP/plugins/.$p.so.$$" "$COLLECTD_TMP/plugins/$p.so" || rc=1
        fi
        printf 'LoadPlugin %s\n' "$p"
    done
    return "$rc"
}

collectd_conf_csv_reader() {
    collectd_conf_header "$1"
    collectd_conf_stock csv
    collectd_conf_ours read_kafka_ts
    cat <<EOF
<Plugin csv>
  DataDir "$(collectd_dir "$1")/csv"
  StoreRates false
</Plugin>
<Plugin read_kafka_ts>
  Property "bootstrap.servers" "$2"
EOF
}

collectd_dump_log() {
    local d
    d=$(collectd_dir "${1:-}")
    {
        echo "# ---- collectd log ($d)"
        [ -f "$d/collectd.log" ] && sed 's/^/#   /' "$d/collectd.log"
        if [ -s "$d/collectd.stderr" ]; then
            echo "# ---- collectd stdout/stderr"
            sed 's/^/#   /' "$d/collectd.stderr"
        fi
    } >&2
}

# 0 while the process exists and is not a zombie.
_collectd_alive() {
    local pid=$1 state
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

collectd_start() {
    local conf=$1 name d pid
    name=$(_collectd_name "${2:-}")
    d=$(collectd_dir "$name")
    if [ "$BASHPID" != "$$" ]; then
        # In $(...) or a pipeline the PID and the EXIT trap would be the subshell's: the daemon
        # would outlive it unseen (guarantees 2 and 3).
        echo "# collectd_start: called in a subshell; call it from the test's own shell" >&2
        return 1
    fi
    if _collectd_alive "${_COLLECTD_PID[$name]:-}"; then
        echo "# collectd_start: $name is already running (PID ${_COLLECTD_PID[$name]})" >&2
        return 1
    fi
    if [ ! -x "$COLLECTD_BIN" ]; then
        echo "# collectd_start: COLLECTD_BIN='$COLLECTD_BIN' is not executable" >&2
        return 1
    fi
    "$COLLECTD_BIN" -f -C "$conf" >"$d/collectd.stderr" 2>&1 </dev/null &
    pid=$!
    _COLLECTD_PID[$name]=$pid
    if ! collectd_wait_log 'Initialization complete' "${COLLECTD_START_TIMEOUT:-30}" "$name"; then
        echo "# collectd_start: $name (PID $pid) did not complete initialization" >&2
        collectd_dump_log "$name"
        collectd_stop "$name" 5 >/dev/null 2>&1
        return 1
    fi
    return 0
}

collectd_log_has() {
    local f
    f=$(collectd_logfile "${2:-}")
    [ -f "$f" ] && grep -qE -- "$1" "$f"
}

collectd_log_count() {
    local f
    f=$(collectd_logfile "${2:-}")
    if [ -f "$f" ]; then grep -cE -- "$1" "$f"; else echo 0; fi
}

# Polls every 0.1 s. Fails early when the daemon has died (after one last look at the log).
collectd_wait_log() {
    local re=$1 timeout=${2:-30} name pid deadline
    name=$(_collectd_name "${3:-}")
    pid=${_COLLECTD_PID[$name]:-}
    deadline=$((SECONDS + timeout))
    while :; do
        collectd_log_has "$re" "$name" && return 0
        if ! _collectd_alive "$pid"; then
            collectd_log_has "$re" "$name" && return 0
            echo "# collectd_wait_log: $name (PID ${pid:-none}) is not running; no /$re/" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "# collectd_wait_log: no /$re/ in $name's log within ${timeout} s" >&2
            return 1
        fi
        sleep 0.1
    done
}

collectd_cpu_seconds() {
    local pid stat
    pid=$(collectd_pid "${1:-}")
    stat=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ -n "$stat" ] || return 1
    # After "(comm) ": field 3 (state) is word 1, so utime (14) and stime (15) are words 12, 13.
    set -- $stat
    awk -v u="${12}" -v s="${13}" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f\n", (u + s) / hz }'
}

collectd_stop() {
    local name timeout pid deadline
    name=$(_collectd_name "${1:-}")
    timeout=${2:-30}
    pid=${_COLLECTD_PID[$name]:-}
    COLLECTD_EXIT_STATUS=""
    COLLECTD_STOPPED_BY=""
    if [ -z "$pid" ]; then
        echo "# collectd_stop: $name was never started" >&2
        return 1
    fi
    if _collectd_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        COLLECTD_STOPPED_BY=TERM
        deadline=$((SECONDS + timeout))
        while _collectd_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.1
        done
        if _collectd_alive "$pid"; then
            echo "# collectd_stop: $name (PID $pid) still running after TERM + ${timeout} s: KILL" >&2
            kill -KILL "$pid" 2>/dev/null
            COLLECTD_STOPPED_BY=KILL
        fi
    else
        COLLECTD_STOPPED_BY=gone
    fi
    # Our child: wait reaps it and gives its exit status (128+N for signal N).
    wait "$pid" 2>/dev/null
    COLLECTD_EXIT_STATUS=$?
    unset "_COLLECTD_PID[$name]"
    echo "# collectd_stop: $name (PID $pid) stopped by $COLLECTD_STOPPED_BY, exit status $COLLECTD_EXIT_STATUS" >&2
    [ "$COLLECTD_STOPPED_BY" = TERM ] && [ "$COLLECTD_EXIT_STATUS" -eq 0 ]
}

collectd_stop_all() {
    local name
    for name in "${!_COLLECTD_PID[@]}"; do
        collectd_stop "$name" 30 || true
    done
}

# ---------------------------------------------------------------- minimal TAP
# Until tests/lib/tap.sh exists, collectd tests use these (prefixed, so they cannot clash).
_COLLECTD_TAP_N=0
_COLLECTD_TAP_FAILED=0
collectd_tap_plan() { echo "1..$1"; }
collectd_tap_ok() { # COND-STATUS DESCRIPTION: `collectd_tap_ok $? "text"` or a command's status
    _COLLECTD_TAP_N=$((_COLLECTD_TAP_N + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $_COLLECTD_TAP_N - $2"
    else
        echo "not ok $_COLLECTD_TAP_N - $2"
        _COLLECTD_TAP_FAILED=$((_COLLECTD_TAP_FAILED + 1))
    fi
}
collectd_tap_is() { # GOT WANT DESCRIPTION
    if [ "$1" = "$2" ]; then
        collectd_tap_ok 0 "$3"
    else
        collectd_tap_ok 1 "$3"
        echo "#   got:  '$1'" >&2
        echo "#   want: '$2'" >&2
    fi
}
collectd_tap_diag() { echo "# $*" >&2; }
# Exit status for the end of a test: 0 only if every test passed.
collectd_tap_status() { [ "$_COLLECTD_TAP_FAILED" -eq 0 ]; }
