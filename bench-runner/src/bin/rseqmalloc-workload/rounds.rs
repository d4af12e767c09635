//! `rounds`: 4x CPUs threads work in synchronised rounds. In each round
//! every thread allocates a batch of mixed small objects and publishes it;
//! once all have (a barrier), each thread checks and frees the batch of the
//! thread `round` places after it (its own every `threads` rounds), and a
//! second barrier closes the round. Many threads allocate at the same
//! moment and then free at the same moment, mostly what others allocated.

use std::sync::Barrier;

use parking_lot::Mutex;

use crate::pattern::{Ids, Obj};
use crate::rng::Rng;
use crate::{cpus, scaled, SEED};

/// Rounds at full scale.
const FULL_ROUNDS: u64 = 600;
/// Threads per CPU.
const THREADS_PER_CPU: usize = 4;
/// Objects each thread allocates per round.
const BATCH: usize = 1_000;

pub fn run(scale: f64) -> u64 {
    let threads = THREADS_PER_CPU * cpus();
    let rounds = scaled(FULL_ROUNDS, scale, 4) as usize;
    let batches: Vec<Mutex<Vec<Obj>>> = (0..threads).map(|_| Mutex::new(Vec::new())).collect();
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (batches, barrier) = (&batches, &barrier);
            s.spawn(move || {
                let mut rng = Rng::new(SEED, t as u64);
                let mut ids = Ids::for_thread(t);
                for round in 0..rounds {
                    let batch: Vec<Obj> = (0..BATCH)
                        .map(|_| Obj::new(ids.next_id(), rng.small_size()))
                        .collect();
                    *batches[t].lock() = batch;
                    barrier.wait();
                    let theirs = std::mem::take(&mut *batches[(t + round) % threads].lock());
                    if theirs.len() != BATCH {
                        eprintln!("rounds: a batch of {} objects, not {BATCH}", theirs.len());
                        std::process::exit(crate::pattern::EXIT_CORRUPT);
                    }
                    for obj in theirs {
                        obj.release("rounds");
                    }
                    barrier.wait();
                }
            });
        }
    });
    (threads * rounds * BATCH) as u64
}
