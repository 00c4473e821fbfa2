/* SPDX-License-Identifier: MIT */
/*
 * kts_producer's internals, shared by its files: kts_producer.c (librdkafka, sending,
 * back-pressure, counters, close) and kts_producer_spool.c (the spool: overflow (10) and
 * write-ahead (11)). Not for other code: the interface and the guarantees are in
 * kts_producer.h.
 */
#ifndef KTS_PRODUCER_IMPL_H
#define KTS_PRODUCER_IMPL_H

#include "kts_buf.h"
#include "kts_log.h"
#include "kts_producer.h"
#include "kts_rdkprops.h"
#include "kts_spool.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* One encode buffer per sending thread (collectd's write threads), found through a key. */
struct tls_node {
    struct kts_buf buf;
    struct tls_node *next;
};

struct kts_producer {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    char *name;
    enum kts_format format;
    enum kts_key_mode key;
    bool skip_marked;
    double block_timeout;
    struct kts_strv secrets; /* secret property values, masked in librdkafka's lines (7) */

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
    struct kts_ratelimit rl_error[KTS_RDK_LIMITERS]; /* error events, by kind (kts_log.h) */
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

/* kts_producer.c */
/* Monotonic seconds. */
double kts_prod_now_s(void);
/* Hands one message to librdkafka; its opaque is its place in produce order (10). */
rd_kafka_resp_err_t kts_prod_produce(struct kts_producer *p, const void *key, size_t key_len,
                                     const void *payload, size_t len);

/* kts_producer_spool.c */
/* (10) Copies a purged message (close only) to be put in front of the spool. */
void kts_prod_keep_purged(struct kts_producer *p, const rd_kafka_message_t *m);
/* (11) A delivery report in write-ahead mode. */
void kts_prod_wal_report(struct kts_producer *p, const rd_kafka_message_t *m);
/* (11) Consumes the spool up to the acknowledged end; spool_lock held. */
void kts_prod_wal_sweep(struct kts_producer *p);
/* (10) Replays the spool into librdkafka's queue while it has room. */
void kts_prod_spool_service(struct kts_producer *p);
/* (11) Sweeps acknowledgements, produces what waits in the spool; true while records wait. */
bool kts_prod_wal_service(struct kts_producer *p);
/* Appends one message to the spool (spool_lock held); 0 or -ENOBUFS/-EIO (counted, logged). */
int kts_prod_spool_append_locked(struct kts_producer *p, const void *key, size_t key_len,
                                 const void *payload, size_t len);
/* (10) (11) Opens the spool at create; 0 or a negative errno with the reason in errbuf. */
int kts_prod_spool_open(struct kts_producer *p, const struct kts_producer_config *cfg, char *errbuf,
                        size_t errbuf_size);
/* (11) kts_producer_send's write-ahead path: append, then produce when nothing waits. */
int kts_prod_wal_send(struct kts_producer *p, const char *key, size_t key_len, const void *payload,
                      size_t len);
/* (10) At close: the purged messages in front of the spool in produce order; how many. */
uint64_t kts_prod_requeue_purged(struct kts_producer *p);

#endif
