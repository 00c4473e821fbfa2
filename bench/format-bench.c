/* SPDX-License-Identifier: MIT */
/*
 * format-bench: cost of kts_format_encode(), the decoder and kts_series_message_key() for typical
 * value lists. Built on demand, not part of `make check`:
 *
 *   make bench/format-bench && bench/format-bench [ITERATIONS] [CASE]
 *
 * Prints, per case, the median wall-clock ns per operation over 21 batches (after a warm-up
 * batch). With CASE, runs only that case, which is how docs/PERFORMANCE.md measures instruction
 * counts:
 *
 *   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=run_case \
 *       bench/format-bench 100000 enc-ts-1ds        # Ir / 100000 = instructions per encode
 *
 * Cases: enc-{ts,cd}-{1ds,2ds,load}, dec-{ts,cd}-{1ds,2ds,load}, key-series.
 * The value lists are what collectd's cpu (1 DERIVE), interface if_octets (2 DERIVE) and load
 * (3 GAUGE with fractions) plugins dispatch.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kts_buf.h"
#include "kts_format.h"

static struct kts_ds ds_cpu[1] = {
    {.name = "value", .type = KTS_DS_DERIVE, .value.derive = 1234567}};
static struct kts_ds ds_if[2] = {
    {.name = "rx", .type = KTS_DS_DERIVE, .value.derive = 98765432109},
    {.name = "tx", .type = KTS_DS_DERIVE, .value.derive = 1234567890},
};
static struct kts_ds ds_load[3] = {
    {.name = "shortterm", .type = KTS_DS_GAUGE, .value.gauge = 0.15},
    {.name = "midterm", .type = KTS_DS_GAUGE, .value.gauge = 0.27},
    {.name = "longterm", .type = KTS_DS_GAUGE, .value.gauge = 1.05},
};

#define TIME ((UINT64_C(1700000000) << 30) + 123456789)
#define INTERVAL (UINT64_C(10) << 30)

static struct kts_vl vl_cpu = {.host = "web-01.example.com",
                               .plugin = "cpu",
                               .plugin_instance = "3",
                               .type = "cpu",
                               .type_instance = "idle",
                               .time = TIME,
                               .interval = INTERVAL,
                               .ds_len = 1,
                               .ds = ds_cpu};
static struct kts_vl vl_if = {.host = "web-01.example.com",
                              .plugin = "interface",
                              .plugin_instance = "eth0",
                              .type = "if_octets",
                              .time = TIME,
                              .interval = INTERVAL,
                              .ds_len = 2,
                              .ds = ds_if};
static struct kts_vl vl_load = {.host = "web-01.example.com",
                                .plugin = "load",
                                .type = "load",
                                .time = TIME,
                                .interval = INTERVAL,
                                .ds_len = 3,
                                .ds = ds_load};

enum op { OP_ENC, OP_DEC, OP_KEY };

struct bcase {
    const char *name;
    enum op op;
    enum kts_format fmt;
    struct kts_vl *vl;
    struct kts_buf msg; /* decode cases: the message */
};

static struct bcase cases[] = {
    {"enc-ts-1ds", OP_ENC, KTS_FORMAT_TS, &vl_cpu, {0}},
    {"enc-ts-2ds", OP_ENC, KTS_FORMAT_TS, &vl_if, {0}},
    {"enc-ts-load", OP_ENC, KTS_FORMAT_TS, &vl_load, {0}},
    {"enc-cd-1ds", OP_ENC, KTS_FORMAT_COLLECTD, &vl_cpu, {0}},
    {"enc-cd-2ds", OP_ENC, KTS_FORMAT_COLLECTD, &vl_if, {0}},
    {"enc-cd-load", OP_ENC, KTS_FORMAT_COLLECTD, &vl_load, {0}},
    {"dec-ts-1ds", OP_DEC, KTS_FORMAT_TS, &vl_cpu, {0}},
    {"dec-ts-2ds", OP_DEC, KTS_FORMAT_TS, &vl_if, {0}},
    {"dec-ts-load", OP_DEC, KTS_FORMAT_TS, &vl_load, {0}},
    {"dec-cd-1ds", OP_DEC, KTS_FORMAT_COLLECTD, &vl_cpu, {0}},
    {"dec-cd-2ds", OP_DEC, KTS_FORMAT_COLLECTD, &vl_if, {0}},
    {"dec-cd-load", OP_DEC, KTS_FORMAT_COLLECTD, &vl_load, {0}},
    {"key-series", OP_KEY, KTS_FORMAT_TS, &vl_cpu, {0}},
};

static volatile uint64_t sink;

static int count_cb(struct kts_vl *vl, void *opaque)
{
    (void)opaque;
    sink += vl->ds[0].value.counter;
    return 0;
}

/* The measured loop: `n` operations of case `c`. Not inlined, so callgrind can toggle on it. */
__attribute__((noinline)) void run_case(struct bcase *c, size_t n, struct kts_buf *out,
                                        struct kts_decoder *d);
__attribute__((noinline)) void run_case(struct bcase *c, size_t n, struct kts_buf *out,
                                        struct kts_decoder *d)
{
    char key[512];
    for (size_t i = 0; i < n; i++) {
        switch (c->op) {
        case OP_ENC:
            kts_buf_reset(out);
            if (kts_format_encode(out, c->vl, c->fmt) != 0)
                abort();
            sink += out->len;
            break;
        case OP_DEC:
            if (kts_decoder_decode(d, c->msg.data, c->msg.len, NULL, count_cb, NULL, NULL, 0) != 0)
                abort();
            break;
        case OP_KEY:
            sink += kts_series_message_key(key, sizeof(key), c->vl, KTS_KEY_SERIES);
            break;
        }
    }
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    size_t iters = argc > 1 ? strtoull(argv[1], NULL, 10) : 2100000;
    const char *only = argc > 2 ? argv[2] : NULL;
    struct kts_buf out = {0};
    struct kts_decoder *d = kts_decoder_create(0);
    if (d == NULL || iters < 21)
        return 1;
    printf("%-12s %10s %10s %s\n", "case", "ns/op", "bytes", "(median of 21 batches)");
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct bcase *c = &cases[k];
        if (only != NULL && strcmp(only, c->name) != 0)
            continue;
        if (kts_format_encode(&c->msg, c->vl, c->fmt) != 0)
            return 1;
        size_t batch = iters / 21;
        double t[21];
        if (only == NULL)
            run_case(c, batch, &out, d); /* warm-up */
        for (int b = 0; b < 21; b++) {
            double t0 = now_ns();
            run_case(c, batch, &out, d);
            t[b] = (now_ns() - t0) / (double)batch;
        }
        qsort(t, 21, sizeof(t[0]), cmp_double);
        printf("%-12s %10.1f %10zu\n", c->name, t[10], c->msg.len);
        kts_buf_fini(&c->msg);
    }
    kts_buf_fini(&out);
    kts_decoder_destroy(d);
    return 0;
}
