/* SPDX-License-Identifier: MIT */
/* kts_consumer_offsets: partitions, offsets, commit points and rebalances of the consumer
 * (kts_consumer_impl.h); numbers refer to the guarantees in kts_consumer.h. */
#include "kts_consumer_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct part *kts_cons_part_find(struct kts_consumer *c, const char *topic, int32_t partition)
{
    for (struct part *p = c->parts; p != NULL; p = p->next)
        if (!p->revoked && p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    return NULL;
}

struct msg *kts_cons_msg_append(struct kts_consumer *c, struct part *p, int64_t offset)
{
    struct msg *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->part = p;
    m->im.revoked = &p->revoked;
    m->offset = offset;
    if (p->tail)
        p->tail->next = m;
    else
        p->head = m;
    p->tail = m;
    c->st.inflight_messages++;
    return m;
}

/* A newly assigned partition, put first in c->parts; NULL when out of memory (its messages
 * will then be skipped, hence redelivered later). */
static struct part *part_add(struct kts_consumer *c, const char *topic, int32_t partition)
{
    struct part *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->topic = strdup(topic)) == NULL) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    p->next_offset = -1;
    p->stored = -1;
    p->done = p->flushed = -1;
    p->next = c->parts;
    c->parts = p;
    kts_cons_state_assigned(c, p); /* (13) */
    return p;
}

/* ------------------------------------------------------------------ offsets (2) */

/* Store `list` (may be NULL), count, destroy. */
static void offsets_store_list(struct kts_consumer *c, rd_kafka_topic_partition_list_t *list)
{
    if (list == NULL)
        return;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, list);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        kts_log_limited(&c->rl_err, KTS_LOG_WARNING, "%s: storing offsets: %s", c->where,
                        rd_kafka_err2str(err));
    else
        c->st.offsets_stored += (uint64_t)list->cnt;
    rd_kafka_topic_partition_list_destroy(list);
}

/* (11) Store, for every partition still owned, the offset recorded at the last commit point
 * (flushed = true) or everything done (flushed = false: after the final hook). Lock held. */
static void store_committed(struct kts_consumer *c, bool flushed)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    for (struct part *p = c->parts; p != NULL; p = p->next) {
        int64_t off = flushed ? p->flushed : p->done;
        if (p->revoked || off < 0 || off <= p->stored)
            continue;
        if (list == NULL)
            list = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = off;
        p->stored = off;
    }
    offsets_store_list(c, list);
}

/* Pop done messages; store offsets of non-revoked partitions (with a commit hook: only record
 * them, 11); free empty revoked ones (2, 9). Lock held. */
void kts_cons_store_offsets(struct kts_consumer *c)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    for (struct part **pp = &c->parts; *pp != NULL;) {
        struct part *p = *pp;
        int64_t last = -1;
        while (p->head != NULL && p->head->im.pending == 0) {
            struct msg *m = p->head;
            p->head = m->next;
            if (p->head == NULL)
                p->tail = NULL;
            last = m->offset;
            free(m);
            c->st.inflight_messages--;
        }
        if (last >= 0 && !p->revoked && (c->cb.commit_hook != NULL || c->state != NULL)) {
            p->done = last + 1;
        } else if (last >= 0 && !p->revoked) {
            if (list == NULL)
                list = rd_kafka_topic_partition_list_new(8);
            rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = last + 1;
            p->stored = last + 1;
        }
        if (p->revoked && p->head == NULL) {
            *pp = p->next;
            kts_cons_state_part_free(c, p);
            free(p->topic);
            free(p);
            continue;
        }
        pp = &p->next;
    }
    offsets_store_list(c, list);
}

/* (11) One commit point: store the generation flushed at the previous one, record what is done
 * now, call the hook without the lock. Lock held on entry and on return. */
void kts_cons_commit_point(struct kts_consumer *c, bool final)
{
    kts_cons_store_offsets(c);
    if (c->state == NULL) /* with a state topic: the acknowledged cuts only (15) */
        store_committed(c, true);
    for (struct part *p = c->parts; p != NULL; p = p->next) {
        p->commitable = p->flushed;
        p->flushed = p->done;
    }
    c->st.commit_points++;
    if (c->cb.commit_hook == NULL)
        return;
    pthread_mutex_unlock(&c->lock);
    c->cb.commit_hook(final, c->cb.commit_opaque);
    pthread_mutex_lock(&c->lock);
    if (final && c->state == NULL)
        store_committed(c, false);
}

void kts_cons_parts_free(struct kts_consumer *c)
{
    for (struct part *p = c->parts, *pn; p != NULL; p = pn) {
        pn = p->next;
        for (struct msg *m = p->head, *mn; m != NULL; m = mn) {
            mn = m->next;
            free(m);
        }
        kts_cons_state_part_free(c, p);
        free(p->topic);
        free(p);
    }
    c->parts = NULL;
}

/* ------------------------------------------------------------------ rebalances */

/* Number of partitions currently owned. Lock held. */
static int parts_owned(const struct kts_consumer *c)
{
    int n = 0;
    for (const struct part *p = c->parts; p != NULL; p = p->next)
        n += !p->revoked;
    return n;
}

/* Incremental (cooperative-sticky, or group.protocol "consumer"): only the listed partitions
 * come or go; the others keep flowing (1). Lock held on entry, released on return. */
static void rebalance_incremental(struct kts_consumer *c, rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_error_t *e;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++)
            if (kts_cons_part_find(c, parts->elems[i].topic, parts->elems[i].partition) == NULL)
                part_add(c, parts->elems[i].topic, parts->elems[i].partition);
        kts_log(KTS_LOG_INFO,
                "%s: assigned %d partition(s) "
                "(incremental; %d owned now)",
                c->where, parts->cnt, parts_owned(c));
        pthread_mutex_unlock(&c->lock);
        e = rd_kafka_incremental_assign(rk, parts);
        kts_cons_state_pause(c, rk); /* (13) */
    } else {
        /* Revoke or lost: store what is done for the partitions that go while they are still
         * ours, then forget what of theirs was not dispatched (9). The others are untouched. */
        kts_cons_store_offsets(c);
        kts_cons_state_revoke(c, parts); /* (16) */
        for (int i = 0; i < parts->cnt; i++) {
            struct part *p =
                kts_cons_part_find(c, parts->elems[i].topic, parts->elems[i].partition);
            if (p != NULL)
                p->revoked = true;
        }
        kts_inflight_drop_revoked(&c->inf);
        kts_cons_store_offsets(c);
        kts_log(KTS_LOG_INFO,
                "%s: %d partition(s) %s (incremental; %d "
                "owned now)",
                c->where, parts->cnt, rd_kafka_assignment_lost(rk) ? "lost" : "revoked",
                parts_owned(c));
        pthread_mutex_unlock(&c->lock);
        e = rd_kafka_incremental_unassign(rk, parts);
    }
    if (e != NULL) {
        kts_log(KTS_LOG_ERR, "%s: incremental %s: %s", c->where,
                err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? "assign" : "unassign",
                rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
}

void kts_cons_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct kts_consumer *c = opaque;
    pthread_mutex_lock(&c->lock);
    c->st.rebalances++;
    const char *proto = rd_kafka_rebalance_protocol(rk);
    if (proto != NULL && strcmp(proto, "COOPERATIVE") == 0) {
        rebalance_incremental(c, rk, err, parts);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++)
            part_add(c, parts->elems[i].topic, parts->elems[i].partition);
        kts_log(KTS_LOG_INFO, "%s: assigned %d partition(s)", c->where, parts->cnt);
        pthread_mutex_unlock(&c->lock);
        rd_kafka_assign(rk, parts);
        kts_cons_state_pause(c, rk); /* (13) */
        return;
    }
    /* Revoke (or error): store what is done while we still own the partitions, then forget
     * what was not dispatched. No synchronous commit here: with one, librdkafka 2.0.2 aborted
     * (rdkafka_cgrp.c assertion !rd_kafka_assignment_in_progress) or hung in a close during a
     * rebalance. librdkafka's auto commit commits the stored offsets on unassign. */
    kts_cons_store_offsets(c);      /* (11) with a commit hook: stores nothing (redelivered) */
    kts_cons_state_revoke(c, NULL); /* (16) */
    for (struct part *p = c->parts; p != NULL; p = p->next)
        p->revoked = true;
    kts_inflight_drop_revoked(&c->inf);
    kts_cons_store_offsets(c); /* frees what the drop completed; stores nothing for revoked */
    kts_log(KTS_LOG_INFO, "%s: partitions revoked (%s)", c->where, rd_kafka_err2name(err));
    pthread_mutex_unlock(&c->lock);
    rd_kafka_assign(rk, NULL);
}

/* ------------------------------------------------------------------ lag */

size_t kts_consumer_lag(struct kts_consumer *c, struct kts_consumer_lag *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&c->lock);
    for (struct part *p = c->parts; p != NULL && n < max; p = p->next) {
        if (p->revoked || c->rk == NULL)
            continue;
        int64_t lo = -1, hi = -1;
        out[n].lag = -1;
        if (rd_kafka_get_watermark_offsets(c->rk, p->topic, p->partition, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0 && p->next_offset >= 0)
            out[n].lag = hi > p->next_offset ? hi - p->next_offset : 0;
        snprintf(out[n].topic, sizeof(out[n].topic), "%s", p->topic);
        out[n].partition = p->partition;
        out[n].stored = p->stored;
        n++;
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}
