/* Issue 11, item 15: 64 short-lived threads, started together (barrier), each allocate 4 MiB
 * of small objects (16-240 B), wait until all hold theirs (a second barrier: the same 256 MiB
 * peak in every run), free them all in allocation order, then exit. Prints the
 * growth of RSS from before the threads to right after the joins (no decay period has passed).
 * The harness runs it with and without librseqmalloc, alternately, and compares the medians
 * of seven runs each: ours must be at or below glibc's.
 *
 * usage: thread_rss     prints "thread_rss growth=<bytes> mode=<mode>" */
#include "conf.h"

#include <pthread.h>

enum { THREADS = 64, BYTES = 4 << 20 };

static pthread_barrier_t start, held;

static void *worker(void *arg) {
    rng_t r = {(uint64_t)(intptr_t)arg};
    pthread_barrier_wait(&start);
    /* The objects' pointers in an array (malloc'd too), freed in allocation order: a program
     * walking its array of objects. */
    void **v = malloc(BYTES / 16 * sizeof *v);
    CHECK(v);
    size_t n = conf_fill_small(&r, v, BYTES);
    /* Every thread holds its 4 MiB before any frees: the peak is the same 256 MiB in every
     * run, whatever the scheduler lets overlap. */
    pthread_barrier_wait(&held);
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
    return NULL;
}

int main(void) {
    conf_init("thread_rss", 60);
    /* The allocator and stdio are set up before the baseline. */
    void *warm = malloc(100);
    free(warm);
    size_t before = rss_bytes();
    pthread_t t[THREADS];
    CHECK(pthread_barrier_init(&start, NULL, THREADS) == 0);
    CHECK(pthread_barrier_init(&held, NULL, THREADS) == 0);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)(i + 1)) == 0);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    size_t after = rss_bytes();
    conf_say("thread_rss growth=%ld mode=%s\n", (long)after - (long)before, conf_mode());
    return 0;
}
