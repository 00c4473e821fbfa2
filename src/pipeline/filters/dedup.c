/* SPDX-License-Identifier: MIT */
/*
 * dedup: removes exact redeliveries (same series, same timestamp) and, optionally, suppresses
 * unchanged values with an event-time heartbeat.
 *
 * Guarantees:
 *  1. A point whose timestamp equals the newest one seen for the data source is a duplicate
 *     and is dropped (counted in `dropped`).
 *  2. Reordering: older timestamps are remembered in a 64-slot bitmap keyed by interval index
 *     behind the newest point (slot k = round((newest - t) / interval)), as IPsec anti-replay.
 *     A redelivered point up to 63 intervals behind the newest is dropped; a late point seen
 *     for the first time passes (counted in `late`). State: 16 bytes (+56 with suppression).
 *  3. Beyond the window (64 or more intervals behind the newest, or no interval known yet): the
 *     point is counted in `beyond` and dropped (Beyond "drop", default: downstream writers such
 *     as rrdtool reject such old points anyway) or passed (Beyond "pass").
 *  4. Slots are exact as long as the series' timestamps jitter by less than a quarter interval
 *     around their grid; two distinct points in the same slot (sub-interval spacing) make the
 *     second one look like a redelivery (it is then dropped). A point less than half an interval
 *     behind the newest is never mistaken for one.
 *  5. The interval is the Interval option when set, else the point's own interval (collectd's),
 *     else the spacing of the last two in-order points.
 *  6. Gaps: a gap of 64 intervals or more clears the bitmap (everything before is then beyond).
 *  7. NaN values are deduplicated by timestamp like any other; for suppression NaN equals NaN.
 *  8. Suppression (SuppressUnchanged true): an in-order point whose value is within Tolerance of
 *     the last in-order value is held back unless Heartbeat seconds of event time have passed
 *     since the last emitted point. When the value changes, the held last point of the flat run
 *     is emitted first, then the new point, so a graph of the output keeps both edges of every
 *     step. flush() emits a held point. Late points are never suppressed.
 *  9. No warm-up; no wall clock.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kts_filter.h"
#include "kts_log.h"

struct dedup_conf {
    double interval; /* seconds; 0 = from the points */
    int beyond;      /* 0 drop, 1 pass */
    bool suppress;
    double heartbeat; /* seconds; 0 = never re-emit an unchanged value */
    double tolerance;
    kts_time_t heartbeat_t; /* derived */
    kts_time_t interval_t;  /* derived */
};

struct dedup_state {
    kts_time_t hwm;     /* newest timestamp seen; 0 = none */
    uint64_t seen;      /* bit k: a point was seen k slots behind hwm */
    kts_time_t spacing; /* last in-order spacing, for series without an interval */
};

struct dedup_suppress {
    kts_time_t last_emit_t;
    double last_value;
    bool have_last;
    bool holding;
    struct kts_point held;
};

static const char *const beyond_words[] = {"drop", "pass", NULL};

static const struct kts_opt dedup_options[] = {
    {"Interval", KTS_OPT_DURATION, offsetof(struct dedup_conf, interval), "0", 0, 1e9, NULL, NULL,
     0, "slot width in seconds for the reorder window; 0 = the series' own interval"},
    {"Beyond", KTS_OPT_ENUM, offsetof(struct dedup_conf, beyond), "drop", 0, 0, beyond_words, NULL,
     0, "what to do with a point 64 or more intervals older than the newest: drop or pass"},
    {"SuppressUnchanged", KTS_OPT_BOOL, offsetof(struct dedup_conf, suppress), "false", 0, 0, NULL,
     NULL, 0, "also hold back values equal to the previous one (keeps both edges of a flat run)"},
    {"Heartbeat", KTS_OPT_DURATION, offsetof(struct dedup_conf, heartbeat), "600", 0, 1e9, NULL,
     NULL, 0,
     "with SuppressUnchanged: emit an unchanged value at least every this many seconds "
     "of event time; 0 = never"},
    {"Tolerance", KTS_OPT_DOUBLE, offsetof(struct dedup_conf, tolerance), "0", 0, 1e300, NULL, NULL,
     0, "with SuppressUnchanged: values closer than this count as unchanged"},
    KTS_OPT_END,
};

static int dedup_prepare(void *vconf, const char *where)
{
    struct dedup_conf *c = vconf;
    (void)where;
    c->interval_t = KTS_TIME_FROM_DOUBLE(c->interval);
    c->heartbeat_t = KTS_TIME_FROM_DOUBLE(c->heartbeat);
    return 0;
}

static size_t dedup_state_size(const void *vconf)
{
    const struct dedup_conf *c = vconf;
    return sizeof(struct dedup_state) + (c->suppress ? sizeof(struct dedup_suppress) : 0);
}

static size_t dedup_max_out(const void *vconf)
{
    (void)vconf;
    return 2;
}

static void dedup_init(const void *vconf, void *vstate)
{
    (void)vconf;
    memset(vstate, 0, sizeof(struct dedup_state));
}

static kts_time_t slot_width(const struct dedup_conf *c, const struct dedup_state *s,
                             const struct kts_point *p)
{
    if (c->interval_t > 0)
        return c->interval_t;
    if (p->interval > 0)
        return p->interval;
    return s->spacing;
}

static bool same_value(double a, double b, double tol)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return fabs(a - b) <= tol;
}

static void suppress_step(const struct dedup_conf *c, struct dedup_suppress *su,
                          const struct kts_point *p, struct kts_out *out)
{
    if (su->have_last && same_value(p->value, su->last_value, c->tolerance) &&
        (c->heartbeat_t == 0 || p->t - su->last_emit_t < c->heartbeat_t)) {
        su->held = *p;
        su->holding = true;
        out->stats->dropped++;
        return;
    }
    if (su->holding && !same_value(p->value, su->last_value, c->tolerance)) {
        out->stats->dropped--; /* counted when held; emitted after all */
        kts_out_push(out, &su->held);
    }
    su->holding = false;
    su->have_last = true;
    su->last_value = p->value;
    su->last_emit_t = p->t;
    kts_out_push(out, p);
}

static void dedup_step(const void *vconf, void *vstate, const struct kts_point *p,
                       struct kts_out *out)
{
    const struct dedup_conf *c = vconf;
    struct dedup_state *s = vstate;
    struct dedup_suppress *su = c->suppress ? (struct dedup_suppress *)(s + 1) : NULL;

    out->stats->in++;
    if (isnan(p->value))
        out->stats->nan++;
    if (s->hwm == 0 || p->t > s->hwm) {
        if (s->hwm != 0) {
            kts_time_t w = slot_width(c, s, p);
            kts_time_t gap = p->t - s->hwm;
            uint64_t k = w > 0 ? (gap + w / 2) / w : 64;
            if (k < 1)
                k = 1;
            s->seen = k >= 64 ? 0 : s->seen << k;
            s->spacing = gap;
        }
        s->seen |= 1;
        s->hwm = p->t;
        if (su != NULL)
            suppress_step(c, su, p, out);
        else
            kts_out_push(out, p);
        return;
    }
    if (p->t == s->hwm) {
        out->stats->dropped++;
        return;
    }
    /* Older than the newest point. */
    kts_time_t w = slot_width(c, s, p);
    kts_time_t back = s->hwm - p->t;
    uint64_t k = w > 0 ? (back + w / 2) / w : 64;
    if (k >= 64) {
        out->stats->beyond++;
        if (c->beyond == 0) {
            out->stats->dropped++;
            return;
        }
        out->stats->late++;
        kts_out_push(out, p);
        return;
    }
    if (k > 0) {
        if (s->seen & ((uint64_t)1 << k)) {
            out->stats->dropped++;
            return;
        }
        s->seen |= (uint64_t)1 << k;
    }
    out->stats->late++;
    kts_out_push(out, p);
}

static void dedup_flush(const void *vconf, void *vstate, struct kts_out *out)
{
    const struct dedup_conf *c = vconf;
    struct dedup_state *s = vstate;
    if (!c->suppress)
        return;
    struct dedup_suppress *su = (struct dedup_suppress *)(s + 1);
    if (su->holding) {
        su->holding = false;
        out->stats->dropped--;
        kts_out_push(out, &su->held);
    }
}

const struct kts_filter_ops kts_filter_dedup = {
    .name = "dedup",
    .summary = "drop exact redeliveries (same timestamp), optionally suppress unchanged values",
    .options = dedup_options,
    .conf_size = sizeof(struct dedup_conf),
    .prepare = dedup_prepare,
    .state_size = dedup_state_size,
    .max_out = dedup_max_out,
    .init = dedup_init,
    .step = dedup_step,
    .flush = dedup_flush,
};
