/* Contexts: backend selection, capabilities, statistics, and destruction of everything a context owns. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static bool cpu_forced_by_environment(void)
{
    const char *choice = getenv("LINATTN_BACKEND");
    return choice && strcmp(choice, "cpu") == 0;
}

/* Resolves AUTO and checks that the chosen backend exists in this build and machine. */
static linattn_status select_backend(const linattn_context_desc *desc, linattn_context *ctx)
{
    linattn_backend_kind wanted = desc->backend;
    if (wanted != LINATTN_BACKEND_AUTO && wanted != LINATTN_BACKEND_CPU && wanted != LINATTN_BACKEND_CUDA)
        return fail(LINATTN_ERR_INVALID_ARGUMENT, "context_desc.backend %d is not a linattn_backend_kind", wanted);
#if LINATTN_WITH_CUDA
    if (wanted == LINATTN_BACKEND_CUDA || (wanted == LINATTN_BACKEND_AUTO && !cpu_forced_by_environment())) {
        linattn_status status = cuda_device_probe(desc->device_ordinal, ctx->device_name, sizeof ctx->device_name);
        if (status == LINATTN_OK) {
            ctx->ops = &cuda_device_ops;
            ctx->backend = LINATTN_BACKEND_CUDA;
            return LINATTN_OK;
        }
        if (wanted == LINATTN_BACKEND_CUDA) return status;
    }
#else
    (void)cpu_forced_by_environment;
    if (wanted == LINATTN_BACKEND_CUDA)
        return fail(LINATTN_ERR_NO_DEVICE, "this liblinattn was built without CUDA; only the CPU backend exists");
#endif
    ctx->ops = &cpu_device_ops;
    ctx->backend = LINATTN_BACKEND_CPU;
    strcpy(ctx->device_name, "cpu (float64 reference)");
    return LINATTN_OK;
}

linattn_status api_context_create(const linattn_context_desc *desc, linattn_context **out)
{
    if (!desc || !out) return fail(LINATTN_ERR_NULL_ARGUMENT, "context_create needs desc and out_context");
    linattn_status status = check_struct_size(desc->struct_size, sizeof *desc, "linattn_context_desc");
    if (status) return status;
    if (desc->device_ordinal < 0)
        return fail(LINATTN_ERR_INVALID_ARGUMENT, "device_ordinal %d is negative", desc->device_ordinal);
    linattn_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return fail(LINATTN_ERR_OUT_OF_MEMORY, "out of host memory for a context");
    ctx->device_ordinal = desc->device_ordinal;
    ctx->stats.struct_size = sizeof ctx->stats;
    status = select_backend(desc, ctx);
    if (!status) status = handle_register(ctx, HANDLE_CONTEXT);
    if (status) {
        free(ctx);
        return status;
    }
    *out = ctx;
    return LINATTN_OK;
}

linattn_status api_context_destroy(linattn_context *ctx)
{
    if (!ctx) return LINATTN_OK;
    linattn_status status = check_context(ctx);
    if (status) return status;
    status = ctx->ops->synchronize(ctx);
    while (ctx->caches) prefix_cache_release(ctx->caches); /* first: they give slots back to pools */
    while (ctx->plans) plan_release(ctx->plans);
    while (ctx->pools) pool_release(ctx->pools);
    while (ctx->layers) layer_release(ctx->layers);
    handle_unregister(ctx);
    free(ctx);
    return status;
}

linattn_status api_query_capabilities(const linattn_context *ctx, linattn_capabilities *caps)
{
    linattn_status status = check_context(ctx);
    if (status) return status;
    if (!caps) return fail(LINATTN_ERR_NULL_ARGUMENT, "caps is NULL");
    if ((status = check_struct_size(caps->struct_size, sizeof *caps, "linattn_capabilities"))) return status;
    linattn_capabilities full = {
        .struct_size = sizeof full,
        .backend = ctx->backend,
        .layer_kinds = (1u << LINATTN_LAYER_GATED_DELTANET) | (1u << LINATTN_LAYER_SIMPLE_GLA),
        .state_dtypes = (1u << LINATTN_DTYPE_F32) | (1u << LINATTN_DTYPE_BF16),
        .max_draft_tokens = 0,
        .checkpoint_alignment = CHECKPOINT_ALIGNMENT,
        .abi_major = LINATTN_ABI_VERSION_MAJOR,
        .abi_minor = LINATTN_ABI_VERSION_MINOR,
        .version_major = LINATTN_VERSION_MAJOR,
        .version_minor = LINATTN_VERSION_MINOR,
        .version_patch = LINATTN_VERSION_PATCH,
    };
    memcpy(full.device_name, ctx->device_name, sizeof full.device_name);
    copy_result(caps, &full, sizeof full);
    return LINATTN_OK;
}

linattn_status api_get_stats(const linattn_context *ctx, linattn_stats *stats)
{
    linattn_status status = check_context(ctx);
    if (status) return status;
    if (!stats) return fail(LINATTN_ERR_NULL_ARGUMENT, "stats is NULL");
    if ((status = check_struct_size(stats->struct_size, sizeof *stats, "linattn_stats"))) return status;
    linattn_stats full = ctx->stats;
    full.state_bytes_reserved = 0;
    full.state_bytes_in_use = 0;
    for (const linattn_pool *pool = ctx->pools; pool; pool = pool->next) {
        full.state_bytes_reserved += pool->slot_bytes * (uint64_t)pool->capacity;
        full.state_bytes_in_use += pool->slot_bytes * (uint64_t)pool->slots_in_use;
    }
    copy_result(stats, &full, sizeof full);
    return LINATTN_OK;
}
