/* SPDX-License-Identifier: MIT */
/* kts_pipeline: see kts_pipeline.h for the configuration syntax and the guarantees. */
#include "kts_pipeline.h"

#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kts_array.h"
#include "kts_log.h"
#include "kts_pipeline_impl.h"
#include "kts_series.h"

static const char *const field_names[F_NUM] = {"Host", "Plugin", "PluginInstance", "Type",
                                               "TypeInstance"};

/* A series' state is a struct pipe_series_hdr, then ds_num blocks of ds_stride bytes, one per
 * data source; ds_num is (state size - SERIES_HDR) / ds_stride (kts_pipeline_impl.h). */

#define ALIGN8(x) (((x) + 7) & ~(size_t)7)
#define MAX_BUF_CAP 1000000

static const char *const when_full_words[] = {"pass", "drop", NULL};

static int match_custom(const struct kts_opt *opt, void *obj, const struct kts_conf *item,
                        const char *where);
static int filter_custom(const struct kts_opt *opt, void *obj, const struct kts_conf *item,
                         const char *where);

#define PC(field) offsetof(struct kts_pipeline, conf) + offsetof(struct pipe_conf, field)

const struct kts_opt kts_pipeline_options[] = {
    {"Match", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, match_custom, 0,
     "block: which series the pipeline takes (Host, Plugin, PluginInstance, Type, TypeInstance; "
     "each an exact name or /regex/, several values = any); no block = every series"},
    {"Filter", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, filter_custom, 0,
     "block <Filter \"name\">: one filter with its options; filters run in the order written"},
    {"OutputHost", KTS_OPT_STRING, PC(out_set[F_HOST]), NULL, 0, 0, NULL, NULL, 0,
     "replace the host name of the output"},
    {"OutputPlugin", KTS_OPT_STRING, PC(out_set[F_PLUGIN]), NULL, 0, 0, NULL, NULL, 0,
     "replace the plugin name of the output"},
    {"OutputPluginInstance", KTS_OPT_STRING, PC(out_set[F_PLUGIN_INSTANCE]), NULL, 0, 0, NULL, NULL,
     0, "replace the plugin instance of the output"},
    {"OutputType", KTS_OPT_STRING, PC(out_set[F_TYPE]), NULL, 0, 0, NULL, NULL, 0,
     "replace the type of the output (must exist in types.db; use a gauge type after a rate)"},
    {"OutputTypeInstance", KTS_OPT_STRING, PC(out_set[F_TYPE_INSTANCE]), NULL, 0, 0, NULL, NULL, 0,
     "replace the type instance of the output"},
    {"OutputHostSuffix", KTS_OPT_STRING, PC(out_suffix[F_HOST]), NULL, 0, 0, NULL, NULL, 0,
     "append this to the host name of the output; on an empty name without its leading '-', '_' or "
     "'.'"},
    {"OutputPluginSuffix", KTS_OPT_STRING, PC(out_suffix[F_PLUGIN]), NULL, 0, 0, NULL, NULL, 0,
     "append this to the plugin name of the output; on an empty name without its leading '-', '_' "
     "or '.'"},
    {"OutputPluginInstanceSuffix", KTS_OPT_STRING, PC(out_suffix[F_PLUGIN_INSTANCE]), NULL, 0, 0,
     NULL, NULL, 0,
     "append this to the plugin instance of the output (e.g. \"-filtered\"); on an empty name "
     "without its leading '-', '_' or '.'"},
    {"OutputTypeSuffix", KTS_OPT_STRING, PC(out_suffix[F_TYPE]), NULL, 0, 0, NULL, NULL, 0,
     "append this to the type of the output; on an empty name without its leading '-', '_' or '.'"},
    {"OutputTypeInstanceSuffix", KTS_OPT_STRING, PC(out_suffix[F_TYPE_INSTANCE]), NULL, 0, 0, NULL,
     NULL, 0,
     "append this to the type instance of the output; on an empty name without its leading '-', "
     "'_' or '.'"},
    {"ExpireAfter", KTS_OPT_DURATION, PC(expire_after), "86400", 0, 1e9, NULL, NULL, 0,
     "forget a series after this many seconds of event time without a value; 0 = never"},
    {"MemoryLimit", KTS_OPT_INT, PC(memory_limit_mb), "1024", 0, 1048576, NULL, NULL, 0,
     "MiB of per-series state this pipeline may use; 0 = no limit"},
    {"WhenFull", KTS_OPT_ENUM, PC(when_full), "pass", 0, 0, when_full_words, NULL, 0,
     "over MemoryLimit, values of new series are passed unfiltered or dropped (counted)"},
    KTS_OPT_END,
};

/* ------------------------------------------------------------------ configuration */

static int match_custom(const struct kts_opt *opt, void *obj, const struct kts_conf *item,
                        const char *where)
{
    struct kts_pipeline *p = obj;
    int errors = 0;
    (void)opt;
    (void)where;
    if (item->values_num != 0) {
        char vals[256];
        kts_log(KTS_LOG_ERR,
                "%s: invalid value %s for <Match>; allowed: none (<Match> takes no "
                "value, only Host, Plugin, ... lines inside)",
                p->where, kts_conf_describe_values(item, vals, sizeof(vals)));
        errors++;
    }
    for (int i = 0; i < item->children_num; i++) {
        const struct kts_conf *c = &item->children[i];
        int f;
        for (f = 0; f < F_NUM; f++)
            if (strcasecmp(c->key, field_names[f]) == 0)
                break;
        if (f == F_NUM) {
            kts_log(KTS_LOG_ERR,
                    "%s: unknown <Match> option \"%s\"; known: Host, Plugin, PluginInstance, "
                    "Type, TypeInstance",
                    p->where, c->key);
            errors++;
            continue;
        }
        if (c->values_num < 1 || c->children_num > 0) {
            kts_log(KTS_LOG_ERR, "%s: <Match> %s needs one or more strings (exact or /regex/)",
                    p->where, field_names[f]);
            errors++;
            continue;
        }
        for (int v = 0; v < c->values_num; v++) {
            if (c->values[v].type != KTS_CONF_STRING) {
                char vals[256];
                kts_log(KTS_LOG_ERR,
                        "%s: <Match> %s: invalid value %s (value %d is not a "
                        "string); allowed: one or more strings, each an exact name or /regex/",
                        p->where, field_names[f], kts_conf_describe_values(c, vals, sizeof(vals)),
                        v + 1);
                errors++;
                continue;
            }
            const char *s = c->values[v].v.string;
            if (KTS_ARRAY_GROW(p->match[f], p->match_cap[f], p->match_n[f] + 1) != 0)
                return -ENOMEM;
            struct pattern *pt = &p->match[f][p->match_n[f]];
            memset(pt, 0, sizeof(*pt));
            size_t len = strlen(s);
            if (len >= 2 && s[0] == '/' && s[len - 1] == '/') {
                pt->text = strndup(s + 1, len - 2);
                if (pt->text == NULL)
                    return -ENOMEM;
                int rc = regcomp(&pt->re, pt->text, REG_EXTENDED | REG_NOSUB);
                if (rc != 0) {
                    char msg[256];
                    regerror(rc, &pt->re, msg, sizeof(msg));
                    kts_log(KTS_LOG_ERR,
                            "%s: <Match> %s: invalid regular expression \"%s\": "
                            "%s; allowed: an exact name or /POSIX extended regex/",
                            p->where, field_names[f], s, msg);
                    free(pt->text);
                    errors++;
                    continue;
                }
                pt->is_regex = true;
            } else {
                pt->text = strdup(s);
                if (pt->text == NULL)
                    return -ENOMEM;
            }
            p->match_n[f]++;
        }
    }
    return errors ? -EINVAL : 0;
}

static int filter_custom(const struct kts_opt *opt, void *obj, const struct kts_conf *item,
                         const char *where)
{
    struct kts_pipeline *p = obj;
    (void)opt;
    (void)where;
    /* Position among the <Filter> blocks as the user counts them: an invalid block still
     * takes its number, so the message about the next one names the block meant. */
    size_t pos = ++p->filter_blocks;
    if (item->values_num != 1 || item->values[0].type != KTS_CONF_STRING) {
        char vals[256];
        kts_log(KTS_LOG_ERR,
                "%s: filter #%zu: invalid name %s for <Filter>; allowed: exactly one "
                "filter name as a string, e.g. <Filter \"smooth\">",
                p->where, pos,
                item->values_num ? kts_conf_describe_values(item, vals, sizeof(vals)) : "(none)");
        return -EINVAL;
    }
    const char *name = item->values[0].v.string;
    const struct kts_filter_ops *ops = kts_filter_find(name);
    if (ops == NULL) {
        char known[256] = "";
        size_t used = 0;
        for (size_t i = 0; kts_filters[i] != NULL && used < sizeof(known); i++) {
            int n = snprintf(known + used, sizeof(known) - used, "%s%s", i ? ", " : "",
                             kts_filters[i]->name);
            if (n < 0)
                break;
            used += (size_t)n;
        }
        kts_log(KTS_LOG_ERR, "%s: filter #%zu: unknown filter \"%s\"; known filters: %s", p->where,
                pos, name, known);
        return -EINVAL;
    }
    if (KTS_ARRAY_GROW(p->filters, p->filters_cap, p->nfilters + 1) != 0)
        return -ENOMEM;
    struct pipe_filter *f = &p->filters[p->nfilters];
    memset(f, 0, sizeof(*f));
    f->ops = ops;
    f->conf = calloc(1, ops->conf_size);
    if (f->conf == NULL)
        return -ENOMEM;
    p->nfilters++;
    char fwhere[512];
    snprintf(fwhere, sizeof(fwhere), "%s: filter #%zu \"%s\"", p->where, pos, ops->name);
    int rc = kts_opt_defaults(ops->options, f->conf);
    if (rc == 0)
        rc = kts_opt_apply(ops->options, f->conf, item, fwhere);
    if (rc == 0 && ops->prepare != NULL)
        rc = ops->prepare(f->conf, fwhere);
    return rc;
}

static void pattern_free(struct pattern *pt)
{
    if (pt->is_regex)
        regfree(&pt->re);
    free(pt->text);
}

void kts_pipeline_destroy(struct kts_pipeline *p)
{
    if (p == NULL)
        return;
    kts_series_table_destroy(p->series, NULL, NULL);
    kts_pipeline_state_free(p);
    for (size_t i = 0; i < p->nfilters; i++) {
        kts_opt_free(p->filters[i].ops->options, p->filters[i].conf);
        free(p->filters[i].conf);
    }
    free(p->filters);
    for (int f = 0; f < F_NUM; f++) {
        for (size_t i = 0; i < p->match_n[f]; i++)
            pattern_free(&p->match[f][i]);
        free(p->match[f]);
    }
    kts_opt_free(kts_pipeline_options, p);
    free(p->buf[0]);
    free(p->buf[1]);
    free(p->ds_out);
    free(p->ds_n);
    free(p->taken);
    free(p->out_ds);
    free(p->out_flags);
    free(p->name);
    free(p->where);
    free(p);
}

/* Room for `ds` data sources in the per-data-source output arrays (all share ds_cap). */
static int ensure_ds(struct kts_pipeline *p, size_t ds)
{
    if (ds <= p->ds_cap)
        return 0;
    size_t n = ds < 8 ? 8 : ds;
    size_t points; /* n * buf_cap: the ds_out and taken arrays hold buf_cap per data source */
    if (__builtin_mul_overflow(n, p->buf_cap, &points))
        return -ENOMEM;
    /* Each array keeps its own capacity while they grow one by one, so a failure half way
     * leaves every array valid; ds_cap is the smallest, set once all have grown. */
    size_t cap_out = p->ds_cap * p->buf_cap, cap_taken = cap_out, cap_n = p->ds_cap,
           cap_ods = p->ds_cap, cap_of = p->ds_cap;
    if (KTS_ARRAY_GROW(p->ds_out, cap_out, points) != 0 ||
        KTS_ARRAY_GROW(p->taken, cap_taken, points) != 0 ||
        KTS_ARRAY_GROW(p->ds_n, cap_n, n) != 0 || KTS_ARRAY_GROW(p->out_ds, cap_ods, n) != 0 ||
        KTS_ARRAY_GROW(p->out_flags, cap_of, n) != 0)
        return -ENOMEM;
    p->ds_cap = n;
    return 0;
}

int kts_pipeline_config(const struct kts_conf *block, const char *where, struct kts_pipeline **out,
                        char *errbuf, size_t errbuf_size)
{
    if (errbuf_size > 0)
        errbuf[0] = '\0';
    if (where == NULL)
        where = "pipeline";
    if (block->values_num != 1 || block->values[0].type != KTS_CONF_STRING ||
        block->values[0].v.string[0] == '\0') {
        char vals[256];
        kts_log(KTS_LOG_ERR,
                "%s: invalid name %s for <%s>; allowed: exactly one non-empty "
                "string, e.g. <Pipeline \"spikes\">",
                where,
                block->values_num ? kts_conf_describe_values(block, vals, sizeof(vals)) : "(none)",
                block->key);
        snprintf(errbuf, errbuf_size, "%s: <%s> needs exactly one name", where, block->key);
        return -EINVAL;
    }
    struct kts_pipeline *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->name = strdup(block->values[0].v.string);
    if (p->name == NULL || asprintf(&p->where, "%s: pipeline \"%s\"", where, p->name) < 0) {
        p->where = NULL;
        kts_pipeline_destroy(p);
        return -ENOMEM;
    }
    int rc = kts_opt_defaults(kts_pipeline_options, p);
    if (rc == 0)
        rc = kts_opt_apply(kts_pipeline_options, p, block, p->where);
    if (rc == 0 && p->nfilters == 0) {
        kts_log(KTS_LOG_ERR, "%s: no <Filter> block; a pipeline needs at least one filter",
                p->where);
        rc = -EINVAL;
    }
    /* Layout of the per-series state and the scratch buffers. */
    size_t cap = 1;
    for (size_t i = 0; rc == 0 && i < p->nfilters; i++) {
        struct pipe_filter *f = &p->filters[i];
        f->state_off = p->ds_stride;
        p->ds_stride += ALIGN8(f->ops->state_size(f->conf));
        size_t mo = f->ops->max_out(f->conf);
        cap *= mo < 1 ? 1 : mo;
        if (cap > MAX_BUF_CAP) {
            kts_log(KTS_LOG_ERR,
                    "%s: the filters together may emit more than %d points per input point "
                    "(several fill filters with large MaxGap?)",
                    p->where, MAX_BUF_CAP);
            rc = -EINVAL;
        }
    }
    p->ds_stride = p->ds_stride < 8 ? 8 : ALIGN8(p->ds_stride);
    if (rc == 0) {
        p->buf_cap = cap;
        p->buf[0] = calloc(cap, sizeof(struct kts_point));
        p->buf[1] = calloc(cap, sizeof(struct kts_point));
        if (p->buf[0] == NULL || p->buf[1] == NULL || ensure_ds(p, 8) < 0)
            rc = -ENOMEM;
    }
    if (rc == 0) {
        p->pos_partition = -1;
        p->pos_offset = -1;
        p->fingerprint = kts_pipeline_compute_fingerprint(p);
        struct kts_series_conf sc = {
            .max_bytes = (size_t)p->conf.memory_limit_mb * 1024 * 1024,
            .expire_after = KTS_TIME_FROM_DOUBLE(p->conf.expire_after),
            .name = p->where,
        };
        rc = kts_series_table_create(&sc, &p->series);
    }
    if (rc < 0) {
        snprintf(errbuf, errbuf_size, "%s: invalid configuration (see the messages above)",
                 p->where);
        kts_pipeline_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

const char *kts_pipeline_name(const struct kts_pipeline *p)
{
    return p->name;
}

size_t kts_pipeline_filter_count(const struct kts_pipeline *p)
{
    return p->nfilters;
}

const char *kts_pipeline_filter_name(const struct kts_pipeline *p, size_t i)
{
    return i < p->nfilters ? p->filters[i].ops->name : NULL;
}

const struct kts_filter_stats *kts_pipeline_filter_stats(const struct kts_pipeline *p, size_t i)
{
    return i < p->nfilters ? &p->filters[i].stats : NULL;
}

void kts_pipeline_get_stats(const struct kts_pipeline *p, struct kts_pipeline_stats *st)
{
    struct kts_series_stats ss;
    kts_series_get_stats(p->series, &ss);
    *st = p->stats;
    st->series = ss.count;
    st->bytes = ss.bytes;
    st->series_expired = ss.expired;
}

/* ------------------------------------------------------------------ matching */

static const char *field_of(const struct kts_vl *vl, int f)
{
    switch (f) {
    case F_HOST:
        return vl->host;
    case F_PLUGIN:
        return vl->plugin;
    case F_PLUGIN_INSTANCE:
        return vl->plugin_instance;
    case F_TYPE:
        return vl->type;
    default:
        return vl->type_instance;
    }
}

bool kts_pipeline_match(const struct kts_pipeline *p, const struct kts_vl *vl)
{
    for (int f = 0; f < F_NUM; f++) {
        if (p->match_n[f] == 0)
            continue;
        const char *s = field_of(vl, f);
        bool any = false;
        for (size_t i = 0; i < p->match_n[f] && !any; i++) {
            const struct pattern *pt = &p->match[f][i];
            any = pt->is_regex ? regexec(&pt->re, s, 0, NULL, 0) == 0 : strcmp(pt->text, s) == 0;
        }
        if (!any)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------ processing */

/* Run points buf[which][0..n-1] through filters f0.. of one data source's state. */
static size_t run_chain(struct kts_pipeline *p, unsigned char *dstate, size_t f0, int *which,
                        size_t n)
{
    for (size_t f = f0; f < p->nfilters && n > 0; f++) {
        struct pipe_filter *pf = &p->filters[f];
        struct kts_out out = {p->buf[!*which], 0, p->buf_cap, &pf->stats};
        for (size_t i = 0; i < n; i++)
            pf->ops->step(pf->conf, dstate + pf->state_off, &p->buf[*which][i], &out);
        *which = !*which;
        n = out.n;
    }
    return n;
}

void kts_pipeline_init_series(struct kts_pipeline *p, unsigned char *state, size_t ds_num)
{
    struct pipe_series_hdr *h = (struct pipe_series_hdr *)state;
    unsigned char *base = state + SERIES_HDR;
    h->offset = -1;
    h->partition = -1;
    h->flags = SERIES_DIRTY;
    for (size_t d = 0; d < ds_num; d++)
        for (size_t f = 0; f < p->nfilters; f++)
            p->filters[f].ops->init(p->filters[f].conf,
                                    base + d * p->ds_stride + p->filters[f].state_off);
}

static bool rename_field(char *dst, const char *in, const char *set, const char *suffix)
{
    const char *base = set != NULL ? set : in;
    suffix = kts_name_suffix(base, suffix); /* no leading separator on an empty name */
    size_t bl = strnlen(base, KTS_NAME_MAX), sl = suffix != NULL ? strlen(suffix) : 0;
    if (bl + sl >= KTS_NAME_MAX)
        return false;
    memcpy(dst, base, bl);
    if (sl > 0)
        memcpy(dst + bl, suffix, sl);
    dst[bl + sl] = '\0';
    return true;
}

/* Emit the collected per-DS outputs (p->ds_out/ds_n) as value lists. */
static int assemble(struct kts_pipeline *p, const struct kts_vl *in, size_t ds_num,
                    kts_pipeline_emit_fn emit, void *opaque)
{
    struct kts_vl out;
    bool ok = true;
    for (int f = 0; f < F_NUM; f++) {
        char *dst = (char *)field_of(&out, f);
        ok = ok && rename_field(dst, field_of(in, f), p->conf.out_set[f], p->conf.out_suffix[f]);
    }
    if (!ok) {
        p->stats.name_too_long++;
        kts_log_limited(&p->rl_name, KTS_LOG_WARNING,
                        "%s: an output name of %s/%s/%s would be longer than %d bytes; value "
                        "list dropped",
                        p->where, in->host, in->plugin, in->type, KTS_NAME_MAX - 1);
        return 0;
    }
    out.interval = in->interval;
    out.meta = in->meta;
    out.meta_len = in->meta_len;
    out.ds = p->out_ds;
    out.ds_len = ds_num;
    for (size_t d = 0; d < ds_num; d++)
        memset(p->taken + d * p->buf_cap, 0, p->ds_n[d] * sizeof(bool));
    for (size_t d = 0; d < ds_num; d++) {
        for (size_t i = 0; i < p->ds_n[d]; i++) {
            if (p->taken[d * p->buf_cap + i])
                continue;
            kts_time_t t = p->ds_out[d * p->buf_cap + i].t;
            out.time = t;
            for (size_t d2 = 0; d2 < ds_num; d2++) {
                struct kts_ds *ds = &out.ds[d2];
                if (in->ds != NULL)
                    memcpy(ds->name, in->ds[d2].name,
                           strnlen(in->ds[d2].name, KTS_NAME_MAX - 1) + 1);
                else
                    ds->name[0] = '\0';
                ds->name[KTS_NAME_MAX - 1] = '\0';
                ds->type = KTS_DS_GAUGE;
                ds->value.gauge = NAN;
                p->out_flags[d2] = KTS_PT_ABSENT;
                for (size_t j = (d2 == d ? i : 0); j < p->ds_n[d2]; j++) {
                    struct kts_point *pt = &p->ds_out[d2 * p->buf_cap + j];
                    if (p->taken[d2 * p->buf_cap + j] || pt->t != t)
                        continue;
                    p->taken[d2 * p->buf_cap + j] = true;
                    if (pt->flags & KTS_PT_RAW) {
                        ds->type = pt->type;
                        ds->value = pt->raw;
                    } else {
                        ds->value.gauge = pt->value;
                    }
                    p->out_flags[d2] = pt->flags;
                    if (out.interval == 0)
                        out.interval = pt->interval;
                    break;
                }
            }
            p->stats.value_lists_out++;
            int rc = emit(&out, p->out_flags, opaque);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

struct flush_ctx {
    struct kts_pipeline *p;
    kts_pipeline_emit_fn emit;
    void *opaque;
    int rc;
};

static void flush_series(const void *key, size_t key_len, void *state, size_t state_size,
                         void *opaque);

/* An idle series expires: its held points are emitted, its tombstone remembered. */
static void expire_series(const void *key, size_t key_len, void *state, size_t state_size,
                          void *opaque)
{
    struct flush_ctx *fc = opaque;
    flush_series(key, key_len, state, state_size, opaque);
    kts_pipeline_state_expired(fc->p, key, key_len, state);
}

/* Flush every filter of one series and emit what comes out. */
static void flush_series(const void *key, size_t key_len, void *state, size_t state_size,
                         void *opaque)
{
    struct flush_ctx *fc = opaque;
    struct kts_pipeline *p = fc->p;
    size_t ds_num = (state_size - SERIES_HDR) / p->ds_stride;
    if (fc->rc != 0 || fc->emit == NULL)
        return;
    bool any = false;
    for (size_t f = 0; f < p->nfilters; f++)
        any = any || p->filters[f].ops->flush != NULL;
    if (!any || ensure_ds(p, ds_num) < 0)
        return;
    size_t total = 0;
    for (size_t d = 0; d < ds_num; d++) {
        unsigned char *dstate = (unsigned char *)state + SERIES_HDR + d * p->ds_stride;
        p->ds_n[d] = 0;
        for (size_t f = 0; f < p->nfilters; f++) {
            struct pipe_filter *pf = &p->filters[f];
            if (pf->ops->flush == NULL)
                continue;
            struct kts_out out = {p->buf[0], 0, p->buf_cap, &pf->stats};
            pf->ops->flush(pf->conf, dstate + pf->state_off, &out);
            int which = 0;
            size_t n = run_chain(p, dstate, f + 1, &which, out.n);
            for (size_t i = 0; i < n && p->ds_n[d] < p->buf_cap; i++)
                p->ds_out[d * p->buf_cap + p->ds_n[d]++] = p->buf[which][i];
        }
        total += p->ds_n[d];
    }
    if (total == 0)
        return;
    struct kts_vl in;
    memset(&in, 0, sizeof(in));
    kts_series_identity_names(&in, key, key_len);
    fc->rc = assemble(p, &in, ds_num, fc->emit, fc->opaque);
}

/* The state of vl's series (kts_series_get()'s return value): created and set up, or restarted
 * when its number of data sources changed (its position and whether it was persisted stay). */
static int get_series(struct kts_pipeline *p, const struct kts_vl *vl, const char *key,
                      size_t key_len, unsigned char **state)
{
    size_t want = SERIES_HDR + vl->ds_len * p->ds_stride, have;
    void *st;
    int rc = kts_series_get(p->series, key, key_len, want, vl->time, &st, &have);
    if (rc == 0 && (have - SERIES_HDR) / p->ds_stride != vl->ds_len) {
        struct pipe_series_hdr old = *(struct pipe_series_hdr *)st;
        p->stats.restarted++;
        kts_series_remove(p->series, st);
        rc = kts_series_get(p->series, key, key_len, want, vl->time, &st, &have);
        if (rc == 1) {
            kts_pipeline_init_series(p, st, vl->ds_len);
            struct pipe_series_hdr *h = st;
            h->flags |= old.flags & SERIES_PERSISTED;
            h->partition = old.partition;
            h->offset = old.offset;
            rc = 0;
        }
    } else if (rc == 1) {
        kts_pipeline_init_series(p, st, vl->ds_len);
    }
    *state = st;
    return rc;
}

/* Process one value list whose series identity (kts_series_identity()) is `key`. */
static int process_one(struct kts_pipeline *p, const struct kts_vl *vl, const char *key,
                       size_t key_len, kts_pipeline_emit_fn emit, void *opaque)
{
    unsigned char *state;
    int rc = ensure_ds(p, vl->ds_len);
    if (rc < 0)
        return rc;
    p->stats.value_lists_in++;
    rc = get_series(p, vl, key, key_len, &state);
    if (rc == -ENOSPC) {
        p->stats.refused++;
        if (p->conf.when_full == 1)
            return 0;
        for (size_t d = 0; d < vl->ds_len; d++) {
            struct kts_point *pt = &p->ds_out[d * p->buf_cap];
            memset(pt, 0, sizeof(*pt));
            pt->t = vl->time;
            pt->interval = vl->interval;
            pt->type = (uint8_t)vl->ds[d].type;
            pt->raw = vl->ds[d].value;
            pt->flags = KTS_PT_RAW;
            p->ds_n[d] = 1;
        }
        return assemble(p, vl, vl->ds_len, emit, opaque);
    }
    if (rc < 0)
        return rc;
    struct pipe_series_hdr *h = (struct pipe_series_hdr *)state;
    if (p->pos_partition >= 0) {
        /* Guarantee 4 of kts_pipeline_state.h: already absorbed by the series' state. */
        if (h->partition == p->pos_partition && p->pos_offset <= h->offset) {
            p->sstats.absorbed++;
            return 0;
        }
        h->partition = p->pos_partition;
        h->offset = p->pos_offset;
    }
    h->flags |= SERIES_DIRTY;
    unsigned char *base = state + SERIES_HDR;
    for (size_t d = 0; d < vl->ds_len; d++) {
        struct kts_point *pt = &p->buf[0][0];
        memset(pt, 0, sizeof(*pt));
        pt->t = vl->time;
        pt->interval = vl->interval;
        pt->type = (uint8_t)vl->ds[d].type;
        pt->raw = vl->ds[d].value;
        pt->flags = KTS_PT_RAW;
        switch (vl->ds[d].type) {
        case KTS_DS_COUNTER:
            pt->value = (double)vl->ds[d].value.counter;
            break;
        case KTS_DS_DERIVE:
            pt->value = (double)vl->ds[d].value.derive;
            break;
        case KTS_DS_ABSOLUTE:
            pt->value = (double)vl->ds[d].value.absolute;
            break;
        default:
            pt->value = vl->ds[d].value.gauge;
            break;
        }
        int which = 0;
        size_t n = run_chain(p, base + d * p->ds_stride, 0, &which, 1);
        memcpy(&p->ds_out[d * p->buf_cap], p->buf[which], n * sizeof(struct kts_point));
        p->ds_n[d] = n;
    }
    return assemble(p, vl, vl->ds_len, emit, opaque);
}

/* Batches: the slot of value list i + PF_AHEAD is prefetched, and the series header and the
 * first line of each filter's state of value list i + PF_AHEAD / 2, so the cache misses of
 * several series overlap instead of queueing one after the other (guarantee 9). Keys are
 * packed once, into a ring of PF_AHEAD + 1 keys. */
static void prefetch_stage(struct kts_pipeline *p, const struct kts_vl *vl, const char *key,
                           size_t key_len, int stage)
{
    const unsigned char *st = kts_series_prefetch(p->series, key, key_len, stage);
    if (st == NULL)
        return;
    st += SERIES_HDR;
    for (size_t d = 0; d < vl->ds_len; d++)
        for (size_t f = 0; f < p->nfilters; f++)
            __builtin_prefetch(st + d * p->ds_stride + p->filters[f].state_off);
}

int kts_pipeline_process(struct kts_pipeline *p, const struct kts_vl *vls, size_t n,
                         kts_pipeline_emit_fn emit, void *opaque)
{
    char(*keys)[KTS_SERIES_IDENTITY_MAX] = p->keys;
    size_t *key_lens = p->key_lens;
    bool batch = n > 1;
    p->mutations++; /* series may be created, changed, expired */
    /* Prime: pack and prefetch the first PF_AHEAD keys. */
    for (size_t j = 0; batch && j < PF_AHEAD && j < n; j++) {
        key_lens[j % (PF_AHEAD + 1)] = kts_series_identity(keys[j % (PF_AHEAD + 1)], &vls[j]);
        prefetch_stage(p, &vls[j], keys[j % (PF_AHEAD + 1)], key_lens[j % (PF_AHEAD + 1)], 0);
        if (j >= PF_AHEAD / 2) {
            size_t k = j - PF_AHEAD / 2;
            prefetch_stage(p, &vls[k], keys[k % (PF_AHEAD + 1)], key_lens[k % (PF_AHEAD + 1)], 1);
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct kts_vl *vl = &vls[i];
        size_t r = i % (PF_AHEAD + 1);
        if (batch) {
            size_t j = i + PF_AHEAD, k = i + PF_AHEAD / 2;
            if (j < n) {
                key_lens[j % (PF_AHEAD + 1)] =
                    kts_series_identity(keys[j % (PF_AHEAD + 1)], &vls[j]);
                prefetch_stage(p, &vls[j], keys[j % (PF_AHEAD + 1)], key_lens[j % (PF_AHEAD + 1)],
                               0);
            }
            if (k < n)
                prefetch_stage(p, &vls[k], keys[k % (PF_AHEAD + 1)], key_lens[k % (PF_AHEAD + 1)],
                               1);
        } else {
            key_lens[r] = kts_series_identity(keys[r], vl);
        }
        if (!kts_pipeline_match(p, vl))
            continue;
        int rc = process_one(p, vl, keys[r], key_lens[r], emit, opaque);
        if (rc != 0)
            return rc;
        if (vl->time > p->clock)
            p->clock = vl->time;
        /* Amortised expiry: a couple of idle series per value list. */
        struct flush_ctx fc = {p, emit, opaque, 0};
        kts_series_expire(p->series, p->clock, 2, expire_series, &fc);
        if (fc.rc != 0)
            return fc.rc;
    }
    return 0;
}

int kts_pipeline_flush(struct kts_pipeline *p, kts_pipeline_emit_fn emit, void *opaque)
{
    struct flush_ctx fc = {p, emit, opaque, 0};
    p->mutations++;
    kts_series_foreach(p->series, flush_series, &fc);
    return fc.rc;
}
