/* Fork handlers registered before the allocator's may allocate. glibc runs prepare handlers in
 * the reverse order of registration, parent and child handlers in that order; the loader runs a
 * linked library's constructor (atfork_early_lib.c) and an executable's `.preinit_array` before
 * a preloaded library's constructor. Before session 74 the allocator registered its handlers
 * from its constructor, so these ran while it held its locks: the first allocation that left
 * the per-CPU caches waited on a lock its own thread held, and `fork` hung in every mode
 * (session 74's breaker run). glibc's own malloc takes its locks inside `fork`, after every
 * prepare handler. Now the allocator's handlers are registered at the first registration.
 *
 * Two threads allocate and free without pause while the main thread forks FORKS times; each
 * child allocates, checks its blocks and that its child handlers ran once, and exits.
 *
 * usage: atfork_early     prints "atfork_early ok forks=<n> mode=..." */
#include "conf.h"

#include <pthread.h>
#include <sys/wait.h>

enum { FORKS = 50 };

extern volatile int lib_prepared, lib_parented, lib_childed;
static volatile int exe_prepared, exe_parented, exe_childed;
static volatile int stop;

/* Allocates, writes, checks and frees blocks of every small class and a large one. */
static void churn(void) {
    enum { N = 1000 };
    static unsigned char *v[N];
    for (int i = 0; i < N; i++) {
        size_t n = 16 + (size_t)(i % 64) * 16;
        v[i] = malloc(n);
        CHECK(v[i] != NULL);
        fill(v[i], n, (uint64_t)i);
    }
    for (int i = 0; i < N; i++) {
        size_t n = 16 + (size_t)(i % 64) * 16;
        CHECKF(verify(v[i], n, (uint64_t)i) == (size_t)-1, "block %d of %zu B changed", i, n);
        free(v[i]);
    }
    unsigned char *big = malloc(300000);
    CHECK(big != NULL);
    fill(big, 300000, 7);
    free(big);
}

static void exe_prepare(void) { churn(); exe_prepared++; }
static void exe_parent(void) { churn(); exe_parented++; }
static void exe_child(void) { churn(); exe_childed++; }

/* Registered from `.preinit_array`: before every constructor, the allocator's included. */
static void register_early(int argc, char **argv, char **envp) {
    (void)argc, (void)argv, (void)envp;
    if (pthread_atfork(exe_prepare, exe_parent, exe_child) != 0) abort();
}
__attribute__((section(".preinit_array"), used)) static void (*const preinit)(int, char **,
                                                                                 char **) =
    register_early;

static void *worker(void *arg) {
    (void)arg;
    while (!stop) {
        void *p = malloc(100);
        CHECK(p != NULL);
        free(p);
    }
    return NULL;
}

int main(void) {
    conf_init("atfork_early", 30);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, worker, NULL) == 0);
    for (int i = 0; i < FORKS; i++) {
        int childed = lib_childed + exe_childed;
        pid_t c = fork();
        CHECK(c >= 0);
        if (c == 0) {
            if (lib_childed + exe_childed != childed + 2) _exit(3);
            churn();
            _exit(0);
        }
        int st;
        CHECK(waitpid(c, &st, 0) == c);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork child %d ended with status %d", i, st);
    }
    stop = 1;
    for (int i = 0; i < 2; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECKF(lib_prepared == FORKS && lib_parented == FORKS && exe_prepared == FORKS &&
               exe_parented == FORKS,
           "handlers ran %d/%d (library) and %d/%d (program) times, not %d", lib_prepared,
           lib_parented, exe_prepared, exe_parented, FORKS);
    conf_say("atfork_early ok forks=%d mode=%s\n", FORKS, conf_mode());
    return 0;
}
