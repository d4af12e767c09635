/* Defines the compiled-in options string (like jemalloc's malloc_conf); the harness links it
 * to the library or only preloads the library, with and without -rdynamic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *rseqmalloc_options = "stats=json, decay_ms=250";

int main(int argc, char **argv) {
    (void)argv;
    char *p = malloc((size_t)argc * 10); /* not folded away: malloc is referenced */
    if (!p) return 1;
    strcpy(p, "compiled ok");
    puts(p);
    free(p);
    return 0;
}
