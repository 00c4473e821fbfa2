/* SPDX-License-Identifier: MIT */
/*
 * kts_format: encoder, decoder and series keys (guarantees 1-9 of src/format/kts_format.h).
 *
 * Golden files: tests/data/format/NAME.vl describes a value list (tests/lib/vl_desc.h);
 * NAME.ts.json and NAME.collectd.json are the exact bytes expected from the encoders. Every golden
 * file is encoded and compared, decoded and compared with the description, and re-encoded
 * (identity). tests/data/format/collectd-*.json are JSON messages written by collectd itself
 * (decoded, checked against NAME.expect, and re-encoded byte for byte).
 */
#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <stdbool.h>
#include <stdint.h>

#include "kts_buf.h"
#include "kts_format.h"
#include "kts_testhooks.h"
#include "lib/vl_desc.h"
#include "lib/vl_same.h"

static const char *srcdir;

/* ------------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    *len = n;
    return buf;
}

static int load_vl(const char *path, struct vl_store *st)
{
    size_t len;
    char *text = read_file(path, &len);
    if (text == NULL)
        return -1;
    text = realloc(text, len + 1);
    text[len] = '\0';
    int r = load_vl_text(text, st);
    free(text);
    return r;
}

/* Expected files end with one newline that is not part of the message. */
static void chomp(char *buf, size_t *len)
{
    if (*len > 0 && buf[*len - 1] == '\n')
        (*len)--;
    buf[*len] = '\0';
}

/* Field-by-field comparison (names as strings, any NaN equals any NaN); `why` gets the first
 * difference. */
static bool vl_equal(const struct kts_vl *a, const struct kts_vl *b, char *why, size_t n)
{
    return vl_same(a, b, VL_SAME_NAN_ANY, why, n);
}

/* Decode `msg` expecting exactly one value list, copied into *out (kts_vl_fini() it). */
static int decode_one(const char *msg, size_t len, struct kts_vl *out, enum kts_format *fmt,
                      char *err, size_t errsz)
{
    struct kts_vl *vls;
    size_t n;
    int r = kts_format_decode_array(msg, len, 0, fmt, &vls, &n, err, errsz);
    if (r != 0)
        return r;
    if (n != 1) {
        snprintf(err, errsz, "%zu value lists", n);
        kts_vl_array_free(vls, n);
        return -EINVAL;
    }
    *out = vls[0];
    free(vls);
    return 0;
}

/* Encode `vl` in `fmt` into a fresh string (caller frees). */
static char *encode(const struct kts_vl *vl, enum kts_format fmt, size_t *len)
{
    struct kts_buf b = {0};
    if (kts_format_encode(&b, vl, fmt) != 0) {
        kts_buf_fini(&b);
        return NULL;
    }
    *len = b.len;
    return b.data;
}

/* ------------------------------------------------------------------ golden files */

#define GOLDEN_MAX 64
static char *golden[GOLDEN_MAX];
static int n_golden;
static char *samples[GOLDEN_MAX];
static int n_samples;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_data(void)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/tests/data/format", srcdir);
    DIR *d = opendir(dir);
    if (d == NULL)
        BAIL_OUT("cannot open %s", dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 3 && strcmp(e->d_name + l - 3, ".vl") == 0 && n_golden < GOLDEN_MAX)
            golden[n_golden++] = strndup(e->d_name, l - 3);
        else if (strncmp(e->d_name, "collectd-", 9) == 0 && l > 5 &&
                 strcmp(e->d_name + l - 5, ".json") == 0 && n_samples < GOLDEN_MAX)
            samples[n_samples++] = strndup(e->d_name, l - 5);
    }
    closedir(d);
    qsort(golden, (size_t)n_golden, sizeof(char *), cmp_str);
    qsort(samples, (size_t)n_samples, sizeof(char *), cmp_str);
}

#define GOLDEN_TESTS_PER_FILE 7

static void golden_one(const char *name)
{
    char path[1200];
    struct vl_store st;
    snprintf(path, sizeof(path), "%s/tests/data/format/%s.vl", srcdir, name);
    int lr = load_vl(path, &st);
    ok(lr == 0, "%s: description loads", name);

    static const enum kts_format fmts[] = {KTS_FORMAT_TS, KTS_FORMAT_COLLECTD};
    for (int f = 0; f < 2; f++) {
        const char *fn = kts_format_name(fmts[f]);
        snprintf(path, sizeof(path), "%s/tests/data/format/%s.%s.json", srcdir, name, fn);
        size_t elen = 0;
        char *expect = read_file(path, &elen);
        if (expect == NULL) {
            ok(0, "%s.%s.json: exists", name, fn);
            ok(0, "%s.%s.json: decodes", name, fn);
            ok(0, "%s.%s.json: re-encodes", name, fn);
            continue;
        }
        expect = realloc(expect, elen + 1);
        chomp(expect, &elen);
        size_t glen = 0;
        char *got = encode(&st.vl, fmts[f], &glen);
        ok(got != NULL && glen == elen && memcmp(got, expect, elen) == 0,
           "%s: %s encoding is byte-identical to %s.%s.json", name, fn, name, fn);
        if (got == NULL || glen != elen || memcmp(got, expect, elen) != 0)
            diag("  got: %s\n  exp: %s", got ? got : "(encode failed)", expect);
        free(got);

        /* Decode the expected bytes (an exact-size copy: no NUL after the message). */
        char *exact = malloc(elen);
        memcpy(exact, expect, elen);
        struct kts_vl dec;
        enum kts_format df;
        char err[512], why[512] = "";
        int r = decode_one(exact, elen, &dec, &df, err, sizeof(err));
        free(exact);
        if (r != 0) {
            ok(0, "%s.%s.json: decodes (%s)", name, fn, err);
            ok(0, "%s.%s.json: re-encodes", name, fn);
            free(expect);
            continue;
        }
        if (fmts[f] == KTS_FORMAT_TS && !st.lossy)
            ok(df == fmts[f] && vl_equal(&dec, &st.vl, why, sizeof(why)),
               "%s.ts.json decodes to exactly the described value list %s", name, why);
        else
            ok(df == fmts[f], "%s.%s.json decodes as %s (%s)", name, fn, fn,
               st.lossy ? "lossy by design" : "collectd's JSON is not exact");
        got = encode(&dec, fmts[f], &glen);
        ok(got != NULL && glen == elen && memcmp(got, expect, elen) == 0,
           "%s.%s.json: decode then encode gives the same bytes", name, fn);
        if (got != NULL && (glen != elen || memcmp(got, expect, elen) != 0))
            diag("  got: %s\n  exp: %s", got, expect);
        free(got);
        kts_vl_fini(&dec);
        free(expect);
    }
}

/*
 * A collectd sample: NAME.json (as collectd wrote it, or from its documentation) and
 * NAME.expect, one line per value list:
 *   host plugin plugin_instance type type_instance time interval name:type:value...
 * ("-" for an empty name, time and interval as %.3f, gauges as %.17g). When the first line is
 * "exact", the sample is collectd's own bytes and re-encoding every value list with the collectd
 * encoder must reproduce them; otherwise (pretty-printed documentation) the re-encoded message
 * must decode to the same values.
 */
#define SAMPLE_TESTS_PER_FILE 3

static void sample_one(const char *name)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/tests/data/format/%s.json", srcdir, name);
    size_t len = 0;
    char *msg = read_file(path, &len);
    snprintf(path, sizeof(path), "%s/tests/data/format/%s.expect", srcdir, name);
    size_t elen = 0;
    char *expect = read_file(path, &elen);
    if (msg == NULL || expect == NULL) {
        for (int i = 0; i < SAMPLE_TESTS_PER_FILE; i++)
            ok(0, "%s: sample and .expect exist", name);
        free(msg);
        free(expect);
        return;
    }
    chomp(msg, &len);
    expect = realloc(expect, elen + 1);
    chomp(expect, &elen);
    bool exact = strncmp(expect, "exact\n", 6) == 0;
    const char *want = exact ? expect + 6 : expect;

    struct kts_vl *vls = NULL;
    size_t n = 0;
    enum kts_format fmt;
    char err[512];
    int r = kts_format_decode_array(msg, len, 0, &fmt, &vls, &n, err, sizeof(err));
    ok(r == 0 && fmt == KTS_FORMAT_COLLECTD, "%s: decodes as collectd JSON %s", name, r ? err : "");

    /* Describe what was decoded, compare with .expect. */
    struct kts_buf desc = {0};
    for (size_t i = 0; i < n; i++) {
        const struct kts_vl *vl = &vls[i];
        char line[4096];
        int k = snprintf(line, sizeof(line), "%s%s %s %s %s %s %.3f %.3f", i ? "\n" : "", vl->host,
                         vl->plugin, vl->plugin_instance[0] ? vl->plugin_instance : "-", vl->type,
                         vl->type_instance[0] ? vl->type_instance : "-",
                         (double)vl->time / 1073741824.0, (double)vl->interval / 1073741824.0);
        for (size_t j = 0; j < vl->ds_len; j++) {
            const struct kts_ds *ds = &vl->ds[j];
            if (ds->type == KTS_DS_GAUGE)
                k += snprintf(line + k, sizeof(line) - (size_t)k, " %s:gauge:%.17g", ds->name,
                              ds->value.gauge);
            else if (ds->type == KTS_DS_DERIVE)
                k += snprintf(line + k, sizeof(line) - (size_t)k, " %s:derive:%" PRId64, ds->name,
                              ds->value.derive);
            else
                k += snprintf(line + k, sizeof(line) - (size_t)k, " %s:%s:%" PRIu64, ds->name,
                              kts_ds_type_name(ds->type), ds->value.counter);
        }
        kts_buf_append(&desc, line, (size_t)k);
    }
    is_str(desc.data ? desc.data : "", want, "%s: decoded values are as expected", name);

    /* Re-encode: collectd writes one array per message; ours has one value list per array, so
     * join the objects. */
    struct kts_buf all = {0}, one = {0};
    kts_buf_append_char(&all, '[');
    for (size_t i = 0; i < n; i++) {
        kts_buf_reset(&one);
        kts_format_encode(&one, &vls[i], KTS_FORMAT_COLLECTD);
        if (i > 0)
            kts_buf_append_char(&all, ',');
        if (one.len >= 2)
            kts_buf_append(&all, one.data + 1, one.len - 2);
    }
    kts_buf_append_char(&all, ']');
    if (exact) {
        ok(all.len == len && memcmp(all.data, msg, len) == 0,
           "%s: re-encoding every value list reproduces collectd's bytes", name);
        if (all.len != len || memcmp(all.data, msg, len) != 0)
            diag("  got: %s\n  exp: %s", all.data, msg);
    } else {
        struct kts_vl *again = NULL;
        size_t n2 = 0;
        char why[512] = "";
        bool same = kts_format_decode_array(all.data, all.len, 0, NULL, &again, &n2, err,
                                            sizeof(err)) == 0 &&
                    n2 == n;
        for (size_t i = 0; same && i < n; i++)
            same = vl_equal(&again[i], &vls[i], why, sizeof(why));
        ok(same, "%s: re-encoded, it decodes to the same value lists %s", name, why);
        kts_vl_array_free(again, n2);
    }
    kts_buf_fini(&all);
    kts_buf_fini(&one);
    kts_buf_fini(&desc);
    kts_vl_array_free(vls, n);
    free(msg);
    free(expect);
}

/* ------------------------------------------------------------------ a typical value list */

static struct kts_ds typical_ds[2] = {
    {.name = "rx", .type = KTS_DS_DERIVE, .value.derive = 123456789},
    {.name = "tx", .type = KTS_DS_DERIVE, .value.derive = 987654321},
};
static struct kts_meta typical_meta[5] = {
    {.key = "s", .type = KTS_META_STRING, .value.string = "x\xc3\xa9"},
    {.key = "i", .type = KTS_META_SIGNED_INT, .value.sint = -5},
    {.key = "u", .type = KTS_META_UNSIGNED_INT, .value.uint = 5},
    {.key = "d", .type = KTS_META_DOUBLE, .value.dbl = 0.25},
    {.key = "b", .type = KTS_META_BOOLEAN, .value.boolean = true},
};
static struct kts_vl typical = {
    .host = "host.example.com",
    .plugin = "interface",
    .plugin_instance = "eth0",
    .type = "if_octets",
    .type_instance = "",
    .time = (UINT64_C(1700000000) << 30) + 123456789,
    .interval = UINT64_C(10) << 30,
    .ds_len = 2,
    .ds = typical_ds,
    .meta_len = 5,
    .meta = typical_meta,
};

/* ------------------------------------------------------------------ 2: doubles */

/* Encode one gauge in `fmt` and return the value's text (static buffer). */
static const char *gauge_text(double x, enum kts_format fmt)
{
    static char out[64];
    struct kts_ds ds = {.name = "v", .type = KTS_DS_GAUGE, .value.gauge = x};
    struct kts_vl vl = {.host = "h", .plugin = "p", .type = "t", .ds_len = 1, .ds = &ds};
    struct kts_buf b = {0};
    out[0] = '\0';
    if (kts_format_encode(&b, &vl, fmt) == 0) {
        const char *v = fmt == KTS_FORMAT_TS ? strstr(b.data, "\"value\":") + 8
                                             : strstr(b.data, "\"values\":[") + 10;
        size_t n = strcspn(v, fmt == KTS_FORMAT_TS ? "}" : "]");
        snprintf(out, sizeof(out), "%.*s", (int)n, v);
    }
    kts_buf_fini(&b);
    return out;
}

static double random_double(void)
{
    uint64_t bits = rnd();
    double x;
    memcpy(&x, &bits, sizeof(x));
    return x;
}

/* A "decimal-like" double, as metrics usually are: k digits, a few decimals. */
static double random_decimalish(void)
{
    int digits = 1 + (int)(rnd() % 12);
    int scale = (int)(rnd() % 10);
    uint64_t m = rnd() % 1000000000000ULL;
    uint64_t p = 1;
    for (int i = 0; i < digits; i++)
        p *= 10;
    m %= p;
    double x = (double)m;
    for (int i = 0; i < scale; i++)
        x /= 10;
    return (rnd() & 1) ? -x : x;
}

static void test_doubles(void)
{
    /* 2: exact round trip through our format, for 200,000 random bit patterns plus specials. */
    static const double special[] = {0.0,
                                     -0.0,
                                     DBL_MIN,
                                     -DBL_MIN,
                                     DBL_MAX,
                                     -DBL_MAX,
                                     DBL_TRUE_MIN,
                                     -DBL_TRUE_MIN,
                                     DBL_MIN - DBL_TRUE_MIN,
                                     DBL_EPSILON,
                                     1.0 + DBL_EPSILON,
                                     0.1,
                                     0.2,
                                     0.30000000000000004,
                                     1e-7,
                                     1e21,
                                     1e22,
                                     1e23,
                                     9007199254740991.0,
                                     9007199254740992.0,
                                     9007199254740993.0,
                                     -9007199254740992.0,
                                     123456789012345678.0,
                                     5e-324,
                                     2.2250738585072011e-308,
                                     1.7976931348623157e308,
                                     4.35,
                                     0.000123,
                                     1e15,
                                     1e16,
                                     0.1 + 0.7};
    size_t n = 0, bad = 0, badc = 0, nc = 0;
    char first_bad[200] = "";
    for (size_t i = 0; i < sizeof(special) / sizeof(special[0]) + 300000; i++) {
        double x;
        if (i < sizeof(special) / sizeof(special[0]))
            x = special[i];
        else if (i % 3 == 0)
            x = random_decimalish();
        else if (i % 3 == 1)
            x = random_double();
        else {
            /* subnormals and tiny/huge magnitudes */
            uint64_t bits = rnd() & (i % 2 ? 0x800FFFFFFFFFFFFFULL : ~0ULL);
            memcpy(&x, &bits, sizeof(x));
        }
        if (!isfinite(x))
            continue;
        n++;
        const char *t = gauge_text(x, KTS_FORMAT_TS);
        double y = strtod(t, NULL);
        if (!vl_same_double(x, y, VL_SAME_NAN_ANY)) {
            if (bad++ == 0)
                snprintf(first_bad, sizeof(first_bad), "%.17g -> %s", x, t);
        }
        /* The text must not be longer than the shortest %.Ng that round-trips. */
        char tmp[64];
        for (int p = 1; p <= 17; p++) {
            snprintf(tmp, sizeof(tmp), "%.*g", p, x);
            if (strtod(tmp, NULL) == x)
                break;
        }
        /* Count significant digits of both. */
        int sig_ours = 0, sig_ref = 0;
        bool seen = false;
        for (const char *c = t; *c && *c != 'e'; c++)
            if (*c >= '1' && *c <= '9')
                seen = true, sig_ours++;
            else if (*c == '0' && seen)
                sig_ours++;
        seen = false;
        for (const char *c = tmp; *c && *c != 'e'; c++)
            if (*c >= '1' && *c <= '9')
                seen = true, sig_ref++;
            else if (*c == '0' && seen)
                sig_ref++;
        /* trailing zeros of an integer part count in ours ("1000") but not in %g ("1e+03"):
         * compare only non-integers. */
        if (x != trunc(x) && sig_ours > sig_ref) {
            if (bad++ == 0)
                snprintf(first_bad, sizeof(first_bad), "%.17g -> %s, shortest is %s", x, t, tmp);
        }
        /* collectd format: exactly %.15g. */
        nc++;
        snprintf(tmp, sizeof(tmp), "%.15g", x);
        const char *c = gauge_text(x, KTS_FORMAT_COLLECTD);
        if (strcmp(c, tmp) != 0 && badc++ == 0)
            diag("collectd gauge %.17g: got %s, %%.15g is %s", x, c, tmp);
    }
    ok(bad == 0,
       "2: %zu finite doubles (random bits, subnormals, decimal-like, edges) round-trip "
       "exactly and shortest through the ts format %s",
       n, first_bad);
    ok(badc == 0, "3: %zu gauges in collectd format are byte-identical to %%.15g", nc);
    is_str(gauge_text(NAN, KTS_FORMAT_TS), "null", "2: NaN gauge is null");
    is_str(gauge_text(INFINITY, KTS_FORMAT_TS), "null", "2: +Inf gauge is null");
    is_str(gauge_text(-INFINITY, KTS_FORMAT_COLLECTD), "null", "3: -Inf gauge is null (collectd)");
    is_str(gauge_text(-0.0, KTS_FORMAT_TS), "-0", "2: -0 keeps its sign");
    is_str(gauge_text(5e-324, KTS_FORMAT_TS), "5e-324", "2: smallest subnormal is 5e-324");
    is_str(gauge_text(0.1, KTS_FORMAT_TS), "0.1", "2: 0.1 is 0.1");
    is_str(gauge_text(1e21, KTS_FORMAT_TS), "1e+21", "2: 1e21 uses an exponent");
    is_str(gauge_text(2251799813685248.5, KTS_FORMAT_TS), "2251799813685248.5",
           "2: 2^51 + 0.5 keeps its fraction");
}

/* ------------------------------------------------------------------ 2, 8: times */

static const char *time_text(kts_time_t t, enum kts_format fmt)
{
    static char out[64];
    struct kts_ds ds = {.name = "v", .type = KTS_DS_GAUGE, .value.gauge = 1};
    struct kts_vl vl = {.host = "h", .plugin = "p", .type = "t", .ds_len = 1, .ds = &ds, .time = t};
    struct kts_buf b = {0};
    kts_format_encode(&b, &vl, fmt);
    const char *v = strstr(b.data, "\"time\":") + 7;
    snprintf(out, sizeof(out), "%.*s", (int)strcspn(v, ","), v);
    kts_buf_fini(&b);
    return out;
}

/* Decode a TS message whose time is the text `t`; returns the error or 0. */
static int decode_time(const char *t, kts_time_t *out, char *err, size_t errsz)
{
    char msg[1024];
    snprintf(msg, sizeof(msg),
             "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"type\":\"t\",\"time\":%s,"
             "\"ds\":[{\"name\":\"v\",\"type\":\"gauge\",\"value\":1}]}",
             t);
    struct kts_vl vl;
    int r = decode_one(msg, strlen(msg), &vl, NULL, err, errsz);
    if (r == 0) {
        *out = vl.time;
        kts_vl_fini(&vl);
    }
    return r;
}

static void test_times(void)
{
    size_t n = 0, bad = 0, badc = 0;
    char first[512] = "";
    for (size_t i = 0; i < 200000; i++) {
        kts_time_t t;
        switch (i % 4) {
        case 0:
            t = rnd(); /* any 64-bit value is a valid cdtime */
            break;
        case 1:
            t = (UINT64_C(1600000000) + rnd() % 200000000) << 30 | (rnd() & 0x3fffffff);
            break;
        case 2: {
            /* edge fractions */
            static const uint64_t fr[] = {0,          1,          2,          0x1fffffff,
                                          0x20000000, 0x20000001, 0x3ffffffe, 0x3fffffff,
                                          107374182,  107374183,  536870911,  536870913};
            t = ((rnd() % (UINT64_C(1) << 34)) << 30) | fr[rnd() % 12];
            break;
        }
        default:
            t = UINT64_MAX - rnd() % 4096;
        }
        n++;
        const char *s = time_text(t, KTS_FORMAT_TS);
        char err[200];
        kts_time_t back = 0;
        int r = decode_time(s, &back, err, sizeof(err));
        const char *dot = strchr(s, '.');
        if (r != 0 || back != t || dot == NULL || strlen(dot + 1) != 10) {
            if (bad++ == 0)
                snprintf(first, sizeof(first), "%" PRIu64 " -> %s -> %" PRIu64 " (%s)", t, s, back,
                         r ? err : "");
        }
        char ref[64];
        snprintf(ref, sizeof(ref), "%.3f", (double)t / 1073741824.0);
        if (strcmp(time_text(t, KTS_FORMAT_COLLECTD), ref) != 0 && badc++ == 0)
            diag("collectd time %" PRIu64 ": got %s, %%.3f is %s", t,
                 time_text(t, KTS_FORMAT_COLLECTD), ref);
    }
    ok(bad == 0,
       "2: %zu cdtime values (random, realistic, edge fractions, near 2^64) round-trip "
       "exactly with 10 fractional digits %s",
       n, first);
    ok(badc == 0, "3: %zu collectd times are byte-identical to %%.3f of CDTIME_T_TO_DOUBLE", n);
    is_str(time_text(UINT64_C(1700000000) << 30, KTS_FORMAT_TS), "1700000000.0000000000",
           "2: whole seconds have 10 zero digits");
    is_str(time_text((UINT64_C(1) << 30) - 1, KTS_FORMAT_TS), "0.9999999991",
           "2: the largest fraction does not carry into the seconds");

    /* 8: the decoder reads any exact decimal. */
    static const struct {
        const char *text;
        kts_time_t want;
    } cases[] = {
        {"0", 0},
        {"-0", 0},
        {"-0.000", 0},
        {"1", UINT64_C(1) << 30},
        {"1.5", (UINT64_C(3) << 29)},
        {"1.500", (UINT64_C(3) << 29)},
        {"15e-1", (UINT64_C(3) << 29)},
        {"0.15E1", (UINT64_C(3) << 29)},
        {"1.7e9", UINT64_C(1700000000) << 30},
        {"1700000000.123", (UINT64_C(1700000000) << 30) + 132070244}, /* round(.123*2^30) */
        {"0.0000000004656612873077392578125", 1},                     /* exactly 2^-31: half up */
        {"0.0000000004656612873077392578124", 0},                     /* just below half */
        {"0.00000000046566128730773925781250000000000000000000000001", 1},
        {"0.000000000465661287307739257812499999999999999999999999999", 0},
        {"1e-400", 0},
        {"17179869183.9999999995", UINT64_MAX}, /* 2^34 - 1 + (2^30-1)/2^30, rounded */
    };
    bool all = true;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kts_time_t got = 0;
        char err[256];
        int r = decode_time(cases[i].text, &got, err, sizeof(err));
        if (r != 0 || got != cases[i].want) {
            all = false;
            diag("time %s: got %" PRIu64 " (%s), want %" PRIu64, cases[i].text, got, r ? err : "ok",
                 cases[i].want);
        }
    }
    ok(all, "8: decimal times with few, many, or exponent digits decode exactly (%zu cases)",
       sizeof(cases) / sizeof(cases[0]));
}

/* ------------------------------------------------------------------ 4: strings */

static const char *name_json(const char *host)
{
    static char out[1024];
    struct kts_ds ds = {.name = "v", .type = KTS_DS_GAUGE, .value.gauge = 1};
    struct kts_vl vl = {.plugin = "p", .type = "t", .ds_len = 1, .ds = &ds};
    snprintf(vl.host, sizeof(vl.host), "%s", host);
    struct kts_buf b = {0};
    kts_format_encode(&b, &vl, KTS_FORMAT_TS);
    const char *v = strstr(b.data, "\"host\":") + 7;
    const char *e = strstr(v, ",\"plugin\":");
    snprintf(out, sizeof(out), "%.*s", (int)(e - v), v);
    kts_buf_fini(&b);
    return out;
}

static void test_strings(void)
{
    static const struct {
        const char *in, *out, *what;
    } cases[] = {
        {"plain", "\"plain\"", "ASCII passes"},
        {"q\"b\\s/", "\"q\\\"b\\\\s/\"", "quote and backslash are escaped, / is not"},
        {"\n\t\r\b\f", "\"\\n\\t\\r\\b\\f\"", "short escapes"},
        {"\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\"", "other controls as \\u00XX, DEL passes"},
        {"h\xc3\xb4te \xe6\x97\xa5 \xf0\x9f\x98\x80",
         "\"h\xc3\xb4te \xe6\x97\xa5 \xf0\x9f\x98\x80\"",
         "valid 2-, 3- and 4-byte UTF-8 pass unchanged"},
        {"a\xff"
         "b",
         "\"a\xef\xbf\xbd"
         "b\"",
         "invalid byte 0xff becomes U+FFFD"},
        {"a\xc3", "\"a\xef\xbf\xbd\"", "truncated sequence at the end becomes U+FFFD"},
        {"\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\"", "overlong 0xc0 0xaf: two U+FFFD"},
        {"\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"",
         "UTF-8 encoded surrogate: U+FFFD per byte"},
        {"\xe6\x97"
         "x",
         "\"\xef\xbf\xbdx\"", "maximal subpart: one U+FFFD for e6 97"},
        {"\xf4\x90\x80\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"",
         "above U+10FFFF is invalid"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        is_str(name_json(cases[i].in), cases[i].out, "4: %s", cases[i].what);

    /* 9: the decoder unescapes, including surrogate pairs; the result is the raw UTF-8. */
    const char *msg = "{\"v\":1,\"host\":\"\\u00e9\\ud83d\\ude00\\n\\\"\\/\",\"plugin\":\"p\","
                      "\"type\":\"t\",\"time\":1,\"ds\":[{\"name\":\"v\",\"type\":\"gauge\","
                      "\"value\":1}]}";
    struct kts_vl vl;
    char err[256];
    int r = decode_one(msg, strlen(msg), &vl, NULL, err, sizeof(err));
    ok(r == 0 && strcmp(vl.host, "\xc3\xa9\xf0\x9f\x98\x80\n\"/") == 0,
       "9: \\u escapes and surrogate pairs decode to UTF-8");
    if (r == 0)
        kts_vl_fini(&vl);
}

/* ------------------------------------------------------------------ 5: identity */

static void random_name(char *dst, size_t max)
{
    static const char *const pieces[] = {
        "a",  "b",  "cpu", "-",    "_", ".", "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x98\x80",
        "\"", "\\", "\n",  "\x01", " ", "0", "9"};
    size_t n = 0, want = rnd() % 24;
    dst[0] = '\0';
    for (size_t i = 0; i < want; i++) {
        const char *p = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
        size_t l = strlen(p);
        if (n + l + 1 > max)
            break;
        memcpy(dst + n, p, l);
        n += l;
        dst[n] = '\0';
    }
}

static void test_identity(void)
{
    int bad_ts = 0, bad_cd = 0, bad_exact = 0;
    char why[512] = "";
    for (int iter = 0; iter < 3000; iter++) {
        struct vl_store st;
        memset(&st, 0, sizeof(st));
        st.vl.ds = st.ds;
        st.vl.meta = st.meta;
        random_name(st.vl.host, 40);
        if (st.vl.host[0] == '\0')
            strcpy(st.vl.host, "h");
        random_name(st.vl.plugin, 40);
        if (st.vl.plugin[0] == '\0')
            strcpy(st.vl.plugin, "p");
        random_name(st.vl.plugin_instance, 40);
        random_name(st.vl.type, 40);
        if (st.vl.type[0] == '\0')
            strcpy(st.vl.type, "t");
        random_name(st.vl.type_instance, 40);
        st.vl.time = rnd();
        st.vl.interval = rnd() % (UINT64_C(3600) << 30);
        st.vl.ds_len = 1 + rnd() % 4;
        for (size_t i = 0; i < st.vl.ds_len; i++) {
            struct kts_ds *d = &st.ds[i];
            random_name(d->name, 30);
            if (d->name[0] == '\0')
                strcpy(d->name, "value");
            d->type = (enum kts_ds_type)(rnd() % 4);
            if (d->type == KTS_DS_GAUGE) {
                d->value.gauge = (rnd() & 1) ? random_double() : random_decimalish();
                if (isinf(d->value.gauge))
                    d->value.gauge = NAN;
            } else {
                d->value.counter = rnd() >> (rnd() % 64);
            }
        }
        st.vl.meta_len = rnd() % 4;
        for (size_t i = 0; i < st.vl.meta_len; i++) {
            struct kts_meta *m = &st.meta[i];
            snprintf(st.strs[i][0], sizeof(st.strs[i][0]), "k%zu", i);
            m->key = st.strs[i][0];
            m->type = (enum kts_meta_type)(1 + rnd() % 5);
            random_name(st.strs[i][1], 60);
            m->value.string = st.strs[i][1];
            if (m->type == KTS_META_SIGNED_INT)
                m->value.sint = (int64_t)rnd();
            else if (m->type == KTS_META_UNSIGNED_INT)
                m->value.uint = rnd();
            else if (m->type == KTS_META_DOUBLE)
                m->value.dbl = random_decimalish();
            else if (m->type == KTS_META_BOOLEAN)
                m->value.boolean = rnd() & 1;
        }
        for (int f = 1; f <= 2; f++) {
            enum kts_format fmt = (enum kts_format)f;
            size_t l1, l2;
            char *e1 = encode(&st.vl, fmt, &l1);
            struct kts_vl dec;
            char err[512];
            int r = e1 ? decode_one(e1, l1, &dec, NULL, err, sizeof(err)) : -1;
            if (r != 0) {
                if ((f == 1 ? bad_ts++ : bad_cd++) == 0)
                    diag("%s: decode failed: %s\n  %s", kts_format_name(fmt), err, e1);
                free(e1);
                continue;
            }
            char *e2 = encode(&dec, fmt, &l2);
            if (e2 == NULL || l1 != l2 || memcmp(e1, e2, l1) != 0) {
                if ((f == 1 ? bad_ts++ : bad_cd++) == 0)
                    diag("%s: not identical:\n  %s\n  %s", kts_format_name(fmt), e1, e2);
            }
            if (fmt == KTS_FORMAT_TS && !vl_equal(&dec, &st.vl, why, sizeof(why)) &&
                bad_exact++ == 0)
                diag("ts: decoded value list differs: %s\n  %s", why, e1);
            free(e1);
            free(e2);
            kts_vl_fini(&dec);
        }
    }
    ok(bad_ts == 0, "5: encode, decode, encode is the identity for 3000 random value lists (ts)");
    ok(bad_cd == 0, "5: encode, decode, encode is the identity for 3000 random value lists "
                    "(collectd)");
    ok(bad_exact == 0, "5: ts decoding gives back exactly the value list that was encoded");
}

/* ------------------------------------------------------------------ 6, 7: truncation */

static int count_cb(struct kts_vl *vl, void *opaque)
{
    (void)vl;
    (*(int *)opaque)++;
    return 0;
}

static void test_truncation(void)
{
    for (int f = 1; f <= 2; f++) {
        enum kts_format fmt = (enum kts_format)f;
        size_t len = 0;
        char *msg = encode(&typical, fmt, &len);
        size_t failed_cleanly = 0, calls_total = 0;
        for (size_t cut = 0; cut < len; cut++) {
            /* exact-size heap copy: valgrind/ASan see any read past the end */
            char *p = malloc(cut ? cut : 1);
            memcpy(p, msg, cut);
            char err[512] = "";
            int calls = 0;
            int r = kts_format_decode(p, cut, 0, NULL, count_cb, &calls, err, sizeof(err));
            if (r < 0 && err[0] != '\0' && calls == 0)
                failed_cleanly++;
            calls_total += (size_t)calls;
            free(p);
        }
        ok(failed_cleanly == len && calls_total == 0,
           "6: %s message (%zu bytes) cut at every offset fails with a message, no callback",
           kts_format_name(fmt), len);
        char *p = malloc(len);
        memcpy(p, msg, len);
        int calls = 0;
        char err[512];
        int r = kts_format_decode(p, len, 0, NULL, count_cb, &calls, err, sizeof(err));
        ok(r == 0 && calls == 1, "8: the whole %s message decodes from a buffer without a NUL",
           kts_format_name(fmt));
        free(p);
        free(msg);
    }
}

/* ------------------------------------------------------------------ 7: malformed input */

#define TS_HEAD "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"type\":\"t\",\"time\":1,"
#define TS_DS "\"ds\":[{\"name\":\"v\",\"type\":\"gauge\",\"value\":1}]"
#define CD_HEAD "[{\"time\":1,\"host\":\"h\",\"plugin\":\"p\",\"type\":\"t\","

static char long_name_msg[512], deep_msg[256], many_ds_msg[8192], many_meta_msg[8192];
static char long_number_msg[1024];

static void build_big_inputs(void)
{
    char n128[129];
    memset(n128, 'x', 128);
    n128[128] = '\0';
    snprintf(long_name_msg, sizeof(long_name_msg),
             "{\"v\":1,\"host\":\"%s\",\"plugin\":\"p\",\"type\":\"t\",\"time\":1," TS_DS "}",
             n128);
    size_t p = 0;
    p += (size_t)snprintf(deep_msg, sizeof(deep_msg), TS_HEAD TS_DS ",\"x\":");
    for (int i = 0; i < 40; i++)
        deep_msg[p++] = '[';
    for (int i = 0; i < 40; i++)
        deep_msg[p++] = ']';
    snprintf(deep_msg + p, sizeof(deep_msg) - p, "}");
    p = (size_t)snprintf(many_ds_msg, sizeof(many_ds_msg), TS_HEAD "\"ds\":[");
    for (int i = 0; i < 65; i++)
        p += (size_t)snprintf(many_ds_msg + p, sizeof(many_ds_msg) - p,
                              "%s{\"name\":\"v%d\",\"type\":\"gauge\",\"value\":1}", i ? "," : "",
                              i);
    snprintf(many_ds_msg + p, sizeof(many_ds_msg) - p, "]}");
    p = (size_t)snprintf(many_meta_msg, sizeof(many_meta_msg), TS_HEAD TS_DS ",\"meta\":{");
    for (int i = 0; i < 65; i++)
        p += (size_t)snprintf(many_meta_msg + p, sizeof(many_meta_msg) - p,
                              "%s\"k%d\":{\"type\":\"boolean\",\"value\":true}", i ? "," : "", i);
    snprintf(many_meta_msg + p, sizeof(many_meta_msg) - p, "}}");
    p = (size_t)snprintf(long_number_msg, sizeof(long_number_msg),
                         TS_HEAD "\"ds\":[{\"name\":\"v\",\"type\":\"gauge\",\"value\":1");
    for (int i = 0; i < 450; i++)
        long_number_msg[p++] = '0';
    snprintf(long_number_msg + p, sizeof(long_number_msg) - p, "}]}");
}

static const struct bad_case {
    const char *msg;
    int err;
    const char *needle; /* must appear in the error message */
} bad_cases[] = {
    {"", -EINVAL, "empty message"},
    {"   \n", -EINVAL, "empty message"},
    {"42", -EINVAL, "not a JSON object or array"},
    {"\"x\"", -EINVAL, "first byte is 0x22"},
    {"{", -EINVAL, "malformed JSON"},
    {"{\"v\":1,}", -EINVAL, "malformed JSON"},
    {TS_HEAD TS_DS "} x", -EINVAL, "malformed JSON"},
    {"{\"v\":1} x", -EINVAL, "missing field \"host\""},
    {TS_HEAD TS_DS "}{}", -EINVAL, "malformed JSON"},
    {"{\"v\":2}", -EPROTONOSUPPORT, "format version 2 is not supported"},
    {"{\"v\":\"1\"}", -EINVAL, "v: expected the integer 1"},
    {"{\"v\":1.0}", -EINVAL, "v: expected the integer 1"},
    {"{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"type\":\"t\",\"time\":1}", -EINVAL,
     "missing field \"ds\""},
    {"{\"host\":\"h\",\"plugin\":\"p\",\"type\":\"t\",\"time\":1," TS_DS "}", -EINVAL,
     "missing field \"v\""},
    {"{\"v\":1,\"plugin\":\"p\",\"type\":\"t\",\"time\":1," TS_DS "}", -EINVAL,
     "missing field \"host\""},
    {"{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"type\":\"t\"," TS_DS "}", -EINVAL,
     "missing field \"time\""},
    {TS_HEAD "\"ds\":[]}", -EINVAL, "\"ds\" is empty"},
    {TS_HEAD TS_DS ",\"host\":\"x\"}", -EINVAL, "host: duplicate field"},
    {"{\"v\":1,\"host\":5}", -EINVAL, "host: expected a string, got a number"},
    {"{\"v\":1,\"host\":\"\"}", -EINVAL, "host: must not be empty"},
    {"{\"v\":1,\"host\":\"a\\u0000b\"}", -EINVAL, "host: name contains a NUL"},
    {"{\"v\":1,\"host\":\"\\ud800\"}", -EINVAL, "unpaired UTF-16 surrogate"},
    {"{\"v\":1,\"host\":\"\\udc00\"}", -EINVAL, "unpaired UTF-16 surrogate"},
    {"{\"v\":1,\"host\":\"\\ud800\\u0041\"}", -EINVAL, "unpaired UTF-16 surrogate"},
    {"{\"v\":1,\"host\":\"\xff\"}", -EINVAL, "host: invalid UTF-8"},
    {"{\"v\":1,\"unknown\":[\"\xc3\"]}", -EINVAL, "unknown[0]: invalid UTF-8"},
    {"{\"v\":1,\"host\":\"\xc0\xaf\"}", -EINVAL, "host: invalid UTF-8"},
    {"{\"v\":1,\"host\":\"\xed\xa0\x80\"}", -EINVAL, "host: invalid UTF-8"},
    {"{\"v\":1,\"\xf4\x90\x80\x80\":1}", -EINVAL, "invalid UTF-8 in a key"},
    {"{\"v\":1,\"ds\":[{\"name\":\"v\",\"type\":\"gauge\",\"value\":1.8e308}]}", -ERANGE,
     "out of the range of a double"},
    {"{\"v\":1,\"time\":\"1\"}", -EINVAL, "time: expected a number (seconds), got a string"},
    {"{\"v\":1,\"time\":-1}", -ERANGE, "time: time -1 is negative"},
    {"{\"v\":1,\"time\":17179869184}", -ERANGE, "time: time 17179869184 is too large"},
    {"{\"v\":1,\"time\":1e12}", -ERANGE, "is too large"},
    {"{\"v\":1,\"ds\":{}}", -EINVAL, "ds: expected an array, got an object"},
    {"{\"v\":1,\"ds\":[5]}", -EINVAL, "ds[0]: expected a data source object, got a number"},
    {"{\"v\":1,\"ds\":[{\"name\":\"v\",\"type\":\"gauge\"}]}", -EINVAL,
     "ds[0]: data source has no \"value\""},
    {"{\"v\":1,\"ds\":[{\"name\":\"v\",\"value\":1}]}", -EINVAL, "data source has no \"type\""},
    {"{\"v\":1,\"ds\":[{\"type\":\"gauge\",\"value\":1}]}", -EINVAL, "data source has no \"name\""},
    {"{\"v\":1,\"ds\":[{\"name\":\"v\",\"type\":\"rate\",\"value\":1}]}", -EINVAL,
     "ds[0].type: expected \"gauge\""},
    {"{\"v\":1,\"ds\":[{\"name\":\"v\",\"type\":\"gauge\",\"value\":\"1\"}]}", -EINVAL,
     "ds[0].value: expected a number or null, got a string"},
    {"{\"v\":1,\"ds\":[{\"name\":\"v\",\"type\":\"counter\",\"value\":-1}]}", -ERANGE,
     "ds[0].value: counter value -1 must not be negative"},
    {"{\"v\":1,\"ds\":[{\"name\":\"v\",\"type\":\"counter\",\"value\":18446744073709551616}]}",
     -ERANGE, "does not fit 64 bits"},
    {"{\"v\":1,\"ds\":[{\"name\":\"v\",\"type\":\"absolute\",\"value\":1.5}]}", -EINVAL,
     "absolute value 1.5 is not an integer"},
    {"{\"v\":1,\"ds\":[{\"name\":\"v\",\"type\":\"derive\",\"value\":9223372036854775808}]}",
     -ERANGE, "does not fit a signed 64-bit integer"},
    {"{\"v\":1,\"ds\":[{\"name\":\"v\",\"type\":\"derive\",\"value\":null}]}", -EINVAL,
     "null is only allowed for gauges"},
    {"{\"v\":1,\"ds\":[{\"name\":\"v\",\"type\":\"gauge\",\"value\":1e999}]}", -ERANGE,
     "out of the range of a double"},
    {"{\"v\":1,\"meta\":[]}", -EINVAL, "meta: expected an object, got an array"},
    {"{\"v\":1,\"meta\":{\"k\":1}}", -EINVAL, "meta.k: expected a meta entry object"},
    {"{\"v\":1,\"meta\":{\"k\":{\"type\":\"string\",\"value\":1}}}", -EINVAL,
     "meta.k.value: a string meta entry needs a string value"},
    {"{\"v\":1,\"meta\":{\"k\":{\"type\":\"int\",\"value\":1}}}", -EINVAL,
     "meta.k.type: expected \"string\""},
    {"{\"v\":1,\"meta\":{\"k\":{\"type\":\"unsigned_int\",\"value\":-1}}}", -ERANGE,
     "meta.k.value: unsigned_int value -1 must not be negative"},
    {"{\"v\":1,\"meta\":{\"k\":{\"type\":\"boolean\"}}}", -EINVAL, "meta entry has no \"value\""},
    {"{\"v\":1,\"meta\":{\"k\":{\"type\":\"boolean\",\"value\":true},\"k\":{}}}", -EINVAL,
     "meta.k: duplicate meta key"},
    {"{\"v\":1,\"meta\":{\"\":{}}}", -EINVAL, "meta key must not be empty"},
    {long_name_msg, -ERANGE, "host: name is 128 bytes long, at most 127"},
    {deep_msg, -ERANGE, "nested deeper than 32 levels"},
    {many_ds_msg, -ERANGE, "ds[64]: more than 64 data sources"},
    {many_meta_msg, -ERANGE, "more than 64 meta entries"},
    {long_number_msg, -ERANGE, "number has 451 characters"},
    /* collectd's format */
    {"[]", -EINVAL, "the array holds no value list"},
    {"[5]", -EINVAL, "[0]: expected a value list object, got a number"},
    {"[[]]", -EINVAL, "[0]: expected a value list object, got an array"},
    {CD_HEAD "\"values\":[1],\"dstypes\":[\"gauge\"]}]", -EINVAL, "[0]: missing field \"dsnames\""},
    {CD_HEAD "\"values\":[1,2],\"dstypes\":[\"gauge\"],\"dsnames\":[\"v\"]}]", -EINVAL,
     "differ in length (2, 1, 1)"},
    {CD_HEAD "\"values\":[],\"dstypes\":[],\"dsnames\":[]}]", -EINVAL, "\"values\" is empty"},
    {CD_HEAD "\"values\":[-1],\"dstypes\":[\"counter\"],\"dsnames\":[\"v\"]}]", -ERANGE,
     "[0].values[0]: counter value -1 must not be negative"},
    {CD_HEAD "\"values\":[\"1\"],\"dstypes\":[\"gauge\"],\"dsnames\":[\"v\"]}]", -EINVAL,
     "[0].values[0]: expected a number or null, got a string"},
    {CD_HEAD "\"values\":[1],\"dstypes\":[\"GAUGE\"],\"dsnames\":[\"v\"]}]", -EINVAL,
     "[0].dstypes[0]: expected \"gauge\""},
    {CD_HEAD "\"values\":[1],\"dstypes\":[\"gauge\"],\"dsnames\":[\"v\"],\"meta\":{\"a\":[]}}]",
     -EINVAL, "[0].meta.a: expected a scalar, got an array"},
    {CD_HEAD "\"values\":[1],\"dstypes\":[\"gauge\"],\"dsnames\":[\"v\"]},7]", -EINVAL,
     "[1]: expected a value list object"},
    {CD_HEAD "\"values\":[1],\"dstypes\":[\"gauge\"],\"dsnames\":[\"v\"]}][]", -EINVAL,
     "malformed JSON"},
};

static void test_malformed(void)
{
    build_big_inputs();
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        size_t len = strlen(c->msg);
        char *p = malloc(len ? len : 1);
        memcpy(p, c->msg, len);
        char err[512] = "";
        int calls = 0;
        int r = kts_format_decode(p, len, 0, NULL, count_cb, &calls, err, sizeof(err));
        free(p);
        bool good = r == c->err && strstr(err, c->needle) != NULL && calls == 0 &&
                    strstr(err, "byte") != NULL;
        ok(good, "7: malformed #%zu rejected: %s", i, c->needle);
        if (!good)
            diag("  input: %.200s\n  got %d '%s'\n  want %d '%s'", c->msg, r, err, c->err,
                 c->needle);
    }
}

/* ------------------------------------------------------------------ decoder behaviour */

static int stop_cb(struct kts_vl *vl, void *opaque)
{
    (void)vl;
    int *n = opaque;
    return ++*n == 2 ? -ECANCELED : 0;
}

static void test_decoder_misc(void)
{
    /* 6: all or nothing: two good value lists and one bad one, no callback at all. */
    const char *three = "["
                        "{\"values\":[1],\"dstypes\":[\"gauge\"],\"dsnames\":[\"v\"],\"time\":1,"
                        "\"host\":\"a\",\"plugin\":\"p\",\"type\":\"t\"},"
                        "{\"values\":[2],\"dstypes\":[\"gauge\"],\"dsnames\":[\"v\"],\"time\":2,"
                        "\"host\":\"b\",\"plugin\":\"p\",\"type\":\"t\"},"
                        "{\"values\":[-3],\"dstypes\":[\"counter\"],\"dsnames\":[\"v\"],\"time\":3,"
                        "\"host\":\"c\",\"plugin\":\"p\",\"type\":\"t\"}]";
    int calls = 0;
    char err[512];
    int r = kts_format_decode(three, strlen(three), 0, NULL, count_cb, &calls, err, sizeof(err));
    ok(r == -ERANGE && calls == 0,
       "6: a bad value list fails the whole message before any callback");

    /* the callback's return value stops decoding and is returned */
    const char *two_ok =
        "["
        "{\"values\":[1],\"dstypes\":[\"gauge\"],\"dsnames\":[\"v\"],\"time\":1,"
        "\"host\":\"a\",\"plugin\":\"p\",\"type\":\"t\",\"unknown\":{\"x\":[1,{}]}},"
        "{\"values\":[2],\"dstypes\":[\"gauge\"],\"dsnames\":[\"v\"],\"time\":2,"
        "\"host\":\"b\",\"plugin\":\"p\",\"type\":\"t\"},"
        "{\"values\":[3],\"dstypes\":[\"gauge\"],\"dsnames\":[\"v\"],\"time\":3,"
        "\"host\":\"c\",\"plugin\":\"p\",\"type\":\"t\"}]";
    calls = 0;
    r = kts_format_decode(two_ok, strlen(two_ok), 0, NULL, stop_cb, &calls, err, sizeof(err));
    ok(r == -ECANCELED && calls == 2, "6: the callback's error stops decoding and is returned");

    /* a reusable decoder: good, bad, good again; optional fields default */
    struct kts_decoder *d = kts_decoder_create(0);
    const char *good = TS_HEAD TS_DS ",\"future_field\":{\"a\":[1,2,{\"b\":null}]}}";
    enum kts_format fmt;
    int a = kts_decoder_decode(d, good, strlen(good), &fmt, count_cb, &calls, err, sizeof(err));
    int b = kts_decoder_decode(d, "{\"v\":2}", 7, &fmt, count_cb, &calls, err, sizeof(err));
    calls = 0;
    int c = kts_decoder_decode(d, good, strlen(good), &fmt, count_cb, &calls, err, sizeof(err));
    ok(a == 0 && b == -EPROTONOSUPPORT && c == 0 && calls == 1 && fmt == KTS_FORMAT_TS,
       "5: a decoder is reusable after an error; unknown fields are ignored");
    kts_decoder_destroy(d);

    /* RATES_AS_GAUGE: collectd StoreRates output */
    const char *rates = "[{\"values\":[12.5,null],\"dstypes\":[\"derive\",\"counter\"],"
                        "\"dsnames\":[\"rx\",\"tx\"],\"time\":1,\"host\":\"h\","
                        "\"plugin\":\"interface\",\"type\":\"if_octets\"}]";
    struct kts_vl *vls = NULL;
    size_t n = 0;
    r = kts_format_decode_array(rates, strlen(rates), 0, &fmt, &vls, &n, err, sizeof(err));
    ok(r == -EINVAL && strstr(err, "[0].values[0]: derive value 12.5 is not an integer"),
       "StoreRates output is rejected without KTS_DECODE_RATES_AS_GAUGE (%s)", err);
    r = kts_format_decode_array(rates, strlen(rates), KTS_DECODE_RATES_AS_GAUGE, &fmt, &vls, &n,
                                err, sizeof(err));
    ok(r == 0 && n == 1 && vls[0].ds[0].type == KTS_DS_GAUGE && vls[0].ds[0].value.gauge == 12.5 &&
           isnan(vls[0].ds[1].value.gauge) && vls[0].interval == 0 &&
           vls[0].plugin_instance[0] == '\0',
       "KTS_DECODE_RATES_AS_GAUGE turns every value into a gauge; missing fields default");
    kts_vl_array_free(vls, n);

    /* collectd's %.15g of DBL_MAX is just beyond the double range: it reads as DBL_MAX */
    const char *big = "[{\"values\":[1.79769313486232e+308,-1.79769313486232e308,"
                      "1.7976931348623159e308],\"dstypes\":[\"gauge\",\"gauge\",\"gauge\"],"
                      "\"dsnames\":[\"a\",\"b\",\"c\"],\"time\":1,\"host\":\"h\",\"plugin\":\"p\","
                      "\"type\":\"t\"}]";
    const char *bigger = "[{\"values\":[1.79769313486233e308],\"dstypes\":[\"gauge\"],"
                         "\"dsnames\":[\"a\"],\"time\":1,\"host\":\"h\",\"plugin\":\"p\","
                         "\"type\":\"t\"}]";
    r = kts_format_decode_array(big, strlen(big), 0, &fmt, &vls, &n, err, sizeof(err));
    int r2 = kts_format_decode(bigger, strlen(bigger), 0, NULL, NULL, NULL, NULL, 0);
    ok(r == 0 && n == 1 && vls[0].ds[0].value.gauge == DBL_MAX &&
           vls[0].ds[1].value.gauge == -DBL_MAX && vls[0].ds[2].value.gauge == DBL_MAX &&
           r2 == -ERANGE,
       "collectd's rounded DBL_MAX reads as +-DBL_MAX, anything larger is out of range");
    kts_vl_array_free(vls, n);

    /* collectd meta: untyped values get the natural type */
    const char *meta = "[{\"values\":[1],\"dstypes\":[\"gauge\"],\"dsnames\":[\"v\"],\"time\":1,"
                       "\"host\":\"h\",\"plugin\":\"p\",\"type\":\"t\",\"meta\":{\"s\":\"x\","
                       "\"u\":5,\"i\":-5,\"d\":0.500000,\"b\":false,\"n\":null}}]";
    r = kts_format_decode_array(meta, strlen(meta), 0, &fmt, &vls, &n, err, sizeof(err));
    ok(r == 0 && n == 1 && vls[0].meta_len == 6 && vls[0].meta[0].type == KTS_META_STRING &&
           vls[0].meta[1].type == KTS_META_UNSIGNED_INT && vls[0].meta[1].value.uint == 5 &&
           vls[0].meta[2].type == KTS_META_SIGNED_INT && vls[0].meta[2].value.sint == -5 &&
           vls[0].meta[3].type == KTS_META_DOUBLE && vls[0].meta[3].value.dbl == 0.5 &&
           vls[0].meta[4].type == KTS_META_BOOLEAN && !vls[0].meta[4].value.boolean &&
           vls[0].meta[5].type == KTS_META_DOUBLE && isnan(vls[0].meta[5].value.dbl),
       "collectd meta: string, unsigned, signed, double, boolean, null");
    kts_vl_array_free(vls, n);
}

/* ------------------------------------------------------------------ encoder behaviour */

static void test_encoder_misc(void)
{
    struct kts_buf b = {0};
    kts_buf_append_str(&b, "prefix|");
    int r = kts_format_encode(&b, &typical, KTS_FORMAT_TS);
    ok(r == 0 && strncmp(b.data, "prefix|{\"v\":1,", 14) == 0 && b.data[b.len] == '\0',
       "1: the encoder appends to what the buffer holds");
    size_t before = b.len;
    struct kts_vl none = typical;
    none.ds_len = 0;
    r = kts_format_encode(&b, &none, KTS_FORMAT_TS);
    ok(r == -EINVAL && b.len == before, "1: no data source is -EINVAL, buffer unchanged");
    struct kts_ds bad_ds = {.name = "x", .type = (enum kts_ds_type)9};
    none.ds_len = 1;
    none.ds = &bad_ds;
    r = kts_format_encode(&b, &none, KTS_FORMAT_COLLECTD);
    ok(r == -EINVAL && b.len == before, "1: unknown DS type is -EINVAL, buffer unchanged");
    r = kts_format_encode(&b, &typical, (enum kts_format)7);
    ok(r == -EINVAL && b.len == before, "1: unknown format is -EINVAL");

    /* 1: no allocation once the buffer is big enough: the pointer stays the same. */
    kts_buf_reset(&b);
    kts_format_encode(&b, &typical, KTS_FORMAT_TS);
    char *data = b.data;
    size_t cap = b.cap;
    for (int i = 0; i < 1000; i++) {
        kts_buf_reset(&b);
        kts_format_encode(&b, &typical, KTS_FORMAT_TS);
        kts_buf_reset(&b);
        kts_format_encode(&b, &typical, KTS_FORMAT_COLLECTD);
    }
    ok(b.data == data && b.cap == cap, "1: a reused buffer does not grow again");
    kts_buf_fini(&b);
    ok(b.data == NULL && b.len == 0 && b.cap == 0, "kts_buf_fini() leaves an empty buffer");

    /* kts_buf basics */
    struct kts_buf c;
    kts_buf_init(&c);
    for (int i = 0; i < 10000; i++)
        kts_buf_append(&c, "0123456789", 10);
    kts_buf_truncate(&c, 5);
    kts_buf_append_char(&c, '!');
    is_str(c.data, "01234!", "kts_buf: grows, truncates, stays NUL-terminated");
    kts_buf_fini(&c);

    /* kts_vl_copy is deep */
    struct kts_vl cp;
    r = kts_vl_copy(&cp, &typical);
    char why[256] = "";
    ok(r == 0 && cp.ds != typical.ds && cp.meta != typical.meta &&
           cp.meta[0].value.string != typical.meta[0].value.string &&
           vl_equal(&cp, &typical, why, sizeof(why)),
       "kts_vl_copy makes an equal deep copy %s", why);
    kts_vl_fini(&cp);
    ok(cp.ds == NULL && cp.meta == NULL && cp.ds_len == 0, "kts_vl_fini clears the value list");
}

/* ------------------------------------------------------------------ series keys */

static void test_keys(void)
{
    char key[512];
    size_t n = kts_series_message_key(key, sizeof(key), &typical, KTS_KEY_SERIES);
    is_str(key, "host.example.com/interface-eth0/if_octets", "key: series without type_instance");
    is_int(n, strlen(key), "key: returns the length");
    struct kts_vl vl = typical;
    strcpy(vl.type_instance, "x-y");
    vl.plugin_instance[0] = '\0';
    kts_series_message_key(key, sizeof(key), &vl, KTS_KEY_SERIES);
    is_str(key, "host.example.com/interface/if_octets-x-y",
           "key: series without plugin_instance, with type_instance");
    n = kts_series_message_key(key, sizeof(key), &typical, KTS_KEY_HOST);
    is_str(key, "host.example.com", "key: host mode");
    n = kts_series_message_key(key, sizeof(key), &typical, KTS_KEY_NONE);
    ok(n == 0 && key[0] == '\0', "key: none mode is empty");
    n = kts_series_message_key(key, 10, &typical, KTS_KEY_SERIES);
    ok(n == strlen("host.example.com/interface-eth0/if_octets") && strcmp(key, "host.exam") == 0,
       "key: truncates like snprintf and returns the full length");
    n = kts_series_message_key(NULL, 0, &typical, KTS_KEY_SERIES);
    ok(n == strlen("host.example.com/interface-eth0/if_octets"), "key: NULL/0 measures the length");
    /* names at their maximum length */
    memset(vl.host, 'h', KTS_NAME_MAX - 1);
    vl.host[KTS_NAME_MAX - 1] = '\0';
    memset(vl.plugin_instance, 'i', KTS_NAME_MAX - 1);
    vl.plugin_instance[KTS_NAME_MAX - 1] = '\0';
    n = kts_series_message_key(key, sizeof(key), &vl, KTS_KEY_SERIES);
    ok(n == strlen(key) && n == 127 + 1 + 9 + 1 + 127 + 1 + 9 + 1 + 3,
       "key: 127-byte names give a %zu-byte key", n);
}

int main(void)
{
    srcdir = getenv("KTS_TOP_SRCDIR");
    if (srcdir == NULL)
        srcdir = ".";
    list_data();
    /* doubles 10, times 5, strings 12, identity 3, truncation 4, malformed table, decoder 7,
     * encoder 9, keys 8 */
    plan(n_golden * GOLDEN_TESTS_PER_FILE + n_samples * SAMPLE_TESTS_PER_FILE + 10 + 5 + 12 + 3 +
         4 + (int)(sizeof(bad_cases) / sizeof(bad_cases[0])) + 7 + 9 + 8);
    diag("%d golden value lists, %d collectd samples", n_golden, n_samples);
    for (int i = 0; i < n_golden; i++)
        golden_one(golden[i]);
    for (int i = 0; i < n_samples; i++)
        sample_one(samples[i]);
    test_doubles();
    test_times();
    test_strings();
    test_identity();
    test_truncation();
    test_malformed();
    test_decoder_misc();
    test_encoder_misc();
    test_keys();
    for (int i = 0; i < n_golden; i++)
        free(golden[i]);
    for (int i = 0; i < n_samples; i++)
        free(samples[i]);
    return done_testing();
}
