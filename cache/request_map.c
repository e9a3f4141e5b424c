/* Live requests by id: open addressing, linear probing, backward-shift deletion (no tombstones). */
#include <string.h>

#include "cache_internal.h"
#include "prefix_hash.h"

static uint64_t home(const lac_request_map *map, uint64_t id) { return lac_mix64(id) & (map->capacity - 1); }

lac_request *lac_map_find(const lac_request_map *map, uint64_t id)
{
    if (map->capacity == 0) return NULL;
    for (uint64_t i = home(map, id);; i = (i + 1) & (map->capacity - 1)) {
        if (!map->values[i]) return NULL;
        if (map->keys[i] == id) return map->values[i];
    }
}

void lac_map_insert(lac_request_map *map, lac_request *request)
{
    uint64_t i = home(map, request->id);
    while (map->values[i]) i = (i + 1) & (map->capacity - 1);
    map->keys[i] = request->id;
    map->values[i] = request;
    map->count++;
}

int lac_map_reserve(la_cache_manager *m, lac_request_map *map, uint64_t count)
{
    if (count * 2 <= map->capacity) return 0;
    uint64_t capacity = map->capacity ? map->capacity : 16;
    while (count * 2 > capacity) capacity *= 2;
    lac_request_map grown = {0};
    grown.capacity = capacity;
    grown.keys = lac_alloc(m, capacity * sizeof *grown.keys);
    grown.values = lac_alloc(m, capacity * sizeof *grown.values);
    if (!grown.keys || !grown.values) {
        lac_release(m, grown.keys);
        lac_release(m, grown.values);
        return -1;
    }
    memset(grown.values, 0, capacity * sizeof *grown.values);
    for (uint64_t i = 0; i < map->capacity; i++)
        if (map->values[i]) lac_map_insert(&grown, map->values[i]);
    lac_release(m, map->keys);
    lac_release(m, map->values);
    *map = grown;
    return 0;
}

void lac_map_remove(lac_request_map *map, uint64_t id)
{
    uint64_t mask = map->capacity - 1;
    uint64_t hole = home(map, id);
    while (map->keys[hole] != id || !map->values[hole]) hole = (hole + 1) & mask;
    /* Shift later members of the probe run back into the hole when that keeps them reachable from home. */
    for (uint64_t i = (hole + 1) & mask; map->values[i]; i = (i + 1) & mask) {
        uint64_t want = home(map, map->keys[i]);
        if (((i - want) & mask) >= ((i - hole) & mask)) {
            map->keys[hole] = map->keys[i];
            map->values[hole] = map->values[i];
            hole = i;
        }
    }
    map->values[hole] = NULL;
    map->count--;
}
