/* Two copies of the allocator in one process, each opened with dlopen(RTLD_NOW | RTLD_LOCAL |
 * RTLD_DEEPBIND) from its own path (as benches/c/ab.c opens the builds it compares): each
 * keeps its own heap and thread data, and only one of them may own a registration of its own
 * (the second finds rseq registered by the first and runs without it; never fights it).
 * Interleaves 20,000 objects of both, checks every byte, frees each through its own copy,
 * from this thread and from a second one.
 *
 * usage: two_copies A.so B.so      prints "two_copies ok modes=<A's mode>,<B's mode>" */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);
typedef const char *(*mode_fn)(void);

static malloc_fn m[2];
static free_fn f[2];
static mode_fn mode[2];

#define N 10000

static void round_trip(unsigned seed) {
    static __thread unsigned char *p[2][N];
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 2; k++) {
            size_t n = 16 + (i * 37 + k * 11 + seed) % 1000;
            p[k][i] = m[k](n);
            if (!p[k][i]) {
                fprintf(stderr, "copy %d: malloc(%zu) failed\n", k, n);
                exit(1);
            }
            memset(p[k][i], (i + k + seed) & 0xff, n);
        }
    }
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 2; k++) {
            size_t n = 16 + (i * 37 + k * 11 + seed) % 1000;
            for (size_t j = 0; j < n; j++) {
                if (p[k][i][j] != ((i + k + seed) & 0xff)) {
                    fprintf(stderr, "copy %d: object %d overwritten at byte %zu\n", k, i, j);
                    exit(1);
                }
            }
            f[k](p[k][i]);
        }
    }
}

static void *thread_main(void *arg) {
    (void)arg;
    round_trip(7);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: two_copies A.so B.so\n");
        return 2;
    }
    for (int k = 0; k < 2; k++) {
        void *h = dlopen(argv[1 + k], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        if (!h) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            return 1;
        }
        m[k] = (malloc_fn)dlsym(h, "malloc");
        f[k] = (free_fn)dlsym(h, "free");
        mode[k] = (mode_fn)dlsym(h, "rseqmalloc_rseq_mode");
        if (!m[k] || !f[k] || !mode[k]) {
            fprintf(stderr, "%s lacks malloc, free or rseqmalloc_rseq_mode\n", argv[1 + k]);
            return 1;
        }
        if (m[k] == (malloc_fn)malloc) {
            fprintf(stderr, "%s's malloc is the process's own\n", argv[1 + k]);
            return 1;
        }
    }
    round_trip(0);
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, NULL) != 0 || pthread_join(t, NULL) != 0) {
        fprintf(stderr, "pthread failed\n");
        return 1;
    }
    printf("two_copies ok modes=%s,%s\n", mode[0](), mode[1]());
    return 0;
}
