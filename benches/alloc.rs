//! Allocator micro-benchmarks, every peer measured in the same run.
//!
//! - `pairs/<size>`: one allocation and its free, for 16, 64, 256 and 4096 bytes.
//! - `batch_1000`: 1000 allocations of mixed small sizes, then their frees.
//! - `batch/<allocator>_<size>B/<n>`: n allocations of one size (16, 64, 256, 1024 B), then
//!   their frees, for n = 1, 16, 64, 256, 1024, 4096; each object gets its index written at
//!   allocation and checked before its free. Throughput is in objects, so criterion's figure is
//!   the cost of one object's allocation and free.
//! - `fast_path/<size>` and `fast_path/100_then_free`: the per-CPU fast path, including
//!   rseqmalloc with its fallback forced (`RSEQMALLOC_OPTIONS=rseq=off`). The mode is chosen
//!   once per process, so that variant is timed inside a child process of this same binary
//!   (`iter_custom`: the child times its own loop; spawning is not counted).
//! - `threads/<n>`: throughput of n threads each doing malloc/free pairs of mixed sizes.
//! - `realloc_grow`: one buffer grown by `realloc` 64 bytes at a time from 64 B to 64 KiB (1,023
//!   reallocs, most in place, some moving to the next class), then freed.
//!
//! Every allocator is called as a program calls its global allocator through a `__rust_alloc` not
//! inlined into it: one direct call of a function of its own for each `alloc`, `dealloc` and
//! `realloc` (`burst.rs`; until session 37 through `&dyn GlobalAlloc`, whose shared call sites
//! slowed each allocator measured by 8–27 % once two had run there, so figures from before then are
//! not comparable). The benchmark binary itself runs on the system allocator.

mod burst;

use burst::{
    align8, batch_of, global_alloc, global_dealloc, global_realloc, or_abort, BATCH_NS,
    BATCH_SIZES, JEMALLOC, MIMALLOC, RSEQ,
};
use criterion::measurement::WallTime;
use criterion::{black_box, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use std::alloc::{GlobalAlloc, Layout, System};
use std::time::{Duration, Instant};

const WORKER_ENV: &str = "RSEQMALLOC_BENCH_WORKER";

/// Runs `$body` once for each allocator, in this order, with `$name` its label and `$a` a
/// `&'static` reference of its own type, so that every call below is statically dispatched as a
/// program's calls to its global allocator are (`burst.rs` says why, and what `&dyn` cost).
macro_rules! each_peer {
    (|$name:ident, $a:ident| $body:block) => {{
        {
            let ($name, $a) = ("rseqmalloc", &RSEQ);
            $body
        }
        {
            let ($name, $a) = ("glibc", &System);
            $body
        }
        {
            let ($name, $a) = ("mimalloc", &MIMALLOC);
            $body
        }
        {
            let ($name, $a) = ("jemalloc", &JEMALLOC);
            $body
        }
    }};
}

/// `iters` malloc/free pairs of `size` bytes.
#[inline(always)]
fn pairs<A: GlobalAlloc>(a: &A, size: usize, iters: u64) {
    pairs_aligned(a, size, align8(), iters);
}

/// [`pairs`] with the alignment given: a caller that runs it once an iteration takes
/// [`align8`] once, outside its loop.
#[inline(always)]
fn pairs_aligned<A: GlobalAlloc>(a: &A, size: usize, align: usize, iters: u64) {
    assert!(size > 0, "GlobalAlloc::alloc needs a non-zero size");
    let l = Layout::from_size_align(size, align).unwrap();
    for _ in 0..iters {
        // SAFETY: non-zero size (asserted above); a non-null block is freed with the same layout.
        unsafe {
            let p = or_abort(global_alloc(a, l), l);
            black_box(p);
            global_dealloc(a, p, l);
        }
    }
}

/// `n` allocations of mixed small sizes, then their frees.
#[inline(always)]
fn batch<A: GlobalAlloc>(a: &A, n: usize, ptrs: &mut Vec<(*mut u8, Layout)>) {
    let align = align8();
    for i in 0..n {
        let l = Layout::from_size_align(16 + (i * 40) % 496, align).unwrap();
        // SAFETY: non-zero size.
        let p = or_abort(unsafe { global_alloc(a, l) }, l);
        ptrs.push((p, l));
    }
    for (p, l) in ptrs.drain(..) {
        // SAFETY: allocated just above with `l`.
        unsafe { global_dealloc(a, black_box(p), l) };
    }
}

/// Runs one workload in a child process with the fallback forced; returns its own timing.
fn in_fallback_child(work: &str, iters: u64) -> Duration {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(WORKER_ENV, format!("{work}:{iters}"))
        .env("RSEQMALLOC_OPTIONS", "rseq=off")
        .output()
        .expect("spawn the fallback worker");
    assert!(
        out.status.success(),
        "fallback worker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("worker prints nanoseconds");
    Duration::from_nanos(ns)
}

/// Worker mode: `work:iters` where work is `pair<size>`, `batch<n>` or `threads<n>`.
fn worker(spec: &str) {
    let (work, iters) = spec.split_once(':').unwrap();
    let iters: u64 = iters.parse().unwrap();
    assert_eq!(rseqmalloc::rseq_mode(), rseqmalloc::RseqMode::Uninitialized);
    // warm up (and initialise) outside the timing
    pairs(&RSEQ, 64, 1000);
    assert_eq!(rseqmalloc::rseq_mode(), rseqmalloc::RseqMode::Fallback);
    let t = if let Some(size) = work.strip_prefix("pair") {
        let size = size.parse().unwrap();
        let t = Instant::now();
        pairs(&RSEQ, size, iters);
        t.elapsed()
    } else if let Some(n) = work.strip_prefix("batch") {
        let n = n.parse().unwrap();
        let mut v = Vec::with_capacity(n);
        let t = Instant::now();
        for _ in 0..iters {
            batch(&RSEQ, n, &mut v);
        }
        t.elapsed()
    } else if let Some(n) = work.strip_prefix("threads") {
        threads(&RSEQ, n.parse().unwrap(), iters)
    } else {
        panic!("unknown worker {work}")
    };
    println!("{}", t.as_nanos());
}

/// `n` threads each doing `iters` pairs of mixed sizes; wall time from a common start.
fn threads<A: GlobalAlloc + Sync>(a: &'static A, n: usize, iters: u64) -> Duration {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
    let hs: Vec<_> = (0..n)
        .map(|t| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                pairs(a, 64, 100); // set-up outside the timing
                let align = align8();
                b.wait();
                for i in 0..iters {
                    pairs_aligned(a, 16 + ((i as usize + t) * 48) % 512, align, 1);
                }
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    for h in hs {
        h.join().unwrap();
    }
    t.elapsed()
}

fn bench_pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("pairs");
    for size in [16usize, 64, 256, 4096] {
        each_peer!(|name, a| {
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, &s| {
                b.iter_custom(|it| time(|| pairs(a, s, it)))
            });
        });
    }
    g.finish();
    let mut g = c.benchmark_group("batch_1000");
    g.throughput(Throughput::Elements(1000));
    each_peer!(|name, a| {
        let mut v = Vec::with_capacity(1000);
        g.bench_function(name, |b| b.iter(|| batch(a, 1000, &mut v)));
    });
    g.finish();
}

fn bench_batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    // 96 benchmarks: shorter than the default times keep the group near two minutes.
    g.warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(600));
    let mut ptrs = vec![std::ptr::null_mut(); BATCH_NS[BATCH_NS.len() - 1]];
    for size in BATCH_SIZES {
        for n in BATCH_NS {
            g.throughput(Throughput::Elements(n as u64));
            each_peer!(|name, a| {
                batch_cell(&mut g, name, a, size, n, &mut ptrs);
            });
        }
    }
    g.finish();
}

/// One `batch` cell: allocator `a` (called `name`), bursts of `n` objects of `size` bytes.
fn batch_cell<A: GlobalAlloc>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    a: &A,
    size: usize,
    n: usize,
    ptrs: &mut [*mut u8],
) {
    // `batch_of`'s contract: every object holds a `usize`, aligned for one (align8 is 8).
    assert!(size >= size_of::<usize>());
    let layout = Layout::from_size_align(size, align8()).unwrap();
    g.bench_with_input(
        BenchmarkId::new(format!("{name}_{size}B"), n),
        &n,
        |b, &n| {
            // SAFETY: `size` holds a `usize` (asserted above), aligned to 8.
            b.iter(|| unsafe { batch_of(a, layout, n, ptrs) })
        },
    );
}

/// One buffer grown by `realloc` in 64-byte steps up to 64 KiB, written at each new end.
#[inline(always)]
fn realloc_grow<A: GlobalAlloc>(a: &A) {
    const STEP: usize = 64;
    let mut size = STEP;
    let align = align8();
    let layout = |size| Layout::from_size_align(size, align).unwrap();
    // SAFETY: every block is checked non-null before it is written or passed on; every realloc
    // passes the layout the block has; sizes are non-zero; the write is inside the new size.
    unsafe {
        let mut p = or_abort(global_alloc(a, layout(size)), layout(size));
        while size < 64 << 10 {
            p = or_abort(
                global_realloc(a, p, layout(size), size + STEP),
                layout(size + STEP),
            );
            size += STEP;
            p.add(size - 1).write(1);
        }
        global_dealloc(a, black_box(p), layout(size));
    }
}

fn bench_realloc(c: &mut Criterion) {
    let mut g = c.benchmark_group("realloc_grow");
    each_peer!(|name, a| {
        g.bench_function(name, |b| b.iter(|| realloc_grow(a)));
    });
    g.finish();
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn bench_fast_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("fast_path");
    for size in [16usize, 64, 256] {
        each_peer!(|name, a| {
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, &s| {
                b.iter_custom(|it| time(|| pairs(a, s, it)))
            });
        });
        g.bench_with_input(
            BenchmarkId::new("rseqmalloc-fallback", size),
            &size,
            |b, &s| b.iter_custom(|it| in_fallback_child(&format!("pair{s}"), it)),
        );
    }
    each_peer!(|name, a| {
        let mut v = Vec::with_capacity(100);
        g.bench_function(BenchmarkId::new(name, "100_then_free"), |b| {
            b.iter(|| batch(a, 100, &mut v))
        });
    });
    g.bench_function(
        BenchmarkId::new("rseqmalloc-fallback", "100_then_free"),
        |b| b.iter_custom(|it| in_fallback_child("batch100", it)),
    );
    g.finish();

    let mut g = c.benchmark_group("threads");
    for n in [2usize, 16] {
        g.throughput(Throughput::Elements(n as u64));
        each_peer!(|name, a| {
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                b.iter_custom(|it| threads(a, n, it))
            });
        });
        g.bench_with_input(BenchmarkId::new("rseqmalloc-fallback", n), &n, |b, &n| {
            b.iter_custom(|it| in_fallback_child(&format!("threads{n}"), it))
        });
    }
    g.finish();
}

fn main() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        worker(&spec);
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    bench_pairs(&mut c);
    bench_batch(&mut c);
    bench_fast_path(&mut c);
    bench_realloc(&mut c);
    c.final_summary();
}
