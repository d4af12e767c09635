/* Issue 11, item 5 (kind): anything the allocator's thread set-up calls may allocate, so set-up
 * must be re-entrant, in every mode.
 *
 * glibc keeps the values of the first 32 pthread keys in the thread descriptor; a thread's
 * first pthread_setspecific on a key >= 32 callocs a second-level block. A constructor creates
 * CONF_KEYS keys (environment: a constructor has no argv; default 40) before the program's
 * first malloc, so any key the allocator creates for itself afterwards is >= 32. Then:
 *  - the main thread sets every key to a malloc'd block (freed by the key's destructor);
 *  - 8 threads, started together, each do the same, allocate and free 2,000 objects and exit
 *    (the destructors free the blocks during thread exit, while the allocator tears down);
 *  - 8 more threads whose first allocation is a calloc, and which never touch the keys;
 *  - the main thread creates more keys after all that and does the same once more.
 * argv[1] = "thread-first": the first allocation of the process happens in a new thread.
 *
 * usage: [CONF_KEYS=n] ctor_keys [thread-first]     prints "ctor_keys ok keys=<n> mode=<mode>" */
#include "conf.h"

#include <pthread.h>

enum { THREADS = 8, MAX_KEYS = 1024 };

static pthread_key_t keys[MAX_KEYS];
static int nkeys = 40;
static int ctor_errors;

__attribute__((constructor(101))) static void make_keys(void) {
    /* No malloc before this point in the program. */
    const char *k = getenv("CONF_KEYS");
    if (k) nkeys = atoi(k);
    if (nkeys < 0 || nkeys > MAX_KEYS - 8) nkeys = 40;
    for (int i = 0; i < nkeys; i++)
        if (pthread_key_create(&keys[i], free) != 0) ctor_errors++;
}

static void set_all_keys(int n, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        size_t size = 8 + (size_t)((seed + (uint64_t)i) % 200);
        void *p = malloc(size);
        CHECK(p);
        fill(p, size, seed + (uint64_t)i);
        CHECK(pthread_setspecific(keys[i], p) == 0);
        CHECK(pthread_getspecific(keys[i]) == p);
    }
}

static void churn(uint64_t seed) {
    rng_t r = {seed};
    enum { SLOTS = 64 };
    void *p[SLOTS] = {0};
    size_t sz[SLOTS] = {0};
    for (int i = 0; i < 2000; i++) {
        int k = (int)rng_below(&r, SLOTS);
        if (p[k]) {
            CHECK(verify(p[k], sz[k], seed + (uint64_t)k) == (size_t)-1);
            free(p[k]);
            p[k] = NULL;
        } else {
            sz[k] = 1 + rng_below(&r, rng_below(&r, 8) == 0 ? 70000 : 600);
            p[k] = malloc(sz[k]);
            CHECK(p[k]);
            fill(p[k], sz[k], seed + (uint64_t)k);
        }
    }
    for (int k = 0; k < SLOTS; k++) free(p[k]);
}

static pthread_barrier_t start;

static void *keyed_thread(void *arg) {
    pthread_barrier_wait(&start);
    uint64_t seed = (uint64_t)(intptr_t)arg;
    set_all_keys(nkeys, seed);
    churn(seed);
    return NULL; /* the key destructors free the blocks */
}

static void *calloc_first_thread(void *arg) {
    pthread_barrier_wait(&start);
    char *p = calloc(1, 100 + (size_t)(intptr_t)arg);
    CHECK(p && p[99] == 0);
    churn((uint64_t)(intptr_t)arg * 977);
    free(p);
    return NULL;
}

static void *first_allocation(void *arg) {
    (void)arg;
    void *p = malloc(24);
    CHECK(p);
    free(p);
    return NULL;
}

static void run_threads(void *(*fn)(void *), int base) {
    pthread_t t[THREADS];
    CHECK(pthread_barrier_init(&start, NULL, THREADS) == 0);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, fn, (void *)(intptr_t)(base + i)) == 0);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(pthread_barrier_destroy(&start) == 0);
}

int main(int argc, char **argv) {
    /* Nothing here may allocate before the first allocation below: conf_init (dlsym, dladdr)
     * comes after it. */
    if (argc > 1 && strcmp(argv[1], "thread-first") == 0) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, first_allocation, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
    void *first = malloc(40);
    CHECK(first);
    free(first);
    conf_init("ctor_keys", 60);
    CHECKF(ctor_errors == 0, "pthread_key_create failed %d times", ctor_errors);
    set_all_keys(nkeys, 1);
    churn(2);
    run_threads(keyed_thread, 100);
    run_threads(calloc_first_thread, 200);
    /* More keys now, past the allocator's own, then once more. */
    for (int i = nkeys; i < nkeys + 8; i++) CHECK(pthread_key_create(&keys[i], free) == 0);
    nkeys += 8;
    run_threads(keyed_thread, 300);
    set_all_keys(nkeys, 3);
    conf_say("ctor_keys ok keys=%d mode=%s\n", nkeys - 8, conf_mode());
    return 0;
}
