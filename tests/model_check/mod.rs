//! The exhaustive search the interleaving models share (`tests/drain_model.rs`,
//! `tests/owned_span_model.rs`): every state reachable from a start, breadth first, so a
//! violation comes with the shortest run to it.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A violation and the shortest run to it (each step as the model describes it).
#[derive(Debug)]
pub struct Counterexample {
    pub violation: String,
    pub trace: Vec<String>,
}

/// Visits every state reachable from `start` through `successors` (each next state with its
/// step's description; `Err` for a step that is itself a violation), checking `violation` in
/// each state and that every state but a `is_final` one can move. Returns the number of
/// states, or the first violation found with the shortest run to it.
pub fn explore<S: Clone + Eq + Hash>(
    start: S,
    successors: impl Fn(&S) -> Result<Vec<(String, S)>, String>,
    violation: impl Fn(&S) -> Option<String>,
    is_final: impl Fn(&S) -> bool,
) -> Result<usize, Counterexample> {
    let mut states = vec![start.clone()];
    let mut parent: Vec<Option<(usize, String)>> = vec![None];
    let mut seen = HashMap::from([(start, 0usize)]);
    let mut queue = VecDeque::from([0usize]);
    let trace = |mut i: usize, parent: &[Option<(usize, String)>]| {
        let mut steps = Vec::new();
        while let Some((p, what)) = &parent[i] {
            steps.push(what.clone());
            i = *p;
        }
        steps.reverse();
        steps
    };
    while let Some(i) = queue.pop_front() {
        let s = states[i].clone();
        let fail = |violation: String| Counterexample {
            violation,
            trace: trace(i, &parent),
        };
        if let Some(v) = violation(&s) {
            return Err(fail(v));
        }
        let next = successors(&s).map_err(fail)?;
        if next.is_empty() && !is_final(&s) {
            return Err(fail("stuck: nothing can move".to_string()));
        }
        for (what, n) in next {
            if !seen.contains_key(&n) {
                seen.insert(n.clone(), states.len());
                states.push(n);
                parent.push(Some((i, what)));
                queue.push_back(states.len() - 1);
            }
        }
    }
    Ok(states.len())
}
