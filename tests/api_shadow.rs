//! The `api_shadow` fuzz target's logic (`tests/api_shadow/model.rs`), run on seeded inputs in
//! each rseq mode: random sequences over `malloc`, `calloc`, `realloc`, `aligned_alloc`,
//! `free`, `usable_size`, `trim`, run-time changes of `cpu_cache_bytes` and bad input, every
//! call checked against a shadow of the
//! live blocks. With `--features fuzzing` the allocator's own invariants (page heap, central
//! lists, slabs) are checked after every call too.

mod common;
#[path = "api_shadow/model.rs"]
mod model;

use rseqmalloc::RseqMode;

const CHILD_ENV: &str = "RSEQMALLOC_API_SHADOW_CHILD";
/// Seeded inputs per mode, and their length in bytes (about 3 bytes an operation).
const INPUTS: u64 = 40;
const INPUT_BYTES: usize = 3000;

/// Input `seed`: the top bytes of a 64-bit linear congruential sequence.
fn input(seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..INPUT_BYTES)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

/// The allocator's invariants, when the `fuzzing` feature exposes them.
fn invariants() {
    #[cfg(feature = "fuzzing")]
    if let Err(b) = rseqmalloc::fuzzing::check_invariants() {
        panic!("allocator invariant broken: {b:?}");
    }
}

#[test]
#[ignore = "run as a child by the per-mode tests"]
fn child_api_shadow() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let mut done = [0; model::KINDS.len()];
    for seed in 1..=INPUTS {
        let d = model::run(&input(seed), &invariants);
        done.iter_mut().zip(d).for_each(|(t, d)| *t += d);
    }
    let counts: Vec<String> = model::KINDS
        .iter()
        .zip(done)
        .map(|(k, n)| format!("{}={n}", k.replace(' ', "_")))
        .collect();
    println!(
        "RESULT mode={:?} invariants={} {}",
        rseqmalloc::rseq_mode(),
        cfg!(feature = "fuzzing"),
        counts.join(" ")
    );
}

fn run_mode(env: &[(&str, &str)], mode: RseqMode) {
    let mut all = vec![(CHILD_ENV, "1")];
    all.extend_from_slice(env);
    let stdout = common::run_child_test("child_api_shadow", &all);
    let r = common::result_fields(&stdout);
    assert_eq!(r.get("mode"), Some(&format!("{mode:?}")), "{stdout}");
    // Every kind of call ran, many times.
    for kind in model::KINDS {
        let n: usize = r[&kind.replace(' ', "_")].parse().unwrap();
        assert!(n >= 100, "only {n} calls of {kind}: {r:?}");
    }
}

#[test]
fn api_shadow_with_glibc_area() {
    run_mode(&[], RseqMode::Glibc);
}

#[test]
fn api_shadow_with_own_registration() {
    run_mode(&[("GLIBC_TUNABLES", "glibc.pthread.rseq=0")], RseqMode::Own);
}

#[test]
fn api_shadow_with_forced_fallback() {
    run_mode(&[("RSEQMALLOC_OPTIONS", "rseq=off")], RseqMode::Fallback);
}
