/* Chained unit hashes: multiply-rotate over token pairs, then a final avalanche. */
#include "prefix_hash.h"


#define MULT_A UINT64_C(0x9e3779b97f4a7c15)
#define MULT_B UINT64_C(0xc2b2ae3d27d4eb4f)
#define MULT_C UINT64_C(0xd6e8feb86659fd93)

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t lac_mix64(uint64_t x)
{
    x ^= x >> 32;
    x *= MULT_C;
    x ^= x >> 29;
    x *= MULT_B;
    x ^= x >> 32;
    return x;
}

uint64_t lac_unit_hash(uint64_t parent_hash, uint64_t extra_digest, const int32_t *tokens, int32_t count)
{
    uint64_t h = parent_hash ^ lac_mix64(extra_digest + MULT_A);
    int32_t i = 0;
    for (; i + 1 < count; i += 2) {
        uint64_t pair = (uint64_t)(uint32_t)tokens[i] | ((uint64_t)(uint32_t)tokens[i + 1] << 32);
        h = rotl64(h ^ (pair * MULT_A), 31) * MULT_B;
    }
    if (i < count) h = rotl64(h ^ ((uint64_t)(uint32_t)tokens[i] * MULT_A), 31) * MULT_B;
    return lac_mix64(h ^ (uint64_t)count);
}

uint64_t lac_extra_digest(const la_cache_extra_key *keys, int32_t num_keys, int64_t start, int64_t end)
{
    uint64_t digest = 0;
    for (int32_t i = 0; i < num_keys; i++) {
        if (keys[i].start >= end || keys[i].end <= start) continue;
        /* Which tokens of the unit the key covers is part of the digest: the same key over other tokens of the
         * unit is another unit. */
        uint64_t first = (uint64_t)((keys[i].start > start ? keys[i].start : start) - start);
        uint64_t last = (uint64_t)((keys[i].end < end ? keys[i].end : end) - start);
        digest = lac_mix64(digest + keys[i].key + MULT_A);
        digest = lac_mix64(digest ^ (first << 32 | last));
    }
    return digest;
}
