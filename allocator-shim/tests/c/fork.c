/* fork() in a multi-threaded program while the other threads allocate and free: 4 worker
 * threads churn small, large and huge objects (with content checks) until told to stop; the
 * main thread forks 40 children meanwhile. Each child (one thread, inheriting whatever state
 * the workers' allocator locks were in at the fork) allocates, checks and frees 5,000
 * objects, starts and joins a thread that does the same, frees objects the parent allocated
 * before the fork, and exits 0. The parent waits for each child and checks its status.
 *
 * usage: fork [children]            prints "fork ok ..." */
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

enum { WORKERS = 4, PARENT_OBJS = 64 };

static atomic_int stop;
static atomic_long worker_ops;
static pthread_barrier_t started;
static void *parent_objs[PARENT_OBJS];
static size_t parent_sizes[PARENT_OBJS];

static void churn(rng_t *r, long ops, int big) {
    enum { SLOTS = 256 };
    void *p[SLOTS] = {0};
    size_t sz[SLOTS];
    uint64_t seed[SLOTS];
    for (long i = 0; i < ops; i++) {
        int k = (int)rng_below(r, SLOTS);
        if (p[k]) {
            CHECK(verify_sparse(p[k], sz[k], seed[k]) == (size_t)-1);
            free(p[k]);
            p[k] = NULL;
        } else {
            unsigned pick = (unsigned)rng_below(r, 1000);
            sz[k] = big && pick == 0   ? ((size_t)17 << 20) /* huge: mapped on its own */
                    : big && pick < 20 ? (300u << 10)      /* large: page spans */
                                       : 1 + rng_below(r, 2048);
            p[k] = malloc(sz[k]);
            CHECK(p[k]);
            seed[k] = rng_next(r);
            fill_sparse(p[k], sz[k], seed[k]);
        }
    }
    free_slots(p, sz, seed, SLOTS);
}

static void *worker(void *arg) {
    rng_t r = {(uint64_t)(intptr_t)arg * 7919};
    churn(&r, 100, 1);
    pthread_barrier_wait(&started);
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        churn(&r, 200, 1);
        atomic_fetch_add(&worker_ops, 200);
    }
    return NULL;
}

static void *child_thread(void *arg) {
    rng_t r = {(uint64_t)(intptr_t)arg};
    churn(&r, 5000, 0);
    return NULL;
}

static void child(int n) {
    rng_t r = {(uint64_t)n * 31337 + 1};
    churn(&r, 5000, 1);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, child_thread, (void *)(intptr_t)(n + 1)) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    for (int i = 0; i < PARENT_OBJS; i++) {
        CHECK(verify(parent_objs[i], parent_sizes[i], (uint64_t)i) == (size_t)-1);
        free(parent_objs[i]);
    }
    char *s = strdup("child done");
    CHECK(s && strcmp(s, "child done") == 0);
    free(s);
    exit(0);
}

int main(int argc, char **argv) {
    test_init(200);
    int children = argc > 1 ? atoi(argv[1]) : 40;
    for (int i = 0; i < PARENT_OBJS; i++) {
        parent_sizes[i] = (size_t)16 << (i % 14);
        parent_objs[i] = malloc(parent_sizes[i]);
        CHECK(parent_objs[i]);
        fill(parent_objs[i], parent_sizes[i], (uint64_t)i);
    }
    pthread_t t[WORKERS];
    CHECK(pthread_barrier_init(&started, NULL, WORKERS + 1) == 0);
    for (int i = 0; i < WORKERS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)(i + 1)) == 0);
    pthread_barrier_wait(&started); /* every worker is past its first allocations */
    rng_t r = {99};
    for (int n = 0; n < children; n++) {
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) child(n);
        churn(&r, 500, 0); /* the parent allocates while the child runs */
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: status %#x", n, status);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < WORKERS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < PARENT_OBJS; i++) {
        CHECK(verify(parent_objs[i], parent_sizes[i], (uint64_t)i) == (size_t)-1);
        free(parent_objs[i]);
    }
    printf("fork ok children=%d worker_ops=%ld mode=%s\n", children, atomic_load(&worker_ops),
           shim_mode());
    return 0;
}
