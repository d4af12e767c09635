/* Alternating bursts: a burst of one size class, then a burst of another, in turn; one line
 * per pair of bursts. Checks the burst tier (docs/design.md, "The burst tier") where two
 * classes want it at once: each burst allocates its objects, writes an id into the first and
 * last word of each, then checks and frees them all. Prints "A x NA + B x NB ns-per-object"
 * (allocation + free) over 2,000,000 objects a line.
 *
 *   cc -O2 -o /tmp/bursts_alternating benches/c/bursts_alternating.c
 *   LD_PRELOAD=target/release/librseqmalloc.so /tmp/bursts_alternating
 *
 * Alternate the libraries over several runs and compare medians (docs/benchmarks.md,
 * "Session 30"). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *p[100000];
static uint64_t id;

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void burst(size_t size, int n) {
    uint64_t first = id;
    for (int i = 0; i < n; i++) {
        uint64_t *q = malloc(size);
        if (!q)
            abort();
        id++;
        q[0] = id;
        q[size / 8 - 1] = ~id;
        p[i] = q;
    }
    for (int i = 0; i < n; i++) {
        uint64_t *q = p[i];
        if (q[0] != first + 1 + i || q[size / 8 - 1] != ~(first + 1 + i))
            abort();
        free(q);
    }
}

int main(void) {
    static const struct {
        size_t a;
        int na;
        size_t b;
        int nb;
    } cells[] = {
        {64, 10000, 128, 5000}, {64, 10000, 64, 10000}, {16, 10000, 32, 10000},
        {64, 8000, 256, 2500},  {256, 2500, 1024, 600}, {64, 16000, 128, 8000},
        {1024, 1000, 512, 2000},
    };
    for (unsigned c = 0; c < sizeof cells / sizeof cells[0]; c++) {
        long objects = 0;
        double t0 = now_ns();
        while (objects < 2000000) {
            burst(cells[c].a, cells[c].na);
            burst(cells[c].b, cells[c].nb);
            objects += cells[c].na + cells[c].nb;
        }
        printf("%zu x %d + %zu x %d %.2f\n", cells[c].a, cells[c].na, cells[c].b, cells[c].nb,
               (now_ns() - t0) / objects);
    }
    return 0;
}
