/* SPDX-License-Identifier: MIT */
/* kts_rdkver: see kts_rdkver.h. The table below is docs/LIBRDKAFKA.md's table. */
#include "kts_rdkver.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

struct row {
    const char *name;
    int since; /* 0xMMmmrr00: first good version */
    const char *since_str;
    const char *limit; /* what versions before `since` do */
};

static const struct row table[KTS_RDK_NFEATURES] = {
    [KTS_RDK_IDEMPOTENCE] = {"idempotence", 0x02030000, "2.3.0",
                             "can end an idempotent producer in a fatal error after "
                             "disconnects (librdkafka #4438)"},
    [KTS_RDK_SCRAM_KAFKA4] = {"scram-kafka4", 0x02060100, "2.6.1",
                              "fails SCRAM logins to Kafka 4.x brokers with \"invalid "
                              "credentials\" (a wrong nonce, librdkafka #4895)"},
    [KTS_RDK_COOPERATIVE] = {"cooperative", 0x020a0000, "2.10.0",
                             "is not safe with cooperative-sticky: it can abort when such a "
                             "consumer closes before its first assignment (#4312, fixed in "
                             "2.3.0), hang in close (#4528, 2.4.0), loop forever in a rebalance "
                             "(#4800, 2.6.1) and lose the assignment when offsets are committed "
                             "during a cooperative rebalance (#4908, 2.10.0)"},
    [KTS_RDK_KIP848] = {"kip848", 0x020c0000, "2.12.0",
                        "has no generally available group.protocol \"consumer\" (KIP-848: "
                        "early access from 2.4.0, preview from 2.10.0, GA in 2.12.0)"},
};

int kts_rdk_version(void)
{
    return rd_kafka_version();
}

const char *kts_rdk_version_str(void)
{
    return rd_kafka_version_str();
}

const char *kts_rdk_since(enum kts_rdk_feature f)
{
    return (unsigned)f < KTS_RDK_NFEATURES ? table[f].since_str : "?";
}

const char *kts_rdk_feature_name(enum kts_rdk_feature f)
{
    return (unsigned)f < KTS_RDK_NFEATURES ? table[f].name : NULL;
}

int kts_rdk_feature_by_name(const char *name)
{
    for (int f = 0; f < KTS_RDK_NFEATURES; f++)
        if (strcmp(table[f].name, name) == 0)
            return f;
    return -1;
}

bool kts_rdk_has_at(enum kts_rdk_feature f, int version)
{
    if ((unsigned)f >= KTS_RDK_NFEATURES)
        return false;
    /* The low byte is the pre-release number (0xff for a release): 2.3.0-RC1 is not 2.3.0. */
    unsigned v = (unsigned)version;
    unsigned need = (unsigned)table[f].since | 0xffu;
    return v >= need;
}

bool kts_rdk_has(enum kts_rdk_feature f)
{
    return kts_rdk_has_at(f, kts_rdk_version());
}

const char *kts_rdk_limit_at(enum kts_rdk_feature f, int version, char *buf, size_t size)
{
    if ((unsigned)f >= KTS_RDK_NFEATURES || kts_rdk_has_at(f, version))
        return NULL;
    unsigned v = (unsigned)version;
    snprintf(buf, size, "librdkafka before %s (here %u.%u.%u) %s", table[f].since_str, v >> 24,
             (v >> 16) & 0xffu, (v >> 8) & 0xffu, table[f].limit);
    return buf;
}

const char *kts_rdk_limit(enum kts_rdk_feature f, char *buf, size_t size)
{
    return kts_rdk_limit_at(f, kts_rdk_version(), buf, size);
}
