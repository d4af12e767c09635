/*
 * A deliberately broken malloc, for rseqmalloc-bench's tests only: the
 * runner must report the cells of an allocator like this one as crashed or
 * failed, and go on.
 *
 * - Every block comes from a bump pointer in a 32 MiB static arena and is
 *   never reused (free does nothing); when the arena runs out, abort()
 *   (so a workload that allocates a lot ends in SIGABRT).
 * - From the 2000th call on, every 500th malloc returns the previous block
 *   again, still in use: two live objects overlap, and a workload that
 *   checks its data exits with status 3.
 *
 * Build: cc -shared -fPIC -O1 -o libbroken.so broken_malloc.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BYTES (32u << 20)
#define HEADER 16

static _Alignas(64) unsigned char arena[ARENA_BYTES];
static size_t used;
static unsigned long calls;
static void *last;

static void *bump(size_t size, size_t align)
{
    if (align < HEADER)
        align = HEADER;
    size_t need = size + HEADER + align;
    size_t at = __atomic_fetch_add(&used, need, __ATOMIC_RELAXED);
    if (need < size || at + need > ARENA_BYTES)
        abort();
    uintptr_t p = (uintptr_t)(arena + at + HEADER);
    p = (p + align - 1) & ~(uintptr_t)(align - 1);
    ((size_t *)p)[-1] = size;
    return (void *)p;
}

void *malloc(size_t size)
{
    unsigned long n = __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
    void *prev = __atomic_load_n(&last, __ATOMIC_RELAXED);
    if (n >= 2000 && n % 500 == 0 && prev)
        return prev;
    void *p = bump(size, HEADER);
    __atomic_store_n(&last, p, __ATOMIC_RELAXED);
    return p;
}

void free(void *p)
{
    (void)p;
}

void *calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = malloc(n * size);
    memset(p, 0, n * size);
    return p;
}

void *realloc(void *old, size_t size)
{
    void *p = malloc(size);
    if (old) {
        size_t old_size = ((size_t *)old)[-1];
        memcpy(p, old, old_size < size ? old_size : size);
    }
    return p;
}

int posix_memalign(void **out, size_t align, size_t size)
{
    *out = bump(size, align);
    return 0;
}

void *aligned_alloc(size_t align, size_t size)
{
    return bump(size, align);
}

void *memalign(size_t align, size_t size)
{
    return bump(size, align);
}

size_t malloc_usable_size(void *p)
{
    return p ? ((size_t *)p)[-1] : 0;
}
