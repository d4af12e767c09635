//! libc's definition of a function this library also exports (`dlopen`, `clone`,
//! `__register_atfork`): the next one after this library, found once.

use core::ffi::CStr;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The address of the next definition of `name` after this library (`dlsym(RTLD_NEXT)`),
/// found on the first call and kept in `cache` (0 until then). Aborts if there is none: the
/// caller called this library's `name`, which passes the call on.
pub fn next_symbol(cache: &AtomicUsize, name: &CStr) -> usize {
    let mut real = cache.load(Ordering::Acquire);
    if real == 0 {
        // SAFETY: dlsym with the RTLD_NEXT pseudo-handle and a NUL-terminated name.
        real = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        if real == 0 {
            let mut m = rseq::ffi::Msg::new();
            m.str("rseqmalloc: ")
                .str(name.to_str().unwrap_or("a function"))
                .str(" called but libc's not found; aborting");
            rseq::ffi::abort_with(&m)
        }
        cache.store(real, Ordering::Release);
    }
    real
}
