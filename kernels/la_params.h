/*
 * la_params.h — the plain parameter structs shared by the CPU reference (kernels/reference) and the CUDA kernels
 * (kernels/cuda). They know nothing of the public ABI: backend/ validates the host's batch and translates it into
 * these structs. The math is specified in abi/MATH.md.
 *
 * Memory of a layer's state in a pool (per slot s):
 *   recurrent[s] : [hv][dk][dv] in state_dtype (f32 or bf16), S[h][i][j] multiplies k_i and produces o_j
 *   conv[s]      : [conv_width - 1][channels] bf16, the last pre-conv inputs of the sequence, oldest first
 */
#ifndef LINATTN_KERNELS_LA_PARAMS_H
#define LINATTN_KERNELS_LA_PARAMS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LA_KIND_GATED_DELTANET = 1, LA_KIND_SIMPLE_GLA = 2 } la_kind;
typedef enum { LA_STATE_F32 = 1, LA_STATE_BF16 = 2 } la_state_dtype;

/* Pointers live in the backend's memory (device memory for CUDA, host memory for the CPU reference). */
typedef struct la_layer {
    la_kind kind;
    int32_t hk, hv, dk, dv; /* hv % hk == 0 */
    int32_t conv_width;     /* 0 = no conv */
    int32_t qk_l2norm;
    la_state_dtype state_dtype;
    float scale;
    const float *conv_weight; /* [channels][conv_width] */
    const float *conv_bias;   /* [channels] or NULL */
    const float *A_log;       /* [hv] */
    const float *dt_bias;     /* [hv] or NULL */
} la_layer;

static inline int32_t la_channels(const la_layer *l) { return 2 * l->hk * l->dk + l->hv * l->dv; }

/* One sequence of a validated batch. state_slot < 0: padding, skipped entirely. */
typedef struct la_seq {
    int64_t token_offset;
    int64_t start_position;
    int32_t num_tokens;
    int32_t state_slot;
    int32_t init_slot; /* < 0: zero initial state; == state_slot: continue; else read from that slot */
    int32_t checkpoint_begin; /* this sequence's checkpoints are [begin, begin + count) of la_batch.checkpoints */
    int32_t checkpoint_count;
    int32_t reserved;
} la_seq;

/* Write the state after the first `position` tokens of the sequence into `slot`. Sorted by position within
 * a sequence; start_position < position <= start_position + num_tokens. */
typedef struct la_checkpoint {
    int64_t position;
    int32_t slot;
    int32_t seq;
} la_checkpoint;

/* For device launches the backend passes the plan's capacities as num_seqs / num_tokens (unused entries are
 * padding) and every per-sequence fact lives in the device arrays, so a launch captured in a CUDA graph stays valid
 * for later batches; kernels must not depend on the host values of the current batch beyond max_seq_tokens' hint. */
typedef struct la_batch {
    int32_t num_seqs;
    int32_t num_checkpoints;
    int64_t num_tokens;
    const la_seq *seqs;
    const la_checkpoint *checkpoints;
    /* Host-side hint: the most tokens any sequence has in this batch. Launchers may pick kernels by it; every
     * kernel they pick stays correct for any batch, so a graph captured with one batch replays others. */
    int32_t max_seq_tokens;
    int32_t reserved;
    /* Device scratch of the CUDA chunked prefill (kernels/cuda/chunk_prefill.h sizes it from the plan's capacities);
     * NULL where no batch of the plan takes that path. The CPU reference ignores it. */
    void *workspace;
    uint64_t workspace_bytes;
} la_batch;

/* bf16 activations as raw bits; strides in elements (already resolved, never 0). */
typedef struct la_io {
    const uint16_t *qkv; /* [tokens][channels] */
    const uint16_t *a;   /* [tokens][hv]; NULL (simple GLA only): constant decay */
    const uint16_t *b;   /* [tokens][hv]; GDN only */
    uint16_t *out;       /* [tokens][hv][dv] */
    int64_t qkv_stride, a_stride, b_stride, out_stride;
} la_io;

/* One layer's state arrays inside a pool. */
typedef struct la_state_view {
    void *recurrent;  /* [capacity][hv][dk][dv] */
    uint16_t *conv;   /* [capacity][conv_width - 1][channels]; NULL when conv_width < 2 */
    int32_t capacity;
} la_state_view;

static inline uint64_t la_recurrent_elems(const la_layer *l) { return (uint64_t)l->hv * l->dk * l->dv; }
static inline uint64_t la_conv_elems(const la_layer *l)
{
    return l->conv_width > 1 ? (uint64_t)(l->conv_width - 1) * la_channels(l) : 0;
}

#ifdef __cplusplus
}
#endif

#endif
