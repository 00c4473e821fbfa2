#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# write_kafka_ts at its DEFAULTS loses nothing in an outage the disk can hold:
# the REAL collectd daemon, the REAL Kafka broker (a one-node cluster of this test's own, so it
# can be stopped). No SpoolDirectory, no BufferMessages, no BlockTimeout: only the broker, the
# topic and an Instance name.
#   1-3   start-up errors, never a silent memory-only fallback: a default spool directory that
#         cannot be created (BaseDir/write_kafka_ts is a file) and one that is locked (another
#         instance's SpoolDirectory is this instance's default) stop the plugin's init with a
#         log line naming the path
#   4-    the broker is stopped; an agent with defaults starts and kts_testgen dispatches a
#         burst of KTS_DEFSPOOL_COUNT value lists (default 150,000: 50,000 more than the default
#         BufferMessages) at KTS_DEFSPOOL_RATE/s; the broker is started again KTS_DEFSPOOL_OUTAGE
#         s (default 30) after it was stopped: every value arrives, per-series order kept,
#         nothing dropped, the values beyond the memory buffer went through the default spool
#         BaseDir/write_kafka_ts/INSTANCE (mode 700, as is its parent), which is empty after.
set -u
. "${KTS_TOP_SRCDIR:?run through make check}/tests/lib/tap.sh"
. "$KTS_TOP_SRCDIR/tests/lib/kafka.sh"
. "$KTS_TOP_SRCDIR/tests/lib/collectd.sh"
. "$KTS_TOP_SRCDIR/tests/lib/write_outage.sh"

COUNT=${KTS_DEFSPOOL_COUNT:-150000}
RATE=${KTS_DEFSPOOL_RATE:-30000}
OUTAGE=${KTS_DEFSPOOL_OUTAGE:-30}
SERIES=100

plan 17

# ---- 1-3: start-up errors (no broker needed: init fails before any connection)
B=$(collectd_dir file)
: >"$B/write_kafka_ts" # a file where the parent of the default spool directory goes
{
    collectd_conf_header file
    collectd_conf_ours write_kafka_ts
    printf '<Plugin write_kafka_ts>\n  Property "bootstrap.servers" "127.0.0.1:9"\n  Topic "t"\n  Instance "x"\n</Plugin>\n'
} >"$B/collectd.conf"
collectd_start "$B/collectd.conf" file 2>/dev/null
collectd_stop file 30 2>/dev/null
collectd_log_has "write_kafka_ts plugin \\(x\\): SpoolDirectory: cannot create the spool directory \"$B/write_kafka_ts/x\": Not a directory" file &&
    collectd_log_has "\"$B/write_kafka_ts/x\" is the default spool directory" file &&
    collectd_log_has "Initialization of plugin \`write_kafka_ts' failed" file
ok $? "1: a default spool directory that cannot be created: init fails, the log names the path" ||
    collectd_dump_log file

L=$(collectd_dir lock)
{
    collectd_conf_header lock
    collectd_conf_ours write_kafka_ts
    printf '<Plugin write_kafka_ts>\n  Property "bootstrap.servers" "127.0.0.1:9"\n  Topic "t"\n  Instance "a"\n</Plugin>\n'
    printf '<Plugin write_kafka_ts>\n  Property "bootstrap.servers" "127.0.0.1:9"\n  Topic "t"\n  Instance "b"\n  SpoolDirectory "%s"\n</Plugin>\n' "$L/write_kafka_ts/a"
} >"$L/collectd.conf"
collectd_start "$L/collectd.conf" lock 2>/dev/null
collectd_stop lock 30 2>/dev/null
collectd_log_has "write_kafka_ts plugin \\(b\\): SpoolDirectory: spool directory \"$L/write_kafka_ts/a\" is in use by another write_kafka_ts instance" lock &&
    collectd_log_has "Initialization of plugin \`write_kafka_ts' failed" lock
ok $? "2: a default spool directory locked by another instance: init fails, the log names the path" ||
    collectd_dump_log lock
perm=$(stat -c %a "$L/write_kafka_ts" "$L/write_kafka_ts/a" 2>/dev/null | paste -sd/)
is "$perm" 700/700 "3: the default spool directory and its parent BaseDir/write_kafka_ts are created with mode 700"

# ---- 4-: the burst during an outage, at defaults
kafka_start --brokers 1 || bail_out "kafka-local start failed"
topic=$(kafka_topic defspool)
kafka_create_topic "$topic" 4 >/dev/null || bail_out "cannot create topic $topic"
diag "bootstrap $KTS_BOOTSTRAP; $COUNT value lists at $RATE/s during a $OUTAGE s outage, defaults"
wo_conf dflt "$topic" dflt "$RATE" "$COUNT" "$SERIES" ""
D=$(collectd_dir dflt)
grep -qiE '^ *(Spool|Buffer|BlockTimeout|FlushTimeout)' "$D/collectd.conf"
ok "$([ $? -ne 0 ]; echo $?)" "4: the agent's write_kafka_ts block sets no Spool*, Buffer*, BlockTimeout or FlushTimeout"

run_ok "5: broker stopped (TERM)" kafka_stop_node 1
t0=$SECONDS
collectd_start "$D/collectd.conf" dflt
ok $? "6: the agent starts with the broker down"
collectd_log_has "write_kafka_ts plugin \\(dflt\\): producing to topic .* spool \"$D/write_kafka_ts/dflt\"" dflt
ok $? "7: its spool is the default, BaseDir/write_kafka_ts/INSTANCE"
collectd_wait_log 'kts_testgen: burst done' $((OUTAGE + 60)) dflt
ok $? "8: all $COUNT value lists dispatched during the outage (after $((SECONDS - t0)) s)"
collectd_wait_log 'write_kafka_ts plugin \(dflt\): local queue full for BlockTimeout 5 s: spooling to disk' 30 dflt
ok $? "9: the memory buffer (BufferMessages 100000) filled and the agent spooled to disk"
left=$((OUTAGE - (SECONDS - t0)))
[ "$left" -gt 0 ] && sleep "$left"
run_ok "10: broker started again after $((SECONDS - t0)) s" kafka_start_node 1
collectd_wait_log 'spool drained' 180 dflt
ok $? "11: the spool is drained after the broker returns"
for _ in $(seq 120); do
    q=$(ls "$D"/csv/*/write_kafka_ts-dflt/queue_length-* 2>/dev/null | tail -n 1)
    [ -n "$q" ] && [ "$(tail -n 1 "$q" | awk -F, '{ printf "%d", $2 }')" = 0 ] && break
    sleep 1
done
spooled=$(wo_counter dflt spooled)
replayed=$(wo_counter dflt replayed)
drops="$(wo_counter dflt dropped-queue_full)/$(wo_counter dflt dropped-spool_full)/$(wo_counter dflt dropped-spool_error)"
collectd_stop dflt 120
ok $? "12: the agent stops cleanly"
wo_read "$topic" "$D/got.txt"
res=$(wo_check "$D/got.txt" dflt "$SERIES" "$COUNT")
diag "$res; spooled $spooled replayed $replayed"
is "$(wo_field "$res" missing)" 0 "13: every value arrives ($COUNT value lists)"
is "$(wo_field "$res" order)/$(wo_field "$res" time)/$(wo_field "$res" partitions)" 0/0/0 \
    "14: per-series order (values and timestamps) kept, one partition per series"
ok "$([ "$spooled" -gt 0 ] && [ "$replayed" = "$spooled" ]; echo $?)" \
    "15: values beyond the memory buffer were spooled ($spooled) and all replayed ($replayed)"
is "$drops" 0/0/0 "16: nothing dropped (queue_full/spool_full/spool_error)"
ls "$D/write_kafka_ts/dflt"/*.seg >/dev/null 2>&1
ok "$([ $? -ne 0 ] && collectd_log_has 'write_kafka_ts plugin \(dflt\): shutdown: all [0-9]+ value lists sent were delivered; 0 dropped' dflt; echo $?)" \
    "17: no segment file left; the shutdown log: everything delivered, nothing dropped"
kafka_stop
done_testing
