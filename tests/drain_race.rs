//! The remote-drain protocol against the race it once lost: threads popping and pushing one
//! size class as fast as they can while another thread drains every slab in a loop, paced by
//! their rounds (so it cannot starve them on a loaded machine). An object handed out twice is
//! caught by a per-object tag (or crashes the child). A build with only the first of the
//! protocol's two fences crashed here in 2 of 11 runs, the real one in none of 7; the race
//! needs an interrupt to land between a section's two header loads, so no run can promise to
//! catch it (see `docs/design.md`, "Draining another CPU's slab"). Runs in a child process in
//! each of the three rseq modes: glibc's area and our own registration drain with the fences,
//! the fallback under each slab's lock.

mod common;

use rseqmalloc::RseqMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[global_allocator]
static GLOBAL: RseqMalloc = RseqMalloc;

const CHILD_ENV: &str = "RSEQMALLOC_DRAIN_RACE_CHILD";
const WORKERS: usize = 16;
const ROUNDS_PER_WORKER: usize = 200_000;
const BATCH: usize = 8;
/// The trimmer runs at most one drain per this many worker rounds (counted over all workers):
/// the density the unpaced loop reached on an idle machine in the rseq modes (770,000 drains
/// over 3.2 million rounds; the fallback's cheaper drains reached 4.4 million, so it drains
/// about 5.5x less than before). Unpaced, on oversubscribed CPUs, the trimmer took almost all
/// of one CPU and the workers' rounds slowed past the child's deadline.
const ROUNDS_PER_DRAIN: usize = 4;

fn tag(worker: usize, round: usize, k: usize) -> u64 {
    ((worker as u64) << 48) ^ ((round as u64) << 8) ^ k as u64 ^ 0x5a5a_0000_0000_0000
}

fn worker(w: usize, rounds: &AtomicUsize) -> usize {
    let l = Layout::from_size_align(48, 8).unwrap();
    let mut bad = 0;
    let mut objs = [std::ptr::null_mut::<u64>(); BATCH];
    for round in 0..ROUNDS_PER_WORKER {
        for (k, o) in objs.iter_mut().enumerate() {
            // SAFETY: non-zero size; written within its 48 bytes.
            unsafe {
                let p = GLOBAL.alloc(l).cast::<u64>();
                assert!(!p.is_null());
                for j in 0..6 {
                    p.add(j).write_volatile(tag(w, round, k));
                }
                *o = p;
            }
        }
        std::thread::yield_now();
        for (k, &p) in objs.iter().enumerate() {
            // SAFETY: allocated above with `l`; read within its 48 bytes, then freed.
            unsafe {
                for j in 0..6 {
                    if p.add(j).read_volatile() != tag(w, round, k) {
                        bad += 1;
                    }
                }
                GLOBAL.dealloc(p.cast(), l);
            }
        }
        rounds.fetch_add(1, Ordering::Relaxed);
    }
    bad
}

#[test]
#[ignore = "run as a child by `drains_never_hand_an_object_out_twice`"]
fn child_drain_race() {
    if !common::in_child(CHILD_ENV) {
        return;
    }
    let done = AtomicBool::new(false);
    let drains = AtomicUsize::new(0);
    let rounds = AtomicUsize::new(0);
    let bad: usize = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                // Paced by the workers' progress, so it cannot starve them.
                if drains.load(Ordering::Relaxed) * ROUNDS_PER_DRAIN
                    > rounds.load(Ordering::Relaxed)
                {
                    std::thread::yield_now();
                    continue;
                }
                rseqmalloc::trim();
                drains.fetch_add(1, Ordering::Relaxed);
            }
        });
        let rounds = &rounds;
        let hs: Vec<_> = (0..WORKERS)
            .map(|w| s.spawn(move || worker(w, rounds)))
            .collect();
        // Every worker joined before the trimmer is told to stop, a panicked one too: a panic
        // must fail the child, not leave the trimmer waiting for rounds that never come.
        let joined: Vec<_> = hs.into_iter().map(|h| h.join()).collect();
        done.store(true, Ordering::Relaxed);
        joined.into_iter().map(|r| r.unwrap()).sum()
    });
    let s = rseqmalloc::stats();
    println!(
        "RESULT mode={:?} bad={bad} drains={} restarts={} batch_restarts={} drains_skipped={}",
        rseqmalloc::rseq_mode(),
        drains.load(Ordering::Relaxed),
        s.restarts,
        s.batch_restarts,
        s.drains_skipped
    );
    assert_eq!(bad, 0, "{bad} words of objects handed out twice");
}

#[test]
fn drains_never_hand_an_object_out_twice() {
    for (mode, stdout) in common::run_in_modes("child_drain_race", CHILD_ENV, "") {
        let r = common::result_fields(&stdout);
        let result = format!("{mode}: {r:?}");
        // The drains must really have run, with the membarrier (not skipped).
        assert!(
            r.get("bad").is_some_and(|v| v == "0")
                && r.get("drains_skipped").is_some_and(|v| v == "0"),
            "{result}"
        );
        let drains: usize = r.get("drains").and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(drains > 100, "too few drains to mean anything: {result}");
    }
}
