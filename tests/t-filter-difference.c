/* SPDX-License-Identifier: MIT */
/* difference: tests named after the guarantees in src/pipeline/filters/difference.c. */
#include "filter-harness.h"
#include "tap.h"

static struct kts_point cpt(double t, int type, uint64_t raw)
{
    struct kts_point p = fh_point(t, 0);
    p.type = (uint8_t)type;
    p.raw.counter = raw;
    switch (type) {
    case KTS_DS_DERIVE:
        p.value = (double)p.raw.derive;
        break;
    case KTS_DS_GAUGE:
        p.raw.gauge = (double)raw;
        p.value = (double)raw;
        break;
    default:
        p.value = (double)raw;
    }
    return p;
}

int main(void)
{
    plan(27);
    struct fh *h = fh_filter_new("difference", "");
    struct kts_point p;

    /* 1. rate semantics per DS type */
    p = cpt(0, KTS_DS_COUNTER, 1000);
    is_int(fh_push(h, &p), 0, "4. first counter point emits nothing");
    is_uint(h->st.warming, 1, "4. counted as warming");
    p = cpt(10, KTS_DS_COUNTER, 1500);
    fh_push(h, &p);
    is_double(h->out[0].value, 50, 0, "1. counter rate = increase / dt");
    ok(!(h->out[0].flags & KTS_PT_RAW) && h->out[0].type == KTS_DS_GAUGE, "1. output is a gauge");
    fh_reset(h);
    p = cpt(0, KTS_DS_DERIVE, 100);
    fh_push(h, &p);
    p = cpt(4, KTS_DS_DERIVE, (uint64_t)(int64_t)-100);
    fh_push(h, &p);
    is_double(h->out[0].value, -50, 0, "3. derive may decrease (signed), not a reset");
    fh_reset(h);
    p = cpt(0, KTS_DS_ABSOLUTE, 30);
    is_int(fh_push(h, &p), 0, "1. absolute: first point has no interval yet");
    p = cpt(10, KTS_DS_ABSOLUTE, 30);
    fh_push(h, &p);
    is_double(h->out[0].value, 3, 0, "1. absolute rate = value / dt");
    fh_reset(h);
    p = cpt(0, KTS_DS_GAUGE, 7);
    fh_push(h, &p);
    is_double(h->out[0].value, 7, 0, "1. rate passes gauges unchanged (as collectd)");
    fh_free(h);

    h = fh_filter_new("difference", "Method \"derivative\"");
    fh_step(h, 0, 10);
    fh_step(h, 5, 20);
    is_double(h->out[0].value, 2, 0, "1. derivative of a gauge");
    fh_free(h);
    h = fh_filter_new("difference", "Method \"difference\"");
    fh_step(h, 0, 10);
    fh_step(h, 5, 20);
    is_double(h->out[0].value, 10, 0, "1. difference of a gauge");
    fh_free(h);

    /* 2. wraps */
    h = fh_filter_new("difference", "Method \"difference\"");
    p = cpt(0, KTS_DS_COUNTER, 4294967000ULL);
    fh_push(h, &p);
    p = cpt(10, KTS_DS_COUNTER, 100);
    is_int(fh_push(h, &p), 1, "2. 32-bit wrap emits");
    is_double(h->out[0].value, 396, 0, "2. 32-bit wrap as counter_diff");
    fh_reset(h);
    p = cpt(0, KTS_DS_COUNTER, UINT64_MAX - 9);
    fh_push(h, &p);
    p = cpt(10, KTS_DS_COUNTER, 5);
    fh_push(h, &p);
    is_double(h->out[0].value, 15, 0, "2. 64-bit wrap as counter_diff");

    /* 3. resets */
    fh_reset(h);
    p = cpt(0, KTS_DS_COUNTER, 1000000);
    fh_push(h, &p);
    p = cpt(10, KTS_DS_COUNTER, 10);
    is_int(fh_push(h, &p), 0, "3. implausible decrease is a reset: nothing emitted");
    is_uint(h->st.resets, 1, "3. reset counted");
    p = cpt(20, KTS_DS_COUNTER, 30);
    fh_push(h, &p);
    is_double(h->out[0].value, 20, 0, "3. after a reset the new value is the reference");
    fh_free(h);
    h = fh_filter_new("difference", "Reset \"from-zero\"");
    p = cpt(0, KTS_DS_COUNTER, 1000000);
    fh_push(h, &p);
    p = cpt(10, KTS_DS_COUNTER, 100);
    fh_push(h, &p);
    is_double(h->out[0].value, 10, 0, "3. Reset from-zero: increase = new value");
    fh_free(h);
    h = fh_filter_new("difference", "MaxRate 1000");
    p = cpt(0, KTS_DS_COUNTER, 4294967000ULL);
    fh_push(h, &p);
    p = cpt(1, KTS_DS_COUNTER, 100000);
    is_int(fh_push(h, &p), 0, "3. a wrap above MaxRate is a reset");

    /* 5. late points */
    fh_free(h);
    h = fh_filter_new("difference", "Method \"derivative\"");
    fh_step(h, 10, 1);
    fh_step(h, 20, 2);
    is_int(fh_step(h, 15, 3), 0, "5. out-of-order point emits nothing");
    is_int(fh_step(h, 20, 3), 0, "5. duplicate timestamp emits nothing");
    is_uint(h->st.late, 2, "5. both counted late");
    fh_free(h);

    /* 6. NaN */
    h = fh_filter_new("difference", "Method \"derivative\"");
    fh_step(h, 0, 10);
    fh_step(h, 10, NAN);
    ok(h->n == 1 && isnan(h->out[0].value), "6. NaN in, NaN out");
    fh_step(h, 20, 30);
    is_double(h->out[0].value, 1, 0, "6. the next rate spans the NaN");
    fh_free(h);

    /* 7. seasonal lag */
    h = fh_filter_new("difference", "Method \"difference\"\nLagPoints 3");
    int outs = 0;
    for (int i = 0; i < 3; i++)
        outs += (int)fh_step(h, 10.0 * i, i * i);
    is_int(outs, 0, "7. LagPoints: nothing until N points are known");
    fh_step(h, 30, 9);
    is_double(h->out[0].value, 9 - 0, 0, "7. x(t) - x(t - 3 points)");
    fh_free(h);
    h = fh_filter_new("difference", "Method \"difference\"\nLag 100\nLagBins 10");
    for (int i = 0; i < 10; i++)
        fh_step(h, 10.0 * i + 1, i);
    fh_step(h, 101.5, 50);
    is_double(h->out[0].value, 50, 0, "7. Lag: x(t) - x(t - 100 s)");
    fh_free(h);
    /* a lag needs Method difference */
    h = fh_filter_new("difference", "Lag 100");
    ok(h == NULL, "7. Lag with Method rate is refused");
    return done_testing();
}
