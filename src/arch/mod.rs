//! Architecture layer: the thread block, rseq registration and the per-CPU critical sections.
//!
//! Owns: everything that is written in assembly or depends on the CPU: where the calling
//! thread's rseq area is, registering and unregistering our own area, reading a CPU id without
//! rseq, the two restartable sequences (pop and push on a per-CPU slab), and the thread block
//! in static TLS.
//!
//! x86_64 is the only architecture implemented and tested. Another one (aarch64 first) needs a
//! file next to `x86_64.rs` providing the same items: the thread block in initial-exec TLS,
//! `glibc_area`, `register`/`unregister` with that architecture's signature, `current_cpu`, and
//! `percpu_pop`/`percpu_push` as restartable sequences. Until then other architectures stop at
//! compile time rather than build something untested.
//!
//! May call: `os`.

/// Layout of the kernel's `struct rseq` (see `include/uapi/linux/rseq.h`).
#[repr(C, align(32))]
pub struct Rseq {
    /// Written by the kernel.
    pub cpu_id_start: u32,
    /// Written by the kernel; -1 uninitialised, -2 registration failed.
    pub cpu_id: i32,
    /// The only field user space writes: the active critical-section descriptor.
    pub rseq_cs: u64,
    /// Deprecated, left 0.
    pub flags: u32,
    /// Written by the kernel (feature size ≥ 24).
    pub node_id: u32,
    /// Written by the kernel (feature size ≥ 28): dense concurrency id.
    pub mm_cid: u32,
    /// Padding up to the original 32-byte ABI size.
    pub _pad: u32,
}

/// Byte offset of `cpu_id` in [`Rseq`].
pub const CPU_ID_OFFSET: usize = 4;
/// Byte offset of `mm_cid` in [`Rseq`].
pub const MM_CID_OFFSET: usize = 24;
/// The registration length we use (the original ABI size).
pub const RSEQ_LEN: u32 = 32;
/// glibc's signature on x86, which every abort handler carries.
pub const RSEQ_SIG: u32 = 0x5305_3053;

/// Per-thread state kept next to our own rseq area, in static TLS.
///
/// Invariants: `area` always points at a valid `Rseq` — initially [`DUMMY_AREA`] (cpu id -1,
/// which sends every operation to the slow path), later glibc's area or `own`; only the owning
/// thread writes any field except `own`'s kernel-written ones.
#[repr(C, align(32))]
pub struct ThreadBlock {
    /// Our own rseq area, registered only when glibc did not register one.
    pub own: Rseq,
    /// The area the fast path reads.
    pub area: *const Rseq,
    /// `ThreadState` as u32.
    pub state: u32,
    /// Re-entrancy depth guard (debug builds).
    pub depth: u32,
    /// Fallback mode: the slab this thread used last (a hint; any slab is correct).
    pub cpu_hint: u32,
    /// Fallback mode: operations left before `cpu_hint` is read again from the CPU.
    pub hint_left: u32,
    /// Base of the slabs (slab 0), copied here at set-up so the fast path reaches it from the
    /// thread pointer like everything else it reads.
    pub slabs: usize,
    /// The id the slabs are indexed by: `cpu_id` or `mm_cid` of `area`, set with it. Only
    /// read after the sign test on `area.cpu_id` passed.
    pub id: *const u32,
    /// Fallback mode: the thread's magazines (an object of the allocator's own, owned by the
    /// per-CPU layer), or null.
    pub magazine: *mut u8,
}

/// The area every thread starts with: cpu id -1, so the fast path's one sign test fails.
pub static DUMMY_AREA: Rseq = Rseq {
    cpu_id_start: 0,
    cpu_id: -1,
    rseq_cs: 0,
    flags: 0,
    node_id: 0,
    mm_cid: 0,
    _pad: 0,
};

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("rseqmalloc supports x86_64 Linux only so far (see src/arch/mod.rs)");
