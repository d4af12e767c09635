//! x86_64: the thread block in static TLS, rseq registration, and the critical sections.
//!
//! Every rseq critical section of the allocator is in this file, each with pseudocode above it.
//! Each emits its own descriptor (`struct rseq_cs`) into the `__rseq_cs` section, and its abort
//! handler is preceded by glibc's signature, encoded inside `ud1 0x53053053(%rip), %edi` so the
//! bytes never execute as anything but a trap.

use super::{
    ClassHeader, OwnedPop, OwnedWords, Push, Rseq, ThreadBlock, BATCH_RESTARTS, CLASS_HEADERS_AT,
    CUR_AT, FREE_TAG_KEY, OWNED_HOME_AT, OWNED_STOP_AT, RESTARTS, SLAB_SHIFT, SLOTS_AT, SLOT_SHIFT,
};
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

/// The thread block's offset from the thread pointer (initial-exec TLS: a GOT load in a
/// shared library, an immediate once the linker relaxes it in an executable). Constant for
/// the process, so the block is `pure` and `nomem`: the compiler loads it once in a function
/// and every access below (the note, the sections) is one `fs:`-relative instruction.
#[inline(always)]
fn tb_offset() -> usize {
    let off: usize;
    // SAFETY: reads the GOT entry the dynamic linker filled before any code of ours ran, and
    // which never changes afterwards (hence `nomem`).
    unsafe {
        asm!(
            "mov {}, qword ptr [rip + rseqmalloc_thread_block@GOTTPOFF]",
            out(reg) off,
            options(nostack, pure, nomem, preserves_flags)
        )
    };
    off
}

/// Remembers `p`, of class `c`, as the calling thread's last small allocation (see
/// `ThreadBlock::last_alloc`): two stores, addressed from the thread pointer.
#[inline(always)]
pub fn note_alloc(p: *mut u8, c: usize) {
    // SAFETY: writes two words of the calling thread's own block (initial-exec TLS), which
    // only this thread touches.
    unsafe {
        asm!(
            "mov qword ptr fs:[{t} + {at_p}], {p}",
            "mov qword ptr fs:[{t} + {at_c}], {c}",
            t = in(reg) tb_offset(),
            p = in(reg) p,
            c = in(reg) c,
            at_p = const offset_of!(ThreadBlock, last_alloc),
            at_c = const offset_of!(ThreadBlock, last_class),
            options(nostack, preserves_flags)
        )
    };
}

/// One word of the calling thread's own block, `AT` bytes into it.
#[inline(always)]
fn block_word<const AT: usize>() -> usize {
    const { assert!(AT.is_multiple_of(8) && AT + 8 <= size_of::<ThreadBlock>()) };
    let v: usize;
    // SAFETY: reads one word of the calling thread's own block (initial-exec TLS); `AT` is a
    // field's offset inside it.
    unsafe {
        asm!(
            "mov {v}, qword ptr fs:[{t} + {at}]",
            t = in(reg) tb_offset(),
            v = out(reg) v,
            at = const AT,
            options(nostack, readonly, pure, preserves_flags)
        )
    };
    v
}

/// The calling thread's last small allocation, as [`note_alloc`] left it.
#[inline(always)]
pub fn noted_ptr() -> usize {
    block_word::<{ offset_of!(ThreadBlock, last_alloc) }>()
}

/// The calling thread's owned routes (`ThreadBlock::owned`): bit `c` set when its C
/// allocations and frees of class `c` use owned spans.
#[inline(always)]
pub fn owned_routes() -> usize {
    block_word::<{ offset_of!(ThreadBlock, owned) }>()
}

/// The class of the calling thread's last small allocation, as [`note_alloc`] left it (0 before
/// the first): owner return's hint that this thread allocates objects of that class
/// (`percpu::keeps_foreign`).
#[inline(always)]
pub fn noted_class() -> usize {
    block_word::<{ offset_of!(ThreadBlock, last_class) }>()
}

/// `c` (the page map's class of the object being freed), taken from the thread block's
/// `last_class` when the two are equal: the value is the same, but when the branch below is
/// predicted the push that uses it need not wait for the page map (see `free_inner` in
/// lib.rs). Load, compare and choice are one block of assembly: the compiler cannot replace
/// the result with `c`, and a signal handler that allocates (and so rewrites the note) between
/// the load and the push cannot change the value compared, which is the value returned.
#[inline(always)]
pub fn confirmed_class(c: usize) -> usize {
    let k: usize;
    // SAFETY: reads one word of the calling thread's own block (initial-exec TLS); the result
    // is `c` on every path.
    unsafe {
        asm!(
            "mov {k}, qword ptr fs:[{t} + {at}]",
            "cmp {k}, {c}",
            "je 2f",
            "mov {k}, {c}",
            "2:",
            t = in(reg) tb_offset(),
            k = out(reg) k,
            c = in(reg) c,
            at = const offset_of!(ThreadBlock, last_class),
            options(nostack, readonly)
        )
    };
    k
}

/// `x`, as a value the compiler cannot see through: it cannot replace the result with an
/// earlier value it knows equal (and keep that one in a register meanwhile), nor fold it.
/// `percpu::owned::push` derives a span's record from its owned words after the push section
/// this way, so that `free_owned` keeps no register for the record across the section, and
/// `pagemap::split` tests its bound on the root slot, which the compiler would turn back into
/// a test of the address's top bits.
#[inline(always)]
pub fn opaque(x: usize) -> usize {
    let mut x = x;
    // SAFETY: an empty block: no instruction, no memory.
    unsafe { asm!("/* {x} */", x = inout(reg) x, options(pure, nomem, nostack, preserves_flags)) };
    x
}

/// The calling thread's block.
#[inline(always)]
pub fn thread_block() -> *mut ThreadBlock {
    thread_pointer().wrapping_add(tb_offset()) as *mut ThreadBlock
}

/// The current CPU without rseq: `rdpid` where the CPU has it (Linux keeps the CPU number in
/// the low 12 bits of TSC_AUX), else glibc's rseq area or the `getcpu` system call.
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
        super::cpu_from_glibc_area_or_kernel()
    }
}

/// Emits one restartable sequence around `body`, which runs between the section's `start`
/// (label 4) and its commit (label 6, right after the body's last, committing instruction):
///
/// ```text
///   tb = &thread_block (a constant offset from the thread pointer)
///   area = tb.area;  if area.cpu_id < 0 goto fail (5)              // the one "rseq off" branch
/// restart (2):  area.rseq_cs = &descriptor (3)
/// start (4):    body                                              // may `jmp 5f` to fail, or
///                                                                 // `jmp 8f` to leave
/// commit (6):   done (8)                                          // falls through: no jump
///
///   -- in .text.unlikely, out of the hot path's way --
///               .long RSEQ_SIG (inside `ud1 0x53053053(%rip), %edi`)
/// abort (7):    RESTARTS += 1; on_abort; goto restart
/// fail (5):     fail; goto done
/// ```
/// The descriptor (`struct rseq_cs`: version 0, flags 0, start, post-commit offset, abort) is
/// emitted into `__rseq_cs` for every copy of the sequence the compiler makes. The body gets
/// `{tb}` (the thread block's offset from `fs`), `{area}` (the rseq area in use) and a
/// scratch register `{t}`; it must not write anything another thread can read before its
/// final instruction, the commit (it may write the caller's private memory and slots no
/// reader looks at), and must not change its input registers (a restart runs it again).
/// `on_abort:` adds instructions to the abort handler (the batch sections count their restarts
/// in [`BATCH_RESTARTS`] too). The abort handler and the failure code
/// live in a cold section, so a successful operation runs straight through, without a taken
/// jump (the kernel only asks that the abort address lie outside the section and follow the
/// signature). `fail` may instead leave through a Rust `label` operand, and may define a
/// second entry of its own after its first instructions (the owned pop's label 9, which the
/// body jumps to, across into the cold section, and which the body itself must not define).
/// A body may also leave by `jmp 8f` with nothing committed, skipping `fail` (the owned pop's
/// stack test, whose result is not a failure's): label 8 lies past the commit, outside the
/// section.
macro_rules! rseq_sequence {
    ($(on_abort: [$($abort:literal),*],)? body: [$($body:literal),* $(,)?], fail: $fail:literal,
     $($operands:tt)*) => {
        asm!(
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
            $($($abort,)*)?
            "jmp 2b",
            "5:",
            $fail,
            "jmp 8f",
            ".popsection",
            "8:",
            tb = in(reg) tb_offset(),
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

/// [`rseq_sequence!`] for a section on the calling CPU's slab: the body starts with `{slab}`
/// holding the slab's address,
///
/// ```text
///   slab = tb.slabs + *tb.id << SLAB_SHIFT        // id: cpu_id or mm_cid, read in the section
/// ```
///
/// (an `id_check` runs between the id's load and the shift, with `{slab:e}` holding the id),
/// and may use `{slots}` (the byte offset of slot 0, [`SLOTS_AT`]).
macro_rules! slab_sequence {
    ($(on_abort: [$($abort:literal),*],)? $(id_check: [$($check:literal),* $(,)?],)?
     body: [$($body:literal),* $(,)?], fail: $fail:literal, $($operands:tt)*) => {
        rseq_sequence!(
            $(on_abort: [$($abort),*],)?
            body: [
                "mov {slab}, qword ptr fs:[{tb} + {tb_id}]",
                "mov {slab:e}, dword ptr [{slab}]",
                $($($check,)*)?
                "shl {slab}, {shift}",
                "add {slab}, qword ptr fs:[{tb} + {tb_slabs}]",
                $($body),*
            ],
            fail: $fail,
            slab = out(reg) _,
            shift = const SLAB_SHIFT,
            tb_id = const offset_of!(ThreadBlock, id),
            tb_slabs = const offset_of!(ThreadBlock, slabs),
            slots = const SLOTS_AT,
            $($operands)*
        )
    };
}

/// The push section ([`percpu_push`]'s pseudocode) on the slab [`slab_sequence!`] finds, for
/// class `c` and `obj`; a failure (full, stopped, rseq off) runs the `full` block. A `slab_check`
/// (with the operands it names, each followed by a comma) runs first, with `{slab}` holding the
/// slab's address: [`percpu_push_homed`].
macro_rules! push_sequence {
    (c: $c:expr, obj: $obj:expr, full: $full:block
     $(, slab_check: [$($check:literal),* $(,)?], $($operands:tt)*)?) => {
        slab_sequence!(
            body: [
                $($($check,)*)?
                "mov {t:e}, dword ptr [{slab} + {c} * 8 + {hdrs} + {current}]",
                "movzx {n:e}, {t:x}",
                "cmp {n:x}, word ptr [{slab} + {c} * 8 + {hdrs} + {end}]",
                "jae 5f",
                "mov qword ptr [{slab} + {n} * 8 + {slots}], {obj}",
                "inc {t:e}",
                "mov dword ptr [{slab} + {c} * 8 + {hdrs} + {current}], {t:e}",
            ],
            fail: "jmp {full}",
            n = out(reg) _,
            c = in(reg) $c,
            obj = in(reg) $obj,
            hdrs = const CLASS_HEADERS_AT,
            current = const offset_of!(ClassHeader, current),
            end = const offset_of!(ClassHeader, end),
            full = label $full,
            $($($operands)*)?
            options(nostack),
        )
    };
}

/// The batch pop section ([`percpu_pop_batch`]'s pseudocode) on the slab [`slab_sequence!`]
/// finds, for `hdr`, into `out` (at most `max` objects), the count popped in `k`; an
/// `id_check` (with the operands it names, each followed by a comma) runs between the id's load
/// and the slab's address: [`percpu_pop_batch_on`].
macro_rules! pop_batch_sequence {
    (hdr: $hdr:expr, out: $out:expr, max: $max:expr, k: $k:ident
     $(, id_check: [$($check:literal),* $(,)?], $($operands:tt)*)?) => {
        slab_sequence!(
            on_abort: ["lock inc qword ptr [rip + {batch}]"],
            $(id_check: [$($check),*],)?
            body: [
                "mov {t:e}, dword ptr [{slab} + {hdr} + {current}]",
                "movzx {n:e}, {t:x}",
                "movzx {k:e}, word ptr [{slab} + {hdr} + {floor}]",
                "neg {k}",
                "add {k}, {n}",
                "jle 5f",
                "cmp {k}, {max}",
                "cmova {k}, {max}",
                "sub {n}, {k}",
                "lea {src}, [{slab} + {n} * 8 + {slots}]",
                "xor {i:e}, {i:e}",
                "9:",
                "mov {n}, qword ptr [{src} + {i} * 8]",
                "mov qword ptr [{out} + {i} * 8], {n}",
                "inc {i}",
                "cmp {i}, {k}",
                "jb 9b",
                "sub {t:e}, {k:e}",
                "mov dword ptr [{slab} + {hdr} + {current}], {t:e}",
            ],
            fail: "xor {k:e}, {k:e}",
            n = out(reg) _,
            k = out(reg) $k,
            src = out(reg) _,
            i = out(reg) _,
            batch = sym BATCH_RESTARTS,
            hdr = in(reg) $hdr,
            out = in(reg) $out,
            max = in(reg) $max,
            current = const offset_of!(ClassHeader, current),
            floor = const offset_of!(ClassHeader, floor),
            $($($operands)*)?
            options(nostack),
        )
    };
}

const _: () = assert!(
    core::mem::size_of::<usize>() == 8 && 1 << SLOT_SHIFT == 8,
    "the sections scale slot indices by 8"
);
const _: () = assert!(
    offset_of!(ClassHeader, current) == 0 && offset_of!(ClassHeader, begin) == 2,
    "the sections read and commit `current` as the low half of the word `current | begin << 16`"
);

/// Pops an object from the calling CPU's stack of one size class.
///
/// The slab of CPU (or concurrency id) `i` is at `slabs + i << SLAB_SHIFT`; inside it, class `c`
/// has a [`ClassHeader`] at byte `hdr(c) = CLASS_HEADERS_AT + 8 * c`, which the sections address
/// as `[slab + c * 8 + CLASS_HEADERS_AT]` (no instruction forms the offset; a `lea` did until
/// session 68), and slot `k` of the slab is at byte `SLOTS_AT + 8 * k`. The thread block holds
/// `slabs` and a pointer `id` to the area's `cpu_id` or `mm_cid`, so everything the section
/// needs is a constant offset from the thread pointer (no GOT load, no global); every offset
/// below is a `const` operand taken from the header's layout or the thread block's.
///
/// ```text
///   area = tb.area
///   if area.cpu_id < 0: return null                      // the single "rseq off" branch
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                // ---- critical section ----
///   id   = *tb.id                                        // cpu_id or mm_cid, read here
///   slab = tb.slabs + id << SLAB_SHIFT                   // this CPU's slab
///   w    = slab[hdr(c)].current | slab[hdr(c)].begin << 16   // one 32-bit load
///   n    = w & 0xffff                                    // current
///   if n <= slab[hdr(c)].floor: goto fail                // empty (or stopped by a drain)
///   obj  = slot[n - 1]
///   slab[hdr(c)].(current, begin) = w - 1                // the one committing store (32-bit)
/// post_commit:                                          // --------------------------
///   return obj
/// abort:  (preceded by RSEQ_SIG)  goto restart
/// fail:   return null
/// ```
/// Restart-safe: nothing before the commit writes shared memory, so an abort (preemption,
/// migration, signal) leaves the slab as it was and the retry reads the new id. The pop,
/// push and batch sections commit `current` through the 32-bit word it shares with `begin`
/// (see [`ClassHeader`] for why, and why `begin` cannot change under a section); the other
/// sections' pseudocode writes it as `current` where the word's upper half is only carried
/// along.
///
/// # Safety
/// When the thread's area has a non-negative cpu id, the thread block's `slabs` must map one
/// slab per possible id with initialised or zeroed headers whose indices lie inside the slab,
/// its `id` must point at that area's `cpu_id` or `mm_cid`, and `c` must be below 128 (its
/// header then lies inside the slab).
#[inline(always)]
pub unsafe fn percpu_pop(c: usize) -> *mut u8 {
    let obj: *mut u8;
    // SAFETY: the caller guarantees the slab layout; the sequence follows the rseq ABI: the
    // descriptor is registered before `start`, the section ends with one committing store, and
    // the abort handler is preceded by the signature the area was registered with.
    unsafe {
        slab_sequence!(
            body: [
                "mov {t:e}, dword ptr [{slab} + {c} * 8 + {hdrs} + {current}]",
                "movzx {n:e}, {t:x}",
                "cmp {n:x}, word ptr [{slab} + {c} * 8 + {hdrs} + {floor}]",
                "jbe 5f",
                "mov {obj}, qword ptr [{slab} + {n} * 8 + {slots} - 8]",
                "dec {t:e}",
                "mov dword ptr [{slab} + {c} * 8 + {hdrs} + {current}], {t:e}",
            ],
            fail: "xor {obj:e}, {obj:e}",
            n = out(reg) _,
            obj = out(reg) obj,
            c = in(reg) c,
            hdrs = const CLASS_HEADERS_AT,
            current = const offset_of!(ClassHeader, current),
            floor = const offset_of!(ClassHeader, floor),
            options(nostack),
        );
    }
    obj
}

/// The owned pop section ([`owned_pop`]'s pseudocode) for class `c`, with `stack_check` (and
/// the operands it names, each followed by a comma) after the stop word's test; evaluates to
/// the [`OwnedPop`] it found. Used inside `unsafe`.
///
/// The section's one output says what it found: `h` is the object (at least 16, below 2^48),
/// 0 (`Fail`), 1 (`Stacked`), or a corrupt list's head with bit 63 set (`Corrupt`), which the
/// failure code sets on the way out (label 9). The key is read from [`FREE_TAG_KEY`]'s symbol.
/// One register fewer than a separate "corrupt" flag and the key as operands, which made
/// `alloc_owned_out` save three registers, and one compare and branch to tell an object from
/// the rest where the flag took four (docs/benchmarks.md, "Session 66").
macro_rules! owned_pop_sequence {
    (c: $c:expr, stack_check: [$($check:literal),* $(,)?] $(, $($operands:tt)*)?) => {{
        let h: usize;
        slab_sequence!(
            body: [
                "# (no slot is read here; slot 0 is at {slots})",
                "cmp dword ptr [{slab} + {stop}], 0",
                "jne 5f",
                $($check,)*
                "mov {s}, qword ptr [{slab} + {c} * 8 + {cur}]",
                "test {s}, {s}",
                "jz 5f",
                "mov {w}, qword ptr [{s} + {local}]",
                "mov {h}, qword ptr [rip + {mask}]",
                "and {h}, {w}",
                "jz 5f",
                "mov {n}, qword ptr [rip + {key}]",
                "xor {n}, {h}",
                "cmp qword ptr [{h} + 8], {n}",
                "jne 9f",
                "mov {n}, qword ptr [{h}]",
                "xor {n}, qword ptr [rip + {key}]",
                "jz 20f",
                "mov {t}, {n}",
                "sub {t}, qword ptr [{s} + {start}]",
                "cmp {t}, qword ptr [{s} + {room}]",
                "ja 9f",
                "prefetcht0 byte ptr [{n}]",
                "20:",
                "sub {w}, {h}",
                "sub {w}, qword ptr [rip + {one}]",
                "or {w}, {n}",
                "mov qword ptr [{s} + {local}], {w}",
            ],
            // Label 5 (every failure, before the section too) sets `h` to 0; label 9, a
            // corrupt list, marks the head in bit 63 and leaves past it. The stack's test sets
            // 1 and leaves without them (`owned_pop_stack_first`).
            fail: "xor {h:e}, {h:e}\njmp 8f\n9:\nbts {h}, 63",
            s = out(reg) _,
            w = out(reg) _,
            n = out(reg) _,
            h = out(reg) h,
            c = in(reg) $c,
            key = sym FREE_TAG_KEY,
            mask = sym HEAD_MASK,
            one = sym COUNT_ONE,
            stop = const OWNED_STOP_AT,
            cur = const CUR_AT,
            local = const offset_of!(OwnedWords, local),
            start = const offset_of!(OwnedWords, start),
            room = const offset_of!(OwnedWords, room),
            $($($operands)*)?
            options(nostack),
        );
        const CORRUPT: usize = 1 << 63;
        if h.wrapping_sub(2) < CORRUPT - 2 {
            OwnedPop::Object(h as *mut u8)
        } else if h & CORRUPT != 0 {
            OwnedPop::Corrupt((h & !CORRUPT) as *mut u8)
        } else if h == 1 {
            OwnedPop::Stacked
        } else {
            OwnedPop::Fail
        }
    }};
}

/// Pops the first free object of the calling CPU's current owned span of class `c` (owned spans,
/// `owned_spans=on`: docs/design.md, "Owned spans").
///
/// ```text
///   area = tb.area
///   if area.cpu_id < 0: return Fail                       // the single "rseq off" branch
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                 // ---- critical section ----
///   slab = tb.slabs + *tb.id << SLAB_SHIFT
///   if slab.owned_stop != 0: goto fail                   // a drain is at work
///   s    = slab.cur[c];  if s == 0: goto fail            // no current span
///   w    = s.local;  h = w & HEAD_MASK;  if h == 0: goto fail
///   key  = FREE_TAG_KEY                                  // a load from its symbol
///   if h[1] != key ^ h: goto corrupt                     // h carries no free tag
///   n    = h[0] ^ key                                    // the next free object, decoded
///   if n != 0 and n - s.start > s.room:                  // unsigned: a link bent out of
///       goto corrupt                                     // the span, or into its last 15 bytes
///   if n != 0: prefetch n                                // the next pop's head line
///   s.local = (w - h - COUNT_ONE) | n                    // the one committing store
/// post_commit:
///   return Object(h)
/// abort:    (preceded by RSEQ_SIG)  goto restart
/// fail:     h = 0; return Fail                          // before the section too
/// corrupt:  return Corrupt(h)                            // h | 1 << 63 in the register
/// ```
/// (`HEAD_MASK` is `(1 << 48) - 1`, `COUNT_ONE` is `1 << 48`, both operands in memory: `w - h`
/// is the count alone, `count - 1` then, and `n` fills the low bits; `s.room` is the span's
/// length less 16, so one subtraction and one unsigned compare test `s.start <= n <= s.end -
/// 16`. Extracting the head with two shifts, decrementing the count with three and testing
/// the range with two compares took four instructions more (two more for the list's last
/// object, whose range check is skipped), and one thread's allocation phase
/// in `burst_phases`' moving band about 3 % longer: docs/benchmarks.md, "Session 68".)
/// Restart-safe: nothing before the commit writes shared
/// memory (`h` and the loaded words are registers; every way out sets `h`, `fail` to 0, so a
/// retry that fails early reports `Fail`, never a stale object; set at the fail label and not
/// at the start of every run, the section runs one instruction fewer, and the compiler no
/// longer zeroes `h` before it either), and the commit is the
/// section's last instruction; an abort leaves the span as it was and the retry reads the new
/// id, stop word and current span. Every object is at least 16 bytes, so a link the range check
/// lets through leaves the next pop's tag load inside the span. Whether it starts an object is
/// not tested: a link into an object's middle fails the next pop's tag check unless the word
/// 8 bytes past it holds `key ^ address` (docs/design.md, "Known weaknesses", where the exact
/// test's cost is). The prefetch of the new head neither stores nor faults: the next pop's
/// loads of that object's first two words missed the cache in most of a burst of mixed sizes'
/// pops (they were a third of `alloc_owned_out`'s samples; with it a sixth, and one thread's
/// `mixed-bursts` took 0.98x the CPU time, docs/benchmarks.md, "Session 54"). The stop word
/// is loaded first, as the protocol needs (a section that loaded it before a drain's stop
/// either ends before the drain's fence returns or restarts).
///
/// The key is loaded (twice, the same value: it changes once, from 0, before any object is
/// tagged) after the list word that names the head, so it is never the 0 of a process that
/// has not tagged an object yet: whoever tagged the head had read the key (or stored it)
/// before storing the tag and publishing the head. On x86 a load is not reordered with a later
/// load or store of the same CPU, and every CPU sees the stores in one order, so a load that
/// sees the published head and, after it, the key's word sees the key. (When the key was an
/// operand, loaded before the section, a thread could load 0 before the process's first carve
/// and then meet a span made current since: its pop read as corrupt, and the caller compared
/// the key again.) The argument is x86's: an architecture with weaker ordering needs an
/// acquire between the two loads, or that second look.
///
/// # Safety
/// As [`percpu_pop`] for the slab layout; `c < 128`; every non-zero `cur[c]` of every slab
/// points at live [`OwnedWords`] that satisfy their invariants with [`FREE_TAG_KEY`], for a
/// span of objects of at least 16 bytes.
#[inline(always)]
pub unsafe fn owned_pop(c: usize) -> OwnedPop {
    // SAFETY: the caller guarantees the slab layout and the owned words; the sequence follows
    // the rseq ABI as `percpu_pop`'s does, with one committing store.
    unsafe { owned_pop_sequence!(c: c, stack_check: []) }
}

/// [`owned_pop`] that leaves the list alone while class `c`'s per-CPU stack holds objects:
/// then it fails with [`OwnedPop::Stacked`], and the caller pops the stack ([`percpu_pop`]).
/// The C allocation of an owned class takes the stack first (objects that did not go onto an
/// owned list: `lib.rs`, `alloc_owned_out`); with this test inside the owned pop, an allocation
/// whose stack is empty (the common case) runs one section, not a failed stack pop and then
/// the owned pop. Its pseudocode is [`owned_pop`]'s with one line after the stop word's test:
///
/// ```text
///   if slab[hdr(c)].current > slab[hdr(c)].floor: return Stacked    // the stack first
/// ```
/// (`hdr(c)` is class `c`'s [`ClassHeader`], at [`CLASS_HEADERS_AT`]` + 8c`; `Stacked` is
/// `h == 1`, which no object's address is, set by the line itself, which leaves the section
/// past `fail`.) Restart-safe as [`owned_pop`]: the line only loads, into registers set on
/// every run. A stack that a drain
/// stopped reads as empty (its floor raised to `u16::MAX`), as for [`percpu_pop`].
///
/// # Safety
/// As [`owned_pop`].
#[inline(always)]
pub unsafe fn owned_pop_stack_first(c: usize) -> OwnedPop {
    // SAFETY: as in `owned_pop`; the stack's test only loads class `c`'s header, which lies
    // inside the slab (`c < 128`).
    unsafe {
        owned_pop_sequence!(
            c: c,
            stack_check: [
                "movzx {n:e}, word ptr [{slab} + {c} * 8 + {hdrs} + {current}]",
                "cmp {n:x}, word ptr [{slab} + {c} * 8 + {hdrs} + {floor}]",
                "jbe 21f",
                "mov {h:e}, 1",
                "jmp 8f",
                "21:",
            ],
            hdrs = const CLASS_HEADERS_AT,
            current = const offset_of!(ClassHeader, current),
            floor = const offset_of!(ClassHeader, floor),
        )
    }
}

/// The start every owned-span section but the pop shares: on the slab [`slab_sequence!`]
/// finds, with `{id}` holding the slab's owner value (its id plus one, [`super::owner_of`]),
/// fail while the slab's stop word is set; then `body`, which ends with the one committing
/// store and may use `{wd}` (the owned words, `words`), `{stop}` and `{owner}`; `fail` and the
/// further operands as for [`rseq_sequence!`].
macro_rules! owned_sequence {
    (words: $words:expr, body: [$($body:literal),* $(,)?], fail: $fail:literal,
     $($operands:tt)*) => {
        slab_sequence!(
            id_check: ["lea {id:e}, [{slab} + 1]"],
            body: [
                "# (no slot is read here; slot 0 is at {slots})",
                "cmp dword ptr [{slab} + {stop}], 0",
                "jne 5f",
                $($body),*
            ],
            fail: $fail,
            id = out(reg) _,
            wd = in(reg) $words,
            stop = const OWNED_STOP_AT,
            owner = const offset_of!(OwnedWords, owner),
            $($operands)*
        )
    };
}

/// [`owned_sequence!`] for [`owned_set_cur`] and [`owned_retire`]: `{c}` the class and `{cur}`
/// the owned-span table's offset too; evaluates to whether the section committed.
macro_rules! owned_word_sequence {
    (words: $words:expr, c: $c:expr, body: [$($body:literal),* $(,)?]) => {{
        let ok: usize;
        owned_sequence!(
            words: $words,
            body: [$($body),*],
            fail: "xor {ok:e}, {ok:e}",
            ok = inout(reg) 1usize => ok,
            c = in(reg) $c,
            cur = const CUR_AT,
            options(nostack),
        );
        ok != 0
    }};
}

/// A C `free`'s push (or `realloc`'s, of a block it moved out) of `obj`, a free object tagged free,
/// onto the list of the owned span whose words are `words`, when the object's page-map home bits
/// name the calling CPU's slab and that slab owns the span; returns the list's new count, or 0 when
/// the home is another slab or none, the slab does not own the span, the slab is stopped, or rseq
/// is off (nothing written then, but `obj`'s link when a restart after the link's store failed:
/// `obj` is the caller's).
/// `home` is the object's page-map home field in bits 0-6 (`pagemap::home_bits_unmasked`:
/// `HOMED` plus the home slab's low 6 bits, or 0; bits above 6 are ignored).
///
/// Every instruction counts here: `free` of an owned class is bound by how many it runs, not by
/// the list word's chain (four more ALU instructions, on the chain or beside it, cost the free
/// phase of `benches/c/burst_threads.c` 1.04-1.05x its time, docs/benchmarks.md, "Session 61").
/// So the home test and the stop word are one compare of the slab's home word and stop word,
/// loaded as one 8-byte word (`OWNED_HOME_AT`, `OWNED_STOP_AT`), with `home` (masked to 7
/// bits, so its upper half is 0: "not stopped"); and the list word's head mask comes from
/// memory (`HEAD_MASK`), which turns the head's extraction and the count's increment from six
/// shifts into an `and`, an `or` and a `lea`. Before session 51 the home test came before the
/// section, loading the thread block's id pointer and the id again, and the push made
/// `free_owned` save five registers (owned frees took 58 ms against 53 in `burst_phases` at
/// 496 B, docs/benchmarks.md, "Session 51").
///
/// ```text
///   area = tb.area
///   if area.cpu_id < 0: return 0
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                 // ---- critical section ----
///   id   = *tb.id
///   slab = tb.slabs + id << SLAB_SHIFT
///   if slab.home | slab.owned_stop << 32 != home & 0x7f:  // homed elsewhere or nowhere, or
///       goto fail                                        // a drain is at work
///   if words.owner != id + 1: goto fail                  // not this slab's span
///   w    = words.local                                   // HEAD_MASK: (1 << 48) - 1
///   obj[0] = (w & HEAD_MASK) ^ key                       // the link, encoded (obj is ours)
///   w    = (w | HEAD_MASK) + obj + 1                     // obj | (count + 1) << 48
///   words.local = w                                      // the one committing store
/// post_commit:
///   return w >> 48
/// abort:  (preceded by RSEQ_SIG)  goto restart
/// fail:   return 0
/// ```
/// `(w | HEAD_MASK) + 1` carries into the count: `(count + 1) << 48` (the count stays below
/// 2^16: a span's capacity, at most 4,096), and `obj < 2^48` then fills the low bits. The stop
/// word is still the first thing the section loads from the slab, as the drain protocol needs.
/// A slab's home word is 0 until it is made ready: there only an object with no home passes
/// the compare, and the owner check refuses it (a slab not yet ready owns no span, and an owned
/// span always has a home), so a slab not yet ready takes no push. Restart-safe as
/// [`owned_push_chain`] for one object: the only store before the commit is into `obj`, which
/// the caller owns; the home and stop test fails before any store.
///
/// # Safety
/// As [`owned_push_chain`] with `first = last = obj` and `k = 1`.
#[inline(always)]
pub unsafe fn owned_push(words: *const OwnedWords, obj: *mut u8, key: usize, home: usize) -> usize {
    let w: usize;
    // SAFETY: the caller guarantees the slab layout, the owned words and the object; the
    // sequence follows the rseq ABI as `percpu_push`'s does, with one committing store.
    unsafe {
        slab_sequence!(
            // `w` holds the owner word's id + 1, then the list word; `slab` is free once the
            // home and stop word is compared, and holds the link: eight registers besides
            // `tb`, so that `free_owned` saves few.
            id_check: ["lea {w:e}, [{slab} + 1]"],
            body: [
                "# (no slot is read here; slot 0 is at {slots})",
                "cmp qword ptr [{slab} + {home_at}], {home}",
                "jne 5f",
                "cmp dword ptr [{wd} + {owner}], {w:e}",
                "jne 5f",
                "mov {w}, qword ptr [{wd} + {local}]",
                "mov {slab}, qword ptr [rip + {mask}]",
                "and {slab}, {w}",
                "xor {slab}, {key}",
                "mov qword ptr [{obj}], {slab}",
                "or {w}, qword ptr [rip + {mask}]",
                "lea {w}, [{w} + {obj} + 1]",
                "mov qword ptr [{wd} + {local}], {w}",
            ],
            fail: "xor {w:e}, {w:e}",
            w = out(reg) w,
            wd = in(reg) words,
            obj = in(reg) obj,
            key = in(reg) key,
            home = in(reg) home & crate::pagemap::HOME_MASK,
            home_at = const OWNED_HOME_AT,
            mask = sym HEAD_MASK,
            owner = const offset_of!(OwnedWords, owner),
            local = const offset_of!(OwnedWords, local),
            options(nostack),
        );
    }
    w >> 48
}

/// The owned list word's head mask, `(1 << 48) - 1`, in memory: [`owned_push`] and
/// [`owned_pop`] take it as a rip-relative operand (an immediate this wide does not fit an
/// `and` or an `or`).
static HEAD_MASK: u64 = super::OWNED_HEAD_MASK;

/// One in the owned list word's count, `1 << 48`, in memory: [`owned_pop`] subtracts it as a
/// rip-relative operand (an immediate this wide does not fit a `sub`).
static COUNT_ONE: u64 = 1 << 48;

const _: () = assert!(
    crate::pagemap::HOMED == 64 && crate::pagemap::HOME_MASK == 0x7f,
    "the sections' pseudocode gives the home field as bits 0-6, its flag as bit 6"
);

/// Pushes a chain of `k` free objects, `first` to `last`, each tagged free and each but `last`
/// linked to the next (encoded with `key`), onto the list of the owned span whose words are
/// `words`, when the calling CPU's slab owns it, and returns the list's new count (at least
/// `k`); 0 (nothing written but `last`'s link) when it does not, the slab is stopped, or rseq
/// is off.
///
/// ```text
///   area = tb.area
///   if area.cpu_id < 0: return false
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                 // ---- critical section ----
///   id   = *tb.id
///   slab = tb.slabs + id << SLAB_SHIFT
///   if slab.owned_stop != 0: goto fail                   // a drain is at work
///   if words.owner != id + 1: goto fail                  // not this slab's span
///   w    = words.local                                   // HEAD_MASK: (1 << 48) - 1
///   last[0] = (w & HEAD_MASK) ^ key                      // the link, encoded (last is ours)
///   w    = first | ((w >> 48) + k) << 48
///   words.local = w                                      // the one committing store
/// post_commit:
///   return w >> 48
/// abort:  (preceded by RSEQ_SIG)  goto restart
/// fail:   return 0
/// ```
/// Restart-safe: the only store before the commit is into `last`, which the caller owns and
/// nobody else reads until the commit publishes it; a restart writes it again.
///
/// # Safety
/// As [`percpu_pop`] for the slab layout; `words` are live [`OwnedWords`] satisfying their
/// invariants with `key`, for a span of at most 4,096 objects (the count's 16 bits hold the
/// span's whole capacity); the chain's objects are of their span (below `1 << 48`), tagged
/// free, in no free list or cache, and nobody uses them.
#[inline(always)]
pub unsafe fn owned_push_chain(
    words: *const OwnedWords,
    first: *mut u8,
    last: *mut u8,
    k: usize,
    key: usize,
) -> usize {
    let w: usize;
    // SAFETY: the caller guarantees the slab layout, the owned words and the chain; the
    // sequence follows the rseq ABI as `percpu_push`'s does, with one committing store.
    unsafe {
        owned_sequence!(
            words: words,
            body: [
                "cmp dword ptr [{wd} + {owner}], {id:e}",
                "jne 5f",
                "mov {w}, qword ptr [{wd} + {local}]",
                "mov {n}, {w}",
                "shl {n}, 16",
                "shr {n}, 16",
                "xor {n}, {key}",
                "mov qword ptr [{last}], {n}",
                "shr {w}, 48",
                "add {w}, {k}",
                "shl {w}, 48",
                "or {w}, {first}",
                "mov qword ptr [{wd} + {local}], {w}",
            ],
            fail: "xor {w:e}, {w:e}",
            w = out(reg) w,
            n = out(reg) _,
            first = in(reg) first,
            last = in(reg) last,
            k = in(reg) k,
            key = in(reg) key,
            local = const offset_of!(OwnedWords, local),
            options(nostack),
        );
    }
    w >> 48
}

/// Makes `words` (null: none) class `c`'s current owned span on the calling CPU's slab, when
/// that slab owns it (or `words` is null); false (nothing written) when it does not, the slab
/// is stopped, or rseq is off.
///
/// ```text
///   area = tb.area
///   if area.cpu_id < 0: return false
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                 // ---- critical section ----
///   id   = *tb.id
///   slab = tb.slabs + id << SLAB_SHIFT
///   if slab.owned_stop != 0: goto fail                   // a drain is at work
///   if words != 0 and words.owner != id + 1: goto fail   // not this slab's span
///   slab.cur[c] = words                                  // the one committing store
/// post_commit:
///   return true
/// abort:  (preceded by RSEQ_SIG)  goto restart
/// fail:   return false
/// ```
/// Restart-safe: the commit is the only store.
///
/// # Safety
/// As [`percpu_pop`] for the slab layout; `c < 128`; `words` is null or live [`OwnedWords`]
/// satisfying their invariants.
#[inline(always)]
pub unsafe fn owned_set_cur(c: usize, words: *const OwnedWords) -> bool {
    // SAFETY: the caller guarantees the slab layout and the owned words; one committing store.
    unsafe {
        owned_word_sequence!(
            words: words,
            c: c,
            body: [
                "test {wd}, {wd}",
                "jz 20f",
                "cmp dword ptr [{wd} + {owner}], {id:e}",
                "jne 5f",
                "20:",
                "mov qword ptr [{slab} + {c} * 8 + {cur}], {wd}",
            ]
        )
    }
}

/// Gives up the calling CPU's slab's ownership of the span whose words are `words` (class
/// `c`): when that slab owns it and it is not the class's current span there, commits `owner
/// = NO_OWNER`; false (nothing written) otherwise, when the slab is stopped, or rseq is off.
/// After a true return no section can touch `words.local` any more: it is the caller's.
///
/// ```text
///   area = tb.area
///   if area.cpu_id < 0: return false
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                 // ---- critical section ----
///   id   = *tb.id
///   slab = tb.slabs + id << SLAB_SHIFT
///   if slab.owned_stop != 0: goto fail                   // a drain is at work
///   if words.owner != id + 1: goto fail                  // the thread moved, or not ours
///   if slab.cur[c] == words: goto fail                   // still current: pops may use it
///   words.owner = NO_OWNER                               // the one committing store
/// post_commit:
///   return true
/// abort:  (preceded by RSEQ_SIG)  goto restart
/// fail:   return false
/// ```
/// Restart-safe: the commit is the only store. Every other section that touches `local`
/// runs on the owning slab's CPU and tests the owner (pushes) or `cur` (pops) inside itself,
/// so rseq orders it before this commit or makes it see the new owner.
///
/// # Safety
/// As [`owned_set_cur`], with `words` not null.
#[inline(always)]
pub unsafe fn owned_retire(c: usize, words: *const OwnedWords) -> bool {
    // SAFETY: the caller guarantees the slab layout and the owned words; one committing store.
    unsafe {
        owned_word_sequence!(
            words: words,
            c: c,
            body: [
                "cmp dword ptr [{wd} + {owner}], {id:e}",
                "jne 5f",
                "cmp qword ptr [{slab} + {c} * 8 + {cur}], {wd}",
                "je 5f",
                "mov dword ptr [{wd} + {owner}], 0",
            ]
        )
    }
}

const _: () = assert!(super::NO_OWNER == 0, "`owned_retire` stores 0");

/// Takes the span whose words are `words` off the calling CPU's slab's table of current spans
/// (class `c`): when that slab owns it and it is the class's current span there, commits
/// `cur[c] = 0`; false (nothing written) otherwise, when the slab is stopped, or rseq is off.
/// The span stays owned and listed: the caller keeps it (`percpu::owned`, "Idle current
/// spans" in docs/design.md).
///
/// ```text
///   area = tb.area
///   if area.cpu_id < 0: return false
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                 // ---- critical section ----
///   id   = *tb.id
///   slab = tb.slabs + id << SLAB_SHIFT
///   if slab.owned_stop != 0: goto fail                   // a drain is at work
///   if words.owner != id + 1: goto fail                  // the thread moved, or not ours
///   if slab.cur[c] != words: goto fail                   // not the current span
///   slab.cur[c] = 0                                      // the one committing store
/// post_commit:
///   return true
/// abort:  (preceded by RSEQ_SIG)  goto restart
/// fail:   return false
/// ```
/// Restart-safe: the commit is the only store. The owner test makes the slab the one whose
/// capacity lock the caller holds, so no refill there makes another span current meanwhile.
///
/// # Safety
/// As [`owned_set_cur`], with `words` not null.
#[inline(always)]
pub unsafe fn owned_uncur(c: usize, words: *const OwnedWords) -> bool {
    // SAFETY: the caller guarantees the slab layout and the owned words; one committing store.
    unsafe {
        owned_word_sequence!(
            words: words,
            c: c,
            body: [
                "cmp dword ptr [{wd} + {owner}], {id:e}",
                "jne 5f",
                "cmp qword ptr [{slab} + {c} * 8 + {cur}], {wd}",
                "jne 5f",
                "mov qword ptr [{slab} + {c} * 8 + {cur}], 0",
            ]
        )
    }
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
///   id   = *tb.id
///   slab = tb.slabs + id << SLAB_SHIFT
///   n    = slab[hdr(c)].current
///   if n >= slab[hdr(c)].end: goto fail                  // full (or stopped: end 0)
///   slot[n] = obj                                        // invisible until the commit
///   slab[hdr(c)].current = n + 1                         // the one committing store
/// post_commit:                                          // --------------------------
///   return true
/// abort:  (preceded by RSEQ_SIG)  goto restart
/// fail:   return false
/// ```
/// Restart-safe: the slot written before the commit lies at or above `current`, inside the
/// class's region, so an aborted attempt leaves garbage only where no reader looks.
///
/// # Safety
/// As for [`percpu_pop`]; `obj` is handed to the cache when this returns true.
#[inline(always)]
pub unsafe fn percpu_push(c: usize, obj: *mut u8) -> bool {
    // SAFETY: as in `percpu_pop`.
    unsafe { push_sequence!(c: c, obj: obj, full: { return false }) };
    true
}

/// [`percpu_push`] for a C `free`, with owner return's test inside the section: `home` is the
/// object's page-map home field in bits 0–6 (`pagemap::home_bits`: 0, or `HOMED` plus the
/// home slab's low 6 bits; bits above it are ignored, so the caller need not mask them off).
/// When the object has a home and it is not the slab the section runs on, the object is not
/// pushed ([`Push::Foreign`]): the test compares the home with the slab's home word
/// ([`OWNED_HOME_AT`], `HOMED` plus the slab's index modulo 64, written when the slab was made
/// ready), one compare where the id's low bits took five instructions (a `bt`/`sbb` mask, an
/// `xor`, an `and` and a `test`) until session 61.
///
/// ```text
///   area = tb.area
///   if area.cpu_id < 0: return Full                      // the single "rseq off" branch
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                // ---- critical section ----
///   id   = *tb.id
///   slab = tb.slabs + id << SLAB_SHIFT
///   if home & 0x7f != slab.home and home & 0x7f != 0:     // homed on another slab:
///       return Foreign                                   // leaves before any store
///   ... as percpu_push, Full where it fails
/// ```
/// Restart-safe as [`percpu_push`]; the early exit writes nothing. A slab that is not ready yet
/// has home word 0 and sends every homed object to `Foreign`; none can be homed on it (a slab
/// takes spans only once it is ready).
///
/// # Safety
/// As for [`percpu_push`]; `home`'s bits 0–6 are 0 or `HOMED` (0x40) plus 6 bits.
#[inline(always)]
pub unsafe fn percpu_push_homed(c: usize, obj: *mut u8, home: usize) -> Push {
    debug_assert!(home & 0x7f == 0 || home & 0x40 != 0);
    // SAFETY: as in `percpu_pop`.
    unsafe {
        push_sequence!(
            c: c,
            obj: obj,
            full: { return Push::Full },
            slab_check: [
                "cmp {home:e}, dword ptr [{slab} + {home_at}]",
                "je 22f",
                "test {home:e}, {home:e}",
                "jnz {foreign}",
                "22:",
            ],
            home = in(reg) home & crate::pagemap::HOME_MASK,
            home_at = const OWNED_HOME_AT,
            foreign = label { return Push::Foreign },
        );
    }
    Push::Done
}

/// Pops up to `max` objects (`max >= 1`) from the calling CPU's stack of one size class into
/// `out`, in one section; returns how many (0 when empty, stopped or rseq is off). Used by
/// overflow and drains. Same layout as [`percpu_pop`].
///
/// ```text
///   area = tb.area
///   if area.cpu_id < 0: return 0                         // the single "rseq off" branch
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                // ---- critical section ----
///   id   = *tb.id
///   slab = tb.slabs + id << SLAB_SHIFT
///   n    = slab[hdr].current
///   k    = n - slab[hdr].floor                           // signed: a stop makes it negative
///   if k <= 0: goto fail
///   k    = min(k, max);  n = n - k
///   for i in 0..k: out[i] = slot[n + i]                  // into the caller's private buffer
///   slab[hdr].current = n                                // the one committing store
/// post_commit:                                          // --------------------------
///   return k
/// abort:  (preceded by RSEQ_SIG)  goto restart
/// fail:   return 0
/// ```
/// Restart-safe: the copy writes only `out`, which no other thread reads; an abort leaves the
/// slab as it was, and the retry copies again from what the slab holds then.
///
/// # Safety
/// As for [`percpu_pop`], with `hdr` a class header's offset inside a slab in place of the class;
/// `out` is valid for `max` writes; the objects returned are the caller's.
#[inline(always)]
pub unsafe fn percpu_pop_batch(hdr: usize, out: *mut *mut u8, max: usize) -> usize {
    let k: usize;
    // SAFETY: as in `percpu_pop`; the loop writes `out[0..k]` with `k <= max`.
    unsafe { pop_batch_sequence!(hdr: hdr, out: out, max: max, k: k) };
    k
}

/// [`percpu_pop_batch`] on slab `id` only: returns 0, popping nothing, when the thread does
/// not run on that slab (it moved, or the id is another slab's). For a slab's capacity-lock
/// holder taking objects out of one class to give its capacity to another (`slab::evict`).
///
/// ```text
///   ... as percpu_pop_batch, with after the id's load:
///   if *tb.id != id: goto fail                           // only on the slab's own CPU
/// ```
/// Restart-safe as [`percpu_pop_batch`]; the early exit writes nothing.
///
/// # Safety
/// As for [`percpu_pop_batch`].
#[inline(always)]
pub unsafe fn percpu_pop_batch_on(hdr: usize, id: u32, out: *mut *mut u8, max: usize) -> usize {
    let k: usize;
    // SAFETY: as in `percpu_pop_batch`.
    unsafe {
        pop_batch_sequence!(
            hdr: hdr, out: out, max: max, k: k,
            id_check: ["cmp {slab:e}, {id:e}", "jne 5f"], id = in(reg) id,
        )
    };
    k
}

/// Pushes up to `len` objects (`len >= 1`) from `objs` on the calling CPU's stack of one size
/// class, in one section; returns how many were pushed (a prefix of `objs`; 0 when full,
/// stopped or rseq is off). Used by refill. Same layout as [`percpu_pop`].
///
/// ```text
///   area = tb.area
///   if area.cpu_id < 0: return 0                         // the single "rseq off" branch
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                // ---- critical section ----
///   id   = *tb.id
///   slab = tb.slabs + id << SLAB_SHIFT
///   n    = slab[hdr].current
///   k    = slab[hdr].end - n                             // signed: a stop makes it negative
///   if k <= 0: goto fail
///   k    = min(k, len)
///   for i in 0..k: slot[n + i] = objs[i]                 // above `current`: invisible
///   slab[hdr].current = n + k                            // the one committing store
/// post_commit:                                          // --------------------------
///   return k
/// abort:  (preceded by RSEQ_SIG)  goto restart
/// fail:   return 0
/// ```
/// Restart-safe: every slot written before the commit lies in `[current, end)`, inside the
/// class's region and above what any reader looks at; an aborted attempt leaves garbage only
/// there, and the retry starts again from the `current` it reads.
///
/// # Safety
/// As for [`percpu_pop`], with `hdr` a class header's offset inside a slab in place of the class;
/// `objs` is valid for `len` reads; the objects pushed (the first `k`) are handed to the cache.
#[inline(always)]
pub unsafe fn percpu_push_batch(hdr: usize, objs: *const *mut u8, len: usize) -> usize {
    let k: usize;
    // SAFETY: as in `percpu_pop`; the loop reads `objs[0..k]` with `k <= len` and writes slots
    // `n..n + k` with `n + k <= end`, inside the class's region.
    unsafe {
        slab_sequence!(
            on_abort: ["lock inc qword ptr [rip + {batch}]"],
            body: [
                "mov {t:e}, dword ptr [{slab} + {hdr} + {current}]",
                "movzx {n:e}, {t:x}",
                "movzx {k:e}, word ptr [{slab} + {hdr} + {end}]",
                "sub {k}, {n}",
                "jle 5f",
                "cmp {k}, {len}",
                "cmova {k}, {len}",
                "lea {dst}, [{slab} + {n} * 8 + {slots}]",
                "xor {i:e}, {i:e}",
                "9:",
                "mov {n}, qword ptr [{objs} + {i} * 8]",
                "mov qword ptr [{dst} + {i} * 8], {n}",
                "inc {i}",
                "cmp {i}, {k}",
                "jb 9b",
                "add {t:e}, {k:e}",
                "mov dword ptr [{slab} + {hdr} + {current}], {t:e}",
            ],
            fail: "xor {k:e}, {k:e}",
            n = out(reg) _,
            k = out(reg) k,
            dst = out(reg) _,
            i = out(reg) _,
            batch = sym BATCH_RESTARTS,
            hdr = in(reg) hdr,
            objs = in(reg) objs,
            len = in(reg) len,
            current = const offset_of!(ClassHeader, current),
            end = const offset_of!(ClassHeader, end),
            options(nostack),
        );
    }
    k
}

/// Moves one class's stack of slab `id` to the region starting at slot `begin` (free slab
/// space the caller reserved), giving it the header `word` describes — `begin`, `floor =
/// begin`, `end`, with `current` 0 (see [`class_header_word`](super::class_header_word)): the section copies the cached
/// objects and adds their count to `current`. False when the thread does not run on `id`'s
/// slab (the caller may retry from its new slab), the class is stopped, or rseq is off.
///
/// ```text
///   area = tb.area
///   if area.cpu_id < 0: return false                     // the single "rseq off" branch
/// restart:
///   area.rseq_cs = &descriptor
/// start:                                                // ---- critical section ----
///   if *tb.id != id: goto fail                           // only on the slab's own CPU
///   slab = tb.slabs + id << SLAB_SHIFT
///   n = slab[hdr].current;  b = slab[hdr].begin
///   if slab[hdr].floor != b: goto fail                   // stopped by a drain
///   new = word + (word.begin + (n - b))                  // current = begin' + count
///   for i in 0..n - b: slot[word.begin + i] = slot[b + i]  // into the reserved region
///   slab[hdr] = new                                      // the one committing 8-byte store
/// post_commit:                                          // --------------------------
///   return true
/// abort:  (preceded by RSEQ_SIG)  goto restart
/// fail:   return false
/// ```
/// Restart-safe: before the commit the section writes only the reserved region, which no
/// header names yet; every other section on this slab runs on this CPU, so it either finished
/// before this one started or, preempted, restarts after its commit and reads the new header.
/// A drain cannot interleave: the caller holds the slab's capacity lock, which a drain holds
/// from its stop to its restart.
///
/// # Safety
/// As for [`percpu_pop`], with `hdr` a class header's offset inside a slab in place of the class;
/// the caller holds slab `id`'s capacity lock, and the region from
/// `word`'s `begin` to its `end` lies inside the slab, past every other class's region and
/// the headers, and is large enough for the class's count.
#[inline(always)]
pub unsafe fn percpu_relocate(hdr: usize, id: u32, word: u64) -> bool {
    // SAFETY: as in `percpu_pop`; the copy reads the class's cached slots and writes the
    // reserved region (the caller's contract).
    unsafe {
        rseq_sequence!(
            on_abort: ["lock inc qword ptr [rip + {batch}]"],
            body: [
                "mov {slab}, qword ptr fs:[{tb} + {tb_id}]",
                "cmp dword ptr [{slab}], {id:e}",
                "jne 5f",
                "mov {slab:e}, {id:e}",
                "shl {slab}, {shift}",
                "add {slab}, qword ptr fs:[{tb} + {tb_slabs}]",
                "movzx {n:e}, word ptr [{slab} + {hdr} + {current}]",
                "movzx {src:e}, word ptr [{slab} + {hdr} + {begin}]",
                "cmp word ptr [{slab} + {hdr} + {floor}], {src:x}",
                "jne 5f",
                "sub {n}, {src}",
                "lea {src}, [{slab} + {src} * 8 + {slots}]",
                "mov {new}, {word}",
                "shr {new}, 16",
                "movzx {dst:e}, {new:x}",
                "lea {dst}, [{slab} + {dst} * 8 + {slots}]",
                "movzx {new:e}, {new:x}",
                "add {new}, {n}",
                "add {new}, {word}",
                "test {n}, {n}",
                "jz 22f",
                "9:",
                "mov {t}, qword ptr [{src}]",
                "mov qword ptr [{dst}], {t}",
                "add {src}, 8",
                "add {dst}, 8",
                "dec {n}",
                "jnz 9b",
                "22:",
                "mov qword ptr [{slab} + {hdr}], {new}",
            ],
            fail: "jmp {failed}",
            slab = out(reg) _,
            n = out(reg) _,
            src = out(reg) _,
            dst = out(reg) _,
            new = out(reg) _,
            batch = sym BATCH_RESTARTS,
            hdr = in(reg) hdr,
            id = in(reg) id,
            word = in(reg) word,
            slots = const SLOTS_AT,
            shift = const SLAB_SHIFT,
            tb_id = const offset_of!(ThreadBlock, id),
            tb_slabs = const offset_of!(ThreadBlock, slabs),
            current = const offset_of!(ClassHeader, current),
            begin = const offset_of!(ClassHeader, begin),
            floor = const offset_of!(ClassHeader, floor),
            failed = label { return false },
            options(nostack),
        );
    }
    true
}
