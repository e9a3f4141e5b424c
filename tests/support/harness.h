/*
 * harness.h — shared helpers of the ABI tests (header-only, so every tests/test_*.c stays one translation unit).
 *
 * The tests reach the library only through the table `linattn_get_api` returns, on the CPU backend. They build
 * small random "models" (a context, a few layers, one pool, one plan), run batches through them, and compare
 * outputs and state bytes. Random inputs come from a fresh seed per test process; every failure message made
 * here carries it, and LINATTN_TEST_SEED=<seed> replays a run.
 */
#ifndef LINATTN_TESTS_HARNESS_H
#define LINATTN_TESTS_HARNESS_H

#include "splitmix.h"
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "abi/linattn.h"
#include "kernels/bf16.h"

#define HARNESS_POISON ((uint16_t)0xFFFFu) /* bf16 NaN bits no computation produces */
#define HARNESS_MAX_LAYERS 4
#define HARNESS_COUNT(array) ((int32_t)(sizeof(array) / sizeof((array)[0])))

/* ------------------------------------------------------------------------------------------------------------
 * Seeds and random numbers (splitmix64)
 * ---------------------------------------------------------------------------------------------------------- */

static unsigned long long harness_seed_in_use;
static char harness_label[192]; /* what the test runs (e.g. its configuration), shown with the seed */

/* Every failure message made here ends with this tag, so a failure names its configuration and seed. */
#define HARNESS_TAG " [%sseed %llu]"
#define HARNESS_TAG_ARGS harness_label, harness_seed_in_use

typedef test_rng harness_rng;

/* A new seed per process: wall clock, CPU clock and a stack address (ASLR) mixed; overridable to replay. */
static inline harness_rng rng_start(void)
{
    const char *fixed = getenv("LINATTN_TEST_SEED");
    int on_stack = 0;
    harness_rng mixer = {(uint64_t)time(NULL) ^ ((uint64_t)clock() << 32) ^ (uint64_t)(uintptr_t)&on_stack};
    harness_seed_in_use = fixed ? strtoull(fixed, NULL, 0) : rng_next(&mixer);
    cr_log_info("random seed %llu (replay with LINATTN_TEST_SEED=%llu)", harness_seed_in_use, harness_seed_in_use);
    harness_rng rng = {harness_seed_in_use};
    return rng;
}

static inline float rng_float(harness_rng *rng, float lo, float hi)
{
    return lo + (hi - lo) * (float)((double)(rng_next(rng) >> 11) * 0x1.0p-53);
}

/* Uniform integer in [lo, hi]. */
static inline int32_t rng_int(harness_rng *rng, int32_t lo, int32_t hi)
{
    return lo + (int32_t)(rng_next(rng) % (uint64_t)(hi - lo + 1));
}

static inline void rng_fill_f32(harness_rng *rng, float *dst, size_t count, float lo, float hi)
{
    for (size_t i = 0; i < count; i++) dst[i] = rng_float(rng, lo, hi);
}

static inline void rng_fill_bf16(harness_rng *rng, uint16_t *dst, size_t count, float lo, float hi)
{
    for (size_t i = 0; i < count; i++) dst[i] = float_to_bf16(rng_float(rng, lo, hi));
}

static inline void rng_shuffle(harness_rng *rng, int32_t *items, int32_t count)
{
    for (int32_t i = count - 1; i > 0; i--) {
        int32_t j = rng_int(rng, 0, i);
        int32_t swap = items[i];
        items[i] = items[j];
        items[j] = swap;
    }
}

static inline void *harness_alloc(size_t bytes)
{
    void *memory = calloc(1, bytes ? bytes : 1);
    cr_assert(memory != NULL, "test out of memory (%zu bytes)", bytes);
    return memory;
}

/* Name what the test runs; it is printed with the seed in every failure message made here. */
static inline void harness_set_label(const char *label)
{
    snprintf(harness_label, sizeof harness_label, "%s; ", label);
    cr_log_info("%s", label);
}

/* ------------------------------------------------------------------------------------------------------------
 * The API table and status checks
 * ---------------------------------------------------------------------------------------------------------- */

/* Fetched once per process, so that reading last_error_message after a failure makes no other call first. */
static inline const linattn_api *api(void)
{
    static const linattn_api *table;
    if (!table) {
        linattn_status status = linattn_get_api(LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR, &table);
        cr_assert(status == LINATTN_OK && table != NULL, "linattn_get_api(%d, %d) failed with %d",
                  LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR, status);
    }
    return table;
}

static inline void expect_status_at(linattn_status got, linattn_status want, const char *call, const char *file,
                                    int line)
{
    /* Read the message first: it is valid only until the next call into the library. */
    const char *message = got == LINATTN_OK ? "" : api()->last_error_message();
    cr_assert(got == want, "%s:%d: %s returned %d (\"%s\"), expected %d" HARNESS_TAG, file, line, call, got,
              message, want, HARNESS_TAG_ARGS);
}

#define expect_status(call, want) expect_status_at((call), (want), #call, __FILE__, __LINE__)
#define expect_ok(call) expect_status((call), LINATTN_OK)

static inline void expect_bytes_equal(const void *got, const void *want, size_t bytes, const char *what)
{
    const uint8_t *g = got, *w = want;
    for (size_t i = 0; i < bytes; i++)
        cr_assert(g[i] == w[i], "%s: byte %zu of %zu differs (0x%02x vs 0x%02x)" HARNESS_TAG, what, i, bytes, g[i],
                  w[i], HARNESS_TAG_ARGS);
}

/* ||got - want|| / ||want|| over bf16 elements. */
static inline double bf16_relative_error(const uint16_t *got, const uint16_t *want, size_t count)
{
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < count; i++) {
        double g = bf16_to_float(got[i]), w = bf16_to_float(want[i]);
        diff += (g - w) * (g - w);
        norm += w * w;
    }
    if (norm == 0.0) return diff == 0.0 ? 0.0 : INFINITY;
    return sqrt(diff / norm);
}

static inline void expect_bf16_close(const uint16_t *got, const uint16_t *want, size_t count, double tolerance,
                                     const char *what)
{
    double error = bf16_relative_error(got, want, count);
    cr_assert(error <= tolerance, "%s: relative error %.3g > %.3g over %zu elements" HARNESS_TAG, what, error,
              tolerance, count, HARNESS_TAG_ARGS);
}

/* ------------------------------------------------------------------------------------------------------------
 * Layers
 * ---------------------------------------------------------------------------------------------------------- */

typedef struct layer_spec {
    linattn_layer_kind kind;
    int32_t num_qk_heads, num_v_heads, head_dim_qk, head_dim_v;
    int32_t conv_width;
    int32_t qk_l2norm;
    linattn_dtype state_dtype;
    float scale;            /* 0: 1/sqrt(head_dim_qk) */
    int32_t constant_decay; /* simple GLA: forward with a = NULL */
} layer_spec;

static inline int32_t spec_channels(const layer_spec *spec)
{
    return 2 * spec->num_qk_heads * spec->head_dim_qk + spec->num_v_heads * spec->head_dim_v;
}

static inline int32_t spec_out_width(const layer_spec *spec) { return spec->num_v_heads * spec->head_dim_v; }

static inline size_t spec_state_elem_bytes(const layer_spec *spec)
{
    return spec->state_dtype == LINATTN_DTYPE_F32 ? sizeof(float) : sizeof(uint16_t);
}

static inline uint64_t spec_recurrent_bytes(const layer_spec *spec)
{
    return (uint64_t)spec->num_v_heads * spec->head_dim_qk * spec->head_dim_v * spec_state_elem_bytes(spec);
}

static inline uint64_t spec_conv_bytes(const layer_spec *spec)
{
    return spec->conv_width > 1 ? (uint64_t)(spec->conv_width - 1) * spec_channels(spec) * sizeof(uint16_t) : 0;
}

/* A layer's host-side weights, kept so tests can recompute its math. */
typedef struct layer_weights {
    float *conv_weight; /* [C][W] or NULL */
    float *conv_bias;   /* [C] */
    float *A_log;       /* [Hv] */
    float *dt_bias;     /* [Hv] */
} layer_weights;

static inline layer_weights layer_weights_random(const layer_spec *spec, harness_rng *rng)
{
    size_t channels = (size_t)spec_channels(spec), heads = (size_t)spec->num_v_heads;
    layer_weights weights = {NULL, harness_alloc(channels * sizeof(float)), harness_alloc(heads * sizeof(float)),
                             harness_alloc(heads * sizeof(float))};
    if (spec->conv_width > 0) {
        weights.conv_weight = harness_alloc(channels * (size_t)spec->conv_width * sizeof(float));
        rng_fill_f32(rng, weights.conv_weight, channels * (size_t)spec->conv_width, -0.6f, 0.6f);
    }
    rng_fill_f32(rng, weights.conv_bias, channels, -0.2f, 0.2f);
    rng_fill_f32(rng, weights.A_log, heads, -2.5f, 0.0f);
    rng_fill_f32(rng, weights.dt_bias, heads, -1.0f, 1.0f);
    return weights;
}

static inline void layer_weights_free(layer_weights *weights)
{
    free(weights->conv_weight);
    free(weights->conv_bias);
    free(weights->A_log);
    free(weights->dt_bias);
}

static inline linattn_layer_desc layer_desc_of(const layer_spec *spec, const layer_weights *weights)
{
    linattn_layer_desc desc = {sizeof(linattn_layer_desc),
                               spec->kind,
                               spec->num_qk_heads,
                               spec->num_v_heads,
                               spec->head_dim_qk,
                               spec->head_dim_v,
                               spec->conv_width,
                               spec->qk_l2norm,
                               spec->state_dtype,
                               spec->scale,
                               weights->conv_weight,
                               weights->conv_bias,
                               weights->A_log,
                               weights->dt_bias};
    return desc;
}

static inline linattn_context *cpu_context(void)
{
    linattn_context_desc desc = {sizeof(linattn_context_desc), LINATTN_BACKEND_CPU, 0};
    linattn_context *context = NULL;
    expect_ok(api()->context_create(&desc, &context));
    cr_assert(context != NULL);
    return context;
}

/* ------------------------------------------------------------------------------------------------------------
 * Models: a CPU context with layers, one pool over all of them, and one plan on the pool
 * ---------------------------------------------------------------------------------------------------------- */

typedef struct model_layer {
    layer_spec spec;
    layer_weights weights;
    linattn_layer *handle;
    linattn_layer_info info;
} model_layer;

typedef struct model {
    linattn_context *context;
    int32_t num_layers;
    model_layer layers[HARNESS_MAX_LAYERS];
    linattn_pool *pool;
    linattn_plan *plan;
    linattn_plan_desc limits;
    int32_t capacity;
    int32_t checkpoint_alignment;
} model;

static inline void model_create(model *m, const layer_spec *specs, int32_t num_layers, int32_t capacity,
                                linattn_plan_desc limits, harness_rng *rng)
{
    cr_assert(num_layers > 0 && num_layers <= HARNESS_MAX_LAYERS);
    memset(m, 0, sizeof *m);
    m->context = cpu_context();
    m->num_layers = num_layers;
    linattn_layer *handles[HARNESS_MAX_LAYERS];
    for (int32_t l = 0; l < num_layers; l++) {
        model_layer *layer = &m->layers[l];
        layer->spec = specs[l];
        layer->weights = layer_weights_random(&layer->spec, rng);
        linattn_layer_desc desc = layer_desc_of(&layer->spec, &layer->weights);
        layer->info.struct_size = sizeof layer->info;
        expect_ok(api()->layer_create(m->context, &desc, &layer->handle, &layer->info));
        handles[l] = layer->handle;
    }
    linattn_pool_desc pool_desc = {sizeof pool_desc, num_layers, handles, capacity, 0};
    expect_ok(api()->pool_create(m->context, &pool_desc, &m->pool));
    limits.struct_size = sizeof limits;
    m->limits = limits;
    expect_ok(api()->plan_create(m->pool, &limits, &m->plan));
    m->capacity = capacity;
    linattn_capabilities caps;
    memset(&caps, 0, sizeof caps);
    caps.struct_size = sizeof caps;
    expect_ok(api()->query_capabilities(m->context, &caps));
    cr_assert(caps.checkpoint_alignment >= 1, "checkpoint_alignment %d", caps.checkpoint_alignment);
    m->checkpoint_alignment = caps.checkpoint_alignment;
}

static inline void model_destroy(model *m)
{
    expect_ok(api()->context_destroy(m->context));
    for (int32_t l = 0; l < m->num_layers; l++) layer_weights_free(&m->layers[l].weights);
}

static inline linattn_plan_desc plan_limits(int32_t max_seqs, int32_t max_checkpoints, int64_t max_tokens)
{
    linattn_plan_desc limits = {sizeof limits, max_seqs, max_checkpoints, max_tokens};
    return limits;
}

static inline int32_t model_alloc(const model *m)
{
    int32_t slot = -1;
    expect_ok(api()->slot_alloc(m->pool, &slot));
    cr_assert(slot >= 0 && slot < m->capacity, "slot_alloc gave %d (capacity %d)", slot, m->capacity);
    return slot;
}

static inline int model_exact(const model *m, int32_t layer)
{
    return m->layers[layer].spec.state_dtype == LINATTN_DTYPE_F32;
}

/* ------------------------------------------------------------------------------------------------------------
 * Slot state
 * ---------------------------------------------------------------------------------------------------------- */

static inline uint8_t *model_read_state(const model *m, int32_t layer, int32_t slot)
{
    uint64_t bytes = m->layers[layer].info.state_bytes;
    uint8_t *state = harness_alloc((size_t)bytes);
    expect_ok(api()->slot_read(m->pool, m->layers[layer].handle, slot, state, bytes, NULL));
    return state;
}

/* One layer's state filled with random but finite values (recurrent in its dtype, conv in bf16). */
static inline uint8_t *layer_state_random(const model *m, int32_t layer, harness_rng *rng)
{
    const model_layer *info = &m->layers[layer];
    uint64_t recurrent = spec_recurrent_bytes(&info->spec);
    uint8_t *state = harness_alloc((size_t)info->info.state_bytes);
    if (info->spec.state_dtype == LINATTN_DTYPE_F32)
        rng_fill_f32(rng, (float *)state, (size_t)recurrent / sizeof(float), -0.5f, 0.5f);
    else
        rng_fill_bf16(rng, (uint16_t *)state, (size_t)recurrent / sizeof(uint16_t), -0.5f, 0.5f);
    rng_fill_bf16(rng, (uint16_t *)(state + recurrent), (size_t)(info->info.state_bytes - recurrent) / 2, -1.0f,
                  1.0f);
    return state;
}

static inline void model_write_random_state(const model *m, int32_t slot, harness_rng *rng)
{
    for (int32_t l = 0; l < m->num_layers; l++) {
        uint8_t *state = layer_state_random(m, l, rng);
        expect_ok(api()->slot_write(m->pool, m->layers[l].handle, slot, state, m->layers[l].info.state_bytes, NULL));
        free(state);
    }
}

/* Compare two states of one layer: bitwise for float32 state; for bf16 state the recurrent part by relative
 * error (only float32 state is promised bitwise) and the conv part, raw input bits, bitwise. */
static inline void expect_layer_states_match(const model *m, int32_t layer, const uint8_t *got,
                                             const uint8_t *want, const char *what)
{
    const model_layer *info = &m->layers[layer];
    char label[256];
    snprintf(label, sizeof label, "%s (layer %d)", what, layer);
    if (model_exact(m, layer)) {
        expect_bytes_equal(got, want, (size_t)info->info.state_bytes, label);
        return;
    }
    uint64_t recurrent = spec_recurrent_bytes(&info->spec);
    expect_bf16_close((const uint16_t *)got, (const uint16_t *)want, (size_t)recurrent / 2, 2e-2, label);
    expect_bytes_equal(got + recurrent, want + recurrent, (size_t)(info->info.state_bytes - recurrent), label);
}

static inline void expect_slots_match(const model *m, int32_t got_slot, int32_t want_slot, const char *what)
{
    for (int32_t l = 0; l < m->num_layers; l++) {
        uint8_t *got = model_read_state(m, l, got_slot), *want = model_read_state(m, l, want_slot);
        expect_layer_states_match(m, l, got, want, what);
        free(got);
        free(want);
    }
}

/* Every layer's state of a slot, concatenated (to check that a slot did not change). */
static inline uint8_t *model_snapshot_slot(const model *m, int32_t slot, size_t *out_bytes)
{
    size_t total = 0;
    for (int32_t l = 0; l < m->num_layers; l++) total += (size_t)m->layers[l].info.state_bytes;
    uint8_t *snapshot = harness_alloc(total);
    size_t at = 0;
    for (int32_t l = 0; l < m->num_layers; l++) {
        uint8_t *state = model_read_state(m, l, slot);
        memcpy(snapshot + at, state, (size_t)m->layers[l].info.state_bytes);
        at += (size_t)m->layers[l].info.state_bytes;
        free(state);
    }
    *out_bytes = total;
    return snapshot;
}

static inline void expect_slot_unchanged(const model *m, int32_t slot, const uint8_t *before, const char *what)
{
    size_t bytes = 0;
    uint8_t *now = model_snapshot_slot(m, slot, &bytes);
    expect_bytes_equal(now, before, bytes, what);
    free(now);
}

/* ------------------------------------------------------------------------------------------------------------
 * Sequences and steps
 * ---------------------------------------------------------------------------------------------------------- */

/* A sequence's inputs for every layer, indexed by absolute position 0 .. length-1. */
typedef struct seq_data {
    int64_t length;
    uint16_t *qkv[HARNESS_MAX_LAYERS]; /* [length][C] */
    uint16_t *a[HARNESS_MAX_LAYERS];   /* [length][Hv] */
    uint16_t *b[HARNESS_MAX_LAYERS];   /* [length][Hv] */
} seq_data;

/* Outputs one run produced for a sequence, [length][Hv*dv] per layer; rows never produced stay poisoned. */
typedef struct seq_outputs {
    int64_t length;
    uint16_t *out[HARNESS_MAX_LAYERS];
} seq_outputs;

static inline seq_data seq_data_random(const model *m, int64_t length, harness_rng *rng)
{
    seq_data data = {length, {NULL}, {NULL}, {NULL}};
    for (int32_t l = 0; l < m->num_layers; l++) {
        const layer_spec *spec = &m->layers[l].spec;
        size_t qkv = (size_t)length * (size_t)spec_channels(spec), gates = (size_t)length * spec->num_v_heads;
        data.qkv[l] = harness_alloc(qkv * sizeof(uint16_t));
        data.a[l] = harness_alloc(gates * sizeof(uint16_t));
        data.b[l] = harness_alloc(gates * sizeof(uint16_t));
        rng_fill_bf16(rng, data.qkv[l], qkv, -1.0f, 1.0f);
        rng_fill_bf16(rng, data.a[l], gates, -2.0f, 2.0f);
        rng_fill_bf16(rng, data.b[l], gates, -2.0f, 2.0f);
    }
    return data;
}

static inline void seq_data_free(seq_data *data)
{
    for (int32_t l = 0; l < HARNESS_MAX_LAYERS; l++) {
        free(data->qkv[l]);
        free(data->a[l]);
        free(data->b[l]);
    }
}

static inline seq_outputs seq_outputs_poisoned(const model *m, int64_t length)
{
    seq_outputs outputs = {length, {NULL}};
    for (int32_t l = 0; l < m->num_layers; l++) {
        size_t count = (size_t)length * (size_t)spec_out_width(&m->layers[l].spec);
        outputs.out[l] = harness_alloc(count * sizeof(uint16_t));
        for (size_t i = 0; i < count; i++) outputs.out[l][i] = HARNESS_POISON;
    }
    return outputs;
}

/* Rows [from, to) of two runs' outputs agree: bitwise for float32 state, by relative error for bf16 state. */
static inline void expect_outputs_match(const model *m, const seq_outputs *got, const seq_outputs *want,
                                        int64_t from, int64_t to, const char *what)
{
    for (int32_t l = 0; l < m->num_layers; l++) {
        size_t width = (size_t)spec_out_width(&m->layers[l].spec);
        const uint16_t *g = got->out[l] + (size_t)from * width, *w = want->out[l] + (size_t)from * width;
        size_t count = (size_t)(to - from) * width;
        char label[256];
        snprintf(label, sizeof label, "%s: outputs of rows %lld..%lld (layer %d)", what, (long long)from,
                 (long long)to, l);
        for (size_t i = 0; i < count; i++)
            cr_assert(g[i] != HARNESS_POISON && w[i] != HARNESS_POISON, "%s: element %zu never written", label, i);
        if (model_exact(m, l))
            expect_bytes_equal(g, w, count * sizeof(uint16_t), label);
        else
            expect_bf16_close(g, w, count, 2e-2, label);
    }
}

/* One sequence of a step. `data` NULL: padding rows (random inputs); `outputs` NULL: outputs are not kept. */
typedef struct step_seq {
    const seq_data *data;
    seq_outputs *outputs;
    int64_t token_offset;
    int64_t start_position;
    int32_t num_tokens;
    int32_t state_slot;
    linattn_init init;
    int32_t source_slot;
} step_seq;

static inline step_seq step_of(const seq_data *data, seq_outputs *outputs, int64_t start, int32_t count,
                               int32_t slot, linattn_init init, int32_t source_slot)
{
    step_seq step = {data, outputs, 0, start, count, slot, init, source_slot};
    return step;
}

static inline step_seq step_padding(int32_t count)
{
    step_seq step = {NULL, NULL, 0, 0, count, LINATTN_SLOT_NONE, LINATTN_INIT_ZERO, 0};
    return step;
}

/* Pack the sequences in array order; returns the stream length. */
static inline int64_t steps_pack_in_order(step_seq *steps, int32_t count)
{
    int64_t offset = 0;
    for (int32_t i = 0; i < count; i++) {
        steps[i].token_offset = offset;
        offset += steps[i].num_tokens;
    }
    return offset;
}

/* Pack the sequences in a random order of rows; returns the stream length. */
static inline int64_t steps_pack_shuffled(step_seq *steps, int32_t count, harness_rng *rng)
{
    int32_t *order = harness_alloc((size_t)count * sizeof *order);
    for (int32_t i = 0; i < count; i++) order[i] = i;
    rng_shuffle(rng, order, count);
    int64_t offset = 0;
    for (int32_t i = 0; i < count; i++) {
        steps[order[i]].token_offset = offset;
        offset += steps[order[i]].num_tokens;
    }
    free(order);
    return offset;
}

static inline linattn_status model_set_batch(const model *m, const step_seq *steps, int32_t num_steps,
                                             int64_t num_tokens, const linattn_checkpoint_desc *checkpoints,
                                             int32_t num_checkpoints)
{
    linattn_seq_desc *seqs = harness_alloc((size_t)(num_steps > 0 ? num_steps : 1) * sizeof *seqs);
    for (int32_t i = 0; i < num_steps; i++) {
        linattn_seq_desc seq = {steps[i].token_offset, steps[i].start_position, steps[i].num_tokens,
                                steps[i].state_slot,  steps[i].init,           steps[i].source_slot};
        seqs[i] = seq;
    }
    linattn_batch_desc batch = {sizeof batch,    sizeof(linattn_seq_desc), sizeof(linattn_checkpoint_desc),
                                num_steps,       seqs,                     num_tokens,
                                num_checkpoints, checkpoints};
    linattn_status status = api()->plan_set_batch(m->plan, &batch, NULL);
    free(seqs);
    return status;
}

/* Extra elements after each row of the packed streams (0: contiguous, passed as row stride 0). */
typedef struct stream_layout {
    int64_t qkv_pad, gate_pad, out_pad;
} stream_layout;

static inline int64_t row_stride(int64_t width, int64_t pad) { return pad ? width + pad : 0; }

/* Is row `row` of the stream a token of a non-padding sequence? Returns that step or NULL. */
static inline const step_seq *step_owning_row(const step_seq *steps, int32_t num_steps, int64_t row)
{
    for (int32_t i = 0; i < num_steps; i++)
        if (steps[i].state_slot != LINATTN_SLOT_NONE && row >= steps[i].token_offset &&
            row < steps[i].token_offset + steps[i].num_tokens)
            return &steps[i];
    return NULL;
}

/*
 * Run every layer of the model over the plan's current batch, the packed streams built from `steps`. Outputs are
 * poisoned before each forward; afterwards every row of a non-padding sequence must be written (no poison, all
 * finite) and every other row and every pad element must still be poison. The rows are then copied into each
 * step's `outputs` at their absolute positions.
 */
static inline void model_run_layout(const model *m, const step_seq *steps, int32_t num_steps, int64_t num_tokens,
                                    const stream_layout *layout, harness_rng *rng)
{
    stream_layout contiguous = {0, 0, 0};
    if (!layout) layout = &contiguous;
    int64_t rows = num_tokens > 0 ? num_tokens : 1;
    for (int32_t l = 0; l < m->num_layers; l++) {
        const layer_spec *spec = &m->layers[l].spec;
        int64_t channels = spec_channels(spec), heads = spec->num_v_heads, width = spec_out_width(spec);
        int64_t qkv_pitch = channels + layout->qkv_pad, gate_pitch = heads + layout->gate_pad;
        int64_t out_pitch = width + layout->out_pad;
        uint16_t *qkv = harness_alloc((size_t)(rows * qkv_pitch) * sizeof(uint16_t));
        uint16_t *a = harness_alloc((size_t)(rows * gate_pitch) * sizeof(uint16_t));
        uint16_t *b = harness_alloc((size_t)(rows * gate_pitch) * sizeof(uint16_t));
        uint16_t *out = harness_alloc((size_t)(rows * out_pitch) * sizeof(uint16_t));
        rng_fill_bf16(rng, qkv, (size_t)(rows * qkv_pitch), -1.0f, 1.0f);
        rng_fill_bf16(rng, a, (size_t)(rows * gate_pitch), -2.0f, 2.0f);
        rng_fill_bf16(rng, b, (size_t)(rows * gate_pitch), -2.0f, 2.0f);
        for (int64_t i = 0; i < rows * out_pitch; i++) out[i] = HARNESS_POISON;
        for (int32_t s = 0; s < num_steps; s++) {
            const step_seq *step = &steps[s];
            if (!step->data) continue;
            cr_assert(step->start_position + step->num_tokens <= step->data->length, "test bug: step past data");
            for (int32_t t = 0; t < step->num_tokens; t++) {
                int64_t row = step->token_offset + t, position = step->start_position + t;
                memcpy(qkv + row * qkv_pitch, step->data->qkv[l] + position * channels,
                       (size_t)channels * sizeof(uint16_t));
                memcpy(a + row * gate_pitch, step->data->a[l] + position * heads, (size_t)heads * sizeof(uint16_t));
                memcpy(b + row * gate_pitch, step->data->b[l] + position * heads, (size_t)heads * sizeof(uint16_t));
            }
        }
        int gla = spec->kind == LINATTN_LAYER_SIMPLE_GLA;
        linattn_forward_args args = {sizeof args,
                                     LINATTN_DTYPE_BF16,
                                     qkv,
                                     gla && spec->constant_decay ? NULL : a,
                                     gla ? NULL : b,
                                     out,
                                     row_stride(channels, layout->qkv_pad),
                                     row_stride(heads, layout->gate_pad),
                                     row_stride(heads, layout->gate_pad),
                                     row_stride(width, layout->out_pad)};
        expect_ok(api()->forward(m->layers[l].handle, m->plan, &args, NULL));
        for (int64_t row = 0; row < rows; row++) {
            const step_seq *owner = row < num_tokens ? step_owning_row(steps, num_steps, row) : NULL;
            const uint16_t *line = out + row * out_pitch;
            for (int64_t i = 0; i < out_pitch; i++) {
                if (owner && i < width)
                    cr_assert(line[i] != HARNESS_POISON && isfinite(bf16_to_float(line[i])),
                              "layer %d row %lld element %lld not written or not finite (0x%04x)" HARNESS_TAG, l,
                              (long long)row, (long long)i, line[i], HARNESS_TAG_ARGS);
                else
                    cr_assert(line[i] == HARNESS_POISON,
                              "layer %d row %lld element %lld written (0x%04x) though no sequence owns it "
                              "[seed %llu]",
                              l, (long long)row, (long long)i, line[i], HARNESS_TAG_ARGS);
            }
            if (owner && owner->outputs) {
                int64_t position = owner->start_position + (row - owner->token_offset);
                memcpy(owner->outputs->out[l] + position * width, line, (size_t)width * sizeof(uint16_t));
            }
        }
        free(qkv);
        free(a);
        free(b);
        free(out);
    }
}

static inline void model_run(const model *m, const step_seq *steps, int32_t num_steps, int64_t num_tokens,
                             harness_rng *rng)
{
    model_run_layout(m, steps, num_steps, num_tokens, NULL, rng);
}

/* Set the batch (which must be valid) and run every layer over it. */
static inline void model_step(const model *m, const step_seq *steps, int32_t num_steps, int64_t num_tokens,
                              const linattn_checkpoint_desc *checkpoints, int32_t num_checkpoints, harness_rng *rng)
{
    expect_ok(model_set_batch(m, steps, num_steps, num_tokens, checkpoints, num_checkpoints));
    model_run(m, steps, num_steps, num_tokens, rng);
}

/* Pack in order, set and run; no checkpoints. */
static inline void model_step_packed(const model *m, step_seq *steps, int32_t num_steps, harness_rng *rng)
{
    int64_t num_tokens = steps_pack_in_order(steps, num_steps);
    model_step(m, steps, num_steps, num_tokens, NULL, 0, rng);
}

/* Run one sequence alone, tokens [start, start + count), in one step. */
static inline void model_step_one(const model *m, const seq_data *data, seq_outputs *outputs, int64_t start,
                                  int32_t count, int32_t slot, linattn_init init, int32_t source_slot,
                                  harness_rng *rng)
{
    step_seq step = step_of(data, outputs, start, count, slot, init, source_slot);
    model_step_packed(m, &step, 1, rng);
}

static inline linattn_stats context_stats(const linattn_context *context)
{
    linattn_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    expect_ok(api()->get_stats(context, &stats));
    return stats;
}

static inline linattn_pool_info pool_info_of(const linattn_pool *pool)
{
    linattn_pool_info info = {sizeof info, 0, 0, 0};
    expect_ok(api()->pool_info(pool, &info));
    return info;
}

#endif
