/* SPDX-License-Identifier: MIT */
/*
 * kafka-pc: a small librdkafka client for the Kafka smoke tests and for poking at a broker by
 * hand. Not a test itself: the shell tests (tests/t-kafka-*.sh) run it and compare its counts.
 *
 *   kafka-pc create  -b BOOTSTRAP -t TOPIC -p PARTITIONS [-r RF] [-X key=value]...
 *   kafka-pc produce -b BOOTSTRAP -t TOPIC -n N [-m TAG] [-z CODEC] [-T SECONDS]
 *                    [-P K -R READY_FILE -G GO_FILE] [-X key=value]...
 *   kafka-pc consume -b BOOTSTRAP -t TOPIC -n N [-m TAG] [-g GROUP] [-T SECONDS]
 *                    [-X key=value]...
 *
 * What it guarantees:
 *  1. Message i (0 <= i < N) of run TAG (default "pc") has the key "TAG-i" and a payload that
 *     is a pure function of (TAG, i) of about 130 bytes, partly repetitive so that compression
 *     has something to do. The consumer checks every message against it.
 *  2. produce uses acks=all and no idempotence (librdkafka 2.0.2 can end idempotent producers
 *     in a fatal error after disconnects, librdkafka #4438), then waits for every delivery report
 *     or the deadline (-T, default 180 s). It prints one line
 *       produced=N delivered=D failed=F
 *     (and the first delivery error on stderr) and exits 0 only if D == N and F == 0.
 *  3. With -P K, after K messages are queued it creates READY_FILE and produces nothing more
 *     (delivery reports are still served) until GO_FILE exists, so a test can stop a broker at a
 *     known point in the middle of producing.
 *  4. consume joins a fresh consumer group (-g to choose one) and reads from the beginning until
 *     it has seen all N indexes of run TAG or the deadline (-T, default 60 s) passed. It prints
 *       consumed=C distinct=D duplicates=U invalid=I foreign=O partitions=P
 *     (messages of TAG; different indexes; repeats; messages of TAG whose key or payload is
 *     wrong; messages of other runs; partitions that delivered messages of TAG) and exits 0 only
 *     if D == N and I == 0. It closes the consumer as librdkafka 2.0.2 needs (see below).
 *  5. create sends CreateTopics (RF -1 = the broker's default.replication.factor) and then waits
 *     until metadata shows every partition with a leader. It fails if the topic exists.
 *  6. -X sets any librdkafka property after the defaults above (SASL settings, compression …).
 *  7. kafka-pc limit FEATURE (a feature name of src/kafka/kts_rdkver.h: idempotence, scram-kafka4,
 *     cooperative, kip848) asks the linked librdkafka, through the plugins' own version table:
 *     it prints the limitation and exits 0 when the linked librdkafka lacks FEATURE, prints
 *     nothing and exits 1 when it has it. So a shell test marks a point TODO only where the
 *     limitation is real. kafka-pc version prints the linked librdkafka's version.
 *  8. kafka-pc rewind -b BOOTSTRAP -t TOPIC -g GROUP [-X key=value]... sets the committed offset
 *     of GROUP on every partition of TOPIC that has one to half of it (rounded down), as a crash
 *     after a consumer's state was published but before its offsets were committed leaves them.
 *     The group must have no member. It prints one line per partition
 *       partition=P committed=C rewound=R
 *     and exits 0 when every partition had a committed offset and the commit succeeded.
 *  Exit status 1 on failure, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "kts_rdkver.h"

#define PC_MAX_PROPS 64
#define PC_PAYLOAD_MAX 512

struct pc_opts {
    const char *cmd;
    const char *bootstrap;
    const char *topic;
    const char *tag;
    const char *group;
    const char *codec;
    const char *ready_file;
    const char *go_file;
    long n;
    long pause_at;
    int partitions;
    int rf;
    int timeout_s;
    int nprops;
    const char *props[PC_MAX_PROPS]; /* "key=value", owned by argv */
};

/* Delivery-report counters. Delivery reports run from rd_kafka_poll()/rd_kafka_flush() in the
 * main thread only here, but they are atomic anyway: librdkafka can run delivery-report callbacks
 * concurrently from rd_kafka_flush() and a poll thread. */
static long pc_delivered;
static long pc_failed;
static char pc_first_error[512];

static double pc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t pc_mix(uint64_t x)
{
    /* splitmix64: a deterministic, well-spread function of the index. */
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Writes the key of message i of run tag into buf (NUL-terminated); returns its length. */
static int pc_key(char *buf, size_t size, const char *tag, long i)
{
    return snprintf(buf, size, "%s-%ld", tag, i);
}

/* Writes the payload of message i of run tag into buf (NUL-terminated); returns its length. */
static int pc_payload(char *buf, size_t size, const char *tag, long i)
{
    uint64_t h = pc_mix((uint64_t)i);
    return snprintf(buf, size,
                    "{\"run\":\"%s\",\"i\":%ld,\"host\":\"kts-test-host\",\"plugin\":\"kafka-pc\","
                    "\"value\":%" PRIu64 ",\"check\":\"%016" PRIx64 "\"}",
                    tag, i, h % 1000000, pc_mix(h));
}

static void pc_usage(void)
{
    fputs("usage: kafka-pc create  -b BOOTSTRAP -t TOPIC -p PARTITIONS [-r RF] [-X k=v]...\n"
          "       kafka-pc produce -b BOOTSTRAP -t TOPIC -n N [-m TAG] [-z CODEC] [-T S]\n"
          "                        [-P K -R READY_FILE -G GO_FILE] [-X k=v]...\n"
          "       kafka-pc consume -b BOOTSTRAP -t TOPIC -n N [-m TAG] [-g GROUP] [-T S]"
          " [-X k=v]...\n"
          "       kafka-pc rewind  -b BOOTSTRAP -t TOPIC -g GROUP [-X k=v]...\n"
          "       kafka-pc limit FEATURE | kafka-pc version\n",
          stderr);
    exit(2);
}

static long pc_parse_long(const char *s, const char *what, long min)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min) {
        fprintf(stderr, "kafka-pc: %s: '%s' is not an integer >= %ld\n", what, s, min);
        exit(2);
    }
    return v;
}

static void pc_parse(int argc, char **argv, struct pc_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->tag = "pc";
    o->rf = -1;
    o->pause_at = -1;
    if (argc < 2)
        pc_usage();
    o->cmd = argv[1];
    int c;
    optind = 2;
    while ((c = getopt(argc, argv, "b:t:n:m:g:z:p:r:T:P:R:G:X:")) != -1) {
        switch (c) {
        case 'b':
            o->bootstrap = optarg;
            break;
        case 't':
            o->topic = optarg;
            break;
        case 'n':
            o->n = pc_parse_long(optarg, "-n", 1);
            break;
        case 'm':
            o->tag = optarg;
            break;
        case 'g':
            o->group = optarg;
            break;
        case 'z':
            o->codec = optarg;
            break;
        case 'p':
            o->partitions = (int)pc_parse_long(optarg, "-p", 1);
            break;
        case 'r':
            o->rf = (int)pc_parse_long(optarg, "-r", -1);
            break;
        case 'T':
            o->timeout_s = (int)pc_parse_long(optarg, "-T", 1);
            break;
        case 'P':
            o->pause_at = pc_parse_long(optarg, "-P", 0);
            break;
        case 'R':
            o->ready_file = optarg;
            break;
        case 'G':
            o->go_file = optarg;
            break;
        case 'X':
            if (o->nprops == PC_MAX_PROPS || strchr(optarg, '=') == NULL)
                pc_usage();
            o->props[o->nprops++] = optarg;
            break;
        default:
            pc_usage();
        }
    }
    if (optind != argc || o->bootstrap == NULL || o->topic == NULL)
        pc_usage();
    if (strchr(o->tag, '-') != NULL) {
        fprintf(stderr, "kafka-pc: -m: the tag must not contain '-'\n");
        exit(2);
    }
    if (o->pause_at >= 0 && (o->ready_file == NULL || o->go_file == NULL))
        pc_usage();
}

/* Sets one property; on failure prints the key only (values may be secrets) and exits. */
static void pc_set(rd_kafka_conf_t *conf, const char *key, const char *value)
{
    char errstr[256];
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka-pc: cannot set librdkafka property '%s'\n", key);
        exit(2);
    }
}

/* Returns a new configuration (owned by the caller) with the bootstrap and every -X property. */
static rd_kafka_conf_t *pc_conf(const struct pc_opts *o)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    pc_set(conf, "bootstrap.servers", o->bootstrap);
    pc_set(conf, "client.id", "kafka-pc");
    return conf;
}

static void pc_apply_props(rd_kafka_conf_t *conf, const struct pc_opts *o)
{
    for (int i = 0; i < o->nprops; i++) {
        char key[256];
        const char *eq = strchr(o->props[i], '=');
        size_t klen = (size_t)(eq - o->props[i]);
        if (klen >= sizeof(key))
            klen = sizeof(key) - 1;
        memcpy(key, o->props[i], klen);
        key[klen] = '\0';
        pc_set(conf, key, eq + 1);
    }
}

/* Creates a client of the given type; takes ownership of conf (also on failure). */
static rd_kafka_t *pc_client(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, "kafka-pc: rd_kafka_new: %s\n", errstr);
        exit(1);
    }
    return rk;
}

/* ------------------------------------------------------------------------------ create */

/* 0 once metadata shows the topic with `partitions` partitions, each with a leader. */
static int pc_topic_ready(rd_kafka_t *rk, const char *topic, int partitions)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int ready = 0;
    if (rkt == NULL)
        return -ENOMEM;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
            md->topics[0].partition_cnt == partitions) {
            ready = 1;
            for (int i = 0; i < md->topics[0].partition_cnt; i++)
                if (md->topics[0].partitions[i].leader < 0)
                    ready = 0;
        }
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return ready ? 0 : -EAGAIN;
}

static int pc_create(const struct pc_opts *o)
{
    if (o->partitions < 1)
        pc_usage();
    rd_kafka_conf_t *conf = pc_conf(o);
    pc_apply_props(conf, o);
    rd_kafka_t *rk = pc_client(RD_KAFKA_PRODUCER, conf);
    int timeout_s = o->timeout_s ? o->timeout_s : 60;
    char errstr[512];
    int rc = 1;

    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(o->topic, o->partitions, o->rf, errstr, sizeof(errstr));
    if (nt == NULL) {
        fprintf(stderr, "kafka-pc: NewTopic: %s\n", errstr);
        rd_kafka_destroy(rk);
        return 1;
    }
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(ao, timeout_s * 1000, errstr, sizeof(errstr));
    rd_kafka_AdminOptions_set_request_timeout(ao, timeout_s * 1000, errstr, sizeof(errstr));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, ao, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, (timeout_s + 5) * 1000);
    if (ev == NULL) {
        fprintf(stderr, "kafka-pc: CreateTopics %s: no answer within %d s\n", o->topic, timeout_s);
    } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kafka-pc: CreateTopics %s: %s\n", o->topic,
                rd_kafka_event_error_string(ev));
    } else {
        size_t cnt = 0;
        const rd_kafka_topic_result_t **tr =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
        if (cnt != 1) {
            fprintf(stderr, "kafka-pc: CreateTopics %s: %zu results\n", o->topic, cnt);
        } else if (rd_kafka_topic_result_error(tr[0]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "kafka-pc: CreateTopics %s: %s: %s\n", o->topic,
                    rd_kafka_err2name(rd_kafka_topic_result_error(tr[0])),
                    rd_kafka_topic_result_error_string(tr[0])
                        ? rd_kafka_topic_result_error_string(tr[0])
                        : "");
        } else {
            rc = 0;
        }
    }
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_NewTopic_destroy(nt);

    if (rc == 0) {
        double deadline = pc_now() + timeout_s;
        while (pc_topic_ready(rk, o->topic, o->partitions) != 0) {
            if (pc_now() > deadline) {
                fprintf(stderr, "kafka-pc: topic %s: not every partition has a leader after %d s\n",
                        o->topic, timeout_s);
                rc = 1;
                break;
            }
            usleep(100 * 1000);
        }
    }
    rd_kafka_destroy(rk);
    return rc;
}

/* ----------------------------------------------------------------------------- produce */

static void pc_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        __atomic_add_fetch(&pc_delivered, 1, __ATOMIC_RELAXED);
    } else if (__atomic_add_fetch(&pc_failed, 1, __ATOMIC_RELAXED) == 1) {
        snprintf(pc_first_error, sizeof(pc_first_error), "%s: %s", rd_kafka_err2name(m->err),
                 rd_kafka_err2str(m->err));
    }
}

static int pc_file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static int pc_produce(const struct pc_opts *o)
{
    if (o->n < 1)
        pc_usage();
    rd_kafka_conf_t *conf = pc_conf(o);
    int timeout_s = o->timeout_s ? o->timeout_s : 180;
    char buf[32];
    pc_set(conf, "acks", "all");
    pc_set(conf, "enable.idempotence", "false");
    pc_set(conf, "linger.ms", "5");
    /* A node outage must not expire messages; the deadline below bounds the run instead. */
    snprintf(buf, sizeof(buf), "%d", timeout_s * 1000);
    pc_set(conf, "message.timeout.ms", buf);
    pc_set(conf, "reconnect.backoff.max.ms", "1000");
    pc_set(conf, "queue.buffering.max.messages", "1000000");
    if (o->codec != NULL)
        pc_set(conf, "compression.codec", o->codec);
    pc_apply_props(conf, o);
    rd_kafka_conf_set_dr_msg_cb(conf, pc_dr);
    rd_kafka_t *rk = pc_client(RD_KAFKA_PRODUCER, conf);

    double deadline = pc_now() + timeout_s;
    long produced = 0;
    int timed_out = 0;
    for (long i = 0; i < o->n && !timed_out; i++) {
        if (i == o->pause_at) {
            FILE *f = fopen(o->ready_file, "w");
            if (f == NULL) {
                fprintf(stderr, "kafka-pc: cannot create %s: %s\n", o->ready_file, strerror(errno));
                break;
            }
            fprintf(f, "%ld\n", i);
            fclose(f);
            while (!pc_file_exists(o->go_file)) {
                rd_kafka_poll(rk, 50);
                if (pc_now() > deadline) {
                    fprintf(stderr, "kafka-pc: %s did not appear in time\n", o->go_file);
                    timed_out = 1;
                    break;
                }
            }
            if (timed_out)
                break;
        }
        char key[128], payload[PC_PAYLOAD_MAX];
        int klen = pc_key(key, sizeof(key), o->tag, i);
        int plen = pc_payload(payload, sizeof(payload), o->tag, i);
        for (;;) {
            rd_kafka_resp_err_t err =
                rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_KEY(key, (size_t)klen),
                                  RD_KAFKA_V_VALUE(payload, (size_t)plen),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                produced++;
                break;
            }
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "kafka-pc: producev: %s\n", rd_kafka_err2str(err));
                timed_out = 1;
                break;
            }
            rd_kafka_poll(rk, 10);
            if (pc_now() > deadline) {
                timed_out = 1;
                break;
            }
        }
        rd_kafka_poll(rk, 0);
    }
    while (rd_kafka_outq_len(rk) > 0 && pc_now() < deadline)
        rd_kafka_flush(rk, 500);
    int left = rd_kafka_outq_len(rk);
    long delivered = __atomic_load_n(&pc_delivered, __ATOMIC_RELAXED);
    long failed = __atomic_load_n(&pc_failed, __ATOMIC_RELAXED);
    printf("produced=%ld delivered=%ld failed=%ld\n", produced, delivered, failed);
    fflush(stdout);
    if (failed > 0)
        fprintf(stderr, "kafka-pc: first delivery error: %s\n", pc_first_error);
    if (left > 0)
        fprintf(stderr, "kafka-pc: %d message(s) still queued at the deadline (%d s)\n", left,
                timeout_s);
    /* Purge what is left so that destroy does not wait for it. */
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk, 0);
    rd_kafka_destroy(rk);
    return (delivered == o->n && failed == 0) ? 0 : 1;
}

/* ----------------------------------------------------------------------------- consume */

/* Classifies one message: 0 valid message *idx of run tag, 1 other run, -1 invalid. */
static int pc_check(const rd_kafka_message_t *m, const char *tag, long n, long *idx)
{
    size_t tlen = strlen(tag);
    const char *k = m->key;
    if (k == NULL || m->key_len <= tlen || memcmp(k, tag, tlen) != 0 || k[tlen] != '-')
        return 1;
    char num[32];
    size_t nlen = m->key_len - tlen - 1;
    if (nlen == 0 || nlen >= sizeof(num))
        return -1;
    memcpy(num, k + tlen + 1, nlen);
    num[nlen] = '\0';
    char *end;
    errno = 0;
    long i = strtol(num, &end, 10);
    if (errno != 0 || *end != '\0' || i < 0 || i >= n)
        return -1;
    char want[PC_PAYLOAD_MAX];
    int wlen = pc_payload(want, sizeof(want), tag, i);
    if (m->len != (size_t)wlen || memcmp(m->payload, want, (size_t)wlen) != 0)
        return -1;
    *idx = i;
    return 0;
}

static int pc_consume(const struct pc_opts *o)
{
    if (o->n < 1)
        pc_usage();
    rd_kafka_conf_t *conf = pc_conf(o);
    int timeout_s = o->timeout_s ? o->timeout_s : 60;
    char group[128];
    if (o->group != NULL) {
        snprintf(group, sizeof(group), "%s", o->group);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(group, sizeof(group), "kafka-pc-%ld-%ld-%ld", (long)getpid(), (long)ts.tv_sec,
                 ts.tv_nsec);
    }
    pc_set(conf, "group.id", group);
    pc_set(conf, "auto.offset.reset", "earliest");
    pc_set(conf, "enable.auto.commit", "false");
    pc_set(conf, "session.timeout.ms", "6000");
    pc_set(conf, "partition.assignment.strategy", "range");
    pc_apply_props(conf, o);
    rd_kafka_t *rk = pc_client(RD_KAFKA_CONSUMER, conf);
    rd_kafka_poll_set_consumer(rk);

    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, o->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kafka-pc: subscribe: %s\n", rd_kafka_err2str(err));
        rd_kafka_destroy(rk);
        return 1;
    }

    unsigned char *seen = calloc((size_t)o->n, 1);
    if (seen == NULL) {
        fprintf(stderr, "kafka-pc: out of memory\n");
        exit(1);
    }
    long consumed = 0, distinct = 0, dupes = 0, invalid = 0, foreign = 0;
    enum { PC_MAX_PARTS = 1024 };
    static unsigned char part_seen[PC_MAX_PARTS];
    int parts = 0;
    double deadline = pc_now() + timeout_s;
    while (distinct < o->n && pc_now() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m == NULL)
            continue;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "kafka-pc: consumer: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        long idx = -1;
        int c = pc_check(m, o->tag, o->n, &idx);
        if (c > 0) {
            foreign++;
        } else {
            consumed++;
            if (m->partition >= 0 && m->partition < PC_MAX_PARTS && !part_seen[m->partition]) {
                part_seen[m->partition] = 1;
                parts++;
            }
            if (c < 0) {
                if (invalid++ == 0)
                    fprintf(stderr,
                            "kafka-pc: invalid message at partition %d offset %" PRId64 "\n",
                            (int)m->partition, m->offset);
            } else if (seen[idx]) {
                dupes++;
            } else {
                seen[idx] = 1;
                distinct++;
            }
        }
        rd_kafka_message_destroy(m);
    }
    printf("consumed=%ld distinct=%ld duplicates=%ld invalid=%ld foreign=%ld partitions=%d\n",
           consumed, distinct, dupes, invalid, foreign, parts);
    fflush(stdout);
    if (distinct < o->n) {
        long first_missing = -1;
        for (long i = 0; i < o->n && first_missing < 0; i++)
            if (!seen[i])
                first_missing = i;
        fprintf(stderr, "kafka-pc: %ld of %ld messages not seen within %d s (first: %ld)\n",
                o->n - distinct, o->n, timeout_s, first_missing);
    }
    free(seen);

    /* Close the way that survives a rebalance in librdkafka 2.0.2 (a close during a rebalance
     * can otherwise abort or hang): unsubscribe, poll until the assignment is empty (bounded),
     * then close and destroy. */
    rd_kafka_unsubscribe(rk);
    double close_deadline = pc_now() + 10;
    for (;;) {
        rd_kafka_topic_partition_list_t *a = NULL;
        int cnt = 0;
        if (rd_kafka_assignment(rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a != NULL) {
            cnt = a->cnt;
            rd_kafka_topic_partition_list_destroy(a);
        }
        if (cnt == 0 || pc_now() > close_deadline)
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m != NULL)
            rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return (distinct == o->n && invalid == 0) ? 0 : 1;
}

/* ------------------------------------------------------------------------------ rewind */

/* The partition count of o->topic from metadata, or -1. */
static int pc_partition_count(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    int n = -1;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0 && md->topics[i].err == 0)
            n = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

/* (8) Halve the group's committed offsets of every partition of the topic. */
static int pc_rewind(const struct pc_opts *o)
{
    if (o->group == NULL)
        pc_usage();
    rd_kafka_conf_t *conf = pc_conf(o);
    pc_set(conf, "group.id", o->group);
    pc_set(conf, "enable.auto.commit", "false");
    pc_apply_props(conf, o);
    rd_kafka_t *rk = pc_client(RD_KAFKA_CONSUMER, conf);
    int rc = 1, n = pc_partition_count(rk, o->topic);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(l, o->topic, p);
    rd_kafka_resp_err_t err =
        n > 0 ? rd_kafka_committed(rk, l, 10000) : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    bool all = err == RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; all && i < l->cnt; i++) {
        int64_t c = l->elems[i].offset;
        all = c >= 0;
        l->elems[i].offset = c / 2;
        printf("partition=%d committed=%" PRId64 " rewound=%" PRId64 "\n",
               (int)l->elems[i].partition, c, c / 2);
    }
    if (all)
        err = rd_kafka_commit(rk, l, 0);
    if (!all || err != RD_KAFKA_RESP_ERR_NO_ERROR)
        fprintf(stderr, "kafka-pc: rewind: %s\n",
                all ? rd_kafka_err2str(err) : "a partition has no committed offset");
    else
        rc = 0;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

int main(int argc, char **argv)
{
    struct pc_opts o;
    signal(SIGPIPE, SIG_IGN);
    if (argc == 2 && strcmp(argv[1], "version") == 0) {
        printf("%s\n", rd_kafka_version_str());
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "limit") == 0) {
        char buf[512];
        int f = kts_rdk_feature_by_name(argv[2]);
        if (f < 0)
            pc_usage();
        const char *l = kts_rdk_limit((enum kts_rdk_feature)f, buf, sizeof(buf));
        if (l == NULL)
            return 1;
        printf("%s\n", l);
        return 0;
    }
    pc_parse(argc, argv, &o);
    if (strcmp(o.cmd, "create") == 0)
        return pc_create(&o);
    if (strcmp(o.cmd, "produce") == 0)
        return pc_produce(&o);
    if (strcmp(o.cmd, "consume") == 0)
        return pc_consume(&o);
    if (strcmp(o.cmd, "rewind") == 0)
        return pc_rewind(&o);
    pc_usage();
    return 2;
}
