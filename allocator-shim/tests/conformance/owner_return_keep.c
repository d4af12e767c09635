/* Conformance (owner return's policy): a thread that frees another slab's objects of the class it
 * allocates keeps them; one that allocates another class sends them home.
 *
 * A producer pinned to CPU 0 allocates objects of one size, fills each with its serial number,
 * and passes them through a ring to a consumer pinned to CPU 1; both spin, so they run at once
 * on different slabs, and every object the consumer frees comes from a span the producer's
 * slab carved (each phase uses a size no earlier phase did, so its spans are fresh).
 *
 *  - Phase "other class" (48-byte objects): for each object it receives, the consumer first
 *    allocates a 200-byte object of its own, then checks and frees the received one: the
 *    objects go home, at least half of them (counted after the consumer's exit has flushed
 *    its outbox) when rseq runs on two CPUs with owner return on.
 *  - Phase "replace" (64-byte objects): the same, but the consumer allocates a 64-byte object
 *    (a node replacing the one it is about to free). Its last allocation is of the freed
 *    object's class, so owner return keeps the object on the consumer's slab: almost none may
 *    be sent home (`stats.sent_home` plus `stats.sent_home_declined` over the phase, the
 *    consumer's exit included, below 1 % of the objects: the threads' start and exit free a
 *    few blocks of their own).
 *  - Phase "temporary" (64-byte objects again): a thread pinned to CPU 1, whose cache the
 *    replace phase left holding the producer's objects, allocates one object and frees it at
 *    once, TEMPS times (a temporary buffer). Each free is of the block the thread allocated
 *    last, which owner return keeps where it runs (since session 34 without the home test):
 *    the thread must get the same block back every time (at least 99 % of the times), and
 *    almost nothing may be sent home (below 1 % of TEMPS).
 *
 * Every received object must hold its bytes (no block handed out twice while live). In the
 * fallback mode, or with owner return off, nothing is ever sent. Prints
 * "owner_return_keep ok objects=N kept_phase_sent=A other_phase_sent=B temporary_same=S
 * temporary_sent=T discriminating=D mode=..." (D is 0 where the run cannot tell the rule from its absence: fallback mode, owner
 * return off, one CPU). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "conf.h"
#include "ring.h"

enum { OBJECTS = 100000, RING = 256, TEMPS = 10000 };

static unsigned char *slots[RING];
static struct conf_ring ring = {.slot = slots, .size = RING};
static atomic_int bad;
static size_t size;     /* what the producer allocates */
static size_t own_size; /* what the consumer allocates before each free */
static void *own[OBJECTS];

static void *produce(void *arg) {
    (void)arg;
    conf_pin(0);
    for (unsigned long i = 0; i < OBJECTS; i++) {
        unsigned char *p = malloc(size);
        CHECK(p);
        memset(p, (int)(i & 0xff), size);
        conf_ring_put(&ring, i, p, 1);
    }
    return NULL;
}

static void *consume(void *arg) {
    (void)arg;
    conf_pin(1);
    for (unsigned long i = 0; i < OBJECTS; i++) {
        unsigned char *p = conf_ring_take(&ring, i, 1);
        own[i] = malloc(own_size);
        CHECK(own[i]);
        memset(own[i], 0x3c, own_size);
        if (!conf_filled(p, size, (unsigned char)(i & 0xff))) atomic_fetch_add(&bad, 1);
        free(p);
    }
    return NULL; /* the thread's exit sends its outbox home */
}

/* One phase: producer and consumer at once; returns what was left for home during it. */
static unsigned long phase(size_t producer_allocates, size_t consumer_allocates) {
    size = producer_allocates;
    own_size = consumer_allocates;
    atomic_store(&ring.head, 0);
    atomic_store(&ring.tail, 0);
    unsigned long before = conf_taken_for_home();
    pthread_t p, c;
    CHECK(pthread_create(&c, NULL, consume, NULL) == 0);
    CHECK(pthread_create(&p, NULL, produce, NULL) == 0);
    CHECK(pthread_join(p, NULL) == 0);
    CHECK(pthread_join(c, NULL) == 0);
    unsigned long sent = conf_taken_for_home() - before;
    CHECKF(atomic_load(&bad) == 0, "%d objects arrived with a wrong byte", atomic_load(&bad));
    for (unsigned long i = 0; i < OBJECTS; i++) {
        unsigned char *q = own[i];
        CHECK(conf_filled(q, consumer_allocates, 0x3c));
        free(q);
    }
    return sent;
}

/* Phase "temporary": returns how many times malloc gave back the block freed just before. */
static void *temporaries(void *arg) {
    conf_pin(1);
    unsigned char *last = NULL;
    unsigned long same = 0;
    for (unsigned long i = 0; i < TEMPS; i++) {
        unsigned char *p = malloc(64);
        CHECK(p);
        memset(p, (int)(i & 0xff), 64);
        if (p == last) same++;
        last = p;
        CHECK(conf_filled(p, 64, (unsigned char)(i & 0xff)));
        free(p);
    }
    *(unsigned long *)arg = same;
    return NULL;
}

int main(void) {
    conf_init("owner_return_keep", 60);
    free(malloc(1));
    unsigned long other_phase = phase(48, 200);
    unsigned long kept_phase = phase(64, 64);
    unsigned long temporary_same = 0, before = conf_taken_for_home();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, temporaries, &temporary_same) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    unsigned long temporary_sent = conf_taken_for_home() - before;
    CHECKF(temporary_same >= (TEMPS - 1) * 99 / 100,
           "a block freed at once came back only %lu of %d times", temporary_same, TEMPS - 1);
    const char *mode = conf_mode();
    int two_cpus = sysconf(_SC_NPROCESSORS_ONLN) >= 2 && conf_pin(1) && conf_pin(0);
    int on = conf_option_is("owner_return", "on");
    int rseq = conf_rseq_mode();
    if (!conf_glibc()) {
        /* Not 0: the threads' own start and exit free a few blocks of other classes that
         * another thread allocated (glibc's thread bookkeeping), and those go home. */
        CHECKF(kept_phase < OBJECTS / 100,
               "%lu objects of the class the consumer allocates were sent home in mode %s",
               kept_phase, mode);
        CHECKF(temporary_sent < TEMPS / 100,
               "%lu blocks freed at once by the thread that allocated them were sent home in "
               "mode %s", temporary_sent, mode);
        if (on && rseq && two_cpus)
            CHECKF(other_phase >= OBJECTS / 2,
                   "only %lu of %d objects of another class were sent home in mode %s",
                   other_phase, OBJECTS, mode);
        if (!on || !rseq)
            CHECKF(other_phase == 0, "%lu objects sent home in mode %s, owner_return %s",
                   other_phase, mode, on ? "on" : "off");
    }
    /* discriminating=0: a run that cannot tell the rule from its absence (fallback mode, owner
     * return off, one CPU), so its pass says only that every object arrived intact. */
    conf_say("owner_return_keep ok objects=%d kept_phase_sent=%lu other_phase_sent=%lu "
             "temporary_same=%lu temporary_sent=%lu discriminating=%d mode=%s\n",
             OBJECTS, kept_phase, other_phase, temporary_same, temporary_sent,
             on && rseq && two_cpus, mode);
    return 0;
}
