//! `batch`: one thread allocates N objects of one size, then checks and
//! frees them all, for N = 1, 10, 100, ..., 100,000 and sizes of 16, 64, 256
//! and 1024 bytes, repeating each burst until about the same number of
//! objects has gone through every (N, size). Small N stays inside any
//! thread or CPU cache; large N outgrows them, so the allocator's refill and
//! overflow paths do the work.
//!
//! Every object carries its id in its first word and the id's complement in
//! its last, written at allocation and checked before its free: cheap
//! enough not to hide the allocator's cost, and two live objects that
//! overlap fail the run.

use std::alloc::Layout;

use crate::scaled;

/// Burst lengths.
const BURSTS: [usize; 6] = [1, 10, 100, 1_000, 10_000, 100_000];
/// Object sizes in bytes.
const SIZES: [usize; 4] = [16, 64, 256, 1024];
/// Objects through each (burst length, size) at full scale.
const FULL_OBJECTS: u64 = 500_000;

pub fn run(scale: f64) -> u64 {
    let per_cell = scaled(FULL_OBJECTS, scale, 1_000);
    let mut ptrs: Vec<*mut u8> = Vec::with_capacity(BURSTS[BURSTS.len() - 1]);
    let mut next_id = 0u64;
    let mut ops = 0;
    for size in SIZES {
        let layout = Layout::from_size_align(size, 8).expect("valid layout");
        for n in BURSTS {
            let rounds = (per_cell / n as u64).max(1);
            for _ in 0..rounds {
                let first = next_id;
                for _ in 0..n {
                    next_id += 1;
                    ptrs.push(crate::pattern::alloc_tagged(layout, next_id));
                }
                for (i, p) in ptrs.drain(..).enumerate() {
                    // SAFETY: `p` came from `alloc_tagged` with `layout` and leaves the burst here.
                    unsafe {
                        crate::pattern::free_tagged(p, layout, first + 1 + i as u64, "batch")
                    };
                }
            }
            ops += rounds * n as u64;
        }
    }
    ops
}
