/* Opens tests/c/deeplib.c's library with dlopen(RTLD_NOW | RTLD_DEEPBIND) and hands blocks
 * across: program allocates / library frees, library allocates / program frees, library
 * reallocs the program's block, libc's strdup freed by the library.
 *
 * usage: deepbind LIB [probe]   "probe" only reports where the library's malloc comes from
 * Linked with -rdynamic, so the library can see deep_whoami below. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int deep_whoami(void) { return 2; }

static void *sym(void *h, const char *name) {
    void *f = dlsym(h, name);
    if (!f) {
        fprintf(stderr, "no %s: %s\n", name, dlerror());
        exit(3);
    }
    return f;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_DEEPBIND);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 3;
    }
    const char *(*malloc_from)(void) = (const char *(*)(void))sym(h, "lib_malloc_from");
    int (*whoami)(void) = (int (*)(void))sym(h, "lib_whoami");
    printf("library malloc from %s, deep_whoami %d\n", malloc_from(), whoami());
    if (argc > 2 && strcmp(argv[2], "probe") == 0) return 0;

    void *(*lib_alloc)(size_t) = (void *(*)(size_t))sym(h, "lib_alloc");
    void (*lib_free)(void *) = (void (*)(void *))sym(h, "lib_free");
    void *(*lib_realloc)(void *, size_t) = (void *(*)(void *, size_t))sym(h, "lib_realloc");
    int (*lib_strdup_free)(const char *) = (int (*)(const char *))sym(h, "lib_strdup_free");
    for (size_t n = 8; n <= (8u << 20); n *= 4) {
        char *p = malloc(n); /* program allocates, library frees */
        memset(p, 'P', n);
        lib_free(p);
        char *q = lib_alloc(n); /* library allocates, program frees */
        if (!q || q[n - 1] != 'L') return 4;
        free(q);
        char *r = malloc(n); /* library reallocs the program's block */
        memset(r, 'R', n);
        r = lib_realloc(r, 3 * n);
        if (!r || r[0] != 'R' || r[n - 1] != 'R') return 5;
        free(r);
        if (!lib_strdup_free("a string libc's strdup copies")) return 6; /* libc's strdup */
    }
    printf("deepbind ok\n");
    return 0;
}
