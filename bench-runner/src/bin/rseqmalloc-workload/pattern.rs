//! Objects that know who they are: each block is filled with a pattern
//! derived from its identity and verified before it is freed, so an allocator
//! that hands out overlapping or corrupted memory fails the run (exit status
//! 3 and a message on stderr) instead of winning it.
//!
//! The checks compare slices (`memcmp`) rather than looping over bytes, so
//! they stay cheap even in an unoptimised build of this binary.

use std::alloc::{self, Layout};

use crate::rng::mix;

/// Exit status of a workload that found corrupted data.
pub const EXIT_CORRUPT: i32 = 3;

/// The fill byte of object `id`; never 0, so a zeroed block never passes.
pub fn tag(id: u64) -> u8 {
    (mix(id) as u8) | 1
}

/// Fills `buf` as object `id`: its first 8 bytes hold `id`, its last 8
/// (when it has 16 or more) hold `!id`, and every other byte is `tag(id)`.
pub fn fill(buf: &mut [u8], id: u64) {
    buf.fill(tag(id));
    let head = id.to_le_bytes();
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&head[..n]);
    if buf.len() >= 16 {
        let at = buf.len() - 8;
        buf[at..].copy_from_slice(&(!id).to_le_bytes());
    }
}

/// Whether `buf` still holds what [`fill`] wrote for object `id`.
pub fn holds(buf: &[u8], id: u64) -> bool {
    let head = id.to_le_bytes();
    let n = buf.len().min(8);
    if buf[..n] != head[..n] {
        return false;
    }
    let middle = if buf.len() >= 16 {
        if buf[buf.len() - 8..] != (!id).to_le_bytes() {
            return false;
        }
        &buf[8..buf.len() - 8]
    } else {
        &buf[n..]
    };
    uniform(middle, tag(id))
}

/// Whether every byte of `bytes` is `byte`, by one overlapping `memcmp`.
pub fn uniform(bytes: &[u8], byte: u8) -> bool {
    match bytes.split_first() {
        None => true,
        Some((&first, rest)) => first == byte && rest == &bytes[..bytes.len() - 1],
    }
}

/// Reports corrupted data of `what` and ends the process with [`EXIT_CORRUPT`].
pub fn corrupted(what: &str, id: u64, len: usize) -> ! {
    eprintln!("data mismatch: {what} object {id:#x} ({len} B) was overwritten");
    std::process::exit(EXIT_CORRUPT)
}

/// Allocates a block of `layout` (at least 16 bytes, aligned to at least 8) and writes object
/// `id` into it: `id` in its first word, `!id` in its last. Cheap enough not to hide an
/// allocator's cost (two words, where [`Obj`] fills every byte), and two live blocks that
/// overlap fail [`free_tagged`]. Ends the process on allocation failure.
pub fn alloc_tagged(layout: Layout, id: u64) -> *mut u8 {
    assert!(layout.size() >= 16 && layout.align() >= 8, "{layout:?}");
    // SAFETY: `layout` has a non-zero size.
    let p = unsafe { alloc::alloc(layout) };
    if p.is_null() {
        alloc::handle_alloc_error(layout);
    }
    // SAFETY: the block has at least 16 bytes, aligned to 8: both words are inside it.
    unsafe {
        p.cast::<u64>().write(id);
        p.add(layout.size() - 8).cast::<u64>().write(!id);
    }
    p
}

/// Checks that the block at `p` still holds object `id` as [`alloc_tagged`] wrote it, then
/// frees it; a mismatch ends the run as corruption of workload `what`'s object.
///
/// # Safety
/// `p` came from `alloc_tagged(layout, id')` for this `layout`, and is freed only here, once.
pub unsafe fn free_tagged(p: *mut u8, layout: Layout, id: u64, what: &str) {
    // SAFETY: the caller's contract: a live block of `layout`, at least 16 bytes, aligned to 8.
    let (head, tail) = unsafe {
        (
            p.cast::<u64>().read(),
            p.add(layout.size() - 8).cast::<u64>().read(),
        )
    };
    if head != id || tail != !id {
        corrupted(what, id, layout.size());
    }
    // SAFETY: as above; nothing uses the block afterwards.
    unsafe { alloc::dealloc(p, layout) };
}

/// A heap block (one `malloc`) filled as object `id`.
#[derive(Debug)]
pub struct Obj {
    id: u64,
    data: Box<[u8]>,
}

impl Obj {
    /// Allocates `len` (> 0) bytes and fills them as object `id`.
    pub fn new(id: u64, len: usize) -> Self {
        // `vec![b; n]` is one malloc plus one memset; capacity == len, so the
        // boxing does not reallocate.
        let mut data = vec![tag(id); len].into_boxed_slice();
        fill(&mut data, id);
        Obj { id, data }
    }

    /// Checks the contents; exits the process if they were overwritten.
    pub fn verify(&self, what: &str) {
        if !holds(&self.data, self.id) {
            corrupted(what, self.id, self.data.len());
        }
    }

    /// Checks the contents, then frees the block.
    pub fn release(self, what: &str) {
        self.verify(what);
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }
}

/// Hands out unique object ids for one thread: the thread's index in the
/// top 24 bits, a counter below.
#[derive(Debug)]
pub struct Ids(u64);

impl Ids {
    pub fn for_thread(thread: usize) -> Self {
        Ids((thread as u64) << 40)
    }

    pub fn next_id(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_then_holds_for_every_length() {
        for len in 1..64 {
            let mut buf = vec![0u8; len];
            fill(&mut buf, 0xabcdef);
            assert!(holds(&buf, 0xabcdef), "len {len}");
            assert!(!holds(&buf, 0xabcdee), "len {len}");
            for at in 0..len {
                let mut bad = buf.clone();
                bad[at] ^= 0x40;
                assert!(!holds(&bad, 0xabcdef), "len {len} flipped at {at}");
            }
        }
    }

    #[test]
    fn overlapping_objects_are_caught() {
        let mut buf = vec![0u8; 100];
        fill(&mut buf, 1);
        fill(&mut buf[..40], 2);
        assert!(!holds(&buf, 1));
        assert!(holds(&buf[..40], 2));
        assert!(uniform(&[], 7));
        assert!(!uniform(&[7, 7, 8], 7));
    }
}
