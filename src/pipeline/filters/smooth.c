/* SPDX-License-Identifier: MIT */
/*
 * smooth: simple moving average over a time window, time-aware EMA, or Holt (level + trend).
 *
 * Guarantees:
 *  1. SMA: the output for a point is the mean of the points received so far whose timestamps
 *     lie in (newest - Window, newest], where newest is the newest timestamp received (so for
 *     in-order data, the trailing window ending at the point). The sum is Neumaier-compensated
 *     and rebuilt from zero whenever the window empties, so it does not drift. The window holds
 *     at most MaxPoints points (16 bytes each): on denser series the oldest leave early.
 *  2. EMA: s += alpha * (x - s) with alpha = 1 - exp(-dt / Tau), dt the event time since the
 *     previous point; the first point initialises s. Irregular sampling and gaps are weighted
 *     by their duration: after a gap much longer than Tau the output follows the new value.
 *  3. Holt: level and trend (per second), both time-aware: pred = level + trend * dt,
 *     level = pred + a * (x - pred), trend += b * ((level - old level) / dt - trend) with
 *     a = 1 - exp(-dt / Tau), b = 1 - exp(-dt / TrendTau). The output is the level. With a
 *     regular interval this is statsmodels' Holt with initial level x0 and initial trend 0.
 *  4. NaN input is passed through as NaN and does not touch the state.
 *  5. Out-of-order points: SMA inserts them in time order when they fall in the window (else
 *     they are left out) and outputs the window mean; EMA/Holt output the current level and
 *     leave the state alone; both count them in `late`. A duplicate timestamp counts as late.
 *  6. No warm-up: the first output is the first value (an empty SMA window cannot occur, since
 *     the newest point is always in it).
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kts_filter.h"
#include "kts_log.h"

enum { S_SMA, S_EMA, S_HOLT };

struct smooth_conf {
    int method;
    double window;
    int64_t max_points;
    double tau;
    double trend_tau;
    kts_time_t window_t; /* derived */
};

struct sma_entry {
    kts_time_t t;
    double v;
};

struct sma_state {
    kts_time_t newest;
    struct kts_ksum sum;
    uint32_t head; /* index of the oldest entry */
    uint32_t n;
    struct sma_entry e[];
};

struct ema_state {
    kts_time_t last_t; /* 0 = empty */
    double level;
    double trend; /* Holt only, per second */
};

static const char *const method_words[] = {"sma", "ema", "holt", NULL};

static const struct kts_opt smooth_options[] = {
    {"Method", KTS_OPT_ENUM, offsetof(struct smooth_conf, method), "ema", 0, 0, method_words, NULL,
     0, "sma: mean over a time window; ema: exponential, time-aware; holt: level + trend"},
    {"Window", KTS_OPT_DURATION, offsetof(struct smooth_conf, window), "300", 1e-6, 1e9, NULL, NULL,
     0, "sma: window length in seconds of event time"},
    {"MaxPoints", KTS_OPT_INT, offsetof(struct smooth_conf, max_points), "64", 1, 65536, NULL, NULL,
     0, "sma: most points kept in the window (16 bytes each per series)"},
    {"Tau", KTS_OPT_DURATION, offsetof(struct smooth_conf, tau), "300", 1e-6, 1e9, NULL, NULL, 0,
     "ema/holt: time constant of the level in seconds (alpha = 1 - exp(-dt/Tau))"},
    {"TrendTau", KTS_OPT_DURATION, offsetof(struct smooth_conf, trend_tau), "3600", 1e-6, 1e9, NULL,
     NULL, 0, "holt: time constant of the trend in seconds"},
    KTS_OPT_END,
};

static int smooth_prepare(void *vconf, const char *where)
{
    struct smooth_conf *c = vconf;
    (void)where;
    c->window_t = KTS_TIME_FROM_DOUBLE(c->window);
    return 0;
}

static size_t smooth_state_size(const void *vconf)
{
    const struct smooth_conf *c = vconf;
    if (c->method == S_SMA)
        return sizeof(struct sma_state) + (size_t)c->max_points * sizeof(struct sma_entry);
    /* EMA never touches the trend: 16 bytes instead of 24 per data source. */
    if (c->method == S_EMA)
        return offsetof(struct ema_state, trend);
    return sizeof(struct ema_state);
}

static size_t smooth_max_out(const void *vconf)
{
    (void)vconf;
    return 1;
}

static void smooth_init(const void *vconf, void *vstate)
{
    (void)vconf;
    (void)vstate;
}

static void sma_remove_oldest(const struct smooth_conf *c, struct sma_state *s)
{
    kts_ksum_add(&s->sum, -s->e[s->head].v);
    s->head = (uint32_t)((s->head + 1) % (uint32_t)c->max_points);
    if (--s->n == 0)
        memset(&s->sum, 0, sizeof(s->sum));
}

static void sma_step(const struct smooth_conf *c, struct sma_state *s, const struct kts_point *p,
                     struct kts_out *out)
{
    uint32_t cap = (uint32_t)c->max_points;
    struct kts_point o = *p;
    o.scale = 0; /* the value changes meaning: a phase scale no longer applies */
    bool late = s->n > 0 && p->t <= s->newest;
    if (late)
        out->stats->late++;
    if (!late)
        s->newest = p->t;
    kts_time_t lo = s->newest > c->window_t ? s->newest - c->window_t : 0;
    while (s->n > 0 && s->e[s->head].t <= lo)
        sma_remove_oldest(c, s);
    if (p->t > lo) {
        if (s->n == cap) {
            if (p->t < s->e[s->head].t)
                goto done; /* older than everything in a full window */
            sma_remove_oldest(c, s);
        }
        /* Insert in time order (at the end for in-order data). */
        uint32_t i = s->n;
        while (i > 0) {
            uint32_t prev = (s->head + i - 1) % cap;
            if (s->e[prev].t <= p->t)
                break;
            s->e[(s->head + i) % cap] = s->e[prev];
            i--;
        }
        s->e[(s->head + i) % cap].t = p->t;
        s->e[(s->head + i) % cap].v = p->value;
        s->n++;
        kts_ksum_add(&s->sum, p->value);
    }
done:
    o.value = s->n > 0 ? kts_ksum_value(&s->sum) / (double)s->n : p->value;
    o.flags &= (uint16_t)~KTS_PT_RAW;
    kts_out_push(out, &o);
}

static void ema_step(const struct smooth_conf *c, struct ema_state *s, const struct kts_point *p,
                     struct kts_out *out)
{
    struct kts_point o = *p;
    o.scale = 0; /* the value changes meaning: a phase scale no longer applies */
    o.flags &= (uint16_t)~KTS_PT_RAW;
    if (s->last_t == 0) {
        s->last_t = p->t;
        s->level = p->value;
        if (c->method != S_EMA)
            s->trend = 0;
    } else if (p->t <= s->last_t) {
        out->stats->late++;
    } else {
        double dt = kts_dt(p->t, s->last_t);
        double a = -expm1(-dt / c->tau);
        if (c->method == S_EMA) {
            s->level += a * (p->value - s->level);
        } else {
            double b = -expm1(-dt / c->trend_tau);
            double pred = s->level + s->trend * dt;
            double level = pred + a * (p->value - pred);
            s->trend += b * ((level - s->level) / dt - s->trend);
            s->level = level;
        }
        s->last_t = p->t;
    }
    o.value = s->level;
    kts_out_push(out, &o);
}

static void smooth_step(const void *vconf, void *vstate, const struct kts_point *p,
                        struct kts_out *out)
{
    const struct smooth_conf *c = vconf;
    out->stats->in++;
    if (isnan(p->value)) {
        out->stats->nan++;
        kts_out_push(out, p);
        return;
    }
    if (c->method == S_SMA)
        sma_step(c, vstate, p, out);
    else
        ema_step(c, vstate, p, out);
}

const struct kts_filter_ops kts_filter_smooth = {
    .name = "smooth",
    .summary = "moving average over a time window, time-aware EMA, or Holt level + trend",
    .options = smooth_options,
    .conf_size = sizeof(struct smooth_conf),
    .prepare = smooth_prepare,
    .state_size = smooth_state_size,
    .max_out = smooth_max_out,
    .init = smooth_init,
    .step = smooth_step,
    .flush = NULL,
};
