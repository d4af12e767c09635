/* A library the test program opens with dlopen(RTLD_NOW | RTLD_DEEPBIND): its malloc, free,
 * realloc and strdup are looked up in its own scope first (itself, then libc). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

void *lib_alloc(size_t n) {
    char *p = malloc(n);
    if (p) memset(p, 'L', n);
    return p;
}

void lib_free(void *p) { free(p); }

void *lib_realloc(void *p, size_t n) { return realloc(p, n); }

/* libc's strdup allocates with the process's malloc (libc calls it through its PLT); the
 * library frees the copy with the free it binds to. */
int lib_strdup_free(const char *s) {
    char *d = strdup(s);
    int ok = d != NULL && strcmp(d, s) == 0;
    free(d);
    return ok;
}

/* The file the library's malloc comes from. */
const char *lib_malloc_from(void) {
    Dl_info info;
    void *(*m)(size_t) = malloc;
    if (!dladdr((void *)m, &info)) return "?";
    const char *slash = strrchr(info.dli_fname, '/');
    return slash ? slash + 1 : info.dli_fname;
}

/* Defined here and in the program: which one the library's call binds to shows whether
 * RTLD_DEEPBIND was honoured (1: the library's own) or not (2: the program's). */
int deep_whoami(void) { return 1; }
int lib_whoami(void) { return deep_whoami(); }
