/* Preloaded after librseqmalloc.so (LD_PRELOAD="librseqmalloc.so writespy.so"): sees every
 * write(2) system call that writes a message of the allocator (a buffer starting with
 * "rseqmalloc" or "{\"rseqmalloc") on a descriptor other than stdout, and makes it reach the
 * file framed as "<" + buffer + ">", in one system call. The harness then sees how many calls
 * made each line. Other writes pass through unchanged.
 *
 * The allocator makes its system calls itself, not through the C library's write (a program's
 * own write must never run inside it), so the spy cannot interpose a function: at start-up it
 * installs a seccomp filter that turns every write(2) and writev(2) made from outside the spy's
 * own code into SIGSYS, and its handler makes the call (framed or not) from inside it. x86_64
 * only, as the tests that preload it. */
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

/* The spy's one system call site, in a section of its own so that the filter can tell it by
 * its address (the linker defines __start_/__stop_ for the section). */
__attribute__((section("spy_syscall"), noinline)) static long spy_syscall3(long nr, long a,
                                                                           long b, long c) {
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return r;
}
extern char __start_spy_syscall[], __stop_spy_syscall[];

static int ours(const void *buf, size_t n) {
    return (n >= 10 && memcmp(buf, "rseqmalloc", 10) == 0) ||
           (n >= 12 && memcmp(buf, "{\"rseqmalloc", 12) == 0);
}

static long spy_write(int fd, const void *buf, size_t n) {
    if (fd == 1 || !ours(buf, n)) return spy_syscall3(SYS_write, fd, (long)buf, (long)n);
    struct iovec v[3] = {{(void *)"<", 1}, {(void *)buf, n}, {(void *)">", 1}};
    long r = spy_syscall3(SYS_writev, fd, (long)v, 3);
    return r < 0 ? r : (long)n;
}

static long spy_writev(int fd, const struct iovec *iov, int cnt) {
    if (fd != 1 && cnt > 0 && cnt <= 64 && ours(iov[0].iov_base, iov[0].iov_len)) {
        /* One writev of the allocator: frame it as a whole. */
        struct iovec v[66];
        v[0].iov_base = (void *)"<";
        v[0].iov_len = 1;
        size_t total = 0;
        for (int i = 0; i < cnt; i++) {
            v[i + 1] = iov[i];
            total += iov[i].iov_len;
        }
        v[cnt + 1].iov_base = (void *)">";
        v[cnt + 1].iov_len = 1;
        long r = spy_syscall3(SYS_writev, fd, (long)v, cnt + 2);
        return r < 0 ? r : (long)total;
    }
    return spy_syscall3(SYS_writev, fd, (long)iov, cnt);
}

/* A write or writev the filter trapped: made here, its result (or -errno) in rax. */
static void on_sigsys(int sig, siginfo_t *info, void *uc_) {
    (void)sig;
    ucontext_t *uc = uc_;
    greg_t *g = uc->uc_mcontext.gregs;
    long r = info->si_syscall == SYS_write
                 ? spy_write((int)g[REG_RDI], (const void *)g[REG_RSI], (size_t)g[REG_RDX])
                 : spy_writev((int)g[REG_RDI], (const struct iovec *)g[REG_RSI], (int)g[REG_RDX]);
    g[REG_RAX] = r;
}

__attribute__((constructor)) static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) != 0) _exit(90);
    unsigned long lo = (unsigned long)__start_spy_syscall, hi = (unsigned long)__stop_spy_syscall;
    /* write and writev from below `lo` or at/above `hi` trap; everything else is allowed.
     * (The spy's section lies within one 4 GiB-aligned window: its high words are equal.) */
    if ((lo >> 32) != (hi >> 32)) _exit(91);
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_writev, 0, 6),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer) + 4),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)(lo >> 32), 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer)),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (unsigned)lo, 0, 1),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (unsigned)hi, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(92);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) _exit(93);
}
