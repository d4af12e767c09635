/* Reuse elsewhere: thread A, pinned to CPU 0, allocates MIB MiB of SIZE-byte blocks (and
 * writes them), then spins until the end, so that it keeps its CPU's slab; thread B, pinned to
 * CPU 1, frees all but one block in KEEP and allocates as many again. Prints the resident set
 * after A's allocation and at the end, and rseqmalloc's `active` bytes (0 under other
 * allocators).
 *
 * A program that frees most of a structure another CPU built and then builds another in its
 * place should reuse the freed memory. With owned spans (257-960 B), the spans A's slab took
 * stay A's while partly used, and B takes fresh ones (session 49: 23 MB resident after A's
 * allocation, 41 MB at the end; 23 MB at the end with owned_spans=off; the peers, whose
 * arenas or pages are their threads' in the same way, grow too: glibc 22 and 41, mimalloc 2.0
 * 24 and 44, jemalloc 26 and 46; docs/benchmarks.md, "Session 49").
 *
 *   cc -O2 -o /tmp/reuse_elsewhere benches/c/reuse_elsewhere.c -lpthread -ldl
 *   LD_PRELOAD=target/release/librseqmalloc.so /tmp/reuse_elsewhere 400 20 8
 *
 * Arguments: SIZE (400), MIB (20), KEEP (8). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "cross_cpu.h"

static void **objs;
static size_t n, size, keep;
static atomic_int phase;

static void *thread_a(void *arg) {
    (void)arg;
    pin_to_cpu("reuse_elsewhere", 0);
    fill_empty_slots(objs, n, size, 1);
    atomic_store(&phase, 1);
    while (atomic_load(&phase) != 2)
        ;
    return NULL;
}

static void *thread_b(void *arg) {
    (void)arg;
    pin_to_cpu("reuse_elsewhere", 1);
    for (size_t i = 0; i < n; i++)
        if (i % keep) {
            free(objs[i]);
            objs[i] = NULL;
        }
    fill_empty_slots(objs, n, size, 2);
    return NULL;
}

static size_t resident(void) {
    size_t pages = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%zu %zu", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * 4096;
}

int main(int argc, char **argv) {
    size = argc > 1 ? strtoull(argv[1], NULL, 10) : 400;
    size_t mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 20;
    keep = argc > 3 ? strtoull(argv[3], NULL, 10) : 8;
    n = (mib << 20) / size;
    objs = calloc(n, sizeof *objs);
    pthread_t a, b;
    pthread_create(&a, NULL, thread_a, NULL);
    while (atomic_load(&phase) != 1)
        ;
    size_t before = resident();
    pthread_create(&b, NULL, thread_b, NULL);
    pthread_join(b, NULL);
    atomic_store(&phase, 2);
    pthread_join(a, NULL);
    printf("resident %zu MB after A's allocation, %zu MB at the end; active %zu MB\n",
           before >> 20, resident() >> 20, rseqmalloc_figure("stats.active") >> 20);
    return 0;
}
