//! `__register_atfork`, so that the allocator's fork handlers are registered before anyone
//! else's.
//!
//! `pthread_atfork` is a small function every program and library links statically (glibc's
//! `libc_nonshared.a`): it calls `__register_atfork`, which this library exports. The first
//! call, from whoever makes it, registers the allocator's handlers first
//! (`rseq::ffi::install_fork_handlers`), then the caller's; every call is then passed to libc's
//! `__register_atfork` (`crate::next`). Not covered: binaries linked against glibc before 2.3.2,
//! whose `pthread_atfork` is libc's old-version one, which jumps to libc's `__register_atfork`
//! directly.
//!
//! Why: glibc runs prepare handlers in the reverse order of registration and parent and child
//! handlers in that order. The loader runs the constructors of the libraries a program links
//! before those of a preloaded library, so a library that registered allocating handlers from
//! its constructor had them run while the allocator's locks were taken, and `fork` hung, in
//! every mode (session 74's breaker run; conformance `atfork_early.c`). Registered first, the
//! allocator takes its locks after every other prepare handler and releases them before every
//! other parent and child handler, as glibc's own malloc does inside `fork`.

use core::ffi::{c_int, c_void};
use core::sync::atomic::AtomicUsize;

/// libc's `__register_atfork` (0 until the first call resolves it).
static REAL: AtomicUsize = AtomicUsize::new(0);

/// A fork handler, as `__register_atfork` takes it (null for none).
type Handler = Option<unsafe extern "C" fn()>;

/// libc's `__register_atfork`: its signature.
type Register = unsafe extern "C" fn(Handler, Handler, Handler, *mut c_void) -> c_int;

/// libc's `__register_atfork` (the next definition after this library).
fn real() -> Register {
    let real = crate::next::next_symbol(&REAL, c"__register_atfork");
    // SAFETY: `real` is libc's `__register_atfork`, of this signature.
    unsafe { core::mem::transmute::<usize, Register>(real) }
}

/// glibc's `__register_atfork(prepare, parent, child, dso_handle)`: registers the allocator's
/// handlers first if nobody has yet, then the caller's with libc; returns what libc returns (0,
/// or `ENOMEM`). The allocator's own registration comes back here (through `pthread_atfork`),
/// and is passed on: `install_fork_handlers` registers only once.
///
/// # Safety
/// As for glibc's `__register_atfork`: the handlers are null or callable, `dso_handle` is null
/// or the registering object's `__dso_handle`.
#[no_mangle]
pub unsafe extern "C" fn __register_atfork(
    prepare: Handler,
    parent: Handler,
    child: Handler,
    dso_handle: *mut c_void,
) -> c_int {
    rseq::ffi::install_fork_handlers();
    // SAFETY: forwarded contract.
    unsafe { real()(prepare, parent, child, dso_handle) }
}
