/* Burst phases: the runner's `mixed-bursts` loop on one thread, with each phase timed apart.
 *
 * Each round allocates a burst of objects (1,000-3,999 with the arguments below, as in the
 * runner) whose sizes lie in a 128-byte band ((start + rand % 128) & ~7), writing an id into
 * each object's first word and its complement into its last; then reads every object's first
 * word (the id check); then checks each object's last word and frees it. Both later phases
 * walk the burst forwards, backwards or evens-then-odds in turn. The band's start moves up 40
 * bytes a round over 16-896 B (modulo 881), as in the runner, or stays at 400 B with a fifth
 * argument "fixed" (or at START bytes, 16-896, with "fixed=START"). Prints the total
 * milliseconds of each phase and fails unless every id reads back, then the allocation and free
 * phases' nanoseconds an object by the round's band of sizes, in four groups that follow
 * rseqmalloc's split between its per-CPU stacks and its owned spans (`owned::MIN_CLASS`,
 * `owned::MAX_CLASS`): every size up to 256 B (stacks only), the band across 256 B (both),
 * every size in 257-960 B (owned spans only), and the band across 960 B (the 1 KiB class is on
 * the stacks again). With "fixed" every round falls in one group.
 *
 *   cc -O2 -o /tmp/burst_phases benches/c/burst_phases.c
 *   LD_PRELOAD=target/release/librseqmalloc.so taskset -c 1 /tmp/burst_phases 4000 1000 3000
 *   LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2 taskset -c 1 /tmp/burst_phases 4000 1000 3000 fixed
 *
 * Arguments: rounds, the smallest burst, the spread of burst lengths, and optionally "fixed" or
 * "fixed=START".
 * The read phase costs the same under every allocator when the objects handed out are as
 * warm as each other; the allocation and free phases then differ by the allocator's own work
 * (each also touches an object's last line, the same under every allocator; see
 * docs/benchmarks.md, "Session 41"). Alternate the libraries over several runs. */
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c99 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "burst_order.h"

/* One thread's random state: thread 0's of the other burst programs (set in main). */
static uint64_t state;

static uint64_t next_rand(void) {
    return burst_rand(&state);
}

/* The groups of bands the per-object figures are split into: a band [start, start + 128)
 * gives sizes (start + rand % 128) & ~7, so every size is at most 256 B up to start 136, and
 * at least 264 B (the class above 256 B) from start 257 on; every size is at most 960 B up to
 * start 840. */
#define GROUPS 4
static const char *const group_name[GROUPS] = {
    "sizes up to 256 B", "across 256 B", "sizes 257-960 B", "across 960 B"};

static int group_of(size_t start) {
    return start <= 136 ? 0 : start < 257 ? 1 : start <= 840 ? 2 : 3;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

int main(int argc, char **argv) {
    state = burst_seed(0);
    if (argc < 4) {
        fprintf(stderr, "usage: %s rounds burst_min burst_spread [fixed[=START]]\n", argv[0]);
        return 2;
    }
    long rounds = atol(argv[1]);
    int burst_min = atoi(argv[2]), spread = atoi(argv[3]);
    int fixed = argc > 4;
    long fixed_start = 400;
    if (fixed && strcmp(argv[4], "fixed") != 0) {
        char *end = NULL;
        if (strncmp(argv[4], "fixed=", 6) == 0) fixed_start = strtol(argv[4] + 6, &end, 10);
        if (!end || *end != '\0' || end == argv[4] + 6 || fixed_start < 16 || fixed_start > 896) {
            fprintf(stderr, "the fifth argument, if any, is \"fixed\" or \"fixed=START\" (16-896)\n");
            return 2;
        }
    }
    if (rounds < 1 || burst_min < 1 || spread < 1 || burst_min > 1000000 || spread > 1000000) {
        fprintf(stderr, "rounds, burst_min and burst_spread must be positive (bursts up to 1e6)\n");
        return 2;
    }
    void **p = malloc((size_t)(burst_min + spread) * sizeof *p);
    size_t *sz = malloc((size_t)(burst_min + spread) * sizeof *sz);
    if (!p || !sz) return 1;
    double alloc_ms = 0, read_ms = 0, free_ms = 0;
    double group_alloc[GROUPS] = {0}, group_free[GROUPS] = {0};
    long group_objects[GROUPS] = {0};
    uint64_t id = 0;
    for (long r = 0; r < rounds; r++) {
        int n = burst_min + (int)(next_rand() % (uint64_t)spread);
        size_t start = fixed ? (size_t)fixed_start : burst_start(r);
        uint64_t first = id;
        double t0 = now_ms();
        for (int i = 0; i < n; i++) {
            size_t z = burst_size(start, next_rand());
            uint64_t *o = malloc(z);
            if (!o) return 1;
            o[0] = ++id;
            o[z / 8 - 1] = ~id;
            p[i] = o;
            sz[i] = z;
        }
        double t1 = now_ms();
        for (int k = 0; k < n; k++) {
            int i = (int)burst_order(r, k, n);
            if (((uint64_t *)p[i])[0] != first + 1 + (uint64_t)i) {
                fprintf(stderr, "object %d of round %ld lost its id\n", i, r);
                return 1;
            }
        }
        double t2 = now_ms();
        for (int k = 0; k < n; k++) {
            int i = (int)burst_order(r, k, n);
            if (((uint64_t *)p[i])[sz[i] / 8 - 1] != ~(first + 1 + (uint64_t)i)) {
                fprintf(stderr, "object %d of round %ld lost its last word\n", i, r);
                return 1;
            }
            free(p[i]);
        }
        double t3 = now_ms();
        int g = group_of(start);
        group_alloc[g] += t1 - t0;
        group_free[g] += t3 - t2;
        group_objects[g] += n;
        alloc_ms += t1 - t0;
        read_ms += t2 - t1;
        free_ms += t3 - t2;
    }
    printf("allocate+write %.0f ms  read %.0f ms  free %.0f ms\n", alloc_ms, read_ms, free_ms);
    for (int g = 0; g < GROUPS; g++) {
        if (group_objects[g] == 0) continue;
        printf("%-17s  allocate+write %.1f ns  free %.1f ns an object (%ld objects)\n",
               group_name[g], group_alloc[g] * 1e6 / (double)group_objects[g],
               group_free[g] * 1e6 / (double)group_objects[g], group_objects[g]);
    }
    return 0;
}
