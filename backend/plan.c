/*
 * Plans: a model step's batch, validated once and translated into the kernels' la_seq / la_checkpoint arrays,
 * then shared by every linear layer of that step. Arrays are sized at creation from the plan's limits and never
 * move; on a device backend they are mirrored in device memory, padded to max_seqs with skipped sequences, so a
 * forward captured in a CUDA graph keeps reading the current batch.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { MARK_WRITTEN = 1, MARK_READ = 2 };

/* The forwards' scratch: the most any layer of the pool needs at the plan's capacities. */
static linattn_status alloc_workspace(const linattn_pool *pool, const linattn_plan_desc *desc, linattn_plan *plan)
{
    linattn_context *ctx = pool->ctx;
    if (!ctx->ops->workspace_bytes) return LINATTN_OK;
    uint64_t bytes = 0;
    for (int32_t i = 0; i < pool->num_layers; i++) {
        const la_layer *layer = &pool->layers[i].layer->params;
        const uint64_t need = ctx->ops->workspace_bytes(layer, desc->max_tokens, desc->max_seqs);
        if (need > bytes) bytes = need;
    }
    if (bytes == 0) return LINATTN_OK;
    if (bytes > SIZE_MAX)
        return fail(LINATTN_ERR_OUT_OF_MEMORY, "a plan's workspace of %llu bytes exceeds the address space",
                    (unsigned long long)bytes);
    linattn_status status = ctx->ops->alloc(ctx, (size_t)bytes, &plan->workspace);
    if (!status) plan->workspace_bytes = bytes;
    return status;
}

linattn_status api_plan_create(linattn_pool *pool, const linattn_plan_desc *desc, linattn_plan **out)
{
    linattn_status status = check_pool(pool);
    if (status) return status;
    if (!desc || !out) return fail(LINATTN_ERR_NULL_ARGUMENT, "plan_create needs desc and out_plan");
    if ((status = check_struct_size(desc->struct_size, sizeof *desc, "linattn_plan_desc"))) return status;
    if (desc->max_seqs < 1 || desc->max_checkpoints < 0 || desc->max_tokens < 0)
        return fail(LINATTN_ERR_INVALID_ARGUMENT, "plan limits need max_seqs >= 1, max_checkpoints >= 0, max_tokens >= 0");

    linattn_context *ctx = pool->ctx;
    linattn_plan *plan = calloc(1, sizeof *plan);
    size_t checkpoint_room = desc->max_checkpoints > 0 ? (size_t)desc->max_checkpoints : 1;
    if (plan) {
        plan->seqs = calloc((size_t)desc->max_seqs, sizeof *plan->seqs);
        plan->checkpoints = calloc(checkpoint_room, sizeof *plan->checkpoints);
        plan->slot_marks = calloc((size_t)pool->capacity, 1);
    }
    if (!plan || !plan->seqs || !plan->checkpoints || !plan->slot_marks)
        status = fail(LINATTN_ERR_OUT_OF_MEMORY, "out of host memory for a plan");
    if (!status && ctx->ops->device_batch) {
        status = ctx->ops->alloc(ctx, (size_t)desc->max_seqs * sizeof(la_seq), (void **)&plan->device_seqs);
        if (!status)
            status = ctx->ops->alloc(ctx, checkpoint_room * sizeof(la_checkpoint), (void **)&plan->device_checkpoints);
    } else if (!status) {
        plan->device_seqs = plan->seqs;
        plan->device_checkpoints = plan->checkpoints;
    }
    if (!status) status = alloc_workspace(pool, desc, plan);
    if (!status) status = handle_register(plan, HANDLE_PLAN);
    if (status) {
        if (plan) {
            plan->ctx = ctx;
            plan->next = NULL;
            plan->pool = NULL;
            plan_release(plan);
        }
        return status;
    }
    plan->ctx = ctx;
    plan->pool = pool;
    plan->limits = *desc;
    pool->plan_refs++;
    plan->next = ctx->plans;
    ctx->plans = plan;
    *out = plan;
    return LINATTN_OK;
}

void plan_release(linattn_plan *plan)
{
    linattn_context *ctx = plan->ctx;
    for (linattn_plan **link = &ctx->plans; *link; link = &(*link)->next) {
        if (*link == plan) {
            *link = plan->next;
            break;
        }
    }
    if (plan->pool) plan->pool->plan_refs--;
    handle_unregister(plan);
    if (ctx->ops->device_batch) {
        if (plan->device_seqs) ctx->ops->release(ctx, plan->device_seqs);
        if (plan->device_checkpoints) ctx->ops->release(ctx, plan->device_checkpoints);
    }
    if (plan->workspace) ctx->ops->release(ctx, plan->workspace);
    free(plan->seqs);
    free(plan->checkpoints);
    free(plan->slot_marks);
    free(plan);
}

linattn_status api_plan_destroy(linattn_plan *plan)
{
    linattn_status status = check_plan(plan);
    if (status) return status;
    status = plan->ctx->ops->synchronize(plan->ctx);
    plan_release(plan);
    return status;
}

/* ---- validation of a batch ---- */

static linattn_status check_batch_header(const linattn_plan *plan, const linattn_batch_desc *b)
{
    linattn_status status = check_struct_size(b->struct_size, sizeof *b, "linattn_batch_desc");
    if (!status) status = check_struct_size(b->seq_desc_size, sizeof(linattn_seq_desc), "batch seq_desc_size");
    if (!status)
        status = check_struct_size(b->checkpoint_desc_size, sizeof(linattn_checkpoint_desc),
                                   "batch checkpoint_desc_size");
    if (status) return status;
    if (b->num_seqs < 0 || b->num_tokens < 0 || b->num_checkpoints < 0)
        return fail(LINATTN_ERR_INVALID_ARGUMENT, "batch counts must not be negative");
    if (b->num_seqs > plan->limits.max_seqs || b->num_tokens > plan->limits.max_tokens ||
        b->num_checkpoints > plan->limits.max_checkpoints)
        return fail(LINATTN_ERR_PLAN_CAPACITY,
                    "batch of %d seqs, %lld tokens, %d checkpoints exceeds the plan's limits %d, %lld, %d",
                    b->num_seqs, (long long)b->num_tokens, b->num_checkpoints, plan->limits.max_seqs,
                    (long long)plan->limits.max_tokens, plan->limits.max_checkpoints);
    if (b->num_seqs > 0 && !b->seqs) return fail(LINATTN_ERR_NULL_ARGUMENT, "batch.seqs is NULL");
    if (b->num_checkpoints > 0 && !b->checkpoints) return fail(LINATTN_ERR_NULL_ARGUMENT, "batch.checkpoints is NULL");
    return LINATTN_OK;
}

static linattn_status check_seq(const linattn_pool *pool, const linattn_batch_desc *b, int32_t i)
{
    const linattn_seq_desc *s = &b->seqs[i];
    if (s->num_tokens < 0 || s->token_offset < 0 || s->token_offset > b->num_tokens - s->num_tokens)
        return fail(LINATTN_ERR_TOKEN_RANGE, "seq %d: tokens [%lld, %lld) are outside the stream of %lld tokens", i,
                    (long long)s->token_offset, (long long)s->token_offset + s->num_tokens,
                    (long long)b->num_tokens);
    if (s->state_slot == LINATTN_SLOT_NONE) return LINATTN_OK;
    if (s->start_position < 0)
        return fail(LINATTN_ERR_INVALID_ARGUMENT, "seq %d: start_position %lld is negative", i,
                    (long long)s->start_position);
    linattn_status status = check_slot(pool, s->state_slot, "state_slot");
    if (status) return status;
    switch (s->init) {
    case LINATTN_INIT_ZERO:
        if (s->start_position != 0)
            return fail(LINATTN_ERR_INVALID_ARGUMENT, "seq %d: INIT_ZERO starts a sequence, but start_position is %lld",
                        i, (long long)s->start_position);
        return LINATTN_OK;
    case LINATTN_INIT_CONTINUE: return LINATTN_OK;
    case LINATTN_INIT_FROM_SLOT: return check_slot(pool, s->source_slot, "source_slot");
    default: return fail(LINATTN_ERR_INVALID_ARGUMENT, "seq %d: init %d is not a linattn_init", i, s->init);
    }
}

/* qsort has no context argument in C11; the arrays being sorted are passed through thread-locals. */
static _Thread_local const linattn_seq_desc *sort_seqs;
static int compare_offsets(const void *a, const void *b)
{
    int64_t x = sort_seqs[*(const int32_t *)a].token_offset, y = sort_seqs[*(const int32_t *)b].token_offset;
    return (x > y) - (x < y);
}

static linattn_status check_overlaps(const linattn_batch_desc *b, int32_t *order)
{
    int32_t n = 0;
    for (int32_t i = 0; i < b->num_seqs; i++)
        if (b->seqs[i].state_slot != LINATTN_SLOT_NONE && b->seqs[i].num_tokens > 0) order[n++] = i;
    sort_seqs = b->seqs;
    qsort(order, (size_t)n, sizeof *order, compare_offsets);
    for (int32_t k = 1; k < n; k++) {
        const linattn_seq_desc *prev = &b->seqs[order[k - 1]], *cur = &b->seqs[order[k]];
        if (prev->token_offset + prev->num_tokens > cur->token_offset)
            return fail(LINATTN_ERR_TOKEN_RANGE, "seqs %d and %d have overlapping token ranges", order[k - 1],
                        order[k]);
    }
    return LINATTN_OK;
}

static linattn_status check_checkpoint(const linattn_pool *pool, const linattn_batch_desc *b, int32_t i)
{
    const linattn_checkpoint_desc *c = &b->checkpoints[i];
    if (c->seq_index < 0 || c->seq_index >= b->num_seqs)
        return fail(LINATTN_ERR_INVALID_ARGUMENT, "checkpoint %d: seq_index %d is not a sequence of the batch", i,
                    c->seq_index);
    const linattn_seq_desc *s = &b->seqs[c->seq_index];
    if (s->state_slot == LINATTN_SLOT_NONE)
        return fail(LINATTN_ERR_INVALID_ARGUMENT, "checkpoint %d: seq %d is padding", i, c->seq_index);
    int64_t end = s->start_position + s->num_tokens;
    if (c->position <= s->start_position || c->position > end)
        return fail(LINATTN_ERR_CHECKPOINT_POSITION,
                    "checkpoint %d: position %lld is outside seq %d's tokens (%lld, %lld]", i, (long long)c->position,
                    c->seq_index, (long long)s->start_position, (long long)end);
    if (c->position % CHECKPOINT_ALIGNMENT != 0 && c->position != end)
        return fail(LINATTN_ERR_CHECKPOINT_POSITION,
                    "checkpoint %d: position %lld is neither a multiple of %d nor the end of the step (%lld)", i,
                    (long long)c->position, CHECKPOINT_ALIGNMENT, (long long)end);
    return check_slot(pool, c->checkpoint_slot, "checkpoint_slot");
}

/* Marks each slot the batch writes or reads; a slot written twice, or read by one sequence and written by
 * another, would make the result depend on execution order. Marks are cleared again before returning. */
static linattn_status check_slot_conflicts(linattn_plan *plan, const linattn_batch_desc *b)
{
    uint8_t *marks = plan->slot_marks;
    linattn_status status = LINATTN_OK;
    for (int32_t i = 0; i < b->num_seqs && !status; i++) {
        int32_t slot = b->seqs[i].state_slot;
        if (slot == LINATTN_SLOT_NONE) continue;
        if (marks[slot] & MARK_WRITTEN) status = fail(LINATTN_ERR_SLOT_CONFLICT, "slot %d is the state slot of two sequences", slot);
        marks[slot] |= MARK_WRITTEN;
    }
    for (int32_t i = 0; i < b->num_checkpoints && !status; i++) {
        int32_t slot = b->checkpoints[i].checkpoint_slot;
        if (marks[slot] & MARK_WRITTEN) status = fail(LINATTN_ERR_SLOT_CONFLICT, "checkpoint slot %d is written twice in the batch", slot);
        marks[slot] |= MARK_WRITTEN;
    }
    for (int32_t i = 0; i < b->num_seqs && !status; i++) {
        const linattn_seq_desc *s = &b->seqs[i];
        if (s->state_slot == LINATTN_SLOT_NONE || s->init != LINATTN_INIT_FROM_SLOT || s->source_slot == s->state_slot)
            continue;
        if (marks[s->source_slot] & MARK_WRITTEN)
            status = fail(LINATTN_ERR_SLOT_CONFLICT, "seq %d reads source_slot %d, which the batch also writes", i, s->source_slot);
    }
    for (int32_t i = 0; i < b->num_seqs; i++)
        if (b->seqs[i].state_slot != LINATTN_SLOT_NONE) marks[b->seqs[i].state_slot] = 0;
    for (int32_t i = 0; i < b->num_checkpoints; i++) marks[b->checkpoints[i].checkpoint_slot] = 0;
    return status;
}

static linattn_status validate_batch(linattn_plan *plan, const linattn_batch_desc *b)
{
    linattn_status status = check_batch_header(plan, b);
    for (int32_t i = 0; i < b->num_seqs && !status; i++) status = check_seq(plan->pool, b, i);
    for (int32_t i = 0; i < b->num_checkpoints && !status; i++) status = check_checkpoint(plan->pool, b, i);
    if (status) return status;
    int32_t *order = malloc(((size_t)b->num_seqs + 1) * sizeof *order);
    if (!order) return fail(LINATTN_ERR_OUT_OF_MEMORY, "out of host memory validating a batch");
    status = check_overlaps(b, order);
    free(order);
    if (!status) status = check_slot_conflicts(plan, b);
    return status;
}

/* ---- translation into kernel arrays ---- */

static _Thread_local const linattn_checkpoint_desc *sort_checkpoints;
static int compare_checkpoints(const void *a, const void *b)
{
    const linattn_checkpoint_desc *x = &sort_checkpoints[*(const int32_t *)a];
    const linattn_checkpoint_desc *y = &sort_checkpoints[*(const int32_t *)b];
    if (x->seq_index != y->seq_index) return x->seq_index < y->seq_index ? -1 : 1;
    if (x->position != y->position) return x->position < y->position ? -1 : 1;
    return (*(const int32_t *)a > *(const int32_t *)b) - (*(const int32_t *)a < *(const int32_t *)b);
}

static void translate_seq(const linattn_seq_desc *s, la_seq *out)
{
    memset(out, 0, sizeof *out);
    out->token_offset = s->token_offset;
    out->start_position = s->start_position;
    out->num_tokens = s->num_tokens;
    out->state_slot = s->state_slot; /* LINATTN_SLOT_NONE is -1, the kernels' padding mark */
    out->init_slot = s->init == LINATTN_INIT_ZERO ? -1 : s->init == LINATTN_INIT_CONTINUE ? s->state_slot : s->source_slot;
}

static linattn_status translate_batch(linattn_plan *plan, const linattn_batch_desc *b)
{
    int32_t *order = malloc(((size_t)b->num_checkpoints + 1) * sizeof *order);
    if (!order) return fail(LINATTN_ERR_OUT_OF_MEMORY, "out of host memory translating a batch");
    for (int32_t i = 0; i < b->num_checkpoints; i++) order[i] = i;
    sort_checkpoints = b->checkpoints;
    qsort(order, (size_t)b->num_checkpoints, sizeof *order, compare_checkpoints);

    uint64_t tokens = 0, restores = 0;
    int32_t longest = 0;
    for (int32_t i = 0; i < b->num_seqs; i++) {
        translate_seq(&b->seqs[i], &plan->seqs[i]);
        if (b->seqs[i].state_slot == LINATTN_SLOT_NONE) continue;
        tokens += (uint64_t)b->seqs[i].num_tokens;
        if (b->seqs[i].num_tokens > longest) longest = b->seqs[i].num_tokens;
        restores += b->seqs[i].init == LINATTN_INIT_FROM_SLOT;
    }
    for (int32_t i = b->num_seqs; i < plan->limits.max_seqs; i++) {
        memset(&plan->seqs[i], 0, sizeof plan->seqs[i]);
        plan->seqs[i].state_slot = -1;
    }
    for (int32_t k = 0; k < b->num_checkpoints; k++) {
        const linattn_checkpoint_desc *c = &b->checkpoints[order[k]];
        la_seq *seq = &plan->seqs[c->seq_index];
        if (seq->checkpoint_count++ == 0) seq->checkpoint_begin = k;
        plan->checkpoints[k] = (la_checkpoint){.position = c->position, .slot = c->checkpoint_slot, .seq = c->seq_index};
    }
    free(order);
    plan->num_seqs = b->num_seqs;
    plan->num_checkpoints = b->num_checkpoints;
    plan->num_tokens = b->num_tokens;
    plan->max_seq_tokens = longest;
    plan->tokens_per_layer = tokens;
    plan->restores_per_layer = restores;
    plan->has_batch = true;
    return LINATTN_OK;
}

static linattn_status upload_batch(linattn_plan *plan, linattn_stream_t stream)
{
    linattn_context *ctx = plan->ctx;
    if (!ctx->ops->device_batch) return LINATTN_OK;
    linattn_status status = ctx->ops->upload(ctx, plan->device_seqs, plan->seqs,
                                             (size_t)plan->limits.max_seqs * sizeof(la_seq), stream);
    if (!status && plan->num_checkpoints > 0)
        status = ctx->ops->upload(ctx, plan->device_checkpoints, plan->checkpoints,
                                  (size_t)plan->num_checkpoints * sizeof(la_checkpoint), stream);
    return status;
}

linattn_status api_plan_set_batch(linattn_plan *plan, const linattn_batch_desc *batch, linattn_stream_t stream)
{
    linattn_status status = check_plan(plan);
    if (status) return status;
    if (!batch) return fail(LINATTN_ERR_NULL_ARGUMENT, "batch is NULL");
    if ((status = validate_batch(plan, batch))) return status;
    if ((status = translate_batch(plan, batch))) return status;
    return upload_batch(plan, stream);
}
