//! `rseqmalloc-workload <name> <scale>`: the programs the benchmark runner
//! times under each allocator. It uses only the default system allocator, so
//! every allocation is a `malloc`/`free` that `LD_PRELOAD` can replace.
//!
//! Each workload checks its data before freeing it (see `pattern`), exits
//! with status 3 and a message on a mismatch, and otherwise prints
//! `ops=<count>` as its last line. `scale` (> 0, 1.0 = full size) shrinks or
//! grows the work; the same name and scale make the same requests in the
//! same order under every allocator.

mod batch;
mod blocks;
mod calloc_big;
mod churn;
mod fragmentation;
mod handoff;
mod large_objects;
mod larson;
mod locality;
mod mixed_bursts;
mod pattern;
mod producer_consumer;
mod realloc_growth;
mod rng;
mod rounds;
mod server;
mod sqlite;
mod thread_churn;

use std::process::ExitCode;

/// The seed of every workload's PRNG streams.
const SEED: u64 = 0x7273_6571_6d61_6c6c;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, scale) = match args.as_slice() {
        [name, scale] => (name.as_str(), scale.parse::<f64>().ok()),
        _ => ("", None),
    };
    let (Some(run), Some(scale)) = (workload(name), scale.filter(|s| *s > 0.0 && s.is_finite()))
    else {
        eprintln!(
            "usage: rseqmalloc-workload <name> <scale>\n  name: one of {}\n  scale: > 0, 1.0 = full size",
            rseqmalloc_bench::names()
        );
        return ExitCode::from(2);
    };
    println!("ops={}", run(scale));
    ExitCode::SUCCESS
}

/// The function that runs the workload `name`, returning its operation count.
fn workload(name: &str) -> Option<fn(f64) -> u64> {
    Some(match name {
        "single-churn" => churn::single,
        "multi-churn" => churn::multi,
        "many-threads" => churn::many,
        "producer-consumer" => producer_consumer::run,
        "fragmentation" => fragmentation::run,
        "realloc-growth" => realloc_growth::run,
        "large-objects" => large_objects::run,
        "thread-churn" => thread_churn::run,
        "larson" => larson::run,
        "batch" => batch::run,
        "handoff" => handoff::run,
        "calloc-big" => calloc_big::run,
        "rounds" => rounds::run,
        "server" => server::run,
        "sqlite" => sqlite::run,
        "locality" => locality::run,
        "mixed-bursts" => mixed_bursts::run,
        _ => return None,
    })
}

/// `full * scale`, rounded, and at least `min`.
fn scaled(full: u64, scale: f64, min: u64) -> u64 {
    ((full as f64 * scale).round() as u64).max(min)
}

/// CPUs this process may run on.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `work(t)` for `t` in `0..threads`, each on a thread of its own, all at once; returns
/// the sum of their results. A thread that panics (a failed check) fails the run, naming
/// `what`'s thread.
fn on_threads(threads: usize, what: &str, work: impl Fn(usize) -> u64 + Sync) -> u64 {
    let work = &work;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|t| s.spawn(move || work(t))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("{what} thread panicked"))
            })
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_workload_runs_and_counts() {
        for w in rseqmalloc_bench::WORKLOADS {
            let run = workload(w.name).unwrap_or_else(|| panic!("{} not runnable", w.name));
            let missing = w.needs.is_some_and(|p| {
                std::process::Command::new(p.name)
                    .arg("--version")
                    .output()
                    .is_err()
            });
            if missing {
                eprintln!(
                    "{}: not run, {} is not installed",
                    w.name,
                    w.needs.unwrap().name
                );
                continue;
            }
            assert!(run(0.001) > 0, "{}", w.name);
        }
        assert!(workload("nope").is_none());
    }

    #[test]
    fn scaled_rounds_and_floors() {
        assert_eq!(scaled(1000, 0.5, 1), 500);
        assert_eq!(scaled(1000, 0.0001, 7), 7);
    }
}
