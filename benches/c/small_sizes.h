/* The runner's random numbers and small-size mix, shared by the C programs that reproduce its
 * churn and batches (`churn.c`, `stack_distance.c`, `thread_density.c`, `ab_churn.c`,
 * `batch_density.c`, `pinned_pair.c`, `rounds_phases.c`): a splitmix-style generator and
 * `small_size`, 60 % 8-64 B, 30 % 65-256 B, 10 % 257-512 B (the runner's `Rng::small_size`). */
#ifndef RSEQMALLOC_BENCH_SMALL_SIZES_H
#define RSEQMALLOC_BENCH_SMALL_SIZES_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t next(uint64_t *state) {
    *state += 0x9e3779b97f4a7c15ULL;
    return mix(*state);
}

static inline size_t small_size(uint64_t *rng) {
    uint64_t band = next(rng) % 100;
    if (band < 60)
        return 8 + next(rng) % 57;
    if (band < 90)
        return 65 + next(rng) % 192;
    return 257 + next(rng) % 256;
}

#endif
