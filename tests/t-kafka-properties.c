/* SPDX-License-Identifier: MIT */
/* t-kafka-properties: src/kafka/kts_kafka_properties.c (Property / PropertyFile of both plugins)
 * against the real librdkafka (no mock: its property table and its rd_kafka_conf_set() are what is
 * tested); numbers are the guarantees of kts_kafka_properties.h. */
#include "kts_conf.h"
#include "kts_kafka_properties.h"
#include "kts_log.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char logged[8192];

static void sink(int level, const char *msg, void *opaque)
{
    (void)opaque;
    size_t l = strlen(logged);
    snprintf(logged + l, sizeof(logged) - l, "%s%d|%s", l ? " / " : "", level, msg);
}

/* Every comma-separated word of `list` occurs in `msg`. `list` and `msg` are borrowed. */
static bool has_each(const char *msg, const char *list)
{
    char copy[512], *save = NULL;
    snprintf(copy, sizeof(copy), "%s", list);
    int words = 0;
    for (char *w = strtok_r(copy, ", ", &save); w != NULL; w = strtok_r(NULL, ", ", &save)) {
        if (strstr(msg, w) == NULL) {
            diag("'%s' lacks '%s'", msg, w);
            return false;
        }
        words++;
    }
    return words > 0;
}

static int refuse_foo(const char *key, const char *value, const char *where)
{
    (void)key;
    if (strcmp(value, "foo") == 0) {
        kts_log(KTS_LOG_ERR, "%s: foo refused", where);
        return -EINVAL;
    }
    return 0;
}

int main(void)
{
    /* An enum property, the value to try and the allowed words librdkafka 2.0.2 documents. */
    static const struct {
        const char *key, *value, *words;
    } enums[] = {
        {"security.protocol", "tls", "plaintext, ssl, sasl_plaintext, sasl_ssl"},
        {"compression.codec", "brotli", "none, gzip, snappy, lz4, zstd"},
        {"compression.type", "brotli", "none, gzip, snappy, lz4, zstd"},
        {"auto.offset.reset", "oldest",
         "smallest, earliest, beginning, largest, latest, end, error"},
        {"ssl.endpoint.identification.algorithm", "xyz", "none, https"},
        {"debug", "everything", "generic, broker, topic, metadata, consumer, all"},
        /* strings librdkafka checks only in rd_kafka_new(): the list from the description */
        {"sasl.mechanism", "SCRAM", "GSSAPI, PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER"},
        {"partition.assignment.strategy", "sticky", "range, roundrobin, cooperative-sticky"},
    };
    const size_t n_enums = sizeof(enums) / sizeof(enums[0]);
    plan((int)(3 * n_enums) + 23);
    kts_log_set_sink(sink, NULL);
    char msg[1024];

    /* 1: the Range column */
    is_str(kts_kafka_properties_allowed("security.protocol"),
           "plaintext, ssl, sasl_plaintext, sasl_ssl", "1: security.protocol's values");
    is_str(kts_kafka_properties_allowed("BATCH.NUM.MESSAGES"), "1 .. 1000000",
           "1: batch.num.messages's range, name case-insensitive");
    ok(kts_kafka_properties_allowed("bootstrap.servers") == NULL,
       "1: a string property has no range");
    ok(kts_kafka_properties_allowed("no.such.property") == NULL, "1: an unknown one neither");

    /* 2: enumerations: property, value and every allowed word in the message */
    for (size_t i = 0; i < n_enums; i++) {
        int rc = kts_kafka_properties_check(enums[i].key, enums[i].value, msg, sizeof(msg));
        is_int(rc, -EINVAL, "2: %s \"%s\" refused", enums[i].key, enums[i].value);
        ok(strstr(msg, enums[i].value) != NULL && strstr(msg, "; allowed: ") != NULL,
           "2: %s: names the value and what is allowed: %s", enums[i].key, msg);
        ok(has_each(msg, enums[i].words), "2: %s: every allowed word", enums[i].key);
    }
    is_int(kts_kafka_properties_check("security.protocol", "SASL_SSL", msg, sizeof(msg)), 0,
           "2: a valid enum value is accepted");
    is_int(kts_kafka_properties_check("sasl.mechanisms", "SCRAM-SHA-512", msg, sizeof(msg)), 0,
           "2: a listed SASL mechanism is accepted");
    is_int(kts_kafka_properties_check("partition.assignment.strategy", "range, roundrobin", msg,
                                      sizeof(msg)),
           0, "2: a list of listed strategies is accepted");
    is_int(kts_kafka_properties_check("partition.assignment.strategy", "range,sticky", msg,
                                      sizeof(msg)),
           -EINVAL, "2: one unknown strategy in the list is refused: %s", msg);
    /* An integer with words (acks: -1 .. 1000 or "all"): librdkafka names neither the value
     * nor the range. */
    is_int(kts_kafka_properties_check("acks", "most", msg, sizeof(msg)), -EINVAL,
           "2: acks \"most\"");
    ok(strstr(msg, "\"most\"") && strstr(msg, "; allowed: -1 .. 1000"), "2: %s", msg);
    /* librdkafka says it itself: nothing appended, no trailing newline. */
    kts_kafka_properties_check("batch.num.messages", "0", msg, sizeof(msg));
    is_str(msg,
           "Configuration property \"batch.num.messages\" value 0 is outside allowed range "
           "1..1000000",
           "2: a range message as librdkafka writes it, trimmed");
    kts_kafka_properties_check("enable.idempotence", "maybe", msg, sizeof(msg));
    ok(strstr(msg, "true or false") && !strstr(msg, "; allowed"), "2: bool: %s", msg);

    /* 3: unknown names */
    is_int(kts_kafka_properties_check("bootstrap.server", "x:9092", msg, sizeof(msg)), -EINVAL,
           "3: unknown property refused");
    ok(strstr(msg, "No such configuration property") &&
           strstr(msg, "did you mean \"bootstrap.servers\"?"),
       "3: %s", msg);
    is_str(kts_kafka_properties_closest("secrity.protocol"), "security.protocol",
           "3: one letter missing");
    is_str(kts_kafka_properties_closest("servers"), "bootstrap.servers", "3: a dot-separated part");
    ok(kts_kafka_properties_closest("zzzzzz.qqqqqq.wwww") == NULL,
       "3: nothing close: no suggestion");

    /* 4: the option handler */
    struct kts_strv props = {0};
    struct kts_opt opt = {.name = "Property"};
    struct kts_conf *good = kts_conf_new("Property");
    struct kts_conf *bad = kts_conf_new("Property");
    struct kts_conf *extra = kts_conf_new("Property");
    if (good == NULL || bad == NULL || extra == NULL ||
        kts_conf_add_string(good, "compression.codec") || kts_conf_add_string(good, "zstd") ||
        kts_conf_add_string(bad, "compression.codec") || kts_conf_add_string(bad, "brotli") ||
        kts_conf_add_string(extra, "client.id") || kts_conf_add_string(extra, "foo"))
        BAIL_OUT("kts_conf");
    is_int(kts_kafka_properties_option(&opt, good, "p", &props, refuse_foo), 0, "4: a good pair");
    ok(props.n == 2 && strcmp(props.v[0], "compression.codec") == 0 &&
           strcmp(props.v[1], "zstd") == 0,
       "4: appended as key, value");
    logged[0] = '\0';
    is_int(kts_kafka_properties_option(&opt, bad, "p", &props, refuse_foo), -EINVAL,
           "4: a bad value");
    ok(strstr(logged, "p: Property \"compression.codec\": Invalid value \"brotli\"") &&
           strstr(logged, "; allowed: none, gzip, snappy, lz4, zstd") && props.n == 2,
       "4: logged with where and option, nothing appended: %s", logged);
    logged[0] = '\0';
    is_int(kts_kafka_properties_option(&opt, extra, "p", &props, refuse_foo), -EINVAL,
           "4: the caller's extra check refuses");
    ok(strstr(logged, "p: foo refused") && props.n == 2, "4: %s", logged);
    kts_conf_free(good);
    kts_conf_free(bad);
    kts_conf_free(extra);
    kts_strv_free(&props);
    return done_testing();
}
