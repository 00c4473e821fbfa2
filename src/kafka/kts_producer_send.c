/* SPDX-License-Identifier: MIT */
/* kts_producer_send: the send path (collectd's write threads): encode, key, produce,
 * back-pressure (3), the switch to the spool (10, 11); kts_producer_impl.h. Numbers refer to
 * the guarantees in kts_producer.h. */
#include "kts_producer_impl.h"

#include "kts_buf.h"
#include "kts_log.h"
#include "kts_spool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* (11) Write-ahead: on disk before we return. When nothing waits in the spool, it is produced
 * here at once (the same order: under the lock appends take); otherwise the delivery thread
 * reads it back in its turn. */
static int send_wal(struct kts_producer *p, const char *key, size_t key_len,
                    const struct kts_buf *b)
{
    pthread_mutex_lock(&p->spool_lock);
    int rc = spool_append_locked(p, key, key_len, b->data, b->len);
    if (rc == 0 && p->wal_backlog == 0 && p->wal_hi - p->wal_lo <= p->wal_mask) {
        uint64_t seq = p->wal_hi;
        struct kts_spool_pos end = kts_spool_tail(p->spool);
        kts_prod_wal_fill(p, seq, end);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_RKT(p->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key_len ? key : NULL, key_len),
            RD_KAFKA_V_VALUE((void *)b->data, b->len), RD_KAFKA_V_OPAQUE((void *)(uintptr_t)seq),
            RD_KAFKA_V_END);
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

/* (10) The spool was not drained when the caller looked: the value list goes behind what is in
 * it. True when it did (*rc: spool_append_locked's result); false when the delivery thread
 * drained the spool meanwhile, so the value list goes to librdkafka directly. */
static bool send_behind_spool(struct kts_producer *p, const char *key, size_t key_len,
                              const struct kts_buf *b, int *rc)
{
    pthread_mutex_lock(&p->spool_lock);
    bool spooling = p->spooling;
    if (spooling)
        *rc = spool_append_locked(p, key, key_len, b->data, b->len);
    pthread_mutex_unlock(&p->spool_lock);
    return spooling;
}

/* (3) Back-pressure on a full queue: waits for space and returns true (try again) until
 * BlockTimeout has passed since the first try (*deadline, -1 before it), or at once false when
 * an earlier send already gave up on this full queue. */
static bool wait_while_full(struct kts_producer *p, double *deadline)
{
    if (ATOMIC_GET(p->overflowing))
        return false;
    double t = kts_prod_now_s();
    if (*deadline < 0) {
        *deadline = t + p->block_timeout;
        ATOMIC_INC(p->blocked);
    }
    if (t < *deadline) {
        wait_for_space(p, *deadline);
        return true;
    }
    __atomic_store_n(&p->overflowing, 1, __ATOMIC_RELAXED);
    return false;
}

/* The queue stayed full for BlockTimeout: the value list goes to the spool, and so does
 * everything after it until the spool is drained (10); without a spool it is dropped. */
static int send_overflow(struct kts_producer *p, const char *key, size_t key_len,
                         const struct kts_buf *b)
{
    if (p->spool != NULL) {
        pthread_mutex_lock(&p->spool_lock);
        if (!p->spooling) {
            __atomic_store_n(&p->spooling, 1, __ATOMIC_RELEASE);
            kts_log_limited(&p->rl_spool_on, KTS_LOG_WARNING,
                            "%s: local queue full for "
                            "BlockTimeout %.3g s: spooling to disk until the broker "
                            "catches up",
                            p->where, p->block_timeout);
        }
        int rc = spool_append_locked(p, key, key_len, b->data, b->len);
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

/* librdkafka refused the value list for another reason than a full queue: dropped, counted and
 * logged by reason. */
static int send_refused(struct kts_producer *p, rd_kafka_resp_err_t err, size_t len)
{
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
        ATOMIC_INC(p->dropped_too_large);
        kts_log_limited(&p->rl_drop, KTS_LOG_ERR,
                        "%s: dropped a value list: message of %zu "
                        "bytes is larger than message.max.bytes",
                        p->where, len);
        return -EMSGSIZE;
    }
    ATOMIC_INC(p->dropped_error);
    kts_log_limited(&p->rl_drop, KTS_LOG_ERR, "%s: dropped a value list: %s (%s)", p->where,
                    rd_kafka_err2str(err), rd_kafka_err2name(err));
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

    if (p->wal_mode)
        return send_wal(p, key, key_len, b);
    if (p->spool != NULL && __atomic_load_n(&p->spooling, __ATOMIC_ACQUIRE) &&
        send_behind_spool(p, key, key_len, b, &rc))
        return rc;

    double deadline = -1;
    for (;;) {
        rd_kafka_resp_err_t err = kts_prod_produce(p, key, key_len, b->data, b->len);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            ATOMIC_INC(p->sent);
            return 0;
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return send_refused(p, err, b->len);
        if (!wait_while_full(p, &deadline))
            return send_overflow(p, key, key_len, b);
    }
}
