//! `producer-consumer`: pairs of threads; the producer allocates objects in
//! batches and sends them over a bounded channel; the consumer checks and
//! frees them, so every block (and every batch vector) is freed remotely.

use std::sync::mpsc;

use crate::pattern::{Ids, Obj};
use crate::rng::Rng;
use crate::{cpus, scaled, SEED};

/// Objects sent (over all pairs) at full scale.
const FULL_OBJECTS: u64 = 10_000_000;
/// Objects per message.
const BATCH: usize = 64;
/// Messages in flight per pair before the producer blocks.
const DEPTH: usize = 16;

pub fn run(scale: f64) -> u64 {
    let pairs = cpus();
    let per_pair = scaled(FULL_OBJECTS, scale, 10_000) / pairs as u64;
    std::thread::scope(|s| {
        for pair in 0..pairs {
            let (tx, rx) = mpsc::sync_channel::<Vec<Obj>>(DEPTH);
            s.spawn(move || {
                produce(pair, per_pair, BATCH, |batch| {
                    tx.send(batch).expect("consumer alive")
                })
            });
            s.spawn(move || {
                for batch in rx {
                    for obj in batch {
                        obj.release("producer-consumer");
                    }
                }
            });
        }
    });
    per_pair * pairs as u64
}

/// Allocates `objects` objects of small sizes as stream `pair`, `batch` at
/// a time, and hands each batch to `send`.
pub fn produce(pair: usize, objects: u64, batch: usize, mut send: impl FnMut(Vec<Obj>)) {
    let mut rng = Rng::new(SEED, pair as u64);
    let mut ids = Ids::for_thread(pair);
    let mut left = objects;
    while left > 0 {
        let n = left.min(batch as u64);
        send(
            (0..n)
                .map(|_| Obj::new(ids.next_id(), rng.small_size()))
                .collect(),
        );
        left -= n;
    }
}
