/* SPDX-License-Identifier: MIT */
/*
 * kts_producer_impl: the producer's private state, shared by its files only (not by the plugins,
 * not by tests). Numbers refer to the guarantees in kts_producer.h.
 *
 *   kts_producer.c           life cycle: create (librdkafka properties, the topic check (12)),
 *                            counters, close
 *   kts_producer_options.c   the option table and the checks it cannot express
 *   kts_producer_send.c      the send path: encode, key, back-pressure (3), appending to the
 *                            spool (10, 11)
 *   kts_producer_spool.c     the rest of the spool's use: opening it, replay (10), write-ahead
 *                            sends and acknowledgements (11), purged messages put back at close
 *   kts_producer_delivery.c  the delivery thread and librdkafka's callbacks: delivery reports,
 *                            errors, logs, statistics
 */
#ifndef KTS_PRODUCER_IMPL_H
#define KTS_PRODUCER_IMPL_H

#include "kts_buf.h"
#include "kts_log.h"
#include "kts_producer.h"
#include "kts_rdkconf.h"
#include "kts_spool.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

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

    /* Delivery latency from librdkafka's statistics (µs; atomic; see kts_prod_on_stats). */
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
     * has stopped, serves them and sweeps), swept per batch of reports (kts_prod_wal_sweep). A slot
     * is filled before its message is produced, so its report always finds it. */
    bool wal_mode;
    uint64_t wal_backlog; /* records appended but not yet produced (under spool_lock) */
    struct wal_slot *wal;
    uint64_t wal_mask, wal_lo, wal_hi;
    struct kts_spool_pos wal_acked;
    uint64_t acked; /* atomic */
    /* close: purged messages collected by kts_prod_on_delivery, to be requeued in produce order */
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

/* Monotonic seconds. */
static inline double kts_prod_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Hands one message to librdkafka; its opaque is its place in produce order (10). */
static inline rd_kafka_resp_err_t kts_prod_produce(struct kts_producer *p, const void *key,
                                                   size_t key_len, const void *payload, size_t len)
{
    uint64_t seq = __atomic_add_fetch(&p->msg_seq, 1, __ATOMIC_RELAXED);
    return rd_kafka_producev(
        p->rk, RD_KAFKA_V_RKT(p->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key_len ? key : NULL, key_len), RD_KAFKA_V_VALUE((void *)payload, len),
        RD_KAFKA_V_OPAQUE((void *)(uintptr_t)seq), RD_KAFKA_V_END);
}

/* (11) Fills the slot of message seq (spool_lock held) before it is produced, so that its
 * report always finds it. `done` is atomic: reports set it without the lock. */
static inline void kts_prod_wal_fill(struct kts_producer *p, uint64_t seq, struct kts_spool_pos end)
{
    p->wal[seq & p->wal_mask].end = end;
    __atomic_store_n(&p->wal[seq & p->wal_mask].done, false, __ATOMIC_RELAXED);
}

/* kts_producer_options.c: what the words of kts_producer_format_words[] and
 * kts_producer_key_words[] mean, in the same order. */
extern const enum kts_format kts_prod_format_of_word[];
extern const enum kts_key_mode kts_prod_key_of_word[];

/* kts_producer_delivery.c: librdkafka's callbacks (opaque: the producer) and the delivery
 * thread (2). */
void kts_prod_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);
void kts_prod_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);
void kts_prod_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
int kts_prod_on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque);
void *kts_prod_poller_main(void *arg);

/* kts_producer_spool.c */
/* (10) Copies a purged message (close only) to be put in front of the spool. */
void kts_prod_keep_purged(struct kts_producer *p, const rd_kafka_message_t *m);
/* (11) Consumes the spool up to the acknowledged end; spool_lock held. */
void kts_prod_wal_sweep(struct kts_producer *p);
/* (11) A delivery report in write-ahead mode. */
void kts_prod_wal_report(struct kts_producer *p, const rd_kafka_message_t *m);
/* (10) Replays the spool into librdkafka's queue while it has room. */
void kts_prod_spool_service(struct kts_producer *p);
/* (11) Sweeps acknowledgements, produces what waits in the spool; true while records wait. */
bool kts_prod_wal_service(struct kts_producer *p);
/* (10) (11) Opens the spool at create; 0 or a negative errno with the reason in errbuf. */
int kts_prod_spool_setup(struct kts_producer *p, const struct kts_producer_config *cfg,
                         char *errbuf, size_t errbuf_size);
/* (10) At close: the purged messages in front of the spool in produce order; how many. */
uint64_t kts_prod_requeue_purged(struct kts_producer *p);

#endif
