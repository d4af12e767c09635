/* Issue 12's contract, speed not bought with memory: buffers grown by realloc past the size
 * the page heap serves (32 MiB; larger blocks are mappings of their own) must not leave their
 * old pages resident beside the new mappings. A breaker run (session 73) grew 8 buffers by 100
 * bytes at a time, interleaved, to 40 MiB: rseqmalloc peaked at 663 MB, glibc's malloc at 331
 * (jemalloc 418, mimalloc 2.0 454). The large spans each buffer left behind on its way up
 * stayed resident for decay_ms once the buffers had moved into huge mappings. A block realloc
 * moves into a huge mapping now gives its old span's pages back at once.
 *
 * usage: grow_past_huge MIB STEP BUFFERS RATIO
 *   BUFFERS buffers grown side by side by STEP bytes a realloc to MIB MiB; the byte at each
 *   step's end is checked when all are grown. The peak resident set (getrusage) may exceed
 *   where it started by at most RATIO/10 times the live bytes at the end, plus 16 MiB.
 *
 * Prints "grow_past_huge ok grew=<bytes> live=<bytes> mode=..." */
#include "conf.h"

#include <sys/resource.h>

static long peak_rss_bytes(void) {
    struct rusage ru;
    CHECK(getrusage(RUSAGE_SELF, &ru) == 0);
    return ru.ru_maxrss * 1024;
}

int main(int argc, char **argv) {
    conf_init("grow_past_huge", 60);
    CHECK(argc == 5);
    size_t max = (size_t)atol(argv[1]) << 20, step = (size_t)atol(argv[2]);
    int nbuf = atoi(argv[3]), ratio = atoi(argv[4]);
    CHECK(max > 0 && step > 0 && nbuf > 0 && nbuf <= 64 && ratio > 0);
    unsigned char *buf[64] = {0};
    long start = (long)rss_bytes();
    size_t n = 0;
    while (n + step <= max) {
        n += step;
        for (int i = 0; i < nbuf; i++) {
            unsigned char *p = realloc(buf[i], n);
            CHECKF(p != NULL, "realloc of buffer %d to %zu bytes failed", i, n);
            p[n - 1] = (unsigned char)(n / step + (size_t)i);
            buf[i] = p;
        }
    }
    for (int i = 0; i < nbuf; i++) {
        for (size_t at = step; at <= n; at += step)
            CHECKF(buf[i][at - 1] == (unsigned char)(at / step + (size_t)i),
                   "buffer %d: byte %zu lost", i, at - 1);
    }
    long grew = peak_rss_bytes() - start, live = (long)(n * (size_t)nbuf);
    long bound = live / 10 * ratio + (16L << 20);
    CHECKF(grew <= bound,
           "%d buffers grown by realloc %zu bytes at a time to %zu bytes: the resident set peaked"
           " %ld bytes above its start for %ld live (at most %ld)",
           nbuf, step, n, grew, live, bound);
    for (int i = 0; i < nbuf; i++) free(buf[i]);
    conf_say("grow_past_huge ok grew=%ld live=%ld mode=%s\n", grew, live, conf_mode());
    return 0;
}
