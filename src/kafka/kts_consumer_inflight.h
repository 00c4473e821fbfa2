/* SPDX-License-Identifier: MIT */
/*
 * kts_consumer_inflight: the consumer's values between decoding and their written-confirmation
 * (series queues, tokens, ordered dispatch, write timeouts). No librdkafka here: the consumer
 * (kts_consumer.c) feeds it and tests/t-consumer-inflight.c tests it alone. Numbers refer to the
 * guarantees in kts_consumer.h.
 *
 *   msg     one consumed message, as seen from here: its values not yet done, and the revoked
 *           flag of its partition (the partition and offset bookkeeping is kts_consumer_offsets.c)
 *   pval    one value list to dispatch: in its series' queue, then in flight (token map)
 *   series  per output series: queue sorted by time + at most one value in flight (3)
 *
 * A value is done when its token comes back through kts_inflight_written() (or times out, 10),
 * is dropped because its partition was revoked (9), or its dispatch failed or was skipped.
 * Each done value decrements its message's `pending`.
 *
 * Not thread-safe: the consumer calls every function with its lock held. The dispatch callback
 * is called from kts_inflight_pump() and from kts_inflight_written() (3).
 */
#ifndef KTS_CONSUMER_INFLIGHT_H
#define KTS_CONSUMER_INFLIGHT_H

#include "kts_consumer.h"
#include "kts_format.h"
#include "kts_log.h"
#include "kts_value.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Monotonic clock in nanoseconds (dispatch times, write timeouts, the consumer's loop). */
static inline int64_t kts_inflight_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A consumed message: owned by the caller, which frees it once `pending` is 0. */
struct kts_inflight_msg {
    uint32_t pending;    /* values (or the dead-letter copy) not yet done */
    const bool *revoked; /* its partition's revoked flag (9); NULL: never revoked */
};

/* One of a message's values (or its dead-letter copy) is done. Never goes below 0. */
void kts_inflight_msg_done(struct kts_inflight_msg *m);

struct kts_inflight_series;
struct kts_inflight_pval;

struct kts_inflight {
    /* Settings: the caller fills them before kts_inflight_init(). */
    bool ordered;           /* (3); false dispatches every value at once */
    double write_timeout;   /* seconds before an unconfirmed value counts as done (10) */
    uint64_t instance_bits; /* the top 8 bits of every token */
    kts_dispatch_fn dispatch;
    void *dispatch_opaque;
    const char *where;             /* starts every log line (kts_consumer_config.log_prefix) */
    struct kts_consumer_stats *st; /* dispatched … dropped_revoked and inflight_values */
    pthread_cond_t *done_cond;     /* broadcast when a value is done; NULL: none */

    /* Read by the caller; `draining` also set by it: nothing more is dispatched. */
    bool draining;
    uint64_t dispatched_now; /* values between dispatch and done */

    /* Private. */
    struct kts_inflight_series **stab; /* series hash table */
    size_t stab_cap, stab_count;
    struct kts_inflight_series *ready_head, *ready_tail; /* series with a value to dispatch */
    struct kts_inflight_pval **tmap;                     /* token → dispatched pval */
    size_t tmap_cap;
    struct kts_inflight_pval *dhead, *dtail; /* dispatched, oldest first (10) */
    uint64_t next_seq;
    struct kts_ratelimit rl_timeout, rl_dispatch;
};

/* Allocate the token map, sized for `max_values` values in flight. 0 or -ENOMEM. */
int kts_inflight_init(struct kts_inflight *f, size_t max_values);
/* Free every value still queued or in flight (no counter changes). */
void kts_inflight_fini(struct kts_inflight *f);

/* Queue `vl` (moved: on success *vl is the module's; on -ENOMEM it is still the caller's) in its
 * series, in time order, as a value of `m` (m->pending is incremented). Dispatch happens in
 * kts_inflight_pump(). */
int kts_inflight_add(struct kts_inflight *f, struct kts_vl *vl, struct kts_inflight_msg *m);

/* Dispatch the head of every series that has nothing in flight (3), unless draining. */
void kts_inflight_pump(struct kts_inflight *f);

/* The value with `token` has passed the write path: counted in `written`, done, and its series'
 * next value dispatched (3). -ENOENT for an unknown token. */
int kts_inflight_written(struct kts_inflight *f, uint64_t token);

/* Is `token` one of this instance's (top 8 bits)? */
bool kts_inflight_owns(const struct kts_inflight *f, uint64_t token);

/* Values dispatched before now_ns − write_timeout are counted as unconfirmed, logged and done
 * (10). `now_ns` is kts_inflight_now_ns() (tests may pass a later time). */
void kts_inflight_expire(struct kts_inflight *f, int64_t now_ns);

/* Drop the queued (not dispatched) values whose message's partition is revoked (9). */
void kts_inflight_drop_revoked(struct kts_inflight *f);

#endif
