/* bf16.h — bfloat16 <-> float on the host (raw uint16 bits; round to nearest even, NaN kept quiet). */
#ifndef LINATTN_KERNELS_BF16_H
#define LINATTN_KERNELS_BF16_H

#include <stdint.h>
#include <string.h>

static inline float bf16_to_float(uint16_t bits)
{
    uint32_t word = (uint32_t)bits << 16;
    float value;
    memcpy(&value, &word, sizeof value);
    return value;
}

static inline uint16_t float_to_bf16(float value)
{
    uint32_t word;
    memcpy(&word, &value, sizeof word);
    if ((word & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((word >> 16) | 0x0040u);
    word += 0x7fffu + ((word >> 16) & 1u);
    return (uint16_t)(word >> 16);
}

#endif
