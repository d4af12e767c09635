/* Issue 11, item 3 (kind): in a single-threaded program, fork() from a signal handler that
 * interrupted any allocator entry point returns, in parent and child, in every mode (glibc
 * guarantees it: fork is async-signal-safe).
 *
 * A profiling timer (setitimer(ITIMER_PROF), 200 us of CPU time) raises SIGPROF while the
 * program runs nothing but allocator calls: malloc, free, realloc (small, large and huge,
 * growing and shrinking), calloc, posix_memalign, memalign, aligned_alloc, free_sized,
 * malloc_usable_size, malloc_trim. The handler forks; the child _exits at once (every 16th
 * execs /bin/true instead, with the allocator preloaded again); the parent waits for it. After
 * `forks` handler forks (argv[1], default 300) the timer stops. A hang is caught by the
 * watchdog (conf.h; SIGALRM, ITIMER_REAL, independent of the profiling timer).
 *
 * usage: fork_signal [forks]     prints "fork_signal ok forks=<n> ops=<n> mode=<mode>" */
#include "conf.h"

#include <malloc.h>
#include <sys/time.h>
#include <sys/wait.h>

static volatile sig_atomic_t forks, failures;
static long max_forks = 300;
static char *const true_argv[] = {"true", NULL};
extern char **environ;

static void on_prof(int sig) {
    (void)sig;
    int saved = errno;
    int n = forks;
    pid_t pid = fork();
    if (pid == 0) {
        if (n % 16 == 15) execve("/bin/true", true_argv, environ);
        _exit(0);
    }
    if (pid < 0) {
        failures++;
    } else {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failures++;
    }
    forks = n + 1;
    errno = saved;
}

static void set_timer(long usec) {
    struct itimerval it = {{0, usec}, {0, usec}};
    CHECK(setitimer(ITIMER_PROF, &it, NULL) == 0);
}

int main(int argc, char **argv) {
    conf_init("fork_signal", 60);
    if (argc > 1) max_forks = atol(argv[1]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_prof;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGPROF, &sa, NULL) == 0);

    enum { SLOTS = 64 };
    void *p[SLOTS] = {0};
    size_t sz[SLOTS] = {0};
    rng_t r = {7};
    long ops = 0;
    set_timer(200);
    while (forks < max_forks) {
        int k = (int)rng_below(&r, SLOTS);
        unsigned pick = (unsigned)rng_below(&r, 1000);
        size_t size = pick < 700   ? 1 + rng_below(&r, 1024)
                      : pick < 950 ? 1024 + rng_below(&r, 300000)
                      : pick < 995 ? (size_t)(4 + rng_below(&r, 12)) << 20
                                   : 0;
        if (p[k] == NULL) {
            switch (rng_below(&r, 5)) {
            case 0: p[k] = malloc(size); break;
            case 1: p[k] = calloc(1, size); break;
            case 2: CHECK(posix_memalign(&p[k], (size_t)64 << rng_below(&r, 8), size) == 0); break;
            case 3: p[k] = memalign((size_t)16 << rng_below(&r, 12), size); break;
            default: p[k] = aligned_alloc(4096, size); break;
            }
            CHECK(p[k] != NULL);
            sz[k] = size;
            memset(p[k], 1, size);
        } else if (pick < 500) {
            void *q = realloc(p[k], size + 1);
            CHECK(q != NULL);
            CHECK(malloc_usable_size(q) >= size + 1);
            memset(q, 2, size + 1);
            p[k] = q;
            sz[k] = size + 1;
        } else if (pick < 990) {
            if (pick & 1) conf_free_sized(p[k], sz[k]);
            else free(p[k]);
            p[k] = NULL;
        } else {
            malloc_trim(0);
        }
        ops++;
    }
    set_timer(0);
    for (int k = 0; k < SLOTS; k++) free(p[k]);
    CHECKF(failures == 0, "%d handler forks failed", (int)failures);
    conf_say("fork_signal ok forks=%ld ops=%ld mode=%s\n", (long)forks, ops, conf_mode());
    return 0;
}
