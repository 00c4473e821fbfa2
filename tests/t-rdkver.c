/* SPDX-License-Identifier: MIT */
/* t-rdkver: src/kafka/kts_rdkver.c, the librdkafka version table (docs/LIBRDKAFKA.md); numbers are
 * the guarantees of kts_rdkver.h. The table is checked at fixed versions (Debian 12's 2.0.2,
 * Debian 13's 2.8.0, unstable's 2.14.2 and each boundary), then once against the linked one. */
#include "kts_rdkver.h"
#include "tap.h"

#include <librdkafka/rdkafka.h>
#include <string.h>

#define V(a, b, c)                                                                                 \
    ((int)(((unsigned)(a) << 24) | ((unsigned)(b) << 16) | ((unsigned)(c) << 8) | 0xffu))

int main(void)
{
    char buf[512];
    const char *l;
    plan(28);
    diag("linked librdkafka %s (0x%08x)", kts_rdk_version_str(), (unsigned)kts_rdk_version());

    /* 1: the thresholds */
    struct {
        int f;
        int below, at;
    } cases[] = {
        {KTS_RDK_IDEMPOTENCE, V(2, 2, 0), V(2, 3, 0)},
        {KTS_RDK_SCRAM_KAFKA4, V(2, 6, 0), V(2, 6, 1)},
        {KTS_RDK_COOPERATIVE, V(2, 8, 0), V(2, 10, 0)},
        {KTS_RDK_KIP848, V(2, 11, 1), V(2, 12, 0)},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *n = kts_rdk_feature_name(cases[i].f);
        ok(!kts_rdk_has_at(cases[i].f, cases[i].below), "1: %s missing just below %s", n,
           kts_rdk_since(cases[i].f));
        ok(kts_rdk_has_at(cases[i].f, cases[i].at), "1: %s present from %s", n,
           kts_rdk_since(cases[i].f));
        ok(!kts_rdk_has_at(cases[i].f, cases[i].at & ~0xff), "1: %s: a pre-release of %s is not %s",
           n, kts_rdk_since(cases[i].f), kts_rdk_since(cases[i].f));
        is_int(kts_rdk_feature_by_name(n), cases[i].f, "1: feature %s found by its name", n);
    }
    is_int(kts_rdk_feature_by_name("nonsense"), -1, "1: an unknown feature name gives -1");

    /* 1: the three librdkafka versions of the supported platforms */
    ok(!kts_rdk_has_at(KTS_RDK_IDEMPOTENCE, V(2, 0, 2)) &&
           !kts_rdk_has_at(KTS_RDK_SCRAM_KAFKA4, V(2, 0, 2)) &&
           !kts_rdk_has_at(KTS_RDK_COOPERATIVE, V(2, 0, 2)) &&
           !kts_rdk_has_at(KTS_RDK_KIP848, V(2, 0, 2)),
       "1: 2.0.2 (Debian 12) has none of the four");
    ok(kts_rdk_has_at(KTS_RDK_IDEMPOTENCE, V(2, 8, 0)) &&
           kts_rdk_has_at(KTS_RDK_SCRAM_KAFKA4, V(2, 8, 0)) &&
           !kts_rdk_has_at(KTS_RDK_COOPERATIVE, V(2, 8, 0)) &&
           !kts_rdk_has_at(KTS_RDK_KIP848, V(2, 8, 0)),
       "1: 2.8.0 (Debian 13): idempotence and SCRAM, not cooperative nor KIP-848");
    ok(kts_rdk_has_at(KTS_RDK_IDEMPOTENCE, V(2, 14, 2)) &&
           kts_rdk_has_at(KTS_RDK_SCRAM_KAFKA4, V(2, 14, 2)) &&
           kts_rdk_has_at(KTS_RDK_COOPERATIVE, V(2, 14, 2)) &&
           kts_rdk_has_at(KTS_RDK_KIP848, V(2, 14, 2)),
       "1: 2.14.2 (Debian unstable) has all four");

    /* 2: the limitation names the affected versions, the linked one and the issue */
    l = kts_rdk_limit_at(KTS_RDK_IDEMPOTENCE, V(2, 0, 2), buf, sizeof(buf));
    ok(l != NULL && strstr(l, "before 2.3.0") && strstr(l, "here 2.0.2") && strstr(l, "#4438"),
       "2: idempotence on 2.0.2: '%s'", l ? l : "(null)");
    ok(kts_rdk_limit_at(KTS_RDK_IDEMPOTENCE, V(2, 8, 0), buf, sizeof(buf)) == NULL,
       "2: no idempotence limitation named on 2.8.0");
    l = kts_rdk_limit_at(KTS_RDK_COOPERATIVE, V(2, 8, 0), buf, sizeof(buf));
    ok(l != NULL && strstr(l, "before 2.10.0") && strstr(l, "here 2.8.0") && strstr(l, "#4908"),
       "2: cooperative on 2.8.0: '%s'", l ? l : "(null)");
    l = kts_rdk_limit_at(KTS_RDK_KIP848, V(2, 8, 0), buf, sizeof(buf));
    ok(l != NULL && strstr(l, "2.12.0") && strstr(l, "KIP-848"), "2: KIP-848 on 2.8.0: '%s'",
       l ? l : "(null)");

    /* 3: the linked library agrees with the _at form */
    for (int f = 0; f < KTS_RDK_NFEATURES; f++)
        ok(kts_rdk_has(f) == kts_rdk_has_at(f, rd_kafka_version()) &&
               (kts_rdk_limit(f, buf, sizeof(buf)) == NULL) == kts_rdk_has(f),
           "3: linked %s: %s %s", kts_rdk_version_str(), kts_rdk_feature_name(f),
           kts_rdk_has(f) ? "present" : "missing");
    return done_testing();
}
