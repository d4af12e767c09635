/* A program that locks its memory (`mlockall(MCL_CURRENT | MCL_FUTURE)`: a daemon that must
 * not be paged out, such as `chronyd -m`, `memcached -k` or tor with `DisableAllSwap`) makes
 * every page of every readable mapping resident, touched or not, and every later mapping
 * resident whole. Before session 75 the page heap made its 32 MiB chunk read-write whole: a
 * program using a few kilobytes had 46 MB resident and locked after `mlockall` (glibc's malloc
 * 2.4 MB, jemalloc and tcmalloc 16.6, mimalloc 2.0 35.5). A chunk is now reserved and made
 * read-write 2 MiB at a time, as the heap needs it.
 *
 * usage: mlock_small KIB
 *   Allocates a few blocks, locks the process's memory, then allocates KIB KiB more in blocks
 *   of 1,000 bytes, written whole. The resident set may grow from its size before the lock by
 *   at most the bytes allocated plus 16 MiB plus 512 KiB per configured CPU: the allocator's
 *   own tables (its `.bss`, a page-map leaf, span records, the per-CPU slabs) and a step of the
 *   heap. A process that may not lock that much (no CAP_IPC_LOCK and a small
 *   RLIMIT_MEMLOCK) is told so and skips the check.
 *
 * Prints "mlock_small ok grew=<bytes> bound=<bytes> mode=..." or "mlock_small ok skipped: ...". */
#include "conf.h"

#include <sys/mman.h>

int main(int argc, char **argv) {
    conf_init("mlock_small", 60);
    CHECK(argc == 2);
    long kib = atol(argv[1]);
    CHECK(kib > 0);
    char *early[16];
    for (int i = 0; i < 16; i++) {
        early[i] = malloc(24 + 40 * (size_t)i);
        CHECK(early[i] != NULL);
        fill(early[i], 24 + 40 * (size_t)i, (unsigned)i);
    }
    size_t before = rss_bytes();
    if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
        printf("mlock_small ok skipped: mlockall refused (%s) mode=%s\n", strerror(errno),
               conf_mode());
        return 0;
    }
    long n = kib * 1024 / 1000;
    char **blocks = malloc((size_t)n * sizeof *blocks);
    CHECK(blocks != NULL);
    for (long i = 0; i < n; i++) {
        blocks[i] = malloc(1000);
        CHECK(blocks[i] != NULL);
        fill(blocks[i], 1000, (unsigned)i);
    }
    size_t grew = rss_bytes() - before;
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    CHECK(cpus > 0);
    size_t bound = (size_t)n * 1000 + (16u << 20) + (size_t)cpus * (512u << 10);
    CHECKF(grew <= bound, "the resident set grew by %zu bytes after mlockall, more than %zu",
           grew, bound);
    for (long i = 0; i < n; i++) {
        CHECK(verify(blocks[i], 1000, (unsigned)i) == (size_t)-1);
        free(blocks[i]);
    }
    for (int i = 0; i < 16; i++) {
        CHECK(verify(early[i], 24 + 40 * (size_t)i, (unsigned)i) == (size_t)-1);
        free(early[i]);
    }
    free(blocks);
    printf("mlock_small ok grew=%zu bound=%zu mode=%s\n", grew, bound, conf_mode());
    return 0;
}
