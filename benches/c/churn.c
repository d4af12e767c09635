/* Churn: the runner's `single-churn` and `multi-churn` pattern as a C program, for profiling
 * where an allocator's time goes outside its own functions.
 *
 * T threads, each with a ring of S slots {id, pointer, length}. Each of OPS operations per
 * thread allocates an object of a random small size (60 % 8-64 B, 30 % 65-256 B, 10 %
 * 257-512 B, as the runner's `small_size`), fills it with a pattern derived from its id,
 * checks the object in a random slot (first bytes by memcmp against the id, the rest by one
 * overlapping memcmp, as the runner's `pattern::holds`), frees it and puts the new one in its
 * place. At the end every survivor is checked and freed. A corrupted object aborts.
 *
 * The program's own loads (the slot, the old object) dominate: an allocator's placement of
 * objects shows up here as time spent in `memcmp` and `check`, which `perf record -e
 * cpu-clock` separates from the allocator's functions (docs/design.md, "Object locality
 * across threads", has what session 17 measured with it).
 *
 *   cc -O2 -o /tmp/churn benches/c/churn.c -lpthread
 *   taskset -c 0 env LD_PRELOAD=target/release/librseqmalloc.so /tmp/churn 8 1500000 6250
 *   taskset -c 0 env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /tmp/churn
 *
 * Arguments (all optional): threads T (default 8, at most 64), operations per thread OPS
 * (1,500,000), slots per thread S (6,250: `multi-churn`'s live set at scale 0.5 on two CPUs;
 * `1 8000000 50000` is `single-churn`'s), and prefetch P (0, or 1 to prefetch the first cache
 * line of each operation's slot before its allocation: whether the program's slot load waits
 * behind the allocator's code, docs/benchmarks.md, "Session 56"), sizes LO HI (0 0, the
 * runner's mix; else uniform in LO..=HI bytes, 1 <= LO <= HI: `1 3000000 50000 0 300 500`
 * takes the objects of 257-512 B apart, docs/benchmarks.md, "Session 65"), and ring R (0, or
 * 1 to map each thread's ring with `mmap` instead of allocating it with `malloc`, so that every
 * allocator's program reads its slots from the same kind of memory). Time it with
 * `/usr/bin/time` (user + system) and alternate the libraries over several runs: single runs
 * on a noisy machine spread by 30 %. */
#include <pthread.h>
#include <sys/mman.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "small_sizes.h"

typedef struct {
    uint64_t id;
    uint8_t *p;
    size_t len;
} Obj;

static int threads = 8;
static long ops = 1500000, slots = 6250;
static int prefetch, ring_mapped;
static long lo_size, hi_size;

/* An object's size: the runner's mix, or uniform in lo_size..=hi_size when they are set. */
static size_t pick_size(uint64_t *rng) {
    if (lo_size == 0)
        return small_size(rng);
    return (size_t)lo_size + next(rng) % (uint64_t)(hi_size - lo_size + 1);
}

static uint8_t tag(uint64_t id) { return (uint8_t)mix(id) | 1; }

static void fill(Obj *o) {
    memset(o->p, tag(o->id), o->len);
    memcpy(o->p, &o->id, o->len < 8 ? o->len : 8);
}

static void check(const Obj *o) {
    size_t head = o->len < 8 ? o->len : 8;
    if (memcmp(o->p, &o->id, head))
        abort();
    if (o->len > head &&
        (o->p[head] != tag(o->id) || memcmp(o->p + head + 1, o->p + head, o->len - head - 1)))
        abort();
}

static Obj fresh(uint64_t *id, uint64_t *rng) {
    Obj o = {++*id, NULL, pick_size(rng)};
    o.p = malloc(o.len);
    if (!o.p)
        abort();
    fill(&o);
    return o;
}

static void *run(void *arg) {
    long t = (long)arg;
    uint64_t rng = (uint64_t)t * 7919 + 1, id = (uint64_t)t << 40;
    Obj *ring;
    if (ring_mapped) {
        ring = mmap(NULL, slots * sizeof(Obj), PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (ring == MAP_FAILED)
            abort();
    } else {
        ring = malloc(slots * sizeof(Obj));
        if (!ring)
            abort();
    }
    for (long i = 0; i < slots; i++)
        ring[i] = fresh(&id, &rng);
    for (long k = 0; k < ops; k++) {
        long i = next(&rng) % slots;
        if (prefetch)
            __builtin_prefetch(&ring[i]);
        Obj o = fresh(&id, &rng);
        check(&ring[i]);
        free(ring[i].p);
        ring[i] = o;
    }
    for (long i = 0; i < slots; i++) {
        check(&ring[i]);
        free(ring[i].p);
    }
    if (ring_mapped)
        munmap(ring, slots * sizeof(Obj));
    else
        free(ring);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1)
        threads = atoi(argv[1]);
    if (argc > 2)
        ops = atol(argv[2]);
    if (argc > 3)
        slots = atol(argv[3]);
    if (argc > 4)
        prefetch = atoi(argv[4]);
    if (argc > 6) {
        lo_size = atol(argv[5]);
        hi_size = atol(argv[6]);
    }
    if (argc > 7)
        ring_mapped = atoi(argv[7]);
    if (threads < 1 || threads > 64 || ops < 0 || slots < 1 || (prefetch != 0 && prefetch != 1) ||
        lo_size < 0 || hi_size < lo_size || (lo_size == 0 && hi_size != 0) ||
        hi_size > (1 << 20) || (ring_mapped != 0 && ring_mapped != 1) || argc == 6 || argc > 8) {
        fprintf(stderr, "usage: churn [threads 1-64] [ops per thread] [slots per thread] "
                        "[prefetch 0|1] [sizes LO HI, 0 0 for the mix] [ring mapped 0|1]\n");
        return 2;
    }
    pthread_t th[64];
    for (long t = 0; t < threads; t++)
        if (pthread_create(&th[t], NULL, run, (void *)t))
            abort();
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    return 0;
}
