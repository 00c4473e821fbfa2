/* SPDX-License-Identifier: MIT */
/*
 * kts_written_times: a durable table of per-series "last written time" watermarks in a file, shared
 * through mmap(MAP_SHARED) (read_kafka_ts DedupStateFile, docs/read_kafka_ts.md "Exactly once").
 *
 * Guarantees:
 *  1. A watermark stored with kts_written_times_raise() is in the kernel's page cache when the call
 *     returns: it survives kill -9 of the process (and of every process mapping the file). Only
 *     a crash of the machine can lose updates not yet written back (kts_written_times_sync() forces
 * it; kts_written_times_close() calls it).
 *  2. A watermark never decreases: raise() keeps the maximum, also with several threads and
 *     several processes mapping the same file at once (lock-free, 8-byte atomics).
 *  3. A series is identified by a 126-bit hash of its key bytes (two independent 64-bit hashes,
 *     one bit of each reserved): two different keys share a watermark with probability about
 *     n^2 / 2^127 for n series.
 *  4. Bounded: at most `series_max` series (fixed when the file is created; the file is
 *     24 bytes per slot, slots = the power of two >= series_max * 4/3, plus a 4 KiB header).
 *     A new series beyond that is refused (-ENOSPC) and counted; known series keep working.
 *  5. A key has at most one slot, also when threads or processes claim it at the same time,
 *     and a kill -9 in the middle of a claim never leaves a wrong watermark: a slot is used only
 *     with its full key; a half-claimed slot (first half of the key written) is completed by the
 *     next claim of a key with that first half, without waiting for the claimant.
 *  6. The file starts with a header (magic "KTSWMRK1", version, sizes); a file that is not one
 *     of ours, of another version, truncated, or created for another series_max is refused with
 *     a message naming the file and the mismatch. A file whose creation was interrupted before
 *     its header was written (zero magic) is initialised again.
 *  7. Opening is serialised by flock() on the file, so processes starting together agree on one
 *     header.
 * Thread- and process-safe: every call may run concurrently with any other (in this process or
 * another mapping the same file), except kts_written_times_close() with calls on the same handle.
 */
#ifndef KTS_WRITTEN_TIMES_H
#define KTS_WRITTEN_TIMES_H

#include <stddef.h>
#include <stdint.h>

struct kts_written_times;

#define KTS_WRITTEN_TIMES_SERIES_MAX_LIMIT 100000000ULL

struct kts_written_times_stats {
    uint64_t series_max; /* (4) */
    uint64_t slots;
    uint64_t used;    /* series in the file (all processes), incl. half-claimed slots (5) */
    uint64_t refused; /* claims refused because the table was full, this handle */
    uint64_t file_bytes;
};

/*
 * Open `path` (created with mode 0644 if missing) for up to `series_max` series
 * (1 .. KTS_WRITTEN_TIMES_SERIES_MAX_LIMIT). `path` is copied. Returns 0 and *out (the caller's,
 * released with kts_written_times_close()), or a negative errno with the reason in errbuf.
 */
int kts_written_times_open(struct kts_written_times **out, const char *path, uint64_t series_max,
                           char *errbuf, size_t errbuf_size);

/* Unmap after writing dirty pages back (msync MS_SYNC). NULL is fine. */
void kts_written_times_close(struct kts_written_times *w);

/* msync(MS_SYNC) the table: guards the watermarks against a crash of the machine. 0 or -errno. */
int kts_written_times_sync(struct kts_written_times *w);

/*
 * The slot of the series whose identity is the `len` bytes at `key` (caller-owned, only read
 * during the call), claimed if new. Returns 0 with *slot (> 0, valid as long as `w` is open),
 * or -ENOSPC when the table is full (counted in `refused`).
 */
int kts_written_times_slot(struct kts_written_times *w, const void *key, size_t len,
                           uint64_t *slot);

/* The watermark of `slot` (0 = nothing written yet; also for a slot outside the table). */
uint64_t kts_written_times_get(const struct kts_written_times *w, uint64_t slot);

/* Raise the watermark of `slot` to `t` if `t` is larger (2). A slot outside the table is
 * ignored. */
void kts_written_times_raise(struct kts_written_times *w, uint64_t slot, uint64_t t);

void kts_written_times_stats(const struct kts_written_times *w,
                             struct kts_written_times_stats *out);

#endif
