/* Layers: validation of a descriptor, its weights copied to the context's memory, its state sizes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_HEADS 4096
#define MAX_HEAD_DIM 256
#define MAX_CONV_WIDTH 8

static linattn_status validate_shape(const linattn_layer_desc *d)
{
    if (d->kind != LINATTN_LAYER_GATED_DELTANET && d->kind != LINATTN_LAYER_SIMPLE_GLA)
        return fail(LINATTN_ERR_UNKNOWN_LAYER_KIND, "layer kind %d is neither GATED_DELTANET (1) nor SIMPLE_GLA (2)",
                    d->kind);
    if (d->num_qk_heads < 1 || d->num_qk_heads > MAX_HEADS || d->num_v_heads < 1 || d->num_v_heads > MAX_HEADS)
        return fail(LINATTN_ERR_INVALID_SHAPE, "head counts must be 1..%d (got %d q/k, %d v)", MAX_HEADS,
                    d->num_qk_heads, d->num_v_heads);
    if (d->num_v_heads % d->num_qk_heads != 0)
        return fail(LINATTN_ERR_INVALID_SHAPE, "num_v_heads %d is not a multiple of num_qk_heads %d", d->num_v_heads,
                    d->num_qk_heads);
    if (d->head_dim_qk < 1 || d->head_dim_qk > MAX_HEAD_DIM || d->head_dim_v < 1 || d->head_dim_v > MAX_HEAD_DIM)
        return fail(LINATTN_ERR_INVALID_SHAPE, "head dims must be 1..%d (got %d, %d)", MAX_HEAD_DIM, d->head_dim_qk,
                    d->head_dim_v);
    if (d->conv_width != 0 && (d->conv_width < 2 || d->conv_width > MAX_CONV_WIDTH))
        return fail(LINATTN_ERR_INVALID_SHAPE, "conv_width %d must be 0 (no conv) or 2..%d", d->conv_width,
                    MAX_CONV_WIDTH);
    if (d->state_dtype != LINATTN_DTYPE_F32 && d->state_dtype != LINATTN_DTYPE_BF16)
        return fail(LINATTN_ERR_UNSUPPORTED_DTYPE, "state_dtype %d is neither F32 (1) nor BF16 (2)", d->state_dtype);
    return LINATTN_OK;
}

static bool all_finite(const float *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(values[i])) return false;
    return true;
}

static linattn_status validate_weights(const linattn_layer_desc *d, int32_t channels)
{
    if (d->conv_width > 0 && !d->conv_weight)
        return fail(LINATTN_ERR_NULL_ARGUMENT, "conv_weight is NULL but conv_width is %d", d->conv_width);
    if (!d->A_log) return fail(LINATTN_ERR_NULL_ARGUMENT, "A_log is NULL");
    if (!isfinite(d->scale) || d->scale < 0.0f)
        return fail(LINATTN_ERR_INVALID_ARGUMENT, "scale %g must be finite and >= 0 (0 = 1/sqrt(head_dim_qk))",
                    (double)d->scale);
    bool finite = all_finite(d->A_log, (size_t)d->num_v_heads) &&
                  (!d->dt_bias || all_finite(d->dt_bias, (size_t)d->num_v_heads)) &&
                  (d->conv_width == 0 || all_finite(d->conv_weight, (size_t)channels * d->conv_width)) &&
                  (d->conv_width == 0 || !d->conv_bias || all_finite(d->conv_bias, (size_t)channels));
    if (!finite) return fail(LINATTN_ERR_INVALID_ARGUMENT, "a layer weight is NaN or infinite");
    return LINATTN_OK;
}

/* Packs the weights into one host buffer in the order conv_weight | conv_bias | A_log | dt_bias. */
static float *pack_weights(const linattn_layer_desc *d, int32_t channels, size_t *out_count)
{
    size_t conv_w = d->conv_width ? (size_t)channels * d->conv_width : 0;
    size_t conv_b = d->conv_width && d->conv_bias ? (size_t)channels : 0;
    size_t heads = (size_t)d->num_v_heads;
    size_t count = conv_w + conv_b + heads + (d->dt_bias ? heads : 0);
    float *packed = malloc(count * sizeof(float));
    if (!packed) return NULL;
    float *cursor = packed;
    if (conv_w) cursor = (float *)memcpy(cursor, d->conv_weight, conv_w * sizeof(float)) + conv_w;
    if (conv_b) cursor = (float *)memcpy(cursor, d->conv_bias, conv_b * sizeof(float)) + conv_b;
    cursor = (float *)memcpy(cursor, d->A_log, heads * sizeof(float)) + heads;
    if (d->dt_bias) memcpy(cursor, d->dt_bias, heads * sizeof(float));
    *out_count = count;
    return packed;
}

/* Points the kernel parameters into the backend copy of the packed weights. */
static void bind_params(linattn_layer *layer, const linattn_layer_desc *d, int32_t channels)
{
    la_layer *p = &layer->params;
    const float *cursor = layer->weights;
    p->kind = d->kind == LINATTN_LAYER_GATED_DELTANET ? LA_KIND_GATED_DELTANET : LA_KIND_SIMPLE_GLA;
    p->hk = d->num_qk_heads;
    p->hv = d->num_v_heads;
    p->dk = d->head_dim_qk;
    p->dv = d->head_dim_v;
    p->conv_width = d->conv_width;
    p->qk_l2norm = d->qk_l2norm != 0;
    p->state_dtype = d->state_dtype == LINATTN_DTYPE_F32 ? LA_STATE_F32 : LA_STATE_BF16;
    p->scale = d->scale > 0.0f ? d->scale : 1.0f / sqrtf((float)d->head_dim_qk);
    p->conv_weight = d->conv_width ? cursor : NULL;
    cursor += d->conv_width ? (size_t)channels * d->conv_width : 0;
    p->conv_bias = d->conv_width && d->conv_bias ? cursor : NULL;
    cursor += p->conv_bias ? (size_t)channels : 0;
    p->A_log = cursor;
    cursor += d->num_v_heads;
    p->dt_bias = d->dt_bias ? cursor : NULL;
}

static void fill_info(linattn_layer *layer)
{
    const la_layer *p = &layer->params;
    size_t elem = p->state_dtype == LA_STATE_F32 ? sizeof(float) : sizeof(uint16_t);
    layer->info.struct_size = sizeof layer->info;
    layer->info.recurrent_bytes = la_recurrent_elems(p) * elem;
    layer->info.conv_bytes = la_conv_elems(p) * sizeof(uint16_t);
    layer->info.state_bytes = layer->info.recurrent_bytes + layer->info.conv_bytes;
}

static linattn_status upload_weights(linattn_context *ctx, const linattn_layer_desc *d, linattn_layer *layer)
{
    int32_t channels = 2 * d->num_qk_heads * d->head_dim_qk + d->num_v_heads * d->head_dim_v;
    size_t count;
    float *packed = pack_weights(d, channels, &count);
    if (!packed) return fail(LINATTN_ERR_OUT_OF_MEMORY, "out of host memory packing layer weights");
    linattn_status status = ctx->ops->alloc(ctx, count * sizeof(float), &layer->weights);
    if (!status) status = ctx->ops->upload(ctx, layer->weights, packed, count * sizeof(float), NULL);
    if (!status) status = ctx->ops->synchronize(ctx);
    free(packed);
    if (status) return status;
    bind_params(layer, d, channels);
    return LINATTN_OK;
}

linattn_status api_layer_create(linattn_context *ctx, const linattn_layer_desc *desc, linattn_layer **out,
                                linattn_layer_info *out_info)
{
    linattn_status status = check_context(ctx);
    if (status) return status;
    if (!desc || !out) return fail(LINATTN_ERR_NULL_ARGUMENT, "layer_create needs desc and out_layer");
    if (out_info && (status = check_struct_size(out_info->struct_size, sizeof *out_info, "linattn_layer_info")))
        return status;
    if ((status = check_struct_size(desc->struct_size, sizeof *desc, "linattn_layer_desc"))) return status;
    if ((status = validate_shape(desc))) return status;
    int32_t channels = 2 * desc->num_qk_heads * desc->head_dim_qk + desc->num_v_heads * desc->head_dim_v;
    if ((status = validate_weights(desc, channels))) return status;

    linattn_layer *layer = calloc(1, sizeof *layer);
    if (!layer) return fail(LINATTN_ERR_OUT_OF_MEMORY, "out of host memory for a layer");
    layer->ctx = ctx;
    status = upload_weights(ctx, desc, layer);
    if (!status) status = handle_register(layer, HANDLE_LAYER);
    if (status) {
        if (layer->weights) ctx->ops->release(ctx, layer->weights);
        free(layer);
        return status;
    }
    fill_info(layer);
    layer->next = ctx->layers;
    ctx->layers = layer;
    *out = layer;
    if (out_info) copy_result(out_info, &layer->info, sizeof layer->info);
    return LINATTN_OK;
}

void layer_release(linattn_layer *layer)
{
    linattn_context *ctx = layer->ctx;
    for (linattn_layer **link = &ctx->layers; *link; link = &(*link)->next) {
        if (*link == layer) {
            *link = layer->next;
            break;
        }
    }
    handle_unregister(layer);
    ctx->ops->release(ctx, layer->weights);
    free(layer);
}

linattn_status api_layer_destroy(linattn_layer *layer)
{
    linattn_status status = check_layer(layer);
    if (status) return status;
    if (layer->pool_refs > 0)
        return fail(LINATTN_ERR_IN_USE, "layer is still used by %d pool(s); destroy them first", layer->pool_refs);
    layer_release(layer);
    return LINATTN_OK;
}

linattn_status api_layer_info(const linattn_layer *layer, linattn_layer_info *info)
{
    linattn_status status = check_layer(layer);
    if (status) return status;
    if (!info) return fail(LINATTN_ERR_NULL_ARGUMENT, "info is NULL");
    if ((status = check_struct_size(info->struct_size, sizeof *info, "linattn_layer_info"))) return status;
    copy_result(info, &layer->info, sizeof layer->info);
    return LINATTN_OK;
}
