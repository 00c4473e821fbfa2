/* SPDX-License-Identifier: MIT */
/*
 * kts_output: a pipeline's output value list (kts_pipeline_emit_fn) written in the types of its
 * output type, with the point flags as meta data: the one conversion read_kafka_ts
 * (src/pipeline/kts_plugin_pipelines.c), the ts_filter target and kts-filter share. What differs
 * between them is a policy, passed explicitly (struct kts_output_policy).
 *
 * Guarantees:
 *  1. A data source whose value already has the type the output type wants is copied bit for
 *     bit (an integer no filter changed stays that integer); any value into a GAUGE data source
 *     is converted to a double (exact for integers up to 2^53).
 *  2. A value of another type for a COUNTER/DERIVE/ABSOLUTE data source (a changed value is a
 *     gauge, kts_pipeline.h 4; a NaN placeholder is a gauge flagged KTS_PT_ABSENT) follows the
 *     policy: KTS_OUTPUT_REFUSE refuses the value list; KTS_OUTPUT_ROUND rounds it to the
 *     nearest integer (counted in `rounded`) and refuses the value list only when the result
 *     cannot be written (NaN, negative for COUNTER/ABSOLUTE, out of the 64-bit range).
 *  3. A refused value list is reported with a reason (`why`, for the caller's log line) and
 *     nothing of it is written: either every data source converts or none does.
 *  4. Meta data, in this order: the output's own meta data (the input's) without the keys
 *     starting with the policy's prefix (keep_meta); "<prefix>pipeline" (string), the pipeline's
 *     name (name_pipeline); "<prefix>filled", "<prefix>replaced", "<prefix>marked",
 *     "<prefix>warming", "<prefix>absent" (boolean true) for each flag some data source has.
 *  5. No allocation once the scratch has grown to the largest value list seen; not thread-safe
 *     (one scratch per thread, or the caller serialises).
 */
#ifndef KTS_OUTPUT_H
#define KTS_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kts_typesdb.h"
#include "kts_value.h"

/* What a value of another type for an integer data source becomes (guarantee 2). */
enum kts_output_integers {
    /* The value list is refused (-ERANGE). read_kafka_ts: a filtered value written into a
     * COUNTER or DERIVE series would be read as a counter, so such a pipeline must set an
     * all-gauge OutputType; the refusal is counted and logged with that advice. */
    KTS_OUTPUT_REFUSE,
    /* Rounded to the nearest integer; NaN or out of range refuses the value list (-ERANGE).
     * The ts_filter target: it rewrites a value list of the chain in its own type. */
    KTS_OUTPUT_ROUND,
};

/* Longest meta-data prefix: the keys are built in fixed buffers. */
#define KTS_OUTPUT_PREFIX_MAX 32

struct kts_output_policy {
    enum kts_output_integers integers;
    /* Prefix of the flag keys and of the pipeline key (e.g. "kafka_ts:", "ts_filter:"), at most
     * KTS_OUTPUT_PREFIX_MAX bytes; NULL: no meta data at all (guarantee 4). */
    const char *meta_prefix;
    bool name_pipeline; /* add "<prefix>pipeline" */
    bool keep_meta;     /* keep the output's meta data (without keys starting with the prefix) */
};

/* The policies of the three users, as they are documented in their references. */
extern const struct kts_output_policy kts_output_read_kafka_ts; /* REFUSE, "kafka_ts:", both */
extern const struct kts_output_policy kts_output_ts_filter;     /* ROUND, "ts_filter:", flags */
extern const struct kts_output_policy kts_output_kts_filter;    /* REFUSE, no meta data */

/* The result, in caller-owned scratch reused from call to call: zero it once, release it with
 * kts_output_fini(). */
struct kts_output {
    struct kts_vl vl;   /* the typed value list; ds and meta point into the scratch, meta
                         * strings into the output and the policy (valid until the next call
                         * and while the output given to kts_output_typed() is) */
    uint64_t rounded;   /* data sources rounded (KTS_OUTPUT_ROUND), 0 when refused */
    uint16_t flags_any; /* the KTS_PT_* flags of any data source */
    const char *why;    /* refused: the reason (static text) */
    /* private */
    struct kts_ds *ds;
    size_t ds_cap;
    struct kts_meta *meta;
    size_t meta_cap;
    const char *keys_prefix;
    char keys[6][KTS_OUTPUT_PREFIX_MAX + 16];
};

/*
 * Write `o` (a pipeline output, with its per-data-source KTS_PT_* `flags`) into out->vl in the
 * types of `type`: data-source names and types from `type`, or, when `type` is NULL, every data
 * source a GAUGE under its own name (kts-filter, which prints doubles). `pipeline` names the
 * pipeline (for name_pipeline). Returns 0; -EINVAL when `type` has another number of data
 * sources; -ERANGE when a value cannot be written under the policy (guarantee 2); -ENOMEM.
 * Both refusals set out->why.
 */
int kts_output_typed(const struct kts_vl *o, const uint16_t *flags,
                     const struct kts_typesdb_type *type, const char *pipeline,
                     const struct kts_output_policy *policy, struct kts_output *out);

void kts_output_fini(struct kts_output *out);

/* The value of a data source as a double (a counter, derive or absolute converted). */
double kts_ds_as_double(const struct kts_ds *ds);

#endif
