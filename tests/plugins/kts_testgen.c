/* SPDX-License-Identifier: MIT */
/*
 * kts_testgen: a test-only collectd plugin that generates value lists (never installed).
 *
 *   <Plugin kts_testgen>
 *     Mode "golden" | "burst"      # required
 *     ExpectFile "/path"           # golden: write the set as expected JSON lines (see below)
 *     GoldenTimeBase 1700000000    # golden: whole seconds the fixed time offsets start from
 *     Count 1000000                # burst: value lists in total (0 = until shutdown, needs Rate)
 *     Series 1000                  # burst: distinct series, dispatched round-robin
 *     Rate 0                       # burst: value lists per second; 0 = as fast as possible
 *     Host "kts-burst"             # host of every value list (golden default "kts-golden")
 *     CountWritten false           # also count our own value lists in a write callback
 *     CallgrindWindow false        # burst, CountWritten: callgrind counts a steady window only
 *     WindowControl "ctl" "ack"    # burst, CountWritten: a profiler records that window only
 *     MetaString "key" "value"     # meta data put on every value list (repeatable);
 *     MetaSignedInt "key" -1       #   also MetaUnsignedInt, MetaDouble, MetaBoolean
 *   </Plugin>
 *
 * What it guarantees (tests rely on these):
 *  1. Golden mode dispatches the same fixed set on every run: all four DS types, multi-DS types
 *     (if_octets, load), UTF-8 and control characters in names, 127-byte names, NaN/±Inf and
 *     -0 gauges, extreme counter/derive/absolute values, meta data of every type, timestamps
 *     and intervals with sub-second fractions. Every value list is its own series, so
 *     collectd's cache never sees a value "too old". No name contains '/' (collectd would
 *     rewrite it to '_').
 *  2. The ExpectFile is complete and closed before the first dispatch. One JSON object per
 *     line, in dispatch order:
 *       {"host":…,"plugin":…,"plugin_instance":…,"type":…,"type_instance":…,
 *        "time":<s, shortest double>,"time_cdtime":<2^-30 s, exact>,"interval":…,
 *        "interval_cdtime":…,"dsnames":[…],"dstypes":["gauge"|"derive"|"counter"|"absolute"],
 *        "values":[…],"meta":{"key":{"type":"string"|"signed_int"|"unsigned_int"|"double"|
 *        "boolean","value":…},…}}
 *     Integers are exact decimal literals; finite doubles use the shortest form that parses
 *     back to the same bits; non-finite doubles are null; strings are UTF-8 with JSON escapes.
 *  3. Burst mode dispatches value list i (0-based) to series s = i % Series with sequence
 *     number k = i / Series as its value. Series s has plugin "kts_testgen", plugin_instance
 *     "s<s>", type gauge / derive / counter for s % 3 == 0 / 1 / 2, no type_instance.
 *     Timestamps are near the wall clock and strictly increasing over all value lists, hence
 *     strictly increasing per series.
 *  4. With Rate R, value list i is not dispatched before start + i/R seconds.
 *  5. The Meta* options add their key to every dispatched value list (golden and burst).
 *  6. With CountWritten, a write callback counts value lists with plugin "kts_testgen" and
 *     logs once when the burst's Count have been written (by every writer before it).
 *  7. The generator thread stops within ~0.1 s of shutdown, also in the middle of a burst.
 *  8. With CallgrindWindow (and CountWritten, Count > 0), under valgrind --tool=callgrind: the
 *     counters are zeroed just before value list Count/10 is dispatched (the first tenth warms
 *     up: cache entries, connections, buffers) and dumped once the burst has been written, so
 *     the first dump (callgrind.out.1 …) holds the instructions of the whole process for the
 *     other Count - Count/10 value lists; logged. Outside valgrind it does nothing.
 *  9. With WindowControl (and CountWritten, Count > 0): the same window, for a profiler with
 *     perf record's control protocol (--control fifo:ctl,ack, started with -D -1): just before
 *     value list Count/10 is dispatched the generator writes "enable\n" to the FIFO ctl, once
 *     the burst has been written "disable\n", and each time waits for a line from the FIFO
 *     ack. The profiler may still be starting: until ctl has a reader, it retries (at most 30 s
 *     in all, then a WARNING, and the burst goes on). With Rate, the time spent waiting there
 *     moves the schedule of the rest of the burst (4) later, so the window runs at the rate.
 *
 * Log lines (INFO, matched by tests and bench/write-bench):
 *   "kts_testgen: golden done: N value lists"
 *   "kts_testgen: burst done: N value lists in X s"
 *   "kts_testgen: burst written: N value lists in X s"      (CountWritten only)
 *   "kts_testgen: callgrind window: N value lists"          (CallgrindWindow only)
 *   "kts_testgen: window control: N value lists (X s waited for the enable)"
 *                                                            (WindowControl only, both acked)
 *   "kts_testgen: stopped after N value lists"               (shutdown before the end)
 *   "kts_testgen: N dispatch failures"                       (ERROR, if any)
 */
#include "collectd.h"

#include "plugin.h"
#include "utils/common/common.h"
#include "utils/metadata/meta_data.h"

#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define TG_NAME "kts_testgen"

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define TG_HAVE_CALLGRIND 1
#endif
#endif
#ifndef TG_HAVE_CALLGRIND
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(s) ((void)(s))
#endif

enum tg_mode { TG_MODE_NONE, TG_MODE_GOLDEN, TG_MODE_BURST };

struct tg_meta {
    char *key;
    int type; /* MD_TYPE_* */
    char *string;
    int64_t sint;
    uint64_t uint;
    double dbl;
    bool boolean;
};

/* The one generator (one <Plugin kts_testgen> block). */
static struct {
    enum tg_mode mode;
    char *expect_file;
    double golden_time_base;
    uint64_t count;
    uint64_t series;
    double rate;
    char *host;
    bool count_written;
    bool callgrind_window;
    char *window_ctl, *window_ack; /* (9) */
    bool window_acked;             /* the "enable" was acknowledged */
    double window_wait;            /* s the "enable" took */
    struct tg_meta *meta;
    size_t meta_num;

    bool configured;
    bool thread_running;
    pthread_t thread;
    atomic_bool stop;
    atomic_bool burst_dispatched;
    atomic_uint_fast64_t written;
    atomic_bool written_logged;
    cdtime_t burst_start;
} tg = {.count = 1000, .series = 10, .golden_time_base = 1700000000.0};

/* ------------------------------------------------------------------ the golden set */

struct tg_golden {
    const char *host; /* NULL: the Host option or "kts-golden" */
    const char *plugin_instance;
    const char *type;
    const char *type_instance;
    cdtime_t time_offset; /* 2^-30 s after GoldenTimeBase */
    cdtime_t interval;
    size_t values_num;
    value_t values[3];
    bool meta; /* also attach the fixed meta data of every type */
};

#define TG_S(s) ((cdtime_t)(s) << 30)
/* clang-format 14 and 19 lay a braced macro out differently: by hand */
/* clang-format off */
#define TG_G(v) {.gauge = (v)}
#define TG_C(v) {.counter = (v)}
#define TG_D(v) {.derive = (v)}
#define TG_A(v) {.absolute = (v)}
/* clang-format on */

/* 127 bytes: the longest name collectd can hold. */
#define TG_LONG_NAME                                                                               \
    "L123456789012345678901234567890123456789012345678901234567890123"                             \
    "456789012345678901234567890123456789012345678901234567890123456"

static const struct tg_golden tg_golden_set[] = {
    /* gauges: ordinary, signed zero, extremes, not exactly representable, non-finite */
    {NULL, "golden", "gauge", "zero", TG_S(0), TG_S(10), 1, {TG_G(0.0)}, false},
    {NULL, "golden", "gauge", "negzero", TG_S(1), TG_S(10), 1, {TG_G(-0.0)}, false},
    {NULL, "golden", "gauge", "pi", TG_S(2) + 1, TG_S(10), 1, {TG_G(3.141592653589793)}, false},
    {NULL, "golden", "gauge", "tenth", TG_S(3) + (TG_S(1) >> 1), TG_S(10), 1, {TG_G(0.1)}, false},
    {NULL, "golden", "gauge", "denorm", TG_S(4) + TG_S(1) - 1, TG_S(10), 1, {TG_G(5e-324)}, false},
    {NULL,
     "golden",
     "gauge",
     "max",
     TG_S(5) + 107374182,
     TG_S(10),
     1,
     {TG_G(1.7976931348623157e308)},
     false},
    {NULL, "golden", "gauge", "negative", TG_S(6) + 123456789, TG_S(10), 1, {TG_G(-273.15)}, false},
    {NULL, "golden", "gauge", "nan", TG_S(7), TG_S(10), 1, {TG_G(NAN)}, false},
    {NULL, "golden", "gauge", "inf", TG_S(8), TG_S(10), 1, {TG_G(INFINITY)}, false},
    {NULL, "golden", "gauge", "neginf", TG_S(9), TG_S(10), 1, {TG_G(-INFINITY)}, false},
    /* counters, derives, absolutes at their limits */
    {NULL, "golden", "counter", "zero", TG_S(10), TG_S(10), 1, {TG_C(0)}, false},
    {NULL, "golden", "counter", "int63max", TG_S(11), TG_S(10), 1, {TG_C(INT64_MAX)}, false},
    {NULL, "golden", "counter", "max", TG_S(12), TG_S(10), 1, {TG_C(UINT64_MAX)}, false},
    {NULL, "golden", "derive", "zero", TG_S(13), TG_S(10), 1, {TG_D(0)}, false},
    {NULL, "golden", "derive", "max", TG_S(14), TG_S(10), 1, {TG_D(INT64_MAX)}, false},
    {NULL, "golden", "derive", "min", TG_S(15), TG_S(10), 1, {TG_D(INT64_MIN)}, false},
    {NULL, "golden", "derive", "minus1", TG_S(16), TG_S(10), 1, {TG_D(-1)}, false},
    {NULL, "golden", "absolute", "zero", TG_S(17), TG_S(10), 1, {TG_A(0)}, false},
    {NULL, "golden", "absolute", "max", TG_S(18), TG_S(10), 1, {TG_A(UINT64_MAX)}, false},
    /* several data sources */
    {NULL,
     "eth0",
     "if_octets",
     "",
     TG_S(19) + 1,
     TG_S(10),
     2,
     {TG_D(123456789012), TG_D(0)},
     false},
    {NULL,
     "",
     "load",
     "",
     TG_S(20) + 536870913,
     TG_S(10),
     3,
     {TG_G(0.25), TG_G(0.5), TG_G(1.75)},
     false},
    /* names: empty instances, hyphens (ambiguous identifiers), UTF-8, control characters */
    {NULL, "", "gauge", "", TG_S(21), TG_S(10), 1, {TG_G(1.0)}, false},
    {NULL, "a-b", "gauge", "c-d", TG_S(22), TG_S(10), 1, {TG_G(2.0)}, false},
    {NULL,
     "z\xc3\xbcrich",
     "gauge",
     "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
     TG_S(23),
     TG_S(10),
     1,
     {TG_G(3.0)},
     false},
    {NULL, "emoji", "gauge", "\xf0\x9f\x93\x88", TG_S(24), TG_S(10), 1, {TG_G(4.0)}, false},
    {NULL, "ctl", "gauge", "tab\there", TG_S(25), TG_S(10), 1, {TG_G(5.0)}, false},
    {NULL, "ctl", "gauge", "nl\ncr\r", TG_S(26), TG_S(10), 1, {TG_G(6.0)}, false},
    {NULL, "ctl", "gauge", "\x01\x1f\x7f", TG_S(27), TG_S(10), 1, {TG_G(7.0)}, false},
    {NULL, "quote", "gauge", "q\"b\\s", TG_S(28), TG_S(10), 1, {TG_G(8.0)}, false},
    {NULL, TG_LONG_NAME, "gauge", TG_LONG_NAME, TG_S(29), TG_S(10), 1, {TG_G(9.0)}, false},
    {"h\xc3\xb4te.example", "golden", "gauge", "host", TG_S(30), TG_S(10), 1, {TG_G(10.0)}, false},
    {TG_LONG_NAME, "golden", "gauge", "longhost", TG_S(31), TG_S(10), 1, {TG_G(11.0)}, false},
    /* odd intervals */
    {NULL, "interval", "gauge", "1.5s", TG_S(32), TG_S(1) + (TG_S(1) >> 1), 1, {TG_G(12.0)}, false},
    {NULL, "interval", "gauge", "1tick", TG_S(33) + 3, 1, 1, {TG_G(13.0)}, false},
    {NULL, "interval", "gauge", "1day", TG_S(34), TG_S(86400), 1, {TG_G(14.0)}, false},
    /* meta data of every type */
    {NULL, "meta", "gauge", "all", TG_S(35) + 999, TG_S(10), 1, {TG_G(15.5)}, true},
};

#define TG_GOLDEN_NUM (sizeof(tg_golden_set) / sizeof(tg_golden_set[0]))

/* The fixed meta data of the golden "meta" value list. */
static const struct tg_meta tg_golden_meta[] = {
    {.key = "string", .type = MD_TYPE_STRING, .string = "h\xc3\xa9llo \"q\" \\ \n\x01"},
    {.key = "empty", .type = MD_TYPE_STRING, .string = ""},
    {.key = "sint_min", .type = MD_TYPE_SIGNED_INT, .sint = INT64_MIN},
    {.key = "sint_minus1", .type = MD_TYPE_SIGNED_INT, .sint = -1},
    {.key = "uint_max", .type = MD_TYPE_UNSIGNED_INT, .uint = UINT64_MAX},
    {.key = "double_tenth", .type = MD_TYPE_DOUBLE, .dbl = 0.1},
    {.key = "double_tiny", .type = MD_TYPE_DOUBLE, .dbl = -1.5e-300},
    {.key = "bool_true", .type = MD_TYPE_BOOLEAN, .boolean = true},
    {.key = "bool_false", .type = MD_TYPE_BOOLEAN, .boolean = false},
    {.key = "k\xc3\xa9y", .type = MD_TYPE_STRING, .string = "utf-8 key"},
};

#define TG_GOLDEN_META_NUM (sizeof(tg_golden_meta) / sizeof(tg_golden_meta[0]))

/* ------------------------------------------------------------------ JSON output */

static void tg_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p != 0; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* Whole numbers below 1e17 as "N.0", else the shortest "%.Ng" that parses back to the
 * same double; null when not finite. */
static void tg_json_double(FILE *f, double d)
{
    char buf[64];

    if (!isfinite(d)) {
        fputs("null", f);
        return;
    }
    if (d == floor(d) && fabs(d) < 1e17) { /* whole numbers without an exponent: "-0.0" */
        fprintf(f, "%.1f", d);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, d);
        if (strtod(buf, NULL) == d && signbit(strtod(buf, NULL)) == signbit(d))
            break;
    }
    fputs(buf, f);
}

static const char *tg_ds_type_name(int type)
{
    switch (type) {
    case DS_TYPE_COUNTER:
        return "counter";
    case DS_TYPE_GAUGE:
        return "gauge";
    case DS_TYPE_DERIVE:
        return "derive";
    case DS_TYPE_ABSOLUTE:
        return "absolute";
    }
    return "unknown";
}

static void tg_json_meta(FILE *f, const struct tg_meta *m, bool *first)
{
    static const char *names[] = {
        [MD_TYPE_STRING] = "string",
        [MD_TYPE_SIGNED_INT] = "signed_int",
        [MD_TYPE_UNSIGNED_INT] = "unsigned_int",
        [MD_TYPE_DOUBLE] = "double",
        [MD_TYPE_BOOLEAN] = "boolean",
    };

    if (!*first)
        fputc(',', f);
    *first = false;
    tg_json_string(f, m->key);
    fprintf(f, ":{\"type\":\"%s\",\"value\":", names[m->type]);
    switch (m->type) {
    case MD_TYPE_STRING:
        tg_json_string(f, m->string);
        break;
    case MD_TYPE_SIGNED_INT:
        fprintf(f, "%" PRId64, m->sint);
        break;
    case MD_TYPE_UNSIGNED_INT:
        fprintf(f, "%" PRIu64, m->uint);
        break;
    case MD_TYPE_DOUBLE:
        tg_json_double(f, m->dbl);
        break;
    case MD_TYPE_BOOLEAN:
        fputs(m->boolean ? "true" : "false", f);
        break;
    }
    fputc('}', f);
}

/* Writes one value list as an expected JSON line. `vl`, `ds` and `golden_meta` are borrowed. */
static void tg_json_vl(FILE *f, const value_list_t *vl, const data_set_t *ds, bool golden_meta)
{
    bool first = true;

    fputs("{\"host\":", f);
    tg_json_string(f, vl->host);
    fputs(",\"plugin\":", f);
    tg_json_string(f, vl->plugin);
    fputs(",\"plugin_instance\":", f);
    tg_json_string(f, vl->plugin_instance);
    fputs(",\"type\":", f);
    tg_json_string(f, vl->type);
    fputs(",\"type_instance\":", f);
    tg_json_string(f, vl->type_instance);
    fputs(",\"time\":", f);
    tg_json_double(f, CDTIME_T_TO_DOUBLE(vl->time));
    fprintf(f, ",\"time_cdtime\":%" PRIu64 ",\"interval\":", (uint64_t)vl->time);
    tg_json_double(f, CDTIME_T_TO_DOUBLE(vl->interval));
    fprintf(f, ",\"interval_cdtime\":%" PRIu64 ",\"dsnames\":[", (uint64_t)vl->interval);
    for (size_t i = 0; i < ds->ds_num; i++) {
        fputs(i > 0 ? "," : "", f);
        tg_json_string(f, ds->ds[i].name);
    }
    fputs("],\"dstypes\":[", f);
    for (size_t i = 0; i < ds->ds_num; i++)
        fprintf(f, "%s\"%s\"", i > 0 ? "," : "", tg_ds_type_name(ds->ds[i].type));
    fputs("],\"values\":[", f);
    for (size_t i = 0; i < ds->ds_num; i++) {
        fputs(i > 0 ? "," : "", f);
        switch (ds->ds[i].type) {
        case DS_TYPE_COUNTER:
            fprintf(f, "%llu", vl->values[i].counter);
            break;
        case DS_TYPE_GAUGE:
            tg_json_double(f, vl->values[i].gauge);
            break;
        case DS_TYPE_DERIVE:
            fprintf(f, "%" PRId64, vl->values[i].derive);
            break;
        case DS_TYPE_ABSOLUTE:
            fprintf(f, "%" PRIu64, vl->values[i].absolute);
            break;
        }
    }
    fputs("],\"meta\":{", f);
    if (golden_meta)
        for (size_t i = 0; i < TG_GOLDEN_META_NUM; i++)
            tg_json_meta(f, &tg_golden_meta[i], &first);
    for (size_t i = 0; i < tg.meta_num; i++)
        tg_json_meta(f, &tg.meta[i], &first);
    fputs("}}\n", f);
}

/* ------------------------------------------------------------------ dispatch */

static int tg_meta_add(meta_data_t *md, const struct tg_meta *m)
{
    switch (m->type) {
    case MD_TYPE_STRING:
        return meta_data_add_string(md, m->key, m->string);
    case MD_TYPE_SIGNED_INT:
        return meta_data_add_signed_int(md, m->key, m->sint);
    case MD_TYPE_UNSIGNED_INT:
        return meta_data_add_unsigned_int(md, m->key, m->uint);
    case MD_TYPE_DOUBLE:
        return meta_data_add_double(md, m->key, m->dbl);
    case MD_TYPE_BOOLEAN:
        return meta_data_add_boolean(md, m->key, m->boolean);
    }
    return -EINVAL;
}

/* The Meta* options (and the golden meta when `golden_meta`) as new meta data, or NULL when
 * there is none. The caller owns the result (meta_data_destroy). */
static meta_data_t *tg_meta_create(bool golden_meta)
{
    meta_data_t *md;

    if (!golden_meta && tg.meta_num == 0)
        return NULL;
    md = meta_data_create();
    if (md == NULL)
        return NULL;
    for (size_t i = 0; golden_meta && i < TG_GOLDEN_META_NUM; i++)
        tg_meta_add(md, &tg_golden_meta[i]);
    for (size_t i = 0; i < tg.meta_num; i++)
        tg_meta_add(md, &tg.meta[i]);
    return md;
}

static const char *tg_host(const char *dflt)
{
    return tg.host != NULL ? tg.host : dflt;
}

/* Fills `vl` (names, time, values) from golden entry `g`; `values` is caller storage. */
static void tg_golden_fill(value_list_t *vl, const struct tg_golden *g, value_t *values)
{
    cdtime_t base = DOUBLE_TO_CDTIME_T(tg.golden_time_base);

    memcpy(values, g->values, sizeof(g->values));
    vl->values = values;
    vl->values_len = g->values_num;
    vl->time = base + g->time_offset;
    vl->interval = g->interval;
    sstrncpy(vl->host, g->host != NULL ? g->host : tg_host("kts-golden"), sizeof(vl->host));
    sstrncpy(vl->plugin, TG_NAME, sizeof(vl->plugin));
    sstrncpy(vl->plugin_instance, g->plugin_instance, sizeof(vl->plugin_instance));
    sstrncpy(vl->type, g->type, sizeof(vl->type));
    sstrncpy(vl->type_instance, g->type_instance, sizeof(vl->type_instance));
}

static int tg_write_expect_file(void)
{
    FILE *f = fopen(tg.expect_file, "w");

    if (f == NULL) {
        ERROR(TG_NAME ": cannot open ExpectFile \"%s\": %s", tg.expect_file, STRERRNO);
        return -errno;
    }
    for (size_t i = 0; i < TG_GOLDEN_NUM; i++) {
        value_list_t vl = VALUE_LIST_INIT;
        value_t values[3];
        const data_set_t *ds = plugin_get_ds(tg_golden_set[i].type);

        if (ds == NULL || ds->ds_num != tg_golden_set[i].values_num) {
            ERROR(TG_NAME ": type \"%s\" is missing from types.db or has another number of data"
                          " sources",
                  tg_golden_set[i].type);
            fclose(f);
            return -EINVAL;
        }
        tg_golden_fill(&vl, &tg_golden_set[i], values);
        tg_json_vl(f, &vl, ds, tg_golden_set[i].meta);
    }
    if (fclose(f) != 0) {
        ERROR(TG_NAME ": cannot write ExpectFile \"%s\": %s", tg.expect_file, STRERRNO);
        return -EIO;
    }
    return 0;
}

static uint64_t tg_run_golden(uint64_t *failures)
{
    uint64_t n = 0;

    if (tg.expect_file != NULL && tg_write_expect_file() != 0)
        return 0;
    for (size_t i = 0; i < TG_GOLDEN_NUM && !atomic_load(&tg.stop); i++) {
        value_list_t vl = VALUE_LIST_INIT;
        value_t values[3];

        tg_golden_fill(&vl, &tg_golden_set[i], values);
        vl.meta = tg_meta_create(tg_golden_set[i].meta);
        if (plugin_dispatch_values(&vl) != 0)
            (*failures)++;
        meta_data_destroy(vl.meta);
        n++;
    }
    INFO(TG_NAME ": golden done: %" PRIu64 " value lists", n);
    return n;
}

/* A CLOCK_MONOTONIC time as nanoseconds, and back: the burst's schedule (4, 9) is kept in
 * timespecs for clock_nanosleep() and computed in nanoseconds. */
static int64_t tg_ns(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

static struct timespec tg_ts(int64_t ns)
{
    struct timespec t = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};

    return t;
}

/* Sleeps until CLOCK_MONOTONIC reaches `until`, in steps of at most 0.1 s so that shutdown
 * is noticed. Returns false when asked to stop. */
static bool tg_sleep_until(const struct timespec *until)
{
    for (;;) {
        struct timespec now, step;
        int64_t left;

        if (atomic_load(&tg.stop))
            return false;
        clock_gettime(CLOCK_MONOTONIC, &now);
        left = tg_ns(until) - tg_ns(&now);
        if (left <= 0)
            return true;
        step = tg_ts(tg_ns(&now) + (left < 100000000 ? left : 100000000));
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &step, NULL);
    }
}

/* (9) Sends CMD ("enable" or "disable") over the control FIFO and waits for the ack. The ack
 * FIFO is opened before the command is sent (perf holds both ends open read-write; ours is
 * non-blocking), the control FIFO is retried until it has a reader (perf has started), then a
 * line is read; 30 s at most in all. Returns true if acked. */
static bool tg_window_control(const char *cmd)
{
    char line[64], buf[16];
    size_t got = 0;
    bool ok = false;
    int ack = open(tg.window_ack, O_RDONLY | O_NONBLOCK | O_CLOEXEC), ctl = -1;

    if (ack < 0)
        goto out;
    for (int tries = 0; tries < 3000 && !atomic_load(&tg.stop); tries++) {
        struct timespec ts = {0, 10 * 1000 * 1000};

        ctl = open(tg.window_ctl, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (ctl >= 0 || errno != ENXIO) /* ENXIO: no reader yet */
            break;
        nanosleep(&ts, NULL);
    }
    if (ctl < 0)
        goto out;
    snprintf(line, sizeof(line), "%s\n", cmd);
    if (write(ctl, line, strlen(line)) != (ssize_t)strlen(line))
        goto out;
    while (got < sizeof(buf)) {
        struct pollfd p = {.fd = ack, .events = POLLIN};
        ssize_t n;

        if (poll(&p, 1, 30000) <= 0)
            goto out;
        n = read(ack, buf + got, 1);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            goto out;
        if (buf[got++] == '\n') {
            ok = true;
            break;
        }
    }
out:
    if (!ok)
        WARNING(TG_NAME ": window control \"%s\" via %s / %s not acknowledged", cmd, tg.window_ctl,
                tg.window_ack);
    if (ctl >= 0)
        close(ctl);
    if (ack >= 0)
        close(ack);
    return ok;
}

/* Logs "burst written" once, when `written` has reached Count after the burst was dispatched.
 * Called from the write callback and, for a write that came first, from the generator. */
static void tg_log_written(uint64_t written)
{
    if (!tg.count_written || tg.mode != TG_MODE_BURST || tg.count == 0 || written < tg.count ||
        !atomic_load(&tg.burst_dispatched) || atomic_exchange(&tg.written_logged, true))
        return;
    if (tg.callgrind_window) {
        CALLGRIND_DUMP_STATS_AT("kts_testgen burst written");
        INFO(TG_NAME ": callgrind window: %" PRIu64 " value lists", tg.count - tg.count / 10);
    }
    if (tg.window_ctl != NULL && tg_window_control("disable") && tg.window_acked)
        INFO(TG_NAME ": window control: %" PRIu64 " value lists (%.3f s waited for the enable)",
             tg.count - tg.count / 10, tg.window_wait);
    INFO(TG_NAME ": burst written: %" PRIu64 " value lists in %.3f s", written,
         CDTIME_T_TO_DOUBLE(cdtime() - tg.burst_start));
}

static uint64_t tg_run_burst(uint64_t *failures)
{
    static const char *types[] = {"gauge", "derive", "counter"};
    struct timespec start;
    cdtime_t last = 0;
    cdtime_t interval = plugin_get_interval();
    meta_data_t *md = tg_meta_create(false);
    uint64_t i;

    clock_gettime(CLOCK_MONOTONIC, &start);
    tg.burst_start = cdtime();
    for (i = 0; tg.count == 0 || i < tg.count; i++) {
        value_list_t vl = VALUE_LIST_INIT;
        value_t value;
        uint64_t s = i % tg.series, k = i / tg.series;
        cdtime_t now;

        if (tg.rate > 0) {
            struct timespec until = tg_ts(tg_ns(&start) + (int64_t)((double)i / tg.rate * 1e9));

            if (!tg_sleep_until(&until))
                break;
        } else if (atomic_load(&tg.stop)) {
            break;
        }
        if (tg.callgrind_window && i == tg.count / 10)
            CALLGRIND_ZERO_STATS; /* (8) */
        if (tg.window_ctl != NULL && tg.count_written && i == tg.count / 10) {
            struct timespec a, b;
            int64_t waited;

            clock_gettime(CLOCK_MONOTONIC, &a);
            tg.window_acked = tg_window_control("enable"); /* (9) */
            clock_gettime(CLOCK_MONOTONIC, &b);
            waited = tg_ns(&b) - tg_ns(&a);
            tg.window_wait = (double)waited / 1e9;
            start = tg_ts(tg_ns(&start) + waited);
        }

        switch (s % 3) {
        case 0:
            value.gauge = (gauge_t)k;
            break;
        case 1:
            value.derive = (derive_t)k;
            break;
        default:
            value.counter = (counter_t)k;
            break;
        }
        now = cdtime();
        last = now > last ? now : last + 1;
        vl.values = &value;
        vl.values_len = 1;
        vl.time = last;
        vl.interval = interval;
        vl.meta = md;
        sstrncpy(vl.host, tg_host("kts-burst"), sizeof(vl.host));
        sstrncpy(vl.plugin, TG_NAME, sizeof(vl.plugin));
        snprintf(vl.plugin_instance, sizeof(vl.plugin_instance), "s%" PRIu64, s);
        sstrncpy(vl.type, types[s % 3], sizeof(vl.type));
        if (plugin_dispatch_values(&vl) != 0)
            (*failures)++;
    }
    meta_data_destroy(md);
    if (tg.count != 0 && i == tg.count) {
        INFO(TG_NAME ": burst done: %" PRIu64 " value lists in %.3f s", i,
             CDTIME_T_TO_DOUBLE(cdtime() - tg.burst_start));
        atomic_store(&tg.burst_dispatched, true);
        /* The write threads may have written the last one already. */
        tg_log_written(atomic_load(&tg.written));
    }
    return i;
}

static void *tg_thread(void *arg)
{
    uint64_t failures = 0, n;
    uint64_t want = tg.mode == TG_MODE_GOLDEN ? TG_GOLDEN_NUM : tg.count;

    n = tg.mode == TG_MODE_GOLDEN ? tg_run_golden(&failures) : tg_run_burst(&failures);
    if (failures > 0)
        ERROR(TG_NAME ": %" PRIu64 " dispatch failures", failures);
    if (want == 0 || n < want)
        INFO(TG_NAME ": stopped after %" PRIu64 " value lists", n);
    /* Live until shutdown: plugin_thread_create() names the thread after creating it, and
     * collectd logs "[error] set_thread_name(...): No such file or directory" when the thread
     * has already exited by then (seen with the 36-value golden set under load). */
    while (!atomic_load(&tg.stop)) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ------------------------------------------------------------------ callbacks */

static int tg_write(const data_set_t *ds, const value_list_t *vl, user_data_t *ud)
{
    if (strcmp(vl->plugin, TG_NAME) != 0)
        return 0;
    tg_log_written(atomic_fetch_add(&tg.written, 1) + 1);
    return 0;
}

static int tg_init(void)
{
    if (!tg.configured) {
        ERROR(TG_NAME ": no <Plugin " TG_NAME "> block with a Mode");
        return -1;
    }
    if (plugin_thread_create(&tg.thread, tg_thread, NULL, TG_NAME) != 0) {
        ERROR(TG_NAME ": cannot create the generator thread");
        return -1;
    }
    tg.thread_running = true;
    return 0;
}

static int tg_shutdown(void)
{
    atomic_store(&tg.stop, true);
    if (tg.thread_running) {
        pthread_join(tg.thread, NULL);
        tg.thread_running = false;
    }
    for (size_t i = 0; i < tg.meta_num; i++) {
        free(tg.meta[i].key);
        free(tg.meta[i].string);
    }
    free(tg.meta);
    free(tg.expect_file);
    free(tg.host);
    free(tg.window_ctl);
    free(tg.window_ack);
    return 0;
}

/* Parses one Meta* option into tg.meta. Returns 0 or -1 (logged). */
static int tg_config_meta(const oconfig_item_t *ci, int type)
{
    struct tg_meta m = {.type = type};
    const oconfig_value_t *v = &ci->values[1];
    struct tg_meta *grown;
    int want = type == MD_TYPE_STRING    ? OCONFIG_TYPE_STRING
               : type == MD_TYPE_BOOLEAN ? OCONFIG_TYPE_BOOLEAN
                                         : OCONFIG_TYPE_NUMBER;

    if (ci->values_num != 2 || ci->values[0].type != OCONFIG_TYPE_STRING || v->type != want) {
        ERROR(TG_NAME ": %s needs a key (string) and a %s value", ci->key,
              want == OCONFIG_TYPE_STRING    ? "string"
              : want == OCONFIG_TYPE_BOOLEAN ? "boolean"
                                             : "number");
        return -1;
    }
    switch (type) {
    case MD_TYPE_STRING:
        m.string = strdup(v->value.string);
        break;
    case MD_TYPE_SIGNED_INT:
        m.sint = (int64_t)v->value.number;
        break;
    case MD_TYPE_UNSIGNED_INT:
        if (v->value.number < 0) {
            ERROR(TG_NAME ": %s: value %g is negative", ci->key, v->value.number);
            return -1;
        }
        m.uint = (uint64_t)v->value.number;
        break;
    case MD_TYPE_DOUBLE:
        m.dbl = v->value.number;
        break;
    case MD_TYPE_BOOLEAN:
        m.boolean = v->value.boolean;
        break;
    }
    m.key = strdup(ci->values[0].value.string);
    grown = realloc(tg.meta, (tg.meta_num + 1) * sizeof(*grown));
    if (m.key == NULL || (type == MD_TYPE_STRING && m.string == NULL) || grown == NULL) {
        free(m.key);
        free(m.string);
        if (grown != NULL)
            tg.meta = grown;
        ERROR(TG_NAME ": out of memory");
        return -1;
    }
    tg.meta = grown;
    tg.meta[tg.meta_num++] = m;
    return 0;
}

/* Reads a whole number in [min, max] from `ci`. Returns 0 or -1 (logged). */
static int tg_config_uint(const oconfig_item_t *ci, double min, double max, uint64_t *ret)
{
    double d;

    if (cf_util_get_double(ci, &d) != 0)
        return -1;
    if (!(d >= min && d <= max) || d != floor(d)) {
        ERROR(TG_NAME ": %s %g: must be a whole number in [%.0f, %.0f]", ci->key, d, min, max);
        return -1;
    }
    *ret = (uint64_t)d;
    return 0;
}

static int tg_config(oconfig_item_t *ci)
{
    int errors = 0;
    char *mode = NULL;

    if (tg.configured) {
        ERROR(TG_NAME ": only one <Plugin " TG_NAME "> block is supported");
        return -1;
    }
    for (int i = 0; i < ci->children_num; i++) {
        oconfig_item_t *c = &ci->children[i];
        int st = 0;

        if (strcasecmp(c->key, "Mode") == 0) {
            free(mode);
            mode = NULL;
            st = cf_util_get_string(c, &mode);
        } else if (strcasecmp(c->key, "ExpectFile") == 0)
            st = cf_util_get_string(c, &tg.expect_file);
        else if (strcasecmp(c->key, "GoldenTimeBase") == 0) {
            uint64_t base;
            st = tg_config_uint(c, 1, 4e9, &base);
            tg.golden_time_base = (double)base;
        } else if (strcasecmp(c->key, "Count") == 0)
            st = tg_config_uint(c, 0, 1e15, &tg.count);
        else if (strcasecmp(c->key, "Series") == 0)
            st = tg_config_uint(c, 1, 1e9, &tg.series);
        else if (strcasecmp(c->key, "Rate") == 0) {
            st = cf_util_get_double(c, &tg.rate);
            if (st == 0 && !(tg.rate >= 0 && tg.rate <= 1e9)) {
                ERROR(TG_NAME ": Rate %g: must be in [0, 1e9]", tg.rate);
                st = -1;
            }
        } else if (strcasecmp(c->key, "Host") == 0)
            st = cf_util_get_string(c, &tg.host);
        else if (strcasecmp(c->key, "CallgrindWindow") == 0)
            st = cf_util_get_boolean(c, &tg.callgrind_window);
        else if (strcasecmp(c->key, "WindowControl") == 0) {
            if (c->values_num != 2 || c->values[0].type != OCONFIG_TYPE_STRING ||
                c->values[1].type != OCONFIG_TYPE_STRING) {
                ERROR(TG_NAME ": WindowControl needs two strings: the ctl and the ack FIFO");
                st = -1;
            } else {
                free(tg.window_ctl);
                free(tg.window_ack);
                tg.window_ctl = strdup(c->values[0].value.string);
                tg.window_ack = strdup(c->values[1].value.string);
                st = tg.window_ctl != NULL && tg.window_ack != NULL ? 0 : -1;
            }
        } else if (strcasecmp(c->key, "CountWritten") == 0)
            st = cf_util_get_boolean(c, &tg.count_written);
        else if (strcasecmp(c->key, "MetaString") == 0)
            st = tg_config_meta(c, MD_TYPE_STRING);
        else if (strcasecmp(c->key, "MetaSignedInt") == 0)
            st = tg_config_meta(c, MD_TYPE_SIGNED_INT);
        else if (strcasecmp(c->key, "MetaUnsignedInt") == 0)
            st = tg_config_meta(c, MD_TYPE_UNSIGNED_INT);
        else if (strcasecmp(c->key, "MetaDouble") == 0)
            st = tg_config_meta(c, MD_TYPE_DOUBLE);
        else if (strcasecmp(c->key, "MetaBoolean") == 0)
            st = tg_config_meta(c, MD_TYPE_BOOLEAN);
        else {
            ERROR(TG_NAME ": unknown option \"%s\"", c->key);
            st = -1;
        }
        if (st != 0)
            errors++;
    }

    if (mode == NULL)
        ERROR(TG_NAME ": Mode is required (\"golden\" or \"burst\")"), errors++;
    else if (strcasecmp(mode, "golden") == 0)
        tg.mode = TG_MODE_GOLDEN;
    else if (strcasecmp(mode, "burst") == 0)
        tg.mode = TG_MODE_BURST;
    else
        ERROR(TG_NAME ": Mode \"%s\": must be \"golden\" or \"burst\"", mode), errors++;
    free(mode);
    if (tg.mode == TG_MODE_BURST && tg.count == 0 && tg.rate == 0)
        ERROR(TG_NAME ": Count 0 (until shutdown) needs a Rate"), errors++;
    if (errors > 0)
        return -1;
    if (tg.count_written)
        plugin_register_write(TG_NAME, tg_write, NULL);
    tg.configured = true;
    return 0;
}

__attribute__((visibility("default"))) void module_register(void)
{
    plugin_register_complex_config(TG_NAME, tg_config);
    plugin_register_init(TG_NAME, tg_init);
    plugin_register_shutdown(TG_NAME, tg_shutdown);
}
