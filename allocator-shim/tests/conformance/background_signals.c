/* Conformance: the allocator's own thread (`background_thread=on`) takes none of the program's
 * signals. A signal sent to the process goes to a thread that does not block it; were ours such
 * a thread, a signal the program blocked (to read it from a signalfd, or to keep it out of a
 * fork) would reach it there instead, or kill the process with its default action, and a
 * handler could run on our thread while the program's own forks. A breaker run found both in
 * session 71 (PostgreSQL's postmaster hung; a single-threaded program reading SIGUSR1 and
 * SIGTERM from a signalfd died of them): the thread blocked no signal.
 *
 * The program (the harness runs it with `background_thread=on`):
 *  0. starts and joins a thread that allocates: ours starts once the program has a second
 *     thread (session 72), and the program then has its main thread again, and ours;
 *  1. checks that every other thread of the process (ours) blocks SIGUSR1, SIGUSR2 and SIGTERM
 *     once it has set its mask, and not glibc's own two signals, and counts them;
 *  2. blocks SIGUSR1 and SIGTERM, sends itself SIGNALS of them (alternately) and reads each
 *     from a signalfd: all must arrive there;
 *  3. handles SIGUSR2, which a child sends it BURST times: the handler must run on the main
 *     thread every time (and at least once).
 *
 * Prints "background_signals ok signals=N handled=H others=K mode=...", K the threads besides
 * the main one (ours: 1 with the background thread, 0 under glibc's malloc). */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "conf.h"

enum { SIGNALS = 200, BURST = 5000 };

static pid_t main_tid, worker_tid;
static volatile sig_atomic_t handled, elsewhere;

static void on_usr2(int sig) {
    (void)sig;
    handled++;
    if ((pid_t)syscall(SYS_gettid) != main_tid) elsewhere++;
}

/* Thread `tid`'s blocked signals, from its `SigBlk` line in /proc (the file opened afresh:
 * a rewound stdio stream would serve the old text from its buffer). */
static unsigned long long blocked_of(const char *tid) {
    char path[300], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%s/status", tid);
    FILE *f = fopen(path, "r");
    CHECKF(f != NULL, "cannot read %s", path);
    unsigned long long blocked = 0;
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = sscanf(line, "SigBlk: %llx", &blocked);
    fclose(f);
    CHECKF(found == 1, "no SigBlk line in %s", path);
    return blocked;
}

/* The threads of this process besides the main one, each checked to block the three signals
 * and to leave glibc's own two (SIGCANCEL, 32, and SIGSETXID, 33, which `setuid` and its kin
 * signal every thread with) unblocked. While `pthread_create` runs, glibc blocks every signal
 * in the new thread, its own two as well, until the thread sets the mask it inherited: its
 * mask is read again until SIGCANCEL is clear, so the check sees the mask the thread keeps
 * (before, a read in that window passed a thread that blocked nothing). */
static int others_blocking(void) {
    const unsigned long long want =
        1ull << (SIGUSR1 - 1) | 1ull << (SIGUSR2 - 1) | 1ull << (SIGTERM - 1);
    const unsigned long long glibc_own = 1ull << 31 | 1ull << 32;
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL);
    int others = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        /* The joined worker may still be listed for a moment after its join. */
        if (e->d_name[0] == '.' || atoi(e->d_name) == main_tid || atoi(e->d_name) == worker_tid)
            continue;
        others++;
        unsigned long long blocked;
        while ((blocked = blocked_of(e->d_name)) & 1ull << 31) sched_yield();
        CHECKF((blocked & want) == want,
               "thread %s of the allocator's blocks %#llx, not SIGUSR1, SIGUSR2 and SIGTERM",
               e->d_name, blocked);
        CHECKF((blocked & glibc_own) == 0,
               "thread %s of the allocator's blocks %#llx: glibc's own signals too", e->d_name,
               blocked);
    }
    closedir(d);
    return others;
}

/* A thread's allocation the compiler may not remove (it drops a bare free(malloc(n)) pair). */
static void *allocate(void *arg) {
    worker_tid = (pid_t)syscall(SYS_gettid);
    char *volatile p = malloc(64);
    CHECK(p != NULL);
    free(p);
    return arg;
}

int main(void) {
    conf_init("background_signals", 60);
    main_tid = (pid_t)syscall(SYS_gettid);
    free(malloc(64));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, allocate, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    int others = others_blocking();

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    int fd = signalfd(-1, &set, 0);
    CHECK(fd >= 0);
    for (int i = 0; i < SIGNALS; i++) {
        int sig = i % 2 ? SIGTERM : SIGUSR1;
        CHECK(kill(getpid(), sig) == 0);
        free(malloc(100 + (size_t)i));
        struct signalfd_siginfo si;
        CHECK(read(fd, &si, sizeof si) == (ssize_t)sizeof si);
        CHECKF((int)si.ssi_signo == sig, "signal %d read as %u", sig, si.ssi_signo);
    }
    CHECK(close(fd) == 0);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
    pid_t parent = getpid(), child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        for (int i = 0; i < BURST; i++) (void)kill(parent, SIGUSR2);
        _exit(0);
    }
    int status;
    pid_t w;
    while ((w = waitpid(child, &status, WNOHANG)) == 0) free(malloc(100));
    CHECK(w == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECKF(handled > 0, "no SIGUSR2 handled of %d sent", BURST);
    CHECKF(elsewhere == 0, "%d of %d SIGUSR2 handler runs on a thread not the program's",
           (int)elsewhere, (int)handled);
    conf_say("background_signals ok signals=%d handled=%d others=%d mode=%s\n", SIGNALS,
             (int)handled, others, conf_mode());
    return 0;
}
