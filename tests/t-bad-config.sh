#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Bad configuration (docs/RELIABILITY.md section 8), table-driven: tests/data/bad-config.tsv gives
# every option of write_kafka_ts, read_kafka_ts (with <Pipeline>, <Match> and every filter's
# options) and the ts_filter target an invalid value. For each row the REAL collectd daemon
# (tests/lib/collectd.sh) is started with a valid configuration plus that one bad line, and:
#   - collectd refuses to start: the plugin's config callback (or the target's create) fails,
#     collectd 5.12 stops before "Initialization complete" ("when" = config);
#     or, for options checked only when the plugin initialises ("when" = init, see the table),
#     the plugin's init fails and collectd unregisters it ("Initialization of plugin ... failed");
#   - the log has the row's expected text, which must name the option and the bad value (checked
#     here, so a row cannot pass with a vague message) and what is allowed (checked by review of
#     the table).
# Test 1 keeps the table complete: every option in the code's option tables
# (src/kafka/kts_producer_options.c, src/kafka/kts_consumer.c, src/pipeline/kts_pipeline.c,
# plugins/*.c, the filters through `kts-filter --options-markdown`) and in the option tables of
# docs/write_kafka_ts.md, docs/read_kafka_ts.md and docs/ts_filter.md has a row.
# KTS_BAD_CONFIG_ONLY=REGEX runs only the rows whose "component option" matches (for debugging).
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=tests/lib/tap.sh
. "$SRCDIR/tests/lib/tap.sh"
# shellcheck source=tests/lib/collectd.sh
. "$SRCDIR/tests/lib/collectd.sh"
TABLE=${KTS_BAD_CONFIG_TABLE:-$SRCDIR/tests/data/bad-config.tsv}
KF="$KTS_TOP_BUILDDIR/tools/kts-filter"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ------------------------------------------------------------------ the options that exist
# "component option" lines, from the code's tables and the docs' tables.
table_opts() { # FILE COMPONENT: the {"Name", KTS_OPT_... entries of the C option tables in FILE
    grep -o '{"[A-Za-z]*", KTS_OPT_' "$SRCDIR/$1" | sed "s/{\"\\([A-Za-z]*\\)\".*/$2 \\1/"
}
doc_opts() { # FILE COMPONENT: first column of every "| option |" table in the doc
    awk -v c="$2" '/^\| option \|/ { t = 1; next }
        t && /^\| `/ { s = $0; sub(/^\| `/, "", s); sub(/`.*/, "", s); sub(/^</, "", s);
                       sub(/ .*/, "", s); print c " " s; next }
        t && !/^\|/ { t = 0 }' "$SRCDIR/$1"
}
{
    table_opts src/kafka/kts_producer_options.c write_kafka_ts
    table_opts src/kafka/kts_consumer.c read_kafka_ts
    table_opts plugins/read_kafka_ts.c read_kafka_ts
    table_opts plugins/write_kafka_ts.c write_kafka_ts
    table_opts src/pipeline/kts_pipeline.c pipeline
    table_opts plugins/ts_filter.c ts_filter
    doc_opts docs/write_kafka_ts.md write_kafka_ts
    doc_opts docs/read_kafka_ts.md read_kafka_ts
    doc_opts docs/ts_filter.md ts_filter
    # <Match> fields: the field_names[] of src/pipeline/kts_pipeline.c
    sed -n '/field_names\[[A-Z_]*\] *=/,/};/p' "$SRCDIR/src/pipeline/kts_pipeline.c" | grep -o '"[A-Za-z]*"' |
        tr -d '"' | sed 's/^/match /'
    # Every filter's table, as kts-filter prints the option reference (docs/FILTERS.md).
    "$KF" --options-markdown | awk '/^### `<Filter "/ { f = $0; sub(/^### `<Filter "/, "", f); sub(/".*/, "", f); next }
        /^### / { f = ""; next }
        f != "" && /^\| `/ { s = $0; sub(/^\| `/, "", s); sub(/`.*/, "", s); print "filter:" f " " s }'
} | sort -u >"$tmp/exist"
grep -v '^#' "$TABLE" | grep -v '^$' | cut -f1,2 | tr '\t' ' ' | sort -u >"$tmp/rows"

mapfile -t ROWS < <(grep -v '^#' "$TABLE" | grep -v '^$')
if [ -n "${KTS_BAD_CONFIG_ONLY:-}" ]; then
    mapfile -t ROWS < <(printf '%s\n' "${ROWS[@]}" | awk -F'\t' -v re="$KTS_BAD_CONFIG_ONLY" '($1 " " $2) ~ re')
fi
plan $((2 + ${#ROWS[@]}))

missing=$(comm -23 "$tmp/exist" "$tmp/rows")
ok "$([ -s "$tmp/exist" ] && [ -z "$missing" ]; echo $?)" \
    "every option of the code's and the docs' tables has a row ($(wc -l <"$tmp/exist") options)" ||
    diag "options without a row in tests/data/bad-config.tsv:" "$missing"
stale=$(comm -13 "$tmp/exist" "$tmp/rows")
ok "$([ -z "$stale" ]; echo $?)" "every row names an option that exists" ||
    diag "rows for options that are in no table or doc:" "$stale"

# ------------------------------------------------------------------ one collectd per row
BROKER=127.0.0.1:9 # never contacted: every row fails before a Kafka handle exists (or in init)
PIPE_OK='<Pipeline "p">\n<Filter "dedup">\n</Filter>\n</Pipeline>'

conf_for() { # COMPONENT BAD-TEXT: the plugin part of collectd.conf
    local comp=$1 bad=$2
    case $comp in
    write_kafka_ts)
        printf 'LoadPlugin write_kafka_ts\n<Plugin write_kafka_ts>\n  Property "bootstrap.servers" "%s"\n  Topic "kts-bad-config"\n%b\n</Plugin>\n' "$BROKER" "$bad" ;;
    read_kafka_ts | pipeline | match | filter:*)
        local inner=$bad
        case $comp in
        pipeline) inner="<Pipeline \"p\">\\n<Filter \"dedup\">\\n</Filter>\\n$bad\\n</Pipeline>" ;;
        match) inner="<Pipeline \"p\">\\n<Filter \"dedup\">\\n</Filter>\\n<Match>\\n$bad\\n</Match>\\n</Pipeline>" ;;
        filter:*) inner="<Pipeline \"p\">\\n<Filter \"${comp#filter:}\">\\n$bad\\n</Filter>\\n</Pipeline>" ;;
        esac
        printf 'LoadPlugin read_kafka_ts\n<Plugin read_kafka_ts>\n  Property "bootstrap.servers" "%s"\n  GroupId "kts-bad-config"\n  Topic "kts-bad-config"\n%b\n</Plugin>\n' "$BROKER" "$inner" ;;
    ts_filter)
        printf 'LoadPlugin ts_filter\n<Chain "PreCache">\n<Rule "r">\n<Target "ts_filter">\n%b\n%b\n</Target>\n</Rule>\n</Chain>\n' "$PIPE_OK" "$bad" ;;
    *) return 1 ;;
    esac
}

n=0
for row in "${ROWS[@]}"; do
    IFS=$'\t' read -r comp opt bad value expect when <<<"$row"
    n=$((n + 1))
    when=${when:-config}
    name="row$n"
    d=$(collectd_dir "$name")
    plugin=$comp
    case $comp in pipeline | match | filter:*) plugin=read_kafka_ts ;; esac
    {
        collectd_conf_header "$name"
        # PluginDir + a copy of the plugin; the LoadPlugin line comes from conf_for.
        collectd_conf_ours "$plugin" | grep -v '^LoadPlugin'
        conf_for "$comp" "$bad"
    } >"$d/collectd.conf"
    # When the daemon dies during start-up, collectd_start reaps it (setting
    # COLLECTD_EXIT_STATUS); when it started, it is stopped here by its PID.
    COLLECTD_EXIT_STATUS=""
    collectd_start "$d/collectd.conf" "$name" 2>/dev/null
    started=$?
    if [ "$started" -eq 0 ]; then
        collectd_stop "$name" 30 2>/dev/null
    fi
    status=${COLLECTD_EXIT_STATUS:-0}
    log=$(cat "$d/collectd.log" "$d/collectd.stderr" 2>/dev/null)
    if [ -n "${KTS_BAD_CONFIG_SHOW:-}" ]; then # print the error lines naming the value
        grep -F -- "$value" "$d/collectd.log" | grep '\[error\]' | sed 's/^\[[^]]*\] \[error\] /# SHOW '"$comp $opt"': /'
    fi
    why=""
    if [ "$when" = config ] && [ "$started" -eq 0 ]; then
        why="collectd started (Initialization complete) with the bad line"
    elif [ "$when" = config ] && [ "$status" -eq 0 ]; then
        why="collectd exited with status 0"
    elif [ "$when" = init ] && ! grep -q "Initialization of plugin \`$plugin' failed" <<<"$log"; then
        why="the plugin's init did not fail"
    elif [ "$when" = init ] && [ "$status" -eq 0 ]; then
        why="collectd exited with status 0 after its plugin's init failed"
    elif ! grep -qiF -- "$opt" <<<"$expect" || ! grep -qF -- "$value" <<<"$expect"; then
        why="the expected text does not name both the option and the value '$value'"
    elif ! grep -qF -- "$expect" <<<"$log"; then
        why="the log lacks the expected text"
    fi
    ok "$([ -z "$why" ]; echo $?)" "$comp $opt: $(printf '%b' "$bad" | head -1) → refused at $when: $expect" || {
        diag "$why" "log:"
        diag "$(grep -E 'ERROR|rror|failed|refus' <<<"$log" | head -20)"
    }
done
done_testing
