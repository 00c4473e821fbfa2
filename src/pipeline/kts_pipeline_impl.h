/* SPDX-License-Identifier: MIT */
/*
 * kts_pipeline_impl.h: the private struct of a pipeline, shared by kts_pipeline.c (configuration,
 * processing) and kts_pipeline_state.c (state records). Nothing outside src/pipeline includes it.
 */
#ifndef KTS_PIPELINE_IMPL_H
#define KTS_PIPELINE_IMPL_H

#include <regex.h>

#include "kts_log.h"
#include "kts_pipeline.h"
#include "kts_pipeline_state.h"
#include "kts_series.h"

/* Batches: how many value lists ahead the series' slots are prefetched (kts_pipeline_process). */
#define PF_AHEAD 8

enum { F_HOST, F_PLUGIN, F_PLUGIN_INSTANCE, F_TYPE, F_TYPE_INSTANCE, F_NUM };

struct pattern {
    char *text;
    bool is_regex;
    regex_t re;
};

struct pipe_filter {
    const struct kts_filter_ops *ops;
    void *conf;
    size_t state_off; /* offset of this filter's state in a data source's block */
    struct kts_filter_stats stats;
};

/* Options of the <Pipeline> block itself. */
struct pipe_conf {
    char *out_set[F_NUM];
    char *out_suffix[F_NUM];
    double expire_after;
    int64_t memory_limit_mb;
    int when_full; /* 0 pass, 1 drop */
};

struct kts_pipeline {
    char *name;
    char *where; /* "<where>: pipeline \"name\"" */
    struct pipe_conf conf;
    struct pattern *match[F_NUM];
    size_t match_n[F_NUM];
    size_t match_cap[F_NUM];
    struct pipe_filter *filters;
    size_t nfilters;
    size_t filters_cap;
    size_t filter_blocks; /* <Filter> blocks seen, valid or not: "filter #N" counts from 1 */
    size_t ds_stride;
    size_t buf_cap;
    struct kts_point *buf[2];
    /* Per data source outputs of the current value list. */
    struct kts_point *ds_out;
    size_t *ds_n;
    bool *taken;
    struct kts_ds *out_ds;
    uint16_t *out_flags;
    size_t ds_cap;
    struct kts_series_table *series;
    kts_time_t clock;
    struct kts_pipeline_stats stats;
    struct kts_ratelimit rl_name;
    bool config_failed;
    /* Series keys of the value lists being processed (a ring, for prefetching a batch). */
    char keys[PF_AHEAD + 1][KTS_SERIES_IDENTITY_MAX];
    size_t key_lens[PF_AHEAD + 1];
    /* State records (kts_pipeline_state.c). */
    uint64_t fingerprint;
    int32_t pos_partition; /* kts_pipeline_set_position(): -1 = none */
    int64_t pos_offset;
    bool tracking; /* tombstones are remembered (from the first export or import on) */
    struct pipe_tomb *tombs;
    size_t ntombs, tombs_cap;
    struct kts_pipeline_state_stats sstats;
    bool refusal_logged[KTS_STATE_REASONS];
    /* The changed series of every partition, found by one walk over the table and reused by
     * the exports of the other partitions while the table is unchanged (kts_pipeline_state.c):
     * `mutations` counts the calls that may add, remove or change a series. */
    uint64_t mutations;
    struct pipe_dirty *dirty;
    size_t ndirty, dirty_cap;
    uint64_t dirty_at; /* `mutations` when `dirty` was made; valid only while equal */
    bool dirty_valid;
};

/* A changed series, as kts_series_foreach() gives it (valid while `mutations` is unchanged). */
struct pipe_dirty {
    const void *key;
    size_t key_len;
    void *state;
    size_t state_size;
    int32_t partition;
};

/* A series' state: this header, then ds_num blocks of ds_stride bytes, one per data source
 * (every byte per series counts at a million series: 16 bytes). */
#define SERIES_DIRTY 0x1u     /* processed since its last export */
#define SERIES_PERSISTED 0x2u /* exported or imported: its expiry needs a tombstone */
struct pipe_series_hdr {
    int64_t offset;    /* Kafka offset of the last value applied; -1 = none */
    int32_t partition; /* its partition; -1 = none */
    uint32_t flags;    /* SERIES_* */
};
#define SERIES_HDR sizeof(struct pipe_series_hdr)

/* A series that expired since the last export (for its tombstone). */
struct pipe_tomb {
    char *key; /* the series identity */
    size_t key_len;
    int32_t partition;
};

/* kts_pipeline_state.c, called by kts_pipeline.c. */
uint64_t kts_pipeline_compute_fingerprint(const struct kts_pipeline *p);
void kts_pipeline_state_expired(struct kts_pipeline *p, const void *key, size_t key_len,
                                const struct pipe_series_hdr *h);
void kts_pipeline_state_free(struct kts_pipeline *p);
/* Set up the per-series state of `ds_num` data sources (header included, zeroed). */
void kts_pipeline_init_series(struct kts_pipeline *p, unsigned char *state, size_t ds_num);

#endif
