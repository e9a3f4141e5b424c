/* Indexed binary min-heap. Ties keep no particular order. */
#include "index_heap.h"

void lac_heap_init(lac_heap *heap, int32_t *ids, uint64_t *keys, int32_t *where, int32_t capacity)
{
    heap->ids = ids;
    heap->keys = keys;
    heap->where = where;
    heap->size = 0;
    heap->capacity = capacity;
    for (int32_t i = 0; i < capacity; i++) where[i] = -1;
}

static void place(lac_heap *heap, int32_t pos, int32_t id, uint64_t key)
{
    heap->ids[pos] = id;
    heap->keys[pos] = key;
    heap->where[id] = pos;
}

static void sift_up(lac_heap *heap, int32_t pos)
{
    int32_t id = heap->ids[pos];
    uint64_t key = heap->keys[pos];
    while (pos > 0) {
        int32_t parent = (pos - 1) / 2;
        if (heap->keys[parent] <= key) break;
        place(heap, pos, heap->ids[parent], heap->keys[parent]);
        pos = parent;
    }
    place(heap, pos, id, key);
}

static void sift_down(lac_heap *heap, int32_t pos)
{
    int32_t id = heap->ids[pos];
    uint64_t key = heap->keys[pos];
    for (;;) {
        int32_t child = 2 * pos + 1;
        if (child >= heap->size) break;
        if (child + 1 < heap->size && heap->keys[child + 1] < heap->keys[child]) child++;
        if (heap->keys[child] >= key) break;
        place(heap, pos, heap->ids[child], heap->keys[child]);
        pos = child;
    }
    place(heap, pos, id, key);
}

void lac_heap_push(lac_heap *heap, int32_t id, uint64_t key)
{
    place(heap, heap->size++, id, key);
    sift_up(heap, heap->size - 1);
}

void lac_heap_set_key(lac_heap *heap, int32_t id, uint64_t key)
{
    int32_t pos = heap->where[id];
    heap->keys[pos] = key;
    sift_up(heap, pos);
    sift_down(heap, heap->where[id]);
}

void lac_heap_remove(lac_heap *heap, int32_t id)
{
    int32_t pos = heap->where[id];
    heap->where[id] = -1;
    int32_t last = --heap->size;
    if (pos == last) return;
    int32_t moved = heap->ids[last];
    place(heap, pos, moved, heap->keys[last]);
    sift_up(heap, pos);
    sift_down(heap, heap->where[moved]);
}
