/* SPDX-License-Identifier: MIT */
/*
 * kts_written_times: durable per-series watermarks in a MAP_SHARED file (guarantees in
 * kts_written_times.h).
 *
 * Layout (native byte order: the file belongs to one host):
 *   [0, 4096)   header: magic "KTSWMRK1", version 1, header size, entry size, slots, series_max,
 *               used (atomic, shared by every process mapping the file)
 *   [4096, …)   slots × {k1, k2, t}: open addressing, linear probing, no deletion.
 * A slot is free while k1 == 0. Claiming: reserve a unit of `used` (refuse beyond series_max),
 * CAS k1 0 → key1, then CAS k2 0 → key2. A reader whose k1 matches and finds k2 still 0 (a
 * claim in progress, or one cut short by kill -9) does that CAS itself instead of waiting: the
 * winner of the k2 CAS owns the slot, a loser with another k2 probes on (5). So a key never gets
 * two slots. k1 and k2 have their lowest bit set, so a key is never 0. t only grows (CAS max).
 */
#include "kts_written_times.h"
#include "kts_assert.h"
#include "kts_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define WM_MAGIC "KTSWMRK1"
#define WM_VERSION 1u
#define WM_HEADER_SIZE 4096u

struct wm_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;
    uint32_t entry_size;
    uint32_t reserved;
    uint64_t slots;
    uint64_t series_max;
    uint64_t used; /* atomic */
};

struct wm_entry {
    uint64_t k1; /* atomic; 0 = free */
    uint64_t k2; /* atomic; 0 = claim in progress */
    uint64_t t;  /* atomic; the watermark */
};

struct kts_written_times {
    struct wm_header *hdr;
    struct wm_entry *tab;
    uint64_t mask;
    size_t map_size;
    uint64_t refused; /* atomic */
};

/* ------------------------------------------------------------------ hashing (3) */

/* The two seeds of a key's two hashes (kts_hash.h). On disk: never change them. */
#define WM_SEED1 0x243F6A8885A308D3ULL
#define WM_SEED2 0x13198A2E03707344ULL

/* ------------------------------------------------------------------ open/close */

static uint64_t slots_for(uint64_t series_max)
{
    uint64_t want = series_max + series_max / 3 + 1, s = 16;
    while (s < want)
        s <<= 1;
    return s;
}

/* Validate an existing header against the request (6). */
static int check_header(const struct wm_header *h, off_t size, const char *path,
                        uint64_t series_max, char *errbuf, size_t errbuf_size)
{
    if (memcmp(h->magic, WM_MAGIC, 8) != 0) {
        snprintf(errbuf, errbuf_size, "%s is not a read_kafka_ts state file (bad magic)", path);
        return -EINVAL;
    }
    if (h->version != WM_VERSION || h->header_size != WM_HEADER_SIZE ||
        h->entry_size != sizeof(struct wm_entry)) {
        snprintf(errbuf, errbuf_size,
                 "%s: state file version %u (entry size %u), this build "
                 "reads version %u (entry size %zu)",
                 path, h->version, h->entry_size, WM_VERSION, sizeof(struct wm_entry));
        return -EINVAL;
    }
    if (h->series_max != series_max) {
        snprintf(errbuf, errbuf_size,
                 "%s was created for %llu series, the configuration asks "
                 "for %llu: configure %llu, or delete the file while no aggregator uses it (the "
                 "next start then writes redelivered values again once)",
                 path, (unsigned long long)h->series_max, (unsigned long long)series_max,
                 (unsigned long long)h->series_max);
        return -EINVAL;
    }
    if (h->slots != slots_for(series_max) ||
        (uint64_t)size != WM_HEADER_SIZE + h->slots * sizeof(struct wm_entry)) {
        snprintf(errbuf, errbuf_size, "%s is damaged: %lld bytes for %llu slots", path,
                 (long long)size, (unsigned long long)h->slots);
        return -EINVAL;
    }
    return 0;
}

int kts_written_times_open(struct kts_written_times **out, const char *path, uint64_t series_max,
                           char *errbuf, size_t errbuf_size)
{
    *out = NULL;
    if (series_max < 1 || series_max > KTS_WRITTEN_TIMES_SERIES_MAX_LIMIT) {
        snprintf(errbuf, errbuf_size, "series_max %llu outside 1 .. %llu",
                 (unsigned long long)series_max,
                 (unsigned long long)KTS_WRITTEN_TIMES_SERIES_MAX_LIMIT);
        return -EINVAL;
    }
    uint64_t slots = slots_for(series_max);
    size_t size = WM_HEADER_SIZE + (size_t)slots * sizeof(struct wm_entry);
    int rc = 0;
    void *map = MAP_FAILED;
    struct kts_written_times *w = calloc(1, sizeof(*w));
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (w == NULL) {
        rc = -ENOMEM;
        snprintf(errbuf, errbuf_size, "out of memory");
        goto out;
    }
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        rc = -errno;
        snprintf(errbuf, errbuf_size, "%s: %s", path, strerror(errno));
        goto out;
    }
    struct stat st;
    struct wm_header h;
    memset(&h, 0, sizeof(h));
    if (fstat(fd, &st) != 0 || (st.st_size > 0 && pread(fd, &h, sizeof(h), 0) < 0)) {
        rc = -errno;
        snprintf(errbuf, errbuf_size, "%s: %s", path, strerror(errno));
        goto out;
    }
    static const char zero[8];
    if (st.st_size == 0 || memcmp(h.magic, zero, 8) == 0) {
        /* New (or creation interrupted before the magic was written, 6): blocks reserved now
         * so that a full disk is an error here, not a SIGBUS on a store later. */
        memset(&h, 0, sizeof(h));
        h.version = WM_VERSION;
        h.header_size = WM_HEADER_SIZE;
        h.entry_size = sizeof(struct wm_entry);
        h.slots = slots;
        h.series_max = series_max;
        int e = 0;
        if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)size) != 0)
            e = errno;
        else if ((e = posix_fallocate(fd, 0, (off_t)size)) == 0 &&
                 (pwrite(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) || fdatasync(fd) != 0 ||
                  pwrite(fd, WM_MAGIC, 8, 0) != 8 || fdatasync(fd) != 0))
            e = errno ? errno : EIO;
        if (e != 0) {
            rc = -e;
            snprintf(errbuf, errbuf_size, "%s: cannot create a %zu-byte state file: %s", path, size,
                     strerror(e));
            goto out;
        }
        st.st_size = (off_t)size;
        memcpy(h.magic, WM_MAGIC, 8);
    }
    if ((rc = check_header(&h, st.st_size, path, series_max, errbuf, errbuf_size)) < 0)
        goto out;
    map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        rc = -errno;
        snprintf(errbuf, errbuf_size, "%s: mmap of %zu bytes: %s", path, size, strerror(errno));
        goto out;
    }
    /* Slots are hit at random: without this, every fault also maps its neighbours (fault-around,
     * readahead), and 1,000 series showed as 36 MiB of RSS instead of 4 MiB. */
    madvise(map, size, MADV_RANDOM);
    w->hdr = map;
    w->tab = (struct wm_entry *)((char *)map + WM_HEADER_SIZE);
    w->mask = slots - 1;
    w->map_size = size;
    *out = w;
    w = NULL;
out:
    if (fd >= 0) {
        /* Unlock explicitly: the mapping keeps the open file description (and so a flock on
         * it) alive after close(). */
        flock(fd, LOCK_UN);
        close(fd);
    }
    free(w);
    return rc;
}

int kts_written_times_sync(struct kts_written_times *w)
{
    return msync(w->hdr, w->map_size, MS_SYNC) == 0 ? 0 : -errno;
}

void kts_written_times_close(struct kts_written_times *w)
{
    if (w == NULL)
        return;
    kts_written_times_sync(w);
    munmap(w->hdr, w->map_size);
    free(w);
}

/* ------------------------------------------------------------------ slots */

int kts_written_times_slot(struct kts_written_times *w, const void *key, size_t len, uint64_t *slot)
{
    uint64_t k1 = kts_hash64(key, len, WM_SEED1) | 1;
    uint64_t k2 = kts_hash64(key, len, WM_SEED2) | 1;
    uint64_t idx = (k1 >> 1) & w->mask;
    for (uint64_t probes = 0; probes <= w->mask; probes++, idx = (idx + 1) & w->mask) {
        struct wm_entry *e = &w->tab[idx];
        uint64_t k = __atomic_load_n(&e->k1, __ATOMIC_ACQUIRE);
        if (k == 0) {
            if (__atomic_fetch_add(&w->hdr->used, 1, __ATOMIC_ACQ_REL) >= w->hdr->series_max) {
                uint64_t before = __atomic_fetch_sub(&w->hdr->used, 1, __ATOMIC_ACQ_REL);
                KTS_ASSERT(before > 0); /* our own increment is still in it */
                __atomic_fetch_add(&w->refused, 1, __ATOMIC_RELAXED);
                return -ENOSPC;
            }
            if (__atomic_compare_exchange_n(&e->k1, &k, k1, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
                k = k1; /* ours: complete it with k2 below (another may already have) */
            else {
                /* lost: k is set */
                uint64_t before = __atomic_fetch_sub(&w->hdr->used, 1, __ATOMIC_ACQ_REL);
                KTS_ASSERT(before > 0); /* our own increment is still in it */
            }
        }
        if (k != k1)
            continue;
        /* k1 is ours: the slot is this key's if k2 matches. k2 still 0 means a claim in
         * progress (or one cut short by kill -9): complete it ourselves, whoever wins the CAS
         * decides the slot's key. No waiting, so two processes claiming the same key always
         * end on the same slot (5). */
        uint64_t v = 0;
        if (__atomic_compare_exchange_n(&e->k2, &v, k2, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE) ||
            v == k2) {
            *slot = idx + 1;
            return 0;
        }
    }
    __atomic_fetch_add(&w->refused, 1, __ATOMIC_RELAXED);
    return -ENOSPC;
}

uint64_t kts_written_times_get(const struct kts_written_times *w, uint64_t slot)
{
    if (slot == 0 || slot > w->mask + 1)
        return 0;
    return __atomic_load_n(&w->tab[slot - 1].t, __ATOMIC_ACQUIRE);
}

void kts_written_times_raise(struct kts_written_times *w, uint64_t slot, uint64_t t)
{
    if (slot == 0 || slot > w->mask + 1)
        return;
    uint64_t *p = &w->tab[slot - 1].t;
    uint64_t old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (t > old &&
           !__atomic_compare_exchange_n(p, &old, t, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
}

void kts_written_times_stats(const struct kts_written_times *w, struct kts_written_times_stats *out)
{
    out->series_max = w->hdr->series_max;
    out->slots = w->mask + 1;
    uint64_t used = __atomic_load_n(&w->hdr->used, __ATOMIC_RELAXED);
    out->used = used > out->series_max ? out->series_max : used; /* transient over-reserve */
    out->refused = __atomic_load_n(&w->refused, __ATOMIC_RELAXED);
    out->file_bytes = w->map_size;
}
