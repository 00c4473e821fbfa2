/* SPDX-License-Identifier: MIT */
/* src/kafka/kts_rdkconf.c: the librdkafka setup both plugins share. Numbers in test names refer to
 * the guarantees in src/kafka/kts_rdkconf.h. */
#include "tap.h"

#include "kts_log.h"
#include "kts_rdkconf.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <string.h>

static char lines[8192];
static int nlines;

static void sink(int level, const char *msg, void *opaque)
{
    (void)opaque;
    size_t l = strlen(lines);
    snprintf(lines + l, sizeof(lines) - l, "%d %s\n", level, msg);
    nlines++;
}

static void clear(void)
{
    lines[0] = '\0';
    nlines = 0;
}

int main(void)
{
    plan(12);
    kts_log_set_sink(sink, NULL);
    char err[512] = "";

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    is_int(kts_rdkconf_set(conf, "client.id", "x", err, sizeof(err)), 0, "1 a valid property: 0");
    is_int(kts_rdkconf_set(conf, "acks", "several", err, sizeof(err)), -EINVAL,
           "1 an invalid value: -EINVAL");
    ok(strncmp(err, "property \"acks\": ", 17) == 0 && strstr(err, "Invalid value") != NULL,
       "1 the message names the property and has librdkafka's reason: %s", err);
    is_int(
        kts_rdkconf_set(conf, "sasl.oauthbearer.client.secret.nope", "hunter2", err, sizeof(err)),
        -EINVAL, "1 an unknown secret-looking property: -EINVAL");
    ok(strstr(err, "hunter2") == NULL && strstr(err, "not shown: secret") != NULL,
       "1 the secret value is not in the message: %s", err);
    rd_kafka_conf_destroy(conf);

    struct kts_strv props = {0};
    kts_strv_push(&props, "bootstrap.servers");
    kts_strv_push(&props, "h:9092");
    kts_strv_push(&props, "sasl.password");
    kts_strv_push(&props, "hunter2");
    struct kts_rdklog l;
    is_int(kts_rdklog_init(&l, "test plugin (a)", &props), 0, "2 kts_rdklog_init");

    clear();
    kts_rdklog_log(&l, KTS_LOG_WARNING, "SASL", "login as bob with hunter2 failed");
    is_str(lines, "4 test plugin (a): librdkafka SASL: login as bob with [redacted] failed\n",
           "2/3 a log line: the caller's prefix, the secret masked, librdkafka's level");
    clear();
    kts_rdklog_log(&l, KTS_LOG_ERR, "FAIL",
                   "h:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 "
                   "failed: Connection refused");
    is_int(nlines, 0, "3 a FAIL line (repeated by an error event) is dropped");
    clear();
    kts_rdklog_error(&l, RD_KAFKA_RESP_ERR__TRANSPORT, "h:9092/1: password hunter2 refused");
    kts_rdklog_error(&l, RD_KAFKA_RESP_ERR__TRANSPORT, "h:9092/1: password hunter2 refused");
    is_str(lines, "4 test plugin (a): Kafka: h:9092/1: password [redacted] refused (_TRANSPORT)\n",
           "4 an error event: prefix, masked reason, error name; its repetition rate-limited");

    char *secret_copy = l.secrets.v[0];
    ok(l.secrets.n == 1 && strcmp(secret_copy, "hunter2") == 0, "2 only the secret is kept");
    kts_rdklog_fini(&l);
    ok(l.secrets.n == 0 && l.where == NULL, "5 fini releases the copies");

    kts_rdkconf_wipe_values(&props);
    ok(props.v[1][0] == '\0' && props.v[3][0] == '\0' && strcmp(props.v[2], "sasl.password") == 0,
       "5 kts_rdkconf_wipe_values wipes the values, not the keys");
    kts_strv_free(&props);
    kts_log_set_sink(NULL, NULL);
    return done_testing();
}
