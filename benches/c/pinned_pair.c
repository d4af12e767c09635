/* Pinned pair: one producer/consumer pair with the scheduler's placement taken out. A producer
 * pinned to CPU P allocates objects of the runner's small sizes (`small_sizes.h`), fills each
 * with a byte derived from its sequence number and writes the number into its first bytes,
 * and hands them over in batches of 64 through a ring of 16 batches to a consumer pinned to
 * CPU C, which checks each object (number and fill, every byte) and frees it. With P != C
 * every free is of another CPU's object (owner return sends it home); with P == C none is.
 * Prints nanoseconds per object (allocation, fill, check and free, wall clock).
 *
 * How it differs from the runner's `producer-consumer`, whose time depends on whether the
 * scheduler puts a pair on one CPU or two (docs/benchmarks.md, "Session 24"): one pair, not
 * one per CPU; the batches travel in a static ring, not in heap vectors freed by the consumer;
 * waiting spins with sched_yield instead of blocking in a channel (on one CPU the two threads
 * take turns).
 *
 *   cc -O2 -o /tmp/pinned_pair benches/c/pinned_pair.c -lpthread
 *   env LD_PRELOAD=target/release/librseqmalloc.so /tmp/pinned_pair 0 1 4000000
 *   env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2.0 /tmp/pinned_pair 0 1 4000000
 *
 * Arguments (optional): producer CPU P (0), consumer CPU C (1), objects N (4,000,000; rounded
 * down to whole batches of 64, at least one). Alternate the libraries over several runs and
 * compare medians: what crosses between two CPUs of a virtual machine costs more or less as
 * the host places them. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cross_cpu.h"
#include "small_sizes.h"

#define BATCH 64
#define RING 16

static unsigned char *ring[RING][BATCH];
static size_t lens[RING][BATCH];
/* Batches published (by the producer) and consumed (by the consumer). */
static _Atomic long head, tail;
static long batches;
static int cpu_p, cpu_c;

/* The fill byte of object `id`: never 0, so a zeroed block never passes. */
static unsigned char fill_of(uint64_t id) {
    return (unsigned char)(mix(id) | 1);
}

static void *produce(void *arg) {
    (void)arg;
    pin_to_cpu("pinned_pair", cpu_p);
    uint64_t rng = 1;
    for (long b = 0; b < batches; b++) {
        while (b - atomic_load_explicit(&tail, memory_order_acquire) >= RING)
            sched_yield();
        long at = b % RING;
        for (int i = 0; i < BATCH; i++) {
            uint64_t id = (uint64_t)b * BATCH + i;
            size_t n = small_size(&rng);
            unsigned char *p = malloc(n);
            if (!p)
                abort();
            memset(p, fill_of(id), n);
            memcpy(p, &id, n < sizeof id ? n : sizeof id);
            ring[at][i] = p;
            lens[at][i] = n;
        }
        atomic_store_explicit(&head, b + 1, memory_order_release);
    }
    return NULL;
}

static void *consume(void *arg) {
    (void)arg;
    pin_to_cpu("pinned_pair", cpu_c);
    for (long b = 0; b < batches; b++) {
        while (atomic_load_explicit(&head, memory_order_acquire) <= b)
            sched_yield();
        long at = b % RING;
        for (int i = 0; i < BATCH; i++) {
            uint64_t id = (uint64_t)b * BATCH + i;
            unsigned char *p = ring[at][i];
            size_t n = lens[at][i];
            size_t head_bytes = n < sizeof id ? n : sizeof id;
            /* The number, then the fill: every byte after it equal to the first (one
             * overlapping memcmp, as the runner's `pattern::uniform`). */
            int ok = memcmp(p, &id, head_bytes) == 0 &&
                     (n == head_bytes ||
                      (p[head_bytes] == fill_of(id) &&
                       memcmp(p + head_bytes, p + head_bytes + 1, n - head_bytes - 1) == 0));
            if (!ok) {
                fprintf(stderr, "pinned_pair: object %llu (%zu B) was overwritten\n",
                        (unsigned long long)id, n);
                exit(3);
            }
            free(p);
        }
        atomic_store_explicit(&tail, b + 1, memory_order_release);
    }
    return NULL;
}

int main(int argc, char **argv) {
    cpu_p = argc > 1 ? atoi(argv[1]) : 0;
    cpu_c = argc > 2 ? atoi(argv[2]) : 1;
    long objects = argc > 3 ? atol(argv[3]) : 4000000;
    batches = objects / BATCH > 0 ? objects / BATCH : 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t p, c;
    if (pthread_create(&p, NULL, produce, NULL) || pthread_create(&c, NULL, consume, NULL))
        abort();
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    printf("%.1f ns/object (producer CPU %d, consumer CPU %d)\n", ns / (batches * BATCH), cpu_p,
           cpu_c);
    return 0;
}
