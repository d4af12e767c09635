/* Issue 11, items 2 and 3 (fork in every situation), beyond tests/c/fork.c (where only the
 * main thread forks while workers allocate):
 *  - three threads other than main fork at the same time, `children` times each (argv[1],
 *    default 10), while three workers churn small, large and huge objects (realloc growing
 *    and shrinking, memalign), one worker calls malloc_trim in a loop (the drains pin
 *    themselves to each CPU), and one thread starts and joins short-lived threads (thread
 *    set-up and tear-down during the forks);
 *  - each child allocates, checks and frees (small and large objects), frees objects its
 *    parent allocated before the fork, starts four threads that free each other's objects,
 *    calls malloc_trim, forks a grandchild that allocates and exits, and exits through exit()
 *    (atexit, stdio);
 *  - another thread runs posix_spawn (/bin/true, clone with CLONE_VFORK: no atfork
 *    handlers) in a loop meanwhile.
 * Every child's exit status is checked; a hang is caught by the watchdog (conf.h).
 *
 * usage: fork_more [children]     prints "fork_more ok forks=<n> spawns=<n> mode=<mode>" */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/wait.h>

enum { FORKERS = 3, WORKERS = 3, PARENT_OBJS = 48, CHILD_THREADS = 4, SHARED = 512 };

extern char **environ;
static atomic_int stop;
static atomic_long forks, spawns;
static int children = 10;
static void *parent_objs[PARENT_OBJS];
static size_t parent_sizes[PARENT_OBJS];

static void churn(rng_t *r, long ops, int big) {
    enum { SLOTS = 128 };
    void *p[SLOTS] = {0};
    size_t sz[SLOTS];
    uint64_t seed[SLOTS];
    for (long i = 0; i < ops; i++) {
        int k = (int)rng_below(r, SLOTS);
        if (p[k] && rng_below(r, 4) == 0) {
            /* realloc, growing or shrinking, across small/large/huge */
            size_t n = big && rng_below(r, 64) == 0 ? ((size_t)(2 + rng_below(r, 20)) << 20)
                                                    : 1 + rng_below(r, 70000);
            void *q = realloc(p[k], n);
            CHECK(q);
            size_t keep = n < sz[k] ? n : sz[k];
            CHECK(verify_prefix(q, keep, sz[k], seed[k]) == (size_t)-1);
            p[k] = q;
            sz[k] = n;
            seed[k] = rng_next(r);
            fill_sparse(p[k], n, seed[k]);
        } else if (p[k]) {
            CHECK(verify_sparse(p[k], sz[k], seed[k]) == (size_t)-1);
            free(p[k]);
            p[k] = NULL;
        } else {
            sz[k] = big && rng_below(r, 200) == 0 ? ((size_t)17 << 20) : 1 + rng_below(r, 3000);
            p[k] = rng_below(r, 8) == 0 ? memalign((size_t)64 << rng_below(r, 7), sz[k])
                                        : malloc(sz[k]);
            CHECK(p[k]);
            seed[k] = rng_next(r);
            fill_sparse(p[k], sz[k], seed[k]);
        }
    }
    free_slots(p, sz, seed, SLOTS);
}

static void *worker(void *arg) {
    rng_t r = {mix64((uint64_t)(intptr_t)arg)};
    while (!atomic_load(&stop)) churn(&r, 300, 1);
    return NULL;
}

static void *trimmer(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        malloc_trim(0);
        void *p = malloc(100);
        CHECK(p);
        free(p);
    }
    return NULL;
}

static void *short_lived(void *arg) {
    rng_t r = {(uint64_t)(intptr_t)arg};
    churn(&r, 50, 0);
    return NULL;
}

static void *thread_starter(void *arg) {
    (void)arg;
    for (int i = 0; !atomic_load(&stop); i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, short_lived, (void *)(intptr_t)(i + 1)) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
    return NULL;
}

static void *spawner(void *arg) {
    (void)arg;
    char *argv[] = {"true", NULL};
    while (!atomic_load(&stop)) {
        pid_t pid;
        CHECK(posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) == 0);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "spawned status %#x", status);
        atomic_fetch_add(&spawns, 1);
    }
    return NULL;
}

/* In the child: threads that free each other's objects. */
static void *shared[CHILD_THREADS][SHARED];
static pthread_barrier_t child_barrier;

static void *child_thread(void *arg) {
    int me = (int)(intptr_t)arg;
    for (int i = 0; i < SHARED; i++) {
        shared[me][i] = malloc(16 + (size_t)(i * 37 % 2000));
        CHECK(shared[me][i]);
        memset(shared[me][i], me, 16);
    }
    pthread_barrier_wait(&child_barrier);
    int other = (me + 1) % CHILD_THREADS;
    for (int i = 0; i < SHARED; i++) {
        CHECK(((unsigned char *)shared[other][i])[15] == other);
        free(shared[other][i]);
    }
    return NULL;
}

static void child(int n) {
    rng_t r = {(uint64_t)n * 31337 + 1};
    churn(&r, 2000, 0);
    for (int i = 0; i < PARENT_OBJS; i++) {
        CHECK(verify(parent_objs[i], parent_sizes[i], (uint64_t)i) == (size_t)-1);
        free(parent_objs[i]);
    }
    pthread_t t[CHILD_THREADS];
    CHECK(pthread_barrier_init(&child_barrier, NULL, CHILD_THREADS) == 0);
    for (int i = 0; i < CHILD_THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, child_thread, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < CHILD_THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    malloc_trim(0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        churn(&r, 500, 0);
        exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "grandchild status %#x", status);
    char *s = strdup("child done");
    CHECK(s && strcmp(s, "child done") == 0);
    free(s);
    exit(0);
}

static void *forker(void *arg) {
    int me = (int)(intptr_t)arg;
    rng_t r = {(uint64_t)me + 1000};
    for (int i = 0; i < children; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) child(me * 1000 + i);
        churn(&r, 200, 0);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d/%d: status %#x", me, i,
               status);
        atomic_fetch_add(&forks, 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    conf_init("fork_more", 60);
    if (argc > 1) children = atoi(argv[1]);
    for (int i = 0; i < PARENT_OBJS; i++) {
        parent_sizes[i] = (size_t)16 << (i % 16);
        parent_objs[i] = malloc(parent_sizes[i]);
        CHECK(parent_objs[i]);
        fill(parent_objs[i], parent_sizes[i], (uint64_t)i);
    }
    pthread_t bg[WORKERS + 3], fk[FORKERS];
    int nbg = 0;
    for (int i = 0; i < WORKERS; i++)
        CHECK(pthread_create(&bg[nbg++], NULL, worker, (void *)(intptr_t)(i + 1)) == 0);
    CHECK(pthread_create(&bg[nbg++], NULL, trimmer, NULL) == 0);
    CHECK(pthread_create(&bg[nbg++], NULL, thread_starter, NULL) == 0);
    CHECK(pthread_create(&bg[nbg++], NULL, spawner, NULL) == 0);
    for (int i = 0; i < FORKERS; i++)
        CHECK(pthread_create(&fk[i], NULL, forker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < FORKERS; i++) CHECK(pthread_join(fk[i], NULL) == 0);
    atomic_store(&stop, 1);
    for (int i = 0; i < nbg; i++) CHECK(pthread_join(bg[i], NULL) == 0);
    for (int i = 0; i < PARENT_OBJS; i++) {
        CHECK(verify(parent_objs[i], parent_sizes[i], (uint64_t)i) == (size_t)-1);
        free(parent_objs[i]);
    }
    conf_say("fork_more ok forks=%ld spawns=%ld mode=%s\n", (long)forks, (long)spawns,
             conf_mode());
    return 0;
}
