/*
 * CPU reference of abi/MATH.md.
 *
 * Per sequence: load the initial state (zero, or a slot) into a float32 working copy, then for every token
 *   1. causal depthwise conv + SiLU over the token's q/k/v channels, shifting the conv window;
 *   2. L2-normalise q, k per head (optional), scale q, compute g = -exp(A_log)·softplus(a + dt_bias), β = σ(b);
 *   3. per v-head, the gated delta rule (or simple GLA) in float64, the new state rounded to float32:
 *        kv   = Σ_i e^g S_ij k_i          (what the decayed state predicts for k)
 *        u_j  = β (v_j − kv_j)            (GLA: u = v)
 *        S_ij = e^g S_ij + k_i u_j
 *        o_j  = Σ_i S_ij q_i
 * and store the working state to a slot at every checkpoint position and at the end. The working state stays
 * float32 within a step, so a prefill split at any point gives bitwise the result of one pass for float32 state;
 * bf16 state is rounded only when stored, as the CUDA kernels do.
 */
#include "la_reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../bf16.h"

typedef struct scratch {
    float *state;       /* [hv][dk][dv] working state */
    uint16_t *window;   /* [conv_width - 1][channels] conv inputs, oldest first */
    double *activation; /* [channels] conv output of one token: q | k | v */
    double *u;          /* [dv] the delta-rule update (GLA: v) */
    double *o;          /* [dv] output accumulator */
} scratch;

static double softplus(double z) { return z > 20.0 ? z : log1p(exp(z)); }
static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }
static double silu(double z) { return z * sigmoid(z); }

static void *state_slot_ptr(const la_layer *layer, const la_state_view *view, int32_t slot)
{
    size_t elem = layer->state_dtype == LA_STATE_F32 ? sizeof(float) : sizeof(uint16_t);
    return (char *)view->recurrent + (size_t)slot * la_recurrent_elems(layer) * elem;
}

static uint16_t *conv_slot_ptr(const la_layer *layer, const la_state_view *view, int32_t slot)
{
    return view->conv + (size_t)slot * la_conv_elems(layer);
}

static void load_state(const la_layer *layer, const la_state_view *view, int32_t slot, scratch *s)
{
    uint64_t n = la_recurrent_elems(layer);
    uint64_t conv_n = la_conv_elems(layer);
    if (slot < 0) {
        memset(s->state, 0, n * sizeof(float));
        if (conv_n) memset(s->window, 0, conv_n * sizeof(uint16_t));
        return;
    }
    const void *src = state_slot_ptr(layer, view, slot);
    if (layer->state_dtype == LA_STATE_F32) {
        memcpy(s->state, src, n * sizeof(float));
    } else {
        const uint16_t *bits = src;
        for (uint64_t i = 0; i < n; i++) s->state[i] = bf16_to_float(bits[i]);
    }
    if (conv_n) memcpy(s->window, conv_slot_ptr(layer, view, slot), conv_n * sizeof(uint16_t));
}

static void store_state(const la_layer *layer, const la_state_view *view, int32_t slot, const scratch *s)
{
    uint64_t n = la_recurrent_elems(layer);
    uint64_t conv_n = la_conv_elems(layer);
    void *dst = state_slot_ptr(layer, view, slot);
    if (layer->state_dtype == LA_STATE_F32) {
        memcpy(dst, s->state, n * sizeof(float));
    } else {
        uint16_t *bits = dst;
        for (uint64_t i = 0; i < n; i++) bits[i] = float_to_bf16(s->state[i]);
    }
    if (conv_n) memcpy(conv_slot_ptr(layer, view, slot), s->window, conv_n * sizeof(uint16_t));
}

/* Step 1: y = SiLU(bias + conv(window, x)), then x joins the window. Without conv, y = x. */
static void conv_token(const la_layer *layer, const uint16_t *x, scratch *s)
{
    int32_t channels = la_channels(layer);
    int32_t width = layer->conv_width;
    if (width == 0) {
        for (int32_t c = 0; c < channels; c++) s->activation[c] = bf16_to_float(x[c]);
        return;
    }
    for (int32_t c = 0; c < channels; c++) {
        const float *w = layer->conv_weight + (size_t)c * width;
        double acc = layer->conv_bias ? layer->conv_bias[c] : 0.0;
        for (int32_t j = 0; j < width - 1; j++) acc += (double)w[j] * bf16_to_float(s->window[(size_t)j * channels + c]);
        acc += (double)w[width - 1] * bf16_to_float(x[c]);
        s->activation[c] = silu(acc);
    }
    if (width > 1) {
        memmove(s->window, s->window + channels, (size_t)(width - 2) * channels * sizeof(uint16_t));
        memcpy(s->window + (size_t)(width - 2) * channels, x, (size_t)channels * sizeof(uint16_t));
    }
}

static void l2_normalise(double *x, int32_t n)
{
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) sum += x[i] * x[i];
    double inv = 1.0 / sqrt(sum + 1e-6);
    for (int32_t i = 0; i < n; i++) x[i] *= inv;
}

/* Step 2 for q and k: normalise per head, scale q. */
static void prepare_qk(const la_layer *layer, double *activation)
{
    double *q = activation;
    double *k = activation + (size_t)layer->hk * layer->dk;
    for (int32_t h = 0; h < layer->hk; h++) {
        if (layer->qk_l2norm) {
            l2_normalise(q + (size_t)h * layer->dk, layer->dk);
            l2_normalise(k + (size_t)h * layer->dk, layer->dk);
        }
        for (int32_t i = 0; i < layer->dk; i++) q[(size_t)h * layer->dk + i] *= layer->scale;
    }
}

static double log_decay(const la_layer *layer, const la_io *io, int64_t row, int32_t h)
{
    double rate = exp((double)layer->A_log[h]);
    if (!io->a) return -rate;
    double bias = layer->dt_bias ? layer->dt_bias[h] : 0.0;
    return -rate * softplus(bf16_to_float(io->a[row * io->a_stride + h]) + bias);
}

/* Step 3 for one v-head: update S in place and write o. */
static void recur_head(const la_layer *layer, const la_io *io, int64_t row, int32_t h, scratch *s)
{
    int32_t dk = layer->dk, dv = layer->dv;
    int32_t kh = h / (layer->hv / layer->hk);
    const double *q = s->activation + (size_t)kh * dk;
    const double *k = s->activation + (size_t)layer->hk * dk + (size_t)kh * dk;
    const double *v = s->activation + (size_t)2 * layer->hk * dk + (size_t)h * dv;
    float *S = s->state + (size_t)h * dk * dv;
    double decay = exp(log_decay(layer, io, row, h));

    double *u = s->u;
    double *o = s->o;
    if (layer->kind == LA_KIND_GATED_DELTANET) {
        double beta = sigmoid(bf16_to_float(io->b[row * io->b_stride + h]));
        for (int32_t j = 0; j < dv; j++) u[j] = 0.0;
        for (int32_t i = 0; i < dk; i++)
            for (int32_t j = 0; j < dv; j++) u[j] += decay * S[(size_t)i * dv + j] * k[i];
        for (int32_t j = 0; j < dv; j++) u[j] = beta * (v[j] - u[j]);
    } else {
        for (int32_t j = 0; j < dv; j++) u[j] = v[j];
    }

    uint16_t *out = io->out + row * io->out_stride + (size_t)h * dv;
    for (int32_t j = 0; j < dv; j++) o[j] = 0.0;
    for (int32_t i = 0; i < dk; i++) {
        float *row_i = S + (size_t)i * dv;
        for (int32_t j = 0; j < dv; j++) {
            row_i[j] = (float)(decay * row_i[j] + k[i] * u[j]);
            o[j] += (double)row_i[j] * q[i];
        }
    }
    for (int32_t j = 0; j < dv; j++) out[j] = float_to_bf16((float)o[j]);
}

static void run_sequence(const la_layer *layer, const la_batch *batch, const la_io *io, const la_state_view *view,
                         const la_seq *seq, scratch *s)
{
    load_state(layer, view, seq->init_slot, s);
    const la_checkpoint *next = batch->checkpoints + seq->checkpoint_begin;
    const la_checkpoint *end = next + seq->checkpoint_count;
    for (int32_t t = 0; t < seq->num_tokens; t++) {
        int64_t row = seq->token_offset + t;
        conv_token(layer, io->qkv + row * io->qkv_stride, s);
        prepare_qk(layer, s->activation);
        for (int32_t h = 0; h < layer->hv; h++) recur_head(layer, io, row, h, s);
        int64_t tokens_done = seq->start_position + t + 1;
        for (; next < end && next->position == tokens_done; next++) store_state(layer, view, next->slot, s);
    }
    store_state(layer, view, seq->state_slot, s);
}

int la_reference_forward(const la_layer *layer, const la_batch *batch, const la_io *io, const la_state_view *state)
{
    scratch s;
    uint64_t conv_n = la_conv_elems(layer);
    s.state = malloc(la_recurrent_elems(layer) * sizeof(float));
    s.window = malloc((conv_n ? conv_n : 1) * sizeof(uint16_t));
    s.activation = malloc((size_t)la_channels(layer) * sizeof(double));
    s.u = malloc((size_t)layer->dv * sizeof(double));
    s.o = malloc((size_t)layer->dv * sizeof(double));
    int ok = s.state && s.window && s.activation && s.u && s.o;
    if (ok) {
        for (int32_t i = 0; i < batch->num_seqs; i++) {
            const la_seq *seq = &batch->seqs[i];
            if (seq->state_slot >= 0) run_sequence(layer, batch, io, state, seq, &s);
        }
    }
    free(s.state);
    free(s.window);
    free(s.activation);
    free(s.u);
    free(s.o);
    return ok ? 0 : -1;
}
