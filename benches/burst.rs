//! The burst both `alloc.rs`'s `batch` group and `batch_ab.rs` time, so that the two
//! harnesses measure the same code.

use std::alloc::{GlobalAlloc, Layout};

/// `n` allocations of `layout`, each written with its index, then each checked and freed.
#[inline(always)]
pub fn batch_of(a: &dyn GlobalAlloc, layout: Layout, n: usize, ptrs: &mut Vec<*mut u8>) {
    for i in 0..n {
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(layout) };
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: the block holds at least 16 bytes, aligned to 8.
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
