/* SPDX-License-Identifier: MIT */
/* kts_producer: see kts_producer.h for the guarantees (numbers below refer to them). This file:
 * the life cycle (create, counters, close); the other parts are listed in kts_producer_impl.h. */
#include "kts_producer_impl.h"

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
#include <time.h>

/* ------------------------------------------------------------------ topic check (12) */

/* Milliseconds for the next metadata request of a check: 250, 500, 1000 … (a broker that is
 * still connecting does not hold up the view of "all brokers down"; a slow answer still gets
 * time), never past the deadline. */
static int check_slice_ms(int *slice, double deadline)
{
    double left_ms = (deadline - kts_prod_now_s()) * 1000.0;
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
    double deadline = kts_prod_now_s() + timeout_s;
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
        if (down || kts_prod_now_s() >= deadline) {
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
    double deadline = kts_prod_now_s() + timeout_s;
    int slice = 250;
    rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    while (kts_prod_now_s() < deadline) {
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
    p->format = kts_prod_format_of_word[cfg->format];
    p->key = kts_prod_key_of_word[cfg->key];
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
    rd_kafka_conf_set_dr_msg_cb(conf, kts_prod_on_delivery);
    rd_kafka_conf_set_error_cb(conf, kts_prod_on_error);
    rd_kafka_conf_set_log_cb(conf, kts_prod_on_log);
    rd_kafka_conf_set_stats_cb(conf, kts_prod_on_stats);

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
    rc = kts_prod_spool_setup(p, cfg, errbuf, errbuf_size);
    if (rc != 0) {
        producer_free(p);
        return rc;
    }
    if (pthread_create(&p->poller, NULL, kts_prod_poller_main, p) != 0) {
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

/* Close's first step with a spool: send what it holds until the deadline (10, 11). */
static void close_drain_spool(struct kts_producer *p, double deadline)
{
    if (p->wal_mode) {
        /* (11) With the broker back, send what the spool holds within FlushTimeout; what is
         * not acknowledged by then stays in the spool for the next start. */
        while (kts_prod_now_s() < deadline) {
            bool more = kts_prod_wal_service(p);
            if (!more && rd_kafka_outq_len(p->rk) == 0)
                break;
            rd_kafka_poll(p->rk, 10);
        }
    } else if (p->spool != NULL) {
        /* (10) With the broker back, drain the spool within FlushTimeout too, so that nothing
         * is left behind needlessly; what is left then stays for the next start. */
        while (kts_prod_now_s() < deadline) {
            if (ATOMIC_GET(p->spooling))
                kts_prod_spool_service(p);
            if (!ATOMIC_GET(p->spooling) && rd_kafka_outq_len(p->rk) == 0)
                break;
            rd_kafka_poll(p->rk, 10);
        }
    }
}

/* (5) Flushes librdkafka's queue until the deadline, then purges what is still in it, so that
 * every message has had its report when this returns (or 5 s of polling have passed). Returns
 * how many are left without a report after those 5 s (0 when every report was served).
 * rd_kafka_outq_len() also counts events waiting for rd_kafka_poll() (statistics, error
 * reports: one every reconnect attempt while the broker is down), so it is read here, where
 * the wait ends, and not again later: an event queued meanwhile is not a lost value list. */
static uint64_t close_flush(struct kts_producer *p, double deadline)
{
    double left = deadline - kts_prod_now_s();
    int timeout_ms = left > 0 ? (int)(left * 1000.0 + 0.5) : 0;
    rd_kafka_resp_err_t ferr = rd_kafka_flush(p->rk, timeout_ms);

    if (ferr != RD_KAFKA_RESP_ERR_NO_ERROR || rd_kafka_outq_len(p->rk) > 0) {
        /* (5) What is still queued will not be delivered: purge it so every message gets its
         * (error) report, and count them (with a spool: keep them, 10). */
        __atomic_store_n(&p->closing, 1, __ATOMIC_RELAXED);
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        for (int i = 0; i < 50 && rd_kafka_outq_len(p->rk) > 0; i++)
            rd_kafka_poll(p->rk, 100);
        return (uint64_t)rd_kafka_outq_len(p->rk);
    }
    return 0;
}

/* What close found, for its last log line. */
struct close_tally {
    uint64_t sent, failed, undelivered, delivered, requeued, dropped;
    uint64_t spool_bytes; /* what the spool keeps for the next start */
    bool spool_left;      /* the spool is not empty */
};

/* The spool at close: the purged messages put back in front of it (10) or left in it (11),
 * its size, then closed. Sets t->requeued, t->spool_bytes and t->spool_left; returns how many
 * records its final write lost (disk full: logged by the spool). */
static uint64_t close_spool(struct kts_producer *p, uint64_t purged, struct close_tally *t)
{
    if (p->wal_mode) {
        t->requeued = purged; /* (11) never acknowledged: still in the spool */
        kts_prod_wal_sweep(p);
    }
    uint64_t unwritten = 0;
    if (p->spool != NULL) {
        if (!p->wal_mode)
            t->requeued = kts_prod_requeue_purged(p);
        struct kts_spool_stats st;
        kts_spool_stats(p->spool, &st);
        t->spool_bytes = st.bytes;
        t->spool_left = !kts_spool_empty(p->spool);
        if (kts_spool_close_stats(p->spool, &st) != 0)
            kts_log(KTS_LOG_ERR,
                    "%s: shutdown: the spool could not be "
                    "closed cleanly (see above)",
                    p->where);
        unwritten = st.unwritten; /* lost at the final write (disk full): logged by the spool */
        p->spool = NULL;
    }
    return unwritten;
}

/* (5) The lines that say what became of every value list sent: what the spool keeps, then
 * how many were not delivered, or else that all were. */
static void close_report(struct kts_producer *p, double timeout_s, const struct close_tally *t)
{
    if (t->spool_left)
        kts_log(KTS_LOG_NOTICE,
                "%s: shutdown: the spool keeps %llu bytes of value lists "
                "for the next start (%llu of them put back from librdkafka's queue; spooled "
                "%llu, replayed %llu in this run)",
                p->where, (unsigned long long)t->spool_bytes, (unsigned long long)t->requeued,
                (unsigned long long)ATOMIC_GET(p->spooled),
                (unsigned long long)ATOMIC_GET(p->replayed));
    uint64_t unsure = ATOMIC_GET(p->unsure);
    if (t->undelivered > 0)
        kts_log(KTS_LOG_ERR,
                "%s: shutdown: %llu value lists were NOT delivered "
                "(%llu still queued after FlushTimeout %.3g s, %llu failed; %llu of them "
                "possibly written by the broker, whose answer never came); %llu delivered of "
                "%llu sent; %llu dropped before sending",
                p->where, (unsigned long long)t->undelivered,
                (unsigned long long)(t->undelivered > t->failed ? t->undelivered - t->failed : 0),
                timeout_s, (unsigned long long)t->failed, (unsigned long long)unsure,
                (unsigned long long)t->delivered, (unsigned long long)t->sent,
                (unsigned long long)t->dropped);
    else if (unsure > 0)
        kts_log(KTS_LOG_NOTICE,
                "%s: shutdown: %llu value lists put back in the spool "
                "were possibly written by the broker already (its answer never came): Kafka "
                "may get them twice",
                p->where, (unsigned long long)unsure);
    else if (t->requeued > 0)
        kts_log(KTS_LOG_INFO,
                "%s: shutdown: %llu value lists sent were delivered, "
                "%llu put back in the spool; %llu dropped before sending",
                p->where, (unsigned long long)t->delivered, (unsigned long long)t->requeued,
                (unsigned long long)t->dropped);
    else
        kts_log(KTS_LOG_INFO,
                "%s: shutdown: all %llu value lists sent were delivered; "
                "%llu dropped before sending",
                p->where, (unsigned long long)t->sent, (unsigned long long)t->dropped);
}

uint64_t kts_producer_close(struct kts_producer *p, double timeout_s)
{
    if (p == NULL)
        return 0;
    if (p->poller_started) {
        __atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
        pthread_join(p->poller, NULL);
    }
    double deadline = kts_prod_now_s() + timeout_s;
    close_drain_spool(p, deadline);
    uint64_t unserved = close_flush(p, deadline);

    /* The queue is empty now: every message sent was delivered, failed or purged. */
    struct close_tally t = {.sent = ATOMIC_GET(p->sent), .failed = ATOMIC_GET(p->failed)};
    uint64_t purged = ATOMIC_GET(p->purged);
    uint64_t unwritten = close_spool(p, purged, &t);
    /* Purge reports not served in 5 s: count what was left as not delivered too. */
    uint64_t undelivered = t.failed + purged - t.requeued + unserved;
    if (undelivered > t.sent)
        undelivered = t.sent;
    t.undelivered = undelivered;
    t.delivered = t.sent - undelivered - t.requeued;
    t.dropped = ATOMIC_GET(p->dropped_queue_full) + ATOMIC_GET(p->dropped_too_large) +
                ATOMIC_GET(p->dropped_encode) + ATOMIC_GET(p->dropped_error) +
                ATOMIC_GET(p->dropped_spool_full) + ATOMIC_GET(p->dropped_spool_error) + unwritten;
    close_report(p, timeout_s, &t);
    producer_free(p);
    return undelivered;
}
