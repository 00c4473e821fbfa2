/* SPDX-License-Identifier: MIT */
/*
 * kts_producer against librdkafka's mock cluster: the guarantees of src/kafka/kts_producer.h
 * (numbers in test names) under injected faults. The real broker is exercised end to end by
 * tests/t-write-e2e.sh; the mock is what lets us set brokers down and inject errors here.
 */
#include "lib/closed_port.h"
#include "tap.h"

#include "kts_conf.h"
#include "kts_format.h"
#include "kts_log.h"
#include "kts_producer.h"
#include "kts_rdkver.h"
#include "kts_testhooks.h"

#include <arpa/inet.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---------------------------------------------------------------- log capture (thread-safe) */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char *log_text;
static size_t log_len;

static void capture(int level, const char *msg, void *opaque)
{
    (void)level;
    (void)opaque;
    size_t n = strlen(msg);
    pthread_mutex_lock(&log_lock);
    char *g = realloc(log_text, log_len + n + 2);
    if (g != NULL) {
        log_text = g;
        memcpy(log_text + log_len, msg, n);
        log_len += n;
        log_text[log_len++] = '\n';
        log_text[log_len] = '\0';
    }
    pthread_mutex_unlock(&log_lock);
}
static bool log_has(const char *s)
{
    pthread_mutex_lock(&log_lock);
    bool r = log_text != NULL && strstr(log_text, s) != NULL;
    pthread_mutex_unlock(&log_lock);
    return r;
}
static int log_count(const char *s)
{
    int n = 0;
    pthread_mutex_lock(&log_lock);
    for (const char *q = log_text; q != NULL && (q = strstr(q, s)) != NULL; q += strlen(s))
        n++;
    pthread_mutex_unlock(&log_lock);
    return n;
}
static void log_clear(void)
{
    pthread_mutex_lock(&log_lock);
    log_len = 0;
    if (log_text)
        log_text[0] = '\0';
    pthread_mutex_unlock(&log_lock);
}

/* ---------------------------------------------------------------- helpers */
static const char *bootstraps;

/* A config from collectd-syntax text, as the plugin would build it. */
static int make_config(struct kts_producer_config *cfg, const char *extra)
{
    char text[2048];
    snprintf(text, sizeof(text), "Topic \"metrics\"\nProperty \"bootstrap.servers\" \"%s\"\n%s\n",
             bootstraps, extra);
    struct kts_conf *root;
    char err[256];
    memset(cfg, 0, sizeof(*cfg));
    if (kts_conf_parse(text, strlen(text), "test", &root, err, sizeof(err)) < 0) {
        diag("%s", err);
        return -EINVAL;
    }
    int rc = kts_opt_defaults(kts_producer_options, cfg);
    if (rc == 0)
        rc = kts_opt_apply(kts_producer_options, cfg, root, "test");
    kts_conf_free(root);
    return rc;
}

static struct kts_producer *make_producer(const char *extra)
{
    struct kts_producer_config cfg;
    struct kts_producer *p = NULL;
    char err[512];
    cfg.stats_interval = 0.5;
    if (make_config(&cfg, extra) == 0 && (cfg.stats_interval = 0.5) > 0 &&
        (cfg.log_prefix = strdup("write_kafka_ts plugin (metrics)")) != NULL && /* as the plugin */
        kts_producer_create(&p, &cfg, err, sizeof(err)) < 0)
        diag("create: %s", err);
    kts_producer_config_free(&cfg);
    return p;
}

static void make_vl(struct kts_vl *vl, struct kts_ds *ds, int series, int i)
{
    memset(vl, 0, sizeof(*vl));
    snprintf(vl->host, sizeof(vl->host), "host%d", series % 7);
    snprintf(vl->plugin, sizeof(vl->plugin), "plug");
    snprintf(vl->plugin_instance, sizeof(vl->plugin_instance), "%d", series);
    snprintf(vl->type, sizeof(vl->type), "gauge");
    vl->time = KTS_TIME_FROM_S(1700000000 + i) + (kts_time_t)series;
    vl->interval = KTS_TIME_FROM_S(10);
    memset(ds, 0, sizeof(*ds));
    snprintf(ds->name, sizeof(ds->name), "value");
    ds->type = KTS_DS_GAUGE;
    ds->value.gauge = series * 1000.0 + i + 0.25;
    vl->ds = ds;
    vl->ds_len = 1;
}

static int send_n(struct kts_producer *p, int n, int series_count, int offset)
{
    int ok_count = 0;
    for (int i = 0; i < n; i++) {
        struct kts_vl vl;
        struct kts_ds ds;
        make_vl(&vl, &ds, i % series_count, offset + i / series_count);
        if (kts_producer_send(p, &vl) == 0)
            ok_count++;
    }
    return ok_count;
}

static uint64_t wait_delivered(struct kts_producer *p, uint64_t want, int seconds)
{
    struct kts_producer_stats st;
    for (int i = 0; i < seconds * 20; i++) {
        kts_producer_stats(p, &st);
        if (st.delivered + st.failed >= want)
            break;
        usleep(50000);
    }
    kts_producer_stats(p, &st);
    return st.delivered;
}

/* Consume everything in `topic` (4 partitions) and check keys, partitions and content. */
struct seen {
    int count, bad_key, bad_value, split_series;
    int partition_of[64];
};
static void consume_all(const char *topic, int want, struct seen *s)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < 64; i++)
        s->partition_of[i] = -1;
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", "t-producer-mock", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(4);
    for (int i = 0; i < 4; i++)
        rd_kafka_topic_partition_list_add(parts, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    for (int idle = 0; s->count < want && idle < 100;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (m == NULL) {
            idle++;
            continue;
        }
        if (m->err == 0) {
            struct kts_vl *vls = NULL;
            size_t n = 0;
            char derr[256];
            if (kts_format_decode_array(m->payload, m->len, 0, NULL, &vls, &n, derr,
                                        sizeof(derr)) != 0 ||
                n != 1) {
                if (s->bad_value++ == 0)
                    diag("cannot decode: %s: %.*s", derr, (int)m->len, (const char *)m->payload);
            } else {
                char key[700];
                size_t kl = kts_series_message_key(key, sizeof(key), &vls[0], KTS_KEY_SERIES);
                if (m->key_len != kl || memcmp(m->key, key, kl) != 0)
                    s->bad_key++;
                int series = atoi(vls[0].plugin_instance);
                double base = (double)(int64_t)(vls[0].time >> 30) - 1700000000;
                if (vls[0].ds[0].value.gauge != series * 1000.0 + base + 0.25)
                    s->bad_value++;
                if (series >= 0 && series < 64) {
                    if (s->partition_of[series] == -1)
                        s->partition_of[series] = m->partition;
                    else if (s->partition_of[series] != m->partition)
                        s->split_series++;
                }
            }
            kts_vl_array_free(vls, n);
            s->count++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
}

int main(void)
{
    plan(44);
    kts_log_set_sink(capture, NULL);

    char err[512];
    rd_kafka_conf_t *hconf = rd_kafka_conf_new();
    rd_kafka_t *host = rd_kafka_new(RD_KAFKA_PRODUCER, hconf, err, sizeof(err));
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(host, 1);
    if (mc == NULL)
        BAIL_OUT("cannot create the mock cluster");
    bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    rd_kafka_mock_topic_create(mc, "metrics", 4, 1);

    /* 1, 6: delivery, content, key = series, one series → one partition */
    struct kts_producer *p = make_producer("");
    ok(p != NULL, "producer created against the mock cluster");
    is_int(send_n(p, 2000, 40, 0), 2000, "1: 2000 value lists accepted");
    is_uint(wait_delivered(p, 2000, 30), 2000, "1: all 2000 delivered");
    struct kts_producer_stats st;
    kts_producer_stats(p, &st);
    ok(st.failed == 0 && st.dropped_queue_full == 0 && st.queue_messages == 0,
       "1: nothing failed, dropped or left queued");
    /* Statistics come every 0.5 s; under load the first window with requests may take longer. */
    for (int i = 0; i < 100; i++) {
        kts_producer_stats(p, &st);
        if (st.latency_windows >= 1)
            break;
        usleep(100000);
    }
    ok(st.latency_windows >= 1 && st.latency_avg_s > 0 && st.latency_avg_s < 5 &&
           st.latency_max_s >= st.latency_avg_s,
       "9: request latency from statistics (avg %.6f s, max %.6f s)", st.latency_avg_s,
       st.latency_max_s);
    is_uint(st.delivered, 2000, "9: delivered derived from the queue: 2000");
    struct seen seen;
    consume_all("metrics", 2000, &seen);
    is_int(seen.count, 2000, "1: 2000 messages in the topic");
    is_int(seen.bad_value, 0, "1: every message decodes to the value sent");
    is_int(seen.bad_key, 0, "6: every key is the series identity");
    is_int(seen.split_series, 0, "6: each series stays in one partition");
    int parts_used = 0;
    for (int part = 0; part < 4; part++)
        for (int s = 0; s < 40; s++)
            if (seen.partition_of[s] == part) {
                parts_used++;
                break;
            }
    ok(parts_used >= 3, "6: 40 series spread over the partitions (%d of 4 used)", parts_used);
    is_uint(kts_producer_close(p, 5), 0, "5: close reports nothing undelivered");
    ok(log_has("all 2000 value lists sent were delivered"), "5: close logs the totals");

    /* 4: broker down, then up: nothing lost */
    p = make_producer("");
    rd_kafka_mock_broker_set_down(mc, 1);
    is_int(send_n(p, 500, 10, 100), 500, "4: 500 accepted while the broker is down");
    sleep(2);
    kts_producer_stats(p, &st);
    ok(st.delivered == 0 && st.failed == 0, "4: none delivered or failed while down (%llu, %llu)",
       (unsigned long long)st.delivered, (unsigned long long)st.failed);
    is_uint(st.queue_messages, 500, "4: all 500 wait in the queue");
    rd_kafka_mock_broker_set_up(mc, 1);
    is_uint(wait_delivered(p, 500, 30), 500, "4: all 500 delivered after the broker returns");
    kts_producer_stats(p, &st);
    is_uint(st.failed, 0, "4: none failed");
    is_uint(kts_producer_close(p, 5), 0, "4: nothing undelivered at close");

    /* 1: injected retriable errors are retried; a permanent one is counted and logged */
    p = make_producer("");
    rd_kafka_mock_push_request_errors(
        mc, 0 /* ApiKey Produce */, 3, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
    is_int(send_n(p, 100, 4, 200), 100, "1: 100 accepted with 3 retriable errors injected");
    is_uint(wait_delivered(p, 100, 30), 100, "1: all 100 delivered despite retriable errors");
    log_clear();
    rd_kafka_mock_push_request_errors(mc, 0 /* ApiKey Produce */, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    is_int(send_n(p, 1, 1, 300), 1, "1: one more accepted");
    wait_delivered(p, 101, 30);
    kts_producer_stats(p, &st);
    is_uint(st.failed, 1, "1: a non-retriable error counts the value list as failed");
    ok(log_has("delivery failed, value list lost"), "1: and logs why");
    is_uint(kts_producer_close(p, 5), 1, "5: close counts the failed one as not delivered");
    ok(log_has("1 value lists were NOT delivered"), "5: and says so");

    /* 3: queue full → back-pressure, then counted drops; 5: exact count at close */
    rd_kafka_mock_broker_set_down(mc, 1);
    p = make_producer("BufferMessages 10\nBlockTimeout 0.2\n");
    log_clear();
    is_int(send_n(p, 100, 5, 400), 10, "3: with BufferMessages 10 and the broker down, 10 queued");
    kts_producer_stats(p, &st);
    is_uint(st.dropped_queue_full, 90, "3: 90 dropped, counted as queue_full");
    ok(log_has("dropped a value list: local queue full"), "3: the drop is logged with its reason");
    is_int(log_count("local queue full"), 1, "3: 90 drops are logged once (rate-limited)");
    is_uint(kts_producer_close(p, 0.5), 10, "5: close reports the 10 queued as not delivered");
    ok(log_has("10 value lists were NOT delivered") && log_has("90 dropped before sending"),
       "5: the shutdown line has the exact numbers");
    rd_kafka_mock_broker_set_up(mc, 1);

    /* 8: marked value lists are skipped */
    p = make_producer("");
    struct kts_vl vl;
    struct kts_ds ds;
    make_vl(&vl, &ds, 1, 1);
    struct kts_meta marker = {
        .key = (char *)KTS_META_MARKER, .type = KTS_META_BOOLEAN, .value.boolean = true};
    vl.meta = &marker;
    vl.meta_len = 1;
    is_int(kts_producer_send(p, &vl), 1, "8: a marked value list is skipped");
    kts_producer_stats(p, &st);
    ok(st.skipped_marked == 1 && st.sent == 0, "8: counted as skipped, not sent");
    kts_producer_close(p, 1);

    /* 7: secrets never logged: config errors and librdkafka's own lines */
    log_clear();
    struct kts_producer_config cfg;
    is_int(make_config(&cfg,
                       "Property \"security.protocol\" \"bogus\"\n"
                       "Property \"no.such.property\" \"hunter2\"\nProperty \"sasl.password\"\n"),
           -EINVAL, "7: bad properties refuse the configuration");
    kts_producer_config_free(&cfg);
    if (!ok(log_has("no.such.property") &&
                log_has(
                    "Invalid value \"bogus\" for configuration property \"security.protocol\"") &&
                log_has("takes two strings"),
            "7: each bad property is named"))
        diag("log: %s", log_text);
    log_clear();
    p = make_producer(
        "Property \"security.protocol\" \"SASL_PLAINTEXT\"\nProperty \"sasl.mechanisms\" "
        "\"PLAIN\"\n"
        "Property \"sasl.username\" \"user\"\nProperty \"sasl.password\" \"hunter2-pw\"\n"
        "Property \"debug\" \"conf,security,broker\"\n");
    send_n(p, 1, 1, 500);
    sleep(1);
    kts_producer_close(p, 0.2);
    ok(!log_has("hunter2"), "7: no log line contains a password value");

    /* Idempotence by librdkafka version (kts_rdkver.h, docs/LIBRDKAFKA.md) */
    bool safe = kts_rdk_has(KTS_RDK_IDEMPOTENCE);
    log_clear();
    p = make_producer("");
    is_int(kts_producer_idempotent(p), safe, "idempotence: %s by default with librdkafka %s",
           safe ? "on" : "off", kts_rdk_version_str());
    ok(log_has(safe ? "enable.idempotence on" : "enable.idempotence off"),
       "idempotence: the start-up line says so");
    kts_producer_close(p, 1);
    p = make_producer("Property \"enable.idempotence\" \"false\"\n");
    ok(p != NULL && !kts_producer_idempotent(p), "idempotence: Property \"enable.idempotence\" "
                                                 "\"false\" turns it off");
    kts_producer_close(p, 1);
    log_clear();
    if (safe) {
        p = make_producer("Property \"acks\" \"1\"\n");
        ok(p != NULL && !kts_producer_idempotent(p) &&
               log_has("enable.idempotence is not turned on because Property \"acks\" is \"1\""),
           "idempotence: not defaulted with acks 1, and the notice says why");
    } else {
        p = make_producer("Property \"enable.idempotence\" \"true\"\n");
        ok(p != NULL && kts_producer_idempotent(p) &&
               log_has("enable.idempotence is on although") && log_has("#4438"),
           "idempotence: turned on by hand with librdkafka %s: done, with a warning naming #4438",
           kts_rdk_version_str());
    }
    kts_producer_close(p, 1);

    /* A librdkafka error is logged once: a refused connection is one error event, which
     * librdkafka also logs as a FAIL line; the producer logs the event only. */
    int port = closed_port();
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    const char *saved = bootstraps;
    bootstraps = addr;
    log_clear();
    p = make_producer("");
    bootstraps = saved;
    ok(p != NULL, "log once: producer created with bootstrap %s (no listener)", addr);
    sleep(3); /* librdkafka retries every second at most; identical errors it reports once */
    kts_producer_close(p, 0.2);
    char needle[256];
    snprintf(needle, sizeof(needle), "Connect to ipv4#%s failed", addr);
    int lines = log_count(needle);
    if (!ok(lines == 1, "log once: the refused connection is one log line, not two (%d)", lines))
        diag("log: %s", log_text);
    snprintf(needle, sizeof(needle),
             "write_kafka_ts plugin (metrics): Kafka: 127.0.0.1:%d/bootstrap: "
             "Connect to ipv4#%s failed",
             port, addr);
    ok(log_has(needle) && log_has("(_TRANSPORT)"),
       "log once: the line kept is the error event, with its name (_TRANSPORT)");

    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(host);
    kts_log_set_sink(NULL, NULL);
    free(log_text);
    return done_testing();
}
