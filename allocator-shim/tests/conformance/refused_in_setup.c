/* Issue 11, item 5 and item 10 together (kind), found by review in session 70: a request the OS
 * refuses is tried again after a trim of its own (lib.rs, `gave_back_after_refusal`), and that
 * trim may set up the calling thread, whose set-up may allocate and be refused too. Before the
 * fix, trim's drain asked whether it could move the thread while holding the drain lock; the
 * question set the thread up, the set-up's calloc was refused, and its own trim waited for that
 * lock forever (own mode with `membarrier=off`).
 *
 * A constructor makes 40 pthread keys, so the allocator's own key is >= 32 and a thread's
 * set-up callocs a block for it. A thread is started and waits before its first allocation;
 * the main thread sets RLIMIT_AS 64 MiB above the process's use and fills it with 512-byte
 * blocks until malloc returns NULL (errno ENOMEM). Then the thread's first allocation, 1 MiB,
 * must return: NULL with ENOMEM, or a block. The watchdog turns a hang into a failure.
 *
 * usage: refused_in_setup     prints "refused_in_setup ok blocks=<n> got=<0|1> mode=<mode>" */
#include "conf.h"

#include <pthread.h>

static pthread_key_t keys[40];
static int ctor_errors;

__attribute__((constructor(101))) static void make_keys(void) {
    for (int i = 0; i < 40; i++)
        if (pthread_key_create(&keys[i], NULL) != 0) ctor_errors++;
}

static int go[2];

static void *first_allocation(void *arg) {
    (void)arg;
    char c;
    CHECK(read(go[0], &c, 1) == 1);
    errno = 0;
    void *p = malloc(1 << 20);
    CHECKF(p != NULL || errno == ENOMEM, "malloc(1 MiB) returned NULL with errno %d", errno);
    return p;
}

int main(void) {
    conf_init("refused_in_setup", 60);
    CHECK(ctor_errors == 0);
    CHECK(pipe(go) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, first_allocation, NULL) == 0);
    conf_limit_room("as", 64u << 20);
    void *head = NULL;
    long n = 0;
    for (;;) {
        errno = 0;
        void **p = malloc(512);
        if (!p) {
            CHECKF(errno == ENOMEM, "malloc(512) returned NULL with errno %d", errno);
            break;
        }
        *p = head;
        head = p;
        n++;
    }
    CHECK(write(go[1], "x", 1) == 1);
    void *got;
    CHECK(pthread_join(t, &got) == 0);
    free(got);
    while (head) {
        void *next = *(void **)head;
        free(head);
        head = next;
    }
    conf_say("refused_in_setup ok blocks=%ld got=%d mode=%s\n", n, got != NULL, conf_mode());
    return 0;
}
