/* test_stats.c — the context counters of linattn_stats move as documented: state bytes with pools and slots, and
 * per-layer forward calls, tokens, checkpoints written and restored. */
#include "support/harness.h"

static const layer_spec stats_layers[] = {
    {LINATTN_LAYER_GATED_DELTANET, 2, 4, 16, 16, 4, 1, LINATTN_DTYPE_F32, 0.0f, 0},
    {LINATTN_LAYER_SIMPLE_GLA, 2, 2, 16, 32, 0, 0, LINATTN_DTYPE_BF16, 0.0f, 1},
};

static model make_model(int32_t capacity, harness_rng *rng)
{
    model m;
    model_create(&m, stats_layers, HARNESS_COUNT(stats_layers), capacity, plan_limits(6, 4, 256), rng);
    return m;
}

Test(stats, fresh_context_counts_nothing)
{
    linattn_context *context = cpu_context();
    linattn_stats stats = context_stats(context);
    cr_assert_eq(stats.struct_size, sizeof stats);
    cr_assert_eq(stats.state_bytes_reserved, 0);
    cr_assert_eq(stats.state_bytes_in_use, 0);
    cr_assert_eq(stats.forward_calls, 0);
    cr_assert_eq(stats.tokens_processed, 0);
    cr_assert_eq(stats.checkpoints_written, 0);
    cr_assert_eq(stats.checkpoints_restored, 0);
    expect_ok(api()->context_destroy(context));
}

Test(stats, state_bytes_follow_pools_and_slots)
{
    harness_rng rng = rng_start();
    int32_t capacity = rng_int(&rng, 3, 8);
    model m = make_model(capacity, &rng);
    uint64_t slot_bytes = pool_info_of(m.pool).slot_bytes;
    linattn_stats stats = context_stats(m.context);
    cr_assert_eq(stats.state_bytes_reserved, (uint64_t)capacity * slot_bytes);
    cr_assert_eq(stats.state_bytes_in_use, 0);

    int32_t used = rng_int(&rng, 1, capacity);
    for (int32_t s = 0; s < used; s++) model_alloc(&m);
    cr_assert_eq(context_stats(m.context).state_bytes_in_use, (uint64_t)used * slot_bytes);
    expect_ok(api()->slot_free(m.pool, used - 1));
    cr_assert_eq(context_stats(m.context).state_bytes_in_use, (uint64_t)(used - 1) * slot_bytes);

    /* A second pool (over the second layer only) adds its own bytes; destroying it takes them back. */
    linattn_layer *second_layer = m.layers[1].handle;
    int32_t other_capacity = rng_int(&rng, 1, 4);
    linattn_pool_desc desc = {sizeof desc, 1, &second_layer, other_capacity, 0};
    linattn_pool *other = NULL;
    expect_ok(api()->pool_create(m.context, &desc, &other));
    uint64_t other_slot_bytes = pool_info_of(other).slot_bytes;
    cr_assert_eq(other_slot_bytes, m.layers[1].info.state_bytes);
    int32_t slot = -1;
    expect_ok(api()->slot_alloc(other, &slot));
    stats = context_stats(m.context);
    cr_assert_eq(stats.state_bytes_reserved, (uint64_t)capacity * slot_bytes + other_capacity * other_slot_bytes);
    cr_assert_eq(stats.state_bytes_in_use, (uint64_t)(used - 1) * slot_bytes + other_slot_bytes);
    expect_ok(api()->pool_destroy(other));
    stats = context_stats(m.context);
    cr_assert_eq(stats.state_bytes_reserved, (uint64_t)capacity * slot_bytes);
    cr_assert_eq(stats.state_bytes_in_use, (uint64_t)(used - 1) * slot_bytes);
    model_destroy(&m);
}

Test(stats, forward_counters_count_per_layer)
{
    harness_rng rng = rng_start();
    model m = make_model(12, &rng);
    int32_t layers = m.num_layers;
    int32_t lengths[3] = {rng_int(&rng, 2, 20), rng_int(&rng, 1, 20), rng_int(&rng, 1, 6)};
    seq_data data[3];
    for (int i = 0; i < 3; i++) data[i] = seq_data_random(&m, 40, &rng);
    int32_t slots[3] = {model_alloc(&m), model_alloc(&m), model_alloc(&m)};
    int32_t restored_into = model_alloc(&m), checkpoint_slots[2] = {model_alloc(&m), model_alloc(&m)};
    linattn_stats before = context_stats(m.context);

    /* Step 1: three new sequences, two checkpoints. */
    step_seq first[3];
    for (int i = 0; i < 3; i++) first[i] = step_of(&data[i], NULL, 0, lengths[i], slots[i], LINATTN_INIT_ZERO, 0);
    int64_t tokens = steps_pack_in_order(first, 3);
    linattn_checkpoint_desc checkpoints[2] = {{lengths[0], 0, checkpoint_slots[0]},
                                              {lengths[1], 1, checkpoint_slots[1]}};
    model_step(&m, first, 3, tokens, checkpoints, 2, &rng);
    linattn_stats after = context_stats(m.context);
    cr_assert_eq(after.forward_calls - before.forward_calls, (uint64_t)layers);
    cr_assert_eq(after.tokens_processed - before.tokens_processed, (uint64_t)(tokens * layers));
    cr_assert_eq(after.checkpoints_written - before.checkpoints_written, (uint64_t)(2 * layers));
    cr_assert_eq(after.checkpoints_restored, before.checkpoints_restored);

    /* Step 2: one decode, one restore from a checkpoint with tokens, one 0-token restore, and padding (skipped,
     * so its tokens are not processed). */
    before = after;
    int32_t decode_slot = slots[2], other_restore = slots[1];
    step_seq second[4] = {
        step_of(&data[2], NULL, lengths[2], 1, decode_slot, LINATTN_INIT_CONTINUE, 0),
        step_padding(rng_int(&rng, 1, 5)),
        step_of(&data[0], NULL, lengths[0], 3, restored_into, LINATTN_INIT_FROM_SLOT, checkpoint_slots[0]),
        step_of(NULL, NULL, lengths[1], 0, other_restore, LINATTN_INIT_FROM_SLOT, checkpoint_slots[1])};
    tokens = steps_pack_in_order(second, 4);
    model_step(&m, second, 4, tokens, NULL, 0, &rng);
    after = context_stats(m.context);
    cr_assert_eq(after.forward_calls - before.forward_calls, (uint64_t)layers);
    cr_assert_eq(after.tokens_processed - before.tokens_processed, (uint64_t)(4 * layers));
    cr_assert_eq(after.checkpoints_written, before.checkpoints_written);
    cr_assert_eq(after.checkpoints_restored - before.checkpoints_restored, (uint64_t)(2 * layers));

    /* Slot operations and setting a batch are not forwards. */
    before = after;
    expect_ok(api()->slot_copy(m.pool, checkpoint_slots[0], slots[0], NULL));
    expect_ok(api()->slot_zero(m.pool, checkpoint_slots[1], NULL));
    expect_ok(model_set_batch(&m, first, 3, steps_pack_in_order(first, 3), NULL, 0));
    after = context_stats(m.context);
    cr_assert_eq(after.forward_calls, before.forward_calls);
    cr_assert_eq(after.tokens_processed, before.tokens_processed);
    cr_assert_eq(after.checkpoints_written, before.checkpoints_written);
    cr_assert_eq(after.checkpoints_restored, before.checkpoints_restored);
    model_destroy(&m);
}

Test(stats, contexts_count_separately)
{
    harness_rng rng = rng_start();
    model busy = make_model(2, &rng), idle = make_model(3, &rng);
    seq_data data = seq_data_random(&busy, 5, &rng);
    model_step_one(&busy, &data, NULL, 0, 5, model_alloc(&busy), LINATTN_INIT_ZERO, 0, &rng);
    linattn_stats stats = context_stats(idle.context);
    cr_assert_eq(stats.forward_calls, 0);
    cr_assert_eq(stats.tokens_processed, 0);
    cr_assert_eq(stats.state_bytes_in_use, 0);
    cr_assert_eq(stats.state_bytes_reserved, 3 * pool_info_of(idle.pool).slot_bytes);
    cr_assert_eq(context_stats(busy.context).forward_calls, (uint64_t)busy.num_layers);
    model_destroy(&busy);
    model_destroy(&idle);
}
