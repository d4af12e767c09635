//! `single-churn`, `multi-churn` and `many-threads`: a live ring of small
//! objects in which random slots are replaced, on one thread, split over 4x CPUs
//! threads, or as a small ring on each of 32x CPUs threads.

use crate::pattern::{Ids, Obj};
use crate::rng::Rng;
use crate::{cpus, scaled, SEED};

/// Slots of the ring at full scale (the live working set).
const FULL_SLOTS: u64 = 100_000;
/// Replacements at full scale.
const FULL_OPS: u64 = 6_000_000;
/// `multi-churn` does this many times the replacements of `single-churn`
/// (its per-thread rings are small and it has every CPU).
const MULTI_FACTOR: u64 = 4;

pub fn single(scale: f64) -> u64 {
    let (slots, ops) = size(scale);
    ring(0, slots, ops, "single-churn")
}

/// The same total live set as `single` and [`MULTI_FACTOR`] times its
/// replacements, split over 4x CPUs threads.
pub fn multi(scale: f64) -> u64 {
    let (slots, ops) = size(scale);
    let ops = ops * MULTI_FACTOR;
    let threads = 4 * cpus();
    rings(
        threads,
        slots / threads,
        ops / threads as u64,
        "multi-churn",
    )
}

/// Threads of `many-threads` per CPU.
const MANY_PER_CPU: usize = 32;
/// Slots of each `many-threads` thread's ring: a small working set apiece, so
/// what an allocator keeps per thread (or per CPU) dominates the footprint.
const MANY_SLOTS: usize = 256;

/// 32x CPUs threads, alive together, each churning its own small ring (a
/// thread-per-connection server): [`FULL_OPS`] replacements in all.
pub fn many(scale: f64) -> u64 {
    let ops = scaled(FULL_OPS, scale, 10_000);
    let threads = MANY_PER_CPU * cpus();
    rings(threads, MANY_SLOTS, ops / threads as u64, "many-threads")
}

/// Runs [`ring`] on `threads` threads at once, each with its own ring of `slots` objects and
/// `ops` replacements; returns the allocations of all.
fn rings(threads: usize, slots: usize, ops: u64, what: &'static str) -> u64 {
    crate::on_threads(threads, "churn", |t| ring(t, slots, ops, what))
}

fn size(scale: f64) -> (usize, u64) {
    let slots = scaled(FULL_SLOTS, scale.min(1.0), 2_000) as usize;
    (slots, scaled(FULL_OPS, scale, 10_000))
}

/// Fills a ring of `slots` objects, replaces `ops` random ones, then checks
/// and frees the survivors; returns the number of allocations.
fn ring(thread: usize, slots: usize, ops: u64, what: &str) -> u64 {
    let mut rng = Rng::new(SEED, thread as u64);
    let mut ids = Ids::for_thread(thread);
    let mut ring: Vec<Obj> = (0..slots)
        .map(|_| Obj::new(ids.next_id(), rng.small_size()))
        .collect();
    for _ in 0..ops {
        let slot = &mut ring[rng.below(slots)];
        let fresh = Obj::new(ids.next_id(), rng.small_size());
        std::mem::replace(slot, fresh).release(what);
    }
    for obj in ring {
        obj.release(what);
    }
    slots as u64 + ops
}
