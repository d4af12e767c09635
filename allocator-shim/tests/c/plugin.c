/* A shared object for hard.c: built by the harness (cc -shared -fPIC), dlopen'ed and
 * dlclose'd repeatedly. Its constructor allocates and its destructor checks and frees; it hands
 * memory out that outlives it, frees memory it did not allocate, and has a dynamic-TLS
 * variable, whose per-thread blocks glibc allocates with malloc on first use in each thread
 * and frees at thread exit or dlclose. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *buf;
static unsigned char *big;
static void *aligned;
static __thread char tls_buf[4096];

__attribute__((constructor)) static void plugin_init(void) {
    buf = malloc(1000);
    if (buf) memset(buf, 0x42, 1000);
    big = calloc(1, 4 << 20);
    if (posix_memalign(&aligned, 4096, 10000) != 0) aligned = NULL;
}

__attribute__((destructor)) static void plugin_fini(void) {
    int ok = buf && big && aligned && ((unsigned long)aligned & 4095) == 0;
    for (int i = 0; ok && i < 1000; i++) ok = buf[i] == 0x42;
    for (int i = 0; ok && i < (4 << 20); i += 4096) ok = big[i] == 0;
    free(buf);
    free(big);
    free(aligned);
    printf("plugin fini %s\n", ok ? "ok" : "FAILED");
}

/* Memory that outlives the plugin: the caller frees it after dlclose. */
void *plugin_alloc(size_t n) {
    void *p = malloc(n);
    if (p) memset(p, 0x17, n);
    return p;
}

/* Frees what the caller allocated. */
void plugin_free(void *p) { free(p); }

/* Touches this thread's dynamic TLS block (allocated by glibc on first use). */
int plugin_tls(int v) {
    tls_buf[v & 4095] = (char)v;
    char *s = strdup(tls_buf[0] ? "x" : "y");
    int r = s ? (int)strlen(s) + tls_buf[v & 4095] : -1;
    free(s);
    return r;
}
