/* SPDX-License-Identifier: MIT */
/*
 * kts_state_file: pipeline state records (kts_pipeline_state.h) in a file, the format shared by
 * kts-filter (--state-in, --state-out) and ts_filter (StateFile).
 *
 * Format, version 1 (integers little-endian):
 *     header:  u32 magic "KTSF" (0x4653544b) | u16 version (1) | u16 zero
 *     entries: u32 key length | key | u32 record length | record      (until the end of file)
 * A key is a record's key (the pipeline name, NUL, the series identity); a record carries its own
 * CRC-32C (a damaged record is refused by the import, alone); a record length of 0 is a
 * tombstone (never written to a file, accepted).
 *
 * Guarantees:
 *  1. A save is atomic: the entries go to a temporary file in the same directory
 *     (PATH.tmp.XXXXXX), which is written, fsync()ed and renamed over PATH, then the directory is
 *     fsync()ed. A crash leaves the old file or the new one, never a mix; a failed save removes
 *     its temporary file and leaves PATH as it was.
 *  2. A load never fails because of one record: a record refused by its pipeline is counted
 *     (kts_pipeline_state_get_stats()) and the series starts fresh. An entry of a pipeline that
 *     is not configured is counted in `unknown`.
 *  3. A file that is not a state file, of another version, or cut inside an entry is damaged:
 *     -EBADMSG with a message, after the entries before the damage were loaded. A missing file
 *     is -ENOENT (the caller decides: a fresh start).
 *  4. Lengths are checked before anything is allocated (a key over 64 KiB or a record over
 *     256 MiB is damage), so a damaged file cannot exhaust memory.
 */
#ifndef KTS_STATE_FILE_H
#define KTS_STATE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kts_pipeline.h"

#define KTS_STATE_FILE_MAGIC 0x4653544bu /* "KTSF" read as a little-endian u32 */
#define KTS_STATE_FILE_VERSION 1

/* Called for each entry of a file; the buffers are only valid during the call. Return 0 to go
 * on, non-zero to stop reading (kts_state_file_read() returns it). */
typedef int (*kts_state_entry_fn)(const void *key, size_t klen, const void *rec, size_t rlen,
                                  void *opaque);

/* Read every entry of `path` (guarantees 3 and 4). Returns 0, -ENOENT, -EBADMSG (damaged, with
 * a message in err), another negative errno, or what `fn` returned. */
int kts_state_file_read(const char *path, kts_state_entry_fn fn, void *opaque, char *err,
                        size_t errsz);

/*
 * Save the state of every series of the `n` pipelines to `path` atomically (guarantee 1), all
 * of them (not only the changed ones), each marked clean. *records (if not NULL) is the number
 * written. Returns 0 or a negative errno (message in err).
 */
int kts_state_file_save(const char *path, struct kts_pipeline *const *pipes, size_t n,
                        size_t *records, char *err, size_t errsz);

/* Called around the export of pipeline i (lock true before, false after), e.g. to hold the
 * mutex of a pipeline that other threads run; only the export is under it, not the fsync. */
typedef void (*kts_state_file_lock_fn)(size_t i, bool lock, void *opaque);

/* kts_state_file_save() with `lock` (may be NULL) called around each pipeline's export. */
int kts_state_file_save_locked(const char *path, struct kts_pipeline *const *pipes, size_t n,
                               kts_state_file_lock_fn lock, void *opaque, size_t *records,
                               char *err, size_t errsz);

/*
 * Set a damaged file aside: rename `path` to PATH.bad-YYYYMMDDTHHMMSSZ (UTC, now), or with a
 * suffix -2, -3 ... when that exists. The new name goes to dst. 0 or a negative errno.
 */
int kts_state_file_set_aside(const char *path, char *dst, size_t dstsz);

struct kts_state_load_stats {
    uint64_t entries;  /* entries read */
    uint64_t imported; /* records installed */
    uint64_t refused;  /* records refused by their pipeline (reasons: its state stats) */
    uint64_t unknown;  /* entries of a pipeline that is not among the `n` */
};

/*
 * Load `path` into the `n` pipelines (each entry to the pipeline its key names; guarantee 2).
 * Returns 0, -ENOENT, -EBADMSG (the entries before the damage are loaded) or a negative errno,
 * with a message in err.
 */
int kts_state_file_load(const char *path, struct kts_pipeline *const *pipes, size_t n,
                        struct kts_state_load_stats *st, char *err, size_t errsz);

#endif
