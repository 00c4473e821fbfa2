/* SPDX-License-Identifier: MIT */
/* kts_consumer_state: the consumer's state topic (kts_consumer.h 12–17): restoring a partition
 * before its first message, checkpoints at commit points, offsets that wait for the
 * checkpoint's acknowledgements, final checkpoints at revoke and drain. The pipeline's side is
 * the callbacks struct kts_consumer_state_ops; nothing here knows what a record holds. */
#include "kts_consumer_state_impl.h"

#include "kts_array.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ create, destroy */

static void on_state_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

static rd_kafka_t *client_new(struct kts_consumer *c, const struct kts_consumer_config *cfg,
                              rd_kafka_type_t type, char *errbuf, size_t errbuf_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_log_cb(conf, kts_cons_on_log);
    rd_kafka_conf_set_error_cb(conf, kts_cons_on_error);
    int rc = kts_cons_conn_conf(conf, cfg, errbuf, errbuf_size);
    if (type == RD_KAFKA_PRODUCER) {
        rd_kafka_conf_set_dr_msg_cb(conf, on_state_delivery);
        if (rc == 0)
            rc = kts_rdkconf_set(conf, "acks", "all", errbuf, errbuf_size);
        if (rc == 0)
            rc = kts_rdkconf_set(conf, "message.timeout.ms", "30000", errbuf, errbuf_size);
        if (rc == 0)
            rc = kts_rdkconf_set(conf, "queue.buffering.max.messages", "1000000", errbuf,
                                 errbuf_size);
    } else {
        /* The reader never subscribes nor commits: a group id only because librdkafka's
         * consumer queue needs one. */
        char gid[512];
        snprintf(gid, sizeof(gid), "%s.kts-state-reader", cfg->group_id);
        const char *kv[] = {"group.id", gid, "enable.auto.commit", "false",
                            "enable.auto.offset.store", "false", "enable.partition.eof", "true",
                            "auto.offset.reset", "earliest",
                            /* A restore reads as fast as records are installed. With the
                             * default 64 MiB queue, the fetcher of librdkafka 2.0.2 stops at a
                             * full queue and backs off (fetch.error.backoff.ms, 500) before it
                             * fetches again: 1,000,000 spikes.conf series (2 GB) restored in
                             * 12-15 s, 5 s with these (docs/PERFORMANCE.md, StateTopic). */
                            "queued.max.messages.kbytes", "262144", "fetch.error.backoff.ms", "50"};
        for (size_t i = 0; rc == 0 && i < sizeof(kv) / sizeof(kv[0]); i += 2)
            rc = kts_rdkconf_set(conf, kv[i], kv[i + 1], errbuf, errbuf_size);
    }
    char errstr[512];
    rd_kafka_t *rk = rc == 0 ? rd_kafka_new(type, conf, errstr, sizeof(errstr)) : NULL;
    if (rk == NULL) {
        if (rc == 0) {
            char masked[1024];
            snprintf(errbuf, errbuf_size, "StateTopic: cannot create a client: %s",
                     kts_rdklog_mask(&c->log, errstr, masked, sizeof(masked)));
        }
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

int kts_cons_state_create(struct kts_consumer *c, const struct kts_consumer_config *cfg,
                          char *errbuf, size_t errbuf_size)
{
    if (cfg->state_topic == NULL)
        return 0;
    if (c->cb.state == NULL || c->cb.state->restore == NULL || c->cb.state->checkpoint == NULL ||
        c->cb.state->revoked == NULL || !(c->cb.commit_interval > 0)) {
        snprintf(errbuf, errbuf_size, "StateTopic needs state callbacks and a commit interval");
        return -EINVAL;
    }
    if (cfg->topics.n != 1 || cfg->topics.v[0][0] == '^') {
        snprintf(errbuf, errbuf_size,
                 "StateTopic \"%s\" needs exactly one Topic, not a pattern (the state topic has "
                 "the input topic's partitions, one to one)",
                 cfg->state_topic);
        return -EINVAL;
    }
    if (strcmp(cfg->state_topic, cfg->topics.v[0]) == 0 ||
        (cfg->dead_letter_topic && strcmp(cfg->state_topic, cfg->dead_letter_topic) == 0)) {
        snprintf(errbuf, errbuf_size,
                 "StateTopic \"%s\" must differ from Topic and DeadLetterTopic", cfg->state_topic);
        return -EINVAL;
    }
    struct kts_cons_state *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->topic = strdup(cfg->state_topic)) == NULL) {
        free(s);
        snprintf(errbuf, errbuf_size, "out of memory");
        return -ENOMEM;
    }
    c->state = s;
    s->rl.interval_s = 10;
    s->prk = client_new(c, cfg, RD_KAFKA_PRODUCER, errbuf, errbuf_size);
    if (s->prk == NULL)
        return -EINVAL;
    s->srk = client_new(c, cfg, RD_KAFKA_CONSUMER, errbuf, errbuf_size);
    if (s->srk == NULL)
        return -EINVAL;
    rd_kafka_poll_set_consumer(s->srk);
    s->sq = rd_kafka_queue_get_consumer(s->srk);
    return kts_cons_state_topic_check(s->prk, cfg->topics.v[0], s->topic, c->where, errbuf,
                                      errbuf_size);
}

void kts_cons_state_destroy(struct kts_consumer *c)
{
    struct kts_cons_state *s = c->state;
    if (s == NULL)
        return;
    if (s->sq != NULL)
        rd_kafka_queue_destroy(s->sq);
    if (s->srk != NULL) {
        rd_kafka_consumer_close(s->srk);
        rd_kafka_destroy(s->srk);
    }
    if (s->prk != NULL) {
        rd_kafka_flush(s->prk, 5000);
        if (s->prkt != NULL)
            rd_kafka_topic_destroy(s->prkt);
        rd_kafka_destroy(s->prk);
    }
    free(s->topic);
    free(s);
    c->state = NULL;
}

/* ------------------------------------------------------------------ checkpoints (14, 15) */

/* A record's one allocation: its value followed by its key, or the key alone (tombstone). */
static void *ckrec_block(const struct kts_ckrec *r)
{
    return r->val != NULL ? r->val : r->key;
}

static void ck_free(struct kts_ckpt *ck)
{
    for (size_t i = 0; i < ck->n; i++)
        free(ckrec_block(&ck->recs[i]));
    free(ck->recs);
    free(ck);
}

/* kts_state_put_fn: copy one record into the checkpoint (no lock: consumer thread), in one
 * allocation whose start is the value: the producer takes it over (RD_KAFKA_MSG_F_FREE) and
 * copies only the key. */
static int ck_put(void *pctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct kts_ckpt *ck = pctx;
    if (KTS_ARRAY_GROW(ck->recs, ck->cap, ck->n + 1) != 0)
        return -ENOMEM;
    struct kts_ckrec *r = &ck->recs[ck->n];
    size_t vbytes = val != NULL ? vlen : 0;
    unsigned char *b = malloc(vbytes + klen + 1);
    if (b == NULL)
        return -ENOMEM;
    if (vbytes > 0)
        memcpy(b, val, vbytes);
    memcpy(b + vbytes, key, klen);
    r->val = val != NULL ? b : NULL;
    r->key = b + vbytes;
    r->klen = klen;
    r->vlen = vbytes;
    ck->n++;
    return 0;
}

/* Store the acknowledged cuts of the partitions still owned (15). Lock held. */
static void store_acked(struct kts_consumer *c)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    for (struct part *p = c->parts; p != NULL; p = p->next) {
        if (p->revoked || p->acked_cut < 0 || p->acked_cut <= p->stored)
            continue;
        if (list == NULL)
            list = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = p->acked_cut;
        p->stored = p->acked_cut;
    }
    if (list == NULL || c->rk == NULL) {
        if (list != NULL)
            rd_kafka_topic_partition_list_destroy(list);
        return;
    }
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, list);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        kts_log_limited(&c->rl_err, KTS_LOG_WARNING, "%s: storing offsets: %s", c->where,
                        rd_kafka_err2str(err));
    else
        c->st.offsets_stored += (uint64_t)list->cnt;
    rd_kafka_topic_partition_list_destroy(list);
}

/* Every record of `ck` is reported (or none was produced). Lock held. */
static void ck_complete(struct kts_consumer *c, struct kts_ckpt *ck)
{
    struct part *p = ck->part;
    c->st.state_checkpoint_ns += (uint64_t)ck->ns;
    c->st.state_records += ck->acked;
    c->st.state_bytes += ck->bytes;
    c->st.state_tombstones += ck->tombstones;
    if (ck->failed) {
        c->st.state_failed += ck->n - ck->acked;
        kts_log_limited(&c->state->rl, KTS_LOG_ERR,
                        "%s: StateTopic \"%s\": %zu of %zu record(s) of partition %d's checkpoint "
                        "not written; its offset is not stored (redelivered), the next "
                        "checkpoint is full",
                        c->where, c->state->topic, ck->n - ck->acked, ck->n, (int)ck->partition);
    } else {
        c->st.state_checkpoints++;
    }
    if (p != NULL) {
        if (ck->failed)
            p->ck_full = true;
        else if (ck->cut > p->acked_cut)
            p->acked_cut = ck->cut;
        p->ck = NULL;
    }
    ck_free(ck);
}

static void on_state_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct kts_consumer *c = opaque;
    struct kts_ckpt *ck = m->_private;
    (void)rk;
    pthread_mutex_lock(&c->lock);
    ck->unacked--;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ck->failed = true;
        kts_log_limited(&c->state->rl, KTS_LOG_ERR, "%s: StateTopic \"%s\" partition %d: %s",
                        c->where, c->state->topic, (int)ck->partition, rd_kafka_err2str(m->err));
    } else {
        ck->acked++;
        ck->bytes += m->key_len + m->len;
        ck->tombstones += m->payload == NULL;
    }
    if (ck->unacked == 0 && ck->produced)
        ck_complete(c, ck);
    pthread_mutex_unlock(&c->lock);
}

/* Hand the records of `ck` to the producer (14). Lock held; released while the producer's
 * queue is full. */
static void ck_produce(struct kts_consumer *c, struct kts_ckpt *ck)
{
    int64_t t0 = kts_inflight_now_ns();
    if (c->state->prkt == NULL) /* made at the first checkpoint, as producev(topic name) would */
        c->state->prkt = rd_kafka_topic_new(c->state->prk, c->state->topic, NULL);
    if (c->state->prkt == NULL) {
        ck->failed = true;
        kts_log_limited(&c->state->rl, KTS_LOG_ERR, "%s: StateTopic \"%s\": %s", c->where,
                        c->state->topic, rd_kafka_err2str(rd_kafka_last_error()));
    }
    for (size_t i = 0; i < ck->n && !ck->failed; i++) {
        struct kts_ckrec *r = &ck->recs[i];
        rd_kafka_resp_err_t err;
        int flags = r->val != NULL ? RD_KAFKA_MSG_F_FREE : 0;
        for (int tries = 0;; tries++) {
            /* The value's block (key included) becomes the producer's on success (freed
             * after delivery); on an error it stays ours. A tombstone has no payload. */
            err = rd_kafka_producev(
                c->state->prk, RD_KAFKA_V_RKT(c->state->prkt), RD_KAFKA_V_PARTITION(ck->partition),
                RD_KAFKA_V_MSGFLAGS(flags), RD_KAFKA_V_KEY(r->key, r->klen),
                RD_KAFKA_V_VALUE(r->val, r->vlen), RD_KAFKA_V_OPAQUE(ck), RD_KAFKA_V_END);
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || tries >= 300)
                break;
            pthread_mutex_unlock(&c->lock);
            rd_kafka_poll(c->state->prk, 100);
            pthread_mutex_lock(&c->lock);
        }
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            ck->unacked++;
            if (r->val != NULL)
                r->val = r->key = NULL; /* the producer's now */
        } else {
            ck->failed = true;
            kts_log_limited(&c->state->rl, KTS_LOG_ERR, "%s: StateTopic \"%s\": cannot produce: %s",
                            c->where, c->state->topic, rd_kafka_err2str(err));
        }
    }
    ck->produced = true;
    ck->ns += kts_inflight_now_ns() - t0;
    for (size_t i = 0; i < ck->n; i++) {
        free(ckrec_block(&ck->recs[i]));
        ck->recs[i].key = ck->recs[i].val = NULL;
    }
    if (ck->unacked == 0)
        ck_complete(c, ck);
}

/* May the checkpoint kept for `p` be produced: is every value up to its cut done (with a
 * commit hook: flushed, 11)? */
static bool ck_ready(const struct kts_consumer *c, const struct part *p)
{
    int64_t gate = c->cb.commit_hook != NULL ? p->commitable : p->done;
    return p->ck != NULL && !p->ck->produced && gate >= p->ck->cut;
}

/* (14) Take a checkpoint of `p` at its last consumed offset. Lock held, released around
 * checkpoint() (consumer thread: the partition's state does not move meanwhile). */
static void take_checkpoint(struct kts_consumer *c, struct part *p)
{
    struct kts_ckpt *ck = calloc(1, sizeof(*ck));
    if (ck == NULL)
        return;
    ck->part = p;
    ck->partition = p->partition;
    ck->cut = p->next_offset;
    bool full = p->ck_full;
    pthread_mutex_unlock(&c->lock);
    int64_t t0 = kts_inflight_now_ns();
    int rc = c->cb.state->checkpoint(c->cb.state_ctx, ck->partition, full, ck_put, ck);
    ck->ns = kts_inflight_now_ns() - t0;
    pthread_mutex_lock(&c->lock);
    if (rc < 0) {
        p->ck_full = true;
        kts_log_limited(&c->state->rl, KTS_LOG_ERR,
                        "%s: StateTopic: checkpoint of partition %d failed: %s; retried in full "
                        "at the next commit point",
                        c->where, (int)p->partition, strerror(-rc));
        ck_free(ck);
        return;
    }
    p->ck_full = false;
    p->ck = ck;
}

/* (14) Commit points between two checkpoints of a partition: ceil(state / commit), at least 1. */
static unsigned ck_every(const struct kts_consumer *c)
{
    double n = ceil(c->cb.state_interval / c->cb.commit_interval - 1e-9);
    return n > 1 ? (n < 1e6 ? (unsigned)n : 1000000u) : 1;
}

void kts_cons_state_checkpoint_all(struct kts_consumer *c)
{
    if (c->state == NULL)
        return;
    unsigned every = ck_every(c);
    for (struct part *p = c->parts; p != NULL; p = p->next) {
        if (p->revoked || p->restoring)
            continue;
        if (p->ck_points < every)
            p->ck_points++;
        if (p->ck_points >= every && p->ck == NULL && p->next_offset > 0 &&
            p->next_offset > p->acked_cut) {
            p->ck_points = 0;
            take_checkpoint(c, p);
        }
    }
    for (struct part *p = c->parts; p != NULL; p = p->next)
        if (!p->revoked && ck_ready(c, p))
            ck_produce(c, p->ck);
}

void kts_cons_state_part_free(struct kts_consumer *c, struct part *p)
{
    (void)c;
    if (p->ck == NULL)
        return;
    if (p->ck->produced && p->ck->unacked > 0)
        p->ck->part = NULL; /* freed on its last report */
    else
        ck_free(p->ck);
    p->ck = NULL;
}

/* ------------------------------------------------------------------ restore (13) */

void kts_cons_state_assigned(struct kts_consumer *c, struct part *p)
{
    p->acked_cut = -1;
    p->commitable = -1;
    p->ck_points = 0;
    if (c->state == NULL)
        return;
    p->restoring = true;
    p->restore_listed = false;
    p->refetch = -1;
    p->restore_end = -1;
    p->restore_t0 = kts_inflight_now_ns();
    c->state->reassign = true;
}

/* The restoring partitions (listed or all), as a list on `topic` (input or state). Lock held. */
static rd_kafka_topic_partition_list_t *restoring_list(struct kts_consumer *c, const char *topic)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (struct part *p = c->parts; p != NULL; p = p->next)
        if (!p->revoked && p->restoring)
            rd_kafka_topic_partition_list_add(l, topic ? topic : p->topic, p->partition);
    return l;
}

void kts_cons_state_pause(struct kts_consumer *c, rd_kafka_t *rk)
{
    if (c->state == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    rd_kafka_topic_partition_list_t *l = restoring_list(c, NULL);
    pthread_mutex_unlock(&c->lock);
    if (l->cnt > 0)
        rd_kafka_pause_partitions(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

bool kts_cons_state_hold(struct kts_consumer *c, const rd_kafka_message_t *km)
{
    pthread_mutex_lock(&c->lock);
    struct part *p = kts_cons_part_find(c, rd_kafka_topic_name(km->rkt), km->partition);
    bool held = p != NULL && p->restoring;
    if (held && (p->refetch < 0 || km->offset < p->refetch))
        p->refetch = km->offset;
    pthread_mutex_unlock(&c->lock);
    return held;
}

/* The restoring partition with this number, or NULL. Lock held. */
static struct part *restoring_part(struct kts_consumer *c, int32_t partition)
{
    for (struct part *p = c->parts; p != NULL; p = p->next)
        if (!p->revoked && p->restoring && p->partition == partition)
            return p;
    return NULL;
}

/* Add (add = true) or remove one state partition from the reader's assignment. No lock. */
static void reader_assign(struct kts_consumer *c, int32_t partition, bool add)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, c->state->topic, partition)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_error_t *e = add ? rd_kafka_incremental_assign(c->state->srk, l)
                              : rd_kafka_incremental_unassign(c->state->srk, l);
    if (e != NULL) {
        kts_log(KTS_LOG_ERR, "%s: StateTopic \"%s\" partition %d: %s", c->where, c->state->topic,
                (int)partition, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* `p`'s state is installed: seek back to what was fetched meanwhile, resume (13). Lock held,
 * released inside. */
static void restore_finish(struct kts_consumer *c, struct part *p)
{
    p->restoring = false;
    int64_t ns = kts_inflight_now_ns() - p->restore_t0;
    c->st.state_partitions_restored++;
    c->st.state_restore_ns += (uint64_t)ns;
    int32_t partition = p->partition;
    bool listed = p->restore_listed;
    p->restore_listed = false;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = p->refetch;
    int64_t refetch = p->refetch;
    kts_log(KTS_LOG_INFO, "%s: StateTopic \"%s\": state of partition %d installed in %.3f s",
            c->where, c->state->topic, (int)partition, ns / 1e9);
    pthread_mutex_unlock(&c->lock);
    if (listed)
        reader_assign(c, partition, false);
    if (refetch >= 0) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 10000);
        if (e != NULL) {
            kts_log(KTS_LOG_ERR, "%s: seek of partition %d to %lld: %s", c->where, (int)partition,
                    (long long)refetch, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    }
    rd_kafka_resume_partitions(c->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    pthread_mutex_lock(&c->lock);
}

/* Query the high watermark of each new restoring partition and add it to the reader. Lock held,
 * released inside (consumer thread: partitions are freed on this thread only). */
static void reader_update(struct kts_consumer *c)
{
    c->state->reassign = false;
    for (struct part *p = c->parts; p != NULL; p = p->next) {
        if (p->revoked || !p->restoring || p->restore_listed)
            continue;
        int32_t partition = p->partition;
        int64_t lo = -1, hi = -1;
        pthread_mutex_unlock(&c->lock);
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(c->state->srk, c->state->topic,
                                                                   partition, &lo, &hi, 10000);
        pthread_mutex_lock(&c->lock);
        if (p->revoked || !p->restoring)
            continue;
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            kts_log_limited(&c->state->rl, KTS_LOG_WARNING,
                            "%s: StateTopic \"%s\" partition %d: watermarks: %s (retrying)",
                            c->where, c->state->topic, (int)partition, rd_kafka_err2str(err));
            c->state->reassign = true;
            continue;
        }
        p->restore_end = hi;
        if (hi <= lo) { /* empty: nothing to install */
            restore_finish(c, p);
            c->state->reassign = true; /* the others at the next turn */
            return;
        }
        p->restore_listed = true;
        pthread_mutex_unlock(&c->lock);
        reader_assign(c, partition, true);
        pthread_mutex_lock(&c->lock);
    }
}

/* One record (or event) of the reader. No lock on entry and return. */
static void restore_one(struct kts_consumer *c, const rd_kafka_message_t *km)
{
    if (km->err != RD_KAFKA_RESP_ERR_NO_ERROR && km->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        kts_log_limited(&c->state->rl, KTS_LOG_WARNING, "%s: StateTopic \"%s\": %s", c->where,
                        c->state->topic, rd_kafka_message_errstr(km));
        return;
    }
    pthread_mutex_lock(&c->lock);
    struct part *p = restoring_part(c, km->partition);
    if (p == NULL || !p->restore_listed) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    if (km->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        pthread_mutex_unlock(&c->lock);
        int rc = c->cb.state->restore(c->cb.state_ctx, km->partition, km->key, km->key_len,
                                      km->payload, km->payload ? km->len : 0);
        pthread_mutex_lock(&c->lock);
        if (km->payload == NULL)
            c->st.state_tombstones_read++;
        else if (rc >= 0)
            c->st.state_restored++;
        else
            c->st.state_refused[(-rc - 1) % KTS_CONSUMER_STATE_REASONS]++;
        p = restoring_part(c, km->partition);
    }
    if (p != NULL && km->offset + 1 >= p->restore_end)
        restore_finish(c, p);
    pthread_mutex_unlock(&c->lock);
}

/* Read what the reader has (bounded). No lock. Returns whether a partition is restoring. */
static bool reader_poll(struct kts_consumer *c)
{
    rd_kafka_message_t *batch[1000];
    for (int turn = 0; turn < 20; turn++) {
        ssize_t n = rd_kafka_consume_batch_queue(c->state->sq, 0, batch, 1000);
        for (ssize_t i = 0; i < n; i++) {
            restore_one(c, batch[i]);
            rd_kafka_message_destroy(batch[i]);
        }
        if (n <= 0)
            break;
    }
    pthread_mutex_lock(&c->lock);
    bool busy = false;
    for (struct part *p = c->parts; p != NULL; p = p->next)
        busy |= !p->revoked && p->restoring;
    pthread_mutex_unlock(&c->lock);
    return busy;
}

bool kts_cons_state_poll(struct kts_consumer *c)
{
    if (c->state == NULL)
        return false;
    if (c->state->reassign)
        reader_update(c);
    for (struct part *p = c->parts; p != NULL; p = p->next)
        if (!p->revoked && ck_ready(c, p))
            ck_produce(c, p->ck);
    pthread_mutex_unlock(&c->lock);
    rd_kafka_poll(c->state->prk, 0);
    bool busy = reader_poll(c);
    pthread_mutex_lock(&c->lock);
    store_acked(c);
    return busy;
}

/* ------------------------------------------------------------------ revoke, drain (16) */

static bool going(const struct part *p, const rd_kafka_topic_partition_list_t *list)
{
    if (p->revoked)
        return false;
    if (list == NULL)
        return true;
    for (int i = 0; i < list->cnt; i++)
        if (list->elems[i].partition == p->partition && strcmp(list->elems[i].topic, p->topic) == 0)
            return true;
    return false;
}

static void wait_tick(struct kts_consumer *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&c->cond, &c->lock, &ts);
}

/* Final checkpoints of the partitions in `list` (NULL all) whose values are all done; wait for
 * their acknowledgements until `deadline`; store their cuts. Lock held. */
static void final_checkpoints(struct kts_consumer *c, const rd_kafka_topic_partition_list_t *list,
                              int64_t deadline)
{
    for (struct part *p = c->parts; p != NULL; p = p->next) {
        if (!going(p, list) || p->restoring || p->head != NULL)
            continue;
        p->commitable = p->done; /* everything done, and flushed by the caller's hook */
        if (ck_ready(c, p))
            ck_produce(c, p->ck);
        while (p->ck != NULL && kts_inflight_now_ns() < deadline) {
            pthread_mutex_unlock(&c->lock);
            rd_kafka_poll(c->state->prk, 20);
            pthread_mutex_lock(&c->lock);
        }
        if (p->ck == NULL && p->next_offset > 0 && p->next_offset > p->acked_cut) {
            take_checkpoint(c, p);
            if (ck_ready(c, p))
                ck_produce(c, p->ck);
        }
    }
    bool waiting = true;
    while (waiting && kts_inflight_now_ns() < deadline) {
        waiting = false;
        for (struct part *p = c->parts; p != NULL; p = p->next)
            waiting |= going(p, list) && p->ck != NULL && p->ck->produced;
        if (waiting) {
            pthread_mutex_unlock(&c->lock);
            rd_kafka_poll(c->state->prk, 20);
            pthread_mutex_lock(&c->lock);
        }
    }
    store_acked(c);
}

void kts_cons_state_revoke(struct kts_consumer *c, const rd_kafka_topic_partition_list_t *list)
{
    if (c->state == NULL)
        return;
    int64_t deadline = kts_inflight_now_ns() + (int64_t)(c->cfg.drain_timeout * 1e9);
    /* Let the going partitions' values be written (not dropped): their state absorbed them. */
    for (;;) {
        kts_inflight_pump(&c->inf);
        kts_cons_store_offsets(c);
        bool pending = false;
        for (struct part *p = c->parts; p != NULL; p = p->next)
            pending |= going(p, list) && !p->restoring && p->head != NULL;
        if (!pending || c->inf.draining || kts_inflight_now_ns() >= deadline)
            break;
        wait_tick(c);
    }
    if (c->cb.commit_hook != NULL) {
        pthread_mutex_unlock(&c->lock);
        c->cb.commit_hook(false, c->cb.commit_opaque);
        pthread_mutex_lock(&c->lock);
    }
    final_checkpoints(c, list, deadline);
    int32_t gone[256];
    int ng = 0;
    for (struct part *p = c->parts; p != NULL; p = p->next) {
        if (!going(p, list))
            continue;
        if (p->restoring && p->restore_listed) {
            p->restore_listed = false;
            pthread_mutex_unlock(&c->lock);
            reader_assign(c, p->partition, false);
            pthread_mutex_lock(&c->lock);
        }
        p->restoring = false;
        if (ng < 256)
            gone[ng++] = p->partition;
    }
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < ng; i++)
        c->cb.state->revoked(c->cb.state_ctx, gone[i]);
    pthread_mutex_lock(&c->lock);
}

void kts_cons_state_final(struct kts_consumer *c)
{
    if (c->state == NULL)
        return;
    kts_cons_store_offsets(c);
    final_checkpoints(c, NULL, kts_inflight_now_ns() + (int64_t)(c->cfg.drain_timeout * 1e9));
}
