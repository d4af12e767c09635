//! The fallback mode's per-thread magazines give everything back: a thread's magazine at its
//! exit, the caller's at `stats()` and `trim()`. Runs in a child process with
//! `RSEQMALLOC_OPTIONS=rseq=off` (the mode is chosen once per process).

use rseqmalloc::{RseqMalloc, RseqMode};
use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;

#[global_allocator]
static GLOBAL: RseqMalloc = RseqMalloc;

const CHILD_ENV: &str = "RSEQMALLOC_MAGAZINE_CHILD";
const THREADS: usize = 64;

/// Allocates and frees objects of every magazine size, so the magazines end up holding some.
fn churn(seed: usize) {
    let mut live = Vec::with_capacity(256);
    for i in 0..4096 {
        let size = 16 + (i * 7 + seed) % 369;
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

#[test]
#[ignore = "run as a child by `magazines_are_handed_back`"]
fn child_magazines() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let base = rseqmalloc::stats().allocated;
    assert_eq!(rseqmalloc::rseq_mode(), RseqMode::Fallback);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || churn(t));
        }
    });
    // Every worker has exited (its magazine handed back by the thread-exit destructor), and
    // `stats` hands back the caller's own first.
    assert_eq!(
        rseqmalloc::stats().allocated,
        base,
        "objects stayed in magazines"
    );
    churn(THREADS);
    assert_eq!(rseqmalloc::stats().allocated, base);
    churn(THREADS + 1);
    rseqmalloc::trim();
    assert_eq!(rseqmalloc::stats().allocated, base);
    println!("MAGAZINE-CHILD-OK");
}

#[test]
fn magazines_are_handed_back() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_magazines",
            "--include-ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .env("RSEQMALLOC_OPTIONS", "rseq=off")
        .env_remove("GLIBC_TUNABLES")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("MAGAZINE-CHILD-OK"),
        "child failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
