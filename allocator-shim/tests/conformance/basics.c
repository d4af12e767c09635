/* The C library's documented malloc behaviours (glibc manual, malloc(3), posix_memalign(3),
 * reallocarray(3), malloc_usable_size(3)), checked in the program, plus a transcript of every
 * edge-case result (return value, errno) that the harness compares with glibc's on this
 * machine (the same program run without LD_PRELOAD):
 *   "= <call>: <result>"   compared with glibc's line for line;
 *   "~ <note>"             informational (where rseqmalloc differs on purpose), not compared.
 *
 * Checked in the program (any allocator):
 *  - malloc(0) is a unique non-null pointer that free accepts; free(NULL) does nothing;
 *  - free keeps errno (POSIX.1-2024; glibc since 2.33), for small, large and huge blocks;
 *  - realloc(NULL, n) allocates; realloc(p, 0) frees p and returns NULL (glibc); a failed
 *    realloc leaves the block untouched;
 *  - calloc zeroes, fresh memory and reused memory (blocks filled with 0xff, freed, and the
 *    same sizes calloc'ed again), small, large and huge;
 *  - alignment: 16 bytes for every malloc/calloc/realloc result of more than 8 bytes (at least
 *    8 for smaller ones; whether those are 16-aligned as glibc's is in the transcript), the requested alignment for aligned_alloc, memalign, posix_memalign,
 *    the page for valloc/pvalloc, at every alignment from 8 B to 4 MiB;
 *  - malloc_usable_size(p) >= the request, every usable byte writable without touching
 *    another block; pvalloc's usable size covers the request rounded up to pages (glibc gives
 *    pvalloc(0) a minimal block);
 *  - reallocarray: the product, or NULL + ENOMEM on overflow with the block untouched;
 *  - blocks allocated in one thread freed and realloc'ed in another.
 *
 * usage: basics     prints the transcript, then "basics done mode=<mode>" */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

static const size_t PAGE = 4096;

static const char *err_name(int e) {
    switch (e) {
    case 0: return "0";
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    default: return "other";
    }
}

/* "= call: ok|NULL errno" for a pointer-returning call made with errno set to 0 before. */
static void said(const char *call, void *p, int err) {
    if (p) conf_say("= %s: ok\n", call);
    else conf_say("= %s: NULL %s\n", call, err_name(err));
}

static size_t min_align(size_t size) { return size <= 8 ? 8 : 16; }

static void use(void *p, size_t size, size_t align) { CHECK_AND_WRITE_BLOCK(p, size, align); }

static void test_malloc_zero_and_free_null(void) {
    enum { N = 200 };
    void *p[N];
    check_malloc_zero_unique(p, N);
    conf_say("= malloc(0) x 200: unique, non-null\n");
}

static void test_free_keeps_errno(void) {
    check_free_keeps_errno();
    size_t sizes[] = {1, 16, 1000, 100000, (size_t)1 << 20, (size_t)64 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char *p = malloc(opaque(sizes[i]));
        CHECK(p);
        errno = ENOMEM;
        conf_free_sized(p, sizes[i]);
        CHECKF(errno == ENOMEM, "free_sized(%zu) set errno to %d", sizes[i], errno);
    }
    errno = 77;
    free(NULL);
    CHECK(errno == 77);
    conf_say("= free keeps errno\n");
}

static size_t in_use(void) { return mallinfo2().uordblks; }

static void test_realloc(void) {
    char *p = realloc(NULL, opaque(100));
    use(p, 100, 16);
    free(p);
    p = realloc(NULL, opaque(0));
    CHECK(p);
    free(p);

    /* realloc(p, 0) frees p and returns NULL (glibc): the bytes in use go back. */
    p = malloc(opaque(50)); /* set-up allocations settle before the measurement */
    free(p);
    size_t base = in_use();
    p = malloc(opaque(3000));
    CHECK(p);
    CHECK(in_use() >= base + 3000);
    errno = 0;
    void *q = realloc(p, opaque(0));
    said("realloc(3000-byte block, 0)", q, errno);
    CHECKF(in_use() == base, "realloc(p, 0) did not free p: %zu -> %zu", base, in_use());

    /* A failed realloc leaves the block as it was. */
    size_t olds[] = {100, 200000, (size_t)8 << 20};
    for (size_t i = 0; i < sizeof olds / sizeof *olds; i++) {
        char *o = malloc(olds[i]);
        CHECK(o);
        fill(o, olds[i], 5);
        errno = 0;
        q = realloc(o, opaque(SIZE_MAX - 4096));
        char call[80];
        snprintf(call, sizeof call, "realloc(%zu-byte block, SIZE_MAX - 4096)", olds[i]);
        said(call, q, errno);
        CHECK(q == NULL);
        CHECK(verify(o, olds[i], 5) == (size_t)-1);
        free(o);
    }
}

static void test_calloc_zeroes(void) {
    size_t sizes[] = {1, 8, 16, 24, 100, 1000, 4096, 5000, 70000, 300000, (size_t)2 << 20,
                      (size_t)20 << 20};
    enum { N = 16 };
    for (int round = 0; round < 3; round++) {
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            size_t size = sizes[s];
            int n = size > 100000 ? 2 : N;
            void *p[N];
            for (int i = 0; i < n; i++) {
                p[i] = malloc(size);
                CHECK(p[i]);
                memset(p[i], 0xff, malloc_usable_size(p[i]));
            }
            for (int i = 0; i < n; i++) free(p[i]);
            for (int i = 0; i < n; i++) {
                /* Alternate the split between count and size. */
                unsigned char *c = i % 2 ? calloc(size, 1) : calloc(1, size);
                CHECK(c);
                for (size_t b = 0; b < size; b++)
                    CHECKF(c[b] == 0, "calloc(%zu) byte %zu is %#x (round %d)", size, b, c[b],
                           round);
                p[i] = c;
            }
            for (int i = 0; i < n; i++) free(p[i]);
        }
    }
    errno = 0;
    void *p = calloc(opaque(SIZE_MAX / 2), 3);
    said("calloc(SIZE_MAX / 2, 3)", p, errno);
    errno = 0;
    p = calloc(opaque((size_t)1 << 32), (size_t)1 << 32);
    said("calloc(2^32, 2^32)", p, errno);
    p = calloc(0, 0);
    said("calloc(0, 0)", p, errno);
    free(p);
}

static void test_alignment_and_usable_size(void) {
    /* Every size up to 4 KiB, then a sparse set up to 64 MiB, through malloc, calloc and
     * realloc; several blocks live at once so writing the usable size is checked against
     * neighbours by their contents. */
    enum { LIVE = 8 };
    void *live[LIVE] = {0};
    size_t live_size[LIVE] = {0};
    for (size_t size = 1; size <= ((size_t)64 << 20); size = size < 4096 ? size + 1 : size * 3 / 2) {
        int k = (int)(size % LIVE);
        if (live[k]) {
            CHECKF(verify(live[k], live_size[k], live_size[k]) == (size_t)-1,
                   "block of %zu bytes changed", live_size[k]);
            free(live[k]);
        }
        void *p;
        switch (size % 3) {
        case 0: p = malloc(size); break;
        case 1: p = calloc(1, size); break;
        default:
            p = realloc(malloc(1), size);
            break;
        }
        use(p, size, min_align(size));
        fill(p, size, size);
        live[k] = p;
        live_size[k] = size;
    }
    for (int k = 0; k < LIVE; k++) free(live[k]);

    /* glibc aligns every block to 16, even the smallest (C only asks 8 of those). */
    enum { TINY = 512 };
    void *tiny[TINY];
    int only8 = 0;
    for (int i = 0; i < TINY; i++) {
        tiny[i] = malloc(opaque((size_t)(i % 9)));
        CHECK(tiny[i]);
        if ((uintptr_t)tiny[i] & 15) only8++;
    }
    for (int i = 0; i < TINY; i++) free(tiny[i]);
    conf_say("= malloc(0..8) x 512: %s\n", only8 ? "some only 8-aligned" : "all 16-aligned");
}

static void test_aligned_entry_points(void) {
    for (size_t al = 1; al <= ((size_t)4 << 20); al *= 2) {
        size_t sizes[] = {0, 1, al > 1 ? al - 1 : 1, al, al + 1, 3 * al};
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            size_t size = sizes[s];
            void *p = aligned_alloc(al, size);
            use(p, size, al);
            free(p);
            p = memalign(al, size);
            use(p, size, al);
            free(p);
            if (al >= sizeof(void *)) {
                p = NULL;
                CHECK(posix_memalign(&p, al, size) == 0);
                use(p, size, al);
                free(p);
            }
        }
    }
    size_t vsizes[] = {0, 1, 100, PAGE - 1, PAGE, PAGE + 1, 100000, (size_t)5 << 20};
    for (size_t s = 0; s < sizeof vsizes / sizeof *vsizes; s++) {
        size_t size = vsizes[s];
        void *p = valloc(size);
        use(p, size, PAGE);
        free(p);
        p = pvalloc(size);
        size_t rounded = (size + PAGE - 1) / PAGE * PAGE; /* glibc: pvalloc(0) is tiny */
        use(p, rounded, PAGE);
        free(p);
    }
    conf_say("= aligned entry points: alignments 1 B .. 4 MiB ok\n");

    /* Bad alignments and impossible sizes: the transcript. */
    size_t bad_pm[] = {0, 1, 2, 4, 12, 24, 48, 4097, SIZE_MAX / 2 + 1, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad_pm / sizeof *bad_pm; i++) {
        void *p = (void *)0x1234;
        int rc = posix_memalign(&p, bad_pm[i], 100);
        conf_say("= posix_memalign(align %zu, 100): %s, *memptr %s\n", bad_pm[i],
                 rc == 0 ? "0" : err_name(rc),
                 p == (void *)0x1234 ? "untouched" : "set");
        if (rc == 0) free(p);
    }
    size_t bad_ma[] = {0, 3, 24, 4097, SIZE_MAX / 2 + 1, SIZE_MAX / 2 + 2, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad_ma / sizeof *bad_ma; i++) {
        char call[80];
        errno = 0;
        void *p = memalign(bad_ma[i], 100);
        snprintf(call, sizeof call, "memalign(align %zu, 100)", bad_ma[i]);
        said(call, p, errno);
        if (p) CHECK(((uintptr_t)p & 15) == 0);
        free(p);
    }
    /* aligned_alloc with an alignment that is not a power of two: glibc 2.36 treats it as
     * memalign (rounds up); glibc 2.38 and C17 make it EINVAL. Informational (item 6 decides
     * whether rseqmalloc follows this machine's glibc). */
    size_t odd[] = {3, 24, 4097};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        errno = 0;
        void *p = aligned_alloc(odd[i], 100);
        int e = errno;
        conf_say("~ aligned_alloc(align %zu, 100): %s\n", odd[i], p ? "ok" : err_name(e));
        free(p);
    }
    errno = 0;
    void *p = valloc(opaque(SIZE_MAX));
    said("valloc(SIZE_MAX)", p, errno);
    errno = 0;
    p = pvalloc(opaque(SIZE_MAX));
    said("pvalloc(SIZE_MAX)", p, errno);
    errno = 0;
    p = pvalloc(opaque(SIZE_MAX - PAGE + 2));
    said("pvalloc(SIZE_MAX - 4094)", p, errno);
    errno = 0;
    p = malloc(opaque(SIZE_MAX));
    said("malloc(SIZE_MAX)", p, errno);
    errno = 0;
    p = malloc(opaque((size_t)PTRDIFF_MAX + 1));
    said("malloc(PTRDIFF_MAX + 1)", p, errno);
    errno = 0;
    p = aligned_alloc(64, opaque(SIZE_MAX - 64));
    said("aligned_alloc(64, SIZE_MAX - 64)", p, errno);
}

static void test_reallocarray(void) {
    char *p = reallocarray(NULL, 10, 10);
    use(p, 100, 16);
    fill(p, 100, 3);
    char *q = reallocarray(p, 100, 100);
    use(q, 10000, 16);
    p = q;
    fill(p, 10000, 4);
    errno = 0;
    q = reallocarray(p, opaque(SIZE_MAX / 2), 3);
    said("reallocarray(block, SIZE_MAX / 2, 3)", q, errno);
    CHECK(q == NULL && verify(p, 10000, 4) == (size_t)-1);
    errno = 0;
    q = reallocarray(p, opaque((size_t)1 << 33), (size_t)1 << 33);
    said("reallocarray(block, 2^33, 2^33)", q, errno);
    CHECK(q == NULL && verify(p, 10000, 4) == (size_t)-1);
    free(p);
}

/* Blocks made in one thread, freed and realloc'ed in another. */
enum { HAND = 2000 };
static void *handed[HAND];

static void *taker(void *arg) {
    (void)arg;
    for (int i = 0; i < HAND; i++) {
        size_t size = 1 + (size_t)i * 37 % 5000;
        CHECK(verify(handed[i], size, (uint64_t)i) == (size_t)-1);
        if (i % 2) {
            free(handed[i]);
        } else {
            char *q = realloc(handed[i], size * 2);
            CHECK(q && verify(q, size, (uint64_t)i) == (size_t)-1);
            free(q);
        }
    }
    return NULL;
}

static void test_threads(void) {
    for (int i = 0; i < HAND; i++) {
        size_t size = 1 + (size_t)i * 37 % 5000;
        handed[i] = malloc(size);
        CHECK(handed[i]);
        fill(handed[i], size, (uint64_t)i);
    }
    pthread_t t;
    CHECK(pthread_create(&t, NULL, taker, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    conf_say("= blocks freed by another thread\n");
}

int main(void) {
    conf_init("basics", 60);
    conf_name_step_on_abort();
    conf_step("malloc(0), free(NULL)");
    test_malloc_zero_and_free_null();
    conf_step("free keeps errno");
    test_free_keeps_errno();
    conf_step("realloc");
    test_realloc();
    conf_step("calloc");
    test_calloc_zeroes();
    conf_step("alignment and usable size");
    test_alignment_and_usable_size();
    conf_step("aligned entry points");
    test_aligned_entry_points();
    conf_step("reallocarray");
    test_reallocarray();
    conf_step("threads");
    test_threads();
    conf_say("basics done mode=%s\n", conf_mode());
    return 0;
}
