/*
 * la_cuda.h — launchers of the CUDA kernels. Plain C interface; every pointer inside the structs is device memory
 * (la_batch.seqs and .checkpoints too), the structs themselves are host memory read during the call.
 * Each launcher enqueues on `stream`, does not synchronise, and returns the launch's cudaError_t as an int.
 */
#ifndef LINATTN_KERNELS_CUDA_H
#define LINATTN_KERNELS_CUDA_H

#include <stdint.h>

#include "../la_params.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st;

/* Device workspace (la_batch.workspace) that forwards of batches up to max_tokens rows and max_seqs sequences need:
 * 0 when none can take the chunked prefill path (fewer than 16 tokens, or a shape it does not handle). */
uint64_t la_cuda_forward_workspace_bytes(const la_layer *layer, int64_t max_tokens, int32_t max_seqs);

int la_cuda_forward(const la_layer *layer, const la_batch *batch, const la_io *io, const la_state_view *state,
                    struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif

#endif
