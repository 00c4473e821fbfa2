/* SPDX-License-Identifier: MIT */
/*
 * kts_plugin_pipelines: the <Pipeline> blocks of one read_kafka_ts instance, between decoding and
 * dispatch (kts_consumer.h's pipeline hook). No collectd headers; the plugin only wires it.
 *
 *   <Plugin read_kafka_ts>
 *     ...
 *     PipelineMode "auto"            # auto | replace | copy
 *     <Pipeline "cpu_smooth"> ... </Pipeline>   # docs/FILTERS.md; several allowed
 *   </Plugin>
 *
 * Guarantees:
 *  1. Configuration: every <Pipeline> block is validated completely (kts_pipeline_config) and
 *     so are the checks below; every problem is logged naming the pipeline and the option,
 *     then kts_plugin_pipelines_config() fails. Pipeline names are unique within the set (they name
 *     the self-metrics).
 *  2. Routing: a value list goes to the first pipeline (in the order written) whose <Match>
 *     selects it; a value list no pipeline selects is emitted unchanged (raw).
 *  3. Modes (PipelineMode, for every pipeline of the set): "copy" emits the raw value list AND
 *     the pipeline's output (under its Output* names, so the filtered series appear next to
 *     the raw ones); "replace" emits only the pipeline's output; "auto" (default) is copy for a
 *     pipeline with an Output* option and replace for one without (the same rule as the
 *     ts_filter target). Copy without an Output* option is refused at configuration: the copy
 *     would be the same series as the raw value list.
 *  4. A changed value is a gauge (kts_pipeline.h, 4). OutputType must name a type of the
 *     types.db files whose data sources are all GAUGE, or configuration fails naming the type
 *     and its first non-gauge data source. Without OutputType the output keeps the input's
 *     type; an output value list whose values cannot be written in that type (a changed
 *     value or NaN placeholder for a COUNTER/DERIVE/ABSOLUTE data source, a data source count
 *     that differs, an unknown type) is not emitted: counted ("type_refused") and logged
 *     rate-limited with advice. An unchanged integer value into a GAUGE data source is
 *     converted exactly; data source names are those of the output type. (The conversion is
 *     kts_output_typed() with the policy kts_output_read_kafka_ts, src/pipeline/kts_output.h.)
 *  5. Point flags become boolean meta data on the emitted value list, true when any data
 *     source has the flag: "kafka_ts:filled", "kafka_ts:replaced", "kafka_ts:marked",
 *     "kafka_ts:warming", "kafka_ts:absent"; and "kafka_ts:pipeline" (string) names the
 *     pipeline. The input's meta data is kept (points released by the idle expiry of another
 *     series have none).
 *  6. Offsets: everything emitted while a value list is processed (its own outputs, points
 *     released by it, points of idle series expired by it) belongs to the message of that
 *     value list, so an offset waits only for values actually dispatched; a point the pipeline
 *     drops is simply not waited for, and a point it holds back never holds an offset.
 *  7. One mutex per set: kts_plugin_pipelines_process() runs on the one consumer thread; the
 *     statistics may be read from any thread (kts_plugin_pipelines_snapshot()). *  8. StateTopic:
 * kts_plugin_pipelines_state_ops (ctx = the set) are the consumer's state callbacks (kts_consumer.h
 * 12-17) over kts_pipeline_state.h: restore imports a record into the pipeline named by its key (a
 * key of no configured pipeline is refused as "other"), checkpoint exports every pipeline's series
 * of the partition (changed only unless full), revoked drops the partition's series, position is
 * given to every pipeline before each message (so values a restored state already absorbed are
 * skipped, kts_pipeline_state.h 4).
 */
#ifndef KTS_PLUGIN_PIPELINES_H
#define KTS_PLUGIN_PIPELINES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kts_conf.h"
#include "kts_consumer.h"
#include "kts_filter.h"
#include "kts_pipeline.h"
#include "kts_value.h"

#define KTS_META_PIPELINE "kafka_ts:pipeline"
#define KTS_META_FILLED "kafka_ts:filled"
#define KTS_META_REPLACED "kafka_ts:replaced"
#define KTS_META_MARKED "kafka_ts:marked"
#define KTS_META_WARMING "kafka_ts:warming"
#define KTS_META_ABSENT "kafka_ts:absent"

struct kts_plugin_pipelines;

/* What the set counts per pipeline (beyond kts_pipeline_stats and the filters' counters). */
struct kts_plugin_pipelines_counters {
    uint64_t raw;          /* raw value lists emitted next to the output (copy mode) */
    uint64_t emitted;      /* filtered value lists emitted */
    uint64_t kept;         /* data-source points emitted that are not filled/replaced/absent */
    uint64_t replaced;     /* ... replaced outliers */
    uint64_t marked;       /* ... marked outliers */
    uint64_t filled;       /* ... made up for gaps */
    uint64_t warming;      /* ... passed through while warming up */
    uint64_t absent;       /* ... NaN placeholders (dropped for that data source only) */
    uint64_t type_refused; /* output value lists not emitted (4) */
    uint64_t errors;       /* kts_pipeline_process() errors (the message becomes bad) */
    uint64_t absorbed;     /* value lists skipped: a restored state had absorbed them (8) */
};

/* The keys this module reads in the plugin block (Pipeline, PipelineMode): a table whose rows
 * accept them (kts_opt_accept), to pass to kts_opt_apply_sets() next to the caller's own tables;
 * kts_plugin_pipelines_config() checks them. */
extern const struct kts_opt kts_plugin_pipelines_options[];

/* Whether `key` is one of kts_plugin_pipelines_options. */
bool kts_plugin_pipelines_owns_key(const char *key);

/*
 * Build the set from the Pipeline and PipelineMode children of `block` (other children are
 * ignored). `typesdb` lists types.db files (none: the default path of the build). `where`
 * prefixes messages. *out is NULL when the block has no <Pipeline> (not an error), else the
 * caller's (kts_plugin_pipelines_destroy). Returns 0, -EINVAL (every problem logged, summary in
 * errbuf) or -ENOMEM.
 */
int kts_plugin_pipelines_config(const struct kts_conf *block, const struct kts_strv *typesdb,
                                const char *where, struct kts_plugin_pipelines **out, char *errbuf,
                                size_t errbuf_size);

void kts_plugin_pipelines_destroy(
    struct kts_plugin_pipelines *ps); /* NULL is fine; held points are lost */

/* kts_pipeline_fn of kts_consumer.h (opaque = the set): routes `in` (2, 3) and emits. */
int kts_plugin_pipelines_process(struct kts_vl *in, kts_emit_fn emit, void *emit_ctx, void *opaque);

size_t kts_plugin_pipelines_count(const struct kts_plugin_pipelines *ps);
/* Name of pipeline i (owned by the set), and whether it runs in copy mode. */
const char *kts_plugin_pipelines_name(const struct kts_plugin_pipelines *ps, size_t i);
bool kts_plugin_pipelines_copy_mode(const struct kts_plugin_pipelines *ps, size_t i);

/*
 * A consistent copy of pipeline i's counters: `st`, `c`, and up to `fs_max` filter counters
 * into `fs` (caller-owned; filter j is named kts_plugin_pipelines_filter_name()). Returns the
 * number of filters. Thread-safe.
 */
size_t kts_plugin_pipelines_snapshot(struct kts_plugin_pipelines *ps, size_t i,
                                     struct kts_pipeline_stats *st,
                                     struct kts_plugin_pipelines_counters *c,
                                     struct kts_filter_stats *fs, size_t fs_max);
/* (8) The consumer's state callbacks; ctx = the set. */
extern const struct kts_consumer_state_ops kts_plugin_pipelines_state_ops;

const char *kts_plugin_pipelines_filter_name(const struct kts_plugin_pipelines *ps, size_t i,
                                             size_t j);

#endif
