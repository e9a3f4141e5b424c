/*
 * checkpoint_policy.h — where the prefix cache writes linear-state checkpoints.
 *
 * A checkpoint is the linear layers' state after the first p tokens of a sequence, written into a state slot by the
 * step that computes token p. Checkpoints only ever lie on multiples of the policy's match unit (a multiple of the
 * kernels' checkpoint alignment, 64), and a prefix hit always ends on one, so the unit is the granularity of reuse.
 * The policy picks, for each step of a request, which of those positions get a checkpoint. The choice is a pure
 * function of the step and what the manager learnt about the request at admission, so it is tested on its own.
 */
#ifndef LINATTN_CACHE_CHECKPOINT_POLICY_H
#define LINATTN_CACHE_CHECKPOINT_POLICY_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Places a checkpoint can go (bits of la_cache_policy.places).
 *
 * Prompt-end and turn-end checkpoints are private to a chain: only a later request extending it (the next turn)
 * wants them. The manager keeps one slot per chain for them, moving forward: a request's next private checkpoint is
 * written over its previous one (or over the private one it restored from), and one it could not write over is
 * demoted, first to evict. A private checkpoint that does not move its chain's slot only takes a free, demoted or
 * presumed-dead private slot, never a live chain's or a shared one. Branch and interval checkpoints are shared, may
 * evict anything, and are evicted last. (Eviction order: cache/README.md.)
 */
enum {
    /* The last match-unit boundary inside the prompt: a later request extending this prompt (the next turn of a
     * chat, a longer prompt with the same start) restarts there. */
    LA_CACHE_AT_PROMPT_END = 1u << 0,
    /* The last match-unit boundary reached while generating: the end of the turn, for the next turn. Rewritten
     * every match unit while the request generates; one that lost its slot only takes a demoted or presumed-dead
     * one, so decoding requests never evict each other's live checkpoints. */
    LA_CACHE_AT_TURN_END = 1u << 1,
    /* Where the prompt forks from the cached chain: the chain goes on past that point with other tokens (an earlier
     * request shares the prefix and diverges there), and no checkpoint is cached there yet. */
    LA_CACHE_AT_BRANCH = 1u << 2,
    /* Every every_n_blocks KV blocks (positions that are also multiples of the match unit). */
    LA_CACHE_AT_INTERVAL = 1u << 3,
    /* At the end of every step that ends on a match-unit boundary and nowhere else: vLLM's "align" mode, where the
     * scheduler trims prefill chunks to block multiples and the state is saved when a block fills. */
    LA_CACHE_AT_ALIGNED_STEP_END = 1u << 4
};

typedef struct la_cache_policy {
    int32_t match_unit;     /* tokens; a multiple of the manager's checkpoint alignment */
    uint32_t places;        /* LA_CACHE_AT_* bits; 0 = never write checkpoints */
    int32_t every_n_blocks; /* for LA_CACHE_AT_INTERVAL, >= 1 */
} la_cache_policy;

/* Match unit 64, checkpoints at prompt ends, turn ends and branch points. */
la_cache_policy la_cache_policy_default(void);

/* What the policy looks at for one step, which computes tokens start .. end-1 of a request (so the state after
 * `end` tokens is its final state and positions start+1 .. end can be checkpointed). */
typedef struct la_cache_step_window {
    int64_t start;
    int64_t end;
    int64_t prompt_tokens;       /* prompt length: positions beyond it are generated tokens */
    int64_t branch_position;     /* where the prompt leaves the cached chain, on a match unit; 0 = none */
    int32_t prompt_end_cached;   /* nonzero: a checkpoint already exists at the prompt-end position */
    int32_t block_size;          /* KV block size, for LA_CACHE_AT_INTERVAL */
} la_cache_step_window;

typedef struct la_cache_planned_checkpoint {
    int64_t position;
    uint32_t places; /* the LA_CACHE_AT_* bits that asked for this position */
} la_cache_planned_checkpoint;

/*
 * The checkpoints of one step, ascending, no duplicates, each in (start, end] and on a match unit. Writes at most
 * `capacity` entries to out (which may be NULL when capacity is 0) and returns how many there are in all, so a
 * caller can size its buffer with a first call. The policy must be valid (la_cache_policy_check).
 */
int64_t la_cache_policy_plan(const la_cache_policy *policy, const la_cache_step_window *window,
                             la_cache_planned_checkpoint *out, int64_t capacity);

/* 0 if the policy is usable with this checkpoint alignment and block size, else -1 with a reason in message. */
int la_cache_policy_check(const la_cache_policy *policy, int32_t checkpoint_alignment, int32_t block_size,
                          char *message, uint64_t message_size);

#ifdef __cplusplus
}
#endif

#endif
