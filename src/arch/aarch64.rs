//! aarch64: the thread block through the thread pointer, and no critical sections yet.
//!
//! The project's machine is x86_64: this file is built with the cross toolchain and its
//! correctness tests run under qemu-user (see the README), not in CI, and not on hardware.
//! Until restartable sequences are written and tested for this architecture, the per-CPU
//! layer runs in fallback mode only
//! ([`HAS_CRITICAL_SECTIONS`] is false): every thread's area stays the dummy with cpu id -1, so
//! [`percpu_pop`] and [`percpu_push`] are never more than that sign test.

use super::ThreadBlock;
use core::arch::asm;

/// glibc's rseq signature on aarch64 (`brk #0x45e0`), for registrations. Unused while
/// [`HAS_CRITICAL_SECTIONS`] is false.
pub const RSEQ_SIG: u32 = 0xd428_bc00;
/// This architecture has no critical sections yet: the per-CPU layer uses its locked fallback.
pub const HAS_CRITICAL_SECTIONS: bool = false;

/// The thread pointer (`tpidr_el0`).
#[inline(always)]
pub fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: reading the user thread-pointer register has no side effects.
    unsafe { asm!("mrs {}, tpidr_el0", out(reg) tp, options(nostack, nomem, preserves_flags)) };
    tp
}

/// Remembers `p`, of class `c`, as the calling thread's last small allocation (see
/// `ThreadBlock::last_alloc`).
#[inline(always)]
pub fn note_alloc(p: *mut u8, c: usize) {
    let b = thread_block();
    // SAFETY: the calling thread's own block; only this thread touches these two fields.
    unsafe {
        (*b).last_alloc = p as usize;
        (*b).last_class = c;
    }
}

/// The calling thread's last small allocation, as [`note_alloc`] left it.
#[inline(always)]
pub fn noted_ptr() -> usize {
    // SAFETY: as in `note_alloc`.
    unsafe { (*thread_block()).last_alloc }
}

/// The calling thread's owned routes (`ThreadBlock::owned`): bit `c` set when its C allocations
/// and frees of class `c` use owned spans, which here (no sections) run under the slabs' locks
/// (fallback mode, `percpu::owned::sec`).
#[inline(always)]
pub fn owned_routes() -> usize {
    // SAFETY: the calling thread's own block; written by its own set-up and slow paths only.
    unsafe { (*thread_block()).owned }
}

/// The class of the calling thread's last small allocation, as [`note_alloc`] left it (0 before
/// the first; only owner return reads it, which the fallback never runs).
#[inline(always)]
pub fn noted_class() -> usize {
    // SAFETY: as in `note_alloc`.
    unsafe { (*thread_block()).last_class }
}

/// `c` (x86_64 takes it from the thread block's note when equal, to run ahead of the page map;
/// here, where only the fallback runs and the push always goes to its slow path, `c` itself
/// is the answer).
#[inline(always)]
pub fn confirmed_class(c: usize) -> usize {
    c
}

/// `x` (x86_64 hides it from the compiler, for the owned push's register use and the page
/// map's bound; here the identity serves both).
#[inline(always)]
pub fn opaque(x: usize) -> usize {
    x
}

/// The calling thread's block (initial-exec TLS: its offset from the thread pointer sits in
/// the GOT).
#[inline(always)]
pub fn thread_block() -> *mut ThreadBlock {
    let off: usize;
    // SAFETY: loads the block's TLS offset from its GOT entry (a constant per process).
    unsafe {
        asm!(
            "adrp {0}, :gottprel:rseqmalloc_thread_block",
            "ldr {0}, [{0}, #:gottprel_lo12:rseqmalloc_thread_block]",
            out(reg) off,
            options(nostack, readonly, preserves_flags)
        )
    };
    thread_pointer().wrapping_add(off) as *mut ThreadBlock
}

/// The current CPU without our rseq sections: glibc's rseq area, else the `getcpu` system call.
#[inline]
pub fn current_cpu() -> usize {
    super::cpu_from_glibc_area_or_kernel()
}

/// No critical section on this architecture yet: the area's cpu id is always -1 here, and
/// this is the fast path's "rseq off" answer.
///
/// # Safety
/// None beyond the x86_64 version's; it touches no memory.
#[inline(always)]
pub unsafe fn percpu_pop(_c: usize) -> *mut u8 {
    core::ptr::null_mut()
}

/// As [`percpu_pop`]: always "full or rseq off".
///
/// # Safety
/// None; it touches no memory.
#[inline(always)]
pub unsafe fn percpu_push(_c: usize, _obj: *mut u8) -> bool {
    false
}

/// As [`percpu_push`]: always "full or rseq off" (fallback mode has no homes).
///
/// # Safety
/// None; it touches no memory.
#[inline(always)]
pub unsafe fn percpu_push_homed(_c: usize, _obj: *mut u8, _home: usize) -> super::Push {
    super::Push::Full
}

/// As [`percpu_pop`]: always "empty or rseq off".
///
/// # Safety
/// None; it touches no memory.
#[inline(always)]
pub unsafe fn percpu_pop_batch(_hdr: usize, _out: *mut *mut u8, _max: usize) -> usize {
    0
}

/// As [`percpu_pop`]: always "empty or rseq off".
///
/// # Safety
/// None; it touches no memory.
#[inline(always)]
pub unsafe fn percpu_pop_batch_on(_hdr: usize, _id: u32, _out: *mut *mut u8, _max: usize) -> usize {
    0
}

/// As [`percpu_pop`]: always "full or rseq off".
///
/// # Safety
/// None; it touches no memory.
#[inline(always)]
pub unsafe fn percpu_push_batch(_hdr: usize, _objs: *const *mut u8, _len: usize) -> usize {
    0
}

/// As [`percpu_pop`]: always "not on that slab or rseq off".
///
/// # Safety
/// None; it touches no memory.
#[inline(always)]
pub unsafe fn percpu_relocate(_hdr: usize, _id: u32, _word: u64) -> bool {
    false
}

/// No owned-span sections on this architecture: always "nothing popped" (owned spans run under
/// the slabs' locks here, fallback mode; see `percpu::owned::sec`).
///
/// # Safety
/// None; it touches no memory.
#[inline(always)]
pub unsafe fn owned_pop(_c: usize) -> super::OwnedPop {
    super::OwnedPop::Fail
}

/// As [`owned_pop`]: always "nothing popped".
///
/// # Safety
/// None; it touches no memory.
#[inline(always)]
pub unsafe fn owned_pop_stack_first(_c: usize) -> super::OwnedPop {
    super::OwnedPop::Fail
}

/// As [`owned_pop`]: always "not pushed".
///
/// # Safety
/// None; it touches no memory.
#[inline(always)]
pub unsafe fn owned_push_chain(
    _words: *const super::OwnedWords,
    _first: *mut u8,
    _last: *mut u8,
    _k: usize,
    _key: usize,
) -> usize {
    0
}

/// As [`owned_pop`]: always "not pushed".
///
/// # Safety
/// None; it touches no memory.
#[inline(always)]
pub unsafe fn owned_push(
    _words: *const super::OwnedWords,
    _obj: *mut u8,
    _key: usize,
    _home: usize,
) -> usize {
    0
}

/// As [`owned_pop`]: always "not set".
///
/// # Safety
/// None; it touches no memory.
#[inline(always)]
pub unsafe fn owned_set_cur(_c: usize, _words: *const super::OwnedWords) -> bool {
    false
}

/// As [`owned_pop`]: always "not retired".
///
/// # Safety
/// None; it touches no memory.
#[inline(always)]
pub unsafe fn owned_retire(_c: usize, _words: *const super::OwnedWords) -> bool {
    false
}

/// As [`owned_pop`]: always "not taken off".
///
/// # Safety
/// None; it touches no memory.
#[inline(always)]
pub unsafe fn owned_uncur(_c: usize, _words: *const super::OwnedWords) -> bool {
    false
}
