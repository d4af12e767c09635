/* Under an RLIMIT_DATA of more than 1 GiB the page heap reserves its chunks inaccessible and
 * makes them read-write 2 MiB at a time, which counts against the limit as the steps open. A
 * program that fills the heap until malloc refuses, frees everything and does it again must
 * get its memory back every round. A review (session 75) found the trim that a refused request
 * runs unmapping part of a chunk after making the whole chunk read-write, with the refusal of
 * that ignored: the chunk stayed tracked with steps that no longer existed, and once its slot
 * was the oldest, every later chunk was refused. malloc(30 MiB) then returned NULL with
 * nothing live, in 8 of 9 of the review's runs.
 *
 * usage: rlimit_data_refill ROUNDS
 *   Sets RLIMIT_DATA to what the process uses plus 1,200 MiB; each round allocates blocks of
 *   64 KiB to 31 MiB (a third with calloc; one byte a page written) until 20 requests were
 *   refused, freeing a random third as it goes, then frees them all (and calls malloc_trim
 *   after the second round); then every size from 64 KiB to 31 MiB in steps of 1 MiB + 4 KiB,
 *   one at a time, must be served, and after the last round 20 blocks of 30 MiB.
 *
 * Prints "rlimit_data_refill ok rounds=<n> peak=<MiB> mode=...". */
#include "conf.h"

#include <malloc.h>

#define MAX_BLOCKS 4096

static void touch(char *p, size_t n) {
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
}

int main(int argc, char **argv) {
    conf_init("rlimit_data_refill", 120);
    CHECK(argc == 2);
    int rounds = atoi(argv[1]);
    CHECK(rounds > 0);
    conf_limit_room("data", 1200u << 20);
    rng_t rng = {0x2545f4914f6cdd1dull};
    static char *blocks[MAX_BLOCKS];
    static size_t sizes[MAX_BLOCKS];
    size_t peak = 0;
    for (int r = 0; r < rounds; r++) {
        int n = 0, refused = 0;
        size_t live = 0;
        while (n < MAX_BLOCKS && refused < 20) {
            size_t size = (64u << 10) + rng_below(&rng, (31u << 20) - (64u << 10));
            char *p = rng_below(&rng, 3) == 0 ? calloc(1, size) : malloc(size);
            if (p == NULL) {
                CHECK(errno == ENOMEM);
                refused++;
                continue;
            }
            touch(p, size);
            blocks[n] = p;
            sizes[n++] = size;
            live += size;
            if (live > peak) peak = live;
            if (rng_below(&rng, 3) == 0) {
                int k = (int)rng_below(&rng, (uint64_t)n);
                free(blocks[k]);
                live -= sizes[k];
                blocks[k] = blocks[--n];
                sizes[k] = sizes[n];
            }
        }
        for (int i = 0; i < n; i++) free(blocks[i]);
        if (r == 1) malloc_trim(0);
        /* With nothing live, every size fits again. */
        for (size_t size = 64u << 10; size < (31u << 20); size += (1u << 20) + 4096) {
            char *p = malloc(size);
            CHECKF(p != NULL, "malloc(%zu) refused with nothing live (round %d)", size, r);
            touch(p, size);
            free(p);
        }
    }
    for (int i = 0; i < 20; i++) {
        char *p = malloc(30u << 20);
        CHECKF(p != NULL, "malloc(30 MiB) refused with nothing live (%d of 20)", i);
        touch(p, 30u << 20);
        free(p);
    }
    printf("rlimit_data_refill ok rounds=%d peak=%zu mode=%s\n", rounds, peak >> 20, conf_mode());
    return 0;
}
