/* test_cache_abi.c — the prefix cache through the ABI (CPU backend): creation and ownership, a hit that restores a
 * checkpoint giving bitwise the outputs and state of a full recomputation, refused calls that change nothing, an
 * exhausted pool, and a pool that cannot be destroyed under its cache. */
#include "support/harness.h"

/* float32 state everywhere, so a restored run must agree bitwise with a recomputation. */
static const layer_spec cache_layers[] = {
    {LINATTN_LAYER_GATED_DELTANET, 2, 4, 16, 16, 4, 1, LINATTN_DTYPE_F32, 0.0f, 0},
    {LINATTN_LAYER_SIMPLE_GLA, 2, 2, 16, 32, 0, 0, LINATTN_DTYPE_F32, 0.0f, 0},
};

static const uint64_t kv_block_bytes[1] = {4096};

static model make_model(int32_t capacity, harness_rng *rng)
{
    model m;
    model_create(&m, cache_layers, HARNESS_COUNT(cache_layers), capacity, plan_limits(4, 4, 512), rng);
    return m;
}

/* One attention group, 16-token blocks, the default checkpoint policy. */
static linattn_prefix_cache_desc cache_desc(int32_t num_kv_blocks, int32_t max_checkpoints)
{
    linattn_prefix_cache_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.struct_size = sizeof desc;
    desc.block_size = 16;
    desc.num_attn_groups = 1;
    desc.kv_block_bytes = kv_block_bytes;
    desc.num_kv_blocks = num_kv_blocks;
    desc.max_checkpoints = max_checkpoints;
    return desc;
}

static linattn_prefix_cache *make_cache(linattn_pool *pool, int32_t num_kv_blocks, int32_t max_checkpoints)
{
    linattn_prefix_cache_desc desc = cache_desc(num_kv_blocks, max_checkpoints);
    linattn_prefix_cache *cache = NULL;
    expect_ok(api()->prefix_cache_create(pool, &desc, &cache));
    cr_assert(cache != NULL);
    return cache;
}

static linattn_cache_request_desc request_desc(uint64_t id, const int32_t *tokens, int64_t num_tokens)
{
    linattn_cache_request_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.struct_size = sizeof desc;
    desc.extra_key_size = sizeof(linattn_cache_extra_key);
    desc.request_id = id;
    desc.tokens = tokens;
    desc.num_tokens = num_tokens;
    desc.max_hit_tokens = -1;
    return desc;
}

static linattn_cache_stats cache_stats(const linattn_prefix_cache *cache)
{
    linattn_cache_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    expect_ok(api()->cache_get_stats(cache, &stats));
    return stats;
}

static linattn_cache_step schedule(linattn_prefix_cache *cache, uint64_t id, int64_t num_tokens)
{
    linattn_cache_step step;
    memset(&step, 0, sizeof step);
    step.struct_size = sizeof step;
    expect_ok(api()->cache_request_schedule(cache, id, num_tokens, &step));
    cr_assert_eq(step.num_tokens, num_tokens);
    return step;
}

/* Run one scheduled step of one sequence the way an engine does: the step's fields go into the batch unchanged,
 * its checkpoints into checkpoint descriptors; then commit. */
static void run_scheduled(const model *m, linattn_prefix_cache *cache, uint64_t id, const linattn_cache_step *step,
                          const seq_data *data, seq_outputs *outputs, int32_t state_slot, harness_rng *rng)
{
    linattn_checkpoint_desc checkpoints[4];
    cr_assert(step->num_checkpoints <= HARNESS_COUNT(checkpoints), "%d checkpoints", step->num_checkpoints);
    for (int32_t i = 0; i < step->num_checkpoints; i++) {
        linattn_checkpoint_desc c = {step->checkpoints[i].position, 0, step->checkpoints[i].slot};
        checkpoints[i] = c;
    }
    step_seq seq = step_of(data, outputs, step->start_position, step->num_tokens, state_slot, step->init,
                           step->source_slot);
    int64_t num_tokens = steps_pack_in_order(&seq, 1);
    model_step(m, &seq, 1, num_tokens, checkpoints, step->num_checkpoints, rng);
    expect_ok(api()->cache_request_commit(cache, id));
}

static int32_t *random_tokens(int64_t count, harness_rng *rng)
{
    int32_t *tokens = harness_alloc((size_t)count * sizeof *tokens);
    for (int64_t i = 0; i < count; i++) tokens[i] = rng_int(rng, 0, 50000);
    return tokens;
}

/* A sequence whose first `shared` rows are those of `base` and the rest random. */
static seq_data seq_data_extending(const model *m, const seq_data *base, int64_t shared, int64_t length,
                                   harness_rng *rng)
{
    seq_data data = seq_data_random(m, length, rng);
    for (int32_t l = 0; l < m->num_layers; l++) {
        size_t channels = (size_t)spec_channels(&m->layers[l].spec), heads = (size_t)m->layers[l].spec.num_v_heads;
        memcpy(data.qkv[l], base->qkv[l], (size_t)shared * channels * sizeof(uint16_t));
        memcpy(data.a[l], base->a[l], (size_t)shared * heads * sizeof(uint16_t));
        memcpy(data.b[l], base->b[l], (size_t)shared * heads * sizeof(uint16_t));
    }
    return data;
}

static void seq_outputs_free(seq_outputs *outputs)
{
    for (int32_t l = 0; l < HARNESS_MAX_LAYERS; l++) free(outputs->out[l]);
}

Test(cache_abi, create_and_destroy)
{
    harness_rng rng = rng_start();
    model m = make_model(6, &rng);
    linattn_prefix_cache *cache = make_cache(m.pool, 64, 4);
    linattn_cache_stats stats = cache_stats(cache);
    cr_assert_eq(stats.max_checkpoints, 4);
    cr_assert_eq(stats.kv_blocks_total, 64);
    cr_assert_eq(stats.kv_blocks_free, 64);
    cr_assert_eq(stats.live_requests, 0);
    cr_assert_eq(pool_info_of(m.pool).slots_in_use, 0, "creating a cache takes no slot");
    expect_ok(api()->prefix_cache_destroy(cache));
    expect_status(api()->cache_get_stats(cache, &stats), LINATTN_ERR_INVALID_HANDLE);
    expect_status(api()->prefix_cache_destroy(cache), LINATTN_ERR_INVALID_HANDLE);
    expect_ok(api()->prefix_cache_destroy(NULL));

    /* The checkpoint budget in bytes counts the pool's slot bytes; linear state only needs no KV sizes. */
    linattn_prefix_cache_desc desc = cache_desc(0, 0);
    desc.num_attn_groups = 0;
    desc.kv_block_bytes = NULL;
    desc.checkpoint_byte_budget = 3 * pool_info_of(m.pool).slot_bytes + 1;
    expect_ok(api()->prefix_cache_create(m.pool, &desc, &cache));
    stats = cache_stats(cache);
    cr_assert_eq(stats.max_checkpoints, 3);
    cr_assert_eq(stats.kv_blocks_total, 0);
    /* Left alive on purpose: destroying the context destroys it (before the pool it holds slots of). */
    model_destroy(&m);
}

Test(cache_abi, hit_restores_state_bitwise_equal_to_recomputation)
{
    harness_rng rng = rng_start();
    model m = make_model(8, &rng);
    linattn_prefix_cache *cache = make_cache(m.pool, 64, 4);

    /* Turn 1: a prompt prefilled in two chunks, with the checkpoints the cache asks for. */
    int64_t first_length = rng_int(&rng, 130, 250), first_chunk = rng_int(&rng, 1, (int32_t)first_length - 1);
    int32_t *first_tokens = random_tokens(first_length, &rng);
    seq_data first = seq_data_random(&m, first_length, &rng);
    seq_outputs first_out = seq_outputs_poisoned(&m, first_length);
    linattn_cache_request_desc first_desc = request_desc(1, first_tokens, first_length);
    linattn_cache_hit hit = {sizeof hit, 0, 0, 0};
    expect_ok(api()->cache_request_add(cache, &first_desc, &hit));
    cr_assert_eq(hit.hit_tokens, 0, "empty cache gave a hit");
    int32_t first_slot = model_alloc(&m);
    int64_t chunks[2] = {first_chunk, first_length - first_chunk};
    for (int i = 0; i < 2; i++) {
        linattn_cache_step step = schedule(cache, 1, chunks[i]);
        cr_assert_eq(step.init, i == 0 ? LINATTN_INIT_ZERO : LINATTN_INIT_CONTINUE);
        run_scheduled(&m, cache, 1, &step, &first, &first_out, first_slot, &rng);
    }
    cr_assert(cache_stats(cache).checkpoints_written >= 1, "the prompt end got no checkpoint");
    expect_ok(api()->cache_request_free(cache, 1));

    /* Turn 2 extends the whole first prompt: it restarts from the first prompt's last checkpoint. */
    int64_t second_length = first_length + rng_int(&rng, 1, 80);
    int32_t *second_tokens = random_tokens(second_length, &rng);
    memcpy(second_tokens, first_tokens, (size_t)first_length * sizeof *first_tokens);
    seq_data second = seq_data_extending(&m, &first, first_length, second_length, &rng);
    linattn_cache_request_desc second_desc = request_desc(2, second_tokens, second_length);
    linattn_cache_hit found = {sizeof found, 0, 0, 0};
    expect_ok(api()->cache_find_longest_hit(cache, &second_desc, &found));
    cr_assert(found.hit_tokens > 0 && found.hit_tokens <= first_length && found.hit_tokens % 64 == 0,
              "hit of %lld tokens after a %lld-token prompt", (long long)found.hit_tokens, (long long)first_length);
    expect_ok(api()->cache_request_add(cache, &second_desc, &hit));
    cr_assert(hit.hit_tokens == found.hit_tokens && hit.checkpoint_slot == found.checkpoint_slot);
    cr_assert_eq(cache_stats(cache).hit_tokens, (uint64_t)hit.hit_tokens);

    linattn_cache_step step = schedule(cache, 2, second_length - hit.hit_tokens);
    cr_assert_eq(step.init, LINATTN_INIT_FROM_SLOT);
    cr_assert_eq(step.source_slot, hit.checkpoint_slot);
    cr_assert_eq(step.start_position, hit.hit_tokens);
    int32_t second_slot = model_alloc(&m);
    seq_outputs second_out = seq_outputs_poisoned(&m, second_length);
    run_scheduled(&m, cache, 2, &step, &second, &second_out, second_slot, &rng);
    cr_assert_eq(cache_stats(cache).checkpoints_restored, 1);

    /* The same tokens computed from scratch, no cache. */
    int32_t fresh_slot = model_alloc(&m);
    seq_outputs fresh_out = seq_outputs_poisoned(&m, second_length);
    model_step_one(&m, &second, &fresh_out, 0, (int32_t)second_length, fresh_slot, LINATTN_INIT_ZERO, 0, &rng);
    expect_outputs_match(&m, &second_out, &fresh_out, hit.hit_tokens, second_length, "restored vs recomputed");
    expect_slots_match(&m, second_slot, fresh_slot, "final state restored vs recomputed");

    /* Checkpoints hold pool slots until the cache goes; then every slot but the host's three is free again. */
    expect_ok(api()->cache_request_free(cache, 2));
    linattn_cache_stats stats = cache_stats(cache);
    cr_assert_eq(pool_info_of(m.pool).slots_in_use, 3 + (int32_t)stats.checkpoints_in_use);
    expect_status(api()->slot_free(m.pool, hit.checkpoint_slot), LINATTN_ERR_IN_USE);
    expect_ok(api()->prefix_cache_destroy(cache));
    cr_assert_eq(pool_info_of(m.pool).slots_in_use, 3);

    free(first_tokens);
    free(second_tokens);
    seq_data_free(&first);
    seq_data_free(&second);
    seq_outputs_free(&first_out);
    seq_outputs_free(&second_out);
    seq_outputs_free(&fresh_out);
    model_destroy(&m);
}

/* What a refused call must leave alone. */
typedef struct observed {
    linattn_cache_stats stats;
    linattn_pool_info pool;
} observed;

static observed observe(const model *m, const linattn_prefix_cache *cache)
{
    observed o;
    memset(&o, 0, sizeof o);
    o.stats = cache_stats(cache);
    o.pool = pool_info_of(m->pool);
    return o;
}

static void expect_refused_at(linattn_status got, linattn_status want, const char *call, const model *m,
                              const linattn_prefix_cache *cache, const observed *before, int line)
{
    expect_status_at(got, want, call, __FILE__, line);
    cr_assert(api()->last_error_message()[0] != '\0', "line %d: %s gave no message", line, call);
    observed after = observe(m, cache);
    /* From the first counter on: the bytes after struct_size are padding. */
    size_t counters = offsetof(linattn_cache_stats, lookups);
    cr_assert(memcmp((const char *)&after.stats + counters, (const char *)&before->stats + counters,
                     sizeof after.stats - counters) == 0,
              "line %d: %s changed cache stats", line, call);
    cr_assert(after.pool.capacity == before->pool.capacity && after.pool.slots_in_use == before->pool.slots_in_use,
              "line %d: %s changed the pool", line, call);
}

#define expect_refused(call, want) expect_refused_at((call), (want), #call, &m, cache, &before, __LINE__)

Test(cache_abi, refused_calls_change_nothing)
{
    harness_rng rng = rng_start();
    model m = make_model(6, &rng);
    linattn_prefix_cache *cache = make_cache(m.pool, 16, 4);
    int32_t *tokens = random_tokens(150, &rng);
    /* Request 1: prompt fully computed (a checkpoint is cached); request 2: a step scheduled, not committed. */
    linattn_cache_request_desc one = request_desc(1, tokens, 100), two = request_desc(2, tokens + 100, 50);
    expect_ok(api()->cache_request_add(cache, &one, NULL));
    expect_ok(api()->cache_request_schedule(cache, 1, 100, &(linattn_cache_step){.struct_size = sizeof(linattn_cache_step)}));
    expect_ok(api()->cache_request_commit(cache, 1));
    expect_ok(api()->cache_request_add(cache, &two, NULL));
    schedule(cache, 2, 20);
    observed before = observe(&m, cache);
    cr_assert(before.stats.checkpoints_in_use >= 1);

    linattn_prefix_cache *untouched = (linattn_prefix_cache *)&rng;
    linattn_prefix_cache *out = untouched;
    linattn_prefix_cache_desc desc = cache_desc(16, 4);
    expect_refused(api()->prefix_cache_create(NULL, &desc, &out), LINATTN_ERR_NULL_ARGUMENT);
    expect_refused(api()->prefix_cache_create((linattn_pool *)m.plan, &desc, &out), LINATTN_ERR_INVALID_HANDLE);
    expect_refused(api()->prefix_cache_create(m.pool, NULL, &out), LINATTN_ERR_NULL_ARGUMENT);
    expect_refused(api()->prefix_cache_create(m.pool, &desc, NULL), LINATTN_ERR_NULL_ARGUMENT);
    desc.struct_size -= 4;
    expect_refused(api()->prefix_cache_create(m.pool, &desc, &out), LINATTN_ERR_STRUCT_SIZE);
    desc = cache_desc(16, 4);
    desc.block_size = 0;
    expect_refused(api()->prefix_cache_create(m.pool, &desc, &out), LINATTN_ERR_INVALID_ARGUMENT);
    desc = cache_desc(16, 4);
    desc.policy.match_unit = 48; /* not a multiple of the checkpoint alignment */
    desc.policy.places = LINATTN_CHECKPOINT_AT_PROMPT_END;
    expect_refused(api()->prefix_cache_create(m.pool, &desc, &out), LINATTN_ERR_INVALID_ARGUMENT);
    desc = cache_desc(16, 4);
    desc.kv_block_bytes = NULL;
    expect_refused(api()->prefix_cache_create(m.pool, &desc, &out), LINATTN_ERR_INVALID_ARGUMENT);
    cr_assert(out == untouched, "a refused prefix_cache_create wrote *out_cache");

    linattn_cache_hit hit = {sizeof hit, 77, 77, 77};
    linattn_cache_request_desc bad = request_desc(3, tokens, 40);
    expect_refused(api()->cache_request_add((linattn_prefix_cache *)m.pool, &bad, &hit), LINATTN_ERR_INVALID_HANDLE);
    expect_refused(api()->cache_request_add(NULL, &bad, &hit), LINATTN_ERR_NULL_ARGUMENT);
    expect_refused(api()->cache_request_add(cache, NULL, &hit), LINATTN_ERR_NULL_ARGUMENT);
    bad.struct_size += 8;
    expect_refused(api()->cache_request_add(cache, &bad, &hit), LINATTN_ERR_STRUCT_SIZE);
    bad = request_desc(3, tokens, 40);
    bad.extra_key_size = 16;
    expect_refused(api()->cache_request_add(cache, &bad, &hit), LINATTN_ERR_STRUCT_SIZE);
    bad = request_desc(3, NULL, 40);
    expect_refused(api()->cache_request_add(cache, &bad, &hit), LINATTN_ERR_NULL_ARGUMENT);
    bad = request_desc(3, tokens, 0);
    expect_refused(api()->cache_request_add(cache, &bad, &hit), LINATTN_ERR_INVALID_ARGUMENT);
    bad = request_desc(1, tokens, 40);
    expect_refused(api()->cache_request_add(cache, &bad, &hit), LINATTN_ERR_DUPLICATE_REQUEST);
    bad = request_desc(3, tokens, 40);
    hit.struct_size = 8;
    expect_refused(api()->cache_request_add(cache, &bad, &hit), LINATTN_ERR_STRUCT_SIZE);
    expect_refused(api()->cache_find_longest_hit(cache, &bad, &hit), LINATTN_ERR_STRUCT_SIZE);
    expect_refused(api()->cache_find_longest_hit(cache, &bad, NULL), LINATTN_ERR_NULL_ARGUMENT);
    cr_assert(hit.checkpoint_slot == 77 && hit.hit_tokens == 77 && hit.matched_tokens == 77,
              "a refused call wrote the hit");

    linattn_cache_step step = {.struct_size = sizeof step, .num_tokens = 77};
    expect_refused(api()->cache_request_schedule(cache, 99, 10, &step), LINATTN_ERR_UNKNOWN_REQUEST);
    expect_refused(api()->cache_request_schedule(cache, 1, 1, &step), LINATTN_ERR_TOKEN_RANGE);
    expect_refused(api()->cache_request_schedule(cache, 2, 10, &step), LINATTN_ERR_STEP_PENDING);
    expect_refused(api()->cache_request_schedule(cache, 1, 1, NULL), LINATTN_ERR_NULL_ARGUMENT);
    step.struct_size = 4;
    expect_refused(api()->cache_request_schedule(cache, 1, 1, &step), LINATTN_ERR_STRUCT_SIZE);
    cr_assert_eq(step.num_tokens, 77, "a refused schedule wrote the step");
    expect_refused(api()->cache_request_commit(cache, 1), LINATTN_ERR_NO_STEP);
    expect_refused(api()->cache_request_commit(cache, 99), LINATTN_ERR_UNKNOWN_REQUEST);
    expect_refused(api()->cache_request_append(cache, 99, tokens, 3), LINATTN_ERR_UNKNOWN_REQUEST);
    expect_refused(api()->cache_request_free(cache, 99), LINATTN_ERR_UNKNOWN_REQUEST);
    linattn_cache_stats stats = {.struct_size = sizeof stats - 8};
    expect_refused(api()->cache_get_stats(cache, &stats), LINATTN_ERR_STRUCT_SIZE);
    expect_refused(api()->cache_get_stats(cache, NULL), LINATTN_ERR_NULL_ARGUMENT);
    int32_t checkpoint_slot = -1;
    for (int32_t slot = 0; slot < m.capacity && checkpoint_slot < 0; slot++)
        if (api()->slot_free(m.pool, slot) == LINATTN_ERR_IN_USE) checkpoint_slot = slot;
    cr_assert(checkpoint_slot >= 0, "no slot_free of a checkpoint slot was refused with IN_USE");
    expect_refused(api()->slot_free(m.pool, checkpoint_slot), LINATTN_ERR_IN_USE);

    /* A cache with two KV blocks cannot hold a 100-token step. */
    linattn_prefix_cache *small = make_cache(m.pool, 2, 1);
    expect_ok(api()->cache_request_add(small, &one, NULL));
    observed small_before = observe(&m, small);
    step.struct_size = sizeof step;
    expect_refused_at(api()->cache_request_schedule(small, 1, 100, &step), LINATTN_ERR_KV_EXHAUSTED, "schedule", &m,
                      small, &small_before, __LINE__);
    expect_ok(api()->prefix_cache_destroy(small));

    /* Nothing was disturbed: the pending step commits, and the first prompt is still a hit. */
    expect_ok(api()->cache_request_commit(cache, 2));
    linattn_cache_request_desc again = request_desc(4, tokens, 100);
    expect_ok(api()->cache_find_longest_hit(cache, &again, &(linattn_cache_hit){.struct_size = sizeof hit}));
    hit.struct_size = sizeof hit;
    expect_ok(api()->cache_find_longest_hit(cache, &again, &hit));
    cr_assert(hit.hit_tokens == 64, "hit %lld after refused calls, expected the prompt end 64",
              (long long)hit.hit_tokens);
    free(tokens);
    model_destroy(&m);
}

Test(cache_abi, exhausted_pool_is_a_clear_error)
{
    harness_rng rng = rng_start();
    model m = make_model(2, &rng);
    linattn_prefix_cache *cache = make_cache(m.pool, 16, 2);
    int32_t *tokens = random_tokens(100, &rng);
    linattn_cache_request_desc desc = request_desc(1, tokens, 100);
    expect_ok(api()->cache_request_add(cache, &desc, NULL));
    int32_t running[2] = {model_alloc(&m), model_alloc(&m)};
    observed before = observe(&m, cache);
    linattn_cache_step step = {.struct_size = sizeof step};
    expect_refused(api()->cache_request_schedule(cache, 1, 100, &step), LINATTN_ERR_POOL_EXHAUSTED);
    const char *message = api()->last_error_message();
    cr_assert(strstr(message, "slot") != NULL, "message does not say what ran out: \"%s\"", message);

    expect_ok(api()->slot_free(m.pool, running[1]));
    step = schedule(cache, 1, 100);
    cr_assert_eq(step.num_checkpoints, 1, "the prompt end at 64 wants a checkpoint");
    cr_assert_eq(step.checkpoints[0].slot, running[1], "the checkpoint takes the slot just freed");
    cr_assert_eq(pool_info_of(m.pool).slots_in_use, 2);
    expect_ok(api()->cache_request_free(cache, 1)); /* never committed: the slot goes back */
    cr_assert_eq(pool_info_of(m.pool).slots_in_use, 1);
    free(tokens);
    model_destroy(&m);
}

Test(cache_abi, pool_destroy_refused_while_a_cache_uses_it)
{
    harness_rng rng = rng_start();
    model m = make_model(2, &rng);
    linattn_layer *layers[HARNESS_MAX_LAYERS];
    for (int32_t l = 0; l < m.num_layers; l++) layers[l] = m.layers[l].handle;
    linattn_pool_desc pool_desc = {sizeof pool_desc, m.num_layers, layers, 4, 0};
    linattn_pool *pool = NULL;
    expect_ok(api()->pool_create(m.context, &pool_desc, &pool));
    linattn_prefix_cache *cache = make_cache(pool, 16, 2);
    expect_status(api()->pool_destroy(pool), LINATTN_ERR_IN_USE);
    cr_assert(strstr(api()->last_error_message(), "cache") != NULL, "message: %s", api()->last_error_message());
    cr_assert_eq(cache_stats(cache).max_checkpoints, 2, "the cache survived the refused pool_destroy");
    expect_ok(api()->prefix_cache_destroy(cache));
    expect_ok(api()->pool_destroy(pool));
    model_destroy(&m);
}
