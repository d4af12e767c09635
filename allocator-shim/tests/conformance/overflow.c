/* Issue 11, item 11 (kind): a small heap overflow never turns into a crash inside the allocator
 * or a bad pointer. Writing 1-16 bytes past the end of a live block, into the free object
 * after it (where allocators that link free objects through their first word keep the link,
 * as rseqmalloc's spans did before session 20), must leave the allocator working: never a
 * SIGSEGV/SIGBUS, never a pointer that is misaligned or overlaps another live block. (The
 * contract also allows an abort with one line naming the corrupted block; rseqmalloc's spans
 * now keep free objects in a bitmap, so the test asks that the program keeps working.)
 *
 * 3,000 objects of `size` (argv[1]) are allocated; every other one in address order is freed
 * and malloc_trim(0) drains the caches, so the freed objects sit in their spans between live
 * ones. Then `k` bytes (argv[2]) past the usable end of live blocks whose neighbour above is
 * free are overwritten — for k <= 2 with 0x08 (what turned a link into a misaligned pointer
 * into the same span), else with 'A' (a wild pointer). With argv[3] = "all" every such block
 * overflows, else only one in the middle. Then 20,000 operations (mostly malloc of the class,
 * some frees, some other sizes): every pointer returned is checked for alignment and against
 * every live block of the class for overlap, and every live block's contents are checked
 * before it is freed.
 *
 * Exits 0 printing "overflow ok ..." if the allocator kept working; 3 with
 * "overflow: bad pointer ..." when it handed out a bad block. */
#include "conf.h"

#include <malloc.h>

enum { N = 3000, OPS = 20000, MAXLIVE = 8192 };

static size_t size, stride, align;
static char *live[MAXLIVE]; /* sorted by address */
static int nlive;

static int find(char *p) {
    int lo = 0, hi = nlive;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (live[mid] < p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static uint64_t seed_of(char *p) { return (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull; }

/* A block of the class handed out now: aligned, overlapping no live block. */
static void add(char *p) {
    if (((uintptr_t)p & (align - 1)) != 0) {
        conf_say("overflow: bad pointer %p: misaligned (class of %zu bytes)\n", p, stride);
        exit(3);
    }
    int i = find(p);
    if ((i < nlive && live[i] < p + stride) || (i > 0 && live[i - 1] + stride > p)) {
        char *other = i < nlive && live[i] < p + stride ? live[i] : live[i - 1];
        conf_say("overflow: bad pointer %p: overlaps live block %p (class of %zu bytes)\n", p,
                 other, stride);
        exit(3);
    }
    CHECK(nlive < MAXLIVE);
    memmove(&live[i + 1], &live[i], (size_t)(nlive - i) * sizeof *live);
    live[i] = p;
    nlive++;
    fill(p, stride, seed_of(p));
}

static void drop(int i) {
    char *p = live[i];
    size_t bad = verify(p, stride, seed_of(p));
    if (bad != (size_t)-1) {
        conf_say("overflow: bad pointer: live block %p (class of %zu bytes) was overwritten at "
                 "offset %zu by another block\n",
                 p, stride, bad);
        exit(3);
    }
    memmove(&live[i], &live[i + 1], (size_t)(nlive - i - 1) * sizeof *live);
    nlive--;
    free(p);
}

int main(int argc, char **argv) {
    conf_init("overflow", 60);
    CHECK(argc >= 3);
    size = (size_t)strtoul(argv[1], NULL, 10);
    size_t k = (size_t)strtoul(argv[2], NULL, 10);
    int all = argc > 3 && strcmp(argv[3], "all") == 0;
    CHECK(k >= 1 && k <= 16);
    align = size <= 8 ? 8 : 16;
    static char *objs[N];
    for (int i = 0; i < N; i++) {
        objs[i] = malloc(size);
        CHECK(objs[i]);
        if (i == 0) stride = malloc_usable_size(objs[0]);
        add(objs[i]);
    }
    /* Free every other block in address order (live[] is sorted). */
    for (int i = nlive - 1; i >= 0; i -= 2) drop(i);
    malloc_trim(0);
    /* Overflow from live blocks whose neighbour above is free. */
    int overflowed = 0;
    unsigned char byte = k <= 2 ? 0x08 : 'A';
    int want = all ? nlive : 1;
    for (int i = all ? 0 : nlive / 2; i < nlive && overflowed < want; i++) {
        char *p = live[i];
        char *above = p + stride;
        if (i + 1 < nlive && live[i + 1] == above) continue; /* neighbour is live */
        memset(p + stride, byte, k); /* the overflow: past the usable end */
        overflowed++;
    }
    CHECK(overflowed > 0);
    /* Whatever the overflow touched belongs to no live block (the neighbour is free), so the
     * contents of live blocks stay checkable. */
    rng_t r = {k * 1000 + size};
    static void *other[256];
    for (int op = 0; op < OPS; op++) {
        unsigned pick = (unsigned)rng_below(&r, 100);
        if (pick < 60 || nlive == 0) {
            if (nlive >= MAXLIVE) {
                drop((int)rng_below(&r, (uint64_t)nlive));
                continue;
            }
            char *p = malloc(size);
            CHECK(p);
            add(p);
        } else if (pick < 90) {
            drop((int)rng_below(&r, (uint64_t)nlive));
        } else {
            int j = (int)rng_below(&r, 256);
            free(other[j]);
            other[j] = malloc(1 + rng_below(&r, 5000));
            CHECK(other[j]);
        }
    }
    while (nlive) drop(nlive - 1);
    for (int j = 0; j < 256; j++) free(other[j]);
    conf_say("overflow ok size=%zu k=%zu overflowed=%d mode=%s\n", size, k, overflowed,
             conf_mode());
    return 0;
}
