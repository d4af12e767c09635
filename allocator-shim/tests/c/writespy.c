/* Preloaded after librseqmalloc.so (LD_PRELOAD="librseqmalloc.so writespy.so"): interposes
 * write(2) and writev(2) so that every call that writes a message of the allocator (a buffer
 * starting with "rseqmalloc" or "{\"rseqmalloc") on a descriptor other than stdout reaches the
 * file framed as "<" + buffer + ">", in one system call. The harness then sees how many calls
 * made each line. Other writes pass through unchanged. */
#define _GNU_SOURCE
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static int ours(const void *buf, size_t n) {
    return (n >= 10 && memcmp(buf, "rseqmalloc", 10) == 0) ||
           (n >= 12 && memcmp(buf, "{\"rseqmalloc", 12) == 0);
}

ssize_t write(int fd, const void *buf, size_t n) {
    if (fd == 1 || !ours(buf, n)) return syscall(SYS_write, fd, buf, n);
    struct iovec v[3] = {{(void *)"<", 1}, {(void *)buf, n}, {(void *)">", 1}};
    ssize_t r = syscall(SYS_writev, fd, v, 3);
    return r < 0 ? r : (ssize_t)n;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    if (fd != 1 && cnt > 0 && ours(iov[0].iov_base, iov[0].iov_len)) {
        /* One writev of the allocator: frame it as a whole. */
        struct iovec v[66];
        if (cnt > 64) return syscall(SYS_writev, fd, iov, cnt);
        v[0].iov_base = (void *)"<";
        v[0].iov_len = 1;
        size_t total = 0;
        for (int i = 0; i < cnt; i++) {
            v[i + 1] = iov[i];
            total += iov[i].iov_len;
        }
        v[cnt + 1].iov_base = (void *)">";
        v[cnt + 1].iov_len = 1;
        ssize_t r = syscall(SYS_writev, fd, v, cnt + 2);
        return r < 0 ? r : (ssize_t)total;
    }
    return syscall(SYS_writev, fd, iov, cnt);
}
