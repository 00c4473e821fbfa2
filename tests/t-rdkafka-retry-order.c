/* SPDX-License-Identifier: MIT */
/*
 * t-rdkafka-retry-order: what librdkafka itself guarantees for per-partition order when a
 * Produce request is answered with a retriable error (docs/write_kafka_ts.md, Ordering).
 * librdkafka's mock cluster (one broker, one partition); 5,000 messages in batches of 500 with
 * max.in.flight.requests.per.connection 1, as write_kafka_ts sets it; the first Produce request
 * is answered NOT_ENOUGH_REPLICAS (what a restarted cluster answers until its ISRs are back).
 *  1. Without idempotence every message arrives (no loss, retries are unlimited).
 *  2. Without idempotence the order is reported as a TAP TODO: librdkafka writes the batch after
 *     the failed one FIRST (max.in.flight is enforced when a request is sent, and the next
 *     request is already built), seen here as one block of 500 out of order with 2.0.2, 2.8.0
 *     and 2.14.2 alike: not a bug of one version but what a producer without idempotence may
 *     do. It depends on timing: 2.8.0 kept the order in one run of a trixie root. When this
 *     TODO always passes, librdkafka has changed: update docs/write_kafka_ts.md.
 *  3. With enable.idempotence every message arrives in order (the remedy, and write_kafka_ts's
 *     default where it is safe: librdkafka >= 2.3.0, #4438; docs/LIBRDKAFKA.md).
 */
#include "tap.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOTAL 5000

struct result {
    int got, back, blocks;
};

static int set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char e[256];
    if (rd_kafka_conf_set(c, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        diag("%s: %s", k, e);
        return -1;
    }
    return 0;
}

/* Produces TOTAL messages "0".."4999" (after one to learn the topic) with the first Produce
 * request answered NOT_ENOUGH_REPLICAS, reads the partition back into *r. 0 or -1. */
static int run(int idempotent, struct result *r)
{
    char e[256], buf[32];
    memset(r, 0, sizeof(*r));
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (set(c, "test.mock.num.brokers", "1") ||
        set(c, "max.in.flight.requests.per.connection", "1") ||
        set(c, "batch.num.messages", "500") || set(c, "linger.ms", "50") ||
        set(c, "message.timeout.ms", "0") ||
        set(c, "enable.idempotence", idempotent ? "true" : "false") || set(c, "log_level", "3")) {
        rd_kafka_conf_destroy(c);
        return -1;
    }
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
    if (p == NULL) {
        diag("producer: %s", e);
        return -1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(p);
    rd_kafka_mock_topic_create(mc, "t", 1, 1);
    rd_kafka_producev(p, RD_KAFKA_V_TOPIC("t"), RD_KAFKA_V_VALUE("-1", 2),
                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    rd_kafka_flush(p, 60000);
    rd_kafka_mock_push_request_errors(mc, 0 /* Produce */, 1,
                                      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
    for (int i = 0; i < TOTAL; i++) {
        int n = snprintf(buf, sizeof(buf), "%d", i);
        rd_kafka_producev(p, RD_KAFKA_V_TOPIC("t"), RD_KAFKA_V_VALUE(buf, (size_t)n),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    }
    rd_kafka_flush(p, 120000);

    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    set(cc, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc));
    set(cc, "group.id", "t-rdkafka-retry-order");
    rd_kafka_t *k = rd_kafka_new(RD_KAFKA_CONSUMER, cc, e, sizeof(e));
    if (k == NULL) {
        diag("consumer: %s", e);
        rd_kafka_destroy(p);
        return -1;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, "t", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(k, l);
    rd_kafka_topic_partition_list_destroy(l);
    int last = -1, inblock = 0;
    while (r->got < TOTAL) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(k, 30000);
        if (m == NULL)
            break; /* nothing more within 30 s */
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            char v[32];
            size_t n = m->len < sizeof(v) - 1 ? m->len : sizeof(v) - 1;
            memcpy(v, m->payload, n);
            v[n] = '\0';
            int x = atoi(v);
            if (x >= 0) {
                r->got++;
                if (x < last) {
                    r->back++;
                    if (!inblock)
                        diag("%s: value %d at offset %lld after value %d",
                             idempotent ? "idempotent" : "not idempotent", x, (long long)m->offset,
                             last);
                    r->blocks += !inblock;
                    inblock = 1;
                } else {
                    inblock = 0;
                    last = x;
                }
            }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(k);
    rd_kafka_destroy(k);
    rd_kafka_destroy(p);
    return 0;
}

int main(void)
{
    struct result r;
    plan(4);
    diag("librdkafka %s", rd_kafka_version_str());
    int rc = run(0, &r);
    ok(rc == 0 && r.got == TOTAL, "1: without idempotence every message arrives (%d of %d)", r.got,
       TOTAL);
    /* 2: a TODO (tap.h has no directive of its own): printed, never counted as a failure */
    tap_run++;
    printf(
        "%s %d - 2: without idempotence order kept after NOT_ENOUGH_REPLICAS (%d out of order in "
        "%d block(s)) # TODO librdkafka without idempotence (2.0.2, 2.8.0, 2.14.2) may write "
        "the next, already built batch first (docs/write_kafka_ts.md, Ordering)\n",
        rc == 0 && r.back == 0 ? "ok" : "not ok", tap_run, r.back, r.blocks);
    rc = run(1, &r);
    ok(rc == 0 && r.got == TOTAL, "3: with enable.idempotence every message arrives (%d of %d)",
       r.got, TOTAL);
    ok(rc == 0 && r.back == 0, "3: with enable.idempotence order kept (%d out of order)", r.back);
    return done_testing();
}
