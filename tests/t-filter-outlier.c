/* SPDX-License-Identifier: MIT */
/* outlier: tests named after the guarantees in src/pipeline/filters/outlier.c. */
#include "filter-harness.h"
#include "filters/outlier-local.h"
#include "tap.h"

static double noise(unsigned *seed)
{
    /* Sum of 12 uniforms - 6: roughly standard normal, deterministic. */
    double s = 0;
    for (int i = 0; i < 12; i++)
        s += rand_r(seed) / (double)RAND_MAX;
    return s - 6;
}

/* 19. WarmModel "local": warming points judged against a robust local line. Returns the
 * replacements at spike positions and elsewhere (ok() checks inside). */
static void warm_local(const char *opts, double spike, int *hits, int *fps, int *range_bad)
{
    struct fh *h = fh_filter_new("outlier", opts);
    unsigned seed = 17;
    double vals[3000];
    *hits = *fps = *range_bad = 0;
    for (int i = 0; i < 3000; i++) {
        /* a ramp (0.3 per point, noise sd 1) with a step of +40 at 2000 that stays; spikes
         * every 50 points, one point wide, two points wide every 100 */
        int m = i % 100;
        bool spk = m == 25 || m == 75 || m == 76;
        double v = 100 + 0.3 * i + noise(&seed) + (i >= 2000 ? 40 : 0) +
                   (spk ? (m == 25 ? spike : -spike) : 0);
        vals[i] = v;
        struct kts_point wp = fh_point(10.0 * i, v);
        wp.flags |= KTS_PT_WARMING;
        fh_push(h, &wp);
        for (size_t k = 0; k < h->n; k++) {
            if (!(h->out[k].flags & KTS_PT_REPLACED))
                continue;
            int j = (int)(fh_t(&h->out[k]) / 10), mj = j % 100;
            bool at = mj == 25 || mj == 75 || mj == 76;
            *hits += at;
            *fps += !at;
            /* guarantee 10: within the raw values around it (3 on either side) */
            double lo = INFINITY, hi = -INFINITY;
            for (int d = -3; d <= 3; d++) {
                double u = j + d >= 0 && j + d < i + 1 && d != 0 ? vals[j + d] : vals[j];
                lo = d != 0 && u < lo ? u : lo;
                hi = d != 0 && u > hi ? u : hi;
            }
            *range_bad += !(h->out[k].value >= lo && h->out[k].value <= hi);
        }
    }
    ok(h->st.warming == 3000, "19. every point counted warming");
    fh_free(h);
}

/* 20. LocalFallback: a fast sine the trailing window cannot follow, spikes of 7 noise sd. */
static void fallback_run(const char *opts, int *hits, int *fps, int *range_bad)
{
    struct fh *h = fh_filter_new("outlier", opts);
    unsigned seed = 23;
    double vals[4000];
    *hits = *fps = *range_bad = 0;
    for (int i = 0; i < 4000; i++) {
        bool spk = i % 50 == 25;
        vals[i] = 100 + 20 * sin(i / 15.0) + noise(&seed) + (spk ? (i % 100 == 25 ? 7 : -7) : 0);
        fh_step(h, 10.0 * i, vals[i]);
        for (size_t k = 0; k < h->n; k++) {
            if (!(h->out[k].flags & KTS_PT_REPLACED))
                continue;
            int j = (int)(fh_t(&h->out[k]) / 10);
            *hits += j % 50 == 25;
            *fps += j % 50 != 25;
            double lo = vals[j - 1] < vals[j + 1] ? vals[j - 1] : vals[j + 1];
            double hi = vals[j - 1] < vals[j + 1] ? vals[j + 1] : vals[j - 1];
            *range_bad += !(h->out[k].value >= lo && h->out[k].value <= hi);
        }
    }
    fh_free(h);
}

int main(void)
{
    plan(76);
    struct fh *h = fh_filter_new("outlier", "Window 600\nMaxPoints 31\nMinPoints 5");
    ok(h != NULL, "hampel configures");
    int warming = 0;
    for (int i = 0; i < 5; i++) {
        fh_step(h, 10.0 * i, 10 + (i % 2));
        warming += (h->out[0].flags & KTS_PT_WARMING) != 0;
    }
    is_int(warming, 5, "6. the first MinPoints points pass flagged warming");
    fh_step(h, 50, 11);
    ok(!(h->out[0].flags & (KTS_PT_WARMING | KTS_PT_REPLACED)), "1. a normal point is kept");
    fh_step(h, 60, 100);
    ok(h->out[0].flags & KTS_PT_REPLACED, "1. a spike is an outlier");
    is_double(h->out[0].value, 10.5, 0,
              "5. replace uses the window median (even count: mean of two)");
    fh_step(h, 70, 10);
    is_double(h->out[0].value, 10, 0, "4. the spike did not enter the window (next point kept)");
    /* 3. integer flat series */
    fh_reset(h);
    for (int i = 0; i < 20; i++)
        fh_step(h, 10.0 * i, 5);
    fh_step(h, 200, 8);
    ok(!(h->out[0].flags & KTS_PT_REPLACED), "3. flat integer series: a step of 3 is not flagged");
    fh_step(h, 210, 10);
    ok(h->out[0].flags & KTS_PT_REPLACED, "3. a jump of 5 is");
    /* 3. the phase scale a deseasonalize filter put on the point is a floor (PhaseScale 0.7) */
    fh_reset(h);
    unsigned seed3 = 7;
    for (int i = 0; i < 20; i++)
        fh_step(h, 10.0 * i, 100 + 0.01 * noise(&seed3));
    struct kts_point pp = fh_point(200, 100.5);
    fh_push(h, &pp);
    ok(h->out[0].flags & KTS_PT_REPLACED, "3. without a phase scale 0.5 is a spike on noise 0.01");
    pp = fh_point(210, 100.5);
    pp.scale = 1; /* this time of day is noisy: 0.7 * 1 * Threshold 3.5 = 2.45 */
    fh_push(h, &pp);
    ok(!(h->out[0].flags & KTS_PT_REPLACED), "3. with phase scale 1 it is not");
    pp = fh_point(220, 103);
    pp.scale = 1;
    fh_push(h, &pp);
    ok(h->out[0].flags & KTS_PT_REPLACED, "3. but 3 is (> 0.7 * 1 * 3.5)");
    struct fh *h0 = fh_filter_new("outlier", "Window 600\nMaxPoints 31\nMinPoints 5\nPhaseScale 0");
    for (int i = 0; i < 20; i++)
        fh_step(h0, 10.0 * i, 100 + 0.01 * noise(&seed3));
    pp = fh_point(200, 100.5);
    pp.scale = 1;
    fh_push(h0, &pp);
    ok(h0->out[0].flags & KTS_PT_REPLACED, "3. PhaseScale 0 ignores the phase scale");
    fh_free(h0);
    /* 4. level shift accepted after MaxRun */
    fh_reset(h);
    unsigned seed = 1;
    for (int i = 0; i < 30; i++)
        fh_step(h, 10.0 * i, 100 + noise(&seed));
    int replaced = 0;
    for (int i = 30; i < 45; i++) {
        fh_step(h, 10.0 * i, 200 + noise(&seed));
        replaced += (h->out[0].flags & KTS_PT_REPLACED) != 0;
    }
    is_int(replaced, 5, "4. a level shift: MaxRun (5) points replaced, then followed");
    /* 6. window empties: warm-up again */
    fh_step(h, 10000, 1);
    ok(h->out[0].flags & KTS_PT_WARMING, "6. after a gap longer than Window: warming again");
    /* 7. NaN */
    fh_step(h, 10010, NAN);
    ok(h->n == 1 && isnan(h->out[0].value), "7. NaN passes through");
    /* 8. late */
    fh_reset(h);
    for (int i = 0; i < 10; i++)
        fh_step(h, 10.0 * i, 1 + 0.1 * (i % 3));
    fh_step(h, 45, 50);
    ok(h->out[0].flags & KTS_PT_REPLACED, "8. a late spike is judged against the window");
    is_uint(h->st.late, 1, "8. counted late");
    fh_free(h);

    /* action drop / mark */
    h = fh_filter_new("outlier", "Action \"drop\"");
    for (int i = 0; i < 10; i++)
        fh_step(h, 10.0 * i, 1 + 0.1 * (i % 3));
    is_int(fh_step(h, 100, 50), 0, "5. drop removes the outlier");
    fh_free(h);
    h = fh_filter_new("outlier", "Action \"mark\"");
    for (int i = 0; i < 10; i++)
        fh_step(h, 10.0 * i, 1 + 0.1 * (i % 3));
    fh_step(h, 100, 50);
    ok((h->out[0].flags & KTS_PT_MARKED) && h->out[0].value == 50, "5. mark keeps the value");
    fh_free(h);

    /* 2. robust and ewz on Gaussian noise: few false positives, spikes caught */
    const char *methods[] = {"Method \"robust\"\nTau 3000", "Method \"ewz\"\nTau 3000"};
    const char *mnames[] = {"robust", "ewz"};
    for (int m = 0; m < 2; m++) {
        h = fh_filter_new("outlier", methods[m]);
        seed = 7;
        int fp = 0, tp = 0;
        for (int i = 0; i < 5000; i++) {
            bool spike = i > 100 && i % 250 == 0;
            fh_step(h, 10.0 * i, 50 + noise(&seed) + (spike ? 12 : 0));
            bool flagged = (h->out[0].flags & KTS_PT_REPLACED) != 0;
            fp += flagged && !spike;
            tp += flagged && spike;
        }
        ok(fp < 10, "2. %s: %d false positives in 5000 Gaussian points", mnames[m], fp);
        is_int(tp, 19, "2. %s: every 12-sigma spike caught", mnames[m]);
        fh_free(h);
    }
    h = fh_filter_new("outlier", "Method \"ewz\"\nMinPoints 3");
    fh_step(h, 0, 1);
    fh_step(h, 10, 2);
    fh_step(h, 20, 3);
    fh_step(h, 30, 2);
    is_double(h->out[0].value, 2, 0, "2. ewz judges after MinPoints");
    fh_step(h, 40, 3000);
    is_double(h->out[0].value, 2, 1e-9, "5. ewz replaces with the expected value");
    fh_free(h);
    /* 9. points still warming in an earlier filter */
    h = fh_filter_new("outlier", "MinPoints 3");
    for (int i = 0; i < 10; i++)
        fh_step(h, 10.0 * i, 1);
    struct kts_point w = fh_point(100, 1000);
    w.flags |= KTS_PT_WARMING;
    fh_push(h, &w);
    ok(h->n == 1 && h->out[0].value == 1000 && !(h->out[0].flags & KTS_PT_REPLACED),
       "9. a point flagged warming upstream passes unjudged");
    fh_step(h, 110, 1);
    ok(!(h->out[0].flags & (KTS_PT_REPLACED | KTS_PT_WARMING)), "9. and was not learned");
    fh_free(h);
    /* 10. the replacement stays within the last 8 raw values (value + offset) */
    h = fh_filter_new("outlier", "Window 600\nMaxPoints 31\nMinPoints 5");
    double rawmax = 0;
    for (int i = 0; i < 20; i++) {
        struct kts_point r = fh_point(10.0 * i, 10 + 0.1 * (i % 3));
        r.offset = 50 + (i % 8); /* raw 60 .. 67.2 */
        fh_push(h, &r);
        if (i >= 12)
            rawmax = fmax(rawmax, r.value + r.offset);
    }
    struct kts_point sp = fh_point(200, 40);
    sp.offset = 100; /* median 10.1 + offset 100 = 110.1 in raw units: above every raw value */
    fh_push(h, &sp);
    ok((h->out[0].flags & KTS_PT_REPLACED) && h->out[0].value + h->out[0].offset == rawmax,
       "10. Delay 0: the median is clamped to the last 8 raw values (got %g)",
       h->out[0].value + h->out[0].offset);
    sp = fh_point(210, -40);
    sp.offset = -100; /* median - 100: would be negative; every raw value was positive */
    fh_push(h, &sp);
    ok((h->out[0].flags & KTS_PT_REPLACED) && h->out[0].value + h->out[0].offset >= 60,
       "10. a series never negative gets no negative replacement (got %g)",
       h->out[0].value + h->out[0].offset);
    fh_free(h);
    h = fh_filter_new("outlier", "Method \"ewz\"\nMinPoints 3");
    for (int i = 0; i < 10; i++) {
        struct kts_point r = fh_point(10.0 * i, 2 + 0.01 * (i % 2));
        r.offset = 1;
        fh_push(h, &r);
    }
    sp = fh_point(100, 3000);
    sp.offset = -10; /* expected 2 - 10 = -8 raw; raw values were 3 .. 3.01 */
    fh_push(h, &sp);
    ok((h->out[0].flags & KTS_PT_REPLACED) && h->out[0].value + h->out[0].offset >= 3,
       "10. ewz: clamped as well (got %g)", h->out[0].value + h->out[0].offset);
    fh_free(h);

    /* 12./13. Delay: judged once the next points are known */
    struct kts_point got[64];
    size_t ngot = 0;
    h = fh_filter_new("outlier", "Window 600\nMaxPoints 31\nMinPoints 5\nDelay 1\nMaxRun 1");
    ok(h != NULL, "12. Delay 1 configures");
    for (int i = 0; i < 20; i++) {
        fh_step(h, 10.0 * i, 10 + 0.1 * (i % 3));
        ngot += h->n;
    }
    is_int((int)ngot, 19, "12. Delay 1: the output lags one point");
    fh_step(h, 200, 100); /* spike between 10.1 (t 190) and 12 (t 210)... */
    fh_step(h, 210, 10.3);
    ok(h->n == 1 && (h->out[0].flags & KTS_PT_REPLACED) && fh_t(&h->out[0]) == 200,
       "12. the spike comes out replaced with its own timestamp");
    is_double(h->out[0].value, (10.1 + 10.3) / 2, 1e-12,
              "13. replaced by the mean of its two raw neighbours");
    /* 11. a deviating point between its neighbours in raw units (a ramp) is kept */
    struct kts_point r1 = fh_point(220, 30), r2 = fh_point(230, 10.2);
    r2.offset = 40; /* raw: 10.3 -> 30 -> 50.2 */
    fh_push(h, &r1);
    fh_push(h, &r2);
    ok(h->n == 1 && !(h->out[0].flags & KTS_PT_REPLACED) && h->out[0].value == 30,
       "11. a deviating point between its raw neighbours (a ramp) is kept");
    /* 14. deviating from the window's median but on its neighbours' line: kept */
    struct kts_point r3 = fh_point(240, 30), r4 = fh_point(250, 10.1);
    r3.offset = 20.5; /* raw 50.2 -> 50.5 -> 50.2: above both, by less than 5 scales */
    r4.offset = 40.1;
    fh_push(h, &r3);
    ok(h->n == 1 && fh_t(&h->out[0]) == 230 && !(h->out[0].flags & KTS_PT_REPLACED),
       "11. the ramp's end point is kept too");
    fh_push(h, &r4);
    ok(h->n == 1 && fh_t(&h->out[0]) == 240 && !(h->out[0].flags & KTS_PT_REPLACED) &&
           h->out[0].value == 30,
       "14. a point on its neighbours' line is kept though it deviates from the median");
    is_int((int)fh_flush(h), 1, "12. flush releases the held point");
    ok(fh_t(&h->out[0]) == 250 && h->out[0].value == 10.1, "12. in order, unchanged");
    fh_free(h);

    /* 12. Delay 2, MaxRun 2: a two-point spike is replaced whole, a level shift never */
    h = fh_filter_new("outlier",
                      "Window 600\nMaxPoints 31\nMinPoints 10\nThreshold 5\nDelay 2\nMaxRun 2");
    seed = 3;
    ngot = 0;
    int nrep = 0;
    double vals[80];
    for (int i = 0; i < 80; i++) {
        vals[i] = 100 + noise(&seed) + (i == 40 || i == 41 ? 30 : 0) + (i >= 60 ? 50 : 0);
        fh_step(h, 10.0 * i, vals[i]);
        for (size_t k = 0; k < h->n && ngot < 64; k++)
            got[ngot++] = h->out[k];
        for (size_t k = 0; k < h->n; k++)
            nrep += (h->out[k].flags & KTS_PT_REPLACED) != 0;
    }
    fh_flush(h);
    ok(ngot >= 62 && (got[40].flags & KTS_PT_REPLACED) && (got[41].flags & KTS_PT_REPLACED),
       "12. both points of a two-point spike are replaced");
    ok(fabs(got[40].value - (vals[39] + (vals[42] - vals[39]) / 3)) < 1e-9 &&
           fabs(got[41].value - (vals[39] + 2 * (vals[42] - vals[39]) / 3)) < 1e-9,
       "13. by interpolation between the good points on either side");
    is_int(nrep, 2, "12. the level shift at point 60 is adopted: no replacement after it");
    is_int((int)h->n, 2, "12. flush releases the two held points");
    fh_free(h);
    /* 15. points still warming upstream are judged by their neighbours (Delay > 0) */
    h = fh_filter_new("outlier", "Threshold 5\nDelay 2\nMaxRun 2");
    seed = 11;
    ngot = 0;
    nrep = 0;
    int nwarm = 0;
    for (int i = 0; i < 200; i++) {
        /* a steep ramp (2 per point, noise sd 1), spikes at 50 (one point) and 120-121 (two) */
        double v =
            100 + 2 * i + noise(&seed) + (i == 50 ? 25 : 0) + (i == 120 || i == 121 ? -30 : 0);
        struct kts_point wp = fh_point(10.0 * i, v);
        wp.flags |= KTS_PT_WARMING;
        fh_push(h, &wp);
        for (size_t k = 0; k < h->n && ngot < 64; k++)
            got[ngot++] = h->out[k];
        for (size_t k = 0; k < h->n; k++) {
            bool rep = (h->out[k].flags & KTS_PT_REPLACED) != 0;
            double tk = fh_t(&h->out[k]);
            nrep += rep;
            nwarm += rep && (tk == 500 || tk == 1200 || tk == 1210);
        }
    }
    is_int(nrep, 3, "15. warming points: the one- and two-point spikes are replaced, nothing else");
    is_int(nwarm, 3, "15. at their timestamps");
    ok(h->st.warming == 200, "15. every point counted warming");
    fh_free(h);
    /* 16. hidden in a wide window, but a spike by its neighbours */
    h = fh_filter_new("outlier", "Window 600\nMaxPoints 31\nMinPoints 10\nThreshold 5\nDelay 1");
    seed = 5;
    int n16 = 0, ok16 = 0;
    for (int i = 0; i < 200; i++) {
        /* a slow sine (amplitude 40, 200 points): a window of 31 points spans ~35, a step ~1.3 */
        double base = 100 + 40 * sin(2 * M_PI * i / 200);
        fh_step(h, 10.0 * i, base + 0.3 * noise(&seed) + (i == 150 ? 30 : 0));
        for (size_t k = 0; k < h->n; k++) {
            n16 += (h->out[k].flags & KTS_PT_REPLACED) != 0;
            if (fh_t(&h->out[k]) == 1500)
                ok16 = (h->out[k].flags & KTS_PT_REPLACED) && fabs(h->out[k].value - 60) < 2;
        }
    }
    ok(ok16,
       "16. a spike within the window's spread but far from its neighbours is replaced "
       "(%d replaced in all: a trailing window lags the sine)",
       n16);
    fh_free(h);
    /* 17. DelayTime: a held point is judged once a point DelayTime after it is known */
    h = fh_filter_new("outlier", "Window 600\nMaxPoints 31\nMinPoints 5\nThreshold 5\nDelay 2\n"
                                 "MaxRun 1\nDelayTime 10");
    ok(h != NULL, "17. DelayTime with Delay configures");
    seed = 7;
    ngot = 0;
    int lag_ok = 1, rep17 = 0;
    for (int i = 0; i < 40; i++) {
        double v17 = 50 + 0.2 * noise(&seed) + (i == 30 ? 20 : 0);
        vals[i] = v17;
        fh_step(h, 10.0 * i, v17);
        /* 10 s apart, DelayTime 10: one point held, not two */
        if (i >= 1 && !(h->n == 1 && fh_t(&h->out[0]) == 10.0 * (i - 1)))
            lag_ok = 0;
        for (size_t k = 0; k < h->n; k++)
            if (h->out[k].flags & KTS_PT_REPLACED) {
                rep17++;
                ok(fh_t(&h->out[k]) == 300 &&
                       fabs(h->out[k].value - (vals[29] + vals[31]) / 2) < 1e-9,
                   "17. the one-point spike is replaced by its neighbours' mean");
            }
    }
    ok(lag_ok, "17. the output lags by one point (10 s), not Delay's two");
    is_int(rep17, 1, "17. one replacement");
    fh_step(h, 1000, 50); /* a gap longer than DelayTime releases the held point at once */
    ok(h->n == 1 && fh_t(&h->out[0]) == 390, "17. a point after a gap releases the held one");
    fh_free(h);
    h = fh_filter_new("outlier", "DelayTime 60");
    ok(h == NULL, "17. DelayTime needs Delay");
    /* 18. DiffScale: the MAD of 21 points scatters (and holds any misfit); the difference scale
     * of ~32 points is steadier, so fewer spikes of 6-7 noise sd hide behind a high MAD */
    int n18[2], fp18[2];
    for (int cap = 0; cap < 2; cap++) {
        h = fh_filter_new("outlier", cap ? "Window 600\nMaxPoints 21\nMinPoints 10\nThreshold 5\n"
                                           "Delay 2\nMaxRun 2\nDiffScale 1.2"
                                         : "Window 600\nMaxPoints 21\nMinPoints 10\nThreshold 5\n"
                                           "Delay 2\nMaxRun 2");
        seed = 13;
        n18[cap] = fp18[cap] = 0;
        for (int i = 0; i < 4000; i++) {
            /* white noise sd 1; a spike of 6.5 every 50 points, up or down */
            bool spk = i % 50 == 25;
            fh_step(h, 10.0 * i, 100 + noise(&seed) + (spk ? (i % 100 == 25 ? 6.5 : -6.5) : 0));
            for (size_t k = 0; k < h->n; k++)
                if (h->out[k].flags & KTS_PT_REPLACED) {
                    bool at = (int)(fh_t(&h->out[k]) / 10) % 50 == 25;
                    n18[cap] += at;
                    fp18[cap] += !at;
                }
        }
        fh_free(h);
    }
    ok(n18[1] > n18[0], "18. DiffScale 1.2 replaces more of the 80 spikes: %d, without %d", n18[1],
       n18[0]);
    ok(fp18[1] <= fp18[0] + 1, "18. and (almost) no more false positives: %d, without %d", fp18[1],
       fp18[0]);
    /* 19. WarmModel local against the neighbour rule on spikes of 6 noise sd */
    int hit19[2], fp19[2], bad19[2];
    warm_local("Threshold 5\nDelay 2\nMaxRun 2", 6, &hit19[0], &fp19[0], &bad19[0]);
    warm_local("Threshold 5\nDelay 2\nMaxRun 2\nWarmModel \"local\"", 6, &hit19[1], &fp19[1],
               &bad19[1]);
    ok(hit19[1] > hit19[0] + 10,
       "19. the local line finds more of the 90 spike points: %d, the neighbours %d", hit19[1],
       hit19[0]);
    ok(fp19[1] <= 2, "19. with (almost) no false positive on the ramp and the step: %d (%d)",
       fp19[1], fp19[0]);
    is_int(bad19[1], 0, "19. and every replacement within the 6 raw values around it");
    warm_local("Threshold 5\nDelay 2\nMaxRun 2\nWarmModel \"local\"", 30, &hit19[1], &fp19[1],
               &bad19[1]);
    is_int(hit19[1], 90, "19. spikes of 30 sd: all 90 points replaced");
    is_int(fp19[1], 0, "19. and nothing else (the step at 2000 is kept)");
    /* 20. LocalFallback: where the window's spread exceeds the line's, the line judges too */
    int hit20[2], fp20[2], bad20[2];
    fallback_run("Window 600\nMaxPoints 21\nMinPoints 10\nThreshold 5\nDelay 2\nMaxRun 2",
                 &hit20[0], &fp20[0], &bad20[0]);
    fallback_run("Window 600\nMaxPoints 21\nMinPoints 10\nThreshold 5\nDelay 2\nMaxRun 2\n"
                 "LocalFallback 1",
                 &hit20[1], &fp20[1], &bad20[1]);
    ok(hit20[1] > hit20[0] + 10, "20. the fallback finds more of the 80 spikes: %d, without %d",
       hit20[1], hit20[0]);
    ok(fp20[1] <= fp20[0] + 1, "20. and (almost) no more false positives: %d, without %d", fp20[1],
       fp20[0]);
    is_int(bad20[1], 0, "20. every replacement between its two raw neighbours");
    h = fh_filter_new("outlier", "LocalFallback 101");
    ok(h == NULL, "20. a LocalFallback out of range is refused");
    /* 19. a count series near zero: replacements never negative (guarantee 10) */
    h = fh_filter_new("outlier", "Threshold 5\nDelay 2\nMaxRun 2\nWarmModel \"local\"");
    seed = 29;
    int nrep19 = 0, neg19 = 0;
    for (int i = 0; i < 2000; i++) {
        double v = floor(2 + noise(&seed));
        v = (v < 0 ? 0 : v) + (i % 50 == 25 ? 40 : 0);
        struct kts_point wp = fh_point(60.0 * i, v);
        wp.flags |= KTS_PT_WARMING;
        fh_push(h, &wp);
        for (size_t k = 0; k < h->n; k++)
            if (h->out[k].flags & KTS_PT_REPLACED) {
                nrep19++;
                neg19 += h->out[k].value < 0;
            }
    }
    fh_free(h);
    ok(nrep19 >= 35, "19. counts near zero: the spikes of 40 are replaced (%d of 40)", nrep19);
    is_int(neg19, 0, "19. and no replacement is negative");
    /* 19. the run ends back near the line, not off it on the other side: on the line
     * v = position, x and the next value 20 below it, then one 28 above (a real drop after a
     * gap, then a spike up, as in the demo): no spike; 0.5 above instead: a run of 2 */
    double lv[10] = {-8, -7, -6, -5, -4, -3, -2, -1, 1 - 23, 2 + 28}, lim19;
    is_int((int)kts_local_run(lv, 8, 10, -20, 1, 0.5, 5, false, 2, &lim19), -1,
           "19. a run followed by a value off the line on the other side is no spike");
    lv[9] = 2.5;
    is_int((int)kts_local_run(lv, 8, 10, -20, 1, 0.5, 5, false, 2, &lim19), 9,
           "19. followed by a value back near the line it is (ends at index 9, limit %g)", lim19);
    h = fh_filter_new("outlier", "WarmModel \"profile\"");
    ok(h == NULL, "19. an unknown WarmModel is refused");
    h = fh_filter_new("outlier", "Method \"robust\"\nDelay 1");
    ok(h == NULL, "12. Delay needs Method hampel");

    h = fh_filter_new("outlier", "MinPoints 40\nMaxPoints 31");
    ok(h == NULL, "MinPoints above MaxPoints is refused");
    h = fh_filter_new("outlier", "Threshold 0.1");
    ok(h == NULL, "a Threshold out of range is refused");
    h = fh_filter_new("outlier", "Methd \"x\"");
    ok(h == NULL, "an unknown option is refused");
    return done_testing();
}
