/* SPDX-License-Identifier: MIT */
/*
 * kts_spool (src/kafka/kts_spool.h); test groups named after its guarantees:
 *   1 order (append, segments, prepend in front of a partly consumed head, across restarts)
 *   2 bounded size (-EFBIG, nothing written; room again after consuming; prepend partial)
 *   3 torn last record after a "crash" (cut tail, flipped byte in an older segment)
 *   4 restart replay from the cursor (no record lost, none repeated after a clean close)
 *   5 consumed segments deleted, no segment file when empty
 *   6 flush makes buffered records visible in the files; with sync, flush and close fdatasync
 *     and fsync the directory after segment files or the cursor were created or deleted
 *   7 a second open of the same directory fails with -EBUSY
 *   8 write-through (the mapped writer): records appended by a process killed with SIGKILL are
 *     all there at the next open, the space allocated ahead is cut without counting a torn
 *     record, a torn record before it still is; segments roll over; the ahead reader and
 *     ack_to consume them
 */
#include "kts_log.h"
#include "kts_spool.h"
#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[256];
static int warnings;

static void sink(int level, const char *msg, void *opaque)
{
    (void)opaque;
    if (level <= KTS_LOG_WARNING)
        warnings++;
    diag("log %d: %s", level, msg);
}

static struct kts_spool *open_spool(uint64_t max, uint64_t seg)
{
    struct kts_spool_config cfg = {.dir = dir, .max_bytes = max, .segment_bytes = seg};
    struct kts_spool *sp = NULL;
    char err[256] = "";
    int rc = kts_spool_open(&sp, &cfg, err, sizeof(err));
    if (rc != 0)
        diag("open: %d %s", rc, err);
    return sp;
}

/* Record i: key "series-(i % 7)", payload "value i" padded to a length depending on i. */
static int put(struct kts_spool *sp, unsigned i)
{
    char key[32], pl[256];
    int kl = snprintf(key, sizeof(key), "series-%u", i % 7);
    int pl_len = snprintf(pl, sizeof(pl), "value %u %.*s", i, (int)(i % 50),
                          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    return kts_spool_append(sp, key, (size_t)kl, pl, (size_t)pl_len);
}

/* Reads up to max records; checks each is record first, first+1, ...; returns how many read
 * (or -1 at the first mismatch, after a diag). */
static long take(struct kts_spool *sp, unsigned first, long max)
{
    long n = 0;
    const void *k, *p;
    size_t kl, pl;
    while (n < max && kts_spool_peek(sp, &k, &kl, &p, &pl) == 0) {
        unsigned want = first + (unsigned)n;
        char key[32], exp[256];
        int ekl = snprintf(key, sizeof(key), "series-%u", want % 7);
        int epl = snprintf(exp, sizeof(exp), "value %u %.*s", want, (int)(want % 50),
                           "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        if (kl != (size_t)ekl || memcmp(k, key, kl) != 0 || pl != (size_t)epl ||
            memcmp(p, exp, pl) != 0) {
            diag("record %ld: got %.*s / %.*s, want %s / %s", n, (int)kl, (const char *)k, (int)pl,
                 (const char *)p, key, exp);
            return -1;
        }
        kts_spool_advance(sp);
        n++;
    }
    return n;
}

static int count_segments(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        if (strlen(e->d_name) == 20 && strcmp(e->d_name + 16, ".seg") == 0)
            n++;
    if (d != NULL)
        closedir(d);
    return n;
}

/* The path of the newest (last=1) or oldest (last=0) segment file. */
static int segment_path(char *out, size_t size, int last)
{
    DIR *d = opendir(dir);
    char best[64] = "";
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        if (strlen(e->d_name) == 20 && strcmp(e->d_name + 16, ".seg") == 0 &&
            (best[0] == '\0' || (last ? strcmp(e->d_name, best) > 0 : strcmp(e->d_name, best) < 0)))
            snprintf(best, sizeof(best), "%s", e->d_name);
    if (d != NULL)
        closedir(d);
    snprintf(out, size, "%s/%s", dir, best);
    return best[0] ? 0 : -1;
}

/* Resident memory of this process, KiB (/proc/self/statm). */
static long resident_kib(void)
{
    long pages = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void empty_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d != NULL)
        closedir(d);
}

int main(void)
{
    plan(67);
    kts_log_set_sink(sink, NULL);
    snprintf(dir, sizeof(dir), "%s/kts-t-spool.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(dir) == NULL)
        BAIL_OUT("mkdtemp");

    /* CRC-32C check value (RFC 3720 / iSCSI): "123456789" → 0xe3069283. */
    is_uint(kts_crc32c(0, "123456789", 9), 0xe3069283u, "crc32c check value");

    /* ---- 1, 5, 6: order over many segments */
    struct kts_spool *sp = open_spool(1u << 30, 4096);
    ok(sp != NULL, "1: open a new spool");
    int bad = 0;
    for (unsigned i = 0; i < 5000; i++)
        bad += put(sp, i) != 0;
    is_int(bad, 0, "1: 5000 appends succeed");
    ok(count_segments() > 10, "1: spread over %d segment files of ~4 KiB", count_segments());
    struct kts_spool_stats st;
    kts_spool_stats(sp, &st);
    diag("5000 records: %" PRIu64 " bytes", st.bytes);
    is_int(take(sp, 0, 2000), 2000, "1: the first 2000 come back in order");
    /* interleave: appends while reading the writer's segment */
    for (unsigned i = 5000; i < 6000; i++)
        bad += put(sp, i) != 0;
    is_int(take(sp, 2000, 100000), 4000,
           "1: the other 4000 (incl. 1000 appended while reading) in order");
    ok(kts_spool_empty(sp), "5: empty after consuming everything");
    is_int(count_segments(), 0, "5: no segment file left when empty");
    kts_spool_stats(sp, &st);
    is_uint(st.bytes, 0, "5: bytes 0 when empty");
    /* 6: buffered records reach the file on flush */
    put(sp, 0);
    is_int(kts_spool_flush(sp, true), 0, "6: flush");
    char path[512];
    struct stat sb;
    ok(segment_path(path, sizeof(path), 1) == 0 && stat(path, &sb) == 0 && sb.st_size > 0,
       "6: after flush the record is in the file");
    is_int(take(sp, 0, 10), 1, "6: and reads back");

    /* ---- 7 */
    struct kts_spool *sp2 = open_spool(1u << 20, 0);
    ok(sp2 == NULL, "7: a second open of the same directory fails (locked)");
    kts_spool_close(sp2);
    is_int(kts_spool_close(sp), 0, "close");

    /* ---- 2: bounded */
    empty_dir();
    sp = open_spool(10000, 2048);
    long n = 0;
    int rc;
    while ((rc = put(sp, (unsigned)n)) == 0)
        n++;
    is_int(rc, -EFBIG, "2: append refused with -EFBIG when full (SpoolMaxBytes)");
    kts_spool_stats(sp, &st);
    ok(st.bytes <= 10000 && st.bytes > 10000 - 100, "2: %" PRIu64 " bytes <= max 10000", st.bytes);
    diag("%ld records fit in 10000 bytes", n);
    is_int(put(sp, (unsigned)n), -EFBIG, "2: still full, nothing written");
    long got = take(sp, 0, n / 2);
    bad = 0;
    for (unsigned i = (unsigned)n; i < (unsigned)n + 5; i++)
        bad += put(sp, i) != 0;
    /* consuming a whole segment frees its bytes */
    is_int(bad, 0, "2: room again after consuming %ld records (segments deleted)", got);
    is_int(take(sp, (unsigned)got, 1000000), n + 5 - got, "2: the rest in order");
    kts_spool_close(sp);

    /* ---- 4: restart replay from the cursor */
    empty_dir();
    sp = open_spool(1u << 30, 8192);
    for (unsigned i = 0; i < 3000; i++)
        put(sp, i);
    is_int(take(sp, 0, 1234), 1234, "4: consume 1234 of 3000");
    kts_spool_close(sp);
    sp = open_spool(1u << 30, 8192);
    ok(sp != NULL, "4: reopen");
    for (unsigned i = 3000; i < 3500; i++)
        put(sp, i);
    is_int(take(sp, 1234, 100000), 3500 - 1234,
           "4: after restart: records 1234..3499 exactly, in order (none lost, none repeated)");
    kts_spool_close(sp);

    /* ---- 1: prepend in front of a partly consumed head, across a restart */
    empty_dir();
    sp = open_spool(1u << 30, 1u << 20);
    for (unsigned i = 100; i < 400; i++)
        put(sp, i);
    is_int(take(sp, 100, 50), 50, "1: consume 50 of 300 (head partly consumed)");
    /* records 0..99 are "older", e.g. purged from librdkafka at shutdown */
    struct kts_spool_rec recs[100];
    char keys[100][32], pls[100][256];
    for (unsigned i = 0; i < 100; i++) {
        recs[i].key = keys[i];
        recs[i].key_len = (size_t)snprintf(keys[i], 32, "series-%u", i % 7);
        recs[i].payload = pls[i];
        recs[i].payload_len =
            (size_t)snprintf(pls[i], 256, "value %u %.*s", i, (int)(i % 50),
                             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    }
    is_int(kts_spool_prepend(sp, recs, 100), 100, "1: prepend 100 records");
    kts_spool_close(sp);
    sp = open_spool(1u << 30, 1u << 20);
    for (unsigned i = 400; i < 450; i++)
        put(sp, i);
    is_int(take(sp, 0, 100), 100, "1: after restart the prepended 0..99 come first, in order");
    is_int(take(sp, 150, 100000), 300, "1: then 150..449: the consumed 100..149 are not repeated");
    kts_spool_close(sp);

    /* ---- 2: prepend respects max_bytes, writing from the first record */
    empty_dir();
    sp = open_spool(3000, 1u << 20);
    for (unsigned i = 100; i < 110; i++)
        put(sp, i);
    n = kts_spool_prepend(sp, recs, 100);
    kts_spool_stats(sp, &st);
    ok(n > 0 && n < 100 && st.bytes <= 3000,
       "2: prepend of 100 writes the first %ld that fit (%" PRIu64 " bytes)", n, st.bytes);
    is_int(take(sp, 0, n), n, "2: those come first");
    kts_spool_close(sp);

    /* ---- 3: torn last record */
    empty_dir();
    sp = open_spool(1u << 30, 1u << 20);
    for (unsigned i = 0; i < 1000; i++)
        put(sp, i);
    kts_spool_close(sp);
    segment_path(path, sizeof(path), 1);
    stat(path, &sb);
    ok(truncate(path, sb.st_size - 5) == 0, "3: cut the last 5 bytes (a write torn by a crash)");
    warnings = 0;
    sp = open_spool(1u << 30, 1u << 20);
    kts_spool_stats(sp, &st);
    is_uint(st.torn_records, 1, "3: one torn record counted at open");
    ok(warnings == 1, "3: and logged once");
    is_int(take(sp, 0, 100000), 999, "3: records 0..998 replayed in order; the torn one is not");
    kts_spool_close(sp);

    /* ---- 3: a garbage tail that happens to look like a header with a huge length */
    empty_dir();
    sp = open_spool(1u << 30, 1u << 20);
    for (unsigned i = 0; i < 10; i++)
        put(sp, i);
    kts_spool_close(sp);
    segment_path(path, sizeof(path), 1);
    int fd = open(path, O_WRONLY | O_APPEND);
    unsigned char junk[12] = {0xff, 0xff, 0xff, 0x00, 1, 2, 3, 4, 5, 6, 7, 8};
    ok(fd >= 0 && write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk),
       "3: append 12 bytes of junk");
    close(fd);
    sp = open_spool(1u << 30, 1u << 20);
    kts_spool_stats(sp, &st);
    ok(st.torn_records == 1 && st.torn_bytes == 12, "3: junk counted as torn (%" PRIu64 " bytes)",
       st.torn_bytes);
    is_int(take(sp, 0, 100), 10, "3: the 10 whole records replayed");
    kts_spool_close(sp);

    /* ---- 3: a flipped byte in an older segment: the rest of that segment is skipped */
    empty_dir();
    sp = open_spool(1u << 30, 4096);
    for (unsigned i = 0; i < 1000; i++)
        put(sp, i);
    kts_spool_close(sp);
    segment_path(path, sizeof(path), 0);
    fd = open(path, O_RDWR);
    unsigned char c;
    ok(fd >= 0 && pread(fd, &c, 1, 100) == 1, "3: read a byte of the oldest segment");
    c ^= 0x40;
    ok(pwrite(fd, &c, 1, 100) == 1, "3: flip it");
    close(fd);
    sp = open_spool(1u << 30, 4096);
    /* Read everything: expect 0..m-1, then a jump to the first record of the next segment,
     * then contiguous up to 999. */
    const void *k, *p;
    size_t kl, pl;
    unsigned vals[1000], nv = 0, v;
    while (nv < 1000 && kts_spool_peek(sp, &k, &kl, &p, &pl) == 0) {
        char tmp[300];
        snprintf(tmp, sizeof(tmp), "%.*s", (int)pl, (const char *)p);
        vals[nv++] = sscanf(tmp, "value %u", &v) == 1 ? v : 99999;
        kts_spool_advance(sp);
    }
    kts_spool_stats(sp, &st);
    is_uint(st.torn_records, 1, "3: one corrupt record counted while reading");
    unsigned m = 0;
    while (m < nv && vals[m] == m)
        m++;
    ok(m < 10, "3: the %u records before it in that segment come back in order", m);
    unsigned jump = m < nv ? vals[m] : 0, contiguous = 1;
    for (unsigned i2 = m; i2 < nv; i2++)
        contiguous &= vals[i2] == jump + (i2 - m);
    ok(contiguous && jump > m && nv - m == 1000 - jump,
       "3: the following segments (%u..999) replay in order, nothing else", jump);
    kts_spool_close(sp);

    /* ---- 6: with sync, flush and close fdatasync (power loss); records still come back */
    empty_dir();
    {
        struct kts_spool_config cfg = {.dir = dir, .max_bytes = 1u << 20, .sync = true};
        char e[256];
        sp = NULL;
        kts_spool_open(&sp, &cfg, e, sizeof(e));
        bad = 0;
        for (unsigned i = 0; sp != NULL && i < 100; i++)
            bad += put(sp, i) != 0;
        ok(sp != NULL && bad == 0 && kts_spool_flush(sp, true) == 0 && kts_spool_close(sp) == 0,
           "6: sync spool: 100 appends, flush with fdatasync, close");
        sp = open_spool(1u << 20, 0);
        is_int(take(sp, 0, 1000), 100, "6: all 100 back after reopening");
        kts_spool_close(sp);
    }

    /* ---- 6: with sync, new segment files, deleted ones and the cursor reach the disk with an
     * fsync of the directory (counted in dir_syncs), across segment roll-overs */
    empty_dir();
    {
        struct kts_spool_config cfg = {
            .dir = dir, .max_bytes = 1u << 20, .segment_bytes = 4096, .sync = true};
        char e[256];
        sp = NULL;
        kts_spool_open(&sp, &cfg, e, sizeof(e));
        bad = 0;
        for (unsigned i = 0; sp != NULL && i < 2000; i++)
            bad += put(sp, i) != 0;
        int segs = count_segments();
        ok(sp != NULL && bad == 0 && segs > 5 && kts_spool_flush(sp, true) == 0,
           "6: sync spool: 2000 appends over %d segment files, flush", segs);
        kts_spool_stats(sp, &st);
        uint64_t syncs = st.dir_syncs;
        ok(syncs >= 1, "6: the flush fsynced the directory (%" PRIu64 ")", syncs);
        is_int(take(sp, 0, 1000), 1000, "6: the first 1000 back in order");
        is_int(kts_spool_flush(sp, true), 0, "6: flush after consuming");
        kts_spool_stats(sp, &st);
        ok(st.dir_syncs == syncs + 1 && count_segments() < segs,
           "6: consumed segments deleted (%d left), the flush fsynced the directory once more",
           count_segments());
        kts_spool_flush(sp, true);
        kts_spool_stats(sp, &st);
        ok(st.dir_syncs == syncs + 1, "6: nothing created or deleted since: no directory fsync");
        /* a prepend (records 0..9 again) writes a new head segment by rename */
        struct kts_spool_rec pre[10];
        char pkeys[10][32], ppls[10][256];
        for (unsigned i = 0; i < 10; i++) {
            pre[i].key = pkeys[i];
            pre[i].key_len = (size_t)snprintf(pkeys[i], 32, "series-%u", i % 7);
            pre[i].payload = ppls[i];
            pre[i].payload_len =
                (size_t)snprintf(ppls[i], 256, "value %u %.*s", i, (int)(i % 50),
                                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        }
        is_int(kts_spool_prepend(sp, pre, 10), 10, "6: prepend 10 records");
        kts_spool_flush(sp, true);
        kts_spool_stats(sp, &st);
        ok(st.dir_syncs > syncs + 1, "6: the prepended segment's entry is fsynced (%" PRIu64 ")",
           st.dir_syncs);
        ok(kts_spool_close(sp) == 0, "6: close");
        sp = open_spool(1u << 20, 4096);
        is_int(take(sp, 0, 10), 10, "6: after reopening the prepended 0..9 first");
        is_int(take(sp, 1000, 100000), 1000, "6: the other 1000 back in order after reopening");
        kts_spool_flush(sp, true);
        kts_spool_stats(sp, &st);
        is_uint(st.dir_syncs, 0, "6: without sync the directory is never fsynced");
        kts_spool_close(sp);
    }

    /* ---- 8: write-through: a child appends 3000 records and is killed with SIGKILL */
    empty_dir();
    {
        struct kts_spool_config cfg = {
            .dir = dir, .max_bytes = 1u << 30, .segment_bytes = 64u << 10, .write_through = true};
        pid_t pid = fork();
        if (pid == 0) {
            char e[256];
            struct kts_spool *child = NULL;
            if (kts_spool_open(&child, &cfg, e, sizeof(e)) != 0)
                _exit(2);
            for (unsigned i = 0; i < 3000; i++)
                if (put(child, i) != 0)
                    _exit(3);
            kill(getpid(), SIGKILL); /* no close, no flush */
            _exit(4);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
           "8: the child appended 3000 records and was killed (status %d)", status);
        segment_path(path, sizeof(path), 1);
        stat(path, &sb);
        off_t before = sb.st_size;
        warnings = 0;
        sp = open_spool(1u << 30, 64u << 10);
        kts_spool_stats(sp, &st);
        stat(path, &sb);
        ok(st.torn_records == 0 && warnings == 0,
           "8: no torn record counted, nothing logged (%" PRIu64 ")", st.torn_records);
        ok(sb.st_size < before, "8: the space allocated ahead was cut at open (%lld -> %lld bytes)",
           (long long)before, (long long)sb.st_size);
        ok(st.segments > 1, "8: over %" PRIu64 " segments", st.segments);
        is_int(take(sp, 0, 100000), 3000, "8: all 3000 back in order");
        kts_spool_close(sp);

        /* a record torn by the crash, then the zeros: still a torn record */
        empty_dir();
        pid = fork();
        if (pid == 0) {
            char e[256];
            struct kts_spool *child = NULL;
            if (kts_spool_open(&child, &cfg, e, sizeof(e)) != 0)
                _exit(2);
            for (unsigned i = 0; i < 10; i++)
                put(child, i);
            kill(getpid(), SIGKILL);
            _exit(4);
        }
        waitpid(pid, &status, 0);
        segment_path(path, sizeof(path), 1);
        fd = open(path, O_RDWR);
        uint32_t len = 0;
        off_t end = 0;
        while (fd >= 0 && pread(fd, &len, 4, end) == 4 && len != 0)
            end += 8 + (off_t)len;                   /* the end of the 10 records */
        unsigned char half[6] = {40, 0, 0, 0, 1, 2}; /* a header of a 40-byte body, cut */
        ok(fd >= 0 && pwrite(fd, half, sizeof(half), end) == (ssize_t)sizeof(half),
           "8: the start of an 11th record after the 10 (at %lld), zeros after it", (long long)end);
        if (fd >= 0)
            close(fd);
        warnings = 0;
        sp = open_spool(1u << 30, 64u << 10);
        kts_spool_stats(sp, &st);
        ok(st.torn_records == 1 && warnings == 1, "8: counted and logged as one torn record");
        is_int(take(sp, 0, 100), 10, "8: the 10 whole records back");
        kts_spool_close(sp);

        /* in one process: the ahead reader sees what the mapped writer wrote; ack_to consumes */
        empty_dir();
        sp = NULL;
        char e[256];
        kts_spool_open(&sp, &cfg, e, sizeof(e));
        for (unsigned i = 0; sp != NULL && i < 2000; i++)
            put(sp, i);
        struct kts_spool_pos endpos = {0, 0};
        n = 0;
        while (sp != NULL && kts_spool_ahead_peek(sp, &k, &kl, &p, &pl, &endpos) == 0) {
            kts_spool_ahead_advance(sp);
            if (++n == 1500)
                break;
        }
        is_int(n, 1500, "8: the ahead reader reads 1500 records");
        kts_spool_ack_to(sp, endpos);
        is_int(take(sp, 1500, 100000), 500, "8: after ack_to the reader starts at record 1500");
        for (unsigned i = 0; i < 5; i++)
            put(sp, i);
        kts_spool_stats(sp, &st);
        ok(kts_spool_close(sp) == 0, "8: 5 more records, close");
        segment_path(path, sizeof(path), 1);
        stat(path, &sb);
        ok((uint64_t)sb.st_size == st.bytes,
           "8: a clean close cuts the space allocated ahead (%lld bytes, %" PRIu64 " in records)",
           (long long)sb.st_size, st.bytes);

        /* 32 MiB through the mapping of one 64 MiB segment: the process's resident memory does
         * not grow with it (by less than half of it: valgrind's shadow memory grows too) */
        empty_dir();
        struct kts_spool_config big_cfg = cfg;
        big_cfg.segment_bytes = 64u << 20;
        sp = NULL;
        kts_spool_open(&sp, &big_cfg, e, sizeof(e));
        static char big[4000];
        memset(big, 'v', sizeof(big));
        long rss0 = resident_kib();
        bad = 0;
        for (unsigned i = 0; sp != NULL && i < 8400; i++)
            bad += kts_spool_append(sp, "k", 1, big, sizeof(big)) != 0;
        long rss1 = resident_kib();
        kts_spool_stats(sp, &st);
        ok(sp != NULL && bad == 0 && st.segments == 1 && rss1 - rss0 < 16 * 1024,
           "8: 32 MiB appended to one segment, resident memory grew by %ld KiB", rss1 - rss0);
        kts_spool_close(sp);
    }

    empty_dir();
    rmdir(dir);
    kts_log_set_sink(NULL, NULL);
    return done_testing();
}
