/*
 * linattn.h — the stable C ABI of liblinattn.
 *
 * A serving engine loads liblinattn.so with dlopen, resolves the one exported symbol `linattn_get_api`, and from
 * then on calls the library only through the function table it returns. The library runs the linear-attention
 * layers of hybrid models (Gated DeltaNet, simple GLA), owns the memory for their per-sequence state, and writes
 * state checkpoints for prefix caching. The math each layer computes is specified in abi/MATH.md.
 *
 * Contract
 * - Versioning: `linattn_get_api(LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR, &api)`. A table of major M
 *   only ever grows by appending entries at its end (minor bumps), so a host built against an older minor keeps
 *   working; a different major, or a minor newer than the library's, is refused with LINATTN_ERR_ABI_VERSION.
 * - Every struct the host passes in starts with `struct_size` (set it to sizeof the struct as the host sees it).
 *   A size smaller than the 1.0 layout, or larger than the library knows, is refused with LINATTN_ERR_STRUCT_SIZE.
 * - Every call returns a linattn_status. On error nothing changes: no handle, slot, state byte or statistic, and
 *   out-parameters are left untouched. `last_error_message` says in words what was wrong (thread-local).
 *   The library never aborts, exits or prints.
 * - Handles are opaque. A handle used after it was destroyed, or never created, is refused with
 *   LINATTN_ERR_INVALID_HANDLE (the library keeps a registry of live handles; it never dereferences a dead one,
 *   though a new object of the same kind may later be given the same address).
 * - Memory: "host" pointers are ordinary CPU memory. "Device" pointers are CUDA device memory for a context on a
 *   CUDA device, and host memory for a context on the CPU backend (so a host written against the ABI runs
 *   unchanged on either).
 * - Streams: `linattn_stream_t` is `cudaStream_t` (same underlying type; pass it without a cast, NULL is the
 *   default stream). Work is enqueued on the given stream and the call returns without synchronising the device,
 *   except where a call says "synchronous". The CPU backend runs everything synchronously and ignores streams.
 * - Threads: the entry point, the version string and `last_error_message` may be called from any thread. One
 *   context and everything made from it must be used by one thread at a time (the host serialises); different
 *   contexts may be used concurrently from different threads.
 *
 * Written as plain C11; compiles as C++ too. Includes no CUDA header.
 */
#ifndef LINATTN_H
#define LINATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LINATTN_ABI_VERSION_MAJOR 1
#define LINATTN_ABI_VERSION_MINOR 0

#if defined(_WIN32)
#define LINATTN_EXPORT __declspec(dllexport)
#else
#define LINATTN_EXPORT __attribute__((visibility("default")))
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Basic types
 * ------------------------------------------------------------------------------------------------------------- */

struct CUstream_st;
typedef struct CUstream_st *linattn_stream_t; /* == cudaStream_t */

typedef int32_t linattn_status;
enum {
    LINATTN_OK = 0,
    LINATTN_ERR_NULL_ARGUMENT = 1,      /* a required pointer is NULL */
    LINATTN_ERR_STRUCT_SIZE = 2,        /* struct_size (or an element size) unknown to this library */
    LINATTN_ERR_ABI_VERSION = 3,        /* host and library ABI versions are incompatible */
    LINATTN_ERR_INVALID_HANDLE = 4,     /* handle destroyed, never created, or of another kind */
    LINATTN_ERR_UNKNOWN_LAYER_KIND = 5, /* layer kind not one of linattn_layer_kind */
    LINATTN_ERR_INVALID_SHAPE = 6,      /* head counts or dims invalid (e.g. v heads not a multiple of q/k heads) */
    LINATTN_ERR_UNSUPPORTED_DTYPE = 7,  /* dtype not supported for this use */
    LINATTN_ERR_SLOT_OUT_OF_RANGE = 8,  /* slot index < 0 or >= pool capacity */
    LINATTN_ERR_SLOT_NOT_ALLOCATED = 9, /* slot is free (e.g. freed twice, or used without allocating) */
    LINATTN_ERR_SLOT_CONFLICT = 10,     /* one slot written twice in a batch, or read and written */
    LINATTN_ERR_POOL_EXHAUSTED = 11,    /* no free slot */
    LINATTN_ERR_TOKEN_RANGE = 12,       /* token ranges overlap or exceed the packed stream */
    LINATTN_ERR_CHECKPOINT_POSITION = 13, /* checkpoint position outside the sequence's tokens or misaligned */
    LINATTN_ERR_PLAN_CAPACITY = 14,     /* batch larger than the plan was created for */
    LINATTN_ERR_LAYER_NOT_IN_POOL = 15, /* layer is not one of the pool's layers */
    LINATTN_ERR_IN_USE = 16,            /* object still referenced (layer used by a pool, pool by a plan) */
    LINATTN_ERR_INVALID_ARGUMENT = 17,  /* any other invalid value; the message names it */
    LINATTN_ERR_OUT_OF_MEMORY = 18,     /* host or device allocation failed */
    LINATTN_ERR_NO_DEVICE = 19,         /* CUDA backend requested but no usable device */
    LINATTN_ERR_DEVICE = 20,            /* a CUDA call failed; the message has CUDA's error string */
    LINATTN_ERR_NOT_IMPLEMENTED = 21,   /* declared hook not implemented by this library build */
    LINATTN_ERR_BUFFER_TOO_SMALL = 22,  /* a caller-provided buffer is smaller than needed */
    /* Prefix cache (linattn_prefix_cache) */
    LINATTN_ERR_KV_EXHAUSTED = 23,      /* not enough KV blocks free or evictable for the step */
    LINATTN_ERR_UNKNOWN_REQUEST = 24,   /* no live request of the cache has this id */
    LINATTN_ERR_DUPLICATE_REQUEST = 25, /* a live request of the cache already has this id */
    LINATTN_ERR_STEP_PENDING = 26,      /* the request's scheduled step is not committed yet (one step at a time) */
    LINATTN_ERR_NO_STEP = 27,           /* commit of a request that has no scheduled step */
    LINATTN_ERR_INTERNAL = 28           /* the library found its own bookkeeping inconsistent (a bug: report it) */
};

typedef int32_t linattn_layer_kind;
enum {
    LINATTN_LAYER_GATED_DELTANET = 1, /* Qwen3-Next / Qwen3.5 linear attention */
    LINATTN_LAYER_SIMPLE_GLA = 2      /* scalar-decay linear attention: Mamba2-SSD, Lightning, RetNet */
};

typedef int32_t linattn_dtype;
enum { LINATTN_DTYPE_F32 = 1, LINATTN_DTYPE_BF16 = 2 };

typedef int32_t linattn_backend_kind;
enum {
    LINATTN_BACKEND_AUTO = 0, /* CUDA when a device exists, unless LINATTN_BACKEND=cpu is set in the environment */
    LINATTN_BACKEND_CPU = 1,  /* the float64-accumulating reference; every pointer is host memory */
    LINATTN_BACKEND_CUDA = 2
};

/* A sequence's starting state in a batch. */
typedef int32_t linattn_init;
enum {
    LINATTN_INIT_ZERO = 0,      /* a new sequence: zero state, zero conv window; start_position must be 0 */
    LINATTN_INIT_CONTINUE = 1,  /* continue from the state in the sequence's own slot */
    LINATTN_INIT_FROM_SLOT = 2  /* start from the state in source_slot (a restored checkpoint) */
};

#define LINATTN_SLOT_NONE (-1) /* a padding sequence: skipped, its outputs are not written */

typedef struct linattn_context linattn_context;
typedef struct linattn_layer linattn_layer;
typedef struct linattn_pool linattn_pool;
typedef struct linattn_plan linattn_plan;

/* ---------------------------------------------------------------------------------------------------------------
 * Descriptors (host memory, read during the call only)
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct linattn_context_desc {
    uint32_t struct_size;
    linattn_backend_kind backend;
    int32_t device_ordinal; /* CUDA device; ignored by the CPU backend */
} linattn_context_desc;

/*
 * One linear-attention layer. Weights are host float32 arrays, copied during the call (free them after).
 * Channels of the short conv are the packed q/k/v stream: C = 2·num_qk_heads·head_dim_qk + num_v_heads·head_dim_v.
 */
typedef struct linattn_layer_desc {
    uint32_t struct_size;
    linattn_layer_kind kind;
    int32_t num_qk_heads;
    int32_t num_v_heads; /* a multiple of num_qk_heads; v head h reads q/k head h / (num_v_heads / num_qk_heads) */
    int32_t head_dim_qk; /* 1..256 */
    int32_t head_dim_v;  /* 1..256 */
    int32_t conv_width;  /* 0 = no short conv (q/k/v used as given), else 2..8 */
    int32_t qk_l2norm;   /* nonzero: q and k are L2-normalised per head after the conv */
    linattn_dtype state_dtype; /* recurrent state storage: F32 or BF16 */
    float scale;               /* applied to q; 0 means 1/sqrt(head_dim_qk) */
    const float *conv_weight;  /* [C][conv_width]; required when conv_width > 0 */
    const float *conv_bias;    /* [C] or NULL */
    const float *A_log;        /* [num_v_heads]; required */
    const float *dt_bias;      /* [num_v_heads] or NULL (zeros) */
} linattn_layer_desc;

/* A pool of state slots. Slot s holds, for every layer of the pool, one sequence's recurrent and conv state. */
typedef struct linattn_pool_desc {
    uint32_t struct_size;
    int32_t num_layers;
    linattn_layer *const *layers; /* the layers whose state the pool holds, all of one context */
    int32_t capacity;             /* number of slots; 0 = as many as fit in byte_budget */
    uint64_t byte_budget;         /* used when capacity is 0 */
} linattn_pool_desc;

/* Upper bounds of the batches one plan will describe; they fix the plan's memory (stable for CUDA graphs). */
typedef struct linattn_plan_desc {
    uint32_t struct_size;
    int32_t max_seqs;
    int32_t max_checkpoints;
    int64_t max_tokens;
} linattn_plan_desc;

/* One sequence of a batch. Its tokens are rows token_offset .. token_offset + num_tokens - 1 of the stream. */
typedef struct linattn_seq_desc {
    int64_t token_offset;
    int64_t start_position; /* absolute index in the sequence of its first token in this step */
    int32_t num_tokens;     /* 0 is allowed: the initial state is still moved into state_slot */
    int32_t state_slot;     /* read (CONTINUE) and written with the final state; LINATTN_SLOT_NONE = padding */
    linattn_init init;
    int32_t source_slot; /* for LINATTN_INIT_FROM_SLOT; ignored otherwise */
} linattn_seq_desc;

/*
 * Write the state after the first `position` tokens of sequence `seq_index` into checkpoint_slot. Requires
 * start_position < position <= start_position + num_tokens, and position a multiple of
 * linattn_capabilities.checkpoint_alignment or equal to start_position + num_tokens.
 */
typedef struct linattn_checkpoint_desc {
    int64_t position;
    int32_t seq_index;
    int32_t checkpoint_slot;
} linattn_checkpoint_desc;

typedef struct linattn_batch_desc {
    uint32_t struct_size;
    uint32_t seq_desc_size;        /* sizeof(linattn_seq_desc) */
    uint32_t checkpoint_desc_size; /* sizeof(linattn_checkpoint_desc) */
    int32_t num_seqs;
    const linattn_seq_desc *seqs;
    int64_t num_tokens; /* rows in the packed token stream */
    int32_t num_checkpoints;
    const linattn_checkpoint_desc *checkpoints; /* may be NULL when num_checkpoints is 0 */
} linattn_batch_desc;

/*
 * Per-layer inputs and output ("device" pointers). Activations are bf16 as raw uint16 bits. Row strides are in
 * elements; 0 means contiguous.
 *   qkv [num_tokens][C]            the pre-conv mixed q/k/v projection: q heads, then k heads, then v heads
 *   a   [num_tokens][num_v_heads]  decay input: g = -exp(A_log)·softplus(a + dt_bias); NULL for simple GLA means
 *                                  a constant decay g = -exp(A_log)
 *   b   [num_tokens][num_v_heads]  beta input: β = sigmoid(b); Gated DeltaNet only (ignored by simple GLA)
 *   out [num_tokens][num_v_heads][head_dim_v]  written for every token of every non-padding sequence
 */
typedef struct linattn_forward_args {
    uint32_t struct_size;
    linattn_dtype activation_dtype; /* LINATTN_DTYPE_BF16 */
    const void *qkv;
    const void *a;
    const void *b;
    void *out;
    int64_t qkv_row_stride;
    int64_t a_row_stride;
    int64_t b_row_stride;
    int64_t out_row_stride;
} linattn_forward_args;

/* Speculative decoding (declared; LINATTN_ERR_NOT_IMPLEMENTED in ABI 1.0 builds until it lands). */
typedef struct linattn_draft_desc {
    uint32_t struct_size;
    int32_t num_seqs;
    const int32_t *num_nodes;      /* [num_seqs] draft nodes per sequence (chain or tree) */
    const int32_t *parents;        /* per sequence, num_nodes parent indices (-1 = the committed state) */
} linattn_draft_desc;

typedef struct linattn_accept_desc {
    uint32_t struct_size;
    int32_t num_seqs;
    const int32_t *num_accepted; /* [num_seqs] */
    const int32_t *accepted_nodes; /* per sequence, num_accepted node indices along one root path */
} linattn_accept_desc;

/* ---------------------------------------------------------------------------------------------------------------
 * Results (host memory, written by the library; struct_size set by the host says how much it can receive)
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct linattn_capabilities {
    uint32_t struct_size;
    linattn_backend_kind backend;
    uint32_t layer_kinds;     /* bit (1u << kind) for each supported linattn_layer_kind */
    uint32_t state_dtypes;    /* bit (1u << dtype) for each supported state dtype */
    int32_t max_draft_tokens; /* 0 while speculative decoding is not implemented */
    int32_t checkpoint_alignment;
    int32_t abi_major, abi_minor;
    int32_t version_major, version_minor, version_patch;
    char device_name[128]; /* NUL-terminated */
} linattn_capabilities;

typedef struct linattn_layer_info {
    uint32_t struct_size;
    uint64_t state_bytes;     /* recurrent + conv state of one sequence in this layer */
    uint64_t recurrent_bytes; /* num_v_heads·head_dim_qk·head_dim_v·sizeof(state dtype) */
    uint64_t conv_bytes;      /* (conv_width - 1)·C·2 (bf16) */
} linattn_layer_info;

typedef struct linattn_pool_info {
    uint32_t struct_size;
    int32_t capacity;
    int32_t slots_in_use;
    uint64_t slot_bytes; /* state bytes of one slot across all the pool's layers */
} linattn_pool_info;

typedef struct linattn_stats {
    uint32_t struct_size;
    uint64_t state_bytes_reserved; /* all pools of the context */
    uint64_t state_bytes_in_use;   /* allocated slots × slot bytes */
    uint64_t forward_calls;
    uint64_t tokens_processed;     /* summed over layers */
    uint64_t checkpoints_written;  /* one per (layer, checkpoint) */
    uint64_t checkpoints_restored; /* one per (layer, sequence started FROM_SLOT) */
} linattn_stats;

/* ---------------------------------------------------------------------------------------------------------------
 * Prefix cache
 *
 * A linattn_prefix_cache remembers which prompt prefixes have been computed, so a request that starts with one
 * skips it: the attention layers reuse its KV blocks and the linear layers restart from a state checkpoint. It
 * manages both kinds of memory of a hybrid model together:
 * - KV blocks of block_size tokens for the attention layers (the host owns the KV tensors; the cache hands out
 *   block ids, one id naming the same block in every attention layer group).
 * - Checkpoints: the linear layers' state after the first p tokens of a sequence, p a multiple of the policy's
 *   match unit. A checkpoint occupies one slot of the pool the cache was created on, the same slots running
 *   sequences use; the cache allocates and frees them itself (slot_free refuses them with LINATTN_ERR_IN_USE).
 * A hit is the longest prefix of a prompt whose KV is cached and that has a checkpoint exactly at its end; it is
 * exact (token ids are compared, not only hashes) and always shorter than the prompt.
 *
 * Life of a request: cache_request_add (lookup; references the hit) -> per model step cache_request_schedule (KV
 * blocks for the step's tokens, checkpoint slots where the policy wants them) -> the host runs the step with what
 * the step struct says -> cache_request_commit (the step's tokens and checkpoints become visible to lookups) -> ...
 * -> cache_request_free. Generated tokens are added with cache_request_append before the step that computes them.
 * Only committed steps become visible, so an aborted request leaves nothing half-written behind.
 *
 * Stream ordering. The cache is host bookkeeping: its calls enqueue no device work and take no stream. The host
 * commits a step once every forward of the step is enqueued. A later step that restores a checkpoint
 * (LINATTN_INIT_FROM_SLOT) must be enqueued on the same stream as the step that wrote it, or after the host has
 * synchronised with that stream, so the checkpoint is complete before it is read. The same rule covers slot
 * reuse: a checkpoint slot the cache evicts and hands out again is only written by a later step, ordered after
 * every earlier reader on that stream.
 *
 * Eviction takes only what no live request references: cached KV units leaf first, least recently used, when
 * blocks run out; checkpoints when max_checkpoints is reached, superseded ones first, then a conversation's own
 * (prompt and turn ends), then shared ones (branch points, intervals), least recently used within each. A new
 * conversation's checkpoint never pushes out another conversation's live one or a shared one; a checkpoint the
 * policy wants without room is skipped (counted in stats), not an error.
 *
 * Threads: as everything made from a context (one thread at a time per context). Errors: on any error nothing
 * changes (cache contents, references, statistics, pool slots) and out-parameters are untouched.
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct linattn_prefix_cache linattn_prefix_cache;

/* Places a checkpoint can go (bits of linattn_checkpoint_policy.places). */
enum {
    LINATTN_CHECKPOINT_AT_PROMPT_END = 1 << 0,      /* last match-unit boundary inside the prompt (next turn) */
    LINATTN_CHECKPOINT_AT_TURN_END = 1 << 1,        /* last boundary reached while generating, moved forward */
    LINATTN_CHECKPOINT_AT_BRANCH = 1 << 2,          /* where a prompt forks from a cached chain (shared prefix) */
    LINATTN_CHECKPOINT_AT_INTERVAL = 1 << 3,        /* every every_n_blocks KV blocks */
    LINATTN_CHECKPOINT_AT_ALIGNED_STEP_END = 1 << 4 /* only at step ends on a boundary (vLLM's align mode) */
};

/* Where checkpoints are written. All fields zero: the library default (match unit 64, prompt end + turn end +
 * branch). Otherwise used as given: places 0 then means never write checkpoints. */
typedef struct linattn_checkpoint_policy {
    int32_t match_unit;     /* tokens, a multiple of linattn_capabilities.checkpoint_alignment: the reuse grain */
    uint32_t places;        /* LINATTN_CHECKPOINT_AT_* bits */
    int32_t every_n_blocks; /* for LINATTN_CHECKPOINT_AT_INTERVAL, >= 1 */
} linattn_checkpoint_policy;

/*
 * A prefix cache on one pool (host memory, read during the call only). Checkpoint bytes are the pool's slot_bytes.
 * num_attn_groups 0 makes a linear-state-only cache for a host with its own KV cache manager: no block tables; use
 * cache_find_longest_hit with max_hit_tokens / hit_alignment to agree on a hit with the attention groups first.
 */
typedef struct linattn_prefix_cache_desc {
    uint32_t struct_size;
    int32_t block_size;             /* tokens per KV block, >= 1 */
    int32_t num_attn_groups;        /* attention layer groups sharing one block table; 0 = linear state only */
    const uint64_t *kv_block_bytes; /* [num_attn_groups] bytes of one block in each group (sizes the budget) */
    int32_t num_kv_blocks;          /* 0 = kv_byte_budget / sum(kv_block_bytes) */
    uint64_t kv_byte_budget;
    int32_t max_checkpoints;        /* 0 = checkpoint_byte_budget / slot_bytes; 0 from both: no checkpoints */
    uint64_t checkpoint_byte_budget;
    int32_t max_index_entries;      /* cached units; 0 = every KV block's units, or 65536 without KV */
    linattn_checkpoint_policy policy;
} linattn_prefix_cache_desc;

/* A key mixed into the hash of every token unit overlapping [start, end): adapter id, multimodal content hash,
 * cache salt. Requests match only where their keys agree. */
typedef struct linattn_cache_extra_key {
    int64_t start;
    int64_t end;
    uint64_t key;
} linattn_cache_extra_key;

/* One request (host memory, copied during the call). */
typedef struct linattn_cache_request_desc {
    uint32_t struct_size;
    uint32_t extra_key_size; /* sizeof(linattn_cache_extra_key) */
    uint64_t request_id;     /* the host's id, unique among the cache's live requests */
    const int32_t *tokens;   /* the prompt's token ids */
    int64_t num_tokens;      /* >= 1 */
    const linattn_cache_extra_key *extra_keys; /* may be NULL when num_extra_keys is 0 */
    int32_t num_extra_keys;
    int32_t hit_alignment;  /* 0 or 1: any checkpoint; else the hit is a multiple of it */
    int64_t max_hit_tokens; /* < 0: no limit */
} linattn_cache_request_desc;

/* Result of a lookup (struct_size set by the host). */
typedef struct linattn_cache_hit {
    uint32_t struct_size;
    int32_t checkpoint_slot; /* pool slot holding the state after hit_tokens tokens; -1 when hit_tokens is 0 */
    int64_t hit_tokens;      /* reusable prefix: cached KV and a checkpoint at exactly this position */
    int64_t matched_tokens;  /* prefix found cached (KV only), >= hit_tokens */
} linattn_cache_hit;

/* A checkpoint a step must write: linattn_checkpoint_desc{position, <the step's seq_index>, slot}. */
typedef struct linattn_cache_checkpoint {
    int64_t position;
    int32_t slot;
} linattn_cache_checkpoint;

/* Copy the first num_tokens token rows of KV block src_block into dst_block, in every attention group, before the
 * step's attention runs (a hit ending inside a block). */
typedef struct linattn_cache_kv_copy {
    int32_t src_block;
    int32_t dst_block;
    int32_t num_tokens;
} linattn_cache_kv_copy;

/*
 * One scheduled step of a request (struct_size set by the host). The first four fields go straight into the
 * request's linattn_seq_desc (its state_slot and token_offset are the host's), the checkpoints into
 * linattn_checkpoint_desc entries. Pointers are host memory owned by the cache, valid until the next call that
 * changes this request (append, schedule, commit, free) or destroys the cache.
 */
typedef struct linattn_cache_step {
    uint32_t struct_size;
    int32_t num_tokens;     /* linattn_seq_desc.num_tokens */
    int64_t start_position; /* linattn_seq_desc.start_position: tokens already computed */
    linattn_init init;      /* linattn_seq_desc.init: ZERO, CONTINUE (own slot) or FROM_SLOT (a hit) */
    int32_t source_slot;    /* linattn_seq_desc.source_slot for FROM_SLOT; -1 otherwise */
    int32_t num_checkpoints;
    const linattn_cache_checkpoint *checkpoints; /* [num_checkpoints], ascending positions */
    int32_t num_kv_copies;  /* 0 or 1 (only a first step after a hit) */
    linattn_cache_kv_copy kv_copy;
    int32_t num_blocks;         /* block table covering positions 0 .. start_position + num_tokens - 1 */
    const int32_t *block_table; /* [num_blocks]; NULL without attention groups */
} linattn_cache_step;

/* Counters and occupancy of one cache (struct_size set by the host). */
typedef struct linattn_cache_stats {
    uint32_t struct_size;
    uint64_t lookups;               /* requests admitted */
    uint64_t lookup_tokens;         /* their prompt tokens */
    uint64_t hits;                  /* admissions with hit_tokens > 0 */
    uint64_t hit_tokens;            /* prompt tokens not recomputed thanks to hits */
    uint64_t checkpoints_written;   /* made visible by a committed step */
    uint64_t checkpoints_restored;  /* committed steps that started from a checkpoint */
    uint64_t checkpoints_evicted;   /* visible checkpoints dropped for room */
    uint64_t checkpoints_discarded; /* written by a step never committed, or already cached */
    uint64_t checkpoints_skipped;   /* wanted while the budget was full of referenced ones */
    uint64_t index_entries_evicted;
    uint64_t kv_copies;             /* partial-block copies handed out */
    int64_t checkpoints_in_use;     /* pool slots the cache holds (visible + pending) */
    int64_t max_checkpoints;
    uint64_t checkpoint_bytes_in_use;
    int64_t kv_blocks_total;
    int64_t kv_blocks_free;
    int64_t kv_blocks_cached_only; /* held only by evictable cache entries */
    uint64_t kv_bytes_in_use;      /* blocks not free */
    int64_t index_entries;
    int64_t live_requests;
} linattn_cache_stats;

/* ---------------------------------------------------------------------------------------------------------------
 * The function table. Append-only: entries are never removed, reordered or changed within a major version.
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct linattn_api {
    uint32_t struct_size; /* sizeof the table this library provides; check it before calling appended entries */
    uint32_t abi_major;
    uint32_t abi_minor;

    /* Library version, e.g. "linattn 0.1.0 (cuda)". Static storage; never free. Any thread. */
    const char *(*version_string)(void);

    /* Message of the last failed call on this thread ("" if none). Thread-local storage valid until this
     * thread's next call into the library; never free. Any thread. */
    const char *(*last_error_message)(void);

    /* Create a context on the CPU or a CUDA device. The context owns every layer, pool and plan made from it.
     * Synchronous (allocates, may initialise CUDA). */
    linattn_status (*context_create)(const linattn_context_desc *desc, linattn_context **out_context);

    /* Destroy a context and everything it owns; their handles become invalid. Synchronises the device first so
     * no enqueued work still uses its memory. Destroying NULL is OK. */
    linattn_status (*context_destroy)(linattn_context *context);

    /* Fill *caps (up to caps->struct_size bytes). */
    linattn_status (*query_capabilities)(const linattn_context *context, linattn_capabilities *caps);

    /* Register a layer. Weights are copied to the context's memory; the descriptor may be freed afterwards.
     * *out_info (optional, may be NULL) receives the state bytes one sequence needs in this layer. */
    linattn_status (*layer_create)(linattn_context *context, const linattn_layer_desc *desc,
                                   linattn_layer **out_layer, linattn_layer_info *out_info);

    /* Destroy a layer; refused with LINATTN_ERR_IN_USE while a pool holds its state. */
    linattn_status (*layer_destroy)(linattn_layer *layer);

    linattn_status (*layer_info)(const linattn_layer *layer, linattn_layer_info *info);

    /* Create a state pool for a set of layers (see linattn_pool_desc). Slot memory is allocated here, zeroed,
     * and never moves. Synchronous. */
    linattn_status (*pool_create)(linattn_context *context, const linattn_pool_desc *desc, linattn_pool **out_pool);

    /* Destroy a pool; refused with LINATTN_ERR_IN_USE while a plan refers to it. Synchronises the device. */
    linattn_status (*pool_destroy)(linattn_pool *pool);

    linattn_status (*pool_info)(const linattn_pool *pool, linattn_pool_info *info);

    /* Take a free slot (lowest index first). Host bookkeeping only: the slot's bytes are whatever they were;
     * zero it, or start the sequence with LINATTN_INIT_ZERO. */
    linattn_status (*slot_alloc)(linattn_pool *pool, int32_t *out_slot);

    /* Return a slot to the pool. Work already enqueued that uses it still completes correctly (stream order). */
    linattn_status (*slot_free)(linattn_pool *pool, int32_t slot);

    /* Copy every layer's state of slot src into slot dst (both allocated, distinct). Enqueued on stream. */
    linattn_status (*slot_copy)(linattn_pool *pool, int32_t dst_slot, int32_t src_slot, linattn_stream_t stream);

    /* Zero every layer's state of a slot. Enqueued on stream. */
    linattn_status (*slot_zero)(linattn_pool *pool, int32_t slot, linattn_stream_t stream);

    /* Copy one layer's state of a slot to host memory, in the layout of MATH.md §State layout
     * (layer_info.state_bytes bytes). Synchronous: waits for the stream. For tests, debugging and offload. */
    linattn_status (*slot_read)(const linattn_pool *pool, const linattn_layer *layer, int32_t slot,
                                void *host_dst, uint64_t dst_bytes, linattn_stream_t stream);

    /* Overwrite one layer's state of a slot from host memory (same layout). Synchronous. */
    linattn_status (*slot_write)(linattn_pool *pool, const linattn_layer *layer, int32_t slot,
                                 const void *host_src, uint64_t src_bytes, linattn_stream_t stream);

    /* Create a plan: the per-step batch metadata shared by every linear layer of one model step, for one pool.
     * On the CUDA backend a plan whose max_tokens is 16 or more also holds the chunked prefill's device workspace,
     * about 29 KiB per max_tokens token for Qwen3-Next's layer shape (the chunk-parallel passes leave their results
     * there for the sequential one; the largest layer of the pool sets it); forwards of one plan share it, so
     * enqueue them on one stream (or order the streams). */
    linattn_status (*plan_create)(linattn_pool *pool, const linattn_plan_desc *desc, linattn_plan **out_plan);

    linattn_status (*plan_destroy)(linattn_plan *plan);

    /* Validate a batch and make it the plan's current batch; uploads metadata on stream into memory that never
     * moves, so a forward captured in a CUDA graph replays with whatever batch was set last. Call it outside
     * graph capture, once per model step. On error the plan keeps its previous batch. */
    linattn_status (*plan_set_batch)(linattn_plan *plan, const linattn_batch_desc *batch, linattn_stream_t stream);

    /* Run one layer over the plan's current batch: conv, gates and recurrence for every sequence, its final
     * state written to its state slot and its checkpoints to their slots. The layer must be one of the plan's
     * pool's layers. Enqueued on stream; no allocation, no host synchronisation (graph-capturable). The kernels
     * are chosen from the batch set at launch (sequences of 16+ tokens take the chunked prefill kernel); a forward
     * captured in a CUDA graph replays correctly with any batch set later, and fastest with batches like the one
     * it was captured with (capture decode graphs with decode batches). */
    linattn_status (*forward)(linattn_layer *layer, const linattn_plan *plan, const linattn_forward_args *args,
                              linattn_stream_t stream);

    /* Speculative decoding: verify draft tokens of the plan's sequences from their committed state without
     * writing it, then commit an accepted path. LINATTN_ERR_NOT_IMPLEMENTED in this build. */
    linattn_status (*spec_verify)(linattn_layer *layer, const linattn_plan *plan, const linattn_draft_desc *drafts,
                                  const linattn_forward_args *args, linattn_stream_t stream);
    linattn_status (*spec_commit)(linattn_pool *pool, const linattn_plan *plan, const linattn_accept_desc *accepted,
                                  linattn_stream_t stream);

    /* Counters of the context (up to stats->struct_size bytes). */
    linattn_status (*get_stats)(const linattn_context *context, linattn_stats *stats);

    /* ---- prefix cache (see "Prefix cache" above); host bookkeeping only: no device work, no stream ---- */

    /* Create a prefix cache whose checkpoints take slots of `pool` (the pool's slot_bytes each): give the pool
     * room for the running sequences plus max_checkpoints. The pool cannot be destroyed while the cache exists
     * (LINATTN_ERR_IN_USE); destroying the context destroys the cache. Synchronous (host memory only). */
    linattn_status (*prefix_cache_create)(linattn_pool *pool, const linattn_prefix_cache_desc *desc,
                                          linattn_prefix_cache **out_cache);

    /* Destroy a cache: every checkpoint slot goes back to the pool, every request is forgotten. Work already
     * enqueued that reads a checkpoint still completes correctly (stream order). Destroying NULL is OK. */
    linattn_status (*prefix_cache_destroy)(linattn_prefix_cache *cache);

    /* The hit cache_request_add would give, without admitting anything or changing statistics. */
    linattn_status (*cache_find_longest_hit)(linattn_prefix_cache *cache, const linattn_cache_request_desc *request,
                                             linattn_cache_hit *out_hit);

    /* Admit a request: look up its prompt, reference the hit's KV blocks and checkpoint (they stay cached until
     * its first step commits), copy its tokens. *out_hit (may be NULL) receives the hit. */
    linattn_status (*cache_request_add)(linattn_prefix_cache *cache, const linattn_cache_request_desc *request,
                                        linattn_cache_hit *out_hit);

    /* Append generated token ids (host memory, copied) before scheduling the step that computes them. */
    linattn_status (*cache_request_append)(linattn_prefix_cache *cache, uint64_t request_id, const int32_t *tokens,
                                           int64_t num_tokens);

    /* Schedule the request's next num_tokens tokens (its next prefill chunk, or decode tokens appended before):
     * KV blocks for them, evicting cached ones if needed (LINATTN_ERR_KV_EXHAUSTED when even that is not enough),
     * and checkpoint slots from the pool where the policy wants checkpoints (LINATTN_ERR_POOL_EXHAUSTED when the
     * pool has no free slot). LINATTN_ERR_TOKEN_RANGE when the request has fewer uncomputed tokens. One step at a
     * time per request: commit (or free) before scheduling the next. */
    linattn_status (*cache_request_schedule)(linattn_prefix_cache *cache, uint64_t request_id, int64_t num_tokens,
                                             linattn_cache_step *out_step);

    /* The scheduled step's forwards are enqueued: its tokens and checkpoints become visible to lookups (see the
     * stream ordering rule above). */
    linattn_status (*cache_request_commit)(linattn_prefix_cache *cache, uint64_t request_id);

    /* Finish or abort a request: drop its references; an uncommitted step leaves nothing visible and its
     * checkpoint slots go back to the pool. What it committed stays cached. */
    linattn_status (*cache_request_free)(linattn_prefix_cache *cache, uint64_t request_id);

    /* Counters of one cache (up to stats->struct_size bytes). */
    linattn_status (*cache_get_stats)(const linattn_prefix_cache *cache, linattn_cache_stats *stats);
} linattn_api;

/*
 * The one exported symbol. On success *out_api points at a static table (never free) whose abi_minor is the
 * library's, >= the requested one. Any thread.
 */
LINATTN_EXPORT linattn_status linattn_get_api(uint32_t abi_major, uint32_t abi_minor, const linattn_api **out_api);

typedef linattn_status (*linattn_get_api_fn)(uint32_t abi_major, uint32_t abi_minor, const linattn_api **out_api);

#ifdef __cplusplus
}
#endif

#endif /* LINATTN_H */
