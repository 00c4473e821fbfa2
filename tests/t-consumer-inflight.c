/* SPDX-License-Identifier: MIT */
/*
 * kts_consumer_inflight alone, without librdkafka: series queues, tokens, ordered dispatch,
 * write timeouts, revoked partitions. Numbers in test names refer to the guarantees in
 * src/kafka/kts_consumer.h (C). The consumer on librdkafka's mock cluster is tests/t-consumer.c.
 */
#include "tap.h"

#include "kts_consumer_inflight.h"
#include "kts_log.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* What the dispatch callback saw, in order. */
#define MAXD 64
static struct {
    char host[KTS_NAME_MAX];
    kts_time_t time;
    kts_time_t interval;
    uint64_t token;
} seen[MAXD];
static int nseen;
static int dispatch_rc; /* what the callback returns */
static char last_line[1024];

static int on_dispatch(const struct kts_vl *vl, uint64_t token, void *opaque)
{
    (void)opaque;
    if (nseen < MAXD) {
        snprintf(seen[nseen].host, sizeof(seen[nseen].host), "%s", vl->host);
        seen[nseen].time = vl->time;
        seen[nseen].interval = vl->interval;
        seen[nseen].token = token;
        nseen++;
    }
    return dispatch_rc;
}

static void sink(int level, const char *msg, void *opaque)
{
    (void)level;
    (void)opaque;
    snprintf(last_line, sizeof(last_line), "%s", msg);
}

static struct kts_consumer_stats st;

static void setup(struct kts_inflight *f, bool ordered)
{
    memset(f, 0, sizeof(*f));
    memset(&st, 0, sizeof(st));
    nseen = 0;
    dispatch_rc = 0;
    last_line[0] = '\0';
    f->ordered = ordered;
    f->write_timeout = 1;
    f->instance_bits = (uint64_t)5 << 56;
    f->dispatch = on_dispatch;
    f->where = "read_kafka_ts plugin (unit)";
    f->st = &st;
    if (kts_inflight_init(f, 100) != 0)
        BAIL_OUT("kts_inflight_init");
}

/* Queue one value of series `host` at `time` (interval: a marker that is not part of the
 * series' identity). */
static void add(struct kts_inflight *f, struct kts_inflight_msg *m, const char *host,
                kts_time_t time, kts_time_t interval)
{
    struct kts_vl vl;
    memset(&vl, 0, sizeof(vl));
    snprintf(vl.host, sizeof(vl.host), "%s", host);
    snprintf(vl.plugin, sizeof(vl.plugin), "cpu");
    snprintf(vl.type, sizeof(vl.type), "gauge");
    vl.time = time;
    vl.interval = interval;
    if (kts_inflight_add(f, &vl, m) != 0)
        BAIL_OUT("kts_inflight_add");
}

/* The token of the last dispatch of `host`, 0 if none. */
static uint64_t token_of(const char *host)
{
    for (int i = nseen - 1; i >= 0; i--)
        if (strcmp(seen[i].host, host) == 0)
            return seen[i].token;
    return 0;
}

static void test_order(void)
{
    struct kts_inflight f;
    struct kts_inflight_msg m = {0, NULL};
    setup(&f, true);
    add(&f, &m, "a", 30, 0);
    add(&f, &m, "a", 10, 0);
    add(&f, &m, "b", 50, 0);
    add(&f, &m, "a", 20, 1); /* equal times: kept in arrival order (stable) */
    add(&f, &m, "a", 20, 2);
    is_int(m.pending, 5, "every value counts as pending in its message");
    is_uint(st.inflight_values, 5, "inflight_values counts the queued values");
    kts_inflight_pump(&f);
    ok(nseen == 2 && strcmp(seen[0].host, "a") == 0 && seen[0].time == 10 &&
           strcmp(seen[1].host, "b") == 0,
       "C3 pump: one value per series in flight, the earliest of series a first");
    is_uint(f.dispatched_now, 2, "two values between dispatch and confirmation");
    kts_inflight_pump(&f);
    is_int(nseen, 2, "C3 a second pump dispatches nothing while each series has one out");

    /* Confirming a's value dispatches its next one from inside written() (3). */
    kts_time_t want[] = {20, 20, 30};
    kts_time_t want_iv[] = {1, 2, 0};
    bool in_order = true;
    for (int i = 0; i < 3; i++) {
        int before = nseen;
        if (kts_inflight_written(&f, token_of("a")) != 0 || nseen != before + 1 ||
            seen[nseen - 1].time != want[i] || seen[nseen - 1].interval != want_iv[i])
            in_order = false;
    }
    ok(in_order, "C3 each confirmation dispatches the series' next value: 20, 20 (stable), 30");
    is_int(kts_inflight_written(&f, token_of("a")), 0, "the last value of a confirmed");
    is_int(kts_inflight_written(&f, token_of("b")), 0, "b confirmed");
    is_int(m.pending, 0, "C2 the message is done once all its values are");
    is_uint(st.written, 5, "written = 5");
    is_uint(st.dispatched, 5, "dispatched = 5");
    is_uint(st.inflight_values, 0, "inflight_values back to 0");
    is_uint(f.dispatched_now, 0, "nothing in flight");
    is_uint(f.stab_count, 0, "idle series are removed from the table");
    kts_inflight_fini(&f);
}

static void test_tokens(void)
{
    struct kts_inflight f;
    struct kts_inflight_msg m = {0, NULL};
    setup(&f, true);
    add(&f, &m, "a", 1, 0);
    add(&f, &m, "b", 1, 0);
    kts_inflight_pump(&f);
    uint64_t ta = token_of("a"), tb = token_of("b");
    ok(ta >> 56 == 5 && tb >> 56 == 5, "tokens carry the instance id in their top 8 bits");
    ok(ta != tb, "tokens are unique");
    ok(kts_inflight_owns(&f, ta) && !kts_inflight_owns(&f, (ta & ~(0xFFULL << 56)) | 6ULL << 56),
       "owns: this instance's tokens only");
    is_int(kts_inflight_written(&f, ta ^ 0x1000), -ENOENT, "an unknown token: -ENOENT");
    is_int(kts_inflight_written(&f, ta), 0, "a known token: 0");
    is_int(kts_inflight_written(&f, ta), -ENOENT, "the same token twice: -ENOENT");
    is_uint(st.written, 1, "written counts each value once");
    is_int(m.pending, 1, "one value of the message still pending");
    kts_inflight_fini(&f); /* b still in flight: freed (checked by ASan and valgrind) */
}

/* Longer than the 0.2 s WriteTimeout of test_timeouts(). */
static void nap(void)
{
    struct timespec ts = {0, 300000000};
    nanosleep(&ts, NULL);
}

static void test_timeouts(void)
{
    struct kts_inflight f;
    struct kts_inflight_msg m = {0, NULL};
    setup(&f, true);
    f.write_timeout = 0.2;
    kts_log_set_sink(sink, NULL);
    add(&f, &m, "a", 1, 0);
    add(&f, &m, "a", 2, 0);
    kts_inflight_pump(&f);
    uint64_t t1 = token_of("a");
    kts_inflight_expire(&f, kts_inflight_now_ns());
    is_uint(st.unconfirmed, 0, "C10 before WriteTimeout: nothing expires");
    nap();
    kts_inflight_expire(&f, kts_inflight_now_ns());
    is_uint(st.unconfirmed, 1, "C10 after WriteTimeout: the value counts as unconfirmed");
    ok(strstr(last_line, "read_kafka_ts plugin (unit): a value of a/cpu/gauge was dispatched ") !=
           NULL,
       "C10 and is logged with the series");
    ok(nseen == 2 && seen[1].time == 2, "C10 the series' next value is dispatched");
    is_int(m.pending, 1, "C10 the expired value is done");
    is_int(kts_inflight_written(&f, t1), -ENOENT, "C10 its late confirmation is ignored");
    nap();
    kts_inflight_expire(&f, kts_inflight_now_ns());
    is_uint(st.unconfirmed, 2, "C10 the second one expires too");
    is_int(m.pending, 0, "C10 and the message is done");
    kts_log_set_sink(NULL, NULL);
    kts_inflight_fini(&f);
}

static void test_revoked(void)
{
    struct kts_inflight f;
    bool revoked = false;
    struct kts_inflight_msg m = {0, &revoked}, other = {0, NULL};
    setup(&f, true);
    add(&f, &m, "a", 1, 0);
    add(&f, &m, "a", 2, 0);
    add(&f, &m, "a", 3, 0);
    add(&f, &other, "a", 4, 0);
    kts_inflight_pump(&f);
    revoked = true;
    kts_inflight_drop_revoked(&f);
    is_uint(st.dropped_revoked, 2, "C9 the queued values of the revoked partition are dropped");
    is_int(m.pending, 1, "C9 the value in flight stays until confirmed");
    is_int(kts_inflight_written(&f, token_of("a")), 0, "C9 its confirmation still counts");
    ok(nseen == 2 && seen[1].time == 4, "C9 the other partition's value is dispatched next");
    is_int(m.pending, 0, "C9 the revoked message is done");
    /* A value of a revoked partition met at dispatch time is dropped too. */
    revoked = false;
    add(&f, &m, "c", 1, 0);
    revoked = true;
    kts_inflight_pump(&f);
    is_uint(st.dropped_revoked, 3, "C9 a revoked value at the head of its queue is not dispatched");
    is_uint(st.inflight_values, 1, "only the other partition's value is left");
    kts_inflight_fini(&f);
}

static void test_skipped_failed_unordered_draining(void)
{
    struct kts_inflight f;
    struct kts_inflight_msg m = {0, NULL};
    setup(&f, true);
    kts_log_set_sink(sink, NULL);
    add(&f, &m, "a", 1, 0);
    add(&f, &m, "a", 2, 0);
    dispatch_rc = KTS_DISPATCH_SKIPPED;
    kts_inflight_pump(&f);
    ok(nseen == 2 && st.skipped == 2 && st.dispatched == 0 && m.pending == 0,
       "KTS_DISPATCH_SKIPPED: done at once, the next value follows in the same pump");
    dispatch_rc = -EIO;
    add(&f, &m, "a", 3, 0);
    kts_inflight_pump(&f);
    ok(st.dispatch_failed == 1 && m.pending == 0 && f.dispatched_now == 0,
       "a failed dispatch is counted and done");
    ok(strstr(last_line, "dispatch failed") != NULL, "and logged");
    kts_log_set_sink(NULL, NULL);
    kts_inflight_fini(&f);

    setup(&f, false);
    for (int i = 0; i < 4; i++)
        add(&f, &m, "a", 10 - i, 0);
    kts_inflight_pump(&f);
    is_int(nseen, 4, "OrderedDispatch false: every value of a series is dispatched at once");
    uint64_t tokens[4];
    for (int i = 0; i < 4; i++)
        tokens[i] = seen[i].token;
    int okn = 0;
    for (int i = 3; i >= 0; i--)
        okn += kts_inflight_written(&f, tokens[i]) == 0;
    ok(okn == 4 && m.pending == 0, "and each confirmed in any order");
    kts_inflight_fini(&f);

    setup(&f, true);
    add(&f, &m, "a", 1, 0);
    add(&f, &m, "a", 2, 0);
    kts_inflight_pump(&f);
    f.draining = true;
    kts_inflight_written(&f, token_of("a"));
    kts_inflight_pump(&f);
    ok(nseen == 1 && st.inflight_values == 1, "C8 draining: nothing more is dispatched");
    kts_inflight_fini(&f);
}

int main(void)
{
    plan(43);
    test_order();
    test_tokens();
    test_timeouts();
    test_revoked();
    test_skipped_failed_unordered_draining();
    return done_testing();
}
