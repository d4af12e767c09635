/* Freed elsewhere: one thread, pinned to CPU 0, allocates MIB MiB of SIZE-byte blocks (and
 * writes them); a second thread, pinned to CPU 1, frees them all; repeated ROUNDS times, with
 * rseqmalloc's figures printed after each round (`rseqmalloc_ctl("stats.NAME")`, zero under
 * other allocators). With IDLE seconds, the main thread then sleeps that long, pins itself to
 * CPU 1 and makes four rounds of slow paths there (1 MiB of SIZE-byte blocks allocated and
 * freed, 0.3 s apart), and prints the figures again.
 *
 * Before session 49, the owned spans (257-960 B requests) that the first CPU's slab took
 * stayed with that slab after the frees for as long as it stayed busy (`active` 22 MB of the
 * 20 MiB freed, also after IDLE). Whether the frees are another slab's depends on the
 * concurrency ids the kernel gives the two threads (`mm_cid`): 6 runs in 8 showed it.
 *
 *   cc -O2 -o /tmp/freed_elsewhere benches/c/freed_elsewhere.c -lpthread -ldl
 *   LD_PRELOAD=target/release/librseqmalloc.so /tmp/freed_elsewhere 400 20 1 2
 *
 * Arguments: SIZE (400), MIB (20), ROUNDS (1), IDLE (none). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cross_cpu.h"

static void **objs;
static size_t n, size;

static void *alloc_thread(void *arg) {
    (void)arg;
    pin_to_cpu("freed_elsewhere", 0);
    fill_empty_slots(objs, n, size, 1);
    return NULL;
}

static void *free_thread(void *arg) {
    (void)arg;
    pin_to_cpu("freed_elsewhere", 1);
    for (size_t i = 0; i < n; i++) {
        free(objs[i]);
        objs[i] = NULL;
    }
    return NULL;
}

static void report(const char *when) {
    printf("%s: allocated %zu active %zu free %zu resident %zu\n", when,
           rseqmalloc_figure("stats.allocated"), rseqmalloc_figure("stats.active"),
           rseqmalloc_figure("stats.free"), rseqmalloc_figure("stats.resident"));
}

int main(int argc, char **argv) {
    size = argc > 1 ? strtoull(argv[1], NULL, 10) : 400;
    size_t mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 20;
    int rounds = argc > 3 ? atoi(argv[3]) : 1;
    n = (mib << 20) / size;
    objs = calloc(n, sizeof *objs);
    for (int r = 0; r < rounds; r++) {
        pthread_t t;
        pthread_create(&t, NULL, alloc_thread, NULL);
        pthread_join(t, NULL);
        pthread_create(&t, NULL, free_thread, NULL);
        pthread_join(t, NULL);
        char when[32];
        snprintf(when, sizeof when, "round %d", r);
        report(when);
    }
    if (argc > 4) {
        sleep(atoi(argv[4]));
        pin_to_cpu("freed_elsewhere", 1);
        size_t m = (1 << 20) / size;
        void **v = malloc(m * sizeof *v);
        for (int k = 0; k < 4; k++) {
            for (size_t i = 0; i < m; i++)
                v[i] = malloc(size);
            for (size_t i = 0; i < m; i++)
                free(v[i]);
            usleep(300000);
        }
        free(v);
        report("after idle");
    }
    free(objs);
    return 0;
}
