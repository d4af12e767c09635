//! System calls made with the architecture's own instruction, not through libc's `syscall`.
//!
//! A program may define a function named `syscall` (a tracer that counts or logs the calls it
//! makes), and the loader then binds every caller of libc's, this library included, to the
//! program's. A definition that allocates ran inside the allocator, under the page heap's lock
//! when it mapped memory: `malloc` hung (session 75, a breaker run; conformance
//! `own_libc.c`). Session 74 had moved the memory calls from libc's `mmap` and kin to
//! libc's `syscall` for the same reason. glibc's malloc makes its system calls inline, as these
//! do. Each returns what libc's `syscall` would: the kernel's result, or -1 with `errno` set
//! from a result in `-4095..=-1`.
//!
//! The one place outside `arch` with architecture code: the system-call instruction and its
//! registers are the kernel's ABI, which the OS layer (below `arch`) needs. Architectures
//! without a form here fall back to libc's `syscall`.

use core::ffi::c_long;

/// `syscall(nr, args...)`: system call `nr` with `args` (at most 6; the rest are 0).
///
/// # Safety
/// As for the system call `nr` with these arguments.
#[inline]
pub unsafe fn system_call(nr: c_long, args: &[c_long]) -> c_long {
    debug_assert!(args.len() <= 6, "a system call takes at most 6 arguments");
    let mut a = [0; 6];
    a[..args.len()].copy_from_slice(args);
    // SAFETY: forwarded contract.
    let r = unsafe { raw(nr, a) };
    if (-4095..0).contains(&r) {
        super::set_errno(-r as i32);
        -1
    } else {
        r
    }
}

/// The kernel's result of system call `nr` (a negative `errno` on failure).
///
/// x86_64: the number in `rax`, the arguments in `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9`; the
/// result in `rax`; the instruction clobbers `rcx` and `r11` (the kernel's x86_64 entry,
/// `entry_SYSCALL_64`).
///
/// # Safety
/// As for the system call.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn raw(nr: c_long, a: [c_long; 6]) -> c_long {
    let r: c_long;
    // SAFETY: forwarded contract; the asm touches only the registers it names, and the kernel
    // preserves every other one and the stack.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => r,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    r
}

/// As the x86_64 form. aarch64: the number in `x8`, the arguments in `x0` to `x5`, the result
/// in `x0`, `svc #0` (the kernel's arm64 `el0_svc`).
///
/// # Safety
/// As for the system call.
#[cfg(target_arch = "aarch64")]
#[inline]
unsafe fn raw(nr: c_long, a: [c_long; 6]) -> c_long {
    let r: c_long;
    // SAFETY: as the x86_64 form.
    unsafe {
        core::arch::asm!(
            "svc #0",
            in("x8") nr,
            inlateout("x0") a[0] => r,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            in("x4") a[4],
            in("x5") a[5],
            options(nostack),
        );
    }
    r
}

/// Other architectures: libc's `syscall`, its result turned back into the kernel's.
///
/// # Safety
/// As for the system call.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn raw(nr: c_long, a: [c_long; 6]) -> c_long {
    // SAFETY: forwarded contract.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r == -1 {
        -(super::errno() as c_long)
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_errors_read_as_libc_gives_them() {
        // SAFETY: getpid and close take no memory.
        unsafe {
            assert_eq!(system_call(libc::SYS_getpid, &[]), libc::getpid() as c_long);
            super::super::set_errno(0);
            assert_eq!(system_call(libc::SYS_close, &[-1]), -1);
        }
        assert_eq!(super::super::errno(), libc::EBADF);
    }
}
