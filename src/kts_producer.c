/* SPDX-License-Identifier: MIT */
/* kts_producer: see kts_producer.h for the guarantees (numbers below refer to them). */
#include "kts_producer.h"
#include "kts_producer_impl.h"

#include "kts_secret.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <yajl/yajl_tree.h>

/* What the words of Format and Key (kts_producer_options.c) mean, in the same order. */
static const enum kts_format format_of_word[] = {KTS_FORMAT_TS, KTS_FORMAT_COLLECTD};
static const enum kts_key_mode key_of_word[] = {KTS_KEY_SERIES, KTS_KEY_HOST, KTS_KEY_NONE};

/* ------------------------------------------------------------------ producer */

/* Copies `in` to `out`, replacing every configured secret value by "[redacted]". */
static const char *mask_secrets(const struct kts_producer *p, const char *in, char *out,
                                size_t size)
{
    snprintf(out, size, "%s", in);
    for (size_t i = 0; i < p->secrets.n; i++) {
        const char *s = p->secrets.v[i];
        size_t sl = strlen(s);
        if (sl == 0)
            continue;
        char *hit;
        while ((hit = strstr(out, s)) != NULL) {
            static const char red[] = "[redacted]";
            size_t tail = strlen(hit + sl);
            if ((size_t)(hit - out) + sizeof(red) - 1 + tail >= size) {
                *hit = '\0'; /* no room: cut the line rather than leak */
                break;
            }
            memmove(hit + sizeof(red) - 1, hit + sl, tail + 1);
            memcpy(hit, red, sizeof(red) - 1);
        }
    }
    return out;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const struct kts_producer *p = rd_kafka_opaque(rk);
    char masked[1024];
    if (kts_rdk_log_is_error_event(level, fac))
        return; /* on_error logs the same failure, with the error's name */
    if (level > KTS_LOG_DEBUG)
        level = KTS_LOG_DEBUG;
    kts_log(level, "write_kafka_ts plugin (%s): librdkafka %s: %s", p ? p->name : "?", fac,
            p ? mask_secrets(p, buf, masked, sizeof(masked)) : "(message withheld)");
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kts_producer *p = opaque;
    char masked[1024];
    mask_secrets(p, reason, masked, sizeof(masked));
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        __atomic_store_n(&p->brokers_down, 1, __ATOMIC_RELAXED);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[512];
        rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        char fmasked[1024];
        kts_log(KTS_LOG_ERR,
                "write_kafka_ts plugin (%s): FATAL producer error %s: %s; nothing more can be "
                "sent until collectd is restarted (with librdkafka 2.0.2 this is the known "
                "enable.idempotence bug: see docs)",
                p->name, rd_kafka_err2name(ferr), mask_secrets(p, fatal, fmasked, sizeof(fmasked)));
        return;
    }
    /* Transport errors (broker down, all brokers down) are expected during outages:
     * messages stay queued; say so without flooding the log. The one line for each failure
     * (on_log drops librdkafka's FAIL line of the same event). */
    kts_log_limited(kts_rdk_limiter(p->rl_error, err, reason), KTS_LOG_WARNING,
                    "write_kafka_ts plugin (%s): Kafka: %s (%s)", p->name, masked,
                    rd_kafka_err2name(err));
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
        kts_prod_wal_report(p, m);
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
            kts_prod_keep_purged(p, m); /* requeued in front of the spool by close (10) */
        return;
    }
    ATOMIC_INC(p->failed);
    kts_log_limited(&p->rl_fail, KTS_LOG_ERR,
                    "write_kafka_ts plugin (%s): delivery failed, value list lost: %s (%s)",
                    p->name, rd_kafka_err2str(m->err), rd_kafka_err2name(m->err));
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

/* Hands one message to librdkafka; its opaque is its place in produce order (10). */
rd_kafka_resp_err_t kts_prod_produce(struct kts_producer *p, const void *key, size_t key_len,
                                     const void *payload, size_t len)
{
    uint64_t seq = __atomic_add_fetch(&p->msg_seq, 1, __ATOMIC_RELAXED);
    return rd_kafka_producev(
        p->rk, RD_KAFKA_V_RKT(p->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key_len ? key : NULL, key_len), RD_KAFKA_V_VALUE((void *)payload, len),
        RD_KAFKA_V_OPAQUE((void *)(uintptr_t)seq), RD_KAFKA_V_END);
}

static void *poller_main(void *arg)
{
    struct kts_producer *p = arg;
    int last_outq = rd_kafka_outq_len(p->rk);
    while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
        bool backlog = false; /* (11) records wait in the spool to be produced */
        if (p->wal_mode)
            backlog = kts_prod_wal_service(p);
        else if (p->spool != NULL)
            kts_prod_spool_service(p);
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

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errbuf,
                    size_t errbuf_size)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(errbuf, errbuf_size, "property \"%s\": %s", key,
             kts_property_is_secret(key) ? "invalid value (not shown: secret)" : errstr);
    return -EINVAL;
}

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
                    "write_kafka_ts plugin (%s): could not check whether topic \"%s\" exists: %s; "
                    "value lists wait in the queue until a broker answers",
                    p->name, topic, why);
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
                "write_kafka_ts plugin (%s): topic \"%s\" does not exist and auto-creation is off "
                "(Property \"allow.auto.create.topics\" is \"false\"): %s",
                p->name, topic, lost);
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
                    "write_kafka_ts plugin (%s): topic \"%s\" did not exist: the broker created "
                    "it automatically (auto.create.topics.enable) with %d partitions and its "
                    "default replication factor; to choose them, create the topic before "
                    "starting collectd",
                    p->name, topic, partitions);
            return;
        }
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && last != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
            last != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE && last != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kts_log(KTS_LOG_WARNING,
                    "write_kafka_ts plugin (%s): topic \"%s\" does not exist and the broker "
                    "refuses it: %s (%s)",
                    p->name, topic, rd_kafka_err2str(last), rd_kafka_err2name(last));
            return;
        }
        rd_kafka_poll(p->rk, 100);
        if (ATOMIC_GET(p->brokers_down))
            break;
    }
    kts_log(KTS_LOG_WARNING,
            "write_kafka_ts plugin (%s): topic \"%s\" does not exist and the broker did not "
            "create it within %g s of being asked: auto-creation is off on the broker "
            "(auto.create.topics.enable=false) or failed: %s",
            p->name, topic, timeout_s, lost);
}

static void producer_free(struct kts_producer *p)
{
    kts_spool_close(p->spool);
    if (p->rkt != NULL)
        rd_kafka_topic_destroy(p->rkt);
    if (p->rk != NULL)
        rd_kafka_destroy(p->rk);
    for (size_t i = 0; i < p->secrets.n; i++)
        memset(p->secrets.v[i], 0, strlen(p->secrets.v[i]));
    kts_strv_free(&p->secrets);
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

/* A producer with its locks and cfg's plain settings, nothing started; NULL with *rc when out
 * of resources. producer_free() releases it. */
static struct kts_producer *producer_alloc(const struct kts_producer_config *cfg, int *rc)
{
    struct kts_producer *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        *rc = -ENOMEM;
        return NULL;
    }
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
    for (int i = 0; i < KTS_RDK_LIMITERS; i++)
        p->rl_error[i].interval_s = 10;
    p->rl_spool.interval_s = p->rl_spool_on.interval_s = p->rl_spool_off.interval_s = 10;
    return p;
}

/* Fills librdkafka's configuration: our defaults first, then the user's Property lines. 0 or
 * -EINVAL with the reason in errbuf. Sets p->wal_mode (11) and the secrets to mask (7). */
static int rdkafka_conf_fill(struct kts_producer *p, const struct kts_producer_config *cfg,
                             rd_kafka_conf_t *conf, char *errbuf, size_t errbuf_size)
{
    int rc = 0;
    char num[32];
    /* Our defaults first; the user's Property lines come after and win. (4) (6) */
    rc = conf_set(conf, "message.timeout.ms", "0", errbuf, errbuf_size);
    if (!rc)
        rc = conf_set(conf, "partitioner", "murmur2_random", errbuf, errbuf_size);
    if (!rc)
        rc = conf_set(conf, "reconnect.backoff.max.ms", "1000", errbuf, errbuf_size);
    if (!rc)
        rc = conf_set(conf, "client.id", "collectd-write_kafka_ts", errbuf, errbuf_size);
    /* (11) write-ahead needs every acknowledgement to consume the spool */
    p->wal_mode = cfg->spool_dir != NULL && strcmp(cfg->spool_dir, "none") != 0 &&
                  cfg->spool_mode == KTS_SPOOL_MODE_ALWAYS;
    if (!rc)
        rc = conf_set(conf, "delivery.report.only.error", p->wal_mode ? "false" : "true", errbuf,
                      errbuf_size);
    /* Per-series order across broker outages: without idempotence (unsafe in 2.0.2), a retried
     * request can land after a later one that succeeded when several are in flight (seen: 91
     * of 300,000 values out of order after a broker restart). One request in flight per
     * broker keeps retries in order; each request still carries a whole batch. */
    if (!rc)
        rc = conf_set(conf, "max.in.flight.requests.per.connection", "1", errbuf, errbuf_size);
    snprintf(num, sizeof(num), "%d",
             (int)((cfg->stats_interval > 0 ? cfg->stats_interval : 10.0) * 1000.0));
    if (!rc)
        rc = conf_set(conf, "statistics.interval.ms", num, errbuf, errbuf_size);
    snprintf(num, sizeof(num), "%lld", (long long)cfg->buffer_messages);
    if (!rc)
        rc = conf_set(conf, "queue.buffering.max.messages", num, errbuf, errbuf_size);
    snprintf(num, sizeof(num), "%lld", (long long)((cfg->buffer_kbytes + 1023) / 1024));
    if (!rc)
        rc = conf_set(conf, "queue.buffering.max.kbytes", num, errbuf, errbuf_size);
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
        if (kts_property_is_secret(k))
            rc = kts_strv_push(&p->secrets, v);
        if (!rc)
            rc = conf_set(conf, k, v, errbuf, errbuf_size);
        if (!rc && strcmp(k, "message.timeout.ms") == 0 && strcmp(v, "0") != 0)
            kts_log(KTS_LOG_NOTICE,
                    "write_kafka_ts plugin (%s): message.timeout.ms is %s: value lists not "
                    "delivered within it are counted as failed and lost",
                    p->name, v);
    }
    return rc;
}

/* (12) Whether librdkafka asks brokers to create a topic they do not have: for a producer true
 * unless a Property says otherwise (the configuration object says false until rd_kafka_new()
 * applies the producer's default), then read back in librdkafka's words. */
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
    int rc = 0;
    struct kts_producer *p = producer_alloc(cfg, &rc);
    if (p == NULL)
        return rc;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rc = rdkafka_conf_fill(p, cfg, conf, errbuf, errbuf_size);
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
                 mask_secrets(p, errstr, masked, sizeof(masked)));
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
    if (cfg->spool_dir != NULL && strcmp(cfg->spool_dir, "none") != 0 &&
        (rc = kts_prod_spool_open(p, cfg, errbuf, errbuf_size)) != 0) {
        producer_free(p);
        return rc;
    }
    if (pthread_create(&p->poller, NULL, poller_main, p) != 0) {
        snprintf(errbuf, errbuf_size, "cannot start the delivery report thread");
        producer_free(p);
        return -EAGAIN;
    }
    p->poller_started = 1;
    *out = p;
    return 0;
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

double kts_prod_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits until the delivery thread reports freed space or until `until` (monotonic seconds),
 * whichever comes first; at most 100 ms per call so a missed wake-up costs little. */
static void wait_for_space(struct kts_producer *p, double until)
{
    double t = kts_prod_now_s();
    if (until > t + 0.1)
        until = t + 0.1;
    struct timespec ts = {(time_t)until, (long)((until - (double)(time_t)until) * 1e9)};
    __atomic_add_fetch(&p->waiters, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&p->space_lock);
    pthread_cond_timedwait(&p->space_cond, &p->space_lock, &ts);
    pthread_mutex_unlock(&p->space_lock);
    __atomic_sub_fetch(&p->waiters, 1, __ATOMIC_SEQ_CST);
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
                        "write_kafka_ts plugin (%s): dropped a value list of %s/%s: cannot encode "
                        "it (%s)",
                        p->name, vl->host, vl->plugin, strerror(-rc));
        return -EINVAL;
    }
    char key[5 * KTS_NAME_MAX + 8];
    size_t key_len = 0;
    if (p->key != KTS_KEY_NONE) {
        key_len = kts_series_key(key, sizeof(key), vl, p->key);
        if (key_len >= sizeof(key))
            key_len = sizeof(key) - 1;
    }

    if (p->wal_mode)
        return kts_prod_wal_send(p, key, key_len, b->data, b->len); /* (11) */
    if (p->spool != NULL && __atomic_load_n(&p->spooling, __ATOMIC_ACQUIRE)) {
        /* (10) the spool is not drained: behind what is in it */
        pthread_mutex_lock(&p->spool_lock);
        if (p->spooling) {
            rc = kts_prod_spool_append_locked(p, key, key_len, b->data, b->len);
            pthread_mutex_unlock(&p->spool_lock);
            return rc;
        }
        pthread_mutex_unlock(&p->spool_lock);
    }

    double deadline = -1;
    for (;;) {
        rd_kafka_resp_err_t err = kts_prod_produce(p, key, key_len, b->data, b->len);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            ATOMIC_INC(p->sent);
            return 0;
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            /* (3) back-pressure, unless we already gave up on this full queue */
            if (!ATOMIC_GET(p->overflowing)) {
                double t = kts_prod_now_s();
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
                                    "write_kafka_ts plugin (%s): local queue full for "
                                    "BlockTimeout %.3g s: spooling to disk until the broker "
                                    "catches up",
                                    p->name, p->block_timeout);
                }
                rc = kts_prod_spool_append_locked(p, key, key_len, b->data, b->len);
                pthread_mutex_unlock(&p->spool_lock);
                return rc;
            }
            ATOMIC_INC(p->dropped_queue_full);
            kts_log_limited(&p->rl_drop, KTS_LOG_ERR,
                            "write_kafka_ts plugin (%s): dropped a value list: local queue full "
                            "(BufferMessages/BufferBytes) for longer than BlockTimeout %.3g s; "
                            "is the broker reachable?",
                            p->name, p->block_timeout);
            return -ENOBUFS;
        }
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
            ATOMIC_INC(p->dropped_too_large);
            kts_log_limited(&p->rl_drop, KTS_LOG_ERR,
                            "write_kafka_ts plugin (%s): dropped a value list: message of %zu "
                            "bytes is larger than message.max.bytes",
                            p->name, b->len);
            return -EMSGSIZE;
        }
        ATOMIC_INC(p->dropped_error);
        kts_log_limited(&p->rl_drop, KTS_LOG_ERR,
                        "write_kafka_ts plugin (%s): dropped a value list: %s (%s)", p->name,
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

/* Close, step 1: with the delivery thread stopped, drain the spool (10) (11) and librdkafka's
 * queue within timeout_s; purge what is left so that every message gets its report (5). */
static void close_drain(struct kts_producer *p, double timeout_s)
{
    double deadline = kts_prod_now_s() + timeout_s;
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
    }
}

/* What close counts and reports. */
struct close_counts {
    uint64_t sent, failed, purged, requeued, undelivered, delivered, dropped;
    uint64_t spool_bytes, spool_left, unwritten;
};

/* Close, step 2: put purged messages in front of the spool (10), close it; counts in c. */
static void close_spool(struct kts_producer *p, struct close_counts *c)
{
    if (!p->wal_mode)
        c->requeued = kts_prod_requeue_purged(p);
    struct kts_spool_stats st;
    kts_spool_stats(p->spool, &st);
    c->spool_bytes = st.bytes;
    c->spool_left = !kts_spool_empty(p->spool);
    if (kts_spool_close_stats(p->spool, &st) != 0)
        kts_log(KTS_LOG_ERR,
                "write_kafka_ts plugin (%s): shutdown: the spool could not be "
                "closed cleanly (see above)",
                p->name);
    c->unwritten = st.unwritten; /* lost at the final write (disk full): logged by the spool */
    p->spool = NULL;
}

/* Close, step 3: one line for the outcome (5). */
static void close_report(const struct kts_producer *p, double timeout_s,
                         const struct close_counts *c)
{
    if (c->spool_left)
        kts_log(KTS_LOG_NOTICE,
                "write_kafka_ts plugin (%s): shutdown: the spool keeps %llu bytes of value lists "
                "for the next start (%llu of them put back from librdkafka's queue; spooled "
                "%llu, replayed %llu in this run)",
                p->name, (unsigned long long)c->spool_bytes, (unsigned long long)c->requeued,
                (unsigned long long)ATOMIC_GET(p->spooled),
                (unsigned long long)ATOMIC_GET(p->replayed));
    uint64_t unsure = ATOMIC_GET(p->unsure);
    if (c->undelivered > 0)
        kts_log(KTS_LOG_ERR,
                "write_kafka_ts plugin (%s): shutdown: %llu value lists were NOT delivered "
                "(%llu still queued after FlushTimeout %.3g s, %llu failed; %llu of them "
                "possibly written by the broker, whose answer never came); %llu delivered of "
                "%llu sent; %llu dropped before sending",
                p->name, (unsigned long long)c->undelivered,
                (unsigned long long)(c->undelivered > c->failed ? c->undelivered - c->failed : 0),
                timeout_s, (unsigned long long)c->failed, (unsigned long long)unsure,
                (unsigned long long)c->delivered, (unsigned long long)c->sent,
                (unsigned long long)c->dropped);
    else if (unsure > 0)
        kts_log(KTS_LOG_NOTICE,
                "write_kafka_ts plugin (%s): shutdown: %llu value lists put back in the spool "
                "were possibly written by the broker already (its answer never came): Kafka "
                "may get them twice",
                p->name, (unsigned long long)unsure);
    else if (c->requeued > 0)
        kts_log(KTS_LOG_INFO,
                "write_kafka_ts plugin (%s): shutdown: %llu value lists sent were delivered, "
                "%llu put back in the spool; %llu dropped before sending",
                p->name, (unsigned long long)c->delivered, (unsigned long long)c->requeued,
                (unsigned long long)c->dropped);
    else
        kts_log(KTS_LOG_INFO,
                "write_kafka_ts plugin (%s): shutdown: all %llu value lists sent were delivered; "
                "%llu dropped before sending",
                p->name, (unsigned long long)c->sent, (unsigned long long)c->dropped);
}

uint64_t kts_producer_close(struct kts_producer *p, double timeout_s)
{
    if (p == NULL)
        return 0;
    if (p->poller_started) {
        __atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
        pthread_join(p->poller, NULL);
    }
    close_drain(p, timeout_s);
    /* The queue is empty now: every message sent was delivered, failed or purged. */
    struct close_counts c = {.sent = ATOMIC_GET(p->sent),
                             .failed = ATOMIC_GET(p->failed),
                             .purged = ATOMIC_GET(p->purged)};
    if (p->wal_mode) {
        c.requeued = c.purged; /* (11) never acknowledged: still in the spool */
        kts_prod_wal_sweep(p);
    }
    if (p->spool != NULL)
        close_spool(p, &c);
    c.undelivered = c.failed + c.purged - c.requeued;
    if (rd_kafka_outq_len(p->rk) > 0) {
        /* Purge reports not served in 5 s: count what is left as not delivered too. */
        c.undelivered += (uint64_t)rd_kafka_outq_len(p->rk);
    }
    if (c.undelivered > c.sent)
        c.undelivered = c.sent;
    c.delivered = c.sent - c.undelivered - c.requeued;
    c.dropped = ATOMIC_GET(p->dropped_queue_full) + ATOMIC_GET(p->dropped_too_large) +
                ATOMIC_GET(p->dropped_encode) + ATOMIC_GET(p->dropped_error) +
                ATOMIC_GET(p->dropped_spool_full) + ATOMIC_GET(p->dropped_spool_error) +
                c.unwritten;
    close_report(p, timeout_s, &c);
    uint64_t undelivered = c.undelivered;
    producer_free(p);
    return undelivered;
}
