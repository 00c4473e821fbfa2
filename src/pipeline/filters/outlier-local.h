/* SPDX-License-Identifier: MIT */
/* outlier's local model (guarantee 19): a robust line through the points around one point. */
#ifndef KTS_OUTLIER_LOCAL_H
#define KTS_OUTLIER_LOCAL_H

#include <stdbool.h>
#include <stddef.h>

enum { KTS_LOCAL_MAX = 16 };

/*
 * Robust line through (pos[k], v[k]), k < n (2 <= n <= KTS_LOCAL_MAX, pos ascending): slope =
 * median of the pairwise slopes (Theil-Sen, `pairs`) or the slope between the medians of the
 * first and the last third (Tukey's resistant line); centre = median of v[k] - slope * pos[k]
 * (the line's value at position 0); scale = 1.4826 * median |residual|.
 */
void kts_local_fit(const double *pos, const double *v, size_t n, bool pairs, double *centre,
                   double *slope, double *scale);

/*
 * Guarantee 19's test. v[0..nb) are the good raw values before x (positions -nb..-1, oldest
 * first), v[nb..n) the values known after it (positions 1, 2, ...). With the line through all
 * of them (x excluded) and s = max(dsc, share * scale) (at least 1 when `whole`), x deviates when
 * |x - line(0)| > threshold * s (*lim). Returns the index (>= nb) of the first value after x
 * back within *lim of the line, when x deviates and at most maxlen values deviate on x's side
 * (x included) before it; -1 otherwise, also when a value before that deviates on the other
 * side (no return to the line: nothing to interpolate towards).
 */
long kts_local_run(const double *v, size_t nb, size_t n, double x, double dsc, double share,
                   double threshold, bool whole, size_t maxlen, double *lim);

#endif
