/* SPDX-License-Identifier: MIT */
/* kts_consumer_dlq: bad messages and the dead-letter producer of the consumer
 * (kts_consumer_impl.h); numbers refer to the guarantees in kts_consumer.h (5). */
#include "kts_consumer_impl.h"

#include "kts_rdkconf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void on_dlq_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct kts_consumer *c = opaque;
    struct msg *msg = m->_private;
    (void)rk;
    pthread_mutex_lock(&c->lock);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        c->st.dead_lettered++;
    } else {
        c->st.dead_letter_failed++;
        kts_log_limited(&c->rl_dlq, KTS_LOG_ERR,
                        "%s: copy to dead-letter topic \"%s\" failed: %s; "
                        "the bad message is skipped",
                        c->where, c->dlq_topic, rd_kafka_err2str(m->err));
    }
    kts_inflight_msg_done(&msg->im);
    pthread_mutex_unlock(&c->lock);
}

/* A bad message (5): m->im.pending is 0 unless the dead-letter copy is under way. Lock held. */
void kts_cons_bad_message(struct kts_consumer *c, const rd_kafka_message_t *km, struct msg *m,
                          const char *why)
{
    c->st.decode_errors++;
    const char *topic = rd_kafka_topic_name(km->rkt);
    kts_log_limited(&c->rl_bad, KTS_LOG_WARNING,
                    "%s: bad message at %s [%d] offset %lld (%zu bytes): %s", c->where, topic,
                    (int)km->partition, (long long)km->offset, km->len, why);
    if (c->dlq == NULL)
        return;
    char part[16], off[24];
    snprintf(part, sizeof(part), "%d", (int)km->partition);
    snprintf(off, sizeof(off), "%lld", (long long)km->offset);
    m->im.pending++;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        c->dlq, RD_KAFKA_V_TOPIC(c->dlq_topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(km->key, km->key_len), RD_KAFKA_V_VALUE(km->payload, km->len),
        RD_KAFKA_V_HEADER("kts.source.topic", topic, -1),
        RD_KAFKA_V_HEADER("kts.source.partition", part, -1),
        RD_KAFKA_V_HEADER("kts.source.offset", off, -1), RD_KAFKA_V_HEADER("kts.error", why, -1),
        RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        m->im.pending--;
        c->st.dead_letter_failed++;
        kts_log_limited(&c->rl_dlq, KTS_LOG_ERR, "%s: cannot copy to dead-letter topic \"%s\": %s",
                        c->where, c->dlq_topic, rd_kafka_err2str(err));
    }
}

int kts_cons_conn_conf(rd_kafka_conf_t *pc, const struct kts_consumer_config *cfg, char *errbuf,
                       size_t errbuf_size)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i + 1 < cfg->properties.n; i += 2) {
        const char *k = cfg->properties.v[i];
        /* Consumer-only properties would only produce warnings on a producer. */
        if (strncasecmp(k, "bootstrap", 9) == 0 || strncasecmp(k, "security", 8) == 0 ||
            strncasecmp(k, "sasl", 4) == 0 || strncasecmp(k, "ssl", 3) == 0 ||
            strcasecmp(k, "metadata.broker.list") == 0 || strcasecmp(k, "client.id") == 0)
            rc = kts_rdkconf_set(pc, k, cfg->properties.v[i + 1], errbuf, errbuf_size);
    }
    return rc;
}

/* The dead-letter producer's properties: the connection ones of the consumer's. */
static int dlq_conf(rd_kafka_conf_t *pc, const struct kts_consumer_config *cfg, char *errbuf,
                    size_t errbuf_size)
{
    int rc = kts_cons_conn_conf(pc, cfg, errbuf, errbuf_size);
    if (rc == 0)
        rc = kts_rdkconf_set(pc, "message.timeout.ms", "30000", errbuf, errbuf_size);
    /* A bad message may be as large as the broker allows; copy it with its headers. */
    if (rc == 0)
        rc = kts_rdkconf_set(pc, "message.max.bytes", "16777216", errbuf, errbuf_size);
    return rc;
}

int kts_cons_dlq_create(struct kts_consumer *c, const struct kts_consumer_config *cfg, char *errbuf,
                        size_t errbuf_size)
{
    if (cfg->dead_letter_topic == NULL)
        return 0;
    /* The dead-letter producer (5): same connection properties, its own handle. */
    c->dlq_topic = strdup(cfg->dead_letter_topic);
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(pc, c);
    rd_kafka_conf_set_log_cb(pc, kts_cons_on_log);
    rd_kafka_conf_set_error_cb(pc, kts_cons_on_error);
    rd_kafka_conf_set_dr_msg_cb(pc, on_dlq_delivery);
    int rc = dlq_conf(pc, cfg, errbuf, errbuf_size);
    if (rc == 0 && c->dlq_topic == NULL)
        rc = -ENOMEM;
    char errstr[512];
    if (rc == 0 && (c->dlq = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof(errstr))) == NULL) {
        char masked[1024];
        snprintf(errbuf, errbuf_size, "cannot create the dead-letter producer: %s",
                 kts_rdklog_mask(&c->log, errstr, masked, sizeof(masked)));
        rc = -EINVAL;
    }
    if (c->dlq == NULL)
        rd_kafka_conf_destroy(pc);
    return rc;
}

void kts_cons_dlq_poll(struct kts_consumer *c)
{
    if (c->dlq)
        rd_kafka_poll(c->dlq, 0);
}

void kts_cons_dlq_close(struct kts_consumer *c)
{
    if (c->dlq != NULL) {
        rd_kafka_flush(c->dlq, 5000);
        rd_kafka_destroy(c->dlq);
        c->dlq = NULL;
    }
}
