/* Every exported C function of librseqmalloc with its glibc edge cases, and the rseqmalloc_*
 * API through include/rseqmalloc.h (this file is linked against the library as well as run
 * with it preloaded, so it also proves the header matches the library).
 *
 * usage: api <expected rseq mode>     prints "api ok mode=<mode>", then calls malloc_stats(). */
#include "common.h"
#include "rseqmalloc.h"

#include <malloc.h>
#include <stdalign.h>
#include <stddef.h>

/* C23, not declared by glibc 2.36's headers. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

_Static_assert(sizeof(struct rseqmalloc_stats) == 104, "rseqmalloc_stats layout");
_Static_assert(offsetof(struct rseqmalloc_stats, batch_restarts) == 96, "rseqmalloc_stats layout");
_Static_assert(offsetof(struct rseqmalloc_stats, rseq_mode) == 56, "rseqmalloc_stats layout");
_Static_assert(offsetof(struct rseqmalloc_stats, restarts) == 64, "rseqmalloc_stats layout");
_Static_assert(offsetof(struct rseqmalloc_stats, slabs_in_use) == 88, "rseqmalloc_stats layout");

static const size_t PAGE = 4096;

static size_t allocated_now(void) {
    struct rseqmalloc_stats s;
    CHECK(rseqmalloc_stats(&s, sizeof s) == sizeof s);
    return s.allocated;
}

/* Writes every usable byte of p, checks the requested size is covered and the alignment. */
static void use(void *p, size_t size, size_t align) { CHECK_AND_WRITE_BLOCK(p, size, align); }

static void test_malloc_zero_and_free_null(void) {
    enum { N = 1000 };
    static void *ptrs[N];
    check_malloc_zero_unique(ptrs, N);
    free_sized(NULL, 0);
    free_aligned_sized(NULL, 64, 0);
    CHECK(malloc_usable_size(NULL) == 0);
    CHECK(rseqmalloc_usable_size(NULL) == 0);
    void *c0 = calloc(opaque(0), 8), *c1 = calloc(8, opaque(0));
    CHECK(c0 && c1 && c0 != c1);
    free(c0);
    free(c1);
}

static void test_realloc(void) {
    /* realloc(NULL, n) is malloc(n); realloc(NULL, 0) a unique pointer. */
    char *p = realloc(NULL, opaque(100));
    use(p, 100, 16);
    void *z = realloc(NULL, opaque(0));
    CHECK(z != NULL && z != p);
    free(z);
    free(p);

    /* realloc(p, 0) frees p and returns NULL (glibc). */
    size_t base = allocated_now();
    p = malloc(opaque(3000));
    CHECK(p);
    CHECK(allocated_now() >= base + 3000);
    CHECK(realloc(p, opaque(0)) == NULL);
    CHECKF(allocated_now() == base, "realloc(p, 0) did not free p: %zu -> %zu", base,
           allocated_now());

    /* Contents survive every kind of move: small, large (pages), huge (mapped) and back. */
    size_t chain[] = {1, 24, 100, 1000, 5000, 40000, 300000, 3 << 20, 40 << 20,
                      200, 70000, 70001, 64 << 20, 2 << 20, 8, 0};
    size_t n = 0;
    p = NULL;
    for (size_t i = 0; i < sizeof chain / sizeof *chain; i++) {
        size_t m = chain[i];
        char *q = realloc(p, opaque(m));
        if (m == 0) {
            CHECK(q == NULL);
            break;
        }
        CHECKF(q != NULL, "realloc to %zu", m);
        size_t keep = n < m ? n : m;
        size_t bad = verify(q, keep, 77 + n);
        CHECKF(bad == (size_t)-1, "realloc %zu -> %zu lost byte %zu", n, m, bad);
        CHECK(malloc_usable_size(q) >= m);
        fill(q, m, 77 + m);
        p = q;
        n = m;
    }

    /* Failure leaves the block untouched, with ENOMEM. */
    size_t olds[] = {100, 200000, 8 << 20, 20 << 20};
    for (size_t i = 0; i < sizeof olds / sizeof *olds; i++) {
        char *o = malloc(olds[i]);
        CHECK(o);
        fill(o, olds[i], 9);
        size_t impossible[] = {SIZE_MAX, SIZE_MAX / 2, (size_t)PTRDIFF_MAX, (size_t)1 << 62};
        for (size_t k = 0; k < sizeof impossible / sizeof *impossible; k++) {
            errno = 0;
            CHECKF(realloc(o, opaque(impossible[k])) == NULL, "realloc(%zu bytes, %zu)", olds[i],
                   impossible[k]);
            CHECK(errno == ENOMEM);
            CHECK(verify(o, olds[i], 9) == (size_t)-1);
        }
        errno = 0;
        CHECK(reallocarray(o, opaque(SIZE_MAX / 2), 3) == NULL);
        CHECK(errno == ENOMEM);
        CHECK(verify(o, olds[i], 9) == (size_t)-1);
        free(o);
    }

    /* reallocarray grows like realloc, and frees with a zero product. */
    int *a = reallocarray(NULL, opaque(10), sizeof(int));
    CHECK(a);
    for (int i = 0; i < 10; i++) a[i] = i;
    a = reallocarray(a, opaque(100000), sizeof(int));
    CHECK(a);
    for (int i = 0; i < 10; i++) CHECK(a[i] == i);
    base = allocated_now();
    CHECK(reallocarray(a, opaque(0), sizeof(int)) == NULL);
    CHECK(allocated_now() < base);
}

static void test_enomem(void) {
    size_t impossible[] = {SIZE_MAX, SIZE_MAX - 4095, SIZE_MAX / 2, (size_t)PTRDIFF_MAX,
                           (size_t)1 << 62};
    for (size_t i = 0; i < sizeof impossible / sizeof *impossible; i++) {
        size_t n = opaque(impossible[i]);
        errno = 0;
        CHECKF(malloc(n) == NULL && errno == ENOMEM, "malloc(%zu)", n);
        errno = 0;
        CHECKF(calloc(1, n) == NULL && errno == ENOMEM, "calloc(1, %zu)", n);
        errno = 0;
        CHECKF(aligned_alloc(64, n) == NULL && errno == ENOMEM, "aligned_alloc(64, %zu)", n);
        errno = 0;
        CHECKF(aligned_alloc(1 << 21, n) == NULL && errno == ENOMEM, "aligned_alloc(2M, %zu)", n);
        errno = 0;
        CHECKF(memalign(4096, n) == NULL && errno == ENOMEM, "memalign(4096, %zu)", n);
        errno = 0;
        CHECKF(valloc(n) == NULL && errno == ENOMEM, "valloc(%zu)", n);
        errno = 0;
        CHECKF(pvalloc(n) == NULL && errno == ENOMEM, "pvalloc(%zu)", n);
        errno = 0;
        CHECKF(reallocarray(NULL, n, 1) == NULL && errno == ENOMEM, "reallocarray(%zu)", n);
        errno = 0;
        CHECKF(realloc(NULL, n) == NULL && errno == ENOMEM, "realloc(NULL, %zu)", n);
    }
    /* Overflowing products. */
    size_t pairs[][2] = {{SIZE_MAX / 2, 3}, {(size_t)1 << 33, (size_t)1 << 33}, {SIZE_MAX, 2},
                         {3, SIZE_MAX / 2}};
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        errno = 0;
        CHECK(calloc(opaque(pairs[i][0]), pairs[i][1]) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(reallocarray(NULL, opaque(pairs[i][0]), pairs[i][1]) == NULL && errno == ENOMEM);
    }
    /* posix_memalign reports ENOMEM by its return value and, as glibc does, in errno; *memptr
     * is left alone. (Called through a pointer: GCC assumes the builtin never sets errno and
     * would fold the check away.) */
    int (*volatile pm)(void **, size_t, size_t) = posix_memalign;
    void *sentinel = (void *)0x1234, *p = sentinel;
    errno = 777;
    CHECK(pm(&p, 64, opaque(SIZE_MAX)) == ENOMEM);
    CHECK(p == sentinel && errno == ENOMEM);
}

static void test_posix_memalign(void) {
    size_t bad[] = {0, 1, 2, 4, 12, 24, 40, 48, 3, 3 * sizeof(void *), 4097, SIZE_MAX,
                    ((size_t)1 << 63) + 8};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *sentinel = (void *)0x4321, *p = sentinel;
        errno = 555;
        int r = posix_memalign(&p, opaque(bad[i]), 100);
        CHECKF(r == EINVAL, "posix_memalign(align %zu) returned %d", bad[i], r);
        CHECK(p == sentinel && errno == 555);
    }
    for (size_t align = sizeof(void *); align <= ((size_t)4 << 20); align *= 2) {
        size_t sizes[] = {0, 1, align / 2 + 1, align, align + 1, 3 * align / 2, 100000};
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            void *p = NULL;
            errno = 999;
            int r = posix_memalign(&p, opaque(align), sizes[k]);
            CHECKF(r == 0, "posix_memalign(%zu, %zu) = %d", align, sizes[k], r);
            CHECK(errno == 999);
            use(p, sizes[k], align);
            free(p);
        }
    }
}

static void test_aligned_alloc_and_memalign(void) {
    /* Every power of two from 1 to 4 MiB, sizes around it. Objects up to 70000 bytes stay
     * alive until the end, to catch overlaps between differently aligned objects. */
    struct {
        void *p;
        size_t size;
        uint64_t seed;
    } live[512];
    size_t nlive = 0;
    for (size_t align = 1; align <= ((size_t)4 << 20); align *= 2) {
        size_t sizes[] = {0, 1, align, align + 1, 3 * align / 2 + 7, 70000};
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            size_t sz = sizes[k];
            for (int which = 0; which < 2; which++) {
                void *p = which ? memalign(opaque(align), sz) : aligned_alloc(opaque(align), sz);
                use(p, sz, align);
                uint64_t seed = align * 64 + k * 2 + (uint64_t)which;
                fill(p, sz, seed);
                if (sz <= 70000) {
                    CHECK(nlive < sizeof live / sizeof *live);
                    live[nlive].p = p;
                    live[nlive].size = sz;
                    live[nlive].seed = seed;
                    nlive++;
                } else {
                    CHECK(verify(p, sz, seed) == (size_t)-1);
                    free(p);
                }
            }
        }
    }
    for (size_t i = 0; i < nlive; i++) {
        CHECKF(verify(live[i].p, live[i].size, live[i].seed) == (size_t)-1, "object %zu", i);
        free(live[i].p);
    }
    /* aligned_alloc: an alignment that is not a power of two is EINVAL. */
    size_t bad[] = {0, 3, 24, 48, 1000, 4097, SIZE_MAX};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        errno = 0;
        CHECKF(aligned_alloc(opaque(bad[k]), 64) == NULL && errno == EINVAL,
               "aligned_alloc(%zu, 64)", bad[k]);
    }
    /* memalign (glibc): rounds a non-power-of-two up, 0 is malloc, above SIZE_MAX/2+1 EINVAL. */
    struct {
        size_t asked, expect;
    } round[] = {{0, 8}, {3, 8}, {24, 32}, {48, 64}, {1000, 1024}, {3000, 4096},
                 {4097, 8192}, {(3u << 20), (4u << 20)}};
    for (size_t k = 0; k < sizeof round / sizeof *round; k++) {
        void *m = memalign(opaque(round[k].asked), 100);
        use(m, 100, round[k].expect);
        free(m);
    }
    errno = 0;
    CHECK(memalign(opaque(SIZE_MAX / 2 + 2), 16) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(memalign(opaque(SIZE_MAX), 16) == NULL && errno == EINVAL);
}

static void test_valloc_pvalloc(void) {
    size_t sizes[] = {0, 1, 100, PAGE - 1, PAGE, PAGE + 1, 5 * PAGE + 3, 1 << 20, 5 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t sz = sizes[k];
        void *v = valloc(opaque(sz));
        use(v, sz, PAGE);
        void *pv = pvalloc(opaque(sz));
        size_t rounded = sz == 0 ? PAGE : (sz + PAGE - 1) / PAGE * PAGE;
        use(pv, rounded, PAGE);
        free(v);
        free(pv);
    }
}

static void test_usable_size(void) {
    enum { N = 512 };
    static char *p[N];
    static size_t req[N];
    rng_t r = {42};
    for (int i = 0; i < N; i++) {
        int bits = (int)rng_below(&r, 18);
        req[i] = rng_below(&r, (size_t)1 << bits) + (i < 300 ? (size_t)i : 0);
        p[i] = malloc(opaque(req[i]));
        CHECK(p[i]);
        size_t u = malloc_usable_size(p[i]);
        CHECKF(u >= req[i], "usable %zu < %zu", u, req[i]);
        CHECK(rseqmalloc_usable_size(p[i]) == u);
        fill(p[i], u, (uint64_t)i);
    }
    /* Writing the whole usable size of every object disturbed none of the others. */
    for (int i = 0; i < N; i++) {
        size_t u = malloc_usable_size(p[i]);
        CHECKF(verify(p[i], u, (uint64_t)i) == (size_t)-1, "object %d (%zu/%zu bytes)", i, req[i],
               u);
        free(p[i]);
    }
    size_t big[] = {(size_t)1 << 20, (size_t)33 << 20};
    for (size_t k = 0; k < 2; k++) {
        char *b = malloc(opaque(big[k]));
        CHECK(b && malloc_usable_size(b) >= big[k]);
        memset(b, 1, malloc_usable_size(b));
        free(b);
    }
}

/* calloc returns zeroed memory even when it recycles dirty blocks. Dirty a batch of blocks,
 * free them, calloc the same number and check every byte; count how many calloc results are
 * recycled blocks, so the test cannot pass vacuously whatever order the allocator reuses in. */
static void test_calloc_reuse(void) {
    size_t sizes[] = {1, 16, 100, 1000, 8000, 40000, 300000, 3 << 20, 20 << 20};
    enum { N = 64 };
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        int count = n >= (1 << 20) ? 4 : N;
        unsigned long reused = 0, total = 0;
        for (int round = 0; round < 4; round++) {
            size_t dirty[N];
            unsigned char *c[N];
            for (int i = 0; i < count; i++) {
                unsigned char *d = malloc(opaque(n));
                CHECK(d);
                memset(d, 0xa5, malloc_usable_size(d));
                dirty[i] = opaque((size_t)d); /* integers: GCC folds malloc == malloc */
            }
            for (int i = 0; i < count; i++) free((void *)dirty[i]);
            for (int i = 0; i < count; i++) {
                c[i] = calloc(1, opaque(n));
                CHECK(c[i]);
                for (size_t j = 0; j < n; j++)
                    CHECKF(c[i][j] == 0, "calloc(%zu) byte %zu = %#x", n, j, c[i][j]);
                size_t cv = opaque((size_t)c[i]);
                for (int j = 0; j < count; j++) reused += cv == dirty[j];
                total++;
            }
            for (int i = 0; i < count; i++) free(c[i]);
        }
        CHECKF(reused * 2 >= total, "calloc(%zu): only %lu of %lu results were recycled blocks",
               n, reused, total);
    }
}

static void test_trim(void) {
    enum { N = 96 };
    static char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(opaque(1 << 20));
        CHECK(p[i]);
        memset(p[i], i, 1 << 20);
    }
    size_t before = rss_bytes();
    for (int i = 0; i < N; i++) free(p[i]);
    CHECK(malloc_trim(0) == 1);
    size_t after = rss_bytes();
    CHECKF(after + (48u << 20) < before, "malloc_trim released too little: rss %zu -> %zu",
           before, after);
    /* Nothing left to give back right after a trim (rss_bytes' stdio buffers above may have
     * left a little). */
    malloc_trim(0);
    CHECK(malloc_trim(0) == 0);
    CHECK(rseqmalloc_trim() == 0);
    /* Small objects freed sit in caches and spans until a trim, which then reports them. */
    enum { M = 4096 };
    static char *s[M];
    for (int i = 0; i < M; i++) {
        s[i] = malloc(opaque(512));
        CHECK(s[i]);
        memset(s[i], i, 512);
    }
    for (int i = 0; i < M; i++) free(s[i]);
    CHECK(malloc_trim(0) == 1);
    /* The freed memory is usable again; a large object under the dirty bound stays resident
     * after its free until a trim (or the decay period). */
    char *q = malloc(opaque(2 << 20));
    CHECK(q);
    memset(q, 3, 2 << 20);
    free(q);
    CHECK(rseqmalloc_trim() >= (2 << 20));
}

static void test_mallinfo2(void) {
    struct mallinfo2 a = mallinfo2();
    CHECK(a.arena >= a.uordblks);
    CHECK(a.uordblks + a.fordblks == a.arena);
    char *p = malloc(opaque(10 << 20));
    CHECK(p);
    memset(p, 1, 10 << 20);
    struct mallinfo2 b = mallinfo2();
    CHECKF(b.uordblks >= a.uordblks + (10 << 20), "uordblks %zu -> %zu", a.uordblks, b.uordblks);
    CHECK(b.arena >= b.uordblks);
    CHECK(b.uordblks + b.fordblks == b.arena);
    free(p);
    struct mallinfo2 c = mallinfo2();
    CHECKF(c.uordblks == a.uordblks, "uordblks %zu -> %zu after free", a.uordblks, c.uordblks);
    CHECK(c.usmblks == 0 && c.hblks == 0 && c.smblks == 0);
}

static void test_free_sized(void) {
    size_t base = allocated_now();
    void *p = malloc(opaque(100));
    void *q = aligned_alloc(256, opaque(1000));
    void *r = malloc(opaque(1 << 20));
    CHECK(p && q && r);
    free_sized(p, 100);
    free_aligned_sized(q, 256, 1000);
    free_sized(r, 1 << 20);
    CHECK(allocated_now() == base);
}

static void test_own_api(const char *expect_mode) {
    static const char *names[] = {"uninitialized", "glibc", "own", "fallback"};
    CHECK(rseqmalloc_stats(NULL, 0) == sizeof(struct rseqmalloc_stats));
    void *hold = malloc(opaque(5000));
    CHECK(hold);
    struct rseqmalloc_stats s;
    memset(&s, 0xff, sizeof s);
    CHECK(rseqmalloc_stats(&s, sizeof s) == sizeof s);
    CHECK(s.rseq_mode >= 0 && s.rseq_mode <= 3);
    const char *mode = rseqmalloc_rseq_mode();
    CHECKF(strcmp(mode, names[s.rseq_mode]) == 0, "mode string %s, stats %d", mode, s.rseq_mode);
    CHECKF(strcmp(mode, expect_mode) == 0, "rseq mode %s, expected %s", mode, expect_mode);
    CHECKF(s.allocated >= 5000 && s.allocated <= s.mapped, "allocated %zu mapped %zu",
           s.allocated, s.mapped);
    CHECK(s.active <= s.mapped);
    CHECK(s.released <= s.free && s.free <= s.mapped);
    CHECK(s.resident > 0 && s.metadata > 0);
    CHECK(s.uses_mm_cid == 0 || s.uses_mm_cid == 1);
    CHECK(s.slabs >= 1 && s.slabs_in_use <= s.slabs);
    if (s.rseq_mode == RSEQMALLOC_MODE_FALLBACK) {
        CHECK(s.fallback_ops > 0);
    } else {
        CHECK(s.fallback_ops == 0 && s.slabs_in_use >= 1);
    }
    /* An older caller's smaller struct: only its prefix is written. */
    unsigned char buf[sizeof s + 16];
    memset(buf, 0xee, sizeof buf);
    CHECK(rseqmalloc_stats((struct rseqmalloc_stats *)(void *)buf, 16) == 16);
    for (size_t i = 16; i < sizeof buf; i++) CHECK(buf[i] == 0xee);
    /* A newer caller's bigger struct: the library says how much it filled. */
    memset(buf, 0xee, sizeof buf);
    CHECK(rseqmalloc_stats((struct rseqmalloc_stats *)(void *)buf, sizeof buf) == sizeof s);
    for (size_t i = sizeof s; i < sizeof buf; i++) CHECK(buf[i] == 0xee);
    free(hold);
}

/* dlsym finds our functions, and dlerror's message (malloc'ed inside libc) is fine. */
static void test_dlsym(void) {
    const char *names[] = {"malloc", "free", "calloc", "realloc", "reallocarray",
                           "posix_memalign", "aligned_alloc", "memalign", "valloc", "pvalloc",
                           "malloc_usable_size", "free_sized", "free_aligned_sized",
                           "malloc_trim", "mallinfo2", "malloc_stats", "rseqmalloc_stats",
                           "rseqmalloc_usable_size", "rseqmalloc_trim"};
    Dl_info ours;
    CHECK(dladdr((void *)rseqmalloc_rseq_mode, &ours));
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        void *f = dlsym(RTLD_DEFAULT, names[i]);
        Dl_info info;
        CHECKF(f && dladdr(f, &info), "%s", names[i]);
        CHECKF(strcmp(info.dli_fname, ours.dli_fname) == 0, "%s comes from %s", names[i],
               info.dli_fname);
    }
    CHECK((void *)&malloc == dlsym(RTLD_DEFAULT, "malloc"));
    void *(*m)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "malloc");
    void (*f)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "free");
    char *p = m(100);
    CHECK(p && malloc_usable_size(p) >= 100);
    f(p);
    for (int i = 0; i < 100; i++) {
        CHECK(dlsym(RTLD_DEFAULT, "no_such_symbol_rseqmalloc") == NULL);
        const char *e = dlerror();
        CHECK(e && strstr(e, "no_such_symbol_rseqmalloc"));
    }
}

int main(int argc, char **argv) {
    test_init(120);
    CHECK(argc == 2);
    test_malloc_zero_and_free_null();
    check_free_keeps_errno();
    test_realloc();
    test_enomem();
    test_posix_memalign();
    test_aligned_alloc_and_memalign();
    test_valloc_pvalloc();
    test_usable_size();
    test_calloc_reuse();
    test_trim();
    test_mallinfo2();
    test_free_sized();
    test_own_api(argv[1]);
    test_dlsym();
    printf("api ok mode=%s\n", rseqmalloc_rseq_mode());
    fflush(stdout);
    size_t before = allocated_now();
    malloc_stats();
    CHECK(allocated_now() == before);
    return 0;
}
