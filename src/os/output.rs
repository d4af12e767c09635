//! Where the allocator's own lines go, so that they never change what the program does or
//! writes.
//!
//! - At start-up ([`capture_stderr`]) the identity (`st_dev`, `st_ino`) of what descriptor 2
//!   names is recorded. A line is written to descriptor 2 only while it still names that file:
//!   a program that closed stderr and opened a data file (which then got descriptor 2) never
//!   finds our lines in it.
//! - When a report is due later (statistics at exit), [`keep_stderr`] keeps a close-on-exec
//!   duplicate of the original stderr on a high descriptor, so the report reaches the original
//!   stderr even if the program closed descriptor 2 (as `ls` and every coreutils program do in
//!   their exit handler). The duplicate is used only while it still names the recorded file.
//! - Every line is one `write(2)` with `SIGPIPE` blocked for the calling thread; a `SIGPIPE`
//!   the write raised is consumed, so a broken pipe on stderr fails the write silently instead
//!   of killing the program. `errno` and the signal mask are as they were afterwards.
//!
//! That is for the output options ask for (warnings, the start-up line, reports). Two kinds of
//! line go to whatever descriptor 2 is now, as glibc's own do ([`write_stderr_now`]): the one
//! line before an abort (a bad free: the program is ending, and a program that redirected its
//! stderr with `dup2` expects it there), and what the program asked for (`malloc_stats`).

use super::linux::ErrnoKeeper;
use super::system_call;
use core::ffi::c_long;
use core::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, Ordering};

/// Descriptor 2 not looked at yet.
const UNKNOWN: u8 = 0;
/// Descriptor 2 was open at start-up: `DEV`/`INO` name its file.
const OPEN: u8 = 1;
/// Descriptor 2 was closed at start-up: nothing is ever written to it.
const CLOSED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
static DEV: AtomicU64 = AtomicU64::new(0);
static INO: AtomicU64 = AtomicU64::new(0);
/// The duplicate of the original stderr, or -1.
static DUP: AtomicI32 = AtomicI32::new(-1);

/// The lowest descriptor the duplicate may take: high, out of the way of programs that
/// expect the low numbers to be theirs.
const HIGH_FD: i32 = 1000;

/// The file `fd` names, if it is open.
fn identity(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: an all-zero `stat` is a valid buffer for fstat to fill.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    let a = [
        fd as c_long,
        c"".as_ptr() as c_long,
        &raw mut st as c_long,
        libc::AT_EMPTY_PATH as c_long,
    ];
    // SAFETY: fstatat of `fd` itself (an empty path) writes the buffer we own, laid out as the
    // kernel's `struct stat` on this target (libc's).
    (unsafe { system_call(libc::SYS_newfstatat, &a) } == 0).then_some((st.st_dev, st.st_ino))
}

/// Whether `fd` names the file descriptor 2 named at start-up.
fn is_original(fd: i32) -> bool {
    identity(fd) == Some((DEV.load(Ordering::Relaxed), INO.load(Ordering::Relaxed)))
}

/// Records what descriptor 2 names (once; at start-up, before anything is written).
pub fn capture_stderr() {
    if STATE.load(Ordering::Acquire) != UNKNOWN {
        return;
    }
    let _errno = ErrnoKeeper::new();
    let state = match identity(2) {
        Some((dev, ino)) => {
            DEV.store(dev, Ordering::Relaxed);
            INO.store(ino, Ordering::Relaxed);
            OPEN
        }
        None => CLOSED,
    };
    STATE.store(state, Ordering::Release);
}

/// Keeps a close-on-exec duplicate of the original stderr for output due later.
pub fn keep_stderr() {
    if STATE.load(Ordering::Acquire) != OPEN || DUP.load(Ordering::Relaxed) >= 0 {
        return;
    }
    let _errno = ErrnoKeeper::new();
    let dup_from = |low: i32| {
        let a = [2, libc::F_DUPFD_CLOEXEC as c_long, low as c_long];
        // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor; no memory is involved.
        unsafe { system_call(libc::SYS_fcntl, &a) as i32 }
    };
    let mut fd = dup_from(HIGH_FD);
    if fd < 0 {
        // Fewer descriptors allowed than HIGH_FD: take the lowest free one above stdio.
        fd = dup_from(3);
    }
    if fd >= 0 && is_original(fd) {
        DUP.store(fd, Ordering::Relaxed);
    }
}

/// Writes one line (newline included) where the allocator's lines go: the duplicate of the
/// original stderr, else descriptor 2, each only while it names the original file; nowhere if
/// neither does. Before start-up, descriptor 2.
pub fn write_line(line: &[u8]) {
    let _errno = ErrnoKeeper::new();
    match STATE.load(Ordering::Acquire) {
        UNKNOWN => write_fd(2, line),
        OPEN => {
            let dup = DUP.load(Ordering::Relaxed);
            if dup >= 0 && is_original(dup) {
                write_fd(dup, line)
            } else if is_original(2) {
                write_fd(2, line)
            }
        }
        _ => {}
    }
}

/// Writes one line to descriptor 2 as it is now (for the line before an abort, and for output
/// the program asked for), never raising `SIGPIPE`.
pub fn write_stderr_now(line: &[u8]) {
    let _errno = ErrnoKeeper::new();
    write_fd(2, line);
}

/// One `write(2)` of `bytes` to `fd` (more only if the kernel takes part of it), never raising
/// `SIGPIPE`: the signal is blocked for this thread around the write, and one the write raised
/// is taken off the pending set before the mask is restored. Errors are ignored.
pub fn write_fd(fd: i32, bytes: &[u8]) {
    // SAFETY: sigset_t is plain data; the libc calls below fill and read sets we own, and
    // change only this thread's mask, restored before returning.
    unsafe {
        let mut pipe: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        let mut pending: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        // The kernel's signal sets are the first 8 bytes of libc's.
        let set = |s: &libc::sigset_t| s as *const libc::sigset_t as c_long;
        let how = libc::SIG_BLOCK as c_long;
        let old_at = &raw mut old as c_long;
        system_call(libc::SYS_rt_sigprocmask, &[how, set(&pipe), old_at, 8]);
        system_call(libc::SYS_rt_sigpending, &[&raw mut pending as c_long, 8]);
        let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
        let mut done = 0;
        let mut epipe = false;
        while done < bytes.len() {
            let rest = &bytes[done..];
            let a = [fd as c_long, rest.as_ptr() as c_long, rest.len() as c_long];
            let n = system_call(libc::SYS_write, &a);
            if n > 0 {
                done += n as usize;
                continue;
            }
            let e = *libc::__errno_location();
            if n < 0 && e == libc::EINTR {
                continue;
            }
            epipe = n < 0 && e == libc::EPIPE;
            break;
        }
        if epipe && !was_pending {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let a = [set(&pipe), 0, &zero as *const libc::timespec as c_long, 8];
            system_call(libc::SYS_rt_sigtimedwait, &a);
        }
        let how = libc::SIG_SETMASK as c_long;
        system_call(libc::SYS_rt_sigprocmask, &[how, set(&old), 0, 8]);
    }
}
