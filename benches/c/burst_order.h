/* The runner's `mixed-bursts` pattern, shared by the C programs that reproduce it
 * (`burst_phases.c`, `burst_threads.c`, `reuse_marker.c`, `stack_distance.c bursts`): the
 * bursts' lengths, the band of sizes that moves 40 bytes a round over 16-896 B (modulo 881),
 * and the order in which a burst is read and freed (forwards, backwards or evens-then-odds
 * in turn, by round). */
#ifndef RSEQMALLOC_BENCH_BURST_ORDER_H
#define RSEQMALLOC_BENCH_BURST_ORDER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A burst holds BURST_MIN to BURST_MIN + BURST_SPREAD - 1 objects. */
#define BURST_MIN 1000
#define BURST_SPREAD 3000

/* Thread t's first random state (never 0): every program draws the same bursts for it. */
static inline uint64_t burst_seed(long t) {
    return 12345 + 7777 * (uint64_t)t;
}

/* A thread's arrays of a burst's objects and their sizes, each long enough for the longest
 * burst, from malloc (the allocator under test); aborts if it has no memory. Freed by the
 * caller. */
static inline void burst_arrays(void ***objs, size_t **sizes) {
    *objs = malloc((BURST_MIN + BURST_SPREAD) * sizeof **objs);
    *sizes = malloc((BURST_MIN + BURST_SPREAD) * sizeof **sizes);
    if (!*objs || !*sizes) abort();
}

/* One xorshift step of `*state` (never 0): the programs' random numbers. */
static inline uint64_t burst_rand(uint64_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* The length of a burst, from a random number. */
static inline long burst_len(uint64_t rand) {
    return BURST_MIN + (long)(rand % BURST_SPREAD);
}

/* The start of round r's band of sizes. */
static inline size_t burst_start(long r) {
    return 16 + (size_t)(r * 40) % 881;
}

/* A size in the band starting at `start`, from a random number: a multiple of 8 below
 * start + 128. */
static inline size_t burst_size(size_t start, uint64_t rand) {
    return (start + rand % 128) & ~(size_t)7;
}

/* The index visited at step k of a burst of n objects in round r. */
static inline long burst_order(long r, long k, long n) {
    long half = (n + 1) / 2;
    switch (r % 3) {
    case 0: return k;
    case 1: return n - 1 - k;
    default: return k < half ? 2 * k : 2 * (k - half) + 1;
    }
}

/* A new object of z bytes (a multiple of 8) for index i of a burst, stamped: i in its first
 * word, its complement in its last. Aborts when malloc fails. */
static inline uint64_t *burst_new(size_t z, long i) {
    uint64_t *o = malloc(z);
    if (!o) abort();
    o[0] = (uint64_t)i;
    o[z / 8 - 1] = ~(uint64_t)i;
    return o;
}

/* Checks the stamps of object o (z bytes, index i of round r's burst, from `burst_new`) and
 * frees it; aborts, naming the object, when either changed. */
static inline void burst_check_free(uint64_t *o, size_t z, long i, long r) {
    if (o[0] != (uint64_t)i || o[z / 8 - 1] != ~(uint64_t)i) {
        fprintf(stderr, "object %ld of round %ld lost its id\n", i, r);
        abort();
    }
    free(o);
}

#endif
