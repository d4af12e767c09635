//! `large-objects`: blocks of 64 KiB to 8 MiB (log-uniform) with a live set
//! of 8: each is allocated with plain `malloc`, touched once per page (as a
//! program that uses part of a big buffer would), checked and freed when its
//! slot is reused. Stresses the large-object path, page reuse and the cost of
//! returning memory to the kernel.

use crate::scaled;

const FULL_OPS: u64 = 4_000;
const LIVE: usize = 8;
const MIN: usize = 64 << 10;
const MAX: usize = 8 << 20;

pub fn run(scale: f64) -> u64 {
    let ops = scaled(FULL_OPS, scale, 40);
    crate::blocks::churn("large-objects", ops, LIVE, false, |rng| {
        rng.log_uniform(MIN, MAX)
    })
}
