/* SPDX-License-Identifier: MIT */
/* kts_pipeset: see kts_pipeset.h for the guarantees (numbers below refer to them). */
#include "kts_pipeset.h"

#include "build-config.h"
#include "kts_array.h"
#include "kts_log.h"
#include "kts_typesdb.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { MODE_AUTO, MODE_REPLACE, MODE_COPY };
static const char *const mode_words[] = {"auto", "replace", "copy", NULL};

#define EXTRA_META 6 /* pipeline name + five flags */

struct pipe {
    struct kts_pipeline *p;
    bool copy;
    struct kts_pipeset_counters c;
    struct kts_ratelimit rl;
};

struct kts_pipeset {
    char *where; /* message prefix, e.g. "read_kafka_ts plugin (agg)" */
    struct pipe *pipes;
    size_t n;
    struct kts_typesdb *types;
    pthread_mutex_t lock;
    /* Scratch for one output value list (consumer thread, under lock). */
    struct kts_ds *ds;
    size_t ds_cap;
    struct kts_meta *meta;
    size_t meta_cap;
};

bool kts_pipeset_owns_key(const char *key)
{
    return strcasecmp(key, "Pipeline") == 0 || strcasecmp(key, "PipelineMode") == 0;
}

void kts_pipeset_destroy(struct kts_pipeset *ps)
{
    if (ps == NULL)
        return;
    for (size_t i = 0; i < ps->n; i++)
        kts_pipeline_destroy(ps->pipes[i].p);
    free(ps->pipes);
    free(ps->where);
    kts_typesdb_destroy(ps->types);
    free(ps->ds);
    free(ps->meta);
    pthread_mutex_destroy(&ps->lock);
    free(ps);
}

static const char *ds_type_name(enum kts_ds_type t)
{
    switch (t) {
    case KTS_DS_COUNTER:
        return "COUNTER";
    case KTS_DS_GAUGE:
        return "GAUGE";
    case KTS_DS_DERIVE:
        return "DERIVE";
    case KTS_DS_ABSOLUTE:
        return "ABSOLUTE";
    }
    return "?";
}

/* OutputType of a pipeline block (4): NULL when absent. */
static const char *output_type(const struct kts_conf *item)
{
    const char *t = NULL;
    for (int i = 0; i < item->children_num; i++) {
        const struct kts_conf *c = &item->children[i];
        if (strcasecmp(c->key, "OutputType") == 0 && c->values_num == 1 &&
            c->values[0].type == KTS_CONF_STRING)
            t = c->values[0].v.string;
    }
    return t;
}

static bool renames(const struct kts_conf *item)
{
    for (int i = 0; i < item->children_num; i++)
        if (strncasecmp(item->children[i].key, "Output", 6) == 0)
            return true;
    return false;
}

int kts_pipeset_config(const struct kts_conf *block, const struct kts_strv *typesdb,
                       const char *where, struct kts_pipeset **out, char *errbuf,
                       size_t errbuf_size)
{
    *out = NULL;
    /* The summary counts every problem listed above it: options, <Filter> blocks and their
     * options each log one error line per problem, while kts_pipeline_config() fails once. */
    unsigned long logged_before = kts_log_error_count();
    int mode = MODE_AUTO, errors = 0, npipes = 0;
    for (int i = 0; i < block->children_num; i++) {
        const struct kts_conf *c = &block->children[i];
        if (strcasecmp(c->key, "Pipeline") == 0) {
            npipes++;
        } else if (strcasecmp(c->key, "PipelineMode") == 0) {
            int m = -1;
            if (c->values_num == 1 && c->values[0].type == KTS_CONF_STRING)
                for (int w = 0; mode_words[w] != NULL; w++)
                    if (strcasecmp(c->values[0].v.string, mode_words[w]) == 0)
                        m = w;
            if (m < 0) {
                char buf[256];
                kts_log(KTS_LOG_ERR,
                        "%s: invalid value %s for option \"PipelineMode\"; allowed: "
                        "one of \"auto\", \"replace\", \"copy\"",
                        where, kts_conf_describe_values(c, buf, sizeof(buf)));
                errors++;
            } else {
                mode = m;
            }
        }
    }
    if (npipes == 0) {
        if (errors == 0)
            return 0;
        snprintf(errbuf, errbuf_size, "invalid PipelineMode");
        return -EINVAL;
    }
    struct kts_pipeset *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return -ENOMEM;
    pthread_mutex_init(&ps->lock, NULL);
    ps->pipes = calloc((size_t)npipes, sizeof(*ps->pipes));
    ps->types = kts_typesdb_create();
    ps->where = strdup(where);
    if (ps->pipes == NULL || ps->types == NULL || ps->where == NULL) {
        kts_pipeset_destroy(ps);
        return -ENOMEM;
    }
    int rc = 0;
    char err[512] = "";
    if (typesdb == NULL || typesdb->n == 0)
        rc = kts_typesdb_load_file(ps->types, KTS_TYPESDB_DEFAULT, err, sizeof(err));
    for (size_t i = 0; rc == 0 && typesdb != NULL && i < typesdb->n; i++)
        rc = kts_typesdb_load_file(ps->types, typesdb->v[i], err, sizeof(err));
    if (rc < 0) {
        kts_log(KTS_LOG_ERR, "%s: %s", where, err);
        errors++;
    }

    for (int i = 0; i < block->children_num; i++) {
        const struct kts_conf *item = &block->children[i];
        if (strcasecmp(item->key, "Pipeline") != 0)
            continue;
        struct kts_pipeline *p = NULL;
        int prc = kts_pipeline_config(item, where, &p, err, sizeof(err));
        if (prc == -ENOMEM) {
            kts_pipeset_destroy(ps);
            return -ENOMEM;
        }
        if (prc < 0) {
            errors++;
            continue;
        }
        const char *name = kts_pipeline_name(p);
        struct pipe *pp = &ps->pipes[ps->n++];
        pp->p = p;
        pp->rl.interval_s = 10;
        bool rn = renames(item);
        pp->copy = mode == MODE_COPY || (mode == MODE_AUTO && rn);
        if (mode == MODE_COPY && !rn) {
            kts_log(KTS_LOG_ERR,
                    "%s: pipeline \"%s\": PipelineMode \"copy\" needs an Output* "
                    "option (e.g. OutputPluginInstanceSuffix \"-filtered\"): without one the "
                    "filtered values would be the same series as the raw ones",
                    where, name);
            errors++;
        }
        for (size_t j = 0; j + 1 < ps->n; j++)
            if (strcmp(kts_pipeline_name(ps->pipes[j].p), name) == 0) {
                kts_log(KTS_LOG_ERR,
                        "%s: two <Pipeline> blocks are named \"%s\": give each "
                        "its own name (it names the self-metrics)",
                        where, name);
                errors++;
            }
        const char *ot = output_type(item);
        if (ot != NULL && rc == 0) {
            const struct kts_typesdb_type *t = kts_typesdb_find(ps->types, ot);
            if (t == NULL) {
                kts_log(KTS_LOG_ERR,
                        "%s: pipeline \"%s\": OutputType \"%s\" is not in "
                        "types.db; allowed: a type of the TypesDB files whose data sources are "
                        "all GAUGE",
                        where, name, ot);
                errors++;
            }
            for (size_t d = 0; t != NULL && d < t->ds_num; d++)
                if (t->ds[d].type != KTS_DS_GAUGE) {
                    kts_log(KTS_LOG_ERR,
                            "%s: pipeline \"%s\": OutputType \"%s\": data source "
                            "\"%s\" is %s, but filtered values are gauges; use a type whose "
                            "data sources are all GAUGE (e.g. \"gauge\" for one value)",
                            where, name, ot, t->ds[d].name, ds_type_name(t->ds[d].type));
                    errors++;
                    break;
                }
        }
    }
    if (errors > 0) {
        unsigned long logged = kts_log_error_count() - logged_before;
        if (logged > (unsigned long)errors)
            errors = (int)logged;
        snprintf(errbuf, errbuf_size, "%d problem(s) in the <Pipeline> configuration", errors);
        kts_pipeset_destroy(ps);
        return -EINVAL;
    }
    *out = ps;
    return 0;
}

/* ------------------------------------------------------------------ processing */

struct emit_ctx {
    struct kts_pipeset *ps;
    struct pipe *pp;
    kts_emit_fn emit;
    void *emit_ctx;
};

static double as_double(const struct kts_ds *d)
{
    switch (d->type) {
    case KTS_DS_COUNTER:
        return (double)d->value.counter;
    case KTS_DS_DERIVE:
        return (double)d->value.derive;
    case KTS_DS_ABSOLUTE:
        return (double)d->value.absolute;
    default:
        return d->value.gauge;
    }
}

/* kts_pipeline_emit_fn: convert to the output type (4), add the flags (5), emit. */
static int on_output(const struct kts_vl *o, const uint16_t *flags, void *opaque)
{
    struct emit_ctx *ec = opaque;
    struct kts_pipeset *ps = ec->ps;
    struct pipe *pp = ec->pp;
    const char *name = kts_pipeline_name(pp->p);
    const struct kts_typesdb_type *t = kts_typesdb_find(ps->types, o->type);
    const char *why = NULL;
    if (t == NULL)
        why = "the output type is not in types.db";
    else if (t->ds_num != o->ds_len)
        why = "the output type has another number of data sources";
    if (why == NULL && (KTS_ARRAY_GROW(ps->ds, ps->ds_cap, o->ds_len) < 0 ||
                        KTS_ARRAY_GROW(ps->meta, ps->meta_cap, o->meta_len + EXTRA_META) < 0))
        return -ENOMEM;
    uint16_t any = 0;
    for (size_t d = 0; why == NULL && d < o->ds_len; d++) {
        struct kts_ds *dst = &ps->ds[d];
        const struct kts_ds *src = &o->ds[d];
        memcpy(dst->name, t->ds[d].name, sizeof(dst->name));
        dst->type = t->ds[d].type;
        if (src->type == t->ds[d].type)
            dst->value = src->value;
        else if (t->ds[d].type == KTS_DS_GAUGE)
            dst->value.gauge = as_double(src); /* an unchanged integer: exact up to 2^53 */
        else
            why = (flags[d] & KTS_PT_ABSENT) ? "a data source without a value (NaN) cannot be "
                                               "written as an integer"
                                             : "a filtered value is a gauge but the output "
                                               "type's data source is not";
        any |= flags[d];
    }
    if (why != NULL) {
        pp->c.type_refused++;
        kts_log_limited(&pp->rl, KTS_LOG_WARNING,
                        "%s: pipeline \"%s\": output %s/%s/%s not dispatched: %s; set "
                        "OutputType to an all-gauge type (e.g. \"gauge\")",
                        ps->where, name, o->host, o->plugin, o->type, why);
        return 0;
    }
    for (size_t d = 0; d < o->ds_len; d++) {
        if (flags[d] & KTS_PT_ABSENT)
            pp->c.absent++;
        else if (flags[d] & KTS_PT_FILLED)
            pp->c.filled++;
        else if (flags[d] & KTS_PT_REPLACED)
            pp->c.replaced++;
        else
            pp->c.kept++;
        if (flags[d] & KTS_PT_MARKED)
            pp->c.marked++;
        if (flags[d] & KTS_PT_WARMING)
            pp->c.warming++;
    }
    struct kts_vl v = *o;
    v.ds = ps->ds;
    size_t m = 0;
    for (size_t i = 0; i < o->meta_len; i++)
        if (strncmp(o->meta[i].key, "kafka_ts:", 9) != 0) /* ours are set below */
            ps->meta[m++] = o->meta[i];
    ps->meta[m++] = (struct kts_meta){
        .key = (char *)KTS_META_PIPELINE, .type = KTS_META_STRING, .value.string = (char *)name};
    static const struct {
        uint16_t flag;
        const char *key;
    } keys[] = {{KTS_PT_FILLED, KTS_META_FILLED},
                {KTS_PT_REPLACED, KTS_META_REPLACED},
                {KTS_PT_MARKED, KTS_META_MARKED},
                {KTS_PT_WARMING, KTS_META_WARMING},
                {KTS_PT_ABSENT, KTS_META_ABSENT}};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
        if (any & keys[k].flag)
            ps->meta[m++] = (struct kts_meta){
                .key = (char *)keys[k].key, .type = KTS_META_BOOLEAN, .value.boolean = true};
    v.meta = ps->meta;
    v.meta_len = m;
    int rc = ec->emit(&v, ec->emit_ctx);
    if (rc == 0)
        pp->c.emitted++;
    return rc;
}

int kts_pipeset_process(struct kts_vl *in, kts_emit_fn emit, void *emit_ctx, void *opaque)
{
    struct kts_pipeset *ps = opaque;
    struct pipe *pp = NULL;
    for (size_t i = 0; i < ps->n && pp == NULL; i++)
        if (kts_pipeline_match(ps->pipes[i].p, in))
            pp = &ps->pipes[i];
    if (pp == NULL)
        return emit(in, emit_ctx); /* (2) */
    pthread_mutex_lock(&ps->lock);
    int rc = 0;
    if (pp->copy) {
        rc = emit(in, emit_ctx);
        if (rc == 0)
            pp->c.raw++;
    }
    if (rc == 0) {
        struct emit_ctx ec = {ps, pp, emit, emit_ctx};
        rc = kts_pipeline_process(pp->p, in, 1, on_output, &ec);
        if (rc < 0)
            pp->c.errors++;
    }
    pthread_mutex_unlock(&ps->lock);
    return rc;
}

/* ------------------------------------------------------------------ introspection */

size_t kts_pipeset_count(const struct kts_pipeset *ps)
{
    return ps ? ps->n : 0;
}

const char *kts_pipeset_name(const struct kts_pipeset *ps, size_t i)
{
    return kts_pipeline_name(ps->pipes[i].p);
}

bool kts_pipeset_copy_mode(const struct kts_pipeset *ps, size_t i)
{
    return ps->pipes[i].copy;
}

const char *kts_pipeset_filter_name(const struct kts_pipeset *ps, size_t i, size_t j)
{
    return kts_pipeline_filter_name(ps->pipes[i].p, j);
}

size_t kts_pipeset_snapshot(struct kts_pipeset *ps, size_t i, struct kts_pipeline_stats *st,
                            struct kts_pipeset_counters *c, struct kts_filter_stats *fs,
                            size_t fs_max)
{
    pthread_mutex_lock(&ps->lock);
    struct pipe *pp = &ps->pipes[i];
    kts_pipeline_get_stats(pp->p, st);
    *c = pp->c;
    size_t nf = kts_pipeline_filter_count(pp->p);
    for (size_t j = 0; j < nf && j < fs_max; j++)
        fs[j] = *kts_pipeline_filter_stats(pp->p, j);
    pthread_mutex_unlock(&ps->lock);
    return nf;
}
