/* SPDX-License-Identifier: MIT */
/*
 * bench-filters: ns per point and bytes per series for the series table, each filter and a full
 * pipeline, with many series in random order. Built on demand, not part of `make check`:
 *
 *   make bench/bench-filters && bench/bench-filters [--series 1000,100000,1000000] [--rounds 20]
 *       [--batch N] [--only SUBSTR] [--hot POINTS] [--pipelines-only] [--step S] [--skip R]
 *
 * Each round sends one value list per series, series in a fresh random order, timestamps
 * 300 s apart per series (a 5-minute gauge with a daily pattern, or a counter for the full
 * pipeline). Times only kts_pipeline_process(); prints a Markdown table (docs/PERFORMANCE.md).
 * --batch N hands the pipeline N value lists per call (prefetching, kts_pipeline.h guarantee 9).
 * --hot P also times P points of one single series (everything in cache): the pipeline's cost
 * without memory stalls. --pipelines-only skips the memory-latency probe and the table alone
 * (for runs under valgrind's cachegrind, see docs/PERFORMANCE.md). --step S spaces the rounds by
 * S seconds of event time (default 300) and --skip R leaves R rounds after the first out of the
 * timing: with the default 300 s a profile's first day (288 rounds) is warm-up, during which
 * deseasonalize passes points through and the outlier filter after it does not run; e.g.
 * --step 3600 --skip 24 times the steady state.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kts_conf.h"
#include "kts_log.h"
#include "kts_pipeline.h"
#include "kts_series.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int sink_emit(const struct kts_vl *vl, const uint16_t *flags, void *opaque)
{
    (void)flags;
    *(double *)opaque += vl->ds[0].value.gauge;
    return 0;
}

struct bench_case {
    const char *name;
    bool counter;
    const char *body;
};

static const struct bench_case cases[] = {
    {"dedup", false, "<Filter \"dedup\">\n</Filter>\n"},
    {"difference (rate)", true, "<Filter \"difference\">\n</Filter>\n"},
    {"smooth (ema)", false, "<Filter \"smooth\">\nMethod \"ema\"\n</Filter>\n"},
    {"smooth (sma, 64 points)", false,
     "<Filter \"smooth\">\nMethod \"sma\"\nWindow 3600\n</Filter>\n"},
    {"smooth (holt)", false, "<Filter \"smooth\">\nMethod \"holt\"\n</Filter>\n"},
    {"deseasonalize (288 bins)", false, "<Filter \"deseasonalize\">\n</Filter>\n"},
    {"outlier (hampel, 31 points)", false, "<Filter \"outlier\">\nWindow 86400\n</Filter>\n"},
    {"outlier (robust)", false, "<Filter \"outlier\">\nMethod \"robust\"\n</Filter>\n"},
    {"fill", false, "<Filter \"fill\">\n</Filter>\n"},
    {"full: dedup, difference, deseasonalize, outlier (hampel 31), smooth", true,
     "<Filter \"dedup\">\n</Filter>\n<Filter \"difference\">\n</Filter>\n"
     "<Filter \"deseasonalize\">\n</Filter>\n<Filter \"outlier\">\nWindow 86400\n</Filter>\n"
     "<Filter \"smooth\">\nMethod \"ema\"\n</Filter>\n"},
    /* contrib/pipelines/spikes.conf without its OutputPluginInstanceSuffix: keep in step. */
    {"spikes.conf", false,
     "<Filter \"dedup\">\n</Filter>\n"
     "<Filter \"deseasonalize\">\nPeriod 86400\nBins 288\n</Filter>\n"
     "<Filter \"outlier\">\nMethod \"hampel\"\nWindow 86400\nMaxPoints 21\nMinPoints 10\n"
     "Threshold 5\nDiffScale 1.2\nMaxRun 2\nDelay 2\nWarmModel \"local\"\nLocalFallback 1\n"
     "Action \"replace\"\n</Filter>\n"
     "<Filter \"reseasonalize\">\n</Filter>\n"},
    {"full without a profile (deseasonalize left out)", true,
     "<Filter \"dedup\">\n</Filter>\n<Filter \"difference\">\n</Filter>\n"
     "<Filter \"outlier\">\nMethod \"robust\"\n</Filter>\n<Filter \"smooth\">\nMethod "
     "\"ema\"\n</Filter>\n"},
};

static char (*hosts)[32];
static uint32_t *perm;
static size_t batch = 1;
static double step_s = 300; /* event time between rounds */
static int skip = 0;        /* rounds after the first that are run but not timed (warm-up) */

static void run_case(const struct bench_case *bc, size_t nseries, int rounds)
{
    char text[2048], err[512];
    snprintf(text, sizeof(text),
             "<Pipeline \"bench\">\nMemoryLimit 0\nExpireAfter 0\n%s</Pipeline>\n", bc->body);
    struct kts_conf *root = NULL;
    struct kts_pipeline *p = NULL;
    if (kts_conf_parse(text, strlen(text), "bench", &root, err, sizeof(err)) < 0 ||
        kts_pipeline_config(&root->children[0], "bench", &p, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    kts_conf_free(root);
    struct kts_vl *vls = calloc(batch, sizeof(*vls));
    struct kts_ds *dss = calloc(batch, sizeof(*dss));
    if (vls == NULL || dss == NULL)
        exit(1);
    for (size_t b = 0; b < batch; b++) {
        struct kts_vl *v = &vls[b];
        strcpy(v->plugin, "cpu");
        strcpy(v->plugin_instance, "0");
        strcpy(v->type, bc->counter ? "cpu" : "gauge");
        strcpy(v->type_instance, "idle");
        v->interval = KTS_TIME_FROM_S(300);
        v->ds = &dss[b];
        v->ds_len = 1;
        dss[b].type = bc->counter ? KTS_DS_COUNTER : KTS_DS_GAUGE;
    }
    double total = 0, first_round = 0, sum = 0;
    for (int r = 0; r < rounds; r++) {
        for (size_t i = nseries - 1; i > 0; i--) {
            size_t j = xorshift() % (i + 1);
            uint32_t tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        double t0 = now_s();
        for (size_t k = 0; k < nseries; k++) {
            uint32_t s = perm[k];
            struct kts_vl *vl = &vls[k % batch];
            memcpy(vl->host, hosts[s], sizeof(hosts[s]));
            double tt = 1.4e9 + step_s * r + (s % 300);
            vl->time = KTS_TIME_FROM_DOUBLE(tt);
            double v = 50 + 20 * sin(tt / 13751.0) + (double)(xorshift() % 1000) / 500.0;
            if (bc->counter)
                vl->ds[0].value.counter = (uint64_t)r * 1000 + (xorshift() % 500) + s;
            else
                vl->ds[0].value.gauge = v;
            if (k % batch == batch - 1 || k == nseries - 1)
                kts_pipeline_process(p, vls, k % batch + 1, sink_emit, &sum);
        }
        double el = now_s() - t0;
        if (r == 0)
            first_round = el;
        else if (r > skip)
            total += el;
    }
    struct kts_pipeline_stats st;
    kts_pipeline_get_stats(p, &st);
    printf("| %s | %zu | %.0f | %.0f | %.0f |\n", bc->name, nseries,
           first_round / (double)nseries * 1e9,
           rounds > 1 + skip ? total / ((double)nseries * (rounds - 1 - skip)) * 1e9 : 0.0,
           (double)st.bytes / (double)st.series);
    fflush(stdout);
    kts_pipeline_destroy(p);
    free(vls);
    free(dss);
    if (sum == 12345.678)
        printf("(unlikely)\n");
}

/* One series, `points` points in a row: the state stays in cache. */
static void run_hot(const struct bench_case *bc, size_t points)
{
    char text[2048], err[512];
    snprintf(text, sizeof(text),
             "<Pipeline \"bench\">\nMemoryLimit 0\nExpireAfter 0\n%s</Pipeline>\n", bc->body);
    struct kts_conf *root = NULL;
    struct kts_pipeline *p = NULL;
    if (kts_conf_parse(text, strlen(text), "bench", &root, err, sizeof(err)) < 0 ||
        kts_pipeline_config(&root->children[0], "bench", &p, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    kts_conf_free(root);
    struct kts_vl vl;
    struct kts_ds ds;
    memset(&vl, 0, sizeof(vl));
    memset(&ds, 0, sizeof(ds));
    strcpy(vl.host, "host0000001.example");
    strcpy(vl.plugin, "cpu");
    strcpy(vl.plugin_instance, "0");
    strcpy(vl.type, bc->counter ? "cpu" : "gauge");
    strcpy(vl.type_instance, "idle");
    vl.interval = KTS_TIME_FROM_S(300);
    vl.ds = &ds;
    vl.ds_len = 1;
    ds.type = bc->counter ? KTS_DS_COUNTER : KTS_DS_GAUGE;
    double sum = 0, t0 = 0;
    size_t warm = points / 2; /* past every warm-up (deseasonalize: one day = 288 points) */
    for (size_t k = 0; k < warm + points; k++) {
        if (k == warm)
            t0 = now_s();
        double tt = 1.4e9 + 300.0 * (double)k;
        vl.time = KTS_TIME_FROM_DOUBLE(tt);
        if (bc->counter)
            ds.value.counter = (uint64_t)k * 1000 + (xorshift() % 500);
        else
            ds.value.gauge = 50 + 20 * sin(tt / 13751.0) + (double)(xorshift() % 1000) / 500.0;
        kts_pipeline_process(p, &vl, 1, sink_emit, &sum);
    }
    double el = now_s() - t0;
    printf("| %s | %.0f |\n", bc->name, el / (double)points * 1e9);
    fflush(stdout);
    kts_pipeline_destroy(p);
    if (sum == 12345.678)
        printf("(unlikely)\n");
}

static void bench_table(size_t n)
{
    struct kts_series_conf conf = {0};
    struct kts_series_table *t;
    kts_series_table_create(&conf, &t);
    char key[64];
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(key, sizeof(key), "%s/cpu-0/cpu-idle", hosts[i]);
        void *s;
        kts_series_get(t, key, (size_t)len, 24, 1, &s, NULL);
    }
    double ins = now_s() - t0;
    t0 = now_s();
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(key, sizeof(key), "%s/cpu-0/cpu-idle", hosts[perm[i]]);
        found += kts_series_find(t, key, (size_t)len) != NULL;
    }
    double look = now_s() - t0;
    t0 = now_s();
    for (size_t i = 0; i < n; i++)
        snprintf(key, sizeof(key), "%s/cpu-0/cpu-idle", hosts[perm[i]]);
    double keycost = now_s() - t0;
    struct kts_series_stats st;
    kts_series_get_stats(t, &st);
    printf("| %zu | %.0f | %.0f | %.1f | %zu |\n", n, (ins - keycost) / (double)n * 1e9,
           (look - keycost) / (double)n * 1e9, (double)st.bytes / (double)n, found);
    kts_series_table_destroy(t, NULL, NULL);
}

/* The machine's cost of one dependent random memory access over 256 MiB: the floor under a
 * lookup among a million series (a lookup needs about two of them). */
static double random_access_ns(void)
{
    size_t n = (size_t)32 << 20;
    size_t *a = malloc(n * sizeof(size_t));
    if (a == NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        a[i] = i;
    /* Sattolo's shuffle: one cycle through every slot. */
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = xorshift() % i;
        size_t tmp = a[i];
        a[i] = a[j];
        a[j] = tmp;
    }
    size_t p = 0;
    double t0 = now_s();
    for (int i = 0; i < 2000000; i++)
        p = a[p];
    double el = now_s() - t0;
    free(a);
    return p == (size_t)-1 ? 0 : el / 2e6 * 1e9;
}

int main(int argc, char **argv)
{
    size_t sizes[8] = {1000, 100000, 1000000};
    size_t nsizes = 3;
    int rounds = 20;
    const char *only = NULL;
    size_t hot = 0;
    bool pipelines_only = false;
    int c;
    static const struct option opts[] = {{"series", required_argument, NULL, 's'},
                                         {"rounds", required_argument, NULL, 'r'},
                                         {"only", required_argument, NULL, 'o'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"hot", required_argument, NULL, 'h'},
                                         {"pipelines-only", no_argument, NULL, 'P'},
                                         {"step", required_argument, NULL, 't'},
                                         {"skip", required_argument, NULL, 'k'},
                                         {NULL, 0, NULL, 0}};
    while ((c = getopt_long(argc, argv, "s:r:o:b:h:Pt:k:", opts, NULL)) != -1) {
        if (c == 's') {
            nsizes = 0;
            for (char *tok = strtok(optarg, ","); tok && nsizes < 8; tok = strtok(NULL, ","))
                sizes[nsizes++] = strtoul(tok, NULL, 10);
        } else if (c == 'r') {
            rounds = atoi(optarg);
        } else if (c == 'o') {
            only = optarg;
        } else if (c == 'b') {
            batch = strtoul(optarg, NULL, 10);
            batch = batch < 1 ? 1 : batch;
        } else if (c == 'h') {
            hot = strtoul(optarg, NULL, 10);
        } else if (c == 'P') {
            pipelines_only = true;
        } else if (c == 't') {
            step_s = atof(optarg);
        } else if (c == 'k') {
            skip = atoi(optarg);
        } else {
            fprintf(stderr,
                    "usage: bench-filters [--series N,N,...] [--rounds R] [--only SUBSTR] "
                    "[--batch N] [--hot POINTS] [--pipelines-only] [--step S] [--skip R]\n");
            return 1;
        }
    }
    size_t max = 0;
    for (size_t i = 0; i < nsizes; i++)
        max = sizes[i] > max ? sizes[i] : max;
    hosts = calloc(max, sizeof(*hosts));
    perm = malloc(max * sizeof(*perm));
    for (size_t i = 0; i < max; i++)
        snprintf(hosts[i], sizeof(hosts[i]), "host%07u.example", (unsigned)(i % 10000000));

    if (hot > 0) {
        printf("One series, state in cache (%zu points after %zu of warm-up)\n\n", hot, hot / 2);
        printf("| pipeline | ns per point |\n| --- | ---: |\n");
        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
            if (only == NULL || strstr(cases[k].name, only) != NULL)
                run_hot(&cases[k], hot);
        printf("\n");
    }
    if (pipelines_only)
        goto pipelines;
    printf("Dependent random memory access over 256 MiB on this machine: %.0f ns\n\n",
           random_access_ns());
    printf("Series table (24-byte state; key \"hostNNNNNNN.example/cpu-0/cpu-idle\")\n\n");
    printf(
        "| series | ns per insert | ns per lookup (random order) | bytes per series | found |\n");
    printf("| ---: | ---: | ---: | ---: | ---: |\n");
    for (size_t i = 0; i < nsizes; i++) {
        for (size_t k = 0; k < sizes[i]; k++)
            perm[k] = (uint32_t)k;
        for (size_t k = sizes[i] - 1; k > 0; k--) {
            size_t j = xorshift() % (k + 1);
            uint32_t tmp = perm[k];
            perm[k] = perm[j];
            perm[j] = tmp;
        }
        bench_table(sizes[i]);
    }
pipelines:
    printf("\nPipelines (%d rounds %g s apart: the first creates the series; ns per point of the "
           "others%s; %zu value list%s per call)\n\n",
           rounds, step_s, skip > 0 ? " after the skipped ones" : "", batch, batch == 1 ? "" : "s");
    printf("| pipeline | series | ns per point, first round | ns per point | bytes per series |\n");
    printf("| --- | ---: | ---: | ---: | ---: |\n");
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        if (only && strstr(cases[k].name, only) == NULL)
            continue;
        for (size_t i = 0; i < nsizes; i++) {
            for (size_t s = 0; s < sizes[i]; s++)
                perm[s] = (uint32_t)s;
            run_case(&cases[k], sizes[i], rounds);
        }
    }
    free(hosts);
    free(perm);
    return 0;
}
