/* What the C programs that move memory between CPUs share (`pinned_pair.c`,
 * `freed_elsewhere.c`, `reuse_elsewhere.c`): pinning the calling thread to a CPU, filling the
 * empty slots of an array of blocks, and reading one of rseqmalloc's figures when it is the
 * allocator. The including file defines _GNU_SOURCE before its first include. */
#ifndef RSEQMALLOC_BENCH_CROSS_CPU_H
#define RSEQMALLOC_BENCH_CROSS_CPU_H

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pins the calling thread to CPU `cpu`; `who` (the program) names it when that fails, which
 * ends the program (a run on other CPUs than asked would measure something else). */
static inline void pin_to_cpu(const char *who, int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    if (pthread_setaffinity_np(pthread_self(), sizeof s, &s) != 0) {
        fprintf(stderr, "%s: cannot pin to CPU %d\n", who, cpu);
        exit(2);
    }
}

/* Gives every null slot of `objs[0..n)` a block of `size` bytes from malloc, filled with
 * `byte`. */
static inline void fill_empty_slots(void **objs, size_t n, size_t size, int byte) {
    for (size_t i = 0; i < n; i++)
        if (!objs[i]) {
            objs[i] = malloc(size);
            memset(objs[i], byte, size);
        }
}

/* The figure `name` of rseqmalloc's control interface (`rseqmalloc_ctl("stats.active")` and
 * the like, rseqmalloc.h), or 0 when the library is not the allocator. */
static inline size_t rseqmalloc_figure(const char *name) {
    int (*ctl)(const char *, char *, size_t) = (int (*)(const char *, char *, size_t))dlsym(
        RTLD_DEFAULT, "rseqmalloc_ctl");
    char buf[64];
    if (!ctl || ctl(name, buf, sizeof buf) != 0)
        return 0;
    return strtoull(buf, NULL, 10);
}

#endif
