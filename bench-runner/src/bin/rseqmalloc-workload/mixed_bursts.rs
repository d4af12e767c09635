//! `mixed-bursts`: one thread per CPU, each on its own, allocates a burst
//! of 1,000–3,999 objects of mixed sizes, then checks and frees them all,
//! round after round. A burst's sizes lie in a band 128 bytes wide whose
//! start moves up by 40 bytes each round over 16-896 B (modulo 881: after
//! the top it starts again near the bottom, at a new offset), and the burst
//! is freed forwards, backwards or evens-then-odds in turn. The pattern of
//! mimalloc-bench's `sh6bench` (benches/c/mbench has a C version): bursts of
//! several size classes at once that outgrow per-CPU and per-thread caches,
//! whose classes change as the band moves, so the memory one class freed has
//! to serve the next ones.
//!
//! Every object carries its id in its first word and the id's complement in
//! its last, written at allocation and checked before its free.

use std::alloc::Layout;

use crate::rng::Rng;
use crate::{cpus, scaled, SEED};

/// Rounds per thread at full scale.
const FULL_ROUNDS: u64 = 4_000;
/// Smallest burst; a burst adds up to `BURST_SPREAD - 1` objects more.
const BURST_MIN: usize = 1_000;
const BURST_SPREAD: usize = 3_000;
/// The sizes' band: its start runs over `[LOW, HIGH - BAND]` in steps of
/// `STEP` (modulo the range's length, 881); a size is `start` plus less than
/// `BAND`, rounded down to a multiple of 8 (so 16 to 1016 bytes).
const LOW: usize = 16;
const HIGH: usize = 1024;
const BAND: usize = 128;
const STEP: usize = 40;

pub fn run(scale: f64) -> u64 {
    let rounds = scaled(FULL_ROUNDS, scale, 3);
    crate::on_threads(cpus(), "mixed-bursts", |t| thread(t, rounds))
}

/// One thread's rounds; returns the objects it allocated and freed.
fn thread(t: usize, rounds: u64) -> u64 {
    let mut rng = Rng::new(SEED, t as u64);
    let mut objs: Vec<(*mut u8, Layout)> = Vec::with_capacity(BURST_MIN + BURST_SPREAD);
    let mut next_id = (t as u64) << 48;
    let mut ops = 0;
    for round in 0..rounds {
        let n = BURST_MIN + rng.below(BURST_SPREAD);
        let start = LOW + (round as usize * STEP) % (HIGH - BAND - LOW + 1);
        let first = next_id;
        for _ in 0..n {
            let size = (start + rng.below(BAND)) & !7;
            let layout = Layout::from_size_align(size, 8).expect("valid layout");
            next_id += 1;
            objs.push((crate::pattern::alloc_tagged(layout, next_id), layout));
        }
        for k in 0..n {
            let i = match round % 3 {
                0 => k,
                1 => n - 1 - k,
                // Evens, then odds.
                _ if k < n.div_ceil(2) => 2 * k,
                _ => 2 * (k - n.div_ceil(2)) + 1,
            };
            let (p, layout) = objs[i];
            // SAFETY: `p` came from `alloc_tagged` with `layout` and leaves the burst here.
            unsafe { crate::pattern::free_tagged(p, layout, first + 1 + i as u64, "mixed-bursts") };
        }
        objs.clear();
        ops += n as u64;
    }
    ops
}
