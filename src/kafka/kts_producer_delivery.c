/* SPDX-License-Identifier: MIT */
/* kts_producer_delivery: the producer's delivery thread and librdkafka's callbacks (delivery
 * reports, errors, logs, statistics); kts_producer_impl.h. Numbers refer to the guarantees in
 * kts_producer.h. */
#include "kts_producer_impl.h"

#include "kts_log.h"
#include "kts_rdkconf.h"
#include "kts_rdkver.h"

#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

void kts_prod_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const struct kts_producer *p = rd_kafka_opaque(rk);
    kts_rdklog_log(p ? &p->log : NULL, level, fac, buf);
}

void kts_prod_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
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
     * (kts_prod_on_log drops librdkafka's FAIL line of the same event). */
    kts_rdklog_error(&p->log, err, reason);
}

/*
 * Delivery reports come for failures only (delivery.report.only.error): a report per
 * successful message doubled write_kafka_ts's CPU cost per value list (docs/PERFORMANCE.md).
 * Successes are derived from the queue length instead, and latency comes from statistics.
 */
void kts_prod_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
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
int kts_prod_on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
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

void *kts_prod_poller_main(void *arg)
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
