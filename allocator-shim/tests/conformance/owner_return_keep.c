/* Conformance (owner return's policy): a thread that frees another slab's objects of the class it
 * allocates keeps them; one that allocates another class sends them home.
 *
 * In the first two phases a producer pinned to CPU 0 allocates objects of one size, fills each
 * with its serial number, and passes them through a ring to a consumer pinned to CPU 1; both
 * spin, so they run at once on different slabs, and every object the consumer frees comes from
 * a span the producer's slab carved (each phase uses a size no earlier phase did, so its spans
 * are fresh).
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
 *  - Phase "temporary" (96-byte objects): a producer pinned to CPU 0 allocates TEMP_OBJECTS
 *    objects before anyone else allocates that size (so every one is in a span its slab
 *    carved), hands them over in an array, and spins until the consumer is done, so the two
 *    mostly run at once (with slabs by `mm_cid`, distinct ones then; certain only with slabs
 *    by CPU, `membarrier=off`, see the premise below). The consumer,
 *    pinned to CPU 1, allocates one 96-byte block of its own, its first on its slab, as a
 *    rule a refill (the note's class is now the objects': the slow path notes too), and
 *    frees the first half: kept where they are freed, on top of its cache, below 1 % of them
 *    sent home (a build whose refills did not note sent all, and kept the second half in
 *    1-2 % of runs on a loaded machine, when the 200-byte allocation below refilled too). Then
 *    it allocates a 96-byte block and frees it at once, TEMPS times (a temporary buffer): each
 *    malloc pops the producer's object freed last, and each free is of the block the thread
 *    allocated last, which owner return keeps where it runs (since session 34 with no home
 *    test, `lib::free_small_here`). So the thread must get the same block back every time (at
 *    least 99 % of the times, in every mode: any LIFO cache does), and below 1 % of TEMPS may
 *    be sent home meanwhile; a build that sent those frees home fails both. Premise: with
 *    another class noted, the second half goes home, which shows the objects were the other
 *    slab's. It is certain, and checked (at least half of it sent), only with slabs by CPU
 *    (`membarrier=off`, rseq on two CPUs, owner return on): then the program prints
 *    temporary_premise=1.
 *
 * Every received object must hold its bytes (no block handed out twice while live). In the
 * fallback mode, or with owner return off, nothing is ever sent. Prints
 * "owner_return_keep ok objects=N kept_phase_sent=A other_phase_sent=B first_half_sent=F
 * temporary_same=S temporary_sent=T premise_sent=P discriminating=D temporary_premise=E
 * mode=..." (D is 0 where the run cannot tell the rule from its absence: fallback mode, owner
 * return off, one CPU). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "conf.h"
#include "ring.h"

enum { OBJECTS = 100000, RING = 256, TEMP_OBJECTS = 2000, TEMPS = 10000 };

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

/* Starts a consumer and a producer, each on a thread of its own, and waits for both; then
 * every object the consumer received must have held its bytes. */
static void run_pair(void *(*consumer)(void *), void *(*producer)(void *)) {
    pthread_t p, c;
    CHECK(pthread_create(&c, NULL, consumer, NULL) == 0);
    CHECK(pthread_create(&p, NULL, producer, NULL) == 0);
    CHECK(pthread_join(p, NULL) == 0);
    CHECK(pthread_join(c, NULL) == 0);
    CHECKF(atomic_load(&bad) == 0, "%d objects arrived with a wrong byte", atomic_load(&bad));
}

/* One phase: producer and consumer at once; returns what was left for home during it. */
static unsigned long phase(size_t producer_allocates, size_t consumer_allocates) {
    size = producer_allocates;
    own_size = consumer_allocates;
    atomic_store(&ring.head, 0);
    atomic_store(&ring.tail, 0);
    unsigned long before = conf_taken_for_home();
    run_pair(consume, produce);
    unsigned long sent = conf_taken_for_home() - before;
    for (unsigned long i = 0; i < OBJECTS; i++) {
        unsigned char *q = own[i];
        CHECK(conf_filled(q, consumer_allocates, 0x3c));
        free(q);
    }
    return sent;
}

/* Phase "temporary": its own producer and consumer (see the header). */
static unsigned char *temp_objects[TEMP_OBJECTS];
static atomic_int temps_ready, temps_done;
static unsigned long temporary_same, temporary_sent, temporary_mid, first_half_sent;

static void *temp_produce(void *arg) {
    (void)arg;
    conf_pin(0);
    for (unsigned long i = 0; i < TEMP_OBJECTS; i++) {
        unsigned char *p = malloc(96);
        CHECK(p);
        memset(p, (int)(i & 0xff), 96);
        temp_objects[i] = p;
    }
    atomic_store(&temps_ready, 1);
    while (!atomic_load(&temps_done)) {
    }
    return NULL;
}

/* Checks and frees the producer's objects temp_objects[from..to). */
static void free_temp_objects(unsigned long from, unsigned long to) {
    for (unsigned long i = from; i < to; i++) {
        unsigned char *p = temp_objects[i];
        if (!conf_filled(p, 96, (unsigned char)(i & 0xff))) atomic_fetch_add(&bad, 1);
        free(p);
    }
}

static void *temp_consume(void *arg) {
    (void)arg;
    conf_pin(1);
    free(malloc(200)); /* set-up: the thread's first allocation */
    while (!atomic_load(&temps_ready)) {
    }
    /* Read first: a ctl call may allocate (glibc before 2.34 callocs a buffer at a thread's
     * first dlsym), which would move the note. */
    unsigned long kept_start = conf_taken_for_home();
    /* The thread's first 96-byte block on its slab, as a rule a refill, which must note its
     * class too. */
    unsigned char *anchor = malloc(96);
    CHECK(anchor);
    free_temp_objects(0, TEMP_OBJECTS / 2);
    unsigned long before = conf_taken_for_home();
    first_half_sent = before - kept_start;
    unsigned char *last = NULL;
    for (unsigned long k = 0; k < TEMPS; k++) {
        unsigned char *p = malloc(96);
        CHECK(p);
        if (p == last) temporary_same++;
        last = p;
        memset(p, (int)(k & 0xff), 96);
        CHECK(conf_filled(p, 96, (unsigned char)(k & 0xff)));
        free(p);
    }
    temporary_mid = conf_taken_for_home();
    temporary_sent = temporary_mid - before;
    unsigned char *other = malloc(200);
    CHECK(other);
    free_temp_objects(TEMP_OBJECTS / 2, TEMP_OBJECTS);
    free(other);
    free(anchor);
    atomic_store(&temps_done, 1);
    return NULL; /* the thread's exit sends its outbox home */
}

int main(void) {
    conf_init("owner_return_keep", 60);
    free(malloc(1));
    unsigned long other_phase = phase(48, 200);
    unsigned long kept_phase = phase(64, 64);
    run_pair(temp_consume, temp_produce);
    unsigned long premise_sent = conf_taken_for_home() - temporary_mid;
    CHECKF(temporary_same >= (TEMPS - 1) * 99 / 100,
           "a block freed at once came back only %lu of %d times", temporary_same, TEMPS - 1);
    const char *mode = conf_mode();
    int two_cpus = sysconf(_SC_NPROCESSORS_ONLN) >= 2 && conf_pin(1) && conf_pin(0);
    int on = conf_option_is("owner_return", "on");
    int rseq = conf_rseq_mode();
    /* The temporary phase's premise is certain only with slabs by CPU (`membarrier=off`): with
     * `mm_cid` a thread that runs alone for a moment may take the other's id, and the
     * consumer's refill may then share the producer's slab. */
    int premise = on && rseq && two_cpus && conf_option_is("membarrier", "off");
    if (!conf_glibc()) {
        /* Not 0: the threads' own start and exit free a few blocks of other classes that
         * another thread allocated (glibc's thread bookkeeping), and those go home. */
        CHECKF(kept_phase < OBJECTS / 100,
               "%lu objects of the class the consumer allocates were sent home in mode %s",
               kept_phase, mode);
        CHECKF(first_half_sent < TEMP_OBJECTS / 2 / 100,
               "%lu of %d objects freed after a 96-byte refill were sent home in mode %s: "
               "the slow path's allocation did not note their class", first_half_sent,
               TEMP_OBJECTS / 2, mode);
        CHECKF(temporary_sent < TEMPS / 100,
               "%lu blocks freed at once by the thread that allocated them were sent home in "
               "mode %s", temporary_sent, mode);
        if (premise)
            CHECKF(premise_sent >= TEMP_OBJECTS / 4,
                   "only %lu of %d objects freed after another class went home in mode %s",
                   premise_sent, TEMP_OBJECTS / 2, mode);
        if (!on || !rseq)
            CHECKF(premise_sent == 0, "%lu objects sent home in mode %s, owner_return %s",
                   premise_sent, mode, on ? "on" : "off");
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
             "first_half_sent=%lu temporary_same=%lu temporary_sent=%lu premise_sent=%lu "
             "discriminating=%d temporary_premise=%d mode=%s\n",
             OBJECTS, kept_phase, other_phase, first_half_sent, temporary_same, temporary_sent,
             premise_sent, on && rseq && two_cpus, premise, mode);
    return 0;
}
