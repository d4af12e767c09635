//! Synchronisation primitives, in one place: the atomics, and the one family of locks.
//!
//! Owns:
//! - the atomics every module takes from here (not from `core` directly), so that the whole
//!   crate's choice of primitives is visible in one file;
//! - [`Backoff`], the one waiting policy of every lock here: a short spin, then the lock's own
//!   way to wait (a futex sleep, or a yield of the CPU);
//! - [`Mutex`] (and [`raw_lock`]/[`raw_unlock`] for a futex word in memory we map
//!   ourselves), a futex lock that never allocates (unlike `std::sync::Mutex` poisoning paths
//!   or parking_lot's parking table, which may allocate under contention);
//! - [`SpinLock`], a one-word lock for critical sections of a few nanoseconds (the slabs'
//!   fallback and capacity locks): one atomic instruction to take, a plain store to release.
//!
//! ## Statics and cache lines
//! A scalar static that more than one CPU writes after start-up (a lock, a statistics counter,
//! a hint word, a tick) is a [`CachePadded`] of its own, so that its writes never evict the
//! words the fast and slow paths only read (the options, `percpu::state::G`, owned spans'
//! switch): the linker packs statics side by side, and three counters of the owned slow path
//! and two of the drains once shared a line with that switch, whose test then took a fifth of
//! a two-thread burst's slow-path samples (docs/benchmarks.md, "Session 54"). Arrays written
//! under different locks keep their elements apart themselves (`central`'s shards and classes
//! are aligned per element). A padded struct whose fields are only ever reached at fixed
//! offsets is also `#[used]`: LLVM otherwise splits such a static into one static per field
//! (global scalar replacement) and places them apart, padding dropped. A new written scalar
//! static goes into `LINE_OWNERS` in `allocator-shim/tests/shim.rs`, which checks the release
//! library's layout; the arrays' alignment is asserted where they are defined.
//!
//! ## What is model-checked
//! A model checker such as loom cannot build the allocator itself: its atomics are not `const`
//! constructible, and the allocator's state lives in statics and in memory mapped from the OS.
//! What can be modelled is the protocols, written as models of their own: the drain protocol
//! against the per-CPU critical sections is checked over every interleaving by
//! `tests/drain_model.rs` (which also shows the one-fence version failing). The locks here are
//! not modelled; they are the textbook test-and-set and three-state futex locks, exercised by
//! the stress tests.
//!
//! May call: `os` (futex wait/wake, yield).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
pub use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
/// Pads and aligns a value to the cache-line size that avoids false sharing on the target.
pub use crossbeam_utils::CachePadded;

use crate::os;

/// Pauses (each followed by a recheck of the lock) before a waiter stops spinning: the
/// schedule the futex mutex and the slab lock each had before they shared this policy.
const SPINS: u32 = 64;

/// How every lock here waits for its holder: [`Backoff::spin`] while a short spin is likely to
/// outlast the holder, then the lock's own blocking (the futex), or [`Backoff::snooze`], which
/// yields the CPU once spinning is over — what matters when threads outnumber CPUs and the
/// holder may be preempted.
///
/// Why not `crossbeam_utils::Backoff`: without `std` its `snooze` cannot yield, and its
/// exponential spin (1, 2, 4 … 32 pauses a round) rechecks the lock 6 times in the budget where
/// these locks recheck it 64 times: a change of contended behaviour, to be made (if at all)
/// with benchmarks, not in passing.
pub struct Backoff {
    spins: u32,
}

impl Backoff {
    /// A fresh wait.
    #[inline]
    pub const fn new() -> Self {
        Backoff { spins: 0 }
    }

    /// Pauses once; false, without pausing, once the spinning is over: the caller should block.
    #[inline]
    pub fn spin(&mut self) -> bool {
        if self.spins >= SPINS {
            return false;
        }
        self.spins += 1;
        core::hint::spin_loop();
        true
    }

    /// Pauses once, or once the spinning is over, yields the CPU.
    #[inline]
    pub fn snooze(&mut self) {
        if !self.spin() {
            os::yield_now();
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// A mutual-exclusion lock built on a futex word.
///
/// Invariant: `state` is 0 (unlocked), 1 (locked, no waiters) or 2 (locked, maybe waiters).
/// It never allocates and never panics, so it may be taken inside `malloc`/`free`.
pub struct Mutex<T> {
    state: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: the lock serialises every access to `data`, so sharing the mutex shares `T` one
// thread at a time, which is sound when `T: Send`.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: moving the mutex moves `T`, which is fine when `T: Send`.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`.
    pub const fn new(value: T) -> Self {
        Mutex {
            state: AtomicU32::new(0),
            data: UnsafeCell::new(value),
        }
    }

    /// Whether the lock is held and a thread may be waiting for it (state 2, which only a
    /// waiter that is about to sleep on the futex writes). Tests only.
    #[cfg(test)]
    pub fn may_have_waiters(&self) -> bool {
        self.state.load(Ordering::Relaxed) == 2
    }

    /// Takes the lock, spinning briefly ([`Backoff`]) and then sleeping on the futex.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        raw_lock(&self.state);
        MutexGuard { mutex: self }
    }

    /// Where the data lives (for identity checks; reading through it needs the lock).
    pub fn data_ptr(&self) -> *const T {
        self.data.get()
    }

    /// Releases a lock taken by [`Mutex::lock`] whose guard was forgotten (fork handlers).
    ///
    /// # Safety
    /// The caller must hold the lock (its guard forgotten with `mem::forget`) and no other
    /// thread may be using the data.
    pub unsafe fn force_unlock(&self) {
        raw_unlock(&self.state);
    }

    /// Resets the lock to unlocked in a fork child, where the holder no longer exists.
    ///
    /// # Safety
    /// Only in the child of `fork`, while it has a single thread, and after the parent took the
    /// lock in its prepare handler (so the data is consistent).
    pub unsafe fn reset_in_child(&self) {
        self.state.store(0, Ordering::Relaxed);
    }
}

/// Proof that the lock is held; releases it on drop.
pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held, so no other reference exists.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only live reference.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        raw_unlock(&self.mutex.state);
    }
}

/// Takes a futex lock word (0 unlocked, 1 locked, 2 locked with possible waiters): the same
/// protocol as [`Mutex`], for lock words that live in memory we map ourselves.
#[inline]
pub fn raw_lock(word: &AtomicU32) {
    if word
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        raw_lock_contended(word);
    }
}

#[cold]
#[inline(never)]
fn raw_lock_contended(word: &AtomicU32) {
    let mut backoff = Backoff::new();
    while backoff.spin() {
        if word.load(Ordering::Relaxed) == 0
            && word
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return;
        }
    }
    while word.swap(2, Ordering::Acquire) != 0 {
        os::futex_wait(word, 2);
    }
}

/// Releases a lock word taken with [`raw_lock`].
#[inline]
pub fn raw_unlock(word: &AtomicU32) {
    if word.swap(0, Ordering::Release) == 2 {
        os::futex_wake(word, 1);
    }
}

/// A spin lock in one word (0 free, 1 held), for critical sections of a few nanoseconds: one
/// atomic instruction to take, a plain store to release. A waiter spins briefly and then yields
/// its CPU on each retry ([`Backoff::snooze`]), so a holder that was preempted gets to run.
///
/// All-zero memory is a free lock, so it can live in memory mapped from the OS (the slab
/// headers); it guards no data of its own: its user says what it guards.
#[repr(transparent)]
pub struct SpinLock(AtomicU32);

impl SpinLock {
    /// A free lock.
    pub const fn new() -> Self {
        SpinLock(AtomicU32::new(0))
    }

    /// Takes the lock if it is free; true if taken.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.0
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock, waiting as long as needed.
    #[inline]
    pub fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut backoff = Backoff::new();
        loop {
            if self.0.load(Ordering::Relaxed) == 0 && self.try_lock() {
                return;
            }
            backoff.snooze();
        }
    }

    /// Releases the lock, which the caller holds.
    #[inline]
    pub fn unlock(&self) {
        self.0.store(0, Ordering::Release);
    }

    /// Frees the lock in a fork child, where its holder (another thread of the parent) does
    /// not exist.
    ///
    /// # Safety
    /// Only in the child of `fork`, while it has a single thread, with whatever the lock
    /// guards left consistent by the parent's prepare handler.
    pub unsafe fn reset_in_child(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

impl Default for SpinLock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The spin phase ends, so a futex waiter does block.
    #[test]
    fn backoff_spins_a_bounded_number_of_times() {
        let mut b = Backoff::new();
        let spins = core::iter::from_fn(|| b.spin().then_some(())).count();
        assert_eq!(spins, SPINS as usize);
        assert!(!b.spin());
    }

    /// More threads than CPUs (2 here) contend for one spin lock around a non-atomic
    /// read-modify-write: no increment is lost, and the run ends (preempted holders get to run
    /// because waiters yield).
    #[test]
    fn spin_lock_excludes_and_lets_preempted_holders_finish() {
        struct Shared {
            lock: SpinLock,
            count: UnsafeCell<u64>,
        }
        // SAFETY: `count` is only touched under `lock`.
        unsafe impl Sync for Shared {}
        let shared = Arc::new(Shared {
            lock: SpinLock::new(),
            count: UnsafeCell::new(0),
        });
        let threads: std::vec::Vec<_> = (0..8)
            .map(|_| {
                let s = Arc::clone(&shared);
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        s.lock.lock();
                        // SAFETY: the lock is held.
                        unsafe { *s.count.get() += 1 };
                        s.lock.unlock();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(shared.lock.try_lock());
        // SAFETY: every thread has finished.
        assert_eq!(unsafe { *shared.count.get() }, 8 * 20_000);
    }
}
