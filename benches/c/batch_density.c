/* Batch density: how many pages and cache lines a batch of objects allocated together covers,
 * in the runner's two cross-thread batch patterns. A placement figure with no clock in it,
 * as `thread_density.c` is for the churn.
 *
 *   rounds             T threads each allocate a batch of 1,000 objects of the runner's small
 *                      sizes (`small_sizes.h`), fill them, wait for all, then check and free
 *                      the batch of thread (t + round) mod T, round after round (`rounds`).
 *   producer-consumer  P pairs: the producer allocates batches of 64 objects and hands each to
 *                      its consumer through a queue 16 batches deep; the consumer checks and
 *                      frees them (`producer-consumer`).
 *
 * Over the second half of the run, for every batch as its allocating thread made it:
 *
 *   pages   distinct 4 KiB pages its objects cover, over its bytes / 4096
 *   lines   distinct 64-byte lines they cover, over its bytes / 64
 *
 * (averaged over batches). A batch's pages are what the thread that reads it next needs the
 * TLB to reach. The figures depend on the schedule, not on the machine's speed.
 *
 *   cc -O2 -o /tmp/batch_density benches/c/batch_density.c -lpthread
 *   env LD_PRELOAD=target/release/librseqmalloc.so /tmp/batch_density rounds 8 300
 *   env LD_PRELOAD=target/release/librseqmalloc.so /tmp/batch_density producer-consumer 2 30000
 *
 * Arguments: the pattern, then threads T (rounds; at most 64) or pairs P (producer-consumer;
 * at most 32), then rounds (rounds) or batches per producer (producer-consumer). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "small_sizes.h"

#define ROUND_BATCH 1000
#define PC_BATCH 64
#define PC_DEPTH 16

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "batch_density: malloc(%zu) failed\n", n);
        exit(1);
    }
    return p;
}

static int by_address(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return (x > y) - (x < y);
}

static size_t distinct(uintptr_t *v, size_t n) {
    qsort(v, n, sizeof *v, by_address);
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += i == 0 || v[i] != v[i - 1];
    return d;
}

static pthread_mutex_t totals_lock = PTHREAD_MUTEX_INITIALIZER;
static double total_pages, total_lines;
static long batches_measured;

/* The most objects a batch has, and the lines one object of the small sizes (at most 512 B)
 * can cover. */
#define MAX_BATCH ROUND_BATCH
#define MAX_LINES_PER_OBJECT 9

/* Adds one batch's figures: `n` objects at `obj` of `len` bytes each. Works in the calling
 * thread's stack, so measuring allocates nothing from the allocator being measured. */
static void measure(uint8_t **obj, const size_t *len, size_t n) {
    uintptr_t pages[2 * MAX_BATCH], lines[MAX_BATCH * MAX_LINES_PER_OBJECT];
    size_t bytes = 0, nlines = 0;
    for (size_t i = 0; i < n; i++) {
        uintptr_t lo = (uintptr_t)obj[i], hi = lo + len[i] - 1;
        /* An object of at most 512 B covers one page or two. */
        pages[2 * i] = lo >> 12;
        pages[2 * i + 1] = hi >> 12;
        bytes += len[i];
        for (uintptr_t l = lo >> 6; l <= hi >> 6; l++)
            lines[nlines++] = l;
    }
    double p = (double)distinct(pages, 2 * n) / ((double)bytes / 4096);
    double l = (double)distinct(lines, nlines) / ((double)bytes / 64);
    pthread_mutex_lock(&totals_lock);
    total_pages += p;
    total_lines += l;
    batches_measured++;
    pthread_mutex_unlock(&totals_lock);
}

static void fill(uint8_t **obj, size_t *len, size_t n, uint8_t v, uint64_t *rng) {
    for (size_t i = 0; i < n; i++) {
        len[i] = small_size(rng);
        obj[i] = xmalloc(len[i]);
        memset(obj[i], v, len[i]);
    }
}

static void release(uint8_t **obj, const size_t *len, size_t n, uint8_t v) {
    for (size_t i = 0; i < n; i++) {
        if (obj[i][0] != v || obj[i][len[i] - 1] != v) {
            fprintf(stderr, "batch_density: object overwritten\n");
            abort();
        }
        free(obj[i]);
    }
}

/* rounds */

static long threads, rounds;
static uint8_t **round_obj[64];
static size_t *round_len[64];
static pthread_barrier_t barrier;

static void *round_thread(void *arg) {
    long t = (long)arg;
    uint64_t rng = (uint64_t)t + 1;
    for (long r = 0; r < rounds; r++) {
        uint8_t **obj = xmalloc(ROUND_BATCH * sizeof *obj);
        size_t *len = xmalloc(ROUND_BATCH * sizeof *len);
        fill(obj, len, ROUND_BATCH, (uint8_t)t, &rng);
        if (r >= rounds / 2)
            measure(obj, len, ROUND_BATCH);
        round_obj[t] = obj;
        round_len[t] = len;
        pthread_barrier_wait(&barrier);
        /* As the runner: every batch is freed before any thread allocates the next one. */
        long o = (t + r) % threads;
        release(round_obj[o], round_len[o], ROUND_BATCH, (uint8_t)o);
        free(round_obj[o]);
        free(round_len[o]);
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

/* producer-consumer */

typedef struct {
    uint8_t *obj[PC_BATCH];
    size_t len[PC_BATCH];
} Batch;

typedef struct {
    Batch *slot[PC_DEPTH];
    int head, count;
    pthread_mutex_t lock;
    pthread_cond_t changed;
} Queue;

static Queue queue[32];
static long per_producer;

static void put(Queue *q, Batch *b) {
    pthread_mutex_lock(&q->lock);
    while (q->count == PC_DEPTH)
        pthread_cond_wait(&q->changed, &q->lock);
    q->slot[(q->head + q->count) % PC_DEPTH] = b;
    q->count++;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
}

static Batch *get(Queue *q) {
    pthread_mutex_lock(&q->lock);
    while (q->count == 0)
        pthread_cond_wait(&q->changed, &q->lock);
    Batch *b = q->slot[q->head];
    q->head = (q->head + 1) % PC_DEPTH;
    q->count--;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
    return b;
}

static void *producer(void *arg) {
    long p = (long)arg;
    uint64_t rng = (uint64_t)p + 1;
    for (long i = 0; i < per_producer; i++) {
        Batch *b = xmalloc(sizeof *b);
        fill(b->obj, b->len, PC_BATCH, (uint8_t)(p + 1), &rng);
        if (i >= per_producer / 2)
            measure(b->obj, b->len, PC_BATCH);
        put(&queue[p], b);
    }
    put(&queue[p], NULL);
    return NULL;
}

static void *consumer(void *arg) {
    long p = (long)arg;
    Batch *b;
    while ((b = get(&queue[p])) != NULL) {
        release(b->obj, b->len, PC_BATCH, (uint8_t)(p + 1));
        free(b);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: batch_density rounds THREADS ROUNDS | producer-consumer PAIRS "
                        "BATCHES\n");
        return 2;
    }
    long n = strtol(argv[2], NULL, 10), count = strtol(argv[3], NULL, 10);
    pthread_t th[64];
    long started = 0;
    if (strcmp(argv[1], "rounds") == 0 && n >= 1 && n <= 64 && count >= 2) {
        threads = n;
        rounds = count;
        pthread_barrier_init(&barrier, NULL, (unsigned)n);
        for (long t = 0; t < n; t++)
            started += pthread_create(&th[started], NULL, round_thread, (void *)t) == 0;
    } else if (strcmp(argv[1], "producer-consumer") == 0 && n >= 1 && n <= 32 && count >= 2) {
        per_producer = count;
        for (long p = 0; p < n; p++) {
            pthread_mutex_init(&queue[p].lock, NULL);
            pthread_cond_init(&queue[p].changed, NULL);
            started += pthread_create(&th[started], NULL, producer, (void *)p) == 0;
            started += pthread_create(&th[started], NULL, consumer, (void *)p) == 0;
        }
    } else {
        fprintf(stderr, "batch_density: rounds with 1-64 threads, or producer-consumer with "
                        "1-32 pairs; at least 2 rounds or batches\n");
        return 2;
    }
    if (started != (argv[1][0] == 'r' ? n : 2 * n)) {
        fprintf(stderr, "batch_density: pthread_create failed\n");
        return 1;
    }
    for (long i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    printf("%s: per batch, pages %.2fx its bytes / 4096, lines %.3fx its bytes / 64 (%ld "
           "batches)\n",
           argv[1], total_pages / batches_measured, total_lines / batches_measured,
           batches_measured);
    return 0;
}
