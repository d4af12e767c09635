/* The contract: a call that succeeds leaves errno as it was, also when the allocator tried
 * something first that the system refused. A review (session 73) found realloc breaking it:
 * a C block that realloc moves to grow asks for a quarter of headroom first; under an
 * address-space limit that request can fail (setting ENOMEM) while the exact size still fits,
 * and the realloc then returned a block with errno ENOMEM.
 *
 * With RLIMIT_AS 48 MiB above the process's use: fill the class of the exact size (257 B) and
 * then the headroom's (320 B) until malloc returns NULL, free a few blocks of the first fill,
 * set errno to EDOM and grow a 256 B block to 257 B. The realloc must succeed (glibc: yes),
 * keep the block's bytes, and leave errno EDOM.
 *
 * usage: rlimit_realloc     prints "rlimit_realloc ok filled=<n>,<n> mode=..." */
#include "conf.h"

#include <sys/resource.h>

enum { MAX_BLOCKS = 1 << 20 };

static void *exact[MAX_BLOCKS], *headroom[MAX_BLOCKS];

/* Fills `v` with blocks of `size` bytes until malloc returns NULL (with ENOMEM) or the array is
 * full; returns how many. */
static size_t fill_until_null(void **v, size_t size) {
    size_t n = 0;
    while (n < MAX_BLOCKS) {
        errno = 0;
        v[n] = malloc(size);
        if (v[n] == NULL) {
            CHECKF(errno == ENOMEM, "malloc(%zu) returned NULL with errno %d", size, errno);
            break;
        }
        n++;
    }
    return n;
}

/* The process's address space in use, in bytes. */
static size_t vm_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    size_t pages = 0;
    CHECK(fscanf(f, "%zu", &pages) == 1);
    fclose(f);
    return pages * (size_t)sysconf(_SC_PAGESIZE);
}

int main(void) {
    conf_init("rlimit_realloc", 60);
    unsigned char *p = malloc(256);
    CHECK(p != NULL);
    for (int i = 0; i < 256; i++) p[i] = (unsigned char)i;
    size_t room = vm_bytes() + (48u << 20);
    struct rlimit rl = {room, room};
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    size_t n_exact = fill_until_null(exact, 257);
    size_t n_headroom = fill_until_null(headroom, 320);
    CHECKF(n_exact > 8 && n_exact < MAX_BLOCKS && n_headroom < MAX_BLOCKS,
           "the limit did not stop the fills (%zu, %zu blocks)", n_exact, n_headroom);
    for (size_t i = n_exact - 8; i < n_exact; i++) free(exact[i]);
    errno = EDOM;
    unsigned char *q = realloc(p, 257);
    int e = errno;
    CHECKF(q != NULL, "realloc(256 -> 257 B) failed with 8 blocks of that size free");
    CHECKF(e == EDOM, "a successful realloc left errno %d (%s), not EDOM", e, strerror(e));
    for (int i = 0; i < 256; i++) CHECKF(q[i] == (unsigned char)i, "byte %d lost", i);
    free(q);
    for (size_t i = 0; i < n_exact - 8; i++) free(exact[i]);
    for (size_t i = 0; i < n_headroom; i++) free(headroom[i]);
    conf_say("rlimit_realloc ok filled=%zu,%zu mode=%s\n", n_exact, n_headroom, conf_mode());
    return 0;
}
