//! Architectures without rseq sections here: every per-CPU operation reports "rseq off", so
//! the allocator always takes its locked per-CPU path. Compiled, not tested, on this machine.

use super::{Rseq, ThreadBlock, DUMMY_AREA, UNREGISTERED};

/// Shared block: no rseq and no per-thread state on this architecture.
static mut BLOCK: ThreadBlock = ThreadBlock {
    own: Rseq {
        cpu_id_start: 0,
        cpu_id: -1,
        rseq_cs: 0,
        flags: 0,
        node_id: 0,
        mm_cid: 0,
        _pad: 0,
    },
    area: &DUMMY_AREA,
    state: 0,
    depth: 0,
    cpu_hint: 0,
    hint_left: 0,
};

/// The calling thread's block (shared on this architecture; only `state` is read).
pub fn thread_block() -> *mut ThreadBlock {
    core::ptr::addr_of_mut!(BLOCK)
}

/// Always "off" here.
///
/// # Safety
/// No requirements; kept `unsafe` to match the x86_64 contract.
pub unsafe fn percpu_pop(_slabs: usize, _field: usize, _class: usize, _slot: usize) -> *mut u8 {
    core::ptr::null_mut()
}

/// Always "off" here.
///
/// # Safety
/// No requirements; kept `unsafe` to match the x86_64 contract.
pub unsafe fn percpu_push(
    _slabs: usize,
    _field: usize,
    _class: usize,
    _slot: usize,
    _obj: *mut u8,
) -> bool {
    false
}

/// glibc's rseq registration is not used here.
pub fn glibc_area() -> Option<*const Rseq> {
    None
}

/// Registration is not attempted here.
///
/// # Safety
/// No requirements.
pub unsafe fn register(_area: *mut Rseq) -> Result<(), i32> {
    Err(libc::ENOSYS)
}

/// Nothing to unregister here.
///
/// # Safety
/// No requirements.
pub unsafe fn unregister(_area: *mut Rseq) {}

/// The current CPU via `sched_getcpu`.
pub fn current_cpu() -> usize {
    crate::os::current_cpu()
}

/// Restarts observed (none without rseq).
pub fn restarts() -> u64 {
    0
}
