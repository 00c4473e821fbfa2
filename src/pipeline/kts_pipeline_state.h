/* SPDX-License-Identifier: MIT */
/*
 * kts_pipeline_state: one series' complete pipeline state as a versioned binary record, so that
 * a pipeline can be stopped, moved and restarted without its output noticing.
 *
 * What a record holds (everything the output of the series depends on):
 *   - every filter's per-series state blob, for every data source of the series (the filters
 *     keep all of it in their state_size(conf) bytes: no pointers, kts_filter.h guarantee 1);
 *   - the number of data sources (a series whose data sources change is restarted anyway);
 *   - the series identity (kts_series_identity(), kts_series.h guarantee 7);
 *   - the event time of the newest value applied (the series table's idle-expiry time) and
 *     the Kafka position (partition, offset) of the last value applied (-1/-1: none);
 *   - the configuration fingerprint: a 64-bit hash (kts_hash64) of the layout tag and of every
 *     option that can change a series' state or output: each filter's name, state size and
 *     state version (kts_filter_ops.state_version) and every option of its table (defaults
 *     included, in table order), the <Match> patterns, the Output* options and ExpireAfter. So a
 *     release that adds an option to a filter, or changes a filter's state, makes the saved
 *     states of the pipelines using that filter refused (counted): they relearn once.
 *     MemoryLimit and WhenFull are left out (they decide whether a series is kept, not what a
 *     kept series computes).
 *
 * Record format, version 1 (integers little-endian, whatever the host):
 *     u32 magic "KTSS" (0x5353544b) | u16 version (1) | u16 layout tag |
 *     u64 fingerprint | i64 time | i32 partition | i64 offset |
 *     u16 identity length | identity bytes |
 *     u16 data sources | u16 filters | u32 bytes per data source |
 *     per filter: u32 blob length (per data source) |
 *     the blobs: data source 0's filter blobs in filter order, then data source 1's, ... |
 *     u32 CRC-32C of every byte before it.
 * The blobs are in host layout (doubles, integers and structs as the host lays them out): the
 * layout tag (byte order, sizeof(long), alignof(double), alignof(int64_t), sizeof the filter
 * point) is in the header and in the fingerprint, so a record from another layout is refused
 * (KTS_STATE_CONFIG), never misread.
 *
 * The key of a record (the Kafka message key of a state topic, the key of a state file entry):
 * the pipeline name, a NUL, then the series identity bytes (kts_series_identity()).
 *
 * Guarantees (tests/t-pipeline-state.c):
 *  1. Restore is invisible: a pipeline that exports every series at any point of a stream, and
 *     a new pipeline built from the same configuration that imports those records and continues
 *     with the rest of the stream, emit bit-identical output (values, flags, timestamps, held
 *     points and what flush() emits) to a pipeline that never stopped. Limit: the moment an idle
 *     series expires (and its held points are flushed) depends on the table's scan order, which
 *     is not part of a record: it is kept when every series is exported and imported in export
 *     order (the test covers ExpireAfter), otherwise expiry may come at another place in the
 *     stream, with the same values.
 *  2. A record from another configuration (fingerprint), layout or an unknown version is refused
 *     for that series: counted by reason, logged once per pipeline per reason; the series is
 *     absent and starts fresh with its next value.
 *  3. A corrupt or truncated record (bad magic, lengths that do not add up, CRC-32C mismatch,
 *     blob sizes that are not this configuration's) is refused (KTS_STATE_CORRUPT), never read
 *     out of bounds, never a crash. Limit: the checksum detects damage, not a crafted record;
 *     records are trusted input (a file or topic this program writes), the filters do not
 *     re-validate a blob that has the right checksum, configuration and sizes.
 *  4. Absorbed values: every series keeps the Kafka position (partition P, offset O) of the
 *     last value applied to its state, from an imported record or from kts_pipeline_set_position()
 *     before a value list was processed. A value list processed after
 *     kts_pipeline_set_position(P, offset) with offset <= O on the same partition P is not run
 *     through the filters: the state has already absorbed it (after an import: its output was
 *     written before the record was published, which the Kafka side orders so; without an
 *     import: the consumer delivered it again). It emits nothing, changes nothing and is
 *     counted in `absorbed`. A value list on another partition, or without a position (-1), is
 *     processed normally; ts_filter and kts-filter never set one.
 *  5. Changed-only export: kts_pipeline_state_export(..., changed_only = true, ...) emits
 *     exactly the series processed since their last export or import (of that partition; an
 *     imported series is clean: it equals its record),
 *     then tombstones (rec NULL) for the series of that partition that expired since the last
 *     export and had been exported or imported before (a series never persisted needs none).
 *  6. Tracking costs next to nothing per value: one flag and, with a position, 12 bytes stored
 *     in a per-series header (16 bytes per series) on a line the pipeline touches anyway
 *     (measured: +4 instructions per point, docs/PERFORMANCE.md). Export and import are not on
 *     the per-value path.
 *  7. Not thread-safe, like the pipeline (kts_pipeline.h guarantee 7).
 */
#ifndef KTS_PIPELINE_STATE_H
#define KTS_PIPELINE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kts_pipeline.h"

#define KTS_STATE_MAGIC 0x5353544bu /* "KTSS" read as a little-endian u32 */
#define KTS_STATE_VERSION_CURRENT 1

/*
 * The Kafka position attached to the series touched by the following kts_pipeline_process()
 * calls (until the next call): read_kafka_ts calls it per message. -1/-1 (the default) = none;
 * ts_filter and kts-filter never call it. A value list with a position is checked against the
 * series' imported position first (guarantee 4).
 */
void kts_pipeline_set_position(struct kts_pipeline *p, int32_t partition, int64_t offset);

/*
 * Called by kts_pipeline_state_export() for each record: `key` of `klen` bytes (the pipeline
 * name, NUL, the series identity), the record `rec` of `rlen` bytes, or rec == NULL and
 * rlen == 0 for a tombstone (the series expired since the last export); `partition` is the
 * series' stored partition (-1: none). The buffers are only valid during the call. Return 0 to
 * go on; a non-zero value stops the export, which returns it (the series not yet exported stay
 * changed, their tombstones stay pending).
 */
typedef int (*kts_state_record_fn)(const void *key, size_t klen, const void *rec, size_t rlen,
                                   int32_t partition, void *opaque);

/*
 * Export the state of every series of `partition` (by its stored position; -1: every series),
 * all of them or (changed_only) those changed since their last export, then the tombstones of
 * that partition (guarantee 5). Each series exported is marked clean. From the first export or
 * import on, the pipeline remembers the keys of persisted series that expire, for the
 * tombstones (a pipeline that never persists keeps nothing).
 * A changed-only export of one partition walks the whole table once and keeps the list of every
 * partition's changed series (about 40 bytes each): the next partitions' exports use that list
 * while no value was processed, flushed or imported since (one walk per checkpoint of all the
 * partitions, not one per partition).
 * Returns 0, -ENOMEM, or the first non-zero value `fn` returned.
 */
int kts_pipeline_state_export(struct kts_pipeline *p, int32_t partition, bool changed_only,
                              kts_state_record_fn fn, void *opaque);

/* Why a record was refused (kts_pipeline_state_import()). */
enum kts_state_refusal {
    KTS_STATE_OK = 0,
    KTS_STATE_CORRUPT, /* bad magic, lengths, checksum: damaged or truncated */
    KTS_STATE_VERSION, /* a record version this build does not know */
    KTS_STATE_CONFIG,  /* another configuration fingerprint or host layout */
    KTS_STATE_KEY,     /* the key is not this pipeline's, or does not match the record */
    KTS_STATE_NOMEM,   /* out of memory, or the pipeline's MemoryLimit refused the series */
    KTS_STATE_REASONS  /* number of reasons */
};

/* A word for a reason ("corrupt", "version", "config", "key", "nomem"; "ok"). */
const char *kts_state_refusal_name(enum kts_state_refusal why);

/*
 * Install the state in record `rec` (`rlen` bytes) under `key` (`klen` bytes), replacing the
 * series' state if it exists. rec == NULL (or rlen == 0) is a tombstone: the series is removed
 * (nothing emitted). An imported series is clean (it equals what is stored) until it is
 * processed again; the pipeline's clock (for idle expiry) moves to the record's time if later.
 * Returns 0 (installed, or a tombstone applied) or -1 (refused: *why, if not NULL, says why; the
 * series is absent and starts fresh; counted and logged once per pipeline per reason).
 */
int kts_pipeline_state_import(struct kts_pipeline *p, const void *key, size_t klen, const void *rec,
                              size_t rlen, enum kts_state_refusal *why);

/*
 * Forget every series whose stored partition is `partition` (a revoked partition: its new owner
 * restores it from the records), and the pending tombstones of that partition. Nothing is
 * emitted, nothing is exported.
 */
void kts_pipeline_state_drop_partition(struct kts_pipeline *p, int32_t partition);

/*
 * Check a record without a pipeline (the fuzz target, tools): decode the header and verify the
 * lengths and the checksum. 0 and the fields, or -1 and *why.
 */
struct kts_state_info {
    uint16_t version;
    uint16_t layout;
    uint64_t fingerprint;
    int64_t time; /* kts_time_t of the newest value applied */
    int32_t partition;
    int64_t offset;
    const char *identity; /* points into the record */
    size_t identity_len;
    uint16_t ds_num;
    uint16_t nfilters;
    uint32_t ds_bytes;              /* blob bytes per data source (the sum of the lengths) */
    const unsigned char *blob_lens; /* nfilters little-endian u32, in the record */
    const unsigned char *blobs;     /* ds_num * ds_bytes bytes, in the record */
};
int kts_state_record_check(const void *rec, size_t rlen, struct kts_state_info *info,
                           enum kts_state_refusal *why);

/* The pipeline's configuration fingerprint (what records carry). */
uint64_t kts_pipeline_fingerprint(const struct kts_pipeline *p);

struct kts_pipeline_state_stats {
    uint64_t exported;                   /* records exported (not counting tombstones) */
    uint64_t exported_bytes;             /* their bytes, keys included */
    uint64_t tombstones;                 /* tombstones exported */
    uint64_t imported;                   /* records installed */
    uint64_t imported_tombstones;        /* tombstones imported (series removed or absent) */
    uint64_t refused[KTS_STATE_REASONS]; /* records refused, by reason (index 0 unused) */
    uint64_t absorbed; /* value lists skipped: already absorbed by an imported state */
    uint64_t dropped;  /* series forgotten by kts_pipeline_state_drop_partition() */
};
void kts_pipeline_state_get_stats(const struct kts_pipeline *p,
                                  struct kts_pipeline_state_stats *st);

#endif
