/* glibc's other names for its allocator (`__libc_malloc` and its kin, and `cfree`) are the
 * allocator in use: a block from one name is freed, grown or measured by any other. Before
 * session 74 the library did not export them, so they reached glibc's own heap beside ours: a
 * block from `__libc_malloc` handed to `realloc` or `free` aborted as "invalid pointer".
 * glibc exports these names (GLIBC_2.2.5; `cfree` for binaries linked before 2.26, which this
 * program links to as they do, by its old version), as mimalloc and gperftools' tcmalloc do.
 *
 * For each size (small, an owned class's, large, huge), blocks cross between the two families
 * both ways, their bytes checked after every move; `__libc_mallinfo` and `__libc_mallopt`
 * answer.
 *
 * usage: libc_names     prints "libc_names ok mode=..." */
#include "conf.h"

#include <malloc.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern struct mallinfo __libc_mallinfo(void);
extern int __libc_mallopt(int, int);
/* `cfree` as a binary linked before glibc 2.26 refers to it. */
#if defined(__x86_64__)
__asm__(".symver cfree, cfree@GLIBC_2.2.5");
#elif defined(__aarch64__)
__asm__(".symver cfree, cfree@GLIBC_2.17");
#endif
extern void cfree(void *);

/* Checks that `n` bytes of `p` hold common.h's pattern of `seed`. */
static void expect(const void *p, size_t n, uint64_t seed, const char *what) {
    size_t at = verify(p, n, seed);
    CHECKF(at == (size_t)-1, "%s: byte %zu of %zu lost", what, at, n);
}

int main(void) {
    conf_init("libc_names", 60);
    const size_t sizes[] = {24, 500, 100000, 40u << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        uint64_t seed = k + 1;

        /* glibc's names allocate; the standard ones grow and free. */
        unsigned char *a = __libc_malloc(n);
        CHECKF(a != NULL, "__libc_malloc(%zu)", n);
        CHECKF(malloc_usable_size(a) >= n, "malloc_usable_size of __libc_malloc(%zu)", n);
        fill(a, n, seed);
        a = realloc(a, 2 * n);
        CHECKF(a != NULL, "realloc of __libc_malloc(%zu)", n);
        expect(a, n, seed, "__libc_malloc then realloc");
        free(a);

        unsigned char *z = __libc_calloc(1, n);
        CHECKF(z != NULL, "__libc_calloc(1, %zu)", n);
        for (size_t i = 0; i < n; i++) CHECKF(z[i] == 0, "__libc_calloc: byte %zu not zero", i);
        free(z);

        unsigned char *m = __libc_memalign(256, n);
        CHECKF(m != NULL && (uintptr_t)m % 256 == 0, "__libc_memalign(256, %zu)", n);
        fill(m, n, seed);
        expect(m, n, seed, "__libc_memalign");
        free(m);

        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        unsigned char *v = __libc_valloc(n), *pv = __libc_pvalloc(n);
        CHECKF(v != NULL && (uintptr_t)v % page == 0, "__libc_valloc(%zu)", n);
        CHECKF(pv != NULL && (uintptr_t)pv % page == 0, "__libc_pvalloc(%zu)", n);
        CHECKF(malloc_usable_size(pv) >= (n + page - 1) / page * page, "__libc_pvalloc's size");
        free(v);
        free(pv);

        /* The standard names allocate; glibc's grow and free. */
        unsigned char *b = malloc(n);
        CHECKF(b != NULL, "malloc(%zu)", n);
        fill(b, n, seed);
        b = __libc_realloc(b, n + n / 2);
        CHECKF(b != NULL, "__libc_realloc of malloc(%zu)", n);
        expect(b, n, seed, "malloc then __libc_realloc");
        __libc_free(b);

        unsigned char *c = malloc(n);
        CHECKF(c != NULL, "malloc(%zu)", n);
        fill(c, n, seed);
        cfree(c);
    }
    struct mallinfo mi = __libc_mallinfo();
    CHECKF(mi.arena >= 0, "__libc_mallinfo");
    CHECKF(__libc_mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1, "__libc_mallopt");
    conf_say("libc_names ok mode=%s\n", conf_mode());
    return 0;
}
