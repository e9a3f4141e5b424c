/* test_pool.c — state pools: sizing, slot allocation order and exhaustion, zero/copy/read/write of slot state,
 * buffer sizes, and the order in which layers, pools and plans may be destroyed. */
#include "support/harness.h"

/* Three layers of different kinds, state dtypes and conv widths, so per-layer offsets inside a slot matter. */
static const layer_spec pool_layers[] = {
    {LINATTN_LAYER_GATED_DELTANET, 2, 4, 16, 16, 4, 1, LINATTN_DTYPE_F32, 0.0f, 0},
    {LINATTN_LAYER_SIMPLE_GLA, 2, 2, 16, 32, 0, 0, LINATTN_DTYPE_BF16, 0.0f, 0},
    {LINATTN_LAYER_GATED_DELTANET, 1, 2, 32, 16, 2, 1, LINATTN_DTYPE_BF16, 0.0f, 0},
};

static model make_model(int32_t capacity, harness_rng *rng)
{
    model m;
    model_create(&m, pool_layers, HARNESS_COUNT(pool_layers), capacity, plan_limits(4, 2, 64), rng);
    return m;
}

static int is_all_zero(const uint8_t *bytes, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (bytes[i]) return 0;
    return 1;
}

Test(pool, layer_info_gives_state_bytes)
{
    harness_rng rng = rng_start();
    model m = make_model(2, &rng);
    for (int32_t l = 0; l < m.num_layers; l++) {
        const layer_spec *spec = &m.layers[l].spec;
        linattn_layer_info info = {sizeof info, 0, 0, 0};
        expect_ok(api()->layer_info(m.layers[l].handle, &info));
        cr_assert_eq(info.recurrent_bytes, spec_recurrent_bytes(spec), "layer %d", l);
        cr_assert_eq(info.conv_bytes, spec_conv_bytes(spec), "layer %d", l);
        cr_assert_eq(info.state_bytes, info.recurrent_bytes + info.conv_bytes, "layer %d", l);
        cr_assert_eq(m.layers[l].info.state_bytes, info.state_bytes, "layer_create's out_info differs, layer %d",
                     l);
    }
    model_destroy(&m);
}

Test(pool, capacity_from_byte_budget)
{
    harness_rng rng = rng_start();
    model m = make_model(1, &rng);
    uint64_t slot_bytes = 0;
    for (int32_t l = 0; l < m.num_layers; l++) slot_bytes += m.layers[l].info.state_bytes;
    linattn_pool_info info = pool_info_of(m.pool);
    cr_assert_eq(info.slot_bytes, slot_bytes);

    linattn_layer *handles[HARNESS_MAX_LAYERS];
    for (int32_t l = 0; l < m.num_layers; l++) handles[l] = m.layers[l].handle;
    int32_t wanted = rng_int(&rng, 1, 9);
    uint64_t budgets[] = {slot_bytes * (uint64_t)wanted, slot_bytes * (uint64_t)wanted + slot_bytes - 1};
    for (int i = 0; i < 2; i++) {
        linattn_pool_desc desc = {sizeof desc, m.num_layers, handles, 0, budgets[i]};
        linattn_pool *pool = NULL;
        expect_ok(api()->pool_create(m.context, &desc, &pool));
        linattn_pool_info sized = pool_info_of(pool);
        cr_assert_eq(sized.capacity, wanted, "budget %llu with slots of %llu bytes gave capacity %d",
                     (unsigned long long)budgets[i], (unsigned long long)slot_bytes, sized.capacity);
        cr_assert_eq(sized.slots_in_use, 0);
        cr_assert_eq(sized.slot_bytes, slot_bytes);
        expect_ok(api()->pool_destroy(pool));
    }
    model_destroy(&m);
}

Test(pool, new_pool_slots_are_zero)
{
    harness_rng rng = rng_start();
    model m = make_model(3, &rng);
    for (int32_t s = 0; s < 3; s++) {
        int32_t slot = model_alloc(&m);
        for (int32_t l = 0; l < m.num_layers; l++) {
            uint8_t *state = model_read_state(&m, l, slot);
            cr_assert(is_all_zero(state, (size_t)m.layers[l].info.state_bytes), "slot %d layer %d not zero", slot,
                      l);
            free(state);
        }
    }
    model_destroy(&m);
}

Test(pool, alloc_takes_lowest_free_slot)
{
    harness_rng rng = rng_start();
    int32_t capacity = 6;
    model m = make_model(capacity, &rng);
    for (int32_t s = 0; s < capacity; s++) {
        cr_assert_eq(model_alloc(&m), s);
        cr_assert_eq(pool_info_of(m.pool).slots_in_use, s + 1);
    }
    int32_t first = rng_int(&rng, 0, capacity - 1), second;
    do second = rng_int(&rng, 0, capacity - 1);
    while (second == first);
    expect_ok(api()->slot_free(m.pool, second));
    expect_ok(api()->slot_free(m.pool, first));
    cr_assert_eq(pool_info_of(m.pool).slots_in_use, capacity - 2);
    int32_t low = first < second ? first : second, high = first < second ? second : first;
    cr_assert_eq(model_alloc(&m), low, "freed %d and %d", first, second);
    cr_assert_eq(model_alloc(&m), high, "freed %d and %d", first, second);
    model_destroy(&m);
}

Test(pool, exhaustion_and_reuse)
{
    harness_rng rng = rng_start();
    int32_t capacity = 3;
    model m = make_model(capacity, &rng);
    for (int32_t s = 0; s < capacity; s++) model_alloc(&m);
    int32_t slot = -77;
    cr_assert_eq(api()->slot_alloc(m.pool, &slot), LINATTN_ERR_POOL_EXHAUSTED);
    cr_assert_str_not_empty(api()->last_error_message());
    cr_assert_eq(slot, -77, "out_slot written on error");
    cr_assert_eq(pool_info_of(m.pool).slots_in_use, capacity);

    int32_t freed = rng_int(&rng, 0, capacity - 1);
    expect_ok(api()->slot_free(m.pool, freed));
    cr_assert_eq(model_alloc(&m), freed);
    cr_assert_eq(api()->slot_alloc(m.pool, &slot), LINATTN_ERR_POOL_EXHAUSTED);
    model_destroy(&m);
}

Test(pool, alloc_and_free_keep_state_bytes)
{
    harness_rng rng = rng_start();
    model m = make_model(2, &rng);
    int32_t slot = model_alloc(&m);
    model_write_random_state(&m, slot, &rng);
    size_t bytes = 0;
    uint8_t *before = model_snapshot_slot(&m, slot, &bytes);
    expect_ok(api()->slot_free(m.pool, slot));
    cr_assert_eq(model_alloc(&m), slot);
    expect_slot_unchanged(&m, slot, before, "state of a freed and re-allocated slot");
    free(before);
    model_destroy(&m);
}

Test(pool, write_read_round_trip_per_layer)
{
    harness_rng rng = rng_start();
    model m = make_model(3, &rng);
    int32_t slots[3];
    for (int32_t s = 0; s < 3; s++) slots[s] = model_alloc(&m);
    model_write_random_state(&m, slots[0], &rng);
    model_write_random_state(&m, slots[2], &rng);
    size_t bytes = 0;
    uint8_t *neighbour = model_snapshot_slot(&m, slots[2], &bytes);

    uint8_t *written[HARNESS_MAX_LAYERS];
    for (int32_t l = 0; l < m.num_layers; l++) {
        written[l] = layer_state_random(&m, l, &rng);
        expect_ok(api()->slot_write(m.pool, m.layers[l].handle, slots[1], written[l], m.layers[l].info.state_bytes,
                                    NULL));
    }
    for (int32_t l = 0; l < m.num_layers; l++) {
        uint8_t *read = model_read_state(&m, l, slots[1]);
        expect_bytes_equal(read, written[l], (size_t)m.layers[l].info.state_bytes, "slot_read after slot_write");
        free(read);
    }
    /* Writing one layer leaves the slot's other layers alone. */
    uint8_t *again = layer_state_random(&m, 1, &rng);
    expect_ok(api()->slot_write(m.pool, m.layers[1].handle, slots[1], again, m.layers[1].info.state_bytes, NULL));
    for (int32_t l = 0; l < m.num_layers; l++) {
        uint8_t *read = model_read_state(&m, l, slots[1]);
        expect_bytes_equal(read, l == 1 ? again : written[l], (size_t)m.layers[l].info.state_bytes,
                           "slot state after rewriting one layer");
        free(read);
    }
    expect_slot_unchanged(&m, slots[2], neighbour, "neighbouring slot");
    for (int32_t l = 0; l < m.num_layers; l++) free(written[l]);
    free(again);
    free(neighbour);
    model_destroy(&m);
}

Test(pool, slot_zero_clears_every_layer)
{
    harness_rng rng = rng_start();
    model m = make_model(2, &rng);
    int32_t target = model_alloc(&m), other = model_alloc(&m);
    model_write_random_state(&m, target, &rng);
    model_write_random_state(&m, other, &rng);
    size_t bytes = 0;
    uint8_t *other_before = model_snapshot_slot(&m, other, &bytes);
    expect_ok(api()->slot_zero(m.pool, target, NULL));
    for (int32_t l = 0; l < m.num_layers; l++) {
        uint8_t *state = model_read_state(&m, l, target);
        cr_assert(is_all_zero(state, (size_t)m.layers[l].info.state_bytes), "layer %d not zeroed", l);
        free(state);
    }
    expect_slot_unchanged(&m, other, other_before, "slot next to the zeroed one");
    free(other_before);
    model_destroy(&m);
}

Test(pool, slot_copy_copies_every_layer)
{
    harness_rng rng = rng_start();
    model m = make_model(4, &rng);
    int32_t slots[4];
    for (int32_t s = 0; s < 4; s++) {
        slots[s] = model_alloc(&m);
        model_write_random_state(&m, slots[s], &rng);
    }
    /* Copy in both directions across the pool (higher to lower and lower to higher slot). */
    int32_t src = slots[3], dst = slots[1], bystander = slots[2];
    size_t bytes = 0;
    uint8_t *src_before = model_snapshot_slot(&m, src, &bytes);
    uint8_t *bystander_before = model_snapshot_slot(&m, bystander, &bytes);
    expect_ok(api()->slot_copy(m.pool, dst, src, NULL));
    expect_slot_unchanged(&m, dst, src_before, "destination of slot_copy");
    expect_slot_unchanged(&m, src, src_before, "source of slot_copy");
    expect_slot_unchanged(&m, bystander, bystander_before, "slot untouched by slot_copy");

    uint8_t *low_before = model_snapshot_slot(&m, slots[0], &bytes);
    expect_ok(api()->slot_copy(m.pool, bystander, slots[0], NULL));
    expect_slot_unchanged(&m, bystander, low_before, "destination of the second slot_copy");
    free(src_before);
    free(bystander_before);
    free(low_before);
    model_destroy(&m);
}

Test(pool, read_write_buffer_sizes)
{
    harness_rng rng = rng_start();
    model m = make_model(1, &rng);
    int32_t slot = model_alloc(&m);
    model_write_random_state(&m, slot, &rng);
    size_t snapshot_bytes = 0;
    uint8_t *before = model_snapshot_slot(&m, slot, &snapshot_bytes);
    for (int32_t l = 0; l < m.num_layers; l++) {
        uint64_t bytes = m.layers[l].info.state_bytes;
        uint8_t *buffer = harness_alloc((size_t)bytes + 64);
        memset(buffer, 0xab, (size_t)bytes + 64);
        cr_assert_eq(api()->slot_read(m.pool, m.layers[l].handle, slot, buffer, bytes - 1, NULL),
                     LINATTN_ERR_BUFFER_TOO_SMALL, "layer %d", l);
        cr_assert_str_not_empty(api()->last_error_message());
        for (size_t i = 0; i < bytes + 64; i++)
            cr_assert_eq(buffer[i], 0xab, "slot_read wrote byte %zu on error (layer %d)", i, l);

        cr_assert_eq(api()->slot_write(m.pool, m.layers[l].handle, slot, buffer, bytes - 1, NULL),
                     LINATTN_ERR_BUFFER_TOO_SMALL, "layer %d", l);
        cr_assert_str_not_empty(api()->last_error_message());

        /* A larger buffer is fine; only state_bytes are written. */
        expect_ok(api()->slot_read(m.pool, m.layers[l].handle, slot, buffer, bytes + 64, NULL));
        for (size_t i = (size_t)bytes; i < bytes + 64; i++)
            cr_assert_eq(buffer[i], 0xab, "slot_read wrote past state_bytes at %zu (layer %d)", i, l);
        free(buffer);
    }
    expect_slot_unchanged(&m, slot, before, "slot after refused slot_write");
    free(before);
    model_destroy(&m);
}

Test(pool, destroy_order_is_enforced)
{
    harness_rng rng = rng_start();
    model m = make_model(2, &rng);
    cr_assert_eq(api()->layer_destroy(m.layers[0].handle), LINATTN_ERR_IN_USE);
    cr_assert_eq(api()->pool_destroy(m.pool), LINATTN_ERR_IN_USE);
    expect_ok(api()->plan_destroy(m.plan));
    cr_assert_eq(api()->layer_destroy(m.layers[1].handle), LINATTN_ERR_IN_USE);
    expect_ok(api()->pool_destroy(m.pool));
    for (int32_t l = 0; l < m.num_layers; l++) expect_ok(api()->layer_destroy(m.layers[l].handle));
    model_destroy(&m);
}
