/* Thread density: how many pages and cache lines each thread's live objects occupy after a
 * multi-threaded churn, and how many lines hold objects of two threads. A placement figure
 * with no clock in it, for the weakness docs/design.md calls "Object locality across threads"
 * (a per-CPU cache hands what one thread freed to whichever thread allocates next on that CPU).
 *
 * T threads each keep S slots of objects of the runner's small sizes (60 % 8-64 B, 30 %
 * 65-256 B, 10 % 257-512 B, as `churn.c`) and replace a random slot OPS times (free, then
 * malloc and fill). Then, with every thread's objects still live, it prints per thread:
 *
 *   lines   distinct 64-byte lines its objects cover, and that over its live bytes / 64
 *   shared  the share of all lines covered that hold objects of more than one thread
 *   pages   distinct 4 KiB pages its objects cover, and that over its live bytes / 4096
 *
 * A thread's pages are what its time slice needs the TLB to reach; a shared line is false
 * sharing when its threads run on two CPUs. The figures depend on the schedule (how threads
 * interleave on a CPU), not on the machine's speed: pin to one CPU, or let the threads
 * outnumber two, and compare allocators run the same way.
 *
 *   cc -O2 -o /tmp/thread_density benches/c/thread_density.c -lpthread
 *   env LD_PRELOAD=target/release/librseqmalloc.so /tmp/thread_density 8 500000 6250
 *   env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2.0 /tmp/thread_density 8 500000 6250
 *
 * Arguments (optional): threads T (8, at most 64), operations per thread OPS (500,000), slots
 * per thread S (6,250: `multi-churn`'s live set at scale 0.5 on two CPUs). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "small_sizes.h"

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "thread_density: malloc(%zu) failed\n", n);
        exit(1);
    }
    return p;
}

static long threads = 8, ops = 500000, slots = 6250;

typedef struct {
    uint8_t **obj;
    size_t *len;
} Ring;

static Ring ring[64];
static pthread_barrier_t start;

static void *run(void *arg) {
    long t = (long)arg;
    uint64_t rng = (uint64_t)t + 1;
    Ring *r = &ring[t];
    pthread_barrier_wait(&start); /* every thread churns against the others from the start */
    r->obj = xmalloc(slots * sizeof *r->obj);
    r->len = xmalloc(slots * sizeof *r->len);
    for (long i = 0; i < slots; i++) {
        r->len[i] = small_size(&rng);
        r->obj[i] = xmalloc(r->len[i]);
        memset(r->obj[i], 0x5a, r->len[i]);
    }
    for (long k = 0; k < ops; k++) {
        long i = (long)(next(&rng) % (uint64_t)slots);
        free(r->obj[i]);
        r->len[i] = small_size(&rng);
        r->obj[i] = xmalloc(r->len[i]);
        memset(r->obj[i], 0x5a, r->len[i]);
    }
    return NULL;
}

static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* (line or page number) << 6 | thread, for every unit an object of the thread covers. */
static long units(uint64_t *out, int shift) {
    long n = 0;
    for (long t = 0; t < threads; t++)
        for (long i = 0; i < slots; i++) {
            uint64_t first = (uint64_t)ring[t].obj[i], last = first + ring[t].len[i] - 1;
            for (uint64_t u = first >> shift; u <= last >> shift; u++)
                out[n++] = u << 6 | (uint64_t)t;
        }
    qsort(out, (size_t)n, sizeof *out, by_value);
    return n;
}

int main(int argc, char **argv) {
    if (argc > 1)
        threads = atol(argv[1]);
    if (argc > 2)
        ops = atol(argv[2]);
    if (argc > 3)
        slots = atol(argv[3]);
    if (threads < 1 || threads > 64 || ops < 0 || slots < 1) {
        fprintf(stderr, "usage: thread_density [threads <= 64] [operations] [slots]\n");
        return 2;
    }
    pthread_t th[64];
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (long t = 0; t < threads; t++)
        if (pthread_create(&th[t], NULL, run, (void *)t)) {
            fprintf(stderr, "thread_density: pthread_create failed\n");
            return 1;
        }
    for (long t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    double live = 0;
    for (long t = 0; t < threads; t++)
        for (long i = 0; i < slots; i++)
            live += (double)ring[t].len[i];
    /* An object of at most 512 B covers at most 9 lines (2 pages). */
    uint64_t *u = xmalloc((size_t)(threads * slots) * 9 * sizeof *u);
    long n = units(u, 6);
    long pairs = 0, lines = 0, shared = 0;
    for (long i = 0; i < n;) {
        long j = i, owners = 0;
        for (; j < n && u[j] >> 6 == u[i] >> 6; j++)
            owners += j == i || u[j] != u[j - 1];
        pairs += owners;
        lines++;
        shared += owners > 1;
        i = j;
    }
    n = units(u, 12);
    long pages = 0;
    for (long i = 0; i < n; i++)
        pages += i == 0 || u[i] != u[i - 1];
    printf("threads %ld: per thread %.0f lines (%.2fx its live bytes / 64), %.0f pages (%.2fx "
           "its live bytes / 4096); lines holding two threads' objects %.1f%%\n",
           threads, (double)pairs / threads, pairs / (live / 64), (double)pages / threads,
           pages / (live / 4096), 100.0 * shared / lines);
    free(u);
    for (long t = 0; t < threads; t++) {
        for (long i = 0; i < slots; i++)
            free(ring[t].obj[i]);
        free(ring[t].obj);
        free(ring[t].len);
    }
    return 0;
}
