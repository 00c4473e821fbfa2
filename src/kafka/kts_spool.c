/* SPDX-License-Identifier: MIT */
/* kts_spool: see kts_spool.h for the layout and the guarantees (numbers below refer to them). */
#include "kts_spool.h"
#include "kts_spool_impl.h"

#include "kts_array.h"
#include "kts_log.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

void kts_spool_seg_name(char *buf, size_t size, uint64_t seq, const char *suffix)
{
    snprintf(buf, size, "%016" PRIx64 ".seg%s", seq, suffix);
}

int kts_spool_segs_insert(struct kts_spool *sp, size_t at, struct seg s)
{
    if (KTS_ARRAY_GROW(sp->segs, sp->segs_cap, sp->nsegs + 1) != 0)
        return -ENOMEM;
    memmove(sp->segs + at + 1, sp->segs + at, (sp->nsegs - at) * sizeof(*sp->segs));
    sp->segs[at] = s;
    sp->nsegs++;
    return 0;
}

void kts_spool_reader_reset(struct kts_spool *sp)
{
    if (sp->rfd >= 0)
        close(sp->rfd);
    sp->rfd = -1;
    sp->rlen = 0;
    sp->rbuf_off = 0;
    sp->peeked = 0;
    sp->roff = sp->nsegs > 0 ? sp->segs[0].start : 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes the writer's buffer to its file. On failure the file is cut back to what it held
 * before (no torn record left behind) and the buffer kept for a later try. */
static int wbuf_flush(struct kts_spool *sp)
{
    if (sp->wfd < 0 || sp->wlen == 0)
        return 0;
    int rc = pwrite_all(sp->wfd, sp->wbuf, sp->wlen, sp->wdisk);
    if (rc < 0) {
        if (ftruncate(sp->wfd, (off_t)sp->wdisk) != 0) {
            /* nothing more to do: the torn tail is found at the next open (3) */
        }
        sp->wfail = true;
        kts_log_limited(&sp->rl_write, KTS_LOG_ERR, "spool %s: cannot write %zu bytes: %s", sp->dir,
                        sp->wlen, strerror(-rc));
        return rc;
    }
    sp->wfail = false;
    sp->wdisk += sp->wlen;
    sp->wlen = 0;
    sp->wrecs = 0;
    return 0;
}

/* (8) Unmaps the mapped writer's segment; with cut, the file space allocated past the last
 * record is given back (a crash leaves it: cut at the next open). */
static void wmap_drop(struct kts_spool *sp, bool cut)
{
    if (sp->wmap == NULL)
        return;
    munmap(sp->wmap, sp->wmap_len);
    sp->wmap = NULL;
    if (cut && sp->walloc > sp->wdisk && ftruncate(sp->wfd, (off_t)sp->wdisk) != 0) {
        /* the zeros are cut at the next open */
    }
    sp->walloc = 0;
    sp->wmap_released = 0;
}

/* Closes the writer's file without writing anything (its segment is being deleted). */
static void writer_forget(struct kts_spool *sp)
{
    wmap_drop(sp, false);
    close(sp->wfd);
    sp->wfd = -1;
    sp->wlen = 0;
    sp->wrecs = 0;
}

static int writer_close(struct kts_spool *sp)
{
    int rc = wbuf_flush(sp);
    if (sp->wfd >= 0) {
        wmap_drop(sp, true);
        /* fdatasync writes the pages written through the mapping too (Linux: one page cache) */
        if (rc == 0 && sp->sync && fdatasync(sp->wfd) != 0)
            rc = -errno;
        close(sp->wfd);
    }
    sp->wfd = -1;
    if (sp->wlen > 0 && sp->nsegs > 0) {
        /* Could not be written: forget those records rather than pretend they are there;
         * counted (unwritten) and logged, never silently. */
        kts_log(KTS_LOG_ERR,
                "spool %s: %zu records (%zu bytes) could not be written and are "
                "lost: %s",
                sp->dir, sp->wrecs, sp->wlen, strerror(-rc));
        sp->st.unwritten += sp->wrecs;
        sp->segs[sp->nsegs - 1].size -= sp->wlen;
        sp->bytes -= sp->wlen;
        sp->wlen = 0;
        sp->wrecs = 0;
    }
    return rc;
}

/* With sync (6): fsync the directory when a segment file or the cursor was created, renamed or
 * deleted since the last time, so that after a power loss the directory holds the entries the
 * synced data belongs to. Returns 0 or -errno (logged). */
static int dir_sync(struct kts_spool *sp)
{
    if (!sp->sync || !sp->dir_dirty)
        return 0;
    if (fsync(sp->dirfd) != 0) {
        int rc = -errno;
        kts_log_limited(&sp->rl_write, KTS_LOG_ERR, "spool %s: cannot fsync the directory: %s",
                        sp->dir, strerror(-rc));
        return rc;
    }
    sp->dir_dirty = false;
    sp->st.dir_syncs++;
    return 0;
}

static int write_cursor(struct kts_spool *sp)
{
    uint64_t seq = sp->nsegs > 0 ? sp->segs[0].seq : 0, off = sp->nsegs > 0 ? sp->roff : 0;
    if (sp->cursor_valid && seq == sp->cursor_seq && off == sp->cursor_off)
        return 0;
    char text[64];
    int len = snprintf(text, sizeof(text), "%016" PRIx64 " %" PRIu64 "\n", seq, off);
    int fd = openat(sp->dirfd, "cursor.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = write_all(fd, text, (size_t)len);
    if (rc == 0 && sp->sync && fdatasync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && renameat(sp->dirfd, "cursor.tmp", sp->dirfd, "cursor") != 0)
        rc = -errno;
    sp->dir_dirty = true; /* cursor.tmp created, maybe renamed */
    if (rc == 0) {
        sp->cursor_seq = seq;
        sp->cursor_off = off;
        sp->cursor_valid = true;
    } else {
        kts_log_limited(&sp->rl_write, KTS_LOG_ERR, "spool %s: cannot write the cursor: %s",
                        sp->dir, strerror(-rc));
    }
    return rc;
}

/* Removes the head segment (consumed or torn) and moves the reader to the next one. */
static void pop_head(struct kts_spool *sp)
{
    char name[64];
    if (sp->nsegs == 1 && sp->wfd >= 0)
        writer_forget(sp); /* every record in it was read, the buffered ones too */
    kts_spool_seg_name(name, sizeof(name), sp->segs[0].seq, "");
    if (unlinkat(sp->dirfd, name, 0) != 0 && errno != ENOENT)
        kts_log(KTS_LOG_ERR, "spool %s: cannot delete %s: %s", sp->dir, name, strerror(errno));
    sp->dir_dirty = true; /* synced at the next flush or close: a lost delete only replays */
    sp->bytes -= sp->segs[0].size;
    memmove(sp->segs, sp->segs + 1, (sp->nsegs - 1) * sizeof(*sp->segs));
    sp->nsegs--;
    kts_spool_reader_reset(sp);
    if (sp->nsegs == 0)
        write_cursor(sp); /* (5) empty: no file but the cursor and the lock */
}

int kts_spool_pread_all(int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
    unsigned char *p = buf;
    *got = 0;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
        *got += (size_t)n;
    }
    return 0;
}

/* Checks header + body of a record at buf (avail bytes): its total size, or 0 if torn. */
uint64_t kts_spool_record_ok(const unsigned char *buf, uint64_t avail)
{
    if (avail < HDR)
        return 0;
    uint32_t len, crc;
    memcpy(&len, buf, 4);
    memcpy(&crc, buf + 4, 4);
    len = le32toh(len);
    crc = le32toh(crc);
    if (len < 2 || len > KTS_SPOOL_BODY_MAX || HDR + (uint64_t)len > avail)
        return 0;
    if (kts_crc32c(0, buf + HDR, len) != crc)
        return 0;
    uint16_t klen;
    memcpy(&klen, buf + HDR, 2);
    if (2u + le16toh(klen) > len)
        return 0;
    return HDR + len;
}

/* ------------------------------------------------------------------ write */

static void put_header(unsigned char *h, const void *key, size_t klen, const void *payload,
                       size_t plen)
{
    uint32_t len = (uint32_t)(2 + klen + plen);
    uint16_t k16 = htole16((uint16_t)klen);
    uint32_t crc = kts_crc32c(0, &k16, 2);
    crc = kts_crc32c(crc, key, klen);
    crc = kts_crc32c(crc, payload, plen);
    uint32_t l = htole32(len), c = htole32(crc);
    memcpy(h, &l, 4);
    memcpy(h + 4, &c, 4);
    memcpy(h + 8, &k16, 2);
}

static int writer_open_new(struct kts_spool *sp)
{
    int rc = writer_close(sp);
    if (rc != 0)
        return rc;
    char name[64];
    uint64_t seq = sp->next_seq++;
    kts_spool_seg_name(name, sizeof(name), seq, "");
    /* (8) read-write for the mapping; appends go to wdisk either way (pwrite) */
    int flags = sp->write_through ? O_RDWR : O_WRONLY | O_APPEND;
    int fd = openat(sp->dirfd, name, flags | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        sp->next_seq--; /* not created: the next try uses the same name */
        sp->wfail = true;
        kts_log_limited(&sp->rl_write, KTS_LOG_ERR, "spool %s: cannot create %s: %s", sp->dir, name,
                        strerror(-rc));
        return rc;
    }
    sp->dir_dirty = true; /* its records are synced with the directory at the next flush */
    rc = kts_spool_segs_insert(sp, sp->nsegs, (struct seg){seq, 0, 0});
    if (rc != 0) {
        close(fd);
        unlinkat(sp->dirfd, name, 0);
        return rc;
    }
    if (sp->nsegs == 1)
        kts_spool_reader_reset(sp);
    sp->wfd = fd;
    sp->wdisk = 0;
    sp->wlen = 0;
    if (sp->write_through) {
        /* Room for a full segment and one largest record past it (a segment ends at the first
         * record that does not fit); address space only, the file grows as records come. */
        size_t len = (size_t)sp->segment_bytes + HDR + KTS_SPOOL_BODY_MAX;
        long page = sysconf(_SC_PAGESIZE);
        len = (len + (size_t)page - 1) / (size_t)page * (size_t)page;
        void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) { /* otherwise: one write() per record, as without a mapping */
            sp->wmap = m;
            sp->wmap_len = len;
            sp->walloc = 0;
            sp->wmap_released = 0;
        }
    }
    return 0;
}

/* (8) Makes the file of the mapped writer hold at least `end` bytes of allocated space, in
 * chunks of WMAP_CHUNK (or just what is needed when the chunk does not fit on the disk), so
 * that the pages written through the mapping are backed: never a SIGBUS. 0, -EOPNOTSUPP (a
 * file system without fallocate: use write()) or -errno. */
static int wmap_reserve(struct kts_spool *sp, uint64_t end)
{
    uint64_t want = (end + WMAP_CHUNK - 1) / WMAP_CHUNK * WMAP_CHUNK;
    if (want > sp->segment_bytes)
        want = end > sp->segment_bytes ? end : sp->segment_bytes; /* the segment's last record */
    if (fallocate(sp->wfd, 0, (off_t)sp->walloc, (off_t)(want - sp->walloc)) != 0) {
        int rc = -errno;
        if (rc != -ENOSPC && rc != -EDQUOT)
            return rc;
        want = end; /* the disk is nearly full: only what this record needs */
        if (fallocate(sp->wfd, 0, (off_t)sp->walloc, (off_t)(want - sp->walloc)) != 0)
            return -errno;
    }
    sp->walloc = want;
    /* Let go of the pages of the chunks before the one being written: they stay in the page
     * cache (dirty ones are written back as usual) but no longer count in the process's
     * resident memory, which would otherwise grow by a whole segment during an outage. */
    uint64_t keep_from = sp->wdisk / WMAP_CHUNK * WMAP_CHUNK;
    if (keep_from > sp->wmap_released &&
        madvise(sp->wmap + sp->wmap_released, (size_t)(keep_from - sp->wmap_released),
                MADV_DONTNEED) == 0)
        sp->wmap_released = keep_from;
    return 0;
}

/* (8) Copies one record into the mapped writer's segment. 0 or -errno (logged). */
static int wmap_append(struct kts_spool *sp, const void *key, size_t key_len, const void *payload,
                       size_t payload_len, uint64_t rec)
{
    uint64_t end = sp->wdisk + rec;
    int rc = 0;
    if (end > sp->walloc && (rc = wmap_reserve(sp, end)) != 0) {
        if (rc == -EOPNOTSUPP || rc == -ENOSYS)
            return rc; /* the caller writes instead */
        sp->wfail = true;
        kts_log_limited(&sp->rl_write, KTS_LOG_ERR, "spool %s: cannot write %llu bytes: %s",
                        sp->dir, (unsigned long long)rec, strerror(-rc));
        return rc;
    }
    unsigned char *r = sp->wmap + sp->wdisk;
    put_header(r, key, key_len, payload, payload_len);
    memcpy(r + HDR + 2, key, key_len);
    memcpy(r + HDR + 2 + key_len, payload, payload_len);
    sp->wdisk = end;
    sp->wfail = false;
    return 0;
}

int kts_spool_append(struct kts_spool *sp, const void *key, size_t key_len, const void *payload,
                     size_t payload_len)
{
    if (key_len > KTS_SPOOL_KEY_MAX || 2 + key_len + payload_len > KTS_SPOOL_BODY_MAX)
        return -EMSGSIZE;
    uint64_t rec = HDR + 2 + key_len + payload_len;
    if (sp->bytes + rec > sp->max_bytes)
        return -EFBIG; /* (2); -ENOSPC is the disk's */
    int rc;
    if (sp->wfd < 0 || (sp->segs[sp->nsegs - 1].size > 0 &&
                        sp->segs[sp->nsegs - 1].size + rec > sp->segment_bytes)) {
        if ((rc = writer_open_new(sp)) != 0)
            return rc;
    }
    if (sp->wmap != NULL) {
        rc = wmap_append(sp, key, key_len, payload, payload_len, rec);
        if (rc == -EOPNOTSUPP || rc == -ENOSYS)
            wmap_drop(sp, true); /* no fallocate here: write() from now on */
        else if (rc != 0)
            return rc;
        else
            goto appended;
    }
    if (sp->wlen + rec > WBUF_SIZE && (rc = wbuf_flush(sp)) != 0)
        return rc;
    unsigned char h[HDR + 2];
    put_header(h, key, key_len, payload, payload_len);
    if (rec > WBUF_SIZE) {
        struct iovec iov[3] = {
            {h, sizeof(h)}, {(void *)key, key_len}, {(void *)payload, payload_len}};
        ssize_t n = pwritev(sp->wfd, iov, 3, (off_t)sp->wdisk);
        if (n != (ssize_t)rec) {
            rc = n < 0 ? -errno : -EIO;
            if (ftruncate(sp->wfd, (off_t)sp->wdisk) != 0) {
                /* found as torn at the next open (3) */
            }
            return rc;
        }
        sp->wdisk += rec;
    } else {
        memcpy(sp->wbuf + sp->wlen, h, sizeof(h));
        memcpy(sp->wbuf + sp->wlen + sizeof(h), key, key_len);
        memcpy(sp->wbuf + sp->wlen + sizeof(h) + key_len, payload, payload_len);
        sp->wlen += rec;
        sp->wrecs++;
        if (sp->write_through && (rc = wbuf_flush(sp)) != 0) {
            /* (8) not in the file: not in the spool (the file was cut back) */
            sp->wlen -= rec;
            sp->wrecs--;
            return rc;
        }
    }
appended:
    sp->segs[sp->nsegs - 1].size += rec;
    sp->bytes += rec;
    sp->st.appended++;
    return 0;
}

/* How many of recs, from the first, fit in room bytes (each within the size limits); *total is
 * their bytes on disk. */
static size_t prepend_fit(const struct kts_spool_rec *recs, size_t n, uint64_t room,
                          uint64_t *total)
{
    size_t fit = 0;
    *total = 0;
    for (; fit < n; fit++) {
        if (recs[fit].key_len > KTS_SPOOL_KEY_MAX ||
            2 + recs[fit].key_len + recs[fit].payload_len > KTS_SPOOL_BODY_MAX)
            break;
        uint64_t r = HDR + 2 + recs[fit].key_len + recs[fit].payload_len;
        if (*total + r > room)
            break;
        *total += r;
    }
    return fit;
}

/* Writes recs[0..fit) as records to fd, through the writer's buffer (free: the writer is
 * closed). 0 or -errno. */
static int prepend_write_records(struct kts_spool *sp, int fd, const struct kts_spool_rec *recs,
                                 size_t fit)
{
    unsigned char *buf = sp->wbuf;
    size_t blen = 0;
    int rc = 0;
    for (size_t i = 0; i < fit && rc == 0; i++) {
        const struct kts_spool_rec *r = &recs[i];
        size_t rl = HDR + 2 + r->key_len + r->payload_len;
        if (blen + rl > WBUF_SIZE) {
            rc = write_all(fd, buf, blen);
            blen = 0;
        }
        unsigned char h[HDR + 2];
        put_header(h, r->key, r->key_len, r->payload, r->payload_len);
        if (rc == 0 && rl > WBUF_SIZE) {
            rc = write_all(fd, h, sizeof(h));
            if (rc == 0)
                rc = write_all(fd, r->key, r->key_len);
            if (rc == 0)
                rc = write_all(fd, r->payload, r->payload_len);
        } else if (rc == 0) {
            memcpy(buf + blen, h, sizeof(h));
            memcpy(buf + blen + sizeof(h), r->key, r->key_len);
            memcpy(buf + blen + sizeof(h) + r->key_len, r->payload, r->payload_len);
            blen += rl;
        }
    }
    if (rc == 0 && blen > 0)
        rc = write_all(fd, buf, blen);
    return rc;
}

/* Appends [from, from + len) of the head segment to fd (through the writer's buffer). */
static int prepend_copy_head(struct kts_spool *sp, int fd, uint64_t from, uint64_t len)
{
    char old[64];
    kts_spool_seg_name(old, sizeof(old), sp->segs[0].seq, "");
    int ofd = openat(sp->dirfd, old, O_RDONLY | O_CLOEXEC);
    int rc = ofd < 0 ? -errno : 0;
    for (uint64_t off = from; rc == 0 && off < from + len;) {
        size_t want = from + len - off > WBUF_SIZE ? WBUF_SIZE : (size_t)(from + len - off);
        size_t got;
        rc = kts_spool_pread_all(ofd, sp->wbuf, want, off, &got);
        if (rc == 0 && got != want)
            rc = -EIO;
        if (rc == 0)
            rc = write_all(fd, sp->wbuf, got);
        off += got;
    }
    if (ofd >= 0)
        close(ofd);
    return rc;
}

/* Makes the segment s, just renamed into place, the head: it replaces the old head when that
 * was copied into it or wholly consumed, else goes in front of it. 0 or -ENOMEM. */
static int prepend_install(struct kts_spool *sp, struct seg s, bool copied)
{
    if (copied || (sp->nsegs > 0 && sp->roff >= sp->segs[0].size)) {
        /* The new segment replaces the head: delete the old one, after the new one's entry is
         * on disk (6; otherwise a power loss could keep the delete and lose the copy). */
        char old[64];
        dir_sync(sp);
        sp->bytes -= sp->segs[0].size;
        kts_spool_seg_name(old, sizeof(old), sp->segs[0].seq, "");
        unlinkat(sp->dirfd, old, 0);
        sp->dir_dirty = true;
        sp->segs[0] = s;
    } else {
        int rc = kts_spool_segs_insert(sp, 0, s);
        if (rc != 0)
            return rc;
    }
    sp->segs[0].start = 0;
    sp->bytes += s.size;
    return 0;
}

long kts_spool_prepend(struct kts_spool *sp, const struct kts_spool_rec *recs, size_t n)
{
    if (n == 0)
        return 0;
    int rc = writer_close(sp); /* later appends go to a new segment after this one */
    if (rc != 0)
        return rc;
    /* A partly consumed head is copied behind the new records, so that only the head ever has
     * a consumed part and one cursor says where it ends. */
    uint64_t copy_from = 0, copy_len = 0;
    if (sp->nsegs > 0 && sp->roff > 0) {
        copy_from = sp->roff;
        copy_len = sp->segs[0].size > sp->roff ? sp->segs[0].size - sp->roff : 0;
    }
    /* Afterwards the spool holds bytes - (old head, if copied) + copy_len + the new records. */
    uint64_t keep = sp->bytes - (copy_from > 0 ? sp->segs[0].size : 0);
    uint64_t room = keep < sp->max_bytes ? sp->max_bytes - keep : 0;
    uint64_t total;
    size_t fit = prepend_fit(recs, n, room > copy_len ? room - copy_len : 0, &total);
    if (fit == 0)
        return 0;
    uint64_t seq = sp->nsegs > 0 ? sp->segs[0].seq - 1 : sp->next_seq++;
    char name[64], tmp[64];
    kts_spool_seg_name(name, sizeof(name), seq, "");
    kts_spool_seg_name(tmp, sizeof(tmp), seq, ".tmp");
    int fd = openat(sp->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    rc = prepend_write_records(sp, fd, recs, fit);
    if (rc == 0 && copy_len > 0)
        rc = prepend_copy_head(sp, fd, copy_from, copy_len);
    if (rc == 0 && sp->sync && fdatasync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && renameat(sp->dirfd, tmp, sp->dirfd, name) != 0)
        rc = -errno;
    sp->dir_dirty = true;
    if (rc != 0) {
        unlinkat(sp->dirfd, tmp, 0);
        goto fail;
    }
    if ((rc = prepend_install(sp, (struct seg){seq, total + copy_len, 0}, copy_len > 0)) != 0)
        goto fail;
    sp->st.appended += fit;
    kts_spool_reader_reset(sp);
    write_cursor(sp);
    return (long)fit;
fail:
    kts_log(KTS_LOG_ERR, "spool %s: cannot write %s: %s", sp->dir, name, strerror(-rc));
    return rc;
}

/* ------------------------------------------------------------------ read */

/* Makes rbuf hold [off, off + n) of the head segment; the bytes present may be fewer at the
 * end of the file (*avail says how many from off). */
static int fill(struct kts_spool *sp, uint64_t off, size_t n, uint64_t *avail)
{
    struct seg *s = &sp->segs[0];
    uint64_t end = s->size;
    if (sp->rlen > 0 && off >= sp->rbuf_off && off + n <= sp->rbuf_off + sp->rlen) {
        *avail = sp->rbuf_off + sp->rlen - off; /* bytes read before stay valid */
        return 0;
    }
    if (sp->nsegs == 1 && sp->wfd >= 0 && off + n > sp->wdisk && sp->wlen > 0 &&
        wbuf_flush(sp) != 0) {
        /* The reader caught up with the writer's buffer, which cannot be written (disk full):
         * read it from memory, so that the spool drains and frees its file. Records never
         * straddle wdisk (the buffer is written whole). */
        if (off >= sp->wdisk) {
            size_t at = (size_t)(off - sp->wdisk), len = sp->wlen - at;
            if (len > sp->rcap) {
                unsigned char *b = realloc(sp->rbuf, len);
                if (b == NULL)
                    return -ENOMEM;
                sp->rbuf = b;
                sp->rcap = len;
            }
            memcpy(sp->rbuf, sp->wbuf + at, len);
            sp->rbuf_off = off;
            sp->rlen = len;
            *avail = len;
            return 0;
        }
        end = sp->wdisk;
    }
    if (off >= sp->rbuf_off && off + n <= sp->rbuf_off + sp->rlen) {
        *avail = sp->rbuf_off + sp->rlen - off;
        return 0;
    }
    if (sp->rfd < 0) {
        char name[64];
        kts_spool_seg_name(name, sizeof(name), s->seq, "");
        sp->rfd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (sp->rfd < 0)
            return -errno;
    }
    size_t want = n > RBUF_MIN ? n : RBUF_MIN;
    if (want > sp->rcap) {
        unsigned char *b = realloc(sp->rbuf, want);
        if (b == NULL)
            return -ENOMEM;
        sp->rbuf = b;
        sp->rcap = want;
    }
    if (off + want > end)
        want = end > off ? (size_t)(end - off) : 0;
    size_t got;
    int rc = kts_spool_pread_all(sp->rfd, sp->rbuf, want, off, &got);
    if (rc != 0)
        return rc;
    sp->rbuf_off = off;
    sp->rlen = got;
    *avail = got;
    return 0;
}

/* Splits one checked record of rec bytes at r (header, u16 key length, key, payload) into its
 * key and payload; the pointers point into r. */
static void record_fields(const unsigned char *r, uint64_t rec, const void **key, size_t *key_len,
                          const void **payload, size_t *payload_len)
{
    uint16_t klen;
    memcpy(&klen, r + HDR, 2);
    klen = le16toh(klen);
    *key = r + HDR + 2;
    *key_len = klen;
    *payload = r + HDR + 2 + klen;
    *payload_len = rec - HDR - 2 - klen;
}

int kts_spool_peek(struct kts_spool *sp, const void **key, size_t *key_len, const void **payload,
                   size_t *payload_len)
{
    for (;;) {
        if (sp->nsegs == 0)
            return -ENOENT;
        struct seg *s = &sp->segs[0];
        if (sp->roff >= s->size) {
            if (sp->nsegs == 1 && sp->wfd >= 0 && sp->roff == s->size)
                return -ENOENT; /* caught up with the writer (normally advance resets) */
            pop_head(sp);
            continue;
        }
        uint64_t avail;
        int rc = fill(sp, sp->roff, HDR, &avail);
        uint64_t rec = 0;
        if (rc == 0 && avail >= HDR) {
            uint32_t len;
            memcpy(&len, sp->rbuf + (sp->roff - sp->rbuf_off), 4);
            len = le32toh(len);
            if (len >= 2 && len <= KTS_SPOOL_BODY_MAX)
                rc = fill(sp, sp->roff, HDR + len, &avail);
            if (rc == 0)
                rec = kts_spool_record_ok(sp->rbuf + (sp->roff - sp->rbuf_off), avail);
        }
        if (rc != 0) {
            kts_log_limited(&sp->rl_read, KTS_LOG_ERR,
                            "spool %s: cannot read segment %016" PRIx64 ": %s", sp->dir, s->seq,
                            strerror(-rc));
            return rc;
        }
        if (rec == 0) {
            /* (3) torn or corrupt: the rest of this segment cannot be trusted */
            char name[64];
            kts_spool_seg_name(name, sizeof(name), s->seq, "");
            sp->st.torn_records++;
            sp->st.torn_bytes += s->size - sp->roff;
            kts_log(KTS_LOG_WARNING,
                    "spool %s: torn or corrupt record in %s at offset %" PRIu64 ": the %" PRIu64
                    " bytes from there are skipped, not replayed",
                    sp->dir, name, sp->roff, s->size - sp->roff);
            pop_head(sp);
            continue;
        }
        record_fields(sp->rbuf + (sp->roff - sp->rbuf_off), rec, key, key_len, payload,
                      payload_len);
        sp->peeked = rec;
        return 0;
    }
}

void kts_spool_advance(struct kts_spool *sp)
{
    if (sp->peeked == 0 || sp->nsegs == 0)
        return;
    sp->roff += sp->peeked;
    sp->peeked = 0;
    sp->st.consumed++;
    if (sp->roff >= sp->segs[0].size)
        pop_head(sp); /* (5) */
}

/* ------------------------------------------------------------------ ahead reader (8) */

/* Makes abuf hold [off, off + n) of segment s (fewer bytes at the end of the file). */
static int ahead_fill(struct kts_spool *sp, const struct seg *s, bool tail, uint64_t off, size_t n,
                      uint64_t *avail)
{
    if (tail && sp->wfd >= 0 && off + n > sp->wdisk) {
        int rc = wbuf_flush(sp); /* caught up with the writer's buffer */
        if (rc != 0)
            return rc;
    }
    if (sp->afd >= 0 && sp->afd_seq == s->seq && off >= sp->abuf_off &&
        off + n <= sp->abuf_off + sp->alen) {
        *avail = sp->abuf_off + sp->alen - off;
        return 0;
    }
    if (sp->afd < 0 || sp->afd_seq != s->seq) {
        if (sp->afd >= 0)
            close(sp->afd);
        char name[64];
        kts_spool_seg_name(name, sizeof(name), s->seq, "");
        sp->afd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (sp->afd < 0)
            return -errno;
        sp->afd_seq = s->seq;
        sp->alen = 0;
    }
    size_t want = n > RBUF_MIN ? n : RBUF_MIN;
    if (want > sp->acap) {
        unsigned char *b = realloc(sp->abuf, want);
        if (b == NULL)
            return -ENOMEM;
        sp->abuf = b;
        sp->acap = want;
    }
    if (off + want > s->size)
        want = s->size > off ? (size_t)(s->size - off) : 0;
    size_t got;
    int rc = kts_spool_pread_all(sp->afd, sp->abuf, want, off, &got);
    if (rc != 0)
        return rc;
    sp->abuf_off = off;
    sp->alen = got;
    *avail = got;
    return 0;
}

int kts_spool_ahead_peek(struct kts_spool *sp, const void **key, size_t *key_len,
                         const void **payload, size_t *payload_len, struct kts_spool_pos *end)
{
    for (;;) {
        size_t i = 0;
        while (i < sp->nsegs && sp->segs[i].seq < sp->aseq)
            i++;
        if (i == sp->nsegs)
            return -ENOENT;
        const struct seg *s = &sp->segs[i];
        if (s->seq != sp->aseq) { /* not placed yet, or its segment is gone: the next one */
            sp->aseq = s->seq;
            sp->aoff = i == 0 ? sp->roff : 0;
        }
        if (i == 0 && sp->aoff < sp->roff)
            sp->aoff = sp->roff;
        if (sp->aoff >= s->size) {
            if (i + 1 == sp->nsegs)
                return -ENOENT; /* read everything appended */
            sp->aseq = sp->segs[i + 1].seq;
            sp->aoff = 0;
            continue;
        }
        bool tail = i + 1 == sp->nsegs;
        uint64_t avail, rec = 0;
        int rc = ahead_fill(sp, s, tail, sp->aoff, HDR, &avail);
        if (rc == 0 && avail >= HDR) {
            uint32_t len;
            memcpy(&len, sp->abuf + (sp->aoff - sp->abuf_off), 4);
            len = le32toh(len);
            if (len >= 2 && len <= KTS_SPOOL_BODY_MAX)
                rc = ahead_fill(sp, s, tail, sp->aoff, HDR + len, &avail);
            if (rc == 0)
                rec = kts_spool_record_ok(sp->abuf + (sp->aoff - sp->abuf_off), avail);
        }
        if (rc != 0) {
            kts_log_limited(&sp->rl_read, KTS_LOG_ERR,
                            "spool %s: cannot read segment %016" PRIx64 ": %s", sp->dir, s->seq,
                            strerror(-rc));
            return rc;
        }
        if (rec == 0) {
            /* (3) torn or corrupt: skip the rest of this segment */
            sp->st.torn_records++;
            sp->st.torn_bytes += s->size - sp->aoff;
            kts_log(KTS_LOG_WARNING,
                    "spool %s: torn or corrupt record in segment %016" PRIx64 " at offset %" PRIu64
                    ": the %" PRIu64 " bytes from there are skipped, not replayed",
                    sp->dir, s->seq, sp->aoff, s->size - sp->aoff);
            sp->aoff = s->size;
            continue;
        }
        record_fields(sp->abuf + (sp->aoff - sp->abuf_off), rec, key, key_len, payload,
                      payload_len);
        sp->apeeked = rec;
        end->seq = s->seq;
        end->off = sp->aoff + rec;
        return 0;
    }
}

void kts_spool_ahead_advance(struct kts_spool *sp)
{
    sp->aoff += sp->apeeked;
    sp->apeeked = 0;
}

struct kts_spool_pos kts_spool_tail(const struct kts_spool *sp)
{
    if (sp->nsegs == 0)
        return (struct kts_spool_pos){0, 0};
    return (struct kts_spool_pos){sp->segs[sp->nsegs - 1].seq, sp->segs[sp->nsegs - 1].size};
}

void kts_spool_ahead_skip(struct kts_spool *sp, struct kts_spool_pos to)
{
    sp->aseq = to.seq;
    sp->aoff = to.off;
    sp->apeeked = 0;
}

void kts_spool_ack_to(struct kts_spool *sp, struct kts_spool_pos to)
{
    while (sp->nsegs > 0 && sp->segs[0].seq < to.seq)
        pop_head(sp); /* (5) wholly acknowledged */
    if (sp->nsegs == 0 || sp->segs[0].seq != to.seq || to.off <= sp->roff)
        return;
    sp->roff = to.off;
    sp->peeked = 0;
    /* A wholly acknowledged head is deleted; the one the writer appends to only from 4 MiB on
     * or after a failed write (deleting it at every acknowledgement while appends keep up
     * would make a new file each time; a full disk needs the space back). */
    if (sp->roff >= sp->segs[0].size && !(sp->nsegs == 1 && sp->wfd >= 0 && sp->wlen == 0 &&
                                          sp->segs[0].size < (4u << 20) && !sp->wfail))
        pop_head(sp);
}

bool kts_spool_empty(struct kts_spool *sp)
{
    const void *k, *p;
    size_t kl, pl;
    return kts_spool_peek(sp, &k, &kl, &p, &pl) == -ENOENT;
}

int kts_spool_flush(struct kts_spool *sp, bool sync)
{
    int rc = wbuf_flush(sp);
    if (rc == 0 && sync && sp->sync && sp->wfd >= 0 && fdatasync(sp->wfd) != 0)
        rc = -errno;
    int crc = write_cursor(sp);
    int drc = sync ? dir_sync(sp) : 0;
    return rc ? rc : crc ? crc : drc;
}

void kts_spool_stats(const struct kts_spool *sp, struct kts_spool_stats *out)
{
    *out = sp->st;
    out->bytes = sp->bytes;
    out->segments = sp->nsegs;
}

int kts_spool_close(struct kts_spool *sp)
{
    return kts_spool_close_stats(sp, NULL);
}

int kts_spool_close_stats(struct kts_spool *sp, struct kts_spool_stats *final)
{
    if (sp == NULL)
        return 0;
    int rc = 0;
    if (sp->dirfd >= 0 && sp->lockfd >= 0) {
        rc = writer_close(sp);
        int crc = write_cursor(sp);
        if (rc == 0)
            rc = crc;
        int drc = dir_sync(sp);
        if (rc == 0)
            rc = drc;
    }
    if (final != NULL)
        kts_spool_stats(sp, final);
    if (sp->rfd >= 0)
        close(sp->rfd);
    if (sp->afd >= 0)
        close(sp->afd);
    free(sp->abuf);
    if (sp->wfd >= 0)
        close(sp->wfd);
    if (sp->lockfd >= 0)
        close(sp->lockfd); /* releases the flock */
    if (sp->dirfd >= 0)
        close(sp->dirfd);
    free(sp->segs);
    free(sp->rbuf);
    free(sp->wbuf);
    free(sp->dir);
    free(sp);
    return rc;
}
