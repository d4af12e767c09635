/* Allocates a known live set and exits normally, so that the exit report (stats=json) can be
 * checked against it; RSEQMALLOC_OPTIONS warnings appear before main. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    enum { N = 1000 };
    static void *keep[N];
    for (int i = 0; i < N; i++) {
        keep[i] = malloc(100);
        if (!keep[i]) return 1;
        memset(keep[i], i, 100);
    }
    for (int i = 0; i < N; i += 2) free(keep[i]);
    printf("live %d objects of 100 bytes\n", N / 2);
    return 0;
}
