/* SPDX-License-Identifier: MIT */
/*
 * kts_hash64 (src/util/kts_hash.h):
 *   1. its values never change: pinned here for the two seeds of the DedupStateFile
 *      (kts_written_times.c), whose files store them, computed by the function as it was when
 *      those files were first written;
 *   2. any alignment gives the same value; seeds give different hashes.
 */
#include "kts_hash.h"
#include "tap.h"

#include <stdbool.h>
#include <stdlib.h>

static const struct {
    const char *key;
    uint64_t seed1, seed2;
} pinned[] = {
    {"", 0xb3119ca9ea1f1133ULL, 0x88449af2d0da5fd3ULL},
    {"a", 0x7c98f8e187d5745fULL, 0x0c4437a54a1bd08dULL},
    {"host/cpu-0/cpu-idle", 0xf3525d7a33799fb0ULL, 0x39a100a8637b573cULL},
    {"01234567", 0x8cee0178fadf9b47ULL, 0x00a79587a2d68925ULL},
    {"0123456789abcdef0", 0xe0e863400daf4b24ULL, 0x95c0188b143f757fULL},
    {"web01.example.com/interface-eth0/if_octets", 0x3f0a28cda3f17774ULL, 0xd947cb6503b2fb64ULL},
};

int main(void)
{
    size_t n = sizeof(pinned) / sizeof(pinned[0]);
    plan((int)(2 * n + 2));
    for (size_t i = 0; i < n; i++) {
        const char *k = pinned[i].key;
        ok(kts_hash64(k, strlen(k), 0x243F6A8885A308D3ULL) == pinned[i].seed1,
           "1. \"%s\", DedupStateFile seed 1: the pinned value", k);
        ok(kts_hash64(k, strlen(k), 0x13198A2E03707344ULL) == pinned[i].seed2,
           "1. \"%s\", DedupStateFile seed 2: the pinned value", k);
    }
    const char *k = pinned[n - 1].key;
    size_t len = strlen(k);
    char *buf = malloc(len + 8);
    bool same = buf != NULL;
    for (size_t off = 0; same && off < 8; off++) {
        memcpy(buf + off, k, len);
        same = kts_hash64(buf + off, len, KTS_HASH_SEED) == kts_hash64(k, len, KTS_HASH_SEED);
    }
    free(buf);
    ok(same, "2. the same value at each of 8 alignments");
    ok(kts_hash64(k, len, 1) != kts_hash64(k, len, 2), "2. two seeds, two hashes");
    return done_testing();
}
