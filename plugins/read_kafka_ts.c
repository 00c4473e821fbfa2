/* SPDX-License-Identifier: MIT */
/*
 * read_kafka_ts: Kafka → collectd, at least once (docs/read_kafka_ts.md).
 *
 * Thin glue around src/kafka/kts_consumer.c (option table, bookkeeping, Kafka hygiene):
 *  - config: each <Plugin read_kafka_ts> block is one instance, validated completely;
 *  - init: consumer created, our write callback registered (after every writer registered
 *    at config time, so when it sees a value, those writers have returned), consumer thread
 *    started with plugin_thread_create (a raw pthread logs "Unable to determine Interval from
 *    context" on dispatches without interval), self-metrics read callback registered;
 *  - dispatch: kts_vl → value_list_t with meta KTS_META_MARKER=true and RKT_META_TOKEN=token;
 *  - write callback: a value carrying one of our tokens has passed the writers before us:
 *    kts_consumer_written(token);
 *  - shutdown order: collectd stops the read threads, then frees the read callbacks (calling
 *    their user_data free_func), THEN stops the write threads (freeing what is still queued),
 *    then runs shutdown callbacks. The free_func of our read callback is therefore the last
 *    moment at which dispatched values can still be written: it drains (stop dispatching, wait
 *    for the confirmations of what is in flight), stops the thread and closes the consumer,
 *    which commits the offsets stored. The shutdown callback only frees memory.
 *  - DedupStateFile (exactly once into the sinks, docs/read_kafka_ts.md "Exactly once"): a
 *    MAP_SHARED file of per-series "last written time" watermarks (src/kafka/kts_written_times.h).
 * Dispatch looks the series up (key: kts_series_identity() of the five names after naming, the
 *    consumer's series of kts_consumer.h 3), skips a value whose time is not after the watermark
 *    (KTS_DISPATCH_SKIPPED), and puts the slot in the meta data (RKT_META_WSLOT). Our write
 *    callback raises that slot to the value's time FIRST, before anything else (no lock, no
 *    lookup: the window between the writers' return and the store is as short as it can be),
 *    then confirms the token, which may dispatch the series' next value.
 *  - FlushBeforeCommit (docs/read_kafka_ts.md "Caching writers"): a value confirmed by our
 *    write callback may still sit in a writer's cache (rrdtool CacheTimeout, write_graphite's
 *    send buffer). With the option the consumer stores offsets only at commit points
 *    (kts_consumer.h 11, every CommitInterval): commit point k stores what was done at k-1, and
 *    our hook then calls plugin_flush() (synchronous: the named flush callbacks run in the
 *    consumer thread) for each listed name. With DedupStateFile the write callback does not
 *    raise the watermark itself but appends (slot, time) to a pending list; the hook raises the
 *    list of the previous commit point, takes the current one, then flushes. A watermark is
 *    therefore raised, like an offset stored, one commit interval after a flush that followed
 *    the write (rrdtool's flush only queues the file for its writer thread).
 */
#include "kts_collectd.h"

#include "kts_array.h"
#include "kts_consumer.h"
#include "kts_log.h"
#include "kts_plugin_pipelines.h"
#include "kts_series.h"
#include "kts_written_times.h"
#include "utils/metadata/meta_data.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>

#define PLUGIN_NAME "read_kafka_ts"
#define MAX_INSTANCES 32
#define RKT_META_TOKEN "kafka_ts:token"
#define RKT_META_WSLOT "kafka_ts:wslot"

/* The plugin's own options, in the block next to the consumer's and the pipelines'. */
struct rkt_dedup_config {
    char *state_file;              /* DedupStateFile; NULL = at least once only */
    int64_t state_series;          /* DedupStateSeries */
    struct kts_strv flush_plugins; /* FlushBeforeCommit: flush callback names; none = off */
    double commit_interval;        /* CommitInterval (seconds), FlushBeforeCommit or StateTopic */
    double state_interval;         /* StateInterval (seconds): StateTopic checkpoints */
};
#define DOFF(f) offsetof(struct rkt_dedup_config, f)
static const struct kts_opt rkt_dedup_options[] = {
    {"DedupStateFile", KTS_OPT_STRING, DOFF(state_file), NULL, 0, 0, NULL, NULL, 0,
     "file of per-series written watermarks: redelivered values already written are not "
     "dispatched again (exactly once into the writers, docs/read_kafka_ts.md)"},
    {"DedupStateSeries", KTS_OPT_INT, DOFF(state_series), "1000000", 1,
     (double)KTS_WRITTEN_TIMES_SERIES_MAX_LIMIT, NULL, NULL, 0,
     "most series DedupStateFile tracks (fixed when the file is created; 32 to 64 bytes each)"},
    {"FlushBeforeCommit", KTS_OPT_STRINGS, DOFF(flush_plugins), NULL, 0, 0, NULL, NULL, 0,
     "flush callback name (\"rrdtool\", \"write_graphite/<Node>\"; repeatable) flushed before "
     "offsets are committed, so a kill -9 loses nothing in that writer's cache"},
    {"CommitInterval", KTS_OPT_DURATION, DOFF(commit_interval), "10", 1, 3600, NULL, NULL, 0,
     "with FlushBeforeCommit or StateTopic: seconds between commit points"},
    {"StateInterval", KTS_OPT_DURATION, DOFF(state_interval), "60", 1, 3600, NULL, NULL, 0,
     "with StateTopic: seconds between checkpoints of the changed series (and so between "
     "committed offsets), taken at every ceil(StateInterval / CommitInterval)-th commit point"},
    KTS_OPT_END,
};
#undef DOFF

struct rkt_wpend {
    uint64_t slot;
    uint64_t time;
};

struct rkt_instance {
    struct kts_consumer_config cfg;
    struct kts_consumer *consumer;
    struct kts_plugin_pipelines
        *pipes; /* <Pipeline> blocks (src/pipeline/kts_plugin_pipelines.h), NULL when none */
    pthread_t thread;
    bool thread_started;
    bool drained;
    pthread_mutex_t stop_lock;
    char name[256]; /* callback names: read_kafka_ts/<instance> */
    struct rkt_dedup_config dedup;
    struct kts_written_times *wm; /* DedupStateFile, NULL when not configured */
    uint64_t untracked;           /* atomic: values dispatched without a watermark (table full) */
    struct kts_ratelimit rl_full;
    struct kts_ratelimit rl_skip; /* values not dispatched: their series has a later one written */
    /* FlushBeforeCommit with DedupStateFile: watermarks to raise after a flush */
    pthread_mutex_t wlock;          /* wcur, wprev */
    struct rkt_wpend *wcur, *wprev; /* written since the last commit point / before it */
    size_t wcur_n, wcur_cap, wprev_n, wprev_cap;
    pthread_mutex_t hook_lock; /* one commit hook at a time */
};

/*
 * Test knobs: settings that exist only to measure or to test, never for users. They are refused
 * unless collectd's environment has KTS_TEST_KNOBS=1 (what tests/t-read-order.sh and
 * bench/read-bench set). Today one: OrderedDispatch false (docs/read_kafka_ts.md "Ordering").
 */
#define RKT_TEST_KNOBS_ENV "KTS_TEST_KNOBS"
static bool rkt_test_knobs(void)
{
    const char *v = getenv(RKT_TEST_KNOBS_ENV);
    return v != NULL && strcmp(v, "1") == 0;
}

static struct rkt_instance *instances[MAX_INSTANCES];
static size_t instances_num;
static bool config_failed;

static int rkt_config(oconfig_item_t *ci)
{
    kts_collectd_log_init();
    struct kts_conf *conf = kts_collectd_conf(ci, "collectd.conf");
    struct rkt_instance *in = calloc(1, sizeof(*in));
    if (conf == NULL || in == NULL) {
        kts_conf_free(conf);
        free(in);
        ERROR(PLUGIN_NAME " plugin: out of memory");
        config_failed = true;
        return -1;
    }
    /* One pass over the block, each option to its owner's table: the consumer's, ours, and
     * the pipelines' (checked below by kts_plugin_pipelines_config). */
    const struct kts_opt_set sets[] = {
        {kts_consumer_options, &in->cfg},
        {rkt_dedup_options, &in->dedup},
        {kts_plugin_pipelines_options, NULL},
    };
    int rc = kts_opt_defaults(kts_consumer_options, &in->cfg);
    if (rc == 0)
        rc = kts_opt_defaults(rkt_dedup_options, &in->dedup);
    if (rc == 0) { /* every problem of the block is reported, then the plugin refuses */
        int rc1 = kts_opt_apply_sets(sets, 3, conf, PLUGIN_NAME " plugin");
        int rc2 = 0;
        if (in->dedup.state_file != NULL && !in->cfg.ordered) {
            ERROR(PLUGIN_NAME " plugin: DedupStateFile needs OrderedDispatch true (a series' "
                              "values must be written one at a time, in time order, for its "
                              "watermark to mean that everything up to it was written)");
            rc2 = -EINVAL;
        }
        if (!in->cfg.ordered && !rkt_test_knobs()) {
            ERROR(PLUGIN_NAME " plugin: OrderedDispatch false is a test knob, not an option: it "
                              "only measures what collectd's write threads do to a series' "
                              "order without per-series dispatch (docs/read_kafka_ts.md "
                              "\"Ordering\"); tests enable it with " RKT_TEST_KNOBS_ENV "=1");
            rc2 = -EINVAL;
        }
        rc = rc1 < 0 ? rc1 : rc2;
    }
    if (rc == 0 && in->cfg.name == NULL && (in->cfg.name = strdup(in->cfg.group_id)) == NULL)
        rc = -1;
    if (rc == 0) {
        char where[300], err[256];
        snprintf(where, sizeof(where), PLUGIN_NAME " plugin (%s)", in->cfg.name);
        rc = kts_plugin_pipelines_config(conf, &in->cfg.typesdb, where, &in->pipes, err,
                                         sizeof(err));
        if (rc < 0)
            ERROR("%s: %s", where, err);
    }
    if (rc == 0 && in->cfg.state_topic != NULL && in->pipes == NULL) {
        ERROR(PLUGIN_NAME " plugin (%s): invalid value \"%s\" for option \"StateTopic\": the "
                          "block has no <Pipeline>, so there is no filter state to keep; allowed: "
                          "a topic name in a block with a <Pipeline>",
              in->cfg.name, in->cfg.state_topic);
        rc = -1;
    }
    kts_conf_free(conf);
    if (rc == 0 && instances_num >= MAX_INSTANCES) {
        ERROR(PLUGIN_NAME " plugin: more than %d <Plugin " PLUGIN_NAME "> blocks", MAX_INSTANCES);
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < instances_num; i++)
        if (strcmp(instances[i]->cfg.name, in->cfg.name) == 0) {
            ERROR(PLUGIN_NAME
                  " plugin: two instances are named \"%s\": give each <Plugin " PLUGIN_NAME
                  "> block its own Instance",
                  in->cfg.name);
            rc = -1;
        }
    if (rc != 0) {
        ERROR(PLUGIN_NAME " plugin: invalid configuration; the plugin will not start");
        kts_plugin_pipelines_destroy(in->pipes);
        kts_consumer_config_free(&in->cfg);
        kts_opt_free(rkt_dedup_options, &in->dedup);
        free(in);
        config_failed = true;
        return -1;
    }
    if (in->dedup.state_file != NULL && in->dedup.flush_plugins.n == 0)
        NOTICE(PLUGIN_NAME
               " plugin (%s): DedupStateFile without FlushBeforeCommit: a value "
               "counts as written when the writers' callbacks returned; if a writer caches "
               "(rrdtool CacheTimeout, write_graphite), a kill -9 loses what it held and the "
               "watermark stops its redelivery (docs/read_kafka_ts.md \"Caching writers\")",
               in->cfg.name);
    pthread_mutex_init(&in->stop_lock, NULL);
    pthread_mutex_init(&in->wlock, NULL);
    pthread_mutex_init(&in->hook_lock, NULL);
    snprintf(in->name, sizeof(in->name), PLUGIN_NAME "/%s", in->cfg.name);
    instances[instances_num++] = in;
    return 0;
}

/* The watermark slot of kvl's series (key: its identity, kts_series.h 7, the same bytes as the
 * consumer's series of kts_consumer.h 3), 0 when the state table is full (then counted and
 * logged: that series is at least once). */
static uint64_t rkt_wm_slot(struct rkt_instance *in, const struct kts_vl *kvl)
{
    char key[KTS_SERIES_IDENTITY_MAX];
    size_t n = kts_series_identity(key, kvl);
    uint64_t slot = 0;
    if (kts_written_times_slot(in->wm, key, n, &slot) == 0)
        return slot;
    __atomic_fetch_add(&in->untracked, 1, __ATOMIC_RELAXED);
    kts_log_limited(&in->rl_full, KTS_LOG_WARNING,
                    PLUGIN_NAME
                    " plugin (%s): DedupStateFile \"%s\" is full (DedupStateSeries "
                    "%lld): series %s/%s-%s/%s-%s is delivered at least once, not exactly once",
                    in->cfg.name, in->dedup.state_file, (long long)in->dedup.state_series,
                    kvl->host, kvl->plugin, kvl->plugin_instance, kvl->type, kvl->type_instance);
    return 0;
}

/* kts_dispatch_fn: called with the consumer's lock held; must not call back into it. */
static int rkt_dispatch(const struct kts_vl *kvl, uint64_t token, void *opaque)
{
    struct rkt_instance *in = opaque;
    uint64_t slot = 0;
    if (in->wm != NULL && kvl->time != 0) {
        slot = rkt_wm_slot(in, kvl);
        uint64_t wm = slot != 0 ? kts_written_times_get(in->wm, slot) : 0;
        if (slot != 0 && kvl->time <= wm) {
            /* Written before: a redelivery after a restart, or a value that arrives after a
             * later one of its series was written (a producer retry librdkafka 2.0.2 reordered
             * without idempotence, docs/write_kafka_ts.md "Ordering"): not dispatched either
             * way, counted (already_written) and logged, rate-limited, never silently. */
            kts_log_limited(&in->rl_skip, KTS_LOG_NOTICE,
                            PLUGIN_NAME
                            " plugin (%s): DedupStateFile: value of %s/%s-%s/%s-%s at "
                            "%.3f not dispatched: its series has %.3f written already (a "
                            "redelivery, or a value that arrived late; counted in "
                            "already_written)",
                            in->cfg.name, kvl->host, kvl->plugin, kvl->plugin_instance, kvl->type,
                            kvl->type_instance, CDTIME_T_TO_DOUBLE(kvl->time),
                            CDTIME_T_TO_DOUBLE((cdtime_t)wm));
            return KTS_DISPATCH_SKIPPED;
        }
    }
    value_t values[kvl->ds_len > 0 ? kvl->ds_len : 1];
    value_list_t vl;
    int rc = kts_collectd_vl_to(&vl, values, kvl);
    if (rc < 0)
        return rc;
    if (vl.meta == NULL && (vl.meta = meta_data_create()) == NULL)
        return -ENOMEM;
    if (meta_data_add_boolean(vl.meta, KTS_META_MARKER, true) != 0 ||
        meta_data_add_unsigned_int(vl.meta, RKT_META_TOKEN, token) != 0 ||
        /* always with a state file, 0 = none: replaces whatever the input carried */
        (in->wm != NULL && meta_data_add_unsigned_int(vl.meta, RKT_META_WSLOT, slot) != 0)) {
        meta_data_destroy(vl.meta);
        return -ENOMEM;
    }
    rc = plugin_dispatch_values(&vl);
    meta_data_destroy(vl.meta);
    return rc == 0 ? 0 : -EIO;
}

/* Append a watermark to raise at the next commit point; on out of memory raise it now (the
 * old behaviour: the value may then be skipped after a crash while still in a cache). */
static void rkt_wpend_add(struct rkt_instance *in, uint64_t slot, uint64_t t)
{
    pthread_mutex_lock(&in->wlock);
    if (KTS_ARRAY_GROW(in->wcur, in->wcur_cap, in->wcur_n + 1) != 0) {
        pthread_mutex_unlock(&in->wlock);
        kts_written_times_raise(in->wm, slot, t);
        return;
    }
    in->wcur[in->wcur_n++] = (struct rkt_wpend){slot, t};
    pthread_mutex_unlock(&in->wlock);
}

/* Sees every value list after the writers registered before it (our confirmation). */
static int rkt_write(const data_set_t *ds, const value_list_t *vl, user_data_t *ud)
{
    (void)ds;
    struct rkt_instance *in = ud->data;
    uint64_t token;
    if (vl->meta == NULL || meta_data_get_unsigned_int(vl->meta, RKT_META_TOKEN, &token) != 0)
        return 0;
    if (in->consumer == NULL || !kts_consumer_owns(in->consumer, token))
        return 0;
    uint64_t slot;
    if (in->wm != NULL && meta_data_get_unsigned_int(vl->meta, RKT_META_WSLOT, &slot) == 0) {
        if (in->dedup.flush_plugins.n == 0)
            kts_written_times_raise(in->wm, slot, vl->time); /* first: the residual window (docs) */
        else if (slot != 0)
            rkt_wpend_add(in, slot, vl->time); /* raised after a flush (top of the file) */
    }
    kts_consumer_written(in->consumer, token);
    return 0;
}

/* kts_commit_fn (kts_consumer.h 11): raise the watermarks of the previous commit point, take
 * the current ones, flush the listed writers; final: raise everything after the flush. */
static void rkt_commit_hook(bool final, void *opaque)
{
    struct rkt_instance *in = opaque;
    pthread_mutex_lock(&in->hook_lock);
    if (in->wm != NULL) {
        pthread_mutex_lock(&in->wlock);
        for (size_t i = 0; i < in->wprev_n; i++)
            kts_written_times_raise(in->wm, in->wprev[i].slot, in->wprev[i].time);
        struct rkt_wpend *t = in->wprev;
        size_t tcap = in->wprev_cap;
        in->wprev = in->wcur;
        in->wprev_n = in->wcur_n;
        in->wprev_cap = in->wcur_cap;
        in->wcur = t;
        in->wcur_n = 0;
        in->wcur_cap = tcap;
        pthread_mutex_unlock(&in->wlock);
    }
    for (size_t i = 0; i < in->dedup.flush_plugins.n; i++)
        plugin_flush(in->dedup.flush_plugins.v[i], 0, NULL);
    if (final && in->wm != NULL) {
        pthread_mutex_lock(&in->wlock);
        for (size_t i = 0; i < in->wprev_n; i++)
            kts_written_times_raise(in->wm, in->wprev[i].slot, in->wprev[i].time);
        in->wprev_n = 0;
        pthread_mutex_unlock(&in->wlock);
    }
    pthread_mutex_unlock(&in->hook_lock);
}

static void dispatch_one(const struct rkt_instance *in, const char *type, const char *type_instance,
                         value_t value)
{
    kts_collectd_dispatch_metric(PLUGIN_NAME, in->cfg.name, type, type_instance, value);
}

#define DISPATCH_DERIVE(in, ti, v)                                                                 \
    dispatch_one(in, "total_values", ti, (value_t){.derive = (derive_t)(v)})

/* Pipeline self-metrics: plugin instance "<instance>-<pipeline>", the type instances of the
 * ts_filter target where they mean the same. */
static void dispatch_pipe(const char *pinst, const char *type, const char *ti, value_t value)
{
    kts_collectd_dispatch_metric(PLUGIN_NAME, pinst, type, ti, value);
}

static void read_pipelines(const struct rkt_instance *in)
{
    for (size_t i = 0; i < kts_plugin_pipelines_count(in->pipes); i++) {
        struct kts_pipeline_stats st;
        struct kts_plugin_pipelines_counters c;
        struct kts_filter_stats fs[32];
        size_t nf = kts_plugin_pipelines_snapshot(in->pipes, i, &st, &c, fs, 32);
        char pn[DATA_MAX_NAME_LEN];
        snprintf(pn, sizeof(pn), "%s-%s", in->cfg.name, kts_plugin_pipelines_name(in->pipes, i));
#define PD(ti, v) dispatch_pipe(pn, "total_values", ti, (value_t){.derive = (derive_t)(v)})
        PD("in", st.value_lists_in);
        PD("out", st.value_lists_out);
        PD("raw", c.raw);
        PD("dispatched", c.emitted);
        PD("kept", c.kept);
        PD("replaced", c.replaced);
        PD("marked", c.marked);
        PD("filled", c.filled);
        PD("warming", c.warming);
        PD("absent", c.absent);
        PD("type_refused", c.type_refused);
        PD("errors", c.errors);
        PD("absorbed", c.absorbed);
        PD("refused", st.refused);
        PD("restarted", st.restarted);
        PD("name_too_long", st.name_too_long);
        PD("series_expired", st.series_expired);
        dispatch_pipe(pn, "count", "series", (value_t){.gauge = (gauge_t)st.series});
        dispatch_pipe(pn, "bytes", "series_table", (value_t){.gauge = (gauge_t)st.bytes});
        for (size_t j = 0; j < nf && j < 32; j++) {
            char ti[DATA_MAX_NAME_LEN];
            const char *fname = kts_plugin_pipelines_filter_name(in->pipes, i, j);
#define FD(field)                                                                                  \
    do {                                                                                           \
        snprintf(ti, sizeof(ti), "%zu_%s-" #field, j, fname);                                      \
        PD(ti, fs[j].field);                                                                       \
    } while (0)
            FD(dropped);
            FD(replaced);
            FD(marked);
            FD(filled);
            FD(warming);
            FD(late);
            FD(beyond);
            FD(resets);
#undef FD
        }
#undef PD
    }
}

/* Self-metrics as collectd values (read callback, plugin interval). */
/* StateTopic self-metrics (kts_consumer.h 17). */
static void read_state(const struct rkt_instance *in, const struct kts_consumer_stats *st)
{
    static const char *const why[KTS_CONSUMER_STATE_REASONS] = {"config", "version", "corrupt",
                                                                "other"};
    DISPATCH_DERIVE(in, "state_partitions_restored", st->state_partitions_restored);
    DISPATCH_DERIVE(in, "state_restored", st->state_restored);
    for (int i = 0; i < KTS_CONSUMER_STATE_REASONS; i++) {
        char ti[64];
        snprintf(ti, sizeof(ti), "state_refused-%s", why[i]);
        DISPATCH_DERIVE(in, ti, st->state_refused[i]);
    }
    DISPATCH_DERIVE(in, "state_tombstones_read", st->state_tombstones_read);
    DISPATCH_DERIVE(in, "state_checkpoints", st->state_checkpoints);
    DISPATCH_DERIVE(in, "state_records", st->state_records);
    DISPATCH_DERIVE(in, "state_bytes", st->state_bytes);
    DISPATCH_DERIVE(in, "state_tombstones", st->state_tombstones);
    DISPATCH_DERIVE(in, "state_failed", st->state_failed);
    DISPATCH_DERIVE(in, "state_restore_ms", st->state_restore_ns / 1000000);
    DISPATCH_DERIVE(in, "state_checkpoint_ms", st->state_checkpoint_ns / 1000000);
}

static int rkt_read(user_data_t *ud)
{
    struct rkt_instance *in = ud->data;
    if (in->consumer == NULL)
        return 0;
    struct kts_consumer_stats st;
    kts_consumer_stats(in->consumer, &st);
    DISPATCH_DERIVE(in, "messages", st.messages);
    DISPATCH_DERIVE(in, "values", st.values);
    DISPATCH_DERIVE(in, "decode_errors", st.decode_errors);
    DISPATCH_DERIVE(in, "dead_lettered", st.dead_lettered);
    DISPATCH_DERIVE(in, "dead_letter_failed", st.dead_letter_failed);
    DISPATCH_DERIVE(in, "dispatched", st.dispatched);
    DISPATCH_DERIVE(in, "dispatch_failed", st.dispatch_failed);
    if (in->wm != NULL) {
        struct kts_written_times_stats ws;
        kts_written_times_stats(in->wm, &ws);
        DISPATCH_DERIVE(in, "already_written", st.skipped);
        DISPATCH_DERIVE(in, "dedup_untracked", __atomic_load_n(&in->untracked, __ATOMIC_RELAXED));
        dispatch_one(in, "count", "dedup_series", (value_t){.gauge = (gauge_t)ws.used});
    }
    DISPATCH_DERIVE(in, "written", st.written);
    DISPATCH_DERIVE(in, "unconfirmed", st.unconfirmed);
    DISPATCH_DERIVE(in, "dropped_revoked", st.dropped_revoked);
    DISPATCH_DERIVE(in, "offsets_stored", st.offsets_stored);
    if (in->dedup.flush_plugins.n > 0)
        DISPATCH_DERIVE(in, "commit_points", st.commit_points);
    DISPATCH_DERIVE(in, "rebalances", st.rebalances);
    dispatch_one(in, "queue_length", "inflight-messages",
                 (value_t){.gauge = (gauge_t)st.inflight_messages});
    dispatch_one(in, "queue_length", "inflight-values",
                 (value_t){.gauge = (gauge_t)st.inflight_values});
    read_pipelines(in);
    if (in->cfg.state_topic != NULL)
        read_state(in, &st);
    struct kts_consumer_lag lag[256];
    size_t n = kts_consumer_lag(in->consumer, lag, 256);
    for (size_t i = 0; i < n; i++) {
        if (lag[i].lag < 0)
            continue;
        char ti[DATA_MAX_NAME_LEN];
        snprintf(ti, sizeof(ti), "lag-%.100s-%d", lag[i].topic, (int)lag[i].partition);
        dispatch_one(in, "gauge", ti, (value_t){.gauge = (gauge_t)lag[i].lag});
    }
    return 0;
}

static void *rkt_thread(void *arg)
{
    struct rkt_instance *in = arg;
    kts_consumer_run(in->consumer);
    return NULL;
}

/* Drain, stop the thread, close the consumer (see the top of the file). Idempotent. */
static void rkt_stop(struct rkt_instance *in)
{
    pthread_mutex_lock(&in->stop_lock);
    if (!in->drained && in->consumer != NULL) {
        in->drained = true;
        kts_consumer_drain(in->consumer);
        if (in->thread_started)
            pthread_join(in->thread, NULL);
        in->thread_started = false;
        kts_consumer_close(in->consumer);
        if (in->wm != NULL) {
            struct kts_consumer_stats st;
            struct kts_written_times_stats ws;
            kts_consumer_stats(in->consumer, &st);
            kts_written_times_stats(in->wm, &ws);
            INFO(PLUGIN_NAME " plugin (%s): DedupStateFile: %" PRIu64 " value(s) not dispatched "
                             "because already written, %" PRIu64
                             " value(s) without a watermark (table "
                             "full), %" PRIu64 " of %" PRIu64 " series tracked",
                 in->cfg.name, st.skipped, __atomic_load_n(&in->untracked, __ATOMIC_RELAXED),
                 ws.used, ws.series_max);
        }
    }
    pthread_mutex_unlock(&in->stop_lock);
}

/* free_func of the read callback: runs after the read threads stopped and before the write
 * threads stop (collectd 5.12 plugin_shutdown_all → destroy_read_heap). */
static void rkt_read_freed(void *data)
{
    struct rkt_instance *in = data;
    INFO(PLUGIN_NAME " plugin (%s): read threads stopped: draining before the write threads stop",
         in->cfg.name);
    rkt_stop(in);
}

static int rkt_init(void)
{
    static bool initialized;
    if (initialized)
        return 0;
    initialized = true;
    kts_collectd_log_init();
    if (config_failed) {
        ERROR(PLUGIN_NAME " plugin: not starting because of the configuration errors above");
        return -1;
    }
    if (instances_num == 0) {
        ERROR(PLUGIN_NAME " plugin: loaded but no <Plugin " PLUGIN_NAME "> block configured");
        return -1;
    }
    for (size_t i = 0; i < instances_num; i++) {
        struct rkt_instance *in = instances[i];
        char err[1024];
        struct kts_consumer_callbacks cb = {.dispatch = rkt_dispatch, .dispatch_opaque = in};
        if (in->dedup.flush_plugins.n > 0) {
            cb.commit_hook = rkt_commit_hook;
            cb.commit_opaque = in;
            cb.commit_interval = in->dedup.commit_interval;
            INFO(PLUGIN_NAME " plugin (%s): FlushBeforeCommit: offsets (and watermarks) are "
                             "stored every %g s, one interval after flushing %zu writer(s)",
                 in->cfg.name, in->dedup.commit_interval, in->dedup.flush_plugins.n);
        }
        if (in->dedup.state_file != NULL) {
            int wrc = kts_written_times_open(&in->wm, in->dedup.state_file,
                                             (uint64_t)in->dedup.state_series, err, sizeof(err));
            if (wrc < 0) {
                ERROR(PLUGIN_NAME " plugin (%s): DedupStateFile: %s", in->cfg.name, err);
                return -1;
            }
            struct kts_written_times_stats ws;
            kts_written_times_stats(in->wm, &ws);
            INFO(PLUGIN_NAME " plugin (%s): DedupStateFile \"%s\": %" PRIu64 " of %" PRIu64
                             " series known (%" PRIu64
                             " bytes): values not after their series' last "
                             "written time are not dispatched",
                 in->cfg.name, in->dedup.state_file, ws.used, ws.series_max, ws.file_bytes);
        }
        if (in->pipes != NULL) { /* one set per instance = per consumer thread */
            cb.pipeline = kts_plugin_pipelines_process;
            cb.pipeline_opaque = in->pipes;
        }
        if (in->cfg.state_topic != NULL) { /* kts_consumer.h 12-17 */
            cb.state = &kts_plugin_pipelines_state_ops;
            cb.state_ctx = in->pipes;
            cb.commit_interval = in->dedup.commit_interval;
            cb.state_interval = in->dedup.state_interval;
            double every = ceil(in->dedup.state_interval / in->dedup.commit_interval - 1e-9);
            INFO(PLUGIN_NAME " plugin (%s): StateTopic \"%s\": pipeline state restored on "
                             "assignment, checkpointed every %g s (StateInterval %g, "
                             "CommitInterval %g)",
                 in->cfg.name, in->cfg.state_topic,
                 (every > 1 ? every : 1) * in->dedup.commit_interval, in->dedup.state_interval,
                 in->dedup.commit_interval);
        }
        if (in->cfg.log_prefix == NULL &&
            asprintf(&in->cfg.log_prefix, PLUGIN_NAME " plugin (%s)", in->cfg.name) < 0)
            in->cfg.log_prefix = NULL; /* the library's own prefix then */
        int rc = kts_consumer_create(&in->consumer, &in->cfg, &cb, (unsigned)i, err, sizeof(err));
        if (rc < 0) {
            ERROR(PLUGIN_NAME " plugin (%s): %s", in->cfg.name, err);
            return -1;
        }
        plugin_register_write(in->name, rkt_write, &(user_data_t){.data = in});
        rc = plugin_thread_create(&in->thread, rkt_thread, in, "rkt consumer");
        if (rc != 0) {
            ERROR(PLUGIN_NAME " plugin (%s): cannot start the consumer thread: %s", in->cfg.name,
                  STRERROR(rc));
            return -1;
        }
        in->thread_started = true;
        plugin_register_complex_read(NULL, in->name, rkt_read, 0,
                                     &(user_data_t){.data = in, .free_func = rkt_read_freed});
        INFO(PLUGIN_NAME " plugin (%s): consuming %zu topic(s) in group \"%s\"", in->cfg.name,
             in->cfg.topics.n, in->cfg.group_id);
        for (size_t k = 0; k < kts_plugin_pipelines_count(in->pipes); k++)
            INFO(PLUGIN_NAME " plugin (%s): pipeline \"%s\", mode %s", in->cfg.name,
                 kts_plugin_pipelines_name(in->pipes, k),
                 kts_plugin_pipelines_copy_mode(in->pipes, k) ? "copy (raw and filtered)"
                                                              : "replace");
    }
    return 0;
}

static int rkt_shutdown(void)
{
    /* The write threads are gone: nothing calls rkt_write any more. */
    for (size_t i = 0; i < instances_num; i++) {
        struct rkt_instance *in = instances[i];
        rkt_stop(in); /* only if the read callback's free_func did not run (e.g. failed init) */
        plugin_unregister_write(in->name);
        kts_consumer_destroy(in->consumer);
        in->consumer = NULL;
        kts_plugin_pipelines_destroy(in->pipes); /* points still held back are lost (docs) */
        in->pipes = NULL;
        kts_written_times_close(in->wm); /* msync: also guards against a crash of the machine */
        in->wm = NULL;
        kts_consumer_config_free(&in->cfg);
        kts_opt_free(rkt_dedup_options, &in->dedup);
        pthread_mutex_destroy(&in->stop_lock);
        pthread_mutex_destroy(&in->wlock);
        pthread_mutex_destroy(&in->hook_lock);
        free(in->wcur);
        free(in->wprev);
        free(in);
        instances[i] = NULL;
    }
    instances_num = 0;
    return 0;
}

void module_register(void);
__attribute__((visibility("default"))) void module_register(void)
{
    plugin_register_complex_config(PLUGIN_NAME, rkt_config);
    plugin_register_init(PLUGIN_NAME, rkt_init);
    plugin_register_shutdown(PLUGIN_NAME, rkt_shutdown);
}
