//! `handoff`: 4x CPUs producer/consumer pairs (8x CPUs threads, far more
//! than CPUs). Each producer allocates objects of mixed small sizes and
//! hands them over in batches of 16 through its pair's bounded queue (a
//! `parking_lot` mutex and condition variable); the consumer checks and frees
//! them. Every object, and every batch vector, is freed by another thread
//! than the one that allocated it, while threads are preempted mid-batch.

use std::collections::VecDeque;

use parking_lot::{Condvar, Mutex};

use crate::pattern::Obj;
use crate::{cpus, scaled};

/// Objects handed over (over all pairs) at full scale.
const FULL_OBJECTS: u64 = 6_000_000;
/// Pairs per CPU.
const PAIRS_PER_CPU: usize = 4;
/// Objects per hand-over.
const BATCH: usize = 16;
/// Batches a queue holds before its producer waits.
const DEPTH: usize = 8;

/// A bounded queue of batches; `None` in it means the producer is done.
struct Queue {
    items: Mutex<VecDeque<Option<Vec<Obj>>>>,
    changed: Condvar,
}

impl Queue {
    fn push(&self, item: Option<Vec<Obj>>) {
        let mut items = self.items.lock();
        while items.len() >= DEPTH {
            self.changed.wait(&mut items);
        }
        items.push_back(item);
        self.changed.notify_all();
    }

    fn pop(&self) -> Option<Vec<Obj>> {
        let mut items = self.items.lock();
        loop {
            if let Some(item) = items.pop_front() {
                self.changed.notify_all();
                return item;
            }
            self.changed.wait(&mut items);
        }
    }
}

pub fn run(scale: f64) -> u64 {
    let pairs = PAIRS_PER_CPU * cpus();
    let per_pair = scaled(FULL_OBJECTS, scale, 10_000) / pairs as u64;
    let queues: Vec<Queue> = (0..pairs)
        .map(|_| Queue {
            items: Mutex::new(VecDeque::with_capacity(DEPTH)),
            changed: Condvar::new(),
        })
        .collect();
    let consumed: u64 = std::thread::scope(|s| {
        let consumers: Vec<_> = queues
            .iter()
            .map(|q| {
                s.spawn(move || {
                    let mut n = 0u64;
                    while let Some(batch) = q.pop() {
                        n += batch.len() as u64;
                        for obj in batch {
                            obj.release("handoff");
                        }
                    }
                    n
                })
            })
            .collect();
        for (pair, q) in queues.iter().enumerate() {
            s.spawn(move || {
                crate::producer_consumer::produce(pair, per_pair, BATCH, |b| q.push(Some(b)));
                q.push(None);
            });
        }
        consumers
            .into_iter()
            .map(|c| c.join().expect("consumer"))
            .sum()
    });
    if consumed != per_pair * pairs as u64 {
        eprintln!(
            "handoff: {consumed} objects consumed of {}",
            per_pair * pairs as u64
        );
        std::process::exit(crate::pattern::EXIT_CORRUPT);
    }
    consumed
}
