/* The clock of the C programs that time phases in nanoseconds and add them up in doubles
 * (`burst_threads.c`, `rounds_phases.c`, `placement_reads.c`): `now_ns` counts from
 * `clock_start`, so that its readings stay small and their differences keep every nanosecond
 * in a double. */
#ifndef RSEQMALLOC_BENCH_PHASE_CLOCK_H
#define RSEQMALLOC_BENCH_PHASE_CLOCK_H

#include <time.h>

static struct timespec clock_origin;

/* Sets the origin (call it first thing in `main`). */
static inline void clock_start(void) {
    clock_gettime(CLOCK_MONOTONIC, &clock_origin);
}

/* Nanoseconds since `clock_start`. */
static inline double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - clock_origin.tv_sec) * 1e9 +
           (double)(t.tv_nsec - clock_origin.tv_nsec);
}

#endif
