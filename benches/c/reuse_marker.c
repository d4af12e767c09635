/* Reuse marker: the runner's `mixed-bursts` loop on T threads (as `burst_threads.c`), counting
 * the allocations that get memory another thread freed last, by size range.
 *
 * Each object of 24 bytes or more gets a marker in its third word (offset 16) as it is freed:
 * the freeing thread's index and a magic value. An allocation reads that word before it writes
 * the object; a marker that names another thread means the allocator handed this thread
 * memory the other one freed (on two CPUs, most likely lines the other CPU's cache holds).
 * Memory carved afresh or laid out again for another class shows no marker at offset 16 and
 * is not counted. The allocator's own writes at free (a link, a tag) stay in the first two
 * words, so they do not disturb the marker.
 *
 *   cc -O2 -pthread -o /tmp/reuse_marker benches/c/reuse_marker.c
 *   LD_PRELOAD=target/release/librseqmalloc.so taskset -c 0,1 /tmp/reuse_marker 2000 2
 *
 * Arguments: rounds per thread, threads (1-8). Prints, per size range, the allocations that got
 * memory this thread freed last and those that got memory another thread freed last
 * (docs/benchmarks.md, "Session 53": rseqmalloc at 9a72e4b 12.7-14.6 % for 16-256 B, 0 %
 * under mimalloc 2.0). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "burst_order.h"

#define MAX_THREADS 8
#define MARK 0x5a5a000000000000ull

static long rounds;
/* Per thread, per size range: allocations that got its own memory [0] or another's [1]. */
static long counts[MAX_THREADS][4][2];

static int range_of(size_t size) {
    return size <= 256 ? 0 : size <= 512 ? 1 : size <= 960 ? 2 : 3;
}

static void *thread(void *arg) {
    long t = (long)(intptr_t)arg;
    uint64_t state = burst_seed(t);
    void **p;
    size_t *sz;
    burst_arrays(&p, &sz);
    for (long r = 0; r < rounds; r++) {
        long n = burst_len(burst_rand(&state));
        size_t start = burst_start(r);
        for (long i = 0; i < n; i++) {
            size_t size = burst_size(start, burst_rand(&state));
            if (size < 24) size = 24;
            volatile uint64_t *o = malloc(size);
            if (!o) abort();
            uint64_t m = o[2];
            if (m >> 48 == MARK >> 48) counts[t][range_of(size)][(m & 0xff) != (uint64_t)t]++;
            o[0] = (uint64_t)i;
            o[size / 8 - 1] = ~(uint64_t)i;
            p[i] = (void *)o;
            sz[i] = size;
        }
        for (long k = 0; k < n; k++) {
            long i = burst_order(r, k, n);
            volatile uint64_t *o = p[i];
            if (o[0] != (uint64_t)i || o[sz[i] / 8 - 1] != ~(uint64_t)i) {
                fprintf(stderr, "reuse_marker: object %ld of round %ld overwritten\n", i, r);
                exit(3);
            }
            o[2] = MARK | (uint64_t)t;
            free((void *)o);
        }
    }
    free(p);
    free(sz);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: reuse_marker ROUNDS THREADS\n");
        return 2;
    }
    rounds = atol(argv[1]);
    int threads = atoi(argv[2]);
    if (rounds < 1 || threads < 1 || threads > MAX_THREADS) return 2;
    pthread_t th[MAX_THREADS];
    for (long t = 0; t < threads; t++)
        if (pthread_create(&th[t], NULL, thread, (void *)(intptr_t)t)) abort();
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    const char *names[4] = {"16-256 B", "257-512 B", "513-960 B", "961-1016 B"};
    for (int b = 0; b < 4; b++) {
        long own = 0, other = 0;
        for (int t = 0; t < threads; t++) {
            own += counts[t][b][0];
            other += counts[t][b][1];
        }
        printf("%-11s own %ld, another thread's %ld (%.1f %%)\n", names[b], own, other,
               own + other ? 100.0 * (double)other / (double)(own + other) : 0.0);
    }
    return 0;
}
