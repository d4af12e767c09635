/* A/B: two malloc implementations in one process, rounds alternated.
 *
 * On a machine whose speed changes from one run to the next (the AMD VM of sessions 14-15:
 * spreads of 10-70 % between runs of the same program), two builds timed in separate
 * processes differ by more than the change being measured. This loads both libraries with
 * dlopen (RTLD_LOCAL | RTLD_DEEPBIND: each keeps its own malloc, state and thread-local
 * data), then alternates rounds between them, the order swapped every round: both meet the
 * same machine phase, and the ratio is taken round by round.
 *
 * A round is bursts of N objects: N mallocs, each object's first word written with its
 * index, then each checked and freed, until 200,000 objects went through (the runner's
 * `batch` pattern, as in bursts.c). The size is one number or a comma-separated list, which
 * the objects of a burst cycle through ("16,32": 16, 32, 16, 32, ...; a program's mixed
 * sizes). Prints the medians of each library's ns per object (malloc + free) and the
 * percentiles of the per-round ratio B/A.
 *
 *   cc -O2 -o /tmp/ab benches/c/ab.c -ldl
 *   cp target/release/librseqmalloc.so /tmp/new.so     # give the two builds distinct paths
 *   /tmp/ab /tmp/old.so /tmp/new.so 16 100 150          # size, N, rounds
 *   /tmp/ab /tmp/new.so /usr/lib/x86_64-linux-gnu/libmimalloc.so.2.0 64 16 150
 *   /tmp/ab /tmp/old.so /tmp/new.so 16,32 100 150       # two size classes in turn
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
        fprintf(stderr, "usage: ab A.so B.so size[,size...] N rounds\n");
        return 2;
    }
    malloc_fn m[2];
    free_fn f[2];
    if (!load_pair("ab", argv + 1, m, f))
        return 1;
    size_t sizes[16];
    int nsizes = 0;
    for (char *s = argv[3]; nsizes < 16;) {
        char *end;
        sizes[nsizes] = strtoul(s, &end, 10);
        if (end == s || sizes[nsizes] < 8)
            nsizes = 0, s = "";
        else
            nsizes++, s = end;
        if (*s != ',')
            break;
        s++;
    }
    long n = strtol(argv[4], NULL, 10), rounds = strtol(argv[5], NULL, 10);
    if (nsizes == 0 || n < 1 || rounds < 3) {
        fprintf(stderr, "ab: sizes >= 8 (at most 16), N >= 1, rounds >= 3\n");
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
                    p[j] = m[i](sizes[j % nsizes]);
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
    printf("%s B x %ld: A %.2f ns, B %.2f ns (medians); B/A per round: p10 %.2f p25 %.2f "
           "p50 %.2f p75 %.2f p90 %.2f (%ld rounds)\n",
           argv[3], n, t[0][rounds / 2], t[1][rounds / 2], ratio[rounds / 10], ratio[rounds / 4],
           ratio[rounds / 2], ratio[rounds * 3 / 4], ratio[rounds * 9 / 10], rounds);
    return 0;
}
