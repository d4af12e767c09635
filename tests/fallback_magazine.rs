//! The fallback mode's per-thread magazines give everything back: a thread's magazine at its
//! exit, the caller's at `stats()` and `trim()`. Runs in a child process with
//! `RSEQMALLOC_OPTIONS=rseq=off` (the mode is chosen once per process).

mod common;

use rseqmalloc::{RseqMalloc, RseqMode};
use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: RseqMalloc = RseqMalloc;

const CHILD_ENV: &str = "RSEQMALLOC_MAGAZINE_CHILD";
const THREADS: usize = 64;

/// Sizes of the class glibc's thread creation allocates through us (see [`small_in_use`]),
/// which the churn leaves alone.
const DTV_CLASS_SIZES: std::ops::RangeInclusive<usize> = 577..=640;

/// Allocates and frees objects of every magazine size (up to 1 KiB), so the magazines end up
/// holding some: bursts for the stocked classes, then one object at a time of every size from
/// 384 B up, so that every recycling class's magazine (which takes only a free of the class
/// allocated last) holds one too.
fn churn(seed: usize) {
    churn_bursts(seed);
    for size in (384..=1024).step_by(32) {
        if DTV_CLASS_SIZES.contains(&size) {
            continue;
        }
        let l = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero size; freed at once with the same layout.
        unsafe {
            let p = GLOBAL.alloc(l);
            assert!(!p.is_null());
            GLOBAL.dealloc(p, l);
        }
    }
}

/// Bursts of up to 200 live objects of sizes from 16 B to 1 KiB.
fn churn_bursts(seed: usize) {
    let mut live = Vec::with_capacity(256);
    for i in 0..4096 {
        let mut size = 16 + (i * 7 + seed) % 1009;
        if DTV_CLASS_SIZES.contains(&size) {
            size -= 64;
        }
        let l = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero size; freed below with the same layout.
        let p = unsafe { GLOBAL.alloc(l) };
        assert!(!p.is_null());
        live.push((p, l));
        if live.len() == 200 {
            for (p, l) in live.drain(..) {
                // SAFETY: allocated above with `l`.
                unsafe { GLOBAL.dealloc(p, l) };
            }
        }
    }
    for (p, l) in live {
        // SAFETY: allocated above with `l`.
        unsafe { GLOBAL.dealloc(p, l) };
    }
}

/// Objects in use per size class, for the classes magazines hold (up to 1 KiB) but the one of
/// 577–640 bytes: glibc itself allocates through us when it creates a thread that its stack
/// cache cannot serve (a 640-byte DTV, kept with the cached stack after the thread exits), so
/// that class (and the total `allocated`) can grow under load without any magazine being
/// involved. (A fixed array, not a `Vec`: the measurement must not allocate what it measures.)
fn small_in_use() -> [usize; 64] {
    let s = rseqmalloc::stats();
    let mut out = [0; 64];
    for (c, o) in out.iter_mut().enumerate().skip(1) {
        if c < s.class_size.len()
            && s.class_size[c] <= 1024
            && !DTV_CLASS_SIZES.contains(&s.class_size[c])
        {
            *o = s.class_in_use[c];
        }
    }
    out
}

#[test]
#[ignore = "run as a child by `magazines_are_handed_back`"]
fn child_magazines() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    // One thread first, so whatever std sets up lazily for spawning is part of the baseline.
    std::thread::spawn(|| churn(0)).join().unwrap();
    let base = small_in_use();
    assert_eq!(rseqmalloc::rseq_mode(), RseqMode::Fallback);
    // Joined with `join` (pthread_join), which returns only after the thread's key
    // destructors ran; a scoped thread is only waited for until its closure returns.
    let workers: Vec<_> = (0..THREADS)
        .map(|t| std::thread::spawn(move || churn(t)))
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // Every worker has exited (its magazine handed back by the thread-exit destructor), and
    // `stats` hands back the caller's own first.
    assert_eq!(small_in_use(), base, "objects stayed in magazines");
    churn(THREADS);
    assert_eq!(small_in_use(), base);
    churn(THREADS + 1);
    rseqmalloc::trim();
    assert_eq!(small_in_use(), base);
    println!("MAGAZINE-CHILD-OK");
}

#[test]
fn magazines_are_handed_back() {
    let stdout = common::run_child_test(
        "child_magazines",
        &[(CHILD_ENV, "1"), ("RSEQMALLOC_OPTIONS", "rseq=off")],
    );
    assert!(stdout.contains("MAGAZINE-CHILD-OK"), "{stdout}");
}
