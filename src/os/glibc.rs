//! What the allocator needs to know of glibc's own state around `fork`: whether the process is
//! single-threaded, and the stdio list lock that glibc's `fork` takes before its own malloc's
//! locks. Every symbol is referenced weakly, so another C library (or an old glibc) still
//! links and loads; each function then does nothing (or answers "not known to be single").

use core::arch::global_asm;

// Weak references, resolved by the dynamic linker when libc.so.6 exports them:
// `__libc_single_threaded` (glibc ≥ 2.32), `_IO_list_lock`/`_IO_list_unlock`/
// `_IO_list_resetlock` (glibc's public libio symbols since 2.2.5).
global_asm!(
    ".pushsection .data.rel.ro.rseqmalloc_glibc_fork,\"aw\",%progbits",
    ".balign 8",
    ".weak __libc_single_threaded",
    ".weak _IO_list_lock",
    ".weak _IO_list_unlock",
    ".weak _IO_list_resetlock",
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
