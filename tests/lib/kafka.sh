# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# tests/lib/kafka.sh: real Apache Kafka clusters for bash tests (through contrib/kafka/kafka-local).
# Source it:  . "$KTS_TOP_SRCDIR/tests/lib/kafka.sh"
#
#   kafka_shared || bail_out "no Kafka"        # the suite's one-node cluster, or a new one
#   t=$(kafka_topic smoke); kafka_create_topic "$t" 4
#   kafka_pc produce -t "$t" -n 1000           # tests/kafka-pc with -b "$KTS_BOOTSTRAP"
#
#   kafka_start --brokers 3 [--sasl] [--tls]   # a cluster of this test's own
#   kafka_stop_node 2 [--kill]; kafka_start_node 2
#
# What it guarantees:
#  1. kafka_start starts a cluster in a new run directory (mktemp -d), exports KTS_BOOTSTRAP and
#     KTS_KAFKA_RUN_DIR for it (and KTS_SASL_BOOTSTRAP, KTS_SASL_MECHANISM (for the librdkafka
#     the tests are linked with: PLAIN before 2.6.1, see kafka-local), KTS_SASL_USERNAME, KTS_SASL_PASSWORD with --sasl; KTS_TLS_BOOTSTRAP,
#     KTS_SASL_SSL_BOOTSTRAP, KTS_TLS_CA, KTS_TLS_CERT, KTS_TLS_KEY, KTS_TLS_KEY_PASSWORD with
#     --tls), and returns 0 only once the cluster answered a metadata request listing every node.
#     KTS_KAFKA_VERSION picks another Kafka release (kafka-local guarantee 9).
#  2. Every cluster that kafka_start started is stopped when the test's shell exits, whatever the
#     reason: an EXIT trap (put in front of any trap already set; INT, TERM and HUP become an
#     exit), and kafka-local's --owner watchdog for the case where the shell is killed outright.
#     kafka-local stops only the PIDs it recorded.
#  3. kafka_shared uses the suite's shared single-node cluster ($KTS_BOOTSTRAP, set by
#     tests/run-suite) after checking that it answers; without one it calls kafka_start.
#  4. kafka_stop_node / kafka_start_node refuse to touch a cluster this test did not start, so a
#     test cannot break the shared cluster for the tests after it.
#  5. When the test exits with a non-zero status, the last lines of each own cluster's broker
#     logs are printed as "# " diagnostics and its run directory is kept (and named); otherwise
#     it is removed. KTS_KEEP_TMP=1 keeps it always.
#  6. Background processes registered with kafka_track_pid are TERMed (then KILLed) at exit,
#     before the clusters are stopped.
#  7. KAFKA_KCAT_ORDER (tests/lib/kcat.sh): `kcat -P -X "$KAFKA_KCAT_ORDER"` keeps input order.
#
# API: kafka_start [--brokers 1|3] [--sasl] [--tls] | kafka_shared | kafka_stop |
#      kafka_stop_node N [--kill] | kafka_start_node N | kafka_status |
#      kafka_create_topic NAME PARTITIONS [RF] | kafka_topic PREFIX | kafka_pc CMD ARGS... |
#      kafka_data_dir | kafka_tool CLASS ARGS... | kafka_dump_logs [LINES] |
#      kafka_track_pid PID | kafka_metadata_brokers | kafka_register_secret PASSWORD... |
#      kafka_rdkafka_version | kafka_rdkafka_limit FEATURE
# Environment: KTS_TOP_SRCDIR, KTS_TOP_BUILDDIR (set by make check); KAFKA_LOCAL and KAFKA_PC
# override the paths of contrib/kafka/kafka-local and tests/kafka-pc.

[ -z "${_KTS_KAFKA_SH_LOADED:-}" ] || return 0
_KTS_KAFKA_SH_LOADED=1

_kafka_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${KTS_TOP_SRCDIR:=$(cd "$_kafka_lib_dir/../.." && pwd)}"
: "${KAFKA_LOCAL:=$KTS_TOP_SRCDIR/contrib/kafka/kafka-local}"
: "${KAFKA_PC:=${KTS_TOP_BUILDDIR:-$KTS_TOP_SRCDIR}/tests/kafka-pc}"

# shellcheck source=tests/lib/kcat.sh
. "$_kafka_lib_dir/kcat.sh"
_KAFKA_RUN_DIRS=()
_KAFKA_PIDS=()

_kafka_diag() {
    local line
    while IFS= read -r line; do printf '# %s\n' "$line"; done <<<"$*" >&2
}

# Puts CMD in front of whatever trap SIG already has.
_kafka_trap_prepend() {
    local cmd=$1 sig=$2 prev="" cur
    cur=$(trap -p "$sig")
    if [ -n "$cur" ]; then
        eval "set -- $cur" # trap -- 'CMD' SIG
        prev=$3
    fi
    case "$prev" in *"$cmd"*) return 0 ;; esac
    # shellcheck disable=SC2064
    trap "$cmd${prev:+; $prev}" "$sig"
}

_kafka_cleanup() {
    local rc=$? pid run deadline
    for pid in "${_KAFKA_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || continue
        deadline=$((SECONDS + 10))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    _KAFKA_PIDS=()
    for run in "${_KAFKA_RUN_DIRS[@]}"; do
        if [ "$rc" -ne 0 ]; then
            KTS_KAFKA_RUN_DIR=$run kafka_dump_logs 30
        fi
        KTS_KAFKA_RUN_DIR=$run "$KAFKA_LOCAL" stop >/dev/null 2>&1 ||
            _kafka_diag "kafka.sh: kafka-local stop failed for $run"
        if [ "$rc" -ne 0 ] || [ "${KTS_KEEP_TMP:-0}" = 1 ]; then
            _kafka_diag "kafka.sh: kept $run (exit status $rc)"
        else
            rm -rf "$run"
        fi
    done
    _KAFKA_RUN_DIRS=()
    return "$rc"
}

_kafka_trap_prepend _kafka_cleanup EXIT
for _kafka_sig in INT TERM HUP; do
    [ -n "$(trap -p "$_kafka_sig")" ] || trap "exit 129" "$_kafka_sig"
done
unset _kafka_sig

# 0 if KTS_KAFKA_RUN_DIR is a cluster that this shell started.
_kafka_own() {
    local run
    for run in "${_KAFKA_RUN_DIRS[@]}"; do
        [ "$run" = "${KTS_KAFKA_RUN_DIR:-}" ] && return 0
    done
    return 1
}

kafka_start() {
    local run out
    run=$(mktemp -d "${TMPDIR:-/tmp}/kts-kafka-run.XXXXXX") || return 1
    _KAFKA_RUN_DIRS+=("$run")
    if ! out=$(KTS_KAFKA_RUN_DIR=$run "$KAFKA_LOCAL" start "$@" --owner "$$"); then
        _kafka_diag "kafka_start $*: kafka-local start failed (run dir $run)"
        return 1
    fi
    export KTS_KAFKA_RUN_DIR=$run
    KTS_BOOTSTRAP=$(head -n 1 <<<"$out")
    export KTS_BOOTSTRAP
    case " $* " in
        *" --sasl "* | *" --tls "*)
            eval "$(KTS_KAFKA_RUN_DIR=$run KTS_RDKAFKA_VERSION=$(kafka_rdkafka_version) \
                "$KAFKA_LOCAL" credentials)" || return 1
            export KTS_SASL_BOOTSTRAP KTS_SASL_MECHANISM KTS_SASL_MECHANISMS KTS_SASL_USERNAME \
                KTS_SASL_PASSWORD KTS_TLS_BOOTSTRAP KTS_SASL_SSL_BOOTSTRAP KTS_TLS_CA KTS_TLS_CERT \
                KTS_TLS_KEY KTS_TLS_KEY_PASSWORD 2>/dev/null
            ;;
    esac
    return 0
}

# Prints the ids of the brokers that a metadata request to $KTS_BOOTSTRAP lists, e.g. "1 2 3".
kafka_metadata_brokers() {
    kcat -L -b "$KTS_BOOTSTRAP" -m 5 2>/dev/null |
        sed -n 's/^  broker \([0-9][0-9]*\) at .*/\1/p' | sort -n | paste -sd' '
}

kafka_shared() {
    if [ -z "${KTS_BOOTSTRAP:-}" ]; then
        kafka_start
        return
    fi
    if [ -z "$(kafka_metadata_brokers)" ]; then
        _kafka_diag "kafka_shared: the cluster at KTS_BOOTSTRAP=$KTS_BOOTSTRAP does not answer"
        return 1
    fi
    return 0
}

kafka_stop() {
    local run left=()
    for run in "${_KAFKA_RUN_DIRS[@]}"; do
        if [ "$run" = "${KTS_KAFKA_RUN_DIR:-}" ]; then
            KTS_KAFKA_RUN_DIR=$run "$KAFKA_LOCAL" stop || return 1
            [ "${KTS_KEEP_TMP:-0}" = 1 ] || rm -rf "$run"
        else
            left+=("$run")
        fi
    done
    _KAFKA_RUN_DIRS=("${left[@]}")
}

kafka_stop_node() {
    _kafka_own || { _kafka_diag "kafka_stop_node: not a cluster of this test"; return 1; }
    "$KAFKA_LOCAL" stop-node "$@"
}

kafka_start_node() {
    _kafka_own || { _kafka_diag "kafka_start_node: not a cluster of this test"; return 1; }
    "$KAFKA_LOCAL" start-node "$@"
}

# kafka-local status of the current cluster; exit 0 all nodes up, 3 none, 4 some.
kafka_status() {
    "$KAFKA_LOCAL" status
}

# Prints a topic name no other test (or run of this test) uses.
kafka_topic() {
    printf '%s-%s-%s\n' "${1:-t}" "$$" "${EPOCHREALTIME/./}"
}

kafka_pc() {
    if [ ! -x "$KAFKA_PC" ]; then
        _kafka_diag "kafka_pc: $KAFKA_PC is not built (make check builds it)"
        return 1
    fi
    local cmd=$1
    shift
    "$KAFKA_PC" "$cmd" -b "$KTS_BOOTSTRAP" "$@"
}

# The librdkafka the tests are linked with (kafka-pc's, the same as the plugins' in this build).
kafka_rdkafka_version() {
    "$KAFKA_PC" version 2>/dev/null || echo 0
}

# kafka_rdkafka_limit FEATURE: prints the limitation of the linked librdkafka for FEATURE
# (src/kafka/kts_rdkver.h: idempotence, scram-kafka4, cooperative, kip848) and returns 0 when it has
# one; prints nothing and returns 1 when that librdkafka has the fix. For version-aware TODOs:
#   TAP_TODO=$(kafka_rdkafka_limit scram-kafka4)
kafka_rdkafka_limit() {
    "$KAFKA_PC" limit "$1"
}

kafka_create_topic() {
    local name=$1 partitions=$2 rf=${3:-}
    kafka_pc create -t "$name" -p "$partitions" ${rf:+-r "$rf"}
}

# Prints the data directory of the current cluster (KTS_KAFKA_RUN_DIR); 1 if there is none.
kafka_data_dir() {
    [ -n "${KTS_KAFKA_RUN_DIR:-}" ] || return 1
    local d
    d=$("$KAFKA_LOCAL" status 2>/dev/null | sed -n 's/^data_dir=//p')
    [ -n "$d" ] && [ -d "$d" ] || return 1
    printf '%s\n' "$d"
}

# Runs a Kafka JVM tool class with the broker's jars (e.g. kafka.tools.DumpLogSegments).
kafka_tool() {
    "$KAFKA_LOCAL" tool "$@"
}

kafka_dump_logs() {
    local lines=${1:-30} f
    [ -n "${KTS_KAFKA_RUN_DIR:-}" ] || return 0
    for f in "$KTS_KAFKA_RUN_DIR"/node-*.log; do
        [ -f "$f" ] || continue
        {
            echo "# ---- last $lines lines of $f"
            tail -n "$lines" "$f" | sed 's/^/#   /'
        } >&2
    done
}

kafka_track_pid() {
    _KAFKA_PIDS+=("$1")
}

# kafka_register_secret PASSWORD...: a password this test used (including wrong ones), for
# tests/t-zz-secrets.sh to look for in every log of the suite ($KTS_LOG_ARCHIVE/.secrets).
kafka_register_secret() {
    [ -n "${KTS_LOG_ARCHIVE:-}" ] && [ -d "$KTS_LOG_ARCHIVE" ] || return 0
    (umask 077 && printf '%s\n' "$@" >>"$KTS_LOG_ARCHIVE/.secrets")
}
