/* Batch layout: where an allocator places the objects of the runner's `rounds` batches.
 *
 * THREADS threads work in synchronised rounds, as in `rounds_phases.c`: each allocates a batch
 * of BATCH objects of the runner's small sizes (`small_sizes.h`) and fills them; after a
 * barrier, in the second half of the rounds, thread 0 measures every batch of that round; after
 * a second barrier each thread frees the batch of the thread `round` places after it, in the
 * order it was allocated; a third barrier closes the round. Prints, over the measured rounds:
 *
 *   sequential: the share of objects that lie within two cache lines (plus their size) of the
 *     batch's previous object of the same 16-byte size band, before or after it: a batch
 *     read in its allocation order that a stride prefetcher can follow;
 *   pages: 4 KiB pages a batch's objects touch, on average;
 *   shared lines: the share of the cache lines holding objects of this round's batches that
 *     hold objects of more than one thread's batch.
 *
 *   cc -O2 -pthread -o /tmp/batch_layout benches/c/batch_layout.c
 *   LD_PRELOAD=target/release/librseqmalloc.so /tmp/batch_layout 8 200
 *
 * Arguments: threads (1-64) and rounds (at least 2). Layout only, no timing: run it under each
 * allocator once (docs/benchmarks.md, "Session 59"). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "small_sizes.h"

#define BATCH 1000
#define MAX_THREADS 64
#define BANDS 64 /* 16-byte size bands up to 1 KiB; the small sizes stop at 512 B */

static int threads, rounds;
static unsigned char *batches[MAX_THREADS][BATCH];
static size_t sizes[MAX_THREADS][BATCH];
static pthread_barrier_t barrier;

/* Thread 0's tallies over the measured rounds. */
static long near_count, objects, pages_sum, batches_measured, shared_lines, all_lines;

struct line {
    uintptr_t line;
    int thread;
};
static struct line lines[MAX_THREADS * BATCH * 10];

static int by_line(const void *a, const void *b) {
    uintptr_t x = ((const struct line *)a)->line, y = ((const struct line *)b)->line;
    return x < y ? -1 : x > y;
}

static void measure(void) {
    long k = 0;
    for (int u = 0; u < threads; u++) {
        uintptr_t last[BANDS] = {0};
        long first = k;
        for (int i = 0; i < BATCH; i++) {
            uintptr_t p = (uintptr_t)batches[u][i];
            size_t n = sizes[u][i], band = (n + 15) / 16, reach = 128 + n;
            if (last[band] && (p > last[band] ? p - last[band] : last[band] - p) <= reach)
                near_count++;
            last[band] = p;
            objects++;
            for (uintptr_t l = p >> 6; l <= (p + n - 1) >> 6; l++)
                lines[k++] = (struct line){l, u};
        }
        /* Pages: the batch's lines sorted, counted by their page. */
        qsort(lines + first, k - first, sizeof lines[0], by_line);
        for (long i = first; i < k; i++)
            if (i == first || lines[i].line >> 6 != lines[i - 1].line >> 6)
                pages_sum++;
        batches_measured++;
    }
    qsort(lines, k, sizeof lines[0], by_line);
    for (long i = 0; i < k;) {
        long j = i;
        int multi = 0;
        for (; j < k && lines[j].line == lines[i].line; j++)
            multi |= lines[j].thread != lines[i].thread;
        all_lines++;
        shared_lines += multi;
        i = j;
    }
}

static void *thread(void *arg) {
    long t = (long)arg;
    uint64_t rng = (uint64_t)t * 7919 + 1;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < BATCH; i++) {
            size_t n = small_size(&rng);
            unsigned char *p = malloc(n);
            if (!p)
                abort();
            memset(p, (int)(t * 31 + r) | 1, n);
            batches[t][i] = p;
            sizes[t][i] = n;
        }
        pthread_barrier_wait(&barrier);
        if (t == 0 && r >= rounds / 2)
            measure();
        pthread_barrier_wait(&barrier);
        int other = (int)((t + r) % threads);
        for (int i = 0; i < BATCH; i++) {
            if (batches[other][i][0] != (unsigned char)((other * 31 + r) | 1))
                abort();
            free(batches[other][i]);
        }
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3 || (threads = atoi(argv[1])) < 1 || threads > MAX_THREADS ||
        (rounds = atoi(argv[2])) < 2) {
        fprintf(stderr, "usage: %s THREADS(1-64) ROUNDS(>=2)\n", argv[0]);
        return 2;
    }
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    pthread_t h[MAX_THREADS];
    for (long t = 0; t < threads; t++)
        if (pthread_create(&h[t], NULL, thread, (void *)t) != 0)
            abort();
    for (int t = 0; t < threads; t++)
        pthread_join(h[t], NULL);
    printf("sequential %.1f %%, pages a batch %.1f, shared lines %.1f %%\n",
           100.0 * near_count / objects, (double)pages_sum / batches_measured,
           100.0 * shared_lines / all_lines);
    return 0;
}
