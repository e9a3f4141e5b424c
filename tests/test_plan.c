/* test_plan.c — plans: which batches plan_set_batch accepts, that the batch it sets is the one forward runs, that a
 * refused batch leaves the previous one in place, and that plans of one pool keep separate batches. */
#include "support/harness.h"

static const layer_spec plan_layers[] = {
    {LINATTN_LAYER_GATED_DELTANET, 2, 4, 16, 16, 4, 1, LINATTN_DTYPE_F32, 0.0f, 0},
    {LINATTN_LAYER_SIMPLE_GLA, 2, 2, 16, 16, 0, 0, LINATTN_DTYPE_BF16, 0.0f, 0},
};

enum { MAX_SEQS = 8, MAX_CHECKPOINTS = 2, MAX_TOKENS = 40 };

static model make_model(harness_rng *rng)
{
    model m;
    model_create(&m, plan_layers, HARNESS_COUNT(plan_layers), 12, plan_limits(MAX_SEQS, MAX_CHECKPOINTS, MAX_TOKENS),
                 rng);
    return m;
}

/* The last aligned checkpoint position in (start, end], or end itself when none is. */
static int64_t checkpoint_position(const model *m, int64_t start, int64_t end)
{
    int64_t aligned = end / m->checkpoint_alignment * m->checkpoint_alignment;
    return aligned > start ? aligned : end;
}

Test(plan, empty_batch_runs_nothing)
{
    harness_rng rng = rng_start();
    model m = make_model(&rng);
    int32_t slot = model_alloc(&m);
    model_write_random_state(&m, slot, &rng);
    size_t bytes = 0;
    uint8_t *before = model_snapshot_slot(&m, slot, &bytes);
    step_seq none = step_padding(0);
    model_step(&m, &none, 0, 0, NULL, 0, &rng);
    expect_slot_unchanged(&m, slot, before, "slot after an empty batch");
    free(before);
    model_destroy(&m);
}

Test(plan, batch_at_every_limit_is_accepted)
{
    harness_rng rng = rng_start();
    model m = make_model(&rng);
    /* MAX_SEQS sequences over exactly MAX_TOKENS rows, one of them padding, with MAX_CHECKPOINTS checkpoints. */
    step_seq steps[MAX_SEQS];
    seq_data data[MAX_SEQS];
    int32_t share = MAX_TOKENS / MAX_SEQS;
    for (int32_t i = 0; i < MAX_SEQS; i++) {
        int32_t tokens = i == MAX_SEQS - 1 ? MAX_TOKENS - share * (MAX_SEQS - 1) : share;
        data[i] = seq_data_random(&m, tokens, &rng);
        steps[i] = i == 2 ? step_padding(tokens)
                          : step_of(&data[i], NULL, 0, tokens, model_alloc(&m), LINATTN_INIT_ZERO, 0);
    }
    int64_t num_tokens = steps_pack_in_order(steps, MAX_SEQS);
    cr_assert_eq(num_tokens, MAX_TOKENS);
    linattn_checkpoint_desc checkpoints[MAX_CHECKPOINTS];
    for (int32_t c = 0; c < MAX_CHECKPOINTS; c++) {
        checkpoints[c].seq_index = c == 0 ? 0 : MAX_SEQS - 1;
        checkpoints[c].position = checkpoint_position(&m, 0, steps[checkpoints[c].seq_index].num_tokens);
        checkpoints[c].checkpoint_slot = model_alloc(&m);
    }
    model_step(&m, steps, MAX_SEQS, num_tokens, checkpoints, MAX_CHECKPOINTS, &rng);
    model_destroy(&m);
}

Test(plan, unusual_but_valid_batches_are_accepted)
{
    harness_rng rng = rng_start();
    model m = make_model(&rng);
    seq_data data = seq_data_random(&m, 12, &rng);
    int32_t a = model_alloc(&m), b = model_alloc(&m), c = model_alloc(&m), d = model_alloc(&m);
    int32_t e = model_alloc(&m), source = model_alloc(&m);
    model_step_one(&m, &data, NULL, 0, 6, a, LINATTN_INIT_ZERO, 0, &rng);
    model_write_random_state(&m, source, &rng);
    model_write_random_state(&m, e, &rng);

    /* Rows in reverse order of the sequences, padding of 0 and more tokens, two padding sequences, 0-token
     * sequences of every init kind, and unused rows at the end of the stream. */
    step_seq steps[7] = {step_of(&data, NULL, 6, 4, a, LINATTN_INIT_CONTINUE, 0),
                         step_padding(3),
                         step_of(NULL, NULL, 6, 0, b, LINATTN_INIT_FROM_SLOT, source),
                         step_of(NULL, NULL, 0, 0, c, LINATTN_INIT_ZERO, 0),
                         step_padding(0),
                         step_of(NULL, NULL, 9, 0, e, LINATTN_INIT_CONTINUE, 0),
                         step_of(&data, NULL, 0, 5, d, LINATTN_INIT_ZERO, 0)};
    int64_t offset = 0;
    for (int32_t i = 6; i >= 0; i--) {
        steps[i].token_offset = offset;
        offset += steps[i].num_tokens;
    }
    model_step(&m, steps, 7, offset + 2, NULL, 0, &rng);
    model_destroy(&m);
}

/* Batches that plan_set_batch must refuse, each valid up to its last element and different from the batch set
 * before it, so a partly applied batch would show in the outputs. */
typedef struct refused_batch {
    const char *what;
    linattn_status expected;
} refused_batch;

static const refused_batch refused[] = {
    {"overlapping token ranges", LINATTN_ERR_TOKEN_RANGE},
    {"one slot written twice", LINATTN_ERR_SLOT_CONFLICT},
    {"checkpoint past the sequence", LINATTN_ERR_CHECKPOINT_POSITION},
    {"more sequences than the plan holds", LINATTN_ERR_PLAN_CAPACITY},
    {"state slot not allocated", LINATTN_ERR_SLOT_NOT_ALLOCATED},
};

static linattn_status set_refused_batch(const model *m, int32_t which, const seq_data *data, const int32_t *slots,
                                        int32_t free_slot)
{
    step_seq steps[MAX_SEQS + 1];
    int32_t count = 2;
    steps[0] = step_of(data, NULL, 0, 3, slots[1], LINATTN_INIT_ZERO, 0);
    steps[1] = step_of(data, NULL, 0, 2, slots[0], LINATTN_INIT_ZERO, 0);
    int64_t num_tokens = steps_pack_in_order(steps, 2);
    linattn_checkpoint_desc checkpoint = {num_tokens + 5, 1, slots[2]};
    int32_t num_checkpoints = 0;
    switch (which) {
    case 0:
        steps[count++] = step_of(data, NULL, 0, 2, slots[3], LINATTN_INIT_ZERO, 0);
        steps[2].token_offset = 1;
        break;
    case 1:
        steps[count++] = step_of(data, NULL, 0, 0, slots[1], LINATTN_INIT_ZERO, 0);
        steps[2].token_offset = num_tokens;
        break;
    case 2:
        num_checkpoints = 1;
        break;
    case 3:
        while (count < MAX_SEQS + 1) {
            steps[count] = step_padding(0);
            steps[count++].token_offset = num_tokens;
        }
        break;
    default:
        steps[count++] = step_of(data, NULL, 0, 0, free_slot, LINATTN_INIT_ZERO, 0);
        steps[2].token_offset = num_tokens;
        break;
    }
    return model_set_batch(m, steps, count, num_tokens, &checkpoint, num_checkpoints);
}

Test(plan, refused_batch_keeps_the_previous_one)
{
    harness_rng rng = rng_start();
    /* Two models with the same weights: one runs batch A directly, the other after refused batches. */
    harness_rng weights_a = rng, weights_b = rng;
    model direct, refusing;
    model_create(&direct, plan_layers, HARNESS_COUNT(plan_layers), 12,
                 plan_limits(MAX_SEQS, MAX_CHECKPOINTS, MAX_TOKENS), &weights_a);
    model_create(&refusing, plan_layers, HARNESS_COUNT(plan_layers), 12,
                 plan_limits(MAX_SEQS, MAX_CHECKPOINTS, MAX_TOKENS), &weights_b);
    rng = weights_a;

    enum { SLOTS = 4 };
    int32_t slots[SLOTS];
    for (int32_t s = 0; s < SLOTS; s++) {
        slots[s] = model_alloc(&direct);
        cr_assert_eq(model_alloc(&refusing), slots[s]);
    }
    int32_t free_slot = model_alloc(&refusing);
    expect_ok(api()->slot_free(refusing.pool, free_slot));

    int32_t lengths[2] = {rng_int(&rng, 4, 9), rng_int(&rng, 4, 9)};
    seq_data data[2] = {seq_data_random(&direct, lengths[0], &rng), seq_data_random(&direct, lengths[1], &rng)};
    seq_outputs outputs[2][2];
    step_seq batch[2][2];
    linattn_checkpoint_desc checkpoint = {checkpoint_position(&direct, 0, lengths[1]), 1, slots[2]};
    model *models[2] = {&direct, &refusing};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 2; i++) {
            outputs[k][i] = seq_outputs_poisoned(&direct, lengths[i]);
            batch[k][i] = step_of(&data[i], &outputs[k][i], 0, lengths[i], slots[i], LINATTN_INIT_ZERO, 0);
        }
        steps_pack_in_order(batch[k], 2);
        expect_ok(model_set_batch(models[k], batch[k], 2, lengths[0] + lengths[1], &checkpoint, 1));
    }
    for (int32_t r = 0; r < HARNESS_COUNT(refused); r++) {
        linattn_status status = set_refused_batch(&refusing, r, &data[0], slots, free_slot);
        cr_assert_eq(status, refused[r].expected, "%s: plan_set_batch returned %d, expected %d" HARNESS_TAG,
                     refused[r].what, status, refused[r].expected, HARNESS_TAG_ARGS);
    }
    for (int k = 0; k < 2; k++) model_run(models[k], batch[k], 2, lengths[0] + lengths[1], &rng);
    for (int i = 0; i < 2; i++)
        expect_outputs_match(&direct, &outputs[1][i], &outputs[0][i], 0, lengths[i],
                             "forward after refused batches vs the batch set before them");
    for (int32_t s = 0; s < SLOTS; s++)
        for (int32_t l = 0; l < direct.num_layers; l++) {
            uint8_t *got = model_read_state(&refusing, l, slots[s]), *want = model_read_state(&direct, l, slots[s]);
            expect_bytes_equal(got, want, (size_t)direct.layers[l].info.state_bytes,
                               "slot state after refused batches vs the batch set before them");
            free(got);
            free(want);
        }
    model_destroy(&direct);
    model_destroy(&refusing);
}

Test(plan, set_batch_alone_changes_no_state)
{
    harness_rng rng = rng_start();
    model m = make_model(&rng);
    int32_t slot = model_alloc(&m), source = model_alloc(&m);
    model_write_random_state(&m, slot, &rng);
    model_write_random_state(&m, source, &rng);
    size_t bytes = 0;
    uint8_t *before = model_snapshot_slot(&m, slot, &bytes);
    step_seq step = step_of(NULL, NULL, 0, 0, slot, LINATTN_INIT_FROM_SLOT, source);
    expect_ok(model_set_batch(&m, &step, 1, 0, NULL, 0));
    expect_slot_unchanged(&m, slot, before, "slot after plan_set_batch without forward");
    free(before);
    model_destroy(&m);
}

Test(plan, plans_of_one_pool_keep_their_own_batches)
{
    harness_rng rng = rng_start();
    model m = make_model(&rng);
    linattn_plan *first = m.plan, *second = NULL;
    linattn_plan_desc limits = plan_limits(MAX_SEQS, MAX_CHECKPOINTS, MAX_TOKENS);
    expect_ok(api()->plan_create(m.pool, &limits, &second));

    int32_t lengths[2] = {rng_int(&rng, 1, 8), rng_int(&rng, 1, 8)};
    seq_data data[2] = {seq_data_random(&m, lengths[0], &rng), seq_data_random(&m, lengths[1], &rng)};
    step_seq one = step_of(&data[0], NULL, 0, lengths[0], model_alloc(&m), LINATTN_INIT_ZERO, 0);
    step_seq other[2] = {step_padding(rng_int(&rng, 1, 4)),
                         step_of(&data[1], NULL, 0, lengths[1], model_alloc(&m), LINATTN_INIT_ZERO, 0)};
    int64_t other_tokens = steps_pack_in_order(other, 2);
    expect_ok(model_set_batch(&m, &one, 1, lengths[0], NULL, 0));
    m.plan = second;
    expect_ok(model_set_batch(&m, other, 2, other_tokens, NULL, 0));
    /* Running the first plan must follow its own batch (model_run checks which rows get written). */
    m.plan = first;
    model_run(&m, &one, 1, lengths[0], &rng);
    m.plan = second;
    model_run(&m, other, 2, other_tokens, &rng);
    model_destroy(&m);
}
