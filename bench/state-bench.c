/* SPDX-License-Identifier: MIT */
/*
 * state-bench: what does StateTopic (read_kafka_ts, kts_consumer.h 12–17) cost? Built on demand
 * (make bench/state-bench), run by hand; figures in docs/PERFORMANCE.md ("StateTopic").
 *
 *   bench/state-bench -c PIPELINE.conf [-m MB] [-b BOOTSTRAP] [-n SERIES] [-r ROUNDS] checkpoint
 *   bench/state-bench -c PIPELINE.conf -b BOOTSTRAP -n SERIES [-p PARTITIONS] -t TOPIC fill
 *   bench/state-bench -c PIPELINE.conf -b BOOTSTRAP -t TOPIC raw
 *   bench/state-bench -c PIPELINE.conf -b BOOTSTRAP -t TOPIC restore
 *   bench/state-bench -c PIPELINE.conf -b BOOTSTRAP -n SERIES [-r ROUNDS] [-R RATE] [-s SECONDS]
 *                     [-i COMMITINTERVAL] [-I STATEINTERVAL] -t TOPIC live
 *
 * The pipeline is the first <Pipeline> block of PIPELINE.conf (e.g. contrib/pipelines/spikes.conf).
 * Series "h/p-sK/gauge" (K = 0..SERIES-1) get one value every 10 s of event time; series K is on
 * partition K % PARTITIONS (default 4, kafka-local's default). -m MB sets the pipeline's
 * MemoryLimit (default 1024 MB, some 500,000 series of spikes.conf; not in the fingerprint).
 * -P NAME=VALUE (repeatable) adds a librdkafka property to the clients the bench makes itself
 * (the checkpoint producer, the raw reader), for experiments.
 *
 *  checkpoint  builds SERIES series (30 values each), then ROUNDS (default 5) times: one value per
 *              series (CPU per value of kts_pipeline_process, position set as the consumer does),
 *              then one changed-only export of every partition: the checkpoint. Printed per round:
 *              CPU µs per value, CPU ms per checkpoint (export alone into a counting callback),
 *              and with -b the same export produced to a fresh compacted topic (producer as the
 *              consumer's: acks all, lz4 none) and flushed, CPU of the whole process (librdkafka's
 *              threads included); bytes per record (key + value). Medians at the end.
 *  fill        produces the checkpoint of SERIES series (3 values each) to TOPIC (created
 *              compacted with PARTITIONS partitions) and creates TOPIC-in (same partitions) with
 *              5 value lists of a series "in-P" per partition P (not in the state: they are
 *              dispatched after the restore).
 *  raw         reads every record of TOPIC (no group) with the restore consumer's settings, then
 *              reads them again and imports each into a fresh pipeline: series/s and MB/s of both.
 *  restore     a kts_consumer (the core of read_kafka_ts) with the pipeline, Topic TOPIC-in and
 *              StateTopic TOPIC, fresh group: time from create until every partition's state is
 *              installed and until the first dispatch (the first partition restored), the restore
 *              time per partition (assignment to resume, the consumer's counter), records
 *              restored, series/s and MB/s, peak RSS.
 *  live        the consumer's CPU per value with and without StateTopic, paired: a child process
 *              produces RATE value lists per second (default 10,000) over SERIES series into
 *              TOPIC-live; ROUNDS times, a kts_consumer with the pipeline (CommitInterval -i,
 * default 1 s: every series changes about RATE/SERIES times per checkpoint, as SERIES series
 *              changing every 10 s do with the default CommitInterval 10 when RATE = SERIES / 10
 *              × 10; StateInterval -I, default 0: a checkpoint at every commit point, as
 *              StateInterval <= CommitInterval; read_kafka_ts's default is 60, i.e. -i 10 -I 60,
 *              then make SECONDS a multiple of 60 so that the window holds whole checkpoint
 *              periods) consumes for SECONDS (default 20) without StateTopic, then with StateTopic
 *              TOPIC-live-state (fresh groups, StartPosition latest), a writer thread confirming
 *              every dispatched value at once. CPU of this process (consumer, writer, librdkafka
 *              threads, the state producer) per value consumed; the median ratio.
 */
#include "kts_conf.h"
#include "kts_consumer.h"
#include "kts_log.h"
#include "kts_pipeline.h"
#include "kts_pipeline_state.h"
#include "kts_plugin_pipelines.h"

#include "build-config.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *bootstrap, *conffile, *topic;
static long nseries = 10000;
static int nparts = 4, rounds = 5;
static long memlimit_mb; /* -m: MemoryLimit put into the <Pipeline> block (0: the file's) */
static struct kts_conf *root;
static const char *extra[16]; /* -P NAME=VALUE: extra librdkafka properties of our clients */
static int nextra;

static double now_s(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}
#define WALL() now_s(CLOCK_MONOTONIC)
#define CPU() now_s(CLOCK_PROCESS_CPUTIME_ID)

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = atol(line + 6);
    if (f != NULL)
        fclose(f);
    return kb;
}

static void die(const char *what)
{
    fprintf(stderr, "state-bench: %s\n", what);
    exit(1);
}

/* ------------------------------------------------------------------ pipeline */

static struct kts_pipeline *pipeline_new(void)
{
    char err[512];
    for (int i = 0; i < root->children_num; i++)
        if (strcasecmp(root->children[i].key, "Pipeline") == 0) {
            struct kts_pipeline *p = NULL;
            if (kts_pipeline_config(&root->children[i], "state-bench", &p, err, sizeof(err)) < 0)
                die(err);
            return p;
        }
    die("no <Pipeline> block");
    return NULL;
}

static int emit_none(const struct kts_vl *out, const uint16_t *flags, void *opaque)
{
    (void)out, (void)flags, (void)opaque;
    return 0;
}

/* One value of every series at step k (event time 10 s apart); a daily wave plus noise. */
static void feed_round(struct kts_pipeline *p, long k)
{
    struct kts_ds ds = {.name = "value", .type = KTS_DS_GAUGE};
    struct kts_vl vl = {.host = "h", .plugin = "p", .type = "gauge", .ds_len = 1, .ds = &ds};
    vl.time = KTS_TIME_FROM_S(1700000000 + 10 * k);
    vl.interval = KTS_TIME_FROM_S(10);
    for (long s = 0; s < nseries; s++) {
        snprintf(vl.plugin_instance, sizeof(vl.plugin_instance), "s%ld", s);
        ds.value.gauge = 100 + 10 * ((k * 7 + s) % 97) / 97.0 + (double)((s * 31 + k) % 13);
        kts_pipeline_set_position(p, (int32_t)(s % nparts), k);
        kts_pipeline_process(p, &vl, 1, emit_none, NULL);
    }
}

/* ------------------------------------------------------------------ Kafka helpers */

static rd_kafka_t *client(rd_kafka_type_t type, const char *const *kv)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) != 0)
        die(err);
    for (; kv != NULL && kv[0] != NULL; kv += 2)
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof(err)) != 0)
            die(err);
    for (int i = 0; i < nextra; i++) {
        char kv2[256];
        snprintf(kv2, sizeof(kv2), "%s", extra[i]);
        char *eq = strchr(kv2, '=');
        if (eq == NULL)
            die("-P wants NAME=VALUE");
        *eq = '\0';
        if (rd_kafka_conf_set(conf, kv2, eq + 1, err, sizeof(err)) != 0)
            die(err);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (rk == NULL)
        die(err);
    return rk;
}

/* The state producer's settings (kts_consumer_state.c). */
static const char *const producer_kv[] = {"acks",
                                          "all",
                                          "message.timeout.ms",
                                          "30000",
                                          "queue.buffering.max.messages",
                                          "1000000",
                                          "queue.buffering.max.kbytes",
                                          "2097151",
                                          NULL};

static void create_topic(rd_kafka_t *rk, const char *name, bool compact)
{
    char err[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, nparts, 1, err, sizeof(err));
    if (compact)
        rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    size_t n = 0;
    const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
    if (n != 1 || (rd_kafka_topic_result_error(tr[0]) != RD_KAFKA_RESP_ERR_NO_ERROR &&
                   rd_kafka_topic_result_error(tr[0]) != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS))
        die("cannot create a topic");
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
}

/* ------------------------------------------------------------------ checkpoint */

struct sink {
    rd_kafka_t *prk; /* NULL: count only */
    const char *topic;
    uint64_t records, bytes;
};

static int put_record(const void *key, size_t klen, const void *rec, size_t rlen, int32_t partition,
                      void *opaque)
{
    struct sink *s = opaque;
    s->records++;
    s->bytes += klen + rlen;
    if (s->prk == NULL)
        return 0;
    while (rd_kafka_producev(s->prk, RD_KAFKA_V_TOPIC(s->topic), RD_KAFKA_V_PARTITION(partition),
                             RD_KAFKA_V_KEY(key, klen), RD_KAFKA_V_VALUE((void *)rec, rlen),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(s->prk, 10);
    rd_kafka_poll(s->prk, 0);
    return 0;
}

/* A changed-only export of every partition into `s` (flushed); returns the CPU seconds. */
static double checkpoint(struct kts_pipeline *p, struct sink *s)
{
    double c0 = CPU();
    for (int part = 0; part < nparts; part++)
        if (kts_pipeline_state_export(p, part, true, put_record, s) != 0)
            die("export failed");
    if (s->prk != NULL && rd_kafka_flush(s->prk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        die("flush timed out");
    return CPU() - c0;
}

static int cmd_checkpoint(void)
{
    struct kts_pipeline *p = pipeline_new();
    double v[64], e[64], k[64], b = 0;
    char name[128];
    snprintf(name, sizeof(name), "state-bench-ck-%ld", (long)getpid());
    struct sink cnt = {0}, kaf = {.topic = name};
    if (bootstrap != NULL) {
        kaf.prk = client(RD_KAFKA_PRODUCER, producer_kv);
        create_topic(kaf.prk, name, true);
    }
    long step = 0;
    for (; step < 30; step++)
        feed_round(p, step);
    checkpoint(p, &cnt); /* everything clean */
    printf("round  cpu_us_per_value  export_ms  export+produce_ms  bytes_per_record\n");
    for (int r = 0; r < rounds && r < 64; r++) {
        double c0 = CPU();
        feed_round(p, step++);
        v[r] = (CPU() - c0) / (double)nseries * 1e6;
        cnt.records = cnt.bytes = 0;
        e[r] = checkpoint(p, &cnt) * 1e3;
        k[r] = -1;
        if (kaf.prk != NULL) {
            feed_round(p, step++); /* changed again */
            k[r] = checkpoint(p, &kaf) * 1e3;
        }
        b = (double)cnt.bytes / (double)cnt.records;
        printf("%5d  %16.3f  %9.2f  %17.2f  %16.0f\n", r + 1, v[r], e[r], k[r], b);
    }
    double mv = median(v, rounds), me = median(e, rounds), mk = median(k, rounds);
    printf("median %ld series: %.3f us/value processing; checkpoint of all series: export "
           "%.2f ms (%.3f us/series), export+produce %.2f ms (%.3f us/series); %.0f bytes/record\n",
           nseries, mv, me, me * 1e3 / nseries, mk, mk * 1e3 / nseries, b);
    if (kaf.prk != NULL)
        rd_kafka_destroy(kaf.prk);
    kts_pipeline_destroy(p);
    return 0;
}

/* ------------------------------------------------------------------ fill */

static void produce_input(rd_kafka_t *prk, const char *in)
{
    for (int part = 0; part < nparts; part++)
        for (int k = 0; k < 5; k++) {
            char buf[512];
            int n =
                snprintf(buf, sizeof(buf),
                         "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"in-%d\","
                         "\"type\":\"gauge\",\"type_instance\":\"\",\"time\":%d,\"interval\":"
                         "10,\"ds\":[{\"name\":\"value\",\"type\":\"gauge\",\"value\":%d}]}",
                         part, 1700000000 + 10 * k, k);
            rd_kafka_producev(prk, RD_KAFKA_V_TOPIC(in), RD_KAFKA_V_PARTITION(part),
                              RD_KAFKA_V_VALUE(buf, (size_t)n),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        }
}

static int cmd_fill(void)
{
    struct kts_pipeline *p = pipeline_new();
    double w0 = WALL();
    for (long k = 0; k < 3; k++)
        feed_round(p, k);
    double w1 = WALL();
    struct sink s = {.topic = topic, .prk = client(RD_KAFKA_PRODUCER, producer_kv)};
    create_topic(s.prk, topic, true);
    char in[256];
    snprintf(in, sizeof(in), "%s-in", topic);
    create_topic(s.prk, in, false);
    checkpoint(p, &s);
    produce_input(s.prk, in);
    rd_kafka_flush(s.prk, 60000);
    double w2 = WALL();
    printf("fill: %ld series (%.1f s to build), %llu records, %.1f MB, %.0f bytes/record, "
           "produced in %.1f s (%.0f records/s); peak RSS %ld MB\n",
           nseries, w1 - w0, (unsigned long long)s.records, s.bytes / 1e6,
           (double)s.bytes / (double)s.records, w2 - w1, s.records / (w2 - w1),
           peak_rss_kb() / 1024);
    rd_kafka_destroy(s.prk);
    kts_pipeline_destroy(p);
    return 0;
}

/* ------------------------------------------------------------------ raw */

/* The restore reader's settings (kts_consumer_state.c client_new for the state consumer). */
static const char *const reader_kv[] = {"group.id", "state-bench-raw",      "enable.auto.commit",
                                        "false",    "enable.partition.eof", "true",
                                        NULL};

/* Read every record of `topic` (all partitions, from the start); import into `p` if not NULL. */
static void read_all(struct kts_pipeline *p, uint64_t *records, uint64_t *bytes)
{
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, reader_kv);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
    for (int part = 0; part < nparts; part++)
        rd_kafka_topic_partition_list_add(l, topic, part)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
    int eof = 0;
    *records = *bytes = 0;
    rd_kafka_message_t *batch[1000];
    while (eof < nparts) {
        ssize_t n = rd_kafka_consume_batch_queue(q, 100, batch, 1000);
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = batch[i];
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                eof++;
            else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                (*records)++;
                *bytes += m->key_len + m->len;
                if (p != NULL &&
                    kts_pipeline_state_import(p, m->key, m->key_len, m->payload, m->len, NULL) != 0)
                    die("import refused");
            }
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static int cmd_raw(void)
{
    uint64_t r = 0, b = 0;
    double w0 = WALL();
    read_all(NULL, &r, &b);
    double w1 = WALL();
    printf("raw read:     %llu records, %.1f MB in %.2f s: %.0f series/s, %.1f MB/s\n",
           (unsigned long long)r, b / 1e6, w1 - w0, r / (w1 - w0), b / 1e6 / (w1 - w0));
    struct kts_pipeline *p = pipeline_new();
    w0 = WALL();
    double c0 = CPU();
    read_all(p, &r, &b);
    w1 = WALL();
    double c1 = CPU();
    printf("read+import:  %llu records, %.1f MB in %.2f s: %.0f series/s, %.1f MB/s; CPU %.2f s "
           "(%.2f us/record); peak RSS %ld MB\n",
           (unsigned long long)r, b / 1e6, w1 - w0, r / (w1 - w0), b / 1e6 / (w1 - w0), c1 - c0,
           (c1 - c0) / (double)r * 1e6, peak_rss_kb() / 1024);
    kts_pipeline_destroy(p);
    return 0;
}

/* ------------------------------------------------------------------ restore */

static atomic_int_fast64_t first_dispatch_ns;
static atomic_uint_fast64_t restored_bytes;
static double t_start;

static int on_dispatch(const struct kts_vl *vl, uint64_t token, void *opaque)
{
    (void)vl, (void)token, (void)opaque;
    int_fast64_t zero = 0;
    atomic_compare_exchange_strong(&first_dispatch_ns, &zero,
                                   (int_fast64_t)((WALL() - t_start) * 1e9));
    return 0;
}

static const struct kts_consumer_state_ops *real_ops = &kts_plugin_pipelines_state_ops;

static int counting_restore(void *ctx, int32_t partition, const void *key, size_t klen,
                            const void *val, size_t vlen)
{
    atomic_fetch_add(&restored_bytes, klen + vlen);
    return real_ops->restore(ctx, partition, key, klen, val, vlen);
}

static void restore_config(struct kts_consumer_config *cfg, const char *in)
{
    memset(cfg, 0, sizeof(*cfg));
    kts_opt_defaults(kts_consumer_options, cfg);
    char group[128];
    snprintf(group, sizeof(group), "state-bench-%ld", (long)getpid());
    cfg->group_id = strdup(group);
    cfg->start_position = KTS_START_EARLIEST;
    kts_strv_push(&cfg->topics, in);
    cfg->state_topic = strdup(topic);
    kts_strv_push(&cfg->properties, "bootstrap.servers");
    kts_strv_push(&cfg->properties, bootstrap);
    kts_strv_push(&cfg->typesdb, KTS_TYPESDB_DEFAULT);
    cfg->drain_timeout = 1;
    cfg->close_timeout = 5;
}

static void *run_thread(void *c)
{
    kts_consumer_run(c);
    return NULL;
}

static int cmd_restore(void)
{
    char in[256], err[512];
    snprintf(in, sizeof(in), "%s-in", topic);
    struct kts_plugin_pipelines *ps = NULL;
    struct kts_strv tdb = {0};
    kts_strv_push(&tdb, KTS_TYPESDB_DEFAULT);
    if (kts_plugin_pipelines_config(root, &tdb, "state-bench", &ps, err, sizeof(err)) < 0)
        die(err);
    struct kts_consumer_state_ops ops = *real_ops;
    ops.restore = counting_restore;
    struct kts_consumer_config cfg;
    restore_config(&cfg, in);
    struct kts_consumer_callbacks cb = {.dispatch = on_dispatch,
                                        .pipeline = kts_plugin_pipelines_process,
                                        .pipeline_opaque = ps,
                                        .commit_interval = 5,
                                        .state = &ops,
                                        .state_ctx = ps};
    struct kts_consumer *c = NULL;
    t_start = WALL();
    double c0 = CPU();
    if (kts_consumer_create(&c, &cfg, &cb, 1, err, sizeof(err)) < 0)
        die(err);
    pthread_t t;
    pthread_create(&t, NULL, run_thread, c);
    struct kts_consumer_stats st;
    double all = 0; /* every partition's state installed */
    for (;;) {
        kts_consumer_stats(c, &st);
        if (all == 0 && st.state_partitions_restored >= (uint64_t)nparts)
            all = WALL() - t_start;
        if ((all > 0 && atomic_load(&first_dispatch_ns) != 0) || WALL() - t_start > 600)
            break;
        usleep(2000);
    }
    double first = atomic_load(&first_dispatch_ns) / 1e9, c1 = CPU();
    double per_part = st.state_restore_ns / 1e9 / (st.state_partitions_restored ?: 1);
    double b = (double)atomic_load(&restored_bytes);
    printf("restore: %llu records (%.1f MB) over %llu partitions; create -> all restored %.2f s, "
           "-> first dispatch %.2f s; assignment -> resume %.2f s per partition (mean); %.0f "
           "series/s, %.1f MB/s (over create -> all restored); CPU %.2f s; peak RSS %ld MB\n",
           (unsigned long long)st.state_restored, b / 1e6,
           (unsigned long long)st.state_partitions_restored, all, first, per_part,
           st.state_restored / all, b / 1e6 / all, c1 - c0, peak_rss_kb() / 1024);
    kts_consumer_drain(c);
    pthread_join(t, NULL);
    kts_consumer_close(c);
    kts_consumer_destroy(c);
    kts_consumer_config_free(&cfg);
    kts_plugin_pipelines_destroy(ps);
    kts_strv_free(&tdb);
    return 0;
}

/* ------------------------------------------------------------------ live */

static long rate = 10000;
static int live_s = 20;
static double live_interval = 1;   /* -i: CommitInterval of the live runs */
static double live_state_interval; /* -I: StateInterval of the live runs (0: every commit point) */

/* The child: RATE value lists per second over the series, round robin, until killed. */
static void live_producer(const char *in)
{
    rd_kafka_t *prk = client(RD_KAFKA_PRODUCER, NULL);
    double t0 = WALL();
    for (long i = 0;; i++) {
        long s = i % nseries, k = i / nseries;
        char buf[512];
        int n = snprintf(buf, sizeof(buf),
                         "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"s%ld\","
                         "\"type\":\"gauge\",\"type_instance\":\"\",\"time\":%ld,\"interval\":"
                         "10,\"ds\":[{\"name\":\"value\",\"type\":\"gauge\",\"value\":%ld}]}",
                         s, 1700000000 + 10 * k, (s * 31 + k) % 13);
        rd_kafka_producev(prk, RD_KAFKA_V_TOPIC(in), RD_KAFKA_V_PARTITION((int32_t)(s % nparts)),
                          RD_KAFKA_V_VALUE(buf, (size_t)n),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        rd_kafka_poll(prk, 0);
        double ahead = (double)(i + 1) / (double)rate - (WALL() - t0);
        if (ahead > 0.001)
            usleep((useconds_t)(ahead * 1e6));
    }
}

struct tokens {
    pthread_mutex_t lock;
    uint64_t *v;
    size_t n, cap;
    struct kts_consumer *c;
    atomic_bool stop;
};

static int live_dispatch(const struct kts_vl *vl, uint64_t token, void *opaque)
{
    struct tokens *t = opaque;
    (void)vl;
    pthread_mutex_lock(&t->lock);
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 65536;
        t->v = realloc(t->v, t->cap * sizeof(*t->v));
    }
    t->v[t->n++] = token;
    pthread_mutex_unlock(&t->lock);
    return 0;
}

static void *live_writer(void *arg)
{
    struct tokens *t = arg;
    uint64_t *batch = NULL;
    size_t cap = 0;
    while (!atomic_load(&t->stop)) {
        pthread_mutex_lock(&t->lock);
        size_t n = t->n;
        if (n > cap)
            batch = realloc(batch, (cap = t->cap) * sizeof(*batch));
        memcpy(batch, t->v, n * sizeof(*batch));
        t->n = 0;
        pthread_mutex_unlock(&t->lock);
        for (size_t i = 0; i < n; i++)
            kts_consumer_written(t->c, batch[i]);
        usleep(1000);
    }
    free(batch);
    return NULL;
}

/* One consumer run of live_s seconds; returns CPU µs per value consumed. */
static double live_run(const char *in, const char *state, int run)
{
    char err[512];
    struct kts_plugin_pipelines *ps = NULL;
    struct kts_strv tdb = {0};
    kts_strv_push(&tdb, KTS_TYPESDB_DEFAULT);
    if (kts_plugin_pipelines_config(root, &tdb, "state-bench", &ps, err, sizeof(err)) < 0)
        die(err);
    struct kts_consumer_config cfg;
    restore_config(&cfg, in);
    free(cfg.group_id);
    snprintf(err, sizeof(err), "state-bench-live-%ld-%d-%s", (long)getpid(), run,
             state ? "s" : "n");
    cfg.group_id = strdup(err);
    free(cfg.state_topic);
    cfg.state_topic = state ? strdup(state) : NULL;
    cfg.start_position = KTS_START_LATEST;
    struct tokens tk = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct kts_consumer_callbacks cb = {.dispatch = live_dispatch,
                                        .dispatch_opaque = &tk,
                                        .pipeline = kts_plugin_pipelines_process,
                                        .pipeline_opaque = ps,
                                        .commit_interval = live_interval,
                                        .state_interval = live_state_interval,
                                        .state = state ? real_ops : NULL,
                                        .state_ctx = state ? ps : NULL};
    if (kts_consumer_create(&tk.c, &cfg, &cb, 1, err, sizeof(err)) < 0)
        die(err);
    pthread_t rt, wt;
    pthread_create(&rt, NULL, run_thread, tk.c);
    pthread_create(&wt, NULL, live_writer, &tk);
    sleep(5); /* group join, first fetch */
    struct kts_consumer_stats s0, s1;
    struct rusage ru0, ru1;
    kts_consumer_stats(tk.c, &s0);
    getrusage(RUSAGE_SELF, &ru0);
    double c0 = CPU();
    sleep((unsigned)live_s);
    double c1 = CPU();
    getrusage(RUSAGE_SELF, &ru1);
    kts_consumer_stats(tk.c, &s1);
    double v = (double)(s1.values - s0.values);
    double us = (c1 - c0) / v * 1e6;
    double sys = (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    printf("run %d %-13s %8.0f values/s  %6.3f us CPU/value (system %.3f)  checkpoints %llu  "
           "records %llu (%.1f MB)  minor faults %ld  context switches %ld\n",
           run, state ? "StateTopic" : "no StateTopic", v / live_s, us, sys / v * 1e6,
           (unsigned long long)(s1.state_checkpoints - s0.state_checkpoints),
           (unsigned long long)(s1.state_records - s0.state_records),
           (double)(s1.state_bytes - s0.state_bytes) / 1e6, ru1.ru_minflt - ru0.ru_minflt,
           (ru1.ru_nvcsw - ru0.ru_nvcsw) + (ru1.ru_nivcsw - ru0.ru_nivcsw));
    kts_consumer_drain(tk.c);
    pthread_join(rt, NULL);
    kts_consumer_close(tk.c);
    atomic_store(&tk.stop, true);
    pthread_join(wt, NULL);
    kts_consumer_destroy(tk.c);
    kts_consumer_config_free(&cfg);
    kts_plugin_pipelines_destroy(ps);
    kts_strv_free(&tdb);
    free(tk.v);
    return us;
}

static int cmd_live(void)
{
    char in[256], state[256];
    snprintf(in, sizeof(in), "%s-live", topic);
    snprintf(state, sizeof(state), "%s-live-state", topic);
    rd_kafka_t *admin = client(RD_KAFKA_PRODUCER, NULL);
    create_topic(admin, in, false);
    rd_kafka_destroy(admin);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        live_producer(in);
        _exit(0);
    }
    double no[64], st[64], ratio[64];
    for (int r = 0; r < rounds && r < 64; r++) {
        no[r] = live_run(in, NULL, r + 1);
        st[r] = live_run(in, state, r + 1);
        ratio[r] = st[r] / no[r] - 1;
        fflush(stdout);
    }
    kill(child, SIGTERM);
    waitpid(child, NULL, 0);
    printf("median over %d pairs: %.3f us/value without StateTopic, %.3f with, +%.1f %% "
           "(median of the pairs' ratios)\n",
           rounds, median(no, rounds), median(st, rounds), 100 * median(ratio, rounds));
    return 0;
}

/* ------------------------------------------------------------------ main */

/* Parse `path` into `root`, with "MemoryLimit memlimit_mb" in the first <Pipeline> block. */
static void load_config(const char *path)
{
    char err[512];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("cannot open the configuration");
    static char text[1 << 20], out[(1 << 20) + 64];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    char *end = strstr(text, "</Pipeline>");
    if (memlimit_mb > 0 && end != NULL) {
        int k = snprintf(out, sizeof(out), "%.*sMemoryLimit %ld\n%s", (int)(end - text), text,
                         memlimit_mb, end);
        n = (size_t)k < sizeof(out) ? (size_t)k : sizeof(out) - 1;
    } else
        memcpy(out, text, n + 1);
    if (kts_conf_parse(out, n, path, &root, err, sizeof(err)) < 0)
        die(err);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "b:c:i:I:m:n:p:P:r:R:s:t:")) != -1) {
        switch (opt) {
        case 'b':
            bootstrap = optarg;
            break;
        case 'c':
            conffile = optarg;
            break;
        case 'i':
            live_interval = atof(optarg);
            break;
        case 'I':
            live_state_interval = atof(optarg);
            break;
        case 'm':
            memlimit_mb = atol(optarg);
            break;
        case 'n':
            nseries = atol(optarg);
            break;
        case 'p':
            nparts = atoi(optarg);
            break;
        case 'P':
            if (nextra < 16)
                extra[nextra++] = optarg;
            break;
        case 'r':
            rounds = atoi(optarg);
            break;
        case 'R':
            rate = atol(optarg);
            break;
        case 's':
            live_s = atoi(optarg);
            break;
        case 't':
            topic = optarg;
            break;
        default:
            return 2;
        }
    }
    if (optind != argc - 1 || conffile == NULL || nseries <= 0 || nparts <= 0 || rounds <= 0) {
        fprintf(stderr,
                "usage: state-bench -c CONF [-m MB] [-b BOOTSTRAP] [-n SERIES] [-p PARTITIONS] "
                "[-r ROUNDS] [-t TOPIC] checkpoint|fill|raw|restore|live\n");
        return 2;
    }
    load_config(conffile);
    const char *cmd = argv[optind];
    if (strcmp(cmd, "checkpoint") == 0)
        return cmd_checkpoint();
    if (bootstrap == NULL || topic == NULL)
        die("fill, raw and restore need -b and -t");
    if (strcmp(cmd, "fill") == 0)
        return cmd_fill();
    if (strcmp(cmd, "raw") == 0)
        return cmd_raw();
    if (strcmp(cmd, "restore") == 0)
        return cmd_restore();
    if (strcmp(cmd, "live") == 0)
        return cmd_live();
    die("unknown command");
    return 2;
}
