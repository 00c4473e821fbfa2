/* SPDX-License-Identifier: MIT */
/*
 * kts_producer with a spool (guarantee 10 of src/kafka/kts_producer.h) against librdkafka's mock
 * cluster, whose broker can be set down and up at will. The real broker and the real collectd
 * are exercised by tests/t-write-outage.sh, t-write-outage-3node.sh and t-write-restart.sh.
 *   a  broker up: nothing is spooled
 *   b  broker down: the queue (BufferMessages 200) fills, everything after goes to the spool
 *   c  close while down: librdkafka's queue is put in front of the spool, nothing lost
 *   d  a new producer on the same spool replays it before new value lists
 *   e  broker up: the spool drains, every value arrives, per-series order kept
 *   f  a full spool drops, counted exactly and logged
 *   g  configuration errors; a spool directory cannot be shared
 *   h  write-ahead (SpoolMode "always", guarantee 11): broker up, every value list goes through
 *      the spool and leaves it once acknowledged; broker down, close keeps everything not
 *      acknowledged in the spool; a new producer sends it first; every value arrives in order
 */
#include "tap.h"

#include "kts_conf.h"
#include "kts_format.h"
#include "kts_log.h"
#include "kts_producer.h"
#include "kts_testhooks.h"

#include <dirent.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[1 << 16];
static size_t log_len;

static void capture(int level, const char *msg, void *opaque)
{
    (void)level;
    (void)opaque;
    pthread_mutex_lock(&log_lock);
    int n = snprintf(log_text + log_len, sizeof(log_text) - log_len, "%s\n", msg);
    if (n > 0 && log_len + (size_t)n < sizeof(log_text))
        log_len += (size_t)n;
    pthread_mutex_unlock(&log_lock);
}

static bool log_has(const char *s)
{
    pthread_mutex_lock(&log_lock);
    bool r = strstr(log_text, s) != NULL;
    pthread_mutex_unlock(&log_lock);
    return r;
}

static const char *bootstraps;
static char dir[256], dir2[256];

static struct kts_producer *make_producer(const char *extra)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "Topic \"%s\"\nProperty \"bootstrap.servers\" \"%s\"\nBufferMessages 200\n"
             "BlockTimeout 0\nFlushTimeout 1\n%s\n",
             strstr(extra, "SpoolMode") ? "wal" : "spool", bootstraps, extra);
    struct kts_conf *root;
    char err[512];
    struct kts_producer_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    struct kts_producer *p = NULL;
    if (kts_conf_parse(text, strlen(text), "test", &root, err, sizeof(err)) < 0) {
        diag("%s", err);
        return NULL;
    }
    int rc = kts_opt_defaults(kts_producer_options, &cfg);
    if (rc == 0)
        rc = kts_opt_apply(kts_producer_options, &cfg, root, "test");
    if (rc == 0)
        rc = kts_producer_config_check(&cfg, "test");
    kts_conf_free(root);
    cfg.stats_interval = 0.5;
    if (rc == 0 && kts_producer_create(&p, &cfg, err, sizeof(err)) < 0)
        diag("create: %s", err);
    kts_producer_config_free(&cfg);
    return p;
}

/* Value list number i of series s: value s * 1e6 + i, time 1.7e9 + i. */
static int send_range(struct kts_producer *p, int series, int from, int to)
{
    int sent = 0;
    for (int i = from; i < to; i++)
        for (int s = 0; s < series; s++) {
            struct kts_vl vl;
            struct kts_ds ds;
            memset(&vl, 0, sizeof(vl));
            memset(&ds, 0, sizeof(ds));
            snprintf(vl.host, sizeof(vl.host), "h");
            snprintf(vl.plugin, sizeof(vl.plugin), "p");
            snprintf(vl.plugin_instance, sizeof(vl.plugin_instance), "%d", s);
            snprintf(vl.type, sizeof(vl.type), "gauge");
            vl.time = KTS_TIME_FROM_S(1700000000 + i);
            vl.interval = KTS_TIME_FROM_S(10);
            snprintf(ds.name, sizeof(ds.name), "value");
            ds.type = KTS_DS_GAUGE;
            ds.value.gauge = s * 1e6 + i;
            vl.ds = &ds;
            vl.ds_len = 1;
            if (kts_producer_send(p, &vl) == 0)
                sent++;
        }
    return sent;
}

static struct kts_producer_stats stats(struct kts_producer *p)
{
    struct kts_producer_stats st;
    kts_producer_stats(p, &st);
    return st;
}

/* Reads the whole topic: count, and per series whether the values came in increasing order
 * without gaps from 0 (first appearances; duplicates counted apart). */
#define SERIES 20
static void consume_check(const char *topic, int want_per_series, int *count, int *gaps_or_disorder,
                          int *dups)
{
    int next[SERIES];
    for (int s = 0; s < SERIES; s++)
        next[s] = 0;
    *count = *gaps_or_disorder = *dups = 0;
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", "t-producer-spool", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(4);
    for (int i = 0; i < 4; i++)
        rd_kafka_topic_partition_list_add(parts, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    for (int idle = 0; *count < want_per_series * SERIES && idle < 50;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (m == NULL) {
            idle++;
            continue;
        }
        struct kts_vl *vls = NULL;
        size_t n = 0;
        char derr[256];
        if (m->err == 0 &&
            kts_format_decode_array(m->payload, m->len, 0, NULL, &vls, &n, derr, sizeof(derr)) ==
                0 &&
            n == 1) {
            int s = atoi(vls[0].plugin_instance);
            int i = (int)(vls[0].ds[0].value.gauge - s * 1e6);
            if (s >= 0 && s < SERIES) {
                if (i < next[s])
                    (*dups)++;
                else if (i > next[s]) {
                    if ((*gaps_or_disorder)++ < 3)
                        diag("series %d: value %d where %d was due", s, i, next[s]);
                    next[s] = i + 1;
                } else {
                    next[s]++;
                    (*count)++;
                }
            }
        }
        kts_vl_array_free(vls, n);
        rd_kafka_message_destroy(m);
    }
    for (int s = 0; s < SERIES; s++)
        if (next[s] != want_per_series && (*gaps_or_disorder)++ < 3)
            diag("series %d ends at %d, want %d", s, next[s], want_per_series);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
}

static int count_segments(const char *d)
{
    DIR *dd = opendir(d);
    int n = 0;
    struct dirent *e;
    while (dd != NULL && (e = readdir(dd)) != NULL)
        n += strlen(e->d_name) > 4 && strcmp(e->d_name + strlen(e->d_name) - 4, ".seg") == 0;
    if (dd != NULL)
        closedir(dd);
    return n;
}

static void rm_dir(const char *d)
{
    DIR *dd = opendir(d);
    struct dirent *e;
    char path[512];
    while (dd != NULL && (e = readdir(dd)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", d, e->d_name);
        unlink(path);
    }
    if (dd != NULL)
        closedir(dd);
    rmdir(d);
}

int main(void)
{
    plan(43);
    kts_log_set_sink(capture, NULL);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof(dir), "%s/kts-t-pspool.XXXXXX", tmp);
    if (mkdtemp(dir) == NULL)
        BAIL_OUT("mkdtemp");
    snprintf(dir2, sizeof(dir2), "%s/kts-t-pspool2.XXXXXX", tmp);
    if (mkdtemp(dir2) == NULL)
        BAIL_OUT("mkdtemp");

    char err[512];
    rd_kafka_conf_t *hconf = rd_kafka_conf_new();
    rd_kafka_t *host = rd_kafka_new(RD_KAFKA_PRODUCER, hconf, err, sizeof(err));
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(host, 1);
    if (mc == NULL)
        BAIL_OUT("cannot create the mock cluster");
    bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    rd_kafka_mock_topic_create(mc, "spool", 4, 1);
    char opt[600];
    snprintf(opt, sizeof(opt), "SpoolDirectory \"%s\"", dir);

    /* ---- a */
    struct kts_producer *p = make_producer(opt);
    ok(p != NULL, "a: producer with a spool");
    is_int(send_range(p, SERIES, 0, 10), 10 * SERIES,
           "a: 200 value lists accepted with the broker up");
    for (int i = 0; i < 100 && stats(p).delivered < 200; i++)
        usleep(50000);
    struct kts_producer_stats st = stats(p);
    ok(st.delivered == 200 && st.spooled == 0, "a: 200 delivered, none spooled (%llu, %llu)",
       (unsigned long long)st.delivered, (unsigned long long)st.spooled);

    /* ---- b */
    rd_kafka_mock_broker_set_down(mc, 1);
    usleep(300000);
    is_int(send_range(p, SERIES, 10, 60), 50 * SERIES,
           "b: 1000 value lists accepted with the broker down");
    st = stats(p);
    ok(st.spooled >= 800 && st.spooled <= 1000,
       "b: the queue (200) filled, the rest went to the spool (%llu)",
       (unsigned long long)st.spooled);
    is_uint(st.dropped_queue_full + st.dropped_spool_full + st.dropped_error, 0,
            "b: nothing dropped");
    ok(log_has("spooling to disk until the broker catches up"), "b: logged: spooling to disk");
    ok(st.spool_bytes > 0, "b: spool bytes %llu", (unsigned long long)st.spool_bytes);

    /* ---- c */
    uint64_t lost = kts_producer_close(p, 1.0);
    is_uint(lost, 0, "c: close while the broker is down: nothing lost");
    ok(log_has("put back from librdkafka's queue"),
       "c: librdkafka's queue was put back into the spool");
    ok(count_segments(dir) >= 2, "c: the spool keeps its segments (%d)", count_segments(dir));

    /* ---- d */
    p = make_producer(opt);
    ok(p != NULL, "d: a new producer on the same spool");
    ok(log_has("from a previous run: replaying them before new value lists"),
       "d: it replays the old spool first");
    is_int(send_range(p, SERIES, 60, 80), 20 * SERIES,
           "d: 400 more value lists accepted, broker still down");
    st = stats(p);
    is_uint(st.spooled, 400, "d: all 400 went behind the spool");

    /* ---- e */
    rd_kafka_mock_broker_set_up(mc, 1);
    for (int i = 0; i < 600 && !log_has("spool drained"); i++)
        usleep(50000);
    ok(log_has("spool drained"), "e: the spool drains once the broker is back");
    is_int(send_range(p, SERIES, 80, 90), 10 * SERIES,
           "e: 200 more accepted (to Kafka, or behind the spool while the queue is full)");
    lost = kts_producer_close(p, 10.0);
    is_uint(lost, 0, "e: close: nothing lost (the spool is drained within FlushTimeout)");
    is_int(count_segments(dir), 0, "e: no segment left");
    int count, bad, dups;
    consume_check("spool", 90, &count, &bad, &dups);
    is_int(count, 90 * SERIES, "e: every value arrives (%d duplicates)", dups);
    is_int(bad, 0, "e: per series, in order, without gaps");

    /* ---- f: a full spool (1 MiB, the minimum) */
    char opt2[600];
    snprintf(opt2, sizeof(opt2), "SpoolDirectory \"%s\"\nSpoolMaxBytes 1048576", dir2);
    p = make_producer(opt2);
    rd_kafka_mock_broker_set_down(mc, 1);
    usleep(300000);
    int accepted = send_range(p, SERIES, 0, 500); /* 10,000 value lists of ~170 bytes */
    st = stats(p);
    ok(st.dropped_spool_full > 0 && st.spool_bytes <= 1048576,
       "f: spool full at %llu bytes: %llu dropped", (unsigned long long)st.spool_bytes,
       (unsigned long long)st.dropped_spool_full);
    is_uint(st.dropped_spool_full, 10000 - accepted, "f: the drop counter is exact (%d accepted)",
            accepted);
    ok(log_has("dropped a value list: spool full"), "f: logged with the reason");

    /* ---- g */
    struct kts_producer *p2 = make_producer(opt2);
    ok(p2 == NULL, "g: a second producer on the same spool directory is refused");
    kts_producer_close(p2, 0);
    kts_producer_close(p, 0.5);
    ok(make_producer("SpoolDirectory \"relative/dir\"") == NULL &&
           log_has("invalid value \"relative/dir\" for option \"SpoolDirectory\"; allowed: an "
                   "absolute path"),
       "g: a relative SpoolDirectory is a configuration error naming option, value and what is "
       "allowed");
    ok(make_producer("SpoolDirectory \"none\"\nSpoolSync true") == NULL &&
           log_has("option \"SpoolSync\" needs a spool: remove it or SpoolDirectory \"none\""),
       "g: SpoolSync with SpoolDirectory \"none\" is a configuration error");
    struct kts_producer *pn = make_producer("SpoolDirectory \"none\"");
    ok(pn != NULL, "g: SpoolDirectory \"none\": a producer without a spool");
    if (pn != NULL) {
        send_range(pn, 1, 0, 10);
        struct kts_producer_stats sn = stats(pn);
        is_uint(sn.spooled + sn.spool_bytes, 0, "g: SpoolDirectory \"none\": nothing spooled");
    }
    kts_producer_close(pn, 0);

    /* ---- h: write-ahead */
    char dir3[256], opt3[600];
    snprintf(dir3, sizeof(dir3), "%s/kts-t-pspool3.XXXXXX", tmp);
    if (mkdtemp(dir3) == NULL)
        BAIL_OUT("mkdtemp");
    snprintf(opt3, sizeof(opt3), "SpoolDirectory \"%s\"\nSpoolMode \"always\"", dir3);
    rd_kafka_mock_topic_create(mc, "wal", 4, 1);
    rd_kafka_mock_broker_set_up(mc, 1);
    p = make_producer(opt3);
    ok(p != NULL, "h: producer in write-ahead mode");
    is_int(send_range(p, SERIES, 0, 10), 10 * SERIES, "h: 200 value lists accepted, broker up");
    for (int i = 0; i < 200 && stats(p).acked < 200; i++)
        usleep(50000);
    st = stats(p);
    ok(st.spooled == 200 && st.acked == 200 && st.delivered == 200,
       "h: all 200 went through the spool and were acknowledged (spooled %llu, acked %llu, "
       "delivered %llu)",
       (unsigned long long)st.spooled, (unsigned long long)st.acked,
       (unsigned long long)st.delivered);
    rd_kafka_mock_broker_set_down(mc, 1);
    usleep(300000);
    is_int(send_range(p, SERIES, 10, 60), 50 * SERIES,
           "h: broker down: 1000 value lists accepted (the queue of 200 does not limit the spool)");
    st = stats(p);
    is_uint(st.dropped_queue_full + st.dropped_spool_full + st.dropped_error, 0,
            "h: nothing dropped");
    lost = kts_producer_close(p, 0.5);
    is_uint(lost, 0, "h: close while the broker is down: nothing lost (all kept in the spool)");
    ok(count_segments(dir3) >= 1, "h: the spool keeps its segment");
    p = make_producer(opt3);
    ok(p != NULL && log_has("had not acknowledged when the previous run ended: sending them first"),
       "h: a new producer on the same spool sends what was not acknowledged first");
    is_int(send_range(p, SERIES, 60, 80), 20 * SERIES, "h: 400 more accepted, broker still down");
    rd_kafka_mock_broker_set_up(mc, 1);
    for (int i = 0; i < 400 && stats(p).acked < 1400; i++)
        usleep(50000);
    st = stats(p);
    ok(st.acked >= 1400, "h: broker up: the spool is sent and acknowledged (%llu)",
       (unsigned long long)st.acked);
    lost = kts_producer_close(p, 5.0);
    is_uint(lost, 0, "h: close: nothing lost");
    consume_check("wal", 80, &count, &bad, &dups);
    is_int(count, 80 * SERIES, "h: every value arrives (%d duplicates)", dups);
    is_int(bad, 0, "h: per series, in order, without gaps");
    ok(make_producer("SpoolDirectory \"none\"\nSpoolMode \"always\"") == NULL &&
           log_has("option \"SpoolMode\" \"always\" needs a spool"),
       "h: SpoolMode \"always\" with SpoolDirectory \"none\" is a configuration error");
    rm_dir(dir3);

    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(host);
    rm_dir(dir);
    rm_dir(dir2);
    kts_log_set_sink(NULL, NULL);
    return done_testing();
}
