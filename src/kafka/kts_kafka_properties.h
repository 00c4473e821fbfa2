/* SPDX-License-Identifier: MIT */
/* kts_kafka_properties: librdkafka properties given with Property / PropertyFile, shared by
 * write_kafka_ts (kts_producer.c) and read_kafka_ts (kts_consumer.c).
 *
 * What it guarantees:
 *  1. kts_kafka_properties_allowed() returns the "Range" column of librdkafka's own property table
 *     (rd_kafka_conf_properties_show()) for a property or its alias: e.g. "plaintext, ssl,
 *     sasl_plaintext, sasl_ssl" or "1 .. 1000000"; for a string property whose description
 *     lists its values (sasl.mechanism(s): "Supported: ...", partition.assignment.strategy:
 *     "Available strategies: ...") that list; NULL for other properties (free strings).
 *     The table is read once per process (pthread_once) and kept until exit.
 *  2. kts_kafka_properties_check() asks librdkafka (rd_kafka_conf_set on a fresh conf) and, when it
 *     refuses, writes a message that names the property, the value (unless the property is a
 *     secret: kts_kafka_properties_is_secret()) and what is allowed: librdkafka's own text, plus
 *     "; allowed: <Range column>" when librdkafka did not say it itself. Values of the string
 *     properties of (1) with a list, which librdkafka checks only in rd_kafka_new(), are
 *     checked here against that list (each comma-separated element, case-insensitively).
 *  3. For an unknown property name the message adds the closest known name (edit distance at
 *     most 3, or one containing the other as a dot-separated part), e.g. "did you mean
 *     \"bootstrap.servers\"?".
 *  4. kts_kafka_properties_option() is the Property / PropertyFile option handler of both plugins:
 * two strings, the value read from the file for PropertyFile (kts_secret.h), checked by (2), then
 *     by an optional extra check of the caller, appended as key, value to a struct kts_strv.
 *     Values read from a file are wiped before they are freed.
 */
#ifndef KTS_KAFKA_PROPERTIES_H
#define KTS_KAFKA_PROPERTIES_H

#include "kts_conf.h"

#include <stdbool.h>
#include <stddef.h>

/* Is this librdkafka property's value a secret (never logged)? `name` is borrowed. */
bool kts_kafka_properties_is_secret(const char *name);

/* The "Range" column of librdkafka's table for `name` (case-insensitive; an alias resolves to
 * the same row). The returned string is static (owned by this module, valid until exit); NULL
 * when the property has no range/values or is unknown. `name` is borrowed. */
const char *kts_kafka_properties_allowed(const char *name);

/* The known property name closest to `name` (guarantee 3), or NULL. Static string, as above. */
const char *kts_kafka_properties_closest(const char *name);

/* Checks key = value with librdkafka. Returns 0, or -EINVAL with the message of guarantee 2/3 in
 * errbuf (without the "where: Property "key"" prefix the caller adds). Strings are borrowed. */
int kts_kafka_properties_check(const char *key, const char *value, char *errbuf,
                               size_t errbuf_size);

/* Extra check of one plugin after librdkafka accepted key = value: logs and returns -EINVAL to
 * refuse. Strings are borrowed. */
typedef int kts_kafka_properties_extra_fn(const char *key, const char *value, const char *where);

/* Property / PropertyFile handler (guarantee 4). `opt`, `item`, `where` are borrowed; on success
 * copies of key and value are appended to `props` (owned by its owner). `extra` may be NULL.
 * Logs every error through kts_log() and returns 0, -EINVAL or -ENOMEM. */
int kts_kafka_properties_option(const struct kts_opt *opt, const struct kts_conf *item,
                                const char *where, struct kts_strv *props,
                                kts_kafka_properties_extra_fn *extra);

#endif
