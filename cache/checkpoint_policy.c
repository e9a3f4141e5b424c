/* Checkpoint placement: which match-unit boundaries of a step get a checkpoint. */
#include "checkpoint_policy.h"

#include <stdio.h>

#define KNOWN_PLACES                                                                                                  \
    (LA_CACHE_AT_PROMPT_END | LA_CACHE_AT_TURN_END | LA_CACHE_AT_BRANCH | LA_CACHE_AT_INTERVAL |                     \
     LA_CACHE_AT_ALIGNED_STEP_END)

la_cache_policy la_cache_policy_default(void)
{
    la_cache_policy policy = {64, LA_CACHE_AT_PROMPT_END | LA_CACHE_AT_TURN_END | LA_CACHE_AT_BRANCH, 1};
    return policy;
}

int la_cache_policy_check(const la_cache_policy *policy, int32_t checkpoint_alignment, int32_t block_size,
                          char *message, uint64_t message_size)
{
    const char *why = NULL;
    if (checkpoint_alignment < 1)
        why = "checkpoint alignment must be >= 1";
    else if (policy->match_unit < 1 || policy->match_unit % checkpoint_alignment != 0)
        why = "policy.match_unit must be a positive multiple of the checkpoint alignment";
    else if (policy->places & ~(uint32_t)KNOWN_PLACES)
        why = "policy.places has unknown bits";
    else if ((policy->places & LA_CACHE_AT_INTERVAL) && policy->every_n_blocks < 1)
        why = "policy.every_n_blocks must be >= 1 with LA_CACHE_AT_INTERVAL";
    else if ((policy->places & LA_CACHE_AT_INTERVAL) && block_size < 1)
        why = "LA_CACHE_AT_INTERVAL needs a block size >= 1";
    if (!why) return 0;
    if (message && message_size) snprintf(message, (size_t)message_size, "%s", why);
    return -1;
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Add a single position to a small sorted, duplicate-free list, merging the reasons of equal positions. */
static void add_single(la_cache_planned_checkpoint *list, int *count, int64_t position, uint32_t place)
{
    int i = 0;
    while (i < *count && list[i].position < position) i++;
    if (i < *count && list[i].position == position) {
        list[i].places |= place;
        return;
    }
    for (int j = *count; j > i; j--) list[j] = list[j - 1];
    list[i].position = position;
    list[i].places = place;
    (*count)++;
}

static int in_window(const la_cache_step_window *w, int64_t position)
{
    return position > w->start && position <= w->end;
}

/* The positions that are single points (not the interval series), at most four. */
static int single_positions(const la_cache_policy *policy, const la_cache_step_window *w,
                            la_cache_planned_checkpoint list[4])
{
    const int64_t unit = policy->match_unit;
    int count = 0;
    if (policy->places & LA_CACHE_AT_PROMPT_END) {
        int64_t prompt_end = w->prompt_tokens / unit * unit;
        if (prompt_end > 0 && !w->prompt_end_cached && in_window(w, prompt_end)) add_single(list, &count, prompt_end, LA_CACHE_AT_PROMPT_END);
    }
    if ((policy->places & LA_CACHE_AT_BRANCH) && w->branch_position > 0 && w->branch_position % unit == 0 &&
        in_window(w, w->branch_position))
        add_single(list, &count, w->branch_position, LA_CACHE_AT_BRANCH);
    if (policy->places & LA_CACHE_AT_TURN_END) {
        int64_t last = w->end / unit * unit;
        if (last > w->prompt_tokens && in_window(w, last)) add_single(list, &count, last, LA_CACHE_AT_TURN_END);
    }
    if ((policy->places & LA_CACHE_AT_ALIGNED_STEP_END) && w->end % unit == 0 && in_window(w, w->end))
        add_single(list, &count, w->end, LA_CACHE_AT_ALIGNED_STEP_END);
    return count;
}

int64_t la_cache_policy_plan(const la_cache_policy *policy, const la_cache_step_window *window,
                             la_cache_planned_checkpoint *out, int64_t capacity)
{
    la_cache_planned_checkpoint singles[4];
    int num_singles = single_positions(policy, window, singles);

    /* The interval series: multiples of lcm(every_n_blocks * block_size, match_unit) inside the window. */
    int64_t interval = 0, next_interval = INT64_MAX;
    if (policy->places & LA_CACHE_AT_INTERVAL) {
        int64_t period = (int64_t)policy->every_n_blocks * window->block_size;
        interval = period / gcd64(period, policy->match_unit) * policy->match_unit;
        next_interval = (window->start / interval + 1) * interval;
    }

    int64_t total = 0;
    int s = 0;
    while (s < num_singles || next_interval <= window->end) {
        la_cache_planned_checkpoint item;
        if (s < num_singles && singles[s].position <= next_interval) {
            item = singles[s++];
            if (item.position == next_interval) {
                item.places |= LA_CACHE_AT_INTERVAL;
                next_interval += interval;
            }
        } else {
            item.position = next_interval;
            item.places = LA_CACHE_AT_INTERVAL;
            next_interval += interval;
        }
        if (total < capacity) out[total] = item;
        total++;
    }
    return total;
}
