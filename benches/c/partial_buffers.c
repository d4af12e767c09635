/* Partly used buffers: rounds of 2,000 blocks of random sizes in [LO, LO + SPAN) bytes, each
 * written only in its first 64 bytes (a read buffer that got a short message, a table that
 * stayed small), then all freed. Prints the time and the minor page faults of the rounds.
 *
 * The first round faults in about one page a block under every allocator; what differs is
 * how many fresh pages the later rounds touch, which depends on whether a block of the next
 * round starts on a page an earlier block already used.
 *
 *   cc -O2 -pthread -o /tmp/partial_buffers benches/c/partial_buffers.c
 *   LD_PRELOAD=target/release/librseqmalloc.so /tmp/partial_buffers [ROUNDS [LO [SPAN [IDLE]]]]
 *
 * Defaults: 50 rounds, LO 8192, SPAN 120000, IDLE 0: how many idle threads the program starts
 * first (a program with a thread pool; allocators may treat a multi-threaded process
 * differently). Session 31 (docs/benchmarks.md): rseqmalloc took
 * about 1.8x the page faults of tcmalloc-minimal and 2x those of mimalloc 2.0 over 50 rounds
 * (34,000 against 19,000 and 17,000), equal in the first round. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BLOCKS 2000

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *idle(void *arg) {
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static long minor_faults(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_minflt;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 50;
    size_t lo = argc > 2 ? strtoul(argv[2], 0, 10) : 8192;
    size_t span = argc > 3 ? strtoul(argv[3], 0, 10) : 120000;
    int idle_threads = argc > 4 ? atoi(argv[4]) : 0;
    if (rounds < 1 || lo < 64 || span < 1 || idle_threads < 0) {
        fprintf(stderr, "partial_buffers: ROUNDS >= 1, LO >= 64, SPAN >= 1, IDLE >= 0\n");
        return 2;
    }
    for (int i = 0; i < idle_threads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, idle, NULL) != 0)
            abort();
    }
    static unsigned char *p[BLOCKS];
    uint64_t x = 88172645463325252ull;
    long f0 = minor_faults(), first = 0;
    double t0 = now_ms();
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < BLOCKS; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            p[i] = malloc(lo + x % span);
            if (!p[i])
                abort();
            memset(p[i], (unsigned char)(r + i), 64);
        }
        for (int i = 0; i < BLOCKS; i++) {
            if (p[i][63] != (unsigned char)(r + i))
                abort();
            free(p[i]);
        }
        if (r == 0)
            first = minor_faults() - f0;
    }
    printf("%d rounds of %d blocks of %zu-%zu B: %.1f ms, %ld minor faults (first round %ld)\n",
           rounds, BLOCKS, lo, lo + span - 1, now_ms() - t0, minor_faults() - f0, first);
    return 0;
}
