/* Issue 12's contract, speed not bought with memory: many buffers grown by realloc a few bytes
 * at a time (a program's string buffers: perl's `.=`, a server's per-connection buffers) must
 * not keep every size class they pass through resident. A breaker run (session 72) found
 * 20,000 buffers grown by 1-64 bytes a round for 48 rounds (30 MB live at the end) peaking at
 * 96 MB under rseqmalloc (glibc's malloc 36 MB, mimalloc 2.0 52, jemalloc 76): a block that
 * realloc moved out of a class owned spans serve (288-960 B) went onto the per-CPU stack, not
 * onto its span's owned list, so it reached its span only through an overflow, and a span so
 * emptied waited for its owner's sweep, at most one a maintenance tick (250 ms at the default
 * decay), longer than the whole run. Each class the buffers passed kept its spans.
 *
 * usage: regrow BUFFERS ROUNDS RESET STEP RATIO
 *   Each round grows every buffer by 1 to STEP bytes (a fixed pattern) with realloc and writes
 *   the new bytes; with RESET > 0 a buffer is freed (emptied) every RESET-th round, staggered.
 *   The resident set, sampled after every round, may grow above where it started by at most
 *   RATIO/10 times the live bytes' high-water mark, plus 4 MiB. Every buffer's bytes are
 *   checked at the end.
 *
 * Prints "regrow ok peak_live=<bytes> grew=<bytes> mode=..." */
#include "conf.h"

/* Bytes round `r` adds to buffer `b`: 1 to `step`, each value as often over `step` rounds. */
static size_t added(long r, long b, long step) { return 1 + (size_t)((r * 31 + b * 7) % step); }

/* The byte round `r` writes into buffer `b`. */
static unsigned char mark(long r, long b) { return (unsigned char)(r * 13 + b * 5 + 1); }

/* Whether round `r` empties buffer `b`. */
static int emptied(long r, long b, long reset) { return reset > 0 && (r + b) % reset == 0; }

int main(int argc, char **argv) {
    conf_init("regrow", 120);
    CHECK(argc == 6);
    long nbuf = atol(argv[1]), rounds = atol(argv[2]), reset = atol(argv[3]);
    long step = atol(argv[4]), ratio = atol(argv[5]);
    CHECK(nbuf > 0 && rounds > 0 && reset >= 0 && step > 0 && ratio > 0);
    unsigned char **buf = calloc((size_t)nbuf, sizeof *buf);
    size_t *len = calloc((size_t)nbuf, sizeof *len);
    CHECK(buf != NULL && len != NULL);
    size_t start = rss_bytes(), live = 0, peak_live = 0, peak_grew = 0;
    for (long r = 0; r < rounds; r++) {
        for (long b = 0; b < nbuf; b++) {
            size_t add = added(r, b, step);
            unsigned char *p = realloc(buf[b], len[b] + add);
            CHECKF(p != NULL, "realloc of buffer %ld to %zu bytes failed", b, len[b] + add);
            memset(p + len[b], mark(r, b), add);
            buf[b] = p;
            len[b] += add;
            live += add;
            if (emptied(r, b, reset)) {
                live -= len[b];
                free(buf[b]);
                buf[b] = NULL;
                len[b] = 0;
            }
        }
        if (live > peak_live) peak_live = live;
        size_t now = rss_bytes();
        if (now > start && now - start > peak_grew) peak_grew = now - start;
    }
    /* Each buffer holds, in order, what the rounds since it was last emptied added. */
    for (long b = 0; b < nbuf; b++) {
        long from = 0;
        for (long r = 0; r < rounds; r++)
            if (emptied(r, b, reset)) from = r + 1;
        size_t at = 0;
        for (long r = from; r < rounds; r++) {
            size_t add = added(r, b, step);
            for (size_t i = 0; i < add; i++)
                CHECKF(buf[b][at + i] == mark(r, b), "buffer %ld: byte %zu lost", b, at + i);
            at += add;
        }
        CHECKF(at == len[b], "buffer %ld: %zu bytes, not %zu", b, len[b], at);
        free(buf[b]);
    }
    size_t bound = peak_live / 10 * (size_t)ratio + (4u << 20);
    CHECKF(peak_grew <= bound,
           "%ld buffers grown by realloc (%ld rounds of 1-%ld bytes): resident set grew by %zu"
           " bytes for %zu live at most (at most %zu)",
           nbuf, rounds, step, peak_grew, peak_live, bound);
    free(buf);
    free(len);
    conf_say("regrow ok peak_live=%zu grew=%zu mode=%s\n", peak_live, peak_grew, conf_mode());
    return 0;
}
