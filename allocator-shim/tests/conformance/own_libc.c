/* A program may define functions of the C library's names: a tracer that counts the system
 * calls it makes (`syscall`), libfaketime's `clock_gettime` (preloaded by `faketime`), a
 * logger's `write`, fakeroot's `fstat`. The loader binds every caller of libc's, a preloaded
 * allocator included, to the program's, and one that allocates then runs inside the
 * allocator. Before session 75 the allocator called libc's `syscall` for its memory (under the
 * page heap's lock), `clock_gettime` on its slow paths, `getrlimit` when it grew, and `fstat`,
 * `fcntl` and `write` for its output: the program hung or crashed in every mode (a breaker
 * run; `faketime` hung even `/bin/true`). glibc's malloc calls none of them.
 *
 * Each function below records the call in a block it allocates (kept on a short list, the
 * oldest freed) and forwards to the kernel through the C library's own `syscall`, found at
 * start-up. The program then grows the heap, maps and unmaps big blocks, runs threads that
 * contend, prints malloc_stats and trims; it calls none of them itself, so none may have run.
 *
 * usage: own_libc
 * Prints "own_libc ok calls=<n> mode=...". */
#include "conf.h"

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

static long (*libc_syscall)(long, ...);
static pthread_mutex_t records_lock = PTHREAD_MUTEX_INITIALIZER;
static void *records[16];
static unsigned long calls;
static __thread int recording;

__attribute__((constructor)) static void find_libc_syscall(void) {
    libc_syscall = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
}

/* Records one call in a fresh block; the oldest of 16 is freed. */
static void record(long what) {
    if (recording) return;
    recording = 1;
    char *r = malloc(24 + (size_t)(what * 40));
    if (r != NULL) {
        memset(r, (int)what, 24);
        pthread_mutex_lock(&records_lock);
        unsigned long k = calls++;
        free(records[k % 16]);
        records[k % 16] = r;
        pthread_mutex_unlock(&records_lock);
    }
    recording = 0;
}

long syscall(long nr, ...) {
    va_list ap;
    va_start(ap, nr);
    long a[6];
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    record(1);
    return libc_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    record(2);
    return (int)libc_syscall(SYS_clock_gettime, clock, ts);
}

int getrlimit(__rlimit_resource_t resource, struct rlimit *rl) {
    record(3);
    return (int)libc_syscall(SYS_prlimit64, 0, resource, NULL, rl);
}

int fstat(int fd, struct stat *st) {
    record(4);
    return (int)libc_syscall(SYS_fstat, fd, st);
}

int fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long);
    va_end(ap);
    record(5);
    return (int)libc_syscall(SYS_fcntl, fd, cmd, arg);
}

ssize_t write(int fd, const void *buf, size_t n) {
    record(6);
    return libc_syscall(SYS_write, fd, buf, n);
}

int sched_yield(void) {
    record(7);
    return (int)libc_syscall(SYS_sched_yield);
}

int nanosleep(const struct timespec *req, struct timespec *rem) {
    record(8);
    return (int)libc_syscall(SYS_nanosleep, req, rem);
}

static void *contend(void *arg) {
    size_t seed = (size_t)arg;
    void *keep[64] = {0};
    for (size_t i = 0; i < 200000; i++) {
        size_t k = (i * 7 + seed) % 64;
        free(keep[k]);
        keep[k] = malloc(16 + (i * 13 + seed) % 3000);
        CHECK(keep[k] != NULL);
    }
    for (int k = 0; k < 64; k++) free(keep[k]);
    return NULL;
}

int main(void) {
    conf_init("own_libc", 60);
    CHECK(libc_syscall != NULL);
    static void *blocks[20000];
    for (int i = 0; i < 20000; i++) {
        blocks[i] = malloc(64 + (size_t)(i % 4000));
        CHECK(blocks[i] != NULL);
        fill(blocks[i], 64, (uint64_t)i);
    }
    for (int i = 0; i < 20000; i++) {
        CHECK(verify(blocks[i], 64, (uint64_t)i) == (size_t)-1);
        free(blocks[i]);
    }
    for (int i = 0; i < 8; i++) {
        char *big = malloc((size_t)(1 + i % 3) * (24u << 20));
        CHECK(big != NULL);
        memset(big, i, 1 << 20);
        free(big);
    }
    pthread_t t[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, contend, (void *)(size_t)i) == 0);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    /* malloc_stats writes its report to descriptor 2: /dev/null for the while. */
    int saved = dup(2), null = open("/dev/null", O_WRONLY);
    CHECK(saved >= 0 && null >= 0 && dup2(null, 2) == 2);
    malloc_stats();
    CHECK(dup2(saved, 2) == 2 && close(saved) == 0 && close(null) == 0);
    malloc_trim(0);
    /* Nothing but the allocator could have called them, and it must not. */
    CHECKF(calls == 0, "the program's own C library functions ran %lu times", calls);
    printf("own_libc ok calls=%lu mode=%s\n", calls, conf_mode());
    return 0;
}
