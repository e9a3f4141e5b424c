/* KV block accounting: reference and pin counts, the free list, and the count of cached-only blocks. */
#include "cache_internal.h"

static int cached_only(const la_cache_manager *m, int32_t block)
{
    return m->block_refs[block] > 0 && m->block_pins[block] == 0;
}

void lac_block_adjust(la_cache_manager *m, int32_t block, int32_t delta_refs, int32_t delta_pins)
{
    int was_cached_only = cached_only(m, block);
    m->block_refs[block] += delta_refs;
    m->block_pins[block] += delta_pins;
    m->num_cached_only += cached_only(m, block) - was_cached_only;
    if (m->block_refs[block] == 0 && delta_refs < 0) m->free_blocks[m->num_free_blocks++] = block;
}

int64_t lac_blocks_obtainable(const la_cache_manager *m)
{
    return (int64_t)m->num_free_blocks + m->num_cached_only;
}

int32_t lac_block_take(la_cache_manager *m)
{
    /* Each eviction drops one entry's reference; a cached-only block frees once its last entry goes. */
    while (m->num_free_blocks == 0)
        if (!lac_evict_one_entry(m)) return LAC_NONE;
    int32_t block = m->free_blocks[--m->num_free_blocks];
    lac_block_adjust(m, block, 1, 1);
    return block;
}
