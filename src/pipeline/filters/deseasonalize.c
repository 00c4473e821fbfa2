/* SPDX-License-Identifier: MIT */
/*
 * deseasonalize: removes a periodic pattern (daily, weekly, any period) with a time-phased,
 * robust additive Holt-Winters: a level, a binned seasonal profile (the bin comes from the
 * timestamp's phase in the period, not from a point count) and a robust residual scale.
 *
 * Guarantees:
 *  1. O(1) work per point (plus O(Bins) once, when warm-up ends) and bounded state per data
 *     source: 48 + 4.5 * Bins bytes (1344 bytes with the default 288 bins, a 5-minute daily
 *     profile). The profile is stored as floats, the warm-up counts in 4 bits; after warm-up
 *     the same bytes hold the phase scales (guarantee 9).
 *  2. Output "adjusted" (default) is x - season(bin): the level plus the residual, in the
 *     series' unit, which is what an outlier filter after it should judge. Output "residual" is
 *     x - level - season(bin). The profile is kept at zero mean, so "adjusted" has the series'
 *     average level.
 *  3. Warm-up: during the first Period of event time, points pass through unchanged flagged
 *     KTS_PT_WARMING (counted in `warming`) while each bin learns the mean of its points. At the
 *     first point after that, empty bins are interpolated from their neighbours (circularly),
 *     the profile is cleaned with a circular median of 3 bins (a spike in the first period
 *     does not become part of the pattern), centred, and the scale is initialised.
 *  4. Robustness: after warm-up every update uses the residual clipped at Clip * scale (Huber),
 *     so an outlier moves its bin by at most (1 - exp(-1/SeasonPeriods)) * Clip * scale and does
 *     not echo one period later; the scale itself is an exponentially weighted, clipped mean
 *     absolute residual made consistent for Gaussian noise.
 *  5. Gaps: updates are weighted by event time (level: 1 - exp(-dt/LevelTau); bin: per bin
 *     width, at most one bin's worth per point), so a gap does not over-weight the next point;
 *     after a gap longer than 4 * LevelTau the level re-anchors on the next point without
 *     clipping (a level change during the gap is not an outlier forever).
 *  6. NaN passes through unchanged and is not learned.
 *  7. Out-of-order and duplicate timestamps are adjusted with the current profile but not
 *     learned (counted in `late`).
 *  8. What was subtracted is added to the point's `offset`, so a "reseasonalize" filter later in
 *     the pipeline puts the pattern back: deseasonalize -> outlier -> reseasonalize removes
 *     spikes judged on the deseasonalized series and outputs the series in its own units.
 *  9. Phase scales: after warm-up, each group of 4 bins (Bins / 4 groups, 2 bytes each, in the
 *     bytes the warm-up counts used: no extra state) learns the noise scale of its part of the
 *     period from the residuals' first differences (|e - e_prev| / sqrt 2, so a slow level
 *     drift does not count as noise), clipped at Clip * max(phase scale, scale / 4) and made
 *     consistent for Gaussian noise, with the pattern's time constant (SeasonPeriods). Every
 *     point after warm-up carries its group's scale in `scale`, which an outlier filter uses
 *     as a floor for its own scale (its PhaseScale option): noise that depends on the time of
 *     day (busy hours 4x noisier than the night) is judged against the right scale. A gap,
 *     a late point or NaN does not update it. Stored as bfloat16 (8-bit mantissa): a scale
 *     is exact to within 0.4 %, and an update smaller than that rounds away, so a phase scale
 *     settles within ~6 % of its target (SeasonPeriods 4), which is what it is used for.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kts_filter.h"
#include "kts_log.h"

enum { D_ADJUSTED, D_RESIDUAL };

struct deseason_conf {
    double period;
    int64_t bins;
    int output;
    double level_tau;
    double season_periods;
    double scale_tau;
    double clip;
    double min_scale;
    double spread;
    /* derived */
    kts_time_t period_t;
    double bin_s;     /* bin width in seconds */
    double clip_mean; /* E[min(|Z|, clip)] for a standard normal Z */
};

struct deseason_state {
    kts_time_t first_t; /* 0 = nothing yet */
    kts_time_t last_t;
    double level;
    double scale;
    double sum; /* sum of profile[] */
    uint32_t ready;
    float e_prev; /* the previous point's residual (guarantee 9); NaN: none */
    /* float profile[bins]; then (bins + 1) / 2 bytes: warm-up counts (4 bits per bin), after
     * warm-up bfloat16 phase scales (one per 4 bins) */
};

static const char *const output_words[] = {"adjusted", "residual", NULL};

static const struct kts_opt deseason_options[] = {
    {"Period", KTS_OPT_DURATION, offsetof(struct deseason_conf, period), "86400", 1, 1e9, NULL,
     NULL, 0, "length of the pattern in seconds (86400 daily, 604800 weekly, any)"},
    {"Bins", KTS_OPT_INT, offsetof(struct deseason_conf, bins), "288", 2, 65536, NULL, NULL, 0,
     "phase bins per period (4.5 bytes each per series); bin width = Period / Bins"},
    {"Output", KTS_OPT_ENUM, offsetof(struct deseason_conf, output), "adjusted", 0, 0, output_words,
     NULL, 0, "adjusted: value minus the pattern; residual: also minus the level"},
    {"LevelTau", KTS_OPT_DURATION, offsetof(struct deseason_conf, level_tau), "3600", 1e-6, 1e9,
     NULL, NULL, 0, "time constant of the level in seconds"},
    {"SeasonPeriods", KTS_OPT_DOUBLE, offsetof(struct deseason_conf, season_periods), "4", 0.1, 1e6,
     NULL, NULL, 0, "time constant of the pattern, in periods"},
    {"ScaleTau", KTS_OPT_DURATION, offsetof(struct deseason_conf, scale_tau), "21600", 1e-6, 1e9,
     NULL, NULL, 0, "time constant of the residual scale in seconds"},
    {"Clip", KTS_OPT_DOUBLE, offsetof(struct deseason_conf, clip), "2", 0.5, 100, NULL, NULL, 0,
     "residuals are clipped at Clip * scale before they update anything (Huber)"},
    {"Spread", KTS_OPT_DOUBLE, offsetof(struct deseason_conf, spread), "0.25", 0, 0.5, NULL, NULL,
     0,
     "share of each update also given to the two neighbouring bins (the pattern is assumed "
     "smooth across bins; 0 = bins independent)"},
    {"MinScale", KTS_OPT_DOUBLE, offsetof(struct deseason_conf, min_scale), "0", 0, 1e300, NULL,
     NULL, 0, "smallest residual scale used for clipping (in the series' unit)"},
    KTS_OPT_END,
};

static int deseason_prepare(void *vconf, const char *where)
{
    struct deseason_conf *c = vconf;
    c->period_t = KTS_TIME_FROM_DOUBLE(c->period);
    c->bin_s = c->period / (double)c->bins;
    double k = c->clip;
    c->clip_mean = sqrt(2 / M_PI) * (1 - exp(-k * k / 2)) + k * erfc(k / M_SQRT2);
    if (c->period_t / (kts_time_t)c->bins == 0) {
        kts_log(KTS_LOG_ERR, "%s: Period %g with Bins %lld gives empty bins", where, c->period,
                (long long)c->bins);
        return -EINVAL;
    }
    return 0;
}

static size_t deseason_state_size(const void *vconf)
{
    const struct deseason_conf *c = vconf;
    return sizeof(struct deseason_state) + (size_t)c->bins * sizeof(float) +
           ((size_t)c->bins + 1) / 2;
}

static size_t deseason_max_out(const void *vconf)
{
    (void)vconf;
    return 1;
}

static void deseason_init(const void *vconf, void *vstate)
{
    (void)vconf;
    (void)vstate;
}

static float *profile(struct deseason_state *s)
{
    return (float *)(s + 1);
}
/* Warm-up counts: 4 bits per bin (saturating at 15; beyond that a bin's mean becomes an
 * exponentially weighted one with weight 1/15), two bins per byte. */
/* Phase scales (guarantee 9): Bins / 4 bfloat16 values where the warm-up counts were. */
static size_t nscales(const struct deseason_conf *c)
{
    return (((size_t)c->bins + 1) / 2) / 2;
}
static uint16_t *phase_scales(const struct deseason_conf *c, struct deseason_state *s)
{
    return (uint16_t *)(profile(s) + c->bins);
}
static size_t phase_of(const struct deseason_conf *c, size_t bin)
{
    return bin * nscales(c) / (size_t)c->bins;
}
static float bf16_get(uint16_t v)
{
    uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static uint16_t bf16_put(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even (f is finite, >= 0) */
    return (uint16_t)(u >> 16);
}

static unsigned count_get(const struct deseason_conf *c, struct deseason_state *s, size_t b)
{
    const uint8_t *n = (const uint8_t *)(profile(s) + c->bins);
    return (b & 1) ? n[b / 2] >> 4 : n[b / 2] & 15u;
}

static void count_inc(const struct deseason_conf *c, struct deseason_state *s, size_t b)
{
    uint8_t *n = (uint8_t *)(profile(s) + c->bins);
    unsigned v = count_get(c, s, b);
    if (v < 15)
        n[b / 2] =
            (uint8_t)((b & 1) ? (n[b / 2] & 0x0f) | ((v + 1) << 4) : (n[b / 2] & 0xf0) | (v + 1));
}

static size_t bin_of(const struct deseason_conf *c, kts_time_t t)
{
    size_t b = (size_t)((double)(t % c->period_t) / (double)c->period_t * (double)c->bins);
    return b < (size_t)c->bins ? b : (size_t)c->bins - 1;
}

static float med3(float a, float b, float x)
{
    if (a > b) {
        float t = a;
        a = b;
        b = t;
    }
    return x < a ? a : x > b ? b : x;
}

/* End of warm-up: fill empty bins, clean, centre, initialise level and scale. */
static void finish_warmup(const struct deseason_conf *c, struct deseason_state *s)
{
    size_t n = (size_t)c->bins;
    float *pr = profile(s);
    size_t first = n;
    double total_count = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned k = count_get(c, s, i);
        total_count += k;
        if (k > 0 && first == n)
            first = i;
    }
    if (first == n)
        return; /* cannot happen: the first point filled a bin */
    /* Interpolate runs of empty bins between filled ones, circularly. */
    size_t prev = first;
    for (size_t k = 1; k <= n; k++) {
        size_t i = (first + k) % n;
        if (count_get(c, s, i) == 0)
            continue;
        size_t gap = (i + n - prev) % n;
        if (gap == 0)
            gap = n;
        for (size_t j = 1; j < gap; j++)
            pr[(prev + j) % n] = pr[prev] + (pr[i] - pr[prev]) * (float)j / (float)gap;
        prev = i;
    }
    /* Circular median of 3, in place (keep the originals we still need). */
    float first_orig = pr[0], left = pr[n - 1];
    double dev = 0;
    for (size_t i = 0; i < n; i++) {
        float here = pr[i];
        float right = i + 1 < n ? pr[i + 1] : first_orig;
        pr[i] = med3(left, right, here);
        dev += fabs((double)here - (double)pr[i]);
        left = here;
    }
    /* Then the same [w 1 w] kernel the updates use (guarantee 3). */
    if (c->spread > 0 && n >= 3) {
        float w = (float)c->spread, norm = 1 + 2 * w;
        first_orig = pr[0];
        left = pr[n - 1];
        for (size_t i = 0; i < n; i++) {
            float here = pr[i];
            float right = i + 1 < n ? pr[i + 1] : first_orig;
            pr[i] = (w * left + here + w * right) / norm;
            left = here;
        }
    }
    double mean = 0;
    for (size_t i = 0; i < n; i++)
        mean += pr[i];
    mean /= (double)n;
    s->sum = 0;
    for (size_t i = 0; i < n; i++) {
        pr[i] = (float)(pr[i] - mean);
        s->sum += pr[i];
    }
    s->level = mean;
    /* A bin mean of k points has noise sd/sqrt(k); |x - med3| ~ 1.25 sd of that. */
    double per_bin = total_count / (double)n;
    s->scale = dev / (double)n * 1.2533 * sqrt(per_bin < 1 ? 1 : per_bin);
    /* The counts are not needed any more: their bytes become the phase scales. */
    for (size_t k = 0; k < nscales(c); k++)
        phase_scales(c, s)[k] = bf16_put((float)s->scale);
    s->e_prev = NAN;
    s->ready = 1;
}

static void deseason_step(const void *vconf, void *vstate, const struct kts_point *p,
                          struct kts_out *out)
{
    const struct deseason_conf *c = vconf;
    struct deseason_state *s = vstate;
    float *pr = profile(s);
    struct kts_point o = *p;
    out->stats->in++;
    if (isnan(p->value)) {
        out->stats->nan++;
        kts_out_push(out, p);
        return;
    }
    size_t b = bin_of(c, p->t);
    bool late = s->first_t != 0 && p->t <= s->last_t;
    if (late)
        out->stats->late++;

    if (!s->ready && !late && s->first_t != 0 && p->t - s->first_t >= c->period_t)
        finish_warmup(c, s);
    if (!s->ready) {
        if (!late) {
            if (s->first_t == 0)
                s->first_t = p->t;
            count_inc(c, s, b);
            pr[b] += (float)((p->value - pr[b]) / count_get(c, s, b));
            s->last_t = p->t;
        }
        o.flags |= KTS_PT_WARMING;
        out->stats->warming++;
        kts_out_push(out, &o);
        return;
    }
    double season = pr[b] - s->sum / (double)c->bins;
    double pred = s->level + season;
    double e = p->value - pred;
    o.value = c->output == D_ADJUSTED ? p->value - season : e;
    o.offset += p->value - o.value;
    o.flags &= (uint16_t)~KTS_PT_RAW;
    o.type = KTS_DS_GAUGE;
    uint16_t *ps = nscales(c) > 0 ? &phase_scales(c, s)[phase_of(c, b)] : NULL;
    if (ps != NULL)
        o.scale = bf16_get(*ps);
    if (!late) {
        double dt = kts_dt(p->t, s->last_t);
        double sc = s->scale;
        if (sc < c->min_scale)
            sc = c->min_scale;
        double tiny = fabs(s->level) * 1e-9;
        if (sc < tiny)
            sc = tiny;
        if (sc < DBL_MIN)
            sc = DBL_MIN;
        double lim = c->clip * sc;
        bool gap = dt > 4 * c->level_tau;
        double ec = gap ? e : e > lim ? lim : e < -lim ? -lim : e;
        double a_level = gap ? 1.0 : -expm1(-dt / c->level_tau);
        double level = s->level + a_level * ec;
        double w = dt < c->bin_s ? dt / c->bin_s : 1.0;
        double g = -expm1(-w / c->season_periods);
        double delta = g * (pred + ec - level - season);
        float old = pr[b];
        pr[b] = (float)(pr[b] + delta);
        s->sum += (double)pr[b] - (double)old;
        if (c->spread > 0 && c->bins >= 3) {
            size_t nb[2] = {b == 0 ? (size_t)c->bins - 1 : b - 1,
                            b + 1 == (size_t)c->bins ? 0 : b + 1};
            for (int k = 0; k < 2; k++) {
                old = pr[nb[k]];
                pr[nb[k]] = (float)(pr[nb[k]] + c->spread * delta);
                s->sum += (double)pr[nb[k]] - (double)old;
            }
        }
        s->level = level;
        if (!gap) {
            double a_scale = -expm1(-dt / c->scale_tau);
            double ae = fabs(e) < lim ? fabs(e) : lim;
            s->scale += a_scale * (ae / c->clip_mean - s->scale);
            if (ps != NULL && !isnan(s->e_prev)) {
                double sk = bf16_get(*ps);
                double lim_k = c->clip * (sk > 0.25 * sc ? sk : 0.25 * sc);
                double d = fabs(e - (double)s->e_prev) / M_SQRT2;
                double dc = d < lim_k ? d : lim_k;
                *ps = bf16_put((float)(sk + g * (dc / c->clip_mean - sk)));
            }
        }
        s->e_prev = (float)e;
        s->last_t = p->t;
    }
    kts_out_push(out, &o);
}

const struct kts_filter_ops kts_filter_deseasonalize = {
    .name = "deseasonalize",
    .summary = "remove a daily/weekly/any periodic pattern (robust, time-phased, O(1) per point)",
    .options = deseason_options,
    .conf_size = sizeof(struct deseason_conf),
    .prepare = deseason_prepare,
    .state_size = deseason_state_size,
    .max_out = deseason_max_out,
    .init = deseason_init,
    .step = deseason_step,
    .flush = NULL,
};

/*
 * reseasonalize: adds back what deseasonalize subtracted from each point (the point's offset),
 * so filters between the two work on the deseasonalized series while the output keeps the
 * series' own units. No options, no state. A replaced outlier becomes the expected value
 * (replacement + pattern); filled points get the interpolated pattern.
 */
static size_t reseason_state_size(const void *vconf)
{
    (void)vconf;
    return 0;
}

static void reseason_step(const void *vconf, void *vstate, const struct kts_point *p,
                          struct kts_out *out)
{
    (void)vconf;
    (void)vstate;
    struct kts_point o = *p;
    out->stats->in++;
    if (o.offset != 0) {
        o.value += o.offset;
        o.offset = 0;
        o.flags &= (uint16_t)~KTS_PT_RAW;
    }
    kts_out_push(out, &o);
}

static const struct kts_opt reseason_options[] = {
    KTS_OPT_END,
};

const struct kts_filter_ops kts_filter_reseasonalize = {
    .name = "reseasonalize",
    .summary =
        "add back the pattern an earlier deseasonalize removed (output in the series' units)",
    .options = reseason_options,
    .conf_size = 1,
    .prepare = NULL,
    .state_size = reseason_state_size,
    .max_out = deseason_max_out,
    .init = deseason_init,
    .step = reseason_step,
    .flush = NULL,
};
