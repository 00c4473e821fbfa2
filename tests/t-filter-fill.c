/* SPDX-License-Identifier: MIT */
/* fill: tests named after the guarantees in src/pipeline/filters/fill.c. */
#include "filter-harness.h"
#include "tap.h"

static struct kts_point ipt(double t, double v)
{
    struct kts_point p = fh_point(t, v);
    p.interval = KTS_TIME_FROM_DOUBLE(10);
    return p;
}

int main(void)
{
    plan(15);
    struct fh *h = fh_filter_new("fill", "MaxGap 3");
    struct kts_point p = ipt(100, 0);
    fh_push(h, &p);
    p = ipt(140, 4);
    is_int(fh_push(h, &p), 4, "1. three missing intervals: three filled points + the point");
    is_double(fh_t(&h->out[0]), 110, 1e-6, "1. first filled at previous + I");
    is_double(h->out[1].value, 2, 0, "3. linear interpolation");
    ok(h->out[2].flags & KTS_PT_FILLED, "2. filled points are flagged");
    ok(!(h->out[3].flags & KTS_PT_FILLED), "2. the real point last, not flagged");
    is_uint(h->st.filled, 3, "2. counted");
    p = ipt(190, 9);
    is_int(fh_push(h, &p), 1, "1. a gap of 4 missing intervals is left alone");
    p = ipt(201, 9);
    is_int(fh_push(h, &p), 1, "3. jitter below half an interval never fills");
    p = ipt(214, 9);
    is_int(fh_push(h, &p), 1, "3. 1.3 intervals is no gap either");
    /* 4. NaN */
    p = ipt(224, NAN);
    fh_push(h, &p);
    p = ipt(254, 1);
    is_int(fh_push(h, &p), 1, "4. no fill next to a NaN");
    /* 5. late */
    p = ipt(230, 1);
    is_int(fh_push(h, &p), 1, "5. late point passes without filling");
    p = ipt(274, 3);
    is_int(fh_push(h, &p), 2, "5. reference point unchanged by the late one");
    fh_free(h);
    h = fh_filter_new("fill", "Method \"previous\"\nInterval 5");
    fh_step(h, 0, 7);
    fh_step(h, 15, 9);
    ok(h->n == 3 && h->out[0].value == 7 && h->out[1].value == 7,
       "3. previous repeats the last value");
    fh_free(h);
    /* 6. no interval */
    h = fh_filter_new("fill", "");
    fh_step(h, 0, 1);
    is_int(fh_step(h, 100, 2), 1, "6. without an interval nothing is filled");
    is_int(h->state_size, 24, "7. state is 24 bytes");
    fh_free(h);
    return done_testing();
}
