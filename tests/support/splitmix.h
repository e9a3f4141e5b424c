/* splitmix64: the tests' random generator (fast, seedable, good enough for random inputs). */
#ifndef LINATTN_TESTS_SPLITMIX_H
#define LINATTN_TESTS_SPLITMIX_H

#include <stdint.h>

typedef struct test_rng {
    uint64_t state;
} test_rng;

static inline uint64_t rng_next(test_rng *rng)
{
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
