/* Conformance (kinds 01 and 02, owner return): a valid program whose frees cross CPUs.
 *
 * A producer pinned to CPU 0 allocates objects of 16..1024 bytes, fills each with its serial
 * number, and passes them through a ring to a consumer pinned to CPU 1, which checks every
 * byte and frees them. Both spin rather than sleep, so they run at once on different slabs and
 * the consumer's frees go home to the producer's slab (its outbox, then the producer's inbox,
 * then the producer's next allocations). Meanwhile the main thread forks children that
 * allocate and free (the inbox locks must be free in a child). A block handed out twice while
 * live shows as a wrong byte at the consumer; a lock left held shows as the watchdog.
 *
 * With librseqmalloc in an rseq mode and two CPUs, the consumer's exit sends its outbox home,
 * so `stats.sent_home` must be above 0 at the end (owner return ran); in fallback mode it is 0.
 * Prints "owner_return ok objects=N sent=S mode=...". */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "conf.h"
#include "ring.h"

enum { OBJECTS = 400000, RING = 1024, FORKS = 20 };

static unsigned char *slots[RING];
static struct conf_ring ring = {.slot = slots, .size = RING};
static atomic_int done_producing;
static atomic_int bad;


static size_t size_of(unsigned long i) { return 16 + (i * 2654435761u) % 1009; }

static void *produce(void *arg) {
    (void)arg;
    conf_pin(0);
    for (unsigned long i = 0; i < OBJECTS; i++) {
        size_t n = size_of(i);
        unsigned char *p = malloc(n);
        CHECK(p);
        memset(p, (int)(i & 0xff), n);
        conf_ring_put(&ring, i, p, 0);
    }
    atomic_store(&done_producing, 1);
    return NULL;
}

static void *consume(void *arg) {
    (void)arg;
    conf_pin(1);
    for (unsigned long i = 0; i < OBJECTS; i++) {
        unsigned char *p = conf_ring_take(&ring, i, 0);
        if (!conf_filled(p, size_of(i), (unsigned char)(i & 0xff))) atomic_fetch_add(&bad, 1);
        free(p);
    }
    return NULL; /* the thread's exit sends its outbox home */
}

int main(void) {
    conf_init("owner_return", 60);
    free(malloc(1));
    pthread_t p, c;
    CHECK(pthread_create(&c, NULL, consume, NULL) == 0);
    CHECK(pthread_create(&p, NULL, produce, NULL) == 0);
    int forks = 0;
    while (!atomic_load(&done_producing) && forks < FORKS) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            void *keep[256];
            for (int i = 0; i < 256; i++) {
                keep[i] = malloc(size_of((unsigned long)i));
                if (!keep[i]) _exit(2);
            }
            for (int i = 0; i < 256; i++) free(keep[i]);
            _exit(0);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child status %#x", status);
        forks++;
    }
    CHECK(pthread_join(p, NULL) == 0);
    CHECK(pthread_join(c, NULL) == 0);
    CHECKF(atomic_load(&bad) == 0, "%d objects arrived with a wrong byte", atomic_load(&bad));
    /* The objects sent home are the home's again: allocate them back, check, free. */
    void *again[4096];
    for (int i = 0; i < 4096; i++) {
        again[i] = malloc(size_of((unsigned long)i));
        CHECK(again[i]);
        memset(again[i], 0x5a, size_of((unsigned long)i));
    }
    for (int i = 0; i < 4096; i++) free(again[i]);
    unsigned long sent = conf_ctl_count("stats.sent_home");
    const char *mode = conf_mode();
    int two_cpus = sysconf(_SC_NPROCESSORS_ONLN) >= 2 && conf_pin(1) && conf_pin(0);
    int on = conf_option_is("owner_return", "on");
    int rseq = conf_rseq_mode();
    if (on && rseq && two_cpus) CHECKF(sent > 0, "no object was sent home in mode %s", mode);
    if (!on || !rseq)
        CHECKF(sent == 0, "%lu objects sent home in mode %s, owner_return %s", sent, mode,
               on ? "on" : "off");
    conf_say("owner_return ok objects=%d sent=%lu mode=%s\n", OBJECTS, sent, mode);
    return 0;
}
