/* SPDX-License-Identifier: MIT */
/*
 * kts_format fast path (src/format/kts_format_fast.c, guarantees 1-7) against the yajl path
 * (KTS_DECODE_NO_FAST):
 *
 *  - golden files tests/data/format/NAME.ts.json and 100,000 random value lists encoded by
 *    kts_format_encode(): the fast path accepts every one (1) and its value list equals the
 *    yajl path's field for field, names including their zero padding, doubles bit for bit (2);
 *  - every single-byte change (all 255 other values), deletion and truncation of sample
 *    messages: kts_decoder_decode() gives the same return code, format, error message and
 *    value lists as the yajl-only path (3: the fast path has no errors of its own);
 *  - inputs the fast path leaves to yajl (white space, other key order, exponents in time,
 *    unknown fields, \u escapes above U+007F, limits) still decode, identically (1, 4-6);
 *  - a callback's stop code is returned the same way by both paths.
 *
 * Usage: t-format-fast [N_RANDOM [N_MUTATED]] (defaults 100000 and 12; valgrind runs use fewer).
 */
#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kts_buf.h"
#include "kts_format.h"
#include "kts_format_impl.h"
#include "kts_testhooks.h"
#include "lib/vl_same.h"

static const char *srcdir;

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* ------------------------------------------------------------------ comparison */

/* Deep equality: names over all KTS_NAME_MAX bytes, numbers and doubles bit for bit. */
static bool vl_identical(const struct kts_vl *a, const struct kts_vl *b, char *why, size_t n)
{
    return vl_same(a, b, VL_SAME_NAME_BYTES | VL_SAME_NULLS, why, n);
}

/* ------------------------------------------------------------------ decoding both ways */

#define MAX_OUT 4
struct result {
    int rc;
    enum kts_format fmt;
    char err[512];
    size_t n;
    struct kts_vl vls[MAX_OUT];
    bool vl_owned[MAX_OUT];
};

struct collect {
    struct result *r;
    int stop; /* callback's return value */
};

static int collect_cb(struct kts_vl *vl, void *opaque)
{
    struct collect *c = opaque;
    if (c->r->n < MAX_OUT && kts_vl_copy(&c->r->vls[c->r->n], vl) == 0)
        c->r->vl_owned[c->r->n] = true;
    c->r->n++;
    return c->stop;
}

static void result_fini(struct result *r)
{
    for (size_t i = 0; i < MAX_OUT; i++)
        if (r->vl_owned[i])
            kts_vl_fini(&r->vls[i]);
}

static struct kts_decoder *dec_fast, *dec_yajl;
static struct kts_fast *fast;

static void decode_with(struct kts_decoder *d, const char *msg, size_t len, int stop,
                        struct result *r)
{
    memset(r, 0, sizeof(*r));
    struct collect c = {r, stop};
    r->rc = kts_decoder_decode(d, msg, len, &r->fmt, collect_cb, &c, r->err, sizeof(r->err));
}

/* Both ways through kts_decoder_decode(): identical? (`why` gets the difference) */
static bool same_both_ways(const char *msg, size_t len, int stop, char *why, size_t n)
{
    struct result a, b;
    decode_with(dec_fast, msg, len, stop, &a);
    decode_with(dec_yajl, msg, len, stop, &b);
    bool same = true;
    if (a.rc != b.rc || a.fmt != b.fmt || strcmp(a.err, b.err) != 0 || a.n != b.n) {
        snprintf(why, n, "rc %d/%d fmt %d/%d n %zu/%zu err '%.200s' / '%.200s'", a.rc, b.rc, a.fmt,
                 b.fmt, a.n, b.n, a.err, b.err);
        same = false;
    }
    for (size_t i = 0; same && i < a.n && i < MAX_OUT; i++)
        same = vl_identical(&a.vls[i], &b.vls[i], why, n);
    result_fini(&a);
    result_fini(&b);
    return same;
}

/* The fast path directly: accepted, and equal to the yajl path's only value list? */
static int fast_vs_yajl(const char *msg, size_t len, char *why, size_t n)
{
    struct kts_vl *vl = kts_fast_decode(fast, msg, len);
    if (vl == NULL) {
        snprintf(why, n, "not accepted by the fast path");
        return -1;
    }
    struct result b;
    decode_with(dec_yajl, msg, len, 0, &b);
    int r = 0;
    if (b.rc != 0 || b.n != 1) {
        snprintf(why, n, "yajl path: rc %d, %zu value lists: %.200s", b.rc, b.n, b.err);
        r = -2;
    } else if (!vl_identical(vl, &b.vls[0], why, n)) {
        r = -3;
    }
    result_fini(&b);
    return r;
}

/* ------------------------------------------------------------------ random value lists */

/* Append one random code point's UTF-8 (valid), a control character, or a special byte. */
static size_t random_char(unsigned char *p, bool allow_invalid)
{
    uint64_t k = rnd() % 100;
    if (k < 55) {
        p[0] = (unsigned char)(0x20 + rnd() % 0x60); /* printable ASCII and DEL */
        return 1;
    }
    if (k < 63) {
        p[0] = (unsigned char)(1 + rnd() % 0x1F); /* control characters */
        return 1;
    }
    if (k < 70) {
        static const char special[] = "\"\\/";
        p[0] = (unsigned char)special[rnd() % 3];
        return 1;
    }
    if (k < 80) {
        unsigned cp = 0x80 + (unsigned)(rnd() % (0x800 - 0x80));
        p[0] = (unsigned char)(0xC0 | cp >> 6);
        p[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (k < 90) {
        unsigned cp;
        do
            cp = 0x800 + (unsigned)(rnd() % (0x10000 - 0x800));
        while (cp >= 0xD800 && cp <= 0xDFFF);
        p[0] = (unsigned char)(0xE0 | cp >> 12);
        p[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        p[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (k < 96 || !allow_invalid) {
        unsigned cp = 0x10000 + (unsigned)(rnd() % (0x110000 - 0x10000));
        p[0] = (unsigned char)(0xF0 | cp >> 18);
        p[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        p[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        p[3] = (unsigned char)(0x80 | (cp & 0x3F));
        return 4;
    }
    /* Invalid UTF-8 (the encoder writes U+FFFD for it, up to 3 bytes per byte). */
    p[0] = (unsigned char)(0x80 + rnd() % 0x80);
    return 1;
}

/* A random string of at most `max` bytes (at least `min`) into dst (NUL-terminated). */
static void random_string(char *dst, size_t min, size_t max)
{
    size_t target = min + rnd() % (max - min + 1);
    if (rnd() % 4 == 0)
        target = min + rnd() % (target - min + 1 < 12 ? target - min + 1 : 12);
    /* Invalid bytes grow by up to 3x when the encoder replaces them: only in short ones. */
    bool invalid = target * 3 <= max;
    size_t n = 0;
    unsigned char tmp[4];
    while (n < target) {
        size_t l = random_char(tmp, invalid);
        if (n + l > target) {
            if (n >= min)
                break;
            continue;
        }
        memcpy(dst + n, tmp, l);
        n += l;
    }
    dst[n] = '\0';
}

static double random_double(void)
{
    static const double special[] = {0.0,
                                     -0.0,
                                     1.0,
                                     -1.0,
                                     0.1,
                                     0.5,
                                     DBL_MAX,
                                     -DBL_MAX,
                                     DBL_MIN,
                                     5e-324,
                                     1e21,
                                     1e22,
                                     1e23,
                                     123.456,
                                     9007199254740992.0,
                                     9007199254740993.0,
                                     -273.15,
                                     0.30000000000000004,
                                     1e-7,
                                     2.5e-308};
    uint64_t k = rnd() % 10;
    if (k == 0) {
        uint64_t s = rnd() % 4;
        return s == 0 ? NAN : s == 1 ? INFINITY : s == 2 ? -INFINITY : -NAN;
    }
    if (k == 1)
        return special[rnd() % (sizeof(special) / sizeof(special[0]))];
    if (k <= 4) { /* any bit pattern: subnormals, huge, tiny */
        uint64_t b = rnd();
        double x;
        memcpy(&x, &b, sizeof(x));
        return x;
    }
    if (k <= 6) { /* subnormal */
        uint64_t b = (rnd() & UINT64_C(0x000FFFFFFFFFFFFF)) | (rnd() & UINT64_C(1) << 63);
        double x;
        memcpy(&x, &b, sizeof(x));
        return x;
    }
    if (k == 7)
        return (double)(int64_t)(rnd() % 2000001) - 1000000.0;
    /* decimal-like: m / 10^e */
    double m = (double)(rnd() % 100000000000ULL) * (rnd() % 2 ? 1 : -1);
    return m / pow(10.0, (double)(rnd() % 20));
}

struct rvl {
    struct kts_vl vl;
    struct kts_ds ds[KTS_FORMAT_MAX_DS];
    struct kts_meta meta[KTS_FORMAT_MAX_META];
    char keys[KTS_FORMAT_MAX_META][KTS_NAME_MAX];
    char strs[KTS_FORMAT_MAX_META][KTS_FORMAT_MAX_META_STRING + 1];
};

static void random_vl(struct rvl *r)
{
    struct kts_vl *vl = &r->vl;
    memset(vl, 0, sizeof(*vl));
    random_string(vl->host, 1, 127);
    random_string(vl->plugin, 1, rnd() % 3 ? 20 : 127);
    random_string(vl->plugin_instance, 0, rnd() % 3 ? 20 : 127);
    random_string(vl->type, 1, rnd() % 3 ? 20 : 127);
    random_string(vl->type_instance, 0, rnd() % 3 ? 20 : 127);
    vl->time = rnd() % 3 ? (UINT64_C(1700000000) << 30) + rnd() % (UINT64_C(1) << 50) : rnd();
    vl->interval = rnd() % 2 ? UINT64_C(10) << 30 : rnd() % 3 ? rnd() % (UINT64_C(1) << 40) : rnd();
    vl->ds_len = rnd() % 50 == 0 ? 1 + rnd() % KTS_FORMAT_MAX_DS : 1 + rnd() % 4;
    vl->ds = r->ds;
    for (size_t i = 0; i < vl->ds_len; i++) {
        struct kts_ds *ds = &r->ds[i];
        random_string(ds->name, 1, rnd() % 4 ? 16 : 127);
        ds->type = (enum kts_ds_type)(rnd() % 4);
        switch (ds->type) {
        case KTS_DS_GAUGE:
            ds->value.gauge = random_double();
            break;
        case KTS_DS_DERIVE:
            ds->value.derive = (int64_t)(rnd() % 3 ? rnd() >> (rnd() % 64) : rnd());
            if (rnd() % 2)
                ds->value.derive = -ds->value.derive;
            if (rnd() % 50 == 0)
                ds->value.derive = rnd() % 2 ? INT64_MIN : INT64_MAX;
            break;
        case KTS_DS_COUNTER:
        case KTS_DS_ABSOLUTE:
            ds->value.counter = rnd() % 50 == 0 ? UINT64_MAX : rnd() >> (rnd() % 64);
            break;
        }
    }
    vl->meta_len = rnd() % 3 == 0 ? rnd() % (rnd() % 20 == 0 ? KTS_FORMAT_MAX_META + 1 : 6) : 0;
    vl->meta = vl->meta_len ? r->meta : NULL;
    for (size_t i = 0; i < vl->meta_len; i++) {
        struct kts_meta *m = &r->meta[i];
        /* Distinct keys: a random name with the index at the end (escaped or not). */
        random_string(r->keys[i], 0, 100);
        size_t used = strlen(r->keys[i]); /* at most 100 of KTS_NAME_MAX */
        snprintf(r->keys[i] + used, sizeof(r->keys[i]) - used, "#%u", (unsigned)i);
        m->key = r->keys[i];
        m->type = (enum kts_meta_type)(1 + rnd() % 5);
        switch (m->type) {
        case KTS_META_STRING:
            random_string(r->strs[i], 0, rnd() % 20 == 0 ? KTS_FORMAT_MAX_META_STRING : 60);
            m->value.string = r->strs[i];
            break;
        case KTS_META_SIGNED_INT:
            m->value.sint = (int64_t)rnd();
            break;
        case KTS_META_UNSIGNED_INT:
            m->value.uint = rnd() >> (rnd() % 64);
            break;
        case KTS_META_DOUBLE:
            m->value.dbl = random_double();
            break;
        case KTS_META_BOOLEAN:
            m->value.boolean = rnd() % 2;
            break;
        }
    }
}

static void test_random(long count, struct kts_buf *keep, size_t n_keep)
{
    struct rvl *r = calloc(1, sizeof(*r));
    struct kts_buf b = {0};
    long encoded = 0, accepted = 0, equal = 0, with_meta = 0, failures = 0;
    for (long i = 0; i < count; i++) {
        random_vl(r);
        kts_buf_truncate(&b, 0);
        if (kts_format_encode(&b, &r->vl, KTS_FORMAT_TS) != 0)
            continue;
        encoded++;
        with_meta += r->vl.meta_len > 0;
        char why[512];
        int res = fast_vs_yajl(b.data, b.len, why, sizeof(why));
        accepted += res != -1;
        equal += res == 0;
        if (res != 0 && failures++ < 5)
            diag("random %ld: %s: %.300s", i, why, b.data);
        /* Keep a few messages with meta data for the mutation test. */
        for (size_t k = 0; k < n_keep; k++)
            if (keep[k].len == 0 && r->vl.meta_len >= 2 + k && b.len < 1500) {
                kts_buf_append(&keep[k], b.data, b.len);
                break;
            }
    }
    is_int(encoded, count, "random: %ld value lists encoded (%ld with meta data)", count,
           with_meta);
    is_int(accepted, encoded, "random: the fast path accepts every one (1)");
    is_int(equal, encoded, "random: fast path == yajl path, field for field, double bits (2)");
    kts_buf_fini(&b);
    free(r);
}

/* ------------------------------------------------------------------ golden files */

#define MAX_MSGS 64
static char *msgs[MAX_MSGS];
static size_t msg_len[MAX_MSGS];
static int n_msgs;

static void load_golden(void)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/tests/data/format", srcdir);
    DIR *dp = opendir(dir);
    if (dp == NULL)
        BAIL_OUT("cannot open %s", dir);
    struct dirent *de;
    while ((de = readdir(dp)) != NULL && n_msgs < MAX_MSGS) {
        size_t l = strlen(de->d_name);
        if (l < 8 || strcmp(de->d_name + l - 8, ".ts.json") != 0)
            continue;
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            BAIL_OUT("cannot read %s", path);
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, f)) > 0 && n_msgs < MAX_MSGS) {
            while (n > 0 && line[n - 1] == '\n')
                n--;
            if (n == 0)
                continue;
            msgs[n_msgs] = strndup(line, (size_t)n);
            msg_len[n_msgs++] = (size_t)n;
        }
        free(line);
        fclose(f);
    }
    closedir(dp);
}

static void test_golden(void)
{
    int accepted = 0, equal = 0;
    for (int i = 0; i < n_msgs; i++) {
        char why[512];
        int r = fast_vs_yajl(msgs[i], msg_len[i], why, sizeof(why));
        accepted += r != -1;
        equal += r == 0;
        if (r != 0)
            diag("golden %d: %s: %.200s", i, why, msgs[i]);
    }
    ok(n_msgs >= 12, "golden: %d messages in tests/data/format/*.ts.json", n_msgs);
    is_int(accepted, n_msgs, "golden: the fast path accepts every one (1)");
    is_int(equal, n_msgs, "golden: fast path == yajl path, field for field (2)");
}

/* ------------------------------------------------------------------ mutations */

/* Every single-byte change, deletion and truncation of `msg`: same result both ways (3). */
static void mutate_one(const char *label, const char *msg, size_t len)
{
    char *m = malloc(len + 1);
    long tried = 0, differ = 0, fast_ok = 0;
    char why[1024];
    for (size_t pos = 0; pos < len; pos++) {
        for (int v = 0; v < 256; v++) {
            if ((unsigned char)msg[pos] == v)
                continue;
            memcpy(m, msg, len);
            m[pos] = (char)v;
            tried++;
            fast_ok += kts_fast_decode(fast, m, len) != NULL;
            if (!same_both_ways(m, len, 0, why, sizeof(why)) && differ++ < 3)
                diag("%s: byte %zu -> 0x%02x: %s", label, pos, (unsigned)v, why);
        }
        /* deletion */
        memcpy(m, msg, pos);
        memcpy(m + pos, msg + pos + 1, len - pos - 1);
        tried++;
        fast_ok += kts_fast_decode(fast, m, len - 1) != NULL;
        if (!same_both_ways(m, len - 1, 0, why, sizeof(why)) && differ++ < 3)
            diag("%s: byte %zu deleted: %s", label, pos, why);
        /* truncation */
        tried++;
        fast_ok += kts_fast_decode(fast, msg, pos) != NULL;
        if (!same_both_ways(msg, pos, 0, why, sizeof(why)) && differ++ < 3)
            diag("%s: truncated to %zu bytes: %s", label, pos, why);
    }
    free(m);
    is_int(differ, 0,
           "mutations of %s (%zu bytes): %ld variants (%ld taken by the fast path) give the same "
           "rc, format, error and value lists both ways (3)",
           label, len, tried, fast_ok);
}

/* ------------------------------------------------------------------ fallback cases */

static void test_fallbacks(void)
{
    static const char *const cases[] = {
        /* white space */
        "{ "
        "\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"\",\"type\":\"t\",\"type_"
        "instance\":\"\",\"time\":1.5,\"interval\":10,\"ds\":[{\"name\":\"value\",\"type\":"
        "\"gauge\",\"value\":1}]}",
        "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"\",\"type\":\"t\",\"type_"
        "instance\":\"\",\"time\":1.5,\"interval\":10,\"ds\":[{\"name\":\"value\",\"type\":"
        "\"gauge\",\"value\":1}]}\n",
        /* other key order */
        "{\"host\":\"h\",\"v\":1,\"plugin\":\"p\",\"type\":\"t\",\"time\":1.5,\"ds\":[{\"value\":1,"
        "\"name\":\"value\",\"type\":\"gauge\"}]}",
        /* exponent in time, more fractional digits than 10 */
        "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"\",\"type\":\"t\",\"type_"
        "instance\":\"\",\"time\":1.7e9,\"interval\":10,\"ds\":[{\"name\":\"value\",\"type\":"
        "\"gauge\",\"value\":1}]}",
        "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"\",\"type\":\"t\",\"type_"
        "instance\":\"\",\"time\":1.00000000005,\"interval\":10,\"ds\":[{\"name\":\"value\","
        "\"type\":\"gauge\",\"value\":1}]}",
        /* unknown field */
        "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"\",\"type\":\"t\",\"type_"
        "instance\":\"\",\"time\":1.5,\"interval\":10,\"ds\":[{\"name\":\"value\",\"type\":"
        "\"gauge\",\"value\":1}],\"x\":[1,{}]}",
        /* \u escape above U+007F, surrogate pair */
        "{\"v\":1,\"host\":\"h\\u00e9\\ud83d\\ude00\",\"plugin\":\"p\",\"plugin_instance\":\"\","
        "\"type\":\"t\",\"type_instance\":\"\",\"time\":1.5,\"interval\":10,\"ds\":[{\"name\":"
        "\"value\",\"type\":\"gauge\",\"value\":1}]}",
        /* -0 counter, big gauge that strtod makes infinite (collectd's %.15g DBL_MAX) */
        "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"\",\"type\":\"t\",\"type_"
        "instance\":\"\",\"time\":1.5,\"interval\":10,\"ds\":[{\"name\":\"value\",\"type\":"
        "\"counter\",\"value\":-0}]}",
        "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"\",\"type\":\"t\",\"type_"
        "instance\":\"\",\"time\":1.5,\"interval\":10,\"ds\":[{\"name\":\"value\",\"type\":"
        "\"gauge\",\"value\":1.79769313486232e+308}]}",
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    size_t taken = 0, same = 0, decoded = 0;
    for (size_t i = 0; i < n; i++) {
        char why[1024];
        size_t len = strlen(cases[i]);
        taken += kts_fast_decode(fast, cases[i], len) != NULL;
        struct result r;
        decode_with(dec_fast, cases[i], len, 0, &r);
        decoded += r.rc == 0 && r.n == 1;
        if (r.rc != 0)
            diag("fallback %zu: %s", i, r.err);
        result_fini(&r);
        if (same_both_ways(cases[i], len, 0, why, sizeof(why)))
            same++;
        else
            diag("fallback %zu: %s", i, why);
    }
    is_int(taken, 0, "fallback: the fast path leaves %zu unusual messages to yajl (1, 4-5)", n);
    is_int(decoded, n, "fallback: ... and they still decode");
    is_int(same, n, "fallback: ... identically both ways");

    /* Limits: 65 data sources and 65 meta entries fall back and fail the same way (6). */
    struct kts_buf b = {0};
    const char *head = "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"\",\"type\":"
                       "\"t\",\"type_instance\":\"\",\"time\":1.5,\"interval\":10,\"ds\":[";
    kts_buf_append(&b, head, strlen(head));
    for (int i = 0; i < 65; i++) {
        char tmp[64];
        int l = snprintf(tmp, sizeof(tmp), "%s{\"name\":\"d%d\",\"type\":\"gauge\",\"value\":%d}",
                         i ? "," : "", i, i);
        kts_buf_append(&b, tmp, (size_t)l);
    }
    kts_buf_append(&b, "]}", 2);
    char why[1024];
    struct result r;
    decode_with(dec_fast, b.data, b.len, 0, &r);
    ok(r.rc == -ERANGE && kts_fast_decode(fast, b.data, b.len) == NULL &&
           same_both_ways(b.data, b.len, 0, why, sizeof(why)),
       "limit: 65 data sources: -ERANGE both ways (%s) (6)", r.err);
    result_fini(&r);
    kts_buf_truncate(&b, 0);
    kts_buf_append(&b, head, strlen(head));
    const char *ds = "{\"name\":\"v\",\"type\":\"gauge\",\"value\":1}],\"meta\":{";
    kts_buf_append(&b, ds, strlen(ds));
    for (int i = 0; i < 65; i++) {
        char tmp[80];
        int l = snprintf(tmp, sizeof(tmp), "%s\"k%d\":{\"type\":\"boolean\",\"value\":true}",
                         i ? "," : "", i);
        kts_buf_append(&b, tmp, (size_t)l);
    }
    kts_buf_append(&b, "}}", 2);
    decode_with(dec_fast, b.data, b.len, 0, &r);
    ok(r.rc == -ERANGE && kts_fast_decode(fast, b.data, b.len) == NULL &&
           same_both_ways(b.data, b.len, 0, why, sizeof(why)),
       "limit: 65 meta entries: -ERANGE both ways (%s) (6)", r.err);
    result_fini(&r);
    kts_buf_fini(&b);

    /* The callback's stop code, through the fast path and the yajl path. */
    ok(kts_fast_decode(fast, msgs[0], msg_len[0]) != NULL &&
           same_both_ways(msgs[0], msg_len[0], -ECANCELED, why, sizeof(why)),
       "a callback's stop code and message are the same both ways");
}

int main(int argc, char **argv)
{
    long count = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
    long n_mutate = argc > 2 ? strtol(argv[2], NULL, 10) : 12; /* fewer under valgrind */
    srcdir = getenv("KTS_TOP_SRCDIR");
    if (srcdir == NULL)
        srcdir = ".";
    dec_fast = kts_decoder_create(0);
    dec_yajl = kts_decoder_create(KTS_DECODE_NO_FAST);
    fast = kts_fast_create();
    if (dec_fast == NULL || dec_yajl == NULL || fast == NULL)
        BAIL_OUT("out of memory");
    load_golden();
    enum { N_KEEP = 3 };
    int n_golden_mut = n_mutate < 12 ? (int)n_mutate : 12;
    int n_random_mut = n_mutate < N_KEEP ? (int)n_mutate : N_KEEP;
    plan(3 + 3 + 6 + n_golden_mut + n_random_mut);

    test_golden();
    struct kts_buf keep[N_KEEP] = {{0}};
    test_random(count, keep, N_KEEP);
    test_fallbacks();

    /* Mutations: 12 golden messages (every DS type, meta, escapes, edge numbers) and three
     * random ones with meta data. */
    for (int i = 0; i < n_golden_mut; i++) {
        char label[32];
        snprintf(label, sizeof(label), "golden %d", i);
        if (i < n_msgs)
            mutate_one(label, msgs[i], msg_len[i]);
        else
            ok(0, "%s missing", label);
    }
    for (int k = 0; k < N_KEEP; k++) {
        if (k >= n_random_mut) {
            kts_buf_fini(&keep[k]);
            continue;
        }
        char label[32];
        snprintf(label, sizeof(label), "random %d", k);
        if (keep[k].len > 0)
            mutate_one(label, keep[k].data, keep[k].len);
        else
            ok(0, "%s: no random message with meta data kept", label);
        kts_buf_fini(&keep[k]);
    }

    for (int i = 0; i < n_msgs; i++)
        free(msgs[i]);
    kts_fast_destroy(fast);
    kts_decoder_destroy(dec_fast);
    kts_decoder_destroy(dec_yajl);
    return done_testing();
}
