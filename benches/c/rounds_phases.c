/* Rounds phases: the runner's `rounds` pattern in C, with each phase of a round timed apart.
 *
 * THREADS threads work in synchronised rounds. In each round every thread allocates a batch of
 * BATCH objects of the runner's small sizes (`small_sizes.h`: 60 % 8-64 B, 30 % 65-256 B, 10 %
 * 257-512 B) and fills each with one byte; after a barrier, each thread reads the batch of the
 * thread `round` places after it (its own every THREADS rounds) with `memcmp`, then frees that
 * batch; a second barrier closes the round. Unlike the runner's workload, the read and the free
 * are two loops, so that the time of the reads and the time of the frees can be told apart.
 *
 *   cc -O2 -pthread -o /tmp/rounds_phases benches/c/rounds_phases.c
 *   LD_PRELOAD=target/release/librseqmalloc.so /tmp/rounds_phases 8 600 1000
 *   PIN=1 LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /tmp/rounds_phases 8 600 1000
 *
 * Arguments: threads, rounds, objects a batch. With PIN=1 in the environment thread t runs only
 * on the (t mod n)-th of the n CPUs the process may use (`pin_thread.h`). With two CPUs and an
 * even number of threads, a reader then shares its writer's CPU in even rounds and not in odd
 * ones, and the two columns are labelled "same CPU" and "other CPU"; otherwise they are merely
 * even and odd rounds. Prints, for each phase (allocation with its fill, read, free), the wall
 * time of that phase in all threads together divided by all their objects, in nanoseconds,
 * and the whole run's milliseconds; fails unless every object reads back. The times are wall
 * times on shared CPUs: with more threads than CPUs a phase can include other threads' work
 * while its thread waits for a CPU, so compare allocators in the same setting, alternating
 * the libraries over several runs (docs/benchmarks.md, "Session 57"). */
#define _GNU_SOURCE /* pthread_setaffinity_np, sched_getaffinity, CPU_SET */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phase_clock.h"
#include "pin_thread.h"
#include "small_sizes.h"

/* The largest object: the read compares against a buffer this long. */
#define MAX_SIZE 512

struct obj {
    unsigned char *p;
    size_t n;
};

static int threads, rounds, batch, pin, ncpus;
static cpu_set_t allowed;
static pthread_barrier_t barrier;
static struct obj **published;

/* Nanoseconds per phase, [phase][round parity], summed over threads under `sum_lock`. */
enum { ALLOC, READ, FREE, PHASES };
static double sums[PHASES][2];
static pthread_mutex_t sum_lock = PTHREAD_MUTEX_INITIALIZER;

/* The byte thread `t` fills its batch of round `r` with. */
static unsigned char fill_byte(int t, int r) {
    return (unsigned char)((t * 31 + r) | 1);
}

static void add(int phase, int round, double ns) {
    pthread_mutex_lock(&sum_lock);
    sums[phase][round & 1] += ns;
    pthread_mutex_unlock(&sum_lock);
}

static void *thread_main(void *arg) {
    int t = (int)(intptr_t)arg;
    uint64_t state = 0x5eed0000ull + (uint64_t)t;
    if (pin && pin_to_nth(&allowed, ncpus, t) != 0) {
        fprintf(stderr, "rounds_phases: cannot pin thread %d\n", t);
        exit(2);
    }
    for (int r = 0; r < rounds; r++) {
        struct obj *mine = malloc(sizeof *mine * (size_t)batch);
        if (!mine) {
            fprintf(stderr, "rounds_phases: out of memory\n");
            exit(2);
        }
        double t0 = now_ns();
        for (int i = 0; i < batch; i++) {
            size_t n = small_size(&state);
            mine[i].p = malloc(n);
            if (!mine[i].p) {
                fprintf(stderr, "rounds_phases: out of memory\n");
                exit(2);
            }
            mine[i].n = n;
            memset(mine[i].p, fill_byte(t, r), n);
        }
        double t1 = now_ns();
        published[t] = mine;
        pthread_barrier_wait(&barrier);

        int from = (t + r) % threads;
        struct obj *theirs = published[from];
        unsigned char expect[MAX_SIZE];
        memset(expect, fill_byte(from, r), sizeof expect);
        double t2 = now_ns();
        for (int i = 0; i < batch; i++) {
            if (memcmp(theirs[i].p, expect, theirs[i].n) != 0) {
                fprintf(stderr, "rounds_phases: object %d of thread %d overwritten\n", i, from);
                exit(3);
            }
        }
        double t3 = now_ns();
        for (int i = 0; i < batch; i++)
            free(theirs[i].p);
        double t4 = now_ns();
        add(ALLOC, r, t1 - t0);
        add(READ, r, t3 - t2);
        add(FREE, r, t4 - t3);
        free(theirs);
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

int main(int argc, char **argv) {
    clock_start();
    if (argc != 4) {
        fprintf(stderr, "usage: rounds_phases THREADS ROUNDS BATCH\n");
        return 2;
    }
    threads = atoi(argv[1]);
    rounds = atoi(argv[2]);
    batch = atoi(argv[3]);
    pin = getenv("PIN") != NULL && strcmp(getenv("PIN"), "1") == 0;
    if (threads < 1 || threads > 1024 || rounds < 2 || batch < 1) {
        fprintf(stderr, "rounds_phases: 1-1024 threads, at least 2 rounds, a batch >= 1\n");
        return 2;
    }
    ncpus = allowed_cpus(&allowed);
    if (pin && ncpus == 0) {
        fprintf(stderr, "rounds_phases: cannot read the CPUs allowed\n");
        return 2;
    }
    published = calloc((size_t)threads, sizeof *published);
    pthread_t *ids = malloc(sizeof *ids * (size_t)threads);
    if (!published || !ids || pthread_barrier_init(&barrier, NULL, (unsigned)threads) != 0) {
        fprintf(stderr, "rounds_phases: set-up failed\n");
        return 2;
    }
    double start = now_ns();
    for (int t = 0; t < threads; t++) {
        if (pthread_create(&ids[t], NULL, thread_main, (void *)(intptr_t)t) != 0) {
            fprintf(stderr, "rounds_phases: cannot start thread %d\n", t);
            return 2;
        }
    }
    for (int t = 0; t < threads; t++)
        pthread_join(ids[t], NULL);
    double total = now_ns() - start;
    /* Objects per round parity, over all threads. */
    double even = (double)threads * ((rounds + 1) / 2) * batch;
    double odd = (double)threads * (rounds / 2) * batch;
    int by_cpu = pin && ncpus == 2 && threads % 2 == 0;
    printf("ns/object (%s): alloc+fill %.1f %.1f  read %.1f %.1f  free %.1f %.1f\n",
           by_cpu ? "same CPU, other CPU" : "even rounds, odd rounds", sums[ALLOC][0] / even,
           sums[ALLOC][1] / odd, sums[READ][0] / even, sums[READ][1] / odd, sums[FREE][0] / even,
           sums[FREE][1] / odd);
    printf("%.1f ms\n", total / 1e6);
    return 0;
}
