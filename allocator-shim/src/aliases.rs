//! glibc's other names for its allocator: `__libc_malloc` and its kin, and `cfree`.
//!
//! glibc 2.36 exports `__libc_malloc`, `__libc_free`, `__libc_calloc`, `__libc_realloc`,
//! `__libc_memalign`, `__libc_valloc`, `__libc_pvalloc`, `__libc_mallinfo` and `__libc_mallopt`
//! (version `GLIBC_2.2.5`, linkable), and `cfree` for binaries linked before 2.26. Without these
//! a program that calls one of them reached glibc's allocator beside ours: a block from
//! `__libc_malloc` handed to `free` aborted as "invalid pointer", and one of ours handed to
//! `__libc_free` or `cfree` went into glibc's heap (found in session 74; conformance
//! `libc_names.c`). mimalloc and gperftools' tcmalloc export the allocation ones among them.
//!
//! Each is its standard counterpart, called: these are rare, so a call (a jump once
//! optimized) beside each keeps one copy of the paths.

use core::ffi::{c_int, c_void};

use crate::{c_api, glibc};

/// glibc's `__libc_malloc`: [`c_api::malloc`].
///
/// # Safety
/// As for [`c_api::malloc`].
#[no_mangle]
pub unsafe extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { c_api::malloc(size) }
}

/// glibc's `__libc_free`: [`c_api::free`].
///
/// # Safety
/// As for [`c_api::free`].
#[no_mangle]
pub unsafe extern "C" fn __libc_free(ptr: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { c_api::free(ptr) }
}

/// `cfree` (removed from glibc's headers in 2.26, kept for older binaries): [`c_api::free`].
///
/// # Safety
/// As for [`c_api::free`].
#[no_mangle]
pub unsafe extern "C" fn cfree(ptr: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { c_api::free(ptr) }
}

/// glibc's `__libc_calloc`: [`c_api::calloc`].
///
/// # Safety
/// As for [`c_api::calloc`].
#[no_mangle]
pub unsafe extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { c_api::calloc(n, size) }
}

/// glibc's `__libc_realloc`: [`c_api::realloc`].
///
/// # Safety
/// As for [`c_api::realloc`].
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { c_api::realloc(ptr, size) }
}

/// glibc's `__libc_memalign`: [`c_api::memalign`].
///
/// # Safety
/// As for [`c_api::memalign`].
#[no_mangle]
pub unsafe extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { c_api::memalign(align, size) }
}

/// glibc's `__libc_valloc`: [`c_api::valloc`].
///
/// # Safety
/// As for [`c_api::valloc`].
#[no_mangle]
pub unsafe extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { c_api::valloc(size) }
}

/// glibc's `__libc_pvalloc`: [`c_api::pvalloc`].
///
/// # Safety
/// As for [`c_api::pvalloc`].
#[no_mangle]
pub unsafe extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { c_api::pvalloc(size) }
}

/// glibc's `__libc_mallinfo`: [`glibc::mallinfo`].
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn __libc_mallinfo() -> glibc::Mallinfo {
    // SAFETY: always safe.
    unsafe { glibc::mallinfo() }
}

/// glibc's `__libc_mallopt`: [`glibc::mallopt`].
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn __libc_mallopt(param: c_int, value: c_int) -> c_int {
    // SAFETY: always safe.
    unsafe { glibc::mallopt(param, value) }
}
