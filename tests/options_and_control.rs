//! The options and the version as a Rust program sees them: a compiled-in options string
//! (`rseqmalloc::options!`) under `RSEQMALLOC_OPTIONS`, `rseqmalloc::options()`,
//! `rseqmalloc::VERSION`. Each setting runs in a child process of its own (options are read
//! once per process), in the three rseq modes.

mod common;

use rseqmalloc::{RseqMalloc, RseqMode};

#[global_allocator]
static A: RseqMalloc = RseqMalloc;

rseqmalloc::options!("decay_ms=250, stats_classes=on,cpu_cache_bytes=64k");

const CHILD_ENV: &str = "RSEQMALLOC_OPTIONS_TEST_CHILD";

/// The three modes as `(name, environment)`; the options of each are added to `extra`.
fn modes(extra: &str) -> [(&'static str, Vec<(&'static str, String)>); 3] {
    let opts = |rseq: &str| {
        let mut all = String::from(rseq);
        if !extra.is_empty() {
            if !all.is_empty() {
                all.push(',');
            }
            all.push_str(extra);
        }
        all
    };
    [
        ("glibc", vec![("RSEQMALLOC_OPTIONS", opts(""))]),
        (
            "own",
            vec![
                ("RSEQMALLOC_OPTIONS", opts("")),
                ("GLIBC_TUNABLES", "glibc.pthread.rseq=0".to_string()),
            ],
        ),
        ("fallback", vec![("RSEQMALLOC_OPTIONS", opts("rseq=off"))]),
    ]
}

#[test]
#[ignore = "run by compiled_in_options_apply_and_the_environment_overrides_them"]
fn child_print_options() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let v: Vec<u64> = (0..1000).collect();
    let o = rseqmalloc::options();
    let mode = match rseqmalloc::rseq_mode() {
        RseqMode::Glibc => "glibc",
        RseqMode::Own => "own",
        RseqMode::Fallback => "fallback",
        _ => "uninitialized",
    };
    println!(
        "RESULT mode={mode} decay_ms={} stats_classes={} cpu_cache_bytes={} version={} sum={}",
        o.decay_ms,
        o.stats_classes,
        o.cpu_cache_bytes,
        rseqmalloc::VERSION,
        v.iter().sum::<u64>()
    );
}

#[test]
fn compiled_in_options_apply_and_the_environment_overrides_them() {
    for extra in ["", "decay_ms=500"] {
        for (mode, env) in modes(extra) {
            let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            all.push((CHILD_ENV, "1"));
            let out = common::run_child_test("child_print_options", &all);
            let line = out
                .lines()
                .find_map(|l| l.find("RESULT ").map(|i| &l[i..]))
                .unwrap_or_else(|| panic!("{out}"));
            let decay = if extra.is_empty() { 250 } else { 500 };
            assert_eq!(
                line,
                format!(
                    "RESULT mode={mode} decay_ms={decay} stats_classes=true cpu_cache_bytes=65536 \
                     version={} sum=499500",
                    env!("CARGO_PKG_VERSION")
                ),
                "with RSEQMALLOC_OPTIONS={env:?}"
            );
        }
    }
}
