// Randomized API test with a shadow model (issue 11): seeded random sequences over every C
// entry point (malloc, calloc, realloc, reallocarray, free, free_sized, free_aligned_sized,
// posix_memalign, aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size, malloc_trim)
// and the C++ operator new/delete forms, in several threads.
//
// Each thread keeps a shadow of its live blocks (pointer, requested size, usable size,
// alignment, how it was allocated, content seed); blocks also move between threads through a
// shared locked pool, so frees and reallocs cross threads. The model checks, on every step:
//  - no two live blocks overlap: the usable range [p, p + malloc_usable_size(p)) of every live
//    block is in one ordered map (under a lock), checked against its neighbours on insert;
//  - contents are kept: every block holds a pattern derived from its seed (whole for blocks up
//    to 16 KiB; above, the first and last 4 KiB and about 256 words between; one block in five
//    only its first 8 bytes, the rest left as the allocator gave it), verified before every free and realloc (the kept prefix after
//    realloc) and on random checks;
//  - alignment: 16 for malloc-family blocks over 8 bytes (8 below), the requested alignment
//    for the aligned entry points and C++ aligned new, the page for valloc/pvalloc;
//  - malloc_usable_size >= the request (pvalloc: the request rounded up to pages); the whole
//    usable size is written when a block's usable size is asked for;
//  - calloc memory reads as zero; a failed reallocarray (overflow) leaves the block as it was;
//  - nothing aborts (a SIGABRT names the thread's last operation and the seed).
// Sizes run from 0 to 64 MiB (skewed toward small), alignments to 4 MiB. A run stops after
// `ops` operations per thread or `secs` seconds, whichever comes first, then frees everything.
//
// usage: shadow <seed> [threads=4] [ops=300000] [secs=3] [max live MiB per thread=96]
//        prints "shadow seed=<seed>" first, then "shadow ok seed=... ops=... mode=<mode>"
#include "conf.h"

#include <malloc.h>
#include <time.h>

#include <atomic>
#include <map>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace {

enum Kind {
    K_MALLOC,         // malloc, calloc, realloc, reallocarray: free or free_sized(size)
    K_ALIGNED_ALLOC,  // aligned_alloc: also free_aligned_sized(align, size)
    K_MEMALIGN,       // memalign, posix_memalign, valloc, pvalloc: free
    K_NEW,            // operator new(size) [nothrow]: delete, sized delete, nothrow delete
    K_NEW_ARR,        // operator new[](size) [nothrow]
    K_NEW_AL,         // operator new(size, align) [nothrow]
    K_NEW_AL_ARR,     // operator new[](size, align) [nothrow]
};

struct Block {
    unsigned char *p;
    size_t size;    // requested
    size_t usable;  // malloc_usable_size at allocation
    size_t align;   // guaranteed alignment checked at allocation
    size_t filled;  // bytes holding the pattern (size, or usable once asked for)
    uint64_t seed;
    Kind kind;
};

std::mutex map_lock;
std::map<uintptr_t, uintptr_t> ranges;  // start -> end of every live block's usable range

std::mutex pool_lock;
std::vector<Block> pool;

uint64_t run_seed;
long max_ops = 300000;
double max_secs = 3;
size_t max_live = (size_t)96 << 20;
std::atomic<long> total_ops{0};
std::atomic<bool> time_up{false};

thread_local char last_op[256];
thread_local int thread_no;

void on_abort(int sig) {
    char line[400];
    int n = snprintf(line, sizeof line, "shadow: aborted in thread %d, seed %llu, during: %s\n",
                     thread_no, (unsigned long long)run_seed, last_op);
    if (n > 0) (void)!write(2, line, (size_t)n);
    signal(sig, SIG_DFL);
    raise(sig);
}

#define OP(...) snprintf(last_op, sizeof last_op, __VA_ARGS__)

#define FAIL(...)                                                                              \
    do {                                                                                       \
        char m_[300];                                                                          \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                                  \
        fprintf(stderr, "shadow: thread %d, seed %llu, %s: %s\n", thread_no,                   \
                (unsigned long long)run_seed, last_op, m_);                                    \
        _exit(3);                                                                              \
    } while (0)

double now() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void map_insert(const Block &b) {
    uintptr_t s = (uintptr_t)b.p, e = s + (b.usable ? b.usable : 1);
    std::lock_guard<std::mutex> g(map_lock);
    auto it = ranges.lower_bound(s);
    if (it != ranges.end() && it->first < e)
        FAIL("block [%#lx, %#lx) overlaps live block [%#lx, %#lx)", (unsigned long)s,
             (unsigned long)e, (unsigned long)it->first, (unsigned long)it->second);
    if (it != ranges.begin()) {
        auto prev = std::prev(it);
        if (prev->second > s)
            FAIL("block [%#lx, %#lx) overlaps live block [%#lx, %#lx)", (unsigned long)s,
                 (unsigned long)e, (unsigned long)prev->first, (unsigned long)prev->second);
    }
    ranges.emplace(s, e);
}

void map_erase(const Block &b) {
    std::lock_guard<std::mutex> g(map_lock);
    auto it = ranges.find((uintptr_t)b.p);
    if (it == ranges.end()) FAIL("block %p is not in the map", (void *)b.p);
    ranges.erase(it);
}

// The pattern: every byte of blocks up to 16 KiB; above, the first and last 4 KiB and about 256
// words in between (so a 64 MiB block costs a few hundred page touches, not 16,384).
const size_t WHOLE = 16384;
size_t probe_step(size_t n) { return (n / 256 + 4095) / 4096 * 4096 + 8; }

void fill_probe(unsigned char *p, size_t n, uint64_t seed) {
    if (n <= WHOLE) return fill(p, n, seed);
    uint64_t *w = (uint64_t *)p;
    size_t words = n / 8, step = probe_step(n) / 8;
    for (size_t i = 0; i < 512; i++) w[i] = pat_word(seed, i);
    for (size_t i = 512; i < words - 512; i += step) w[i] = pat_word(seed, i);
    for (size_t i = words - 512; i < words; i++) w[i] = pat_word(seed, i);
}

// The first offset below `keep` that lost the pattern fill_probe(p, n, seed) wrote, or -1.
size_t verify_probe(const unsigned char *p, size_t keep, size_t n, uint64_t seed) {
    if (n <= WHOLE) return verify(p, keep < n ? keep : n, seed);
    const uint64_t *w = (const uint64_t *)p;
    size_t words = n / 8, kw = keep / 8, step = probe_step(n) / 8;
    for (size_t i = 0; i < 512 && i < kw; i++)
        if (w[i] != pat_word(seed, i)) return i * 8;
    for (size_t i = 512; i < words - 512 && i < kw; i += step)
        if (w[i] != pat_word(seed, i)) return i * 8;
    for (size_t i = words - 512; i < words && i < kw; i++)
        if (w[i] != pat_word(seed, i)) return i * 8;
    return (size_t)-1;
}

void check_contents(const Block &b, const char *when) {
    size_t bad = verify_probe(b.p, b.filled, b.filled, b.seed);
    if (bad != (size_t)-1)
        FAIL("%s: block %p (size %zu, filled %zu) lost its contents at offset %zu", when,
             (void *)b.p, b.size, b.filled, bad);
}

size_t c_align(size_t size) { return size <= 8 ? 8 : 16; }

struct Thread {
    rng_t r;
    std::vector<Block> live;
    size_t live_bytes = 0;
    long ops = 0;

    uint64_t rnd(uint64_t n) { return rng_below(&r, n); }

    size_t pick_size() {
        uint64_t x = rnd(1000);
        if (x < 700) return rnd(257);
        if (x < 900) return 257 + rnd(8192 - 257);
        if (x < 970) return 8192 + rnd(((size_t)256 << 10) - 8192);
        if (x < 995) return ((size_t)256 << 10) + rnd(((size_t)4 << 20) - ((size_t)256 << 10));
        return ((size_t)4 << 20) + rnd(((size_t)60 << 20));
    }

    size_t pick_align() {
        uint64_t x = rnd(100);
        unsigned k = x < 60 ? 3 + (unsigned)rnd(4)    // 8 .. 64
                     : x < 90 ? 7 + (unsigned)rnd(6)  // 128 .. 4 KiB
                              : 13 + (unsigned)rnd(10);  // 8 KiB .. 4 MiB
        return (size_t)1 << k;
    }

    // Registers a new block: checks alignment, usable size, overlap; fills it.
    void adopt(unsigned char *p, size_t size, size_t align, Kind kind, bool zeroed,
               size_t min_usable) {
        if (!p) FAIL("returned NULL for %zu bytes", size);
        if ((uintptr_t)p & (align - 1)) FAIL("%p is not aligned to %zu", (void *)p, align);
        // One block in five has only its first 8 bytes written, as a program that uses a
        // prefix of its buffer: the rest is whatever the allocator left there.
        size_t filled = rnd(5) == 0 && size > 8 ? 8 : size;
        Block b{p, size, malloc_usable_size(p), align, filled, rng_next(&r), kind};
        if (b.usable < min_usable)
            FAIL("malloc_usable_size(%p) = %zu < %zu", (void *)p, b.usable, min_usable);
        if (zeroed) {
            size_t step = size <= 65536 ? 1 : probe_step(size);
            for (size_t i = 0; i < size; i += step)
                if (p[i]) FAIL("calloc'ed byte %zu of %zu is %#x", i, size, p[i]);
            if (size && p[size - 1]) FAIL("calloc'ed last byte is %#x", p[size - 1]);
        }
        map_insert(b);
        fill_probe(p, b.filled, b.seed);
        live.push_back(b);
        live_bytes += size;
    }

    void do_alloc() {
        size_t size = pick_size();
        size_t al = pick_align();
        std::nothrow_t nt;
        switch (rnd(15)) {
        case 0:
            OP("malloc(%zu)", size);
            adopt((unsigned char *)malloc(size), size, c_align(size), K_MALLOC, false, size);
            break;
        case 1: {
            size_t n = 1 + rnd(8), each = size / n;
            OP("calloc(%zu, %zu)", n, each);
            adopt((unsigned char *)calloc(n, each), n * each, c_align(n * each), K_MALLOC, true,
                  n * each);
            break;
        }
        case 2:
            OP("realloc(NULL, %zu)", size);
            adopt((unsigned char *)realloc(nullptr, size), size, c_align(size), K_MALLOC, false,
                  size);
            break;
        case 3: {
            size_t n = 1 + rnd(4), each = size / n;
            OP("reallocarray(NULL, %zu, %zu)", n, each);
            adopt((unsigned char *)reallocarray(nullptr, n, each), n * each, c_align(n * each),
                  K_MALLOC, false, n * each);
            break;
        }
        case 4: {
            OP("posix_memalign(%zu, %zu)", al, size);
            void *p = nullptr;
            int rc = posix_memalign(&p, al, size);
            if (rc) FAIL("returned %d", rc);
            adopt((unsigned char *)p, size, al, K_MEMALIGN, false, size);
            break;
        }
        case 5:
            OP("aligned_alloc(%zu, %zu)", al, size);
            adopt((unsigned char *)aligned_alloc(al, size), size, al, K_ALIGNED_ALLOC, false,
                  size);
            break;
        case 6:
            OP("memalign(%zu, %zu)", al, size);
            adopt((unsigned char *)memalign(al, size), size, al, K_MEMALIGN, false, size);
            break;
        case 7:
            OP("valloc(%zu)", size);
            adopt((unsigned char *)valloc(size), size, 4096, K_MEMALIGN, false, size);
            break;
        case 8:
            OP("pvalloc(%zu)", size);
            adopt((unsigned char *)pvalloc(size), size, 4096, K_MEMALIGN, false,
                  (size + 4095) / 4096 * 4096);
            break;
        case 9:
            OP("operator new(%zu)", size);
            adopt((unsigned char *)::operator new(size), size, c_align(size), K_NEW, false, size);
            break;
        case 10:
            OP("operator new[](%zu, nothrow)", size);
            adopt((unsigned char *)::operator new[](size, nt), size, c_align(size), K_NEW_ARR,
                  false, size);
            break;
        case 11:
            OP("operator new(%zu, nothrow)", size);
            adopt((unsigned char *)::operator new(size, nt), size, c_align(size), K_NEW, false,
                  size);
            break;
        case 12:
            OP("operator new[](%zu)", size);
            adopt((unsigned char *)::operator new[](size), size, c_align(size), K_NEW_ARR, false,
                  size);
            break;
        case 13:
            OP("operator new(%zu, align %zu%s)", size, al, rnd(2) ? "" : ", nothrow");
            adopt((unsigned char *)(last_op[strlen(last_op) - 2] == 'w'
                                        ? ::operator new(size, std::align_val_t{al}, nt)
                                        : ::operator new(size, std::align_val_t{al})),
                  size, al, K_NEW_AL, false, size);
            break;
        default:
            OP("operator new[](%zu, align %zu%s)", size, al, rnd(2) ? "" : ", nothrow");
            adopt((unsigned char *)(last_op[strlen(last_op) - 2] == 'w'
                                        ? ::operator new[](size, std::align_val_t{al}, nt)
                                        : ::operator new[](size, std::align_val_t{al})),
                  size, al, K_NEW_AL_ARR, false, size);
            break;
        }
    }

    Block take(size_t i) {
        Block b = live[i];
        live[i] = live.back();
        live.pop_back();
        live_bytes -= b.size;
        return b;
    }

    // Frees a block through a form that matches how it was allocated.
    void release(const Block &b) {
        check_contents(b, "before free");
        map_erase(b);
        std::nothrow_t nt;
        std::align_val_t av{b.align};
        uint64_t form = rnd(3);
        switch (b.kind) {
        case K_MALLOC:
            OP("%s(%p, %zu)", form ? "free" : "free_sized", (void *)b.p, b.size);
            if (form) free(b.p);
            else conf_free_sized(b.p, b.size);
            break;
        case K_ALIGNED_ALLOC:
            OP("%s(%p, align %zu, %zu)", form ? "free" : "free_aligned_sized", (void *)b.p,
               b.align, b.size);
            if (form) free(b.p);
            else conf_free_aligned_sized(b.p, b.align, b.size);
            break;
        case K_MEMALIGN:
            OP("free(%p) of a memalign-family block of %zu", (void *)b.p, b.size);
            free(b.p);
            break;
        case K_NEW:
            OP("operator delete(%p) form %d, size %zu", (void *)b.p, (int)form, b.size);
            if (form == 0) ::operator delete(b.p);
            else if (form == 1) ::operator delete(b.p, b.size);
            else ::operator delete(b.p, nt);
            break;
        case K_NEW_ARR:
            OP("operator delete[](%p) form %d, size %zu", (void *)b.p, (int)form, b.size);
            if (form == 0) ::operator delete[](b.p);
            else if (form == 1) ::operator delete[](b.p, b.size);
            else ::operator delete[](b.p, nt);
            break;
        case K_NEW_AL:
            OP("operator delete(%p, align %zu) form %d, size %zu", (void *)b.p, b.align,
               (int)form, b.size);
            if (form == 0) ::operator delete(b.p, av);
            else if (form == 1) ::operator delete(b.p, b.size, av);
            else ::operator delete(b.p, av, nt);
            break;
        case K_NEW_AL_ARR:
            OP("operator delete[](%p, align %zu) form %d, size %zu", (void *)b.p, b.align,
               (int)form, b.size);
            if (form == 0) ::operator delete[](b.p, av);
            else if (form == 1) ::operator delete[](b.p, b.size, av);
            else ::operator delete[](b.p, av, nt);
            break;
        }
    }

    void do_free() { release(take(rnd(live.size()))); }

    void do_realloc() {
        // Only malloc-family blocks (C++ blocks are never realloc'ed).
        size_t i = rnd(live.size());
        if (live[i].kind > K_MEMALIGN) return;
        Block b = take(i);
        check_contents(b, "before realloc");
        uint64_t how = rnd(20);
        size_t n = how < 8 ? pick_size() : how < 14 ? b.size + rnd(b.size / 2 + 64) : b.size / 2;
        if (n == 0) n = 1; // realloc(p, 0) frees: that is case 18
        if (how == 19) {
            // reallocarray overflowing: NULL + ENOMEM, the block untouched.
            OP("reallocarray(%p, 2^40, 2^40)", (void *)b.p);
            errno = 0;
            void *q = reallocarray(b.p, opaque((size_t)1 << 40), (size_t)1 << 40);
            if (q || errno != ENOMEM) FAIL("returned %p, errno %d", q, errno);
            check_contents(b, "after a failed reallocarray");
            live.push_back(b);
            live_bytes += b.size;
            return;
        }
        if (how == 18) {
            // realloc(p, 0): frees, returns NULL (glibc).
            map_erase(b);
            OP("realloc(%p of %zu, 0)", (void *)b.p, b.size);
            void *q = realloc(b.p, 0);
            if (q) FAIL("returned %p, not NULL", q);
            return;
        }
        map_erase(b);
        OP("realloc(%p of %zu, %zu)", (void *)b.p, b.size, n);
        unsigned char *q = (unsigned char *)realloc(b.p, n);
        if (!q) FAIL("returned NULL");
        size_t keep = n < b.filled ? n : b.filled;
        size_t bad = verify_probe(q, keep, b.filled, b.seed);
        if (bad != (size_t)-1)
            FAIL("realloc from %zu to %zu lost byte %zu (moved: %s)", b.size, n, bad,
                 q == b.p ? "no" : "yes");
        adopt(q, n, c_align(n), K_MALLOC, false, n);
    }

    void do_usable() {
        Block &b = live[rnd(live.size())];
        OP("malloc_usable_size(%p of %zu)", (void *)b.p, b.size);
        size_t u = malloc_usable_size(b.p);
        if (u != b.usable) FAIL("now %zu, at allocation %zu", u, b.usable);
        // Write all of it: the usable range belongs to this block alone.
        b.filled = u;
        fill_probe(b.p, b.filled, b.seed);
    }

    void do_check() {
        Block &b = live[rnd(live.size())];
        OP("check contents of %p (%zu)", (void *)b.p, b.size);
        check_contents(b, "random check");
    }

    void do_handover() {
        std::lock_guard<std::mutex> g(pool_lock);
        if (rnd(2) && !live.empty() && pool.size() < 512) {
            OP("give a block to the pool");
            pool.push_back(take(rnd(live.size())));
        } else if (!pool.empty()) {
            OP("take a block from the pool");
            size_t i = rnd(pool.size());
            Block b = pool[i];
            pool[i] = pool.back();
            pool.pop_back();
            live.push_back(b);
            live_bytes += b.size;
        }
    }

    void run(int no) {
        thread_no = no;
        double start = now();
        while (ops < max_ops && !time_up.load(std::memory_order_relaxed)) {
            if ((ops & 255) == 0 && now() - start > max_secs) time_up = true;
            uint64_t x = rnd(1000);
            if (live.empty() || (x < 400 && live_bytes < max_live)) do_alloc();
            else if (x < 700 || live_bytes >= max_live) do_free();
            else if (x < 820) do_realloc();
            else if (x < 870) do_usable();
            else if (x < 930) do_check();
            else if (x < 999) do_handover();
            else {
                OP("malloc_trim(0)");
                malloc_trim(0);
            }
            ops++;
        }
        while (!live.empty()) release(take(live.size() - 1));
        total_ops += ops;
    }
};

}  // namespace

int main(int argc, char **argv) {
    conf_init("shadow", 120);
    CHECK(argc >= 2);
    run_seed = strtoull(argv[1], nullptr, 10);
    int threads = argc > 2 ? atoi(argv[2]) : 4;
    if (argc > 3) max_ops = atol(argv[3]);
    if (argc > 4) max_secs = atof(argv[4]);
    if (argc > 5) max_live = (size_t)atol(argv[5]) << 20;
    conf_say("shadow seed=%llu threads=%d\n", (unsigned long long)run_seed, threads);
    conf_handle(SIGABRT, on_abort);
    std::vector<Thread> t(threads);
    std::vector<std::thread> th;
    for (int i = 0; i < threads; i++) {
        t[i].r.s = mix64(run_seed * 1000 + (uint64_t)i);
        th.emplace_back([&t, i] { t[i].run(i); });
    }
    for (auto &x : th) x.join();
    thread_no = -1;
    for (const Block &b : pool) {
        Thread fin;
        fin.r.s = 1;
        fin.release(b);
    }
    pool.clear();
    CHECK(ranges.empty());
    malloc_trim(0);
    conf_say("shadow ok seed=%llu threads=%d ops=%ld mode=%s\n", (unsigned long long)run_seed,
             threads, total_ops.load(), conf_mode());
    return 0;
}
