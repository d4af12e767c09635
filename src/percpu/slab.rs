//! The slabs: their layout, their capacity policy, the slab-wide locks, and the figures read
//! from them.
//!
//! Owns: the slab region's layout — one slab of `1 << SLAB_SHIFT` bytes per possible CPU or
//! concurrency id, mapped once (the kernel commits a slab's pages only where touched, so memory
//! follows the ids that actually run). Block 0 of a slab is its [`SlabHeader`]; class `c`'s
//! block, a [`ClassBlock`] (`count`, `cap`, `floor`, the slots), is at byte
//! `c << BLOCK_SHIFT`, so the critical sections need no per-class table. The class block's
//! layout is defined in `arch`, beside the assembly that reads it; this file checks that every
//! class's capacity fits its slots.
//!
//! Also owns each slab's readiness, capacities and two locks: the fallback lock (each
//! fallback-mode operation, a fallback-mode drain, fork) and the capacity lock (growth, and a
//! drain from its stop to its restart).
//!
//! ## Capacity policy
//!
//! A class starts with about 8 KiB worth of objects ([`initial_cap`]), so a class a program
//! touches once holds little. A refill that finds its stack empty doubles the capacity while
//! the slab's capacity bytes stay within `cpu_cache_bytes`; an overflow (a push that finds its
//! stack full) may also take spare capacity (above the count) from another class: it probes
//! [`STEAL_PROBES`] classes from a cursor kept in the header, which moves on each time, and
//! takes from the first with enough. A drain resets every capacity to its initial value.
//!
//! May call: `arch`, `central`, `config`, `size_class`, `sync`, and `state` in this folder.

use super::state::G;
use crate::arch::{ClassBlock, BLOCK_SHIFT, BLOCK_SLOTS, SLAB_SHIFT};
use crate::central;
use crate::config;
use crate::size_class::{size_of, CLASS_BATCH, CLASS_CAPACITY, NUM_CLASSES};
use crate::sync::{AtomicU16, AtomicU32, AtomicUsize, Ordering, SpinLock};
use core::ptr::null_mut;

/// Bytes per slab.
pub const SLAB_BYTES: usize = 1 << SLAB_SHIFT;

/// Upper bound on slabs. Linux's default `NR_CPUS` on x86_64 is 8192; 4096 covers every
/// machine that boots with a sane `possible` mask, and a process on a larger one does not use
/// per-CPU caches at all (ids beyond the slabs could never be indexed safely).
pub const MAX_SLABS: usize = 4096;

/// The slab-wide words, in block 0 of each slab (class 0 is no class).
///
/// The words sit at fixed byte offsets (checked below): the state and the fallback lock on the
/// slab's first cache line, the other words on the last line of block 0.
#[repr(C)]
pub(super) struct SlabHeader {
    /// [`SLAB_UNTOUCHED`], [`SLAB_INITIALISING`] or [`SLAB_READY`]; a slab is used only when
    /// ready.
    state: AtomicU32,
    /// The fallback lock (see [`Slab::lock`]).
    lock: SpinLock,
    /// Unused.
    _reserved: [u32; 248],
    /// The slab's activity signature at the previous maintenance tick (see
    /// `maintenance::drain_idle`).
    pub signature: AtomicU32,
    /// The capacity lock: held while capacities change (growth, stealing, a drain's
    /// stop-and-restore), so that no growth can un-stop a slab a drain has stopped.
    cap_lock: SpinLock,
    /// Acquisitions of the fallback lock (written under it).
    fallback_ops: AtomicU32,
    /// The class where the next capacity steal starts probing.
    steal_cursor: AtomicU32,
    /// Bytes the objects of the slab may occupy when every stack is at its capacity: the sum
    /// of `cap[c] * size(c)`, within the budget `cpu_cache_bytes`.
    cap_bytes: AtomicU32,
    /// Consecutive maintenance ticks the signature stayed the same.
    pub idle_ticks: AtomicU32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<SlabHeader>() == size_of::<ClassBlock>());
    assert!(offset_of!(SlabHeader, state) == 0 && offset_of!(SlabHeader, lock) == 4);
    assert!(offset_of!(SlabHeader, signature) == 1000);
    assert!(offset_of!(SlabHeader, cap_lock) == 1004);
    assert!(offset_of!(SlabHeader, fallback_ops) == 1008);
    assert!(offset_of!(SlabHeader, steal_cursor) == 1012);
    assert!(offset_of!(SlabHeader, cap_bytes) == 1016);
    assert!(offset_of!(SlabHeader, idle_ticks) == 1020);
    assert!(NUM_CLASSES << BLOCK_SHIFT <= SLAB_BYTES);
    let mut c = 1;
    while c < NUM_CLASSES {
        assert!(
            CLASS_CAPACITY[c] as usize <= BLOCK_SLOTS,
            "slots overflow the block"
        );
        c += 1;
    }
};

/// Offset of class `c`'s block inside a slab.
#[inline(always)]
pub(super) const fn block_offset(c: usize) -> usize {
    c << BLOCK_SHIFT
}

/// A view of one slab: its address.
#[derive(Clone, Copy)]
pub(super) struct Slab(usize);

/// [`SlabHeader::state`] values.
const SLAB_UNTOUCHED: u32 = 0;
const SLAB_INITIALISING: u32 = 1;
const SLAB_READY: u32 = 2;

/// The slabs that are ready (initialised), with their indices.
pub(super) fn ready_slabs() -> impl Iterator<Item = (usize, Slab)> {
    (0..G.nslabs.load(Ordering::Relaxed))
        .map(|i| (i, Slab::of(i)))
        .filter(|(_, s)| s.is_ready())
}

impl Slab {
    fn is_ready(&self) -> bool {
        self.header().state.load(Ordering::Acquire) == SLAB_READY
    }
    /// Slab `i` (`i < slab_count()`).
    pub(super) fn of(i: usize) -> Slab {
        Slab(G.slabs.load(Ordering::Relaxed) + (i << SLAB_SHIFT))
    }
    /// The slab-wide words.
    pub(super) fn header(&self) -> &SlabHeader {
        // SAFETY: block 0 of a mapped slab (aligned to the slab size, zero or initialised);
        // its words are only ever accessed atomically, and the rseq sections never touch it.
        unsafe { &*(self.0 as *const SlabHeader) }
    }
    /// Class `c`'s block (`1 <= c < NUM_CLASSES`).
    pub(super) fn class(&self, c: usize) -> &ClassBlock {
        debug_assert!(c > 0 && c < NUM_CLASSES);
        // SAFETY: class c's block lies inside the mapped slab (NUM_CLASSES blocks fit, checked
        // at compile time); it is only accessed atomically here and by the rseq sections.
        unsafe { &*((self.0 + block_offset(c)) as *const ClassBlock) }
    }
    pub(super) fn count(&self, c: usize) -> &AtomicU16 {
        &self.class(c).count
    }
    pub(super) fn cap(&self, c: usize) -> &AtomicU16 {
        &self.class(c).cap
    }
    pub(super) fn floor(&self, c: usize) -> &AtomicU16 {
        &self.class(c).floor
    }
    /// Slot `i` of class `c` (`i < CLASS_CAPACITY[c]`).
    pub(super) fn slot(&self, c: usize, i: usize) -> &AtomicUsize {
        &self.class(c).slots[i]
    }

    /// Takes the slab's fallback lock (a [`SpinLock`]: it is held for a few nanoseconds).
    /// Counts the operation while holding it.
    #[inline]
    pub(super) fn lock(self) {
        self.header().lock.lock();
        let ops = &self.header().fallback_ops;
        ops.store(
            ops.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// Releases the fallback lock.
    #[inline]
    pub(super) fn unlock(self) {
        self.header().lock.unlock();
    }

    /// The capacity lock (a [`SpinLock`]: held briefly, except by a drain from its stop to its
    /// restart).
    pub(super) fn cap_lock(&self) -> &SpinLock {
        &self.header().cap_lock
    }

    /// Frees both locks in a fork child, where their holders do not exist.
    ///
    /// # Safety
    /// As for [`SpinLock::reset_in_child`].
    pub(super) unsafe fn reset_locks_in_child(self) {
        // SAFETY: forwarded contract.
        unsafe {
            self.header().lock.reset_in_child();
            self.header().cap_lock.reset_in_child();
        }
    }
}

/// The capacity a class starts with in a fresh slab: about 8 KiB worth of objects (at least
/// two, at most a batch), so a class a program touches once holds little; demand doubles it.
fn initial_cap(c: usize) -> u16 {
    ((8 << 10) / size_of(c))
        .clamp(2, CLASS_BATCH[c] as usize)
        .min(CLASS_CAPACITY[c] as usize) as u16
}

/// Makes slab `i` ready (once); false while another thread is initialising it.
pub(super) fn ensure_slab(i: usize) -> bool {
    let slab = Slab::of(i);
    if slab.is_ready() {
        return true;
    }
    match slab.header().state.compare_exchange(
        SLAB_UNTOUCHED,
        SLAB_INITIALISING,
        Ordering::Acquire,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            reset_caps(slab);
            slab.header().state.store(SLAB_READY, Ordering::Release);
            true
        }
        Err(s) => s == SLAB_READY,
    }
}

/// Gives every class of `slab` its initial capacity, within the byte budget.
pub(super) fn reset_caps(slab: Slab) {
    let budget = config::get().cpu_cache_bytes as usize;
    let mut bytes = 0;
    for c in 1..NUM_CLASSES {
        let mut cap = initial_cap(c);
        if bytes + cap as usize * size_of(c) > budget {
            cap = 0;
        }
        bytes += cap as usize * size_of(c);
        slab.cap(c).store(cap, Ordering::Release);
    }
    slab.header()
        .cap_bytes
        .store(bytes as u32, Ordering::Relaxed);
}

/// Classes probed per steal.
const STEAL_PROBES: usize = 8;

/// Doubles the capacity of class `c` in `slab` (up to its maximum): within the slab's byte
/// budget if it allows, else, when `may_steal`, by taking spare capacity (above the count) from
/// the first of [`STEAL_PROBES`] classes, probed from the slab's steal cursor, that has enough;
/// so capacity moves to the classes in demand.
///
/// Capacity may change at any time: the slot region is sized for the maximum, a section that
/// read the old value acts on a bound that is still within it, and a lowered capacity only
/// makes pushes fail until pops bring the count under it. Changes happen under the slab's
/// capacity lock, which a drain holds from its stop to its restore.
///
/// Only an overflow (`may_steal`) takes capacity from other classes: a class that keeps
/// running empty grows within the budget only, so two classes alternating cannot steal from
/// each other on every refill.
pub(super) fn grow_cap(slab: Slab, c: usize, may_steal: bool) -> bool {
    if slab.cap(c).load(Ordering::Relaxed) >= CLASS_CAPACITY[c] {
        return false; // at its maximum: no lock needed to know
    }
    if !slab.cap_lock().try_lock() {
        return false; // a drain or another grower is at work: try again on a later overflow
    }
    let grown = grow_cap_locked(slab, c, may_steal);
    slab.cap_lock().unlock();
    grown
}

fn grow_cap_locked(slab: Slab, c: usize, may_steal: bool) -> bool {
    let cap = slab.cap(c).load(Ordering::Relaxed);
    let max = CLASS_CAPACITY[c];
    if cap >= max || slab.floor(c).load(Ordering::Relaxed) == u16::MAX {
        return false; // at its maximum, or stopped by a drain
    }
    let add = cap.max(initial_cap(c)).min(max - cap);
    let add_bytes = add as usize * size_of(c);
    let budget = config::get().cpu_cache_bytes as usize;
    let total = &slab.header().cap_bytes;
    let mut bytes = total.load(Ordering::Relaxed) as usize;
    if bytes + add_bytes > budget {
        if !may_steal {
            return false;
        }
        // Steal from a class with enough unused capacity: probe a few classes from a cursor
        // that moves on each time, so an overflow costs a handful of loads, not a scan.
        let spare = |v: usize| {
            let cap = slab.cap(v).load(Ordering::Relaxed) as usize;
            cap.saturating_sub(slab.count(v).load(Ordering::Relaxed) as usize) * size_of(v)
        };
        let cursor = &slab.header().steal_cursor;
        let start = cursor.load(Ordering::Relaxed) as usize;
        let victim = (0..STEAL_PROBES)
            .map(|k| 1 + (start + k) % (NUM_CLASSES - 1))
            .find(|&v| v != c && spare(v) >= add_bytes);
        cursor.store(
            ((start + STEAL_PROBES) % (NUM_CLASSES - 1)) as u32,
            Ordering::Relaxed,
        );
        let Some(v) = victim else { return false };
        let take = add_bytes.div_ceil(size_of(v)) as u16;
        slab.cap(v).fetch_sub(take, Ordering::Release);
        bytes -= take as usize * size_of(v);
    }
    total.store((bytes + add_bytes) as u32, Ordering::Relaxed);
    slab.cap(c).fetch_add(add, Ordering::Release);
    true
}

/// Takes a batch from the central list (no more than the slab has room for), returns one
/// object and caches the rest with `put`; what does not fit goes back.
pub(super) fn refill(c: usize, slab: Slab, put: impl Fn(usize, *mut u8) -> bool) -> *mut u8 {
    let mut buf = [null_mut(); 32];
    let room = slab
        .cap(c)
        .load(Ordering::Relaxed)
        .saturating_sub(slab.count(c).load(Ordering::Relaxed));
    let want = (CLASS_BATCH[c] as usize).min(room as usize + 1);
    let n = central::alloc_batch(c, &mut buf[..want]);
    if n == 0 {
        return null_mut();
    }
    let mut i = 1;
    while i < n && put(c, buf[i]) {
        i += 1;
    }
    if i < n {
        // SAFETY: these objects came from `alloc_batch` and were never handed out.
        unsafe { central::free_batch(c, &buf[i..n]) };
    }
    buf[0]
}

/// How many objects an overflow moves out (including the one being freed): half the stack,
/// at least one, at most a batch.
pub(super) fn overflow_take(slab: Slab, c: usize) -> usize {
    let count = slab.count(c).load(Ordering::Relaxed) as usize;
    (count / 2 + 1).min(CLASS_BATCH[c] as usize)
}

/// Bytes of objects cached per slab, written into `out[i]` for each slab (up to `out.len()`);
/// returns the number of slabs. Racy by nature: a snapshot.
pub fn cached_bytes_per_slab(out: &mut [usize]) -> usize {
    let nslabs = G.nslabs.load(Ordering::Relaxed);
    for (i, o) in out.iter_mut().enumerate().take(nslabs) {
        let slab = Slab::of(i);
        *o = if slab.is_ready() {
            (1..NUM_CLASSES)
                .map(|c| slab.count(c).load(Ordering::Relaxed) as usize * size_of(c))
                .sum()
        } else {
            0
        };
    }
    nslabs
}

/// Objects of class `c` cached across all slabs (snapshot).
pub fn cached_objects(c: usize) -> usize {
    ready_slabs()
        .map(|(_, s)| s.count(c).load(Ordering::Relaxed) as usize)
        .sum()
}

/// Slabs that have been touched (initialised) so far.
pub fn slabs_in_use() -> usize {
    ready_slabs().count()
}

/// Slab-lock acquisitions of the locked fallback path so far (sum over slabs; a snapshot).
pub fn fallback_ops() -> usize {
    ready_slabs()
        .map(|(_, s)| s.header().fallback_ops.load(Ordering::Relaxed) as usize)
        .sum()
}

/// Executable invariants of the slabs (tests and the `fuzzing` feature).
#[cfg(any(test, feature = "fuzzing"))]
pub mod check {
    use super::*;
    use crate::central::check::span_of_object;
    use crate::page_heap::check::{ensure, Broken};

    /// Checks one slab at rest (no section, drain or locked operation running on it), for
    /// every class:
    /// - running (`floor = 0`) or stopped by a drain (`cap = 0`, `floor = u16::MAX`), nothing
    ///   in between;
    /// - `count` and `cap` within the class's slot region; a running class's `count <= cap`
    ///   (which a capacity steal racing a push on the same slab may break, harmlessly: pushes
    ///   fail until pops bring the count down — so only at rest after single-threaded use);
    /// - `slots[0..count]` are distinct objects of the class: each the start of an object
    ///   already carved from a small span of that class;
    ///
    /// and unless a class is stopped, the capacity bytes in the header are `Σ cap·size`, within
    /// `cpu_cache_bytes`.
    pub(super) fn check_slab(slab: Slab) -> Result<(), Broken> {
        let mut cap_bytes = 0;
        let mut any_stopped = false;
        for (c, &max) in CLASS_CAPACITY.iter().enumerate().skip(1) {
            let at = slab.0 + block_offset(c);
            let count = slab.count(c).load(Ordering::Relaxed);
            let cap = slab.cap(c).load(Ordering::Relaxed);
            let floor = slab.floor(c).load(Ordering::Relaxed);
            let stopped = floor == u16::MAX;
            any_stopped |= stopped;
            ensure(
                floor == 0 || stopped && cap == 0,
                "a class is neither running nor stopped",
                at,
            )?;
            ensure(
                count <= max && cap <= max,
                "a count or cap beyond the slot region",
                at,
            )?;
            ensure(
                stopped || count <= cap,
                "a running class holds more than its cap",
                at,
            )?;
            cap_bytes += cap as usize * size_of(c);
            let mut objs = [0usize; 128];
            let objs = &mut objs[..count as usize];
            for (i, o) in objs.iter_mut().enumerate() {
                *o = slab.slot(c, i).load(Ordering::Relaxed);
                span_of_object(*o as *mut u8, c)?;
            }
            objs.sort_unstable();
            if let Some(w) = objs.windows(2).find(|w| w[0] == w[1]) {
                return Err(Broken {
                    what: "an object is twice in a class's stack",
                    at: w[0],
                });
            }
        }
        if !any_stopped {
            let recorded = slab.header().cap_bytes.load(Ordering::Relaxed) as usize;
            ensure(
                recorded == cap_bytes,
                "the capacity bytes differ from Σ cap·size",
                recorded,
            )?;
            let budget = config::get().cpu_cache_bytes as usize;
            ensure(
                cap_bytes <= budget,
                "the capacities exceed cpu_cache_bytes",
                cap_bytes,
            )?;
        }
        Ok(())
    }

    /// Checks every ready slab ([`check_slab`]; at rest only).
    #[cfg(feature = "fuzzing")]
    pub fn check_slabs() -> Result<(), Broken> {
        ready_slabs().try_for_each(|(_, slab)| check_slab(slab))
    }
}

#[cfg(test)]
mod check_tests {
    use super::super::drain::empty_slab;
    use super::super::fallback::locked_push_many;
    use super::check::check_slab;
    use super::*;
    use crate::os;
    use crate::size_class::class_of;
    use std::vec::Vec;

    /// Classes no other unit test uses, at most 256 B (outside the shared stack budget another
    /// test measures exactly).
    const SIZES: [usize; 4] = [32, 96, 144, 256];

    /// A slab of the test's own, outside the slab region, with its initial capacities.
    fn private_slab() -> Slab {
        let base = os::map(SLAB_BYTES, SLAB_BYTES).unwrap();
        let slab = Slab(base as usize);
        reset_caps(slab);
        slab
    }

    /// Pops up to `n` objects of class `c` under the slab lock (as the fallback path does).
    fn pop_locked(slab: Slab, c: usize, n: usize) -> Vec<*mut u8> {
        slab.lock();
        let count = slab.count(c).load(Ordering::Relaxed) as usize;
        let k = n.min(count);
        let objs = (count - k..count)
            .rev()
            .map(|i| slab.slot(c, i).load(Ordering::Relaxed) as *mut u8)
            .collect();
        slab.count(c).store((count - k) as u16, Ordering::Relaxed);
        slab.unlock();
        objs
    }

    fn contents(slab: Slab, c: usize) -> Vec<*mut u8> {
        (0..slab.count(c).load(Ordering::Relaxed) as usize)
            .map(|i| slab.slot(c, i).load(Ordering::Relaxed) as *mut u8)
            .collect()
    }

    /// Pushes, pops, capacity growth with and without stealing, and emptying, on a private
    /// slab, checked after every operation against a shadow of each class's stack.
    #[test]
    fn random_slab_operations_keep_the_slab_invariants() {
        let slab = private_slab();
        let classes = SIZES.map(class_of);
        // Objects to cache: taken from the central lists, given back at the end.
        let mut spare: Vec<Vec<*mut u8>> = classes
            .iter()
            .map(|&c| {
                let mut v = std::vec![null_mut(); 400];
                for chunk in v.chunks_mut(32) {
                    assert_eq!(central::alloc_batch(c, chunk), chunk.len());
                }
                v
            })
            .collect();
        let mut shadow: Vec<Vec<*mut u8>> = std::vec![Vec::new(); classes.len()];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33) as usize % n
        };
        let mut done = [0; 5];
        for step in 0..20_000 {
            let (k, op, n) = (next(classes.len()), next(10), 1 + next(40));
            let c = classes[k];
            let changed = match op {
                0..=3 => {
                    let m = n.min(spare[k].len());
                    let rest = spare[k].len() - m;
                    let objs = spare[k].split_off(rest);
                    let pushed = locked_push_many(slab, c, &objs);
                    shadow[k].extend_from_slice(&objs[..pushed]);
                    spare[k].extend_from_slice(&objs[pushed..]);
                    pushed > 0
                }
                4..=6 => {
                    let objs = pop_locked(slab, c, n);
                    for &o in &objs {
                        assert_eq!(shadow[k].pop(), Some(o), "step {step}: popped");
                    }
                    spare[k].extend_from_slice(&objs);
                    !objs.is_empty()
                }
                7 | 8 => grow_cap(slab, c, op == 8),
                _ => {
                    // Everything to the central lists, as a drain does; take as many back.
                    let moved = empty_slab(slab);
                    for (k, &c) in classes.iter().enumerate() {
                        let mut back = std::vec![null_mut(); shadow[k].len()];
                        for chunk in back.chunks_mut(32) {
                            assert_eq!(central::alloc_batch(c, chunk), chunk.len());
                        }
                        spare[k].extend_from_slice(&back);
                        shadow[k].clear();
                    }
                    reset_caps(slab);
                    moved > 0
                }
            };
            done[op.min(9) / 2] += changed as usize;
            if let Err(b) = check_slab(slab) {
                panic!("step {step} (op {op}, class {c}): {b:?}");
            }
            for (k, &c) in classes.iter().enumerate() {
                assert_eq!(contents(slab, c), shadow[k], "step {step}: class {c}");
            }
        }
        assert!(done.iter().all(|&d| d > 50), "{done:?}");
        for (k, &c) in classes.iter().enumerate() {
            let mut all = pop_locked(slab, c, usize::MAX);
            all.append(&mut spare[k]);
            for chunk in all.chunks(32) {
                // SAFETY: objects of class `c` from `alloc_batch`, never used.
                unsafe { central::free_batch(c, chunk) };
            }
        }
    }

    fn broken(slab: Slab) -> &'static str {
        check_slab(slab).err().map_or("nothing", |b| b.what)
    }

    /// Each corruption of a private slab is reported; undone, the slab checks clean again.
    #[test]
    fn a_corrupted_slab_fails_its_check() {
        let slab = private_slab();
        let c = class_of(SIZES[1]);
        let mut objs = [null_mut(); 4];
        assert_eq!(central::alloc_batch(c, &mut objs), 4);
        assert_eq!(locked_push_many(slab, c, &objs), 4);
        assert_eq!(check_slab(slab), Ok(()));

        // One object cached twice.
        slab.slot(c, 3).store(objs[0] as usize, Ordering::Relaxed);
        assert_eq!(broken(slab), "an object is twice in a class's stack");
        slab.slot(c, 3).store(objs[3] as usize, Ordering::Relaxed);
        // A pointer inside an object.
        slab.slot(c, 1)
            .store(objs[1] as usize + 8, Ordering::Relaxed);
        assert_eq!(broken(slab), "an object pointer is not an object's start");
        slab.slot(c, 1).store(objs[1] as usize, Ordering::Relaxed);
        // An object of another class.
        let other = class_of(SIZES[0]);
        slab.slot(other, 0)
            .store(objs[2] as usize, Ordering::Relaxed);
        slab.count(other).store(1, Ordering::Relaxed);
        assert_eq!(broken(slab), "an object's page is not of its class");
        slab.count(other).store(0, Ordering::Relaxed);
        // A half-stopped class, then a whole stop (allowed: the capacity total is not checked).
        slab.floor(c).store(u16::MAX, Ordering::Relaxed);
        assert_eq!(broken(slab), "a class is neither running nor stopped");
        let cap = slab.cap(c).swap(0, Ordering::Relaxed);
        assert_eq!(check_slab(slab), Ok(()));
        slab.floor(c).store(0, Ordering::Relaxed);
        assert_eq!(broken(slab), "a running class holds more than its cap");
        slab.cap(c).store(cap, Ordering::Relaxed);
        // A capacity changed without its bytes.
        slab.cap(c).store(cap + 1, Ordering::Relaxed);
        assert_eq!(broken(slab), "the capacity bytes differ from Σ cap·size");
        slab.cap(c).store(cap, Ordering::Relaxed);

        assert_eq!(check_slab(slab), Ok(()));
        // SAFETY: objects from `alloc_batch`, never used.
        unsafe { central::free_batch(c, &pop_locked(slab, c, 4)) };
    }
}
