/* SPDX-License-Identifier: MIT */
/* smooth: tests named after the guarantees in src/pipeline/filters/smooth.c. */
#include "filter-harness.h"
#include "tap.h"

int main(void)
{
    plan(16);
    struct fh *h = fh_filter_new("smooth", "Method \"sma\"\nWindow 30\nMaxPoints 8");
    ok(h != NULL, "sma configures");
    fh_step(h, 10, 1);
    fh_step(h, 20, 2);
    fh_step(h, 30, 3);
    is_double(h->out[0].value, 2, 0, "1. mean of the window");
    fh_step(h, 40, 4);
    is_double(h->out[0].value, 3, 0, "1. window (t-30, t]: the point at t-30 has left");
    fh_step(h, 100, 10);
    is_double(h->out[0].value, 10, 0, "1. after a gap longer than the window: only the new point");
    /* compensation: huge and tiny values */
    fh_reset(h);
    fh_step(h, 1, 1e16);
    fh_step(h, 2, 1);
    fh_step(h, 3, -1e16);
    fh_step(h, 40, 1);
    is_double(h->out[0].value, 1, 0, "1. compensated sum: no cancellation error");
    fh_reset(h);
    for (int i = 0; i < 20; i++)
        fh_step(h, 1.0 * i, i);
    is_double(h->out[0].value, (12 + 19) / 2.0, 0, "1. MaxPoints bounds the window (last 8)");

    /* 4. NaN */
    fh_step(h, 21, NAN);
    ok(h->n == 1 && isnan(h->out[0].value), "4. NaN passes as NaN");
    fh_step(h, 22, 20);
    is_double(h->out[0].value, (15 + 20 + 19 + 18 + 17 + 16 + 14 + 13) / 8.0, 0,
              "4. NaN did not enter the window");
    /* 5. late point inserted in order */
    fh_reset(h);
    fh_step(h, 10, 1);
    fh_step(h, 30, 3);
    fh_step(h, 20, 5);
    is_double(h->out[0].value, 3, 0, "5. late point within the window joins it");
    is_uint(h->st.late, 1, "5. counted late");
    fh_free(h);

    /* 2. EMA */
    h = fh_filter_new("smooth", "Method \"ema\"\nTau 10");
    fh_step(h, 0, 0);
    is_double(h->out[0].value, 0, 0, "6. first point initialises");
    fh_step(h, 10, 1);
    is_double(h->out[0].value, 1 - exp(-1), 1e-15, "2. alpha = 1 - exp(-dt/tau)");
    fh_step(h, 1000, 5);
    is_double(h->out[0].value, 5, 1e-12, "2. after a long gap the output follows the new value");
    fh_step(h, 999, 100);
    is_double(h->out[0].value, 5, 1e-12, "5. late point leaves EMA state alone");
    fh_free(h);

    /* 3. Holt follows a ramp without lag once the trend is learned */
    h = fh_filter_new("smooth", "Method \"holt\"\nTau 20\nTrendTau 50");
    for (int i = 0; i <= 500; i++)
        fh_step(h, 10.0 * i, 2.0 * i);
    is_double(h->out[0].value, 1000, 1e-6, "3. holt tracks a linear ramp");
    fh_free(h);
    h = fh_filter_new("smooth", "Method \"ema\"\nTau 20");
    for (int i = 0; i <= 500; i++)
        fh_step(h, 10.0 * i, 2.0 * i);
    ok(h->out[0].value < 999, "3. (an EMA lags behind the same ramp)");
    fh_free(h);
    return done_testing();
}
