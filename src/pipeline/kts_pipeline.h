/* SPDX-License-Identifier: MIT */
/*
 * kts_pipeline: runs the filters of one <Pipeline> block, in the order written, per data source
 * of each matching series, with per-series state in a kts_series table.
 *
 * Configuration (the same block in read_kafka_ts, ts_filter and kts-filter; docs/FILTERS.md):
 *
 *   <Pipeline "spikes">
 *     <Match>
 *       Host "/^web/"            # exact string, or /POSIX extended regex/
 *       Plugin "cpu" "memory"    # several values: any of them
 *     </Match>
 *     <Filter "outlier">
 *       Method "hampel"
 *       Window 3600
 *     </Filter>
 *     <Filter "smooth">
 *       Method "ema"
 *       Tau 300
 *     </Filter>
 *     OutputPluginInstanceSuffix "-filtered"
 *   </Pipeline>
 *
 * Guarantees:
 *  1. kts_pipeline_config() validates the whole block (every option of every filter, the
 *     match patterns, the output names) and logs every problem before failing.
 *  2. Each data source of each series (series = host, plugin, plugin instance, type, type
 *     instance) is an independent time series with its own state; the pipeline never reads the
 *     wall clock. Its clock for idle expiry is the newest event time it has seen.
 *  3. Filters run in the order written; the points one filter emits are the next one's input.
 *  4. Output value lists: one per distinct emitted timestamp, in the order emitted; a data
 *     source with no point at that timestamp (it was dropped for that data source only) is a
 *     NaN gauge flagged KTS_PT_ABSENT. A value no filter changed keeps its data-source type
 *     and integer value; a changed one is a gauge (a plugin dispatching it needs an output
 *     type whose data sources are gauges, e.g. OutputType "gauge" after a rate). Names are
 *     rewritten by the Output* options.
 *  5. A series whose number of data sources changes is restarted (state reset, counted).
 *  6. Over the memory limit, new series are not filtered: with WhenFull "pass" (default) their
 *     values are emitted unchanged, with "drop" they are dropped; either way counted.
 *  7. Not thread-safe: one pipeline per thread, or the caller serialises.
 *  8. Batching does not matter: feeding the same value lists one by one or in batches of any
 *     size gives identical output.
 *  9. A batch (n > 1 in one kts_pipeline_process() call) is faster at many series, never
 *     different: the series of the value lists a few places ahead are prefetched (slot, then
 *     header and the first line of each filter's state), so their cache misses overlap.
 *
 * A series' whole state can be exported as a record and imported into another pipeline of the
 * same configuration (kts_pipeline_state.h).
 */
#ifndef KTS_PIPELINE_H
#define KTS_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kts_conf.h"
#include "kts_filter.h"
#include "kts_value.h"

struct kts_pipeline;

/*
 * Called for each output value list. `out` (and its ds array) is only valid during the call;
 * `out->meta` points at the input's meta data (borrowed; NULL for value lists made by a flush).
 * `flags[i]` are the KTS_PT_* flags of data source i. Return 0 to go on; a non-zero value stops
 * the current kts_pipeline_process() call, which returns it.
 */
typedef int (*kts_pipeline_emit_fn)(const struct kts_vl *out, const uint16_t *flags, void *opaque);

/*
 * Build a pipeline from a <Pipeline "name"> block (kts_conf.h). `where` prefixes messages
 * (e.g. "read_kafka_ts plugin"). On success *out is the caller's (kts_pipeline_destroy).
 * Returns 0, -EINVAL (every problem logged; a summary in errbuf) or -ENOMEM.
 */
int kts_pipeline_config(const struct kts_conf *block, const char *where, struct kts_pipeline **out,
                        char *errbuf, size_t errbuf_size);

/* Free everything (held points are discarded: call kts_pipeline_flush() first to get them). */
void kts_pipeline_destroy(struct kts_pipeline *p);

const char *kts_pipeline_name(const struct kts_pipeline *p);

/* Whether `vl` is selected by the pipeline's <Match> (no <Match> = everything). */
bool kts_pipeline_match(const struct kts_pipeline *p, const struct kts_vl *vl);

/*
 * Run `n` value lists (only read) through the pipeline, calling `emit` for each output value
 * list. Value lists that do not match are ignored (the caller tests kts_pipeline_match() if it
 * wants to route them elsewhere). Also expires a few idle series (their held points are
 * emitted first). Returns 0, -ENOMEM, or the first non-zero value `emit` returned.
 */
int kts_pipeline_process(struct kts_pipeline *p, const struct kts_vl *vls, size_t n,
                         kts_pipeline_emit_fn emit, void *opaque);

/* Emit what every filter of every series holds back (end of input, shutdown). */
int kts_pipeline_flush(struct kts_pipeline *p, kts_pipeline_emit_fn emit, void *opaque);

struct kts_pipeline_stats {
    uint64_t value_lists_in;  /* matching value lists processed */
    uint64_t value_lists_out; /* value lists emitted */
    uint64_t refused;         /* value lists of series refused by the memory limit */
    uint64_t restarted;       /* series restarted because their data sources changed */
    uint64_t name_too_long;   /* value lists dropped: an output name exceeded 127 bytes */
    size_t series;            /* series in the table */
    size_t bytes;             /* memory in use by the series table */
    uint64_t series_expired;
};
void kts_pipeline_get_stats(const struct kts_pipeline *p, struct kts_pipeline_stats *st);

/* Filters of the pipeline, in order: count, and the name and counters of filter i. */
size_t kts_pipeline_filter_count(const struct kts_pipeline *p);
const char *kts_pipeline_filter_name(const struct kts_pipeline *p, size_t i);
const struct kts_filter_stats *kts_pipeline_filter_stats(const struct kts_pipeline *p, size_t i);

/* The option table of the <Pipeline> block itself (for docs); Match and Filter are blocks. */
extern const struct kts_opt kts_pipeline_options[];

#endif
