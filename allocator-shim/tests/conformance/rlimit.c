/* Issue 11, item 10 (kind): under an address-space (or data) limit, memory the program freed
 * becomes available again for any request.
 *
 * With the limit (argv[1]: "as" for RLIMIT_AS, "data" for RLIMIT_DATA) set 512 MiB above the
 * process's current use:
 *  1. fill with 100-byte blocks (chained through their first word) until malloc returns NULL,
 *     which must come with errno ENOMEM (no crash, no abort); then (1b) realloc of a 4 KiB block
 *     to 4,097 B, whose class has a free object kept from before the fill, must succeed, and
 *     (1c) after a page-aligned 40 KiB block is freed, malloc(100) must succeed from its
 *     pages;
 *  2. free them all, malloc_trim(0);
 *  3. malloc(256 MiB) must succeed (glibc: yes); the largest block obtainable is found by
 *     bisection to 1 MiB and printed (glibc gets over 400 MiB);
 *  4. the same with a fill of mixed sizes (100 B to 1 MiB), then malloc(128 MiB) must succeed
 *     (glibc fragments more here: its largest block after this fill is about 240 MiB);
 *  5. the 100-byte fill again: it must reach at least 90 % of the first fill's count.
 * Before all that (0.), a 300 MiB block grown by realloc to 310, 355 and 400 MiB must succeed
 * with its contents: the limit leaves no room for a second copy (glibc moves it with mremap).
 *
 * usage: rlimit as|data     prints "rlimit <as|data> ok blocks=<n> largest=<MiB> ... mode=<mode>" */
#include "conf.h"

#include <malloc.h>
#include <sys/resource.h>

static const size_t MiB = (size_t)1 << 20;

/* Fills until malloc fails; returns the chain of blocks and stores the count. */
static void *fill_until_null(size_t (*size_of)(long), long *count) {
    void *head = NULL;
    long n = 0;
    for (;;) {
        size_t size = size_of(n);
        errno = 0;
        void **p = malloc(size);
        if (!p) {
            CHECKF(errno == ENOMEM, "malloc(%zu) returned NULL with errno %d", size, errno);
            break;
        }
        *p = head;
        head = p;
        n++;
    }
    *count = n;
    return head;
}

static size_t hundred(long i) {
    (void)i;
    return 100;
}

static size_t mixed(long i) {
    uint64_t x = mix64((uint64_t)i);
    switch (x % 4) {
    case 0: return 100;
    case 1: return 1000 + x % 4000;
    case 2: return 20000 + x % 200000;
    default: return MiB;
    }
}

/* The largest block malloc gives now, to 1 MiB, by bisection between 0 and 1 GiB. */
static size_t largest(void) {
    size_t lo = 0, hi = 1024;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        void *p = malloc(mid * MiB);
        if (p) {
            free(p);
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

int main(int argc, char **argv) {
    conf_init("rlimit", 60);
    CHECK(argc == 2);
    conf_limit_room(argv[1], 512 * MiB);

    /* 0. A huge block grown by realloc while the limit leaves no room for a second copy (or for
     * address space reserved ahead): glibc's mremap moves it; so must we. */
    char *grow = malloc(300 * MiB);
    CHECKF(grow != NULL, "malloc(300 MiB) failed under the limit");
    memset(grow, 7, 300 * MiB);
    for (size_t size = 310 * MiB; size <= 400 * MiB; size += 45 * MiB) {
        char *q = realloc(grow, size);
        CHECKF(q != NULL, "realloc of a huge block to %zu MiB failed under the limit (errno %d)",
               size / MiB, errno);
        CHECKF(q[0] == 7 && q[300 * MiB - 1] == 7, "realloc lost the contents at %zu MiB",
               size / MiB);
        grow = q;
    }
    free(grow);

    /* For 1b: a 4 KiB block, and a free object of the class 4,097 B maps to whose span stays
     * (a live neighbour), so that class has room when nothing else has. */
    char *old4k = malloc(4096), *neighbour = malloc(4097), *spare = malloc(4097);
    CHECK(old4k && neighbour && spare);
    memset(old4k, 0x4b, 4096);
    free(spare);
    /* For 1c: a page-aligned 40 KiB block (whole pages) between two others, whose five pages
     * come free after the fill. */
    void *left = NULL, *hole = NULL, *right = NULL;
    CHECK(posix_memalign(&left, 8192, 40 << 10) == 0);
    CHECK(posix_memalign(&hole, 8192, 40 << 10) == 0);
    CHECK(posix_memalign(&right, 8192, 40 << 10) == 0);

    long blocks = 0;
    void *chain = fill_until_null(hundred, &blocks);
    /* 1b. With nothing left for a new span, a block grown by realloc into a class that has a
     * free object must still move there: the headroom realloc asks for (a class whose span
     * cannot be made now) is not required. */
    errno = 0;
    char *grown = realloc(old4k, 4097);
    CHECKF(grown != NULL, "realloc(4 KiB block, 4097) failed with the heap full (errno %d)",
           errno);
    for (size_t i = 0; i < 4096; i++) CHECKF(grown[i] == 0x4b, "realloc lost byte %zu", i);
    free(grown);
    free(neighbour);
    /* 1c. With only a short run free (the 40 KiB block's pages), small objects of a class whose
     * spans are longer than that must still be served, from a shorter span. */
    free(hole);
    errno = 0;
    void *after_hole = malloc(100);
    CHECKF(after_hole != NULL, "malloc(100) failed with a 40 KiB run free (errno %d)", errno);
    free(after_hole);
    free(left);
    free(right);
    conf_free_chain(chain);
    malloc_trim(0);
    size_t after_small = largest();
    void *big = malloc(256 * MiB);
    CHECKF(big != NULL,
           "after filling with %ld 100-byte blocks, freeing them and malloc_trim(0), "
           "malloc(256 MiB) failed; the largest block malloc gives is %zu MiB",
           blocks, after_small);
    memset(big, 1, 256 * MiB);
    free(big);

    long mixed_blocks = 0;
    conf_free_chain(fill_until_null(mixed, &mixed_blocks));
    malloc_trim(0);
    size_t after_mixed = largest();
    big = malloc(128 * MiB);
    CHECKF(big != NULL,
           "after a mixed fill of %ld blocks, freeing them and malloc_trim(0), malloc(128 MiB) "
           "failed; the largest block malloc gives is %zu MiB",
           mixed_blocks, after_mixed);
    free(big);

    long again = 0;
    void *refill = fill_until_null(hundred, &again);
    CHECKF(again >= blocks / 10 * 9, "the second 100-byte fill got %ld blocks, the first %ld",
           again, blocks);
    conf_free_chain(refill);
    conf_say("rlimit %s ok blocks=%ld largest=%zu MiB mixed_blocks=%ld largest_after_mixed=%zu "
             "MiB refill=%ld mode=%s\n",
             argv[1], blocks, after_small, mixed_blocks, after_mixed, again, conf_mode());
    return 0;
}
