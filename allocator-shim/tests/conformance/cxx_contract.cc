// The C++ allocation contract in all 20 replaceable forms (operator new/new[] x plain/aligned x
// throwing/nothrow; operator delete/delete[] x plain/sized/aligned/sized aligned/nothrow/aligned
// nothrow), called explicitly, and the free-tag kind of issue 11 item 1 through them:
//  - every new form for sizes 0 .. 3 MiB (and alignments 16 B .. 4 MiB for the aligned
//    forms): non-null, unique for size 0, aligned (16 = __STDCPP_DEFAULT_NEW_ALIGNMENT__ for the
//    plain forms, the requested alignment for the others), malloc_usable_size >= size; only
//    the first byte written, then handed back through every delete form that matches it;
//  - the delete forms accept nullptr;
//  - a throwing form with an impossible size throws std::bad_alloc, having called the
//    installed new_handler until it uninstalled itself; a nothrow form with no handler returns
//    nullptr (nothrow forms with a handler are item 7's business);
//  - the issue's alignment loop through aligned new and sized aligned delete;
//  - objects new'd in one thread deleted (sized) in another; containers of over-aligned types.
//
// usage: cxx_contract     prints "cxx_contract ok forms=20 checks=<n> mode=<mode>"
#include "conf.h"

#include <malloc.h>

#include <cstddef>
#include <new>
#include <thread>
#include <vector>

static long checks;

static const size_t sizes[] = {0, 1, 7, 8, 16, 24, 100, 1000, 1025, 5000, 20000, 100000,
                               300000, (size_t)3 << 20};
static const size_t aligns[] = {16, 32, 64, 256, 4096, 16384, 65536, (size_t)1 << 20,
                                (size_t)4 << 20};

static void check_block(void *p, size_t size, size_t al) {
    CHECKF(p != nullptr, "size %zu align %zu", size, al);
    CHECKF(((uintptr_t)p & (al - 1)) == 0, "%p (size %zu) not aligned to %zu", p, size, al);
    CHECKF(malloc_usable_size(p) >= size, "usable %zu < %zu", malloc_usable_size(p), size);
    *(unsigned char *)p = 0x5c;
    checks++;
}

static void plain_forms() {
    std::nothrow_t nt;
    for (size_t size : sizes) {
        for (int d = 0; d < 3; d++) {
            conf_step("operator new(%zu), delete form %d", size, d);
            void *p = ::operator new(size);
            check_block(p, size, 16);
            if (d == 0) ::operator delete(p);
            else if (d == 1) ::operator delete(p, size);
            else ::operator delete(p, nt);
            conf_step("operator new[](%zu), delete[] form %d", size, d);
            p = ::operator new[](size);
            check_block(p, size, 16);
            if (d == 0) ::operator delete[](p);
            else if (d == 1) ::operator delete[](p, size);
            else ::operator delete[](p, nt);
            conf_step("operator new(%zu, nothrow), delete form %d", size, d);
            p = ::operator new(size, nt);
            check_block(p, size, 16);
            if (d == 0) ::operator delete(p);
            else if (d == 1) ::operator delete(p, size);
            else ::operator delete(p, nt);
            conf_step("operator new[](%zu, nothrow), delete[] form %d", size, d);
            p = ::operator new[](size, nt);
            check_block(p, size, 16);
            if (d == 0) ::operator delete[](p);
            else if (d == 1) ::operator delete[](p, size);
            else ::operator delete[](p, nt);
        }
    }
    // new(0) is unique.
    void *a = ::operator new(0), *b = ::operator new(0), *c = ::operator new[](0);
    CHECK(a && b && c && a != b && a != c && b != c);
    ::operator delete(a);
    ::operator delete(b);
    ::operator delete[](c);
}

static void aligned_forms() {
    std::nothrow_t nt;
    for (size_t al : aligns) {
        std::align_val_t av{al};
        for (size_t size : sizes) {
            if (size > ((size_t)1 << 20) && al > 64) continue; // keep it small
            for (int d = 0; d < 3; d++) {
                conf_step("operator new(%zu, align %zu), delete form %d", size, al, d);
                void *p = ::operator new(size, av);
                check_block(p, size, al);
                if (d == 0) ::operator delete(p, av);
                else if (d == 1) ::operator delete(p, size, av);
                else ::operator delete(p, av, nt);
                conf_step("operator new[](%zu, align %zu), delete[] form %d", size, al, d);
                p = ::operator new[](size, av);
                check_block(p, size, al);
                if (d == 0) ::operator delete[](p, av);
                else if (d == 1) ::operator delete[](p, size, av);
                else ::operator delete[](p, av, nt);
                conf_step("operator new(%zu, align %zu, nothrow), delete form %d", size, al, d);
                p = ::operator new(size, av, nt);
                check_block(p, size, al);
                if (d == 0) ::operator delete(p, av);
                else if (d == 1) ::operator delete(p, size, av);
                else ::operator delete(p, av, nt);
                conf_step("operator new[](%zu, align %zu, nothrow), delete[] form %d", size, al,
                          d);
                p = ::operator new[](size, av, nt);
                check_block(p, size, al);
                if (d == 0) ::operator delete[](p, av);
                else if (d == 1) ::operator delete[](p, size, av);
                else ::operator delete[](p, av, nt);
            }
        }
    }
}

static void null_deletes() {
    conf_step("deletes of nullptr");
    std::nothrow_t nt;
    std::align_val_t av{64};
    ::operator delete(nullptr);
    ::operator delete[](nullptr);
    ::operator delete(nullptr, (size_t)8);
    ::operator delete[](nullptr, (size_t)8);
    ::operator delete(nullptr, av);
    ::operator delete[](nullptr, av);
    ::operator delete(nullptr, (size_t)8, av);
    ::operator delete[](nullptr, (size_t)8, av);
    ::operator delete(nullptr, nt);
    ::operator delete[](nullptr, nt);
    ::operator delete(nullptr, av, nt);
    ::operator delete[](nullptr, av, nt);
}

static int handler_calls;
static void handler() {
    if (++handler_calls == 3) std::set_new_handler(nullptr);
}

template <class F> static void expect_bad_alloc(const char *what, F f) {
    conf_step("%s", what);
    handler_calls = 0;
    std::set_new_handler(handler);
    bool threw = false;
    try {
        void *p = f();
        CHECKF(false, "%s returned %p", what, p);
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    CHECKF(threw, "%s did not throw", what);
    CHECKF(handler_calls == 3, "%s: the new_handler ran %d times, expected 3", what,
           handler_calls);
    CHECK(std::get_new_handler() == nullptr);
}

static void impossible_sizes() {
    const size_t huge = (size_t)1 << 62;
    std::align_val_t av{4096};
    std::nothrow_t nt;
    expect_bad_alloc("operator new(2^62)", [&] { return ::operator new(opaque(huge)); });
    expect_bad_alloc("operator new[](2^62)", [&] { return ::operator new[](opaque(huge)); });
    expect_bad_alloc("operator new(2^62, align)", [&] { return ::operator new(opaque(huge), av); });
    expect_bad_alloc("operator new[](2^62, align)",
                     [&] { return ::operator new[](opaque(huge), av); });
    conf_step("nothrow forms, impossible size, no handler");
    std::set_new_handler(nullptr);
    CHECK(::operator new(opaque(huge), nt) == nullptr);
    CHECK(::operator new[](opaque(huge), nt) == nullptr);
    CHECK(::operator new(opaque(huge), av, nt) == nullptr);
    CHECK(::operator new[](opaque(huge), av, nt) == nullptr);
}

static void issue_loop_aligned_new() {
    for (size_t al = 1; al <= ((size_t)1 << 22); al *= 2) {
        std::align_val_t av{al};
        size_t ss[] = {1, 7, al, al + 1, 3 * al, 100000};
        for (size_t size : ss) {
            conf_step("issue loop: operator new(%zu, align %zu), sized aligned delete", size, al);
            void *p = ::operator new(size, av);
            CHECK(((uintptr_t)p & (al - 1)) == 0);
            memset(p, 0x22, size);
            ::operator delete(p, size, av);
            conf_step("issue loop: operator new[](%zu, align %zu), first byte, aligned delete[]",
                      size, al);
            p = ::operator new[](size, av);
            *(char *)p = 1;
            ::operator delete[](p, av);
            checks += 2;
        }
    }
}

struct alignas(64) Line {
    unsigned char b[64];
};
struct alignas(4096) PageObj {
    unsigned char b[100];
};

static void threads_and_containers() {
    conf_step("objects deleted by another thread");
    std::vector<std::pair<void *, size_t>> objs;
    for (int i = 0; i < 3000; i++) {
        size_t size = 1 + (size_t)i * 53 % 3000;
        void *p = i % 2 ? ::operator new(size) : ::operator new(size, std::align_val_t{128});
        fill(p, size, (uint64_t)i);
        objs.emplace_back(p, size);
    }
    std::thread t([&] {
        for (size_t i = 0; i < objs.size(); i++) {
            CHECK(verify(objs[i].first, objs[i].second, i) == (size_t)-1);
            if (i % 2) ::operator delete(objs[i].first, objs[i].second);
            else ::operator delete(objs[i].first, objs[i].second, std::align_val_t{128});
        }
    });
    t.join();
    conf_step("containers of over-aligned types");
    std::vector<Line> lines;
    std::vector<PageObj *> pages;
    for (int i = 0; i < 5000; i++) {
        lines.push_back(Line{});
        CHECK(((uintptr_t)lines.data() & 63) == 0);
        if (i % 100 == 0) {
            pages.push_back(new PageObj{});
            CHECK(((uintptr_t)pages.back() & 4095) == 0);
        }
    }
    for (PageObj *p : pages) delete p;
    Line *arr = new Line[777];
    CHECK(((uintptr_t)arr & 63) == 0);
    delete[] arr;
}

int main() {
    conf_init("cxx_contract", 60);
    conf_name_step_on_abort();
    // Leave stale freed objects everywhere first (checked frees), as a long-running program
    // would.
    conf_step("stale heap");
    for (size_t size = 8; size <= 300000; size += size / 4 + 8) {
        std::vector<void *> v;
        for (int i = 0; i < 32; i++) {
            v.push_back(::operator new(size));
            memset(v.back(), 0xa5, size);
        }
        for (void *p : v) ::operator delete(p);
    }
    plain_forms();
    aligned_forms();
    null_deletes();
    impossible_sizes();
    issue_loop_aligned_new();
    threads_and_containers();
    conf_say("cxx_contract ok forms=20 checks=%ld mode=%s\n", checks, conf_mode());
    return 0;
}
