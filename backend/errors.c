/* Thread-local last-error message and the argument checks every hook shares. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_message[512];

linattn_status fail(linattn_status status, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(last_message, sizeof last_message, format, args);
    va_end(args);
    return status;
}

const char *last_error(void) { return last_message; }

linattn_status check_struct_size(uint32_t struct_size, size_t known_size, const char *what)
{
    if (struct_size != known_size)
        return fail(LINATTN_ERR_STRUCT_SIZE, "%s.struct_size is %u, this library knows size %zu", what, struct_size,
                    known_size);
    return LINATTN_OK;
}

linattn_status check_context(const linattn_context *ctx)
{
    if (!ctx) return fail(LINATTN_ERR_NULL_ARGUMENT, "context is NULL");
    if (!handle_is_live(ctx, HANDLE_CONTEXT))
        return fail(LINATTN_ERR_INVALID_HANDLE, "context %p is not a live context (destroyed?)", (const void *)ctx);
    return LINATTN_OK;
}

linattn_status check_layer(const linattn_layer *layer)
{
    if (!layer) return fail(LINATTN_ERR_NULL_ARGUMENT, "layer is NULL");
    if (!handle_is_live(layer, HANDLE_LAYER))
        return fail(LINATTN_ERR_INVALID_HANDLE, "layer %p is not a live layer (destroyed?)", (const void *)layer);
    return LINATTN_OK;
}

linattn_status check_pool(const linattn_pool *pool)
{
    if (!pool) return fail(LINATTN_ERR_NULL_ARGUMENT, "pool is NULL");
    if (!handle_is_live(pool, HANDLE_POOL))
        return fail(LINATTN_ERR_INVALID_HANDLE, "pool %p is not a live pool (destroyed?)", (const void *)pool);
    return LINATTN_OK;
}

linattn_status check_plan(const linattn_plan *plan)
{
    if (!plan) return fail(LINATTN_ERR_NULL_ARGUMENT, "plan is NULL");
    if (!handle_is_live(plan, HANDLE_PLAN))
        return fail(LINATTN_ERR_INVALID_HANDLE, "plan %p is not a live plan (destroyed?)", (const void *)plan);
    return LINATTN_OK;
}

linattn_status check_cache(const linattn_prefix_cache *cache)
{
    if (!cache) return fail(LINATTN_ERR_NULL_ARGUMENT, "prefix cache is NULL");
    if (!handle_is_live(cache, HANDLE_CACHE))
        return fail(LINATTN_ERR_INVALID_HANDLE, "prefix cache %p is not a live prefix cache (destroyed?)",
                    (const void *)cache);
    return LINATTN_OK;
}

linattn_status check_slot(const linattn_pool *pool, int32_t slot, const char *what)
{
    if (slot < 0 || slot >= pool->capacity)
        return fail(LINATTN_ERR_SLOT_OUT_OF_RANGE, "%s %d is outside the pool's slots 0..%d", what, slot,
                    pool->capacity - 1);
    if (!pool->allocated[slot]) return fail(LINATTN_ERR_SLOT_NOT_ALLOCATED, "%s %d is not allocated", what, slot);
    return LINATTN_OK;
}

void copy_result(void *host_struct, const void *full, size_t size)
{
    uint32_t host_size;
    memcpy(&host_size, host_struct, sizeof host_size);
    memcpy((char *)host_struct + sizeof host_size, (const char *)full + sizeof host_size,
           (host_size < size ? host_size : size) - sizeof host_size);
}
