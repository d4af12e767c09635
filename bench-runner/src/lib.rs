//! The part of `rseqmalloc-bench` shared by its two binaries: the catalog of
//! workloads (names, what each stresses, and the scales the runner passes).
//!
//! The runner (`rseqmalloc-bench`) reads it to plan a run; the workload binary
//! (`rseqmalloc-workload`) reads it to accept exactly the same names.

/// One workload of `rseqmalloc-workload`, as the runner knows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// The name given on the command line of both binaries.
    pub name: &'static str,
    /// What it stresses, in one line (printed by `--list` and in the docs).
    pub stresses: &'static str,
    /// Scale of a default run (1.0 = the workload's full size).
    pub default_scale: f64,
    /// Scale of a `--quick` run.
    pub quick_scale: f64,
    /// One thread does all the work: its wall time should not exceed its
    /// CPU time, and the report warns when it does (the machine was busy).
    pub single_threaded: bool,
    /// A program the workload drives, without which it is skipped.
    pub needs: Option<Program>,
}

/// A program a workload runs, and the Debian package that installs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Program {
    pub name: &'static str,
    pub package: &'static str,
}

/// Every workload, in the order a run executes and reports them.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "single-churn",
        stresses: "one thread replacing random slots of a 100k-object ring of 8-512 B objects: the thread-local fast path",
        default_scale: 0.35,
        quick_scale: 0.1,
        single_threaded: true,
        needs: None,
    },
    Workload {
        name: "multi-churn",
        stresses: "the churn on 4x CPUs threads (same live set, 4x the replacements): per-CPU caches under oversubscription and preemption",
        default_scale: 0.25,
        quick_scale: 0.08,
        single_threaded: false,
        needs: None,
    },
    Workload {
        name: "many-threads",
        stresses: "32x CPUs threads alive at once, each churning its own 256-object ring: what an allocator keeps per thread versus per CPU",
        default_scale: 0.5,
        quick_scale: 0.15,
        single_threaded: false,
        needs: None,
    },
    Workload {
        name: "producer-consumer",
        stresses: "pairs of threads; every object is freed by the thread that did not allocate it: remote frees",
        default_scale: 0.3,
        quick_scale: 0.1,
        single_threaded: false,
        needs: None,
    },
    Workload {
        name: "fragmentation",
        stresses: "grow to 1 GiB (x scale) of mixed sizes, free 90% at random, grow again with larger sizes: hole reuse and peak RSS",
        default_scale: 0.15,
        quick_scale: 0.05,
        single_threaded: true,
        needs: None,
    },
    Workload {
        name: "realloc-growth",
        stresses: "vectors, strings and byte buffers grown element by element, interleaved: realloc chains",
        default_scale: 0.3,
        quick_scale: 0.1,
        single_threaded: true,
        needs: None,
    },
    Workload {
        name: "large-objects",
        stresses: "64 KiB-8 MiB objects touched once per page with a live set of 8: large-object path, page reuse and return",
        default_scale: 0.3,
        quick_scale: 0.1,
        single_threaded: true,
        needs: None,
    },
    Workload {
        name: "thread-churn",
        stresses: "thousands of short-lived threads that allocate, hand a few objects to the parent and exit: thread caches' setup and teardown",
        default_scale: 0.5,
        quick_scale: 0.15,
        single_threaded: false,
        needs: None,
    },
    Workload {
        name: "larson",
        stresses: "larson-like server: threads replace random slots of arrays that change hands every round: remote frees at steady state",
        default_scale: 0.25,
        quick_scale: 0.08,
        single_threaded: false,
        needs: None,
    },
    Workload {
        name: "batch",
        stresses: "one thread allocates N objects of one size, checks and frees them all, N from 1 to 100,000: bursts that outgrow per-CPU caches",
        default_scale: 0.5,
        quick_scale: 0.15,
        single_threaded: true,
        needs: None,
    },
    Workload {
        name: "handoff",
        stresses: "8x CPUs threads in producer/consumer pairs hand over small batches through locked queues: many threads, every free remote",
        default_scale: 0.5,
        quick_scale: 0.15,
        single_threaded: false,
        needs: None,
    },
    Workload {
        name: "calloc-big",
        stresses: "zeroed buffers of 5-25 MiB (calloc), 20 alive, each checked zero and written once per page: big blocks reused without page faults",
        default_scale: 0.35,
        quick_scale: 0.15,
        single_threaded: true,
        needs: None,
    },
    Workload {
        name: "rounds",
        stresses: "4x CPUs threads allocate a batch each, wait for all, then free them, round after round: allocation in synchronised rounds",
        default_scale: 0.5,
        quick_scale: 0.15,
        single_threaded: false,
        needs: None,
    },
    Workload {
        name: "server",
        stresses: "larson-style server on 8x CPUs threads over shared slot arrays, each request timed: latency percentiles p50/p99/p99.9",
        default_scale: 0.5,
        quick_scale: 0.15,
        single_threaded: false,
        needs: None,
    },
    Workload {
        name: "sqlite",
        stresses: "Debian's sqlite3 runs a fixed SQL script on an in-memory database (inserts, indexes, updates, deletes, group-by), its results checked",
        default_scale: 0.5,
        quick_scale: 0.15,
        single_threaded: true,
        needs: Some(Program {
            name: "sqlite3",
            package: "sqlite3",
        }),
    },
    Workload {
        name: "locality",
        stresses: "4x CPUs threads each walk and update their own linked objects, replacing a few per pass: locality of one thread's objects",
        default_scale: 0.5,
        quick_scale: 0.15,
        single_threaded: false,
        needs: None,
    },
    Workload {
        name: "mixed-bursts",
        stresses: "one thread per CPU allocates bursts of 1,000-3,999 objects of sizes in a 128 B band that moves over 16 B-1 KiB each round, then frees them (sh6bench's pattern): bursts of changing classes past the caches",
        default_scale: 0.5,
        quick_scale: 0.15,
        single_threaded: false,
        needs: None,
    },
];

/// The workload called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

/// Names of every workload, comma-separated (for messages).
pub fn names() -> String {
    WORKLOADS
        .iter()
        .map(|w| w.name)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_scales_positive() {
        for (i, w) in WORKLOADS.iter().enumerate() {
            assert!(w.default_scale > 0.0 && w.quick_scale > 0.0, "{}", w.name);
            assert!(w.quick_scale <= w.default_scale, "{}", w.name);
            assert!(
                WORKLOADS[..i].iter().all(|o| o.name != w.name),
                "duplicate {}",
                w.name
            );
            assert_eq!(find(w.name), Some(w));
        }
        assert_eq!(find("nope"), None);
    }
}
