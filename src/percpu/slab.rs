//! The slabs: their layout, their capacity policy, the slab-wide locks, and the figures read
//! from them.
//!
//! Owns: the slab region's layout — one slab of `1 << SLAB_SHIFT` bytes (512 KiB) per possible
//! CPU or concurrency id, mapped once (the kernel commits a slab's pages only where touched, so
//! memory follows the ids that actually run and the objects they cache):
//!
//! ```text
//!   byte 0      SlabHeader (1 KiB): state, locks, the region table, figures
//!   byte 1024   ClassHeader of class c at 1024 + 8c (current, begin, floor, end)
//!   byte 2048   the owned-span table (arch::CUR_AT): class c's current owned span at 2048 + 8c
//!   byte 3072   the lists of owned spans (OWNED_LISTS_AT): class c's at 3072 + 8c (`owned`)
//!   byte 3880   the idle looks (IDLE_LOOKS_AT, past the last class's list): what the idle
//!               hand of `owned::route_idle` saw of the small classes' stacks, and the
//!               routed classes' declined frees (`owned::count_declined`)
//!   byte 4096   slot 0 (arch::SLOTS_AT): 65,024 slots of 8 bytes, the classes' regions
//!               handed out in order from `next_free` as classes grow; class c caches its
//!               objects in slots[begin..current], room up to end
//! ```
//!
//! Everything counts from zero, so a slab nobody has touched (all zero) is already the empty
//! layout: every class an empty stack with no capacity at slot 0, `next_free` 0. Making a slab
//! ready writes nothing a critical section reads.
//!
//! The class header's layout is defined in `arch`, beside the assembly that reads it. Its
//! fields are slot indices, so the fast path's instructions are those of a fixed per-class
//! block (one load of `current`, one of the bound, the slot at `slab + 8 * current`), while a
//! class can hold thousands of objects when a program needs it and a class nobody uses costs
//! no slots at all.
//!
//! Also owns each slab's readiness, capacities, region table and two locks: the fallback lock
//! (each fallback-mode operation, a fallback-mode drain, fork) and the capacity lock (growth,
//! relocation, and a drain from its stop to its restart).
//!
//! ## Capacity policy
//!
//! A class starts with no capacity and no region. Its first refill (or a free that finds no
//! room) gives it about 8 KiB worth of objects ([`initial_cap`]); each refill that finds its
//! stack empty doubles the capacity while the slab's capacity bytes stay within
//! `cpu_cache_bytes`, up to the class's maximum (`CLASS_CAPACITY`: 4096 objects, or 256 KiB
//! worth); an overflow (a push that finds its stack full) may also take spare capacity (above
//! the count) from another class: it probes [`STEAL_PROBES`] classes from a cursor kept in the
//! header, which moves on each time, and takes from the first with enough. When none has
//! enough spare, a probed class that looks idle — its count the same as at the previous probe
//! of it, recorded in the header (`seen`) — and whose capacity is at least twice the amount
//! gives it: the objects above what it keeps go to the central lists first ([`evict`]). So a
//! program that filled the budget with one phase's classes and moved on does not leave the
//! next phase's classes without a cache until an idle drain (a C burst of 100 × 1 KiB after
//! bursts of 16–256 B took 0.62x the time, median of 9 alternated runs of
//! `benches/c/bursts.c`, session 17). A steal that finds nothing to take makes the class's
//! next [`STEAL_RETRY_AFTER`] overflows give up without probing (`steal_wait` in the
//! header): when every class's capacity is in use, nearly every probe fails, and probing
//! on every overflow took 4–10 % of the samples of programs bursting several classes past
//! the budget.
//!
//! **The burst tier.** A class at its maximum grows further only for one thread's bursts: a
//! free that finds its stack full there records the freeing thread's tag in the header
//! (`burst_tag`), and a refill that finds the stack empty and its own thread's tag there
//! doubles the capacity, up to the class's burst maximum (`CLASS_BURST_CAPACITY`: four times
//! the base one, for classes up to 4 KiB) — the same thread filled the stack and emptied it,
//! so its bursts outgrow it. A producer and a consumer sharing the CPU fill and empty it from
//! different threads and never grow it; nor do objects arriving from other slabs
//! ([`grow_cap_for_arrivals`]), and a drain forgets every tag. A class in the tier counts its
//! whole capacity against the tier's own budget ([`burst_budget`], twice `cpu_cache_bytes`)
//! instead of `cpu_cache_bytes`, gives no capacity to steals, and leaves the tier when another
//! class's doubling in it needs the budget ([`shrink_burst`]: its objects above its base
//! maximum go to the central lists) or when the slab is drained (idle, `trim`, `flush`): a
//! class that stops bursting keeps what it caches until then, at most twice
//! `cpu_cache_bytes` a slab. A growth into the tier that finds no free slots fails and asks
//! for a drain, at most once a second ([`TIER_DRAIN_EVERY_MS`]) and only when the capacities
//! with the growth take at most half the slots (the slow path's drain is skipped in rseq modes
//! without the membarrier, as other drains are). Measured (`benches/c/bursts.c`, session 29,
//! medians of 3 alternated runs): bursts of 10,000 × 16 B 13.8 → 9.9 ns an object, 10,000 ×
//! 64 B 14.2 → 10.5, 10,000 × 256 B 18.7 → 17.1, 1,000 × 1 KiB 21.1 → 10.9; every other cell
//! within 0.96–1.05x.
//!
//! A capacity that outgrows the class's region moves the class to a new region at the slab's
//! free end ([`place`]), sized for the new capacity: in rseq modes by the relocation section
//! (`arch::percpu_relocate`, which copies the cached objects and commits the new header with
//! one store, on the slab's own CPU), in fallback mode under the slab lock. Regions grow by
//! doubling, so the moves cost O(1) per cached object and the space left behind is at most
//! what the live regions hold; the region at the free end grows in place. When the free end is
//! used up, growth fails and the slab asks for a drain ([`take_full`]), which empties it and
//! starts its layout again from slot 0 with every capacity at zero.
//!
//! May call: `arch`, `central`, `config`, `os` (the clock), `size_class`, `sync`, and `state`
//! and `setup` (its `INIT`) in this folder.

use super::state::{mode, RseqMode, G};
use crate::arch::{self, class_header_word, ClassHeader, SLAB_SHIFT, SLOTS_AT, SLOT_SHIFT};
use crate::central;
use crate::config;
use crate::size_class::{size_of, CLASS_BATCH, CLASS_BURST_CAPACITY, CLASS_CAPACITY, NUM_CLASSES};
use crate::sync::{
    AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, CachePadded, Ordering, SpinLock,
};
use core::ptr::null_mut;

/// A set of slab indices: the slabs a drain picked, the slabs whose locks a fork's prepare
/// handler took. Atomic words so that a `static` can hold one (the fork handlers run as
/// separate calls); each set has one writer at a time.
pub(super) struct SlabSet {
    bits: [AtomicU64; MAX_SLABS / 64],
}

impl SlabSet {
    /// The empty set.
    pub(super) const fn new() -> Self {
        SlabSet {
            bits: [const { AtomicU64::new(0) }; MAX_SLABS / 64],
        }
    }
    /// Empties the set.
    pub(super) fn clear(&self) {
        for word in &self.bits {
            word.store(0, Ordering::Relaxed);
        }
    }
    /// Adds slab `i` (`i < MAX_SLABS`).
    pub(super) fn insert(&self, i: usize) {
        self.bits[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
    }
    pub(super) fn contains(&self, i: usize) -> bool {
        self.bits[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0
    }
    /// The slabs in the set, in index order.
    pub(super) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..G.nslabs.load(Ordering::Relaxed)).filter(|&i| self.contains(i))
    }
}

/// Bytes per slab.
pub const SLAB_BYTES: usize = 1 << SLAB_SHIFT;

/// Slots per slab: every index fits a `u16`, with `u16::MAX` left over as the stopped floor.
const SLOTS: usize = (SLAB_BYTES - SLOTS_AT) >> SLOT_SHIFT;

/// Upper bound on slabs. Linux's default `NR_CPUS` on x86_64 is 8192; 4096 covers every
/// machine that boots with a sane `possible` mask, and a process on a larger one does not use
/// per-CPU caches at all (ids beyond the slabs could never be indexed safely).
pub const MAX_SLABS: usize = 4096;

/// Byte offset of class 0's [`ClassHeader`] (class 0 is no class; its header is unused): the
/// offset the one-object sections (the pop, the pushes, the stack-first owned pop) compute class
/// headers from (`arch::CLASS_HEADERS_AT`).
const HEADERS_AT: usize = crate::arch::CLASS_HEADERS_AT;

/// Byte offset of the owned-span lists: class `c`'s list head (a span record's address, or 0)
/// at `OWNED_LISTS_AT + 8 * c` (`percpu::owned`).
const OWNED_LISTS_AT: usize = 3072;

/// Byte offset of the idle looks (`percpu::owned::route_idle`): [`IDLE_LOOKS_BYTES`] bytes
/// past the owned-span lists' last class, all zero in a slab nobody touched.
const IDLE_LOOKS_AT: usize = OWNED_LISTS_AT + 8 * NUM_CLASSES;

/// Bytes at [`IDLE_LOOKS_AT`]: up to the first slot.
pub(super) const IDLE_LOOKS_BYTES: usize = SLOTS_AT - IDLE_LOOKS_AT;

/// Regions are handed out in multiples of a cache line's slots.
const REGION_ALIGN: usize = 8;

/// The slab-wide words, at the start of each slab.
///
/// The words sit at fixed byte offsets (checked below): the state and the fallback lock on the
/// slab's first cache line, the region table after them, the home word and the owned-span stop
/// word at bytes 920 and 924 (`arch::OWNED_HOME_AT`, `arch::OWNED_STOP_AT`; the owned push
/// loads them as one word) with the kept list's words after them on their line, the other words on
/// the last line of the header's kilobyte.
#[repr(C)]
pub(super) struct SlabHeader {
    /// 0 (untouched) or [`SLAB_READY`] (drains and figures look at ready slabs only).
    state: AtomicU32,
    /// The fallback lock (see [`Slab::lock`]).
    lock: SpinLock,
    /// The first slot no region uses yet (under the capacity lock).
    next_free: AtomicU32,
    /// Set when a growth found no free slots left: the slab wants a drain ([`take_full`]).
    full: AtomicU32,
    /// One past the last slot of each class's region (under the capacity lock); a class
    /// without a region has `region_end = begin`.
    region_end: [AtomicU16; 128],
    /// Each class's count as the previous capacity steal that probed it saw it (under the
    /// capacity lock): a class found with the same count again is taken for idle (see
    /// [`grow_cap`]).
    seen: [AtomicU16; 128],
    /// Per class, the tag ([`thread_tag`]) of the thread whose free last found the class's
    /// stack full at its base maximum (`CLASS_CAPACITY`) or above, 0 when none since the
    /// class last ran empty: a refill that finds the stack empty and its own tag here grows
    /// the class into the burst tier ([`grow_cap`]). Written by the slow paths without a lock
    /// (a heuristic: a lost or stale tag costs a growth or lets one through, never an object).
    burst_tag: [AtomicU16; 128],
    /// Capacity bytes of the classes in the burst tier (`Σ cap·size` over the classes whose
    /// capacity is above their base maximum), within [`burst_budget`]; part of `cap_bytes`
    /// (under the capacity lock).
    burst_bytes: AtomicU32,
    /// When a growth into the burst tier last asked for a drain for want of slots (the low 32
    /// bits of `os::now_ms`, never 0; 0: never), under the capacity lock: such drains come at
    /// most once per [`TIER_DRAIN_EVERY_MS`] ([`tier_drain_due`]).
    tier_drain_ms: AtomicU32,
    /// Per class, overflows left before the next capacity steal for it may probe: set to
    /// [`STEAL_RETRY_AFTER`] when a steal found no class to take from, counted down by the
    /// overflows that would need one (see [`grow_cap`]). Written by the slow paths without a
    /// lock (a heuristic: a lost or stale count costs a probe or delays one, never an object).
    steal_wait: [AtomicU8; 128],
    /// The slab's home word (`arch::OWNED_HOME_AT`): the page-map home bits of a span whose
    /// home is this slab (`pagemap::HOMED | index % 64`), written by [`make_ready`] before the
    /// slab turns ready, 0 before (a test's private slab keeps 0). The owned push loads it with
    /// the stop word after it as one word; on a slab not yet ready only an object with no home
    /// matches 0, and the owner check that follows refuses it (such a slab owns no span, and
    /// an owned span always has a home).
    owned_home: AtomicU32,
    /// The owned-span stop word (`arch::OWNED_STOP_AT`): set while a drain takes the slab's
    /// owned spans back (under the capacity lock, [`Slab::set_owned_stop`]); the owned-span
    /// sections load it first and fail while it is set.
    owned_stop: AtomicU32,
    /// The head of the slab's list of kept spans (`percpu::owned`: wholly free owned spans it
    /// keeps for reuse, oldest first, linked through `SpanExt::kept_prev/next`), a span
    /// record's address or 0; under the capacity lock.
    owned_kept: AtomicUsize,
    /// Bytes of the kept spans (under the capacity lock).
    owned_kept_bytes: AtomicUsize,
    /// The maintenance tick (`central::ticks`, low 32 bits, plus one so that 0 names none) of
    /// the slab's last sweep of owned spans others' frees left wholly free
    /// (`percpu::owned::sweep_freed`: at most one a tick); under the capacity lock.
    owned_swept: AtomicU32,
    /// Whether the central lists' hint that the slab may own spans others' frees left wholly
    /// free (`central::owned_freed`) was set at the previous maintenance tick
    /// (`percpu::owned::freed_unswept`); written by the tick only.
    owned_freed_seen: AtomicU32,
    /// Unused (keeps the hand below off the stop word's line, which every owned section reads).
    _reserved_low: [u32; 2],
    /// The next owned class whose current span a refill looks at for idleness
    /// (`percpu::owned::keep_idle_current`), less `owned::FIXED_MIN`; under the capacity lock.
    owned_hand: AtomicU32,
    /// Unused.
    _reserved: [u32; 9],
    /// The slab's activity signature at the previous maintenance tick (see
    /// `maintenance::drain_idle`).
    pub signature: AtomicU32,
    /// The capacity lock: held while capacities or regions change (growth, stealing,
    /// relocation, a drain's stop-and-restart), so that no growth can un-stop a slab a drain
    /// has stopped.
    cap_lock: SpinLock,
    /// Acquisitions of the fallback lock (written under it).
    fallback_ops: AtomicU32,
    /// The class where the next capacity steal starts probing.
    steal_cursor: AtomicU32,
    /// Bytes the objects of the slab may occupy when every stack is at its capacity: the sum
    /// of `cap[c] * size(c)`, within `cpu_cache_bytes` plus the burst tier's `burst_bytes`.
    cap_bytes: AtomicU32,
    /// Consecutive maintenance ticks the signature stayed the same.
    pub idle_ticks: AtomicU32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<SlabHeader>() == HEADERS_AT);
    assert!(offset_of!(SlabHeader, state) == 0 && offset_of!(SlabHeader, lock) == 4);
    assert!(offset_of!(SlabHeader, next_free) == 8 && offset_of!(SlabHeader, full) == 12);
    assert!(offset_of!(SlabHeader, region_end) == 16);
    assert!(offset_of!(SlabHeader, burst_tag) == 528);
    assert!(offset_of!(SlabHeader, burst_bytes) == 784);
    assert!(offset_of!(SlabHeader, tier_drain_ms) == 788);
    assert!(offset_of!(SlabHeader, steal_wait) == 792);
    assert!(offset_of!(SlabHeader, owned_stop) == crate::arch::OWNED_STOP_AT);
    assert!(offset_of!(SlabHeader, owned_home) == crate::arch::OWNED_HOME_AT);
    assert!(offset_of!(SlabHeader, owned_kept) == 928);
    assert!(offset_of!(SlabHeader, owned_kept_bytes) == 936);
    assert!(
        offset_of!(SlabHeader, owned_hand) == 960,
        "not on the stop word's line"
    );
    assert!(offset_of!(SlabHeader, signature) == 1000);
    assert!(offset_of!(SlabHeader, cap_lock) == 1004);
    assert!(offset_of!(SlabHeader, fallback_ops) == 1008);
    assert!(offset_of!(SlabHeader, steal_cursor) == 1012);
    assert!(offset_of!(SlabHeader, cap_bytes) == 1016);
    assert!(offset_of!(SlabHeader, idle_ticks) == 1020);
    assert!(NUM_CLASSES <= 128, "the region table has 128 entries");
    assert!(HEADERS_AT + 8 * NUM_CLASSES <= crate::arch::CUR_AT);
    assert!(crate::arch::CUR_AT + 8 * NUM_CLASSES <= OWNED_LISTS_AT);
    assert!(OWNED_LISTS_AT + 8 * NUM_CLASSES <= SLOTS_AT);
    assert!(IDLE_LOOKS_AT.is_multiple_of(8) && IDLE_LOOKS_AT + IDLE_LOOKS_BYTES == SLOTS_AT);
    assert!(
        SLOTS < u16::MAX as usize,
        "slot indices are u16, u16::MAX the stopped floor"
    );
    // Every class at its base maximum fits the slots at once (not twice: the regions doubling
    // leaves behind can use the free end up, and then the slab asks for a drain; the burst
    // tier's maxima need not fit, and its growths ask for one at most once a second, when the
    // capacities take at most half the slots).
    let mut slots = 0;
    let mut c = 1;
    while c < NUM_CLASSES {
        slots += (CLASS_CAPACITY[c] as usize).div_ceil(REGION_ALIGN) * REGION_ALIGN;
        c += 1;
    }
    assert!(slots <= SLOTS);
    assert!(
        SLOTS.is_multiple_of(REGION_ALIGN),
        "regions and the free end stay aligned"
    );
};

/// Offset of class `c`'s header inside a slab (what the batch and relocation sections take; the
/// one-object sections take the class).
#[inline(always)]
pub(super) const fn header_offset(c: usize) -> usize {
    HEADERS_AT + 8 * c
}

/// A view of one slab: its address.
#[derive(Clone, Copy)]
pub(super) struct Slab(usize);

/// [`SlabHeader::state`] once the slab is ready (0 before: untouched).
const SLAB_READY: u32 = 2;

/// The slabs that are ready (initialised), with their indices.
pub(super) fn ready_slabs() -> impl Iterator<Item = (usize, Slab)> {
    (0..G.nslabs.load(Ordering::Relaxed))
        .map(|i| (i, Slab::of(i)))
        .filter(|(_, s)| s.is_ready())
}

impl Slab {
    pub(super) fn is_ready(&self) -> bool {
        self.header().state.load(Ordering::Acquire) == SLAB_READY
    }
    /// Slab `i` (`i < slab_count()`).
    pub(super) fn of(i: usize) -> Slab {
        Slab(G.slabs.load(Ordering::Relaxed) + (i << SLAB_SHIFT))
    }
    /// This slab's index among the process's slabs; `None` for a slab of its own (tests).
    pub(super) fn index(&self) -> Option<usize> {
        let i = self.0.wrapping_sub(G.slabs.load(Ordering::Relaxed)) >> SLAB_SHIFT;
        (i < G.nslabs.load(Ordering::Relaxed)).then_some(i)
    }

    /// Class `c`'s entry of the owned-span table (`arch::CUR_AT`): the address of its current
    /// owned span's `OwnedWords`, or 0. The sections read it and `arch::owned_set_cur`
    /// commits it; a drain writes it after its fence, and the tests directly.
    pub(super) fn owned_cur(&self, c: usize) -> &AtomicUsize {
        assert!(c < NUM_CLASSES);
        // SAFETY: the table entry of a mapped slab (inside its header kilobytes, checked
        // above), only accessed atomically here and by the sections.
        unsafe { &*((self.0 + crate::arch::CUR_AT + 8 * c) as *const AtomicUsize) }
    }

    /// The address of the slab's idle looks ([`IDLE_LOOKS_BYTES`] bytes, 8-aligned, zero until
    /// written; `percpu::owned::route_idle` keeps them under the capacity lock, and frees add
    /// their declined pushes, `percpu::owned::count_declined`). No section reads them.
    pub(super) fn idle_looks_at(&self) -> usize {
        self.0 + IDLE_LOOKS_AT
    }

    /// Class `c`'s list of owned spans (`percpu::owned`): the head span's address, or 0.
    /// Written under the capacity lock only.
    pub(super) fn owned_list(&self, c: usize) -> &AtomicUsize {
        assert!(c < NUM_CLASSES);
        // SAFETY: inside the mapped slab's header kilobytes (checked above); only accessed
        // atomically, and no section reads it.
        unsafe { &*((self.0 + OWNED_LISTS_AT + 8 * c) as *const AtomicUsize) }
    }

    /// Tests on x86_64: points class `c`'s entry of the owned-span table at `words` (null:
    /// none).
    #[cfg(all(test, target_arch = "x86_64"))]
    pub(super) fn set_owned_cur(&self, c: usize, words: *const crate::arch::OwnedWords) {
        self.owned_cur(c).store(words as usize, Ordering::Relaxed);
    }

    /// The owned-span stop word (checks).
    #[cfg(any(all(test, target_arch = "x86_64"), feature = "fuzzing"))]
    pub(super) fn header_owned_stop(&self) -> u32 {
        self.header().owned_stop.load(Ordering::Relaxed)
    }

    /// The slab's home word (checks).
    #[cfg(all(test, target_arch = "x86_64"))]
    pub(super) fn header_owned_home(&self) -> u32 {
        self.header().owned_home.load(Ordering::Relaxed)
    }

    /// The head of the slab's list of kept spans (`percpu::owned`): the oldest kept span's
    /// record address, or 0. Written under the capacity lock only.
    pub(super) fn owned_kept(&self) -> &AtomicUsize {
        &self.header().owned_kept
    }

    /// Bytes of the slab's kept spans (`percpu::owned`). Written under the capacity lock only.
    pub(super) fn owned_kept_bytes(&self) -> &AtomicUsize {
        &self.header().owned_kept_bytes
    }

    /// The tick of the slab's last sweep of owned spans (`percpu::owned::sweep_freed`).
    /// Written under the capacity lock only.
    pub(super) fn owned_swept(&self) -> &AtomicU32 {
        &self.header().owned_swept
    }

    /// The next owned class a refill looks at for an idle current span
    /// (`percpu::owned::keep_idle_current`), less `owned::FIXED_MIN`. Written under the
    /// capacity lock only.
    pub(super) fn owned_hand(&self) -> &AtomicU32 {
        &self.header().owned_hand
    }

    /// Whether the slab's owned-freed hint was set at the previous tick
    /// (`percpu::owned::freed_unswept`).
    pub(super) fn owned_freed_seen(&self) -> &AtomicU32 {
        &self.header().owned_freed_seen
    }

    /// Whether the owned-span stop word is set (a drain is taking the slab's owned spans back):
    /// what the locked sections test first (`percpu::owned::sec`, fallback mode).
    pub(super) fn owned_stopped(&self) -> bool {
        self.header().owned_stop.load(Ordering::Relaxed) != 0
    }

    /// Sets or clears the owned-span stop word (drains, under the capacity lock; tests).
    pub(super) fn set_owned_stop(&self, on: bool) {
        self.header().owned_stop.store(on as u32, Ordering::Relaxed);
    }

    /// The slab-wide words.
    pub(super) fn header(&self) -> &SlabHeader {
        // SAFETY: the start of a mapped slab (aligned to the slab size, zero or initialised);
        // its words are only ever accessed atomically, and the rseq sections touch none of them
        // but the owned-span stop word, which they only load.
        unsafe { &*(self.0 as *const SlabHeader) }
    }
    /// Class `c`'s header (`1 <= c < NUM_CLASSES`).
    pub(super) fn class(&self, c: usize) -> &ClassHeader {
        debug_assert!(c > 0 && c < NUM_CLASSES);
        // SAFETY: class c's header lies inside the mapped slab (checked at compile time); it
        // is only accessed atomically here and by the rseq sections.
        unsafe { &*((self.0 + header_offset(c)) as *const ClassHeader) }
    }
    /// Objects class `c` caches (`current - begin`; a snapshot unless the slab is locked or
    /// stopped).
    pub(super) fn count(&self, c: usize) -> usize {
        let h = self.class(c);
        let begin = h.begin.load(Ordering::Relaxed);
        (h.current.load(Ordering::Acquire)).saturating_sub(begin) as usize
    }
    /// Sets class `c`'s count (under the slab lock, or with the slab stopped).
    pub(super) fn set_count(&self, c: usize, n: usize) {
        let h = self.class(c);
        let current = h.begin.load(Ordering::Relaxed) as usize + n;
        debug_assert!(current <= self.region_end(c).load(Ordering::Relaxed) as usize);
        h.current.store(current as u16, Ordering::Release);
    }
    /// Class `c`'s capacity (`end - begin`; 0 while stopped). `end` is read with acquire: a
    /// growth claims the region (its end, `next_free`) before it stores the new `end`, so a
    /// reader that sees the new `end` sees the region that holds it (on aarch64 too, where
    /// loads may pass each other).
    pub(super) fn cap(&self, c: usize) -> usize {
        let h = self.class(c);
        let begin = h.begin.load(Ordering::Relaxed);
        h.end.load(Ordering::Acquire).saturating_sub(begin) as usize
    }
    /// Class `c`'s room: its capacity above its count, in objects (0 when a lowered capacity
    /// left the count above it; a snapshot unless the stack cannot move meanwhile).
    pub(super) fn room(&self, c: usize) -> usize {
        self.cap(c).saturating_sub(self.count(c))
    }
    /// Whether class `c` may take objects arriving from other slabs now: its stack has room,
    /// or it may grow for them ([`grow_cap_for_arrivals`]: below its base maximum, and no
    /// steal wait). A wait left from before the budget freed up refuses a few arrivals that
    /// could be taken: they wait in the inbox for a later slow path or the next tick.
    pub(super) fn may_take_arrivals(&self, c: usize) -> bool {
        self.room(c) > 0
            || self.below_base_max(c) && self.header().steal_wait[c].load(Ordering::Relaxed) == 0
    }
    /// Tests: sets class `c`'s steal wait (overflows left before its next steal may probe).
    #[cfg(all(test, target_arch = "x86_64"))]
    pub(super) fn set_steal_wait(&self, c: usize, n: u8) {
        self.header().steal_wait[c].store(n, Ordering::Relaxed);
    }
    /// Whether class `c`'s capacity is below its base maximum (`CLASS_CAPACITY`): the only
    /// capacities objects arriving from other slabs may grow ([`grow_cap_for_arrivals`]).
    fn below_base_max(&self, c: usize) -> bool {
        self.cap(c) < CLASS_CAPACITY[c] as usize
    }
    /// Whether class `c` is in the burst tier: its capacity above its base maximum.
    pub(super) fn in_burst_tier(&self, c: usize) -> bool {
        self.cap(c) > CLASS_CAPACITY[c] as usize
    }
    /// Whether a drain has stopped class `c` (`floor = u16::MAX`).
    pub(super) fn is_stopped(&self, c: usize) -> bool {
        self.class(c).floor.load(Ordering::Relaxed) == u16::MAX
    }
    /// Slot `i` of class `c`'s stack (`begin + i`, inside the class's region).
    pub(super) fn slot(&self, c: usize, i: usize) -> &AtomicUsize {
        let k = self.class(c).begin.load(Ordering::Relaxed) as usize + i;
        debug_assert!(k < self.region_end(c).load(Ordering::Relaxed) as usize);
        self.slot_at(k)
    }
    /// Slot `k` of the slab.
    fn slot_at(&self, k: usize) -> &AtomicUsize {
        debug_assert!(k < SLOTS);
        // SAFETY: slot k lies inside the mapped slab, past its headers; slots are only
        // accessed atomically here and by the rseq sections.
        unsafe { &*((self.0 + SLOTS_AT + (k << SLOT_SHIFT)) as *const AtomicUsize) }
    }
    /// One past the last slot of class `c`'s region.
    fn region_end(&self, c: usize) -> &AtomicU16 {
        &self.header().region_end[c]
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

    /// Moves the top `min(out.len(), count)` objects of class `c`'s stack into `out`, bottom
    /// first as the batch pop section does, under the fallback lock; returns how many. For
    /// fallback mode and private slabs, where every reader of the stack takes the lock.
    pub(super) fn locked_pop(self, c: usize, out: &mut [*mut u8]) -> usize {
        self.lock();
        let n = self.count(c);
        let k = n.min(out.len());
        for (j, o) in out[..k].iter_mut().enumerate() {
            *o = self.slot(c, n - k + j).load(Ordering::Relaxed) as *mut u8;
        }
        self.set_count(c, n - k);
        self.unlock();
        k
    }

    /// Makes the next capacity steal probe class `c` first (tests: the probes start one class
    /// past the cursor).
    #[cfg(test)]
    pub(super) fn probe_from(&self, c: usize) {
        self.header()
            .steal_cursor
            .store(c as u32 - 1, Ordering::Relaxed);
    }

    /// The capacity lock (a [`SpinLock`]: held briefly, except by a drain from its stop to its
    /// restart and by a steal while it frees an idle class's objects to the central lists,
    /// [`evict`]; nobody waits for it in a fast path: growth only tries it).
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

/// The capacity a class's first growth gives it: about 8 KiB worth of objects (at least two,
/// at most a batch), so a class a program touches once holds little; demand doubles it.
pub(super) fn initial_cap(c: usize) -> usize {
    ((8 << 10) / size_of(c))
        .clamp(2, CLASS_BATCH[c] as usize)
        .min(CLASS_CAPACITY[c] as usize)
}

/// Makes slab `i` ready: it takes part in drains, figures and forks from now on. Its memory
/// is zero until a class grows (the empty layout, see the module documentation), so there is
/// nothing to initialise: a thread whose fast path reached the slab first found every stack
/// empty and full, and any thread may grow it at once.
///
/// The first time, under the set-up lock (`setup::INIT`), which a fork's prepare handler takes
/// before it locks the ready slabs (`fork::lock_percpu`): a slab made ready after prepare's look
/// would let a thread work under its capacity lock (an owner's carve without the class lock,
/// `central::carve_owned`) while the fork copies the process, and the child would inherit
/// the work half done (found by review, session 58). So a thread must not allocate between a
/// fork's prepare and its parent or child handler (another library's atfork handler run in
/// between): on a slab not yet ready it would wait for `INIT`, which its own fork holds, as it
/// would for the central and capacity locks on any other slow path.
pub(super) fn ensure_slab(i: usize) {
    make_ready(Slab::of(i));
}

/// [`ensure_slab`] of `slab` (one of the process's, or a test's own).
fn make_ready(slab: Slab) {
    let state = &slab.header().state;
    if state.load(Ordering::Relaxed) != SLAB_READY {
        let _g = super::setup::INIT.lock();
        if let Some(i) = slab.index() {
            // Before the ready state's release store: a thread that finds the slab ready
            // finds its home word too (a test's private slab keeps 0: no owned push there).
            let home = crate::pagemap::home_bits(crate::pagemap::home_field(i as u32));
            slab.header()
                .owned_home
                .store(home as u32, Ordering::Relaxed);
        }
        state.store(SLAB_READY, Ordering::Release);
    }
}

/// Gives every class of `slab` an empty stack, no region and no capacity, and the whole slab
/// back to hand out. Only on a slab no section runs on and no other thread changes: locked
/// (fallback mode, where every operation takes the lock), or a private one. Stops every class
/// first, so the states in between fail both pop and push anyway.
pub(super) fn reset_layout(slab: Slab) {
    stop(slab);
    relayout_stopped(slab);
    restart_layout(slab);
}

/// Stops every class of `slab`: `end = 0` (every push fails), then `floor = u16::MAX` (every
/// pop fails). A drain's first step; the capacity lock must be held (or nobody else may use
/// the slab), so no growth un-stops it.
pub(super) fn stop(slab: Slab) {
    for c in 1..NUM_CLASSES {
        slab.class(c).end.store(0, Ordering::Release);
        slab.class(c).floor.store(u16::MAX, Ordering::Release);
    }
}

/// The first half of [`reset_layout`], for a slab a drain has stopped (every class `floor =
/// u16::MAX`, `end = 0`) and emptied: every class's stack starts at slot 0 again, with no
/// region, still stopped. Holds or needs the capacity lock.
pub(super) fn relayout_stopped(slab: Slab) {
    for c in 1..NUM_CLASSES {
        let h = slab.class(c);
        h.begin.store(0, Ordering::Relaxed);
        h.current.store(0, Ordering::Release);
        slab.region_end(c).store(0, Ordering::Relaxed);
    }
    slab.header().next_free.store(0, Ordering::Relaxed);
    slab.header().full.store(0, Ordering::Relaxed);
}

/// The second half of [`reset_layout`]: un-stops every class with no capacity (`floor = end =
/// begin`), so the first refill or free grows it.
pub(super) fn restart_layout(slab: Slab) {
    for c in 1..NUM_CLASSES {
        let h = slab.class(c);
        let begin = h.begin.load(Ordering::Relaxed);
        h.floor.store(begin, Ordering::Release);
        h.end.store(begin, Ordering::Release);
    }
    slab.header().cap_bytes.store(0, Ordering::Relaxed);
    slab.header().burst_bytes.store(0, Ordering::Relaxed);
    clear_tags(slab);
}

/// Forgets every class's burst tag and steal wait: after a drain, no thread filled the stacks
/// and the capacities are free to take again.
fn clear_tags(slab: Slab) {
    let h = slab.header();
    for tag in h.burst_tag.iter() {
        tag.store(0, Ordering::Relaxed);
    }
    for wait in h.steal_wait.iter() {
        wait.store(0, Ordering::Relaxed);
    }
}

/// Lowers the capacity of every class of `slab` to its count and gives the difference back to
/// the slab's budget, as a steal would without a taker. For the drains that empty a slab
/// through the thread's own critical sections (`drain::drain_current`: a flush, and drains
/// without the membarrier), which cannot start its layout again: so drained caches start small
/// in every protocol. A section that read the old bound acts on one still inside its class's
/// region (see [`grow_cap`]). Takes the capacity lock; a slab not ready is left alone (it has
/// no capacity, and fork's handlers cover only the locks of ready slabs).
///
/// A class of the burst tier whose count is at or below its base maximum so leaves the tier,
/// its capacity counted against `cpu_cache_bytes` again: past it only if pushes raced the
/// drain and left objects (the drain emptied the stack), until steals or the next drain bring
/// it back.
pub(super) fn shrink_to_counts(slab: Slab) {
    if !slab.is_ready() {
        return;
    }
    slab.cap_lock().lock();
    let mut freed = 0;
    let mut burst = 0;
    for c in 1..NUM_CLASSES {
        let take = slab.room(c);
        if take > 0 {
            slab.class(c).end.fetch_sub(take as u16, Ordering::Release);
            freed += take * size_of(c);
        }
        if slab.in_burst_tier(c) {
            burst += slab.cap(c) * size_of(c);
        }
    }
    let total = &slab.header().cap_bytes;
    total.store(
        (total.load(Ordering::Relaxed) as usize).saturating_sub(freed) as u32,
        Ordering::Relaxed,
    );
    slab.header()
        .burst_bytes
        .store(burst as u32, Ordering::Relaxed);
    clear_tags(slab);
    slab.cap_lock().unlock();
}

/// Classes probed per steal.
const STEAL_PROBES: usize = 8;

/// Overflows of a class that skip the capacity steal after one for it found no class to take
/// from ([`SlabHeader::steal_wait`]). A steal probes [`STEAL_PROBES`] classes under the
/// capacity lock; when every class's capacity is in use (bursts of several classes past the
/// budget), nearly all fail: 99.8 % of 710,000 in a burst benchmark of mixed sizes from 1 to
/// 1,000 bytes (`benches/c/mbench/shbench.c`, one thread), and 95 % of 655,000 with a live
/// set of sizes up to 128 KiB (`alloc_test.c`); the probing took 4.4 % and 4.5 % of their
/// samples, and 8–10 % of `shbench`'s with two threads (through objects arriving home).
pub(super) const STEAL_RETRY_AFTER: u8 = 16;

/// Objects capacity steals moved from idle classes' stacks to the central lists ([`evict`];
/// reported in statistics).
pub static EVICTED: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));

/// Doubles the capacity of class `c` in `slab` (up to its maximum): within the slab's byte
/// budget if it allows, else, when `may_steal`, by taking spare capacity (above the count) from
/// the first of [`STEAL_PROBES`] classes, probed from the slab's steal cursor, that has enough,
/// or failing that from the first probed class that looks idle (count unchanged since its
/// previous probe) and has at least twice the capacity needed, after moving enough of its
/// objects to the central lists ([`evict`]); so capacity moves to the classes in demand. A
/// class in use is rarely taken for idle (its count must come back to the same value at two
/// probes some overflows apart), and then loses at most half its capacity, which its own
/// overflows take back. A capacity past the class's region moves the class ([`place`]); if
/// that fails (the thread left the slab's CPU, or the slab has no free slots left), nothing
/// changes.
///
/// Capacity may change at any time: a section that read the old `end` acts on a bound that is
/// still inside the class's region, and a lowered capacity only makes pushes fail until pops
/// bring the count under it. Changes happen under the slab's capacity lock, which a drain holds
/// from its stop to its restart.
///
/// Only an overflow (`may_steal`) takes capacity from other classes: a class that keeps
/// running empty grows within the budget only, so two classes alternating cannot steal from
/// each other on every refill.
///
/// At its base maximum (`CLASS_CAPACITY`) or above, a class grows only into the burst tier:
/// an overflow there records the calling thread's tag, and a refill that finds the stack
/// empty and its own thread's tag doubles the capacity ([`grow_burst`]; see "Capacity
/// policy" in the module documentation).
pub(super) fn grow_cap(slab: Slab, c: usize, may_steal: bool) -> bool {
    let cap = slab.cap(c);
    if cap >= CLASS_CAPACITY[c] as usize {
        let tag = &slab.header().burst_tag[c];
        if may_steal {
            // An overflow at the base maximum or above: note who filled the stack.
            let me = thread_tag();
            if tag.load(Ordering::Relaxed) != me {
                tag.store(me, Ordering::Relaxed);
            }
            return false;
        }
        // A refill of an empty stack: the same thread filled it, so one thread's bursts
        // outgrow the stack (not a producer and a consumer sharing the CPU).
        let was = tag.load(Ordering::Relaxed);
        if was == 0 {
            return false;
        }
        tag.store(0, Ordering::Relaxed);
        return was == thread_tag() && grow_burst(slab, c);
    }
    // A growth past the budget needs a steal. A refill may not steal, and an overflow may
    // not probe again until `steal_wait` overflows after one that failed: either would
    // otherwise take the lock just to learn this, and a snapshot suffices to give up (the
    // locked path decides).
    let budget = config::get().cpu_cache_bytes as usize;
    let add = growth(c, cap) * size_of(c);
    if base_bytes(slab) + add > budget {
        if !may_steal {
            return false;
        }
        let wait = &slab.header().steal_wait[c];
        let left = wait.load(Ordering::Relaxed);
        if left > 0 {
            wait.store(left - 1, Ordering::Relaxed);
            return false;
        }
    }
    if !slab.cap_lock().try_lock() {
        return false; // a drain or another grower is at work: try again on a later overflow
    }
    let grown = grow_cap_locked(slab, c, may_steal, budget);
    slab.cap_lock().unlock();
    grown
}

/// Objects a growth of class `c` from capacity `cap` (below its maximum) adds: a doubling, at
/// least the initial capacity, at most up to the maximum.
fn growth(c: usize, cap: usize) -> usize {
    cap.max(initial_cap(c))
        .min(CLASS_CAPACITY[c] as usize - cap)
}

/// The capacity bytes of the slab's classes outside the burst tier: what `cpu_cache_bytes`
/// bounds.
fn base_bytes(slab: Slab) -> usize {
    let h = slab.header();
    (h.cap_bytes.load(Ordering::Relaxed) as usize)
        .saturating_sub(h.burst_bytes.load(Ordering::Relaxed) as usize)
}

/// The burst tier's budget per slab: the capacity bytes of the classes in it, twice
/// `cpu_cache_bytes` (1 MiB by default, one class at its burst maximum), so a slab's
/// capacities stay within three times `cpu_cache_bytes`.
pub(super) fn burst_budget() -> usize {
    burst_budget_for(config::get().cpu_cache_bytes as usize)
}

/// [`burst_budget`] under a `cpu_cache_bytes` of `bound` bytes (the slab check's largest bound
/// so far, as well as the one in force).
fn burst_budget_for(bound: usize) -> usize {
    2 * bound
}

/// Milliseconds a slab's burst tier waits between two drains it asks for ([`grow_burst`]), so
/// that such drains (each empties the slab and fences every CPU running the process, and its
/// classes grow again) come at most once a second per slab however the bursts fall.
pub(super) const TIER_DRAIN_EVERY_MS: u32 = 1000;

/// Whether a growth into the burst tier of `slab` that found no free slots at `now_ms` (the
/// monotonic clock, `os::now_ms`) may ask for a drain: none asked for in the last
/// [`TIER_DRAIN_EVERY_MS`]. When so, notes `now_ms` as the last. Under the capacity lock.
fn tier_drain_due(slab: Slab, now_ms: u64) -> bool {
    let last = &slab.header().tier_drain_ms;
    // The low 32 bits (wrapping every 49 days); 0 is "never".
    let now = (now_ms as u32).max(1);
    let was = last.load(Ordering::Relaxed);
    if was != 0 && now.wrapping_sub(was) < TIER_DRAIN_EVERY_MS {
        return false;
    }
    last.store(now, Ordering::Relaxed);
    true
}

/// A 16-bit tag of the calling thread, never 0: its thread block's address, hashed. Two
/// threads may share a tag (the burst tier's test is a heuristic).
fn thread_tag() -> u16 {
    let a = arch::thread_block() as usize as u64;
    ((a.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as u16) | 1
}

/// Growths into the burst tier ([`grow_burst`]; reported in statistics).
pub static BURST_GROWTHS: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));

/// [`grow_cap`] for objects arriving from other slabs (owner return's inboxes): like a free that
/// finds the stack full, except that at the base maximum no tag is noted — the objects were
/// freed by other threads, and the thread taking them in would otherwise look as if it had
/// filled the stack (a producer whose objects come home would grow the tier).
pub(super) fn grow_cap_for_arrivals(slab: Slab, c: usize) -> bool {
    slab.below_base_max(c) && grow_cap(slab, c, true)
}

/// Doubles the capacity of class `c` of `slab`, at or above its base maximum, up to its burst
/// maximum (`CLASS_BURST_CAPACITY`): the class enters the burst tier, whose capacity bytes
/// count against [`burst_budget`] instead of `cpu_cache_bytes`. When the tier is full, the
/// other classes in it leave it first ([`shrink_burst`]), their objects above their new
/// capacity going to the central lists. False when nothing changed (at the burst maximum, a
/// drain or a grower at work, the thread off the slab's CPU, or no slots left; in the last
/// case the slab may be marked for a drain, see [`grow_burst_locked`]).
fn grow_burst(slab: Slab, c: usize) -> bool {
    if !slab.cap_lock().try_lock() {
        return false;
    }
    let grown = grow_burst_locked(slab, c);
    slab.cap_lock().unlock();
    grown
}

fn grow_burst_locked(slab: Slab, c: usize) -> bool {
    let cap = slab.cap(c);
    let max = CLASS_BURST_CAPACITY[c] as usize;
    if cap >= max || cap < CLASS_CAPACITY[c] as usize || slab.is_stopped(c) {
        return false;
    }
    let add = cap.min(max - cap);
    let add_bytes = add * size_of(c);
    // Entering the tier moves the class's whole capacity into it.
    let entering = cap == CLASS_CAPACITY[c] as usize;
    let tier_add = if entering { cap + add } else { add } * size_of(c);
    let budget = burst_budget();
    let burst = &slab.header().burst_bytes;
    // Out of slots, the tier sends no class out and asks for a drain, when one would make
    // room, at most once per `TIER_DRAIN_EVERY_MS`. A class leaving the tier keeps its
    // region (its capacity is lowered in place), and a class whose region is not at the free
    // end moves at each doubling: after two or three classes have been through the tier,
    // their regions use the slots up and no other class gets in; without a drain it waited
    // for an idle one, which a busy program never gets (a class bursting 10,000 × 64 B after
    // three others stayed at 8,192; docs/benchmarks.md, "Session 30"). A drain helps only
    // when the capacities in use, with this growth, take at most half the slots (classes
    // growing again in turn leave regions behind): the other tier classes are counted at
    // their base maxima, as this growth or their next burst would leave them. With
    // `cpu_cache_bytes=1m` the capacities themselves outgrow the slots: a drain on every such
    // growth there gave one every other burst (session 29's review), and a drain once a
    // second with no half-slots test ran `bursts_alternating.c` 1.2-1.9x slower on five of
    // seven lines. Hence both the test and the rate.
    if !placeable(slab, c, cap + add) {
        let held: usize = (1..NUM_CLASSES)
            .map(|v| match slab.cap(v) {
                k if v == c => k,
                k => k.min(CLASS_CAPACITY[v] as usize),
            })
            .sum();
        if 2 * (held + add) <= SLOTS && tier_drain_due(slab, crate::os::now_ms()) {
            slab.header().full.store(1, Ordering::Relaxed);
        }
        return false;
    }
    for v in 1..NUM_CLASSES {
        if burst.load(Ordering::Relaxed) as usize + tier_add <= budget {
            break;
        }
        if v != c && slab.in_burst_tier(v) {
            shrink_burst(slab, v);
        }
    }
    if burst.load(Ordering::Relaxed) as usize + tier_add > budget || !place(slab, c, cap + add) {
        return false;
    }
    burst.fetch_add(tier_add as u32, Ordering::Relaxed);
    slab.header()
        .cap_bytes
        .fetch_add(add_bytes as u32, Ordering::Relaxed);
    BURST_GROWTHS.fetch_add(1, Ordering::Relaxed);
    true
}

/// Takes class `v` of `slab` out of the burst tier: back to its base maximum, or less — down
/// to nothing — when `cpu_cache_bytes` has no room for that much (the classes outside the tier
/// took it meanwhile; steals then give some back as the class overflows again); its objects
/// above the new capacity go to the central lists ([`evict`]). Under the capacity lock. False
/// (nothing changed) when the objects could not be taken (see [`evict`]).
fn shrink_burst(slab: Slab, v: usize) -> bool {
    let cap = slab.cap(v);
    let size = size_of(v);
    if !slab.in_burst_tier(v) || slab.is_stopped(v) {
        return false;
    }
    let room = (config::get().cpu_cache_bytes as usize).saturating_sub(base_bytes(slab));
    let keep = (CLASS_CAPACITY[v] as usize).min(room / size);
    let drop = cap - keep;
    if !evict(slab, v, drop * size) {
        return false;
    }
    slab.class(v).end.fetch_sub(drop as u16, Ordering::Release);
    let h = slab.header();
    h.burst_bytes
        .fetch_sub((cap * size) as u32, Ordering::Relaxed);
    h.cap_bytes
        .fetch_sub((drop * size) as u32, Ordering::Relaxed);
    true
}

/// [`grow_cap`] under the capacity lock, against `budget` (`cpu_cache_bytes`, as `grow_cap`
/// read it).
fn grow_cap_locked(slab: Slab, c: usize, may_steal: bool, budget: usize) -> bool {
    let cap = slab.cap(c);
    let max = CLASS_CAPACITY[c] as usize;
    if cap >= max || slab.is_stopped(c) {
        return false; // at its maximum, or stopped by a drain
    }
    let add = growth(c, cap);
    let add_bytes = add * size_of(c);
    let total = &slab.header().cap_bytes;
    let bytes = base_bytes(slab);
    let mut victim = None;
    if bytes + add_bytes > budget {
        if !may_steal {
            return false;
        }
        // Steal from a class with enough unused capacity: probe a few classes from a cursor
        // that moves on each time, so an overflow costs a handful of loads, not a scan.
        // Failing that, from a class that caches enough but looks idle (its count unchanged
        // since the previous probe of it): part of its objects go to the central lists first.
        let spare = |v: usize| slab.room(v) * size_of(v);
        let cursor = &slab.header().steal_cursor;
        let start = cursor.load(Ordering::Relaxed) as usize;
        let mut idle = None;
        for v in (0..STEAL_PROBES).map(|k| 1 + (start + k) % (NUM_CLASSES - 1)) {
            let n = slab.count(v) as u16;
            // A load and a store, not `swap`: `seen` is written only under the capacity lock,
            // held here, and a locked exchange per probe was an eighth of the samples of
            // `grow_or_relayout` (where this function is inlined) in `batch` (perf, session 22).
            let seen = &slab.header().seen[v];
            let unchanged = seen.load(Ordering::Relaxed) == n;
            seen.store(n, Ordering::Relaxed);
            // Classes in the burst tier give capacity back only to it (`shrink_burst`).
            if v == c || victim.is_some() || slab.in_burst_tier(v) {
                continue;
            }
            if spare(v) >= add_bytes {
                victim = Some(v);
            } else if unchanged && idle.is_none() && slab.cap(v) * size_of(v) >= 2 * add_bytes {
                idle = Some(v);
            }
        }
        cursor.store(
            ((start + STEAL_PROBES) % (NUM_CLASSES - 1)) as u32,
            Ordering::Relaxed,
        );
        if victim.is_none() {
            victim = idle.filter(|&v| evict(slab, v, add_bytes));
        }
        if victim.is_none() {
            slab.header().steal_wait[c].store(STEAL_RETRY_AFTER, Ordering::Relaxed);
            return false;
        }
    }
    if !place(slab, c, cap + add) {
        return false;
    }
    let mut bytes = total.load(Ordering::Relaxed) as usize + add_bytes;
    if let Some(v) = victim {
        let take = add_bytes.div_ceil(size_of(v));
        slab.class(v).end.fetch_sub(take as u16, Ordering::Release);
        bytes -= take * size_of(v);
    }
    total.store(bytes as u32, Ordering::Relaxed);
    true
}

/// Moves objects of class `v` of `slab` to the central lists until its spare capacity holds
/// `bytes` (at most half its capacity, which the caller checked), for a steal of that much
/// capacity (under the capacity lock). False when the thread does not run on the slab (rseq
/// modes), or the class emptied or filled meanwhile so that its spare capacity falls short.
fn evict(slab: Slab, v: usize, bytes: usize) -> bool {
    let size = size_of(v);
    loop {
        let spare = slab.room(v) * size;
        if spare >= bytes {
            return true;
        }
        let mut buf = [null_mut(); 32];
        let want = (bytes - spare).div_ceil(size).min(buf.len());
        let got = match slab.index() {
            // SAFETY: `buf` holds `want` pointers; the objects popped are ours.
            Some(i) if mode() != RseqMode::Fallback => unsafe {
                arch::percpu_pop_batch_on(header_offset(v), i as u32, buf.as_mut_ptr(), want)
            },
            _ => slab.locked_pop(v, &mut buf[..want]),
        };
        if got == 0 {
            return false;
        }
        // SAFETY: free objects of class `v` just taken out of the cache: ours.
        unsafe { central::free_batch_from(v, &buf[..got], slab.index().unwrap_or(0)) };
        EVICTED.fetch_add(got, Ordering::Relaxed);
    }
}

/// Where class `c` of `slab` gets capacity `cap`: `None` when its region holds it; else the
/// first slot and the length of the region it needs — where the class is when its region is
/// the one at the free end (or a first region on a fresh layout), which so grows in place,
/// else at the free end, the class moving there. (Regions start at multiples of
/// REGION_ALIGN, as does the free end, so in place fits exactly when `begin + cap` does.)
/// The region may reach past the slab's slots. Under the capacity lock, which every change
/// of the regions holds.
fn region_for(slab: Slab, c: usize, cap: usize) -> Option<(usize, usize)> {
    let begin = slab.class(c).begin.load(Ordering::Relaxed) as usize;
    let region_end = slab.region_end(c).load(Ordering::Relaxed) as usize;
    if begin + cap <= region_end {
        return None;
    }
    let free = slab.header().next_free.load(Ordering::Relaxed) as usize;
    let at = if region_end == free { begin } else { free };
    Some((at, cap.next_multiple_of(REGION_ALIGN)))
}

/// Whether [`place`] finds the slots for class `c` of `slab` at capacity `cap`.
fn placeable(slab: Slab, c: usize, cap: usize) -> bool {
    region_for(slab, c, cap).is_none_or(|(at, len)| at + len <= SLOTS)
}

/// Gives class `c` of `slab` the capacity `cap` (larger than its current one): in place when
/// its region holds it, else in a region of its own at the slab's free end, moving its cached
/// objects there. False when the move was not possible (see [`grow_cap`]); when that was for
/// lack of free slots, the slab is marked for a drain ([`take_full`]). (A growth into the
/// burst tier asks [`placeable`] first and decides about drains itself.) Under the capacity
/// lock.
fn place(slab: Slab, c: usize, cap: usize) -> bool {
    let h = slab.class(c);
    let begin = h.begin.load(Ordering::Relaxed) as usize;
    let Some((at, len)) = region_for(slab, c, cap) else {
        h.end.store((begin + cap) as u16, Ordering::Release);
        return true;
    };
    let next = &slab.header().next_free;
    if at + len > SLOTS {
        // No free slots left: growth waits for a drain, which the slow path asks for.
        slab.header().full.store(1, Ordering::Relaxed);
        return false;
    }
    // The region is claimed before the class header names it: a slab-lock holder (fallback
    // mode) that reads the new `end` must find the region's end past it — the slots added
    // belong to nobody else (they lie past `next_free`, which only growth under this lock
    // moves).
    let claim = || {
        next.store((at + len) as u32, Ordering::Relaxed);
        slab.region_end(c)
            .store((at + len) as u16, Ordering::Release);
    };
    if at == begin {
        claim();
        h.end.store((begin + cap) as u16, Ordering::Release);
        return true;
    }
    match slab.index() {
        Some(i) if mode() != RseqMode::Fallback => {
            // Claimed before the move too (a fork that lands right after the commit must not
            // leave the child a header naming slots `next_free` still offers), and given back
            // if the move fails: in rseq modes only capacity-lock holders read the two words.
            let (old_next, old_end) = (
                next.load(Ordering::Relaxed),
                slab.region_end(c).load(Ordering::Relaxed),
            );
            claim();
            let word = class_header_word(0, at as u16, at as u16, (at + cap) as u16);
            // SAFETY: slab `i` is the process's, the caller holds its capacity lock, and the
            // region [at, at + len) lies past every other region (`next_free`) inside the
            // slab.
            let moved = unsafe { arch::percpu_relocate(header_offset(c), i as u32, word) };
            if !moved {
                next.store(old_next, Ordering::Relaxed);
                slab.region_end(c).store(old_end, Ordering::Relaxed);
            }
            moved
        }
        _ => {
            // Under the slab lock, which every reader of the header in this mode holds.
            slab.lock();
            claim();
            relocate_locked(slab, c, at, at + cap);
            slab.unlock();
            true
        }
    }
}

/// Fallback mode's (and a private slab's) relocation: the same move as the relocation
/// section, under the slab lock (held by the caller), which every operation on the slab takes.
fn relocate_locked(slab: Slab, c: usize, begin: usize, end: usize) {
    let n = slab.count(c);
    for i in 0..n {
        let obj = slab.slot(c, i).load(Ordering::Relaxed);
        slab.slot_at(begin + i).store(obj, Ordering::Relaxed);
    }
    let h = slab.class(c);
    h.begin.store(begin as u16, Ordering::Relaxed);
    h.current.store((begin + n) as u16, Ordering::Relaxed);
    h.floor.store(begin as u16, Ordering::Relaxed);
    h.end.store(end as u16, Ordering::Release);
}

/// Whether a growth of `slab` found no free slots since the last call (and clears it): the
/// slow path then drains the slab, which starts its layout again.
pub(super) fn take_full(slab: Slab) -> bool {
    let full = &slab.header().full;
    full.load(Ordering::Relaxed) != 0 && full.swap(0, Ordering::Relaxed) != 0
}

/// Takes a batch from the central list (no more than the slab has room for), returns one
/// object and caches the rest with `put` (which caches a prefix of what it is given and says
/// how many), so that they are popped in the order the central list gave them (lowest address
/// first within a span); what does not fit goes back.
pub(super) fn refill(c: usize, slab: Slab, put: impl Fn(usize, &[*mut u8]) -> usize) -> *mut u8 {
    let mut buf = [null_mut(); 32];
    let room = slab.room(c);
    let want = (CLASS_BATCH[c] as usize).min(room + 1);
    // Spans a refill of an rseq-mode slab carves are that slab's (owner return, `remote`).
    let home = match slab.index() {
        Some(i) if mode() != RseqMode::Fallback && super::remote::homes(c) => i as u32,
        _ => crate::span::NO_HOME,
    };
    // Its transfer stack shard first (`central::set_shards`).
    let near = slab.index().unwrap_or(0);
    let n = central::alloc_batch_home(c, &mut buf[..want], home, near);
    if n == 0 {
        return null_mut();
    }
    // The central lists hand a batch out lowest address first within a span
    // (`central::take_from_span`; one from the transfer stack in the order it was freed);
    // pushed in reverse, the stack pops it in that order, so a burst past the cache walks
    // memory forwards. Pushed as it came, each batch popped backwards: `batch` 0.88-0.95x the
    // time with this (docs/benchmarks.md, "Session 32").
    buf[1..n].reverse();
    let cached = if n > 1 { put(c, &buf[1..n]) } else { 0 };
    if 1 + cached < n {
        // SAFETY: these objects came from `alloc_batch` and were never handed out.
        unsafe { central::free_batch_from(c, &buf[1 + cached..n], near) };
    }
    buf[0]
}

/// How many objects an overflow moves out (including the one being freed): half the stack,
/// at least one, at most a batch.
pub(super) fn overflow_take(slab: Slab, c: usize) -> usize {
    (slab.count(c) / 2 + 1).min(CLASS_BATCH[c] as usize)
}

/// Tests: grows each of `classes` in turn on `slab` as far as the budget lets it (no steal)
/// and fills its stack with objects from the central lists, until the budget, not the class's
/// maximum, stops one. `push` caches a prefix of the objects it is given and says how many;
/// the rest go back to the central lists. Returns each class filled with what it caches.
#[cfg(test)]
pub(super) fn fill_to_budget(
    slab: Slab,
    classes: &[usize],
    push: impl Fn(usize, &[*mut u8]) -> usize,
) -> std::vec::Vec<(usize, std::vec::Vec<*mut u8>)> {
    let mut filled = std::vec::Vec::new();
    for &c in classes {
        while grow_cap(slab, c, false) {}
        let mut objs = std::vec![null_mut(); slab.cap(c)];
        for chunk in objs.chunks_mut(32) {
            assert_eq!(central::alloc_batch(c, chunk), chunk.len());
        }
        let pushed = push(c, &objs);
        // SAFETY: objects from `alloc_batch` that no cache took: ours.
        unsafe { central::free_batch(c, &objs[pushed..]) };
        objs.truncate(pushed);
        filled.push((c, objs));
        if slab.cap(c) < CLASS_CAPACITY[c] as usize {
            break;
        }
    }
    filled
}

/// Bytes of objects cached per slab, written into `out[i]` for each slab (up to `out.len()`);
/// returns the number of slabs. Racy by nature: a snapshot.
pub fn cached_bytes_per_slab(out: &mut [usize]) -> usize {
    let nslabs = G.nslabs.load(Ordering::Relaxed);
    for (i, o) in out.iter_mut().enumerate().take(nslabs) {
        let slab = Slab::of(i);
        *o = if slab.is_ready() {
            (1..NUM_CLASSES).map(|c| slab.count(c) * size_of(c)).sum()
        } else {
            0
        };
    }
    nslabs
}

/// Objects of class `c` cached across all slabs (snapshot).
pub fn cached_objects(c: usize) -> usize {
    ready_slabs().map(|(_, s)| s.count(c)).sum()
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
    /// - running (`floor = begin`) or stopped by a drain (`end = 0`, `floor = u16::MAX`),
    ///   nothing in between;
    /// - its stack inside its region (`begin <= current <= region_end <=
    ///   next_free`) and a running class's `end` too; no two classes' regions overlap;
    /// - its steal wait at most [`STEAL_RETRY_AFTER`];
    /// - `count` and `cap` within the class's burst maximum; a running class's `count <= cap`
    ///   (which a capacity steal racing a push on the same slab may break, harmlessly: pushes
    ///   fail until pops bring the count down — so only at rest after single-threaded use);
    /// - `slots[begin..current]` are distinct objects of the class: each the start of an
    ///   object already carved from a small span of that class;
    ///
    /// and unless a class is stopped, the capacity bytes in the header are `Σ cap·size`, the
    /// burst tier's bytes `Σ cap·size` over the classes above their base maximum, the rest
    /// within `cpu_cache_bytes` and the tier within [`burst_budget`].
    pub(super) fn check_slab(slab: Slab) -> Result<(), Broken> {
        let mut cap_bytes = 0;
        let mut burst_bytes = 0;
        let mut any_stopped = false;
        let next_free = slab.header().next_free.load(Ordering::Relaxed) as usize;
        ensure(
            next_free <= SLOTS,
            "the slab's free end is outside its slots",
            next_free,
        )?;
        let mut regions = [(0usize, 0usize); NUM_CLASSES];
        for (c, &max) in CLASS_BURST_CAPACITY.iter().enumerate().skip(1) {
            let at = slab.0 + header_offset(c);
            let h = slab.class(c);
            let [current, begin, floor, end] = [&h.current, &h.begin, &h.floor, &h.end]
                .map(|f| f.load(Ordering::Relaxed) as usize);
            let region_end = slab.region_end(c).load(Ordering::Relaxed) as usize;
            let stopped = floor == u16::MAX as usize;
            any_stopped |= stopped;
            ensure(
                floor == begin || stopped && end == 0,
                "a class is neither running nor stopped",
                at,
            )?;
            ensure(
                begin <= current
                    && current <= region_end
                    && region_end <= next_free
                    && (stopped || begin <= end && end <= region_end),
                "a class's stack is outside its region",
                at,
            )?;
            ensure(
                slab.header().steal_wait[c].load(Ordering::Relaxed) <= STEAL_RETRY_AFTER,
                "a class's steal wait beyond its maximum",
                at,
            )?;
            let count = current - begin;
            let cap = if stopped { 0 } else { end - begin };
            ensure(
                count <= max as usize && cap <= max as usize,
                "a count or cap beyond the class's maximum",
                at,
            )?;
            ensure(
                stopped || count <= cap,
                "a running class holds more than its cap",
                at,
            )?;
            regions[c] = (begin, region_end);
            cap_bytes += cap * size_of(c);
            if slab.in_burst_tier(c) {
                burst_bytes += cap * size_of(c);
            }
            let mut objs = [0usize; crate::size_class::MAX_BURST_CAPACITY];
            let objs = &mut objs[..count];
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
        regions.sort_unstable();
        let mut last_end = 0;
        for &(begin, end) in regions.iter().filter(|r| r.1 > r.0) {
            ensure(begin >= last_end, "two classes' regions overlap", begin)?;
            last_end = end;
        }
        if !any_stopped {
            let recorded = slab.header().cap_bytes.load(Ordering::Relaxed) as usize;
            ensure(
                recorded == cap_bytes,
                "the capacity bytes differ from Σ cap·size",
                recorded,
            )?;
            let recorded = slab.header().burst_bytes.load(Ordering::Relaxed) as usize;
            ensure(
                recorded == burst_bytes,
                "the burst tier's bytes differ from its classes' Σ cap·size",
                recorded,
            )?;
            // Against the largest bound in force so far: a bound lowered at run time applies
            // as capacities grow and to slabs laid out again (`config::cpu_cache_bytes_high`).
            // Weaker than the bound in force once a larger one was set: a per-slab record of
            // the bound at each layout would keep it exact.
            let budget = config::cpu_cache_bytes_high() as usize;
            ensure(
                cap_bytes - burst_bytes <= budget,
                "the capacities outside the burst tier exceed cpu_cache_bytes",
                cap_bytes,
            )?;
            ensure(
                burst_bytes <= burst_budget_for(budget),
                "the burst tier exceeds its budget",
                burst_bytes,
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

    /// A slab of the test's own, outside the slab region, with its initial (empty) layout.
    fn private_slab() -> Slab {
        let base = os::map(SLAB_BYTES, SLAB_BYTES).unwrap();
        let slab = Slab(base as usize);
        reset_layout(slab);
        slab
    }

    /// Pops up to `n` objects of class `c` under the slab lock (as the fallback path does),
    /// the top one first. The test's own slab: nothing changes its count meanwhile.
    fn pop_locked(slab: Slab, c: usize, n: usize) -> Vec<*mut u8> {
        let mut objs = std::vec![null_mut(); n.min(slab.count(c))];
        assert_eq!(slab.locked_pop(c, &mut objs), objs.len());
        objs.reverse();
        objs
    }

    fn contents(slab: Slab, c: usize) -> Vec<*mut u8> {
        (0..slab.count(c))
            .map(|i| slab.slot(c, i).load(Ordering::Relaxed) as *mut u8)
            .collect()
    }

    /// A slab turns ready only under the set-up lock, which a fork's prepare handler holds from
    /// before it looks for the ready slabs (whose capacity locks it takes) to the end of the
    /// fork: so every slab ready in the copied process is one whose locks prepare took. Before
    /// session 58 a slab turned ready without the lock, and a thread's first allocation on a
    /// new slab could start an owner's carve (`central::carve_owned`, under only that slab's
    /// capacity lock) in the middle of another thread's fork. Holding the lock as prepare
    /// does, the test waits until the other thread either made the slab ready (the fault) or
    /// sleeps waiting for the lock (its state in `/proc` and the lock word: the fix), then lets
    /// it go.
    #[test]
    fn a_slab_turns_ready_only_under_the_set_up_lock() {
        use std::sync::atomic::AtomicI32;
        use std::sync::Arc;
        let slab = private_slab();
        assert!(!slab.is_ready());
        let tid = Arc::new(AtomicI32::new(0));
        let guard = super::super::setup::INIT.lock();
        let waiter = {
            let tid = Arc::clone(&tid);
            std::thread::spawn(move || {
                // SAFETY: `gettid` has no preconditions.
                tid.store(unsafe { libc::gettid() }, Ordering::Release);
                make_ready(slab);
            })
        };
        let init = &super::super::setup::INIT;
        loop {
            // Whether the other thread sleeps waiting for the lock: its scheduler state is `S`
            // and the lock word says a waiter went to sleep (2). Read before the slab's state,
            // so that a slab made ready and a sleep for another reason afterwards still fail.
            let t = tid.load(Ordering::Acquire);
            let waiting = t != 0 && {
                let path = std::format!("/proc/self/task/{t}/stat");
                // (Gone when the thread finished: then it did not wait.)
                let stat = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    assert!(
                        !slab.is_ready(),
                        "a slab turned ready while the set-up lock was held"
                    );
                    panic!("the test reads {path}: {e}");
                });
                let sleeping = stat
                    .rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'));
                sleeping && init.may_have_waiters()
            };
            assert!(
                !slab.is_ready(),
                "a slab turned ready while the set-up lock was held"
            );
            if waiting {
                break;
            }
            std::thread::yield_now();
        }
        drop(guard);
        waiter.join().unwrap();
        assert!(slab.is_ready());
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
                    reset_layout(slab);
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

    /// Growth in fallback mode (in place at the slab's free end, or moving a class to a new
    /// region) runs under the capacity lock only, while locked pushes and pops run under the
    /// slab lock: what a slab-lock holder reads must never give a class a capacity that
    /// reaches past its region (the debug build checks it in `slot`, and the forced-fallback
    /// stress test tripped that check in about half of its runs: growth stored the new `end`
    /// before the region's end). The grower takes both paths; the in-place one, whose `end`
    /// store needs no slab lock, fails this test at once when reordered. The move's window
    /// (between releasing the slab lock and claiming, when it claimed late) is a few
    /// instructions long and this test does not reliably catch it: the move claims under the
    /// slab lock, before the header changes, by construction.
    #[test]
    fn a_slab_lock_holder_never_sees_a_capacity_past_the_region() {
        let slab = private_slab();
        // Any two classes: a private slab, and no object is cached.
        let (c, d) = (class_of(176), class_of(208));
        let stop = std::sync::atomic::AtomicBool::new(false);
        /// Sets the flag when dropped, so a panic in the grower ends the reader's loop too.
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let mut seen = None;
        std::thread::scope(|s| {
            s.spawn(|| {
                let _stop = StopOnDrop(&stop);
                // Each round: `c` grows once, then `d` gets a region after it, so `c`'s next
                // growth moves it (the move path); growing on, `c`'s region is the last one
                // and grows in place (the in-place path). Then the layout starts over.
                for _ in 0..5_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    grow_cap(slab, c, false);
                    grow_cap(slab, d, false);
                    while grow_cap(slab, c, false) {}
                    slab.cap_lock().lock();
                    slab.lock();
                    reset_layout(slab);
                    slab.unlock();
                    slab.cap_lock().unlock();
                }
            });
            while !stop.load(Ordering::Relaxed) {
                slab.lock();
                let h = slab.class(c);
                let begin = h.begin.load(Ordering::Relaxed);
                let end = h.end.load(Ordering::Acquire);
                let region_end = slab.region_end(c).load(Ordering::Relaxed);
                slab.unlock();
                if end > region_end.max(begin) {
                    seen = Some((begin, end, region_end));
                    stop.store(true, Ordering::Relaxed);
                }
            }
        });
        assert_eq!(
            seen, None,
            "(begin, end, region end) seen under the slab lock"
        );
    }

    /// A slab nobody has touched (all zero) is the empty layout: it checks clean, and a class
    /// grows and caches there without anything written first — so a thread that reaches a slab
    /// before it is marked ready cannot write over its headers (slot indices count from the
    /// slots, past them).
    #[test]
    fn an_untouched_slab_is_the_empty_layout() {
        let slab = Slab(os::map(SLAB_BYTES, SLAB_BYTES).unwrap() as usize);
        assert_eq!(check_slab(slab), Ok(()));
        let c = class_of(SIZES[2]);
        assert!(grow_cap(slab, c, false));
        let mut objs = [null_mut(); 4];
        assert_eq!(central::alloc_batch(c, &mut objs), 4);
        assert_eq!(locked_push_many(slab, c, &objs), 4);
        assert_eq!(check_slab(slab), Ok(()));
        assert_eq!(slab.class(c).begin.load(Ordering::Relaxed), 0);
        assert_eq!(
            slab.header().state.load(Ordering::Relaxed),
            0,
            "the header untouched"
        );
        // SAFETY: objects from `alloc_batch`, never used.
        unsafe { central::free_batch(c, &pop_locked(slab, c, 4)) };
    }

    /// A growth that needs a new region when the slab's free slots are used up (regions left
    /// behind by moves, here simulated by moving the free end) fails and asks for a drain, once;
    /// the drain's fresh layout gives room again.
    #[test]
    fn a_slab_whose_free_slots_run_out_asks_for_a_drain() {
        let slab = private_slab();
        let (c, d) = (class_of(SIZES[0]), class_of(SIZES[3]));
        assert!(grow_cap(slab, c, false) && grow_cap(slab, d, false));
        let cap = slab.cap(c);
        // c's region is no longer at the free end, and the free end is 4 slots from the last.
        slab.header()
            .next_free
            .store(SLOTS as u32 - 4, Ordering::Relaxed);
        assert!(!take_full(slab));
        assert!(!grow_cap(slab, c, false));
        assert_eq!(slab.cap(c), cap, "nothing changed");
        assert!(take_full(slab));
        assert!(!take_full(slab), "asked once");
        reset_layout(slab);
        assert!(grow_cap(slab, c, false) && slab.cap(c) > 0);
        assert_eq!(check_slab(slab), Ok(()));
    }

    /// A class that overflows with the budget used up takes capacity from a class that caches
    /// objects but stays idle, whose top objects go to the central lists ([`evict`]); never
    /// from a class in use, whose count moves between probes. Needs a `cpu_cache_bytes` that
    /// eight classes of 112–240 B at their maximum (256 KiB each) fill: the default, 512 KiB.
    #[test]
    fn an_idle_class_gives_its_capacity_to_a_class_in_demand() {
        // Its fillers' objects come from and go back to the central lists, whose transfer stack
        // a central test (240 B) counts exactly.
        let _serial = crate::serial_test();
        let slab = private_slab();
        // Classes no other test caches on this slab, filled (grown as far as the budget lets
        // them, every slot holding an object) until the budget stops one.
        let fillers = [112, 128, 160, 176, 192, 208, 224, 240].map(class_of);
        let want = class_of(48);
        let shadow = fill_to_budget(slab, &fillers, |c, objs| locked_push_many(slab, c, objs));
        for (c, objs) in &shadow {
            assert_eq!(
                objs.len(),
                slab.cap(*c),
                "class {c}: a slot without an object"
            );
        }
        assert!(
            slab.cap(shadow.last().unwrap().0) < CLASS_CAPACITY[shadow.last().unwrap().0] as usize,
            "the fillers did not reach the budget"
        );
        assert!(!grow_cap(slab, want, false), "room left in the budget");
        // The first filler stays in use: one object out before one attempt, back in before
        // the next, so its count differs at each probe while its spare capacity stays too
        // small to give; the others stay idle. Every attempt probes the fillers (the steal
        // cursor set to them: the probes start one class past it).
        let busy = shadow[0].0;
        let mut out = Vec::new();
        let grown = (0..4).any(|attempt| {
            if attempt % 2 == 0 {
                out = pop_locked(slab, busy, 1);
            } else {
                assert_eq!(locked_push_many(slab, busy, &out), 1);
                out.clear();
            }
            slab.probe_from(busy);
            let grown = grow_cap(slab, want, true);
            if !grown {
                // A steal that found nothing to take: the next `STEAL_RETRY_AFTER` overflows
                // give up without probing (the cursor and the counts seen stay as they are).
                let cursor = slab.header().steal_cursor.load(Ordering::Relaxed);
                for _ in 0..STEAL_RETRY_AFTER {
                    assert!(!grow_cap(slab, want, true), "a waiting overflow grew");
                }
                assert_eq!(
                    slab.header().steal_cursor.load(Ordering::Relaxed),
                    cursor,
                    "a waiting overflow probed"
                );
            }
            grown
        });
        assert!(grown, "no idle class gave capacity");
        assert!(slab.cap(want) > 0);
        assert_eq!(check_slab(slab), Ok(()));
        let mut busy_now = contents(slab, busy);
        busy_now.extend_from_slice(&out);
        assert_eq!(busy_now, shadow[0].1, "the busy class lost objects");
        let mut evicted = 0;
        for (c, objs) in &shadow[1..] {
            let now = contents(slab, *c);
            assert_eq!(now, objs[..now.len()], "class {c}: not its bottom objects");
            assert!(
                now.len() == objs.len() || now.len() * 2 >= objs.len(),
                "class {c} lost more than half"
            );
            evicted += (now.len() < objs.len()) as usize;
        }
        assert_eq!(evicted, 1, "one idle class gives the capacity");
        // What stays cached and what was taken out goes back (the evicted objects already went).
        for (c, _) in &shadow {
            let mut all = pop_locked(slab, *c, usize::MAX);
            if *c == busy {
                all.append(&mut out);
            }
            for chunk in all.chunks(32) {
                // SAFETY: objects of class `c` from `alloc_batch`, never handed out.
                unsafe { central::free_batch(*c, chunk) };
            }
        }
    }

    /// Fills class `c` of `slab` up to its capacity with objects from the central lists
    /// (under the slab lock, as the fallback path pushes).
    fn fill(slab: Slab, c: usize) {
        let mut objs = std::vec![null_mut(); slab.room(c)];
        for chunk in objs.chunks_mut(32) {
            assert_eq!(central::alloc_batch(c, chunk), chunk.len());
        }
        assert_eq!(locked_push_many(slab, c, &objs), objs.len());
    }

    /// Empties class `c` of `slab` into the central lists.
    fn empty(slab: Slab, c: usize) {
        for chunk in pop_locked(slab, c, usize::MAX).chunks(32) {
            // SAFETY: objects of class `c` from `alloc_batch`, never handed out.
            unsafe { central::free_batch(c, chunk) };
        }
    }

    /// One round of a burst past class `c`'s stack by the calling thread: the stack filled,
    /// a free that finds it full (an overflow), the stack emptied, and a refill that finds it
    /// empty. Returns the refill's growth.
    fn burst_round(slab: Slab, c: usize) -> bool {
        fill(slab, c);
        assert!(!grow_cap(slab, c, true), "an overflow grew the class");
        empty(slab, c);
        grow_cap(slab, c, false)
    }

    /// The burst tier: a class at its base maximum doubles, up to its burst maximum, only
    /// when the thread whose free found its stack full comes back to find it empty (one
    /// thread's bursts outgrow it), not when another thread filled it (a producer and a
    /// consumer sharing the CPU); when the tier's budget is spent, a class doubling in it sends
    /// the others back to their base maxima, their objects above it to the central lists; a
    /// growth with no free slots sends no class out and asks for a drain, once a second at
    /// most; a drain, and objects arriving from other slabs, leave no tag.
    #[test]
    fn one_threads_bursts_grow_a_class_past_its_base_maximum() {
        let slab = private_slab();
        // 16 B (base maximum 4,096 objects, burst maximum 16,384) and 80 B (3,276, 13,104).
        let (c, d) = (class_of(16), class_of(80));
        while grow_cap(slab, c, false) {}
        let base = CLASS_CAPACITY[c] as usize;
        assert_eq!(
            slab.cap(c),
            base,
            "the base growth stops at the base maximum"
        );
        // Another thread fills the stack: the refill of this one does not grow it.
        fill(slab, c);
        std::thread::scope(|s| {
            s.spawn(|| assert!(!grow_cap(slab, c, true)));
        });
        empty(slab, c);
        assert!(
            !grow_cap(slab, c, false),
            "grew on another thread's overflow"
        );
        assert_eq!(slab.cap(c), base);
        // This thread's bursts double it, round by round, to its burst maximum.
        let mut caps = Vec::new();
        while burst_round(slab, c) {
            caps.push(slab.cap(c));
            assert_eq!(check_slab(slab), Ok(()));
        }
        assert_eq!(caps, [2 * base, 4 * base]);
        assert_eq!(slab.cap(c), CLASS_BURST_CAPACITY[c] as usize);
        // An empty stack without an overflow since: no growth.
        assert!(!grow_cap(slab, c, false));
        // `d` enters the tier beside `c`; its next doubling needs `c`'s share of the budget.
        while grow_cap(slab, d, false) {}
        assert_eq!(slab.cap(d), CLASS_CAPACITY[d] as usize);
        fill(slab, c);
        assert!(burst_round(slab, d));
        assert_eq!(
            slab.cap(c),
            CLASS_BURST_CAPACITY[c] as usize,
            "c left the tier early"
        );
        let evicted = EVICTED.load(Ordering::Relaxed);
        assert!(burst_round(slab, d));
        assert_eq!(slab.cap(d), 4 * CLASS_CAPACITY[d] as usize);
        assert_eq!(slab.cap(c), base, "c did not leave the tier");
        assert_eq!(slab.count(c), base, "c lost objects below its base maximum");
        assert!(EVICTED.load(Ordering::Relaxed) >= evicted + 3 * base);
        assert!(slab.header().burst_bytes.load(Ordering::Relaxed) as usize <= burst_budget());
        assert_eq!(check_slab(slab), Ok(()));
        let tier_d = 4 * CLASS_CAPACITY[d] as usize;
        // Out of slots, a growth into the tier fails, sends no class out of the tier (`d`
        // holds all its budget) and asks for a drain, which starts the layout again; not
        // when a tier growth asked for one within the last second (the next test: such a
        // drain makes the classes grow into the same gaps again).
        let e = class_of(32);
        while grow_cap(slab, e, false) {}
        assert_eq!(slab.cap(e), CLASS_CAPACITY[e] as usize);
        let next = slab.header().next_free.load(Ordering::Relaxed);
        slab.header()
            .next_free
            .store(SLOTS as u32 - 8, Ordering::Relaxed);
        let stamp = &slab.header().tier_drain_ms;
        // As if a tier growth had asked a minute ago (never is the same): this one may ask.
        stamp.store(
            (os::now_ms() as u32).wrapping_sub(60_000).max(1),
            Ordering::Relaxed,
        );
        assert!(!burst_round(slab, e));
        assert_eq!(slab.cap(e), CLASS_CAPACITY[e] as usize);
        assert_eq!(slab.cap(d), tier_d, "a growth that had no slots sent d out");
        assert!(
            take_full(slab),
            "a tier growth without slots asked for no drain"
        );
        assert_ne!(
            stamp.load(Ordering::Relaxed),
            0,
            "the ask was not noted for the rate"
        );
        slab.header().next_free.store(next, Ordering::Relaxed);
        assert_eq!(check_slab(slab), Ok(()));
        // A drain forgets who filled the stacks: a refill after it grows nothing.
        fill(slab, e);
        assert!(!grow_cap(slab, e, true));
        for k in [c, d, e] {
            empty(slab, k);
        }
        reset_layout(slab);
        while grow_cap(slab, e, false) {}
        assert_eq!(slab.cap(e), CLASS_CAPACITY[e] as usize);
        assert!(!grow_cap(slab, e, false), "a tag outlived the drain");
        // Objects arriving from other slabs into a full stack note no tag either.
        fill(slab, e);
        assert!(!grow_cap_for_arrivals(slab, e));
        empty(slab, e);
        assert!(!grow_cap(slab, e, false), "arrivals noted a tag");
        assert_eq!(slab.cap(e), CLASS_CAPACITY[e] as usize);
    }

    /// A tier growth without slots may ask for a drain when none was asked for in the last
    /// `TIER_DRAIN_EVERY_MS`, and notes when; the clock's low 32 bits may wrap.
    #[test]
    fn the_burst_tier_asks_for_a_drain_at_most_once_a_second() {
        let slab = private_slab();
        let period = u64::from(TIER_DRAIN_EVERY_MS);
        assert!(tier_drain_due(slab, 5_000), "never asked before");
        assert!(!tier_drain_due(slab, 5_000));
        assert!(!tier_drain_due(slab, 5_000 + period - 1));
        assert!(tier_drain_due(slab, 5_000 + period));
        assert!(!tier_drain_due(slab, 5_000 + period + 1));
        // Across the 32-bit wrap of the clock.
        let wrap = 1u64 << 32;
        assert!(tier_drain_due(slab, wrap - 10));
        assert!(!tier_drain_due(slab, wrap + period - 11));
        assert!(tier_drain_due(slab, wrap + period - 10));
        // A clock whose low bits are 0 is noted as 1, not as "never".
        assert!(tier_drain_due(slab, 3 * wrap));
        assert!(!tier_drain_due(slab, 3 * wrap + 1));
    }

    fn broken(slab: Slab) -> &'static str {
        check_slab(slab).err().map_or("nothing", |b| b.what)
    }

    /// A class takes objects arriving from other slabs while its stack has room, or while it
    /// may grow for them (below its base maximum, no steal wait); not when it is full and a
    /// failed steal made it wait, nor when it is full at its base maximum. A drain clears the
    /// waits.
    #[test]
    fn a_full_class_waiting_to_steal_takes_no_arrivals() {
        let slab = private_slab();
        let c = class_of(SIZES[2]);
        while slab.cap(c) < 4 {
            assert!(grow_cap(slab, c, false));
        }
        assert!(slab.may_take_arrivals(c), "an empty stack");
        fill(slab, c);
        assert!(slab.may_take_arrivals(c), "a full stack that may grow");
        slab.header().steal_wait[c].store(STEAL_RETRY_AFTER, Ordering::Relaxed);
        assert!(!slab.may_take_arrivals(c), "a full stack waiting to steal");
        let one = pop_locked(slab, c, 1);
        assert!(slab.may_take_arrivals(c), "room in the stack");
        assert_eq!(locked_push_many(slab, c, &one), 1);
        empty(slab, c);
        reset_layout(slab);
        assert_eq!(
            slab.header().steal_wait[c].load(Ordering::Relaxed),
            0,
            "a drain left a steal wait"
        );
        // A class full at its base maximum cannot grow for arrivals, wait or not.
        let d = class_of(SIZES[3]);
        while grow_cap(slab, d, false) {}
        assert_eq!(
            slab.cap(d),
            CLASS_CAPACITY[d] as usize,
            "below its base maximum"
        );
        fill(slab, d);
        assert!(
            !slab.may_take_arrivals(d),
            "a full stack at its base maximum"
        );
        empty(slab, d);
        assert_eq!(check_slab(slab), Ok(()));
    }

    /// Each corruption of a private slab is reported; undone, the slab checks clean again.
    #[test]
    fn a_corrupted_slab_fails_its_check() {
        let slab = private_slab();
        let c = class_of(SIZES[1]);
        let other = class_of(SIZES[0]);
        // Classes start with no capacity; give both room for what the test caches.
        for k in [c, other] {
            while slab.cap(k) < 4 {
                assert!(grow_cap(slab, k, false));
            }
        }
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
        slab.slot(other, 0)
            .store(objs[2] as usize, Ordering::Relaxed);
        slab.set_count(other, 1);
        assert_eq!(broken(slab), "an object's page is not of its class");
        slab.set_count(other, 0);
        // A half-stopped class, then a whole stop (allowed: the capacity total is not checked).
        let h = slab.class(c);
        let begin = h.begin.load(Ordering::Relaxed);
        h.floor.store(u16::MAX, Ordering::Relaxed);
        assert_eq!(broken(slab), "a class is neither running nor stopped");
        let end = h.end.swap(0, Ordering::Relaxed);
        assert_eq!(check_slab(slab), Ok(()));
        h.floor.store(begin, Ordering::Relaxed);
        h.end.store(
            slab.region_end(c).load(Ordering::Relaxed) + 1,
            Ordering::Relaxed,
        );
        assert_eq!(broken(slab), "a class's stack is outside its region");
        h.end.store(begin + 2, Ordering::Relaxed);
        assert_eq!(broken(slab), "a running class holds more than its cap");
        h.end.store(end, Ordering::Relaxed);
        // A steal wait past its maximum.
        slab.header().steal_wait[c].store(STEAL_RETRY_AFTER + 1, Ordering::Relaxed);
        assert_eq!(broken(slab), "a class's steal wait beyond its maximum");
        slab.header().steal_wait[c].store(0, Ordering::Relaxed);
        // A capacity changed without its bytes.
        h.end.store(end - 1, Ordering::Relaxed);
        assert_eq!(broken(slab), "the capacity bytes differ from Σ cap·size");
        h.end.store(end, Ordering::Relaxed);
        // A region past the slab's free end, then two overlapping regions.
        let free_end = slab.header().next_free.load(Ordering::Relaxed);
        slab.header()
            .next_free
            .store(begin.into(), Ordering::Relaxed);
        assert_eq!(broken(slab), "a class's stack is outside its region");
        slab.header().next_free.store(free_end, Ordering::Relaxed);
        let o = slab.class(other);
        let (ob, oe) = (
            o.begin.load(Ordering::Relaxed),
            o.end.load(Ordering::Relaxed),
        );
        let region_end = slab.region_end(other).load(Ordering::Relaxed);
        for f in [&o.begin, &o.current, &o.floor] {
            f.store(begin, Ordering::Relaxed);
        }
        o.end.store(begin + (oe - ob), Ordering::Relaxed);
        slab.region_end(other)
            .store(begin + (oe - ob), Ordering::Relaxed);
        assert_eq!(broken(slab), "two classes' regions overlap");
        for f in [&o.begin, &o.current, &o.floor] {
            f.store(ob, Ordering::Relaxed);
        }
        o.end.store(oe, Ordering::Relaxed);
        slab.region_end(other).store(region_end, Ordering::Relaxed);

        assert_eq!(check_slab(slab), Ok(()));
        // SAFETY: objects from `alloc_batch`, never used.
        unsafe { central::free_batch(c, &pop_locked(slab, c, 4)) };
    }
}
