//! `dlopen` without `RTLD_DEEPBIND` (unless `deepbind=keep`).
//!
//! A library opened with `dlopen(path, RTLD_NOW | RTLD_DEEPBIND)` looks its symbols up in its
//! own scope first — itself, then its dependencies, libc among them — so its `malloc`, `free`
//! and `realloc` are glibc's while the program's are ours, and every block that crosses
//! between the two (either way, or through libc's own `strdup`) is freed by the wrong
//! allocator. The exported `dlopen` clears the flag and jumps to libc's: the library then binds
//! to the global scope first, like any library, and shares this allocator.
//!
//! What it changes for such a library: all its symbol lookups go to the global scope first,
//! not only the malloc family — a library that bundles its own copy of a symbol the program
//! (or an earlier library) also defines, which is what `RTLD_DEEPBIND` is for, gets the
//! program's copy. `RSEQMALLOC_OPTIONS=deepbind=keep` passes the flag on unchanged.
//!
//! libc's `dlopen` finds the caller's object from its return address (for the caller's
//! `RUNPATH` and namespace), so the x86_64 version is a jump, not a call: libc sees the
//! program's return address. Other architectures call it from Rust, so the search path is
//! this library's (no `RUNPATH`): a library named without a path that only the caller's
//! `RUNPATH` finds fails to open there.

#[cfg(not(target_arch = "x86_64"))]
use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// libc's `dlopen` (0 until the first call resolves it).
static REAL: AtomicUsize = AtomicUsize::new(0);
/// Whether `RTLD_DEEPBIND` is dropped (`deepbind=strip`), read with `REAL`.
static STRIP: AtomicBool = AtomicBool::new(true);

/// Finds libc's `dlopen` (the next definition after this library) and reads the option; the
/// first `dlopen` call does this. Aborts if there is none: the caller called `dlopen`.
extern "C" fn resolve() -> usize {
    STRIP.store(rseq::options().strip_deepbind, Ordering::Relaxed);
    crate::next::next_symbol(&REAL, c"dlopen")
}

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.rseqmalloc_dlopen,\"ax\",@progbits",
    ".p2align 4",
    ".globl dlopen",
    ".type dlopen,@function",
    ".cfi_startproc",
    "dlopen:",
    "mov rax, qword ptr [rip + {real}]",
    "test rax, rax",
    "jz 2f",
    "1:",
    // mode (esi) & RTLD_DEEPBIND, and the option says strip: clear it.
    "test esi, {deepbind}",
    "jz 3f",
    "cmp byte ptr [rip + {strip}], 0",
    "je 3f",
    "and esi, ~{deepbind}",
    "3:",
    // A jump: libc's dlopen returns straight to our caller and sees its return address.
    "jmp rax",
    "2:",
    // First call: resolve libc's dlopen, keeping the arguments (rsp stays 16-aligned).
    "push rdi",
    ".cfi_adjust_cfa_offset 8",
    "push rsi",
    ".cfi_adjust_cfa_offset 8",
    "sub rsp, 8",
    ".cfi_adjust_cfa_offset 8",
    "call {resolve}",
    "add rsp, 8",
    ".cfi_adjust_cfa_offset -8",
    "pop rsi",
    ".cfi_adjust_cfa_offset -8",
    "pop rdi",
    ".cfi_adjust_cfa_offset -8",
    "jmp 1b",
    ".cfi_endproc",
    ".size dlopen, . - dlopen",
    ".popsection",
    real = sym REAL,
    strip = sym STRIP,
    resolve = sym resolve,
    deepbind = const libc::RTLD_DEEPBIND,
);

/// `dlopen(3)` without `RTLD_DEEPBIND` (see the module documentation).
///
/// # Safety
/// As for libc's `dlopen`.
#[cfg(not(target_arch = "x86_64"))]
#[no_mangle]
pub unsafe extern "C" fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void {
    let mut real = REAL.load(Ordering::Acquire);
    if real == 0 {
        real = resolve();
    }
    let mode = if STRIP.load(Ordering::Relaxed) {
        mode & !libc::RTLD_DEEPBIND
    } else {
        mode
    };
    // SAFETY: libc's dlopen, with the caller's arguments.
    let real: unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void =
        unsafe { core::mem::transmute(real) };
    // SAFETY: forwarded contract.
    unsafe { real(file, mode) }
}
