/* SPDX-License-Identifier: MIT */
/*
 * kts_consumer_impl: the consumer's private state, shared by its files only (not by the plugins,
 * not by tests). Numbers refer to the guarantees in kts_consumer.h.
 *
 *   kts_consumer.c          options, output naming, life cycle, the poll loop, decoding
 *   kts_consumer_inflight.c values between decoding and written-confirmation (no librdkafka)
 *   kts_consumer_offsets.c  partitions, offsets, commit points (11), rebalances (eager and
 *                           incremental), lag
 *   kts_consumer_dlq.c      bad messages and the dead-letter producer (5)
 *   kts_consumer_state.c    the state topic: check/create, restore, checkpoints (12–17)
 *
 * Bookkeeping, all under one mutex (c->lock):
 *   part    an assigned partition: FIFO of its in-flight messages in offset order (2)
 *   msg     one consumed message: number of its values not yet done (in c->inf)
 * A message is done when all its values are; a partition's stored offset advances over the
 * done prefix of its FIFO only.
 */
#ifndef KTS_CONSUMER_IMPL_H
#define KTS_CONSUMER_IMPL_H

#include "kts_consumer.h"
#include "kts_consumer_inflight.h"
#include "kts_format.h"
#include "kts_log.h"
#include "kts_rdkconf.h"
#include "kts_typesdb.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>

struct part;
struct kts_ckpt;
struct kts_cons_state;

struct msg {
    struct kts_inflight_msg im; /* pending values; im.revoked points at part->revoked */
    struct part *part;
    int64_t offset;
    struct msg *next;
};

struct part {
    char *topic;
    int32_t partition;
    bool revoked;
    int64_t next_offset; /* last consumed + 1, -1 before the first message */
    int64_t stored;      /* last offset stored, -1 none */
    int64_t done;        /* (11) offset to store once flushed (last done + 1), -1 none */
    int64_t flushed;     /* (11) `done` at the last commit point, -1 none */
    struct msg *head, *tail;
    struct part *next;
    /* StateTopic (12–16), kts_consumer_state.c */
    bool restoring;      /* paused: its state partition is being read (13) */
    bool restore_listed; /* in the state reader's assignment */
    int64_t refetch;     /* first offset fetched while restoring (sought back to), -1 */
    int64_t restore_end; /* the state partition's high watermark at assignment, -1 unknown */
    int64_t restore_t0;  /* kts_inflight_now_ns() at assignment */
    int64_t commitable;  /* (11) with a hook: `flushed` of the previous commit point */
    int64_t acked_cut;   /* (15) cut of the last checkpoint all acknowledged, -1 none */
    bool ck_full;        /* the next checkpoint exports every series */
    unsigned ck_points;  /* (14) commit points since its last checkpoint (or assignment) */
    struct kts_ckpt *ck; /* the checkpoint kept or being produced, NULL none */
};

struct kts_consumer {
    struct kts_consumer_config cfg; /* only the scalar fields and naming strings are used */
    char *name;
    const char *where; /* starts every log line: log.where (kts_consumer_config.log_prefix) */
    char *host_prefix, *host_suffix, *pi_suffix;
    struct kts_consumer_callbacks cb;

    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    rd_kafka_t *dlq; /* dead-letter producer, or NULL */
    char *dlq_topic;
    struct kts_typesdb *types;
    struct kts_decoder *decoder;
    struct kts_rdklog log; /* prefix, secrets masked in librdkafka's lines, limiters */

    pthread_mutex_t lock;
    pthread_cond_t cond; /* room freed, value confirmed, run() ended */
    bool stop, running;  /* c->inf.draining: nothing more is dispatched */

    struct part *parts;
    struct kts_inflight inf; /* series queues, tokens, ordered dispatch (3, 9, 10) */

    struct kts_consumer_stats st;
    struct kts_ratelimit rl_bad, rl_err, rl_dlq;
    struct kts_cons_state *state; /* StateTopic, NULL when off */
    bool hold;                    /* (16) drain: consume nothing more, keep dispatching */

    /* per-message scratch, consumer thread only */
    struct kts_vl *scratch;
    size_t scratch_n, scratch_cap;
    char scratch_err[512];
    uint64_t scratch_values; /* decoded by the consumer thread, added to st.values under lock */
};

/* kts_consumer.c: the log and error callbacks (kts_rdkconf.h), shared with the dead-letter
 * producer. */
void kts_cons_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);
void kts_cons_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);

/* kts_consumer_offsets.c; every function with the lock held unless noted. */
struct part *kts_cons_part_find(struct kts_consumer *c, const char *topic, int32_t partition);
/* Append a new message at `offset` to `p`'s FIFO; NULL when out of memory. */
struct msg *kts_cons_msg_append(struct kts_consumer *c, struct part *p, int64_t offset);
/* Pop done messages; store offsets (with a commit hook: only record them, 11) (2, 9). */
void kts_cons_store_offsets(struct kts_consumer *c);
/* (11) One commit point; unlocks around the hook. */
void kts_cons_commit_point(struct kts_consumer *c, bool final);
/* librdkafka's rebalance callback (takes the lock itself). */
void kts_cons_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *parts, void *opaque);
/* Free every partition and message (destroy). */
void kts_cons_parts_free(struct kts_consumer *c);

/* kts_consumer_dlq.c */
/* Create the dead-letter producer when cfg->dead_letter_topic is set (create, no lock). */
int kts_cons_dlq_create(struct kts_consumer *c, const struct kts_consumer_config *cfg, char *errbuf,
                        size_t errbuf_size);
/* A bad message (5): count, log, copy to the dead-letter topic. Lock held. */
void kts_cons_bad_message(struct kts_consumer *c, const rd_kafka_message_t *km, struct msg *m,
                          const char *why);
/* Serve the dead-letter producer's delivery reports (no lock). */
void kts_cons_dlq_poll(struct kts_consumer *c);
/* Flush and destroy the dead-letter producer (close). */
void kts_cons_dlq_close(struct kts_consumer *c);
/* The connection properties of the consumer's (bootstrap, security, sasl, ssl, client.id) set
 * on another client's conf (the dead-letter and state producers, the state reader). */
int kts_cons_conn_conf(rd_kafka_conf_t *conf, const struct kts_consumer_config *cfg, char *errbuf,
                       size_t errbuf_size);

/* kts_consumer_state.c (12–17); NULL-safe: nothing happens when c->state is NULL. */
/* Check/create the state topic, make the producer and the reader (create, no lock). */
int kts_cons_state_create(struct kts_consumer *c, const struct kts_consumer_config *cfg,
                          char *errbuf, size_t errbuf_size);
/* A newly assigned partition starts restoring (13). Lock held. */
void kts_cons_state_assigned(struct kts_consumer *c, struct part *p);
/* After rd_kafka_assign/incremental_assign: pause the partitions restoring (no lock). */
void kts_cons_state_pause(struct kts_consumer *c, rd_kafka_t *rk);
/* (13) A message of a restoring partition is not processed: true (remember to refetch it).
 * Takes the lock. */
bool kts_cons_state_hold(struct kts_consumer *c, const rd_kafka_message_t *km);
/* The consumer loop's turn: reader, resumes, producing kept checkpoints, acknowledgements,
 * offsets (15). Lock held on entry and return (released inside). */
bool kts_cons_state_poll(struct kts_consumer *c); /* true while a partition restores */
/* (14) At a commit point, after the hook: checkpoint every eligible partition. Lock held. */
void kts_cons_state_checkpoint_all(struct kts_consumer *c);
/* (16) Partitions going away (revoked = the ones to give up: `list` NULL all owned): final
 * checkpoints, then revoked(). Lock held on entry and return. */
void kts_cons_state_revoke(struct kts_consumer *c, const rd_kafka_topic_partition_list_t *list);
/* (16) Drain: final checkpoint of every owned partition whose values are all done. Lock held. */
void kts_cons_state_final(struct kts_consumer *c);
/* A partition is freed: detach its checkpoint. Lock held. */
void kts_cons_state_part_free(struct kts_consumer *c, struct part *p);
/* Free the producer and the reader (destroy). */
void kts_cons_state_destroy(struct kts_consumer *c);

#endif
