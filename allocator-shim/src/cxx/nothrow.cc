// The failure loop of the nothrow operator new forms, as libstdc++'s: call the installed
// new_handler until an allocation succeeds; give nullptr when no handler is installed or when
// the handler throws anything (libstdc++'s nothrow new is `try { return ::operator new(n); }
// catch (...) { return nullptr; }`).
//
// Written in C++ because it must catch a C++ exception, which needs a personality routine and
// a call-site table only a C++ compiler produces; Rust cannot catch a foreign exception (with
// panic = "abort" it aborts as the exception enters a Rust frame). build.rs compiles it with
// the cc crate on x86_64. librseqmalloc.so must not depend on libstdc++ (C programs preload it
// too), so the three C++ runtime functions this file needs (__gxx_personality_v0,
// __cxa_begin_catch, __cxa_end_catch) are hidden trampolines in cxx/asm_x86_64.rs that jump to
// the C++ runtime's own, found with dlsym when this loop is first needed.
#include <cstddef>

extern "C" {

typedef void (*rseqmalloc_new_handler)();

// try_alloc(size, align) allocates or returns null; current_handler() gives the installed
// std::new_handler (null if none).
__attribute__((visibility("hidden"))) void *rseqmalloc_nothrow_retry(
    std::size_t size, std::size_t align, void *(*try_alloc)(std::size_t, std::size_t),
    rseqmalloc_new_handler (*current_handler)()) noexcept {
    for (;;) {
        rseqmalloc_new_handler h = current_handler();
        if (!h) return nullptr;
        try {
            h();
        } catch (...) {
            return nullptr;
        }
        if (void *p = try_alloc(size, align)) return p;
    }
}

}  // extern "C"
