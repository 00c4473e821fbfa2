/* SPDX-License-Identifier: MIT */
/* kts_plugin_pipelines: see kts_plugin_pipelines.h for the guarantees (numbers below refer to
 * them). */
#include "kts_plugin_pipelines.h"

#include "build-config.h"
#include "kts_array.h"
#include "kts_log.h"
#include "kts_output.h"
#include "kts_pipeline_state.h"
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

struct pipe {
    struct kts_pipeline *p;
    bool copy;
    struct kts_plugin_pipelines_counters c;
    struct kts_ratelimit rl;
};

struct kts_plugin_pipelines {
    char *where; /* message prefix, e.g. "read_kafka_ts plugin (agg)" */
    struct pipe *pipes;
    size_t n;
    struct kts_typesdb *types;
    pthread_mutex_t lock;
    struct kts_output out; /* scratch for one output value list (consumer thread, under lock) */
};

const struct kts_opt kts_plugin_pipelines_options[] = {
    {"PipelineMode", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, kts_opt_accept, 0,
     "auto | replace | copy, for every <Pipeline> of the block (checked by "
     "kts_plugin_pipelines_config)"},
    {"Pipeline", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, kts_opt_accept, 0,
     "block <Pipeline \"name\"> (docs/FILTERS.md; checked by kts_plugin_pipelines_config)"},
    KTS_OPT_END,
};

bool kts_plugin_pipelines_owns_key(const char *key)
{
    for (const struct kts_opt *o = kts_plugin_pipelines_options; o->name != NULL; o++)
        if (strcasecmp(o->name, key) == 0)
            return true;
    return false;
}

void kts_plugin_pipelines_destroy(struct kts_plugin_pipelines *ps)
{
    if (ps == NULL)
        return;
    for (size_t i = 0; i < ps->n; i++)
        kts_pipeline_destroy(ps->pipes[i].p);
    free(ps->pipes);
    free(ps->where);
    kts_typesdb_destroy(ps->types);
    kts_output_fini(&ps->out);
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

/* PipelineMode (3) into *mode, and the number of <Pipeline> blocks; returns the problems. */
static int scan_block(const struct kts_conf *block, const char *where, int *mode, int *npipes)
{
    int errors = 0;
    for (int i = 0; i < block->children_num; i++) {
        const struct kts_conf *c = &block->children[i];
        if (strcasecmp(c->key, "Pipeline") == 0) {
            (*npipes)++;
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
                *mode = m;
            }
        }
    }
    return errors;
}

/* The types.db files (none: the build's default); 0, or the error logged. */
static int load_types(struct kts_plugin_pipelines *ps, const struct kts_strv *typesdb,
                      const char *where)
{
    char err[512] = "";
    int rc = 0;
    if (typesdb == NULL || typesdb->n == 0)
        rc = kts_typesdb_load_file(ps->types, KTS_TYPESDB_DEFAULT, err, sizeof(err));
    for (size_t i = 0; rc == 0 && typesdb != NULL && i < typesdb->n; i++)
        rc = kts_typesdb_load_file(ps->types, typesdb->v[i], err, sizeof(err));
    if (rc < 0)
        kts_log(KTS_LOG_ERR, "%s: %s", where, err);
    return rc;
}

/* OutputType (4): a type of types.db whose data sources are all gauges. Returns the problems. */
static int check_output_type(const struct kts_plugin_pipelines *ps, const char *name,
                             const char *ot, const char *where)
{
    const struct kts_typesdb_type *t = kts_typesdb_find(ps->types, ot);
    if (t == NULL) {
        kts_log(KTS_LOG_ERR,
                "%s: pipeline \"%s\": OutputType \"%s\" is not in "
                "types.db; allowed: a type of the TypesDB files whose data sources are "
                "all GAUGE",
                where, name, ot);
        return 1;
    }
    for (size_t d = 0; d < t->ds_num; d++)
        if (t->ds[d].type != KTS_DS_GAUGE) {
            kts_log(KTS_LOG_ERR,
                    "%s: pipeline \"%s\": OutputType \"%s\": data source "
                    "\"%s\" is %s, but filtered values are gauges; use a type whose "
                    "data sources are all GAUGE (e.g. \"gauge\" for one value)",
                    where, name, ot, t->ds[d].name, ds_type_name(t->ds[d].type));
            return 1;
        }
    return 0;
}

/* Configure one <Pipeline> block `item` into the set (1, 3, 4). Returns the problems found,
 * or -ENOMEM. `types_ok`: the types.db files loaded (OutputType can be checked). */
static int add_pipeline(struct kts_plugin_pipelines *ps, const struct kts_conf *item, int mode,
                        bool types_ok, const char *where)
{
    char err[512] = "";
    struct kts_pipeline *p = NULL;
    int prc = kts_pipeline_config(item, where, &p, err, sizeof(err));
    if (prc == -ENOMEM)
        return -ENOMEM;
    if (prc < 0)
        return 1;
    int errors = 0;
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
    if (ot != NULL && types_ok)
        errors += check_output_type(ps, name, ot, where);
    return errors;
}

int kts_plugin_pipelines_config(const struct kts_conf *block, const struct kts_strv *typesdb,
                                const char *where, struct kts_plugin_pipelines **out, char *errbuf,
                                size_t errbuf_size)
{
    *out = NULL;
    /* The summary counts every problem listed above it: options, <Filter> blocks and their
     * options each log one error line per problem, while kts_pipeline_config() fails once. */
    unsigned long logged_before = kts_log_error_count();
    int mode = MODE_AUTO, npipes = 0;
    int errors = scan_block(block, where, &mode, &npipes);
    if (npipes == 0) {
        if (errors == 0)
            return 0;
        snprintf(errbuf, errbuf_size, "invalid PipelineMode");
        return -EINVAL;
    }
    struct kts_plugin_pipelines *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return -ENOMEM;
    pthread_mutex_init(&ps->lock, NULL);
    ps->pipes = calloc((size_t)npipes, sizeof(*ps->pipes));
    ps->types = kts_typesdb_create();
    ps->where = strdup(where);
    if (ps->pipes == NULL || ps->types == NULL || ps->where == NULL) {
        kts_plugin_pipelines_destroy(ps);
        return -ENOMEM;
    }
    int rc = load_types(ps, typesdb, where);
    errors += rc < 0;
    for (int i = 0; i < block->children_num; i++) {
        const struct kts_conf *item = &block->children[i];
        if (strcasecmp(item->key, "Pipeline") != 0)
            continue;
        int e = add_pipeline(ps, item, mode, rc == 0, where);
        if (e == -ENOMEM) {
            kts_plugin_pipelines_destroy(ps);
            return -ENOMEM;
        }
        errors += e;
    }
    if (errors > 0) {
        unsigned long logged = kts_log_error_count() - logged_before;
        if (logged > (unsigned long)errors)
            errors = (int)logged;
        snprintf(errbuf, errbuf_size, "%d problem(s) in the <Pipeline> configuration", errors);
        kts_plugin_pipelines_destroy(ps);
        return -EINVAL;
    }
    *out = ps;
    return 0;
}

/* ------------------------------------------------------------------ processing */

struct emit_ctx {
    struct kts_plugin_pipelines *ps;
    struct pipe *pp;
    kts_emit_fn emit;
    void *emit_ctx;
};

/* The per-point counters of an emitted value list (kts_plugin_pipelines_counters). */
static void count_points(struct pipe *pp, const uint16_t *flags, size_t n)
{
    for (size_t d = 0; d < n; d++) {
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
}

/* kts_pipeline_emit_fn: convert to the output type (4) and add the meta data (5) with
 * kts_output_typed() under read_kafka_ts's policy (a changed value for an integer data source
 * is refused), emit. */
static int on_output(const struct kts_vl *o, const uint16_t *flags, void *opaque)
{
    struct emit_ctx *ec = opaque;
    struct kts_plugin_pipelines *ps = ec->ps;
    struct pipe *pp = ec->pp;
    const char *name = kts_pipeline_name(pp->p);
    const struct kts_typesdb_type *t = kts_typesdb_find(ps->types, o->type);
    int rc = -EINVAL;
    if (t != NULL)
        rc = kts_output_typed(o, flags, t, name, &kts_output_read_kafka_ts, &ps->out);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0) {
        pp->c.type_refused++;
        kts_log_limited(&pp->rl, KTS_LOG_WARNING,
                        "%s: pipeline \"%s\": output %s/%s/%s not dispatched: %s; set "
                        "OutputType to an all-gauge type (e.g. \"gauge\")",
                        ps->where, name, o->host, o->plugin, o->type,
                        t == NULL ? "the output type is not in types.db" : ps->out.why);
        return 0;
    }
    count_points(pp, flags, o->ds_len);
    rc = ec->emit(&ps->out.vl, ec->emit_ctx);
    if (rc == 0)
        pp->c.emitted++;
    return rc;
}

int kts_plugin_pipelines_process(struct kts_vl *in, kts_emit_fn emit, void *emit_ctx, void *opaque)
{
    struct kts_plugin_pipelines *ps = opaque;
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

size_t kts_plugin_pipelines_count(const struct kts_plugin_pipelines *ps)
{
    return ps ? ps->n : 0;
}

const char *kts_plugin_pipelines_name(const struct kts_plugin_pipelines *ps, size_t i)
{
    return kts_pipeline_name(ps->pipes[i].p);
}

bool kts_plugin_pipelines_copy_mode(const struct kts_plugin_pipelines *ps, size_t i)
{
    return ps->pipes[i].copy;
}

const char *kts_plugin_pipelines_filter_name(const struct kts_plugin_pipelines *ps, size_t i,
                                             size_t j)
{
    return kts_pipeline_filter_name(ps->pipes[i].p, j);
}

size_t kts_plugin_pipelines_snapshot(struct kts_plugin_pipelines *ps, size_t i,
                                     struct kts_pipeline_stats *st,
                                     struct kts_plugin_pipelines_counters *c,
                                     struct kts_filter_stats *fs, size_t fs_max)
{
    pthread_mutex_lock(&ps->lock);
    struct pipe *pp = &ps->pipes[i];
    kts_pipeline_get_stats(pp->p, st);
    *c = pp->c;
    struct kts_pipeline_state_stats ss;
    kts_pipeline_state_get_stats(pp->p, &ss);
    c->absorbed = ss.absorbed;
    size_t nf = kts_pipeline_filter_count(pp->p);
    for (size_t j = 0; j < nf && j < fs_max; j++)
        fs[j] = *kts_pipeline_filter_stats(pp->p, j);
    pthread_mutex_unlock(&ps->lock);
    return nf;
}

/* ------------------------------------------------------------------ StateTopic (8) */

/* The pipe whose name the key starts with (the name, NUL, the series identity), or NULL. */
static struct pipe *pipe_of_key(struct kts_plugin_pipelines *ps, const void *key, size_t klen)
{
    const char *k = key;
    const char *nul = memchr(k, '\0', klen);
    if (nul == NULL)
        return NULL;
    for (size_t i = 0; i < ps->n; i++)
        if (strcmp(kts_plugin_pipelines_name(ps, i), k) == 0)
            return &ps->pipes[i];
    return NULL;
}

static int state_restore(void *ctx, int32_t partition, const void *key, size_t klen,
                         const void *val, size_t vlen)
{
    struct kts_plugin_pipelines *ps = ctx;
    (void)partition; /* the record carries its own position */
    struct pipe *pp = pipe_of_key(ps, key, klen);
    if (pp == NULL)
        return KTS_STATE_REFUSED_OTHER; /* a pipeline no longer configured */
    enum kts_state_refusal why = KTS_STATE_OK;
    pthread_mutex_lock(&ps->lock);
    int rc = kts_pipeline_state_import(pp->p, key, klen, val, vlen, &why);
    pthread_mutex_unlock(&ps->lock);
    if (rc == 0)
        return KTS_STATE_RESTORED;
    return why == KTS_STATE_CONFIG    ? KTS_STATE_REFUSED_CONFIG
           : why == KTS_STATE_VERSION ? KTS_STATE_REFUSED_VERSION
           : why == KTS_STATE_CORRUPT ? KTS_STATE_REFUSED_CORRUPT
                                      : KTS_STATE_REFUSED_OTHER;
}

struct put_ctx {
    kts_state_put_fn put;
    void *pctx;
};

static int export_one(const void *key, size_t klen, const void *rec, size_t rlen, int32_t partition,
                      void *opaque)
{
    struct put_ctx *pc = opaque;
    (void)partition;
    int rc = pc->put(pc->pctx, key, klen, rec, rlen);
    return rc < 0 ? rc : 0;
}

static int state_checkpoint(void *ctx, int32_t partition, bool full, kts_state_put_fn put,
                            void *pctx)
{
    struct kts_plugin_pipelines *ps = ctx;
    struct put_ctx pc = {put, pctx};
    int rc = 0;
    pthread_mutex_lock(&ps->lock);
    for (size_t i = 0; i < ps->n && rc == 0; i++)
        rc = kts_pipeline_state_export(ps->pipes[i].p, partition, !full, export_one, &pc);
    pthread_mutex_unlock(&ps->lock);
    return rc < 0 ? rc : rc > 0 ? -EIO : 0;
}

static void state_revoked(void *ctx, int32_t partition)
{
    struct kts_plugin_pipelines *ps = ctx;
    pthread_mutex_lock(&ps->lock);
    for (size_t i = 0; i < ps->n; i++)
        kts_pipeline_state_drop_partition(ps->pipes[i].p, partition);
    pthread_mutex_unlock(&ps->lock);
}

static void state_position(void *ctx, int32_t partition, int64_t offset)
{
    struct kts_plugin_pipelines *ps = ctx;
    pthread_mutex_lock(&ps->lock);
    for (size_t i = 0; i < ps->n; i++)
        kts_pipeline_set_position(ps->pipes[i].p, partition, offset);
    pthread_mutex_unlock(&ps->lock);
}

const struct kts_consumer_state_ops kts_plugin_pipelines_state_ops = {
    state_restore, state_checkpoint, state_revoked, state_position};
