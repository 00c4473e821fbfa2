/*
 * bench-filters: ns per point and bytes per series for the series table, each filter and a full
 * pipeline, with many series in random order. Built on demand, not part of `make check`:
 *
 *   make bench/bench-filters && bench/bench-filters [--series 1000,100000,1000000] [--rounds 20]
 *
 * Each round sends one value list per series, series in a fresh random order, timestamps
 * 300 s apart per series (a 5-minute gauge with a daily pattern, or a counter for the full
 * pipeline). Times only kts_pipeline_process(); prints a Markdown table (docs/PERFORMANCE.md).
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
    {"smooth (sma, 64 points)", false, "<Filter \"smooth\">\nMethod \"sma\"\nWindow 3600\n</Filter>\n"},
    {"smooth (holt)", false, "<Filter \"smooth\">\nMethod \"holt\"\n</Filter>\n"},
    {"deseasonalize (288 bins)", false, "<Filter \"deseasonalize\">\n</Filter>\n"},
    {"outlier (hampel, 31 points)", false, "<Filter \"outlier\">\nWindow 86400\n</Filter>\n"},
    {"outlier (robust)", false, "<Filter \"outlier\">\nMethod \"robust\"\n</Filter>\n"},
    {"fill", false, "<Filter \"fill\">\n</Filter>\n"},
    {"full: dedup, difference, deseasonalize, outlier (hampel 31), smooth", true,
     "<Filter \"dedup\">\n</Filter>\n<Filter \"difference\">\n</Filter>\n"
     "<Filter \"deseasonalize\">\n</Filter>\n<Filter \"outlier\">\nWindow 86400\n</Filter>\n"
     "<Filter \"smooth\">\nMethod \"ema\"\n</Filter>\n"},
    {"full without a profile (deseasonalize left out)", true,
     "<Filter \"dedup\">\n</Filter>\n<Filter \"difference\">\n</Filter>\n"
     "<Filter \"outlier\">\nMethod \"robust\"\n</Filter>\n<Filter \"smooth\">\nMethod \"ema\"\n</Filter>\n"},
};

static char (*hosts)[32];
static uint32_t *perm;

static void run_case(const struct bench_case *bc, size_t nseries, int rounds)
{
    char text[2048], err[512];
    snprintf(text, sizeof(text), "<Pipeline \"bench\">\nMemoryLimit 0\nExpireAfter 0\n%s</Pipeline>\n",
             bc->body);
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
    strcpy(vl.plugin, "cpu");
    strcpy(vl.plugin_instance, "0");
    strcpy(vl.type, bc->counter ? "cpu" : "gauge");
    strcpy(vl.type_instance, "idle");
    vl.interval = KTS_TIME_FROM_S(300);
    vl.ds = &ds;
    vl.ds_len = 1;
    ds.type = bc->counter ? KTS_DS_COUNTER : KTS_DS_GAUGE;
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
            memcpy(vl.host, hosts[s], sizeof(hosts[s]));
            double tt = 1.4e9 + 300.0 * r + (s % 300);
            vl.time = KTS_TIME_FROM_DOUBLE(tt);
            double v = 50 + 20 * sin(tt / 13751.0) + (double)(xorshift() % 1000) / 500.0;
            if (bc->counter)
                ds.value.counter = (uint64_t)r * 1000 + (xorshift() % 500) + s;
            else
                ds.value.gauge = v;
            kts_pipeline_process(p, &vl, 1, sink_emit, &sum);
        }
        double el = now_s() - t0;
        if (r == 0)
            first_round = el;
        else
            total += el;
    }
    struct kts_pipeline_stats st;
    kts_pipeline_get_stats(p, &st);
    printf("| %s | %zu | %.0f | %.0f | %.0f |\n", bc->name, nseries,
           first_round / (double)nseries * 1e9,
           rounds > 1 ? total / ((double)nseries * (rounds - 1)) * 1e9 : 0.0,
           (double)st.bytes / (double)st.series);
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
    int c;
    static const struct option opts[] = {{"series", required_argument, NULL, 's'},
                                         {"rounds", required_argument, NULL, 'r'},
                                         {"only", required_argument, NULL, 'o'},
                                         {NULL, 0, NULL, 0}};
    while ((c = getopt_long(argc, argv, "s:r:o:", opts, NULL)) != -1) {
        if (c == 's') {
            nsizes = 0;
            for (char *tok = strtok(optarg, ","); tok && nsizes < 8; tok = strtok(NULL, ","))
                sizes[nsizes++] = strtoul(tok, NULL, 10);
        } else if (c == 'r') {
            rounds = atoi(optarg);
        } else if (c == 'o') {
            only = optarg;
        } else {
            fprintf(stderr, "usage: bench-filters [--series N,N,...] [--rounds R] [--only SUBSTR]\n");
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

    printf("Dependent random memory access over 256 MiB on this machine: %.0f ns\n\n",
           random_access_ns());
    printf("Series table (24-byte state; key \"hostNNNNNNN.example/cpu-0/cpu-idle\")\n\n");
    printf("| series | ns per insert | ns per lookup (random order) | bytes per series | found |\n");
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
    printf("\nPipelines (%d rounds: the first creates the series; ns per point of the others)\n\n",
           rounds);
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
