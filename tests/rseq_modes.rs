//! The per-CPU layer under stress in all three rseq modes: glibc's area, our own registration
//! (`GLIBC_TUNABLES=glibc.pthread.rseq=0`) and the forced fallback (`RSEQMALLOC_OPTIONS=rseq=off`).
//!
//! Each mode runs in a child process of this test binary (the mode is chosen once per process):
//! 32 threads on the machine's CPUs, each moving itself to another CPU with `sched_setaffinity`
//! every few thousand operations, a 10 kHz `ITIMER_REAL` (`setitimer`) signal storm whose handler touches
//! memory without allocating, and a `fork` in the middle whose child allocates, checks and exits.
//! Every object carries a unique tag written at allocation and checked at free, so an object
//! handed out twice is caught. Meanwhile another thread runs `trim()` in a loop, draining every
//! slab (under its lock in fallback mode, by the stop-and-fence protocol with rseq).
//! At least 1e8 operations per mode.

mod common;

use rseqmalloc::{RseqMalloc, RseqMode};
use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[global_allocator]
static GLOBAL: RseqMalloc = RseqMalloc;

const THREADS: usize = 32;
const OPS_PER_MODE: usize = 100_000_000;
const SLOTS: usize = 64;
const MIGRATE_EVERY: usize = 4096;

static SIGNALS: AtomicU64 = AtomicU64::new(0);
static mut SCRATCH: [u64; 64] = [0; 64];

/// Blocks (or unblocks) SIGALRM in the calling thread.
fn block_alarm(block: bool) {
    // SAFETY: a sigset we own, changed with the documented calls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGALRM);
        libc::pthread_sigmask(
            if block {
                libc::SIG_BLOCK
            } else {
                libc::SIG_UNBLOCK
            },
            &set,
            std::ptr::null_mut(),
        );
    }
}

extern "C" fn on_alarm(_: libc::c_int) {
    let n = SIGNALS.fetch_add(1, Ordering::Relaxed);
    // Touch memory, allocate nothing.
    // SAFETY: a racy scratch buffer only written here; its contents are never relied upon.
    unsafe { (*std::ptr::addr_of_mut!(SCRATCH))[(n % 64) as usize] = n };
}

fn layout_for(x: u64) -> Layout {
    // Mostly small sizes, the classes the per-CPU caches serve; one in eight of 1-4 KiB, past
    // what fallback mode's magazines hold (classes up to 1 KiB), so its slab locks see steady
    // traffic too.
    let size = if (x >> 14).is_multiple_of(8) {
        1025 + ((x >> 17) % 3072) as usize
    } else {
        8 + (x % 8 + 1) as usize * ((x >> 8) % 64 + 1) as usize
    };
    Layout::from_size_align(size, 8).unwrap()
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays in bounds for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// In a forked child: allocate, check, free, and exit without running any destructor.
fn child_after_fork() -> ! {
    let mut ok = true;
    let mut v: Vec<Box<[u64; 8]>> = Vec::new();
    for i in 0..10_000u64 {
        v.push(Box::new([i; 8]));
    }
    for (i, b) in v.iter().enumerate() {
        ok &= b.iter().all(|&x| x == i as u64);
    }
    drop(v);
    // SAFETY: _exit ends the child at once, touching no shared state.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

fn stress() {
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let forked = AtomicUsize::new(0);
    let total_ops = AtomicUsize::new(0);
    // SAFETY: installing a handler that only touches atomics and a scratch buffer; the main
    // thread blocks SIGALRM so that the 10 kHz ITIMER_REAL storm lands on the workers (which
    // unblock it), in the middle of their allocations.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        block_alarm(true);
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100,
        };
        let it = libc::itimerval {
            it_interval: tv,
            it_value: tv,
        };
        libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut());
    }
    let workers_done = AtomicUsize::new(0);
    let drains = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // A drainer trims again and again while the workers run, emptying every slab, so a
        // drain racing an allocation would hand out an object twice and trip a tag check.
        let mut handles = Vec::with_capacity(THREADS + 1);
        handles.push(s.spawn(|| {
            block_alarm(false);
            while workers_done.load(Ordering::Relaxed) < THREADS {
                rseqmalloc::trim();
                drains.fetch_add(1, Ordering::Relaxed);
                std::thread::yield_now();
            }
        }));
        for t in 0..THREADS {
            let (forked, total_ops, workers_done) = (&forked, &total_ops, &workers_done);
            handles.push(s.spawn(move || {
                block_alarm(false);
                let mut slots: [(*mut u8, u64, Layout); SLOTS] =
                    [(std::ptr::null_mut(), 0, Layout::new::<u8>()); SLOTS];
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t as u64;
                let mut seq = 0u64;
                let ops = OPS_PER_MODE / THREADS;
                for op in 0..ops {
                    if op % MIGRATE_EVERY == 0 {
                        pin((t + op / MIGRATE_EVERY) % ncpu);
                    }
                    if t == 0 && op == ops / 2 && forked.fetch_add(1, Ordering::Relaxed) == 0 {
                        // SAFETY: the child only allocates and calls _exit.
                        let pid = unsafe { libc::fork() };
                        if pid == 0 {
                            child_after_fork();
                        }
                        let mut status = 0;
                        // SAFETY: waiting for our own child.
                        unsafe { libc::waitpid(pid, &mut status, 0) };
                        assert!(
                            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                            "fork child failed: {status}"
                        );
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x % SLOTS as u64) as usize;
                    let (p, tag, l) = slots[i];
                    if !p.is_null() {
                        // SAFETY: `p` is live with layout `l` and carries `tag` in its first word.
                        unsafe {
                            let got = p.cast::<u64>().read();
                            assert_eq!(got, tag, "object {p:p} handed out twice or corrupted");
                            GLOBAL.dealloc(p, l);
                        }
                        slots[i].0 = std::ptr::null_mut();
                    } else {
                        let l = layout_for(x >> 16);
                        seq += 1;
                        let tag = (t as u64) << 48 | seq;
                        // SAFETY: non-zero size; the tag fits (size >= 9, the tag is 8 bytes).
                        let p = unsafe { GLOBAL.alloc(l) };
                        assert!(!p.is_null());
                        // SAFETY: the object holds at least 16 bytes, 8-aligned.
                        unsafe { p.cast::<u64>().write(tag) };
                        slots[i] = (p, tag, l);
                    }
                }
                for (p, tag, l) in slots {
                    if !p.is_null() {
                        // SAFETY: as above.
                        unsafe {
                            assert_eq!(p.cast::<u64>().read(), tag);
                            GLOBAL.dealloc(p, l);
                        }
                    }
                }
                total_ops.fetch_add(ops, Ordering::Relaxed);
                workers_done.fetch_add(1, Ordering::Relaxed);
            }));
        }
        // Joined (pthread_join), not only waited for as the scope does: a thread's exit frees
        // its own thread-local state after its closure returns, and the final trim below must
        // come after that.
        for h in handles {
            h.join().unwrap();
        }
    });
    // SAFETY: stop the timer.
    unsafe {
        let zero = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
        };
        libc::setitimer(libc::ITIMER_REAL, &zero, std::ptr::null_mut());
    }
    // Every worker is gone: one more trim must leave every CPU's cache empty, whichever way
    // this mode drains other CPUs (slab locks, membarrier fences, or pinning).
    rseqmalloc::trim();
    let s = rseqmalloc::stats();
    let cached: usize = s.cpu_cache_bytes.iter().sum();
    // Machine-readable line for the parent.
    println!(
        "RESULT mode={:?} ops={} signals={} restarts={} batch_restarts={} fallback_ops={} \
         forks={} drains={} cached_after_trim={} mm_cid={} drains_skipped={}",
        s.rseq_mode,
        total_ops.load(Ordering::Relaxed),
        SIGNALS.load(Ordering::Relaxed),
        s.restarts,
        s.batch_restarts,
        s.fallback_ops,
        forked.load(Ordering::Relaxed),
        drains.load(Ordering::Relaxed),
        cached,
        s.uses_mm_cid,
        s.drains_skipped
    );
}

#[test]
#[ignore = "run as a child by the per-mode tests"]
fn child_stress() {
    if std::env::var_os("RSEQMALLOC_STRESS_CHILD").is_some() {
        stress();
    }
}

/// Runs the stress child with `env` and returns its RESULT fields.
fn run_mode(env: &[(&str, &str)]) -> HashMap<String, String> {
    let mut all = vec![("RSEQMALLOC_STRESS_CHILD", "1")];
    all.extend_from_slice(env);
    let stdout = common::run_child_test("child_stress", &all);
    let r = common::result_fields(&stdout);
    assert!(!r.is_empty(), "no RESULT line in:\n{stdout}");
    r
}

fn num(r: &HashMap<String, String>, k: &str) -> u64 {
    r[k].parse().unwrap()
}

#[test]
fn stress_with_glibc_area() {
    let r = run_mode(&[]);
    assert_eq!(r["mode"], format!("{:?}", RseqMode::Glibc));
    assert!(num(&r, "ops") >= OPS_PER_MODE as u64);
    assert_eq!(num(&r, "forks"), 1);
    assert!(num(&r, "drains") > 10, "{r:?}");
    assert!(num(&r, "signals") > 1000, "signal storm too weak: {r:?}");
    // The storm lands inside critical sections: the abort handlers must have run.
    assert!(num(&r, "restarts") > 0, "no rseq restart observed: {r:?}");
    assert_eq!(num(&r, "fallback_ops"), 0);
    assert_eq!(num(&r, "cached_after_trim"), 0, "{r:?}");
}

/// As on a kernel without the rseq membarrier: slabs by cpu_id, trim drains other CPUs by
/// pinning itself to each (maintenance's idle drains are skipped there).
#[test]
fn stress_with_glibc_area_without_membarrier() {
    let r = run_mode(&[("RSEQMALLOC_OPTIONS", "membarrier=off")]);
    assert_stressed_by_cpu_id(&r, RseqMode::Glibc);
}

/// What both stress runs without the membarrier must show: the mode asked for, slabs by
/// `cpu_id`, every operation, the fork, drains, rseq restarts, and nothing cached after trim.
fn assert_stressed_by_cpu_id(r: &HashMap<String, String>, mode: RseqMode) {
    assert_eq!(r["mode"], format!("{mode:?}"));
    assert_eq!(r["mm_cid"], "false", "{r:?}");
    assert!(num(r, "ops") >= OPS_PER_MODE as u64);
    assert_eq!(num(r, "forks"), 1);
    assert!(num(r, "drains") > 10, "{r:?}");
    assert!(num(r, "restarts") > 0, "no rseq restart observed: {r:?}");
    assert_eq!(num(r, "cached_after_trim"), 0, "{r:?}");
}

/// The same with our own registration: its pinned drains run on an area glibc never saw.
#[test]
fn stress_with_own_registration_without_membarrier() {
    let r = run_mode(&[
        ("RSEQMALLOC_OPTIONS", "membarrier=off"),
        ("GLIBC_TUNABLES", "glibc.pthread.rseq=0"),
    ]);
    assert_stressed_by_cpu_id(&r, RseqMode::Own);
    assert_eq!(num(&r, "fallback_ops"), 0);
}

#[test]
fn stress_with_own_registration() {
    let r = run_mode(&[("GLIBC_TUNABLES", "glibc.pthread.rseq=0")]);
    assert_eq!(r["mode"], format!("{:?}", RseqMode::Own));
    assert!(num(&r, "ops") >= OPS_PER_MODE as u64);
    assert_eq!(num(&r, "forks"), 1);
    assert!(num(&r, "restarts") > 0, "no rseq restart observed: {r:?}");
    assert_eq!(num(&r, "fallback_ops"), 0);
    assert_eq!(num(&r, "cached_after_trim"), 0, "{r:?}");
}

#[test]
fn stress_with_forced_fallback() {
    let r = run_mode(&[("RSEQMALLOC_OPTIONS", "rseq=off")]);
    assert_eq!(r["mode"], format!("{:?}", RseqMode::Fallback));
    assert!(num(&r, "ops") >= OPS_PER_MODE as u64);
    assert_eq!(num(&r, "forks"), 1);
    assert_eq!(num(&r, "restarts"), 0);
    assert_eq!(num(&r, "batch_restarts"), 0);
    // Most small operations are served by the thread's magazine without the slab lock; the
    // slabs must still see traffic (refills, flushes, larger classes).
    assert!(num(&r, "fallback_ops") > OPS_PER_MODE as u64 / 100, "{r:?}");
    assert_eq!(num(&r, "cached_after_trim"), 0, "{r:?}");
}
