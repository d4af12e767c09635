//! With 64 threads on this machine's CPUs, the per-CPU layer's memory is bounded by the number
//! of CPUs (or concurrency ids), not by the number of threads. In the three rseq modes, each in
//! a child process of its own (the mode is chosen once per process).

mod common;

use rseqmalloc::RseqMalloc;
use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: RseqMalloc = RseqMalloc;

const CHILD: &str = "RSEQMALLOC_PERCPU_BOUND_CHILD";

#[test]
fn sixty_four_threads_touch_at_most_one_slab_per_cpu() {
    common::run_in_modes("child_sixty_four_threads", CHILD, "");
}

#[test]
#[ignore = "run as a child"]
fn child_sixty_four_threads() {
    if !common::in_child(CHILD) {
        return;
    }
    const THREADS: usize = 64;
    const PER_THREAD: usize = 20_000;
    let barrier = std::sync::Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let barrier = &barrier;
            s.spawn(move || {
                let mut live = Vec::with_capacity(PER_THREAD);
                for i in 0..PER_THREAD {
                    let l = Layout::from_size_align(16 + (i * 7 + t) % 1000, 8).unwrap();
                    // SAFETY: non-zero size.
                    let p = unsafe { GLOBAL.alloc(l) };
                    assert!(!p.is_null());
                    live.push((p, l));
                }
                barrier.wait(); // all 64 working sets are live at once
                for (p, l) in live {
                    // SAFETY: allocated above with `l`.
                    unsafe { GLOBAL.dealloc(p, l) };
                }
            });
        }
    });
    let s = rseqmalloc::stats();
    let budget = rseqmalloc::options().cpu_cache_bytes as usize;
    let cached: usize = s.cpu_cache_bytes.iter().sum();
    // One slab per possible CPU id, however many threads ran.
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    let max_id: usize = possible
        .trim()
        .split([',', '-'])
        .map(|n| n.parse::<usize>().unwrap())
        .max()
        .unwrap();
    assert_eq!(s.slabs, max_id + 1);
    assert!(
        s.slabs_in_use <= s.slabs,
        "{} slabs touched, {} exist",
        s.slabs_in_use,
        s.slabs
    );
    assert!(s.slabs_in_use < THREADS);
    // No thread here fills a stack and comes back to find it empty, so no class enters the
    // burst tier, and what the caches hold is bounded by slabs × budget, far below what the
    // threads freed.
    assert_eq!(s.burst_growths, 0);
    let freed_by_threads = THREADS * PER_THREAD * 16;
    assert!(
        cached <= s.slabs_in_use * budget,
        "cached {cached} > {} slabs × {budget}",
        s.slabs_in_use
    );
    assert!(
        cached * 4 < freed_by_threads,
        "cached {cached} is not small next to {freed_by_threads}"
    );
    println!(
        "threads {THREADS}, slabs {} (in use {}), cached {cached} bytes, mm_cid {}",
        s.slabs, s.slabs_in_use, s.uses_mm_cid
    );
}

/// A burst past the per-CPU cache is handed out in address order: a program that allocates
/// many objects and walks them in allocation order walks memory forwards, as the hardware
/// prefetcher expects. Before, each refill's batch came out highest address first, so such a
/// walk went backwards in runs of a batch, and a burst of 100,000 objects of 256 B took about
/// 1.25x as long to allocate, write, read and free (docs/benchmarks.md, "Session 32"). In the
/// three modes; 48 B objects, a class nothing else here uses in bulk.
#[test]
fn a_burst_is_handed_out_in_address_order() {
    for (mode, out) in common::run_in_modes("child_burst_in_address_order", CHILD, "") {
        let line = out.lines().find(|l| l.starts_with("forwards"));
        eprintln!("[{mode}] {}", line.unwrap_or("(none)"));
        assert!(out.contains("RESULT ok"), "[{mode}] {out}");
    }
}

#[test]
#[ignore = "run as a child"]
fn child_burst_in_address_order() {
    if !common::in_child(CHILD) {
        return;
    }
    const N: usize = 10_000;
    let l = Layout::from_size_align(48, 8).unwrap();
    let mut live = Vec::with_capacity(N);
    for _ in 0..N {
        // SAFETY: non-zero size.
        let p = unsafe { GLOBAL.alloc(l) };
        assert!(!p.is_null());
        live.push(p);
    }
    let forwards = live
        .windows(2)
        .filter(|w| w[1] > w[0] && (w[1] as usize - w[0] as usize) < 4096)
        .count();
    println!("forwards {forwards} of {} steps", N - 1);
    for p in live {
        // SAFETY: allocated above with `l`.
        unsafe { GLOBAL.dealloc(p, l) };
    }
    assert!(
        forwards * 10 >= (N - 1) * 9,
        "{forwards} of {} steps went forwards",
        N - 1
    );
    println!("RESULT ok");
}
