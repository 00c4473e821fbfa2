# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# tests/lib/carbon.sh: a REAL carbon-cache (Debian's graphite-carbon) for tests and benchmarks.
# Source it:  . "$KTS_TOP_SRCDIR/tests/lib/carbon.sh"
#
#   carbon_start DIR STEP || …   # carbon.conf + storage-schemas.conf in DIR, whisper in DIR/whisper
#   … write_graphite to 127.0.0.1:$CARBON_LINE_PORT …
#   carbon_stop                  # TERM by PID; CARBON_STATUS = exit status (143: see 4)
#
# What it guarantees:
#  1. Everything lives in DIR: config, PID file, whisper files (DIR/whisper), storage; logs go
#     to DIR/carbon.out (twistd --nodaemon logs to stdout). Nothing under /etc or /var is read.
#  2. The line receiver listens on 127.0.0.1 only, on a free port (CARBON_LINE_PORT); the
#     cache query port is free too and on 127.0.0.1; pickle and UDP receivers are off. If a port
#     was taken between choosing and binding, carbon_start tries again with new ports (3 times).
#  3. Every metric gets one archive with STEP-second slots for a day (retentions STEP s:1d), so
#     points STEP apart each own one slot; no rate limits on creates or updates; no tags, no
#     carbon self-metrics.
#  4. carbon-cache runs as a child of the calling shell (CARBON_PID, = the PID file's content);
#     carbon_stop sends TERM to that PID only, waits up to 30 s, then KILL. After an orderly
#     shutdown twistd re-raises the signal that stopped it, so a clean stop exits with 143.
#  5. An EXIT trap (in front of any trap already set) stops it, so a failing test never leaks it.
# carbon_start returns 0 once carbon logged that the line receiver listens, 1 otherwise (the
# last lines of its output as "# " diagnostics on stderr). Environment: CARBON_BIN (default
# /usr/bin/carbon-cache). Debian's own unit runs the same entry point
# (`carbon-cache --config=/etc/carbon/carbon.conf --pidfile=… --logdir=… start`, forking).

[ -z "${_KTS_CARBON_SH_LOADED:-}" ] || return 0
_KTS_CARBON_SH_LOADED=1

: "${CARBON_BIN:=/usr/bin/carbon-cache}"
CARBON_PID=""
# shellcheck disable=SC2034 # for the caller
CARBON_STATUS=""
CARBON_LINE_PORT=""

_carbon_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

carbon_stop() {
    CARBON_STATUS=""
    [ -n "$CARBON_PID" ] || return 0
    kill -TERM "$CARBON_PID" 2>/dev/null
    local _
    for _ in $(seq 300); do
        kill -0 "$CARBON_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -KILL "$CARBON_PID" 2>/dev/null; then
        echo "# carbon_stop: carbon-cache (PID $CARBON_PID) still running after TERM + 30 s: KILL" >&2
    fi
    wait "$CARBON_PID" 2>/dev/null
    # shellcheck disable=SC2034 # for the caller
    CARBON_STATUS=$?
    CARBON_PID=""
}

_carbon_start_once() {
    local dir=$1 step=$2 query_port _
    CARBON_LINE_PORT=$(_carbon_free_port)
    query_port=$(_carbon_free_port)
    cat >"$dir/carbon.conf" <<EOF
[cache]
STORAGE_DIR = $dir/storage
LOCAL_DATA_DIR = $dir/whisper
CONF_DIR = $dir
LOG_DIR = $dir/log
PID_DIR = $dir
USER =
DATABASE = whisper
ENABLE_LOGROTATION = False
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = 100000
MAX_CREATES_PER_MINUTE = 100000
MIN_TIMESTAMP_RESOLUTION = 0
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = $CARBON_LINE_PORT
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_PORT = 0
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = $query_port
ENABLE_TAGS = False
CARBON_METRIC_INTERVAL = 0
LOG_UPDATES = False
LOG_CREATES = True
LOG_CACHE_HITS = False
EOF
    printf '[kts]\npattern = .*\nretentions = %ss:1d\n' "$step" >"$dir/storage-schemas.conf"
    "$CARBON_BIN" --config="$dir/carbon.conf" --pidfile="$dir/carbon.pid" --nodaemon start \
        >"$dir/carbon.out" 2>&1 </dev/null &
    CARBON_PID=$!
    for _ in $(seq 600); do
        grep -q "CarbonReceiverFactory starting on $CARBON_LINE_PORT\$" "$dir/carbon.out" && return 0
        kill -0 "$CARBON_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "# carbon_start: carbon-cache did not start:" >&2
    tail -n 5 "$dir/carbon.out" | sed 's/^/#   /' >&2
    carbon_stop
    return 1
}

carbon_start() {
    local dir=$1 step=$2 _
    if [ "$BASHPID" != "$$" ]; then
        echo "# carbon_start: called in a subshell; call it from the test's own shell" >&2
        return 1
    fi
    mkdir -p "$dir/whisper" "$dir/storage" "$dir/log" || return 1
    for _ in 1 2 3; do
        _carbon_start_once "$dir" "$step" && return 0
    done
    return 1
}

# Puts carbon_stop in front of whatever EXIT trap is set, keeping the exit status.
_carbon_trap_prepend() {
    local prev="" cur
    local -a parts
    cur=$(trap -p EXIT)
    if [ -n "$cur" ]; then
        eval "parts=($cur)" # trap -- 'CMD' EXIT
        prev=${parts[2]}
    fi
    case "$prev" in *carbon_stop*) return 0 ;; esac
    # shellcheck disable=SC2064,SC2154 # expanded now on purpose; _carbon_st is set by the trap
    trap "_carbon_st=\$?; carbon_stop; (exit \$_carbon_st)${prev:+; $prev}" EXIT
}
_carbon_trap_prepend
for _carbon_sig in INT TERM HUP; do
    [ -n "$(trap -p "$_carbon_sig")" ] || trap "exit 129" "$_carbon_sig"
done
unset _carbon_sig
