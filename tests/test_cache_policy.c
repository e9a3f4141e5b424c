/* Checkpoint policy: validation and the positions it picks for a step. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "cache/checkpoint_policy.h"

static la_cache_policy policy_with(uint32_t places)
{
    la_cache_policy p = la_cache_policy_default();
    p.places = places;
    return p;
}

static la_cache_step_window window(int64_t start, int64_t end, int64_t prompt)
{
    la_cache_step_window w = {start, end, prompt, 0, 0, 16};
    return w;
}

/* Plan into a fixed buffer; returns the count. */
static int64_t plan(const la_cache_policy *p, const la_cache_step_window *w, la_cache_planned_checkpoint out[64])
{
    int64_t n = la_cache_policy_plan(p, w, out, 64);
    cr_assert_leq(n, 64);
    return n;
}

Test(cache_policy, default_is_valid_and_64_aligned)
{
    la_cache_policy p = la_cache_policy_default();
    cr_expect_eq(la_cache_policy_check(&p, 64, 16, NULL, 0), 0);
    cr_expect_eq(p.match_unit % 64, 0);
}

Test(cache_policy, rejects_bad_policies_with_a_reason)
{
    la_cache_policy bad[4];
    for (int i = 0; i < 4; i++) bad[i] = la_cache_policy_default();
    bad[0].match_unit = 0;
    bad[1].match_unit = 96;
    bad[2].places = 1u << 30;
    bad[3].places = LA_CACHE_AT_INTERVAL;
    bad[3].every_n_blocks = 0;
    for (int i = 0; i < 4; i++) {
        char message[128] = "";
        cr_expect_eq(la_cache_policy_check(&bad[i], 64, 16, message, sizeof message), -1, "case %d", i);
        cr_expect_neq(message[0], '\0', "case %d", i);
    }
}

Test(cache_policy, prompt_end_is_the_last_unit_boundary_of_the_prompt)
{
    la_cache_policy p = policy_with(LA_CACHE_AT_PROMPT_END);
    la_cache_planned_checkpoint out[64];
    la_cache_step_window w = window(0, 300, 300);
    cr_assert_eq(plan(&p, &w, out), 1);
    cr_expect_eq(out[0].position, 300 / 64 * 64);
    cr_expect_eq(out[0].places, LA_CACHE_AT_PROMPT_END);
    w.prompt_end_cached = 1;
    cr_expect_eq(plan(&p, &w, out), 0, "already cached there");
    w = window(0, 200, 300); /* a first chunk that stops before the prompt end */
    cr_expect_eq(plan(&p, &w, out), 0);
    w = window(0, 50, 50); /* a prompt shorter than one unit has no boundary */
    cr_expect_eq(plan(&p, &w, out), 0);
}

Test(cache_policy, turn_end_only_while_generating)
{
    la_cache_policy p = policy_with(LA_CACHE_AT_TURN_END);
    la_cache_planned_checkpoint out[64];
    la_cache_step_window w = window(0, 300, 300);
    cr_expect_eq(plan(&p, &w, out), 0, "prefill is not a turn end");
    w = window(318, 319, 100);
    cr_expect_eq(plan(&p, &w, out), 0);
    w = window(319, 320, 100);
    cr_assert_eq(plan(&p, &w, out), 1);
    cr_expect_eq(out[0].position, 320);
    cr_expect_eq(out[0].places, LA_CACHE_AT_TURN_END);
    w = window(300, 400, 100); /* a multi-token step (speculative decoding): the last boundary only */
    cr_assert_eq(plan(&p, &w, out), 1);
    cr_expect_eq(out[0].position, 384);
}

Test(cache_policy, branch_point_when_inside_the_step_and_on_a_unit)
{
    la_cache_policy p = policy_with(LA_CACHE_AT_BRANCH);
    la_cache_planned_checkpoint out[64];
    la_cache_step_window w = window(0, 700, 700);
    w.branch_position = 640;
    cr_assert_eq(plan(&p, &w, out), 1);
    cr_expect_eq(out[0].position, 640);
    w.start = 640;
    cr_expect_eq(plan(&p, &w, out), 0, "the step starts there: its state is not written by this step");
    w = window(0, 700, 700);
    w.branch_position = 650;
    cr_expect_eq(plan(&p, &w, out), 0, "not on the match unit");
}

Test(cache_policy, coinciding_places_give_one_checkpoint_with_every_reason)
{
    la_cache_policy p = policy_with(LA_CACHE_AT_PROMPT_END | LA_CACHE_AT_BRANCH | LA_CACHE_AT_TURN_END |
                                    LA_CACHE_AT_INTERVAL);
    p.every_n_blocks = 4; /* 64 tokens */
    la_cache_planned_checkpoint out[64];
    la_cache_step_window w = window(0, 256, 128);
    w.branch_position = 128;
    int64_t n = plan(&p, &w, out);
    cr_assert_eq(n, 4, "64, 128, 192, 256");
    for (int64_t i = 0; i < n; i++) cr_expect_eq(out[i].position, 64 * (i + 1));
    cr_expect_eq(out[0].places, LA_CACHE_AT_INTERVAL);
    cr_expect_eq(out[1].places, LA_CACHE_AT_PROMPT_END | LA_CACHE_AT_BRANCH | LA_CACHE_AT_INTERVAL);
    cr_expect_eq(out[3].places, LA_CACHE_AT_TURN_END | LA_CACHE_AT_INTERVAL);
}

static int64_t gcd(int64_t a, int64_t b) { return b ? gcd(b, a % b) : a; }

Test(cache_policy, interval_is_on_both_the_block_period_and_the_unit)
{
    la_cache_policy p = policy_with(LA_CACHE_AT_INTERVAL);
    p.every_n_blocks = 3;
    la_cache_step_window w = window(0, 2000, 2000);
    w.block_size = 48;
    const int64_t period = 3 * 48, step = period / gcd(period, 64) * 64;
    la_cache_planned_checkpoint out[64];
    int64_t n = plan(&p, &w, out);
    cr_assert_eq(n, 2000 / step);
    for (int64_t i = 0; i < n; i++) {
        cr_expect_eq(out[i].position % period, 0);
        cr_expect_eq(out[i].position % 64, 0);
    }
}

Test(cache_policy, aligned_step_end_models_vllm_align_mode)
{
    la_cache_policy p = policy_with(LA_CACHE_AT_ALIGNED_STEP_END);
    p.match_unit = 1056;
    cr_assert_eq(la_cache_policy_check(&p, 16, 1056, NULL, 0), 0);
    la_cache_planned_checkpoint out[64];
    la_cache_step_window w = window(0, 2112, 3000);
    cr_assert_eq(plan(&p, &w, out), 1);
    cr_expect_eq(out[0].position, 2112, "only the chunk end, not the block boundary inside it");
    w = window(2112, 3000, 3000);
    cr_expect_eq(plan(&p, &w, out), 0);
}

Test(cache_policy, count_is_total_even_when_the_buffer_is_short)
{
    la_cache_policy p = policy_with(LA_CACHE_AT_INTERVAL);
    p.every_n_blocks = 4;
    la_cache_step_window w = window(0, 64 * 10, 64 * 10);
    la_cache_planned_checkpoint out[3];
    cr_expect_eq(la_cache_policy_plan(&p, &w, NULL, 0), 10);
    cr_expect_eq(la_cache_policy_plan(&p, &w, out, 3), 10);
    cr_expect_eq(out[2].position, 192);
}

Test(cache_policy, random_windows_give_sorted_unique_positions_inside_the_step)
{
    srand(12345);
    la_cache_planned_checkpoint out[64];
    for (int trial = 0; trial < 2000; trial++) {
        la_cache_policy p = policy_with((uint32_t)(rand() % 32));
        p.match_unit = 64 * (1 + rand() % 4);
        p.every_n_blocks = 1 + rand() % 8;
        int64_t prompt = 1 + rand() % 3000, start = rand() % 3000, end = start + 1 + rand() % 1500;
        la_cache_step_window w = window(start, end, prompt);
        w.block_size = 16 * (1 + rand() % 8);
        w.branch_position = (rand() % 50) * 64;
        w.prompt_end_cached = rand() % 2;
        int64_t n = la_cache_policy_plan(&p, &w, out, 64);
        cr_assert_leq(n, 64);
        for (int64_t i = 0; i < n; i++) {
            cr_assert(out[i].position > start && out[i].position <= end, "trial %d", trial);
            cr_assert_eq(out[i].position % p.match_unit, 0, "trial %d", trial);
            if (i) cr_assert_gt(out[i].position, out[i - 1].position, "trial %d", trial);
            cr_assert_neq(out[i].places, 0, "trial %d", trial);
            cr_assert_eq(out[i].places & ~p.places, 0, "trial %d: a reason the policy does not have", trial);
            if (out[i].places & LA_CACHE_AT_TURN_END) cr_assert_gt(out[i].position, prompt, "trial %d", trial);
        }
    }
}
