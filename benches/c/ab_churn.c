/* A/B churn: two malloc implementations in one process, the runner's churn on T threads,
 * phases alternated.
 *
 * `ab.c` compares two builds on one thread's bursts; this compares them where the runner's
 * `single-churn` and `multi-churn` live: T threads (more than the CPUs for `multi-churn`),
 * each replacing random slots of its own ring of S objects of the runner's small sizes (each
 * old object's bytes checked before its free, each new one filled). Both libraries are loaded
 * with dlopen (RTLD_LOCAL | RTLD_DEEPBIND, each with its own malloc, state and thread-local
 * data) and every thread keeps one ring per library. A round runs two phases, one per library
 * in an order swapped every round: all threads do OPS replacements on that library's ring,
 * with a barrier before and after, and the phase's time is the wall time between the
 * barriers (what the runner measures). Both libraries meet the same machine phase, and the
 * ratio is taken round by round.
 *
 *   cc -O2 -o /tmp/ab_churn benches/c/ab_churn.c -ldl -lpthread
 *   cp target/release/librseqmalloc.so /tmp/new.so     # give the two builds distinct paths
 *   /tmp/ab_churn /tmp/old.so /tmp/new.so 8 3125 20000 40     # threads, slots, ops, rounds
 *   /tmp/ab_churn /tmp/new.so /usr/lib/x86_64-linux-gnu/libmimalloc.so.2.0 1 100000 100000 40
 *
 * 8 threads × 3,125 slots is `multi-churn` at the runner's default scale on two CPUs; one
 * thread × 100,000 slots is `single-churn` at scale 1 (35,000 at its default scale, 0.35). The first two rounds warm both rings up and are
 * not counted. Prints each library's median phase time over OPS (wall ns per replacement of
 * one thread) and the percentiles of the per-round ratio B/A. Only the
 * library calls differ between A and B, but the two heaps share the caches: each phase
 * starts with the other library's ring freshly touched. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ab_libs.h"
#include "small_sizes.h"

static malloc_fn lib_malloc[2];
static free_fn lib_free[2];
static long threads, slots, ops, rounds;
static pthread_barrier_t barrier;
/* The library of the phase about to run, set by thread 0 between the barriers. */
static int phase_lib;

typedef struct {
    uint8_t **obj;
    size_t *len;
    uint8_t *fill;
} Ring;

/* A new object of a random small size from library `lib`, filled with one byte value. */
static void place(Ring *r, long i, int lib, uint64_t *rng) {
    size_t n = small_size(rng);
    uint8_t v = (uint8_t)next(rng);
    uint8_t *p = lib_malloc[lib](n);
    if (!p) {
        fprintf(stderr, "ab_churn: malloc(%zu) failed\n", n);
        exit(1);
    }
    memset(p, v, n);
    r->obj[i] = p;
    r->len[i] = n;
    r->fill[i] = v;
}

static void check(const Ring *r, long i) {
    const uint8_t *p = r->obj[i];
    for (size_t k = 0; k < r->len[i]; k++) {
        if (p[k] != r->fill[i]) {
            fprintf(stderr, "ab_churn: object %ld overwritten at byte %zu\n", i, k);
            abort();
        }
    }
}

static double phase_ns[2][1024];

static void *run(void *arg) {
    long t = (long)arg;
    Ring ring[2];
    uint64_t rng[2];
    for (int lib = 0; lib < 2; lib++) {
        Ring *r = &ring[lib];
        /* The harness's own arrays come from glibc's malloc, not from either library. */
        r->obj = calloc(slots, sizeof *r->obj);
        r->len = calloc(slots, sizeof *r->len);
        r->fill = calloc(slots, sizeof *r->fill);
        if (!r->obj || !r->len || !r->fill)
            abort();
        rng[lib] = (uint64_t)t * 7919 + 1;
        for (long i = 0; i < slots; i++)
            place(r, i, lib, &rng[lib]);
    }
    for (long round = 0; round < rounds; round++) {
        for (int k = 0; k < 2; k++) {
            pthread_barrier_wait(&barrier);
            double t0 = 0;
            if (t == 0) {
                phase_lib = (round & 1) ? 1 - k : k;
                t0 = now_ns();
            }
            pthread_barrier_wait(&barrier);
            int lib = phase_lib;
            Ring *r = &ring[lib];
            for (long q = 0; q < ops; q++) {
                long i = (long)(next(&rng[lib]) % (uint64_t)slots);
                check(r, i);
                lib_free[lib](r->obj[i]);
                place(r, i, lib, &rng[lib]);
            }
            pthread_barrier_wait(&barrier);
            if (t == 0)
                phase_ns[lib][round] = now_ns() - t0;
        }
    }
    for (int lib = 0; lib < 2; lib++) {
        for (long i = 0; i < slots; i++) {
            check(&ring[lib], i);
            lib_free[lib](ring[lib].obj[i]);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: ab_churn A.so B.so threads slots ops rounds\n");
        return 2;
    }
    if (!load_pair("ab_churn", argv + 1, lib_malloc, lib_free))
        return 1;
    threads = strtol(argv[3], NULL, 10);
    slots = strtol(argv[4], NULL, 10);
    ops = strtol(argv[5], NULL, 10);
    rounds = strtol(argv[6], NULL, 10);
    if (threads < 1 || threads > 256 || slots < 1 || ops < 1 || rounds < 5 || rounds > 1024) {
        fprintf(stderr, "ab_churn: threads 1-256, slots >= 1, ops >= 1, rounds 5-1024\n");
        return 2;
    }
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    pthread_t *th = calloc(threads, sizeof *th);
    for (long t = 0; t < threads; t++) {
        if (pthread_create(&th[t], NULL, run, (void *)t) != 0) {
            fprintf(stderr, "ab_churn: pthread_create failed\n");
            return 1;
        }
    }
    for (long t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    long counted = rounds - 2;
    double *a = phase_ns[0] + 2, *b = phase_ns[1] + 2;
    double *ratio = calloc(counted, sizeof(double));
    for (long r = 0; r < counted; r++)
        ratio[r] = b[r] / a[r];
    qsort(a, counted, sizeof(double), by_value);
    qsort(b, counted, sizeof(double), by_value);
    qsort(ratio, counted, sizeof(double), by_value);
    double per_op = 1.0 / (double)ops;
    printf("%ld threads x %ld slots, %ld ops a phase: A %.1f ns, B %.1f ns (medians, phase "
           "time / ops); B/A per round: p10 %.3f p25 %.3f p50 %.3f p75 %.3f p90 %.3f "
           "(%ld rounds)\n",
           threads, slots, ops, a[counted / 2] * per_op, b[counted / 2] * per_op,
           ratio[counted / 10], ratio[counted / 4], ratio[counted / 2], ratio[counted * 3 / 4],
           ratio[counted * 9 / 10], counted);
    return 0;
}
