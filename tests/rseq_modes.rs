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
//!
//! The same stress runs through the C API (`rseqmalloc::malloc`/`free`) with owned spans on (the
//! default, `owned_spans=on`, which only C allocations of 257-960 B use), in the three modes,
//! with objects also passed between threads through mailboxes, so frees land on other CPUs than
//! their owners': in the rseq modes slabs must take spans to own, and in fallback mode the
//! option is ignored; and in both rseq modes with `owned_spans=off`, where the stacks serve
//! every C allocation.

mod common;

use common::num;

use rseqmalloc::{RseqMalloc, RseqMode};
use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// The stress goes through the C API (`RSEQMALLOC_STRESS_C` in the child's environment).
static C_API: AtomicBool = AtomicBool::new(false);

/// Allocates an object of layout `l` through the API under stress.
fn alloc(l: Layout) -> *mut u8 {
    if C_API.load(Ordering::Relaxed) {
        rseqmalloc::malloc(l.size())
    } else {
        // SAFETY: the layouts of `layout_for` have a non-zero size.
        unsafe { GLOBAL.alloc(l) }
    }
}

/// Frees `p` (from [`alloc`] with layout `l`) through the API under stress.
///
/// # Safety
/// `p` is live, from [`alloc`] with `l`, and not used afterwards.
unsafe fn dealloc(p: *mut u8, l: Layout) {
    // SAFETY: the caller's contract.
    unsafe {
        if C_API.load(Ordering::Relaxed) {
            rseqmalloc::free(p)
        } else {
            GLOBAL.dealloc(p, l)
        }
    }
}

/// Checks an object passed between threads: its second word holds its tag's complement.
///
/// # Safety
/// `q` is a live C object of at least 16 bytes passed through a mailbox.
unsafe fn check_passed(q: *mut u8) {
    // SAFETY: the caller's contract.
    let (tag, mark) = unsafe { (q.cast::<u64>().read(), q.cast::<u64>().add(1).read()) };
    assert_eq!(
        mark, !tag,
        "passed object {q:p} handed out twice or corrupted"
    );
}

#[global_allocator]
static GLOBAL: RseqMalloc = RseqMalloc;

const THREADS: usize = 32;
const OPS_PER_MODE: usize = 100_000_000;
const SLOTS: usize = 64;
const MIGRATE_EVERY: usize = 4096;
/// Through the C API, every this many operations a worker also runs a burst ([`burst`]).
const BURST_EVERY: usize = 8192;
/// Objects of one burst.
const BURST: usize = 256;

static SIGNALS: AtomicU64 = AtomicU64::new(0);
/// Mailboxes the C-API stress passes objects between threads through.
const MAILBOXES: usize = 64;
static MAILBOX: [AtomicPtr<u8>; MAILBOXES] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAILBOXES];
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
    // And through the C API (owned spans, when on, taken over from the parent's slabs: the
    // sizes above 256 B).
    let c: Vec<*mut u8> = (0..10_000u64)
        .map(|i| {
            let p = rseqmalloc::malloc(24 + (i % 40) as usize * 24);
            // SAFETY: at least 24 bytes.
            unsafe { p.cast::<u64>().write(i) };
            p
        })
        .collect();
    for (i, &p) in c.iter().enumerate() {
        // SAFETY: live objects of ours.
        unsafe {
            ok &= p.cast::<u64>().read() == i as u64;
            rseqmalloc::free(p);
        }
    }
    // SAFETY: _exit ends the child at once, touching no shared state.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

/// Worker `t`'s burst number `k`: [`BURST`] objects of one size, its class changing from
/// burst to burst (144 to 912 bytes; from 336 B on owned spans, `owned::FIXED_MIN`), allocated,
/// checked and freed together, so that owned spans run wholly free, are kept, and are taken
/// over by the next burst's class while the drainer, the signals and the migrations go on.
fn burst(t: usize, k: usize) {
    let size = 144 + 96 * ((t + k) % 9);
    let mut objs = [std::ptr::null_mut::<u8>(); BURST];
    for (i, o) in objs.iter_mut().enumerate() {
        *o = rseqmalloc::malloc(size);
        assert!(!o.is_null());
        // SAFETY: a fresh object of `size` (at least 144) bytes.
        unsafe { o.cast::<u64>().write(((t as u64) << 32) | i as u64) };
    }
    for (i, &o) in objs.iter().enumerate() {
        // SAFETY: our live objects, tagged above.
        unsafe {
            assert_eq!(
                o.cast::<u64>().read(),
                ((t as u64) << 32) | i as u64,
                "burst object {o:p} handed out twice or corrupted"
            );
            rseqmalloc::free(o);
        }
    }
}

fn stress() {
    C_API.store(
        std::env::var_os("RSEQMALLOC_STRESS_C").is_some(),
        Ordering::Relaxed,
    );
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
                    if C_API.load(Ordering::Relaxed) && op % BURST_EVERY == BURST_EVERY / 2 {
                        burst(t, op / BURST_EVERY);
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
                        }
                        if C_API.load(Ordering::Relaxed) && op % 8 == 0 {
                            // Passed to another thread instead: the tag's complement in the
                            // second word says whose it is; what comes back is freed here.
                            // SAFETY: C objects of at least 16 bytes, live and ours.
                            unsafe {
                                p.cast::<u64>().add(1).write(!tag);
                                let q = MAILBOX[(i + t) % MAILBOXES].swap(p, Ordering::AcqRel);
                                if !q.is_null() {
                                    check_passed(q);
                                    rseqmalloc::free(q);
                                }
                            }
                        } else {
                            // SAFETY: as above.
                            unsafe { dealloc(p, l) };
                        }
                        slots[i].0 = std::ptr::null_mut();
                    } else {
                        let l = layout_for(x >> 16);
                        seq += 1;
                        let tag = (t as u64) << 48 | seq;
                        // The tag fits (size >= 9, the tag is 8 bytes).
                        let p = alloc(l);
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
                            dealloc(p, l);
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
    for m in &MAILBOX {
        let q = m.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !q.is_null() {
            // SAFETY: a passed object, live, now ours.
            unsafe {
                check_passed(q);
                rseqmalloc::free(q);
            }
        }
    }
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
         forks={} drains={} cached_after_trim={} mm_cid={} drains_skipped={} owned_taken={} \
         owned_given_back={} owned_reclassed={} owned_routed={} invariants={}",
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
        s.drains_skipped,
        s.owned_spans_taken,
        s.owned_spans_given_back,
        s.owned_spans_reclassed,
        s.owned_classes_routed,
        invariants()
    );
}

/// The allocator's own invariants at rest (`fuzzing` builds: the page heap, every central
/// list, every slab's stacks and owned spans), as the RESULT line reports them: `ok`, the
/// broken one, or `unchecked` without the feature.
fn invariants() -> String {
    #[cfg(feature = "fuzzing")]
    return match rseqmalloc::fuzzing::check_invariants() {
        Ok(()) => "ok".into(),
        Err(b) => format!("broken:{}@{:#x}", b.what.replace(' ', "_"), b.at),
    };
    #[cfg(not(feature = "fuzzing"))]
    "unchecked".into()
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
    common::child_result("child_stress", "RSEQMALLOC_STRESS_CHILD", env)
}

/// The child's invariants held at rest after its final trim (checked in `fuzzing` builds).
fn assert_invariants(r: &HashMap<String, String>) {
    let want = if cfg!(feature = "fuzzing") {
        "ok"
    } else {
        "unchecked"
    };
    assert_eq!(r["invariants"], want, "{r:?}");
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
    assert_invariants(&r);
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
    assert_invariants(&r);
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
    assert_invariants(&r);
}

/// Runs the C-API stress in `mode` (glibc's area or our own registration) with `options` in
/// `RSEQMALLOC_OPTIONS` (none when empty: the defaults).
fn run_c_stress(mode: RseqMode, options: &str) -> HashMap<String, String> {
    let mut env = vec![("RSEQMALLOC_STRESS_C", "1")];
    if !options.is_empty() {
        env.push(("RSEQMALLOC_OPTIONS", options));
    }
    if mode == RseqMode::Own {
        env.push(("GLIBC_TUNABLES", "glibc.pthread.rseq=0"));
    }
    run_mode(&env)
}

/// What every C-API stress asked to run in `mode` (glibc's area or our own registration) must
/// show: the mode, every operation, nothing cached after the final trim, the invariants; and
/// where the critical sections run, the fork, drains, the signal storm, restarts and no
/// fallback operation. Where they cannot (aarch64, qemu: `common::expected_mode`), the child
/// runs the fallback, which routes no small class. Returns whether the critical sections ran.
fn assert_c_stress_ran(r: &HashMap<String, String>, mode: RseqMode) -> bool {
    let name = format!("{mode:?}");
    let expected = common::expected_mode(if mode == RseqMode::Glibc {
        "Glibc"
    } else {
        "Own"
    });
    assert_eq!(r["mode"], expected, "asked for {name}");
    assert!(num(r, "ops") >= OPS_PER_MODE as u64, "{r:?}");
    assert_eq!(num(r, "cached_after_trim"), 0, "{r:?}");
    assert_invariants(r);
    if expected == "Fallback" {
        assert_eq!(num(r, "owned_routed"), 0, "{r:?}");
        return false;
    }
    assert_eq!(num(r, "forks"), 1);
    assert!(num(r, "drains") > 10, "{r:?}");
    assert!(num(r, "signals") > 1000, "signal storm too weak: {r:?}");
    assert!(num(r, "restarts") > 0, "no rseq restart observed: {r:?}");
    assert_eq!(num(r, "fallback_ops"), 0);
    true
}

/// What the C-API stress with owned spans on must show in an rseq mode, beyond
/// [`assert_c_stress_ran`]: spans taken to own, given back whole, and turned over to another
/// class (the final trim's drains took every owned span back: nothing cached). Its drains
/// empty the stacks too often for a small class to be seen idle: `tests/idle_routes.rs`
/// routes them.
fn assert_owned_stress(r: &HashMap<String, String>, mode: RseqMode) {
    // Where the sections cannot run, fallback mode's owned spans (under the slabs' locks) serve.
    assert_c_stress_ran(r, mode);
    assert!(num(r, "owned_taken") > 0, "no span owned: {r:?}");
    assert!(
        num(r, "owned_given_back") > 0,
        "no span given back whole: {r:?}"
    );
    assert!(
        num(r, "owned_reclassed") > 0,
        "no kept span taken over by another class: {r:?}"
    );
}

/// The C-API stress with the default options: owned spans on (for classes of 257-960 B).
#[test]
fn stress_owned_spans_with_glibc_area() {
    assert_owned_stress(&run_c_stress(RseqMode::Glibc, ""), RseqMode::Glibc);
}

#[test]
fn stress_owned_spans_with_own_registration() {
    assert_owned_stress(&run_c_stress(RseqMode::Own, ""), RseqMode::Own);
}

/// With `owned_spans=off` every C allocation goes through the stacks (as the default did
/// before session 47): [`assert_c_stress_ran`], and no span owned.
fn assert_c_stress_without_owned_spans(r: &HashMap<String, String>, mode: RseqMode) {
    assert_c_stress_ran(r, mode);
    assert_eq!(num(r, "owned_taken"), 0, "{r:?}");
    assert_eq!(num(r, "owned_routed"), 0, "{r:?}");
}

#[test]
fn stress_without_owned_spans_with_glibc_area() {
    let r = run_c_stress(RseqMode::Glibc, "owned_spans=off");
    assert_c_stress_without_owned_spans(&r, RseqMode::Glibc);
}

#[test]
fn stress_without_owned_spans_with_own_registration() {
    let r = run_c_stress(RseqMode::Own, "owned_spans=off");
    assert_c_stress_without_owned_spans(&r, RseqMode::Own);
}

/// Fallback mode runs owned spans under the slabs' locks (since session 76): the same stress, with
/// spans owned, given back whole and turned over to other classes, the drains (locked) taking every
/// owned span back, and no class routed once idle (fallback mode routes the fixed classes only).
#[test]
fn stress_owned_spans_with_forced_fallback() {
    let r = run_mode(&[
        ("RSEQMALLOC_STRESS_C", "1"),
        ("RSEQMALLOC_OPTIONS", "owned_spans=on,rseq=off"),
    ]);
    assert_eq!(r["mode"], format!("{:?}", RseqMode::Fallback));
    assert!(num(&r, "ops") >= OPS_PER_MODE as u64, "{r:?}");
    assert_eq!(num(&r, "forks"), 1);
    assert!(num(&r, "owned_taken") > 0, "no span owned: {r:?}");
    assert!(
        num(&r, "owned_given_back") > 0,
        "no span given back whole: {r:?}"
    );
    assert!(
        num(&r, "owned_reclassed") > 0,
        "no kept span taken over: {r:?}"
    );
    assert!(num(&r, "fallback_ops") > 0, "{r:?}");
    assert!(num(&r, "drains") > 10, "{r:?}");
    assert_eq!(num(&r, "owned_routed"), 0, "{r:?}");
    assert_eq!(num(&r, "restarts"), 0);
    assert_eq!(num(&r, "cached_after_trim"), 0, "{r:?}");
    assert_invariants(&r);
}

/// Without the rseq membarrier a drain cannot stop owned spans' sections (docs/design.md,
/// "Owned spans"), so `owned_spans=on` is ignored there too. (Where the sections cannot run,
/// the child runs the fallback, whose owned spans need no membarrier: they serve.)
#[test]
fn stress_owned_spans_without_membarrier_owns_nothing() {
    let r = run_mode(&[
        ("RSEQMALLOC_STRESS_C", "1"),
        ("RSEQMALLOC_OPTIONS", "owned_spans=on,membarrier=off"),
    ]);
    assert_eq!(r["mode"], common::expected_mode("Glibc"));
    assert!(num(&r, "ops") >= OPS_PER_MODE as u64, "{r:?}");
    assert_eq!(num(&r, "owned_taken") > 0, r["mode"] == "Fallback", "{r:?}");
    assert_eq!(num(&r, "owned_routed"), 0, "{r:?}");
    assert_eq!(num(&r, "cached_after_trim"), 0, "{r:?}");
}
