/*
 * outlier: Hampel (rolling median and MAD), robust z-score (online Huber M-estimate of location
 * and scale) or EW z-score; action drop, replace or mark.
 *
 * Guarantees:
 *  1. Hampel: a point is an outlier when |x - median| > Threshold * scale, median and
 *     scale = 1.4826 * MAD taken over the accepted points of the window (newest - Window,
 *     newest] (at most MaxPoints of them; the point itself is not in its own window), exactly as
 *     recomputation from scratch would give (pandas' median definition for even counts).
 *  2. robust: location and scale are an exponentially weighted Huber M-estimate (residuals
 *     clipped at 2 scales; time constant Tau, alpha = 1 - exp(-dt/Tau)); ewz: exponentially
 *     weighted mean and standard deviation (time constant Tau). O(1), 32 bytes, no window.
 *  3. The scale used is at least MinScale, and at least 1 when every value in the state and the
 *     point itself are whole numbers (a flat integer series is not flagged for a step of 1:
 *     with the default Threshold it takes a jump of 4 to be an outlier), and never 0.
 *  4. Outliers never enter the filter's own state (window or estimates). After MaxRun
 *     consecutive outliers the following ones are accepted (kept and learned), so a level shift
 *     is followed instead of being flagged forever; MaxRun 0 disables that.
 *  5. Action drop removes the point; replace sets its value to the median (hampel) or the
 *     expected value (robust, ewz) and flags KTS_PT_REPLACED; mark keeps the value and flags
 *     KTS_PT_MARKED.
 *  6. Warm-up: until MinPoints points are in the window (hampel) or have been learned (robust,
 *     ewz), points pass unchanged flagged KTS_PT_WARMING; they are learned. An emptied window
 *     (gap longer than Window) warms up again.
 *  7. NaN passes through unchanged and is never learned.
 *  8. Out-of-order and duplicate timestamps are judged against the current state and counted
 *     in `late`; hampel learns them when they fall in the window, robust/ewz never do.
 *  9. A point an earlier filter flagged KTS_PT_WARMING (e.g. deseasonalize in its first period,
 *     whose values still carry the pattern) passes unchanged and is neither judged nor learned:
 *     it is not comparable with the points that follow.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kts_filter.h"
#include "kts_log.h"

enum { O_HAMPEL, O_ROBUST, O_EWZ };
enum { A_DROP, A_REPLACE, A_MARK };

struct outlier_conf {
    int method;
    int action;
    double window;
    int64_t max_points;
    int64_t min_points;
    double tau;
    double threshold;
    double min_scale;
    int64_t max_run;
    kts_time_t window_t; /* derived */
};

struct hampel_entry {
    kts_time_t t;
    double v;
};

/* Hampel: a time-ordered ring and the same values sorted. */
struct hampel_state {
    kts_time_t newest;
    uint32_t head, n;
    uint32_t nonint; /* values in the window that are not whole numbers */
    uint32_t run;
    /* struct hampel_entry e[max_points]; double sorted[max_points]; */
};

struct ew_state {
    kts_time_t last_t;
    double loc, scale; /* scale: robust scale or EW variance (ewz) */
    uint32_t n;        /* points learned, saturating */
    uint16_t run;      /* consecutive outliers, saturating */
    bool nonint;
};

static const char *const method_words[] = {"hampel", "robust", "ewz", NULL};
static const char *const action_words[] = {"drop", "replace", "mark", NULL};

static const struct kts_opt outlier_options[] = {
    {"Method", KTS_OPT_ENUM, offsetof(struct outlier_conf, method), "hampel", 0, 0, method_words,
     NULL, 0, "hampel: rolling median/MAD; robust: online Huber location/scale; ewz: EW mean/sd"},
    {"Action", KTS_OPT_ENUM, offsetof(struct outlier_conf, action), "replace", 0, 0, action_words,
     NULL, 0, "drop the outlier, replace it by the median/expected value, or mark it"},
    {"Threshold", KTS_OPT_DOUBLE, offsetof(struct outlier_conf, threshold), "3.5", 0.5, 1000, NULL,
     NULL, 0, "outlier when |x - centre| > Threshold * scale (scale ~ standard deviation)"},
    {"Window", KTS_OPT_DURATION, offsetof(struct outlier_conf, window), "3600", 1e-6, 1e9, NULL,
     NULL, 0, "hampel: window length in seconds of event time"},
    {"MaxPoints", KTS_OPT_INT, offsetof(struct outlier_conf, max_points), "31", 3, 4096, NULL,
     NULL, 0, "hampel: most points kept in the window (24 bytes each per series)"},
    {"MinPoints", KTS_OPT_INT, offsetof(struct outlier_conf, min_points), "5", 1, 4096, NULL, NULL,
     0, "points needed before judging (warm-up)"},
    {"Tau", KTS_OPT_DURATION, offsetof(struct outlier_conf, tau), "3600", 1e-6, 1e9, NULL, NULL, 0,
     "robust/ewz: time constant of location and scale in seconds"},
    {"MinScale", KTS_OPT_DOUBLE, offsetof(struct outlier_conf, min_scale), "0", 0, 1e300, NULL,
     NULL, 0, "smallest scale used (in the series' unit)"},
    {"MaxRun", KTS_OPT_INT, offsetof(struct outlier_conf, max_run), "5", 0, 65535, NULL, NULL, 0,
     "after this many consecutive outliers, accept the next ones as a level shift; 0 = never"},
    KTS_OPT_END,
};

static int outlier_prepare(void *vconf, const char *where)
{
    struct outlier_conf *c = vconf;
    c->window_t = KTS_TIME_FROM_DOUBLE(c->window);
    if (c->method == O_HAMPEL && c->min_points > c->max_points) {
        kts_log(KTS_LOG_ERR, "%s: MinPoints %lld is larger than MaxPoints %lld", where,
                (long long)c->min_points, (long long)c->max_points);
        return -EINVAL;
    }
    return 0;
}

static size_t outlier_state_size(const void *vconf)
{
    const struct outlier_conf *c = vconf;
    if (c->method == O_HAMPEL)
        return sizeof(struct hampel_state) +
               (size_t)c->max_points * (sizeof(struct hampel_entry) + sizeof(double));
    return sizeof(struct ew_state);
}

static size_t outlier_max_out(const void *vconf)
{
    (void)vconf;
    return 1;
}

static void outlier_init(const void *vconf, void *vstate)
{
    (void)vconf;
    (void)vstate;
}

static bool is_whole(double x)
{
    return x == floor(x) && fabs(x) < 9007199254740992.0;
}

static double scale_floor(const struct outlier_conf *c, double s, bool integers, double centre)
{
    if (s < c->min_scale)
        s = c->min_scale;
    if (integers && s < 1)
        s = 1;
    double tiny = fabs(centre) * 4 * DBL_EPSILON;
    if (s < tiny)
        s = tiny;
    if (s < DBL_MIN)
        s = DBL_MIN;
    return s;
}

/* Apply the action to an outlier. */
static void act(const struct outlier_conf *c, const struct kts_point *p, double expected,
                struct kts_out *out)
{
    struct kts_point o = *p;
    switch (c->action) {
    case A_DROP:
        out->stats->dropped++;
        return;
    case A_REPLACE:
        o.value = expected;
        o.flags = (uint16_t)((o.flags & ~KTS_PT_RAW) | KTS_PT_REPLACED);
        o.type = KTS_DS_GAUGE;
        out->stats->replaced++;
        break;
    default:
        o.flags |= KTS_PT_MARKED;
        out->stats->marked++;
        break;
    }
    kts_out_push(out, &o);
}

/* ------------------------------------------------------------------ hampel */

static struct hampel_entry *h_entries(struct hampel_state *s)
{
    return (struct hampel_entry *)(s + 1);
}
static double *h_sorted(const struct outlier_conf *c, struct hampel_state *s)
{
    return (double *)(h_entries(s) + c->max_points);
}

/* First index i with a[i] >= v (a sorted, n entries). */
static uint32_t lower_bound(const double *a, uint32_t n, double v)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void h_remove_oldest(const struct outlier_conf *c, struct hampel_state *s)
{
    struct hampel_entry *e = h_entries(s);
    double *a = h_sorted(c, s);
    double v = e[s->head].v;
    uint32_t i = lower_bound(a, s->n, v);
    memmove(&a[i], &a[i + 1], (s->n - i - 1) * sizeof(double));
    if (!is_whole(v))
        s->nonint--;
    s->head = (uint32_t)((s->head + 1) % (uint64_t)c->max_points);
    s->n--;
}

static void h_insert(const struct outlier_conf *c, struct hampel_state *s, kts_time_t t, double v)
{
    uint32_t cap = (uint32_t)c->max_points;
    struct hampel_entry *e = h_entries(s);
    double *a = h_sorted(c, s);
    if (s->n == cap) {
        if (t < e[s->head].t)
            return; /* older than everything in a full window */
        h_remove_oldest(c, s);
    }
    uint32_t i = s->n;
    while (i > 0) {
        uint32_t prev = (s->head + i - 1) % cap;
        if (e[prev].t <= t)
            break;
        e[(s->head + i) % cap] = e[prev];
        i--;
    }
    e[(s->head + i) % cap].t = t;
    e[(s->head + i) % cap].v = v;
    uint32_t j = lower_bound(a, s->n, v);
    memmove(&a[j + 1], &a[j], (s->n - j) * sizeof(double));
    a[j] = v;
    s->n++;
    if (!is_whole(v))
        s->nonint++;
}

/* Median and MAD of the sorted array a[0..n-1] (n >= 1). */
static void median_mad(const double *a, uint32_t n, double *median, double *mad)
{
    double m = (n & 1) ? a[n / 2] : (a[n / 2 - 1] + a[n / 2]) / 2;
    /* Deviations grow outward from the median: merge the two sides. */
    uint32_t r = lower_bound(a, n, m);
    int64_t l = (int64_t)r - 1;
    uint32_t want_hi = n / 2, want_lo = (n & 1) ? n / 2 : n / 2 - 1;
    double d_lo = 0, d = 0;
    for (uint32_t k = 0; k <= want_hi; k++) {
        if (l >= 0 && (r >= n || m - a[l] <= a[r] - m))
            d = m - a[l--];
        else
            d = a[r++] - m;
        if (k == want_lo)
            d_lo = d;
    }
    *median = m;
    *mad = (d_lo + d) / 2;
}

static void hampel_step(const struct outlier_conf *c, struct hampel_state *s,
                        const struct kts_point *p, struct kts_out *out)
{
    bool late = s->newest != 0 && p->t <= s->newest;
    if (late)
        out->stats->late++;
    else
        s->newest = p->t;
    kts_time_t lo = s->newest > c->window_t ? s->newest - c->window_t : 0;
    while (s->n > 0 && h_entries(s)[s->head].t <= lo)
        h_remove_oldest(c, s);
    bool in_window = p->t > lo;

    if (s->n < (uint32_t)c->min_points) {
        struct kts_point o = *p;
        o.flags |= KTS_PT_WARMING;
        out->stats->warming++;
        s->run = 0;
        if (in_window)
            h_insert(c, s, p->t, p->value);
        kts_out_push(out, &o);
        return;
    }
    double med, mad;
    median_mad(h_sorted(c, s), s->n, &med, &mad);
    double scale = scale_floor(c, 1.4826 * mad, s->nonint == 0 && is_whole(p->value), med);
    if (fabs(p->value - med) > c->threshold * scale) {
        s->run++;
        if (c->max_run == 0 || s->run <= (uint64_t)c->max_run) {
            act(c, p, med, out);
            return;
        }
    } else {
        s->run = 0;
    }
    if (in_window)
        h_insert(c, s, p->t, p->value);
    kts_out_push(out, p);
}

/* ------------------------------------------------------------------ robust / ewz */

static void ew_learn(const struct outlier_conf *c, struct ew_state *s, const struct kts_point *p)
{
    double x = p->value;
    if (!is_whole(x))
        s->nonint = true;
    if (s->n == 0) {
        s->loc = x;
        s->scale = 0;
        s->n = 1;
        s->last_t = p->t;
        return;
    }
    bool young = s->n < (uint32_t)c->min_points;
    double a = -expm1(-kts_dt(p->t, s->last_t) / c->tau);
    if (s->n < UINT32_MAX)
        s->n++;
    if (a < 1.0 / s->n)
        a = 1.0 / s->n; /* plain running estimates while young */
    double e = x - s->loc;
    if (c->method == O_EWZ) {
        s->loc += a * e;
        s->scale = (1 - a) * (s->scale + a * e * e);
    } else {
        double lim = 2 * scale_floor(c, s->scale, !s->nonint, s->loc);
        double ec = young ? e : e > lim ? lim : e < -lim ? -lim : e;
        double ae = young ? fabs(e) : fabs(ec);
        s->loc += a * ec;
        /* E[min(|e|, 2 sd)] = 0.7808 sd for Gaussian residuals. */
        s->scale += a * ((young ? ae * 1.2533 : ae / 0.7808) - s->scale);
    }
    s->last_t = p->t;
}

static void ew_step(const struct outlier_conf *c, struct ew_state *s, const struct kts_point *p,
                    struct kts_out *out)
{
    bool late = s->n > 0 && p->t <= s->last_t;
    if (late)
        out->stats->late++;
    if (s->n < (uint32_t)c->min_points) {
        struct kts_point o = *p;
        o.flags |= KTS_PT_WARMING;
        out->stats->warming++;
        if (!late)
            ew_learn(c, s, p);
        kts_out_push(out, &o);
        return;
    }
    double sd = c->method == O_EWZ ? sqrt(s->scale) : s->scale;
    sd = scale_floor(c, sd, !s->nonint && is_whole(p->value), s->loc);
    if (fabs(p->value - s->loc) > c->threshold * sd) {
        if (s->run < UINT16_MAX)
            s->run++;
        if (late || c->max_run == 0 || s->run <= (uint64_t)c->max_run) {
            act(c, p, s->loc, out);
            return;
        }
    } else {
        s->run = 0;
    }
    if (!late)
        ew_learn(c, s, p);
    kts_out_push(out, p);
}

static void outlier_step(const void *vconf, void *vstate, const struct kts_point *p,
                         struct kts_out *out)
{
    const struct outlier_conf *c = vconf;
    out->stats->in++;
    if (isnan(p->value)) {
        out->stats->nan++;
        kts_out_push(out, p);
        return;
    }
    if (p->flags & KTS_PT_WARMING) {
        out->stats->warming++;
        kts_out_push(out, p);
        return;
    }
    if (c->method == O_HAMPEL)
        hampel_step(c, vstate, p, out);
    else
        ew_step(c, vstate, p, out);
}

const struct kts_filter_ops kts_filter_outlier = {
    .name = "outlier",
    .summary = "flag, replace or drop outliers: Hampel, robust z-score or EW z-score",
    .options = outlier_options,
    .conf_size = sizeof(struct outlier_conf),
    .prepare = outlier_prepare,
    .state_size = outlier_state_size,
    .max_out = outlier_max_out,
    .init = outlier_init,
    .step = outlier_step,
    .flush = NULL,
};
