/* Conformance (free keeps errno), owner return: a free that sends an object to another slab
 * may need memory of the allocator's own (the freeing thread's first outbox) or the slow free
 * path, so it may make a system call that fails; free must still leave errno as it was.
 *
 * A producer pinned to CPU 0 warms its cache with blocks of 1000 bytes and allocates 200 of
 * them; the main thread, pinned to CPU 0 too, empties every cache (`purge`), sets RLIMIT_AS
 * to the process's current use and takes 1792-byte blocks (the per-thread storage's size)
 * until malloc returns NULL, so the allocator can map nothing more. A consumer pinned to CPU 1
 * then frees the producer's blocks, setting errno to 77 before each free and checking it
 * after. Both spin while the other works, so they run on different slabs, and the consumer's
 * frees are foreign: they find no outbox and no memory for one. After the exhaustion only
 * those frees call the allocator, and with every cache emptied before it, what they leave in
 * the central lists is all maintenance could give back to the page heap — and only after two
 * of its ticks (250 ms apart) inside the loop of 200 frees, with a span's every object among
 * them.
 *
 * The premise is checked where it must hold: the consumer sets itself up first (a thread's
 * first call takes the slow path, where a free stays where it is made) with a class it does
 * not free (a free of the class a thread last allocated stays too), and in the rseq modes with
 * owner return on, slabs by CPU (`membarrier=off`: with `mm_cid` the kernel may swap two
 * threads' ids) and both threads pinned, every one of its frees must be counted in
 * `stats.sent_home_no_outbox`.
 *
 * Prints "owner_return_errno ok frees=N no_outbox=K checked=C mode=...", C 1 when the premise
 * was checked. */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/resource.h>

#include "conf.h"

enum { WARM = 2000, FREES = 200, SIZE = 1000, STORAGE = 1792 };

static sem_t ready, exhausted;
static void *blocks[FREES];
static atomic_int published, consumed, clobbered, pinned;
static unsigned long no_outbox;

static void *produce(void *arg) {
    (void)arg;
    atomic_fetch_add(&pinned, conf_pin(0));
    static void *warm[WARM];
    for (int i = 0; i < WARM; i++) CHECK(warm[i] = malloc(SIZE));
    for (int i = 0; i < WARM; i++) free(warm[i]);
    for (int i = 0; i < FREES; i++) {
        CHECK(blocks[i] = malloc(SIZE));
        memset(blocks[i], i & 0xff, SIZE);
    }
    CHECK(sem_post(&ready) == 0);
    CHECK(sem_wait(&exhausted) == 0);
    atomic_store(&published, 1);
    while (!atomic_load(&consumed)) {
    }
    return NULL;
}

static void *consume(void *arg) {
    (void)arg;
    atomic_fetch_add(&pinned, conf_pin(1));
    /* Set-up: the thread's first call takes the slow path, where a free stays where it is
     * made; in a class it does not free (a free of the class a thread allocated last stays
     * too, and nobody else uses this one, so its objects are the thread's own); laundered, or
     * the compiler drops the pair. */
    free(launder(malloc(64)));
    while (!atomic_load(&published)) {
    }
    unsigned long before = conf_kept_for_want_of_outbox();
    for (int i = 0; i < FREES; i++) {
        errno = 77;
        free(blocks[i]);
        if (errno != 77) atomic_fetch_add(&clobbered, 1);
    }
    no_outbox = conf_kept_for_want_of_outbox() - before;
    atomic_store(&consumed, 1);
    return NULL;
}

static size_t vm_size(void) {
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f);
    char line[256];
    size_t kb = 0, v;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %zu kB", &v) == 1) kb = v;
    fclose(f);
    CHECK(kb > 0);
    return kb * 1024;
}

int main(void) {
    conf_init("owner_return_errno", 60);
    free(malloc(1));
    CHECK(sem_init(&ready, 0, 0) == 0 && sem_init(&exhausted, 0, 0) == 0);
    pthread_t p, c;
    CHECK(pthread_create(&c, NULL, consume, NULL) == 0);
    CHECK(pthread_create(&p, NULL, produce, NULL) == 0);
    CHECK(sem_wait(&ready) == 0);
    /* On the producer's CPU (it waits), so no block of the exhaustion is left in the
     * consumer's slab; with every cache emptied first, nothing cached can become free pages. */
    (void)conf_pin(0);
    char out[32];
    CHECK(conf_ctl("purge", out, sizeof out) == 0 || conf_glibc());
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = vm_size();
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    void *chain = NULL;
    for (void **q; (q = malloc(STORAGE)) != NULL;) {
        *q = chain;
        chain = q;
    }
    CHECK(sem_post(&exhausted) == 0);
    CHECK(pthread_join(p, NULL) == 0);
    CHECK(pthread_join(c, NULL) == 0);
    CHECKF(atomic_load(&clobbered) == 0, "%d of %d foreign frees changed errno",
           atomic_load(&clobbered), FREES);
    /* The premise: the frees were foreign and found no outbox, where that is certain (the
     * harness requires the check where CPUs 0 and 1 can be used). */
    int checked = conf_option_is("owner_return", "on") && conf_option_is("membarrier", "off") &&
                  conf_rseq_mode() && atomic_load(&pinned) == 2;
    if (checked)
        CHECKF(no_outbox == FREES, "%lu of %d foreign frees counted as finding no outbox (mode %s)",
               no_outbox, FREES, conf_mode());
    while (chain) {
        void *next = *(void **)chain;
        free(chain);
        chain = next;
    }
    conf_say("owner_return_errno ok frees=%d no_outbox=%lu checked=%d mode=%s\n", FREES, no_outbox,
             checked, conf_mode());
    return 0;
}
