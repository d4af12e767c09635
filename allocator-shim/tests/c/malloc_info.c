/* malloc_info's XML after some allocations, and the mapped bytes librseqmalloc reports (if it
 * is loaded), for the harness to compare with glibc's XML and with the figures.
 *
 * usage: malloc_info */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    static void *p[2000];
    for (int i = 0; i < 2000; i++) p[i] = malloc((size_t)(i % 300) * 8 + 1);
    for (int i = 0; i < 2000; i += 3) free(p[i]);
    if (malloc_info(1, stdout) != EINVAL) return 1;
    if (malloc_info(0, stdout) != 0) return 2;
    int (*ctl)(const char *, char *, size_t) =
        (int (*)(const char *, char *, size_t))dlsym(RTLD_DEFAULT, "rseqmalloc_ctl");
    char mapped[64] = "none";
    if (ctl) ctl("stats.mapped", mapped, sizeof mapped);
    printf("mapped %s\n", mapped);
    return 0;
}
