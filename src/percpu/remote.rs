//! Owner return: a C `free`, on one slab, of an object whose span another slab's refill carved
//! (the span's *home*, `Span::home`) sends the object back to that slab instead of caching it
//! where it was freed.
//!
//! Why: a per-CPU cache adopts whatever is freed on its CPU, so once objects cross CPUs (a
//! thread hands its objects to another, or threads outnumber CPUs and move between them), the
//! live objects of two CPUs end up interleaved in the same cache lines, and every write by one
//! CPU evicts the other's neighbours. Sending objects home keeps each span's objects with one
//! CPU. docs/design.md ("Owner return") has the figures.
//!
//! Owns two kinds of buffer:
//!
//! - **The outbox**, per thread (its per-thread storage, see `storage`): a foreign free appends
//!   (object and class packed as `object | class << 56` — user addresses have 48 bits — and the
//!   home) with plain stores. A full outbox is flushed: for each home among its entries, one
//!   hold of that home's inbox lock appends all of them. What an inbox has no room for goes to
//!   the caller's `rest` (a free where the thread runs, as before owner return). An outbox is
//!   also flushed by `trim`, `stats` and `ctl("flush")` on its own thread and at the thread's
//!   exit.
//! - **The inbox**, per slab (per class of [`HOMED_CLASSES`] a stack of up to [`INBOX`] objects
//!   or [`INBOX_BYTES`] of them, all under one spin lock, mapped at start-up for every slab;
//!   the kernel backs only the pages touched): the slab's allocation slow path moves every class's waiting objects into the
//!   slab's stacks with batch pushes; what does not fit stays for a later slow path (not the
//!   central lists: in bursts of foreign frees that round trip cost `rounds` 28 % of the
//!   objects taken). A class the slow path does not want now (its stack full and unable to
//!   grow for arrivals: at its base maximum, or waiting after a failed steal, see
//!   `Slab::may_take_arrivals`) is not taken out at all: taking its objects out and
//!   putting them back on every slow path was a fifth of that path's samples in bursts of
//!   mixed sizes. Maintenance flushes every inbox to the central lists each tick, and a
//!   drain flushes the inboxes of the slabs it drains.
//!
//! Pointers move, objects are not read: a linked list of objects sent home would cost one
//! cache miss per object in a row when the home walks it.
//!
//! Objects in outboxes and inboxes keep their free tag, so a second free of one still aborts.
//! The inbox lock is a leaf: nothing else is locked while it is held.
//!
//! May call: `arch` (the thread block), `central`, `os`, `size_class`, `sync`.

use crate::arch;
use crate::central;
use crate::os;
use crate::size_class::{size_of, NUM_CLASSES, PAGE};
use crate::sync::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, CachePadded, Ordering, SpinLock};
use core::ptr::null_mut;

/// Classes owner return covers: 1 up to this, exclusive (objects up to 1 KiB). Larger objects
/// span whole cache lines, so their neighbours share little; refills leave their spans
/// without a home.
pub(super) const HOMED_CLASSES: usize = 37;

/// Objects an inbox holds per class.
pub(super) const INBOX: usize = 128;

/// Bytes of objects an inbox holds per class at most (its count limit is this over the class
/// size, between 16 and [`INBOX`]): the small classes, where false sharing is, keep deep
/// stacks; the larger ones hold less memory.
const INBOX_BYTES: usize = 8 << 10;

/// Objects an inbox holds of each class (`INBOX_BYTES` over the class size, between 16 and
/// [`INBOX`]; class 0 holds none): a table, as a flush asks once per entry and a division
/// there cost a fifth of `rounds`' flushes.
const INBOX_LIMIT: [u8; HOMED_CLASSES] = {
    let mut t = [0u8; HOMED_CLASSES];
    let mut c = 1;
    while c < HOMED_CLASSES {
        let n = INBOX_BYTES / crate::size_class::CLASS_SIZE[c] as usize;
        t[c] = if n < 16 {
            16
        } else if n > INBOX {
            INBOX as u8
        } else {
            n as u8
        };
        c += 1;
    }
    t
};

/// Objects an inbox holds of class `c` (`c < HOMED_CLASSES`).
fn inbox_limit(c: usize) -> usize {
    usize::from(INBOX_LIMIT[c])
}

/// Entries an outbox holds.
pub(super) const OUTBOX: usize = 64;

/// Where a packed word keeps the class.
const CLASS_SHIFT: u32 = 56;

/// Packs `obj` and its class `c`.
fn pack(obj: *mut u8, c: usize) -> usize {
    debug_assert!((obj as usize) >> CLASS_SHIFT == 0 && c < NUM_CLASSES);
    obj as usize | c << CLASS_SHIFT
}

/// The object and class of a packed word.
fn unpack(w: usize) -> (*mut u8, usize) {
    ((w & ((1 << CLASS_SHIFT) - 1)) as *mut u8, w >> CLASS_SHIFT)
}

/// One slab's inbox: per class a stack of objects sent home.
#[repr(C)]
struct Inbox {
    lock: SpinLock,
    /// Objects per class: `objs[c][..count[c]]` (under the lock; read without it only as a
    /// hint).
    count: [AtomicU8; HOMED_CLASSES],
    /// Bit `c` set while `count[c]` is not 0 (under the lock; read without it as a hint, so
    /// that a slow path with nothing waiting reads one word, not every count).
    waiting: AtomicU64,
    /// Objects delivered here, and objects this inbox had no room for (statistics; written
    /// under the lock, so a flush pays no atomic read-modify-write for them).
    sent: AtomicUsize,
    declined: AtomicUsize,
    objs: [[AtomicUsize; INBOX]; HOMED_CLASSES],
}

/// A thread's outbox (in its per-thread storage; all-zero is empty).
#[repr(C)]
pub(super) struct Outbox {
    /// Entries in use: `words[..len]`, `homes[..len]`.
    len: usize,
    /// Packed (object, class) words.
    words: [usize; OUTBOX],
    /// The home slab of each entry.
    homes: [u16; OUTBOX],
}

const _: () = {
    assert!(core::mem::size_of::<Outbox>() <= super::storage::STORAGE_BYTES);
    assert!(super::slab::MAX_SLABS <= u16::MAX as usize);
    assert!(NUM_CLASSES <= 128 && HOMED_CLASSES <= NUM_CLASSES && INBOX <= u8::MAX as usize);
    assert!(HOMED_CLASSES <= 64, "`Inbox::waiting` has a bit per class");
    assert!(crate::size_class::CLASS_SIZE[HOMED_CLASSES - 1] == 1024);
};

/// Base of the inboxes, slab after slab (0: not mapped, nothing is sent).
static BASE: AtomicUsize = AtomicUsize::new(0);
/// Slabs the inboxes cover.
static SLABS: AtomicUsize = AtomicUsize::new(0);
/// Objects owner return would have sent home but that were freed where they were, because
/// the freeing thread had no outbox and no memory for one could be had — for the outbox, or
/// for the C library's block that arms the thread's exit (`setup::give_outbox`; statistics).
/// Counted where it happens, a path that has just failed for want of memory.
pub static NO_OUTBOX: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));
/// Owner return is on (`owner_return=on` and the inboxes are mapped).
static ON: AtomicBool = AtomicBool::new(false);
/// Owner return's figures: objects sent home (delivered to an inbox), and objects declined
/// (their home's inbox was full; freed where they were), summed over the inboxes.
pub fn figures() -> (usize, usize) {
    inboxes().fold((0, 0), |(s, d), b| {
        (
            s + b.sent.load(Ordering::Relaxed),
            d + b.declined.load(Ordering::Relaxed),
        )
    })
}

/// Records (under `b`'s lock) whether class `c` has objects waiting in `b`, after its count
/// changed; debug builds then check the whole inbox ([`check`]).
fn set_waiting(b: &Inbox, c: usize, any: bool) {
    let w = b.waiting.load(Ordering::Relaxed);
    let w = if any { w | 1 << c } else { w & !(1 << c) };
    b.waiting.store(w, Ordering::Relaxed);
    if cfg!(debug_assertions) {
        check(b);
    }
}

/// The inbox invariants (under `b`'s lock): every class's count within its limit (class 0
/// holds none), and bit `c` of `waiting` set exactly when class `c` has objects.
fn check(b: &Inbox) {
    let w = b.waiting.load(Ordering::Relaxed);
    for c in 0..HOMED_CLASSES {
        let n = usize::from(b.count[c].load(Ordering::Relaxed));
        assert!(n <= inbox_limit(c), "inbox class {c}: {n} objects");
        assert_eq!(w >> c & 1 == 1, n != 0, "inbox class {c}: waiting bit");
    }
    assert_eq!(
        w >> HOMED_CLASSES,
        0,
        "inbox: waiting bits past the classes"
    );
}

/// The classes with objects waiting in `b` (a hint read without the lock), in class order.
fn waiting(b: &Inbox) -> impl Iterator<Item = usize> {
    let mut w = b.waiting.load(Ordering::Relaxed);
    core::iter::from_fn(move || {
        (w != 0).then(|| {
            let c = w.trailing_zeros() as usize;
            w &= w - 1;
            c
        })
    })
}

/// Adds `n` to a statistics counter written only under its inbox's lock.
fn bump(counter: &AtomicUsize, n: usize) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// Maps the inboxes of `n` slabs when `on` (all-zero: unlocked and empty). Without them
/// owner return is off: refills give spans no home and nothing is sent.
pub(super) fn init(n: usize, on: bool) {
    if !on || n == 0 {
        return;
    }
    let bytes = (n * core::mem::size_of::<Inbox>()).next_multiple_of(PAGE);
    if let Ok(p) = os::map(bytes, PAGE) {
        SLABS.store(n, Ordering::Relaxed);
        BASE.store(p as usize, Ordering::Release);
        ON.store(true, Ordering::Release);
    }
}

/// Whether owner return is on.
pub(super) fn is_on() -> bool {
    ON.load(Ordering::Acquire)
}

/// Whether refills of rseq-mode slabs give the spans of class `c` they carve a home.
pub(super) fn homes(c: usize) -> bool {
    c < HOMED_CLASSES && is_on()
}

/// Slab `slab`'s inbox, if mapped and `slab` is covered.
fn inbox(slab: usize) -> Option<&'static Inbox> {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 || slab >= SLABS.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: inside the mapping made by `init`, never unmapped; all-zero is a valid inbox.
    Some(unsafe { &*((base + slab * core::mem::size_of::<Inbox>()) as *const Inbox) })
}

/// The calling thread's outbox, if it has one.
fn outbox() -> Option<&'static mut Outbox> {
    let b = arch::thread_block();
    // SAFETY: the calling thread's own block; `outbox` is null or its storage (see `storage`),
    // large and aligned enough (checked above), touched only by this thread.
    unsafe { (*b).outbox.cast::<Outbox>().as_mut() }
}

/// Appends `obj` (class `c`, tagged free, nobody's) to the calling thread's outbox for slab
/// `home`; a full outbox is flushed first ([`flush_outbox`], `rest` taking what no inbox has
/// room for). False (nothing done) when the thread has no outbox.
pub(super) fn send(c: usize, obj: *mut u8, home: u32, rest: impl FnMut(usize, *mut u8)) -> bool {
    let Some(out) = outbox() else {
        return false;
    };
    if out.len == OUTBOX {
        flush(out, rest);
    }
    put(out, c, obj, home);
    true
}

/// [`send`] without the flush: appends `obj` (class `c`, tagged free, nobody's) to the calling
/// thread's outbox for slab `home`. False (nothing done) when the thread has no outbox or it
/// is full.
#[inline(always)]
pub(super) fn append(c: usize, obj: *mut u8, home: u32) -> bool {
    let Some(out) = outbox() else {
        return false;
    };
    // Only a thread that runs the critical sections has an outbox (`percpu::send_home`).
    // SAFETY: the calling thread's own block.
    debug_assert!(unsafe { (*arch::thread_block()).state } == arch::ThreadState::Rseq);
    if out.len == OUTBOX {
        return false;
    }
    put(out, c, obj, home);
    true
}

/// One entry into `out`, which has room.
#[inline(always)]
fn put(out: &mut Outbox, c: usize, obj: *mut u8, home: u32) {
    let n = out.len;
    debug_assert!(n < OUTBOX);
    out.words[n] = pack(obj, c);
    out.homes[n] = home as u16;
    out.len = n + 1;
}

/// Sends everything in the calling thread's outbox home; what no inbox has room for goes to
/// the central lists (`trim`, `stats`, `ctl("flush")`, the thread's exit).
pub(super) fn flush_outbox() {
    if let Some(out) = outbox() {
        flush(out, |c, obj| {
            // SAFETY: a free object of class `c` (tagged), the outbox's until now.
            unsafe { central::free_batch(c, &[obj]) }
        });
    }
}

/// [`flush_outbox`] of `out`: one inbox lock hold per home among the entries. `rest` runs last,
/// with the outbox already empty and no inbox lock held, so it may push and free; it must not
/// send or flush (`out` is still borrowed: a second reference to the outbox would alias it).
fn flush(out: &mut Outbox, mut rest: impl FnMut(usize, *mut u8)) {
    let mut n = out.len;
    let mut declined = [0usize; OUTBOX];
    let mut left = 0;
    while n > 0 {
        // Entries for `home` go to its inbox; the others move to the front for the next round.
        let home = out.homes[0];
        let b = inbox(home as usize);
        // Homes are slabs, and every slab has an inbox while owner return is on.
        debug_assert!(
            b.is_some(),
            "an outbox entry for slab {home}, which has no inbox"
        );
        if let Some(b) = b {
            b.lock.lock();
        }
        let (mut kept, before) = (0, left);
        for i in 0..n {
            let (w, h) = (out.words[i], out.homes[i]);
            if h != home {
                (out.words[kept], out.homes[kept]) = (w, h);
                kept += 1;
                continue;
            }
            let (obj, c) = unpack(w);
            match b {
                Some(b)
                    if c < HOMED_CLASSES
                        && usize::from(b.count[c].load(Ordering::Relaxed)) < inbox_limit(c) =>
                {
                    let k = b.count[c].load(Ordering::Relaxed);
                    b.objs[c][usize::from(k)].store(obj as usize, Ordering::Relaxed);
                    b.count[c].store(k + 1, Ordering::Relaxed);
                    set_waiting(b, c, true);
                }
                _ => {
                    declined[left] = w;
                    left += 1;
                }
            }
        }
        if let Some(b) = b {
            bump(&b.sent, n - kept - (left - before));
            bump(&b.declined, left - before);
            b.lock.unlock();
        }
        n = kept;
    }
    out.len = 0;
    for &w in &declined[..left] {
        let (obj, c) = unpack(w);
        rest(c, obj);
    }
}

/// Moves what other slabs sent home to slab `id` into its stacks: for each class with objects
/// waiting that is `wanted`, `put` caches a prefix of them and says how many; the others go
/// back to the inbox (to the central lists if it filled up meanwhile). Classes not wanted stay
/// in the inbox untouched. Returns how many were cached.
pub(super) fn take(
    id: usize,
    wanted: impl Fn(usize) -> bool,
    mut put: impl FnMut(usize, &[*mut u8]) -> usize,
) -> usize {
    let Some(b) = inbox(id) else {
        return 0;
    };
    let mut total = 0;
    empty_each(b, wanted, |c, objs| {
        let k = put(c, objs);
        total += k;
        if k < objs.len() {
            give_back(b, id, c, &objs[k..]);
        }
    });
    total
}

/// Empties every `wanted` class of `b` with objects waiting, one at a time ([`take_class`]),
/// and hands each class's objects to `f` (with the lock released); the other classes keep
/// theirs.
fn empty_each(b: &Inbox, wanted: impl Fn(usize) -> bool, mut f: impl FnMut(usize, &[*mut u8])) {
    // Every refill of an rseq-mode slab asks, and most find nothing: the buffer's 1 KiB is
    // zeroed only when some wanted class waits (it was 1.4-1.7 % of the samples of a burst of
    // mixed sizes past the per-CPU caches, in `memset`).
    let mut classes = waiting(b).filter(|&c| wanted(c)).peekable();
    if classes.peek().is_none() {
        return;
    }
    let mut objs = [null_mut(); INBOX];
    for c in classes {
        let n = take_class(b, c, &mut objs);
        if n != 0 {
            f(c, &objs[..n]);
        }
    }
}

/// Empties `b`'s stack of class `c` into `out`; returns how many.
fn take_class(b: &Inbox, c: usize, out: &mut [*mut u8; INBOX]) -> usize {
    b.lock.lock();
    let n = b.count[c].load(Ordering::Relaxed) as usize;
    for (o, w) in out[..n].iter_mut().zip(&b.objs[c]) {
        *o = w.load(Ordering::Relaxed) as *mut u8;
    }
    b.count[c].store(0, Ordering::Relaxed);
    set_waiting(b, c, false);
    b.lock.unlock();
    n
}

/// Puts `objs` (class `c`, taken from `b`, slab `id`'s inbox) back into `b`; what no longer
/// fits goes to the central list (slab `id`'s transfer stack shard, then the spans).
fn give_back(b: &Inbox, id: usize, c: usize, objs: &[*mut u8]) {
    b.lock.lock();
    let n = b.count[c].load(Ordering::Relaxed) as usize;
    let k = objs.len().min(inbox_limit(c).saturating_sub(n));
    for (i, &o) in objs[..k].iter().enumerate() {
        b.objs[c][n + i].store(o as usize, Ordering::Relaxed);
    }
    b.count[c].store((n + k) as u8, Ordering::Relaxed);
    set_waiting(b, c, n + k != 0);
    b.lock.unlock();
    if k < objs.len() {
        // SAFETY: free objects of class `c` (tagged), ours since they left the inbox.
        unsafe { central::free_batch_from(c, &objs[k..], id) };
    }
}

/// Gives slab `id`'s inbox to the central lists; returns the bytes moved.
pub(super) fn flush_slab(id: usize) -> usize {
    let Some(b) = inbox(id) else {
        return 0;
    };
    let mut bytes = 0;
    empty_each(
        b,
        |_| true,
        |c, objs| {
            // SAFETY: free objects of class `c` (tagged), ours since they left the inbox.
            unsafe { central::free_batch_from(c, objs, id) };
            bytes += objs.len() * size_of(c);
        },
    );
    bytes
}

/// [`flush_slab`] for every slab; returns the bytes moved.
pub(super) fn flush_all() -> usize {
    (0..SLABS.load(Ordering::Relaxed)).map(flush_slab).sum()
}

/// Every mapped inbox, in slab order.
fn inboxes() -> impl Iterator<Item = &'static Inbox> {
    (0..SLABS.load(Ordering::Relaxed)).filter_map(inbox)
}

/// Objects of class `c` in the inboxes (a racy snapshot, for statistics).
pub(super) fn queued(c: usize) -> usize {
    if c >= HOMED_CLASSES {
        return 0;
    }
    inboxes()
        .map(|b| b.count[c].load(Ordering::Relaxed) as usize)
        .sum()
}

/// Fork's prepare: takes every inbox lock (leaves, so any point of prepare's order will do).
pub(super) fn lock_all() {
    for b in inboxes() {
        b.lock.lock();
    }
}

/// Fork's parent and child: releases what [`lock_all`] took (in the child, resets the words).
///
/// # Safety
/// Only after [`lock_all`] in the same fork; `child` says which side we are on.
pub(super) unsafe fn unlock_all(child: bool) {
    for b in inboxes() {
        if child {
            // SAFETY: taken by `lock_all` in this fork (forwarded contract); the child is
            // single-threaded.
            unsafe { b.lock.reset_in_child() };
        } else {
            b.lock.unlock();
        }
    }
}

/// Tests: appends `objs` to class `c` of `b`, as a flush delivers them; false (nothing done)
/// when the class has no room for them all.
#[cfg(test)]
fn deliver_to(b: &Inbox, c: usize, objs: &[*mut u8]) -> bool {
    b.lock.lock();
    let n = usize::from(b.count[c].load(Ordering::Relaxed));
    let room = n + objs.len() <= inbox_limit(c);
    if room {
        for (i, &o) in objs.iter().enumerate() {
            b.objs[c][n + i].store(o as usize, Ordering::Relaxed);
        }
        b.count[c].store((n + objs.len()) as u8, Ordering::Relaxed);
        set_waiting(b, c, true);
    }
    b.lock.unlock();
    room
}

/// Tests: appends `objs` (free objects of class `c`, tagged) to slab `id`'s inbox, as a flush
/// delivers them; false (nothing done) when the slab has no inbox or the class no room.
#[cfg(all(test, target_arch = "x86_64"))]
pub(super) fn deliver(id: usize, c: usize, objs: &[*mut u8]) -> bool {
    c < HOMED_CLASSES && inbox(id).is_some_and(|b| deliver_to(b, c, objs))
}

/// Tests: objects of class `c` waiting in slab `id`'s inbox.
#[cfg(all(test, target_arch = "x86_64"))]
pub(super) fn queued_on(id: usize, c: usize) -> usize {
    inbox(id).map_or(0, |b| usize::from(b.count[c].load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// An all-zero (empty, unlocked) inbox of the test's own, outside the mapped ones.
    fn private_inbox() -> &'static Inbox {
        let bytes = core::mem::size_of::<Inbox>().next_multiple_of(PAGE);
        let p = os::map(bytes, PAGE).unwrap();
        // SAFETY: a fresh zeroed mapping, never unmapped, large and aligned enough; all-zero
        // is a valid inbox.
        unsafe { &*(p as *const Inbox) }
    }

    /// Only the wanted classes are taken out; the others keep their objects, in order, and
    /// stay marked waiting. (Pointers move, objects are not read: these are never touched.)
    #[test]
    fn classes_not_wanted_stay_in_the_inbox() {
        let b = private_inbox();
        let fake = |k: usize| (0x10_0000 + 64 * k) as *mut u8;
        let (kept, taken) = (3, 5);
        assert!(deliver_to(b, kept, &[fake(1), fake(2)]));
        assert!(deliver_to(b, taken, &[fake(3)]));
        let mut seen = Vec::new();
        empty_each(b, |c| c == taken, |c, objs| seen.push((c, objs.to_vec())));
        assert_eq!(seen, [(taken, std::vec![fake(3)])]);
        assert_eq!(waiting(b).collect::<Vec<_>>(), [kept]);
        let mut rest = Vec::new();
        empty_each(b, |_| true, |c, objs| rest.push((c, objs.to_vec())));
        assert_eq!(rest, [(kept, std::vec![fake(1), fake(2)])]);
        assert_eq!(waiting(b).count(), 0);
    }
}
