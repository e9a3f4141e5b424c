/* forward: per-layer inputs checked against the plan's batch, then handed to the backend's kernels. */
#include "internal.h"

static linattn_status resolve_stride(int64_t given, int64_t row_width, const char *name, int64_t *out)
{
    if (given < 0 || (given > 0 && given < row_width))
        return fail(LINATTN_ERR_INVALID_ARGUMENT, "%s row stride %lld is smaller than a row (%lld elements)", name,
                    (long long)given, (long long)row_width);
    *out = given ? given : row_width;
    return LINATTN_OK;
}

static linattn_status check_pointers(const la_layer *p, const linattn_forward_args *args, bool any_tokens)
{
    if (!any_tokens) return LINATTN_OK;
    if (!args->qkv || !args->out) return fail(LINATTN_ERR_NULL_ARGUMENT, "forward_args.qkv and .out are required");
    if (p->kind == LA_KIND_GATED_DELTANET && (!args->a || !args->b))
        return fail(LINATTN_ERR_NULL_ARGUMENT, "a Gated DeltaNet layer needs forward_args.a and .b");
    return LINATTN_OK;
}

static linattn_status build_io(const la_layer *p, const linattn_forward_args *args, la_io *io)
{
    linattn_status status = resolve_stride(args->qkv_row_stride, la_channels(p), "qkv", &io->qkv_stride);
    if (!status) status = resolve_stride(args->a_row_stride, p->hv, "a", &io->a_stride);
    if (!status) status = resolve_stride(args->b_row_stride, p->hv, "b", &io->b_stride);
    if (!status) status = resolve_stride(args->out_row_stride, (int64_t)p->hv * p->dv, "out", &io->out_stride);
    io->qkv = args->qkv;
    io->a = args->a;
    io->b = p->kind == LA_KIND_GATED_DELTANET ? args->b : NULL;
    io->out = args->out;
    return status;
}

linattn_status api_forward(linattn_layer *layer, const linattn_plan *plan, const linattn_forward_args *args,
                           linattn_stream_t stream)
{
    linattn_status status = check_layer(layer);
    if (!status) status = check_plan(plan);
    if (status) return status;
    if (!args) return fail(LINATTN_ERR_NULL_ARGUMENT, "forward_args is NULL");
    if ((status = check_struct_size(args->struct_size, sizeof *args, "linattn_forward_args"))) return status;
    const pool_layer *pl = pool_find_layer(plan->pool, layer);
    if (!pl) return fail(LINATTN_ERR_LAYER_NOT_IN_POOL, "the layer's state is not held by the plan's pool");
    if (!plan->has_batch) return fail(LINATTN_ERR_INVALID_ARGUMENT, "no batch has been set on the plan");
    if (args->activation_dtype != LINATTN_DTYPE_BF16)
        return fail(LINATTN_ERR_UNSUPPORTED_DTYPE, "activation_dtype %d: only BF16 (2) is supported",
                    args->activation_dtype);
    la_io io;
    if ((status = check_pointers(&layer->params, args, plan->num_tokens > 0))) return status;
    if ((status = build_io(&layer->params, args, &io))) return status;

    linattn_context *ctx = layer->ctx;
    bool device = ctx->ops->device_batch;
    la_batch batch = {
        /* device kernels see the padded, fixed-size arrays so a captured launch stays valid */
        .num_seqs = device ? plan->limits.max_seqs : plan->num_seqs,
        .num_checkpoints = plan->num_checkpoints,
        .num_tokens = device ? plan->limits.max_tokens : plan->num_tokens,
        .seqs = plan->device_seqs,
        .checkpoints = plan->device_checkpoints,
        .max_seq_tokens = plan->max_seq_tokens,
        .workspace = plan->workspace,
        .workspace_bytes = plan->workspace_bytes,
    };
    status = ctx->ops->forward(ctx, &layer->params, &batch, &io, &pl->view, stream);
    if (status) return status;
    ctx->stats.forward_calls++;
    ctx->stats.tokens_processed += plan->tokens_per_layer;
    ctx->stats.checkpoints_written += (uint64_t)plan->num_checkpoints;
    ctx->stats.checkpoints_restored += plan->restores_per_layer;
    return LINATTN_OK;
}

linattn_status api_spec_verify(linattn_layer *layer, const linattn_plan *plan, const linattn_draft_desc *drafts,
                               const linattn_forward_args *args, linattn_stream_t stream)
{
    (void)layer, (void)plan, (void)drafts, (void)args, (void)stream;
    return fail(LINATTN_ERR_NOT_IMPLEMENTED, "spec_verify is not implemented in this build of liblinattn");
}

linattn_status api_spec_commit(linattn_pool *pool, const linattn_plan *plan, const linattn_accept_desc *accepted,
                               linattn_stream_t stream)
{
    (void)pool, (void)plan, (void)accepted, (void)stream;
    return fail(LINATTN_ERR_NOT_IMPLEMENTED, "spec_commit is not implemented in this build of liblinattn");
}
