/* SPDX-License-Identifier: MIT */
/* kts_series: see kts_series.h for the guarantees. */
#include "kts_series.h"
#include "kts_assert.h"
#include "kts_hash.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "kts_log.h"

struct series {
    struct series *prev, *next; /* expiry queue (second chance) */
    kts_time_t last;            /* newest event time it was touched with */
    uint32_t key_len;
    uint32_t state_size;
    /* data: the key, padding to 8 with the key offset in its last 4 bytes, the state (at
     * key_off(key_len); key first: one cache line with the header for short keys). */
    unsigned char data[];
};

/* Where the state starts in data[]: the key and 4 bytes for its offset, rounded up to 8. */
static inline size_t key_off(size_t key_len)
{
    return (key_len + sizeof(uint32_t) + 7) & ~(size_t)7;
}

struct slot {
    uint64_t hash;
    struct series *s;
};

struct kts_series_table {
    struct slot *slots;
    size_t mask; /* slots - 1 */
    size_t count;
    size_t entry_bytes;
    struct series *head, *tail;
    struct kts_series_conf conf;
    char *name;
    uint64_t created, expired, refused;
    struct kts_ratelimit rl;
};

#define MALLOC_OVERHEAD 8
#define MIN_SLOTS 64

static uint64_t hash_key(const void *key, size_t len)
{
    return kts_hash64(key, len, KTS_HASH_SEED);
}

size_t kts_series_identity(char *dst, const struct kts_vl *vl)
{
    const char *const names[5] = {vl->host, vl->plugin, vl->plugin_instance, vl->type,
                                  vl->type_instance};
    size_t n = 0;
    for (int i = 0; i < 5; i++) {
        size_t len = strnlen(names[i], KTS_NAME_MAX - 1);
        memcpy(dst + n, names[i], len);
        n += len;
        dst[n++] = '\0';
    }
    return n;
}

void kts_series_identity_names(struct kts_vl *vl, const char *id, size_t len)
{
    char *const names[5] = {vl->host, vl->plugin, vl->plugin_instance, vl->type, vl->type_instance};
    size_t pos = 0;
    for (int i = 0; i < 5; i++) {
        size_t l = pos < len ? strnlen(id + pos, len - pos) : 0;
        if (l > KTS_NAME_MAX - 1)
            l = KTS_NAME_MAX - 1;
        memcpy(names[i], id + pos, l);
        names[i][l] = '\0';
        pos += l + 1;
    }
}

int kts_series_table_create(const struct kts_series_conf *conf, struct kts_series_table **out)
{
    struct kts_series_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->conf = *conf;
    t->name = strdup(conf->name != NULL ? conf->name : "series table");
    t->slots = calloc(MIN_SLOTS, sizeof(struct slot));
    if (t->name == NULL || t->slots == NULL) {
        free(t->name);
        free(t->slots);
        free(t);
        return -ENOMEM;
    }
    t->conf.name = t->name;
    t->mask = MIN_SLOTS - 1;
    *out = t;
    return 0;
}

static void lru_unlink(struct kts_series_table *t, struct series *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        t->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        t->tail = s->prev;
    s->prev = s->next = NULL;
}

static void lru_append(struct kts_series_table *t, struct series *s)
{
    s->prev = t->tail;
    s->next = NULL;
    if (t->tail)
        t->tail->next = s;
    else
        t->head = s;
    t->tail = s;
}

static size_t entry_bytes(struct series *s)
{
    return malloc_usable_size(s) + MALLOC_OVERHEAD;
}

void kts_series_table_destroy(struct kts_series_table *t, kts_series_fn fn, void *opaque)
{
    if (t == NULL)
        return;
    for (struct series *s = t->head, *next; s != NULL; s = next) {
        next = s->next;
        if (fn)
            fn(s->data, s->key_len, s->data + key_off(s->key_len), s->state_size, opaque);
        free(s);
    }
    free(t->slots);
    free(t->name);
    free(t);
}

static size_t find_slot(const struct kts_series_table *t, uint64_t h, const void *key,
                        size_t key_len)
{
    size_t i = h & t->mask;
    for (;;) {
        const struct slot *sl = &t->slots[i];
        if (sl->s == NULL)
            return i;
        if (sl->hash == h && sl->s->key_len == key_len && memcmp(sl->s->data, key, key_len) == 0)
            return i;
        i = (i + 1) & t->mask;
    }
}

void *kts_series_find(struct kts_series_table *t, const void *key, size_t key_len)
{
    uint64_t h = hash_key(key, key_len);
    struct slot *sl = &t->slots[find_slot(t, h, key, key_len)];
    return sl->s != NULL ? sl->s->data + key_off(sl->s->key_len) : NULL;
}

const void *kts_series_prefetch(const struct kts_series_table *t, const void *key, size_t key_len,
                                int stage)
{
    uint64_t h = hash_key(key, key_len);
    const struct slot *sl = &t->slots[h & t->mask];
    if (stage == 0) {
        __builtin_prefetch(sl);
        return NULL;
    }
    /* First probe only: a displaced key is simply not prefetched. */
    if (sl->s == NULL || sl->hash != h)
        return NULL;
    __builtin_prefetch(sl->s);
    __builtin_prefetch((const unsigned char *)sl->s + 64);
    return sl->s->data + key_off(key_len);
}

static int grow(struct kts_series_table *t)
{
    size_t n = (t->mask + 1) * 2;
    struct slot *slots = calloc(n, sizeof(struct slot));
    if (slots == NULL)
        return -ENOMEM;
    for (size_t i = 0; i <= t->mask; i++) {
        struct slot *sl = &t->slots[i];
        if (sl->s == NULL)
            continue;
        size_t j = sl->hash & (n - 1);
        while (slots[j].s != NULL)
            j = (j + 1) & (n - 1);
        slots[j] = *sl;
    }
    free(t->slots);
    t->slots = slots;
    t->mask = n - 1;
    return 0;
}

static size_t table_bytes(const struct kts_series_table *t)
{
    return sizeof(*t) + (t->mask + 1) * sizeof(struct slot) + t->entry_bytes;
}

int kts_series_get(struct kts_series_table *t, const void *key, size_t key_len, size_t state_size,
                   kts_time_t now, void **state, size_t *state_size_out)
{
    uint64_t h = hash_key(key, key_len);
    size_t i = find_slot(t, h, key, key_len);
    struct series *s = t->slots[i].s;
    if (s != NULL) {
        /* No relinking here (it would touch two more random entries): expiry gives series
         * touched since they were queued a second chance instead. */
        if (now > s->last)
            s->last = now;
        *state = s->data + key_off(s->key_len);
        if (state_size_out)
            *state_size_out = s->state_size;
        return 0;
    }
    if (state_size > UINT32_MAX || key_len > UINT32_MAX)
        return -EINVAL;
    size_t ssz = (state_size + 7) & ~(size_t)7;
    size_t koff = key_off(key_len);
    size_t need = sizeof(struct series) + koff + ssz;
    bool must_grow = (t->count + 1) * 4 > (t->mask + 1) * 3;
    if (t->conf.max_bytes > 0) {
        size_t extra =
            need + MALLOC_OVERHEAD + (must_grow ? (t->mask + 1) * sizeof(struct slot) : 0);
        if (table_bytes(t) + extra > t->conf.max_bytes) {
            t->refused++;
            kts_log_limited(&t->rl, KTS_LOG_WARNING,
                            "%s: memory limit of %zu bytes reached (%zu series, %zu bytes in "
                            "use): new series are refused (%llu so far)",
                            t->name, t->conf.max_bytes, t->count, table_bytes(t),
                            (unsigned long long)t->refused);
            return -ENOSPC;
        }
    }
    if (must_grow) {
        int rc = grow(t);
        if (rc < 0)
            return rc;
        i = find_slot(t, h, key, key_len);
    }
    /* At most 3/4 full after this insertion, so find_slot() always meets an empty slot. */
    KTS_ASSERT((t->count + 1) * 4 <= (t->mask + 1) * 3 && t->slots[i].s == NULL);
    s = calloc(1, need);
    if (s == NULL)
        return -ENOMEM;
    s->key_len = (uint32_t)key_len;
    s->state_size = (uint32_t)ssz;
    s->last = now;
    memcpy(s->data, key, key_len);
    uint32_t koff32 = (uint32_t)koff;
    memcpy(s->data + koff - sizeof(uint32_t), &koff32, sizeof(koff32));
    t->slots[i].hash = h;
    t->slots[i].s = s;
    lru_append(t, s);
    t->count++;
    t->created++;
    t->entry_bytes += entry_bytes(s);
    *state = s->data + koff;
    if (state_size_out)
        *state_size_out = ssz;
    return 1;
}

static struct series *series_of(void *state)
{
    /* The key's padded length is stored in the 4 bytes just before the state. */
    uint32_t koff;
    memcpy(&koff, (unsigned char *)state - sizeof(uint32_t), sizeof(koff));
    return (struct series *)((unsigned char *)state - koff - offsetof(struct series, data));
}

static void remove_series(struct kts_series_table *t, struct series *s)
{
    size_t i = find_slot(t, hash_key(s->data, s->key_len), s->data, s->key_len);
    /* Backward-shift deletion keeps every probe chain unbroken. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        struct slot *sj = &t->slots[j];
        if (sj->s == NULL)
            break;
        size_t home = sj->hash & t->mask;
        /* Move sj into the hole at i if its home is not in (i, j] (cyclically). */
        bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            t->slots[i] = *sj;
            i = j;
        }
    }
    t->slots[i].s = NULL;
    t->slots[i].hash = 0;
    lru_unlink(t, s);
    KTS_ASSERT(t->count > 0 && t->entry_bytes >= entry_bytes(s));
    t->count--;
    t->entry_bytes -= entry_bytes(s);
    free(s);
}

kts_time_t kts_series_last(const void *state)
{
    return series_of((void *)state)->last;
}

void kts_series_remove(struct kts_series_table *t, void *state)
{
    remove_series(t, series_of(state));
}

size_t kts_series_expire(struct kts_series_table *t, kts_time_t now, size_t max, kts_series_fn fn,
                         void *opaque)
{
    if (t->conf.expire_after == 0 || now <= t->conf.expire_after)
        return 0;
    kts_time_t limit = now - t->conf.expire_after;
    size_t n = 0;
    size_t expired = 0;
    /* Second chance: the head was queued least recently; if it was touched since (its newest
     * time is recent), it goes to the back instead. */
    while (n < max && t->head != NULL) {
        struct series *s = t->head;
        n++;
        if (s->last > limit) {
            if (s != t->tail) {
                lru_unlink(t, s);
                lru_append(t, s);
            }
            continue;
        }
        if (fn)
            fn(s->data, s->key_len, s->data + key_off(s->key_len), s->state_size, opaque);
        remove_series(t, s);
        t->expired++;
        expired++;
    }
    return expired;
}

void kts_series_foreach(struct kts_series_table *t, kts_series_fn fn, void *opaque)
{
    for (struct series *s = t->head; s != NULL; s = s->next)
        fn(s->data, s->key_len, s->data + key_off(s->key_len), s->state_size, opaque);
}

void kts_series_get_stats(const struct kts_series_table *t, struct kts_series_stats *st)
{
    st->count = t->count;
    st->bytes = table_bytes(t);
    st->created = t->created;
    st->expired = t->expired;
    st->refused = t->refused;
}
