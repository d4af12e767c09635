//! The per-CPU layer's per-thread storage: fallback mode's magazines (`fallback`) and the rseq
//! state's outbox (`remote`), each one object of the allocator's own, of class
//! [`STORAGE_CLASS`], taken straight from the central list when the thread first needs it and
//! given back at its exit.
//!
//! Not static TLS: a library using initial-exec TLS must fit in the small static-TLS reserve
//! that a `dlopen` draws from, and 128 bytes of thread block do where kilobytes more might not.
//!
//! Owns: the count of storages alive, which statistics take out of the program's `allocated`
//! (they are the allocator's metadata).
//!
//! May call: `central`, `free_tag`, `size_class`, `sync`.

use crate::central;
use crate::size_class::{class_of, CLASS_SIZE};
use crate::sync::{AtomicUsize, CachePadded, Ordering};
use core::ptr::null_mut;

/// Bytes of one storage object at least (its class may round up).
pub(super) const STORAGE_BYTES: usize = 1792;

/// The size class every per-thread storage is allocated from.
pub(super) const STORAGE_CLASS: usize = class_of(STORAGE_BYTES);

const _: () = assert!(CLASS_SIZE[STORAGE_CLASS] as usize >= STORAGE_BYTES);

/// Storages alive.
static LIVE: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));

/// Per-thread storage alive, for statistics: its size class and how many objects of it.
pub fn thread_storage() -> (usize, usize) {
    (STORAGE_CLASS, LIVE.load(Ordering::Relaxed))
}

/// A fresh storage, [`STORAGE_BYTES`] of zeros, 16-byte aligned; null if memory ran out (the
/// thread then works without it).
pub(super) fn new_storage() -> *mut u8 {
    let mut one = [null_mut(); 1];
    if central::alloc_batch(STORAGE_CLASS, &mut one) != 1 {
        return null_mut();
    }
    LIVE.fetch_add(1, Ordering::Relaxed);
    // SAFETY: an object of at least STORAGE_BYTES bytes, now ours.
    unsafe { one[0].write_bytes(0, STORAGE_BYTES) };
    one[0]
}

/// Gives a storage back.
///
/// # Safety
/// `p` came from [`new_storage`], is not given back yet, and nobody uses it any more.
pub(super) unsafe fn drop_storage(p: *mut u8) {
    // SAFETY: forwarded contract: a storage object of class STORAGE_CLASS, ours; tagged free
    // as every object on a central list is.
    unsafe {
        crate::free_tag::set(p);
        central::free_batch(STORAGE_CLASS, &[p]);
    }
    LIVE.fetch_sub(1, Ordering::Relaxed);
}
