/* SPDX-License-Identifier: MIT */
/*
 * ts_filter: the streaming filters (src/pipeline/kts_pipeline.h) as a collectd filter-chain target
 * (docs/ts_filter.md).
 *
 *   LoadPlugin ts_filter                # before the chain: create runs while it is parsed
 *   <Chain "PreCache">
 *     <Rule "smooth_cpu">
 *       <Match "regex"> Plugin "^cpu$" </Match>
 *       <Target "ts_filter">
 *         Mode "auto"                     # auto | replace | copy
 *         <Pipeline "edge"> ... </Pipeline>   # one or more; the first that matches runs
 *       </Target>
 *     </Rule>
 *   </Chain>
 *
 * Guarantees:
 *  1. Configuration: every problem of every <Pipeline> block and of the target's own options
 *     is logged naming the option; create then fails (collectd refuses the chain and stops
 *     before start-up) and init fails too. Pipeline names are unique over all ts_filter targets
 *     (they name the self-metrics).
 *  2. A value list no pipeline matches continues unchanged.
 *  3. Replace mode (default when the pipeline has no Output* option): when the pipeline emits
 *     exactly one value list for the input, at the input's time, the value list is rewritten in
 *     place and continues; when it emits nothing, the value list is dropped (FC_TARGET_STOP);
 *     otherwise (filled points, a held-back point released, several points) every emitted
 *     value list is dispatched, in emission order, and the original is dropped.
 *  4. Copy mode (default when the pipeline has an Output* option): the original continues
 *     unchanged and every emitted value list is dispatched under the output names.
 *  5. Dispatched value lists carry the meta key "ts_filter:emitted" (true); every ts_filter
 *     target lets such value lists through untouched, so nothing is filtered twice and no
 *     loop is possible. They carry the input's meta data too (except points of an idle
 *     series released by expiry, which have none).
 *  6. Point flags become boolean meta keys on the output (in place or dispatched):
 *     "ts_filter:filled", "ts_filter:replaced", "ts_filter:marked", "ts_filter:warming",
 *     "ts_filter:absent" (true when any data source has the flag).
 *  7. Values are written in the types of the data set of the output's type: a changed value
 *     for a COUNTER/DERIVE/ABSOLUTE data source is rounded to the nearest integer (counted
 *     "rounded"); NaN or a negative value for an unsigned one cannot be written: that value
 *     list is dropped (counted "unrepresentable"). (kts_output_typed() with the policy
 *     kts_output_ts_filter, src/pipeline/kts_output.h.)
 *  8. Thread safety: invoke runs in collectd's write threads concurrently; each pipeline has a
 *     mutex held while it processes one value list and dispatches its outputs (dispatch only
 *     enqueues). Value lists carrying read_kafka_ts's marker pass untouched unless
 *     FilterReadKafka is true (read_kafka_ts confirms deliveries per value list; use its own
 *     <Pipeline> blocks).
 *  9. Self-metrics: a read callback dispatches each pipeline's counters and memory under
 *     plugin "ts_filter", plugin instance = the pipeline name.
 * 10. StateFile: the target's pipelines' per-series state is loaded from the file at init,
 *     and written atomically (src/pipeline/kts_state_file.h) every StateInterval seconds (by
 *     the read callback, so at most as often as collectd's Interval) and at shutdown, when
 *     nothing is flushed: held points stay in the state. A missing file is a fresh start; a
 *     damaged one is logged and renamed to PATH.bad-TIMESTAMP; a record of another
 *     configuration is refused for its series (counted, logged once); none of it is fatal. A
 *     file is used by one target only.
 */
#include "kts_collectd.h"

#include "filter_chain.h"
#include "kts_array.h"
#include "kts_log.h"
#include "kts_output.h"
#include "kts_pipeline.h"
#include "kts_pipeline_state.h"
#include "kts_state_file.h"
#include "utils/metadata/meta_data.h"

#include <pthread.h>

#define PLUGIN_NAME "ts_filter"
#define TSF_META_EMITTED "ts_filter:emitted"

enum tsf_mode { TSF_MODE_AUTO, TSF_MODE_REPLACE, TSF_MODE_COPY };

/* One data source of an emitted value list. */
struct tsf_val {
    union kts_value v;
    uint8_t type; /* enum kts_ds_type */
    uint16_t flags;
};

/* One emitted value list, copied out of the emit callback. */
struct tsf_rec {
    char host[KTS_NAME_MAX], plugin[KTS_NAME_MAX], plugin_instance[KTS_NAME_MAX];
    char type[KTS_NAME_MAX], type_instance[KTS_NAME_MAX];
    kts_time_t time, interval;
    size_t off, n; /* into tsf_pipe.vals */
    uint16_t flags_any;
    bool own; /* emitted for the input (not released by the expiry of another series) */
};

struct tsf_counters {
    uint64_t passed_emitted;  /* value lists we dispatched ourselves, passed through */
    uint64_t passed_kafka;    /* read_kafka_ts value lists passed through */
    uint64_t in_place;        /* rewritten in place (replace mode) */
    uint64_t stopped;         /* originals dropped (FC_TARGET_STOP) */
    uint64_t dispatched;      /* value lists dispatched */
    uint64_t dispatch_failed; /* unknown output type, out of memory, dispatch error */
    uint64_t rounded;         /* changed values written into integer data sources */
    uint64_t unrepresentable; /* NaN / negative into an integer data source: dropped */
    uint64_t errors;          /* conversion or pipeline errors: value passed unfiltered */
};

struct tsf_pipe {
    struct kts_pipeline *p;
    pthread_mutex_t lock;
    bool copy; /* resolved mode */
    struct tsf_counters c;
    /* Scratch for one invoke (under lock). */
    struct tsf_rec *recs;
    size_t nrecs, caprecs;
    struct tsf_val *vals;
    size_t nvals, capvals;
    const struct kts_meta *own_tag;
    struct kts_output out; /* one record in the output's types (rec_typed) */
    struct kts_ratelimit rl;
};

struct tsf_target {
    int mode;               /* enum tsf_mode (KTS_OPT_ENUM) */
    bool filter_read_kafka; /* KTS_OPT_BOOL */
    char *state_file;       /* KTS_OPT_STRING; NULL = no state kept */
    double state_interval;  /* KTS_OPT_DURATION, seconds */
    cdtime_t state_next;    /* when the read callback saves next */
    struct tsf_pipe **pipes;
    size_t npipes;
    bool failed;
};

/* Every target made by create, indexed by user_data - 1 (set at config time, before any
 * write thread runs; entries are cleared by destroy/shutdown). */
static struct tsf_target **targets;
static size_t targets_num;
static bool config_failed;
static pthread_mutex_t targets_lock = PTHREAD_MUTEX_INITIALIZER;

/* A non-NULL meta pointer we hand the pipeline with every input: outputs that carry it were
 * emitted for that input (kts_pipeline_emit_fn: out->meta is the input's, NULL after expiry). */
static const struct kts_meta own_tag_storage[1];

static void pipe_free(struct tsf_pipe *tp)
{
    if (tp == NULL)
        return;
    kts_pipeline_destroy(tp->p);
    pthread_mutex_destroy(&tp->lock);
    free(tp->recs);
    free(tp->vals);
    kts_output_fini(&tp->out);
    free(tp);
}

static void target_free(struct tsf_target *tg)
{
    if (tg == NULL)
        return;
    for (size_t i = 0; i < tg->npipes; i++)
        pipe_free(tg->pipes[i]);
    free(tg->pipes);
    free(tg->state_file);
    free(tg);
}

/* KTS_OPT_CUSTOM for <Pipeline>: build the pipeline and append it to the target (obj). */
static int opt_pipeline(const struct kts_opt *opt, void *obj, const struct kts_conf *item,
                        const char *where)
{
    (void)opt;
    struct tsf_target *tg = obj;
    char err[512];
    struct kts_pipeline *p = NULL;
    int rc = kts_pipeline_config(item, where, &p, err, sizeof(err));
    if (rc < 0) {
        tg->failed = true;
        return rc;
    }
    bool renames = false;
    for (int i = 0; i < item->children_num; i++)
        if (strncasecmp(item->children[i].key, "Output", 6) == 0)
            renames = true;
    struct tsf_pipe *tp = calloc(1, sizeof(*tp));
    struct tsf_pipe **np = realloc(tg->pipes, (tg->npipes + 1) * sizeof(*np));
    if (tp == NULL || np == NULL) {
        free(tp);
        if (np != NULL)
            tg->pipes = np;
        kts_pipeline_destroy(p);
        return -ENOMEM;
    }
    tg->pipes = np;
    tp->p = p;
    tp->copy = renames; /* the auto mode; Mode overrides after all options are applied */
    tp->own_tag = own_tag_storage;
    pthread_mutex_init(&tp->lock, NULL);
    tg->pipes[tg->npipes++] = tp;
    return 0;
}

static const char *const mode_words[] = {"auto", "replace", "copy", NULL};

#define TO(f) offsetof(struct tsf_target, f)
static const struct kts_opt tsf_options[] = {
    {"Mode", KTS_OPT_ENUM, TO(mode), "auto", 0, 0, mode_words, NULL, 0,
     "auto: copy when the pipeline renames its output (Output* options), else replace; replace: "
     "rewrite the value list in place (drop it when the pipeline drops the point); copy: keep "
     "the original and dispatch the filtered value lists under the output names"},
    {"FilterReadKafka", KTS_OPT_BOOL, TO(filter_read_kafka), "false", 0, 0, NULL, NULL, 0,
     "also filter value lists dispatched by read_kafka_ts (by default they pass untouched; use "
     "read_kafka_ts's own <Pipeline> blocks)"},
    {"StateFile", KTS_OPT_STRING, TO(state_file), NULL, 0, 0, NULL, NULL, 0,
     "file that keeps the pipelines' per-series state across restarts: loaded at start, written "
     "atomically every StateInterval seconds and at shutdown (missing: fresh start; damaged: set "
     "aside); unset: nothing kept"},
    {"StateInterval", KTS_OPT_DURATION, TO(state_interval), "300", 1, 86400, NULL, NULL, 0,
     "seconds between two writes of StateFile (also written at shutdown)"},
    {"Pipeline", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, opt_pipeline, 0,
     "block <Pipeline \"name\">: the same syntax as in read_kafka_ts and kts-filter "
     "(docs/FILTERS.md); several: the first whose <Match> selects the value list runs"},
    KTS_OPT_END,
};

static bool has_output_type(const oconfig_item_t *pipeline)
{
    for (int i = 0; i < pipeline->children_num; i++)
        if (strcasecmp(pipeline->children[i].key, "OutputType") == 0 ||
            strcasecmp(pipeline->children[i].key, "OutputTypeSuffix") == 0)
            return true;
    return false;
}

static int tsf_create(const oconfig_item_t *ci, void **user_data)
{
    kts_collectd_log_init();
    struct kts_conf *conf = kts_collectd_conf(ci, "collectd.conf");
    struct tsf_target *tg = calloc(1, sizeof(*tg));
    if (conf == NULL || tg == NULL) {
        kts_conf_free(conf);
        free(tg);
        ERROR(PLUGIN_NAME " target: out of memory");
        config_failed = true;
        return -1;
    }
    int rc = kts_opt_defaults(tsf_options, tg);
    if (rc == 0)
        rc = kts_opt_apply(tsf_options, tg, conf, PLUGIN_NAME " target");
    kts_conf_free(conf);
    if (tg->failed)
        rc = -EINVAL;
    if (rc == 0 && tg->npipes == 0) {
        ERROR(PLUGIN_NAME " target: no <Pipeline> block; a <Target \"" PLUGIN_NAME
                          "\"> needs at least one (docs/ts_filter.md)");
        rc = -EINVAL;
    }
    /* Mode against each pipeline's naming. */
    size_t k = 0;
    for (int i = 0; rc == 0 && i < ci->children_num; i++) {
        const oconfig_item_t *c = &ci->children[i];
        if (strcasecmp(c->key, "Pipeline") != 0 || k >= tg->npipes)
            continue;
        struct tsf_pipe *tp = tg->pipes[k++];
        const char *name = kts_pipeline_name(tp->p);
        if (tg->mode == TSF_MODE_COPY && !tp->copy) {
            ERROR(PLUGIN_NAME
                  " target: pipeline \"%s\": Mode \"copy\" needs an Output* option "
                  "(e.g. OutputPluginInstanceSuffix \"-filtered\"): without one the copies "
                  "would be the same series as the raw values",
                  name);
            rc = -EINVAL;
        } else if (tg->mode == TSF_MODE_REPLACE && has_output_type(c)) {
            ERROR(PLUGIN_NAME
                  " target: pipeline \"%s\": Mode \"replace\" cannot change the "
                  "type of a value list in place: remove OutputType/OutputTypeSuffix or use "
                  "Mode \"copy\"",
                  name);
            rc = -EINVAL;
        }
        if (tg->mode != TSF_MODE_AUTO)
            tp->copy = tg->mode == TSF_MODE_COPY;
    }
    /* Unique pipeline names (they name the self-metrics). */
    pthread_mutex_lock(&targets_lock);
    for (size_t i = 0; rc == 0 && i < tg->npipes; i++) {
        const char *name = kts_pipeline_name(tg->pipes[i]->p);
        bool dup = false;
        for (size_t j = 0; j < i; j++)
            dup = dup || strcmp(kts_pipeline_name(tg->pipes[j]->p), name) == 0;
        for (size_t t = 0; t < targets_num; t++)
            for (size_t j = 0; targets[t] != NULL && j < targets[t]->npipes; j++)
                dup = dup || strcmp(kts_pipeline_name(targets[t]->pipes[j]->p), name) == 0;
        if (dup) {
            ERROR(PLUGIN_NAME " target: two <Pipeline> blocks are named \"%s\": give each its "
                              "own name (it names the self-metrics)",
                  name);
            rc = -EINVAL;
        }
    }
    for (size_t t = 0; rc == 0 && tg->state_file != NULL && t < targets_num; t++)
        if (targets[t] != NULL && targets[t]->state_file != NULL &&
            strcmp(targets[t]->state_file, tg->state_file) == 0) {
            ERROR(PLUGIN_NAME " target: invalid value \"%s\" for option \"StateFile\"; allowed: "
                              "a file no other ts_filter target uses",
                  tg->state_file);
            rc = -EINVAL;
        }
    if (rc == 0) {
        struct tsf_target **nt = realloc(targets, (targets_num + 1) * sizeof(*nt));
        if (nt == NULL) {
            rc = -ENOMEM;
        } else {
            targets = nt;
            targets[targets_num++] = tg;
            *user_data = (void *)(uintptr_t)targets_num;
        }
    }
    pthread_mutex_unlock(&targets_lock);
    if (rc != 0) {
        ERROR(PLUGIN_NAME " target: invalid configuration; collectd will not start");
        target_free(tg);
        config_failed = true;
        return -1;
    }
    for (size_t i = 0; i < tg->npipes; i++)
        INFO(PLUGIN_NAME " target: pipeline \"%s\" (%zu filters), mode %s",
             kts_pipeline_name(tg->pipes[i]->p), kts_pipeline_filter_count(tg->pipes[i]->p),
             tg->pipes[i]->copy ? "copy" : "replace");
    return 0;
}

static int tsf_destroy(void **user_data)
{
    uintptr_t id = (uintptr_t)*user_data;
    pthread_mutex_lock(&targets_lock);
    if (id >= 1 && id <= targets_num) {
        target_free(targets[id - 1]);
        targets[id - 1] = NULL;
    }
    pthread_mutex_unlock(&targets_lock);
    *user_data = NULL;
    return 0;
}

/* kts_pipeline_emit_fn: copy the output into the pipe's scratch (under the pipe's lock). */
static int collect(const struct kts_vl *out, const uint16_t *flags, void *opaque)
{
    struct tsf_pipe *tp = opaque;
    if (KTS_ARRAY_GROW(tp->recs, tp->caprecs, tp->nrecs + 1) != 0 ||
        KTS_ARRAY_GROW(tp->vals, tp->capvals, tp->nvals + out->ds_len) != 0)
        return -ENOMEM;
    struct tsf_rec *r = &tp->recs[tp->nrecs++];
    memcpy(r->host, out->host, KTS_NAME_MAX);
    memcpy(r->plugin, out->plugin, KTS_NAME_MAX);
    memcpy(r->plugin_instance, out->plugin_instance, KTS_NAME_MAX);
    memcpy(r->type, out->type, KTS_NAME_MAX);
    memcpy(r->type_instance, out->type_instance, KTS_NAME_MAX);
    r->time = out->time;
    r->interval = out->interval;
    r->off = tp->nvals;
    r->n = out->ds_len;
    r->own = out->meta == tp->own_tag;
    r->flags_any = 0;
    for (size_t i = 0; i < out->ds_len; i++) {
        struct tsf_val *v = &tp->vals[tp->nvals++];
        v->v = out->ds[i].value;
        v->type = (uint8_t)out->ds[i].type;
        v->flags = flags[i];
        r->flags_any |= flags[i];
    }
    return 0;
}

/*
 * Write record r's values into `out` in the types of data set `ds` (guarantee 7) with
 * kts_output_typed() under the ts_filter policy (a changed value for an integer data source is
 * rounded, "ts_filter:" flag meta data); on success tp->out.vl.meta holds the flag meta data.
 * 0, -ERANGE (unrepresentable), -EINVAL (another number of data sources) or -ENOMEM.
 */
static int rec_typed(struct tsf_pipe *tp, const struct tsf_rec *r, const data_set_t *ds,
                     value_t *out)
{
    size_t n = r->n > 0 ? r->n : 1, nt = ds->ds_num > 0 ? ds->ds_num : 1;
    struct kts_ds src[n];
    uint16_t flags[n];
    for (size_t i = 0; i < r->n; i++) {
        src[i].type = (enum kts_ds_type)tp->vals[r->off + i].type;
        src[i].value = tp->vals[r->off + i].v;
        src[i].name[0] = '\0';
        flags[i] = tp->vals[r->off + i].flags;
    }
    struct kts_typesdb_ds tds[nt];
    for (size_t i = 0; i < ds->ds_num; i++) {
        sstrncpy(tds[i].name, ds->ds[i].name, sizeof(tds[i].name));
        tds[i].type = (enum kts_ds_type)ds->ds[i].type;
    }
    const struct kts_typesdb_type type = {.ds_num = ds->ds_num, .ds = tds};
    const struct kts_vl o = {.ds_len = r->n, .ds = src};
    int rc = kts_output_typed(&o, flags, &type, NULL, &kts_output_ts_filter, &tp->out);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < r->n; i++)
        memcpy(&out[i], &tp->out.vl.ds[i].value, sizeof(out[i]));
    tp->c.rounded += tp->out.rounded;
    return 0;
}

/* Dispatch one emitted value list with our marker (guarantee 5). */
static void dispatch_rec(struct tsf_pipe *tp, const struct tsf_rec *r, const value_list_t *in)
{
    const data_set_t *ds = plugin_get_ds(r->type);
    if (ds == NULL) {
        tp->c.dispatch_failed++;
        kts_log_limited(&tp->rl, KTS_LOG_WARNING,
                        PLUGIN_NAME " target: pipeline \"%s\": output type \"%s\" is not in "
                                    "types.db; value list dropped",
                        kts_pipeline_name(tp->p), r->type);
        return;
    }
    value_t values[r->n > 0 ? r->n : 1];
    int rc = rec_typed(tp, r, ds, values);
    if (rc == -ERANGE) {
        tp->c.unrepresentable++;
        return;
    }
    if (rc == -EINVAL) {
        tp->c.dispatch_failed++;
        kts_log_limited(&tp->rl, KTS_LOG_WARNING,
                        PLUGIN_NAME " target: pipeline \"%s\": output type \"%s\" has %zu data "
                                    "sources, the value list %zu; dropped",
                        kts_pipeline_name(tp->p), r->type, ds->ds_num, r->n);
        return;
    }
    if (rc < 0) {
        tp->c.dispatch_failed++;
        return;
    }
    value_list_t vl = VALUE_LIST_INIT;
    sstrncpy(vl.host, r->host, sizeof(vl.host));
    sstrncpy(vl.plugin, r->plugin, sizeof(vl.plugin));
    sstrncpy(vl.plugin_instance, r->plugin_instance, sizeof(vl.plugin_instance));
    sstrncpy(vl.type, r->type, sizeof(vl.type));
    sstrncpy(vl.type_instance, r->type_instance, sizeof(vl.type_instance));
    vl.time = r->time;
    vl.interval = r->interval != 0 ? r->interval : in->interval;
    vl.values = values;
    vl.values_len = r->n;
    vl.meta = r->own && in->meta != NULL ? meta_data_clone(in->meta) : meta_data_create();
    if (vl.meta == NULL || meta_data_add_boolean(vl.meta, TSF_META_EMITTED, true) != 0 ||
        kts_collectd_meta_add(vl.meta, tp->out.vl.meta, tp->out.vl.meta_len) < 0) {
        meta_data_destroy(vl.meta);
        tp->c.dispatch_failed++;
        return;
    }
    if (plugin_dispatch_values(&vl) == 0)
        tp->c.dispatched++;
    else
        tp->c.dispatch_failed++;
    meta_data_destroy(vl.meta);
}

/* Decide what happens to `vl` from the collected outputs (guarantees 3 and 4); lock held. */
static int apply(struct tsf_pipe *tp, const data_set_t *ds, value_list_t *vl)
{
    size_t own = 0, own_idx = 0;
    for (size_t i = 0; i < tp->nrecs; i++)
        if (tp->recs[i].own) {
            own++;
            own_idx = i;
        }
    if (tp->copy) {
        for (size_t i = 0; i < tp->nrecs; i++)
            dispatch_rec(tp, &tp->recs[i], vl);
        return FC_TARGET_CONTINUE;
    }
    int status = FC_TARGET_STOP;
    const struct tsf_rec *r = &tp->recs[own_idx];
    if (own == 1 && r->time == vl->time && strcmp(r->type, vl->type) == 0) {
        value_t values[r->n > 0 ? r->n : 1];
        int rc = rec_typed(tp, r, ds, values);
        if (rc == -ENOMEM) {
            tp->c.errors++;
        } else if (rc < 0) {
            tp->c.unrepresentable++;
        } else if (r->flags_any != 0 && vl->meta == NULL &&
                   (vl->meta = meta_data_create()) == NULL) {
            tp->c.errors++;
        } else if (r->flags_any != 0 &&
                   kts_collectd_meta_add(vl->meta, tp->out.vl.meta, tp->out.vl.meta_len) < 0) {
            tp->c.errors++;
        } else {
            memcpy(vl->values, values, r->n * sizeof(values[0]));
            sstrncpy(vl->host, r->host, sizeof(vl->host));
            sstrncpy(vl->plugin, r->plugin, sizeof(vl->plugin));
            sstrncpy(vl->plugin_instance, r->plugin_instance, sizeof(vl->plugin_instance));
            sstrncpy(vl->type_instance, r->type_instance, sizeof(vl->type_instance));
            tp->c.in_place++;
            status = FC_TARGET_CONTINUE;
        }
        own = 0; /* dispatch only the others */
    }
    for (size_t i = 0; i < tp->nrecs; i++)
        if (!tp->recs[i].own || own > 0)
            dispatch_rec(tp, &tp->recs[i], vl);
    if (status == FC_TARGET_STOP)
        tp->c.stopped++;
    return status;
}

static int tsf_invoke(const data_set_t *ds, value_list_t *vl, notification_meta_t **meta,
                      void **user_data)
{
    (void)meta;
    uintptr_t id = (uintptr_t)*user_data;
    struct tsf_target *tg = id >= 1 && id <= targets_num ? targets[id - 1] : NULL;
    if (tg == NULL)
        return FC_TARGET_CONTINUE;
    if (vl->meta != NULL) {
        if (meta_data_exists(vl->meta, TSF_META_EMITTED)) {
            /* not counted per pipeline: we do not know which one emitted it */
            return FC_TARGET_CONTINUE;
        }
        if (!tg->filter_read_kafka && meta_data_exists(vl->meta, KTS_META_MARKER))
            return FC_TARGET_CONTINUE;
    }
    struct kts_ds ds_buf[ds->ds_num > 0 ? ds->ds_num : 1];
    struct kts_vl kvl;
    value_list_t shallow = *vl;
    shallow.meta = NULL; /* dispatched copies clone vl->meta themselves */
    if (kts_collectd_vl_from(&kvl, ds_buf, ds, &shallow) < 0)
        return FC_TARGET_CONTINUE;
    struct tsf_pipe *tp = NULL;
    for (size_t i = 0; i < tg->npipes && tp == NULL; i++)
        if (kts_pipeline_match(tg->pipes[i]->p, &kvl))
            tp = tg->pipes[i];
    if (tp == NULL)
        return FC_TARGET_CONTINUE;
    kvl.meta = (struct kts_meta *)tp->own_tag;
    kvl.meta_len = 0;

    pthread_mutex_lock(&tp->lock);
    tp->nrecs = 0;
    tp->nvals = 0;
    int status = FC_TARGET_CONTINUE;
    int rc = kts_pipeline_process(tp->p, &kvl, 1, collect, tp);
    if (rc < 0) {
        tp->c.errors++;
        kts_log_limited(&tp->rl, KTS_LOG_ERR,
                        PLUGIN_NAME " target: pipeline \"%s\": %s; value list passed unfiltered",
                        kts_pipeline_name(tp->p), STRERROR(-rc));
    } else {
        status = apply(tp, ds, vl);
    }
    pthread_mutex_unlock(&tp->lock);
    return status;
}

/* ------------------------------------------------------------------ self-metrics */

static void dispatch_self(const char *pinst, const char *type, const char *ti, value_t v)
{
    kts_collectd_dispatch_metric(PLUGIN_NAME, pinst, type, ti, v);
}

#define SELF_DERIVE(pn, ti, v)                                                                     \
    dispatch_self(pn, "total_values", ti, (value_t){.derive = (derive_t)(v)})

/* `state`: the target has a StateFile (its counters are dispatched too). */
static void read_pipe(struct tsf_pipe *tp, bool state)
{
    struct kts_pipeline_stats st;
    struct kts_pipeline_state_stats ss;
    struct tsf_counters c;
    size_t nf = kts_pipeline_filter_count(tp->p);
    struct kts_filter_stats fs[nf > 0 ? nf : 1];
    pthread_mutex_lock(&tp->lock);
    kts_pipeline_get_stats(tp->p, &st);
    kts_pipeline_state_get_stats(tp->p, &ss);
    c = tp->c;
    for (size_t i = 0; i < nf; i++)
        fs[i] = *kts_pipeline_filter_stats(tp->p, i);
    pthread_mutex_unlock(&tp->lock);

    const char *pn = kts_pipeline_name(tp->p);
    SELF_DERIVE(pn, "in", st.value_lists_in);
    SELF_DERIVE(pn, "out", st.value_lists_out);
    SELF_DERIVE(pn, "in_place", c.in_place);
    SELF_DERIVE(pn, "stopped", c.stopped);
    SELF_DERIVE(pn, "dispatched", c.dispatched);
    SELF_DERIVE(pn, "dispatch_failed", c.dispatch_failed);
    SELF_DERIVE(pn, "rounded", c.rounded);
    SELF_DERIVE(pn, "unrepresentable", c.unrepresentable);
    SELF_DERIVE(pn, "errors", c.errors);
    SELF_DERIVE(pn, "refused", st.refused);
    SELF_DERIVE(pn, "restarted", st.restarted);
    SELF_DERIVE(pn, "name_too_long", st.name_too_long);
    SELF_DERIVE(pn, "series_expired", st.series_expired);
    dispatch_self(pn, "count", "series", (value_t){.gauge = (gauge_t)st.series});
    if (state) {
        uint64_t refused = 0;
        for (int r = 1; r < KTS_STATE_REASONS; r++)
            refused += ss.refused[r];
        SELF_DERIVE(pn, "state_restored", ss.imported);
        SELF_DERIVE(pn, "state_refused", refused);
        SELF_DERIVE(pn, "state_saved", ss.exported);
        SELF_DERIVE(pn, "state_saved_bytes", ss.exported_bytes);
    }
    dispatch_self(pn, "bytes", "series_table", (value_t){.gauge = (gauge_t)st.bytes});
    for (size_t i = 0; i < nf; i++) {
        char ti[DATA_MAX_NAME_LEN];
        const char *fname = kts_pipeline_filter_name(tp->p, i);
#define FSTAT(field)                                                                               \
    do {                                                                                           \
        snprintf(ti, sizeof(ti), "%zu_%s-" #field, i, fname);                                      \
        SELF_DERIVE(pn, ti, fs[i].field);                                                          \
    } while (0)
        FSTAT(dropped);
        FSTAT(replaced);
        FSTAT(marked);
        FSTAT(filled);
        FSTAT(warming);
        FSTAT(late);
        FSTAT(beyond);
        FSTAT(resets);
#undef FSTAT
    }
}

/* ------------------------------------------------------------------ StateFile */

static void state_lock(size_t i, bool lock, void *opaque)
{
    struct tsf_target *tg = opaque;
    if (lock)
        pthread_mutex_lock(&tg->pipes[i]->lock);
    else
        pthread_mutex_unlock(&tg->pipes[i]->lock);
}

/* The target's pipelines, in an array for kts_state_file (freed by the caller). */
static struct kts_pipeline **state_pipes(const struct tsf_target *tg)
{
    struct kts_pipeline **pp = calloc(tg->npipes, sizeof(*pp));
    for (size_t i = 0; pp != NULL && i < tg->npipes; i++)
        pp[i] = tg->pipes[i]->p;
    return pp;
}

/* Write the target's StateFile; `say` logs the success too (at shutdown). */
static void state_save(struct tsf_target *tg, bool say)
{
    struct kts_pipeline **pp = state_pipes(tg);
    char err[512];
    size_t records = 0;
    cdtime_t t0 = cdtime();
    if (pp == NULL) {
        ERROR(PLUGIN_NAME " target: StateFile \"%s\": out of memory", tg->state_file);
        return;
    }
    if (kts_state_file_save_locked(tg->state_file, pp, tg->npipes, state_lock, tg, &records, err,
                                   sizeof(err)) < 0)
        ERROR(PLUGIN_NAME " target: StateFile: %s (the previous file is kept)", err);
    else if (say)
        INFO(PLUGIN_NAME " target: StateFile \"%s\": %zu series written in %.3f s", tg->state_file,
             records, CDTIME_T_TO_DOUBLE(cdtime() - t0));
    free(pp);
}

/* At init: a missing file is a fresh start, a damaged one is set aside; never fatal. */
static void state_load(struct tsf_target *tg)
{
    struct kts_pipeline **pp = state_pipes(tg);
    struct kts_state_load_stats st = {0};
    char err[512], aside[4096];
    if (pp == NULL)
        return;
    for (size_t i = 0; i < tg->npipes; i++)
        state_lock(i, true, tg);
    int rc = kts_state_file_load(tg->state_file, pp, tg->npipes, &st, err, sizeof(err));
    for (size_t i = 0; i < tg->npipes; i++)
        state_lock(i, false, tg);
    free(pp);
    if (rc == -ENOENT) {
        INFO(PLUGIN_NAME " target: StateFile \"%s\" does not exist yet: every series starts "
                         "fresh",
             tg->state_file);
    } else if (rc == -EBADMSG) {
        int arc = kts_state_file_set_aside(tg->state_file, aside, sizeof(aside));
        ERROR(PLUGIN_NAME " target: StateFile: %s; %llu series restored before the damage, the "
                          "others start fresh; the file %s%s",
              err, (unsigned long long)st.imported, arc == 0 ? "is set aside as " : "",
              arc == 0 ? aside : "could not be set aside");
    } else if (rc < 0) {
        ERROR(PLUGIN_NAME " target: StateFile: %s; every series starts fresh", err);
    } else {
        INFO(PLUGIN_NAME " target: StateFile \"%s\": %llu series restored, %llu refused (another "
                         "configuration or damaged: they start fresh), %llu of pipelines no "
                         "longer configured",
             tg->state_file, (unsigned long long)st.imported, (unsigned long long)st.refused,
             (unsigned long long)st.unknown);
    }
    tg->state_next = cdtime() + DOUBLE_TO_CDTIME_T(tg->state_interval);
}

static int tsf_read(void)
{
    cdtime_t now = cdtime();
    for (size_t t = 0; t < targets_num; t++)
        if (targets[t] != NULL && targets[t]->state_file != NULL && now >= targets[t]->state_next) {
            state_save(targets[t], false);
            targets[t]->state_next = now + DOUBLE_TO_CDTIME_T(targets[t]->state_interval);
        }
    /* targets[] only changes at config time and when destroyed (not during reads). */
    for (size_t t = 0; t < targets_num; t++)
        for (size_t i = 0; targets[t] != NULL && i < targets[t]->npipes; i++)
            read_pipe(targets[t]->pipes[i], targets[t]->state_file != NULL);
    return 0;
}

static int tsf_init(void)
{
    static bool initialized;
    if (initialized)
        return 0;
    initialized = true;
    kts_collectd_log_init();
    if (config_failed) {
        ERROR(PLUGIN_NAME " target: not starting because of the configuration errors above");
        return -1;
    }
    if (targets_num == 0) {
        INFO(PLUGIN_NAME " target: loaded but no <Target \"" PLUGIN_NAME "\"> block in a chain");
        return 0;
    }
    for (size_t t = 0; t < targets_num; t++)
        if (targets[t] != NULL && targets[t]->state_file != NULL)
            state_load(targets[t]);
    plugin_register_read(PLUGIN_NAME, tsf_read);
    return 0;
}

/* The write threads are stopped: no invoke runs any more. What pipelines hold back (e.g.
 * dedup's end of a flat run) is lost: there is nobody left to write it (docs/ts_filter.md),
 * unless a StateFile keeps it (guarantee 10). */
static int tsf_shutdown(void)
{
    pthread_mutex_lock(&targets_lock);
    for (size_t t = 0; t < targets_num; t++) {
        if (targets[t] != NULL && targets[t]->state_file != NULL)
            state_save(targets[t], true);
        target_free(targets[t]);
        targets[t] = NULL;
    }
    pthread_mutex_unlock(&targets_lock);
    return 0;
}

void module_register(void);
__attribute__((visibility("default"))) void module_register(void)
{
    target_proc_t proc = {0};
    proc.create = tsf_create;
    proc.destroy = tsf_destroy;
    proc.invoke = tsf_invoke;
    fc_register_target(PLUGIN_NAME, proc);
    plugin_register_init(PLUGIN_NAME, tsf_init);
    plugin_register_shutdown(PLUGIN_NAME, tsf_shutdown);
}
