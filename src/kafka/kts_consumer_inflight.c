/* SPDX-License-Identifier: MIT */
/* kts_consumer_inflight: see kts_consumer_inflight.h; numbers refer to kts_consumer.h. */
#include "kts_consumer_inflight.h"

#include "kts_assert.h"
#include "kts_hash.h"
#include "kts_series.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct kts_inflight_pval {
    struct kts_vl vl; /* deep copy (kts_vl_copy) */
    struct kts_inflight_msg *msg;
    struct kts_inflight_series *series;
    uint64_t token;
    int64_t dispatched_ns;
    struct kts_inflight_pval *next;          /* series queue */
    struct kts_inflight_pval *hnext;         /* token map bucket */
    struct kts_inflight_pval *dprev, *dnext; /* dispatch-order list, for timeouts (10) */
};

struct kts_inflight_series {
    struct kts_inflight_series *hnext;
    uint64_t hash;
    struct kts_inflight_pval *head, *tail; /* queued, sorted by time */
    struct kts_inflight_pval *inflight;
    bool ready_listed;
    struct kts_inflight_series *ready_next;
    size_t key_len;
    char key[];
};

typedef struct kts_inflight_pval pval_t;
typedef struct kts_inflight_series series_t;

void kts_inflight_msg_done(struct kts_inflight_msg *m)
{
    /* Every done value (or dead-letter copy) was counted in `pending` when it was queued: a
     * count already at 0 is a bug, which the old silent clamp hid. Assert builds abort; the
     * others keep the clamp, so a release build never wraps the count around. */
    KTS_ASSERT(m->pending > 0);
    if (m->pending > 0)
        m->pending--;
}

static bool msg_revoked(const struct kts_inflight_msg *m)
{
    return m->revoked != NULL && *m->revoked;
}

/* ------------------------------------------------------------------ series table */

static int stab_grow(struct kts_inflight *f)
{
    size_t cap = f->stab_cap ? f->stab_cap * 2 : 1024;
    series_t **t = calloc(cap, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < f->stab_cap; i++)
        for (series_t *s = f->stab[i], *n; s != NULL; s = n) {
            n = s->hnext;
            size_t b = s->hash & (cap - 1);
            s->hnext = t[b];
            t[b] = s;
        }
    free(f->stab);
    f->stab = t;
    f->stab_cap = cap;
    return 0;
}

static series_t *series_get(struct kts_inflight *f, const struct kts_vl *vl)
{
    /* The library's one series identity and one hash (kts_series.h 7, kts_hash.h). */
    char key[KTS_SERIES_IDENTITY_MAX];
    size_t n = kts_series_identity(key, vl);
    uint64_t h = kts_hash64(key, n, KTS_HASH_SEED);
    if (f->stab_cap) {
        for (series_t *s = f->stab[h & (f->stab_cap - 1)]; s != NULL; s = s->hnext)
            if (s->hash == h && s->key_len == n && memcmp(s->key, key, n) == 0)
                return s;
    }
    if ((f->stab_count + 1) > f->stab_cap && stab_grow(f) < 0)
        return NULL;
    series_t *s = calloc(1, sizeof(*s) + n);
    if (s == NULL)
        return NULL;
    s->hash = h;
    s->key_len = n;
    memcpy(s->key, key, n);
    size_t b = h & (f->stab_cap - 1);
    s->hnext = f->stab[b];
    f->stab[b] = s;
    f->stab_count++;
    return s;
}

/* Remove an idle series (nothing queued, nothing in flight, not on the ready list). */
static void series_remove(struct kts_inflight *f, series_t *s)
{
    series_t **pp = &f->stab[s->hash & (f->stab_cap - 1)];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    f->stab_count--;
    free(s);
}

static void ready_push(struct kts_inflight *f, series_t *s)
{
    if (s->ready_listed)
        return;
    s->ready_listed = true;
    s->ready_next = NULL;
    if (f->ready_tail)
        f->ready_tail->ready_next = s;
    else
        f->ready_head = s;
    f->ready_tail = s;
}

/* Insert in time order, after values of equal time (3). Usually an append. */
static void series_enqueue(series_t *s, pval_t *p)
{
    p->series = s;
    p->next = NULL;
    if (s->tail == NULL) {
        s->head = s->tail = p;
    } else if (s->tail->vl.time <= p->vl.time) {
        s->tail->next = p;
        s->tail = p;
    } else if (p->vl.time < s->head->vl.time) {
        p->next = s->head;
        s->head = p;
    } else {
        pval_t *q = s->head;
        while (q->next != NULL && q->next->vl.time <= p->vl.time)
            q = q->next;
        p->next = q->next;
        q->next = p;
        if (p->next == NULL)
            s->tail = p;
    }
}

/* ------------------------------------------------------------------ tokens */

static void pval_free(struct kts_inflight *f, pval_t *p)
{
    kts_vl_fini(&p->vl);
    free(p);
    f->st->inflight_values--;
}

static void tmap_insert(struct kts_inflight *f, pval_t *p)
{
    size_t b = (size_t)(p->token * 0x9E3779B97F4A7C15ULL >> 20) & (f->tmap_cap - 1);
    p->hnext = f->tmap[b];
    f->tmap[b] = p;
    p->dprev = f->dtail;
    p->dnext = NULL;
    if (f->dtail)
        f->dtail->dnext = p;
    else
        f->dhead = p;
    f->dtail = p;
    f->dispatched_now++;
}

static pval_t *tmap_take(struct kts_inflight *f, uint64_t token)
{
    size_t b = (size_t)(token * 0x9E3779B97F4A7C15ULL >> 20) & (f->tmap_cap - 1);
    for (pval_t **pp = &f->tmap[b]; *pp != NULL; pp = &(*pp)->hnext) {
        pval_t *p = *pp;
        if (p->token == token) {
            *pp = p->hnext;
            if (p->dprev)
                p->dprev->dnext = p->dnext;
            else
                f->dhead = p->dnext;
            if (p->dnext)
                p->dnext->dprev = p->dprev;
            else
                f->dtail = p->dprev;
            f->dispatched_now--;
            return p;
        }
    }
    return NULL;
}

bool kts_inflight_owns(const struct kts_inflight *f, uint64_t token)
{
    return (token & 0xFF00000000000000ULL) == f->instance_bits;
}

/* ------------------------------------------------------------------ ordered dispatch (3) */

/* Dispatch the head of `s` (which has nothing in flight). Drops values of revoked partitions
 * (9). */
static void series_dispatch_next(struct kts_inflight *f, series_t *s)
{
    while ((s->inflight == NULL || !f->ordered) && s->head != NULL && !f->draining) {
        pval_t *p = s->head;
        s->head = p->next;
        if (s->head == NULL)
            s->tail = NULL;
        if (msg_revoked(p->msg)) {
            f->st->dropped_revoked++;
            kts_inflight_msg_done(p->msg);
            pval_free(f, p);
            continue;
        }
        p->token = f->instance_bits | (++f->next_seq & 0x00FFFFFFFFFFFFFFULL);
        p->dispatched_ns = kts_inflight_now_ns();
        if (f->ordered)
            s->inflight = p;
        else
            p->series = NULL; /* OrderedDispatch false: the series may go while p is out */
        tmap_insert(f, p);
        f->st->dispatched++;
        int rc = f->dispatch(&p->vl, p->token, f->dispatch_opaque);
        if (rc == KTS_DISPATCH_SKIPPED) { /* the sinks already have it: done */
            f->st->dispatched--;
            f->st->skipped++;
        } else if (rc < 0) {
            f->st->dispatch_failed++;
            kts_log_limited(&f->rl_dispatch, KTS_LOG_ERR,
                            "%s: dispatch failed (%s): a value of %s/%s/%s "
                            "is lost",
                            f->where, strerror(-rc), p->vl.host, p->vl.plugin, p->vl.type);
        }
        if (rc < 0 || rc == KTS_DISPATCH_SKIPPED) {
            tmap_take(f, p->token);
            if (f->ordered)
                s->inflight = NULL;
            kts_inflight_msg_done(p->msg);
            pval_free(f, p);
        }
    }
    if (s->inflight == NULL && s->head == NULL && !s->ready_listed)
        series_remove(f, s);
}

void kts_inflight_pump(struct kts_inflight *f)
{
    while (f->ready_head != NULL && !f->draining) {
        series_t *s = f->ready_head;
        f->ready_head = s->ready_next;
        if (f->ready_head == NULL)
            f->ready_tail = NULL;
        s->ready_listed = false;
        series_dispatch_next(f, s);
    }
}

/* The value `p` (already out of the token map) is done. */
static void value_done(struct kts_inflight *f, pval_t *p)
{
    series_t *s = p->series;
    kts_inflight_msg_done(p->msg);
    pval_free(f, p);
    if (s != NULL) {
        s->inflight = NULL;
        if (!s->ready_listed)
            series_dispatch_next(f, s);
    }
    if (f->done_cond != NULL)
        pthread_cond_broadcast(f->done_cond);
}

int kts_inflight_written(struct kts_inflight *f, uint64_t token)
{
    pval_t *p = f->tmap ? tmap_take(f, token) : NULL;
    if (p == NULL)
        return -ENOENT;
    f->st->written++;
    value_done(f, p);
    return 0;
}

void kts_inflight_expire(struct kts_inflight *f, int64_t now_ns)
{
    int64_t limit = now_ns - (int64_t)(f->write_timeout * 1e9);
    while (f->dhead != NULL && f->dhead->dispatched_ns < limit) {
        pval_t *p = tmap_take(f, f->dhead->token);
        f->st->unconfirmed++;
        kts_log_limited(&f->rl_timeout, KTS_LOG_WARNING,
                        "%s: a value of %s/%s/%s was dispatched %.0f s ago "
                        "and never reached the write path (a filter chain dropping it, or "
                        "WriteQueueLimitHigh?); counting it as done",
                        f->where, p->vl.host, p->vl.plugin, p->vl.type, f->write_timeout);
        value_done(f, p);
    }
}

/* ------------------------------------------------------------------ queueing and revokes */

int kts_inflight_add(struct kts_inflight *f, struct kts_vl *vl, struct kts_inflight_msg *m)
{
    pval_t *pv = calloc(1, sizeof(*pv));
    series_t *s = pv ? series_get(f, vl) : NULL;
    if (s == NULL) {
        free(pv);
        return -ENOMEM;
    }
    pv->vl = *vl; /* moves ownership */
    pv->msg = m;
    m->pending++;
    f->st->inflight_values++;
    series_enqueue(s, pv);
    if (s->inflight == NULL)
        ready_push(f, s);
    return 0;
}

void kts_inflight_drop_revoked(struct kts_inflight *f)
{
    for (size_t b = 0; b < f->stab_cap; b++) {
        for (series_t *s = f->stab[b], *sn; s != NULL; s = sn) {
            sn = s->hnext;
            pval_t **pp = &s->head;
            s->tail = NULL;
            while (*pp != NULL) {
                pval_t *p = *pp;
                if (msg_revoked(p->msg)) {
                    *pp = p->next;
                    f->st->dropped_revoked++;
                    kts_inflight_msg_done(p->msg);
                    pval_free(f, p);
                } else {
                    s->tail = p;
                    pp = &p->next;
                }
            }
            if (s->head == NULL && s->inflight == NULL && !s->ready_listed)
                series_remove(f, s);
        }
    }
}

/* ------------------------------------------------------------------ life cycle */

int kts_inflight_init(struct kts_inflight *f, size_t max_values)
{
    f->rl_timeout.interval_s = f->rl_dispatch.interval_s = 10;
    f->tmap_cap = 1024;
    while (f->tmap_cap < max_values && f->tmap_cap < (1u << 20))
        f->tmap_cap *= 2;
    f->tmap = calloc(f->tmap_cap, sizeof(*f->tmap));
    return f->tmap == NULL ? -ENOMEM : 0;
}

void kts_inflight_fini(struct kts_inflight *f)
{
    for (size_t b = 0; b < f->stab_cap; b++)
        for (series_t *s = f->stab[b], *sn; s != NULL; s = sn) {
            sn = s->hnext;
            for (pval_t *p = s->head, *pn; p != NULL; p = pn) {
                pn = p->next;
                kts_vl_fini(&p->vl);
                free(p);
            }
            free(s);
        }
    /* Dispatched values (a series' `inflight`, or any with OrderedDispatch false). */
    for (pval_t *p = f->dhead, *pn; p != NULL; p = pn) {
        pn = p->dnext;
        kts_vl_fini(&p->vl);
        free(p);
    }
    f->dhead = f->dtail = NULL;
    free(f->stab);
    f->stab = NULL;
    f->stab_cap = f->stab_count = 0;
    free(f->tmap);
    f->tmap = NULL;
}
