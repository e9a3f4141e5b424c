/*
 * Checkpoint entries: a slot, a position, and a life of pending (written by a step not yet committed) -> visible
 * (at the end of an index entry) -> free, or back to pending when a request's next turn-end state is written over
 * its previous one. Visible unpinned ones are kept in LRU order; a superseded one is demoted below every other so
 * it goes first.
 */
#include "cache_internal.h"

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
    c->places = 0;
    c->demoted = 0;
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

int32_t lac_checkpoint_acquire_evicted(la_cache_manager *m, int demoted_only)
{
    int32_t victim = lac_heap_top(&m->checkpoint_lru);
    if (victim < 0 || (demoted_only && lac_heap_top_key(&m->checkpoint_lru) >= LAC_NORMAL_KEY_BASE)) return LAC_NONE;
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

/* LRU key now: demoted checkpoints sort below every other one. */
static uint64_t lru_key(const la_cache_manager *m, int32_t cp)
{
    return m->checkpoints[cp].demoted ? m->clock : LAC_NORMAL_KEY_BASE + m->clock;
}

void lac_checkpoint_publish(la_cache_manager *m, int32_t cp, int32_t entry)
{
    lac_checkpoint *c = &m->checkpoints[cp];
    c->state = LAC_CP_VISIBLE;
    c->entry = entry;
    c->demoted = 0;
    m->entries[entry].checkpoint = cp;
    lac_heap_push(&m->checkpoint_lru, cp, lru_key(m, cp));
}

void lac_checkpoint_pin(la_cache_manager *m, int32_t cp)
{
    if (m->checkpoints[cp].pins++ == 0) lac_heap_remove(&m->checkpoint_lru, cp);
}

void lac_checkpoint_unpin(la_cache_manager *m, int32_t cp)
{
    if (--m->checkpoints[cp].pins == 0) lac_heap_push(&m->checkpoint_lru, cp, lru_key(m, cp));
}

void lac_checkpoint_demote(la_cache_manager *m, int32_t cp)
{
    m->checkpoints[cp].demoted = 1;
    if (lac_heap_contains(&m->checkpoint_lru, cp)) lac_heap_set_key(&m->checkpoint_lru, cp, lru_key(m, cp));
}

void lac_checkpoint_take_back(la_cache_manager *m, int32_t cp)
{
    unpublish(m, cp);
    m->checkpoints[cp].state = LAC_CP_PENDING;
}

int lac_checkpoint_ref_valid(const la_cache_manager *m, lac_checkpoint_ref ref)
{
    return ref.cp != LAC_NONE && m->checkpoints[ref.cp].state == LAC_CP_VISIBLE &&
           m->checkpoints[ref.cp].generation == ref.generation;
}

lac_checkpoint_ref lac_checkpoint_ref_to(const la_cache_manager *m, int32_t cp)
{
    lac_checkpoint_ref ref = {cp, m->checkpoints[cp].generation};
    return ref;
}
