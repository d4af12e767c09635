/* Runs a program under a seccomp filter that refuses the rseq system call, so the program's
 * glibc and allocator start without restartable sequences (as in some sandboxes and
 * containers): prctl(PR_SET_NO_NEW_PRIVS), a BPF filter returning `errno` (EPERM or ENOSYS)
 * for rseq and allowing everything else, a check that rseq now fails with that errno, then
 * execv. The environment (LD_PRELOAD, GLIBC_TUNABLES, RSEQMALLOC_OPTIONS) passes through.
 *
 * usage: seccomp_run EPERM|ENOSYS <program> [args...] */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#error "seccomp_run: unknown architecture"
#endif

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[1], "EPERM") != 0 && strcmp(argv[1], "ENOSYS") != 0)) {
        fprintf(stderr, "usage: seccomp_run EPERM|ENOSYS <program> [args...]\n");
        return 2;
    }
    unsigned err = strcmp(argv[1], "EPERM") == 0 ? EPERM : ENOSYS;
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rseq, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof filter / sizeof *filter), filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        perror("seccomp_run: PR_SET_NO_NEW_PRIVS");
        return 2;
    }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        perror("seccomp_run: PR_SET_SECCOMP");
        return 2;
    }
    /* Without the filter, rseq(NULL, 0, 0, 0) fails with EINVAL (or EBUSY); with it, `err`. */
    errno = 0;
    long rc = syscall(__NR_rseq, NULL, 0, 0, 0);
    if (rc != -1 || errno != (int)err) {
        fprintf(stderr, "seccomp_run: the filter does not refuse rseq (rc %ld, errno %d)\n", rc,
                errno);
        return 2;
    }
    execv(argv[2], argv + 2);
    perror("seccomp_run: execv");
    return 2;
}
