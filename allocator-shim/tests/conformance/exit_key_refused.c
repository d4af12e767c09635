/* Conformance (nothing freed stays lost), a thread whose exit the C library cannot arm: each
 * mode keeps per-thread state that only the allocator's thread-exit destructor gives back —
 * own mode's registration, owner return's outbox, the fallback's magazine — and the destructor
 * is armed with pthread_setspecific, which can fail (ENOMEM: for a key past the first 32 glibc
 * allocates a block per thread). A thread whose exit is not armed must keep none of it, or the
 * blocks it freed stay counted as in use, and out of reach, once it has ended.
 *
 * The program defines pthread_setspecific (an executable's definition comes first) and makes
 * it fail in one worker thread. The main thread, pinned to CPU 0, allocates OBJECTS blocks of
 * 1000 bytes and spins; the worker, pinned to CPU 1, sets itself up, frees main's blocks
 * (another slab's: owner return puts them in an outbox), allocates and frees as many blocks
 * of its own (a magazine keeps them) and ends. Then `stats.allocated` must be back where it
 * was before main allocated (after a first thread, whose stack glibc keeps with its own
 * blocks for the worker). The premise, where it is certain: the worker tried to arm its exit
 * (and was refused) — at its set-up in own mode and in the fallback, at its first foreign free
 * in glibc mode when the slabs are by CPU (`membarrier=off`; with `mm_cid` the kernel may give
 * the two threads each other's ids) and both threads are pinned.
 *
 * Prints "exit_key_refused ok objects=N refused=R premise=P mode=...", R the arms refused, P 1
 * when the premise was checked. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>

#include "conf.h"
#include "ring.h"

enum { OBJECTS = 32, SIZE = 1000 };

typedef int (*setspecific_fn)(pthread_key_t, const void *);
static setspecific_fn real_setspecific;
static __thread int refuse;
static atomic_int refused, worker_done, pinned;
static void *blocks[OBJECTS];

int pthread_setspecific(pthread_key_t key, const void *value) {
    if (refuse) {
        atomic_fetch_add(&refused, 1);
        return ENOMEM;
    }
    /* glibc declares `value` unread (access none), so GCC would warn that passing it on reads
     * it uninitialised: an empty asm hides where it came from. */
    uintptr_t v = (uintptr_t)value;
    __asm__("" : "+r"(v));
    return real_setspecific(key, (const void *)v);
}

static void *idle(void *arg) { return arg; }

static void *work(void *arg) {
    (void)arg;
    refuse = 1;
    atomic_fetch_add(&pinned, conf_pin(1));
    /* Set-up (the first call), in a class nobody else uses; laundered, or the pair is
     * dropped. */
    free(launder(malloc(64)));
    for (int i = 0; i < OBJECTS; i++) {
        CHECK(conf_filled(blocks[i], SIZE, (unsigned char)i));
        free(blocks[i]);
    }
    static void *own[OBJECTS];
    for (int i = 0; i < OBJECTS; i++) {
        CHECK(own[i] = malloc(SIZE));
        memset(own[i], 0x5a, SIZE);
    }
    for (int i = 0; i < OBJECTS; i++) free(own[i]);
    atomic_store(&worker_done, 1);
    return NULL;
}

int main(void) {
    real_setspecific = (setspecific_fn)dlsym(RTLD_NEXT, "pthread_setspecific");
    CHECK(real_setspecific != NULL);
    conf_init("exit_key_refused", 60);
    atomic_fetch_add(&pinned, conf_pin(0));
    free(launder(malloc(1)));
    /* glibc keeps a joined thread's stack, with the blocks it allocated for it (its DTV), for
     * the next thread: one thread first, so the worker's costs nothing new. */
    pthread_t first;
    CHECK(pthread_create(&first, NULL, idle, NULL) == 0 && pthread_join(first, NULL) == 0);
    unsigned long before = conf_ctl_count("stats.allocated");
    for (int i = 0; i < OBJECTS; i++) {
        CHECK(blocks[i] = malloc(SIZE));
        memset(blocks[i], i, SIZE);
    }
    pthread_t t;
    CHECK(pthread_create(&t, NULL, work, NULL) == 0);
    /* Running while the worker frees, so the two threads' slabs differ (also by mm_cid). */
    while (!atomic_load(&worker_done)) {
    }
    CHECK(pthread_join(t, NULL) == 0);
    unsigned long after = conf_ctl_count("stats.allocated");
    CHECKF(after <= before, "%lu bytes more in use after the worker ended than before main "
           "allocated what it freed (%lu, then %lu; mode %s)", after - before, before, after,
           conf_mode());
    const char *mode = conf_mode();
    int by_cpu = conf_option_is("membarrier", "off") && atomic_load(&pinned) == 2;
    int premise = strcmp(mode, "own") == 0 || strcmp(mode, "fallback") == 0 ||
                  (strcmp(mode, "glibc") == 0 && by_cpu && conf_option_is("owner_return", "on"));
    if (premise) CHECKF(atomic_load(&refused) > 0, "the worker never armed its exit (mode %s)", mode);
    conf_say("exit_key_refused ok objects=%d refused=%d premise=%d mode=%s\n", OBJECTS,
             atomic_load(&refused), premise, mode);
    return 0;
}
