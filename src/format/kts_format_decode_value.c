/* SPDX-License-Identifier: MIT */
/*
 * kts_format decoder, the value layer: error messages, the pools a message is decoded into,
 * and every scalar both formats share (names, integers, doubles, times, data source values,
 * meta entries). kts_format_decode_impl.h says how the decoder is split.
 */
#include "kts_assert.h"
#include "kts_format_decode_impl.h"
#include "kts_format_impl.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ errors */

static size_t offset_now(const struct kts_decoder *d)
{
    return d->h != NULL ? yajl_get_bytes_consumed(d->h) : 0;
}

/* The path of the current position ("ds[1].value", "[0].dsnames[2]") into `out`. */
static void path_of(const struct kts_decoder *d, char *out, size_t size)
{
    size_t pos = 0;
    out[0] = '\0';
    for (int i = 0; i < d->depth && pos + 1 < size; i++) {
        const struct frame *f = &d->frames[i];
        int n = 0;
        if (f->is_map && f->count > 0) {
            size_t kl = f->key_len < 48 ? f->key_len : 48;
            n = snprintf(out + pos, size - pos, "%s%.*s%s", pos > 0 ? "." : "", (int)kl, f->key,
                         kl < f->key_len ? "..." : "");
        } else if (!f->is_map && f->count > 0) {
            n = snprintf(out + pos, size - pos, "[%zu]", f->count - 1);
        }
        if (n < 0)
            break;
        pos += (size_t)n;
    }
    if (d->subpath[0] != '\0' && pos + 1 < size)
        snprintf(out + pos, size - pos, "%s%s", pos > 0 ? "." : "", d->subpath);
    /* Keys may hold control bytes: keep the message on one line. */
    for (char *p = out; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20)
            *p = '?';
}

/* Record the first error (code is a negative errno) and return 0 to make yajl stop. */
int dec_fail(struct kts_decoder *d, int code, const char *fmt, ...)
{
    if (d->err != 0)
        return 0;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    char path[200];
    path_of(d, path, sizeof(path));
    d->err = code;
    if (path[0] != '\0')
        snprintf(d->msg, sizeof(d->msg), "%s: %s (byte %zu)", path, what, offset_now(d));
    else
        snprintf(d->msg, sizeof(d->msg), "%s (byte %zu)", what, offset_now(d));
    return 0;
}

const char *dec_scalar_name(enum scalar k)
{
    switch (k) {
    case SC_NULL:
        return "null";
    case SC_BOOL:
        return "a boolean";
    case SC_NUMBER:
        return "a number";
    case SC_STRING:
        return "a string";
    }
    return "?";
}

/* ------------------------------------------------------------------ pools */

/* Copy `s`/`len` and a NUL into the string pool; *off receives its offset. */
int dec_str_add(struct kts_decoder *d, const char *s, size_t len, size_t *off)
{
    if (KTS_ARRAY_GROW(d->strs, d->cap_strs, d->n_strs + len + 1) != 0)
        return dec_fail(d, -ENOMEM, "out of memory");
    memcpy(d->strs + d->n_strs, s, len);
    d->strs[d->n_strs + len] = '\0';
    *off = d->n_strs;
    d->n_strs += len + 1;
    return 1;
}

struct pvl *dec_cur_vl(struct kts_decoder *d)
{
    KTS_ASSERT(d->n_vls > 0); /* only called inside a value list */
    return &d->vls[d->n_vls - 1];
}

int dec_vl_begin(struct kts_decoder *d)
{
    if (d->n_vls >= KTS_FORMAT_MAX_VLS)
        return dec_fail(d, -ERANGE, "more than %d value lists in one message", KTS_FORMAT_MAX_VLS);
    if (KTS_ARRAY_GROW(d->vls, d->cap_vls, d->n_vls + 1) != 0)
        return dec_fail(d, -ENOMEM, "out of memory");
    struct pvl *p = &d->vls[d->n_vls++];
    memset(&p->vl, 0, sizeof(p->vl));
    p->ds_start = d->n_ds;
    p->meta_start = d->n_meta;
    p->seen = 0;
    d->cd_n_values = d->cd_n_types = d->cd_n_names = 0;
    return 1;
}

/* ------------------------------------------------------------------ strings and numbers */

/* A name: at most KTS_NAME_MAX-1 bytes, no NUL, copied into dst. */
int dec_take_name(struct kts_decoder *d, char *dst, const char *s, size_t len, bool nonempty)
{
    if (len > KTS_NAME_MAX - 1)
        return dec_fail(d, -ERANGE, "name is %zu bytes long, at most %d are allowed", len,
                        KTS_NAME_MAX - 1);
    if (memchr(s, '\0', len) != NULL)
        return dec_fail(d, -EINVAL, "name contains a NUL character");
    if (nonempty && len == 0)
        return dec_fail(d, -EINVAL, "must not be empty");
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 1;
}

/* A JSON integer's text (yajl checked the number syntax). Returns 1 if `s` is an integer (no
 * fraction, no exponent) that fits 64 bits of magnitude, 0 if not an integer, -1 if too big. */
int dec_parse_integer(const char *s, size_t len, bool *neg, uint64_t *mag)
{
    size_t i = 0;
    *neg = false;
    *mag = 0;
    if (i < len && s[i] == '-') {
        *neg = true;
        i++;
    }
    if (i == len)
        return 0;
    uint64_t v = 0;
    bool over = false;
    for (; i < len; i++) {
        unsigned c = (unsigned char)s[i] - '0';
        if (c > 9)
            return 0;
        if (v > (UINT64_MAX - c) / 10)
            over = true;
        else
            v = v * 10 + c;
    }
    if (over)
        return -1;
    *mag = v;
    return 1;
}

int dec_to_u64(struct kts_decoder *d, const char *s, size_t len, const char *what, uint64_t *out)
{
    bool neg;
    uint64_t mag;
    int r = dec_parse_integer(s, len, &neg, &mag);
    if (r == 0)
        return dec_fail(d, -EINVAL, "%s value %.*s is not an integer", what,
                        (int)(len < 40 ? len : 40), s);
    if (neg && (r < 0 || mag != 0))
        return dec_fail(d, -ERANGE, "%s value %.*s must not be negative", what,
                        (int)(len < 40 ? len : 40), s);
    if (r < 0)
        return dec_fail(d, -ERANGE, "%s value %.*s does not fit 64 bits", what,
                        (int)(len < 40 ? len : 40), s);
    *out = mag;
    return 1;
}

int dec_to_i64(struct kts_decoder *d, const char *s, size_t len, const char *what, int64_t *out)
{
    bool neg;
    uint64_t mag;
    int r = dec_parse_integer(s, len, &neg, &mag);
    if (r == 0)
        return dec_fail(d, -EINVAL, "%s value %.*s is not an integer", what,
                        (int)(len < 40 ? len : 40), s);
    if (r < 0 || mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
        return dec_fail(d, -ERANGE, "%s value %.*s does not fit a signed 64-bit integer", what,
                        (int)(len < 40 ? len : 40), s);
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return 1;
}

/* A double from a JSON number (correctly rounded); out of the double range is an error. */
int dec_to_double(struct kts_decoder *d, const char *s, size_t len, const char *what, double *out)
{
    char tmp[KTS_FORMAT_MAX_NUMBER + 1];
    KTS_ASSERT(len <= KTS_FORMAT_MAX_NUMBER); /* on_scalar() refused longer numbers */
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    char *end;
    double x = kts_fmt_strtod_c(tmp, &end);
    if (end != tmp + len)
        return dec_fail(d, -EINVAL, "%s value %s is not a number", what, tmp);
    if (isinf(x)) {
        /* collectd's %.15g rounds DBL_MAX up to 1.79769313486232e+308, just beyond the range:
         * read what lies within that rounding as +-DBL_MAX, anything larger is an error.
         * Compare at 10^-10 of the value, where both sides are finite doubles (correctly
         * rounded conversion is monotonic). */
        char scaled[KTS_FORMAT_MAX_NUMBER + 32];
        size_t m = strcspn(tmp, "eE");
        long e = m < len ? strtol(tmp + m + 1, NULL, 10) : 0;
        snprintf(scaled, sizeof(scaled), "%.*se%ld", (int)m, tmp, e - 10);
        if (fabs(kts_fmt_strtod_c(scaled, NULL)) > kts_fmt_strtod_c("1.79769313486232e298", NULL))
            return dec_fail(d, -ERANGE, "%s value %.40s is out of the range of a double", what,
                            tmp);
        x = copysign(DBL_MAX, x);
    }
    *out = x;
    return 1;
}

/*
 * round(0.F * 2^30) for the fraction digits F (ASCII '0'..'9', n <= 2 * KTS_FORMAT_MAX_NUMBER
 * of them), rounding half up;
 * the result may be 2^30. Exact for any n: up to 18 digits with 128-bit arithmetic, beyond
 * that by doubling the decimal fraction 31 times (each doubling's carry is the next bit).
 */
static uint64_t frac_to_cdtime(const char *f, size_t n)
{
    while (n > 0 && f[n - 1] == '0')
        n--;
    if (n == 0)
        return 0;
    if (n <= 18) {
        uint64_t v = 0, p10 = 1;
        for (size_t i = 0; i < n; i++) {
            v = v * 10 + (uint64_t)(f[i] - '0');
            p10 *= 10;
        }
        unsigned __int128 x = ((unsigned __int128)v << 30) + p10 / 2;
        return (uint64_t)(x / p10);
    }
    unsigned char dig[2 * KTS_FORMAT_MAX_NUMBER];
    for (size_t i = 0; i < n; i++)
        dig[i] = (unsigned char)(f[i] - '0');
    uint64_t r = 0;
    for (int bit = 0; bit < 31; bit++) {
        unsigned carry = 0;
        for (size_t i = n; i-- > 0;) {
            unsigned v = dig[i] * 2u + carry;
            dig[i] = (unsigned char)(v % 10);
            carry = v / 10;
        }
        r = (r << 1) | carry;
    }
    /* r holds 31 bits: the 30 of the fraction and the half bit. */
    return (r >> 1) + (r & 1);
}

/*
 * A time or interval: decimal seconds (any number of fractional digits, exponent allowed) to
 * the nearest cdtime_t, exactly (no floating point). Negative is an error, except -0.
 */
int dec_to_cdtime(struct kts_decoder *d, const char *s, size_t len, const char *what,
                  kts_time_t *out)
{
    /* Split into mantissa digits and a decimal exponent: value = 0.DIGITS * 10^point. */
    char digits[KTS_FORMAT_MAX_NUMBER];
    size_t nd = 0, i = 0;
    bool neg = false;
    long point = 0;
    if (s[i] == '-') {
        neg = true;
        i++;
    }
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, point++)
        digits[nd++] = s[i];
    if (i < len && s[i] == '.')
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            digits[nd++] = s[i];
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        bool eneg = false;
        long e = 0;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            if (e < 100000)
                e = e * 10 + (s[i] - '0');
        point += eneg ? -e : e;
    }
    /* Leading zeros do not count. */
    size_t lead = 0;
    while (lead < nd && digits[lead] == '0') {
        lead++;
        point--;
    }
    const char *m = digits + lead;
    size_t nm = nd - lead;
    while (nm > 0 && m[nm - 1] == '0')
        nm--;
    if (nm == 0) {
        *out = 0;
        return 1;
    }
    if (neg)
        return dec_fail(d, -ERANGE, "%s %.*s is negative", what, (int)(len < 40 ? len : 40), s);
    /* Seconds must fit the 34 bits cdtime_t has for them: at most 11 digits. */
    if (point > 11)
        return dec_fail(d, -ERANGE, "%s %.*s is too large", what, (int)(len < 40 ? len : 40), s);
    uint64_t sec = 0;
    for (long k = 0; k < point; k++)
        sec = sec * 10 + (uint64_t)((size_t)k < nm ? m[k] - '0' : 0);
    uint64_t frac;
    if (point >= (long)nm) {
        frac = 0;
    } else if (point >= 0) {
        frac = frac_to_cdtime(m + point, nm - (size_t)point);
    } else if (point < -(long)KTS_FORMAT_MAX_NUMBER) {
        frac = 0; /* below 10^-400 s: rounds to zero */
    } else {
        /* 0.000DIGITS: prepend the zeros. */
        char f[2 * KTS_FORMAT_MAX_NUMBER];
        size_t z = (size_t)-point;
        memset(f, '0', z);
        memcpy(f + z, m, nm);
        frac = frac_to_cdtime(f, z + nm);
    }
    uint64_t t;
    if (sec >= (UINT64_C(1) << 34) || __builtin_add_overflow(sec << 30, frac, &t))
        return dec_fail(d, -ERANGE, "%s %.*s is too large", what, (int)(len < 40 ? len : 40), s);
    *out = t;
    return 1;
}

int dec_ds_type_from(const char *s, size_t len, enum kts_ds_type *t)
{
    static const struct {
        const char *name;
        enum kts_ds_type type;
    } map[] = {{"gauge", KTS_DS_GAUGE},
               {"derive", KTS_DS_DERIVE},
               {"counter", KTS_DS_COUNTER},
               {"absolute", KTS_DS_ABSOLUTE}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strlen(map[i].name) == len && memcmp(map[i].name, s, len) == 0) {
            *t = map[i].type;
            return 0;
        }
    return -1;
}

int dec_meta_type_from(const char *s, size_t len, enum kts_meta_type *t)
{
    static const struct {
        const char *name;
        enum kts_meta_type type;
    } map[] = {{"string", KTS_META_STRING},
               {"signed_int", KTS_META_SIGNED_INT},
               {"unsigned_int", KTS_META_UNSIGNED_INT},
               {"double", KTS_META_DOUBLE},
               {"boolean", KTS_META_BOOLEAN}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strlen(map[i].name) == len && memcmp(map[i].name, s, len) == 0) {
            *t = map[i].type;
            return 0;
        }
    return -1;
}

/* A data source value from its text (or null) and type. */
int dec_ds_value(struct kts_decoder *d, struct kts_ds *ds, bool is_null, const char *s, size_t len)
{
    const char *tn = kts_ds_type_name(ds->type);
    if (is_null) {
        if (ds->type != KTS_DS_GAUGE)
            return dec_fail(d, -EINVAL, "null is only allowed for gauges, this is a %s", tn);
        ds->value.gauge = NAN;
        return 1;
    }
    switch (ds->type) {
    case KTS_DS_GAUGE:
        return dec_to_double(d, s, len, tn, &ds->value.gauge);
    case KTS_DS_DERIVE:
        return dec_to_i64(d, s, len, tn, &ds->value.derive);
    case KTS_DS_COUNTER:
        return dec_to_u64(d, s, len, tn, &ds->value.counter);
    case KTS_DS_ABSOLUTE:
        return dec_to_u64(d, s, len, tn, &ds->value.absolute);
    }
    return dec_fail(d, -EINVAL, "unknown data source type");
}

/* ------------------------------------------------------------------ meta */

int dec_meta_begin(struct kts_decoder *d, const char *key, size_t klen)
{
    struct pvl *p = dec_cur_vl(d);
    if (p->vl.meta_len >= KTS_FORMAT_MAX_META)
        return dec_fail(d, -ERANGE, "more than %d meta entries", KTS_FORMAT_MAX_META);
    if (klen > KTS_NAME_MAX - 1)
        return dec_fail(d, -ERANGE, "meta key is %zu bytes long, at most %d are allowed", klen,
                        KTS_NAME_MAX - 1);
    if (klen == 0)
        return dec_fail(d, -EINVAL, "meta key must not be empty");
    if (memchr(key, '\0', klen) != NULL)
        return dec_fail(d, -EINVAL, "meta key contains a NUL character");
    for (size_t i = p->meta_start; i < d->n_meta; i++) {
        const char *k = d->strs + d->pmeta[i].key_off;
        if (strlen(k) == klen && memcmp(k, key, klen) == 0)
            return dec_fail(d, -EINVAL, "duplicate meta key");
    }
    return 1;
}

/* Append a meta entry to the current value list (dec_meta_begin() checked the key). */
int dec_meta_add(struct kts_decoder *d, const char *key, size_t klen, struct pmeta *m,
                 const char *str, size_t slen)
{
    if (KTS_ARRAY_GROW(d->pmeta, d->cap_meta, d->n_meta + 1) != 0)
        return dec_fail(d, -ENOMEM, "out of memory");
    if (!dec_str_add(d, key, klen, &m->key_off))
        return 0;
    if (m->type == KTS_META_STRING) {
        if (slen > KTS_FORMAT_MAX_META_STRING)
            return dec_fail(d, -ERANGE, "meta string is %zu bytes long, at most %d are allowed",
                            slen, KTS_FORMAT_MAX_META_STRING);
        if (memchr(str, '\0', slen) != NULL)
            return dec_fail(d, -EINVAL, "meta string contains a NUL character");
        if (!dec_str_add(d, str, slen, &m->str_off))
            return 0;
    }
    d->pmeta[d->n_meta++] = *m;
    dec_cur_vl(d)->vl.meta_len++;
    return 1;
}

int dec_check_required(struct kts_decoder *d, uint32_t seen, uint32_t need)
{
    static const struct {
        enum field f;
        const char *name;
    } names[] = {{F_V, "v"},           {F_HOST, "host"},       {F_PLUGIN, "plugin"},
                 {F_TYPE, "type"},     {F_TIME, "time"},       {F_DS, "ds"},
                 {F_VALUES, "values"}, {F_DSTYPES, "dstypes"}, {F_DSNAMES, "dsnames"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if ((need & BIT(names[i].f)) && !(seen & BIT(names[i].f)))
            return dec_fail(d, -EINVAL, "missing field \"%s\"", names[i].name);
    return 1;
}
