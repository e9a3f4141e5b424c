/*
 * chunk_prefill.h — chunked (tensor-core) CUDA prefill of the recurrent part of a layer: Gated DeltaNet and simple
 * GLA over chunks of 64 tokens aligned to absolute positions, for long sequences. Same struct semantics as
 * la_cuda_forward (kernels/cuda/la_cuda.h): every pointer inside the structs is device memory, padding sequences
 * (state_slot < 0) are skipped, init_slot < 0 starts from zeros, the launch is asynchronous on `stream` and reads the
 * batch from device memory (graph-capturable).
 *
 * What it writes: the outputs of every token, the final recurrent state to state_slot and the recurrent state of
 * every checkpoint. What it leaves alone: the conv windows (state.conv) — it reads the initial window of init_slot
 * but writes no window, so the caller runs the conv-state writer after it on the same stream.
 *
 * Checkpoint positions must be multiples of 64 (absolute) or the step's end: the kernel writes states at chunk ends
 * only, and a checkpoint elsewhere is never written.
 */
#ifndef LINATTN_KERNELS_CUDA_CHUNK_PREFILL_H
#define LINATTN_KERNELS_CUDA_CHUNK_PREFILL_H

#include <stdint.h>

#include "../la_params.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st;

/* Nonzero when la_cuda_chunk_prefill handles this layer's shape: dk = 128, dv one of 32, 64, 96, 128, conv width
 * <= 8. */
int la_cuda_chunk_prefill_supported(const la_layer *layer);

/* Bytes of device workspace (la_batch.workspace, 16-byte aligned) a batch of up to max_tokens rows and max_seqs
 * sequences needs; 0 for an unsupported shape. About 29 KiB a token for Qwen3-Next's shape (hv = 32, hk = 16):
 * the chunk-parallel passes leave q̂, k̂, W, U₀ and P there for the sequential one. The launch sizes it from
 * la_batch.num_tokens and num_seqs (the plan's capacities). */
uint64_t la_cuda_chunk_prefill_workspace_bytes(const la_layer *layer, int64_t max_tokens, int32_t max_seqs);

/* Returns a cudaError_t as int; cudaErrorInvalidValue (nothing launched) for an unsupported shape or a missing,
 * small or misaligned workspace. Forwards that share a workspace must be ordered (one stream). */
int la_cuda_chunk_prefill(const la_layer *layer, const la_batch *batch, const la_io *io,
                          const la_state_view *state, struct CUstream_st *stream);

/* The same for the sequences of at least min_tokens tokens only (the others are skipped untouched): how
 * la_cuda_forward splits a mixed batch between this kernel and the token-sequential one. */
int la_cuda_chunk_prefill_long(const la_layer *layer, const la_batch *batch, const la_io *io,
                               const la_state_view *state, struct CUstream_st *stream, int32_t min_tokens);

#ifdef __cplusplus
}
#endif

#endif
