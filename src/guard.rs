//! The re-entrancy guard: in debug and test builds, an allocator entry point reached while the
//! same thread is already inside one aborts with a message. Anything under `malloc`/`free` that
//! allocates (std formatting, a `thread_local!` destructor, parking_lot's parking table, a panic)
//! is caught on the spot instead of deadlocking or corrupting a list. Release builds compile
//! the guard away.
//!
//! May call: `arch` (the thread block), `os`.

#[cfg(debug_assertions)]
use crate::arch;
#[cfg(debug_assertions)]
use crate::os::{self, Msg};

/// Proof that the calling thread is inside the allocator; leaving drops it.
pub struct Guard(());

/// Marks the calling thread as inside the allocator entry point `what`.
#[inline(always)]
pub fn enter(what: &'static str) -> Guard {
    #[cfg(debug_assertions)]
    {
        let b = arch::thread_block();
        // SAFETY: the block is the calling thread's own; only this thread touches `depth`.
        unsafe {
            if (*b).depth != 0 {
                reentered(what);
            }
            (*b).depth = 1;
        }
    }
    let _ = what;
    Guard(())
}

#[cfg(debug_assertions)]
#[cold]
#[inline(never)]
fn reentered(what: &str) -> ! {
    let mut m = Msg::new();
    m.str("rseqmalloc: re-entrant call to ")
        .str(what)
        .str(" from inside the allocator (code under malloc/free allocated); aborting");
    os::abort_with(&m)
}

impl Drop for Guard {
    #[inline(always)]
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        // SAFETY: as in `enter`.
        unsafe {
            (*arch::thread_block()).depth = 0;
        }
    }
}

/// Lets one nested allocation through, where the allocator holds no lock and a nested call is
/// known to be safe (e.g. `pthread_setspecific` during thread set-up).
pub struct Nested(#[allow(dead_code)] u32);

/// See [`Nested`]; restores the guard when dropped.
pub fn allow_nested() -> Nested {
    #[cfg(debug_assertions)]
    {
        let b = arch::thread_block();
        // SAFETY: the calling thread's own block.
        unsafe {
            let d = (*b).depth;
            (*b).depth = 0;
            Nested(d)
        }
    }
    #[cfg(not(debug_assertions))]
    Nested(0)
}

impl Drop for Nested {
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        // SAFETY: the calling thread's own block.
        unsafe {
            (*arch::thread_block()).depth = self.0;
        }
    }
}
