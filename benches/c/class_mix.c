/* Class mix: bursts of N objects (100 by default) of one size class against the same bursts
 * spread over several classes, in one process, patterns alternated round by round.
 *
 * A burst is N mallocs, each object's first word written (as a program initialises what it
 * allocates), then each checked and freed. Four patterns, 1,000,000 objects a round, 9 rounds
 * each; prints the median ns per object (malloc + free) of each, in this order:
 *   one    every object 16 B
 *   two    16, 32, 16, 32, ... B (two classes in turn)
 *   eight  16, 32, ..., 128, 16, ... B (eight classes in turn)
 *   random eight classes in a fixed pseudo-random order
 *
 *   cc -O2 -o /tmp/class_mix benches/c/class_mix.c
 *   LD_PRELOAD=target/release/librseqmalloc.so /tmp/class_mix [N]
 *
 * Session 30 (docs/benchmarks.md): tcmalloc-minimal and mimalloc 2.0 cost the same in all four
 * patterns; rseqmalloc's two, eight and random cost 1.15-1.3x its one. Alternate the
 * libraries over several runs and compare medians. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_N 10000
#define ROUNDS 9
#define PATTERNS 4

static void *p[MAX_N];
static size_t sizes[PATTERNS][MAX_N];

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

/* ns per object for bursts of `n` objects of the sizes of `pattern`. */
static double run(int pattern, int n) {
    const size_t *s = sizes[pattern];
    long objects = 0;
    uint64_t id = 0;
    double t0 = now_ns();
    while (objects < 1000000) {
        for (int i = 0; i < n; i++) {
            uint64_t *q = malloc(s[i]);
            if (!q)
                abort();
            q[0] = id + i;
            p[i] = q;
        }
        for (int i = 0; i < n; i++) {
            uint64_t *q = p[i];
            if (q[0] != id + i)
                abort();
            free(q);
        }
        objects += n;
        id += n;
    }
    return (now_ns() - t0) / objects;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    if (n < 1 || n > MAX_N) {
        fprintf(stderr, "class_mix: 1 <= N <= %d\n", MAX_N);
        return 2;
    }
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sizes[0][i] = 16;
        sizes[1][i] = i & 1 ? 32 : 16;
        sizes[2][i] = 16 * (1 + i % 8);
        sizes[3][i] = 16 * (1 + x % 8);
    }
    double t[PATTERNS][ROUNDS];
    for (int r = 0; r < ROUNDS; r++)
        for (int m = 0; m < PATTERNS; m++)
            t[m][r] = run(m, n);
    for (int m = 0; m < PATTERNS; m++)
        qsort(t[m], ROUNDS, sizeof(double), by_value);
    printf("N %d: one %.2f two %.2f eight %.2f random %.2f ns (medians of %d)\n", n,
           t[0][ROUNDS / 2], t[1][ROUNDS / 2], t[2][ROUNDS / 2], t[3][ROUNDS / 2], ROUNDS);
    return 0;
}
