/* Bad frees abort with one line naming the pointer. Each case runs in a forked child whose
 * stderr goes to a pipe; the parent checks the child died by SIGABRT and that its stderr is
 * exactly one line containing the expected text with the exact pointer (as the core prints
 * it: lower-case hex, no padding).
 *
 * usage: invalid_free             prints "invalid_free ok <n> cases mode=<rseq mode>" */
#include "common.h"

/* Freeing freed or foreign pointers is the point here. */
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"

#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>

static char static_buffer[256];

/* Each case reports the exact line it expects (it knows the pointer) on this pipe, then makes
 * the bad call. */
static int expect_fd = -1;

static void expect_line(const char *what, uintptr_t p) {
    char line[256];
    int n = snprintf(line, sizeof line, "%s %#lx\n", what, (unsigned long)p);
    CHECK(write(expect_fd, line, (size_t)n) == n);
    close(expect_fd);
}

typedef void (*case_fn)(void);

static void interior_small(void) {
    char *p = malloc(opaque(64));
    expect_line("free(): invalid pointer", (uintptr_t)(p + 16));
    free(launder(p + 16));
}

static void interior_large(void) {
    char *p = malloc(opaque(1 << 20));
    expect_line("free(): invalid pointer", (uintptr_t)(p + 8192));
    free(launder(p + 8192));
}

static void interior_huge(void) {
    char *p = malloc(opaque(32 << 20));
    expect_line("free(): invalid pointer", (uintptr_t)(p + 4096));
    free(launder(p + 4096));
}

static void never_allocated_static(void) {
    char *p = static_buffer + 16;
    expect_line("free(): invalid pointer", (uintptr_t)(p));
    free(launder(p));
}

static void never_allocated_stack(void) {
    char local[64];
    expect_line("free(): invalid pointer", (uintptr_t)(local));
    free(launder(local));
}

static void never_allocated_wild(void) {
    char *p = (char *)(uintptr_t)0x123456789ab0ull;
    expect_line("free(): invalid pointer", (uintptr_t)(p));
    free(launder(p));
}

static void double_free_small(void) {
    char *p = malloc(opaque(32));
    expect_line("free(): double free detected", (uintptr_t)(p));
    free(p);
    free(launder(p));
}

static void double_free_small_after_others(void) {
    /* The freed object is no longer on top of any cache when freed again. */
    char *p = malloc(opaque(100));
    expect_line("free(): double free detected", (uintptr_t)(p));
    free(p);
    void *others[200];
    for (int i = 0; i < 200; i++) others[i] = malloc(opaque(100 + (size_t)i));
    for (int i = 0; i < 200; i++) free(others[i]);
    free(launder(p));
}

static void double_free_large(void) {
    char *q = malloc(opaque(300000)); /* keeps p's span from merging with a free neighbour */
    char *p = malloc(opaque(300000));
    char *r = malloc(opaque(300000));
    expect_line("free(): double free detected", (uintptr_t)(p));
    free(p);
    free(launder(p));
    free(q);
    free(r);
}

static void realloc_freed_block_grown_out_of_its_class(void) {
    /* A block above 1 KiB that realloc moves to a larger class skips the caches; the check
     * must not be skipped with them. */
    char *p = malloc(opaque(2000));
    free(p);
    expect_line("realloc(): double free detected", (uintptr_t)(p));
    char *q = realloc(launder(p), 4000);
    free(q);
}

static void free_of_old_pointer_after_realloc_grew_it(void) {
    char *keep = malloc(opaque(2000)); /* keeps the span of p in use */
    char *p = malloc(opaque(2000));
    char *q = realloc(p, 4000);
    expect_line("free(): double free detected", (uintptr_t)(p));
    free(launder(p));
    free(q);
    free(keep);
}

static void realloc_interior(void) {
    char *p = malloc(opaque(64));
    expect_line("realloc(): invalid pointer", (uintptr_t)(p + 16));
    char *q = realloc(launder(p + 16), 100);
    free(q);
}

static void usable_size_interior(void) {
    char *p = malloc(opaque(64));
    expect_line("malloc_usable_size(): invalid pointer", (uintptr_t)(p + 16));
    (void)malloc_usable_size(launder(p + 16));
}

static const struct {
    const char *name;
    case_fn fn;
} cases[] = {
    {"interior_small", interior_small},
    {"interior_large", interior_large},
    {"interior_huge", interior_huge},
    {"never_allocated_static", never_allocated_static},
    {"never_allocated_stack", never_allocated_stack},
    {"never_allocated_wild", never_allocated_wild},
    {"double_free_small", double_free_small},
    {"double_free_small_after_others", double_free_small_after_others},
    {"double_free_large", double_free_large},
    {"realloc_freed_block_grown_out_of_its_class", realloc_freed_block_grown_out_of_its_class},
    {"free_of_old_pointer_after_realloc_grew_it", free_of_old_pointer_after_realloc_grew_it},
    {"realloc_interior", realloc_interior},
    {"usable_size_interior", usable_size_interior},
};

int main(void) {
    test_init(100);
    int n = (int)(sizeof cases / sizeof *cases);
    for (int i = 0; i < n; i++) {
        int err[2], exp[2];
        CHECK(pipe(err) == 0 && pipe(exp) == 0);
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            /* The child computes the expected line (it knows the pointer) and sends it on a
             * second pipe before doing the bad free. */
            close(err[0]);
            close(exp[0]);
            dup2(err[1], 2);
            expect_fd = exp[1];
            cases[i].fn();
            _exit(0); /* not reached: the bad call aborts */
        }
        close(err[1]);
        close(exp[1]);
        char out[4096], expect[256];
        size_t len = 0, elen = 0;
        ssize_t k;
        while ((k = read(exp[0], expect + elen, sizeof expect - 1 - elen)) > 0) elen += (size_t)k;
        expect[elen] = 0;
        while ((k = read(err[0], out + len, sizeof out - 1 - len)) > 0) len += (size_t)k;
        out[len] = 0;
        close(err[0]);
        close(exp[0]);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
               "%s: child status %#x, stderr: %s", cases[i].name, status, out);
        /* Exactly one line on stderr. */
        CHECKF(len > 0 && strchr(out, '\n') == out + len - 1, "%s: stderr is not one line: %s",
               cases[i].name, out);
        CHECKF(strcmp(out, expect) == 0, "%s: stderr %s, expected %s", cases[i].name, out,
               expect);
        printf("%s: %s", cases[i].name, out);
    }
    printf("invalid_free ok %d cases mode=%s\n", n, shim_mode());
    return 0;
}
