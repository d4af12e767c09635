//! The assembly of the C++ face (x86_64):
//! - the four throwing operator new symbols, in assembly so that a C++ exception unwinds
//!   through assembly frames only (see the parent module);
//! - three hidden trampolines that stand in for the C++ runtime functions `nothrow.cc` needs,
//!   so that the library does not depend on libstdc++ (see [`bind_cxx_runtime`]).
//!
//! The throwing forms:
//!
//! ```text
//! _Znwm, _Znam (size):
//!     p = malloc(size); if p != null { return p }   // one pushed slot: the common case
//!     align = 0; set up the frame below; go to the new-handler step
//! _ZnwmSt11align_val_t, _ZnamSt11align_val_t (size, align):
//!     loop {
//!         p = new_alloc(size, align);  if p != null { return p }
//!         h = new_handler_step(align); if h == null { break }
//!         h();                         // may throw: unwinds through this frame only
//!     }
//!     new_thrower()();                 // throws std::bad_alloc
//! ```
//! Plain `new`'s first attempt keeps the size in the one slot its `push` makes (which also
//! aligns the stack for the call) and returns straight away when it succeeds: in one process,
//! bursts of 64 new/delete took 1.14–1.16x malloc/free's time, against 1.17–1.20x with the
//! loop's frame set up first (docs/benchmarks.md, "Session 21"). What is left is the call and
//! its return: a jump into `malloc` would need its cold path to leave Rust by a tail call, which
//! nothing guarantees. The loop's frame holds size and align in its own stack slots; its CFI
//! lets the C++ unwinder pass through it. The Rust functions it calls all return normally.

use super::{cxx_symbol, new_alloc, new_handler_step, new_thrower};
use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};

extern "C" fn new_try(size: usize, align: usize) -> *mut c_void {
    new_alloc(size, align)
}

/// Plain `new`'s first attempt: `malloc`'s path, no alignment to test.
extern "C" fn new_try_plain(size: usize) -> *mut c_void {
    rseq::malloc(size).cast()
}

core::arch::global_asm!(
    ".pushsection .text.rseqmalloc_operator_new,\"ax\",@progbits",
    ".p2align 4",
    ".globl _Znwm",
    ".type _Znwm,@function",
    ".globl _Znam",
    ".type _Znam,@function",
    ".globl _ZnwmSt11align_val_t",
    ".type _ZnwmSt11align_val_t,@function",
    ".globl _ZnamSt11align_val_t",
    ".type _ZnamSt11align_val_t,@function",
    ".cfi_startproc",
    "_Znwm:",
    "_Znam:",
    // Entry: rsp = 8 mod 16. One slot, the size: the call is 16-aligned.
    "push rdi",
    ".cfi_adjust_cfa_offset 8",
    "call {try_plain}",
    "pop rdi",
    ".cfi_adjust_cfa_offset -8",
    "test rax, rax",
    "jz 1f",
    "ret",
    // Failed: the loop's frame with align = 0, then its new-handler step (no second try).
    "1:",
    "xor esi, esi",
    "sub rsp, 24",
    ".cfi_adjust_cfa_offset 24",
    "mov qword ptr [rsp], rdi",
    "mov qword ptr [rsp + 8], rsi",
    "jmp 3f",
    ".cfi_adjust_cfa_offset -24",
    "_ZnwmSt11align_val_t:",
    "_ZnamSt11align_val_t:",
    // Entry: rsp = 8 mod 16. Three slots: size, align, padding; calls are 16-aligned.
    "sub rsp, 24",
    ".cfi_adjust_cfa_offset 24",
    "mov qword ptr [rsp], rdi",
    "mov qword ptr [rsp + 8], rsi",
    "2:",
    "call {try_alloc}",
    "test rax, rax",
    "jz 3f",
    "add rsp, 24",
    ".cfi_adjust_cfa_offset -24",
    "ret",
    ".cfi_adjust_cfa_offset 24",
    "3:",
    "mov rdi, qword ptr [rsp + 8]",
    "call {handler_step}",
    "test rax, rax",
    "jz 4f",
    "call rax",
    "mov rdi, qword ptr [rsp]",
    "mov rsi, qword ptr [rsp + 8]",
    "jmp 2b",
    "4:",
    "call {thrower}",
    "call rax",
    "ud2",
    ".cfi_endproc",
    ".size _Znwm, . - _Znwm",
    ".size _Znam, . - _Znam",
    ".size _ZnwmSt11align_val_t, . - _ZnwmSt11align_val_t",
    ".size _ZnamSt11align_val_t, . - _ZnamSt11align_val_t",
    ".popsection",
    try_plain = sym new_try_plain,
    try_alloc = sym new_try,
    handler_step = sym new_handler_step,
    thrower = sym new_thrower,
);

/// Where the trampolines jump: the C++ runtime's `__gxx_personality_v0`, `__cxa_begin_catch`
/// and `__cxa_end_catch` (0 until [`bind_cxx_runtime`] found them).
static PERSONALITY: AtomicUsize = AtomicUsize::new(0);
static BEGIN_CATCH: AtomicUsize = AtomicUsize::new(0);
static END_CATCH: AtomicUsize = AtomicUsize::new(0);

/// Points the trampolines at the loaded C++ runtime's functions; false if there is none (then
/// no C++ code can have installed a new-handler either). Cold path: `dlsym` may allocate.
pub(super) fn bind_cxx_runtime() -> bool {
    for (slot, name) in [
        (&PERSONALITY, c"__gxx_personality_v0"),
        (&BEGIN_CATCH, c"__cxa_begin_catch"),
        (&END_CATCH, c"__cxa_end_catch"),
    ] {
        if slot.load(Ordering::Acquire) == 0 {
            let f = cxx_symbol(&[name]);
            if f == 0 {
                return false;
            }
            slot.store(f, Ordering::Release);
        }
    }
    true
}

// Each trampoline jumps through its slot, which `bind_cxx_runtime` filled before `nothrow.cc`
// runs (the personality routine is called only while an exception unwinds through it). The
// symbols are hidden: they bind `nothrow.cc`'s references inside the library and are never
// exported (the version script and rustc's list name neither).
core::arch::global_asm!(
    ".pushsection .text.rseqmalloc_cxx_runtime,\"ax\",@progbits",
    ".p2align 4",
    ".globl __gxx_personality_v0",
    ".hidden __gxx_personality_v0",
    ".type __gxx_personality_v0,@function",
    "__gxx_personality_v0:",
    "jmp qword ptr [rip + {personality}]",
    ".size __gxx_personality_v0, . - __gxx_personality_v0",
    ".globl __cxa_begin_catch",
    ".hidden __cxa_begin_catch",
    ".type __cxa_begin_catch,@function",
    "__cxa_begin_catch:",
    "jmp qword ptr [rip + {begin_catch}]",
    ".size __cxa_begin_catch, . - __cxa_begin_catch",
    ".globl __cxa_end_catch",
    ".hidden __cxa_end_catch",
    ".type __cxa_end_catch,@function",
    "__cxa_end_catch:",
    "jmp qword ptr [rip + {end_catch}]",
    ".size __cxa_end_catch, . - __cxa_end_catch",
    ".popsection",
    personality = sym PERSONALITY,
    begin_catch = sym BEGIN_CATCH,
    end_catch = sym END_CATCH,
);
