/* SPDX-License-Identifier: MIT */
/*
 * kts_series: per-series state table for the filter pipelines (up to millions of series).
 *
 * Guarantees:
 *  1. O(1) expected lookup by key (any bytes): open addressing with linear probing over a
 *     power-of-two slot array kept at most 3/4 full, 64-bit hash stored in the slot so a probe
 *     touches an entry only on a full hash match; deletion by backward shift (no tombstones).
 *  2. Each series owns one allocation: header, a copy of the key (in the header's cache line
 *     for short keys), then `state_size` bytes of zeroed state aligned to 8 bytes. A state
 *     pointer stays valid until the series expires or the table is destroyed (growing the slot
 *     array does not move entries).
 *  3. Idle expiry by event time: every series remembers the newest event time it was touched
 *     with; kts_series_expire(now, max) examines at most `max` series from the front of a queue
 *     and removes those whose newest time is at or before now - expire_after; a series touched
 *     since it was queued goes to the back (second chance, as a CLOCK cache), so a touch never
 *     relinks anything and every idle series is found within one pass over the queue.
 *  4. Memory limit: when creating a series would take the bytes in use over max_bytes, the
 *     series is refused (-ENOSPC), counted in `refused`, and logged at most once per 10 s.
 *     Existing series keep working.
 *  5. Memory accounting: `bytes` is the slot array plus each allocation's usable size plus
 *     malloc's per-chunk overhead (8 bytes), i.e. what the process really spends.
 *  6. Not thread-safe: one table per thread, or the caller serialises.
 *  7. Series identity (kts_series_identity()): the one byte form of "which series" in the
 *     library: host, plugin, plugin_instance, type and type_instance in this order, each
 *     followed by its NUL (a name is cut at KTS_NAME_MAX - 1 bytes). Two value lists are the
 *     same series exactly when their identities are equal bytes (a NUL cannot occur inside a
 *     name, so the form is unambiguous). It keys the pipelines' tables, the consumer's ordered
 *     dispatch and read_kafka_ts's DedupStateFile, whose file holds hashes of it: the byte form
 *     never changes (a change would orphan every watermark on disk).
 */
#ifndef KTS_SERIES_H
#define KTS_SERIES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kts_value.h"

/* Most bytes of a series identity (guarantee 7): five names of at most KTS_NAME_MAX bytes. */
#define KTS_SERIES_IDENTITY_MAX (5 * KTS_NAME_MAX)

/*
 * Write the identity of vl's series (guarantee 7) to `dst`, which holds at least
 * KTS_SERIES_IDENTITY_MAX bytes; only the five names of `vl` are read. Returns its length in
 * bytes (5 to KTS_SERIES_IDENTITY_MAX; the last byte is a NUL).
 */
size_t kts_series_identity(char *dst, const struct kts_vl *vl);

/* The reverse: set the five names of `vl` from the identity `id` of `len` bytes (a name
 * missing at the end of a short identity becomes empty, a name too long is cut). */
void kts_series_identity_names(struct kts_vl *vl, const char *id, size_t len);

struct kts_series_table;

struct kts_series_conf {
    size_t max_bytes;        /* 0 = no limit */
    kts_time_t expire_after; /* 0 = never */
    const char *name;        /* for log lines (copied); NULL = "series table" */
};

struct kts_series_stats {
    size_t count;     /* series in the table */
    size_t bytes;     /* memory in use (guarantee 5) */
    uint64_t created; /* series created since the start */
    uint64_t expired; /* series expired */
    uint64_t refused; /* series refused by the memory limit */
};

/* Create an empty table; *out is the caller's (kts_series_table_destroy). 0 or -ENOMEM. */
int kts_series_table_create(const struct kts_series_conf *conf, struct kts_series_table **out);

/* Called for a series that leaves the table (expiry, destroy): `key` and `state` are only valid
 * during the call. */
typedef void (*kts_series_fn)(const void *key, size_t key_len, void *state, size_t state_size,
                              void *opaque);

/* Free the table and every series; `fn` (may be NULL) sees each series first. NULL is fine. */
void kts_series_table_destroy(struct kts_series_table *t, kts_series_fn fn, void *opaque);

/* The state of `key`, or NULL. Does not touch the series. The pointer belongs to the table. */
void *kts_series_find(struct kts_series_table *t, const void *key, size_t key_len);

/*
 * Find or create the series `key` and mark it touched at event time `now`.
 * Returns 0 (found; *state_size_out is its size, rounded up to 8), 1 (created with state_size
 * zeroed bytes),
 * -ENOSPC (memory limit: refused and counted) or -ENOMEM. *state belongs to the table.
 */
int kts_series_get(struct kts_series_table *t, const void *key, size_t key_len, size_t state_size,
                   kts_time_t now, void **state, size_t *state_size_out);

/*
 * A hint for a batch: prefetch what a coming kts_series_get()/find() of `key` will read, so
 * several series' cache misses overlap. Stage 0 prefetches the key's slot. Stage 1, a few keys
 * later (when the slot has likely arrived), reads that slot, and when its hash matches,
 * prefetches the series header and returns where the series' state would start (not read, so
 * it may be stale on a hash collision: use it only for prefetching); NULL otherwise. Changes
 * nothing in the table. The returned address belongs to the table.
 */
const void *kts_series_prefetch(const struct kts_series_table *t, const void *key, size_t key_len,
                                int stage);

/* The newest event time the series whose state is `state` was touched with. */
kts_time_t kts_series_last(const void *state);

/* Remove the series whose state is `state` (from kts_series_get/find). */
void kts_series_remove(struct kts_series_table *t, void *state);

/* Examine at most `max` series and expire the idle ones (guarantee 3), calling `fn` (may be
 * NULL) for each before it is freed. Returns how many were expired. */
size_t kts_series_expire(struct kts_series_table *t, kts_time_t now, size_t max, kts_series_fn fn,
                         void *opaque);

/* Call `fn` for every series (in queue order). `fn` must not add or remove. */
void kts_series_foreach(struct kts_series_table *t, kts_series_fn fn, void *opaque);

void kts_series_get_stats(const struct kts_series_table *t, struct kts_series_stats *st);

#endif
