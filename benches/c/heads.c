/* Heads: a program that reads mostly the first line of each of its objects (a B-tree page
 * cache's page headers, a buffer's length field), and where the allocator's size classes put
 * those lines in the cache. For docs/design.md, "Size classes" (why a class above 1 KiB is an
 * odd number of cache lines).
 *
 * N objects of SIZE bytes are allocated in a row, each stamped in its first word; then ROUNDS
 * times the program reads every object's first word, in one fixed shuffled order. It prints:
 *
 *   sets     how many of an L1D's 64 sets (64-byte lines, 4 KiB ways: a 32 KiB 8-way L1D)
 *            the objects' first lines fall in, and the most first lines in one set; an 8-way
 *            set holds 8, so past 8 × sets the reads miss the L1 even though the lines would
 *            fit it. A placement figure with no clock in it. (The L1 is indexed by address
 *            bits 6-11, inside a 4 KiB page, so virtual addresses give its sets exactly; an L2
 *            is indexed by physical bits above the page offset too, which a program cannot
 *            see without huge pages, so no L2 figure is printed.)
 *   ns/read  the time of one read, the sum of the words checked against what was stamped.
 *
 * Objects at a stride of 4,608 B (a class 4,096 + 512) start at 8 offsets in a 4 KiB way, so
 * 1,024 of them share 8 of the L1's sets; at 4,544 B (71 lines) a span's objects take as many
 * sets as there are objects in it (14 in a 64 KiB span).
 *
 *   cc -O2 -o /tmp/heads benches/c/heads.c
 *   env LD_PRELOAD=target/release/librseqmalloc.so /tmp/heads 4400 1024
 *   /tmp/heads 4400 1024      # glibc
 *
 * Arguments (optional): SIZE (4,400 B: sqlite's page-cache entry for 4 KiB pages is 4,368),
 * N (1,024), ROUNDS (5,000,000 / N). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* An L1D of 32 KiB, 8-way: 64 sets of 64-byte lines. */
enum { LINE = 64, L1_SETS = 64 };

/* How many of the L1's sets the objects' first lines fall in, and the most in one. */
static void coverage(uint64_t **obj, size_t n, size_t *used, size_t *most) {
    size_t per_set[L1_SETS] = {0};
    for (size_t i = 0; i < n; i++)
        per_set[((uintptr_t)obj[i] / LINE) % L1_SETS]++;
    *used = *most = 0;
    for (size_t s = 0; s < L1_SETS; s++) {
        *used += per_set[s] != 0;
        *most = per_set[s] > *most ? per_set[s] : *most;
    }
}

int main(int argc, char **argv) {
    size_t size = argc > 1 ? strtoul(argv[1], 0, 0) : 4400;
    size_t n = argc > 2 ? strtoul(argv[2], 0, 0) : 1024;
    long rounds = argc > 3 ? strtol(argv[3], 0, 0) : (long)(n && n < 5000000 ? 5000000 / n : 1);
    if (size < sizeof(uint64_t) || n == 0 || n > SIZE_MAX / sizeof(uint64_t *) || rounds <= 0) {
        fprintf(stderr, "usage: heads [SIZE >= 8] [N > 0] [ROUNDS > 0]\n");
        return 2;
    }
    uint64_t **obj = malloc(n * sizeof *obj);
    size_t *order = malloc(n * sizeof *order);
    if (!obj || !order) {
        fprintf(stderr, "heads: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        obj[i] = malloc(size);
        if (!obj[i]) {
            fprintf(stderr, "heads: out of memory\n");
            return 1;
        }
        obj[i][0] = i + 1;
        order[i] = i;
    }
    srand(1);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    size_t l1, l1_most;
    coverage(obj, n, &l1, &l1_most);

    struct timespec a, b;
    uint64_t sum = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long r = 0; r < rounds; r++)
        for (size_t i = 0; i < n; i++)
            sum += *(volatile uint64_t *)obj[order[i]];
    clock_gettime(CLOCK_MONOTONIC, &b);
    /* Every word read is its object's index + 1: n (n + 1) / 2 a round. */
    if (sum != (uint64_t)rounds * (n * (n + 1) / 2)) {
        fprintf(stderr, "heads: the objects' first words changed\n");
        return 3;
    }
    double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / ((double)rounds * n);
    printf("size %zu n %zu: first lines in %zu of %d L1 sets (at most %zu in one); %.3f ns/read\n",
           size, n, l1, L1_SETS, l1_most, ns);
    for (size_t i = 0; i < n; i++)
        free(obj[i]);
    free(obj);
    free(order);
    return 0;
}
