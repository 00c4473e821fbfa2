/* SPDX-License-Identifier: MIT */
/*
 * kts_rdkconf: the librdkafka setup that write_kafka_ts's producer (kts_producer.c),
 * read_kafka_ts's consumer and its dead-letter producer (kts_consumer*.c) share: setting
 * properties, the log and error callbacks, and secret property values
 * (kts_kafka_properties_is_secret()).
 *
 * What it guarantees:
 *  1. kts_rdkconf_set() sets one property and, when librdkafka refuses it, writes
 *     "property \"KEY\": REASON" to errbuf, where REASON is librdkafka's text, or
 *     "invalid value (not shown: secret)" for a secret property: a secret value never reaches a
 *     message.
 *  2. A struct kts_rdklog holds a client's log prefix (`where`, from the caller, e.g.
 *     "read_kafka_ts plugin (NAME)"), copies of its secret property values, and its error-event
 *     limiters. Every line of kts_rdklog_log() and kts_rdklog_error() starts with the prefix and
 *     has each secret value replaced by "[redacted]" (kts_secret_mask()).
 *  3. kts_rdklog_log() (the body of a log callback) drops librdkafka's FAIL lines that repeat an
 *     error event (kts_rdk_log_is_error_event()) and logs the rest at most at debug level:
 *     "WHERE: librdkafka FACILITY: TEXT".
 *  4. kts_rdklog_error() (the body of an error callback) logs "WHERE: Kafka: REASON (ERR_NAME)"
 *     as a warning, rate-limited per kind of error (kts_rdk_limiter()).
 *  5. Secret values are wiped with explicit_bzero() before their memory is freed (a memset
 *     right before free() may be optimised away): kts_rdklog_fini() for the copies,
 *     kts_rdkconf_wipe_values() for a configuration's flattened key, value list.
 */
#ifndef KTS_RDKCONF_H
#define KTS_RDKCONF_H

#include "kts_conf.h"
#include "kts_log.h"

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* (1) rd_kafka_conf_set(); 0, or -EINVAL with the reason in errbuf. */
int kts_rdkconf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errbuf,
                    size_t errbuf_size);

/* (5) Wipe the values (odd indexes) of a flattened key, value property list, in place. */
void kts_rdkconf_wipe_values(struct kts_strv *properties);

/* (5) Wipe every string of `sv`, then free it. */
void kts_rdkconf_wipe_free(struct kts_strv *sv);

/* (2) */
struct kts_rdklog {
    char *where;                                     /* owned copy of the prefix */
    struct kts_strv secrets;                         /* owned copies, wiped by fini */
    struct kts_ratelimit limiters[KTS_RDK_LIMITERS]; /* error events, by kind */
};

/* Copy `where` and the secret values of `properties` (flattened key, value; may be NULL).
 * 0 or -ENOMEM (then call kts_rdklog_fini()). */
int kts_rdklog_init(struct kts_rdklog *l, const char *where, const struct kts_strv *properties);
/* (5) Wipe and free the copies. Idempotent. */
void kts_rdklog_fini(struct kts_rdklog *l);

/* (2) `in` with every secret value replaced, written to `out`; returns `out`. */
const char *kts_rdklog_mask(const struct kts_rdklog *l, const char *in, char *out, size_t size);

/* (3) For rd_kafka_conf_set_log_cb() callbacks; `l` NULL logs the facility only. */
void kts_rdklog_log(const struct kts_rdklog *l, int level, const char *fac, const char *buf);

/* (4) For rd_kafka_conf_set_error_cb() callbacks. Thread-safe (the limiters are). */
void kts_rdklog_error(struct kts_rdklog *l, int err, const char *reason);

#endif
