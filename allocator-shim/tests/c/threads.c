/* 16 threads in a ring, each freeing the objects of another: thread i allocates objects of
 * random sizes (log-distributed up to 32 KiB, some 256 KiB-1 MiB), fills them with a pattern
 * from a per-object seed, and posts them in batches to thread i+1's mailbox; each thread also
 * takes the batches posted to it, verifies every object and frees it (or reallocs it first, so
 * realloc also meets foreign objects). Producers never block, so the ring cannot deadlock;
 * a consumer waits on its mailbox's condition variable only once it has produced everything.
 *
 * usage: threads [objects per thread]       prints "threads ok ..." */
#include "common.h"
#include "rseqmalloc.h"

#include <malloc.h>
#include <pthread.h>

enum { THREADS = 16, BATCH = 32 };

struct obj {
    unsigned char *p;
    size_t size;
    uint64_t seed;
};

struct batch {
    struct batch *next;
    int n;
    struct obj o[BATCH];
};

struct mailbox {
    pthread_mutex_t lock;
    pthread_cond_t nonempty;
    struct batch *head;
};

static struct mailbox boxes[THREADS];
static pthread_barrier_t start;
static long per_thread;
static long freed_total[THREADS], realloced_total[THREADS];

static void post(struct mailbox *m, struct batch *b) {
    pthread_mutex_lock(&m->lock);
    b->next = m->head;
    m->head = b;
    pthread_cond_signal(&m->nonempty);
    pthread_mutex_unlock(&m->lock);
}

/* Takes everything posted so far; with `wait`, blocks until there is something. */
static struct batch *take(struct mailbox *m, int wait) {
    pthread_mutex_lock(&m->lock);
    while (wait && m->head == NULL) pthread_cond_wait(&m->nonempty, &m->lock);
    struct batch *b = m->head;
    m->head = NULL;
    pthread_mutex_unlock(&m->lock);
    return b;
}

/* Verifies and frees every object of a list of batches; returns how many. */
static long consume(struct batch *b, rng_t *r, int me) {
    long n = 0;
    while (b) {
        for (int i = 0; i < b->n; i++) {
            struct obj *o = &b->o[i];
            size_t bad = verify_sparse(o->p, o->size, o->seed);
            CHECKF(bad == (size_t)-1, "thread %d: foreign object %p (%zu bytes) corrupt at %zu",
                   me, (void *)o->p, o->size, bad);
            if (rng_below(r, 8) == 0) {
                size_t m = o->size / 2 + 1;
                unsigned char *q = realloc(o->p, m);
                CHECK(q != NULL);
                CHECK(verify_prefix(q, m, o->size, o->seed) == (size_t)-1);
                o->p = q;
                realloced_total[me]++;
            }
            free(o->p);
            n++;
        }
        struct batch *next = b->next;
        free(b);
        b = next;
    }
    return n;
}

static size_t pick_size(rng_t *r) {
    if (rng_below(r, 200) == 0) return (256u << 10) + rng_below(r, 768u << 10);
    unsigned bits = (unsigned)rng_below(r, 16);
    size_t lo = bits ? (size_t)1 << (bits - 1) : 1;
    return lo + rng_below(r, lo);
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg;
    struct mailbox *mine = &boxes[me], *next = &boxes[(me + 1) % THREADS];
    rng_t r = {(uint64_t)me * 1000003u + 7};
    long produced = 0, consumed = 0;
    pthread_barrier_wait(&start);
    while (produced < per_thread) {
        struct batch *b = malloc(sizeof *b);
        CHECK(b);
        b->n = 0;
        while (b->n < BATCH && produced < per_thread) {
            struct obj *o = &b->o[b->n++];
            o->size = pick_size(&r);
            o->p = (rng_below(&r, 4) == 0) ? calloc(1, o->size) : malloc(o->size);
            CHECK(o->p);
            o->seed = ((uint64_t)me << 40) ^ (uint64_t)produced;
            fill_sparse(o->p, o->size, o->seed);
            produced++;
        }
        post(next, b);
        consumed += consume(take(mine, 0), &r, me);
    }
    /* Everything produced; drain what the previous thread still sends. */
    while (consumed < per_thread) consumed += consume(take(mine, 1), &r, me);
    CHECK(consumed == per_thread);
    freed_total[me] = consumed;
    return NULL;
}

int main(int argc, char **argv) {
    test_init(200);
    per_thread = argc > 1 ? atol(argv[1]) : 20000;
    pthread_t t[THREADS];
    CHECK(pthread_barrier_init(&start, NULL, THREADS) == 0);
    for (int i = 0; i < THREADS; i++) {
        pthread_mutex_init(&boxes[i].lock, NULL);
        pthread_cond_init(&boxes[i].nonempty, NULL);
    }
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    long total = 0, realloced = 0;
    for (int i = 0; i < THREADS; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        total += freed_total[i];
        realloced += realloced_total[i];
    }
    CHECK(total == per_thread * THREADS);
    CHECK(realloced > 0);
    for (int i = 0; i < THREADS; i++) CHECK(boxes[i].head == NULL);
    printf("threads ok threads=%d objects=%ld realloced=%ld mode=%s\n", THREADS, total, realloced,
           shim_mode());
    return 0;
}
