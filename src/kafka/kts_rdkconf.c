/* SPDX-License-Identifier: MIT */
/* kts_rdkconf: see kts_rdkconf.h for the guarantees (numbers below refer to them). */
#include "kts_rdkconf.h"

#include "kts_kafka_properties.h"
#include "kts_secret.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kts_rdkconf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errbuf,
                    size_t errbuf_size)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(errbuf, errbuf_size, "property \"%s\": %s", key,
             kts_kafka_properties_is_secret(key) ? "invalid value (not shown: secret)" : errstr);
    return -EINVAL;
}

void kts_rdkconf_wipe_values(struct kts_strv *properties)
{
    for (size_t i = 1; i < properties->n; i += 2)
        explicit_bzero(properties->v[i], strlen(properties->v[i]));
}

void kts_rdkconf_wipe_free(struct kts_strv *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        explicit_bzero(sv->v[i], strlen(sv->v[i]));
    kts_strv_free(sv);
}

int kts_rdklog_init(struct kts_rdklog *l, const char *where, const struct kts_strv *properties)
{
    memset(l, 0, sizeof(*l));
    for (int i = 0; i < KTS_RDK_LIMITERS; i++)
        l->limiters[i].interval_s = 10;
    l->where = strdup(where);
    if (l->where == NULL)
        return -ENOMEM;
    for (size_t i = 0; properties != NULL && i + 1 < properties->n; i += 2)
        if (kts_kafka_properties_is_secret(properties->v[i]) &&
            kts_strv_push(&l->secrets, properties->v[i + 1]) < 0)
            return -ENOMEM;
    return 0;
}

void kts_rdklog_fini(struct kts_rdklog *l)
{
    kts_rdkconf_wipe_free(&l->secrets);
    free(l->where);
    l->where = NULL;
}

const char *kts_rdklog_mask(const struct kts_rdklog *l, const char *in, char *out, size_t size)
{
    return kts_secret_mask(&l->secrets, in, out, size);
}

void kts_rdklog_log(const struct kts_rdklog *l, int level, const char *fac, const char *buf)
{
    char masked[1024];
    if (kts_rdk_log_is_error_event(level, fac))
        return; /* the error callback logs the same failure, with the error's name */
    if (level > KTS_LOG_DEBUG)
        level = KTS_LOG_DEBUG;
    if (l == NULL)
        kts_log(level, "librdkafka %s: (message withheld)", fac);
    else
        kts_log(level, "%s: librdkafka %s: %s", l->where, fac,
                kts_rdklog_mask(l, buf, masked, sizeof(masked)));
}

void kts_rdklog_error(struct kts_rdklog *l, int err, const char *reason)
{
    char masked[1024];
    kts_log_limited(kts_rdk_limiter(l->limiters, err, reason), KTS_LOG_WARNING,
                    "%s: Kafka: %s (%s)", l->where,
                    kts_rdklog_mask(l, reason, masked, sizeof(masked)), rd_kafka_err2name(err));
}
