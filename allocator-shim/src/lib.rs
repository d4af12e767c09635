//! `librseqmalloc.so`: the C face of rseqmalloc, for `LD_PRELOAD` or linking.
//!
//! Every function here is a thin adapter from a C or C++ allocation symbol, with glibc's
//! semantics, to the core crate's public API (`rseq::malloc`, `rseq::free`, `rseq::calloc`,
//! `rseq::realloc`, `rseq::aligned_alloc`, `rseq::usable_size`, `rseq::trim`, `rseq::stats`,
//! `rseq::rseq_mode`, and `rseq::os` for stderr messages). It calls nothing else of the core.
//!
//! Exported, and nothing else (`rseqmalloc.map` is the version script, passed by `build.rs`):
//! - C: `malloc`, `free`, `calloc`, `realloc`, `reallocarray`, `posix_memalign`,
//!   `aligned_alloc`, `memalign`, `valloc`, `pvalloc`, `malloc_usable_size`, `free_sized`,
//!   `free_aligned_sized`, `malloc_trim`, `mallinfo2`, `malloc_stats`;
//! - C++: the 20 forms of `operator new`/`operator delete` libstdc++ exports (plain, array,
//!   sized, `std::align_val_t`, `std::nothrow_t`, and their combinations);
//! - our own API, declared in `include/rseqmalloc.h`: `rseqmalloc_stats`,
//!   `rseqmalloc_rseq_mode`, `rseqmalloc_usable_size`, `rseqmalloc_trim`.
//!
//! # Unwinding
//! No Rust panic ever unwinds into C: every C-facing function is `extern "C"`, and an unwind
//! reaching an `extern "C"` boundary aborts the process (Rust ≥ 1.81, in debug builds too; the
//! release profile is `panic = "abort"` anyway). The core never panics on purpose.
//!
//! The one thing that must unwind *through* us is a C++ exception out of the throwing
//! `operator new`s (`std::bad_alloc`, or whatever a new-handler throws). A C++ exception
//! entering a Rust frame compiled with `panic = "abort"` aborts even through `extern
//! "C-unwind"` (checked: `panic in a function that cannot unwind`), so on x86_64 those four
//! symbols are a small assembly routine with CFI (see [`new_asm`]): it calls Rust only for
//! steps that return normally, and calls the C++ new-handler and `std::__throw_bad_alloc`
//! itself, so the exception unwinds through assembly frames only. Other architectures get the
//! same loop in Rust as `extern "C-unwind"`, which is correct only with `panic = "unwind"`.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![allow(non_snake_case)]

use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr::null_mut;
use rseq::os::{self, Msg};
use rseq::RseqMode;

/// Everything the shim (and the Rust standard library linked into it) allocates goes straight to
/// the core, not through the exported `malloc`.
#[global_allocator]
static GLOBAL: rseq::RseqMalloc = rseq::RseqMalloc;

/// `sizeof(void *)`: the alignment plain `malloc` guarantees for every size (16 above 8 bytes),
/// hence what `memalign` can pass to `malloc` unchanged (glibc passes up to 16, its
/// `MALLOC_ALIGNMENT` for every size); also the unit of `posix_memalign`'s alignments.
const WORD: usize = core::mem::size_of::<*mut c_void>();

#[inline(always)]
fn errno_slot() -> *mut c_int {
    // SAFETY: `__errno_location` has no preconditions and returns the calling thread's slot.
    unsafe { libc::__errno_location() }
}

#[inline(always)]
fn set_errno(e: c_int) {
    // SAFETY: the calling thread's own errno slot is always writable.
    unsafe { *errno_slot() = e }
}

fn page_size() -> usize {
    match os::auxval(libc::AT_PAGESZ) {
        0 => os::OS_PAGE,
        p => p as usize,
    }
}

/// `rseq::aligned_alloc` for the C and C++ entry points.
#[inline(always)]
fn aligned(align: usize, size: usize) -> *mut c_void {
    rseq::aligned_alloc(align, size).cast()
}

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
    aligned(align.next_power_of_two(), size)
}

// ---------------------------------------------------------------------------------------------
// C

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

/// `posix_memalign(3)`: `EINVAL` unless `align` is a power of two multiple of `sizeof(void *)`,
/// `ENOMEM` when out of memory (`*memptr` untouched in both cases), else 0. Never changes
/// `errno`.
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
    let slot = errno_slot();
    // SAFETY: the calling thread's errno slot.
    let saved = unsafe { *slot };
    let p = aligned(align, size);
    // SAFETY: as above.
    unsafe { *slot = saved };
    if p.is_null() {
        return libc::ENOMEM;
    }
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
    aligned(align, size)
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

/// `malloc_trim(3)`: drains the caches and returns free pages to the OS (`pad` is ignored);
/// 1 if any memory was released, else 0.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn malloc_trim(_pad: usize) -> c_int {
    c_int::from(rseq::trim() > 0)
}

/// glibc's `struct mallinfo2`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Mallinfo2 {
    /// Bytes of address space obtained from the OS (`mapped`).
    pub arena: usize,
    /// Free chunks: not tracked, 0.
    pub ordblks: usize,
    /// Fastbin chunks: none, 0.
    pub smblks: usize,
    /// Separately mmapped chunks: counted in `arena`, 0.
    pub hblks: usize,
    /// Bytes in separately mmapped chunks: counted in `arena`, 0.
    pub hblkhd: usize,
    /// Always 0 (as in glibc).
    pub usmblks: usize,
    /// Bytes in fastbins: none, 0.
    pub fsmblks: usize,
    /// Bytes handed to the program (`allocated`).
    pub uordblks: usize,
    /// The rest of `arena`: caches, free spans, fragmentation.
    pub fordblks: usize,
    /// Bytes `malloc_trim` could give back now: free spans not yet released.
    pub keepcost: usize,
}

/// `mallinfo2(3)`, filled from `rseq::stats()` (see [`Mallinfo2`] for the mapping).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn mallinfo2() -> Mallinfo2 {
    let s = rseq::stats();
    Mallinfo2 {
        arena: s.mapped,
        uordblks: s.allocated,
        fordblks: s.mapped.saturating_sub(s.allocated),
        keepcost: s.free.saturating_sub(s.released),
        ..Mallinfo2::default()
    }
}

fn mode_name(m: RseqMode) -> &'static CStr {
    match m {
        RseqMode::Uninitialized => c"uninitialized",
        RseqMode::Glibc => c"glibc",
        RseqMode::Own => c"own",
        RseqMode::Fallback => c"fallback",
    }
}

/// One `name = value` line in glibc's `malloc_stats` format (`%-17s= %10zu`).
fn stats_line(name: &str, v: usize) {
    let mut m = Msg::new();
    m.str(name);
    for _ in name.len()..17 {
        m.str(" ");
    }
    m.str("= ");
    let mut digits = 1;
    let mut t = v / 10;
    while t > 0 {
        digits += 1;
        t /= 10;
    }
    for _ in digits..10 {
        m.str(" ");
    }
    m.dec(v as u64);
    os::write_stderr(&m);
}

/// `malloc_stats(3)`: a few lines on stderr in glibc's format, written without allocating.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn malloc_stats() {
    let s = rseq::stats();
    let mut m = Msg::new();
    let name = mode_name(s.rseq_mode).to_str().unwrap_or("?");
    m.str("rseqmalloc (rseq mode ")
        .str(name)
        .str(if s.uses_mm_cid {
            ", mm_cid, "
        } else {
            ", cpu_id, "
        })
        .dec(s.slabs_in_use as u64)
        .str("/")
        .dec(s.slabs as u64)
        .str(" slabs):");
    os::write_stderr(&m);
    stats_line("system bytes", s.mapped);
    stats_line("in use bytes", s.allocated);
    stats_line("active bytes", s.active);
    stats_line("resident bytes", s.resident);
    stats_line("free bytes", s.free);
    stats_line("released bytes", s.released);
    stats_line("metadata bytes", s.metadata);
}

// ---------------------------------------------------------------------------------------------
// rseqmalloc's own API (include/rseqmalloc.h)

/// `struct rseqmalloc_stats` (include/rseqmalloc.h). Versioned by size: fields are only ever
/// appended, and a caller gets the prefix its own `sizeof` covers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RseqmallocStats {
    /// Bytes in objects handed to the program.
    pub allocated: usize,
    /// Bytes in spans in use.
    pub active: usize,
    /// Resident set size of the process.
    pub resident: usize,
    /// Address space mapped by the allocator.
    pub mapped: usize,
    /// Bytes of free spans returned to the OS.
    pub released: usize,
    /// Bytes in free spans (released or not).
    pub free: usize,
    /// Bytes of allocator metadata.
    pub metadata: usize,
    /// `enum rseqmalloc_rseq_mode`: 0 uninitialized, 1 glibc, 2 own, 3 fallback.
    pub rseq_mode: i32,
    /// 1 if the per-CPU slabs are indexed by `mm_cid`, 0 if by cpu id.
    pub uses_mm_cid: i32,
    /// rseq critical sections restarted.
    pub restarts: u64,
    /// Operations served by the locked fallback path.
    pub fallback_ops: usize,
    /// Per-CPU slabs (possible CPU or concurrency ids).
    pub slabs: usize,
    /// Slabs touched so far.
    pub slabs_in_use: usize,
}

const _: () = assert!(core::mem::size_of::<RseqmallocStats>() == 96);

/// Fills the first `min(out_size, sizeof(struct rseqmalloc_stats))` bytes of `*out` and returns
/// that count; with a null `out`, returns the library's `sizeof(struct rseqmalloc_stats)`.
///
/// # Safety
/// `out` is null or valid for writing `out_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn rseqmalloc_stats(out: *mut RseqmallocStats, out_size: usize) -> usize {
    let full = core::mem::size_of::<RseqmallocStats>();
    if out.is_null() {
        return full;
    }
    let s = rseq::stats();
    let r = RseqmallocStats {
        allocated: s.allocated,
        active: s.active,
        resident: s.resident,
        mapped: s.mapped,
        released: s.released,
        free: s.free,
        metadata: s.metadata,
        rseq_mode: s.rseq_mode as i32,
        uses_mm_cid: i32::from(s.uses_mm_cid),
        restarts: s.restarts,
        fallback_ops: s.fallback_ops,
        slabs: s.slabs,
        slabs_in_use: s.slabs_in_use,
    };
    let n = out_size.min(full);
    // SAFETY: `r` is a local of `full >= n` bytes; the caller gives `n <= out_size` writable
    // bytes at `out` (any alignment: bytes are copied).
    unsafe { core::ptr::copy_nonoverlapping((&raw const r).cast::<u8>(), out.cast::<u8>(), n) };
    n
}

/// The rseq mode as a static string: "glibc", "own", "fallback" or "uninitialized".
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn rseqmalloc_rseq_mode() -> *const c_char {
    mode_name(rseq::rseq_mode()).as_ptr()
}

/// Same as `malloc_usable_size`.
///
/// # Safety
/// As for [`malloc_usable_size`].
#[no_mangle]
pub unsafe extern "C" fn rseqmalloc_usable_size(ptr: *mut c_void) -> usize {
    // SAFETY: forwarded contract.
    unsafe { rseq::usable_size(ptr.cast()) }
}

/// Drains the caller's per-CPU cache (every CPU's without rseq) and the central caches, and
/// returns all free pages to the OS; returns the bytes released.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn rseqmalloc_trim() -> usize {
    rseq::trim()
}

// ---------------------------------------------------------------------------------------------
// C++: operator new / operator delete (Itanium mangling, size_t = unsigned long)

/// Allocation for operator new: `align == 0` is plain new, else `std::align_val_t`; null on
/// failure and for an alignment that is not a power of two (libstdc++ throws for those).
#[inline(always)]
fn new_alloc(size: usize, align: usize) -> *mut c_void {
    if align == 0 {
        rseq::malloc(size).cast()
    } else if align.is_power_of_two() {
        aligned(align, size)
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
    os::abort_with(&m)
}

/// The failure step of a throwing operator new: the current `std::new_handler` to call before
/// retrying, or 0 when `std::bad_alloc` must be thrown (no handler, or an invalid alignment).
extern "C" fn new_handler_step(align: usize) -> usize {
    if align != 0 && !align.is_power_of_two() {
        return 0;
    }
    let get = cxx_symbol(&[c"_ZSt15get_new_handlerv"]);
    if get == 0 {
        no_libstdcxx("std::get_new_handler");
    }
    // SAFETY: `get` is `std::get_new_handler()`, a noexcept function returning a function
    // pointer (possibly null), with the C calling convention on this ABI.
    let get: extern "C" fn() -> usize = unsafe { core::mem::transmute(get) };
    get()
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

/// The four throwing operator new symbols.
///
/// ```text
/// _Znwm, _Znam:                           align = 0, then fall into
/// _ZnwmSt11align_val_t, _ZnamSt11align_val_t (size, align):
///     loop {
///         p = new_alloc(size, align);  if p != null { return p }
///         h = new_handler_step(align); if h == null { break }
///         h();                         // may throw: unwinds through this frame only
///     }
///     new_thrower()();                 // throws std::bad_alloc
/// ```
/// The frame holds size and align in its own stack slots; its CFI lets the C++ unwinder pass
/// through it. The Rust functions it calls all return normally.
#[cfg(target_arch = "x86_64")]
pub mod new_asm {
    use super::{new_alloc, new_handler_step, new_thrower};
    use core::ffi::c_void;

    extern "C" fn new_try(size: usize, align: usize) -> *mut c_void {
        new_alloc(size, align)
    }

    core::arch::global_asm!(
        ".pushsection .text.rseqmalloc_operator_new,\"ax\",@progbits",
        ".p2align 4",
        ".globl _Znwm",
        ".type _Znwm,@function",
        ".globl _Znam",
        ".type _Znam,@function",
        ".globl _ZnwmSt11align_val_t",
        ".type _ZnwmSt11align_val_t,@function",
        ".globl _ZnamSt11align_val_t",
        ".type _ZnamSt11align_val_t,@function",
        ".cfi_startproc",
        "_Znwm:",
        "_Znam:",
        "xor esi, esi",
        "_ZnwmSt11align_val_t:",
        "_ZnamSt11align_val_t:",
        // Entry: rsp = 8 mod 16. Three slots: size, align, padding; calls are 16-aligned.
        "sub rsp, 24",
        ".cfi_adjust_cfa_offset 24",
        "mov qword ptr [rsp], rdi",
        "mov qword ptr [rsp + 8], rsi",
        "2:",
        "call {try_alloc}",
        "test rax, rax",
        "jz 3f",
        "add rsp, 24",
        ".cfi_adjust_cfa_offset -24",
        "ret",
        ".cfi_adjust_cfa_offset 24",
        "3:",
        "mov rdi, qword ptr [rsp + 8]",
        "call {handler_step}",
        "test rax, rax",
        "jz 4f",
        "call rax",
        "mov rdi, qword ptr [rsp]",
        "mov rsi, qword ptr [rsp + 8]",
        "jmp 2b",
        "4:",
        "call {thrower}",
        "call rax",
        "ud2",
        ".cfi_endproc",
        ".size _Znwm, . - _Znwm",
        ".size _Znam, . - _Znam",
        ".size _ZnwmSt11align_val_t, . - _ZnwmSt11align_val_t",
        ".size _ZnamSt11align_val_t, . - _ZnamSt11align_val_t",
        ".popsection",
        try_alloc = sym new_try,
        handler_step = sym new_handler_step,
        thrower = sym new_thrower,
    );
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

/// `operator new(size_t, const std::nothrow_t&)`: null on failure (the new-handler is not
/// called).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn _ZnwmRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    new_alloc(size, 0)
}

/// `operator new[](size_t, const std::nothrow_t&)`.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn _ZnamRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    new_alloc(size, 0)
}

/// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`: null on failure or for an
/// alignment that is not a power of two (0 counts as no alignment, like everywhere here).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn _ZnwmSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    new_alloc(size, align)
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
    new_alloc(size, align)
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
            unsafe { free(ptr) }
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
