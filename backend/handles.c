/*
 * The registry of live handles: an open-addressing set of pointers with their kind, behind one mutex. It lets
 * every hook refuse a destroyed or foreign handle with LINATTN_ERR_INVALID_HANDLE instead of dereferencing it.
 * Lookups are a hash probe under an uncontended lock: tens of nanoseconds, once per hook.
 */
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

typedef struct entry {
    const void *handle; /* NULL: empty; TOMBSTONE: removed */
    handle_kind kind;
} entry;

static const char tombstone_byte;
#define TOMBSTONE ((const void *)&tombstone_byte)

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static entry *table;
static size_t table_size; /* power of two */
static size_t used;       /* live + tombstones */

static size_t hash_pointer(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

static entry *probe(entry *t, size_t size, const void *handle, bool for_insert)
{
    entry *reusable = NULL;
    for (size_t i = hash_pointer(handle) & (size - 1);; i = (i + 1) & (size - 1)) {
        if (t[i].handle == handle) return &t[i];
        if (t[i].handle == TOMBSTONE && !reusable) reusable = &t[i];
        if (t[i].handle == NULL) return for_insert ? (reusable ? reusable : &t[i]) : NULL;
    }
}

static bool grow(void)
{
    size_t new_size = table_size ? table_size * 2 : 64;
    entry *fresh = calloc(new_size, sizeof *fresh);
    if (!fresh) return false;
    size_t live = 0;
    for (size_t i = 0; i < table_size; i++) {
        if (table[i].handle && table[i].handle != TOMBSTONE) {
            *probe(fresh, new_size, table[i].handle, true) = table[i];
            live++;
        }
    }
    free(table);
    table = fresh;
    table_size = new_size;
    used = live;
    return true;
}

linattn_status handle_register(const void *handle, handle_kind kind)
{
    pthread_mutex_lock(&registry_lock);
    bool ok = (used + 1) * 2 <= table_size || grow();
    if (ok) {
        entry *e = probe(table, table_size, handle, true);
        if (e->handle == NULL) used++;
        e->handle = handle;
        e->kind = kind;
    }
    pthread_mutex_unlock(&registry_lock);
    return ok ? LINATTN_OK : fail(LINATTN_ERR_OUT_OF_MEMORY, "out of host memory for the handle registry");
}

void handle_unregister(const void *handle)
{
    pthread_mutex_lock(&registry_lock);
    entry *e = table_size ? probe(table, table_size, handle, false) : NULL;
    if (e) e->handle = TOMBSTONE;
    pthread_mutex_unlock(&registry_lock);
}

bool handle_is_live(const void *handle, handle_kind kind)
{
    pthread_mutex_lock(&registry_lock);
    entry *e = table_size ? probe(table, table_size, handle, false) : NULL;
    bool live = e && e->kind == kind;
    pthread_mutex_unlock(&registry_lock);
    return live;
}
