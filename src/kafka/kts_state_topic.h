/* SPDX-License-Identifier: MIT */
/*
 * kts_state_topic: the state topic's start-up rule (kts_consumer.h 12) for a program other than
 * the consumer that writes a state topic (kts-filter --seed-topic), so it creates or refuses the
 * topic exactly as read_kafka_ts would.
 */
#ifndef KTS_STATE_TOPIC_H
#define KTS_STATE_TOPIC_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* The input topic exists; the state topic exists (created if missing: cleanup.policy=compact,
 * the input's partition count) with as many partitions as the input and cleanup.policy
 * compact. `rk` is any client of the cluster (admin calls); `where` prefixes the log line of a
 * creation. 0, or a negative errno with errbuf naming both topics. */
int kts_state_topic_check(rd_kafka_t *rk, const char *input, const char *state, const char *where,
                          char *errbuf, size_t errbuf_size);

/* `topic`'s cleanup.policy into out (DescribeConfigs): 0; -EAGAIN when the broker that answered
 * does not know the topic (yet: a topic just created reaches the brokers' metadata one by one;
 * kts_state_topic_check asks again every 0.5 s for up to 15 s); -EIO on any other error; each
 * failure with errbuf naming the topic and the broker's error. For tests/t-consumer-state.c
 * (kts_testhooks.h). */
int kts_state_topic_policy(rd_kafka_t *rk, const char *topic, char *out, size_t size, char *errbuf,
                           size_t errbuf_size);

#endif
