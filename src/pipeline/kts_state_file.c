/* SPDX-License-Identifier: MIT */
/* kts_state_file: see kts_state_file.h for the format and the guarantees. */
#include "kts_state_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kts_pipeline_state.h"

#define MAX_KEY (64u * 1024)
#define MAX_REC (256u * 1024 * 1024)

static void put_le32(unsigned char *d, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        d[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_le32(const unsigned char *s)
{
    return (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
}

/* ------------------------------------------------------------------ reading */

/* Read a u32 length and that many bytes into *buf (grown as needed). 1: clean end of file before
 * the length (only when `eof_ok`), 0: read, -EBADMSG: cut or too long, -errno. */
static int read_part(FILE *f, unsigned char **buf, size_t *cap, uint32_t *len, uint32_t max,
                     bool eof_ok)
{
    unsigned char l[4];
    size_t got = fread(l, 1, 4, f);
    if (got == 0 && eof_ok && !ferror(f))
        return 1;
    if (got != 4)
        return ferror(f) ? -EIO : -EBADMSG;
    *len = get_le32(l);
    if (*len > max)
        return -EBADMSG;
    if (*len + 1 > *cap) {
        unsigned char *nb = realloc(*buf, *len + 1);
        if (nb == NULL)
            return -ENOMEM;
        *buf = nb;
        *cap = *len + 1;
    }
    if (fread(*buf, 1, *len, f) != *len)
        return ferror(f) ? -EIO : -EBADMSG;
    return 0;
}

int kts_state_file_read(const char *path, kts_state_entry_fn fn, void *opaque, char *err,
                        size_t errsz)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        snprintf(err, errsz, "%s: %s", path, strerror(e));
        return -e;
    }
    unsigned char hdr[8];
    int rc = 0;
    if (fread(hdr, 1, 8, f) != 8 || get_le32(hdr) != KTS_STATE_FILE_MAGIC) {
        snprintf(err, errsz, "%s: not a state file (no \"KTSF\" header)", path);
        rc = -EBADMSG;
    } else if ((hdr[4] | hdr[5] << 8) != KTS_STATE_FILE_VERSION) {
        snprintf(err, errsz, "%s: state file version %d, this build reads version %d", path,
                 hdr[4] | hdr[5] << 8, KTS_STATE_FILE_VERSION);
        rc = -EBADMSG;
    }
    unsigned char *key = NULL, *rec = NULL;
    size_t kcap = 0, rcap = 0, entry = 0;
    while (rc == 0) {
        uint32_t klen = 0, rlen = 0;
        rc = read_part(f, &key, &kcap, &klen, MAX_KEY, true);
        if (rc == 1) {
            rc = 0;
            break;
        }
        if (rc == 0)
            rc = read_part(f, &rec, &rcap, &rlen, MAX_REC, false);
        if (rc < 0) {
            snprintf(err, errsz, "%s: entry %zu: %s", path, entry + 1,
                     rc == -EBADMSG ? "cut short or impossible length (damaged file)"
                                    : strerror(-rc));
            break;
        }
        entry++;
        rc = fn(key, klen, rlen ? rec : NULL, rlen, opaque);
    }
    free(key);
    free(rec);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------ writing */

struct writer {
    FILE *f;
    size_t records;
};

static int write_entry(const void *key, size_t klen, const void *rec, size_t rlen,
                       int32_t partition, void *opaque)
{
    struct writer *w = opaque;
    unsigned char l[4];
    (void)partition;
    if (rec == NULL)
        return 0; /* a file holds the series that exist: no tombstones */
    put_le32(l, (uint32_t)klen);
    if (fwrite(l, 1, 4, w->f) != 4 || fwrite(key, 1, klen, w->f) != klen)
        return -EIO;
    put_le32(l, (uint32_t)rlen);
    if (fwrite(l, 1, 4, w->f) != 4 || fwrite(rec, 1, rlen, w->f) != rlen)
        return -EIO;
    w->records++;
    return 0;
}

/* fsync the directory that holds `path` (so that the rename is durable). */
static int sync_dir(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL)
        return -ENOMEM;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* Write the header and every pipeline's records into w->f, flushed and synced. */
static int write_all(struct writer *w, struct kts_pipeline *const *pipes, size_t n,
                     kts_state_file_lock_fn lock, void *opaque)
{
    unsigned char hdr[8] = {0};
    put_le32(hdr, KTS_STATE_FILE_MAGIC);
    hdr[4] = KTS_STATE_FILE_VERSION;
    if (fwrite(hdr, 1, 8, w->f) != 8)
        return -EIO;
    for (size_t i = 0; i < n; i++) {
        if (lock != NULL)
            lock(i, true, opaque);
        int rc = kts_pipeline_state_export(pipes[i], -1, false, write_entry, w);
        if (lock != NULL)
            lock(i, false, opaque);
        if (rc != 0)
            return rc < 0 ? rc : -EIO;
    }
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) < 0)
        return errno ? -errno : -EIO;
    return 0;
}

int kts_state_file_save(const char *path, struct kts_pipeline *const *pipes, size_t n,
                        size_t *records, char *err, size_t errsz)
{
    return kts_state_file_save_locked(path, pipes, n, NULL, NULL, records, err, errsz);
}

int kts_state_file_save_locked(const char *path, struct kts_pipeline *const *pipes, size_t n,
                               kts_state_file_lock_fn lock, void *opaque, size_t *records,
                               char *err, size_t errsz)
{
    size_t len = strlen(path);
    char *tmp = malloc(len + 12);
    if (tmp == NULL)
        return -ENOMEM;
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errsz, "%s: cannot create a temporary file: %s", tmp, strerror(e));
        free(tmp);
        return -e;
    }
    struct writer w = {fdopen(fd, "wb"), 0};
    int rc = w.f == NULL ? -errno : write_all(&w, pipes, n, lock, opaque);
    if (w.f != NULL && fclose(w.f) != 0 && rc == 0)
        rc = -errno;
    else if (w.f == NULL)
        close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0) {
        snprintf(err, errsz, "%s: cannot write the state file: %s", tmp, strerror(-rc));
        unlink(tmp);
    } else {
        rc = sync_dir(path);
        if (rc < 0)
            snprintf(err, errsz, "%s: fsync of its directory: %s", path, strerror(-rc));
    }
    free(tmp);
    if (records != NULL)
        *records = w.records;
    return rc;
}

int kts_state_file_set_aside(const char *path, char *dst, size_t dstsz)
{
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
    for (int k = 1; k < 100; k++) {
        struct stat sb;
        int n = k == 1 ? snprintf(dst, dstsz, "%s.bad-%s", path, stamp)
                       : snprintf(dst, dstsz, "%s.bad-%s-%d", path, stamp, k);
        if (n < 0 || (size_t)n >= dstsz)
            return -ENAMETOOLONG;
        if (lstat(dst, &sb) == 0)
            continue;
        return rename(path, dst) < 0 ? -errno : 0;
    }
    return -EEXIST;
}

/* ------------------------------------------------------------------ loading */

struct loader {
    struct kts_pipeline *const *pipes;
    size_t n;
    struct kts_state_load_stats *st;
};

static int load_entry(const void *key, size_t klen, const void *rec, size_t rlen, void *opaque)
{
    struct loader *l = opaque;
    const char *name = key;
    size_t nl = strnlen(name, klen);
    l->st->entries++;
    for (size_t i = 0; i < l->n; i++) {
        const char *pn = kts_pipeline_name(l->pipes[i]);
        if (nl < klen && strlen(pn) == nl && memcmp(pn, name, nl) == 0) {
            if (kts_pipeline_state_import(l->pipes[i], key, klen, rec, rlen, NULL) == 0)
                l->st->imported++;
            else
                l->st->refused++;
            return 0;
        }
    }
    l->st->unknown++;
    return 0;
}

int kts_state_file_load(const char *path, struct kts_pipeline *const *pipes, size_t n,
                        struct kts_state_load_stats *st, char *err, size_t errsz)
{
    struct kts_state_load_stats local;
    struct loader l = {pipes, n, st != NULL ? st : &local};
    memset(l.st, 0, sizeof(*l.st));
    return kts_state_file_read(path, load_entry, &l, err, errsz);
}
