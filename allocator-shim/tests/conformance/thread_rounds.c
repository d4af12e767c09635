/* Issue 12: a program whose threads free everything and exit, round after round, with new
 * threads allocating as much again at once (Node.js `worker_threads`, rounds of workers), must
 * not fault its heap back in every round. Each of ROUNDS rounds starts THREADS threads that
 * allocate 8 MiB each of small objects (16-240 B, a 64 MiB heap in all), hold them until all
 * have (a barrier), free them in allocation order and exit. Their pointers live in a static
 * array (no large blocks, whose pages the heap keeps for the decay anyway). Prints the minor
 * page faults of the first round and the mean of the later ones.
 *
 * usage: thread_rounds   prints "thread_rounds first=<faults> later=<faults> mode=<mode>" */
#include "conf.h"

#include <pthread.h>
#include <sys/resource.h>

enum { THREADS = 8, BYTES = 8 << 20, ROUNDS = 5, CAP = BYTES / 16 };

static pthread_barrier_t start, held;
static void *slots[THREADS][CAP];

static void *worker(void *arg) {
    intptr_t id = (intptr_t)arg;
    rng_t r = {(uint64_t)id};
    void **v = slots[id % THREADS];
    pthread_barrier_wait(&start);
    size_t n = conf_fill_small(&r, v, BYTES);
    pthread_barrier_wait(&held);
    for (size_t i = 0; i < n; i++) free(v[i]);
    return NULL;
}

static long minflt(void) {
    struct rusage u;
    CHECK(getrusage(RUSAGE_SELF, &u) == 0);
    return u.ru_minflt;
}

int main(void) {
    conf_init("thread_rounds", 120);
    void *warm = malloc(100);
    free(warm);
    long faults[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        long before = minflt();
        pthread_t t[THREADS];
        CHECK(pthread_barrier_init(&start, NULL, THREADS) == 0);
        CHECK(pthread_barrier_init(&held, NULL, THREADS) == 0);
        for (int i = 0; i < THREADS; i++)
            CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)(round * THREADS + i)) ==
                  0);
        for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
        CHECK(pthread_barrier_destroy(&start) == 0);
        CHECK(pthread_barrier_destroy(&held) == 0);
        faults[round] = minflt() - before;
    }
    long later = 0;
    for (int round = 1; round < ROUNDS; round++) later += faults[round];
    later /= ROUNDS - 1;
    conf_say("thread_rounds first=%ld later=%ld mode=%s\n", faults[0], later, conf_mode());
    return 0;
}
