/* naive.c — see naive.h. Written from abi/MATH.md alone. */
#include "integration/common/naive.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "integration/common/host_bf16.h"

int64_t naive_channels(const linattn_layer_desc *layer)
{
    return 2 * (int64_t)layer->num_qk_heads * layer->head_dim_qk + (int64_t)layer->num_v_heads * layer->head_dim_v;
}

int64_t naive_recurrent_elements(const linattn_layer_desc *layer)
{
    return (int64_t)layer->num_v_heads * layer->head_dim_qk * layer->head_dim_v;
}

static int64_t conv_history_rows(const linattn_layer_desc *layer)
{
    return layer->conv_width >= 2 ? layer->conv_width - 1 : 0;
}

int64_t naive_conv_elements(const linattn_layer_desc *layer)
{
    return conv_history_rows(layer) * naive_channels(layer);
}

static size_t state_element_size(const linattn_layer_desc *layer)
{
    return layer->state_dtype == LINATTN_DTYPE_BF16 ? 2u : 4u;
}

size_t naive_state_bytes(const linattn_layer_desc *layer)
{
    return (size_t)naive_recurrent_elements(layer) * state_element_size(layer) +
           (size_t)naive_conv_elements(layer) * 2u;
}

int naive_state_init(naive_state *state, const linattn_layer_desc *layer)
{
    int64_t conv_elements = naive_conv_elements(layer);
    state->recurrent = calloc((size_t)naive_recurrent_elements(layer), sizeof(double));
    state->conv = conv_elements > 0 ? calloc((size_t)conv_elements, sizeof(double)) : NULL;
    if (!state->recurrent || (conv_elements > 0 && !state->conv)) {
        naive_state_free(state);
        return -1;
    }
    return 0;
}

void naive_state_free(naive_state *state)
{
    free(state->recurrent);
    free(state->conv);
    state->recurrent = NULL;
    state->conv = NULL;
}

int naive_state_from_bytes(naive_state *state, const linattn_layer_desc *layer, const void *bytes, size_t bytes_len)
{
    if (bytes_len != naive_state_bytes(layer)) return -1;
    const unsigned char *cursor = bytes;
    int64_t recurrent = naive_recurrent_elements(layer);
    for (int64_t i = 0; i < recurrent; ++i) {
        if (layer->state_dtype == LINATTN_DTYPE_BF16) {
            uint16_t bits;
            memcpy(&bits, cursor, 2);
            state->recurrent[i] = host_bf16_to_float(bits);
            cursor += 2;
        } else {
            float value;
            memcpy(&value, cursor, 4);
            state->recurrent[i] = value;
            cursor += 4;
        }
    }
    int64_t conv = naive_conv_elements(layer);
    for (int64_t i = 0; i < conv; ++i) {
        uint16_t bits;
        memcpy(&bits, cursor, 2);
        state->conv[i] = host_bf16_to_float(bits);
        cursor += 2;
    }
    return 0;
}

static double silu(double z)
{
    return z / (1.0 + exp(-z));
}

static double softplus(double z)
{
    return z > 30.0 ? z : log1p(exp(z));
}

static double sigmoid(double z)
{
    return 1.0 / (1.0 + exp(-z));
}

/*
 * The conv input history followed by the step's inputs: rows 0..W−2 are the initial conv state, row W−1+t is token
 * t. With it, y_t needs no special case at the sequence start, and the final conv state is simply the last W−1 rows.
 */
static double *extended_inputs(const linattn_layer_desc *layer, int64_t num_tokens, const uint16_t *qkv,
                               const naive_state *initial)
{
    int64_t channels = naive_channels(layer);
    int64_t history = conv_history_rows(layer);
    double *rows = calloc((size_t)((history + num_tokens) * channels), sizeof(double));
    if (!rows) return NULL;
    if (initial && history > 0) memcpy(rows, initial->conv, (size_t)(history * channels) * sizeof(double));
    for (int64_t i = 0; i < num_tokens * channels; ++i) rows[history * channels + i] = host_bf16_to_float(qkv[i]);
    return rows;
}

/* §1: y_t = SiLU(bias + Σ_j w[c][j] x_{t−(W−1)+j}) for the whole sequence at once, or y = x without a conv. */
static double *conv_outputs(const linattn_layer_desc *layer, int64_t num_tokens, const double *extended)
{
    int64_t channels = naive_channels(layer);
    int64_t history = conv_history_rows(layer);
    double *y = malloc((size_t)(num_tokens * channels) * sizeof(double));
    if (!y) return NULL;
    int width = layer->conv_width;
    for (int64_t t = 0; t < num_tokens; ++t) {
        for (int64_t c = 0; c < channels; ++c) {
            if (width == 0) {
                y[t * channels + c] = extended[(history + t) * channels + c];
                continue;
            }
            double sum = layer->conv_bias ? layer->conv_bias[c] : 0.0;
            /* x_{t−(W−1)+j} sits at extended row history + t − (W−1) + j; with history = W−1 that is t + j. */
            for (int j = 0; j < width; ++j) {
                int64_t row = history + t - (width - 1) + j;
                if (row >= 0) sum += (double)layer->conv_weight[c * width + j] * extended[row * channels + c];
            }
            y[t * channels + c] = silu(sum);
        }
    }
    return y;
}

static void l2_normalise(double *x, int n)
{
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += x[i] * x[i];
    double factor = 1.0 / sqrt(sum + 1e-6);
    for (int i = 0; i < n; ++i) x[i] *= factor;
}

static double log_decay(const linattn_layer_desc *layer, const uint16_t *a, int64_t t, int head)
{
    double A = exp((double)layer->A_log[head]);
    if (!a) return -A;
    double dt_bias = layer->dt_bias ? layer->dt_bias[head] : 0.0;
    return -A * softplus(host_bf16_to_float(a[t * layer->num_v_heads + head]) + dt_bias);
}

/* S ← e^g (I − β k kᵀ) S + β k vᵀ, with (I − β k kᵀ) S expanded as S − β k (kᵀ S). */
static void gated_delta_step(double *S, int dk, int dv, const double *k, const double *v, double decay, double beta,
                             double *kS)
{
    for (int j = 0; j < dv; ++j) {
        double sum = 0.0;
        for (int i = 0; i < dk; ++i) sum += k[i] * S[i * dv + j];
        kS[j] = sum;
    }
    for (int i = 0; i < dk; ++i)
        for (int j = 0; j < dv; ++j)
            S[i * dv + j] = decay * (S[i * dv + j] - beta * k[i] * kS[j]) + beta * k[i] * v[j];
}

/* S ← e^g S + k vᵀ */
static void gla_step(double *S, int dk, int dv, const double *k, const double *v, double decay)
{
    for (int i = 0; i < dk; ++i)
        for (int j = 0; j < dv; ++j) S[i * dv + j] = decay * S[i * dv + j] + k[i] * v[j];
}

typedef struct head_scratch {
    double *q, *k, *v, *kS;
} head_scratch;

/* §2 and §3 for one v-head over all tokens; S (dk×dv) starts as the initial state and ends as the final one. */
static void run_head(const linattn_layer_desc *layer, int head, int64_t num_tokens, const double *y,
                     const uint16_t *a, const uint16_t *b, double *S, float *out, head_scratch *scratch)
{
    int dk = layer->head_dim_qk, dv = layer->head_dim_v;
    int64_t channels = naive_channels(layer);
    int qk_head = head / (layer->num_v_heads / layer->num_qk_heads);
    int64_t q_at = (int64_t)qk_head * dk;
    int64_t k_at = (int64_t)layer->num_qk_heads * dk + q_at;
    int64_t v_at = 2 * (int64_t)layer->num_qk_heads * dk + (int64_t)head * dv;
    double scale = layer->scale != 0.0f ? (double)layer->scale : 1.0 / sqrt((double)dk);
    for (int64_t t = 0; t < num_tokens; ++t) {
        const double *row = y + t * channels;
        memcpy(scratch->q, row + q_at, (size_t)dk * sizeof(double));
        memcpy(scratch->k, row + k_at, (size_t)dk * sizeof(double));
        memcpy(scratch->v, row + v_at, (size_t)dv * sizeof(double));
        if (layer->qk_l2norm) {
            l2_normalise(scratch->q, dk);
            l2_normalise(scratch->k, dk);
        }
        for (int i = 0; i < dk; ++i) scratch->q[i] *= scale;
        double decay = exp(log_decay(layer, a, t, head));
        if (layer->kind == LINATTN_LAYER_GATED_DELTANET) {
            double beta = sigmoid(host_bf16_to_float(b[t * layer->num_v_heads + head]));
            gated_delta_step(S, dk, dv, scratch->k, scratch->v, decay, beta, scratch->kS);
        } else {
            gla_step(S, dk, dv, scratch->k, scratch->v, decay);
        }
        float *o = out + (t * layer->num_v_heads + head) * dv;
        for (int j = 0; j < dv; ++j) {
            double sum = 0.0;
            for (int i = 0; i < dk; ++i) sum += S[i * dv + j] * scratch->q[i];
            o[j] = (float)sum;
        }
    }
}

static int usable(const linattn_layer_desc *layer)
{
    if (layer->num_qk_heads <= 0 || layer->num_v_heads <= 0 || layer->num_v_heads % layer->num_qk_heads != 0)
        return 0;
    if (layer->head_dim_qk <= 0 || layer->head_dim_v <= 0 || !layer->A_log) return 0;
    if (layer->conv_width > 0 && !layer->conv_weight) return 0;
    return layer->kind == LINATTN_LAYER_GATED_DELTANET || layer->kind == LINATTN_LAYER_SIMPLE_GLA;
}

int naive_forward(const linattn_layer_desc *layer, int64_t num_tokens, const uint16_t *qkv, const uint16_t *a,
                  const uint16_t *b, const naive_state *initial, float *out, naive_state *final)
{
    if (!usable(layer) || (layer->kind == LINATTN_LAYER_GATED_DELTANET && (!a || !b))) return -1;
    int dk = layer->head_dim_qk, dv = layer->head_dim_v;
    double *extended = extended_inputs(layer, num_tokens, qkv, initial);
    double *y = extended ? conv_outputs(layer, num_tokens, extended) : NULL;
    head_scratch scratch = {malloc((size_t)dk * sizeof(double)), malloc((size_t)dk * sizeof(double)),
                            malloc((size_t)dv * sizeof(double)), malloc((size_t)dv * sizeof(double))};
    double *S = malloc((size_t)dk * dv * sizeof(double));
    int ok = y && scratch.q && scratch.k && scratch.v && scratch.kS && S;
    for (int h = 0; ok && h < layer->num_v_heads; ++h) {
        size_t head_elements = (size_t)dk * dv;
        if (initial)
            memcpy(S, initial->recurrent + h * head_elements, head_elements * sizeof(double));
        else
            memset(S, 0, head_elements * sizeof(double));
        run_head(layer, h, num_tokens, y, a, b, S, out, &scratch);
        if (final) memcpy(final->recurrent + h * head_elements, S, head_elements * sizeof(double));
    }
    if (ok && final && final->conv) {
        int64_t history_elements = naive_conv_elements(layer);
        memcpy(final->conv, extended + num_tokens * naive_channels(layer), (size_t)history_elements * sizeof(double));
    }
    free(S);
    free(scratch.q);
    free(scratch.k);
    free(scratch.v);
    free(scratch.kS);
    free(y);
    free(extended);
    return ok ? 0 : -1;
}
