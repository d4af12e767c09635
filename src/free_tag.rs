//! The free tag: how a small object says "I am free".
//!
//! Owns: the per-process random key (its word is `arch::FREE_TAG_KEY`, below the critical
//! sections that read it; only this module writes it) and the tag every free small object
//! carries in its second word.
//!
//! ## The representation of a small object's state (decided once, used by every path)
//! - **Free** (in a per-CPU cache, a magazine, a transfer stack or its span): its second word
//!   holds `tag(addr) = key ^ addr`. Every path that takes an object back writes it: a C
//!   `free`, a span's carving (all objects starting in a half page are carved at once, tagged,
//!   into the span's free bitmap, or, carved by a span's owning slab without the class lock,
//!   onto its owned list), and the return of an object to its span.
//! - **Live** (handed to a C caller): the second word is anything but its tag. Every C
//!   allocation path clears it when it hands the object out (`lib.rs`).
//! - **Never carved**: the object lies in a page of its span whose page-map entry does not yet
//!   name the class, so `free` takes the checked large-object path and aborts
//!   (`invalid pointer`).
//!
//! Binding the tag to the address means that bytes copied from a free object elsewhere (by
//! `realloc`, or stale in a page reused for another class) can never make a live object at
//! another address look free. Rust's `dealloc` neither checks nor sets the tag (a double
//! `dealloc` is ruled out by safe Rust); objects it frees are tagged when they reach a span.
//!
//! Which free objects a span holds is its bitmap's business (`central`), not the objects': nothing
//! written into a free object can make the allocator hand out a block twice or a wild pointer; the
//! tag only tells `free` that a block is already free. The exception is owned spans
//! (`owned_spans=on`, the default, for C allocations of the classes of 288-960 B in the rseq modes,
//! and of 32-256 B on a thread once idle; `percpu::owned`): an owned span's list is threaded
//! through its free objects' first words, stored XOR this key, and a pop checks the popped object's
//! tag and that the decoded link lies in the span. A write that decodes outside the span stops the
//! process; one that decodes to another free object of the span (forged with the key, or by a
//! chance of about the span's length in 2^48) would hand that object out twice (docs/design.md,
//! "Known weaknesses").
//!
//! May call: `os`, `sync`, `arch` (the key's word, which the owned pop's section reads).

use crate::arch::FREE_TAG_KEY as KEY;
use crate::os;
use crate::sync::Ordering;

/// Makes sure the process's key exists: carving calls it before it tags its first object.
#[inline]
pub fn init() {
    if KEY.load(Ordering::Relaxed) == 0 {
        init_key();
    }
}

/// The process's key: random, odd, fixed before any object is tagged ([`init`], called by
/// carving).
///
/// A plain load, with no first-use branch (whose call would keep the caller's pointer live
/// across it and cost `free` its register saves): every tagged or tested object was carved,
/// carving called [`init`] first, and the object's page-map entry was published (release)
/// after that; whoever holds the object learned of it through that entry (acquire) or from
/// the thread that did, so the key is visible. Debug builds check it.
#[inline(always)]
pub fn key() -> usize {
    let k = KEY.load(Ordering::Relaxed);
    debug_assert!(k != 0, "an object was tagged before the key existed");
    k
}

/// The process's key, or 0 before the first carve ([`init`]): for a caller that uses it only on
/// objects that exist (every one was carved after the key was set), without [`key`]'s debug
/// check, which would fire in a process that has carved nothing yet (the owned-span invariant
/// checks of tests and fuzzing; the owned pop reads the key's word itself, `arch::owned_pop`).
#[cfg(any(all(test, target_arch = "x86_64"), feature = "fuzzing"))]
#[inline(always)]
pub fn key_raw() -> usize {
    KEY.load(Ordering::Relaxed)
}

#[cold]
#[inline(never)]
fn init_key() {
    let fresh = os::random_u64() as usize | 1;
    let _ = KEY.compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed);
}

/// The value a free object at `addr` carries in its second word.
#[inline(always)]
pub fn tag(addr: usize) -> usize {
    tag_with(key(), addr)
}

/// [`tag`] with the key the caller loaded ([`key`]'s value): the tag's one formula.
#[inline(always)]
fn tag_with(key: usize, addr: usize) -> usize {
    key ^ addr
}

/// True when the object at `p` carries its free tag.
///
/// # Safety
/// `p` is an object of a small class (at least 16 bytes, readable).
#[inline(always)]
pub unsafe fn is_free(p: *mut u8) -> bool {
    // SAFETY: the caller's contract: the second word is inside the object.
    unsafe { p.cast::<usize>().add(1).read() == tag(p as usize) }
}

/// `free`'s check and mark in one: false (nothing written) when the object at `p` already
/// carries its free tag, else writes the tag and returns true. `key` is the process's key,
/// which the caller loads ([`key`] says why it is visible: the caller's page-map load) and
/// keeps for an owned span's link (`percpu::owned`): loaded once, not again after the tag's
/// store, which the compiler cannot tell apart from a store to the key.
///
/// # Safety
/// `p` is a small object (at least 16 bytes) whose page-map entry the caller has loaded
/// (acquire) and checked; nobody uses it any more unless it is already free; `key` is
/// [`key`]'s value.
#[inline(always)]
pub unsafe fn mark_free_with(p: *mut u8, key: usize) -> bool {
    debug_assert_eq!(key, self::key());
    let t = tag_with(key, p as usize);
    // SAFETY: the caller's contract: the second word is inside the object.
    unsafe {
        let w = p.cast::<usize>().add(1);
        if w.read() == t {
            return false;
        }
        w.write(t);
    }
    true
}

/// Marks the object at `p` free.
///
/// # Safety
/// `p` is a small object (at least 16 bytes) that nobody uses any more.
#[inline(always)]
pub unsafe fn set(p: *mut u8) {
    // SAFETY: the caller's contract.
    unsafe { set_with(p, key()) };
}

/// [`set`] with the key the caller loaded ([`key`]): for a loop of stores, which would load the
/// key again after each one (the compiler cannot tell the key's word from the object's).
///
/// # Safety
/// As for [`set`]; `key` is [`key`]'s value.
#[inline(always)]
pub unsafe fn set_with(p: *mut u8, key: usize) {
    debug_assert_eq!(key, self::key());
    // SAFETY: the caller's contract.
    unsafe { p.cast::<usize>().add(1).write(tag_with(key, p as usize)) };
}

/// Marks the object at `p` live (not free).
///
/// # Safety
/// `p` is a small object (at least 16 bytes) being handed out.
#[inline(always)]
pub unsafe fn clear(p: *mut u8) {
    // SAFETY: the caller's contract.
    unsafe { p.cast::<usize>().add(1).write(0) };
}
