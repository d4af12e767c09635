//! What a C face over this crate needs besides the allocation functions: the calling thread's
//! `errno`, the kernel's page size, and a fixed-size line for messages built without allocating.
//!
//! `librseqmalloc.so` (the `allocator-shim` crate) is written against this module and the
//! crate's other public functions only.
//!
//! May call: `os`, `percpu` (the thread block around `vfork`, the fork handlers).

use crate::os;
pub use crate::os::{ErrnoKeeper, Msg};

/// The calling thread's `errno`.
#[inline]
pub fn errno() -> i32 {
    os::errno()
}

/// Sets the calling thread's `errno`.
#[inline]
pub fn set_errno(e: i32) {
    os::set_errno(e)
}

/// Sets the calling thread's allocator state aside for a `vfork` child: call right before the
/// `vfork` system call, and [`vfork_leave`] in the parent once it returns (or failed). Until
/// then the thread (and the child, which runs on the parent's thread-local storage but not on
/// its rseq registration) allocates through locks instead of its CPU's cache. For a `vfork`
/// wrapper only: between the two calls the thread's allocations are slower.
pub fn vfork_enter() {
    crate::percpu::vfork_enter()
}

/// Undoes [`vfork_enter`], in the parent.
pub fn vfork_leave() {
    crate::percpu::vfork_leave()
}

/// Registers the allocator's fork handlers now, if they are not yet (they are once the
/// library's constructor ran): for a `__register_atfork` wrapper, before it registers anyone
/// else's, so that the allocator's locks are taken after every other prepare handler and
/// released before every other parent and child handler (see `percpu::fork::install`).
pub fn install_fork_handlers() {
    crate::percpu::install_fork_handlers()
}

/// The kernel's page size (`getauxval(AT_PAGESZ)`, 4096 if the kernel did not say).
pub fn page_size() -> usize {
    match os::auxval(libc::AT_PAGESZ) {
        0 => os::OS_PAGE,
        p => p as usize,
    }
}

/// Writes `m` as one whole line to descriptor 2 as it is now, with one `write(2)`, never
/// raising `SIGPIPE`: for output the program asked for (glibc writes `malloc_stats` to its
/// `stderr` stream).
pub fn print_stderr(m: &Msg) {
    os::output::write_stderr_now(m.line().as_bytes())
}

/// Writes `m` as [`print_stderr`] does, then aborts the process (`SIGABRT`), as the allocator
/// does on a bad free.
pub fn abort_with(m: &Msg) -> ! {
    os::abort_with(m)
}
