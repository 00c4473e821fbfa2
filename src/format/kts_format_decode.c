/* SPDX-License-Identifier: MIT */
/*
 * kts_format decoder: the time-series JSON (v1) and collectd's JSON, with yajl's callback
 * parser. What it guarantees is listed in kts_format.h (5-9); docs/FORMAT.md is the spec.
 *
 * How it works: yajl calls us once per token. A stack of frames (one per open object or
 * array) says where we are: the kind of container and, for objects, the current key. Scalars
 * are checked and stored at once; objects whose fields may come in any order (a data source,
 * a meta entry, a whole value list) are completed when they close. Decoded value lists go into
 * pools owned by the decoder (indices, not pointers, while the pools may still move); only
 * when the whole message is good are the pointers fixed up and the callback called.
 *
 * Memory: every pool grows with what the input contains and is bounded by the limits in
 * kts_format.h (data sources, meta entries, value lists, string sizes, nesting), so a message
 * costs at most a small multiple of its own size. The pools are kept for the next message.
 *
 * This file is the driver (yajl's callbacks, the frame stack, the public API); each format's
 * frames are in kts_format_decode_ts.c and kts_format_decode_cd.c, the scalars and pools in
 * kts_format_decode_value.c (kts_format_decode_impl.h).
 */
#include "kts_array.h"
#include "kts_assert.h"
#include "kts_format_decode_impl.h"
#include "kts_format_impl.h"
#include "kts_testhooks.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

/* ------------------------------------------------------------------ frames */

static enum field field_of(enum frame_kind kind, const char *k, size_t n)
{
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(k, lit, n) == 0)
    switch (kind) {
    case FR_TS_ROOT:
    case FR_CD_VL:
        if (IS("host"))
            return F_HOST;
        if (IS("plugin"))
            return F_PLUGIN;
        if (IS("plugin_instance"))
            return F_PLUGIN_INSTANCE;
        if (IS("type"))
            return F_TYPE;
        if (IS("type_instance"))
            return F_TYPE_INSTANCE;
        if (IS("time"))
            return F_TIME;
        if (IS("interval"))
            return F_INTERVAL;
        if (IS("meta"))
            return F_META;
        if (kind == FR_TS_ROOT) {
            if (IS("v"))
                return F_V;
            if (IS("ds"))
                return F_DS;
        } else {
            if (IS("values"))
                return F_VALUES;
            if (IS("dstypes"))
                return F_DSTYPES;
            if (IS("dsnames"))
                return F_DSNAMES;
        }
        return F_UNKNOWN;
    case FR_TS_DS:
        if (IS("name"))
            return F_NAME;
        if (IS("type"))
            return F_TYPE;
        if (IS("value"))
            return F_VALUE;
        return F_UNKNOWN;
    case FR_TS_META_ENTRY:
        if (IS("type"))
            return F_TYPE;
        if (IS("value"))
            return F_VALUE;
        return F_UNKNOWN;
    case FR_TS_META:
    case FR_CD_META:
        return F_META_KEY;
    default:
        return F_UNKNOWN;
    }
#undef IS
}

static struct frame *top(struct kts_decoder *d)
{
    return d->depth > 0 ? &d->frames[d->depth - 1] : NULL;
}

int dec_push(struct kts_decoder *d, enum frame_kind kind, bool is_map)
{
    if (d->depth >= KTS_FORMAT_MAX_DEPTH)
        return dec_fail(d, -ERANGE, "nested deeper than %d levels", KTS_FORMAT_MAX_DEPTH);
    struct frame *f = &d->frames[d->depth++];
    f->kind = kind;
    f->is_map = is_map;
    f->count = 0;
    f->field = F_UNKNOWN;
    f->seen = 0;
    f->key_len = 0;
    f->key[0] = '\0';
    return 1;
}

/* Called for every value (scalar or container start) inside a frame: counts array elements. */
static void element(struct frame *f)
{
    if (f != NULL && !f->is_map)
        f->count++;
}

const char *dec_expect_of(enum frame_kind parent, enum field field)
{
    if (parent == FR_TS_ROOT || parent == FR_CD_VL) {
        switch (field) {
        case F_V:
            return "the integer 1";
        case F_TIME:
        case F_INTERVAL:
            return "a number (seconds)";
        case F_DS:
        case F_VALUES:
        case F_DSTYPES:
        case F_DSNAMES:
            return "an array";
        case F_META:
            return "an object";
        default:
            return "a string";
        }
    }
    if (parent == FR_TS_DS)
        return field == F_VALUE ? "a number or null" : "a string";
    if (parent == FR_TS_META_ENTRY)
        return field == F_VALUE ? "a scalar" : "a string";
    return "a scalar";
}

/* The frames of the time-series JSON; the others but FR_SKIP are collectd's JSON. */
static bool is_ts_kind(enum frame_kind kind)
{
    switch (kind) {
    case FR_TS_ROOT:
    case FR_TS_DS_ARRAY:
    case FR_TS_DS:
    case FR_TS_META:
    case FR_TS_META_ENTRY:
        return true;
    default:
        return false;
    }
}

static int on_open(struct kts_decoder *d, bool is_map)
{
    struct frame *f = top(d);
    if (f == NULL) {
        if (d->root_done)
            return dec_fail(d, -EINVAL, "trailing data after the message");
        if (is_map) {
            if (!dec_vl_begin(d))
                return 0;
            return dec_push(d, FR_TS_ROOT, true);
        }
        return dec_push(d, FR_CD_ROOT, false);
    }
    element(f);
    if (f->kind == FR_SKIP)
        return dec_push(d, FR_SKIP, is_map);
    if (is_ts_kind(f->kind))
        return dec_ts_open(d, f, is_map);
    return dec_cd_open(d, f, is_map);
}

static int on_key(struct kts_decoder *d, const char *k, size_t n)
{
    struct frame *f = top(d);
    KTS_ASSERT(f != NULL && f->is_map); /* yajl calls it inside an object only */
    if (!kts_fmt_utf8_valid(k, n))
        return dec_fail(d, -EINVAL,
                        "invalid UTF-8 in a key (overlong form, surrogate or above "
                        "U+10FFFF)");
    f->count++;
    f->key_len = n;
    size_t c = n < KTS_NAME_MAX - 1 ? n : KTS_NAME_MAX - 1;
    memcpy(f->key, k, c);
    f->key[c] = '\0';
    if (f->kind == FR_SKIP) {
        f->field = F_UNKNOWN;
        return 1;
    }
    f->field = field_of(f->kind, k, n);
    if (f->field != F_UNKNOWN && f->field != F_META_KEY) {
        if (f->seen & BIT(f->field))
            return dec_fail(d, -EINVAL, "duplicate field");
        f->seen |= BIT(f->field);
    }
    return 1;
}

/* A name field of the value list. */
static int vl_name(struct kts_decoder *d, enum field field, const char *s, size_t len)
{
    struct kts_vl *vl = &dec_cur_vl(d)->vl;
    switch (field) {
    case F_HOST:
        return dec_take_name(d, vl->host, s, len, true);
    case F_PLUGIN:
        return dec_take_name(d, vl->plugin, s, len, true);
    case F_PLUGIN_INSTANCE:
        return dec_take_name(d, vl->plugin_instance, s, len, false);
    case F_TYPE:
        return dec_take_name(d, vl->type, s, len, true);
    case F_TYPE_INSTANCE:
        return dec_take_name(d, vl->type_instance, s, len, false);
    default:
        return dec_fail(d, -EINVAL, "internal error: not a name field");
    }
}

static bool is_name_field(enum field f)
{
    return f == F_HOST || f == F_PLUGIN || f == F_PLUGIN_INSTANCE || f == F_TYPE ||
           f == F_TYPE_INSTANCE;
}

/* Fields of the value list common to both formats: names, time, interval. */
int dec_vl_scalar(struct kts_decoder *d, struct frame *f, enum scalar k, const char *s, size_t len)
{
    struct pvl *p = dec_cur_vl(d);
    if (is_name_field(f->field)) {
        if (k != SC_STRING)
            return dec_fail(d, -EINVAL, "expected a string, got %s", dec_scalar_name(k));
        p->seen |= BIT(f->field);
        return vl_name(d, f->field, s, len);
    }
    if (f->field == F_TIME || f->field == F_INTERVAL) {
        if (k != SC_NUMBER)
            return dec_fail(d, -EINVAL, "expected a number (seconds), got %s", dec_scalar_name(k));
        p->seen |= BIT(f->field);
        return dec_to_cdtime(d, s, len, f->field == F_TIME ? "time" : "interval",
                             f->field == F_TIME ? &p->vl.time : &p->vl.interval);
    }
    if (f->field == F_UNKNOWN)
        return 1;
    return dec_fail(d, -EINVAL, "expected %s, got %s", dec_expect_of(f->kind, f->field),
                    dec_scalar_name(k));
}

static int on_scalar(struct kts_decoder *d, enum scalar k, const char *s, size_t len, bool b)
{
    struct frame *f = top(d);
    if (f == NULL)
        return dec_fail(d, -EINVAL, "expected an object or an array, got %s", dec_scalar_name(k));
    element(f);
    if (k == SC_STRING && !kts_fmt_utf8_valid(s, len))
        return dec_fail(d, -EINVAL, "invalid UTF-8 (overlong form, surrogate or above U+10FFFF)");
    if (f->kind == FR_SKIP)
        return 1;
    if (k == SC_NUMBER && len > KTS_FORMAT_MAX_NUMBER)
        return dec_fail(d, -ERANGE, "number has %zu characters, at most %d are allowed", len,
                        KTS_FORMAT_MAX_NUMBER);
    if (is_ts_kind(f->kind))
        return dec_ts_scalar(d, f, k, s, len, b);
    return dec_cd_scalar(d, f, k, s, len, b);
}

static int on_close(struct kts_decoder *d)
{
    KTS_ASSERT(d->depth > 0); /* yajl closes only what it opened */
    struct frame f = *top(d);
    d->depth--;
    if (f.kind == FR_SKIP)
        return 1;
    if (is_ts_kind(f.kind))
        return dec_ts_close(d, &f, top(d));
    return dec_cd_close(d, &f);
}

/* ------------------------------------------------------------------ yajl glue */

static int cb_null(void *ctx)
{
    return on_scalar(ctx, SC_NULL, "", 0, false);
}

static int cb_boolean(void *ctx, int b)
{
    return on_scalar(ctx, SC_BOOL, "", 0, b != 0);
}

static int cb_number(void *ctx, const char *s, size_t len)
{
    return on_scalar(ctx, SC_NUMBER, s, len, false);
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
    return on_scalar(ctx, SC_STRING, (const char *)s, len, false);
}

static int cb_start_map(void *ctx)
{
    return on_open(ctx, true);
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t len)
{
    return on_key(ctx, (const char *)k, len);
}

static int cb_end(void *ctx)
{
    return on_close(ctx);
}

static int cb_start_array(void *ctx)
{
    return on_open(ctx, false);
}

static const yajl_callbacks callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_boolean,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end,
};

/*
 * yajl turns a lone "\uD800" into '?' and pairs a high surrogate with whatever \u escape
 * follows. Reject such escapes ourselves before parsing. Only called when the message
 * contains "\u" at all. Returns 1 if fine.
 */
static int check_surrogates(struct kts_decoder *d, const char *s, size_t n)
{
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!in_str) {
            in_str = c == '"';
            continue;
        }
        if (c == '"') {
            in_str = false;
            continue;
        }
        if (c != '\\')
            continue;
        if (i + 1 < n && s[i + 1] != 'u') {
            i++;
            continue;
        }
        /* \uXXXX: yajl validates the hex digits; we only look at the code unit. */
        if (i + 6 > n)
            return 1;
        unsigned v = 0;
        for (size_t j = i + 2; j < i + 6; j++) {
            char h = s[j];
            unsigned x = h >= '0' && h <= '9'   ? (unsigned)(h - '0')
                         : h >= 'a' && h <= 'f' ? (unsigned)(h - 'a' + 10)
                         : h >= 'A' && h <= 'F' ? (unsigned)(h - 'A' + 10)
                                                : 0;
            v = v * 16 + x;
        }
        i += 5;
        if (v >= 0xDC00 && v <= 0xDFFF)
            goto bad;
        if (v >= 0xD800 && v <= 0xDBFF) {
            unsigned w = 0;
            if (i + 6 < n + 0 && s[i + 1] == '\\' && s[i + 2] == 'u') {
                for (size_t j = i + 3; j < i + 7 && j < n; j++) {
                    char h = s[j];
                    unsigned x = h >= '0' && h <= '9'   ? (unsigned)(h - '0')
                                 : h >= 'a' && h <= 'f' ? (unsigned)(h - 'a' + 10)
                                 : h >= 'A' && h <= 'F' ? (unsigned)(h - 'A' + 10)
                                                        : 0;
                    w = w * 16 + x;
                }
            }
            if (w < 0xDC00 || w > 0xDFFF)
                goto bad;
            i += 6;
        }
        continue;
    bad:
        d->err = -EINVAL;
        snprintf(d->msg, sizeof(d->msg), "invalid \\u escape: unpaired UTF-16 surrogate (byte %zu)",
                 i - 5);
        return 0;
    }
    return 1;
}

/* Does the message contain "\u" at all? Backslashes are rare: memchr skips to them. */
static bool has_u_escape(const char *s, size_t n)
{
    const char *end = s + n;
    for (const char *p = s; p < end; p++) {
        p = memchr(p, '\\', (size_t)(end - p));
        if (p == NULL || p + 1 >= end)
            return false;
        if (p[1] == 'u')
            return true;
    }
    return false;
}

static void reset(struct kts_decoder *d)
{
    d->err = 0;
    d->msg[0] = '\0';
    d->subpath[0] = '\0';
    d->depth = 0;
    d->root_done = false;
    d->n_vls = d->n_ds = d->n_meta = d->n_strs = 0;
    d->fmt = KTS_FORMAT_UNKNOWN;
}

/* Fix the pointers of every value list now that the pools no longer move. */
static int finish(struct kts_decoder *d)
{
    if (KTS_ARRAY_GROW(d->meta, d->cap_meta_out, d->n_meta) != 0)
        return -ENOMEM;
    for (size_t i = 0; i < d->n_meta; i++) {
        const struct pmeta *pm = &d->pmeta[i];
        struct kts_meta *m = &d->meta[i];
        m->key = d->strs + pm->key_off;
        m->type = pm->type;
        switch (pm->type) {
        case KTS_META_STRING:
            m->value.string = d->strs + pm->str_off;
            break;
        case KTS_META_SIGNED_INT:
            m->value.sint = pm->v.sint;
            break;
        case KTS_META_UNSIGNED_INT:
            m->value.uint = pm->v.uint;
            break;
        case KTS_META_DOUBLE:
            m->value.dbl = pm->v.dbl;
            break;
        case KTS_META_BOOLEAN:
            m->value.boolean = pm->v.boolean;
            break;
        }
    }
    for (size_t i = 0; i < d->n_vls; i++) {
        struct pvl *p = &d->vls[i];
        p->vl.ds = p->vl.ds_len ? d->ds + p->ds_start : NULL;
        p->vl.meta = p->vl.meta_len ? d->meta + p->meta_start : NULL;
    }
    return 0;
}

struct kts_decoder *kts_decoder_create(unsigned flags)
{
    struct kts_decoder *d = calloc(1, sizeof(*d));
    if (d != NULL)
        d->flags = flags;
    return d;
}

void kts_decoder_destroy(struct kts_decoder *d)
{
    if (d == NULL)
        return;
    free(d->vls);
    free(d->ds);
    free(d->pmeta);
    free(d->meta);
    free(d->strs);
    kts_fast_destroy(d->fast);
    free(d);
}

static int set_err(char *errbuf, size_t errbuf_size, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int set_err(char *errbuf, size_t errbuf_size, int code, const char *fmt, ...)
{
    if (errbuf != NULL && errbuf_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errbuf_size, fmt, ap);
        va_end(ap);
    }
    return code;
}

int kts_decoder_decode(struct kts_decoder *d, const void *buf, size_t len, enum kts_format *fmt,
                       kts_decode_cb cb, void *opaque, char *errbuf, size_t errbuf_size)
{
    const char *s = buf;
    if (fmt != NULL)
        *fmt = KTS_FORMAT_UNKNOWN;
    if (errbuf != NULL && errbuf_size > 0)
        errbuf[0] = '\0';
    reset(d);

    /* Our own encoder's messages: the hand-written fast path, which accepts a subset of what
     * the yajl path accepts and gives the same value list (kts_format_fast.c). Anything else
     * (including every error) goes on to the yajl path. */
    if (!(d->flags & KTS_DECODE_NO_FAST) && len > 0 && s[0] == '{') {
        if (d->fast == NULL)
            d->fast = kts_fast_create(); /* NULL: no fast path, the yajl path still works */
        struct kts_vl *vl = d->fast != NULL ? kts_fast_decode(d->fast, s, len) : NULL;
        if (vl != NULL) {
            if (fmt != NULL)
                *fmt = KTS_FORMAT_TS;
            int cr = cb != NULL ? cb(vl, opaque) : 0;
            if (cr != 0)
                return set_err(errbuf, errbuf_size, cr,
                               "the callback stopped at value list %zu (%d)", (size_t)0, cr);
            return 0;
        }
    }

    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    if (i == len)
        return set_err(errbuf, errbuf_size, -EINVAL, "empty message (%zu bytes, no JSON)", len);
    if (s[i] == '{')
        d->fmt = KTS_FORMAT_TS;
    else if (s[i] == '[')
        d->fmt = KTS_FORMAT_COLLECTD;
    else
        return set_err(errbuf, errbuf_size, -EINVAL,
                       "not a JSON object or array: first byte is 0x%02x (byte %zu)",
                       (unsigned char)s[i], i);
    if (fmt != NULL)
        *fmt = d->fmt;

    if (has_u_escape(s + i, len - i) && !check_surrogates(d, s, len))
        return set_err(errbuf, errbuf_size, d->err, "%s", d->msg);

    d->h = yajl_alloc(&callbacks, NULL, d);
    if (d->h == NULL)
        return set_err(errbuf, errbuf_size, -ENOMEM, "out of memory");
    /* Every string and key is checked by kts_fmt_utf8_valid(), which is stricter than yajl's
     * check (overlong forms, surrogates): don't pay for both. */
    yajl_config(d->h, yajl_dont_validate_strings, 1);
    yajl_status st = yajl_parse(d->h, (const unsigned char *)s, len);
    bool at_end = false;
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(d->h);
        at_end = true; /* its error is at the end of the input */
    }
    int r = 0;
    if (st == yajl_status_client_canceled || d->err != 0) {
        r = set_err(errbuf, errbuf_size, d->err ? d->err : -EINVAL, "%s", d->msg);
    } else if (st != yajl_status_ok) {
        size_t at = at_end ? len : yajl_get_bytes_consumed(d->h);
        unsigned char *e = yajl_get_error(d->h, 0, (const unsigned char *)s, len);
        char what[200] = "parse error";
        if (e != NULL) {
            snprintf(what, sizeof(what), "%s", (const char *)e);
            yajl_free_error(d->h, e);
            what[strcspn(what, "\n")] = '\0';
        }
        r = set_err(errbuf, errbuf_size, -EINVAL, "malformed JSON: %s (byte %zu of %zu)", what, at,
                    len);
    }
    yajl_free(d->h);
    d->h = NULL;
    if (r != 0)
        return r;
    if (finish(d) != 0)
        return set_err(errbuf, errbuf_size, -ENOMEM, "out of memory");
    for (size_t k = 0; k < d->n_vls; k++) {
        if (cb == NULL)
            continue;
        int cr = cb(&d->vls[k].vl, opaque);
        if (cr != 0)
            return set_err(errbuf, errbuf_size, cr, "the callback stopped at value list %zu (%d)",
                           k, cr);
    }
    return 0;
}

int kts_format_decode(const void *buf, size_t len, unsigned flags, enum kts_format *fmt,
                      kts_decode_cb cb, void *opaque, char *errbuf, size_t errbuf_size)
{
    struct kts_decoder *d = kts_decoder_create(flags);
    if (d == NULL) {
        if (fmt != NULL)
            *fmt = KTS_FORMAT_UNKNOWN;
        return set_err(errbuf, errbuf_size, -ENOMEM, "out of memory");
    }
    int r = kts_decoder_decode(d, buf, len, fmt, cb, opaque, errbuf, errbuf_size);
    kts_decoder_destroy(d);
    return r;
}

struct collect {
    struct kts_vl *vls;
    size_t n, cap;
};

static int collect_cb(struct kts_vl *vl, void *opaque)
{
    struct collect *c = opaque;
    if (KTS_ARRAY_GROW(c->vls, c->cap, c->n + 1) != 0)
        return -ENOMEM;
    int r = kts_vl_copy(&c->vls[c->n], vl);
    if (r != 0)
        return r;
    c->n++;
    return 0;
}

int kts_format_decode_array(const void *buf, size_t len, unsigned flags, enum kts_format *fmt,
                            struct kts_vl **vls_out, size_t *n_out, char *errbuf,
                            size_t errbuf_size)
{
    struct collect c = {0};
    *vls_out = NULL;
    *n_out = 0;
    int r = kts_format_decode(buf, len, flags, fmt, collect_cb, &c, errbuf, errbuf_size);
    if (r != 0) {
        kts_vl_array_free(c.vls, c.n);
        return r;
    }
    *vls_out = c.vls;
    *n_out = c.n;
    return 0;
}