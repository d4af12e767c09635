//! What the allocator needs to know of glibc's own state: whether the process is
//! single-threaded, and the stdio list lock that glibc's `fork` takes before its own malloc's
//! locks (both around `fork`), and how many threads glibc counts (the background thread's
//! exit). Every symbol is referenced weakly, so another C library (or an old glibc) still
//! links and loads; each function then does nothing (or answers "not known").

use core::arch::global_asm;
// glibc's own word, never loom's model of one.
use core::sync::atomic::{AtomicU32, Ordering};

// Weak references, resolved by the dynamic linker when libc.so.6 exports them:
// `__libc_single_threaded` (glibc ≥ 2.32), `_IO_list_lock`/`_IO_list_unlock`/
// `_IO_list_resetlock` (glibc's public libio symbols since 2.2.5), `__nptl_nthreads` (glibc's
// count of threads, in libc.so.6 since 2.34, exported for its thread debugging library as
// GLIBC_PRIVATE; absent before).
global_asm!(
    ".pushsection .data.rel.ro.rseqmalloc_glibc_fork,\"aw\",%progbits",
    ".balign 8",
    ".weak __libc_single_threaded",
    ".weak _IO_list_lock",
    ".weak _IO_list_unlock",
    ".weak _IO_list_resetlock",
    ".weak __nptl_nthreads",
    ".globl rseqmalloc_nptl_nthreads",
    ".hidden rseqmalloc_nptl_nthreads",
    "rseqmalloc_nptl_nthreads: .quad __nptl_nthreads",
    ".globl rseqmalloc_libc_single_threaded",
    ".hidden rseqmalloc_libc_single_threaded",
    "rseqmalloc_libc_single_threaded: .quad __libc_single_threaded",
    ".globl rseqmalloc_io_list_lock",
    ".hidden rseqmalloc_io_list_lock",
    "rseqmalloc_io_list_lock: .quad _IO_list_lock",
    ".globl rseqmalloc_io_list_unlock",
    ".hidden rseqmalloc_io_list_unlock",
    "rseqmalloc_io_list_unlock: .quad _IO_list_unlock",
    ".globl rseqmalloc_io_list_resetlock",
    ".hidden rseqmalloc_io_list_resetlock",
    "rseqmalloc_io_list_resetlock: .quad _IO_list_resetlock",
    ".popsection",
);

extern "C" {
    static rseqmalloc_nptl_nthreads: *const AtomicU32;
    static rseqmalloc_libc_single_threaded: *const u8;
    static rseqmalloc_io_list_lock: Option<unsafe extern "C" fn()>;
    static rseqmalloc_io_list_unlock: Option<unsafe extern "C" fn()>;
    static rseqmalloc_io_list_resetlock: Option<unsafe extern "C" fn()>;
}

/// True when glibc says the process has only ever had one thread (`__libc_single_threaded`):
/// then no other thread can hold a lock, and glibc's own `fork` takes none of its malloc's —
/// which is what lets a signal handler that interrupted `malloc` call `fork`.
pub fn single_threaded() -> bool {
    // SAFETY: null (symbol absent) or glibc's flag, a byte valid for the process's life.
    unsafe {
        let p = rseqmalloc_libc_single_threaded;
        !p.is_null() && p.read_volatile() != 0
    }
}

/// The threads glibc counts as running (`__nptl_nthreads`: every thread `pthread_create`
/// made, and the main thread, until each has ended through glibc — `pthread_exit`, or returned
/// from its start routine, or, for the main thread, `pthread_exit` from `main`), or None where
/// glibc does not export the count. When a thread's end takes the count to 0, glibc calls
/// `exit(0)` in that thread: that is how a process whose main thread called `pthread_exit`
/// ends (glibc 2.36's `nptl/pthread_create.c` and `csu/libc_start_call_main.h`).
pub fn glibc_thread_count() -> Option<u32> {
    // SAFETY: null (symbol absent) or glibc's counter, a 32-bit word valid for the process's
    // life, which glibc changes atomically.
    unsafe {
        let p = rseqmalloc_nptl_nthreads;
        (!p.is_null()).then(|| (*p).load(Ordering::Acquire))
    }
}

/// Takes glibc's stdio list lock (recursive: glibc's `fork` takes it again after the
/// `pthread_atfork` prepare handlers). Taken before the allocator's locks, it puts them in the
/// order glibc's own malloc has inside `fork`: stdio first, malloc second.
pub fn stdio_list_lock() {
    // SAFETY: null or glibc's `_IO_list_lock`, which takes no argument.
    if let Some(f) = unsafe { rseqmalloc_io_list_lock } {
        // SAFETY: as above.
        unsafe { f() }
    }
}

/// Releases what [`stdio_list_lock`] took (fork parent).
pub fn stdio_list_unlock() {
    // SAFETY: null or glibc's `_IO_list_unlock`, which takes no argument.
    if let Some(f) = unsafe { rseqmalloc_io_list_unlock } {
        // SAFETY: as above; the caller took the lock.
        unsafe { f() }
    }
}

/// Resets the stdio list lock in a fork child (its holder, this thread in the parent, is the
/// only thread here; glibc resets it too when the parent had several threads).
pub fn stdio_list_reset() {
    // SAFETY: null or glibc's `_IO_list_resetlock`, which takes no argument.
    if let Some(f) = unsafe { rseqmalloc_io_list_resetlock } {
        // SAFETY: as above; only in the child of `fork`.
        unsafe { f() }
    }
}
