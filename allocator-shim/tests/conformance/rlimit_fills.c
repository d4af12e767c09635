/* Issue 11, item 10 (kind), found again by a breaker run in session 70: under an address-space
 * (or data) limit, memory the program freed serves a block as long as glibc serves, without
 * malloc_trim.
 *
 * With the limit (argv[1]: "as" for RLIMIT_AS, "data" for RLIMIT_DATA) set 300 MiB above the
 * process's current use, twice: fill with blocks of 16 B, 100 B, 1,000 B, 5,000 B and
 * 40,000 B in turn, each size until malloc returns NULL (with errno ENOMEM) or 2,000,000 blocks,
 * freeing each fill before the next; then malloc(120 MiB) must succeed (glibc: yes). The memory
 * freed sits in caches, in partly used spans and in free runs too short for the block; before
 * session 70 the block failed in every run, in every mode (mostly in round 2). Then each fill of
 * the second round must get at least 99 % of the first's count (glibc: the same counts), and
 * a block served must leave errno as it was.
 * Each fill's count is printed (glibc's fills are the reference).
 *
 * usage: rlimit_fills as|data     prints "rlimit_fills <as|data> ok counts=<n>,... mode=<mode>" */
#include "conf.h"

#include <sys/resource.h>

static const size_t MiB = (size_t)1 << 20;
static const long MAX_BLOCKS = 2000000;

/* Fills with `size`-byte blocks (chained through their first word) until malloc returns NULL
 * or MAX_BLOCKS, touching each block's first page; frees them all; returns the count. */
static long fill_and_free(size_t size) {
    void *head = NULL;
    long n = 0;
    while (n < MAX_BLOCKS) {
        errno = 0;
        void **p = malloc(size);
        if (!p) {
            CHECKF(errno == ENOMEM, "malloc(%zu) returned NULL with errno %d", size, errno);
            break;
        }
        memset(p, 1, size < 4096 ? size : 4096);
        *p = head;
        head = p;
        n++;
    }
    conf_free_chain(head);
    return n;
}

int main(int argc, char **argv) {
    conf_init("rlimit_fills", 60);
    CHECK(argc == 2);
    conf_limit_room(argv[1], 300 * MiB);

    static const size_t sizes[] = {16, 100, 1000, 5000, 40000};
    enum { N = sizeof sizes / sizeof sizes[0] };
    long counts[2][N];
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < N; k++) counts[round][k] = fill_and_free(sizes[k]);
        errno = 0;
        char *big = malloc(120 * MiB);
        CHECKF(big != NULL,
               "round %d: after fills of 16 B to 40,000 B blocks, each freed, malloc(120 MiB) "
               "failed (errno %d)",
               round + 1, errno);
        /* A request served after the OS refused a mapping leaves errno as it was (review,
         * session 70: the refused mmap's ENOMEM stayed). */
        CHECKF(errno == 0, "round %d: malloc(120 MiB) succeeded but set errno to %d", round + 1,
               errno);
        memset(big, 1, 120 * MiB);
        free(big);
    }
    /* The second round's fills get as far as the first's: what the first freed (and the big
     * block) came back for them. */
    for (int k = 0; k < N; k++)
        CHECKF(counts[1][k] >= counts[0][k] / 100 * 99,
               "the second fill of %zu-byte blocks got %ld, the first %ld", sizes[k],
               counts[1][k], counts[0][k]);
    conf_say("rlimit_fills %s ok counts=%ld,%ld,%ld,%ld,%ld then %ld,%ld,%ld,%ld,%ld mode=%s\n",
             argv[1], counts[0][0], counts[0][1], counts[0][2], counts[0][3], counts[0][4],
             counts[1][0], counts[1][1], counts[1][2], counts[1][3], counts[1][4], conf_mode());
    return 0;
}
