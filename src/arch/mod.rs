//! Architecture layer: the thread block, rseq registration and the per-CPU critical sections.
//!
//! Owns: everything that is written in assembly or depends on the CPU: where the calling
//! thread's rseq area is, registering and unregistering our own area, reading a CPU id without
//! rseq, the restartable sequences on a per-CPU slab (pop and push of one object or of a batch,
//! and the move of a class's stack to another region), and the thread block
//! in static TLS.
//!
//! Here: what every architecture shares — the thread block's layout and its `.tdata` image,
//! glibc's weak `__rseq_offset`/`__rseq_size`, `glibc_area`, `register`/`unregister`, the restart
//! counter, and the free tag's key word (`FREE_TAG_KEY`, which the owned pop reads; `free_tag`
//! gives it its meaning). Each architecture's file provides `RSEQ_SIG`, `HAS_CRITICAL_SECTIONS`,
//! `thread_pointer`, `thread_block`, `current_cpu`, the allocation note (`note_alloc`,
//! `noted_ptr`, `noted_class`, `confirmed_class`), `percpu_pop`/`percpu_push`,
//! `percpu_push_homed` (a C `free`'s push with owner return's home test),
//! `percpu_pop_batch`/`percpu_push_batch`,
//! `percpu_pop_batch_on` (a batch pop on a given slab only) and `percpu_relocate`.
//!
//! x86_64 is implemented and tested (`x86_64.rs`: the critical sections). aarch64 compiles to
//! the locked fallback (`aarch64.rs`: thread-block access only, no critical sections, so the
//! per-CPU layer never enters an rseq mode there); on this x86_64 machine it was built with the
//! cross toolchain and its correctness tests run under qemu-user (README, "Other
//! architectures"), not in CI. Other architectures stop at compile time rather than build
//! something untested.
//!
//! May call: `os`, `sync`.

use crate::sync::{AtomicU16, AtomicU32, AtomicU64, AtomicUsize, CachePadded, Ordering};
use core::arch::global_asm;
use core::mem::{align_of, offset_of, size_of};

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
pub const CPU_ID_OFFSET: usize = offset_of!(Rseq, cpu_id);
/// Byte offset of `mm_cid` in [`Rseq`].
pub const MM_CID_OFFSET: usize = offset_of!(Rseq, mm_cid);
/// The registration length we use (the original ABI size).
pub const RSEQ_LEN: u32 = size_of::<Rseq>() as u32;

/// What the per-CPU layer has made of the calling thread, kept in [`ThreadBlock::state`].
///
/// Every thread starts `New` (the `.tdata` image is zero there); set-up moves it to one of the
/// other three once, and thread exit to `Bypass`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ThreadState {
    /// Not set up yet: its first slow path sets it up.
    New = 0,
    /// Runs the rseq critical sections on the slabs (its `area` has a cpu id).
    Rseq = 1,
    /// Goes straight to the central lists: rseq registration failed, no slabs, during set-up,
    /// or after the thread-exit destructor.
    Bypass = 2,
    /// Fallback mode: the slabs under their locks, behind the thread's magazines.
    Locked = 3,
}

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
    /// What the per-CPU layer has made of this thread.
    pub state: ThreadState,
    /// Re-entrancy depth guard (debug builds).
    pub depth: u32,
    /// Fallback mode: the slab this thread used last (a hint; any slab is correct).
    pub cpu_hint: u32,
    /// Fallback mode: operations left before `cpu_hint` is read again from the CPU.
    pub hint_left: u32,
    /// Base of the slabs (slab 0), copied here at set-up so the fast path reaches it from the
    /// thread pointer like everything else it reads.
    pub slabs: usize,
    /// The id the slabs are indexed by: `cpu_id` or `mm_cid` of `area`, set with it. Always
    /// readable: initially [`DUMMY_AREA`]'s `cpu_id` (-1). The critical sections read it only
    /// after the sign test on `area.cpu_id` passed; `free` reads it anywhere as a hint of the
    /// slab it would push to (owner return).
    pub id: *const u32,
    /// Fallback mode: the thread's magazines (an object of the allocator's own, owned by the
    /// per-CPU layer), or null.
    pub magazine: *mut u8,
    /// The C API's last small object handed out on this thread (by the pop, the fallback's
    /// magazine or the slow path; Rust's allocations do not write it), and its class
    /// ([`note_alloc`]): a hint that lets `free` of that very object start its push before the
    /// page map answers, and that tells owner return which class the thread allocates (it
    /// keeps a foreign object of that class: `percpu::keeps_foreign`). Only
    /// ever compared with what the page map says or used to choose between two correct paths,
    /// never trusted alone.
    pub last_alloc: usize,
    /// See `last_alloc`.
    pub last_class: usize,
    /// Rseq state: the thread's outbox of objects to send to their home slabs (an object of
    /// the allocator's own, owned by the per-CPU layer's owner return), or null.
    pub outbox: *mut u8,
    /// The classes whose C allocations and frees use owned spans on this thread
    /// (`percpu::owned::routes`): bit `c` for class `c`. Set with the
    /// rseq state at the thread's set-up, when the process has owned spans on, to the classes every
    /// thread routes (`owned::FIXED_ROUTES`); a slow path of the thread adds a small class once its
    /// slab's stack of it was seen idle (`owned::route_idle`), and a free of the thread takes it
    /// away once its owned pushes keep declining other slabs' objects (`owned::count_declined`). In
    /// the block, so the C fast paths test a word of the block they already address instead of a
    /// global (the test on a global, through the GOT, cost the default build's one-thread churn
    /// about 1 %). Written by the thread itself only.
    pub owned: usize,
    /// While a `vfork` child runs on this block (`percpu::fork::vfork_enter`): the `area` the
    /// thread had, restored when the parent resumes.
    pub vfork_area: *const Rseq,
    /// `vfork` calls into which this block has been set aside (0: none; more than 1: a child
    /// that called `vfork` itself).
    pub vfork_depth: u32,
    /// While `vfork_depth` is not 0: the `state` the thread had.
    pub vfork_state: ThreadState,
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

/// log2 of the per-CPU slab size in bytes: 512 KiB, 65,024 slots of 8 bytes after the headers,
/// so every slot index fits the `u16` fields of [`ClassHeader`] with `u16::MAX` to spare. The
/// kernel backs only the touched pages.
pub const SLAB_SHIFT: u32 = 19;

/// Slots are 8-byte words: slot `i` of a slab is at byte [`SLOTS_AT`] `+ 8 * i`.
pub const SLOT_SHIFT: u32 = 3;

/// Byte offset of slot 0 in a slab: the first 4 KiB hold the slab's header (1 KiB), up to 128 class
/// headers, the owned-span table ([`CUR_AT`]), the per-class lists of owned spans (`percpu::slab`,
/// byte 3072) and the small classes' idle looks (byte 3880). Indices count from here, so an
/// all-zero class header — a slab nobody has touched yet — is already a valid empty stack (`current
/// = begin = floor = end = 0`: every pop and push fails) at a valid slot, and making a slab ready
/// writes nothing a section reads.
pub const SLOTS_AT: usize = 4096;

/// Byte offset in a slab of its class headers: class `c`'s [`ClassHeader`] at
/// `CLASS_HEADERS_AT + 8 * c` (the per-CPU layer's `slab::header_offset` is built on it). The
/// one-object sections (the pop, the pushes, `owned_pop_stack_first`) address a class's header
/// from the class; the batch sections are given its offset.
pub const CLASS_HEADERS_AT: usize = 1024;

/// Byte offset in a slab of its owned-span table (owned spans, `owned_spans=on`; docs/design.md,
/// "Owned spans"): class `c`'s current owned span,
/// the address of its [`OwnedWords`] or 0, at `CUR_AT + 8 * c`. All zero in an untouched slab:
/// no class has a current span, and [`owned_pop`] fails to the slow path.
pub const CUR_AT: usize = 2048;

/// Byte offset in a slab of its owned-span stop word (a `u32` in the slab header's reserved
/// words): non-zero while a drain takes the slab's owned spans back. Only drains write it;
/// every owned-span section loads it first and fails while it is set (the protocol
/// `tests/owned_span_model.rs` checks).
pub const OWNED_STOP_AT: usize = 924;

/// Byte offset in a slab of its home word (a `u32`, just before the stop word): the home bits a
/// page-map entry carries for a span whose home is this slab (`pagemap::HOMED` plus the slab's
/// index modulo 64), written once when the slab is first made ready, 0 before. The owned push
/// loads it and the stop word as one 8-byte word and compares that with the object's home
/// bits: one test for "homed here" and "no drain at work" (`owned_push`).
pub const OWNED_HOME_AT: usize = 920;

const _: () = assert!(OWNED_STOP_AT == OWNED_HOME_AT + 4 && OWNED_HOME_AT.is_multiple_of(8));

/// The words of a span a slab owns that its critical sections read and commit (`owned_pop`,
/// `owned_pop_stack_first`, `owned_push`, `owned_push_chain`, `owned_set_cur`, `owned_retire`,
/// `owned_uncur`). Shared
/// with the assembly through
/// `offset_of!`, as [`ClassHeader`] is; 32 bytes, aligned to 32 so that they sit on one cache
/// line of the span record's extension (`span::SpanExt::owned`).
///
/// Invariants (in every span record's extension, `span::SpanExt::owned`; `percpu::owned` keeps
/// them):
/// - `local` is `head | free << 48`: `head` the first free object (0: none), `free` how many
///   objects the list holds; each free object's first word holds the next one's address XOR
///   the free tag's key (`free_tag::key`), 0 encoded for the last; every free object carries
///   its free tag. Only sections of the slab named by `owner`, a retiring thread after its
///   retire commit, and a drain after its fence touch it.
/// - `[start, start + room + 16)` is the span's bytes ([`OwnedWords::end`]); every object of the
///   list lies in it.
/// - `owner` is the owning slab's index plus one ([`owner_of`]), or [`NO_OWNER`] (0, so that
///   memory never written reads as owned by nobody); it changes only as
///   docs/design.md describes (a section's commit on the owning CPU, or a drain after its
///   fence).
#[repr(C, align(32))]
pub struct OwnedWords {
    /// `head | free << 48`.
    pub local: AtomicU64,
    /// First byte of the span.
    pub start: usize,
    /// The span's length in bytes less 16: how far past `start` the last object of at least
    /// 16 bytes may start. The owned pop's range check is one subtraction and one compare
    /// with it (`n - start <= room`, unsigned).
    pub room: usize,
    /// The owning slab's index plus one ([`owner_of`]), or [`NO_OWNER`].
    pub owner: AtomicU32,
}

impl OwnedWords {
    /// The words' `room` for a span of bytes `[start, end)` (at least 16 of them).
    #[inline]
    pub fn room_of(start: usize, end: usize) -> usize {
        debug_assert!(end >= start + 16, "a span of at least one 16-byte object");
        end - start - 16
    }

    /// One past the span's last byte.
    #[inline]
    pub fn end(&self) -> usize {
        self.start + self.room + 16
    }
}

/// The head's bits of [`OwnedWords::local`] (`head | free << 48`): its low 48.
pub const OWNED_HEAD_MASK: u64 = (1 << 48) - 1;

/// [`OwnedWords::owner`] of a span no slab owns.
pub const NO_OWNER: u32 = 0;

/// [`OwnedWords::owner`] of a span slab `id` owns: `id + 1` (the sections compare it with the
/// id they read, plus one).
#[inline(always)]
pub const fn owner_of(id: usize) -> u32 {
    id as u32 + 1
}

/// One size class's stack in a per-CPU slab: the header the critical sections read and write
/// (their offsets are `const` operands taken from this struct), at an offset the per-CPU layer
/// chooses per class (`percpu::slab`). Its four fields are slot indices into the slab, so the
/// fast path addresses a slot as `slab + SLOTS_AT + 8 * current` with no per-class table:
///
/// ```text
///   slab: [ headers | ... | begin ... current ... end ... region end | ... ]
///                           └ cached objects ┘└ room ┘
/// ```
///
/// Invariant, outside a drain: `slots[begin..current]` are free objects of the class owned by
/// the cache; `floor = begin <= current`, and `end - begin` is the class's capacity, inside the
/// class's region of the slab. A drain stops a slab with `end = 0` (every push fails) and
/// `floor = u16::MAX` (every pop fails); a capacity lowered under the count (`end < current`)
/// only makes pushes fail until pops bring `current` under it.
///
/// Fields are written by the critical sections' one committing store (`current`, with `begin`
/// rewritten as it was: below; the relocation section's 8-byte store of all four), or under
/// the slab's lock (fallback mode), or by a drain that stopped the slab, or under the slab's
/// capacity lock (`end`).
///
/// On x86_64 the pop, push and batch sections load and commit `current` as the low half of
/// the 32-bit word `current | begin << 16`, writing `begin` back as they read it: a 16-bit
/// store followed by the next operation's 16-bit load of the same address cost the AMD EPYC
/// of session 15 about a quarter of a cached pop/push pair (an emulation of the sections,
/// variants alternated in one process), where 32-bit accesses forward at full speed. The
/// word's `begin` cannot change under a section: every writer of `begin` also writes
/// `current`, so a section that could write back a stale `begin` would already have written
/// a stale `current` with a 16-bit commit. It is written by the relocation section (the same
/// CPU's, so the two exclude each other), under the slab's lock (fallback mode, where no
/// section runs, or a private slab no section reaches), and by a drain between its two rseq
/// fences (`percpu::drain`: the second fence ends every section that read the old word before
/// the slab restarts, exactly as it does for `current`). The arithmetic stays in the low half:
/// a pop commits `current - k` with `k <= current - floor`, a push `current + k` with
/// `current + k <= end`. The 32-bit store races the Rust side's 16-bit atomic loads of
/// `current` and `begin` (counts, drains, checks), mixed-size accesses Rust's memory model
/// does not define: this relies on x86's single-copy atomicity of an aligned 4-byte store,
/// under which a 16-bit load sees the old or the new half (the relocation section's 8-byte
/// store already did the same).
#[repr(C, align(8))]
pub struct ClassHeader {
    /// One past the top of the stack: `slots[current - 1]` is the top.
    pub current: AtomicU16,
    /// The stack's first slot (what `floor` returns to); the fast path only carries it along in
    /// the 32-bit word it commits.
    pub begin: AtomicU16,
    /// Pops fail at `current <= floor`: `begin` while running, `u16::MAX` while stopped.
    pub floor: AtomicU16,
    /// Pushes fail at `current >= end`: `begin` + capacity while running, 0 while stopped.
    pub end: AtomicU16,
}

const _: () = assert!(size_of::<ClassHeader>() == 8);

/// `ClassHeader` as the 8-byte word the relocation section stores: `current | begin << 16 |
/// floor << 32 | end << 48` (little-endian field order).
pub const fn class_header_word(current: u16, begin: u16, floor: u16, end: u16) -> u64 {
    current as u64 | (begin as u64) << 16 | (floor as u64) << 32 | (end as u64) << 48
}

/// Where the `.tdata` image below puts its only non-zero words: our area's `cpu_id`, `area`
/// and `id`.
const IMAGE_CPU_ID_AT: usize = offset_of!(ThreadBlock, own) + CPU_ID_OFFSET;
const IMAGE_AREA_AT: usize = offset_of!(ThreadBlock, area);
const IMAGE_ID_AT: usize = offset_of!(ThreadBlock, id);

const _: () = {
    assert!(size_of::<Rseq>() == 32 && align_of::<Rseq>() == 32);
    // The image writes the words in this order, every other byte zero: the `area` pointer
    // after the cpu id, and a zero `state` is `ThreadState::New`.
    assert!(IMAGE_CPU_ID_AT + 4 <= IMAGE_AREA_AT);
    assert!(IMAGE_AREA_AT + 8 <= IMAGE_ID_AT);
    assert!(IMAGE_ID_AT + 8 <= size_of::<ThreadBlock>());
    assert!(ThreadState::New as u32 == 0);
    // 128 bytes of static TLS: a `dlopen`ed copy must fit in glibc's small surplus (1,664
    // bytes by default, shared with every other library's initial-exec TLS).
    assert!(size_of::<ThreadBlock>() == 128 && align_of::<ThreadBlock>() == 32);
};

// The thread block lives in `.tdata` (initial-exec TLS, so the fast path reaches it from the
// thread pointer without a call, in executables and in LD_PRELOADed libraries alike). Its image
// is all zeros but three words, placed from the struct's layout: our own area's cpu id, -1,
// `area`, pointing at `DUMMY_AREA`, and `id`, pointing at its cpu id.
//
// glibc's `__rseq_offset` and `__rseq_size` are referenced weakly, so a glibc without them still
// links and loads: the pointers below are then null.
global_asm!(
    ".pushsection .tdata.rseqmalloc_thread_block,\"awT\",%progbits",
    ".balign {align}",
    ".globl rseqmalloc_thread_block",
    ".hidden rseqmalloc_thread_block",
    ".type rseqmalloc_thread_block,%object",
    "rseqmalloc_thread_block:",
    ".zero {cpu_id_at}",
    ".long -1",                         // own.cpu_id: uninitialised
    ".zero {area_at} - {cpu_id_at} - 4",
    ".quad {dummy}",                    // area
    ".zero {id_at} - {area_at} - 8",
    ".quad {dummy} + {cpu_id_off}",     // id
    ".zero {size} - {id_at} - 8",
    ".size rseqmalloc_thread_block, {size}",
    ".popsection",
    ".pushsection .data.rel.ro.rseqmalloc_glibc,\"aw\",%progbits",
    ".balign 8",
    ".weak __rseq_offset",
    ".weak __rseq_size",
    ".globl rseqmalloc_glibc_rseq_offset",
    ".hidden rseqmalloc_glibc_rseq_offset",
    "rseqmalloc_glibc_rseq_offset: .quad __rseq_offset",
    ".globl rseqmalloc_glibc_rseq_size",
    ".hidden rseqmalloc_glibc_rseq_size",
    "rseqmalloc_glibc_rseq_size: .quad __rseq_size",
    ".popsection",
    dummy = sym DUMMY_AREA,
    align = const align_of::<ThreadBlock>(),
    size = const size_of::<ThreadBlock>(),
    cpu_id_at = const IMAGE_CPU_ID_AT,
    area_at = const IMAGE_AREA_AT,
    id_at = const IMAGE_ID_AT,
    cpu_id_off = const CPU_ID_OFFSET,
);

extern "C" {
    static rseqmalloc_glibc_rseq_offset: *const isize;
    static rseqmalloc_glibc_rseq_size: *const u32;
}

/// The free tag's key (`free_tag`, which gives it its meaning and alone writes it, once, from 0
/// to a random odd value, before any object is tagged). It lives here, below the critical
/// sections, because the owned pop reads it inside its section from its symbol: passed in a
/// register, with the loads of its address and value before the section, it made
/// `alloc_owned_out` save and restore registers (docs/benchmarks.md, "Session 66").
pub static FREE_TAG_KEY: AtomicUsize = AtomicUsize::new(0);

/// Times the kernel aborted one of our critical sections (counted in the abort handlers, which
/// increment the counter through the static's symbol: `CachePadded` keeps its value at offset
/// 0, `repr(C)` since crossbeam-utils 0.8.22; `tests::restart_counters_sit_at_their_symbols`).
pub(crate) static RESTARTS: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// Of [`RESTARTS`], those of the batch sections (batch push and pop, relocation).
pub(crate) static BATCH_RESTARTS: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// Restarts observed so far, process-wide (every section).
pub fn restarts() -> u64 {
    RESTARTS.load(Ordering::Relaxed)
}

/// Restarts of the batch sections so far, process-wide (included in [`restarts`]).
pub fn batch_restarts() -> u64 {
    BATCH_RESTARTS.load(Ordering::Relaxed)
}

/// glibc's rseq area for the calling thread, if glibc (≥ 2.35) registered one.
pub fn glibc_area() -> Option<*const Rseq> {
    // SAFETY: the two pointers are either null (weak symbols absent) or point at glibc's
    // read-only-after-start-up variables.
    unsafe {
        let size = rseqmalloc_glibc_rseq_size;
        let offset = rseqmalloc_glibc_rseq_offset;
        if size.is_null() || offset.is_null() || *size == 0 {
            return None;
        }
        Some((thread_pointer() as isize + *offset) as *const Rseq)
    }
}

/// The calling thread's CPU as the kernel last wrote it into glibc's rseq area (one load, as
/// glibc's `sched_getcpu` reads it), if glibc registered the area; else the `getcpu` system
/// call. For fallback mode's CPU hint, where rseq runs no critical section of ours.
pub fn cpu_from_glibc_area_or_kernel() -> usize {
    if let Some(a) = glibc_area() {
        // SAFETY: glibc's area for this thread is valid for the thread's life; `cpu_id` is the
        // kernel's to write, read here with a volatile load.
        let c = unsafe { core::ptr::read_volatile(&raw const (*a).cpu_id) };
        if c >= 0 {
            return c as usize;
        }
    }
    crate::os::current_cpu()
}

/// Registers `area` as the calling thread's rseq area, with glibc's signature for this
/// architecture.
///
/// # Safety
/// `area` must stay valid (static TLS) for as long as the registration lasts.
pub unsafe fn register(area: *mut Rseq) -> Result<(), i32> {
    // SAFETY: the caller guarantees `area` outlives the registration.
    unsafe { crate::os::rseq(area.cast(), RSEQ_LEN, false, RSEQ_SIG) }
}

/// Unregisters `area` (registered with [`register`] by this thread).
///
/// # Safety
/// `area` is the calling thread's registered area.
pub unsafe fn unregister(area: *mut Rseq) {
    // SAFETY: the same area, length and signature as the registration.
    let _ = unsafe { crate::os::rseq(area.cast(), RSEQ_LEN, true, RSEQ_SIG) };
}

/// What `percpu_push_homed` did with an object.
// Architectures without critical sections only ever report `Full`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// Cached: the object belongs to the calling CPU's stack now.
    Done,
    /// Not pushed: the stack is full or stopped, or rseq is off.
    Full,
    /// Not pushed: the object's span has a home whose low bits are not the slab the section
    /// ran on (owner return sends it there).
    Foreign,
}
/// What `owned_pop` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only x86_64 pops objects
pub enum OwnedPop {
    /// The object popped.
    Object(*mut u8),
    /// Nothing popped: rseq off, the slab stopped, no current span, or its list empty.
    Fail,
    /// Nothing popped: the class's per-CPU stack holds objects, which go first
    /// (`owned_pop_stack_first` only).
    Stacked,
    /// The list is corrupt at this object: it lacks its free tag, or its link decodes to an
    /// address outside the span (a write into a freed object).
    Corrupt(*mut u8),
}

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// The abort handlers add to `[rip + RESTARTS]` and `[rip + BATCH_RESTARTS]`: each counter's
    /// value must start at its static's address, inside its `CachePadded`.
    #[test]
    fn restart_counters_sit_at_their_symbols() {
        for padded in [&RESTARTS, &BATCH_RESTARTS] {
            let value: &AtomicU64 = padded;
            assert_eq!(
                value as *const AtomicU64 as usize,
                padded as *const CachePadded<AtomicU64> as usize
            );
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("rseqmalloc supports x86_64 and (fallback mode only) aarch64 Linux so far (see src/arch/mod.rs)");
