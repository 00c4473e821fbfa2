#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# write_kafka_ts through a broker outage: the REAL collectd daemon, the REAL
# Kafka broker (a one-node cluster of this test's own, so it can be stopped). Three agents run
# at the same time, each kts_testgen at KTS_OUTAGE_RATE value lists/s (default 10,000) into its
# own topic, one write thread each; the broker is stopped (TERM) for KTS_OUTAGE_S seconds
# (default 60) and started again:
#   mem    BufferMessages sized for the outage, no spool (SpoolDirectory "none"): every value
#          arrives, per-series order kept, RSS stays below the bound derived from BufferBytes
#          + 320 B x BufferMessages
#   drop   BufferMessages 50,000, no spool ("none"), BlockTimeout 1: the outage is longer than
#          memory allows; what is missing in Kafka equals, exactly, the dropped-queue_full counter and
#          the count in the shutdown log line
#   spool  BufferMessages 50,000 and SpoolDirectory: nothing lost, order kept, the spool is
#          replayed and drained, its memory stays bounded like drop's
# Checks read every topic back (tests/lib/check_series.py): count per series, no gaps, each
# series on one partition, values and timestamps increasing per series in partition order.
# Environment: KTS_OUTAGE_S (60), KTS_OUTAGE_RATE (10000), KTS_OUTAGE_PRE (5), KTS_OUTAGE_POST (3).
set -u
. "${KTS_TOP_SRCDIR:?run through make check}/tests/lib/tap.sh"
. "$KTS_TOP_SRCDIR/tests/lib/kafka.sh"
. "$KTS_TOP_SRCDIR/tests/lib/collectd.sh"
. "$KTS_TOP_SRCDIR/tests/lib/write_outage.sh"

OUTAGE=${KTS_OUTAGE_S:-60}
RATE=${KTS_OUTAGE_RATE:-10000}
PRE=${KTS_OUTAGE_PRE:-5}
POST=${KTS_OUTAGE_POST:-3}
SERIES=100
COUNT=$((RATE * (PRE + OUTAGE + POST)))
MEM_MSGS=$((RATE * OUTAGE * 3 / 2 + 100000))
# Memory not ours under AddressSanitizer (tests/run-suite, KTS_SANITIZERS): its quarantine of
# freed blocks (256 MiB by default) and shadow memory; allowed on top of every bound below.
SAN_KB=0 SAN_NOTE=""
case ",${KTS_SANITIZERS:-}," in *,address,*) SAN_KB=$((512 * 1024)) SAN_NOTE=" + 512 MiB for ASan" ;; esac
MEM_BYTES=$((512 * 1024 * 1024))
SMALL_MSGS=50000

plan 31
kafka_start --brokers 1 || bail_out "kafka-local start failed"
diag "bootstrap $KTS_BOOTSTRAP; $RATE value lists/s, outage $OUTAGE s, $COUNT value lists per agent"
run=$(kafka_topic outage)
for a in mem drop spool; do
    kafka_create_topic "$run-$a" 4 >/dev/null || bail_out "cannot create topic $run-$a"
done

SPOOL_DIR=$(collectd_dir spool)/spool
wo_conf mem "$run-mem" mem "$RATE" "$COUNT" "$SERIES" "  BufferMessages $MEM_MSGS
  BufferBytes $MEM_BYTES
  FlushTimeout 120
  SpoolDirectory \"none\""
wo_conf drop "$run-drop" drop "$RATE" "$COUNT" "$SERIES" "  BufferMessages $SMALL_MSGS
  BlockTimeout 1
  FlushTimeout 120
  SpoolDirectory \"none\""
wo_conf spool "$run-spool" spool "$RATE" "$COUNT" "$SERIES" "  BufferMessages $SMALL_MSGS
  BlockTimeout 1
  FlushTimeout 120
  SpoolDirectory \"$SPOOL_DIR\"
  SpoolMaxBytes 2147483648"

started=0
for a in mem drop spool; do
    collectd_start "$(collectd_dir $a)/collectd.conf" $a && started=$((started + 1))
done
is "$started" 3 "three agents (mem, drop, spool) start"
sleep "$PRE"
declare -A RSS0
for a in mem drop spool; do
    RSS0[$a]=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$(collectd_pid $a)/status")
    wo_rss_start $a
done
run_ok "broker stopped (TERM) after $PRE s" kafka_stop_node 1
t0=$SECONDS
sleep "$OUTAGE"
run_ok "broker started again after $((SECONDS - t0)) s" kafka_start_node 1

for a in mem drop spool; do
    collectd_wait_log 'kts_testgen: burst done' $((PRE + OUTAGE + POST + 120)) $a
    ok $? "$a: all $COUNT value lists dispatched"
done
collectd_wait_log 'spool drained' 180 spool
ok $? "spool: the spool is drained after the broker returns"
# The memory agents deliver their queue by themselves; wait for their queue_length to reach 0
# (bounded), then stop (FlushTimeout 120 covers the rest).
for a in mem drop spool; do
    for _ in $(seq 120); do
        q=$(ls "$(collectd_dir $a)"/csv/*/write_kafka_ts-$a/queue_length-* 2>/dev/null | tail -n 1)
        [ -n "$q" ] && [ "$(tail -n 1 "$q" | awk -F, '{ printf "%d", $2 }')" = 0 ] && break
        sleep 1
    done
done
declare -A HWM
for a in mem drop spool; do
    HWM[$a]=$(wo_hwm $a)
    d_sent=$(wo_counter $a sent)
    d_dropped=$(wo_counter $a dropped-queue_full)
    d_spooled=$(wo_counter $a spooled)
    d_replayed=$(wo_counter $a replayed)
    collectd_stop $a 180
    ok $? "$a: collectd stops cleanly"
    diag "$a: sent $d_sent dropped-queue_full $d_dropped spooled $d_spooled replayed $d_replayed; RSS before outage ${RSS0[$a]} kB, max sampled $(wo_rss_max $a) kB, VmHWM ${HWM[$a]} kB"
done

# order_checks AGENT RESULT: one partition per series, then per-series order (values and
# timestamps). Without idempotence librdkafka can write a produce request it retried after a
# later one, max.in.flight 1 notwithstanding (docs/write_kafka_ts.md "Ordering"); with one
# broker that takes an error answer to the request on the wire while the next one is already
# built, e.g. while the broker shuts down: seen once with 2.0.2 (the drop agent, one block of
# 4,072 values written after the next request). write_kafka_ts turns enable.idempotence on
# where librdkafka's idempotent producer is safe (>= 2.3.0, docs/LIBRDKAFKA.md): there the
# order is an ordinary test, a TODO naming the limitation only where it is not (2.0.2). The
# check still runs and prints its result (a TODO failure is listed by prove, not hidden).
order_checks() {
    local a=$1 res=$2
    is "$(wo_field "$res" partitions)" 0 "$a: one partition per series"
    TAP_TODO=$(kafka_rdkafka_limit idempotence)
    is "$(wo_field "$res" order)/$(wo_field "$res" time)" 0/0 \
        "$a: per-series order (values and timestamps) kept (out of order: $(wo_field "$res" blocks) block(s))"
    TAP_TODO=""
}

# ---- mem: nothing lost, order, memory bound
D=$(collectd_dir mem)
wo_read "$run-mem" "$D/got.txt"
res=$(wo_check "$D/got.txt" mem "$SERIES" "$COUNT")
diag "$res"
is "$(wo_field "$res" missing)" 0 "mem: every value arrives ($COUNT value lists)"
order_checks mem "$res"
collectd_log_has "write_kafka_ts plugin \\(mem\\): shutdown: all [0-9]+ value lists sent were delivered; 0 dropped" mem
ok $? "mem: shutdown log: everything delivered, nothing dropped"
# librdkafka's queue costs at most BufferBytes of payload + ~320 B per message (its
# queue.buffering.max.kbytes counts payload only; each queued message costs ~320 B more);
# allowed: the RSS before the outage + that + 64 MiB for everything else. Generous on purpose.
bound=$((RSS0[mem] + (MEM_BYTES + 320 * MEM_MSGS) / 1024 + 65536 + SAN_KB))
cmp_ok "${HWM[mem]}" -le "$bound" "mem: VmHWM ${HWM[mem]} kB <= bound $bound kB (RSS before + BufferBytes + 320 B x BufferMessages + 64 MiB$SAN_NOTE)"

# ---- drop: the exact count
D=$(collectd_dir drop)
wo_read "$run-drop" "$D/got.txt"
res=$(wo_check "$D/got.txt" drop "$SERIES" "$COUNT")
diag "$res"
missing=$(wo_field "$res" missing)
dropped=$(wo_counter drop dropped-queue_full)
cmp_ok "$missing" -gt 0 "drop: the outage was longer than memory allows ($missing value lists missing)"
is "$dropped" "$missing" "drop: the dropped-queue_full counter equals what is missing in Kafka, exactly"
logged=$(sed -n 's/.*write_kafka_ts plugin (drop): shutdown: .* \([0-9][0-9]*\) dropped before sending.*/\1/p' "$(collectd_logfile drop)")
is "$logged" "$missing" "drop: the shutdown log line gives the same number"
collectd_log_has 'write_kafka_ts plugin \(drop\): dropped a value list: local queue full' drop
ok $? "drop: the drops were logged (rate-limited) with the reason"
order_checks drop "$res"
bound=$((RSS0[drop] + (SMALL_MSGS * (1024 + 320)) / 1024 + 65536 + SAN_KB))
cmp_ok "${HWM[drop]}" -le "$bound" "drop: VmHWM ${HWM[drop]} kB <= bound $bound kB$SAN_NOTE"

# ---- spool: nothing lost, order, bounded memory
D=$(collectd_dir spool)
wo_read "$run-spool" "$D/got.txt"
res=$(wo_check "$D/got.txt" spool "$SERIES" "$COUNT")
diag "$res"
is "$(wo_field "$res" missing)" 0 "spool: every value arrives ($COUNT value lists)"
order_checks spool "$res"
spooled=$(wo_counter spool spooled)
replayed=$(wo_counter spool replayed)
cmp_ok "$spooled" -gt 0 "spool: values were spooled ($spooled)"
is "$replayed" "$spooled" "spool: every spooled value was replayed"
is "$(wo_counter spool dropped-queue_full)/$(wo_counter spool dropped-spool_full)" 0/0 "spool: nothing dropped"
bound=$((RSS0[spool] + (SMALL_MSGS * (1024 + 320)) / 1024 + 65536 + SAN_KB))
cmp_ok "${HWM[spool]}" -le "$bound" "spool: VmHWM ${HWM[spool]} kB <= bound $bound kB$SAN_NOTE (memory stays at the small buffer)"
ls "$SPOOL_DIR"/*.seg >/dev/null 2>&1
ok "$([ $? -ne 0 ]; echo $?)" "spool: no segment file left once drained"
collectd_log_has 'write_kafka_ts plugin \(spool\): shutdown: all [0-9]+ value lists sent were delivered; 0 dropped' spool
ok $? "spool: shutdown log: everything delivered, nothing dropped"
done_testing
