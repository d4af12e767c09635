//! `vfork` (x86_64), so that a child that allocates before `exec` does not run the per-CPU
//! cache's critical sections.
//!
//! A `vfork` child shares its parent's memory, thread-local storage and rseq area included, but
//! the kernel does not register its rseq: the area keeps the parent's ids and nothing restarts
//! the child's sections, so a child that calls `malloc` (POSIX leaves that undefined; `setenv`
//! before `exec` is common, and glibc's malloc and its peers run it) would work on a slab
//! another thread may be using. This `vfork` sets the thread's allocator state aside first
//! (`rseq::ffi::vfork_enter`: the thread and its child allocate through locks), makes the
//! system call as glibc's does, and puts the state back in the parent (`vfork_leave`).
//!
//! The system call's sequence is glibc's (`sysdeps/unix/sysv/linux/x86_64/vfork.S`): the
//! return address is popped into `rdi` before the call and pushed back after it, because the
//! child runs on the parent's stack and overwrites whatever lies below the caller's frame
//! before the parent resumes; registers are the parent's own again when it does.
//!
//! `clone` (x86_64) does the same around libc's `clone` when it makes such a child: shared
//! memory (`CLONE_VM`), the parent suspended until the child execs or exits (`CLONE_VFORK`),
//! and no thread-local storage of its own (no `CLONE_SETTLS`). A breaker run in session 74
//! found that path corrupting the heap as `vfork` did (conformance `vfork_child.c`, `clone`
//! cases). Not covered: the `vfork`, `clone` and `clone3` system calls made directly, and libc's
//! own `vfork` or `clone` looked up in libc's handle (`dlsym` on `dlopen("libc.so.6")`).
//!
//! Other architectures run fallback mode (locked slabs, safe in a `vfork` child) and keep
//! libc's `vfork` and `clone`.

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.rseqmalloc_vfork,\"ax\",@progbits",
    ".p2align 4",
    ".globl vfork",
    ".type vfork,@function",
    ".globl __vfork",
    ".type __vfork,@function",
    ".cfi_startproc",
    "vfork:",
    "__vfork:",
    // Set the thread aside (rsp 16-aligned for the call).
    "sub rsp, 8",
    ".cfi_adjust_cfa_offset 8",
    "call {enter}",
    "add rsp, 8",
    ".cfi_adjust_cfa_offset -8",
    // The return address into rdi, which the system call keeps.
    "pop rdi",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_register rip, rdi",
    "mov eax, {sys_vfork}",
    "syscall",
    "push rdi",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_rel_offset rip, 0",
    // The child (0) returns at once, set aside; the parent (a pid, or -errno) puts its state
    // back, and `leave` turns a failure into -1 with errno.
    "test rax, rax",
    "jz 2f",
    "mov rdi, rax",
    "sub rsp, 8",
    ".cfi_adjust_cfa_offset 8",
    "call {leave}",
    "add rsp, 8",
    ".cfi_adjust_cfa_offset -8",
    "2:",
    "ret",
    ".cfi_endproc",
    ".size vfork, . - vfork",
    ".size __vfork, . - __vfork",
    ".popsection",
    enter = sym enter,
    leave = sym leave,
    sys_vfork = const libc::SYS_vfork,
);

/// Before the system call: [`rseq::ffi::vfork_enter`].
#[cfg(target_arch = "x86_64")]
extern "C" fn enter() {
    rseq::ffi::vfork_enter()
}

/// In the parent after the system call, with its result (a pid, or `-errno`): puts the thread's
/// state back ([`rseq::ffi::vfork_leave`]) and returns what `vfork` returns (the pid, or -1 with
/// `errno` set).
#[cfg(target_arch = "x86_64")]
extern "C" fn leave(result: i64) -> i64 {
    rseq::ffi::vfork_leave();
    if result < 0 {
        rseq::ffi::set_errno(-result as i32);
        -1
    } else {
        result
    }
}

/// libc's `clone` (0 until the first call resolves it).
#[cfg(target_arch = "x86_64")]
static REAL_CLONE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// libc's `clone`: variadic after `arg` (`parent_tid`, `tls`, `child_tid`).
#[cfg(target_arch = "x86_64")]
type Clone = unsafe extern "C" fn(usize, usize, core::ffi::c_int, usize, ...) -> core::ffi::c_int;

/// libc's `clone` (the next definition after this library).
#[cfg(target_arch = "x86_64")]
fn real_clone() -> Clone {
    let real = crate::next::next_symbol(&REAL_CLONE, c"clone");
    // SAFETY: `real` is libc's `clone`, of this signature.
    unsafe { core::mem::transmute::<usize, Clone>(real) }
}

// `clone(fn, stack, flags, arg, parent_tid, tls, child_tid)` and glibc's `__clone` (x86_64):
// both jump to `clone_aside`.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.rseqmalloc_clone,\"ax\",@progbits",
    ".p2align 4",
    ".globl clone",
    ".type clone,@function",
    ".globl __clone",
    ".type __clone,@function",
    "clone:",
    "__clone:",
    "jmp {aside}",
    ".size clone, . - clone",
    ".size __clone, . - __clone",
    ".popsection",
    aside = sym clone_aside,
);

/// `clone` and `__clone`: libc's `clone`, with the calling thread set aside around it
/// ([`rseq::ffi::vfork_enter`] and `vfork_leave`) when the child runs on this thread's memory
/// and thread-local storage while the thread waits (`CLONE_VM | CLONE_VFORK` without
/// `CLONE_SETTLS`), as [`vfork`](self)'s child does. Reached by a jump, not exported itself: a
/// program that defines a function named `clone` of its own does not take `__clone`'s calls.
///
/// libc declares `clone` variadic after `arg`; the three later arguments are read as fixed ones
/// (x86_64 passes the sixth in a register, the seventh on the stack) and passed on unchanged,
/// as libc's `clone` reads them, only when `flags` asks for them. A caller that passed fewer
/// leaves whatever its registers and its stack frame hold there, which libc then ignores too.
///
/// # Safety
/// As for libc's `clone`.
#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn clone_aside(
    f: usize,
    stack: usize,
    flags: core::ffi::c_int,
    arg: usize,
    parent_tid: usize,
    tls: usize,
    child_tid: usize,
) -> core::ffi::c_int {
    let real = real_clone();
    let shares = libc::CLONE_VM | libc::CLONE_VFORK;
    let aside = flags & (shares | libc::CLONE_SETTLS) == shares;
    if aside {
        rseq::ffi::vfork_enter();
    }
    // SAFETY: forwarded contract: libc's `clone` with the caller's arguments.
    let pid = unsafe { real(f, stack, flags, arg, parent_tid, tls, child_tid) };
    if aside {
        let _errno = rseq::ffi::ErrnoKeeper::new();
        rseq::ffi::vfork_leave();
    }
    pid
}
