/* SPDX-License-Identifier: MIT */
/* kts_spool: see kts_spool.h for the layout and the guarantees (numbers below refer to them). */
#include "kts_spool.h"

#include "kts_log.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define HDR 8u                         /* u32 body_len, u32 crc32c(body) */
#define SEQ_BASE 0x8000000000000000ull /* first segment; prepends count down from here */
#define WBUF_SIZE (256u << 10)
#define RBUF_MIN (256u << 10)
#define WMAP_CHUNK (1u << 20) /* (8) the mapped writer allocates file space 1 MiB at a time */

/* ------------------------------------------------------------------ CRC-32C */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) && defined(__GNUC__)
#define KTS_CRC_HW 1
static bool crc_hw; /* SSE 4.2's crc32 instruction computes exactly CRC-32C */

/* The same CRC with the crc32 instruction: 8 bytes per instruction instead of 8 table lookups
 * (a spool record of some 250 bytes costs ~35 instructions instead of ~300). */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p,
                                                            size_t len)
{
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    while (len--)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

static void crc_init(void)
{
#ifdef KTS_CRC_HW
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2");
#endif
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t kts_crc32c(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_init);
#ifdef KTS_CRC_HW
    if (crc_hw)
        return crc32c_hw(crc, buf, len);
#endif
    const unsigned char *p = buf;
    crc = ~crc;
    while (len >= 8) { /* slicing by 8 */
        uint64_t w;
        memcpy(&w, p, 8);
        w = le64toh(w) ^ crc;
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
              crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
              crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

/* ------------------------------------------------------------------ state */

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

static void seg_name(char *buf, size_t size, uint64_t seq, const char *suffix)
{
    snprintf(buf, size, "%016" PRIx64 ".seg%s", seq, suffix);
}

static int segs_insert(struct kts_spool *sp, size_t at, struct seg s)
{
    if (sp->nsegs == sp->segs_cap) {
        size_t cap = sp->segs_cap ? sp->segs_cap * 2 : 16;
        struct seg *n = realloc(sp->segs, cap * sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        sp->segs = n;
        sp->segs_cap = cap;
    }
    memmove(sp->segs + at + 1, sp->segs + at, (sp->nsegs - at) * sizeof(*sp->segs));
    sp->segs[at] = s;
    sp->nsegs++;
    return 0;
}

static void reader_reset(struct kts_spool *sp)
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
    seg_name(name, sizeof(name), sp->segs[0].seq, "");
    if (unlinkat(sp->dirfd, name, 0) != 0 && errno != ENOENT)
        kts_log(KTS_LOG_ERR, "spool %s: cannot delete %s: %s", sp->dir, name, strerror(errno));
    sp->dir_dirty = true; /* synced at the next flush or close: a lost delete only replays */
    sp->bytes -= sp->segs[0].size;
    memmove(sp->segs, sp->segs + 1, (sp->nsegs - 1) * sizeof(*sp->segs));
    sp->nsegs--;
    reader_reset(sp);
    if (sp->nsegs == 0)
        write_cursor(sp); /* (5) empty: no file but the cursor and the lock */
}

/* ------------------------------------------------------------------ open */

static int parse_seg_name(const char *name, uint64_t *seq)
{
    size_t len = strlen(name);
    if (len != 16 + 4 || strcmp(name + 16, ".seg") != 0)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(name, &end, 16);
    if (errno != 0 || end != name + 16)
        return -1;
    *seq = v;
    return 0;
}

static int cmp_seg(const void *a, const void *b)
{
    const struct seg *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off, size_t *got)
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
static uint64_t record_ok(const unsigned char *buf, uint64_t avail)
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

/* (3) Finds the end of the last whole record of the newest segment and cuts what follows. */
static int scan_tail(struct kts_spool *sp)
{
    struct seg *s = &sp->segs[sp->nsegs - 1];
    char name[64];
    seg_name(name, sizeof(name), s->seq, "");
    int fd = openat(sp->dirfd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    unsigned char *buf = malloc((size_t)s->size > 0 ? (size_t)s->size : 1);
    if (buf == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t got;
    int rc = pread_all(fd, buf, (size_t)s->size, 0, &got);
    uint64_t off = 0, n;
    while (rc == 0 && off < got && (n = record_ok(buf + off, got - off)) > 0)
        off += n;
    /* (8) Zeros after the last record are file space the mapped writer allocated ahead and a
     * crash left behind, not a torn record: cut without a word. */
    uint64_t zeros = off;
    while (rc == 0 && zeros < got && buf[zeros] == 0)
        zeros++;
    free(buf);
    if (rc == 0 && off < s->size && zeros == s->size) {
        if (ftruncate(fd, (off_t)off) != 0)
            rc = -errno;
        s->size = off;
    } else if (rc == 0 && off < s->size) {
        sp->st.torn_records++;
        sp->st.torn_bytes += s->size - off;
        kts_log(KTS_LOG_WARNING,
                "spool %s: %s ends in a torn record (%" PRIu64 " bytes after offset %" PRIu64
                ", from a crash): cut, not replayed",
                sp->dir, name, s->size - off, off);
        if (ftruncate(fd, (off_t)off) != 0)
            rc = -errno;
        s->size = off;
    }
    close(fd);
    if (rc == 0 && s->size == 0) {
        unlinkat(sp->dirfd, name, 0);
        sp->nsegs--;
    }
    return rc;
}

static int load_dir(struct kts_spool *sp)
{
    int fd = dup(sp->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        uint64_t seq;
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".tmp") == 0 &&
            strcmp(e->d_name, "cursor.tmp")) {
            unlinkat(sp->dirfd, e->d_name, 0); /* an unfinished prepend: never renamed */
            continue;
        }
        if (parse_seg_name(e->d_name, &seq) != 0)
            continue;
        struct stat stb;
        if (fstatat(sp->dirfd, e->d_name, &stb, 0) != 0) {
            rc = -errno;
            break;
        }
        if (stb.st_size == 0) {
            unlinkat(sp->dirfd, e->d_name, 0);
            continue;
        }
        rc = segs_insert(sp, sp->nsegs, (struct seg){seq, (uint64_t)stb.st_size, 0});
    }
    closedir(d);
    if (rc != 0)
        return rc;
    if (sp->nsegs > 1)
        qsort(sp->segs, sp->nsegs, sizeof(*sp->segs), cmp_seg);
    if (sp->nsegs > 0 && (rc = scan_tail(sp)) != 0)
        return rc;
    /* The cursor: how far the segment it names was consumed (4). */
    FILE *f = NULL;
    int cfd = openat(sp->dirfd, "cursor", O_RDONLY | O_CLOEXEC);
    if (cfd >= 0)
        f = fdopen(cfd, "r");
    if (f != NULL) {
        unsigned long long seq, off;
        if (fscanf(f, "%llx %llu", &seq, &off) == 2)
            for (size_t i = 0; i < sp->nsegs; i++)
                if (sp->segs[i].seq == seq && off <= sp->segs[i].size)
                    sp->segs[i].start = off;
        fclose(f);
    } else if (cfd >= 0) {
        close(cfd);
    }
    sp->bytes = 0;
    for (size_t i = 0; i < sp->nsegs; i++)
        sp->bytes += sp->segs[i].size;
    sp->next_seq = sp->nsegs > 0 ? sp->segs[sp->nsegs - 1].seq + 1 : SEQ_BASE;
    reader_reset(sp);
    return 0;
}

/* fsync the directory that holds the new spool directory `dir` (borrowed), so that the spool's
 * own entry survives a power loss (6). Best effort: a failure is logged. */
static void sync_parent(const char *dir)
{
    char *copy = strdup(dir);
    if (copy == NULL)
        return;
    char *slash = strrchr(copy, '/');
    const char *parent = slash == NULL ? "." : slash == copy ? "/" : copy;
    if (slash != NULL && slash != copy)
        *slash = '\0';
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        kts_log(KTS_LOG_WARNING, "spool %s: cannot fsync its parent directory: %s", dir,
                strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
}

int kts_spool_open(struct kts_spool **out, const struct kts_spool_config *cfg, char *errbuf,
                   size_t errbuf_size)
{
    *out = NULL;
    struct kts_spool *sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return -ENOMEM;
    sp->dirfd = sp->lockfd = sp->wfd = sp->rfd = sp->afd = -1;
    sp->write_through = cfg->write_through;
    sp->max_bytes = cfg->max_bytes;
    sp->segment_bytes = cfg->segment_bytes > 0 ? cfg->segment_bytes : 64u << 20;
    sp->sync = cfg->sync;
    sp->dir = strdup(cfg->dir);
    sp->wbuf = malloc(WBUF_SIZE);
    int rc = 0;
    if (sp->dir == NULL || sp->wbuf == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    bool created = mkdir(cfg->dir, 0700) == 0;
    if (!created && errno != EEXIST) {
        rc = -errno;
        snprintf(errbuf, errbuf_size, "cannot create the spool directory \"%s\": %s", cfg->dir,
                 strerror(errno));
        goto fail;
    }
    if (created && sp->sync)
        sync_parent(cfg->dir);
    sp->dirfd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dirfd < 0) {
        rc = -errno;
        snprintf(errbuf, errbuf_size, "cannot open the spool directory \"%s\": %s", cfg->dir,
                 strerror(errno));
        goto fail;
    }
    /* read-only: no file of an idle spool is open for writing (a read-only remount works) */
    sp->lockfd = openat(sp->dirfd, "lock", O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
    if (sp->lockfd < 0 || flock(sp->lockfd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        if (rc == -EBUSY)
            snprintf(errbuf, errbuf_size,
                     "spool directory \"%s\" is in use by another write_kafka_ts instance or "
                     "collectd process (each needs its own)",
                     cfg->dir);
        else
            snprintf(errbuf, errbuf_size, "cannot lock the spool directory \"%s\": %s", cfg->dir,
                     strerror(-rc));
        goto fail;
    }
    sp->dir_dirty = true; /* the lock file; load_dir() may delete leftovers */
    rc = load_dir(sp);
    if (rc != 0) {
        snprintf(errbuf, errbuf_size, "cannot read the spool directory \"%s\": %s", cfg->dir,
                 strerror(-rc));
        goto fail;
    }
    *out = sp;
    return 0;
fail:
    kts_spool_close(sp);
    return rc;
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
    seg_name(name, sizeof(name), seq, "");
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
    rc = segs_insert(sp, sp->nsegs, (struct seg){seq, 0, 0});
    if (rc != 0) {
        close(fd);
        unlinkat(sp->dirfd, name, 0);
        return rc;
    }
    if (sp->nsegs == 1)
        reader_reset(sp);
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
    uint64_t total = 0;
    size_t fit = 0;
    for (; fit < n; fit++) {
        if (recs[fit].key_len > KTS_SPOOL_KEY_MAX ||
            2 + recs[fit].key_len + recs[fit].payload_len > KTS_SPOOL_BODY_MAX)
            break;
        uint64_t r = HDR + 2 + recs[fit].key_len + recs[fit].payload_len;
        if (copy_len + total + r > room)
            break;
        total += r;
    }
    if (fit == 0)
        return 0;
    uint64_t seq = sp->nsegs > 0 ? sp->segs[0].seq - 1 : sp->next_seq++;
    char name[64], tmp[64], old[64];
    seg_name(name, sizeof(name), seq, "");
    seg_name(tmp, sizeof(tmp), seq, ".tmp");
    int fd = openat(sp->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    unsigned char *buf = sp->wbuf; /* free: the writer is closed */
    size_t blen = 0;
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
    if (rc == 0 && copy_len > 0) {
        seg_name(old, sizeof(old), sp->segs[0].seq, "");
        int ofd = openat(sp->dirfd, old, O_RDONLY | O_CLOEXEC);
        if (ofd < 0)
            rc = -errno;
        for (uint64_t off = copy_from; rc == 0 && off < copy_from + copy_len;) {
            size_t want = copy_from + copy_len - off > WBUF_SIZE
                              ? WBUF_SIZE
                              : (size_t)(copy_from + copy_len - off);
            size_t got;
            rc = pread_all(ofd, buf, want, off, &got);
            if (rc == 0 && got != want)
                rc = -EIO;
            if (rc == 0)
                rc = write_all(fd, buf, got);
            off += got;
        }
        if (ofd >= 0)
            close(ofd);
    }
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
    struct seg s = {seq, total + copy_len, 0};
    if (copy_len > 0 || (sp->nsegs > 0 && sp->roff >= sp->segs[0].size)) {
        /* The new segment replaces the head: delete the old one, after the new one's entry is
         * on disk (6; otherwise a power loss could keep the delete and lose the copy). */
        dir_sync(sp);
        sp->bytes -= sp->segs[0].size;
        seg_name(old, sizeof(old), sp->segs[0].seq, "");
        unlinkat(sp->dirfd, old, 0);
        sp->dir_dirty = true;
        sp->segs[0] = s;
    } else if ((rc = segs_insert(sp, 0, s)) != 0) {
        goto fail;
    }
    sp->segs[0].start = 0;
    sp->bytes += s.size;
    sp->st.appended += fit;
    reader_reset(sp);
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
        seg_name(name, sizeof(name), s->seq, "");
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
    int rc = pread_all(sp->rfd, sp->rbuf, want, off, &got);
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
                rec = record_ok(sp->rbuf + (sp->roff - sp->rbuf_off), avail);
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
            seg_name(name, sizeof(name), s->seq, "");
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
        seg_name(name, sizeof(name), s->seq, "");
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
    int rc = pread_all(sp->afd, sp->abuf, want, off, &got);
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
                rec = record_ok(sp->abuf + (sp->aoff - sp->abuf_off), avail);
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
