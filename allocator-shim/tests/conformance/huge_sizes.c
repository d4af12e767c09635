/* Issue 11, item 8 (kind): for the same request in the same environment (overcommit mode,
 * limits), the same answer as glibc — NULL with ENOMEM where glibc gets it, a block where glibc
 * gives one.
 *
 * Prints one line per request: "<call>: ok" or "<call>: NULL <errno>" (posix_memalign: its
 * return value; its errno is item 6's business and not printed). The harness runs the program
 * without LD_PRELOAD (glibc's malloc) and with librseqmalloc in each mode, and compares the
 * transcripts line by line. The memory of a granted block is never touched (it is freed at
 * once), so granted terabytes cost nothing.
 *
 * Requests: powers of two from 1 GiB to 1 PiB, PTRDIFF_MAX, SIZE_MAX, and three sizes around
 * the kernel's heuristic overcommit limit (mode 0: one request larger than RAM + swap fails),
 * through malloc, realloc of a small block, calloc, reallocarray, posix_memalign, aligned_alloc,
 * memalign, valloc and pvalloc; and small blocks at alignments 2^21 .. 2^46 (memalign,
 * posix_memalign, aligned_alloc). With argv[1] = "rlimit-as", the same under RLIMIT_AS set 1 GiB
 * above the address space in use: 256, 512 and 768 MiB must be granted, 2 GiB and more not.
 *
 * usage: huge_sizes [rlimit-as]   prints the transcript, then "huge_sizes done mode=<mode>" */
#include "conf.h"

#include <malloc.h>
#include <sys/resource.h>

static void report(const char *call, size_t n, void *p, int err) {
    if (p) conf_say("%s(%zu): ok\n", call, n);
    else conf_say("%s(%zu): NULL %s\n", call, n, strerror(err));
    free(p);
}

static void try_all(size_t n) {
    errno = 0;
    void *p = malloc(n);
    report("malloc", n, p, errno);

    void *small = malloc(100);
    CHECK(small);
    memset(small, 7, 100);
    errno = 0;
    p = realloc(small, n);
    report("realloc(100 B block)", n, p, errno);
    if (!p) {
        /* A failed realloc leaves the block untouched. */
        for (int i = 0; i < 100; i++) CHECK(((unsigned char *)small)[i] == 7);
        free(small);
    }

    errno = 0;
    p = calloc(n / 4096 ? n / 4096 : 1, 4096);
    report("calloc(n/4096 x 4096)", n, p, errno);
    errno = 0;
    p = reallocarray(NULL, n / 4096 ? n / 4096 : 1, 4096);
    report("reallocarray(NULL, n/4096 x 4096)", n, p, errno);

    p = NULL;
    int rc = posix_memalign(&p, 64, n);
    conf_say("posix_memalign(64, %zu): %s\n", n, rc == 0 ? "ok" : strerror(rc));
    free(p);
    p = NULL;
    rc = posix_memalign(&p, (size_t)2 << 20, n);
    conf_say("posix_memalign(2 MiB, %zu): %s\n", n, rc == 0 ? "ok" : strerror(rc));
    free(p);

    errno = 0;
    p = aligned_alloc(4096, n);
    report("aligned_alloc(4096)", n, p, errno);
    errno = 0;
    p = memalign((size_t)1 << 21, n);
    report("memalign(2 MiB)", n, p, errno);
    errno = 0;
    p = valloc(n);
    report("valloc", n, p, errno);
    errno = 0;
    p = pvalloc(n);
    report("pvalloc", n, p, errno);
}

/* MemTotal + SwapTotal in bytes. */
static size_t ram_plus_swap(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    CHECK(f);
    char line[256];
    size_t total = 0, kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemTotal: %zu kB", &kb) == 1) total += kb * 1024;
        if (sscanf(line, "SwapTotal: %zu kB", &kb) == 1) total += kb * 1024;
    }
    fclose(f);
    CHECK(total > 0);
    return total;
}

/* Address space in use (VmSize) in bytes. */
static size_t vm_size(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f);
    unsigned long pages = 0;
    CHECK(fscanf(f, "%lu", &pages) == 1);
    fclose(f);
    return pages * 4096;
}

int main(int argc, char **argv) {
    conf_init("huge_sizes", 60);
    void *warm = malloc(1);
    free(warm);
    const size_t GiB = (size_t)1 << 30, MiB = (size_t)1 << 20;
    if (argc > 1 && strcmp(argv[1], "rlimit-as") == 0) {
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = vm_size() + GiB;
        CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
        size_t sizes[] = {256 * MiB, 512 * MiB, 768 * MiB, 2 * GiB, 64 * GiB};
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) try_all(sizes[i]);
    } else {
        FILE *f = fopen("/proc/sys/vm/overcommit_memory", "r");
        int mode = -1;
        CHECK(f && fscanf(f, "%d", &mode) == 1);
        fclose(f);
        conf_say("overcommit_memory: %d\n", mode);
        for (size_t n = GiB; n && n <= ((size_t)1 << 50); n *= 4) try_all(n);
        try_all((size_t)PTRDIFF_MAX);
        try_all(SIZE_MAX);
        /* Small blocks at huge alignments: the alignment is what costs address space. */
        for (unsigned k = 21; k <= 46; k += 5) {
            size_t al = (size_t)1 << k;
            errno = 0;
            void *p = memalign(al, 100);
            char call[64];
            snprintf(call, sizeof call, "memalign(2^%u)", k);
            report(call, 100, p, errno);
            p = NULL;
            int rc = posix_memalign(&p, al, (size_t)1 << 20);
            conf_say("posix_memalign(2^%u, 1 MiB): %s\n", k, rc == 0 ? "ok" : strerror(rc));
            free(p);
            errno = 0;
            p = aligned_alloc(al, 4096);
            snprintf(call, sizeof call, "aligned_alloc(2^%u)", k);
            report(call, 4096, p, errno);
        }
        if (mode == 0) {
            size_t limit = ram_plus_swap();
            conf_say("around RAM + swap:\n");
            try_all(limit - 512 * MiB);
            try_all(limit + 64 * MiB);
            try_all(limit + 4 * GiB);
        }
    }
    conf_say("huge_sizes done mode=%s\n", conf_mode());
    return 0;
}
