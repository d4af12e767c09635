/* The order in which the runner's `mixed-bursts` reads and frees a burst, shared by the C
 * programs that reproduce it (`burst_phases.c`, `stack_distance.c bursts`): forwards,
 * backwards or evens-then-odds in turn, by round. */
#ifndef RSEQMALLOC_BENCH_BURST_ORDER_H
#define RSEQMALLOC_BENCH_BURST_ORDER_H

/* The index visited at step k of a burst of n objects in round r. */
static inline long burst_order(long r, long k, long n) {
    long half = (n + 1) / 2;
    switch (r % 3) {
    case 0: return k;
    case 1: return n - 1 - k;
    default: return k < half ? 2 * k : 2 * (k - half) + 1;
    }
}

#endif
