/* Stack distances of a churn's own data accesses: where an allocator places objects, measured
 * without a clock, so two allocators (or two builds) compare exactly on a noisy machine.
 *
 * One thread keeps S slots of objects of the runner's small sizes (60 % 8-64 B, 30 % 65-256 B,
 * 10 % 257-512 B, as `churn.c` and the runner's `small_size`). A warm-up of OPS / 4
 * replacements, then OPS measured ones: each touches the old object of a random slot (as the
 * churn's check does), frees it, allocates a new one and touches all of it (the fill). The
 * warm-up's touches count towards the distances but not the figures, so a unit's first touch
 * in the measured part is a miss only when it really is far (or new). Every 4 KiB page and every 64-byte line a touch covers is one access; for each access the program
 * computes its LRU stack distance (the number of distinct pages or lines touched since the
 * previous access to the same one; a Fenwick tree over the access times, exact) and counts
 * the accesses at or beyond a few distances, per measured operation:
 *
 *   pages  >= 64     misses of a 64-entry fully associative LRU TLB (an L1 dTLB's size)
 *          >= 1024, >= 2048   the same for an L2 TLB's sizes
 *   lines  >= 512    misses of a 32 KiB fully associative LRU cache (an L1D's size)
 *          >= 8192   512 KiB (an L2's), and >= 512K lines: 32 MiB (an L3's)
 *
 * Only the program's accesses count, not the allocator's own: the figures compare placement
 * (which addresses the program gets back, in what order), the part of an allocator's cost that
 * shows up in the program's loads (docs/design.md, "Object locality across threads"). Real
 * caches are set associative and prefetch, so these are a model, not a prediction of time.
 *
 *   cc -O2 -o /tmp/stack_distance benches/c/stack_distance.c
 *   env LD_PRELOAD=target/release/librseqmalloc.so /tmp/stack_distance
 *   env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /tmp/stack_distance
 *
 * Arguments (optional): slots S (default 50,000: `single-churn`'s live set), measured
 * operations OPS (2,000,000). Deterministic for a given allocator and build, except where the
 * allocator acts on a clock: rseqmalloc's maintenance ticks (every `decay_ms` / 4) move its
 * figures by a few percent between runs (`RSEQMALLOC_OPTIONS=decay_ms=100000` makes them
 * repeat exactly, and shows placement without the ticks), so report a range over runs.
 *
 * `stack_distance bursts [ROUNDS]` measures the runner's `mixed-bursts` loop on one thread
 * instead (ROUNDS rounds, default 1,000, the first quarter the warm-up): a burst of 1,000-3,999
 * objects whose sizes lie in a 128-byte band moving up 40 bytes a round, each written at its
 * first and last 8 bytes when allocated and read there before its free, the burst freed
 * forwards, backwards or evens-then-odds in turn. An operation is one object (its allocation
 * and its free); the middle line limit is 16,384 lines (1 MiB, this machine's L2), not the
 * churn's 8,192, so the two modes' figures do not compare. The tool runs about 70x slower per
 * round than the workload, so an allocator's clock-driven work (above) comes about 70x more
 * often per round than in the runner. Two more lines split the measured allocations' first
 * touches (their first line) that lie 1 MiB or more away: by whether the address last held an
 * object of the same usable size (`malloc_usable_size`: the same class), of another, or none;
 * and by how many objects of the same usable size the round had allocated before (0-31 first:
 * what a per-CPU or per-thread cache typically serves; then 32-127, 128-511, 512 and more). */
#include <inttypes.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "burst_order.h"
#include "small_sizes.h"

/* Open-addressing map from a page or line number to the time of its latest access. */
typedef struct {
    uint64_t *key; /* key + 1; 0 marks an empty cell */
    uint64_t *time;
    uint64_t mask, used;
} Map;

/* Distinct keys a map holds at most: far more than the pages or lines of a heap of 50,000
 * objects of at most 512 B, or of `bursts`' few MiB, or the addresses its objects start at
 * (the map has twice as many cells). */
#define MAX_ITEMS (1u << 22)

static uint64_t *map_slot(Map *m, uint64_t key) {
    uint64_t k = key + 1, h = mix(k) & m->mask;
    while (m->key[h] && m->key[h] != k)
        h = (h + 1) & m->mask;
    if (!m->key[h]) {
        if (++m->used > MAX_ITEMS) {
            fprintf(stderr, "stack_distance: more distinct pages or lines than sized for\n");
            exit(1);
        }
        m->key[h] = k;
        m->time[h] = 0;
    }
    return &m->time[h];
}

#define LEVELS 3
typedef struct {
    Map last;
    int64_t *tree; /* Fenwick tree over access times: 1 at each item's latest access */
    uint64_t len, now, warm; /* tree size; accesses so far, and in the warm-up */
    uint64_t limit[LEVELS];
    uint64_t beyond[LEVELS]; /* measured accesses at or beyond each limit, first ones included */
} Distances;

static void *zalloc(size_t n, size_t size) {
    void *p = calloc(n, size);
    if (!p) {
        fprintf(stderr, "stack_distance: out of memory\n");
        exit(1);
    }
    return p;
}

/* An empty map of `MAX_ITEMS` keys (twice as many cells). */
static void map_init(Map *m) {
    uint64_t cells = 2 * (uint64_t)MAX_ITEMS;
    m->key = zalloc(cells, 8);
    m->time = zalloc(cells, 8);
    m->mask = cells - 1;
    m->used = 0;
}

static void init(Distances *d, uint64_t accesses, const uint64_t limit[LEVELS]) {
    map_init(&d->last);
    d->len = accesses + 2;
    d->tree = zalloc(d->len + 1, 8);
    d->now = d->warm = 0;
    memcpy(d->limit, limit, sizeof d->limit);
    memset(d->beyond, 0, sizeof d->beyond);
}

static void tree_add(Distances *d, uint64_t i, int64_t v) {
    for (; i <= d->len; i += i & -i)
        d->tree[i] += v;
}

static int64_t tree_sum(const Distances *d, uint64_t i) {
    int64_t s = 0;
    for (; i > 0; i -= i & -i)
        s += d->tree[i];
    return s;
}

/* Records an access to `item`; returns its stack distance (UINT64_MAX for a first access). */
static uint64_t access_item(Distances *d, uint64_t item) {
    uint64_t *last = map_slot(&d->last, item);
    uint64_t t = ++d->now;
    if (t >= d->len) {
        fprintf(stderr, "stack_distance: more accesses than sized for\n");
        exit(1);
    }
    uint64_t distance = UINT64_MAX; /* a first access: beyond every limit */
    if (*last) {
        distance = (uint64_t)(tree_sum(d, t - 1) - tree_sum(d, *last));
        tree_add(d, *last, -1);
    }
    for (int k = 0; k < LEVELS; k++)
        d->beyond[k] += distance >= d->limit[k];
    *last = t;
    tree_add(d, t, 1);
    return distance;
}

static Distances pages, lines;

/* Touches `len` bytes at `p`; returns the stack distance of its first line. */
static uint64_t touch(const uint8_t *p, size_t len) {
    uint64_t first = (uint64_t)p, last = first + len - 1;
    for (uint64_t x = first >> 12; x <= last >> 12; x++)
        access_item(&pages, x);
    uint64_t distance = access_item(&lines, first >> 6);
    for (uint64_t x = (first >> 6) + 1; x <= last >> 6; x++)
        access_item(&lines, x);
    return distance;
}

static uint8_t *fresh(size_t len) {
    uint8_t *p = malloc(len);
    if (!p) {
        fprintf(stderr, "stack_distance: malloc(%zu) failed\n", len);
        exit(1);
    }
    memset(p, 0x5a, len);
    return p;
}

static void print_figures(double n) {
    printf("per operation: pages %.3f, at >= %" PRIu64 " %.3f, >= %" PRIu64 " %.3f, >= %" PRIu64
           " %.4f; lines %.3f, at >= %" PRIu64 " %.3f, >= %" PRIu64 " %.3f, >= %" PRIu64 " %.4f\n",
           (pages.now - pages.warm) / n, pages.limit[0], pages.beyond[0] / n, pages.limit[1],
           pages.beyond[1] / n, pages.limit[2], pages.beyond[2] / n, (lines.now - lines.warm) / n,
           lines.limit[0], lines.beyond[0] / n, lines.limit[1], lines.beyond[1] / n,
           lines.limit[2], lines.beyond[2] / n);
}

/* The warm-up's accesses stay in the distances, out of the figures. */
static void end_warm_up(void) {
    memset(pages.beyond, 0, sizeof pages.beyond);
    memset(lines.beyond, 0, sizeof lines.beyond);
    pages.warm = pages.now;
    lines.warm = lines.now;
}

/* The object's first and last 8 bytes: what `mixed-bursts` writes and later checks; returns
 * the stack distance of the first. */
static uint64_t touch_ends(const uint8_t *p, size_t len) {
    uint64_t distance = touch(p, 8);
    touch(p + len - 8, 8);
    return distance;
}

/* `bursts`' split of the allocations whose first touch lies at or past `lines.limit[1]`. */
typedef struct {
    Map last_size;  /* object start -> its usable size (as the map's value) */
    Map round_size; /* usable size -> (round + 1) << 32 | objects of it allocated this round */
    uint64_t by_kind[3], far_by_kind[3]; /* same size as before, another size, a new address */
    uint64_t by_rank[4], far_by_rank[4]; /* the round's objects of its size before: <32, <128, <512, more */
} Split;

static void split_init(Split *sp) {
    map_init(&sp->last_size);
    map_init(&sp->round_size);
    memset(sp->by_kind, 0, sizeof sp->by_kind);
    memset(sp->far_by_kind, 0, sizeof sp->far_by_kind);
    memset(sp->by_rank, 0, sizeof sp->by_rank);
    memset(sp->far_by_rank, 0, sizeof sp->far_by_rank);
}

/* Files the allocation of `p` in round `r` (counted when `measured`), whose first touch was at
 * stack distance `distance`. */
static void split_note(Split *sp, const void *p, long r, uint64_t distance, int measured) {
    uint64_t size = malloc_usable_size((void *)p);
    uint64_t *was = map_slot(&sp->last_size, (uint64_t)p);
    int kind = *was == 0 ? 2 : *was == size ? 0 : 1;
    *was = size;
    uint64_t *seen = map_slot(&sp->round_size, size);
    if (*seen >> 32 != (uint64_t)r + 1)
        *seen = ((uint64_t)r + 1) << 32;
    uint64_t before = (*seen)++ & 0xffffffff;
    int rank = before < 32 ? 0 : before < 128 ? 1 : before < 512 ? 2 : 3;
    if (!measured)
        return;
    int far = distance >= lines.limit[1];
    sp->by_kind[kind]++;
    sp->far_by_kind[kind] += far;
    sp->by_rank[rank]++;
    sp->far_by_rank[rank] += far;
}

static void split_print(const Split *sp, double n) {
    const char *kind[3] = {"same size", "another size", "new address"};
    const char *rank[4] = {"0-31", "32-127", "128-511", "512+"};
    printf("allocations by the address's last size:");
    for (int k = 0; k < 3; k++)
        printf(" %s %.3f (far %.3f)", kind[k], sp->by_kind[k] / n,
               sp->far_by_kind[k] / (double)(sp->by_kind[k] ? sp->by_kind[k] : 1));
    printf("\nallocations by rank of their size in the round:");
    for (int k = 0; k < 4; k++)
        printf(" %s %.3f (far %.3f)", rank[k], sp->by_rank[k] / n,
               sp->far_by_rank[k] / (double)(sp->by_rank[k] ? sp->by_rank[k] : 1));
    printf("\n");
}


static int bursts(long rounds) {
    enum { MAX_BURST = 3999 };
    uint8_t **obj = zalloc(MAX_BURST, sizeof *obj);
    size_t *len = zalloc(MAX_BURST, sizeof *len);
    uint64_t rng = 1;
    /* One page and one line for each of an object's 4 touches (8 aligned bytes). */
    uint64_t most = (uint64_t)rounds * MAX_BURST * 4;
    static Split split;
    split_init(&split);
    init(&pages, most, (const uint64_t[LEVELS]){64, 1024, 2048});
    init(&lines, most, (const uint64_t[LEVELS]){512, 16384, 512 * 1024});
    long warm = rounds / 4, measured = 0;
    for (long r = 0; r < rounds; r++) {
        if (r == warm)
            end_warm_up();
        long n = burst_len(next(&rng));
        size_t start = burst_start(r);
        for (long i = 0; i < n; i++) {
            len[i] = burst_size(start, next(&rng));
            obj[i] = malloc(len[i]);
            if (!obj[i]) {
                fprintf(stderr, "stack_distance: malloc(%zu) failed\n", len[i]);
                return 1;
            }
            split_note(&split, obj[i], r, touch_ends(obj[i], len[i]), r >= warm);
        }
        for (long k = 0; k < n; k++) {
            long i = burst_order(r, k, n);
            touch_ends(obj[i], len[i]);
            free(obj[i]);
        }
        if (r >= warm)
            measured += n;
    }
    print_figures((double)measured);
    split_print(&split, (double)measured);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "bursts") == 0) {
        long rounds = argc > 2 ? atol(argv[2]) : 1000;
        if (rounds < 4) {
            fprintf(stderr, "usage: stack_distance bursts [rounds, at least 4]\n");
            return 2;
        }
        return bursts(rounds);
    }
    long slots = argc > 1 ? atol(argv[1]) : 50000;
    long ops = argc > 2 ? atol(argv[2]) : 2000000;
    if (slots < 1 || ops < 1) {
        fprintf(stderr, "usage: stack_distance [slots] [operations]\n");
        return 2;
    }
    uint8_t **slot = zalloc(slots, sizeof *slot);
    size_t *len = zalloc(slots, sizeof *len);
    uint64_t rng = 1;
    for (long i = 0; i < slots; i++) {
        len[i] = small_size(&rng);
        slot[i] = fresh(len[i]);
    }
    /* An object of at most 512 B covers at most 2 pages and 9 lines: 4 and 18 an operation. */
    long warm = ops / 4, all = warm + ops;
    init(&pages, (uint64_t)all * 4, (const uint64_t[LEVELS]){64, 1024, 2048});
    init(&lines, (uint64_t)all * 18, (const uint64_t[LEVELS]){512, 8192, 512 * 1024});
    for (long k = 0; k < all; k++) {
        if (k == warm)
            end_warm_up();
        long i = (long)(next(&rng) % (uint64_t)slots);
        touch(slot[i], len[i]);
        free(slot[i]);
        len[i] = small_size(&rng);
        slot[i] = fresh(len[i]);
        touch(slot[i], len[i]);
    }
    print_figures((double)ops);
    for (long i = 0; i < slots; i++)
        free(slot[i]);
    return 0;
}
