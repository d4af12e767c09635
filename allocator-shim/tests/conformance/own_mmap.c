/* A program that defines mmap and munmap of its own (a tracker of its mappings, which logs into
 * malloc'd memory) runs. The loader binds every caller of libc's mmap to the program's, a
 * preloaded allocator included: before session 74 the allocator called mmap through libc's
 * name, so the program's mmap allocated under the page heap's lock and malloc hung, in every
 * mode. glibc's malloc (and tcmalloc) make the system call directly; jemalloc hangs and
 * mimalloc crashes on this program. The allocator now makes its memory system calls directly
 * too.
 *
 * Fills of blocks of 16 B to 200 KB, five times over, each checked and freed.
 *
 * usage: own_mmap     prints "own_mmap ok calls=<n> mode=..." (n: calls of the program's own
 * mmap and munmap, by whoever made them) */
#include "conf.h"

#include <sys/mman.h>
#include <sys/syscall.h>

static size_t calls;
static char *log_line;

/* The program's mmap: the system call, then a log line in a block of up to 300 KB. */
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    void *p = (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
    calls++;
    char *line = malloc(64 + (calls % 4) * 100000);
    if (line != NULL) {
        snprintf(line, 64, "mmap %zu bytes", len);
        free(log_line);
        log_line = line;
    }
    return p;
}

/* The program's munmap: the system call, counted. */
int munmap(void *addr, size_t len) {
    calls++;
    return (int)syscall(SYS_munmap, addr, len);
}

int main(void) {
    conf_init("own_mmap", 30);
    enum { N = 2000 };
    static unsigned char *v[N];
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < N; i++) {
            size_t n = 16 + (size_t)i * 97;
            v[i] = malloc(n);
            CHECK(v[i] != NULL);
            fill(v[i], n, (uint64_t)(round * N + i));
        }
        for (int i = 0; i < N; i++) {
            size_t n = 16 + (size_t)i * 97;
            CHECKF(verify(v[i], n, (uint64_t)(round * N + i)) == (size_t)-1, "block %d changed", i);
            free(v[i]);
        }
    }
    free(log_line);
    conf_say("own_mmap ok calls=%zu mode=%s\n", calls, conf_mode());
    return 0;
}
