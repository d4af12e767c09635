//! `larson`: a server-like loop after Larson and Krishnan's benchmark. Each
//! of 2x CPUs threads works on an array of slots, replacing the object in a
//! random slot with a new one of random size; after every round the arrays
//! change hands (thread t works on array t + round), so most frees are of
//! objects another thread allocated, at a steady live size.

use std::sync::Barrier;

use parking_lot::Mutex;

use crate::pattern::{Ids, Obj};
use crate::rng::Rng;
use crate::{cpus, scaled, SEED};

/// Replacements over all threads at full scale.
const FULL_OPS: u64 = 20_000_000;
/// Slots per array.
const SLOTS: usize = 2_000;
/// Rounds (array hand-overs) per run.
const ROUNDS: usize = 20;

pub fn run(scale: f64) -> u64 {
    let threads = 2 * cpus();
    let per_round = (scaled(FULL_OPS, scale, 10_000) / (ROUNDS * threads) as u64).max(1);
    let arrays: Vec<Mutex<Vec<Option<Obj>>>> = (0..threads)
        .map(|_| Mutex::new((0..SLOTS).map(|_| None).collect()))
        .collect();
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (arrays, barrier) = (&arrays, &barrier);
            s.spawn(move || {
                let mut ids = Ids::for_thread(t);
                for round in 0..ROUNDS {
                    let mut rng = Rng::new(SEED, ((round as u64) << 32) | t as u64);
                    // Each round maps threads to arrays one to one, so the
                    // lock is never contended; it only hands the array over.
                    let mut array = arrays[(t + round) % threads].lock();
                    for _ in 0..per_round {
                        let fresh = Obj::new(ids.next_id(), rng.small_size());
                        if let Some(old) = array[rng.below(SLOTS)].replace(fresh) {
                            old.release("larson");
                        }
                    }
                    drop(array);
                    barrier.wait();
                }
            });
        }
    });
    for array in arrays {
        for obj in array.into_inner().into_iter().flatten() {
            obj.release("larson");
        }
    }
    per_round * (ROUNDS * threads) as u64
}
