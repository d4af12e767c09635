//! Threads: thread-exit keys, starting a thread, fork and exit handlers and ending the process
//! through the C library; the calling thread's CPU affinity, yielding and sleeping through
//! system calls made directly (`system_call`: a program's own `sched_yield` or `nanosleep`
//! never runs inside the allocator).
//! None of them allocates through this allocator, except `pthread_setspecific` for a key past
//! the first 32 (see [`thread_key_arm`]), `pthread_create` (its caller runs outside every
//! allocator lock) and `exit` (the program's handlers).

use core::ffi::{c_long, c_void};

/// Creates a thread-specific key whose destructor `dtor` runs at the exit of every thread that
/// armed it ([`thread_key_arm`]); None if the C library has no key left.
pub fn thread_key_create(dtor: extern "C" fn(*mut c_void)) -> Option<u32> {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: pthread_key_create writes the key; `dtor` is a valid destructor.
    (unsafe { libc::pthread_key_create(&mut key, Some(dtor)) } == 0).then_some(key)
}

/// Arms `key`'s destructor for the calling thread (gives it a non-null value); false if the
/// C library refused (`ENOMEM`: for a key past the first 32 it allocates, through `malloc`, a
/// block per thread). Call it with no allocator lock held.
pub fn thread_key_arm(key: u32) -> bool {
    // SAFETY: a key from `thread_key_create`; any non-null value runs the destructor.
    unsafe { libc::pthread_setspecific(key, core::ptr::dangling::<c_void>()) == 0 }
}

/// Starts a thread running `run` (never joined) with every signal blocked and a stack of
/// [`SPAWN_STACK_BYTES`]; false if it could not be created.
///
/// The attributes are the caller's own, not the process's defaults: with none, glibc copies
/// the defaults under its lock of them, and a program that set defaults with a CPU set
/// (`pthread_setattr_default_np`) makes that copy `calloc` while holding the lock; a thread
/// whose allocation there starts ours would wait for its own lock (found by review, session
/// 72). With the stack size set, `pthread_create` does not read the defaults at all.
///
/// The thread is the allocator's, not the program's: a signal sent to the process must reach
/// one of the program's threads, as it would without ours. A thread inherits its creator's
/// signal mask, so the calling thread blocks every signal around `pthread_create` (the new
/// thread never runs with one unblocked) and then takes its own mask back. jemalloc's
/// background threads are started the same way. Without it (found in session 71 by a breaker
/// run) a handler could run on our thread while the program's main thread forked
/// (PostgreSQL's postmaster hung), and a signal the program blocked to read it from a
/// `signalfd` killed the process instead (conformance `background_signals.c`).
pub fn spawn(run: extern "C" fn(*mut c_void) -> *mut c_void) -> bool {
    // SAFETY: an all-zero sigset_t is valid storage for sigfillset and pthread_sigmask to
    // write.
    let (mut all, mut old): (libc::sigset_t, libc::sigset_t) =
        unsafe { (core::mem::zeroed(), core::mem::zeroed()) };
    let mut tid: libc::pthread_t = 0;
    // A refused `pthread_create` sets `errno` (`ENOMEM`, besides the error it returns), and
    // the caller (an allocation) must leave `errno` as it was.
    let _errno = super::ErrnoKeeper::new();
    // SAFETY: an all-zero pthread_attr_t is valid storage for pthread_attr_init to write.
    let mut attr: libc::pthread_attr_t = unsafe { core::mem::zeroed() };
    // SAFETY: `all`, `old` and `attr` are ours; `attr` is initialised before use and destroyed
    // after; the start routine is valid, with a null argument. The caller's mask is restored
    // whatever the outcome.
    unsafe {
        if libc::pthread_attr_init(&mut attr) != 0 {
            return false;
        }
        let sized = libc::pthread_attr_setstacksize(&mut attr, SPAWN_STACK_BYTES) == 0;
        libc::sigfillset(&mut all);
        let masked = libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) == 0;
        let made = sized && libc::pthread_create(&mut tid, &attr, run, core::ptr::null_mut()) == 0;
        if masked {
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        }
        libc::pthread_attr_destroy(&mut attr);
        made
    }
}

/// The stack of a thread [`spawn`] starts: 8 MiB, glibc's usual default (the soft stack
/// limit), mapped lazily. The background thread's own work needs little, but when it ends the
/// process it runs the program's `atexit` handlers and destructors.
pub const SPAWN_STACK_BYTES: usize = 8 << 20;

/// A thread's signal mask (`pthread_sigmask`).
#[derive(Clone, Copy)]
pub struct SignalMask(libc::sigset_t);

impl SignalMask {
    /// The calling thread's mask.
    pub fn current() -> Self {
        // SAFETY: an all-zero sigset_t is valid storage for pthread_sigmask to write; no
        // change is asked (null new set).
        unsafe {
            let mut m: libc::sigset_t = core::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, core::ptr::null(), &mut m);
            SignalMask(m)
        }
    }

    /// Makes this the calling thread's mask.
    pub fn set(&self) {
        // SAFETY: a mask `current` read; the old mask is not asked for.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, core::ptr::null_mut()) };
    }
}

/// Registers fork handlers (`pthread_atfork`).
pub fn at_fork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    // SAFETY: registering valid function pointers.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// Registers an exit handler (`atexit`).
pub fn at_exit(f: extern "C" fn()) {
    // SAFETY: registering a valid function pointer.
    unsafe { libc::atexit(f) };
}

/// Ends the process as the C library's `exit(status)` does: the `atexit` handlers and the
/// destructors run (in the calling thread), stdio's buffers are flushed, every thread ends.
pub fn exit_process(status: i32) -> ! {
    // SAFETY: exit has no preconditions; it does not return.
    unsafe { libc::exit(status) }
}

/// Gives the calling thread's CPU to another runnable thread (`sched_yield`).
pub fn yield_now() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { super::system_call(libc::SYS_sched_yield, &[]) };
}

/// Sleeps for about `ms` milliseconds (`nanosleep`; a signal may end it early).
pub fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as i64,
        tv_nsec: ((ms % 1000) * 1_000_000) as i64,
    };
    let _errno = super::ErrnoKeeper::new();
    // SAFETY: nanosleep reads the timespec we own.
    unsafe { super::system_call(libc::SYS_nanosleep, &[&ts as *const _ as c_long]) };
}

/// A CPU affinity mask.
pub struct CpuSet(libc::cpu_set_t);

/// The calling thread's CPU affinity mask, or None if the kernel refused.
pub fn affinity() -> Option<CpuSet> {
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    let a = [
        0,
        size_of::<libc::cpu_set_t>() as c_long,
        &raw mut set as c_long,
    ];
    // SAFETY: `set` is a writable cpu_set_t of the size passed; the kernel returns the bytes
    // it wrote (the rest stays empty), where libc's wrapper returns 0.
    let r = unsafe { super::system_call(libc::SYS_sched_getaffinity, &a) };
    (r >= 0).then_some(CpuSet(set))
}

/// Sets the calling thread's CPU affinity mask (a mask read by [`affinity`]).
pub fn set_affinity(set: &CpuSet) -> bool {
    let a = [
        0,
        size_of::<libc::cpu_set_t>() as c_long,
        &set.0 as *const _ as c_long,
    ];
    // SAFETY: a valid set of the size passed.
    unsafe { super::system_call(libc::SYS_sched_setaffinity, &a) == 0 }
}

/// Restricts the calling thread to CPU `cpu`; when this returns true, the thread runs there
/// (`sched_setaffinity` migrates the caller before it returns). False if `cpu` is beyond the
/// mask or the kernel refused (cpuset, offline CPU).
pub fn pin_to_cpu(cpu: usize) -> bool {
    if cpu >= size_of::<libc::cpu_set_t>() * 8 {
        return false;
    }
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set.
    let mut one = CpuSet(unsafe { core::mem::zeroed() });
    // SAFETY: `cpu` is below the set's capacity (checked above).
    unsafe { libc::CPU_SET(cpu, &mut one.0) };
    set_affinity(&one)
}
