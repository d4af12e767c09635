/* Mixed pairs: T threads each call malloc and at once free, for 32 sizes in turn (16 + 48 *
 * (i + t) mod 512 bytes: the sizes of criterion's `threads` group), so every pair is a cached
 * hit in an allocator with per-thread or per-CPU caches, but consecutive pairs use different
 * size classes. Prints the wall time from the threads' start to the last join, over all pairs
 * (with more threads than CPUs, the CPUs share it).
 *
 *   cc -O2 -pthread -o /tmp/mixed_pairs benches/c/mixed_pairs.c
 *   LD_PRELOAD=target/release/librseqmalloc.so /tmp/mixed_pairs 16 2000000
 *   RSEQMALLOC_OPTIONS=rseq=off LD_PRELOAD=target/release/librseqmalloc.so /tmp/mixed_pairs 16
 *   LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /tmp/mixed_pairs 16 2000000
 *
 * Arguments (optional): threads T (1, at most 256), pairs per thread (2,000,000). Alternate the
 * libraries over several runs and compare medians (docs/benchmarks.md, "Session 34"). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long pairs_per_thread = 2000000;

static void *run(void *arg) {
    long t = (long)arg;
    for (long i = 0; i < pairs_per_thread; i++) {
        size_t size = 16 + (size_t)((i + t) * 48) % 512;
        unsigned char *p = malloc(size);
        if (p == NULL) {
            fprintf(stderr, "mixed_pairs: malloc(%zu) failed\n", size);
            exit(1);
        }
        /* One write, so the pair is not optimised away and the object is really used. */
        p[size - 1] = (unsigned char)i;
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (argc > 2) {
        pairs_per_thread = atol(argv[2]);
    }
    if (threads < 1 || threads > 256 || pairs_per_thread < 1) {
        fprintf(stderr, "usage: mixed_pairs [threads 1-256] [pairs per thread]\n");
        return 2;
    }
    pthread_t th[256];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long t = 0; t < threads; t++) {
        if (pthread_create(&th[t], NULL, run, (void *)t) != 0) {
            fprintf(stderr, "mixed_pairs: pthread_create failed\n");
            return 1;
        }
    }
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    double pairs = (double)threads * (double)pairs_per_thread;
    printf("%.1f ns per pair (%d threads, %ld pairs each)\n", ns / pairs, threads,
           pairs_per_thread);
    return 0;
}
