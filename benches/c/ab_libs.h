/* What the A/B programs (`ab.c`, `ab_churn.c`) share: loading two malloc implementations side
 * by side, a clock, and sorting figures for their percentiles. */
#ifndef RSEQMALLOC_BENCH_AB_LIBS_H
#define RSEQMALLOC_BENCH_AB_LIBS_H

#include <dlfcn.h>
#include <stdio.h>
#include <time.h>

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);

/* Loads the libraries at `path[0]` and `path[1]` with dlopen (RTLD_LOCAL | RTLD_DEEPBIND:
 * each keeps its own malloc, state and thread-local data) and returns their malloc and free
 * in `m` and `f`; on failure prints one line naming `who` and returns 0. */
static int load_pair(const char *who, char **path, malloc_fn m[2], free_fn f[2]) {
    for (int i = 0; i < 2; i++) {
        void *h = dlopen(path[i], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        if (!h) {
            fprintf(stderr, "%s: %s\n", who, dlerror());
            return 0;
        }
        m[i] = (malloc_fn)dlsym(h, "malloc");
        f[i] = (free_fn)dlsym(h, "free");
        if (!m[i] || !f[i]) {
            fprintf(stderr, "%s: %s has no malloc or free\n", who, path[i]);
            return 0;
        }
    }
    return 1;
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

/* qsort order of doubles, ascending. */
static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
