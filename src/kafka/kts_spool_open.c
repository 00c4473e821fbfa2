/* SPDX-License-Identifier: MIT */
/* kts_spool: opening a spool directory (kts_spool.h; numbers below refer to its guarantees). */
#include "kts_spool.h"
#include "kts_spool_impl.h"

#include "kts_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* (3) Finds the end of the last whole record of the newest segment and cuts what follows. */
static int scan_tail(struct kts_spool *sp)
{
    struct seg *s = &sp->segs[sp->nsegs - 1];
    char name[64];
    kts_spool_seg_name(name, sizeof(name), s->seq, "");
    int fd = openat(sp->dirfd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    unsigned char *buf = malloc((size_t)s->size > 0 ? (size_t)s->size : 1);
    if (buf == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t got;
    int rc = kts_spool_pread_all(fd, buf, (size_t)s->size, 0, &got);
    uint64_t off = 0, n;
    while (rc == 0 && off < got && (n = kts_spool_record_ok(buf + off, got - off)) > 0)
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
        rc = kts_spool_segs_insert(sp, sp->nsegs, (struct seg){seq, (uint64_t)stb.st_size, 0});
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
    kts_spool_reader_reset(sp);
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
