/* Conformance (kind 01, free tag): a valid program. A large block whose stale bytes hold an
 * old free object's tag is moved by realloc, then moved again into a new small block at the
 * large block's old address, and freed: that free must not see a "double free".
 * Prints "stale_tag ok reached=1 mode=..." when it got the small block at the old address. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "conf.h"

int main(void) {
    cpu_set_t s; CPU_ZERO(&s); CPU_SET(0, &s); sched_setaffinity(0, sizeof s, &s);
    enum { N = 10000 };
    static void *p[N];
    /* 1. many free objects of the 2 KiB class: every page start is an object start. */
    for (int i = 0; i < N; i++) {
        p[i] = malloc(2000);
        if (p[i]) *(char *)p[i] = 1;
    }
    for (int i = 0; i < N; i++) free(p[i]);
    /* 2. a large block on those dirty pages; only its first byte written. */
    char *b = malloc(300000);
    b[0] = 0x5c;
    /* 3. moved (large to large): its stale bytes travel with it. */
    char *b2 = realloc(b, 40u << 20);
    b2[0] = 0x5c;
    /* 4. find a 2 KiB block at b's address. */
    static void *q[N];
    int found = -1, n = 0;
    for (; n < N; n++) {
        q[n] = malloc(2000);
        if (q[n] == (void *)b) { found = n; break; }
    }
    if (found < 0) { conf_say("stale_tag ok reached=0 mode=%s\n", conf_mode()); return 0; }
    free(q[found]);                  /* on top of this CPU's cache */
    char *c = realloc(b2, 2000);     /* pops it: copies b2's first 2000 bytes over it */
    c[0] = 1;
    free(c);                          /* valid: c is live */
    conf_say("stale_tag ok reached=1 mode=%s\n", conf_mode());
    return 0;
}
