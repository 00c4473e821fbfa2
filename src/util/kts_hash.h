/* SPDX-License-Identifier: MIT */
/*
 * kts_hash: the library's one hash function, for every hash table keyed by bytes (the
 * per-series state table, the DedupStateFile table, types.db's table).
 *
 * kts_hash64(key, len, seed): 64 bits, seeded; each 8-byte word goes through murmur3's 64-bit
 * finaliser (fmix64) before it is folded in, the length is mixed in first and the tail last,
 * so every input bit reaches every output bit. Different seeds give independent hashes (the
 * DedupStateFile identifies a series by two of them, kts_written_times.h guarantee 3).
 *
 * Guarantees:
 *   1. The values never change: the DedupStateFile stores hashes on disk (kts_written_times.c), so
 * a different function would orphan every watermark of an existing file. tests/t-hash pins the
 * values for a few keys and seeds.
 *   2. Words are read in native byte order (like the DedupStateFile itself, which belongs to
 *      one host); keys of any length and alignment are fine.
 * Header only (static inline): it is on the path of every value list.
 */
#ifndef KTS_HASH_H
#define KTS_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The seed of in-memory tables (nothing on disk depends on it). */
#define KTS_HASH_SEED 0x243F6A8885A308D3ULL

/* murmur3's 64-bit finaliser. */
static inline uint64_t kts_hash_fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t kts_hash64(const void *key, size_t n, uint64_t seed)
{
    const unsigned char *p = key;
    uint64_t h = seed ^ ((uint64_t)n * 0x9E3779B97F4A7C15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h ^= kts_hash_fmix64(w ^ seed);
        h = ((h << 31) | (h >> 33)) * 0x87c37b91114253d5ULL + 0x52dce729;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)p[i] << (8 * i);
    h ^= kts_hash_fmix64(w ^ seed ^ 0x4cf5ad432745937fULL);
    return kts_hash_fmix64(h);
}

#endif
