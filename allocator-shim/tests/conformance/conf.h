/* Helpers of the conformance programs (run by tests/conformance.rs), on top of tests/c/common.h.
 *
 * conf_init() replaces common.h's test_init(): the same check that librseqmalloc is the
 * allocator — or, with CONF_GLIBC=1 in the environment (the harness's baseline runs of the same
 * program without LD_PRELOAD), that it is NOT — and a watchdog that turns a hang into a
 * failure the harness can name: after `secs` seconds it writes one line and kills the whole
 * process group (the program, every child it forked, and the `timeout` wrapper, so no
 * orphaned child keeps the harness's pipes open). */
#ifndef CONF_H
#define CONF_H

#include "common.h"

#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/resource.h>

static const char *conf_name = "program";

static void conf_watchdog(int sig) {
    (void)sig;
    char line[160];
    int n = snprintf(line, sizeof line, "watchdog: %s hung (no progress before its deadline)\n",
                     conf_name);
    if (n > 0) (void)!write(2, line, (size_t)n);
    kill(0, SIGKILL);
    _exit(99);
}

/* 1 when this run is the glibc baseline (no librseqmalloc). */
static inline int conf_glibc(void) { return getenv("CONF_GLIBC") != NULL; }

static inline void conf_handle(int sig, void (*handler)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(sig, &sa, NULL) == 0);
}

static inline void conf_arm_watchdog(unsigned secs) {
    conf_handle(SIGALRM, conf_watchdog);
    alarm(secs);
}

static inline void conf_init(const char *name, unsigned watchdog_secs) {
    conf_name = name;
    conf_arm_watchdog(watchdog_secs);
    if (conf_glibc()) {
        CHECKF(dlsym(RTLD_DEFAULT, "rseqmalloc_rseq_mode") == NULL,
               "CONF_GLIBC=1 but librseqmalloc is loaded");
        return;
    }
    check_malloc_is_librseqmalloc();
}

/* Pins the calling thread to CPU `cpu`; 1 on success (a machine with fewer CPUs refuses). */
static inline int conf_pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set) == 0;
}

/* rseqmalloc_ctl(command, out, size) when librseqmalloc is loaded (found at run time: the
 * programs also run without it); -1 without it. */
static inline int conf_ctl(const char *command, char *out, size_t size) {
    int (*f)(const char *, char *, size_t) =
        (int (*)(const char *, char *, size_t))dlsym(RTLD_DEFAULT, "rseqmalloc_ctl");
    return f ? f(command, out, size) : -1;
}

/* A count `rseqmalloc_ctl` reports for `command` (e.g. "stats.sent_home"); 0 without the
 * library. */
static inline unsigned long conf_ctl_count(const char *command) {
    char out[64];
    if (conf_ctl(command, out, sizeof out) != 0) return 0;
    return strtoul(out, NULL, 10);
}

/* 1 when librseqmalloc reports its option `name` set to `value` (`rseqmalloc_ctl(name)`); 0
 * without the library. */
static inline int conf_option_is(const char *name, const char *value) {
    char out[32] = "";
    return conf_ctl(name, out, sizeof out) == 0 && strcmp(out, value) == 0;
}

/* Objects owner return has taken from threads for their homes so far: sent to an inbox, or
 * declined by a full one (0 without the library). */
static inline unsigned long conf_taken_for_home(void) {
    return conf_ctl_count("stats.sent_home") + conf_ctl_count("stats.sent_home_declined");
}

/* Objects owner return would have sent home but freed where they were, the freeing thread
 * having no outbox and no memory for one (0 without the library). */
static inline unsigned long conf_kept_for_want_of_outbox(void) {
    return conf_ctl_count("stats.sent_home_no_outbox");
}

/* The rseq mode, or "glibc-malloc" in a baseline run. Call after the first allocation. */
static inline const char *conf_mode(void) { return conf_glibc() ? "glibc-malloc" : shim_mode(); }

/* What the process uses now of what limit `resource` bounds (bytes): VmSize for RLIMIT_AS,
 * VmData (private writable + stack... as the kernel counts it) for RLIMIT_DATA, from
 * /proc/self/status. */
static inline size_t conf_in_use(int resource) {
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f);
    char line[256];
    size_t kb = 0, v;
    const char *key = resource == RLIMIT_AS ? "VmSize: %zu kB" : "VmData: %zu kB";
    while (fgets(line, sizeof line, f))
        if (sscanf(line, key, &v) == 1) kb = v;
    fclose(f);
    CHECK(kb > 0);
    return kb * 1024;
}

/* Frees a chain of blocks linked through their first words (NULL ends it). */
static inline void conf_free_chain(void *head) {
    while (head) {
        void *next = *(void **)head;
        free(head);
        head = next;
    }
}

/* Sets the limit `which` names ("as": RLIMIT_AS, "data": RLIMIT_DATA) to `room` bytes above
 * what the process uses now (after one allocation, so the allocator is set up); returns the
 * resource. */
static inline int conf_limit_room(const char *which, size_t room) {
    int resource = strcmp(which, "as") == 0 ? RLIMIT_AS : RLIMIT_DATA;
    CHECK(resource == RLIMIT_AS || strcmp(which, "data") == 0);
    void *warm = malloc(100);
    free(warm);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = conf_in_use(resource) + room;
    CHECK(setrlimit(resource, &rl) == 0);
    return resource;
}

/* 1 when the run uses the critical sections (rseq mode glibc or own; not the fallback, not
 * the glibc baseline). Call after the first allocation. */
static inline int conf_rseq_mode(void) {
    const char *mode = conf_mode();
    return strcmp(mode, "glibc") == 0 || strcmp(mode, "own") == 0;
}

/* Writes a whole line to stdout with one write(2) (no stdio buffer a fork could duplicate and
 * no buffer lost when the program dies by a signal). */
static inline void conf_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void conf_say(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = sizeof line - 1;
    (void)!write(1, line, (size_t)n);
}

/* What the program is doing, named on stderr if it dies by SIGABRT (an allocator's abort
 * message says which pointer, this says which step of the test). */
static char conf_step_buf[256];
static inline void conf_step(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void conf_step(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(conf_step_buf, sizeof conf_step_buf, fmt, ap);
    va_end(ap);
}
static void conf_on_abort(int sig) {
    char line[320];
    int n = snprintf(line, sizeof line, "%s: aborted during: %s\n", conf_name, conf_step_buf);
    if (n > 0) (void)!write(2, line, (size_t)n);
    signal(sig, SIG_DFL);
    raise(sig);
}
/* Names the current step on stderr when the program aborts (for tests where any abort is a
 * failure; not for those that expect exactly one line from the allocator). */
static inline void conf_name_step_on_abort(void) { conf_handle(SIGABRT, conf_on_abort); }

/* C23, not declared by glibc 2.36's headers. Weak, so a baseline run against glibc 2.36 (which
 * has neither) links and can test for them. */
#ifdef __cplusplus
extern "C" {
#endif
void free_sized(void *ptr, size_t size) __attribute__((weak));
void free_aligned_sized(void *ptr, size_t alignment, size_t size) __attribute__((weak));
#ifdef __cplusplus
}
#endif

/* Fills `v` with small objects (16-240 B, each written) until they hold `bytes`; returns how
 * many (at most bytes / 16): a thread's share of a small-object heap (thread_rss,
 * thread_rounds). */
static inline size_t conf_fill_small(rng_t *r, void **v, size_t bytes) {
    size_t n = 0, total = 0;
    while (total < bytes) {
        size_t size = 16 + rng_below(r, 225);
        v[n] = malloc(size);
        CHECK(v[n]);
        memset(v[n], 0x5a, size);
        total += size;
        n++;
    }
    return n;
}

/* free_sized / free_aligned_sized when the allocator has them, else free. */
static inline void conf_free_sized(void *p, size_t size) {
    if (free_sized) free_sized(p, size);
    else free(p);
}
static inline void conf_free_aligned_sized(void *p, size_t align, size_t size) {
    if (free_aligned_sized) free_aligned_sized(p, align, size);
    else free(p);
}

#endif
