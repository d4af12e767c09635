//! Central free lists: per size class, the objects not held by any per-CPU cache.
//!
//! Owns: for each class, a transfer stack of free object pointers (filled and drained in
//! batches by the per-CPU caches, so a batch moves with one `memcpy` under one lock) and the
//! list of that class's spans that still have objects to give. When the stack is full — or,
//! for classes above [`SHARED_ABOVE`], their shared budget is spent — freed objects go back
//! to their span; a span whose objects are all back returns to the page heap.
//!
//! Invariants (under the class's lock): a span is in `spans` iff it has a free object or an
//! uncarved one (`Span::listed` mirrors membership); `in_use` counts the span's objects that are
//! outside the span (with users, in caches or in this transfer stack).
//!
//! May call: `size_class`, `span`, `page_heap`, `pagemap`, `sync`.

use crate::free_tag;
use crate::page_heap::HEAP;
use crate::pagemap::entry;
use crate::pagemap::{span_of, PAGEMAP};
use crate::size_class::{
    size_of, CLASS_PAGES, CLASS_PAGES_SMALL_HEAP, NUM_CLASSES, PAGE, PAGE_SHIFT,
};
use crate::span::{Span, SpanList, SpanState};
use crate::sync::{AtomicBool, AtomicUsize, Mutex, Ordering};
use core::ptr::null_mut;

/// Up to this much mapped heap, small-object spans use their small-heap length.
const SMALL_HEAP_BYTES: usize = 32 << 20;

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
static FLUSH_PENDING: AtomicBool = AtomicBool::new(false);

/// Empties every transfer stack if the page heap asked for it (call with no class lock held).
fn flush_if_pending() {
    if FLUSH_PENDING.load(Ordering::Relaxed) && FLUSH_PENDING.swap(false, Ordering::Relaxed) {
        flush_transfer();
    }
}

/// Bytes in the transfer stacks of classes above [`SHARED_ABOVE`].
static SHARED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// How many objects the transfer stack of class `c` may hold: about 256 KiB worth, at least
/// one full batch, at most [`TRANSFER_SLOTS`].
fn transfer_limit(c: usize) -> usize {
    let batch = crate::size_class::CLASS_BATCH[c] as usize;
    ((256 << 10) / size_of(c)).clamp(batch, TRANSFER_SLOTS)
}

/// How many of `n` freed objects of class `c` the stack, now holding `count`, takes: its own
/// room, and for classes above [`SHARED_ABOVE`] what the shared budget has left (reserved here).
fn stack_room(c: usize, count: usize, n: usize) -> usize {
    let room = transfer_limit(c).saturating_sub(count).min(n);
    let size = size_of(c);
    if size <= SHARED_ABOVE || room == 0 {
        return room;
    }
    let mut take = 0;
    let _ = SHARED_BYTES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
        take = room.min(SHARED_BUDGET.saturating_sub(used) / size);
        (take > 0).then_some(used + take * size)
    });
    take
}

/// Accounts for `n` objects of class `c` leaving its stack.
fn stack_left(c: usize, n: usize) {
    let size = size_of(c);
    if size > SHARED_ABOVE && n > 0 {
        SHARED_BYTES.fetch_sub(n * size, Ordering::Relaxed);
    }
}

struct Inner {
    stack: [*mut u8; TRANSFER_SLOTS],
    count: usize,
    spans: SpanList,
}

/// One class's central list.
pub struct Central {
    inner: Mutex<Inner>,
    /// Objects of this class in the transfer stack (for statistics, read without the lock).
    pub cached: AtomicUsize,
    /// Objects of this class outside their spans (for statistics).
    pub out_of_spans: AtomicUsize,
    /// Transfer-stack depth seen by the previous idle check.
    last_seen: AtomicUsize,
}

// SAFETY: the raw pointers are objects and spans owned by the allocator, touched only under
// the mutex.
unsafe impl Send for Inner {}

/// The central lists, indexed by class (index 0 unused).
pub static CENTRAL: [Central; NUM_CLASSES] = [const {
    Central {
        inner: Mutex::new(Inner {
            stack: [null_mut(); TRANSFER_SLOTS],
            count: 0,
            spans: SpanList::new(),
        }),
        cached: AtomicUsize::new(0),
        out_of_spans: AtomicUsize::new(0),
        last_seen: AtomicUsize::new(0),
    }
}; NUM_CLASSES];

/// Takes up to `out.len()` objects of class `c`; returns how many were written (0 only when
/// memory is exhausted).
pub fn alloc_batch(c: usize, out: &mut [*mut u8]) -> usize {
    let central = &CENTRAL[c];
    let mut g = central.inner.lock();
    let inner = &mut *g;
    let want = out.len();
    let from_stack = want.min(inner.count);
    out[..from_stack].copy_from_slice(&inner.stack[inner.count - from_stack..inner.count]);
    inner.count -= from_stack;
    stack_left(c, from_stack);
    let mut got = from_stack;
    let size = size_of(c);
    while got < want {
        let mut s = inner.spans.first();
        if s.is_null() {
            let mut heap = HEAP.lock();
            // Small spans while the heap is small (a program touching many classes pays about
            // a page for each), 64 KiB ones once it is large (bounded metadata per byte).
            let small_heap = heap.stats().mapped <= SMALL_HEAP_BYTES;
            let pages = if small_heap {
                CLASS_PAGES_SMALL_HEAP[c]
            } else {
                CLASS_PAGES[c]
            };
            s = heap.alloc_span(pages as usize, PAGE, c, SpanState::Small);
            drop(heap);
            if s.is_null() {
                break;
            }
            // SAFETY: a fresh span of class `c`, owned by this class from now on.
            unsafe {
                (*s).capacity = ((*s).bytes() / size) as u32;
                (*s).listed = true;
                inner.spans.push(s);
            }
        }
        // SAFETY: `s` is a listed span of this class; we hold the class lock that guards its
        // free list and counters.
        unsafe {
            let hi = (*s).start + (*s).capacity as usize * size;
            while got < want {
                if (*s).free.is_null() && !carve_page(s, c, size) {
                    break;
                }
                let o = (*s).free;
                (*s).free = free_tag::next_checked(o, (*s).start, hi, size);
                (*s).in_use += 1;
                out[got] = o;
                got += 1;
            }
            if (*s).free.is_null() && (*s).carved == (*s).capacity {
                inner.spans.remove(s);
                (*s).listed = false;
            }
        }
    }
    central.cached.store(inner.count, Ordering::Relaxed);
    central
        .out_of_spans
        .fetch_add(got - from_stack, Ordering::Relaxed);
    got
}

/// Carves the next page of span `s` (class `c`, objects of `size` bytes): every object that
/// starts in it goes onto the span's (empty) free list, tagged free, in address order, and the
/// page's page-map entry starts naming the class — until then `free` of an address in it takes
/// the checked path and aborts, so an object never handed out can never be freed. Returns
/// false when the whole span is carved.
///
/// Carving a page at a time writes two words in each of its objects; the page is about to be
/// used anyway, and pages of the span beyond it stay untouched.
///
/// # Safety
/// `s` is a live small span of class `c` with an empty free list; the caller holds the class
/// lock.
unsafe fn carve_page(s: *mut Span, c: usize, size: usize) -> bool {
    // SAFETY: the caller's contract: the span and its pages are this class's.
    unsafe {
        let (first, cap) = ((*s).carved as usize, (*s).capacity as usize);
        if first == cap {
            return false;
        }
        let page = (first * size) >> PAGE_SHIFT;
        let end = (((page + 1) << PAGE_SHIFT).div_ceil(size)).min(cap);
        let mut head = null_mut();
        for i in (first..end).rev() {
            let o = ((*s).start + i * size) as *mut u8;
            free_tag::link(o, head);
            head = o;
        }
        (*s).free = head;
        (*s).carved = end as u32;
        PAGEMAP.set(
            (*s).start + (page << PAGE_SHIFT),
            entry(s as usize, c, page),
        );
        true
    }
}

/// Returns objects of class `c` (each obtained from [`alloc_batch`]).
///
/// # Safety
/// Every pointer must be a live object of class `c` that nobody uses any more.
pub unsafe fn free_batch(c: usize, objs: &[*mut u8]) {
    let central = &CENTRAL[c];
    let mut g = central.inner.lock();
    let inner = &mut *g;
    let room = stack_room(c, inner.count, objs.len());
    inner.stack[inner.count..inner.count + room].copy_from_slice(&objs[..room]);
    inner.count += room;
    for &obj in &objs[room..] {
        // SAFETY: forwarded from the caller's contract.
        unsafe { give_back_to_span(inner, c, obj) };
    }
    central.cached.store(inner.count, Ordering::Relaxed);
    central
        .out_of_spans
        .fetch_sub(objs.len() - room, Ordering::Relaxed);
    drop(g);
    flush_if_pending();
}

/// Returns objects of class `c` straight to their spans, past the transfer stack: for memory
/// unlikely to be asked for again at this size soon (a block `realloc` moved out of its class).
///
/// # Safety
/// As for [`free_batch`].
pub unsafe fn free_to_spans(c: usize, objs: &[*mut u8]) {
    let central = &CENTRAL[c];
    let mut g = central.inner.lock();
    for &obj in objs {
        // SAFETY: forwarded from the caller's contract.
        unsafe { give_back_to_span(&mut g, c, obj) };
    }
    central
        .out_of_spans
        .fetch_sub(objs.len(), Ordering::Relaxed);
    drop(g);
    flush_if_pending();
}

/// Links `obj` back into its span; returns the span to the page heap once all its objects
/// are back, and lists it again if it had run dry.
///
/// # Safety
/// `obj` is a live object of class `c` that nobody uses, and `inner` is class `c`'s locked state.
unsafe fn give_back_to_span(inner: &mut Inner, c: usize, obj: *mut u8) {
    let s = span_of(PAGEMAP.get(obj as usize)) as *mut Span;
    // SAFETY: `obj` belongs to a live small span of class `c` (caller's contract), whose free
    // list and counters this class's lock guards.
    unsafe {
        debug_assert!(!s.is_null() && (*s).state == SpanState::Small && (*s).class as usize == c);
        free_tag::link(obj, (*s).free);
        (*s).free = obj;
        (*s).in_use -= 1;
        if (*s).in_use == 0 {
            if (*s).listed {
                inner.spans.remove(s);
                (*s).listed = false;
            }
            let mut heap = HEAP.lock();
            heap.free_span(s);
            if heap.take_shrunk() {
                FLUSH_PENDING.store(true, Ordering::Relaxed);
            }
        } else if !(*s).listed {
            (*s).listed = true;
            inner.spans.push(s);
        }
    }
}

/// Gives every object in the transfer stacks back to its span, so that spans whose objects are
/// all back return to the page heap (used by trim).
pub fn flush_transfer() {
    flush_where(|_, _| true);
}

/// Flushes the transfer stacks whose depth did not change since the previous call.
pub fn flush_idle() {
    flush_where(|central, count| central.last_seen.swap(count, Ordering::Relaxed) == count);
}

fn flush_where(pick: impl Fn(&Central, usize) -> bool) {
    for (c, central) in CENTRAL.iter().enumerate().skip(1) {
        let count = central.cached.load(Ordering::Relaxed);
        if count == 0 || !pick(central, count) {
            continue;
        }
        let mut g = central.inner.lock();
        let inner = &mut *g;
        let n = inner.count;
        for i in 0..n {
            let obj = inner.stack[i];
            // SAFETY: objects in the transfer stack are free objects of live spans of `c`.
            unsafe { give_back_to_span(inner, c, obj) };
        }
        inner.count = 0;
        stack_left(c, n);
        central.cached.store(0, Ordering::Relaxed);
        central.out_of_spans.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Takes every class lock (fork prepare). Pair with [`unlock_all`] or [`reset_all_in_child`].
pub fn lock_all() {
    for c in CENTRAL.iter() {
        core::mem::forget(c.inner.lock());
    }
}

/// Releases the locks taken by [`lock_all`] (fork parent).
///
/// # Safety
/// The caller took them with [`lock_all`].
pub unsafe fn unlock_all() {
    for c in CENTRAL.iter() {
        // SAFETY: the caller holds every class lock.
        unsafe { c.inner.force_unlock() };
    }
}

/// Resets the locks taken by [`lock_all`] in a fork child.
///
/// # Safety
/// Only in the child of `fork`, after the parent's prepare handler ran [`lock_all`].
pub unsafe fn reset_all_in_child() {
    for c in CENTRAL.iter() {
        // SAFETY: forwarded contract.
        unsafe { c.inner.reset_in_child() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::class_of;

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

    #[test]
    fn stacks_above_256_bytes_share_one_budget_and_small_ones_keep_their_own() {
        let small = class_of(64);
        let big = [512, 1024, 4096, 16384].map(class_of);
        // 96 KiB freed in each: the first two classes keep all theirs, the third the 64 KiB
        // left of the budget, the fourth none; the small class keeps its own stack full.
        for &c in big.iter() {
            take_and_free(c, 96 << 10);
        }
        take_and_free(small, 1 << 20);
        let held = big.map(|c| CENTRAL[c].cached.load(Ordering::Relaxed) * size_of(c));
        assert_eq!(held, [96 << 10, 96 << 10, 64 << 10, 0]);
        assert_eq!(
            held.iter().sum::<usize>(),
            SHARED_BYTES.load(Ordering::Relaxed)
        );
        assert_eq!(SHARED_BYTES.load(Ordering::Relaxed), SHARED_BUDGET);
        // A small class keeps its own stack, up to its limit, whatever the shared budget.
        assert_eq!(
            CENTRAL[small].cached.load(Ordering::Relaxed),
            transfer_limit(small)
        );
        flush_transfer();
        assert_eq!(SHARED_BYTES.load(Ordering::Relaxed), 0);
        assert_eq!(CENTRAL[small].cached.load(Ordering::Relaxed), 0);
    }
}
