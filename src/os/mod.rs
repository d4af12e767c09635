//! Operating-system primitives: the bottom layer.
//!
//! Owns: every system call and C-library call of the allocator — mapping and unmapping
//! address space, telling the kernel which pages it may reclaim, futexes, the `rseq` and
//! `membarrier` system calls, threads (`thread`: keys, spawning, fork and exit handlers, CPU
//! affinity, yielding, sleeping), the raw environment, the allocator's output (`output`: where
//! its lines go and how they are written) and aborts — all without allocating.
//! Failure is an [`OsError`] value, never a panic. One file per platform; only Linux exists.
//! System calls go through [`system_call`] (the instruction itself), so that a program's own
//! `syscall`, `mmap` or the like never runs inside the allocator.
//!
//! May call: `libc` only.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

mod msg;
pub use msg::Msg;
mod syscall;
pub(crate) use syscall::system_call;
pub mod output;
mod vdso;

mod thread;
pub use thread::*;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub use glibc::*;

/// The OS refused a mapping request (the `errno` it gave).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OsError(pub i32);
