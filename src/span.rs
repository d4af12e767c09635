//! Spans: runs of pages with one purpose, their metadata records, and intrusive span lists.
//!
//! Owns: [`Span`] (the record describing a run of pages), [`SpanList`] (an intrusive doubly
//! linked list of spans), [`SpanPool`] (where records come from: never freed, only recycled,
//! so a stale page-map entry always points at readable memory) and [`BitmapPool`] (where
//! small spans' free bitmaps come from).
//!
//! May call: `os`, `size_class`.

use crate::arch::OwnedWords;
use crate::os;
use crate::size_class::{PAGE, PAGE_SHIFT};
use crate::sync::{AtomicU32, Ordering};
use core::mem::size_of;
use core::ptr::null_mut;

/// What a span is currently used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SpanState {
    /// In the page heap, available.
    Free = 0,
    /// Carved into objects of one size class.
    Small = 1,
    /// One large object from the page heap.
    Large = 2,
    /// One very large object mapped directly from the OS.
    Huge = 3,
    /// Record not describing any pages (in the pool's free list).
    Dead = 4,
}

/// Metadata of one run of pages.
///
/// Aligned to 128 bytes so that a page-map entry can carry a size class (< 128) in the low bits
/// of the span's address. What a per-CPU slab that owns the span needs lives beside the
/// record, in its [`SpanExt`] ([`Span::ext`]).
#[repr(C, align(128))]
pub struct Span {
    /// First byte of the run (page-aligned).
    pub start: usize,
    /// Length in allocator pages (8 KiB each); for `Huge`, the mapping length in pages.
    pub pages: usize,
    /// Size class for `Small` spans, else 0.
    pub class: u8,
    /// What the pages are used for.
    pub state: SpanState,
    /// Every byte read as zero when the span was handed out (fresh or released pages: the free
    /// run it came from had an empty dirty range). `Large`/`Huge`: until `calloc` clears it;
    /// `Small`: read once, when the central list takes the span (`populate_ahead`).
    pub zeroed: bool,
    /// `Small`: the span's pages were fresh or released (`zeroed`) when the class took it from
    /// a heap past 32 MiB, so carving faults them in ahead of itself, a window at a time
    /// (`central::carve_page`). Set by the central list whenever it takes a span.
    pub populate_ahead: bool,
    /// `Small`: the span's pages are most likely resident: the free run's dirty range (an upper
    /// bound on the pages that may be, see `dirty_lo`) covered the whole span when the page
    /// heap handed it out, or, for a span a slab turned over to another class
    /// (`central::reclass_owned`), it did then or the span was carved whole before. Carving
    /// it then most likely faults in no page, so its owner collects more objects at once
    /// (`percpu::owned::RESIDENT_COLLECT_BYTES`); a page the hull counts but the kernel took
    /// back may be faulted in before the class needs it. Written with `zeroed` (never both
    /// true).
    pub resident: bool,
    /// `Large`: `calloc` handed the span out zeroed and left its pages lazy (not populated), so
    /// its free counts the pages the program touched (`lib::measure_zeroed_use`). Cleared by
    /// that free.
    pub calloc_probe: bool,
    /// `Free`: every page that may be resident (or read as non-zero: handed out and not given
    /// back to the OS since) lies in `[dirty_lo, dirty_hi)`, inside the run; empty when equal.
    /// A freed span counts whole; a merge takes the hull of both ranges (with any clean pages
    /// between them); a split cuts the range with the run, so splitting never counts a page
    /// twice. An upper bound, then, but one that only merges of separated dirty runs loosen.
    pub dirty_lo: usize,
    /// See `dirty_lo`.
    pub dirty_hi: usize,
    /// `Small`: objects `[0, carved)` — every object starting in the pages carved so far — have
    /// been in the span's free bitmap at least once, or (carved by the slab owning the span,
    /// `central::carve_owned`) went straight to its owned list; the page-map entries of the
    /// other pages do not name the class yet (see `central::carve_page`). Raised by carving:
    /// under the class lock, or, for a span a slab owns, by that slab alone under its capacity
    /// lock (`central::carve_owned`); an atomic, because the class lock's holders read it
    /// meanwhile (a remote free's check, `central::give_back_all`). Read it with
    /// [`Span::carved`].
    pub carved: AtomicU32,
    /// `Small`: how many objects fit. Written when the span is made (`central::new_span`), before
    /// any slab owns it, and when its owning slab turns it over to another class
    /// (`central::reclass_owned`, under that slab's capacity lock), never under the class lock
    /// alone while a slab owns it: so the owner reads it without the class lock
    /// (`central::owned_has_objects`).
    pub capacity: u32,
    /// `Small`: no word of `bits` below this one has a bit set (where a refill starts looking).
    pub scan: u32,
    /// `Small`: the span's free bitmap, [`bitmap_words`]`(capacity)` words from the
    /// [`BitmapPool`]: bit `i` set when object `i` is in the span (free, not in any cache);
    /// only objects below `carved` are ever set, and the set ones number `carved - in_use`
    /// (except while the owner of a span a slab owns carves it without the class lock: `in_use`
    /// is raised first, so for that moment it may exceed `carved`, `central::carve_owned`).
    /// The objects themselves hold no link, so nothing written into a free object can make
    /// the span hand out a block twice or a wild pointer (but see `free_tag` for the lists of
    /// owned spans, `owned_spans=on`). Null for other states.
    pub bits: *mut u64,
    /// Links in whichever [`SpanList`] holds the span (central or page heap); null otherwise.
    pub prev: *mut Span,
    /// See `prev`.
    pub next: *mut Span,
    /// `Free`: when the span became free (for decay), in ms of the monotonic clock.
    pub freed_at_ms: u64,
    /// `Large`/`Huge`: the bytes the user may use.
    pub usable: usize,
    /// `Huge`: bytes of address space the mapping holds from `start`: its `pages` read-write,
    /// then inaccessible, uncharged room to grow into (`os::Commit::Reserve`).
    pub reserved: usize,
    /// `Small`: the span sits in its class's list of spans with free objects.
    pub listed: bool,
    /// `Free`: the sequence number of the heap chunk the run lies in (the lowest one, if it
    /// spans adjacent chunks); large requests take the lowest (chunk, address) that fits.
    pub chunk: u32,
    /// `Small`: the per-CPU slab whose refill took the span from the page heap (its home), or
    /// [`NO_HOME`]; a slab that takes a listed span to own becomes its home
    /// (`central::take_span_to_own`). A C `free` on another slab sends the object home
    /// (`percpu::remote`). Changed, with the home bits of the span's carved pages' page-map
    /// entries, under the class lock, or while the span is unreachable (a new span, a retired
    /// owned span turned over to another class); read without the lock by `free`'s foreign
    /// path, as a hint (either home is a correct answer), hence the atomic. Read it with
    /// [`Span::home`].
    pub home: AtomicU32,
    /// `Small`: objects taken out of the span (with a user, in a cache, or on its owned list),
    /// written under the class lock, except that the slab owning the span raises it without
    /// that lock when it carves (`central::carve_owned`, under its capacity lock; the class
    /// lock's holders then lower it with a read-modify-write); an atomic, because `free`
    /// compares it, without the lock, with its owned list's count after a push (a span whose
    /// objects are all on the list goes back, `percpu::owned`), and an owned span's refill walk
    /// reads it without the lock (`central::owned_has_objects`: for a span a slab owns only
    /// that slab raises it, under its capacity lock). Read it with [`Span::in_use`].
    pub in_use: AtomicU32,
    /// `Small`: a slab owns the span, or is taking or giving it up (set by
    /// `central::take_span_to_own` and cleared by `central::disown` and `central::disown_whole`,
    /// under the class lock; by a slab's refill, retire or drain, only under that slab's
    /// capacity lock as well): the central list neither lists it nor returns it to the page
    /// heap, whatever its counts.
    pub in_slab: bool,
}

/// What a per-CPU slab that owns a small span keeps of it (`owned_spans=on`; docs/design.md,
/// "Owned spans"), beside the span's record: at the record's address plus [`EXT_OFFSET`]
/// ([`Span::ext`]), in the second half of the record's pool chunk, whose pages the kernel backs
/// only where an owned span's words were written, so records stay 128 bytes and a program that
/// never owns a span pays nothing for this. All zero (never written) reads as owned by nobody
/// (`arch::NO_OWNER` is 0).
#[repr(C, align(128))]
pub struct SpanExt {
    /// The words the owning slab's critical sections read and commit (`arch::owned_pop`,
    /// `arch::owned_push`, `arch::owned_push_chain`); `owner` is `arch::NO_OWNER` for a span no slab owns, and
    /// `start`/`room` give the span's bytes while a slab owns it. Objects on the list count in
    /// the record's `in_use` (they are out of the bitmap).
    pub owned: OwnedWords,
    /// Links in the owning slab's list of its owned spans of the class (`percpu::owned`, under
    /// the slab's capacity lock); null otherwise.
    pub slab_prev: *mut Span,
    /// See `slab_prev`.
    pub slab_next: *mut Span,
    /// Links in the owning slab's list of kept spans (`percpu::owned`: wholly free owned spans
    /// it keeps for reuse, oldest first; under the slab's capacity lock); null while the span
    /// is not kept.
    pub kept_prev: *mut Span,
    /// See `kept_prev`.
    pub kept_next: *mut Span,
    /// While the span is its class's current span: `owned.local` as the owning slab's last
    /// look for idleness saw it wholly free, else 0 (`percpu::owned::keep_idle_current`, under
    /// the slab's capacity lock; reset when a refill makes the span current). A current
    /// span seen wholly free twice with the same `local` is taken for unused and kept (pops and
    /// pushes that undo each other in between go unseen).
    pub idle_seen: u64,
}

/// Where a record's [`SpanExt`] is: this many bytes past the record (the pool maps its
/// records' chunks twice as long, [`SpanPool`]).
pub const EXT_OFFSET: usize = POOL_CHUNK;

const _: () = assert!(
    size_of::<SpanExt>() == size_of::<Span>(),
    "a record's extension sits at the same place in the chunk's second half"
);

impl SpanExt {
    /// Objects on the owning slab's list of the span whose extension is at `e`: the top 16 bits
    /// of `owned.local` (a snapshot while a slab owns the span; its sections change it).
    ///
    /// # Safety
    /// `e` is a record's extension ([`Span::ext`]): pool memory, always readable. Only the
    /// atomic is read, in place, so the owner may write the other fields meanwhile.
    #[inline(always)]
    pub unsafe fn listed(e: *const SpanExt) -> u32 {
        // SAFETY: the caller's contract.
        (unsafe { (*e).owned.local.load(Ordering::Relaxed) } >> 48) as u32
    }

    /// `owned.owner` of the extension at `e`: the owning slab's index plus one, or
    /// `arch::NO_OWNER` (0).
    ///
    /// # Safety
    /// As [`SpanExt::listed`].
    #[inline(always)]
    pub unsafe fn owner(e: *const SpanExt) -> u32 {
        // SAFETY: the caller's contract.
        unsafe { (*e).owned.owner.load(Ordering::Relaxed) }
    }
}

/// [`Span::home`] of a span no slab's refill carved (fallback mode, bypassing threads).
pub const NO_HOME: u32 = u32::MAX;

impl Span {
    /// The [`SpanExt`] of the record at `s`, a record of the [`SpanPool`]: an address, computed
    /// without a load (the record's plus [`EXT_OFFSET`]).
    #[inline(always)]
    pub fn ext(s: *const Span) -> *mut SpanExt {
        (s as usize + EXT_OFFSET) as *mut SpanExt
    }

    /// `Small`: objects `[0, carved)` are carved ([`Span::carved`]'s field).
    #[inline(always)]
    pub fn carved(&self) -> u32 {
        self.carved.load(Ordering::Relaxed)
    }

    /// Sets `carved` (under the class lock, by the owning slab of a span a slab owns, or while
    /// the span is the caller's alone).
    #[inline(always)]
    pub fn set_carved(&self, n: u32) {
        self.carved.store(n, Ordering::Relaxed);
    }

    /// `Small`: objects out of the span ([`Span::in_use`]'s field; exact under the class lock,
    /// but for a span a slab owns only under its capacity lock too, `central::carve_owned`).
    #[inline(always)]
    pub fn in_use(&self) -> u32 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Sets `in_use` (under the class lock, or while the span is the caller's alone).
    #[inline(always)]
    pub fn set_in_use(&self, n: u32) {
        self.in_use.store(n, Ordering::Relaxed);
    }

    /// `Small`: the home slab, or [`NO_HOME`] ([`Span::home`]'s field; exact under the class
    /// lock, a hint without it).
    #[inline(always)]
    pub fn home(&self) -> u32 {
        self.home.load(Ordering::Relaxed)
    }

    /// Sets the home (under the class lock, or while the span is unreachable; the page-map
    /// entries' home bits are the caller's to match).
    #[inline(always)]
    pub fn set_home(&self, home: u32) {
        self.home.store(home, Ordering::Relaxed);
    }
    /// One past the last byte of the run.
    #[inline]
    pub fn end(&self) -> usize {
        self.start + (self.pages << PAGE_SHIFT)
    }

    /// Length in bytes.
    #[inline]
    pub fn bytes(&self) -> usize {
        self.pages * PAGE
    }

    /// Bytes of the dirty range.
    #[inline]
    pub fn dirty(&self) -> usize {
        self.dirty_hi - self.dirty_lo
    }

    /// Marks every page of the run as possibly resident.
    pub fn set_dirty(&mut self) {
        (self.dirty_lo, self.dirty_hi) = (self.start, self.end());
    }

    /// Marks no page as resident (fresh from the OS, or released).
    pub fn clear_dirty(&mut self) {
        (self.dirty_lo, self.dirty_hi) = (0, 0);
    }

    /// Takes in the dirty range of `other`, a run adjacent to this one (the caller merges the
    /// two runs).
    fn merge_dirty(&mut self, other: &Span) {
        if other.dirty() == 0 {
            return;
        }
        if self.dirty() == 0 {
            (self.dirty_lo, self.dirty_hi) = (other.dirty_lo, other.dirty_hi);
        } else {
            self.dirty_lo = self.dirty_lo.min(other.dirty_lo);
            self.dirty_hi = self.dirty_hi.max(other.dirty_hi);
        }
    }

    /// The dirty range is empty or lies inside the run (what releasing it relies on).
    pub fn dirty_within(&self) -> bool {
        self.dirty() == 0 || self.start <= self.dirty_lo && self.dirty_hi <= self.end()
    }

    /// Merges `other`, the free run that starts where this one ends, into this one: its pages,
    /// its dirty range, the later of the two free times and the older chunk.
    pub fn absorb(&mut self, other: &Span) {
        debug_assert_eq!(self.end(), other.start);
        self.pages += other.pages;
        self.merge_dirty(other);
        self.freed_at_ms = self.freed_at_ms.max(other.freed_at_ms);
        self.chunk = self.chunk.min(other.chunk);
    }

    /// Cuts the dirty range to `[lo, hi)`, this run's new bounds after a split.
    pub fn clip_dirty(&mut self, lo: usize, hi: usize) {
        let (l, h) = (self.dirty_lo.max(lo), self.dirty_hi.min(hi));
        if l < h {
            (self.dirty_lo, self.dirty_hi) = (l, h);
        } else {
            self.clear_dirty();
        }
    }
}

/// An intrusive doubly linked list of spans, threaded through `Span::prev`/`next`.
///
/// Invariant: every span in the list has `prev`/`next` set by this list and belongs to no other.
pub struct SpanList {
    head: *mut Span,
}

impl SpanList {
    /// An empty list.
    pub const fn new() -> Self {
        SpanList { head: null_mut() }
    }

    /// True when the list is empty.
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Number of spans in the list, by walking it (tests only: nothing keeps a count).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let (mut n, mut s) = (0, self.head);
        while !s.is_null() {
            n += 1;
            // SAFETY: members of the list are valid span records.
            s = unsafe { (*s).next };
        }
        n
    }

    /// The first span, or null.
    pub fn first(&self) -> *mut Span {
        self.head
    }

    /// Adds `s` at the front.
    ///
    /// # Safety
    /// `s` must be a valid span record in no list.
    pub unsafe fn push(&mut self, s: *mut Span) {
        // SAFETY: the caller guarantees `s` is valid and unlisted; `head`, if any, is a valid
        // member of this list.
        unsafe {
            (*s).prev = null_mut();
            (*s).next = self.head;
            if !self.head.is_null() {
                (*self.head).prev = s;
            }
        }
        self.head = s;
    }

    /// Unlinks `s`.
    ///
    /// # Safety
    /// `s` must be a member of this list.
    pub unsafe fn remove(&mut self, s: *mut Span) {
        // SAFETY: `s` and its neighbours are members of this list, hence valid records.
        unsafe {
            let (p, n) = ((*s).prev, (*s).next);
            if p.is_null() {
                debug_assert_eq!(self.head, s);
                self.head = n;
            } else {
                (*p).next = n;
            }
            if !n.is_null() {
                (*n).prev = p;
            }
            (*s).prev = null_mut();
            (*s).next = null_mut();
        }
    }
}

impl Default for SpanList {
    fn default() -> Self {
        Self::new()
    }
}

const POOL_CHUNK: usize = 1 << 20;

/// Metadata memory handed out front to back from 1 MiB OS chunks, never unmapped (what both
/// pools below carve their blocks from).
struct Chunks {
    bump: usize,
    end: usize,
    /// Bytes mapped so far.
    mapped: usize,
    /// Each chunk is mapped twice as long, the second half left for extensions (the span
    /// records' [`SpanExt`]s, [`EXT_OFFSET`] past them).
    with_ext: bool,
}

impl Chunks {
    const fn new(with_ext: bool) -> Self {
        Chunks {
            bump: 0,
            end: 0,
            mapped: 0,
            with_ext,
        }
    }

    /// The address of `bytes` fresh bytes (zero, 8-byte aligned, and a multiple of `bytes`
    /// when every request is the same power of two), mapping a new chunk if this one is
    /// used up; `None` if the OS refused memory. What is left of a used-up chunk is abandoned.
    fn take(&mut self, bytes: usize) -> Option<usize> {
        if self.bump + bytes > self.end {
            let length = if self.with_ext {
                2 * POOL_CHUNK
            } else {
                POOL_CHUNK
            };
            let chunk = os::map(length, os::OS_PAGE).ok()?;
            if self.with_ext {
                // 2 MiB long: a kernel with transparent huge pages always on may back it with
                // one huge page at the first record written, extensions and all; the half
                // meant to stay untouched would then be resident. (A kernel without huge pages
                // refuses the advice: errno stays as the program left it.)
                let _errno = os::ErrnoKeeper::new();
                os::advise_huge(chunk, length, false);
            }
            self.bump = chunk as usize;
            self.end = self.bump + POOL_CHUNK;
            self.mapped += length;
        }
        let p = self.bump;
        self.bump += bytes;
        Some(p)
    }
}

/// Source of span records: carved from 1 MiB OS chunks, recycled through a free list, never
/// unmapped. Used under the page heap's lock. Each chunk is mapped 2 MiB long: the second MiB
/// holds the records' [`SpanExt`]s, untouched (so not resident) unless a slab owns a span.
pub struct SpanPool {
    chunks: Chunks,
    recycled: *mut Span,
}

impl SpanPool {
    /// An empty pool.
    pub const fn new() -> Self {
        SpanPool {
            chunks: Chunks::new(true),
            recycled: null_mut(),
        }
    }

    /// Bytes mapped for records (for statistics).
    pub fn mapped(&self) -> usize {
        self.chunks.mapped
    }

    /// A fresh record (state `Dead`, no home, all other fields zero), or null if the OS refused
    /// memory.
    pub fn take(&mut self) -> *mut Span {
        let s = if !self.recycled.is_null() {
            let s = self.recycled;
            // SAFETY: recycled records are valid, dead, and linked through `next`.
            self.recycled = unsafe { (*s).next };
            s
        } else {
            match self.chunks.take(core::mem::size_of::<Span>()) {
                Some(p) => p as *mut Span,
                None => return null_mut(),
            }
        };
        // SAFETY: `s` is 128-byte aligned memory we own (chunks are page-aligned and records are
        // 128 bytes), and writing a whole record initialises it.
        unsafe {
            s.write(Span {
                start: 0,
                pages: 0,
                class: 0,
                state: SpanState::Dead,
                zeroed: false,
                populate_ahead: false,
                resident: false,
                calloc_probe: false,
                dirty_lo: 0,
                dirty_hi: 0,
                carved: AtomicU32::new(0),
                capacity: 0,
                scan: 0,
                bits: null_mut(),
                prev: null_mut(),
                next: null_mut(),
                freed_at_ms: 0,
                usable: 0,
                reserved: 0,
                listed: false,
                chunk: 0,
                home: AtomicU32::new(NO_HOME),
                in_use: AtomicU32::new(0),
                in_slab: false,
            })
        };
        s
    }

    /// Returns a record for reuse. Its memory stays mapped, so stale pointers remain readable.
    ///
    /// # Safety
    /// `s` came from [`SpanPool::take`], is in no list and nothing maps to it any more except
    /// possibly stale page-map entries (which readers validate).
    pub unsafe fn give(&mut self, s: *mut Span) {
        // SAFETY: the caller hands over a valid record.
        unsafe {
            (*s).state = SpanState::Dead;
            (*s).next = self.recycled;
        }
        self.recycled = s;
    }
}

impl Default for SpanPool {
    fn default() -> Self {
        Self::new()
    }
}

/// Words of a free bitmap for `capacity` objects: one bit each, rounded up to a power of two
/// words (the [`BitmapPool`]'s block sizes).
#[inline]
pub const fn bitmap_words(capacity: usize) -> usize {
    capacity.div_ceil(64).next_power_of_two()
}

/// Block sizes of the [`BitmapPool`]: 1, 2, 4, ... 64 words (8 to 512 bytes, a bit for each
/// of the 4,096 16-byte objects of a 64 KiB span at most).
const BITMAP_BINS: usize = 7;

/// The [`BitmapPool`] bin of blocks of `words` words, rounded up to a power of two; None above
/// the largest block.
fn bin_of(words: usize) -> Option<usize> {
    let bin = words.max(1).next_power_of_two().trailing_zeros() as usize;
    (bin < BITMAP_BINS).then_some(bin)
}

/// Source of small spans' free bitmaps ([`Span::bits`]): blocks of 1 to 64 words carved from
/// 1 MiB OS chunks, recycled through one free list per size, never unmapped. Owned by the page
/// heap and used under its lock; the central lists take a block when they take a span for a
/// class and give it back when they return the span (`PageHeap::alloc_span` and `free_span`
/// do neither).
///
/// Resident cost: one bit per object slot a span has (at most 1/128 of the span, for 16 B
/// objects), in blocks packed side by side.
pub struct BitmapPool {
    chunks: Chunks,
    recycled: [*mut u64; BITMAP_BINS],
}

impl BitmapPool {
    /// An empty pool.
    pub const fn new() -> Self {
        BitmapPool {
            chunks: Chunks::new(false),
            recycled: [null_mut(); BITMAP_BINS],
        }
    }

    /// Bytes mapped for bitmaps (for statistics).
    pub fn mapped(&self) -> usize {
        self.chunks.mapped
    }

    /// A zeroed block of at least `words` words (rounded up to a power of two), 8-byte
    /// aligned; null if the OS refused memory or `words` is above 64.
    pub fn take(&mut self, words: usize) -> *mut u64 {
        let Some(bin) = bin_of(words) else {
            return null_mut();
        };
        let words = 1 << bin;
        let p = self.recycled[bin];
        if !p.is_null() {
            // SAFETY: recycled blocks are ours, `words` words long, linked through word 0.
            unsafe {
                self.recycled[bin] = p.read() as *mut u64;
                p.write_bytes(0, words);
            }
            return p;
        }
        // Fresh chunk memory reads as zero.
        self.chunks
            .take(words * 8)
            .map_or(null_mut(), |p| p as *mut u64)
    }

    /// Returns a block for reuse.
    ///
    /// # Safety
    /// `p` came from [`BitmapPool::take`] with the same `words`, and nothing uses it any more.
    pub unsafe fn give(&mut self, p: *mut u64, words: usize) {
        let Some(bin) = bin_of(words) else {
            debug_assert!(false, "a bitmap of {words} words never came from the pool");
            return;
        };
        // SAFETY: the caller hands over the block; word 0 becomes the free-list link.
        unsafe { p.write(self.recycled[bin] as u64) };
        self.recycled[bin] = p;
    }
}

impl Default for BitmapPool {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_come_zeroed_and_are_recycled_by_size() {
        let mut pool = BitmapPool::new();
        let a = pool.take(4);
        let b = pool.take(1);
        assert!(!a.is_null() && !b.is_null());
        // SAFETY: blocks of 4 and 1 words just taken.
        unsafe {
            assert!((0..4).all(|i| a.add(i).read() == 0));
            a.write_bytes(0xff, 4);
            b.write(u64::MAX);
            pool.give(a, 4);
            pool.give(b, 1);
        }
        assert_eq!(pool.take(1), b, "a block comes back for its own size");
        let c = pool.take(4);
        assert_eq!(c, a);
        // SAFETY: as above.
        assert!(
            (0..4).all(|i| unsafe { c.add(i).read() } == 0),
            "recycled zeroed"
        );
        let words = bitmap_words(4096);
        assert_eq!(words, 64);
        assert!(!pool.take(words).is_null());
        assert!(pool.take(65).is_null(), "no block above 64 words");
        // A size between two bins takes the larger block.
        let three = pool.take(3);
        assert!(!three.is_null());
        // SAFETY: a block of at least 3 (4) words, just taken.
        unsafe { pool.give(three, 3) };
        assert_eq!(pool.take(4), three, "3 and 4 words share a bin");
    }

    #[test]
    fn span_records_fit_the_pagemap_tag() {
        assert_eq!(core::mem::align_of::<Span>(), 128);
        assert_eq!(core::mem::size_of::<Span>(), 128);
        assert_eq!(
            core::mem::size_of::<SpanExt>(),
            128,
            "one extension per record"
        );
    }

    #[test]
    fn pool_recycles_and_list_links() {
        let mut pool = SpanPool::new();
        let a = pool.take();
        let b = pool.take();
        assert!(!a.is_null() && !b.is_null() && a != b);
        assert_eq!(a as usize % 128, 0);
        let mut list = SpanList::new();
        // SAFETY: a and b are fresh records in no list.
        unsafe {
            list.push(a);
            list.push(b);
            assert_eq!(list.len(), 2);
            assert_eq!(list.first(), b);
            list.remove(b);
            assert_eq!(list.first(), a);
            list.remove(a);
            assert!(list.is_empty());
            pool.give(a);
        }
        assert_eq!(pool.take(), a);
    }
}
