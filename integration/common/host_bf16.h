/* host_bf16.h — bfloat16 bits <-> float for the integration programs (round to nearest even, NaN kept NaN).
 * Kept here because integration/ may only use the public header, not the library's internal helpers. */
#ifndef LINATTN_INTEGRATION_HOST_BF16_H
#define LINATTN_INTEGRATION_HOST_BF16_H

#include <stdint.h>
#include <string.h>

static inline float host_bf16_to_float(uint16_t bits)
{
    uint32_t word = (uint32_t)bits << 16;
    float value;
    memcpy(&value, &word, sizeof value);
    return value;
}

static inline uint16_t host_float_to_bf16(float value)
{
    uint32_t word;
    memcpy(&word, &value, sizeof word);
    if ((word & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((word >> 16) | 0x0040u);
    uint32_t round_to_even = 0x7fffu + ((word >> 16) & 1u);
    return (uint16_t)((word + round_to_even) >> 16);
}

#endif
