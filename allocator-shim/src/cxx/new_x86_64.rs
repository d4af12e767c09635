//! The four throwing operator new symbols, in assembly so that a C++ exception unwinds through
//! assembly frames only (see the parent module).
//!
//! ```text
//! _Znwm, _Znam:                           align = 0, then fall into
//! _ZnwmSt11align_val_t, _ZnamSt11align_val_t (size, align):
//!     loop {
//!         p = new_alloc(size, align);  if p != null { return p }
//!         h = new_handler_step(align); if h == null { break }
//!         h();                         // may throw: unwinds through this frame only
//!     }
//!     new_thrower()();                 // throws std::bad_alloc
//! ```
//! The frame holds size and align in its own stack slots; its CFI lets the C++ unwinder pass
//! through it. The Rust functions it calls all return normally.

use super::{new_alloc, new_handler_step, new_thrower};
use core::ffi::c_void;

extern "C" fn new_try(size: usize, align: usize) -> *mut c_void {
    new_alloc(size, align)
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
    "xor esi, esi",
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
    try_alloc = sym new_try,
    handler_step = sym new_handler_step,
    thrower = sym new_thrower,
);
