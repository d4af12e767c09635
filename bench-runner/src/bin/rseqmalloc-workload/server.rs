//! `server`: a larson-style server on 8x CPUs threads. Each thread serves
//! requests on one of as many slot arrays at a time (it takes the array
//! `round` places after its own, so arrays and their objects change hands
//! every round); a request replaces the object in a random slot with a new
//! one of random size, and checks the one it frees. Every request is timed
//! on its own, and the run prints the 50th, 99th and 99.9th percentiles of
//! their latency: an allocator that does its maintenance (refills, drains,
//! returning memory) inside some unlucky request shows it in the tail.

use std::time::Instant;

use parking_lot::Mutex;

use crate::pattern::{Ids, Obj};
use crate::rng::Rng;
use crate::{cpus, scaled, SEED};

/// Requests over all threads at full scale.
const FULL_REQUESTS: u64 = 4_000_000;
/// Threads per CPU.
const THREADS_PER_CPU: usize = 8;
/// Slots per array.
const SLOTS: usize = 1_000;
/// Rounds (array hand-overs) per thread.
const ROUNDS: usize = 20;

pub fn run(scale: f64) -> u64 {
    let threads = THREADS_PER_CPU * cpus();
    let per_round = (scaled(FULL_REQUESTS, scale, 20_000) / (ROUNDS * threads) as u64).max(1);
    let arrays: Vec<Mutex<Vec<Option<Obj>>>> = (0..threads)
        .map(|_| Mutex::new((0..SLOTS).map(|_| None).collect()))
        .collect();
    let histogram = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let arrays = &arrays;
                s.spawn(move || serve(t, per_round, arrays))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("server thread"))
            .fold(Histogram::new(), Histogram::merge)
    });
    for array in arrays {
        for obj in array.into_inner().into_iter().flatten() {
            obj.release("server");
        }
    }
    let requests = per_round * (ROUNDS * threads) as u64;
    if histogram.count() != requests {
        eprintln!("server: {} requests timed of {requests}", histogram.count());
        std::process::exit(crate::pattern::EXIT_CORRUPT);
    }
    for (name, q) in [("p50_ns", 0.5), ("p99_ns", 0.99), ("p999_ns", 0.999)] {
        println!("{name}={:.0}", histogram.quantile(q));
    }
    requests
}

fn serve(t: usize, per_round: u64, arrays: &[Mutex<Vec<Option<Obj>>>]) -> Histogram {
    let mut ids = Ids::for_thread(t);
    let mut rng = Rng::new(SEED, t as u64);
    let mut histogram = Histogram::new();
    for round in 0..ROUNDS {
        let mut array = arrays[(t + round) % arrays.len()].lock();
        for _ in 0..per_round {
            let start = Instant::now();
            let fresh = Obj::new(ids.next_id(), rng.small_size());
            if let Some(old) = array[rng.below(SLOTS)].replace(fresh) {
                old.release("server");
            }
            histogram.record(start.elapsed().as_nanos() as u64);
        }
    }
    histogram
}

/// Sub-buckets per power of two: values are kept to within 1/8 (12.5 %).
const SUB: usize = 8;

/// A log-linear latency histogram (nanoseconds).
pub struct Histogram {
    counts: Vec<u64>,
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; 64 * SUB],
        }
    }

    fn bucket(ns: u64) -> usize {
        if ns < SUB as u64 {
            return ns as usize;
        }
        let log = 63 - ns.leading_zeros() as usize; // >= 3
        let mantissa = (ns >> (log - 3)) as usize & (SUB - 1);
        (log - 2) * SUB + mantissa
    }

    /// The lowest value of bucket `b`, and its width.
    fn bounds(b: usize) -> (f64, f64) {
        if b < SUB {
            return (b as f64, 1.0);
        }
        let log = b / SUB + 2;
        let width = (1u64 << (log - 3)) as f64;
        ((1u64 << log) as f64 + (b % SUB) as f64 * width, width)
    }

    pub fn record(&mut self, ns: u64) {
        self.counts[Self::bucket(ns)] += 1;
    }

    pub fn merge(mut self, other: Histogram) -> Histogram {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value below which a fraction `q` of the samples lie (the middle
    /// of the bucket that holds it).
    pub fn quantile(&self, q: f64) -> f64 {
        let rank = (q * self.count() as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, width) = Self::bounds(b);
                return low + width / 2.0;
            }
        }
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_within_an_eighth() {
        for ns in (0..100_000u64).chain([1 << 20, 123_456_789, (1 << 50) + 12_345]) {
            let b = Histogram::bucket(ns);
            let (low, width) = Histogram::bounds(b);
            assert!(
                low <= ns as f64 && (ns as f64) < low + width,
                "{ns}: {low} {width}"
            );
            assert!(width <= (ns as f64 / 8.0).max(1.0), "{ns}: width {width}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for ns in 1..=1000u64 {
            h.record(ns * 100);
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile(0.5);
        assert!((50_000.0 * 0.9..=50_000.0 * 1.1).contains(&p50), "{p50}");
        let p999 = h.quantile(0.999);
        assert!((99_900.0 * 0.9..=99_900.0 * 1.1).contains(&p999), "{p999}");
        let merged = h.merge(Histogram::new());
        assert_eq!(merged.count(), 1000);
        assert!(Histogram::new().quantile(0.5).is_nan());
    }
}
