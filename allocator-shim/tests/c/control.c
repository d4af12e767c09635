/* rseqmalloc_ctl, and glibc's mallopt and mallinfo answered by librseqmalloc.
 *
 * usage: control     prints "control ok mode=..." */
#include "common.h"

#include <malloc.h>

#include "rseqmalloc.h"

static const char *ctl(const char *command) {
    static char out[1024];
    int r = rseqmalloc_ctl(command, out, sizeof out);
    CHECKF(r == 0, "rseqmalloc_ctl(\"%s\") = %d", command, r);
    return out;
}

int main(void) {
    test_init(60);
    char small[4];
    /* Reading, setting, listing options. */
    CHECK(strcmp(ctl("version"), RSEQMALLOC_VERSION) == 0);
    CHECK(strcmp(ctl(" decay_ms "), "1000") == 0);
    CHECK(strcmp(ctl("decay_ms = 250"), "") == 0);
    CHECK(strcmp(ctl("decay_ms"), "250") == 0);
    CHECK(strstr(ctl("options"), ",decay_ms=250,") != NULL);
    CHECK(strcmp(ctl("stats_classes=on"), "") == 0 && strcmp(ctl("stats_classes"), "on") == 0);
    CHECK(rseqmalloc_ctl("decay_ms=soon", NULL, 0) == EINVAL);
    CHECK(rseqmalloc_ctl("rseq=off", NULL, 0) == EPERM);
    CHECK(rseqmalloc_ctl("no_such_key", NULL, 0) == ENOENT);
    CHECK(rseqmalloc_ctl("stats.nothing", NULL, 0) == ENOENT);
    CHECK(rseqmalloc_ctl("version", small, sizeof small) == ERANGE);
    CHECK(rseqmalloc_ctl(NULL, NULL, 0) == EINVAL);
    CHECK(strcmp(ctl("decay_ms"), "250") == 0); /* refused commands changed nothing */

    /* mallopt's one meaningful parameter maps to dirty_max. */
    CHECK(mallopt(M_TRIM_THRESHOLD, 65536) == 1 && strcmp(ctl("dirty_max"), "64k") == 0);
    CHECK(mallopt(M_TRIM_THRESHOLD, -1) == 1 && strcmp(ctl("dirty_max"), "unbounded") == 0);
    CHECK(mallopt(M_MXFAST, 161) == 0 && mallopt(M_ARENA_MAX, 1) == 1);

    /* Statistics agree with mallinfo and mallinfo2. */
    enum { N = 500 };
    static void *keep[N];
    for (int i = 0; i < N; i++) CHECK((keep[i] = malloc(opaque(100))) != NULL);
    struct mallinfo2 m2 = mallinfo2();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo m1 = mallinfo();
#pragma GCC diagnostic pop
    size_t allocated = strtoull(ctl("stats.allocated"), NULL, 10);
    CHECKF(allocated >= N * 112 && m2.uordblks >= N * 112, "%zu %zu", allocated, m2.uordblks);
    CHECK(m1.arena == (int)m2.arena && m1.uordblks > 0);
    CHECK(strtoull(ctl("stats.mapped"), NULL, 10) == m2.arena);

    /* flush: this thread's cache goes to the central lists; purge: every free page back. */
    for (int i = 0; i < N; i++) free(keep[i]);
    size_t flushed = strtoull(ctl("flush"), NULL, 10);
    CHECKF(flushed > 0, "flush moved %zu bytes", flushed);
    (void)strtoull(ctl("purge"), NULL, 10);
    CHECK(mallinfo2().keepcost == 0);
    printf("control ok mode=%s\n", rseqmalloc_rseq_mode());
    return 0;
}
