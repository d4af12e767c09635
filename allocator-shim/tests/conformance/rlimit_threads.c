/* Under an address-space limit, the allocator must not take the room a program needs for its
 * own mappings. A breaker run (session 73) found a program that mallocs 100 bytes and then
 * starts 3 threads failing with EAGAIN from pthread_create at `ulimit -v` 48-70 MB (and `-d`
 * 44-64 MB), where glibc's malloc, jemalloc and tcmalloc run it, while it ran at 44 MB: the
 * heap mapped a whole 32 MiB chunk at the first allocation whenever the limit had room for it,
 * and the 8 MiB thread stacks then did not fit. Under a limit the heap now grows 2 MiB at a
 * time.
 *
 * usage: rlimit_threads as|data MIB THREADS
 *   Sets RLIMIT_AS (or RLIMIT_DATA) to MIB MiB and runs itself again under it, so the limit is
 *   in place from the start, as with ulimit. The child mallocs 100 bytes, starts THREADS
 *   threads (default stacks) that each allocate and free a block, and joins them.
 *
 * The child prints "rlimit_threads ok threads=<n> mode=..." */
#include "conf.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>

static void *worker(void *arg) {
    char *p = malloc(1000);
    CHECK(p != NULL);
    memset(p, 1, 1000);
    free(p);
    return arg;
}

int main(int argc, char **argv) {
    conf_init("rlimit_threads", 60);
    CHECK(argc == 4 || (argc == 5 && strcmp(argv[4], "child") == 0));
    int threads = atoi(argv[3]);
    CHECK(threads > 0 && threads <= 16);
    if (argc == 4) {
        int resource = strcmp(argv[1], "as") == 0 ? RLIMIT_AS : RLIMIT_DATA;
        CHECK(resource == RLIMIT_AS || strcmp(argv[1], "data") == 0);
        rlim_t bytes = (rlim_t)atol(argv[2]) << 20;
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            struct rlimit rl = {bytes, bytes};
            CHECK(setrlimit(resource, &rl) == 0);
            execl("/proc/self/exe", argv[0], argv[1], argv[2], argv[3], "child", (char *)NULL);
            _exit(126);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "under a %s limit of %s MiB: child status %#x", argv[1], argv[2], status);
        return 0; /* the child printed the last line */
    }
    char *x = malloc(100);
    CHECK(x != NULL);
    memset(x, 0, 100);
    pthread_t t[16];
    for (int i = 0; i < threads; i++) {
        int e = pthread_create(&t[i], NULL, worker, NULL);
        CHECKF(e == 0, "pthread_create %d of %d: %s", i, threads, strerror(e));
    }
    for (int i = 0; i < threads; i++) CHECK(pthread_join(t[i], NULL) == 0);
    free(x);
    conf_say("rlimit_threads ok threads=%d mode=%s\n", threads, conf_mode());
    return 0;
}
