/* A/B: two malloc implementations in one process, rounds alternated.
 *
 * On a machine whose speed changes from one run to the next (the AMD VM of sessions 14-15:
 * spreads of 10-70 % between runs of the same program), two builds timed in separate
 * processes differ by more than the change being measured. This loads both libraries with
 * dlopen (RTLD_LOCAL | RTLD_DEEPBIND: each keeps its own malloc, state and thread-local
 * data), then alternates rounds between them, the order swapped every round: both meet the
 * same machine phase, and the ratio is taken round by round.
 *
 * A round is bursts of N objects of one size: N mallocs, each object's first word written
 * with its index, then each checked and freed, until 200,000 objects went through (the
 * runner's `batch` pattern, as in bursts.c). Prints the medians of each library's ns per
 * object (malloc + free) and the percentiles of the per-round ratio B/A.
 *
 *   cc -O2 -o /tmp/ab benches/c/ab.c -ldl
 *   cp target/release/librseqmalloc.so /tmp/new.so     # give the two builds distinct paths
 *   /tmp/ab /tmp/old.so /tmp/new.so 16 100 150          # size, N, rounds
 *   /tmp/ab /tmp/new.so /usr/lib/x86_64-linux-gnu/libmimalloc.so.2.0 64 16 150
 *
 * Both libraries must be loadable with dlopen (rseqmalloc's shim, mimalloc 2.0 and
 * tcmalloc-minimal are; glibc's malloc is not a separate library). A copy of rseqmalloc
 * loaded this way uses glibc's rseq area like the first. Only the library calls differ
 * between A and B, so the ratio is the allocators' (plus where their code happens to sit). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ab_libs.h"

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: ab A.so B.so size N rounds\n");
        return 2;
    }
    malloc_fn m[2];
    free_fn f[2];
    if (!load_pair("ab", argv + 1, m, f))
        return 1;
    size_t size = strtoul(argv[3], NULL, 10);
    long n = strtol(argv[4], NULL, 10), rounds = strtol(argv[5], NULL, 10);
    if (size < 8 || n < 1 || rounds < 3) {
        fprintf(stderr, "ab: size >= 8, N >= 1, rounds >= 3\n");
        return 2;
    }
    uint64_t **p = calloc(n, sizeof *p);
    double *t[2] = {calloc(rounds, sizeof(double)), calloc(rounds, sizeof(double))};
    double *ratio = calloc(rounds, sizeof(double));
    long reps = 200000 / n > 0 ? 200000 / n : 1;
    for (long r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) {
            int i = (r & 1) ? 1 - k : k;
            double t0 = now_ns();
            for (long q = 0; q < reps; q++) {
                for (long j = 0; j < n; j++) {
                    p[j] = m[i](size);
                    if (!p[j])
                        abort();
                    p[j][0] = j;
                }
                for (long j = 0; j < n; j++) {
                    if (p[j][0] != (uint64_t)j) {
                        fprintf(stderr, "ab: object %ld overwritten\n", j);
                        abort();
                    }
                    f[i](p[j]);
                }
            }
            t[i][r] = (now_ns() - t0) / (double)(reps * n);
        }
        ratio[r] = t[1][r] / t[0][r];
    }
    qsort(t[0], rounds, sizeof(double), by_value);
    qsort(t[1], rounds, sizeof(double), by_value);
    qsort(ratio, rounds, sizeof(double), by_value);
    printf("%zu B x %ld: A %.2f ns, B %.2f ns (medians); B/A per round: p10 %.2f p25 %.2f "
           "p50 %.2f p75 %.2f p90 %.2f (%ld rounds)\n",
           size, n, t[0][rounds / 2], t[1][rounds / 2], ratio[rounds / 10], ratio[rounds / 4],
           ratio[rounds / 2], ratio[rounds * 3 / 4], ratio[rounds * 9 / 10], rounds);
    return 0;
}
