//! Owned spans (`owned_spans=on`, the default; docs/design.md, "Owned spans"): for the classes of
//! 288 B to 960 B, and on a thread the classes of 32-256 B once its slab's stack of the class was
//! seen idle ([`routes`], [`route_idle`]), each slab owns spans of the classes its CPU allocates,
//! and a C `malloc` pops an object from the class's current owned span while a C `free` on the
//! owner's CPU pushes it back onto its span's list, one critical section each (`arch::owned_pop`,
//! `arch::owned_push`; a collect pushes its objects with `arch::owned_push_chain`).
//!
//! Owns: whether owned spans are on, the slow path that gives a class a current span with
//! objects ([`refill`]), each slab's lists of the spans it owns (one circular list per class,
//! its head in the slab at `slab::OWNED_LISTS_AT`, linked through `SpanExt::slab_prev/next`,
//! changed under the slab's capacity lock only), a drain's return of every owned span of a
//! stopped slab ([`give_back_stopped`]), and the figures (objects on the lists).
//!
//! Invariants, for every ready slab `i` and class `c`, outside the capacity lock:
//! - a span whose `owned.owner` is `owner_of(i)` is in slab `i`'s list for its class, is marked
//!   `in_slab`, and has `owned.start/room` set to its bytes; every span in the list is such a
//!   span (owner `i`), and its list's objects are free objects of it, tagged free, linked
//!   through their first words encoded with the free tag's key (`arch::OwnedWords`);
//! - `cur[c]` is 0 or the `OwnedWords` of a span in the list.
//!
//! Where ownership changes (the protocol `tests/owned_span_model.rs` checks): a slab takes a
//! span (under its capacity lock: listed first, then `owner` stored, so every span a push can
//! reach is in the list a drain walks); a drain takes every span back (stop word, fence, then
//! each span's list, `owner` and `cur` reset, under the capacity lock). A thread that moved
//! off the slab while it held the lock only fails its sections: the span it took stays listed
//! and owned, found by the slab's next slow path or its next drain.
//!
//! On where a drain can stop the sections: in an rseq mode with the rseq membarrier (x86_64;
//! every drain is `drain_fenced`), and since session 76 in fallback mode (every architecture),
//! where the same steps run under the slab's fallback lock ([`sec`], `percpu::fallback`) and a
//! drain takes that lock (`drain_locked`). Rust's `GlobalAlloc` path does not use owned spans
//! (its frees carry no free tag, which the pop checks).
//!
//! May call: `arch`, `central`, `free_tag`, `os`, `size_class`, `span`, `sync`, and in this
//! folder `slab`.

use super::slab::Slab;
use crate::arch::{self, OwnedPop, OwnedWords, NO_OWNER};
use crate::central;
use crate::free_tag;
use crate::os;
use crate::size_class::{object_index, size_of, NUM_CLASSES};
use crate::span::{Span, SpanExt, EXT_OFFSET};
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, CachePadded, Ordering};
use core::mem::offset_of;
use core::ptr::null_mut;

/// Owned spans are on (set once at process set-up, before the mode is published).
static ON: AtomicBool = AtomicBool::new(false);

/// Spans slabs took to own so far (statistics: `owned_spans_taken`).
pub static OWNED_TAKEN: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));

/// Wholly free owned spans given back whole to the page heap by a slow path: a free's when
/// keeping is off (a bound of 0), the oldest kept span past the bound, a kept span no other
/// class could take over, or a span the sweep found past the bound ([`sweep_freed`])
/// (statistics: `owned_spans_given_back`).
pub static GIVEN_BACK: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));

/// Kept spans a slab turned over to another class without the page heap
/// (`central::reclass_owned`; statistics: `owned_spans_reclassed`).
pub static RECLASSED: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));

/// Small classes threads routed to owned spans once their stacks were idle, one per thread and
/// class each time (a class unrouted and routed again counts again; [`route_idle`];
/// statistics: `owned_classes_routed`).
pub static ROUTED: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));

/// Small classes threads stopped routing to owned spans because their owned pushes kept
/// declining (churned across CPUs, not idle between bursts), one per thread and class each time
/// ([`count_declined`]; statistics: `owned_classes_unrouted`).
pub static UNROUTED: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));

/// Whether C allocations and frees use owned spans.
#[inline(always)]
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The largest class owned spans serve: objects up to 960 B (the C table's classes, where
/// `mixed-bursts` lives). Larger classes' spans hold few objects each, and a slab owning spans
/// of many of them held a good deal of memory (docs/benchmarks.md, "Session 45"); the 1 KiB
/// class stays on the stacks since session 47: owned, `batch`'s bursts of 1 KiB objects took
/// 1.05-1.08x the runner's time, and with the class on the stacks one thread's `batch` took
/// 0.92x [0.92-0.98] of that, `mixed-bursts` level (1.01x one thread, 0.97x two).
pub const MAX_CLASS: usize = crate::size_class::class_of(960);

/// The smallest class owned spans serve: 32 B. The classes below [`FIXED_MIN`] only on a
/// thread that routes them ([`route_idle`]); 16 B objects stay on the stacks.
pub const MIN_CLASS: usize = crate::size_class::class_of(17);

/// The smallest class every thread routes to owned spans from its set-up: the first above
/// 256 B. Below it a class starts on the per-CPU stacks: a program's churn lives mostly there,
/// where the stack hands back the object freed a moment ago and an owned span's list an older
/// one (owned spans for every class up to 1 KiB cost one thread's churn 1.11-1.28x its CPU time
/// and `larson` 1.14x, for objects from 129 B 1.08x `larson`; from 257 B level, with
/// `mixed-bursts` as fast as with every class owned then: docs/benchmarks.md, "Session 47"; from
/// 32 B `larson` 1.08x on one CPU and 1.14x on two, "Session 63"). A thread routes such a class
/// once a slow path finds its slab's stack of it idle ([`route_idle`]).
pub const FIXED_MIN: usize = crate::size_class::class_of(257);

// The first class above 256 B: the one below it holds 256 B objects.
const _: () = assert!(
    crate::size_class::CLASS_SIZE[FIXED_MIN] > 256
        && crate::size_class::CLASS_SIZE[FIXED_MIN - 1] == 256
);

// A thread's routes hold bit `c` for class `c`, up to `MAX_CLASS`: one word.
const _: () = assert!(MIN_CLASS < FIXED_MIN && MAX_CLASS < usize::BITS as usize);

/// The routes every thread starts with (`ThreadBlock::owned`, bit `c` for class `c`):
/// [`FIXED_MIN`]`..=`[`MAX_CLASS`].
pub const FIXED_ROUTES: usize = ((2 << MAX_CLASS) - 1) & !((1 << FIXED_MIN) - 1);

/// The classes a thread routes once idle ([`route_idle`]): `MIN_CLASS..FIXED_MIN`, this many.
const IDLE_ROUTED: usize = FIXED_MIN - MIN_CLASS;

/// A new thread's routes (`ThreadBlock::owned`): [`FIXED_ROUTES`] when owned spans are on,
/// else none.
pub(super) fn initial_routes() -> usize {
    if enabled() {
        FIXED_ROUTES
    } else {
        0
    }
}

/// Whether a C allocation or free of class `c` uses owned spans on the calling thread: `c` in
/// [`MIN_CLASS`]`..=`[`MAX_CLASS`] with its bit set in the thread's routes
/// (`arch::owned_routes`: [`FIXED_ROUTES`] from its set-up when the process has owned spans on,
/// and the classes [`route_idle`] added since). Bit `c` stands for class `c`, so the fast paths'
/// `bt` takes the class itself, with nothing formed before it (one instruction fewer here in
/// `free`, two in [`routes_fixed`], which `malloc` used before [`routes_small`]); the routes
/// never hold a bit below [`MIN_CLASS`] or above [`MAX_CLASS`].
#[inline(always)]
pub fn routes(c: usize) -> bool {
    c <= MAX_CLASS && (arch::owned_routes() >> c) & 1 != 0
}

/// [`routes`] for a class below 64 (`size_class::c_table_class`'s, C requests up to 1 KiB):
/// bit `c` of the routes alone, since no bit above [`MAX_CLASS`] is ever set
/// ([`FIXED_ROUTES`], [`set_route`]), so a class above it reads 0 there without a compare.
/// `malloc` and `calloc` test it for every class before the stack pop (`alloc_c_table_class`
/// in lib.rs): the routes' load and `bt` take the place of [`routes_fixed`]'s range compare,
/// and a small class routed once idle no longer runs a stack pop that fails before its owned
/// pop. With the stack path laid out straight through (the routed branch marked cold), one
/// thread's `mixed-bursts` took 0.955x the CPU time and a held band of stack classes the same
/// (docs/benchmarks.md, "Session 69"; session 66's test of every route before the pop, with
/// the range compare kept for the fixed classes, cost the churns 1.02x).
#[inline(always)]
pub fn routes_small(c: usize) -> bool {
    debug_assert!(c < 64);
    (arch::owned_routes() >> (c & 63)) & 1 != 0
}

/// [`routes`] for the classes every thread routes ([`FIXED_MIN`]`..=`[`MAX_CLASS`]) only: false
/// for a small class, routed or not, without reading the thread's routes. `alloc_class` tests
/// this before its stack pop, for the tagging allocations that do not go through the C table's
/// fast path (aligned requests, `realloc`'s moves and `realloc(NULL, n)`, and `malloc` and
/// `calloc` above 1 KiB, whose classes no route names), so a small class's pop pays no route
/// test; a routed small class's stack is empty but for what its pushes declined, and its
/// allocation there tests [`routes`] once that pop fails. (Tested before the pop, [`routes`]
/// took the stack classes' allocation phase in a held band of 96-224 B 1.04-1.06x the time;
/// after it, 1.02x: docs/benchmarks.md, "Session 63". `malloc` now tests [`routes_small`]
/// first, at no such cost.)
#[inline(always)]
pub fn routes_fixed(c: usize) -> bool {
    c.wrapping_sub(FIXED_MIN) <= MAX_CLASS - FIXED_MIN && (arch::owned_routes() >> c) & 1 != 0
}

/// Objects a slow path asks of a span at once for class `c`: up to [`COLLECT`], and about
/// [`RESIDENT_COLLECT_BYTES`] worth from a span whose pages are most likely resident
/// (`resident`, `Span::resident`), else [`COLLECT_BYTES`] worth, or one half page's worth
/// ([`FIRST_COLLECT_BYTES`]) from a span nothing was carved from yet (`fresh`); at least 4. A
/// carve without the class lock takes whole half pages, so up to a half page's objects more
/// ([`collect`]).
fn collect_count(c: usize, fresh: bool, resident: bool) -> usize {
    let bytes = if resident {
        RESIDENT_COLLECT_BYTES
    } else if fresh {
        FIRST_COLLECT_BYTES
    } else {
        COLLECT_BYTES
    };
    // `bytes / size_of(c)`, by multiplication (see `central::half_end`).
    object_index(bytes, c).clamp(4, COLLECT)
}

/// Turns owned spans on or off at process set-up (`setup::init_process`): on only when asked
/// for (`on`, which the caller clears in an rseq mode without the rseq membarrier), in fallback
/// mode (`locked`: the sections' steps under the slabs' locks, [`sec`]) or on an architecture
/// with the sections.
pub(super) fn init(on: bool, locked: bool, keep_bytes: usize) {
    ON.store(
        on && (locked || arch::HAS_CRITICAL_SECTIONS),
        Ordering::Relaxed,
    );
    LOCKED.store(on && locked, Ordering::Relaxed);
    KEEP_BYTES.store(keep_bytes, Ordering::Relaxed);
}

/// Objects a slow path asks of a span at once at most: the one it returns and the rest pushed
/// onto the span's list (the lazy carving of the session-44 prototype); a carve without the
/// class lock rounds up to whole half pages ([`HALF_OBJECTS`] more at most).
const COLLECT: usize = 64;

/// Bytes of objects a slow path asks of a span at once, about (`collect_count`): 56 objects of
/// 288 B, 17 of 960 B (carved without the class lock, whole half pages: 56-57 and 17-18). 32 KiB
/// measured 0.95-0.98x `mixed-bursts`' time at up to 6 % more peak RSS on `rounds` and `larson`
/// (docs/benchmarks.md, "Session 47").
const COLLECT_BYTES: usize = 16 << 10;

/// Bytes of objects a slow path asks at once of a span whose pages are most likely resident
/// (`Span::resident`: the page heap's dirty range, an upper bound, covered it, or it was
/// turned over after being carved whole), about: 64 objects of 288-512 B ([`COLLECT`]), 34 of
/// 960 B. The limits above are for the pages carving faults in; here it most likely faults in
/// none, and each collect costs a slow path, whose fixed part (the slab's lock, the walks, the
/// sections) a moving band of sizes pays on every span it turns over:
/// `benches/c/burst_threads.c`'s moving band took 82,907 refills where it took 151,648 (3,000
/// rounds), its allocation phase 0.947x [0.885-0.998] the time (60 pairs), `mixed-bursts`
/// 0.975x [0.889-1.006] the CPU time on one CPU (40) and 0.949x [0.889-1.015] on two (20), the
/// peak RSS level (docs/benchmarks.md, "Session 62"). Sessions 47, 48 and 51 tried 32 KiB for
/// every span, or a turned-over span's first collect at full size: more peak RSS, or nothing
/// resolved.
const RESIDENT_COLLECT_BYTES: usize = 32 << 10;

/// Bytes of objects the first slow path on a span nothing was carved from takes (one half page,
/// what carving touches at once on a small heap; a big heap's fresh spans populate eight half
/// pages ahead; a span most likely resident takes [`RESIDENT_COLLECT_BYTES`] instead): a slab
/// owns a span of each class its CPU allocates, and a program that
/// allocates a little of many classes on several CPUs kept most of 16 KiB carved per span
/// resident (two CPUs, peak RSS: `server` 7,012 KB against 7,124-7,168, `rounds` 5,364 against
/// 5,408-5,540, with owned spans off 6,788-6,840 and 5,260-5,264; `mixed-bursts` level, 0.99x;
/// 4 KiB for every collect took `mixed-bursts` 1.12x the time: docs/benchmarks.md,
/// "Session 47").
const FIRST_COLLECT_BYTES: usize = 4 << 10;

/// One more than the most objects of an owned class that start in one half page: how far past
/// [`COLLECT`] a carve's run may go ([`central::carve_owned`]), which [`give_carved_back`]'s
/// array holds.
const HALF_OBJECTS: usize = central::half_objects(MIN_CLASS);

/// Spans the slow path looks at in a class's list before it takes a new one.
const WALK: usize = 8;

/// The owned words of span `s` (in its extension, `Span::ext`).
fn words_of(s: *mut Span) -> *const OwnedWords {
    // SAFETY: only the field's address is taken.
    unsafe { &raw const (*Span::ext(s)).owned }
}

/// The span whose owned words are at `w`.
fn span_of_words(w: usize) -> *mut Span {
    (w - EXT_OFFSET - offset_of!(SpanExt, owned)) as *mut Span
}

/// Objects on span `s`'s list (a snapshot unless no section can reach it).
///
/// # Safety
/// `s` is a span record (pool memory, always readable).
unsafe fn listed_objects(s: *mut Span) -> usize {
    // SAFETY: the caller's contract: the record's extension is pool memory too.
    unsafe { SpanExt::listed(Span::ext(s)) as usize }
}

/// Fallback mode: the owned-span sections run under the slabs' fallback locks ([`sec`]). Set
/// once at process set-up, with [`ON`].
static LOCKED: AtomicBool = AtomicBool::new(false);

/// Whether the owned-span sections run under the slabs' fallback locks (fallback mode) rather
/// than as rseq critical sections.
#[inline(always)]
pub(super) fn locked() -> bool {
    LOCKED.load(Ordering::Relaxed)
}

/// The owned-span sections for the process's mode. The rseq modes run the critical sections
/// (`arch::owned_*`, each with its pseudocode there), which act on the calling CPU's slab and
/// fail when that slab is not the one meant. Fallback mode runs the same steps on the slab
/// meant, under its fallback lock ([`Slab::lock`]), which every locked section, locked push
/// and pop and drain of the slab takes: the lock orders them as running on the slab's CPU
/// orders the rseq sections, and a drain's hold of it is the fence (docs/design.md, "Owned
/// spans", "In fallback mode"). A locked section never fails for want of being on the right CPU,
/// only for a drain's stop word, an owner or current span that changed, or an empty list.
pub(super) mod sec {
    use super::*;

    /// The steps of `arch::owned_pop` on `slab`, whose fallback lock the caller holds.
    ///
    /// # Safety
    /// The caller holds `slab`'s fallback lock; the module invariants hold for `slab`.
    pub(in super::super) unsafe fn pop_held(slab: Slab, c: usize) -> OwnedPop {
        if slab.owned_stopped() {
            return OwnedPop::Fail;
        }
        let w = slab.owned_cur(c).load(Ordering::Relaxed) as *const OwnedWords;
        if w.is_null() {
            return OwnedPop::Fail;
        }
        // SAFETY: a current span's words (module invariants), which only holders of this lock
        // (or a drain after its stop) change; its list's objects are free objects of the
        // span, at least 16 bytes each, ours while we hold the lock.
        unsafe {
            let local = (*w).local.load(Ordering::Relaxed);
            let h = (local & arch::OWNED_HEAD_MASK) as usize;
            if h == 0 {
                return OwnedPop::Fail;
            }
            let key = free_tag::key();
            if !free_tag::is_free(h as *mut u8) {
                return OwnedPop::Corrupt(h as *mut u8);
            }
            let n = (h as *const usize).read() ^ key;
            if n != 0 && n.wrapping_sub((*w).start) > (*w).room {
                return OwnedPop::Corrupt(h as *mut u8);
            }
            (*w).local
                .store((local - h as u64 - (1 << 48)) | n as u64, Ordering::Relaxed);
            OwnedPop::Object(h as *mut u8)
        }
    }

    /// Pops an object of class `c` from `slab`'s current owned span (`arch::owned_pop` on the
    /// calling CPU's slab in the rseq modes).
    ///
    /// # Safety
    /// As `arch::owned_pop`.
    pub(super) unsafe fn pop(slab: Slab, c: usize) -> OwnedPop {
        if !locked() {
            // SAFETY: forwarded contract.
            return unsafe { arch::owned_pop(c) };
        }
        slab.lock();
        // SAFETY: we hold the lock.
        let r = unsafe { pop_held(slab, c) };
        slab.unlock();
        r
    }

    /// Pushes the chain `first..=last` of `k` objects onto the list of the owned span whose
    /// words are `words` (`arch::owned_push_chain` on the calling CPU's slab in the rseq modes;
    /// here under the lock of the slab that owns the span, whichever it is); the list's new
    /// count, or 0 (nothing written but `last`'s link) when no slab owns it or its owner is
    /// stopped.
    ///
    /// # Safety
    /// As `arch::owned_push_chain`.
    pub(in super::super) unsafe fn push_chain(
        words: *const OwnedWords,
        first: *mut u8,
        last: *mut u8,
        k: usize,
        key: usize,
    ) -> usize {
        if !locked() {
            // SAFETY: forwarded contract.
            return unsafe { arch::owned_push_chain(words, first, last, k, key) };
        }
        // SAFETY: the caller's contract: live owned words.
        let owner = unsafe { (*words).owner.load(Ordering::Relaxed) };
        if owner == NO_OWNER
            || owner as usize > super::super::state::G.nslabs.load(Ordering::Relaxed)
        {
            return 0;
        }
        let slab = Slab::of(owner as usize - 1);
        slab.lock();
        // SAFETY: under the lock of the slab the owner word named, read again: if it still
        // names it, the list is that slab's and ours to change while we hold the lock.
        let n = unsafe {
            if slab.owned_stopped() || (*words).owner.load(Ordering::Relaxed) != owner {
                0
            } else {
                let w = (*words).local.load(Ordering::Relaxed);
                last.cast::<usize>()
                    .write((w & arch::OWNED_HEAD_MASK) as usize ^ key);
                let w = first as u64 | ((w >> 48) + k as u64) << 48;
                (*words).local.store(w, Ordering::Relaxed);
                (w >> 48) as usize
            }
        };
        slab.unlock();
        n
    }

    /// The locked form of a one-store section on `slab`: under its fallback lock, fails while
    /// it is stopped or `words` (when not null) is not its span, else runs `step` with the
    /// class's current-span entry and returns what it says.
    fn word_section(
        slab: Slab,
        c: usize,
        words: *const OwnedWords,
        step: impl FnOnce(&AtomicUsize) -> bool,
    ) -> bool {
        let Some(id) = slab.index() else {
            return false;
        };
        slab.lock();
        // SAFETY: live owned words when not null (the callers' contracts).
        let ours = words.is_null()
            || unsafe { (*words).owner.load(Ordering::Relaxed) } == arch::owner_of(id);
        let ok = !slab.owned_stopped() && ours && step(slab.owned_cur(c));
        slab.unlock();
        ok
    }

    /// Makes `words` (null: none) class `c`'s current span on `slab` when `slab` owns it
    /// (`arch::owned_set_cur` on the calling CPU's slab in the rseq modes).
    ///
    /// # Safety
    /// As `arch::owned_set_cur`.
    pub(super) unsafe fn set_cur(slab: Slab, c: usize, words: *const OwnedWords) -> bool {
        if !locked() {
            // SAFETY: forwarded contract.
            return unsafe { arch::owned_set_cur(c, words) };
        }
        word_section(slab, c, words, |cur| {
            cur.store(words as usize, Ordering::Relaxed);
            true
        })
    }

    /// Gives up `slab`'s ownership of the span whose words are `words` (class `c`) when `slab`
    /// owns it and it is not current there (`arch::owned_retire` in the rseq modes).
    ///
    /// # Safety
    /// As `arch::owned_retire`.
    pub(super) unsafe fn retire(slab: Slab, c: usize, words: *const OwnedWords) -> bool {
        if !locked() {
            // SAFETY: forwarded contract.
            return unsafe { arch::owned_retire(c, words) };
        }
        debug_assert!(!words.is_null());
        word_section(slab, c, words, |cur| {
            if cur.load(Ordering::Relaxed) == words as usize {
                return false;
            }
            // SAFETY: live owned words (the contract), owned by `slab` (tested above).
            unsafe { (*words).owner.store(NO_OWNER, Ordering::Relaxed) };
            true
        })
    }

    /// Takes the span whose words are `words` off `slab`'s current spans (class `c`) when
    /// `slab` owns it and it is current there (`arch::owned_uncur` in the rseq modes).
    ///
    /// # Safety
    /// As `arch::owned_uncur`.
    pub(super) unsafe fn uncur(slab: Slab, c: usize, words: *const OwnedWords) -> bool {
        if !locked() {
            // SAFETY: forwarded contract.
            return unsafe { arch::owned_uncur(c, words) };
        }
        debug_assert!(!words.is_null());
        word_section(slab, c, words, |cur| {
            cur.compare_exchange(words as usize, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        })
    }
}

/// Aborts: the owned list of a span is corrupt at `p` (it lacks its free tag, or its link
/// leads out of the span): a write into a freed block, or a block freed twice through a path
/// the tag did not see.
#[cold]
#[inline(never)]
pub fn corrupt(p: *mut u8) -> ! {
    let mut m = os::Msg::new();
    m.str("malloc(): corrupted free list at ")
        .hex(p as u64)
        .str(" (a write into a freed block)");
    os::abort_with(&m)
}

/// Pops an object of class `c` for a C allocation: from the calling CPU's per-CPU stack of the
/// class when that holds objects (they go first, see `lib.rs`'s `alloc_owned_out`), else from the
/// CPU's current owned span. Null when neither gave one (both empty, rseq off, the slab
/// stopped, or the thread moved between the two sections): the slow path then. One section
/// when the stack is empty ([`arch::owned_pop_stack_first`]), where the stack's pop first cost
/// every owned allocation a failed section (`mixed-bursts` on one CPU: 0.985x [0.877-0.997]
/// the time, docs/benchmarks.md, "Session 52"). Aborts on a corrupt list.
///
/// The object's first word is left as it is: a list's object holds its encoded link there, and
/// a stack's object may hold a stale one (an object that was on a list and went back to its
/// span whole). Neither may reach the program (it would give the key away): the caller clears
/// the word with the free tag, in one store after its other stores (`lib.rs`, `handed_out`;
/// one thread's `mixed-bursts` took 0.96x the CPU time with that store in place of the two,
/// docs/benchmarks.md, "Session 66").
#[inline(always)]
pub fn pop_stack_first(c: usize) -> *mut u8 {
    // SAFETY: as in `pop`; class `c`'s header lies inside every slab (`c < NUM_CLASSES`).
    match unsafe { arch::owned_pop_stack_first(c) } {
        OwnedPop::Object(p) => p,
        // SAFETY: the slabs are set up as `percpu::pop` needs; `c < NUM_CLASSES`, so class
        // `c`'s header lies inside every slab.
        OwnedPop::Stacked => unsafe { arch::percpu_pop(c) },
        OwnedPop::Fail => null_mut(),
        OwnedPop::Corrupt(p) => corrupt(p),
    }
}

/// Pops an object of class `c` from the calling CPU's current owned span; null when there is
/// none. Aborts on a corrupt list. The object's first word still holds its encoded link, as
/// with [`pop_stack_first`]: the tests' pop ([`refill`] pops with [`pop_on`], and hands the
/// object to the C allocation's slow path, which clears it with the free tag: `lib.rs`,
/// `handed_out`).
#[cfg(all(test, target_arch = "x86_64"))]
#[inline(always)]
pub fn pop(c: usize) -> *mut u8 {
    // SAFETY: slabs are set up as `percpu::pop` needs; every non-zero `cur[c]` names the
    // owned words of a span its slab owns, with the process's key (module invariants).
    match unsafe { arch::owned_pop(c) } {
        OwnedPop::Object(p) => p,
        OwnedPop::Fail | OwnedPop::Stacked => null_mut(),
        OwnedPop::Corrupt(p) => corrupt(p),
    }
}

/// [`pop`] for a refill of `slab`: in fallback mode from `slab` itself, under its lock
/// ([`sec::pop`]).
fn pop_on(slab: Slab, c: usize) -> *mut u8 {
    // SAFETY: as in `pop`.
    match unsafe { sec::pop(slab, c) } {
        OwnedPop::Object(p) => p,
        OwnedPop::Fail | OwnedPop::Stacked => null_mut(),
        OwnedPop::Corrupt(p) => corrupt(p),
    }
}

/// Pushes `obj` (a free object, tagged free, of span `span`) onto its span's owned list when
/// its page-map home bits `home` (`pagemap::home_bits_unmasked`) name the calling CPU's slab
/// and that slab owns the span; false otherwise. `key` is the free tag's key (`free_tag::key`),
/// which the caller loaded to tag the object. The home test comes first, inside the section
/// ([`arch::owned_push`]): a slab takes every span it owns with itself as home (a listed one is
/// given it, `central::take_span_to_own`), so a free of another slab's object fails before it
/// reads the owner's line, which the owner's own pops and pushes write. A push that leaves
/// every object out of the span on its list (the span wholly free) gives the span back
/// ([`pushed_last`]), unless it is its class's current span (a `malloc`/`free` pair on the
/// current span's last object out would otherwise try it every time).
///
/// # Safety
/// `obj` is a free object of a class owned spans serve, tagged free, that nobody uses; `span`
/// is the span record its page-map entry names; `key` is the free tag's key.
#[inline(always)]
pub unsafe fn push(obj: *mut u8, span: *mut Span, home: usize, key: usize) -> bool {
    let words = words_of(span);
    // SAFETY: the caller's contract; the span's words satisfy their invariants (module
    // invariants), and a span no slab owns has owner `NO_OWNER`, which no id equals.
    let n = unsafe { arch::owned_push(words, obj, key, home) };
    if n == 0 {
        return false;
    }
    // The record again from the words, which stay in their register across the section, so
    // that `span` need not (`arch::opaque` keeps the compiler from reusing `span`).
    let span = span_of_words(arch::opaque(words as usize));
    // SAFETY: span records are pool memory, always readable; `in_use` is an atomic.
    if n == unsafe { (*span).in_use() } as usize {
        // SAFETY: as above; `obj` was the span's a moment ago.
        unsafe { pushed_last(obj, span) };
    }
    true
}

/// Fallback mode's [`push`] (`percpu::fallback::free_owned_locked`): `obj` onto its span's list
/// when slab `id` owns the span, under that slab's lock ([`sec::push_chain`]), and the span
/// given back when that left it wholly free ([`pushed_last`]); false (nothing done but, when
/// the owner changed under the lock, `obj`'s link) when another slab or none owns it, or slab
/// `id` is draining.
///
/// # Safety
/// As [`push`], in fallback mode; `id` is a slab index.
pub(super) unsafe fn push_locked(obj: *mut u8, span: *mut Span, id: usize) -> bool {
    debug_assert!(locked());
    let words = words_of(span);
    // SAFETY: span records are pool memory, always readable; the owner is read again under the
    // lock by the push.
    if unsafe { (*words).owner.load(Ordering::Relaxed) } != arch::owner_of(id) {
        return false;
    }
    // SAFETY: the caller's contract; the span's words satisfy their invariants.
    let n = unsafe { sec::push_chain(words, obj, obj, 1, free_tag::key()) };
    if n == 0 {
        return false;
    }
    // SAFETY: span records are pool memory, always readable; `in_use` is an atomic.
    if n == unsafe { (*span).in_use() } as usize {
        // SAFETY: as above; `obj` was the span's a moment ago.
        unsafe { pushed_last(obj, span) };
    }
    true
}

/// [`push`] of the last object out of span `span` (`obj`, on its list now): gives the span back
/// ([`give_back_free`]) unless it is its class's current span. Out of line, with the class
/// read from the page map again (the class of `obj`'s page, unchanged while the span is owned
/// or has objects out, and a valid class whatever it reads), so that `free` need not keep the
/// class across the push.
///
/// # Safety
/// `span` is a record of the span pool; `obj` was an object of it when its push committed.
#[cold]
#[inline(never)]
unsafe fn pushed_last(obj: *mut u8, span: *mut Span) {
    let c = crate::pagemap::class_of(crate::pagemap::PAGEMAP.get(obj as usize));
    let words = words_of(span);
    // SAFETY: the caller's contract: span records and their extensions are pool memory. The
    // owner was this slab a moment ago (the push committed), so its index names a slab;
    // `span` is a record from the page map, as `give_back_free` asks.
    unsafe {
        let owner = (*words).owner.load(Ordering::Relaxed) as usize;
        if owner != NO_OWNER as usize
            && Slab::of(owner - 1).owned_cur(c).load(Ordering::Relaxed) != words as usize
        {
            give_back_free(span);
        }
    }
}

/// Gives span `s` back to the central lists when the calling CPU's slab owns it, it is not its
/// class's current span and every object out of it is on its list (which [`push`] saw a moment
/// ago), through [`give_back_as`] with the owner it reads now. Does nothing when nobody owns it
/// any more.
///
/// # Safety
/// `s` is a record of the span pool (live or recycled: records are never unmapped).
#[cold]
#[inline(never)]
unsafe fn give_back_free(s: *mut Span) {
    // SAFETY: the caller's contract: records and their extensions are pool memory, readable.
    let owner = unsafe { SpanExt::owner(Span::ext(s)) } as usize;
    if owner != NO_OWNER as usize && owner <= super::state::G.nslabs.load(Ordering::Relaxed) {
        // SAFETY: forwarded contract.
        unsafe { give_back_as(owner - 1, s) };
    }
}

/// [`give_back_free`] for a span that slab `a` owned when the caller looked: under `a`'s
/// capacity lock, and only if `a` still owns it (ownership by `a` cannot change while the lock
/// is held: takes, retires and drains of `a`'s spans all hold it), the span is kept for reuse
/// ([`keep`]) when it is still wholly free and not current, the oldest kept spans given back
/// ([`evict_oldest`]) while the kept ones hold more than [`keep_bytes`]; else (or with nothing
/// to keep) it is given back itself ([`give_back_retired`]). Does nothing when `a` no longer
/// owns the span; a give-back does nothing when the thread runs elsewhere: the span stays
/// owned, to be reused or drained. When the lock is busy (a refill, growth, sweep, drain or
/// maintenance of `a` holds it), or the retire fails because the thread moved, it sets `a`'s
/// owned-freed hint instead, so that a later slow path of `a` sweeps the span ([`sweep_freed`],
/// one sweep a tick; a tick drains a slab whose hint stood a whole tick unswept): before
/// session 51 such a span stayed owned, wholly free, neither current nor kept, until its class
/// ran again or the slab drained (found by review).
///
/// Why the owner is read again under the lock: between the look and the lock, `a` may have
/// given the span up and another slab taken it; the retire section, run on that other slab's
/// CPU, would then succeed, and `a`'s list (under the lock held) and the other slab's (not
/// held) would be changed wrongly (found by review; `tests::a_give_back_under_an_owner_gone_
/// since_changes_nothing`).
///
/// # Safety
/// As [`give_back_free`]; `a` is a slab index.
unsafe fn give_back_as(a: usize, s: *mut Span) {
    let slab = Slab::of(a);
    if !slab.cap_lock().try_lock() {
        central::set_owned_freed(a);
        return;
    }
    // SAFETY: as in `give_back_free`.
    let owner = unsafe { SpanExt::owner(Span::ext(s)) };
    if owner != arch::owner_of(a) {
        slab.cap_lock().unlock();
        return;
    }
    let _errno = os::ErrnoKeeper::new();
    // SAFETY: `a` owns `s` and we hold `a`'s capacity lock, so `s` is in `a`'s list, its class
    // cannot change, and only this lock's holders make a span current.
    unsafe {
        let c = (*s).class as usize;
        if !is_kept(s) {
            let current = slab.owned_cur(c).load(Ordering::Relaxed) == words_of(s) as usize;
            if !current && listed_objects(s) == (*s).in_use() as usize && keep_bytes() > 0 {
                keep_bounded(slab, s);
            } else if sec::retire(slab, c, words_of(s)) {
                give_back_retired(slab, s, c);
            } else if !current {
                // The thread moved off `a`: a later sweep there retires it, as a sweep whose
                // retire fails leaves the hint too.
                central::set_owned_freed(a);
            }
        }
    }
    slab.cap_lock().unlock();
}

/// Gives back, or keeps, the owned spans of slab `id` (the slab the calling thread runs on)
/// that frees from elsewhere left wholly free: every object out of the span on its list, none
/// with the program, as a free onto the list that empties a span does ([`give_back_as`]):
/// kept while the kept spans stay within [`keep_bytes`], else retired and given back. Runs
/// when the central lists' hint for the slab is set (`central::owned_freed`, set by such a
/// free: the spans of a slab whose objects another CPU frees went back only when the slab
/// drained, and a busy slab does not: 20 MiB of 400 B blocks allocated on one CPU and freed on
/// the other stayed with the first, docs/benchmarks.md, "Session 49"), at most once per
/// maintenance tick, under the capacity lock (does nothing when it is busy).
///
/// The current spans stay (a refill chose them), and kept ones are kept already. The hint is
/// set again when a current span is wholly free (so that a sweep looks again, a tick later, once
/// it may no longer be current) and when a retire fails (the thread moved off the slab; the
/// sweep stops there).
pub(super) fn sweep_freed(id: usize) {
    sweep(id, true);
}

/// Fallback mode: [`sweep_freed`] of slab `id` by a thread on another slab, whatever the tick
/// (a locked retire runs on any slab, so the spans need not wait for the owner's own slow path,
/// which a thread that moved off the owner's CPU never runs: `percpu::refill_owned` calls it
/// before a fresh span would be taken, when it is worth a walk of the owner's lists).
pub(super) fn sweep_freed_elsewhere(id: usize) {
    debug_assert!(locked());
    sweep(id, false);
}

/// [`sweep_freed`]; at most once a tick for the slab when `once_a_tick`.
fn sweep(id: usize, once_a_tick: bool) {
    let slab = Slab::of(id);
    let tick = sweep_stamp();
    if (once_a_tick && slab.owned_swept().load(Ordering::Relaxed) == tick)
        || !slab.cap_lock().try_lock()
    {
        return;
    }
    slab.owned_swept().store(tick, Ordering::Relaxed);
    central::clear_owned_freed(id);
    let _errno = os::ErrnoKeeper::new();
    let mut current_freed = false;
    // SAFETY: we hold the capacity lock; the spans walked are the slab's owned spans, not
    // kept, wholly free (module invariants): as `give_back_as` keeps or retires one.
    let done = unsafe {
        walk_freed(slab, |c, s| {
            if slab.owned_cur(c).load(Ordering::Relaxed) == words_of(s) as usize {
                current_freed = true;
                true
            } else if slab.owned_kept_bytes().load(Ordering::Relaxed) + (*s).bytes() <= keep_bytes()
            {
                keep(slab, s);
                true
            } else if sec::retire(slab, c, words_of(s)) {
                give_back_retired(slab, s, c);
                true
            } else {
                false
            }
        })
    };
    if current_freed || !done {
        central::set_owned_freed(id);
    }
    slab.cap_lock().unlock();
}

/// What a sweep in the current maintenance tick stamps a slab with (`Slab::owned_swept`): the
/// tick count's low 32 bits plus one, since a slab's word starts at 0, before the first tick.
fn sweep_stamp() -> u32 {
    (central::ticks() as u32).wrapping_add(1)
}

/// Calls `f(c, s)` for each span `s` of the slab's owned class lists (class `c`) that is not
/// kept and is wholly free (every object out of it on its list; current ones included), in
/// list order, until `f` returns false; false then, else true. The walk counts each list's
/// spans first and saves each one's successor before `f` sees it.
///
/// # Safety
/// The caller holds the slab's capacity lock; `f` may give `s` back (take it off its list) or
/// keep it, and takes no other span off any of the slab's lists.
unsafe fn walk_freed(slab: Slab, mut f: impl FnMut(usize, *mut Span) -> bool) -> bool {
    for c in MIN_CLASS..=MAX_CLASS {
        let head = slab.owned_list(c);
        // SAFETY: under the capacity lock the class list is ours to walk; its members are
        // owned spans of class `c` (module invariants), which only `f` may take off it.
        unsafe {
            let mut s = head.load(Ordering::Relaxed) as *mut Span;
            for _ in 0..ring_len(head) {
                let next = (*Span::ext(s)).slab_next;
                if !is_kept(s) && listed_objects(s) == (*s).in_use() as usize && !f(c, s) {
                    return false;
                }
                s = next;
            }
        }
    }
    true
}

/// For a maintenance tick (`maintenance::drain_idle`, before the tick count moves on):
/// whether slab `i` (`slab`) holds owned spans others' frees left wholly free with no slow
/// path of its own to give them back ([`sweep_freed`]): the central lists' hint for it was
/// set at the previous tick and still is, the slab did not sweep since, and it owns such a
/// span that is not current ([`holds_freed`]). Such a slab is drained (fenced, as an idle
/// one), so that an owner busy on its fast paths alone, whose slab never looks idle, does not
/// keep them for ever.
pub(super) fn freed_unswept(i: usize, slab: Slab) -> bool {
    let hinted = enabled() && central::owned_freed(i) && owns_any(slab);
    // Written only when it changes: the word shares its line with the stop word, which every
    // owned section reads.
    let seen_word = slab.owned_freed_seen();
    let seen = seen_word.load(Ordering::Relaxed) != 0;
    if seen != hinted {
        seen_word.store(hinted as u32, Ordering::Relaxed);
    }
    // A sweep since the previous tick stamped the count that tick left.
    let swept = slab.owned_swept().load(Ordering::Relaxed) == sweep_stamp();
    hinted && seen && !swept && holds_freed(slab)
}

/// Whether the slab owns a span that is wholly free, neither current nor kept (what a sweep
/// would keep or give back); true when its capacity lock is busy (the drain then decides).
/// The caller holds no capacity lock.
fn holds_freed(slab: Slab) -> bool {
    if !slab.cap_lock().try_lock() {
        return true;
    }
    // SAFETY: we hold the capacity lock; `f` changes nothing.
    let none = unsafe {
        walk_freed(slab, |c, s| {
            slab.owned_cur(c).load(Ordering::Relaxed) == words_of(s) as usize
        })
    };
    slab.cap_lock().unlock();
    !none
}

/// Spans in the ring whose head is `head`, a slab's class list.
///
/// # Safety
/// `head` is the head of one of a slab's class lists, whose capacity lock the caller holds.
unsafe fn ring_len(head: &AtomicUsize) -> usize {
    let first = head.load(Ordering::Relaxed) as *mut Span;
    let (mut s, mut n) = (first, 0);
    while !s.is_null() {
        n += 1;
        // SAFETY: the caller's contract; members of the ring are span records.
        s = unsafe { (*Span::ext(s)).slab_next };
        if s == first {
            break;
        }
    }
    n
}

/// Bytes of wholly free owned spans a slab keeps for reuse, at most ([`KEEP_PER_CACHE`] times
/// `cpu_cache_bytes`, set at process set-up): a burst's spans, freed whole, serve the next
/// burst of their class as they are, or another class's without the page heap
/// (docs/design.md, "Kept spans").
fn keep_bytes() -> usize {
    KEEP_BYTES.load(Ordering::Relaxed)
}

/// See [`keep_bytes`].
static KEEP_BYTES: AtomicUsize = AtomicUsize::new(0);

/// A slab keeps wholly free owned spans up to this many times `cpu_cache_bytes` (2 MiB by
/// default): measured on `mixed-bursts`, whose two threads each free about 1.2 MiB of spans a
/// burst (docs/benchmarks.md, "Session 46").
pub(super) const KEEP_PER_CACHE: usize = 4;

/// Whether span `s` is in its owner's list of kept spans.
///
/// # Safety
/// `s` is a span record; the caller holds its owner's capacity lock.
unsafe fn is_kept(s: *mut Span) -> bool {
    // SAFETY: the caller's contract; the links change only under that lock.
    unsafe { !(*Span::ext(s)).kept_next.is_null() }
}

/// Adds span `s` (owned by `slab`, wholly free, not current, not kept) at the tail of the
/// slab's kept list (the newest).
///
/// # Safety
/// The caller holds the slab's capacity lock; `s` is in one of the slab's class lists.
unsafe fn keep(slab: Slab, s: *mut Span) {
    // SAFETY: the caller's contract; kept spans are span records of the slab.
    unsafe {
        Ring::Kept.push(slab.owned_kept(), s);
        slab.owned_kept_bytes()
            .fetch_add((*s).bytes(), Ordering::Relaxed);
    }
}

/// [`keep`]s span `s`, then gives the oldest kept spans back ([`evict_oldest`]) while the kept
/// spans hold more than [`keep_bytes`].
///
/// # Safety
/// As [`keep`].
unsafe fn keep_bounded(slab: Slab, s: *mut Span) {
    // SAFETY: forwarded contract.
    unsafe {
        keep(slab, s);
        while slab.owned_kept_bytes().load(Ordering::Relaxed) > keep_bytes() && evict_oldest(slab) {
        }
    }
}

/// The classes every thread routes ([`FIXED_MIN`]`..=`[`MAX_CLASS`]), which the hand of
/// [`keep_idle_current`] goes round; [`route_idle`]'s goes round the others.
const FIXED_CLASSES: usize = MAX_CLASS - FIXED_MIN + 1;

/// Looks at the current span of one class every thread routes, the next in turn (the slab's
/// hand goes round those classes, one class a refill), and, unless it is class `c`'s, sets it aside
/// ([`set_aside`]) when it is *idle*: wholly free (every object out of it on its list) and with
/// the same list word (`local`: head and count) as when the hand saw it wholly free the time
/// before. Its class's next `malloc` then takes it back from the kept list as it is (the
/// refill's walk, one slow path); meanwhile another class that needs a span turns it over, and
/// past the kept bound it goes back to the page heap.
///
/// What the test cannot tell: a class whose objects between the two looks were all freed in
/// the reverse order of their allocation shows the same list word (the pops and pushes undo
/// each other), and its span is set aside while in use. That costs its next `malloc` one slow
/// path (or a span, if another class turns the kept one over first), at most once per round
/// of the hand plus one refill ([`FIXED_CLASSES`] + 1 refills: making a span current clears
/// what the hand saw, and the hand's first look may come at the next refill).
///
/// Why: a wholly free current span is never kept ([`push`] skips it, so that a `malloc`/`free`
/// pair on its last object does not give it back each time), and a class whose use ended kept
/// its current span, list and all, until the class ran again or the slab drained. In
/// `mixed-bursts`, whose band of sizes leaves a class for about 20 rounds, that was a span of
/// each class the band had passed: one thread's peak RSS 8.3 MB against 7.6 with them kept,
/// and the classes entering the band turned over spans of the classes still in it
/// (docs/design.md, "Idle current spans").
///
/// # Safety
/// The caller holds the slab's capacity lock (so no refill there changes a current span, and
/// only this slab's pops and pushes change its spans' lists).
unsafe fn keep_idle_current(slab: Slab, c: usize) {
    let k = FIXED_MIN + turn(slab.owned_hand(), FIXED_CLASSES);
    if k != c {
        // SAFETY: forwarded contract.
        unsafe { set_aside_if_idle(slab, k) };
    }
}

/// The class a hand over `n` classes points at (less the first class), moving it on to the next:
/// the hands of [`keep_idle_current`] and [`route_idle`], written under the capacity lock.
fn turn(hand: &AtomicU32, n: usize) -> usize {
    let i = hand.load(Ordering::Relaxed) as usize % n;
    hand.store(((i + 1) % n) as u32, Ordering::Relaxed);
    i
}

/// [`keep_idle_current`]'s look at class `k`'s current span, if it has one (and
/// [`route_idle`]'s, for the small classes).
///
/// # Safety
/// As for [`keep_idle_current`].
unsafe fn set_aside_if_idle(slab: Slab, k: usize) {
    let w = slab.owned_cur(k).load(Ordering::Relaxed);
    if w == 0 || keep_bytes() == 0 {
        return;
    }
    let s = span_of_words(w);
    // SAFETY: `cur[k]` names a span the slab owns (module invariants; only this lock's
    // holders change that); its extension is pool memory, and `idle_seen` is written under
    // this lock only.
    unsafe {
        let e = Span::ext(s);
        let local = (*e).owned.local.load(Ordering::Relaxed);
        let free = wholly_free(s);
        let seen = core::mem::replace(&mut (*e).idle_seen, if free { local } else { 0 });
        if free && seen == local {
            set_aside(slab, k, s);
        }
    }
}

/// What the idle hand ([`route_idle`]) saw of a slab's stacks of the classes below
/// [`FIXED_MIN`], in the slab's idle looks (`Slab::idle_looks_at`; all zero in a new slab),
/// and what routed threads' frees saw of their owned pushes ([`count_declined`]). Written under
/// the slab's capacity lock, but for `declined`, `busy` and (at an unroute) `streak`, which
/// any thread on the slab's CPU also writes from its `free`. They are atomics written with
/// plain loads and stores, so an update may be lost: a free's store that lands after the hand
/// reset `declined` brings back up to a window's count, and the same goes for `busy`. The
/// unroute is a heuristic; nothing else reads these bytes.
#[repr(C)]
struct IdleLooks {
    /// The next class to look at, less [`MIN_CLASS`] (taken modulo [`IDLE_ROUTED`]).
    hand: AtomicU32,
    /// Per class: looks in a row, since the one before them, that saw the same stack.
    streak: [AtomicU8; IDLE_ROUTED],
    /// Per class: frees whose owned push declined another slab's object on this slab since the
    /// hand's last look at the class or the last busy window's end ([`count_declined`]),
    /// counted on the slab the freeing thread runs on.
    declined: [AtomicU8; IDLE_ROUTED],
    /// Per class: busy windows ([`BUSY_DECLINES`] such frees) with no calm look between, in
    /// bits 0-6, and in bit 7 ([`WINDOW_SINCE_LOOK`]) whether one ended since the hand's last
    /// look at the class.
    busy: [AtomicU8; IDLE_ROUTED],
    /// Per class: the stack the last look saw, as its count (bits 48-63) and its top object's
    /// address (bits 0-47; 0 when empty).
    seen: [AtomicU64; IDLE_ROUTED],
}

const _: () = assert!(core::mem::size_of::<IdleLooks>() <= super::slab::IDLE_LOOKS_BYTES);

/// Looks that must see a class's stack unchanged, in a row after a first one, before
/// [`route_idle`] takes it for idle. With one, a churn's pushes and pops that happened to
/// leave the same stack between two looks routed every small class of the runner's
/// `single-churn` (docs/benchmarks.md, "Session 63"); `mixed-bursts` leaves a class for about
/// 20 rounds, dozens of looks.
const IDLE_LOOKS: u8 = 3;

/// Declined owned pushes of another slab's objects of one class on a slab that make a *busy
/// window* ([`count_declined`]).
const BUSY_DECLINES: u8 = 255;

/// Busy windows in a row (with no calm look of the idle hand between them) after which a
/// thread stops routing a class ([`count_declined`]).
const BUSY_WINDOWS: u8 = 3;

/// Fewer declines than this since the idle hand's last look at a class, and no busy window's
/// end, make the look *calm*: it ends a run of busy windows ([`route_idle`]).
const CALM_DECLINES: u8 = 32;

/// In `IdleLooks::busy`: a busy window ended since the hand's last look at the class.
const WINDOW_SINCE_LOOK: u8 = 0x80;

/// Whether class `c` is one a thread routes once idle ([`route_idle`]), whose declined frees
/// [`count_declined`] counts: the test `free` makes before the call, so that the foreign frees
/// of the fixed classes (`larson`'s, `rounds'`) pay a compare, not a call.
#[inline(always)]
pub fn routed_once_idle(c: usize) -> bool {
    c.wrapping_sub(MIN_CLASS) < IDLE_ROUTED
}

/// Counts a C `free` (or a block `realloc` moved out) of class `c` (one [`routed_once_idle`]) whose
/// owned push declined an object of another slab's span (sent home or kept as any foreign free) on
/// `slab`, the slab the calling thread runs on, and stops routing the class on the calling thread
/// once [`BUSY_WINDOWS`] windows of [`BUSY_DECLINES`] such frees came with no calm look of the idle
/// hand ([`route_idle`]) between them. Every look starts the count again, so a window is 255 such
/// frees between two looks at the class (the hand comes to it every [`IDLE_ROUTED`] owned refills
/// of the slab): a rate, not a total. The counts are the slab's, the routes the thread's: the
/// thread whose free ends the third window loses its route. The caller routes class `c` (only such
/// a thread's `free` and `realloc` try the owned push). A decline of an object whose span's home is
/// this slab or none (one carved before the route, going round through the stack) is not counted:
/// `mixed-bursts` declines tens of thousands of those in a run, on one CPU as on two, and counted
/// they unrouted most of its routes.
///
/// Why: a class routed once idle can be churned across CPUs later (a program's phase changes). Its
/// owned pushes then decline most frees (the objects are other slabs' and go home), and each `free`
/// pays the owned push before the stack's: in `benches/c/route_phases.c` such a churn took
/// 1.20-1.39x the time it took with the class never routed at 2 M replacements a thread, 1.14-1.16x
/// at 6 M (docs/benchmarks.md, "Session 64"). A class whose bursts come back on their own CPU
/// declines almost none; a thread that moved declines a burst's worth once, and the hand's next
/// calm look (every [`IDLE_ROUTED`] owned refills) forgives it. A class is routed again once its
/// stack is idle again.
pub(super) fn count_declined(slab: Slab, c: usize) {
    debug_assert!(routed_once_idle(c));
    let (looks, i) = (idle_looks(slab), c - MIN_CLASS);
    let n = looks.declined[i].load(Ordering::Relaxed);
    if n < BUSY_DECLINES - 1 {
        looks.declined[i].store(n + 1, Ordering::Relaxed);
        return;
    }
    end_busy_window(looks, i);
}

/// [`count_declined`]'s end of a busy window of class `MIN_CLASS + i`: the window counted, and
/// the class unrouted on the calling thread after [`BUSY_WINDOWS`] in a row.
#[cold]
#[inline(never)]
fn end_busy_window(looks: &IdleLooks, i: usize) {
    looks.declined[i].store(0, Ordering::Relaxed);
    let busy = (looks.busy[i].load(Ordering::Relaxed) & !WINDOW_SINCE_LOOK) + 1;
    if busy < BUSY_WINDOWS {
        looks.busy[i].store(busy | WINDOW_SINCE_LOOK, Ordering::Relaxed);
        return;
    }
    looks.busy[i].store(0, Ordering::Relaxed);
    looks.streak[i].store(0, Ordering::Relaxed);
    if set_route(MIN_CLASS + i, false) {
        UNROUTED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Routes class `c` (of [`MIN_CLASS`]`..=`[`MAX_CLASS`]) to owned spans on the calling thread
/// (`routed`) or takes the route away; returns whether that changed the thread's routes. The
/// routes are read here, at the change: a signal handler's slow path or free on this thread
/// may have changed them since the caller last looked.
fn set_route(c: usize, routed: bool) -> bool {
    debug_assert!(
        (MIN_CLASS..=MAX_CLASS).contains(&c),
        "no route above MAX_CLASS (`routes_small`)"
    );
    let (routes, bit) = (arch::owned_routes(), 1 << c);
    if (routes & bit != 0) == routed {
        return false;
    }
    // SAFETY: the calling thread's own block, which only it writes.
    unsafe { (*arch::thread_block()).owned = routes ^ bit };
    true
}

/// The slab's idle looks.
fn idle_looks(slab: Slab) -> &'static IdleLooks {
    // SAFETY: the slab's idle-looks bytes lie inside its mapping (which lives for the process),
    // are 8-aligned, large enough (asserted above), zero until written (a valid `IdleLooks`
    // of atomics), and used only through this type.
    unsafe { &*(slab.idle_looks_at() as *const IdleLooks) }
}

/// Looks at the slab's stack of one class below [`FIXED_MIN`], the next in turn (the slab's
/// idle hand goes round them, one class a refill), and when it is *idle* (not empty, with the
/// same count and top object at [`IDLE_LOOKS`] looks in a row after a first one) moves its
/// objects to their spans and routes the class to owned spans on the calling thread
/// (`ThreadBlock::owned`). A class the thread routes already has its idle stack moved too:
/// its stack holds what its owned pushes declined (or what it held before it was routed).
/// The class's current span, if the slab has one, gets [`keep_idle_current`]'s look as well
/// (unless it is class `c`'s, the refill's).
///
/// Why: a stack keeps its objects while its class is unused. In `mixed-bursts`, whose band of
/// sizes leaves a class for about 20 rounds, a small class found its burst's objects there
/// when it came back, cold and in nearly random order (docs/benchmarks.md, "Session 62"); owned
/// spans hand it the memory other classes freed a moment ago (a kept span turned over) in
/// address order. Routing the small classes from the start costs the churns and `larson`
/// (1.08-1.14x), whose classes are never idle; routed once idle, `mixed-bursts` took 0.94x the
/// CPU time on two CPUs and 0.93x on one, and `larson`, `rounds` and `sqlite` were level
/// (docs/benchmarks.md, "Session 63").
///
/// The objects go past the transfer stacks to their spans (`central::free_to_spans`), which
/// the page heap takes back once wholly free: cold memory that the class, now routed, would
/// not ask the central lists for. Routes are per thread: a thread that routed a class keeps it
/// routed (its objects freed by others go home or to the stack, as those of every routed
/// class) until its owned pushes decline other slabs' objects for long ([`count_declined`]),
/// and routes it again once its stack is idle again. The hand's look at a routed class also
/// ends a run of busy windows when few frees declined since its last look.
///
/// What the test cannot tell: pushes and pops that leave the same stack at every look (a
/// burst freed in reverse between looks). The class is then routed while in use, as if idle.
///
/// Does nothing when the thread routes no class (owned spans off).
///
/// # Safety
/// The caller holds the capacity lock of `slab`, slab `id` (the hand, the streaks and the
/// stacks seen are written under it; see `IdleLooks` for what frees write too), for a refill of
/// class `c`.
unsafe fn route_idle(slab: Slab, id: usize, c: usize) {
    let routes = arch::owned_routes();
    // Fallback mode routes the fixed classes only: flushing a stack here takes its objects
    // with a batch section (`flush_stack`).
    if routes == 0 || locked() {
        return;
    }
    let looks = idle_looks(slab);
    let i = turn(&looks.hand, IDLE_ROUTED);
    let k = MIN_CLASS + i;
    if k != c {
        // SAFETY: forwarded contract.
        unsafe { set_aside_if_idle(slab, k) };
    }
    // A calm look (few foreign declines since the last one, and no busy window's end) ends a
    // run of busy windows.
    // Plain loads and stores, as `IdleLooks` says, not swaps: an atomic read-modify-write
    // (`xchg`) waits for every store before it to reach the cache, here the carve's tag
    // stores and the program's first writes to the objects it was just handed.
    let busy = looks.busy[i].load(Ordering::Relaxed);
    let declined = looks.declined[i].load(Ordering::Relaxed);
    looks.declined[i].store(0, Ordering::Relaxed);
    let calm = declined < CALM_DECLINES && busy & WINDOW_SINCE_LOOK == 0;
    looks.busy[i].store(
        if calm { 0 } else { busy & !WINDOW_SINCE_LOOK },
        Ordering::Relaxed,
    );
    let n = slab.count(k);
    let top = if n == 0 {
        0
    } else {
        slab.slot(k, n - 1).load(Ordering::Relaxed) as u64
    };
    let stack = (n as u64) << 48 | top;
    let same = looks.seen[i].load(Ordering::Relaxed) == stack;
    looks.seen[i].store(stack, Ordering::Relaxed);
    let streak = if same && n != 0 {
        looks.streak[i].load(Ordering::Relaxed) + 1
    } else {
        0
    };
    if streak < IDLE_LOOKS {
        looks.streak[i].store(streak, Ordering::Relaxed);
        return;
    }
    looks.streak[i].store(0, Ordering::Relaxed);
    flush_stack(k, id);
    if set_route(k, true) {
        ROUTED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Moves every object of class `k`'s stack on slab `id` to its span ([`route_idle`]), a batch
/// at a time, while the calling thread runs on that slab's CPU (a thread that moved off it
/// leaves the rest, and the stack of the CPU it runs on now, alone).
fn flush_stack(k: usize, id: usize) {
    let mut buf = [null_mut(); 32];
    loop {
        // SAFETY: the slabs are mapped as the sections need: `route_idle` runs only in an owned
        // refill, on the rseq path of `alloc_slow`, after `ensure_slab`; `buf` holds 32
        // pointers; the objects popped are ours.
        let got = unsafe {
            arch::percpu_pop_batch_on(
                super::slab::header_offset(k),
                id as u32,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if got == 0 {
            break;
        }
        // SAFETY: free objects of class `k`, popped off a stack: ours now.
        unsafe { central::free_to_spans(k, &buf[..got]) };
    }
}

/// Takes span `s`, class `k`'s current span on `slab` a moment ago, off the table of current
/// spans ([`arch::owned_uncur`]) and keeps it ([`keep_bounded`]) if it is still wholly free. A
/// pop of this slab between the caller's look and the section may have taken an object: then
/// it is only no longer current, and the push that empties it keeps it (or, with the capacity
/// lock busy, has a later slow path sweep it, [`give_back_as`]). Nothing changes when the
/// section fails (the thread moved: a drain cannot be at work, it holds the capacity lock).
///
/// # Safety
/// As [`keep_idle_current`]; `s` is a span the slab owns, of class `k`.
unsafe fn set_aside(slab: Slab, k: usize, s: *mut Span) {
    // SAFETY: the caller's contract; once not current the span only gains objects (no pop can
    // reach it), so a wholly free span seen after the section stays so for `keep`.
    unsafe {
        if !sec::uncur(slab, k, words_of(s)) {
            return;
        }
        if wholly_free(s) {
            keep_bounded(slab, s);
        }
    }
}

/// Whether every object out of span `s` is on its owned list, which is not empty.
///
/// # Safety
/// `s` is a span record (pool memory, always readable).
unsafe fn wholly_free(s: *mut Span) -> bool {
    // SAFETY: the caller's contract.
    unsafe {
        let listed = listed_objects(s);
        listed != 0 && listed == (*s).in_use() as usize
    }
}

/// Takes span `s` off the slab's kept list (it stays owned and in its class list).
///
/// # Safety
/// `s` is in the slab's kept list; the caller holds the slab's capacity lock.
unsafe fn unkeep(slab: Slab, s: *mut Span) {
    // SAFETY: the caller's contract; kept spans are span records of the slab.
    unsafe {
        Ring::Kept.remove(slab.owned_kept(), s);
        slab.owned_kept_bytes()
            .fetch_sub((*s).bytes(), Ordering::Relaxed);
    }
}

/// Gives the slab's oldest kept span back ([`give_back_retired`]); false when it keeps none or
/// the retire section fails (the thread runs on another CPU's slab now).
///
/// # Safety
/// The caller holds the slab's capacity lock.
unsafe fn evict_oldest(slab: Slab) -> bool {
    let h = slab.owned_kept().load(Ordering::Relaxed) as *mut Span;
    if h.is_null() {
        return false;
    }
    // SAFETY: the caller's contract: a kept span is owned by the slab, in its class list, and
    // never current (a refill unkeeps a span it makes current, under this lock).
    unsafe {
        let c = (*h).class as usize;
        if !sec::retire(slab, c, words_of(h)) {
            return false;
        }
        unkeep(slab, h);
        give_back_retired(slab, h, c);
    }
    true
}

/// Gives span `s` (class `c`), just retired by this slab ([`arch::owned_retire`]), back: off
/// the slab's class list, and its list with it ([`central::disown_whole`], else [`disown`]),
/// after which the page heap has its pages if it is wholly free.
///
/// # Safety
/// `s` was owned by `slab`, is not kept, and the retire section passed for it; the caller
/// holds the slab's capacity lock.
unsafe fn give_back_retired(slab: Slab, s: *mut Span, c: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        list_remove(slab, c, s);
        give_back_list(s, c);
    }
}

/// Gives span `s` (class `c`), retired and off its slab's lists, back with its list.
///
/// # Safety
/// As [`give_back_retired`], with `s` unlinked from the slab's class list.
unsafe fn give_back_list(s: *mut Span, c: usize) {
    // SAFETY: the caller's contract: after the retire the list is ours.
    unsafe {
        let w = (*Span::ext(s)).owned.local.swap(0, Ordering::Relaxed);
        if central::disown_whole(s, c, (w >> 48) as usize) {
            GIVEN_BACK.fetch_add(1, Ordering::Relaxed);
        } else {
            // Some object went out again since the push (a refill may have taken the span as
            // current and popped, then moved on): give the list back object by object.
            (*Span::ext(s)).owned.local.store(w, Ordering::Relaxed);
            disown(s, c);
        }
    }
}

/// Links `objs` (free objects of span `s`, tagged free, ours) into a chain and pushes it onto
/// `s`'s list; false (the objects still ours) when the calling CPU's slab does not own `s`.
///
/// # Safety
/// As [`arch::owned_push_chain`]; `objs` is not empty.
unsafe fn push_all(s: *mut Span, objs: &[*mut u8], key: usize) -> bool {
    for w in objs.windows(2) {
        // SAFETY: the objects are ours; the first word of each becomes its link.
        unsafe { w[0].cast::<usize>().write(w[1] as usize ^ key) };
    }
    let (first, last) = (objs[0], objs[objs.len() - 1]);
    // SAFETY: forwarded contract.
    unsafe { sec::push_chain(words_of(s), first, last, objs.len(), key) != 0 }
}

/// What [`refill`] got.
pub(super) enum Refilled {
    /// An object (still tagged free; its first word may hold its link or a stale one, which the
    /// C path clears, `lib::handed_out`).
    Object(*mut u8),
    /// Nothing of the slab's own, no kept span to turn over and no span the central lists
    /// list: only a fresh span would do, which the caller did not allow (`fresh_ok` false).
    WantsFresh,
    /// Nothing: the capacity lock was busy, the thread moved, or no memory.
    Nothing,
}

impl Refilled {
    /// The object, or null.
    pub(super) fn object(self) -> *mut u8 {
        match self {
            Refilled::Object(p) => p,
            _ => null_mut(),
        }
    }
}

/// The owned part of the allocation slow path for class `c`, for a thread that ran on slab
/// `id`: an object from the slab's owned spans — collected from the current span's bitmap,
/// from another span of the slab's list, or from a span the slab takes from the central lists
/// (a fresh one only if `fresh_ok`) — or why there is none ([`Refilled`]); the caller then
/// drains others or takes the stack path.
pub(super) fn refill(c: usize, id: usize, fresh_ok: bool) -> Refilled {
    debug_assert!(c > 0 && c < NUM_CLASSES);
    let slab = Slab::of(id);
    if !slab.cap_lock().try_lock() {
        return Refilled::Nothing;
    }
    free_tag::init();
    let mut wants_fresh = false;
    let p = refill_locked(slab, c, id, fresh_ok, &mut wants_fresh);
    slab.cap_lock().unlock();
    match (p.is_null(), wants_fresh) {
        (false, _) => Refilled::Object(p),
        (true, true) => Refilled::WantsFresh,
        (true, false) => Refilled::Nothing,
    }
}

/// [`refill`] under the slab's capacity lock. In order: objects pushed onto the current
/// span's list since the pop failed; another owned span with objects on its list (freed
/// here); the current span's bitmap (carving it further, or what other CPUs freed); another
/// owned span with objects in its bitmap; a kept span turned over; a span from the central
/// lists (a fresh one only if `fresh_ok`: else, with none listed, `wants_fresh` is set and the
/// result is null).
fn refill_locked(
    slab: Slab,
    c: usize,
    id: usize,
    fresh_ok: bool,
    wants_fresh: &mut bool,
) -> *mut u8 {
    let key = free_tag::key();
    // SAFETY: the caller holds the slab's capacity lock.
    unsafe {
        keep_idle_current(slab, c);
        route_idle(slab, id, c);
    }
    let cur = slab.owned_cur(c).load(Ordering::Relaxed);
    let cur_span = if cur == 0 {
        null_mut()
    } else {
        span_of_words(cur)
    };
    // SAFETY: `cur[c]` names a span the slab owns (module invariants; only drains and
    // retires, which hold this lock, end that); span records are always readable.
    if !cur_span.is_null() && unsafe { listed_objects(cur_span) } > 0 {
        return pop_on(slab, c);
    }
    // SAFETY: as above; a kept span's links change only under the lock we hold. A span in use
    // is preferred to a kept one, which stays whole for any class to take over.
    let mut s = find(slab, c, cur, |s| unsafe {
        if listed_objects(s) == 0 {
            Found::No
        } else if is_kept(s) {
            Found::Second
        } else {
            Found::Yes
        }
    });
    if s.is_null() && !cur_span.is_null() {
        // SAFETY: as above.
        let p = unsafe { collect(cur_span, c, key) };
        if !p.is_null() {
            return p;
        }
    }
    if s.is_null() {
        // SAFETY: members of the list are spans the slab owns (module invariants), and we
        // hold its capacity lock.
        s = find(slab, c, cur, |s| unsafe {
            if central::owned_has_objects(s) {
                Found::Yes
            } else {
                Found::No
            }
        });
    }
    if s.is_null() {
        // SAFETY: we hold the slab's capacity lock.
        s = unsafe { reclass_oldest(slab, c, id) };
    }
    if s.is_null() {
        s = central::take_span_to_own(c, id as u32, fresh_ok);
        if s.is_null() {
            *wants_fresh = !fresh_ok;
            return null_mut();
        }
        // SAFETY: a span just marked `in_slab` for us, which no section can reach yet.
        unsafe { publish(slab, c, id, s) };
        OWNED_TAKEN.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: `s` is a span in the slab's list (module invariants).
    unsafe {
        if !sec::set_cur(slab, c, words_of(s)) {
            return null_mut(); // moved, or rseq off: the span stays listed and owned
        }
        (*Span::ext(s)).idle_seen = 0;
        if is_kept(s) {
            unkeep(slab, s); // found by the bitmap walk: current now, so no longer kept
        }
        if listed_objects(s) > 0 {
            return pop_on(slab, c);
        }
        collect(s, c, key)
    }
}

/// Makes span `s` (class `c`, marked `in_slab`, no owner) slab `id`'s: sets its words, lists
/// it, then publishes the owner (so every span a push can reach is in the list a drain walks).
///
/// # Safety
/// No section can reach `s` (no slab names it as owner); the caller holds the slab's capacity
/// lock.
unsafe fn publish(slab: Slab, c: usize, id: usize, s: *mut Span) {
    // SAFETY: the caller's contract.
    unsafe {
        (*Span::ext(s)).owned.start = (*s).start;
        (*Span::ext(s)).owned.room = OwnedWords::room_of((*s).start, (*s).end());
        (*Span::ext(s)).owned.local.store(0, Ordering::Relaxed);
        list_push(slab, c, s);
        (*Span::ext(s))
            .owned
            .owner
            .store(arch::owner_of(id), Ordering::Release);
    }
}

/// The slab's oldest kept span for class `c`, which the refill's walks did not find one of its
/// own in: as it is when it is of class `c` (a class list longer than the walks reach; the
/// caller takes it off the kept list once it is current), else turned into a span of class `c`
/// ([`central::reclass_owned`]) and made the slab's again ([`publish`]). Null when the slab
/// keeps none, the retire section fails (the thread moved), or the span cannot be turned over
/// (it is then given back, [`give_back_list`]).
///
/// # Safety
/// The caller holds the slab's capacity lock; slab `id` is `slab`.
unsafe fn reclass_oldest(slab: Slab, c: usize, id: usize) -> *mut Span {
    let h = slab.owned_kept().load(Ordering::Relaxed) as *mut Span;
    if h.is_null() {
        return null_mut();
    }
    // SAFETY: the caller's contract: a kept span is owned by the slab, in its class list and
    // never current; after the retire its list is ours.
    unsafe {
        let old = (*h).class as usize;
        if old == c {
            // Its list whole: turning it over to its own class would drop it and carve the
            // span again (found by review; `tests::the_oldest_kept_span_of_the_class_is_taken_
            // as_it_is`).
            return h;
        }
        if !sec::retire(slab, old, words_of(h)) {
            return null_mut();
        }
        unkeep(slab, h);
        list_remove(slab, old, h);
        let w = (*Span::ext(h)).owned.local.swap(0, Ordering::Relaxed);
        if !central::reclass_owned(h, old, (w >> 48) as usize, c, id as u32) {
            (*Span::ext(h)).owned.local.store(w, Ordering::Relaxed);
            give_back_list(h, old);
            return null_mut();
        }
        publish(slab, c, id, h);
    }
    RECLASSED.fetch_add(1, Ordering::Relaxed);
    h
}

/// Takes [`collect_count`] objects from span `s` (one half page's worth from a span not carved
/// yet, unless it is `resident`): returns one and pushes the rest onto its list (or, if the
/// calling CPU's slab does not own it any more, to the central lists); null when the span had
/// none. While nothing was freed into its bitmap, it carves without the class lock
/// ([`central::carve_owned`]: whole half pages, up to a half page's objects more, carved
/// already linked, so the rest go onto the list as one chain with no array of pointers), else
/// takes from the bitmap under the lock ([`collect_from_bitmap`]).
///
/// # Safety
/// `s` is in the list of a slab whose capacity lock the caller holds; `key` is the free tag's
/// key ([`free_tag::key`], with which the carve encodes its links).
unsafe fn collect(s: *mut Span, c: usize, key: usize) -> *mut u8 {
    debug_assert!(
        (MIN_CLASS..=MAX_CLASS).contains(&c),
        "HALF_OBJECTS is sized for them"
    );
    debug_assert_eq!(key, free_tag::key());
    // SAFETY: the caller's contract: the span is `in_slab`, its slab's lock held. Its
    // `carved` changes only by carving, which for an owned span only this slab's collects do
    // (under the lock we hold), and `resident` only when it is turned over (under that lock
    // too): stable here.
    let (fresh, resident) = unsafe { ((*s).carved() == 0, (*s).resident) };
    let want = collect_count(c, fresh, resident);
    // SAFETY: as above.
    let (first, got) = unsafe { central::carve_owned(s, c, want) };
    if got == 0 {
        // SAFETY: forwarded contract.
        return unsafe { collect_from_bitmap(s, c, want, key) };
    }
    debug_assert!(got < COLLECT + HALF_OBJECTS, "{got} objects carved");
    if got > 1 {
        let size = size_of(c);
        let (next, last) = (
            first.wrapping_add(size),
            first.wrapping_add((got - 1) * size),
        );
        // SAFETY: the objects after `first`, carved just now: adjacent, tagged free, each but
        // the last linked to the next with `key`, and ours.
        if unsafe { sec::push_chain(words_of(s), next, last, got - 1, key) } == 0 {
            // SAFETY: as above; `got - 1` is in bounds (asserted above, `give_carved_back`).
            unsafe { give_carved_back(c, next, got - 1) };
        }
    }
    first
}

/// [`collect`] of objects freed into span `s`'s bitmap (by other CPUs), under the class lock
/// ([`central::take_from_owned`]): out of line, so that the carve path does not clear the
/// array of pointers this one fills (512 bytes).
///
/// # Safety
/// As [`collect`]; `want` is at most [`COLLECT`].
#[inline(never)]
unsafe fn collect_from_bitmap(s: *mut Span, c: usize, want: usize, key: usize) -> *mut u8 {
    let mut buf = [null_mut(); COLLECT];
    // SAFETY: the caller's contract.
    let got = unsafe { central::take_from_owned(s, c, &mut buf[..want]) };
    if got == 0 {
        return null_mut();
    }
    // SAFETY: the objects came from the span's bitmap (tagged free) and are ours.
    if got > 1 && unsafe { !push_all(s, &buf[1..got], key) } {
        // SAFETY: as above.
        unsafe { central::free_batch(c, &buf[1..got]) };
    }
    buf[0]
}

/// The `n` adjacent objects of class `c` from `first` on, carved by a collect whose push the
/// section refused, to the central lists. The span stays the slab's (the capacity lock the
/// collect holds keeps drains and retires out): the thread moved to a CPU whose slab does not
/// own it, or rseq is off.
///
/// # Safety
/// The objects are free, tagged free and ours; `n` is less than [`COLLECT`] plus
/// [`HALF_OBJECTS`] (a collect asks at most [`COLLECT`], and a carve adds less than a half
/// page's objects).
#[cold]
#[inline(never)]
unsafe fn give_carved_back(c: usize, first: *mut u8, n: usize) {
    let mut buf = [null_mut(); COLLECT + HALF_OBJECTS];
    let size = size_of(c);
    for (i, o) in buf[..n].iter_mut().enumerate() {
        *o = first.wrapping_add(i * size);
    }
    // SAFETY: the caller's contract.
    unsafe { central::free_batch(c, &buf[..n]) };
}

/// What [`find`] makes of a span.
enum Found {
    /// Take it.
    Yes,
    /// Take it if the walk finds none better.
    Second,
    /// Pass it over.
    No,
}

/// A span of the slab's class-`c` list, other than `cur`'s, that `wanted` takes, looking at up
/// to [`WALK`] spans from the head: the first it says [`Found::Yes`] to, else the first it said
/// [`Found::Second`] to; null when none. The head then moves past the span returned (so it and
/// the spans before it go to the tail; on a `Second`, the spans walked after it stay in
/// front), or, with none found, past every span walked.
fn find(slab: Slab, c: usize, cur: usize, wanted: impl Fn(*mut Span) -> Found) -> *mut Span {
    let head = slab.owned_list(c);
    let first = head.load(Ordering::Relaxed) as *mut Span;
    let (mut s, mut second): (*mut Span, *mut Span) = (first, null_mut());
    for _ in 0..WALK {
        if s.is_null() {
            break;
        }
        // SAFETY: a member of the list (module invariants), under the capacity lock.
        let next = unsafe { (*Span::ext(s)).slab_next };
        if words_of(s) as usize != cur {
            match wanted(s) {
                Found::Yes => {
                    // Moving the head past it makes it (and those passed over) the tail.
                    head.store(next as usize, Ordering::Relaxed);
                    return s;
                }
                Found::Second if second.is_null() => second = s,
                _ => {}
            }
        }
        s = next;
        if s == first {
            break;
        }
    }
    if !second.is_null() {
        // SAFETY: as above.
        head.store(
            unsafe { (*Span::ext(second)).slab_next } as usize,
            Ordering::Relaxed,
        );
    } else if !s.is_null() {
        head.store(s as usize, Ordering::Relaxed);
    }
    second
}

/// Unlinks span `s` from the slab's class-`c` list.
///
/// # Safety
/// `s` is in that list; the caller holds the slab's capacity lock.
unsafe fn list_remove(slab: Slab, c: usize, s: *mut Span) {
    // SAFETY: the caller's contract.
    unsafe { Ring::Class.remove(slab.owned_list(c), s) }
}

/// Adds span `s` at the tail of the slab's class-`c` list (before the head).
///
/// # Safety
/// `s` is in no slab list; the caller holds the slab's capacity lock.
unsafe fn list_push(slab: Slab, c: usize, s: *mut Span) {
    // SAFETY: the caller's contract.
    unsafe { Ring::Class.push(slab.owned_list(c), s) }
}

/// The two circular lists of a slab's owned spans, each linked through a pair of
/// [`SpanExt`] fields, with its head (the first span's record address, or 0) in the slab.
#[derive(Clone, Copy)]
enum Ring {
    /// A class's owned spans (`SpanExt::slab_prev/next`; head at `slab::OWNED_LISTS_AT`).
    Class,
    /// The kept spans, oldest first (`SpanExt::kept_prev/next`; head `owned_kept`).
    Kept,
}

impl Ring {
    /// The addresses of span `s`'s `(prev, next)` links in this ring.
    fn links(self, s: *mut Span) -> (*mut *mut Span, *mut *mut Span) {
        let e = Span::ext(s);
        // SAFETY: only the fields' addresses are taken.
        unsafe {
            match self {
                Ring::Class => (&raw mut (*e).slab_prev, &raw mut (*e).slab_next),
                Ring::Kept => (&raw mut (*e).kept_prev, &raw mut (*e).kept_next),
            }
        }
    }

    /// Adds span `s` at the ring's tail (before `head`'s span).
    ///
    /// # Safety
    /// `s` is a span record in no ring of this kind; `head` is the ring's head, whose slab's
    /// capacity lock the caller holds.
    unsafe fn push(self, head: &AtomicUsize, s: *mut Span) {
        let h = head.load(Ordering::Relaxed) as *mut Span;
        let (sp, sn) = self.links(s);
        // SAFETY: the caller's contract; members of the ring are span records.
        unsafe {
            if h.is_null() {
                (*sp, *sn) = (s, s);
                head.store(s as usize, Ordering::Relaxed);
            } else {
                let (hp, _) = self.links(h);
                let t = *hp;
                (*sp, *sn) = (t, h);
                *self.links(t).1 = s;
                *hp = s;
            }
        }
    }

    /// Unlinks span `s` from the ring whose head is `head`, and clears its links.
    ///
    /// # Safety
    /// `s` is in that ring; the caller holds its slab's capacity lock.
    unsafe fn remove(self, head: &AtomicUsize, s: *mut Span) {
        let (sp, sn) = self.links(s);
        // SAFETY: the caller's contract; members of the ring are span records.
        unsafe {
            let (p, n) = (*sp, *sn);
            if n == s {
                head.store(0, Ordering::Relaxed);
            } else {
                *self.links(p).1 = n;
                *self.links(n).0 = p;
                if head.load(Ordering::Relaxed) == s as usize {
                    head.store(n as usize, Ordering::Relaxed);
                }
            }
            (*sp, *sn) = (null_mut(), null_mut());
        }
    }
}

/// Drain, with the slab stopped (its owned stop word set, under its capacity lock) and fenced:
/// every owned span of the slab goes back to the central lists with the objects on its list,
/// no class has a current span, and the lists are empty. Returns the bytes moved.
pub(super) fn give_back_stopped(slab: Slab) -> usize {
    let mut bytes = 0;
    for c in 1..NUM_CLASSES {
        let head = slab.owned_list(c);
        let first = head.load(Ordering::Relaxed) as *mut Span;
        if first.is_null() {
            continue;
        }
        slab.owned_cur(c).store(0, Ordering::Relaxed);
        let mut s = first;
        loop {
            // SAFETY: a member of the list; no section can touch it (stopped and fenced).
            let next = unsafe { (*Span::ext(s)).slab_next };
            // SAFETY: as above.
            bytes += unsafe { disown(s, c) } * size_of(c);
            if next == first {
                break;
            }
            s = next;
        }
        head.store(0, Ordering::Relaxed);
    }
    // `disown` cleared every kept span's links.
    slab.owned_kept().store(0, Ordering::Relaxed);
    slab.owned_kept_bytes().store(0, Ordering::Relaxed);
    bytes
}

/// Ends the ownership of span `s` (class `c`): no owner, its list's objects back to its bitmap
/// ([`central::disown`]); returns how many objects its list held. Aborts on a corrupt list.
///
/// # Safety
/// `s` is in a slab's list, and no section can touch its list any more (the slab stopped and
/// fenced); the caller holds the slab's capacity lock and unlinks `s` from the list.
unsafe fn disown(s: *mut Span, c: usize) -> usize {
    let key = free_tag::key();
    // SAFETY: the caller's contract: the words are ours alone now.
    let (local, start, end) = unsafe {
        (*Span::ext(s))
            .owned
            .owner
            .store(NO_OWNER, Ordering::Relaxed);
        (*Span::ext(s)).slab_prev = null_mut();
        (*Span::ext(s)).slab_next = null_mut();
        (*Span::ext(s)).kept_prev = null_mut();
        (*Span::ext(s)).kept_next = null_mut();
        (
            (*Span::ext(s)).owned.local.swap(0, Ordering::Relaxed),
            (*Span::ext(s)).owned.start,
            (*Span::ext(s)).owned.end(),
        )
    };
    let n = (local >> 48) as usize;
    let size = size_of(c);
    let mut buf = [null_mut(); COLLECT];
    let mut k = 0;
    let mut p = (local & arch::OWNED_HEAD_MASK) as usize;
    for i in 0..n {
        if p < start || p >= end || !(p - start).is_multiple_of(size) {
            corrupt(p as *mut u8);
        }
        // SAFETY: an object of the span on its list (checked to be one): ours.
        let (link, tagged) =
            unsafe { ((p as *const usize).read(), free_tag::is_free(p as *mut u8)) };
        if !tagged {
            corrupt(p as *mut u8);
        }
        buf[k] = p as *mut u8;
        k += 1;
        let last = i + 1 == n;
        if k == buf.len() && !last {
            // SAFETY: free objects of the span, ours; the span stays `in_slab` (alive).
            unsafe { central::free_to_spans(c, &buf[..k]) };
            k = 0;
        }
        p = link ^ key;
    }
    // SAFETY: the rest of the list (possibly none), then the span's ownership ends.
    unsafe { central::disown(s, c, &buf[..k]) };
    n
}

/// Objects of class `c` on the lists of slab `slab`'s owned spans (a snapshot).
pub(super) fn listed(slab: Slab, c: usize) -> usize {
    let first = slab.owned_list(c).load(Ordering::Relaxed) as *mut Span;
    if first.is_null() {
        return 0;
    }
    let mut n = 0;
    let mut s = first;
    // Bounded: a list being changed (under the lock we do not hold) may not lead back.
    for _ in 0..1 << 16 {
        // SAFETY: span records are pool memory, always readable; a racy walk only miscounts.
        unsafe {
            n += listed_objects(s);
            s = (*Span::ext(s)).slab_next;
        }
        if s.is_null() || s == first {
            break;
        }
    }
    n
}

/// Whether slab `slab` owns any span (a snapshot).
pub(super) fn owns_any(slab: Slab) -> bool {
    (1..NUM_CLASSES).any(|c| slab.owned_list(c).load(Ordering::Relaxed) != 0)
}

/// A number that changes whenever the slab's owned spans are used (almost surely): its current
/// spans and their list words (maintenance's idle test).
pub(super) fn signature(slab: Slab) -> u32 {
    (1..NUM_CLASSES).fold(0u32, |h, c| {
        let cur = slab.owned_cur(c).load(Ordering::Relaxed);
        let local = if cur == 0 {
            0
        } else {
            // SAFETY: span records are pool memory, always readable.
            unsafe {
                (*Span::ext(span_of_words(cur)))
                    .owned
                    .local
                    .load(Ordering::Relaxed)
            }
        };
        h.rotate_left(5) ^ (cur as u32) ^ (local as u32) ^ ((local >> 32) as u32)
    })
}

/// Executable invariants of the owned spans (x86_64 tests and the `fuzzing` feature).
#[cfg(any(all(test, target_arch = "x86_64"), feature = "fuzzing"))]
pub mod check {
    use super::*;
    use crate::central::check::span_of_object;
    use crate::page_heap::check::{ensure, Broken};
    use crate::span::SpanState;

    /// Spans a list may hold before the walk calls it a loop.
    const MAX_WALK: usize = 1 << 20;
    /// Objects a span holds at most (64 KiB of 16-byte objects).
    const MAX_OBJECTS: usize = 4096;

    /// Checks slab `i`'s owned spans at rest (no section, slow path or drain running on it):
    /// for each class, every span of its list is a small span of the class marked `in_slab`,
    /// owned by slab `i`, with its bytes in its owned words and consistent links; its list holds
    /// exactly its count of distinct objects of the span, each carved, tagged free and not in its
    /// bitmap, and no more than `in_use`; `cur` names a span of the list or none; and the stop
    /// word is clear.
    pub fn check_owned(i: usize, slab: Slab) -> Result<(), Broken> {
        ensure(
            slab.header_owned_stop() == 0,
            "a slab at rest has its owned-span stop word set",
            i,
        )?;
        let key = free_tag::key_raw();
        let mut kept_in_lists = 0;
        for c in 1..NUM_CLASSES {
            let first = slab.owned_list(c).load(Ordering::Relaxed) as *mut Span;
            let cur = slab.owned_cur(c).load(Ordering::Relaxed);
            let mut cur_found = cur == 0;
            if first.is_null() {
                ensure(cur == 0, "a class has a current owned span but no list", c)?;
                continue;
            }
            let mut s = first;
            for _ in 0..MAX_WALK {
                let at = s as usize;
                cur_found |= words_of(s) as usize == cur;
                // SAFETY: members of the list are span records (pool memory, readable); at
                // rest nothing changes them.
                unsafe {
                    ensure(
                        (*s).state == SpanState::Small && (*s).class as usize == c && (*s).in_slab,
                        "an owned span is not a small span of its class marked in_slab",
                        at,
                    )?;
                    ensure(
                        (*Span::ext(s)).owned.owner.load(Ordering::Relaxed) == arch::owner_of(i),
                        "a span in a slab's list is not owned by that slab",
                        at,
                    )?;
                    ensure(
                        (*Span::ext(s)).owned.start == (*s).start
                            && (*Span::ext(s)).owned.end() == (*s).end(),
                        "an owned span's words do not give its bytes",
                        at,
                    )?;
                    let next = (*Span::ext(s)).slab_next;
                    ensure(
                        !next.is_null() && (*Span::ext(next)).slab_prev == s,
                        "an owned-span list's links disagree",
                        at,
                    )?;
                    let local = (*Span::ext(s)).owned.local.load(Ordering::Relaxed);
                    let n = (local >> 48) as usize;
                    ensure(
                        n <= (*s).in_use() as usize,
                        "an owned list holds more objects than are out of its span",
                        at,
                    )?;
                    if is_kept(s) {
                        kept_in_lists += 1;
                        ensure(
                            words_of(s) as usize != cur,
                            "a kept span is its class's current span",
                            at,
                        )?;
                        ensure(
                            n == (*s).in_use() as usize,
                            "a kept span has objects out",
                            at,
                        )?;
                    }
                    ensure(
                        n <= MAX_OBJECTS,
                        "an owned list's count is past a span's",
                        at,
                    )?;
                    let mut seen = [0usize; MAX_OBJECTS];
                    let mut p = (local & arch::OWNED_HEAD_MASK) as usize;
                    for slot in seen.iter_mut().take(n) {
                        ensure(
                            p >= (*s).start && p < (*s).end(),
                            "an owned list's link leads out of its span",
                            p,
                        )?;
                        ensure(
                            span_of_object(p as *mut u8, c)? == s,
                            "an owned list holds another span's object",
                            p,
                        )?;
                        ensure(
                            free_tag::is_free(p as *mut u8),
                            "an object on an owned list does not carry its free tag",
                            p,
                        )?;
                        let k = (p - (*s).start) / size_of(c);
                        ensure(
                            *(*s).bits.add(k / 64) & 1 << (k % 64) == 0,
                            "an object is both on an owned list and in its span's bitmap",
                            p,
                        )?;
                        *slot = p;
                        p = (p as *const usize).read() ^ key;
                    }
                    ensure(p == 0, "an owned list is longer than its count", at)?;
                    let seen = &mut seen[..n];
                    seen.sort_unstable();
                    if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
                        return Err(Broken {
                            what: "an object is twice on an owned list",
                            at: w[0],
                        });
                    }
                    s = next;
                }
                if s == first {
                    break;
                }
            }
            ensure(s == first, "an owned-span list loops", first as usize)?;
            ensure(
                cur_found,
                "a class's current owned span is not in the slab's list",
                cur,
            )?;
        }
        check_kept(slab, kept_in_lists)
    }

    /// Checks slab `slab`'s kept list at rest: consistent links, as many spans as its class
    /// lists hold kept ones (`in_lists`, so each kept span is in its class list, which
    /// [`check_owned`] checked), and their bytes as the slab counts them.
    fn check_kept(slab: Slab, in_lists: usize) -> Result<(), Broken> {
        let first = slab.owned_kept().load(Ordering::Relaxed) as *mut Span;
        let (mut n, mut bytes, mut s) = (0, 0, first);
        while !s.is_null() && n <= in_lists {
            // SAFETY: kept spans are span records of the slab; at rest nothing changes them.
            unsafe {
                let next = (*Span::ext(s)).kept_next;
                ensure(
                    !next.is_null() && (*Span::ext(next)).kept_prev == s,
                    "a kept list's links disagree",
                    s as usize,
                )?;
                n += 1;
                bytes += (*s).bytes();
                s = next;
            }
            if s == first {
                break;
            }
        }
        ensure(
            n == in_lists,
            "the kept list and the class lists' kept spans differ",
            n,
        )?;
        ensure(
            bytes == slab.owned_kept_bytes().load(Ordering::Relaxed),
            "a slab's kept bytes are not its kept spans'",
            bytes,
        )
    }
}

/// An owned span's life on the calling thread's slab, in both rseq modes: taken by a refill,
/// its objects popped and pushed back, given back once wholly free and not current, and taken
/// back by a drain with objects still out. The tests call the layer directly, on a class no
/// other unit test allocates ([`SIZE`]), whatever `owned_spans` says.
#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::super::drain::drain_where;
    use super::super::{current_rseq_id, pinned_in_both_rseq_modes};
    use super::*;
    use crate::size_class::class_of;
    use std::vec::Vec;

    /// An object size no other unit test uses.
    const SIZE: usize = 592;

    /// An object size of a class no other unit test allocates at all (the 832 B class), so
    /// that every span of it a test takes is new.
    const FRESH_SIZE: usize = 800;

    /// The owned words of class `c`'s current span on `slab`, or null.
    fn current(slab: Slab, c: usize) -> *mut Span {
        match slab.owned_cur(c).load(Ordering::Relaxed) {
            0 => null_mut(),
            w => span_of_words(w),
        }
    }

    fn drain(id: usize) {
        drain_where(|| false, |i, _| i == id);
    }

    /// Asserts that span `s` is owned by no slab and that slab `slab` lists no span of class
    /// `c`.
    fn assert_disowned(slab: Slab, c: usize, s: *mut Span) {
        // SAFETY: span records are pool memory, always readable.
        unsafe {
            assert_eq!(
                (*Span::ext(s)).owned.owner.load(Ordering::Relaxed),
                NO_OWNER
            );
            assert!(!(*s).in_slab, "the central lists have the span back");
        }
        assert_eq!(
            slab.owned_list(c).load(Ordering::Relaxed),
            0,
            "no span listed"
        );
        assert!(current(slab, c).is_null(), "no current span");
    }

    /// A slab other than slab `id`, or none (said on stderr) on a machine with one: the tests
    /// that name another slab as a span's owner then have nothing to test.
    fn other_slab(id: usize) -> Option<usize> {
        let slabs = super::super::slab_count();
        if slabs < 2 {
            std::eprintln!("one slab: no other owner to name");
            return None;
        }
        Some((id + 1) % slabs)
    }

    /// A free that looked at a span's owner, then found it given up by that slab and taken by
    /// the one it runs on now, must leave the span alone: `give_back_as` is handed another
    /// slab as the owner it saw, for a span this CPU's slab owns (not current, so the retire
    /// section would pass here).
    #[test]
    fn a_give_back_under_an_owner_gone_since_changes_nothing() {
        let (_serial, saved) = pinned_in_both_rseq_modes(
            "percpu::owned::tests::a_give_back_under_an_owner_gone_since_changes_nothing",
            64,
        );
        let id = current_rseq_id();
        let Some(other) = other_slab(id) else {
            crate::os::set_affinity(&saved);
            return;
        };
        let slab = Slab::of(id);
        let c = class_of(SIZE);
        drain(id);
        let p = refill(c, id, true).object();
        assert!(!p.is_null());
        let s = current(slab, c);
        // SAFETY: the slab layout is set up; null names no span.
        assert!(unsafe { arch::owned_set_cur(c, core::ptr::null()) });
        let other_head = Slab::of(other).owned_list(c).load(Ordering::Relaxed);
        // SAFETY: a span record this slab owns.
        unsafe { give_back_as(other, s) };
        // SAFETY: span records are pool memory, always readable.
        let owner = unsafe { (*Span::ext(s)).owned.owner.load(Ordering::Relaxed) };
        assert_eq!(owner, arch::owner_of(id), "still this slab's");
        assert_eq!(
            slab.owned_list(c).load(Ordering::Relaxed),
            s as usize,
            "still in this slab's list"
        );
        assert_eq!(
            Slab::of(other).owned_list(c).load(Ordering::Relaxed),
            other_head,
            "the other slab's list untouched"
        );
        check::check_owned(id, slab).unwrap();
        // SAFETY: handed out as `malloc` hands objects out, then freed as a C program would.
        unsafe {
            free_tag::clear(p);
            crate::free(p);
        }
        drain(id);
        crate::os::set_affinity(&saved);
    }

    /// A span the central lists hold that another slab carved (or none, in a process with one
    /// slab) becomes wholly this slab's when its refill takes it to own: this slab's frees of
    /// the span's objects that were out when it was taken go onto its owned list. Before
    /// session 54 the span kept the other home, so those frees found it foreign and sent the
    /// objects there, where a full inbox left them in this CPU's stack, foreign again at each
    /// later free.
    #[test]
    fn a_span_taken_from_another_home_takes_the_owners_frees() {
        let (_serial, saved) = pinned_in_both_rseq_modes(
            "percpu::owned::tests::a_span_taken_from_another_home_takes_the_owners_frees",
            64,
        );
        let id = current_rseq_id();
        let slab = Slab::of(id);
        // Another slab's home, or none where the process has one slab: not this slab's either way.
        let slabs = super::super::state::G.nslabs.load(Ordering::Relaxed);
        let other = if slabs > 1 {
            ((id + 1) % slabs) as u32
        } else {
            crate::span::NO_HOME
        };
        // A class no other unit test allocates (that of 312-byte requests).
        let c = class_of(312);
        drain(id);
        // A span of another home, listed with objects out, as the other slab's drain leaves it.
        let s = central::take_span_to_own(c, other, true);
        assert!(!s.is_null());
        let mut out = [null_mut(); 4];
        // SAFETY: a span just taken to own, which no slab owns or reaches: ours alone, as a
        // slab's span under its capacity lock; given up with its objects out, it is listed.
        unsafe {
            assert_eq!(central::take_from_owned(s, c, &mut out), out.len());
            central::disown(s, c, &[]);
        }
        let p = refill_until(c, id);
        assert_eq!(current(slab, c), s, "the refill took the listed span");
        // SAFETY: span records are pool memory, always readable.
        assert_eq!(unsafe { (*s).home() }, id as u32, "its home is the owner");
        // SAFETY: a span record the slab owns.
        let listed = unsafe { listed_objects(s) };
        for (k, &q) in out.iter().enumerate() {
            free_owned(q, s, c);
            // SAFETY: as above.
            assert_eq!(unsafe { listed_objects(s) }, listed + k + 1);
        }
        check::check_owned(id, slab).unwrap();
        // SAFETY: handed out as `malloc` hands objects out, then freed as a C program would.
        unsafe {
            free_tag::clear(p);
            crate::free(p);
        }
        drain(id);
        crate::central::CENTRAL[c].check_invariants(c).unwrap();
        crate::os::set_affinity(&saved);
    }

    /// A C `malloc` of a class owned spans serve takes what the CPU's stack holds of that class
    /// before the current owned span's list (`alloc_owned_out`): only what did not go onto an owned
    /// span's list reaches that stack, and popped last it waited while the slab carved further.
    #[test]
    fn a_routed_malloc_takes_the_stack_before_the_owned_list() {
        let (_serial, saved) = pinned_in_both_rseq_modes(
            "percpu::owned::tests::a_routed_malloc_takes_the_stack_before_the_owned_list",
            64,
        );
        stack_before_list(class_of(SIZE));
        crate::os::set_affinity(&saved);
    }

    /// The same for a small class the thread routed once idle, whose route `malloc` tests before
    /// any stack pop (`alloc_c_table_class`, one test for every class up to 1 KiB): the owned
    /// pop still takes the stack first.
    #[test]
    fn a_routed_small_class_malloc_takes_the_stack_before_the_owned_list() {
        let (_serial, saved) = pinned_in_both_rseq_modes(
            "percpu::owned::tests::a_routed_small_class_malloc_takes_the_stack_before_the_owned_list",
            64,
        );
        let k = class_of(160);
        assert!(routed_once_idle(k));
        let routes = Routes::set(FIXED_ROUTES | 1 << k);
        stack_before_list(k);
        drop(routes);
        crate::os::set_affinity(&saved);
    }

    /// For every class below 64 (those of C requests up to 1 KiB) and every routes word a thread
    /// can hold, `routes_small` (bit `c` alone) says what `routes` says.
    #[test]
    fn routes_small_agrees_with_routes_below_64() {
        let _routes = Routes::set(0);
        let words = [0, FIXED_ROUTES]
            .into_iter()
            .chain((MIN_CLASS..FIXED_MIN).map(|k| FIXED_ROUTES | 1 << k))
            .chain([FIXED_ROUTES | ((1 << FIXED_MIN) - (1 << MIN_CLASS))]);
        for w in words {
            Routes::write(w);
            for c in 1..64.min(crate::size_class::NUM_CLASSES) {
                assert_eq!(routes_small(c), routes(c), "class {c}, routes {w:#x}");
            }
        }
    }

    /// The calling thread's owned routes (`ThreadBlock::owned`) set for a test: what they were
    /// before comes back when the guard is dropped, also when an assertion fails.
    struct Routes(usize);

    impl Routes {
        /// Sets the routes to `w` until the guard is dropped.
        fn set(w: usize) -> Routes {
            let before = arch::owned_routes();
            Routes::write(w);
            Routes(before)
        }

        /// Sets the routes to `w` (inside a guard's life, which puts back its own word).
        fn write(w: usize) {
            // SAFETY: the calling thread's own block, which only it writes.
            unsafe { (*arch::thread_block()).owned = w };
        }
    }

    impl Drop for Routes {
        fn drop(&mut self) {
            Routes::write(self.0);
        }
    }

    /// [`a_routed_malloc_takes_the_stack_before_the_owned_list`] for class `c`, which the thread
    /// routes, on the slab it is pinned to.
    fn stack_before_list(c: usize) {
        let id = current_rseq_id();
        let slab = Slab::of(id);
        assert!(routes(c), "owned spans serve class {c} on this thread");
        drain(id);
        let p = refill_until(c, id);
        let s = current(slab, c);
        assert!(!s.is_null(), "the refill made a span current");
        // SAFETY: a span record the slab owns.
        let listed = unsafe { listed_objects(s) };
        assert!(listed > 0, "the current span has objects on its list");
        // SAFETY: `p` is ours, out of every list: tagged free and put on the class's stack, as a
        // free the owned push could not take leaves an object (the slow path grows the stack
        // the drain left without capacity).
        unsafe {
            free_tag::clear(p);
            assert!(free_tag::mark_free_with(p, free_tag::key()));
            super::super::free_slow(c, p);
        }
        assert_eq!(slab.count(c), 1, "the object is on the stack");
        let q = crate::malloc(size_of(c));
        assert_eq!(q, p, "the stack's object comes first");
        // SAFETY: as above.
        assert_eq!(unsafe { listed_objects(s) }, listed, "the list untouched");
        // The stack empty again: the list's head (the stack-first pop's one section).
        // SAFETY: a span record the slab owns; its words are readable.
        let head = unsafe { (*words_of(s)).local.load(Ordering::Relaxed) & arch::OWNED_HEAD_MASK }
            as usize;
        let r = crate::malloc(size_of(c));
        assert_eq!(r as usize, head, "the list's head");
        // SAFETY: as above.
        assert_eq!(unsafe { listed_objects(s) }, listed - 1, "then the list");
        assert_eq!(current(slab, c), s, "the same span");
        // SAFETY: handed out by `malloc`, each freed once.
        unsafe {
            crate::free(r);
            crate::free(q);
        }
        drain(id);
    }

    /// Pops every object on class `c`'s current list into `objs`.
    fn pop_all(c: usize, objs: &mut Vec<*mut u8>) {
        objs.extend(core::iter::from_fn(|| {
            Some(pop(c)).filter(|p| !p.is_null())
        }));
    }

    /// A collect whose chain the push section refuses (the span is another slab's, as when the
    /// thread moves to another CPU between the carve and the push) hands out the run's first
    /// object and gives the rest to the central lists (`give_carved_back`): each once, each
    /// tagged free, none left on the span's list; with the first given back too, a drain of the
    /// span's slab and a flush of the transfer stacks return the span to the page heap.
    #[test]
    fn a_carve_whose_push_is_refused_goes_to_the_central_lists() {
        let (_serial, saved) = pinned_in_both_rseq_modes(
            "percpu::owned::tests::a_carve_whose_push_is_refused_goes_to_the_central_lists",
            64,
        );
        let Some(other) = other_slab(current_rseq_id()) else {
            crate::os::set_affinity(&saved);
            return;
        };
        super::super::slab::ensure_slab(other);
        let slab = Slab::of(other);
        let c = class_of(FRESH_SIZE);
        free_tag::init();
        let s = central::take_span_to_own(c, other as u32, true);
        assert!(!s.is_null(), "no memory");
        slab.cap_lock().lock();
        // SAFETY: a span just taken for slab `other` (marked `in_slab`, nothing carved, no
        // owner), which no section reaches until published; we hold that slab's capacity lock.
        // The collect's push runs on the thread's own slab, which does not own the span.
        let (p, carved, listed, start) = unsafe {
            publish(slab, c, other, s);
            let p = collect(s, c, free_tag::key());
            (p, (*s).carved() as usize, listed_objects(s), (*s).start)
        };
        slab.cap_lock().unlock();
        assert_eq!(p as usize, start, "the run's first object handed out");
        assert_eq!(listed, 0, "nothing on the other slab's list");
        assert!(carved > 1, "{carved} objects carved");
        for i in 1..carved {
            let o = (start + i * size_of(c)) as *mut u8;
            // SAFETY: an object of the span, carved: its second word is readable.
            assert!(unsafe { free_tag::is_free(o) }, "object {i} tagged free");
            assert_eq!(central::check::span_of_object(o, c).unwrap(), s);
        }
        // Each of them once in the transfer stacks or the span's bitmap.
        central::CENTRAL[c].check_invariants(c).unwrap();

        // SAFETY: the object handed out above, unused; tagged free before it goes back.
        unsafe {
            free_tag::set(p);
            central::free_batch(c, &[p]);
        }
        drain(other);
        central::flush_transfer();
        assert_disowned(slab, c, s);
        central::CENTRAL[c].check_invariants(c).unwrap();
        crate::os::set_affinity(&saved);
    }

    /// The first slow path on a span nothing was carved from collects one half page's worth of
    /// objects ([`FIRST_COLLECT_BYTES`]) and carves no further; the next one on that span
    /// collects about [`COLLECT_BYTES`] (session 47: a slab holds a span of each class its CPU
    /// allocates, and 16 KiB carved at once per span kept most of it resident). Carving without
    /// the class lock (`central::carve_owned`) collects whole half pages: every object that
    /// starts in them, at most a half page's objects past the count.
    #[test]
    fn a_new_spans_first_collect_is_one_half_page() {
        first_two_collects(
            "percpu::owned::tests::a_new_spans_first_collect_is_one_half_page",
            false,
        );
    }

    /// A span said resident (`Span::resident`: cut from pages the heap's dirty range covered,
    /// or turned over after being carved whole) gives each collect about
    /// [`RESIDENT_COLLECT_BYTES`] worth, the first one too: carving it most likely faults in
    /// no page, and each collect is a slow path (session 62).
    #[test]
    fn a_resident_spans_collects_are_the_larger_ones() {
        first_two_collects(
            "percpu::owned::tests::a_resident_spans_collects_are_the_larger_ones",
            true,
        );
    }

    /// The two tests above: a new span of class `FRESH_SIZE`'s, said `resident` or not, made
    /// current on the thread's slab; its first two collects carve what [`collect_count`] asks
    /// (rounded up to whole half pages), every object collected once.
    fn first_two_collects(test: &str, resident: bool) {
        let (_serial, saved) = pinned_in_both_rseq_modes(test, 64);
        let id = current_rseq_id();
        let slab = Slab::of(id);
        let c = class_of(FRESH_SIZE);
        let (first, later) = (
            collect_count(c, true, resident),
            collect_count(c, false, resident),
        );
        if resident {
            assert_eq!(first, later);
            assert!(first > collect_count(c, false, false), "{first} objects");
        } else {
            assert!(first < later, "{first} objects first, {later} later");
        }
        // The drain leaves the slab no span, kept or owned.
        drain(id);
        let s = own_new_span(slab, id, c, resident);
        let mut objs = std::vec![refill_until(c, id)];
        assert_eq!(
            current(slab, c),
            s,
            "the refill collected from the current span"
        );
        let half = |n: usize| n..n + central::half_objects(c);
        // SAFETY: a span record the slab owns; its list and `carved` change only on this
        // thread (pinned, serial, the class no other test's).
        let (got, carved) = unsafe { (listed_objects(s) + 1, (*s).carved() as usize) };
        assert_eq!(carved, got, "the collect carved what it took");
        if resident {
            assert!(
                half(first).contains(&got),
                "{got} objects collected for {first}"
            );
        } else {
            let half_page = (crate::size_class::PAGE / 2).div_ceil(size_of(c));
            assert!(half_page >= first);
            assert_eq!(got, half_page, "one half page's objects collected");
        }
        pop_all(c, &mut objs);
        let first_got = objs.len();

        // The span's second collect (nothing listed, nothing kept: carved further), the rest
        // of the span when that is less.
        objs.push(refill_until(c, id));
        assert_eq!(current(slab, c), s, "the same span");
        // SAFETY: as above.
        let (second, carved, capacity) = unsafe {
            (
                listed_objects(s) + 1,
                (*s).carved() as usize,
                (*s).capacity as usize,
            )
        };
        if capacity - first_got > later {
            assert!(
                half(later).contains(&second),
                "{second} objects collected for {later}"
            );
        } else {
            assert_eq!(
                second,
                capacity - first_got,
                "the rest of the span collected"
            );
        }
        assert_eq!(
            carved,
            first_got + second,
            "each collect carved what it took"
        );
        pop_all(c, &mut objs);
        assert_eq!(objs.len(), first_got + second);
        // SAFETY: as above.
        let (start, end) = unsafe { ((*s).start, (*s).end()) };
        // Both runs handed out forwards from the span's start: a carve threads its objects
        // onto the list in address order (`central::carve_owned`).
        for (i, &p) in objs.iter().enumerate() {
            assert_eq!(
                p as usize,
                start + i * size_of(c),
                "object {i} of the carved runs"
            );
        }
        for &p in &objs {
            assert!((start..end).contains(&(p as usize)));
            free_owned(p, s, c);
        }
        check::check_owned(id, slab).unwrap();
        drain(id);
        assert_disowned(slab, c, s);
        crate::os::set_affinity(&saved);
    }

    /// Makes a new span of class `c` (one no other test allocates, so the central lists list
    /// none of it) slab `id`'s current one, said `resident` (`Span::resident`) or not whatever
    /// the page heap said: the pages it was cut from depend on the tests run before.
    fn own_new_span(slab: Slab, id: usize, c: usize, resident: bool) -> *mut Span {
        let s = central::take_span_to_own(c, id as u32, true);
        assert!(!s.is_null(), "no memory");
        for _ in 0..1000 {
            slab.cap_lock().lock();
            // SAFETY: a span taken for the slab (marked `in_slab`, nothing carved), which no
            // section reaches until it is published; we hold the slab's capacity lock, on its
            // CPU (pinned).
            let made = unsafe {
                if (*Span::ext(s)).owned.owner.load(Ordering::Relaxed) == NO_OWNER {
                    assert_eq!((*s).carved(), 0, "a new span");
                    (*s).resident = resident;
                    publish(slab, c, id, s);
                }
                arch::owned_set_cur(c, words_of(s))
            };
            slab.cap_lock().unlock();
            if made {
                return s;
            }
            std::thread::yield_now();
        }
        panic!("the slab stayed stopped");
    }

    #[test]
    fn an_owned_span_is_taken_used_given_back_and_drained() {
        let (_serial, saved) = pinned_in_both_rseq_modes(
            "percpu::owned::tests::an_owned_span_is_taken_used_given_back_and_drained",
            64,
        );
        let id = current_rseq_id();
        let slab = Slab::of(id);
        let c = class_of(SIZE);
        drain(id);
        let taken = OWNED_TAKEN.load(Ordering::Relaxed);
        // Nothing kept: a wholly free span goes back (keeping is the next test's).
        let keep = KEEP_BYTES.swap(0, Ordering::Relaxed);

        // Taken: one object handed out, the rest of a batch on the span's list.
        let p0 = refill(c, id, true).object();
        assert!(!p0.is_null());
        assert_eq!(OWNED_TAKEN.load(Ordering::Relaxed), taken + 1);
        let s = current(slab, c);
        assert!(!s.is_null(), "the refill made the span current");
        // SAFETY: a span record the slab owns.
        let (start, end, resident) = unsafe { ((*s).start, (*s).end(), (*s).resident) };
        assert!((start..end).contains(&(p0 as usize)));
        // A batch, less the object returned (fewer if the span, taken from the central list
        // partly used by other tests' allocations, had fewer left).
        // SAFETY: as above.
        let listed = unsafe { listed_objects(s) };
        assert!(
            listed < collect_count(c, false, resident) + central::half_objects(c),
            "{listed} listed"
        );
        check::check_owned(id, slab).unwrap();

        // Popped: every listed object once, in the list's order (each one's first word, left
        // for the C path to clear, still names the next, encoded); then nothing.
        let mut objs = std::vec![p0];
        let mut next = None;
        loop {
            let p = pop(c);
            if let Some(n) = next {
                assert_eq!(p as usize, n, "popped in the order the links name");
            }
            if p.is_null() {
                break;
            }
            assert!((start..end).contains(&(p as usize)));
            // SAFETY: an object just handed to us.
            next = Some(unsafe { (p as *const usize).read() } ^ free_tag::key());
            objs.push(p);
        }
        assert_eq!(objs.len(), listed + 1, "every listed object popped once");
        let mut sorted: Vec<_> = objs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), objs.len(), "no object twice");
        check::check_owned(id, slab).unwrap();

        // Pushed back (tagged as a C free tags): the span, current, stays owned even wholly
        // free.
        for (k, &p) in objs.iter().enumerate() {
            free_owned(p, s, c);
            // SAFETY: a span record the slab owns.
            assert_eq!(unsafe { listed_objects(s) }, k + 1);
        }
        // SAFETY: as above.
        assert_eq!(
            unsafe { (*Span::ext(s)).owned.owner.load(Ordering::Relaxed) },
            arch::owner_of(id)
        );
        check::check_owned(id, slab).unwrap();

        // Not current any more: a push that leaves it wholly free gives it back.
        // SAFETY: the slab layout is set up; null names no span.
        assert!(unsafe { arch::owned_set_cur(c, core::ptr::null()) });
        assert!(pop(c).is_null(), "no current span, nothing popped");
        // The give-back only tries the capacity lock: another test's growth may hold it.
        for _ in 0..1000 {
            // SAFETY: a span record the slab owns.
            unsafe { give_back_free(s) };
            // SAFETY: as above.
            if unsafe { (*Span::ext(s)).owned.owner.load(Ordering::Relaxed) } == NO_OWNER {
                break;
            }
            std::thread::yield_now();
        }
        assert_disowned(slab, c, s);

        // Drained with objects out: the span goes back, the objects stay valid.
        let q = refill(c, id, true).object();
        assert!(!q.is_null());
        let s2 = current(slab, c);
        let live = [q, pop(c), pop(c)];
        for &p in &live {
            assert!(!p.is_null());
            // SAFETY: handed out as `malloc` hands objects out.
            unsafe { free_tag::clear(p) };
        }
        check::check_owned(id, slab).unwrap();
        drain(id);
        assert_disowned(slab, c, s2);
        assert_eq!(slab.header_owned_stop(), 0, "the drain restarted the slab");
        check::check_owned(id, slab).unwrap();
        for p in live {
            // SAFETY: live objects of ours, freed as a C program would.
            unsafe { crate::free(p) };
        }
        crate::central::CENTRAL[c].check_invariants(c).unwrap();
        KEEP_BYTES.store(keep, Ordering::Relaxed);
        crate::os::set_affinity(&saved);
    }

    /// `refill(c, id, true)`, tried until it gave an object: it fails while another test's
    /// growth holds the capacity lock, or a drain has the slab stopped.
    #[track_caller]
    fn refill_until(c: usize, id: usize) -> *mut u8 {
        for _ in 0..1000 {
            let p = refill(c, id, true).object();
            if !p.is_null() {
                return p;
            }
            std::thread::yield_now();
        }
        panic!("no refill of class {c} succeeded");
    }

    /// Leaves class `c` with no current span on the thread's slab (retried while a drain has
    /// the slab stopped).
    #[track_caller]
    fn no_current(slab: Slab, c: usize) {
        for _ in 0..1000 {
            // SAFETY: the slab layout is set up; null names no span.
            if unsafe { arch::owned_set_cur(c, core::ptr::null()) } {
                assert!(current(slab, c).is_null());
                return;
            }
            std::thread::yield_now();
        }
        panic!("the slab stayed stopped");
    }

    /// Frees `p` (an object of class `c` of span `s`, handed out as `malloc` hands objects out)
    /// as `free` frees it: tagged, then pushed onto its owned list.
    fn free_owned(p: *mut u8, s: *mut Span, c: usize) {
        let e = crate::pagemap::PAGEMAP.get(p as usize);
        assert_eq!(crate::pagemap::class_of(e), c, "an object of class {c}");
        // SAFETY: our object, out of every list.
        unsafe {
            free_tag::clear(p);
            let key = free_tag::key();
            assert!(free_tag::mark_free_with(p, key));
            let home = crate::pagemap::home_bits_unmasked(e);
            assert!(push(p, s, home, key), "the owner's push succeeds");
        }
    }

    /// Takes class `c`'s current span on slab `id` (making one current first), with every
    /// object of its list popped and pushed back (wholly free), and leaves it not current, so
    /// the next give-back keeps it or gives it back. Returns the span, a long one (every class
    /// the test uses has 64 KiB spans: `take_span_to_own` takes long ones, and no other test
    /// leaves a span of these classes on the central lists).
    fn a_wholly_free_span(slab: Slab, id: usize, c: usize) -> *mut Span {
        let p0 = refill_until(c, id);
        let s = current(slab, c);
        // SAFETY: a span record the slab owns.
        assert_eq!(
            unsafe { (*s).pages },
            crate::size_class::CLASS_PAGES[c] as usize,
            "a long span"
        );
        let mut objs = std::vec![p0];
        pop_all(c, &mut objs);
        for p in objs {
            free_owned(p, s, c);
        }
        no_current(slab, c);
        s
    }

    /// `give_back_free(s)`, tried until the capacity lock was free for it (another test's
    /// growth may hold it): until `done` holds.
    #[track_caller]
    fn give_back_until(s: *mut Span, done: impl Fn() -> bool) {
        for _ in 0..1000 {
            // SAFETY: a span record the slab owns.
            unsafe { give_back_free(s) };
            if done() {
                return;
            }
            std::thread::yield_now();
        }
        panic!("the give-back never took the capacity lock");
    }

    /// Whether span `s` is kept (the test's slab: nobody else changes its lists, pinned and
    /// serial).
    fn kept(s: *mut Span) -> bool {
        // SAFETY: a span record.
        unsafe { is_kept(s) }
    }

    /// Asserts that span `s` was turned over to class `c` on slab `id` and is current there:
    /// its record names the class, the slab owns it, and no page of it still names another
    /// class in the page map (each is uncarved, or carved for `c`).
    fn assert_turned_over(slab: Slab, id: usize, s: *mut Span, c: usize) {
        assert_eq!(current(slab, c), s, "class {c} took the kept span over");
        // SAFETY: span records are pool memory, always readable.
        let (class, owner, start, end) = unsafe {
            (
                (*s).class as usize,
                (*Span::ext(s)).owned.owner.load(Ordering::Relaxed),
                (*s).start,
                (*s).end(),
            )
        };
        assert_eq!((class, owner), (c, arch::owner_of(id)));
        for page in (start..end).step_by(crate::size_class::PAGE) {
            let named = crate::pagemap::class_of(crate::pagemap::PAGEMAP.get(page));
            assert!(
                named == 0 || named == c,
                "page {page:#x} names class {named}"
            );
        }
    }

    /// The kept-span tests' set-up, undone when dropped: the thread pinned in both rseq modes
    /// (`pinned_in_both_rseq_modes`, as `test`), every slab drained (no object of the test's
    /// classes waits in a stack, from another test's frees on another CPU, so the spans taken
    /// have every object out of them here), and keeping unbounded (`KEEP_BYTES`) until a test
    /// sets its own bound. Returns the set-up, the slab's id and the slab.
    fn kept_setup(test: &str) -> (KeptSetup, usize, Slab) {
        let (serial, saved) = pinned_in_both_rseq_modes(test, 64);
        let id = current_rseq_id();
        drain_where(|| false, |_, _| true);
        let keep = KEEP_BYTES.swap(usize::MAX, Ordering::Relaxed);
        let setup = KeptSetup {
            keep,
            saved,
            _serial: serial,
        };
        (setup, id, Slab::of(id))
    }

    /// See [`kept_setup`]; dropped, restores the bound and the thread's affinity, then lets
    /// the next test run.
    struct KeptSetup {
        keep: usize,
        saved: crate::os::CpuSet,
        _serial: std::sync::MutexGuard<'static, ()>,
    }

    impl Drop for KeptSetup {
        fn drop(&mut self) {
            KEEP_BYTES.store(self.keep, Ordering::Relaxed);
            crate::os::set_affinity(&self.saved);
        }
    }

    /// A span a free leaves wholly free (not current) is kept for reuse: its class takes it
    /// back as it was; other classes of the same span length take it over without the page
    /// heap, with a bitmap of the same size (zeroed) and of another size (swapped); a span
    /// kept past the bound sends the oldest back to the page heap; and a drain gives back
    /// every kept span.
    #[test]
    fn a_wholly_free_span_is_kept_reused_turned_over_evicted_and_drained() {
        let (_setup, id, slab) = kept_setup(
            "percpu::owned::tests::a_wholly_free_span_is_kept_reused_turned_over_evicted_and_drained",
        );
        // Classes no other unit test uses (the other tests here leave objects of `SIZE` in
        // per-CPU stacks, central's use 896 B and 1 KiB): 704 and 768 bytes, with 2-word
        // bitmaps, and 448 with 4 words.
        let (c, c2, c3) = (class_of(700), class_of(760), class_of(440));
        let words = |k| crate::span::bitmap_words(65536 / size_of(k));
        assert_eq!((words(c), words(c2), words(c3)), (2, 2, 4));

        // Kept: still owned, on the kept list, its bytes counted.
        let s = a_wholly_free_span(slab, id, c);
        // SAFETY: a span record the slab owns.
        let bytes = unsafe { (*s).bytes() };
        give_back_until(s, || kept(s));
        // SAFETY: as above.
        assert_eq!(
            unsafe { (*Span::ext(s)).owned.owner.load(Ordering::Relaxed) },
            arch::owner_of(id),
            "a kept span stays owned"
        );
        assert_eq!(slab.owned_kept().load(Ordering::Relaxed), s as usize);
        assert_eq!(slab.owned_kept_bytes().load(Ordering::Relaxed), bytes);
        check::check_owned(id, slab).unwrap();

        // Reused by its class: current again, off the kept list, no span taken.
        let taken = OWNED_TAKEN.load(Ordering::Relaxed);
        let p = refill_until(c, id);
        assert_eq!(current(slab, c), s, "the class took its kept span back");
        assert!(!kept(s));
        assert_eq!(slab.owned_kept_bytes().load(Ordering::Relaxed), 0);
        assert_eq!(OWNED_TAKEN.load(Ordering::Relaxed), taken);
        free_owned(p, s, c);
        check::check_owned(id, slab).unwrap();

        // Turned over twice: a class with no span takes the kept one, with nothing carved
        // (its bitmap zeroed in place), then a class with a smaller bitmap (swapped).
        let mut reclassed = RECLASSED.load(Ordering::Relaxed);
        let mut from = c;
        for to in [c2, c3] {
            no_current(slab, from);
            give_back_until(s, || kept(s));
            let q = refill_until(to, id);
            assert_turned_over(slab, id, s, to);
            reclassed += 1;
            assert_eq!(RECLASSED.load(Ordering::Relaxed), reclassed);
            assert_eq!(OWNED_TAKEN.load(Ordering::Relaxed), taken, "no span taken");
            // SAFETY: span records are pool memory, always readable.
            let (start, end) = unsafe { ((*s).start, (*s).end()) };
            assert!(
                (start..end).contains(&(q as usize)),
                "an object of the span"
            );
            assert_eq!(slab.owned_kept_bytes().load(Ordering::Relaxed), 0);
            check::check_owned(id, slab).unwrap();
            free_owned(q, s, to);
            from = to;
        }

        // Evicted: with room for one span, keeping a second sends the oldest back.
        let a = a_wholly_free_span(slab, id, c);
        give_back_until(a, || kept(a));
        no_current(slab, c3);
        // SAFETY: span records are pool memory, always readable.
        KEEP_BYTES.store(unsafe { (*a).bytes().max((*s).bytes()) }, Ordering::Relaxed);
        give_back_until(s, || kept(s));
        // SAFETY: as above.
        assert_eq!(
            unsafe { (*Span::ext(a)).owned.owner.load(Ordering::Relaxed) },
            NO_OWNER,
            "the oldest kept span went back"
        );
        assert_eq!(slab.owned_kept().load(Ordering::Relaxed), s as usize);
        check::check_owned(id, slab).unwrap();

        // Drained: nothing kept, nothing owned.
        drain(id);
        assert_disowned(slab, c3, s);
        assert_eq!(slab.owned_kept().load(Ordering::Relaxed), 0);
        assert_eq!(slab.owned_kept_bytes().load(Ordering::Relaxed), 0);
        check::check_owned(id, slab).unwrap();
        for k in [c, c2, c3] {
            crate::central::CENTRAL[k].check_invariants(k).unwrap();
        }
    }

    /// The idle hand ([`route_idle`]): a small class's stack it sees unchanged at
    /// [`IDLE_LOOKS`] looks in a row after a first one goes back to its spans and the class is
    /// routed on the calling thread (counted once); a stack that changes between looks stays,
    /// its class not routed; a routed class's idle stack goes back too, counted no more; and a
    /// thread that routes nothing (owned spans off) leaves stacks and routes alone.
    #[test]
    fn an_idle_small_stack_goes_to_its_spans_and_its_class_is_routed() {
        let (_setup, id, slab) = kept_setup(
            "percpu::owned::tests::an_idle_small_stack_goes_to_its_spans_and_its_class_is_routed",
        );
        // Small classes no other unit test uses: 192 and 224 bytes.
        let (idle, busy) = (class_of(192), class_of(224));
        assert!(idle < FIXED_MIN && busy < FIXED_MIN && idle >= MIN_CLASS);
        let _routes = Routes::set(FIXED_ROUTES);
        let empty = |k: usize| {
            flush_stack(k, id);
            assert_eq!(slab.count(k), 0);
        };
        let stack = |k: usize, n: usize| {
            let (mut buf, before) = (std::vec![null_mut(); n], slab.count(k));
            assert_eq!(central::alloc_batch(k, &mut buf), n);
            while slab.room(k) < n && super::super::grow_or_relayout(slab, k, false) {}
            for &p in &buf {
                assert!(super::super::push(k, p), "room on the stack");
            }
            assert_eq!(slab.count(k), before + n);
        };
        let look = |k: usize| {
            idle_looks(slab)
                .hand
                .store((k - MIN_CLASS) as u32, Ordering::Relaxed);
            slab.cap_lock().lock();
            // SAFETY: we hold the capacity lock.
            unsafe { route_idle(slab, id, FIXED_MIN) };
            slab.cap_lock().unlock();
        };
        for k in [idle, busy] {
            empty(k);
            look(k); // forget what an earlier look saw
        }
        let routed = ROUTED.load(Ordering::Relaxed);

        // Idle: unchanged at the first look and `IDLE_LOOKS - 1` more, then gone and routed.
        stack(idle, 8);
        for _ in 0..IDLE_LOOKS {
            look(idle);
            assert_eq!(slab.count(idle), 8, "not idle yet");
            assert!(!routes(idle));
        }
        look(idle);
        assert_eq!(slab.count(idle), 0, "the idle stack went to its spans");
        assert!(routes(idle), "the class is routed");
        assert_eq!(ROUTED.load(Ordering::Relaxed), routed + 1);

        // Busy: a different top object at every look.
        stack(busy, 8);
        for _ in 0..3 * IDLE_LOOKS {
            look(busy);
            let p = super::super::pop(busy);
            assert!(!p.is_null());
            stack(busy, 1);
            assert_ne!(slab.slot(busy, 7).load(Ordering::Relaxed), p as usize);
            // SAFETY: a free object of class `busy`, off the stack.
            unsafe { central::free_to_spans(busy, &[p]) };
            assert_eq!(slab.count(busy), 8, "the stack stays");
        }
        assert!(!routes(busy), "a class in use is not routed");

        // A routed class's idle stack (what its pushes declined) goes back, counted once.
        stack(idle, 4);
        for _ in 0..=IDLE_LOOKS {
            look(idle);
        }
        assert_eq!(slab.count(idle), 0);
        assert_eq!(ROUTED.load(Ordering::Relaxed), routed + 1, "counted once");

        // No routes (owned spans off): nothing moves, nothing is routed.
        Routes::write(0);
        for _ in 0..=IDLE_LOOKS {
            look(busy);
        }
        assert_eq!(slab.count(busy), 8);
        assert_eq!(arch::owned_routes(), 0);
        assert_eq!(ROUTED.load(Ordering::Relaxed), routed + 1);

        empty(busy);
    }

    /// A routed small class whose owned pushes decline other slabs' objects for
    /// [`BUSY_WINDOWS`] windows of [`BUSY_DECLINES`] frees with no calm look of the idle hand
    /// between them is unrouted on the calling thread (counted once). A look is calm with fewer
    /// than [`CALM_DECLINES`] declines since the last one and no window's end: windows each
    /// followed by a calm look unroute nothing; a look right after a window, or one after
    /// [`CALM_DECLINES`] declines, forgives nothing. The fixed classes are not counted.
    #[test]
    fn a_routed_class_whose_pushes_keep_declining_is_unrouted() {
        let (_setup, id, slab) = kept_setup(
            "percpu::owned::tests::a_routed_class_whose_pushes_keep_declining_is_unrouted",
        );
        let k = class_of(160);
        assert!(routed_once_idle(k) && !routed_once_idle(FIXED_MIN));
        let i = k - MIN_CLASS;
        let _routes = Routes::set(FIXED_ROUTES | 1 << k);
        let look = || {
            idle_looks(slab).hand.store(i as u32, Ordering::Relaxed);
            slab.cap_lock().lock();
            // SAFETY: we hold the capacity lock.
            unsafe { route_idle(slab, id, FIXED_MIN) };
            slab.cap_lock().unlock();
        };
        let declines = |n: u8| (0..n).for_each(|_| count_declined(slab, k));
        let window = || declines(BUSY_DECLINES);
        look();
        look(); // two calm looks: earlier declines and windows forgotten
        let unrouted = UNROUTED.load(Ordering::Relaxed);

        // Each busy window followed by a look (which sees the window's end) and a calm one.
        for _ in 0..2 * BUSY_WINDOWS {
            window();
            look();
            declines(CALM_DECLINES - 1);
            look();
            assert!(routes(k), "a calm look forgives the windows before");
        }
        // The fixed classes are not counted, however many of their frees decline.
        (0..3 * BUSY_DECLINES as usize).for_each(|_| super::super::note_owned_declined(FIXED_MIN));
        assert_eq!(arch::owned_routes(), FIXED_ROUTES | 1 << k);

        // Busy windows with only looks right after their ends, or after `CALM_DECLINES`
        // declines, between them.
        for _ in 1..BUSY_WINDOWS {
            window();
            look();
            declines(CALM_DECLINES);
            look();
            assert!(routes(k), "not yet");
        }
        window();
        assert!(!routes(k), "busy windows in a row unroute the class");
        assert_eq!(UNROUTED.load(Ordering::Relaxed), unrouted + 1);
        assert_eq!(arch::owned_routes(), FIXED_ROUTES, "only that class");

        // Declines of a class the thread no longer routes unroute nothing more.
        (0..BUSY_WINDOWS).for_each(|_| window());
        assert_eq!(
            UNROUTED.load(Ordering::Relaxed),
            unrouted + 1,
            "counted once"
        );
        look();
        look();
    }

    /// A span turned over (`central::reclass_owned`) is resident when it was carved whole,
    /// whatever the page heap found (every page held an object's tag), and its first collect
    /// in the new class is then the larger one; one carved in part stays as the heap said.
    #[test]
    fn a_span_carved_whole_is_resident_once_turned_over() {
        let (_setup, id, slab) =
            kept_setup("percpu::owned::tests::a_span_carved_whole_is_resident_once_turned_over");
        // The kept-span test's classes (64 KiB spans, 2-word bitmaps).
        let (c, c2) = (class_of(700), class_of(760));
        let s = own_new_span(slab, id, c, false);
        // SAFETY (every block below): a span record the slab owns; its lists, `carved` and
        // `resident` change only on this thread (pinned, serial, classes no other test's).
        let (capacity, start, end) = unsafe { ((*s).capacity as usize, (*s).start, (*s).end()) };
        let take = |k: usize, objs: &mut Vec<*mut u8>| {
            objs.push(refill_until(k, id));
            assert_eq!(current(slab, k), s, "collected from the span");
            pop_all(k, objs);
        };
        let turn_over = |from: usize, to: usize, objs: &mut Vec<*mut u8>| {
            for &p in objs.iter() {
                assert!((start..end).contains(&(p as usize)));
                free_owned(p, s, from);
            }
            objs.clear();
            no_current(slab, from);
            give_back_until(s, || kept(s));
            let q = refill_until(to, id);
            assert_turned_over(slab, id, s, to);
            // SAFETY: as above.
            let got = unsafe { listed_objects(s) } + 1;
            objs.push(q);
            pop_all(to, objs);
            got
        };

        // Carved in part: not resident after the turnover, a half page first.
        let mut objs = Vec::new();
        take(c, &mut objs);
        // SAFETY: as above.
        assert!(unsafe { (*s).carved() as usize } < capacity);
        let got = turn_over(c, c2, &mut objs);
        // SAFETY: as above.
        assert!(!unsafe { (*s).resident }, "carved in part");
        let half_page = (crate::size_class::PAGE / 2).div_ceil(size_of(c2));
        assert_eq!(got, half_page, "one half page's objects collected");

        // Carved whole: resident after the turnover, the larger collect first.
        // SAFETY: as above.
        while unsafe { (*s).carved() as usize } < unsafe { (*s).capacity as usize } {
            take(c2, &mut objs);
        }
        let got = turn_over(c2, c, &mut objs);
        // SAFETY: as above.
        assert!(unsafe { (*s).resident }, "carved whole");
        let want = collect_count(c, true, true);
        assert!(
            (want..want + central::half_objects(c)).contains(&got),
            "{got} objects collected for {want}"
        );
        for &p in &objs {
            free_owned(p, s, c);
        }
        check::check_owned(id, slab).unwrap();
        drain(id);
        for k in [c, c2] {
            crate::central::CENTRAL[k].check_invariants(k).unwrap();
        }
    }

    /// Runs [`keep_idle_current`] for a refill of class `c` with the slab's hand on class
    /// `looked`, under the capacity lock.
    fn look_at(slab: Slab, looked: usize, c: usize) {
        slab.cap_lock().lock();
        slab.owned_hand()
            .store((looked - FIXED_MIN) as u32, Ordering::Relaxed);
        // SAFETY: we hold the slab's capacity lock, on the slab's CPU (pinned).
        unsafe { keep_idle_current(slab, c) };
        let hand = slab.owned_hand().load(Ordering::Relaxed);
        slab.cap_lock().unlock();
        assert_eq!(
            hand,
            ((looked + 1 - FIXED_MIN) % FIXED_CLASSES) as u32,
            "the hand moves on one class"
        );
    }

    /// A sweep of slab `id` in a new tick (as far as the slab knows) with the hint set, tried
    /// until it ran (it took the capacity lock, which another test's growth may hold, and
    /// stamped the tick) and `done` holds.
    #[track_caller]
    fn sweep_until(slab: Slab, id: usize, done: impl Fn() -> bool) {
        for _ in 0..1000 {
            slab.owned_swept().store(0, Ordering::Relaxed);
            central::set_owned_freed(id);
            sweep_freed(id);
            if slab.owned_swept().load(Ordering::Relaxed) != 0 && done() {
                return;
            }
            std::thread::yield_now();
        }
        panic!("the sweep never took the capacity lock");
    }

    /// A current span set aside while a pop had an object out of it (the race between the
    /// look and the section, played here in order) is only no longer current: not kept, since
    /// not wholly free. The push that empties it keeps it; when that push finds the capacity
    /// lock busy it sets the slab's owned-freed hint instead, and the next sweep keeps it
    /// (found by review: such a push did nothing, and the span stayed owned, wholly free,
    /// neither current nor kept).
    #[test]
    fn a_span_set_aside_with_an_object_out_is_kept_by_the_push_that_empties_it() {
        let (_setup, id, slab) = kept_setup(
            "percpu::owned::tests::a_span_set_aside_with_an_object_out_is_kept_by_the_push_that_empties_it",
        );
        let c = class_of(700);
        let p = refill_until(c, id);
        let s = current(slab, c);
        let mut objs = std::vec![p];
        pop_all(c, &mut objs);
        assert!(objs.len() >= 3, "a list to pop from");
        let (a, b) = (objs[0], objs[1]);
        for p in &objs[2..] {
            free_owned(*p, s, c);
        }

        // Set aside with two objects out: not current, not kept.
        slab.cap_lock().lock();
        // SAFETY: we hold the capacity lock; `s` is class `c`'s current span, the slab's.
        unsafe { set_aside(slab, c, s) };
        slab.cap_lock().unlock();
        assert!(current(slab, c).is_null(), "taken off the current spans");
        assert!(!kept(s), "not kept with objects out");
        check::check_owned(id, slab).unwrap();

        // One back: still not wholly free. The other back while the lock is held: the push
        // cannot keep it, and leaves the hint (checked under the lock: only a sweep, which
        // takes it, clears the hint).
        free_owned(a, s, c);
        assert!(!kept(s));
        slab.cap_lock().lock();
        crate::central::clear_owned_freed(id);
        free_owned(b, s, c);
        let (kept_then, hint) = (kept(s), crate::central::owned_freed(id));
        slab.cap_lock().unlock();
        assert!(!kept_then, "the push could not take the lock");
        assert!(hint, "the push left the hint");

        // A sweep keeps it.
        sweep_until(slab, id, || kept(s));
        assert!(current(slab, c).is_null());
        check::check_owned(id, slab).unwrap();
        drain(id);
        assert_disowned(slab, c, s);
    }

    /// A current span left wholly free is kept once the hand of the slab's refills has seen it
    /// so twice with the same list (docs/design.md, "Idle current spans"): its class has no
    /// current span then, the span stays owned with its list whole, on the kept list, and the
    /// class's next refill takes it back as it is (no span taken, none turned over). A span
    /// whose list changed between the looks, one with an object out, and the refilling
    /// class's own span stay current.
    #[test]
    fn an_idle_current_span_is_kept_and_taken_back_as_it_is() {
        let (_setup, id, slab) = kept_setup(
            "percpu::owned::tests::an_idle_current_span_is_kept_and_taken_back_as_it_is",
        );
        // Classes no other unit test uses (see the test above): 704 and 768 bytes.
        let (c, other) = (class_of(700), class_of(760));
        let p = refill_until(c, id);
        let s = current(slab, c);
        let mut objs = std::vec![p];
        pop_all(c, &mut objs);
        let n = objs.len();
        assert!(n >= 2, "a list to pop from");

        // One object out: not wholly free, not kept, however often the hand looks.
        for p in &objs[1..] {
            free_owned(*p, s, c);
        }
        for _ in 0..2 {
            look_at(slab, c, other);
        }
        assert_eq!(
            current(slab, c),
            s,
            "a span with an object out stays current"
        );
        free_owned(objs[0], s, c);

        // Wholly free, but used between the looks (two objects out and back, so the list's
        // head changed): still current.
        look_at(slab, c, other);
        let (a, b) = (pop(c), pop(c));
        assert!(!a.is_null() && !b.is_null());
        free_owned(a, s, c);
        free_owned(b, s, c);
        look_at(slab, c, other);
        assert_eq!(
            current(slab, c),
            s,
            "a span used between the looks stays current"
        );

        // The refilling class's own span is never taken off, however often it is looked at.
        for _ in 0..2 {
            look_at(slab, c, c);
        }
        assert_eq!(current(slab, c), s, "the refilling class keeps its span");

        // Seen wholly free twice with the same list: kept, owned, its list whole.
        // SAFETY (the reads below): a span record the slab owns.
        let listed = unsafe { listed_objects(s) };
        assert_eq!(listed, n, "every object on the list");
        look_at(slab, c, other);
        assert!(current(slab, c).is_null(), "taken off the current spans");
        assert!(kept(s), "on the kept list");
        assert_eq!(
            unsafe { (*Span::ext(s)).owned.owner.load(Ordering::Relaxed) },
            arch::owner_of(id),
            "still owned"
        );
        assert_eq!(unsafe { listed_objects(s) }, listed, "its list whole");
        check::check_owned(id, slab).unwrap();

        // Taken back by its class as it is.
        let (taken, reclassed) = (
            OWNED_TAKEN.load(Ordering::Relaxed),
            RECLASSED.load(Ordering::Relaxed),
        );
        let q = refill_until(c, id);
        assert_eq!(current(slab, c), s, "the class took its span back");
        assert!(!kept(s));
        assert_eq!(OWNED_TAKEN.load(Ordering::Relaxed), taken, "no span taken");
        assert_eq!(
            RECLASSED.load(Ordering::Relaxed),
            reclassed,
            "none turned over"
        );
        assert_eq!(
            unsafe { listed_objects(s) },
            listed - 1,
            "one popped, the rest listed"
        );
        free_owned(q, s, c);
        check::check_owned(id, slab).unwrap();
        drain(id);
        assert_disowned(slab, c, s);
    }

    /// The oldest kept span, when it is of the class the refill wants (its walks did not reach
    /// it, on a long class list), is taken as it is: its list whole, nothing carved again,
    /// nothing counted as turned over (found by review: it was turned over to its own class).
    #[test]
    fn the_oldest_kept_span_of_the_class_is_taken_as_it_is() {
        let (_setup, id, slab) =
            kept_setup("percpu::owned::tests::the_oldest_kept_span_of_the_class_is_taken_as_it_is");
        let c = class_of(700);
        let s = a_wholly_free_span(slab, id, c);
        give_back_until(s, || kept(s));
        // SAFETY: a span record the slab owns.
        let listed = unsafe { listed_objects(s) };
        let reclassed = RECLASSED.load(Ordering::Relaxed);
        slab.cap_lock().lock();
        // SAFETY: we hold the slab's capacity lock; `id` is the slab's.
        let got = unsafe { reclass_oldest(slab, c, id) };
        slab.cap_lock().unlock();
        assert_eq!(got, s, "the kept span of the class");
        // SAFETY: as above.
        unsafe {
            assert_eq!((*s).class as usize, c);
            assert_eq!(listed_objects(s), listed, "its list whole");
        }
        assert_eq!(
            RECLASSED.load(Ordering::Relaxed),
            reclassed,
            "nothing turned over"
        );
        check::check_owned(id, slab).unwrap();
        drain(id);
        assert_disowned(slab, c, s);
    }

    /// The sweep (`sweep_freed`) of the spans others' frees left wholly free: keeps such a span
    /// that is neither current nor kept while the kept spans fit, and clears the hint; leaves a
    /// current one (setting the hint again, so that a sweep looks again once it may no longer
    /// be current); runs once a tick; and retires and gives back a span past the kept bound.
    #[test]
    fn the_sweep_keeps_or_gives_back_wholly_free_spans_but_never_a_current_one() {
        let (_setup, id, slab) = kept_setup(
            "percpu::owned::tests::the_sweep_keeps_or_gives_back_wholly_free_spans_but_never_a_current_one",
        );
        // A class no other unit test uses (576 B).
        let c = class_of(520);
        let owner = |s: *mut Span| {
            // SAFETY: span records are pool memory, always readable.
            unsafe { (*Span::ext(s)).owned.owner.load(Ordering::Relaxed) }
        };

        // Neither current nor kept: kept, still owned, the hint cleared.
        let s = a_wholly_free_span(slab, id, c);
        sweep_until(slab, id, || kept(s));
        assert_eq!(owner(s), arch::owner_of(id));
        assert!(!central::owned_freed(id), "the hint cleared");
        check::check_owned(id, slab).unwrap();

        // Current and wholly free: left as it is, the hint set again.
        let p = refill_until(c, id);
        assert_eq!(current(slab, c), s, "the class took its kept span back");
        let mut objs = std::vec![p];
        pop_all(c, &mut objs);
        for q in objs {
            free_owned(q, s, c);
        }
        sweep_until(slab, id, || central::owned_freed(id));
        // The tick the sweep saw, plus one.
        let stamp = slab.owned_swept().load(Ordering::Relaxed);
        assert_eq!(current(slab, c), s, "a current span stays");
        assert!(!kept(s), "and is not kept");
        check::check_owned(id, slab).unwrap();

        // Past the kept bound: given back, but not twice in a tick.
        no_current(slab, c);
        KEEP_BYTES.store(0, Ordering::Relaxed);
        central::set_owned_freed(id);
        sweep_freed(id);
        if sweep_stamp() == stamp {
            assert_eq!(owner(s), arch::owner_of(id), "one sweep a tick");
        }
        let given_back = GIVEN_BACK.load(Ordering::Relaxed);
        sweep_until(slab, id, || owner(s) == NO_OWNER);
        assert_eq!(
            GIVEN_BACK.load(Ordering::Relaxed),
            given_back + 1,
            "the sweep gave it back"
        );
        assert_disowned(slab, c, s);
        assert!(!central::owned_freed(id), "the hint cleared");
        check::check_owned(id, slab).unwrap();
        crate::central::CENTRAL[c].check_invariants(c).unwrap();
    }
}
