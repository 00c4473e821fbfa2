# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# tests/lib/write_outage.sh: the common part of the write_kafka_ts fault tests
# (tests/t-write-outage.sh, t-write-outage-3node.sh, t-write-restart.sh and
# bench/spool-outage). Source it after tests/lib/tap.sh, tests/lib/kafka.sh and
# tests/lib/collectd.sh.
#
#   wo_conf NAME TOPIC HOST RATE COUNT SERIES [EXTRA]   write NAME's collectd.conf: kts_testgen
#       (burst at RATE value lists/s, COUNT in all, SERIES series, Host HOST) → write_kafka_ts
#       (Instance NAME, Topic TOPIC, bootstrap $KTS_BOOTSTRAP, EXTRA option lines) with one
#       write thread; the plugin's self-metrics go to csv only (not to Kafka, so that the drop
#       counters concern the generator's values alone), read back with wo_counter.
#   wo_counter NAME TYPE_INSTANCE        last value of a total_values self-metric (csv)
#   wo_rss_start NAME / wo_rss_max NAME  sample VmRSS of NAME's collectd every second in the
#       background / print the largest sample (kB); wo_hwm NAME: VmHWM now (kB)
#   wo_read TOPIC FILE                   read the whole topic: "partition offset payload" lines
#   wo_check FILE HOST SERIES COUNT ...  tests/lib/check_series.py on FILE
#   wo_field LINE NAME                   the value of NAME=… in a check_series line
#   wo_dispatched NAME                   value lists kts_testgen dispatched (from its log)

wo_conf() {
    local name=$1 topic=$2 host=$3 rate=$4 count=$5 series=$6 extra=${7:-} d
    d=$(collectd_dir "$name")
    mkdir -p "$d/csv"
    {
        collectd_conf_header "$name"
        echo "WriteThreads 1"
        collectd_conf_stock csv match_regex
        collectd_conf_ours write_kafka_ts kts_testgen
        cat <<EOF
<Plugin write_kafka_ts>
  Property "bootstrap.servers" "$KTS_BOOTSTRAP"
  Topic "$topic"
  Instance "$name"
$extra
</Plugin>
<Plugin kts_testgen>
  Mode "burst"
  Count $count
  Series $series
  Rate $rate
  Host "$host"
</Plugin>
<Plugin csv>
  DataDir "$d/csv"
</Plugin>
<Chain "PostCache">
  <Rule "self_metrics_to_csv">
    <Match "regex">
      Plugin "^write_kafka_ts\$"
    </Match>
    <Target "write">
      Plugin "csv"
    </Target>
    Target "stop"
  </Rule>
  <Target "write">
    Plugin "write_kafka_ts/$name"
  </Target>
</Chain>
EOF
    } >"$d/collectd.conf"
}

wo_counter() {
    local f
    f=$(ls "$(collectd_dir "$1")"/csv/*/write_kafka_ts-"$1"/total_values-"$2"-* 2>/dev/null | tail -n 1)
    if [ -z "$f" ]; then
        echo none
        return
    fi
    tail -n 1 "$f" | awk -F, '{ printf "%d\n", $2 }'
}

wo_rss_start() {
    local pid out
    pid=$(collectd_pid "$1")
    out="$(collectd_dir "$1")/rss.txt"
    (
        while [ -r "/proc/$pid/status" ]; do
            sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status" 2>/dev/null
            sleep 1
        done
    ) >"$out" &
    kafka_track_pid $!
}

wo_rss_max() {
    sort -n "$(collectd_dir "$1")/rss.txt" 2>/dev/null | tail -n 1
}

wo_hwm() {
    sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$(collectd_pid "$1")/status" 2>/dev/null
}

wo_read() {
    kcat -C -b "$KTS_BOOTSTRAP" -t "$1" -o beginning -e -q -f '%p %o %s\n' >"$2" 2>/dev/null
}

wo_check() {
    local f=$1
    shift
    python3 "$KTS_TOP_SRCDIR/tests/lib/check_series.py" "$@" <"$f"
}

wo_field() {
    sed -n "s/.* $2=\\([0-9]*\\).*/\\1/p" <<<"$1"
}

wo_dispatched() {
    local f
    f=$(collectd_logfile "$1")
    sed -n 's/.*kts_testgen: burst done: \([0-9]*\) value lists.*/\1/p; s/.*kts_testgen: stopped after \([0-9]*\) value lists.*/\1/p' "$f" | tail -n 1
}
