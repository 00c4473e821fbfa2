/* SPDX-License-Identifier: MIT */
/*
 * kts_consumer_state_impl: the state topic's private state (kts_consumer.h 12–17), shared by
 * kts_consumer_state.c (restore, checkpoints, revoke) and kts_consumer_state_topic.c (start-up
 * check). Under the consumer's lock unless noted.
 *
 *   ckpt   one partition's checkpoint: its cut, the records kept until the values up to the cut
 *          are done (14), then the number not yet acknowledged (15)
 */
#ifndef KTS_CONSUMER_STATE_IMPL_H
#define KTS_CONSUMER_STATE_IMPL_H

#include "kts_consumer_impl.h"

struct kts_ckrec {
    void *key, *val; /* val NULL: tombstone */
    size_t klen, vlen;
};

struct kts_ckpt {
    struct part *part; /* NULL once its partition was freed (then freed on the last report) */
    int32_t partition;
    int64_t cut; /* Q+1: the offset to store once all are acknowledged */
    struct kts_ckrec *recs;
    size_t n, cap;
    bool produced;  /* the records were handed to the producer */
    size_t unacked; /* produced, not yet reported */
    size_t acked, bytes, tombstones;
    bool failed;
    int64_t ns; /* time spent in checkpoint() and producing */
};

struct kts_cons_state {
    char *topic;            /* the state topic */
    rd_kafka_t *prk;        /* producer of checkpoints (and the admin calls) */
    rd_kafka_topic_t *prkt; /* the state topic's handle in prk (no lookup by name per record) */
    rd_kafka_t *srk;        /* group-less reader of state partitions (13) */
    rd_kafka_queue_t *sq;
    bool reassign; /* the reader's assignment must change */
    struct kts_ratelimit rl;
};

/* (12) The input topic exists, the state topic exists (created if missing) with as many
 * partitions and cleanup.policy=compact. 0, or a negative errno with errbuf naming both. */
int kts_cons_state_topic_check(rd_kafka_t *rk, const char *input, const char *state,
                               const char *where, char *errbuf, size_t errbuf_size);

#endif
