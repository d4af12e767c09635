//! Owned spans (`owned_spans=on`, off by default; docs/design.md, "Owned spans"): each slab
//! owns spans of the classes its CPU allocates, and a C `malloc` pops an object from the
//! class's current owned span while a C `free` on the owner's CPU pushes it back onto its span's
//! list, one critical section each (`arch::owned_pop`, `arch::owned_push_chain`).
//!
//! Owns: whether owned spans are on, the slow path that gives a class a current span with
//! objects ([`refill`]), each slab's lists of the spans it owns (one circular list per class,
//! its head in the slab at `slab::OWNED_LISTS_AT`, linked through `SpanExt::slab_prev/next`,
//! changed under the slab's capacity lock only), a drain's return of every owned span of a
//! stopped slab ([`give_back_stopped`]), and the figures (objects on the lists).
//!
//! Invariants, for every ready slab `i` and class `c`, outside the capacity lock:
//! - a span whose `owned.owner` is `owner_of(i)` is in slab `i`'s list for its class, is marked
//!   `in_slab`, and has `owned.start/end` set to its bytes; every span in the list is such a
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
//! On only where the sections exist and a drain can stop them: x86_64, an rseq mode, and the
//! rseq membarrier (so every drain is `drain_fenced`). Rust's `GlobalAlloc` path does not use
//! owned spans (its frees carry no free tag, which the pop checks).
//!
//! May call: `arch`, `central`, `free_tag`, `os`, `size_class`, `span`, `sync`, and in this
//! folder `slab`.

use super::slab::Slab;
use crate::arch::{self, OwnedPop, OwnedWords, NO_OWNER};
use crate::central;
use crate::free_tag;
use crate::os;
use crate::size_class::{size_of, NUM_CLASSES};
use crate::span::{Span, SpanExt, EXT_OFFSET};
use crate::sync::{AtomicBool, AtomicUsize, Ordering};
use core::mem::offset_of;
use core::ptr::null_mut;

/// Owned spans are on (set once at process set-up, before the mode is published).
static ON: AtomicBool = AtomicBool::new(false);

/// Spans slabs took to own so far (statistics: `owned_spans_taken`).
pub static OWNED_TAKEN: AtomicUsize = AtomicUsize::new(0);

/// Owned spans given back whole by a free that found them wholly free (statistics:
/// `owned_spans_given_back`).
pub static GIVEN_BACK: AtomicUsize = AtomicUsize::new(0);

/// Whether C allocations and frees use owned spans.
#[inline(always)]
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The largest class owned spans serve: objects up to 1 KiB (the C table's classes, where
/// `mixed-bursts` lives). Larger classes' spans hold few objects each, and a slab owning spans
/// of many of them held a good deal of memory (docs/benchmarks.md, "Session 45").
pub const MAX_CLASS: usize = crate::size_class::class_of(1024);

/// Whether a C allocation or free of class `c` uses owned spans: on for the calling thread
/// (`arch::owned_flag`, set at its set-up when the process has them on), and `c` at most
/// [`MAX_CLASS`].
#[inline(always)]
pub fn routes(c: usize) -> bool {
    c <= MAX_CLASS && arch::owned_flag()
}

/// Whether an object whose page-map entry has home bits `bits` (`pagemap::home_bits_unmasked`)
/// is likely of a span the calling thread's slab owns: its home's low bits are this slab's (a
/// hint: the slab takes its fresh spans with itself as home). A C `free` asks it before the
/// owned push, so that a free of another slab's object does not run a section that fails, nor
/// read the owner's line, which the owner's own pops and pushes write.
#[inline(always)]
pub fn homed_here(bits: usize) -> bool {
    let homed = crate::pagemap::HOMED;
    bits & (2 * homed - 1) == homed | (arch::id_hint() as usize & (homed - 1))
}

/// Objects a slow path takes from a span's bitmap at once for class `c`: up to [`COLLECT`],
/// and about [`COLLECT_BYTES`] worth (at least 4).
fn collect_count(c: usize) -> usize {
    (COLLECT_BYTES / size_of(c)).clamp(4, COLLECT)
}

/// Turns owned spans on or off at process set-up (`setup::init_process`): on only when asked
/// for, in an rseq mode with the rseq membarrier, on an architecture with the sections.
pub(super) fn init(on: bool) {
    ON.store(on && arch::HAS_CRITICAL_SECTIONS, Ordering::Relaxed);
}

/// The low 48 bits of `OwnedWords::local`: the list's head.
const HEAD_MASK: u64 = (1 << 48) - 1;

/// Objects a slow path takes from a span's bitmap at once at most: the one it returns and the
/// rest pushed onto the span's list (the lazy carving of the session-44 prototype).
const COLLECT: usize = 64;

/// Bytes of objects a slow path takes from a span's bitmap at once, about (`collect_count`):
/// 64 objects up to 256 B, 16 of 1 KiB.
const COLLECT_BYTES: usize = 16 << 10;

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
    // SAFETY: the caller's contract.
    (unsafe { (*Span::ext(s)).owned.local.load(Ordering::Relaxed) } >> 48) as usize
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

/// Pops an object of class `c` from the calling CPU's current owned span, its link word
/// cleared; null when there is none. Aborts on a corrupt list.
#[inline(always)]
pub fn pop(c: usize) -> *mut u8 {
    // SAFETY: slabs are set up as `percpu::pop` needs; every non-zero `cur[c]` names the
    // owned words of a span its slab owns, with the process's key (module invariants).
    let key = free_tag::key_raw();
    match unsafe { arch::owned_pop(c, key) } {
        OwnedPop::Object(p) => {
            // SAFETY: the popped object is ours now; its first word held the encoded link,
            // which must not reach the program (it would give the key away).
            unsafe { p.cast::<usize>().write(0) };
            p
        }
        OwnedPop::Fail => null_mut(),
        // A thread that loaded the key before the process's first carve set it (0), then
        // found a span another thread had made current since, is not looking at a corrupt
        // list: the slow path takes over (found by review).
        OwnedPop::Corrupt(_) if free_tag::key_raw() != key => null_mut(),
        OwnedPop::Corrupt(p) => corrupt(p),
    }
}

/// Pushes `obj` (a free object of class `c`, tagged free, of span `span`) onto its span's
/// owned list when the calling CPU's slab owns the span; false otherwise. A push that leaves
/// every object out of the span on its list (the span wholly free) gives the span back
/// ([`give_back_free`]), unless it is its class's current span (a `malloc`/`free` pair on the
/// current span's last object out would otherwise try it every time).
///
/// # Safety
/// `obj` is a free object of class `c`, tagged free, that nobody uses; `span` is the span
/// record its page-map entry names.
#[inline(always)]
pub unsafe fn push(obj: *mut u8, span: *mut Span, c: usize) -> bool {
    let words = words_of(span);
    // SAFETY: the caller's contract; the span's words satisfy their invariants (module
    // invariants), and a span no slab owns has owner `NO_OWNER`, which no id equals.
    let n = unsafe { arch::owned_push(words, obj, free_tag::key()) };
    if n == 0 {
        return false;
    }
    // SAFETY: span records are pool memory, always readable; `in_use` is an atomic. The owner
    // was this slab a moment ago (the push committed), so its index names a slab; `span` is a
    // record from the page map, as `give_back_free` asks.
    unsafe {
        if n == (*span).in_use() as usize {
            let owner = (*words).owner.load(Ordering::Relaxed) as usize;
            if owner != NO_OWNER as usize
                && Slab::of(owner - 1).owned_cur(c).load(Ordering::Relaxed) != words as usize
            {
                give_back_free(span);
            }
        }
    }
    true
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
    let owner = unsafe { (*Span::ext(s)).owned.owner.load(Ordering::Relaxed) } as usize;
    if owner != NO_OWNER as usize && owner <= super::state::G.nslabs.load(Ordering::Relaxed) {
        // SAFETY: forwarded contract.
        unsafe { give_back_as(owner - 1, s) };
    }
}

/// [`give_back_free`] for a span that slab `a` owned when the caller looked: under `a`'s
/// capacity lock, and only if `a` still owns it (ownership by `a` cannot change while the lock
/// is held: takes, retires and drains of `a`'s spans all hold it), it is retired in a section
/// on this CPU ([`arch::owned_retire`]: fails unless this CPU's slab is `a` and the span is not
/// current), unlinked from `a`'s list, and its list given back ([`central::disown_whole`],
/// else [`disown`]), after which the page heap has its pages. Does nothing when the lock is
/// busy, `a` no longer owns the span, or the thread runs elsewhere: the span stays owned, to be
/// reused or drained.
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
        return;
    }
    // SAFETY: as in `give_back_free`.
    let owner = unsafe { (*Span::ext(s)).owned.owner.load(Ordering::Relaxed) };
    if owner != arch::owner_of(a) {
        slab.cap_lock().unlock();
        return;
    }
    let _errno = os::ErrnoKeeper::new();
    // SAFETY: `a` owns `s` and we hold `a`'s capacity lock, so `s` is in `a`'s list and its
    // class cannot change; the retire section checks, on this CPU, that this CPU's slab is `a`
    // and that `s` is not current; after it, the list is ours.
    unsafe {
        let c = (*s).class as usize;
        if arch::owned_retire(c, words_of(s)) {
            list_remove(slab, c, s);
            let w = (*Span::ext(s)).owned.local.swap(0, Ordering::Relaxed);
            if central::disown_whole(s, c, (w >> 48) as usize) {
                GIVEN_BACK.fetch_add(1, Ordering::Relaxed);
            } else {
                // Some object went out again since the push (a refill may have taken the span
                // as current and popped, then moved on): give the list back object by object.
                (*Span::ext(s)).owned.local.store(w, Ordering::Relaxed);
                disown(s, c);
            }
        }
    }
    slab.cap_lock().unlock();
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
    unsafe { arch::owned_push_chain(words_of(s), first, last, objs.len(), key) != 0 }
}

/// The owned part of the allocation slow path for class `c`, for a thread that ran on slab
/// `id`: an object (still tagged free; its first word may hold a stale link, which the C path
/// clears, `lib::alloc_owned`) from the slab's owned spans —
/// collected from the current span's bitmap, from another span of the slab's list, or from a
/// new span the slab takes — or null when it cannot (the capacity lock is busy, the thread
/// moved, no memory); the caller then takes the stack path.
pub(super) fn refill(c: usize, id: usize) -> *mut u8 {
    debug_assert!(c > 0 && c < NUM_CLASSES);
    let slab = Slab::of(id);
    if !slab.cap_lock().try_lock() {
        return null_mut();
    }
    free_tag::init();
    let p = refill_locked(slab, c, id);
    slab.cap_lock().unlock();
    p
}

/// [`refill`] under the slab's capacity lock. In order: objects pushed onto the current
/// span's list since the pop failed; another owned span with objects on its list (freed
/// here); the current span's bitmap (carving it further, or what other CPUs freed); another
/// owned span with objects in its bitmap; a new span.
fn refill_locked(slab: Slab, c: usize, id: usize) -> *mut u8 {
    let key = free_tag::key();
    let cur = slab.owned_cur(c).load(Ordering::Relaxed);
    let cur_span = if cur == 0 {
        null_mut()
    } else {
        span_of_words(cur)
    };
    // SAFETY: `cur[c]` names a span the slab owns (module invariants; only drains and
    // retires, which hold this lock, end that); span records are always readable.
    if !cur_span.is_null() && unsafe { listed_objects(cur_span) } > 0 {
        return pop(c);
    }
    // SAFETY: as above.
    let mut s = find(slab, c, cur, |s| unsafe { listed_objects(s) } > 0);
    if s.is_null() && !cur_span.is_null() {
        // SAFETY: as above.
        let p = unsafe { collect(cur_span, c, key) };
        if !p.is_null() {
            return p;
        }
    }
    if s.is_null() {
        // SAFETY: members of the list are owned spans of class `c` (module invariants).
        s = find(slab, c, cur, |s| unsafe {
            central::owned_has_objects(s, c)
        });
    }
    if s.is_null() {
        s = central::take_span_to_own(c, id as u32);
        if s.is_null() {
            return null_mut();
        }
        // SAFETY: a span just marked `in_slab` for us, which no section can reach yet (no
        // slab names it as owner): set its words, list it, then publish the owner.
        unsafe {
            (*Span::ext(s)).owned.start = (*s).start;
            (*Span::ext(s)).owned.end = (*s).end();
            (*Span::ext(s)).owned.local.store(0, Ordering::Relaxed);
            list_push(slab, c, s);
            (*Span::ext(s))
                .owned
                .owner
                .store(arch::owner_of(id), Ordering::Release);
        }
        OWNED_TAKEN.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: `s` is a span in the slab's list (module invariants).
    unsafe {
        if !arch::owned_set_cur(c, words_of(s)) {
            return null_mut(); // moved, or rseq off: the span stays listed and owned
        }
        if listed_objects(s) > 0 {
            return pop(c);
        }
        collect(s, c, key)
    }
}

/// Takes up to [`collect_count`] objects from span `s`'s bitmap: returns one and pushes the rest onto
/// its list (or, if the calling CPU's slab does not own it any more, to the central lists);
/// null when the bitmap had none.
///
/// # Safety
/// `s` is in the list of a slab whose capacity lock the caller holds.
unsafe fn collect(s: *mut Span, c: usize, key: usize) -> *mut u8 {
    let mut buf = [null_mut(); COLLECT];
    // SAFETY: the caller's contract: the span is `in_slab`, its slab's lock held.
    let got = unsafe { central::take_from_owned(s, c, &mut buf[..collect_count(c)]) };
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

/// A span of the slab's class-`c` list, other than `cur`'s, for which `wanted` holds, looking
/// at up to [`WALK`] spans from the head; the spans passed over go to the list's tail, the one
/// returned too. Null when none was found.
fn find(slab: Slab, c: usize, cur: usize, wanted: impl Fn(*mut Span) -> bool) -> *mut Span {
    let head = slab.owned_list(c);
    let mut s = head.load(Ordering::Relaxed) as *mut Span;
    for _ in 0..WALK {
        if s.is_null() {
            return null_mut();
        }
        // SAFETY: a member of the list (module invariants), under the capacity lock; moving
        // the head past it makes it the tail.
        let next = unsafe { (*Span::ext(s)).slab_next };
        head.store(next as usize, Ordering::Relaxed);
        if words_of(s) as usize != cur && wanted(s) {
            return s;
        }
        s = next;
    }
    null_mut()
}

/// Unlinks span `s` from the slab's class-`c` list.
///
/// # Safety
/// `s` is in that list; the caller holds the slab's capacity lock.
unsafe fn list_remove(slab: Slab, c: usize, s: *mut Span) {
    let head = slab.owned_list(c);
    // SAFETY: the caller's contract; members of the list are span records.
    unsafe {
        let (p, n) = ((*Span::ext(s)).slab_prev, (*Span::ext(s)).slab_next);
        if n == s {
            head.store(0, Ordering::Relaxed);
        } else {
            (*Span::ext(p)).slab_next = n;
            (*Span::ext(n)).slab_prev = p;
            if head.load(Ordering::Relaxed) == s as usize {
                head.store(n as usize, Ordering::Relaxed);
            }
        }
        (*Span::ext(s)).slab_prev = null_mut();
        (*Span::ext(s)).slab_next = null_mut();
    }
}

/// Adds span `s` at the tail of the slab's class-`c` list (before the head).
///
/// # Safety
/// `s` is in no slab list; the caller holds the slab's capacity lock.
unsafe fn list_push(slab: Slab, c: usize, s: *mut Span) {
    let head = slab.owned_list(c);
    let h = head.load(Ordering::Relaxed) as *mut Span;
    // SAFETY: the caller's contract; members of the list are span records.
    unsafe {
        if h.is_null() {
            (*Span::ext(s)).slab_prev = s;
            (*Span::ext(s)).slab_next = s;
            head.store(s as usize, Ordering::Relaxed);
        } else {
            let t = (*Span::ext(h)).slab_prev;
            (*Span::ext(s)).slab_next = h;
            (*Span::ext(s)).slab_prev = t;
            (*Span::ext(t)).slab_next = s;
            (*Span::ext(h)).slab_prev = s;
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
        (
            (*Span::ext(s)).owned.local.swap(0, Ordering::Relaxed),
            (*Span::ext(s)).owned.start,
            (*Span::ext(s)).owned.end,
        )
    };
    let n = (local >> 48) as usize;
    let size = size_of(c);
    let mut buf = [null_mut(); COLLECT];
    let mut k = 0;
    let mut p = (local & HEAD_MASK) as usize;
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
                            && (*Span::ext(s)).owned.end == (*s).end(),
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
                    ensure(
                        n <= MAX_OBJECTS,
                        "an owned list's count is past a span's",
                        at,
                    )?;
                    let mut seen = [0usize; MAX_OBJECTS];
                    let mut p = (local & HEAD_MASK) as usize;
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
        Ok(())
    }
}

/// An owned span's life on the calling thread's slab, in both rseq modes: taken by a refill,
/// its objects popped and pushed back, given back once wholly free and not current, and taken
/// back by a drain with objects still out. The tests call the layer directly, so they need no
/// `owned_spans=on` (the unit tests' allocations stay on the stacks).
#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::super::drain::drain_where;
    use super::super::{current_rseq_id, pinned_in_both_rseq_modes};
    use super::*;
    use crate::size_class::class_of;
    use std::vec::Vec;

    /// An object size no other unit test uses.
    const SIZE: usize = 592;

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
        let slabs = super::super::state::G.nslabs.load(Ordering::Relaxed);
        if slabs < 2 {
            std::eprintln!("one slab: no other owner to name");
            crate::os::set_affinity(&saved);
            return;
        }
        let (slab, other) = (Slab::of(id), (id + 1) % slabs);
        let c = class_of(SIZE);
        drain(id);
        let p = refill(c, id);
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

        // Taken: one object handed out, the rest of a batch on the span's list.
        let p0 = refill(c, id);
        assert!(!p0.is_null());
        assert_eq!(OWNED_TAKEN.load(Ordering::Relaxed), taken + 1);
        let s = current(slab, c);
        assert!(!s.is_null(), "the refill made the span current");
        // SAFETY: a span record the slab owns.
        let (start, end) = unsafe { ((*s).start, (*s).end()) };
        assert!((start..end).contains(&(p0 as usize)));
        // A batch, less the object returned (fewer if the span, taken from the central list
        // partly used by other tests' allocations, had fewer left).
        // SAFETY: as above.
        let listed = unsafe { listed_objects(s) };
        assert!(listed < collect_count(c), "{listed} listed");
        check::check_owned(id, slab).unwrap();

        // Popped: every listed object once, its link word cleared; then nothing.
        let mut objs = std::vec![p0];
        loop {
            let p = pop(c);
            if p.is_null() {
                break;
            }
            assert!((start..end).contains(&(p as usize)));
            // SAFETY: an object just handed to us.
            assert_eq!(
                unsafe { (p as *const usize).read() },
                0,
                "the link is cleared"
            );
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
            // SAFETY: our objects, handed out as `malloc` hands them out (the tag cleared),
            // then freed as `free` frees them: tagged, then pushed.
            unsafe {
                free_tag::clear(p);
                assert!(free_tag::mark_free(p));
                assert!(push(p, s, c), "the owner's push succeeds");
            }
            // SAFETY: as above.
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
        let q = refill(c, id);
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
        crate::os::set_affinity(&saved);
    }
}
