/* outlier: tests named after the guarantees in src/filters/outlier.c. */
#include "filter-harness.h"
#include "tap.h"

static double noise(unsigned *seed)
{
    /* Sum of 12 uniforms - 6: roughly standard normal, deterministic. */
    double s = 0;
    for (int i = 0; i < 12; i++)
        s += rand_r(seed) / (double)RAND_MAX;
    return s - 6;
}

int main(void)
{
    plan(30);
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
    is_double(h->out[0].value, 10.5, 0, "5. replace uses the window median (even count: mean of two)");
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
    h = fh_filter_new("outlier", "MinPoints 40\nMaxPoints 31");
    ok(h == NULL, "MinPoints above MaxPoints is refused");
    h = fh_filter_new("outlier", "Threshold 0.1");
    ok(h == NULL, "a Threshold out of range is refused");
    h = fh_filter_new("outlier", "Methd \"x\"");
    ok(h == NULL, "an unknown option is refused");
    return done_testing();
}
