/*
 * la_cache_check: recount every reference from the requests and the index and compare with what the manager keeps.
 * For tests (property and fault-injection tests call it after every operation); O(everything).
 */
#include <stdlib.h>
#include <string.h>

#include "cache_internal.h"

typedef struct tally {
    int32_t *block_refs, *block_pins, *block_free;
    int32_t *entry_refs, *entry_children, *entry_seen;
    int32_t *cp_pins, *cp_owners, *cp_free;
    int32_t *slots;
} tally;

#define BROKEN(...) return lac_fail(m, LA_CACHE_ERR_INCONSISTENT, __VA_ARGS__)

static la_cache_status check_heap(la_cache_manager *m, const lac_heap *heap, const char *name)
{
    for (int32_t i = 0; i < heap->size; i++) {
        if (heap->where[heap->ids[i]] != i) BROKEN("%s heap: position of id %d is wrong", name, heap->ids[i]);
        if (i > 0 && heap->keys[(i - 1) / 2] > heap->keys[i]) BROKEN("%s heap: order broken at %d", name, i);
    }
    int32_t present = 0;
    for (int32_t id = 0; id < heap->capacity; id++) present += heap->where[id] >= 0;
    if (present != heap->size) BROKEN("%s heap: %d ids marked present, size %d", name, present, heap->size);
    return LA_CACHE_OK;
}

static la_cache_status check_request(la_cache_manager *m, const lac_request *r, tally *t)
{
    const unsigned long long id = (unsigned long long)r->id;
    if (r->computed < r->hit || r->computed > r->num_tokens || r->prompt_tokens > r->num_tokens)
        BROKEN("request %llu: hit %lld, computed %lld, prompt %lld, tokens %lld", id, (long long)r->hit,
               (long long)r->computed, (long long)r->prompt_tokens, (long long)r->num_tokens);
    if (r->hit >= r->prompt_tokens) BROKEN("request %llu: hit %lld reaches its prompt end", id, (long long)r->hit);
    if (r->path_len > r->computed / m->unit || (!r->path_broken && r->path_len != r->computed / m->unit))
        BROKEN("request %llu: path of %lld units for %lld computed tokens", id, (long long)r->path_len,
               (long long)r->computed);
    for (int64_t j = 0; j < r->path_len; j++) {
        int32_t e = r->path[j];
        if (e < 0 || e >= m->max_entries || !m->entries[e].in_use) BROKEN("request %llu: path[%lld] not an entry", id, (long long)j);
        if (m->entries[e].parent != (j ? r->path[j - 1] : LAC_NONE) || m->entries[e].depth != j)
            BROKEN("request %llu: path[%lld] is not chained", id, (long long)j);
        if (memcmp(lac_entry_tokens(m, e), r->tokens + j * m->unit, (size_t)m->unit * sizeof(int32_t)) != 0)
            BROKEN("request %llu: path[%lld] holds other tokens", id, (long long)j);
        t->entry_refs[e]++;
    }
    /* A hit inside a block gets that block with its first step (copy_src is pinned until that step commits). */
    int64_t blocks_needed = !m->has_kv              ? 0
                            : r->copy_src != LAC_NONE ? r->computed / m->block_size
                                                      : (r->computed + m->block_size - 1) / m->block_size;
    if (r->num_blocks < blocks_needed) BROKEN("request %llu: %lld blocks for %lld tokens", id, (long long)r->num_blocks, (long long)r->computed);
    for (int64_t b = 0; b < r->num_blocks; b++) {
        if (r->blocks[b] < 0 || r->blocks[b] >= m->num_blocks) BROKEN("request %llu: block %lld out of range", id, (long long)b);
        t->block_refs[r->blocks[b]]++;
        t->block_pins[r->blocks[b]]++;
    }
    if (r->copy_src != LAC_NONE) {
        t->block_refs[r->copy_src]++;
        t->block_pins[r->copy_src]++;
    }
    if (r->restore_cp != LAC_NONE) {
        if (m->checkpoints[r->restore_cp].state != LAC_CP_VISIBLE) BROKEN("request %llu restores from a non-visible checkpoint", id);
        if (m->checkpoints[r->restore_cp].position != r->hit) BROKEN("request %llu restores from another position", id);
        t->cp_pins[r->restore_cp]++;
    }
    if (!r->step_pending && r->num_pending) BROKEN("request %llu: pending checkpoints without a step", id);
    for (int64_t i = 0; i < r->num_pending; i++) {
        int32_t cp = r->pending_cps[i];
        if (m->checkpoints[cp].state != LAC_CP_PENDING) BROKEN("request %llu: pending checkpoint %d not pending", id, cp);
        int64_t p = m->checkpoints[cp].position;
        if (p <= r->step_start || p > r->step_start + r->step_tokens || p % m->policy.match_unit)
            BROKEN("request %llu: checkpoint position %lld outside its step or off the match unit", id, (long long)p);
        t->cp_owners[cp]++;
    }
    return LA_CACHE_OK;
}

static la_cache_status check_entries(la_cache_manager *m, tally *t)
{
    int32_t in_use = 0;
    for (int32_t e = 0; e < m->max_entries; e++) {
        const lac_entry *entry = &m->entries[e];
        if (!entry->in_use) continue;
        in_use++;
        if (entry->parent != LAC_NONE) {
            if (!m->entries[entry->parent].in_use) BROKEN("entry %d: parent %d is evicted", e, entry->parent);
            if (m->entries[entry->parent].depth != entry->depth - 1) BROKEN("entry %d: depth off its parent's", e);
            t->entry_children[entry->parent]++;
        } else if (entry->depth != 0) {
            BROKEN("entry %d: no parent at depth %d", e, entry->depth);
        }
        if ((entry->block == LAC_NONE) == m->has_kv) BROKEN("entry %d: block %d with has_kv %d", e, entry->block, m->has_kv);
        if (entry->block != LAC_NONE) {
            t->block_refs[entry->block]++;
            t->block_pins[entry->block] += entry->ref > 0;
        }
        if (entry->checkpoint != LAC_NONE) {
            const lac_checkpoint *c = &m->checkpoints[entry->checkpoint];
            if (c->state != LAC_CP_VISIBLE || c->entry != e) BROKEN("entry %d: checkpoint link broken", e);
            if (c->position != (int64_t)(entry->depth + 1) * m->unit) BROKEN("entry %d: checkpoint at another position", e);
        }
    }
    if (in_use != m->num_entries) BROKEN("%d entries in use, %d counted", in_use, m->num_entries);
    for (int32_t e = 0; e < m->max_entries; e++) {
        const lac_entry *entry = &m->entries[e];
        if (!entry->in_use) continue;
        if (entry->ref != t->entry_refs[e]) BROKEN("entry %d: ref %d, %d paths hold it", e, entry->ref, t->entry_refs[e]);
        if (entry->ref < 0) BROKEN("entry %d: negative ref", e);
        if (entry->num_children != t->entry_children[e]) BROKEN("entry %d: %d children counted", e, entry->num_children);
        int evictable = entry->ref == 0 && entry->num_children == 0;
        if (evictable != lac_heap_contains(&m->entry_lru, e)) BROKEN("entry %d: LRU membership wrong", e);
    }
    for (uint64_t bucket = 0; bucket <= m->bucket_mask; bucket++)
        for (int32_t e = m->buckets[bucket]; e != LAC_NONE; e = m->entries[e].next) {
            if (!m->entries[e].in_use || (m->entries[e].hash & m->bucket_mask) != bucket || t->entry_seen[e]++)
                BROKEN("bucket %llu: entry %d misplaced", (unsigned long long)bucket, e);
        }
    int32_t free_count = 0;
    for (int32_t e = m->free_entry; e != LAC_NONE; e = m->entries[e].next) {
        if (m->entries[e].in_use || free_count > m->max_entries) BROKEN("entry free list broken at %d", e);
        free_count++;
    }
    for (int32_t e = 0; e < m->max_entries; e++)
        if (m->entries[e].in_use && !t->entry_seen[e]) BROKEN("entry %d is in no bucket", e);
    if (free_count + m->num_entries != m->max_entries) BROKEN("entries leak: %d free + %d used", free_count, m->num_entries);
    return check_heap(m, &m->entry_lru, "entry");
}

static la_cache_status check_blocks(la_cache_manager *m, tally *t)
{
    for (int32_t i = 0; i < m->num_free_blocks; i++) {
        int32_t b = m->free_blocks[i];
        if (b < 0 || b >= m->num_blocks || t->block_free[b]++) BROKEN("free list: block %d twice or out of range", b);
    }
    int32_t cached_only = 0;
    for (int32_t b = 0; b < m->num_blocks; b++) {
        if (m->block_refs[b] != t->block_refs[b] || m->block_pins[b] != t->block_pins[b])
            BROKEN("block %d: refs/pins %d/%d, counted %d/%d", b, m->block_refs[b], m->block_pins[b], t->block_refs[b],
                   t->block_pins[b]);
        if (t->block_free[b] && t->block_refs[b]) BROKEN("block %d is free and referenced", b);
        if (!t->block_free[b] && !t->block_refs[b]) BROKEN("block %d leaked: neither free nor referenced", b);
        cached_only += t->block_refs[b] > 0 && t->block_pins[b] == 0;
    }
    if (cached_only != m->num_cached_only) BROKEN("%d cached-only blocks, counted %d", m->num_cached_only, cached_only);
    return LA_CACHE_OK;
}

static int compare_int32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static la_cache_status check_checkpoints(la_cache_manager *m, tally *t)
{
    for (int32_t cp = m->free_checkpoint, n = 0; cp != LAC_NONE; cp = m->checkpoints[cp].next_free, n++) {
        if (n > m->max_checkpoints || m->checkpoints[cp].state != LAC_CP_FREE || t->cp_free[cp]++)
            BROKEN("checkpoint free list broken at %d", cp);
    }
    int32_t in_use = 0, num_slots = 0;
    for (int32_t cp = 0; cp < m->max_checkpoints; cp++) {
        const lac_checkpoint *c = &m->checkpoints[cp];
        if (c->state == LAC_CP_FREE) {
            if (!t->cp_free[cp]) BROKEN("checkpoint %d leaked: free but not in the free list", cp);
            continue;
        }
        in_use++;
        t->slots[num_slots++] = c->slot;
        if (c->state == LAC_CP_PENDING && t->cp_owners[cp] != 1) BROKEN("pending checkpoint %d has %d owners", cp, t->cp_owners[cp]);
        if (c->state == LAC_CP_VISIBLE && (c->entry == LAC_NONE || m->entries[c->entry].checkpoint != cp))
            BROKEN("visible checkpoint %d is not on its entry", cp);
        if (c->pins != t->cp_pins[cp] || c->pins < 0) BROKEN("checkpoint %d: pins %d, counted %d", cp, c->pins, t->cp_pins[cp]);
        int evictable = c->state == LAC_CP_VISIBLE && c->pins == 0;
        if (evictable != lac_heap_contains(&m->checkpoint_lru, cp)) BROKEN("checkpoint %d: LRU membership wrong", cp);
        if (evictable && m->checkpoint_lru.keys[m->checkpoint_lru.where[cp]] != lac_checkpoint_evict_key(c))
            BROKEN("checkpoint %d: eviction key does not match its class and last use", cp);
    }
    if (in_use != m->checkpoints_in_use) BROKEN("%d checkpoints in use, counted %d", m->checkpoints_in_use, in_use);
    if (in_use > m->max_checkpoints) BROKEN("checkpoints over budget");
    if (m->own_slots) {
        for (int32_t i = 0; i < m->num_own_slots; i++) t->slots[num_slots++] = m->own_slots[i];
        if (num_slots != m->max_checkpoints) BROKEN("own slots: %d accounted of %d", num_slots, m->max_checkpoints);
    }
    qsort(t->slots, (size_t)num_slots, sizeof *t->slots, compare_int32);
    for (int32_t i = 1; i < num_slots; i++)
        if (t->slots[i] == t->slots[i - 1]) BROKEN("slot %d held twice", t->slots[i]);
    return check_heap(m, &m->checkpoint_lru, "checkpoint");
}

la_cache_status la_cache_check(la_cache_manager *manager)
{
    la_cache_manager *m = manager;
    if (!m) return LA_CACHE_ERR_NULL_ARGUMENT;
    size_t nb = (size_t)m->num_blocks + 1, ne = (size_t)m->max_entries + 1, nc = (size_t)m->max_checkpoints + 1;
    tally t = {calloc(nb, 4), calloc(nb, 4), calloc(nb, 4), calloc(ne, 4), calloc(ne, 4),
               calloc(ne, 4), calloc(nc, 4), calloc(nc, 4), calloc(nc, 4), calloc(2 * nc, 4)};
    int32_t *all[] = {t.block_refs, t.block_pins, t.block_free, t.entry_refs, t.entry_children,
                      t.entry_seen, t.cp_pins, t.cp_owners, t.cp_free, t.slots};
    la_cache_status status = LA_CACHE_OK;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!all[i]) status = lac_fail(m, LA_CACHE_ERR_OUT_OF_MEMORY, "no scratch memory for the check");

    uint64_t live = 0;
    for (uint64_t i = 0; status == LA_CACHE_OK && i < m->requests.capacity; i++) {
        const lac_request *r = m->requests.values[i];
        if (!r) continue;
        live++;
        if (lac_map_find(&m->requests, r->id) != r) status = lac_fail(m, LA_CACHE_ERR_INCONSISTENT, "request map lost %llu", (unsigned long long)r->id);
        else status = check_request(m, r, &t);
    }
    if (status == LA_CACHE_OK && live != m->requests.count)
        status = lac_fail(m, LA_CACHE_ERR_INCONSISTENT, "request map counts %llu, holds %llu",
                          (unsigned long long)m->requests.count, (unsigned long long)live);
    if (status == LA_CACHE_OK) status = check_entries(m, &t);
    if (status == LA_CACHE_OK) status = check_blocks(m, &t);
    if (status == LA_CACHE_OK) status = check_checkpoints(m, &t);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    return status;
}
