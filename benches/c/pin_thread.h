/* Pinning for the C programs that time threads on chosen CPUs (`burst_threads.c`,
 * `rounds_phases.c`): thread t runs on the (t mod n)-th of the n CPUs the process was allowed
 * when it started (`taskset` narrows them), so that migrations play no part. */
#ifndef RSEQMALLOC_BENCH_PIN_THREAD_H
#define RSEQMALLOC_BENCH_PIN_THREAD_H

#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before including anything, for sched_getaffinity and CPU_SET"
#endif
#include <pthread.h>
#include <sched.h>

/* The CPUs the calling thread may run on (call it from `main` before starting threads);
 * returns how many, or 0 if they cannot be read. */
static inline int allowed_cpus(cpu_set_t *allowed) {
    CPU_ZERO(allowed);
    if (sched_getaffinity(0, sizeof *allowed, allowed) != 0)
        return 0;
    return CPU_COUNT(allowed);
}

/* Pins the calling thread to the (t mod n)-th CPU of `allowed` (n of them, n > 0); returns 0,
 * or -1 when it cannot. */
static inline int pin_to_nth(const cpu_set_t *allowed, int n, long t) {
    long k = t % n;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, allowed) && k-- == 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            return pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0 ? 0 : -1;
        }
    }
    return -1;
}

#endif
