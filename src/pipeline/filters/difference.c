/* SPDX-License-Identifier: MIT */
/*
 * difference: first difference, per-second rate (as collectd's value_to_rate), or a seasonal
 * lag difference.
 *
 * Guarantees:
 *  1. Method "rate" is collectd's value_to_rate(): COUNTER and DERIVE become (new - old) / dt,
 *     ABSOLUTE becomes value / dt, GAUGE passes unchanged. Method "derivative" is
 *     (new - old) / dt for every type (also gauges; ABSOLUTE: value / dt). Method "difference"
 *     is new - old (ABSOLUTE: the value itself). dt is in seconds of event time. The output is a
 *     gauge (the raw integer is no longer carried).
 *  2. Counter wrap as collectd's counter_diff(): when a COUNTER decreases, the increase is taken
 *     modulo 2^32 if the old value fits in 32 bits, else modulo 2^64.
 *  3. Counter reset: a decrease is a wrap only when it is plausible, i.e. the wrapped increase
 *     is below half the counter's range (2^31 resp. 2^63) and, with MaxRate set, the resulting
 *     rate is at most MaxRate per second. Anything else is a reset (counted in `resets`): with
 *     Reset "drop" (default) no point is emitted for it, with Reset "from-zero" the counter is
 *     taken to have restarted from 0 (increase = new value, as Prometheus does). Never a huge
 *     rate. DERIVE may decrease (signed, as in collectd) and is never a reset.
 *  4. Warm-up: the first point of a data source (and, with a lag, every point until a reference
 *     one lag back exists) emits nothing; it is counted in `warming`.
 *  5. Out-of-order and duplicate timestamps (not newer than the last point) emit nothing and
 *     leave the state alone (counted in `late`).
 *  6. NaN input (gauges) emits NaN and keeps the last valid value as the reference, so the rate
 *     after a NaN spans it. Gaps need nothing special: rates are per second of event time.
 *  7. Seasonal difference: with LagPoints N, x(t) - x N points earlier; with Lag L seconds,
 *     x(t) - the point in the same phase bin (LagBins bins per lag) one lag earlier, when that
 *     point is within one bin width of exactly L before; otherwise nothing is emitted (gap).
 *     State: 16 bytes per lag point or bin. Lag works on the values as doubles; put a
 *     "rate" difference before it for counters.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kts_filter.h"
#include "kts_log.h"

enum { M_RATE, M_DERIVATIVE, M_DIFFERENCE };
enum { R_DROP, R_FROM_ZERO };

struct diff_conf {
    int method;
    int reset;
    double max_rate; /* 0 = no limit */
    double lag;      /* seconds */
    int64_t lag_points;
    int64_t lag_bins;
    /* derived */
    size_t ring; /* ring entries, 0 = plain first difference */
    kts_time_t lag_t;
    kts_time_t bin_t;
};

struct lag_entry {
    kts_time_t t;
    double v;
};

struct diff_state {
    kts_time_t prev_t; /* 0 = no previous point */
    /* A plain difference needs the previous value, a seasonal one its ring position: never
     * both, so they share bytes (32 bytes instead of 40 per data source). */
    union {
        struct {
            double prev_v;
            union kts_value prev_raw;
            bool prev_has_raw;
        };
        struct {
            uint32_t ring_n;   /* LagPoints: entries stored so far (<= ring) */
            uint32_t ring_pos; /* LagPoints: next slot to write */
        };
    };
    struct lag_entry ring[];
};

static const char *const method_words[] = {"rate", "derivative", "difference", NULL};
static const char *const reset_words[] = {"drop", "from-zero", NULL};

static const struct kts_opt diff_options[] = {
    {"Method", KTS_OPT_ENUM, offsetof(struct diff_conf, method), "rate", 0, 0, method_words, NULL,
     0,
     "rate: collectd's per-second rate (gauges unchanged); derivative: per-second change of "
     "every type; difference: change since the previous point"},
    {"Reset", KTS_OPT_ENUM, offsetof(struct diff_conf, reset), "drop", 0, 0, reset_words, NULL, 0,
     "on a counter reset: drop the point, or count from zero (increase = new value)"},
    {"MaxRate", KTS_OPT_DOUBLE, offsetof(struct diff_conf, max_rate), "0", 0, 1e300, NULL, NULL, 0,
     "a counter wrap giving more than this rate per second is a reset instead; 0 = no limit"},
    {"Lag", KTS_OPT_DURATION, offsetof(struct diff_conf, lag), "0", 0, 1e9, NULL, NULL, 0,
     "seasonal difference: subtract the value this many seconds earlier (e.g. 86400); 0 = off"},
    {"LagBins", KTS_OPT_INT, offsetof(struct diff_conf, lag_bins), "288", 1, 65536, NULL, NULL, 0,
     "with Lag: phase bins per lag; the earlier value is the one in the same bin"},
    {"LagPoints", KTS_OPT_INT, offsetof(struct diff_conf, lag_points), "0", 0, 65536, NULL, NULL, 0,
     "seasonal difference in points: subtract the value this many points earlier; 0 = off"},
    KTS_OPT_END,
};

static int diff_prepare(void *vconf, const char *where)
{
    struct diff_conf *c = vconf;
    int err = 0;
    if (c->lag > 0 && c->lag_points > 0) {
        kts_log(KTS_LOG_ERR, "%s: Lag and LagPoints are both set; use one of them", where);
        err = -EINVAL;
    }
    if ((c->lag > 0 || c->lag_points > 0) && c->method != M_DIFFERENCE) {
        kts_log(KTS_LOG_ERR,
                "%s: Lag/LagPoints need Method \"difference\" (put a \"rate\" difference first "
                "for counters)",
                where);
        err = -EINVAL;
    }
    c->ring = c->lag_points > 0 ? (size_t)c->lag_points : c->lag > 0 ? (size_t)c->lag_bins : 0;
    c->lag_t = KTS_TIME_FROM_DOUBLE(c->lag);
    c->bin_t = c->lag > 0 ? c->lag_t / (kts_time_t)c->lag_bins : 0;
    if (c->lag > 0 && c->bin_t == 0) {
        kts_log(KTS_LOG_ERR, "%s: Lag %g with LagBins %lld gives empty bins", where, c->lag,
                (long long)c->lag_bins);
        err = -EINVAL;
    }
    return err;
}

static size_t diff_state_size(const void *vconf)
{
    const struct diff_conf *c = vconf;
    return sizeof(struct diff_state) + c->ring * sizeof(struct lag_entry);
}

static size_t diff_max_out(const void *vconf)
{
    (void)vconf;
    return 1;
}

static void diff_init(const void *vconf, void *vstate)
{
    (void)vconf;
    (void)vstate; /* zeroed state is the initial state */
}

/* Increase of a counter from o to n; false when the decrease is a reset. */
static bool counter_increase(const struct diff_conf *c, uint64_t o, uint64_t n, double dt,
                             uint64_t *inc)
{
    if (n >= o) {
        *inc = n - o;
        return true;
    }
    uint64_t d;
    bool plausible;
    if (o <= UINT32_MAX) {
        d = ((uint64_t)UINT32_MAX - o) + n + 1;
        plausible = d < ((uint64_t)1 << 31);
    } else {
        d = (UINT64_MAX - o) + n + 1;
        plausible = d < ((uint64_t)1 << 63);
    }
    if (plausible && c->max_rate > 0 && dt > 0 && (double)d / dt > c->max_rate)
        plausible = false;
    *inc = d;
    return plausible;
}

static void lag_step(const struct diff_conf *c, struct diff_state *s, const struct kts_point *p,
                     struct kts_out *out)
{
    struct kts_point o = *p;
    o.scale = 0; /* the value changes meaning: a phase scale no longer applies */
    o.flags &= (uint16_t)~KTS_PT_RAW;
    o.type = KTS_DS_GAUGE;
    if (s->prev_t != 0 && p->t <= s->prev_t) {
        out->stats->late++;
        return;
    }
    s->prev_t = p->t;
    if (c->lag_points > 0) {
        if (s->ring_n < c->ring) {
            s->ring[s->ring_pos].t = p->t;
            s->ring[s->ring_pos].v = p->value;
            s->ring_pos = (uint32_t)((s->ring_pos + 1) % c->ring);
            s->ring_n++;
            out->stats->warming++;
            return;
        }
        /* ring_pos is the oldest entry: exactly N points back. */
        o.value = p->value - s->ring[s->ring_pos].v;
        s->ring[s->ring_pos].t = p->t;
        s->ring[s->ring_pos].v = p->value;
        s->ring_pos = (uint32_t)((s->ring_pos + 1) % c->ring);
        kts_out_push(out, &o);
        return;
    }
    size_t bin = (size_t)((p->t % c->lag_t) / c->bin_t);
    if (bin >= c->ring)
        bin = c->ring - 1;
    struct lag_entry *e = &s->ring[bin];
    bool have = false;
    if (e->t != 0 && p->t > e->t) {
        kts_time_t back = p->t - e->t;
        kts_time_t lo = c->lag_t > c->bin_t ? c->lag_t - c->bin_t : 0;
        have = back > lo && back < c->lag_t + c->bin_t;
    }
    if (have) {
        o.value = p->value - e->v;
        kts_out_push(out, &o);
    } else {
        out->stats->warming++;
    }
    e->t = p->t;
    e->v = p->value;
}

static void diff_step(const void *vconf, void *vstate, const struct kts_point *p,
                      struct kts_out *out)
{
    const struct diff_conf *c = vconf;
    struct diff_state *s = vstate;

    out->stats->in++;
    if (isnan(p->value))
        out->stats->nan++;
    if (c->ring > 0) {
        lag_step(c, s, p, out);
        return;
    }
    bool has_raw = (p->flags & KTS_PT_RAW) != 0;
    int type = has_raw ? p->type : KTS_DS_GAUGE;
    struct kts_point o = *p;
    o.scale = 0; /* the value changes meaning: a phase scale no longer applies */
    o.flags &= (uint16_t)~KTS_PT_RAW;
    o.type = KTS_DS_GAUGE;

    if (c->method == M_RATE && type == KTS_DS_GAUGE) {
        kts_out_push(out, &o);
        return;
    }
    if (s->prev_t != 0 && p->t <= s->prev_t) {
        out->stats->late++;
        return;
    }
    if (isnan(p->value)) {
        /* Keep the last valid reference (guarantee 6). */
        kts_out_push(out, &o);
        return;
    }
    if (s->prev_t == 0 && type != KTS_DS_ABSOLUTE) {
        s->prev_t = p->t;
        s->prev_v = p->value;
        s->prev_raw = p->raw;
        s->prev_has_raw = has_raw;
        out->stats->warming++;
        return;
    }
    double dt = s->prev_t != 0 ? kts_dt(p->t, s->prev_t) : 0;
    double inc;
    bool emit = true;
    if (type == KTS_DS_ABSOLUTE) {
        inc = (double)p->raw.absolute;
        if (s->prev_t == 0 && c->method != M_DIFFERENCE)
            emit = false; /* no interval to divide by yet */
    } else if (type == KTS_DS_COUNTER && s->prev_has_raw) {
        uint64_t d;
        if (counter_increase(c, s->prev_raw.counter, p->raw.counter, dt, &d)) {
            inc = (double)d;
        } else {
            out->stats->resets++;
            if (c->reset == R_DROP) {
                emit = false;
                out->stats->dropped++;
            }
            inc = (double)p->raw.counter;
        }
    } else if (type == KTS_DS_DERIVE && s->prev_has_raw) {
        inc = (double)(int64_t)((uint64_t)p->raw.derive - (uint64_t)s->prev_raw.derive);
    } else {
        inc = p->value - s->prev_v;
    }
    s->prev_t = p->t;
    s->prev_v = p->value;
    s->prev_raw = p->raw;
    s->prev_has_raw = has_raw;
    if (!emit) {
        if (type == KTS_DS_ABSOLUTE)
            out->stats->warming++;
        return;
    }
    o.value = c->method == M_DIFFERENCE ? inc : inc / dt;
    kts_out_push(out, &o);
}

const struct kts_filter_ops kts_filter_difference = {
    .name = "difference",
    .summary = "first difference, per-second rate (collectd counter semantics) or seasonal lag",
    .options = diff_options,
    .conf_size = sizeof(struct diff_conf),
    .prepare = diff_prepare,
    .state_size = diff_state_size,
    .max_out = diff_max_out,
    .init = diff_init,
    .step = diff_step,
    .flush = NULL,
};
