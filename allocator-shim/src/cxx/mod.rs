//! C++ `operator new` / `operator delete`: the 20 forms libstdc++ exports (Itanium mangling,
//! `size_t` = `unsigned long`).
//!
//! The throwing forms must let a C++ exception (`std::bad_alloc`, or whatever a new-handler
//! throws) unwind through them. A C++ exception entering a Rust frame compiled with
//! `panic = "abort"` aborts even through `extern "C-unwind"` (checked: `panic in a function
//! that cannot unwind`), so on x86_64 those four symbols are a small assembly routine with CFI
//! (`asm_x86_64.rs`): it calls Rust only for steps that return normally, and calls the C++
//! new-handler and `std::__throw_bad_alloc` itself, so the exception unwinds through assembly
//! frames only. Other architectures get the same loop in Rust as `extern "C-unwind"`, which is
//! correct only with `panic = "unwind"`.
//!
//! The nothrow forms behave as libstdc++'s: on failure they call the installed new-handler in
//! a loop and return null when none is installed or when it throws (anything). Catching the
//! exception needs C++: the loop is `nothrow.cc`, compiled by `build.rs` (x86_64). Elsewhere
//! the loop is Rust and a handler that throws ends the process (`panic = "abort"`).
//!
//! The C++ runtime is never linked: its functions are found with `dlsym`, only on failure.

use core::ffi::{c_void, CStr};
use core::ptr::null_mut;
use rseq::ffi::Msg;

#[cfg(target_arch = "x86_64")]
mod asm_x86_64;

/// Allocation for operator new: `align == 0` is plain new, else `std::align_val_t`; null on
/// failure and for an alignment that is not a power of two (libstdc++ throws for those).
#[inline(always)]
fn new_alloc(size: usize, align: usize) -> *mut c_void {
    if align == 0 {
        rseq::malloc(size).cast()
    } else if align.is_power_of_two() {
        rseq::aligned_alloc(align, size).cast()
    } else {
        null_mut()
    }
}

/// Finds a libstdc++ (or libc++) function by its mangled name: in the global scope, else in a
/// `libstdc++.so.6` loaded privately (`RTLD_LOCAL`, e.g. by a plugin) — never loading it.
/// Cold path only: `dlsym` may allocate.
fn cxx_symbol(names: &[&CStr]) -> usize {
    for name in names {
        // SAFETY: dlsym with the RTLD_DEFAULT pseudo-handle and a NUL-terminated name.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        if !p.is_null() {
            return p as usize;
        }
    }
    for lib in [c"libstdc++.so.6", c"libc++.so.1"] {
        // SAFETY: RTLD_NOLOAD only returns a handle to an already loaded library.
        let h = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
        if h.is_null() {
            continue;
        }
        let mut found = 0;
        for name in names {
            // SAFETY: `h` is a live handle; the name is NUL-terminated.
            let p = unsafe { libc::dlsym(h, name.as_ptr()) };
            if !p.is_null() {
                found = p as usize;
                break;
            }
        }
        // SAFETY: balances the reference RTLD_NOLOAD took; the library stays loaded (it was
        // loaded before).
        unsafe { libc::dlclose(h) };
        if found != 0 {
            return found;
        }
    }
    0
}

#[cold]
fn no_libstdcxx(what: &str) -> ! {
    let mut m = Msg::new();
    m.str("rseqmalloc: operator new failed and no C++ runtime is loaded (no ")
        .str(what)
        .str("); aborting");
    rseq::ffi::abort_with(&m)
}

/// The installed `std::new_handler`, or 0 if there is none or no C++ runtime is loaded.
extern "C" fn current_new_handler() -> usize {
    let get = cxx_symbol(&[c"_ZSt15get_new_handlerv"]);
    if get == 0 {
        return 0;
    }
    // SAFETY: `get` is `std::get_new_handler()`, a noexcept function returning a function
    // pointer (possibly null), with the C calling convention on this ABI.
    let get: extern "C" fn() -> usize = unsafe { core::mem::transmute(get) };
    get()
}

/// The failure step of a throwing operator new: the current `std::new_handler` to call before
/// retrying, or 0 when `std::bad_alloc` must be thrown (no handler, or an invalid alignment).
extern "C" fn new_handler_step(align: usize) -> usize {
    if align != 0 && !align.is_power_of_two() {
        return 0;
    }
    if cxx_symbol(&[c"_ZSt15get_new_handlerv"]) == 0 {
        no_libstdcxx("std::get_new_handler");
    }
    current_new_handler()
}

/// `std::__throw_bad_alloc` (libstdc++) or `std::__1::__throw_bad_alloc` (libc++): a function
/// that throws `std::bad_alloc` and never returns.
extern "C" fn new_thrower() -> usize {
    let t = cxx_symbol(&[
        c"_ZSt17__throw_bad_allocv",
        c"_ZNSt3__117__throw_bad_allocEv",
    ]);
    if t == 0 {
        no_libstdcxx("std::__throw_bad_alloc");
    }
    t
}

/// Portable throwing operator new: correct only where the profile unwinds (`panic = "unwind"`);
/// with `panic = "abort"` a throw out of the new-handler or `__throw_bad_alloc` aborts.
#[cfg(not(target_arch = "x86_64"))]
mod new_portable {
    use super::{new_alloc, new_handler_step, new_thrower};
    use core::ffi::c_void;

    #[cold]
    fn new_fail(size: usize, align: usize) -> *mut c_void {
        loop {
            let h = new_handler_step(align);
            if h == 0 {
                break;
            }
            // SAFETY: `h` is the current `std::new_handler`, a C++ function taking nothing.
            let h: extern "C-unwind" fn() = unsafe { core::mem::transmute(h) };
            h();
            let p = new_alloc(size, align);
            if !p.is_null() {
                return p;
            }
        }
        // SAFETY: `std::__throw_bad_alloc`, which throws and never returns.
        let t: extern "C-unwind" fn() -> ! = unsafe { core::mem::transmute(new_thrower()) };
        t()
    }

    /// `operator new(size_t)`.
    ///
    /// # Safety
    /// Always safe to call.
    #[no_mangle]
    pub unsafe extern "C-unwind" fn _Znwm(size: usize) -> *mut c_void {
        let p = new_alloc(size, 0);
        if p.is_null() {
            new_fail(size, 0)
        } else {
            p
        }
    }

    /// `operator new[](size_t)`.
    ///
    /// # Safety
    /// Always safe to call.
    #[no_mangle]
    pub unsafe extern "C-unwind" fn _Znam(size: usize) -> *mut c_void {
        // SAFETY: same contract.
        unsafe { _Znwm(size) }
    }

    /// `operator new(size_t, std::align_val_t)`.
    ///
    /// # Safety
    /// Always safe to call.
    #[no_mangle]
    pub unsafe extern "C-unwind" fn _ZnwmSt11align_val_t(size: usize, align: usize) -> *mut c_void {
        let p = new_alloc(size, align);
        if p.is_null() {
            new_fail(size, align)
        } else {
            p
        }
    }

    /// `operator new[](size_t, std::align_val_t)`.
    ///
    /// # Safety
    /// Always safe to call.
    #[no_mangle]
    pub unsafe extern "C-unwind" fn _ZnamSt11align_val_t(size: usize, align: usize) -> *mut c_void {
        // SAFETY: same contract.
        unsafe { _ZnwmSt11align_val_t(size, align) }
    }
}

/// A nothrow operator new: allocates, and on failure runs the new-handler loop.
#[inline(always)]
fn nothrow(size: usize, align: usize) -> *mut c_void {
    let p = new_alloc(size, align);
    if p.is_null() {
        nothrow_fail(size, align)
    } else {
        p
    }
}

extern "C" fn nothrow_try(size: usize, align: usize) -> *mut c_void {
    new_alloc(size, align)
}

/// The nothrow forms' failure path: libstdc++'s loop (see the module documentation).
#[cold]
#[inline(never)]
fn nothrow_fail(size: usize, align: usize) -> *mut c_void {
    // An alignment that is not a power of two fails before any handler (libstdc++ throws
    // bad_alloc at once, which its nothrow form turns into null); so does "no handler".
    if align != 0 && !align.is_power_of_two() || current_new_handler() == 0 {
        return null_mut();
    }
    #[cfg(target_arch = "x86_64")]
    {
        extern "C" {
            fn rseqmalloc_nothrow_retry(
                size: usize,
                align: usize,
                try_alloc: extern "C" fn(usize, usize) -> *mut c_void,
                current_handler: extern "C" fn() -> usize,
            ) -> *mut c_void;
        }
        if !asm_x86_64::bind_cxx_runtime() {
            return null_mut();
        }
        // SAFETY: `nothrow.cc`'s loop, noexcept: it catches whatever the handler throws; the
        // runtime functions it needs are bound just above.
        unsafe { rseqmalloc_nothrow_retry(size, align, nothrow_try, current_new_handler) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    loop {
        let h = current_new_handler();
        if h == 0 {
            return null_mut();
        }
        // SAFETY: the current `std::new_handler`, a C++ function taking nothing; if it throws,
        // the process aborts (see the module documentation).
        let h: extern "C-unwind" fn() = unsafe { core::mem::transmute(h) };
        h();
        let p = nothrow_try(size, align);
        if !p.is_null() {
            return p;
        }
    }
}

/// `operator new(size_t, const std::nothrow_t&)`: null on failure, after the new-handler loop.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn _ZnwmRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    nothrow(size, 0)
}

/// `operator new[](size_t, const std::nothrow_t&)`.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn _ZnamRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    nothrow(size, 0)
}

/// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`: null on failure (after the
/// new-handler loop) or for an alignment that is not a power of two (0 counts as no
/// alignment, like everywhere here).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn _ZnwmSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    nothrow(size, align)
}

/// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn _ZnamSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    nothrow(size, align)
}

/// Defines operator delete symbols: each frees its first argument and ignores the rest.
macro_rules! deletes {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        $(#[$doc])*
        ///
        /// # Safety
        /// `ptr` is null or a live allocation of this library that nobody uses any more.
        #[no_mangle]
        pub unsafe extern "C" fn $name(ptr: *mut c_void $(, $arg: $ty)*) {
            $(let _ = $arg;)*
            // SAFETY: forwarded contract.
            unsafe { rseq::free(ptr.cast()) }
        }
    )*};
}

deletes! {
    /// `operator delete(void*)`.
    _ZdlPv();
    /// `operator delete[](void*)`.
    _ZdaPv();
    /// `operator delete(void*, size_t)`.
    _ZdlPvm(size: usize);
    /// `operator delete[](void*, size_t)`.
    _ZdaPvm(size: usize);
    /// `operator delete(void*, std::align_val_t)`.
    _ZdlPvSt11align_val_t(align: usize);
    /// `operator delete[](void*, std::align_val_t)`.
    _ZdaPvSt11align_val_t(align: usize);
    /// `operator delete(void*, size_t, std::align_val_t)`.
    _ZdlPvmSt11align_val_t(size: usize, align: usize);
    /// `operator delete[](void*, size_t, std::align_val_t)`.
    _ZdaPvmSt11align_val_t(size: usize, align: usize);
    /// `operator delete(void*, const std::nothrow_t&)`.
    _ZdlPvRKSt9nothrow_t(nt: *const c_void);
    /// `operator delete[](void*, const std::nothrow_t&)`.
    _ZdaPvRKSt9nothrow_t(nt: *const c_void);
    /// `operator delete(void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdlPvSt11align_val_tRKSt9nothrow_t(align: usize, nt: *const c_void);
    /// `operator delete[](void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdaPvSt11align_val_tRKSt9nothrow_t(align: usize, nt: *const c_void);
}
