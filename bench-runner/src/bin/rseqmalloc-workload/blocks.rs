//! Big blocks of which one word per page (and the last word) is used, kept
//! in a small live set where each new block replaces a random live one: the
//! body of `large-objects` (`malloc`) and `calloc-big` (`calloc`). The rest
//! of each block stays untouched, as it would in a program that uses part of
//! a big buffer.

use std::alloc::{self, Layout};

use crate::rng::{mix, Rng};
use crate::SEED;

const PAGE: usize = 4096;

/// Allocates `ops` blocks of `size(rng)` bytes (rounded down to 8) with
/// `live` alive at a time, zeroed ones (`calloc`) if `zeroed`; checks each
/// before its free. Returns `ops`.
pub fn churn(
    what: &'static str,
    ops: u64,
    live: usize,
    zeroed: bool,
    mut size: impl FnMut(&mut Rng) -> usize,
) -> u64 {
    let mut rng = Rng::new(SEED, 0);
    let mut slots: Vec<Option<Block>> = (0..live).map(|_| None).collect();
    for id in 1..=ops {
        let fresh = Block::new(what, id, size(&mut rng) & !7, zeroed);
        if let Some(old) = slots[rng.below(live)].replace(fresh) {
            old.verify();
        }
    }
    for block in slots.into_iter().flatten() {
        block.verify();
    }
    ops
}

struct Block {
    what: &'static str,
    id: u64,
    ptr: *mut u8,
    layout: Layout,
}

impl Block {
    /// Allocates the block and writes its words; a `zeroed` block's words
    /// are first checked to be zero (a reused block that is not fails the run).
    fn new(what: &'static str, id: u64, size: usize, zeroed: bool) -> Self {
        // Alignment 8 <= size: the system allocator calls plain malloc or calloc.
        let layout = Layout::from_size_align(size, 8).expect("valid layout");
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe {
            if zeroed {
                alloc::alloc_zeroed(layout)
            } else {
                alloc::alloc(layout)
            }
        };
        if ptr.is_null() {
            alloc::handle_alloc_error(layout);
        }
        let block = Block {
            what,
            id,
            ptr,
            layout,
        };
        for offset in block.offsets() {
            // SAFETY: `offset + 8 <= size` and `offset` is a multiple of 8 in
            // a block aligned to 8 that we own.
            let word = unsafe { block.ptr.add(offset).cast::<u64>() };
            // SAFETY: as above.
            if zeroed && unsafe { word.read() } != 0 {
                eprintln!("data mismatch: {what} block {id} ({size} B) not zero at {offset}");
                std::process::exit(crate::pattern::EXIT_CORRUPT);
            }
            // SAFETY: as above.
            unsafe { word.write(block.word(offset)) };
        }
        block
    }

    /// The start of every page, and the last word unless that starts a page.
    fn offsets(&self) -> impl Iterator<Item = usize> {
        let last = self.layout.size() - 8;
        (0..last + 8)
            .step_by(PAGE)
            .chain((!last.is_multiple_of(PAGE)).then_some(last))
    }

    /// The word written at `offset`: never zero.
    fn word(&self, offset: usize) -> u64 {
        (mix(self.id) ^ offset as u64) | 1
    }

    /// Checks every written word, then frees the block (on drop).
    fn verify(self) {
        for offset in self.offsets() {
            // SAFETY: written in `new` at this in-bounds, aligned offset.
            let word = unsafe { self.ptr.add(offset).cast::<u64>().read() };
            if word != self.word(offset) {
                crate::pattern::corrupted(self.what, self.id, self.layout.size());
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
