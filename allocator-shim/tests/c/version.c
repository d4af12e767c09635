/* Prints the version three ways: the header's macro, the library's function, and the JSON
 * report's field is checked by the harness. Linked against the library (-lrseqmalloc). */
#include <stdio.h>
#include <stdlib.h>

#include "rseqmalloc.h"

int main(void) {
    void *p = malloc(100);
    printf("header %s library %s\n", RSEQMALLOC_VERSION, rseqmalloc_version());
    free(p);
    return 0;
}
