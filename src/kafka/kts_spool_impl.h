/* SPDX-License-Identifier: MIT */
/*
 * kts_spool's internals, shared by its files: kts_spool.c (writing, reading, the ahead reader,
 * flush and close) and kts_spool_open.c (opening a spool directory: its segments, the torn tail,
 * the cursor). Not for other code: the interface and the guarantees are in kts_spool.h.
 */
#ifndef KTS_SPOOL_IMPL_H
#define KTS_SPOOL_IMPL_H

#include "kts_log.h"
#include "kts_spool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HDR 8u                         /* u32 body_len, u32 crc32c(body) */
#define SEQ_BASE 0x8000000000000000ull /* first segment; prepends count down from here */
#define WBUF_SIZE (256u << 10)
#define RBUF_MIN (256u << 10)
#define WMAP_CHUNK (1u << 20) /* (8) the mapped writer allocates file space 1 MiB at a time */

struct seg {
    uint64_t seq;
    uint64_t size;  /* bytes, including the writer's buffered bytes for the tail */
    uint64_t start; /* first unconsumed offset when this segment becomes the head (cursor) */
};

struct kts_spool {
    char *dir;
    int dirfd;
    int lockfd;
    uint64_t max_bytes, segment_bytes;
    bool sync;

    struct seg *segs; /* ascending seq; segs[0] is read, segs[nsegs-1] written */
    size_t nsegs, segs_cap;
    uint64_t next_seq;
    uint64_t bytes;

    /* writer: appends to segs[nsegs-1] when wfd >= 0 */
    int wfd;
    unsigned char *wbuf;
    size_t wlen;
    uint64_t wdisk; /* bytes of the tail segment already in the file */
    /* (8) write-through: records are copied into a shared mapping of the tail segment (the
     * kernel's page cache, so a kill -9 keeps them) instead of one write() each. The file is
     * extended with fallocate() ahead of the records (walloc bytes; never a SIGBUS for want of
     * space: a full disk fails the fallocate) and cut back to wdisk when the writer closes;
     * the zeros after the last record that a crash leaves are cut at open. NULL: write(). */
    unsigned char *wmap;
    size_t wmap_len;
    uint64_t walloc;
    uint64_t wmap_released; /* pages before this offset were given back (MADV_DONTNEED) */

    /* reader: segs[0] at roff */
    int rfd;
    uint64_t roff;
    unsigned char *rbuf;
    size_t rcap, rlen;
    uint64_t rbuf_off; /* file offset of rbuf[0] */
    uint64_t peeked;   /* size of the record the last peek returned, 0 if none */

    /* ahead reader (8): the record at aoff of segment aseq (aseq 0: not placed yet) */
    bool write_through;
    uint64_t aseq, aoff;
    int afd;
    uint64_t afd_seq;
    unsigned char *abuf;
    size_t acap, alen;
    uint64_t abuf_off;
    uint64_t apeeked;

    uint64_t cursor_seq, cursor_off; /* as last written */
    bool cursor_valid;
    bool dir_dirty; /* a file was created, renamed or deleted since the last fsync of dirfd */

    struct kts_spool_stats st;
    struct kts_ratelimit rl_read;  /* a read error is retried by the caller: log it sparingly */
    struct kts_ratelimit rl_write; /* so is a write error (disk full: every append tries) */
    size_t wrecs;                  /* records in wbuf */
    bool wfail;                    /* the last write failed (disk full, read-only, ...) */
};

/* DIR-relative name of segment seq ("%016x.seg" + suffix). */
void kts_spool_seg_name(char *buf, size_t size, uint64_t seq, const char *suffix);
/* Inserts s at index at of sp->segs. 0 or -ENOMEM. */
int kts_spool_segs_insert(struct kts_spool *sp, size_t at, struct seg s);
/* Puts the reader at the start of the unconsumed part of the head segment. */
void kts_spool_reader_reset(struct kts_spool *sp);
/* pread() of len bytes at off, retried; *got is how many (fewer at the end of the file). */
int kts_spool_pread_all(int fd, void *buf, size_t len, uint64_t off, size_t *got);
/* Checks header + body of a record at buf (avail bytes): its total size, or 0 if torn. */
uint64_t kts_spool_record_ok(const unsigned char *buf, uint64_t avail);

#endif
