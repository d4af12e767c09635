/* Burst layout: in what order an allocator hands back a size class's objects in the runner's
 * `mixed-bursts` loop, and how many pages a burst covers. A placement figure with no clock in
 * it, so two allocators (or two builds) compare exactly on a noisy machine.
 *
 * One thread runs the loop of `burst_order.h` (bursts of 1,000-3,999 objects in a 128-byte band
 * of sizes that moves 40 bytes a round; each burst written, then checked and freed forwards,
 * backwards or evens-then-odds in turn). After WARM rounds it looks at every allocation and
 * the one before it of the same class in the same burst (a class is what `malloc_usable_size`
 * says), and prints, for the classes up to 256 B and those above, by the free order of the
 * round before (the order the allocator got the objects back in):
 *
 *   next     the share of allocations one object away from the class's previous one (the
 *            distance is the usable size, either way): a run a stride prefetcher follows;
 *   4 KiB    the share within 4 KiB of it, either way;
 *   pages    4 KiB pages the burst's objects of the group cover, a round on average, and
 *            the requested bytes over them.
 *
 * Session 62 found rseqmalloc's stack classes (up to 256 B) hand a burst back in nearly random
 * order (at 83fd700 next 0.05-0.06 and 4 KiB 0.27-0.29, where mimalloc 2.0 gives 0.87-1.00
 * and 1.00): docs/benchmarks.md, "Session 62".
 *
 *   cc -O2 -o /tmp/burst_layout benches/c/burst_layout.c
 *   LD_PRELOAD=target/release/librseqmalloc.so /tmp/burst_layout 2000
 *   LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2 /tmp/burst_layout 2000
 *
 * Argument (optional): rounds (2,000; at least WARM + 3). */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "burst_order.h"

/* Rounds before the counts start: the classes' caches and spans reach their steady state. */
#define WARM 100
/* Usable sizes tracked: a class of the band has at most this many bytes. */
#define MAX_USABLE 4096
/* The two groups: 0 up to 256 B, 1 above. */
#define GROUPS 2

static long pairs[GROUPS][3], next[GROUPS][3], near[GROUPS][3];
static double pages[GROUPS], bytes[GROUPS];

static int cmp_page(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* Distinct values among the n sorted in place at `v`. */
static long distinct(uintptr_t *v, long n) {
    qsort(v, (size_t)n, sizeof *v, cmp_page);
    long d = 0;
    for (long i = 0; i < n; i++) d += i == 0 || v[i] != v[i - 1];
    return d;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 2000;
    if (rounds < WARM + 3) {
        fprintf(stderr, "rounds must be at least %d\n", WARM + 3);
        return 2;
    }
    void **p;
    size_t *sz;
    burst_arrays(&p, &sz);
    uintptr_t *last = calloc(MAX_USABLE + 1, sizeof *last);
    uintptr_t *in_group[GROUPS];
    for (int g = 0; g < GROUPS; g++) {
        in_group[g] = malloc((BURST_MIN + BURST_SPREAD) * sizeof(uintptr_t));
    }
    if (!last || !in_group[0] || !in_group[1]) abort();
    uint64_t state = burst_seed(0);
    for (long r = 0; r < rounds; r++) {
        long n = burst_len(burst_rand(&state));
        size_t start = burst_start(r);
        int before = (int)((r + 2) % 3); /* the free order of round r - 1 */
        int counted = r >= WARM;
        long in[GROUPS] = {0, 0};
        double requested[GROUPS] = {0, 0};
        for (size_t u = 0; u <= MAX_USABLE; u++) last[u] = 0;
        for (long i = 0; i < n; i++) {
            size_t z = burst_size(start, burst_rand(&state));
            uint64_t *o = burst_new(z, i);
            p[i] = o;
            sz[i] = z;
            if (!counted) continue;
            size_t u = malloc_usable_size(o);
            if (u > MAX_USABLE) u = MAX_USABLE;
            int g = u > 256;
            uintptr_t a = (uintptr_t)o;
            if (last[u]) {
                uintptr_t d = a > last[u] ? a - last[u] : last[u] - a;
                pairs[g][before]++;
                next[g][before] += d == u;
                near[g][before] += d <= 4096;
            }
            last[u] = a;
            in_group[g][in[g]++] = a >> 12;
            requested[g] += (double)z;
        }
        if (counted) {
            for (int g = 0; g < GROUPS; g++) {
                pages[g] += (double)distinct(in_group[g], in[g]);
                bytes[g] += requested[g];
            }
        }
        for (long k = 0; k < n; k++) {
            long i = burst_order(r, k, n);
            burst_check_free(p[i], sz[i], i, r);
        }
    }
    static const char *group[GROUPS] = {"up to 256 B", "above 256 B"};
    static const char *order[3] = {"forwards", "backwards", "evens, then odds"};
    long measured = rounds - WARM;
    printf("classes      freed before       next   4 KiB\n");
    for (int g = 0; g < GROUPS; g++) {
        for (int o = 0; o < 3; o++) {
            double all = pairs[g][o] ? (double)pairs[g][o] : 1.0;
            printf("%-12s %-17s %6.3f  %6.3f\n", group[g], order[o], next[g][o] / all,
                   near[g][o] / all);
        }
    }
    for (int g = 0; g < GROUPS; g++) {
        printf("%s: %.1f pages a round, %.0f requested bytes a page\n", group[g],
               pages[g] / (double)measured, pages[g] > 0 ? bytes[g] / pages[g] : 0.0);
    }
    for (int g = 0; g < GROUPS; g++) free(in_group[g]);
    free(last);
    free(p);
    free(sz);
    return 0;
}
