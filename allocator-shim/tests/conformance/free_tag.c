/* Issue 11, item 1 (kind): a valid program never trips the double-free check, whatever path
 * handed the object out or takes it back.
 *
 * The heap is first left full of freed objects of every class (stale memory that went through
 * the checked free), so every hand-out path reuses such memory. Then:
 *  1. the issue's loop: for al = 1, 2, 4 ... 2^22 and size in {1, 7, al, al+1, 3al, 100000}:
 *     posix_memalign(al, size) (al >= 8), fill, free; memalign(al, size), fill,
 *     realloc(2 size + 10), free;
 *  2. every allocation entry point (malloc, calloc, realloc(NULL), reallocarray(NULL),
 *     aligned_alloc, memalign, posix_memalign, valloc, pvalloc) x sizes from 0 to 2 MiB x
 *     alignments to 64 KiB, writing only the first byte (so whatever the allocator left in the
 *     rest stays there), then every way back: free, free_sized, free_aligned_sized, realloc
 *     grown (moved, grown out of the class), shrunk (in place, into a smaller class), to the
 *     same size, then free;
 *  3. realloc chains writing one byte per step: 1 B up to 1 MiB and back down, in steps that
 *     cross every class;
 *  4. the same after malloc_trim (caches drained, spans returned and carved again) and from a
 *     second thread freeing what the first allocated (objects refilled through other caches).
 *
 * With argv[1] = "skip-issue-loop" the issue's loop (1.) is left out, so the other paths are
 * reached even while the issue's trigger still fails.
 *
 * usage: free_tag [skip-issue-loop]    prints "free_tag ok checks=<n> mode=<mode>" */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

static long checks;

/* Leaves freed (checked-freed) objects of every size class in every cache and span. */
static void make_stale_heap(void) {
    conf_step("stale heap");
    enum { N = 64 };
    static void *p[N];
    for (size_t size = 8; size <= 300000; size += size / 4 + 8) {
        for (int i = 0; i < N; i++) {
            p[i] = malloc(size);
            CHECK(p[i]);
            memset(p[i], 0xa5, size);
        }
        for (int i = 0; i < N; i++) free(p[i]);
    }
}

/* 1. The loop of the issue. */
static void issue_loop(void) {
    for (size_t al = 1; al <= ((size_t)1 << 22); al *= 2) {
        size_t sizes[] = {1, 7, al, al + 1, 3 * al, 100000};
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            size_t size = sizes[k];
            void *p;
            if (al >= sizeof(void *)) {
                conf_step("issue loop: posix_memalign(%zu, %zu), free", al, size);
                CHECK(posix_memalign(&p, al, size) == 0);
                CHECK(((uintptr_t)p & (al - 1)) == 0);
                memset(p, 0x11, size);
                free(p);
                checks++;
            }
            conf_step("issue loop: memalign(%zu, %zu)", al, size);
            p = memalign(al, size);
            CHECK(p && ((uintptr_t)p & (al - 1)) == 0);
            memset(p, 0x22, size);
            conf_step("issue loop: memalign(%zu, %zu), realloc(%zu)", al, size, 2 * size + 10);
            p = realloc(p, 2 * size + 10);
            CHECK(p);
            conf_step("issue loop: memalign(%zu, %zu), realloc(%zu), free", al, size,
                      2 * size + 10);
            free(p);
            checks++;
        }
    }
}

enum entry { E_MALLOC, E_CALLOC, E_REALLOC_NULL, E_REALLOCARRAY_NULL, E_ALIGNED_ALLOC,
             E_MEMALIGN, E_POSIX_MEMALIGN, E_VALLOC, E_PVALLOC, E_COUNT };
static const char *entry_name[] = {"malloc",        "calloc",   "realloc(NULL)",
                                   "reallocarray(NULL)", "aligned_alloc", "memalign",
                                   "posix_memalign", "valloc",  "pvalloc"};

enum back { B_FREE, B_FREE_SIZED, B_FREE_ALIGNED_SIZED, B_GROW, B_GROW_BIG, B_SHRINK,
            B_SHRINK_SMALL, B_SAME, B_COUNT };
static const char *back_name[] = {"free",         "free_sized",          "free_aligned_sized",
                                  "realloc x2+10", "realloc to +300000", "realloc to half",
                                  "realloc to 1",  "realloc same"};

static void *get(enum entry e, size_t size, size_t al) {
    void *p = NULL;
    switch (e) {
    case E_MALLOC: p = malloc(size); break;
    case E_CALLOC: p = calloc(1, size); break;
    case E_REALLOC_NULL: p = realloc(NULL, size); break;
    case E_REALLOCARRAY_NULL: p = reallocarray(NULL, 1, size); break;
    case E_ALIGNED_ALLOC: p = aligned_alloc(al, size); break;
    case E_MEMALIGN: p = memalign(al, size); break;
    case E_POSIX_MEMALIGN: CHECK(posix_memalign(&p, al, size) == 0); break;
    case E_VALLOC: p = valloc(size); break;
    case E_PVALLOC: p = pvalloc(size); break;
    default: CHECK(0);
    }
    return p;
}

static size_t align_of(enum entry e, size_t al) {
    switch (e) {
    case E_ALIGNED_ALLOC:
    case E_MEMALIGN:
    case E_POSIX_MEMALIGN: return al;
    case E_VALLOC:
    case E_PVALLOC: return 4096;
    default: return 1;
    }
}

/* Hands an object back by `b`; only its first byte was ever written. */
static void give_back(void *p, enum back b, size_t size, size_t al) {
    switch (b) {
    case B_FREE: free(p); return;
    case B_FREE_SIZED: conf_free_sized(p, size); return;
    case B_FREE_ALIGNED_SIZED: conf_free_aligned_sized(p, al, size); return;
    case B_GROW: p = realloc(p, 2 * size + 10); break;
    case B_GROW_BIG: p = realloc(p, size + 300000); break;
    case B_SHRINK: p = realloc(p, size / 2 + 1); break;
    case B_SHRINK_SMALL: p = realloc(p, 1); break;
    case B_SAME: p = realloc(p, size + 1); break;
    default: CHECK(0);
    }
    CHECK(p != NULL);
    CHECK(*(unsigned char *)p == 0x5c);
    free(p);
}

/* 2. Every entry point x every way back, first byte written only. */
static void entries_and_ways_back(const char *when) {
    static const size_t sizes[] = {0,   1,    7,    8,     9,     15,     16,     17,     24,
                                   100, 1000, 1025, 4000,  5000,  16384,  20000,  100000,
                                   300000, (size_t)2 << 20};
    static const size_t aligns[] = {16, 64, 4096, 16384, 65536};
    for (int e = 0; e < E_COUNT; e++) {
        for (size_t a = 0; a < sizeof aligns / sizeof *aligns; a++) {
            size_t al = aligns[a];
            if (align_of((enum entry)e, al) == 1 && a > 0) break; /* alignment not used */
            for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
                size_t size = sizes[s];
                for (int b = 0; b < B_COUNT; b++) {
                    if (b == B_FREE_ALIGNED_SIZED && e != E_ALIGNED_ALLOC) continue;
                    conf_step("%s: %s(size %zu, align %zu), first byte written, then %s", when,
                              entry_name[e], size, al, back_name[b]);
                    unsigned char *p = get((enum entry)e, size, al);
                    CHECK(p != NULL);
                    size_t need = align_of((enum entry)e, al);
                    CHECK(((uintptr_t)p & (need - 1)) == 0);
                    p[0] = 0x5c; /* malloc_usable_size >= 1 even for size 0 */
                    give_back(p, (enum back)b, size, al);
                    checks++;
                }
            }
        }
    }
}

/* 3. realloc chains through every class, one byte written per step. */
static void realloc_chains(const char *when) {
    unsigned char *p = malloc(1);
    CHECK(p);
    p[0] = 0x5c;
    size_t size = 1;
    while (size < ((size_t)1 << 20)) {
        size += size / 8 + 1;
        conf_step("%s: realloc chain up to %zu", when, size);
        p = realloc(p, size);
        CHECK(p && p[0] == 0x5c);
        checks++;
    }
    while (size > 1) {
        size -= size / 8 + 1;
        conf_step("%s: realloc chain down to %zu", when, size);
        p = realloc(p, size ? size : 1);
        CHECK(p && p[0] == 0x5c);
        checks++;
    }
    conf_step("%s: realloc chain, free", when);
    free(p);
}

/* 4b. Objects allocated (first byte written) here, handed back on another thread. */
enum { HANDOVER = 3000 };
static void *handover[HANDOVER];
static size_t handover_size[HANDOVER];

static void *other_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < HANDOVER; i++) {
        conf_step("other thread: give back object %d of %zu bytes", i, handover_size[i]);
        give_back(handover[i], (enum back)(i % B_COUNT == B_FREE_ALIGNED_SIZED ? B_FREE : i % B_COUNT),
                  handover_size[i], 16);
        checks++;
    }
    /* And allocate from the caches the frees just filled, handing back here. */
    entries_and_ways_back("other thread");
    return NULL;
}

static void cross_thread(void) {
    rng_t r = {42};
    for (int i = 0; i < HANDOVER; i++) {
        size_t size = (size_t)rng_below(&r, 4) == 0 ? rng_below(&r, 200000) : rng_below(&r, 1100);
        handover_size[i] = size;
        conf_step("cross thread: allocate object %d of %zu bytes", i, size);
        unsigned char *p = i % 3 == 0 ? memalign(256, size) : malloc(size);
        CHECK(p);
        p[0] = 0x5c;
        handover[i] = p;
    }
    pthread_t t;
    CHECK(pthread_create(&t, NULL, other_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
}

int main(int argc, char **argv) {
    conf_init("free_tag", 150);
    int skip = argc > 1 && strcmp(argv[1], "skip-issue-loop") == 0;
    conf_name_step_on_abort();
    make_stale_heap();
    if (!skip) issue_loop();
    entries_and_ways_back("main");
    realloc_chains("main");
    conf_step("malloc_trim");
    malloc_trim(0);
    make_stale_heap();
    entries_and_ways_back("after trim");
    realloc_chains("after trim");
    cross_thread();
    if (!skip) issue_loop();
    conf_say("free_tag ok checks=%ld mode=%s\n", checks, conf_mode());
    return 0;
}
