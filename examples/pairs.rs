//! Quick side-by-side timing of malloc/free pairs (64 B): rseqmalloc and glibc in one run.
use std::alloc::{GlobalAlloc, Layout, System};
static R: rseqmalloc::RseqMalloc = rseqmalloc::RseqMalloc;
fn run(name: &str, a: &dyn GlobalAlloc) {
    let l = Layout::from_size_align(64, 8).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..10_000_000 {
        // SAFETY: non-zero size, freed with the same layout.
        unsafe {
            let p = a.alloc(l);
            std::hint::black_box(p);
            a.dealloc(p, l);
        }
    }
    println!("{name}: {:.2} ns/pair", t.elapsed().as_nanos() as f64 / 1e7);
}
fn main() {
    for _ in 0..3 {
        run("rseqmalloc", &R);
        run("glibc", &System);
    }
    let s = rseqmalloc::stats();
    println!(
        "mode {:?} restarts {} fallback ops {}",
        s.rseq_mode, s.restarts, s.fallback_ops
    );
}
