/* SPDX-License-Identifier: MIT */
/*
 * kts_format fast path: a hand-written decoder for the time-series JSON v1 exactly as
 * kts_format_encode() writes it, tried by kts_decoder_decode() before the yajl path.
 *
 * What it guarantees:
 *  1. It accepts only a subset of what the yajl path accepts: one object starting at byte 0,
 *     no white space, the encoder's field order (v, host, plugin, plugin_instance, type,
 *     type_instance, time, interval, ds[{name,type,value}], optional meta{K:{type,value}}),
 *     no unknown fields, and ending at the last byte.
 *  2. For every input it accepts, the value list equals the yajl path's field for field:
 *     names byte for byte including the zero padding after the NUL, time and interval,
 *     every DS (name, type, the value's bits), every meta entry (key, type, value; string
 *     values byte for byte, doubles' bits), in message order.
 *  3. It never reports an error: any input it does not handle, and any input the yajl path
 *     would reject, makes it return NULL and the caller decodes with the yajl path, so error
 *     codes and messages are the yajl path's by construction. Out of memory is a NULL too.
 *  4. Strings: unescaped bytes 0x20-0xFF except '"' and '\\', and the escapes \" \\ \/ \b \f
 *     \n \r \t and \u0001-\u007F; anything else (other \u escapes, control bytes) falls
 *     back. The unescaped string must be valid UTF-8 (kts_fmt_utf8_valid(), as the yajl path
 *     checks), and fit the limits of kts_format.h (names 127 bytes, meta strings 4095).
 *  5. Numbers follow JSON's grammar strictly (leading zeros, "1.", "+1", "-" fall back) and
 *     are converted to the same bits as the yajl path: integers exactly (out of range falls
 *     back), time and interval exactly from at most 10 fractional digits without exponent,
 *     gauges and meta doubles by one IEEE division when the mantissa has at most 2^53 and
 *     at most 22 fractional digits (Clinger's exact case), otherwise by kts_fmt_strtod_c()
 *     like the yajl path (a result out of the double range falls back).
 *  6. Limits: 1-64 data sources, 0-64 meta entries with non-empty, distinct keys; more falls
 *     back (the yajl path then reports the limit).
 *  7. Memory: the fixed arrays of struct kts_fast plus one string buffer of at most the
 *     largest message with meta data seen; kept for the next message.
 *
 * Tests: tests/t-format-fast.c (1-2 golden files and 100,000+ random value lists against the
 * yajl path; 3 every single-byte mutation of sample messages through both paths).
 */
#include "kts_assert.h"
#include "kts_format.h"
#include "kts_format_impl.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct kts_fast {
    struct kts_vl vl;
    struct kts_ds ds[KTS_FORMAT_MAX_DS];
    struct kts_meta meta[KTS_FORMAT_MAX_META];
    size_t key_len[KTS_FORMAT_MAX_META];
    char *strs; /* meta keys and strings; never moves while a message is decoded */
    size_t cap_strs;
};

struct kts_fast *kts_fast_create(void)
{
    return calloc(1, sizeof(struct kts_fast));
}

void kts_fast_destroy(struct kts_fast *f)
{
    if (f == NULL)
        return;
    free(f->strs);
    free(f);
}

/* A cursor over the message: `p` moves, `e` is the end. */
struct cur {
    const char *p, *e;
};

static inline bool lit(struct cur *c, const char *s, size_t n)
{
    if ((size_t)(c->e - c->p) < n || memcmp(c->p, s, n) != 0)
        return false;
    c->p += n;
    return true;
}
#define LIT(c, s) lit((c), (s), sizeof(s) - 1)

static inline int hexval(char h)
{
    if (h >= '0' && h <= '9')
        return h - '0';
    if (h >= 'a' && h <= 'f')
        return h - 'a' + 10;
    if (h >= 'A' && h <= 'F')
        return h - 'A' + 10;
    return -1;
}

/*
 * The JSON string at c->p (which must be '"') unescaped into dst (room for max bytes plus a
 * NUL). Returns its length, or -1 for anything to leave to the yajl path (see 4).
 */
static long string(struct cur *c, char *dst, size_t max)
{
    const unsigned char *p = (const unsigned char *)c->p, *e = (const unsigned char *)c->e;
    if (p >= e || *p != '"')
        return -1;
    p++;
    size_t n = 0;
    bool high = false;
    for (;;) {
        if (p >= e)
            return -1;
        unsigned ch = *p;
        if (ch == '"')
            break;
        if (n >= max)
            return -1;
        if (ch >= 0x20 && ch != '\\') {
            high |= ch >= 0x80;
            dst[n++] = (char)ch;
            p++;
            continue;
        }
        if (ch < 0x20 || p + 1 >= e)
            return -1;
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
            dst[n++] = (char)p[1];
            p += 2;
            continue;
        case 'b':
            dst[n++] = '\b';
            p += 2;
            continue;
        case 'f':
            dst[n++] = '\f';
            p += 2;
            continue;
        case 'n':
            dst[n++] = '\n';
            p += 2;
            continue;
        case 'r':
            dst[n++] = '\r';
            p += 2;
            continue;
        case 't':
            dst[n++] = '\t';
            p += 2;
            continue;
        case 'u': {
            if (e - p < 6 || p[2] != '0' || p[3] != '0')
                return -1;
            int hi = hexval((char)p[4]), lo = hexval((char)p[5]);
            if (hi < 0 || lo < 0 || hi > 7 || (hi == 0 && lo == 0))
                return -1;
            dst[n++] = (char)(hi * 16 + lo);
            p += 6;
            continue;
        }
        default:
            return -1;
        }
    }
    if (high && !kts_fmt_utf8_valid(dst, n))
        return -1;
    dst[n] = '\0';
    c->p = (const char *)p + 1;
    return (long)n;
}

/* A name field into a KTS_NAME_MAX buffer, zero-padded like the yajl path leaves it. */
static bool name(struct cur *c, char *dst, bool nonempty)
{
    long n = string(c, dst, KTS_NAME_MAX - 1);
    if (n < 0 || (nonempty && n == 0))
        return false;
    memset(dst + n, 0, KTS_NAME_MAX - (size_t)n);
    return true;
}

/* Digits of an unsigned JSON integer (no sign, no leading zero) that fits 64 bits. */
static bool u64_digits(struct cur *c, uint64_t *out)
{
    const char *p = c->p, *e = c->e;
    if (p >= e || *p < '0' || *p > '9')
        return false;
    if (*p == '0') {
        c->p = p + 1;
        *out = 0;
        /* "01" is not JSON; the next literal check rejects any digit that follows. */
        return true;
    }
    uint64_t v = 0;
    for (; p < e && *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    c->p = p;
    *out = v;
    return true;
}

static bool u64_value(struct cur *c, uint64_t *out)
{
    return u64_digits(c, out);
}

static bool i64_value(struct cur *c, int64_t *out)
{
    bool neg = c->p < c->e && *c->p == '-';
    if (neg)
        c->p++;
    uint64_t m;
    if (!u64_digits(c, &m) || m > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
        return false;
    *out = neg ? (int64_t)(0 - m) : (int64_t)m;
    return true;
}

/* time/interval: INT[.FRAC] with at most 10 fractional digits, to the nearest cdtime (ties
 * up), exactly as the yajl path's to_cdtime() does (see docs/FORMAT.md 1.3). */
static bool time_value(struct cur *c, kts_time_t *out)
{
    uint64_t sec;
    const char *start = c->p;
    if (!u64_digits(c, &sec) || c->p - start > 11 || sec >= (UINT64_C(1) << 34))
        return false;
    uint64_t frac = 0;
    if (c->p < c->e && *c->p == '.') {
        const char *p = c->p + 1, *e = c->e;
        uint64_t v = 0;
        size_t n = 0;
        for (; p < e && *p >= '0' && *p <= '9'; p++, n++) {
            if (n == 10)
                return false;
            v = v * 10 + (uint64_t)(*p - '0');
        }
        if (n == 0)
            return false;
        /* round(v / 10^n * 2^30), half up; (10^10 - 1) << 30 still fits 64 bits. */
        if (n == 10) {
            frac = ((v << 30) + UINT64_C(5000000000)) / UINT64_C(10000000000);
        } else {
            uint64_t p10 = 1;
            for (size_t i = 0; i < n; i++)
                p10 *= 10;
            frac = ((v << 30) + p10 / 2) / p10;
        }
        c->p = p;
    }
    if (__builtin_add_overflow(sec << 30, frac, out))
        return false;
    return true;
}

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A gauge or meta double: a JSON number (strict grammar) or null (NaN), see 5. */
static bool double_value(struct cur *c, double *out)
{
    const char *s = c->p, *p = s, *e = c->e;
    if (e - p >= 4 && memcmp(p, "null", 4) == 0) {
        c->p = p + 4;
        *out = NAN;
        return true;
    }
    bool neg = p < e && *p == '-';
    if (neg)
        p++;
    if (p >= e || *p < '0' || *p > '9')
        return false;
    uint64_t m = 0;
    int nd = 0, nfrac = 0; /* significant digits in m (leading zeros of m do not count) */
    bool exact = true;
    if (*p == '0') {
        p++;
    } else {
        for (; p < e && *p >= '0' && *p <= '9'; p++) {
            if (nd < 19)
                m = m * 10 + (uint64_t)(*p - '0');
            else
                exact = false;
            nd++;
        }
    }
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9')
            return false;
        for (; p < e && *p >= '0' && *p <= '9'; p++) {
            if (m != 0 || *p != '0')
                nd++;
            if (nd <= 19)
                m = m * 10 + (uint64_t)(*p - '0');
            else
                exact = false;
            nfrac++;
        }
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        exact = false;
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || *p < '0' || *p > '9')
            return false;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    size_t len = (size_t)(p - s);
    if (len > KTS_FORMAT_MAX_NUMBER)
        return false;
    double x;
    if (exact && nfrac <= 22 && m <= (UINT64_C(1) << 53)) {
        /* m and 10^nfrac are exact doubles: one correctly rounded division, the same result
         * as strtod's correctly rounded conversion. */
        x = (double)m / pow10_exact[nfrac];
        if (neg)
            x = -x;
    } else {
        char tmp[KTS_FORMAT_MAX_NUMBER + 1];
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        char *end;
        x = kts_fmt_strtod_c(tmp, &end);
        if (end != tmp + len || isinf(x))
            return false;
    }
    c->p = p;
    *out = x;
    return true;
}

static bool ds_one(struct cur *c, struct kts_ds *ds)
{
    if (!LIT(c, "{\"name\":") || !name(c, ds->name, true) || !LIT(c, ",\"type\":\""))
        return false;
    if (LIT(c, "gauge\",\"value\":")) {
        ds->type = KTS_DS_GAUGE;
        if (!double_value(c, &ds->value.gauge))
            return false;
    } else if (LIT(c, "derive\",\"value\":")) {
        ds->type = KTS_DS_DERIVE;
        if (!i64_value(c, &ds->value.derive))
            return false;
    } else if (LIT(c, "counter\",\"value\":")) {
        ds->type = KTS_DS_COUNTER;
        if (!u64_value(c, &ds->value.counter))
            return false;
    } else if (LIT(c, "absolute\",\"value\":")) {
        ds->type = KTS_DS_ABSOLUTE;
        if (!u64_value(c, &ds->value.absolute))
            return false;
    } else {
        return false;
    }
    return LIT(c, "}");
}

/* The meta object after "meta":{ ; strings go to f->strs (room for the whole message). */
static bool meta_all(struct kts_fast *f, struct cur *c)
{
    size_t used = 0;
    if (LIT(c, "}"))
        return true;
    for (;;) {
        size_t i = f->vl.meta_len;
        if (i >= KTS_FORMAT_MAX_META)
            return false;
        struct kts_meta *m = &f->meta[i];
        char *key = f->strs + used;
        long kl = string(c, key, KTS_NAME_MAX - 1);
        if (kl <= 0)
            return false;
        for (size_t j = 0; j < i; j++)
            if (f->key_len[j] == (size_t)kl && memcmp(f->meta[j].key, key, (size_t)kl) == 0)
                return false;
        m->key = key;
        f->key_len[i] = (size_t)kl;
        used += (size_t)kl + 1;
        KTS_ASSERT(used <= f->cap_strs); /* unescaping never makes a string longer */
        if (!LIT(c, ":{\"type\":\""))
            return false;
        if (LIT(c, "string\",\"value\":")) {
            m->type = KTS_META_STRING;
            char *str = f->strs + used;
            long sl = string(c, str, KTS_FORMAT_MAX_META_STRING);
            if (sl < 0)
                return false;
            m->value.string = str;
            used += (size_t)sl + 1;
            KTS_ASSERT(used <= f->cap_strs);
        } else if (LIT(c, "signed_int\",\"value\":")) {
            m->type = KTS_META_SIGNED_INT;
            if (!i64_value(c, &m->value.sint))
                return false;
        } else if (LIT(c, "unsigned_int\",\"value\":")) {
            m->type = KTS_META_UNSIGNED_INT;
            if (!u64_value(c, &m->value.uint))
                return false;
        } else if (LIT(c, "double\",\"value\":")) {
            m->type = KTS_META_DOUBLE;
            if (!double_value(c, &m->value.dbl))
                return false;
        } else if (LIT(c, "boolean\",\"value\":")) {
            m->type = KTS_META_BOOLEAN;
            if (LIT(c, "true"))
                m->value.boolean = true;
            else if (LIT(c, "false"))
                m->value.boolean = false;
            else
                return false;
        } else {
            return false;
        }
        if (!LIT(c, "}"))
            return false;
        f->vl.meta_len++;
        if (LIT(c, "}"))
            return true;
        if (!LIT(c, ","))
            return false;
    }
}

struct kts_vl *kts_fast_decode(struct kts_fast *f, const char *s, size_t len)
{
    struct cur c = {s, s + len};
    struct kts_vl *vl = &f->vl;
    vl->ds_len = 0;
    vl->meta_len = 0;
    if (!LIT(&c, "{\"v\":1,\"host\":") || !name(&c, vl->host, true) || !LIT(&c, ",\"plugin\":") ||
        !name(&c, vl->plugin, true) || !LIT(&c, ",\"plugin_instance\":") ||
        !name(&c, vl->plugin_instance, false) || !LIT(&c, ",\"type\":") ||
        !name(&c, vl->type, true) || !LIT(&c, ",\"type_instance\":") ||
        !name(&c, vl->type_instance, false) || !LIT(&c, ",\"time\":") ||
        !time_value(&c, &vl->time) || !LIT(&c, ",\"interval\":") ||
        !time_value(&c, &vl->interval) || !LIT(&c, ",\"ds\":["))
        return NULL;
    for (;;) {
        if (vl->ds_len >= KTS_FORMAT_MAX_DS || !ds_one(&c, &f->ds[vl->ds_len]))
            return NULL;
        vl->ds_len++;
        if (LIT(&c, "]"))
            break;
        if (!LIT(&c, ","))
            return NULL;
    }
    if (LIT(&c, ",\"meta\":{")) {
        /* Unescaped strings plus their NULs never exceed the message's length. */
        if (f->cap_strs < len) {
            char *p = realloc(f->strs, len);
            if (p == NULL)
                return NULL;
            f->strs = p;
            f->cap_strs = len;
        }
        if (!meta_all(f, &c))
            return NULL;
    }
    if (!LIT(&c, "}") || c.p != c.e)
        return NULL;
    vl->ds = f->ds;
    vl->meta = vl->meta_len > 0 ? f->meta : NULL;
    return vl;
}
