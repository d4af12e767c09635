//! `calloc-big`: zeroed buffers of 5 to 25 MiB from `calloc`, 20 alive; a new
//! one replaces a random live one. Each new buffer is checked to be zero
//! and written once per page (as a program filling part of a big zeroed
//! table would), and its words are checked again before it is freed. An
//! allocator that returns every freed buffer to the kernel faults each new
//! one in afresh; one that keeps them must zero what it reuses (and a reused
//! buffer that is not zero fails the run).

use crate::scaled;

/// Buffers allocated at full scale.
const FULL_OPS: u64 = 160;
/// Buffers alive at once.
const LIVE: usize = 20;
const MIN: usize = 5 << 20;
const MAX: usize = 25 << 20;

pub fn run(scale: f64) -> u64 {
    let ops = scaled(FULL_OPS, scale, 30);
    crate::blocks::churn("calloc-big", ops, LIVE, true, |rng| rng.range(MIN, MAX))
}
