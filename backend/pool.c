/*
 * State pools. One allocation holds, for every layer of the pool, a recurrent array [capacity][state] and a conv
 * array [capacity][window], each 256-byte aligned; slots index all of them at once, so one slot number names a
 * sequence's state in every linear layer of the model (the plan is shared by all of them).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ARRAY_ALIGNMENT 256u

static uint64_t align_up(uint64_t bytes) { return (bytes + ARRAY_ALIGNMENT - 1) / ARRAY_ALIGNMENT * ARRAY_ALIGNMENT; }

static linattn_status validate_layers(const linattn_context *ctx, const linattn_pool_desc *d, uint64_t *slot_bytes)
{
    if (d->num_layers < 1) return fail(LINATTN_ERR_INVALID_ARGUMENT, "a pool needs at least one layer");
    if (!d->layers) return fail(LINATTN_ERR_NULL_ARGUMENT, "pool_desc.layers is NULL");
    *slot_bytes = 0;
    for (int32_t i = 0; i < d->num_layers; i++) {
        linattn_status status = check_layer(d->layers[i]);
        if (status) return status;
        if (d->layers[i]->ctx != ctx)
            return fail(LINATTN_ERR_INVALID_ARGUMENT, "pool_desc.layers[%d] belongs to another context", i);
        for (int32_t j = 0; j < i; j++)
            if (d->layers[j] == d->layers[i])
                return fail(LINATTN_ERR_INVALID_ARGUMENT, "pool_desc.layers[%d] repeats layers[%d]", i, j);
        *slot_bytes += d->layers[i]->info.state_bytes;
    }
    return LINATTN_OK;
}

static linattn_status resolve_capacity(const linattn_pool_desc *d, uint64_t slot_bytes, int32_t *capacity)
{
    if (d->capacity < 0) return fail(LINATTN_ERR_INVALID_ARGUMENT, "pool capacity %d is negative", d->capacity);
    if (d->capacity > 0) {
        *capacity = d->capacity;
        return LINATTN_OK;
    }
    uint64_t fit = d->byte_budget / slot_bytes;
    if (fit == 0)
        return fail(LINATTN_ERR_INVALID_ARGUMENT, "byte_budget %llu is smaller than one slot (%llu bytes)",
                    (unsigned long long)d->byte_budget, (unsigned long long)slot_bytes);
    *capacity = fit > INT32_MAX - 1 ? INT32_MAX - 1 : (int32_t)fit;
    return LINATTN_OK;
}

/* Bytes of all arrays for `capacity` slots, or 0 on overflow. */
static uint64_t pool_bytes(const linattn_pool_desc *d, int32_t capacity)
{
    uint64_t total = 0;
    for (int32_t i = 0; i < d->num_layers; i++) {
        const linattn_layer_info *info = &d->layers[i]->info;
        if (info->state_bytes > UINT64_MAX / 2 / (uint64_t)capacity) return 0;
        total += align_up(info->recurrent_bytes * capacity) + align_up(info->conv_bytes * capacity);
    }
    return total;
}

static void carve_views(linattn_pool *pool)
{
    char *cursor = pool->memory;
    for (int32_t i = 0; i < pool->num_layers; i++) {
        pool_layer *pl = &pool->layers[i];
        const linattn_layer_info *info = &pl->layer->info;
        pl->view.capacity = pool->capacity;
        pl->view.recurrent = cursor;
        cursor += align_up(info->recurrent_bytes * pool->capacity);
        pl->view.conv = info->conv_bytes ? (uint16_t *)cursor : NULL;
        cursor += align_up(info->conv_bytes * pool->capacity);
    }
}

static linattn_status allocate_pool(linattn_context *ctx, const linattn_pool_desc *d, int32_t capacity,
                                    uint64_t bytes, linattn_pool *pool)
{
    pool->layers = calloc((size_t)d->num_layers, sizeof *pool->layers);
    pool->allocated = calloc((size_t)capacity, 1);
    if (!pool->layers || !pool->allocated) return fail(LINATTN_ERR_OUT_OF_MEMORY, "out of host memory for a pool");
    linattn_status status = ctx->ops->alloc(ctx, bytes, &pool->memory);
    if (!status) status = ctx->ops->zero(ctx, pool->memory, bytes, NULL);
    if (!status) status = ctx->ops->synchronize(ctx);
    return status;
}

static void free_pool_memory(linattn_pool *pool)
{
    if (pool->memory) pool->ctx->ops->release(pool->ctx, pool->memory);
    free(pool->layers);
    free(pool->allocated);
    free(pool);
}

linattn_status api_pool_create(linattn_context *ctx, const linattn_pool_desc *desc, linattn_pool **out)
{
    linattn_status status = check_context(ctx);
    if (status) return status;
    if (!desc || !out) return fail(LINATTN_ERR_NULL_ARGUMENT, "pool_create needs desc and out_pool");
    if ((status = check_struct_size(desc->struct_size, sizeof *desc, "linattn_pool_desc"))) return status;
    uint64_t slot_bytes = 0;
    int32_t capacity = 0;
    if ((status = validate_layers(ctx, desc, &slot_bytes))) return status;
    if ((status = resolve_capacity(desc, slot_bytes, &capacity))) return status;
    uint64_t bytes = pool_bytes(desc, capacity);
    if (bytes == 0 || bytes > SIZE_MAX)
        return fail(LINATTN_ERR_INVALID_ARGUMENT, "a pool of %d slots of %llu bytes is too large", capacity,
                    (unsigned long long)slot_bytes);

    linattn_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return fail(LINATTN_ERR_OUT_OF_MEMORY, "out of host memory for a pool");
    pool->ctx = ctx;
    pool->num_layers = desc->num_layers;
    pool->capacity = capacity;
    pool->slot_bytes = slot_bytes;
    status = allocate_pool(ctx, desc, capacity, bytes, pool);
    if (!status) status = handle_register(pool, HANDLE_POOL);
    if (status) {
        free_pool_memory(pool);
        return status;
    }
    for (int32_t i = 0; i < desc->num_layers; i++) {
        pool->layers[i].layer = desc->layers[i];
        desc->layers[i]->pool_refs++;
    }
    carve_views(pool);
    pool->next = ctx->pools;
    ctx->pools = pool;
    *out = pool;
    return LINATTN_OK;
}

void pool_release(linattn_pool *pool)
{
    linattn_context *ctx = pool->ctx;
    for (linattn_pool **link = &ctx->pools; *link; link = &(*link)->next) {
        if (*link == pool) {
            *link = pool->next;
            break;
        }
    }
    for (int32_t i = 0; i < pool->num_layers; i++) pool->layers[i].layer->pool_refs--;
    handle_unregister(pool);
    free_pool_memory(pool);
}

linattn_status api_pool_destroy(linattn_pool *pool)
{
    linattn_status status = check_pool(pool);
    if (status) return status;
    if (pool->plan_refs > 0)
        return fail(LINATTN_ERR_IN_USE, "pool is still used by %d plan(s); destroy them first", pool->plan_refs);
    if (pool->cache_refs > 0)
        return fail(LINATTN_ERR_IN_USE, "pool holds the checkpoints of %d prefix cache(s); destroy them first",
                    pool->cache_refs);
    status = pool->ctx->ops->synchronize(pool->ctx);
    pool_release(pool);
    return status;
}

linattn_status api_pool_info(const linattn_pool *pool, linattn_pool_info *info)
{
    linattn_status status = check_pool(pool);
    if (status) return status;
    if (!info) return fail(LINATTN_ERR_NULL_ARGUMENT, "info is NULL");
    if ((status = check_struct_size(info->struct_size, sizeof *info, "linattn_pool_info"))) return status;
    linattn_pool_info full = {.struct_size = sizeof full,
                              .capacity = pool->capacity,
                              .slots_in_use = pool->slots_in_use,
                              .slot_bytes = pool->slot_bytes};
    copy_result(info, &full, sizeof full);
    return LINATTN_OK;
}

linattn_status api_slot_alloc(linattn_pool *pool, int32_t *out_slot)
{
    linattn_status status = check_pool(pool);
    if (status) return status;
    if (!out_slot) return fail(LINATTN_ERR_NULL_ARGUMENT, "out_slot is NULL");
    int32_t slot = pool_take_slot(pool, SLOT_HOST);
    if (slot < 0) return fail(LINATTN_ERR_POOL_EXHAUSTED, "all %d slots of the pool are in use", pool->capacity);
    *out_slot = slot;
    return LINATTN_OK;
}

int32_t pool_take_slot(linattn_pool *pool, slot_owner owner)
{
    if (pool->slots_in_use == pool->capacity) return -1;
    int32_t slot = pool->lowest_free;
    while (pool->allocated[slot] != SLOT_FREE) slot++;
    pool->allocated[slot] = (uint8_t)owner;
    pool->slots_in_use++;
    pool->lowest_free = slot + 1;
    return slot;
}

void pool_return_slot(linattn_pool *pool, int32_t slot)
{
    pool->allocated[slot] = SLOT_FREE;
    pool->slots_in_use--;
    if (slot < pool->lowest_free) pool->lowest_free = slot;
}

linattn_status api_slot_free(linattn_pool *pool, int32_t slot)
{
    linattn_status status = check_pool(pool);
    if (!status) status = check_slot(pool, slot, "slot");
    if (status) return status;
    if (pool->allocated[slot] == SLOT_CHECKPOINT)
        return fail(LINATTN_ERR_IN_USE, "slot %d holds a prefix cache checkpoint; only the cache frees it", slot);
    pool_return_slot(pool, slot);
    return LINATTN_OK;
}

const pool_layer *pool_find_layer(const linattn_pool *pool, const linattn_layer *layer)
{
    for (int32_t i = 0; i < pool->num_layers; i++)
        if (pool->layers[i].layer == layer) return &pool->layers[i];
    return NULL;
}

static void *recurrent_at(const pool_layer *pl, int32_t slot)
{
    return (char *)pl->view.recurrent + pl->layer->info.recurrent_bytes * (uint64_t)slot;
}

static void *conv_at(const pool_layer *pl, int32_t slot)
{
    return (char *)pl->view.conv + pl->layer->info.conv_bytes * (uint64_t)slot;
}

linattn_status api_slot_copy(linattn_pool *pool, int32_t dst, int32_t src, linattn_stream_t stream)
{
    linattn_status status = check_pool(pool);
    if (!status) status = check_slot(pool, dst, "dst_slot");
    if (!status) status = check_slot(pool, src, "src_slot");
    if (status) return status;
    if (dst == src) return fail(LINATTN_ERR_INVALID_ARGUMENT, "slot_copy from slot %d onto itself", dst);
    const device_ops *ops = pool->ctx->ops;
    for (int32_t i = 0; i < pool->num_layers && !status; i++) {
        const pool_layer *pl = &pool->layers[i];
        const linattn_layer_info *info = &pl->layer->info;
        status = ops->copy(pool->ctx, recurrent_at(pl, dst), recurrent_at(pl, src), info->recurrent_bytes, stream);
        if (!status && info->conv_bytes)
            status = ops->copy(pool->ctx, conv_at(pl, dst), conv_at(pl, src), info->conv_bytes, stream);
    }
    return status;
}

linattn_status api_slot_zero(linattn_pool *pool, int32_t slot, linattn_stream_t stream)
{
    linattn_status status = check_pool(pool);
    if (!status) status = check_slot(pool, slot, "slot");
    if (status) return status;
    const device_ops *ops = pool->ctx->ops;
    for (int32_t i = 0; i < pool->num_layers && !status; i++) {
        const pool_layer *pl = &pool->layers[i];
        status = ops->zero(pool->ctx, recurrent_at(pl, slot), pl->layer->info.recurrent_bytes, stream);
        if (!status && pl->layer->info.conv_bytes)
            status = ops->zero(pool->ctx, conv_at(pl, slot), pl->layer->info.conv_bytes, stream);
    }
    return status;
}

/* Shared checks of slot_read / slot_write; returns the layer's place in the pool. */
static linattn_status check_transfer(const linattn_pool *pool, const linattn_layer *layer, int32_t slot,
                                     const void *buffer, uint64_t bytes, const pool_layer **out)
{
    linattn_status status = check_pool(pool);
    if (!status) status = check_layer(layer);
    if (!status) status = check_slot(pool, slot, "slot");
    if (status) return status;
    if (!buffer) return fail(LINATTN_ERR_NULL_ARGUMENT, "host buffer is NULL");
    const pool_layer *pl = pool_find_layer(pool, layer);
    if (!pl) return fail(LINATTN_ERR_LAYER_NOT_IN_POOL, "the layer's state is not held by this pool");
    if (bytes < layer->info.state_bytes)
        return fail(LINATTN_ERR_BUFFER_TOO_SMALL, "buffer has %llu bytes, one layer's state needs %llu",
                    (unsigned long long)bytes, (unsigned long long)layer->info.state_bytes);
    *out = pl;
    return LINATTN_OK;
}

linattn_status api_slot_read(const linattn_pool *pool, const linattn_layer *layer, int32_t slot, void *dst,
                             uint64_t bytes, linattn_stream_t stream)
{
    const pool_layer *pl = NULL;
    linattn_status status = check_transfer(pool, layer, slot, dst, bytes, &pl);
    if (status) return status;
    const linattn_layer_info *info = &layer->info;
    status = pool->ctx->ops->download(pool->ctx, dst, recurrent_at(pl, slot), info->recurrent_bytes, stream);
    if (!status && info->conv_bytes)
        status = pool->ctx->ops->download(pool->ctx, (char *)dst + info->recurrent_bytes, conv_at(pl, slot),
                                          info->conv_bytes, stream);
    return status;
}

linattn_status api_slot_write(linattn_pool *pool, const linattn_layer *layer, int32_t slot, const void *src,
                              uint64_t bytes, linattn_stream_t stream)
{
    const pool_layer *pl = NULL;
    linattn_status status = check_transfer(pool, layer, slot, src, bytes, &pl);
    if (status) return status;
    const linattn_layer_info *info = &layer->info;
    const device_ops *ops = pool->ctx->ops;
    status = ops->upload(pool->ctx, recurrent_at(pl, slot), src, info->recurrent_bytes, stream);
    if (!status && info->conv_bytes)
        status = ops->upload(pool->ctx, conv_at(pl, slot), (const char *)src + info->recurrent_bytes,
                             info->conv_bytes, stream);
    if (!status) status = ops->synchronize(pool->ctx);
    return status;
}
