/* 10,000 short-lived threads, 50 at a time (200 batches). Each allocates 100 objects
 * (16 B-16 KiB and one 256 KiB block), frees 90 of them itself and leaves 10 to the main
 * thread, which frees them after joining (so objects outlive the thread that made them).
 *
 * Memory must not grow with the number of threads that have come and gone:
 * - RSS (/proc/self/statm) after the last batch may exceed RSS after batch 10 by at most
 *   8 MiB. Batch 10 has already paid for everything a steady state needs: both CPUs' slabs,
 *   spans of every class used, the central lists, glibc's stack cache (capped at 40 MiB of
 *   address space, i.e. a handful of 8 MiB stacks, of which only touched pages are resident)
 *   and thread descriptors. The remaining 9,500 threads must add nothing, while a leak of
 *   1 KiB per thread (one cached batch of small objects, one span record, one page of a
 *   per-thread structure) would add about 9.3 MiB and fail.
 * - The allocator's own `allocated` figure must come back to its value after batch 10 within
 *   64 KiB (stdio's buffers), which catches a per-thread leak of even a few bytes.
 *
 * usage: churn [batches]          prints "churn ok ..." */
#include "common.h"
#include "rseqmalloc.h"

#include <pthread.h>

enum { PER_BATCH = 50, OBJS = 100, KEEP = 10 };

struct result {
    void *kept[KEEP];
    size_t size[KEEP];
    uint64_t seed;
};

static size_t allocated_now(void) {
    struct rseqmalloc_stats s;
    size_t (*f)(struct rseqmalloc_stats *, size_t) =
        (size_t(*)(struct rseqmalloc_stats *, size_t))dlsym(RTLD_DEFAULT, "rseqmalloc_stats");
    CHECK(f && f(&s, sizeof s) == sizeof s);
    return s.allocated;
}

static void *worker(void *arg) {
    struct result *res = arg;
    rng_t r = {res->seed};
    void *p[OBJS];
    size_t sz[OBJS];
    for (int i = 0; i < OBJS; i++) {
        sz[i] = i == 0 ? (256u << 10) : 16 + rng_below(&r, (size_t)1 << (4 + rng_below(&r, 11)));
        p[i] = malloc(sz[i]);
        CHECK(p[i]);
        fill(p[i], sz[i] < 4096 ? sz[i] : 4096, res->seed + (uint64_t)i);
    }
    for (int i = 0; i < OBJS; i++) {
        CHECK(verify(p[i], sz[i] < 4096 ? sz[i] : 4096, res->seed + (uint64_t)i) == (size_t)-1);
        if (i >= OBJS - KEEP) {
            res->kept[i - (OBJS - KEEP)] = p[i];
            res->size[i - (OBJS - KEEP)] = sz[i];
        } else {
            free(p[i]);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    test_init(200);
    int batches = argc > 1 ? atoi(argv[1]) : 200;
    CHECK(batches > 10);
    static struct result res[PER_BATCH];
    pthread_t t[PER_BATCH];
    size_t rss10 = 0, alloc10 = 0, rss_max = 0;
    uint64_t seed = 1;
    for (int b = 0; b < batches; b++) {
        for (int i = 0; i < PER_BATCH; i++) {
            res[i].seed = seed;
            seed += 1000;
            CHECK(pthread_create(&t[i], NULL, worker, &res[i]) == 0);
        }
        for (int i = 0; i < PER_BATCH; i++) {
            CHECK(pthread_join(t[i], NULL) == 0);
            for (int k = 0; k < KEEP; k++) {
                size_t n = res[i].size[k] < 4096 ? res[i].size[k] : 4096;
                CHECK(verify(res[i].kept[k], n, res[i].seed + (uint64_t)(OBJS - KEEP + k)) ==
                      (size_t)-1);
                free(res[i].kept[k]);
            }
        }
        size_t rss = rss_bytes();
        if (b == 9) {
            rss10 = rss;
            alloc10 = allocated_now();
        }
        if (b >= 9 && rss > rss_max) rss_max = rss;
    }
    size_t rss_end = rss_bytes(), alloc_end = allocated_now();
    printf("churn ok threads=%d rss10=%zu rss_end=%zu rss_max=%zu alloc10=%zu alloc_end=%zu "
           "mode=%s\n",
           batches * PER_BATCH, rss10, rss_end, rss_max, alloc10, alloc_end, shim_mode());
    fflush(stdout);
    CHECKF(rss_end <= rss10 + (8u << 20), "RSS grew from %zu to %zu over %d threads", rss10,
           rss_end, (batches - 10) * PER_BATCH);
    CHECKF(rss_max <= rss10 + (8u << 20), "RSS peaked at %zu (batch 10: %zu)", rss_max, rss10);
    CHECKF(alloc_end <= alloc10 + (64u << 10), "allocated grew from %zu to %zu", alloc10,
           alloc_end);
    return 0;
}
