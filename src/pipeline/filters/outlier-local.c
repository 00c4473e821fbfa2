/* SPDX-License-Identifier: MIT */
/*
 * outlier's local model: a robust line through the last good raw values and the points after
 * the judged one (Theil-Sen while warming: at most 120 pairwise slopes; Tukey's resistant line
 * after the warm-up, where it runs for many points: four medians of a third), median intercept,
 * with the MAD of the residuals as its scale. Guarantees 19 and 20 of the outlier filter
 * (1-18: src/pipeline/filters/outlier.c):
 *
 * 19. Local model (Delay > 0, WarmModel "local"; default "neighbours" keeps guarantee 15): a
 *     point flagged warming upstream is judged against a robust local line instead: Theil-Sen
 *     (median pairwise slope, median intercept) through the last 8 good raw values and the
 *     held points after it, positions by order; s = max(EW difference scale of guarantee 15,
 *     half the line's residual scale 1.4826 * MAD; a local spread twice the EW scale is noise
 *     the EW scale has not caught up with), at least 1 for whole numbers. A spike: the point
 *     lies more than Threshold * s off the line, the points after it on the same side off it
 *     too, and one within min(MaxRun, Delay) points comes back within Threshold * s of the
 *     line (one off it on the other side is no return: not a spike); judged once 8 differences
 *     are in. Guarantees 10, 11, 13 and 14 hold (replaced by interpolation between the good
 *     points around the run, kept when between them or near their line); the rest pass flagged
 *     warming. Work: 45 pairwise slopes per warming point with Delay 2; no extra state.
 * 20. Fallback (Delay > 0, LocalFallback r > 0), after the warm-up: when the window's scale
 *     (1.4826 * MAD of the deseasonalized window: what the profile leaves around the point)
 *     exceeds r times the local line's (guarantee 19's with Tukey's resistant line and all of
 *     its MAD scale), the profile explains the neighbourhood worse than the line (a weekly
 *     pattern, a drift, a level shift not yet learned): the point is judged by the line first,
 *     a spike by it is replaced as in 19; otherwise it is judged by the window as before. The
 *     line is fitted only for a point more than Threshold * the difference scale from the last
 *     good point, when the window's scale exceeds r times the difference scale (the line's
 *     scale is at least that). No extra state.
 */
#include "outlier-local.h"

#include <float.h>
#include <math.h>

/* Median of a[0..n-1] (n >= 1), sorting a in place. */
static double median_sort(double *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        double x = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > x) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
    return (n & 1) ? a[n / 2] : (a[n / 2 - 1] + a[n / 2]) / 2;
}

void kts_local_fit(const double *pos, const double *v, size_t n, bool pairs, double *centre,
                   double *slope, double *scale)
{
    double r[KTS_LOCAL_MAX], g[KTS_LOCAL_MAX * (KTS_LOCAL_MAX - 1) / 2];
    double b = 0;
    size_t k3 = n / 3, ng = 0;
    if (pairs) { /* Theil-Sen: the median of the pairwise slopes */
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                if (pos[j] != pos[i])
                    g[ng++] = (v[j] - v[i]) / (pos[j] - pos[i]);
        b = ng > 0 ? median_sort(g, ng) : 0;
    } else if (k3 > 0) {
        /* Tukey's resistant line: the slope between the medians of the first and the last
         * third (pos ascending) */
        double m[4];
        for (int side = 0; side < 2; side++) {
            size_t from = side == 0 ? 0 : n - k3;
            for (size_t k = 0; k < k3; k++)
                g[k] = v[from + k];
            m[side] = median_sort(g, k3);
            for (size_t k = 0; k < k3; k++)
                g[k] = pos[from + k];
            m[2 + side] = median_sort(g, k3);
        }
        b = m[3] > m[2] ? (m[1] - m[0]) / (m[3] - m[2]) : 0;
    }
    for (size_t k = 0; k < n; k++)
        r[k] = v[k] - b * pos[k];
    double a = median_sort(r, n);
    for (size_t k = 0; k < n; k++)
        r[k] = fabs(v[k] - b * pos[k] - a);
    *centre = a;
    *slope = b;
    *scale = 1.4826 * median_sort(r, n);
}

long kts_local_run(const double *v, size_t nb, size_t n, double x, double dsc, double share,
                   double threshold, bool whole, size_t maxlen, double *lim)
{
    double pos[KTS_LOCAL_MAX], centre, slope, sc;
    for (size_t k = 0; k < n; k++)
        pos[k] = k < nb ? (double)k - (double)nb : (double)(k - nb + 1);
    *lim = INFINITY;
    if (n <= nb || nb < 2)
        return -1;
    kts_local_fit(pos, v, n, share < 1, &centre, &slope, &sc);
    /* The EW difference scale, or `share` of the line's residual scale when that is larger. */
    sc *= share;
    if (sc < dsc)
        sc = dsc;
    if (whole && sc < 1)
        sc = 1;
    if (sc < fabs(centre) * 4 * DBL_EPSILON)
        sc = fabs(centre) * 4 * DBL_EPSILON;
    if (sc < DBL_MIN)
        sc = DBL_MIN;
    *lim = threshold * sc;
    double e = x - centre;
    if (fabs(e) <= *lim)
        return -1;
    /* The run: the values after x off the line on x's side; the first one back near the line
     * ends it. One off the line on the other side is no return: the run would be replaced by
     * an interpolation towards it (a real drop after a gap, then a spike up, was). */
    size_t len = 1;
    for (size_t k = nb; k < n; k++) {
        double ek = v[k] - (centre + slope * pos[k]);
        if (fabs(ek) <= *lim)
            return len <= maxlen ? (long)k : -1;
        if ((ek > 0) != (e > 0))
            return -1;
        len++;
    }
    return -1;
}
