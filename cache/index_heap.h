/*
 * index_heap.h — a binary min-heap of small integer ids with uint64 keys, which knows where each id sits so an id
 * can be removed or re-keyed in O(log n). The LRU orders of the prefix cache (evictable index entries, evictable
 * checkpoints) are two of these, keyed by last use.
 */
#ifndef LINATTN_CACHE_INDEX_HEAP_H
#define LINATTN_CACHE_INDEX_HEAP_H

#include <stdint.h>

typedef struct lac_heap {
    int32_t *ids;     /* [capacity] heap order */
    uint64_t *keys;   /* [capacity] key of ids[i] */
    int32_t *where;   /* [capacity] position of id, or -1 when absent */
    int32_t size;
    int32_t capacity; /* ids are 0 .. capacity-1 */
} lac_heap;

/* The three arrays are the caller's, each of `capacity` entries; the heap starts empty. */
void lac_heap_init(lac_heap *heap, int32_t *ids, uint64_t *keys, int32_t *where, int32_t capacity);

static inline int lac_heap_contains(const lac_heap *heap, int32_t id) { return heap->where[id] >= 0; }

void lac_heap_push(lac_heap *heap, int32_t id, uint64_t key); /* id must be absent */
void lac_heap_remove(lac_heap *heap, int32_t id);              /* id must be present */
void lac_heap_set_key(lac_heap *heap, int32_t id, uint64_t key); /* id must be present */
/* The id with the smallest key, or -1 when empty. */
static inline int32_t lac_heap_top(const lac_heap *heap) { return heap->size ? heap->ids[0] : -1; }
static inline uint64_t lac_heap_top_key(const lac_heap *heap) { return heap->keys[0]; } /* heap not empty */

#endif
