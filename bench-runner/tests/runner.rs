//! End-to-end tests of `rseqmalloc-bench`: they run the built runner (and
//! through it the built workload binary) with `--no-build` and `--quick`,
//! so they need neither librseqmalloc.so nor the optional peers, and check
//! its table, its JSON and CSV, skipped allocators and a crashing one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_rseqmalloc-bench");

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("runner-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn bench(args: &[&str]) -> Output {
    let out = Command::new(BENCH)
        .args(args)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run rseqmalloc-bench");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), &out.stderr);
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("JSON written")).expect("valid JSON")
}

fn cell<'a>(report: &'a Value, workload: &str, allocator: &str) -> &'a Value {
    report["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .find(|c| c["workload"] == workload && c["allocator"] == allocator)
        .unwrap_or_else(|| panic!("no cell {workload} x {allocator}"))
}

/// The workloads a run here measures: all but those whose program is missing.
fn measured() -> impl Iterator<Item = &'static rseqmalloc_bench::Workload> {
    rseqmalloc_bench::WORKLOADS.iter().filter(|w| {
        w.needs.is_none_or(|p| {
            Command::new(p.name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    })
}

fn jemalloc_installed() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib",
        "/usr/local/lib",
        "/lib/x86_64-linux-gnu",
    ]
    .iter()
    .any(|d| Path::new(d).join("libjemalloc.so.2").is_file())
}

/// The quick run over every workload with glibc and jemalloc, shared by the
/// tests that read its table, its JSON and its CSV.
struct QuickRun {
    out: Output,
    dir: PathBuf,
}

fn quick_run() -> &'static QuickRun {
    static RUN: OnceLock<QuickRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = scratch("quick");
        let path = |f: &str| dir.join(f).display().to_string();
        let out = bench(&[
            "--quick",
            "--no-build",
            "--allocators",
            "glibc,jemalloc",
            "--json",
            &path("report.json"),
            "--csv",
            &path("report.csv"),
            "--svg",
            &path("chart.svg"),
        ]);
        QuickRun { out, dir }
    })
}

#[test]
fn quick_run_prints_a_complete_table() {
    let run = quick_run();
    assert!(run.out.status.success(), "exit {:?}", run.out.status);
    let text = stdout(&run.out);
    for header in [
        "time ms",
        "spread",
        "user ms",
        "sys ms",
        "minflt",
        "peak MiB",
        "time/glibc",
        "RSS/glibc",
        "geomean",
        "load average (1/5/15 min)",
        "commit: ",
        "allocators: glibc 2.",
        "(--quick: indicative only)",
    ] {
        assert!(text.contains(header), "no '{header}' in:\n{text}");
    }
    for w in measured() {
        let line = text
            .lines()
            .find(|l| l.starts_with(w.name))
            .unwrap_or_else(|| panic!("no row for {}:\n{text}", w.name));
        assert!(line.contains("glibc") && line.contains("1.00x"), "{line}");
    }
    // The server workload's latency percentiles get a table of their own.
    let latency = text
        .lines()
        .skip_while(|l| !l.starts_with("latency"))
        .nth(2)
        .unwrap_or_else(|| panic!("no latency table:\n{text}"));
    assert!(
        latency.starts_with("server") && latency.contains("glibc"),
        "{latency}"
    );
    let with_jemalloc = jemalloc_installed();
    let jemalloc_rows = text
        .lines()
        .filter(|l| l.split_whitespace().take(2).any(|w| w == "jemalloc"))
        .count();
    if with_jemalloc {
        // One row per workload, one latency row and one geomean row, all measured.
        assert_eq!(jemalloc_rows, measured().count() + 2, "{text}");
        assert!(!text.contains("skipped jemalloc"), "{text}");
    } else {
        assert!(
            text.contains("skipped jemalloc: not installed (apt-get install libjemalloc2)"),
            "{text}"
        );
    }
    assert!(
        !text.contains("crashed") && !text.contains("failed"),
        "{text}"
    );
    let chart = run.dir.join("chart.svg");
    assert!(
        text.contains(&format!("chart: {}", chart.display())),
        "{text}"
    );
    let svg = std::fs::read_to_string(chart).expect("chart written");
    for expected in ["single-churn", "geomean", "CPUs, --quick", "jemalloc 5."] {
        if expected.starts_with("jemalloc") && !with_jemalloc {
            continue;
        }
        assert!(svg.contains(expected), "no '{expected}' in the chart");
    }
    assert!(svg.starts_with("<svg"), "{svg:.200}");
}

#[test]
fn json_has_every_cell_and_parses() {
    let run = quick_run();
    assert!(run.out.status.success());
    let report = json_file(&run.dir.join("report.json"));
    let allocators: Vec<&str> = report["allocators"]
        .as_array()
        .expect("allocators")
        .iter()
        .map(|a| a["name"].as_str().expect("name"))
        .collect();
    let expected = if jemalloc_installed() {
        vec!["glibc", "jemalloc"]
    } else {
        vec!["glibc"]
    };
    assert_eq!(allocators, expected);
    let cells = report["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), measured().count() * allocators.len());
    for w in measured() {
        for a in &allocators {
            let c = cell(&report, w.name, a);
            assert_eq!(c["status"], "ok", "{c}");
            let time = c["time_ms"].as_f64().unwrap();
            assert!(time > 0.0, "{c}");
            assert_eq!(c["time_range_ms"][0], time, "one run: min = median");
            assert_eq!(c["time_range_ms"][1], time, "one run: max = median");
            assert!(c["cpu_ms"].as_f64().unwrap() >= 0.0, "{c}");
            let (user, sys) = (
                c["user_ms"].as_f64().unwrap(),
                c["sys_ms"].as_f64().unwrap(),
            );
            assert!(
                (user + sys - c["cpu_ms"].as_f64().unwrap()).abs() < 1e-6,
                "{c}"
            );
            assert!(c["minflt"].as_f64().unwrap() > 0.0, "{c}");
            assert!(c["peak_rss_mib"].as_f64().unwrap() > 0.0, "{c}");
            assert!(c["ops"].as_u64().unwrap() > 0, "{c}");
            if w.name == "server" {
                let p50 = c["latency"]["p50_ns"].as_f64().unwrap();
                let p999 = c["latency"]["p999_ns"].as_f64().unwrap();
                assert!(p50 > 0.0 && p999 >= p50, "{c}");
            }
            assert_eq!(
                c["runs"].as_array().unwrap().len(),
                1,
                "--quick is one repetition"
            );
            assert!(c["time_vs_glibc"].as_f64().unwrap() > 0.0, "{c}");
        }
        assert_eq!(cell(&report, w.name, "glibc")["time_vs_glibc"], 1.0);
    }
    // Same workload and scale: the same amount of work under each allocator.
    if allocators.len() == 2 {
        for w in measured() {
            assert_eq!(
                cell(&report, w.name, "glibc")["ops"],
                cell(&report, w.name, "jemalloc")["ops"],
                "{}",
                w.name
            );
        }
    }
    assert_eq!(
        report["geomean"].as_array().unwrap().len(),
        allocators.len()
    );
    assert_eq!(report["repeat"], 1);
    assert_eq!(report["quick"], true);
    assert!(report["date"].as_str().unwrap().ends_with(" UTC"));
    assert!(report["load_before"][0].as_f64().unwrap() >= 0.0);
    assert!(report["load_after"][2].as_f64().unwrap() >= 0.0);
    assert!(
        report["commit"].is_string(),
        "the workspace is a git checkout"
    );
    assert!(report["allocators"][0]["version"]
        .as_str()
        .unwrap()
        .starts_with("2."));

    let csv = std::fs::read_to_string(run.dir.join("report.csv")).expect("CSV written");
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("workload,allocator,scale,status"));
    assert_eq!(lines.count(), cells.len());
}

#[test]
fn missing_allocator_is_skipped_with_one_line() {
    let dir = scratch("ghost");
    let out = bench(&[
        "--quick",
        "--no-build",
        "--workloads",
        "larson",
        "--allocators",
        "glibc,ghost",
        "--allocator",
        "ghost=/nonexistent/libghost.so",
        "--json",
        &dir.join("r.json").display().to_string(),
        "--svg",
        &dir.join("c.svg").display().to_string(),
    ]);
    assert!(out.status.success(), "exit {:?}", out.status);
    let text = stdout(&out);
    let skipped: Vec<&str> = text.lines().filter(|l| l.starts_with("skipped")).collect();
    assert_eq!(
        skipped,
        ["skipped ghost: /nonexistent/libghost.so not found"],
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("larson") && l.contains("glibc")),
        "{text}"
    );
    let report = json_file(&dir.join("r.json"));
    assert_eq!(report["skipped"][0]["name"], "ghost");
    assert_eq!(report["cells"].as_array().unwrap().len(), 1);
    assert_eq!(cell(&report, "larson", "glibc")["status"], "ok");
    // Only glibc was measured: nothing to chart against it, and that is said.
    assert!(text.contains("chart: not written"), "{text}");
}

#[test]
fn crashing_allocator_is_reported_and_the_run_goes_on() {
    let dir = scratch("broken");
    let so = dir.join("libbroken.so");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken_malloc.c");
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&so)
        .arg(&source)
        .status()
        .expect("this test needs a C compiler as `cc`");
    assert!(cc.success(), "cc failed: {cc}");

    let out = bench(&[
        "--quick",
        "--no-build",
        "--workloads",
        "single-churn,large-objects",
        "--allocators",
        "glibc,broken",
        "--allocator",
        &format!("broken={}", so.display()),
        "--timeout",
        "20",
        "--json",
        &dir.join("r.json").display().to_string(),
        "--svg",
        &dir.join("c.svg").display().to_string(),
    ]);
    assert!(out.status.success(), "exit {:?}", out.status);
    let text = stdout(&out);
    let report = json_file(&dir.join("r.json"));

    // Overlapping blocks: the workload's own check catches them.
    let churn = cell(&report, "single-churn", "broken");
    assert_eq!(churn["status"], "failed", "{churn}");
    assert_eq!(churn["summary"], "failed: exit 3");
    assert!(
        churn["detail"].as_str().unwrap().contains("data mismatch"),
        "{churn}"
    );
    assert!(churn["time_vs_glibc"].is_null());
    // Arena exhausted: abort().
    let large = cell(&report, "large-objects", "broken");
    assert_eq!(large["status"], "crashed", "{large}");
    assert_eq!(large["summary"], "crashed: SIGABRT");

    for w in ["single-churn", "large-objects"] {
        assert_eq!(cell(&report, w, "glibc")["status"], "ok");
    }
    assert!(
        text.contains("failed: exit 3") && text.contains("crashed: SIGABRT"),
        "{text}"
    );
    let broken_geomean = report["geomean"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["allocator"] == "broken")
        .expect("geomean row");
    assert_eq!(broken_geomean["workloads"], 0);
    let svg = std::fs::read_to_string(dir.join("c.svg")).expect("chart written");
    assert!(
        svg.contains(">\nx\n<") || svg.contains(">x<"),
        "failure marks in the chart"
    );
}

/// A quick run of `realloc-growth` under glibc alone, with `extra` arguments,
/// its chart in `dir`.
fn glibc_run(dir: &Path, extra: &[&str]) -> Output {
    let svg = dir.join("c.svg").display().to_string();
    let mut args = vec![
        "--quick",
        "--no-build",
        "--workloads",
        "realloc-growth",
        "--allocators",
        "glibc",
        "--svg",
        &svg,
    ];
    args.extend_from_slice(extra);
    bench(&args)
}

#[test]
fn json_to_stdout_moves_the_table_to_stderr() {
    let out = glibc_run(&scratch("stdout"), &["--json", "-"]);
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is only JSON");
    assert_eq!(cell(&report, "realloc-growth", "glibc")["status"], "ok");
    assert!(String::from_utf8_lossy(&out.stderr).contains("time/glibc"));
}

#[test]
fn bad_arguments_exit_2_with_a_reason() {
    for (args, reason) in [
        (&["--workloads", "nosuch"][..], "unknown workload 'nosuch'"),
        (&["--allocators", "nosuch"], "unknown allocator 'nosuch'"),
        (&["--repeat", "zero"], "--repeat"),
        (&["--bogus"], "invalid option '--bogus'"),
        (
            &["--baseline", "/nonexistent/old.json"],
            "cannot read --baseline",
        ),
    ] {
        let mut all = vec!["--no-build"];
        all.extend_from_slice(args);
        let out = bench(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(err.contains(reason), "{args:?}: {err}");
    }
    let help = bench(&["--help"]);
    assert!(help.status.success());
    let help = stdout(&help);
    assert!(help.contains("--allocator NAME=PATH"), "{help}");
    assert!(help.contains("--quick is indicative only"), "{help}");
}

#[test]
fn baseline_prints_the_change_against_an_earlier_run() {
    let run = quick_run();
    assert!(run.out.status.success());
    let dir = scratch("baseline");
    let earlier = run.dir.join("report.json").display().to_string();
    let json = dir.join("r.json").display().to_string();
    let out = glibc_run(&dir, &["--baseline", &earlier, "--json", &json]);
    assert!(out.status.success(), "exit {:?}", out.status);
    let text = stdout(&out);
    assert!(text.contains("change against "), "{text}");
    let line = text
        .lines()
        .skip_while(|l| !l.starts_with("change against"))
        .find(|l| l.starts_with("realloc-growth"))
        .unwrap_or_else(|| panic!("no change row:\n{text}"));
    assert!(line.contains("glibc") && line.contains('x'), "{line}");
    let report = json_file(&dir.join("r.json"));
    let change = &report["baseline"]["changes"][0];
    let (then, now) = (
        change["time_then_ms"].as_f64().unwrap(),
        change["time_now_ms"].as_f64().unwrap(),
    );
    assert!((change["time_change"].as_f64().unwrap() - now / then).abs() < 1e-9);
    assert_eq!(report["baseline"]["geomean"][0]["workloads"], 1);
}
