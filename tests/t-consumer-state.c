/* SPDX-License-Identifier: MIT */
/*
 * kts_consumer with a state topic (src/kafka/kts_consumer.h 12–17) against the real broker
 * (KTS_BOOTSTRAP, as make check provides). A toy pipeline keeps per-series running sums of the
 * values with the position of the last value it absorbed, checkpoints them as "sum count pos"
 * records and skips a value whose position is not after the stored one (the absorbed rule).
 * A consumer killed with SIGKILL (a child process: this program run with "child") and a new one
 * that restores must end with every sum exact: no value counted twice, none missed. The
 * partition move runs with eager assignment and again with cooperative-sticky (incremental),
 * where the linked librdkafka allows it (kts_rdkver.h; a TAP skip naming the limit elsewhere).
 * With a state interval of 5 commit points, a partition is checkpointed at every 5th one.
 */
#include "tap.h"

#include "build-config.h"

#include "kts_consumer.h"
#include "kts_log.h"
#include "kts_rdkver.h"
#include "kts_state_topic.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NSER 4 /* series s0..s3, series i on partition i % 2 */
#define NPART 2
#define NVAL 300 /* values per series and round */

static const char *bootstrap;
static char sfx[32];     /* makes names unique per run: phases of ./run-tests share one broker */
static rd_kafka_t *prod; /* the test's producer and admin client */
static bool verbose;
static const char *strategy; /* partition.assignment.strategy of the consumers; NULL: default */

static void quiet(int level, const char *msg, void *opaque)
{
    (void)opaque;
    if (verbose || (level <= KTS_LOG_ERR && getenv("KTS_TEST_VERBOSE")))
        fprintf(stderr, "# %s\n", msg);
}

/* ---------------------------------------------------------------- the toy pipeline */

struct toy {
    pthread_mutex_t lock;
    int64_t sum[NSER], count[NSER], pos[NSER]; /* pos: offset of the last value absorbed, -1 */
    bool changed[NSER], known[NSER];
    int32_t cur_part;
    int64_t cur_off;
    int restored_keys[NPART]; /* distinct series installed per partition */
    int first_seen[NPART];    /* restored_keys when the partition's first value came, -1 */
    int64_t absorbed_skips;   /* values skipped by the absorbed rule */
    int pad;                  /* bytes added to each record (the failure test) */
    int revoked[NPART];       /* revoked() calls per partition */
    int checkpoints;
    double ck_at[NPART][64]; /* monotonic times of the first checkpoints per partition */
    int nck[NPART];
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int series_of(const char *key, size_t klen)
{
    if (klen < 2 || key[0] != 's' || key[1] < '0' || key[1] >= '0' + NSER)
        return -1;
    return key[1] - '0';
}

static int toy_restore(void *ctx, int32_t partition, const void *key, size_t klen, const void *val,
                       size_t vlen)
{
    struct toy *t = ctx;
    int s = series_of(key, klen);
    if (s < 0 || s % NPART != partition)
        return KTS_STATE_REFUSED_OTHER;
    char buf[128];
    if (val == NULL || vlen >= sizeof(buf))
        return val == NULL ? KTS_STATE_RESTORED : KTS_STATE_REFUSED_CORRUPT;
    memcpy(buf, val, vlen);
    buf[vlen] = '\0';
    long long sum, count, pos;
    if (sscanf(buf, "%lld %lld %lld", &sum, &count, &pos) != 3)
        return KTS_STATE_REFUSED_CORRUPT;
    pthread_mutex_lock(&t->lock);
    if (!t->known[s])
        t->restored_keys[partition]++;
    t->known[s] = true;
    t->sum[s] = sum;
    t->count[s] = count;
    t->pos[s] = pos;
    pthread_mutex_unlock(&t->lock);
    return KTS_STATE_RESTORED;
}

static int toy_checkpoint(void *ctx, int32_t partition, bool full, kts_state_put_fn put, void *pctx)
{
    struct toy *t = ctx;
    pthread_mutex_lock(&t->lock);
    t->checkpoints++;
    if (partition >= 0 && partition < NPART && t->nck[partition] < 64)
        t->ck_at[partition][t->nck[partition]++] = mono_s();
    for (int s = partition; s < NSER; s += NPART) {
        if (!t->known[s] || (!t->changed[s] && !full))
            continue;
        char key[16], val[600];
        snprintf(key, sizeof(key), "s%d", s);
        int n = snprintf(val, sizeof(val), "%lld %lld %lld %*s", (long long)t->sum[s],
                         (long long)t->count[s], (long long)t->pos[s], t->pad, "");
        if (put(pctx, key, strlen(key), val, (size_t)n) < 0) {
            pthread_mutex_unlock(&t->lock);
            return -ENOMEM;
        }
        t->changed[s] = false;
    }
    pthread_mutex_unlock(&t->lock);
    return 0;
}

static void toy_revoked(void *ctx, int32_t partition)
{
    struct toy *t = ctx;
    pthread_mutex_lock(&t->lock);
    t->revoked[partition]++;
    for (int s = partition; s < NSER; s += NPART)
        t->known[s] = false, t->sum[s] = t->count[s] = 0, t->pos[s] = -1;
    pthread_mutex_unlock(&t->lock);
}

static void toy_position(void *ctx, int32_t partition, int64_t offset)
{
    struct toy *t = ctx;
    t->cur_part = partition;
    t->cur_off = offset;
}

static const struct kts_consumer_state_ops toy_ops = {toy_restore, toy_checkpoint, toy_revoked,
                                                      toy_position};

static int toy_pipeline(struct kts_vl *in, kts_emit_fn emit, void *emit_ctx, void *opaque)
{
    struct toy *t = opaque;
    int s = in->plugin_instance[1] - '0';
    pthread_mutex_lock(&t->lock);
    if (t->first_seen[t->cur_part] < 0)
        t->first_seen[t->cur_part] = t->restored_keys[t->cur_part];
    if (t->known[s] && t->cur_off <= t->pos[s]) {
        t->absorbed_skips++; /* the state has it already: emit nothing, count nothing */
        pthread_mutex_unlock(&t->lock);
        return 0;
    }
    t->known[s] = true;
    t->sum[s] += (int64_t)in->ds[0].value.gauge;
    t->count[s]++;
    t->pos[s] = t->cur_off;
    t->changed[s] = true;
    pthread_mutex_unlock(&t->lock);
    return emit(in, emit_ctx);
}

static void toy_init(struct toy *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    for (int s = 0; s < NSER; s++)
        t->pos[s] = -1;
    for (int p = 0; p < NPART; p++)
        t->first_seen[p] = -1;
}

/* ---------------------------------------------------------------- the write path */

struct sink {
    pthread_mutex_t lock;
    uint64_t *tokens;
    size_t n, cap;
    struct kts_consumer *c;
    atomic_bool stop;
    int delay_us;
};

static int sink_dispatch(const struct kts_vl *vl, uint64_t token, void *opaque)
{
    struct sink *s = opaque;
    (void)vl;
    pthread_mutex_lock(&s->lock);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->tokens = realloc(s->tokens, s->cap * sizeof(*s->tokens));
    }
    s->tokens[s->n++] = token;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void *sink_writer(void *arg)
{
    struct sink *s = arg;
    size_t next = 0;
    while (!atomic_load(&s->stop)) {
        uint64_t tok = 0;
        pthread_mutex_lock(&s->lock);
        if (next < s->n)
            tok = s->tokens[next++];
        pthread_mutex_unlock(&s->lock);
        if (tok != 0) {
            if (s->delay_us)
                usleep((useconds_t)s->delay_us);
            kts_consumer_written(s->c, tok);
        } else {
            usleep(1000);
        }
    }
    return NULL;
}

static void *run_thread(void *arg)
{
    kts_consumer_run(arg);
    return NULL;
}

/* ---------------------------------------------------------------- Kafka helpers */

static int admin_create(const char *topic, int parts, const char *policy, const char *maxbytes)
{
    char errstr[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, parts, 1, errstr, sizeof(errstr));
    if (policy)
        rd_kafka_NewTopic_set_config(nt, "cleanup.policy", policy);
    if (maxbytes)
        rd_kafka_NewTopic_set_config(nt, "max.message.bytes", maxbytes);
    rd_kafka_queue_t *q = rd_kafka_queue_new(prod);
    rd_kafka_CreateTopics(prod, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    int rc = -1;
    if (ev != NULL) {
        size_t n = 0;
        const rd_kafka_topic_result_t **tr =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        rc = (n == 1 && rd_kafka_topic_result_error(tr[0]) == 0) ? 0 : -1;
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    sleep(1);
    return rc;
}

/* Partition count and cleanup.policy of `topic` as the broker reports them. */
static int describe(const char *topic, char *policy, size_t size)
{
    const struct rd_kafka_metadata *md = NULL;
    int parts = -1;
    if (rd_kafka_metadata(prod, 1, NULL, &md, 10000) == 0) {
        for (int i = 0; i < md->topic_cnt; i++)
            if (strcmp(md->topics[i].topic, topic) == 0)
                parts = md->topics[i].partition_cnt;
        rd_kafka_metadata_destroy(md);
    }
    policy[0] = '\0';
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(prod);
    rd_kafka_DescribeConfigs(prod, &cr, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (ev != NULL && rd_kafka_event_error(ev) == 0) {
        size_t n = 0, nc = 0;
        const rd_kafka_ConfigResource_t **rs = rd_kafka_DescribeConfigs_result_resources(
            rd_kafka_event_DescribeConfigs_result(ev), &n);
        const rd_kafka_ConfigEntry_t **ce = n ? rd_kafka_ConfigResource_configs(rs[0], &nc) : NULL;
        for (size_t i = 0; i < nc; i++)
            if (strcmp(rd_kafka_ConfigEntry_name(ce[i]), "cleanup.policy") == 0)
                snprintf(policy, size, "%s", rd_kafka_ConfigEntry_value(ce[i]));
    }
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(cr);
    return parts;
}

/* Round r: values r*NVAL .. r*NVAL+NVAL-1 of each series; the value is the index k. */
static void produce_round(const char *topic, int r)
{
    for (int k = r * NVAL; k < (r + 1) * NVAL; k++)
        for (int s = 0; s < NSER; s++) {
            char buf[512];
            int n = snprintf(buf, sizeof(buf),
                             "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"s%d\","
                             "\"type\":\"gauge\",\"type_instance\":\"\",\"time\":%d,\"interval\":"
                             "10,\"ds\":[{\"name\":\"value\",\"type\":\"gauge\",\"value\":%d}]}",
                             s, 1700000000 + 10 * k, k);
            rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(s % NPART),
                              RD_KAFKA_V_VALUE(buf, (size_t)n),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        }
    rd_kafka_flush(prod, 30000);
}

static int64_t expected_sum(int rounds)
{
    int64_t n = (int64_t)rounds * NVAL;
    return n * (n - 1) / 2;
}

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

static void config(struct kts_consumer_config *cfg, const char *group, const char *topic,
                   const char *state)
{
    memset(cfg, 0, sizeof(*cfg));
    kts_opt_defaults(kts_consumer_options, cfg);
    cfg->group_id = strdup(group);
    kts_strv_push(&cfg->topics, topic);
    if (state)
        cfg->state_topic = strdup(state);
    const char *kv[] = {"bootstrap.servers",       bootstrap, "session.timeout.ms", "30000",
                        "auto.commit.interval.ms", "200"};
    for (size_t i = 0; i < 6; i++)
        kts_strv_push(&cfg->properties, kv[i]);
    if (strategy != NULL) {
        kts_strv_push(&cfg->properties, "partition.assignment.strategy");
        kts_strv_push(&cfg->properties, strategy);
    }
    kts_strv_push(&cfg->typesdb, KTS_TYPESDB_DEFAULT);
}

/* A running consumer with the toy pipeline and a writer thread. */
struct run {
    struct kts_consumer_config cfg;
    struct kts_consumer *c;
    struct sink s;
    pthread_t rt, wt;
};

static double state_interval; /* StateInterval of run_start's consumers (0: every commit point) */

static int run_start(struct run *r, struct toy *t, const char *group, const char *topic,
                     const char *state, int delay_us, char *err, size_t errsize)
{
    memset(r, 0, sizeof(*r));
    config(&r->cfg, group, topic, state);
    if (delay_us > 0) { /* a slow writer: keep the consumer close to it, so cuts are close */
        r->cfg.max_inflight_messages = 40;
        r->cfg.batch_size = 20;
    }
    pthread_mutex_init(&r->s.lock, NULL);
    r->s.delay_us = delay_us;
    struct kts_consumer_callbacks cb = {.dispatch = sink_dispatch,
                                        .dispatch_opaque = &r->s,
                                        .pipeline = toy_pipeline,
                                        .pipeline_opaque = t,
                                        .commit_interval = 0.2,
                                        .state_interval = state_interval,
                                        .state = &toy_ops,
                                        .state_ctx = t};
    int rc = kts_consumer_create(&r->c, &r->cfg, &cb, 1, err, errsize);
    if (rc < 0) {
        kts_consumer_config_free(&r->cfg);
        return rc;
    }
    r->s.c = r->c;
    pthread_create(&r->rt, NULL, run_thread, r->c);
    pthread_create(&r->wt, NULL, sink_writer, &r->s);
    return 0;
}

static void run_stop(struct run *r)
{
    kts_consumer_drain(r->c);
    pthread_join(r->rt, NULL);
    kts_consumer_close(r->c);
    atomic_store(&r->s.stop, true);
    pthread_join(r->wt, NULL);
    kts_consumer_destroy(r->c);
    kts_consumer_config_free(&r->cfg);
    free(r->s.tokens);
}

static int64_t stored_at(struct kts_consumer *c, int32_t partition)
{
    struct kts_consumer_lag lag[8];
    size_t n = kts_consumer_lag(c, lag, 8);
    for (size_t i = 0; i < n; i++)
        if (lag[i].partition == partition)
            return lag[i].stored;
    return -2;
}

static bool wait_written(struct kts_consumer *c, uint64_t n, int seconds)
{
    for (int i = 0; i < seconds * 10; i++) {
        struct kts_consumer_stats st;
        kts_consumer_stats(c, &st);
        if (st.written >= n)
            return true;
        usleep(100000);
    }
    return false;
}

/* ---------------------------------------------------------------- tests */

/* `base` with this run's suffix, in one of 8 rotating buffers. */
static const char *N(const char *base)
{
    static char bufs[8][128];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, 128, "%s%s", base, sfx);
    return b;
}

static int try_create(const char *topic, const char *state, char *err, size_t size)
{
    struct kts_consumer_config cfg;
    config(&cfg, "g-st-refuse", topic, state);
    struct kts_consumer_callbacks cb = {
        .dispatch = sink_dispatch, .commit_interval = 1, .state = &toy_ops, .state_ctx = NULL};
    struct kts_consumer *c = NULL;
    err[0] = '\0';
    int rc = kts_consumer_create(&c, &cfg, &cb, 1, err, size);
    kts_consumer_destroy(c);
    kts_consumer_config_free(&cfg);
    return rc;
}

static void test_start_checks(void)
{
    char err[1024], policy[64], want[256];
    const char *in = N("st-in"), *bad_parts = N("st-bad-parts"), *bad_policy = N("st-bad-policy");
    ok(admin_create(in, NPART, NULL, NULL) == 0 &&
           admin_create(bad_parts, 1, "compact", NULL) == 0 &&
           admin_create(bad_policy, NPART, "delete", NULL) == 0,
       "C12 topics for the start-up checks created");
    snprintf(want, sizeof(want), "\"%s\" has 1 partition(s) but the input topic \"%s\" has 2",
             bad_parts, in);
    ok(try_create(in, bad_parts, err, sizeof(err)) < 0 && strstr(err, want),
       "C12 an existing state topic with another partition count is refused, naming both (%s)",
       err);
    ok(try_create(in, bad_policy, err, sizeof(err)) < 0 &&
           strstr(err, "cleanup.policy \"delete\"") && strstr(err, in),
       "C12 an existing state topic that is not compacted is refused, naming both (%s)", err);
    ok(try_create("^st-.*", N("st-x"), err, sizeof(err)) < 0 && strstr(err, "exactly one Topic"),
       "C12 a pattern subscription with a state topic is refused (%s)", err);
    ok(try_create(N("st-missing-input"), N("st-x"), err, sizeof(err)) < 0 &&
           strstr(err, "does not exist"),
       "C12 a missing input topic is refused (%s)", err);
    const char *st = N("st-state");
    is_int(try_create(in, st, err, sizeof(err)), 0, "C12 a missing state topic is created (%s)",
           err);
    int parts = describe(st, policy, sizeof(policy));
    ok(parts == NPART && strcmp(policy, "compact") == 0,
       "C12 it has the input's %d partitions and cleanup.policy=compact (%d, %s)", NPART, parts,
       policy);
    is_int(try_create(in, st, err, sizeof(err)), 0,
           "C12 the state topic it created is accepted next time (%s)", err);
    /* The policy as the check reads it: a topic the broker does not know is -EAGAIN (asked
     * again: a topic just created on a cluster reaches the brokers one by one), not "". */
    int rc = kts_state_topic_policy(prod, bad_policy, policy, sizeof(policy), err, sizeof(err));
    ok(rc == 0 && strcmp(policy, "delete") == 0, "C12 the policy read: %d, \"%s\"", rc, policy);
    const char *never = N("st-never");
    err[0] = '\0';
    rc = kts_state_topic_policy(prod, never, policy, sizeof(policy), err, sizeof(err));
    ok(rc == -EAGAIN && strstr(err, never) != NULL,
       "C12 a topic the broker does not know: -EAGAIN with its name, not an empty policy (%d, %s)",
       rc, err);
}

static bool counts_reached(struct toy *t, int64_t n, int seconds)
{
    for (int i = 0; i < seconds * 10; i++) {
        bool all = true;
        pthread_mutex_lock(&t->lock);
        for (int s = 0; s < NSER; s++)
            all &= t->count[s] >= n;
        pthread_mutex_unlock(&t->lock);
        if (all)
            return true;
        usleep(100000);
    }
    return false;
}

static bool sums_exact(struct toy *t, int rounds, char *why, size_t size)
{
    bool okk = true;
    why[0] = '\0';
    pthread_mutex_lock(&t->lock);
    for (int s = 0; s < NSER; s++) {
        size_t l = strlen(why);
        snprintf(why + l, size - l, "s%d: %lld/%lld ", s, (long long)t->sum[s],
                 (long long)t->count[s]);
        okk &= t->sum[s] == expected_sum(rounds) && t->count[s] == (int64_t)rounds * NVAL;
    }
    pthread_mutex_unlock(&t->lock);
    return okk;
}

/* The first consumer runs in a child process, killed with SIGKILL after its first commits. */
static pid_t spawn_child(const char *self, const char *topic, const char *group, const char *state)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "child", topic, group, state, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int child_main(const char *topic, const char *group, const char *state)
{
    static struct toy t;
    toy_init(&t);
    struct run r;
    char err[1024];
    if (run_start(&r, &t, group, topic, state, 10000, err, sizeof(err)) < 0) {
        fprintf(stderr, "child: %s\n", err);
        return 1;
    }
    for (;;)
        pause();
}

static void test_kill_and_restore(const char *self)
{
    const char *topic = N("st-kill-in"), *group = N("g-st-kill"), *state = N("st-kill-state");
    admin_create(topic, NPART, NULL, NULL);
    produce_round(topic, 0);
    produce_round(topic, 1);
    time_t t_start = time(NULL);
    pid_t pid = spawn_child(self, topic, group, state);
    int64_t c0 = -1, c1 = -1;
    for (int i = 0; i < 600 && (c0 <= 0 || c1 <= 0); i++) {
        usleep(100000);
        c0 = committed(group, topic, 0);
        c1 = committed(group, topic, 1);
    }
    diag("first commits seen: %lld, %lld after %ld s", (long long)c0, (long long)c1,
         (long)(time(NULL) - t_start));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    c0 = committed(group, topic, 0);
    c1 = committed(group, topic, 1);
    ok(c0 > 0 && c1 > 0 && (c0 < 2 * 2 * NVAL || c1 < 2 * 2 * NVAL),
       "C15 the first consumer committed checkpointed offsets and was killed mid-stream "
       "(committed %lld and %lld of %d)",
       (long long)c0, (long long)c1, 2 * 2 * NVAL);
    produce_round(topic, 2);

    static struct toy t;
    toy_init(&t);
    struct run r;
    char err[1024], why[512];
    int rc = run_start(&r, &t, group, topic, state, 0, err, sizeof(err));
    is_int(rc, 0, "C13 a new consumer starts (%s)", rc ? err : "");
    if (rc < 0)
        return;
    ok(counts_reached(&t, 3 * NVAL, 120), "C13 it processed every series to the end");
    /* A series whose first checkpoint came before its first value has no record: it starts
     * fresh. Every series that has one is installed before its partition's first message. */
    ok(t.first_seen[0] >= 1 && t.first_seen[1] >= 1 && t.first_seen[0] == t.restored_keys[0] &&
           t.first_seen[1] == t.restored_keys[1],
       "C13 every series with a record was restored before its partition's first message "
       "(%d of %d, %d of %d)",
       t.first_seen[0], t.restored_keys[0], t.first_seen[1], t.restored_keys[1]);
    ok(sums_exact(&t, 3, why, sizeof(why)),
       "C15 after SIGKILL and restore every sum is exact: none counted twice, none missed (%s; "
       "%lld redelivered values skipped as absorbed)",
       why, (long long)t.absorbed_skips);
    struct kts_consumer_stats st;
    kts_consumer_stats(r.c, &st);
    ok(st.state_partitions_restored == NPART && st.state_restored >= NSER &&
           st.state_refused[0] + st.state_refused[1] + st.state_refused[2] + st.state_refused[3] ==
               0,
       "C17 counted: %llu partitions and %llu records restored, none refused",
       (unsigned long long)st.state_partitions_restored, (unsigned long long)st.state_restored);
    run_stop(&r);
    ok(committed(group, topic, 0) == 3 * 2 * NVAL && committed(group, topic, 1) == 3 * 2 * NVAL,
       "C16 a clean shutdown checkpoints and commits everything (%d per partition)", 3 * 2 * NVAL);

    produce_round(topic, 3);
    toy_init(&t);
    rc = run_start(&r, &t, group, topic, state, 0, err, sizeof(err));
    is_int(rc, 0, "C13 a third consumer starts (%s)", rc ? err : "");
    if (rc < 0)
        return;
    ok(counts_reached(&t, 4 * NVAL, 120) && sums_exact(&t, 4, why, sizeof(why)) &&
           t.absorbed_skips == 0,
       "C16 after a clean shutdown the sums continue exactly and nothing is redelivered (%s; "
       "%lld skipped)",
       why, (long long)t.absorbed_skips);
    for (int i = 0;
         i < 300 && !(stored_at(r.c, 0) == 4 * 2 * NVAL && stored_at(r.c, 1) == 4 * 2 * NVAL); i++)
        usleep(100000);
    kts_consumer_stats(r.c, &st);
    ok(st.state_checkpoints > 0 && st.state_records > 0 && st.state_bytes > 0 &&
           st.state_checkpoint_ns > 0 && st.state_restore_ns > 0,
       "C17 counted: %llu checkpoints, %llu records, %llu bytes",
       (unsigned long long)st.state_checkpoints, (unsigned long long)st.state_records,
       (unsigned long long)st.state_bytes);
    run_stop(&r);
}

/* A partition moves: a second member joins; the first gives the moving partition up with a
 * final checkpoint (C16), the second restores it; the owners' sums are exact. `coop`: with
 * cooperative-sticky, where the first member must keep its other partition without a revoke. */
static void test_partition_move(bool coop)
{
    const char *how = coop ? "cooperative-sticky" : "eager";
    if (coop) {
        char lim[768];
        const char *l = kts_rdk_limit(KTS_RDK_COOPERATIVE, lim, sizeof(lim));
        if (l != NULL) {
            for (int i = 0; i < 4; i++) {
                tap_run++;
                printf("ok %d - C16 partition move with cooperative-sticky (%d of 4) # SKIP %s\n",
                       tap_run, i + 1, l);
            }
            return;
        }
    }
    strategy = coop ? "cooperative-sticky" : NULL;
    const char *topic = N(coop ? "st-coop-in" : "st-move-in"),
               *group = N(coop ? "g-st-coop" : "g-st-move"),
               *state = N(coop ? "st-coop-state" : "st-move-state");
    admin_create(topic, NPART, NULL, NULL);
    produce_round(topic, 0);
    static struct toy ta, tb;
    toy_init(&ta);
    toy_init(&tb);
    struct run ra, rb;
    char err[1024], why[512];
    int rc = run_start(&ra, &ta, group, topic, state, 0, err, sizeof(err));
    ok(rc == 0 && counts_reached(&ta, NVAL, 120), "C16 %s: a first member processed round 0 (%s)",
       how, rc ? err : "");
    if (rc != 0) {
        strategy = NULL;
        return;
    }
    rc = run_start(&rb, &tb, group, topic, state, 0, err, sizeof(err));
    bool split = false;
    for (int i = 0; rc == 0 && i < 600 && !split; i++) {
        struct kts_consumer_lag la[4], lb[4];
        split = kts_consumer_lag(ra.c, la, 4) == 1 && kts_consumer_lag(rb.c, lb, 4) == 1;
        usleep(100000);
    }
    ok(rc == 0 && split, "C16 %s: a second member joins and takes one partition (%s)", how,
       rc ? err : "");
    if (rc != 0) {
        run_stop(&ra);
        strategy = NULL;
        return;
    }
    produce_round(topic, 1);
    bool done = false;
    for (int i = 0; i < 1200 && !done; i++) {
        done = true;
        pthread_mutex_lock(&ta.lock);
        pthread_mutex_lock(&tb.lock);
        for (int s = 0; s < NSER; s++)
            done &= (ta.known[s] ? ta.count[s] : tb.count[s]) >= 2 * NVAL;
        pthread_mutex_unlock(&tb.lock);
        pthread_mutex_unlock(&ta.lock);
        usleep(100000);
    }
    bool exact = done;
    why[0] = '\0';
    for (int s = 0; s < NSER; s++) {
        struct toy *o = ta.known[s] ? &ta : &tb;
        size_t l = strlen(why);
        snprintf(why + l, sizeof(why) - l, "s%d: %c %lld/%lld ", s, o == &ta ? 'A' : 'B',
                 (long long)o->sum[s], (long long)o->count[s]);
        exact &= o->known[s] && o->sum[s] == expected_sum(2) && o->count[s] == 2 * NVAL &&
                 !(ta.known[s] && tb.known[s]);
    }
    ok(exact && tb.restored_keys[0] + tb.restored_keys[1] == 2,
       "C16 %s: the moved partition's state went with it: each series has one owner and an exact "
       "sum (%s; B restored %d)",
       how, why, tb.restored_keys[0] + tb.restored_keys[1]);
    if (coop) {
        int kept = ta.known[0] ? 0 : 1; /* the partition A still owns */
        ok(ta.revoked[kept] == 0 && ta.revoked[1 - kept] == 1,
           "C16 cooperative-sticky: A gave up only the moving partition (revoked %d and %d "
           "times), kept the other without a revoke",
           ta.revoked[1 - kept], ta.revoked[kept]);
    }
    run_stop(&rb);
    run_stop(&ra);
    strategy = NULL;
}

static void test_failed_checkpoint(void)
{
    const char *topic = N("st-fail-in"), *group = N("g-st-fail"), *state = N("st-fail-state");
    admin_create(topic, NPART, NULL, NULL);
    admin_create(state, NPART, "compact", "200"); /* the toy's records will be larger */
    produce_round(topic, 0);
    static struct toy t;
    toy_init(&t);
    t.pad = 400;
    struct run r;
    char err[1024];
    int rc = run_start(&r, &t, group, topic, state, 0, err, sizeof(err));
    is_int(rc, 0, "C15 consumer with a state topic that refuses its records (%s)", rc ? err : "");
    if (rc < 0)
        return;
    ok(wait_written(r.c, NSER * NVAL, 60), "C15 every value written");
    sleep(3); /* several commit points */
    struct kts_consumer_stats st;
    kts_consumer_stats(r.c, &st);
    struct kts_consumer_lag lag[4];
    size_t n = kts_consumer_lag(r.c, lag, 4);
    bool none = n == NPART;
    for (size_t i = 0; i < n; i++)
        none &= lag[i].stored == -1;
    ok(st.state_failed > 0 && st.state_checkpoints == 0 && none,
       "C15 records not acknowledged: counted (%llu), and no offset stored although every value "
       "was written",
       (unsigned long long)st.state_failed);
    run_stop(&r);
    int64_t c0 = committed(group, topic, 0), c1 = committed(group, topic, 1);
    ok(c0 < 0 && c1 < 0, "C15 nothing committed, also at shutdown (%lld, %lld)", (long long)c0,
       (long long)c1);
}

/* (14) StateInterval 1 s with commit points every 0.2 s: a partition is checkpointed at every
 * 5th commit point only, while values keep coming. */
static void test_state_interval(void)
{
    const char *topic = N("st-ival-in"), *group = N("g-st-ival"), *state = N("st-ival-state");
    admin_create(topic, NPART, NULL, NULL);
    admin_create(state, NPART, "compact", NULL);
    static struct toy t;
    toy_init(&t);
    struct run r;
    char err[1024];
    state_interval = 1.0;
    int rc = run_start(&r, &t, group, topic, state, 0, err, sizeof(err));
    state_interval = 0;
    is_int(rc, 0, "C14 consumer with StateInterval 1 and CommitInterval 0.2 (%s)", rc ? err : "");
    if (rc < 0)
        return;
    struct kts_consumer_stats s0, s1;
    for (int k = 0; k <= 60; k++) { /* then 6 s: one value per series every 0.1 s */
        for (int s = 0; s < NSER; s++) {
            char buf[512];
            int n = snprintf(buf, sizeof(buf),
                             "{\"v\":1,\"host\":\"h\",\"plugin\":\"p\",\"plugin_instance\":\"s%d\","
                             "\"type\":\"gauge\",\"type_instance\":\"\",\"time\":%d,\"interval\":"
                             "10,\"ds\":[{\"name\":\"value\",\"type\":\"gauge\",\"value\":1}]}",
                             s, 1700000000 + 10 * k);
            rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(s % NPART),
                              RD_KAFKA_V_VALUE(buf, (size_t)n),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        }
        rd_kafka_flush(prod, 5000);
        if (k == 0) { /* the window starts once the partitions are assigned and flowing */
            ok(wait_written(r.c, NSER, 60), "C14 the first values written");
            pthread_mutex_lock(&t.lock);
            t.nck[0] = t.nck[1] = 0;
            pthread_mutex_unlock(&t.lock);
            kts_consumer_stats(r.c, &s0);
        }
        usleep(100000);
    }
    kts_consumer_stats(r.c, &s1);
    pthread_mutex_lock(&t.lock);
    int nck[NPART];
    double mingap = 1e9;
    for (int p = 0; p < NPART; p++) {
        nck[p] = t.nck[p];
        for (int i = 1; i < nck[p]; i++)
            if (t.ck_at[p][i] - t.ck_at[p][i - 1] < mingap)
                mingap = t.ck_at[p][i] - t.ck_at[p][i - 1];
    }
    pthread_mutex_unlock(&t.lock);
    uint64_t points = s1.commit_points - s0.commit_points;
    ok(nck[0] >= 2 && nck[1] >= 2 && (uint64_t)(nck[0] + nck[1]) <= 2 * (points / 5 + 2),
       "C14 each partition checkpointed at every 5th commit point: %d and %d checkpoints, %llu "
       "commit points in the 6 s",
       nck[0], nck[1], (unsigned long long)points);
    ok(mingap >= 0.95, "C14 no two checkpoints of a partition closer than 5 commit points (%.3f s)",
       mingap);
    run_stop(&r);
}

int main(int argc, char **argv)
{
    bootstrap = getenv("KTS_BOOTSTRAP");
    verbose = getenv("KTS_TEST_VERBOSE") != NULL;
    kts_log_set_sink(quiet, NULL);
    if (argc == 5 && strcmp(argv[1], "child") == 0)
        return child_main(argv[2], argv[3], argv[4]);
    if (bootstrap == NULL || *bootstrap == '\0')
        BAIL_OUT("KTS_BOOTSTRAP unset: run through make check (it starts a broker)");
    plan(35);
    snprintf(sfx, sizeof(sfx), "-%ld-%d", (long)time(NULL), (int)getpid());
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr));
    prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    alarm(900); /* a hang is a failure */
    test_start_checks();
    test_kill_and_restore(argv[0]);
    test_partition_move(false);
    test_partition_move(true);
    test_failed_checkpoint();
    test_state_interval();
    rd_kafka_destroy(prod);
    return done_testing();
}
