/*
 * Checkpoint entries: a slot, a position, and a life of pending (written by a step not yet committed) -> visible
 * (at the end of an index entry) -> free, or back to pending when a request's next turn-end state is written over
 * its previous one. Visible unpinned ones are kept in eviction order: by class (superseded, private, shared), then
 * least recently used.
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
    c->last_use = 0;
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

/* Detach a visible checkpoint from its index entry and take it out of the eviction order. */
static void unpublish(la_cache_manager *m, int32_t cp)
{
    lac_checkpoint *c = &m->checkpoints[cp];
    m->entries[c->entry].checkpoint = LAC_NONE;
    if (lac_heap_contains(&m->checkpoint_lru, cp)) lac_heap_remove(&m->checkpoint_lru, cp);
    c->entry = LAC_NONE;
}

/* A private checkpoint left alone for more than twice as long as private ones wait, on average, to be restored.
 * Until one has been restored, none is presumed dead. */
static int presumed_dead(const la_cache_manager *m, uint64_t key)
{
    uint64_t idle = m->clock - (key - LAC_EVICT_PRIVATE * LAC_CLASS_SPAN);
    return m->private_reuses > 0 && idle > 2 * m->private_reuse_clock;
}

int32_t lac_checkpoint_acquire_evicted(la_cache_manager *m, int for_private)
{
    int32_t victim = lac_heap_top(&m->checkpoint_lru);
    if (victim < 0) return LAC_NONE;
    if (for_private) {
        uint64_t key = lac_heap_top_key(&m->checkpoint_lru);
        if (key >= LAC_EVICT_SHARED * LAC_CLASS_SPAN) return LAC_NONE;
        if (key >= LAC_EVICT_PRIVATE * LAC_CLASS_SPAN && !presumed_dead(m, key)) return LAC_NONE;
    }
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

uint64_t lac_checkpoint_evict_key(const lac_checkpoint *c)
{
    uint64_t evict_class = c->demoted ? LAC_EVICT_DEMOTED : lac_places_private(c->places) ? LAC_EVICT_PRIVATE
                                                                                            : LAC_EVICT_SHARED;
    return evict_class * LAC_CLASS_SPAN + c->last_use;
}

void lac_checkpoint_publish(la_cache_manager *m, int32_t cp, int32_t entry)
{
    lac_checkpoint *c = &m->checkpoints[cp];
    c->state = LAC_CP_VISIBLE;
    c->entry = entry;
    c->demoted = 0;
    c->last_use = m->clock;
    m->entries[entry].checkpoint = cp;
    lac_heap_push(&m->checkpoint_lru, cp, lac_checkpoint_evict_key(c));
}

void lac_checkpoint_pin(la_cache_manager *m, int32_t cp)
{
    lac_checkpoint *c = &m->checkpoints[cp];
    if (lac_places_private(c->places) && !c->demoted) {
        /* A running mean of the reuse distances: each new one moves it by an eighth of the difference. */
        int64_t distance = (int64_t)(m->clock - c->last_use), mean = (int64_t)m->private_reuse_clock;
        m->private_reuse_clock = m->private_reuses++ ? (uint64_t)(mean + (distance - mean) / 8) : (uint64_t)distance;
    }
    if (c->pins++ == 0) lac_heap_remove(&m->checkpoint_lru, cp);
}

void lac_checkpoint_unpin(la_cache_manager *m, int32_t cp)
{
    lac_checkpoint *c = &m->checkpoints[cp];
    c->last_use = m->clock;
    if (--c->pins == 0) lac_heap_push(&m->checkpoint_lru, cp, lac_checkpoint_evict_key(c));
}

void lac_checkpoint_demote(la_cache_manager *m, int32_t cp)
{
    lac_checkpoint *c = &m->checkpoints[cp];
    c->demoted = 1;
    if (lac_heap_contains(&m->checkpoint_lru, cp)) lac_heap_set_key(&m->checkpoint_lru, cp, lac_checkpoint_evict_key(c));
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
