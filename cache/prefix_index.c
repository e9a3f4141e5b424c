/*
 * The prefix index: one entry per cached unit, in a hash table chained through the entries, with parent links and
 * child counts so eviction can go leaf first (a chain never loses an inner unit while a later one stays).
 */
#include <string.h>

#include "cache_internal.h"

int32_t lac_index_find(const la_cache_manager *m, int32_t parent, uint64_t hash, uint64_t extra,
                       const int32_t *tokens)
{
    for (int32_t e = m->buckets[hash & m->bucket_mask]; e != LAC_NONE; e = m->entries[e].next) {
        const lac_entry *entry = &m->entries[e];
        if (entry->hash == hash && entry->parent == parent && entry->extra == extra &&
            memcmp(lac_entry_tokens(m, e), tokens, (size_t)m->unit * sizeof *tokens) == 0)
            return e;
    }
    return LAC_NONE;
}

/* An entry is evictable when no request holds it and no later unit hangs off it. */
static void update_evictable(la_cache_manager *m, int32_t e)
{
    const lac_entry *entry = &m->entries[e];
    int evictable = entry->ref == 0 && entry->num_children == 0;
    if (evictable && !lac_heap_contains(&m->entry_lru, e))
        lac_heap_push(&m->entry_lru, e, entry->last_use);
    else if (!evictable && lac_heap_contains(&m->entry_lru, e))
        lac_heap_remove(&m->entry_lru, e);
}

void lac_entry_lock(la_cache_manager *m, int32_t e)
{
    lac_entry *entry = &m->entries[e];
    entry->last_use = m->clock;
    if (entry->ref++ == 0) {
        if (entry->block != LAC_NONE) lac_block_adjust(m, entry->block, 0, 1);
        update_evictable(m, e);
    }
}

void lac_entry_unlock(la_cache_manager *m, int32_t e)
{
    lac_entry *entry = &m->entries[e];
    entry->last_use = m->clock;
    if (--entry->ref == 0) {
        if (entry->block != LAC_NONE) lac_block_adjust(m, entry->block, 0, -1);
        update_evictable(m, e);
    }
}

static void unlink_from_bucket(la_cache_manager *m, int32_t e)
{
    int32_t *link = &m->buckets[m->entries[e].hash & m->bucket_mask];
    while (*link != e) link = &m->entries[*link].next;
    *link = m->entries[e].next;
}

static void evict_entry(la_cache_manager *m, int32_t e)
{
    lac_entry *entry = &m->entries[e];
    lac_heap_remove(&m->entry_lru, e);
    unlink_from_bucket(m, e);
    if (entry->checkpoint != LAC_NONE) {
        lac_checkpoint_release(m, entry->checkpoint);
        m->stats.checkpoints_evicted++;
    }
    if (entry->block != LAC_NONE) lac_block_adjust(m, entry->block, -1, 0);
    if (entry->parent != LAC_NONE) {
        m->entries[entry->parent].num_children--;
        update_evictable(m, entry->parent);
    }
    entry->in_use = 0;
    entry->next = m->free_entry;
    m->free_entry = e;
    m->num_entries--;
    m->stats.index_entries_evicted++;
}

int lac_evict_one_entry(la_cache_manager *m)
{
    int32_t victim = lac_heap_top(&m->entry_lru);
    if (victim < 0) return 0;
    evict_entry(m, victim);
    return 1;
}

int32_t lac_index_insert(la_cache_manager *m, int32_t parent, uint64_t hash, uint64_t extra, const int32_t *tokens,
                         int32_t block)
{
    if (m->free_entry == LAC_NONE && !lac_evict_one_entry(m)) return LAC_NONE;
    int32_t e = m->free_entry;
    lac_entry *entry = &m->entries[e];
    m->free_entry = entry->next;
    m->num_entries++;

    entry->hash = hash;
    entry->extra = extra;
    entry->parent = parent;
    entry->depth = parent == LAC_NONE ? 0 : m->entries[parent].depth + 1;
    entry->num_children = 0;
    entry->ref = 0;
    entry->block = block;
    entry->checkpoint = LAC_NONE;
    entry->in_use = 1;
    memcpy(m->entry_tokens + (size_t)e * (size_t)m->unit, tokens, (size_t)m->unit * sizeof *tokens);
    uint64_t bucket = hash & m->bucket_mask;
    entry->next = m->buckets[bucket];
    m->buckets[bucket] = e;
    if (parent != LAC_NONE) {
        m->entries[parent].num_children++;
        update_evictable(m, parent);
    }
    /* An entry's reference on its block is not a pin; the lock below, for the creating request, is. */
    if (block != LAC_NONE) lac_block_adjust(m, block, 1, 0);
    lac_entry_lock(m, e);
    return e;
}
