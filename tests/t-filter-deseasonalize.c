/* SPDX-License-Identifier: MIT */
/* deseasonalize: tests named after the guarantees in src/pipeline/filters/deseasonalize.c. */
#include "filter-harness.h"
#include "tap.h"

#define DAY 86400.0
#define STEP 300.0

static double gauss(unsigned *seed)
{
    double s = 0;
    for (int i = 0; i < 12; i++)
        s += rand_r(seed) / (double)RAND_MAX;
    return s - 6;
}

static double pattern(double t)
{
    return 10 + 5 * sin(2 * M_PI * t / DAY) +
           (fmod(t, DAY) > 40000 && fmod(t, DAY) < 45000 ? 4 : 0);
}

int main(void)
{
    plan(20);
    struct fh *h = fh_filter_new("deseasonalize", "Period 86400\nBins 288");
    ok(h != NULL, "configures");
    is_int(h->state_size, 48 + 4 * 288 + 144, "1. state is 48 + 4.5 * Bins bytes");

    unsigned seed = 3;
    int warming_day0 = 0, warming_after = 0, n_day0 = 0;
    double sq = 0, sq_raw = 0;
    int n_eval = 0;
    double spike_t = 4 * DAY + 100 * STEP;
    double echo = 0, before = 0;
    for (int i = 0; i < (int)(6 * DAY / STEP); i++) {
        double t = i * STEP;
        double noise = 0.5 * gauss(&seed);
        double v = pattern(t) + noise;
        if (t == STEP * 100)
            v += 50; /* a spike during warm-up */
        if (t == spike_t)
            v += 50; /* and one afterwards */
        fh_step(h, t, v);
        if (t < DAY) {
            n_day0++;
            warming_day0 += (h->out[0].flags & KTS_PT_WARMING) != 0;
        } else {
            warming_after += (h->out[0].flags & KTS_PT_WARMING) != 0;
        }
        if (t >= 2 * DAY && t != spike_t) {
            sq += pow(h->out[0].value - 10 - noise, 2);
            sq_raw += pow(v - 10 - noise, 2);
            n_eval++;
        }
        if (t == DAY + 100 * STEP)
            before = h->out[0].value - 10 - noise;
        if (t == spike_t + DAY)
            echo = h->out[0].value - 10 - noise;
    }
    is_int(warming_day0, n_day0, "3. every point of the first period passes flagged warming");
    is_int(warming_after, 0, "3. none after one period");
    double rmse = sqrt(sq / n_eval), rmse_raw = sqrt(sq_raw / n_eval);
    ok(rmse < 0.45, "2. adjusted output is level + noise: RMSE of the pattern left %.3f (raw %.3f)",
       rmse, rmse_raw);
    ok(fabs(before) < 1.5, "3. a spike in the first period is not learned: error a day later %.3f",
       before);
    ok(fabs(echo) < 1.0, "4. a spike does not echo one period later: error %.3f", echo);

    /* 5. gap then level shift: followed after a few points */
    double t = 6 * DAY + 2 * DAY;
    double last = 0;
    for (int i = 0; i < 12; i++, t += STEP) {
        fh_step(h, t, pattern(t) + 20);
        last = h->out[0].value;
    }
    ok(fabs(last - 30) < 1.5, "5. after a 2-day gap the level re-anchors: %.3f", last);
    /* 6. NaN */
    fh_step(h, t, NAN);
    ok(h->n == 1 && isnan(h->out[0].value), "6. NaN passes through");
    /* 7. late points are not learned */
    struct fh *a = fh_filter_new("deseasonalize", "Period 3600\nBins 12");
    struct fh *b = fh_filter_new("deseasonalize", "Period 3600\nBins 12");
    double va = 0, vb = 0;
    int same = 1;
    for (int i = 0; i < 200; i++) {
        double tt = 60.0 * i, v = sin(tt / 600.0) + (i % 7) * 0.1;
        fh_step(a, tt, v);
        va = a->out[0].value;
        fh_step(b, tt, v);
        vb = b->out[0].value;
        same &= memcmp(&va, &vb, sizeof(va)) == 0;
        if (i % 10 == 5) {
            fh_step(b, tt - 30, 100);
            same &= b->n == 1;
        }
    }
    ok(same, "7. late points do not change later outputs");
    ok(b->st.late == 20, "7. they are counted late (%llu)", (unsigned long long)b->st.late);
    fh_free(a);
    fh_free(b);
    /* any period */
    a = fh_filter_new("deseasonalize", "Period 604800\nBins 168");
    int w = 0;
    for (int i = 0; i < 24 * 8; i++) {
        fh_step(a, 3600.0 * i, 1);
        w += (a->out[0].flags & KTS_PT_WARMING) != 0;
    }
    is_int(w, 24 * 7, "weekly period: one week of warm-up");
    fh_free(a);
    a = fh_filter_new("deseasonalize", "Period 10\nBins 65536");
    ok(a != NULL, "tiny bins accepted as long as they are not empty");
    fh_free(a);
    a = fh_filter_new("deseasonalize", "Period 1\nBins 65536");
    ok(a != NULL, "Period 1 with 65536 bins: bins of 2^-16 s");
    fh_free(a);
    fh_free(h);
    h = fh_filter_new("deseasonalize", "Output \"residual\"\nPeriod 3600\nBins 12");
    for (int i = 0; i < 200; i++)
        fh_step(h, 60.0 * i, 5 + sin(60.0 * i / 3600 * 2 * M_PI));
    ok(fabs(h->out[0].value) < 0.2, "2. residual output is near 0 on a clean pattern");
    fh_free(h);

    /* 9. phase scales: noise sd 4 from 09:00 to 17:00, 1 otherwise, on a pattern with a level
     * drift; after 6 days each point carries the noise of its time of day. */
    h = fh_filter_new("deseasonalize", "Period 86400\nBins 288");
    seed = 11;
    double day_sum = 0, night_sum = 0, warm_scale = 0;
    int n_day = 0, n_night = 0;
    for (int i = 0; i < (int)(8 * DAY / STEP); i++) {
        double tt = i * STEP, tod = fmod(tt, DAY);
        bool busy = tod >= 9 * 3600 && tod < 17 * 3600;
        fh_step(h, tt, pattern(tt) + tt / DAY * 3 + (busy ? 4 : 1) * gauss(&seed));
        if (tt < DAY)
            warm_scale += h->out[0].scale;
        if (tt >= 6 * DAY && (tod < 8 * 3600 || tod >= 18 * 3600)) {
            night_sum += h->out[0].scale;
            n_night++;
        }
        if (tt >= 6 * DAY && tod >= 10 * 3600 && tod < 16 * 3600) {
            day_sum += h->out[0].scale;
            n_day++;
        }
    }
    double day_sc = day_sum / n_day, night_sc = night_sum / n_night;
    is_double(warm_scale, 0, 0, "9. no phase scale while warming up");
    ok(fabs(day_sc - 4) < 0.8, "9. busy hours carry their noise scale: %.3f (sd 4)", day_sc);
    ok(fabs(night_sc - 1) < 0.25, "9. night hours carry theirs: %.3f (sd 1)", night_sc);
    /* A spike enters two residual differences (into it and out of it): its phase group's scale
     * grows by at most two clipped updates, (1 + g (Clip / E[min(|Z|, Clip)] - 1))^2 = 1.81. */
    fh_step(h, 8 * DAY, pattern(8 * DAY) + 24 + 1000);
    double before9 = h->out[0].scale;
    fh_step(h, 8 * DAY + STEP, pattern(8 * DAY + STEP) + 24);
    fh_step(h, 8 * DAY + 2 * STEP, pattern(8 * DAY + 2 * STEP) + 24);
    double after9 = h->out[0].scale;
    ok(after9 <= before9 * 1.82,
       "9. a spike of 1000 sd moves its phase scale %.3f -> %.3f "
       "(at most x1.81)",
       before9, after9);
    is_int(h->state_size, 48 + 4 * 288 + 144, "9. phase scales take no extra state");
    fh_free(h);
    return done_testing();
}
