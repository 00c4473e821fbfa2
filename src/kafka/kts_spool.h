/* SPDX-License-Identifier: MIT */
/*
 * kts_spool: a bounded, append-only, on-disk FIFO of Kafka messages (key + payload), the
 * write_kafka_ts spool for broker outages longer than memory allows. Library code: no
 * collectd headers, no librdkafka; the caller (kts_producer) serialises every call.
 *
 * Layout: one directory per spool, owned by one process (an exclusive flock on DIR/lock).
 * Records live in segment files DIR/<16 hex digits>.seg, read in the order of their names
 * (the number is a sequence: appends go to the highest, prepends make a lower one). A record
 * is  u32 body_len | u32 crc32c(body) | body = u16 key_len | key | payload  (little endian),
 * 8 + 2 + key + payload bytes on disk. DIR/cursor ("SEQ OFFSET") says how far the oldest
 * segment has been consumed.
 *
 * Guarantees:
 *  1. Order: records come out of peek/advance in the order they were appended; records given
 *     to kts_spool_prepend() come out before every record still in the spool, in the order
 *     given. Order survives close + open (a restart) and a crash.
 *  2. Bounded: the segment files never hold more than max_bytes in total; an append or prepend
 *     that would exceed it is refused with -EFBIG and nothing is written (-ENOSPC means the
 *     file system is full).
 *  3. Crash safety: a record is written whole or recognised as torn: a short header, a short
 *     body, an impossible length or a checksum mismatch. kts_spool_open() truncates a torn tail
 *     of the newest segment; a torn record found while reading an older segment ends that
 *     segment. Either way it is counted (torn_records, torn_bytes) and never returned.
 *  4. Restart: records appended before kts_spool_close() (or before a crash, up to the last
 *     flush) are returned after kts_spool_open() on the same directory, except those consumed
 *     (advanced over) before the last cursor write: after a crash, up to one cursor interval
 *     of consumed records may come out again (at least once, never lost).
 *  5. Consumed segments are deleted; when the last record has been consumed, every segment
 *     file is deleted (the spool uses no disk while empty).
 *  6. Durability: kts_spool_flush() writes buffered records to the files (a collectd restart
 *     or a crash of the process keeps them); with sync it also fdatasync()s them and the cursor
 *     and fsync()s the directory when a segment file or the cursor was created, renamed or
 *     deleted since (power loss: a new segment's directory entry is on disk with its data).
 *     A prepend that replaces the head segment fsyncs the directory before it deletes the old
 *     head; kts_spool_close() syncs like a flush; a newly created spool directory's parent is
 *     fsynced at open.
 *  7. Two spools (processes or write_kafka_ts instances) never share a directory: the second
 *     open fails with -EBUSY.
 *  8. Write-ahead use (write_kafka_ts SpoolMode "always"): with write_through, an append is in
 *     the file (the kernel's page cache) when it returns, so it survives a kill -9 of the
 *     process. It is copied into a shared memory mapping of the segment file (MAP_SHARED: the
 *     pages are the file's page cache), not written with a system call each; the file's space
 *     is allocated ahead with fallocate() (a full disk fails the append with -ENOSPC, never a
 *     SIGBUS), cut back to the records at close, and the zeros a crash leaves after the last
 *     record are cut at open without counting a torn record (3). Where the mapping or
 *     fallocate() is not available, each append is one write(). A second reader, "ahead", reads
 * records in order without consuming them (kts_spool_ahead_peek/advance, each record's end position
 * given); kts_spool_ack_to() consumes everything before such a position (what the broker
 * acknowledged). The cursor (4) then says how far records were acknowledged, so a restart replays
 * everything not acknowledged; the ahead reader starts where the consumed part ends.
 */
#ifndef KTS_SPOOL_H
#define KTS_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kts_spool;

struct kts_spool_config {
    const char *dir;        /* created (one level) if missing; borrowed during open only */
    uint64_t max_bytes;     /* (2) */
    uint64_t segment_bytes; /* segment files are closed at about this size; 0 = 64 MiB */
    bool sync;              /* (6) kts_spool_flush(..., true) fdatasyncs */
    bool write_through;     /* (8) every append is written to the file before it returns */
};

struct kts_spool_stats {
    uint64_t bytes;        /* bytes in segment files (including buffered, not yet written) */
    uint64_t appended;     /* records appended or prepended since open */
    uint64_t consumed;     /* records advanced over since open */
    uint64_t torn_records; /* (3) since open */
    uint64_t torn_bytes;
    uint64_t segments;  /* segment files */
    uint64_t dir_syncs; /* (6) fsyncs of the directory since open (sync only) */
    uint64_t unwritten; /* appended records that could never be written (disk full at a
                         * segment switch or at close): lost, logged */
};

/* One record for kts_spool_prepend(); the pointers are borrowed. */
struct kts_spool_rec {
    const void *key;
    size_t key_len;
    const void *payload;
    size_t payload_len;
};

/* Largest key and record body. */
#define KTS_SPOOL_KEY_MAX 65535
#define KTS_SPOOL_BODY_MAX (16u << 20)

/*
 * Open (or create) the spool in cfg->dir. On success *out is the caller's (kts_spool_close()).
 * On failure returns a negative errno with a message naming the directory in errbuf.
 */
int kts_spool_open(struct kts_spool **out, const struct kts_spool_config *cfg, char *errbuf,
                   size_t errbuf_size);

/* Append one record (key and payload borrowed, copied). 0, -EFBIG when full (2), -EMSGSIZE
 * when larger than KTS_SPOOL_BODY_MAX or the key longer than KTS_SPOOL_KEY_MAX, or -errno of
 * a failed write (logged). */
int kts_spool_append(struct kts_spool *sp, const void *key, size_t key_len, const void *payload,
                     size_t payload_len);

/*
 * Put `n` records (borrowed) in front of everything in the spool, in the given order (1).
 * Writes as many as fit within max_bytes, from the first; returns that number (0..n) or a
 * negative errno when nothing could be written because of an I/O error (logged).
 */
long kts_spool_prepend(struct kts_spool *sp, const struct kts_spool_rec *recs, size_t n);

/*
 * The oldest record: 0 with *key and *payload pointing into the spool's buffer (valid until the
 * next call on sp), -ENOENT when the spool is empty, or a negative errno on a read error.
 */
int kts_spool_peek(struct kts_spool *sp, const void **key, size_t *key_len, const void **payload,
                   size_t *payload_len);

/* Consume the record the last successful peek returned. */
void kts_spool_advance(struct kts_spool *sp);

/* (8) A place in the spool: just after a record. */
struct kts_spool_pos {
    uint64_t seq; /* segment */
    uint64_t off; /* offset in it */
};

/* (8) The next record of the ahead reader, as kts_spool_peek (pointers valid until the next
 * call on sp), with *end its end position; -ENOENT when it has read everything appended. */
int kts_spool_ahead_peek(struct kts_spool *sp, const void **key, size_t *key_len,
                         const void **payload, size_t *payload_len, struct kts_spool_pos *end);

/* (8) Move the ahead reader past the record its last successful peek returned. */
void kts_spool_ahead_advance(struct kts_spool *sp);

/* (8) The end of the last record appended (where the next one goes). */
struct kts_spool_pos kts_spool_tail(const struct kts_spool *sp);

/* (8) Put the ahead reader at `to`, a kts_spool_tail(): for a caller that has just appended one
 * record while the ahead reader had read everything before it, and took care of that record
 * itself (no need to read it back). */
void kts_spool_ahead_skip(struct kts_spool *sp, struct kts_spool_pos to);

/* (8) Consume every record before `to` (an end position from kts_spool_ahead_peek); segments
 * wholly before it are deleted. The cursor is written at the next flush or close. */
void kts_spool_ack_to(struct kts_spool *sp, struct kts_spool_pos to);

/* true when peek would return -ENOENT. */
bool kts_spool_empty(struct kts_spool *sp);

/* Write buffered records and the cursor; with sync (and cfg->sync) fdatasync too (6). */
int kts_spool_flush(struct kts_spool *sp, bool sync);

void kts_spool_stats(const struct kts_spool *sp, struct kts_spool_stats *out);

/* Flush (with sync if configured), write the cursor, release the lock, free. NULL is fine.
 * Returns 0 or the negative errno of a failed final write. */
int kts_spool_close(struct kts_spool *sp);
/* The same, with the counters as they are after the final writes (unwritten) in *final. */
int kts_spool_close_stats(struct kts_spool *sp, struct kts_spool_stats *final);

/* kts_crc32c(): CRC-32C (Castagnoli), in src/util/kts_crc32c.h. */
#include "kts_crc32c.h"

#endif
