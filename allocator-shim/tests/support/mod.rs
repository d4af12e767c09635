//! Helpers shared by the shim's integration tests (`shim.rs`, `conformance.rs`): building
//! `librseqmalloc.so`, compiling the C/C++ test programs, running them as children under
//! `LD_PRELOAD` in each rseq mode with a watchdog.
//!
//! # Which `librseqmalloc.so`
//! `cargo test -p rseqmalloc-shim` does not build the cdylib: it compiles only the library's
//! unit-test harness (`--test`) and the integration tests (checked with
//! `--message-format=json`), so a `target/debug/librseqmalloc.so` is whatever an earlier
//! `cargo build` left, possibly stale. The harness therefore builds the library itself, once
//! per test process, with `$CARGO build -p rseqmalloc-shim` into its own target directory
//! `shim-so/` next to the test binary's profile directory (e.g. `target/debug/shim-so/`): the
//! outer cargo holds the lock on its target directory while tests run. Two builds:
//! - **checked**, `--profile test`: opt-level 3 with debug assertions, so the core's
//!   re-entrancy guard aborts on any allocation made from inside the allocator. Every C and
//!   C++ test runs against it.
//! - **release**, `--release`: `panic = "abort"`, thin LTO, as users get it. The stress, bad
//!   free and C++ tests (the throwing `operator new` path differs most under
//!   `panic = "abort"`) run against it too, and the real programs run against it only.
//!
//! The first run builds both (about 20 s on 2 cores); later runs find them up to date in well
//! under a second. `RSEQMALLOC_SO=/path/to/librseqmalloc.so` skips the builds and uses that
//! file for everything.
//!
//! # How programs run
//! C/C++ sources are compiled with the system `cc`/`c++` (`-O2 -pthread`) into a fresh
//! directory under `std::env::temp_dir()`, removed when the test passes (kept, and named in the
//! failure message, when it fails). Each program runs under `timeout -s KILL` (a hang fails
//! instead of stalling the suite), with `LD_PRELOAD`, `GLIBC_TUNABLES`, `RSEQMALLOC_OPTIONS`
//! and `MALLOC_*` cleared except for what the test sets. Programs check themselves that
//! librseqmalloc is their malloc (`test_init` in `tests/c/common.h`).
//!
//! Three rseq modes are exercised: `glibc` (default: glibc registered rseq), `own`
//! (`GLIBC_TUNABLES=glibc.pthread.rseq=0`: the allocator registers its own area) and `fallback`
//! (`RSEQMALLOC_OPTIONS=rseq=off`: locked per-CPU slabs); programs print the mode they ran in
//! and the harness checks it.

// Each test file uses its own subset of the helpers.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn c_dir() -> PathBuf {
    manifest_dir().join("tests/c")
}

pub fn include_dir() -> PathBuf {
    manifest_dir().join("include")
}

// ---------------------------------------------------------------------------------------------
// Finding or building librseqmalloc.so

pub struct Libs {
    pub checked: PathBuf,
    pub release: PathBuf,
}

pub fn libs() -> &'static Libs {
    static LIBS: OnceLock<Libs> = OnceLock::new();
    LIBS.get_or_init(|| {
        if let Some(so) = std::env::var_os("RSEQMALLOC_SO") {
            let so = PathBuf::from(so);
            assert!(so.is_file(), "RSEQMALLOC_SO={} is not a file", so.display());
            let so = so.canonicalize().unwrap();
            eprintln!("using RSEQMALLOC_SO={}", so.display());
            return Libs {
                checked: so.clone(),
                release: so,
            };
        }
        let target = profile_dir().join("shim-so");
        Libs {
            checked: build_so(&target, &["--profile", "test"], "debug"),
            release: build_so(&target, &["--release"], "release"),
        }
    })
}

/// `<target>/<profile>`: the test binary is `<target>/<profile>/deps/<name>-<hash>`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary is in <target>/<profile>/deps")
        .to_path_buf()
}

pub fn build_so(target: &Path, profile: &[&str], dir: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let start = Instant::now();
    let out = Command::new(&cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(manifest_dir().join("Cargo.toml"))
        .args(["-p", "rseqmalloc-shim", "--lib"])
        .args(profile)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .output()
        .expect("running cargo");
    assert!(
        out.status.success(),
        "building librseqmalloc.so ({}) failed:\n{}",
        profile.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let so = target.join(dir).join("librseqmalloc.so");
    assert!(so.is_file(), "cargo built no {}", so.display());
    eprintln!(
        "librseqmalloc.so ({}): {} ({:.1} s)",
        profile.join(" "),
        so.display(),
        start.elapsed().as_secs_f64()
    );
    so
}

// ---------------------------------------------------------------------------------------------
// Temporary directories, tools, compiling, running

/// A fresh directory, removed on drop unless the test is failing.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "rseqmalloc-shim-{}-{}-{}-{}",
            name,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            nanos
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// The path of `tool` in PATH; fails naming the Debian package that provides it.
pub fn require(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{tool}` is not installed (not in PATH): install the apt package `{package}`");
}

pub fn show(out: &Output) -> String {
    fn tail(b: &[u8]) -> String {
        let s = String::from_utf8_lossy(b);
        if s.len() > 6000 {
            format!("...{}", &s[s.len() - 6000..])
        } else {
            s.into_owned()
        }
    }
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        tail(&out.stdout),
        tail(&out.stderr)
    )
}

/// Compiles C (`.c`) or C++ (`.cc`, as C++20) sources from `tests/c` into `out`.
pub fn compile(srcs: &[&str], out: &Path, extra: &[&OsStr]) {
    compile_in(&c_dir(), srcs, out, extra)
}

/// Compiles C (`.c`) or C++ (`.cc`, as C++20) sources from `src_dir` into `out`; `tests/c`
/// (for `common.h`) and `include/` are on the include path.
pub fn compile_in(src_dir: &Path, srcs: &[&str], out: &Path, extra: &[&OsStr]) {
    let cxx = srcs.iter().any(|s| s.ends_with(".cc"));
    let compiler = if cxx {
        require("c++", "g++")
    } else {
        require("cc", "gcc")
    };
    let mut cmd = Command::new(compiler);
    cmd.args(["-O2", "-pthread", "-g", "-Wall", "-Wextra"]);
    if cxx {
        cmd.arg("-std=c++20");
    }
    cmd.arg("-I").arg(src_dir).arg("-I").arg(c_dir());
    cmd.arg("-I").arg(include_dir());
    cmd.arg("-o").arg(out);
    for s in srcs {
        cmd.arg(src_dir.join(s));
    }
    cmd.args(extra);
    cmd.arg("-ldl");
    let o = cmd
        .env_remove("LD_PRELOAD")
        .output()
        .expect("running the compiler");
    assert!(
        o.status.success(),
        "compiling {srcs:?} failed:\n{}",
        show(&o)
    );
    let warnings = String::from_utf8_lossy(&o.stderr);
    assert!(
        !warnings.contains("warning:"),
        "compiling {srcs:?} warned:\n{warnings}"
    );
}

/// How the allocator should run: which rseq mode, selected through the environment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Glibc,
    Own,
    Fallback,
}

pub const MODES: [Mode; 3] = [Mode::Glibc, Mode::Own, Mode::Fallback];

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Glibc => "glibc",
            Mode::Own => "own",
            Mode::Fallback => "fallback",
        }
    }
    pub fn apply(self, cmd: &mut Command) {
        self.apply_with(cmd, "");
    }
    /// [`Mode::apply`] with `options` (comma-separated, may be empty) in `RSEQMALLOC_OPTIONS`
    /// after the mode's own, and after those any options in the test run's own
    /// `RSEQMALLOC_TEST_EXTRA_OPTIONS` (to run a whole suite with a setting other than the
    /// default, such as `owned_spans=off`; README, "Tests").
    pub fn apply_with(self, cmd: &mut Command, options: &str) {
        if self == Mode::Own {
            cmd.env("GLIBC_TUNABLES", "glibc.pthread.rseq=0");
        }
        let rseq = if self == Mode::Fallback {
            "rseq=off"
        } else {
            ""
        };
        let extra = std::env::var("RSEQMALLOC_TEST_EXTRA_OPTIONS").unwrap_or_default();
        let all = [rseq, options, extra.as_str()]
            .into_iter()
            .filter(|o| !o.is_empty())
            .collect::<Vec<_>>()
            .join(",");
        if !all.is_empty() {
            cmd.env("RSEQMALLOC_OPTIONS", all);
        }
    }
}

/// Whether this test run leaves owned spans on (the default; `owned_spans=off` in
/// `RSEQMALLOC_TEST_EXTRA_OPTIONS`, which [`Mode::apply_with`] adds to every mode, turns them
/// off): the few tests whose expectations the option changes (the options line, small
/// overflows) ask it.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all ask"
)]
pub fn owned_spans_on() -> bool {
    !std::env::var("RSEQMALLOC_TEST_EXTRA_OPTIONS")
        .is_ok_and(|o| o.split(',').any(|kv| kv.trim() == "owned_spans=off"))
}

/// The checked build in the three modes, and the release build (as users get it) in the
/// default mode.
pub fn checked_modes_and_release(libs: &Libs) -> [(&Path, Mode); 4] {
    [
        (&libs.checked, Mode::Glibc),
        (&libs.checked, Mode::Own),
        (&libs.checked, Mode::Fallback),
        (&libs.release, Mode::Glibc),
    ]
}

/// A command for `program`, killed after `secs`, with the allocator-related environment
/// cleared and `LD_PRELOAD=so` if given.
pub fn command(program: impl AsRef<OsStr>, so: Option<&Path>, secs: u32) -> Command {
    let mut cmd = Command::new(require("timeout", "coreutils"));
    cmd.args(["-s", "KILL", &secs.to_string()]);
    cmd.arg(require("env", "coreutils"));
    if let Some(so) = so {
        cmd.arg(format!("LD_PRELOAD={}", so.display()));
    }
    cmd.arg(program);
    cmd.env_remove("LD_PRELOAD")
        .env_remove("GLIBC_TUNABLES")
        .env_remove("RSEQMALLOC_OPTIONS")
        .env_remove("MALLOC_CHECK_")
        .env_remove("MALLOC_PERTURB_")
        .env_remove("MALLOC_ARENA_MAX")
        .stdin(Stdio::null());
    cmd
}

pub fn run(cmd: &mut Command, what: &str) -> Output {
    let start = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    eprintln!("{what}: {:.2} s", start.elapsed().as_secs_f64());
    out
}

pub fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = run(cmd, what);
    assert!(out.status.success(), "{what} failed:\n{}", show(&out));
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// Runs a compiled test program under `so` in `mode`; it must succeed with nothing on stderr.
pub fn run_test_program(bin: &Path, args: &[&str], so: &Path, mode: Mode, what: &str) -> String {
    let mut cmd = command(bin, Some(so), 240);
    cmd.args(args);
    mode.apply(&mut cmd);
    let out = run_ok(&mut cmd, &format!("{what} [{}]", mode.name()));
    assert!(
        out.stderr.is_empty(),
        "{what} [{}] wrote to stderr:\n{}",
        mode.name(),
        show(&out)
    );
    stdout(&out)
}

pub fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or("")
}
