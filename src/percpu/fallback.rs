//! The fallback: fallback mode's operations on the slabs under their locks, and the per-thread
//! magazines in front of them.
//!
//! Without rseq (`rseq=off`, an old kernel, seccomp, valgrind, or an architecture without
//! critical sections) the fast path's sign test sends every operation to the slow path, which
//! for a thread in the `Locked` state comes here: the same slabs as the rseq modes, each
//! operation under the slab's fallback lock ([`Slab::lock`]), on the slab of the CPU the
//! thread last ran on (a hint: any slab is correct under its lock). In front of the classes up
//! to 1 KiB sits a per-thread magazine ([`Magazines`]), so most operations take no lock at all.
//! The two protocols never mix: the mode is chosen once per process.
//!
//! Owns: the magazines, the thread's CPU hint, the locked pushes and pops.
//!
//! May call: `arch` (the thread block, the CPU number), `central`, `free_tag`, `size_class`,
//! `sync`, and in this folder `drain` (a slab whose free slots ran out), `maintenance` (a tick
//! on the paths that reach the central lists), `slab`, `state`, `storage`.

use super::drain::grow_or_relayout;
use super::maintenance;
use super::owned;
use super::slab::{ensure_slab, overflow_take, refill, Slab};
use super::state::G;
use super::storage::{drop_storage, new_storage, STORAGE_BYTES};
use crate::arch::{self, OwnedPop, ThreadBlock};
use crate::central;
use crate::size_class::{class_of, CLASS_SIZE};
use crate::sync::Ordering;
use core::ptr::null_mut;

/// Operations between two reads of the CPU number in fallback mode.
const CPU_HINT_OPS: u32 = 64;

/// The slab a fallback-mode thread uses: the CPU it ran on when it last asked (re-read every
/// [`CPU_HINT_OPS`] operations, `rdpid` costing more than the lock). Any slab is correct under
/// its lock; the hint only keeps a thread on its own CPU's slab most of the time.
#[inline]
pub(super) fn locked_slab() -> Slab {
    let b = arch::thread_block();
    // SAFETY: the calling thread's own block; only this thread touches these fields.
    unsafe {
        if (*b).hint_left == 0 {
            let n = G.nslabs.load(Ordering::Relaxed);
            let mut i = arch::current_cpu();
            if i >= n {
                i %= n;
            }
            ensure_slab(i);
            (*b).cpu_hint = i as u32;
            (*b).hint_left = CPU_HINT_OPS;
        }
        (*b).hint_left -= 1;
        Slab::of((*b).cpu_hint as usize)
    }
}

/// [`locked_slab`] with the CPU number read now (a slow path's: it costs more than the lock,
/// nothing beside a refill).
fn current_slab() -> Slab {
    // SAFETY: the calling thread's own block; only this thread touches these fields.
    unsafe { (*arch::thread_block()).hint_left = 0 };
    locked_slab()
}

pub(super) fn alloc_locked(c: usize) -> *mut u8 {
    let p = alloc_from_magazine(c);
    if !p.is_null() {
        return p;
    }
    let mag = magazine(c);
    let slab = locked_slab();
    slab.lock();
    let n = slab.count(c);
    if n > 0 {
        // One object for the caller and, for stocked magazine classes, up to half a magazine
        // more, so the next allocations need no lock (a recycling class's magazine holds only
        // what the thread frees, see `RECYCLE_FROM`).
        let more = match &mag {
            Some(m) if c < RECYCLE_FROM => (n - 1).min(m.slots.len() / 2),
            _ => 0,
        };
        let obj = slab.slot(c, n - 1).load(Ordering::Relaxed) as *mut u8;
        if let Some(m) = mag {
            // The magazine pops its slots from the last: filled in reverse, it hands them out
            // in the slab's pop order (ascending addresses after a refill, `slab::refill`;
            // frees leave the stack in last-freed-first order).
            for k in 0..more {
                m.slots[more - 1 - k] = slab.slot(c, n - 2 - k).load(Ordering::Relaxed) as *mut u8;
            }
            *m.count = more as u8;
        }
        slab.set_count(c, n - 1 - more);
        slab.unlock();
        return obj;
    }
    slab.unlock();
    maintenance::maybe_tick();
    if let Some(id) = slab.index() {
        super::sweep_if_freed(id);
    }
    grow_or_relayout(slab, c, false);
    refill(c, slab, |c, objs| locked_push_many(slab, c, objs))
}

/// Fallback mode's C allocation of a class owned spans serve (`owned::routes`), once the fast
/// path's owned pop failed (every section fails in this mode): the thread's magazine (what a
/// Rust free or a push no slab took left there), then, under one hold of its slab's lock, the
/// stack and the current owned span's list (`owned::sec::pop_held`); then the owned refill
/// (`refill_owned`, as the rseq modes' slow path runs it, its sections under the slab's lock),
/// and, failing that, the stack path ([`alloc_locked`]).
pub(super) fn alloc_owned_locked(c: usize) -> *mut u8 {
    let p = alloc_from_magazine(c);
    if !p.is_null() {
        return p;
    }
    let slab = locked_slab();
    slab.lock();
    let n = slab.count(c);
    if n > 0 {
        let obj = slab.slot(c, n - 1).load(Ordering::Relaxed) as *mut u8;
        slab.set_count(c, n - 1);
        slab.unlock();
        return obj;
    }
    // SAFETY: we hold the slab's lock.
    let popped = unsafe { owned::sec::pop_held(slab, c) };
    slab.unlock();
    match popped {
        OwnedPop::Object(p) => return p,
        OwnedPop::Corrupt(p) => owned::corrupt(p),
        OwnedPop::Fail | OwnedPop::Stacked => {}
    }
    maintenance::maybe_tick();
    // The refill takes spans for the slab of the CPU the thread runs on now, not the hint's
    // (up to `CPU_HINT_OPS` operations old): a thread that moved would otherwise own spans on
    // the slab it left, and its frees there, declined on its new slab, went onto stacks.
    if let Some(id) = current_slab().index() {
        super::sweep_if_freed(id);
        if !central::has_transfer(c) {
            let p = super::refill_owned(c, id);
            if !p.is_null() {
                return p;
            }
        }
    }
    alloc_locked(c)
}

/// Fallback mode's C free of an object of a class owned spans serve, tagged free, once the fast
/// path's owned push declined it (as every section does in this mode): onto its span's owned
/// list, under the slab's lock, when the thread's slab owns the span (`owned::push_locked`),
/// as the rseq modes' push takes it only on the owner's CPU. False (nothing done) in the rseq
/// modes, and when another slab or none owns the span, or the slab is draining: the caller
/// then frees it as any C free (onto this slab's stack, whence the central lists give it back
/// to its span, which tells the owner: `central::owned_freed`). Pushed onto the owner's list
/// from any CPU, the objects a thread frees of what another CPU's thread allocated stayed on
/// that slab's partly used spans while this slab took fresh ones (1.85x `active` in
/// `tests/percpu_bound.rs`' `memory_freed_on_another_cpu_is_reused_there_while_its_owner_stays`).
///
/// # Safety
/// `obj` is a free object, tagged free with the free tag's key, of span `span` (the record its
/// page-map entry names), and nobody uses it.
pub unsafe fn free_owned_locked(obj: *mut u8, span: *mut crate::span::Span) -> bool {
    if !owned::locked() {
        return false;
    }
    let Some(id) = locked_slab().index() else {
        return false;
    };
    // SAFETY: forwarded contract.
    unsafe { owned::push_locked(obj, span, id) }
}

/// # Safety
/// As for [`free_slow`](super::free_slow).
pub(super) unsafe fn free_locked(c: usize, obj: *mut u8) {
    // SAFETY: forwarded contract.
    if unsafe { free_to_magazine(c, obj) } {
        return;
    }
    if let Some(m) = magazine(c).filter(|_| c < RECYCLE_FROM) {
        // Full: the older half goes to the slab (or past it, to the central list) in one go.
        let cap = m.slots.len();
        let half = cap / 2;
        // SAFETY: free objects of class `c` from the magazine, now handed on.
        unsafe { put_locked(c, &m.slots[..half]) };
        m.slots.copy_within(half.., 0);
        m.slots[cap - half] = obj;
        *m.count = (cap - half + 1) as u8;
        return;
    }
    // SAFETY: forwarded contract.
    unsafe { put_locked(c, &[obj]) }
}

/// Fallback mode's quickest free: into the calling thread's magazine when it has room. False
/// (nothing done) in any other case, which [`free_slow`](super::free_slow) handles.
///
/// # Safety
/// As for [`free_slow`](super::free_slow).
#[inline]
pub unsafe fn free_to_magazine(c: usize, obj: *mut u8) -> bool {
    // Only a thread in the locked state has magazines (set up with it, dropped at its exit).
    // A recycling class takes the object only if it is the class the thread allocated last.
    match magazine(c) {
        Some(m)
            if (*m.count as usize) < m.slots.len() && (c < RECYCLE_FROM || *m.last == c as u8) =>
        {
            m.slots[*m.count as usize] = obj;
            *m.count += 1;
            true
        }
        _ => false,
    }
}

/// Fallback mode's quickest allocation: from the calling thread's magazine; null (nothing
/// done) in any other case, which [`alloc_slow`](super::alloc_slow) handles.
#[inline]
pub fn alloc_from_magazine(c: usize) -> *mut u8 {
    let Some(m) = magazine(c) else {
        return null_mut();
    };
    *m.last = c as u8;
    if *m.count == 0 {
        return null_mut();
    }
    *m.count -= 1;
    // SAFETY: `count <= cap` (the invariant of `Magazines`), so `count - 1` is a slot.
    unsafe { *m.slots.get_unchecked(*m.count as usize) }
}

/// Classes (1 up to this, exclusive) a fallback-mode thread keeps a magazine for: every class
/// up to 1 KiB.
const MAG_CLASSES: usize = class_of(1024) + 1;

/// The first class (384 bytes) whose magazine only *recycles*: it takes a freed object only
/// when its class is the one the thread allocated last (`Magazines::last`), and a refill puts
/// nothing in it. So it serves a thread that allocates and frees one object at a time — a
/// program mixing sizes, which took the slab lock on each operation of these classes — but a
/// thread's burst of frees, after which it may sit idle, adds objects to at most one of these
/// magazines (beside at most two a class left from earlier one-at-a-time pairs, 17,280 bytes
/// in all): each object a magazine holds keeps its span from going back to the page heap,
/// and stocked magazines for these classes held about 45 KiB more resident per class after a
/// freed GiB (docs/benchmarks.md, "Session 36").
const RECYCLE_FROM: usize = class_of(353);

/// Objects class `c`'s magazine holds: 8 up to 352 bytes (stocked: refills fill half of it),
/// 2 for the recycling classes up to 1 KiB; at most [`MAG_BOUND_BYTES`] in all.
const fn mag_cap(c: usize) -> usize {
    if c == 0 {
        0
    } else if c < RECYCLE_FROM {
        8
    } else {
        2
    }
}

/// Where class `c`'s slots start in [`Magazines::slots`] (the caps of the classes before it).
const MAG_START: [u16; MAG_CLASSES + 1] = {
    let mut t = [0u16; MAG_CLASSES + 1];
    let mut c = 1;
    while c <= MAG_CLASSES {
        t[c] = t[c - 1] + mag_cap(c - 1) as u16;
        c += 1;
    }
    t
};

/// [`mag_cap`] as a table (a free compares a magazine's count with it). Not derived from
/// `MAG_START`'s neighbouring entries: that took two loads and a subtraction on every magazine
/// operation, and small classes' pairs 1.07x the time (docs/benchmarks.md, "Session 36").
const MAG_CAP: [u8; MAG_CLASSES] = {
    let mut t = [0u8; MAG_CLASSES];
    let mut c = 0;
    while c < MAG_CLASSES {
        t[c] = mag_cap(c) as u8;
        c += 1;
    }
    t
};

/// Slots of all magazines together.
const MAG_SLOTS: usize = MAG_START[MAG_CLASSES] as usize;

/// The most object bytes one thread's magazines hold (every magazine full): 45,440.
const MAG_BOUND_BYTES: usize = {
    let mut b = 0;
    let mut c = 1;
    while c < MAG_CLASSES {
        b += mag_cap(c) * CLASS_SIZE[c] as usize;
        c += 1;
    }
    b
};

/// Fallback mode's per-thread magazines: one tiny stack per class in front of the slab lock.
/// Without rseq every slab operation costs a locked instruction; the magazine serves most
/// small operations with plain loads and stores, and a stocked class's takes the lock once per
/// half magazine (docs/design.md, "Fallback", has the figures). Bounded: at most [`mag_cap`]
/// objects of each class up to 1 KiB, [`MAG_BOUND_BYTES`] in all, per thread, handed back at
/// thread exit and by `trim` and `stats` on the calling thread; objects in other threads'
/// magazines count as in use in statistics.
///
/// Invariant: `count[c] <= mag_cap(c)`, and `slots[MAG_START[c]..][..count[c]]` are free
/// objects of class `c` that only this magazine holds. All-zero is the empty set.
///
/// The storage is the thread's per-thread storage object (`storage`), taken at the thread's
/// set-up and given back at its exit.
#[repr(C)]
struct Magazines {
    /// Objects in each class's magazine.
    count: [u8; MAG_CLASSES],
    /// The class of the thread's last allocation of a magazine class (0 before the first),
    /// written by every [`alloc_from_magazine`]: a recycling class's magazine takes frees of
    /// this class only.
    last: u8,
    /// Every class's slots, class `c`'s at `MAG_START[c]`, the oldest first.
    slots: [*mut u8; MAG_SLOTS],
}

const _: () = assert!(core::mem::size_of::<Magazines>() <= STORAGE_BYTES);
// The bound the docs state (docs/design.md, "Fallback"): change both together.
const _: () = assert!(MAG_BOUND_BYTES == 45_440 && MAG_CLASSES <= u8::MAX as usize);

/// One class's magazine: its slots (as many as it may hold), its count, and the thread's
/// [`Magazines::last`].
struct Mag {
    slots: &'static mut [*mut u8],
    count: &'static mut u8,
    last: &'static mut u8,
}

/// A fresh, empty set of magazines; null if memory ran out (the thread then works without one).
pub(super) fn new_magazine() -> *mut u8 {
    // All-zero is an empty magazine (counts 0, `last` 0: no class, slots null).
    new_storage()
}

/// Gives the thread's (already flushed) magazine storage back.
///
/// # Safety
/// `b` is the calling thread's block and its magazines are empty.
pub(super) unsafe fn drop_magazine(b: *mut ThreadBlock) {
    // SAFETY: forwarded contract; the storage came from `new_magazine`.
    unsafe {
        let m = core::mem::replace(&mut (*b).magazine, null_mut());
        if !m.is_null() {
            drop_storage(m);
        }
    }
}

/// The calling thread's magazine for class `c`, if it has magazines and `c` has one.
#[inline]
fn magazine(c: usize) -> Option<Mag> {
    let b = arch::thread_block();
    // SAFETY: the calling thread's own block.
    let m = unsafe { (*b).magazine };
    if c >= MAG_CLASSES || m.is_null() {
        return None;
    }
    let m = m.cast::<Magazines>();
    let (start, cap) = (MAG_START[c] as usize, MAG_CAP[c] as usize);
    // SAFETY: the storage is this thread's own (from `new_magazine`), large enough (the
    // assertion after `Magazines`) and 16-byte aligned (`new_storage`); only this thread
    // touches it, class `c`'s slots and count are disjoint from every other class's, and no two
    // `Mag`s are live at once (each holds the shared `last` byte): every caller drops one before
    // it takes another.
    unsafe {
        let slots = (&raw mut (*m).slots).cast::<*mut u8>().add(start);
        let slots = core::slice::from_raw_parts_mut(slots, cap);
        let count = &mut *(&raw mut (*m).count).cast::<u8>().add(c);
        let last = &mut (*m).last;
        debug_assert!(
            *count as usize <= slots.len(),
            "magazine {c} holds {count} objects"
        );
        Some(Mag { slots, count, last })
    }
}

/// Fallback mode: hands the calling thread's magazines back to its slab (a no-op for a thread
/// without magazines: `magazine` finds none).
pub fn flush_own_magazine() {
    for c in 1..MAG_CLASSES {
        if let Some(m) = magazine(c) {
            let n = *m.count as usize;
            *m.count = 0;
            // SAFETY: free objects of class `c` that were the magazine's.
            unsafe { put_locked(c, &m.slots[..n]) };
        }
    }
}

/// Puts free objects of class `c` into the calling thread's slab under its lock; what does
/// not fit (after trying to grow the capacity) goes to the central list with about half the
/// stack, so the next frees find room.
///
/// # Safety
/// The objects are free objects of class `c` that nobody uses any more.
unsafe fn put_locked(c: usize, objs: &[*mut u8]) {
    if objs.is_empty() {
        return;
    }
    let slab = locked_slab();
    let mut done = locked_push_many(slab, c, objs);
    if done < objs.len() && grow_or_relayout(slab, c, true) {
        done += locked_push_many(slab, c, &objs[done..]);
    }
    let rest = &objs[done..];
    let Some(&obj) = rest.first() else { return };
    maintenance::maybe_tick();
    if let Some(id) = slab.index() {
        super::sweep_if_freed(id);
    }
    let mut buf = [null_mut(); 32];
    slab.lock();
    let n = slab.count(c);
    buf[0] = obj;
    let take = (overflow_take(slab, c) - 1).min(n);
    for (k, b) in buf[1..=take].iter_mut().enumerate() {
        *b = slab.slot(c, n - 1 - k).load(Ordering::Relaxed) as *mut u8;
    }
    slab.set_count(c, n - take);
    slab.unlock();
    let near = slab.index().unwrap_or(0);
    // SAFETY: all are free objects of class `c`, now ours (the forwarded contract for `rest`).
    unsafe {
        central::free_batch_from(c, &buf[..=take], near);
        central::free_batch_from(c, &rest[1..], near);
    }
}

/// Pushes as many of `objs` as fit on class `c`'s stack of `slab`, under one hold of the slab
/// lock; returns how many (a prefix of `objs`).
pub(super) fn locked_push_many(slab: Slab, c: usize, objs: &[*mut u8]) -> usize {
    slab.lock();
    let n = slab.count(c);
    let k = slab.cap(c).saturating_sub(n).min(objs.len());
    for (j, &obj) in objs[..k].iter().enumerate() {
        slab.slot(c, n + j).store(obj as usize, Ordering::Relaxed);
    }
    slab.set_count(c, n + k);
    slab.unlock();
    k
}
