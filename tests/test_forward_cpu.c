/*
 * test_forward_cpu.c — forward on the CPU backend over small random layers: how a sequence is cut into steps and
 * batched must not change its outputs or state (bitwise with float32 state, as MATH.md §4 promises), checkpoints
 * restore exactly, padding and 0-token sequences behave as documented, and the outputs and state follow MATH.md
 * (checked against a float64 recomputation written here from MATH.md alone).
 *
 * Every test runs over 16 configurations: {Gated DeltaNet, simple GLA} x v/qk head ratio {1, 2} x conv width
 * {0, 4} x state dtype {f32, bf16}; each model has two layers of that configuration with different weights.
 */
#include "support/harness.h"

typedef struct forward_config {
    linattn_layer_kind kind;
    int32_t ratio; /* num_v_heads / num_qk_heads */
    int32_t conv_width;
    linattn_dtype state_dtype;
} forward_config;

#define GDN LINATTN_LAYER_GATED_DELTANET
#define GLA LINATTN_LAYER_SIMPLE_GLA
#define F32 LINATTN_DTYPE_F32
#define BF16 LINATTN_DTYPE_BF16

static forward_config configs[] = {
    {GDN, 1, 0, F32}, {GDN, 1, 0, BF16}, {GDN, 1, 4, F32}, {GDN, 1, 4, BF16},
    {GDN, 2, 0, F32}, {GDN, 2, 0, BF16}, {GDN, 2, 4, F32}, {GDN, 2, 4, BF16},
    {GLA, 1, 0, F32}, {GLA, 1, 0, BF16}, {GLA, 1, 4, F32}, {GLA, 1, 4, BF16},
    {GLA, 2, 0, F32}, {GLA, 2, 0, BF16}, {GLA, 2, 4, F32}, {GLA, 2, 4, BF16},
};

#define CONFIG_PARAMETERS(name)                                                                                    \
    ParameterizedTestParameters(forward_cpu, name)                                                                 \
    {                                                                                                              \
        return cr_make_param_array(forward_config, configs, sizeof configs / sizeof configs[0]);                   \
    }

/* GDN as Qwen3-Next uses it (L2-normalised q/k, default scale). GLA varies the options the ABI offers: no norm
 * and an explicit scale without conv, constant decay (a = NULL) with grouped value heads. */
static layer_spec spec_of(const forward_config *config)
{
    int gla = config->kind == GLA;
    layer_spec spec = {config->kind,
                       2,
                       2 * config->ratio,
                       config->ratio == 1 ? 16 : 32,
                       config->ratio == 1 ? 32 : 16,
                       config->conv_width,
                       gla ? config->conv_width > 0 : 1,
                       config->state_dtype,
                       gla && config->conv_width == 0 ? 0.25f : 0.0f,
                       gla && config->ratio == 2};
    return spec;
}

static model start(const forward_config *config, harness_rng *rng)
{
    char label[128];
    snprintf(label, sizeof label, "%s hv/hk=%d conv=%d state=%s", config->kind == GDN ? "GDN" : "GLA",
             config->ratio, config->conv_width, config->state_dtype == F32 ? "f32" : "bf16");
    harness_set_label(label);
    *rng = rng_start();
    layer_spec specs[2] = {spec_of(config), spec_of(config)};
    model m;
    model_create(&m, specs, 2, 24, plan_limits(8, 4, 4096), rng);
    return m;
}

/* A slot holding random state, so a test notices when an initial state that should be ignored is read. */
static int32_t alloc_dirty(const model *m, harness_rng *rng)
{
    int32_t slot = model_alloc(m);
    model_write_random_state(m, slot, rng);
    return slot;
}

static int compare_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

CONFIG_PARAMETERS(split_prefill_equals_one_pass)
ParameterizedTest(forward_config *config, forward_cpu, split_prefill_equals_one_pass)
{
    harness_rng rng;
    model m = start(config, &rng);
    int64_t length = rng_int(&rng, 20, 60);
    seq_data data = seq_data_random(&m, length, &rng);
    seq_outputs whole = seq_outputs_poisoned(&m, length), split = seq_outputs_poisoned(&m, length);
    int32_t whole_slot = alloc_dirty(&m, &rng), split_slot = alloc_dirty(&m, &rng);

    model_step_one(&m, &data, &whole, 0, (int32_t)length, whole_slot, LINATTN_INIT_ZERO, 0, &rng);

    /* 1 to 4 cuts anywhere in [0, length]; equal cuts make 0-token steps. */
    int64_t cuts[6] = {0};
    int32_t num_cuts = rng_int(&rng, 1, 4);
    for (int32_t i = 1; i <= num_cuts; i++) cuts[i] = rng_int(&rng, 0, (int32_t)length);
    cuts[num_cuts + 1] = length;
    qsort(cuts + 1, (size_t)num_cuts, sizeof cuts[0], compare_int64);
    for (int32_t i = 0; i <= num_cuts; i++) {
        cr_log_info("step %d: tokens %lld..%lld", i, (long long)cuts[i], (long long)cuts[i + 1]);
        model_step_one(&m, &data, &split, cuts[i], (int32_t)(cuts[i + 1] - cuts[i]), split_slot,
                       i == 0 ? LINATTN_INIT_ZERO : LINATTN_INIT_CONTINUE, 0, &rng);
    }
    expect_outputs_match(&m, &split, &whole, 0, length, "split prefill vs one pass");
    expect_slots_match(&m, split_slot, whole_slot, "final state, split prefill vs one pass");
    model_destroy(&m);
}

CONFIG_PARAMETERS(prefill_then_decode_equals_token_by_token)
ParameterizedTest(forward_config *config, forward_cpu, prefill_then_decode_equals_token_by_token)
{
    harness_rng rng;
    model m = start(config, &rng);
    int32_t prefill = rng_int(&rng, 3, 16), decode = rng_int(&rng, 2, 6);
    int64_t length = prefill + decode;
    seq_data data = seq_data_random(&m, length, &rng);
    seq_outputs chunked = seq_outputs_poisoned(&m, length), single = seq_outputs_poisoned(&m, length);
    int32_t chunked_slot = alloc_dirty(&m, &rng), single_slot = alloc_dirty(&m, &rng);

    model_step_one(&m, &data, &chunked, 0, prefill, chunked_slot, LINATTN_INIT_ZERO, 0, &rng);
    for (int32_t t = 0; t < prefill; t++)
        model_step_one(&m, &data, &single, t, 1, single_slot, t == 0 ? LINATTN_INIT_ZERO : LINATTN_INIT_CONTINUE,
                       0, &rng);
    /* Decode both copies together, as an engine batches its decodes. */
    for (int64_t t = prefill; t < length; t++) {
        step_seq steps[2] = {step_of(&data, &chunked, t, 1, chunked_slot, LINATTN_INIT_CONTINUE, 0),
                             step_of(&data, &single, t, 1, single_slot, LINATTN_INIT_CONTINUE, 0)};
        model_step_packed(&m, steps, 2, &rng);
    }
    expect_outputs_match(&m, &chunked, &single, 0, length, "prefill + decode vs token by token");
    expect_slots_match(&m, chunked_slot, single_slot, "final state, prefill + decode vs token by token");
    model_destroy(&m);
}

CONFIG_PARAMETERS(checkpoint_restore_continues_identically)
ParameterizedTest(forward_config *config, forward_cpu, checkpoint_restore_continues_identically)
{
    harness_rng rng;
    model m = start(config, &rng);
    int64_t align = m.checkpoint_alignment;
    /* An aligned position strictly inside the step, and the step's end. */
    int64_t position = align > 1 ? align * rng_int(&rng, 1, 2) : rng_int(&rng, 2, 30);
    int64_t first = rng_int(&rng, 0, (int32_t)position - 1); /* the step starts at `first` */
    int64_t length = position + rng_int(&rng, 1, 9);
    cr_log_info("alignment %lld, checkpoint at %lld of %lld, step from %lld", (long long)align,
                (long long)position, (long long)length, (long long)first);
    seq_data data = seq_data_random(&m, length, &rng);
    seq_outputs original = seq_outputs_poisoned(&m, length), restored = seq_outputs_poisoned(&m, length);
    int32_t slot = alloc_dirty(&m, &rng), mid = alloc_dirty(&m, &rng), end = alloc_dirty(&m, &rng);

    if (first > 0) model_step_one(&m, &data, &original, 0, (int32_t)first, slot, LINATTN_INIT_ZERO, 0, &rng);
    step_seq step = step_of(&data, &original, first, (int32_t)(length - first), slot,
                            first > 0 ? LINATTN_INIT_CONTINUE : LINATTN_INIT_ZERO, 0);
    linattn_checkpoint_desc checkpoints[2] = {{position, 0, mid}, {length, 0, end}};
    model_step(&m, &step, 1, step.num_tokens, checkpoints, 2, &rng);
    expect_slots_match(&m, end, slot, "checkpoint at the step's end vs the sequence's final state");

    /* The checkpoint holds the state after `position` tokens... */
    int32_t prefix = alloc_dirty(&m, &rng);
    model_step_one(&m, &data, NULL, 0, (int32_t)position, prefix, LINATTN_INIT_ZERO, 0, &rng);
    expect_slots_match(&m, mid, prefix, "checkpoint vs a run that stopped there");

    /* ...and a sequence restored from it continues exactly as the original did, reading the checkpoint only. */
    size_t bytes = 0;
    uint8_t *checkpoint_before = model_snapshot_slot(&m, mid, &bytes);
    int32_t resumed = alloc_dirty(&m, &rng);
    model_step_one(&m, &data, &restored, position, (int32_t)(length - position), resumed, LINATTN_INIT_FROM_SLOT,
                   mid, &rng);
    expect_outputs_match(&m, &restored, &original, position, length, "restored vs original");
    expect_slots_match(&m, resumed, slot, "final state, restored vs original");
    expect_slot_unchanged(&m, mid, checkpoint_before, "checkpoint slot read by FROM_SLOT");
    free(checkpoint_before);
    model_destroy(&m);
}

CONFIG_PARAMETERS(padding_sequences_are_skipped)
ParameterizedTest(forward_config *config, forward_cpu, padding_sequences_are_skipped)
{
    harness_rng rng;
    model m = start(config, &rng);
    int32_t lengths[2] = {rng_int(&rng, 1, 12), rng_int(&rng, 1, 12)};
    seq_data data[2] = {seq_data_random(&m, lengths[0], &rng), seq_data_random(&m, lengths[1], &rng)};
    seq_outputs batched[2] = {seq_outputs_poisoned(&m, lengths[0]), seq_outputs_poisoned(&m, lengths[1])};
    seq_outputs alone[2] = {seq_outputs_poisoned(&m, lengths[0]), seq_outputs_poisoned(&m, lengths[1])};
    int32_t slots[2] = {alloc_dirty(&m, &rng), alloc_dirty(&m, &rng)};
    int32_t bystander = alloc_dirty(&m, &rng);
    size_t bytes = 0;
    uint8_t *bystander_before = model_snapshot_slot(&m, bystander, &bytes);

    /* Padding before, between and after the real sequences (model_run checks its rows stay poisoned). */
    step_seq steps[5] = {step_padding(rng_int(&rng, 1, 5)),
                         step_of(&data[0], &batched[0], 0, lengths[0], slots[0], LINATTN_INIT_ZERO, 0),
                         step_padding(rng_int(&rng, 1, 5)),
                         step_of(&data[1], &batched[1], 0, lengths[1], slots[1], LINATTN_INIT_ZERO, 0),
                         step_padding(rng_int(&rng, 0, 3))};
    model_step_packed(&m, steps, 5, &rng);
    expect_slot_unchanged(&m, bystander, bystander_before, "slot of no sequence in a padded batch");

    for (int i = 0; i < 2; i++) {
        int32_t own = alloc_dirty(&m, &rng);
        model_step_one(&m, &data[i], &alone[i], 0, lengths[i], own, LINATTN_INIT_ZERO, 0, &rng);
        expect_outputs_match(&m, &batched[i], &alone[i], 0, lengths[i], "padded batch vs alone");
        expect_slots_match(&m, slots[i], own, "final state, padded batch vs alone");
    }
    free(bystander_before);
    model_destroy(&m);
}

CONFIG_PARAMETERS(zero_token_sequences_move_their_initial_state)
ParameterizedTest(forward_config *config, forward_cpu, zero_token_sequences_move_their_initial_state)
{
    harness_rng rng;
    model m = start(config, &rng);
    int32_t length = rng_int(&rng, 2, 10);
    seq_data data = seq_data_random(&m, length, &rng);
    int32_t source = alloc_dirty(&m, &rng);
    model_step_one(&m, &data, NULL, 0, length, source, LINATTN_INIT_ZERO, 0, &rng);
    int32_t copied = alloc_dirty(&m, &rng), zeroed = alloc_dirty(&m, &rng), kept = alloc_dirty(&m, &rng);
    int32_t busy = alloc_dirty(&m, &rng);
    size_t bytes = 0;
    uint8_t *source_before = model_snapshot_slot(&m, source, &bytes);
    uint8_t *kept_before = model_snapshot_slot(&m, kept, &bytes);

    /* Three 0-token sequences beside one with tokens. */
    seq_data other = seq_data_random(&m, 4, &rng);
    step_seq steps[4] = {step_of(NULL, NULL, 0, 0, copied, LINATTN_INIT_FROM_SLOT, source),
                         step_of(&other, NULL, 0, 4, busy, LINATTN_INIT_ZERO, 0),
                         step_of(NULL, NULL, 0, 0, zeroed, LINATTN_INIT_ZERO, 0),
                         step_of(NULL, NULL, length, 0, kept, LINATTN_INIT_CONTINUE, 0)};
    model_step_packed(&m, steps, 4, &rng);

    /* A copy is a copy, whatever the state dtype: compare bitwise. */
    expect_slot_unchanged(&m, copied, source_before, "slot of a 0-token FROM_SLOT sequence vs its source");
    expect_slot_unchanged(&m, source, source_before, "source of a 0-token FROM_SLOT sequence");
    expect_slot_unchanged(&m, kept, kept_before, "slot of a 0-token CONTINUE sequence");
    for (int32_t l = 0; l < m.num_layers; l++) {
        uint8_t *state = model_read_state(&m, l, zeroed);
        for (uint64_t i = 0; i < m.layers[l].info.state_bytes; i++)
            cr_assert_eq(state[i], 0, "0-token ZERO sequence: layer %d byte %llu not zero" HARNESS_TAG, l,
                         (unsigned long long)i, HARNESS_TAG_ARGS);
        free(state);
    }
    free(source_before);
    free(kept_before);
    model_destroy(&m);
}

CONFIG_PARAMETERS(batch_equals_each_sequence_alone)
ParameterizedTest(forward_config *config, forward_cpu, batch_equals_each_sequence_alone)
{
    enum { MAX_SEQS = 6 };
    harness_rng rng;
    model m = start(config, &rng);
    int32_t count = rng_int(&rng, 3, MAX_SEQS);
    seq_data data[MAX_SEQS];
    seq_outputs batched[MAX_SEQS], alone[MAX_SEQS];
    step_seq steps[MAX_SEQS], twins[MAX_SEQS];
    for (int32_t i = 0; i < count; i++) {
        /* A new sequence, a continued one or one restored from another slot; 0 to 12 tokens in this step. */
        linattn_init init = (linattn_init)rng_int(&rng, LINATTN_INIT_ZERO, LINATTN_INIT_FROM_SLOT);
        int32_t history = init == LINATTN_INIT_ZERO ? 0 : rng_int(&rng, 1, 8), tokens = rng_int(&rng, 0, 12);
        data[i] = seq_data_random(&m, history + tokens, &rng);
        batched[i] = seq_outputs_poisoned(&m, history + tokens);
        alone[i] = seq_outputs_poisoned(&m, history + tokens);
        int32_t slot = alloc_dirty(&m, &rng), source = 0;
        if (init == LINATTN_INIT_CONTINUE)
            model_step_one(&m, &data[i], NULL, 0, history, slot, LINATTN_INIT_ZERO, 0, &rng);
        if (init == LINATTN_INIT_FROM_SLOT) {
            source = alloc_dirty(&m, &rng);
            model_step_one(&m, &data[i], NULL, 0, history, source, LINATTN_INIT_ZERO, 0, &rng);
        }
        int32_t twin = model_alloc(&m);
        expect_ok(api()->slot_copy(m.pool, twin, slot, NULL));
        steps[i] = step_of(&data[i], &batched[i], history, tokens, slot, init, source);
        twins[i] = step_of(&data[i], &alone[i], history, tokens, twin, init, source);
        cr_log_info("seq %d: init %d, history %d, tokens %d", i, init, history, tokens);
    }
    int64_t num_tokens = steps_pack_shuffled(steps, count, &rng);
    model_step(&m, steps, count, num_tokens, NULL, 0, &rng);
    for (int32_t i = 0; i < count; i++) {
        model_step_packed(&m, &twins[i], 1, &rng);
        char what[64];
        snprintf(what, sizeof what, "sequence %d in a batch vs alone", i);
        expect_outputs_match(&m, &batched[i], &alone[i], steps[i].start_position,
                             steps[i].start_position + steps[i].num_tokens, what);
        expect_slots_match(&m, steps[i].state_slot, twins[i].state_slot, what);
    }
    model_destroy(&m);
}

CONFIG_PARAMETERS(row_strides_equal_contiguous_rows)
ParameterizedTest(forward_config *config, forward_cpu, row_strides_equal_contiguous_rows)
{
    harness_rng rng;
    model m = start(config, &rng);
    int32_t lengths[2] = {rng_int(&rng, 1, 10), rng_int(&rng, 1, 10)};
    seq_data data[2] = {seq_data_random(&m, lengths[0], &rng), seq_data_random(&m, lengths[1], &rng)};
    seq_outputs contiguous[2], strided[2];
    step_seq plain[2], padded[2];
    for (int i = 0; i < 2; i++) {
        contiguous[i] = seq_outputs_poisoned(&m, lengths[i]);
        strided[i] = seq_outputs_poisoned(&m, lengths[i]);
        plain[i] = step_of(&data[i], &contiguous[i], 0, lengths[i], alloc_dirty(&m, &rng), LINATTN_INIT_ZERO, 0);
        padded[i] = step_of(&data[i], &strided[i], 0, lengths[i], alloc_dirty(&m, &rng), LINATTN_INIT_ZERO, 0);
    }
    model_step_packed(&m, plain, 2, &rng);
    int64_t num_tokens = steps_pack_in_order(padded, 2);
    stream_layout layout = {rng_int(&rng, 1, 7), rng_int(&rng, 1, 3), rng_int(&rng, 1, 5)};
    expect_ok(model_set_batch(&m, padded, 2, num_tokens, NULL, 0));
    model_run_layout(&m, padded, 2, num_tokens, &layout, &rng);
    for (int i = 0; i < 2; i++) {
        expect_outputs_match(&m, &strided[i], &contiguous[i], 0, lengths[i], "strided vs contiguous rows");
        expect_slots_match(&m, padded[i].state_slot, plain[i].state_slot, "final state, strided vs contiguous");
    }
    model_destroy(&m);
}

/* ------------------------------------------------------------------------------------------------------------
 * MATH.md recomputed in float64, token by token, with float32 state
 * ---------------------------------------------------------------------------------------------------------- */

typedef struct oracle {
    const layer_spec *spec;
    const layer_weights *weights;
    double *state;    /* [Hv][dk][dv] */
    uint16_t *window; /* [W-1][C]: the last W-1 inputs, oldest first */
} oracle;

static double softplus(double z) { return z > 30.0 ? z : log1p(exp(z)); }

/* MATH.md's reference keeps float32 state; bf16 storage rounding (at the end of each step) stays within the
 * comparison's tolerance. */
static double round_to_float(double value) { return (double)(float)value; }

/* Start from one layer's state bytes in the layout of MATH.md §State layout. */
static oracle oracle_from_state(const model *m, int32_t layer, const uint8_t *bytes)
{
    const layer_spec *spec = &m->layers[layer].spec;
    oracle o = {spec, &m->layers[layer].weights, NULL, NULL};
    size_t elems = (size_t)spec_recurrent_bytes(spec) / spec_state_elem_bytes(spec);
    o.state = harness_alloc(elems * sizeof(double));
    for (size_t i = 0; i < elems; i++)
        o.state[i] = spec->state_dtype == F32 ? (double)((const float *)bytes)[i]
                                              : (double)bf16_to_float(((const uint16_t *)bytes)[i]);
    o.window = harness_alloc((size_t)spec_conv_bytes(spec) + 2);
    memcpy(o.window, bytes + spec_recurrent_bytes(spec), (size_t)spec_conv_bytes(spec));
    return o;
}

/* §1: causal depthwise conv over the window and x, SiLU; then x enters the window. */
static void oracle_conv(oracle *o, const uint16_t *x, double *y)
{
    const layer_spec *spec = o->spec;
    int32_t channels = spec_channels(spec), width = spec->conv_width;
    for (int32_t c = 0; c < channels; c++) {
        if (width == 0) {
            y[c] = bf16_to_float(x[c]);
            continue;
        }
        const float *w = o->weights->conv_weight + (size_t)c * width;
        double z = o->weights->conv_bias[c] + w[width - 1] * (double)bf16_to_float(x[c]);
        for (int32_t j = 0; j < width - 1; j++) z += w[j] * (double)bf16_to_float(o->window[j * channels + c]);
        y[c] = z / (1.0 + exp(-z));
    }
    if (width > 1) {
        memmove(o->window, o->window + channels, (size_t)(width - 2) * channels * sizeof(uint16_t));
        memcpy(o->window + (size_t)(width - 2) * channels, x, (size_t)channels * sizeof(uint16_t));
    }
}

/* §2: L2 norm and scale of q (and norm of k), per q/k head. */
static void oracle_normalise(const layer_spec *spec, double *q, double *k)
{
    double scale = spec->scale != 0.0f ? spec->scale : 1.0 / sqrt((double)spec->head_dim_qk);
    for (int32_t h = 0; h < spec->num_qk_heads; h++) {
        double *qh = q + h * spec->head_dim_qk, *kh = k + h * spec->head_dim_qk;
        double qq = 0.0, kk = 0.0;
        for (int32_t i = 0; i < spec->head_dim_qk; i++) {
            qq += qh[i] * qh[i];
            kk += kh[i] * kh[i];
        }
        double qn = spec->qk_l2norm ? 1.0 / sqrt(qq + 1e-6) : 1.0, kn = spec->qk_l2norm ? 1.0 / sqrt(kk + 1e-6) : 1.0;
        for (int32_t i = 0; i < spec->head_dim_qk; i++) {
            qh[i] *= qn * scale;
            kh[i] *= kn;
        }
    }
}

/* §3: one token of the recurrence for every v-head; writes out[Hv][dv] as bf16. */
static void oracle_token(oracle *o, const uint16_t *x, const uint16_t *a, const uint16_t *b, uint16_t *out)
{
    const layer_spec *spec = o->spec;
    int32_t dk = spec->head_dim_qk, dv = spec->head_dim_v, group = spec->num_v_heads / spec->num_qk_heads;
    double *y = harness_alloc((size_t)spec_channels(spec) * sizeof(double));
    oracle_conv(o, x, y);
    double *q = y, *k = y + spec->num_qk_heads * dk, *v = y + 2 * spec->num_qk_heads * dk;
    oracle_normalise(spec, q, k);
    for (int32_t h = 0; h < spec->num_v_heads; h++) {
        const double *qh = q + (h / group) * dk, *kh = k + (h / group) * dk, *vh = v + h * dv;
        double rate = -exp((double)o->weights->A_log[h]);
        double g = spec->kind == GLA && spec->constant_decay
                       ? rate
                       : rate * softplus(bf16_to_float(a[h]) + (double)o->weights->dt_bias[h]);
        double decay = exp(g), *S = o->state + (size_t)h * dk * dv;
        for (int32_t i = 0; i < dk * dv; i++) S[i] *= decay;
        if (spec->kind == GDN) {
            double beta = 1.0 / (1.0 + exp(-(double)bf16_to_float(b[h])));
            for (int32_t j = 0; j < dv; j++) {
                double recalled = 0.0;
                for (int32_t i = 0; i < dk; i++) recalled += S[i * dv + j] * kh[i];
                double u = beta * (vh[j] - recalled);
                for (int32_t i = 0; i < dk; i++) S[i * dv + j] += kh[i] * u;
            }
        } else {
            for (int32_t i = 0; i < dk; i++)
                for (int32_t j = 0; j < dv; j++) S[i * dv + j] += kh[i] * vh[j];
        }
        for (int32_t i = 0; i < dk * dv; i++) S[i] = round_to_float(S[i]);
        for (int32_t j = 0; j < dv; j++) {
            double o_j = 0.0;
            for (int32_t i = 0; i < dk; i++) o_j += S[i * dv + j] * qh[i];
            out[h * dv + j] = float_to_bf16((float)o_j);
        }
    }
    free(y);
}

/* The oracle's state in the slot layout: recurrent part as uint16/float bits, conv window as is. */
static uint8_t *oracle_state_bytes(const oracle *o)
{
    const layer_spec *spec = o->spec;
    uint64_t recurrent = spec_recurrent_bytes(spec);
    uint8_t *bytes = harness_alloc((size_t)(recurrent + spec_conv_bytes(spec)));
    size_t elems = (size_t)recurrent / spec_state_elem_bytes(spec);
    for (size_t i = 0; i < elems; i++) {
        if (spec->state_dtype == F32)
            ((float *)bytes)[i] = (float)o->state[i];
        else
            ((uint16_t *)bytes)[i] = float_to_bf16((float)o->state[i]);
    }
    memcpy(bytes + recurrent, o->window, (size_t)spec_conv_bytes(spec));
    return bytes;
}

/*
 * A sequence continues from a random state written with slot_write (so the slot layout is exercised both ways)
 * at an arbitrary position, over a prefill step and then decode steps; outputs and final state must match the
 * recomputation within bf16 precision, the conv window bitwise.
 */
CONFIG_PARAMETERS(matches_math_md)
ParameterizedTest(forward_config *config, forward_cpu, matches_math_md)
{
    harness_rng rng;
    model m = start(config, &rng);
    int32_t history = rng_int(&rng, 0, 9), prefill = rng_int(&rng, 1, 20), decode = rng_int(&rng, 1, 4);
    int64_t length = history + prefill + decode;
    seq_data data = seq_data_random(&m, length, &rng);
    seq_outputs got = seq_outputs_poisoned(&m, length), want = seq_outputs_poisoned(&m, length);
    int32_t slot = alloc_dirty(&m, &rng);

    oracle oracles[2];
    for (int32_t l = 0; l < m.num_layers; l++) {
        uint8_t *initial = model_read_state(&m, l, slot);
        oracles[l] = oracle_from_state(&m, l, initial);
        free(initial);
        const layer_spec *spec = &m.layers[l].spec;
        size_t channels = (size_t)spec_channels(spec), heads = (size_t)spec->num_v_heads;
        size_t width = (size_t)spec_out_width(spec);
        for (int64_t t = history; t < length; t++)
            oracle_token(&oracles[l], data.qkv[l] + (size_t)t * channels, data.a[l] + (size_t)t * heads,
                         data.b[l] + (size_t)t * heads, want.out[l] + (size_t)t * width);
    }

    model_step_one(&m, &data, &got, history, prefill, slot, LINATTN_INIT_CONTINUE, 0, &rng);
    for (int64_t t = history + prefill; t < length; t++)
        model_step_one(&m, &data, &got, t, 1, slot, LINATTN_INIT_CONTINUE, 0, &rng);

    for (int32_t l = 0; l < m.num_layers; l++) {
        const layer_spec *spec = &m.layers[l].spec;
        size_t width = (size_t)spec_out_width(spec);
        char what[96];
        snprintf(what, sizeof what, "outputs vs MATH.md (layer %d)", l);
        expect_bf16_close(got.out[l] + (size_t)history * width, want.out[l] + (size_t)history * width,
                          (size_t)(length - history) * width, 1e-2, what);

        uint8_t *state = model_read_state(&m, l, slot), *expected = oracle_state_bytes(&oracles[l]);
        uint64_t recurrent = spec_recurrent_bytes(spec);
        size_t elems = (size_t)recurrent / spec_state_elem_bytes(spec);
        double diff = 0.0, norm = 0.0;
        for (size_t i = 0; i < elems; i++) {
            double g = spec->state_dtype == F32 ? ((float *)state)[i] : bf16_to_float(((uint16_t *)state)[i]);
            diff += (g - oracles[l].state[i]) * (g - oracles[l].state[i]);
            norm += oracles[l].state[i] * oracles[l].state[i];
        }
        cr_assert(diff <= 1e-4 * norm, "recurrent state vs MATH.md (layer %d): relative error %.3g" HARNESS_TAG,
                  l, sqrt(diff / norm), HARNESS_TAG_ARGS);
        snprintf(what, sizeof what, "conv window vs MATH.md (layer %d)", l);
        expect_bytes_equal(state + recurrent, expected + recurrent, (size_t)spec_conv_bytes(spec), what);
        free(state);
        free(expected);
        free(oracles[l].state);
        free(oracles[l].window);
    }
    model_destroy(&m);
}
