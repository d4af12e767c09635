//! Integration tests of `librseqmalloc.so`: the C/C++ programs in `tests/c/` and real programs
//! (python3, perl, sqlite3, git, cc, sort), run with `LD_PRELOAD`.
//!
//! How the library is built and how programs run (and in which rseq modes): see
//! `support/mod.rs`.
//!
//! Nothing here waits by sleeping: every wait is on a process or, inside the C programs, on a
//! join, barrier or condition variable.

mod support;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::*;

/// Every symbol the library must export, and nothing else.
const EXPORTS: &[&str] = &[
    // C
    "malloc",
    "free",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "free_sized",
    "free_aligned_sized",
    "malloc_trim",
    "mallinfo",
    "mallinfo2",
    "malloc_info",
    "malloc_stats",
    "mallopt",
    // glibc's other names for the same
    "__libc_malloc",
    "__libc_free",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_memalign",
    "__libc_valloc",
    "__libc_pvalloc",
    "__libc_mallinfo",
    "__libc_mallopt",
    "cfree",
    // C++ operator new
    "_Znwm",
    "_Znam",
    "_ZnwmRKSt9nothrow_t",
    "_ZnamRKSt9nothrow_t",
    "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t",
    "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t",
    // C++ operator delete
    "_ZdlPv",
    "_ZdaPv",
    "_ZdlPvm",
    "_ZdaPvm",
    "_ZdlPvSt11align_val_t",
    "_ZdaPvSt11align_val_t",
    "_ZdlPvmSt11align_val_t",
    "_ZdaPvmSt11align_val_t",
    "_ZdlPvRKSt9nothrow_t",
    "_ZdaPvRKSt9nothrow_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t",
    "_ZdaPvSt11align_val_tRKSt9nothrow_t",
    // rseqmalloc's own API
    "rseqmalloc_stats",
    "rseqmalloc_rseq_mode",
    "rseqmalloc_usable_size",
    "rseqmalloc_trim",
    "rseqmalloc_version",
    "rseqmalloc_ctl",
    // the allocator's fork handlers registered first
    "__register_atfork",
    // dlopen without RTLD_DEEPBIND
    "dlopen",
    // vfork, and clone's vfork-like children, kept off the per-CPU caches (x86_64)
    "vfork",
    "__vfork",
    "clone",
    "__clone",
];

// ---------------------------------------------------------------------------------------------
// The library itself

fn defined_dynamic_symbols(so: &Path) -> BTreeSet<String> {
    let out = Command::new(require("nm", "binutils"))
        .args(["-D", "--defined-only"])
        .arg(so)
        .output()
        .expect("running nm");
    assert!(
        out.status.success(),
        "nm -D {} failed:\n{}",
        so.display(),
        show(&out)
    );
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|s| s.split('@').next().unwrap().to_string())
        .collect()
}

fn map_file_symbols() -> BTreeSet<String> {
    let text = fs::read_to_string(manifest_dir().join("rseqmalloc.map")).unwrap();
    // Drop comments, then take the names between `global:` and `local:`.
    let mut clean = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("/*") {
        clean.push_str(&rest[..i]);
        let j = rest[i..].find("*/").expect("unterminated comment") + i + 2;
        rest = &rest[j..];
    }
    clean.push_str(rest);
    let body = &clean[clean.find("global:").unwrap() + 7..clean.find("local:").unwrap()];
    body.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn exports_exactly_the_api() {
    let expected: BTreeSet<String> = EXPORTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(expected.len(), 61);
    assert_eq!(
        map_file_symbols(),
        expected,
        "rseqmalloc.map and the test's list differ"
    );
    let libs = libs();
    for so in [&libs.checked, &libs.release] {
        let got = defined_dynamic_symbols(so);
        let extra: Vec<_> = got.difference(&expected).collect();
        let missing: Vec<_> = expected.difference(&got).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{}: unexpected exports {extra:?}, missing {missing:?}",
            so.display()
        );
    }
    // Every operator new/delete the system's libstdc++ exports is one of ours.
    let out = Command::new(require("c++", "g++"))
        .arg("-print-file-name=libstdc++.so.6")
        .output()
        .unwrap();
    let libstdcxx = PathBuf::from(stdout(&out).trim());
    assert!(
        libstdcxx.is_file(),
        "no libstdc++.so.6 (install the apt package `libstdc++6`)"
    );
    let operators: BTreeSet<String> = defined_dynamic_symbols(&libstdcxx)
        .into_iter()
        .filter(|s| {
            ["_Znw", "_Zna", "_Zdl", "_Zda"]
                .iter()
                .any(|p| s.starts_with(p))
        })
        .collect();
    assert_eq!(operators.len(), 20, "libstdc++ operators: {operators:?}");
    let missing: Vec<_> = operators.difference(&expected).collect();
    assert!(
        missing.is_empty(),
        "libstdc++ exports operators we do not: {missing:?}"
    );
}

/// Scalar statics that more than one CPU writes after start-up, and the process-wide words
/// every path reads (`percpu::state::G`), as `nm -C` names them in the release library (the
/// arrays written under per-element locks assert their alignment where they are defined).
const LINE_OWNERS: &[&str] = &[
    "rseqmalloc::percpu::state::G",
    "rseqmalloc::arch::RESTARTS",
    "rseqmalloc::arch::BATCH_RESTARTS",
    "rseqmalloc::central::FLUSH_PENDING",
    "rseqmalloc::central::OWNED_FREED",
    "rseqmalloc::central::OWNED_SPARSE",
    "rseqmalloc::central::SHARED_BYTES",
    "rseqmalloc::central::TICK",
    "rseqmalloc::page_heap::HEAP",
    "rseqmalloc::percpu::drain::DRAIN",
    "rseqmalloc::percpu::drain::DRAINS_SKIPPED",
    "rseqmalloc::percpu::slab::EVICTED",
    "rseqmalloc::percpu::slab::BURST_GROWTHS",
    "rseqmalloc::percpu::storage::LIVE",
    "rseqmalloc::percpu::remote::NO_OUTBOX",
    "rseqmalloc::percpu::owned::OWNED_TAKEN",
    "rseqmalloc::percpu::owned::GIVEN_BACK",
    "rseqmalloc::percpu::owned::RECLASSED",
    "rseqmalloc::percpu::maintenance::NEXT_TICK_MS",
    "rseqmalloc::percpu::maintenance::BACKGROUND_TICKS",
    "rseqmalloc::percpu::SPARSE_DRAINED",
];

/// Each of [`LINE_OWNERS`] is one symbol (not split into its fields) whose 128-byte blocks (the
/// pair of cache lines the adjacent-line prefetcher fetches together, `CachePadded`'s size on
/// x86_64) hold no other static: a written counter next to a word the paths only read made
/// every write a miss on another CPU (`sync`, "Statics and cache lines"; before, the owned
/// spans' switch shared a line with three owned-span counters and two drain counters, and `G`'s
/// fields lay apart, one beside the page heap's lock). A new scalar static that several CPUs
/// write belongs in the list.
#[test]
fn written_statics_have_their_cache_lines_to_themselves() {
    let so = &libs().release;
    let out = Command::new(require("nm", "binutils"))
        .env("LC_ALL", "C")
        .args(["-C", "-S", "--defined-only"])
        .arg(so)
        .output()
        .expect("running nm");
    if std::env::var_os("RSEQMALLOC_SO").is_some()
        && String::from_utf8_lossy(&out.stderr).contains("no symbols")
    {
        eprintln!(
            "{}: no symbols (stripped), layout not checked",
            so.display()
        );
        return;
    }
    assert!(out.status.success(), "nm -C -S: {}", show(&out));
    // (address, size, name) of every static with a size.
    let mut statics: Vec<(u64, u64, String)> = stdout(&out)
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, ' ');
            let (a, s, kind, name) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let data = matches!(kind, "b" | "B" | "d" | "D");
            let parse = |x| u64::from_str_radix(x, 16).ok();
            data.then_some((parse(a)?, parse(s)?, name.to_string()))
        })
        .filter(|&(_, size, _)| size > 0)
        .collect();
    statics.sort();
    assert!(
        statics
            .iter()
            .any(|(_, _, n)| n.starts_with("rseqmalloc::")),
        "{}: no rseqmalloc symbols (a strip setting in the environment, such as \
         CARGO_PROFILE_RELEASE_STRIP or RUSTFLAGS=-Cstrip=..., stripped the build)",
        so.display()
    );
    for &owner in LINE_OWNERS {
        let mine: Vec<_> = statics.iter().filter(|(_, _, n)| n == owner).collect();
        assert_eq!(mine.len(), 1, "{owner}: {} symbols, want one", mine.len());
        let (at, size) = (mine[0].0, mine[0].1);
        let (first, end) = (at & !127, (at + size).next_multiple_of(128));
        assert_eq!(
            at, first,
            "{owner} at {at:#x} does not start a 128-byte block"
        );
        let sharing: Vec<_> = statics
            .iter()
            .filter(|(a, s, n)| n != owner && *a < end && a + s > first)
            .map(|(a, _, n)| format!("{n} at {a:#x}"))
            .collect();
        assert!(
            sharing.is_empty(),
            "{owner} at {at:#x} ({size} bytes) shares its lines with {sharing:?}"
        );
    }
}

#[test]
fn header_compiles_as_c_and_cxx() {
    let header = include_dir().join("rseqmalloc.h");
    for (compiler, package, args) in [
        ("cc", "gcc", &["-x", "c", "-std=c99"][..]),
        ("cc", "gcc", &["-x", "c", "-std=c11"][..]),
        ("c++", "g++", &["-x", "c++", "-std=c++11"][..]),
        ("c++", "g++", &["-x", "c++", "-std=c++20"][..]),
    ] {
        let out = Command::new(require(compiler, package))
            .args(args)
            .args([
                "-pedantic-errors",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-fsyntax-only",
            ])
            .arg(&header)
            .output()
            .unwrap();
        assert!(out.status.success(), "{compiler} {args:?}:\n{}", show(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// C tests

#[test]
fn api_every_function_and_edge_case() {
    let libs = libs();
    let dir = TempDir::new("api");
    let bin = dir.join("api");
    // Linked against the library too: the header's declarations must match its symbols.
    compile(&["api.c"], &bin, &[libs.checked.as_os_str()]);
    for (so, modes) in [
        (&libs.checked, &MODES[..]),
        (&libs.release, &[Mode::Glibc][..]),
    ] {
        for &mode in modes {
            let mut cmd = command(&bin, Some(so), 120);
            cmd.arg(mode.name());
            mode.apply(&mut cmd);
            let out = run_ok(&mut cmd, &format!("api [{}]", mode.name()));
            assert_eq!(stdout(&out), format!("api ok mode={}\n", mode.name()));
            // malloc_stats(): glibc's layout, our figures, nothing else on stderr.
            let err = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = err.lines().collect();
            assert_eq!(lines.len(), 8, "malloc_stats printed:\n{err}");
            assert!(
                lines[0].starts_with(&format!("rseqmalloc (rseq mode {}, ", mode.name())),
                "{err}"
            );
            for (line, name) in lines[1..].iter().zip([
                "system bytes",
                "in use bytes",
                "active bytes",
                "resident bytes",
                "free bytes",
                "released bytes",
                "metadata bytes",
            ]) {
                let (k, v) = line.split_once("= ").unwrap_or_else(|| panic!("{line}"));
                assert_eq!(k.trim_end(), name);
                assert_eq!(k.len(), 17, "{line}");
                assert!(
                    v.len() >= 10 && v.trim_start().parse::<u64>().is_ok(),
                    "{line}"
                );
            }
            let system: u64 = lines[1][19..].trim().parse().unwrap();
            let in_use: u64 = lines[2][19..].trim().parse().unwrap();
            assert!(system >= in_use && in_use > 0, "{err}");
        }
    }
}

#[test]
fn exit_report_shows_the_core_initialised_inside_the_shim() {
    // RSEQMALLOC_OPTIONS is read, and the exit report registered, by the core's `.init_array`
    // constructor: seeing the report proves it survived linking into the cdylib.
    let libs = libs();
    let mut cmd = command("true", Some(&libs.release), 30);
    cmd.env("RSEQMALLOC_OPTIONS", "stats=text");
    let out = run_ok(&mut cmd, "true with stats=text");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("rseqmalloc["), "{err}");
    assert!(err.contains("]: allocated "), "{err}");
    let mut cmd = command("true", Some(&libs.release), 30);
    cmd.env("RSEQMALLOC_OPTIONS", "stats=json");
    let out = run_ok(&mut cmd, "true with stats=json");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("{\"rseqmalloc\":{\"schema\":"), "{err}");
}

#[test]
fn bad_options_warn_once_each_and_json_stats_parse() {
    // Two malformed items among valid ones: one warning line each, naming the item; the valid
    // ones (rseq=off, stats=json) still take effect; the program runs on and exits 0.
    let libs = libs();
    let dir = TempDir::new("options");
    let bin = dir.join("options");
    compile(&["options.c"], &bin, &[]);
    let mut cmd = command(&bin, Some(&libs.release), 60);
    cmd.env(
        "RSEQMALLOC_OPTIONS",
        "bogus=1,rseq=off,decay_ms=12x,stats=json",
    );
    let out = run_ok(&mut cmd, "options");
    assert_eq!(stdout(&out), "live 500 objects of 100 bytes\n");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "two warnings and the JSON report expected:\n{err}"
    );
    assert_eq!(
        lines[0],
        "rseqmalloc: ignoring unknown key in RSEQMALLOC_OPTIONS: 'bogus=1' (no such key; \
         RSEQMALLOC_OPTIONS=help lists the keys)"
    );
    assert_eq!(
        lines[1],
        "rseqmalloc: ignoring malformed value in RSEQMALLOC_OPTIONS: 'decay_ms=12x' (accepted: \
         milliseconds; previous value kept)"
    );
    let json: serde_json::Value = serde_json::from_str(lines[2]).expect("the exit report is JSON");
    let r = &json["rseqmalloc"];
    assert_eq!(
        r["rseq_mode"], "fallback",
        "rseq=off must hold despite the bad items: {r}"
    );
    assert!(r["fallback_ops"].as_u64().unwrap() > 0);
    let classes = r["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 100);
    // 500 objects of 100 bytes live at exit, in the 112-byte class (C alignment 16).
    let c112 = classes.iter().find(|c| c["size"] == 112).unwrap();
    assert!(c112["in_use"].as_u64().unwrap() >= 500, "{c112}");
    assert!(r["allocated"].as_u64().unwrap() >= 500 * 112);
    assert!(r["mapped"].as_u64().unwrap() >= r["active"].as_u64().unwrap());
    assert_eq!(
        r["cpu_cache_bytes"].as_array().unwrap().len() as u64,
        r["slabs"].as_u64().unwrap().min(64)
    );
}

#[test]
fn stress_random_mix_of_a_million_operations() {
    let libs = libs();
    let dir = TempDir::new("stress");
    let bin = dir.join("stress");
    compile(&["stress.c"], &bin, &[]);
    for (so, mode) in checked_modes_and_release(libs) {
        let out = run_test_program(&bin, &["1000000"], so, mode, "stress");
        assert!(
            out.starts_with("stress ok ops=1000000 ")
                && out.ends_with(&format!(" mode={}\n", mode.name())),
            "{out}"
        );
    }
}

/// Two copies of the shim in one process, each opened by `dlopen` from its own path (how
/// `benches/c/ab.c` compares two builds): each keeps its own heap and objects, and only the
/// first may register an rseq area of its own; the second finds it taken and runs in the
/// fallback, never fighting the owner (with glibc's area, both use it). `ab.c` itself runs
/// too, so the benchmark keeps building and checking its objects.
#[test]
fn two_copies_in_one_process_keep_their_objects_and_one_rseq_owner() {
    let libs = libs();
    let dir = TempDir::new("two-copies");
    let (a, b) = (dir.join("a.so"), dir.join("b.so"));
    fs::copy(&libs.release, &a).unwrap();
    fs::copy(&libs.release, &b).unwrap();
    let bin = dir.join("two_copies");
    compile(&["two_copies.c"], &bin, &[]);
    let ab = dir.join("ab");
    compile_in(&manifest_dir().join("../benches/c"), &["ab.c"], &ab, &[]);
    for mode in MODES {
        let want = match mode {
            Mode::Glibc => "glibc,glibc",
            Mode::Own => "own,fallback",
            Mode::Fallback => "fallback,fallback",
        };
        let mut cmd = command(&bin, None, 120);
        cmd.arg(&a).arg(&b);
        mode.apply(&mut cmd);
        let out = run_ok(&mut cmd, &format!("two_copies [{}]", mode.name()));
        assert_eq!(
            stdout(&out),
            format!("two_copies ok modes={want}\n"),
            "{}",
            show(&out)
        );
        let mut cmd = command(&ab, None, 120);
        cmd.arg(&a).arg(&b).args(["64", "16", "3"]);
        mode.apply(&mut cmd);
        let out = run_ok(&mut cmd, &format!("ab [{}]", mode.name()));
        let line = stdout(&out);
        assert!(
            line.starts_with("64 B x 16: A ") && line.ends_with("(3 rounds)\n"),
            "{line}"
        );
    }
}

#[test]
fn sixteen_threads_free_each_others_objects() {
    let libs = libs();
    let dir = TempDir::new("threads");
    let bin = dir.join("threads");
    compile(&["threads.c"], &bin, &[]);
    for mode in MODES {
        let out = run_test_program(&bin, &["20000"], &libs.checked, mode, "threads");
        assert!(
            out.starts_with("threads ok threads=16 objects=320000 ")
                && out.ends_with(&format!(" mode={}\n", mode.name())),
            "{out}"
        );
    }
}

#[test]
fn ten_thousand_short_lived_threads_keep_rss_bounded() {
    let libs = libs();
    let dir = TempDir::new("churn");
    let bin = dir.join("churn");
    compile(&["churn.c"], &bin, &[]);
    for (so, mode) in checked_modes_and_release(libs) {
        // The bounds are asserted by the program (see the comment at the top of churn.c).
        let out = run_test_program(&bin, &["200"], so, mode, "churn");
        assert!(
            out.starts_with("churn ok threads=10000 ")
                && out.ends_with(&format!(" mode={}\n", mode.name())),
            "{out}"
        );
    }
}

#[test]
fn fork_while_other_threads_allocate() {
    let libs = libs();
    let dir = TempDir::new("fork");
    let bin = dir.join("fork");
    compile(&["fork.c"], &bin, &[]);
    for mode in MODES {
        let out = run_test_program(&bin, &["40"], &libs.checked, mode, "fork");
        assert!(
            out.starts_with("fork ok children=40 ")
                && out.ends_with(&format!(" mode={}\n", mode.name())),
            "{out}"
        );
    }
}

#[test]
fn bad_frees_abort_with_one_line() {
    let libs = libs();
    let dir = TempDir::new("invalid_free");
    let bin = dir.join("invalid_free");
    compile(&["invalid_free.c"], &bin, &[]);
    for (so, mode) in checked_modes_and_release(libs) {
        let out = run_test_program(&bin, &[], so, mode, "invalid_free");
        assert_eq!(
            last_line(&out),
            format!("invalid_free ok 13 cases mode={}", mode.name()),
            "{out}"
        );
        assert!(
            out.starts_with("interior_small: free(): invalid pointer 0x"),
            "{out}"
        );
        assert!(
            out.contains("\ndouble_free_small: free(): double free detected 0x"),
            "{out}"
        );
    }
    // And as seen from outside: a plain program doing a bad free dies by SIGABRT with the line.
    let src = dir.join("bad.c");
    fs::write(
        &src,
        "#include <stdlib.h>\nint main(void) { char *p = malloc(64); free(p + 16); return 0; }\n",
    )
    .unwrap();
    let bad = dir.join("bad");
    let o = Command::new(require("cc", "gcc"))
        .args(["-O0", "-w", "-o"])
        .arg(&bad)
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let out = run(&mut command(&bad, Some(&libs.checked), 30), "bad free");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("free(): invalid pointer 0x") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn hard_places_constructors_tls_atexit_dlopen() {
    let libs = libs();
    let dir = TempDir::new("hard");
    let plugin = dir.join("plugin.so");
    compile(
        &["plugin.c"],
        &plugin,
        &[OsStr::new("-shared"), OsStr::new("-fPIC")],
    );
    let bin = dir.join("hard");
    compile(&["hard.c"], &bin, &[]);
    for (so, modes) in [
        (&libs.checked, &MODES[..]),
        (&libs.release, &[Mode::Glibc][..]),
    ] {
        for &mode in modes {
            let out = run_test_program(&bin, &[plugin.to_str().unwrap()], so, mode, "hard");
            let mut expected = String::from("constructor ok\ndlsym ok\nthread exit ok\n");
            for _ in 0..20 {
                expected.push_str("plugin fini ok\n");
            }
            let _ = write!(
                expected,
                "plugin ok\nmain done mode={}\natexit main ok\natexit inner ok\natexit last ok\n\
                 destructor ok\n",
                mode.name()
            );
            assert_eq!(out, expected);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// C++

#[test]
fn cxx_operators_new_handler_and_containers() {
    let libs = libs();
    let dir = TempDir::new("cxx");
    let bin = dir.join("cxx");
    compile(&["cxx.cc"], &bin, &[libs.checked.as_os_str()]);
    for (so, mode) in checked_modes_and_release(libs) {
        let out = run_test_program(&bin, &[], so, mode, "cxx");
        assert!(
            out.starts_with("cxx ok forms=20 ")
                && out.ends_with(&format!(" mode={}\n", mode.name())),
            "{out}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Real programs: stdout with LD_PRELOAD must be byte-identical to stdout without it.

/// Working directories for the runs of [`compare_with_and_without`], in order: without the
/// library, then one per rseq mode.
const RUNS: [&str; 1 + MODES.len()] = ["a", "b", "c", "d"];

/// Runs `make()` without the release library and with it in each rseq mode; all must succeed
/// with the same stdout.
///
/// That the preloaded run really used librseqmalloc is shown on stderr: an unknown key in
/// `RSEQMALLOC_OPTIONS` makes the core print one warning line when it loads in a process, so
/// `min_processes` is how many processes at least must have loaded it. (Exit reports,
/// `stats=text`, do not count them: coreutils programs close stderr in their own atexit
/// handler before the report runs.) The reports that do appear name each process's rseq mode,
/// which must be the mode of the run. Once loaded first, the library is what `malloc`
/// resolves to.
fn compare_with_and_without(
    what: &str,
    min_processes: usize,
    make: impl Fn(Option<&Path>) -> Command,
) {
    let so = &libs().release;
    let base = run_ok(&mut make(None), &format!("{what} (glibc malloc)"));
    for mode in MODES {
        let what = format!("{what} [{}]", mode.name());
        let mut cmd = make(Some(so));
        // The marker (an unknown key: each process that loads the library warns once) and an
        // exit report per process, which names its rseq mode.
        mode.apply_with(&mut cmd, "shim_test_marker=1,stats=text");
        let ours = run_ok(&mut cmd, &format!("{what} (librseqmalloc)"));
        let err = String::from_utf8_lossy(&ours.stderr);
        let loaded = err
            .lines()
            .filter(|l| {
                l.starts_with("rseqmalloc: ignoring unknown key") && l.contains("shim_test_marker")
            })
            .count();
        assert!(
            loaded >= min_processes,
            "{what}: librseqmalloc loaded in {loaded} processes, expected at least \
             {min_processes}\n{}",
            show(&ours)
        );
        // Every process that chose a mode chose this one.
        let modes: Vec<&str> = err
            .lines()
            .filter_map(|l| l.split_once(", rseq mode ")?.1.split([' ', ',']).next())
            .collect();
        assert!(
            !modes.is_empty() && modes.iter().all(|m| *m == mode.name()),
            "{what}: exit reports name the modes {modes:?}"
        );
        same_stdout(&what, &base, &ours);
    }
}

/// Asserts `ours` printed exactly what `base` did (and something).
fn same_stdout(what: &str, base: &std::process::Output, ours: &std::process::Output) {
    if base.stdout != ours.stdout {
        let a = String::from_utf8_lossy(&base.stdout);
        let b = String::from_utf8_lossy(&ours.stdout);
        let line = a.lines().zip(b.lines()).position(|(x, y)| x != y);
        panic!(
            "{what}: stdout differs ({} vs {} bytes, first differing line {:?}):\n\
             without: {:?}\nwith:    {:?}",
            base.stdout.len(),
            ours.stdout.len(),
            line.map(|l| l + 1),
            line.and_then(|l| a.lines().nth(l)),
            line.and_then(|l| b.lines().nth(l)),
        );
    }
    assert!(!base.stdout.is_empty(), "{what}: no output");
    eprintln!("{what}: {} identical bytes of stdout", base.stdout.len());
}

#[test]
fn real_python3_dict_and_json() {
    let python = require("python3", "python3");
    let script = r#"
import hashlib, json
d = {"k%07d" % i: i * 7919 % 1000003 for i in range(1000000)}
s = json.dumps(d)
d2 = json.loads(s)
assert d2 == d and list(d2) == list(d), "round trip"
print(len(d2), len(s), sum(d2.values()), hashlib.sha256(s.encode()).hexdigest())
"#;
    compare_with_and_without("python3", 1, |so| {
        let mut cmd = command(&python, so, 300);
        // Every object through malloc, not only those pymalloc does not take.
        cmd.env("PYTHONMALLOC", "malloc")
            .env("PYTHONHASHSEED", "0")
            .args(["-c", script]);
        cmd
    });
}

#[test]
fn real_perl_hash_and_sort() {
    let perl = require("perl", "perl");
    let script = r#"
use strict; use warnings; use Digest::MD5;
my %h;
for my $i (0 .. 199_999) {
    $h{"key" . ($i * 7919 % 1_000_003)} = join(",", $i, $i * $i % 1009, "x" x ($i % 50));
}
my @keys = sort keys %h;
my $ctx = Digest::MD5->new;
my $total = 0;
for my $k (@keys) { $ctx->add("$k=$h{$k}\n"); $total += length $h{$k}; }
delete $h{$_} for grep { /7$/ } @keys;
my @vals = sort { $a cmp $b } values %h;
print scalar(@keys), " ", scalar(keys %h), " $total ", $ctx->hexdigest, " $vals[0] $vals[-1]\n";
"#;
    compare_with_and_without("perl", 1, |so| {
        let mut cmd = command(&perl, so, 300);
        cmd.env("PERL_HASH_SEED", "0").args(["-e", script]);
        cmd
    });
}

#[test]
fn real_sqlite3_insert_index_query() {
    let sqlite = require("sqlite3", "sqlite3");
    let dir = TempDir::new("sqlite");
    let mut sql = String::from(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, val REAL);\nBEGIN;\n",
    );
    for i in 0..200_000u64 {
        let h = i.wrapping_mul(2_654_435_761) % 4_294_967_296;
        let _ = writeln!(
            sql,
            "INSERT INTO t(name, grp, val) VALUES('name-{h:08x}-{i}', {}, {});",
            i % 1000,
            (i * 37 % 10007) as f64 / 8.0
        );
    }
    sql.push_str(
        "COMMIT;
CREATE INDEX t_name ON t(name);
CREATE INDEX t_grp ON t(grp, val);
SELECT count(*), sum(grp), total(val) FROM t;
SELECT grp, count(*), printf('%.4f', avg(val)) FROM t GROUP BY grp ORDER BY grp LIMIT 5;
SELECT id, name FROM t WHERE name >= 'name-8' ORDER BY name LIMIT 5;
SELECT name, val FROM t WHERE grp = 17 ORDER BY val DESC, id LIMIT 5;
SELECT count(DISTINCT substr(name, 6, 2)) FROM t;
UPDATE t SET val = val * 2 WHERE grp < 100;
DELETE FROM t WHERE id % 3 = 0;
SELECT count(*), total(val) FROM t;
PRAGMA integrity_check;
",
    );
    let script = dir.join("script.sql");
    fs::write(&script, sql).unwrap();
    let n = AtomicUsize::new(0);
    compare_with_and_without("sqlite3", 1, |so| {
        let db = dir.join(&format!("db{}.sqlite", n.fetch_add(1, Ordering::Relaxed)));
        let mut cmd = command(&sqlite, so, 300);
        cmd.arg(&db).arg(format!(".read {}", script.display()));
        cmd
    });
}

#[test]
fn real_git_add_commit_log_gc() {
    require("git", "git");
    let sh = require("sh", "dash");
    let dir = TempDir::new("git");
    // Identical trees of 2,000 generated files, one per run.
    for run in RUNS {
        for i in 0..2000u64 {
            let d = dir.join(&format!("{run}/repo/dir{:02}", i % 40));
            fs::create_dir_all(&d).unwrap();
            let mut body = String::new();
            let lines = 1 + (i * 7919) % 60;
            for l in 0..lines {
                let _ = writeln!(body, "file {i} line {l} value {}", (i * 31 + l * 17) % 1009);
            }
            fs::write(d.join(format!("file{i:04}.txt")), body).unwrap();
        }
    }
    // Fixed names and dates make every hash deterministic; one pack thread makes the pack
    // (and so `size-pack`) deterministic.
    let script = r#"
set -e
cd repo
git init -q -b main .
git config pack.threads 1
git config gc.autoDetach false
git add -A
git commit -q -m "add 2000 files"
i=0
while [ $i -lt 2000 ]; do
    f=$(printf 'dir%02d/file%04d.txt' $((i % 40)) $i)
    echo "changed $i" >> "$f"
    i=$((i + 7))
done
git rm -q dir39/file1999.txt
git commit -q -a -m "change every 7th file"
git log --format='%H %T %an <%ae> %ad %cd %s' --date=raw
git rev-list --objects --all | sort
git gc -q
git count-objects -v
git fsck --no-dangling --no-progress
git log --stat -1 | tail -3
git show HEAD~1:dir07/file0007.txt | head -3
git diff --stat HEAD~1 HEAD | tail -1
"#;
    let n = AtomicUsize::new(0);
    compare_with_and_without("git", 8, |so| {
        let run = RUNS[n.fetch_add(1, Ordering::Relaxed)];
        let mut cmd = command(&sh, so, 300);
        cmd.current_dir(dir.join(run))
            .args(["-c", script])
            .env("HOME", dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "A U Thor")
            .env("GIT_AUTHOR_EMAIL", "author@example.com")
            .env("GIT_AUTHOR_DATE", "1700000000 +0000")
            .env("GIT_COMMITTER_NAME", "C O Mitter")
            .env("GIT_COMMITTER_EMAIL", "committer@example.com")
            .env("GIT_COMMITTER_DATE", "1700000100 +0000")
            .env("LC_ALL", "C")
            .env("TZ", "UTC");
        cmd
    });
}

#[test]
fn real_cc_compiles_a_program() {
    let cc = require("cc", "gcc");
    let sh = require("sh", "dash");
    let dir = TempDir::new("cc");
    let prog = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct node { struct node *next; unsigned long v; };
static int cmp(const void *a, const void *b) {
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y;
}
int main(void) {
    enum { N = 200000 };
    unsigned long *a = malloc(N * sizeof *a), h = 1469598103934665603ul;
    struct node *list = NULL;
    for (unsigned long i = 0; i < N; i++) {
        a[i] = (i * 2654435761ul) % 1000003ul;
        struct node *n = malloc(sizeof *n);
        n->v = a[i]; n->next = list; list = n;
    }
    qsort(a, N, sizeof *a, cmp);
    for (unsigned long i = 0; i < N; i++) h = (h ^ a[i]) * 1099511628211ul;
    unsigned long s = 0;
    while (list) { struct node *n = list; s += n->v; list = n->next; free(n); }
    char buf[64];
    snprintf(buf, sizeof buf, "%.6f", (double)s / N);
    printf("%lu %lu %s %lu %lu\n", h, s, buf, a[0], a[N - 1]);
    free(a);
    return 0;
}
"#;
    for run in RUNS {
        fs::create_dir_all(dir.join(run)).unwrap();
        fs::write(dir.join(&format!("{run}/prog.c")), prog).unwrap();
    }
    // The compiler driver, cc1, as and ld all run preloaded; then the program runs, and the
    // binary's hash shows the compilation is byte-identical.
    let n = AtomicUsize::new(0);
    compare_with_and_without("cc", 3, |so| {
        let run = RUNS[n.fetch_add(1, Ordering::Relaxed)];
        let mut cmd = command(&sh, so, 300);
        cmd.current_dir(dir.join(run)).args([
            "-c",
            &format!(
                "set -e; {} -O2 -Wall -o prog prog.c; ./prog; sha256sum prog",
                cc.display()
            ),
        ]);
        cmd
    });
}

#[test]
fn real_sort_a_million_lines() {
    let sort = require("sort", "coreutils");
    let dir = TempDir::new("sort");
    let mut text = String::with_capacity(24 << 20);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..1_000_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 1 + (x % 40) as usize;
        let word: String = (0..len)
            .map(|k| (b'a' + ((x >> (k % 60)) % 26) as u8) as char)
            .collect();
        let _ = writeln!(text, "{word} {} {i}", x % 100_000);
    }
    let input = dir.join("input.txt");
    fs::write(&input, text).unwrap();
    compare_with_and_without("sort", 1, |so| {
        let mut cmd = command(&sort, so, 300);
        cmd.env("LC_ALL", "C")
            .arg("-k2,2n")
            .arg("-k1,1")
            .arg(&input);
        cmd
    });
}
