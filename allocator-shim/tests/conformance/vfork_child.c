/* A vfork child that allocates before it execs or exits, while other threads allocate. POSIX
 * leaves anything but exec and _exit in a vfork child undefined, but programs call setenv there
 * before exec, and glibc's malloc, jemalloc, mimalloc and tcmalloc all run it. A breaker run
 * (session 73) found rseqmalloc's rseq modes aborting ("malloc(): corrupted free list", "free():
 * double free detected") in every run: the child shares its parent's thread-local storage and
 * rseq area, which the kernel does not register for it, so it ran the per-CPU cache's critical
 * sections on the parent's stale cpu or concurrency id, unprotected, on a slab other threads
 * used. rseqmalloc's vfork now sends such a child through locks.
 *
 * usage: vfork_child alloc CHILDREN THREADS
 *   THREADS workers allocate, check and free blocks of 1-600 B without pause; the main thread
 *   makes CHILDREN vfork children, one at a time, each of which allocates 200 blocks of
 *   1-598 B five times over, checks their bytes, frees them and calls _exit (status 3 if a
 *   block lost its bytes). Every child must exit 0, and no worker may find a block changed.
 * usage: vfork_child setenv CHILDREN THREADS
 *   The same workers; each child calls setenv twice and execs /bin/true.
 * usage: vfork_child clone-alloc CHILDREN THREADS, vfork_child clone-setenv CHILDREN THREADS
 *   The same two, with children made by glibc's clone() with CLONE_VM | CLONE_VFORK (what vfork
 *   is) on a stack of their own: the same fault through another door (session 74's breaker
 *   run: aborts, and children dying inside setenv, in both rseq modes).
 * usage: vfork_child keydtor ROUNDS THREADS
 *   The same workers; in each round a thread frees 64 blocks another thread allocated on the
 *   other CPU (so the allocator arms its thread-exit destructor for it) and exits, and a
 *   pthread key destructor of the program, run again after the allocator's, makes 10 vfork
 *   children that allocate. After the allocator's destructor the thread is in bypass but its
 *   rseq area is still glibc's: a review (session 73) found such children corrupting the heap
 *   when only threads in the rseq state were set aside.
 *
 * Prints "vfork_child ok children=<n> mode=..." */
#include "conf.h"

#include <pthread.h>
#include <sys/wait.h>

static volatile int stop;
static long changed;

/* Allocates, checks and frees blocks of 1-600 B until `stop` (pinned to CPU `arg` where the
 * machine has it, when `pinned`); counts blocks found changed. */
static int pinned;
static void *worker(void *arg) {
    if (pinned) (void)conf_pin((int)(uintptr_t)arg);
    unsigned seed = (unsigned)(uintptr_t)arg * 7919 + 1;
    unsigned char *keep[256] = {0};
    size_t size[256];
    while (!stop) {
        for (int i = 0; i < 1000; i++) {
            int k = rand_r(&seed) % 256;
            if (keep[k]) {
                if (keep[k][0] != (unsigned char)k || keep[k][size[k] - 1] != (unsigned char)k)
                    __atomic_add_fetch(&changed, 1, __ATOMIC_RELAXED);
                free(keep[k]);
            }
            size[k] = 1 + (size_t)(rand_r(&seed) % 600);
            keep[k] = malloc(size[k]);
            CHECK(keep[k] != NULL);
            memset(keep[k], k, size[k]);
        }
    }
    for (int k = 0; k < 256; k++) free(keep[k]);
    return NULL;
}

/* A child's allocations: 0 if every block kept its bytes, 3 if not. */
static int child_allocates(void) {
    unsigned char *v[200];
    int ok = 1;
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 200; i++) {
            v[i] = malloc(1 + (size_t)i * 3);
            if (v[i] == NULL) return 4;
            memset(v[i], i, 1 + (size_t)i * 3);
        }
        for (int i = 0; i < 200; i++) {
            if (v[i][i * 3] != (unsigned char)i) ok = 0;
            free(v[i]);
        }
    }
    return ok ? 0 : 3;
}

/* Whether the children of `alloc` and `setenv` (and their clone forms) exec. */
static int do_exec;

/* What child `n` does: allocates (child_allocates, returning its status), or calls setenv
 * twice and execs /bin/true (returning only if exec failed). */
static int child_body(int n) {
    if (!do_exec) return child_allocates();
    char v[32];
    snprintf(v, sizeof v, "%d", n);
    setenv("VFORK_CHILD_INDEX", v, 1);
    setenv("VFORK_CHILD_NAME", "a child with a value longer than a small block", 1);
    execl("/bin/true", "true", (char *)NULL);
    return 127;
}

/* A clone child's function: child_body for child `arg`. */
static int clone_child(void *arg) { _exit(child_body((int)(uintptr_t)arg)); }

/* Waits for child `n` (`pid`, the result of vfork or clone) and checks that it exited 0. */
static void await_child(pid_t pid, int n) {
    CHECKF(pid > 0, "vfork or clone failed: %s", strerror(errno));
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: status %#x", n, status);
}

/* Makes one vfork child that allocates (child_allocates, 40 times over, on CPU 1) and checks
 * its status. */
static void vfork_allocating_child(int n) {
    pid_t pid = vfork();
    if (pid == 0) {
        (void)conf_pin(1);
        int e = 0;
        for (int i = 0; i < 40 && e == 0; i++) e = child_allocates();
        _exit(e);
    }
    await_child(pid, n);
}

static pthread_t workers[8];

/* Starts `threads` workers (at most 8). */
static void start_workers(int threads) {
    CHECK(threads > 0 && threads <= 8);
    for (int i = 0; i < threads; i++)
        CHECK(pthread_create(&workers[i], NULL, worker, (void *)(uintptr_t)i) == 0);
}

/* Stops and joins the `threads` workers, and checks that none found a block changed. */
static void stop_workers(int threads) {
    stop = 1;
    for (int i = 0; i < threads; i++) CHECK(pthread_join(workers[i], NULL) == 0);
    CHECKF(changed == 0, "workers found %ld blocks changed", changed);
}

static pthread_key_t key;
static __thread int destructor_rounds;
static void **foreign;

/* The key's destructor: asks for a second round, which runs after the allocator's own
 * destructor (whose key was made first), and makes the children there. */
static void destructor(void *value) {
    (void)value;
    if (destructor_rounds++ == 0) {
        CHECK(pthread_setspecific(key, (void *)1) == 0);
        return;
    }
    for (int n = 0; n < 10; n++) vfork_allocating_child(n);
}

/* Allocates the blocks the exiting thread frees, on CPU 1. */
static void *allocate_foreign(void *arg) {
    (void)conf_pin(1);
    foreign = malloc(64 * sizeof *foreign);
    CHECK(foreign != NULL);
    for (int i = 0; i < 64; i++) CHECK((foreign[i] = malloc(64)) != NULL);
    return arg;
}

/* Frees them on CPU 0 and exits with the key set. */
static void *exiting(void *arg) {
    (void)conf_pin(0);
    CHECK(pthread_setspecific(key, (void *)1) == 0);
    void *mine = malloc(200);
    for (int i = 0; i < 64; i++) free(foreign[i]);
    free(foreign);
    free(mine);
    return arg;
}

int main(int argc, char **argv) {
    conf_init("vfork_child", 120);
    CHECK(argc == 4);
    if (strcmp(argv[1], "keydtor") == 0) {
        int rounds = atoi(argv[2]), threads = atoi(argv[3]);
        CHECK(rounds > 0);
        free(malloc(16));
        CHECK(pthread_key_create(&key, destructor) == 0);
        pinned = 1;
        start_workers(threads);
        for (int r = 0; r < rounds; r++) {
            pthread_t a, b;
            CHECK(pthread_create(&a, NULL, allocate_foreign, NULL) == 0);
            CHECK(pthread_join(a, NULL) == 0);
            CHECK(pthread_create(&b, NULL, exiting, NULL) == 0);
            CHECK(pthread_join(b, NULL) == 0);
        }
        stop_workers(threads);
        conf_say("vfork_child ok children=%d mode=%s\n", rounds * 10, conf_mode());
        return 0;
    }
    int use_clone = strncmp(argv[1], "clone-", 6) == 0;
    const char *what = argv[1] + (use_clone ? 6 : 0);
    do_exec = strcmp(what, "setenv") == 0;
    CHECK(do_exec || strcmp(what, "alloc") == 0);
    int children = atoi(argv[2]), threads = atoi(argv[3]);
    CHECK(children > 0);
    start_workers(threads);
    static char stack[1 << 16] __attribute__((aligned(16)));
    for (int n = 0; n < children; n++) {
        if (use_clone) {
            pid_t pid = clone(clone_child, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD,
                              (void *)(uintptr_t)n);
            await_child(pid, n);
            continue;
        }
        pid_t pid = vfork();
        if (pid == 0) _exit(child_body(n));
        await_child(pid, n);
    }
    stop_workers(threads);
    conf_say("vfork_child ok children=%d mode=%s\n", children, conf_mode());
    return 0;
}
