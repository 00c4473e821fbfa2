/* SPDX-License-Identifier: MIT */
/* kts_consumer: see kts_consumer.h for the guarantees (numbers below refer to them).
 *
 * Bookkeeping, all under one mutex (c->lock):
 *   part    an assigned partition: FIFO of its in-flight messages in offset order (2)
 *   msg     one consumed message: number of its values not yet done
 *   pval    one value list to dispatch: in its series' queue, then in flight (token map)
 *   series  per output series: queue sorted by time + at most one value in flight (3)
 * A value is done when its token comes back through kts_consumer_written() (or times out, 10);
 * a message is done when all its values are; a partition's stored offset advances over the
 * done prefix of its FIFO only.
 */
#include "kts_consumer.h"

#include "build-config.h"
#include "kts_array.h"
#include "kts_format.h"
#include "kts_log.h"
#include "kts_rdkprops.h"
#include "kts_rdkver.h"
#include "kts_secret.h"
#include "kts_typesdb.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------ options */

static const char *const start_words[] = {"earliest", "latest", NULL};

/* Is this librdkafka property's value a secret (never logged, masked in librdkafka's lines)? */
static bool property_is_secret(const char *key)
{
    return kts_rdkprops_is_secret(key);
}

/* What read_kafka_ts refuses after librdkafka accepted the pair. */
static int property_extra(const char *key, const char *value, const char *where)
{
    char lim[768];
    const char *bug;
    /* What the linked librdkafka can do (kts_rdkver.h, docs/LIBRDKAFKA.md). */
    if (strcasecmp(key, "partition.assignment.strategy") == 0 && strstr(value, "cooperative") &&
        (bug = kts_rdk_limit(KTS_RDK_COOPERATIVE, lim, sizeof(lim))) != NULL) {
        kts_log(KTS_LOG_ERR,
                "%s: Property \"partition.assignment.strategy\" \"%s\" is refused: "
                "%s; use \"range\", \"roundrobin\" or both, or librdkafka %s or later",
                where, value, bug, kts_rdk_since(KTS_RDK_COOPERATIVE));
        return -EINVAL;
    }
    if (strcasecmp(key, "group.protocol") == 0 && strcasecmp(value, "consumer") == 0 &&
        (bug = kts_rdk_limit(KTS_RDK_KIP848, lim, sizeof(lim))) != NULL) {
        kts_log(KTS_LOG_ERR,
                "%s: Property \"group.protocol\" \"consumer\" is refused: %s; use "
                "\"classic\" (the default), or librdkafka %s or later",
                where, bug, kts_rdk_since(KTS_RDK_KIP848));
        return -EINVAL;
    }
    if (strcasecmp(key, "enable.auto.offset.store") == 0 || strcasecmp(key, "group.id") == 0 ||
        strcasecmp(key, "enable.auto.commit") == 0) {
        kts_log(KTS_LOG_ERR,
                "%s: Property \"%s\" is set by the plugin (at-least-once delivery "
                "depends on it); use GroupId for the group",
                where, key);
        return -EINVAL;
    }
    return 0;
}

/* Property "key" "value" and PropertyFile "key" "/path/to/file" (the value read from the file,
 * for secrets: see kts_secret.h): kts_rdkprops_option(), shared with write_kafka_ts. */
static int property_option(const struct kts_opt *opt, void *obj, const struct kts_conf *item,
                           const char *where)
{
    struct kts_consumer_config *cfg = obj;
    return kts_rdkprops_option(opt, item, where, &cfg->properties, property_extra);
}

#define OFF(f) offsetof(struct kts_consumer_config, f)
const struct kts_opt kts_consumer_options[] = {
    {"GroupId", KTS_OPT_STRING, OFF(group_id), NULL, 0, 0, NULL, NULL, KTS_OPT_REQUIRED,
     "consumer group (group.id); aggregators sharing it share the partitions"},
    {"Topic", KTS_OPT_STRINGS, OFF(topics), NULL, 0, 0, NULL, NULL, KTS_OPT_REQUIRED,
     "topic to consume (repeatable); a name starting with ^ is a regular expression"},
    {"StartPosition", KTS_OPT_ENUM, OFF(start_position), "earliest", 0, 0, start_words, NULL, 0,
     "where a group without committed offsets starts: earliest or latest (auto.offset.reset)"},
    {"DeadLetterTopic", KTS_OPT_STRING, OFF(dead_letter_topic), NULL, 0, 0, NULL, NULL, 0,
     "topic that receives a copy of every undecodable message (default: none)"},
    {"Property", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, property_option, 0,
     "any librdkafka property, e.g. Property \"bootstrap.servers\" \"host:9092\" (repeatable)"},
    {"PropertyFile", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, property_option, 0,
     "a librdkafka property whose value is read from a file (for secrets; repeatable)"},
    {"TypesDB", KTS_OPT_STRINGS, OFF(typesdb), NULL, 0, 0, NULL, NULL, 0,
     "types.db file(s) to validate value lists against (default: " KTS_TYPESDB_DEFAULT ")"},
    {"MaxInFlightMessages", KTS_OPT_INT, OFF(max_inflight_messages), "10000", 1, 10000000, NULL,
     NULL, 0, "most messages consumed but not yet completely written"},
    {"MaxInFlightValues", KTS_OPT_INT, OFF(max_inflight_values), "50000", 1, 10000000, NULL, NULL,
     0, "most value lists consumed but not yet written (queued or dispatched)"},
    {"BatchSize", KTS_OPT_INT, OFF(batch_size), "1000", 1, 100000, NULL, NULL, 0,
     "most messages taken from librdkafka per poll"},
    {"WriteTimeout", KTS_OPT_DURATION, OFF(write_timeout), "60", 1, 86400, NULL, NULL, 0,
     "seconds after which a dispatched value never seen by the write path counts as done"},
    {"DrainTimeout", KTS_OPT_DURATION, OFF(drain_timeout), "10", 0, 3600, NULL, NULL, 0,
     "seconds shutdown waits for dispatched values to be written"},
    {"CloseTimeout", KTS_OPT_DURATION, OFF(close_timeout), "10", 0, 3600, NULL, NULL, 0,
     "seconds shutdown waits for the group to take the partitions back"},
    {"OrderedDispatch", KTS_OPT_BOOL, OFF(ordered), "true", 0, 0, NULL, NULL, 0,
     "at most one value per series between dispatch and the write path, in time order (false "
     "only to measure what collectd's write threads do without it)"},
    {"OutputHostPrefix", KTS_OPT_STRING, OFF(host_prefix), NULL, 0, 0, NULL, NULL, 0,
     "prepended to the host of every dispatched value list"},
    {"OutputHostSuffix", KTS_OPT_STRING, OFF(host_suffix), NULL, 0, 0, NULL, NULL, 0,
     "appended to the host of every dispatched value list"},
    {"OutputPluginInstanceSuffix", KTS_OPT_STRING, OFF(plugin_instance_suffix), NULL, 0, 0, NULL,
     NULL, 0, "appended to the plugin instance of every dispatched value list"},
    {"Instance", KTS_OPT_STRING, OFF(name), NULL, 0, 0, NULL, NULL, 0,
     "name in log lines and self-metrics (default: the group id)"},
    KTS_OPT_END,
};
#undef OFF

void kts_consumer_config_free(struct kts_consumer_config *cfg)
{
    /* Wipe property values: some are secrets. */
    for (size_t i = 1; i < cfg->properties.n; i += 2)
        memset(cfg->properties.v[i], 0, strlen(cfg->properties.v[i]));
    kts_opt_free(kts_consumer_options, cfg);
    kts_strv_free(&cfg->properties);
}

/* ------------------------------------------------------------------ naming (7) */

static int append(char *dst, const char *pre, const char *suf)
{
    size_t lp = pre ? strlen(pre) : 0, ld = strlen(dst), ls = suf ? strlen(suf) : 0;
    if (lp + ld + ls > KTS_NAME_MAX - 1)
        return -ENAMETOOLONG;
    memmove(dst + lp, dst, ld + 1);
    if (lp)
        memcpy(dst, pre, lp);
    if (ls)
        memcpy(dst + lp + ld, suf, ls + 1);
    return 0;
}

int kts_consumer_apply_naming(const struct kts_consumer_config *cfg, struct kts_vl *vl)
{
    /* A suffix appended to an empty name loses its leading separators (kts_name_suffix). */
    const char *hp = cfg->host_prefix;
    const char *hs = kts_name_suffix(hp != NULL && hp[0] != '\0' ? hp : vl->host, cfg->host_suffix);
    const char *ps = kts_name_suffix(vl->plugin_instance, cfg->plugin_instance_suffix);
    size_t lh = strlen(vl->host) + (hp ? strlen(hp) : 0) + (hs ? strlen(hs) : 0);
    size_t lpi = strlen(vl->plugin_instance) + (ps ? strlen(ps) : 0);
    if (lh > KTS_NAME_MAX - 1 || lpi > KTS_NAME_MAX - 1)
        return -ENAMETOOLONG;
    append(vl->host, hp, hs);
    append(vl->plugin_instance, NULL, ps);
    return 0;
}

/* ------------------------------------------------------------------ bookkeeping types */

struct part;

struct msg {
    struct part *part;
    int64_t offset;
    uint32_t pending; /* values (or the dead-letter copy) not yet done */
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
};

struct series;

struct pval {
    struct kts_vl vl; /* deep copy (kts_vl_copy) */
    struct msg *msg;
    struct series *series;
    uint64_t token;
    int64_t dispatched_ns;
    struct pval *next;          /* series queue */
    struct pval *hnext;         /* token map bucket */
    struct pval *dprev, *dnext; /* dispatch-order list, for timeouts (10) */
};

struct series {
    struct series *hnext;
    uint64_t hash;
    struct pval *head, *tail; /* queued, sorted by time */
    struct pval *inflight;
    bool ready_listed;
    struct series *ready_next;
    size_t key_len;
    char key[];
};

struct kts_consumer {
    struct kts_consumer_config cfg; /* only the scalar fields and naming strings are used */
    char *name;
    char *host_prefix, *host_suffix, *pi_suffix;
    struct kts_consumer_callbacks cb;
    uint64_t instance_bits;

    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    rd_kafka_t *dlq; /* dead-letter producer, or NULL */
    char *dlq_topic;
    struct kts_typesdb *types;
    struct kts_decoder *decoder;
    struct kts_strv secrets; /* secret property values, masked in librdkafka's lines */

    pthread_mutex_t lock;
    pthread_cond_t cond; /* room freed, value confirmed, run() ended */
    bool stop, draining, running;

    struct part *parts;
    struct series **stab;
    size_t stab_cap, stab_count;
    struct series *ready_head, *ready_tail;
    struct pval **tmap; /* token → dispatched pval */
    size_t tmap_cap;
    struct pval *dhead, *dtail;
    uint64_t next_seq;
    uint64_t dispatched_now;

    struct kts_consumer_stats st;
    struct kts_ratelimit rl_bad, rl_err, rl_timeout, rl_dispatch, rl_dlq;
    struct kts_ratelimit rl_kafka[KTS_RDK_LIMITERS]; /* librdkafka error events, by kind */

    /* per-message scratch, consumer thread only */
    struct kts_vl *scratch;
    size_t scratch_n, scratch_cap;
    char scratch_err[512];
    uint64_t scratch_values; /* decoded by the consumer thread, added to st.values under lock */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------ series table */

/* The series identity: the five names, each with its NUL. */
static size_t series_key(const struct kts_vl *vl, char *buf)
{
    size_t n = 0;
    const char *f[5] = {vl->host, vl->plugin, vl->plugin_instance, vl->type, vl->type_instance};
    for (int i = 0; i < 5; i++) {
        size_t l = strlen(f[i]) + 1;
        memcpy(buf + n, f[i], l);
        n += l;
    }
    return n;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int stab_grow(struct kts_consumer *c)
{
    size_t cap = c->stab_cap ? c->stab_cap * 2 : 1024;
    struct series **t = calloc(cap, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < c->stab_cap; i++)
        for (struct series *s = c->stab[i], *n; s != NULL; s = n) {
            n = s->hnext;
            size_t b = s->hash & (cap - 1);
            s->hnext = t[b];
            t[b] = s;
        }
    free(c->stab);
    c->stab = t;
    c->stab_cap = cap;
    return 0;
}

static struct series *series_get(struct kts_consumer *c, const struct kts_vl *vl)
{
    char key[5 * KTS_NAME_MAX];
    size_t n = series_key(vl, key);
    uint64_t h = hash_bytes(key, n);
    if (c->stab_cap) {
        for (struct series *s = c->stab[h & (c->stab_cap - 1)]; s != NULL; s = s->hnext)
            if (s->hash == h && s->key_len == n && memcmp(s->key, key, n) == 0)
                return s;
    }
    if ((c->stab_count + 1) > c->stab_cap && stab_grow(c) < 0)
        return NULL;
    struct series *s = calloc(1, sizeof(*s) + n);
    if (s == NULL)
        return NULL;
    s->hash = h;
    s->key_len = n;
    memcpy(s->key, key, n);
    size_t b = h & (c->stab_cap - 1);
    s->hnext = c->stab[b];
    c->stab[b] = s;
    c->stab_count++;
    return s;
}

/* Remove an idle series (nothing queued, nothing in flight, not on the ready list). */
static void series_remove(struct kts_consumer *c, struct series *s)
{
    struct series **pp = &c->stab[s->hash & (c->stab_cap - 1)];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    c->stab_count--;
    free(s);
}

static void ready_push(struct kts_consumer *c, struct series *s)
{
    if (s->ready_listed)
        return;
    s->ready_listed = true;
    s->ready_next = NULL;
    if (c->ready_tail)
        c->ready_tail->ready_next = s;
    else
        c->ready_head = s;
    c->ready_tail = s;
}

/* Insert in time order, after values of equal time (3). Usually an append. */
static void series_enqueue(struct series *s, struct pval *p)
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
        struct pval *q = s->head;
        while (q->next != NULL && q->next->vl.time <= p->vl.time)
            q = q->next;
        p->next = q->next;
        q->next = p;
        if (p->next == NULL)
            s->tail = p;
    }
}

/* ------------------------------------------------------------------ done accounting */

static void msg_value_done(struct kts_consumer *c, struct msg *m)
{
    (void)c;
    if (m->pending > 0)
        m->pending--;
}

static void pval_free(struct kts_consumer *c, struct pval *p)
{
    kts_vl_fini(&p->vl);
    free(p);
    c->st.inflight_values--;
}

static void tmap_insert(struct kts_consumer *c, struct pval *p)
{
    size_t b = (size_t)(p->token * 0x9E3779B97F4A7C15ULL >> 20) & (c->tmap_cap - 1);
    p->hnext = c->tmap[b];
    c->tmap[b] = p;
    p->dprev = c->dtail;
    p->dnext = NULL;
    if (c->dtail)
        c->dtail->dnext = p;
    else
        c->dhead = p;
    c->dtail = p;
    c->dispatched_now++;
}

static struct pval *tmap_take(struct kts_consumer *c, uint64_t token)
{
    size_t b = (size_t)(token * 0x9E3779B97F4A7C15ULL >> 20) & (c->tmap_cap - 1);
    for (struct pval **pp = &c->tmap[b]; *pp != NULL; pp = &(*pp)->hnext) {
        struct pval *p = *pp;
        if (p->token == token) {
            *pp = p->hnext;
            if (p->dprev)
                p->dprev->dnext = p->dnext;
            else
                c->dhead = p->dnext;
            if (p->dnext)
                p->dnext->dprev = p->dprev;
            else
                c->dtail = p->dprev;
            c->dispatched_now--;
            return p;
        }
    }
    return NULL;
}

/* Dispatch the head of `s` (which has nothing in flight). Drops values of revoked partitions
 * (9). Called with the lock held. */
static void series_dispatch_next(struct kts_consumer *c, struct series *s)
{
    while ((s->inflight == NULL || !c->cfg.ordered) && s->head != NULL && !c->draining) {
        struct pval *p = s->head;
        s->head = p->next;
        if (s->head == NULL)
            s->tail = NULL;
        if (p->msg->part->revoked) {
            c->st.dropped_revoked++;
            msg_value_done(c, p->msg);
            pval_free(c, p);
            continue;
        }
        p->token = c->instance_bits | (++c->next_seq & 0x00FFFFFFFFFFFFFFULL);
        p->dispatched_ns = now_ns();
        if (c->cfg.ordered)
            s->inflight = p;
        else
            p->series = NULL; /* OrderedDispatch false: the series may go while p is out */
        tmap_insert(c, p);
        c->st.dispatched++;
        int rc = c->cb.dispatch(&p->vl, p->token, c->cb.dispatch_opaque);
        if (rc == KTS_DISPATCH_SKIPPED) { /* the sinks already have it: done */
            c->st.dispatched--;
            c->st.skipped++;
        } else if (rc < 0) {
            c->st.dispatch_failed++;
            kts_log_limited(&c->rl_dispatch, KTS_LOG_ERR,
                            "read_kafka_ts plugin (%s): dispatch failed (%s): a value of %s/%s/%s "
                            "is lost",
                            c->name, strerror(-rc), p->vl.host, p->vl.plugin, p->vl.type);
        }
        if (rc < 0 || rc == KTS_DISPATCH_SKIPPED) {
            tmap_take(c, p->token);
            if (c->cfg.ordered)
                s->inflight = NULL;
            msg_value_done(c, p->msg);
            pval_free(c, p);
        }
    }
    if (s->inflight == NULL && s->head == NULL && !s->ready_listed)
        series_remove(c, s);
}

static void pump_ready(struct kts_consumer *c)
{
    while (c->ready_head != NULL && !c->draining) {
        struct series *s = c->ready_head;
        c->ready_head = s->ready_next;
        if (c->ready_head == NULL)
            c->ready_tail = NULL;
        s->ready_listed = false;
        series_dispatch_next(c, s);
    }
}

/* The value `p` (already out of the token map) is done. Lock held. */
static void value_done(struct kts_consumer *c, struct pval *p)
{
    struct series *s = p->series;
    msg_value_done(c, p->msg);
    pval_free(c, p);
    if (s != NULL) {
        s->inflight = NULL;
        if (!s->ready_listed)
            series_dispatch_next(c, s);
    }
    pthread_cond_broadcast(&c->cond);
}

int kts_consumer_written(struct kts_consumer *c, uint64_t token)
{
    pthread_mutex_lock(&c->lock);
    struct pval *p = c->tmap ? tmap_take(c, token) : NULL;
    if (p == NULL) {
        pthread_mutex_unlock(&c->lock);
        return -ENOENT;
    }
    c->st.written++;
    value_done(c, p);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

bool kts_consumer_owns(const struct kts_consumer *c, uint64_t token)
{
    return (token & 0xFF00000000000000ULL) == c->instance_bits;
}

static void check_timeouts(struct kts_consumer *c)
{
    int64_t limit = now_ns() - (int64_t)(c->cfg.write_timeout * 1e9);
    while (c->dhead != NULL && c->dhead->dispatched_ns < limit) {
        struct pval *p = tmap_take(c, c->dhead->token);
        c->st.unconfirmed++;
        kts_log_limited(&c->rl_timeout, KTS_LOG_WARNING,
                        "read_kafka_ts plugin (%s): a value of %s/%s/%s was dispatched %.0f s ago "
                        "and never reached the write path (a filter chain dropping it, or "
                        "WriteQueueLimitHigh?); counting it as done",
                        c->name, p->vl.host, p->vl.plugin, p->vl.type, c->cfg.write_timeout);
        value_done(c, p);
    }
}

/* ------------------------------------------------------------------ partitions and offsets */

static struct part *part_find(struct kts_consumer *c, const char *topic, int32_t partition)
{
    for (struct part *p = c->parts; p != NULL; p = p->next)
        if (!p->revoked && p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    return NULL;
}

/* Store `list` (may be NULL), count, destroy. */
static void offsets_store_list(struct kts_consumer *c, rd_kafka_topic_partition_list_t *list)
{
    if (list == NULL)
        return;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, list);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        kts_log_limited(&c->rl_err, KTS_LOG_WARNING,
                        "read_kafka_ts plugin (%s): storing offsets: %s", c->name,
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
static void store_offsets(struct kts_consumer *c)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    for (struct part **pp = &c->parts; *pp != NULL;) {
        struct part *p = *pp;
        int64_t last = -1;
        while (p->head != NULL && p->head->pending == 0) {
            struct msg *m = p->head;
            p->head = m->next;
            if (p->head == NULL)
                p->tail = NULL;
            last = m->offset;
            free(m);
            c->st.inflight_messages--;
        }
        if (last >= 0 && !p->revoked && c->cb.commit_hook != NULL) {
            p->done = last + 1;
        } else if (last >= 0 && !p->revoked) {
            if (list == NULL)
                list = rd_kafka_topic_partition_list_new(8);
            rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = last + 1;
            p->stored = last + 1;
        }
        if (p->revoked && p->head == NULL) {
            *pp = p->next;
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
static void commit_point(struct kts_consumer *c, bool final)
{
    store_offsets(c);
    store_committed(c, true);
    for (struct part *p = c->parts; p != NULL; p = p->next)
        p->flushed = p->done;
    c->st.commit_points++;
    pthread_mutex_unlock(&c->lock);
    c->cb.commit_hook(final, c->cb.commit_opaque);
    pthread_mutex_lock(&c->lock);
    if (final)
        store_committed(c, false);
}

/* Drop queued (not dispatched) values of revoked partitions (9). Lock held. */
static void drop_revoked(struct kts_consumer *c)
{
    for (size_t b = 0; b < c->stab_cap; b++) {
        for (struct series *s = c->stab[b], *sn; s != NULL; s = sn) {
            sn = s->hnext;
            struct pval **pp = &s->head;
            s->tail = NULL;
            while (*pp != NULL) {
                struct pval *p = *pp;
                if (p->msg->part->revoked) {
                    *pp = p->next;
                    c->st.dropped_revoked++;
                    msg_value_done(c, p->msg);
                    pval_free(c, p);
                } else {
                    s->tail = p;
                    pp = &p->next;
                }
            }
            if (s->head == NULL && s->inflight == NULL && !s->ready_listed)
                series_remove(c, s);
        }
    }
}

/* Number of partitions currently owned. Lock held. */
static int parts_owned(const struct kts_consumer *c)
{
    int n = 0;
    for (const struct part *p = c->parts; p != NULL; p = p->next)
        n += !p->revoked;
    return n;
}

/* Incremental (cooperative-sticky, or group.protocol "consumer"): only the listed partitions
 * come or go; the others keep flowing (1). */
static void rebalance_incremental(struct kts_consumer *c, rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_error_t *e;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            if (part_find(c, parts->elems[i].topic, parts->elems[i].partition) != NULL)
                continue;
            struct part *p = calloc(1, sizeof(*p));
            if (p == NULL || (p->topic = strdup(parts->elems[i].topic)) == NULL) {
                free(p);
                continue; /* its messages will be skipped, hence redelivered later */
            }
            p->partition = parts->elems[i].partition;
            p->next_offset = -1;
            p->stored = -1;
            p->done = p->flushed = -1;
            p->next = c->parts;
            c->parts = p;
        }
        kts_log(KTS_LOG_INFO,
                "read_kafka_ts plugin (%s): assigned %d partition(s) "
                "(incremental; %d owned now)",
                c->name, parts->cnt, parts_owned(c));
        pthread_mutex_unlock(&c->lock);
        e = rd_kafka_incremental_assign(rk, parts);
    } else {
        /* Revoke or lost: store what is done for the partitions that go while they are still
         * ours, then forget what of theirs was not dispatched (9). The others are untouched. */
        store_offsets(c);
        for (int i = 0; i < parts->cnt; i++) {
            struct part *p = part_find(c, parts->elems[i].topic, parts->elems[i].partition);
            if (p != NULL)
                p->revoked = true;
        }
        drop_revoked(c);
        store_offsets(c);
        kts_log(KTS_LOG_INFO,
                "read_kafka_ts plugin (%s): %d partition(s) %s (incremental; %d "
                "owned now)",
                c->name, parts->cnt, rd_kafka_assignment_lost(rk) ? "lost" : "revoked",
                parts_owned(c));
        pthread_mutex_unlock(&c->lock);
        e = rd_kafka_incremental_unassign(rk, parts);
    }
    if (e != NULL) {
        kts_log(KTS_LOG_ERR, "read_kafka_ts plugin (%s): incremental %s: %s", c->name,
                err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? "assign" : "unassign",
                rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
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
        for (int i = 0; i < parts->cnt; i++) {
            struct part *p = calloc(1, sizeof(*p));
            if (p == NULL || (p->topic = strdup(parts->elems[i].topic)) == NULL) {
                free(p);
                continue; /* its messages will be skipped, hence redelivered later */
            }
            p->partition = parts->elems[i].partition;
            p->next_offset = -1;
            p->stored = -1;
            p->done = p->flushed = -1;
            p->next = c->parts;
            c->parts = p;
        }
        kts_log(KTS_LOG_INFO, "read_kafka_ts plugin (%s): assigned %d partition(s)", c->name,
                parts->cnt);
        pthread_mutex_unlock(&c->lock);
        rd_kafka_assign(rk, parts);
        return;
    }
    /* Revoke (or error): store what is done while we still own the partitions, then forget
     * what was not dispatched. No synchronous commit here: with one, librdkafka 2.0.2 aborted
     * (rdkafka_cgrp.c assertion !rd_kafka_assignment_in_progress) or hung in a close during a
     * rebalance. librdkafka's auto commit commits the stored offsets on unassign. */
    store_offsets(c); /* (11) with a commit hook: stores nothing (redelivered to the new owner) */
    for (struct part *p = c->parts; p != NULL; p = p->next)
        p->revoked = true;
    drop_revoked(c);
    store_offsets(c); /* frees what the drop completed; stores nothing for revoked parts */
    kts_log(KTS_LOG_INFO, "read_kafka_ts plugin (%s): partitions revoked (%s)", c->name,
            rd_kafka_err2name(err));
    pthread_mutex_unlock(&c->lock);
    rd_kafka_assign(rk, NULL);
}

/* ------------------------------------------------------------------ messages */

static int emit_cb(const struct kts_vl *vl, void *ctx)
{
    struct kts_consumer *c = ctx;
    if (KTS_ARRAY_GROW(c->scratch, c->scratch_cap, c->scratch_n + 1) != 0)
        return -ENOMEM;
    struct kts_vl *dst = &c->scratch[c->scratch_n];
    int rc = kts_vl_copy(dst, vl);
    if (rc < 0)
        return rc;
    c->scratch_n++;
    rc = kts_consumer_apply_naming(&c->cfg, dst);
    if (rc < 0)
        snprintf(c->scratch_err, sizeof(c->scratch_err),
                 "output name too long for %s/%s/%s with the configured prefix/suffix", vl->host,
                 vl->plugin, vl->type);
    return rc;
}

static int decode_cb(struct kts_vl *vl, void *opaque)
{
    struct kts_consumer *c = opaque;
    int rc = kts_typesdb_check(c->types, vl, c->scratch_err, sizeof(c->scratch_err));
    if (rc < 0)
        return rc;
    c->scratch_values++;
    if (c->cb.pipeline == NULL)
        return emit_cb(vl, c);
    rc = c->cb.pipeline(vl, emit_cb, c, c->cb.pipeline_opaque);
    if (rc < 0 && c->scratch_err[0] == '\0')
        snprintf(c->scratch_err, sizeof(c->scratch_err), "pipeline: %s", strerror(-rc));
    return rc;
}

static void scratch_clear(struct kts_consumer *c)
{
    for (size_t i = 0; i < c->scratch_n; i++)
        kts_vl_fini(&c->scratch[i]);
    c->scratch_n = 0;
}

static void on_dlq_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct kts_consumer *c = opaque;
    struct msg *msg = m->_private;
    pthread_mutex_lock(&c->lock);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        c->st.dead_lettered++;
    } else {
        c->st.dead_letter_failed++;
        kts_log_limited(&c->rl_dlq, KTS_LOG_ERR,
                        "read_kafka_ts plugin (%s): copy to dead-letter topic \"%s\" failed: %s; "
                        "the bad message is skipped",
                        c->name, c->dlq_topic, rd_kafka_err2str(m->err));
    }
    msg_value_done(c, msg);
    pthread_mutex_unlock(&c->lock);
}

/* A bad message (5): m->pending is 0 unless the dead-letter copy is under way. Lock held. */
static void bad_message(struct kts_consumer *c, const rd_kafka_message_t *km, struct msg *m,
                        const char *why)
{
    c->st.decode_errors++;
    const char *topic = rd_kafka_topic_name(km->rkt);
    kts_log_limited(&c->rl_bad, KTS_LOG_WARNING,
                    "read_kafka_ts plugin (%s): bad message at %s [%d] offset %lld (%zu bytes): %s",
                    c->name, topic, (int)km->partition, (long long)km->offset, km->len, why);
    if (c->dlq == NULL)
        return;
    char part[16], off[24];
    snprintf(part, sizeof(part), "%d", (int)km->partition);
    snprintf(off, sizeof(off), "%lld", (long long)km->offset);
    m->pending++;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        c->dlq, RD_KAFKA_V_TOPIC(c->dlq_topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(km->key, km->key_len), RD_KAFKA_V_VALUE(km->payload, km->len),
        RD_KAFKA_V_HEADER("kts.source.topic", topic, -1),
        RD_KAFKA_V_HEADER("kts.source.partition", part, -1),
        RD_KAFKA_V_HEADER("kts.source.offset", off, -1), RD_KAFKA_V_HEADER("kts.error", why, -1),
        RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        m->pending--;
        c->st.dead_letter_failed++;
        kts_log_limited(&c->rl_dlq, KTS_LOG_ERR,
                        "read_kafka_ts plugin (%s): cannot copy to dead-letter topic \"%s\": %s",
                        c->name, c->dlq_topic, rd_kafka_err2str(err));
    }
}

static void handle_message(struct kts_consumer *c, rd_kafka_message_t *km)
{
    if (km->err) {
        if (km->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            kts_log_limited(&c->rl_err, KTS_LOG_WARNING, "read_kafka_ts plugin (%s): consumer: %s",
                            c->name, rd_kafka_message_errstr(km));
        return;
    }
    /* Decode and run the pipeline without the lock: scratch is this thread's. */
    c->scratch_err[0] = '\0';
    scratch_clear(c);
    char errbuf[512] = "";
    int rc = kts_decoder_decode(c->decoder, km->payload ? km->payload : "", km->len, NULL,
                                decode_cb, c, errbuf, sizeof(errbuf));
    const char *why = c->scratch_err[0] ? c->scratch_err : errbuf[0] ? errbuf : NULL;
    char whybuf[64];
    if (rc < 0 && why == NULL) {
        snprintf(whybuf, sizeof(whybuf), "%s", strerror(-rc));
        why = whybuf;
    }

    pthread_mutex_lock(&c->lock);
    c->st.messages++;
    c->st.values += c->scratch_values; /* counted without the lock (ThreadSanitizer) */
    c->scratch_values = 0;
    struct part *p = part_find(c, rd_kafka_topic_name(km->rkt), km->partition);
    if (p == NULL) { /* not (or no longer) ours: the owner consumes it */
        scratch_clear(c);
        pthread_mutex_unlock(&c->lock);
        return;
    }
    p->next_offset = km->offset + 1;
    struct msg *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        scratch_clear(c);
        kts_log_limited(&c->rl_err, KTS_LOG_ERR, "read_kafka_ts plugin (%s): out of memory",
                        c->name);
        pthread_mutex_unlock(&c->lock);
        return; /* not stored: redelivered after a restart */
    }
    m->part = p;
    m->offset = km->offset;
    if (p->tail)
        p->tail->next = m;
    else
        p->head = m;
    p->tail = m;
    c->st.inflight_messages++;
    if (rc < 0) {
        scratch_clear(c); /* all or nothing (6) */
        bad_message(c, km, m, why);
        pthread_mutex_unlock(&c->lock);
        return;
    }
    for (size_t i = 0; i < c->scratch_n; i++) {
        struct pval *pv = calloc(1, sizeof(*pv));
        struct series *s = pv ? series_get(c, &c->scratch[i]) : NULL;
        if (s == NULL) {
            free(pv);
            kts_vl_fini(&c->scratch[i]);
            kts_log_limited(&c->rl_err, KTS_LOG_ERR,
                            "read_kafka_ts plugin (%s): out of memory; "
                            "a value is lost",
                            c->name);
            continue;
        }
        pv->vl = c->scratch[i]; /* moves ownership */
        pv->msg = m;
        m->pending++;
        c->st.inflight_values++;
        series_enqueue(s, pv);
        if (s->inflight == NULL)
            ready_push(c, s);
    }
    c->scratch_n = 0;
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------ life cycle */

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const struct kts_consumer *c = rd_kafka_opaque(rk);
    char masked[1024];
    if (kts_rdk_log_is_error_event(level, fac))
        return; /* on_error logs the same failure, with the error's name */
    if (level > KTS_LOG_DEBUG)
        level = KTS_LOG_DEBUG;
    kts_log(level, "read_kafka_ts plugin (%s): librdkafka %s: %s", c ? c->name : "?", fac,
            c ? kts_secret_mask(&c->secrets, buf, masked, sizeof(masked)) : "(message withheld)");
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kts_consumer *c = opaque;
    char masked[1024];
    (void)rk;
    kts_log_limited(kts_rdk_limiter(c->rl_kafka, err, reason), KTS_LOG_WARNING,
                    "read_kafka_ts plugin (%s): Kafka: %s (%s)", c->name,
                    kts_secret_mask(&c->secrets, reason, masked, sizeof(masked)),
                    rd_kafka_err2name(err));
}

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errbuf,
                    size_t errbuf_size)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(errbuf, errbuf_size, "property \"%s\": %s", key,
             property_is_secret(key) ? "invalid value (not shown: secret)" : errstr);
    return -EINVAL;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int kts_consumer_create(struct kts_consumer **out, const struct kts_consumer_config *cfg,
                        const struct kts_consumer_callbacks *cb, unsigned instance_id, char *errbuf,
                        size_t errbuf_size)
{
    *out = NULL;
    if (cfg->group_id == NULL || cfg->topics.n == 0 || cb->dispatch == NULL) {
        snprintf(errbuf, errbuf_size, "GroupId, Topic and a dispatch callback are required");
        return -EINVAL;
    }
    if (cb->commit_hook != NULL && !(cb->commit_interval > 0)) {
        snprintf(errbuf, errbuf_size, "a commit hook needs a commit interval > 0");
        return -EINVAL;
    }
    struct kts_consumer *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->cb = *cb;
    c->instance_bits = (uint64_t)(instance_id & 0xFF) << 56;
    c->rl_bad.interval_s = c->rl_err.interval_s = c->rl_timeout.interval_s = 10;
    c->rl_dispatch.interval_s = c->rl_dlq.interval_s = 10;
    for (int i = 0; i < KTS_RDK_LIMITERS; i++)
        c->rl_kafka[i].interval_s = 10;
    /* Keep the scalars; duplicate the naming strings (the only pointers used later). */
    c->cfg = *cfg;
    memset(&c->cfg.topics, 0, sizeof(c->cfg.topics));
    memset(&c->cfg.properties, 0, sizeof(c->cfg.properties));
    memset(&c->cfg.typesdb, 0, sizeof(c->cfg.typesdb));
    c->cfg.group_id = c->cfg.dead_letter_topic = NULL;
    c->name = strdup(cfg->name ? cfg->name : cfg->group_id);
    c->cfg.name = c->name;
    c->cfg.host_prefix = c->host_prefix = dup_or_null(cfg->host_prefix);
    c->cfg.host_suffix = c->host_suffix = dup_or_null(cfg->host_suffix);
    c->cfg.plugin_instance_suffix = c->pi_suffix = dup_or_null(cfg->plugin_instance_suffix);
    c->tmap_cap = 1024;
    while (c->tmap_cap < (size_t)cfg->max_inflight_values && c->tmap_cap < (1u << 20))
        c->tmap_cap *= 2;
    c->tmap = calloc(c->tmap_cap, sizeof(*c->tmap));
    c->types = kts_typesdb_create();
    c->decoder = kts_decoder_create(0);
    int rc = 0;
    if (c->name == NULL || c->tmap == NULL || c->types == NULL || c->decoder == NULL) {
        rc = -ENOMEM;
        snprintf(errbuf, errbuf_size, "out of memory");
        goto fail;
    }
    if (cfg->typesdb.n == 0)
        rc = kts_typesdb_load_file(c->types, KTS_TYPESDB_DEFAULT, errbuf, errbuf_size);
    for (size_t i = 0; rc == 0 && i < cfg->typesdb.n; i++)
        rc = kts_typesdb_load_file(c->types, cfg->typesdb.v[i], errbuf, errbuf_size);
    if (rc < 0)
        goto fail;

    for (size_t i = 0; rc == 0 && i + 1 < cfg->properties.n; i += 2)
        if (property_is_secret(cfg->properties.v[i]))
            rc = kts_strv_push(&c->secrets, cfg->properties.v[i + 1]);
    if (rc < 0) {
        snprintf(errbuf, errbuf_size, "out of memory");
        goto fail;
    }

    /* The consumer (1). */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    bool strategy_set = false, qmin_set = false;
    for (size_t i = 0; rc == 0 && i + 1 < cfg->properties.n; i += 2) {
        /* KIP-848: the broker assigns (group.remote.assignor); librdkafka refuses a client-side
         * partition.assignment.strategy with group.protocol "consumer". */
        if (strcasecmp(cfg->properties.v[i], "partition.assignment.strategy") == 0 ||
            (strcasecmp(cfg->properties.v[i], "group.protocol") == 0 &&
             strcasecmp(cfg->properties.v[i + 1], "consumer") == 0))
            strategy_set = true;
        if (strcasecmp(cfg->properties.v[i], "queued.min.messages") == 0)
            qmin_set = true;
        rc = conf_set(conf, cfg->properties.v[i], cfg->properties.v[i + 1], errbuf, errbuf_size);
    }
    if (rc == 0 && !strategy_set)
        rc = conf_set(conf, "partition.assignment.strategy", "range,roundrobin", errbuf,
                      errbuf_size);
    /* With librdkafka 2.0.2's default (100000) the fetcher pauses whenever the local queue is
     * that full and resumes late: a backlog drained at ~120,000 values/s with the CPU mostly
     * idle; 200000 gave ~225,000/s (docs/PERFORMANCE.md, bench/read-bench). The byte limit
     * queued.max.messages.kbytes still applies. */
    if (rc == 0 && !qmin_set)
        rc = conf_set(conf, "queued.min.messages", "200000", errbuf, errbuf_size);
    if (rc == 0)
        rc = conf_set(conf, "group.id", cfg->group_id, errbuf, errbuf_size);
    if (rc == 0)
        rc = conf_set(conf, "enable.auto.commit", "true", errbuf, errbuf_size);
    if (rc == 0)
        rc = conf_set(conf, "enable.auto.offset.store", "false", errbuf, errbuf_size);
    if (rc == 0)
        rc = conf_set(conf, "auto.offset.reset",
                      cfg->start_position == KTS_START_LATEST ? "latest" : "earliest", errbuf,
                      errbuf_size);
    if (rc < 0) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    char errstr[512];
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (c->rk == NULL) {
        char masked[1024];
        rd_kafka_conf_destroy(conf);
        snprintf(errbuf, errbuf_size, "cannot create the consumer: %s",
                 kts_secret_mask(&c->secrets, errstr, masked, sizeof(masked)));
        rc = -EINVAL;
        goto fail;
    }
    rd_kafka_poll_set_consumer(c->rk);
    c->q = rd_kafka_queue_get_consumer(c->rk);

    /* The dead-letter producer (5): same connection properties, its own handle. */
    if (cfg->dead_letter_topic != NULL) {
        c->dlq_topic = strdup(cfg->dead_letter_topic);
        rd_kafka_conf_t *pc = rd_kafka_conf_new();
        rd_kafka_conf_set_opaque(pc, c);
        rd_kafka_conf_set_log_cb(pc, on_log);
        rd_kafka_conf_set_error_cb(pc, on_error);
        rd_kafka_conf_set_dr_msg_cb(pc, on_dlq_delivery);
        for (size_t i = 0; rc == 0 && i + 1 < cfg->properties.n; i += 2) {
            const char *k = cfg->properties.v[i];
            /* Consumer-only properties would only produce warnings on a producer. */
            if (strncasecmp(k, "bootstrap", 9) == 0 || strncasecmp(k, "security", 8) == 0 ||
                strncasecmp(k, "sasl", 4) == 0 || strncasecmp(k, "ssl", 3) == 0 ||
                strcasecmp(k, "metadata.broker.list") == 0 || strcasecmp(k, "client.id") == 0)
                rc = conf_set(pc, k, cfg->properties.v[i + 1], errbuf, errbuf_size);
        }
        if (rc == 0)
            rc = conf_set(pc, "message.timeout.ms", "30000", errbuf, errbuf_size);
        /* A bad message may be as large as the broker allows; copy it with its headers. */
        if (rc == 0)
            rc = conf_set(pc, "message.max.bytes", "16777216", errbuf, errbuf_size);
        if (rc == 0 && c->dlq_topic == NULL)
            rc = -ENOMEM;
        if (rc == 0 &&
            (c->dlq = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof(errstr))) == NULL) {
            char masked[1024];
            snprintf(errbuf, errbuf_size, "cannot create the dead-letter producer: %s",
                     kts_secret_mask(&c->secrets, errstr, masked, sizeof(masked)));
            rc = -EINVAL;
        }
        if (c->dlq == NULL)
            rd_kafka_conf_destroy(pc);
        if (rc < 0)
            goto fail;
    }

    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new((int)cfg->topics.n);
    for (size_t i = 0; i < cfg->topics.n; i++)
        rd_kafka_topic_partition_list_add(topics, cfg->topics.v[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errbuf, errbuf_size, "cannot subscribe: %s", rd_kafka_err2str(err));
        rc = -EINVAL;
        goto fail;
    }
    *out = c;
    return 0;
fail:
    kts_consumer_destroy(c);
    return rc;
}

int kts_consumer_run(struct kts_consumer *c)
{
    size_t cap = (size_t)c->cfg.batch_size;
    rd_kafka_message_t **batch = calloc(cap, sizeof(*batch));
    if (batch == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&c->lock);
    c->running = true;
    int64_t last_scan = now_ns(), last_commit = now_ns();
    while (!c->stop) {
        pump_ready(c);
        store_offsets(c);
        if (now_ns() - last_scan > 1000000000) {
            check_timeouts(c);
            last_scan = now_ns();
        }
        if (c->cb.commit_hook != NULL &&
            now_ns() - last_commit >= (int64_t)(c->cb.commit_interval * 1e9)) {
            commit_point(c, false);
            last_commit = now_ns();
            if (c->stop)
                break;
        }
        int64_t room = c->cfg.max_inflight_messages - (int64_t)c->st.inflight_messages;
        bool full = room <= 0 || c->st.inflight_values >= (uint64_t)c->cfg.max_inflight_values;
        if (c->draining || full) {
            /* (4): wait for confirmations instead of consuming. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&c->cond, &c->lock, &ts);
            pthread_mutex_unlock(&c->lock);
            if (c->dlq)
                rd_kafka_poll(c->dlq, 0);
            pthread_mutex_lock(&c->lock);
            continue;
        }
        pthread_mutex_unlock(&c->lock);
        size_t want = (size_t)room < cap ? (size_t)room : cap;
        ssize_t n = rd_kafka_consume_batch_queue(c->q, 100, batch, want);
        for (ssize_t i = 0; i < n; i++) {
            handle_message(c, batch[i]);
            rd_kafka_message_destroy(batch[i]);
        }
        if (c->dlq)
            rd_kafka_poll(c->dlq, 0);
        pthread_mutex_lock(&c->lock);
    }
    pump_ready(c);
    store_offsets(c);
    c->running = false;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    free(batch);
    return 0;
}

void kts_consumer_stop(struct kts_consumer *c)
{
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void abs_deadline(struct timespec *ts, double s)
{
    clock_gettime(CLOCK_REALTIME, ts);
    int64_t ns = ts->tv_nsec + (int64_t)(s * 1e9);
    ts->tv_sec += ns / 1000000000;
    ts->tv_nsec = ns % 1000000000;
}

uint64_t kts_consumer_drain(struct kts_consumer *c)
{
    struct timespec dl;
    abs_deadline(&dl, c->cfg.drain_timeout);
    pthread_mutex_lock(&c->lock);
    c->draining = true;
    pthread_cond_broadcast(&c->cond);
    while (c->dispatched_now > 0) {
        if (pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT)
            break;
    }
    uint64_t left = c->dispatched_now;
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    struct timespec dl2;
    abs_deadline(&dl2, 5);
    while (c->running)
        if (pthread_cond_timedwait(&c->cond, &c->lock, &dl2) == ETIMEDOUT)
            break;
    store_offsets(c);
    if (c->cb.commit_hook != NULL)
        commit_point(c, true); /* (11) flush once more, then store everything done */
    if (left > 0)
        kts_log(KTS_LOG_WARNING,
                "read_kafka_ts plugin (%s): shutdown: %llu dispatched value(s) "
                "were not confirmed written within DrainTimeout; their messages will be "
                "consumed again",
                c->name, (unsigned long long)left);
    else
        kts_log(KTS_LOG_INFO,
                "read_kafka_ts plugin (%s): shutdown: every dispatched value was "
                "written (%llu written in total); %llu queued value(s) left for redelivery",
                c->name, (unsigned long long)c->st.written,
                (unsigned long long)c->st.inflight_values);
    pthread_mutex_unlock(&c->lock);
    return left;
}

void kts_consumer_stats(struct kts_consumer *c, struct kts_consumer_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    pthread_mutex_unlock(&c->lock);
}

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

void kts_consumer_close(struct kts_consumer *c)
{
    if (c == NULL)
        return;
    if (c->rk != NULL) {
        /* (8): unsubscribe, serve the revoke until the assignment is empty (bounded). */
        pthread_mutex_lock(&c->lock);
        c->draining = true; /* nothing more is dispatched, also not from written() */
        pthread_mutex_unlock(&c->lock);
        rd_kafka_unsubscribe(c->rk);
        int64_t deadline = now_ns() + (int64_t)(c->cfg.close_timeout * 1e9);
        rd_kafka_message_t *batch[64];
        for (;;) {
            rd_kafka_topic_partition_list_t *a = NULL;
            int cnt = 0;
            if (rd_kafka_assignment(c->rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a != NULL)
                cnt = a->cnt;
            if (a != NULL)
                rd_kafka_topic_partition_list_destroy(a);
            if (cnt == 0 || now_ns() > deadline)
                break;
            ssize_t n = rd_kafka_consume_batch_queue(c->q, 100, batch, 64);
            for (ssize_t i = 0; i < n; i++)
                rd_kafka_message_destroy(batch[i]); /* never stored: redelivered */
        }
        if (c->q != NULL)
            rd_kafka_queue_destroy(c->q);
        c->q = NULL;
        rd_kafka_consumer_close(c->rk); /* commits the stored offsets */
        pthread_mutex_lock(&c->lock);
        rd_kafka_t *rk = c->rk;
        c->rk = NULL; /* kts_consumer_lag() from another thread now sees no handle */
        pthread_mutex_unlock(&c->lock);
        rd_kafka_destroy(rk);
    }
    if (c->dlq != NULL) {
        rd_kafka_flush(c->dlq, 5000);
        rd_kafka_destroy(c->dlq);
        c->dlq = NULL;
    }
}

void kts_consumer_destroy(struct kts_consumer *c)
{
    if (c == NULL)
        return;
    kts_consumer_close(c);
    /* Free everything left (queued values, messages, partitions, series). */
    for (size_t b = 0; b < c->stab_cap; b++)
        for (struct series *s = c->stab[b], *sn; s != NULL; s = sn) {
            sn = s->hnext;
            for (struct pval *p = s->head, *pn; p != NULL; p = pn) {
                pn = p->next;
                kts_vl_fini(&p->vl);
                free(p);
            }
            if (s->inflight) {
                kts_vl_fini(&s->inflight->vl);
                free(s->inflight);
            }
            free(s);
        }
    free(c->stab);
    for (struct part *p = c->parts, *pn; p != NULL; p = pn) {
        pn = p->next;
        for (struct msg *m = p->head, *mn; m != NULL; m = mn) {
            mn = m->next;
            free(m);
        }
        free(p->topic);
        free(p);
    }
    free(c->tmap);
    scratch_clear(c);
    free(c->scratch);
    kts_decoder_destroy(c->decoder);
    kts_typesdb_destroy(c->types);
    free(c->dlq_topic);
    for (size_t i = 0; i < c->secrets.n; i++)
        memset(c->secrets.v[i], 0, strlen(c->secrets.v[i]));
    kts_strv_free(&c->secrets);
    free(c->name);
    free(c->host_prefix);
    free(c->host_suffix);
    free(c->pi_suffix);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
