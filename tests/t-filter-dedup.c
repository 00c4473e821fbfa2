/* SPDX-License-Identifier: MIT */
/* dedup: tests named after the guarantees in src/pipeline/filters/dedup.c. */
#include "filter-harness.h"
#include "tap.h"

static struct kts_point pt_iv(double t, double v, double iv)
{
    struct kts_point p = fh_point(t, v);
    p.interval = KTS_TIME_FROM_DOUBLE(iv);
    return p;
}

int main(void)
{
    plan(28);
    struct fh *h = fh_filter_new("dedup", "");
    ok(h != NULL, "dedup configures with defaults");
    is_int(h->state_size, 24, "state without suppression is 24 bytes");

    /* 1. exact duplicate of the newest */
    struct kts_point p = pt_iv(100, 1, 10);
    is_int(fh_push(h, &p), 1, "1. first point passes");
    is_int(fh_push(h, &p), 0, "1. same timestamp again is dropped");
    is_uint(h->st.dropped, 1, "1. counted as dropped");

    /* 2. reordering within 64 intervals */
    for (int i = 1; i <= 10; i++) {
        p = pt_iv(100 + 10 * i, i, 10);
        fh_push(h, &p);
    }
    p = pt_iv(150, 5, 10);
    is_int(fh_push(h, &p), 0, "2. redelivery 5 intervals back is dropped");
    fh_reset(h);
    p = pt_iv(100, 0, 10);
    fh_push(h, &p);
    p = pt_iv(120, 2, 10);
    fh_push(h, &p);
    p = pt_iv(110, 1, 10);
    is_int(fh_push(h, &p), 1, "2. a late first-time point passes");
    is_uint(h->st.late, 1, "2. counted as late");
    is_int(fh_push(h, &p), 0, "2. its redelivery is dropped");
    p = pt_iv(120 - 630, 0, 10);
    fh_reset(h);
    for (int i = 0; i < 100; i++) {
        p = pt_iv(1000 + 10 * i, i, 10);
        fh_push(h, &p);
    }
    p = pt_iv(1000 + 10 * 99 - 630, 0, 10);
    is_int(fh_push(h, &p), 0, "2. 63 intervals back, already seen: dropped");

    /* 3. beyond the window */
    p = pt_iv(1000 + 10 * 99 - 640, 0, 10);
    is_int(fh_push(h, &p), 0, "3. 64 intervals back: dropped by default");
    is_uint(h->st.beyond, 1, "3. counted as beyond");
    fh_free(h);
    h = fh_filter_new("dedup", "Beyond \"pass\"");
    p = pt_iv(2000, 0, 10);
    fh_push(h, &p);
    p = pt_iv(1000, 0, 10);
    is_int(fh_push(h, &p), 1, "3. Beyond pass lets it through");

    /* 4. jitter below a quarter interval is exact */
    fh_reset(h);
    double ts[] = {100.0, 110.2, 119.8, 130.24, 139.9, 150.1};
    for (int i = 0; i < 6; i++) {
        p = pt_iv(ts[i], i, 10);
        fh_push(h, &p);
    }
    int redeliv = 0;
    for (int i = 0; i < 5; i++) {
        p = pt_iv(ts[i], i, 10);
        redeliv += (int)fh_push(h, &p);
    }
    is_int(redeliv, 0, "4. jittered redeliveries are all recognised");
    p = pt_iv(146.0, 9, 10);
    is_int(fh_push(h, &p), 1, "4. a point less than half an interval behind is not a duplicate");
    fh_free(h);

    /* 5. interval from the spacing when the point has none */
    h = fh_filter_new("dedup", "");
    fh_step(h, 100, 0);
    fh_step(h, 110, 1);
    fh_step(h, 130, 3);
    is_int(fh_step(h, 120, 2), 1, "5. without an interval, the spacing is used: late point passes");
    is_int(fh_step(h, 120, 2), 0, "5. and its redelivery is dropped");

    /* 6. a long gap clears the bitmap */
    fh_reset(h);
    p = pt_iv(100, 0, 10);
    fh_push(h, &p);
    p = pt_iv(120, 0, 10);
    fh_push(h, &p);
    p = pt_iv(120 + 10 * 100, 0, 10);
    fh_push(h, &p);
    p = pt_iv(110, 0, 10);
    is_int(fh_push(h, &p), 0, "6. after a gap of 100 intervals the old points are beyond");

    /* 7. NaN deduplicated by timestamp */
    fh_reset(h);
    fh_step(h, 10, NAN);
    is_int(fh_step(h, 10, NAN), 0, "7. NaN duplicate dropped");
    fh_free(h);

    /* 8. suppression with heartbeat */
    h = fh_filter_new("dedup", "SuppressUnchanged true\nHeartbeat 60");
    size_t emitted[12];
    double vals[12] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2};
    for (int i = 0; i < 12; i++)
        emitted[i] = fh_step(h, 10.0 * i, vals[i]);
    is_int(emitted[0], 1, "8. first point of a run emitted");
    is_int(emitted[1] + emitted[2] + emitted[3], 0, "8. unchanged values held back");
    is_int(emitted[5], 2, "8. a change emits the held last point of the flat run first");
    fh_step(h, 10.0 * 4, 1); /* duplicate of the held point: dropped by dedup part */
    is_int(emitted[5 + 6], 1, "8. heartbeat: unchanged value re-emitted after 60 s");
    fh_step(h, 120, 2);
    is_int(fh_flush(h), 1, "8. flush emits the held point");
    is_double(fh_t(&h->out[0]), 120, 1e-6, "8. it is the last one of the run");
    fh_free(h);
    h = fh_filter_new("dedup", "SuppressUnchanged true\nHeartbeat 0");
    fh_step(h, 10, NAN);
    is_int(fh_step(h, 20, NAN), 0, "7. with suppression a NaN after a NaN is unchanged (held)");
    is_int(fh_step(h, 30, 1), 2, "7. a number after NaNs releases the last NaN, then itself");
    fh_free(h);
    /* 9. */
    h = fh_filter_new("dedup", "SuppressUnchanged true");
    is_int(fh_step(h, 1e9, 5), 1, "9. no warm-up: the first point of a series passes");
    fh_free(h);
    return done_testing();
}
