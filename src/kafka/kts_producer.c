/* SPDX-License-Identifier: MIT */
/* kts_producer: see kts_producer.h for the guarantees (numbers below refer to them). */
#include "kts_producer.h"

#include "kts_array.h"
#include "kts_buf.h"
#include "kts_kafka_properties.h"
#include "kts_log.h"
#include "kts_rdkconf.h"
#include "kts_rdkver.h"
#include "kts_spool.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <yajl/yajl_tree.h>

/* ------------------------------------------------------------------ options */

const char *const kts_producer_format_words[] = {"json", "collectd", NULL};
const char *const kts_producer_key_words[] = {"series", "host", "none", NULL};
const char *const kts_producer_spool_mode_words[] = {"overflow", "always", NULL};
/* What the words mean, in the same order. */
static const enum kts_format format_of_word[] = {KTS_FORMAT_TS, KTS_FORMAT_COLLECTD};
static const enum kts_key_mode key_of_word[] = {KTS_KEY_SERIES, KTS_KEY_HOST, KTS_KEY_NONE};

/* Property "key" "value" and PropertyFile "key" "/path": kts_kafka_properties_option(), shared with
 * read_kafka_ts (librdkafka checks the pair; its errors name the allowed values). */
static int property_option(const struct kts_opt *opt, void *obj, const struct kts_conf *item,
                           const char *where)
{
    struct kts_producer_config *cfg = obj;
    return kts_kafka_properties_option(opt, item, where, &cfg->properties, NULL);
}

#define OFF(f) offsetof(struct kts_producer_config, f)
const struct kts_opt kts_producer_options[] = {
    {"Topic", KTS_OPT_STRING, OFF(topic), NULL, 0, 0, NULL, NULL, KTS_OPT_REQUIRED,
     "Kafka topic every value list is written to"},
    {"Format", KTS_OPT_ENUM, OFF(format), "json", 0, 0, kts_producer_format_words, NULL, 0,
     "message format: json (time-series JSON v1, docs/FORMAT.md) or collectd (stock write_kafka "
     "JSON)"},
    {"Key", KTS_OPT_ENUM, OFF(key), "series", 0, 0, kts_producer_key_words, NULL, 0,
     "message key: series (host/plugin-instance/type-instance), host, or none"},
    {"Property", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, property_option, 0,
     "any librdkafka property, e.g. Property \"bootstrap.servers\" \"host:9092\" (repeatable)"},
    {"PropertyFile", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, property_option, 0,
     "a librdkafka property whose value is read from a file (for secrets; repeatable)"},
    {"BufferMessages", KTS_OPT_INT, OFF(buffer_messages), "100000", 1, 10000000, NULL, NULL, 0,
     "most value lists waiting for delivery (queue.buffering.max.messages)"},
    {"BufferBytes", KTS_OPT_INT, OFF(buffer_kbytes), "268435456", 1024, 2147483647.0 * 1024, NULL,
     NULL, 0, "most payload bytes waiting for delivery (queue.buffering.max.kbytes × 1024)"},
    {"BlockTimeout", KTS_OPT_DURATION, OFF(block_timeout), "5", 0, 3600, NULL, NULL, 0,
     "seconds a write waits for queue space before the value list is dropped"},
    {"FlushTimeout", KTS_OPT_DURATION, OFF(flush_timeout), "10", 0, 3600, NULL, NULL, 0,
     "seconds shutdown waits for outstanding deliveries"},
    {"SkipMarked", KTS_OPT_BOOL, OFF(skip_marked), "true", 0, 0, NULL, NULL, 0,
     "skip value lists dispatched by read_kafka_ts (loop prevention)"},
    {"Instance", KTS_OPT_STRING, OFF(name), NULL, 0, 0, NULL, NULL, 0,
     "name in log lines and self-metrics (default: the topic)"},
    {"SpoolDirectory", KTS_OPT_STRING, OFF(spool_dir), NULL, 0, 0, NULL, NULL, 0,
     "absolute path of the on-disk spool for outages longer than the buffer, or \"none\" "
     "(default: BaseDir/write_kafka_ts/<Instance>)"},
    {"SpoolMaxBytes", KTS_OPT_INT, OFF(spool_max_bytes), "1073741824", 1048576, 1125899906842624.0,
     NULL, NULL, 0, "most bytes the spool files may hold; when full, value lists are dropped"},
    {"SpoolSync", KTS_OPT_BOOL, OFF(spool_sync), "false", 0, 0, NULL, NULL, 0,
     "fdatasync the spool once a second (survives power loss, not only a crash)"},
    {"SpoolMode", KTS_OPT_ENUM, OFF(spool_mode), "overflow", 0, 0, kts_producer_spool_mode_words,
     NULL, 0,
     "overflow: spool what the memory buffer cannot hold; always: write-ahead, every value list "
     "on disk until the broker acknowledges it"},
    KTS_OPT_END,
};
#undef OFF

void kts_producer_config_free(struct kts_producer_config *cfg)
{
    kts_rdkconf_wipe_values(&cfg->properties); /* some are secrets */
    kts_opt_free(kts_producer_options, cfg);
    free(cfg->log_prefix);
    cfg->log_prefix = NULL;
    kts_strv_free(&cfg->properties);
}

int kts_producer_config_check(const struct kts_producer_config *cfg, const char *where)
{
    int rc = 0;
    bool off = cfg->spool_dir != NULL && strcmp(cfg->spool_dir, "none") == 0;
    if (cfg->spool_dir != NULL && !off && cfg->spool_dir[0] != '/') {
        kts_log(KTS_LOG_ERR,
                "%s: invalid value \"%s\" for option \"SpoolDirectory\"; allowed: an "
                "absolute path, or \"none\" (no spool)",
                where, cfg->spool_dir);
        rc = -EINVAL;
    }
    if (off && cfg->spool_sync) {
        kts_log(KTS_LOG_ERR,
                "%s: option \"SpoolSync\" needs a spool: remove it or "
                "SpoolDirectory \"none\"",
                where);
        rc = -EINVAL;
    }
    if (off && cfg->spool_mode == KTS_SPOOL_MODE_ALWAYS) {
        kts_log(KTS_LOG_ERR,
                "%s: option \"SpoolMode\" \"always\" needs a spool: remove it or "
                "SpoolDirectory \"none\"",
                where);
        rc = -EINVAL;
    }
    return rc;
}

/* ------------------------------------------------------------------ producer */

/* One encode buffer per sending thread (collectd's write threads), found through a key. */
struct tls_node {
    struct kts_buf buf;
    struct tls_node *next;
};

struct kts_producer {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    char *name;
    const char *where; /* starts every log line: log.where (kts_producer_config.log_prefix) */
    enum kts_format format;
    enum kts_key_mode key;
    bool skip_marked;
    double block_timeout;
    struct kts_rdklog log; /* log prefix, secret values masked in librdkafka's lines (7) */

    pthread_t poller;
    int stop; /* atomic */
    int poller_started;
    int overflowing;  /* atomic: a drop for queue_full happened and no space freed since (3) */
    int closing;      /* atomic: purge reports are expected */
    int brokers_down; /* atomic: librdkafka said all brokers are down (ends the topic check) */

    /* atomic counters. Successful deliveries have no report of their own (8 in the file
     * comment below): delivered = sent - failed - purged - still in librdkafka's queue. */
    uint64_t sent, failed, purged;
    uint64_t unsure; /* failed or purged, but possibly written by the broker (request sent, no
                      * answer: rd_kafka_message_status() POSSIBLY_PERSISTED) */
    uint64_t delivered_seen; /* highest delivered count reported, so the counter never falls */
    uint64_t dropped_queue_full, dropped_too_large, dropped_encode, dropped_error, skipped;

    /* Back-pressure (3): senders wait on space_cond; the delivery thread wakes them after a
     * poll that served delivery reports, instead of each sender polling the queue. */
    pthread_mutex_t space_lock;
    pthread_cond_t space_cond;
    int waiters;      /* atomic */
    uint64_t blocked; /* atomic: sends that had to wait for queue space */

    /* Delivery latency from librdkafka's statistics (µs; atomic; see on_stats). */
    uint64_t lat_avg_us, lat_max_us, lat_windows;

    struct kts_ratelimit rl_drop, rl_fail;
    pthread_key_t tls_buf;
    pthread_mutex_t bufs_lock;
    struct tls_node *bufs; /* every thread's encode buffer, freed at close */

    /* Spool (10). spool and the counters below it are guarded by spool_lock; `spooling`
     * (atomic) is set under the lock and says new value lists go to the spool. */
    struct kts_spool *spool;
    pthread_mutex_t spool_lock;
    int spooling;
    uint64_t msg_seq; /* atomic: produce order, each message's opaque */
    uint64_t spooled, replayed, dropped_spool_full, dropped_spool_error; /* atomic */
    struct kts_ratelimit rl_spool, rl_spool_on, rl_spool_off; /* drops; the two switches */
    double last_flush, last_sync;
    /* Write-ahead (11): messages produced from the spool, in order, by seq (their opaque):
     * wal[seq & wal_mask] says where each one ends in the spool and whether it is done
     * (acknowledged, or failed for good). [wal_lo, wal_hi) are in librdkafka's hands;
     * wal_acked is the end of the last message before the first not done. Guarded by
     * spool_lock (writers produce directly when nothing waits in the spool), except `done`:
     * set by the delivery reports without the lock (only the delivery thread, or close once it
     * has stopped, serves them and sweeps), swept per batch of reports (wal_sweep). A slot is
     * filled before its message is produced, so its report always finds it. */
    bool wal_mode;
    uint64_t wal_backlog; /* records appended but not yet produced (under spool_lock) */
    struct wal_slot *wal;
    uint64_t wal_mask, wal_lo, wal_hi;
    struct kts_spool_pos wal_acked;
    uint64_t acked; /* atomic */
    /* close: purged messages collected by on_delivery, to be requeued in produce order */
    struct purged_msg *purged_list;
    size_t purged_n, purged_cap;
};

struct wal_slot {
    struct kts_spool_pos end;
    bool done; /* atomic: set by delivery reports without spool_lock */
};

struct purged_msg {
    uint64_t seq;
    void *key;
    size_t key_len;
    void *payload;
    size_t payload_len;
};

#define ATOMIC_INC(x) __atomic_add_fetch(&(x), 1, __ATOMIC_RELAXED)
#define ATOMIC_GET(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const struct kts_producer *p = rd_kafka_opaque(rk);
    kts_rdklog_log(p ? &p->log : NULL, level, fac, buf);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kts_producer *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        __atomic_store_n(&p->brokers_down, 1, __ATOMIC_RELAXED);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[512];
        rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        char fmasked[1024], lim[512];
        /* Blame librdkafka's idempotence bug only where the linked version has it. */
        const char *bug = kts_rdk_limit(KTS_RDK_IDEMPOTENCE, lim, sizeof(lim));
        kts_log(KTS_LOG_ERR,
                "%s: FATAL producer error %s: %s; nothing more can be "
                "sent until collectd is restarted%s%s%s",
                p->where, rd_kafka_err2name(ferr),
                kts_rdklog_mask(&p->log, fatal, fmasked, sizeof(fmasked)),
                bug ? " (probably the known enable.idempotence bug: " : "", bug ? bug : "",
                bug ? "; docs/LIBRDKAFKA.md)" : "");
        return;
    }
    /* Transport errors (broker down, all brokers down) are expected during outages:
     * messages stay queued; say so without flooding the log. The one line for each failure
     * (on_log drops librdkafka's FAIL line of the same event). */
    kts_rdklog_error(&p->log, err, reason);
}

/* Copies a purged message for close to put in front of the spool. Runs only while closing,
 * from close's own rd_kafka_poll (the delivery thread has stopped): no lock needed. A copy
 * that cannot be made is simply not requeued (counted as not delivered). */
static void keep_purged(struct kts_producer *p, const rd_kafka_message_t *m)
{
    if (KTS_ARRAY_GROW(p->purged_list, p->purged_cap, p->purged_n + 1) != 0)
        return;
    struct purged_msg *pm = &p->purged_list[p->purged_n];
    pm->seq = (uint64_t)(uintptr_t)m->_private;
    pm->key_len = m->key_len;
    pm->payload_len = m->len;
    pm->key = malloc(m->key_len ? m->key_len : 1);
    pm->payload = malloc(m->len ? m->len : 1);
    if (pm->key == NULL || pm->payload == NULL) {
        free(pm->key);
        free(pm->payload);
        return;
    }
    if (m->key_len)
        memcpy(pm->key, m->key, m->key_len);
    if (m->len)
        memcpy(pm->payload, m->payload, m->len);
    p->purged_n++;
}

/* (11) Marks one message done (acknowledged, or failed for good); the delivery thread's. */
static void wal_done(struct kts_producer *p, uint64_t seq)
{
    __atomic_store_n(&p->wal[seq & p->wal_mask].done, true, __ATOMIC_RELEASE);
}

/* (11) Fills the slot of message seq (spool_lock held) before it is produced, so that its
 * report always finds it. `done` is atomic: reports set it without the lock. */
static void wal_fill(struct kts_producer *p, uint64_t seq, struct kts_spool_pos end)
{
    p->wal[seq & p->wal_mask].end = end;
    __atomic_store_n(&p->wal[seq & p->wal_mask].done, false, __ATOMIC_RELAXED);
}

/* (11) Moves the acknowledged end over every done message in produce order and consumes the
 * spool up to it: once per batch of delivery reports. spool_lock held. */
static void wal_sweep(struct kts_producer *p)
{
    bool moved = false;
    while (p->wal_lo < p->wal_hi &&
           __atomic_load_n(&p->wal[p->wal_lo & p->wal_mask].done, __ATOMIC_ACQUIRE)) {
        p->wal_acked = p->wal[p->wal_lo & p->wal_mask].end;
        p->wal_lo++;
        moved = true;
    }
    if (moved)
        kts_spool_ack_to(p->spool, p->wal_acked);
}

/* (11) Every delivery is reported in write-ahead mode: an acknowledged message may leave the
 * spool; a failed one is lost (counted, logged) and leaves it too; a purged one (close) stays
 * in the spool for the next start. */
static void wal_report(struct kts_producer *p, const rd_kafka_message_t *m)
{
    uint64_t seq = (uint64_t)(uintptr_t)m->_private;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ATOMIC_INC(p->acked);
        wal_done(p, seq); /* swept by wal_service, once per batch of reports */
        return;
    }
    if (rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED)
        ATOMIC_INC(p->unsure);
    if (ATOMIC_GET(p->closing) &&
        (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)) {
        ATOMIC_INC(p->purged); /* not done: stays in the spool */
        return;
    }
    ATOMIC_INC(p->failed);
    wal_done(p, seq);
    kts_log_limited(&p->rl_fail, KTS_LOG_ERR, "%s: delivery failed, value list lost: %s (%s)",
                    p->where, rd_kafka_err2str(m->err), rd_kafka_err2name(m->err));
}

/*
 * Delivery reports come for failures only (delivery.report.only.error): a report per
 * successful message doubled write_kafka_ts's CPU cost per value list (docs/PERFORMANCE.md).
 * Successes are derived from the queue length instead, and latency comes from statistics.
 */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct kts_producer *p = opaque;
    if (p->wal_mode) {
        wal_report(p, m);
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return; /* not expected with delivery.report.only.error; derived counts cover it */
    if (rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED)
        ATOMIC_INC(p->unsure);
    if (ATOMIC_GET(p->closing) &&
        (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)) {
        ATOMIC_INC(p->purged); /* counted and logged once by close (5) */
        if (p->spool != NULL)
            keep_purged(p, m); /* requeued in front of the spool by close (10) */
        return;
    }
    ATOMIC_INC(p->failed);
    kts_log_limited(&p->rl_fail, KTS_LOG_ERR, "%s: delivery failed, value list lost: %s (%s)",
                    p->where, rd_kafka_err2str(m->err), rd_kafka_err2name(m->err));
}

/* Sums avg and max of one latency object (("min", "max", "avg", "cnt")) into *avg and *max;
 * returns its cnt. */
static int64_t stats_window(yajl_val broker, const char *name, double *avg, double *max)
{
    const char *pa[] = {name, "avg", NULL}, *pm[] = {name, "max", NULL},
               *pc[] = {name, "cnt", NULL};
    yajl_val a = yajl_tree_get(broker, pa, yajl_t_number);
    yajl_val m = yajl_tree_get(broker, pm, yajl_t_number);
    yajl_val c = yajl_tree_get(broker, pc, yajl_t_number);
    if (a == NULL || m == NULL || c == NULL)
        return 0;
    *avg += YAJL_GET_DOUBLE(a);
    *max += YAJL_GET_DOUBLE(m);
    return YAJL_IS_INTEGER(c) ? YAJL_GET_INTEGER(c) : 0;
}

/*
 * librdkafka's statistics, every statistics.interval.ms: per broker, the rolling windows of
 * outbuf_latency (request queued → sent) and rtt (sent → acknowledged); their sum is the
 * latency of a produce request, kept for the busiest broker. int_latency (produce() → request)
 * would complete the picture but is garbage in librdkafka 2.0.2 (min -9.2e18, avg 2.2e9 µs,
 * max 0, seen): time spent waiting in the local queue shows in queue_length instead.
 */
static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    struct kts_producer *p = opaque;
    char *text = strndup(json, json_len);
    yajl_val root = text ? yajl_tree_parse(text, NULL, 0) : NULL;
    free(text);
    const char *path[] = {"brokers", NULL};
    yajl_val brokers = root ? yajl_tree_get(root, path, yajl_t_object) : NULL;
    double best_avg = -1, best_max = 0;
    for (size_t i = 0; brokers != NULL && i < brokers->u.object.len; i++) {
        yajl_val b = brokers->u.object.values[i];
        double avg = 0, max = 0;
        int64_t n = stats_window(b, "outbuf_latency", &avg, &max);
        int64_t nrtt = stats_window(b, "rtt", &avg, &max);
        if (n > 0 && nrtt > 0 && avg > best_avg) {
            best_avg = avg;
            best_max = max;
        }
    }
    yajl_tree_free(root);
    if (best_avg >= 0) {
        __atomic_store_n(&p->lat_avg_us, (uint64_t)best_avg, __ATOMIC_RELAXED);
        __atomic_store_n(&p->lat_max_us, (uint64_t)best_max, __ATOMIC_RELAXED);
        ATOMIC_INC(p->lat_windows);
    }
    return 0; /* librdkafka frees json */
}

static double now_s(void);

/* Hands one message to librdkafka; its opaque is its place in produce order (10). */
static rd_kafka_resp_err_t produce(struct kts_producer *p, const void *key, size_t key_len,
                                   const void *payload, size_t len)
{
    uint64_t seq = __atomic_add_fetch(&p->msg_seq, 1, __ATOMIC_RELAXED);
    return rd_kafka_producev(
        p->rk, RD_KAFKA_V_RKT(p->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key_len ? key : NULL, key_len), RD_KAFKA_V_VALUE((void *)payload, len),
        RD_KAFKA_V_OPAQUE((void *)(uintptr_t)seq), RD_KAFKA_V_END);
}

/* Flushes the spool every 200 ms and syncs it every second (SpoolSync), t being now. */
static void spool_flush_due(struct kts_producer *p, double t)
{
    if (t - p->last_flush < 0.2)
        return;
    bool sync = t - p->last_sync >= 1.0;
    pthread_mutex_lock(&p->spool_lock);
    kts_spool_flush(p->spool, sync);
    pthread_mutex_unlock(&p->spool_lock);
    p->last_flush = t;
    if (sync)
        p->last_sync = t;
}

/* Counts the result of producing one spooled value list (err is not QUEUE_FULL): sent and
 * replayed, or dropped by reason with a rate-limited log line. Returns true if it was sent. */
static bool count_replayed(struct kts_producer *p, rd_kafka_resp_err_t err)
{
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ATOMIC_INC(p->sent);
        ATOMIC_INC(p->replayed);
        return true;
    }
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
        ATOMIC_INC(p->dropped_too_large);
    else
        ATOMIC_INC(p->dropped_error);
    kts_log_limited(&p->rl_drop, KTS_LOG_ERR, "%s: dropped a spooled value list: %s (%s)", p->where,
                    rd_kafka_err2str(err), rd_kafka_err2name(err));
    return false;
}

/*
 * (10) Moves spooled messages into librdkafka's queue while it has room (the memory bound
 * stays BufferMessages/BufferBytes); when the spool is empty, new value lists go straight to
 * librdkafka again. Holds spool_lock for at most 1000 messages at a time so that writers
 * appending to the spool are not held up for long. Also flushes the spool every 200 ms and
 * syncs it every second (SpoolSync).
 */
static void spool_service(struct kts_producer *p)
{
    double t = now_s();
    for (int batch = 0; batch < 100 && ATOMIC_GET(p->spooling); batch++) {
        bool more = true;
        pthread_mutex_lock(&p->spool_lock);
        for (int i = 0; i < 1000; i++) {
            const void *key, *payload;
            size_t key_len, len;
            int rc = kts_spool_peek(p->spool, &key, &key_len, &payload, &len);
            if (rc == -ENOENT) {
                /* Drained: from now on value lists go to librdkafka directly, after every
                 * spooled one (the switch happens under the lock writers append under). */
                __atomic_store_n(&p->spooling, 0, __ATOMIC_RELEASE);
                kts_log_limited(&p->rl_spool_off, KTS_LOG_NOTICE,
                                "%s: spool drained (%llu value lists "
                                "replayed so far); writing to Kafka directly again",
                                p->where, (unsigned long long)ATOMIC_GET(p->replayed));
                more = false;
                break;
            }
            if (rc < 0) { /* read error (logged): try again later */
                more = false;
                break;
            }
            rd_kafka_resp_err_t err = produce(p, key, key_len, payload, len);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                more = false;
                break;
            }
            count_replayed(p, err);
            kts_spool_advance(p->spool);
        }
        pthread_mutex_unlock(&p->spool_lock);
        if (!more)
            break;
    }
    spool_flush_due(p, t);
}

/* (11) Consumes the spool up to what the broker acknowledged, then moves records from the
 * spool into librdkafka's queue in order while it (and the in-flight table) has room.
 * Flushes the spool's cursor every 200 ms and syncs every second (SpoolSync). Returns true
 * when records are left to produce. */
static bool wal_service(struct kts_producer *p)
{
    double t = now_s();
    bool more = true;
    for (int batch = 0; batch < 100 && more; batch++) {
        pthread_mutex_lock(&p->spool_lock);
        wal_sweep(p);
        for (int i = 0; i < 1000; i++) {
            if (p->wal_hi - p->wal_lo > p->wal_mask)
                break; /* as many in flight as the table holds: wait for acknowledgements */
            const void *key, *payload;
            size_t key_len, len;
            struct kts_spool_pos end;
            if (p->wal_backlog == 0) {
                more = false; /* every record appended has been produced */
                break;
            }
            int rc = kts_spool_ahead_peek(p->spool, &key, &key_len, &payload, &len, &end);
            if (rc != 0) {
                if (rc == -ENOENT)
                    p->wal_backlog = 0;
                more = false; /* everything produced (-ENOENT) or a read error (logged) */
                break;
            }
            uint64_t seq = p->wal_hi;
            wal_fill(p, seq, end);
            rd_kafka_resp_err_t err = rd_kafka_producev(
                p->rk, RD_KAFKA_V_RKT(p->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key_len ? key : NULL, key_len),
                RD_KAFKA_V_VALUE((void *)payload, len), RD_KAFKA_V_OPAQUE((void *)(uintptr_t)seq),
                RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            p->wal_hi++;
            if (!count_replayed(p, err))
                wal_done(p, seq); /* lost (counted): it leaves the spool */
            kts_spool_ahead_advance(p->spool);
            p->wal_backlog--;
        }
        bool table_full = p->wal_hi - p->wal_lo > p->wal_mask;
        pthread_mutex_unlock(&p->spool_lock);
        if (table_full)
            break;
    }
    spool_flush_due(p, t);
    return more;
}

static void *poller_main(void *arg)
{
    struct kts_producer *p = arg;
    int last_outq = rd_kafka_outq_len(p->rk);
    while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
        bool backlog = false; /* (11) records wait in the spool to be produced */
        if (p->wal_mode)
            backlog = wal_service(p);
        else if (p->spool != NULL)
            spool_service(p);
        /* Serve delivery and error reports, logs and statistics (the poll returns as soon as
         * it has served some: acknowledgements are swept per batch of reports); look more
         * often while senders wait or the spool is being replayed. */
        rd_kafka_poll(p->rk, ATOMIC_GET(p->waiters) > 0 || ATOMIC_GET(p->overflowing) ||
                                     ATOMIC_GET(p->spooling) || backlog
                                 ? 5
                                 : 100);
        int outq = rd_kafka_outq_len(p->rk);
        if (outq < last_outq) {
            /* Space was freed: back-pressure may wait again, and waiting senders retry (3). */
            __atomic_store_n(&p->overflowing, 0, __ATOMIC_RELAXED);
            if (ATOMIC_GET(p->waiters) > 0) {
                pthread_mutex_lock(&p->space_lock);
                pthread_cond_broadcast(&p->space_cond);
                pthread_mutex_unlock(&p->space_lock);
            }
        }
        last_outq = outq;
    }
    return NULL;
}

/* ------------------------------------------------------------------ topic check (12) */

/* Milliseconds for the next metadata request of a check: 250, 500, 1000 … (a broker that is
 * still connecting does not hold up the view of "all brokers down"; a slow answer still gets
 * time), never past the deadline. */
static int check_slice_ms(int *slice, double deadline)
{
    double left_ms = (deadline - now_s()) * 1000.0;
    int ms = *slice < left_ms ? *slice : (int)left_ms;
    if (*slice < 4000)
        *slice *= 2;
    return ms < 1 ? 1 : ms;
}

/* Step 1, before librdkafka has a handle for the topic (so nothing has asked for it yet): is
 * it among all the cluster's topics? A request for all topics creates nothing. 1 yes, 0 no,
 * -1 not checked (no broker answered; logged). */
static int topic_exists(struct kts_producer *p, const char *topic, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    int slice = 250;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err =
            rd_kafka_metadata(p->rk, 1, NULL, &md, check_slice_ms(&slice, deadline));
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            int found = 0;
            for (int i = 0; i < md->topic_cnt; i++)
                if (strcmp(md->topics[i].topic, topic) == 0)
                    found = 1;
            rd_kafka_metadata_destroy(md);
            return found;
        }
        /* Serve the error events (logged as they come): they say when every broker is down. */
        rd_kafka_poll(p->rk, 10);
        bool down = ATOMIC_GET(p->brokers_down);
        if (down || now_s() >= deadline) {
            char why[128];
            if (down)
                snprintf(why, sizeof(why),
                         "no broker reachable at start-up (see the Kafka errors)");
            else
                snprintf(why, sizeof(why), "no broker answered within %g s", timeout_s);
            kts_log(KTS_LOG_NOTICE,
                    "%s: could not check whether topic \"%s\" exists: %s; "
                    "value lists wait in the queue until a broker answers",
                    p->where, topic, why);
            return -1;
        }
    }
}

/* Step 2, for a topic that did not exist, once librdkafka has a handle for it: librdkafka has
 * asked the broker for the topic, with automatic creation unless allow.auto.create.topics is
 * false. Kafka 4.1.1 (KRaft) answers that first request with UNKNOWN_TOPIC_OR_PART whether it
 * creates the topic or not; when it does, the topic is there a moment later (well under a
 * second on kafka-local), with the broker's num.partitions. So: wait for it to appear. */
static void topic_check_created(struct kts_producer *p, const char *topic, bool client_auto,
                                double timeout_s)
{
    static const char lost[] =
        "value lists for it are lost: those queued fail after topic.metadata.propagation.max.ms "
        "(30 s by default; counted as failed), later ones are dropped (dropped-error) until the "
        "topic exists; create it, or enable automatic creation";
    if (!client_auto) {
        kts_log(KTS_LOG_WARNING,
                "%s: topic \"%s\" does not exist and auto-creation is off "
                "(Property \"allow.auto.create.topics\" is \"false\"): %s",
                p->where, topic, lost);
        return;
    }
    double deadline = now_s() + timeout_s;
    int slice = 250;
    rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    while (now_s() < deadline) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err =
            rd_kafka_metadata(p->rk, 0, p->rkt, &md, check_slice_ms(&slice, deadline));
        int partitions = -1;
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            for (int i = 0; i < md->topic_cnt; i++)
                if (strcmp(md->topics[i].topic, topic) == 0) {
                    last = md->topics[i].err;
                    if (last == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[i].partition_cnt > 0)
                        partitions = md->topics[i].partition_cnt;
                }
            rd_kafka_metadata_destroy(md);
        }
        if (partitions > 0) {
            kts_log(KTS_LOG_WARNING,
                    "%s: topic \"%s\" did not exist: the broker created "
                    "it automatically (auto.create.topics.enable) with %d partitions and its "
                    "default replication factor; to choose them, create the topic before "
                    "starting collectd",
                    p->where, topic, partitions);
            return;
        }
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && last != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
            last != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE && last != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kts_log(KTS_LOG_WARNING,
                    "%s: topic \"%s\" does not exist and the broker "
                    "refuses it: %s (%s)",
                    p->where, topic, rd_kafka_err2str(last), rd_kafka_err2name(last));
            return;
        }
        rd_kafka_poll(p->rk, 100);
        if (ATOMIC_GET(p->brokers_down))
            break;
    }
    kts_log(KTS_LOG_WARNING,
            "%s: topic \"%s\" does not exist and the broker did not "
            "create it within %g s of being asked: auto-creation is off on the broker "
            "(auto.create.topics.enable=false) or failed: %s",
            p->where, topic, timeout_s, lost);
}

static void producer_free(struct kts_producer *p)
{
    kts_spool_close(p->spool);
    if (p->rkt != NULL)
        rd_kafka_topic_destroy(p->rkt);
    if (p->rk != NULL)
        rd_kafka_destroy(p->rk);
    kts_rdklog_fini(&p->log);
    pthread_key_delete(p->tls_buf);
    for (struct tls_node *n = p->bufs, *next; n != NULL; n = next) {
        next = n->next;
        kts_buf_fini(&n->buf);
        free(n);
    }
    pthread_mutex_destroy(&p->bufs_lock);
    pthread_mutex_destroy(&p->spool_lock);
    for (size_t i = 0; i < p->purged_n; i++) {
        free(p->purged_list[i].key);
        free(p->purged_list[i].payload);
    }
    free(p->purged_list);
    free(p->wal);
    pthread_cond_destroy(&p->space_cond);
    pthread_mutex_destroy(&p->space_lock);
    free(p->name);
    free(p);
}

/* The object with its settings and locks, no librdkafka handle yet; NULL when out of
 * resources (*rc says which). */
static struct kts_producer *producer_alloc(const struct kts_producer_config *cfg, int *rc)
{
    struct kts_producer *p = calloc(1, sizeof(*p));
    *rc = -ENOMEM;
    if (p == NULL)
        return NULL;
    if (pthread_key_create(&p->tls_buf, NULL) != 0) {
        free(p);
        *rc = -EAGAIN;
        return NULL;
    }
    /* From here on producer_free() releases everything. */
    pthread_mutex_init(&p->bufs_lock, NULL);
    pthread_mutex_init(&p->spool_lock, NULL);
    pthread_mutex_init(&p->space_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->space_cond, &ca);
    pthread_condattr_destroy(&ca);
    p->name = strdup(cfg->name != NULL ? cfg->name : cfg->topic);
    p->format = format_of_word[cfg->format];
    p->key = key_of_word[cfg->key];
    p->skip_marked = cfg->skip_marked;
    p->block_timeout = cfg->block_timeout;
    p->rl_drop.interval_s = p->rl_fail.interval_s = 10;
    p->rl_spool.interval_s = p->rl_spool_on.interval_s = p->rl_spool_off.interval_s = 10;
    char where[512];
    snprintf(where, sizeof(where), "kts_producer (%s)", p->name ? p->name : "?");
    if (p->name == NULL ||
        kts_rdklog_init(&p->log, cfg->log_prefix ? cfg->log_prefix : where, &cfg->properties) < 0) {
        producer_free(p);
        return NULL;
    }
    p->where = p->log.where;

    *rc = 0;
    return p;
}

/* The producer's librdkafka properties: our defaults, then the user's (4) (6). Sets
 * p->wal_mode. 0 or a negative errno with the reason in errbuf. */
static int producer_conf(struct kts_producer *p, const struct kts_producer_config *cfg,
                         rd_kafka_conf_t *conf, char *errbuf, size_t errbuf_size)
{
    int rc = 0;
    char num[32];
    /* Our defaults first; the user's Property lines come after and win. (4) (6) */
    rc = kts_rdkconf_set(conf, "message.timeout.ms", "0", errbuf, errbuf_size);
    if (!rc)
        rc = kts_rdkconf_set(conf, "partitioner", "murmur2_random", errbuf, errbuf_size);
    if (!rc)
        rc = kts_rdkconf_set(conf, "reconnect.backoff.max.ms", "1000", errbuf, errbuf_size);
    if (!rc)
        rc = kts_rdkconf_set(conf, "client.id", "collectd-write_kafka_ts", errbuf, errbuf_size);
    /* A request per 50 ms rather than per 5 ms (librdkafka's default) at a steady rate: each
     * request costs librdkafka (and the delivery thread in write-ahead mode) a wake-up and a
     * round of work whatever its size; a burst fills batches before either. */
    if (!rc)
        rc = kts_rdkconf_set(conf, "linger.ms", "50", errbuf, errbuf_size);
    /* (11) write-ahead needs every acknowledgement to consume the spool */
    p->wal_mode = cfg->spool_dir != NULL && strcmp(cfg->spool_dir, "none") != 0 &&
                  cfg->spool_mode == KTS_SPOOL_MODE_ALWAYS;
    if (!rc)
        rc = kts_rdkconf_set(conf, "delivery.report.only.error", p->wal_mode ? "false" : "true",
                             errbuf, errbuf_size);
    /* Per-series order across broker outages: without idempotence, a retried request can land
     * after a later one that succeeded when several are in flight (seen: 91 of 300,000 values
     * out of order after a broker restart). One request in flight per broker keeps retries in
     * order; each request still carries a whole batch. */
    if (!rc)
        rc = kts_rdkconf_set(conf, "max.in.flight.requests.per.connection", "1", errbuf,
                             errbuf_size);
    /* Idempotence (docs/LIBRDKAFKA.md): on by default where librdkafka's idempotent producer is
     * safe (>= 2.3.0), so per-series order also holds across a failover of the whole cluster
     * (a retried batch can otherwise land after the next one); off where it can end the
     * producer in a fatal error (#4438). The user's Property wins either way. */
    const char *u_idem = NULL, *u_acks = NULL;
    for (size_t i = 0; i + 1 < cfg->properties.n; i += 2) {
        const char *k = cfg->properties.v[i];
        if (strcmp(k, "enable.idempotence") == 0)
            u_idem = cfg->properties.v[i + 1];
        else if (strcmp(k, "acks") == 0 || strcmp(k, "request.required.acks") == 0)
            u_acks = cfg->properties.v[i + 1];
    }
    char lim[512];
    const char *idem_bug = kts_rdk_limit(KTS_RDK_IDEMPOTENCE, lim, sizeof(lim));
    if (!rc && u_idem == NULL && idem_bug == NULL) {
        if (u_acks != NULL && strcmp(u_acks, "all") != 0 && strcmp(u_acks, "-1") != 0)
            kts_log(KTS_LOG_NOTICE,
                    "%s: enable.idempotence is not turned on because "
                    "Property \"acks\" is \"%s\" (idempotence needs \"all\"): per-series order "
                    "is not guaranteed across a restart of the whole cluster",
                    p->where, u_acks);
        else
            rc = kts_rdkconf_set(conf, "enable.idempotence", "true", errbuf, errbuf_size);
    }
    if (!rc && u_idem != NULL && idem_bug != NULL &&
        (strcmp(u_idem, "true") == 0 || strcmp(u_idem, "1") == 0))
        kts_log(KTS_LOG_WARNING, "%s: enable.idempotence is on although %s", p->where, idem_bug);
    snprintf(num, sizeof(num), "%d",
             (int)((cfg->stats_interval > 0 ? cfg->stats_interval : 10.0) * 1000.0));
    if (!rc)
        rc = kts_rdkconf_set(conf, "statistics.interval.ms", num, errbuf, errbuf_size);
    snprintf(num, sizeof(num), "%lld", (long long)cfg->buffer_messages);
    if (!rc)
        rc = kts_rdkconf_set(conf, "queue.buffering.max.messages", num, errbuf, errbuf_size);
    snprintf(num, sizeof(num), "%lld", (long long)((cfg->buffer_kbytes + 1023) / 1024));
    if (!rc)
        rc = kts_rdkconf_set(conf, "queue.buffering.max.kbytes", num, errbuf, errbuf_size);
    for (size_t i = 0; !rc && i + 1 < cfg->properties.n; i += 2) {
        const char *k = cfg->properties.v[i], *v = cfg->properties.v[i + 1];
        if (strcmp(k, "delivery.report.only.error") == 0) {
            snprintf(errbuf, errbuf_size,
                     "property \"%s\" is managed by write_kafka_ts (successful deliveries are "
                     "counted without reports); remove it",
                     k);
            rc = -EINVAL;
            break;
        }
        rc = kts_rdkconf_set(conf, k, v, errbuf, errbuf_size);
        if (!rc && strcmp(k, "message.timeout.ms") == 0 && strcmp(v, "0") != 0)
            kts_log(KTS_LOG_NOTICE,
                    "%s: message.timeout.ms is %s: value lists not "
                    "delivered within it are counted as failed and lost",
                    p->where, v);
    }
    return rc;
}

/* (11) Whether librdkafka asks brokers to create a topic they do not have: for a producer
 * true unless a Property says otherwise (the configuration object says false until
 * rd_kafka_new() applies the producer's default), then read back in librdkafka's words. */
static bool client_auto_create(const struct kts_producer_config *cfg, rd_kafka_conf_t *conf)
{
    bool client_auto = true;
    for (size_t i = 0; i + 1 < cfg->properties.n; i += 2)
        if (strcmp(cfg->properties.v[i], "allow.auto.create.topics") == 0) {
            char aac[16] = "";
            size_t aac_size = sizeof(aac);
            client_auto = rd_kafka_conf_get(conf, "allow.auto.create.topics", aac, &aac_size) !=
                              RD_KAFKA_CONF_OK ||
                          strcmp(aac, "false") != 0;
        }
    return client_auto;
}

/* The spool (10, 11), when SpoolDirectory is not "none": opened, and what a previous run left
 * in it scheduled first. 0 or a negative errno with the reason in errbuf. */
static int spool_setup(struct kts_producer *p, const struct kts_producer_config *cfg, char *errbuf,
                       size_t errbuf_size)
{
    if (cfg->spool_dir == NULL || strcmp(cfg->spool_dir, "none") == 0)
        return 0;
    int rc;
    struct kts_spool_config sc = {.dir = cfg->spool_dir,
                                  .max_bytes = (uint64_t)cfg->spool_max_bytes,
                                  .segment_bytes = (uint64_t)cfg->spool_segment_bytes,
                                  .sync = cfg->spool_sync,
                                  .write_through = p->wal_mode};
    char serr[768];
    rc = kts_spool_open(&p->spool, &sc, serr, sizeof(serr));
    if (rc != 0) {
        snprintf(errbuf, errbuf_size, "SpoolDirectory: %s", serr);
        return rc;
    }
    struct kts_spool_stats st;
    kts_spool_stats(p->spool, &st);
    if (p->wal_mode) {
        /* (11) in flight at most BufferMessages (librdkafka's queue) + a margin */
        uint64_t cap = 1024;
        while (cap < (uint64_t)cfg->buffer_messages + 1024)
            cap <<= 1;
        p->wal = calloc(cap, sizeof(*p->wal));
        if (p->wal == NULL)
            return -ENOMEM;
        p->wal_mask = cap - 1;
        if (!kts_spool_empty(p->spool)) {
            p->wal_backlog = UINT64_MAX / 2; /* until the ahead reader finds the end */
            kts_log(KTS_LOG_NOTICE,
                    "%s: spool \"%s\" holds %llu bytes of value lists "
                    "the broker had not acknowledged when the previous run ended: sending them "
                    "first (those it received without its answer arriving come twice)",
                    p->where, cfg->spool_dir, (unsigned long long)st.bytes);
        }
    } else if (!kts_spool_empty(p->spool)) {
        /* (10) left from before: replayed before any new value list */
        p->spooling = 1;
        kts_log(KTS_LOG_NOTICE,
                "%s: spool \"%s\" holds %llu bytes from a previous "
                "run: replaying them before new value lists",
                p->where, cfg->spool_dir, (unsigned long long)st.bytes);
    }
    return 0;
}

int kts_producer_create(struct kts_producer **out, const struct kts_producer_config *cfg,
                        char *errbuf, size_t errbuf_size)
{
    *out = NULL;
    if (cfg->topic == NULL || *cfg->topic == '\0') {
        snprintf(errbuf, errbuf_size, "Topic is required");
        return -EINVAL;
    }
    int rc;
    struct kts_producer *p = producer_alloc(cfg, &rc);
    if (p == NULL)
        return rc;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rc = producer_conf(p, cfg, conf, errbuf, errbuf_size);
    if (rc) {
        rd_kafka_conf_destroy(conf);
        producer_free(p);
        return rc;
    }
    bool client_auto = client_auto_create(cfg, conf);
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_stats_cb(conf, on_stats);

    char errstr[512];
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (p->rk == NULL) {
        char masked[1024];
        snprintf(errbuf, errbuf_size, "cannot create the Kafka producer: %s",
                 kts_rdklog_mask(&p->log, errstr, masked, sizeof(masked)));
        rd_kafka_conf_destroy(conf);
        producer_free(p);
        return -EINVAL;
    }
    /* (11) Look the topic up before librdkafka has a handle for it: from then on it asks the
     * brokers for it itself (creating it if they auto-create), and it would always be there. */
    double check_s = cfg->topic_check_timeout == 0 ? 5.0 : cfg->topic_check_timeout;
    int exists = check_s > 0 ? topic_exists(p, cfg->topic, check_s) : -1;
    p->rkt = rd_kafka_topic_new(p->rk, cfg->topic, NULL);
    if (p->rkt == NULL) {
        snprintf(errbuf, errbuf_size, "topic \"%s\": %s", cfg->topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        producer_free(p);
        return -EINVAL;
    }
    if (exists == 0)
        topic_check_created(p, cfg->topic, client_auto, check_s);
    rc = spool_setup(p, cfg, errbuf, errbuf_size);
    if (rc != 0) {
        producer_free(p);
        return rc;
    }
    if (pthread_create(&p->poller, NULL, poller_main, p) != 0) {
        snprintf(errbuf, errbuf_size, "cannot start the delivery report thread");
        producer_free(p);
        return -EAGAIN;
    }
    p->poller_started = 1;
    kts_log(KTS_LOG_INFO, "%s: librdkafka %s, enable.idempotence %s", p->where,
            kts_rdk_version_str(), kts_producer_idempotent(p) ? "on" : "off");
    *out = p;
    return 0;
}

bool kts_producer_idempotent(struct kts_producer *p)
{
    char v[16];
    size_t n = sizeof(v);
    return p != NULL && p->rk != NULL &&
           rd_kafka_conf_get(rd_kafka_conf(p->rk), "enable.idempotence", v, &n) ==
               RD_KAFKA_CONF_OK &&
           strcmp(v, "true") == 0;
}

static bool has_marker(const struct kts_vl *vl)
{
    for (size_t i = 0; i < vl->meta_len; i++)
        if (strcmp(vl->meta[i].key, KTS_META_MARKER) == 0)
            return true;
    return false;
}

static struct kts_buf *thread_buf(struct kts_producer *p)
{
    struct tls_node *n = pthread_getspecific(p->tls_buf);
    if (n == NULL) {
        n = calloc(1, sizeof(*n));
        if (n == NULL || pthread_setspecific(p->tls_buf, n) != 0) {
            free(n);
            return NULL;
        }
        pthread_mutex_lock(&p->bufs_lock);
        n->next = p->bufs;
        p->bufs = n;
        pthread_mutex_unlock(&p->bufs_lock);
    }
    kts_buf_reset(&n->buf);
    return &n->buf;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits until the delivery thread reports freed space or until `until` (monotonic seconds),
 * whichever comes first; at most 100 ms per call so a missed wake-up costs little. */
static void wait_for_space(struct kts_producer *p, double until)
{
    double t = now_s();
    if (until > t + 0.1)
        until = t + 0.1;
    struct timespec ts = {(time_t)until, (long)((until - (double)(time_t)until) * 1e9)};
    __atomic_add_fetch(&p->waiters, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&p->space_lock);
    pthread_cond_timedwait(&p->space_cond, &p->space_lock, &ts);
    pthread_mutex_unlock(&p->space_lock);
    __atomic_sub_fetch(&p->waiters, 1, __ATOMIC_SEQ_CST);
}

/* Writes one message to the spool; spool_lock held. 0, or -ENOBUFS/-EIO when dropped (counted
 * and logged by reason). */
static int spool_append_locked(struct kts_producer *p, const void *key, size_t key_len,
                               const void *payload, size_t len)
{
    int rc = kts_spool_append(p->spool, key, key_len, payload, len);
    if (rc == 0) {
        ATOMIC_INC(p->spooled);
        return 0;
    }
    if (rc == -EFBIG) {
        ATOMIC_INC(p->dropped_spool_full);
        struct kts_spool_stats st;
        kts_spool_stats(p->spool, &st);
        kts_log_limited(&p->rl_spool, KTS_LOG_ERR,
                        "%s: dropped a value list: spool full (%llu "
                        "bytes, SpoolMaxBytes); %llu dropped for this reason so far",
                        p->where, (unsigned long long)st.bytes,
                        (unsigned long long)ATOMIC_GET(p->dropped_spool_full));
        return -ENOBUFS;
    }
    ATOMIC_INC(p->dropped_spool_error);
    kts_log_limited(&p->rl_spool, KTS_LOG_ERR,
                    "%s: dropped a value list: cannot write the spool: "
                    "%s; %llu dropped for this reason so far",
                    p->where, strerror(-rc),
                    (unsigned long long)ATOMIC_GET(p->dropped_spool_error));
    return -EIO;
}

int kts_producer_send(struct kts_producer *p, const struct kts_vl *vl)
{
    if (p->skip_marked && vl->meta_len > 0 && has_marker(vl)) {
        ATOMIC_INC(p->skipped);
        return 1;
    }
    struct kts_buf *b = thread_buf(p);
    int rc = b ? kts_format_encode(b, vl, p->format) : -ENOMEM;
    if (rc < 0) {
        ATOMIC_INC(p->dropped_encode);
        kts_log_limited(&p->rl_drop, KTS_LOG_ERR,
                        "%s: dropped a value list of %s/%s: cannot encode "
                        "it (%s)",
                        p->where, vl->host, vl->plugin, strerror(-rc));
        return -EINVAL;
    }
    char key[5 * KTS_NAME_MAX + 8];
    size_t key_len = 0;
    if (p->key != KTS_KEY_NONE) {
        key_len = kts_series_message_key(key, sizeof(key), vl, p->key);
        if (key_len >= sizeof(key))
            key_len = sizeof(key) - 1;
    }

    if (p->wal_mode) {
        /* (11) write-ahead: on disk before we return. When nothing waits in the spool, it is
         * produced here at once (the same order: under the lock appends take); otherwise the
         * delivery thread reads it back in its turn. */
        pthread_mutex_lock(&p->spool_lock);
        rc = spool_append_locked(p, key, key_len, b->data, b->len);
        if (rc == 0 && p->wal_backlog == 0 && p->wal_hi - p->wal_lo <= p->wal_mask) {
            uint64_t seq = p->wal_hi;
            struct kts_spool_pos end = kts_spool_tail(p->spool);
            wal_fill(p, seq, end);
            rd_kafka_resp_err_t err = rd_kafka_producev(
                p->rk, RD_KAFKA_V_RKT(p->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key_len ? key : NULL, key_len),
                RD_KAFKA_V_VALUE((void *)b->data, b->len),
                RD_KAFKA_V_OPAQUE((void *)(uintptr_t)seq), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                p->wal_hi++;
                ATOMIC_INC(p->sent);
                kts_spool_ahead_skip(p->spool, end);
            } else {
                p->wal_backlog++; /* queue full or refused: the delivery thread's turn */
            }
        } else if (rc == 0) {
            p->wal_backlog++;
        }
        pthread_mutex_unlock(&p->spool_lock);
        return rc;
    }
    if (p->spool != NULL && __atomic_load_n(&p->spooling, __ATOMIC_ACQUIRE)) {
        /* (10) the spool is not drained: behind what is in it */
        pthread_mutex_lock(&p->spool_lock);
        if (p->spooling) {
            rc = spool_append_locked(p, key, key_len, b->data, b->len);
            pthread_mutex_unlock(&p->spool_lock);
            return rc;
        }
        pthread_mutex_unlock(&p->spool_lock);
    }

    double deadline = -1;
    for (;;) {
        rd_kafka_resp_err_t err = produce(p, key, key_len, b->data, b->len);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            ATOMIC_INC(p->sent);
            return 0;
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            /* (3) back-pressure, unless we already gave up on this full queue */
            if (!ATOMIC_GET(p->overflowing)) {
                double t = now_s();
                if (deadline < 0) {
                    deadline = t + p->block_timeout;
                    ATOMIC_INC(p->blocked);
                }
                if (t < deadline) {
                    wait_for_space(p, deadline);
                    continue;
                }
                __atomic_store_n(&p->overflowing, 1, __ATOMIC_RELAXED);
            }
            if (p->spool != NULL) {
                /* (10) from here on, everything goes to the spool until it is drained */
                pthread_mutex_lock(&p->spool_lock);
                if (!p->spooling) {
                    __atomic_store_n(&p->spooling, 1, __ATOMIC_RELEASE);
                    kts_log_limited(&p->rl_spool_on, KTS_LOG_WARNING,
                                    "%s: local queue full for "
                                    "BlockTimeout %.3g s: spooling to disk until the broker "
                                    "catches up",
                                    p->where, p->block_timeout);
                }
                rc = spool_append_locked(p, key, key_len, b->data, b->len);
                pthread_mutex_unlock(&p->spool_lock);
                return rc;
            }
            ATOMIC_INC(p->dropped_queue_full);
            kts_log_limited(&p->rl_drop, KTS_LOG_ERR,
                            "%s: dropped a value list: local queue full "
                            "(BufferMessages/BufferBytes) for longer than BlockTimeout %.3g s; "
                            "is the broker reachable?",
                            p->where, p->block_timeout);
            return -ENOBUFS;
        }
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
            ATOMIC_INC(p->dropped_too_large);
            kts_log_limited(&p->rl_drop, KTS_LOG_ERR,
                            "%s: dropped a value list: message of %zu "
                            "bytes is larger than message.max.bytes",
                            p->where, b->len);
            return -EMSGSIZE;
        }
        ATOMIC_INC(p->dropped_error);
        kts_log_limited(&p->rl_drop, KTS_LOG_ERR, "%s: dropped a value list: %s (%s)", p->where,
                        rd_kafka_err2str(err), rd_kafka_err2name(err));
        return -EIO;
    }
}

/* delivered = sent - failed - purged - in librdkafka's queue, never decreasing. */
static uint64_t delivered_now(struct kts_producer *p)
{
    /* Read the queue first: a message sent after that read can only make the result lower. */
    uint64_t outq = (uint64_t)rd_kafka_outq_len(p->rk);
    uint64_t done = ATOMIC_GET(p->failed) + ATOMIC_GET(p->purged);
    uint64_t sent = ATOMIC_GET(p->sent);
    uint64_t d = sent > done + outq ? sent - done - outq : 0;
    uint64_t seen = ATOMIC_GET(p->delivered_seen);
    while (d > seen && !__atomic_compare_exchange_n(&p->delivered_seen, &seen, d, 1,
                                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    return d > seen ? d : seen;
}

void kts_producer_stats(struct kts_producer *p, struct kts_producer_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->delivered = delivered_now(p);
    out->sent = ATOMIC_GET(p->sent);
    out->failed = ATOMIC_GET(p->failed);
    out->dropped_queue_full = ATOMIC_GET(p->dropped_queue_full);
    out->dropped_too_large = ATOMIC_GET(p->dropped_too_large);
    out->dropped_encode = ATOMIC_GET(p->dropped_encode);
    out->dropped_error = ATOMIC_GET(p->dropped_error);
    out->skipped_marked = ATOMIC_GET(p->skipped);
    out->blocked = ATOMIC_GET(p->blocked);
    uint64_t done = out->delivered + out->failed + ATOMIC_GET(p->purged);
    out->queue_messages = out->sent > done ? out->sent - done : 0;
    out->latency_windows = ATOMIC_GET(p->lat_windows);
    out->latency_avg_s = (double)ATOMIC_GET(p->lat_avg_us) / 1e6;
    out->latency_max_s = (double)ATOMIC_GET(p->lat_max_us) / 1e6;
    out->spooled = ATOMIC_GET(p->spooled);
    out->replayed = ATOMIC_GET(p->replayed);
    out->dropped_spool_full = ATOMIC_GET(p->dropped_spool_full);
    out->dropped_spool_error = ATOMIC_GET(p->dropped_spool_error);
    out->acked = ATOMIC_GET(p->acked);
    if (p->spool != NULL) {
        struct kts_spool_stats st;
        pthread_mutex_lock(&p->spool_lock);
        kts_spool_stats(p->spool, &st);
        pthread_mutex_unlock(&p->spool_lock);
        out->spool_bytes = st.bytes;
        out->spool_torn = st.torn_records;
        out->dropped_spool_error += st.unwritten; /* lost inside the spool (logged there) */
    }
}

static int cmp_purged(const void *a, const void *b)
{
    const struct purged_msg *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* (10) Puts the purged messages in front of the spool in produce order; returns how many. */
static uint64_t requeue_purged(struct kts_producer *p)
{
    if (p->purged_n == 0)
        return 0;
    qsort(p->purged_list, p->purged_n, sizeof(*p->purged_list), cmp_purged);
    struct kts_spool_rec *recs = malloc(p->purged_n * sizeof(*recs));
    if (recs == NULL)
        return 0;
    for (size_t i = 0; i < p->purged_n; i++)
        recs[i] = (struct kts_spool_rec){p->purged_list[i].key, p->purged_list[i].key_len,
                                         p->purged_list[i].payload, p->purged_list[i].payload_len};
    long n = kts_spool_prepend(p->spool, recs, p->purged_n);
    free(recs);
    if (n < 0)
        n = 0;
    if ((size_t)n < p->purged_n)
        kts_log(KTS_LOG_ERR,
                "%s: shutdown: only %ld of %zu undelivered value lists "
                "fit in the spool (SpoolMaxBytes); the other %zu are lost",
                p->where, n, p->purged_n, p->purged_n - (size_t)n);
    __atomic_add_fetch(&p->spooled, (uint64_t)n, __ATOMIC_RELAXED);
    return (uint64_t)n;
}

uint64_t kts_producer_close(struct kts_producer *p, double timeout_s)
{
    if (p == NULL)
        return 0;
    if (p->poller_started) {
        __atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
        pthread_join(p->poller, NULL);
    }
    double deadline = now_s() + timeout_s;
    if (p->wal_mode) {
        /* (11) With the broker back, send what the spool holds within FlushTimeout; what is
         * not acknowledged by then stays in the spool for the next start. */
        while (now_s() < deadline) {
            bool more = wal_service(p);
            if (!more && rd_kafka_outq_len(p->rk) == 0)
                break;
            rd_kafka_poll(p->rk, 10);
        }
    } else if (p->spool != NULL) {
        /* (10) With the broker back, drain the spool within FlushTimeout too, so that nothing
         * is left behind needlessly; what is left then stays for the next start. */
        while (now_s() < deadline) {
            if (ATOMIC_GET(p->spooling))
                spool_service(p);
            if (!ATOMIC_GET(p->spooling) && rd_kafka_outq_len(p->rk) == 0)
                break;
            rd_kafka_poll(p->rk, 10);
        }
    }
    double left = deadline - now_s();
    int timeout_ms = left > 0 ? (int)(left * 1000.0 + 0.5) : 0;
    rd_kafka_resp_err_t ferr = rd_kafka_flush(p->rk, timeout_ms);

    if (ferr != RD_KAFKA_RESP_ERR_NO_ERROR || rd_kafka_outq_len(p->rk) > 0) {
        /* (5) What is still queued will not be delivered: purge it so every message gets its
         * (error) report, and count them (with a spool: keep them, 10). */
        __atomic_store_n(&p->closing, 1, __ATOMIC_RELAXED);
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        for (int i = 0; i < 50 && rd_kafka_outq_len(p->rk) > 0; i++)
            rd_kafka_poll(p->rk, 100);
    }
    /* The queue is empty now: every message sent was delivered, failed or purged. */
    uint64_t sent = ATOMIC_GET(p->sent);
    uint64_t failed = ATOMIC_GET(p->failed), purged = ATOMIC_GET(p->purged);
    uint64_t requeued = 0, spool_bytes = 0, spool_left = 0;
    if (p->wal_mode) {
        requeued = purged; /* (11) never acknowledged: still in the spool */
        wal_sweep(p);
    }
    uint64_t unwritten = 0;
    if (p->spool != NULL) {
        if (!p->wal_mode)
            requeued = requeue_purged(p);
        struct kts_spool_stats st;
        kts_spool_stats(p->spool, &st);
        spool_bytes = st.bytes;
        spool_left = !kts_spool_empty(p->spool);
        if (kts_spool_close_stats(p->spool, &st) != 0)
            kts_log(KTS_LOG_ERR,
                    "%s: shutdown: the spool could not be "
                    "closed cleanly (see above)",
                    p->where);
        unwritten = st.unwritten; /* lost at the final write (disk full): logged by the spool */
        p->spool = NULL;
    }
    uint64_t undelivered = failed + purged - requeued;
    if (rd_kafka_outq_len(p->rk) > 0) {
        /* Purge reports not served in 5 s: count what is left as not delivered too. */
        undelivered += (uint64_t)rd_kafka_outq_len(p->rk);
    }
    if (undelivered > sent)
        undelivered = sent;
    uint64_t delivered = sent - undelivered - requeued;
    uint64_t dropped = ATOMIC_GET(p->dropped_queue_full) + ATOMIC_GET(p->dropped_too_large) +
                       ATOMIC_GET(p->dropped_encode) + ATOMIC_GET(p->dropped_error) +
                       ATOMIC_GET(p->dropped_spool_full) + ATOMIC_GET(p->dropped_spool_error) +
                       unwritten;
    if (spool_left)
        kts_log(KTS_LOG_NOTICE,
                "%s: shutdown: the spool keeps %llu bytes of value lists "
                "for the next start (%llu of them put back from librdkafka's queue; spooled "
                "%llu, replayed %llu in this run)",
                p->where, (unsigned long long)spool_bytes, (unsigned long long)requeued,
                (unsigned long long)ATOMIC_GET(p->spooled),
                (unsigned long long)ATOMIC_GET(p->replayed));
    uint64_t unsure = ATOMIC_GET(p->unsure);
    if (undelivered > 0)
        kts_log(KTS_LOG_ERR,
                "%s: shutdown: %llu value lists were NOT delivered "
                "(%llu still queued after FlushTimeout %.3g s, %llu failed; %llu of them "
                "possibly written by the broker, whose answer never came); %llu delivered of "
                "%llu sent; %llu dropped before sending",
                p->where, (unsigned long long)undelivered,
                (unsigned long long)(undelivered > failed ? undelivered - failed : 0), timeout_s,
                (unsigned long long)failed, (unsigned long long)unsure,
                (unsigned long long)delivered, (unsigned long long)sent,
                (unsigned long long)dropped);
    else if (unsure > 0)
        kts_log(KTS_LOG_NOTICE,
                "%s: shutdown: %llu value lists put back in the spool "
                "were possibly written by the broker already (its answer never came): Kafka "
                "may get them twice",
                p->where, (unsigned long long)unsure);
    else if (requeued > 0)
        kts_log(KTS_LOG_INFO,
                "%s: shutdown: %llu value lists sent were delivered, "
                "%llu put back in the spool; %llu dropped before sending",
                p->where, (unsigned long long)delivered, (unsigned long long)requeued,
                (unsigned long long)dropped);
    else
        kts_log(KTS_LOG_INFO,
                "%s: shutdown: all %llu value lists sent were delivered; "
                "%llu dropped before sending",
                p->where, (unsigned long long)sent, (unsigned long long)dropped);
    producer_free(p);
    return undelivered;
}
