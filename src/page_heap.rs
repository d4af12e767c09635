//! The page heap: runs of pages for spans, large objects, and direct mappings for huge ones.
//!
//! Owns: every page the allocator mapped for spans (in chunks of at least [`GROW_BYTES`] that
//! are never unmapped), the free spans among them — kept by length, coalesced with free
//! neighbours on release — the span-record pool, and huge objects mapped one per request.
//!
//! Invariants (all under [`HEAP`]'s lock): a free span is in exactly one list (`by_len` for up
//! to [`MAX_LISTED`] pages, `long` beyond); the first and last page of a free span map to it in
//! the page map; every page of a span in use maps to it with its class; two free spans are never
//! adjacent (they are merged as soon as the second is freed).
//!
//! May call: `os`, `size_class`, `pagemap`, `span`, `sync`.

use crate::os;
use crate::pagemap::{self, PAGEMAP};
use crate::size_class::{PAGE, PAGE_SHIFT};
use crate::span::{Span, SpanList, SpanPool, SpanState};
use crate::sync::Mutex;
use core::ptr::null_mut;

/// Free spans up to this many pages sit in exact-length lists.
pub const MAX_LISTED: usize = 256;
/// The page heap grows by at least this much address space at a time (2 MiB aligned, so
/// transparent huge pages can back it).
pub const GROW_BYTES: usize = 32 << 20;
/// Free spans a large request looks at, at most, for the lowest that fits.
const FIRST_FIT_SCAN: usize = 256;
/// Objects of at least this size are mapped directly and unmapped on free.
pub const HUGE_MIN: usize = 16 << 20;

const BITMAP_WORDS: usize = (MAX_LISTED + 1).div_ceil(64);

/// Byte counters of the page heap (all under its lock).
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapStats {
    /// Address space mapped for spans and huge objects.
    pub mapped: usize,
    /// Bytes in free spans (including released ones).
    pub free: usize,
    /// Bytes in free spans that may still be resident.
    pub dirty: usize,
    /// Bytes of free pages handed back to the OS so far (monotonic).
    pub released_total: usize,
    /// Bytes in large and huge objects handed to users.
    pub large_in_use: usize,
    /// Bytes in spans carved into small objects.
    pub small_spans: usize,
    /// Bytes mapped for span records.
    pub metadata: usize,
    /// The most `small_spans + large_in_use` has been (a bound on the most ever allocated).
    pub peak_active: usize,
}

impl HeapStats {
    /// Bytes in free spans whose pages were handed back to the OS.
    pub fn released(&self) -> usize {
        self.free - self.dirty
    }
}

/// The page heap's state; reach it through [`HEAP`].
pub struct PageHeap {
    by_len: [SpanList; MAX_LISTED + 1],
    nonempty: [u64; BITMAP_WORDS],
    long: SpanList,
    pool: SpanPool,
    /// Chunks mapped so far (the next chunk's sequence number).
    chunks: u32,
    stats: HeapStats,
}

// SAFETY: the raw pointers inside point at span records and pages owned by the heap; the heap
// is only ever used behind `HEAP`'s mutex.
unsafe impl Send for PageHeap {}

/// The process's page heap.
pub static HEAP: Mutex<PageHeap> = Mutex::new(PageHeap::new());

/// The page-map entry of a free or large span's pages (no class, no page index).
#[inline]
fn entry(s: *mut Span) -> usize {
    pagemap::entry(s as usize, 0, 0)
}

/// The span a page-map entry names.
#[inline]
fn span_at(addr: usize) -> *mut Span {
    pagemap::span_of(PAGEMAP.get(addr)) as *mut Span
}

impl PageHeap {
    /// An empty heap: no chunk mapped yet.
    const fn new() -> Self {
        PageHeap {
            by_len: [const { SpanList::new() }; MAX_LISTED + 1],
            nonempty: [0; BITMAP_WORDS],
            long: SpanList::new(),
            pool: SpanPool::new(),
            chunks: 0,
            stats: HeapStats {
                mapped: 0,
                free: 0,
                dirty: 0,
                released_total: 0,
                large_in_use: 0,
                small_spans: 0,
                metadata: 0,
                peak_active: 0,
            },
        }
    }

    /// Counters at this moment.
    pub fn stats(&self) -> HeapStats {
        HeapStats {
            metadata: self.pool.mapped,
            ..self.stats
        }
    }

    /// Raises `peak_active` to the bytes in use now; after every increase of them.
    fn note_peak(&mut self) {
        let active = self.stats.small_spans + self.stats.large_in_use;
        self.stats.peak_active = self.stats.peak_active.max(active);
    }

    fn list_insert(&mut self, s: *mut Span) {
        // SAFETY: `s` is a valid free span record in no list (caller's invariant).
        let (pages, bytes, dirty) = unsafe { ((*s).pages, (*s).bytes(), (*s).dirty()) };
        // SAFETY: as above.
        debug_assert!(unsafe { (*s).dirty_within() });
        self.stats.free += bytes;
        self.stats.dirty += dirty;
        // SAFETY: as above; the list takes ownership of the links.
        unsafe {
            if pages <= MAX_LISTED {
                self.by_len[pages].push(s);
                self.nonempty[pages / 64] |= 1 << (pages % 64);
            } else {
                self.long.push(s);
            }
        }
    }

    fn list_remove(&mut self, s: *mut Span) {
        // SAFETY: `s` is a free span in the list matching its length.
        let (pages, bytes, dirty) = unsafe { ((*s).pages, (*s).bytes(), (*s).dirty()) };
        self.stats.free -= bytes;
        self.stats.dirty -= dirty;
        // SAFETY: as above.
        unsafe {
            if pages <= MAX_LISTED {
                self.by_len[pages].remove(s);
                if self.by_len[pages].is_empty() {
                    self.nonempty[pages / 64] &= !(1 << (pages % 64));
                }
            } else {
                self.long.remove(s);
            }
        }
    }

    /// The smallest listed free span of at least `pages` pages, or null.
    fn find(&self, pages: usize) -> *mut Span {
        if pages <= MAX_LISTED {
            let mut w = pages / 64;
            let mut bits = self.nonempty[w] & (!0u64 << (pages % 64));
            loop {
                if bits != 0 {
                    let n = w * 64 + bits.trailing_zeros() as usize;
                    return self.by_len[n].first();
                }
                w += 1;
                if w == BITMAP_WORDS {
                    break;
                }
                bits = self.nonempty[w];
            }
        }
        let mut best: *mut Span = null_mut();
        let mut s = self.long.first();
        while !s.is_null() {
            // SAFETY: members of `long` are valid free spans.
            unsafe {
                if (*s).pages >= pages && (best.is_null() || (*s).pages < (*best).pages) {
                    best = s;
                }
                s = (*s).next;
            }
        }
        best
    }

    /// The free span of at least `pages` pages in the oldest chunk, lowest there; null if none.
    /// Looks at no more than [`FIRST_FIT_SCAN`] candidates, taking the best of those.
    ///
    /// Address-ordered first fit reuses the low, already touched pages first and leaves the
    /// untouched ones above them alone, where best fit spread large objects over whichever hole
    /// fitted tightest, wherever it lay. On the benchmark runner's `large-objects` (blocks of
    /// 64 KiB–8 MiB, 8 live, 39 MiB at most) peak RSS went from 66.0 MiB to 53.9 (jemalloc
    /// 63.5, same run), in no more time. The oldest chunk counts as lowest because the kernel
    /// places new mappings below old ones.
    fn find_lowest(&self, pages: usize) -> *mut Span {
        let listed = (pages..=MAX_LISTED)
            .filter(|&n| self.nonempty[n / 64] & (1 << (n % 64)) != 0)
            .map(|n| &self.by_len[n]);
        let mut best: *mut Span = null_mut();
        let mut budget = FIRST_FIT_SCAN;
        for list in listed.chain(core::iter::once(&self.long)) {
            let mut s = list.first();
            while !s.is_null() {
                if budget == 0 {
                    // Nothing fitted among so many: fall back to the tightest fit rather than
                    // map a new chunk.
                    return if best.is_null() {
                        self.find(pages)
                    } else {
                        best
                    };
                }
                budget -= 1;
                // SAFETY: members of the free lists are valid free spans.
                unsafe {
                    let lower =
                        best.is_null() || ((*s).chunk, (*s).start) < ((*best).chunk, (*best).start);
                    if (*s).pages >= pages && lower {
                        best = s;
                    }
                    s = (*s).next;
                }
            }
        }
        best
    }

    /// Maps a new chunk able to hold `pages` pages and lists it as a free span.
    fn grow(&mut self, pages: usize) -> bool {
        let Some(want) = pages.checked_mul(PAGE) else {
            return false;
        };
        let bytes = want.max(GROW_BYTES).next_multiple_of(os::HUGE_PAGE);
        // Unit tests run heaps of their own beside the process's: a guard on each side keeps
        // their chunks from ever being adjacent, so no heap merges another's free span.
        let guard = if cfg!(test) { os::HUGE_PAGE } else { 0 };
        let Ok(base) = os::map(bytes + 2 * guard, os::HUGE_PAGE) else {
            return false;
        };
        // SAFETY: `guard` bytes in, still inside the mapping just made.
        let base = unsafe { base.add(guard) };
        if !PAGEMAP.reserve(base as usize, bytes) {
            // SAFETY: nothing refers to the mapping yet.
            unsafe { os::unmap(base, bytes) };
            return false;
        }
        let s = self.pool.take();
        if s.is_null() {
            // SAFETY: as above.
            unsafe { os::unmap(base, bytes) };
            return false;
        }
        self.stats.mapped += bytes;
        match crate::config::get().huge_pages {
            crate::config::HugePages::Always => os::advise_huge(base, bytes, true),
            crate::config::HugePages::Never => os::advise_huge(base, bytes, false),
            crate::config::HugePages::Default => {}
        }
        // SAFETY: `s` is a fresh record we own.
        unsafe {
            (*s).start = base as usize;
            (*s).pages = bytes / PAGE;
            (*s).clear_dirty();
            (*s).chunk = self.chunks;
        }
        self.chunks = self.chunks.wrapping_add(1);
        self.insert_free(s);
        true
    }

    /// Marks `s` free, merges it with free neighbours and lists the result, which it returns.
    fn insert_free(&mut self, mut s: *mut Span) -> *mut Span {
        // SAFETY: `s` is a valid record owned by the heap, in no list; neighbours found through
        // the page map are validated (state Free and exact adjacency) before use.
        unsafe {
            (*s).state = SpanState::Free;
            (*s).class = 0;
            let left = span_at((*s).start - 1);
            if !left.is_null() && (*left).state == SpanState::Free && (*left).end() == (*s).start {
                self.list_remove(left);
                (*left).absorb(&*s);
                self.pool.give(s);
                s = left;
            }
            let right = span_at((*s).end());
            if !right.is_null() && (*right).state == SpanState::Free && (*right).start == (*s).end()
            {
                self.list_remove(right);
                (*s).absorb(&*right);
                self.pool.give(right);
            }
            PAGEMAP.set((*s).start, entry(s));
            PAGEMAP.set((*s).end() - PAGE, entry(s));
        }
        self.list_insert(s);
        s
    }

    /// Splits the first `pages` pages off free span `s` (already unlisted); the rest goes back
    /// to the free lists. Returns `s`, now exactly `pages` long, or null if no record was free.
    fn split(&mut self, s: *mut Span, pages: usize) -> *mut Span {
        // SAFETY: `s` is a valid unlisted free span of at least `pages` pages.
        unsafe {
            if (*s).pages > pages {
                let rest = self.pool.take();
                if rest.is_null() {
                    self.list_insert(s);
                    return null_mut();
                }
                (*rest).start = (*s).start + pages * PAGE;
                (*rest).pages = (*s).pages - pages;
                (*rest).dirty_lo = (*s).dirty_lo;
                (*rest).dirty_hi = (*s).dirty_hi;
                (*rest).clip_dirty((*rest).start, (*rest).end());
                (*rest).freed_at_ms = (*s).freed_at_ms;
                (*rest).chunk = (*s).chunk;
                (*rest).state = SpanState::Free;
                (*s).pages = pages;
                (*s).clip_dirty((*s).start, (*s).end());
                // The head may go back to the lists (an alignment gap): its last page must map
                // to it for a neighbour freed later to find it.
                PAGEMAP.set((*s).end() - PAGE, entry(s));
                PAGEMAP.set((*rest).start, entry(rest));
                PAGEMAP.set((*rest).end() - PAGE, entry(rest));
                self.list_insert(rest);
            }
        }
        s
    }

    /// A span of exactly `pages` pages whose start is a multiple of `align` bytes (≥ a page),
    /// marked `state` with every page mapped to it with `class`; null when memory ran out.
    pub fn alloc_span(
        &mut self,
        pages: usize,
        align: usize,
        class: usize,
        state: SpanState,
    ) -> *mut Span {
        debug_assert!(pages > 0 && align.is_power_of_two() && align >= PAGE);
        let Some(need) = pages.checked_add(align / PAGE - 1) else {
            return null_mut();
        };
        // Spans for size classes come and go with their class's demand: the tightest fit
        // (exact-length lists, newest first) keeps that fast. Large objects go lowest-first.
        let find = |heap: &Self| {
            if state == SpanState::Small {
                heap.find(need)
            } else {
                heap.find_lowest(need)
            }
        };
        let mut s = find(self);
        if s.is_null() {
            if !self.grow(need) {
                return null_mut();
            }
            s = find(self);
            debug_assert!(!s.is_null());
        }
        self.list_remove(s);
        // SAFETY: `s` is a valid free span of at least `need` pages, now unlisted.
        unsafe {
            let aligned = (*s).start.next_multiple_of(align);
            if aligned != (*s).start {
                let head_pages = (aligned - (*s).start) / PAGE;
                let head = s;
                s = self.split(head, head_pages);
                if s.is_null() {
                    return null_mut();
                }
                // `split` listed the tail; take it back and relist the head.
                let tail = span_at(aligned);
                debug_assert_eq!((*tail).start, aligned);
                self.list_remove(tail);
                self.list_insert(head);
                s = tail;
            }
            if self.split(s, pages).is_null() {
                // `split` relisted it whole; merge it with the alignment head again, if any.
                self.list_remove(s);
                self.insert_free(s);
                return null_mut();
            }
            (*s).state = state;
            // Pages outside a free run's dirty range read as zero (fresh or released).
            (*s).zeroed = (*s).dirty() == 0;
            (*s).class = class as u8;
            (*s).clear_dirty();
            (*s).in_use = 0;
            (*s).carved = 0;
            (*s).free = null_mut();
            (*s).listed = false;
            if class != 0 {
                PAGEMAP.set_small_span((*s).start, pages, s as usize, class);
            } else {
                PAGEMAP.set_range((*s).start, pages, entry(s));
            }
            if state == SpanState::Small {
                self.stats.small_spans += (*s).bytes();
            } else {
                self.stats.large_in_use += (*s).bytes();
            }
        }
        self.note_peak();
        s
    }

    /// Returns a span obtained from [`PageHeap::alloc_span`] to the free lists.
    ///
    /// # Safety
    /// `s` must be a live span from `alloc_span` that nothing uses any more.
    pub unsafe fn free_span(&mut self, s: *mut Span) {
        // SAFETY: the caller hands the span back; we own its pages again.
        unsafe {
            if (*s).state == SpanState::Small {
                self.stats.small_spans -= (*s).bytes();
            } else {
                self.stats.large_in_use -= (*s).bytes();
            }
            (*s).set_dirty();
            (*s).freed_at_ms = os::now_ms();
            // Interior pages must stop claiming a class so stale pointers take the checked path.
            PAGEMAP.set_range((*s).start, (*s).pages, entry(s));
        }
        let merged = self.insert_free(s);
        // Free pages kept resident for reuse may be bounded (`dirty_max`, unbounded by
        // default): a span freed past the bound is released at once, with what it merged
        // with, rather than after the decay period, so peak RSS stays within the live heap
        // plus the bound — at the price of page faults when the memory is used again.
        if self.stats.dirty as u64 > crate::config::get().dirty_max {
            self.release_span(merged);
        }
    }

    /// Hands the pages of listed free span `s` back to the OS, if they are not already.
    fn release_span(&mut self, s: *mut Span) -> usize {
        // SAFETY: `s` is a listed free span; its dirty range lies inside it (splits cut the
        // range, merges join adjacent ones), so the advice reaches only pages nobody uses.
        // Releasing them keeps the span free and listed.
        unsafe {
            let dirty = (*s).dirty();
            debug_assert!((*s).dirty_within());
            if dirty == 0 || !os::decommit((*s).dirty_lo as *mut u8, dirty) {
                return 0;
            }
            (*s).clear_dirty();
            self.stats.dirty -= dirty;
            self.stats.released_total += dirty;
            dirty
        }
    }

    /// Resizes live large span `s` to `pages` pages without moving it: shrinking gives the tail
    /// back; growing takes the pages of the free span right after it. False if it cannot.
    ///
    /// # Safety
    /// `s` must be a live `Large` span from [`PageHeap::alloc_span`].
    pub unsafe fn resize_in_place(&mut self, s: *mut Span, pages: usize) -> bool {
        // SAFETY: `s` is live and ours under the lock; neighbours are validated before use.
        unsafe {
            let have = (*s).pages;
            if pages == have {
                return true;
            }
            if pages < have {
                let tail = self.pool.take();
                if tail.is_null() {
                    return false;
                }
                (*tail).start = (*s).start + pages * PAGE;
                (*tail).pages = have - pages;
                (*tail).chunk = (*s).chunk;
                (*tail).state = SpanState::Large;
                (*s).pages = pages;
                self.stats.large_in_use -= (*tail).bytes();
                (*tail).set_dirty();
                (*tail).freed_at_ms = os::now_ms();
                PAGEMAP.set_range((*tail).start, (*tail).pages, entry(tail));
                self.insert_free(tail);
                return true;
            }
            let need = pages - have;
            let right = span_at((*s).end());
            if right.is_null()
                || (*right).state != SpanState::Free
                || (*right).start != (*s).end()
                || (*right).pages < need
            {
                return false;
            }
            self.list_remove(right);
            if self.split(right, need).is_null() {
                return false;
            }
            (*s).pages = pages;
            PAGEMAP.set_range((*right).start, need, entry(s));
            self.stats.large_in_use += need * PAGE;
            self.note_peak();
            self.pool.give(right);
            true
        }
    }

    /// Maps a huge object of `size` bytes aligned to `align`; null if the OS refused.
    pub fn alloc_huge(&mut self, size: usize, align: usize) -> *mut Span {
        let Some(bytes) = size.checked_next_multiple_of(PAGE) else {
            return null_mut();
        };
        let Ok(base) = os::map(bytes, align.max(PAGE)) else {
            return null_mut();
        };
        if !PAGEMAP.reserve(base as usize, PAGE) {
            // SAFETY: nothing refers to the mapping yet.
            unsafe { os::unmap(base, bytes) };
            return null_mut();
        }
        let s = self.pool.take();
        if s.is_null() {
            // SAFETY: as above.
            unsafe { os::unmap(base, bytes) };
            return null_mut();
        }
        // SAFETY: `s` is a fresh record.
        unsafe {
            (*s).start = base as usize;
            (*s).pages = bytes >> PAGE_SHIFT;
            (*s).state = SpanState::Huge;
            (*s).zeroed = true;
            (*s).usable = bytes;
        }
        PAGEMAP.set(base as usize, entry(s));
        self.stats.mapped += bytes;
        self.stats.large_in_use += bytes;
        self.note_peak();
        s
    }

    /// Unmaps a huge object.
    ///
    /// # Safety
    /// `s` must be a live span from [`PageHeap::alloc_huge`] that nothing uses any more.
    pub unsafe fn free_huge(&mut self, s: *mut Span) {
        // SAFETY: the caller hands the mapping back.
        unsafe {
            let bytes = (*s).bytes();
            PAGEMAP.set((*s).start, 0);
            os::unmap((*s).start as *mut u8, bytes);
            self.stats.mapped -= bytes;
            self.stats.large_in_use -= bytes;
            self.pool.give(s);
        }
    }

    /// Resizes huge span `s` to at least `size` bytes by moving its pages (no copy) into a
    /// fresh mapping aligned to `align`. False if the OS refused (the object is unchanged).
    ///
    /// # Safety
    /// `s` must be a live `Huge` span.
    pub unsafe fn remap_huge(&mut self, s: *mut Span, size: usize, align: usize) -> bool {
        let Some(bytes) = size.checked_next_multiple_of(PAGE) else {
            return false;
        };
        // SAFETY: `s` is live and ours under the lock.
        unsafe {
            let old = (*s).bytes();
            let Ok(dest) = os::map(bytes, align.max(PAGE)) else {
                return false;
            };
            if !PAGEMAP.reserve(dest as usize, PAGE)
                || !os::move_pages((*s).start as *mut u8, old, dest, bytes)
            {
                os::unmap(dest, bytes);
                return false;
            }
            PAGEMAP.set((*s).start, 0);
            (*s).start = dest as usize;
            (*s).pages = bytes / PAGE;
            (*s).usable = bytes;
            PAGEMAP.set(dest as usize, entry(s));
            self.stats.mapped = self.stats.mapped + bytes - old;
            self.stats.large_in_use = self.stats.large_in_use + bytes - old;
        }
        self.note_peak();
        true
    }

    /// Hands the pages of free spans back to the OS: those freed at or before `cutoff_ms`
    /// (`u64::MAX` for all). Returns the bytes released.
    pub fn release_free(&mut self, cutoff_ms: u64) -> usize {
        let mut released = 0;
        let mut visit = |heap: &mut PageHeap, s: *mut Span| {
            // SAFETY: `s` is a listed free span (its record is valid).
            if unsafe { (*s).freed_at_ms } <= cutoff_ms {
                released += heap.release_span(s);
            }
        };
        for n in 1..=MAX_LISTED {
            let mut s = self.by_len[n].first();
            while !s.is_null() {
                visit(self, s);
                // SAFETY: `s` is still a valid listed span.
                s = unsafe { (*s).next };
            }
        }
        let mut s = self.long.first();
        while !s.is_null() {
            visit(self, s);
            // SAFETY: as above.
            s = unsafe { (*s).next };
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_split_align_and_coalesce() {
        let mut heap = HEAP.lock();
        let a = heap.alloc_span(3, PAGE, 0, SpanState::Large);
        let b = heap.alloc_span(5, 64 * PAGE, 0, SpanState::Large);
        assert!(!a.is_null() && !b.is_null());
        // SAFETY: both are live spans we own.
        unsafe {
            assert_eq!((*a).pages, 3);
            assert_eq!((*b).start % (64 * PAGE), 0);
            assert_eq!(span_at((*b).start + 4 * PAGE + 17) as usize, b as usize);
            let free_before = heap.stats().free;
            heap.free_span(b);
            heap.free_span(a);
            assert_eq!(heap.stats().free, free_before + 8 * PAGE);
            // the freed runs merged with their free neighbours: a big request fits again
            let c = heap.alloc_span(MAX_LISTED + 10, PAGE, 0, SpanState::Large);
            assert!(!c.is_null());
            heap.free_span(c);
        }
    }

    #[test]
    fn large_requests_take_the_lowest_fit_and_class_spans_the_tightest() {
        // A heap of its own, so that no other test's spans sit in the way.
        let mut heap = PageHeap::new();
        let large = |heap: &mut PageHeap, pages| {
            let s = heap.alloc_span(pages, PAGE, 0, SpanState::Large);
            assert!(!s.is_null());
            s
        };
        // SAFETY: every span used below is live and owned by this test's heap.
        unsafe {
            // [guard][hole 60][guard][hole 45][guard], carved in order from one chunk.
            let spans = [4, 60, 4, 45, 4].map(|pages| large(&mut heap, pages));
            for w in spans.windows(2) {
                assert_eq!((*w[0]).end(), (*w[1]).start);
            }
            let (wide, narrow) = ((*spans[1]).start, (*spans[3]).start);
            heap.free_span(spans[1]);
            heap.free_span(spans[3]);
            // A large object takes the lowest hole that fits, though the other fits tighter...
            let s = large(&mut heap, 40);
            assert_eq!((*s).start, wide);
            heap.free_span(s);
            // ...while a size class's span takes the tightest.
            let s = heap.alloc_span(40, PAGE, 1, SpanState::Small);
            assert_eq!((*s).start, narrow);
            heap.free_span(s);
            // A request no hole fits comes from the chunk's untouched rest, above them all.
            let s = large(&mut heap, 61);
            assert!((*s).start >= (*spans[4]).end());
        }
    }

    #[test]
    fn dirty_bytes_follow_the_pages_used_through_splits_and_merges() {
        let mut heap = PageHeap::new();
        // SAFETY: every span used below is live and owned by this test's heap.
        unsafe {
            let spans = [0; 8].map(|_| heap.alloc_span(3, PAGE, 0, SpanState::Large));
            assert_eq!(heap.stats().dirty, 0, "fresh pages are not dirty");
            for s in spans {
                heap.free_span(s);
            }
            // Merged with each other and with the untouched rest of the chunk.
            assert_eq!(heap.stats().dirty, 24 * PAGE);
            // Splitting the merged span again and again must not count a page twice.
            for pages in (1..200).map(|i| 1 + i % 5) {
                let s = heap.alloc_span(pages, PAGE, 0, SpanState::Large);
                assert_eq!(heap.stats().dirty, 24 * PAGE - pages * PAGE);
                heap.free_span(s);
                assert_eq!(heap.stats().dirty, 24 * PAGE);
            }
            // The used pages go first (lowest fit); freeing the page above them after they were
            // released leaves that one page dirty in the merged span, not the whole span.
            let low = heap.alloc_span(24, PAGE, 0, SpanState::Large);
            let above = heap.alloc_span(1, PAGE, 0, SpanState::Large);
            let above_start = (*above).start;
            assert_eq!((*low).end(), above_start);
            heap.free_span(low);
            assert_eq!(heap.release_free(u64::MAX), 24 * PAGE);
            assert_eq!(heap.stats().dirty, 0);
            heap.free_span(above);
            assert_eq!(heap.stats().dirty, PAGE);
            // Pages out of any dirty range read as zero: a large object there needs no memset.
            let s = heap.alloc_span(24, PAGE, 0, SpanState::Large);
            assert!((*s).zeroed);
            let s2 = heap.alloc_span(1, PAGE, 0, SpanState::Large);
            assert_eq!((*s2).start, above_start);
            assert!(!(*s2).zeroed, "the page freed last is dirty");
        }
    }

    #[test]
    fn an_alignment_gap_merges_with_the_aligned_span_when_it_is_freed() {
        let mut heap = PageHeap::new();
        // SAFETY: every span used below is live and owned by this test's heap.
        unsafe {
            // Chunks are 2 MiB aligned: after one page, a 512 KiB-aligned span leaves a gap.
            let first = heap.alloc_span(1, PAGE, 0, SpanState::Large);
            let aligned = heap.alloc_span(5, 64 * PAGE, 0, SpanState::Large);
            assert_eq!((*aligned).start, (*first).start + 64 * PAGE);
            heap.free_span(aligned);
            // The gap, the freed span and the rest are one free run again: the lowest fit for
            // more than the gap starts right after `first`.
            let big = heap.alloc_span(100, PAGE, 0, SpanState::Large);
            assert_eq!((*big).start, (*first).end());
        }
    }

    #[test]
    fn large_requests_take_the_oldest_chunk_first() {
        let mut heap = PageHeap::new();
        let chunk_pages = GROW_BYTES / PAGE;
        // SAFETY: every span used below is live and owned by this test's heap.
        unsafe {
            // Fill the first chunk but for a hole, then the same in a second chunk.
            let mut holes = [null_mut(); 2];
            for hole in &mut holes {
                let before = heap.alloc_span(chunk_pages - 16 - 8, PAGE, 0, SpanState::Large);
                *hole = heap.alloc_span(16, PAGE, 0, SpanState::Large);
                let after = heap.alloc_span(8, PAGE, 0, SpanState::Large);
                assert_eq!((*before).end(), (**hole).start);
                assert_eq!((**hole).end(), (*after).start);
            }
            assert_eq!(heap.chunks, 2);
            let (old, new) = ((*holes[0]).start, (*holes[1]).start);
            heap.free_span(holes[1]);
            heap.free_span(holes[0]);
            // Whatever the kernel's address order, the older chunk's hole goes first.
            let s = heap.alloc_span(10, PAGE, 0, SpanState::Large);
            assert_eq!((*s).start, old);
            let s = heap.alloc_span(10, PAGE, 0, SpanState::Large);
            assert_eq!((*s).start, new);
        }
    }

    #[test]
    fn huge_objects_map_and_unmap() {
        let mut heap = HEAP.lock();
        let s = heap.alloc_huge(HUGE_MIN + 1, 1 << 22);
        assert!(!s.is_null());
        // SAFETY: `s` is a live huge span.
        unsafe {
            assert_eq!((*s).start % (1 << 22), 0);
            assert!((*s).usable > HUGE_MIN);
            let start = (*s).start;
            heap.free_huge(s);
            assert_eq!(PAGEMAP.get(start), 0);
        }
    }
}
