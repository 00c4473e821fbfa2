/* SPDX-License-Identifier: MIT */
/* kts_written_times: tests named after the guarantees in src/kafka/kts_written_times.h. Real files,
 * real processes, real SIGKILL. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kts_written_times.h"
#include "tap.h"

static char dir[256];

static const char *path_of(const char *name)
{
    static char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return p;
}

static size_t key_of(char *buf, unsigned i)
{
    /* five names with their NULs, like read_kafka_ts's series key */
    return (size_t)snprintf(buf, 200, "host%u%cplugin%cs%u%cgauge%c", i % 977, 0, 0, i, 0, 0) + 1;
}

static uint64_t slot_of(struct kts_written_times *w, unsigned i)
{
    char k[200];
    uint64_t s = 0;
    return kts_written_times_slot(w, k, key_of(k, i), &s) == 0 ? s : 0;
}

struct raiser {
    struct kts_written_times *w;
    uint64_t slot;
    uint64_t base;
};

static void *raise_thread(void *arg)
{
    struct raiser *r = arg;
    for (uint64_t i = 0; i < 200000; i++)
        kts_written_times_raise(r->w, r->slot, r->base + (i * 7919) % 200000);
    return NULL;
}

int main(void)
{
    plan(28);
    snprintf(dir, sizeof(dir), "%s/t-written-times-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(dir) == NULL)
        BAIL_OUT("mkdtemp: %s", strerror(errno));
    char err[512];
    struct kts_written_times *w = NULL;

    /* 1. survives kill -9: a child raises 10,000 watermarks and is killed without close. */
    enum { N1 = 10000 };
    int pfd[2];
    if (pipe(pfd) != 0)
        BAIL_OUT("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        struct kts_written_times *cw;
        if (kts_written_times_open(&cw, path_of("kill.state"), 50000, err, sizeof(err)) != 0)
            _exit(1);
        for (unsigned i = 0; i < N1; i++) {
            uint64_t s = slot_of(cw, i);
            if (s == 0)
                _exit(2);
            kts_written_times_raise(cw, s, 1000000 + i);
        }
        if (write(pfd[1], "r", 1) != 1)
            _exit(3);
        pause();
        _exit(0);
    }
    char c = 0;
    ok(read(pfd[0], &c, 1) == 1 && c == 'r', "1. child raised %d watermarks", N1);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "1. child killed with SIGKILL");
    is_int(kts_written_times_open(&w, path_of("kill.state"), 50000, err, sizeof(err)), 0,
           "1. reopened after the kill");
    int bad = 0;
    for (unsigned i = 0; i < N1; i++) {
        uint64_t s = slot_of(w, i);
        if (s == 0 || kts_written_times_get(w, s) != 1000000 + i)
            bad++;
    }
    is_int(bad, 0, "1. all %d watermarks survived kill -9 (no close, no msync)", N1);
    struct kts_written_times_stats st;
    kts_written_times_stats(w, &st);
    is_uint(st.used, (uint64_t)N1, "1. used counts the %d series", N1);
    kts_written_times_close(w);

    /* 2. never decreases: threads and processes racing on the same slots */
    is_int(kts_written_times_open(&w, path_of("race.state"), 1000, err, sizeof(err)), 0, "2. open");
    uint64_t s0 = slot_of(w, 1);
    kts_written_times_raise(w, s0, 500);
    kts_written_times_raise(w, s0, 400);
    is_uint(kts_written_times_get(w, s0), (uint64_t)500, "2. a lower value does not lower it");
    pthread_t th[4];
    struct raiser r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (struct raiser){w, s0, (uint64_t)i * 1000};
        pthread_create(&th[i], NULL, raise_thread, &r[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    is_uint(kts_written_times_get(w, s0), (uint64_t)3000 + 199999,
            "2. 4 threads: the maximum wins");
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        if ((kids[k] = fork()) == 0) {
            struct kts_written_times *cw;
            if (kts_written_times_open(&cw, path_of("race.state"), 1000, err, sizeof(err)) != 0)
                _exit(1);
            for (uint64_t v = 0; v < 100000; v++)
                for (unsigned i = 100; i < 110; i++)
                    kts_written_times_raise(cw, slot_of(cw, i), 2 * v + (uint64_t)k);
            kts_written_times_close(cw);
            _exit(0);
        }
    }
    int kids_ok = 0;
    for (int k = 0; k < 2; k++)
        kids_ok += waitpid(kids[k], &status, 0) == kids[k] && WIFEXITED(status) &&
                   WEXITSTATUS(status) == 0;
    bad = 0;
    for (unsigned i = 100; i < 110; i++)
        bad += kts_written_times_get(w, slot_of(w, i)) != 199999;
    ok(kids_ok == 2 && bad == 0,
       "2. 2 processes sharing the file: every slot holds the maximum "
       "(%d processes ok, %d wrong)",
       kids_ok, bad);
    kts_written_times_stats(w, &st);
    is_uint(st.used, (uint64_t)11, "2. the processes found the same 10 slots (11 series)");
    kts_written_times_close(w);

    /* 3. distinct keys, distinct slots; the same key, the same slot */
    enum { N3 = 100000 };
    is_int(kts_written_times_open(&w, path_of("keys.state"), N3 + 2, err, sizeof(err)), 0,
           "3. open");
    static uint64_t slots[N3];
    bad = 0;
    for (unsigned i = 0; i < N3; i++) {
        slots[i] = slot_of(w, i);
        bad += slots[i] == 0;
        kts_written_times_raise(w, slots[i], i + 1);
    }
    int again = 0, vals = 0;
    for (unsigned i = 0; i < N3; i++) {
        again += slot_of(w, i) != slots[i];
        vals += kts_written_times_get(w, slots[i]) != i + 1;
    }
    ok(bad == 0 && again == 0 && vals == 0,
       "3. %d keys: claimed (%d failed), found again (%d "
       "moved), own watermarks (%d wrong)",
       N3, bad, again, vals);
    uint64_t sa = 0, sb = 0;
    kts_written_times_slot(w, "ab\0c", 4, &sa);
    kts_written_times_slot(w, "a\0bc", 4, &sb);
    ok(sa != 0 && sb != 0 && sa != sb, "3. keys differing only in where a NUL is: two slots");
    kts_written_times_close(w);

    /* 4. bounded */
    is_int(kts_written_times_open(&w, path_of("full.state"), 1000, err, sizeof(err)), 0, "4. open");
    bad = 0;
    for (unsigned i = 0; i < 1000; i++)
        bad += slot_of(w, i) == 0;
    is_int(bad, 0, "4. 1000 series fit in a table for 1000");
    char k[200];
    uint64_t s = 0;
    is_int(kts_written_times_slot(w, k, key_of(k, 5000), &s), -ENOSPC, "4. the 1001st is refused");
    ok(slot_of(w, 999) != 0, "4. known series still work when full");
    kts_written_times_stats(w, &st);
    ok(st.used == 1000 && st.refused == 1 && st.slots == 2048 && st.file_bytes == 4096 + 2048 * 24,
       "4. stats: used %llu, refused %llu, %llu slots, %llu "
       "bytes",
       (unsigned long long)st.used, (unsigned long long)st.refused, (unsigned long long)st.slots,
       (unsigned long long)st.file_bytes);
    struct stat fst;
    ok(stat(path_of("full.state"), &fst) == 0 && fst.st_size == 4096 + 2048 * 24,
       "4. file size = header + slots x 24");
    kts_written_times_close(w);

    /* 5. a claim cut short by a kill (k1 set, k2 and t not): the next claim of that key
     * completes it: the same slot, no watermark, no second slot */
    is_int(kts_written_times_open(&w, path_of("half.state"), 100, err, sizeof(err)), 0, "5. open");
    uint64_t hs = slot_of(w, 7);
    kts_written_times_raise(w, hs, 777);
    kts_written_times_close(w);
    int fd = open(path_of("half.state"), O_RDWR);
    uint64_t zero2[2] = {0, 0};
    ok(fd >= 0 && pwrite(fd, zero2, 16, 4096 + (off_t)(hs - 1) * 24 + 8) == 16,
       "5. k2 and t of the slot zeroed (a claim interrupted after its first store)");
    close(fd);
    kts_written_times_open(&w, path_of("half.state"), 100, err, sizeof(err));
    uint64_t hs2 = slot_of(w, 7);
    kts_written_times_stats(w, &st);
    ok(hs2 == hs && kts_written_times_get(w, hs2) == 0 && st.used == 1,
       "5. the key completes its half-claimed slot (slot %llu, was %llu; %llu used)",
       (unsigned long long)hs2, (unsigned long long)hs, (unsigned long long)st.used);
    kts_written_times_close(w);

    /* 6. header checks */
    FILE *f = fopen(path_of("junk.state"), "w");
    for (int i = 0; f != NULL && i < 10000; i++)
        fputs("not a state file ", f);
    if (f != NULL)
        fclose(f);
    ok(kts_written_times_open(&w, path_of("junk.state"), 100, err, sizeof(err)) == -EINVAL &&
           strstr(err, "junk.state is not a read_kafka_ts state file") != NULL,
       "6. foreign file: %s", err);
    ok(kts_written_times_open(&w, path_of("full.state"), 2000, err, sizeof(err)) == -EINVAL &&
           strstr(err, "created for 1000 series, the configuration asks for 2000") != NULL,
       "6. another series_max: %s", err);
    if (truncate(path_of("full.state"), 10000) != 0)
        diag("truncate: %s", strerror(errno));
    ok(kts_written_times_open(&w, path_of("full.state"), 1000, err, sizeof(err)) == -EINVAL &&
           strstr(err, "damaged") != NULL,
       "6. truncated: %s", err);
    fd = open(path_of("zero.state"), O_RDWR | O_CREAT, 0644);
    ok(fd >= 0 && ftruncate(fd, 8192) == 0, "6. a file with a zero header (creation cut short)");
    close(fd);
    is_int(kts_written_times_open(&w, path_of("zero.state"), 100, err, sizeof(err)), 0,
           "6. ... is initialised again");
    kts_written_times_close(w);

    /* 7. four processes create the same file at once and agree: each claims the same 1000
     * keys at the same time, so claims of one key race across processes (5) */
    pid_t p7[4];
    for (int i = 0; i < 4; i++) {
        if ((p7[i] = fork()) == 0) {
            struct kts_written_times *cw;
            if (kts_written_times_open(&cw, path_of("together.state"), 5000, err, sizeof(err)) !=
                0) {
                diag("7. process %d: open: %s", i, err);
                _exit(1);
            }
            unsigned nos = 0;
            for (unsigned j = 0; j < 1000; j++) {
                uint64_t sl = slot_of(cw, j);
                nos += sl == 0;
                kts_written_times_raise(cw, sl, (uint64_t)j * 10 + (unsigned)i);
            }
            kts_written_times_close(cw);
            if (nos != 0)
                diag("7. process %d: %u keys got no slot", i, nos);
            _exit(nos == 0 ? 0 : 1);
        }
    }
    int ok7 = 0;
    for (int i = 0; i < 4; i++) {
        int k7 =
            waitpid(p7[i], &status, 0) == p7[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!k7)
            diag("7. process %d: wait status %#x", i, status);
        ok7 += k7;
    }
    bad = 0;
    memset(&st, 0, sizeof(st));
    if (kts_written_times_open(&w, path_of("together.state"), 5000, err, sizeof(err)) != 0) {
        diag("7. reopen: %s", err);
        bad = 1000;
    } else {
        for (unsigned j = 0; j < 1000; j++) {
            uint64_t got = kts_written_times_get(w, slot_of(w, j));
            if (got != (uint64_t)j * 10 + 3 && bad++ < 5)
                diag("7. key %u: watermark %llu, want %llu", j, (unsigned long long)got,
                     (unsigned long long)j * 10 + 3);
        }
        kts_written_times_stats(w, &st);
        kts_written_times_close(w);
    }
    ok(ok7 == 4 && bad == 0 && st.used == 1000,
       "7. 4 processes opened a new file together: "
       "one table (%d/4 processes ok, %llu series, %d wrong watermarks)",
       ok7, (unsigned long long)st.used, bad);

    const char *names[] = {"kill.state", "race.state", "keys.state", "full.state",
                           "half.state", "junk.state", "zero.state", "together.state"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unlink(path_of(names[i]));
    rmdir(dir);
    return done_testing();
}
