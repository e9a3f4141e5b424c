/*
 * block_manager.h — the prefix cache of hybrid models: KV blocks of the attention layers and state checkpoints of
 * the linear-attention layers, managed together (internal C API; the ABI exposes it later).
 *
 * Model
 * - Tokens are grouped in units of U = gcd(block_size, match_unit) tokens. A prefix index holds one entry per cached
 *   unit, keyed by a chained hash (parent entry's hash, the unit's token ids, an extra key for adapters or
 *   multimodal inputs) and checked token by token, so a hit is exact, never a hash collision.
 * - Attention: one KV pool of num_kv_blocks blocks of block_size tokens. A block id names the same block in every
 *   attention layer group's KV tensor (the host sizes each group's tensor; the bytes only set the budget).
 *   Requests share full cached blocks by reference; a hit that ends inside a block gets a fresh block and a copy
 *   instruction for the block's first tokens.
 * - Linear layers: a checkpoint is the state after p tokens, held in a state slot (int32, taken from the host's
 *   state pool through la_cache_slot_allocator). At most max_checkpoints are held; the policy
 *   (checkpoint_policy.h) says where they are written.
 * - A hit is the longest prefix usable by every layer: its KV is cached and a checkpoint lies exactly at its end.
 * - Life of a request: add (lookup + reuse) -> [schedule a step -> the host runs it -> commit]* -> free. Only a
 *   committed step's KV units and checkpoints become visible to lookups, so an aborted or evicted request leaves no
 *   half-written entry behind.
 * - Eviction: only what no live request references. Index entries (with their KV block references) leaf first,
 *   least recently used first, when KV blocks run out. Checkpoints when the checkpoint budget runs out: superseded
 *   private ones, then private (prompt / turn ends), then shared (branch / interval) ones, least recently used first
 *   within each; a new private checkpoint never evicts a shared one or a live chain's, only a superseded one or one
 *   idle for more than twice the usual reuse distance (cache/README.md).
 *
 * Two ways to use it
 * (a) Whole manager (num_attn_groups >= 1): block tables for the attention layers, and per step the state init
 *     (zero / continue / restore from a checkpoint slot), the checkpoint writes and the KV copy to put in the batch.
 * (b) Linear-state group only (num_attn_groups == 0), for a host with its own KV cache coordinator: the calls map
 *     onto a KV cache manager group's (find_longest_hit ~ find longest cache hit, request_add + request_schedule ~
 *     allocate for new tokens, request_commit ~ cache full blocks, request_free ~ free), and find_longest_hit takes
 *     a maximum length and an alignment so the coordinator can intersect our hit with its attention groups'.
 *
 * Errors: every call returns a status; on error nothing changes (cache contents, references, statistics, slots)
 * and la_cache_last_error says why. Not thread-safe: one manager is used by one thread at a time. Never prints/aborts.
 */
#ifndef LINATTN_CACHE_BLOCK_MANAGER_H
#define LINATTN_CACHE_BLOCK_MANAGER_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint_policy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t la_cache_status;
enum {
    LA_CACHE_OK = 0,
    LA_CACHE_ERR_NULL_ARGUMENT = 1,     /* a required pointer is NULL */
    LA_CACHE_ERR_INVALID_ARGUMENT = 2,  /* a value is out of range; the message names it */
    LA_CACHE_ERR_OUT_OF_MEMORY = 3,     /* a host allocation failed */
    LA_CACHE_ERR_KV_EXHAUSTED = 4,      /* not enough KV blocks free or evictable for the step */
    LA_CACHE_ERR_SLOT_ALLOC = 5,        /* the state slot allocator refused a checkpoint slot */
    LA_CACHE_ERR_UNKNOWN_REQUEST = 6,   /* no live request has this id */
    LA_CACHE_ERR_DUPLICATE_REQUEST = 7, /* a live request already has this id */
    LA_CACHE_ERR_TOKEN_RANGE = 8,       /* a step beyond the request's known tokens, or an empty step */
    LA_CACHE_ERR_STEP_PENDING = 9,      /* a step is already scheduled and not committed */
    LA_CACHE_ERR_NO_STEP = 10,          /* commit without a scheduled step */
    LA_CACHE_ERR_INCONSISTENT = 11      /* la_cache_check found a broken invariant (a bug) */
};

/* Values as linattn_init, so a step's init goes into linattn_seq_desc.init unchanged. */
enum { LA_CACHE_INIT_ZERO = 0, LA_CACHE_INIT_CONTINUE = 1, LA_CACHE_INIT_FROM_SLOT = 2 };

/* Where checkpoint slots come from (the host's / lead's state pool). NULL functions: the manager numbers the
 * slots 0 .. max_checkpoints-1 itself. */
typedef struct la_cache_slot_allocator {
    void *user;
    int (*alloc_slot)(void *user, int32_t *out_slot); /* 0 and *out_slot set, or nonzero: no slot */
    void (*free_slot)(void *user, int32_t slot);
} la_cache_slot_allocator;

/* Host memory for the manager's own bookkeeping. NULL functions: malloc / free. */
typedef struct la_cache_host_allocator {
    void *user;
    void *(*alloc)(void *user, size_t bytes); /* NULL: failed */
    void (*free)(void *user, void *ptr);
} la_cache_host_allocator;

typedef struct la_cache_config {
    int32_t block_size;             /* tokens per KV block, >= 1 */
    int32_t num_attn_groups;        /* attention layer groups; 0 = linear-state group only (mode b) */
    const uint64_t *kv_block_bytes; /* [num_attn_groups] bytes of one block in each group's KV tensor */
    int32_t num_kv_blocks;          /* 0 = kv_byte_budget / sum(kv_block_bytes) */
    uint64_t kv_byte_budget;
    uint64_t checkpoint_bytes;      /* state bytes of one checkpoint slot (linattn_pool_info.slot_bytes) */
    int32_t max_checkpoints;        /* 0 = checkpoint_byte_budget / checkpoint_bytes (0 is allowed: no caching of
                                       linear state, so every hit is 0) */
    uint64_t checkpoint_byte_budget;
    int32_t checkpoint_alignment;   /* linattn_capabilities.checkpoint_alignment (64); 0 = 64 */
    int32_t max_index_entries;      /* prefix index capacity; 0 = enough for every KV block's units (mode a), or
                                       65536 (mode b). */
    la_cache_policy policy;
    la_cache_slot_allocator slots;
    la_cache_host_allocator host;
} la_cache_config;

/* A key mixed into the hash of every unit that overlaps tokens [start, end): an adapter id over the whole prompt,
 * a multimodal input's content hash over its placeholder tokens, a cache salt. */
typedef struct la_cache_extra_key {
    int64_t start;
    int64_t end;
    uint64_t key;
} la_cache_extra_key;

typedef struct la_cache_request_desc {
    uint64_t request_id;
    const int32_t *tokens; /* the prompt */
    int64_t num_tokens;    /* >= 1 */
    const la_cache_extra_key *extra_keys; /* may be NULL when num_extra_keys is 0 */
    int32_t num_extra_keys;
    int64_t max_hit_tokens; /* < 0: no limit. A hit is always < num_tokens (the last prompt token is computed). */
    int32_t hit_alignment;  /* 0 or 1: any checkpoint; else the hit is a multiple of it (mode b: the attention
                               block size of the host's coordinator) */
} la_cache_request_desc;

typedef struct la_cache_hit {
    int64_t hit_tokens;      /* reusable prefix: cached KV and a checkpoint at exactly this position */
    int64_t matched_tokens;  /* prefix found in the index (KV cached, no checkpoint needed), >= hit_tokens */
    int32_t checkpoint_slot; /* the slot holding the state after hit_tokens tokens; -1 when hit_tokens is 0 */
} la_cache_hit;

typedef struct la_cache_checkpoint_write {
    int64_t position; /* write the state after this many tokens ... */
    int32_t slot;     /* ... into this slot (linattn_checkpoint_desc) */
} la_cache_checkpoint_write;

/* Copy the first num_tokens token rows of KV block src_block into dst_block in every attention group, before the
 * step runs (a hit that ends inside a block). */
typedef struct la_cache_kv_copy {
    int32_t src_block;
    int32_t dst_block;
    int32_t num_tokens;
} la_cache_kv_copy;

/* One scheduled step of one request. Pointers stay valid until the next call that changes this request. */
typedef struct la_cache_step {
    int64_t start_position; /* tokens already computed: the step computes start_position .. +num_tokens-1 */
    int32_t num_tokens;
    int32_t init;           /* LA_CACHE_INIT_* for linattn_seq_desc.init */
    int32_t source_slot;    /* LA_CACHE_INIT_FROM_SLOT: the checkpoint slot to start from; else -1 */
    int32_t num_checkpoints;
    const la_cache_checkpoint_write *checkpoints;
    int32_t num_kv_copies;  /* 0 or 1 */
    la_cache_kv_copy kv_copy;
    int32_t num_blocks;     /* block table covering positions 0 .. start_position + num_tokens - 1 */
    const int32_t *block_table;
} la_cache_step;

typedef struct la_cache_request_info {
    int64_t num_tokens;      /* prompt + appended */
    int64_t prompt_tokens;
    int64_t computed_tokens; /* committed */
    int64_t hit_tokens;
    int32_t step_pending;
    int32_t num_blocks;
    const int32_t *block_table;
} la_cache_request_info;

typedef struct la_cache_stats { /* all 64-bit: no padding, so two snapshots compare with memcmp */
    uint64_t lookups;               /* requests admitted */
    uint64_t lookup_tokens;         /* their prompt tokens */
    uint64_t hits;                  /* admissions with hit_tokens > 0 */
    uint64_t hit_tokens;            /* prompt tokens not recomputed thanks to hits */
    uint64_t checkpoints_written;   /* made visible by a committed step */
    uint64_t checkpoints_restored;  /* committed steps that started from a checkpoint */
    uint64_t checkpoints_evicted;   /* visible checkpoints dropped for room */
    uint64_t checkpoints_discarded; /* written by a step that was never committed, or already cached */
    uint64_t checkpoints_skipped;   /* wanted by the policy while the budget was full of referenced ones */
    uint64_t index_entries_evicted;
    uint64_t kv_copies;             /* partial-block copies handed out */
    int64_t checkpoints_in_use;     /* visible + pending */
    int64_t max_checkpoints;
    uint64_t checkpoint_bytes_in_use;
    int64_t kv_blocks_total;
    int64_t kv_blocks_free;
    int64_t kv_blocks_cached_only;  /* held only by evictable cache entries */
    uint64_t kv_bytes_in_use;       /* blocks not free */
    int64_t index_entries;
    int64_t live_requests;
} la_cache_stats;

typedef struct la_cache_manager la_cache_manager;

/* Create a manager. message (may be NULL) receives the reason of a failure. */
la_cache_status la_cache_create(const la_cache_config *config, la_cache_manager **out_manager, char *message,
                                size_t message_size);

/* Destroy a manager, giving every checkpoint slot back to the slot allocator. NULL is fine. */
void la_cache_destroy(la_cache_manager *manager);

/* Message of the last failed call on this manager ("" if none). */
const char *la_cache_last_error(const la_cache_manager *manager);

/* The hit la_cache_request_add would give, without admitting anything. Changes nothing, statistics included. */
la_cache_status la_cache_find_longest_hit(la_cache_manager *manager, const la_cache_request_desc *request,
                                          la_cache_hit *out_hit);

/* Admit a request: look up its prompt, take references on the hit's KV blocks and checkpoint, and remember its
 * tokens. *out_hit (may be NULL) receives the hit. */
la_cache_status la_cache_request_add(la_cache_manager *manager, const la_cache_request_desc *request,
                                     la_cache_hit *out_hit);

/* Append generated tokens (before scheduling the step that computes them). */
la_cache_status la_cache_request_append(la_cache_manager *manager, uint64_t request_id, const int32_t *tokens,
                                        int64_t num_tokens);

/*
 * Schedule the next num_tokens tokens of a request: allocates KV blocks for them (evicting cached blocks if needed)
 * and checkpoint slots where the policy wants checkpoints (evicting unreferenced checkpoints if needed; a
 * checkpoint with no room left is skipped). *out_step describes what to put in the batch. One step at a time.
 */
la_cache_status la_cache_request_schedule(la_cache_manager *manager, uint64_t request_id, int64_t num_tokens,
                                          la_cache_step *out_step);

/* The scheduled step ran to completion: its tokens' KV units and its checkpoints become visible to lookups. */
la_cache_status la_cache_request_commit(la_cache_manager *manager, uint64_t request_id);

/* Finish or abort a request: drop its references; a step scheduled and not committed leaves nothing visible (its
 * checkpoint slots go back). What it committed stays cached. */
la_cache_status la_cache_request_free(la_cache_manager *manager, uint64_t request_id);

la_cache_status la_cache_get_request_info(const la_cache_manager *manager, uint64_t request_id,
                                          la_cache_request_info *out_info);

la_cache_status la_cache_get_stats(const la_cache_manager *manager, la_cache_stats *out_stats);

/* Check every invariant of the manager from scratch (slow; for tests): LA_CACHE_OK, LA_CACHE_ERR_INCONSISTENT with
 * the broken invariant in the message, or LA_CACHE_ERR_OUT_OF_MEMORY (it needs scratch memory, from calloc). */
la_cache_status la_cache_check(la_cache_manager *manager);

#ifdef __cplusplus
}
#endif

#endif
