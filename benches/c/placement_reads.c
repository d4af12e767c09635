/* Placement reads: whether spreading a thread's batch over four times the pages, among the
 * batches of the other threads on its CPU, slows the reads of another thread, with no
 * allocator involved.
 *
 * Eight threads work in rounds, as in the runner's `rounds`: each writes a batch of 1,000
 * objects of the runner's small sizes (`small_sizes.h`) into memory the program places, then,
 * after a barrier, reads with `memcmp` the batch of the thread `round` places after it; a
 * second barrier closes the round. Every object has a slot of SLOT bytes, and two generations
 * of slots alternate so that a batch being read is never the one being written. MODE 0 keeps
 * each thread's batch in its own region, slot after slot (as a heap per thread does); MODE 1
 * interleaves the batches of threads 0-3 in one region and of threads 4-7 in another, thread
 * t's i-th object in slot 4i + t mod 4 (as a per-CPU cache does with four threads on each of
 * two CPUs: `batch_layout.c` finds a batch on four times the pages). Prints the read loop's
 * time over all threads divided by all objects read, in nanoseconds.
 *
 *   cc -O2 -pthread -o /tmp/placement_reads benches/c/placement_reads.c
 *   /tmp/placement_reads 300 0; /tmp/placement_reads 300 1
 *
 * Arguments: rounds and MODE. Alternate the two modes over several runs (docs/benchmarks.md,
 * "Session 59"). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phase_clock.h"
#include "small_sizes.h"

#define THREADS 8
#define BATCH 1000
#define SLOT 528 /* the largest small size, 512 B, plus a 16-byte gap */
#define REGION ((size_t)BATCH * 4 * SLOT)

static int rounds, mode;
static unsigned char *arena;
static unsigned char *objects[2][THREADS][BATCH];
static size_t sizes[2][THREADS][BATCH];
static pthread_barrier_t barrier;
static double read_ns;
static pthread_mutex_t sum_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned char *slot(int gen, long t, int i) {
    unsigned char *base = arena + (size_t)gen * THREADS * REGION;
    if (mode == 0)
        return base + (size_t)t * REGION + (size_t)i * SLOT;
    return base + (size_t)(t / 4) * 4 * REGION + ((size_t)i * 4 + (size_t)(t % 4)) * SLOT;
}

static void *thread(void *arg) {
    long t = (long)arg;
    uint64_t rng = (uint64_t)t * 7919 + 1;
    unsigned char expect[512];
    double mine = 0;
    for (int r = 0; r < rounds; r++) {
        int gen = r & 1;
        for (int i = 0; i < BATCH; i++) {
            size_t n = small_size(&rng);
            unsigned char *p = slot(gen, t, i);
            memset(p, (int)(t * 31 + r) | 1, n);
            objects[gen][t][i] = p;
            sizes[gen][t][i] = n;
        }
        pthread_barrier_wait(&barrier);
        int other = (int)((t + r) % THREADS);
        memset(expect, (other * 31 + r) | 1, sizeof expect);
        double t0 = now_ns();
        for (int i = 0; i < BATCH; i++)
            if (memcmp(objects[gen][other][i], expect, sizes[gen][other][i]) != 0)
                abort();
        mine += now_ns() - t0;
        pthread_barrier_wait(&barrier);
    }
    pthread_mutex_lock(&sum_lock);
    read_ns += mine;
    pthread_mutex_unlock(&sum_lock);
    return NULL;
}

int main(int argc, char **argv) {
    clock_start();
    if (argc != 3 || (rounds = atoi(argv[1])) < 1 || ((mode = atoi(argv[2])) != 0 && mode != 1)) {
        fprintf(stderr, "usage: %s ROUNDS MODE(0 compact, 1 interleaved)\n", argv[0]);
        return 2;
    }
    size_t bytes = (size_t)2 * THREADS * REGION;
    arena = aligned_alloc(4096, bytes);
    if (!arena)
        abort();
    memset(arena, 0, bytes);
    pthread_barrier_init(&barrier, NULL, THREADS);
    pthread_t h[THREADS];
    for (long t = 0; t < THREADS; t++)
        if (pthread_create(&h[t], NULL, thread, (void *)t) != 0)
            abort();
    for (int t = 0; t < THREADS; t++)
        pthread_join(h[t], NULL);
    printf("mode %d: read %.2f ns an object\n", mode, read_ns / ((double)THREADS * BATCH * rounds));
    return 0;
}
