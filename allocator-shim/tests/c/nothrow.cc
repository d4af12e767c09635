// The C++ allocation contract of the nothrow forms, run with and without librseqmalloc (the
// harness compares the two outputs): libstdc++'s nothrow operator new calls the installed
// new_handler in a loop, like the throwing forms, and returns nullptr when no handler is
// installed or when the handler throws (anything: libstdc++ catches with catch (...)).
//
// usage: nothrow     prints one line per form and case
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>

static size_t opaque(size_t v) {
    asm volatile("" : "+r"(v));
    return v;
}

static int calls;

static void *form(int f, size_t n) {
    switch (f) {
    case 0: return ::operator new(n, std::nothrow);
    case 1: return ::operator new[](n, std::nothrow);
    case 2: return ::operator new(n, std::align_val_t{64}, std::nothrow);
    default: return ::operator new[](n, std::align_val_t{4096}, std::nothrow);
    }
}

static const char *const kNames[] = {"new(nothrow)", "new[](nothrow)", "new(align 64, nothrow)",
                                     "new[](align 4096, nothrow)"};

struct Custom {
    int v;
};

static void report(int f, const char *what, void *p) {
    std::printf("%-28s %-34s %s calls=%d uncaught=%d\n", kNames[f], what, p ? "pointer" : "null",
                calls, std::uncaught_exceptions());
    if (p) ::operator delete(p);
}

// The handler lifts an address-space limit that made a 1 GiB request fail: the retry succeeds.
static void retry_succeeds(int f) {
    std::fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) std::abort();
    if (pid == 0) {
        size_t pages = 0, rss = 0;
        FILE *st = std::fopen("/proc/self/statm", "r");
        if (!st || std::fscanf(st, "%zu %zu", &pages, &rss) != 2) std::abort();
        std::fclose(st);
        static struct rlimit saved;
        getrlimit(RLIMIT_AS, &saved);
        struct rlimit lim = saved;
        lim.rlim_cur = pages * 4096 + (256u << 20);
        if (setrlimit(RLIMIT_AS, &lim) != 0) std::abort();
        calls = 0;
        std::set_new_handler([] {
            calls++;
            if (setrlimit(RLIMIT_AS, &saved) != 0) std::abort();
        });
        void *p = form(f, opaque(size_t(1) << 30));
        if (p) static_cast<char *>(p)[(size_t(1) << 30) - 1] = 1;
        report(f, "handler frees memory", p);
        std::fflush(stdout);
        _exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        std::printf("%s: child failed\n", kNames[f]);
}

int main() {
    const size_t huge = opaque(SIZE_MAX / 2);
    for (int f = 0; f < 4; f++) {
        calls = 0;
        std::set_new_handler(nullptr);
        report(f, "no handler", form(f, huge));

        calls = 0;
        std::set_new_handler([] {
            if (++calls == 3) std::set_new_handler(nullptr);
        });
        report(f, "handler gives up after 3 calls", form(f, huge));

        calls = 0;
        std::set_new_handler([] {
            if (++calls == 2) throw std::bad_alloc();
        });
        report(f, "handler throws bad_alloc", form(f, huge));

        calls = 0;
        std::set_new_handler([] {
            calls++;
            throw Custom{7};
        });
        report(f, "handler throws another type", form(f, huge));
        std::set_new_handler(nullptr);

        retry_succeeds(f);

        calls = 0;
        report(f, "small request", form(f, opaque(100)));
    }
    return 0;
}
