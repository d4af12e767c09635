/* Pinned pair: the runner's `producer-consumer` with its scheduling taken out. A producer
 * pinned to CPU P allocates objects of the runner's small sizes (60 % 8-64 B, 30 % 65-256 B,
 * 10 % 257-512 B), fills them, and hands them over in batches of 64 through a ring of 16
 * batches to a consumer pinned to CPU C, which checks each object's first and last byte and
 * frees it. With P != C every free is of another CPU's object (owner return sends it home);
 * with P == C none is. The runner's workload is bimodal because the scheduler decides which
 * of the two it runs (docs/benchmarks.md, "Session 24"); this program measures each alone.
 * Prints nanoseconds per object (allocation, fill, check and free, wall clock). Waiting for
 * the ring spins with sched_yield, so on one CPU the two threads take turns.
 *
 *   cc -O2 -o /tmp/pinned_pair benches/c/pinned_pair.c -lpthread
 *   env LD_PRELOAD=target/release/librseqmalloc.so /tmp/pinned_pair 0 1 4000000
 *   env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2.0 /tmp/pinned_pair 0 1 4000000
 *
 * Arguments (optional): producer CPU P (0), consumer CPU C (1), objects N (4,000,000). Alternate
 * the libraries over several runs and compare medians. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 64
#define RING 16

static unsigned char *ring[RING][BATCH];
static size_t lens[RING][BATCH];
/* Batches published (by the producer) and consumed (by the consumer). */
static _Atomic long head, tail;
static long batches;
static int cpu_p, cpu_c;

/* xorshift64: the producer's own generator. */
static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t small_size(void) {
    uint64_t r = next() % 100;
    if (r < 60)
        return 8 + next() % 57;
    if (r < 90)
        return 65 + next() % 192;
    return 257 + next() % 256;
}

static void pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    if (pthread_setaffinity_np(pthread_self(), sizeof s, &s) != 0) {
        fprintf(stderr, "pinned_pair: cannot pin to CPU %d\n", cpu);
        exit(2);
    }
}

static void *produce(void *arg) {
    (void)arg;
    pin(cpu_p);
    for (long b = 0; b < batches; b++) {
        while (b - atomic_load_explicit(&tail, memory_order_acquire) >= RING)
            sched_yield();
        long at = b % RING;
        for (int i = 0; i < BATCH; i++) {
            size_t n = small_size();
            unsigned char *p = malloc(n);
            if (!p)
                abort();
            memset(p, (unsigned char)(n | 1), n);
            ring[at][i] = p;
            lens[at][i] = n;
        }
        atomic_store_explicit(&head, b + 1, memory_order_release);
    }
    return NULL;
}

static void *consume(void *arg) {
    (void)arg;
    pin(cpu_c);
    for (long b = 0; b < batches; b++) {
        while (atomic_load_explicit(&head, memory_order_acquire) <= b)
            sched_yield();
        long at = b % RING;
        for (int i = 0; i < BATCH; i++) {
            unsigned char *p = ring[at][i];
            size_t n = lens[at][i];
            unsigned char tag = (unsigned char)(n | 1);
            if (p[0] != tag || p[n - 1] != tag) {
                fprintf(stderr, "pinned_pair: object %p (%zu B) was overwritten\n", (void *)p, n);
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
