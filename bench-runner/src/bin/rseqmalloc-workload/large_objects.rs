//! `large-objects`: blocks of 64 KiB to 8 MiB (log-uniform) with a live set
//! of 8: each is allocated with plain `malloc`, touched once per page (as a
//! program that uses part of a big buffer would), checked and freed when its
//! slot is reused. Stresses the large-object path, page reuse and the cost of
//! returning memory to the kernel.

use std::alloc::{self, Layout};

use crate::rng::{mix, Rng};
use crate::{scaled, SEED};

const FULL_OPS: u64 = 4_000;
const LIVE: usize = 8;
const PAGE: usize = 4096;
const MIN: usize = 64 << 10;
const MAX: usize = 8 << 20;

pub fn run(scale: f64) -> u64 {
    let ops = scaled(FULL_OPS, scale, 40);
    let mut rng = Rng::new(SEED, 0);
    let mut slots: Vec<Option<Block>> = (0..LIVE).map(|_| None).collect();
    for id in 1..=ops {
        let fresh = Block::new(id, rng.log_uniform(MIN, MAX) & !7);
        if let Some(old) = slots[rng.below(LIVE)].replace(fresh) {
            old.verify();
        }
    }
    for block in slots.into_iter().flatten() {
        block.verify();
    }
    ops
}

/// A `malloc`ed block of which only one word per page (and the last word)
/// is ever written: the rest stays untouched, as it would in a real program.
struct Block {
    id: u64,
    ptr: *mut u8,
    layout: Layout,
}

impl Block {
    fn new(id: u64, size: usize) -> Self {
        // Alignment 8 <= size: the system allocator calls plain malloc.
        let layout = Layout::from_size_align(size, 8).expect("valid layout");
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { alloc::alloc(layout) };
        if ptr.is_null() {
            alloc::handle_alloc_error(layout);
        }
        let block = Block { id, ptr, layout };
        for offset in block.offsets() {
            // SAFETY: `offset + 8 <= size` and `offset` is a multiple of 8 in
            // a block aligned to 8 that we own.
            unsafe {
                block
                    .ptr
                    .add(offset)
                    .cast::<u64>()
                    .write(block.word(offset))
            };
        }
        block
    }

    /// Offsets of the words written: the start of every page, and the end.
    fn offsets(&self) -> impl Iterator<Item = usize> {
        let size = self.layout.size();
        (0..size).step_by(PAGE).chain(std::iter::once(size - 8))
    }

    fn word(&self, offset: usize) -> u64 {
        mix(self.id) ^ offset as u64
    }

    /// Checks every written word, then frees the block (on drop).
    fn verify(self) {
        for offset in self.offsets() {
            // SAFETY: written in `new` at this in-bounds, aligned offset.
            let word = unsafe { self.ptr.add(offset).cast::<u64>().read() };
            if word != self.word(offset) {
                crate::pattern::corrupted("large-objects", self.id, self.layout.size());
            }
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed only here.
        unsafe { alloc::dealloc(self.ptr, self.layout) };
    }
}
