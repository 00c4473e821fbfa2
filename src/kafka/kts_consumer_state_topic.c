/* SPDX-License-Identifier: MIT */
/* kts_consumer_state_topic: the state topic at start-up (kts_consumer.h 12): the input topic's
 * partition count, creating the state topic compacted, or refusing an existing one that does
 * not match. Only Admin API calls present in librdkafka 2.0.2 (CreateTopics, DescribeConfigs,
 * metadata). */
#include "kts_consumer_state_impl.h"
#include "kts_state_topic.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ADMIN_TIMEOUT_MS 15000

/* Partition count of `topic` from a full metadata request (a request naming the topic could
 * create it on brokers with auto.create.topics.enable): > 0, 0 missing, < 0 error. */
static int partitions_of(rd_kafka_t *rk, const char *topic, char *errbuf, size_t errbuf_size)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, ADMIN_TIMEOUT_MS);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errbuf, errbuf_size, "StateTopic: cannot read the cluster's metadata: %s",
                 rd_kafka_err2str(err));
        return -EIO;
    }
    int n = 0;
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0 && md->topics[i].err == 0)
            n = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

/* Wait for an admin result event of `type` on `q`; NULL after the timeout. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, rd_kafka_event_type_t type)
{
    int64_t until = kts_inflight_now_ns() + (int64_t)ADMIN_TIMEOUT_MS * 1000000;
    while (kts_inflight_now_ns() < until) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 1000);
        if (ev != NULL && rd_kafka_event_type(ev) == type)
            return ev;
        if (ev != NULL)
            rd_kafka_event_destroy(ev);
    }
    return NULL;
}

static int create_topic(rd_kafka_t *rk, const char *topic, int parts, char *errbuf,
                        size_t errbuf_size)
{
    char errstr[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, parts, -1, errstr, sizeof(errstr));
    if (nt == NULL) {
        snprintf(errbuf, errbuf_size, "StateTopic \"%s\": %s", topic, errstr);
        return -EINVAL;
    }
    rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT);
    int rc = -EIO;
    if (ev == NULL) {
        snprintf(errbuf, errbuf_size, "StateTopic \"%s\": no answer to creating it", topic);
    } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errbuf, errbuf_size, "StateTopic \"%s\": cannot create it: %s", topic,
                 rd_kafka_event_error_string(ev));
    } else {
        size_t n = 0;
        const rd_kafka_topic_result_t **tr =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        rd_kafka_resp_err_t e = n == 1 ? rd_kafka_topic_result_error(tr[0]) : 0;
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            rc = e == RD_KAFKA_RESP_ERR_NO_ERROR ? 1 : 0; /* a race: checked as existing */
        else
            snprintf(errbuf, errbuf_size, "StateTopic \"%s\": cannot create it: %s", topic,
                     rd_kafka_topic_result_error_string(tr[0]));
    }
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

int kts_state_topic_policy(rd_kafka_t *rk, const char *topic, char *out, size_t size, char *errbuf,
                           size_t errbuf_size)
{
    out[0] = '\0';
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DescribeConfigs(rk, &cr, 1, NULL, q);
    rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT);
    int rc = -EIO;
    if (ev == NULL || rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errbuf, errbuf_size, "StateTopic \"%s\": cannot read its configuration: %s", topic,
                 ev ? rd_kafka_event_error_string(ev) : "no answer");
    } else {
        size_t n = 0, nc = 0;
        const rd_kafka_ConfigResource_t **rs = rd_kafka_DescribeConfigs_result_resources(
            rd_kafka_event_DescribeConfigs_result(ev), &n);
        rd_kafka_resp_err_t e =
            n == 1 ? rd_kafka_ConfigResource_error(rs[0]) : RD_KAFKA_RESP_ERR__BAD_MSG;
        const rd_kafka_ConfigEntry_t **ce =
            e == RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_ConfigResource_configs(rs[0], &nc) : NULL;
        for (size_t i = 0; i < nc; i++)
            if (strcmp(rd_kafka_ConfigEntry_name(ce[i]), "cleanup.policy") == 0 &&
                rd_kafka_ConfigEntry_value(ce[i]) != NULL)
                snprintf(out, size, "%s", rd_kafka_ConfigEntry_value(ce[i]));
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            snprintf(errbuf, errbuf_size, "StateTopic \"%s\": cannot read its configuration: %s",
                     topic,
                     n == 1 && rd_kafka_ConfigResource_error_string(rs[0]) != NULL
                         ? rd_kafka_ConfigResource_error_string(rs[0])
                         : rd_kafka_err2str(e));
        rc = e == RD_KAFKA_RESP_ERR_NO_ERROR                ? 0
             : e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ? -EAGAIN
                                                            : -EIO;
    }
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(cr);
    return rc;
}

int kts_cons_state_topic_check(rd_kafka_t *rk, const char *input, const char *state,
                               const char *where, char *errbuf, size_t errbuf_size)
{
    int in_parts = partitions_of(rk, input, errbuf, errbuf_size);
    if (in_parts < 0)
        return in_parts;
    if (in_parts == 0) {
        snprintf(errbuf, errbuf_size,
                 "StateTopic \"%s\": the input topic \"%s\" does not exist (its partition "
                 "count sets the state topic's): create it first",
                 state, input);
        return -ENOENT;
    }
    int st_parts = partitions_of(rk, state, errbuf, errbuf_size);
    if (st_parts < 0)
        return st_parts;
    if (st_parts == 0) {
        int rc = create_topic(rk, state, in_parts, errbuf, errbuf_size);
        if (rc < 0)
            return rc;
        if (rc == 1)
            kts_log(KTS_LOG_INFO,
                    "%s: StateTopic \"%s\" created: %d partition(s) like \"%s\", "
                    "cleanup.policy=compact",
                    where, state, in_parts, input);
        for (int i = 0; i < 30 && (st_parts = partitions_of(rk, state, errbuf, errbuf_size)) == 0;
             i++)
            usleep(500000); /* the metadata catches up */
        if (st_parts <= 0) {
            snprintf(errbuf, errbuf_size, "StateTopic \"%s\": created but not visible", state);
            return -EIO;
        }
    }
    if (st_parts != in_parts) {
        snprintf(errbuf, errbuf_size,
                 "StateTopic \"%s\" has %d partition(s) but the input topic \"%s\" has %d: they "
                 "must be equal (use another StateTopic name, or delete \"%s\")",
                 state, st_parts, input, in_parts, state);
        return -EINVAL;
    }
    char policy[128];
    int rc;
    for (int i = 0; (rc = kts_state_topic_policy(rk, state, policy, sizeof(policy), errbuf,
                                                 errbuf_size)) == -EAGAIN &&
                    i < 30;
         i++)
        usleep(500000); /* the broker that answered learns of the topic */
    if (rc < 0)
        return rc;
    if (strcmp(policy, "compact") != 0) {
        snprintf(errbuf, errbuf_size,
                 "StateTopic \"%s\" has cleanup.policy \"%s\", not \"compact\" (input topic "
                 "\"%s\"): old states would be deleted or never compacted; use another "
                 "StateTopic name, or set cleanup.policy=compact on \"%s\"",
                 state, policy, input, state);
        return -EINVAL;
    }
    return 0;
}

int kts_state_topic_check(rd_kafka_t *rk, const char *input, const char *state, const char *where,
                          char *errbuf, size_t errbuf_size)
{
    return kts_cons_state_topic_check(rk, input, state, where, errbuf, errbuf_size);
}
