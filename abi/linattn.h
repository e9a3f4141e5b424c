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
 *   LINATTN_ERR_INVALID_HANDLE (the library keeps a registry of live handles; it never dereferences a dead one).
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
    LINATTN_ERR_BUFFER_TOO_SMALL = 22   /* a caller-provided buffer is smaller than needed */
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

    /* Create a plan: the per-step batch metadata shared by every linear layer of one model step, for one pool. */
    linattn_status (*plan_create)(linattn_pool *pool, const linattn_plan_desc *desc, linattn_plan **out_plan);

    linattn_status (*plan_destroy)(linattn_plan *plan);

    /* Validate a batch and make it the plan's current batch; uploads metadata on stream into memory that never
     * moves, so a forward captured in a CUDA graph replays with whatever batch was set last. Call it outside
     * graph capture, once per model step. On error the plan keeps its previous batch. */
    linattn_status (*plan_set_batch)(linattn_plan *plan, const linattn_batch_desc *batch, linattn_stream_t stream);

    /* Run one layer over the plan's current batch: conv, gates and recurrence for every sequence, its final
     * state written to its state slot and its checkpoints to their slots. The layer must be one of the plan's
     * pool's layers. Enqueued on stream; no allocation, no host synchronisation (graph-capturable). */
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
