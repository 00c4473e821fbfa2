/* SPDX-License-Identifier: MIT */
/* kts_pipeline_state: see kts_pipeline_state.h for the record format and the guarantees. */
#include "kts_pipeline_state.h"

#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "kts_buf.h"
#include "kts_crc32c.h"
#include "kts_hash.h"
#include "kts_log.h"
#include "kts_pipeline_impl.h"
#include "kts_series.h"

/* magic, version, layout, fingerprint, time, partition, offset */
#define REC_FIXED (4 + 2 + 2 + 8 + 8 + 4 + 8)

/* ------------------------------------------------------------------ little-endian fields */

static void put_le(unsigned char *d, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        d[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *s, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)s[i] << (8 * i);
    return v;
}

/* The host layout of the blobs: byte order, sizeof(long), alignments of double and int64_t. */
static uint16_t layout_tag(void)
{
    const uint16_t one = 1;
    unsigned char little;
    memcpy(&little, &one, 1);
    return (uint16_t)((little ? 1u : 2u) | (unsigned)sizeof(long) << 2 |
                      (unsigned)alignof(double) << 6 | (unsigned)alignof(int64_t) << 10);
}

/* ------------------------------------------------------------------ fingerprint */

static void fp_add(uint64_t *h, const void *d, size_t n)
{
    *h = kts_hash64(d, n, *h + n + 1);
}

static void fp_str(uint64_t *h, const char *s)
{
    if (s == NULL)
        fp_add(h, "\xff", 1); /* unset differs from "" */
    else
        fp_add(h, s, strlen(s) + 1);
}

/* Every option of `opts` over `obj`, in table order (defaults included), except custom ones and
 * those named in `skip` (NULL-terminated). */
static void fp_options(uint64_t *h, const struct kts_opt *opts, const void *obj,
                       const char *const *skip)
{
    const unsigned char *base = obj;
    for (const struct kts_opt *o = opts; o->name != NULL; o++) {
        bool skipped = o->type == KTS_OPT_CUSTOM;
        for (size_t i = 0; skip != NULL && skip[i] != NULL; i++)
            skipped = skipped || strcmp(skip[i], o->name) == 0;
        if (skipped)
            continue;
        fp_str(h, o->name);
        const void *v = base + o->offset;
        switch (o->type) {
        case KTS_OPT_STRING:
            fp_str(h, *(char *const *)v);
            break;
        case KTS_OPT_STRINGS: {
            const struct kts_strv *sv = v;
            fp_add(h, &sv->n, sizeof(sv->n));
            for (size_t i = 0; i < sv->n; i++)
                fp_str(h, sv->v[i]);
            break;
        }
        case KTS_OPT_INT:
            fp_add(h, v, sizeof(int64_t));
            break;
        case KTS_OPT_DOUBLE:
        case KTS_OPT_DURATION:
            fp_add(h, v, sizeof(double));
            break;
        case KTS_OPT_BOOL:
            fp_add(h, v, sizeof(bool));
            break;
        case KTS_OPT_ENUM:
            fp_add(h, v, sizeof(int));
            break;
        default:
            break;
        }
    }
}

uint64_t kts_pipeline_compute_fingerprint(const struct kts_pipeline *p)
{
    static const char *const skip[] = {"MemoryLimit", "WhenFull", NULL};
    uint64_t h = KTS_HASH_SEED;
    uint16_t tag = layout_tag();
    size_t sizes[3] = {sizeof(struct kts_point), sizeof(union kts_value), SERIES_HDR};
    fp_add(&h, &tag, sizeof(tag));
    fp_add(&h, sizes, sizeof(sizes));
    fp_options(&h, kts_pipeline_options, p, skip);
    for (int f = 0; f < F_NUM; f++) {
        fp_add(&h, &p->match_n[f], sizeof(p->match_n[f]));
        for (size_t i = 0; i < p->match_n[f]; i++) {
            fp_add(&h, &p->match[f][i].is_regex, sizeof(bool));
            fp_str(&h, p->match[f][i].text);
        }
    }
    for (size_t i = 0; i < p->nfilters; i++) {
        const struct pipe_filter *pf = &p->filters[i];
        size_t sz = pf->ops->state_size(pf->conf);
        unsigned version = pf->ops->state_version;
        fp_str(&h, pf->ops->name);
        fp_add(&h, &sz, sizeof(sz));
        fp_add(&h, &version, sizeof(version));
        fp_options(&h, pf->ops->options, pf->conf, NULL);
    }
    return h;
}

uint64_t kts_pipeline_fingerprint(const struct kts_pipeline *p)
{
    return p->fingerprint;
}

/* ------------------------------------------------------------------ small parts */

void kts_pipeline_set_position(struct kts_pipeline *p, int32_t partition, int64_t offset)
{
    p->pos_partition = partition < 0 ? -1 : partition;
    p->pos_offset = partition < 0 ? -1 : offset;
}

const char *kts_state_refusal_name(enum kts_state_refusal why)
{
    static const char *const names[KTS_STATE_REASONS] = {"ok",     "corrupt", "version",
                                                         "config", "key",     "nomem"};
    return (unsigned)why < KTS_STATE_REASONS ? names[why] : "unknown";
}

void kts_pipeline_state_get_stats(const struct kts_pipeline *p, struct kts_pipeline_state_stats *st)
{
    *st = p->sstats;
}

void kts_pipeline_state_free(struct kts_pipeline *p)
{
    for (size_t i = 0; i < p->ntombs; i++)
        free(p->tombs[i].key);
    free(p->tombs);
    p->tombs = NULL;
    p->ntombs = p->tombs_cap = 0;
    free(p->dirty);
    p->dirty = NULL;
    p->ndirty = p->dirty_cap = 0;
    p->dirty_valid = false;
}

void kts_pipeline_state_expired(struct kts_pipeline *p, const void *key, size_t key_len,
                                const struct pipe_series_hdr *h)
{
    if (!p->tracking || !(h->flags & SERIES_PERSISTED))
        return;
    if (p->ntombs == p->tombs_cap) {
        size_t cap = p->tombs_cap ? 2 * p->tombs_cap : 16;
        struct pipe_tomb *t = realloc(p->tombs, cap * sizeof(*t));
        if (t == NULL)
            return; /* the record stays in the topic until the series comes back */
        p->tombs = t;
        p->tombs_cap = cap;
    }
    char *k = malloc(key_len ? key_len : 1);
    if (k == NULL)
        return;
    memcpy(k, key, key_len);
    p->tombs[p->ntombs++] = (struct pipe_tomb){k, key_len, h->partition};
}

/* ------------------------------------------------------------------ export */

struct export_ctx {
    struct kts_pipeline *p;
    int32_t partition;
    bool changed_only;
    kts_state_record_fn fn;
    void *opaque;
    struct kts_buf key, rec;
    int rc;
};

/* The key: pipeline name, NUL, identity. */
static int make_key(struct kts_buf *b, const struct kts_pipeline *p, const void *id, size_t len)
{
    kts_buf_reset(b);
    if (kts_buf_append(b, p->name, strlen(p->name) + 1) < 0 || kts_buf_append(b, id, len) < 0)
        return -ENOMEM;
    return 0;
}

/* Encode the record of one series into b. */
static int encode(struct kts_buf *b, const struct kts_pipeline *p, const void *id, size_t id_len,
                  const unsigned char *state, size_t state_size)
{
    const struct pipe_series_hdr *h = (const struct pipe_series_hdr *)state;
    size_t ds_num = (state_size - SERIES_HDR) / p->ds_stride, ds_bytes = 0;
    for (size_t f = 0; f < p->nfilters; f++)
        ds_bytes += p->filters[f].ops->state_size(p->filters[f].conf);
    size_t len = REC_FIXED + 2 + id_len + 8 + 4 * p->nfilters + ds_num * ds_bytes + 4;
    kts_buf_reset(b);
    if (kts_buf_reserve(b, len) < 0)
        return -ENOMEM;
    unsigned char *d = (unsigned char *)b->data, *w = d;
    put_le(w, KTS_STATE_MAGIC, 4);
    put_le(w + 4, KTS_STATE_VERSION_CURRENT, 2);
    put_le(w + 6, layout_tag(), 2);
    put_le(w + 8, p->fingerprint, 8);
    put_le(w + 16, (uint64_t)kts_series_last(state), 8);
    put_le(w + 24, (uint64_t)(int64_t)h->partition, 4);
    put_le(w + 28, (uint64_t)h->offset, 8);
    w += REC_FIXED;
    put_le(w, id_len, 2);
    memcpy(w + 2, id, id_len);
    w += 2 + id_len;
    put_le(w, ds_num, 2);
    put_le(w + 2, p->nfilters, 2);
    put_le(w + 4, ds_bytes, 4);
    w += 8;
    for (size_t f = 0; f < p->nfilters; f++, w += 4)
        put_le(w, p->filters[f].ops->state_size(p->filters[f].conf), 4);
    for (size_t ds = 0; ds < ds_num; ds++) {
        const unsigned char *dstate = state + SERIES_HDR + ds * p->ds_stride;
        for (size_t f = 0; f < p->nfilters; f++) {
            size_t n = p->filters[f].ops->state_size(p->filters[f].conf);
            memcpy(w, dstate + p->filters[f].state_off, n);
            w += n;
        }
    }
    put_le(w, kts_crc32c(0, d, (size_t)(w - d)), 4);
    b->len = len;
    return 0;
}

static void export_one(const void *key, size_t key_len, void *state, size_t state_size,
                       void *opaque)
{
    struct export_ctx *ec = opaque;
    struct pipe_series_hdr *h = state;
    if (ec->rc != 0 || (ec->partition >= 0 && h->partition != ec->partition) ||
        (ec->changed_only && !(h->flags & SERIES_DIRTY)))
        return;
    if (make_key(&ec->key, ec->p, key, key_len) < 0 ||
        encode(&ec->rec, ec->p, key, key_len, state, state_size) < 0) {
        ec->rc = -ENOMEM;
        return;
    }
    ec->rc = ec->fn(ec->key.data, ec->key.len, ec->rec.data, ec->rec.len, h->partition, ec->opaque);
    if (ec->rc != 0)
        return;
    h->flags = (h->flags & ~SERIES_DIRTY) | SERIES_PERSISTED;
    ec->p->sstats.exported++;
    ec->p->sstats.exported_bytes += ec->key.len + ec->rec.len;
}

/* The tombstones of `partition` (-1: all), unless the series came back since. */
static int export_tombs(struct export_ctx *ec)
{
    struct kts_pipeline *p = ec->p;
    size_t keep = 0, i;
    int rc = 0;
    for (i = 0; i < p->ntombs; i++) {
        struct pipe_tomb *t = &p->tombs[i];
        if (rc == 0 && (ec->partition < 0 || t->partition == ec->partition)) {
            if (kts_series_find(p->series, t->key, t->key_len) == NULL) {
                rc = make_key(&ec->key, p, t->key, t->key_len);
                if (rc == 0)
                    rc = ec->fn(ec->key.data, ec->key.len, NULL, 0, t->partition, ec->opaque);
                if (rc != 0) {
                    p->tombs[keep++] = *t;
                    continue;
                }
                p->sstats.tombstones++;
            }
            free(t->key);
            continue;
        }
        p->tombs[keep++] = *t;
    }
    p->ntombs = keep;
    return rc;
}

/* kts_series_fn: remember a changed series. */
static void note_dirty(const void *key, size_t key_len, void *state, size_t state_size,
                       void *opaque)
{
    struct kts_pipeline *p = opaque;
    const struct pipe_series_hdr *h = state;
    if (!p->dirty_valid || !(h->flags & SERIES_DIRTY))
        return;
    if (p->ndirty == p->dirty_cap) {
        size_t cap = p->dirty_cap ? 2 * p->dirty_cap : 1024;
        struct pipe_dirty *d = realloc(p->dirty, cap * sizeof(*d));
        if (d == NULL) {
            p->dirty_valid = false;
            return;
        }
        p->dirty = d;
        p->dirty_cap = cap;
    }
    p->dirty[p->ndirty++] = (struct pipe_dirty){key, key_len, state, state_size, h->partition};
}

/* The changed series of one partition, in table order, into export_one: from the list of every
 * partition's changed series, made by one walk over the table when the table changed since
 * (a checkpoint exports each partition in turn: one walk instead of one per partition).
 * Returns false when the list cannot be made (the caller walks the table itself). */
static bool export_dirty(struct kts_pipeline *p, struct export_ctx *ec)
{
    if (!p->dirty_valid || p->dirty_at != p->mutations) {
        p->ndirty = 0;
        p->dirty_valid = true;
        kts_series_foreach(p->series, note_dirty, p);
        if (!p->dirty_valid)
            return false;
        p->dirty_at = p->mutations;
    }
    for (size_t i = 0; i < p->ndirty && ec->rc == 0; i++) {
        const struct pipe_dirty *d = &p->dirty[i];
        if (d->partition == ec->partition)
            export_one(d->key, d->key_len, d->state, d->state_size, ec);
    }
    return true;
}

int kts_pipeline_state_export(struct kts_pipeline *p, int32_t partition, bool changed_only,
                              kts_state_record_fn fn, void *opaque)
{
    struct export_ctx ec = {
        p, partition < 0 ? -1 : partition, changed_only, fn, opaque, {NULL, 0, 0}, {NULL, 0, 0}, 0};
    p->tracking = true;
    if (!changed_only || ec.partition < 0 || !export_dirty(p, &ec))
        kts_series_foreach(p->series, export_one, &ec);
    if (ec.rc == 0)
        ec.rc = export_tombs(&ec);
    kts_buf_fini(&ec.key);
    kts_buf_fini(&ec.rec);
    return ec.rc;
}

/* ------------------------------------------------------------------ decode, import */

static int refuse(enum kts_state_refusal r, enum kts_state_refusal *why)
{
    if (why != NULL)
        *why = r;
    return -1;
}

int kts_state_record_check(const void *rec, size_t rlen, struct kts_state_info *info,
                           enum kts_state_refusal *why)
{
    const unsigned char *r = rec;
    memset(info, 0, sizeof(*info));
    if (rec == NULL || rlen < REC_FIXED + 2 + 8 + 4 || get_le(r, 4) != KTS_STATE_MAGIC)
        return refuse(KTS_STATE_CORRUPT, why);
    info->version = (uint16_t)get_le(r + 4, 2);
    if (info->version != KTS_STATE_VERSION_CURRENT)
        return refuse(KTS_STATE_VERSION, why);
    if (get_le(r + rlen - 4, 4) != kts_crc32c(0, r, rlen - 4))
        return refuse(KTS_STATE_CORRUPT, why);
    info->layout = (uint16_t)get_le(r + 6, 2);
    info->fingerprint = get_le(r + 8, 8);
    info->time = (int64_t)get_le(r + 16, 8);
    info->partition = (int32_t)(uint32_t)get_le(r + 24, 4);
    info->offset = (int64_t)get_le(r + 28, 8);
    if (info->partition < -1 || (info->partition == -1 && info->offset != -1))
        return refuse(KTS_STATE_CORRUPT, why);
    size_t pos = REC_FIXED, end = rlen - 4;
    info->identity_len = get_le(r + pos, 2);
    pos += 2;
    if (info->identity_len > end - pos || end - pos - info->identity_len < 8)
        return refuse(KTS_STATE_CORRUPT, why);
    info->identity = (const char *)r + pos;
    pos += info->identity_len;
    info->ds_num = (uint16_t)get_le(r + pos, 2);
    info->nfilters = (uint16_t)get_le(r + pos + 2, 2);
    info->ds_bytes = (uint32_t)get_le(r + pos + 4, 4);
    pos += 8;
    if ((size_t)info->nfilters * 4 > end - pos)
        return refuse(KTS_STATE_CORRUPT, why);
    info->blob_lens = r + pos;
    uint64_t sum = 0;
    for (size_t f = 0; f < info->nfilters; f++)
        sum += get_le(info->blob_lens + 4 * f, 4);
    pos += (size_t)info->nfilters * 4;
    if (sum != info->ds_bytes || (uint64_t)info->ds_num * info->ds_bytes != end - pos ||
        info->ds_num == 0 || info->nfilters == 0)
        return refuse(KTS_STATE_CORRUPT, why);
    info->blobs = r + pos;
    if (why != NULL)
        *why = KTS_STATE_OK;
    return 0;
}

/* Whether a checked record fits this pipeline (its configuration and layout). */
static bool fits(const struct kts_pipeline *p, const struct kts_state_info *in)
{
    if (in->layout != layout_tag() || in->fingerprint != p->fingerprint ||
        in->nfilters != p->nfilters)
        return false;
    for (size_t f = 0; f < p->nfilters; f++)
        if (get_le(in->blob_lens + 4 * f, 4) != p->filters[f].ops->state_size(p->filters[f].conf))
            return false;
    return true;
}

static int refused(struct kts_pipeline *p, const char *id, size_t id_len, enum kts_state_refusal r,
                   enum kts_state_refusal *why)
{
    p->sstats.refused[r]++;
    if (!p->refusal_logged[r]) {
        struct kts_vl vl;
        p->refusal_logged[r] = true;
        kts_series_identity_names(&vl, id, id_len);
        kts_log(KTS_LOG_WARNING,
                "%s: state record of %s/%s/%s refused (%s): the series starts fresh; further "
                "records refused for this reason are counted, not logged",
                p->where, vl.host, vl.plugin, vl.type, kts_state_refusal_name(r));
    }
    /* The series starts fresh: a state it had here is dropped too. */
    void *st = id_len > 0 ? kts_series_find(p->series, id, id_len) : NULL;
    if (st != NULL)
        kts_series_remove(p->series, st);
    return refuse(r, why);
}

/* Install a checked record as the state of series `id`. */
static int install(struct kts_pipeline *p, const char *id, size_t id_len,
                   const struct kts_state_info *in)
{
    void *st = kts_series_find(p->series, id, id_len);
    if (st != NULL)
        kts_series_remove(p->series, st);
    size_t have;
    int rc = kts_series_get(p->series, id, id_len, SERIES_HDR + in->ds_num * p->ds_stride,
                            (kts_time_t)in->time, &st, &have);
    if (rc != 1)
        return -1;
    unsigned char *state = st;
    const unsigned char *src = in->blobs;
    for (size_t ds = 0; ds < in->ds_num; ds++) {
        unsigned char *dstate = state + SERIES_HDR + ds * p->ds_stride;
        for (size_t f = 0; f < p->nfilters; f++) {
            size_t n = p->filters[f].ops->state_size(p->filters[f].conf);
            memcpy(dstate + p->filters[f].state_off, src, n);
            src += n;
        }
    }
    struct pipe_series_hdr *h = st;
    h->partition = in->partition;
    h->offset = in->offset;
    h->flags = SERIES_PERSISTED;
    if ((kts_time_t)in->time > p->clock)
        p->clock = (kts_time_t)in->time;
    return 0;
}

int kts_pipeline_state_import(struct kts_pipeline *p, const void *key, size_t klen, const void *rec,
                              size_t rlen, enum kts_state_refusal *why)
{
    size_t nl = strlen(p->name) + 1;
    const char *id = (const char *)key + nl;
    p->tracking = true;
    p->mutations++;
    if (key == NULL || klen < nl || memcmp(key, p->name, nl) != 0 ||
        klen - nl > KTS_SERIES_IDENTITY_MAX)
        return refused(p, "", 0, KTS_STATE_KEY, why);
    size_t id_len = klen - nl;
    if (rec == NULL || rlen == 0) {
        void *st = kts_series_find(p->series, id, id_len);
        if (st != NULL)
            kts_series_remove(p->series, st);
        p->sstats.imported_tombstones++;
        if (why != NULL)
            *why = KTS_STATE_OK;
        return 0;
    }
    struct kts_state_info in;
    enum kts_state_refusal r;
    if (kts_state_record_check(rec, rlen, &in, &r) < 0)
        return refused(p, id, id_len, r, why);
    if (!fits(p, &in))
        return refused(p, id, id_len, KTS_STATE_CONFIG, why);
    if (in.identity_len != id_len || memcmp(in.identity, id, id_len) != 0)
        return refused(p, id, id_len, KTS_STATE_KEY, why);
    if (install(p, id, id_len, &in) < 0)
        return refused(p, id, id_len, KTS_STATE_NOMEM, why);
    p->sstats.imported++;
    if (why != NULL)
        *why = KTS_STATE_OK;
    return 0;
}

/* ------------------------------------------------------------------ revoked partitions */

struct drop_ctx {
    int32_t partition;
    void **states;
    size_t n, cap;
    int rc;
};

static void collect(const void *key, size_t key_len, void *state, size_t state_size, void *opaque)
{
    struct drop_ctx *dc = opaque;
    const struct pipe_series_hdr *h = state;
    (void)key;
    (void)key_len;
    (void)state_size;
    if (dc->rc != 0 || h->partition != dc->partition)
        return;
    if (dc->n == dc->cap) {
        size_t cap = dc->cap ? 2 * dc->cap : 64;
        void **s = realloc(dc->states, cap * sizeof(*s));
        if (s == NULL) {
            dc->rc = -ENOMEM;
            return;
        }
        dc->states = s;
        dc->cap = cap;
    }
    dc->states[dc->n++] = state;
}

void kts_pipeline_state_drop_partition(struct kts_pipeline *p, int32_t partition)
{
    struct drop_ctx dc = {partition, NULL, 0, 0, 0};
    p->mutations++;
    do {
        dc.n = 0;
        dc.rc = 0;
        kts_series_foreach(p->series, collect, &dc);
        for (size_t i = 0; i < dc.n; i++)
            kts_series_remove(p->series, dc.states[i]);
        p->sstats.dropped += dc.n;
    } while (dc.rc != 0 && dc.n > 0); /* out of memory: again, with what was freed */
    free(dc.states);
    size_t keep = 0;
    for (size_t i = 0; i < p->ntombs; i++) {
        if (p->tombs[i].partition == partition)
            free(p->tombs[i].key);
        else
            p->tombs[keep++] = p->tombs[i];
    }
    p->ntombs = keep;
}
