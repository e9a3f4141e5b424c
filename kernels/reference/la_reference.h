/*
 * la_reference.h — the CPU reference of abi/MATH.md: token by token, float64 arithmetic, a float32 working state
 * rounded to its storage dtype when stored (so with float32 state a prefill split at any point gives bitwise the
 * same result as one pass). It is the oracle the CUDA kernels are tested against.
 */
#ifndef LINATTN_KERNELS_REFERENCE_H
#define LINATTN_KERNELS_REFERENCE_H

#include "../la_params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Run one layer over a validated batch; every pointer is host memory. Returns 0, or -1 if scratch memory could
 * not be allocated (nothing written then). */
int la_reference_forward(const la_layer *layer, const la_batch *batch, const la_io *io, const la_state_view *state);

#ifdef __cplusplus
}
#endif

#endif
