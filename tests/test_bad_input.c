/*
 * test_bad_input.c — the bad-input matrix. Each row of `cases` is one invalid call and the status it must get.
 * Every row runs in a fresh fixture (a CPU context with two layers in a pool, four allocated slots holding
 * non-trivial state, a plan with a valid batch set, and poisoned output buffers) and checks the contract of
 * abi/linattn.h: the distinct status, a non-empty last_error_message, out-parameters untouched, and nothing
 * changed: every allocated slot's state bytes in every layer, pool_info, the context's stats, and the outputs.
 */
#include "support/harness.h"

enum { CAPACITY = 6, ALLOCATED = 4, MAX_SEQS = 4, MAX_CHECKPOINTS = 2, MAX_TOKENS = 64 };
enum { OUTSIDER = 2 }; /* index of the layer that is in no pool, beside the model's layers 0 and 1 */

static const layer_spec fixture_layers[] = {
    {LINATTN_LAYER_GATED_DELTANET, 2, 4, 16, 16, 4, 1, LINATTN_DTYPE_F32, 0.0f, 0},
    {LINATTN_LAYER_SIMPLE_GLA, 2, 2, 16, 8, 0, 0, LINATTN_DTYPE_BF16, 0.0f, 0},
};

typedef struct fixture {
    harness_rng rng;
    model m;
    layer_spec outsider_spec;
    layer_weights outsider_weights;
    linattn_layer *outsider;
    int32_t allocated[CAPACITY];
    int32_t num_allocated;
    linattn_seq_desc seqs[2]; /* the valid batch set on the plan */
    int64_t batch_tokens;
    /* Packed streams for layers 0, 1 and the outsider, MAX_TOKENS rows each. */
    uint16_t *qkv[3], *a[3], *b[3], *out[3];
    size_t out_count[3];
    /* Objects a case's prepare step makes (some destroyed again). */
    linattn_context *dead_context;
    linattn_layer *dead_layer, *dead_context_layer;
    linattn_pool *dead_pool, *dead_context_pool, *other_pool;
    linattn_plan *dead_plan, *dead_context_plan, *other_plan, *unset_plan;
} fixture;

static fixture fx;

static const layer_spec *spec_at(int32_t which)
{
    return which == OUTSIDER ? &fx.outsider_spec : &fx.m.layers[which].spec;
}

static linattn_layer *layer_at(int32_t which)
{
    return which == OUTSIDER ? fx.outsider : fx.m.layers[which].handle;
}

static void make_streams(void)
{
    for (int32_t w = 0; w < 3; w++) {
        const layer_spec *spec = spec_at(w);
        size_t qkv = (size_t)MAX_TOKENS * spec_channels(spec), gates = (size_t)MAX_TOKENS * spec->num_v_heads;
        fx.qkv[w] = harness_alloc(qkv * sizeof(uint16_t));
        fx.a[w] = harness_alloc(gates * sizeof(uint16_t));
        fx.b[w] = harness_alloc(gates * sizeof(uint16_t));
        fx.out_count[w] = (size_t)MAX_TOKENS * spec_out_width(spec);
        fx.out[w] = harness_alloc(fx.out_count[w] * sizeof(uint16_t));
        rng_fill_bf16(&fx.rng, fx.qkv[w], qkv, -1.0f, 1.0f);
        rng_fill_bf16(&fx.rng, fx.a[w], gates, -2.0f, 2.0f);
        rng_fill_bf16(&fx.rng, fx.b[w], gates, -2.0f, 2.0f);
        for (size_t i = 0; i < fx.out_count[w]; i++) fx.out[w][i] = HARNESS_POISON;
    }
}

static linattn_layer_desc good_layer_desc(void) { return layer_desc_of(&fx.outsider_spec, &fx.outsider_weights); }

static void setup(void)
{
    memset(&fx, 0, sizeof fx);
    fx.rng = rng_start();
    model_create(&fx.m, fixture_layers, HARNESS_COUNT(fixture_layers), CAPACITY,
                 plan_limits(MAX_SEQS, MAX_CHECKPOINTS, MAX_TOKENS), &fx.rng);
    fx.outsider_spec = fixture_layers[0];
    fx.outsider_weights = layer_weights_random(&fx.outsider_spec, &fx.rng);
    linattn_layer_desc desc = good_layer_desc();
    expect_ok(api()->layer_create(fx.m.context, &desc, &fx.outsider, NULL));

    for (int32_t s = 0; s < ALLOCATED; s++) {
        fx.allocated[fx.num_allocated++] = model_alloc(&fx.m);
        cr_assert_eq(fx.allocated[s], s, "the cases below name slots 0..3 as allocated, 4 and 5 as free");
    }
    /* Slots 0..2 hold the state of 8, 5 and 3 tokens; slot 3 random state. */
    seq_data data = seq_data_random(&fx.m, 8, &fx.rng);
    step_seq history[3] = {step_of(&data, NULL, 0, 8, 0, LINATTN_INIT_ZERO, 0),
                           step_of(&data, NULL, 0, 5, 1, LINATTN_INIT_ZERO, 0),
                           step_of(&data, NULL, 0, 3, 2, LINATTN_INIT_ZERO, 0)};
    model_step_packed(&fx.m, history, 3, &fx.rng);
    model_write_random_state(&fx.m, 3, &fx.rng);
    seq_data_free(&data);

    linattn_seq_desc seqs[2] = {{0, 8, 4, 0, LINATTN_INIT_CONTINUE, 0}, {4, 5, 3, 1, LINATTN_INIT_CONTINUE, 0}};
    memcpy(fx.seqs, seqs, sizeof seqs);
    fx.batch_tokens = 7;
    linattn_batch_desc batch = {sizeof batch, sizeof(linattn_seq_desc), sizeof(linattn_checkpoint_desc),
                                2,            fx.seqs,                  fx.batch_tokens,
                                0,            NULL};
    expect_ok(api()->plan_set_batch(fx.m.plan, &batch, NULL));
    make_streams();
}

static void teardown(void)
{
    /* Cases may have destroyed the fixture's own objects on purpose; only the context is ours to end. */
    api()->context_destroy(fx.m.context);
}

/* ------------------------------------------------------------------------------------------------------------
 * "Nothing changed": slot states, pool_info, stats, outputs
 * ---------------------------------------------------------------------------------------------------------- */

typedef struct snapshot {
    linattn_pool_info pool;
    linattn_stats stats;
    uint8_t *slots[CAPACITY];
    size_t bytes;
} snapshot;

static snapshot take_snapshot(void)
{
    snapshot s;
    memset(&s, 0, sizeof s);
    s.pool = pool_info_of(fx.m.pool);
    s.stats = context_stats(fx.m.context);
    for (int32_t i = 0; i < fx.num_allocated; i++) s.slots[i] = model_snapshot_slot(&fx.m, fx.allocated[i], &s.bytes);
    return s;
}

static void expect_snapshot_unchanged(const snapshot *before, const char *what)
{
    snapshot now = take_snapshot();
    char label[256];
    /* Field by field: the structs have padding the library need not keep. */
    cr_assert(now.pool.capacity == before->pool.capacity && now.pool.slots_in_use == before->pool.slots_in_use &&
                  now.pool.slot_bytes == before->pool.slot_bytes,
              "%s: pool_info changed" HARNESS_TAG, what, HARNESS_TAG_ARGS);
    const linattn_stats *a = &now.stats, *b = &before->stats;
    cr_assert(a->state_bytes_reserved == b->state_bytes_reserved && a->state_bytes_in_use == b->state_bytes_in_use &&
                  a->forward_calls == b->forward_calls && a->tokens_processed == b->tokens_processed &&
                  a->checkpoints_written == b->checkpoints_written &&
                  a->checkpoints_restored == b->checkpoints_restored,
              "%s: stats changed" HARNESS_TAG, what, HARNESS_TAG_ARGS);
    for (int32_t i = 0; i < fx.num_allocated; i++) {
        snprintf(label, sizeof label, "%s: state of slot %d", what, fx.allocated[i]);
        expect_bytes_equal(now.slots[i], before->slots[i], before->bytes, label);
        free(now.slots[i]);
    }
    for (int32_t w = 0; w < 3; w++)
        for (size_t i = 0; i < fx.out_count[w]; i++)
            cr_assert(fx.out[w][i] == HARNESS_POISON, "%s: output %zu of layer %d written" HARNESS_TAG, what, i, w,
                      HARNESS_TAG_ARGS);
}

/* Every out pointer a case passes starts as this and must still be it after the refused call. */
static char sentinel_object;
#define SENTINEL ((void *)&sentinel_object)

/* ------------------------------------------------------------------------------------------------------------
 * Calls with their out-parameters checked
 * ---------------------------------------------------------------------------------------------------------- */

static linattn_status try_context_create(const linattn_context_desc *desc)
{
    linattn_context *out = SENTINEL;
    linattn_status status = api()->context_create(desc, &out);
    cr_assert(out == SENTINEL, "context_create wrote out_context on error");
    return status;
}

static linattn_status try_layer_create_in(linattn_context *context, const linattn_layer_desc *desc)
{
    linattn_layer *out = SENTINEL;
    linattn_layer_info info, info_before;
    memset(&info, 0x5a, sizeof info);
    info.struct_size = sizeof info;
    info_before = info;
    linattn_status status = api()->layer_create(context, desc, &out, &info);
    cr_assert(out == SENTINEL, "layer_create wrote out_layer on error");
    cr_assert(memcmp(&info, &info_before, sizeof info) == 0, "layer_create wrote out_info on error");
    return status;
}

static linattn_status try_layer_create(const linattn_layer_desc *desc)
{
    return try_layer_create_in(fx.m.context, desc);
}

static linattn_status try_pool_create(linattn_context *context, const linattn_pool_desc *desc)
{
    linattn_pool *out = SENTINEL;
    linattn_status status = api()->pool_create(context, desc, &out);
    cr_assert(out == SENTINEL, "pool_create wrote out_pool on error");
    return status;
}

static linattn_pool_desc good_pool_desc(linattn_layer *const *layers, int32_t count)
{
    linattn_pool_desc desc = {sizeof desc, count, layers, 2, 0};
    return desc;
}

static linattn_status try_plan_create(linattn_pool *pool, const linattn_plan_desc *desc)
{
    linattn_plan *out = SENTINEL;
    linattn_status status = api()->plan_create(pool, desc, &out);
    cr_assert(out == SENTINEL, "plan_create wrote out_plan on error");
    return status;
}

static linattn_status try_slot_alloc(linattn_pool *pool)
{
    int32_t slot = -77;
    linattn_status status = api()->slot_alloc(pool, &slot);
    cr_assert(slot == -77, "slot_alloc wrote out_slot on error");
    return status;
}

static linattn_status try_slot_read(linattn_layer *layer, int32_t slot, uint64_t bytes)
{
    uint8_t buffer[8192];
    cr_assert(bytes <= sizeof buffer);
    memset(buffer, 0xab, sizeof buffer);
    linattn_status status = api()->slot_read(fx.m.pool, layer, slot, buffer, bytes, NULL);
    for (size_t i = 0; i < sizeof buffer; i++) cr_assert(buffer[i] == 0xab, "slot_read wrote its buffer on error");
    return status;
}

static linattn_status try_slot_write(linattn_layer *layer, int32_t slot, uint64_t bytes)
{
    uint8_t buffer[8192];
    cr_assert(bytes <= sizeof buffer);
    rng_fill_bf16(&fx.rng, (uint16_t *)buffer, sizeof buffer / 2, -1.0f, 1.0f);
    return api()->slot_write(fx.m.pool, layer, slot, buffer, bytes, NULL);
}

static uint64_t state_bytes(int32_t which) { return fx.m.layers[which].info.state_bytes; }

static linattn_status try_info_queries(int which_query, const void *handle, uint32_t struct_size)
{
    union {
        linattn_capabilities caps;
        linattn_layer_info layer;
        linattn_pool_info pool;
        linattn_stats stats;
    } result, before;
    memset(&result, 0x5a, sizeof result);
    result.caps.struct_size = struct_size;
    before = result;
    linattn_status status = LINATTN_OK;
    switch (which_query) {
    case 0: status = api()->query_capabilities(handle, &result.caps); break;
    case 1: status = api()->layer_info(handle, &result.layer); break;
    case 2: status = api()->pool_info(handle, &result.pool); break;
    default: status = api()->get_stats(handle, &result.stats); break;
    }
    cr_assert(memcmp(&result, &before, sizeof result) == 0, "query %d wrote its result on error", which_query);
    return status;
}

/* A batch as raw descriptors, starting from the fixture's valid one; pointers are set when it is submitted. */
typedef struct raw_batch {
    linattn_batch_desc desc;
    linattn_seq_desc seqs[MAX_SEQS + 2];
    linattn_checkpoint_desc checkpoints[MAX_CHECKPOINTS + 2];
} raw_batch;

static raw_batch base_batch(void)
{
    raw_batch b;
    memset(&b, 0, sizeof b);
    linattn_batch_desc desc = {sizeof desc, sizeof(linattn_seq_desc), sizeof(linattn_checkpoint_desc), 2, NULL,
                               fx.batch_tokens, 0, NULL};
    b.desc = desc;
    memcpy(b.seqs, fx.seqs, sizeof fx.seqs);
    return b;
}

/* Sequence 0 covers positions (8, 12]; its end, 12, is always a valid checkpoint position. */
static void add_checkpoint(raw_batch *b, int64_t position, int32_t seq_index, int32_t slot)
{
    linattn_checkpoint_desc checkpoint = {position, seq_index, slot};
    b->checkpoints[b->desc.num_checkpoints++] = checkpoint;
}

static void add_padding(raw_batch *b)
{
    linattn_seq_desc padding = {b->desc.num_tokens, 0, 0, LINATTN_SLOT_NONE, LINATTN_INIT_ZERO, 0};
    b->seqs[b->desc.num_seqs++] = padding;
}

static linattn_status submit(raw_batch *b)
{
    b->desc.seqs = b->seqs;
    b->desc.checkpoints = b->checkpoints;
    return api()->plan_set_batch(fx.m.plan, &b->desc, NULL);
}

static linattn_forward_args good_args(int32_t which)
{
    linattn_forward_args args = {sizeof args, LINATTN_DTYPE_BF16, fx.qkv[which], fx.a[which], fx.b[which],
                                 fx.out[which], 0, 0, 0, 0};
    return args;
}

static linattn_status try_forward(int32_t which, const linattn_plan *plan, const linattn_forward_args *args)
{
    return api()->forward(layer_at(which), plan, args, NULL);
}

/* ------------------------------------------------------------------------------------------------------------
 * Prepare steps: objects some cases need, made before the "nothing changed" snapshot
 * ---------------------------------------------------------------------------------------------------------- */

static void prepare_dead_layer(void)
{
    linattn_layer_desc desc = good_layer_desc();
    expect_ok(api()->layer_create(fx.m.context, &desc, &fx.dead_layer, NULL));
    expect_ok(api()->layer_destroy(fx.dead_layer));
}

static void prepare_dead_pool(void)
{
    linattn_pool_desc desc = good_pool_desc(&fx.outsider, 1);
    expect_ok(api()->pool_create(fx.m.context, &desc, &fx.dead_pool));
    expect_ok(api()->pool_destroy(fx.dead_pool));
}

static void prepare_dead_plan(void)
{
    linattn_plan_desc limits = plan_limits(2, 1, 8);
    expect_ok(api()->plan_create(fx.m.pool, &limits, &fx.dead_plan));
    expect_ok(api()->plan_destroy(fx.dead_plan));
}

static void prepare_dead_context(void)
{
    fx.dead_context = cpu_context();
    linattn_layer_desc desc = good_layer_desc();
    expect_ok(api()->layer_create(fx.dead_context, &desc, &fx.dead_context_layer, NULL));
    linattn_pool_desc pool_desc = good_pool_desc(&fx.dead_context_layer, 1);
    expect_ok(api()->pool_create(fx.dead_context, &pool_desc, &fx.dead_context_pool));
    linattn_plan_desc limits = plan_limits(2, 1, 8);
    expect_ok(api()->plan_create(fx.dead_context_pool, &limits, &fx.dead_context_plan));
    expect_ok(api()->context_destroy(fx.dead_context));
}

/* A pool over the outsider layer only, and a plan on it. */
static void prepare_other_pool(void)
{
    linattn_pool_desc desc = good_pool_desc(&fx.outsider, 1);
    expect_ok(api()->pool_create(fx.m.context, &desc, &fx.other_pool));
    linattn_plan_desc limits = plan_limits(2, 1, 8);
    expect_ok(api()->plan_create(fx.other_pool, &limits, &fx.other_plan));
    linattn_seq_desc unused;
    linattn_batch_desc empty = {sizeof empty, sizeof unused, sizeof(linattn_checkpoint_desc), 0, &unused, 0, 0, NULL};
    expect_ok(api()->plan_set_batch(fx.other_plan, &empty, NULL));
}

static void prepare_unset_plan(void)
{
    linattn_plan_desc limits = plan_limits(2, 1, 8);
    expect_ok(api()->plan_create(fx.m.pool, &limits, &fx.unset_plan));
}

/* Free the last allocated slot, so the case can use it as a freed one. */
static void prepare_free_slot3(void)
{
    expect_ok(api()->slot_free(fx.m.pool, fx.allocated[--fx.num_allocated]));
}

static void prepare_fill_pool(void)
{
    while (fx.num_allocated < CAPACITY) fx.allocated[fx.num_allocated++] = model_alloc(&fx.m);
}

/* ------------------------------------------------------------------------------------------------------------
 * The cases
 * ---------------------------------------------------------------------------------------------------------- */

/* Each case is a function making one refused call (its out-parameters checked) and returning its status. */
#define ACT(name, ...)                                                                                             \
    static linattn_status name(void) { __VA_ARGS__ }
/* A valid layer descriptor, batch (the fixture's) or forward_args with one thing changed. */
#define LAYER_ACT(name, ...)                                                                                       \
    ACT(name, linattn_layer_desc d = good_layer_desc(); __VA_ARGS__; return try_layer_create(&d);)
#define BATCH_ACT(name, ...) ACT(name, raw_batch b = base_batch(); __VA_ARGS__; return submit(&b);)
#define FORWARD_ACT(name, which, ...)                                                                              \
    ACT(name, linattn_forward_args args = good_args(which); __VA_ARGS__;                                         \
        return try_forward(which, fx.m.plan, &args);)

static const uint32_t too_small = 4; /* only struct_size itself */

/* context_create */
ACT(ctx_null_desc, return try_context_create(NULL);)
ACT(ctx_null_out, linattn_context_desc d = {sizeof d, LINATTN_BACKEND_CPU, 0};
    return api()->context_create(&d, NULL);)
ACT(ctx_size_small, linattn_context_desc d = {too_small, LINATTN_BACKEND_CPU, 0}; return try_context_create(&d);)
ACT(ctx_size_large, linattn_context_desc d = {sizeof d + 8, LINATTN_BACKEND_CPU, 0};
    return try_context_create(&d);)
ACT(ctx_bad_backend, linattn_context_desc d = {sizeof d, 77, 0}; return try_context_create(&d);)

/* layer_create */
ACT(layer_null_desc, return try_layer_create(NULL);)
ACT(layer_null_out, linattn_layer_desc d = good_layer_desc(); return api()->layer_create(fx.m.context, &d, NULL, NULL);)
ACT(layer_null_context, linattn_layer_desc d = good_layer_desc(); return try_layer_create_in(NULL, &d);)
LAYER_ACT(layer_size_small, d.struct_size = too_small)
LAYER_ACT(layer_size_large, d.struct_size = sizeof d + 8)
ACT(layer_info_size_bad, linattn_layer_desc d = good_layer_desc(); linattn_layer *out = SENTINEL;
    linattn_layer_info info = {sizeof info + 8, 0, 0, 0};
    linattn_status status = api()->layer_create(fx.m.context, &d, &out, &info);
    cr_assert(out == SENTINEL, "layer_create wrote out_layer on error"); return status;)
LAYER_ACT(layer_kind_zero, d.kind = 0)
LAYER_ACT(layer_kind_three, d.kind = 3)
LAYER_ACT(layer_v_not_multiple, d.num_qk_heads = 2; d.num_v_heads = 3)
LAYER_ACT(layer_v_fewer_than_qk, d.num_qk_heads = 4; d.num_v_heads = 2)
LAYER_ACT(layer_qk_heads_zero, d.num_qk_heads = 0)
LAYER_ACT(layer_v_heads_zero, d.num_v_heads = 0)
LAYER_ACT(layer_dk_zero, d.head_dim_qk = 0)
LAYER_ACT(layer_dk_257, d.head_dim_qk = 257)
LAYER_ACT(layer_dk_negative, d.head_dim_qk = -16)
LAYER_ACT(layer_dv_zero, d.head_dim_v = 0)
LAYER_ACT(layer_dv_257, d.head_dim_v = 257)
LAYER_ACT(layer_conv_width_one, d.conv_width = 1)
LAYER_ACT(layer_conv_width_nine, d.conv_width = 9)
LAYER_ACT(layer_dtype_zero, d.state_dtype = 0)
LAYER_ACT(layer_dtype_three, d.state_dtype = 3)
LAYER_ACT(layer_null_A_log, d.A_log = NULL)
LAYER_ACT(layer_null_conv_weight, d.conv_weight = NULL)
LAYER_ACT(layer_negative_scale, d.scale = -1.0f)
ACT(layer_nan_weight, layer_weights w = layer_weights_random(&fx.outsider_spec, &fx.rng); w.A_log[1] = NAN;
    linattn_layer_desc d = layer_desc_of(&fx.outsider_spec, &w); return try_layer_create(&d);)
ACT(layer_dead_context, linattn_layer_desc d = good_layer_desc(); return try_layer_create_in(fx.dead_context, &d);)

/* layer_destroy / layer_info */
ACT(layer_destroy_in_use, return api()->layer_destroy(fx.m.layers[1].handle);)
ACT(layer_destroy_twice, return api()->layer_destroy(fx.dead_layer);)
ACT(layer_info_dead, return try_info_queries(1, fx.dead_layer, sizeof(linattn_layer_info));)
ACT(layer_info_dead_context, return try_info_queries(1, fx.dead_context_layer, sizeof(linattn_layer_info));)
ACT(layer_info_never_created, static linattn_layer_info fake; return try_info_queries(1, &fake, sizeof fake);)
ACT(layer_info_wrong_kind, return try_info_queries(1, fx.m.pool, sizeof(linattn_layer_info));)
ACT(layer_info_null, return api()->layer_info(fx.m.layers[0].handle, NULL);)
ACT(layer_info_size_small, return try_info_queries(1, fx.m.layers[0].handle, too_small);)

/* pool_create / pool_destroy / pool_info */
ACT(pool_null_desc, return try_pool_create(fx.m.context, NULL);)
ACT(pool_null_layers, linattn_pool_desc d = good_pool_desc(NULL, 1); return try_pool_create(fx.m.context, &d);)
ACT(pool_null_out, linattn_pool_desc d = good_pool_desc(&fx.outsider, 1);
    return api()->pool_create(fx.m.context, &d, NULL);)
ACT(pool_size_small, linattn_pool_desc d = good_pool_desc(&fx.outsider, 1); d.struct_size = too_small;
    return try_pool_create(fx.m.context, &d);)
ACT(pool_size_large, linattn_pool_desc d = good_pool_desc(&fx.outsider, 1); d.struct_size = sizeof d + 8;
    return try_pool_create(fx.m.context, &d);)
ACT(pool_no_layers, linattn_pool_desc d = good_pool_desc(&fx.outsider, 0); return try_pool_create(fx.m.context, &d);)
ACT(pool_dead_layer, linattn_pool_desc d = good_pool_desc(&fx.dead_layer, 1);
    return try_pool_create(fx.m.context, &d);)
ACT(pool_layer_twice, linattn_layer *twice[2] = {fx.outsider, fx.outsider};
    linattn_pool_desc d = good_pool_desc(twice, 2); return try_pool_create(fx.m.context, &d);)
ACT(pool_negative_capacity, linattn_pool_desc d = good_pool_desc(&fx.outsider, 1); d.capacity = -1;
    return try_pool_create(fx.m.context, &d);)
ACT(pool_budget_below_one_slot, linattn_pool_desc d = good_pool_desc(&fx.outsider, 1); d.capacity = 0;
    d.byte_budget = state_bytes(0) - 1; return try_pool_create(fx.m.context, &d);)
ACT(pool_dead_context, linattn_pool_desc d = good_pool_desc(&fx.outsider, 1);
    return try_pool_create(fx.dead_context, &d);)
ACT(pool_destroy_in_use, return api()->pool_destroy(fx.m.pool);)
ACT(pool_destroy_twice, return api()->pool_destroy(fx.dead_pool);)
ACT(pool_info_dead, return try_info_queries(2, fx.dead_pool, sizeof(linattn_pool_info));)
ACT(pool_info_dead_context, return try_info_queries(2, fx.dead_context_pool, sizeof(linattn_pool_info));)
ACT(pool_info_null, return api()->pool_info(fx.m.pool, NULL);)
ACT(pool_info_size_large, return try_info_queries(2, fx.m.pool, sizeof(linattn_pool_info) + 8);)

/* slots */
ACT(alloc_null_out, return api()->slot_alloc(fx.m.pool, NULL);)
ACT(alloc_exhausted, return try_slot_alloc(fx.m.pool);)
ACT(alloc_dead_pool, return try_slot_alloc(fx.dead_pool);)
ACT(alloc_dead_context_pool, return try_slot_alloc(fx.dead_context_pool);)
ACT(free_out_of_range, return api()->slot_free(fx.m.pool, CAPACITY);)
ACT(free_negative, return api()->slot_free(fx.m.pool, -1);)
ACT(free_twice, return api()->slot_free(fx.m.pool, 3);)
ACT(free_never_allocated, return api()->slot_free(fx.m.pool, CAPACITY - 1);)
ACT(copy_dst_free, return api()->slot_copy(fx.m.pool, 4, 0, NULL);)
ACT(copy_src_free, return api()->slot_copy(fx.m.pool, 0, 5, NULL);)
ACT(copy_dst_out_of_range, return api()->slot_copy(fx.m.pool, CAPACITY, 0, NULL);)
ACT(copy_src_out_of_range, return api()->slot_copy(fx.m.pool, 0, -3, NULL);)
ACT(copy_onto_itself, return api()->slot_copy(fx.m.pool, 1, 1, NULL);)
ACT(zero_free, return api()->slot_zero(fx.m.pool, 4, NULL);)
ACT(zero_out_of_range, return api()->slot_zero(fx.m.pool, CAPACITY + 3, NULL);)
ACT(zero_dead_pool, return api()->slot_zero(fx.dead_pool, 0, NULL);)
ACT(read_null_dst, return api()->slot_read(fx.m.pool, fx.m.layers[0].handle, 0, NULL, state_bytes(0), NULL);)
ACT(read_small_buffer, return try_slot_read(fx.m.layers[0].handle, 0, state_bytes(0) - 1);)
ACT(read_out_of_range, return try_slot_read(fx.m.layers[0].handle, CAPACITY, state_bytes(0));)
ACT(read_free_slot, return try_slot_read(fx.m.layers[1].handle, 4, state_bytes(1));)
ACT(read_outsider, return try_slot_read(fx.outsider, 0, state_bytes(0));)
ACT(read_dead_layer, return try_slot_read(fx.dead_layer, 0, state_bytes(0));)
ACT(write_null_src, return api()->slot_write(fx.m.pool, fx.m.layers[0].handle, 0, NULL, state_bytes(0), NULL);)
ACT(write_small_buffer, return try_slot_write(fx.m.layers[1].handle, 2, state_bytes(1) - 1);)
ACT(write_out_of_range, return try_slot_write(fx.m.layers[0].handle, -1, state_bytes(0));)
ACT(write_free_slot, return try_slot_write(fx.m.layers[0].handle, 5, state_bytes(0));)
ACT(write_outsider, return try_slot_write(fx.outsider, 1, state_bytes(0));)

/* plan_create / plan_destroy */
ACT(plan_null_desc, return try_plan_create(fx.m.pool, NULL);)
ACT(plan_null_out, linattn_plan_desc d = plan_limits(2, 1, 8); return api()->plan_create(fx.m.pool, &d, NULL);)
ACT(plan_size_small, linattn_plan_desc d = plan_limits(2, 1, 8); d.struct_size = too_small;
    return try_plan_create(fx.m.pool, &d);)
ACT(plan_size_large, linattn_plan_desc d = plan_limits(2, 1, 8); d.struct_size = sizeof d + 8;
    return try_plan_create(fx.m.pool, &d);)
ACT(plan_no_seqs, linattn_plan_desc d = plan_limits(0, 1, 8); return try_plan_create(fx.m.pool, &d);)
ACT(plan_dead_pool, linattn_plan_desc d = plan_limits(2, 1, 8); return try_plan_create(fx.dead_pool, &d);)
ACT(plan_destroy_twice, return api()->plan_destroy(fx.dead_plan);)
ACT(plan_destroy_dead_context, return api()->plan_destroy(fx.dead_context_plan);)

/* plan_set_batch */
ACT(batch_null, return api()->plan_set_batch(fx.m.plan, NULL, NULL);)
ACT(batch_null_seqs, raw_batch b = base_batch(); return api()->plan_set_batch(fx.m.plan, &b.desc, NULL);)
ACT(batch_null_checkpoints, raw_batch b = base_batch(); add_checkpoint(&b, 12, 0, 3); b.desc.seqs = b.seqs;
    return api()->plan_set_batch(fx.m.plan, &b.desc, NULL);)
ACT(batch_dead_plan, raw_batch b = base_batch(); b.desc.seqs = b.seqs;
    return api()->plan_set_batch(fx.dead_plan, &b.desc, NULL);)
ACT(batch_dead_context_plan, raw_batch b = base_batch(); b.desc.seqs = b.seqs;
    return api()->plan_set_batch(fx.dead_context_plan, &b.desc, NULL);)
BATCH_ACT(batch_size_small, b.desc.struct_size = too_small)
BATCH_ACT(batch_size_large, b.desc.struct_size = sizeof b.desc + 8)
BATCH_ACT(batch_seq_size_small, b.desc.seq_desc_size = sizeof(linattn_seq_desc) - 8)
BATCH_ACT(batch_seq_size_large, b.desc.seq_desc_size = sizeof(linattn_seq_desc) + 8)
BATCH_ACT(batch_checkpoint_size_bad, add_checkpoint(&b, 12, 0, 3);
          b.desc.checkpoint_desc_size = sizeof(linattn_checkpoint_desc) + 8)
BATCH_ACT(batch_negative_seqs, b.desc.num_seqs = -1)
BATCH_ACT(batch_overlap, b.seqs[1].token_offset = 2)
BATCH_ACT(batch_past_stream, b.seqs[1].token_offset = 5)
BATCH_ACT(batch_stream_short, b.desc.num_tokens = 6)
BATCH_ACT(batch_negative_offset, b.seqs[0].token_offset = -1)
BATCH_ACT(batch_same_slot_twice, b.seqs[1].state_slot = 0)
BATCH_ACT(batch_checkpoint_on_written_slot, add_checkpoint(&b, 12, 0, 1))
BATCH_ACT(batch_checkpoint_on_own_slot, add_checkpoint(&b, 12, 0, 0))
BATCH_ACT(batch_two_checkpoints_one_slot, add_checkpoint(&b, 12, 0, 3); add_checkpoint(&b, 8, 1, 3))
BATCH_ACT(batch_source_written, b.seqs[1].init = LINATTN_INIT_FROM_SLOT; b.seqs[1].source_slot = 0)
BATCH_ACT(batch_source_is_checkpoint, b.seqs[1].init = LINATTN_INIT_FROM_SLOT; b.seqs[1].source_slot = 2;
          add_checkpoint(&b, 12, 0, 2))
BATCH_ACT(batch_slot_out_of_range, b.seqs[1].state_slot = CAPACITY)
BATCH_ACT(batch_slot_negative, b.seqs[1].state_slot = -2)
BATCH_ACT(batch_slot_free, b.seqs[1].state_slot = 4)
BATCH_ACT(batch_source_free, b.seqs[1].init = LINATTN_INIT_FROM_SLOT; b.seqs[1].source_slot = 5)
BATCH_ACT(batch_source_out_of_range, b.seqs[1].init = LINATTN_INIT_FROM_SLOT; b.seqs[1].source_slot = 99)
BATCH_ACT(batch_checkpoint_slot_free, add_checkpoint(&b, 12, 0, 4))
BATCH_ACT(batch_checkpoint_slot_out_of_range, add_checkpoint(&b, 12, 0, CAPACITY))
BATCH_ACT(batch_checkpoint_at_start, add_checkpoint(&b, 8, 0, 3))
BATCH_ACT(batch_checkpoint_past_end, add_checkpoint(&b, 13, 0, 3))
BATCH_ACT(batch_checkpoint_at_zero, add_checkpoint(&b, 0, 0, 3))
ACT(batch_checkpoint_misaligned, int64_t align = fx.m.checkpoint_alignment;
    if (align < 2) cr_skip_test("checkpoint_alignment is 1: every position is aligned");
    int64_t position = 9; while (position % align == 0) position++;
    cr_assert(position < 12, "test bug: no misaligned position inside (8, 12)");
    raw_batch b = base_batch(); add_checkpoint(&b, position, 0, 3); return submit(&b);)
BATCH_ACT(batch_checkpoint_seq_out_of_range, add_checkpoint(&b, 12, 2, 3))
BATCH_ACT(batch_checkpoint_on_padding, add_padding(&b); add_checkpoint(&b, 1, 2, 3))
BATCH_ACT(batch_zero_init_mid_sequence, b.seqs[0].init = LINATTN_INIT_ZERO)
BATCH_ACT(batch_unknown_init, b.seqs[1].init = 7)
BATCH_ACT(batch_too_many_seqs, add_padding(&b); add_padding(&b); add_padding(&b))
BATCH_ACT(batch_too_many_tokens, b.desc.num_tokens = MAX_TOKENS + 1)
BATCH_ACT(batch_too_many_checkpoints, add_checkpoint(&b, 12, 0, 3); add_checkpoint(&b, 8, 1, 2);
          add_checkpoint(&b, 12, 0, 2))

/* forward */
ACT(fwd_null_args, return try_forward(0, fx.m.plan, NULL);)
ACT(fwd_null_layer, linattn_forward_args args = good_args(0); return api()->forward(NULL, fx.m.plan, &args, NULL);)
ACT(fwd_null_plan, linattn_forward_args args = good_args(0); return try_forward(0, NULL, &args);)
FORWARD_ACT(fwd_null_qkv, 0, args.qkv = NULL)
FORWARD_ACT(fwd_null_out, 1, args.out = NULL)
FORWARD_ACT(fwd_gdn_null_a, 0, args.a = NULL)
FORWARD_ACT(fwd_gdn_null_b, 0, args.b = NULL)
FORWARD_ACT(fwd_f32_activations, 0, args.activation_dtype = LINATTN_DTYPE_F32)
FORWARD_ACT(fwd_dtype_zero, 1, args.activation_dtype = 0)
FORWARD_ACT(fwd_size_small, 0, args.struct_size = too_small)
FORWARD_ACT(fwd_size_large, 1, args.struct_size = sizeof args + 8)
FORWARD_ACT(fwd_qkv_stride_short, 0, args.qkv_row_stride = spec_channels(spec_at(0)) - 1)
FORWARD_ACT(fwd_out_stride_short, 1, args.out_row_stride = spec_out_width(spec_at(1)) - 1)
FORWARD_ACT(fwd_outsider_layer, OUTSIDER, (void)args)
ACT(fwd_plan_of_other_pool, linattn_forward_args args = good_args(0); return try_forward(0, fx.other_plan, &args);)
ACT(fwd_plan_without_batch, linattn_forward_args args = good_args(0);
    return try_forward(0, fx.unset_plan, &args);)
ACT(fwd_dead_layer, linattn_forward_args args = good_args(0);
    return api()->forward(fx.dead_layer, fx.m.plan, &args, NULL);)
ACT(fwd_dead_plan, linattn_forward_args args = good_args(0); return try_forward(0, fx.dead_plan, &args);)
ACT(fwd_dead_context, linattn_forward_args args = good_args(0);
    return api()->forward(fx.dead_context_layer, fx.dead_context_plan, &args, NULL);)
ACT(fwd_never_created_layer, static char fake[64]; linattn_forward_args args = good_args(0);
    return api()->forward((linattn_layer *)(void *)fake, fx.m.plan, &args, NULL);)
ACT(fwd_plan_as_layer, linattn_forward_args args = good_args(0);
    return api()->forward((linattn_layer *)(void *)fx.m.plan, fx.m.plan, &args, NULL);)

/* context queries and destroy */
ACT(caps_null, return api()->query_capabilities(fx.m.context, NULL);)
ACT(caps_size_small, return try_info_queries(0, fx.m.context, too_small);)
ACT(caps_dead_context, return try_info_queries(0, fx.dead_context, sizeof(linattn_capabilities));)
ACT(stats_null, return api()->get_stats(fx.m.context, NULL);)
ACT(stats_size_small, return try_info_queries(3, fx.m.context, too_small);)
ACT(stats_size_large, return try_info_queries(3, fx.m.context, sizeof(linattn_stats) + 8);)
ACT(stats_dead_context, return try_info_queries(3, fx.dead_context, sizeof(linattn_stats));)
ACT(ctx_destroy_twice, return api()->context_destroy(fx.dead_context);)
ACT(ctx_destroy_wrong_kind, return api()->context_destroy((linattn_context *)(void *)fx.m.pool);)

typedef struct bad_case {
    const char *what;
    linattn_status expected;
    void (*prepare)(void);
    linattn_status (*act)(void);
} bad_case;

#define NULL_ARG LINATTN_ERR_NULL_ARGUMENT
#define SIZE LINATTN_ERR_STRUCT_SIZE
#define HANDLE LINATTN_ERR_INVALID_HANDLE
#define LAYER_KIND LINATTN_ERR_UNKNOWN_LAYER_KIND
#define SHAPE LINATTN_ERR_INVALID_SHAPE
#define DTYPE LINATTN_ERR_UNSUPPORTED_DTYPE
#define RANGE LINATTN_ERR_SLOT_OUT_OF_RANGE
#define FREE LINATTN_ERR_SLOT_NOT_ALLOCATED
#define CONFLICT LINATTN_ERR_SLOT_CONFLICT
#define EXHAUSTED LINATTN_ERR_POOL_EXHAUSTED
#define TOKENS LINATTN_ERR_TOKEN_RANGE
#define POSITION LINATTN_ERR_CHECKPOINT_POSITION
#define PLAN_FULL LINATTN_ERR_PLAN_CAPACITY
#define NOT_IN_POOL LINATTN_ERR_LAYER_NOT_IN_POOL
#define IN_USE LINATTN_ERR_IN_USE
#define INVALID LINATTN_ERR_INVALID_ARGUMENT
#define SMALL LINATTN_ERR_BUFFER_TOO_SMALL

static const bad_case cases[] = {
    {"context_create: NULL desc", NULL_ARG, NULL, ctx_null_desc},
    {"context_create: NULL out", NULL_ARG, NULL, ctx_null_out},
    {"context_create: struct_size too small", SIZE, NULL, ctx_size_small},
    {"context_create: struct_size too large", SIZE, NULL, ctx_size_large},
    {"context_create: unknown backend", INVALID, NULL, ctx_bad_backend},
    {"layer_create: NULL desc", NULL_ARG, NULL, layer_null_desc},
    {"layer_create: NULL out", NULL_ARG, NULL, layer_null_out},
    {"layer_create: NULL context", NULL_ARG, NULL, layer_null_context},
    {"layer_create: struct_size too small", SIZE, NULL, layer_size_small},
    {"layer_create: struct_size too large", SIZE, NULL, layer_size_large},
    {"layer_create: out_info struct_size too large", SIZE, NULL, layer_info_size_bad},
    {"layer_create: kind 0", LAYER_KIND, NULL, layer_kind_zero},
    {"layer_create: kind 3", LAYER_KIND, NULL, layer_kind_three},
    {"layer_create: 3 v heads over 2 q/k heads", SHAPE, NULL, layer_v_not_multiple},
    {"layer_create: 2 v heads over 4 q/k heads", SHAPE, NULL, layer_v_fewer_than_qk},
    {"layer_create: 0 q/k heads", SHAPE, NULL, layer_qk_heads_zero},
    {"layer_create: 0 v heads", SHAPE, NULL, layer_v_heads_zero},
    {"layer_create: head_dim_qk 0", SHAPE, NULL, layer_dk_zero},
    {"layer_create: head_dim_qk 257", SHAPE, NULL, layer_dk_257},
    {"layer_create: head_dim_qk negative", SHAPE, NULL, layer_dk_negative},
    {"layer_create: head_dim_v 0", SHAPE, NULL, layer_dv_zero},
    {"layer_create: head_dim_v 257", SHAPE, NULL, layer_dv_257},
    {"layer_create: conv_width 1", SHAPE, NULL, layer_conv_width_one},
    {"layer_create: conv_width 9", SHAPE, NULL, layer_conv_width_nine},
    {"layer_create: state dtype 0", DTYPE, NULL, layer_dtype_zero},
    {"layer_create: state dtype 3", DTYPE, NULL, layer_dtype_three},
    {"layer_create: NULL A_log", NULL_ARG, NULL, layer_null_A_log},
    {"layer_create: NULL conv_weight with conv_width 4", NULL_ARG, NULL, layer_null_conv_weight},
    {"layer_create: negative scale", INVALID, NULL, layer_negative_scale},
    {"layer_create: NaN weight", INVALID, NULL, layer_nan_weight},
    {"layer_create: destroyed context", HANDLE, prepare_dead_context, layer_dead_context},
    {"layer_destroy: layer used by a pool", IN_USE, NULL, layer_destroy_in_use},
    {"layer_destroy: destroyed layer", HANDLE, prepare_dead_layer, layer_destroy_twice},
    {"layer_info: destroyed layer", HANDLE, prepare_dead_layer, layer_info_dead},
    {"layer_info: layer of a destroyed context", HANDLE, prepare_dead_context, layer_info_dead_context},
    {"layer_info: never-created handle", HANDLE, NULL, layer_info_never_created},
    {"layer_info: a pool handle", HANDLE, NULL, layer_info_wrong_kind},
    {"layer_info: NULL info", NULL_ARG, NULL, layer_info_null},
    {"layer_info: struct_size too small", SIZE, NULL, layer_info_size_small},
    {"pool_create: NULL desc", NULL_ARG, NULL, pool_null_desc},
    {"pool_create: NULL layers", NULL_ARG, NULL, pool_null_layers},
    {"pool_create: NULL out", NULL_ARG, NULL, pool_null_out},
    {"pool_create: struct_size too small", SIZE, NULL, pool_size_small},
    {"pool_create: struct_size too large", SIZE, NULL, pool_size_large},
    {"pool_create: no layers", INVALID, NULL, pool_no_layers},
    {"pool_create: destroyed layer", HANDLE, prepare_dead_layer, pool_dead_layer},
    {"pool_create: one layer twice", INVALID, NULL, pool_layer_twice},
    {"pool_create: negative capacity", INVALID, NULL, pool_negative_capacity},
    {"pool_create: byte budget below one slot", INVALID, NULL, pool_budget_below_one_slot},
    {"pool_create: destroyed context", HANDLE, prepare_dead_context, pool_dead_context},
    {"pool_destroy: pool used by a plan", IN_USE, NULL, pool_destroy_in_use},
    {"pool_destroy: destroyed pool", HANDLE, prepare_dead_pool, pool_destroy_twice},
    {"pool_info: destroyed pool", HANDLE, prepare_dead_pool, pool_info_dead},
    {"pool_info: pool of a destroyed context", HANDLE, prepare_dead_context, pool_info_dead_context},
    {"pool_info: NULL info", NULL_ARG, NULL, pool_info_null},
    {"pool_info: struct_size too large", SIZE, NULL, pool_info_size_large},
    {"slot_alloc: NULL out", NULL_ARG, NULL, alloc_null_out},
    {"slot_alloc: pool exhausted", EXHAUSTED, prepare_fill_pool, alloc_exhausted},
    {"slot_alloc: destroyed pool", HANDLE, prepare_dead_pool, alloc_dead_pool},
    {"slot_alloc: pool of a destroyed context", HANDLE, prepare_dead_context, alloc_dead_context_pool},
    {"slot_free: slot == capacity", RANGE, NULL, free_out_of_range},
    {"slot_free: slot -1", RANGE, NULL, free_negative},
    {"slot_free: freed twice", FREE, prepare_free_slot3, free_twice},
    {"slot_free: never allocated", FREE, NULL, free_never_allocated},
    {"slot_copy: free destination", FREE, NULL, copy_dst_free},
    {"slot_copy: free source", FREE, NULL, copy_src_free},
    {"slot_copy: destination out of range", RANGE, NULL, copy_dst_out_of_range},
    {"slot_copy: source out of range", RANGE, NULL, copy_src_out_of_range},
    {"slot_copy: onto itself", INVALID, NULL, copy_onto_itself},
    {"slot_zero: free slot", FREE, NULL, zero_free},
    {"slot_zero: out of range", RANGE, NULL, zero_out_of_range},
    {"slot_zero: destroyed pool", HANDLE, prepare_dead_pool, zero_dead_pool},
    {"slot_read: NULL destination", NULL_ARG, NULL, read_null_dst},
    {"slot_read: buffer one byte short", SMALL, NULL, read_small_buffer},
    {"slot_read: out of range", RANGE, NULL, read_out_of_range},
    {"slot_read: free slot", FREE, NULL, read_free_slot},
    {"slot_read: layer not in the pool", NOT_IN_POOL, NULL, read_outsider},
    {"slot_read: destroyed layer", HANDLE, prepare_dead_layer, read_dead_layer},
    {"slot_write: NULL source", NULL_ARG, NULL, write_null_src},
    {"slot_write: buffer one byte short", SMALL, NULL, write_small_buffer},
    {"slot_write: slot -1", RANGE, NULL, write_out_of_range},
    {"slot_write: free slot", FREE, NULL, write_free_slot},
    {"slot_write: layer not in the pool", NOT_IN_POOL, NULL, write_outsider},
    {"plan_create: NULL desc", NULL_ARG, NULL, plan_null_desc},
    {"plan_create: NULL out", NULL_ARG, NULL, plan_null_out},
    {"plan_create: struct_size too small", SIZE, NULL, plan_size_small},
    {"plan_create: struct_size too large", SIZE, NULL, plan_size_large},
    {"plan_create: max_seqs 0", INVALID, NULL, plan_no_seqs},
    {"plan_create: destroyed pool", HANDLE, prepare_dead_pool, plan_dead_pool},
    {"plan_destroy: destroyed plan", HANDLE, prepare_dead_plan, plan_destroy_twice},
    {"plan_destroy: plan of a destroyed context", HANDLE, prepare_dead_context, plan_destroy_dead_context},
    {"plan_set_batch: NULL batch", NULL_ARG, NULL, batch_null},
    {"plan_set_batch: NULL seqs", NULL_ARG, NULL, batch_null_seqs},
    {"plan_set_batch: NULL checkpoints", NULL_ARG, NULL, batch_null_checkpoints},
    {"plan_set_batch: destroyed plan", HANDLE, prepare_dead_plan, batch_dead_plan},
    {"plan_set_batch: plan of a destroyed context", HANDLE, prepare_dead_context, batch_dead_context_plan},
    {"plan_set_batch: struct_size too small", SIZE, NULL, batch_size_small},
    {"plan_set_batch: struct_size too large", SIZE, NULL, batch_size_large},
    {"plan_set_batch: seq_desc_size too small", SIZE, NULL, batch_seq_size_small},
    {"plan_set_batch: seq_desc_size too large", SIZE, NULL, batch_seq_size_large},
    {"plan_set_batch: checkpoint_desc_size unknown", SIZE, NULL, batch_checkpoint_size_bad},
    {"plan_set_batch: negative num_seqs", INVALID, NULL, batch_negative_seqs},
    {"plan_set_batch: overlapping token ranges", TOKENS, NULL, batch_overlap},
    {"plan_set_batch: tokens past the stream", TOKENS, NULL, batch_past_stream},
    {"plan_set_batch: stream shorter than its sequences", TOKENS, NULL, batch_stream_short},
    {"plan_set_batch: negative token offset", TOKENS, NULL, batch_negative_offset},
    {"plan_set_batch: two sequences write one slot", CONFLICT, NULL, batch_same_slot_twice},
    {"plan_set_batch: checkpoint slot is another sequence's slot", CONFLICT, NULL, batch_checkpoint_on_written_slot},
    {"plan_set_batch: checkpoint slot is its sequence's slot", CONFLICT, NULL, batch_checkpoint_on_own_slot},
    {"plan_set_batch: two checkpoints write one slot", CONFLICT, NULL, batch_two_checkpoints_one_slot},
    {"plan_set_batch: FROM_SLOT source written by another sequence", CONFLICT, NULL, batch_source_written},
    {"plan_set_batch: FROM_SLOT source written by a checkpoint", CONFLICT, NULL, batch_source_is_checkpoint},
    {"plan_set_batch: state slot == capacity", RANGE, NULL, batch_slot_out_of_range},
    {"plan_set_batch: state slot -2", RANGE, NULL, batch_slot_negative},
    {"plan_set_batch: state slot free", FREE, NULL, batch_slot_free},
    {"plan_set_batch: source slot free", FREE, NULL, batch_source_free},
    {"plan_set_batch: source slot out of range", RANGE, NULL, batch_source_out_of_range},
    {"plan_set_batch: checkpoint slot free", FREE, NULL, batch_checkpoint_slot_free},
    {"plan_set_batch: checkpoint slot out of range", RANGE, NULL, batch_checkpoint_slot_out_of_range},
    {"plan_set_batch: checkpoint at start_position", POSITION, NULL, batch_checkpoint_at_start},
    {"plan_set_batch: checkpoint past the step", POSITION, NULL, batch_checkpoint_past_end},
    {"plan_set_batch: checkpoint at 0", POSITION, NULL, batch_checkpoint_at_zero},
    {"plan_set_batch: checkpoint misaligned", POSITION, NULL, batch_checkpoint_misaligned},
    {"plan_set_batch: checkpoint of no sequence", INVALID, NULL, batch_checkpoint_seq_out_of_range},
    {"plan_set_batch: checkpoint of a padding sequence", INVALID, NULL, batch_checkpoint_on_padding},
    {"plan_set_batch: INIT_ZERO at start_position 8", INVALID, NULL, batch_zero_init_mid_sequence},
    {"plan_set_batch: init 7", INVALID, NULL, batch_unknown_init},
    {"plan_set_batch: more sequences than max_seqs", PLAN_FULL, NULL, batch_too_many_seqs},
    {"plan_set_batch: more tokens than max_tokens", PLAN_FULL, NULL, batch_too_many_tokens},
    {"plan_set_batch: more checkpoints than max_checkpoints", PLAN_FULL, NULL, batch_too_many_checkpoints},
    {"forward: NULL args", NULL_ARG, NULL, fwd_null_args},
    {"forward: NULL layer", NULL_ARG, NULL, fwd_null_layer},
    {"forward: NULL plan", NULL_ARG, NULL, fwd_null_plan},
    {"forward: NULL qkv", NULL_ARG, NULL, fwd_null_qkv},
    {"forward: NULL out", NULL_ARG, NULL, fwd_null_out},
    {"forward: NULL a for Gated DeltaNet", NULL_ARG, NULL, fwd_gdn_null_a},
    {"forward: NULL b for Gated DeltaNet", NULL_ARG, NULL, fwd_gdn_null_b},
    {"forward: f32 activations", DTYPE, NULL, fwd_f32_activations},
    {"forward: activation dtype 0", DTYPE, NULL, fwd_dtype_zero},
    {"forward: struct_size too small", SIZE, NULL, fwd_size_small},
    {"forward: struct_size too large", SIZE, NULL, fwd_size_large},
    {"forward: qkv row stride shorter than a row", INVALID, NULL, fwd_qkv_stride_short},
    {"forward: out row stride shorter than a row", INVALID, NULL, fwd_out_stride_short},
    {"forward: layer not in the pool", NOT_IN_POOL, NULL, fwd_outsider_layer},
    {"forward: plan of a pool without the layer", NOT_IN_POOL, prepare_other_pool, fwd_plan_of_other_pool},
    {"forward: plan without a batch", INVALID, prepare_unset_plan, fwd_plan_without_batch},
    {"forward: destroyed layer", HANDLE, prepare_dead_layer, fwd_dead_layer},
    {"forward: destroyed plan", HANDLE, prepare_dead_plan, fwd_dead_plan},
    {"forward: layer and plan of a destroyed context", HANDLE, prepare_dead_context, fwd_dead_context},
    {"forward: never-created layer", HANDLE, NULL, fwd_never_created_layer},
    {"forward: a plan handle as the layer", HANDLE, NULL, fwd_plan_as_layer},
    {"query_capabilities: NULL caps", NULL_ARG, NULL, caps_null},
    {"query_capabilities: struct_size too small", SIZE, NULL, caps_size_small},
    {"query_capabilities: destroyed context", HANDLE, prepare_dead_context, caps_dead_context},
    {"get_stats: NULL stats", NULL_ARG, NULL, stats_null},
    {"get_stats: struct_size too small", SIZE, NULL, stats_size_small},
    {"get_stats: struct_size too large", SIZE, NULL, stats_size_large},
    {"get_stats: destroyed context", HANDLE, prepare_dead_context, stats_dead_context},
    {"context_destroy: destroyed context", HANDLE, prepare_dead_context, ctx_destroy_twice},
    {"context_destroy: a pool handle", HANDLE, NULL, ctx_destroy_wrong_kind},
};

/* The short status names above are for the table only. */
#undef NULL_ARG
#undef SIZE
#undef HANDLE
#undef LAYER_KIND
#undef SHAPE
#undef DTYPE
#undef RANGE
#undef FREE
#undef CONFLICT
#undef EXHAUSTED
#undef TOKENS
#undef POSITION
#undef PLAN_FULL
#undef NOT_IN_POOL
#undef IN_USE
#undef INVALID
#undef SMALL

/* Criterion copies parameters into each test process; indices (not function pointers) travel safely. */
static int32_t case_indices[sizeof cases / sizeof cases[0]];

ParameterizedTestParameters(bad_input, refused_without_side_effects)
{
    for (int32_t i = 0; i < HARNESS_COUNT(cases); i++) case_indices[i] = i;
    return cr_make_param_array(int32_t, case_indices, sizeof case_indices / sizeof case_indices[0]);
}

ParameterizedTest(int32_t *index, bad_input, refused_without_side_effects, .init = setup, .fini = teardown)
{
    const bad_case *c = &cases[*index];
    harness_set_label(c->what);
    if (c->prepare) c->prepare();
    snapshot before = take_snapshot();

    linattn_status status = c->act();
    const char *message = api()->last_error_message();
    char copied[512];
    snprintf(copied, sizeof copied, "%s", message ? message : "");

    cr_assert(status == c->expected, "%s: returned %d (\"%s\"), expected %d" HARNESS_TAG, c->what, status, copied,
              c->expected, HARNESS_TAG_ARGS);
    cr_assert(copied[0] != '\0', "%s: refused without a message" HARNESS_TAG, c->what, HARNESS_TAG_ARGS);
    cr_log_info("%s: \"%s\"", c->what, copied);
    expect_snapshot_unchanged(&before, c->what);
    for (int32_t i = 0; i < fx.num_allocated; i++) free(before.slots[i]);
}

/* The fixture's own batch is valid: the matrix above tests refusals, not a broken fixture. */
Test(bad_input, fixture_batch_runs, .init = setup, .fini = teardown)
{
    for (int32_t l = 0; l < 2; l++) {
        linattn_forward_args args = good_args(l);
        expect_ok(try_forward(l, fx.m.plan, &args));
        for (int64_t row = 0; row < MAX_TOKENS; row++) {
            const uint16_t *line = fx.out[l] + row * spec_out_width(spec_at(l));
            cr_assert_eq(line[0] != HARNESS_POISON, row < fx.batch_tokens, "layer %d row %lld", l, (long long)row);
        }
    }
}
