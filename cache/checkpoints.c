/*
 * Checkpoint entries: a slot, a position, and a life of pending (written by a step not yet committed) -> visible
 * (at the end of an index entry) -> free. Visible unpinned ones are kept in LRU order; a superseded turn-end
 * checkpoint is demoted below every other so it goes first.
 */
#include "cache_internal.h"

/* Keys of the checkpoint LRU heap: demoted ones sort below every normal one. */
#define NORMAL_KEY_BASE (UINT64_C(1) << 62)

static int32_t take_entry(la_cache_manager *m, int32_t slot)
{
    int32_t cp = m->free_checkpoint;
    lac_checkpoint *c = &m->checkpoints[cp];
    m->free_checkpoint = c->next_free;
    m->checkpoints_in_use++;
    c->slot = slot;
    c->state = LAC_CP_PENDING;
    c->entry = LAC_NONE;
    c->pins = 0;
    c->rolling = 0;
    c->position = 0;
    c->generation++;
    return cp;
}

static void put_entry(la_cache_manager *m, int32_t cp)
{
    lac_checkpoint *c = &m->checkpoints[cp];
    c->state = LAC_CP_FREE;
    c->next_free = m->free_checkpoint;
    m->free_checkpoint = cp;
    m->checkpoints_in_use--;
}

int32_t lac_checkpoint_acquire_new(la_cache_manager *m)
{
    int32_t slot;
    if (m->slots.alloc_slot(m->slots.user, &slot) != 0) return LAC_NONE;
    return take_entry(m, slot);
}

/* Detach a visible checkpoint from its index entry and take it out of the LRU order. */
static void unpublish(la_cache_manager *m, int32_t cp)
{
    lac_checkpoint *c = &m->checkpoints[cp];
    m->entries[c->entry].checkpoint = LAC_NONE;
    if (lac_heap_contains(&m->checkpoint_lru, cp)) lac_heap_remove(&m->checkpoint_lru, cp);
    c->entry = LAC_NONE;
}

int32_t lac_checkpoint_acquire_evicted(la_cache_manager *m)
{
    int32_t victim = m->checkpoint_lru.size ? m->checkpoint_lru.ids[0] : LAC_NONE;
    if (victim == LAC_NONE) return LAC_NONE;
    unpublish(m, victim);
    int32_t slot = m->checkpoints[victim].slot;
    put_entry(m, victim);
    m->stats.checkpoints_evicted++;
    return take_entry(m, slot);
}

void lac_checkpoint_release(la_cache_manager *m, int32_t cp)
{
    if (m->checkpoints[cp].state == LAC_CP_VISIBLE) unpublish(m, cp);
    m->slots.free_slot(m->slots.user, m->checkpoints[cp].slot);
    put_entry(m, cp);
}

void lac_checkpoint_publish(la_cache_manager *m, int32_t cp, int32_t entry)
{
    lac_checkpoint *c = &m->checkpoints[cp];
    c->state = LAC_CP_VISIBLE;
    c->entry = entry;
    m->entries[entry].checkpoint = cp;
    lac_heap_push(&m->checkpoint_lru, cp, NORMAL_KEY_BASE + m->clock);
}

void lac_checkpoint_pin(la_cache_manager *m, int32_t cp)
{
    if (m->checkpoints[cp].pins++ == 0) lac_heap_remove(&m->checkpoint_lru, cp);
}

void lac_checkpoint_unpin(la_cache_manager *m, int32_t cp)
{
    if (--m->checkpoints[cp].pins == 0) lac_heap_push(&m->checkpoint_lru, cp, NORMAL_KEY_BASE + m->clock);
}

void lac_checkpoint_demote(la_cache_manager *m, int32_t cp)
{
    if (lac_heap_contains(&m->checkpoint_lru, cp)) lac_heap_set_key(&m->checkpoint_lru, cp, m->clock);
}
