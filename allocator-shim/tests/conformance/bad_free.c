/* Issue 11, item 4 (kind): an object that is not live never passes free's check, whatever
 * path made it (carving, refill, drain, trim). Each run makes one bad free, which must abort
 * with one line on stderr naming free (realloc for the realloc cases) and the pointer; the program first writes
 * "mode <rseq mode>" and "pointer <p>" to stdout so the harness knows the mode it ran in and
 * which pointer the line must name.
 *
 * Cases (argv[1]), for objects of `size` bytes (argv[2]); the object stride is
 * malloc_usable_size(p), the class size:
 *   unborn_fresh          p = malloc(size); free(p + 2 stride): an object boundary of p's span
 *                         that was carved but never handed out (the trigger with 208
 *                         and 3000).
 *   unborn_after_trim     the same after malloc_trim(0): the never-handed-out objects went
 *                         from the caches back to the span.
 *   unborn_after_churn    p allocated, then 200 objects of the class allocated and freed, 10
 *                         times (refills from and overflows to the central lists and spans),
 *                         then free(q) for the first object boundary above p that was never
 *                         handed out.
 *   double_after_trim     p freed, malloc_trim(0) (drain to the span; a neighbour keeps the
 *                         span in use), p freed again.
 *   double_after_trim_alone  the same without the neighbour: the span may go back to the
 *                         page heap.
 *   double_after_overflow p freed, then 4,000 objects of its class allocated before p was
 *                         freed are freed (the caches overflow and push p towards its span),
 *                         then p freed again.
 *   double_sent_home      p allocated on CPU 0, freed by a thread on CPU 1 while the first
 *                         runs (owner return: into that thread's outbox, bound for p's home),
 *                         then freed again by that thread. The thread first sets itself up
 *                         (a fresh thread's first call takes the slow path, where a free
 *                         stays where it is made) and frees another object of main's (its
 *                         first foreign free, which gets it an outbox), so p goes into the
 *                         outbox by `free`'s short path (`percpu::send_home`).
 *   double_in_home_inbox  the same, with the outbox sent home in between
 *                         (rseqmalloc_ctl("flush")): the second free finds p in its home's
 *                         inbox. Before that free, the run checks that owner return took both
 *                         objects (stats) wherever it must have: rseq mode, owner return on,
 *                         slabs by CPU (`membarrier=off`: with mm_cid the kernel may swap the
 *                         two threads' ids), two CPUs, a size it sends home (up to 1 KiB).
 *   double_first_sent_home, double_first_in_home_inbox  the same two without the other
 *                         object: p is the thread's first foreign free (the long path, which
 *                         makes the outbox).
 *   realloc_unborn        realloc(p + 2 stride, size): realloc takes the object back too.
 *   realloc_freed         p freed, then realloc(p, size) (same class: realloc could keep it
 *                         in place).
 *   realloc_interior      realloc(p + 8, size): inside a live object, to a size of its class
 *                         (realloc's in-place path checks the pointer too).
 * When free does not abort, the program goes on as the issue describes — 64 x malloc(size) —
 * and reports whether the pointer came back twice, then exits 3.
 *
 * usage: bad_free <case> <size> */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"

static size_t size;

/* Announces the pointer the abort line must name, after the rseq mode the run is in. */
static void say_pointer(void *p) {
    conf_say("mode %s\n", conf_mode());
    conf_say("pointer %#lx\n", (unsigned long)(uintptr_t)p);
}

/* The bad call returned: show the consequence and fail. */
static void after_accepted_free(const char *who, void *bad) {
    enum { N = 64 };
    void *got[N];
    int seen = 0;
    for (int i = 0; i < N; i++) {
        got[i] = malloc(size);
        if (got[i] == bad) seen++;
    }
    conf_say("%s accepted %p; then 64 x malloc(%zu) returned it %d times\n", who, bad, size, seen);
    exit(3);
}

/* double_(first_)sent_home / double_(first_)in_home_inbox: the second thread's side. */
static char *sent_p;
static char *first_p; /* freed before sent_p when not null */
static int sent_flush;
static atomic_int main_spins;

static void *free_twice_elsewhere(void *arg) {
    (void)arg;
    int pinned = conf_pin(1); /* best effort: one CPU is still a test */
    while (!atomic_load(&main_spins)) {
    }
    /* Sets the thread up (its first call takes the slow path, where a free would stay where it
     * is made), with a class no case frees; laundered, or the compiler drops the pair. */
    free(launder(malloc(40)));
    unsigned long before = conf_taken_for_home();
    unsigned long objects = 1;
    if (first_p) {
        free(first_p);
        objects++;
    }
    free(sent_p);
    if (sent_flush) {
        char out[32];
        CHECK(conf_ctl("flush", out, sizeof out) == 0 || conf_glibc());
        /* The premise: the objects went through owner return, where it runs. */
        const char *mode = conf_mode();
        int on = conf_option_is("owner_return", "on");
        /* Slabs by CPU: the two pinned threads' slabs differ (with mm_cid the kernel may
         * swap the threads' ids, and the objects may be this thread's slab's own). */
        int by_cpu = conf_option_is("membarrier", "off");
        int rseq = conf_rseq_mode();
        int two_cpus = sysconf(_SC_NPROCESSORS_ONLN) >= 2 && pinned;
        unsigned long taken = conf_taken_for_home() - before;
        if (on && by_cpu && rseq && two_cpus && size <= 1024) {
            CHECKF(taken >= objects, "owner return took %lu of the %lu objects (mode %s)", taken,
                   objects, mode);
            conf_say("premise checked\n"); /* the harness requires it where it is certain */
        }
    }
    say_pointer(sent_p);
    free(launder(sent_p));
    after_accepted_free("free", sent_p);
    return NULL;
}

int main(int argc, char **argv) {
    conf_init("bad_free", 60);
    CHECK(argc == 3);
    const char *c = argv[1];
    size = (size_t)strtoul(argv[2], NULL, 10);
    char *keep[4000];
    if (strcmp(c, "unborn_fresh") == 0 || strcmp(c, "unborn_after_trim") == 0) {
        char *p = malloc(size);
        CHECK(p);
        size_t stride = malloc_usable_size(p);
        if (c[7] == 'a') malloc_trim(0);
        char *bad = p + 2 * stride;
        say_pointer(bad);
        free(launder(bad));
        after_accepted_free("free", bad);
    } else if (strcmp(c, "unborn_after_churn") == 0) {
        /* 200 objects allocated and freed 10 times over (refills from and overflows to the
         * central lists and spans); then the first object boundary above p that was never
         * handed out. */
        enum { M = 200, ROUNDS = 10 };
        static char *seen[M * ROUNDS];
        char *p = malloc(size);
        CHECK(p);
        size_t stride = malloc_usable_size(p);
        char *obj[M];
        size_t n = 0;
        for (int round = 0; round < ROUNDS; round++) {
            for (int i = 0; i < M; i++) {
                obj[i] = malloc(size);
                CHECK(obj[i]);
                seen[n++] = obj[i];
            }
            for (int i = 0; i < M; i++) free(obj[i]);
        }
        char *bad = NULL;
        for (size_t k = 1; !bad; k++) {
            char *q = p + k * stride;
            int handed = 0;
            for (size_t i = 0; i < n && !handed; i++) handed = seen[i] == q;
            if (!handed) bad = q;
        }
        say_pointer(bad);
        free(launder(bad));
        after_accepted_free("free", bad);
    } else if (strcmp(c, "double_after_trim") == 0 || strcmp(c, "double_after_trim_alone") == 0) {
        int alone = strcmp(c, "double_after_trim_alone") == 0;
        char *before = alone ? NULL : malloc(size);
        char *p = malloc(size);
        char *after = alone ? NULL : malloc(size);
        CHECK(p);
        memset(p, 1, size);
        free(p);
        malloc_trim(0);
        say_pointer(p);
        free(launder(p));
        free(before);
        free(after);
        after_accepted_free("free", p);
    } else if (strcmp(c, "double_after_overflow") == 0) {
        for (int i = 0; i < 4000; i++) {
            keep[i] = malloc(size);
            CHECK(keep[i]);
        }
        char *p = malloc(size);
        CHECK(p);
        memset(p, 1, size);
        free(p);
        for (int i = 0; i < 4000; i++) free(keep[i]);
        say_pointer(p);
        free(launder(p));
        after_accepted_free("free", p);
    } else if (strcmp(c, "double_sent_home") == 0 || strcmp(c, "double_in_home_inbox") == 0 ||
               strcmp(c, "double_first_sent_home") == 0 ||
               strcmp(c, "double_first_in_home_inbox") == 0) {
        (void)conf_pin(0);
        if (strstr(c, "_first_") == NULL) {
            first_p = malloc(size);
            CHECK(first_p);
        }
        sent_p = malloc(size);
        CHECK(sent_p);
        memset(sent_p, 1, size);
        sent_flush = strstr(c, "inbox") != NULL;
        pthread_t t;
        CHECK(pthread_create(&t, NULL, free_twice_elsewhere, NULL) == 0);
        /* Keep running on CPU 0 while the other thread frees, so that it runs on another slab
         * (with mm_cid, a thread that sleeps may hand its id over). */
        atomic_store(&main_spins, 1);
        for (;;) {
        }
    } else if (strcmp(c, "realloc_unborn") == 0) {
        char *p = malloc(size);
        CHECK(p);
        char *bad = p + 2 * malloc_usable_size(p);
        say_pointer(bad);
        char *q = realloc(launder(bad), size);
        conf_say("realloc returned %p\n", q);
        after_accepted_free("realloc", bad);
    } else if (strcmp(c, "realloc_freed") == 0) {
        char *keep1 = malloc(size);
        char *p = malloc(size);
        CHECK(keep1 && p);
        free(p);
        say_pointer(p);
        char *q = realloc(launder(p), size);
        conf_say("realloc returned %p\n", q);
        after_accepted_free("realloc", p);
    } else if (strcmp(c, "realloc_interior") == 0) {
        char *p = malloc(size);
        CHECK(p);
        char *bad = p + 8;
        say_pointer(bad);
        char *q = realloc(launder(bad), size);
        conf_say("realloc returned %p\n", q);
        after_accepted_free("realloc", bad);
    } else {
        CHECKF(0, "unknown case %s", c);
    }
    return 0;
}
