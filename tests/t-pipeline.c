/* SPDX-License-Identifier: MIT */
/* kts_pipeline: tests named after the guarantees in src/pipeline/kts_pipeline.h. */
#include <errno.h>

#include "filter-harness.h"
#include "kts_log.h"
#include "tap.h"

static int log_lines;
static char last_log[1024];
static void sink(int level, const char *msg, void *opaque)
{
    (void)level;
    (void)opaque;
    log_lines++;
    snprintf(last_log, sizeof(last_log), "%s", msg);
    printf("# log: %s\n", msg);
}

#define MAXO 4096
static struct kts_vl outs[MAXO];
static struct kts_ds out_ds[MAXO][2];
static uint16_t out_flags[MAXO][2];
static size_t nouts;

static int collect(const struct kts_vl *vl, const uint16_t *flags, void *opaque)
{
    (void)opaque;
    if (nouts < MAXO) {
        outs[nouts] = *vl;
        memcpy(out_ds[nouts], vl->ds, vl->ds_len * sizeof(struct kts_ds));
        memcpy(out_flags[nouts], flags, vl->ds_len * sizeof(uint16_t));
        outs[nouts].ds = out_ds[nouts];
    }
    nouts++;
    return 0;
}

static struct kts_ds ds1[1], ds2[2];

static int stop_after_one(const struct kts_vl *vl, const uint16_t *flags, void *opaque)
{
    (void)vl;
    (void)flags;
    return ++*(int *)opaque >= 1 ? -ECANCELED : 0;
}

static struct kts_vl mkvl(const char *host, const char *plugin, double t, double v)
{
    struct kts_vl vl;
    memset(&vl, 0, sizeof(vl));
    snprintf(vl.host, sizeof(vl.host), "%s", host);
    snprintf(vl.plugin, sizeof(vl.plugin), "%s", plugin);
    snprintf(vl.type, sizeof(vl.type), "gauge");
    vl.time = KTS_TIME_FROM_DOUBLE(t);
    vl.interval = KTS_TIME_FROM_S(10);
    ds1[0].type = KTS_DS_GAUGE;
    ds1[0].value.gauge = v;
    snprintf(ds1[0].name, sizeof(ds1[0].name), "value");
    vl.ds = ds1;
    vl.ds_len = 1;
    return vl;
}

/* Guarantee 9: 300 series interleaved (a few not matched, new series appearing mid-batch, the
 * slot array growing), fed in batches of `batch`; returns a digest of every output. */
static uint64_t run_batched(size_t batch)
{
    struct kts_pipeline *p =
        fh_pipeline_new("<Pipeline \"b\">\n  <Match>\n    Host \"/^h[0-9]+$/\"\n  </Match>\n"
                        "  <Filter \"dedup\">\n  </Filter>\n"
                        "  <Filter \"outlier\">\n    MinPoints 3\n  </Filter>\n"
                        "  <Filter \"smooth\">\n    Tau 30\n  </Filter>\n</Pipeline>\n");
    if (p == NULL)
        return 0;
    enum { NS = 300, ROUNDS = 8 };
    static struct kts_vl vls[NS * ROUNDS];
    static struct kts_ds dss[NS * ROUNDS];
    uint64_t rng = 42;
    size_t n = 0;
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k < NS; k++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            int s = (int)((rng >> 33) % (uint64_t)(r < 2 ? NS / 2 : NS)); /* half appear later */
            struct kts_vl *vl = &vls[n];
            memset(vl, 0, sizeof(*vl));
            snprintf(vl->host, sizeof(vl->host), "%s%d", s % 17 == 0 ? "x" : "h", s);
            snprintf(vl->plugin, sizeof(vl->plugin), "p");
            snprintf(vl->type, sizeof(vl->type), "gauge");
            vl->time = KTS_TIME_FROM_DOUBLE(1000 + 10 * r + (double)(rng % 7));
            vl->interval = KTS_TIME_FROM_S(10);
            dss[n].type = KTS_DS_GAUGE;
            dss[n].value.gauge = (rng >> 40) % 50 == 0 ? 1e6 : (double)((rng >> 20) % 1000) / 10;
            vl->ds = &dss[n];
            vl->ds_len = 1;
            n++;
        }
    }
    nouts = 0;
    for (size_t i = 0; i < n; i += batch)
        kts_pipeline_process(p, &vls[i], n - i < batch ? n - i : batch, collect, NULL);
    uint64_t h = 1469598103934665603ULL ^ nouts;
    for (size_t i = 0; i < nouts && i < MAXO; i++) {
        uint64_t bits;
        memcpy(&bits, &out_ds[i][0].value.gauge, sizeof(bits));
        h = (h ^ bits ^ outs[i].time ^ out_flags[i][0] ^ (uint64_t)outs[i].host[1] << 56) *
            1099511628211ULL;
    }
    kts_pipeline_destroy(p);
    return h;
}

int main(void)
{
    plan(42);
    kts_log_set_sink(sink, NULL);

    /* 1. validation reports every problem */
    log_lines = 0;
    struct kts_pipeline *p =
        fh_pipeline_new("<Pipeline \"bad\">\n"
                        "  <Match>\n    Host \"/([/\"\n    Colour \"red\"\n  </Match>\n"
                        "  <Filter \"nosuch\">\n  </Filter>\n"
                        "  <Filter \"smooth\">\n    Method \"median\"\n    Tau -1\n  </Filter>\n"
                        "  Bogus 1\n"
                        "</Pipeline>\n");
    ok(p == NULL, "1. invalid pipeline refused");
    ok(log_lines >= 6,
       "1. every problem logged (%d lines: regex, Colour, nosuch, Method, Tau, Bogus)", log_lines);
    p = fh_pipeline_new("<Pipeline \"empty\">\n</Pipeline>\n");
    ok(p == NULL, "1. a pipeline without filters is refused");
    p = fh_pipeline_new("<Pipeline>\n<Filter \"smooth\">\n</Filter>\n</Pipeline>\n");
    ok(p == NULL, "1. a pipeline without a name is refused");

    /* match + naming */
    p = fh_pipeline_new(
        "<Pipeline \"m\">\n"
        "  <Match>\n    Host \"/^web[0-9]+$/\" \"db\"\n    Plugin \"cpu\"\n  </Match>\n"
        "  <Filter \"smooth\">\n    Method \"ema\"\n    Tau 10\n  </Filter>\n"
        "  OutputPluginInstanceSuffix \"-filtered\"\n  OutputType \"gauge2\"\n"
        "</Pipeline>\n");
    ok(p != NULL, "valid pipeline configures");
    struct kts_vl vl = mkvl("web12", "cpu", 1000, 1);
    ok(kts_pipeline_match(p, &vl), "match: regex host and exact plugin");
    vl = mkvl("db", "cpu", 1000, 1);
    ok(kts_pipeline_match(p, &vl), "match: several values = any");
    vl = mkvl("web12x", "cpu", 1000, 1);
    ok(!kts_pipeline_match(p, &vl), "match: regex anchored by the user");
    vl = mkvl("db", "memory", 1000, 1);
    ok(!kts_pipeline_match(p, &vl), "match: every given field must match");
    nouts = 0;
    kts_pipeline_process(p, &vl, 1, collect, NULL);
    is_int(nouts, 0, "non-matching value lists are ignored by process");
    vl = mkvl("db", "cpu", 1000, 1);
    kts_pipeline_process(p, &vl, 1, collect, NULL);
    is_int(nouts, 1, "4. one output value list");
    is_str(outs[0].plugin_instance, "filtered",
           "4. suffix on an empty plugin instance: without its leading '-' (cpu-filtered)");
    is_str(outs[0].type, "gauge2", "4. type replaced");
    is_str(outs[0].host, "db", "4. other names unchanged");
    kts_pipeline_destroy(p);

    /* 4. the naming rule for all five suffixes: appended as given to a non-empty name; on an
     * empty one (a set Output* "" included) without leading separators '-', '_', '.' */
    p = fh_pipeline_new("<Pipeline \"names\">\n  <Filter \"smooth\">\n  </Filter>\n"
                        "  OutputHostSuffix \".agg\"\n  OutputPluginSuffix \"_x\"\n"
                        "  OutputPluginInstanceSuffix \"-smooth\"\n  OutputTypeSuffix \"-y\"\n"
                        "  OutputTypeInstanceSuffix \"._-z\"\n</Pipeline>\n");
    nouts = 0;
    vl = mkvl("h1", "memory", 1000, 1);
    kts_pipeline_process(p, &vl, 1, collect, NULL);
    vl = mkvl("h1", "cpu", 1000, 1);
    snprintf(vl.plugin_instance, sizeof(vl.plugin_instance), "0");
    snprintf(vl.type_instance, sizeof(vl.type_instance), "user");
    kts_pipeline_process(p, &vl, 1, collect, NULL);
    is_int(nouts, 2, "4. naming: two outputs");
    ok(nouts == 2 && strcmp(outs[0].host, "h1.agg") == 0 &&
           strcmp(outs[0].plugin, "memory_x") == 0 &&
           strcmp(outs[0].plugin_instance, "smooth") == 0 && strcmp(outs[0].type, "gauge-y") == 0 &&
           strcmp(outs[0].type_instance, "z") == 0,
       "4. naming, empty instances: h1.agg/memory_x-smooth/gauge-y-z (%s/%s-%s/%s-%s)",
       outs[0].host, outs[0].plugin, outs[0].plugin_instance, outs[0].type, outs[0].type_instance);
    ok(nouts == 2 && strcmp(outs[1].plugin_instance, "0-smooth") == 0 &&
           strcmp(outs[1].type_instance, "user._-z") == 0,
       "4. naming, non-empty instances keep the separators: 0-smooth, user._-z (%s, %s)",
       outs[1].plugin_instance, outs[1].type_instance);
    kts_pipeline_destroy(p);
    p = fh_pipeline_new("<Pipeline \"set\">\n  <Filter \"smooth\">\n  </Filter>\n"
                        "  OutputPluginInstance \"\"\n  OutputPluginInstanceSuffix \"-s\"\n"
                        "  OutputTypeInstanceSuffix \"---\"\n</Pipeline>\n");
    nouts = 0;
    vl = mkvl("h1", "cpu", 1000, 1);
    snprintf(vl.plugin_instance, sizeof(vl.plugin_instance), "0");
    kts_pipeline_process(p, &vl, 1, collect, NULL);
    ok(nouts == 1 && strcmp(outs[0].plugin_instance, "s") == 0 && outs[0].type_instance[0] == '\0',
       "4. naming: OutputPluginInstance \"\" + \"-s\" gives \"s\"; a suffix of separators only "
       "on an empty name leaves it empty (%s, \"%s\")",
       outs[0].plugin_instance, outs[0].type_instance);
    kts_pipeline_destroy(p);

    /* 2./4. two data sources, independent, one reset */
    p = fh_pipeline_new("<Pipeline \"if\">\n  <Filter \"difference\">\n  </Filter>\n</Pipeline>\n");
    nouts = 0;
    uint64_t rx[] = {1000, 2000, 3000, 10}, tx[] = {500, 600, 700, 800};
    for (int i = 0; i < 4; i++) {
        vl = mkvl("h", "interface", 1000 + 10 * i, 0);
        ds2[0].type = ds2[1].type = KTS_DS_COUNTER;
        ds2[0].value.counter = rx[i];
        ds2[1].value.counter = tx[i];
        vl.ds = ds2;
        vl.ds_len = 2;
        kts_pipeline_process(p, &vl, 1, collect, NULL);
    }
    is_int(nouts, 3, "4. first point warms up, then one value list per point");
    ok(out_ds[0][0].type == KTS_DS_GAUGE && out_ds[0][0].value.gauge == 100 &&
           out_ds[0][1].value.gauge == 10,
       "2. each data source has its own rate");
    ok(isnan(out_ds[2][0].value.gauge) && out_ds[2][1].value.gauge == 10,
       "4. a reset on rx only: rx is NaN, tx has its rate");
    /* 5. data source count changes */
    vl = mkvl("h", "interface", 1100, 5);
    kts_pipeline_process(p, &vl, 1, collect, NULL);
    struct kts_pipeline_stats st;
    kts_pipeline_get_stats(p, &st);
    is_uint(st.restarted, 1, "5. a series whose data sources change is restarted");
    kts_pipeline_destroy(p);

    /* 4. untouched values keep type and integer */
    p = fh_pipeline_new("<Pipeline \"d\">\n  <Filter \"dedup\">\n  </Filter>\n</Pipeline>\n");
    nouts = 0;
    vl = mkvl("h", "p", 1000, 0);
    ds1[0].type = KTS_DS_DERIVE;
    ds1[0].value.derive = -42;
    kts_pipeline_process(p, &vl, 1, collect, NULL);
    kts_pipeline_process(p, &vl, 1, collect, NULL);
    ok(nouts == 1 && out_ds[0][0].type == KTS_DS_DERIVE && out_ds[0][0].value.derive == -42,
       "4. a value no filter changed keeps its DS type and integer; duplicate dropped");
    kts_pipeline_destroy(p);

    /* 6. memory limit */
    p = fh_pipeline_new(
        "<Pipeline \"full\">\n  MemoryLimit 1\n"
        "  <Filter \"smooth\">\n    Method \"sma\"\n    MaxPoints 4096\n  </Filter>\n"
        "</Pipeline>\n");
    nouts = 0;
    char host[32];
    for (int i = 0; i < 100; i++) {
        snprintf(host, sizeof(host), "h%d", i);
        vl = mkvl(host, "p", 1000, i);
        kts_pipeline_process(p, &vl, 1, collect, NULL);
    }
    kts_pipeline_get_stats(p, &st);
    ok(st.refused > 0 && st.series + st.refused == 100,
       "6. %llu series refused over 1 MiB, %zu kept", (unsigned long long)st.refused, st.series);
    is_int(nouts, 100, "6. WhenFull pass: refused series still emitted unfiltered");
    ok(st.bytes <= 1024 * 1024, "6. bytes in use %zu within the limit", st.bytes);
    kts_pipeline_destroy(p);

    /* expiry flushes held points */
    p = fh_pipeline_new("<Pipeline \"e\">\n  ExpireAfter 60\n"
                        "  <Filter \"dedup\">\n    SuppressUnchanged true\n  </Filter>\n"
                        "</Pipeline>\n");
    nouts = 0;
    for (int i = 0; i < 5; i++) {
        vl = mkvl("a", "p", 1000 + 10 * i, 1);
        kts_pipeline_process(p, &vl, 1, collect, NULL);
    }
    is_int(nouts, 1, "suppression holds back the flat run");
    vl = mkvl("b", "p", 2000, 1);
    kts_pipeline_process(p, &vl, 1, collect, NULL);
    kts_pipeline_get_stats(p, &st);
    is_uint(st.series_expired, 1, "2. the pipeline's event-time clock expires idle series");
    ok(nouts == 3 && strcmp(outs[2].host, "a") == 0 && outs[2].time == KTS_TIME_FROM_DOUBLE(1040),
       "expiry flushes the held last point of the idle series");
    kts_pipeline_flush(p, collect, NULL);
    is_int(nouts, 3, "flush: nothing else held");
    kts_pipeline_destroy(p);

    /* deseasonalize -> outlier -> reseasonalize: output in the series' units */
    p = fh_pipeline_new("<Pipeline \"rs\">\n"
                        "  <Filter \"deseasonalize\">\n    Period 3600\n    Bins 60\n  </Filter>\n"
                        "  <Filter \"outlier\">\n    Threshold 5\n    Delay 1\n  </Filter>\n"
                        "  <Filter \"reseasonalize\">\n  </Filter>\n</Pipeline>\n");
    /* Delay 1 (outlier guarantee 13): the spike on the sine's ramp is replaced by the mean of
     * its neighbours; with Delay 0 the replacement stays within the last 8 values (guarantee
     * 10), below a rising ramp. The output lags one point until the flush. */
    nouts = 0;
    double maxerr = 0, spike_out = 0;
    int nrepl = 0;
    for (int i = 0; i < 360; i++) {
        double v = 100 + 30 * sin(2 * M_PI * i / 60) + 0.01 * (i % 5);
        vl = mkvl("h", "p", 1000000 + 60 * i, i == 300 ? v + 500 : v);
        kts_pipeline_process(p, &vl, 1, collect, NULL);
    }
    kts_pipeline_flush(p, collect, NULL);
    for (int i = 0; i < 360 && nouts == 360; i++) {
        double v = 100 + 30 * sin(2 * M_PI * i / 60) + 0.01 * (i % 5);
        double got = outs[i].ds[0].value.gauge;
        if (outs[i].time != KTS_TIME_FROM_DOUBLE(1000000 + 60 * i))
            maxerr = INFINITY;
        else if (i == 300)
            spike_out = got - v;
        else if (i > 120 && !(out_flags[i][0] & KTS_PT_REPLACED))
            maxerr = fmax(maxerr, fabs(got - v));
        else if (i > 120)
            nrepl++;
    }
    is_int(nouts, 360, "Delay 1: every point comes out, in order, after the flush");
    ok(maxerr < 1e-9,
       "reseasonalize restores the original values (max error %g; %d other "
       "points replaced)",
       maxerr, nrepl);
    ok(fabs(spike_out) < 1 && (out_flags[300][0] & KTS_PT_REPLACED),
       "a spike is replaced by the expected value in the series' units (off by %.3f)", spike_out);
    kts_pipeline_destroy(p);

    /* WhenFull drop, emit errors, per-filter counters, ABSOLUTE */
    p = fh_pipeline_new(
        "<Pipeline \"drop\">\n  MemoryLimit 1\n  WhenFull \"drop\"\n"
        "  <Filter \"smooth\">\n    Method \"sma\"\n    MaxPoints 4096\n  </Filter>\n"
        "</Pipeline>\n");
    nouts = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(host, sizeof(host), "h%d", i);
        vl = mkvl(host, "p", 1000, i);
        kts_pipeline_process(p, &vl, 1, collect, NULL);
    }
    kts_pipeline_get_stats(p, &st);
    ok(st.refused > 0 && nouts == 100 - st.refused,
       "6. WhenFull drop: refused series emit nothing (%zu out)", nouts);
    kts_pipeline_destroy(p);
    p = fh_pipeline_new("<Pipeline \"f\">\n  <Filter \"fill\">\n    MaxGap 3\n  </Filter>\n"
                        "  <Filter \"dedup\">\n  </Filter>\n</Pipeline>\n");
    int calls = 0;
    vl = mkvl("h", "p", 1000, 1);
    kts_pipeline_process(p, &vl, 1, collect, NULL);
    vl = mkvl("h", "p", 1040, 4);
    is_int(kts_pipeline_process(p, &vl, 1, stop_after_one, &calls), -ECANCELED,
           "a non-zero return of emit stops processing and is returned");
    is_int(calls, 1, "no further emit after it");
    kts_pipeline_process(p, &vl, 1, collect, NULL);
    ok(kts_pipeline_filter_count(p) == 2 && strcmp(kts_pipeline_filter_name(p, 1), "dedup") == 0 &&
           kts_pipeline_filter_stats(p, 1)->dropped == 1 &&
           kts_pipeline_filter_stats(p, 0)->filled == 3 && kts_pipeline_filter_stats(p, 2) == NULL,
       "per-filter names and counters (fill filled 3, dedup dropped the redelivery)");
    kts_pipeline_destroy(p);
    p = fh_pipeline_new("<Pipeline \"big\">\n  <Filter \"fill\">\n    MaxGap 1000\n  </Filter>\n"
                        "  <Filter \"fill\">\n    MaxGap 1000\n  </Filter>\n</Pipeline>\n");
    ok(p == NULL, "1. filters that could emit over a million points per input are refused");
    p = fh_pipeline_new(
        "<Pipeline \"abs\">\n  <Filter \"difference\">\n  </Filter>\n</Pipeline>\n");
    nouts = 0;
    for (int i = 0; i < 2; i++) {
        vl = mkvl("h", "p", 1000 + 10 * i, 0);
        ds1[0].type = KTS_DS_ABSOLUTE;
        ds1[0].value.absolute = 50;
        kts_pipeline_process(p, &vl, 1, collect, NULL);
    }
    ok(nouts == 1 && out_ds[0][0].value.gauge == 5, "2. ABSOLUTE through the pipeline: value / dt");
    kts_pipeline_destroy(p);

    /* name too long */
    p = fh_pipeline_new(
        "<Pipeline \"n\">\n  OutputHostSuffix "
        "\"-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n"
        "  <Filter \"fill\">\n  </Filter>\n</Pipeline>\n");
    nouts = 0;
    vl = mkvl("h", "p", 1000, 1);
    kts_pipeline_process(p, &vl, 1, collect, NULL);
    kts_pipeline_get_stats(p, &st);
    ok(nouts == 0 && st.name_too_long == 1, "an output name over 127 bytes is dropped and counted");
    kts_pipeline_destroy(p);
    /* 9. batches (prefetching) give the same output as one value list at a time */
    uint64_t one = run_batched(1);
    size_t n_one = nouts;
    ok(one != 0 && n_one > 1000 && n_one <= MAXO, "9. %zu outputs of 300 interleaved series",
       n_one);
    ok(run_batched(2) == one && run_batched(7) == one && run_batched(64) == one &&
           run_batched(2400) == one,
       "9. identical outputs in batches of 2, 7, 64 and all 2400 value lists at once");
    kts_log_set_sink(NULL, NULL);
    return done_testing();
}
