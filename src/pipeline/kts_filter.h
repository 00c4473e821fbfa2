/* SPDX-License-Identifier: MIT */
/*
 * kts_filter: the interface every streaming filter implements (dedup, difference, smooth,
 * deseasonalize, outlier, fill), in the style of curl's connection filters: one const ops struct
 * per filter, a registry that lists them (kts_filter_registry.c), and a pipeline
 * (kts_pipeline.c) that runs them in the order written, per data source of each series.
 *
 * Guarantees of the interface (each filter file lists its own on top of these):
 *  1. A filter is a pure function of (config, state, point): it keeps nothing outside the
 *     per-series state blob the pipeline hands it, so two series never share state and two
 *     pipelines never interfere. It reads no clock: all time is the point's event time.
 *  2. The state blob is exactly state_size(conf) bytes, allocated and zeroed by the caller,
 *     aligned to 8 bytes (doubles and 64-bit integers), and set up by init() before the first
 *     step().
 *  3. step() appends between 0 and max_out(conf) points to `out` and never fails: problems are
 *     counted in out->stats, never returned. Points are appended in the order they are meant to
 *     be dispatched.
 *  4. flush() (optional) appends what the filter still holds back (at most max_out(conf)
 *     points) when a series expires or the input ends; after it the state may be discarded.
 *  5. Configuration goes through the filter's option table (kts_conf.h): kts_opt_defaults(),
 *     kts_opt_apply(), then prepare(), which checks combinations of options and derives
 *     constants; every problem is logged naming the option.
 */
#ifndef KTS_FILTER_H
#define KTS_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kts_conf.h"
#include "kts_value.h"

/* Point flags. They accumulate along a pipeline (a filter ORs its own into what it got). */
#define KTS_PT_RAW 0x01u      /* `raw` still holds the original integer (no filter changed it) */
#define KTS_PT_MARKED 0x02u   /* flagged as an outlier (action "mark"); value unchanged */
#define KTS_PT_FILLED 0x04u   /* made up by the fill filter for a gap */
#define KTS_PT_REPLACED 0x08u /* an outlier whose value was replaced */
#define KTS_PT_WARMING 0x10u  /* passed through by a filter that has not learned enough yet */
/* Pipeline output only: no point for this data source at this timestamp (the value is a NaN
 * placeholder). */
#define KTS_PT_ABSENT 0x8000u

/* One value of one data source of one series. */
struct kts_point {
    kts_time_t t;        /* event time (cdtime_t units); 0 is reserved ("no time yet") */
    kts_time_t interval; /* the series' collection interval; 0 when unknown */
    double value;        /* the value as a double (what filters work on) */
    double offset;       /* what deseasonalize subtracted; reseasonalize adds it back */
    union kts_value raw; /* the original value, meaningful while KTS_PT_RAW is set */
    uint8_t type;        /* enum kts_ds_type of the original data source */
    uint8_t reserved;
    uint16_t flags; /* KTS_PT_* */
    /* Noise scale at the point's phase in the period, set by deseasonalize for an outlier
     * filter after it; 0 = none. Filters that change what the value means (difference, smooth)
     * reset it to 0. */
    float scale;
};

/* What a filter instance counts (per pipeline, summed over series). Plugins report these. */
struct kts_filter_stats {
    uint64_t in;       /* points given to step() */
    uint64_t out;      /* points emitted */
    uint64_t dropped;  /* points removed (duplicates, suppressed, outliers dropped, resets) */
    uint64_t replaced; /* outliers replaced */
    uint64_t marked;   /* outliers marked */
    uint64_t filled;   /* points made up for gaps */
    uint64_t warming;  /* points passed through while warming up */
    uint64_t late;     /* points older than the newest one seen for the series */
    uint64_t beyond;   /* points too old for the filter's reorder window */
    uint64_t resets;   /* counter resets (difference) */
    uint64_t nan;      /* NaN inputs */
};

/* Where step() appends. The pipeline sizes `pt` for max_out(conf) points per step. */
struct kts_out {
    struct kts_point *pt;
    size_t n;
    size_t cap;
    struct kts_filter_stats *stats;
};

/* Append one point (the pipeline guarantees room for max_out points per call). */
static inline void kts_out_push(struct kts_out *out, const struct kts_point *p)
{
    if (out->n < out->cap) {
        out->pt[out->n++] = *p;
        out->stats->out++;
    }
}

struct kts_filter_ops {
    const char *name;              /* as written in <Filter "name"> */
    const char *summary;           /* one line, for docs and --help */
    const struct kts_opt *options; /* option table over the filter's config struct */
    size_t conf_size;              /* sizeof the filter's config struct */
    /* Version of the per-series state's layout and meaning, part of every saved state's
     * configuration fingerprint (kts_pipeline_state.h): raise it whenever the state struct or
     * what its fields mean changes, even at the same size, so saved states are refused, never
     * misread. 0 until the first change. */
    unsigned state_version;
    /* Check option combinations and derive constants after kts_opt_apply(). `where` prefixes
     * messages. 0 or -EINVAL (after logging every problem). May be NULL. */
    int (*prepare)(void *conf, const char *where);
    /* Bytes of per-series state for this configuration. */
    size_t (*state_size)(const void *conf);
    /* Most points one step() or flush() can append. */
    size_t (*max_out)(const void *conf);
    /* Set up zeroed state. */
    void (*init)(const void *conf, void *state);
    /* Process one point. `in` is only valid during the call. */
    void (*step)(const void *conf, void *state, const struct kts_point *in, struct kts_out *out);
    /* Emit what is held back; may be NULL. */
    void (*flush)(const void *conf, void *state, struct kts_out *out);
};

/* The registry: NULL-terminated list of every filter, and lookup by name (case-insensitive).
 * The returned pointers are static. */
extern const struct kts_filter_ops *const kts_filters[];
const struct kts_filter_ops *kts_filter_find(const char *name);

extern const struct kts_filter_ops kts_filter_dedup;
extern const struct kts_filter_ops kts_filter_difference;
extern const struct kts_filter_ops kts_filter_smooth;
extern const struct kts_filter_ops kts_filter_deseasonalize;
extern const struct kts_filter_ops kts_filter_outlier;
extern const struct kts_filter_ops kts_filter_fill;
extern const struct kts_filter_ops kts_filter_reseasonalize;

/* Shared helpers for filter implementations. */
static inline double kts_seconds(kts_time_t t)
{
    return KTS_TIME_TO_DOUBLE(t);
}
/* Signed difference a - b in seconds. */
static inline double kts_dt(kts_time_t a, kts_time_t b)
{
    return a >= b ? KTS_TIME_TO_DOUBLE(a - b) : -KTS_TIME_TO_DOUBLE(b - a);
}

/* Neumaier-compensated sum (used by SMA and deseasonalize). */
struct kts_ksum {
    double sum;
    double c;
};
static inline void kts_ksum_add(struct kts_ksum *k, double x)
{
    double t = k->sum + x;
    if ((k->sum >= 0 ? k->sum : -k->sum) >= (x >= 0 ? x : -x))
        k->c += (k->sum - t) + x;
    else
        k->c += (x - t) + k->sum;
    k->sum = t;
}
static inline double kts_ksum_value(const struct kts_ksum *k)
{
    return k->sum + k->c;
}

#endif
