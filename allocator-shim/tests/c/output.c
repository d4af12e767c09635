/* The allocator's own output must never change what the program does or writes.
 *
 * usage: output plain            writes one line on stdout and one on stderr, checks that
 *                                 SIGPIPE is neither pending nor blocked, allocates, exits 0
 *        output reuse-fd2 PATH   closes stderr, opens PATH (which gets descriptor 2), writes
 *                                 one line of data to it, allocates, exits 0
 *        output quiet            as plain, without writing to stderr
 *        output pid              prints its pid, allocates, exits 0
 * Run with and without RSEQMALLOC_OPTIONS that make the allocator print (warnings, stats). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void churn(void) {
    void *keep[64];
    for (int r = 0; r < 100; r++)
        for (int i = 0; i < 64; i++) {
            if (r) free(keep[i]);
            keep[i] = malloc(16 + (size_t)i * 40);
            if (!keep[i]) exit(3);
            memset(keep[i], i, 16);
        }
    for (int i = 0; i < 64; i += 2) free(keep[i]);
}

static void sigpipe_clean(void) {
    sigset_t pending, mask;
    if (sigpending(&pending) != 0 || sigprocmask(SIG_BLOCK, NULL, &mask) != 0) exit(4);
    if (sigismember(&pending, SIGPIPE)) {
        printf("SIGPIPE pending\n");
        exit(5);
    }
    if (sigismember(&mask, SIGPIPE)) {
        printf("SIGPIPE blocked\n");
        exit(6);
    }
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "plain") == 0) {
        sigpipe_clean();
        churn();
        printf("program stdout\n");
        fflush(stdout);
        fputs("program stderr\n", stderr);
        sigpipe_clean();
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "reuse-fd2") == 0) {
        close(2);
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd != 2) return 7;
        static const char data[] = "program data\n";
        if (write(2, data, sizeof data - 1) != (ssize_t)(sizeof data - 1)) return 8;
        churn();
        printf("wrote data on fd 2\n");
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "quiet") == 0) {
        sigpipe_clean();
        churn();
        printf("program stdout\n");
        fflush(stdout);
        sigpipe_clean();
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "pid") == 0) {
        churn();
        printf("%d\n", (int)getpid());
        return 0;
    }
    return 2;
}
