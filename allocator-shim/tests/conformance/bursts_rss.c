/* Issue 12 (kind): pages a burst of small objects freed are what the next burst of the same
 * kind lands on, not fresh pages beside them. A program that allocates N objects, fills them
 * and frees them all, again and again, peaks at the same RSS in every round.
 *
 * Before the fix the page heap gave a class's new span the tightest free run, fresh or not: the
 * second burst of 100,000 objects of 1 KiB put 31 MiB on untouched pages of the heap's newest
 * chunk while the 100 MiB the first burst freed stayed resident (the benchmark runner's
 * `batch`), and bursts of 40,000 B and 256 KiB objects grew by 18-22 %.
 *
 * usage: bursts_rss size count     four rounds; prints the peak RSS of each, then
 *        "bursts_rss ok first=<KiB> most=<KiB> mode=<mode>", or fails when a later round
 *        peaks more than 4 MiB above the first. */
#include "conf.h"

static long rss_kib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f);
    CHECK(fscanf(f, "%ld %ld", &pages, &resident) == 2);
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(int argc, char **argv) {
    conf_init("bursts_rss", 60);
    CHECK(argc == 3);
    /* No decay between rounds: on a slow machine a round may outlast the default 1 s, and a
     * decay releasing the freed pages would hide where the next round's spans go. */
    char answer[64];
    CHECK(conf_glibc() || conf_ctl("decay_ms=600000", answer, sizeof answer) >= 0);
    size_t size = strtoul(argv[1], NULL, 10);
    long count = strtol(argv[2], NULL, 10);
    CHECK(size >= 16 && count > 0);
    unsigned char **objs = calloc((size_t)count, sizeof *objs);
    CHECK(objs);
    long peak[4];
    for (int round = 0; round < 4; round++) {
        for (long i = 0; i < count; i++) {
            objs[i] = malloc(size);
            CHECK(objs[i]);
            memset(objs[i], (int)(i & 0xff) | 1, size);
        }
        peak[round] = rss_kib();
        for (long i = 0; i < count; i++) {
            CHECKF(objs[i][size - 1] == ((i & 0xff) | 1), "object %ld overwritten", i);
            free(objs[i]);
        }
        conf_say("round %d: peak RSS %ld KiB\n", round, peak[round]);
    }
    long most = peak[1];
    for (int round = 2; round < 4; round++)
        if (peak[round] > most) most = peak[round];
    CHECKF(most <= peak[0] + 4096, "a later round peaked at %ld KiB, the first at %ld KiB", most,
           peak[0]);
    free(objs);
    conf_say("bursts_rss ok first=%ld most=%ld mode=%s\n", peak[0], most, conf_mode());
    return 0;
}
