/* Conformance (a successful call keeps errno), under contention: the allocator's locks (the
 * fallback's slab locks, the inboxes owner return fills, the central lists, the page heap)
 * wait on a futex when contended, and a futex wait that returns EAGAIN (the word changed) or
 * EINTR must not show in the caller's errno. Session 70's second review found errno changed
 * under successful calls that way (an 8-thread program, fallback mode), with no test of it.
 *
 * THREADS threads (eight per CPU of this machine's two, more than CPUs so that a lock holder
 * is preempted and its waiters sleep) start together at a barrier and run ITERS iterations
 * each: malloc, calloc or realloc of a block (mostly 16-1024 bytes, some of 2-64 KiB, a few of
 * 256 KiB-2 MiB), half of them swapped through a shared mailbox so that another thread frees
 * them, and every TRIM_EVERY iterations, each at its own offset, malloc_trim(0), which holds
 * the locks longest (it drains every cache and releases free pages). Before each call errno
 * is set to a value of the thread's own; after each successful call (and each free) it must
 * still hold it. A futex wait that returns EAGAIN needs the lock word to change in a narrow
 * window, so a build that lets it through fails here in some runs, not all (in session 71, one
 * run of the test in five, and six in six on a reviewer's run; with 20,000 iterations four in
 * four, at 3-5x the time); `os::linux::tests::system_calls_keep_errno` checks the futex calls
 * themselves every time. The threads are fixed at 16: on a machine with many more CPUs the
 * locks are contended less and the test is weaker.
 *
 * Prints "errno_contended ok calls=N mode=..." */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

#include "conf.h"

enum { THREADS = 16, ITERS = 8000, MAILBOX = 64, TRIM_EVERY = 400 };

static pthread_barrier_t start;
static _Atomic(void *) mailbox[MAILBOX];
static atomic_ulong calls, clobbered;
static _Atomic(const char *) first_call;
static atomic_int first_found;

/* Records a call after which errno was not `want` (the first one is reported). */
static void clobber(const char *call, int found) {
    if (atomic_fetch_add(&clobbered, 1) == 0) {
        atomic_store(&first_found, found);
        atomic_store(&first_call, call);
    }
}

#define KEEPS(call, want)                                                                     \
    do {                                                                                       \
        int found_ = errno;                                                                    \
        if (found_ != (want)) clobber(call, found_);                                           \
        atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);                            \
    } while (0)

static size_t pick_size(rng_t *r) {
    uint64_t k = rng_below(r, 100);
    if (k < 90) return 16 + rng_below(r, 1009);
    if (k < 98) return 2048 + rng_below(r, 62 << 10);
    return (256 << 10) + rng_below(r, (2 << 20) - (256 << 10));
}

static void *worker(void *arg) {
    intptr_t id = (intptr_t)arg;
    int mine = 1000 + (int)id;
    rng_t r = {(uint64_t)id * 7919 + 1};
    pthread_barrier_wait(&start);
    for (int i = 0; i < ITERS; i++) {
        size_t n = pick_size(&r);
        void *p;
        errno = mine;
        switch (rng_below(&r, 3)) {
        case 0:
            p = malloc(n);
            CHECK(p != NULL);
            KEEPS("malloc", mine);
            break;
        case 1:
            p = calloc(1, n);
            CHECK(p != NULL);
            KEEPS("calloc", mine);
            break;
        default:
            p = malloc(n / 2 + 1);
            CHECK(p != NULL);
            errno = mine;
            p = realloc(p, n);
            CHECK(p != NULL);
            KEEPS("realloc", mine);
            break;
        }
        memset(p, (int)id, 16);
        if (rng_below(&r, 2) == 0) {
            /* Another thread's block (or nothing) comes out; ours waits for someone else. */
            p = atomic_exchange(&mailbox[rng_below(&r, MAILBOX)], p);
        }
        errno = mine;
        free(p);
        KEEPS("free", mine);
        if (i % TRIM_EVERY == (int)id * 31 % TRIM_EVERY) malloc_trim(0);
    }
    return NULL;
}

int main(void) {
    conf_init("errno_contended", 120);
    pthread_t t[THREADS];
    CHECK(pthread_barrier_init(&start, NULL, THREADS) == 0);
    for (intptr_t i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < MAILBOX; i++) free(atomic_load(&mailbox[i]));
    unsigned long bad = atomic_load(&clobbered);
    CHECKF(bad == 0, "%lu successful calls changed errno; the first, %s, left %d",
           bad, atomic_load(&first_call), atomic_load(&first_found));
    conf_say("errno_contended ok calls=%lu mode=%s\n", atomic_load(&calls), conf_mode());
    return 0;
}
