/* SPDX-License-Identifier: MIT */
/* kts_consumer: see kts_consumer.h for the guarantees (numbers below refer to them), and
 * kts_consumer_impl.h for how the consumer's files share the work. This file: options, output
 * naming, the life cycle and the poll loop (decoding, the pipeline hook). */
#include "kts_consumer_impl.h"

#include "build-config.h"
#include "kts_array.h"
#include "kts_kafka_properties.h"
#include "kts_rdkver.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------ options */

static const char *const start_words[] = {"earliest", "latest", NULL};

/* What read_kafka_ts refuses after librdkafka accepted the pair. */
static int property_extra(const char *key, const char *value, const char *where)
{
    char lim[768];
    const char *bug;
    /* What the linked librdkafka can do (kts_rdkver.h, docs/LIBRDKAFKA.md). */
    if (strcasecmp(key, "partition.assignment.strategy") == 0 && strstr(value, "cooperative") &&
        (bug = kts_rdk_limit(KTS_RDK_COOPERATIVE, lim, sizeof(lim))) != NULL) {
        kts_log(KTS_LOG_ERR,
                "%s: Property \"partition.assignment.strategy\" \"%s\" is refused: "
                "%s; use \"range\", \"roundrobin\" or both, or librdkafka %s or later",
                where, value, bug, kts_rdk_since(KTS_RDK_COOPERATIVE));
        return -EINVAL;
    }
    if (strcasecmp(key, "group.protocol") == 0 && strcasecmp(value, "consumer") == 0 &&
        (bug = kts_rdk_limit(KTS_RDK_KIP848, lim, sizeof(lim))) != NULL) {
        kts_log(KTS_LOG_ERR,
                "%s: Property \"group.protocol\" \"consumer\" is refused: %s; use "
                "\"classic\" (the default), or librdkafka %s or later",
                where, bug, kts_rdk_since(KTS_RDK_KIP848));
        return -EINVAL;
    }
    if (strcasecmp(key, "enable.auto.offset.store") == 0 || strcasecmp(key, "group.id") == 0 ||
        strcasecmp(key, "enable.auto.commit") == 0) {
        kts_log(KTS_LOG_ERR,
                "%s: Property \"%s\" is set by the plugin (at-least-once delivery "
                "depends on it); use GroupId for the group",
                where, key);
        return -EINVAL;
    }
    return 0;
}

/* Property "key" "value" and PropertyFile "key" "/path/to/file" (the value read from the file,
 * for secrets: see kts_secret.h): kts_kafka_properties_option(), shared with write_kafka_ts. */
static int property_option(const struct kts_opt *opt, void *obj, const struct kts_conf *item,
                           const char *where)
{
    struct kts_consumer_config *cfg = obj;
    return kts_kafka_properties_option(opt, item, where, &cfg->properties, property_extra);
}

#define OFF(f) offsetof(struct kts_consumer_config, f)
const struct kts_opt kts_consumer_options[] = {
    {"GroupId", KTS_OPT_STRING, OFF(group_id), NULL, 0, 0, NULL, NULL, KTS_OPT_REQUIRED,
     "consumer group (group.id); aggregators sharing it share the partitions"},
    {"Topic", KTS_OPT_STRINGS, OFF(topics), NULL, 0, 0, NULL, NULL, KTS_OPT_REQUIRED,
     "topic to consume (repeatable); a name starting with ^ is a regular expression"},
    {"StartPosition", KTS_OPT_ENUM, OFF(start_position), "earliest", 0, 0, start_words, NULL, 0,
     "where a group without committed offsets starts: earliest or latest (auto.offset.reset)"},
    {"DeadLetterTopic", KTS_OPT_STRING, OFF(dead_letter_topic), NULL, 0, 0, NULL, NULL, 0,
     "topic that receives a copy of every undecodable message (default: none)"},
    {"StateTopic", KTS_OPT_STRING, OFF(state_topic), NULL, 0, 0, NULL, NULL, 0,
     "compacted topic that keeps the pipelines' per-series state (default: none, state is lost "
     "on restart)"},
    {"Property", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, property_option, 0,
     "any librdkafka property, e.g. Property \"bootstrap.servers\" \"host:9092\" (repeatable)"},
    {"PropertyFile", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, property_option, 0,
     "a librdkafka property whose value is read from a file (for secrets; repeatable)"},
    {"TypesDB", KTS_OPT_STRINGS, OFF(typesdb), NULL, 0, 0, NULL, NULL, 0,
     "types.db file(s) to validate value lists against (default: " KTS_TYPESDB_DEFAULT ")"},
    {"MaxInFlightMessages", KTS_OPT_INT, OFF(max_inflight_messages), "10000", 1, 10000000, NULL,
     NULL, 0, "most messages consumed but not yet completely written"},
    {"MaxInFlightValues", KTS_OPT_INT, OFF(max_inflight_values), "50000", 1, 10000000, NULL, NULL,
     0, "most value lists consumed but not yet written (queued or dispatched)"},
    {"BatchSize", KTS_OPT_INT, OFF(batch_size), "1000", 1, 100000, NULL, NULL, 0,
     "most messages taken from librdkafka per poll"},
    {"WriteTimeout", KTS_OPT_DURATION, OFF(write_timeout), "60", 1, 86400, NULL, NULL, 0,
     "seconds after which a dispatched value never seen by the write path counts as done"},
    {"DrainTimeout", KTS_OPT_DURATION, OFF(drain_timeout), "10", 0, 3600, NULL, NULL, 0,
     "seconds shutdown waits for dispatched values to be written"},
    {"CloseTimeout", KTS_OPT_DURATION, OFF(close_timeout), "10", 0, 3600, NULL, NULL, 0,
     "seconds shutdown waits for the group to take the partitions back"},
    {"OrderedDispatch", KTS_OPT_BOOL, OFF(ordered), "true", 0, 0, NULL, NULL, 0,
     "at most one value per series between dispatch and the write path, in time order (false "
     "is a test knob, refused by read_kafka_ts unless KTS_TEST_KNOBS=1: see kts_testhooks.h)"},
    {"OutputHostPrefix", KTS_OPT_STRING, OFF(host_prefix), NULL, 0, 0, NULL, NULL, 0,
     "prepended to the host of every dispatched value list"},
    {"OutputHostSuffix", KTS_OPT_STRING, OFF(host_suffix), NULL, 0, 0, NULL, NULL, 0,
     "appended to the host of every dispatched value list"},
    {"OutputPluginInstanceSuffix", KTS_OPT_STRING, OFF(plugin_instance_suffix), NULL, 0, 0, NULL,
     NULL, 0, "appended to the plugin instance of every dispatched value list"},
    {"Instance", KTS_OPT_STRING, OFF(name), NULL, 0, 0, NULL, NULL, 0,
     "name in log lines and self-metrics (default: the group id)"},
    KTS_OPT_END,
};
#undef OFF

void kts_consumer_config_free(struct kts_consumer_config *cfg)
{
    kts_rdkconf_wipe_values(&cfg->properties); /* some are secrets */
    kts_opt_free(kts_consumer_options, cfg);
    free(cfg->log_prefix);
    cfg->log_prefix = NULL;
    kts_strv_free(&cfg->properties);
}

/* ------------------------------------------------------------------ naming (7) */

static int append(char *dst, const char *pre, const char *suf)
{
    size_t lp = pre ? strlen(pre) : 0, ld = strlen(dst), ls = suf ? strlen(suf) : 0;
    if (lp + ld + ls > KTS_NAME_MAX - 1)
        return -ENAMETOOLONG;
    memmove(dst + lp, dst, ld + 1);
    if (lp)
        memcpy(dst, pre, lp);
    if (ls)
        memcpy(dst + lp + ld, suf, ls + 1);
    return 0;
}

int kts_consumer_apply_naming(const struct kts_consumer_config *cfg, struct kts_vl *vl)
{
    /* A suffix appended to an empty name loses its leading separators (kts_name_suffix). */
    const char *hp = cfg->host_prefix;
    const char *hs = kts_name_suffix(hp != NULL && hp[0] != '\0' ? hp : vl->host, cfg->host_suffix);
    const char *ps = kts_name_suffix(vl->plugin_instance, cfg->plugin_instance_suffix);
    size_t lh = strlen(vl->host) + (hp ? strlen(hp) : 0) + (hs ? strlen(hs) : 0);
    size_t lpi = strlen(vl->plugin_instance) + (ps ? strlen(ps) : 0);
    if (lh > KTS_NAME_MAX - 1 || lpi > KTS_NAME_MAX - 1)
        return -ENAMETOOLONG;
    append(vl->host, hp, hs);
    append(vl->plugin_instance, NULL, ps);
    return 0;
}

/* ------------------------------------------------------------------ messages */

static int emit_cb(const struct kts_vl *vl, void *ctx)
{
    struct kts_consumer *c = ctx;
    if (KTS_ARRAY_GROW(c->scratch, c->scratch_cap, c->scratch_n + 1) != 0)
        return -ENOMEM;
    struct kts_vl *dst = &c->scratch[c->scratch_n];
    int rc = kts_vl_copy(dst, vl);
    if (rc < 0)
        return rc;
    c->scratch_n++;
    rc = kts_consumer_apply_naming(&c->cfg, dst);
    if (rc < 0)
        snprintf(c->scratch_err, sizeof(c->scratch_err),
                 "output name too long for %s/%s/%s with the configured prefix/suffix", vl->host,
                 vl->plugin, vl->type);
    return rc;
}

static int decode_cb(struct kts_vl *vl, void *opaque)
{
    struct kts_consumer *c = opaque;
    int rc = kts_typesdb_check(c->types, vl, c->scratch_err, sizeof(c->scratch_err));
    if (rc < 0)
        return rc;
    c->scratch_values++;
    if (c->cb.pipeline == NULL)
        return emit_cb(vl, c);
    rc = c->cb.pipeline(vl, emit_cb, c, c->cb.pipeline_opaque);
    if (rc < 0 && c->scratch_err[0] == '\0')
        snprintf(c->scratch_err, sizeof(c->scratch_err), "pipeline: %s", strerror(-rc));
    return rc;
}

static void scratch_clear(struct kts_consumer *c)
{
    for (size_t i = 0; i < c->scratch_n; i++)
        kts_vl_fini(&c->scratch[i]);
    c->scratch_n = 0;
}

static void handle_message(struct kts_consumer *c, rd_kafka_message_t *km)
{
    if (km->err) {
        if (km->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            kts_log_limited(&c->rl_err, KTS_LOG_WARNING, "%s: consumer: %s", c->where,
                            rd_kafka_message_errstr(km));
        return;
    }
    if (c->state != NULL && kts_cons_state_hold(c, km))
        return; /* its partition's state is not installed yet (13) */
    if (c->state != NULL && c->cb.state->position != NULL)
        c->cb.state->position(c->cb.state_ctx, km->partition, km->offset);
    /* Decode and run the pipeline without the lock: scratch is this thread's. */
    c->scratch_err[0] = '\0';
    scratch_clear(c);
    char errbuf[512] = "";
    int rc = kts_decoder_decode(c->decoder, km->payload ? km->payload : "", km->len, NULL,
                                decode_cb, c, errbuf, sizeof(errbuf));
    const char *why = c->scratch_err[0] ? c->scratch_err : errbuf[0] ? errbuf : NULL;
    char whybuf[64];
    if (rc < 0 && why == NULL) {
        snprintf(whybuf, sizeof(whybuf), "%s", strerror(-rc));
        why = whybuf;
    }

    pthread_mutex_lock(&c->lock);
    c->st.messages++;
    c->st.values += c->scratch_values; /* counted without the lock (ThreadSanitizer) */
    c->scratch_values = 0;
    struct part *p = kts_cons_part_find(c, rd_kafka_topic_name(km->rkt), km->partition);
    if (p == NULL) { /* not (or no longer) ours: the owner consumes it */
        scratch_clear(c);
        pthread_mutex_unlock(&c->lock);
        return;
    }
    p->next_offset = km->offset + 1;
    struct msg *m = kts_cons_msg_append(c, p, km->offset);
    if (m == NULL) {
        scratch_clear(c);
        kts_log_limited(&c->rl_err, KTS_LOG_ERR, "%s: out of memory", c->where);
        pthread_mutex_unlock(&c->lock);
        return; /* not stored: redelivered after a restart */
    }
    if (rc < 0) {
        scratch_clear(c); /* all or nothing (6) */
        kts_cons_bad_message(c, km, m, why);
        pthread_mutex_unlock(&c->lock);
        return;
    }
    for (size_t i = 0; i < c->scratch_n; i++) {
        if (kts_inflight_add(&c->inf, &c->scratch[i], &m->im) < 0) {
            kts_vl_fini(&c->scratch[i]);
            kts_log_limited(&c->rl_err, KTS_LOG_ERR,
                            "%s: out of memory; "
                            "a value is lost",
                            c->where);
        }
    }
    c->scratch_n = 0;
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------ life cycle */

void kts_cons_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const struct kts_consumer *c = rd_kafka_opaque(rk);
    kts_rdklog_log(c ? &c->log : NULL, level, fac, buf);
}

void kts_cons_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kts_consumer *c = opaque;
    (void)rk;
    kts_rdklog_error(&c->log, err, reason);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* The object with its settings, locks and tables; no librdkafka handle yet. */
static int consumer_alloc(struct kts_consumer **out, const struct kts_consumer_config *cfg,
                          const struct kts_consumer_callbacks *cb, unsigned instance_id)
{
    struct kts_consumer *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    *out = c;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->cb = *cb;
    c->rl_bad.interval_s = c->rl_err.interval_s = c->rl_dlq.interval_s = 10;
    /* Keep the scalars; duplicate the naming strings (the only pointers used later). */
    c->cfg = *cfg;
    memset(&c->cfg.topics, 0, sizeof(c->cfg.topics));
    memset(&c->cfg.properties, 0, sizeof(c->cfg.properties));
    memset(&c->cfg.typesdb, 0, sizeof(c->cfg.typesdb));
    c->cfg.group_id = c->cfg.dead_letter_topic = c->cfg.log_prefix = c->cfg.state_topic = NULL;
    c->name = strdup(cfg->name ? cfg->name : cfg->group_id);
    c->cfg.name = c->name;
    c->cfg.host_prefix = c->host_prefix = dup_or_null(cfg->host_prefix);
    c->cfg.host_suffix = c->host_suffix = dup_or_null(cfg->host_suffix);
    c->cfg.plugin_instance_suffix = c->pi_suffix = dup_or_null(cfg->plugin_instance_suffix);
    c->inf.ordered = cfg->ordered;
    c->inf.write_timeout = cfg->write_timeout;
    c->inf.instance_bits = (uint64_t)(instance_id & 0xFF) << 56;
    c->inf.dispatch = cb->dispatch;
    c->inf.dispatch_opaque = cb->dispatch_opaque;
    c->inf.st = &c->st;
    c->inf.done_cond = &c->cond;
    int rc = kts_inflight_init(&c->inf, (size_t)cfg->max_inflight_values);
    c->types = kts_typesdb_create();
    c->decoder = kts_decoder_create(0);
    if (c->name == NULL || rc < 0 || c->types == NULL || c->decoder == NULL)
        return -ENOMEM;
    char where[512];
    snprintf(where, sizeof(where), "kts_consumer (%s)", c->name);
    rc = kts_rdklog_init(&c->log, cfg->log_prefix ? cfg->log_prefix : where, &cfg->properties);
    c->where = c->inf.where = c->log.where;
    return rc;
}

static int load_types(struct kts_consumer *c, const struct kts_consumer_config *cfg, char *errbuf,
                      size_t errbuf_size)
{
    int rc = 0;
    if (cfg->typesdb.n == 0)
        rc = kts_typesdb_load_file(c->types, KTS_TYPESDB_DEFAULT, errbuf, errbuf_size);
    for (size_t i = 0; rc == 0 && i < cfg->typesdb.n; i++)
        rc = kts_typesdb_load_file(c->types, cfg->typesdb.v[i], errbuf, errbuf_size);
    return rc;
}

/* The consumer's librdkafka properties (1): the user's, then the plugin's own. */
static int consumer_conf(rd_kafka_conf_t *conf, const struct kts_consumer_config *cfg, char *errbuf,
                         size_t errbuf_size)
{
    int rc = 0;
    bool strategy_set = false, qmin_set = false;
    for (size_t i = 0; rc == 0 && i + 1 < cfg->properties.n; i += 2) {
        /* KIP-848: the broker assigns (group.remote.assignor); librdkafka refuses a client-side
         * partition.assignment.strategy with group.protocol "consumer". */
        if (strcasecmp(cfg->properties.v[i], "partition.assignment.strategy") == 0 ||
            (strcasecmp(cfg->properties.v[i], "group.protocol") == 0 &&
             strcasecmp(cfg->properties.v[i + 1], "consumer") == 0))
            strategy_set = true;
        if (strcasecmp(cfg->properties.v[i], "queued.min.messages") == 0)
            qmin_set = true;
        rc = kts_rdkconf_set(conf, cfg->properties.v[i], cfg->properties.v[i + 1], errbuf,
                             errbuf_size);
    }
    if (rc == 0 && !strategy_set)
        rc = kts_rdkconf_set(conf, "partition.assignment.strategy", "range,roundrobin", errbuf,
                             errbuf_size);
    /* With librdkafka 2.0.2's default (100000) the fetcher pauses whenever the local queue is
     * that full and resumes late: a backlog drained at ~120,000 values/s with the CPU mostly
     * idle; 200000 gave ~225,000/s (docs/PERFORMANCE.md, bench/read-bench). The byte limit
     * queued.max.messages.kbytes still applies. */
    if (rc == 0 && !qmin_set)
        rc = kts_rdkconf_set(conf, "queued.min.messages", "200000", errbuf, errbuf_size);
    if (rc == 0)
        rc = kts_rdkconf_set(conf, "group.id", cfg->group_id, errbuf, errbuf_size);
    if (rc == 0)
        rc = kts_rdkconf_set(conf, "enable.auto.commit", "true", errbuf, errbuf_size);
    if (rc == 0)
        rc = kts_rdkconf_set(conf, "enable.auto.offset.store", "false", errbuf, errbuf_size);
    if (rc == 0)
        rc = kts_rdkconf_set(conf, "auto.offset.reset",
                             cfg->start_position == KTS_START_LATEST ? "latest" : "earliest",
                             errbuf, errbuf_size);
    return rc;
}

/* The librdkafka consumer handle and its queue. */
static int consumer_new(struct kts_consumer *c, const struct kts_consumer_config *cfg, char *errbuf,
                        size_t errbuf_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_log_cb(conf, kts_cons_on_log);
    rd_kafka_conf_set_error_cb(conf, kts_cons_on_error);
    rd_kafka_conf_set_rebalance_cb(conf, kts_cons_on_rebalance);
    int rc = consumer_conf(conf, cfg, errbuf, errbuf_size);
    if (rc < 0) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    char errstr[512];
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (c->rk == NULL) {
        char masked[1024];
        rd_kafka_conf_destroy(conf);
        snprintf(errbuf, errbuf_size, "cannot create the consumer: %s",
                 kts_rdklog_mask(&c->log, errstr, masked, sizeof(masked)));
        return -EINVAL;
    }
    rd_kafka_poll_set_consumer(c->rk);
    c->q = rd_kafka_queue_get_consumer(c->rk);
    return 0;
}

static int subscribe(struct kts_consumer *c, const struct kts_consumer_config *cfg, char *errbuf,
                     size_t errbuf_size)
{
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new((int)cfg->topics.n);
    for (size_t i = 0; i < cfg->topics.n; i++)
        rd_kafka_topic_partition_list_add(topics, cfg->topics.v[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errbuf, errbuf_size, "cannot subscribe: %s", rd_kafka_err2str(err));
        return -EINVAL;
    }
    return 0;
}

int kts_consumer_create(struct kts_consumer **out, const struct kts_consumer_config *cfg,
                        const struct kts_consumer_callbacks *cb, unsigned instance_id, char *errbuf,
                        size_t errbuf_size)
{
    *out = NULL;
    if (cfg->group_id == NULL || cfg->topics.n == 0 || cb->dispatch == NULL) {
        snprintf(errbuf, errbuf_size, "GroupId, Topic and a dispatch callback are required");
        return -EINVAL;
    }
    if ((cb->commit_hook != NULL || cfg->state_topic != NULL) && !(cb->commit_interval > 0)) {
        snprintf(errbuf, errbuf_size, "a commit hook or a StateTopic needs a commit interval > 0");
        return -EINVAL;
    }
    struct kts_consumer *c = NULL;
    int rc = consumer_alloc(&c, cfg, cb, instance_id);
    if (rc < 0) {
        snprintf(errbuf, errbuf_size, "out of memory");
        kts_consumer_destroy(c);
        return rc;
    }
    rc = load_types(c, cfg, errbuf, errbuf_size);
    if (rc == 0)
        rc = consumer_new(c, cfg, errbuf, errbuf_size);
    if (rc == 0)
        rc = kts_cons_dlq_create(c, cfg, errbuf, errbuf_size);
    if (rc == 0)
        rc = kts_cons_state_create(c, cfg, errbuf, errbuf_size);
    if (rc == 0)
        rc = subscribe(c, cfg, errbuf, errbuf_size);
    if (rc < 0) {
        kts_consumer_destroy(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* (4): wait for confirmations (at most 0.1 s) instead of consuming. Lock held. */
static void wait_for_room(struct kts_consumer *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&c->cond, &c->lock, &ts);
    pthread_mutex_unlock(&c->lock);
    kts_cons_dlq_poll(c);
    pthread_mutex_lock(&c->lock);
}

int kts_consumer_run(struct kts_consumer *c)
{
    size_t cap = (size_t)c->cfg.batch_size;
    rd_kafka_message_t **batch = calloc(cap, sizeof(*batch));
    if (batch == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&c->lock);
    c->running = true;
    int64_t last_scan = kts_inflight_now_ns(), last_commit = kts_inflight_now_ns();
    bool commit_points = c->cb.commit_hook != NULL || c->state != NULL;
    while (!c->stop) {
        kts_inflight_pump(&c->inf);
        kts_cons_store_offsets(c);
        bool restoring = kts_cons_state_poll(c);
        if (kts_inflight_now_ns() - last_scan > 1000000000) {
            kts_inflight_expire(&c->inf, kts_inflight_now_ns());
            last_scan = kts_inflight_now_ns();
        }
        if (commit_points &&
            kts_inflight_now_ns() - last_commit >= (int64_t)(c->cb.commit_interval * 1e9)) {
            kts_cons_commit_point(c, false);
            kts_cons_state_checkpoint_all(c); /* (14) */
            last_commit = kts_inflight_now_ns();
            if (c->stop)
                break;
        }
        int64_t room = c->cfg.max_inflight_messages - (int64_t)c->st.inflight_messages;
        bool full = room <= 0 || c->st.inflight_values >= (uint64_t)c->cfg.max_inflight_values;
        if (c->inf.draining || full || c->hold) {
            wait_for_room(c);
            continue;
        }
        pthread_mutex_unlock(&c->lock);
        size_t want = (size_t)room < cap ? (size_t)room : cap;
        ssize_t n = rd_kafka_consume_batch_queue(c->q, restoring ? 5 : 100, batch, want);
        for (ssize_t i = 0; i < n; i++) {
            handle_message(c, batch[i]);
            rd_kafka_message_destroy(batch[i]);
        }
        kts_cons_dlq_poll(c);
        pthread_mutex_lock(&c->lock);
    }
    kts_inflight_pump(&c->inf);
    kts_cons_store_offsets(c);
    c->running = false;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    free(batch);
    return 0;
}

int kts_consumer_written(struct kts_consumer *c, uint64_t token)
{
    pthread_mutex_lock(&c->lock);
    int rc = kts_inflight_written(&c->inf, token);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

bool kts_consumer_owns(const struct kts_consumer *c, uint64_t token)
{
    return kts_inflight_owns(&c->inf, token);
}

static void abs_deadline(struct timespec *ts, double s)
{
    clock_gettime(CLOCK_REALTIME, ts);
    int64_t ns = ts->tv_nsec + (int64_t)(s * 1e9);
    ts->tv_sec += ns / 1000000000;
    ts->tv_nsec = ns % 1000000000;
}

uint64_t kts_consumer_drain(struct kts_consumer *c)
{
    struct timespec dl;
    abs_deadline(&dl, c->cfg.drain_timeout);
    pthread_mutex_lock(&c->lock);
    if (c->state != NULL) { /* (16) queued values too: the states absorbed them */
        c->hold = true;
        while (c->st.inflight_values > 0)
            if (pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT)
                break;
    }
    c->inf.draining = true;
    pthread_cond_broadcast(&c->cond);
    while (c->inf.dispatched_now > 0) {
        if (pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT)
            break;
    }
    uint64_t left = c->inf.dispatched_now;
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    struct timespec dl2;
    abs_deadline(&dl2, 5);
    while (c->running)
        if (pthread_cond_timedwait(&c->cond, &c->lock, &dl2) == ETIMEDOUT)
            break;
    kts_cons_store_offsets(c);
    if (c->cb.commit_hook != NULL || c->state != NULL)
        kts_cons_commit_point(c, true); /* (11) flush once more, then store everything done */
    kts_cons_state_final(c);            /* (16) */
    if (left > 0)
        kts_log(KTS_LOG_WARNING,
                "%s: shutdown: %llu dispatched value(s) "
                "were not confirmed written within DrainTimeout; their messages will be "
                "consumed again",
                c->where, (unsigned long long)left);
    else
        kts_log(KTS_LOG_INFO,
                "%s: shutdown: every dispatched value was "
                "written (%llu written in total); %llu queued value(s) left for redelivery",
                c->where, (unsigned long long)c->st.written,
                (unsigned long long)c->st.inflight_values);
    pthread_mutex_unlock(&c->lock);
    return left;
}

void kts_consumer_stats(struct kts_consumer *c, struct kts_consumer_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    pthread_mutex_unlock(&c->lock);
}

void kts_consumer_close(struct kts_consumer *c)
{
    if (c == NULL)
        return;
    if (c->rk != NULL) {
        /* (8): unsubscribe, serve the revoke until the assignment is empty (bounded). */
        pthread_mutex_lock(&c->lock);
        c->inf.draining = true; /* nothing more is dispatched, also not from written() */
        pthread_mutex_unlock(&c->lock);
        rd_kafka_unsubscribe(c->rk);
        int64_t deadline = kts_inflight_now_ns() + (int64_t)(c->cfg.close_timeout * 1e9);
        rd_kafka_message_t *batch[64];
        for (;;) {
            rd_kafka_topic_partition_list_t *a = NULL;
            int cnt = 0;
            if (rd_kafka_assignment(c->rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a != NULL)
                cnt = a->cnt;
            if (a != NULL)
                rd_kafka_topic_partition_list_destroy(a);
            if (cnt == 0 || kts_inflight_now_ns() > deadline)
                break;
            ssize_t n = rd_kafka_consume_batch_queue(c->q, 100, batch, 64);
            for (ssize_t i = 0; i < n; i++)
                rd_kafka_message_destroy(batch[i]); /* never stored: redelivered */
        }
        if (c->q != NULL)
            rd_kafka_queue_destroy(c->q);
        c->q = NULL;
        rd_kafka_consumer_close(c->rk); /* commits the stored offsets */
        pthread_mutex_lock(&c->lock);
        rd_kafka_t *rk = c->rk;
        c->rk = NULL; /* kts_consumer_lag() from another thread now sees no handle */
        pthread_mutex_unlock(&c->lock);
        rd_kafka_destroy(rk);
    }
    kts_cons_dlq_close(c);
    kts_cons_state_destroy(c);
}

void kts_consumer_destroy(struct kts_consumer *c)
{
    if (c == NULL)
        return;
    kts_consumer_close(c);
    /* Free everything left (queued values, messages, partitions, series). */
    kts_inflight_fini(&c->inf);
    kts_cons_parts_free(c);
    scratch_clear(c);
    free(c->scratch);
    kts_decoder_destroy(c->decoder);
    kts_typesdb_destroy(c->types);
    free(c->dlq_topic);
    kts_rdklog_fini(&c->log);
    free(c->name);
    free(c->host_prefix);
    free(c->host_suffix);
    free(c->pi_suffix);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
