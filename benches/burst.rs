//! The burst both `alloc.rs`'s `batch` group and `batch_ab.rs` time, and the cells they time it
//! in, so that the two harnesses measure the same code on the same cells.
//!
//! The burst calls each allocator as a program calls its `#[global_allocator]` through a
//! `__rust_alloc` that is not inlined into it: `alloc` and `dealloc` each through one direct call
//! of a function of their own, monomorphized per allocator ([`global_alloc`],
//! [`global_dealloc`]), with the alignment a value the compiler cannot see ([`align8`]). (A
//! program built with LTO may inline its allocator with constant layouts, which would favour
//! rseqmalloc, whose fast path is Rust; this is the conservative case.) Through `&dyn
//! GlobalAlloc` (sessions up to 36) every allocator's calls went through the same indirect call
//! sites, and once two allocators had run there, rseqmalloc's, the `mimalloc` crate's and
//! jemalloc's cells each took 8–27 % longer than when it ran alone, even in blocks of 60 ms
//! (session 37, docs/benchmarks.md).

use std::alloc::{GlobalAlloc, Layout};

/// The allocators both harnesses compare with glibc's (`std::alloc::System`).
pub static RSEQ: rseqmalloc::RseqMalloc = rseqmalloc::RseqMalloc;
pub static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
pub static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Burst lengths of the `batch` cells (objects allocated, then freed).
pub const BATCH_NS: [usize; 6] = [1, 16, 64, 256, 1024, 4096];
/// Object sizes of the `batch` cells, in bytes.
pub const BATCH_SIZES: [usize; 4] = [16, 64, 256, 1024];

/// The alignment every benchmark asks for (8), as a value the compiler cannot see: a program's
/// `__rust_alloc(size, align)` hands its allocator both as arguments, and where the harness's
/// constant reached [`global_alloc`], the compiler built it a copy for alignment 8 alone (seven
/// instructions fewer in rseqmalloc's `alloc`: in session 37 `batch_ab`, which had that copy,
/// read our cells a fifth faster than criterion, which had not).
pub fn align8() -> usize {
    std::hint::black_box(8)
}

/// `a.alloc(layout)`, never inlined into the caller: the call a program makes to its global
/// allocator (`__rust_alloc`).
///
/// # Safety
/// As for [`GlobalAlloc::alloc`].
#[inline(never)]
pub unsafe fn global_alloc<A: GlobalAlloc>(a: &A, layout: Layout) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { a.alloc(layout) }
}

/// `p`, or the out-of-memory abort a program's `Box` or `Vec` takes when `__rust_alloc` or
/// `__rust_realloc` returns null (`handle_alloc_error(layout)`, `layout` the one asked for).
#[inline(always)]
pub fn or_abort(p: *mut u8, layout: Layout) -> *mut u8 {
    if p.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    p
}

/// `a.dealloc(p, layout)`, never inlined into the caller (`__rust_dealloc`).
///
/// # Safety
/// As for [`GlobalAlloc::dealloc`].
#[inline(never)]
pub unsafe fn global_dealloc<A: GlobalAlloc>(a: &A, p: *mut u8, layout: Layout) {
    // SAFETY: forwarded contract.
    unsafe { a.dealloc(p, layout) }
}

/// `a.realloc(p, layout, new_size)`, never inlined into the caller (`__rust_realloc`).
///
/// # Safety
/// As for [`GlobalAlloc::realloc`].
#[inline(never)]
pub unsafe fn global_realloc<A: GlobalAlloc>(
    a: &A,
    p: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { a.realloc(p, layout, new_size) }
}

/// `n` allocations of `layout`, each written with its index into its first word and its address
/// into `ptrs[i]` (`ptrs` holds at least `n`), then each checked and freed.
///
/// Never inlined, so that criterion and `batch_ab` compile the same function for each allocator
/// rather than two loops shaped by their callers (the call costs every allocator the same, once
/// a burst). They are still two binaries; the compiler may place or specialize them apart.
///
/// # Safety
/// `layout` holds at least a `usize` (`size ≥ 8`) aligned for one (`align ≥ 8`): every object
/// gets its index written into its first word.
#[inline(never)]
pub unsafe fn batch_of<A: GlobalAlloc>(a: &A, layout: Layout, n: usize, ptrs: &mut [*mut u8]) {
    debug_assert!(layout.size() >= size_of::<usize>() && layout.align() >= align_of::<usize>());
    let ptrs = &mut ptrs[..n];
    for (i, slot) in ptrs.iter_mut().enumerate() {
        // SAFETY: the caller's contract: a non-zero size.
        let p = or_abort(unsafe { global_alloc(a, layout) }, layout);
        // SAFETY: the caller's contract: the block holds a `usize` and is aligned for one.
        unsafe { p.cast::<usize>().write(i) };
        *slot = p;
    }
    for (i, &p) in ptrs.iter().enumerate() {
        // SAFETY: written above; allocated with `layout` and freed only here.
        unsafe {
            assert_eq!(p.cast::<usize>().read(), i, "object {i} was overwritten");
            global_dealloc(a, p, layout);
        }
    }
}
