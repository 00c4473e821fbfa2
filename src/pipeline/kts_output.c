/* SPDX-License-Identifier: MIT */
/* kts_output: see kts_output.h for the guarantees (numbers below refer to them). */
#include "kts_output.h"

#include "kts_array.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kts_filter.h"

const struct kts_output_policy kts_output_read_kafka_ts = {KTS_OUTPUT_REFUSE, "kafka_ts:", true,
                                                           true};
const struct kts_output_policy kts_output_ts_filter = {KTS_OUTPUT_ROUND, "ts_filter:", false,
                                                       false};
const struct kts_output_policy kts_output_kts_filter = {KTS_OUTPUT_REFUSE, NULL, false, false};

/* The flags that become meta data (4), in this order, after the pipeline key. */
static const struct {
    uint16_t flag;
    const char *name;
} flag_keys[] = {
    {KTS_PT_FILLED, "filled"},   {KTS_PT_REPLACED, "replaced"}, {KTS_PT_MARKED, "marked"},
    {KTS_PT_WARMING, "warming"}, {KTS_PT_ABSENT, "absent"},
};
#define NFLAGS (sizeof(flag_keys) / sizeof(flag_keys[0]))
#define EXTRA_META (1 + NFLAGS) /* the pipeline key and the flags */

double kts_ds_as_double(const struct kts_ds *ds)
{
    switch (ds->type) {
    case KTS_DS_COUNTER:
        return (double)ds->value.counter;
    case KTS_DS_DERIVE:
        return (double)ds->value.derive;
    case KTS_DS_ABSOLUTE:
        return (double)ds->value.absolute;
    default:
        return ds->value.gauge;
    }
}

void kts_output_fini(struct kts_output *out)
{
    free(out->ds);
    free(out->meta);
    memset(out, 0, sizeof(*out));
}

/* A value of another type for the integer data source `dst` (2): 0, or -ERANGE with *why. */
static int to_integer(struct kts_ds *dst, const struct kts_ds *src, uint16_t flags,
                      enum kts_output_integers policy, const char **why)
{
    if (policy == KTS_OUTPUT_REFUSE) {
        *why = (flags & KTS_PT_ABSENT) ? "a data source without a value (NaN) cannot be "
                                         "written as an integer"
                                       : "a filtered value is a gauge but the output "
                                         "type's data source is not";
        return -ERANGE;
    }
    double d = round(kts_ds_as_double(src));
    *why = "a value cannot be written as an integer (NaN, negative or out of range)";
    if (dst->type == KTS_DS_DERIVE) {
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
            return -ERANGE;
        dst->value.derive = (int64_t)d;
    } else {
        if (!(d >= 0 && d < 18446744073709551616.0))
            return -ERANGE;
        if (dst->type == KTS_DS_COUNTER)
            dst->value.counter = (uint64_t)d;
        else
            dst->value.absolute = (uint64_t)d;
    }
    return 0;
}

/* The data sources of `o` into out->ds in the types of `type` (1, 2, 3). */
static int convert_values(const struct kts_vl *o, const uint16_t *flags,
                          const struct kts_typesdb_type *type,
                          const struct kts_output_policy *policy, struct kts_output *out)
{
    uint64_t rounded = 0;
    for (size_t d = 0; d < o->ds_len; d++) {
        struct kts_ds *dst = &out->ds[d];
        const struct kts_ds *src = &o->ds[d];
        if (type != NULL) {
            memcpy(dst->name, type->ds[d].name, sizeof(dst->name));
            dst->type = type->ds[d].type;
        } else {
            memcpy(dst->name, src->name, sizeof(dst->name));
            dst->type = KTS_DS_GAUGE;
        }
        out->flags_any |= flags[d];
        if (src->type == dst->type) {
            dst->value = src->value;
        } else if (dst->type == KTS_DS_GAUGE) {
            dst->value.gauge = kts_ds_as_double(src);
        } else {
            if (to_integer(dst, src, flags[d], policy->integers, &out->why) < 0)
                return -ERANGE;
            rounded++;
        }
    }
    out->rounded = rounded;
    return 0;
}

/* Build the meta keys of `prefix` once (they stay while the prefix does). */
static void build_keys(struct kts_output *out, const char *prefix)
{
    if (out->keys_prefix == prefix)
        return;
    snprintf(out->keys[0], sizeof(out->keys[0]), "%.*spipeline", KTS_OUTPUT_PREFIX_MAX, prefix);
    for (size_t k = 0; k < NFLAGS; k++)
        snprintf(out->keys[1 + k], sizeof(out->keys[1 + k]), "%.*s%s", KTS_OUTPUT_PREFIX_MAX,
                 prefix, flag_keys[k].name);
    out->keys_prefix = prefix;
}

/* The meta data of the typed value list (4). */
static size_t build_meta(const struct kts_vl *o, const char *pipeline,
                         const struct kts_output_policy *policy, struct kts_output *out)
{
    const char *prefix = policy->meta_prefix;
    size_t m = 0, plen = strlen(prefix);
    build_keys(out, prefix);
    for (size_t i = 0; policy->keep_meta && i < o->meta_len; i++)
        if (strncmp(o->meta[i].key, prefix, plen) != 0) /* ours are set below */
            out->meta[m++] = o->meta[i];
    if (policy->name_pipeline)
        out->meta[m++] = (struct kts_meta){
            .key = out->keys[0], .type = KTS_META_STRING, .value.string = (char *)pipeline};
    for (size_t k = 0; k < NFLAGS; k++)
        if (out->flags_any & flag_keys[k].flag)
            out->meta[m++] = (struct kts_meta){
                .key = out->keys[1 + k], .type = KTS_META_BOOLEAN, .value.boolean = true};
    return m;
}

int kts_output_typed(const struct kts_vl *o, const uint16_t *flags,
                     const struct kts_typesdb_type *type, const char *pipeline,
                     const struct kts_output_policy *policy, struct kts_output *out)
{
    out->why = NULL;
    out->rounded = 0;
    out->flags_any = 0;
    if (type != NULL && type->ds_num != o->ds_len) {
        out->why = "the output type has another number of data sources";
        return -EINVAL;
    }
    size_t meta_want = policy->meta_prefix == NULL ? 0
                       : policy->keep_meta         ? o->meta_len + EXTRA_META
                                                   : EXTRA_META;
    if (KTS_ARRAY_GROW(out->ds, out->ds_cap, o->ds_len) < 0 ||
        KTS_ARRAY_GROW(out->meta, out->meta_cap, meta_want) < 0)
        return -ENOMEM;
    int rc = convert_values(o, flags, type, policy, out);
    if (rc < 0)
        return rc;
    out->vl = *o;
    out->vl.ds = out->ds;
    out->vl.meta = out->meta;
    out->vl.meta_len = policy->meta_prefix != NULL ? build_meta(o, pipeline, policy, out) : 0;
    if (out->vl.meta_len == 0)
        out->vl.meta = NULL;
    return 0;
}
