/* Helpers shared by the shim's C tests (run by tests/shim.rs under LD_PRELOAD).
 *
 * CHECK aborts with file:line and the failed expression; the harness reports stderr. Every
 * program calls test_init() first: it arms a watchdog (alarm) so a hang becomes a SIGALRM
 * failure instead of a stuck test run, and checks that librseqmalloc is really the allocator. */
#ifndef SHIM_TEST_COMMON_H
#define SHIM_TEST_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

#define CHECKF(cond, ...)                                                                      \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* Hide a value from the optimiser so allocation calls are not folded or elided. */
static inline size_t opaque(size_t v) {
    __asm__ volatile("" : "+r"(v));
    return v;
}
static inline void *launder(void *p) {
    __asm__ volatile("" : "+r"(p)::"memory");
    return p;
}

/* splitmix64: per-object seeds and random numbers. */
static inline uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

typedef struct {
    uint64_t s;
} rng_t;
static inline uint64_t rng_next(rng_t *r) { return mix64(r->s++); }
static inline uint64_t rng_below(rng_t *r, uint64_t n) { return rng_next(r) % n; }

/* The pattern of byte i of an object with seed `seed`: position-dependent, so swapped or
 * shifted data is caught, not only overwritten data. */
static inline uint64_t pat_word(uint64_t seed, size_t i) {
    return seed ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull);
}

/* Fills [p, p+n) (p 8-aligned) with the pattern. */
static inline void fill(void *p, size_t n, uint64_t seed) {
    uint64_t *w = (uint64_t *)p;
    size_t words = n / 8;
    for (size_t i = 0; i < words; i++) w[i] = pat_word(seed, i);
    uint64_t last = pat_word(seed, words);
    memcpy((char *)p + words * 8, &last, n % 8);
}

/* Offset of the first byte of [p, p+n) that does not hold the pattern, or (size_t)-1. */
static inline size_t verify(const void *p, size_t n, uint64_t seed) {
    const uint64_t *w = (const uint64_t *)p;
    size_t words = n / 8;
    for (size_t i = 0; i < words; i++)
        if (w[i] != pat_word(seed, i)) return i * 8;
    uint64_t last = pat_word(seed, words);
    if (memcmp((const char *)p + words * 8, &last, n % 8) != 0) return words * 8;
    return (size_t)-1;
}

/* Sparse versions for multi-MiB objects: the first and last 4 KiB and one word per 512 bytes. */
static inline void fill_sparse(void *p, size_t n, uint64_t seed) {
    if (n <= 16384) {
        fill(p, n, seed);
        return;
    }
    uint64_t *w = (uint64_t *)p;
    size_t words = n / 8;
    for (size_t i = 0; i < 512; i++) w[i] = pat_word(seed, i);
    for (size_t i = 512; i < words - 512; i += 64) w[i] = pat_word(seed, i);
    for (size_t i = words - 512; i < words; i++) w[i] = pat_word(seed, i);
}
static inline size_t verify_sparse(const void *p, size_t n, uint64_t seed) {
    if (n <= 16384) return verify(p, n, seed);
    const uint64_t *w = (const uint64_t *)p;
    size_t words = n / 8;
    for (size_t i = 0; i < 512; i++)
        if (w[i] != pat_word(seed, i)) return i * 8;
    for (size_t i = 512; i < words - 512; i += 64)
        if (w[i] != pat_word(seed, i)) return i * 8;
    for (size_t i = words - 512; i < words; i++)
        if (w[i] != pat_word(seed, i)) return i * 8;
    return (size_t)-1;
}

/* Verifies the part of [p, p+keep) that fill_sparse(p, size, seed) wrote (keep <= size): what
 * realloc must have preserved. */
static inline size_t verify_prefix(const void *p, size_t keep, size_t size, uint64_t seed) {
    if (size <= 16384) return verify(p, keep, seed);
    const uint64_t *w = (const uint64_t *)p;
    size_t words = size / 8, kw = keep / 8;
    for (size_t i = 0; i < 512 && i < kw; i++)
        if (w[i] != pat_word(seed, i)) return i * 8;
    for (size_t i = 512; i < words - 512 && i < kw; i += 64)
        if (w[i] != pat_word(seed, i)) return i * 8;
    for (size_t i = words - 512; i < words && i < kw; i++)
        if (w[i] != pat_word(seed, i)) return i * 8;
    return (size_t)-1;
}

/* librseqmalloc's own API, looked up at run time so the programs need not link to it. */
static inline const char *shim_mode(void) {
    const char *(*f)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "rseqmalloc_rseq_mode");
    return f ? f() : "absent";
}

/* Resident set size in bytes, from /proc/self/statm (read with a stack buffer). */
static inline size_t rss_bytes(void) {
    char buf[128];
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    unsigned long size = 0, res = 0;
    CHECK(sscanf(buf, "%lu %lu", &size, &res) == 2);
    return res * (size_t)sysconf(_SC_PAGESIZE);
}

/* Aborts unless malloc is librseqmalloc's (the file defining malloc is the one defining
 * rseqmalloc_rseq_mode). */
static inline void check_malloc_is_librseqmalloc(void) {
    void *ours = dlsym(RTLD_DEFAULT, "rseqmalloc_rseq_mode");
    CHECKF(ours != NULL, "librseqmalloc is not loaded (LD_PRELOAD=%s)", getenv("LD_PRELOAD"));
    Dl_info a, b;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    CHECK(dladdr(m, &a) != 0 && dladdr(ours, &b) != 0);
    CHECKF(strcmp(a.dli_fname, b.dli_fname) == 0, "malloc comes from %s, not %s", a.dli_fname,
           b.dli_fname);
}

/* Arms a watchdog and checks librseqmalloc is the allocator. */
static inline void test_init(unsigned watchdog_seconds) {
    alarm(watchdog_seconds);
    check_malloc_is_librseqmalloc();
}

/* Checks p is non-null, aligned to `align` and has at least `size` usable bytes, then writes
 * every usable byte. (Needs <malloc.h>.) */
#define CHECK_AND_WRITE_BLOCK(p, size, align)                                                  \
    do {                                                                                       \
        void *b_ = (p);                                                                        \
        size_t s_ = (size), a_ = (align);                                                      \
        CHECKF(b_ != NULL, "size %zu align %zu", s_, a_);                                      \
        CHECKF(((uintptr_t)b_ & (a_ - 1)) == 0, "%p not aligned to %zu", b_, a_);              \
        size_t u_ = malloc_usable_size(b_);                                                    \
        CHECKF(u_ >= s_, "usable %zu < requested %zu", u_, s_);                                \
        memset(b_, 0x5a, u_);                                                                  \
    } while (0)

/* malloc(0) n times: every pointer non-null and distinct; then all freed, and free(NULL). */
static inline void check_malloc_zero_unique(void **ptrs, int n) {
    for (int i = 0; i < n; i++) {
        ptrs[i] = malloc(opaque(0));
        CHECK(ptrs[i] != NULL);
        for (int j = 0; j < i; j++) CHECK(ptrs[j] != ptrs[i]);
    }
    for (int i = 0; i < n; i++) free(ptrs[i]);
    free(NULL);
}

/* free keeps errno, for small, large and huge blocks. */
static inline void check_free_keeps_errno(void) {
    size_t sizes[] = {1, 16, 1000, 100000, 1 << 20, 64 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char *p = (char *)malloc(opaque(sizes[i]));
        CHECK(p);
        p[0] = 1;
        errno = 4321;
        free(p);
        CHECKF(errno == 4321, "free(%zu bytes) changed errno to %d", sizes[i], errno);
    }
}

/* Verifies (fill_sparse patterns) and frees the non-null blocks of a slot array. */
static inline void free_slots(void **p, const size_t *sz, const uint64_t *seed, int n) {
    for (int k = 0; k < n; k++) {
        if (p[k]) {
            CHECK(verify_sparse(p[k], sz[k], seed[k]) == (size_t)-1);
            free(p[k]);
            p[k] = NULL;
        }
    }
}

#endif
