//! Sequences of calls to the crate's C-shaped API checked against a shadow of the live blocks,
//! and the allocator's own invariants checked after every call. The logic is
//! `tests/api_shadow/model.rs`, which `tests/api_shadow.rs` also runs on seeded inputs in all
//! three rseq modes.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/api_shadow/model.rs"]
mod model;

fn invariants() {
    if let Err(b) = rseqmalloc::fuzzing::check_invariants() {
        panic!("allocator invariant broken: {b:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    model::run(data, &invariants);
});
