/* SPDX-License-Identifier: MIT */
/* kts_producer_spool: the producer's use of the spool (kts_spool.h): overflow and replay (10),
 * write-ahead (11), purged messages put back at close; kts_producer_impl.h. Numbers refer to the
 * guarantees in kts_producer.h. */
#include "kts_producer_impl.h"

#include "kts_array.h"
#include "kts_log.h"
#include "kts_spool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies a purged message for close to put in front of the spool. Runs only while closing,
 * from close's own rd_kafka_poll (the delivery thread has stopped): no lock needed. A copy
 * that cannot be made is simply not requeued (counted as not delivered). */
void kts_prod_keep_purged(struct kts_producer *p, const rd_kafka_message_t *m)
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

/* (11) Moves the acknowledged end over every done message in produce order and consumes the
 * spool up to it: once per batch of delivery reports. spool_lock held. */
void kts_prod_wal_sweep(struct kts_producer *p)
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
void kts_prod_wal_report(struct kts_producer *p, const rd_kafka_message_t *m)
{
    uint64_t seq = (uint64_t)(uintptr_t)m->_private;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ATOMIC_INC(p->acked);
        wal_done(p, seq); /* swept by kts_prod_wal_service, once per batch of reports */
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
void kts_prod_spool_service(struct kts_producer *p)
{
    double t = kts_prod_now_s();
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
            rd_kafka_resp_err_t err = kts_prod_produce(p, key, key_len, payload, len);
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
bool kts_prod_wal_service(struct kts_producer *p)
{
    double t = kts_prod_now_s();
    bool more = true;
    for (int batch = 0; batch < 100 && more; batch++) {
        pthread_mutex_lock(&p->spool_lock);
        kts_prod_wal_sweep(p);
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
            kts_prod_wal_fill(p, seq, end);
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

/* The spool (10, 11), when SpoolDirectory is not "none": opened, and what a previous run left
 * in it scheduled first. 0 or a negative errno with the reason in errbuf. */
int kts_prod_spool_setup(struct kts_producer *p, const struct kts_producer_config *cfg,
                         char *errbuf, size_t errbuf_size)
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

static int cmp_purged(const void *a, const void *b)
{
    const struct purged_msg *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* (10) Puts the purged messages in front of the spool in produce order; returns how many. */
uint64_t kts_prod_requeue_purged(struct kts_producer *p)
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
