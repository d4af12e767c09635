//! The burst both `alloc.rs`'s `batch` group and `batch_ab.rs` time, and the cells they time it
//! in, so that the two harnesses measure the same code on the same cells.

use std::alloc::{GlobalAlloc, Layout};

/// Burst lengths of the `batch` cells (objects allocated, then freed).
pub const BATCH_NS: [usize; 6] = [1, 16, 64, 256, 1024, 4096];
/// Object sizes of the `batch` cells, in bytes.
pub const BATCH_SIZES: [usize; 4] = [16, 64, 256, 1024];

/// `n` allocations of `layout`, each written with its index, then each checked and freed.
///
/// # Safety
/// `layout` holds at least a `usize` (`size ≥ 8`) aligned for one (`align ≥ 8`): every object
/// gets its index written into its first word.
#[inline(always)]
pub unsafe fn batch_of(a: &dyn GlobalAlloc, layout: Layout, n: usize, ptrs: &mut Vec<*mut u8>) {
    debug_assert!(layout.size() >= size_of::<usize>() && layout.align() >= align_of::<usize>());
    for i in 0..n {
        // SAFETY: the caller's contract: a non-zero size.
        let p = unsafe { a.alloc(layout) };
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: the caller's contract: the block holds a `usize` and is aligned for one.
        unsafe { p.cast::<usize>().write(i) };
        ptrs.push(p);
    }
    for (i, p) in ptrs.drain(..).enumerate() {
        // SAFETY: written above; allocated with `layout` and freed only here.
        unsafe {
            assert_eq!(p.cast::<usize>().read(), i, "object {i} was overwritten");
            a.dealloc(p, layout);
        }
    }
}
