/* SPDX-License-Identifier: MIT */
/* kts_pipeline_state: tests named after the guarantees in src/pipeline/kts_pipeline_state.h. */
#include <dirent.h>
#include <errno.h>
#include <unistd.h>

#include "filter-harness.h"
#include "kts_log.h"
#include "kts_pipeline_state.h"
#include "kts_state_file.h"
#include "tap.h"

static unsigned seed = 4242;
static double urand(void)
{
    return rand_r(&seed) / ((double)RAND_MAX + 1);
}

static int log_lines;
static void sink(int level, const char *msg, void *opaque)
{
    (void)level;
    (void)opaque;
    log_lines++;
    printf("# log: %s\n", msg);
}

/* ------------------------------------------------------------------ output capture */

struct capture {
    char *buf;
    size_t len, cap;
};

static int cap_emit(const struct kts_vl *vl, const uint16_t *flags, void *opaque)
{
    struct capture *c = opaque;
    char line[1024];
    if (c == NULL)
        return 0;
    int n = snprintf(line, sizeof(line), "%s/%s/%s %llu %llu", vl->host, vl->plugin,
                     vl->plugin_instance, (unsigned long long)vl->time,
                     (unsigned long long)vl->interval);
    for (size_t d = 0; d < vl->ds_len; d++)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " %d:%llx:%u", vl->ds[d].type,
                      (unsigned long long)vl->ds[d].value.counter, flags[d]);
    line[n++] = '\n';
    if (c->len + (size_t)n > c->cap) {
        c->cap = (c->cap + (size_t)n) * 2;
        c->buf = realloc(c->buf, c->cap);
    }
    memcpy(c->buf + c->len, line, (size_t)n);
    c->len += (size_t)n;
    return 0;
}

/* ------------------------------------------------------------------ records in memory */

struct rec {
    char *key, *rec;
    size_t klen, rlen;
    int32_t partition;
};
struct recs {
    struct rec *r;
    size_t n, cap;
};

static int rec_store(const void *key, size_t klen, const void *rec, size_t rlen, int32_t partition,
                     void *opaque)
{
    struct recs *rs = opaque;
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? 2 * rs->cap : 16;
        rs->r = realloc(rs->r, rs->cap * sizeof(*rs->r));
    }
    struct rec *r = &rs->r[rs->n++];
    r->key = malloc(klen);
    memcpy(r->key, key, klen);
    r->klen = klen;
    r->rec = rec != NULL ? malloc(rlen) : NULL;
    if (rec != NULL)
        memcpy(r->rec, rec, rlen);
    r->rlen = rlen;
    r->partition = partition;
    return 0;
}

static void recs_free(struct recs *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->r[i].key);
        free(rs->r[i].rec);
    }
    free(rs->r);
    memset(rs, 0, sizeof(*rs));
}

/* ------------------------------------------------------------------ a random stream */

enum { NV = 2500, NSERIES = 8 };
static struct kts_vl vls[NV];
static struct kts_ds vds[NV][2];

/* 8 series of 2 data sources (a counter and a gauge): regular steps, late points, duplicates,
 * gaps, spikes and counter resets. */
static void gen_stream(void)
{
    double t[NSERIES] = {0};
    uint64_t ctr[NSERIES] = {0};
    for (size_t i = 0; i < NV; i++) {
        int s = (int)(urand() * NSERIES);
        double r = urand();
        t[s] = t[s] == 0  ? 1000 + s
               : r < 0.04 ? t[s] - 30
               : r < 0.08 ? t[s]
                          : t[s] + 10 * (1 + (r > 0.97) * 4);
        ctr[s] += r < 0.02 ? 0 : (uint64_t)(urand() * 1000);
        if (r > 0.995)
            ctr[s] = 5;
        struct kts_vl *vl = &vls[i];
        memset(vl, 0, sizeof(*vl));
        snprintf(vl->host, sizeof(vl->host), "h%d", s);
        snprintf(vl->plugin, sizeof(vl->plugin), "if");
        snprintf(vl->type, sizeof(vl->type), "if_octets");
        vl->time = KTS_TIME_FROM_DOUBLE(t[s]);
        vl->interval = KTS_TIME_FROM_S(10);
        vds[i][0].type = KTS_DS_COUNTER;
        vds[i][0].value.counter = ctr[s];
        vds[i][1].type = KTS_DS_GAUGE;
        double v = 100 + 20 * sin(t[s] / 100) + urand() * 3;
        if (urand() < 0.03)
            v += 80;
        vds[i][1].value.gauge = s % 3 == 0 ? floor(v) : v;
        vl->ds = vds[i];
        vl->ds_len = 2;
    }
}

/* ------------------------------------------------------------------ pipelines */

#define PIPE(body) "<Pipeline \"p\">\n  ExpireAfter 100000\n" body "</Pipeline>\n"
#define F(name, opts) "  <Filter \"" name "\">\n" opts "  </Filter>\n"

static const char *const configs[] = {
    PIPE(F("dedup", "")),
    PIPE(F("dedup", "SuppressUnchanged true\nHeartbeat 100\n")),
    PIPE(F("difference", "Method \"rate\"\n")),
    PIPE(F("difference", "Method \"difference\"\nLag 100\nLagBins 5\n")),
    PIPE(F("fill", "MaxGap 5\n")),
    PIPE(F("fill", "Method \"previous\"\nMaxGap 5\n")),
    PIPE(F("deseasonalize", "Period 600\nBins 20\n")),
    PIPE(F("deseasonalize", "Period 600\nBins 20\n") F("reseasonalize", "")),
    PIPE(F("outlier", "Window 300\n")),
    PIPE(F("outlier", "Window 600\nMaxPoints 21\nMinPoints 10\nDelay 2\n")),
    PIPE(F("outlier", "Method \"robust\"\nTau 100\nAction \"mark\"\n")),
    PIPE(F("outlier", "Method \"ewz\"\nTau 100\nAction \"drop\"\n")),
    PIPE(F("smooth", "Method \"sma\"\nWindow 60\n")),
    PIPE(F("smooth", "Method \"ema\"\nTau 30\n")),
    PIPE(F("smooth", "Method \"holt\"\nTau 60\n")),
    /* spikes.conf with a period that the stream covers several times */
    PIPE(F("dedup", "") F("deseasonalize", "Period 600\nBins 20\n")
             F("outlier", "Window 600\nMaxPoints 21\nMinPoints 10\nThreshold 5\nDiffScale 1.2\n"
                          "MaxRun 2\nDelay 2\nAction \"replace\"\n") F("reseasonalize", "")),
    /* every filter */
    PIPE(F("dedup", "SuppressUnchanged true\nHeartbeat 100\n") F("difference", "Method \"rate\"\n")
             F("fill", "MaxGap 3\n") F("deseasonalize", "Period 600\nBins 20\n")
                 F("outlier", "Window 300\nDelay 1\n") F("smooth", "Method \"sma\"\nWindow 60\n")
                     F("smooth", "Method \"holt\"\nTau 60\n")),
    "<Pipeline \"p\">\n  ExpireAfter 200\n" F("dedup", "SuppressUnchanged true\nHeartbeat 100\n")
        F("smooth", "Method \"sma\"\nWindow 60\n") F("fill", "MaxGap 3\n") "</Pipeline>\n",
    PIPE(F("dedup", "Beyond \"pass\"\n") F("difference", "Method \"derivative\"\n")
             F("deseasonalize", "Period 300\nBins 10\nOutput \"residual\"\n")
                 F("outlier", "Method \"robust\"\nTau 100\nAction \"mark\"\n")
                     F("outlier", "Method \"ewz\"\nTau 100\nAction \"drop\"\n")
                         F("reseasonalize", "") F("fill", "Method \"previous\"\nMaxGap 2\n")
                             F("difference", "Method \"difference\"\nLag 100\nLagBins 5\n")
                                 F("smooth", "Method \"ema\"\nTau 30\n")),
};
#define NCONFIGS (sizeof(configs) / sizeof(configs[0]))

static void run(struct kts_pipeline *p, size_t from, size_t to, struct capture *c)
{
    for (size_t i = from; i < to; i++) {
        kts_pipeline_set_position(p, 0, (int64_t)i);
        kts_pipeline_process(p, &vls[i], 1, cap_emit, c);
    }
}

/* Import every record into p; how many were refused. */
static size_t import_all(struct kts_pipeline *p, const struct recs *rs)
{
    size_t bad = 0;
    for (size_t i = 0; i < rs->n; i++) {
        enum kts_state_refusal why;
        if (kts_pipeline_state_import(p, rs->r[i].key, rs->r[i].klen, rs->r[i].rec, rs->r[i].rlen,
                                      &why) < 0) {
            diag("record %zu refused: %s", i, kts_state_refusal_name(why));
            bad++;
        }
    }
    return bad;
}

/* Guarantee 1 for one configuration at one cut: bit-identical output. *differs: a fresh
 * pipeline (no import) continuing at the cut would not give the same output (so the check at
 * this cut is not vacuous). */
static bool restore_property(const char *text, size_t cut, bool *differs)
{
    struct capture a = {0}, b = {0};
    struct kts_pipeline *p = fh_pipeline_new(text);
    run(p, 0, NV, &a);
    kts_pipeline_flush(p, cap_emit, &a);
    kts_pipeline_destroy(p);

    struct recs rs = {0};
    p = fh_pipeline_new(text);
    run(p, 0, cut, &b);
    int rc = kts_pipeline_state_export(p, -1, false, rec_store, &rs);
    kts_pipeline_destroy(p);
    p = fh_pipeline_new(text);
    size_t bad = import_all(p, &rs);
    run(p, cut, NV, &b);
    kts_pipeline_flush(p, cap_emit, &b);
    kts_pipeline_destroy(p);
    bool same =
        rc == 0 && bad == 0 && a.len > 0 && a.len == b.len && memcmp(a.buf, b.buf, a.len) == 0;
    /* The control: the same cut without the import. */
    struct capture c = {0};
    p = fh_pipeline_new(text);
    run(p, 0, cut, &c);
    kts_pipeline_destroy(p);
    p = fh_pipeline_new(text);
    run(p, cut, NV, &c);
    kts_pipeline_flush(p, cap_emit, &c);
    kts_pipeline_destroy(p);
    *differs = c.len != a.len || memcmp(a.buf, c.buf, a.len) != 0;
    free(c.buf);
    if (!same) {
        size_t i = 0;
        while (i < a.len && i < b.len && a.buf[i] == b.buf[i])
            i++;
        diag("cut %zu: differs at byte %zu of %zu/%zu (%zu records)", cut, i, a.len, b.len, rs.n);
    }
    free(a.buf);
    free(b.buf);
    recs_free(&rs);
    return same;
}

static void test_restore(void)
{
    for (size_t c = 0; c < NCONFIGS; c++) {
        bool good = true;
        size_t cuts[8] = {0, 1, NV / 2, NV - 1, NV}, differing = 0;
        for (size_t k = 5; k < 8; k++)
            cuts[k] = (size_t)(urand() * NV);
        for (size_t k = 0; k < 8 && good; k++) {
            bool differs;
            good = restore_property(configs[c], cuts[k], &differs);
            differing += differs;
        }
        if (differing == 0)
            diag("config %zu: no cut where a fresh pipeline differs: the check is vacuous", c);
        good = good && differing > 0;
        ok(good,
           "1. restored output is bit-identical at 8 cut points (%zu where a fresh start "
           "differs): config %zu",
           differing, c);
    }
}

/* One record of the series h0 of a pipeline after the first n value lists. */
static void one_record(const char *text, size_t n, struct recs *rs)
{
    struct kts_pipeline *p = fh_pipeline_new(text);
    run(p, 0, n, NULL);
    kts_pipeline_state_export(p, -1, false, rec_store, rs);
    kts_pipeline_destroy(p);
}

/* Guarantee 2: another configuration, another version. */
static void test_refused_config(void)
{
    struct recs rs = {0};
    one_record(configs[8], 300, &rs);
    struct kts_pipeline *p = fh_pipeline_new(configs[9]); /* another outlier configuration */
    int lines = log_lines;
    size_t bad = import_all(p, &rs);
    struct kts_pipeline_state_stats st;
    kts_pipeline_state_get_stats(p, &st);
    ok(rs.n == NSERIES && bad == rs.n && st.refused[KTS_STATE_CONFIG] == rs.n && st.imported == 0,
       "2. records of another configuration are refused and counted (%zu)", rs.n);
    is_int(log_lines - lines, 1, "2. ... and logged once per pipeline");
    struct kts_pipeline_stats ps;
    kts_pipeline_get_stats(p, &ps);
    is_int((long long)ps.series, 0, "2. ... the series are absent (they start fresh)");
    kts_pipeline_destroy(p);

    /* Only MemoryLimit and WhenFull differ: the same fingerprint; ExpireAfter is part of it. */
    struct kts_pipeline *a = fh_pipeline_new(configs[8]);
    struct kts_pipeline *b = fh_pipeline_new(
        "<Pipeline \"p\">\n  MemoryLimit 9999\n  WhenFull "
        "\"drop\"\n  ExpireAfter 100000\n" F("outlier", "Window 300\n") "</Pipeline>\n");
    struct kts_pipeline *c = fh_pipeline_new(
        "<Pipeline \"p\">\n  ExpireAfter 100001\n" F("outlier", "Window 300\n") "</Pipeline>\n");
    ok(a && b && c && kts_pipeline_fingerprint(a) == kts_pipeline_fingerprint(b) &&
           kts_pipeline_fingerprint(a) != kts_pipeline_fingerprint(c),
       "2. MemoryLimit and WhenFull are not part of the fingerprint, ExpireAfter is");
    kts_pipeline_destroy(c);
    kts_pipeline_destroy(a);
    kts_pipeline_destroy(b);

    /* An unknown version (checked before the checksum: its layout may differ) */
    p = fh_pipeline_new(configs[8]);
    struct rec *r = &rs.r[0];
    r->rec[4] = 9;
    lines = log_lines;
    enum kts_state_refusal why = KTS_STATE_OK;
    int rc = kts_pipeline_state_import(p, r->key, r->klen, r->rec, r->rlen, &why);
    kts_pipeline_state_import(p, rs.r[1].key, rs.r[1].klen, r->rec, r->rlen, NULL);
    kts_pipeline_state_get_stats(p, &st);
    ok(rc < 0 && why == KTS_STATE_VERSION && st.refused[KTS_STATE_VERSION] == 2,
       "2. an unknown version is refused as such (%s)", kts_state_refusal_name(why));
    is_int(log_lines - lines, 1, "2. ... logged once");
    kts_pipeline_destroy(p);
    recs_free(&rs);
}

/* Guarantee 3: every truncation, random bit flips, random garbage. */
static void test_corrupt(void)
{
    struct recs rs = {0};
    one_record(configs[16], 500, &rs);
    struct kts_pipeline *p = fh_pipeline_new(configs[16]);
    struct rec *r = &rs.r[0];
    size_t refused = 0, accepted = 0;
    for (size_t len = 0; len < r->rlen; len++) {
        char *copy = malloc(len ? len : 1);
        memcpy(copy, r->rec, len);
        enum kts_state_refusal why;
        refused += kts_pipeline_state_import(p, r->key, r->klen, copy, len, &why) < 0 &&
                   (why == KTS_STATE_CORRUPT || len == 0);
        free(copy);
    }
    /* len 0 is a tombstone: it is accepted as such. */
    ok(refused == r->rlen - 1, "3. every truncation (%zu lengths) is refused as corrupt", r->rlen);
    size_t flips = 0;
    for (int i = 0; i < 2000; i++) {
        char *copy = malloc(r->rlen);
        memcpy(copy, r->rec, r->rlen);
        int nbits = 1 + (int)(urand() * 3);
        for (int b = 0; b < nbits; b++) {
            size_t bit = (size_t)(urand() * (double)r->rlen * 8);
            copy[bit / 8] ^= (char)(1u << (bit % 8));
        }
        flips += kts_pipeline_state_import(p, r->key, r->klen, copy, r->rlen, NULL) < 0;
        free(copy);
    }
    ok(flips == 2000, "3. 2000 records with 1 to 3 flipped bits are refused (%zu)", flips);
    for (int i = 0; i < 2000; i++) {
        size_t len = (size_t)(urand() * 300);
        unsigned char *g = malloc(len ? len : 1);
        for (size_t k = 0; k < len; k++)
            g[k] = (unsigned char)(urand() * 256);
        if (len >= 4)
            memcpy(g, "KTSS", 4);
        accepted += kts_pipeline_state_import(p, r->key, r->klen, g, len, NULL) == 0 && len > 0;
        free(g);
    }
    ok(accepted == 0, "3. 2000 random records after a valid magic are refused");
    enum kts_state_refusal why;
    ok(kts_pipeline_state_import(p, r->key, r->klen, r->rec, r->rlen, &why) == 0,
       "3. the intact record is still accepted");
    ok(kts_pipeline_state_import(p, "q\0h0", 4, r->rec, r->rlen, &why) < 0 && why == KTS_STATE_KEY,
       "3. a key of another pipeline is refused (key)");
    ok(kts_pipeline_state_import(p, r->key, r->klen - 1, r->rec, r->rlen, &why) < 0 &&
           why == KTS_STATE_KEY,
       "3. a key that does not match the record's identity is refused (key)");
    kts_pipeline_destroy(p);
    recs_free(&rs);
}

/* Guarantee 4: replayed values are absorbed, counted, and the output is still A's. */
static void test_absorbed(void)
{
    const char *text = configs[15];
    size_t cut = 1200, back = 100;
    struct capture a = {0}, b = {0};
    struct kts_pipeline *p = fh_pipeline_new(text);
    run(p, 0, NV, &a);
    kts_pipeline_destroy(p);
    struct recs rs = {0};
    p = fh_pipeline_new(text);
    run(p, 0, cut, &b);
    kts_pipeline_state_export(p, -1, false, rec_store, &rs);
    kts_pipeline_destroy(p);
    p = fh_pipeline_new(text);
    import_all(p, &rs);
    run(p, cut - back, NV, &b); /* the consumer restarts from an older committed offset */
    struct kts_pipeline_state_stats st;
    kts_pipeline_state_get_stats(p, &st);
    ok(st.absorbed == back, "4. the %zu replayed value lists are absorbed and counted (%llu)", back,
       (unsigned long long)st.absorbed);
    ok(a.len == b.len && memcmp(a.buf, b.buf, a.len) == 0,
       "4. ... and the output equals the uninterrupted run's");
    /* Without a position nothing is absorbed. */
    kts_pipeline_set_position(p, -1, -1);
    kts_pipeline_process(p, &vls[10], 1, cap_emit, &b);
    kts_pipeline_state_get_stats(p, &st);
    ok(st.absorbed == back, "4. a value list without a position is processed");
    kts_pipeline_destroy(p);
    free(a.buf);
    free(b.buf);
    recs_free(&rs);
}

static struct kts_vl mkvl(const char *host, double t, double v, struct kts_ds *ds)
{
    struct kts_vl vl;
    memset(&vl, 0, sizeof(vl));
    snprintf(vl.host, sizeof(vl.host), "%s", host);
    snprintf(vl.plugin, sizeof(vl.plugin), "cpu");
    snprintf(vl.type, sizeof(vl.type), "gauge");
    vl.time = KTS_TIME_FROM_DOUBLE(t);
    vl.interval = KTS_TIME_FROM_S(10);
    memset(ds, 0, sizeof(*ds));
    ds->type = KTS_DS_GAUGE;
    ds->value.gauge = v;
    vl.ds = ds;
    vl.ds_len = 1;
    return vl;
}

static void feed(struct kts_pipeline *p, const char *host, double t, int32_t part)
{
    struct kts_ds ds;
    struct kts_vl vl = mkvl(host, t, t / 7, &ds);
    kts_pipeline_set_position(p, part, (int64_t)t);
    kts_pipeline_process(p, &vl, 1, cap_emit, NULL);
}

/* The records are exactly those of `hosts` (in any order: the expiry queue rotates). */
static bool keys_are(const struct recs *rs, const char *const *hosts, size_t n, bool tombs)
{
    if (rs->n != n) {
        diag("%zu records, want %zu", rs->n, n);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < rs->n && !found; j++) {
            const struct rec *r = &rs->r[j];
            found = r->klen >= 2 + strlen(hosts[i]) && strcmp(r->key, "p") == 0 &&
                    strcmp(r->key + 2, hosts[i]) == 0 && (r->rec == NULL) == tombs;
        }
        if (!found) {
            diag("no %s for %s", tombs ? "tombstone" : "record", hosts[i]);
            return false;
        }
    }
    return true;
}

/* Guarantee 5: changed only, partitions, tombstones. */
static void test_changed_only(void)
{
    struct kts_pipeline *p = fh_pipeline_new(
        "<Pipeline \"p\">\n  ExpireAfter 100\n" F("smooth", "Tau 30\n") "</Pipeline>\n");
    struct recs rs = {0};
    feed(p, "a", 1000, 0);
    feed(p, "b", 1000, 1);
    feed(p, "c", 1000, 0);
    kts_pipeline_state_export(p, -1, false, rec_store, &rs);
    ok(keys_are(&rs, (const char *[]){"a", "b", "c"}, 3, false), "5. export all: a, b, c");
    recs_free(&rs);
    kts_pipeline_state_export(p, -1, true, rec_store, &rs);
    ok(rs.n == 0, "5. nothing changed since: nothing exported");
    feed(p, "c", 1010, 0);
    feed(p, "b", 1010, 1);
    kts_pipeline_state_export(p, 0, true, rec_store, &rs);
    ok(keys_are(&rs, (const char *[]){"c"}, 1, false) && rs.r[0].partition == 0,
       "5. changed on partition 0: c only");
    recs_free(&rs);
    kts_pipeline_state_export(p, -1, true, rec_store, &rs);
    ok(keys_are(&rs, (const char *[]){"b"}, 1, false) && rs.r[0].partition == 1,
       "5. then changed anywhere: b only");
    recs_free(&rs);
    /* d, never exported, and a expire; c comes back after expiring */
    feed(p, "d", 1020, 0);
    for (double t = 1030; t < 1300; t += 10) {
        feed(p, "b", t, 1);
        feed(p, "e", t, 0);
    }
    feed(p, "c", 1300, 0);
    kts_pipeline_state_export(p, 0, true, rec_store, &rs);
    struct kts_pipeline_state_stats st;
    kts_pipeline_state_get_stats(p, &st);
    struct recs tail = {&rs.r[2], 1, 1};
    bool recs_ok = rs.n == 3 && keys_are(&tail, (const char *[]){"a"}, 1, true);
    rs.n = 2;
    recs_ok = recs_ok && keys_are(&rs, (const char *[]){"e", "c"}, 2, false);
    rs.n = 3;
    ok(recs_ok && st.tombstones == 1, "5. partition 0: e and c changed, a's tombstone (%zu)", rs.n);
    recs_free(&rs);
    kts_pipeline_state_export(p, -1, true, rec_store, &rs);
    ok(keys_are(&rs, (const char *[]){"b"}, 1, false), "5. no tombstone twice; b changed");
    recs_free(&rs);
    kts_pipeline_state_drop_partition(p, 1);
    struct kts_pipeline_stats ps;
    kts_pipeline_get_stats(p, &ps);
    kts_pipeline_state_get_stats(p, &st);
    ok(ps.series == 2 && st.dropped == 1, "drop_partition: b forgotten, c and e stay");
    kts_pipeline_state_import(p, "p\0e\0cpu\0\0gauge\0", 16, NULL, 0, NULL);
    kts_pipeline_get_stats(p, &ps);
    ok(ps.series == 1, "a tombstone import removes the series");
    kts_pipeline_destroy(p);
}

/* kts_state_file.h: save, load, missing, damaged; no temporary file left. */
static void test_state_file(void)
{
    char dir[] = "/tmp/t-pipeline-state.XXXXXX", path[256], err[512];
    ok(mkdtemp(dir) != NULL, "state file: a temporary directory");
    snprintf(path, sizeof(path), "%s/state", dir);
    struct kts_pipeline *a[2] = {fh_pipeline_new(configs[15]), fh_pipeline_new(configs[12])};
    run(a[0], 0, NV / 2, NULL);
    run(a[1], 0, NV / 2, NULL);
    size_t records = 0;
    ok(kts_state_file_save(path, a, 1, &records, err, sizeof(err)) == 0 && records == NSERIES,
       "state file 1.: saved (%zu records)", records);
    struct kts_pipeline *b[2] = {fh_pipeline_new(configs[15]), fh_pipeline_new(configs[12])};
    struct kts_state_load_stats st;
    ok(kts_state_file_load(path, b, 1, &st, err, sizeof(err)) == 0 && st.imported == NSERIES &&
           st.refused == 0,
       "state file: loaded into a pipeline of the same configuration");
    struct capture ca = {0}, cb = {0};
    run(a[0], NV / 2, NV, &ca);
    run(b[0], NV / 2, NV, &cb);
    ok(ca.len > 0 && ca.len == cb.len && memcmp(ca.buf, cb.buf, ca.len) == 0,
       "state file: the loaded pipeline continues exactly as the saved one");
    /* configs[12]'s pipeline is also named "p": its records are refused (config), not unknown */
    ok(kts_state_file_load(path, &b[1], 1, &st, err, sizeof(err)) == 0 && st.refused == NSERIES,
       "state file 2.: records of another configuration are refused, the load goes on");
    snprintf(path, sizeof(path), "%s/missing", dir);
    ok(kts_state_file_load(path, b, 1, &st, err, sizeof(err)) == -ENOENT,
       "state file 3.: a missing file is -ENOENT");
    snprintf(path, sizeof(path), "%s/state", dir);
    ok(truncate(path, 8 + 4 + 20 + 4 + 1000) == 0 &&
           kts_state_file_load(path, b, 1, &st, err, sizeof(err)) == -EBADMSG,
       "state file 3.: a file cut inside an entry is damaged (%s)", err);
    size_t files = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;)
        files += e->d_name[0] != '.';
    closedir(d);
    is_int((long long)files, 1, "state file 1.: no temporary file is left behind");
    unlink(path);
    rmdir(dir);
    for (int i = 0; i < 2; i++) {
        kts_pipeline_destroy(a[i]);
        kts_pipeline_destroy(b[i]);
    }
    free(ca.buf);
    free(cb.buf);
}

/* Record sizes of the shipped pipelines, for the docs. */
static void sizes(void)
{
    static const char *const which[] = {"spikes-like", "every filter"};
    for (int k = 0; k < 2; k++) {
        struct recs rs = {0};
        one_record(configs[15 + k], NV, &rs);
        diag("%s: %zu bytes per record of a 2-data-source series (key %zu)", which[k], rs.r[0].rlen,
             rs.r[0].klen);
        recs_free(&rs);
    }
}

int main(void)
{
    kts_log_set_sink(sink, NULL);
    plan((int)NCONFIGS + 6 + 6 + 3 + 8 + 8);
    gen_stream();
    test_restore();
    test_refused_config();
    test_corrupt();
    test_absorbed();
    test_changed_only();
    test_state_file();
    sizes();
    kts_log_set_sink(NULL, NULL);
    return done_testing();
}
