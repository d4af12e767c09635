/* Route phases: the runner's `mixed-bursts` loop, then a larson-style churn, on the same
 * threads: what a program whose bursts made its small classes idle-routed (owned spans, see
 * docs/design.md, "Small classes routed once idle") pays when it turns to churning those
 * classes across threads.
 *
 * Phase 1 (BURSTS rounds a thread, 0 to skip it): each thread runs `burst_order.h`'s bursts,
 * the band moving over 16-896 B as in the runner. Phase 2: each thread keeps a ring of SLOTS
 * objects of 17-256 B (the classes a thread may route) and replaces random ones (the old
 * object's stamp checked before its free, the new one stamped), OPS replacements a thread in
 * EXCHANGES steps; between two steps every thread hands its ring to the next thread, so that
 * most frees are of another thread's objects, as in larson. Fails unless every stamp reads
 * back. Prints phase 2's wall time per replacement of one thread and the threads' CPU time in
 * phase 2 (ms, summed), then phase 1's the same way.
 *
 *   cc -O2 -pthread -o /tmp/route_phases benches/c/route_phases.c
 *   LD_PRELOAD=$PWD/target/release/librseqmalloc.so RSEQMALLOC_OPTIONS=stats=text \
 *       /tmp/route_phases 2 600 2000 2000000 20
 *
 * Arguments: threads (1-64), BURSTS, SLOTS, OPS, EXCHANGES. Compare builds (or allocators)
 * by alternated runs; `stats.owned_classes_routed` tells whether phase 1 routed anything. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "burst_order.h"
#include "phase_clock.h"
#include "small_sizes.h"

static long threads, bursts, slots, ops, exchanges;
static pthread_barrier_t barrier;

typedef struct {
    uint64_t **obj;
    size_t *len;
} Ring;

static Ring *rings;
static double cpu_ms[2];
static double wall_ns[2];
static pthread_mutex_t sum_lock = PTHREAD_MUTEX_INITIALIZER;

static double thread_cpu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* A new object of 17-256 B for slot i, stamped with `stamp` in its first and last words. */
static void place(Ring *r, long i, uint64_t stamp, uint64_t *rng) {
    size_t z = (24 + next(rng) % 233) & ~(size_t)7; /* 24-256 B: the 32-256 B classes */
    uint64_t *o = malloc(z);
    if (!o) abort();
    o[0] = stamp;
    o[z / 8 - 1] = ~stamp;
    r->obj[i] = o;
    r->len[i] = z;
}

static void check_free(Ring *r, long i) {
    uint64_t *o = r->obj[i];
    size_t z = r->len[i];
    if (o[z / 8 - 1] != ~o[0]) {
        fprintf(stderr, "route_phases: slot %ld lost its stamp\n", i);
        abort();
    }
    free(o);
}

static void phase_bursts(long t) {
    uint64_t state = burst_seed(t);
    void **p;
    size_t *sz;
    burst_arrays(&p, &sz);
    for (long r = 0; r < bursts; r++) {
        long n = burst_len(burst_rand(&state));
        size_t start = burst_start(r);
        for (long i = 0; i < n; i++) {
            sz[i] = burst_size(start, burst_rand(&state));
            p[i] = burst_new(sz[i], i);
        }
        for (long k = 0; k < n; k++) {
            long i = burst_order(r, k, n);
            burst_check_free(p[i], sz[i], i, r);
        }
    }
    free(p);
    free(sz);
}

static void phase_churn(long t) {
    uint64_t rng = 0x5eed0000u + (uint64_t)t;
    long per_step = ops / exchanges;
    for (long s = 0; s < exchanges; s++) {
        Ring *r = &rings[(t + s) % threads];
        for (long k = 0; k < per_step; k++) {
            long i = (long)(next(&rng) % (uint64_t)slots);
            check_free(r, i);
            place(r, i, next(&rng), &rng);
        }
        pthread_barrier_wait(&barrier);
    }
}

static void timed(int phase, long t, void (*body)(long)) {
    pthread_barrier_wait(&barrier);
    double w0 = now_ns(), c0 = thread_cpu_ms();
    body(t);
    pthread_barrier_wait(&barrier);
    double c = thread_cpu_ms() - c0, w = now_ns() - w0;
    pthread_mutex_lock(&sum_lock);
    cpu_ms[phase] += c;
    if (t == 0) wall_ns[phase] = w;
    pthread_mutex_unlock(&sum_lock);
}

static void *thread(void *arg) {
    long t = (long)(intptr_t)arg;
    timed(1, t, phase_bursts);
    timed(0, t, phase_churn);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s THREADS BURSTS SLOTS OPS EXCHANGES\n", argv[0]);
        return 2;
    }
    threads = atol(argv[1]);
    bursts = atol(argv[2]);
    slots = atol(argv[3]);
    ops = atol(argv[4]);
    exchanges = atol(argv[5]);
    if (threads < 1 || threads > 64 || bursts < 0 || slots < 1 || exchanges < 1 ||
        ops < exchanges) {
        fprintf(stderr, "route_phases: bad arguments\n");
        return 2;
    }
    clock_start();
    rings = calloc((size_t)threads, sizeof *rings);
    uint64_t rng = 1;
    for (long t = 0; t < threads; t++) {
        rings[t].obj = malloc((size_t)slots * sizeof *rings[t].obj);
        rings[t].len = malloc((size_t)slots * sizeof *rings[t].len);
        if (!rings[t].obj || !rings[t].len) abort();
        for (long i = 0; i < slots; i++) place(&rings[t], i, next(&rng), &rng);
    }
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    pthread_t tid[64];
    for (long t = 0; t < threads; t++)
        if (pthread_create(&tid[t], NULL, thread, (void *)(intptr_t)t) != 0) abort();
    for (long t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    for (long t = 0; t < threads; t++) {
        for (long i = 0; i < slots; i++) check_free(&rings[t], i);
        free(rings[t].obj);
        free(rings[t].len);
    }
    free(rings);
    printf("churn %.2f ns/op %.1f cpu_ms bursts %.1f ms %.1f cpu_ms\n",
           wall_ns[0] / (double)(ops / exchanges * exchanges), cpu_ms[0], wall_ns[1] / 1e6,
           cpu_ms[1]);
    return 0;
}
