/* Issue 11, item 2 (kind): lock order between the allocator and libc's own fork-time locks.
 * glibc's fork takes stdio's list lock (and its own malloc's locks) itself; an atfork handler
 * that holds the allocator's locks while fork then waits for stdio's list lock deadlocks
 * against a thread holding a FILE lock inside getline's realloc.
 *
 * Four threads fork in a loop (the child _exits at once, the parent waits for it); eight
 * threads each keep a FILE open on a file holding one 50,000-character line and rewind +
 * getline + free it in a loop; one thread calls fflush(NULL) in a loop. It runs until the
 * forking threads have made `forks` children (argv[2], default 4000) or `secs` seconds
 * (argv[3], default 3) have passed, then every thread is joined. A deadlock is caught by the
 * watchdog (conf.h: 45 s, the run takes 3 s), which names it on stderr and kills the process
 * group.
 *
 * usage: fork_stdio <scratch file> [forks] [secs]
 *        prints "fork_stdio ok forks=<n> lines=<n> flushes=<n> mode=<mode>" */
#include "conf.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

enum { FORKERS = 4, READERS = 8, LINE = 50000 };

static const char *path;
static long max_forks = 4000;
static double max_secs = 3;
static atomic_int stop;
static atomic_long forks, lines, flushes;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *forker(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) _exit(0);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
        if (atomic_fetch_add(&forks, 1) + 1 >= max_forks) atomic_store(&stop, 1);
    }
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    FILE *f = fopen(path, "r");
    CHECK(f);
    long n = 0;
    while (!atomic_load(&stop)) {
        rewind(f);
        char *line = NULL;
        size_t cap = 0;
        ssize_t len = getline(&line, &cap, f);
        CHECKF(len == LINE + 1, "getline returned %zd", len);
        CHECK(line[0] == 'a' && line[LINE - 1] == 'a' + (LINE - 1) % 26 && line[LINE] == '\n');
        free(line);
        if (++n % 64 == 0) {
            /* Reopen now and then: fopen/fclose take stdio's list lock too. */
            CHECK(fclose(f) == 0);
            f = fopen(path, "r");
            CHECK(f);
        }
    }
    CHECK(fclose(f) == 0);
    atomic_fetch_add(&lines, n);
    return NULL;
}

static void *flusher(void *arg) {
    (void)arg;
    long n = 0;
    while (!atomic_load(&stop)) {
        fflush(NULL);
        n++;
    }
    atomic_fetch_add(&flushes, n);
    return NULL;
}

int main(int argc, char **argv) {
    conf_init("fork_stdio", 45);
    CHECK(argc >= 2);
    path = argv[1];
    if (argc > 2) max_forks = atol(argv[2]);
    if (argc > 3) max_secs = atof(argv[3]);
    FILE *f = fopen(path, "w");
    CHECK(f);
    for (int i = 0; i < LINE; i++) CHECK(fputc('a' + i % 26, f) != EOF);
    CHECK(fputc('\n', f) != EOF && fclose(f) == 0);

    pthread_t t[FORKERS + READERS + 1];
    int n = 0;
    for (int i = 0; i < READERS; i++) CHECK(pthread_create(&t[n++], NULL, reader, NULL) == 0);
    CHECK(pthread_create(&t[n++], NULL, flusher, NULL) == 0);
    for (int i = 0; i < FORKERS; i++) CHECK(pthread_create(&t[n++], NULL, forker, NULL) == 0);
    double start = now();
    /* The main thread only watches the clock; it waits on nothing the others hold. */
    while (!atomic_load(&stop)) {
        if (now() - start >= max_secs) atomic_store(&stop, 1);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < n; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(unlink(path) == 0);
    CHECK(forks > 0 && lines > 0 && flushes > 0);
    conf_say("fork_stdio ok forks=%ld lines=%ld flushes=%ld mode=%s\n", (long)forks, (long)lines,
             (long)flushes, conf_mode());
    return 0;
}
