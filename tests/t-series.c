/* SPDX-License-Identifier: MIT */
/* kts_series: tests named after the guarantees in src/pipeline/kts_series.h. */
#include <errno.h>
#include <string.h>

#include "kts_log.h"
#include "kts_series.h"
#include "tap.h"

static int log_lines;
static void sink(int level, const char *msg, void *opaque)
{
    (void)level;
    (void)opaque;
    (void)msg;
    log_lines++;
}

/* 7. The series identity: its bytes are DedupStateFile's key on disk, so they are spelled out
 * here literally and must never change. */
static void test_identity(void)
{
    struct kts_vl vl = {.host = "web-01",
                        .plugin = "cpu",
                        .plugin_instance = "0",
                        .type = "cpu",
                        .type_instance = "idle"};
    char id[KTS_SERIES_IDENTITY_MAX];
    static const char want[] = "web-01\0cpu\0"
                               "0\0cpu\0idle"; /* + the array's final NUL */
    size_t n = kts_series_identity(id, &vl);
    ok(n == sizeof(want) && memcmp(id, want, n) == 0,
       "7. identity: the five names in order, each with its NUL (%zu bytes)", n);

    struct kts_vl empty = {0};
    ok(kts_series_identity(id, &empty) == 5 && memcmp(id, "\0\0\0\0\0", 5) == 0,
       "7. five empty names: five NULs");

    struct kts_vl a = {.host = "h", .plugin = "a", .plugin_instance = "b-c", .type = "t"};
    struct kts_vl b = {.host = "h", .plugin = "a-b", .plugin_instance = "c", .type = "t"};
    char ida[KTS_SERIES_IDENTITY_MAX], idb[KTS_SERIES_IDENTITY_MAX];
    size_t na = kts_series_identity(ida, &a), nb = kts_series_identity(idb, &b);
    ok(na == nb && memcmp(ida, idb, na) != 0,
       "7. a-b/c and a/b-c (one collectd identifier) are two identities");

    struct kts_vl longest;
    memset(&longest, 'x', sizeof(longest));
    n = kts_series_identity(id, &longest); /* names without their NUL: cut, never overrun */
    ok(n == KTS_SERIES_IDENTITY_MAX && id[KTS_NAME_MAX - 1] == '\0' && id[n - 1] == '\0',
       "7. five names of 128 bytes without a NUL: cut to 127, %zu bytes", n);

    struct kts_vl back;
    memset(&back, 0x55, sizeof(back));
    n = kts_series_identity(id, &vl);
    kts_series_identity_names(&back, id, n);
    ok(strcmp(back.host, "web-01") == 0 && strcmp(back.plugin, "cpu") == 0 &&
           strcmp(back.plugin_instance, "0") == 0 && strcmp(back.type, "cpu") == 0 &&
           strcmp(back.type_instance, "idle") == 0,
       "7. kts_series_identity_names() gives the five names back");
    kts_series_identity_names(&back, "h\0p", 3);
    ok(strcmp(back.host, "h") == 0 && strcmp(back.plugin, "p") == 0 && back.type[0] == '\0' &&
           back.type_instance[0] == '\0',
       "7. a short identity: the missing names are empty");
    char id2[KTS_SERIES_IDENTITY_MAX];
    size_t n1 = kts_series_identity(id, &longest);
    kts_series_identity_names(&back, id, n1);
    size_t n2 = kts_series_identity(id2, &back);
    ok(n1 == n2 && memcmp(id, id2, n1) == 0, "7. identity -> names -> identity is the same bytes");
}

static size_t expired_seen;
static void on_expire(const void *key, size_t key_len, void *state, size_t size, void *opaque)
{
    (void)key;
    (void)key_len;
    (void)state;
    (void)size;
    (void)opaque;
    expired_seen++;
}

int main(void)
{
    plan(24);
    kts_log_set_sink(sink, NULL);
    struct kts_series_conf conf = {0};
    struct kts_series_table *t;
    is_int(kts_series_table_create(&conf, &t), 0, "create");

    /* 1./2. many keys, growth keeps state pointers */
    enum { N = 100000 };
    static void *ptr[N];
    char key[64];
    int created = 0;
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof(key), "host%d/cpu-%d/cpu-idle", i % 977, i);
        int rc = kts_series_get(t, key, (size_t)n, 24, KTS_TIME_FROM_S(1000 + i), &ptr[i], NULL);
        created += rc == 1;
        *(int *)ptr[i] = i;
    }
    is_int(created, N, "1. 100000 distinct keys created");
    int found = 0;
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof(key), "host%d/cpu-%d/cpu-idle", i % 977, i);
        void *s = kts_series_find(t, key, (size_t)n);
        found += s == ptr[i] && *(int *)s == i;
    }
    is_int(found, N, "2. every state found at the same address after growth");
    ok(kts_series_find(t, "nope", 4) == NULL, "1. unknown key not found");
    void *again;
    size_t sz;
    int n0 = snprintf(key, sizeof(key), "host%d/cpu-%d/cpu-idle", 5, 5);
    is_int(kts_series_get(t, key, (size_t)n0, 24, 0, &again, &sz), 0,
           "1. existing key is found by get");
    is_int(sz, 24, "2. state size rounded to 8");

    /* 1. removal by backward shift keeps the others reachable */
    for (int i = 0; i < N; i += 2)
        kts_series_remove(t, ptr[i]);
    found = 0;
    int absent = 0;
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof(key), "host%d/cpu-%d/cpu-idle", i % 977, i);
        void *s = kts_series_find(t, key, (size_t)n);
        if (i % 2)
            found += s == ptr[i];
        else
            absent += s == NULL;
    }
    is_int(found, N / 2, "1. after removing half, the rest is found");
    is_int(absent, N / 2, "1. and the removed ones are gone");

    /* 5. accounting */
    struct kts_series_stats st;
    kts_series_get_stats(t, &st);
    is_int(st.count, N / 2, "5. count");
    ok(st.bytes > (N / 2) * (24 + 40) && st.bytes < (size_t)N * 200,
       "5. bytes in use plausible: %zu for %zu series", st.bytes, st.count);
    kts_series_table_destroy(t, NULL, NULL);

    /* 3. expiry by event time, least recently touched first */
    conf.expire_after = KTS_TIME_FROM_S(100);
    kts_series_table_create(&conf, &t);
    void *s;
    kts_series_get(t, "a", 1, 8, KTS_TIME_FROM_S(1000), &s, NULL);
    kts_series_get(t, "b", 1, 8, KTS_TIME_FROM_S(1050), &s, NULL);
    kts_series_get(t, "c", 1, 8, KTS_TIME_FROM_S(1090), &s, NULL);
    is_int(kts_series_expire(t, KTS_TIME_FROM_S(1120), 10, on_expire, NULL), 1,
           "3. only the series idle for 100 s expires");
    is_int(expired_seen, 1, "3. the callback saw it first");
    kts_series_get(t, "b", 1, 8, KTS_TIME_FROM_S(1200), &s, NULL);
    is_int(kts_series_expire(t, KTS_TIME_FROM_S(1195), 10, NULL, NULL), 1,
           "3. touching b keeps it; c expires");
    ok(kts_series_find(t, "b", 1) != NULL && kts_series_find(t, "c", 1) == NULL,
       "3. b stays, c gone");
    kts_series_table_destroy(t, NULL, NULL);

    /* 4. memory limit */
    conf.expire_after = 0;
    conf.max_bytes = 64 * 1024;
    kts_series_table_create(&conf, &t);
    int refused = 0;
    log_lines = 0;
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(key, sizeof(key), "s%d", i);
        refused += kts_series_get(t, key, (size_t)n, 200, 1, &s, NULL) == -ENOSPC;
    }
    kts_series_get_stats(t, &st);
    ok(refused > 0 && st.refused == (uint64_t)refused, "4. refused %d series, counted", refused);
    ok(st.bytes <= conf.max_bytes, "4. bytes %zu stay under the limit", st.bytes);
    is_int(log_lines, 1, "4. logged once (rate-limited)");
    kts_series_table_destroy(t, NULL, NULL);
    test_identity();
    kts_log_set_sink(NULL, NULL);
    return done_testing();
}
