/* Burst threads: the runner's `mixed-bursts` loop on T threads at once, with the sizes' band
 * moving or held at one start, to see what the threads cost each other.
 *
 * Each thread, round after round, allocates a burst of 1,000-3,999 objects whose sizes lie in
 * a 128-byte band ((start + rand % 128) & ~7), writing an id into each object's first word and
 * its complement into its last; then checks both words of every object and frees it, walking
 * the burst forwards, backwards or evens-then-odds in turn (`burst_order.h`). The band's start
 * moves up 40 bytes a round over 16-896 B (modulo 881), as in the runner, or stays at START
 * bytes (16-896) with a fourth argument. Fails unless every id reads back. Prints, for the
 * two phases (the allocation with the two writes, the free with the checks), the wall time of
 * that phase in all threads together divided by all their objects, in nanoseconds; with no
 * more threads than CPUs (and nothing else running) that is each object's cost.
 *
 * Compare the CPU time of T threads with T times that of one thread, and with T processes of
 * one thread each (no state shared): what is left is what the threads share in the allocator.
 * With PIN=1 in the environment thread t runs only on the (t mod n)-th of the n CPUs the
 * process may use (`pin_thread.h`), so that migrations play no part.
 *
 *   cc -O2 -pthread -o /tmp/burst_threads benches/c/burst_threads.c
 *   LD_PRELOAD=target/release/librseqmalloc.so taskset -c 0-1 /tmp/burst_threads 2000 2 100
 *   LD_PRELOAD=target/release/librseqmalloc.so taskset -c 0 /tmp/burst_threads 2000 1 100
 *
 * Arguments: rounds per thread, threads (1-64), and optionally START. Alternate the libraries
 * over several runs and compare CPU times (docs/benchmarks.md, "Session 50"). */
#define _GNU_SOURCE /* pthread_setaffinity_np, sched_getaffinity, CPU_SET */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "burst_order.h"
#include "phase_clock.h"
#include "pin_thread.h"

static long rounds;
static long fixed_start = -1;
static int pin, ncpus;
static cpu_set_t allowed;

/* Nanoseconds in each phase and objects, summed over the threads under `sum_lock`. */
static double alloc_ns, free_ns;
static long objects;
static pthread_mutex_t sum_lock = PTHREAD_MUTEX_INITIALIZER;

static void *thread(void *arg) {
    long t = (long)(intptr_t)arg;
    if (pin && pin_to_nth(&allowed, ncpus, t) != 0) {
        fprintf(stderr, "cannot pin thread %ld\n", t);
        abort();
    }
    uint64_t state = burst_seed(t);
    double in_alloc = 0, in_free = 0;
    long count = 0;
    void **p;
    size_t *sz;
    burst_arrays(&p, &sz);
    for (long r = 0; r < rounds; r++) {
        long n = burst_len(burst_rand(&state));
        size_t start = fixed_start >= 0 ? (size_t)fixed_start : burst_start(r);
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            size_t z = burst_size(start, burst_rand(&state));
            uint64_t *o = burst_new(z, i);
            p[i] = o;
            sz[i] = z;
        }
        double t1 = now_ns();
        for (long k = 0; k < n; k++) {
            long i = burst_order(r, k, n);
            burst_check_free(p[i], sz[i], i, r);
        }
        in_alloc += t1 - t0;
        in_free += now_ns() - t1;
        count += n;
    }
    free(p);
    free(sz);
    pthread_mutex_lock(&sum_lock);
    alloc_ns += in_alloc;
    free_ns += in_free;
    objects += count;
    pthread_mutex_unlock(&sum_lock);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s rounds threads [START]\n", argv[0]);
        return 2;
    }
    clock_start();
    rounds = atol(argv[1]);
    pin = getenv("PIN") != NULL && strcmp(getenv("PIN"), "1") == 0;
    ncpus = allowed_cpus(&allowed);
    if (pin && ncpus == 0) {
        fprintf(stderr, "cannot read the CPUs allowed\n");
        return 2;
    }
    long threads = atol(argv[2]);
    if (argc > 3) {
        char *end = NULL;
        fixed_start = strtol(argv[3], &end, 10);
        if (!end || *end != '\0' || fixed_start < 16 || fixed_start > 896) {
            fprintf(stderr, "START is a number of bytes, 16-896\n");
            return 2;
        }
    }
    if (rounds < 1 || threads < 1 || threads > 64) {
        fprintf(stderr, "rounds must be positive, threads 1-64\n");
        return 2;
    }
    pthread_t th[64];
    for (long t = 0; t < threads; t++)
        if (pthread_create(&th[t], NULL, thread, (void *)(intptr_t)t) != 0) return 1;
    for (long t = 0; t < threads; t++) pthread_join(th[t], NULL);
    printf("ns/object: alloc %.2f free %.2f\n", alloc_ns / objects, free_ns / objects);
    return 0;
}
