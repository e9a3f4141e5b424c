/*
 * prefix_hash.h — the chained hash of the prefix index. A unit's hash covers its parent unit's hash, the unit's
 * extra-key digest and its token ids, so equal hashes mean (almost surely) equal prefixes; the index still compares
 * the tokens, so the hash only has to spread entries, not be collision-free.
 */
#ifndef LINATTN_CACHE_PREFIX_HASH_H
#define LINATTN_CACHE_PREFIX_HASH_H

#include <stdint.h>

#include "block_manager.h"

/* Hash of the (empty) prefix before the first unit. */
#define LAC_ROOT_HASH UINT64_C(0x6c696e6174746e31)

uint64_t lac_mix64(uint64_t x);

/* Hash of a unit of `count` tokens following a prefix whose hash is parent_hash. */
uint64_t lac_unit_hash(uint64_t parent_hash, uint64_t extra_digest, const int32_t *tokens, int32_t count);

/* Digest of the extra keys whose token range overlaps [start, end); 0 when none does. Order matters. */
uint64_t lac_extra_digest(const la_cache_extra_key *keys, int32_t num_keys, int64_t start, int64_t end);

#endif
