//! Per-CPU caches: one slab per CPU (or per concurrency id), each a set of per-class stacks of
//! free object pointers, popped and pushed inside rseq critical sections.
//!
//! Owns: the slab region (mapped once for every possible id, committed by the kernel only where
//! touched, so memory follows the CPUs or concurrency ids that actually run), the choice of
//! rseq mode, each thread's set-up, the refill/overflow slow paths, the locked fallback path, and
//! the drain protocol for another CPU's slab.
//!
//! Slab layout (`1 << SLAB_SHIFT` bytes): class `c` owns the 1 KiB block at byte `1024 c`,
//! an 8-byte header `count: u16, cap: u16, floor: u16` followed by its slots (so the fast path
//! needs no per-class table: slot `k` is at `1024 c + 8 + 8 k`). Block 0 holds the slab-wide
//! words: the state at byte 0 (0 untouched, 1 initialising, 2 ready), the fallback lock word at
//! byte 4, and at bytes 1000–1024 the idle signature, the capacity lock, the fallback operation
//! count, the steal cursor, the capacity bytes and the idle tick count. Invariant: `slots[0..count]` are free objects of the class owned by the
//! cache, and `floor <= count <= cap` except while a drain has the slab stopped
//! (`cap = 0`, `floor = u16::MAX`).
//!
//! ## Modes
//! - **Glibc**: glibc registered rseq; threads use its area (thread pointer + `__rseq_offset`).
//! - **Own**: nobody registered; each thread registers our own area from its thread block and
//!   unregisters it in a thread-exit destructor. A thread whose registration fails (EBUSY:
//!   someone else owns rseq for it) never touches the slabs: it bypasses to the central lists.
//! - **Fallback**: rseq off (forced by `rseq=off`, or unavailable). The fast path's sign test
//!   sends every operation here, where the same slabs are used under each slab's lock word,
//!   behind a small per-thread magazine for the smallest classes (see `Magazines`). The two
//!   protocols never mix: the mode is chosen once per process.
//!
//! ## Draining another CPU's slab (idle shrink)
//!
//! Lock-free rseq code cannot be locked out, so a drain *stops* the slab instead, and uses two
//! fences, `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`; when one returns, every critical
//! section that was running or preempted when it was called has either committed (its stores
//! visible to us) or been aborted (and will restart from its first load).
//!
//! 1. **Stop**: store `cap = 0` (every push fails) and `floor = u16::MAX` (every pop fails) in
//!    each class header, under the slab's capacity lock (so no growth can un-stop it).
//! 2. **Fence**: a section that read a header before the stop is now over. Any later one reads
//!    the stop and fails to the slow path, which never touches a stopped slab.
//! 3. **Empty**: the drainer owns `slots[0..count]`: it hands them to the central lists and
//!    writes `count = 0`.
//! 4. **Fence again.** A section reads `count` and then, in a second load, `floor` or `cap`.
//!    One that read the old count just before step 3 wrote 0 is still in flight; were the slab
//!    un-stopped now, its second load could see the restored bound and it would commit
//!    `count - 1` (or `count + 1`) over slots that now belong to the central lists, handing
//!    each of them out twice. The second fence ends every such section first. (This was the
//!    race behind the double hand-outs seen when drains had a single fence; the stress test
//!    `tests/rseq_modes.rs` drains every slab in a loop and catches it.)
//! 5. **Restart**: restore `floor = 0`, reset the capacities, release the capacity lock.
//!
//! Without the membarrier command (a kernel before 5.10, or `membarrier=off`) slabs are
//! indexed by `cpu_id`, and `trim` drains another CPU's slab by moving the trimming thread onto
//! that CPU and popping it empty through its own critical sections (`drain_pinned`); the
//! idle drains of maintenance, which run inside some thread's allocation, are skipped and
//! counted instead. In fallback mode a drain simply takes the slab's lock.
//!
//! May call: `arch`, `central`, `config`, `os`, `size_class`, `sync`.

use crate::arch::{
    self, ClassBlock, ThreadBlock, ThreadState, BLOCK_SHIFT, BLOCK_SLOTS, CPU_ID_OFFSET,
    DUMMY_AREA, MM_CID_OFFSET, SLAB_SHIFT,
};
use crate::central;
use crate::config;
use crate::os;
use crate::page_heap::HEAP;
use crate::size_class::{size_of, CLASS_BATCH, CLASS_CAPACITY, NUM_CLASSES};
use crate::sync::{
    AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Mutex, Ordering,
};
use core::ptr::null_mut;

/// Bytes per slab.
pub const SLAB_BYTES: usize = 1 << SLAB_SHIFT;

/// The slab-wide words, in block 0 of each slab (class 0 is no class). The offsets are those the
/// untyped layout had (`offset_of!` checks below), so no field moved between cache lines.
#[repr(C)]
struct SlabHeader {
    /// [`SLAB_UNTOUCHED`], [`SLAB_INITIALISING`] or [`SLAB_READY`]; a slab is used only when
    /// ready.
    state: AtomicU32,
    /// The fallback lock (fallback mode's slab lock, see `slab_lock`).
    lock: AtomicU32,
    /// Unused.
    _reserved: [u32; 248],
    /// The slab's activity signature at the previous maintenance tick (see `signature`).
    signature: AtomicU32,
    /// The capacity lock: held while capacities change (growth, stealing, a drain's
    /// stop-and-restore), so that no growth can un-stop a slab a drain has stopped.
    cap_lock: AtomicU32,
    /// Acquisitions of the fallback lock (guarded by it).
    fallback_ops: AtomicU32,
    /// The class where the next capacity steal starts probing.
    steal_cursor: AtomicU32,
    /// Bytes the objects of the slab may occupy when every stack is at its capacity: the sum
    /// of `cap[c] * size(c)`, within the budget `cpu_cache_bytes`. Capacities grow on demand
    /// (a push that finds its stack full) while this stays within the budget.
    cap_bytes: AtomicU32,
    /// Consecutive maintenance ticks the signature stayed the same.
    idle_ticks: AtomicU32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<SlabHeader>() == size_of::<ClassBlock>());
    assert!(offset_of!(SlabHeader, state) == 0 && offset_of!(SlabHeader, lock) == 4);
    assert!(offset_of!(SlabHeader, signature) == 1000);
    assert!(offset_of!(SlabHeader, cap_lock) == 1004);
    assert!(offset_of!(SlabHeader, fallback_ops) == 1008);
    assert!(offset_of!(SlabHeader, steal_cursor) == 1012);
    assert!(offset_of!(SlabHeader, cap_bytes) == 1016);
    assert!(offset_of!(SlabHeader, idle_ticks) == 1020);
    assert!(NUM_CLASSES << BLOCK_SHIFT <= SLAB_BYTES);
    let mut c = 1;
    while c < NUM_CLASSES {
        assert!(
            CLASS_CAPACITY[c] as usize <= BLOCK_SLOTS,
            "slots overflow the block"
        );
        c += 1;
    }
};

/// Upper bound on slabs. Linux's default `NR_CPUS` on x86_64 is 8192; 4096 covers every
/// machine that boots with a sane `possible` mask, and a process on a larger one does not use
/// per-CPU caches at all (ids beyond the slabs could never be indexed safely).
pub const MAX_SLABS: usize = 4096;

/// Offset of class `c`'s block inside a slab.
#[inline(always)]
const fn block_offset(c: usize) -> usize {
    c << BLOCK_SHIFT
}

/// How the per-CPU layer reaches its slabs; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RseqMode {
    /// Nothing allocated yet.
    Uninitialized = 0,
    /// Using glibc's registered rseq area.
    Glibc = 1,
    /// Using our own registered rseq area.
    Own = 2,
    /// rseq off or unavailable: slabs under per-slab locks.
    Fallback = 3,
}

/// What the fast path reads, in one cache line.
#[repr(C, align(64))]
struct Globals {
    slabs: AtomicUsize,
    field: AtomicUsize,
    nslabs: AtomicUsize,
    mode: AtomicU8,
    membarrier: AtomicBool,
    key: AtomicU32,
}

static G: Globals = Globals {
    slabs: AtomicUsize::new(0),
    field: AtomicUsize::new(CPU_ID_OFFSET),
    nslabs: AtomicUsize::new(0),
    mode: AtomicU8::new(0),
    membarrier: AtomicBool::new(false),
    key: AtomicU32::new(0),
};

static INIT: Mutex<()> = Mutex::new(());
static DRAIN: Mutex<()> = Mutex::new(());

/// Drains skipped because the kernel lacks the rseq membarrier (reported in statistics).
pub static DRAINS_SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// The mode chosen for this process.
pub fn mode() -> RseqMode {
    match G.mode.load(Ordering::Acquire) {
        1 => RseqMode::Glibc,
        2 => RseqMode::Own,
        3 => RseqMode::Fallback,
        _ => RseqMode::Uninitialized,
    }
}

/// Whether slabs index by `mm_cid` (true) or by `cpu_id`.
pub fn uses_mm_cid() -> bool {
    G.field.load(Ordering::Relaxed) == MM_CID_OFFSET
}

/// Number of slabs (possible CPU ids).
pub fn slab_count() -> usize {
    G.nslabs.load(Ordering::Relaxed)
}

/// Pops a cached object of class `c`; null when the cache is empty, rseq is off, or the thread
/// is not set up yet (all handled by [`alloc_slow`]).
#[inline(always)]
pub fn pop(c: usize) -> *mut u8 {
    // SAFETY: before set-up the thread's area is DUMMY_AREA (cpu id -1) and the slabs are never
    // touched; set-up (`init_thread`) stores `slabs`, which maps a slab for every id the kernel
    // can report, whose headers are zero or initialised, and `id` before the area.
    unsafe { arch::percpu_pop(block_offset(c)) }
}

/// Pushes a free object of class `c`; false when full, rseq is off or the thread is not set up.
#[inline(always)]
pub fn push(c: usize, obj: *mut u8) -> bool {
    // SAFETY: as in `pop`.
    unsafe { arch::percpu_push(block_offset(c), obj) }
}

/// A view of one slab.
#[derive(Clone, Copy)]
struct Slab(usize);

/// `Slab::state` values.
const SLAB_UNTOUCHED: u32 = 0;
const SLAB_INITIALISING: u32 = 1;
const SLAB_READY: u32 = 2;

/// The slabs that are ready (initialised), with their indices.
fn ready_slabs() -> impl Iterator<Item = (usize, Slab)> {
    (0..G.nslabs.load(Ordering::Relaxed))
        .map(|i| (i, Slab::of(i)))
        .filter(|(_, s)| s.is_ready())
}

impl Slab {
    fn is_ready(&self) -> bool {
        self.state().load(Ordering::Acquire) == SLAB_READY
    }
    fn of(i: usize) -> Slab {
        Slab(G.slabs.load(Ordering::Relaxed) + (i << SLAB_SHIFT))
    }
    /// The slab-wide words.
    fn header(&self) -> &SlabHeader {
        // SAFETY: block 0 of a mapped slab (4 KiB-aligned, zero or initialised); its words are
        // only ever accessed atomically, and the rseq sections never touch block 0.
        unsafe { &*(self.0 as *const SlabHeader) }
    }
    fn state(&self) -> &AtomicU32 {
        &self.header().state
    }
    fn lock(&self) -> &AtomicU32 {
        &self.header().lock
    }
    /// Class `c`'s block (`1 <= c < NUM_CLASSES`).
    fn class(&self, c: usize) -> &ClassBlock {
        debug_assert!(c > 0 && c < NUM_CLASSES);
        // SAFETY: class c's block lies inside the mapped slab (NUM_CLASSES blocks fit, checked
        // at compile time); it is only accessed atomically here and by the rseq sections.
        unsafe { &*((self.0 + block_offset(c)) as *const ClassBlock) }
    }
    fn count(&self, c: usize) -> &AtomicU16 {
        &self.class(c).count
    }
    fn cap(&self, c: usize) -> &AtomicU16 {
        &self.class(c).cap
    }
    fn floor(&self, c: usize) -> &AtomicU16 {
        &self.class(c).floor
    }
    fn slot(&self, c: usize, i: usize) -> &AtomicUsize {
        &self.class(c).slots[i]
    }
}

/// The capacity a class starts with in a fresh slab: about 8 KiB worth of objects (at least
/// two, at most a batch), so a class a program touches once holds little; demand doubles it.
fn initial_cap(c: usize) -> u16 {
    ((8 << 10) / size_of(c))
        .clamp(2, CLASS_BATCH[c] as usize)
        .min(CLASS_CAPACITY[c] as usize) as u16
}

/// Makes slab `i` ready (once); false while another thread is initialising it.
fn ensure_slab(i: usize) -> bool {
    let slab = Slab::of(i);
    if slab.is_ready() {
        return true;
    }
    match slab.state().compare_exchange(
        SLAB_UNTOUCHED,
        SLAB_INITIALISING,
        Ordering::Acquire,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            reset_caps(slab);
            slab.state().store(SLAB_READY, Ordering::Release);
            true
        }
        Err(s) => s == SLAB_READY,
    }
}

/// Gives every class of `slab` its initial capacity, within the byte budget.
fn reset_caps(slab: Slab) {
    let budget = config::get().cpu_cache_bytes as usize;
    let mut bytes = 0;
    for c in 1..NUM_CLASSES {
        let mut cap = initial_cap(c);
        if bytes + cap as usize * size_of(c) > budget {
            cap = 0;
        }
        bytes += cap as usize * size_of(c);
        slab.cap(c).store(cap, Ordering::Release);
    }
    slab.header()
        .cap_bytes
        .store(bytes as u32, Ordering::Relaxed);
}

/// Classes probed per steal.
const STEAL_PROBES: usize = 8;

fn cap_try_lock(slab: Slab) -> bool {
    slab.header()
        .cap_lock
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
}

fn cap_lock(slab: Slab) {
    while !cap_try_lock(slab) {
        core::hint::spin_loop();
    }
}

fn cap_unlock(slab: Slab) {
    slab.header().cap_lock.store(0, Ordering::Release);
}

/// Doubles the capacity of class `c` in `slab` (up to its maximum): within the slab's byte
/// budget if it allows, else by taking unused capacity (capacity above the current count) from the class
/// that has the most, so capacity moves to the classes in demand.
///
/// Capacity may change at any time: the slot region is sized for the maximum, a section that
/// read the old value acts on a bound that is still within it, and a lowered capacity only
/// makes pushes fail until pops bring the count under it. Changes happen under the slab's
/// capacity lock, which a drain holds from its stop to its restore.
///
/// Only an overflow (`may_steal`) takes capacity from other classes: a class that keeps
/// running empty grows within the budget only, so two classes alternating cannot steal from
/// each other on every refill.
fn grow_cap(slab: Slab, c: usize, may_steal: bool) -> bool {
    if slab.cap(c).load(Ordering::Relaxed) >= CLASS_CAPACITY[c] {
        return false; // at its maximum: no lock needed to know
    }
    if !cap_try_lock(slab) {
        return false; // a drain or another grower is at work: try again on a later overflow
    }
    let grown = grow_cap_locked(slab, c, may_steal);
    cap_unlock(slab);
    grown
}

fn grow_cap_locked(slab: Slab, c: usize, may_steal: bool) -> bool {
    let cap = slab.cap(c).load(Ordering::Relaxed);
    let max = CLASS_CAPACITY[c];
    if cap >= max || slab.floor(c).load(Ordering::Relaxed) == u16::MAX {
        return false; // at its maximum, or stopped by a drain
    }
    let add = cap.max(initial_cap(c)).min(max - cap);
    let add_bytes = add as usize * size_of(c);
    let budget = config::get().cpu_cache_bytes as usize;
    let total = &slab.header().cap_bytes;
    let mut bytes = total.load(Ordering::Relaxed) as usize;
    if bytes + add_bytes > budget {
        if !may_steal {
            return false;
        }
        // Steal from a class with enough unused capacity: probe a few classes from a cursor
        // that moves on each time, so an overflow costs a handful of loads, not a scan.
        let spare = |v: usize| {
            let cap = slab.cap(v).load(Ordering::Relaxed) as usize;
            cap.saturating_sub(slab.count(v).load(Ordering::Relaxed) as usize) * size_of(v)
        };
        let cursor = &slab.header().steal_cursor;
        let start = cursor.load(Ordering::Relaxed) as usize;
        let victim = (0..STEAL_PROBES)
            .map(|k| 1 + (start + k) % (NUM_CLASSES - 1))
            .find(|&v| v != c && spare(v) >= add_bytes);
        cursor.store(
            ((start + STEAL_PROBES) % (NUM_CLASSES - 1)) as u32,
            Ordering::Relaxed,
        );
        let Some(v) = victim else { return false };
        let take = add_bytes.div_ceil(size_of(v)) as u16;
        slab.cap(v).fetch_sub(take, Ordering::Release);
        bytes -= take as usize * size_of(v);
    }
    total.store((bytes + add_bytes) as u32, Ordering::Relaxed);
    slab.cap(c).fetch_add(add, Ordering::Release);
    true
}

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
    // MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, unless told not to (`membarrier=off`).
    let membarrier = opts.rseq
        && opts.membarrier
        // SAFETY: a registration command with no memory arguments.
        && unsafe { libc::syscall(libc::SYS_membarrier, 1 << 8, 0, 0) } == 0;
    // Without the membarrier, other CPUs' caches can only be drained by running on their CPU
    // (`drain_pinned`), which needs slabs indexed by CPU: `mm_cid` only with the membarrier.
    // (Kernels with `mm_cid`, 6.3 and later, all have the membarrier command, 5.10 and later.)
    let feature_size = os::auxval(27); // AThreadState::Rseq_FEATURE_SIZE
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
                // SAFETY: registered just now; undone right away, the thread set-up registers again.
                unsafe { arch::unregister(&raw mut (*block).own) };
                RseqMode::Own
            }
            Err(_) => RseqMode::Fallback,
        }
    };
    if mode == RseqMode::Own || (mode == RseqMode::Fallback && G.nslabs.load(Ordering::Relaxed) > 0)
    {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: pthread_key_create writes the key; `thread_exit` is a valid destructor.
        if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
            G.key.store(key + 1, Ordering::Relaxed);
        }
    }
    G.membarrier
        .store(membarrier && mode != RseqMode::Fallback, Ordering::Relaxed);
    G.mode.store(mode as u8, Ordering::Release);
}

/// Thread-exit destructor (own and fallback modes): in own mode, unregister our area before
/// the thread's TLS goes away; in fallback mode, hand the magazine back. Either way the
/// thread's remaining operations (later destructors) go straight to the central lists.
extern "C" fn thread_exit(_: *mut libc::c_void) {
    let b = arch::thread_block();
    // SAFETY: `b` is this thread's block; the key was set by `init_thread` for a thread that
    // registered `own` (own mode) or runs locked (fallback mode).
    unsafe {
        let was = (*b).state;
        (*b).state = ThreadState::Bypass;
        if was == ThreadState::Locked {
            flush_own_magazine();
            drop_magazine(b);
        } else {
            (*b).area = &DUMMY_AREA;
            arch::unregister(&raw mut (*b).own);
        }
    }
}

/// Ties `thread_exit` to the calling thread's exit.
///
/// # Safety
/// Called once per thread, from its set-up, with no allocator lock held.
unsafe fn arm_thread_exit() {
    let key = G.key.load(Ordering::Relaxed);
    if key != 0 {
        // May allocate for keys ≥ 32; no lock is held here, so that is safe.
        let _nested = crate::guard::allow_nested();
        // SAFETY: a key created by `init_process`; any non-null value runs the destructor.
        unsafe { libc::pthread_setspecific(key - 1, core::ptr::dangling::<libc::c_void>()) };
    }
}

/// Sets up the calling thread; returns its state.
///
/// Re-entrant: anything set-up calls may allocate (`pthread_setspecific` for a key past the
/// first 32, whatever a seccomp filter or valgrind makes of a system call), so the thread is
/// in bypass (central lists, nothing else to set up) until its final state is stored, and a
/// nested allocation neither recurses into set-up nor waits for the process's set-up lock.
#[cold]
fn init_thread(b: *mut ThreadBlock) -> ThreadState {
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
                    ThreadState::Rseq
                }
                _ => ThreadState::Bypass,
            },
            RseqMode::Own => match arch::register(&raw mut (*b).own) {
                Ok(()) => {
                    arm_thread_exit();
                    use_area(b, &raw const (*b).own);
                    ThreadState::Rseq
                }
                Err(_) => ThreadState::Bypass,
            },
            RseqMode::Fallback if G.nslabs.load(Ordering::Relaxed) > 0 => {
                arm_thread_exit();
                (*b).magazine = new_magazine();
                ThreadState::Locked
            }
            _ => ThreadState::Bypass,
        };
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

/// The calling thread's state, setting it up first if needed.
#[inline]
fn thread_state() -> ThreadState {
    let b = arch::thread_block();
    // SAFETY: the block is the calling thread's own.
    let s = unsafe { (*b).state };
    if s == ThreadState::New {
        init_thread(b)
    } else {
        s
    }
}

/// The slab id the thread runs on now, as the rseq area reports it (a hint outside a section).
fn current_rseq_id() -> usize {
    let b = arch::thread_block();
    // SAFETY: in the `Rseq` state `area` is a registered area; reading the kernel-written field is
    // a plain load. Clamp defensively.
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
            maybe_tick();
            let id = current_rseq_id();
            ensure_slab(id);
            let p = pop(c);
            if !p.is_null() {
                return p;
            }
            let slab = Slab::of(id);
            grow_cap(slab, c, false);
            refill(c, slab, push)
        }
        ThreadState::Locked => alloc_locked(c),
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

/// Takes a batch from the central list (no more than the slab has room for), returns one
/// object and caches the rest with `put`; what does not fit goes back.
fn refill(c: usize, slab: Slab, put: impl Fn(usize, *mut u8) -> bool) -> *mut u8 {
    let mut buf = [null_mut(); 32];
    let room = slab
        .cap(c)
        .load(Ordering::Relaxed)
        .saturating_sub(slab.count(c).load(Ordering::Relaxed));
    let want = (CLASS_BATCH[c] as usize).min(room as usize + 1);
    let n = central::alloc_batch(c, &mut buf[..want]);
    if n == 0 {
        return null_mut();
    }
    let mut i = 1;
    while i < n && put(c, buf[i]) {
        i += 1;
    }
    if i < n {
        // SAFETY: these objects came from `alloc_batch` and were never handed out.
        unsafe { central::free_batch(c, &buf[i..n]) };
    }
    buf[0]
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
            maybe_tick();
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
            let mut n = 1;
            let take = overflow_take(slab, c);
            while n < take {
                let p = pop(c);
                if p.is_null() {
                    break;
                }
                buf[n] = p;
                n += 1;
            }
            // SAFETY: all are free objects of class `c` now owned by us.
            unsafe { central::free_batch(c, &buf[..n]) };
        }
        // SAFETY: forwarded contract.
        ThreadState::Locked => unsafe { free_locked(c, obj) },
        // SAFETY: forwarded contract.
        _ => unsafe { central::free_batch(c, &[obj]) },
    }
}

/// How many objects an overflow moves out (including the one being freed): half the stack,
/// at least one, at most a batch.
fn overflow_take(slab: Slab, c: usize) -> usize {
    let count = slab.count(c).load(Ordering::Relaxed) as usize;
    (count / 2 + 1).min(CLASS_BATCH[c] as usize)
}

/// Operations between two reads of the CPU number in fallback mode.
const CPU_HINT_OPS: u32 = 64;

/// The slab a fallback-mode thread uses: the CPU it ran on when it last asked (re-read every
/// [`CPU_HINT_OPS`] operations, `rdpid` costing more than the lock). Any slab is correct under
/// its lock; the hint only keeps a thread on its own CPU's slab most of the time.
#[inline]
fn locked_slab() -> Slab {
    let b = arch::thread_block();
    // SAFETY: the calling thread's own block; only this thread touches these fields.
    unsafe {
        if (*b).hint_left == 0 {
            let n = G.nslabs.load(Ordering::Relaxed);
            let mut i = arch::current_cpu();
            if i >= n {
                i %= n;
            }
            ensure_slab(i);
            (*b).cpu_hint = i as u32;
            (*b).hint_left = CPU_HINT_OPS;
        }
        (*b).hint_left -= 1;
        Slab::of((*b).cpu_hint as usize)
    }
}

/// Takes a slab's fallback lock: a spin lock with one atomic instruction to take and a plain
/// store to release, since it is held for a few nanoseconds; a waiter whose holder was
/// preempted yields its CPU. Counts the operation while holding it.
#[inline]
fn slab_lock(slab: Slab) {
    let w = slab.lock();
    if w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        slab_lock_contended(w);
    }
    let ops = &slab.header().fallback_ops;
    ops.store(
        ops.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

#[cold]
fn slab_lock_contended(w: &AtomicU32) {
    let mut spins = 0u32;
    loop {
        if w.load(Ordering::Relaxed) == 0
            && w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return;
        }
        spins += 1;
        if spins < 64 {
            core::hint::spin_loop();
        } else {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
}

#[inline]
fn slab_unlock(slab: Slab) {
    slab.lock().store(0, Ordering::Release);
}

/// Slab-lock acquisitions of the locked fallback path so far (sum over slabs; a snapshot).
pub fn fallback_ops() -> usize {
    ready_slabs()
        .map(|(_, s)| s.header().fallback_ops.load(Ordering::Relaxed) as usize)
        .sum()
}

fn alloc_locked(c: usize) -> *mut u8 {
    let p = alloc_from_magazine(c);
    if !p.is_null() {
        return p;
    }
    let mag = magazine(c);
    let slab = locked_slab();
    slab_lock(slab);
    let n = slab.count(c).load(Ordering::Relaxed) as usize;
    if n > 0 {
        // One object for the caller and, for magazine classes, up to half a magazine more,
        // so the next allocations need no lock.
        let more = mag.as_ref().map_or(0, |_| (n - 1).min(MAG_SLOTS / 2));
        let obj = slab.slot(c, n - 1).load(Ordering::Relaxed) as *mut u8;
        if let Some(m) = mag {
            for k in 0..more {
                m.slots[k] = slab.slot(c, n - 2 - k).load(Ordering::Relaxed) as *mut u8;
            }
            m.count = more as u8;
        }
        slab.count(c)
            .store((n - 1 - more) as u16, Ordering::Relaxed);
        slab_unlock(slab);
        return obj;
    }
    slab_unlock(slab);
    maybe_tick();
    grow_cap(slab, c, false);
    refill(c, slab, |c, obj| locked_push(slab, c, obj))
}

/// # Safety
/// As for [`free_slow`].
unsafe fn free_locked(c: usize, obj: *mut u8) {
    // SAFETY: forwarded contract.
    if unsafe { free_to_magazine(c, obj) } {
        return;
    }
    if let Some(m) = magazine(c) {
        // Full: the older half goes to the slab (or past it, to the central list) in one go.
        let half = MAG_SLOTS / 2;
        // SAFETY: free objects of class `c` from the magazine, now handed on.
        unsafe { put_locked(c, &m.slots[..half]) };
        m.slots.copy_within(half.., 0);
        m.slots[MAG_SLOTS - half] = obj;
        m.count = (MAG_SLOTS - half + 1) as u8;
        return;
    }
    // SAFETY: forwarded contract.
    unsafe { put_locked(c, &[obj]) }
}

/// Fallback mode's quickest free: into the calling thread's magazine when it has room. False
/// (nothing done) in any other case, which [`free_slow`] handles.
///
/// # Safety
/// As for [`free_slow`].
#[inline]
pub unsafe fn free_to_magazine(c: usize, obj: *mut u8) -> bool {
    // Only a thread in the locked state has magazines (set up with it, dropped at its exit).
    match magazine(c) {
        Some(m) if (m.count as usize) < MAG_SLOTS => {
            m.slots[m.count as usize] = obj;
            m.count += 1;
            true
        }
        _ => false,
    }
}

/// Fallback mode's quickest allocation: from the calling thread's magazine; null (nothing
/// done) in any other case, which [`alloc_slow`] handles.
#[inline]
pub fn alloc_from_magazine(c: usize) -> *mut u8 {
    match magazine(c) {
        Some(m) if m.count > 0 => {
            m.count -= 1;
            m.slots[m.count as usize]
        }
        _ => null_mut(),
    }
}

/// Classes (1 up to this, exclusive) a fallback-mode thread keeps a magazine for: up to 384
/// bytes.
const MAG_CLASSES: usize = 24;
/// Objects a magazine holds per class.
const MAG_SLOTS: usize = 8;

/// One class's magazine: a tiny per-thread stack in front of the slab lock.
#[repr(C)]
struct MagClass {
    slots: [*mut u8; MAG_SLOTS],
    count: u8,
}

/// Fallback mode's per-thread magazines. Without rseq every slab operation costs a locked
/// instruction (about 20 cycles here), which alone made a malloc/free pair slower than glibc's
/// tcache; the magazine serves most small operations with plain loads and stores and takes
/// the lock once per half magazine. Bounded: at most `MAG_SLOTS` objects of each of the first
/// `MAG_CLASSES` classes (under 20 KiB) per thread, handed back at thread exit and by `trim`
/// and `stats` on the calling thread; objects in other threads' magazines count as in use in
/// statistics.
///
/// The storage is one object of the allocator's own (class [`MAG_STORAGE_CLASS`]), taken at
/// the thread's set-up straight from the central list and given back at its exit, not static
/// TLS: a library using initial-exec TLS must fit in the small static-TLS reserve that a
/// `dlopen` draws from, and 96 bytes of thread block do where 1.7 KiB more might not.
type Magazines = [MagClass; MAG_CLASSES];

/// The size class the magazine storage is allocated from.
const MAG_STORAGE_CLASS: usize = crate::size_class::class_of(core::mem::size_of::<Magazines>());

const _: () = assert!(
    crate::size_class::CLASS_SIZE[MAG_STORAGE_CLASS] as usize >= core::mem::size_of::<Magazines>()
        && core::mem::align_of::<Magazines>() <= 8
);

/// Magazine storages alive (one per thread in the locked state): allocator metadata, which
/// statistics take out of `allocated`.
static MAGAZINES_LIVE: AtomicUsize = AtomicUsize::new(0);

/// Live magazine storage, for statistics: its size class and how many objects of it.
pub fn magazine_storage() -> (usize, usize) {
    (MAG_STORAGE_CLASS, MAGAZINES_LIVE.load(Ordering::Relaxed))
}

/// A fresh, empty set of magazines from the central list; null if memory ran out (the thread
/// then works without one).
fn new_magazine() -> *mut u8 {
    let mut one = [null_mut(); 1];
    if central::alloc_batch(MAG_STORAGE_CLASS, &mut one) != 1 {
        return null_mut();
    }
    MAGAZINES_LIVE.fetch_add(1, Ordering::Relaxed);
    // SAFETY: an object of at least size_of::<Magazines>() bytes, now ours; all-zero is an
    // empty magazine (counts 0, slots null).
    unsafe { one[0].write_bytes(0, core::mem::size_of::<Magazines>()) };
    one[0]
}

/// Gives the thread's (already flushed) magazine storage back.
///
/// # Safety
/// `b` is the calling thread's block and its magazines are empty.
unsafe fn drop_magazine(b: *mut ThreadBlock) {
    // SAFETY: forwarded contract; the storage came from `new_magazine`.
    unsafe {
        let m = core::mem::replace(&mut (*b).magazine, null_mut());
        if !m.is_null() {
            crate::free_tag::set(m);
            central::free_batch(MAG_STORAGE_CLASS, &[m]);
            MAGAZINES_LIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The calling thread's magazine for class `c`, if it has magazines and `c` has one.
#[inline]
fn magazine(c: usize) -> Option<&'static mut MagClass> {
    let b = arch::thread_block();
    // SAFETY: the calling thread's own block.
    let m = unsafe { (*b).magazine };
    if c >= MAG_CLASSES || m.is_null() {
        return None;
    }
    // SAFETY: the storage is this thread's own (from `new_magazine`), large and aligned
    // enough (checked above); only this thread touches it and no two references to one
    // class's entry are live at once.
    unsafe { Some(&mut (*m.cast::<Magazines>())[c]) }
}

/// Fallback mode: hands the calling thread's magazines back to its slab (a no-op for a thread
/// without magazines: `magazine` finds none).
pub fn flush_own_magazine() {
    for c in 1..MAG_CLASSES {
        if let Some(m) = magazine(c) {
            let n = m.count as usize;
            m.count = 0;
            // SAFETY: free objects of class `c` that were the magazine's.
            unsafe { put_locked(c, &m.slots[..n]) };
        }
    }
}

/// Puts free objects of class `c` into the calling thread's slab under its lock; what does
/// not fit (after trying to grow the capacity) goes to the central list with about half the
/// stack, so the next frees find room.
///
/// # Safety
/// The objects are free objects of class `c` that nobody uses any more.
unsafe fn put_locked(c: usize, objs: &[*mut u8]) {
    if objs.is_empty() {
        return;
    }
    let slab = locked_slab();
    let mut done = locked_push_many(slab, c, objs);
    if done < objs.len() && grow_cap(slab, c, true) {
        done += locked_push_many(slab, c, &objs[done..]);
    }
    let rest = &objs[done..];
    let Some(&obj) = rest.first() else { return };
    maybe_tick();
    let mut buf = [null_mut(); 32];
    slab_lock(slab);
    let n = slab.count(c).load(Ordering::Relaxed);
    buf[0] = obj;
    let take = (overflow_take(slab, c) - 1).min(n as usize);
    for (k, b) in buf[1..=take].iter_mut().enumerate() {
        *b = slab.slot(c, n as usize - 1 - k).load(Ordering::Relaxed) as *mut u8;
    }
    slab.count(c).store(n - take as u16, Ordering::Relaxed);
    slab_unlock(slab);
    // SAFETY: all are free objects of class `c`, now ours (the forwarded contract for `rest`).
    unsafe {
        central::free_batch(c, &buf[..=take]);
        central::free_batch(c, &rest[1..]);
    }
}

/// Pushes `obj` on class `c`'s stack of `slab` under the slab lock; false when full.
fn locked_push(slab: Slab, c: usize, obj: *mut u8) -> bool {
    locked_push_many(slab, c, &[obj]) == 1
}

/// Pushes as many of `objs` as fit on class `c`'s stack of `slab`, under one hold of the slab
/// lock; returns how many (a prefix of `objs`).
fn locked_push_many(slab: Slab, c: usize, objs: &[*mut u8]) -> usize {
    slab_lock(slab);
    let n = slab.count(c).load(Ordering::Relaxed) as usize;
    let k = (slab.cap(c).load(Ordering::Relaxed) as usize)
        .saturating_sub(n)
        .min(objs.len());
    for (j, &obj) in objs[..k].iter().enumerate() {
        slab.slot(c, n + j).store(obj as usize, Ordering::Relaxed);
    }
    slab.count(c).store((n + k) as u16, Ordering::Relaxed);
    slab_unlock(slab);
    k
}

/// Moves every object cached in slab `i` to the central lists. The slab must be stopped (rseq
/// modes, after the membarrier) or locked (fallback).
fn empty_slab(slab: Slab) -> usize {
    let mut bytes = 0;
    let mut buf = [null_mut(); 64];
    for c in 1..NUM_CLASSES {
        let n = slab.count(c).load(Ordering::Acquire) as usize;
        let mut done = 0;
        while done < n {
            let k = (n - done).min(buf.len());
            for (j, b) in buf[..k].iter_mut().enumerate() {
                *b = slab.slot(c, done + j).load(Ordering::Relaxed) as *mut u8;
            }
            // SAFETY: the slab is stopped or locked, so these cached objects are ours.
            unsafe { central::free_batch(c, &buf[..k]) };
            done += k;
        }
        slab.count(c).store(0, Ordering::Release);
        bytes += n * size_of(c);
    }
    bytes
}

/// Drains what trim may take from the per-CPU caches. Returns the bytes moved.
///
/// Every ready slab: under its lock in fallback mode, by the stop-and-fence protocol (module
/// documentation) in the rseq modes.
pub fn drain_all() -> usize {
    flush_own_magazine();
    drain_where(true, |_, _| true)
}

/// Drains the slabs for which `pick(index, slab)` says so (evaluated once per ready slab).
///
/// `may_pin`: without the rseq membarrier, whether the calling thread may drain by moving
/// itself onto each picked CPU ([`drain_pinned`]); trim may, maintenance (which runs inside
/// some thread's allocation) may not, and counts the drain as skipped.
fn drain_where(may_pin: bool, mut pick: impl FnMut(usize, Slab) -> bool) -> usize {
    let nslabs = G.nslabs.load(Ordering::Relaxed);
    if nslabs == 0 {
        return 0;
    }
    let _g = DRAIN.lock();
    // Only the slabs picked (and, with rseq, stopped) here are emptied and restarted: one that
    // becomes ready meanwhile was never stopped and must not be touched.
    let mut picked = [0u64; MAX_SLABS / 64];
    let mut any = false;
    for (i, slab) in ready_slabs() {
        if pick(i, slab) {
            picked[i / 64] |= 1 << (i % 64);
            any = true;
        }
    }
    let is_picked = |i: usize| picked[i / 64] & (1 << (i % 64)) != 0;
    if !any {
        return 0;
    }
    let mut bytes = 0;
    match mode() {
        RseqMode::Fallback => {
            for i in (0..nslabs).filter(|&i| is_picked(i)) {
                let slab = Slab::of(i);
                slab_lock(slab);
                bytes += empty_slab(slab);
                slab_unlock(slab);
            }
        }
        RseqMode::Glibc | RseqMode::Own => {
            if !G.membarrier.load(Ordering::Relaxed) {
                if may_pin && !uses_mm_cid() && thread_state() == ThreadState::Rseq {
                    return drain_pinned((0..nslabs).filter(|&i| is_picked(i)));
                }
                DRAINS_SKIPPED.fetch_add(1, Ordering::Relaxed);
                return 0;
            }
            for i in (0..nslabs).filter(|&i| is_picked(i)) {
                let slab = Slab::of(i);
                cap_lock(slab);
                for c in 1..NUM_CLASSES {
                    slab.cap(c).store(0, Ordering::Relaxed);
                    slab.floor(c).store(u16::MAX, Ordering::Relaxed);
                }
            }
            // Every section that read a header before the stop commits or restarts here.
            rseq_fence();
            for i in (0..nslabs).filter(|&i| is_picked(i)) {
                bytes += empty_slab(Slab::of(i));
            }
            // And every section that read a count before `empty_slab` zeroed it, here: without
            // this second fence, a section could read the old count, then the restored
            // floor or cap below, and commit against slots that now belong to the central lists.
            rseq_fence();
            for i in (0..nslabs).filter(|&i| is_picked(i)) {
                let slab = Slab::of(i);
                for c in 1..NUM_CLASSES {
                    slab.floor(c).store(0, Ordering::Release);
                }
                // Drained caches start small again; demand grows them back.
                reset_caps(slab);
                cap_unlock(slab);
            }
        }
        RseqMode::Uninitialized => {}
    }
    bytes
}

/// Drains the slabs of `cpus` without the membarrier: the calling thread restricts itself to
/// each CPU in turn (`sched_setaffinity` returns only once the caller runs on an allowed CPU)
/// and pops that CPU's stacks empty through its own critical sections, which are exact against
/// any other thread on that CPU by construction; then its affinity is restored. Needs slabs
/// indexed by `cpu_id`. A CPU the thread may not run on (cpuset, offline) is skipped and
/// counted. Returns the bytes moved.
fn drain_pinned(cpus: impl Iterator<Item = usize>) -> usize {
    const SET: usize = core::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set.
    let mut saved: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `saved` is a writable cpu_set_t of SET bytes.
    if unsafe { libc::sched_getaffinity(0, SET, &mut saved) } != 0 {
        DRAINS_SKIPPED.fetch_add(1, Ordering::Relaxed);
        return 0;
    }
    let mut bytes = 0;
    for cpu in cpus {
        // SAFETY: as above.
        let mut one: libc::cpu_set_t = unsafe { core::mem::zeroed() };
        let pinned = cpu < SET * 8 && {
            // SAFETY: `cpu` is below the set's capacity (checked just before).
            unsafe { libc::CPU_SET(cpu, &mut one) };
            // SAFETY: a valid set of SET bytes.
            let r = unsafe { libc::sched_setaffinity(0, SET, &one) };
            r == 0
        };
        if !pinned {
            DRAINS_SKIPPED.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        bytes += drain_current();
    }
    // SAFETY: restores the mask read above.
    unsafe { libc::sched_setaffinity(0, SET, &saved) };
    bytes
}

/// Empties the slab of the CPU the thread runs on through its own critical sections (each pop
/// reads the id inside the section, so a migration midway only means popping elsewhere).
fn drain_current() -> usize {
    let mut bytes = 0;
    let mut buf = [null_mut(); 64];
    for c in 1..NUM_CLASSES {
        loop {
            let mut n = 0;
            while n < buf.len() {
                let p = pop(c);
                if p.is_null() {
                    break;
                }
                buf[n] = p;
                n += 1;
            }
            if n == 0 {
                break;
            }
            bytes += n * size_of(c);
            // SAFETY: popped from the cache: free objects of class `c`, now ours.
            unsafe { central::free_batch(c, &buf[..n]) };
        }
    }
    bytes
}

/// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`: when it returns, every critical
/// section of this process that was running (or preempted) when it was called has either
/// committed, with its stores visible to the caller, or been aborted and will restart.
fn rseq_fence() {
    // SAFETY: a command with no memory arguments (registered for in `init_process`).
    unsafe { libc::syscall(libc::SYS_membarrier, 1 << 7, 0, 0) };
}

/// A slab's contents in one number: changes whenever any stack moves (almost surely).
fn signature(slab: Slab) -> u32 {
    (1..NUM_CLASSES).fold(0u32, |h, c| {
        h.rotate_left(5) ^ slab.count(c).load(Ordering::Relaxed) as u32
    })
}

/// Ticks a slab must stay unchanged before maintenance drains it remotely.
const IDLE_TICKS: u32 = 2;

/// Drains the slabs whose stacks did not move for [`IDLE_TICKS`] maintenance ticks in a row
/// and still hold objects: the caches of idle CPUs or concurrency ids. Returns the bytes moved.
pub fn drain_idle() -> usize {
    drain_where(false, |_, slab| {
        let sig = signature(slab);
        let prev = slab.header().signature.swap(sig, Ordering::Relaxed);
        let ticks = &slab.header().idle_ticks;
        if prev != sig {
            ticks.store(0, Ordering::Relaxed);
            return false;
        }
        let idle = ticks.fetch_add(1, Ordering::Relaxed) + 1 >= IDLE_TICKS;
        idle && (1..NUM_CLASSES).any(|c| slab.count(c).load(Ordering::Relaxed) != 0)
    })
}

/// When the next maintenance tick is due (ms of the monotonic clock).
static NEXT_TICK_MS: AtomicU64 = AtomicU64::new(0);

/// Runs [`maintenance`] if a tick is due: cheap enough for every slow path (a coarse clock
/// read and a compare).
#[inline]
pub fn maybe_tick() {
    let now = os::now_ms();
    let due = NEXT_TICK_MS.load(Ordering::Relaxed);
    if now < due {
        return;
    }
    let period = (config::get().decay_ms / 4).clamp(10, 1000);
    if NEXT_TICK_MS
        .compare_exchange(due, now + period, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
        && due != 0
    {
        maintenance(now);
    }
}

/// Gives memory back as time passes: drains idle per-CPU caches, flushes idle transfer
/// stacks, and releases free page runs that have been free for `decay_ms`. Driven from the
/// slow paths, or from the background thread when it is enabled.
pub fn maintenance(now_ms: u64) {
    drain_idle();
    central::flush_idle();
    let decay = config::get().decay_ms;
    HEAP.lock().release_free(now_ms.saturating_sub(decay));
}

/// Bytes of objects cached per slab, written into `out[i]` for each slab (up to `out.len()`);
/// returns the number of slabs. Racy by nature: a snapshot.
pub fn cached_bytes_per_slab(out: &mut [usize]) -> usize {
    let nslabs = G.nslabs.load(Ordering::Relaxed);
    for (i, o) in out.iter_mut().enumerate().take(nslabs) {
        let slab = Slab::of(i);
        *o = if slab.is_ready() {
            (1..NUM_CLASSES)
                .map(|c| slab.count(c).load(Ordering::Relaxed) as usize * size_of(c))
                .sum()
        } else {
            0
        };
    }
    nslabs
}

/// Empties the caches the calling thread uses: its magazine (fallback mode) and the slab of the
/// CPU or concurrency id it runs on now. Returns the bytes moved to the central lists.
pub fn flush_mine() -> usize {
    flush_own_magazine();
    match thread_state() {
        ThreadState::Rseq => drain_current(),
        ThreadState::Locked => {
            let mine = arch::current_cpu() % G.nslabs.load(Ordering::Relaxed).max(1);
            drain_where(true, |i, _| i == mine)
        }
        _ => 0,
    }
}

/// Objects of class `c` cached across all slabs (snapshot).
pub fn cached_objects(c: usize) -> usize {
    ready_slabs()
        .map(|(_, s)| s.count(c).load(Ordering::Relaxed) as usize)
        .sum()
}

/// Slabs that have been touched (initialised) so far.
pub fn slabs_in_use() -> usize {
    ready_slabs().count()
}

/// Fork prepare, first step: takes the set-up and drain locks and, in fallback mode, every
/// slab lock (the order the allocator nests them: these before any central or heap lock).
pub fn lock_for_fork() {
    core::mem::forget(INIT.lock());
    core::mem::forget(DRAIN.lock());
    if mode() == RseqMode::Fallback {
        for (_, slab) in ready_slabs() {
            slab_lock(slab);
        }
    }
}

/// Fork parent/child: releases what [`lock_for_fork`] took (in the child the holder is gone,
/// so the words are reset rather than handed over).
///
/// # Safety
/// Only after [`lock_for_fork`] in the same fork; `child` says which side we are on.
pub unsafe fn unlock_after_fork(child: bool) {
    if child {
        // A grower in another thread may have held a capacity lock; it does not exist here.
        for (_, slab) in ready_slabs() {
            cap_unlock(slab);
        }
    }
    if mode() == RseqMode::Fallback {
        for (_, slab) in ready_slabs() {
            if child {
                slab.lock().store(0, Ordering::Relaxed);
            } else {
                slab_unlock(slab);
            }
        }
    }
    // SAFETY: taken in `lock_for_fork` (forwarded contract).
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

/// Executable invariants of the slabs (tests and the `fuzzing` feature).
#[cfg(any(test, feature = "fuzzing"))]
pub mod check {
    use super::*;
    use crate::central::check::span_of_object;
    use crate::page_heap::check::{ensure, Broken};

    /// Checks one slab at rest (no section, drain or locked operation running on it), for
    /// every class:
    /// - running (`floor = 0`) or stopped by a drain (`cap = 0`, `floor = u16::MAX`), nothing
    ///   in between;
    /// - `count` and `cap` within the class's slot region; a running class's `count <= cap`
    ///   (which a capacity steal racing a push on the same slab may break, harmlessly: pushes
    ///   fail until pops bring the count down — so only at rest after single-threaded use);
    /// - `slots[0..count]` are distinct objects of the class: each the start of an object
    ///   already carved from a small span of that class;
    ///
    /// and unless a class is stopped, the capacity bytes in the header are `Σ cap·size`, within
    /// `cpu_cache_bytes`.
    pub(super) fn check_slab(slab: Slab) -> Result<(), Broken> {
        let mut cap_bytes = 0;
        let mut any_stopped = false;
        for (c, &max) in CLASS_CAPACITY.iter().enumerate().skip(1) {
            let at = slab.0 + block_offset(c);
            let count = slab.count(c).load(Ordering::Relaxed);
            let cap = slab.cap(c).load(Ordering::Relaxed);
            let floor = slab.floor(c).load(Ordering::Relaxed);
            let stopped = floor == u16::MAX;
            any_stopped |= stopped;
            ensure(
                floor == 0 || stopped && cap == 0,
                "a class is neither running nor stopped",
                at,
            )?;
            ensure(
                count <= max && cap <= max,
                "a count or cap beyond the slot region",
                at,
            )?;
            ensure(
                stopped || count <= cap,
                "a running class holds more than its cap",
                at,
            )?;
            cap_bytes += cap as usize * size_of(c);
            let mut objs = [0usize; 128];
            let objs = &mut objs[..count as usize];
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
        if !any_stopped {
            let recorded = slab.header().cap_bytes.load(Ordering::Relaxed) as usize;
            ensure(
                recorded == cap_bytes,
                "the capacity bytes differ from Σ cap·size",
                recorded,
            )?;
            let budget = config::get().cpu_cache_bytes as usize;
            ensure(
                cap_bytes <= budget,
                "the capacities exceed cpu_cache_bytes",
                cap_bytes,
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
    use super::check::check_slab;
    use super::*;
    use crate::size_class::class_of;
    use std::vec::Vec;

    /// Classes no other unit test uses, at most 256 B (outside the shared stack budget another
    /// test measures exactly).
    const SIZES: [usize; 4] = [32, 96, 144, 256];

    /// A slab of the test's own, outside the slab region, with its initial capacities.
    fn private_slab() -> Slab {
        let base = os::map(SLAB_BYTES, SLAB_BYTES).unwrap();
        let slab = Slab(base as usize);
        reset_caps(slab);
        slab
    }

    /// Pops up to `n` objects of class `c` under the slab lock (as the fallback path does).
    fn pop_locked(slab: Slab, c: usize, n: usize) -> Vec<*mut u8> {
        slab_lock(slab);
        let count = slab.count(c).load(Ordering::Relaxed) as usize;
        let k = n.min(count);
        let objs = (count - k..count)
            .rev()
            .map(|i| slab.slot(c, i).load(Ordering::Relaxed) as *mut u8)
            .collect();
        slab.count(c).store((count - k) as u16, Ordering::Relaxed);
        slab_unlock(slab);
        objs
    }

    fn contents(slab: Slab, c: usize) -> Vec<*mut u8> {
        (0..slab.count(c).load(Ordering::Relaxed) as usize)
            .map(|i| slab.slot(c, i).load(Ordering::Relaxed) as *mut u8)
            .collect()
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
                    reset_caps(slab);
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

    fn broken(slab: Slab) -> &'static str {
        check_slab(slab).err().map_or("nothing", |b| b.what)
    }

    /// Each corruption of a private slab is reported; undone, the slab checks clean again.
    #[test]
    fn a_corrupted_slab_fails_its_check() {
        let slab = private_slab();
        let c = class_of(SIZES[1]);
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
        let other = class_of(SIZES[0]);
        slab.slot(other, 0)
            .store(objs[2] as usize, Ordering::Relaxed);
        slab.count(other).store(1, Ordering::Relaxed);
        assert_eq!(broken(slab), "an object's page is not of its class");
        slab.count(other).store(0, Ordering::Relaxed);
        // A half-stopped class, then a whole stop (allowed: the capacity total is not checked).
        slab.floor(c).store(u16::MAX, Ordering::Relaxed);
        assert_eq!(broken(slab), "a class is neither running nor stopped");
        let cap = slab.cap(c).swap(0, Ordering::Relaxed);
        assert_eq!(check_slab(slab), Ok(()));
        slab.floor(c).store(0, Ordering::Relaxed);
        assert_eq!(broken(slab), "a running class holds more than its cap");
        slab.cap(c).store(cap, Ordering::Relaxed);
        // A capacity changed without its bytes.
        slab.cap(c).store(cap + 1, Ordering::Relaxed);
        assert_eq!(broken(slab), "the capacity bytes differ from Σ cap·size");
        slab.cap(c).store(cap, Ordering::Relaxed);

        assert_eq!(check_slab(slab), Ok(()));
        // SAFETY: objects from `alloc_batch`, never used.
        unsafe { central::free_batch(c, &pop_locked(slab, c, 4)) };
    }
}
