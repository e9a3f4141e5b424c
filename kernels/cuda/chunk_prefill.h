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

#include "../la_params.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st;

/* Nonzero when la_cuda_chunk_prefill handles this layer's shape: dk = 128, dv a multiple of 32, conv width <= 8. */
int la_cuda_chunk_prefill_supported(const la_layer *layer);

/* Returns a cudaError_t as int; cudaErrorInvalidValue (nothing launched) for an unsupported shape. */
int la_cuda_chunk_prefill(const la_layer *layer, const la_batch *batch, const la_io *io,
                          const la_state_view *state, struct CUstream_st *stream);

/* The same with the cooperation of the dv tiles of a head switched off (allow_clusters = 0): every CTA then computes
 * the short conv of all 64 tokens of its q/k head itself. la_cuda_chunk_prefill uses thread-block clusters where
 * the device runs them; this entry lets tests and benchmarks run both paths. */
int la_cuda_chunk_prefill_clusters(const la_layer *layer, const la_batch *batch, const la_io *io,
                                   const la_state_view *state, struct CUstream_st *stream, int allow_clusters);

/* The same for the sequences of at least min_tokens tokens only (the others are skipped untouched): how
 * la_cuda_forward splits a mixed batch between this kernel and the token-sequential one. */
int la_cuda_chunk_prefill_long(const la_layer *layer, const la_batch *batch, const la_io *io,
                               const la_state_view *state, struct CUstream_st *stream, int32_t min_tokens);

#ifdef __cplusplus
}
#endif

#endif
