//! Central free lists: per size class, the objects not held by any per-CPU cache.
//!
//! Owns: for each class, a transfer stack of free object pointers (filled and drained in
//! batches by the per-CPU caches, so a batch moves with a `memcpy` under a lock), split into
//! shards, one per slab up to [`MAX_SHARDS`], each slab pushing onto its own and taking from it
//! first ([`set_shards`], [`alloc_batch_home`]), and, under a second lock, the list of that
//! class's spans that still have objects to give. When the slab's shard is full — or the
//! class's limit over all of them, or for classes above [`SHARED_ABOVE`] their shared budget,
//! is spent — freed objects go back to their span; a span whose objects are all back returns
//! to the page heap. The span lists are reached only when the slab's shard is empty or full.
//! Classes of a page or more remember the spans they gave back ([`Hints`]) and take those
//! pages back first when they need a span; smaller ones count the
//! short spans they give back in each maintenance tick ([`CHURN_SPANS`]) and take long spans
//! while they churn. For the per-CPU layer's owned spans it keeps two hints, a bit per slab
//! ([`OWNED_FREED`], [`OWNED_SPARSE`]): which slabs own spans that frees from elsewhere left
//! wholly or half free.
//!
//! Invariants (under the span lock): a span is in `spans` iff it has a free object or an
//! uncarved one and no per-CPU slab owns it (`Span::listed` mirrors membership, `Span::in_slab`
//! marks an owned span, which [`take_span_to_own`], [`take_from_owned`], [`disown`] and
//! [`disown_whole`] manage); `in_use` counts the span's objects that are outside the span (with
//! users, in caches or in this transfer stack). An owned span's owner also carves it without
//! the span lock ([`carve_owned`], under its capacity lock): `in_use` first, then `carved` a
//! half page at a time, so for a span a slab owns the counts agree only under both locks.
//! Lock order: a transfer stack shard (never two at once, except [`lock_all`] and the checks,
//! in shard order), spans, page heap.
//!
//! May call: `free_tag`, `os`, `size_class`, `span`, `page_heap`, `pagemap`, `sync`.

use crate::free_tag;
use crate::os;
use crate::page_heap::HEAP;
use crate::pagemap::{entry, home_field, HALF_SHIFT, LAST_PAGE, SECOND_HALF};
use crate::pagemap::{span_of, PAGEMAP};
use crate::size_class::{
    object_index, size_of, CLASS_PAGES, CLASS_PAGES_SMALL_HEAP, NUM_CLASSES, PAGE, PAGE_SHIFT,
};
use crate::span::{bitmap_words, Span, SpanExt, SpanList, SpanState};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, CachePadded, Mutex, Ordering};
use core::cell::UnsafeCell;
use core::ptr::null_mut;

/// Up to this much mapped heap, small-object spans use their small-heap length.
const SMALL_HEAP_BYTES: usize = 32 << 20;
/// A class with at least this many bytes of objects out of its spans (handed to caches or the
/// program) takes spans of the big heap's length even while the heap is small: a burst of
/// 1,000 × 1 KiB otherwise took 125 one-page spans from the page heap and gave them back, a
/// fifth of its time in page-heap work (split, merge, span records). Such a class fills long
/// spans anyway, and their pages are carved (touched) only as objects are taken. The per-CPU
/// budget (`cpu_cache_bytes`' default): what a burst past every cache has out at least.
/// Measured (docs/design.md, "Central lists"): bursts of 1,000 and 4,096 × 1 KiB 0.84x and
/// 0.76x the time, the nine original workloads' peak RSS unchanged (0.996x, 11 runs each);
/// 256 KiB instead raised `fragmentation`'s peak by 1 %.
const LONG_SPANS_FROM: usize = crate::config::DEFAULTS.cpu_cache_bytes as usize;
/// Half pages (4 KiB each) a carve into a fresh span of a big heap faults in at once
/// ([`Span::populate_ahead`], classes up to 4 KiB): one `MADV_POPULATE_WRITE` call instead of
/// up to 8 page faults, for pages the carving would fault in one by one anyway (an object
/// starts in every half page of such a span, except the last one of the 2752, 3008, 3520 and
/// 3776 B classes' spans). At most 28 KiB per class is resident ahead of use. Medians of 11
/// alternated runs against the build without: `fragmentation` 0.97x the time, `batch` 0.92x,
/// peak RSS +0.3 % / 0. Populating whole spans, object bodies of larger classes included,
/// gained more on `fragmentation` (0.86x) but held 1.6 % more at its peak: pages a program
/// that asked for an object may never touch.
const POPULATE_HALVES: usize = 8;

/// Slots of a class's transfer stack.
pub const TRANSFER_SLOTS: usize = 512;

/// Classes above this size share one byte budget, [`SHARED_BUDGET`], for their transfer stacks.
///
/// Small objects are many and cheap: each class keeps up to 256 KiB of them, and moving them
/// between CPUs a batch at a time, one `memcpy` under one lock, keeps a producer/consumer pair
/// fast. Larger objects get the same pipe but not the same depth: a stack of up to 256 KiB in
/// each of their ~80 classes kept each class's high-water of freed objects resident — a buffer
/// grown by `realloc` passes through every class up to its size, and the benchmark runner's
/// `realloc-growth` peaked at 6.7 MiB against jemalloc's 5.6. With no stack at all above 1 KiB
/// a 4 KiB producer/consumer pair took twice as long (0.2 s against 0.1), every object going
/// back to its span and every emptied span through the page heap under the class lock.
pub const SHARED_ABOVE: usize = 256;

/// Bytes that the transfer stacks of all classes above [`SHARED_ABOVE`] may hold together.
pub const SHARED_BUDGET: usize = 256 << 10;

/// Set when the page heap reports that the small-object heap shrank (see
/// `PageHeap::take_shrunk`); whoever next leaves a class lock empties every transfer stack.
static FLUSH_PENDING: CachePadded<AtomicBool> = CachePadded::new(AtomicBool::new(false));

/// Empties every transfer stack if the page heap asked for it, then releases the free pages down
/// to the shrinking heap's cushion (`PageHeap::release_shrunk`; call with no class lock held).
fn flush_if_pending() {
    if FLUSH_PENDING.load(Ordering::Relaxed) && FLUSH_PENDING.swap(false, Ordering::Relaxed) {
        flush_transfer();
        // The flush may have asked again (its own spans shrank the heap): it is done.
        FLUSH_PENDING.store(false, Ordering::Relaxed);
        HEAP.lock().release_shrunk();
    }
}

/// Slabs the per-slab hints below can name (every slab: `percpu::slab::MAX_SLABS` is checked
/// against it there).
pub const HINTED_SLABS: usize = 4096;

/// One bit per slab (by index): a hint, which whoever acts on it checks again (each method says
/// its memory ordering).
struct SlabBits([AtomicU64; HINTED_SLABS / 64]);

impl SlabBits {
    const fn new() -> Self {
        SlabBits([const { AtomicU64::new(0) }; HINTED_SLABS / 64])
    }

    /// The word and bit of slab `id`.
    #[inline(always)]
    fn at(&self, id: usize) -> (&AtomicU64, u64) {
        (&self.0[id / 64], 1 << (id % 64))
    }

    /// Whether slab `id`'s bit is set.
    #[inline(always)]
    fn get(&self, id: usize) -> bool {
        let (w, b) = self.at(id);
        w.load(Ordering::Relaxed) & b != 0
    }

    /// Sets slab `id`'s bit, always with a write that releases what the caller wrote before
    /// (for a hint whose reader clears it with [`SlabBits::take`] and then reads that state:
    /// a set skipped because the bit looked set could be lost to a clear that read the state
    /// before the caller's writes, found by review).
    fn set(&self, id: usize) {
        let (w, b) = self.at(id);
        w.fetch_or(b, Ordering::Release);
    }

    /// Sets slab `id`'s bit, written only when it looks clear (for a hint that may be lost now
    /// and then: it costs reuse, not memory held for good).
    fn set_once(&self, id: usize) {
        let (w, b) = self.at(id);
        if w.load(Ordering::Relaxed) & b == 0 {
            w.fetch_or(b, Ordering::Relaxed);
        }
    }

    /// Clears slab `id`'s bit, acquiring what the setters wrote before their sets; whether it
    /// was set.
    fn take(&self, id: usize) -> bool {
        let (w, b) = self.at(id);
        w.fetch_and(!b, Ordering::Acquire) & b != 0
    }

    /// Whether the bit of any slab below `n` other than `id` is set.
    fn any_other(&self, n: usize, id: usize) -> bool {
        self.0[..n.div_ceil(64).min(HINTED_SLABS / 64)]
            .iter()
            .enumerate()
            .any(|(k, w)| {
                let mine = if k == id / 64 { 1 << (id % 64) } else { 0 };
                w.load(Ordering::Relaxed) & !mine != 0
            })
    }
}

/// Slabs that may own a span frees from elsewhere left wholly free (every object out of the
/// span on its owner's list: [`span_updated`]). Only the owner may give such a span back (its
/// retire section runs on the owner's CPU), and nothing else would until the owner drains or
/// goes idle: the per-CPU layer's slow paths read this hint ([`owned_freed`]) and sweep their
/// slab's owned spans (`percpu::owned::sweep_freed`), and a tick drains a slab whose hint
/// stood a whole tick unswept (`percpu::owned::freed_unswept`). Written only when such a free
/// comes, and by the owner's own sweeps and give-backs that could not finish
/// ([`set_owned_freed`]).
static OWNED_FREED: CachePadded<SlabBits> = CachePadded::new(SlabBits::new());

/// Whether slab `id` may own a span that frees from elsewhere left wholly free (a hint; see
/// [`OWNED_FREED`]).
#[inline(always)]
pub fn owned_freed(id: usize) -> bool {
    OWNED_FREED.get(id)
}

/// Clears slab `id`'s [`owned_freed`] hint: its owner is about to look at every span it owns
/// (a free that sets it again meanwhile is looked at next time).
pub fn clear_owned_freed(id: usize) {
    OWNED_FREED.take(id);
}

/// Sets slab `id`'s [`owned_freed`] hint again: a sweep that could not finish, or a give-back
/// of a span the slab's own push left wholly free that found the slab's capacity lock busy or
/// the thread moved (`percpu::owned::give_back_as`).
pub fn set_owned_freed(id: usize) {
    OWNED_FREED.set(id);
}

/// Slabs that may own a span frees from elsewhere left at least half free (carved whole, at
/// most half its objects out other than those on the owner's list: [`span_updated`]): other
/// slabs cannot allocate from it while its owner keeps it, so an owned refill asks
/// ([`owned_sparse_elsewhere`]), looks for a span other than a fresh one first while the hint
/// names another slab, and when only a fresh one would do drains the slabs named, if a drain
/// is due (`percpu::refill_owned`: once a tick, and once per 4 MiB of fresh spans), after
/// which these lists list their spans. Written only when such a free comes; cleared slab by
/// slab by that drain ([`take_owned_sparse`]).
static OWNED_SPARSE: CachePadded<SlabBits> = CachePadded::new(SlabBits::new());

/// Whether a slab below `n` other than `id` may own a span frees from elsewhere left at least
/// half free (a hint; see [`OWNED_SPARSE`]).
#[inline(always)]
pub fn owned_sparse_elsewhere(n: usize, id: usize) -> bool {
    OWNED_SPARSE.any_other(n, id)
}

/// Clears slab `id`'s [`OWNED_SPARSE`] hint; whether it was set (its slab is then drained).
pub fn take_owned_sparse(id: usize) -> bool {
    OWNED_SPARSE.take(id)
}

/// Bytes in the transfer stacks of classes above [`SHARED_ABOVE`].
static SHARED_BYTES: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));

/// How many objects the transfer stack of class `c` may hold: about 256 KiB worth, at least
/// one full batch, at most [`TRANSFER_SLOTS`]. A table: `free_batch` reads it on every
/// overflow, before the lock, to skip a full stack, where the formula was a division.
fn transfer_limit(c: usize) -> usize {
    TRANSFER_LIMIT[c] as usize
}

/// [`transfer_limit`] per class.
static TRANSFER_LIMIT: [u16; NUM_CLASSES] = {
    let mut t = [0u16; NUM_CLASSES];
    let mut c = 1;
    while c < NUM_CLASSES {
        let batch = crate::size_class::CLASS_BATCH[c] as usize;
        let per_bytes = (256 << 10) / crate::size_class::CLASS_SIZE[c] as usize;
        t[c] = crate::size_class::clamp(per_bytes, batch, TRANSFER_SLOTS) as u16;
        c += 1;
    }
    t
};

/// Shards each class's transfer stack has at most: slab `i` pushes onto shard `i % shards` and
/// refills from it first ([`set_shards`]).
pub const MAX_SHARDS: usize = 8;

/// Shards in use: 1 until the per-CPU layer calls [`set_shards`].
static SHARDS_IN_USE: AtomicUsize = AtomicUsize::new(1);

/// Splits every class's transfer stack into `n` shards (1 to [`MAX_SHARDS`]; `n` is clamped).
/// The per-CPU layer calls it once, when it maps its slabs, with their count: slab `i` then
/// pushes its overflow onto shard `i % n` only (past it, onto the spans: [`put_on_stack`]) and
/// takes its refills from there first; from the other shards it takes the objects of its own
/// spans first, and the rest only where the alternative is new memory ([`alloc_batch_home`]).
/// So a CPU gets back the objects it gave up (lines its own cache holds) and two CPUs
/// overflowing the same class mostly meet on no lock (slabs `i` and `i + n` share a shard;
/// another slab locks a shard only to take what it holds of that slab's spans, or when the
/// alternative is new memory). With more than one shard each holds at most half the class's
/// limit ([`shard_limit`]) and all of them together at most the limit (`Central::stacked`).
/// Objects stacked before stay where they are.
///
/// Why (docs/design.md, "Central lists"): with one stack per class, two threads each
/// overflowing and refilling the same classes swapped their objects through it, and a thread
/// took 1.6-1.9x the CPU time per thread it took alone on bursts of 96-224 B objects.
pub fn set_shards(n: usize) {
    SHARDS_IN_USE.store(n.clamp(1, MAX_SHARDS), Ordering::Relaxed);
}

/// Shards in use ([`set_shards`]); each caller reads it once and passes it on.
fn shards() -> usize {
    SHARDS_IN_USE.load(Ordering::Relaxed)
}

/// How many objects one of `shards` shards of class `c`'s transfer stack may hold: the class's
/// limit ([`transfer_limit`]) with one shard, half of it (rounded up) with more, however many:
/// split evenly over 8 shards, a share of 64 objects gave back most of the shards' gain (two
/// threads on 96-224 B bursts: 1.48x one thread's time per thread against 1.15x with 2
/// shards; docs/benchmarks.md, "Session 50"). A shard stacked before [`set_shards`] may hold
/// more, up to the class's limit, and takes nothing until it is below its limit again.
fn shard_limit(c: usize, shards: usize) -> usize {
    if shards == 1 {
        transfer_limit(c)
    } else {
        transfer_limit(c).div_ceil(2)
    }
}

/// How many of `n` freed objects of class `c` a shard (of `shards`) holding `count` takes, all
/// reserved here: its own room, what the class's limit leaves over every shard
/// (`Central::stacked`), and for classes above [`SHARED_ABOVE`] what the shared budget has
/// left. Called under the shard's lock.
fn stack_room(c: usize, shards: usize, count: usize, n: usize) -> usize {
    let room = shard_limit(c, shards).saturating_sub(count).min(n);
    if room == 0 {
        return 0;
    }
    let stacked = &CENTRAL[c].stacked;
    let mut take = 0;
    let _ = stacked.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
        take = room.min(transfer_limit(c).saturating_sub(s));
        (take > 0).then_some(s + take)
    });
    let size = size_of(c);
    if size <= SHARED_ABOVE || take == 0 {
        return take;
    }
    let mut shared = 0;
    let _ = SHARED_BYTES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
        shared = take.min(SHARED_BUDGET.saturating_sub(used) / size);
        (shared > 0).then_some(used + shared * size)
    });
    if shared < take {
        stacked.fetch_sub(take - shared, Ordering::Relaxed);
    }
    shared
}

/// Accounts for `n` objects of class `c` leaving a shard of its stack (called under that
/// shard's lock, so that `Central::stacked` is every shard's count while all are locked).
fn stack_left(c: usize, n: usize) {
    if n == 0 {
        return;
    }
    CENTRAL[c].stacked.fetch_sub(n, Ordering::Relaxed);
    let size = size_of(c);
    if size > SHARED_ABOVE {
        SHARED_BYTES.fetch_sub(n * size, Ordering::Relaxed);
    }
}

/// One shard of a class's transfer stack: whole batches of free objects between the per-CPU
/// caches, under a lock of its own that is held for a `memcpy` (or, for another slab's
/// refill, a look at up to [`HOMED_SCAN`] entries' page-map homes: [`take_homed`]) and nothing
/// else. Its slots live
/// in [`STACKS`], apart from the locks and counts (see there); a `Transfer` exists only inside
/// [`SHARDS`], and its position there names the shard and class whose slots it owns.
struct Transfer {
    count: usize,
}

/// A shard of a class's transfer stack: its lock and the counts read without it. A line of its
/// own, so that the slabs using different shards write different lines.
#[repr(align(64))]
struct Shard {
    transfer: Mutex<Transfer>,
    /// Objects in this shard, written under its lock and read without it: for statistics, and
    /// to skip a shard that looks empty or full (`alloc_batch_home`, `free_batch_from`).
    cached: AtomicUsize,
    /// `cached` as the previous idle check saw it ([`flush_idle`]).
    last_seen: AtomicUsize,
}

const _: () = assert!(core::mem::size_of::<Shard>() == 64);

/// Every shard of every class's transfer stack, by shard, then class (index 0 unused).
static SHARDS: [[Shard; NUM_CLASSES]; MAX_SHARDS] = [const {
    [const {
        Shard {
            transfer: Mutex::new(Transfer { count: 0 }),
            cached: AtomicUsize::new(0),
            last_seen: AtomicUsize::new(0),
        }
    }; NUM_CLASSES]
}; MAX_SHARDS];

/// Objects of class `c` in its transfer stack, all shards (`Central::stacked`, read without
/// the locks).
pub fn cached(c: usize) -> usize {
    CENTRAL[c].stacked.load(Ordering::Relaxed)
}

/// The shards slab `near` tries, of `n`, in turn: its own (`near % n`), then the ones after it.
fn shard_order(near: usize, n: usize) -> impl Iterator<Item = usize> {
    let first = near % n;
    (first..n).chain(0..first)
}

/// The slots of every transfer stack shard, by shard, then class. Apart from [`SHARDS`] so
/// that the locks and counts of all classes share a few pages: with each class's 4 KiB of slots
/// beside its locks, a process touched one more page (a page fault) per class it used, even
/// when it never stacked an object (about 45 of the ~120 page faults the library added to a
/// short `git hash-object`). Zeroed (3.2 MiB of `.bss`): only the slots used are backed.
/// Aligned to 128 bytes (the pair of lines the adjacent-line prefetcher fetches), so that each
/// (shard, class) row of 4 KiB, written under its own lock, has its cache lines to itself
/// (`sync`, "Statics and cache lines").
#[repr(align(128))]
struct Stacks(UnsafeCell<[[[*mut u8; TRANSFER_SLOTS]; NUM_CLASSES]; MAX_SHARDS]>);

const _: () = assert!(
    core::mem::align_of::<Stacks>() == 128 && (TRANSFER_SLOTS * 8).is_multiple_of(128),
    "every row of the transfer stacks' slots starts a 128-byte block"
);

// SAFETY: shard `k`'s slots of class `c` are reached only through `SHARDS[k][c]`'s `Transfer`,
// that is under its lock ([`Transfer::stack`]).
unsafe impl Sync for Stacks {}

static STACKS: Stacks = Stacks(UnsafeCell::new(
    [[[null_mut(); TRANSFER_SLOTS]; NUM_CLASSES]; MAX_SHARDS],
));

/// The class whose `Central` holds `field` (a `Spans` inside `CENTRAL`): the index of the
/// 128-byte block its address falls in.
fn class_holding<T>(field: &T) -> usize {
    (field as *const T as usize - CENTRAL.as_ptr() as usize) / core::mem::size_of::<Central>()
}

impl Transfer {
    /// The shard and class whose slots these are, as `(shard, class)`: its place in `SHARDS`.
    fn place(&self) -> (usize, usize) {
        let at = (self as *const Self as usize - SHARDS.as_ptr() as usize)
            / core::mem::size_of::<Shard>();
        let (k, c) = (at / NUM_CLASSES, at % NUM_CLASSES);
        debug_assert!(core::ptr::eq(SHARDS[k][c].transfer.data_ptr(), self));
        (k, c)
    }

    /// The shard's slots, to read (the first `count` hold objects).
    #[cfg(any(test, feature = "fuzzing"))]
    fn slots(&self) -> &[*mut u8; TRANSFER_SLOTS] {
        let (k, c) = self.place();
        // SAFETY: `self` is `SHARDS[k][c]`'s `Transfer`, borrowed (through its lock), so
        // nothing writes those slots while the returned borrow lives.
        unsafe { &(*STACKS.0.get())[k][c] }
    }

    /// The shard's slots (the first `count` hold objects).
    fn stack(&mut self) -> &mut [*mut u8; TRANSFER_SLOTS] {
        let (k, c) = self.place();
        // SAFETY: `self` is `SHARDS[k][c]`'s `Transfer`, borrowed mutably (through its lock),
        // so nothing else reaches those slots while the returned borrow lives.
        unsafe { &mut (*STACKS.0.get())[k][c] }
    }
}

/// A class's spans that still have free or uncarved objects, under the span lock, and the
/// spans it gave back to the page heap lately ([`Spans::hints`]). A `Spans` exists only inside
/// [`CENTRAL`] (built by its initialiser, never moved out), so its address names its class
/// ([`Spans::class`]) and a `&mut Spans` is always borrowed through that class's lock.
struct Spans {
    list: SpanList,
    /// How many of the class's [`HINTS`] slots hold a span given back (at most `HINTS`).
    hints_len: u8,
    /// The slot the next span given back goes to (the newest is the one before it).
    hints_next: u8,
    /// Spans of the small heap's length ([`CLASS_PAGES_SMALL_HEAP`]) the class gave back to
    /// the page heap during maintenance tick `churn_tick` (counted by [`release_spans`], read
    /// by [`Spans::churning`]).
    churned: u32,
    /// The tick ([`TICK`]) `churned` counts in.
    churn_tick: u64,
}

/// Maintenance ticks so far ([`new_tick`]): the window of the span churn counts, and the
/// tick count `stats` reports ([`ticks`]).
static TICK: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// Short spans (of the small heap's length) a class gives back to the page heap within one
/// maintenance tick (a quarter of `decay_ms` within 10 ms to 1 s: 250 ms by default), after
/// which it takes long ones even while the heap is small, until the next tick. A class giving
/// back 8 MiB or more of short spans that often is cycling them: a burst past the per-CPU
/// caches whose objects stay below [`LONG_SPANS_FROM`] per class (several classes at once:
/// `shbench`, the runner's `mixed-bursts`) pays a page-heap operation, a span record and a
/// bitmap per span for memory it takes straight back. Only classes below [`HINTS_FROM`] count:
/// the larger ones take the pages of the spans they gave back first ([`Spans::take_hint`]),
/// short or not.
///
/// Measured against the build without (docs/benchmarks.md, "Session 41"): one-thread bursts
/// 0.88x the time with the sizes' band fixed and 0.85x with it moving, sh6 0.89x, the runner's
/// `mixed-bursts` 0.91-0.97x; peak RSS of `mixed-bursts` 1.01-1.06x across three runs and of
/// sh6 17.2 against 16.4 MiB (long spans hold a partly used 64 KiB where short ones went back
/// page by page), none resolved on the runner's other sixteen workloads. A threshold of 64
/// raised `realloc-growth`'s peak RSS by 7 %.
const CHURN_SPANS: u32 = 1024;

impl Spans {
    /// Whether the class gave back [`CHURN_SPANS`] short spans in the current tick.
    fn churning(&self) -> bool {
        self.churn_tick == TICK.load(Ordering::Relaxed) && self.churned >= CHURN_SPANS
    }

    /// Counts `n` short spans given back now.
    fn note_churn(&mut self, n: u32) {
        let tick = TICK.load(Ordering::Relaxed);
        if self.churn_tick != tick {
            self.churn_tick = tick;
            self.churned = 0;
        }
        self.churned = self.churned.saturating_add(n);
    }
}

/// Starts a new maintenance tick for the span churn counts ([`CHURN_SPANS`]); maintenance
/// calls it once a tick (so it counts the ticks too).
pub fn new_tick() {
    TICK.fetch_add(1, Ordering::Relaxed);
}

/// Maintenance ticks run so far ([`new_tick`]).
pub fn ticks() -> u64 {
    TICK.load(Ordering::Relaxed)
}

/// Spans given back to the page heap that a class remembers, to take their pages back first.
const HINTS: usize = 64;
/// Classes of at least this size (a page) remember the spans they give back. A span of
/// smaller objects is touched whole as it is carved and used, so any resident pages serve it
/// as well as its old ones, and put back in its old place it only splits runs the heap's own
/// rule would have kept whole. (With every class remembering, before the large-block test,
/// the runner's `thread-churn` read 1.02x its peak RSS; with this bound it reads 1.00–1.02x,
/// within its run-to-run spread: docs/benchmarks.md, "Session 33".)
const HINTS_FROM: usize = PAGE;
/// Remembered spans a class looks at, newest first, before it takes a span where the page
/// heap's own rules put it: one that another class or a large block took since fails at once.
const HINT_TRIES: usize = 4;

/// Where a hint keeps the page heap's large epoch (`PageHeap::large_epoch`) at the span's
/// give-back: above the 48 bits of an address.
const EPOCH_SHIFT: u32 = 48;

/// For each class, the spans it gave back to the page heap lately, newest last: each a start
/// with the span's length in pages in the bits below [`PAGE`] and the page heap's large epoch
/// at the give-back above bit [`EPOCH_SHIFT`]. A class that needs a span takes
/// one of these back first, if its pages are still free and may be resident
/// (`PageHeap::alloc_span_at`): its objects then start on the pages they started on before.
/// Without it, a program that frees a round of mid-size blocks and allocates the next carved
/// each class at new offsets in the merged free runs, and a block's first page was often one
/// nothing had touched (`benches/c/partial_buffers.c`: 33,800 page faults in 50 rounds and a
/// resident peak of 137 MB, tcmalloc-minimal 18,100 and 78 MB). Class `c`'s slots are reached
/// only through `CENTRAL[c]`'s `Spans`, that is under its span lock ([`Spans::hints`]).
/// Aligned to 128 bytes, so that each class's row (512 bytes), written under its own lock, has
/// its cache lines to itself (`sync`, "Statics and cache lines").
#[repr(align(128))]
struct Hints(UnsafeCell<[[usize; HINTS]; NUM_CLASSES]>);

const _: () = assert!(
    core::mem::align_of::<Hints>() == 128 && (HINTS * 8).is_multiple_of(128),
    "every class's row of hint slots starts a 128-byte block"
);

// SAFETY: class `c`'s slots are reached only through `CENTRAL[c]`'s `Spans`, under its lock.
unsafe impl Sync for Hints {}

static HINT_SLOTS: Hints = Hints(UnsafeCell::new([[0; HINTS]; NUM_CLASSES]));

impl Spans {
    /// Takes up to `out.len()` objects of listed span `s` into `out` (lowest address first,
    /// carving as needed: [`take_from_span`]) and unlists it once it has none left to give;
    /// returns how many. `c` is this list's class.
    ///
    /// # Safety
    /// `s` is a span of this list (a live small span of class `c`).
    unsafe fn take_listed(&mut self, s: *mut Span, c: usize, out: &mut [*mut u8]) -> usize {
        debug_assert_eq!(c, self.class());
        // SAFETY: the caller's contract; `self` is borrowed through the class lock, which
        // guards the span's bitmap, counters and list links.
        unsafe {
            let n = take_from_span(s, c, size_of(c), out);
            if (*s).in_use() == (*s).capacity {
                self.list.remove(s);
                (*s).listed = false;
            }
            n
        }
    }

    /// The class whose spans these are: its place in `CENTRAL`. (The hint slots live apart,
    /// in [`HINT_SLOTS`], so that a class's 128-byte block in `CENTRAL` stays one line pair and
    /// the slots of classes that never remember cost no touched page.)
    fn class(&self) -> usize {
        let c = class_holding(self);
        debug_assert!(core::ptr::eq(CENTRAL[c].spans.data_ptr(), self));
        c
    }

    /// The class's hint slots.
    fn hints(&mut self) -> &mut [usize; HINTS] {
        let c = self.class();
        // SAFETY: `self` is `CENTRAL[c]`'s `Spans`, borrowed mutably (through its lock), so
        // nothing else reaches class `c`'s slots while the returned borrow lives.
        unsafe { &mut (*HINT_SLOTS.0.get())[c] }
    }

    /// Remembers span `s`, given back to the page heap now, whose large epoch
    /// (`PageHeap::large_epoch`) is `epoch`; the oldest goes when all [`HINTS`] slots are
    /// taken.
    ///
    /// # Safety
    /// `s` is a valid span record of this class.
    unsafe fn note_given_back(&mut self, s: *mut Span, epoch: u16) {
        // SAFETY: the caller's contract.
        let (start, pages) = unsafe { ((*s).start, (*s).pages) };
        debug_assert!(start.is_multiple_of(PAGE) && pages < PAGE && start >> EPOCH_SHIFT == 0);
        let at = self.hints_next as usize;
        self.hints()[at] = start | pages | (epoch as usize) << EPOCH_SHIFT;
        self.hints_next = ((at + 1) % HINTS) as u8;
        self.hints_len = (self.hints_len as usize + 1).min(HINTS) as u8;
    }

    /// The newest span remembered, as `(start, pages, large epoch when given back)`,
    /// forgotten now; `None` if none is.
    fn take_hint(&mut self) -> Option<(usize, usize, u16)> {
        if self.hints_len == 0 {
            return None;
        }
        let at = (self.hints_next as usize + HINTS - 1) % HINTS;
        self.hints_next = at as u8;
        self.hints_len -= 1;
        let h = self.hints()[at];
        let start = h & ((1 << EPOCH_SHIFT) - 1) & !(PAGE - 1);
        Some((start, h & (PAGE - 1), (h >> EPOCH_SHIFT) as u16))
    }
}

/// One class's central list: its spans (its transfer stack's shards are in [`SHARDS`]).
///
/// Lock order: a transfer stack shard, then `spans`, then the page heap. A refill or an
/// overflow that the transfer stack can serve takes only shard locks, one at a time; the span
/// lists are reached only when the slab's shard (and, for a refill, what the others hold of its
/// spans) is empty, or its shard full or the shards together at the class's limit (overflow;
/// [`alloc_batch_home`], [`put_on_stack`]).
#[repr(align(128))] // each class's span lock on cache lines of its own
pub struct Central {
    spans: Mutex<Spans>,
    /// Objects of this class outside their spans: for statistics, and the hint by which
    /// [`span_pages`] chooses long spans for a class with many out.
    pub out_of_spans: AtomicUsize,
    /// Objects in all shards of this class's transfer stack together, reserved before a push
    /// and released when objects leave (a take, a flush), each under the shard's lock: at most
    /// the class's limit ([`stack_room`]). Every CPU writes it on every push and take, as it
    /// wrote the single stack's lock; measured without it, no faster (docs/design.md, "Central
    /// lists").
    stacked: AtomicUsize,
}

// SAFETY: the raw pointers are objects and spans owned by the allocator, touched only under
// the mutexes.
unsafe impl Send for Transfer {}
// SAFETY: as above.
unsafe impl Send for Spans {}

// A class's span lock and counts fit in one aligned block, so a process that uses a class
// touches its 128 bytes here, not a page of its own (the slots live in `STACKS`).
const _: () = assert!(core::mem::size_of::<Central>() == 128);

/// The central lists, indexed by class (index 0 unused).
pub static CENTRAL: [Central; NUM_CLASSES] = [const {
    Central {
        spans: Mutex::new(Spans {
            list: SpanList::new(),
            hints_len: 0,
            hints_next: 0,
            churned: 0,
            churn_tick: 0,
        }),
        out_of_spans: AtomicUsize::new(0),
        stacked: AtomicUsize::new(0),
    }
}; NUM_CLASSES];

/// Takes up to `out.len()` objects of class `c`; returns how many were written (0 only when
/// memory is exhausted). For a caller without a slab: the transfer stack's shard 0 first.
pub fn alloc_batch(c: usize, out: &mut [*mut u8]) -> usize {
    alloc_batch_home(c, out, crate::span::NO_HOME, 0)
}

/// [`alloc_batch`] for the refill of slab `near` (its index, or any key: its shard
/// `near % shards` is tried first, [`set_shards`]): a span taken from the page heap gets `home`
/// as its home.
///
/// Where the objects come from, in turn, for a slab with a home (owner return, `home` not
/// `NO_HOME`; `home` is then the slab `near` names):
/// 1. its own shard;
/// 2. objects of its own spans, or of spans with no home, in the other shards (what another
///    slab gave up of them: [`take_homed`]);
/// 3. the class's listed spans whose home it is, among the first [`HOME_WALK`];
/// 4. any listed span;
/// 5. the other shards, whatever they hold, only when the page heap has no run with resident
///    pages for a span of the class ([`PageHeap::has_resident_fit`](crate::page_heap)): taking
///    another slab's objects then saves faulting in new memory;
/// 6. a new span.
///
/// Why the other shards come so late: what a slab gave up is the memory its CPU wrote last,
/// and a slab refilling from another's shard hands its program lines the other CPU's cache
/// holds. Two threads bursting on two CPUs (`benches/c/burst_threads.c`, `mixed-bursts`) took
/// each other's objects this way for 13-14 % of their allocations of 16-256 B (3-4 % with
/// this order), and took 0.94-0.955x the CPU time with it (docs/benchmarks.md, "Session 53").
/// Without step 5, `rounds`, whose threads free each other's objects, held 2-4 % more at its
/// peak (10 % without step 2 either): one slab took new spans while the other's shard was full.
///
/// `has_resident_fit` is a likely answer, not a certain one: any dirty range in the run the
/// page heap would choose counts (a dirty range is a hull), and a class's remembered spans
/// ([`Hints`], classes of a page or more) are not looked at.
///
/// Without a home (the fallback, [`alloc_batch`]): every shard, own first, then the spans.
pub fn alloc_batch_home(c: usize, out: &mut [*mut u8], home: u32, near: usize) -> usize {
    alloc_batch_with(c, out, home, near, has_resident_fit)
}

/// [`alloc_batch_home`] with `resident` deciding step 5 (whether the page heap would carve the
/// class's next span from resident pages; the tests choose).
fn alloc_batch_with(
    c: usize,
    out: &mut [*mut u8],
    home: u32,
    near: usize,
    resident: impl Fn(&Spans, usize) -> bool,
) -> usize {
    let want = out.len();
    let homed = home != crate::span::NO_HOME;
    // Shards seen empty are not locked: a burst past the per-CPU caches takes every batch
    // from the spans, and each lock is an atomic exchange on the way in and out.
    let mut got = take_from_stack(c, out, near, true, if homed { 1 } else { MAX_SHARDS });
    if homed && got < want {
        got += take_homed(c, &mut out[got..], near, home);
    }
    if got == want {
        return want;
    }
    let central = &CENTRAL[c];
    let mut from_spans = 0;
    let mut g = central.spans.lock();
    if homed {
        let n = take_from_home_spans(&mut g, &mut out[got..], home);
        (got, from_spans) = (got + n, n);
    }
    let mut stole = !homed;
    while got < want {
        let inner = &mut *g;
        let mut s = inner.list.first();
        if s.is_null() {
            if !stole && others_hold(c, near) && !resident(inner, c) {
                // Step 5: the other shards (their locks come before this one).
                stole = true;
                drop(g);
                got += take_from_stack(c, &mut out[got..], near + 1, true, shards() - 1);
                g = central.spans.lock();
                continue;
            }
            s = new_span(inner, c, home, false);
            if s.is_null() {
                break;
            }
            // SAFETY: a fresh span of class `c`, unlisted, under the class lock.
            unsafe {
                (*s).listed = true;
                inner.list.push(s);
            }
        }
        // SAFETY: `s` is a listed span of this class (the list's first, or a fresh one just
        // listed).
        let n = unsafe { inner.take_listed(s, c, &mut out[got..]) };
        (got, from_spans) = (got + n, from_spans + n);
    }
    central
        .out_of_spans
        .fetch_add(from_spans, Ordering::Relaxed);
    if got == 0 {
        // The page heap found no memory for a span. The shards were seen empty without their
        // locks and may have been filled since: look under the locks before reporting
        // exhaustion.
        drop(g);
        got = take_from_stack(c, out, near, false, MAX_SHARDS);
    }
    got
}

/// Listed spans of a class a refill looks at for one of its own home ([`alloc_batch_home`]'s
/// step 3) before it takes any.
const HOME_WALK: usize = 8;

/// Entries of another slab's shard, from its top, that [`take_homed`] looks at.
const HOMED_SCAN: usize = 64;

/// [`alloc_batch_home`]'s step 3: up to `out.len()` objects from the listed spans of `inner`'s
/// class (a `CENTRAL` entry's spans, borrowed through its lock) whose home is `home`, among
/// the first [`HOME_WALK`] of the list; returns how many. A span left with nothing to give
/// leaves the list.
fn take_from_home_spans(inner: &mut Spans, out: &mut [*mut u8], home: u32) -> usize {
    let c = inner.class();
    let mut got = 0;
    let mut s = inner.list.first();
    for _ in 0..HOME_WALK {
        if s.is_null() || got == out.len() {
            break;
        }
        // SAFETY: listed spans of class `c`, under its lock (held for as long as `inner` is
        // borrowed): live small spans; `next` is read before `take_listed` may unlist `s`.
        unsafe {
            let next = (*s).next;
            if (*s).home() == home {
                got += inner.take_listed(s, c, &mut out[got..]);
            }
            s = next;
        }
    }
    got
}

/// Whether a shard other than slab `near`'s looks as if it held objects of class `c` (read
/// without the locks).
fn others_hold(c: usize, near: usize) -> bool {
    shard_order(near, shards())
        .skip(1)
        .any(|k| SHARDS[k][c].cached.load(Ordering::Relaxed) != 0)
}

/// Whether the page heap could carve class `c`'s next span (the length [`new_span`] would
/// take) from a free run that may hold resident pages.
fn has_resident_fit(inner: &Spans, c: usize) -> bool {
    let heap = HEAP.lock();
    heap.has_resident_fit(span_pages(inner, c, false, heap.stats().mapped) as usize)
}

/// A fresh span of class `c` from the page heap, with its bitmap, home `home`, unlisted; null
/// when the page heap found no memory. Small spans while the heap is small (a program touching
/// many classes pays about a page for each), 64 KiB ones once it is large (bounded metadata per
/// byte), or once the class has `LONG_SPANS_FROM` out or churns short spans (fewer page-heap
/// operations a burst).
fn new_span(inner: &mut Spans, c: usize, home: u32, long: bool) -> *mut Span {
    let size = size_of(c);
    let mut heap = HEAP.lock();
    let small_heap = heap.stats().mapped <= SMALL_HEAP_BYTES;
    let pages = span_pages(inner, c, long, heap.stats().mapped);
    let mut s = null_mut();
    // The pages of a span the class gave back first, where they are still free.
    for _ in 0..HINT_TRIES {
        let Some((at, length, epoch)) = inner.take_hint() else {
            break;
        };
        s = heap.alloc_span_at(at, length, c, epoch);
        if !s.is_null() {
            break;
        }
    }
    if s.is_null() {
        s = heap.alloc_span(pages as usize, PAGE, c, SpanState::Small);
    }
    if s.is_null() && pages > CLASS_PAGES_SMALL_HEAP[c] {
        // No run that long (an address-space limit, the heap full): the class's shortest span
        // may still fit where only short runs are free.
        s = heap.alloc_span(
            CLASS_PAGES_SMALL_HEAP[c] as usize,
            PAGE,
            c,
            SpanState::Small,
        );
    }
    if s.is_null() {
        return s;
    }
    // SAFETY: a fresh span of class `c`, owned by this class from now on; its bitmap comes
    // from the heap under the same hold of its lock.
    unsafe {
        let capacity = (*s).bytes() / size;
        let bits = heap.take_bitmap(bitmap_words(capacity));
        if bits.is_null() {
            heap.free_span(s);
            return null_mut();
        }
        (*s).bits = bits;
        (*s).capacity = capacity as u32;
        (*s).populate_ahead = !small_heap && (*s).zeroed && size <= 1 << HALF_SHIFT;
        (*s).set_home(home);
    }
    s
}

/// Pages of class `c`'s next span ([`new_span`]) with `mapped` bytes of heap mapped: the
/// small heap's length while the heap is small, unless `long` is asked for, the class has
/// [`LONG_SPANS_FROM`] out or it churns short spans.
fn span_pages(inner: &Spans, c: usize, long: bool, mapped: usize) -> u16 {
    let busy = long
        || CENTRAL[c].out_of_spans.load(Ordering::Relaxed) * size_of(c) >= LONG_SPANS_FROM
        || inner.churning();
    if mapped <= SMALL_HEAP_BYTES && !busy {
        CLASS_PAGES_SMALL_HEAP[c]
    } else {
        CLASS_PAGES[c]
    }
}

/// Takes a span of class `c` for slab `home` to own (`percpu::owned`; docs/design.md, "Owned
/// spans"): the class's first listed span, else, if `fresh_ok`, a fresh one; either way with
/// home `home`, unlisted and marked [`Span::in_slab`], so this list neither lists it nor returns
/// it to the page heap until [`disown`].
///
/// A listed span of another home (or none) takes the owner's: its objects that are out come
/// back to the owner when others free them (owner return), rather than the owner's own frees
/// of the span's objects going to a home that no longer allocates from it. Kept, those frees
/// found the span foreign on its owner's CPU and sent its objects to the old home, whose full
/// inbox declined most of them: they stayed in the owner's stack and were foreign again at
/// every free, and a burst of mixed sizes on two threads took up to 1.5x its time in about a
/// third of the runs (docs/benchmarks.md, "Session 54"). The old home's frees of the objects it
/// still has out are foreign now and go to the owner: a bounded set, where the owner's every
/// free of the span's objects was foreign before.
///
/// Its owned words are left as they were (no owner): the caller publishes it. Null when no
/// span is listed and `fresh_ok` is false, or the page heap found no memory.
pub fn take_span_to_own(c: usize, home: u32, fresh_ok: bool) -> *mut Span {
    let mut g = CENTRAL[c].spans.lock();
    let inner = &mut *g;
    let mut s = inner.list.first();
    // SAFETY: a listed span of the class, or a fresh one; both under the class lock.
    unsafe {
        if s.is_null() {
            if !fresh_ok {
                return s;
            }
            s = new_span(inner, c, home, true);
            if s.is_null() {
                return s;
            }
        } else {
            inner.list.remove(s);
            (*s).listed = false;
            if (*s).home() != home {
                (*s).set_home(home);
                PAGEMAP.set_home_carved((*s).start, (*s).pages, home_field(home));
            }
        }
        debug_assert!(!(*s).in_slab);
        (*s).in_slab = true;
    }
    s
}

/// Turns span `s`, an owned span of class `old` that its slab just retired, into a span of
/// class `c` for the same slab to own, with nothing carved and home `home`, without the page
/// heap: the slab's span turnover between its classes stays on its own memory, most likely
/// still in its CPU's cache, and off the heap's lock, which two threads bursting at once
/// contended on (docs/design.md, "Kept spans"). `listed` is the count of its owned list, whose
/// objects are dropped with the old layout (every carved object is free: the list and the
/// bitmap hold them all). False, with nothing changed, when some object is out elsewhere,
/// the span's length is not class `c`'s, or no bitmap of the new size was free.
///
/// Like a fresh span from the page heap, the memory is not cleared: the old objects' free tags
/// stay where they were, inside objects of the new layout, where no object starts (a free of an
/// address there is refused by its page-map entry before any tag is read).
///
/// # Safety
/// `s` is a small span of class `old` marked `in_slab`, retired (no section can reach its
/// list any more), and its list was taken by the caller, holding `listed` objects.
pub unsafe fn reclass_owned(s: *mut Span, old: usize, listed: usize, c: usize, home: u32) -> bool {
    // SAFETY: the caller's contract: the span is ours alone (retired, in no list); the old
    // class lock guards its counts against remote frees, which reach its bitmap under it.
    unsafe {
        debug_assert!((*s).in_slab && (*s).class as usize == old && old != c);
        let pages = (*s).pages;
        if pages != CLASS_PAGES[c] as usize {
            return false;
        }
        let capacity = (*s).bytes() / size_of(c);
        let (old_words, words) = (bitmap_words((*s).capacity as usize), bitmap_words(capacity));
        let g = CENTRAL[old].spans.lock();
        if (*s).in_use() as usize != listed {
            return false;
        }
        if old_words == words {
            (*s).bits.write_bytes(0, words);
        } else {
            let mut heap = HEAP.lock();
            let bits = heap.take_bitmap(words);
            if bits.is_null() {
                return false;
            }
            heap.give_bitmap((*s).bits, old_words);
            (*s).bits = bits;
        }
        (*s).set_in_use(0);
        CENTRAL[old]
            .out_of_spans
            .fetch_sub(listed, Ordering::Relaxed);
        drop(g);
        // A span carved whole had a tag written on each of its pages: resident from now on,
        // whatever the page heap found when the slab took it (`Span::resident`).
        (*s).resident |= (*s).carved() == (*s).capacity;
        (*s).class = c as u8;
        (*s).capacity = capacity as u32;
        (*s).set_carved(0);
        (*s).scan = 0;
        (*s).zeroed = false;
        (*s).populate_ahead = false;
        (*s).set_home(home);
        // Every page uncarved again (`carve_page` names the class as it carves): the pages are
        // the span's, which its owner's lock and the retire make ours alone.
        PAGEMAP.set_range((*s).start, pages, entry(s as usize, 0, 0));
    }
    true
}

/// Takes up to `out.len()` objects from span `s`, which a slab owns ([`take_span_to_own`]),
/// into `out`, carving as needed; returns how many (0 when every object of the span is out).
///
/// # Safety
/// `s` is a small span of class `c` marked `in_slab`, whose owning slab's capacity lock the
/// caller holds.
pub unsafe fn take_from_owned(s: *mut Span, c: usize, out: &mut [*mut u8]) -> usize {
    let central = &CENTRAL[c];
    let _g = central.spans.lock();
    // SAFETY: the caller's contract; the class lock is held.
    let got = unsafe {
        debug_assert!((*s).in_slab && (*s).class as usize == c);
        take_from_span(s, c, size_of(c), out)
    };
    central.out_of_spans.fetch_add(got, Ordering::Relaxed);
    got
}

/// Whether span `s`, which a slab owns, has objects in its bitmap or not carved yet: what
/// [`take_from_owned`] would find, read without the class lock.
///
/// No lock is needed for an answer the caller can act on: only the owning slab takes objects
/// out of an owned span (under its capacity lock, which the caller holds; no other slab's
/// refill reaches a span that is not listed), so `in_use` can only fall meanwhile, when frees
/// return objects to the bitmap (under the class lock), and a yes stays true; a no may miss
/// such a free, which the next slow path sees. `capacity` changes only when the slab turns the
/// span over to another class, under the same capacity lock. Taking the class lock here cost a
/// locked acquire and release for every span a refill walked (`percpu::owned`, the bitmap
/// walk: 14 % of the refill's samples in one thread of `benches/c/burst_threads.c`); without
/// it that program's moving band took 11.47 ns an allocation against 11.64
/// (docs/benchmarks.md, "Session 57").
///
/// # Safety
/// `s` is a small span marked `in_slab`, owned by the slab whose capacity lock the caller
/// holds.
pub unsafe fn owned_has_objects(s: *mut Span) -> bool {
    // SAFETY: the caller's contract: the record is live and its `capacity` stable (see above);
    // `in_use` is atomic.
    unsafe {
        debug_assert!((*s).in_slab);
        has_objects(s)
    }
}

/// Whether span `s` has an object to give (free or never carved).
///
/// # Safety
/// `s` is a small span record whose class lock the caller holds, or an owned span whose
/// owner's capacity lock the caller holds ([`owned_has_objects`] says why that suffices).
unsafe fn has_objects(s: *mut Span) -> bool {
    // SAFETY: the caller's contract.
    unsafe { (*s).in_use() < (*s).capacity }
}

/// Ends a slab's ownership of span `s` (class `c`) when every object out of it is on its owned
/// list, which holds `listed` objects: every carved object goes back to its bitmap at once,
/// without reading the list, and the span to the page heap. False (nothing done) when some
/// object is out elsewhere; the caller then gives the list back object by object ([`disown`]).
///
/// # Safety
/// As [`disown`], with `listed` the count of the span's list.
pub unsafe fn disown_whole(s: *mut Span, c: usize, listed: usize) -> bool {
    let central = &CENTRAL[c];
    let mut g = central.spans.lock();
    // SAFETY: the caller's contract; the class lock is held. Every carved object not in the
    // bitmap is on the list (`in_use == listed`), and each carries its free tag (a C free, a
    // carve or a return to the span tagged it), so the bitmap may take them all.
    unsafe {
        if (*s).in_use() as usize != listed {
            return false;
        }
        set_bits((*s).bits, 0, (*s).carved() as usize);
        (*s).scan = 0;
        (*s).set_in_use(0);
        (*s).in_slab = false;
        debug_assert!(!(*s).listed);
        release_spans(&mut g, c, &[s]);
    }
    central.out_of_spans.fetch_sub(listed, Ordering::Relaxed);
    drop(g);
    flush_if_pending();
    true
}

/// Ends a slab's ownership of span `s` (class `c`): gives `objs` (the free objects its owned
/// list held, each tagged free) back to its bitmap and clears [`Span::in_slab`]; then the span
/// returns to the page heap if all its objects are back, or is listed if it has any to give.
///
/// # Safety
/// `s` is a small span of class `c` marked `in_slab` whose owned list no section can reach any
/// more (retired, or drained after the fence), and `objs` are that list's objects.
pub unsafe fn disown(s: *mut Span, c: usize, objs: &[*mut u8]) {
    let central = &CENTRAL[c];
    let mut g = central.spans.lock();
    let inner = &mut *g;
    // SAFETY: the caller's contract; the class lock is held. While `in_slab` is set,
    // `give_back_all` neither lists nor releases the span, so it is still live below.
    unsafe {
        give_back_all(inner, c, objs);
        (*s).in_slab = false;
        if span_updated(inner, s) {
            release_spans(inner, c, &[s]);
        }
    }
    central
        .out_of_spans
        .fetch_sub(objs.len(), Ordering::Relaxed);
    drop(g);
    flush_if_pending();
}

/// Whether class `c`'s transfer stack looked non-empty, any shard (a racy hint, no lock).
pub fn has_transfer(c: usize) -> bool {
    cached(c) != 0
}

/// [`alloc_batch_home`]'s step 2: moves into `out` up to `out.len()` objects of class `c` that
/// the shards other than `near`'s hold and whose span's home is `home` or that have none
/// (their page-map entries say), looking at the top [`HOMED_SCAN`] entries of each shard (the
/// rest keep their order); returns how many. A slab whose objects another CPU freed and could
/// not send home (its inbox was full: `percpu::remote`) gets them back here.
fn take_homed(c: usize, out: &mut [*mut u8], near: usize, home: u32) -> usize {
    let n = shards();
    let mine = crate::pagemap::home_bits(home_field(home));
    let mut got = 0;
    for k in shard_order(near, n).skip(1) {
        let shard = &SHARDS[k][c];
        if got == out.len() {
            break;
        }
        if shard.cached.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let mut t = shard.transfer.lock();
        let count = t.count;
        let low = count.saturating_sub(HOMED_SCAN);
        let mut kept = low;
        for i in low..count {
            if got == out.len() {
                // Full: the rest stay, moved down behind what was kept (if anything was taken).
                if kept != i {
                    t.stack().copy_within(i..count, kept);
                }
                kept += count - i;
                break;
            }
            let p = t.stack()[i];
            // The entry of a free object of a live span of class `c` (objects in a shard are
            // such): its home bits are the span's.
            let bits = crate::pagemap::home_bits(PAGEMAP.get(p as usize));
            if bits == 0 || bits == mine {
                out[got] = p;
                got += 1;
            } else {
                // Written only once an entry below was taken: a scan that takes nothing
                // leaves the other slab's lines clean.
                if kept != i {
                    t.stack()[kept] = p;
                }
                kept += 1;
            }
        }
        if kept != count {
            stack_left(c, count - kept);
            t.count = kept;
            shard.cached.store(kept, Ordering::Relaxed);
        }
    }
    got
}

/// Moves up to `out.len()` objects of class `c` from its transfer stack into `out`: from shard
/// `near % shards` first, then from the others in turn, at most `most` shards, each under its
/// own lock (one at a time), skipping those that look empty when `skip_empty`; returns how
/// many.
fn take_from_stack(
    c: usize,
    out: &mut [*mut u8],
    near: usize,
    skip_empty: bool,
    most: usize,
) -> usize {
    let mut got = 0;
    if out.is_empty() {
        return 0;
    }
    for k in shard_order(near, shards()).take(most) {
        let shard = &SHARDS[k][c];
        if skip_empty && shard.cached.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let mut t = shard.transfer.lock();
        let (m, count) = ((out.len() - got).min(t.count), t.count);
        out[got..got + m].copy_from_slice(&t.stack()[count - m..count]);
        t.count -= m;
        shard.cached.store(t.count, Ordering::Relaxed);
        stack_left(c, m);
        drop(t);
        got += m;
        if got == out.len() {
            break;
        }
    }
    got
}

/// Pushes a prefix of `objs` (free objects of class `c`) onto shard `near % shards` of its
/// transfer stack, up to the shard's limit ([`shard_limit`]), while the class's limit over
/// every shard and, for classes above [`SHARED_ABOVE`], the shared budget last
/// ([`stack_room`]); a shard that looks full is not locked. Returns how many it took.
///
/// Only its own shard: what a slab gives up past it goes back to the spans, where its refills
/// find it first among the spans of its home ([`alloc_batch_home`]), rather than onto another
/// slab's shard, whose slab would take it first (on two CPUs, lines the other CPU wrote last).
fn put_on_stack(c: usize, objs: &[*mut u8], near: usize) -> usize {
    let n = shards();
    let (limit, size) = (shard_limit(c, n), size_of(c));
    let mut put = 0;
    for k in shard_order(near, n).take(1) {
        if CENTRAL[c].stacked.load(Ordering::Relaxed) >= transfer_limit(c)
            || (size > SHARED_ABOVE && SHARED_BYTES.load(Ordering::Relaxed) + size > SHARED_BUDGET)
        {
            break;
        }
        let shard = &SHARDS[k][c];
        if shard.cached.load(Ordering::Relaxed) >= limit {
            continue;
        }
        let mut t = shard.transfer.lock();
        let room = stack_room(c, n, t.count, objs.len() - put);
        let count = t.count;
        t.stack()[count..count + room].copy_from_slice(&objs[put..put + room]);
        t.count += room;
        shard.cached.store(t.count, Ordering::Relaxed);
        drop(t);
        put += room;
        if put == objs.len() {
            break;
        }
    }
    put
}

/// Spans returned to the page heap under one hold of its lock (see [`give_back_all`]).
const SPANS_PER_LOCK: usize = 8;

/// Takes up to `out.len()` objects from span `s` (class `c`, objects of `size` bytes) into
/// `out`, lowest address first, carving the next half page whenever every carved object is
/// out; returns how many (fewer only when the whole span is out).
///
/// The free bitmap is read a word at a time and no object is touched: the list this replaced
/// was one dependent load per object (each link lived in the object popped before it), the
/// refill's cost past the per-CPU caches, and a link written over after a free could send it
/// to another object in use.
///
/// # Safety
/// `s` is a live small span of class `c`; the caller holds the class lock.
unsafe fn take_from_span(s: *mut Span, c: usize, size: usize, out: &mut [*mut u8]) -> usize {
    // SAFETY: the caller's contract: the span, its bitmap and counters are this class's.
    unsafe {
        let (start, bits) = ((*s).start, (*s).bits);
        let mut got = 0;
        let mut i = (*s).scan as usize;
        while got < out.len() {
            // Compared without subtracting, so that counts that disagree (`in_use` above
            // `carved`, see `carve_owned`) make it carve on (or end at the span's end), never
            // lead the walk past the bitmap.
            if (*s).carved() as usize <= (*s).in_use() as usize + got {
                (*s).scan = i as u32;
                if !carve_page(s, c, size) {
                    break;
                }
                i = (*s).scan as usize;
            }
            // `scan` is at or below the first word with a bit set, and one is set (an object
            // is in the span): the walk stays inside the bitmap.
            debug_assert!(i < bitmap_words((*s).capacity as usize));
            let mut w = *bits.add(i);
            if w == 0 {
                i += 1;
                continue;
            }
            let base = start + i * 64 * size;
            while w != 0 && got < out.len() {
                out[got] = (base + w.trailing_zeros() as usize * size) as *mut u8;
                got += 1;
                w &= w - 1;
            }
            *bits.add(i) = w;
        }
        (*s).scan = i as u32;
        (*s).set_in_use((*s).in_use() + got as u32);
        got
    }
}

/// Sets bits `[from, to)` of the bitmap at `bits`.
///
/// # Safety
/// The bitmap has at least `to.div_ceil(64)` words, and the caller may write them.
unsafe fn set_bits(bits: *mut u64, from: usize, to: usize) {
    let mut i = from;
    while i < to {
        let (word, low) = (i / 64, i % 64);
        let n = (to - i).min(64 - low);
        let mask = if n == 64 {
            u64::MAX
        } else {
            ((1u64 << n) - 1) << low
        };
        // SAFETY: the caller's contract; `word < to.div_ceil(64)`.
        unsafe { *bits.add(word) |= mask };
        i += n;
    }
}

/// Carves the next half page (one 4 KiB OS page) of span `s` (class `c`, objects of `size`
/// bytes): every object that starts in it is tagged free and set in the span's bitmap, and
/// the page's page-map entry says so — it names the class once the first half is carved, and
/// carries [`SECOND_HALF`] once the second is — until then `free` of an address there takes
/// the checked path and aborts, so an object never handed out can never be freed. Returns
/// false when the whole span is carved.
///
/// Carving writes the tag word of each object it carves (what lets `free` tell a carved,
/// never handed out object from a live one); the half page is about to be used anyway, and
/// the rest of the span stays untouched (carving whole 8 KiB pages touched a second OS page
/// per class in use: about 120 KiB more in a small program). In a span marked
/// [`Span::populate_ahead`] (fresh pages, big heap), a carve at a multiple of
/// [`POPULATE_HALVES`] first faults in that many half pages with one call, under the lock that
/// carving holds (the class lock here, the owner's capacity lock in [`carve_owned`]), as the
/// faults of carving itself are.
///
/// # Safety
/// `s` is a live small span of class `c`; the caller holds the class lock.
unsafe fn carve_page(s: *mut Span, c: usize, size: usize) -> bool {
    // SAFETY: the caller's contract: the span and its pages are this class's.
    unsafe {
        let Some((first, end)) = next_half(s, c) else {
            return false;
        };
        set_bits((*s).bits, first, end);
        (*s).scan = (*s).scan.min((first / 64) as u32);
        carve_half(s, c, size, first, end, false);
        true
    }
}

/// The objects of span `s` (class `c`) that start in its next half page not carved yet,
/// `first..end`; none when the span is carved whole.
///
/// # Safety
/// `s` is a live small span of class `c`; the caller may carve it (see [`carve_half`]).
unsafe fn next_half(s: *mut Span, c: usize) -> Option<(usize, usize)> {
    // SAFETY: the caller's contract.
    let (first, cap) = unsafe { ((*s).carved() as usize, (*s).capacity as usize) };
    if first == cap {
        return None;
    }
    Some((first, half_end(first, c, cap)))
}

/// One past the last object (of class `c`, `cap` in the span) that starts in the half page
/// where object `first` starts. Divides by the size with [`object_index`]'s multiplication:
/// the `div`s here and in `owned::collect_count` held about a third of an owned collect's
/// samples in `benches/c/burst_phases.c`'s moving band; without them the collect takes a fifth
/// fewer and the phase reads level, bound by the carve's stores (docs/benchmarks.md,
/// "Session 68").
fn half_end(first: usize, c: usize, cap: usize) -> usize {
    let size = size_of(c);
    let next_half = ((first * size) >> HALF_SHIFT) + 1;
    // The first object starting at or past the next half page: ceil(bytes / size).
    let end = object_index((next_half << HALF_SHIFT) + size - 1, c);
    debug_assert_eq!(end, (next_half << HALF_SHIFT).div_ceil(size));
    end.min(cap)
}

/// Carves the objects `first..end` of span `s` (class `c`, objects of `size` bytes), the next
/// half page ([`next_half`]): faults ahead first where [`Span::populate_ahead`] says so, tags
/// each object free, raises `carved` to `end`, then publishes the page's entry naming the
/// class (with [`SECOND_HALF`] for a second half), after which `free` accepts the objects.
/// Neither the bitmap nor `in_use` changes: the caller puts the objects in one or the other.
/// With `link` (an owned span's carve, [`carve_owned`]) each object's first word also names
/// the object after it, encoded with the free tag's key as an owned list's link is, written in
/// the same pass as its tag (the two words share a line).
///
/// # Safety
/// `s` is a live small span of class `c`, and the caller is its only carver: it holds the
/// class lock, or owns the span ([`carve_owned`]).
unsafe fn carve_half(s: *mut Span, c: usize, size: usize, first: usize, end: usize, link: bool) {
    // SAFETY: the caller's contract: the span and its pages are this class's, and the objects
    // `first..end` were never handed out (nobody else reads or writes them).
    unsafe {
        let half = (first * size) >> HALF_SHIFT;
        if (*s).populate_ahead && half.is_multiple_of(POPULATE_HALVES) {
            let from = (*s).start + (half << HALF_SHIFT);
            let to = (from + (POPULATE_HALVES << HALF_SHIFT)).min((*s).start + (*s).bytes());
            let _errno = os::ErrnoKeeper::new();
            os::populate_write(from as *mut u8, to - from);
        }
        free_tag::init();
        // The start and the key in locals: the stores below could alias them for the
        // compiler, which then loaded both again for every object.
        let (start, key) = ((*s).start, free_tag::key());
        for i in first..end {
            let p = (start + i * size) as *mut u8;
            free_tag::set_with(p, key);
            if link {
                p.cast::<usize>().write(key ^ (p as usize + size));
            }
        }
        (*s).set_carved(end as u32);
        let page = half >> 1;
        let last = if page + 1 == (*s).pages { LAST_PAGE } else { 0 };
        let second = if half & 1 == 1 { SECOND_HALF } else { 0 };
        PAGEMAP.set(
            (*s).start + (page << PAGE_SHIFT),
            entry(s as usize, c, page) | home_field((*s).home()) | last | second,
        );
    }
}

/// One more than the most objects of class `c` that start in one half page: room enough for
/// what [`carve_owned`] takes past what it is asked for (at most that most, less one).
pub const fn half_objects(c: usize) -> usize {
    (PAGE / 2).div_ceil(crate::size_class::CLASS_SIZE[c] as usize) + 1
}

/// Carves objects of span `s` (class `c`), which the calling slab owns, without the class
/// lock: whole half pages, until at least `want` (or the span is carved whole). Returns the
/// first object and how many, which may exceed `want` by up to a half page's objects: a run of
/// adjacent objects, each tagged free and, but the last, linked to the next as an owned list's
/// objects are (the last's first word names the object past it; the push of the run writes
/// it), so the caller hands out the first and pushes the rest as one chain
/// (`percpu::owned`'s collect) with no array of pointers. Returns (null, 0), with nothing
/// done, when the span's bitmap may hold objects (remote frees returned some: `carved` above
/// `in_use`; those only [`take_from_owned`] may take, under the lock) or it is carved whole.
///
/// Why no lock: objects not carved yet belong to nobody (no cache, list or user holds them),
/// an owned span is carved only by its owner, under its capacity lock (the locked carve,
/// [`take_from_owned`], as well), and the class lock's other users touch an owned span only through
/// objects handed out earlier (remote frees into its bitmap). They read `carved` (an atomic; it
/// only rises while they can reach the span's objects) and lower `in_use` (an atomic, lowered with
/// a read-modify-write, [`give_back_all`]). `in_use` is raised first, before the objects are
/// tagged: the span's readers (the owner's `free`, which gives the span back when all its objects
/// are on its list; [`span_updated`]) then see it busy a moment early, never free too early, and
/// the read-modify-write's fence finds few stores to wait for. The class's `out_of_spans` (a
/// statistic, and what [`span_pages`] reads) is added to there too, before the tag stores, for
/// the same reason: added after them, its locked add waited for every tag store of the carve
/// to reach the cache (two thirds of `collect`'s samples); before them, the stores drain while
/// the refill goes on (one thread's moving band 0.985x the time: docs/benchmarks.md, "Session
/// 59"). In `benches/c/burst_threads.c`'s moving band, the class lock here cost two threads
/// sharing a class a locked acquire and release of a contended line on every collect
/// (`out_of_spans` is still on that line: docs/benchmarks.md, "Session 58").
///
/// # Safety
/// `s` is a small span of class `c` marked `in_slab`, owned by the slab whose capacity lock
/// the caller holds.
pub unsafe fn carve_owned(s: *mut Span, c: usize, want: usize) -> (*mut u8, usize) {
    let size = size_of(c);
    // SAFETY: the caller's contract: the record is live; `carved`, `capacity` and `start` change
    // only under the capacity lock the caller holds, and `in_use` only falls meanwhile.
    unsafe {
        debug_assert!((*s).in_slab && (*s).class as usize == c);
        let first = (*s).carved() as usize;
        if (*s).in_use() as usize != first {
            return (null_mut(), 0);
        }
        // The halves to carve, then their objects counted out before any is tagged.
        let (cap, mut end) = ((*s).capacity as usize, first);
        while end < cap && end - first < want {
            end = half_end(end, c, cap);
        }
        let got = end - first;
        if got == 0 {
            return (null_mut(), 0);
        }
        (*s).in_use.fetch_add(got as u32, Ordering::Relaxed);
        CENTRAL[c].out_of_spans.fetch_add(got, Ordering::Relaxed);
        let mut from = first;
        while from < end {
            let to = half_end(from, c, cap);
            carve_half(s, c, size, from, to, true);
            from = to;
        }
        (((*s).start + first * size) as *mut u8, got)
    }
}

/// Returns objects of class `c` (each obtained from [`alloc_batch`]), for a caller without a
/// slab: onto the transfer stack's shard 0 (past it, to the spans).
///
/// # Safety
/// Every pointer must be a live object of class `c` that nobody uses any more.
pub unsafe fn free_batch(c: usize, objs: &[*mut u8]) {
    // SAFETY: forwarded contract.
    unsafe { free_batch_from(c, objs, 0) }
}

/// [`free_batch`] from slab `near` (its index, or any key: its shard is `near % shards`,
/// [`set_shards`]). What that shard does not take goes back to the spans.
///
/// # Safety
/// As for [`free_batch`].
pub unsafe fn free_batch_from(c: usize, objs: &[*mut u8], near: usize) {
    let central = &CENTRAL[c];
    // Shards seen full are not locked (see `alloc_batch_home`); `cached` is written under the
    // lock, so a stale reading only sends a batch on or takes the lock for nothing.
    let room = put_on_stack(c, objs, near);
    if room < objs.len() {
        let mut g = central.spans.lock();
        // SAFETY: forwarded from the caller's contract.
        unsafe { give_back_all(&mut g, c, &objs[room..]) };
        central
            .out_of_spans
            .fetch_sub(objs.len() - room, Ordering::Relaxed);
    }
    flush_if_pending();
}

/// Returns objects of class `c` straight to their spans, past the transfer stack: for memory
/// unlikely to be asked for again at this size soon (a block `realloc` moved out of its class).
///
/// # Safety
/// As for [`free_batch`].
pub unsafe fn free_to_spans(c: usize, objs: &[*mut u8]) {
    let central = &CENTRAL[c];
    let mut g = central.spans.lock();
    // SAFETY: forwarded from the caller's contract.
    unsafe { give_back_all(&mut g, c, objs) };
    central
        .out_of_spans
        .fetch_sub(objs.len(), Ordering::Relaxed);
    drop(g);
    flush_if_pending();
}

/// Sets each of `objs` back in its span's free bitmap (and tags it free); a span whose objects
/// are all back returns to the page heap, one that had run dry is listed again.
///
/// Objects of one span often come in runs (a batch freed in the order it was taken, a span's
/// objects carved in address order): a run costs one page-map lookup and one update of the
/// span's scan start, count and listing, where each object used to pay a lookup (root, then
/// leaf, then span: three dependent loads) and a read-modify-write of the span header.
///
/// An object that cannot be in the span its page names — its bit already set, an index past
/// the carved ones, or a page no longer of a live span of class `c` — aborts naming it
/// ([`back_twice`]): what a double free that reached this far leaves. A block freed twice
/// after its span went back to the page heap and was taken again by the same class, at a
/// time its second copy's object is out, cannot be told from a valid return.
///
/// # Safety
/// Every pointer is an object of class `c` (each obtained from this class's spans) that
/// nobody uses, and `inner` is class `c`'s locked spans.
unsafe fn give_back_all(inner: &mut Spans, c: usize, objs: &[*mut u8]) {
    // Spans emptied by this batch, returned to the page heap under one hold of its lock.
    let mut empty = [null_mut(); SPANS_PER_LOCK];
    let mut n_empty = 0;
    let mut rest = objs;
    while let Some((&first, _)) = rest.split_first() {
        let s = span_of(PAGEMAP.get(first as usize)) as *mut Span;
        // SAFETY: a non-null page-map entry names a span record (pool memory, never unmapped);
        // once it is checked to be a live small span of class `c`, its bitmap and counters
        // are this class's lock's, and every object of the run lies inside its bytes, so its
        // index is below the span's capacity and within the bitmap (`bitmap_words`).
        unsafe {
            if s.is_null() || (*s).state != SpanState::Small || (*s).class as usize != c {
                back_twice(first);
            }
            let (lo, hi) = ((*s).start, (*s).start + (*s).bytes());
            let run = rest
                .iter()
                .position(|&o| !(lo..hi).contains(&(o as usize)))
                .unwrap_or(rest.len());
            let bits = (*s).bits;
            let mut scan = (*s).scan as usize;
            for &obj in &rest[..run] {
                let i = object_index(obj as usize - lo, c);
                let (word, bit) = (i / 64, 1u64 << (i % 64));
                if i >= (*s).carved() as usize || *bits.add(word) & bit != 0 {
                    back_twice(obj);
                }
                *bits.add(word) |= bit;
                scan = scan.min(word);
                // Rust's `dealloc` does not tag; a C `free` did already (same value).
                free_tag::set(obj);
            }
            (*s).scan = scan as u32;
            debug_assert!((*s).in_use() as usize >= run);
            // A read-modify-write: the owner of a span a slab owns raises it without this
            // lock ([`carve_owned`]).
            (*s).in_use.fetch_sub(run as u32, Ordering::Relaxed);
            if span_updated(inner, s) {
                if n_empty == empty.len() {
                    // SAFETY: as at the end below.
                    release_spans(inner, c, &empty);
                    n_empty = 0;
                }
                empty[n_empty] = s;
                n_empty += 1;
            }
            rest = &rest[run..];
        }
    }
    // SAFETY: spans emptied above, no longer listed: nothing of the class refers to them.
    unsafe { release_spans(inner, c, &empty[..n_empty]) };
}

/// An object came back to a span that holds it already (its bit set), or to one that cannot
/// hold it (not carved there, or the span gone): it was freed twice, in a way the free tag did
/// not see (two threads freeing it at the same moment, or a Rust `dealloc` of a block freed
/// before). Aborts rather than let a span hand it out twice.
#[cold]
#[inline(never)]
fn back_twice(p: *mut u8) -> ! {
    let mut m = os::Msg::new();
    m.str("free(): double free detected ")
        .hex(p as u64)
        .str(" (the block came back to its span twice)");
    os::abort_with(&m)
}

/// Returns spans of class `c` (whose locked spans `inner` are) whose objects are all back to
/// the page heap, under one hold of its lock; a class of [`HINTS_FROM`] bytes or more
/// remembers each ([`Spans::note_given_back`]).
///
/// # Safety
/// Each span is a small span of class `c` whose objects are all back, unlisted, that nobody
/// else holds.
unsafe fn release_spans(inner: &mut Spans, c: usize, spans: &[*mut Span]) {
    if spans.is_empty() {
        return;
    }
    let remember = size_of(c) >= HINTS_FROM;
    if !remember {
        let short = CLASS_PAGES_SMALL_HEAP[c] as usize;
        let n_short = spans
            .iter()
            // SAFETY: the caller's contract: live span records of emptied spans of the class.
            .filter(|&&s| unsafe { (*s).pages } == short)
            .count();
        inner.note_churn(n_short as u32);
    }
    let mut heap = HEAP.lock();
    for &s in spans {
        // SAFETY: the caller's contract: an emptied span of a class, no longer referred to;
        // its bitmap goes back with it.
        unsafe {
            if remember {
                inner.note_given_back(s, heap.large_epoch());
            }
            heap.give_bitmap((*s).bits, bitmap_words((*s).capacity as usize));
            (*s).bits = null_mut();
            heap.free_span(s);
        }
    }
    if heap.take_shrunk() {
        FLUSH_PENDING.store(true, Ordering::Relaxed);
    }
}

/// After objects came back to span `s`, or a slab gave it up ([`disown`]): unlists it and
/// returns true once all its objects are back (the caller returns it to the page heap), and
/// lists it again if it had run dry and has an object to give (one a slab gave up may have
/// every object out). Does nothing while a slab owns it.
///
/// # Safety
/// `s` is a live small span of the class whose locked spans `inner` are.
unsafe fn span_updated(inner: &mut Spans, s: *mut Span) -> bool {
    // SAFETY: the caller's contract; the class lock guards the span's list fields. A record's
    // extension is pool memory too, always readable (`SpanExt::listed`'s contract).
    unsafe {
        if (*s).in_slab {
            // A slab owns it: it collects these objects itself, and `disown` decides. If every
            // object out of it is on its owner's list now (a snapshot), the owner's next slow
            // path gives it back or keeps it ([`OWNED_FREED`]); the owner's own frees onto the
            // list see that themselves (`percpu::owned::push`), but not frees that come here.
            // A span carved whole with at most half its objects out beyond that list may serve
            // other slabs better ([`OWNED_SPARSE`]). The owned words are read in place (the
            // owner changes the extension's other fields meanwhile); `owner` 0 is
            // `arch::NO_OWNER`.
            let ext = Span::ext(s);
            let (in_use, owner) = ((*s).in_use(), SpanExt::owner(ext));
            if owner != 0 {
                let (id, listed) = (owner as usize - 1, SpanExt::listed(ext));
                if in_use == listed {
                    OWNED_FREED.set(id);
                }
                if (*s).carved() == (*s).capacity
                    && in_use.saturating_sub(listed) * 2 <= (*s).capacity
                {
                    OWNED_SPARSE.set_once(id);
                }
            }
            return false;
        }
        if (*s).in_use() == 0 {
            if (*s).listed {
                inner.list.remove(s);
                (*s).listed = false;
            }
            return true;
        }
        if !(*s).listed && has_objects(s) {
            (*s).listed = true;
            inner.list.push(s);
        }
        false
    }
}

/// Gives every object in the transfer stacks back to its span, so that spans whose objects are
/// all back return to the page heap (used by trim).
pub fn flush_transfer() {
    flush_where(|_, _, _| true);
}

/// Flushes the transfer stack shards whose depth did not change since the previous call.
pub fn flush_idle() {
    flush_where(|shard, _, count| shard.last_seen.swap(count, Ordering::Relaxed) == count);
}

/// Empties the transfer stack shards `pick` chooses (given the shard, its class and its count,
/// for those not empty) back into their spans.
fn flush_where(pick: impl Fn(&Shard, usize, usize) -> bool) {
    let mut buf = [null_mut(); TRANSFER_SLOTS];
    for row in SHARDS.iter() {
        for (c, shard) in row.iter().enumerate().skip(1) {
            let count = shard.cached.load(Ordering::Relaxed);
            if count == 0 || !pick(shard, c, count) {
                continue;
            }
            let central = &CENTRAL[c];
            let mut t = shard.transfer.lock();
            let n = t.count;
            buf[..n].copy_from_slice(&t.stack()[..n]);
            t.count = 0;
            shard.cached.store(0, Ordering::Relaxed);
            stack_left(c, n);
            // The span lock before the shard's lock goes (the documented order): whoever holds
            // both never sees the objects neither stacked nor back in their spans.
            let mut g = central.spans.lock();
            drop(t);
            // SAFETY: objects of the transfer stack are free objects of live spans of `c`, now
            // ours.
            unsafe { give_back_all(&mut g, c, &buf[..n]) };
            central.out_of_spans.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// Takes every class lock (fork prepare). Pair with [`unlock_all`] or [`reset_all_in_child`].
pub fn lock_all() {
    for (c, central) in CENTRAL.iter().enumerate() {
        for row in SHARDS.iter() {
            core::mem::forget(row[c].transfer.lock());
        }
        core::mem::forget(central.spans.lock());
    }
}

/// Releases the locks taken by [`lock_all`] (fork parent).
///
/// # Safety
/// The caller took them with [`lock_all`].
pub unsafe fn unlock_all() {
    for (c, central) in CENTRAL.iter().enumerate() {
        // SAFETY: the caller holds every class lock.
        unsafe {
            central.spans.force_unlock();
            for row in SHARDS.iter() {
                row[c].transfer.force_unlock();
            }
        }
    }
}

/// Resets the locks taken by [`lock_all`] in a fork child.
///
/// # Safety
/// Only in the child of `fork`, after the parent's prepare handler ran [`lock_all`].
pub unsafe fn reset_all_in_child() {
    for (c, central) in CENTRAL.iter().enumerate() {
        // SAFETY: forwarded contract.
        unsafe {
            central.spans.reset_in_child();
            for row in SHARDS.iter() {
                row[c].transfer.reset_in_child();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::class_of;
    use std::vec::Vec;

    /// Takes `bytes` worth of class `c` from the central list, then frees them all.
    fn take_and_free(c: usize, bytes: usize) {
        let mut objs = std::vec![null_mut(); bytes / size_of(c)];
        for chunk in objs.chunks_mut(32) {
            assert_eq!(alloc_batch(c, chunk), chunk.len());
        }
        for chunk in objs.chunks(32) {
            // SAFETY: just taken, never used.
            unsafe { free_batch(c, chunk) };
        }
    }

    /// 4 KiB pages of `[start, start + bytes)` resident now (`mincore`), in order.
    fn resident(start: usize, bytes: usize) -> std::vec::Vec<bool> {
        let mut v = std::vec![0u8; bytes / 4096];
        // SAFETY: the range is a span of the heap's mappings; `v` has a byte per page.
        let r = unsafe { libc::mincore(start as *mut libc::c_void, bytes, v.as_mut_ptr()) };
        assert_eq!(r, 0);
        v.iter().map(|b| b & 1 == 1).collect()
    }

    /// Whether `MADV_POPULATE_WRITE` makes pages resident here: a probe mapping of our own.
    /// False under qemu-user (the aarch64 check), which does not pass the advice on.
    fn populate_honoured() -> bool {
        let len = 2 * 4096;
        let p = os::map(len, 4096).unwrap();
        let done = os::populate_write(p, len) && resident(p as usize, len) == [true; 2];
        // SAFETY: our own probe mapping, used no more.
        unsafe { os::unmap(p, len) };
        done
    }

    /// Whether transparent huge pages may back the process heap's chunks (then a fault maps
    /// 2 MiB and residency says nothing about populating): the option, or with `system` the
    /// kernel's policy.
    fn huge_pages_may_back_the_heap() -> bool {
        match crate::config::get().huge_pages {
            crate::config::HugePages::Never => false,
            crate::config::HugePages::System => {
                std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
                    .is_ok_and(|s| s.contains("[always]"))
            }
            _ => true,
        }
    }

    /// While the heap is past 32 MiB, a span of fresh pages taken for a class up to 4 KiB is
    /// faulted in ahead of carving, [`POPULATE_HALVES`] half pages at a time; one of a larger
    /// class (whose pages carving would not all touch) only as carved. One mode: the central
    /// lists are below the per-CPU layer.
    #[test]
    fn carving_a_fresh_span_of_a_big_heap_faults_pages_in_ahead() {
        // Hold a large span so the heap maps more than 32 MiB while the spans are taken.
        let big = HEAP
            .lock()
            .alloc_span(SMALL_HEAP_BYTES / PAGE + 1, PAGE, 0, SpanState::Large);
        assert!(!big.is_null());
        // Residency shows populating only where the advice is honoured (not under qemu-user)
        // and no huge page backs the heap.
        let huge = huge_pages_may_back_the_heap();
        let observable = !huge && populate_honoured();
        // Classes no other test uses: each takes a span of its own.
        let mut checked = [false; 2];
        for (i, c) in [class_of(1792), class_of(12 << 10)].into_iter().enumerate() {
            let size = size_of(c);
            // Free runs released, so the span comes from pages known to be zero, unless
            // another test frees a run in between (then it is said not zeroed, and skipped).
            HEAP.lock().release_free(u64::MAX);
            let mut obj = [null_mut()];
            assert_eq!(alloc_batch(c, &mut obj), 1);
            let s = span_of(PAGEMAP.get(obj[0] as usize)) as *mut Span;
            // SAFETY: the span of an object just handed out; only this test uses its class.
            let (start, bytes, zeroed, ahead) =
                unsafe { ((*s).start, (*s).bytes(), (*s).zeroed, (*s).populate_ahead) };
            assert_eq!(ahead, zeroed && size <= 4096, "class of {size} B");
            if zeroed && observable {
                checked[i] = true;
                let pages = resident(start, bytes);
                let want = if ahead {
                    POPULATE_HALVES.min(pages.len())
                } else {
                    1
                };
                assert!(pages[..want].iter().all(|&r| r), "{size} B: {pages:?}");
                assert!(!pages[want..].iter().any(|&r| r), "{size} B: {pages:?}");
            }
            // SAFETY: taken above, never used. Straight to its span: a transfer stack would
            // hold it against the budget another test counts.
            unsafe { free_to_spans(c, &obj) };
        }
        // SAFETY: the large span taken above.
        unsafe { HEAP.lock().free_span(big) };
        if huge {
            std::eprintln!("huge pages may back the heap: residency not checked");
        } else if observable {
            assert!(
                checked.iter().any(|&c| c),
                "every span came from dirty pages"
            );
        } else {
            std::eprintln!(
                "MADV_POPULATE_WRITE is not honoured here (emulated?): residency not checked"
            );
        }
    }

    /// While the heap is small, a class takes one-page spans until it has `LONG_SPANS_FROM`
    /// out of its spans, then spans of the big heap's length: a burst past every cache costs
    /// a page-heap operation per 64 KiB, not per 8 KiB. In a child process, whose heap is
    /// fresh and stays below 32 MiB (the lists are below the per-CPU layer: one mode).
    #[test]
    fn a_class_with_much_out_takes_long_spans_in_a_small_heap() {
        crate::passes_in_a_fresh_child("central::tests::child_long_spans", "RSEQMALLOC_LONG_SPANS");
    }

    #[test]
    #[ignore = "run as a child by a_class_with_much_out_takes_long_spans_in_a_small_heap"]
    fn child_long_spans() {
        let c = class_of(1024);
        let size = size_of(c);
        let (short, long) = (CLASS_PAGES_SMALL_HEAP[c], CLASS_PAGES[c]);
        assert!(short < long);
        // Each span this class took, with its length and the bytes the class had out when
        // the batch that took it began.
        let mut seen: std::vec::Vec<(usize, u16, usize)> = std::vec::Vec::new();
        let mut objs = std::vec::Vec::new();
        while objs.len() * size < 2 * LONG_SPANS_FROM {
            let before = CENTRAL[c].out_of_spans.load(Ordering::Relaxed) * size;
            let mut chunk = [null_mut(); 16];
            assert_eq!(alloc_batch(c, &mut chunk), chunk.len());
            for &o in &chunk {
                let s = span_of(PAGEMAP.get(o as usize)) as *mut Span;
                // SAFETY: the span of an object just handed out, live while we hold it.
                let pages = unsafe { (*s).pages } as u16;
                if !seen.iter().any(|&(x, _, _)| x == s as usize) {
                    seen.push((s as usize, pages, before));
                }
            }
            objs.extend_from_slice(&chunk);
        }
        assert!(
            HEAP.lock().stats().mapped <= SMALL_HEAP_BYTES,
            "the heap stayed small"
        );
        for &(_, pages, before) in &seen {
            let want = if before >= LONG_SPANS_FROM {
                long
            } else {
                short
            };
            assert_eq!(pages, want, "a span taken with {before} bytes out");
        }
        assert!(seen.iter().any(|&(_, p, _)| p == long), "{seen:?}");
        // SAFETY: objects from `alloc_batch`, never handed out, each given back once.
        unsafe { free_to_spans(c, &objs) };
        CENTRAL[c].check_invariants(c).unwrap();
    }

    /// While the heap is small, a class that gives back `CHURN_SPANS` short spans within one
    /// maintenance tick takes long spans until the next tick, with little out of its spans. In
    /// a child process (a fresh heap that stays below 32 MiB; one mode: the lists are below
    /// the per-CPU layer).
    #[test]
    fn a_class_churning_short_spans_takes_long_ones_in_a_small_heap() {
        crate::passes_in_a_fresh_child(
            "central::tests::child_churn_spans",
            "RSEQMALLOC_CHURN_SPANS",
        );
    }

    #[test]
    #[ignore = "run as a child by a_class_churning_short_spans_takes_long_ones_in_a_small_heap"]
    fn child_churn_spans() {
        let c = class_of(1024);
        let size = size_of(c);
        let (short, long) = (CLASS_PAGES_SMALL_HEAP[c] as usize, CLASS_PAGES[c] as usize);
        assert!(short < long);
        // Takes 16 objects (two short spans' worth, far below `LONG_SPANS_FROM`), gives them
        // back to their spans, which all return to the page heap, and returns the lengths of
        // those spans.
        let cycle = || {
            let mut objs = [null_mut(); 16];
            assert!(objs.len() * size < LONG_SPANS_FROM);
            assert_eq!(alloc_batch(c, &mut objs), objs.len());
            let mut spans: std::vec::Vec<(usize, usize)> = std::vec::Vec::new();
            for &o in &objs {
                let s = span_of(PAGEMAP.get(o as usize)) as *mut Span;
                // SAFETY: the span of an object just handed out, live while we hold it.
                let pages = unsafe { (*s).pages };
                if !spans.iter().any(|&(x, _)| x == s as usize) {
                    spans.push((s as usize, pages));
                }
            }
            // SAFETY: objects from `alloc_batch`, never handed out, each given back once.
            unsafe { free_to_spans(c, &objs) };
            assert!(
                CENTRAL[c].spans.lock().list.first().is_null(),
                "a span kept"
            );
            spans
                .into_iter()
                .map(|(_, p)| p)
                .collect::<std::vec::Vec<_>>()
        };
        // Nothing starts a maintenance tick in the child (no slow path of ours, no background
        // thread), so every short span the class gives back counts in one tick.
        let tick = TICK.load(Ordering::Relaxed);
        let (mut given_back, mut went_long) = (0usize, false);
        for _ in 0..8 * CHURN_SPANS {
            let lengths = cycle();
            assert_eq!(TICK.load(Ordering::Relaxed), tick, "a tick in the child");
            if lengths.contains(&long) {
                assert_eq!(
                    given_back, CHURN_SPANS as usize,
                    "a long span after {given_back} short ones"
                );
                went_long = true;
                break;
            }
            assert!(lengths.iter().all(|&p| p == short), "{lengths:?}");
            given_back += lengths.len();
        }
        assert!(went_long, "no long span after {given_back} short ones");
        assert!(
            HEAP.lock().stats().mapped <= SMALL_HEAP_BYTES,
            "the heap stayed small"
        );
        // A new tick: short spans again.
        new_tick();
        assert!(cycle().iter().all(|&p| p == short));
        CENTRAL[c].check_invariants(c).unwrap();
    }

    /// A page's second half names its objects only once carved, and carving goes a half page
    /// (one kernel page) at a time.
    #[test]
    fn carving_goes_half_a_page_at_a_time() {
        // A class no other test uses, on a fresh span of its own.
        let c = class_of(96 + 8);
        let size = size_of(c);
        let per_half = 4096usize.div_ceil(size);
        let mut objs = std::vec![null_mut(); per_half];
        assert_eq!(alloc_batch(c, &mut objs[..1]), 1);
        let e = PAGEMAP.get(objs[0] as usize);
        let start = (span_of(e) as *mut Span).cast_const();
        // SAFETY: the span of an object just handed out.
        let start = unsafe { (*start).start };
        let first = PAGEMAP.get(start);
        assert_eq!(crate::pagemap::class_of(first), c);
        assert_eq!(
            first & crate::pagemap::SECOND_HALF,
            0,
            "second half not carved yet"
        );
        // SAFETY: as above.
        assert!(unsafe { (*(span_of(e) as *mut Span)).carved() } as usize <= per_half);
        // Take the rest of the first half and one more object: the second half is carved.
        assert_eq!(alloc_batch(c, &mut objs[1..]), per_half - 1);
        let mut one = [null_mut(); 1];
        assert_eq!(alloc_batch(c, &mut one), 1);
        assert_ne!(PAGEMAP.get(start) & crate::pagemap::SECOND_HALF, 0);
        // SAFETY: objects from `alloc_batch`, never used.
        unsafe {
            free_to_spans(c, &objs);
            free_to_spans(c, &one);
        }
    }

    /// Writes into free objects in a span — where a stray store past the end of the block
    /// before them, or a write after free, lands — do not change what the span hands out: the
    /// objects it took back come out again, each once, and none of the objects still held.
    /// Each first word is overwritten with what used to be read as its link to the next free
    /// object: an address outside the span, the middle of an object, a held object, a free
    /// object a cache holds, the object itself (a loop); one object's tag word is zeroed too.
    /// With the span free lists linked through the objects (before the bitmaps) this test
    /// aborted at the first pop, on the zeroed tag (`corrupted free block`); one at a time,
    /// the first three links aborted too and the last two handed a block out twice
    /// (`docs/experiments/listed-tag.patch`, cases "cached" and "cycle"). The span lists are
    /// the same code in every rseq mode: nothing here runs through a per-CPU cache.
    #[test]
    fn writes_into_free_objects_cannot_make_a_span_hand_out_a_block_twice() {
        // A class no other test uses.
        let c = class_of(640);
        let mut objs = [null_mut(); 10];
        assert_eq!(alloc_batch(c, &mut objs), 10);
        // Objects 0..6 back to their span; 6 and 7 stay held (7 as a C caller would hold
        // it, with no tag; 6 as a per-CPU cache would, tagged free); 8 and 9 too.
        // SAFETY: objects from `alloc_batch`, never used.
        unsafe {
            free_to_spans(c, &objs[..6]);
            free_tag::clear(objs[7]);
            free_tag::set(objs[6]);
        }
        let scribble = |p: *mut u8, first: usize, second: usize| {
            // SAFETY: `p` is a free object of the span (16 bytes writable): stray stores.
            unsafe {
                p.cast::<usize>().write(first);
                p.cast::<usize>().add(1).write(second);
            }
        };
        let tag = |p: *mut u8| free_tag::tag(p as usize);
        scribble(objs[0], 0x1000 ^ tag(objs[0]), tag(objs[0]));
        scribble(objs[1], (objs[3] as usize + 8) ^ tag(objs[1]), tag(objs[1]));
        scribble(objs[2], objs[7] as usize ^ tag(objs[2]), tag(objs[2]));
        scribble(objs[3], objs[6] as usize ^ tag(objs[3]), tag(objs[3]));
        scribble(objs[4], objs[4] as usize ^ tag(objs[4]), tag(objs[4]));
        scribble(objs[5], 0, 0);
        let mut out = [null_mut(); 6];
        assert_eq!(alloc_batch(c, &mut out), 6);
        let mut got = out.to_vec();
        got.sort_unstable();
        let mut want = objs[..6].to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "the span hands back exactly what it took back");
        // SAFETY: objects from `alloc_batch`, never used, each given back once.
        unsafe {
            free_to_spans(c, &objs[..6]);
            free_to_spans(c, &objs[6..]);
        }
        CENTRAL[c].check_invariants(c).unwrap();
    }

    /// An object that comes back to its span while the span holds it — a double free the
    /// free tag did not stop (two threads freeing a block at once, or a Rust `dealloc` of a
    /// freed block) — aborts with one line naming it, straight to the span and through the
    /// transfer stack, and so does one whose span went back to the page heap in between.
    /// Before the bitmaps, the span's list took it twice and handed it out twice. Each case
    /// runs in a child process (the abort ends it); one mode, as above.
    #[test]
    fn an_object_back_in_its_span_twice_aborts_naming_it() {
        use std::os::unix::process::ExitStatusExt;
        if std::env::var_os("RSEQMALLOC_BACK_TWICE").is_some() {
            return;
        }
        for case in ["spans", "stack", "released"] {
            let out = crate::run_child(
                "central::tests::child_back_twice",
                "RSEQMALLOC_BACK_TWICE",
                case,
            );
            let stderr = std::string::String::from_utf8_lossy(&out.stderr);
            let stdout = std::string::String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{case}: {stderr}");
            let addr = stdout
                .lines()
                .find_map(|l| l.strip_prefix("object "))
                .unwrap_or_else(|| panic!("{case}: {stdout}"));
            let want = std::format!(
                "free(): double free detected {addr} (the block came back to its span twice)"
            );
            let lines: std::vec::Vec<_> = stderr.lines().filter(|l| l.contains(&want)).collect();
            assert_eq!(lines.len(), 1, "{case}: stderr was {stderr}");
            assert!(!stdout.contains("handed out"), "{case}: {stdout}");
        }
    }

    #[test]
    #[ignore = "run as a child by an_object_back_in_its_span_twice_aborts_naming_it"]
    fn child_back_twice() {
        let Ok(case) = std::env::var("RSEQMALLOC_BACK_TWICE") else {
            return;
        };
        // A class no other test uses, so the transfer stack starts empty.
        let c = class_of(896);
        let mut objs = [null_mut(); 2];
        assert_eq!(alloc_batch(c, &mut objs), 2);
        std::println!("object {:#x}", objs[0] as usize);
        // SAFETY: deliberately not: object 0 is given back twice, which must abort.
        unsafe {
            match case.as_str() {
                "spans" => {
                    free_to_spans(c, &objs[..1]);
                    free_to_spans(c, &objs[..1]);
                }
                "stack" => {
                    free_batch(c, &objs[..1]);
                    free_batch(c, &objs[..1]);
                    flush_transfer();
                }
                "released" => {
                    // Both objects back: the span returns to the page heap; then object 0
                    // again, to a page that no longer belongs to a span of the class.
                    free_to_spans(c, &objs);
                    free_to_spans(c, &objs[..1]);
                }
                _ => unreachable!("unknown case {case}"),
            }
        }
        let mut out = [null_mut(); 2];
        let n = alloc_batch(c, &mut out);
        std::println!("handed out {n}: {out:?}");
    }

    /// Every class's span, at its longest, has a free bitmap the bitmap pool can hand out.
    #[test]
    fn every_span_bitmap_fits_the_pool() {
        for c in 1..NUM_CLASSES {
            for pages in [CLASS_PAGES[c], CLASS_PAGES_SMALL_HEAP[c]] {
                assert!(
                    bitmap_words(pages as usize * PAGE / size_of(c)) <= 64,
                    "class {c}"
                );
            }
        }
    }

    /// Without `fresh_ok`, `take_span_to_own` takes a span the class lists and never a fresh
    /// one: an owned refill that may first drain other slabs' half-free spans
    /// (`percpu::refill_owned`) takes no fresh memory before it has.
    #[test]
    fn a_span_to_own_is_fresh_only_when_asked() {
        // A class no other test uses.
        let c = class_of(1600);
        assert!(
            take_span_to_own(c, 0, false).is_null(),
            "nothing listed: no span taken"
        );
        let s = take_span_to_own(c, 0, true);
        assert!(!s.is_null(), "a fresh span when asked");
        let mut one = [null_mut(); 1];
        // SAFETY: a span just taken to own, which no slab owns or reaches: ours alone, as a
        // slab's span under its capacity lock; given up with nothing on its list.
        unsafe {
            assert_eq!(take_from_owned(s, c, &mut one), 1);
            disown(s, c, &[]);
        }
        CENTRAL[c].check_invariants(c).unwrap();
        assert_eq!(
            take_span_to_own(c, 0, false),
            s,
            "the listed span, one object out"
        );
        // SAFETY: as above; then the object goes back, and the span with it.
        unsafe {
            disown(s, c, &[]);
            free_to_spans(c, &one);
        }
        CENTRAL[c].check_invariants(c).unwrap();
        assert!(
            take_span_to_own(c, 0, false).is_null(),
            "the span went back to the page heap"
        );
    }

    /// A listed span that another slab carved (or none did) takes the home of the slab that
    /// takes it to own, in its record and in every carved page's entry, whose other bits stay:
    /// those entries' home bits are what `free` tests, so the owner's frees of its objects find
    /// them its own (`percpu::owned::push`) instead of sending them to the old home.
    #[test]
    fn a_listed_span_taken_to_own_takes_its_owners_home() {
        // A class no other test uses.
        let c = class_of(1280);
        let s = take_span_to_own(c, 0, true);
        assert!(!s.is_null());
        // Objects on more than one page, so that several entries are carved.
        let mut out = [null_mut(); 8];
        // SAFETY: a span just taken to own, which no slab owns or reaches: ours alone, as a
        // slab's span under its capacity lock; given up with its objects out, it is listed.
        let pages = unsafe {
            assert_eq!(take_from_owned(s, c, &mut out), out.len());
            disown(s, c, &[]);
            (*s).pages
        };
        let entries = || {
            // SAFETY: a span record (pool memory), its fields read while no other test
            // touches the class.
            let start = unsafe { (*s).start };
            (0..pages)
                .map(|i| PAGEMAP.get(start + i * PAGE))
                .collect::<std::vec::Vec<_>>()
        };
        let before = entries();
        let carved = before.iter().filter(|&&e| crate::pagemap::class_of(e) == c);
        assert!(carved.count() >= 2, "objects on several pages");
        assert_eq!(take_span_to_own(c, 1, false), s, "the listed span");
        // SAFETY: as above.
        assert_eq!(unsafe { (*s).home() }, 1);
        let home = |e| crate::pagemap::home_bits(e);
        for (b, a) in before.iter().zip(entries()) {
            if crate::pagemap::class_of(*b) == c {
                assert_eq!(home(*b), home(home_field(0)), "carved for slab 0");
                assert_eq!(home(a), home(home_field(1)), "now slab 1's");
                assert_eq!(
                    crate::pagemap::without_home(a),
                    crate::pagemap::without_home(*b),
                    "nothing else changed"
                );
            } else {
                assert_eq!(a, *b, "a page not carved stays as it was");
            }
        }
        // SAFETY: as above; then the objects go back, and the span with them.
        unsafe {
            disown(s, c, &[]);
            free_to_spans(c, &out);
        }
        CENTRAL[c].check_invariants(c).unwrap();
    }

    /// A batch whose objects come from several spans, in runs that break at every object or
    /// in long stretches, goes back whole: every span is emptied and returned to the page heap
    /// (its pages no longer name the class), and the class's lists keep their invariants, also
    /// when a span empties in the middle of the batch, and when one batch empties more spans
    /// than go back to the page heap under one hold of its lock.
    #[test]
    fn a_batch_from_several_spans_goes_back_run_by_run() {
        // A class no other test uses.
        let c = class_of(1408);
        let span_of_obj = |o: *mut u8| span_of(PAGEMAP.get(o as usize));
        // Take objects until they come from 11 spans (how many a span holds depends on
        // how large the heap is: small spans while it is small).
        let mut objs = std::vec::Vec::new();
        let mut spans: std::vec::Vec<usize> = std::vec::Vec::new();
        while spans.len() < SPANS_PER_LOCK + 3 {
            let mut chunk = [null_mut(); 16];
            assert_eq!(alloc_batch(c, &mut chunk), chunk.len());
            objs.extend_from_slice(&chunk);
            spans = objs.iter().map(|&o| span_of_obj(o)).collect();
            spans.sort_unstable();
            spans.dedup();
        }
        // Interleave the spans: consecutive objects from different spans wherever possible,
        // so almost every run is one object long.
        let mut by_span: std::vec::Vec<std::vec::Vec<*mut u8>> = spans
            .iter()
            .map(|&s| {
                objs.iter()
                    .copied()
                    .filter(|&o| span_of_obj(o) == s)
                    .collect()
            })
            .collect();
        let mut mixed = std::vec::Vec::new();
        while by_span.iter().any(|v| !v.is_empty()) {
            for v in by_span.iter_mut() {
                mixed.extend(v.pop());
            }
        }
        assert_eq!(mixed.len(), objs.len());
        // The first half interleaved (runs of one object), the rest in address order (long
        // runs).
        let (a, b) = mixed.split_at(mixed.len() / 2);
        // SAFETY: objects from `alloc_batch`, never handed out, each given back once.
        unsafe {
            free_to_spans(c, a);
            let mut rest = b.to_vec();
            rest.sort_unstable(); // address order: long runs of one span
            free_to_spans(c, &rest);
        }
        CENTRAL[c].check_invariants(c).unwrap();
        for &o in &objs {
            assert_ne!(
                crate::pagemap::class_of(PAGEMAP.get(o as usize)),
                c,
                "every span went back to the page heap"
            );
        }
    }

    /// The table is the rule: about 256 KiB worth, at least a batch, at most the slots.
    #[test]
    fn transfer_limits_follow_their_rule() {
        for c in 1..NUM_CLASSES {
            let batch = crate::size_class::CLASS_BATCH[c] as usize;
            let rule = ((256 << 10) / size_of(c)).clamp(batch, TRANSFER_SLOTS);
            assert_eq!(transfer_limit(c), rule, "class {c}");
        }
    }

    /// With two shards, what slab 1 gives the transfer stack goes back to slab 1 first, though
    /// slab 0 gave its objects after (one stack per class handed slab 1 slab 0's, the last
    /// pushed); a batch past its shard's share goes back to the spans, not onto the other
    /// shard, and a refill without a home takes from the other shard once its own is empty.
    /// With four, the shards together hold no more than the class's limit.
    #[test]
    fn each_slab_takes_back_its_own_shard_first_and_overflows_to_the_spans() {
        let (_serial, _shards, c) = two_shards();
        let limit = shard_limit(c, 2);
        let mut objs = std::vec![null_mut(); limit + 24];
        assert_eq!(alloc_batch(c, &mut objs), objs.len());
        let (ones, zeros, rest) = (&objs[..8], &objs[8..16], &objs[16..]);
        let out_of_spans = || CENTRAL[c].out_of_spans.load(Ordering::Relaxed);
        // SAFETY: objects from `alloc_batch`, never used (each freed once, taken again below).
        unsafe {
            free_batch_from(c, ones, 1);
            free_batch_from(c, zeros, 0);
        }
        let mut back = [null_mut(); 8];
        assert_eq!(alloc_batch_home(c, &mut back, crate::span::NO_HOME, 1), 8);
        assert_eq!(
            sorted(&back),
            sorted(ones),
            "slab 1 got another shard's objects"
        );
        assert_eq!(alloc_batch_home(c, &mut back, crate::span::NO_HOME, 0), 8);
        assert_eq!(sorted(&back), sorted(zeros));
        // Past shard 0's share: the rest back to the spans, none onto shard 1.
        let before = out_of_spans();
        // SAFETY: as above.
        unsafe { free_batch_from(c, rest, 0) };
        assert_eq!(SHARDS[0][c].cached.load(Ordering::Relaxed), limit);
        assert_eq!(SHARDS[1][c].cached.load(Ordering::Relaxed), 0);
        assert_eq!(out_of_spans(), before - (rest.len() - limit));
        let mut all = std::vec![null_mut(); limit];
        assert_eq!(
            alloc_batch_home(c, &mut all, crate::span::NO_HOME, 1),
            limit
        );
        assert_eq!(sorted(&all), sorted(&rest[..limit]));
        assert_eq!(cached(c), 0);
        // SAFETY: as above (`rest[limit..]` is back in its spans).
        unsafe { free_to_spans(c, &objs[..16 + limit]) };

        // With four shards, each takes half the class's limit and all of them together the
        // limit: what slab 0 gives alone fills its shard, the rest back to the spans; then
        // slabs 0 and 1 fill theirs, and what slab 2 gives goes back to the spans.
        SHARDS_IN_USE.store(4, Ordering::Relaxed);
        let whole = transfer_limit(c);
        let mut objs = std::vec![null_mut(); whole + 16];
        assert_eq!(alloc_batch(c, &mut objs), objs.len());
        // SAFETY: as above.
        unsafe { free_batch_from(c, &objs[..whole], 0) };
        let counts: std::vec::Vec<usize> = (0..4)
            .map(|k| SHARDS[k][c].cached.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [whole.div_ceil(2), 0, 0, 0]);
        let mut all = std::vec![null_mut(); whole.div_ceil(2)];
        assert_eq!(
            alloc_batch_home(c, &mut all, crate::span::NO_HOME, 0),
            all.len()
        );
        assert_eq!(sorted(&all), sorted(&objs[..whole.div_ceil(2)]));
        // Out again: `objs[whole.div_ceil(2)..whole]` went back to the spans.
        let mut again = std::vec![null_mut(); whole / 2];
        assert_eq!(alloc_batch(c, &mut again), again.len());
        objs[whole.div_ceil(2)..whole].copy_from_slice(&again);
        let (half, more) = objs.split_at(whole / 2);
        let (other, extra) = more.split_at(whole - whole / 2);
        // SAFETY: as above.
        unsafe {
            free_batch_from(c, half, 0);
            free_batch_from(c, other, 1);
            free_batch_from(c, extra, 2);
        }
        assert_eq!(
            cached(c),
            whole,
            "the shards together past the class's limit"
        );
        assert_eq!(SHARDS[2][c].cached.load(Ordering::Relaxed), 0);
        assert_eq!(CENTRAL[c].stacked.load(Ordering::Relaxed), whole);
        CENTRAL[c].check_invariants(c).unwrap();
        let mut all = std::vec![null_mut(); whole];
        assert_eq!(
            alloc_batch_home(c, &mut all, crate::span::NO_HOME, 0),
            whole
        );
        assert_eq!(CENTRAL[c].stacked.load(Ordering::Relaxed), 0);
        // SAFETY: as above.
        unsafe { free_to_spans(c, &all) };
    }

    /// A test serialised with the others that reach the central lists (until the first value
    /// is dropped), with two shards (until the second is), and the class it uses, flushed
    /// from the transfer stack: one the other tests use only while serialised. Bound as
    /// `let (_serial, _shards, c)`, the shard count goes back before the lock is released
    /// (bindings drop in reverse order).
    fn two_shards() -> (std::sync::MutexGuard<'static, ()>, ShardCount, usize) {
        let serial = crate::serial_test();
        let shards = ShardCount::set(2);
        let c = class_of(240);
        flush_where(|_, k, _| k == c);
        (serial, shards, c)
    }

    /// `n` objects of class `c` whose spans' home is `home` (their page-map entries say so),
    /// taken by refills of slab `home`; every object taken (those and any other the refills
    /// gave) is added to `out`, to be freed at the end.
    fn homed_objects(c: usize, home: u32, n: usize, out: &mut Vec<*mut u8>) -> Vec<*mut u8> {
        let mine = crate::pagemap::home_bits(home_field(home));
        let mut got = Vec::new();
        for _ in 0..1000 {
            let mut buf = [null_mut(); 16];
            let k = alloc_batch_home(c, &mut buf, home, home as usize);
            assert!(k > 0);
            for &p in &buf[..k] {
                out.push(p);
                if got.len() < n && crate::pagemap::home_bits(PAGEMAP.get(p as usize)) == mine {
                    got.push(p);
                }
            }
            if got.len() == n {
                return got;
            }
        }
        panic!("no span of home {home} came");
    }

    /// Takes every object the class's listed spans hold, so that the next refill finds none
    /// listed; returns them (out of their spans, to be freed at the end).
    fn drain_listed(c: usize) -> Vec<*mut u8> {
        let mut taken = Vec::new();
        let mut g = CENTRAL[c].spans.lock();
        loop {
            let s = g.list.first();
            if s.is_null() {
                break;
            }
            let mut buf = [null_mut(); 64];
            // SAFETY: a listed span of class `c`, under its lock.
            let n = unsafe { g.take_listed(s, c, &mut buf) };
            taken.extend_from_slice(&buf[..n]);
        }
        CENTRAL[c]
            .out_of_spans
            .fetch_add(taken.len(), Ordering::Relaxed);
        taken
    }

    fn sorted(v: &[*mut u8]) -> Vec<*mut u8> {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    }

    /// A refill of a slab with a home takes, from another slab's shard, the objects of its own
    /// spans that the other slab gave up, and leaves that slab's own there (before any span);
    /// the other slab then takes its own back from its shard.
    #[test]
    fn a_homed_refill_takes_its_own_objects_from_another_shard_and_leaves_the_others() {
        let (_serial, _shards, c) = two_shards();
        let mut all = Vec::new();
        let (zeros, ones) = (
            homed_objects(c, 0, 8, &mut all),
            homed_objects(c, 1, 16, &mut all),
        );
        // Slab 0's objects between slab 1's in slab 1's shard.
        // SAFETY: objects out of their spans, each freed once here and taken again below.
        unsafe {
            free_batch_from(c, &ones[..8], 1);
            free_batch_from(c, &zeros, 1);
            free_batch_from(c, &ones[8..], 1);
        }
        assert_eq!(SHARDS[1][c].cached.load(Ordering::Relaxed), 24);
        let mut back = [null_mut(); 8];
        assert_eq!(alloc_batch_with(c, &mut back, 0, 0, |_, _| true), 8);
        assert_eq!(
            sorted(&back),
            sorted(&zeros),
            "slab 0 took slab 1's objects"
        );
        assert_eq!(SHARDS[1][c].cached.load(Ordering::Relaxed), 16);
        let mut back = [null_mut(); 16];
        assert_eq!(alloc_batch_with(c, &mut back, 1, 1, |_, _| true), 16);
        assert_eq!(sorted(&back), sorted(&ones));
        assert_eq!(cached(c), 0);
        CENTRAL[c].check_invariants(c).unwrap();
        // SAFETY: every object taken is out of its span once.
        unsafe { free_to_spans(c, &all) };
    }

    /// With spans of two homes listed and the shards empty, a refill of each slab takes the
    /// objects of its own home's span, whichever is listed first.
    #[test]
    fn a_homed_refill_takes_its_own_homes_listed_span_first() {
        let (_serial, _shards, c) = two_shards();
        let mut all = drain_listed(c);
        let home_of = |p: *mut u8| crate::pagemap::home_bits(PAGEMAP.get(p as usize));
        // A span of home 0, taken whole (unlisted), then one of home 1, left listed.
        let mut one = [null_mut(); 1];
        assert_eq!(alloc_batch_with(c, &mut one, 0, 0, |_, _| true), 1);
        all.push(one[0]);
        let zeros = drain_listed(c);
        assert_eq!(alloc_batch_with(c, &mut one, 1, 1, |_, _| true), 1);
        all.push(one[0]);
        assert_eq!(home_of(one[0]), home_of_slab(1));
        // Home 0's span listed again, with 16 objects back: 8 remain after its own refill
        // (below), whichever of the two refills comes to it first.
        // SAFETY: objects out of their span, each freed once.
        unsafe { free_to_spans(c, &zeros[..16]) };
        all.extend_from_slice(&zeros[16..]);
        for (home, near) in [(1, 1), (0, 0)] {
            let mut got = [null_mut(); 8];
            assert_eq!(alloc_batch_with(c, &mut got, home, near, |_, _| true), 8);
            for &p in &got {
                assert_eq!(home_of(p), home_of_slab(home), "slab {home} took another's");
            }
            all.extend_from_slice(&got);
        }
        CENTRAL[c].check_invariants(c).unwrap();
        // SAFETY: every object taken is out of its span once.
        unsafe { free_to_spans(c, &all) };
    }

    /// The page-map home bits of the spans of slab `home`.
    fn home_of_slab(home: u32) -> usize {
        crate::pagemap::home_bits(home_field(home))
    }

    /// With no span listed, a refill of a slab with a home takes another slab's objects from
    /// its shard rather than a new span only when the page heap has no resident pages for the
    /// span: with resident pages it carves a new span of its own home and leaves the shard.
    #[test]
    fn a_homed_refill_takes_another_slabs_objects_only_rather_than_new_memory() {
        let (_serial, _shards, c) = two_shards();
        let mut all = Vec::new();
        let ones = homed_objects(c, 1, 8, &mut all);
        // SAFETY: objects out of their spans, freed once here, taken again below.
        unsafe { free_batch_from(c, &ones, 1) };
        all.retain(|p| !ones.contains(p));
        let mine = crate::pagemap::home_bits(home_field(0));
        all.extend(drain_listed(c));
        let mut fresh = [null_mut(); 8];
        assert_eq!(alloc_batch_with(c, &mut fresh, 0, 0, |_, _| true), 8);
        all.extend_from_slice(&fresh);
        for &p in &fresh {
            assert_eq!(crate::pagemap::home_bits(PAGEMAP.get(p as usize)), mine);
        }
        assert_eq!(
            SHARDS[1][c].cached.load(Ordering::Relaxed),
            8,
            "the shard was left"
        );
        all.extend(drain_listed(c));
        let mut back = [null_mut(); 8];
        assert_eq!(alloc_batch_with(c, &mut back, 0, 0, |_, _| false), 8);
        assert_eq!(sorted(&back), sorted(&ones));
        assert_eq!(cached(c), 0);
        all.extend_from_slice(&back);
        CENTRAL[c].check_invariants(c).unwrap();
        // SAFETY: every object taken is out of its span once.
        unsafe { free_to_spans(c, &all) };
    }

    #[test]
    fn stacks_above_256_bytes_share_one_budget_and_small_ones_keep_their_own() {
        // The per-CPU unit tests free objects of classes above 256 B here too: from an empty
        // shared budget, with none of them running. One shard, whose limit is the class's
        // (they may have set the slab count's).
        let _serial = crate::serial_test();
        let _shards = ShardCount::set(1);
        flush_transfer();
        let small = class_of(64);
        let big = [512, 1024, 4096, 16384].map(class_of);
        // 96 KiB freed in each: the first two classes keep all theirs, the third the 64 KiB
        // left of the budget, the fourth none; the small class keeps its own stack full.
        for &c in big.iter() {
            take_and_free(c, 96 << 10);
        }
        take_and_free(small, 1 << 20);
        let held = big.map(|c| cached(c) * size_of(c));
        assert_eq!(held, [96 << 10, 96 << 10, 64 << 10, 0]);
        assert_eq!(
            held.iter().sum::<usize>(),
            SHARED_BYTES.load(Ordering::Relaxed)
        );
        assert_eq!(SHARED_BYTES.load(Ordering::Relaxed), SHARED_BUDGET);
        // A small class keeps its own stack, up to the class's limit (one shard here),
        // whatever the shared budget.
        assert_eq!(cached(small), transfer_limit(small));
        flush_transfer();
        assert_eq!(SHARED_BYTES.load(Ordering::Relaxed), 0);
        assert_eq!(cached(small), 0);
    }
}

/// Executable invariants of the central lists (tests and the `fuzzing` feature).
#[cfg(any(test, feature = "fuzzing"))]
pub mod check {
    use super::*;
    use crate::page_heap::check::{ensure, Broken};
    use crate::pagemap::class_of;

    impl Central {
        /// Checks class `c`'s list under its lock (safe at any time: everything checked is
        /// guarded by that lock):
        /// - each transfer stack shard holds at most the class's limit (a push keeps it within
        ///   its share, [`shard_limit`], but a shard stacked before [`set_shards`] may hold
        ///   more), its `cached` says how many, each a carved object (start of an object) of a
        ///   small span of class `c`, none twice in any shard, and all shards together hold
        ///   `stacked` objects, at most the class's limit;
        /// - every listed span is a small span of class `c` marked `listed`, with consistent
        ///   links, `capacity` objects of its length, `in_use <= carved <= capacity`, and a free
        ///   or an uncarved object; its bitmap sets only carved objects, none below its scan
        ///   start's word, none in the transfer stack, each tagged free, and `in_use` plus the
        ///   bits set is `carved`;
        /// - the span of every stacked object is marked `listed` exactly when it has a free or
        ///   an uncarved object and no slab owns it (`in_slab`);
        /// - no listed span is owned by a slab.
        pub fn check_invariants(&self, c: usize) -> Result<(), Broken> {
            let g = self.lock_both();
            let cached = core::array::from_fn(|k| SHARDS[k][c].cached.load(Ordering::Relaxed));
            check_inner(&g, c, cached)
        }

        /// The class's transfer stack shards and its spans, all locked, in their order
        /// (checks and tests).
        pub(super) fn lock_both(&self) -> Both<'_> {
            let c = class_holding(self);
            let t = core::array::from_fn(|k| SHARDS[k][c].transfer.lock());
            Both {
                t,
                s: self.spans.lock(),
            }
        }
    }

    /// A class's transfer stack shards (by shard) and spans, all locked: what the checks look
    /// at.
    pub(super) struct Both<'a> {
        pub(super) t: [crate::sync::MutexGuard<'a, Transfer>; MAX_SHARDS],
        pub(super) s: crate::sync::MutexGuard<'a, Spans>,
    }

    /// Checks every class's list (one lock at a time).
    #[cfg(feature = "fuzzing")]
    pub fn check_all() -> Result<(), Broken> {
        (1..NUM_CLASSES).try_for_each(|c| CENTRAL[c].check_invariants(c))
    }

    /// The span of `obj`, checked to be a small span of class `c` of which `obj` is an object
    /// carved already.
    pub fn span_of_object(obj: *mut u8, c: usize) -> Result<*mut Span, Broken> {
        let at = obj as usize;
        let e = PAGEMAP.get(at);
        ensure(class_of(e) == c, "an object's page is not of its class", at)?;
        let s = span_of(e) as *mut Span;
        // SAFETY: a page-map entry names a span record of the pool (never unmapped).
        unsafe {
            ensure(
                (*s).state == SpanState::Small && (*s).class as usize == c,
                "an object's span is not a small span of its class",
                at,
            )?;
            let off = at - (*s).start;
            ensure(
                off.is_multiple_of(size_of(c)),
                "an object pointer is not an object's start",
                at,
            )?;
            ensure(
                off / size_of(c) < (*s).carved() as usize,
                "an object past its span's carved ones is handed around",
                at,
            )?;
        }
        Ok(s)
    }

    /// Checks class `c`'s shards and spans, `inner`, against the shards' counts read without
    /// their locks, `cached` (by shard).
    pub(super) fn check_inner(
        inner: &Both<'_>,
        c: usize,
        cached: [usize; MAX_SHARDS],
    ) -> Result<(), Broken> {
        let size = size_of(c);
        // Every shard's objects, side by side.
        let mut all = [null_mut(); TRANSFER_SLOTS * MAX_SHARDS];
        let mut count = 0;
        for (t, cached) in inner.t.iter().zip(cached) {
            ensure(
                t.count <= transfer_limit(c),
                "a transfer stack shard above the class's limit",
                t.count,
            )?;
            ensure(
                cached == t.count,
                "`cached` differs from a transfer stack shard's count",
                c,
            )?;
            all[count..count + t.count].copy_from_slice(&t.slots()[..t.count]);
            count += t.count;
        }
        let stack = &mut all[..count];
        for &obj in stack.iter() {
            let s = span_of_object(obj, c)?;
            // SAFETY: a small span of class `c` (just checked), under the class lock.
            unsafe {
                ensure(
                    (*s).in_use() > 0,
                    "a stacked object's span counts none out",
                    s as usize,
                )?;
                ensure(
                    (*s).listed == (has_objects(s) && !(*s).in_slab),
                    "a span is listed without objects to give, or unlisted with some",
                    s as usize,
                )?;
            }
        }
        stack.sort_unstable();
        if let Some(w) = stack.windows(2).find(|w| w[0] == w[1]) {
            return Err(Broken {
                what: "an object is twice in the transfer stack",
                at: w[0] as usize,
            });
        }
        // Every span holds at least a page of the small-span bytes: a longer walk loops.
        let mut budget = HEAP.lock().stats().small_spans / PAGE + 1;
        let mut prev: *mut Span = null_mut();
        let mut s = inner.s.list.first();
        while !s.is_null() {
            let at = s as usize;
            ensure(budget > 0, "a span list loops", at)?;
            budget -= 1;
            // SAFETY: members of the class's list are span records (pool memory, readable);
            // their fields and bitmaps are guarded by the class lock the caller holds.
            unsafe {
                ensure((*s).prev == prev, "span list links disagree", at)?;
                ensure(
                    (*s).state == SpanState::Small
                        && (*s).class as usize == c
                        && (*s).listed
                        && !(*s).in_slab,
                    "a listed span is not a small span of its class marked listed, or a slab owns it",
                    at,
                )?;
                ensure(
                    (*s).capacity as usize == (*s).bytes() / size
                        && (*s).in_use() <= (*s).carved()
                        && (*s).carved() <= (*s).capacity,
                    "a span's counts disagree (in_use <= carved <= capacity)",
                    at,
                )?;
                ensure(has_objects(s), "a listed span has no object to give", at)?;
                let (bits, words) = ((*s).bits, bitmap_words((*s).capacity as usize));
                ensure(!bits.is_null(), "a small span has no free bitmap", at)?;
                let mut free = 0;
                for w in 0..words {
                    let mut word = *bits.add(w);
                    ensure(
                        word == 0 || w >= (*s).scan as usize,
                        "a span's bitmap has a bit set below its scan start",
                        at,
                    )?;
                    while word != 0 {
                        let i = w * 64 + word.trailing_zeros() as usize;
                        word &= word - 1;
                        free += 1;
                        let o = ((*s).start + i * size) as *mut u8;
                        ensure(
                            i < (*s).carved() as usize,
                            "a span's bitmap holds an object not carved yet",
                            o as usize,
                        )?;
                        ensure(
                            stack.binary_search(&o).is_err(),
                            "an object is both in the transfer stack and in its span",
                            o as usize,
                        )?;
                        ensure(
                            free_tag::is_free(o),
                            "a free object does not carry its free tag",
                            o as usize,
                        )?;
                    }
                }
                ensure(
                    free + (*s).in_use() == (*s).carved(),
                    "in_use plus the span's free objects differ from the carved ones",
                    at,
                )?;
                prev = s;
                s = (*s).next;
            }
        }
        // Last: the corruption tests change a shard's count and nothing else.
        let count = stack.len();
        ensure(
            count == CENTRAL[c].stacked.load(Ordering::Relaxed),
            "the shards' counts differ from the class's stacked total",
            c,
        )?;
        ensure(
            count <= transfer_limit(c),
            "the shards together hold more than the class's limit",
            count,
        )?;
        Ok(())
    }
}

/// Sets the shard count for a test and puts it back when the test ends, passed or not.
#[cfg(test)]
struct ShardCount(usize);

#[cfg(test)]
impl ShardCount {
    fn set(n: usize) -> Self {
        Self(SHARDS_IN_USE.swap(n, Ordering::Relaxed))
    }
}

#[cfg(test)]
impl Drop for ShardCount {
    fn drop(&mut self) {
        SHARDS_IN_USE.store(self.0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod check_tests {
    use super::check::{check_inner, Both};
    use super::*;
    use crate::size_class::class_of;
    use std::collections::{HashMap, HashSet};
    use std::vec::Vec;

    /// A class no other unit test uses (at most 256 B: outside the shared stack budget that
    /// another test measures exactly).
    const SIZE: usize = 176;

    /// xorshift64*.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize % n
        }
    }

    fn word(obj: *mut u8, k: usize) -> usize {
        obj as usize ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x00c0_ffee
    }

    /// Writes the object's pattern into every word of it (what a user may do).
    fn fill(obj: *mut u8) {
        for k in 0..SIZE / 8 {
            // SAFETY: an object of SIZE bytes the test holds.
            unsafe { obj.cast::<usize>().add(k).write(word(obj, k)) };
        }
    }

    fn intact(obj: *mut u8) -> bool {
        // SAFETY: as in `fill`.
        (0..SIZE / 8).all(|k| unsafe { obj.cast::<usize>().add(k).read() } == word(obj, k))
    }

    /// Up to `n` held objects, chosen at random and checked intact, no longer held.
    fn take(
        rng: &mut Rng,
        held: &mut Vec<*mut u8>,
        set: &mut HashSet<usize>,
        n: usize,
    ) -> Vec<*mut u8> {
        let mut out = Vec::new();
        for _ in 0..n.min(held.len()) {
            let obj = held.swap_remove(rng.below(held.len()));
            assert!(intact(obj), "a held object was overwritten");
            set.remove(&(obj as usize));
            out.push(obj);
        }
        out
    }

    /// Checks the class and the heap, and the shadow model's counts: the objects out of their
    /// spans are those held plus those stacked, span by span.
    fn check_class(c: usize, held: &HashSet<usize>) {
        CENTRAL[c].check_invariants(c).unwrap();
        HEAP.lock().check_invariants().unwrap();
        let g = CENTRAL[c].lock_both();
        let out = held.len() + g.t.iter().map(|t| t.count).sum::<usize>();
        assert_eq!(CENTRAL[c].out_of_spans.load(Ordering::Relaxed), out);
        let mut per_span: HashMap<usize, u32> = HashMap::new();
        let stacked =
            g.t.iter()
                .flat_map(|t| t.slots()[..t.count].iter().map(|&o| o as usize));
        for obj in held.iter().copied().chain(stacked) {
            *per_span.entry(span_of(PAGEMAP.get(obj))).or_default() += 1;
        }
        for (&s, &n) in &per_span {
            // SAFETY: a small span of class `c` (checked above), under its class lock.
            assert_eq!(unsafe { (*(s as *mut Span)).in_use() }, n, "span {s:#x}");
        }
    }

    /// Random batches taken, returned to the stack or straight to the spans, and the class's
    /// stack flushed, checked after every operation; at the end everything is back and the
    /// class holds no span.
    #[test]
    fn random_batches_keep_the_central_invariants() {
        // Another test flushes every transfer stack (`flush_transfer`) while it runs.
        let _serial = crate::serial_test();
        // Two slabs' shards: refills of either slab, with a home or without, and pushes from
        // either.
        let _shards = ShardCount::set(2);
        let c = class_of(SIZE);
        assert_eq!(size_of(c), SIZE);
        let mut rng = Rng(0x5eed_0000_0000_0001);
        let mut held: Vec<*mut u8> = Vec::new();
        let mut set: HashSet<usize> = HashSet::new();
        let mut done = [0; 4];
        for _ in 0..6000 {
            let (n, op) = (1 + rng.below(32), rng.below(9));
            let kind = match op {
                0..=3 if held.len() < 6000 => 0,
                0..=5 => 1,
                6 | 7 => 2,
                _ => 3,
            };
            done[kind] += 1;
            match kind {
                0 => {
                    let mut buf = [null_mut(); 32];
                    let (near, resident) = (rng.below(2), rng.below(2) == 0);
                    let home = if rng.below(3) == 0 {
                        crate::span::NO_HOME
                    } else {
                        near as u32
                    };
                    let got = alloc_batch_with(c, &mut buf[..n], home, near, |_, _| resident);
                    assert_eq!(got, n);
                    for &obj in &buf[..got] {
                        assert!(set.insert(obj as usize), "{obj:?} handed out twice");
                        fill(obj);
                        held.push(obj);
                    }
                }
                1 => {
                    let objs = take(&mut rng, &mut held, &mut set, n);
                    // SAFETY: objects of class `c` from `alloc_batch_with`, no longer used.
                    unsafe { free_batch_from(c, &objs, rng.below(2)) };
                }
                2 => {
                    let objs = take(&mut rng, &mut held, &mut set, n);
                    // SAFETY: as above.
                    unsafe { free_to_spans(c, &objs) };
                }
                _ => super::flush_where(|_, k, _| k == c),
            }
            check_class(c, &set);
        }
        assert!(done.iter().all(|&k| k > 100), "{done:?}");
        let all = take(&mut rng, &mut held, &mut set, usize::MAX);
        // SAFETY: as above.
        unsafe { free_to_spans(c, &all) };
        super::flush_where(|_, k, _| k == c);
        check_class(c, &set);
        assert!(
            CENTRAL[c].spans.lock().list.is_empty(),
            "a span kept nothing"
        );
    }

    /// Corruptions of the test's class, made and undone under its lock, are each reported.
    #[test]
    fn a_corrupted_central_list_fails_its_check() {
        // Another test flushes every transfer stack (`flush_transfer`) while it runs.
        let _serial = crate::serial_test();
        let c = class_of(SIZE + 16);
        let mut objs = [null_mut(); 8];
        assert_eq!(alloc_batch(c, &mut objs), 8);
        // SAFETY: objects from `alloc_batch`, never used.
        unsafe {
            free_batch(c, &objs[..4]);
            free_to_spans(c, &objs[4..6]);
        }
        let mut g = CENTRAL[c].lock_both();
        // The objects freed went to shard 0 (`free_batch`), which the test corrupts: the
        // shards' counts as `cached` would give them, with shard 0's as `n`.
        let cached =
            |g: &Both<'_>, n| core::array::from_fn(|k| if k == 0 { n } else { g.t[k].count });
        let n = g.t[0].count;
        assert_eq!(check_inner(&g, c, cached(&g, n)), Ok(()));
        let broken = |g: &Both<'_>, n| check_inner(g, c, cached(g, n)).map_err(|b| b.what).err();

        // An object stacked twice.
        g.t[0].stack()[n] = g.t[0].stack()[n - 1];
        g.t[0].count += 1;
        assert_eq!(
            broken(&g, n + 1),
            Some("an object is twice in the transfer stack")
        );
        // An object both stacked and in its span.
        let span = g.s.list.first();
        // SAFETY: a listed span of the class, under its lock; the first object its bitmap
        // holds.
        g.t[0].stack()[n] = unsafe {
            let (bits, mut w) = ((*span).bits, 0);
            while *bits.add(w) == 0 {
                w += 1;
            }
            let i = w * 64 + (*bits.add(w)).trailing_zeros() as usize;
            ((*span).start + i * size_of(c)) as *mut u8
        };
        assert_eq!(
            broken(&g, n + 1),
            Some("an object is both in the transfer stack and in its span")
        );
        g.t[0].count -= 1;
        // A pointer inside an object.
        g.t[0].stack()[0] = g.t[0].stack()[0].wrapping_add(8);
        assert_eq!(
            broken(&g, n),
            Some("an object pointer is not an object's start")
        );
        g.t[0].stack()[0] = g.t[0].stack()[0].wrapping_sub(8);
        // A span count off by one.
        // SAFETY: as above; undone before the lock is released.
        unsafe { (*span).set_in_use((*span).in_use() - 1) };
        assert_eq!(
            broken(&g, n),
            Some("in_use plus the span's free objects differ from the carved ones")
        );
        // SAFETY: as above.
        unsafe { (*span).set_in_use((*span).in_use() + 1) };
        assert_eq!(check_inner(&g, c, cached(&g, n)), Ok(()));
        // A scan start past a word with a bit set (a refill would skip those objects).
        // SAFETY: as above.
        let scan = unsafe { core::mem::replace(&mut (*span).scan, 64) };
        assert_eq!(
            broken(&g, n),
            Some("a span's bitmap has a bit set below its scan start")
        );
        // SAFETY: as above.
        unsafe { (*span).scan = scan };
        assert_eq!(check_inner(&g, c, cached(&g, n)), Ok(()));
        // A bit set for an object not carved yet (the span's first half page is carved, the
        // rest of its 64 KiB or 8 KiB not).
        // SAFETY: as above; a bit of the span's own bitmap, cleared again below.
        let (bits, carved) = unsafe { ((*span).bits, (*span).carved() as usize) };
        // SAFETY: as above.
        assert!(carved < unsafe { (*span).capacity } as usize);
        let (word, bit) = (carved / 64, 1u64 << (carved % 64));
        // SAFETY: as above.
        unsafe { *bits.add(word) |= bit };
        assert_eq!(
            broken(&g, n),
            Some("a span's bitmap holds an object not carved yet")
        );
        // SAFETY: as above.
        unsafe { *bits.add(word) &= !bit };
        // A free object in the span whose tag was written over.
        let held = g.t[0].stack()[n];
        // SAFETY: the object in the span found above (16 bytes writable), tagged again below.
        unsafe { free_tag::clear(held) };
        assert_eq!(
            broken(&g, n),
            Some("a free object does not carry its free tag")
        );
        // SAFETY: as above.
        unsafe { free_tag::set(held) };
        assert_eq!(check_inner(&g, c, cached(&g, n)), Ok(()));
        // The class's stacked total off by one (every shard's lock is held, so nothing else
        // writes it until it is undone).
        CENTRAL[c].stacked.fetch_add(1, Ordering::Relaxed);
        assert_eq!(
            broken(&g, n),
            Some("the shards' counts differ from the class's stacked total")
        );
        CENTRAL[c].stacked.fetch_sub(1, Ordering::Relaxed);
        assert_eq!(check_inner(&g, c, cached(&g, n)), Ok(()));
        drop(g);
        // SAFETY: objects from `alloc_batch`, never used.
        unsafe { free_to_spans(c, &objs[6..]) };
        super::flush_where(|_, k, _| k == c);
    }
}
