#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# write_kafka_ts when the spool's disk fails: the REAL collectd daemon, the
# REAL Kafka broker (a one-node cluster of this test's own, stopped for an outage), spools on
# small tmpfs mounts of this test's own (root needed: mount; unmounted at exit). Three agents:
#   full  default SpoolMode (overflow), BufferMessages 20,000, BlockTimeout 1, its spool on a
#         12 MiB tmpfs it shares with `wal`: a burst of 150,000 during the outage (30 MB of
#         spool) fills the disk
#   wal   SpoolMode "always" on the same tmpfs, the same burst
#   ro    overflow spool on a tmpfs of its own that is remounted read-only while the agent runs
#         (for root, whom file modes do not stop, that is what makes a directory unwritable),
#         5,000 value lists/s from before the outage to after it
# For each: collectd does not crash and stops cleanly (TERM, exit status 0), the drops are
# logged with the reason (ENOSPC / EROFS) and counted, and what is missing in Kafka equals,
# exactly, the count in the shutdown log line ("N dropped before sending") and the
# dropped-spool_error self-metric; what arrived is in per-series order.
set -u
KTS_FAULT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/kts-spool-faults.XXXXXX") || exit 1
_fault_cleanup() {
    local m
    for m in "$KTS_FAULT_TMP/a" "$KTS_FAULT_TMP/b"; do
        mountpoint -q "$m" 2>/dev/null && umount "$m"
    done
    rm -rf "$KTS_FAULT_TMP"
}
trap _fault_cleanup EXIT # set first: collectd.sh and kafka.sh put their stops in front of it
. "${KTS_TOP_SRCDIR:?run through make check}/tests/lib/tap.sh"
. "$KTS_TOP_SRCDIR/tests/lib/kafka.sh"
. "$KTS_TOP_SRCDIR/tests/lib/collectd.sh"
. "$KTS_TOP_SRCDIR/tests/lib/write_outage.sh"

N=150000
SERIES=100
OUTAGE=${KTS_FAULT_OUTAGE:-20}
RO_RATE=5000
RO_COUNT=$((RO_RATE * (OUTAGE + 25)))

plan 20
mkdir -p "$KTS_FAULT_TMP/a" "$KTS_FAULT_TMP/b"
mount -t tmpfs -o size=12m,mode=0700 kts-spool-full "$KTS_FAULT_TMP/a" &&
    mount -t tmpfs -o size=4m,mode=0700 kts-spool-ro "$KTS_FAULT_TMP/b"
ok $? "two tmpfs mounts for the spools (12 MiB, 4 MiB)" || bail_out "mount failed (root needed)"

kafka_start --brokers 1 || bail_out "kafka-local start failed"
run=$(kafka_topic faults)
for c in full wal ro; do
    kafka_create_topic "$run-$c" 4 >/dev/null || bail_out "cannot create topic $run-$c"
done
wo_conf full "$run-full" full 30000 "$N" "$SERIES" "  BufferMessages 20000
  BlockTimeout 1
  FlushTimeout 60
  SpoolDirectory \"$KTS_FAULT_TMP/a/full\""
wo_conf wal "$run-wal" wal 30000 "$N" "$SERIES" "  SpoolMode \"always\"
  FlushTimeout 60
  SpoolDirectory \"$KTS_FAULT_TMP/a/wal\""
wo_conf ro "$run-ro" ro "$RO_RATE" "$RO_COUNT" "$SERIES" "  BufferMessages 10000
  BlockTimeout 0
  FlushTimeout 60
  SpoolDirectory \"$KTS_FAULT_TMP/b/spool\""

collectd_start "$(collectd_dir ro)/collectd.conf" ro
ok $? "ro: agent starts, broker up, its spool on a writable tmpfs"
sleep 2
mount -o remount,ro "$KTS_FAULT_TMP/b"
ok $? "ro: its spool's file system remounted read-only while it runs"
run_ok "broker stopped (TERM)" kafka_stop_node 1
t0=$SECONDS
collectd_start "$(collectd_dir full)/collectd.conf" full && collectd_start "$(collectd_dir wal)/collectd.conf" wal
ok $? "full, wal: agents start with the broker down, spools on the 12 MiB tmpfs"
collectd_wait_log 'kts_testgen: burst done' 60 full && collectd_wait_log 'kts_testgen: burst done' 60 wal
ok $? "full, wal: their bursts of $N are dispatched"
left=$((OUTAGE - (SECONDS - t0)))
[ "$left" -gt 0 ] && sleep "$left"
run_ok "broker started again after $((SECONDS - t0)) s" kafka_start_node 1
collectd_wait_log 'spool drained' 120 full
ok $? "full: its spool drains once the broker is back (disk full or not)"
collectd_wait_log 'kts_testgen: burst done' $((RO_COUNT / RO_RATE + 60)) ro
sleep 3
for c in full wal ro; do
    collectd_stop "$c" 120
    ok $? "$c: no crash; collectd stops cleanly (TERM, exit status 0)" || collectd_dump_log "$c"
done
# check AGENT REASON: 2 test points
check() {
    local c=$1 reason=$2 res missing logged counter
    wo_read "$run-$c" "$(collectd_dir "$c")/got.txt"
    if [ "$c" = ro ]; then
        res=$(wo_check "$(collectd_dir "$c")/got.txt" "$c" "$SERIES" "$RO_COUNT" 2>/dev/null)
    else
        res=$(wo_check "$(collectd_dir "$c")/got.txt" "$c" "$SERIES" "$N" 2>/dev/null)
    fi
    diag "$res"
    missing=$(wo_field "$res" missing)
    logged=$(sed -n "s/.*write_kafka_ts plugin ($c): shutdown: .* \\([0-9][0-9]*\\) dropped before sending.*/\\1/p" "$(collectd_logfile "$c")")
    counter=$(wo_counter "$c" dropped-spool_error)
    diag "$c: missing $missing, shutdown log: ${logged:-?} dropped, dropped-spool_error ${counter}"
    ok "$([ "${missing:-0}" -gt 0 ] && [ "$missing" = "${logged:-x}" ] && [ "$missing" = "$counter" ]; echo $?)" \
        "$c: value lists were dropped ($missing), and what is missing in Kafka equals the shutdown log's count and dropped-spool_error, exactly"
    collectd_log_has "write_kafka_ts plugin \\($c\\): dropped a value list: cannot write the spool: $reason" "$c"
    ok $? "$c: the drops are logged with the reason: $reason"
    is "$(wo_field "$res" order)/$(wo_field "$res" time)/$(wo_field "$res" partitions)" 0/0/0 \
        "$c: what arrived is in per-series order"
}
check full 'No space left on device'
check wal 'No space left on device'
check ro 'Read-only file system'
kafka_stop
done_testing
