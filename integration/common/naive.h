/*
 * naive.h — an independent, deliberately plain computation of abi/MATH.md for checking a liblinattn build.
 *
 * It shares no code with the library: it materialises the conv outputs of the whole sequence first, then runs the
 * recurrence one v-head at a time in float64 with the state kept in float64, forming the gated delta rule as
 * S_t = e^g (I − β k kᵀ) S_{t−1} + β k vᵀ. It is slow and meant for a few thousand tokens at most.
 */
#ifndef LINATTN_INTEGRATION_NAIVE_H
#define LINATTN_INTEGRATION_NAIVE_H

#include <stddef.h>
#include <stdint.h>

#include "abi/linattn.h"

/* One layer's state of one sequence in the order of MATH.md §State layout, in float64. */
typedef struct naive_state {
    double *recurrent; /* [Hv][dk][dv] */
    double *conv;      /* [W−1][C], oldest input first; NULL when W < 2 */
} naive_state;

int64_t naive_channels(const linattn_layer_desc *layer);
int64_t naive_recurrent_elements(const linattn_layer_desc *layer);
int64_t naive_conv_elements(const linattn_layer_desc *layer);

/* A zero state (a new sequence). Returns 0 on success, -1 when out of memory. */
int naive_state_init(naive_state *state, const linattn_layer_desc *layer);
void naive_state_free(naive_state *state);

/* Decode state bytes as slot_read returns them (recurrent in layer->state_dtype, conv as bf16) into a naive state
 * made by naive_state_init. Returns 0, or -1 when `bytes` is not the layer's state size. */
int naive_state_from_bytes(naive_state *state, const linattn_layer_desc *layer, const void *bytes, size_t bytes_len);

/* State bytes that slot_read would return for this layer (recurrent in layer->state_dtype, conv as bf16). */
size_t naive_state_bytes(const linattn_layer_desc *layer);

/*
 * Run `num_tokens` tokens of one sequence through the layer.
 *   qkv [num_tokens][C], a and b [num_tokens][Hv]: contiguous bf16 bits; a may be NULL for simple GLA (constant
 *   decay), b is read for Gated DeltaNet only.
 *   initial: the state before the first token, or NULL for a new sequence.
 *   out [num_tokens][Hv][dv]: the outputs in float (before the library's bf16 rounding).
 *   final: if not NULL, a state made by naive_state_init that receives the state after the last token.
 * Returns 0 on success, -1 when out of memory or the description is unusable.
 */
int naive_forward(const linattn_layer_desc *layer, int64_t num_tokens, const uint16_t *qkv, const uint16_t *a,
                  const uint16_t *b, const naive_state *initial, float *out, naive_state *final);

#endif
