//! Synchronisation primitives, in one place.
//!
//! Owns: the atomics the allocator uses and [`Mutex`], a futex lock that never allocates (unlike
//! `std::sync::Mutex` poisoning paths or parking_lot's parking table, which may allocate under
//! contention). Every other module takes its atomics from here, so a model checker can swap them.
//!
//! May call: `os` (futex wait/wake).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
pub use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

use crate::os;

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

    /// Takes the lock, spinning briefly and then sleeping on the futex.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        raw_lock(&self.state);
        MutexGuard { mutex: self }
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
    for _ in 0..64 {
        core::hint::spin_loop();
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
