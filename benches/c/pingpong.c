/* Ping-pong: two threads, round after round, each allocate a batch of blocks (writing a byte
 * that names the thread into each), wait for the other, then check and free the other's
 * batch. Every block is freed by the thread that did not allocate it, and the memory one
 * thread's frees leave in the other's spans is what the next round must reuse. Peak RSS is
 * the figure (`/usr/bin/time -f %M`); the live set is at most both batches, BLOCKS x SIZE.
 *
 * With owned spans (257-960 B) the spans of one thread's CPU, half freed by the other, stayed
 * that CPU's while the other thread took fresh ones past the first drain of such spans in a
 * maintenance tick (session 77: 118 MB at 500 B against glibc's 103 and mimalloc 2.0's 133;
 * now 104; docs/benchmarks.md, "Session 77").
 *
 *   cc -O2 -o /tmp/pingpong benches/c/pingpong.c -lpthread
 *   LD_PRELOAD=target/release/librseqmalloc.so /usr/bin/time -f %M /tmp/pingpong 200000 10 500
 *
 * Arguments: BLOCKS (200000, both threads' batches together), ROUNDS (10), SIZE (0: 257-960 B
 * at random). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t per_thread, size;
static int rounds;
static void **batch[2];
static pthread_barrier_t both;

static void *run(void *arg) {
    long t = (long)arg;
    unsigned seed = 1 + (unsigned)t;
    for (int r = 0; r < rounds; r++) {
        void **mine = malloc(per_thread * sizeof *mine);
        if (!mine) abort();
        for (size_t i = 0; i < per_thread; i++) {
            size_t z = size ? size : 257 + (size_t)rand_r(&seed) % 704;
            mine[i] = malloc(z);
            if (!mine[i]) abort();
            memset(mine[i], (int)t + 1, 16);
        }
        batch[t] = mine;
        pthread_barrier_wait(&both);
        void **theirs = batch[1 - t];
        for (size_t i = 0; i < per_thread; i++) {
            if (((unsigned char *)theirs[i])[0] != 2 - t) {
                fprintf(stderr, "pingpong: block %zu of thread %ld overwritten\n", i, 1 - t);
                abort();
            }
            free(theirs[i]);
        }
        /* Both batches freed before either allocates again. */
        pthread_barrier_wait(&both);
        free(theirs);
    }
    return NULL;
}

int main(int argc, char **argv) {
    per_thread = (argc > 1 ? strtoul(argv[1], NULL, 10) : 200000) / 2;
    rounds = argc > 2 ? atoi(argv[2]) : 10;
    size = argc > 3 ? strtoul(argv[3], NULL, 10) : 0;
    pthread_barrier_init(&both, NULL, 2);
    pthread_t th[2];
    for (long i = 0; i < 2; i++)
        if (pthread_create(&th[i], NULL, run, (void *)i)) abort();
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    printf("pingpong: %d rounds of %zu blocks a thread, every one freed by the other\n", rounds,
           per_thread);
    return 0;
}
