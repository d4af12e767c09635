//! `locality`: 4x CPUs threads, each working on objects of its own: every
//! pass walks the thread's nodes in order, checks and updates each one (a
//! write to the object), then replaces a few of them with new ones. Nothing
//! is shared between threads, so the time depends on how the allocator
//! places one thread's objects: side by side with each other, or
//! interleaved in pages and cache lines with other threads' objects that
//! other CPUs are writing at the same time (false sharing).

use crate::rng::{mix, Rng};
use crate::{cpus, scaled, SEED};

/// Threads per CPU.
const THREADS_PER_CPU: usize = 4;
/// Nodes per thread.
const NODES: usize = 4_000;
/// Passes per thread at full scale.
const FULL_PASSES: u64 = 1_000;
/// Nodes replaced per pass, out of every 1000.
const REPLACED_PER_MILLE: usize = 20;

/// A node: 48 bytes, as small objects in linked structures are.
struct Node {
    id: u64,
    visits: u64,
    payload: [u64; 4],
}

impl Node {
    fn new(id: u64) -> Box<Node> {
        Box::new(Node {
            id,
            visits: 0,
            payload: [mix(id); 4],
        })
    }
}

pub fn run(scale: f64) -> u64 {
    let threads = THREADS_PER_CPU * cpus();
    let passes = scaled(FULL_PASSES, scale, 4);
    crate::on_threads(threads, "locality", |t| walk(t, passes))
}

/// One thread's work; returns the node visits plus the replacements.
fn walk(thread: usize, passes: u64) -> u64 {
    let mut rng = Rng::new(SEED, thread as u64);
    let mut next_id = (thread as u64) << 40;
    let mut fresh = || {
        next_id += 1;
        next_id
    };
    // Each node with the id it must hold and the pass it was made in.
    let mut nodes: Vec<(Box<Node>, u64, u64)> = (0..NODES)
        .map(|_| {
            let id = fresh();
            (Node::new(id), id, 0)
        })
        .collect();
    let replaced = NODES * REPLACED_PER_MILLE / 1000;
    for pass in 0..passes {
        for (node, id, born) in &mut nodes {
            if node.id != *id || node.visits != pass - *born || node.payload != [mix(*id); 4] {
                crate::pattern::corrupted("locality", *id, std::mem::size_of::<Node>());
            }
            node.visits += 1;
        }
        for _ in 0..replaced {
            let id = fresh();
            nodes[rng.below(NODES)] = (Node::new(id), id, pass + 1);
        }
    }
    passes * (NODES + replaced) as u64
}
