/* SPDX-License-Identifier: MIT */
/*
 * kts_typesdb and kts_consumer: unit tests (types.db parser, naming) and librdkafka's mock
 * cluster for the consumer's offset bookkeeping, ordering, bad messages and rebalances.
 * Numbers in test names refer to the guarantees in src/format/kts_typesdb.h (T) and
 * src/kafka/kts_consumer.h (C). The real broker and collectd are in tests/t-read-*.sh.
 */
#include "lib/closed_port.h"
#include "tap.h"

#include "build-config.h"

#include "kts_consumer.h"
#include "kts_log.h"
#include "kts_rdkver.h"
#include "kts_typesdb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Lines containing `count_needle` are counted (the refused-connection test); the first kept. */
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static char count_needle[128];
static int count_lines;
static char count_first[1024];

/* Every log line is kept (for the version-aware checks), shown with KTS_TEST_VERBOSE. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char logged[1 << 16];
static size_t logged_len; /* strlen(logged), kept so that a line costs no rescan */

static void quiet(int level, const char *msg, void *opaque)
{
    (void)opaque;
    pthread_mutex_lock(&count_lock);
    if (count_needle[0] != '\0' && strstr(msg, count_needle) != NULL && count_lines++ == 0)
        snprintf(count_first, sizeof(count_first), "%s", msg);
    pthread_mutex_unlock(&count_lock);
    if (level <= KTS_LOG_WARNING && getenv("KTS_TEST_VERBOSE"))
        diag("%s", msg);
    if (strstr(msg, "COMMITFAIL") != NULL)
        return; /* librdkafka's auto commit during a rebalance: many, and expected */
    pthread_mutex_lock(&log_lock);
    size_t m = strlen(msg);
    if (logged_len + m + 2 < sizeof(logged)) {
        memcpy(logged + logged_len, msg, m);
        logged[logged_len + m] = '\n';
        logged_len += m + 1;
        logged[logged_len] = '\0';
    }
    pthread_mutex_unlock(&log_lock);
}

static void log_clear(void)
{
    pthread_mutex_lock(&log_lock);
    logged[0] = '\0';
    logged_len = 0;
    pthread_mutex_unlock(&log_lock);
}

/* Number of log lines containing both a and b (b may be NULL). */
static int log_count(const char *a, const char *b)
{
    int n = 0;
    pthread_mutex_lock(&log_lock);
    for (char *line = logged; *line != '\0';) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char buf[2048];
        snprintf(buf, sizeof(buf), "%.*s", (int)len, line);
        if (strstr(buf, a) != NULL && (b == NULL || strstr(buf, b) != NULL))
            n++;
        line += len + (nl != NULL);
    }
    pthread_mutex_unlock(&log_lock);
    return n;
}

/* ---------------------------------------------------------------- types.db */

static void test_typesdb(void)
{
    char err[256] = "";
    struct kts_typesdb *db = kts_typesdb_create();
    const char *text = "# comment\n\ngauge value:GAUGE:U:U\n"
                       "if_octets rx:DERIVE:0:U, tx:DERIVE:0:U\n"
                       "load  shortterm:GAUGE:0:5000,midterm:GAUGE:0:5000 longterm:GAUGE:0:5000\n";
    is_int(kts_typesdb_load_text(db, text, strlen(text), "a.db", err, sizeof(err)), 0,
           "T1 collectd's grammar: comments, blank lines, commas and/or blanks");
    is_uint(kts_typesdb_count(db), 3, "T1 three types");
    const struct kts_typesdb_type *t = kts_typesdb_find(db, "load");
    ok(t && t->ds_num == 3 && strcmp(t->ds[2].name, "longterm") == 0 && t->ds[2].max == 5000,
       "T1 load has shortterm, midterm, longterm with limits");
    const char *bad = "ok value:GAUGE:U:U\nbroken value:GAUGE:U\n";
    is_int(kts_typesdb_load_text(db, bad, strlen(bad), "b.db", err, sizeof(err)), -EINVAL,
           "T3 a malformed line is an error");
    ok(strstr(err, "b.db:2:") != NULL, "T3 the error names file and line (%s)", err);
    ok(kts_typesdb_find(db, "ok") == NULL, "T3 nothing of a bad file is kept");
    const char *redef = "gauge value:DERIVE:0:U\n";
    kts_typesdb_load_text(db, redef, strlen(redef), "c.db", err, sizeof(err));
    ok(kts_typesdb_find(db, "gauge")->ds[0].type == KTS_DS_DERIVE,
       "T2 a later file replaces a type");
    is_int(kts_typesdb_load_file(db, "/nonexistent/types.db", err, sizeof(err)), -ENOENT,
           "T missing file: -ENOENT");

    struct kts_ds ds[2] = {{"rx", KTS_DS_DERIVE, {.derive = 1}},
                           {"tx", KTS_DS_DERIVE, {.derive = 2}}};
    struct kts_vl vl = {.host = "h", .plugin = "p", .type = "if_octets", .ds_len = 2, .ds = ds};
    is_int(kts_typesdb_check(db, &vl, err, sizeof(err)), 0, "T4 matching value list accepted");
    vl.ds_len = 1;
    ok(kts_typesdb_check(db, &vl, err, sizeof(err)) == -EINVAL && strstr(err, "2 data source"),
       "T4 wrong count rejected (%s)", err);
    vl.ds_len = 2;
    strcpy(ds[1].name, "txx");
    ok(kts_typesdb_check(db, &vl, err, sizeof(err)) == -EINVAL && strstr(err, "\"txx\""),
       "T4 wrong name rejected (%s)", err);
    strcpy(ds[1].name, "tx");
    ds[1].type = KTS_DS_GAUGE;
    ok(kts_typesdb_check(db, &vl, err, sizeof(err)) == -EINVAL && strstr(err, "gauge"),
       "T4 wrong DS type rejected (%s)", err);
    strcpy(vl.type, "nosuchtype");
    ok(kts_typesdb_check(db, &vl, err, sizeof(err)) == -EINVAL, "T4 unknown type rejected");
    kts_typesdb_destroy(db);

    db = kts_typesdb_create();
    is_int(kts_typesdb_load_file(db, KTS_TYPESDB_DEFAULT, err, sizeof(err)), 0,
           "T1 collectd's own types.db parses (%s)", err);
    ok(kts_typesdb_count(db) > 200 && kts_typesdb_find(db, "if_octets") != NULL,
       "T1 it has %zu types", kts_typesdb_count(db));
    kts_typesdb_destroy(db);
}

/* ---------------------------------------------------------------- naming */

static void test_naming(void)
{
    struct kts_consumer_config cfg = {
        .host_prefix = "agg-", .host_suffix = ".x", .plugin_instance_suffix = "-f"};
    struct kts_vl vl = {.host = "h1", .plugin = "cpu", .plugin_instance = "0", .type = "cpu"};
    is_int(kts_consumer_apply_naming(&cfg, &vl), 0, "C7 naming applies");
    ok(strcmp(vl.host, "agg-h1.x") == 0 && strcmp(vl.plugin_instance, "0-f") == 0,
       "C7 host prefix+suffix, plugin_instance suffix (%s, %s)", vl.host, vl.plugin_instance);
    memset(vl.host, 'a', KTS_NAME_MAX - 3);
    vl.host[KTS_NAME_MAX - 3] = '\0';
    char before[KTS_NAME_MAX];
    strcpy(before, vl.host);
    is_int(kts_consumer_apply_naming(&cfg, &vl), -ENAMETOOLONG, "C5 too long: -ENAMETOOLONG");
    ok(strcmp(vl.host, before) == 0, "C5 the value list is unchanged");
    struct kts_consumer_config none = {0};
    struct kts_vl v2 = {.host = "h", .plugin_instance = ""};
    kts_consumer_apply_naming(&none, &v2);
    ok(strcmp(v2.host, "h") == 0 && v2.plugin_instance[0] == '\0', "C7 no naming: unchanged");
    /* A suffix appended to an empty name loses its leading separators '-', '_', '.'. */
    struct kts_consumer_config sm = {.plugin_instance_suffix = "-smooth", .host_suffix = "._x"};
    struct kts_vl v3 = {.host = "h", .plugin = "memory", .plugin_instance = "", .type = "memory"};
    is_int(kts_consumer_apply_naming(&sm, &v3), 0, "C7 suffix on an empty plugin instance");
    is_str(v3.plugin_instance, "smooth",
           "C7 memory + \"-smooth\": plugin instance \"smooth\" "
           "(memory-smooth, not memory--smooth)");
    is_str(v3.host, "h._x", "C7 a non-empty name keeps the suffix as given");
    struct kts_consumer_config pre = {.host_prefix = "agg", .host_suffix = "-x"};
    struct kts_vl v4 = {.host = "", .plugin = "p"};
    kts_consumer_apply_naming(&pre, &v4);
    is_str(v4.host, "agg-x", "C7 empty host after a prefix: the suffix keeps its separator");
}

/* ---------------------------------------------------------------- mock cluster */

static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mcluster;
static const char *bootstrap;

static void mock_start(void)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", errstr, sizeof(errstr));
    mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (mock_rk == NULL)
        BAIL_OUT("mock cluster: %s", errstr);
    mcluster = rd_kafka_handle_mock_cluster(mock_rk);
    bootstrap = rd_kafka_mock_cluster_bootstraps(mcluster);
}

static void produce(const char *topic, int32_t partition, const char *key, const char *payload)
{
    rd_kafka_producev(mock_rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                      RD_KAFKA_V_KEY(key, strlen(key)),
                      RD_KAFKA_V_VALUE((void *)payload, strlen(payload)),
                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
}

static void produce_value(const char *topic, int32_t partition, int series, int k)
{
    char buf[512], key[64];
    snprintf(key, sizeof(key), "h/p-s%d/gauge", series);
    snprintf(buf, sizeof(buf),
             "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"s%d\",\"type\":"
             "\"gauge\",\"type_instance\":\"\",\"time\":%d,\"interval\":10,\"ds\":[{\"name\":"
             "\"value\",\"type\":\"gauge\",\"value\":%d}]}",
             series, 1700000000 + 10 * k, k);
    produce(topic, partition, key, buf);
}

/* The test's "collectd": dispatch records tokens; a writer thread confirms them. */
#define MAXTOK 100000
struct sink {
    pthread_mutex_t lock;
    uint64_t tokens[MAXTOK];
    char series[MAXTOK][16];
    double times[MAXTOK];
    size_t n, confirmed;
    uint64_t withhold; /* a token not to confirm (0: none) */
    bool withhold_first;
    int outstanding_max_per_series; /* >1 would break C3 */
    bool order_broken;
    struct kts_consumer *c;
    atomic_bool stop;
};

static int sink_dispatch(const struct kts_vl *vl, uint64_t token, void *opaque)
{
    struct sink *s = opaque;
    pthread_mutex_lock(&s->lock);
    if (s->n < MAXTOK) {
        /* C3: no earlier value of this series may still be outstanding, times increase. */
        for (size_t i = s->confirmed; i < s->n; i++)
            if (s->tokens[i] != 0 && strcmp(s->series[i], vl->plugin_instance) == 0)
                s->order_broken = true;
        for (size_t i = 0; i < s->n; i++)
            if (strcmp(s->series[i], vl->plugin_instance) == 0 &&
                s->times[i] >= KTS_TIME_TO_DOUBLE(vl->time))
                s->order_broken = true;
        if (s->withhold_first && s->withhold == 0)
            s->withhold = token;
        s->tokens[s->n] = token;
        snprintf(s->series[s->n], sizeof(s->series[0]), "%.15s", vl->plugin_instance);
        s->times[s->n] = KTS_TIME_TO_DOUBLE(vl->time);
        s->n++;
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void *sink_writer(void *arg)
{
    struct sink *s = arg;
    while (!atomic_load(&s->stop)) {
        uint64_t batch[256];
        size_t nb = 0;
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < s->n && nb < 256; i++)
            if (s->tokens[i] != 0 && s->tokens[i] != s->withhold) {
                batch[nb++] = s->tokens[i];
                s->tokens[i] = 0; /* confirmed */
            }
        pthread_mutex_unlock(&s->lock);
        for (size_t i = 0; i < nb; i++)
            kts_consumer_written(s->c, batch[i]);
        if (nb == 0)
            usleep(1000);
    }
    return NULL;
}

static void *run_thread(void *arg)
{
    kts_consumer_run(arg);
    return NULL;
}

/* Group members of the tests with several members (rebalances) use 3 s sessions, so that a
 * member that went away without leaving is noticed quickly. A test with a single member uses
 * 30 s (SINGLE_SESSION): nothing waits for its session there, and under valgrind on a loaded
 * machine a 3 s session expired before the member's heartbeats came, the group expelled it and
 * it rejoined again and again (seen: C2 got no partition in 90 s). */
#define MULTI_SESSION "3000"
#define SINGLE_SESSION "30000"

static void base_config_session(struct kts_consumer_config *cfg, const char *group,
                                const char *topic, const char *session_ms)
{
    kts_opt_defaults(kts_consumer_options, cfg);
    cfg->group_id = strdup(group);
    kts_strv_push(&cfg->topics, topic);
    kts_strv_push(&cfg->properties, "bootstrap.servers");
    kts_strv_push(&cfg->properties, bootstrap);
    kts_strv_push(&cfg->properties, "session.timeout.ms");
    kts_strv_push(&cfg->properties,
                  getenv("KTS_SESSION_MS") ? getenv("KTS_SESSION_MS") : session_ms);
    kts_strv_push(&cfg->properties, "auto.commit.interval.ms");
    kts_strv_push(&cfg->properties, "200");
    kts_strv_push(&cfg->typesdb, KTS_TYPESDB_DEFAULT);
}

static void base_config(struct kts_consumer_config *cfg, const char *group, const char *topic)
{
    base_config_session(cfg, group, topic, MULTI_SESSION);
}

static int64_t stored_of(struct kts_consumer *c, int32_t partition)
{
    struct kts_consumer_lag lag[16];
    size_t n = kts_consumer_lag(c, lag, 16);
    for (size_t i = 0; i < n; i++)
        if (lag[i].partition == partition)
            return lag[i].stored;
    return -2;
}

/* Committed offset of partition p of topic for group (a fresh consumer asks the broker). */
static int64_t committed(const char *group, const char *topic, int32_t p)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, p);
    int64_t off = -3;
    if (rd_kafka_committed(rk, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        off = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return off;
}

static bool wait_for(bool (*cond)(void *), void *arg, int seconds)
{
    for (int i = 0; i < seconds * 100; i++) {
        if (cond(arg))
            return true;
        usleep(10000);
    }
    return false;
}

struct wait_n {
    struct kts_consumer *c;
    uint64_t n;
};
static bool written_reached(void *arg)
{
    struct wait_n *w = arg;
    struct kts_consumer_stats st;
    kts_consumer_stats(w->c, &st);
    return st.written >= w->n;
}
static bool bad_reached(void *arg)
{
    struct wait_n *w = arg;
    struct kts_consumer_stats st;
    kts_consumer_stats(w->c, &st);
    return st.decode_errors + st.written >= w->n && st.dead_lettered >= 3;
}

static void test_offsets_and_dlq(void)
{
    const char *topic = "t-offsets";
    rd_kafka_mock_topic_create(mcluster, topic, 2, 1);
    rd_kafka_mock_topic_create(mcluster, "t-dlq", 1, 1);
    /* partition 0: 3 series × 20 points; partition 1: 10 good + 3 bad messages */
    for (int k = 0; k < 20; k++)
        for (int s = 0; s < 3; s++)
            produce_value(topic, 0, s, k);
    for (int k = 0; k < 5; k++)
        produce_value(topic, 1, 7, k);
    produce(topic, 1, "x", "garbage");
    produce(topic, 1, "x", "{\"v\":1,\"host\":\"h\"");
    produce(topic, 1, "x",
            "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"\","
            "\"type\":\"if_octets\",\"type_instance\":\"\",\"time\":1,\"interval\":1,"
            "\"ds\":[{\"name\":\"value\",\"type\":\"gauge\",\"value\":1}]}");
    for (int k = 5; k < 10; k++)
        produce_value(topic, 1, 7, k);
    rd_kafka_flush(mock_rk, 5000);

    struct kts_consumer_config cfg = {0};
    base_config_session(&cfg, "g-offsets", topic, SINGLE_SESSION);
    cfg.dead_letter_topic = strdup("t-dlq");
    static struct sink s;
    pthread_mutex_init(&s.lock, NULL);
    s.withhold_first = true;
    struct kts_consumer_callbacks cb = {.dispatch = sink_dispatch, .dispatch_opaque = &s};
    char err[512];
    struct kts_consumer *c;
    int rc = kts_consumer_create(&c, &cfg, &cb, 7, err, sizeof(err));
    is_int(rc, 0, "C1 consumer created on the mock cluster (%s)", rc ? err : "");
    if (rc != 0)
        return;
    s.c = c;
    pthread_t rt, wt;
    pthread_create(&rt, NULL, run_thread, c);
    pthread_create(&wt, NULL, sink_writer, &s);

    /* Everything but the first dispatched value gets confirmed; its series then stalls (C3):
     * s7 has 10 values, s0..s2 20 each, so at least 50 are written. */
    struct wait_n w = {c, 50};
    /* 90 s: this first wait includes joining the group, which under valgrind on a loaded
     * 2-core machine was seen to take more than 30 s; the points after it keep 30 s. */
    ok(wait_for(written_reached, &w, 90), "C2 the values not behind the withheld one are written");
    ok(wait_for(bad_reached, &(struct wait_n){c, 53}, 30),
       "C5 three bad messages counted and dead-lettered");
    usleep(1000000);
    int32_t wp = -1;
    pthread_mutex_lock(&s.lock);
    wp = strcmp(s.series[0], "s7") == 0 ? 1 : 0;
    pthread_mutex_unlock(&s.lock);
    int64_t st_w = stored_of(c, wp), st_o = stored_of(c, 1 - wp);
    ok(st_w == -1 || st_w == 0,
       "C2 partition %d with the withheld first value: nothing stored past it (%lld)", wp,
       (long long)st_w);
    is_int(st_o, wp == 0 ? 13 : 60,
           "C2/C5 the other partition is stored to its end, past the bad messages");
    ok(kts_consumer_owns(c, s.withhold) && !kts_consumer_owns(c, s.withhold ^ (1ULL << 60)),
       "tokens carry the instance id");
    is_int(kts_consumer_written(c, 12345), -ENOENT, "an unknown token is ignored");
    ok(!s.order_broken, "C3 per series: one value in flight at a time, in time order");
    /* Now release it: the watermark moves to the end. */
    pthread_mutex_lock(&s.lock);
    s.withhold_first = false;
    s.withhold = 0;
    pthread_mutex_unlock(&s.lock);
    ok(wait_for(written_reached, &(struct wait_n){c, 70}, 10),
       "C2 the withheld value written at last");
    usleep(300000);
    is_int(stored_of(c, wp), wp == 0 ? 60 : 13, "C2 its partition is now stored to the end");

    struct kts_consumer_stats st;
    kts_consumer_stats(c, &st);
    is_uint(st.decode_errors, 3, "C5 decode_errors = 3");
    is_uint(st.dead_lettered, 3, "C5 dead_lettered = 3");
    is_uint(st.dispatched, 70, "dispatched = 70");

    is_uint(kts_consumer_drain(c), 0, "C8 drain: nothing left unconfirmed");
    pthread_join(rt, NULL);
    kts_consumer_close(c);
    atomic_store(&s.stop, true);
    pthread_join(wt, NULL);
    kts_consumer_destroy(c);
    is_int(committed("g-offsets", topic, 0), 60, "C8 close committed partition 0's stored offset");
    is_int(committed("g-offsets", topic, 1), 13, "C8 close committed partition 1's stored offset");
    kts_consumer_config_free(&cfg);
}

/* Commit hook (C11): offsets are stored one commit point after the hook that followed their
 * values' confirmation, never before. The hook reads the consumer's stats and lag (it runs
 * without the consumer's lock). */
struct hook_rec {
    struct kts_consumer *c;
    int calls, finals;
    uint64_t written[64];
    int64_t stored[64];
};
static void test_hook(bool final, void *opaque)
{
    struct hook_rec *h = opaque;
    struct kts_consumer_stats st;
    kts_consumer_stats(h->c, &st);
    int i = __atomic_load_n(&h->calls, __ATOMIC_RELAXED);
    if (i < 64) {
        h->written[i] = st.written;
        h->stored[i] = stored_of(h->c, 0);
    }
    __atomic_store_n(&h->calls, i + 1, __ATOMIC_RELEASE);
    h->finals += final;
}
static bool hook_calls_reached(void *arg)
{
    struct hook_rec *h = arg; /* a commit point (not the final one) stored all 20 */
    int n = __atomic_load_n(&h->calls, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n && i < 64; i++)
        if (h->stored[i] == 20)
            return true;
    return n >= 64;
}

static void test_commit_hook(void)
{
    const char *topic = "t-commit-hook";
    rd_kafka_mock_topic_create(mcluster, topic, 1, 1);
    for (int k = 0; k < 20; k++)
        produce_value(topic, 0, 1, k);
    rd_kafka_flush(mock_rk, 5000);
    struct kts_consumer_config cfg = {0};
    base_config_session(&cfg, "g-commit-hook", topic, SINGLE_SESSION);
    static struct sink s;
    pthread_mutex_init(&s.lock, NULL);
    static struct hook_rec h;
    struct kts_consumer_callbacks cb = {.dispatch = sink_dispatch,
                                        .dispatch_opaque = &s,
                                        .commit_hook = test_hook,
                                        .commit_opaque = &h,
                                        .commit_interval = 0.3};
    char err[512];
    struct kts_consumer *c;
    int rc = kts_consumer_create(&c, &cfg, &cb, 9, err, sizeof(err));
    is_int(rc, 0, "C11 consumer with a commit hook created (%s)", rc ? err : "");
    if (rc != 0)
        return;
    s.c = h.c = c;
    pthread_t rt, wt;
    pthread_create(&rt, NULL, run_thread, c);
    pthread_create(&wt, NULL, sink_writer, &s);
    ok(wait_for(written_reached, &(struct wait_n){c, 20}, 30) &&
           wait_for(hook_calls_reached, &h, 30),
       "C11 20 values written, and a commit point stored them before any drain");
    is_uint(kts_consumer_drain(c), 0, "C11 drain: nothing left unconfirmed");
    pthread_join(rt, NULL);
    /* At each commit point the stored offset is at most what was written at the one before
     * (one message per value, offsets from 0). */
    bool lag_ok = h.stored[0] <= 0;
    for (int i = 1; i < h.calls && i < 64; i++)
        if (h.stored[i] > (int64_t)h.written[i - 1])
            lag_ok = false;
    for (int i = 0; i < h.calls && i < 64 && getenv("KTS_TEST_VERBOSE"); i++)
        diag("hook call %d: written %llu, stored %lld", i, (unsigned long long)h.written[i],
             (long long)h.stored[i]);
    ok(lag_ok,
       "C11 an offset is stored only at the commit point after the hook that followed "
       "its value's confirmation (%d hook calls)",
       h.calls);
    is_int(h.finals, 1, "C11 drain calls the hook once more, as final");
    is_int(stored_of(c, 0), 20, "C11 after the final hook everything done is stored");
    kts_consumer_close(c);
    atomic_store(&s.stop, true);
    pthread_join(wt, NULL);
    kts_consumer_destroy(c);
    is_int(committed("g-commit-hook", topic, 0), 20, "C11 close committed it");
    kts_consumer_config_free(&cfg);
}

/* Close during a rebalance: a second member joins, the first closes at once (C8). */
static void test_rebalance_close(int loops)
{
    const char *topic = "t-rebalance";
    rd_kafka_mock_topic_create(mcluster, topic, 4, 1);
    for (int k = 0; k < 50; k++)
        for (int s = 0; s < 8; s++)
            produce_value(topic, s % 4, s, k);
    rd_kafka_flush(mock_rk, 5000);
    int fine = 0;
    for (int i = 0; i < loops; i++) {
        char group[64];
        snprintf(group, sizeof(group), "g-rebalance-%d", i);
        struct kts_consumer_config cfg = {0};
        base_config(&cfg, group, topic);
        static struct sink sa, sb;
        memset(&sa, 0, sizeof(sa));
        memset(&sb, 0, sizeof(sb));
        pthread_mutex_init(&sa.lock, NULL);
        pthread_mutex_init(&sb.lock, NULL);
        struct kts_consumer *a, *b;
        char err[512];
        struct kts_consumer_callbacks cba = {.dispatch = sink_dispatch, .dispatch_opaque = &sa};
        struct kts_consumer_callbacks cbb = {.dispatch = sink_dispatch, .dispatch_opaque = &sb};
        if (kts_consumer_create(&a, &cfg, &cba, 1, err, sizeof(err)) != 0 ||
            kts_consumer_create(&b, &cfg, &cbb, 2, err, sizeof(err)) != 0) {
            diag("create: %s", err);
            continue;
        }
        sa.c = a;
        sb.c = b;
        pthread_t ra, rb, wa, wb;
        pthread_create(&ra, NULL, run_thread, a);
        pthread_create(&wa, NULL, sink_writer, &sa);
        /* a gets everything, then b joins: a rebalance starts, and a closes in the middle. */
        wait_for(written_reached, &(struct wait_n){a, 1}, 15);
        pthread_create(&rb, NULL, run_thread, b);
        pthread_create(&wb, NULL, sink_writer, &sb);
        usleep((useconds_t)(200000 + 150000 * (i % 5)));
        kts_consumer_drain(a);
        pthread_join(ra, NULL);
        kts_consumer_close(a);
        atomic_store(&sa.stop, true);
        pthread_join(wa, NULL);
        /* b must end up owning everything and writing all 400 values (the union). */
        struct kts_consumer_stats sta;
        kts_consumer_stats(a, &sta);
        bool complete = wait_for(written_reached, &(struct wait_n){b, 400 - sta.written}, 30);
        struct kts_consumer_stats stb;
        kts_consumer_stats(b, &stb);
        kts_consumer_drain(b);
        pthread_join(rb, NULL);
        kts_consumer_close(b);
        atomic_store(&sb.stop, true);
        pthread_join(wb, NULL);
        kts_consumer_destroy(a);
        kts_consumer_destroy(b);
        kts_consumer_config_free(&cfg);
        if (complete && sta.written + stb.written >= 400)
            fine++;
        else
            diag("loop %d: a wrote %llu, b wrote %llu", i, (unsigned long long)sta.written,
                 (unsigned long long)stb.written);
    }
    is_int(fine, loops,
           "C8/C9 close of a member during a rebalance, %d times: no abort, no hang, "
           "the survivor completes the union",
           loops);
}

/* A TAP "skip" (tap.h has no directive of its own): counted as run, never as a failure. */
static void skip(const char *why, const char *name)
{
    tap_run++;
    printf("ok %d - %s # SKIP %s\n", tap_run, name, why);
}

/* C1: cooperative-sticky and group.protocol "consumer" by librdkafka version (kts_rdkver.h). */
static void test_protocol_options(void)
{
    static const char *const text[] = {
        "GroupId \"g\"\nTopic \"t\"\nProperty \"partition.assignment.strategy\" "
        "\"cooperative-sticky\"\n",
        "GroupId \"g\"\nTopic \"t\"\nProperty \"group.protocol\" \"consumer\"\n",
    };
    enum kts_rdk_feature feat[] = {KTS_RDK_COOPERATIVE, KTS_RDK_KIP848};
    const char *what[] = {"cooperative-sticky", "group.protocol consumer"};
    for (int i = 0; i < 2; i++) {
        struct kts_conf *root = NULL;
        char err[256];
        struct kts_consumer_config cfg = {0};
        log_clear();
        int rc = kts_conf_parse(text[i], strlen(text[i]), "test", &root, err, sizeof(err));
        if (rc == 0)
            rc = kts_opt_defaults(kts_consumer_options, &cfg);
        if (rc == 0)
            rc = kts_opt_apply(kts_consumer_options, &cfg, root, "test");
        kts_conf_free(root);
        kts_consumer_config_free(&cfg);
        bool has = kts_rdk_has(feat[i]);
        if (has)
            is_int(rc, 0, "C1 %s accepted with librdkafka %s (>= %s)", what[i],
                   kts_rdk_version_str(), kts_rdk_since(feat[i]));
        else
            ok(rc == -EINVAL && (log_count(kts_rdk_since(feat[i]), "is refused") == 1 ||
                                 log_count("No such configuration property", NULL) == 1),
               "C1 %s refused with librdkafka %s (< %s), naming the version that has it", what[i],
               kts_rdk_version_str(), kts_rdk_since(feat[i]));
    }
}

static size_t owned(struct kts_consumer *c)
{
    struct kts_consumer_lag lag[16];
    return kts_consumer_lag(c, lag, 16);
}
struct owned_n {
    struct kts_consumer *a, *b;
};
static bool split_reached(void *arg)
{
    struct owned_n *w = arg;
    return owned(w->a) == 2 && owned(w->b) == 2;
}

/* A topic of 4 partitions on the mock cluster, or on the real broker (KTS_BOOTSTRAP, through
 * the admin API; 0 on success). */
static int create_topic4(const char *topic, bool real)
{
    if (!real)
        return rd_kafka_mock_topic_create(mcluster, topic, 4, 1) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0
                                                                                               : -1;
    char errstr[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 4, 1, errstr, sizeof(errstr));
    rd_kafka_queue_t *q = rd_kafka_queue_new(mock_rk);
    rd_kafka_CreateTopics(mock_rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    int rc = -1;
    if (ev != NULL) {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t n = 0;
        const rd_kafka_topic_result_t **tr =
            res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
        rc = (tr != NULL && n == 1 && rd_kafka_topic_result_error(tr[0]) == 0) ? 0 : -1;
        if (rc != 0)
            diag("CreateTopics %s: %s", topic,
                 tr && n ? rd_kafka_topic_result_error_string(tr[0])
                         : rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    sleep(2); /* leaders elected */
    return rc;
}

/* C1/C9 incremental rebalancing: with cooperative-sticky (mock cluster) or group.protocol
 * "consumer" (KIP-848: the real broker, which the mock does not emulate) a member joining takes
 * half of the partitions and the first member gives up only those: it keeps the other two
 * without a revoke, and every value is written by one of them. */
static void test_incremental(bool kip848)
{
    char name[256], topic[64], group[64];
    snprintf(name, sizeof(name),
             "C1/C9 %s: a joining member takes 2 of 4 partitions, the other 2 "
             "are never revoked, all 800 values written",
             kip848 ? "group.protocol consumer (KIP-848, real broker)" : "cooperative-sticky");
    char lim[768];
    const char *l = kts_rdk_limit(kip848 ? KTS_RDK_KIP848 : KTS_RDK_COOPERATIVE, lim, sizeof(lim));
    if (l != NULL) {
        skip(l, name);
        return;
    }
    const char *real_bootstrap = getenv("KTS_BOOTSTRAP");
    if (kip848 && (real_bootstrap == NULL || *real_bootstrap == '\0')) {
        skip("no broker (KTS_BOOTSTRAP unset: run through make check)", name);
        return;
    }
    /* The real broker: its own producer and bootstrap in place of the mock's for this test. */
    rd_kafka_t *saved_rk = mock_rk;
    const char *saved_bootstrap = bootstrap;
    if (kip848) {
        char errstr[256];
        rd_kafka_conf_t *pc = rd_kafka_conf_new();
        rd_kafka_conf_set(pc, "bootstrap.servers", real_bootstrap, errstr, sizeof(errstr));
        mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof(errstr));
        if (mock_rk == NULL)
            BAIL_OUT("producer for %s: %s", real_bootstrap, errstr);
        bootstrap = real_bootstrap;
    }
    snprintf(topic, sizeof(topic), "t-%s-%d-%ld", kip848 ? "kip848" : "cooperative", (int)getpid(),
             (long)time(NULL));
    snprintf(group, sizeof(group), "g-%s", topic + 2);
    if (create_topic4(topic, kip848) != 0)
        BAIL_OUT("cannot create topic %s", topic);
    for (int k = 0; k < 50; k++)
        for (int s = 0; s < 8; s++)
            produce_value(topic, s % 4, s, k);
    rd_kafka_flush(mock_rk, 10000);
    struct kts_consumer_config cfg = {0};
    base_config(&cfg, group, topic);
    if (kip848) {
        /* base_config's session.timeout.ms is refused with the consumer protocol (the broker's) */
        kts_strv_free(&cfg.properties);
        kts_strv_push(&cfg.properties, "bootstrap.servers");
        kts_strv_push(&cfg.properties, bootstrap);
        kts_strv_push(&cfg.properties, "auto.commit.interval.ms");
        kts_strv_push(&cfg.properties, "200");
        kts_strv_push(&cfg.properties, "group.protocol");
        kts_strv_push(&cfg.properties, "consumer");
    } else {
        kts_strv_push(&cfg.properties, "partition.assignment.strategy");
        kts_strv_push(&cfg.properties, "cooperative-sticky");
        /* A session that outlives a loaded machine: a timeout is a "lost", not the revoke tested.
         */
        kts_strv_push(&cfg.properties, "session.timeout.ms");
        kts_strv_push(&cfg.properties, "15000");
    }
    static struct sink sa, sb;
    memset(&sa, 0, sizeof(sa));
    memset(&sb, 0, sizeof(sb));
    pthread_mutex_init(&sa.lock, NULL);
    pthread_mutex_init(&sb.lock, NULL);
    struct kts_consumer *a, *b;
    char err[512];
    struct kts_consumer_callbacks cba = {.dispatch = sink_dispatch, .dispatch_opaque = &sa};
    struct kts_consumer_callbacks cbb = {.dispatch = sink_dispatch, .dispatch_opaque = &sb};
    cfg.name = strdup("coop-a");
    log_clear();
    if (kts_consumer_create(&a, &cfg, &cba, 1, err, sizeof(err)) != 0) {
        diag("create: %s", err);
        ok(0, "%s", name);
        kts_consumer_config_free(&cfg);
        return;
    }
    sa.c = a;
    pthread_t ra, rb, wa, wb;
    pthread_create(&ra, NULL, run_thread, a);
    pthread_create(&wa, NULL, sink_writer, &sa);
    bool first = wait_for(written_reached, &(struct wait_n){a, 400}, 30) && owned(a) == 4;
    /* b subscribes (joins) only now: creating it is what makes it a member. */
    free(cfg.name);
    cfg.name = strdup("coop-b");
    if (kts_consumer_create(&b, &cfg, &cbb, 2, err, sizeof(err)) != 0)
        BAIL_OUT("create b: %s", err);
    sb.c = b;
    pthread_create(&rb, NULL, run_thread, b);
    pthread_create(&wb, NULL, sink_writer, &sb);
    bool split = wait_for(split_reached, &(struct owned_n){a, b}, 90); /* two rounds */
    for (int k = 50; k < 100; k++)
        for (int s = 0; s < 8; s++)
            produce_value(topic, s % 4, s, k);
    rd_kafka_flush(mock_rk, 10000);
    struct kts_consumer_stats sta, stb;
    bool all = false;
    for (int i = 0; i < 3000 && !all; i++) {
        kts_consumer_stats(a, &sta);
        kts_consumer_stats(b, &stb);
        all = sta.written + stb.written >= 800;
        if (!all)
            usleep(10000);
    }
    int revoked_a = log_count("(coop-a)", "revoked"),
        eager = log_count("partitions revoked (", NULL);
    int gave2 = log_count("(coop-a): 2 partition(s) revoked (incremental; 2 owned now)", NULL);
    if (!ok(first && split && all && revoked_a == 1 && gave2 == 1 && eager == 0, "%s", name))
        diag("a alone had 4: %d; split 2/2: %d; written a %llu + b %llu; revoke lines of a: %d "
             "(2 of 4: %d), eager revokes: %d\n%s",
             first, split, (unsigned long long)sta.written, (unsigned long long)stb.written,
             revoked_a, gave2, eager, logged);
    kts_consumer_drain(b);
    pthread_join(rb, NULL);
    kts_consumer_close(b);
    atomic_store(&sb.stop, true);
    pthread_join(wb, NULL);
    kts_consumer_drain(a);
    pthread_join(ra, NULL);
    kts_consumer_close(a);
    atomic_store(&sa.stop, true);
    pthread_join(wa, NULL);
    kts_consumer_destroy(a);
    kts_consumer_destroy(b);
    kts_consumer_config_free(&cfg);
    if (kip848) {
        rd_kafka_destroy(mock_rk);
        mock_rk = saved_rk;
        bootstrap = saved_bootstrap;
    }
}

/* A librdkafka error is logged once: a refused connection is one error event, and librdkafka
 * also logs it as a FAIL line, which the consumer must not log a second time. */
static void test_refused_logged_once(void)
{
    int port = closed_port();
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    const char *saved = bootstrap;
    bootstrap = addr;
    struct kts_consumer_config cfg = {0};
    base_config_session(&cfg, "g-refused", "t-refused", SINGLE_SESSION);
    bootstrap = saved;
    cfg.log_prefix = strdup("read_kafka_ts plugin (g-refused)"); /* as the plugin passes it */
    cfg.drain_timeout = 1;
    cfg.close_timeout = 1;
    pthread_mutex_lock(&count_lock);
    snprintf(count_needle, sizeof(count_needle), "Connect to ipv4#%s failed", addr);
    count_lines = 0;
    pthread_mutex_unlock(&count_lock);
    static struct sink s;
    pthread_mutex_init(&s.lock, NULL);
    struct kts_consumer_callbacks cb = {.dispatch = sink_dispatch, .dispatch_opaque = &s};
    char err[512];
    struct kts_consumer *c;
    int rc = kts_consumer_create(&c, &cfg, &cb, 3, err, sizeof(err));
    is_int(rc, 0, "log once: consumer created with bootstrap %s (no listener) (%s)", addr,
           rc ? err : "");
    if (rc != 0) {
        kts_consumer_config_free(&cfg);
        return;
    }
    s.c = c;
    pthread_t rt;
    pthread_create(&rt, NULL, run_thread, c);
    sleep(3); /* librdkafka retries every second at most; identical errors it reports once */
    kts_consumer_drain(c);
    pthread_join(rt, NULL);
    kts_consumer_close(c);
    kts_consumer_destroy(c);
    kts_consumer_config_free(&cfg);
    pthread_mutex_lock(&count_lock);
    int n = count_lines;
    count_needle[0] = '\0';
    pthread_mutex_unlock(&count_lock);
    is_int(n, 1, "log once: the refused connection is one log line, not two");
    ok(strstr(count_first, "read_kafka_ts plugin (g-refused): Kafka: ") != NULL &&
           strstr(count_first, "(_TRANSPORT)") != NULL,
       "log once: the line kept is the error event, with its name (%s)", count_first);
}

int main(void)
{
    kts_log_set_sink(quiet, NULL);
    plan(55);
    test_typesdb();
    test_naming();
    test_refused_logged_once();
    mock_start();
    alarm(600); /* a hang is a failure, not a stuck suite */
    test_offsets_and_dlq();
    test_commit_hook();
    int loops = getenv("KTS_REBALANCE_LOOPS") ? atoi(getenv("KTS_REBALANCE_LOOPS")) : 10;
    test_rebalance_close(loops);
    test_protocol_options();
    test_incremental(false);
    test_incremental(true);
    rd_kafka_destroy(mock_rk);
    return done_testing();
}
