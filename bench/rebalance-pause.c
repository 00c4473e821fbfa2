/* SPDX-License-Identifier: MIT */
/*
 * rebalance-pause: how long does a member joining a read_kafka_ts consumer group stop the
 * partitions, with eager, cooperative (cooperative-sticky) and KIP-848 (group.protocol
 * "consumer") rebalancing? Built on demand (make bench/rebalance-pause), run by hand:
 *
 *   bench/rebalance-pause -b BOOTSTRAP [-p PARTITIONS] [-m MEMBERS] [-r RATE] [-w SECONDS]
 *                         PROTOCOL...          (PROTOCOL: eager, cooperative, consumer)
 *
 * For each protocol: a fresh topic of P partitions (default 16), one series per partition,
 * produced at RATE value lists per second in all (default 1600); M-1 members (default 4 in all)
 * of a fresh group consume it through kts_consumer (the core of read_kafka_ts) into a writer
 * that confirms at once. Once every partition has flowed for 5 s, member M joins (T0). For W
 * seconds (default 30) after T0 every dispatched value's time of arrival is kept per
 * partition. Printed per protocol: the longest gap between two consecutive values of a
 * partition (the pause) over all partitions, the median of the partitions' longest gaps, how
 * many partitions paused longer than 1 s, "all flowing": the time from T0 until the end of the
 * last gap longer than 1 s (every partition flows again; 0: none paused that long), and for
 * comparison the longest gap of any partition in the 5 s before T0 (the usual jitter). A protocol
 * the linked librdkafka cannot do safely (docs/LIBRDKAFKA.md) is reported as skipped with the
 * reason.
 */
#include "kts_consumer.h"
#include "kts_log.h"
#include "kts_rdkver.h"

#include "build-config.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXP 256
#define MAXM 16
#define MAXTOK 65536

static const char *bootstrap;
static int nparts = 16, nmembers = 4, rate = 1600, watch_s = 30;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------ arrivals per partition */
static pthread_mutex_t arr_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t last_ns[MAXP], gap_ns[MAXP], gap_end_ns[MAXP], pre_gap_ns[MAXP], t0_ns;
static atomic_bool watching, pre_watching;

static void arrived(int p)
{
    if (p < 0 || p >= nparts)
        return;
    int64_t t = now_ns();
    pthread_mutex_lock(&arr_lock);
    if (atomic_load(&pre_watching) && last_ns[p] > 0 && t - last_ns[p] > pre_gap_ns[p])
        pre_gap_ns[p] = t - last_ns[p];
    if (atomic_load(&watching) && last_ns[p] > 0) {
        int64_t from = last_ns[p] > t0_ns ? last_ns[p] : t0_ns;
        if (t - from > gap_ns[p]) {
            gap_ns[p] = t - from;
            gap_end_ns[p] = t;
        }
    }
    last_ns[p] = t;
    pthread_mutex_unlock(&arr_lock);
}

/* ------------------------------------------------------------------ members */
struct member {
    struct kts_consumer *c;
    pthread_t run, writer;
    pthread_mutex_t lock;
    uint64_t tok[MAXTOK];
    size_t ntok;
    atomic_bool stop;
};

static int dispatch(const struct kts_vl *vl, uint64_t token, void *opaque)
{
    struct member *m = opaque;
    arrived(atoi(vl->plugin_instance + 1)); /* "pN" */
    pthread_mutex_lock(&m->lock);
    if (m->ntok < MAXTOK)
        m->tok[m->ntok++] = token;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static void *writer_main(void *arg)
{
    struct member *m = arg;
    static __thread uint64_t batch[MAXTOK];
    while (!atomic_load(&m->stop)) {
        pthread_mutex_lock(&m->lock);
        size_t n = m->ntok;
        memcpy(batch, m->tok, n * sizeof(batch[0]));
        m->ntok = 0;
        pthread_mutex_unlock(&m->lock);
        for (size_t i = 0; i < n; i++)
            kts_consumer_written(m->c, batch[i]);
        if (n == 0)
            usleep(1000);
    }
    return NULL;
}

static void *run_main(void *arg)
{
    kts_consumer_run(arg);
    return NULL;
}

static int member_start(struct member *m, const char *group, const char *topic,
                        const char *protocol, unsigned id)
{
    struct kts_consumer_config cfg = {0};
    kts_opt_defaults(kts_consumer_options, &cfg);
    cfg.group_id = strdup(group);
    kts_strv_push(&cfg.topics, topic);
    kts_strv_push(&cfg.typesdb, KTS_TYPESDB_DEFAULT);
    kts_strv_push(&cfg.properties, "bootstrap.servers");
    kts_strv_push(&cfg.properties, bootstrap);
    if (strcmp(protocol, "consumer") == 0) {
        kts_strv_push(&cfg.properties, "group.protocol");
        kts_strv_push(&cfg.properties, "consumer");
    } else {
        kts_strv_push(&cfg.properties, "partition.assignment.strategy");
        kts_strv_push(&cfg.properties, strcmp(protocol, "cooperative") == 0 ? "cooperative-sticky"
                                                                            : "range,roundrobin");
    }
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    struct kts_consumer_callbacks cb = {.dispatch = dispatch, .dispatch_opaque = m};
    char err[512];
    int rc = kts_consumer_create(&m->c, &cfg, &cb, id, err, sizeof(err));
    kts_consumer_config_free(&cfg);
    if (rc != 0) {
        fprintf(stderr, "rebalance-pause: member %u: %s\n", id, err);
        return rc;
    }
    pthread_create(&m->run, NULL, run_main, m->c);
    pthread_create(&m->writer, NULL, writer_main, m);
    return 0;
}

static void member_stop(struct member *m)
{
    kts_consumer_drain(m->c);
    pthread_join(m->run, NULL);
    kts_consumer_close(m->c);
    atomic_store(&m->stop, true);
    pthread_join(m->writer, NULL);
    kts_consumer_destroy(m->c);
}

/* ------------------------------------------------------------------ producer */
static atomic_bool producing;
static rd_kafka_t *prk;
static const char *ptopic;

static void *producer_main(void *arg)
{
    (void)arg;
    int64_t start = now_ns();
    long k = 0;
    while (atomic_load(&producing)) {
        int p = (int)(k % nparts);
        long i = k / nparts;
        char key[64], buf[512];
        snprintf(key, sizeof(key), "h/rb-p%d/gauge", p);
        snprintf(buf, sizeof(buf),
                 "{\"v\":1,\"host\":\"h\",\"plugin\":\"rb\",\"plugin_instance\":\"p%d\",\"type\":"
                 "\"gauge\",\"type_instance\":\"\",\"time\":%ld.%03ld,\"interval\":10,\"ds\":[{"
                 "\"name\":\"value\",\"type\":\"gauge\",\"value\":%ld}]}",
                 p, 1700000000 + i / 1000, i % 1000, i);
        rd_kafka_producev(prk, RD_KAFKA_V_TOPIC(ptopic), RD_KAFKA_V_PARTITION(p),
                          RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(buf, strlen(buf)),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        rd_kafka_poll(prk, 0);
        k++;
        int64_t due = start + k * (1000000000LL / rate);
        int64_t wait = due - now_ns();
        if (wait > 0)
            usleep((useconds_t)(wait / 1000));
    }
    rd_kafka_flush(prk, 10000);
    return NULL;
}

static int create_topic(const char *topic)
{
    char errstr[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, nparts, 1, errstr, sizeof(errstr));
    rd_kafka_queue_t *q = rd_kafka_queue_new(prk);
    rd_kafka_CreateTopics(prk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    int rc = -1;
    if (ev != NULL) {
        size_t n = 0;
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        const rd_kafka_topic_result_t **tr =
            res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
        rc = (tr != NULL && n == 1 && rd_kafka_topic_result_error(tr[0]) == 0) ? 0 : -1;
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    sleep(3);
    return rc;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void quiet(int level, const char *msg, void *opaque)
{
    (void)opaque;
    if (level <= KTS_LOG_WARNING && getenv("KTS_BENCH_VERBOSE"))
        fprintf(stderr, "%s\n", msg);
}

static void one(const char *protocol)
{
    enum kts_rdk_feature need = KTS_RDK_NFEATURES;
    if (strcmp(protocol, "cooperative") == 0)
        need = KTS_RDK_COOPERATIVE;
    else if (strcmp(protocol, "consumer") == 0)
        need = KTS_RDK_KIP848;
    else if (strcmp(protocol, "eager") != 0) {
        fprintf(stderr,
                "rebalance-pause: protocol '%s': allowed are eager, cooperative, consumer\n",
                protocol);
        exit(2);
    }
    char lim[768];
    if (need != KTS_RDK_NFEATURES && kts_rdk_limit(need, lim, sizeof(lim)) != NULL) {
        printf("%-12s skipped: %s\n", protocol, lim);
        return;
    }
    char topic[128], group[160];
    snprintf(topic, sizeof(topic), "rb-%s-%d-%ld", protocol, (int)getpid(), (long)time(NULL));
    snprintf(group, sizeof(group), "g-%s", topic);
    if (create_topic(topic) != 0) {
        printf("%-12s failed: cannot create topic %s\n", protocol, topic);
        return;
    }
    memset(last_ns, 0, sizeof(last_ns));
    memset(gap_ns, 0, sizeof(gap_ns));
    memset(gap_end_ns, 0, sizeof(gap_end_ns));
    memset(pre_gap_ns, 0, sizeof(pre_gap_ns));
    atomic_store(&watching, false);
    atomic_store(&pre_watching, false);
    ptopic = topic;
    atomic_store(&producing, true);
    pthread_t pt;
    pthread_create(&pt, NULL, producer_main, NULL);
    static struct member m[MAXM];
    int started = 0;
    for (; started < nmembers - 1; started++)
        if (member_start(&m[started], group, topic, protocol, (unsigned)started + 1) != 0)
            break;
    /* every partition flowing for 5 s */
    int64_t steady_since = 0, deadline = now_ns() + 120 * 1000000000LL;
    while (started == nmembers - 1 && now_ns() < deadline) {
        int fresh = 0;
        int64_t t = now_ns();
        pthread_mutex_lock(&arr_lock);
        for (int p = 0; p < nparts; p++)
            fresh += last_ns[p] > 0 && t - last_ns[p] < 500000000LL;
        pthread_mutex_unlock(&arr_lock);
        if (fresh < nparts) {
            steady_since = 0;
            atomic_store(&pre_watching, false);
            pthread_mutex_lock(&arr_lock);
            memset(pre_gap_ns, 0, sizeof(pre_gap_ns));
            pthread_mutex_unlock(&arr_lock);
        } else if (steady_since == 0) {
            steady_since = t;
            atomic_store(&pre_watching, true);
        } else if (t - steady_since > 5 * 1000000000LL) {
            break;
        }
        usleep(100000);
    }
    bool ok = started == nmembers - 1 && now_ns() < deadline;
    if (ok) {
        pthread_mutex_lock(&arr_lock);
        t0_ns = now_ns();
        atomic_store(&pre_watching, false);
        atomic_store(&watching, true);
        pthread_mutex_unlock(&arr_lock);
        ok = member_start(&m[started], group, topic, protocol, (unsigned)started + 1) == 0;
        if (ok)
            started++;
        sleep((unsigned)watch_s);
        atomic_store(&watching, false);
    }
    int64_t now = now_ns(), gaps[MAXP], worst = 0, all_end = 0, pre = 0;
    int over1 = 0;
    pthread_mutex_lock(&arr_lock);
    for (int p = 0; p < nparts; p++) {
        /* a partition silent since its last value counts up to the end of the watch */
        int64_t tail = last_ns[p] > t0_ns ? now - last_ns[p] : now - t0_ns;
        if (tail > gap_ns[p] && tail > 1000000000LL) {
            gap_ns[p] = tail;
            gap_end_ns[p] = now;
        }
        gaps[p] = gap_ns[p];
        worst = gaps[p] > worst ? gaps[p] : worst;
        over1 += gaps[p] > 1000000000LL;
        if (gaps[p] > 1000000000LL && gap_end_ns[p] - t0_ns > all_end)
            all_end = gap_end_ns[p] - t0_ns;
        pre = pre_gap_ns[p] > pre ? pre_gap_ns[p] : pre;
    }
    pthread_mutex_unlock(&arr_lock);
    qsort(gaps, (size_t)nparts, sizeof(gaps[0]), cmp64);
    atomic_store(&producing, false);
    pthread_join(pt, NULL);
    for (int i = 0; i < started; i++)
        member_stop(&m[i]);
    if (!ok)
        printf("%-12s failed: the first %d members did not get every partition flowing\n", protocol,
               nmembers - 1);
    else
        printf(
            "%-12s longest pause %6.2f s, median of the partitions' longest %6.2f s, "
            "paused > 1 s: %2d of %d, all flowing %6.2f s after the join (before it: longest gap "
            "%.2f s)\n",
            protocol, worst / 1e9, gaps[nparts / 2] / 1e9, over1, nparts, all_end / 1e9, pre / 1e9);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "b:p:m:r:w:")) != -1) {
        switch (c) {
        case 'b':
            bootstrap = optarg;
            break;
        case 'p':
            nparts = atoi(optarg);
            break;
        case 'm':
            nmembers = atoi(optarg);
            break;
        case 'r':
            rate = atoi(optarg);
            break;
        case 'w':
            watch_s = atoi(optarg);
            break;
        default:
            goto usage;
        }
    }
    if (bootstrap == NULL || optind == argc || nparts < 1 || nparts > MAXP || nmembers < 2 ||
        nmembers > MAXM || rate < 1 || watch_s < 1)
        goto usage;
    kts_log_set_sink(quiet, NULL);
    char errstr[256];
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    rd_kafka_conf_set(pc, "bootstrap.servers", bootstrap, errstr, sizeof(errstr));
    rd_kafka_conf_set(pc, "linger.ms", "5", errstr, sizeof(errstr));
    prk = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof(errstr));
    if (prk == NULL) {
        fprintf(stderr, "rebalance-pause: producer: %s\n", errstr);
        return 1;
    }
    printf("rebalance-pause: librdkafka %s, %d partitions, %d members (the last joins), %d value "
           "lists/s, %d s watched\n",
           kts_rdk_version_str(), nparts, nmembers, rate, watch_s);
    for (int i = optind; i < argc; i++)
        one(argv[i]);
    rd_kafka_destroy(prk);
    return 0;
usage:
    fprintf(stderr, "usage: rebalance-pause -b BOOTSTRAP [-p PARTITIONS] [-m MEMBERS] [-r RATE] "
                    "[-w SECONDS] eager|cooperative|consumer...\n");
    return 2;
}
