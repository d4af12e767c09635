/* A random mix of 1,000,000 malloc/calloc/realloc/free operations over 4096 slots, single
 * threaded, with content checks: every object is filled with a pattern derived from its own
 * seed and verified before it is freed or reallocated (realloc must keep the common prefix).
 *
 * Sizes: 0..64 KiB log-distributed (uniform exponent, then uniform below it), plus 1-8 MiB
 * for one operation in 500; multi-MiB objects are checked sparsely (common.h). At the end
 * every live object is verified and freed, and the allocator's `allocated` figure must be
 * back where it started.
 *
 * usage: stress [ops] [seed]           prints "stress ok ..." */
#include "common.h"
#include "rseqmalloc.h"

#include <malloc.h>

enum { SLOTS = 4096 };

struct slot {
    unsigned char *p;
    size_t size;
    uint64_t seed;
};

static struct slot slots[SLOTS];

static size_t allocated_now(void) {
    struct rseqmalloc_stats s;
    size_t (*f)(struct rseqmalloc_stats *, size_t) =
        (size_t(*)(struct rseqmalloc_stats *, size_t))dlsym(RTLD_DEFAULT, "rseqmalloc_stats");
    CHECK(f && f(&s, sizeof s) == sizeof s);
    return s.allocated;
}

static size_t pick_size(rng_t *r) {
    if (rng_below(r, 500) == 0) return ((size_t)1 << 20) + rng_below(r, (size_t)7 << 20);
    unsigned bits = (unsigned)rng_below(r, 17); /* 0..16: up to 64 KiB */
    size_t lo = bits ? (size_t)1 << (bits - 1) : 0;
    return lo + rng_below(r, lo + 1);
}

static void check_slot(struct slot *s, const char *when) {
    size_t bad = verify_sparse(s->p, s->size, s->seed);
    CHECKF(bad == (size_t)-1, "%s: object %p of %zu bytes corrupt at byte %zu", when,
           (void *)s->p, s->size, bad);
}

int main(int argc, char **argv) {
    test_init(200);
    long ops = argc > 1 ? atol(argv[1]) : 1000000;
    rng_t r = {argc > 2 ? strtoull(argv[2], NULL, 0) : 12345};
    size_t base = allocated_now();
    long counts[4] = {0};
    uint64_t next_seed = 1;
    size_t live_bytes = 0, peak = 0;

    for (long op = 0; op < ops; op++) {
        struct slot *s = &slots[rng_below(&r, SLOTS)];
        unsigned kind = (unsigned)rng_below(&r, 4);
        if (s->p == NULL) {
            /* An empty slot: allocate (malloc, calloc or realloc(NULL, n)). */
            size_t n = pick_size(&r);
            unsigned char *p;
            if (kind == 0) {
                p = calloc(1, n);
                CHECK(p);
                for (size_t i = 0; i < n; i += (n > 65536 ? 4093 : 1))
                    CHECKF(p[i] == 0, "calloc(%zu) byte %zu not zero", n, i);
            } else if (kind == 1) {
                p = realloc(NULL, n);
            } else {
                p = malloc(n);
            }
            CHECKF(p != NULL, "allocating %zu", n);
            CHECK(malloc_usable_size(p) >= n);
            CHECK(((uintptr_t)p & (n <= 8 ? 7 : 15)) == 0);
            s->p = p;
            s->size = n;
            s->seed = next_seed++;
            fill_sparse(p, n, s->seed);
            live_bytes += n;
            counts[kind == 0 ? 1 : 0]++;
        } else if (kind == 0) {
            /* realloc to a new size: the common prefix survives. */
            check_slot(s, "before realloc");
            size_t n = pick_size(&r);
            unsigned char *p = realloc(s->p, n);
            if (n == 0) {
                CHECK(p == NULL); /* glibc: realloc(p, 0) frees */
                live_bytes -= s->size;
                s->p = NULL;
                counts[3]++;
                continue;
            }
            CHECKF(p != NULL, "realloc %zu -> %zu", s->size, n);
            size_t keep = s->size < n ? s->size : n;
            size_t bad = verify_prefix(p, keep, s->size, s->seed);
            CHECKF(bad == (size_t)-1, "realloc %zu -> %zu lost data at %zu", s->size, n, bad);
            live_bytes = live_bytes - s->size + n;
            s->p = p;
            s->size = n;
            s->seed = next_seed++;
            fill_sparse(p, n, s->seed);
            counts[2]++;
        } else {
            check_slot(s, "before free");
            free(s->p);
            live_bytes -= s->size;
            s->p = NULL;
            counts[3]++;
        }
        if (live_bytes > peak) peak = live_bytes;
    }
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].p) {
            check_slot(&slots[i], "at the end");
            free(slots[i].p);
        }
    }
    size_t end = allocated_now();
    CHECKF(end == base, "allocated %zu before, %zu after freeing everything", base, end);
    printf("stress ok ops=%ld malloc=%ld calloc=%ld realloc=%ld free=%ld peak=%zu mode=%s\n",
           ops, counts[0], counts[1], counts[2], counts[3], peak, shim_mode());
    return 0;
}
