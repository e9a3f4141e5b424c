/* Prefix cache manager: hits, reuse, checkpoint placement, eviction, the linear-state-only mode, errors. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "cache/block_manager.h"

/* ---- helpers -------------------------------------------------------------------------------------------------- */

static la_cache_config base_config(int32_t block_size, int32_t num_blocks, int32_t max_checkpoints)
{
    static const uint64_t bytes[1] = {4096};
    la_cache_config c;
    memset(&c, 0, sizeof c);
    c.block_size = block_size;
    c.num_attn_groups = 1;
    c.kv_block_bytes = bytes;
    c.num_kv_blocks = num_blocks;
    c.checkpoint_bytes = 1 << 20;
    c.max_checkpoints = max_checkpoints;
    c.policy = la_cache_policy_default();
    return c;
}

static la_cache_manager *make(const la_cache_config *c)
{
    la_cache_manager *m = NULL;
    char message[256];
    la_cache_status s = la_cache_create(c, &m, message, sizeof message);
    cr_assert_eq(s, LA_CACHE_OK, "create: %s", message);
    return m;
}

/* Tokens seed, seed+1, ... (distinct sequences for distinct seeds as long as ranges do not overlap). */
static int32_t *tokens_from(int32_t seed, int64_t n)
{
    int32_t *t = malloc((size_t)n * sizeof *t);
    for (int64_t i = 0; i < n; i++) t[i] = seed + (int32_t)i;
    return t;
}

static int32_t *concat(const int32_t *a, int64_t na, const int32_t *b, int64_t nb)
{
    int32_t *t = malloc((size_t)(na + nb) * sizeof *t);
    memcpy(t, a, (size_t)na * sizeof *t);
    memcpy(t + na, b, (size_t)nb * sizeof *t);
    return t;
}

static la_cache_request_desc desc_of(uint64_t id, const int32_t *tokens, int64_t n)
{
    la_cache_request_desc d;
    memset(&d, 0, sizeof d);
    d.request_id = id;
    d.tokens = tokens;
    d.num_tokens = n;
    d.max_hit_tokens = -1;
    return d;
}

static la_cache_hit add(la_cache_manager *m, uint64_t id, const int32_t *tokens, int64_t n)
{
    la_cache_request_desc d = desc_of(id, tokens, n);
    la_cache_hit hit;
    cr_assert_eq(la_cache_request_add(m, &d, &hit), LA_CACHE_OK, "add: %s", la_cache_last_error(m));
    return hit;
}

static la_cache_step schedule(la_cache_manager *m, uint64_t id, int64_t n)
{
    la_cache_step step;
    cr_assert_eq(la_cache_request_schedule(m, id, n, &step), LA_CACHE_OK, "schedule: %s", la_cache_last_error(m));
    return step;
}

static void commit(la_cache_manager *m, uint64_t id)
{
    cr_assert_eq(la_cache_request_commit(m, id), LA_CACHE_OK, "commit: %s", la_cache_last_error(m));
    cr_assert_eq(la_cache_check(m), LA_CACHE_OK, "%s", la_cache_last_error(m));
}

/* Prefill the whole prompt in one step and commit it. */
static la_cache_step prefill(la_cache_manager *m, uint64_t id)
{
    la_cache_request_info info;
    cr_assert_eq(la_cache_get_request_info(m, id, &info), LA_CACHE_OK);
    la_cache_step step = schedule(m, id, info.num_tokens - info.computed_tokens);
    commit(m, id);
    return step;
}

static int has_checkpoint_at(const la_cache_step *step, int64_t position)
{
    for (int32_t i = 0; i < step->num_checkpoints; i++)
        if (step->checkpoints[i].position == position) return 1;
    return 0;
}

static la_cache_stats stats_of(const la_cache_manager *m)
{
    la_cache_stats s;
    cr_assert_eq(la_cache_get_stats(m, &s), LA_CACHE_OK);
    return s;
}

/* ---- configuration -------------------------------------------------------------------------------------------- */

static void ignore_slot(void *user, int32_t slot)
{
    (void)user;
    (void)slot;
}

Test(cache_manager, rejects_bad_configs_with_a_reason)
{
    static const uint64_t zero_bytes[1] = {0};
    la_cache_config good = base_config(16, 64, 8);
    la_cache_config bad[8];
    for (int i = 0; i < 8; i++) bad[i] = good;
    bad[0].block_size = 0;
    bad[1].kv_block_bytes = NULL;
    bad[2].kv_block_bytes = zero_bytes;
    bad[3].num_kv_blocks = 0; /* and kv_byte_budget 0: no block */
    bad[4].policy.match_unit = 96; /* not a multiple of 64 */
    bad[5].policy.places = 1u << 20;
    bad[6].slots.free_slot = ignore_slot; /* without alloc_slot */
    bad[7].max_checkpoints = -1;
    for (int i = 0; i < 8; i++) {
        la_cache_manager *m = NULL;
        char message[256] = "";
        cr_expect_eq(la_cache_create(&bad[i], &m, message, sizeof message), LA_CACHE_ERR_INVALID_ARGUMENT, "case %d", i);
        cr_expect_null(m, "case %d", i);
        cr_expect_neq(message[0], '\0', "case %d has no message", i);
    }
    la_cache_manager *m = NULL;
    cr_expect_eq(la_cache_create(NULL, &m, NULL, 0), LA_CACHE_ERR_NULL_ARGUMENT);
}

Test(cache_manager, budgets_in_bytes_give_counts)
{
    la_cache_config c = base_config(16, 0, 0);
    c.kv_byte_budget = 4096 * 100 + 17;
    c.checkpoint_byte_budget = (1 << 20) * 7 + 5;
    la_cache_manager *m = make(&c);
    la_cache_stats s = stats_of(m);
    cr_expect_eq(s.kv_blocks_total, 100);
    cr_expect_eq(s.max_checkpoints, 7);
    la_cache_destroy(m);
}

/* ---- hits ----------------------------------------------------------------------------------------------------- */

Test(cache_manager, second_request_reuses_kv_and_restores_the_prompt_end_checkpoint)
{
    const int32_t block = 16, unit = 64;
    la_cache_config c = base_config(block, 256, 16);
    la_cache_manager *m = make(&c);
    int32_t *a = tokens_from(1000, 300);
    la_cache_hit hit = add(m, 1, a, 300);
    cr_expect_eq(hit.hit_tokens, 0);
    la_cache_step step = prefill(m, 1);
    cr_expect_eq(step.init, LA_CACHE_INIT_ZERO);
    cr_expect_eq(step.num_blocks, (300 + block - 1) / block);
    const int64_t prompt_end = 300 / unit * unit;
    cr_assert(has_checkpoint_at(&step, prompt_end));
    int32_t a_blocks[64];
    memcpy(a_blocks, step.block_table, (size_t)step.num_blocks * sizeof *a_blocks);
    int32_t a_slot = step.checkpoints[0].slot;

    int32_t *tail = tokens_from(5000, 50);
    int32_t *b = concat(a, 300, tail, 50);
    hit = add(m, 2, b, 350);
    cr_expect_eq(hit.hit_tokens, prompt_end);
    cr_expect_eq(hit.checkpoint_slot, a_slot);
    step = schedule(m, 2, 350 - prompt_end);
    cr_expect_eq(step.start_position, prompt_end);
    cr_expect_eq(step.init, LA_CACHE_INIT_FROM_SLOT);
    cr_expect_eq(step.source_slot, a_slot);
    cr_expect_eq(step.num_kv_copies, 0); /* the hit ends on a block boundary */
    for (int64_t i = 0; i < prompt_end / block; i++) cr_expect_eq(step.block_table[i], a_blocks[i], "block %lld", (long long)i);
    commit(m, 2);
    la_cache_stats s = stats_of(m);
    cr_expect_eq(s.hit_tokens, (uint64_t)prompt_end);
    cr_expect_eq(s.checkpoints_restored, 1);
    free(a), free(b), free(tail);
    la_cache_destroy(m);
}

Test(cache_manager, hit_never_reaches_the_last_prompt_token)
{
    la_cache_config c = base_config(16, 64, 8);
    la_cache_manager *m = make(&c);
    int32_t *a = tokens_from(7, 128); /* prompt end checkpoint at exactly 128 */
    add(m, 1, a, 128);
    la_cache_step step = prefill(m, 1);
    cr_assert(has_checkpoint_at(&step, 128));
    la_cache_hit hit = add(m, 2, a, 128);
    cr_expect_lt(hit.hit_tokens, 128);
    cr_expect_eq(hit.matched_tokens, 128);
    free(a);
    la_cache_destroy(m);
}

Test(cache_manager, hit_inside_a_kv_block_copies_its_first_rows)
{
    const int32_t block = 256, unit = 64;
    la_cache_config c = base_config(block, 32, 8);
    la_cache_manager *m = make(&c);
    int32_t *sys = tokens_from(1, 200); /* shorter than one KV block */
    add(m, 1, sys, 200);
    la_cache_step a = prefill(m, 1);
    const int64_t cp = 200 / unit * unit;
    cr_assert(has_checkpoint_at(&a, cp));
    const int32_t a_block = a.block_table[0];

    int32_t *tail = tokens_from(9000, 100);
    int32_t *b = concat(sys, 200, tail, 100);
    la_cache_hit hit = add(m, 2, b, 300);
    cr_expect_eq(hit.hit_tokens, cp);
    la_cache_step step = schedule(m, 2, 300 - cp);
    cr_expect_eq(step.num_kv_copies, 1);
    cr_expect_eq(step.kv_copy.src_block, a_block);
    cr_expect_neq(step.kv_copy.dst_block, a_block);
    cr_expect_eq(step.kv_copy.dst_block, step.block_table[0]);
    cr_expect_eq(step.kv_copy.num_tokens, cp % block);
    commit(m, 2);
    /* The copy is for the first step only. */
    cr_assert_eq(la_cache_request_append(m, 2, tail, 1), LA_CACHE_OK);
    step = schedule(m, 2, 1);
    cr_expect_eq(step.num_kv_copies, 0);
    cr_expect_eq(step.init, LA_CACHE_INIT_CONTINUE);
    commit(m, 2);
    free(sys), free(tail), free(b);
    la_cache_destroy(m);
}

Test(cache_manager, branch_point_of_a_shared_prefix_gets_a_checkpoint)
{
    const int64_t shared = 640; /* a multiple of the match unit */
    la_cache_config c = base_config(16, 512, 16);
    la_cache_manager *m = make(&c);
    int32_t *sys = tokens_from(1, shared);
    int32_t *x = tokens_from(100000, 90), *y = tokens_from(200000, 90), *z = tokens_from(300000, 90);
    int32_t *a = concat(sys, shared, x, 90), *b = concat(sys, shared, y, 90), *cq = concat(sys, shared, z, 90);

    add(m, 1, a, shared + 90);
    la_cache_step step = prefill(m, 1);
    cr_expect_not(has_checkpoint_at(&step, shared), "the first request cannot know the branch point");

    la_cache_hit hit = add(m, 2, b, shared + 90);
    cr_expect_eq(hit.hit_tokens, 0);
    cr_expect_eq(hit.matched_tokens, shared);
    step = prefill(m, 2);
    cr_expect(has_checkpoint_at(&step, shared), "the second request checkpoints where it leaves the chain");

    hit = add(m, 3, cq, shared + 90);
    cr_expect_eq(hit.hit_tokens, shared);
    free(sys), free(x), free(y), free(z), free(a), free(b), free(cq);
    la_cache_destroy(m);
}

Test(cache_manager, turn_end_checkpoint_serves_the_next_turn)
{
    const int64_t unit = 64, prompt = 100, output = 200;
    la_cache_config c = base_config(16, 256, 16);
    la_cache_manager *m = make(&c);
    int32_t *p = tokens_from(1, prompt);
    int32_t *gen = tokens_from(50000, output);
    add(m, 1, p, prompt);
    prefill(m, 1);
    /* Decode: the sampled token is appended, then computed by the next step. The last one is never computed. */
    int64_t written = 0;
    for (int64_t i = 0; i < output; i++) {
        cr_assert_eq(la_cache_request_append(m, 1, gen + i, 1), LA_CACHE_OK);
        if (i == output - 1) break;
        la_cache_step step = schedule(m, 1, 1);
        written += step.num_checkpoints;
        cr_expect(step.num_checkpoints == 0 || step.checkpoints[0].position % unit == 0);
        commit(m, 1);
    }
    const int64_t computed = prompt + output - 1;
    cr_expect_eq(written, computed / unit - prompt / unit, "one per unit boundary passed while generating");
    cr_assert_eq(la_cache_request_free(m, 1), LA_CACHE_OK);

    int32_t *turn = tokens_from(70000, 40);
    int32_t *history = concat(p, prompt, gen, output);
    int32_t *next = concat(history, prompt + output, turn, 40);
    la_cache_hit hit = add(m, 2, next, prompt + output + 40);
    cr_expect_eq(hit.hit_tokens, computed / unit * unit);
    free(p), free(gen), free(turn), free(history), free(next);
    la_cache_destroy(m);
}

Test(cache_manager, a_conversation_keeps_one_checkpoint_slot_moving_forward)
{
    const int64_t prompt = 100, unit = 64, user = 100;
    la_cache_config c = base_config(16, 256, 2);
    la_cache_manager *m = make(&c);
    int32_t *p = tokens_from(1, prompt);
    int32_t *gen = tokens_from(50000, 160);
    add(m, 1, p, prompt);
    la_cache_step step = prefill(m, 1);
    cr_assert_eq(step.num_checkpoints, 1);
    const int32_t slot = step.checkpoints[0].slot;
    int32_t turn_ends = 0;
    for (int64_t i = 0; i < 160; i++) { /* computes up to 259: turn ends at 128, 192, 256 */
        cr_assert_eq(la_cache_request_append(m, 1, gen + i, 1), LA_CACHE_OK);
        if (i == 159) break;
        step = schedule(m, 1, 1);
        if (step.num_checkpoints) {
            turn_ends++;
            cr_expect_eq(step.checkpoints[0].slot, slot, "prompt end and turn ends share the slot");
        }
        commit(m, 1);
    }
    cr_assert_eq(turn_ends, (prompt + 159) / unit - prompt / unit);
    cr_assert_eq(la_cache_request_free(m, 1), LA_CACHE_OK);
    cr_expect_eq(stats_of(m).checkpoints_in_use, 1);

    /* The next turn restores that slot, so its prompt end needs another; the one it restored is superseded. */
    int32_t *question = tokens_from(70000, user);
    int32_t *history = concat(p, prompt, gen, 160);
    int32_t *turn2 = concat(history, prompt + 160, question, user);
    const int64_t turn2_len = prompt + 160 + user;
    la_cache_hit hit = add(m, 2, turn2, turn2_len);
    cr_expect_eq(hit.hit_tokens, (prompt + 159) / unit * unit);
    cr_expect_eq(hit.checkpoint_slot, slot);
    step = prefill(m, 2);
    cr_assert_eq(step.num_checkpoints, 1);
    const int32_t slot2 = step.checkpoints[0].slot;
    cr_expect_neq(slot2, slot);
    cr_assert_eq(la_cache_request_free(m, 2), LA_CACHE_OK);

    /* The budget (2) is full: a new prompt's checkpoint takes the superseded slot, not the live turn's. */
    int32_t *q = tokens_from(900000, 70);
    add(m, 3, q, 70);
    step = prefill(m, 3);
    cr_assert_eq(step.num_checkpoints, 1);
    cr_expect_eq(step.checkpoints[0].slot, slot);
    la_cache_request_desc d = desc_of(4, turn2, turn2_len);
    cr_assert_eq(la_cache_find_longest_hit(m, &d, &hit), LA_CACHE_OK);
    cr_expect_eq(hit.hit_tokens, turn2_len / unit * unit);
    cr_expect_eq(hit.checkpoint_slot, slot2);
    free(p), free(gen), free(q), free(question), free(history), free(turn2);
    la_cache_destroy(m);
}

Test(cache_manager, a_turn_end_that_lost_its_slot_does_not_evict_live_checkpoints)
{
    la_cache_config c = base_config(16, 512, 2);
    la_cache_manager *m = make(&c);
    int32_t *a = tokens_from(1, 100), *x = tokens_from(100000, 200), *gen = tokens_from(300000, 64);
    int32_t *other = tokens_from(200000, 72);
    int32_t *y = concat(x, 128, other, 72); /* forks from x at 128 */
    add(m, 1, a, 100);
    prefill(m, 1); /* a's prompt end: its frontier */
    add(m, 2, x, 200);
    prefill(m, 2); /* x's prompt end at 192: the budget is full */
    add(m, 3, y, 200);
    la_cache_step step = prefill(m, 3);
    /* The branch point at 128 is shared: it evicts the least recently used private checkpoint, a's frontier. y's
     * own prompt end starts a new chain: it may not push out x's. */
    cr_assert_eq(step.num_checkpoints, 1);
    cr_assert_eq(step.checkpoints[0].position, 128);
    cr_assert_eq(stats_of(m).checkpoints_evicted, 1);
    const uint64_t skipped_before = stats_of(m).checkpoints_skipped;

    /* a decodes past 128: its turn end has no slot to go over, and may not take x's or the branch point's. */
    for (int64_t i = 0; i < 28; i++) { /* the last step computes token 127, ending on 128 */
        cr_assert_eq(la_cache_request_append(m, 1, gen + i, 1), LA_CACHE_OK);
        step = schedule(m, 1, 1);
        commit(m, 1);
    }
    cr_expect_eq(step.start_position, 127);
    cr_expect_eq(step.num_checkpoints, 0);
    la_cache_stats s = stats_of(m);
    cr_expect_eq(s.checkpoints_evicted, 1);
    cr_expect_eq(s.checkpoints_skipped, skipped_before + 1);
    la_cache_hit hit;
    la_cache_request_desc d = desc_of(9, x, 200);
    cr_assert_eq(la_cache_find_longest_hit(m, &d, &hit), LA_CACHE_OK);
    cr_expect_eq(hit.hit_tokens, 192, "x's checkpoint is still there");
    d = desc_of(9, y, 200);
    cr_assert_eq(la_cache_find_longest_hit(m, &d, &hit), LA_CACHE_OK);
    cr_expect_eq(hit.hit_tokens, 128, "the branch point is still there");
    free(a), free(x), free(gen), free(other), free(y);
    la_cache_destroy(m);
}

/* Let the manager's clock run: a request of one token decodes `steps` tokens, never reaching a unit boundary. */
static void let_time_pass(la_cache_manager *m, uint64_t id, int32_t seed, int64_t steps)
{
    int32_t *t = tokens_from(seed, steps + 1);
    add(m, id, t, 1);
    for (int64_t i = 0; i < steps; i++) {
        la_cache_step step = schedule(m, id, 1);
        cr_assert_eq(step.num_checkpoints, 0);
        commit(m, id);
        cr_assert_eq(la_cache_request_append(m, id, t + 1 + i, 1), LA_CACHE_OK);
    }
    cr_assert_eq(la_cache_request_free(m, id), LA_CACHE_OK);
    free(t);
}

Test(cache_manager, a_new_chain_takes_only_a_private_checkpoint_idle_for_twice_the_reuse_distance)
{
    la_cache_config c = base_config(16, 512, 2);
    la_cache_manager *m = make(&c);
    int32_t *p = tokens_from(1, 100), *more = tokens_from(50000, 60), *q = tokens_from(100000, 100);
    int32_t *s = tokens_from(200000, 100), *u = tokens_from(300000, 100);
    int32_t *turn2 = concat(p, 100, more, 60);
    add(m, 1, p, 100);
    prefill(m, 1);
    cr_assert_eq(la_cache_request_free(m, 1), LA_CACHE_OK);
    let_time_pass(m, 100, 900000, 40);
    /* The next turn comes back after those 40 steps: that is how long private checkpoints wait. */
    cr_assert_eq(add(m, 2, turn2, 160).hit_tokens, 64);
    prefill(m, 2); /* its prompt end at 128 supersedes the one at 64 */
    cr_assert_eq(la_cache_request_free(m, 2), LA_CACHE_OK);
    add(m, 3, q, 100);
    la_cache_step step = prefill(m, 3); /* takes the superseded slot */
    cr_assert_eq(step.num_checkpoints, 1);
    cr_assert_eq(stats_of(m).checkpoints_evicted, 1);

    /* Full of live chains: a new one goes without. */
    add(m, 4, s, 100);
    step = prefill(m, 4);
    cr_expect_eq(step.num_checkpoints, 0);
    cr_expect_eq(stats_of(m).checkpoints_evicted, 1);

    /* Left alone for more than twice as long, they are presumed dead: the least recently used one goes. */
    let_time_pass(m, 101, 910000, 100);
    add(m, 5, u, 100);
    step = prefill(m, 5);
    cr_expect_eq(step.num_checkpoints, 1);
    cr_expect_eq(stats_of(m).checkpoints_evicted, 2);
    la_cache_hit hit;
    la_cache_request_desc d = desc_of(9, turn2, 160);
    cr_assert_eq(la_cache_find_longest_hit(m, &d, &hit), LA_CACHE_OK);
    cr_expect_eq(hit.hit_tokens, 0, "the second turn's checkpoint was the least recently used");
    d = desc_of(9, q, 100);
    cr_assert_eq(la_cache_find_longest_hit(m, &d, &hit), LA_CACHE_OK);
    cr_expect_eq(hit.hit_tokens, 64);
    free(p), free(more), free(q), free(s), free(u), free(turn2);
    la_cache_destroy(m);
}

Test(cache_manager, extra_keys_separate_equal_tokens)
{
    la_cache_config c = base_config(16, 256, 16);
    la_cache_manager *m = make(&c);
    int32_t *p = tokens_from(1, 300);
    la_cache_extra_key adapter1 = {0, INT64_MAX, 11}, adapter2 = {0, INT64_MAX, 22};
    la_cache_request_desc d = desc_of(1, p, 300);
    d.extra_keys = &adapter1;
    d.num_extra_keys = 1;
    cr_assert_eq(la_cache_request_add(m, &d, NULL), LA_CACHE_OK);
    prefill(m, 1);

    la_cache_hit hit;
    d.request_id = 2;
    d.extra_keys = &adapter2;
    cr_assert_eq(la_cache_request_add(m, &d, &hit), LA_CACHE_OK);
    cr_expect_eq(hit.matched_tokens, 0, "another adapter shares nothing");
    d.request_id = 3;
    d.extra_keys = NULL;
    d.num_extra_keys = 0;
    cr_assert_eq(la_cache_request_add(m, &d, &hit), LA_CACHE_OK);
    cr_expect_eq(hit.matched_tokens, 0, "no adapter shares nothing with adapter 1");
    d.request_id = 4;
    d.extra_keys = &adapter1;
    d.num_extra_keys = 1;
    cr_assert_eq(la_cache_request_add(m, &d, &hit), LA_CACHE_OK);
    cr_expect_eq(hit.hit_tokens, 256);
    free(p);
    la_cache_destroy(m);
}

Test(cache_manager, multimodal_key_splits_the_chain_at_its_unit)
{
    const int64_t unit = 64;
    la_cache_config c = base_config(16, 256, 16);
    c.policy.places |= LA_CACHE_AT_INTERVAL;
    c.policy.every_n_blocks = 4; /* a checkpoint every 64 tokens */
    la_cache_manager *m = make(&c);
    int32_t *p = tokens_from(1, 400);
    la_cache_extra_key image_a = {150, 170, 0xaaaa}, image_b = {150, 170, 0xbbbb};
    la_cache_request_desc d = desc_of(1, p, 400);
    d.extra_keys = &image_a;
    d.num_extra_keys = 1;
    cr_assert_eq(la_cache_request_add(m, &d, NULL), LA_CACHE_OK);
    prefill(m, 1);
    la_cache_hit hit;
    d.request_id = 2;
    d.extra_keys = &image_b;
    cr_assert_eq(la_cache_request_add(m, &d, &hit), LA_CACHE_OK);
    const int64_t index_unit = 16; /* gcd(block size, match unit) */
    cr_expect_eq(hit.matched_tokens, 150 / index_unit * index_unit, "units before the image's unit are shared");
    cr_expect_eq(hit.hit_tokens, 150 / unit * unit);
    free(p);
    la_cache_destroy(m);
}

Test(cache_manager, same_key_over_other_tokens_of_a_unit_is_another_unit)
{
    la_cache_config c = base_config(64, 64, 8);
    la_cache_manager *m = make(&c);
    int32_t *p = tokens_from(1, 200);
    la_cache_extra_key early = {10, 20, 0x77}, late = {15, 25, 0x77};
    la_cache_request_desc d = desc_of(1, p, 200);
    d.extra_keys = &early;
    d.num_extra_keys = 1;
    cr_assert_eq(la_cache_request_add(m, &d, NULL), LA_CACHE_OK);
    prefill(m, 1);
    la_cache_hit hit;
    d.request_id = 2;
    d.extra_keys = &late;
    cr_assert_eq(la_cache_request_add(m, &d, &hit), LA_CACHE_OK);
    cr_expect_eq(hit.matched_tokens, 0);
    free(p);
    la_cache_destroy(m);
}

/* ---- steps and visibility ------------------------------------------------------------------------------------- */

Test(cache_manager, aborted_step_leaves_nothing_visible)
{
    la_cache_config c = base_config(16, 256, 16);
    la_cache_manager *m = make(&c);
    int32_t *p = tokens_from(1, 300);
    add(m, 1, p, 300);
    la_cache_step step = schedule(m, 1, 300);
    cr_assert_gt(step.num_checkpoints, 0);
    cr_assert_eq(la_cache_request_free(m, 1), LA_CACHE_OK);
    cr_assert_eq(la_cache_check(m), LA_CACHE_OK, "%s", la_cache_last_error(m));
    la_cache_stats s = stats_of(m);
    cr_expect_eq(s.checkpoints_in_use, 0);
    cr_expect_eq(s.checkpoints_written, 0);
    cr_expect_eq(s.checkpoints_discarded, (uint64_t)step.num_checkpoints);
    cr_expect_eq(s.index_entries, 0);
    cr_expect_eq(s.kv_blocks_free, s.kv_blocks_total);
    la_cache_hit hit = add(m, 2, p, 300);
    cr_expect_eq(hit.matched_tokens, 0);
    free(p);
    la_cache_destroy(m);
}

Test(cache_manager, chunked_prefill_checkpoints_only_inside_each_chunk)
{
    la_cache_config c = base_config(16, 256, 16);
    c.policy.places = LA_CACHE_AT_INTERVAL;
    c.policy.every_n_blocks = 8; /* every 128 tokens */
    la_cache_manager *m = make(&c);
    int32_t *p = tokens_from(1, 1000);
    add(m, 1, p, 1000);
    int64_t done = 0, chunk = 300, seen = 0;
    while (done < 1000) {
        int64_t n = 1000 - done < chunk ? 1000 - done : chunk;
        la_cache_step step = schedule(m, 1, n);
        for (int32_t i = 0; i < step.num_checkpoints; i++) {
            int64_t q = step.checkpoints[i].position;
            cr_expect(q > done && q <= done + n && q % 128 == 0);
            seen++;
        }
        commit(m, 1);
        done += n;
    }
    cr_expect_eq(seen, 1000 / 128);
    free(p);
    la_cache_destroy(m);
}

Test(cache_manager, step_errors_change_nothing)
{
    la_cache_config c = base_config(16, 256, 16);
    la_cache_manager *m = make(&c);
    int32_t *p = tokens_from(1, 100);
    add(m, 1, p, 100);
    la_cache_step step;
    cr_expect_eq(la_cache_request_schedule(m, 1, 0, &step), LA_CACHE_ERR_TOKEN_RANGE);
    cr_expect_eq(la_cache_request_schedule(m, 1, 101, &step), LA_CACHE_ERR_TOKEN_RANGE);
    cr_expect_eq(la_cache_request_commit(m, 1), LA_CACHE_ERR_NO_STEP);
    cr_expect_eq(la_cache_request_schedule(m, 9, 1, &step), LA_CACHE_ERR_UNKNOWN_REQUEST);
    cr_expect_eq(la_cache_request_schedule(m, 1, 10, NULL), LA_CACHE_ERR_NULL_ARGUMENT);
    la_cache_request_desc d = desc_of(1, p, 100);
    cr_expect_eq(la_cache_request_add(m, &d, NULL), LA_CACHE_ERR_DUPLICATE_REQUEST);
    d.request_id = 2;
    d.num_tokens = 0;
    cr_expect_eq(la_cache_request_add(m, &d, NULL), LA_CACHE_ERR_INVALID_ARGUMENT);
    cr_expect_neq(la_cache_last_error(m)[0], '\0');
    schedule(m, 1, 10);
    cr_expect_eq(la_cache_request_schedule(m, 1, 10, &step), LA_CACHE_ERR_STEP_PENDING);
    cr_expect_eq(la_cache_request_free(m, 9), LA_CACHE_ERR_UNKNOWN_REQUEST);
    cr_expect_eq(la_cache_check(m), LA_CACHE_OK, "%s", la_cache_last_error(m));
    la_cache_stats s = stats_of(m);
    cr_expect_eq(s.lookups, 1);
    cr_expect_eq(s.live_requests, 1);
    free(p);
    la_cache_destroy(m);
}

/* ---- eviction ------------------------------------------------------------------------------------------------- */

Test(cache_manager, evicts_only_unreferenced_blocks_least_recent_first)
{
    const int32_t block = 64;
    la_cache_config c = base_config(block, 8, 8); /* 512 tokens of KV */
    la_cache_manager *m = make(&c);
    int32_t *a = tokens_from(1, 256), *b = tokens_from(10000, 256), *cq = tokens_from(20000, 256);
    add(m, 1, a, 256);
    prefill(m, 1);
    add(m, 2, b, 256);
    prefill(m, 2);
    cr_assert_eq(la_cache_request_free(m, 1), LA_CACHE_OK); /* a's blocks: cached only */

    /* c needs 4 blocks: only a's are evictable (b is live). */
    add(m, 3, cq, 256);
    prefill(m, 3);
    cr_assert_eq(la_cache_check(m), LA_CACHE_OK, "%s", la_cache_last_error(m));
    la_cache_hit hit;
    la_cache_request_desc d = desc_of(4, a, 256);
    cr_assert_eq(la_cache_find_longest_hit(m, &d, &hit), LA_CACHE_OK);
    cr_expect_eq(hit.matched_tokens, 0, "a was evicted");

    /* Everything is referenced now: a new request cannot get blocks, and says so without changing anything. */
    la_cache_stats before = stats_of(m);
    add(m, 4, a, 256);
    la_cache_step step;
    cr_expect_eq(la_cache_request_schedule(m, 4, 256, &step), LA_CACHE_ERR_KV_EXHAUSTED);
    la_cache_stats after = stats_of(m);
    before.lookups++, before.lookup_tokens += 256, before.live_requests++; /* the add itself */
    cr_expect_eq(memcmp(&before, &after, sizeof before), 0);
    cr_expect_eq(la_cache_check(m), LA_CACHE_OK, "%s", la_cache_last_error(m));

    /* b's request ends: its cached blocks can be taken now, b's prefix is still found until then. */
    cr_assert_eq(la_cache_request_free(m, 2), LA_CACHE_OK);
    d = desc_of(5, b, 256);
    cr_assert_eq(la_cache_find_longest_hit(m, &d, &hit), LA_CACHE_OK);
    cr_expect_eq(hit.matched_tokens, 256);
    schedule(m, 4, 256);
    commit(m, 4);
    free(a), free(b), free(cq);
    la_cache_destroy(m);
}

Test(cache_manager, zero_checkpoint_budget_caches_kv_but_never_hits)
{
    la_cache_config c = base_config(16, 256, 0);
    la_cache_manager *m = make(&c);
    int32_t *p = tokens_from(1, 300);
    add(m, 1, p, 300);
    la_cache_step step = prefill(m, 1);
    cr_expect_eq(step.num_checkpoints, 0);
    la_cache_hit hit = add(m, 2, p, 300);
    cr_expect_eq(hit.hit_tokens, 0);
    cr_expect_eq(hit.matched_tokens, 300 / 16 * 16, "KV is indexed per gcd(block size, match unit) tokens");
    cr_expect_eq(stats_of(m).checkpoints_skipped, 0);
    free(p);
    la_cache_destroy(m);
}

Test(cache_manager, full_budget_of_pinned_checkpoints_skips_new_ones)
{
    la_cache_config c = base_config(16, 256, 1);
    la_cache_manager *m = make(&c);
    int32_t *p = tokens_from(1, 300), *q = tokens_from(5000, 300);
    add(m, 1, p, 300);
    prefill(m, 1);
    la_cache_hit hit = add(m, 2, p, 300); /* pins the only checkpoint until its first step commits */
    cr_assert_gt(hit.hit_tokens, 0);
    add(m, 3, q, 300);
    la_cache_step step = schedule(m, 3, 300);
    cr_expect_eq(step.num_checkpoints, 0);
    cr_expect_eq(stats_of(m).checkpoints_skipped, 1);
    commit(m, 3);
    free(p), free(q);
    la_cache_destroy(m);
}

/* ---- mode (b): linear-state group only, under a host coordinator ----------------------------------------------- */

/* A host attention group with block size 16 whose KV is cached for the first `cached` tokens. */
static int64_t attention_hit(int64_t cached, int64_t max_length) { return (max_length < cached ? max_length : cached) / 16 * 16; }

Test(cache_manager, state_group_intersects_with_a_coordinators_attention_hit)
{
    la_cache_config c;
    memset(&c, 0, sizeof c);
    c.block_size = 16;
    c.max_checkpoints = 8;
    c.policy = la_cache_policy_default();
    c.policy.places = LA_CACHE_AT_INTERVAL;
    c.policy.every_n_blocks = 4; /* checkpoint every 64 tokens */
    la_cache_manager *m = make(&c);
    int32_t *p = tokens_from(1, 400);
    add(m, 1, p, 400);
    la_cache_step step = prefill(m, 1);
    cr_expect_eq(step.num_blocks, 0, "no KV in this mode");
    cr_expect_eq(step.num_checkpoints, 400 / 64);

    /* The coordinator's fixed point: every group lowers the length until both agree. */
    const int64_t attention_cached = 150;
    la_cache_request_desc d = desc_of(2, p, 400);
    d.hit_alignment = 16;
    int64_t length = 399;
    for (;;) {
        int64_t attn = attention_hit(attention_cached, length);
        d.max_hit_tokens = attn;
        la_cache_hit hit;
        cr_assert_eq(la_cache_find_longest_hit(m, &d, &hit), LA_CACHE_OK);
        if (hit.hit_tokens == length) break;
        length = hit.hit_tokens;
    }
    cr_expect_eq(length, attention_cached / 64 * 64);
    d.max_hit_tokens = length;
    la_cache_hit hit;
    cr_assert_eq(la_cache_request_add(m, &d, &hit), LA_CACHE_OK);
    cr_expect_eq(hit.hit_tokens, length);
    step = schedule(m, 2, 400 - length);
    cr_expect_eq(step.init, LA_CACHE_INIT_FROM_SLOT);
    commit(m, 2);
    free(p);
    la_cache_destroy(m);
}

Test(cache_manager, state_group_with_a_small_index_keeps_working)
{
    la_cache_config c;
    memset(&c, 0, sizeof c);
    c.block_size = 64;
    c.max_checkpoints = 4;
    c.max_index_entries = 6;
    c.policy = la_cache_policy_default();
    la_cache_manager *m = make(&c);
    for (uint64_t id = 1; id <= 5; id++) {
        int32_t *p = tokens_from((int32_t)id * 10000, 500);
        add(m, id, p, 500);
        prefill(m, id);
        cr_assert_eq(la_cache_request_free(m, id), LA_CACHE_OK);
        cr_assert_eq(la_cache_check(m), LA_CACHE_OK, "%s", la_cache_last_error(m));
        free(p);
    }
    cr_expect_leq(stats_of(m).index_entries, 6);
    cr_expect_gt(stats_of(m).index_entries_evicted, 0);
    la_cache_destroy(m);
}
