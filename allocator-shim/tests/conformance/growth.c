/* Issue 11, item 9 (kind): every realloc growth path is amortized — a block grown a step at a
 * time moves O(log) times (geometric margin, address space reserved ahead, in place where
 * possible), so the total cost is linear in the final size. Counted, not timed: a "move" is a
 * realloc that returns a different pointer, and "copied" adds the block's size at each move
 * (what a move copies), so copied / reached is the cost per final byte.
 *
 * Four runs, each one block grown by realloc in fixed steps, with a marker word written at
 * the start of every step's new bytes and all markers checked at the end (contents kept across
 * every move):
 *   huge   16 MiB -> 128 MiB in 4 KiB steps (the trigger: 28,672 reallocs)
 *   large  256 KiB -> 16 MiB in 4 KiB steps (page spans growing into huge mappings)
 *   small  16 B -> 256 KiB in 16 B steps (through the size classes)
 *   steps  8 B -> 64 KiB in 8 B steps (a C buffer grown a few bytes at a time: issue 12)
 * and one block shrunk the same way:
 *   shrink 64 KiB -> 16 B in 16 B steps (kept in place down to half its size: issue 12)
 *   large-shrink 300 KiB -> 4 KiB in 4 KiB steps (whole pages kept down to half, past the
 *          largest size class too)
 * A run stops early once it has moved `cap` times (argv[1], default 2000), so a quadratic
 * allocator fails fast; it prints "<run>: moves=<n> reallocs=<n> reached=<bytes>
 * copied=<bytes>" (and, for the shrink runs, "slack=<percent>").
 *
 * usage: growth [cap]     prints the six lines, then "growth done mode=<mode>" */
#include "conf.h"

#include <malloc.h>

static long cap = 2000;

/* A run's counts: reallocs, moves among them, and the bytes the moves copied. */
struct counts {
    long moves, reallocs;
    size_t copied;
};

/* realloc(p, next) of a block holding `size` bytes, counted in `c` (a move copies the smaller
 * of the two sizes); aborts on NULL. */
static unsigned char *resize(const char *name, unsigned char *p, size_t size, size_t next,
                             struct counts *c) {
    unsigned char *q = realloc(p, next);
    CHECKF(q != NULL, "%s: realloc to %zu failed", name, next);
    c->reallocs++;
    if (q != p) {
        c->moves++;
        c->copied += size < next ? size : next;
    }
    return q;
}

static void grow(const char *name, size_t from, size_t to, size_t step) {
    unsigned char *p = malloc(from);
    CHECK(p);
    memset(p, 0x33, from);
    size_t size = from;
    struct counts c = {0};
    while (size < to && c.moves < cap) {
        size_t next = size + step;
        unsigned char *q = resize(name, p, size, next, &c);
        if (q != p) {
            /* The first bytes and the last marker survived the move. */
            CHECK(q[0] == 0x33);
            if (size > from) {
                uint64_t m;
                memcpy(&m, q + size - step, 8);
                CHECKF(m == (uint64_t)(size - step), "%s: marker at %zu lost in a move", name,
                       size - step);
            }
        }
        p = q;
        uint64_t m = size;
        memcpy(p + size, &m, step < 8 ? step : 8);
        size = next;
    }
    for (size_t at = from; at + step <= size; at += step) {
        uint64_t m = 0;
        memcpy(&m, p + at, step < 8 ? step : 8);
        CHECKF(step < 8 || m == (uint64_t)at, "%s: marker at %zu is %#lx", name, at,
               (unsigned long)m);
    }
    for (size_t i = 0; i < from; i++) CHECK(p[i] == 0x33);
    free(p);
    conf_say("%s: moves=%ld reallocs=%ld reached=%zu copied=%zu\n", name, c.moves, c.reallocs,
             size, c.copied);
}

/* One block shrunk by realloc in fixed steps, from `from` bytes down to `to` (`from - to` a
 * multiple of `step`), every byte a function of its offset and checked at the end (contents
 * kept across every move). A block stays in place down to half its size, so it moves about
 * once per halving and never holds more than about twice what was asked: "slack" is the
 * largest malloc_usable_size seen over the size asked, in percent. */
static void shrink(const char *name, size_t from, size_t to, size_t step) {
    CHECK(from >= to && (from - to) % step == 0);
    unsigned char *p = malloc(from);
    CHECK(p);
    for (size_t i = 0; i < from; i++) p[i] = (unsigned char)(i * 7 + 1);
    size_t size = from, slack = 100;
    struct counts c = {0};
    while (size > to && c.moves < cap) {
        size_t next = size - step;
        unsigned char *q = resize(name, p, size, next, &c);
        if (q != p)
            CHECKF(q[next - 1] == (unsigned char)((next - 1) * 7 + 1),
                   "%s: byte %zu lost in a move", name, next - 1);
        p = q;
        size = next;
        size_t held = malloc_usable_size(p) * 100 / size;
        if (held > slack) slack = held;
    }
    for (size_t i = 0; i < size; i++)
        CHECKF(p[i] == (unsigned char)(i * 7 + 1), "%s: byte %zu lost", name, i);
    free(p);
    conf_say("%s: moves=%ld reallocs=%ld reached=%zu copied=%zu slack=%zu\n", name, c.moves,
             c.reallocs, size, c.copied, slack);
}

int main(int argc, char **argv) {
    conf_init("growth", 60);
    if (argc > 1) cap = atol(argv[1]);
    grow("huge", (size_t)16 << 20, (size_t)128 << 20, 4096);
    grow("large", (size_t)256 << 10, (size_t)16 << 20, 4096);
    grow("small", 16, (size_t)256 << 10, 16);
    grow("steps", 8, (size_t)64 << 10, 8);
    shrink("shrink", (size_t)64 << 10, 16, 16);
    shrink("large-shrink", (size_t)300 << 10, 4096, 4096);
    conf_say("growth done mode=%s\n", conf_mode());
    return 0;
}
