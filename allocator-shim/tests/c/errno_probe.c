/* Every allocation entry point's failure paths (and a few successes): the return value and
 * errno, one line per case, so that the harness can compare the output under glibc's malloc
 * with the output under librseqmalloc. errno is set to EDOM before every call: a line that
 * ends in EDOM means the call left errno alone.
 *
 * Compile with -fno-builtin: GCC assumes that posix_memalign leaves errno alone and folds
 * the read of errno after it away.
 *
 * usage: errno_probe        (prints the lines; no check of its own) */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static size_t opaque(size_t v) {
    __asm__ volatile("" : "+r"(v));
    return v;
}

static const char *errname(int e) {
    switch (e) {
    case 0: return "0";
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    case EDOM: return "EDOM(unchanged)";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "errno %d", e);
        return buf;
    }
    }
}

static void ptr_line(const char *what, void *p, int e) {
    printf("%-44s %-8s %s\n", what, p ? "pointer" : "NULL", errname(e));
    free(p);
}

#define PTR(what, call)                                                                        \
    do {                                                                                       \
        errno = EDOM;                                                                          \
        void *p_ = (call);                                                                     \
        int e_ = errno;                                                                        \
        ptr_line(what, p_, e_);                                                                \
    } while (0)

#define INT(what, call)                                                                        \
    do {                                                                                       \
        errno = EDOM;                                                                          \
        int r_ = (call);                                                                       \
        int e_ = errno;                                                                        \
        printf("%-44s %-8s %s\n", what, errname(r_), errname(e_));                             \
    } while (0)

/* realloc-like failure: NULL with ENOMEM and the old block untouched. */
static void realloc_line(const char *what, int array, size_t n, size_t size) {
    char *old = malloc(100);
    memset(old, 0x5a, 100);
    errno = EDOM;
    void *p = array ? reallocarray(old, n, size) : realloc(old, size);
    int e = errno;
    int kept = 1;
    for (int i = 0; i < 100; i++) kept &= old[i] == 0x5a;
    printf("%-44s %-8s %s%s\n", what, p ? "pointer" : "NULL", errname(e),
           p ? "" : kept ? " old kept" : " OLD CHANGED");
    free(p ? p : old);
}

static void posix_memalign_line(const char *what, size_t align, size_t size) {
    void *p = (void *)1;
    errno = EDOM;
    int r = posix_memalign(&p, align, size);
    int e = errno;
    printf("%-44s %-8s %s%s\n", what, errname(r), errname(e),
           r == 0 ? "" : p == (void *)1 ? " memptr kept" : " MEMPTR CHANGED");
    if (r == 0) free(p);
}

static void impossible_sizes(void) {
    const size_t max = opaque(SIZE_MAX), half = opaque(SIZE_MAX / 2);
    PTR("malloc(SIZE_MAX)", malloc(max));
    PTR("malloc(SIZE_MAX/2)", malloc(half));
    PTR("malloc(PTRDIFF_MAX+1)", malloc(half + 1));
    PTR("calloc(SIZE_MAX/2, 3) (overflow)", calloc(half, 3));
    PTR("calloc(1, SIZE_MAX)", calloc(1, max));
    PTR("calloc(SIZE_MAX, 0)", calloc(max, 0));
    realloc_line("realloc(p, SIZE_MAX)", 0, 1, max);
    realloc_line("realloc(p, SIZE_MAX/2)", 0, 1, half);
    PTR("realloc(NULL, SIZE_MAX)", realloc(NULL, max));
    realloc_line("reallocarray(p, SIZE_MAX/2, 3) (overflow)", 1, half, 3);
    realloc_line("reallocarray(p, 1, SIZE_MAX)", 1, 1, max);
    PTR("reallocarray(NULL, SIZE_MAX/2, 3)", reallocarray(NULL, half, 3));
    posix_memalign_line("posix_memalign(3, 16) (bad alignment)", opaque(3), 16);
    posix_memalign_line("posix_memalign(0, 16) (bad alignment)", opaque(0), 16);
    posix_memalign_line("posix_memalign(24, 16) (bad alignment)", opaque(24), 16);
    posix_memalign_line("posix_memalign(64, SIZE_MAX)", 64, max);
    posix_memalign_line("posix_memalign(4096, SIZE_MAX/2)", 4096, half);
    posix_memalign_line("posix_memalign(2^63, 16)", opaque((size_t)1 << 63), 16);
    PTR("aligned_alloc(3, 16) (not a power of two)", aligned_alloc(opaque(3), 16));
    PTR("aligned_alloc(0, 16)", aligned_alloc(opaque(0), 16));
    PTR("aligned_alloc(64, SIZE_MAX)", aligned_alloc(64, max));
    PTR("aligned_alloc(2^63, 16)", aligned_alloc(opaque((size_t)1 << 63), 16));
    PTR("memalign(SIZE_MAX, 16) (alignment too big)", memalign(max, 16));
    PTR("memalign(2^63 + 1, 16)", memalign(opaque(((size_t)1 << 63) + 1), 16));
    PTR("memalign(64, SIZE_MAX)", memalign(64, max));
    PTR("memalign(2^63, 16)", memalign(opaque((size_t)1 << 63), 16));
    PTR("valloc(SIZE_MAX)", valloc(max));
    PTR("valloc(SIZE_MAX - 4095)", valloc(max - 4095));
    PTR("pvalloc(SIZE_MAX)", pvalloc(max));
    PTR("pvalloc(SIZE_MAX - 4095) (rounding overflows)", pvalloc(max - 4095));
}

static void successes(void) {
    PTR("malloc(0)", malloc(opaque(0)));
    PTR("malloc(100)", malloc(opaque(100)));
    PTR("malloc(100000)", malloc(opaque(100000)));
    PTR("malloc(40 MiB)", malloc(opaque(40 << 20)));
    PTR("calloc(1000, 1000)", calloc(opaque(1000), 1000));
    PTR("calloc(0, 0)", calloc(opaque(0), 0));
    PTR("memalign(3, 16) (rounded up)", memalign(opaque(3), 16));
    PTR("memalign(4096, 100)", memalign(opaque(4096), 100));
    PTR("valloc(100)", valloc(opaque(100)));
    PTR("pvalloc(0)", pvalloc(opaque(0)));
    PTR("aligned_alloc(64, 100)", aligned_alloc(opaque(64), 100));
    posix_memalign_line("posix_memalign(64, 100)", 64, 100);
    posix_memalign_line("posix_memalign(8, 0)", 8, 0);
    {
        void *p = malloc(100);
        errno = EDOM;
        void *q = realloc(p, opaque(0));
        int e = errno;
        printf("%-44s %-8s %s\n", "realloc(p, 0) (frees)", q ? "pointer" : "NULL", errname(e));
        free(q);
    }
    {
        void *p = malloc(100);
        errno = EDOM;
        p = realloc(p, opaque(1 << 20));
        int e = errno;
        printf("%-44s %-8s %s\n", "realloc(p, 1 MiB)", p ? "pointer" : "NULL", errname(e));
        errno = EDOM;
        free(p);
        printf("%-44s %-8s %s\n", "free(p)", "-", errname(errno));
    }
    errno = EDOM;
    free(NULL);
    printf("%-44s %-8s %s\n", "free(NULL)", "-", errname(errno));
    errno = EDOM;
    size_t u = malloc_usable_size(NULL);
    printf("%-44s %-8zu %s\n", "malloc_usable_size(NULL)", u, errname(errno));
}

/* Out of address space (RLIMIT_AS), in a child: every entry point fails with ENOMEM. */
static void out_of_address_space(void) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) abort();
    if (pid == 0) {
        size_t pages = 0, rss = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%zu %zu", &pages, &rss) != 2) abort();
        fclose(f);
        struct rlimit lim;
        getrlimit(RLIMIT_AS, &lim);
        lim.rlim_cur = pages * 4096 + (64u << 20);
        if (setrlimit(RLIMIT_AS, &lim) != 0) abort();
        const size_t big = opaque((size_t)512 << 20);
        PTR("RLIMIT_AS: malloc(512 MiB)", malloc(big));
        PTR("RLIMIT_AS: calloc(1, 512 MiB)", calloc(1, big));
        realloc_line("RLIMIT_AS: realloc(p, 512 MiB)", 0, 1, big);
        realloc_line("RLIMIT_AS: reallocarray(p, 512, 1 MiB)", 1, 512, 1 << 20);
        posix_memalign_line("RLIMIT_AS: posix_memalign(4096, 512 MiB)", 4096, big);
        PTR("RLIMIT_AS: aligned_alloc(4096, 512 MiB)", aligned_alloc(4096, big));
        PTR("RLIMIT_AS: memalign(64, 512 MiB)", memalign(64, big));
        PTR("RLIMIT_AS: valloc(512 MiB)", valloc(big));
        PTR("RLIMIT_AS: pvalloc(512 MiB)", pvalloc(big));
        fflush(stdout);
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        printf("RLIMIT_AS child failed (status %d)\n", status);
}

/* mallopt's answers for each parameter glibc knows (and some it does not), last: glibc's own
 * mallopt changes how its malloc behaves from then on. */
static void mallopt_answers(void) {
    static const struct {
        int param, value;
        const char *name;
    } cases[] = {
        {M_MXFAST, 0, "M_MXFAST, 0"},
        {M_MXFAST, 160, "M_MXFAST, 160"},
        {M_MXFAST, 161, "M_MXFAST, 161"},
        {M_MXFAST, -1, "M_MXFAST, -1"},
        {2, 5, "M_NLBLKS, 5"},
        {3, 5, "M_GRAIN, 5"},
        {4, 5, "M_KEEP, 5"},
        {M_TRIM_THRESHOLD, 1 << 20, "M_TRIM_THRESHOLD, 1 MiB"},
        {M_TRIM_THRESHOLD, -1, "M_TRIM_THRESHOLD, -1"},
        {M_TOP_PAD, 4096, "M_TOP_PAD, 4096"},
        {M_MMAP_THRESHOLD, 1 << 20, "M_MMAP_THRESHOLD, 1 MiB"},
        {M_MMAP_THRESHOLD, 32 << 20, "M_MMAP_THRESHOLD, 32 MiB"},
        {M_MMAP_THRESHOLD, (32 << 20) + 1, "M_MMAP_THRESHOLD, 32 MiB + 1"},
        {M_MMAP_THRESHOLD, -1, "M_MMAP_THRESHOLD, -1"},
        {M_MMAP_MAX, 1000, "M_MMAP_MAX, 1000"},
        {M_CHECK_ACTION, 3, "M_CHECK_ACTION, 3"},
        {M_PERTURB, 0, "M_PERTURB, 0"},
        {M_ARENA_TEST, 8, "M_ARENA_TEST, 8"},
        {M_ARENA_TEST, 0, "M_ARENA_TEST, 0"},
        {M_ARENA_MAX, 2, "M_ARENA_MAX, 2"},
        {M_ARENA_MAX, -1, "M_ARENA_MAX, -1"},
        {12345, 1, "12345 (unknown), 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char what[64];
        snprintf(what, sizeof what, "mallopt(%s)", cases[i].name);
        errno = EDOM;
        int r = mallopt(cases[i].param, cases[i].value);
        int e = errno;
        printf("%-44s %-8d %s\n", what, r, errname(e));
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    impossible_sizes();
    successes();
    out_of_address_space();
    mallopt_answers();
    return 0;
}
