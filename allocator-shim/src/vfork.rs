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
//! Other architectures run fallback mode (locked slabs, safe in a `vfork` child) and keep
//! libc's `vfork`.

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
