//! Fork safety: the `pthread_atfork` handlers of the whole allocator. Every lock is taken
//! before `fork` and released (parent) or reset (child) after, so the child never inherits a
//! lock held by a thread that does not exist there.
//!
//! Lock order, the same glibc's own malloc keeps inside `fork`: glibc's stdio list lock first
//! (a thread in `fflush(NULL)` holds it while it waits for a `FILE` whose holder may be in
//! `realloc`), then the allocator's own in the order it nests them — set-up, drain, fallback
//! capacity locks and, in fallback mode, slab locks (this layer), the central classes, the
//! page heap — so taking them for a fork cannot deadlock with a thread in the middle of a drain
//! or of stdio. The capacity locks are taken so that no growth (and no owner's carve of an
//! owned span without the class lock, `central::carve_owned`) is half done in the child (a
//! class moved to a new region whose reservation was not yet recorded would let the next
//! growth hand the same slots to another class); their holders take a slab lock (fallback
//! mode's relocation and eviction) and, when a steal moves an idle class's objects to the
//! central lists (`slab::evict`), the central and page-heap locks: all after them here too.
//!
//! A process that has only ever had one thread takes no lock at all, as glibc does: no other
//! thread can hold one, and the only code that can — the `malloc` a signal handler interrupted
//! — must not be waited for, so a `fork` from that handler returns in parent and child.
//!
//! The handlers live here, at the top of the per-CPU layer, because this layer's locks are the
//! outermost: every lock below (central, page heap) is reachable from here.
//!
//! Also `vfork`: a child that runs on its parent's thread block is kept off the rseq paths
//! ([`vfork_enter`]).
//!
//! May call: `arch` (the thread block), `central`, `os`, `page_heap`, `sync`, and in this
//! folder `drain` (its lock), `maintenance` (the background thread is not copied), `remote`
//! (the inbox locks), `setup` (its lock), `slab`, `state`.

use super::drain::DRAIN;
use super::remote;
use super::setup::INIT;
use super::slab::{ready_slabs, Slab, SlabSet};
use super::state::{mode, RseqMode};
use crate::arch::{self, ThreadState};
use crate::central;
use crate::os;
use crate::page_heap::HEAP;
use crate::sync::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use core::sync::atomic::compiler_fence;

/// Whether the running fork's prepare handler took the locks.
static LOCKED: AtomicBool = AtomicBool::new(false);

/// [`install`]'s progress: [`NOT_INSTALLED`], [`INSTALLING`] or [`INSTALLED`].
static INSTALL: AtomicU8 = AtomicU8::new(NOT_INSTALLED);
/// The thread block of the thread registering the handlers (while [`INSTALLING`]).
static INSTALLER: AtomicUsize = AtomicUsize::new(0);
const NOT_INSTALLED: u8 = 0;
const INSTALLING: u8 = 1;
const INSTALLED: u8 = 2;

/// Registers the handlers, once: from the start-up constructor, or earlier from the shim's
/// `__register_atfork`, before the first handlers anyone else registers.
///
/// Why first: glibc runs the prepare handlers in the reverse order of their registration and
/// the parent and child handlers in that order, so the first registered prepare runs last and
/// the first registered parent and child run first. Registered last, ours took every lock
/// before the prepare handlers registered earlier ran, and released them after their parent and
/// child handlers: a handler of those that allocated waited on a lock its own thread held, and
/// `fork` hung (a breaker run in session 74: a library the program links registers allocating
/// handlers from its constructor, which the loader runs before a preloaded library's). glibc's
/// own malloc takes its locks inside `fork`, after every prepare handler, and releases them
/// before any parent or child handler; the first registration is as close as a library gets.
///
/// Returns once the handlers are registered. Another thread's call meanwhile waits (else its
/// registration, passed on at once, could come before ours: a review found `fork` hanging in 1-3
/// of 10 runs of a program whose library constructor registers handlers while a thread it
/// started does). The registering thread's own call comes back here (`pthread_atfork` calls
/// the shim's `__register_atfork`) and returns at once, so that its registration goes on.
pub fn install() {
    let me = arch::thread_block() as usize;
    match INSTALL.compare_exchange(
        NOT_INSTALLED,
        INSTALLING,
        Ordering::Acquire,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            INSTALLER.store(me, Ordering::Relaxed);
            os::at_fork(prepare, parent, child);
            INSTALL.store(INSTALLED, Ordering::Release);
        }
        Err(_) if INSTALLER.load(Ordering::Relaxed) == me => {}
        Err(_) => {
            while INSTALL.load(Ordering::Acquire) != INSTALLED {
                os::yield_now();
            }
        }
    }
}

extern "C" fn prepare() {
    if os::single_threaded() {
        LOCKED.store(false, Ordering::Relaxed);
        return;
    }
    os::stdio_list_lock();
    lock_percpu();
    central::lock_all();
    core::mem::forget(HEAP.lock());
    LOCKED.store(true, Ordering::Relaxed);
}

extern "C" fn parent() {
    if !LOCKED.load(Ordering::Relaxed) {
        return;
    }
    // Checked while no slab can turn ready (`INIT` held), reported once every lock is free:
    // a failing assertion allocates.
    let taken_all = taken_all();
    // SAFETY: `prepare` took these locks in this thread.
    unsafe {
        HEAP.force_unlock();
        central::unlock_all();
        unlock_percpu(false);
    }
    os::stdio_list_unlock();
    debug_assert!(
        taken_all,
        "a slab turned ready during a fork, after prepare looked"
    );
}

extern "C" fn child() {
    if LOCKED.load(Ordering::Relaxed) {
        reset_in_child();
    }
    super::maintenance::background_after_fork_in_child();
}

/// [`child`]'s part when [`prepare`] took the locks.
fn reset_in_child() {
    // The child's one thread: no slab turns ready meanwhile; reported once the locks are free.
    let taken_all = taken_all();
    // SAFETY: the child has one thread, and the parent's `prepare` left every structure
    // consistent before taking the locks.
    unsafe {
        HEAP.reset_in_child();
        central::reset_all_in_child();
        unlock_percpu(true);
    }
    os::stdio_list_reset();
    debug_assert!(
        taken_all,
        "a slab turned ready during a fork, after prepare looked"
    );
}

/// The slabs whose locks the running fork's prepare handler took, which the parent releases:
/// exactly the slabs ready when prepare looked (a slab turns ready under `INIT`, which prepare
/// holds from before its look to the end of the fork, `slab::ensure_slab`).
static TAKEN: SlabSet = SlabSet::new();

/// Debug builds: whether every slab ready now, after the fork, is one whose locks prepare took
/// (a slab turns ready only under `INIT`, which prepare still holds: `slab::ensure_slab`); true
/// in release builds, which do not look.
fn taken_all() -> bool {
    !cfg!(debug_assertions) || ready_slabs().all(|(i, _)| TAKEN.contains(i))
}

/// This layer's part of prepare: takes the set-up and drain locks and, in fallback mode, every
/// slab lock (the order the allocator nests them: these before any central or heap lock).
fn lock_percpu() {
    core::mem::forget(INIT.lock());
    core::mem::forget(DRAIN.lock());
    TAKEN.clear();
    for (i, slab) in ready_slabs() {
        TAKEN.insert(i);
        slab.cap_lock().lock();
    }
    if mode() == RseqMode::Fallback {
        for i in TAKEN.iter() {
            Slab::of(i).lock();
        }
    }
    remote::lock_all();
}

/// Releases what [`lock_percpu`] took (in the child the holders are gone, so the words are
/// reset rather than handed over).
///
/// # Safety
/// Only after [`lock_percpu`] in the same fork; `child` says which side we are on.
unsafe fn unlock_percpu(child: bool) {
    // SAFETY: taken by `lock_percpu` in this fork (forwarded contract).
    unsafe { remote::unlock_all(child) };
    if child {
        // Every slab lock, and the capacity locks a grower in another thread may have held:
        // their holders do not exist here.
        for (_, slab) in ready_slabs() {
            // SAFETY: the child of a fork, single-threaded (forwarded contract).
            unsafe { slab.reset_locks_in_child() };
        }
    } else {
        for slab in TAKEN.iter().map(Slab::of) {
            if mode() == RseqMode::Fallback {
                slab.unlock();
            }
            slab.cap_lock().unlock();
        }
    }
    // SAFETY: taken in `lock_percpu` (forwarded contract).
    unsafe {
        if child {
            DRAIN.reset_in_child();
            INIT.reset_in_child();
        } else {
            DRAIN.force_unlock();
            INIT.force_unlock();
        }
    }
}

/// Sets the calling thread's block aside before it calls `vfork`: the fast path's `area` points
/// at `arch::DUMMY_AREA` (cpu id -1) and the thread runs in bypass (the central lists, under
/// their locks) until [`vfork_leave`].
///
/// Why: a `vfork` child shares the parent's memory, its thread block and rseq area included,
/// but the kernel does not register the child's rseq (`CLONE_VM`): the area keeps the parent's
/// last cpu and concurrency ids, and nothing restarts the child's critical sections. A child
/// that allocates before `exec` (POSIX leaves that undefined, but `setenv` there is common and
/// glibc's malloc and its peers run it) would run the sections unprotected on a slab another
/// thread may use or drain: a breaker run (session 73) saw "corrupted free list" and "double
/// free" aborts in every run of a program whose children allocate while another thread does.
/// In bypass the child takes locks, which is safe whichever thread runs.
///
/// Every state is set aside: a thread in bypass may still have a live area (glibc mode, after
/// the allocator's thread-exit destructor, a review found in session 73: a later key destructor
/// that called `vfork` corrupted the heap), and one in fallback mode must not tick or start the
/// background thread in the child either (`maintenance::set_aside_for_vfork`). The parent is
/// suspended while the child runs, so only the child uses the block meanwhile; a child that
/// calls `vfork` itself counts one level deeper.
///
/// The stores are ordered for a signal handler that calls `vfork` itself between them (handlers
/// nest, so its calls are balanced before the interrupted one goes on): the saved words before
/// the depth, the depth before the block is set aside, and a nested call sets the block aside
/// again (it may come before the outer call did).
pub fn vfork_enter() {
    let b = arch::thread_block();
    // SAFETY: the calling thread's own block.
    unsafe {
        if (*b).vfork_depth == 0 {
            (*b).vfork_state = (*b).state;
            (*b).vfork_area = (*b).area;
        }
        compiler_fence(Ordering::SeqCst);
        (*b).vfork_depth += 1;
        compiler_fence(Ordering::SeqCst);
        (*b).state = ThreadState::Bypass;
        compiler_fence(Ordering::SeqCst);
        (*b).area = &raw const arch::DUMMY_AREA;
    }
}

/// Undoes [`vfork_enter`] in the parent once `vfork` returned there (or failed): the outermost
/// call puts the area and the state back, after the depth (a handler's `vfork` in between then
/// saves and restores the block as set aside).
pub fn vfork_leave() {
    let b = arch::thread_block();
    // SAFETY: the calling thread's own block.
    unsafe {
        match (*b).vfork_depth {
            0 => {}
            1 => {
                let (area, state) = ((*b).vfork_area, (*b).vfork_state);
                (*b).vfork_depth = 0;
                compiler_fence(Ordering::SeqCst);
                (*b).area = area;
                compiler_fence(Ordering::SeqCst);
                (*b).state = state;
            }
            _ => (*b).vfork_depth -= 1,
        }
    }
}
