/* Conformance: the allocator's own thread (`background_thread=on`) leaves a program with one
 * thread one thread, starts once the program has a second, and never keeps a process alive
 * after the program's last thread ends. Session 71's breaker found, with the thread started in
 * the library's constructor: the kernel refused `unshare(CLONE_NEWUSER)` (EINVAL) to every
 * program; a fork from a signal handler that interrupted malloc deadlocked (the fork handlers
 * take the allocator's locks once the process has had two threads: kind03's program runs with
 * the option too); and a program whose main thread ended with `pthread_exit` never exited.
 *
 * usage (the harness runs each under glibc's malloc and the three modes, with
 * `background_thread=on,decay_ms=10`; under glibc's malloc nothing of ours runs):
 *  background_lazy single      one thread allocating and idling for many tick periods: still
 *                              one thread; unshare(CLONE_NEWUSER) not refused with EINVAL.
 *  background_lazy threads     a second thread allocates: ours starts (2 threads once it is
 *                              joined) and ticks while the program idles; a fork child of
 *                              that process has one thread, keeps it while it allocates,
 *                              unshares a user namespace, and gets ours once it has a
 *                              second thread of its own.
 *  background_lazy large       a second thread allocates only blocks of 1 MiB (never set up,
 *                              found by review): ours starts all the same.
 *  background_lazy defattr     default thread attributes with a CPU set: a thread's first
 *                              allocation is made under glibc's lock of the defaults, and
 *                              starting ours there must not wait for it (found by review).
 *  background_lazy mainexit N  N workers allocate; main ends with pthread_exit; the last
 *                              worker prints the final line into stdio's buffer: the process
 *                              must exit 0 with the line flushed, as glibc's last thread's
 *                              exit(0) does. (A hang is ended by the harness's timeout: the
 *                              watchdog's SIGALRM would find no thread to take it.)
 *  background_lazy mainexit_sandboxed N   the same under a seccomp filter that refuses every
 *                              open with EPERM, so /proc cannot be read (a breaker run found
 *                              it hung).
 *  background_lazy mainexit_atexit N   the same, with an atexit handler that raises SIGUSR1:
 *                              it must be handled there (a breaker run found it blocked, on
 *                              our thread, which ran the handler).
 *  background_lazy mainexit_lastmask   the main thread blocks SIGUSR1 before it ends, its one
 *                              worker, which does not, ends last: the handler's SIGUSR1 is
 *                              handled, as on that worker under glibc (review found the main
 *                              thread's mask used).
 *
 * Prints "background_lazy ok case=<case> threads=<n> ... mode=<mode>". */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "conf.h"

/* Threads of this process, zombie main thread included (/proc/self/task). */
static int tasks(void) {
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The thread count once it is `want`, or what it still is after 5 s: a thread `pthread_join`
 * returned for may still be listed for a moment (glibc's join waits for the kernel's clearing
 * of its tid, which comes before the task is gone). */
static int tasks_settled(int want) {
    int n = tasks();
    for (int i = 0; i < 500 && n != want; i++) {
        usleep(10000);
        n = tasks();
    }
    return n;
}

/* Small, mid-sized and large blocks, so allocation slow paths run (where ours would start). */
static void churn(int rounds) {
    static __thread void *keep[64];
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < 64; i++) {
            free(keep[i]);
            size_t size = i % 16 == 0 ? (size_t)(256 << 10) + (size_t)r : 16 + (size_t)(i * 40);
            keep[i] = malloc(size);
            CHECK(keep[i] != NULL);
            memset(keep[i], r, 16);
        }
    }
}

/* Idles for `ms` ms, allocating every 10 ms (ticks fall due every 10 ms at decay_ms=10). */
static void idle_allocating(int ms) {
    for (int i = 0; i < ms / 10; i++) {
        usleep(10000);
        churn(1);
    }
}

/* 0, or the errno of a refused unshare(CLONE_NEWUSER): the kernel answers EINVAL to a
 * multi-threaded caller (an environment may refuse with EPERM or ENOSPC instead). */
static int unshare_user(void) { return unshare(CLONE_NEWUSER) == 0 ? 0 : errno; }

static void *allocate_once(void *arg) {
    churn(2);
    return arg;
}

/* Large blocks only: a thread that allocates nothing smaller is never set up. */
static void *allocate_large(void *arg) {
    for (int i = 0; i < 20; i++) {
        char *volatile p = malloc((size_t)(1 << 20));
        CHECK(p != NULL);
        p[i] = 1;
        free(p);
    }
    return arg;
}

static void second_thread_running(void *(*body)(void *)) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, body, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
}

static void second_thread(void) { second_thread_running(allocate_once); }

/* Ours plus the main one with the library, the main one alone under glibc's malloc. */
static int with_ours(void) { return conf_glibc() ? 1 : 2; }

static void case_single(void) {
    churn(50);
    idle_allocating(300);
    int n = tasks(), refused = unshare_user();
    CHECKF(n == 1, "a program with one thread has %d", n);
    CHECKF(refused != EINVAL, "unshare(CLONE_NEWUSER) refused with EINVAL: not one thread");
    conf_say("background_lazy ok case=single threads=%d unshare=%d mode=%s\n", n, refused,
             conf_mode());
}

static void case_threads(void) {
    churn(5);
    second_thread();
    int n = tasks_settled(with_ours());
    CHECKF(n == with_ours(), "%d threads after a second one ended, not %d", n, with_ours());
    unsigned long ticks = 0;
    for (int i = 0; i < 200 && !conf_glibc() && ticks < 3; i++) {
        usleep(10000);
        ticks = conf_ctl_count("stats.background_ticks");
    }
    CHECKF(conf_glibc() || ticks >= 3, "%lu background ticks in 2 s of idling", ticks);

    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        churn(50);
        idle_allocating(100);
        int alone = tasks(), refused = unshare_user();
        if (alone != 1 || refused == EINVAL) {
            fprintf(stderr, "fork child: %d threads, unshare(CLONE_NEWUSER) errno %d\n", alone,
                    refused);
            _exit(1);
        }
        second_thread();
        churn(1);
        int again = tasks_settled(with_ours());
        if (again != with_ours()) {
            fprintf(stderr, "fork child: %d threads after its second one, not %d\n", again,
                    with_ours());
            _exit(2);
        }
        _exit(0);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child failed: status %#x",
           status);
    conf_say("background_lazy ok case=threads threads=%d ticks_seen=%d mode=%s\n", n,
             ticks >= 3, conf_mode());
}

static void case_large(void) {
    churn(5);
    second_thread_running(allocate_large);
    int n = tasks_settled(with_ours());
    CHECKF(n == with_ours(), "%d threads after one that allocated large blocks, not %d", n,
           with_ours());
    conf_say("background_lazy ok case=large threads=%d mode=%s\n", n, conf_mode());
}

static void *create_another(void *arg) {
    /* This thread's first allocation is glibc's copy of the default attributes' CPU set, made
     * under its lock of the defaults: a start of ours there that read the defaults again
     * waited for that lock forever. */
    second_thread();
    return arg;
}

static void case_defattr(void) {
    cpu_set_t cpus;
    CHECK(sched_getaffinity(0, sizeof cpus, &cpus) == 0);
    pthread_attr_t attr;
    CHECK(pthread_attr_init(&attr) == 0);
    CHECK(pthread_attr_setaffinity_np(&attr, sizeof cpus, &cpus) == 0);
    CHECK(pthread_setattr_default_np(&attr) == 0);
    CHECK(pthread_attr_destroy(&attr) == 0);
    churn(5);
    second_thread_running(create_another);
    int n = tasks_settled(with_ours());
    CHECKF(n == with_ours(), "%d threads, not %d", n, with_ours());
    conf_say("background_lazy ok case=defattr threads=%d mode=%s\n", n, conf_mode());
}

static atomic_int workers_left;
static int workers, ok_at_exit;

static void *worker(void *arg) {
    (void)arg;
    churn(20);
    if (atomic_fetch_sub(&workers_left, 1) == 1 && !ok_at_exit) {
        /* Into stdio's buffer (stdout is a pipe): only an exit() flushes it. */
        printf("background_lazy ok case=mainexit workers=%d mode=%s\n", workers, conf_mode());
    }
    return NULL;
}

/* A sandbox that refuses every open (EPERM), as some do: /proc cannot be read. glibc's
 * pthread_exit loads libgcc_s for its unwinding, so that is loaded first. */
static void refuse_open(void) {
    CHECKF(dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_GLOBAL) != NULL, "no libgcc_s: %s", dlerror());
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_open, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
    CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0);
    CHECKF(fopen("/proc/self/stat", "r") == NULL && errno == EPERM, "open not refused");
}

static volatile sig_atomic_t got_usr1;
static const char *exit_case = "mainexit_atexit";

static void on_usr1(int sig) {
    (void)sig;
    got_usr1 = 1;
}

/* Runs in whichever thread calls exit(): a signal it raises must be handled at once, as on the
 * program's own last thread (ours blocked every signal, and the raise went nowhere). */
static void raise_at_exit(void) {
    CHECK(raise(SIGUSR1) == 0);
    if (got_usr1)
        printf("background_lazy ok case=%s workers=%d mode=%s\n", exit_case, workers,
               conf_mode());
    else
        fprintf(stderr, "an atexit handler's raise(SIGUSR1) was not handled\n");
}

static pid_t main_tid;

/* Whether the main thread has ended (a zombie until the process ends), or /proc says nothing. */
static int main_ended(void) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)main_tid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *close = strrchr(buf, ')');
    return close == NULL || (close[1] == ' ' && close[2] == 'Z');
}

/* Allocates, then waits (5 s at most) for the main thread to end: it ends last. */
static void *last_worker(void *arg) {
    churn(20);
    for (int i = 0; i < 500 && !main_ended(); i++) usleep(10000);
    return arg;
}

/* The main thread blocks SIGUSR1 and ends; the worker, which does not block it, ends last:
 * glibc runs the exit handlers on it, and raise_at_exit's signal is handled there. */
static void case_mainexit_lastmask(void) {
    main_tid = (pid_t)syscall(SYS_gettid);
    conf_handle(SIGUSR1, on_usr1);
    ok_at_exit = 1;
    exit_case = "mainexit_lastmask";
    workers = 1;
    CHECK(atexit(raise_at_exit) == 0);
    churn(5);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, last_worker, NULL) == 0);
    CHECK(pthread_detach(t) == 0);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    CHECK(pthread_sigmask(SIG_BLOCK, &usr1, NULL) == 0);
    pthread_exit(NULL);
}

static void case_mainexit(int n) {
    workers = n;
    atomic_store(&workers_left, n);
    churn(5);
    for (int i = 0; i < n; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, worker, NULL) == 0);
        CHECK(pthread_detach(t) == 0);
    }
    pthread_exit(NULL);
}

int main(int argc, char **argv) {
    conf_init("background_lazy", 30);
    CHECKF(argc >= 2,
           "usage: background_lazy single|threads|large|defattr|mainexit_lastmask|"
           "mainexit[_atexit|_sandboxed] N");
    if (strcmp(argv[1], "single") == 0) {
        case_single();
    } else if (strcmp(argv[1], "threads") == 0) {
        case_threads();
    } else if (strcmp(argv[1], "large") == 0) {
        case_large();
    } else if (strcmp(argv[1], "defattr") == 0) {
        case_defattr();
    } else if (strcmp(argv[1], "mainexit") == 0 && argc == 3) {
        case_mainexit(atoi(argv[2]));
    } else if (strcmp(argv[1], "mainexit_atexit") == 0 && argc == 3) {
        conf_handle(SIGUSR1, on_usr1);
        ok_at_exit = 1;
        CHECK(atexit(raise_at_exit) == 0);
        case_mainexit(atoi(argv[2]));
    } else if (strcmp(argv[1], "mainexit_lastmask") == 0) {
        case_mainexit_lastmask();
    } else if (strcmp(argv[1], "mainexit_sandboxed") == 0 && argc == 3) {
        refuse_open();
        case_mainexit(atoi(argv[2]));
    } else {
        CHECKF(0, "unknown case %s", argv[1]);
    }
    return 0;
}
