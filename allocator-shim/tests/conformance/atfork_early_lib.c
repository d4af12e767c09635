/* The library of atfork_early.c: its constructor registers fork handlers that allocate, as a
 * library the program links does. The loader runs this constructor before a preloaded
 * library's, so these handlers are registered before the allocator's own would be. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* How many times each handler ran (the child's count is the one it inherited plus its own). */
volatile int lib_prepared, lib_parented, lib_childed;

/* Allocates small blocks (refilling a per-CPU cache past its stack) and a large one, writes and
 * frees them; aborts if a block is missing. */
static void churn(void) {
    enum { N = 2000 };
    static void *v[N];
    for (int i = 0; i < N; i++) {
        v[i] = malloc(48 + (size_t)(i % 7) * 16);
        if (v[i] == NULL) abort();
        memset(v[i], i, 48);
    }
    for (int i = 0; i < N; i++) free(v[i]);
    char *big = malloc(300000);
    if (big == NULL) abort();
    memset(big, 1, 300000);
    free(big);
}

static void prepare(void) { churn(); lib_prepared++; }
static void parent(void) { churn(); lib_parented++; }
static void child(void) { churn(); lib_childed++; }

__attribute__((constructor)) static void register_handlers(void) {
    if (pthread_atfork(prepare, parent, child) != 0) abort();
}
