/* Built with `cc linked.c $(pkg-config --cflags --libs rseqmalloc)` against an installed
 * librseqmalloc and run without LD_PRELOAD: malloc must be the library's. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rseqmalloc.h>

int main(int argc, char **argv) {
    (void)argv;
    Dl_info info;
    if (!dladdr(dlsym(RTLD_DEFAULT, "malloc"), &info)) return 1;
    char *p = malloc((size_t)argc * 1000);
    if (!p) return 2;
    memset(p, 1, (size_t)argc * 1000);
    void *q = NULL;
    if (posix_memalign(&q, 4096, 100000) != 0) return 3;
    free(q);
    printf("linked ok malloc from %s, version %s, mode %s\n", strrchr(info.dli_fname, '/') + 1,
           rseqmalloc_version(), rseqmalloc_rseq_mode());
    free(p);
    return 0;
}
