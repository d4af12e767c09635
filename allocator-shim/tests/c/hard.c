/* The awkward places an LD_PRELOADed malloc is called from:
 * - a constructor of the program, before main (and before test_init's checks);
 * - dlsym: the allocation functions found through it are ours, and dlerror's message
 *   (malloc'ed inside libc) is fine;
 * - thread exit: C++-style thread_local destructors (__cxa_thread_atexit_impl) and pthread_key
 *   destructors that free, allocate and re-arm their key for later destructor rounds, after
 *   the thread function has returned and the allocator's own thread-exit hook (own mode) has
 *   run; keys numbered 32 and up (glibc calloc's their storage inside pthread_setspecific);
 *   threads whose very first allocation happens inside a key destructor; detached threads;
 * - atexit handlers that allocate and free, including one registered while exit() runs, and a
 *   destructor of the program;
 * - dlopen/dlclose of plugin.so (path in argv[1]) 20 times: its constructor allocates, its
 *   destructor frees, its memory outlives it, and its dynamic TLS is allocated per thread.
 *
 * usage: hard <plugin.so>     stdout is compared exactly by the harness. */
#include "common.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

/* ---- constructor ---- */

static char *ctor_str;
static unsigned char *ctor_zeroed;
static int *ctor_arr;

static void atexit_last(void);

__attribute__((constructor(101))) static void early(void) {
    ctor_str = strdup("allocated in a constructor");
    ctor_zeroed = calloc(1, 2 << 20);
    ctor_arr = malloc(100 * sizeof(int));
    if (ctor_arr)
        for (int i = 0; i < 100; i++) ctor_arr[i] = i;
    ctor_arr = realloc(ctor_arr, 100000 * sizeof(int));
    atexit(atexit_last); /* registered first of ours: runs last */
}

static void check_constructor(void) {
    CHECK(ctor_str && strcmp(ctor_str, "allocated in a constructor") == 0);
    CHECK(ctor_zeroed && malloc_usable_size(ctor_zeroed) >= (2u << 20));
    for (size_t i = 0; i < (2u << 20); i += 512) CHECK(ctor_zeroed[i] == 0);
    CHECK(ctor_arr);
    for (int i = 0; i < 100; i++) CHECK(ctor_arr[i] == i);
    free(ctor_zeroed);
    printf("constructor ok\n");
}

/* ---- dlsym ---- */

static void check_dlsym(void) {
    void *ours = dlsym(RTLD_DEFAULT, "rseqmalloc_rseq_mode");
    Dl_info a, b;
    CHECK(dladdr(ours, &b));
    void *(*m)(size_t) = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    CHECK(m && dladdr((void *)m, &a) && strcmp(a.dli_fname, b.dli_fname) == 0);
    void *(*c)(size_t, size_t) = (void *(*)(size_t, size_t))dlsym(RTLD_DEFAULT, "calloc");
    void (*f)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "free");
    CHECK(c && f && dladdr((void *)c, &a) && strcmp(a.dli_fname, b.dli_fname) == 0);
    char *p = m(1000), *q = c(10, 100);
    CHECK(p && q && q[999] == 0);
    f(p);
    f(q);
    for (int i = 0; i < 50; i++) {
        CHECK(dlsym(RTLD_DEFAULT, "rseqmalloc_no_such_symbol") == NULL);
        const char *e = dlerror();
        CHECK(e && strstr(e, "rseqmalloc_no_such_symbol"));
    }
    printf("dlsym ok\n");
}

/* ---- thread exit ---- */

enum { ROUNDS = 3, KEYS = 40, TLS_THREADS = 24 };

struct tls_obj {
    int key;
    int round;
    size_t size;
    unsigned char *data;
};

static pthread_key_t keys[KEYS];
static atomic_int key_dtor_runs, cxa_dtor_runs, detached_done;
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;

static struct tls_obj *new_tls_obj(int key, int round) {
    struct tls_obj *o = malloc(sizeof *o);
    CHECK(o);
    o->key = key;
    o->round = round;
    o->size = 16 + (size_t)key * 97 + (size_t)round * 1000;
    o->data = malloc(o->size);
    CHECK(o->data);
    fill(o->data, o->size, (uint64_t)key * 10 + (uint64_t)round);
    return o;
}

/* Verifies and frees its object; the first ROUNDS-1 times it also allocates a new one and
 * re-arms the key, which makes glibc run another destructor round. */
static void key_dtor(void *v) {
    struct tls_obj *o = v;
    CHECK(verify(o->data, o->size, (uint64_t)o->key * 10 + (uint64_t)o->round) == (size_t)-1);
    free(o->data);
    if (o->round + 1 < ROUNDS)
        CHECK(pthread_setspecific(keys[o->key], new_tls_obj(o->key, o->round + 1)) == 0);
    free(o);
    atomic_fetch_add(&key_dtor_runs, 1);
}

extern void *__dso_handle;
int __cxa_thread_atexit_impl(void (*dtor)(void *), void *obj, void *dso_symbol);

static void cxa_dtor(void *v) {
    char *s = v;
    CHECK(strcmp(s, "thread_local") == 0);
    free(s);
    void *p = malloc(5000); /* allocating while thread_locals are torn down */
    CHECK(p);
    memset(p, 1, 5000);
    free(p);
    atomic_fetch_add(&cxa_dtor_runs, 1);
}

static void *tls_thread(void *arg) {
    (void)arg;
    for (int k = 0; k < KEYS; k++) CHECK(pthread_setspecific(keys[k], new_tls_obj(k, 0)) == 0);
    CHECK(__cxa_thread_atexit_impl(cxa_dtor, strdup("thread_local"), &__dso_handle) == 0);
    return NULL;
}

/* Threads that never allocate: their first malloc runs in this key's destructor. The key is
 * created before the others so that its number is below 32 and pthread_setspecific itself
 * does not allocate. */
static pthread_key_t lazy_key;
static void lazy_dtor(void *v) {
    (void)v;
    char *p = malloc(100); /* the thread's first allocation */
    CHECK(p);
    strcpy(p, "first allocation in a destructor");
    char *q = realloc(p, 100000);
    CHECK(q && strcmp(q, "first allocation in a destructor") == 0);
    free(q);
    atomic_fetch_add(&key_dtor_runs, 1);
}

static void *lazy_thread(void *arg) {
    (void)arg;
    CHECK(pthread_setspecific(lazy_key, (void *)1) == 0);
    return NULL;
}

static pthread_key_t done_key;

static void *detached_thread(void *arg) {
    char *p = malloc(1000 + (size_t)(intptr_t)arg);
    CHECK(p);
    memset(p, 7, 1000);
    CHECK(pthread_setspecific(keys[1], new_tls_obj(1, 0)) == 0);
    CHECK(pthread_setspecific(keys[KEYS - 1], new_tls_obj(KEYS - 1, 0)) == 0);
    free(p);
    return NULL;
}

/* Re-arms itself so that it runs in the last destructor round, after every key_dtor round. */
static void done_dtor(void *v) {
    intptr_t round = (intptr_t)v;
    if (round < ROUNDS) {
        CHECK(pthread_setspecific(done_key, (void *)(round + 1)) == 0);
        return;
    }
    pthread_mutex_lock(&done_lock);
    atomic_fetch_add(&detached_done, 1);
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
}

static void *detached_entry(void *arg) {
    CHECK(pthread_setspecific(done_key, (void *)1) == 0);
    return detached_thread(arg);
}

static void check_thread_exit(void) {
    CHECK(pthread_key_create(&lazy_key, lazy_dtor) == 0);
    for (int k = 0; k < KEYS; k++) CHECK(pthread_key_create(&keys[k], key_dtor) == 0);
    /* Created last: in each round it runs after the other keys' destructors. */
    CHECK(pthread_key_create(&done_key, done_dtor) == 0);
    pthread_t t[TLS_THREADS];
    int normal = 0;
    for (int i = 0; i < TLS_THREADS; i++) {
        int lazy = i & 1;
        normal += !lazy;
        CHECK(pthread_create(&t[i], NULL, lazy ? lazy_thread : tls_thread, (void *)(intptr_t)i) ==
              0);
    }
    for (int i = 0; i < TLS_THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    int lazy = TLS_THREADS - normal;
    CHECKF(atomic_load(&key_dtor_runs) == normal * KEYS * ROUNDS + lazy,
           "key destructors ran %d times", atomic_load(&key_dtor_runs));
    CHECK(atomic_load(&cxa_dtor_runs) == normal);

    enum { DETACHED = 16 };
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < DETACHED; i++) {
        pthread_t d;
        CHECK(pthread_create(&d, &attr, detached_entry, (void *)(intptr_t)i) == 0);
    }
    pthread_attr_destroy(&attr);
    pthread_mutex_lock(&done_lock);
    while (atomic_load(&detached_done) < DETACHED) pthread_cond_wait(&done_cond, &done_lock);
    pthread_mutex_unlock(&done_lock);
    printf("thread exit ok\n");
}

/* ---- atexit and destructors ---- */

static unsigned char *main_obj;

static void atexit_inner(void) {
    void *p = calloc(1, 100000);
    CHECK(p);
    free(p);
    printf("atexit inner ok\n");
}

static void atexit_main(void) {
    unsigned char *big = malloc(1 << 20);
    CHECK(big);
    fill(big, 1 << 20, 5);
    CHECK(verify(big, 1 << 20, 5) == (size_t)-1);
    free(big);
    CHECK(verify(main_obj, 3000, 6) == (size_t)-1);
    free(main_obj);
    CHECK(atexit(atexit_inner) == 0); /* registered while exit() runs */
    printf("atexit main ok\n");
}

static void atexit_last(void) {
    CHECK(ctor_str && ctor_arr);
    free(ctor_str);
    free(ctor_arr);
    char *s = strdup("last");
    CHECK(s);
    free(s);
    printf("atexit last ok\n");
}

__attribute__((destructor)) static void program_destructor(void) {
    void *p = malloc(12345);
    CHECK(p);
    free(p);
    printf("destructor ok\n");
}

/* ---- dlopen / dlclose ---- */

static void *plugin_thread(void *arg) {
    int (*tls)(int) = (int (*)(int))arg;
    CHECK(tls(5) == 6);
    return NULL;
}

static void check_plugin(const char *path) {
    enum { LOADS = 20 };
    void *kept[LOADS];
    for (int i = 0; i < LOADS; i++) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        CHECKF(h != NULL, "dlopen(%s): %s", path, dlerror());
        void *(*alloc)(size_t) = (void *(*)(size_t))dlsym(h, "plugin_alloc");
        void (*pfree)(void *) = (void (*)(void *))dlsym(h, "plugin_free");
        int (*tls)(int) = (int (*)(int))dlsym(h, "plugin_tls");
        CHECK(alloc && pfree && tls);
        kept[i] = alloc(1000 + (size_t)i);
        CHECK(kept[i]);
        char *mine = malloc(777);
        CHECK(mine);
        pfree(mine);
        CHECK(tls(3) == 4);
        pthread_t t;
        CHECK(pthread_create(&t, NULL, plugin_thread, (void *)tls) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        CHECK(dlclose(h) == 0);
    }
    for (int i = 0; i < LOADS; i++) {
        unsigned char *p = kept[i];
        for (int k = 0; k < 1000 + i; k++) CHECK(p[k] == 0x17);
        free(p);
    }
    printf("plugin ok\n");
}

int main(int argc, char **argv) {
    test_init(100);
    CHECK(argc == 2);
    check_constructor();
    check_dlsym();
    check_thread_exit();
    check_plugin(argv[1]);
    main_obj = malloc(3000);
    CHECK(main_obj);
    fill(main_obj, 3000, 6);
    CHECK(atexit(atexit_main) == 0);
    printf("main done mode=%s\n", shim_mode());
    return 0;
}
