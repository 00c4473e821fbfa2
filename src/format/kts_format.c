/* SPDX-License-Identifier: MIT */
/*
 * kts_format: the encoders (both formats), series keys and value-list helpers.
 * What this guarantees is listed in kts_format.h (1-4); the decoder is kts_format_decode.c.
 *
 * The encoder is on write_kafka_ts's hot path, so it writes straight into the reserved tail
 * of the output buffer: no yajl_gen, no snprintf for integers or times, no allocation unless
 * the buffer grows. snprintf is used only for gauges that need 16-17 significant digits or
 * an exponent, and for collectd's "%f" meta doubles.
 */
#include "kts_format.h"
#include "kts_format_impl.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ locale-free numbers */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

double kts_fmt_strtod_c(const char *s, char **end)
{
    pthread_once(&c_locale_once, c_locale_init);
    if (c_locale == (locale_t)0)
        return strtod(s, end); /* newlocale failed (ENOMEM): best effort */
    return strtod_l(s, end, c_locale);
}

int kts_fmt_snprintf_double(char *dst, size_t size, const char *fmt, double x)
{
    /* The C locale for this thread during the call: the radix is '.' whatever setlocale() the
     * process did (collectd does none, but a plugin's embedded interpreter may). */
    pthread_once(&c_locale_once, c_locale_init);
    locale_t old = c_locale != (locale_t)0 ? uselocale(c_locale) : (locale_t)0;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    int n = snprintf(dst, size, fmt, x);
#pragma GCC diagnostic pop
    if (old != (locale_t)0)
        uselocale(old);
    return n;
}

/* ------------------------------------------------------------------ names */

const char *kts_format_name(enum kts_format fmt)
{
    switch (fmt) {
    case KTS_FORMAT_TS:
        return "ts";
    case KTS_FORMAT_COLLECTD:
        return "collectd";
    default:
        return "unknown";
    }
}

const char *kts_ds_type_name(enum kts_ds_type type)
{
    switch (type) {
    case KTS_DS_COUNTER:
        return "counter";
    case KTS_DS_GAUGE:
        return "gauge";
    case KTS_DS_DERIVE:
        return "derive";
    case KTS_DS_ABSOLUTE:
        return "absolute";
    }
    return NULL;
}

static const char *meta_type_name(enum kts_meta_type type)
{
    switch (type) {
    case KTS_META_STRING:
        return "string";
    case KTS_META_SIGNED_INT:
        return "signed_int";
    case KTS_META_UNSIGNED_INT:
        return "unsigned_int";
    case KTS_META_DOUBLE:
        return "double";
    case KTS_META_BOOLEAN:
        return "boolean";
    }
    return NULL;
}

/* ------------------------------------------------------------------ writers
 * Every put_* writes into memory the caller reserved and returns the new end. */

static const char digits2[201] = "00010203040506070809"
                                 "10111213141516171819"
                                 "20212223242526272829"
                                 "30313233343536373839"
                                 "40414243444546474849"
                                 "50515253545556575859"
                                 "60616263646566676869"
                                 "70717273747576777879"
                                 "80818283848586878889"
                                 "90919293949596979899";

/* At most 20 bytes. */
static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    char *t = tmp + sizeof(tmp);
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        t -= 2;
        memcpy(t, digits2 + 2 * r, 2);
    }
    if (v >= 10) {
        t -= 2;
        memcpy(t, digits2 + 2 * v, 2);
    } else {
        *--t = (char)('0' + v);
    }
    size_t n = (size_t)(tmp + sizeof(tmp) - t);
    memcpy(p, t, n);
    return p + n;
}

/* At most 20 bytes. */
static char *put_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

/* `v` < 10^width, zero-padded to exactly `width` digits. */
static char *put_u64_padded(char *p, uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

static inline char *put_lit(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define PUT_LIT(p, s) put_lit((p), (s), sizeof(s) - 1)

/* Worst case of put_string(): every byte becomes "\u00XX", plus the quotes. */
#define STRING_BOUND(n) (6 * (n) + 2)

static const char hexdig[] = "0123456789abcdef";

/*
 * Length of the valid UTF-8 sequence starting at s[0] (s[0] >= 0x80), or the negative length
 * of the maximal invalid subpart to replace by one U+FFFD (Unicode's "maximal subpart"
 * practice, as WHATWG decoders do).
 */
static int utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    unsigned lo = 0x80, hi = 0xBF;
    int need;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* > U+10FFFF */
    } else {
        return -1;
    }
    int i = 1;
    for (; i <= need; i++) {
        if ((size_t)i >= n || s[i] < lo || s[i] > hi)
            return -i;
        lo = 0x80;
        hi = 0xBF;
    }
    return i;
}

bool kts_fmt_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    /* ASCII, 8 bytes at a time. */
    while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & UINT64_C(0x8080808080808080))
            break;
        i += 8;
    }
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int l = utf8_seq(s + i, n - i);
        if (l < 0)
            return false;
        i += (size_t)l;
    }
    return true;
}

/* True if none of the 8 bytes in `w` needs attention: no byte < 0x20, '"', '\\' or >= 0x80
 * (the "has less than" / "has zero byte" tricks; exact for the question "any?"). */
static inline bool plain8(uint64_t w)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), high = UINT64_C(0x8080808080808080);
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
    uint64_t bad = (w & high) | ((w - ones * 0x20) & ~w & high) | ((q - ones) & ~q & high) |
                   ((b - ones) & ~b & high);
    return bad == 0;
}

/* JSON string with quotes (see 4). Writes at most STRING_BOUND(n) bytes. */
static char *put_string(char *p, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    *p++ = '"';
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (plain8(w)) {
                memcpy(p, &w, 8);
                p += 8;
                i += 8;
                continue;
            }
        }
        unsigned c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *p++ = (char)c;
            i++;
            continue;
        }
        if (c >= 0x80) {
            int l = utf8_seq(s + i, n - i);
            if (l > 0) {
                memcpy(p, s + i, (size_t)l);
                p += l;
                i += (size_t)l;
            } else {
                p = PUT_LIT(p, "\xEF\xBF\xBD");
                i += (size_t)-l;
            }
            continue;
        }
        *p++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *p++ = (char)c;
            break;
        case '\b':
            *p++ = 'b';
            break;
        case '\f':
            *p++ = 'f';
            break;
        case '\n':
            *p++ = 'n';
            break;
        case '\r':
            *p++ = 'r';
            break;
        case '\t':
            *p++ = 't';
            break;
        default:
            p = PUT_LIT(p, "u00");
            *p++ = hexdig[c >> 4];
            *p++ = hexdig[c & 15];
        }
        i++;
    }
    *p++ = '"';
    return p;
}

/* ------------------------------------------------------------------ doubles */

/* Exact powers of ten (10^22 is the largest exactly representable one). */
static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
#define TWO53 9007199254740992.0

/*
 * Find the shortest m * 10^-k (1 <= k <= 17, m < 2^53) that is exactly `ax` once rounded to a
 * double (ax finite, > 0, not an integer). With both m and 10^k exact doubles, one IEEE
 * division is the correctly rounded value of the decimal, i.e. what strtod returns for it, so
 * the check is exact. The candidate m is round(ax * 10^k) +- 1 to absorb the rounding of the
 * multiplication. Returns k, or 0 if no such decimal exists (use the snprintf path).
 */
static int short_decimal(double ax, uint64_t *m_out)
{
    for (int k = 1; k <= 17; k++) {
        double s = ax * pow10_exact[k];
        if (s >= TWO53 - 2)
            return 0;
        uint64_t m = (uint64_t)nearbyint(s);
        if ((double)m / pow10_exact[k] == ax) {
            *m_out = m;
            return k;
        }
        if (m > 0 && (double)(m - 1) / pow10_exact[k] == ax) {
            *m_out = m - 1;
            return k;
        }
        if ((double)(m + 1) / pow10_exact[k] == ax) {
            *m_out = m + 1;
            return k;
        }
    }
    return 0;
}

/* m * 10^-k in fixed notation ("12.5", "0.0025"). At most 40 bytes for k <= 17. */
static char *put_scaled(char *p, uint64_t m, int k)
{
    char tmp[24];
    char *e = put_u64(tmp, m);
    int nd = (int)(e - tmp);
    if (nd <= k) {
        *p++ = '0';
        *p++ = '.';
        for (int i = nd; i < k; i++)
            *p++ = '0';
        memcpy(p, tmp, (size_t)nd);
        return p + nd;
    }
    memcpy(p, tmp, (size_t)(nd - k));
    p += nd - k;
    *p++ = '.';
    memcpy(p, tmp + nd - k, (size_t)k);
    return p + k;
}

/* x is an integer of magnitude < 2^63: write it (with "-0" for negative zero, as %g does). */
static char *put_integral(char *p, double x)
{
    if (x == 0 && signbit(x))
        return PUT_LIT(p, "-0");
    return put_i64(p, (int64_t)x);
}

/* Gauge of our format: shortest round-trip decimal (2). At most 32 bytes. */
static char *put_gauge_ts(char *p, double x)
{
    if (!isfinite(x))
        return PUT_LIT(p, "null");
    double ax = fabs(x);
    if (ax < TWO53 && (double)(int64_t)x == x)
        return put_integral(p, x);
    uint64_t m;
    int k = short_decimal(ax, &m);
    if (k > 0) {
        if (x < 0)
            *p++ = '-';
        return put_scaled(p, m, k);
    }
    /* Large, tiny, or 16-17 significant digits: the first of %.Ng that reads back to the same
     * bits (%.17g always does). */
    static const char *const fmts[] = {"%.1g",  "%.2g",  "%.3g",  "%.4g",  "%.5g",  "%.6g",
                                       "%.7g",  "%.8g",  "%.9g",  "%.10g", "%.11g", "%.12g",
                                       "%.13g", "%.14g", "%.15g", "%.16g", "%.17g"};
    /* Normal doubles: 15 digits always suffice when fewer do, so start there. Subnormals have
     * less precision, so their shortest form may be much shorter (5e-324). */
    size_t first = ax < 2.2250738585072014e-308 ? 0 : 14;
    char tmp[40];
    int n = 0;
    for (size_t i = first; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        n = kts_fmt_snprintf_double(tmp, sizeof(tmp), fmts[i], x);
        if (kts_fmt_strtod_c(tmp, NULL) == x)
            break;
    }
    memcpy(p, tmp, (size_t)n);
    return p + n;
}

/* Gauge of collectd's format: exactly "%.15g" (GAUGE_FORMAT), null if not finite. At most 32
 * bytes. The fast paths produce what %.15g does: integers below 10^15 print as integers; a
 * value whose shortest decimal has at most 15 significant digits is what %.15g rounds to
 * (%.15g of the double nearest to such a decimal gives that decimal back), printed in fixed
 * notation because %g uses fixed notation for exponents -4 .. 14. */
static char *put_gauge_collectd(char *p, double x)
{
    if (!isfinite(x))
        return PUT_LIT(p, "null");
    double ax = fabs(x);
    if (ax < 1e15 && (double)(int64_t)x == x)
        return put_integral(p, x);
    if (ax >= 1e-4 && ax < 1e15) {
        uint64_t m;
        int k = short_decimal(ax, &m);
        if (k > 0 && m < 1000000000000000ULL) {
            if (x < 0)
                *p++ = '-';
            return put_scaled(p, m, k);
        }
    }
    char tmp[40];
    int n = kts_fmt_snprintf_double(tmp, sizeof(tmp), "%.15g", x);
    memcpy(p, tmp, (size_t)n);
    return p + n;
}

/* ------------------------------------------------------------------ times */

#define FRAC_MASK ((UINT64_C(1) << 30) - 1)

/* Our format: seconds with exactly 10 fractional digits, fraction rounded half up
 * (round(frac * 10^10 / 2^30); frac * 10^10 < 2^64). At most 32 bytes. */
static char *put_time_ts(char *p, kts_time_t t)
{
    uint64_t frac = t & FRAC_MASK;
    uint64_t f10 = (frac * UINT64_C(10000000000) + (UINT64_C(1) << 29)) >> 30;
    /* f10 <= 9999999991: never carries into the seconds. */
    p = put_u64(p, t >> 30);
    *p++ = '.';
    return put_u64_padded(p, f10, 10);
}

/*
 * collectd's "%.3f" of CDTIME_T_TO_DOUBLE(t), computed exactly: (double)t rounds t to 53
 * significant bits (dividing by 2^30 is then exact), and printf rounds the exact binary value
 * to 3 decimals (a tie cannot happen: n/1000 + 1/2000 is never a multiple of 2^-30).
 * At most 40 bytes.
 */
static char *put_time_collectd(char *p, kts_time_t t)
{
    if (t >= (UINT64_C(1) << 63)) {
        char tmp[40];
        int n = kts_fmt_snprintf_double(tmp, sizeof(tmp), "%.3f", (double)t / 1073741824.0);
        memcpy(p, tmp, (size_t)n);
        return p + n;
    }
    uint64_t u = (uint64_t)(double)t;
    uint64_t sec = u >> 30;
    uint64_t r = (u & FRAC_MASK) * 1000;
    uint64_t q = r >> 30;
    if ((r & FRAC_MASK) > (UINT64_C(1) << 29))
        q++;
    if (q == 1000) {
        sec++;
        q = 0;
    }
    p = put_u64(p, sec);
    *p++ = '.';
    return put_u64_padded(p, q, 3);
}

/* ------------------------------------------------------------------ encoders */

struct names {
    size_t host, plugin, plugin_instance, type, type_instance;
};

static void name_lengths(const struct kts_vl *vl, struct names *n)
{
    n->host = strnlen(vl->host, KTS_NAME_MAX);
    n->plugin = strnlen(vl->plugin, KTS_NAME_MAX);
    n->plugin_instance = strnlen(vl->plugin_instance, KTS_NAME_MAX);
    n->type = strnlen(vl->type, KTS_NAME_MAX);
    n->type_instance = strnlen(vl->type_instance, KTS_NAME_MAX);
}

static int check_vl(const struct kts_vl *vl)
{
    if (vl->ds_len == 0 || vl->ds_len > KTS_FORMAT_MAX_DS || vl->ds == NULL)
        return -EINVAL;
    for (size_t i = 0; i < vl->ds_len; i++)
        if (kts_ds_type_name(vl->ds[i].type) == NULL)
            return -EINVAL;
    if (vl->meta_len > 0 && vl->meta == NULL)
        return -EINVAL;
    for (size_t i = 0; i < vl->meta_len; i++)
        if (meta_type_name(vl->meta[i].type) == NULL || vl->meta[i].key == NULL ||
            (vl->meta[i].type == KTS_META_STRING && vl->meta[i].value.string == NULL))
            return -EINVAL;
    return 0;
}

/* Bytes the fixed part and the data sources can take at most (meta is reserved per entry). */
static size_t bound_main(const struct kts_vl *vl, const struct names *n)
{
    size_t b = 256 + STRING_BOUND(n->host) + STRING_BOUND(n->plugin) +
               STRING_BOUND(n->plugin_instance) + STRING_BOUND(n->type) +
               STRING_BOUND(n->type_instance);
    for (size_t i = 0; i < vl->ds_len; i++)
        b += 96 + STRING_BOUND(strnlen(vl->ds[i].name, KTS_NAME_MAX));
    return b;
}

#define RESERVE(out, n)                                                                            \
    do {                                                                                           \
        size_t used_ = (size_t)(p - (out)->data);                                                  \
        (out)->len = used_;                                                                        \
        int r_ = kts_buf_reserve((out), (n));                                                      \
        if (r_ != 0) {                                                                             \
            status = r_;                                                                           \
            goto fail;                                                                             \
        }                                                                                          \
        p = (out)->data + used_;                                                                   \
    } while (0)

static int encode_ts(struct kts_buf *out, const struct kts_vl *vl)
{
    size_t start = out->len;
    int status = 0;
    struct names n;
    name_lengths(vl, &n);

    int r = kts_buf_reserve(out, bound_main(vl, &n));
    if (r != 0)
        return r;
    char *p = out->data + out->len;

    p = PUT_LIT(p, "{\"v\":1,\"host\":");
    p = put_string(p, vl->host, n.host);
    p = PUT_LIT(p, ",\"plugin\":");
    p = put_string(p, vl->plugin, n.plugin);
    p = PUT_LIT(p, ",\"plugin_instance\":");
    p = put_string(p, vl->plugin_instance, n.plugin_instance);
    p = PUT_LIT(p, ",\"type\":");
    p = put_string(p, vl->type, n.type);
    p = PUT_LIT(p, ",\"type_instance\":");
    p = put_string(p, vl->type_instance, n.type_instance);
    p = PUT_LIT(p, ",\"time\":");
    p = put_time_ts(p, vl->time);
    p = PUT_LIT(p, ",\"interval\":");
    p = put_time_ts(p, vl->interval);
    p = PUT_LIT(p, ",\"ds\":[");
    for (size_t i = 0; i < vl->ds_len; i++) {
        const struct kts_ds *ds = &vl->ds[i];
        if (i > 0)
            *p++ = ',';
        p = PUT_LIT(p, "{\"name\":");
        p = put_string(p, ds->name, strnlen(ds->name, KTS_NAME_MAX));
        switch (ds->type) {
        case KTS_DS_GAUGE:
            p = PUT_LIT(p, ",\"type\":\"gauge\",\"value\":");
            p = put_gauge_ts(p, ds->value.gauge);
            break;
        case KTS_DS_DERIVE:
            p = PUT_LIT(p, ",\"type\":\"derive\",\"value\":");
            p = put_i64(p, ds->value.derive);
            break;
        case KTS_DS_COUNTER:
            p = PUT_LIT(p, ",\"type\":\"counter\",\"value\":");
            p = put_u64(p, ds->value.counter);
            break;
        case KTS_DS_ABSOLUTE:
            p = PUT_LIT(p, ",\"type\":\"absolute\",\"value\":");
            p = put_u64(p, ds->value.absolute);
            break;
        }
        *p++ = '}';
    }
    *p++ = ']';

    for (size_t i = 0; i < vl->meta_len; i++) {
        const struct kts_meta *m = &vl->meta[i];
        size_t klen = strlen(m->key);
        size_t slen = m->type == KTS_META_STRING ? strlen(m->value.string) : 0;
        RESERVE(out, 96 + STRING_BOUND(klen) + STRING_BOUND(slen));
        p = i == 0 ? PUT_LIT(p, ",\"meta\":{") : PUT_LIT(p, ",");
        p = put_string(p, m->key, klen);
        p = PUT_LIT(p, ":{\"type\":\"");
        p = put_lit(p, meta_type_name(m->type), strlen(meta_type_name(m->type)));
        p = PUT_LIT(p, "\",\"value\":");
        switch (m->type) {
        case KTS_META_STRING:
            p = put_string(p, m->value.string, slen);
            break;
        case KTS_META_SIGNED_INT:
            p = put_i64(p, m->value.sint);
            break;
        case KTS_META_UNSIGNED_INT:
            p = put_u64(p, m->value.uint);
            break;
        case KTS_META_DOUBLE:
            p = put_gauge_ts(p, m->value.dbl);
            break;
        case KTS_META_BOOLEAN:
            p = m->value.boolean ? PUT_LIT(p, "true") : PUT_LIT(p, "false");
            break;
        }
        *p++ = '}';
    }
    RESERVE(out, 4);
    if (vl->meta_len > 0)
        *p++ = '}';
    *p++ = '}';
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
    return 0;

fail:
    kts_buf_truncate(out, start);
    return status;
}

/* collectd's "values", "dstypes" and "dsnames" arrays, from `[{` on (bound_main() counted
 * them). */
static char *put_ds_arrays_collectd(char *p, const struct kts_vl *vl)
{
    p = PUT_LIT(p, "[{\"values\":[");
    for (size_t i = 0; i < vl->ds_len; i++) {
        const struct kts_ds *ds = &vl->ds[i];
        if (i > 0)
            *p++ = ',';
        switch (ds->type) {
        case KTS_DS_GAUGE:
            p = put_gauge_collectd(p, ds->value.gauge);
            break;
        case KTS_DS_DERIVE:
            p = put_i64(p, ds->value.derive);
            break;
        case KTS_DS_COUNTER:
            p = put_u64(p, ds->value.counter);
            break;
        case KTS_DS_ABSOLUTE:
            p = put_u64(p, ds->value.absolute);
            break;
        }
    }
    p = PUT_LIT(p, "],\"dstypes\":[");
    for (size_t i = 0; i < vl->ds_len; i++) {
        const char *tn = kts_ds_type_name(vl->ds[i].type);
        if (i > 0)
            *p++ = ',';
        *p++ = '"';
        p = put_lit(p, tn, strlen(tn));
        *p++ = '"';
    }
    p = PUT_LIT(p, "],\"dsnames\":[");
    for (size_t i = 0; i < vl->ds_len; i++) {
        if (i > 0)
            *p++ = ',';
        p = put_string(p, vl->ds[i].name, strnlen(vl->ds[i].name, KTS_NAME_MAX));
    }
    return p;
}

/* A meta value as collectd writes it: untyped; doubles with "%f", non-finite ones as null. */
static char *put_meta_value_collectd(char *p, const struct kts_meta *m, size_t slen)
{
    switch (m->type) {
    case KTS_META_STRING:
        p = put_string(p, m->value.string, slen);
        break;
    case KTS_META_SIGNED_INT:
        p = put_i64(p, m->value.sint);
        break;
    case KTS_META_UNSIGNED_INT:
        p = put_u64(p, m->value.uint);
        break;
    case KTS_META_DOUBLE:
        if (isfinite(m->value.dbl)) {
            /* collectd writes meta doubles with "%f": up to 309 digits + 7. */
            char tmp[330];
            int k = kts_fmt_snprintf_double(tmp, sizeof(tmp), "%f", m->value.dbl);
            p = put_lit(p, tmp, (size_t)k);
        } else {
            p = PUT_LIT(p, "null");
        }
        break;
    case KTS_META_BOOLEAN:
        p = m->value.boolean ? PUT_LIT(p, "true") : PUT_LIT(p, "false");
        break;
    }
    return p;
}

/* collectd's value_list_to_json() (format_json.c, 5.12), wrapped in "[...]" as
 * format_json_finalize() does for a single value list. */
static int encode_collectd(struct kts_buf *out, const struct kts_vl *vl)
{
    size_t start = out->len;
    int status = 0;
    struct names n;
    name_lengths(vl, &n);

    int r = kts_buf_reserve(out, bound_main(vl, &n));
    if (r != 0)
        return r;
    char *p = out->data + out->len;

    p = put_ds_arrays_collectd(p, vl);
    p = PUT_LIT(p, "],\"time\":");
    p = put_time_collectd(p, vl->time);
    p = PUT_LIT(p, ",\"interval\":");
    p = put_time_collectd(p, vl->interval);
    p = PUT_LIT(p, ",\"host\":");
    p = put_string(p, vl->host, n.host);
    p = PUT_LIT(p, ",\"plugin\":");
    p = put_string(p, vl->plugin, n.plugin);
    p = PUT_LIT(p, ",\"plugin_instance\":");
    p = put_string(p, vl->plugin_instance, n.plugin_instance);
    p = PUT_LIT(p, ",\"type\":");
    p = put_string(p, vl->type, n.type);
    p = PUT_LIT(p, ",\"type_instance\":");
    p = put_string(p, vl->type_instance, n.type_instance);

    for (size_t i = 0; i < vl->meta_len; i++) {
        const struct kts_meta *m = &vl->meta[i];
        size_t klen = strlen(m->key);
        size_t slen = m->type == KTS_META_STRING ? strlen(m->value.string) : 0;
        RESERVE(out, 400 + STRING_BOUND(klen) + STRING_BOUND(slen));
        p = i == 0 ? PUT_LIT(p, ",\"meta\":{") : PUT_LIT(p, ",");
        p = put_string(p, m->key, klen);
        *p++ = ':';
        p = put_meta_value_collectd(p, m, slen);
    }
    RESERVE(out, 4);
    if (vl->meta_len > 0)
        *p++ = '}';
    *p++ = '}';
    *p++ = ']';
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
    return 0;

fail:
    kts_buf_truncate(out, start);
    return status;
}

int kts_format_encode(struct kts_buf *out, const struct kts_vl *vl, enum kts_format fmt)
{
    int r = check_vl(vl);
    if (r != 0)
        return r;
    switch (fmt) {
    case KTS_FORMAT_TS:
        return encode_ts(out, vl);
    case KTS_FORMAT_COLLECTD:
        return encode_collectd(out, vl);
    default:
        return -EINVAL;
    }
}

/* ------------------------------------------------------------------ keys */

/* Append `s` (n bytes) at dst[*pos], copying what fits in dst_size - 1 bytes. */
static void key_put(char *dst, size_t dst_size, size_t *pos, const char *s, size_t n)
{
    if (*pos + 1 < dst_size) {
        size_t room = dst_size - 1 - *pos;
        memcpy(dst + *pos, s, n < room ? n : room);
    }
    *pos += n;
}

size_t kts_series_message_key(char *dst, size_t dst_size, const struct kts_vl *vl,
                              enum kts_key_mode mode)
{
    size_t pos = 0;
    if (mode == KTS_KEY_SERIES || mode == KTS_KEY_HOST)
        key_put(dst, dst_size, &pos, vl->host, strnlen(vl->host, KTS_NAME_MAX));
    if (mode == KTS_KEY_SERIES) {
        key_put(dst, dst_size, &pos, "/", 1);
        key_put(dst, dst_size, &pos, vl->plugin, strnlen(vl->plugin, KTS_NAME_MAX));
        if (vl->plugin_instance[0] != '\0') {
            key_put(dst, dst_size, &pos, "-", 1);
            key_put(dst, dst_size, &pos, vl->plugin_instance,
                    strnlen(vl->plugin_instance, KTS_NAME_MAX));
        }
        key_put(dst, dst_size, &pos, "/", 1);
        key_put(dst, dst_size, &pos, vl->type, strnlen(vl->type, KTS_NAME_MAX));
        if (vl->type_instance[0] != '\0') {
            key_put(dst, dst_size, &pos, "-", 1);
            key_put(dst, dst_size, &pos, vl->type_instance,
                    strnlen(vl->type_instance, KTS_NAME_MAX));
        }
    }
    if (dst_size > 0)
        dst[pos < dst_size ? pos : dst_size - 1] = '\0';
    return pos;
}

/* ------------------------------------------------------------------ value lists */

void kts_vl_fini(struct kts_vl *vl)
{
    for (size_t i = 0; i < vl->meta_len; i++) {
        free(vl->meta[i].key);
        if (vl->meta[i].type == KTS_META_STRING)
            free(vl->meta[i].value.string);
    }
    free(vl->meta);
    free(vl->ds);
    vl->meta = NULL;
    vl->meta_len = 0;
    vl->ds = NULL;
    vl->ds_len = 0;
}

int kts_vl_copy(struct kts_vl *dst, const struct kts_vl *src)
{
    *dst = *src;
    dst->ds = NULL;
    dst->ds_len = 0;
    dst->meta = NULL;
    dst->meta_len = 0;
    if (src->ds_len > 0) {
        dst->ds = malloc(src->ds_len * sizeof(*dst->ds));
        if (dst->ds == NULL)
            return -ENOMEM;
        memcpy(dst->ds, src->ds, src->ds_len * sizeof(*dst->ds));
        dst->ds_len = src->ds_len;
    }
    if (src->meta_len > 0) {
        dst->meta = calloc(src->meta_len, sizeof(*dst->meta));
        if (dst->meta == NULL)
            goto fail;
        for (size_t i = 0; i < src->meta_len; i++) {
            struct kts_meta *m = &dst->meta[dst->meta_len];
            *m = src->meta[i];
            m->key = strdup(src->meta[i].key);
            if (m->key == NULL)
                goto fail;
            if (m->type == KTS_META_STRING) {
                m->value.string = strdup(src->meta[i].value.string);
                if (m->value.string == NULL) {
                    free(m->key);
                    goto fail;
                }
            }
            dst->meta_len++;
        }
    }
    return 0;

fail:
    kts_vl_fini(dst);
    return -ENOMEM;
}

void kts_vl_array_free(struct kts_vl *vls, size_t n)
{
    if (vls == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        kts_vl_fini(&vls[i]);
    free(vls);
}
