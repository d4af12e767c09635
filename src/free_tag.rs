//! The free tag: how a small object says "I am free", and the encoded links of span free lists.
//!
//! Owns: the per-process random key, the tag every free small object carries in its second
//! word, and the encoding of the link in the first word of an object on a span's free list.
//!
//! ## The representation of a small object's state (decided once, used by every path)
//! - **Free** (in a per-CPU cache, a magazine, a transfer stack or a span's free list): its
//!   second word holds `tag(addr) = key ^ addr`. Every path that takes an object back writes it:
//!   a C `free`, a span's carving (all objects starting in a half page are carved at once, tagged,
//!   onto the span's free list), and linking into a span's free list.
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
//! A span's free list links through the first word, stored as `next ^ key ^ addr` (null as
//! `key ^ addr`). A pop checks the object's tag and that the decoded link is null or an object
//! boundary inside the same span (whose own tag the next pop checks before the batch is
//! handed out), so a write past the end of a live block into the free object after it (the
//! usual heap overflow) is reported as a corrupted block instead of sending the allocator to
//! a wild pointer or handing out a misaligned block.
//!
//! May call: `os`, `size_class`, `sync`.

use crate::os;
use crate::sync::{AtomicUsize, Ordering};

static KEY: AtomicUsize = AtomicUsize::new(0);

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

#[cold]
#[inline(never)]
fn init_key() {
    let fresh = os::random_u64() as usize | 1;
    let _ = KEY.compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed);
}

/// The value a free object at `addr` carries in its second word.
#[inline(always)]
pub fn tag(addr: usize) -> usize {
    key() ^ addr
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
/// carries its free tag, else writes the tag and returns true.
///
/// Loads the key once ([`key`] says why it is visible: the caller's page-map load).
///
/// # Safety
/// `p` is a small object (at least 16 bytes) whose page-map entry the caller has loaded
/// (acquire) and checked; nobody uses it any more unless it is already free.
#[inline(always)]
pub unsafe fn mark_free(p: *mut u8) -> bool {
    let t = tag(p as usize);
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
    unsafe { p.cast::<usize>().add(1).write(tag(p as usize)) };
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

/// Links the free object at `p` to `next` (null ends the list) and tags it.
///
/// # Safety
/// `p` is a small object that nobody uses any more.
#[inline]
pub unsafe fn link(p: *mut u8, next: *mut u8) {
    let t = tag(p as usize);
    // SAFETY: the caller's contract: both words are inside the object.
    unsafe {
        p.cast::<usize>().write(next as usize ^ t);
        p.cast::<usize>().add(1).write(t);
    }
}

/// The link of `p`, a member of a span's free list (class `c`, objects in `[lo, hi)`),
/// checked: `p` must carry its tag, and the decoded next object must be null or an object
/// boundary of the class in `[lo, hi - 16]`, so that reading its two words stays inside the
/// span. Aborts with one line naming the corrupted block otherwise.
///
/// The next object's own tag is not read here: it is checked when that object is popped in
/// turn (every pop checks the popped object's tag before the batch it joins is handed out), so
/// a link written over with the start of a live object still aborts before anything is handed
/// out, one pop later. Reading it here as well cost a span pop about 0.5 ns. The boundary test
/// stays: a tag does not name its class, and a page reused for another class keeps the tags
/// of its old objects, so a link into the middle of an object there can find one.
///
/// # Safety
/// `p` is readable for 16 bytes (inside a live small span of class `c`, within
/// `[lo, hi - 16]`), and `hi - lo` is at least 16.
#[inline]
pub unsafe fn next_checked(p: *mut u8, lo: usize, hi: usize, c: usize) -> *mut u8 {
    // SAFETY: the caller's contract.
    let (next, tagged) = unsafe { peek_next(p) };
    if !tagged {
        corrupted(p);
    }
    let next = next as usize;
    if next == 0 {
        return core::ptr::null_mut();
    }
    // One unsigned comparison for both ends of the range; `starts_object`: one
    // multiplication, where `%` by the run-time size was a division per object.
    let off = next.wrapping_sub(lo);
    if off > hi - lo - 16 || !crate::size_class::starts_object(off, c) {
        corrupted(p);
    }
    next as *mut u8
}

/// The decoded link of `p`, a member of a span's free list, and whether `p` carries its tag —
/// unchecked otherwise (for invariant checks that report instead of aborting).
///
/// # Safety
/// `p` is readable for 16 bytes.
#[inline]
pub unsafe fn peek_next(p: *mut u8) -> (*mut u8, bool) {
    let t = tag(p as usize);
    // SAFETY: the caller's contract.
    let (w0, w1) = unsafe { (p.cast::<usize>().read(), p.cast::<usize>().add(1).read()) };
    ((w0 ^ t) as *mut u8, w1 == t)
}

#[cold]
#[inline(never)]
fn corrupted(p: *mut u8) -> ! {
    let mut m = os::Msg::new();
    m.str("malloc(): corrupted free block ")
        .hex(p as u64)
        .str(" (written after free, or past the end of the block before it)");
    os::abort_with(&m)
}
