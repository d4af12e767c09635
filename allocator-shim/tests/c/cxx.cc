// C++ under librseqmalloc (c++ -std=c++20): every operator new/delete form, resolved to the
// library and called explicitly; throwing new of an impossible size throws std::bad_alloc;
// the new-handler loop (called until it gives up, a handler that throws its own exception, a
// handler that makes the retry succeed); nothrow new returns nullptr; and std::vector /
// std::string / std::map churn in 8 threads, with a shared map where threads erase each other's
// entries.
//
// usage: cxx                       prints "cxx ok ..."
#include "rseqmalloc.h"

#include <dlfcn.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);      \
            std::abort();                                                                      \
        }                                                                                      \
    } while (0)

static size_t opaque(size_t v) {
    asm volatile("" : "+r"(v));
    return v;
}

// Every symbol libstdc++ exports for operator new/delete, with how to call it.
static const char *const kOperators[] = {
    "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t", "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t", "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t", "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm",
    "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t", "_ZdlPvmSt11align_val_t",
    "_ZdaPvmSt11align_val_t", "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvSt11align_val_tRKSt9nothrow_t",
};

static void check_resolution() {
    Dl_info ours;
    CHECK(dladdr(reinterpret_cast<void *>(&rseqmalloc_rseq_mode), &ours));
    for (const char *name : kOperators) {
        void *f = dlsym(RTLD_DEFAULT, name);
        Dl_info info;
        if (!f || !dladdr(f, &info) || std::strcmp(info.dli_fname, ours.dli_fname) != 0) {
            std::fprintf(stderr, "%s resolves to %s\n", name, f ? info.dli_fname : "nothing");
            std::abort();
        }
    }
}

// A pointer from any form must be ours: malloc_usable_size (ours) aborts on foreign pointers.
static void *ours(void *p, size_t size, size_t align) {
    CHECK(p != nullptr);
    CHECK(reinterpret_cast<uintptr_t>(p) % align == 0);
    CHECK(malloc_usable_size(p) >= size);
    std::memset(p, 0xcd, size);
    return p;
}

static void check_every_form() {
    for (size_t size : {size_t(0), size_t(1), size_t(24), size_t(1000), size_t(100000),
                        size_t(3) << 20}) {
        size_t n = opaque(size);
        ::operator delete(ours(::operator new(n), n, 8));
        ::operator delete[](ours(::operator new[](n), n, 8));
        ::operator delete(ours(::operator new(n), n, 8), n);
        ::operator delete[](ours(::operator new[](n), n, 8), n);
        ::operator delete(ours(::operator new(n, std::nothrow), n, 8), std::nothrow);
        ::operator delete[](ours(::operator new[](n, std::nothrow), n, 8), std::nothrow);
        for (size_t a = 1; a <= (size_t(4) << 20); a *= 4) {
            std::align_val_t al{a};
            ::operator delete(ours(::operator new(n, al), n, a), al);
            ::operator delete[](ours(::operator new[](n, al), n, a), al);
            ::operator delete(ours(::operator new(n, al), n, a), n, al);
            ::operator delete[](ours(::operator new[](n, al), n, a), n, al);
            ::operator delete(ours(::operator new(n, al, std::nothrow), n, a), al, std::nothrow);
            ::operator delete[](ours(::operator new[](n, al, std::nothrow), n, a), al,
                                std::nothrow);
        }
    }
    // New-expressions pick the forms themselves (sized delete, over-aligned types).
    struct alignas(256) Big {
        char c[300];
    };
    Big *b = new Big;
    CHECK(reinterpret_cast<uintptr_t>(b) % 256 == 0 && malloc_usable_size(b) >= sizeof(Big));
    delete b;
    Big *bs = new Big[7];
    CHECK(reinterpret_cast<uintptr_t>(bs) % 256 == 0);
    delete[] bs;
    auto *i = new int(42);
    CHECK(*i == 42 && malloc_usable_size(i) >= sizeof(int));
    delete i;
    // Null is fine for every delete.
    ::operator delete(nullptr);
    ::operator delete[](nullptr);
    ::operator delete(nullptr, std::align_val_t{64});
    ::operator delete(nullptr, std::nothrow);
}

static int handler_calls;

static void check_failures() {
    const size_t huge = opaque(SIZE_MAX / 2);
    // Throwing forms: std::bad_alloc.
    int thrown = 0;
    try {
        (void)::operator new(huge);
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try {
        (void)::operator new[](huge);
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try {
        (void)::operator new(huge, std::align_val_t{64});
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try {
        (void)::operator new[](huge, std::align_val_t{1 << 20});
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try { // an alignment that is not a power of two (libstdc++ throws too)
        (void)::operator new(64, std::align_val_t{opaque(48)});
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try { // through a new-expression, with a destructor to unwind
        std::vector<char> v(huge);
        CHECK(false);
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    CHECK(thrown == 6);

    // Nothrow forms: nullptr.
    CHECK(::operator new(huge, std::nothrow) == nullptr);
    CHECK(::operator new[](huge, std::nothrow) == nullptr);
    CHECK(::operator new(huge, std::align_val_t{64}, std::nothrow) == nullptr);
    CHECK(::operator new[](huge, std::align_val_t{4096}, std::nothrow) == nullptr);
    CHECK(::operator new(64, std::align_val_t{opaque(48)}, std::nothrow) == nullptr);

    // The new-handler is called until it uninstalls itself, then bad_alloc is thrown.
    handler_calls = 0;
    std::set_new_handler([] {
        if (++handler_calls == 3) std::set_new_handler(nullptr);
    });
    try {
        (void)::operator new(huge);
        CHECK(false);
    } catch (const std::bad_alloc &) {
    }
    CHECK(handler_calls == 3);
    handler_calls = 0;
    std::set_new_handler([] {
        if (++handler_calls == 2) std::set_new_handler(nullptr);
    });
    try {
        (void)::operator new[](huge, std::align_val_t{128});
        CHECK(false);
    } catch (const std::bad_alloc &) {
    }
    CHECK(handler_calls == 2);

    // A handler's own exception propagates out of operator new.
    struct Custom {
        int v;
    };
    std::set_new_handler([] { throw Custom{7}; });
    try {
        (void)::operator new(huge);
        CHECK(false);
    } catch (const Custom &c) {
        CHECK(c.v == 7);
    }
    std::set_new_handler(nullptr);
}

// The handler makes the retry succeed: in a child whose address space is limited so that a
// 1 GiB request fails, the handler lifts the limit and operator new returns memory.
static void check_handler_retry() {
    std::fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        size_t vm_pages = 0, rss = 0;
        FILE *f = std::fopen("/proc/self/statm", "r");
        CHECK(f && std::fscanf(f, "%zu %zu", &vm_pages, &rss) == 2);
        std::fclose(f);
        struct rlimit old;
        CHECK(getrlimit(RLIMIT_AS, &old) == 0);
        struct rlimit lim = old;
        lim.rlim_cur = vm_pages * 4096 + (256u << 20);
        CHECK(setrlimit(RLIMIT_AS, &lim) == 0);
        static struct rlimit saved;
        saved = old;
        handler_calls = 0;
        std::set_new_handler([] {
            handler_calls++;
            CHECK(setrlimit(RLIMIT_AS, &saved) == 0);
        });
        void *p = ::operator new(opaque(size_t(1) << 30));
        CHECK(p != nullptr && handler_calls == 1);
        static_cast<char *>(p)[(size_t(1) << 30) - 1] = 1;
        ::operator delete(p);
        std::_Exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static std::mutex shared_lock;
static std::map<int, std::string> shared_map;

static void churn(int id, std::atomic<long> *checks) {
    std::map<int, std::string> m;
    std::vector<std::string> v;
    uint64_t x = 0x9e3779b97f4a7c15ull * uint64_t(id + 1);
    auto rnd = [&x] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
    };
    auto value = [](int k) { return std::string(size_t(k % 300), char('a' + k % 26)) + std::to_string(k); };
    long local_checks = 0;
    for (int i = 0; i < 60000; i++) {
        int k = int(rnd() % 5000);
        switch (rnd() % 6) {
        case 0:
        case 1:
            m[k] = value(k);
            break;
        case 2: {
            auto it = m.find(k);
            if (it != m.end()) {
                CHECK(it->second == value(k));
                local_checks++;
                m.erase(it);
            }
            break;
        }
        case 3:
            v.push_back(value(k));
            if (v.size() > 2000) {
                for (auto &s : v) CHECK(s.size() >= 1 && s.back() >= '0' && s.back() <= '9');
                local_checks += long(v.size());
                v.clear();
                v.shrink_to_fit();
            }
            break;
        case 4: {
            // Another thread's entries: insert ours, erase whatever is there.
            std::lock_guard<std::mutex> g(shared_lock);
            int key = id * 100000 + k;
            shared_map[key] = value(k);
            auto it = shared_map.lower_bound(int(rnd() % 800000));
            if (it != shared_map.end()) {
                CHECK(it->second == value(it->first % 100000));
                local_checks++;
                shared_map.erase(it);
            }
            break;
        }
        default: {
            std::string s = value(k);
            s += s;
            s.append(100, 'z');
            CHECK(s.size() == 2 * value(k).size() + 100);
            break;
        }
        }
    }
    for (auto &[k, s] : m) {
        CHECK(s == value(k));
        local_checks++;
    }
    *checks += local_checks;
}

int main() {
    check_resolution();
    check_every_form();
    check_failures();
    check_handler_retry();
    std::atomic<long> checks{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; t++) threads.emplace_back(churn, t, &checks);
    for (auto &t : threads) t.join();
    {
        std::lock_guard<std::mutex> g(shared_lock);
        shared_map.clear();
    }
    CHECK(checks.load() > 100000);
    std::printf("cxx ok forms=%zu checks=%ld mode=%s\n", sizeof kOperators / sizeof *kOperators,
                checks.load(), rseqmalloc_rseq_mode());
    return 0;
}
