//! Per-CPU caches: one slab per CPU (or per concurrency id), each a set of per-class stacks of
//! free object pointers, popped and pushed inside rseq critical sections — or, in fallback
//! mode, under each slab's lock.
//!
//! This file is the layer's face: [`pop`] and [`push`] (the fast path: one critical section
//! each, over `arch`; below everything else in the folder, which may use them), the slow paths
//! the fast path hands off to ([`alloc_slow`], [`free_slow`], fallback mode's magazine paths),
//! and what `trim`, `ctl` and `stats` ask of the layer.
//!
//! The files, each calling only those below it:
//!
//! ```text
//! mod.rs          the face: pop/push (over arch), slow-path dispatch, trim/flush, figures
//! fork.rs         the allocator's atfork handlers (this layer's locks are the outermost)
//! setup.rs        process set-up (mode, id, slabs) and thread set-up and exit
//! fallback.rs     fallback mode: locked operations and per-thread magazines
//! maintenance.rs  the tick, idle drains, the background thread
//! drain.rs        the drain protocols: locked, stop/fence/empty/fence/restart, pinned
//! slab.rs         slab layout, slab locks, capacity policy, refill/overflow sizes, figures
//! state.rs        process-wide state: mode, id kind, slab base and count, thread-exit key
//! ```
//!
//! Invariant of every slab's class header, outside a drain: `slots[begin..current]` are free
//! objects of the class owned by the cache, and `floor = begin <= current <= end` (see
//! `arch::ClassHeader` and `slab`).
//!
//! May call: `arch`, `central`, `config`, `free_tag`, `guard`, `os`, `page_heap`, `size_class`,
//! `sync`.

mod drain;
mod fallback;
mod fork;
mod maintenance;
mod setup;
mod slab;
mod state;

pub use drain::DRAINS_SKIPPED;
pub use fallback::{alloc_from_magazine, flush_own_magazine, free_to_magazine, magazine_storage};
pub use fork::install as install_fork_handlers;
pub use maintenance::{maintenance, maybe_tick, start_background_thread};
pub use slab::{cached_bytes_per_slab, cached_objects, fallback_ops, slabs_in_use};
pub use state::{mode, slab_count, uses_mm_cid, RseqMode};

#[cfg(feature = "fuzzing")]
pub use slab::check::check_slabs;

use crate::arch::{self, ThreadState};
use crate::central;
use crate::sync::Ordering;
use core::ptr::null_mut;
use drain::{drain_current, drain_where};
use setup::thread_state;
use slab::{ensure_slab, grow_cap, header_offset, overflow_take, refill, Slab};
use state::G;

/// Pops a cached object of class `c`; null when the cache is empty, rseq is off, or the thread
/// is not set up yet (all handled by [`alloc_slow`]).
#[inline(always)]
pub fn pop(c: usize) -> *mut u8 {
    // SAFETY: before set-up the thread's area is DUMMY_AREA (cpu id -1) and the slabs are never
    // touched; set-up (`init_thread`) stores `slabs`, which maps a slab for every id the kernel
    // can report, whose headers are zero (every index 0: empty and full) or initialised, and
    // `id` before the area.
    unsafe { arch::percpu_pop(header_offset(c)) }
}

/// Pushes a free object of class `c`; false when full, rseq is off or the thread is not set up.
#[inline(always)]
pub fn push(c: usize, obj: *mut u8) -> bool {
    // SAFETY: as in `pop`.
    unsafe { arch::percpu_push(header_offset(c), obj) }
}

/// Pops up to `out.len()` cached objects of class `c` into `out` in one critical section;
/// returns how many (0 as [`pop`] returns null).
fn pop_batch(c: usize, out: &mut [*mut u8]) -> usize {
    if out.is_empty() {
        return 0;
    }
    // SAFETY: as in `pop`; `out` is valid for `out.len()` writes.
    unsafe { arch::percpu_pop_batch(header_offset(c), out.as_mut_ptr(), out.len()) }
}

/// Pushes a prefix of `objs` (free objects of class `c`) in one critical section; returns how
/// many (0 as [`push`] returns false). The objects pushed belong to the cache.
fn push_batch(c: usize, objs: &[*mut u8]) -> usize {
    if objs.is_empty() {
        return 0;
    }
    // SAFETY: as in `pop`; `objs` is valid for `objs.len()` reads.
    unsafe { arch::percpu_push_batch(header_offset(c), objs.as_ptr(), objs.len()) }
}

/// The slab id the thread runs on now, as the rseq area reports it (a hint outside a section).
fn current_rseq_id() -> usize {
    let b = arch::thread_block();
    // SAFETY: in the `Rseq` state `area` is a registered area; reading the kernel-written
    // field is a plain load. Clamp defensively.
    let id = unsafe {
        ((*b).area as *const u8)
            .add(G.field.load(Ordering::Relaxed))
            .cast::<u32>()
            .read_volatile()
    };
    (id as usize).min(G.nslabs.load(Ordering::Relaxed) - 1)
}

/// Slow path of allocation for class `c`: set-up, refill, fallback and bypass.
#[cold]
#[inline(never)]
pub fn alloc_slow(c: usize) -> *mut u8 {
    match thread_state() {
        ThreadState::Rseq => {
            maintenance::maybe_tick();
            let id = current_rseq_id();
            ensure_slab(id);
            let p = pop(c);
            if !p.is_null() {
                return p;
            }
            let slab = Slab::of(id);
            grow_cap(slab, c, false);
            refill(c, slab, push_batch)
        }
        ThreadState::Locked => fallback::alloc_locked(c),
        _ => {
            let mut one = [null_mut(); 1];
            if central::alloc_batch(c, &mut one) == 1 {
                one[0]
            } else {
                null_mut()
            }
        }
    }
}

/// Slow path of free for class `c`: set-up, overflow, fallback and bypass.
///
/// # Safety
/// `obj` is a live object of class `c` that nobody uses any more.
#[cold]
#[inline(never)]
pub unsafe fn free_slow(c: usize, obj: *mut u8) {
    match thread_state() {
        ThreadState::Rseq => {
            maintenance::maybe_tick();
            let id = current_rseq_id();
            ensure_slab(id);
            let slab = Slab::of(id);
            if push(c, obj) || (grow_cap(slab, c, true) && push(c, obj)) {
                return;
            }
            // Full and at its budget: move this object and about half the stack (at most a
            // batch) to the central list, so the next frees find room.
            let mut buf = [null_mut(); 32];
            buf[0] = obj;
            let take = overflow_take(slab, c);
            let n = 1 + pop_batch(c, &mut buf[1..take]);
            // SAFETY: all are free objects of class `c` now owned by us.
            unsafe { central::free_batch(c, &buf[..n]) };
        }
        // SAFETY: forwarded contract.
        ThreadState::Locked => unsafe { fallback::free_locked(c, obj) },
        // SAFETY: forwarded contract.
        _ => unsafe { central::free_batch(c, &[obj]) },
    }
}

/// Whether a drain may move the calling thread onto other CPUs ([`drain_where`]): only a thread
/// that runs the critical sections (set up first if new).
fn may_pin() -> bool {
    thread_state() == ThreadState::Rseq
}

/// Drains what trim may take from the per-CPU caches: the caller's magazine, then every ready
/// slab (`drain` for the protocols). Returns the bytes moved.
pub fn drain_all() -> usize {
    flush_own_magazine();
    drain_where(may_pin, |_, _| true)
}

/// Empties the caches the calling thread uses: its magazine (fallback mode) and the slab of the
/// CPU or concurrency id it runs on now. Returns the bytes moved to the central lists.
pub fn flush_mine() -> usize {
    flush_own_magazine();
    match thread_state() {
        ThreadState::Rseq => drain_current(),
        ThreadState::Locked => {
            let mine = arch::current_cpu() % G.nslabs.load(Ordering::Relaxed).max(1);
            drain_where(may_pin, |i, _| i == mine)
        }
        _ => 0,
    }
}
