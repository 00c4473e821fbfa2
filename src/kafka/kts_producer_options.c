/* SPDX-License-Identifier: MIT */
/* kts_producer_options: the table write_kafka_ts reads its <Plugin> block with, and the checks
 * it cannot express (kts_producer.h, kts_producer_impl.h). */
#include "kts_producer_impl.h"

#include "kts_kafka_properties.h"
#include "kts_log.h"
#include "kts_rdkconf.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

const char *const kts_producer_format_words[] = {"json", "collectd", NULL};
const char *const kts_producer_key_words[] = {"series", "host", "none", NULL};
const char *const kts_producer_spool_mode_words[] = {"overflow", "always", NULL};
/* What the words mean, in the same order. */
const enum kts_format kts_prod_format_of_word[] = {KTS_FORMAT_TS, KTS_FORMAT_COLLECTD};
const enum kts_key_mode kts_prod_key_of_word[] = {KTS_KEY_SERIES, KTS_KEY_HOST, KTS_KEY_NONE};

/* Property "key" "value" and PropertyFile "key" "/path": kts_kafka_properties_option(), shared with
 * read_kafka_ts (librdkafka checks the pair; its errors name the allowed values). */
static int property_option(const struct kts_opt *opt, void *obj, const struct kts_conf *item,
                           const char *where)
{
    struct kts_producer_config *cfg = obj;
    return kts_kafka_properties_option(opt, item, where, &cfg->properties, NULL);
}

#define OFF(f) offsetof(struct kts_producer_config, f)
const struct kts_opt kts_producer_options[] = {
    {"Topic", KTS_OPT_STRING, OFF(topic), NULL, 0, 0, NULL, NULL, KTS_OPT_REQUIRED,
     "Kafka topic every value list is written to"},
    {"Format", KTS_OPT_ENUM, OFF(format), "json", 0, 0, kts_producer_format_words, NULL, 0,
     "message format: json (time-series JSON v1, docs/FORMAT.md) or collectd (stock write_kafka "
     "JSON)"},
    {"Key", KTS_OPT_ENUM, OFF(key), "series", 0, 0, kts_producer_key_words, NULL, 0,
     "message key: series (host/plugin-instance/type-instance), host, or none"},
    {"Property", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, property_option, 0,
     "any librdkafka property, e.g. Property \"bootstrap.servers\" \"host:9092\" (repeatable)"},
    {"PropertyFile", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, property_option, 0,
     "a librdkafka property whose value is read from a file (for secrets; repeatable)"},
    {"BufferMessages", KTS_OPT_INT, OFF(buffer_messages), "100000", 1, 10000000, NULL, NULL, 0,
     "most value lists waiting for delivery (queue.buffering.max.messages)"},
    {"BufferBytes", KTS_OPT_INT, OFF(buffer_kbytes), "268435456", 1024, 2147483647.0 * 1024, NULL,
     NULL, 0, "most payload bytes waiting for delivery (queue.buffering.max.kbytes × 1024)"},
    {"BlockTimeout", KTS_OPT_DURATION, OFF(block_timeout), "5", 0, 3600, NULL, NULL, 0,
     "seconds a write waits for queue space before the value list is dropped"},
    {"FlushTimeout", KTS_OPT_DURATION, OFF(flush_timeout), "10", 0, 3600, NULL, NULL, 0,
     "seconds shutdown waits for outstanding deliveries"},
    {"SkipMarked", KTS_OPT_BOOL, OFF(skip_marked), "true", 0, 0, NULL, NULL, 0,
     "skip value lists dispatched by read_kafka_ts (loop prevention)"},
    {"Instance", KTS_OPT_STRING, OFF(name), NULL, 0, 0, NULL, NULL, 0,
     "name in log lines and self-metrics (default: the topic)"},
    {"SpoolDirectory", KTS_OPT_STRING, OFF(spool_dir), NULL, 0, 0, NULL, NULL, 0,
     "absolute path of the on-disk spool for outages longer than the buffer, or \"none\" "
     "(default: BaseDir/write_kafka_ts/<Instance>)"},
    {"SpoolMaxBytes", KTS_OPT_INT, OFF(spool_max_bytes), "1073741824", 1048576, 1125899906842624.0,
     NULL, NULL, 0, "most bytes the spool files may hold; when full, value lists are dropped"},
    {"SpoolSync", KTS_OPT_BOOL, OFF(spool_sync), "false", 0, 0, NULL, NULL, 0,
     "fdatasync the spool once a second (survives power loss, not only a crash)"},
    {"SpoolMode", KTS_OPT_ENUM, OFF(spool_mode), "overflow", 0, 0, kts_producer_spool_mode_words,
     NULL, 0,
     "overflow: spool what the memory buffer cannot hold; always: write-ahead, every value list "
     "on disk until the broker acknowledges it"},
    KTS_OPT_END,
};
#undef OFF

void kts_producer_config_free(struct kts_producer_config *cfg)
{
    kts_rdkconf_wipe_values(&cfg->properties); /* some are secrets */
    kts_opt_free(kts_producer_options, cfg);
    free(cfg->log_prefix);
    cfg->log_prefix = NULL;
    kts_strv_free(&cfg->properties);
}

int kts_producer_config_check(const struct kts_producer_config *cfg, const char *where)
{
    int rc = 0;
    bool off = cfg->spool_dir != NULL && strcmp(cfg->spool_dir, "none") == 0;
    if (cfg->spool_dir != NULL && !off && cfg->spool_dir[0] != '/') {
        kts_log(KTS_LOG_ERR,
                "%s: invalid value \"%s\" for option \"SpoolDirectory\"; allowed: an "
                "absolute path, or \"none\" (no spool)",
                where, cfg->spool_dir);
        rc = -EINVAL;
    }
    if (off && cfg->spool_sync) {
        kts_log(KTS_LOG_ERR,
                "%s: option \"SpoolSync\" needs a spool: remove it or "
                "SpoolDirectory \"none\"",
                where);
        rc = -EINVAL;
    }
    if (off && cfg->spool_mode == KTS_SPOOL_MODE_ALWAYS) {
        kts_log(KTS_LOG_ERR,
                "%s: option \"SpoolMode\" \"always\" needs a spool: remove it or "
                "SpoolDirectory \"none\"",
                where);
        rc = -EINVAL;
    }
    return rc;
}
