/* C bursts: the runner's `batch` pattern as a C program, one line per (size, N) cell.
 *
 * For each object size (16, 64, 256, 1024 B) and burst length N (1 ... 100,000), allocates
 * N objects with malloc, writes an id into the first and last word of each, then checks and
 * frees them all, repeating until 250,000 objects went through the cell (the runner's
 * `batch` at its default scale). Prints "size/N ns-per-object" (allocation + free).
 *
 *   cc -O2 -o /tmp/bursts benches/c/bursts.c
 *   LD_PRELOAD=target/release/librseqmalloc.so /tmp/bursts
 *   LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2.0 /tmp/bursts
 *
 * Alternate the libraries over several runs and compare medians (docs/benchmarks.md). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(void) {
    static void *p[100000];
    const size_t sizes[] = {16, 64, 256, 1024};
    const int bursts[] = {1, 10, 100, 1000, 10000, 100000};
    const long per_cell = 250000;
    uint64_t id = 0;
    for (int s = 0; s < 4; s++) {
        for (int b = 0; b < 6; b++) {
            int n = bursts[b];
            long rounds = per_cell / n > 0 ? per_cell / n : 1;
            double t0 = now_ns();
            for (long r = 0; r < rounds; r++) {
                uint64_t first = id;
                for (int i = 0; i < n; i++) {
                    uint64_t *q = malloc(sizes[s]);
                    if (!q)
                        abort();
                    id++;
                    q[0] = id;
                    q[sizes[s] / 8 - 1] = ~id;
                    p[i] = q;
                }
                for (int i = 0; i < n; i++) {
                    uint64_t *q = p[i];
                    if (q[0] != first + 1 + i || q[sizes[s] / 8 - 1] != ~(first + 1 + i))
                        abort();
                    free(q);
                }
            }
            printf("%zu/%d %.2f\n", sizes[s], n, (now_ns() - t0) / ((double)rounds * n));
        }
    }
    return 0;
}
