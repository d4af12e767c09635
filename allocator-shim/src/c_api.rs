//! The standard C (C23) and POSIX allocation functions, with glibc 2.36's semantics.

use core::ffi::{c_int, c_void};
use core::ptr::null_mut;
use rseq::ffi::{errno, page_size, set_errno};

/// `sizeof(void *)`: the alignment plain `malloc` guarantees for every size (16 above 8 bytes),
/// hence what `memalign` can pass to `malloc` unchanged (glibc passes up to 16, its
/// `MALLOC_ALIGNMENT` for every size); also the unit of `posix_memalign`'s alignments.
const WORD: usize = core::mem::size_of::<*mut c_void>();

/// glibc's `_mid_memalign`: alignments up to a word are plain `malloc`; one above
/// `SIZE_MAX / 2 + 1` is `EINVAL`; any other that is not a power of two is rounded up to one.
fn memalign_inner(align: usize, size: usize) -> *mut c_void {
    if align <= WORD {
        return rseq::malloc(size).cast();
    }
    if align > usize::MAX / 2 + 1 {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    rseq::aligned_alloc(align.next_power_of_two(), size).cast()
}

/// `malloc(3)`: at least `size` bytes aligned to 16 (8 for sizes ≤ 8); `malloc(0)` is a unique
/// pointer; null with `errno = ENOMEM` when impossible.
///
/// # Safety
/// Always safe to call; unsafe only because it is a C entry point.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    rseq::malloc(size).cast()
}

/// `free(3)`: null is a no-op; a pointer this allocator never returned, an interior pointer, or
/// a double free aborts with one line on stderr. `errno` is preserved (POSIX.1-2024).
///
/// # Safety
/// `ptr` is null or a live allocation of this library that nobody uses any more.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: forwarded contract; the core keeps errno.
    unsafe { rseq::free(ptr.cast()) };
}

/// `calloc(3)`: `n * size` zeroed bytes; null with `ENOMEM` when the product overflows.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    rseq::calloc(n, size).cast()
}

/// `realloc(3)` as glibc: null `ptr` is `malloc(size)`; size 0 with a non-null `ptr` frees it
/// and returns null; on failure null with `ENOMEM` and `ptr` untouched.
///
/// # Safety
/// `ptr` is null or a live allocation of this library.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if size == 0 && !ptr.is_null() {
        // SAFETY: forwarded contract; glibc's REALLOC_ZERO_BYTES_FREES.
        unsafe { free(ptr) };
        return null_mut();
    }
    // SAFETY: forwarded contract.
    unsafe { rseq::realloc(ptr.cast(), size).cast() }
}

/// `reallocarray(3)`: `realloc(ptr, n * size)`, or null with `ENOMEM` (and `ptr` untouched)
/// when the product overflows.
///
/// # Safety
/// As for [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return null_mut();
    };
    // SAFETY: forwarded contract.
    unsafe { realloc(ptr, total) }
}

/// `posix_memalign(3)` as glibc 2.36: `EINVAL` unless `align` is a power of two multiple of
/// `sizeof(void *)` (`errno` untouched); `ENOMEM` when out of memory, with `errno` set to
/// `ENOMEM` too (`*memptr` untouched in both cases); else 0, `errno` untouched.
///
/// # Safety
/// `memptr` must be valid for a pointer-sized write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    if !align.is_multiple_of(WORD) || !(align / WORD).is_power_of_two() {
        return libc::EINVAL;
    }
    let saved = errno();
    let p = rseq::aligned_alloc(align, size);
    if p.is_null() {
        set_errno(libc::ENOMEM);
        return libc::ENOMEM;
    }
    set_errno(saved);
    // SAFETY: the caller gives a writable `memptr`.
    unsafe { *memptr = p.cast() };
    0
}

/// `aligned_alloc(3)` (C11/C17 as glibc ≥ 2.38): any power-of-two alignment; anything else is
/// null with `EINVAL`.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    rseq::aligned_alloc(align, size).cast()
}

/// `memalign(3)` as glibc: a non-power-of-two alignment is rounded up to one; one above
/// `SIZE_MAX / 2 + 1` is null with `EINVAL`.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    memalign_inner(align, size)
}

/// `valloc(3)`: `memalign(page size, size)`.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    memalign_inner(page_size(), size)
}

/// `pvalloc(3)`: page-aligned, the size rounded up to a whole number of pages (at least one);
/// null with `ENOMEM` when that rounding overflows.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    let Some(rounded) = size.max(1).checked_next_multiple_of(page) else {
        set_errno(libc::ENOMEM);
        return null_mut();
    };
    memalign_inner(page, rounded)
}

/// `malloc_usable_size(3)`: bytes usable at `ptr` (at least what was asked); 0 for null.
///
/// # Safety
/// `ptr` is null or a live allocation of this library.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    // SAFETY: forwarded contract.
    unsafe { rseq::usable_size(ptr.cast()) }
}

/// C23 `free_sized`: `free` (the size is not needed).
///
/// # Safety
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_sized(ptr: *mut c_void, _size: usize) {
    // SAFETY: forwarded contract.
    unsafe { free(ptr) }
}

/// C23 `free_aligned_sized`: `free` (alignment and size are not needed).
///
/// # Safety
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(ptr: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: forwarded contract.
    unsafe { free(ptr) }
}
