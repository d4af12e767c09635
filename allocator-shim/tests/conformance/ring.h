/* A ring of objects handed from one producer thread to one consumer thread, for the
 * owner-return programs (`owner_return.c`, `owner_return_keep.c`): object `i` travels in slot
 * `i % size`; the producer waits while the ring is full, the consumer until object `i` is in
 * it. Both wait by spinning, or with `yield` by sched_yield (which returns at once when nothing
 * else wants the CPU). C only (C11 atomics). */
#ifndef CONF_RING_H
#define CONF_RING_H

#include <sched.h>
#include <stdatomic.h>

struct conf_ring {
    unsigned char **slot;
    unsigned long size;
    _Atomic unsigned long head, tail; /* objects put (by the producer), taken (by the consumer) */
};

/* The producer's side: puts object `i` (the `i`th put) into `r`. */
static inline void conf_ring_put(struct conf_ring *r, unsigned long i, unsigned char *p,
                                 int yield) {
    while (atomic_load_explicit(&r->head, memory_order_relaxed) -
               atomic_load_explicit(&r->tail, memory_order_acquire) ==
           r->size) {
        if (yield) sched_yield();
    }
    r->slot[i % r->size] = p;
    atomic_store_explicit(&r->head, i + 1, memory_order_release);
}

/* The consumer's side: takes object `i` (the `i`th take) from `r`. */
static inline unsigned char *conf_ring_take(struct conf_ring *r, unsigned long i, int yield) {
    while (atomic_load_explicit(&r->head, memory_order_acquire) == i) {
        if (yield) sched_yield();
    }
    unsigned char *p = r->slot[i % r->size];
    atomic_store_explicit(&r->tail, i + 1, memory_order_release);
    return p;
}

/* 1 when the `n` bytes at `p` all hold `byte`. */
static inline int conf_filled(const unsigned char *p, size_t n, unsigned char byte) {
    for (size_t k = 0; k < n; k++)
        if (p[k] != byte) return 0;
    return 1;
}

#endif
