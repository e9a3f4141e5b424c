/*
 * cache_internal.h — the prefix cache's data structures, shared by its source files (not an interface).
 *
 * References, and what each protects:
 * - entry.ref: live requests whose path (the chain of units they matched or computed) holds the entry. A referenced
 *   entry is never evicted; entries are evicted leaf first, so a chain never has a hole.
 * - block refs: every holder of a KV block (request block tables, a pending partial-block copy, index entries).
 *   block pins: the holders that forbid reclaiming it (all but the entries nobody references). A block with refs
 *   and no pins is "cached only": evicting entries would free it. So free + cached-only blocks is exactly what an
 *   allocation can get, checked before anything is evicted.
 * - checkpoint pins: admitted requests whose first step restores from it. Unpinned visible checkpoints are in an
 *   eviction heap; pending ones (written by a step not yet committed) belong to their request only.
 */
#ifndef LINATTN_CACHE_INTERNAL_H
#define LINATTN_CACHE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "block_manager.h"
#include "index_heap.h"

#define LAC_NONE (-1)

typedef struct lac_entry {
    uint64_t hash;     /* chained hash of the prefix through this unit */
    uint64_t extra;    /* extra-key digest of this unit */
    uint64_t last_use; /* manager clock when last referenced or released */
    int32_t parent;    /* entry of the previous unit, LAC_NONE for a first unit */
    int32_t next;      /* next entry in the same hash bucket, or in the free list */
    int32_t depth;     /* unit index: the entry covers tokens [depth*unit, (depth+1)*unit) */
    int32_t num_children;
    int32_t ref;
    int32_t block;      /* KV block holding this unit and every earlier token of its block; LAC_NONE without KV */
    int32_t checkpoint; /* visible checkpoint at the end of this unit, or LAC_NONE */
    int32_t in_use;
} lac_entry;

enum { LAC_CP_FREE = 0, LAC_CP_PENDING = 1, LAC_CP_VISIBLE = 2 };

/* Eviction classes of visible unpinned checkpoints, first to go first: superseded private ones, private ones (a
 * chain's prompt or turn end), shared ones (branch, interval, aligned step end). The heap key is the class times
 * LAC_CLASS_SPAN plus the manager clock at the last use, so within a class the least recently used goes first. */
enum { LAC_EVICT_DEMOTED = 0, LAC_EVICT_PRIVATE = 1, LAC_EVICT_SHARED = 2 };
#define LAC_CLASS_SPAN (UINT64_C(1) << 61)

/* A checkpoint only its own chain's next turn wants (a prompt end, a turn end), as opposed to a branch point or an
 * interval one that other requests share. */
static inline int lac_places_private(uint32_t places)
{
    return places && !(places & ~(uint32_t)(LA_CACHE_AT_PROMPT_END | LA_CACHE_AT_TURN_END));
}

typedef struct lac_checkpoint {
    int64_t position;
    int32_t slot;
    int32_t entry;       /* visible: the entry it lies at the end of */
    int32_t pins;
    int32_t state;       /* LAC_CP_* */
    uint32_t places;     /* the LA_CACHE_AT_* reasons it was written for */
    int32_t demoted;     /* superseded: first to evict, also after being pinned for a while */
    uint64_t last_use;   /* manager clock when published or when its last restorer's first step committed */
    uint32_t generation; /* bumped on reuse, so a stale reference is recognised */
    int32_t next_free;
} lac_checkpoint;

/* A reference to a checkpoint that may since have been evicted and its entry reused: valid while the entry is
 * visible and still of the same generation. */
typedef struct lac_checkpoint_ref {
    int32_t cp;
    uint32_t generation;
} lac_checkpoint_ref;

typedef struct lac_request {
    uint64_t id;
    int32_t *tokens;
    int64_t num_tokens, token_capacity;
    int64_t prompt_tokens;
    la_cache_extra_key *extra_keys;
    int32_t num_extra_keys;
    int64_t computed;
    int64_t hit;
    int32_t *path; /* entries of units 0 .. path_len-1 */
    int64_t path_len, path_capacity;
    int32_t path_broken; /* a unit found no room in the index: later units are not cached */
    int32_t *blocks;
    int64_t num_blocks, block_capacity;
    int32_t restore_cp; /* pinned checkpoint the first step starts from, until that step commits */
    int32_t copy_src;   /* pinned block the first step copies copy_tokens rows from, until it commits */
    int32_t copy_tokens;
    int64_t branch_position;
    int32_t prompt_end_cached;
    lac_checkpoint_ref frontier; /* deepest private checkpoint of its chain: the next private one goes over it */
    /* the scheduled step */
    int32_t step_pending;
    int64_t step_start;
    int32_t step_tokens;
    int32_t step_kv_copy;
    la_cache_checkpoint_write *writes; /* [pending_capacity], followed in the same allocation by pending_cps */
    int32_t *pending_cps;
    int64_t num_pending, pending_capacity;
} lac_request;

typedef struct lac_request_map {
    uint64_t *keys;
    lac_request **values; /* NULL = empty bucket */
    uint64_t capacity;    /* 0 or a power of two */
    uint64_t count;
} lac_request_map;

struct la_cache_manager {
    la_cache_config config;
    la_cache_host_allocator host;
    la_cache_slot_allocator slots;
    la_cache_policy policy;
    int32_t unit;            /* gcd(block_size, match_unit) */
    int32_t block_size;
    int32_t has_kv;
    uint64_t block_bytes;    /* sum of the groups' bytes per block */
    uint64_t clock;

    /* KV blocks */
    int32_t num_blocks;
    int32_t *block_refs, *block_pins;
    int32_t *free_blocks;
    int32_t num_free_blocks;
    int32_t num_cached_only;

    /* prefix index */
    int32_t max_entries;
    lac_entry *entries;
    int32_t *entry_tokens; /* [max_entries][unit] */
    int32_t *buckets;
    uint64_t bucket_mask;
    int32_t free_entry;
    int32_t num_entries;
    lac_heap entry_lru; /* entries with ref 0 and no children */

    /* checkpoints */
    int32_t max_checkpoints;
    lac_checkpoint *checkpoints;
    int32_t free_checkpoint;
    int32_t checkpoints_in_use;
    lac_heap checkpoint_lru; /* visible, unpinned; keyed by eviction class, then last use */
    uint64_t private_reuse_clock; /* running mean of the clock ticks between a private checkpoint's last use and
                                     its restore: beyond twice that, an idle private checkpoint is presumed dead */
    uint64_t private_reuses;      /* restores of private checkpoints seen (none: no mean yet) */
    int32_t *own_slots;      /* the manager's slot numbers when the config gave no slot allocator */
    int32_t num_own_slots;

    lac_request_map requests;
    la_cache_planned_checkpoint *plan; /* scratch for the policy's plan */
    int64_t plan_capacity;

    la_cache_stats stats;
    char error[256];
};

/* ---- memory and errors (block_manager.c) ---- */
void *lac_alloc(la_cache_manager *m, size_t bytes);
void lac_release(la_cache_manager *m, void *ptr);
/* Make room for `needed` elements in *array (keeping its contents); 0, or -1 with nothing changed. */
int lac_reserve(la_cache_manager *m, void **array, int64_t *capacity, int64_t needed, size_t element_size);
la_cache_status lac_fail(la_cache_manager *m, la_cache_status status, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- KV blocks (kv_blocks.c) ---- */
void lac_block_adjust(la_cache_manager *m, int32_t block, int32_t delta_refs, int32_t delta_pins);
/* Blocks an allocation can get now: free ones plus those only the evictable cache holds. */
int64_t lac_blocks_obtainable(const la_cache_manager *m);
/* Take a block for a request (ref and pin), evicting cache entries first if none is free. The caller checked
 * lac_blocks_obtainable. */
int32_t lac_block_take(la_cache_manager *m);

/* ---- prefix index (prefix_index.c) ---- */
static inline const int32_t *lac_entry_tokens(const la_cache_manager *m, int32_t entry)
{
    return m->entry_tokens + (size_t)entry * (size_t)m->unit;
}
int32_t lac_index_find(const la_cache_manager *m, int32_t parent, uint64_t hash, uint64_t extra,
                       const int32_t *tokens);
/* A new entry (referenced once, by the caller's path) or LAC_NONE when the index is full of referenced entries. */
int32_t lac_index_insert(la_cache_manager *m, int32_t parent, uint64_t hash, uint64_t extra, const int32_t *tokens,
                         int32_t block);
void lac_entry_lock(la_cache_manager *m, int32_t entry);
void lac_entry_unlock(la_cache_manager *m, int32_t entry);
/* Evict the least recently used evictable entry; 0 when there is none. */
int lac_evict_one_entry(la_cache_manager *m);

/* ---- checkpoints (checkpoints.c) ---- */
/* A pending checkpoint with a fresh slot from the slot allocator; the caller checked the budget has room.
 * LAC_NONE when the allocator refused. */
int32_t lac_checkpoint_acquire_new(la_cache_manager *m);
/* A pending checkpoint with the slot of the first unpinned visible one in eviction order, evicted; LAC_NONE when
 * there is none. For a private checkpoint that is not moving its chain's own slot (for_private), only a demoted one
 * or a private one idle for more than twice the usual reuse distance may go: a new chain never pushes out the
 * chains that are coming back, nor the shared ones. */
int32_t lac_checkpoint_acquire_evicted(la_cache_manager *m, int for_private);
/* Give a checkpoint's slot back and free its entry (pending, or visible and unpinned). */
void lac_checkpoint_release(la_cache_manager *m, int32_t cp);
void lac_checkpoint_publish(la_cache_manager *m, int32_t cp, int32_t entry);
/* Pin for a request that restores from it; a private one's idle time feeds the reuse distance. */
void lac_checkpoint_pin(la_cache_manager *m, int32_t cp);
void lac_checkpoint_unpin(la_cache_manager *m, int32_t cp);
/* Its key in the eviction heap: class, then last use. */
uint64_t lac_checkpoint_evict_key(const lac_checkpoint *c);
/* Make a visible checkpoint the next to evict (one superseded by a deeper checkpoint of the same request). */
void lac_checkpoint_demote(la_cache_manager *m, int32_t cp);
/* Take a visible unpinned checkpoint back to pending, to write a newer state into its slot. */
void lac_checkpoint_take_back(la_cache_manager *m, int32_t cp);
int lac_checkpoint_ref_valid(const la_cache_manager *m, lac_checkpoint_ref ref);
lac_checkpoint_ref lac_checkpoint_ref_to(const la_cache_manager *m, int32_t cp);

/* ---- requests (request_map.c) ---- */
lac_request *lac_map_find(const lac_request_map *map, uint64_t id);
int lac_map_reserve(la_cache_manager *m, lac_request_map *map, uint64_t count); /* 0, or -1 nothing changed */
void lac_map_insert(lac_request_map *map, lac_request *request); /* room reserved, id absent */
void lac_map_remove(lac_request_map *map, uint64_t id);

#endif
