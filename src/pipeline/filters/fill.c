/* SPDX-License-Identifier: MIT */
/*
 * fill: fills gaps of up to MaxGap missing intervals, linearly or with the last value.
 *
 * Guarantees:
 *  1. With interval I (the Interval option, else the point's own interval), a point arriving
 *     m+1 intervals after the previous one (m = round(dt / I) - 1) is preceded by m filled
 *     points at previous + k*I (k = 1..m), when 1 <= m <= MaxGap. Longer gaps are left alone
 *     (filling them would invent data): nothing is emitted for them.
 *  2. Filled points carry KTS_PT_FILLED (plugins put it in the meta data; kts-filter prints
 *     "filled"), are gauges, and come before the point that closed the gap, in time order.
 *  3. Linear: the straight line between the two real neighbours; Method "previous": the value
 *     before the gap. Timestamps jittering by less than half an interval never cause a fill.
 *  4. NaN: a gap next to a NaN value is not filled (there is nothing to interpolate).
 *  5. Out-of-order and duplicate timestamps pass through unchanged without filling (counted in
 *     `late`) and do not move the reference point.
 *  6. Without an interval (no option, interval 0 in the point) nothing is filled.
 *  7. No warm-up beyond the first point; state: 24 bytes.
 *  8. Filled points get the offset (see reseasonalize) interpolated between the neighbours.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kts_filter.h"
#include "kts_log.h"

enum { F_LINEAR, F_PREVIOUS };

struct fill_conf {
    int method;
    int64_t max_gap;
    double interval;
    kts_time_t interval_t; /* derived */
};

struct fill_state {
    kts_time_t last_t; /* 0 = none */
    double last_v;
    double last_offset; /* the point's offset (deseasonalize), interpolated like the value */
};

static const char *const method_words[] = {"linear", "previous", NULL};

static const struct kts_opt fill_options[] = {
    {"Method", KTS_OPT_ENUM, offsetof(struct fill_conf, method), "linear", 0, 0, method_words, NULL,
     0, "linear: interpolate between the neighbours; previous: repeat the last value"},
    {"MaxGap", KTS_OPT_INT, offsetof(struct fill_conf, max_gap), "5", 1, 1000, NULL, NULL, 0,
     "fill gaps of at most this many missing intervals; longer gaps stay gaps"},
    {"Interval", KTS_OPT_DURATION, offsetof(struct fill_conf, interval), "0", 0, 1e9, NULL, NULL, 0,
     "expected spacing in seconds; 0 = the series' own interval"},
    KTS_OPT_END,
};

static int fill_prepare(void *vconf, const char *where)
{
    struct fill_conf *c = vconf;
    (void)where;
    c->interval_t = KTS_TIME_FROM_DOUBLE(c->interval);
    return 0;
}

static size_t fill_state_size(const void *vconf)
{
    (void)vconf;
    return sizeof(struct fill_state);
}

static size_t fill_max_out(const void *vconf)
{
    const struct fill_conf *c = vconf;
    return (size_t)c->max_gap + 1;
}

static void fill_init(const void *vconf, void *vstate)
{
    (void)vconf;
    (void)vstate;
}

static void fill_step(const void *vconf, void *vstate, const struct kts_point *p,
                      struct kts_out *out)
{
    const struct fill_conf *c = vconf;
    struct fill_state *s = vstate;
    out->stats->in++;
    if (isnan(p->value))
        out->stats->nan++;
    if (s->last_t != 0 && p->t <= s->last_t) {
        out->stats->late++;
        kts_out_push(out, p);
        return;
    }
    kts_time_t iv = c->interval_t > 0 ? c->interval_t : p->interval;
    if (s->last_t != 0 && iv > 0 && !isnan(s->last_v) && !isnan(p->value)) {
        kts_time_t gap = p->t - s->last_t;
        uint64_t steps = (gap + iv / 2) / iv; /* intervals spanned */
        if (steps >= 2 && steps - 1 <= (uint64_t)c->max_gap) {
            double span = kts_dt(p->t, s->last_t);
            for (uint64_t k = 1; k < steps; k++) {
                struct kts_point f = *p;
                f.t = s->last_t + k * iv;
                f.type = KTS_DS_GAUGE;
                f.flags = (uint16_t)((p->flags & ~KTS_PT_RAW) | KTS_PT_FILLED);
                f.flags &= (uint16_t)(~(KTS_PT_MARKED | KTS_PT_REPLACED));
                double w = kts_dt(f.t, s->last_t) / span;
                if (c->method == F_LINEAR)
                    f.value = s->last_v + (p->value - s->last_v) * w;
                else
                    f.value = s->last_v;
                f.offset = s->last_offset + (p->offset - s->last_offset) * w;
                out->stats->filled++;
                kts_out_push(out, &f);
            }
        }
    }
    s->last_t = p->t;
    s->last_v = p->value;
    s->last_offset = p->offset;
    kts_out_push(out, p);
}

const struct kts_filter_ops kts_filter_fill = {
    .name = "fill",
    .summary = "fill short gaps linearly or with the last value; filled points are flagged",
    .options = fill_options,
    .conf_size = sizeof(struct fill_conf),
    .prepare = fill_prepare,
    .state_size = fill_state_size,
    .max_out = fill_max_out,
    .init = fill_init,
    .step = fill_step,
    .flush = NULL,
};
