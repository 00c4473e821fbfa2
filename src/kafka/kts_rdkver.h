/* SPDX-License-Identifier: MIT */
/*
 * kts_rdkver: what the plugins may do with the librdkafka they run on, decided at run time from
 * rd_kafka_version() (the library actually loaded, not the headers built against). The one
 * place that knows librdkafka's bugs by version; docs/LIBRDKAFKA.md is the same table in prose.
 *
 *  1. kts_rdk_has(f) is true when the linked librdkafka is at least the version in which every
 *     bug that stands in the way of feature f is fixed (kts_rdk_since(f)).
 *  2. kts_rdk_limit(f) names the limitation (versions affected, the linked version, the
 *     librdkafka issues) when f is missing, and is NULL when the linked librdkafka has f: a log
 *     line that blames a librdkafka bug uses it, so it names the bug only on affected versions.
 *  3. The _at variants take a version in rd_kafka_version()'s encoding (0xMMmmrrpp), for tests.
 */
#ifndef KTS_RDKVER_H
#define KTS_RDKVER_H

#include <stdbool.h>
#include <stddef.h>

enum kts_rdk_feature {
    KTS_RDK_IDEMPOTENCE,  /* enable.idempotence safe after disconnects (#4438): 2.3.0 */
    KTS_RDK_SCRAM_KAFKA4, /* SCRAM logins to Kafka 4.x brokers (#4895): 2.6.1 */
    KTS_RDK_COOPERATIVE,  /* cooperative-sticky with stored offsets + auto commit: 2.10.0 */
    KTS_RDK_KIP848,       /* group.protocol "consumer" (KIP-848) generally available: 2.12.0 */
    KTS_RDK_NFEATURES
};

/* The linked librdkafka's version (rd_kafka_version()) and its "2.0.2" form. */
int kts_rdk_version(void);
const char *kts_rdk_version_str(void);

/* "2.3.0": the first version that has `f`. */
const char *kts_rdk_since(enum kts_rdk_feature f);
/* Short name of `f` ("idempotence", "scram-kafka4", "cooperative", "kip848"); NULL if unknown. */
const char *kts_rdk_feature_name(enum kts_rdk_feature f);
/* The feature called `name` (as above), or -1. */
int kts_rdk_feature_by_name(const char *name);

bool kts_rdk_has_at(enum kts_rdk_feature f, int version);
bool kts_rdk_has(enum kts_rdk_feature f);

/* NULL when `version` has f; else a sentence such as "librdkafka before 2.3.0 (here 2.0.2) can
 * end an idempotent producer in a fatal error after disconnects (librdkafka #4438)", written
 * into buf (truncated to size). */
const char *kts_rdk_limit_at(enum kts_rdk_feature f, int version, char *buf, size_t size);
const char *kts_rdk_limit(enum kts_rdk_feature f, char *buf, size_t size);

#endif
