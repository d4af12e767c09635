//! Maintenance: giving memory back as time passes, without a thread of its own unless asked.
//!
//! Owns: the tick (when maintenance is next due), what a tick does, the idle drains of the
//! per-CPU caches (the part of maintenance this layer owns), and the optional background
//! thread that ticks when no slow path does (each tick is claimed once, whoever runs it).
//!
//! A tick drains the per-CPU caches that stayed idle, and those that held owned spans other
//! CPUs' frees left wholly free for a tick without a slow path to give them back
//! ([`drain_idle`]), then asks the central lists to flush their idle transfer stacks
//! (`central::flush_idle`) and to start a new window for their span churn counts
//! (`central::new_tick`), and the page heap to release the pages free for longer than
//! `decay_ms` (`PageHeap::release_free`): each layer decides what is idle in what it owns; this
//! file only says when.
//!
//! May call: `arch` (the thread block), `central`, `config`, `guard`, `os`, `page_heap`,
//! `size_class`, `sync`, and in this folder `drain`, `owned`, `remote`, `slab`.

use super::drain::drain_where;
use super::slab::Slab;
use crate::arch;
use crate::central;
use crate::config;
use crate::os;
use crate::page_heap::HEAP;
use crate::size_class::NUM_CLASSES;
use crate::sync::{
    AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, CachePadded, Mutex, Ordering,
};
use core::ffi::c_void;

/// When the next maintenance tick is due (ms of the monotonic clock).
static NEXT_TICK_MS: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// Of the maintenance ticks run so far (`central::ticks`: [`maintenance`] starts each one
/// there), those the background thread ran.
static BACKGROUND_TICKS: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// Maintenance ticks run since the process started (a `fork` child's include its parent's
/// before the fork), and of those the ones the background thread ran
/// (`background_thread=on`; the slow paths ran the others): `stats`' figures. The second
/// never exceeds the first: the thread counts its tick (release) after `maintenance` counted
/// it (`central::new_tick`), and this reads the thread's count first (acquire).
pub fn tick_counts() -> (u64, u64) {
    let background = BACKGROUND_TICKS.load(Ordering::Acquire);
    (central::ticks(), background)
}

/// Milliseconds between ticks: a quarter of the decay time, within 10 ms to 1 s.
fn tick_period_ms() -> u64 {
    (config::get().decay_ms / 4).clamp(10, 1000)
}

/// Runs [`maintenance`] if a tick is due: cheap enough for every slow path (a coarse clock
/// read and a compare).
#[inline]
pub fn maybe_tick() {
    let now = os::now_ms();
    if !set_aside_for_vfork() && claim_tick(&NEXT_TICK_MS, now, tick_period_ms) {
        maintenance(now);
    }
}

/// Whether the caller runs the tick due by `now` (ms) on the schedule `next` (when the next
/// tick is due; 0 before the first call, which only starts the schedule): true for one caller
/// per due tick, however many slow paths and the background thread ask, and the next one is
/// then due `period()` ms later. `period` is called only by a caller that may win.
#[inline]
fn claim_tick(next: &AtomicU64, now: u64, period: impl FnOnce() -> u64) -> bool {
    let due = next.load(Ordering::Relaxed);
    if now < due {
        return false;
    }
    next.compare_exchange(due, now + period(), Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
        && due != 0
}

/// Gives memory back as time passes: drains idle per-CPU caches, flushes idle transfer
/// stacks, starts the central lists' next churn window, and releases free page runs that have
/// been free for `decay_ms`. Driven from the slow paths, and from the background thread when
/// it is enabled (one of them per tick, [`claim_tick`]).
pub fn maintenance(now_ms: u64) {
    drain_idle();
    // Objects sent home that their slab has not taken within a tick go to the central lists.
    super::remote::flush_all();
    central::flush_idle();
    central::new_tick();
    let decay = config::get().decay_ms;
    HEAP.lock().release_free(now_ms.saturating_sub(decay));
}

/// Whether the calling thread's block is set aside for a `vfork` child (`fork::vfork_enter`):
/// such a child, another process on its parent's memory, must neither start the background
/// thread (a `pthread_create` there would give the child a thread) nor run a tick's drains.
fn set_aside_for_vfork() -> bool {
    // SAFETY: the calling thread's own block, always valid.
    unsafe { (*arch::thread_block()).vfork_depth != 0 }
}

/// A slab's contents in one number: changes whenever any stack moves (almost surely).
fn signature(slab: Slab) -> u32 {
    (1..NUM_CLASSES).fold(0u32, |h, c| h.rotate_left(5) ^ slab.count(c) as u32)
        ^ super::owned::signature(slab)
}

/// Ticks a slab must stay unchanged before maintenance drains it remotely.
const IDLE_TICKS: u32 = 2;

/// Drains the slabs whose stacks did not move for [`IDLE_TICKS`] maintenance ticks in a row
/// and still hold objects: the caches of idle CPUs or concurrency ids; and those that may have
/// held owned spans others' frees left wholly free for a tick without a slow path to give them
/// back (`owned::freed_unswept`). Returns the bytes moved.
pub fn drain_idle() -> usize {
    drain_where(
        || false,
        |i, slab| {
            let unswept = super::owned::freed_unswept(i, slab);
            let sig = signature(slab);
            let prev = slab.header().signature.swap(sig, Ordering::Relaxed);
            let ticks = &slab.header().idle_ticks;
            if prev != sig {
                ticks.store(0, Ordering::Relaxed);
                return unswept;
            }
            let idle = ticks.fetch_add(1, Ordering::Relaxed) + 1 >= IDLE_TICKS;
            unswept
                || idle
                    && ((1..NUM_CLASSES).any(|c| slab.count(c) != 0)
                        || super::owned::owns_any(slab))
        },
    )
}

/// Where the background thread (`background_thread=on`) is in its life: [`OFF`] (the option is
/// off, or the thread could not be created), [`WANTED`] (the program has had one thread so
/// far), [`DUE`] (a second thread was set up: the next allocation slow path starts ours),
/// [`RUNNING`].
static BACKGROUND: AtomicU8 = AtomicU8::new(OFF);
const OFF: u8 = 0;
const WANTED: u8 = 1;
const DUE: u8 = 2;
const RUNNING: u8 = 3;

/// The thread block (its address) of the thread the process began with, or of the one that
/// forked it in a fork child: a thread set up with another block is a second thread.
static FIRST_THREAD: AtomicUsize = AtomicUsize::new(0);

/// The thread-specific key (plus one; 0 for none) whose destructor [`thread_ended`] runs when a
/// thread ends through glibc (for the first thread, by `pthread_exit`): armed for the first
/// thread and for every thread set up while the option is on ([`note_thread_set_up`]).
static EXIT_KEY: AtomicU32 = AtomicU32::new(0);

/// Whether the first thread (the process's main thread) may have ended while the process goes
/// on: set by [`thread_ended`], and from the start if the key could not be made. Only
/// then does the background thread look whether it is the last ([`program_ended`]; without
/// glibc's count of threads that look reads `/proc`, which a sandboxed program may forbid).
static FIRST_ENDED: AtomicBool = AtomicBool::new(false);

/// The signal mask of the program thread that ended last since the first one did
/// ([`thread_ended`]; the first one's own): the background thread takes it before it ends the
/// process, so that the program's `atexit` handlers and destructors run with the mask of the
/// thread glibc would have run them on, its last, not with ours, which blocks every signal (a
/// handler's `raise` or `kill` of the process must act: found by a breaker run, session 72;
/// the last thread's rather than the main thread's: found by review). A thread never set up
/// (it never called the allocator) leaves no mask.
static EXIT_MASK: Mutex<Option<os::SignalMask>> = Mutex::new(None);

/// [`EXIT_KEY`]'s destructor: glibc runs it when a thread that armed the key ends (the main
/// thread: when it calls `pthread_exit` or is cancelled, not when the process exits), before
/// it takes the thread off its count of threads.
extern "C" fn thread_ended(_: *mut c_void) {
    let first = arch::thread_block() as usize == FIRST_THREAD.load(Ordering::Relaxed);
    if first || FIRST_ENDED.load(Ordering::Acquire) {
        *EXIT_MASK.lock() = Some(os::SignalMask::current());
    }
    if first {
        FIRST_ENDED.store(true, Ordering::Release);
    }
}

/// Arms [`EXIT_KEY`] for the calling thread; false if there is no key or the C library
/// refused. Arming a key past the first 32 allocates: call it with no allocator lock held and
/// where that allocation cannot start the background thread (the first thread's making, or a
/// thread's set-up, which runs in bypass).
fn arm_exit_key() -> bool {
    let key = EXIT_KEY.load(Ordering::Relaxed);
    key != 0 && os::thread_key_arm(key - 1)
}

/// Asks for the background thread (`background_thread=on`), from the start-up constructor and
/// in a fork child: it starts once the program has a second thread ([`note_thread_set_up`],
/// [`maybe_start_background`]). The calling thread becomes the first (a thread with another
/// block is a second one, and this one's `pthread_exit` sets [`FIRST_ENDED`]). Call it with
/// no allocator lock held: arming a key past the first 32 allocates, which must find this
/// thread first already, so that it cannot start ours.
///
/// Why not at once: our thread would make every program multi-threaded, and a program with one
/// thread may rely on being one (session 71's breaker found all three): a `fork` from a signal
/// handler that interrupted `malloc` deadlocks once the process has had a second thread (the
/// fork handlers then take the allocator's locks, as glibc's own malloc does), the kernel
/// refuses `unshare(CLONE_NEWUSER)` to a multi-threaded process, and a program whose main
/// thread ends with `pthread_exit` would never end while our thread runs (see
/// [`start_background`]'s loop). A program with one thread gets its ticks from its slow paths,
/// as without the option.
pub fn want_background_thread() {
    FIRST_THREAD.store(arch::thread_block() as usize, Ordering::Relaxed);
    FIRST_ENDED.store(false, Ordering::Relaxed);
    BACKGROUND.store(WANTED, Ordering::Release);
    if EXIT_KEY.load(Ordering::Relaxed) == 0 {
        let key = os::thread_key_create(thread_ended).map_or(0, |k| k + 1);
        EXIT_KEY.store(key, Ordering::Relaxed);
    }
    if !arm_exit_key() {
        FIRST_ENDED.store(true, Ordering::Relaxed);
    }
}

/// Thread set-up's word to maintenance, while the thread of block `b` (the caller) is still in
/// bypass: it is being set up. When it is not the first thread, the program has a second
/// thread, and the background thread falls due. With the option on, the thread arms
/// [`EXIT_KEY`]: it may be the program's last ([`EXIT_MASK`]).
#[inline]
pub(super) fn note_thread_set_up(b: *mut arch::ThreadBlock) {
    let state = BACKGROUND.load(Ordering::Relaxed);
    if state == OFF {
        return;
    }
    if state == WANTED {
        due_if_second(b);
    }
    arm_exit_key();
}

/// Makes the background thread due if it is wanted and `b` is not the first thread's block.
fn due_if_second(b: *mut arch::ThreadBlock) {
    if b as usize != FIRST_THREAD.load(Ordering::Relaxed) {
        let _ = BACKGROUND.compare_exchange(WANTED, DUE, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Starts the background thread if it is due, or if it is wanted and the caller is not the
/// first thread (a thread that allocates only large blocks is never set up, so only this
/// tells): one relaxed load unless the option is on.
///
/// Call it only from allocation slow paths, outside every allocator lock and outside a
/// thread's set-up: `pthread_create` allocates, and it takes glibc's stack-cache lock, which
/// glibc holds around some of its `free` calls (a thread's TLS, `nptl-stack.c`) but around no
/// allocation (glibc 2.36), so a `free` must never start it; nor may an allocation nested in
/// a `free` (`setup::give_outbox` runs its nested allocation in bypass for that). It takes no
/// other glibc lock that glibc holds around an allocation: `os::spawn` passes its own
/// attributes, so the defaults' lock is not taken, and the TLS lock is recursive.
#[inline]
pub fn maybe_start_background() {
    match BACKGROUND.load(Ordering::Relaxed) {
        OFF | RUNNING => {}
        _ => start_if_second(),
    }
}

/// [`maybe_start_background`]'s cold part.
#[cold]
fn start_if_second() {
    if set_aside_for_vfork() {
        return;
    }
    due_if_second(arch::thread_block());
    start_background();
}

/// The fork child's part, once the allocator's locks are free: the background thread is not
/// copied into the child, and the child has one thread, like a new program, whose main thread
/// is the one that forked; it gets ours once it has a second. (glibc keeps
/// `__libc_single_threaded` false in the child of a multi-threaded parent, so the threads set
/// up are what tells.)
pub(super) fn background_after_fork_in_child() {
    if BACKGROUND.load(Ordering::Relaxed) != OFF {
        want_background_thread();
    }
}

/// Starts the maintenance thread: it claims each tick as it falls due ([`claim_tick`], as the
/// slow paths do, so one of them runs each tick) and runs [`maintenance`], so an idle program
/// gives memory back without making another allocation.
///
/// Once the program's threads have all ended but ours (its main thread ended with
/// `pthread_exit` first, and a zombie until the process ends), the thread ends the process
/// with `exit(0)`, as glibc's last thread would have: glibc counts our thread among the
/// program's, so the last of those no longer calls `exit`. It looks at each wake once the main
/// thread has ended ([`FIRST_ENDED`], [`program_ended`]), so such a process ends within a tick
/// period (at most a second) after its last thread. (A main thread that ended by a bare
/// `SYS_exit` runs no destructor, and a thread that did is still in glibc's count: such a
/// process keeps running while ours does.)
fn start_background() {
    extern "C" fn run(_: *mut c_void) -> *mut c_void {
        loop {
            let now = os::now_ms();
            if claim_tick(&NEXT_TICK_MS, now, tick_period_ms) {
                let _g = crate::guard::enter("background maintenance");
                maintenance(now);
                BACKGROUND_TICKS.fetch_add(1, Ordering::Release);
            }
            // Until the next tick is due (a slow path may have moved it), read afresh each time
            // (`decay_ms` may change at run time), and a little past it: the coarse clock
            // moves a kernel tick at a time, so a thread woken on time may not yet read the
            // tick as due, and then sleeps again briefly (never a whole period).
            let period = tick_period_ms();
            let wait = NEXT_TICK_MS
                .load(Ordering::Relaxed)
                .saturating_sub(os::now_ms())
                .clamp(1, period);
            os::sleep_ms(wait + COARSE_CLOCK_SLACK_MS);
            if FIRST_ENDED.load(Ordering::Acquire) {
                if let Some(status) = program_ended() {
                    if let Some(mask) = *EXIT_MASK.lock() {
                        mask.set();
                    }
                    os::exit_process(status);
                }
            }
        }
    }
    if BACKGROUND
        .compare_exchange(DUE, RUNNING, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    // `pthread_create` allocates (the new thread's TLS), here inside an allocation.
    let _nested = crate::guard::allow_nested();
    if !os::spawn(run) {
        BACKGROUND.store(OFF, Ordering::Relaxed);
    }
}

/// Once the first thread has ended ([`FIRST_ENDED`]): whether every thread of the program has
/// ended but ours, and if so the status to end the process with. glibc's own test where it
/// exports its count of threads (`os::glibc_thread_count`: ours alone left, where glibc's last
/// thread would have found none and called `exit(0)`); else the kernel's, from `/proc`
/// (`os::main_thread_ended_alone`: the zombie main thread and ours, with the main thread's
/// status). glibc's count needs no system call, so it also holds under a sandbox that refuses
/// `open` (found by a breaker run, session 72).
fn program_ended() -> Option<i32> {
    match os::glibc_thread_count() {
        Some(n) => (n == 1).then_some(0),
        None => os::main_thread_ended_alone(),
    }
}

/// Milliseconds the background thread sleeps past a tick's due time. The coarse clock
/// [`os::now_ms`] reads moves a kernel tick (4 ms at `HZ=250`) at a time, so the thread may
/// wake before it reads the tick as due and sleep again for 2 ms at least; a larger margin
/// would save those wake-ups but delay every tick by it (a tenth of the 10 ms shortest period
/// at 1 ms).
const COARSE_CLOCK_SLACK_MS: u64 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    /// The first call starts the schedule; a due tick is claimed by one caller, and the next
    /// falls due a period after the claim; a caller that comes late claims one tick, not one
    /// for every period it missed.
    #[test]
    fn a_tick_falls_due_once_a_period() {
        let next = AtomicU64::new(0);
        assert!(
            !claim_tick(&next, 1_000, || 250),
            "the first call ran a tick"
        );
        assert_eq!(next.load(Ordering::Relaxed), 1_250);
        assert!(
            !claim_tick(&next, 1_249, || 250),
            "a tick before it was due"
        );
        assert!(claim_tick(&next, 1_250, || 250));
        assert!(!claim_tick(&next, 1_250, || 250), "a tick claimed twice");
        assert_eq!(next.load(Ordering::Relaxed), 1_500);
        assert!(claim_tick(&next, 9_000, || 250));
        assert!(
            !claim_tick(&next, 9_100, || 250),
            "a missed period claimed late"
        );
        assert_eq!(next.load(Ordering::Relaxed), 9_250);
        // Only a caller that may win reads the period (a configuration load).
        assert!(!claim_tick(&next, 9_249, || panic!(
            "the period read for nothing"
        )));
    }

    /// Slow paths on several threads and the background thread asking at the same moment run
    /// one tick between them.
    #[test]
    fn callers_at_once_run_one_tick() {
        let next = AtomicU64::new(500);
        let barrier = std::sync::Barrier::new(8);
        let won = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    barrier.wait();
                    if claim_tick(&next, 600, || 250) {
                        won.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(won.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(next.load(Ordering::Relaxed), 850);
    }
}
