//! Set-up: the process's (once: the mode, the slabs) and each thread's (once: its state), and
//! each thread's exit.
//!
//! Owns: the set-up lock, the choice of [`RseqMode`] and of the id that indexes the slabs,
//! mapping the slab region, registering for the rseq membarrier, the thread-exit key, and the
//! moves of a thread's [`ThreadState`]: `New` to `Rseq`, `Bypass` or `Locked` at its first slow
//! path, to `Bypass` at its exit.
//!
//! ## Modes
//! - **Glibc**: glibc registered rseq; threads use its area (thread pointer + `__rseq_offset`).
//! - **Own**: nobody registered; each thread registers our own area from its thread block and
//!   unregisters it in a thread-exit destructor. A thread whose registration fails (EBUSY:
//!   someone else owns rseq for it) never touches the slabs: it bypasses to the central lists.
//! - **Fallback**: rseq off (forced by `rseq=off`, or unavailable): see `fallback`. A thread
//!   gets its magazines at set-up and hands them back at exit.
//!
//! In both rseq modes a thread that frees another slab's object gets an outbox (owner return,
//! `remote`) and sends it home at exit; in glibc mode that first free arms the exit key.
//!
//! Slabs are indexed by `mm_cid` when the kernel fills it (feature size ≥ 28) and the rseq
//! membarrier is registered, else by `cpu_id` (see [`init_process`]).
//!
//! May call: `arch`, `config`, `guard`, `os`, `sync`, and in this folder `fallback`
//! (magazines), `maintenance` (a second thread set up), `remote` (its mapping, outboxes),
//! `slab`, `state`, `storage`.

use super::fallback;
use super::remote;
use super::slab::{MAX_SLABS, SLAB_BYTES};
use super::state::{mode, RseqMode, G};
use super::storage::{drop_storage, new_storage};
use crate::arch::{
    self, ThreadBlock, ThreadState, CPU_ID_OFFSET, DUMMY_AREA, MM_CID_OFFSET, SLAB_SHIFT,
};
use crate::config;
use crate::os;
use crate::sync::{Mutex, Ordering};

/// The auxiliary vector's entry for the kernel's rseq feature size (`AT_RSEQ_FEATURE_SIZE`,
/// Linux 6.3's `include/uapi/linux/auxvec.h`): 20 before the extended fields, 28 or more with
/// `node_id` and `mm_cid`; absent (0) on older kernels.
const AT_RSEQ_FEATURE_SIZE: u64 = 27;

/// Held while the process is set up, during a fork, and while a slab first turns ready
/// (`slab::ensure_slab`).
pub(super) static INIT: Mutex<()> = Mutex::new(());

/// Chooses the process's mode and maps the slabs. Runs once, under `INIT`.
fn init_process(block: *mut ThreadBlock) {
    let _g = INIT.lock();
    if G.mode.load(Ordering::Acquire) != 0 {
        return;
    }
    let opts = config::get();
    let n = os::possible_cpus().max(1);
    if n > MAX_SLABS {
        // Ids could exceed the slab array: do not use per-CPU caches at all.
        G.mode.store(RseqMode::Fallback as u8, Ordering::Release);
        return;
    }
    let Ok(base) = os::map(n << SLAB_SHIFT, SLAB_BYTES) else {
        // No memory for slabs: every thread bypasses to the central lists.
        G.mode.store(RseqMode::Fallback as u8, Ordering::Release);
        return;
    };
    G.nslabs.store(n, Ordering::Relaxed);
    G.slabs.store(base as usize, Ordering::Relaxed);
    // One transfer stack shard per slab, as far as they go: each slab overflows into its own
    // and refills from it first.
    crate::central::set_shards(n);
    super::remote::init(n, opts.owner_return && opts.rseq);
    // The rseq fence, unless told not to (`membarrier=off`).
    let membarrier = opts.rseq && opts.membarrier && os::membarrier_register_rseq();
    // Without the membarrier, other CPUs' caches can only be drained by running on their CPU
    // (`drain_pinned`), which needs slabs indexed by CPU: `mm_cid` only with the membarrier.
    // (Kernels with `mm_cid`, 6.3 and later, all have the membarrier command, 5.10 and later.)
    let feature_size = os::auxval(AT_RSEQ_FEATURE_SIZE);
    let field = if feature_size >= 28 && membarrier {
        MM_CID_OFFSET
    } else {
        CPU_ID_OFFSET
    };
    G.field.store(field, Ordering::Relaxed);
    let mode = if !opts.rseq || !arch::HAS_CRITICAL_SECTIONS {
        RseqMode::Fallback
    } else if arch::glibc_area().is_some_and(|a| {
        // SAFETY: glibc's area for this thread is valid for the thread's life.
        unsafe { (*a).cpu_id >= 0 }
    }) {
        RseqMode::Glibc
    } else {
        // SAFETY: the block is this thread's static TLS, alive as long as the thread.
        match unsafe { arch::register(&raw mut (*block).own) } {
            Ok(()) => {
                // SAFETY: registered just now; undone right away (the thread's set-up registers
                // it again).
                unsafe { arch::unregister(&raw mut (*block).own) };
                RseqMode::Own
            }
            Err(_) => RseqMode::Fallback,
        }
    };
    // Own mode unregisters at exit, fallback mode hands its magazines back, glibc mode sends
    // its outbox home (owner return): every mode with slabs needs the key.
    if mode == RseqMode::Own || G.nslabs.load(Ordering::Relaxed) > 0 {
        if let Some(key) = os::thread_key_create(thread_exit) {
            G.key.store(key + 1, Ordering::Relaxed);
        }
    }
    G.membarrier
        .store(membarrier && mode != RseqMode::Fallback, Ordering::Relaxed);
    // Owned spans need the sections and the fenced drain, or fallback mode's locks (`owned`).
    super::owned::init(
        opts.owned_spans && (membarrier || mode == RseqMode::Fallback),
        mode == RseqMode::Fallback,
        opts.cpu_cache_bytes as usize * super::owned::KEEP_PER_CACHE,
    );
    G.mode.store(mode as u8, Ordering::Release);
}

/// Thread-exit destructor: in fallback mode, hand the magazine back; in the rseq state, send
/// the outbox home and give its storage back, and in own mode unregister our area before the
/// thread's TLS goes away. Either way the thread's remaining operations (later destructors)
/// go straight to the central lists.
extern "C" fn thread_exit(_: *mut core::ffi::c_void) {
    let b = arch::thread_block();
    // SAFETY: `b` is this thread's block; the key was armed by `init_thread` for a thread that
    // registered `own` (own mode) or runs locked (fallback mode), or by `give_outbox`.
    unsafe {
        let was = (*b).state;
        (*b).state = ThreadState::Bypass;
        if was == ThreadState::Locked {
            fallback::flush_own_magazine();
            fallback::drop_magazine(b);
            return;
        }
        remote::flush_outbox();
        let out = core::mem::replace(&mut (*b).outbox, core::ptr::null_mut());
        if !out.is_null() {
            drop_storage(out);
        }
        if mode() == RseqMode::Own && (*b).area == &raw const (*b).own {
            (*b).area = &DUMMY_AREA;
            (*b).id = (&raw const DUMMY_AREA.cpu_id).cast();
            arch::unregister(&raw mut (*b).own);
        }
    }
}

/// Gives the calling thread (in the rseq state, owner return on) an outbox, and in glibc mode
/// ties `thread_exit` to its exit (own mode did at set-up); false if it has one already, owner
/// return is off or memory ran out.
pub(super) fn give_outbox() -> bool {
    let b = arch::thread_block();
    // SAFETY: the calling thread's own block.
    if !remote::is_on() || unsafe { !(*b).outbox.is_null() } {
        return false;
    }
    // Without the exit key a glibc-mode thread's outbox could not be sent home at its exit.
    if mode() == RseqMode::Glibc && G.key.load(Ordering::Relaxed) == 0 {
        return false;
    }
    // A glibc-mode thread arms its exit now (own mode did at set-up): an outbox whose exit is
    // not armed would strand its objects when the thread ends.
    // SAFETY: no allocator lock held: called from `free_foreign` outside any lock.
    let armed = mode() != RseqMode::Glibc || unsafe { arm_thread_exit() };
    let out = if armed {
        new_storage()
    } else {
        core::ptr::null_mut()
    };
    if out.is_null() {
        // No memory for the storage or for the C library's key block: the caller frees its
        // object where it is.
        remote::NO_OUTBOX.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    // SAFETY: as above; the storage is ours, all-zero is an empty outbox.
    unsafe { (*b).outbox = out };
    true
}

/// Ties `thread_exit` to the calling thread's exit; false when it could not (no key, or the C
/// library found no memory for it), and then the thread must keep nothing that only
/// `thread_exit` would give back.
///
/// Arming a key past the first 32 allocates; that allocation runs in bypass (the central
/// lists), whatever the thread's state: it may be nested in a `free` (`give_outbox`), where
/// the background thread must not start (`maintenance::maybe_start_background`).
///
/// # Safety
/// Called with no allocator lock held (arming may allocate).
unsafe fn arm_thread_exit() -> bool {
    let key = G.key.load(Ordering::Relaxed);
    if key == 0 {
        return false;
    }
    let b = arch::thread_block();
    // SAFETY: the calling thread's own block; its state is put back below.
    let state = unsafe { core::mem::replace(&mut (*b).state, ThreadState::Bypass) };
    // May allocate for keys ≥ 32; no lock is held here, so that is safe.
    let armed = {
        let _nested = crate::guard::allow_nested();
        os::thread_key_arm(key - 1)
    };
    // SAFETY: as above.
    unsafe { (*b).state = state };
    armed
}

/// Sets up the calling thread; returns its state.
///
/// Re-entrant: anything set-up calls may allocate (`pthread_setspecific` for a key past the
/// first 32, whatever a seccomp filter or valgrind makes of a system call), so the thread is
/// in bypass (central lists, nothing else to set up) until its final state is stored, and a
/// nested allocation neither recurses into set-up nor waits for the process's set-up lock.
#[cold]
fn init_thread(b: *mut ThreadBlock) -> ThreadState {
    // Set-up's system calls and its own allocations (refused ones set `ENOMEM`) must not show
    // in the `errno` of the request that set the thread up (found by review, session 70).
    let _errno = os::ErrnoKeeper::new();
    // SAFETY: `b` is the calling thread's own block.
    unsafe { (*b).state = ThreadState::Bypass };
    if G.mode.load(Ordering::Acquire) == 0 {
        init_process(b);
    }
    // SAFETY: `b` is the calling thread's own block.
    unsafe {
        let state = match mode() {
            RseqMode::Glibc => match arch::glibc_area() {
                Some(a) if (*a).cpu_id >= 0 => {
                    use_area(b, a);
                    (*b).owned = super::owned::initial_routes();
                    ThreadState::Rseq
                }
                _ => ThreadState::Bypass,
            },
            // Each mode's per-thread state is given back by `thread_exit` (own mode's
            // registration, the outbox, the magazine): without an armed exit, none is taken.
            RseqMode::Own => match arch::register(&raw mut (*b).own) {
                Ok(()) if arm_thread_exit() => {
                    use_area(b, &raw const (*b).own);
                    (*b).owned = super::owned::initial_routes();
                    ThreadState::Rseq
                }
                Ok(()) => {
                    arch::unregister(&raw mut (*b).own);
                    ThreadState::Bypass
                }
                Err(_) => ThreadState::Bypass,
            },
            RseqMode::Fallback if G.nslabs.load(Ordering::Relaxed) > 0 && arm_thread_exit() => {
                (*b).magazine = fallback::new_magazine();
                (*b).owned = super::owned::initial_routes();
                ThreadState::Locked
            }
            _ => ThreadState::Bypass,
        };
        // Still in bypass: arming a key there may allocate (see `note_thread_set_up`).
        super::maintenance::note_thread_set_up(b);
        (*b).state = state;
        state
    }
}

/// Points the thread's fast path at `area`: the slabs and the id field first, the area last
/// (its cpu id is what lets the fast path in).
///
/// # Safety
/// `b` is the calling thread's block and `area` a registered area valid for the thread's life.
unsafe fn use_area(b: *mut ThreadBlock, area: *const arch::Rseq) {
    // SAFETY: forwarded contract; the field offset is 4 or 24, inside the area.
    unsafe {
        (*b).slabs = G.slabs.load(Ordering::Relaxed);
        (*b).id = area
            .cast::<u8>()
            .add(G.field.load(Ordering::Relaxed))
            .cast();
        (*b).area = area;
    }
}

/// The calling thread's state as it is now, without setting a new thread up (what a trim
/// inside an allocation asks, `percpu::drain_all_in_place`).
pub(super) fn thread_state_as_is() -> ThreadState {
    // SAFETY: the block is the calling thread's own.
    unsafe { (*arch::thread_block()).state }
}

/// The calling thread's state, setting it up first if needed.
#[inline]
pub(super) fn thread_state() -> ThreadState {
    let b = arch::thread_block();
    // SAFETY: the block is the calling thread's own.
    let s = unsafe { (*b).state };
    if s == ThreadState::New {
        init_thread(b)
    } else {
        s
    }
}
