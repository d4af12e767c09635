/* Issue 12's contract, speed not bought with memory: a zeroed block the program barely
 * touches must not become resident whole. glibc's calloc above its mmap threshold (128 KiB at
 * start) returns fresh pages that stay lazy until written. A breaker run (session 71) found
 * that rseqmalloc made them resident whole: calloc of 40 blocks of 16 MiB, one byte written in
 * each, peaked at 658 MB (glibc 1.7 MB), and 2,000 blocks of 256 KiB at 514 MB (glibc 9 MB):
 * blocks below 32 MiB known to be zero were populated (MADV_POPULATE_WRITE), and those a size
 * class holds (up to 256 KiB) were cleared with memset; from 64 KiB up they are lazy since
 * session 72 (Node.js's ArrayBuffers).
 *
 * usage: calloc_sparse sparse BYTES COUNT [beyond-glibc]
 *   calloc COUNT blocks of BYTES (all live at once), write one byte of each, free them; the
 *   resident set may grow by at most COUNT pages plus 8 MiB. With `beyond-glibc`, not asserted
 *   under glibc's malloc: below its mmap threshold it clears what it carves from its heap (all
 *   but what a call just grew the heap by), and 2,000 blocks of 100,000 B grow its RSS by
 *   about 140 MB.
 * usage: calloc_sparse dense BYTES
 *   calloc a block of BYTES and write it whole, then calloc another: under rseqmalloc the
 *   second must be resident at once (a program that writes its zeroed blocks whole keeps
 *   getting them faulted in with one call, which the runner's calloc-big needs), checked
 *   where MADV_POPULATE_WRITE is honoured (a probe mapping says). Under glibc's malloc nothing
 *   is asserted of it.
 *
 * Prints "calloc_sparse ok grew=<bytes> mode=..." */
#include "conf.h"

#include <sys/mman.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

enum { MAX_BLOCKS = 4096 };

static void *blocks[MAX_BLOCKS];

/* Whether the kernel makes pages resident for MADV_POPULATE_WRITE (qemu-user does not). */
static int populate_honoured(void) {
    size_t len = 2 * 4096;
    unsigned char v[2] = {0, 0};
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    int done = madvise(p, len, MADV_POPULATE_WRITE) == 0 && mincore(p, len, v) == 0 &&
               (v[0] & v[1] & 1);
    CHECK(munmap(p, len) == 0);
    return done;
}

int main(int argc, char **argv) {
    conf_init("calloc_sparse", 60);
    CHECK(argc >= 3);
    size_t bytes = (size_t)strtoull(argv[2], NULL, 10);
    long grew;
    if (strcmp(argv[1], "sparse") == 0) {
        int beyond_glibc = argc == 5 && strcmp(argv[4], "beyond-glibc") == 0;
        CHECK(argc == 4 || beyond_glibc);
        size_t count = (size_t)strtoull(argv[3], NULL, 10);
        CHECK(count <= MAX_BLOCKS);
        size_t before = rss_bytes();
        for (size_t i = 0; i < count; i++) {
            unsigned char *p = calloc(1, bytes);
            CHECK(p != NULL);
            CHECKF(p[bytes / 2] == 0, "block %zu not zeroed", i);
            p[bytes / 2] = 1;
            blocks[i] = p;
        }
        grew = (long)rss_bytes() - (long)before;
        size_t bound = count * 4096 + (8 << 20);
        CHECKF(grew <= (long)bound || (beyond_glibc && conf_glibc()),
               "%zu zeroed blocks of %zu bytes, one byte written in each: resident set grew by"
               " %ld bytes (at most %zu)",
               count, bytes, grew, bound);
        for (size_t i = 0; i < count; i++) free(blocks[i]);
    } else {
        CHECK(strcmp(argv[1], "dense") == 0);
        unsigned char *a = calloc(1, bytes);
        CHECK(a != NULL);
        memset(a, 7, bytes);
        size_t before = rss_bytes();
        unsigned char *b = calloc(1, bytes);
        CHECK(b != NULL);
        grew = (long)rss_bytes() - (long)before;
        for (size_t i = 0; i < bytes; i += 4096) CHECKF(b[i] == 0, "byte %zu not zeroed", i);
        if (!conf_glibc() && populate_honoured())
            CHECKF(grew >= (long)(bytes / 2),
                   "a zeroed block after one written whole: resident set grew by %ld bytes at"
                   " calloc, not about %zu",
                   grew, bytes);
        free(a);
        free(b);
    }
    conf_say("calloc_sparse ok grew=%ld mode=%s\n", grew, conf_mode());
    return 0;
}
