/* SPDX-License-Identifier: MIT */
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
 *  3. The scale used is at least MinScale, at least PhaseScale times the point's phase scale
 *     (set by a deseasonalize filter before it: the noise at this time of day; 0 otherwise),
 *     and at least 1 when every value in the state and the point itself are whole numbers (a
 *     flat integer series is not flagged for a step of 1: with the default Threshold it takes
 *     a jump of 4 to be an outlier), and never 0.
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
 *     it is not comparable with the points that follow. (With Delay > 0 it is judged by its
 *     neighbours alone: guarantee 15.)
 * 10. Do no harm, range: a replacement, in the series' own units (value + offset, what a
 *     reseasonalize filter outputs), never lies outside the range of the raw values around the
 *     point: with Delay 0, [min, max] of the last 8 points passed unchanged (kept, accepted or
 *     warming; replacing by the median or expected value of guarantee 5, clamped into that
 *     range); with Delay > 0, between the good points on either side (guarantee 13). So a
 *     series that has never been negative never gets a negative replacement. No range known
 *     yet (nothing passed unchanged): the point is kept, not replaced.
 * 11. Do no harm, ramps (Delay > 0): a deviating point whose raw value lies between the last
 *     good point before it and the first good point after it (inclusive) is on a ramp, not a
 *     spike: it is kept and learned.
 * 12. Decision delay: with Delay N > 0 (Method hampel), a point is judged once the N points
 *     after it are known (the output lags the input by N points; points keep their own
 *     timestamps and their order; flush releases the held points, judging them with the
 *     points there are). A deviating run that comes back (a following point within the
 *     threshold) after at most min(MaxRun, N) points is a spike: every point of it is
 *     replaced. A deviation that lasts longer than MaxRun points is a level change: each of
 *     its points is kept and learned at once (no replacement). A deviation still undecided
 *     when the known points run out (at flush, after NaN or warming points, or with
 *     N < MaxRun) falls back to the Delay 0 rule (guarantee 4). NaN and points flagged warming
 *     by an earlier filter wait in the queue and pass unchanged in their turn; a late point
 *     is judged at once with the Delay 0 rule. State: 48 bytes per held point.
 * 13. A spike's replacement (Delay > 0) is the linear interpolation, in event time and in the
 *     series' own units, between the last good point before the run and the first good point
 *     after it (the after point alone when there is none before): a one-point spike on an
 *     evenly sampled series is replaced by the mean of its two raw neighbours.
 * 14. Delay > 0: a deviating point within Threshold * scale of the line between the good
 *     points around its run (the replacement of guarantee 13) is not a spike either: it is kept
 *     and learned. A point is replaced only when it deviates from both the window's median
 *     and its neighbours.
 * 15. Filtering from the first points (Delay > 0): a point flagged warming by an earlier filter
 *     (deseasonalize's first period) is not judged against the window (guarantee 9 still
 *     holds for the window) but against its neighbours: a run of up to min(MaxRun, Delay)
 *     points is a spike when the good point after it is within Threshold * s of the good point
 *     before it and every point of the run lies more than Threshold * s from their line, on
 *     the same side; s is the larger of the robust scale of the differences of the last 8
 *     raw values (median |diff| * 1.0483) and, once 8 differences are in, an exponentially
 *     weighted one (mean |diff| * 0.8862 over ~32 values, each clipped at 4 s; 6 bytes), at
 *     least 1 when the values are whole numbers; judged once 5 raw values are known. A spike
 *     is replaced as in guarantee 13 (and 10 holds); the rest pass as before, flagged warming.
 * 16. After the warm-up (Delay > 0), a point within the window's spread (not deviating by
 *     guarantee 1) is still a spike when guarantee 15's neighbour rule finds it one with twice
 *     the limit (2 * Threshold * s): a spike the profile's misfit hides in the window's MAD
 *     (slow drifts, a weekly pattern) but that stands out from its neighbours. Replaced as in
 *     guarantee 13.
 * 17. Delay in seconds: with DelayTime T > 0 (and Delay N > 0, the most points held), a held
 *     point is also judged as soon as a point T or more seconds of event time after it
 *     arrives, with the points within T after it as its look-ahead (the held ones, and the
 *     new one if exactly T after it): the output lags the input by N points or by T seconds
 *     rounded up to the next point, whichever is less. A point whose next point comes more
 *     than T after it is judged with no look-ahead (guarantee 12's fallback, the Delay 0
 *     rule). DelayTime 0 (the default) keeps the N-point rule alone. No extra state.
 * 18. Noise scale (Method hampel): with DiffScale k > 0, the window's scale (1.4826 * MAD,
 *     guarantee 1) is at most k times guarantee 15's exponentially weighted noise scale of
 *     successive raw values (mean |diff| * 0.8862 over ~32 values, once 32 are in), before
 *     the floors of guarantee 3 (PhaseScale, MinScale, whole numbers) apply. The window's MAD
 *     also holds what the profile does not explain around the point (slow drifts, a weekly
 *     pattern, a profile bin wider than the interval); successive differences hold the noise
 *     of the moment and follow its level within ~32 points. A ramp of the raw series raises the
 *     difference scale, so the cap only ever lowers the scale where the series is locally
 *     smooth. The same scale is used by guarantee 14. DiffScale 0 (the default): no cap.
 *     No extra state.
 * 19. Local model while warming (WarmModel "local") and 20. fallback to it after the warm-up
 *     (LocalFallback): stated in outlier-local.c, where the model is.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kts_filter.h"
#include "kts_log.h"
#include "outlier-local.h"

enum { O_HAMPEL, O_ROBUST, O_EWZ };
enum { A_DROP, A_REPLACE, A_MARK };
enum { W_NEIGHBOURS, W_LOCAL };

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
    double phase_scale;
    int64_t delay;
    double delay_time;
    double diff_scale;
    int warm_model;
    double local_fallback;
    /* derived */
    size_t tail_off; /* offset of struct tail (guarantees 10-13) in the state */
    kts_time_t window_t;
    kts_time_t delay_t; /* DelayTime in cdtime units; 0 = off */
    uint64_t t_mask;    /* bits of a timestamp kept in the ring (see struct hampel_state) */
    bool wide_tags;     /* MaxPoints > 256: ring slot numbers take 2 bytes */
};

/*
 * Hampel: the window's values sorted (what the median and MAD are read from), each tagged with
 * the ring slot it came from, and a time-ordered ring of timestamps only. 15 bytes per point
 * with the default Window (24 before: a ring of (time, value) beside the sorted copy):
 *   double v[cap]        sorted values
 *   uint32_t t_lo[cap]   ring: low 32 bits of each timestamp
 *   uint16_t/uint32_t t_hi[cap]  ring: the next 16 bits, or the whole high half
 *   uint8_t/uint16_t tag[cap]    tag[k]: ring slot of v[k]
 * Every timestamp in the window lies in (newest - Window, newest], so when Window is shorter
 * than 2^48 units (3 days) its low 48 bits identify it exactly: t = newest - ((newest - t48)
 * mod 2^48). Longer windows keep all 64 bits (t_hi 32-bit): 17 bytes per point.
 */
struct hampel_state {
    kts_time_t newest;
    /* Consecutive outliers, saturating at 2^16 (MaxRun <= 65535, so only run <= MaxRun
     * matters), and the values in the window that are not whole numbers (<= 4096): 16 bytes. */
    uint32_t run : 17;
    uint32_t nonint : 13;
    uint16_t head, n; /* ring: oldest slot, points in the window (MaxPoints <= 4096) */
};

struct ew_state {
    kts_time_t last_t;
    double loc, scale; /* scale: robust scale or EW variance (ewz) */
    uint32_t n;        /* points learned, saturating */
    uint16_t run;      /* consecutive outliers, saturating */
    bool nonint;
};

/*
 * Behind the method's state (guarantees 10-13): the last RING raw values passed unchanged (in the
 * series' own units), the time of the newest, and the queue of held points (Delay of them).
 */
enum { RING = 8 };
struct tail {
    kts_time_t good_t; /* time of the newest ring value (the last good point) */
    double rv[RING];
    uint8_t rn, rhead; /* values in the ring, slot of the oldest */
    uint8_t qn;        /* points in the queue */
    uint16_t dn;       /* differences learned into dsc (saturating) */
    float dsc;         /* EW noise scale from successive raw values (guarantee 15) */
    /* struct kts_point q[delay] follows */
};

static const char *const method_words[] = {"hampel", "robust", "ewz", NULL};
static const char *const action_words[] = {"drop", "replace", "mark", NULL};
static const char *const warm_words[] = {"neighbours", "local", NULL};

static const struct kts_opt outlier_options[] = {
    {"Method", KTS_OPT_ENUM, offsetof(struct outlier_conf, method), "hampel", 0, 0, method_words,
     NULL, 0, "hampel: rolling median/MAD; robust: online Huber location/scale; ewz: EW mean/sd"},
    {"Action", KTS_OPT_ENUM, offsetof(struct outlier_conf, action), "replace", 0, 0, action_words,
     NULL, 0, "drop the outlier, replace it by the median/expected value, or mark it"},
    {"Threshold", KTS_OPT_DOUBLE, offsetof(struct outlier_conf, threshold), "3.5", 0.5, 1000, NULL,
     NULL, 0, "outlier when |x - centre| > Threshold * scale (scale ~ standard deviation)"},
    {"Window", KTS_OPT_DURATION, offsetof(struct outlier_conf, window), "3600", 1e-6, 1e9, NULL,
     NULL, 0, "hampel: window length in seconds of event time"},
    {"MaxPoints", KTS_OPT_INT, offsetof(struct outlier_conf, max_points), "31", 3, 4096, NULL, NULL,
     0,
     "hampel: most points kept in the window (15 bytes each per series; +1 above 256 "
     "points, +2 with a Window over 3 days)"},
    {"MinPoints", KTS_OPT_INT, offsetof(struct outlier_conf, min_points), "5", 1, 4096, NULL, NULL,
     0, "points needed before judging (warm-up)"},
    {"Tau", KTS_OPT_DURATION, offsetof(struct outlier_conf, tau), "3600", 1e-6, 1e9, NULL, NULL, 0,
     "robust/ewz: time constant of location and scale in seconds"},
    {"MinScale", KTS_OPT_DOUBLE, offsetof(struct outlier_conf, min_scale), "0", 0, 1e300, NULL,
     NULL, 0, "smallest scale used (in the series' unit)"},
    {"PhaseScale", KTS_OPT_DOUBLE, offsetof(struct outlier_conf, phase_scale), "0.7", 0, 100, NULL,
     NULL, 0,
     "the scale is at least this times the noise scale deseasonalize learned "
     "for the point's time of day (0 = ignore it)"},
    {"MaxRun", KTS_OPT_INT, offsetof(struct outlier_conf, max_run), "5", 0, 65535, NULL, NULL, 0,
     "after this many consecutive outliers, accept the next ones as a level shift; 0 = never"},
    {"Delay", KTS_OPT_INT, offsetof(struct outlier_conf, delay), "0", 0, 16, NULL, NULL, 0,
     "hampel: judge a point once this many points after it are known (output delayed by as "
     "many points; 48 bytes each per series): a run of up to MaxRun deviating points that "
     "comes back is a spike, a longer one a level change; 0 = judge at once"},
    {"DelayTime", KTS_OPT_DURATION, offsetof(struct outlier_conf, delay_time), "0", 0, 1e9, NULL,
     NULL, 0,
     "hampel, with Delay: also judge a held point once a point this many seconds or more "
     "after it is known: the output lags by Delay points or this many seconds rounded up to "
     "the next point, whichever is less; 0 = Delay points only"},
    {"DiffScale", KTS_OPT_DOUBLE, offsetof(struct outlier_conf, diff_scale), "0", 0, 100, NULL,
     NULL, 0,
     "hampel: the window's scale is at most this times the noise scale of successive raw "
     "differences (EW over ~32 points): the window's MAD also holds the profile's misfit; "
     "0 = no cap"},
    {"WarmModel", KTS_OPT_ENUM, offsetof(struct outlier_conf, warm_model), "neighbours", 0, 0,
     warm_words, NULL, 0,
     "with Delay: judge points an earlier filter flags warming by their two good neighbours, "
     "or by a robust local line (Theil-Sen, MAD) through the last good values and the held "
     "points"},
    {"LocalFallback", KTS_OPT_DOUBLE, offsetof(struct outlier_conf, local_fallback), "0", 0, 100,
     NULL, NULL, 0,
     "with Delay, after the warm-up: a point is also judged against the robust local line "
     "when the window's scale (1.4826 * MAD) exceeds this times the line's; 0 = never"},
    KTS_OPT_END,
};

static size_t method_state_size(const struct outlier_conf *c)
{
    if (c->method == O_HAMPEL) {
        size_t per = sizeof(double) + sizeof(uint32_t) +
                     (c->t_mask == UINT64_MAX ? sizeof(uint32_t) : sizeof(uint16_t)) +
                     (c->wide_tags ? sizeof(uint16_t) : sizeof(uint8_t));
        return sizeof(struct hampel_state) + (size_t)c->max_points * per;
    }
    return sizeof(struct ew_state);
}

static int outlier_prepare(void *vconf, const char *where)
{
    struct outlier_conf *c = vconf;
    c->window_t = KTS_TIME_FROM_DOUBLE(c->window);
    c->t_mask = c->window_t < ((kts_time_t)1 << 48) ? ((uint64_t)1 << 48) - 1 : UINT64_MAX;
    c->wide_tags = c->max_points > 256;
    if (c->method == O_HAMPEL && c->min_points > c->max_points) {
        kts_log(KTS_LOG_ERR, "%s: MinPoints %lld is larger than MaxPoints %lld", where,
                (long long)c->min_points, (long long)c->max_points);
        return -EINVAL;
    }
    if (c->method != O_HAMPEL && c->delay > 0) {
        kts_log(KTS_LOG_ERR,
                "%s: Delay %lld needs Method \"hampel\" (Method \"%s\" judges at "
                "once: Delay 0)",
                where, (long long)c->delay, method_words[c->method]);
        return -EINVAL;
    }
    if (c->delay_time > 0 && c->delay == 0) {
        kts_log(KTS_LOG_ERR,
                "%s: DelayTime %g needs Delay N > 0 (the most points held; e.g. Delay 2)", where,
                c->delay_time);
        return -EINVAL;
    }
    c->delay_t = KTS_TIME_FROM_DOUBLE(c->delay_time);
    c->tail_off = (method_state_size(c) + 7) & ~(size_t)7;
    return 0;
}

static size_t outlier_state_size(const void *vconf)
{
    const struct outlier_conf *c = vconf;
    return c->tail_off + sizeof(struct tail) + (size_t)c->delay * sizeof(struct kts_point);
}

static size_t outlier_max_out(const void *vconf)
{
    const struct outlier_conf *c = vconf;
    return (size_t)c->delay + 1;
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

static double scale_floor(const struct outlier_conf *c, double s, bool integers, double centre,
                          const struct kts_point *p)
{
    double phase = c->phase_scale * (double)p->scale;
    if (s < phase)
        s = phase;
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

static struct tail *tail_of(const struct outlier_conf *c, void *vstate)
{
    return (struct tail *)((unsigned char *)vstate + c->tail_off);
}
static struct kts_point *queue_of(struct tail *tl)
{
    return (struct kts_point *)(tl + 1);
}

static double ring_newest(const struct tail *tl)
{
    return tl->rv[(tl->rhead + tl->rn - 1) % RING];
}

/* A point passed unchanged: its raw value joins the ring (guarantee 10). Late points do not
 * (the ring's newest is the last good point in time). */
static void ring_push(struct tail *tl, const struct kts_point *p)
{
    if (tl->rn > 0 && p->t <= tl->good_t)
        return;
    double x = p->value + p->offset;
    if (tl->rn > 0) {
        /* sd from |successive difference| (E = 2 sd / sqrt(pi)), clipped at 4 scales once 8 are
         * in, weighted like a mean of the last 32 */
        double d = fabs(x - ring_newest(tl)) * 0.8862, cur = tl->dsc;
        if (tl->dn < UINT16_MAX)
            tl->dn++;
        if (tl->dn > 8 && d > 4 * cur)
            d = 4 * cur;
        double a = tl->dn < 32 ? 1.0 / tl->dn : 1.0 / 32;
        tl->dsc = (float)(cur + a * (d - cur));
    }
    if (tl->rn < RING) {
        tl->rv[(tl->rhead + tl->rn) % RING] = x;
        tl->rn++;
    } else {
        tl->rv[tl->rhead] = x;
        tl->rhead = (uint8_t)((tl->rhead + 1) % RING);
    }
    tl->good_t = p->t;
}

/* Set o's value so that value + offset is `x` (series units), staying inside [lo, hi]
 * despite the rounding of the subtraction. */
static void set_raw(struct kts_point *o, double x, double lo, double hi)
{
    double v = x - o->offset;
    for (int k = 0; k < 8 && v + o->offset > hi; k++)
        v = nextafter(v, -INFINITY);
    for (int k = 0; k < 8 && v + o->offset < lo; k++)
        v = nextafter(v, INFINITY);
    o->value = v;
}

/* Apply the action to an outlier. `x` is the replacement in the series' own units and
 * [lo, hi] the range it must stay in (guarantee 10). */
static void act_raw(const struct outlier_conf *c, const struct kts_point *p, double x, double lo,
                    double hi, struct kts_out *out)
{
    struct kts_point o = *p;
    switch (c->action) {
    case A_DROP:
        out->stats->dropped++;
        return;
    case A_REPLACE:
        set_raw(&o, x < lo ? lo : x > hi ? hi : x, lo, hi);
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

/* Delay 0 rule: replace by `expected` (deseasonalized units), clamped into the ring's range.
 * Returns false (nothing done) when the action needs a range and none is known. */
static bool act(const struct outlier_conf *c, struct tail *tl, const struct kts_point *p,
                double expected, struct kts_out *out)
{
    if (c->action == A_REPLACE && tl->rn == 0)
        return false;
    double lo = INFINITY, hi = -INFINITY;
    for (unsigned k = 0; k < tl->rn; k++) {
        double v = tl->rv[(tl->rhead + k) % RING];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    act_raw(c, p, expected + p->offset, lo, hi, out);
    return true;
}

/* ------------------------------------------------------------------ hampel */

/* The arrays behind the header (layout in the comment of struct hampel_state). */
static double *h_sorted(struct hampel_state *s)
{
    return (double *)(s + 1);
}
static uint32_t *h_tlo(const struct outlier_conf *c, struct hampel_state *s)
{
    return (uint32_t *)(h_sorted(s) + c->max_points);
}
static void *h_thi(const struct outlier_conf *c, struct hampel_state *s)
{
    return h_tlo(c, s) + c->max_points;
}
static void *h_tags(const struct outlier_conf *c, struct hampel_state *s)
{
    size_t w = c->t_mask == UINT64_MAX ? sizeof(uint32_t) : sizeof(uint16_t);
    return (unsigned char *)h_thi(c, s) + (size_t)c->max_points * w;
}

/* Timestamp of ring slot i (any slot in the window: it is within Window of s->newest). */
static kts_time_t h_time(const struct outlier_conf *c, struct hampel_state *s, uint32_t i)
{
    uint64_t hi =
        c->t_mask == UINT64_MAX ? ((uint32_t *)h_thi(c, s))[i] : ((uint16_t *)h_thi(c, s))[i];
    uint64_t stored = hi << 32 | h_tlo(c, s)[i];
    return s->newest - ((s->newest - stored) & c->t_mask);
}
static void h_set_time(const struct outlier_conf *c, struct hampel_state *s, uint32_t i,
                       kts_time_t t)
{
    h_tlo(c, s)[i] = (uint32_t)t;
    if (c->t_mask == UINT64_MAX)
        ((uint32_t *)h_thi(c, s))[i] = (uint32_t)(t >> 32);
    else
        ((uint16_t *)h_thi(c, s))[i] = (uint16_t)(t >> 32);
}
static uint32_t h_tag(const struct outlier_conf *c, struct hampel_state *s, uint32_t k)
{
    return c->wide_tags ? ((uint16_t *)h_tags(c, s))[k] : ((uint8_t *)h_tags(c, s))[k];
}
static void h_set_tag(const struct outlier_conf *c, struct hampel_state *s, uint32_t k,
                      uint32_t slot)
{
    if (c->wide_tags)
        ((uint16_t *)h_tags(c, s))[k] = (uint16_t)slot;
    else
        ((uint8_t *)h_tags(c, s))[k] = (uint8_t)slot;
}
/* Position in the sorted array of the value that came from ring slot `slot`. */
static uint32_t h_find_tag(const struct outlier_conf *c, struct hampel_state *s, uint32_t slot)
{
    if (!c->wide_tags) {
        const uint8_t *tg = h_tags(c, s);
        const uint8_t *hit = memchr(tg, (int)slot, s->n);
        return hit != NULL ? (uint32_t)(hit - tg) : 0;
    }
    const uint16_t *tg = h_tags(c, s);
    for (uint32_t k = 0; k < s->n; k++)
        if (tg[k] == slot)
            return k;
    return 0; /* not reached: every slot in the window has a tag */
}
/* Move sorted entries [from, from + count) by one place (+1 or -1), tags with them. */
static void h_shift(const struct outlier_conf *c, struct hampel_state *s, uint32_t from,
                    uint32_t count, int by)
{
    double *a = h_sorted(s);
    size_t tw = c->wide_tags ? sizeof(uint16_t) : sizeof(uint8_t);
    unsigned char *tg = h_tags(c, s);
    memmove(&a[(int64_t)from + by], &a[from], count * sizeof(double));
    memmove(tg + ((int64_t)from + by) * (int64_t)tw, tg + (size_t)from * tw, count * tw);
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
    uint32_t i = h_find_tag(c, s, s->head);
    double v = h_sorted(s)[i];
    h_shift(c, s, i + 1, s->n - i - 1, -1);
    if (!is_whole(v))
        s->nonint--;
    s->head = (uint16_t)((s->head + 1) % (uint32_t)c->max_points);
    s->n--;
}

/* Insert (t, v); t is at most s->newest. */
static void h_insert(const struct outlier_conf *c, struct hampel_state *s, kts_time_t t, double v)
{
    uint32_t cap = (uint32_t)c->max_points;
    if (s->n == cap) {
        if (t < h_time(c, s, s->head))
            return; /* older than everything in a full window */
        h_remove_oldest(c, s);
    }
    /* Ring: find t's place from the newest end; later entries move up one slot. */
    uint32_t i = s->n;
    while (i > 0 && h_time(c, s, (s->head + i - 1) % cap) > t)
        i--;
    if (i < s->n) {
        for (uint32_t k = s->n; k > i; k--) {
            uint32_t to = (s->head + k) % cap, from = (s->head + k - 1) % cap;
            h_tlo(c, s)[to] = h_tlo(c, s)[from];
            if (c->t_mask == UINT64_MAX)
                ((uint32_t *)h_thi(c, s))[to] = ((uint32_t *)h_thi(c, s))[from];
            else
                ((uint16_t *)h_thi(c, s))[to] = ((uint16_t *)h_thi(c, s))[from];
        }
        for (uint32_t k = 0; k < s->n; k++) {
            uint32_t slot = h_tag(c, s, k);
            if ((slot + cap - s->head) % cap >= i)
                h_set_tag(c, s, k, (slot + 1) % cap);
        }
    }
    uint32_t slot = (s->head + i) % cap;
    h_set_time(c, s, slot, t);
    double *a = h_sorted(s);
    uint32_t j = lower_bound(a, s->n, v);
    h_shift(c, s, j, s->n - j, +1);
    a[j] = v;
    h_set_tag(c, s, j, slot);
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

/* Guarantees 15 and 16: is p (with up to min(MaxRun, Delay) - 1 points after it) a spike by its
 * neighbours alone? Then it is replaced (true). */
static bool neighbour_spike(const struct outlier_conf *c, struct tail *tl,
                            const struct kts_point *p, const struct kts_point *look, size_t nlook,
                            double factor, struct kts_out *out)
{
    if (tl->rn >= 5) {
        double d[RING], prev = tl->rv[tl->rhead];
        bool whole = is_whole(p->value + p->offset) && is_whole(prev);
        unsigned nd = 0;
        for (unsigned k = 1; k < tl->rn; k++) {
            double v = tl->rv[(tl->rhead + k) % RING];
            whole = whole && is_whole(v);
            double dv = fabs(v - prev);
            unsigned j = nd++;
            while (j > 0 && d[j - 1] > dv) { /* insertion sort: at most 7 values */
                d[j] = d[j - 1];
                j--;
            }
            d[j] = dv;
            prev = v;
        }
        double sc = (nd & 1 ? d[nd / 2] : (d[nd / 2 - 1] + d[nd / 2]) / 2) * 1.0483;
        if (tl->dn >= 8 && sc < tl->dsc)
            sc = tl->dsc;
        double before = ring_newest(tl);
        if (whole && sc < 1)
            sc = 1;
        if (sc < fabs(before) * 4 * DBL_EPSILON)
            sc = fabs(before) * 4 * DBL_EPSILON;
        if (sc < DBL_MIN)
            sc = DBL_MIN;
        double lim = factor * c->threshold * sc;
        uint64_t maxlen = c->max_run == 0 ? (uint64_t)c->delay : (uint64_t)c->max_run;
        const struct kts_point *run[17];
        size_t nrun = 0;
        run[nrun++] = p;
        for (size_t k = 0; k < nlook && nrun <= maxlen; k++) {
            const struct kts_point *a = &look[k];
            if (isnan(a->value))
                continue;
            double after = a->value + a->offset;
            if (fabs(after - before) <= lim && a->t > tl->good_t) {
                /* `a` comes back: is every point before it off the line, on one side? */
                double span = kts_dt(a->t, tl->good_t);
                bool spike = true;
                int side = 0;
                for (size_t r = 0; r < nrun && spike; r++) {
                    double line = before + (after - before) * kts_dt(run[r]->t, tl->good_t) / span;
                    double e = run[r]->value + run[r]->offset - line;
                    int sd = e > 0 ? 1 : -1;
                    spike = fabs(e) > lim && (side == 0 || sd == side);
                    side = sd;
                }
                if (spike) {
                    double rep = before + (after - before) * kts_dt(p->t, tl->good_t) / span;
                    act_raw(c, p, rep, before < after ? before : after,
                            before < after ? after : before, out);
                    return true;
                }
                break;
            }
            run[nrun++] = a;
        }
    }
    return false;
}

/* Guarantee 19: is p a spike against the local line through the good values around it? */
static int local_spike(const struct outlier_conf *c, struct tail *tl, const struct kts_point *p,
                       const struct kts_point *look, size_t nlook, double wscale,
                       struct kts_out *out)
{
    if (tl->dn < 8)
        return -1;
    double v[KTS_LOCAL_MAX], lim;
    const struct kts_point *after[KTS_LOCAL_MAX];
    size_t n = 0, nb = tl->rn;
    bool whole = is_whole(p->value + p->offset);
    for (unsigned k = 0; k < tl->rn; k++, n++) {
        v[n] = tl->rv[(tl->rhead + k) % RING];
        whole = whole && is_whole(v[n]);
    }
    for (size_t k = 0; k < nlook && n < KTS_LOCAL_MAX; k++)
        if (!isnan(look[k].value)) {
            after[n - nb] = &look[k];
            v[n++] = look[k].value + look[k].offset;
        }
    uint64_t maxlen = c->max_run == 0 ? (uint64_t)c->delay : (uint64_t)c->max_run;
    double x = p->value + p->offset, before = ring_newest(tl);
    /* Warming: half the line's MAD scale (a local spread twice the EW scale is noise the EW
     * scale has not caught up with); fallback (20): all of it, the profile judges as well. */
    long r = kts_local_run(v, nb, n, x, tl->dsc, wscale > 0 ? 1.0 : 0.5, c->threshold, whole,
                           (size_t)maxlen, &lim);
    if (wscale > 0 && !(wscale > c->local_fallback * lim / c->threshold))
        return -1; /* guarantee 20: the profile explains the neighbourhood as well */
    if (r < 0 || after[r - (long)nb]->t <= tl->good_t)
        return 0; /* not off the line, or no return within MaxRun: not a spike */
    const struct kts_point *ret = after[r - (long)nb];
    double a = v[r], lo = before < a ? before : a, hi = before < a ? a : before;
    double rep = before + (a - before) * kts_dt(p->t, tl->good_t) / kts_dt(ret->t, tl->good_t);
    if ((x >= lo && x <= hi) || fabs(x - rep) <= lim)
        return 0; /* guarantees 11 and 14: on a ramp, or near its neighbours' line */
    act_raw(c, p, rep, lo, hi, out);
    return 1;
}

/* Guarantees 15 and 19: judge a point flagged warming upstream by its neighbours alone. */
static void warm_judge(const struct outlier_conf *c, struct tail *tl, const struct kts_point *p,
                       const struct kts_point *look, size_t nlook, struct kts_out *out)
{
    if (c->warm_model == W_LOCAL ? local_spike(c, tl, p, look, nlook, 0, out) == 1
                                 : neighbour_spike(c, tl, p, look, nlook, 1.0, out))
        return;
    ring_push(tl, p);
    kts_out_push(out, p);
}

/* The window's scale, capped by the difference scale (guarantee 18), then floored (3). */
static double window_scale(const struct outlier_conf *c, struct hampel_state *s,
                           const struct tail *tl, double med, double mad, const struct kts_point *q)
{
    double sc = 1.4826 * mad;
    if (c->diff_scale > 0 && tl->dn >= 32 && sc > c->diff_scale * tl->dsc)
        sc = c->diff_scale * tl->dsc;
    return scale_floor(c, sc, s->nonint == 0 && is_whole(q->value), med, q);
}

/* Does `q` deviate from (med, mad)? */
static bool deviates(const struct outlier_conf *c, struct hampel_state *s, const struct tail *tl,
                     double med, double mad, const struct kts_point *q)
{
    double scale = window_scale(c, s, tl, med, mad, q);
    return fabs(q->value - med) > c->threshold * scale;
}

/*
 * Judge p against the window. look[0..nlook) are the points known after it (Delay > 0; NaN and
 * warming ones among them are skipped), nlook = 0 with Delay 0 or for a late point.
 */
static void hampel_judge(const struct outlier_conf *c, struct hampel_state *s, struct tail *tl,
                         const struct kts_point *p, const struct kts_point *look, size_t nlook,
                         struct kts_out *out)
{
    bool late = s->newest != 0 && p->t <= s->newest;
    if (late)
        out->stats->late++;
    kts_time_t newest = late ? s->newest : p->t;
    kts_time_t lo = newest > c->window_t ? newest - c->window_t : 0;
    /* Expire against the old newest, which the stored times are relative to. */
    while (s->n > 0 && h_time(c, s, s->head) <= lo)
        h_remove_oldest(c, s);
    s->newest = newest;
    bool in_window = p->t > lo;

    if (s->n < (uint32_t)c->min_points) {
        struct kts_point o = *p;
        o.flags |= KTS_PT_WARMING;
        out->stats->warming++;
        s->run = 0;
        if (in_window)
            h_insert(c, s, p->t, p->value);
        ring_push(tl, p);
        kts_out_push(out, &o);
        return;
    }
    double med, mad;
    median_mad(h_sorted(s), s->n, &med, &mad);
    /* Guarantee 20: cheap tests first (the line's scale is at least the difference scale; a
     * spike by the line stands out from the last good point by more than Threshold times it). */
    if (c->local_fallback > 0 && c->delay > 0 && !late && tl->rn > 0 &&
        1.4826 * mad > c->local_fallback * tl->dsc &&
        fabs(p->value + p->offset - ring_newest(tl)) > c->threshold * tl->dsc &&
        local_spike(c, tl, p, look, nlook, 1.4826 * mad, out) == 1) {
        if (s->run < 65536)
            s->run++; /* a replaced spike counts as an outlier (guarantee 4), as in 12 */
        return;
    }
    if (deviates(c, s, tl, med, mad, p)) {
        bool decided = false;
        if (c->delay > 0 && !late) {
            /* Guarantee 12: how long is the deviating run, and does it come back? */
            uint64_t len = 1;
            const struct kts_point *ret = NULL;
            for (size_t k = 0; k < nlook && ret == NULL; k++) {
                if (isnan(look[k].value) || (look[k].flags & KTS_PT_WARMING))
                    continue;
                if (deviates(c, s, tl, med, mad, &look[k]))
                    len++;
                else
                    ret = &look[k];
            }
            bool within = c->max_run == 0 || len <= (uint64_t)c->max_run;
            if (ret != NULL && within) {
                double x = p->value + p->offset, after = ret->value + ret->offset;
                double before = tl->rn > 0 ? ring_newest(tl) : after;
                double blo = before < after ? before : after, bhi = before < after ? after : before;
                /* Guarantee 13: interpolate between the good points around the run. */
                double rep = after;
                if (tl->rn > 0 && ret->t > tl->good_t)
                    rep = before +
                          (after - before) * kts_dt(p->t, tl->good_t) / kts_dt(ret->t, tl->good_t);
                double scale = window_scale(c, s, tl, med, mad, p);
                if (tl->rn > 0 && x >= blo && x <= bhi) {
                    s->run = 0; /* guarantee 11: on a ramp */
                } else if (fabs(x - rep) <= c->threshold * scale) {
                    s->run = 0; /* guarantee 14: close to its neighbours' line */
                } else {
                    if (s->run < 65536)
                        s->run++;
                    act_raw(c, p, rep, blo, bhi, out);
                    return;
                }
                decided = true;
            } else if (!within) {
                s->run = 0; /* a level change: kept and learned */
                decided = true;
            }
        }
        if (!decided) {
            if (s->run < 65536)
                s->run++;
            if ((c->max_run == 0 || s->run <= (uint64_t)c->max_run) && act(c, tl, p, med, out))
                return;
        }
    } else {
        s->run = 0;
        /* Guarantee 16: within the window's spread, but a spike by its neighbours. */
        if (c->delay > 0 && !late && neighbour_spike(c, tl, p, look, nlook, 2.0, out))
            return;
    }
    if (in_window)
        h_insert(c, s, p->t, p->value);
    ring_push(tl, p);
    kts_out_push(out, p);
}

/* Release the oldest held point (Delay > 0), judged with the ones after it. */
static void hampel_release(const struct outlier_conf *c, struct hampel_state *s, struct tail *tl,
                           struct kts_out *out)
{
    struct kts_point *q = queue_of(tl);
    struct kts_point p = q[0];
    tl->qn--;
    memmove(&q[0], &q[1], tl->qn * sizeof(*q));
    if (isnan(p.value))
        kts_out_push(out, &p);
    else if (p.flags & KTS_PT_WARMING)
        warm_judge(c, tl, &p, q, tl->qn, out);
    else
        hampel_judge(c, s, tl, &p, q, tl->qn, out);
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
        double lim = 2 * scale_floor(c, s->scale, !s->nonint, s->loc, p);
        double ec = young ? e : e > lim ? lim : e < -lim ? -lim : e;
        double ae = young ? fabs(e) : fabs(ec);
        s->loc += a * ec;
        /* E[min(|e|, 2 sd)] = 0.7808 sd for Gaussian residuals. */
        s->scale += a * ((young ? ae * 1.2533 : ae / 0.7808) - s->scale);
    }
    s->last_t = p->t;
}

static void ew_step(const struct outlier_conf *c, struct ew_state *s, struct tail *tl,
                    const struct kts_point *p, struct kts_out *out)
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
        ring_push(tl, p);
        kts_out_push(out, &o);
        return;
    }
    double sd = c->method == O_EWZ ? sqrt(s->scale) : s->scale;
    sd = scale_floor(c, sd, !s->nonint && is_whole(p->value), s->loc, p);
    if (fabs(p->value - s->loc) > c->threshold * sd) {
        if (s->run < UINT16_MAX)
            s->run++;
        if ((late || c->max_run == 0 || s->run <= (uint64_t)c->max_run) &&
            act(c, tl, p, s->loc, out))
            return;
    } else {
        s->run = 0;
    }
    if (!late)
        ew_learn(c, s, p);
    ring_push(tl, p);
    kts_out_push(out, p);
}

static void outlier_step(const void *vconf, void *vstate, const struct kts_point *p,
                         struct kts_out *out)
{
    const struct outlier_conf *c = vconf;
    struct tail *tl = tail_of(c, vstate);
    struct kts_point *q = queue_of(tl);
    out->stats->in++;
    bool nan = isnan(p->value), warming = (p->flags & KTS_PT_WARMING) != 0;
    if (nan)
        out->stats->nan++;
    else if (warming)
        out->stats->warming++;
    if (c->delay > 0) {
        struct hampel_state *s = vstate;
        bool late = (s->newest != 0 && p->t <= s->newest) ||
                    (tl->qn > 0 && p->t <= q[tl->qn - 1].t) || (tl->rn > 0 && p->t <= tl->good_t);
        if (late) { /* guarantee 12: at once */
            if (nan || warming)
                kts_out_push(out, p);
            else
                hampel_judge(c, s, tl, p, NULL, 0, out);
            return;
        }
        /* Guarantee 17: a held point DelayTime or more before p is due now, judged with the
         * held points after it and p itself when p is within DelayTime of it. */
        while (c->delay_t > 0 && tl->qn > 0 && p->t - q[0].t >= c->delay_t) {
            struct kts_point look[16];
            struct kts_point front = q[0];
            size_t nlook = (size_t)tl->qn - 1;
            memcpy(look, &q[1], nlook * sizeof(*q));
            if (p->t - front.t == c->delay_t)
                look[nlook++] = *p;
            tl->qn--;
            memmove(&q[0], &q[1], tl->qn * sizeof(*q));
            if (isnan(front.value))
                kts_out_push(out, &front);
            else if (front.flags & KTS_PT_WARMING)
                warm_judge(c, tl, &front, look, nlook, out);
            else
                hampel_judge(c, s, tl, &front, look, nlook, out);
        }
        if (tl->qn == (uint8_t)c->delay) {
            /* The oldest held point is due: judge it with the others and p after it. */
            struct kts_point look[16];
            struct kts_point front = q[0];
            memcpy(look, &q[1], (size_t)(tl->qn - 1) * sizeof(*q));
            look[tl->qn - 1] = *p;
            memmove(&q[0], &q[1], (size_t)(tl->qn - 1) * sizeof(*q));
            q[tl->qn - 1] = *p;
            if (isnan(front.value))
                kts_out_push(out, &front);
            else if (front.flags & KTS_PT_WARMING)
                warm_judge(c, tl, &front, look, (size_t)c->delay, out);
            else
                hampel_judge(c, s, tl, &front, look, (size_t)c->delay, out);
        } else {
            q[tl->qn++] = *p;
        }
        return;
    }
    if (nan) {
        kts_out_push(out, p);
        return;
    }
    if (warming) {
        ring_push(tl, p);
        kts_out_push(out, p);
        return;
    }
    if (c->method == O_HAMPEL)
        hampel_judge(c, vstate, tl, p, NULL, 0, out);
    else
        ew_step(c, vstate, tl, p, out);
}

static void outlier_flush(const void *vconf, void *vstate, struct kts_out *out)
{
    const struct outlier_conf *c = vconf;
    struct tail *tl = tail_of(c, vstate);
    while (tl->qn > 0)
        hampel_release(c, vstate, tl, out);
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
    .flush = outlier_flush,
};
