//! The per-CPU layer's process-wide state, at the bottom of the folder: the rseq mode, what
//! indexes the slabs (`cpu_id` or `mm_cid`), where the slabs are and how many, whether the
//! rseq fence (membarrier) may be used, and the thread-exit key.
//!
//! Owns: [`RseqMode`] and the words behind it. `setup::init_process` writes them once, under
//! its lock, before it publishes the mode (release); every other file only reads them.
//!
//! May call: `arch` (constants), `sync`.

use crate::arch::{CPU_ID_OFFSET, MM_CID_OFFSET};
use crate::sync::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, CachePadded, Ordering};

/// How the per-CPU layer reaches its slabs; see the module documentation of `percpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RseqMode {
    /// Nothing allocated yet.
    Uninitialized = 0,
    /// Using glibc's registered rseq area.
    Glibc = 1,
    /// Using our own registered rseq area.
    Own = 2,
    /// rseq off or unavailable: slabs under per-slab locks.
    Fallback = 3,
}

/// The process-wide words, together in a cache line of their own ([`CachePadded`]; kept whole by
/// `#[used]` on [`G`], see `sync`, "Statics and cache lines").
pub(super) struct Globals {
    /// Base of slab 0 (0 until mapped).
    pub slabs: AtomicUsize,
    /// Offset in the rseq area of the id the slabs are indexed by: [`CPU_ID_OFFSET`] or
    /// [`MM_CID_OFFSET`].
    pub field: AtomicUsize,
    /// Number of slabs mapped (0: none, every thread bypasses or runs locked without slabs).
    pub nslabs: AtomicUsize,
    /// [`RseqMode`] as u8; written last, with release ordering.
    pub mode: AtomicU8,
    /// The rseq membarrier is registered for (rseq modes only): drains may stop and fence.
    pub membarrier: AtomicBool,
    /// The thread-exit key plus one (0: none).
    pub key: AtomicU32,
}

#[used]
pub(super) static G: CachePadded<Globals> = CachePadded::new(Globals {
    slabs: AtomicUsize::new(0),
    field: AtomicUsize::new(CPU_ID_OFFSET),
    nslabs: AtomicUsize::new(0),
    mode: AtomicU8::new(0),
    membarrier: AtomicBool::new(false),
    key: AtomicU32::new(0),
});

/// The mode chosen for this process.
pub fn mode() -> RseqMode {
    match G.mode.load(Ordering::Acquire) {
        1 => RseqMode::Glibc,
        2 => RseqMode::Own,
        3 => RseqMode::Fallback,
        _ => RseqMode::Uninitialized,
    }
}

/// Whether slabs index by `mm_cid` (true) or by `cpu_id`.
pub fn uses_mm_cid() -> bool {
    G.field.load(Ordering::Relaxed) == MM_CID_OFFSET
}

/// Number of slabs (possible CPU ids).
pub fn slab_count() -> usize {
    G.nslabs.load(Ordering::Relaxed)
}
