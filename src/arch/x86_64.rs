//! x86_64: the thread block in static TLS, rseq registration, and the two critical sections.
//!
//! Every rseq critical section of the allocator is in this file, each with pseudocode above it.
//! Each emits its own descriptor (`struct rseq_cs`) into the `__rseq_cs` section, and its abort
//! handler is preceded by glibc's signature, encoded inside `ud1 0x53053053(%rip), %edi` so the
//! bytes never execute as anything but a trap.

use super::{Rseq, ThreadBlock, DUMMY_AREA};
use crate::sync::{AtomicU64, Ordering};
use core::arch::{asm, global_asm};

/// log2 of the per-CPU slab size in bytes (101 class blocks of 1 KiB fit in 128 KiB).
pub const SLAB_SHIFT: u32 = 17;

const _: () = {
    assert!(core::mem::offset_of!(ThreadBlock, area) == 32);
    assert!(core::mem::size_of::<ThreadBlock>() == 64);
    assert!(core::mem::size_of::<Rseq>() == 32);
};

// The thread block lives in `.tdata` (initial-exec TLS, so the fast path reaches it from the
// thread pointer without a call, in executables and in LD_PRELOADed libraries alike). It starts
// with our own rseq area whose cpu id is -1 and `area` pointing at `DUMMY_AREA`.
//
// glibc's `__rseq_offset` and `__rseq_size` are referenced weakly, so a glibc without them still
// links and loads: the pointers below are then null.
global_asm!(
    ".pushsection .tdata.rseqmalloc_thread_block,\"awT\",@progbits",
    ".balign 32",
    ".globl rseqmalloc_thread_block",
    ".hidden rseqmalloc_thread_block",
    ".type rseqmalloc_thread_block,@object",
    "rseqmalloc_thread_block:",
    ".long 0",          // cpu_id_start
    ".long -1",         // cpu_id: uninitialised
    ".quad 0",          // rseq_cs
    ".long 0, 0, 0, 0", // flags, node_id, mm_cid, padding
    ".quad {dummy}",    // area
    ".long 0, 0",       // state, depth
    ".long 0, 0",       // cpu_hint, hint_left
    ".zero 8",
    ".size rseqmalloc_thread_block, 64",
    ".popsection",
    ".pushsection .data.rel.ro.rseqmalloc_glibc,\"aw\",@progbits",
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
);

extern "C" {
    static rseqmalloc_glibc_rseq_offset: *const isize;
    static rseqmalloc_glibc_rseq_size: *const u32;
}

/// Times the kernel aborted one of our critical sections (counted in the abort handlers).
static RESTARTS: AtomicU64 = AtomicU64::new(0);

/// Restarts observed so far, process-wide.
pub fn restarts() -> u64 {
    RESTARTS.load(Ordering::Relaxed)
}

#[inline(always)]
fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86_64 Linux `%fs:0` holds the thread pointer itself (TCB self-pointer).
    unsafe {
        asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    tp
}

/// The calling thread's block.
#[inline(always)]
pub fn thread_block() -> *mut ThreadBlock {
    let off: isize;
    // SAFETY: reads the block's TLS offset from the GOT (a constant per process).
    unsafe {
        asm!(
            "mov {}, qword ptr [rip + rseqmalloc_thread_block@GOTTPOFF]",
            out(reg) off,
            options(nostack, readonly, preserves_flags)
        )
    };
    (thread_pointer() as isize + off) as *mut ThreadBlock
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

/// Registers `area` as the calling thread's rseq area, with glibc's signature.
///
/// # Safety
/// `area` must stay valid (static TLS) for as long as the registration lasts.
pub unsafe fn register(area: *mut Rseq) -> Result<(), i32> {
    // SAFETY: the caller guarantees `area` outlives the registration.
    let r = unsafe { libc::syscall(libc::SYS_rseq, area, super::RSEQ_LEN, 0, super::RSEQ_SIG) };
    if r == 0 {
        Ok(())
    } else {
        // SAFETY: reading errno is always allowed.
        Err(unsafe { *libc::__errno_location() })
    }
}

/// Unregisters `area` (registered with [`register`] by this thread).
///
/// # Safety
/// `area` is the calling thread's registered area.
pub unsafe fn unregister(area: *mut Rseq) {
    // SAFETY: RSEQ_FLAG_UNREGISTER with the same area, length and signature.
    unsafe { libc::syscall(libc::SYS_rseq, area, super::RSEQ_LEN, 1, super::RSEQ_SIG) };
}

/// The current CPU without rseq: `rdpid` where the CPU has it (Linux keeps the CPU number in
/// the low 12 bits of TSC_AUX), else `sched_getcpu`.
#[inline]
pub fn current_cpu() -> usize {
    use core::sync::atomic::AtomicU8;
    static HAS_RDPID: AtomicU8 = AtomicU8::new(2);
    let mut has = HAS_RDPID.load(Ordering::Relaxed);
    if has == 2 {
        let leaf7 = core::arch::x86_64::__cpuid_count(7, 0);
        has = ((leaf7.ecx >> 22) & 1) as u8;
        HAS_RDPID.store(has, Ordering::Relaxed);
    }
    if has == 1 {
        let aux: u64;
        // SAFETY: rdpid exists (checked above) and only writes its output register.
        unsafe { asm!("rdpid {}", out(reg) aux, options(nostack, nomem, preserves_flags)) };
        (aux & 0xfff) as usize
    } else {
        crate::os::current_cpu()
    }
}

/// Emits one restartable sequence around `body`, which runs between the section's `start`
/// (label 4) and its commit (label 6, right after the body's last, committing instruction):
///
/// ```text
///   area = thread_block.area;  if area.cpu_id < 0 goto fail (5)   // the one "rseq off" branch
/// restart (2):  area.rseq_cs = &descriptor (3)
/// start (4):    body                                              // may `jmp 5f` to fail
/// commit (6):   ok; goto done (8)
///               .long RSEQ_SIG (inside `ud1 0x53053053(%rip), %edi`)
/// abort (7):    restarts += 1; goto restart
/// fail (5):     fail
/// done (8):
/// ```
/// The descriptor (`struct rseq_cs`: version 0, flags 0, start, post-commit offset, abort) is
/// emitted into `__rseq_cs` for every copy of the sequence the compiler makes. The body gets
/// `{area}` (the rseq area in use) and a scratch register `{t}`; it must not write shared
/// memory before its final instruction, the commit.
macro_rules! rseq_sequence {
    (body: [$($body:literal),* $(,)?], ok: $ok:literal, fail: $fail:literal, $($operands:tt)*) => {
        asm!(
            "mov {area}, qword ptr [rip + rseqmalloc_thread_block@GOTTPOFF]",
            "mov {area}, qword ptr fs:[{area} + 32]",
            "cmp dword ptr [{area} + 4], 0",
            "jl 5f",
            ".pushsection __rseq_cs, \"aw\"",
            ".balign 32",
            "3:",
            ".long 0, 0",
            ".quad 4f, 6f - 4f, 7f",
            ".popsection",
            "2:",
            "lea {t}, [rip + 3b]",
            "mov qword ptr [{area} + 8], {t}",
            "4:",
            $($body,)*
            "6:",
            $ok,
            "jmp 8f",
            ".byte 0x0f, 0xb9, 0x3d",
            ".long 0x53053053",
            "7:",
            "lock inc qword ptr [rip + {restarts}]",
            "jmp 2b",
            "5:",
            $fail,
            "8:",
            area = out(reg) _,
            t = out(reg) _,
            restarts = sym RESTARTS,
            $($operands)*
        )
    };
}

/// Pops an object from the calling CPU's stack of one size class.
///
/// The slab of CPU (or concurrency id) `i` is at `slabs + i << SLAB_SHIFT`; inside it, the class
/// has a block at a fixed offset, and the caller passes `block = slabs + that offset`. The block
/// starts with the header `count: u16, cap: u16, floor: u16` and slot `k` is at `8 + 8k`, so
/// the top object (slot `count - 1`) sits at `8 * count`.
///
/// ```text
///   area = thread_block.area
///   if area.cpu_id < 0: return null                      // the single "rseq off" branch
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                // ---- critical section ----
///   id  = *(area + field)                                // cpu_id or mm_cid, read here
///   blk = block + id << SLAB_SHIFT                       // this CPU's block of the class
///   n   = blk.count
///   if n <= blk.floor: goto fail                          // empty (or stopped by a drain)
///   obj = *(blk + 8 * n)                                  // slot n - 1
///   blk.count = n - 1                                     // the one committing store
/// post_commit:                                          // --------------------------
///   return obj
/// abort:  (preceded by RSEQ_SIG)  goto restart
/// fail:   return null
/// ```
/// Restart-safe: nothing before the commit writes shared memory, so an abort (preemption,
/// migration, signal) leaves the slab as it was and the retry reads the new id.
///
/// # Safety
/// When the thread's area has a non-negative cpu id, the slabs must map one slab per possible
/// id with initialised or zeroed headers, `block` must be the class's block in slab 0 and
/// `field` 4 or 24.
#[inline(always)]
pub unsafe fn percpu_pop(block: usize, field: usize) -> *mut u8 {
    let obj: *mut u8;
    // SAFETY: the caller guarantees the slab layout; the sequence follows the rseq ABI: the
    // descriptor is registered before `start`, the section ends with one committing store, and
    // the abort handler is preceded by the signature the area was registered with.
    unsafe {
        rseq_sequence!(
            body: [
                "mov {blk:e}, dword ptr [{area} + {field}]",
                "shl {blk}, {shift}",
                "add {blk}, {block}",
                "movzx {n:e}, word ptr [{blk}]",
                "cmp {n:x}, word ptr [{blk} + 4]",
                "jbe 5f",
                "mov {obj}, qword ptr [{blk} + {n} * 8]",
                "dec {n:e}",
                "mov word ptr [{blk}], {n:x}",
            ],
            ok: "",
            fail: "xor {obj:e}, {obj:e}",
            blk = out(reg) _,
            n = out(reg) _,
            obj = out(reg) obj,
            block = in(reg) block,
            field = in(reg) field,
            shift = const SLAB_SHIFT,
            options(nostack),
        );
    }
    obj
}

/// Pushes `obj` on the calling CPU's stack of one size class; false when the stack is full or
/// rseq is off. Same layout as [`percpu_pop`].
///
/// ```text
///   area = thread_block.area
///   if area.cpu_id < 0: return false                     // the single "rseq off" branch
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                // ---- critical section ----
///   id  = *(area + field)
///   blk = block + id << SLAB_SHIFT
///   n   = blk.count
///   if n >= blk.cap: goto fail                            // full (or stopped: cap 0)
///   *(blk + 8 + 8 * n) = obj                              // slot n, invisible until the commit
///   blk.count = n + 1                                     // the one committing store
/// post_commit:                                          // --------------------------
///   return true
/// abort:  (preceded by RSEQ_SIG)  goto restart
/// fail:   return false
/// ```
/// Restart-safe: the slot written before the commit lies above `count`, so an aborted attempt
/// leaves garbage only where no reader looks.
///
/// # Safety
/// As for [`percpu_pop`]; `obj` is handed to the cache when this returns true.
#[inline(always)]
pub unsafe fn percpu_push(block: usize, field: usize, obj: *mut u8) -> bool {
    let ok: usize;
    // SAFETY: as in `percpu_pop`.
    unsafe {
        rseq_sequence!(
            body: [
                "mov {blk:e}, dword ptr [{area} + {field}]",
                "shl {blk}, {shift}",
                "add {blk}, {block}",
                "movzx {n:e}, word ptr [{blk}]",
                "cmp {n:x}, word ptr [{blk} + 2]",
                "jae 5f",
                "mov qword ptr [{blk} + {n} * 8 + 8], {obj}",
                "inc {n:e}",
                "mov word ptr [{blk}], {n:x}",
            ],
            ok: "mov {ok:e}, 1",
            fail: "xor {ok:e}, {ok:e}",
            blk = out(reg) _,
            n = out(reg) _,
            ok = out(reg) ok,
            block = in(reg) block,
            field = in(reg) field,
            obj = in(reg) obj,
            shift = const SLAB_SHIFT,
            options(nostack),
        );
    }
    ok != 0
}
