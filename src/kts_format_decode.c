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
 */
#include "kts_format.h"
#include "kts_format_impl.h"

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

/* ------------------------------------------------------------------ state */

enum frame_kind {
    FR_TS_ROOT,       /* {"v":1,...} */
    FR_TS_DS_ARRAY,   /* "ds":[...] */
    FR_TS_DS,         /* {"name":..,"type":..,"value":..} */
    FR_TS_META,       /* "meta":{...} */
    FR_TS_META_ENTRY, /* {"type":..,"value":..} */
    FR_CD_ROOT,       /* [ {value list}, ... ] */
    FR_CD_VL,         /* {"values":[..],...} */
    FR_CD_VALUES,     /* "values":[...] */
    FR_CD_DSTYPES,    /* "dstypes":[...] */
    FR_CD_DSNAMES,    /* "dsnames":[...] */
    FR_CD_META,       /* "meta":{...} */
    FR_SKIP,          /* the value of a key we do not know: ignored, whatever it holds */
};

enum field {
    F_UNKNOWN = 0,
    F_V,
    F_HOST,
    F_PLUGIN,
    F_PLUGIN_INSTANCE,
    F_TYPE,
    F_TYPE_INSTANCE,
    F_TIME,
    F_INTERVAL,
    F_DS,
    F_META,
    F_VALUES,
    F_DSTYPES,
    F_DSNAMES,
    F_NAME,
    F_VALUE,
    F_META_KEY, /* any key of a meta object */
};

struct frame {
    enum frame_kind kind;
    bool is_map;
    size_t count;     /* arrays: elements started; objects: keys seen */
    enum field field; /* objects: field of the current key */
    uint32_t seen;    /* objects: bit per known field, to reject duplicates */
    size_t key_len;   /* objects: length of the current key (may exceed the copy) */
    char key[KTS_NAME_MAX];
};

/* A value list being decoded: ds and meta are ranges of the pools. */
struct pvl {
    struct kts_vl vl; /* names, time, interval, ds_len, meta_len; ds/meta set at the end */
    size_t ds_start;
    size_t meta_start;
    uint32_t seen; /* fields present */
};

struct pmeta {
    size_t key_off; /* in the string pool */
    enum kts_meta_type type;
    size_t str_off; /* KTS_META_STRING: in the string pool */
    union {
        int64_t sint;
        uint64_t uint;
        double dbl;
        bool boolean;
    } v;
};

enum scalar { SC_NULL, SC_BOOL, SC_NUMBER, SC_STRING };

/* What the current data source object or meta entry has seen so far. */
struct tmp_obj {
    bool has_name, has_type, has_value;
    enum scalar value_kind;
    bool value_bool;
    int type; /* enum kts_ds_type or enum kts_meta_type */
    char name[KTS_NAME_MAX];
    size_t str_len;                           /* meta string value */
    char str[KTS_FORMAT_MAX_META_STRING + 1]; /* meta string value */
    size_t num_len;
    char num[KTS_FORMAT_MAX_NUMBER + 1];
};

struct cd_value {
    bool is_null;
    size_t len;
    char text[KTS_FORMAT_MAX_NUMBER + 1];
};

struct kts_decoder {
    unsigned flags;
    struct kts_fast *fast; /* kts_format_fast.c, created on first use */
    yajl_handle h;
    enum kts_format fmt;
    const char *input; /* the message being decoded */
    size_t input_len;

    /* error */
    int err;
    char msg[512];
    char subpath[64]; /* appended to the path (collectd format: "values[2]") */

    /* parse position */
    int depth; /* frames in use */
    bool root_done;
    struct frame frames[KTS_FORMAT_MAX_DEPTH];

    /* pools */
    struct pvl *vls;
    size_t n_vls, cap_vls;
    struct kts_ds *ds;
    size_t n_ds, cap_ds;
    struct pmeta *pmeta;
    size_t n_meta, cap_meta;
    struct kts_meta *meta; /* built from pmeta at the end */
    size_t cap_meta_out;
    char *strs;
    size_t n_strs, cap_strs;

    /* current objects */
    struct tmp_obj tmp;
    size_t cd_n_values, cd_n_types, cd_n_names;
    struct cd_value cd_values[KTS_FORMAT_MAX_DS];
    enum kts_ds_type cd_types[KTS_FORMAT_MAX_DS];
    char cd_names[KTS_FORMAT_MAX_DS][KTS_NAME_MAX];
};

#define BIT(f) (UINT32_C(1) << (f))

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
static int fail(struct kts_decoder *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct kts_decoder *d, int code, const char *fmt, ...)
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

static const char *scalar_name(enum scalar k)
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

/* Grow *p (elements of `elem` bytes) to hold `need` elements. */
static int pool_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    if (n > SIZE_MAX / elem)
        return -ENOMEM;
    void *q = realloc(*p, n * elem);
    if (q == NULL)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

#define GROW(d, arr, n, cap, need)                                                                 \
    pool_grow((void **)&(d)->arr, &(d)->cap, (need), sizeof(*(d)->arr))

/* Copy `s`/`len` and a NUL into the string pool; *off receives its offset. */
static int str_add(struct kts_decoder *d, const char *s, size_t len, size_t *off)
{
    if (GROW(d, strs, n_strs, cap_strs, d->n_strs + len + 1) != 0)
        return fail(d, -ENOMEM, "out of memory");
    memcpy(d->strs + d->n_strs, s, len);
    d->strs[d->n_strs + len] = '\0';
    *off = d->n_strs;
    d->n_strs += len + 1;
    return 1;
}

static struct pvl *cur_vl(struct kts_decoder *d)
{
    return &d->vls[d->n_vls - 1];
}

static int vl_begin(struct kts_decoder *d)
{
    if (d->n_vls >= KTS_FORMAT_MAX_VLS)
        return fail(d, -ERANGE, "more than %d value lists in one message", KTS_FORMAT_MAX_VLS);
    if (GROW(d, vls, n_vls, cap_vls, d->n_vls + 1) != 0)
        return fail(d, -ENOMEM, "out of memory");
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
static int take_name(struct kts_decoder *d, char *dst, const char *s, size_t len, bool nonempty)
{
    if (len > KTS_NAME_MAX - 1)
        return fail(d, -ERANGE, "name is %zu bytes long, at most %d are allowed", len,
                    KTS_NAME_MAX - 1);
    if (memchr(s, '\0', len) != NULL)
        return fail(d, -EINVAL, "name contains a NUL character");
    if (nonempty && len == 0)
        return fail(d, -EINVAL, "must not be empty");
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 1;
}

/* A JSON integer's text (yajl checked the number syntax). Returns 1 if `s` is an integer (no
 * fraction, no exponent) that fits 64 bits of magnitude, 0 if not an integer, -1 if too big. */
static int parse_integer(const char *s, size_t len, bool *neg, uint64_t *mag)
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

static int to_u64(struct kts_decoder *d, const char *s, size_t len, const char *what, uint64_t *out)
{
    bool neg;
    uint64_t mag;
    int r = parse_integer(s, len, &neg, &mag);
    if (r == 0)
        return fail(d, -EINVAL, "%s value %.*s is not an integer", what, (int)(len < 40 ? len : 40),
                    s);
    if (neg && (r < 0 || mag != 0))
        return fail(d, -ERANGE, "%s value %.*s must not be negative", what,
                    (int)(len < 40 ? len : 40), s);
    if (r < 0)
        return fail(d, -ERANGE, "%s value %.*s does not fit 64 bits", what,
                    (int)(len < 40 ? len : 40), s);
    *out = mag;
    return 1;
}

static int to_i64(struct kts_decoder *d, const char *s, size_t len, const char *what, int64_t *out)
{
    bool neg;
    uint64_t mag;
    int r = parse_integer(s, len, &neg, &mag);
    if (r == 0)
        return fail(d, -EINVAL, "%s value %.*s is not an integer", what, (int)(len < 40 ? len : 40),
                    s);
    if (r < 0 || mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
        return fail(d, -ERANGE, "%s value %.*s does not fit a signed 64-bit integer", what,
                    (int)(len < 40 ? len : 40), s);
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return 1;
}

/* A double from a JSON number (correctly rounded); out of the double range is an error. */
static int to_double(struct kts_decoder *d, const char *s, size_t len, const char *what,
                     double *out)
{
    char tmp[KTS_FORMAT_MAX_NUMBER + 1];
    memcpy(tmp, s, len); /* len <= KTS_FORMAT_MAX_NUMBER, checked when the number arrived */
    tmp[len] = '\0';
    char *end;
    double x = kts_fmt_strtod_c(tmp, &end);
    if (end != tmp + len)
        return fail(d, -EINVAL, "%s value %s is not a number", what, tmp);
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
            return fail(d, -ERANGE, "%s value %.40s is out of the range of a double", what, tmp);
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
static int to_cdtime(struct kts_decoder *d, const char *s, size_t len, const char *what,
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
        return fail(d, -ERANGE, "%s %.*s is negative", what, (int)(len < 40 ? len : 40), s);
    /* Seconds must fit the 34 bits cdtime_t has for them: at most 11 digits. */
    if (point > 11)
        return fail(d, -ERANGE, "%s %.*s is too large", what, (int)(len < 40 ? len : 40), s);
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
        return fail(d, -ERANGE, "%s %.*s is too large", what, (int)(len < 40 ? len : 40), s);
    *out = t;
    return 1;
}

static int ds_type_from(const char *s, size_t len, enum kts_ds_type *t)
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

static int meta_type_from(const char *s, size_t len, enum kts_meta_type *t)
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
static int ds_value(struct kts_decoder *d, struct kts_ds *ds, bool is_null, const char *s,
                    size_t len)
{
    const char *tn = kts_ds_type_name(ds->type);
    if (is_null) {
        if (ds->type != KTS_DS_GAUGE)
            return fail(d, -EINVAL, "null is only allowed for gauges, this is a %s", tn);
        ds->value.gauge = NAN;
        return 1;
    }
    switch (ds->type) {
    case KTS_DS_GAUGE:
        return to_double(d, s, len, tn, &ds->value.gauge);
    case KTS_DS_DERIVE:
        return to_i64(d, s, len, tn, &ds->value.derive);
    case KTS_DS_COUNTER:
        return to_u64(d, s, len, tn, &ds->value.counter);
    case KTS_DS_ABSOLUTE:
        return to_u64(d, s, len, tn, &ds->value.absolute);
    }
    return fail(d, -EINVAL, "unknown data source type");
}

/* ------------------------------------------------------------------ meta */

static int meta_begin(struct kts_decoder *d, const char *key, size_t klen)
{
    struct pvl *p = cur_vl(d);
    if (p->vl.meta_len >= KTS_FORMAT_MAX_META)
        return fail(d, -ERANGE, "more than %d meta entries", KTS_FORMAT_MAX_META);
    if (klen > KTS_NAME_MAX - 1)
        return fail(d, -ERANGE, "meta key is %zu bytes long, at most %d are allowed", klen,
                    KTS_NAME_MAX - 1);
    if (klen == 0)
        return fail(d, -EINVAL, "meta key must not be empty");
    if (memchr(key, '\0', klen) != NULL)
        return fail(d, -EINVAL, "meta key contains a NUL character");
    for (size_t i = p->meta_start; i < d->n_meta; i++) {
        const char *k = d->strs + d->pmeta[i].key_off;
        if (strlen(k) == klen && memcmp(k, key, klen) == 0)
            return fail(d, -EINVAL, "duplicate meta key");
    }
    return 1;
}

/* Append a meta entry to the current value list (meta_begin() checked the key). */
static int meta_add(struct kts_decoder *d, const char *key, size_t klen, struct pmeta *m,
                    const char *str, size_t slen)
{
    if (GROW(d, pmeta, n_meta, cap_meta, d->n_meta + 1) != 0)
        return fail(d, -ENOMEM, "out of memory");
    if (!str_add(d, key, klen, &m->key_off))
        return 0;
    if (m->type == KTS_META_STRING) {
        if (slen > KTS_FORMAT_MAX_META_STRING)
            return fail(d, -ERANGE, "meta string is %zu bytes long, at most %d are allowed", slen,
                        KTS_FORMAT_MAX_META_STRING);
        if (memchr(str, '\0', slen) != NULL)
            return fail(d, -EINVAL, "meta string contains a NUL character");
        if (!str_add(d, str, slen, &m->str_off))
            return 0;
    }
    d->pmeta[d->n_meta++] = *m;
    cur_vl(d)->vl.meta_len++;
    return 1;
}

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

static int push(struct kts_decoder *d, enum frame_kind kind, bool is_map)
{
    if (d->depth >= KTS_FORMAT_MAX_DEPTH)
        return fail(d, -ERANGE, "nested deeper than %d levels", KTS_FORMAT_MAX_DEPTH);
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

static const char *expect_of(enum frame_kind parent, enum field field)
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

static int on_open(struct kts_decoder *d, bool is_map)
{
    struct frame *f = top(d);
    if (f == NULL) {
        if (d->root_done)
            return fail(d, -EINVAL, "trailing data after the message");
        if (is_map) {
            if (!vl_begin(d))
                return 0;
            return push(d, FR_TS_ROOT, true);
        }
        return push(d, FR_CD_ROOT, false);
    }
    element(f);
    const char *got = is_map ? "an object" : "an array";
    switch (f->kind) {
    case FR_SKIP:
        return push(d, FR_SKIP, is_map);
    case FR_TS_ROOT:
        if (f->field == F_DS && !is_map)
            return push(d, FR_TS_DS_ARRAY, false);
        if (f->field == F_META && is_map)
            return push(d, FR_TS_META, true);
        if (f->field == F_UNKNOWN)
            return push(d, FR_SKIP, is_map);
        return fail(d, -EINVAL, "expected %s, got %s", expect_of(f->kind, f->field), got);
    case FR_TS_DS_ARRAY:
        if (!is_map)
            return fail(d, -EINVAL, "expected a data source object, got an array");
        if (f->count > KTS_FORMAT_MAX_DS)
            return fail(d, -ERANGE, "more than %d data sources", KTS_FORMAT_MAX_DS);
        memset(&d->tmp, 0, offsetof(struct tmp_obj, str_len));
        d->tmp.num_len = 0;
        return push(d, FR_TS_DS, true);
    case FR_TS_META:
        if (!is_map)
            return fail(d, -EINVAL,
                        "expected a meta entry object {\"type\",\"value\"}, got an array");
        if (!meta_begin(d, f->key, f->key_len))
            return 0;
        memset(&d->tmp, 0, offsetof(struct tmp_obj, str_len));
        d->tmp.num_len = 0;
        d->tmp.str_len = 0;
        return push(d, FR_TS_META_ENTRY, true);
    case FR_TS_DS:
    case FR_TS_META_ENTRY:
        if (f->field == F_UNKNOWN)
            return push(d, FR_SKIP, is_map);
        return fail(d, -EINVAL, "expected %s, got %s", expect_of(f->kind, f->field), got);
    case FR_CD_ROOT:
        if (!is_map)
            return fail(d, -EINVAL, "expected a value list object, got an array");
        if (!vl_begin(d))
            return 0;
        return push(d, FR_CD_VL, true);
    case FR_CD_VL:
        if (!is_map && f->field == F_VALUES)
            return push(d, FR_CD_VALUES, false);
        if (!is_map && f->field == F_DSTYPES)
            return push(d, FR_CD_DSTYPES, false);
        if (!is_map && f->field == F_DSNAMES)
            return push(d, FR_CD_DSNAMES, false);
        if (is_map && f->field == F_META)
            return push(d, FR_CD_META, true);
        if (f->field == F_UNKNOWN)
            return push(d, FR_SKIP, is_map);
        return fail(d, -EINVAL, "expected %s, got %s", expect_of(f->kind, f->field), got);
    case FR_CD_VALUES:
    case FR_CD_DSTYPES:
    case FR_CD_DSNAMES:
    case FR_CD_META:
        return fail(d, -EINVAL, "expected a scalar, got %s", got);
    }
    return fail(d, -EINVAL, "unexpected %s", got);
}

static int on_key(struct kts_decoder *d, const char *k, size_t n)
{
    struct frame *f = top(d);
    if (!kts_fmt_utf8_valid(k, n))
        return fail(d, -EINVAL,
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
            return fail(d, -EINVAL, "duplicate field");
        f->seen |= BIT(f->field);
    }
    return 1;
}

/* A name field of the value list. */
static int vl_name(struct kts_decoder *d, enum field field, const char *s, size_t len)
{
    struct kts_vl *vl = &cur_vl(d)->vl;
    switch (field) {
    case F_HOST:
        return take_name(d, vl->host, s, len, true);
    case F_PLUGIN:
        return take_name(d, vl->plugin, s, len, true);
    case F_PLUGIN_INSTANCE:
        return take_name(d, vl->plugin_instance, s, len, false);
    case F_TYPE:
        return take_name(d, vl->type, s, len, true);
    case F_TYPE_INSTANCE:
        return take_name(d, vl->type_instance, s, len, false);
    default:
        return fail(d, -EINVAL, "internal error: not a name field");
    }
}

static bool is_name_field(enum field f)
{
    return f == F_HOST || f == F_PLUGIN || f == F_PLUGIN_INSTANCE || f == F_TYPE ||
           f == F_TYPE_INSTANCE;
}

/* Fields of the value list common to both formats: names, time, interval. */
static int vl_scalar(struct kts_decoder *d, struct frame *f, enum scalar k, const char *s,
                     size_t len)
{
    struct pvl *p = cur_vl(d);
    if (is_name_field(f->field)) {
        if (k != SC_STRING)
            return fail(d, -EINVAL, "expected a string, got %s", scalar_name(k));
        p->seen |= BIT(f->field);
        return vl_name(d, f->field, s, len);
    }
    if (f->field == F_TIME || f->field == F_INTERVAL) {
        if (k != SC_NUMBER)
            return fail(d, -EINVAL, "expected a number (seconds), got %s", scalar_name(k));
        p->seen |= BIT(f->field);
        return to_cdtime(d, s, len, f->field == F_TIME ? "time" : "interval",
                         f->field == F_TIME ? &p->vl.time : &p->vl.interval);
    }
    if (f->field == F_UNKNOWN)
        return 1;
    return fail(d, -EINVAL, "expected %s, got %s", expect_of(f->kind, f->field), scalar_name(k));
}

static int on_scalar(struct kts_decoder *d, enum scalar k, const char *s, size_t len, bool b)
{
    struct frame *f = top(d);
    if (f == NULL)
        return fail(d, -EINVAL, "expected an object or an array, got %s", scalar_name(k));
    element(f);
    if (k == SC_STRING && !kts_fmt_utf8_valid(s, len))
        return fail(d, -EINVAL, "invalid UTF-8 (overlong form, surrogate or above U+10FFFF)");
    if (f->kind == FR_SKIP)
        return 1;
    if (k == SC_NUMBER && len > KTS_FORMAT_MAX_NUMBER)
        return fail(d, -ERANGE, "number has %zu characters, at most %d are allowed", len,
                    KTS_FORMAT_MAX_NUMBER);
    switch (f->kind) {
    case FR_TS_ROOT:
        if (f->field == F_V) {
            bool neg;
            uint64_t v;
            if (k != SC_NUMBER || parse_integer(s, len, &neg, &v) != 1 || neg)
                return fail(d, -EINVAL, "expected the integer %d", KTS_FORMAT_VERSION);
            if (v != KTS_FORMAT_VERSION)
                return fail(d, -EPROTONOSUPPORT,
                            "format version %.*s is not supported (this reader reads version %d)",
                            (int)(len < 20 ? len : 20), s, KTS_FORMAT_VERSION);
            cur_vl(d)->seen |= BIT(F_V);
            return 1;
        }
        return vl_scalar(d, f, k, s, len);
    case FR_CD_VL:
        return vl_scalar(d, f, k, s, len);
    case FR_TS_DS:
        switch (f->field) {
        case F_NAME:
            if (k != SC_STRING)
                return fail(d, -EINVAL, "expected a string, got %s", scalar_name(k));
            d->tmp.has_name = true;
            return take_name(d, d->tmp.name, s, len, true);
        case F_TYPE: {
            enum kts_ds_type t;
            if (k != SC_STRING || ds_type_from(s, len, &t) != 0)
                return fail(d, -EINVAL,
                            "expected \"gauge\", \"derive\", \"counter\" or \"absolute\"");
            d->tmp.has_type = true;
            d->tmp.type = (int)t;
            return 1;
        }
        case F_VALUE:
            if (k != SC_NUMBER && k != SC_NULL)
                return fail(d, -EINVAL, "expected a number or null, got %s", scalar_name(k));
            d->tmp.has_value = true;
            d->tmp.value_kind = k;
            d->tmp.num_len = len;
            memcpy(d->tmp.num, s, len);
            return 1;
        default:
            return 1;
        }
    case FR_TS_META_ENTRY:
        switch (f->field) {
        case F_TYPE: {
            enum kts_meta_type t;
            if (k != SC_STRING || meta_type_from(s, len, &t) != 0)
                return fail(d, -EINVAL,
                            "expected \"string\", \"signed_int\", "
                            "\"unsigned_int\", \"double\" or \"boolean\"");
            d->tmp.has_type = true;
            d->tmp.type = (int)t;
            return 1;
        }
        case F_VALUE:
            d->tmp.has_value = true;
            d->tmp.value_kind = k;
            d->tmp.value_bool = b;
            if (k == SC_NUMBER) {
                memcpy(d->tmp.num, s, len);
                d->tmp.num_len = len;
            } else if (k == SC_STRING) {
                if (len > KTS_FORMAT_MAX_META_STRING)
                    return fail(d, -ERANGE, "meta string is %zu bytes long, at most %d are allowed",
                                len, KTS_FORMAT_MAX_META_STRING);
                memcpy(d->tmp.str, s, len);
                d->tmp.str_len = len;
            }
            return 1;
        default:
            return 1;
        }
    case FR_CD_VALUES: {
        if (f->count > KTS_FORMAT_MAX_DS)
            return fail(d, -ERANGE, "more than %d data sources", KTS_FORMAT_MAX_DS);
        if (k != SC_NUMBER && k != SC_NULL)
            return fail(d, -EINVAL, "expected a number or null, got %s", scalar_name(k));
        struct cd_value *v = &d->cd_values[d->cd_n_values++];
        v->is_null = k == SC_NULL;
        v->len = len;
        memcpy(v->text, s, len);
        return 1;
    }
    case FR_CD_DSTYPES: {
        if (f->count > KTS_FORMAT_MAX_DS)
            return fail(d, -ERANGE, "more than %d data sources", KTS_FORMAT_MAX_DS);
        enum kts_ds_type t;
        if (k != SC_STRING || ds_type_from(s, len, &t) != 0)
            return fail(d, -EINVAL, "expected \"gauge\", \"derive\", \"counter\" or \"absolute\"");
        d->cd_types[d->cd_n_types++] = t;
        return 1;
    }
    case FR_CD_DSNAMES:
        if (f->count > KTS_FORMAT_MAX_DS)
            return fail(d, -ERANGE, "more than %d data sources", KTS_FORMAT_MAX_DS);
        if (k != SC_STRING)
            return fail(d, -EINVAL, "expected a string, got %s", scalar_name(k));
        return take_name(d, d->cd_names[d->cd_n_names++], s, len, true);
    case FR_CD_META: {
        /* collectd writes meta values untyped: strings, integers (negative ones are signed),
         * other numbers (doubles), booleans; null is what our collectd encoder writes for a
         * non-finite double. */
        if (!meta_begin(d, f->key, f->key_len))
            return 0;
        struct pmeta m = {0};
        switch (k) {
        case SC_STRING:
            m.type = KTS_META_STRING;
            break;
        case SC_BOOL:
            m.type = KTS_META_BOOLEAN;
            m.v.boolean = b;
            break;
        case SC_NULL:
            m.type = KTS_META_DOUBLE;
            m.v.dbl = NAN;
            break;
        case SC_NUMBER: {
            bool neg;
            uint64_t mag;
            int r = parse_integer(s, len, &neg, &mag);
            if (r == 1 && !neg) {
                m.type = KTS_META_UNSIGNED_INT;
                m.v.uint = mag;
            } else if (r == 1 && mag <= (uint64_t)INT64_MAX + 1) {
                m.type = KTS_META_SIGNED_INT;
                m.v.sint = (int64_t)(0 - mag);
            } else {
                m.type = KTS_META_DOUBLE;
                if (!to_double(d, s, len, "meta", &m.v.dbl))
                    return 0;
            }
            break;
        }
        }
        return meta_add(d, f->key, f->key_len, &m, s, len);
    }
    case FR_TS_META:
        return fail(d, -EINVAL, "expected a meta entry object {\"type\",\"value\"}, got %s",
                    scalar_name(k));
    case FR_TS_DS_ARRAY:
        return fail(d, -EINVAL, "expected a data source object, got %s", scalar_name(k));
    case FR_CD_ROOT:
        return fail(d, -EINVAL, "expected a value list object, got %s", scalar_name(k));
    case FR_SKIP:
        return 1;
    }
    return fail(d, -EINVAL, "unexpected %s", scalar_name(k));
}

/* The data source object that just closed. */
static int close_ts_ds(struct kts_decoder *d)
{
    struct tmp_obj *t = &d->tmp;
    if (!t->has_name)
        return fail(d, -EINVAL, "data source has no \"name\"");
    if (!t->has_type)
        return fail(d, -EINVAL, "data source has no \"type\"");
    if (!t->has_value)
        return fail(d, -EINVAL, "data source has no \"value\"");
    if (GROW(d, ds, n_ds, cap_ds, d->n_ds + 1) != 0)
        return fail(d, -ENOMEM, "out of memory");
    struct kts_ds *ds = &d->ds[d->n_ds];
    memcpy(ds->name, t->name, sizeof(ds->name));
    ds->type = (enum kts_ds_type)t->type;
    snprintf(d->subpath, sizeof(d->subpath), "value");
    int ok = ds_value(d, ds, t->value_kind == SC_NULL, t->num, t->num_len);
    d->subpath[0] = '\0';
    if (!ok)
        return 0;
    d->n_ds++;
    cur_vl(d)->vl.ds_len++;
    return 1;
}

/* The meta entry object that just closed; its key is the parent frame's current key. */
static int close_ts_meta_entry(struct kts_decoder *d, const struct frame *parent)
{
    struct tmp_obj *t = &d->tmp;
    if (!t->has_type)
        return fail(d, -EINVAL, "meta entry has no \"type\"");
    if (!t->has_value)
        return fail(d, -EINVAL, "meta entry has no \"value\"");
    struct pmeta m = {0};
    m.type = (enum kts_meta_type)t->type;
    enum scalar k = t->value_kind;
    int ok = 1;
    snprintf(d->subpath, sizeof(d->subpath), "value");
    switch (m.type) {
    case KTS_META_STRING:
        if (k != SC_STRING)
            return fail(d, -EINVAL, "a string meta entry needs a string value, got %s",
                        scalar_name(k));
        break;
    case KTS_META_SIGNED_INT:
        if (k != SC_NUMBER)
            return fail(d, -EINVAL, "a signed_int meta entry needs a number, got %s",
                        scalar_name(k));
        ok = to_i64(d, t->num, t->num_len, "signed_int", &m.v.sint);
        break;
    case KTS_META_UNSIGNED_INT:
        if (k != SC_NUMBER)
            return fail(d, -EINVAL, "an unsigned_int meta entry needs a number, got %s",
                        scalar_name(k));
        ok = to_u64(d, t->num, t->num_len, "unsigned_int", &m.v.uint);
        break;
    case KTS_META_DOUBLE:
        if (k == SC_NULL)
            m.v.dbl = NAN;
        else if (k == SC_NUMBER)
            ok = to_double(d, t->num, t->num_len, "double", &m.v.dbl);
        else
            return fail(d, -EINVAL, "a double meta entry needs a number or null, got %s",
                        scalar_name(k));
        break;
    case KTS_META_BOOLEAN:
        if (k != SC_BOOL)
            return fail(d, -EINVAL, "a boolean meta entry needs true or false, got %s",
                        scalar_name(k));
        m.v.boolean = t->value_bool;
        break;
    }
    d->subpath[0] = '\0';
    if (!ok)
        return 0;
    return meta_add(d, parent->key, parent->key_len, &m, t->str, t->str_len);
}

static int check_required(struct kts_decoder *d, uint32_t seen, uint32_t need)
{
    static const struct {
        enum field f;
        const char *name;
    } names[] = {{F_V, "v"},           {F_HOST, "host"},       {F_PLUGIN, "plugin"},
                 {F_TYPE, "type"},     {F_TIME, "time"},       {F_DS, "ds"},
                 {F_VALUES, "values"}, {F_DSTYPES, "dstypes"}, {F_DSNAMES, "dsnames"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if ((need & BIT(names[i].f)) && !(seen & BIT(names[i].f)))
            return fail(d, -EINVAL, "missing field \"%s\"", names[i].name);
    return 1;
}

static int close_ts_root(struct kts_decoder *d, const struct frame *f)
{
    struct pvl *p = cur_vl(d);
    if (!check_required(d, p->seen | (f->seen & BIT(F_DS)),
                        BIT(F_V) | BIT(F_HOST) | BIT(F_PLUGIN) | BIT(F_TYPE) | BIT(F_TIME) |
                            BIT(F_DS)))
        return 0;
    if (p->vl.ds_len == 0)
        return fail(d, -EINVAL, "\"ds\" is empty");
    return 1;
}

static int close_cd_vl(struct kts_decoder *d, const struct frame *f)
{
    struct pvl *p = cur_vl(d);
    if (!check_required(d, p->seen | f->seen,
                        BIT(F_HOST) | BIT(F_PLUGIN) | BIT(F_TYPE) | BIT(F_TIME) | BIT(F_VALUES) |
                            BIT(F_DSTYPES) | BIT(F_DSNAMES)))
        return 0;
    size_t n = d->cd_n_values;
    if (n == 0)
        return fail(d, -EINVAL, "\"values\" is empty");
    if (d->cd_n_types != n || d->cd_n_names != n)
        return fail(d, -EINVAL,
                    "\"values\", \"dstypes\" and \"dsnames\" differ in length (%zu, %zu, %zu)", n,
                    d->cd_n_types, d->cd_n_names);
    if (GROW(d, ds, n_ds, cap_ds, d->n_ds + n) != 0)
        return fail(d, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        struct kts_ds *ds = &d->ds[d->n_ds + i];
        memcpy(ds->name, d->cd_names[i], sizeof(ds->name));
        ds->type = (d->flags & KTS_DECODE_RATES_AS_GAUGE) ? KTS_DS_GAUGE : d->cd_types[i];
        const struct cd_value *v = &d->cd_values[i];
        snprintf(d->subpath, sizeof(d->subpath), "values[%zu]", i);
        int ok = ds_value(d, ds, v->is_null, v->text, v->len);
        d->subpath[0] = '\0';
        if (!ok)
            return 0;
    }
    d->n_ds += n;
    p->vl.ds_len = n;
    return 1;
}

static int on_close(struct kts_decoder *d)
{
    struct frame f = *top(d);
    d->depth--;
    struct frame *parent = top(d);
    switch (f.kind) {
    case FR_TS_DS:
        return close_ts_ds(d);
    case FR_TS_META_ENTRY:
        return close_ts_meta_entry(d, parent);
    case FR_TS_ROOT:
        d->root_done = true;
        return close_ts_root(d, &f);
    case FR_CD_VL:
        return close_cd_vl(d, &f);
    case FR_CD_ROOT:
        d->root_done = true;
        if (f.count == 0)
            return fail(d, -EINVAL, "the array holds no value list");
        return 1;
    default:
        return 1;
    }
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
    if (GROW(d, meta, n_meta, cap_meta_out, d->n_meta) != 0)
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
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 4;
        struct kts_vl *p = realloc(c->vls, cap * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        c->vls = p;
        c->cap = cap;
    }
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
