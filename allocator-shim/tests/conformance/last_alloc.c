/* free() of the object its thread allocated last takes the object's class from the thread
 * block, so the per-CPU push need not wait for the page map (docs/design.md, "Fast path");
 * the page map still decides. This program makes that note stale and frees through it:
 *
 *  1. the note's own case, for every small size: malloc, write, free, 100 times each;
 *  2. a stale note: thread A allocates p (8 KiB; the second of two, so a pop, which noted
 *     it even before session 35) and frees it; malloc_trim(0) sends p's span back to the
 *     heap; thread B (created before, so that A allocates nothing after p) allocates 2 KiB
 *     objects until one lands at p's address, and hands it to A. A frees it: the note says
 *     8 KiB at that address, the page map 2 KiB. The object must go back as 2 KiB: 2,000
 *     malloc(8192) after it never return it. Both are power-of-two classes, so every 8 KiB
 *     object's address is a 2 KiB object's in any span laid over it (classes above 1 KiB that
 *     are not powers of two are odd numbers of cache lines, whose objects rarely coincide).
 *
 * reached=0 means B never got p's address back, so the stale case was not built: the page
 * heap placed the 2 KiB spans elsewhere (the harness fails then; it says nothing about free).
 *
 * usage: last_alloc     prints "last_alloc ok reached=<0|1> mode=<mode>" */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

enum { BIG = 8192, SMALL = 2048, SEARCH_MAX = 20000, CHECK_BIG = 2000 };

static int go[2], back[2];
static char *target;

/* Thread B: waits for A's word, then allocates SMALL-byte objects until one is at `target`;
 * frees the others and sends that one (or NULL) back. */
static void *search(void *arg) {
    (void)arg;
    static char *keep[SEARCH_MAX];
    char c;
    CHECK(read(go[0], &c, 1) == 1);
    char *found = NULL;
    int n = 0;
    while (n < SEARCH_MAX) {
        char *q = malloc(SMALL);
        CHECK(q);
        memset(q, 0x5b, SMALL);
        if (q == target) {
            found = q;
            break;
        }
        keep[n++] = q;
    }
    for (int i = 0; i < n; i++) free(keep[i]);
    CHECK(write(back[1], &found, sizeof found) == (ssize_t)sizeof found);
    return NULL;
}

int main(void) {
    conf_init("last_alloc", 60);
    conf_step("every size: malloc, write, free");
    for (size_t size = 1; size <= 300000; size += size / 8 + 1) {
        for (int i = 0; i < 100; i++) {
            char *x = malloc(size);
            CHECK(x);
            memset(x, i, size);
            free(x);
        }
    }

    conf_step("a stale note");
    CHECK(pipe(go) == 0 && pipe(back) == 0);
    pthread_t b;
    CHECK(pthread_create(&b, NULL, search, NULL) == 0);
    char *first = malloc(BIG);
    char *p = malloc(BIG);
    CHECK(first && p);
    target = p; /* only its address is used from here on */
    free(first);
    free(p);
    malloc_trim(0);
    CHECK(write(go[1], "x", 1) == 1);
    char *q = NULL;
    CHECK(read(back[0], &q, sizeof q) == (ssize_t)sizeof q);
    if (q) {
        free(q); /* the note says BIG here; the page map says SMALL */
        static char *big[CHECK_BIG];
        for (int i = 0; i < CHECK_BIG; i++) {
            big[i] = malloc(BIG);
            CHECK(big[i]);
            CHECKF(big[i] != q, "malloc(%d) returned %p, freed as a %d-byte object", BIG,
                   (void *)q, SMALL);
            memset(big[i], 0x3c, BIG);
        }
        for (int i = 0; i < CHECK_BIG; i++) free(big[i]);
    }
    CHECK(pthread_join(b, NULL) == 0);
    conf_say("last_alloc ok reached=%d mode=%s\n", q != NULL, conf_mode());
    return 0;
}
