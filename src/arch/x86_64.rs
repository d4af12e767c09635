//! x86_64: the thread block in static TLS, rseq registration, and the two critical sections.
//!
//! Every rseq critical section of the allocator is in this file, each with pseudocode above it.
//! Each emits its own descriptor (`struct rseq_cs`) into the `__rseq_cs` section, and its abort
//! handler is preceded by glibc's signature, encoded inside `ud1 0x53053053(%rip), %edi` so the
//! bytes never execute as anything but a trap.

use super::{ClassBlock, Rseq, ThreadBlock, RESTARTS, SLAB_SHIFT};
use crate::sync::Ordering;
use core::arch::asm;
use core::mem::offset_of;

/// glibc's rseq signature on x86, which every abort handler carries (the `ud1` below encodes
/// it as a `const` operand) and every registration passes to the kernel.
pub const RSEQ_SIG: u32 = 0x5305_3053;
/// This architecture has the critical sections: the rseq modes can be used.
pub const HAS_CRITICAL_SECTIONS: bool = true;

/// The thread pointer.
#[inline(always)]
pub fn thread_pointer() -> usize {
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
    // SAFETY: reads the block's TLS offset from the GOT (a constant per process; the linker
    // turns it into an immediate in executables).
    unsafe {
        asm!(
            "mov {}, qword ptr [rip + rseqmalloc_thread_block@GOTTPOFF]",
            out(reg) off,
            options(nostack, readonly, preserves_flags)
        )
    };
    thread_pointer().wrapping_add_signed(off) as *mut ThreadBlock
}

/// The current CPU without rseq: `rdpid` where the CPU has it (Linux keeps the CPU number in
/// the low 12 bits of TSC_AUX), else `sched_getcpu`.
#[inline]
pub fn current_cpu() -> usize {
    use crate::sync::AtomicU8;
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
///   tb = &thread_block (a constant offset from the thread pointer)
///   area = tb.area;  if area.cpu_id < 0 goto fail (5)              // the one "rseq off" branch
/// restart (2):  area.rseq_cs = &descriptor (3)
/// start (4):    body                                              // may `jmp 5f` to fail
/// commit (6):   done (8)                                          // falls through: no jump
///
///   -- in .text.unlikely, out of the hot path's way --
///               .long RSEQ_SIG (inside `ud1 0x53053053(%rip), %edi`)
/// abort (7):    restarts += 1; goto restart
/// fail (5):     fail; goto done
/// ```
/// The descriptor (`struct rseq_cs`: version 0, flags 0, start, post-commit offset, abort) is
/// emitted into `__rseq_cs` for every copy of the sequence the compiler makes. The body gets
/// `{tb}` (the thread block's offset from `fs`), `{area}` (the rseq area in use) and a
/// scratch register `{t}`; it must not write shared
/// memory before its final instruction, the commit. The abort handler and the failure code
/// live in a cold section, so a successful operation runs straight through, without a taken
/// jump (the kernel only asks that the abort address lie outside the section and follow the
/// signature). `fail` may instead leave through a Rust `label` operand.
macro_rules! rseq_sequence {
    (body: [$($body:literal),* $(,)?], fail: $fail:literal, $($operands:tt)*) => {
        asm!(
            "mov {tb}, qword ptr [rip + rseqmalloc_thread_block@GOTTPOFF]",
            "mov {area}, qword ptr fs:[{tb} + {tb_area}]",
            "cmp dword ptr [{area} + {cpu_id}], 0",
            "jl 5f",
            ".pushsection __rseq_cs, \"aw\"",
            ".balign 32",
            "3:",
            ".long 0, 0",
            ".quad 4f, 6f - 4f, 7f",
            ".popsection",
            "2:",
            "lea {t}, [rip + 3b]",
            "mov qword ptr [{area} + {rseq_cs}], {t}",
            "4:",
            $($body,)*
            "6:",
            ".pushsection .text.unlikely.rseqmalloc_rseq, \"ax\", @progbits",
            ".byte 0x0f, 0xb9, 0x3d",
            ".long {sig}",
            "7:",
            "lock inc qword ptr [rip + {restarts}]",
            "jmp 2b",
            "5:",
            $fail,
            "jmp 8f",
            ".popsection",
            "8:",
            tb = out(reg) _,
            area = out(reg) _,
            t = out(reg) _,
            restarts = sym RESTARTS,
            tb_area = const offset_of!(ThreadBlock, area),
            cpu_id = const offset_of!(Rseq, cpu_id),
            rseq_cs = const offset_of!(Rseq, rseq_cs),
            sig = const RSEQ_SIG,
            $($operands)*
        )
    };
}

/// Byte offset, in a [`ClassBlock`], of slot `count - 1` minus `8 * count`: the pop's load of the
/// top object is `[block + 8 * count + TOP_SLOT_AT]`.
const TOP_SLOT_AT: usize = offset_of!(ClassBlock, slots) - 8;

const _: () = assert!(
    core::mem::size_of::<usize>() == 8,
    "the sections scale slots by 8"
);

/// Pops an object from the calling CPU's stack of one size class.
///
/// The slab of CPU (or concurrency id) `i` is at `slabs + i << SLAB_SHIFT`; inside it, the class
/// has a block at a fixed offset, which the caller passes as `block`. The thread block holds
/// `slabs` and a pointer `id` to the area's `cpu_id` or `mm_cid`, so everything the section
/// needs is a constant offset from the thread pointer (no GOT load, no global). The block is a
/// [`ClassBlock`] (`count`, `cap`, `floor`, then the slots); every offset below is a `const`
/// operand taken from its layout or the thread block's.
///
/// ```text
///   area = tb.area
///   if area.cpu_id < 0: return null                      // the single "rseq off" branch
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                // ---- critical section ----
///   id  = *tb.id                                         // cpu_id or mm_cid, read here
///   blk = tb.slabs + id << SLAB_SHIFT + block            // this CPU's block of the class
///   n   = blk.count
///   if n <= blk.floor: goto fail                          // empty (or stopped by a drain)
///   obj = blk.slots[n - 1]
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
/// When the thread's area has a non-negative cpu id, the thread block's `slabs` must map one
/// slab per possible id with initialised or zeroed headers, its `id` must point at that area's
/// `cpu_id` or `mm_cid`, and `block` must be a class's block offset inside a slab.
#[inline(always)]
pub unsafe fn percpu_pop(block: usize) -> *mut u8 {
    let obj: *mut u8;
    // SAFETY: the caller guarantees the slab layout; the sequence follows the rseq ABI: the
    // descriptor is registered before `start`, the section ends with one committing store, and
    // the abort handler is preceded by the signature the area was registered with.
    unsafe {
        rseq_sequence!(
            body: [
                "mov {blk}, qword ptr fs:[{tb} + {tb_id}]",
                "mov {blk:e}, dword ptr [{blk}]",
                "shl {blk}, {shift}",
                "add {blk}, qword ptr fs:[{tb} + {tb_slabs}]",
                "add {blk}, {block}",
                "movzx {n:e}, word ptr [{blk} + {count}]",
                "cmp {n:x}, word ptr [{blk} + {floor}]",
                "jbe 5f",
                "mov {obj}, qword ptr [{blk} + {n} * 8 + {top}]",
                "dec {n:e}",
                "mov word ptr [{blk} + {count}], {n:x}",
            ],
            fail: "xor {obj:e}, {obj:e}",
            blk = out(reg) _,
            n = out(reg) _,
            obj = out(reg) obj,
            block = in(reg) block,
            shift = const SLAB_SHIFT,
            tb_id = const offset_of!(ThreadBlock, id),
            tb_slabs = const offset_of!(ThreadBlock, slabs),
            count = const offset_of!(ClassBlock, count),
            floor = const offset_of!(ClassBlock, floor),
            top = const TOP_SLOT_AT,
            options(nostack),
        );
    }
    obj
}

/// Pushes `obj` on the calling CPU's stack of one size class; false when the stack is full or
/// rseq is off. Same layout as [`percpu_pop`].
///
/// ```text
///   area = tb.area
///   if area.cpu_id < 0: return false                     // the single "rseq off" branch
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                // ---- critical section ----
///   id  = *tb.id
///   blk = tb.slabs + id << SLAB_SHIFT + block
///   n   = blk.count
///   if n >= blk.cap: goto fail                            // full (or stopped: cap 0)
///   blk.slots[n] = obj                                    // invisible until the commit
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
pub unsafe fn percpu_push(block: usize, obj: *mut u8) -> bool {
    // SAFETY: as in `percpu_pop`.
    unsafe {
        rseq_sequence!(
            body: [
                "mov {blk}, qword ptr fs:[{tb} + {tb_id}]",
                "mov {blk:e}, dword ptr [{blk}]",
                "shl {blk}, {shift}",
                "add {blk}, qword ptr fs:[{tb} + {tb_slabs}]",
                "add {blk}, {block}",
                "movzx {n:e}, word ptr [{blk} + {count}]",
                "cmp {n:x}, word ptr [{blk} + {cap}]",
                "jae 5f",
                "mov qword ptr [{blk} + {n} * 8 + {slots}], {obj}",
                "inc {n:e}",
                "mov word ptr [{blk} + {count}], {n:x}",
            ],
            fail: "jmp {full}",
            blk = out(reg) _,
            n = out(reg) _,
            block = in(reg) block,
            obj = in(reg) obj,
            shift = const SLAB_SHIFT,
            tb_id = const offset_of!(ThreadBlock, id),
            tb_slabs = const offset_of!(ThreadBlock, slabs),
            count = const offset_of!(ClassBlock, count),
            cap = const offset_of!(ClassBlock, cap),
            slots = const offset_of!(ClassBlock, slots),
            full = label { return false },
            options(nostack),
        );
    }
    true
}
