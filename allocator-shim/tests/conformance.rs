//! Issue 11's conformance suite: C and C++ programs in `tests/conformance/` run as children
//! under `librseqmalloc.so` (see `support/mod.rs` for how the library is built and programs
//! run), each in the three rseq modes, plus a randomized API test with a shadow model.
//!
//! Each `kindNN_*` test exposes one kind of fault of issue 11 (item NN) at the level of the
//! kind, not only the single trigger. Where the answer must be "as glibc", the same
//! program also runs without `LD_PRELOAD` (glibc's malloc, with `CONF_GLIBC=1` so the program
//! knows) in the same test, and the two are compared: that run also shows the test itself is
//! right on a reference allocator.
//!
//! A test whose runs can fail in several ways collects every failing run and reports them all.
//! Programs that could hang (fork) have a watchdog that names the hang and kills the process
//! group; those run their three modes at once so a hang costs its watchdog time once.

mod support;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, OnceLock};

use support::*;

fn conf_dir() -> PathBuf {
    manifest_dir().join("tests/conformance")
}

/// Where the conformance programs are compiled: `<target>/<profile>/conformance-programs/`,
/// made if missing.
fn programs_dir() -> PathBuf {
    let dir = profile_dir().join("conformance-programs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The compiled program `name` (`name.c` or `name.cc` in `tests/conformance/`), compiled once
/// per test process into [`programs_dir`].
fn program(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let dir = programs_dir();
    let src = if conf_dir().join(format!("{name}.cc")).is_file() {
        format!("{name}.cc")
    } else {
        format!("{name}.c")
    };
    let out = dir.join(name);
    compile_in(&conf_dir(), &[&src], &out, &[]);
    built.insert(name.to_string(), out.clone());
    out
}

/// How a program runs: under which library (or glibc's malloc), in which mode.
#[derive(Clone, Copy)]
enum Under<'a> {
    Ours(&'a Path, Mode),
    Glibc,
}

impl Under<'_> {
    fn name(self) -> String {
        match self {
            Under::Ours(_, m) => m.name().to_string(),
            Under::Glibc => "glibc-malloc".to_string(),
        }
    }
}

/// Runs `bin args` under `under`, killed after `secs`, with extra environment `env`.
fn run_under(bin: &Path, args: &[&str], under: Under, secs: u32, env: &[(&str, &str)]) -> Output {
    run_under_with(bin, args, under, secs, env, "")
}

/// [`run_under`] with `options` (comma-separated, may be empty) added to the mode's own in
/// `RSEQMALLOC_OPTIONS` when `under` is our library (ignored under glibc's malloc).
fn run_under_with(
    bin: &Path,
    args: &[&str],
    under: Under,
    secs: u32,
    env: &[(&str, &str)],
    options: &str,
) -> Output {
    let mut cmd = match under {
        Under::Ours(so, mode) => {
            let mut cmd = command(bin, Some(so), secs);
            mode.apply_with(&mut cmd, options);
            cmd
        }
        Under::Glibc => {
            let mut cmd = command(bin, None, secs);
            cmd.env("CONF_GLIBC", "1");
            cmd
        }
    };
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let what = format!(
        "{} {}{} [{}]",
        bin.file_name().unwrap().to_string_lossy(),
        args.join(" "),
        if options.is_empty() {
            String::new()
        } else {
            format!(" ({options})")
        },
        under.name()
    );
    run(&mut cmd, &what)
}

/// What happened to a child, in words: "exit 0", "SIGSEGV", "killed (watchdog or timeout)".
fn status_words(out: &Output) -> String {
    match (out.status.code(), out.status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(libc::SIGKILL)) => "SIGKILL (watchdog or timeout: hung)".to_string(),
        (None, Some(s)) => format!("signal {s} ({})", signal_name(s)),
        _ => format!("{}", out.status),
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGALRM => "SIGALRM",
        libc::SIGKILL => "SIGKILL",
        _ => "other",
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A run that must succeed with nothing on stderr and a last line of stdout that starts with
/// `prefix` and ends with ` mode=<mode>`; returns stdout, or the failure in one paragraph.
fn check_ok(out: &Output, what: &str, prefix: &str, mode: &str) -> Result<String, String> {
    let so = text(&out.stdout);
    let last = so.lines().last().unwrap_or("");
    if out.status.success()
        && out.stderr.is_empty()
        && last.starts_with(prefix)
        && last.ends_with(&format!(" mode={mode}"))
    {
        Ok(so)
    } else {
        Err(format!(
            "{what} [{mode}]: {}; stdout ends {:?}; stderr: {}",
            status_words(out),
            last,
            text(&out.stderr).trim_end()
        ))
    }
}

/// Panics listing every failure, if any.
fn report(test: &str, failures: Vec<String>) {
    if !failures.is_empty() {
        panic!(
            "{test}: {} failing run(s):\n- {}",
            failures.len(),
            failures.join("\n- ")
        );
    }
}

/// [`report`] of the failed runs among `results` (a group of runs each).
fn report_runs<R: IntoIterator<Item = Result<String, String>>>(test: &str, results: Vec<R>) {
    report(
        test,
        results
            .into_iter()
            .flatten()
            .filter_map(Result::err)
            .collect(),
    );
}

/// Field `key` of a program's output line (`key=value` among its words), parsed.
fn field<T: std::str::FromStr>(line: &str, key: &str) -> Option<T> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}

/// glibc's malloc, then the release build (what users get) in the three modes.
fn glibc_and_release_modes() -> [Under<'static>; 4] {
    let so = libs().release.as_path();
    [
        Under::Glibc,
        Under::Ours(so, Mode::Glibc),
        Under::Ours(so, Mode::Own),
        Under::Ours(so, Mode::Fallback),
    ]
}

/// The checked library in each mode.
fn modes() -> impl Iterator<Item = Under<'static>> {
    let so = libs().checked.as_path();
    MODES.into_iter().map(move |m| Under::Ours(so, m))
}

/// Runs `f` for the three modes at once (for programs that may hang until their watchdog).
fn in_parallel<T: Send>(f: impl Fn(Under<'static>) -> T + Sync) -> Vec<T> {
    let all: Vec<Under<'static>> = modes().collect();
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = all.iter().map(|&u| s.spawn(move || f(u))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn valgrind() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("valgrind"))
        .find(|p| p.is_file())
}

/// Runs `bin args` under memcheck with the checked library preloaded. Memcheck must leave our
/// malloc alone (`--soname-synonyms=somalloc=NONE`: by default it replaces the malloc family
/// of any preloaded allocator with its own, and our allocator would not run at all); valgrind
/// has no rseq, so the library must run in fallback. Memcheck errors make the exit status 97.
fn run_valgrind(vg: &Path, bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command(vg, Some(&libs().checked), 300);
    cmd.args([
        "-q",
        "--tool=memcheck",
        "--soname-synonyms=somalloc=NONE",
        "--error-exitcode=97",
    ]);
    cmd.arg(bin).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let what = format!(
        "valgrind {} {}",
        bin.file_name().unwrap().to_string_lossy(),
        args.join(" ")
    );
    run(&mut cmd, &what)
}

// ---------------------------------------------------------------------------------------------
// Item 1: free-tag state

#[test]
fn kind01_free_tag_state_every_path() {
    // A valid program never trips the double-free check: the alignment loop, every
    // entry point x every way back with only the first byte written, realloc chains, after
    // trim, across threads (see free_tag.c). Run once in full and once without the issue's
    // loop, so a failure of the other paths shows even while the trigger fails.
    let bin = program("free_tag");
    let mut failures = Vec::new();
    for args in [&[][..], &["skip-issue-loop"][..]] {
        // The program itself is right on glibc's malloc.
        let out = run_under(&bin, args, Under::Glibc, 60, &[]);
        if let Err(e) = check_ok(&out, "free_tag (reference)", "free_tag ok ", "glibc-malloc") {
            failures.push(e);
        }
        for u in modes() {
            let out = run_under(&bin, args, u, 60, &[]);
            if let Err(e) = check_ok(
                &out,
                &format!("free_tag {}", args.join(" ")),
                "free_tag ok ",
                &u.name(),
            ) {
                failures.push(e);
            }
        }
    }
    report("kind01_free_tag_state_every_path", failures);
}

#[test]
fn free_checks_the_noted_class_of_the_last_allocation() {
    // free() of what its thread allocated last takes the class from the thread block; a stale
    // note (the object's span carved again for another class, by another thread) must lose
    // to the page map (see last_alloc.c). The program must reach the stale case.
    let bin = program("last_alloc");
    let mut failures = Vec::new();
    for u in modes() {
        let out = run_under(&bin, &[], u, 60, &[]);
        if let Err(e) = check_ok(&out, "last_alloc", "last_alloc ok reached=1", &u.name()) {
            failures.push(e);
        }
    }
    report(
        "free_checks_the_noted_class_of_the_last_allocation",
        failures,
    );
}

#[test]
fn cxx_contract_all_20_forms_and_free_tag_through_them() {
    let bin = program("cxx_contract");
    let mut failures = Vec::new();
    let out = run_under(&bin, &[], Under::Glibc, 60, &[]);
    if let Err(e) = check_ok(
        &out,
        "cxx_contract (reference)",
        "cxx_contract ok forms=20 ",
        "glibc-malloc",
    ) {
        failures.push(e);
    }
    for u in modes().chain([Under::Ours(&libs().release, Mode::Glibc)]) {
        let out = run_under(&bin, &[], u, 60, &[]);
        if let Err(e) = check_ok(&out, "cxx_contract", "cxx_contract ok forms=20 ", &u.name()) {
            failures.push(e);
        }
    }
    report(
        "cxx_contract_all_20_forms_and_free_tag_through_them",
        failures,
    );
}

// ---------------------------------------------------------------------------------------------
// Item 4: an object that is not live never passes free's check

/// Runs `bad_free <case> <size>`: it must die by SIGABRT with exactly one line on stderr that
/// names `who` and the pointer the program announced.
fn expect_bad_free_abort(
    case: &str,
    size: usize,
    who: &[&str],
    u: Under,
) -> Result<String, String> {
    expect_bad_free_abort_with(case, size, who, u, "")
}

/// [`expect_bad_free_abort`] with `options` added to the mode's `RSEQMALLOC_OPTIONS`; returns
/// the program's stdout.
fn expect_bad_free_abort_with(
    case: &str,
    size: usize,
    who: &[&str],
    u: Under,
    options: &str,
) -> Result<String, String> {
    let bin = program("bad_free");
    let size_s = size.to_string();
    let out = run_under_with(&bin, &[case, &size_s], u, 30, &[], options);
    let so = text(&out.stdout);
    let err = text(&out.stderr);
    let what = format!("bad_free {case} {size} ({options}) [{}]", u.name());
    let ptr = so
        .lines()
        .find_map(|l| l.strip_prefix("pointer "))
        .ok_or_else(|| {
            format!(
                "{what}: {}; no pointer announced; stdout {so:?}, stderr {err:?}",
                status_words(&out)
            )
        })?;
    if !so.contains(&format!("mode {}\n", u.name())) {
        return Err(format!(
            "{what}: not run in mode {}; stdout {so:?}",
            u.name()
        ));
    }
    let line_ok = err.lines().count() == 1
        && err.ends_with('\n')
        && who.iter().any(|w| {
            err == format!("{w}(): invalid pointer {ptr}\n")
                || err == format!("{w}(): double free detected {ptr}\n")
        });
    if out.status.signal() == Some(libc::SIGABRT) && line_ok {
        Ok(so)
    } else {
        Err(format!(
            "{what}: {} (expected SIGABRT and one line naming {} and {ptr}); stdout {:?}; stderr {:?}",
            status_words(&out),
            who.join("/"),
            so.lines().filter(|l| !l.starts_with("pointer ")).collect::<Vec<_>>().join(" | "),
            err.trim_end()
        ))
    }
}

#[test]
fn kind04_never_handed_out_object_aborts() {
    // free(p + 2 * stride) of a carved but never handed out object, fresh, after a trim,
    // after refills and overflows (the issue: 208 and 3000 bytes).
    let mut failures = Vec::new();
    for u in modes() {
        for case in ["unborn_fresh", "unborn_after_trim", "unborn_after_churn"] {
            for size in [16, 64, 208, 1000, 3000, 20000] {
                if let Err(e) = expect_bad_free_abort(case, size, &["free"], u) {
                    failures.push(e);
                }
            }
        }
    }
    report("kind04_never_handed_out_object_aborts", failures);
}

#[test]
fn kind04_double_free_after_drain_or_overflow_aborts() {
    // A freed object freed again after it went from the cache towards its span: malloc_trim
    // in between (span kept by a neighbour, or alone), or the caches overflowing.
    let mut failures = Vec::new();
    for u in modes() {
        for case in [
            "double_after_trim",
            "double_after_trim_alone",
            "double_after_overflow",
        ] {
            for size in [16, 208, 3000, 20000] {
                if let Err(e) = expect_bad_free_abort(case, size, &["free"], u) {
                    failures.push(e);
                }
            }
        }
    }
    report(
        "kind04_double_free_after_drain_or_overflow_aborts",
        failures,
    );
}

#[test]
fn kind04_double_free_of_an_object_sent_home_aborts() {
    // Owner return: a free on another CPU's slab puts the object in that thread's outbox,
    // bound for its home slab, and a flush moves it into the home's inbox. A second free of it
    // from either place must abort like any double free (sizes up to 1 KiB are sent home;
    // 3000 bytes is not, and must abort all the same). The object goes into the outbox by
    // `free`'s short path, or (`first`) as the thread's first foreign free by the long one.
    // With `membarrier=off` the slabs are the CPUs, so the two pinned threads' slabs differ
    // for certain and the inbox cases check that owner return took the objects; by default
    // (`mm_cid`) the kernel may swap the threads' ids (seen on 6.18), and the object may stay
    // where it is freed. Before session 24 the thread's free of the object was its first call,
    // which takes the slow path and keeps the object there: nothing was ever sent home. Where
    // the inbox cases' check is certain (rseq modes, `membarrier=off`, CPUs 0 and 1 usable,
    // sizes up to 1 KiB), the program must say it made it.
    let mut failures = Vec::new();
    for u in modes() {
        for options in ["", "membarrier=off"] {
            for case in [
                "double_sent_home",
                "double_in_home_inbox",
                "double_first_sent_home",
                "double_first_in_home_inbox",
            ] {
                for size in [16, 208, 1000, 3000] {
                    let checked = case.ends_with("in_home_inbox")
                        && size <= 1024
                        && two_slabs_for_certain(&u.name(), options);
                    match expect_bad_free_abort_with(case, size, &["free"], u, options) {
                        Err(e) => failures.push(e),
                        Ok(so) if checked && !so.contains("premise checked\n") => {
                            failures.push(format!(
                            "bad_free {case} {size} ({options}) [{}]: premise not checked: {so:?}",
                            u.name()
                        ))
                        }
                        Ok(_) => {}
                    }
                }
            }
        }
    }
    report("kind04_double_free_of_an_object_sent_home_aborts", failures);
}

#[test]
fn kind04_realloc_of_object_not_live_aborts() {
    // realloc takes the object back too: of a never handed out object, and of a freed one,
    // to a size of the same class (where realloc could answer "in place"), and inside a live
    // object.
    let mut failures = Vec::new();
    for u in modes() {
        for case in ["realloc_unborn", "realloc_freed", "realloc_interior"] {
            for size in [16, 208, 3000, 20000] {
                if let Err(e) = expect_bad_free_abort(case, size, &["realloc"], u) {
                    failures.push(e);
                }
            }
        }
    }
    report("kind04_realloc_of_object_not_live_aborts", failures);
}

// ---------------------------------------------------------------------------------------------
// Item 5: thread set-up re-entrancy

#[test]
fn kind05_thread_setup_reentrant_with_keys_made_in_a_constructor() {
    let bin = program("ctor_keys");
    let mut failures = Vec::new();
    for keys in ["31", "32", "40", "200"] {
        for args in [&[][..], &["thread-first"][..]] {
            for u in modes() {
                let out = run_under(&bin, args, u, 60, &[("CONF_KEYS", keys)]);
                let what = format!("CONF_KEYS={keys} ctor_keys {}", args.join(" "));
                if let Err(e) = check_ok(&out, &what, "ctor_keys ok keys=", &u.name()) {
                    failures.push(e);
                }
            }
        }
    }
    report(
        "kind05_thread_setup_reentrant_with_keys_made_in_a_constructor",
        failures,
    );
}

#[test]
fn kind05_10_a_refused_first_allocation_sets_the_thread_up_without_a_hang() {
    // A refused request's own trim sets the thread up, whose set-up allocates and is refused
    // too; the hang needed own mode without the membarrier, so every mode runs both ways.
    // The small request is served from its class's free objects: it must leave errno as set-up
    // found it.
    let bin = program("refused_in_setup");
    let mut failures = Vec::new();
    for size in ["big", "small"] {
        for options in ["", "membarrier=off"] {
            for u in modes() {
                let out = run_under_with(&bin, &[size], u, 60, &[], options);
                let what = format!("refused_in_setup {size} ({options})");
                let want = format!("refused_in_setup {size} ok ");
                if let Err(e) = check_ok(&out, &what, &want, &u.name()) {
                    failures.push(e);
                }
            }
        }
    }
    report(
        "kind05_10_a_refused_first_allocation_sets_the_thread_up_without_a_hang",
        failures,
    );
}

#[test]
fn kind05_keys_made_in_a_constructor_under_seccomp_and_valgrind() {
    // The environments where the allocator runs without rseq whatever the mode asks.
    let bin = program("ctor_keys");
    let wrapper = program("seccomp_run");
    let mut failures = Vec::new();
    for errno in ["EPERM", "ENOSYS"] {
        for u in modes() {
            let args = [errno, bin.to_str().unwrap()];
            let out = run_under(&wrapper, &args, u, 60, &[("CONF_KEYS", "40")]);
            let what = format!("seccomp_run {errno} ctor_keys ({})", u.name());
            if let Err(e) = check_ok(&out, &what, "ctor_keys ok keys=40 ", "fallback") {
                failures.push(e);
            }
        }
    }
    match valgrind() {
        None => eprintln!("valgrind is not installed: skipping the valgrind part"),
        Some(vg) => {
            let out = run_valgrind(&vg, &bin, &[], &[("CONF_KEYS", "40")]);
            if let Err(e) = check_ok(
                &out,
                "valgrind ctor_keys",
                "ctor_keys ok keys=40 ",
                "fallback",
            ) {
                failures.push(e);
            }
        }
    }
    report(
        "kind05_keys_made_in_a_constructor_under_seccomp_and_valgrind",
        failures,
    );
}

#[test]
fn kind01_stale_tag_copied_by_realloc_to_its_own_address() {
    // A large block handed out over pages that held free 2 KiB objects keeps an old free tag
    // at offset 8; realloc copies it along, and a move back to a small block at that very
    // address made the block look freed: a valid program aborted with "double free detected"
    // (found by the session 10 review). Large blocks are now handed out with that word
    // cleared. The program prints `reached=1` when it got the small block at the old address
    // (the case that aborted), `reached=0` when the layout did not give it.
    parallel_ok(
        "kind01_stale_tag_copied_by_realloc_to_its_own_address",
        "stale_tag",
        "stale_tag ok reached=",
        &[""],
        |_| Vec::new(),
    );
}

#[test]
fn kind01_02_objects_sent_home_across_cpus_and_forks() {
    // Owner return: a consumer on CPU 1 frees what a producer on CPU 0 allocated, so the
    // objects go to the producer's slab through the consumer's outbox and the producer's
    // inbox, while the main thread forks. Every object must arrive intact (no block handed
    // out twice while live), every child must allocate and free (no inbox lock left held),
    // and with rseq on two CPUs objects must have been sent home (`stats.sent_home`).
    parallel_ok(
        "kind01_02_objects_sent_home_across_cpus_and_forks",
        "owner_return",
        "owner_return ok objects=",
        &[""],
        |_| Vec::new(),
    );
}

#[test]
fn owner_return_keeps_objects_of_the_class_the_thread_allocates() {
    // Owner return's policy: a consumer that allocates an object of the class it is about to
    // free (a node and its replacement) keeps the other slab's object where it runs, so the
    // thread gets it back at once; one that allocates another class sends the objects home.
    // Before session 23 every such free went home (the phase that allocates their class sent
    // 96,672-100,000 of its 100,000 objects in the rseq modes). Every object must arrive intact
    // in every mode. Since session 34 a third phase frees, at once, blocks the thread just
    // allocated from a cache topped with the other slab's objects: kept, the same block each
    // time. A build that sent them home failed it (0 of 9,999) wherever its premise is
    // certain, which the program must say it checked (slabs by CPU: `membarrier=off`). Since
    // session 35 that phase also checks that the objects freed after the consumer's first
    // allocation of their class (a refill) are kept: before, only the pop wrote the allocation
    // note, so all went home (1,000 of 1,000), and the phase failed 1-2 % of runs under load.
    let test = "owner_return_keeps_objects_of_the_class_the_thread_allocates";
    let (name, prefix) = ("owner_return_keep", "owner_return_keep ok objects=");
    per_mode_and_options(
        test,
        (name, prefix),
        " temporary_premise=1 ",
        two_slabs_for_certain,
    );
    // With owner return off, nothing goes home in any phase, in every mode.
    let bin = program(name);
    let results = in_parallel(|u| {
        let out = run_under_with(&bin, &[], u, 90, &[], "owner_return=off");
        check_ok(&out, &format!("{name} owner_return=off"), prefix, &u.name())
    });
    report(test, results.into_iter().filter_map(Result::err).collect());
}

#[test]
fn free_keeps_errno_when_sending_home_fails_for_want_of_memory() {
    // Owner return: a consumer's frees of another slab's objects find no outbox and, the
    // address space exhausted under RLIMIT_AS, no memory for one (a failing mmap, which sets
    // errno); each free must still leave errno as the program set it. Failed on 1879f19,
    // whose foreign-free path kept no errno (found in session 12's review). With
    // `membarrier=off` the two pinned threads' slabs differ for certain, and in the rseq modes
    // the program must have checked that every free went that way
    // (`stats.sent_home_no_outbox`); before session 25 nothing checked it, and the consumer's
    // first free, its set-up, never did.
    per_mode_and_options(
        "free_keeps_errno_when_sending_home_fails_for_want_of_memory",
        ("owner_return_errno", "owner_return_errno ok frees="),
        " no_outbox=200 checked=1 ",
        two_slabs_for_certain,
    );
}

#[test]
fn the_background_thread_leaves_one_thread_alone_and_ends_with_the_last() {
    // `background_thread=on`: a program with one thread keeps one (the kernel refused
    // `unshare(CLONE_NEWUSER)` to every program when the thread started in the library's
    // constructor), one with two gets ours, and so does a fork child once it has two of its
    // own; a process whose main thread ended with `pthread_exit` ends, status 0 and stdio
    // flushed, once its last worker ends (it never did). Session 71's breaker found both; the
    // `single` and `mainexit` cases fail on the code before session 72's fix, `mainexit` by
    // the 20 s timeout. Its review found the `large` case (a thread allocating only large
    // blocks started nothing) and the `defattr` one (a hang, when ours was started with the
    // process's default attributes), and a breaker run the `mainexit_sandboxed` one (a hang:
    // /proc could not be read) and the `mainexit_atexit` one (the program's exit handlers ran
    // on our thread with every signal blocked). glibc's malloc runs the same cases.
    let failures = cases_under_glibc_and_modes_with(
        ("background_lazy", "background_lazy ok"),
        &[
            &["single"],
            &["threads"],
            &["large"],
            &["defattr"],
            &["mainexit", "4"],
            &["mainexit", "1"],
            &["mainexit_sandboxed", "3"],
            &["mainexit_atexit", "2"],
            &["mainexit_lastmask"],
        ],
        "background_thread=on,decay_ms=10",
        20,
    );
    report(
        "the_background_thread_leaves_one_thread_alone_and_ends_with_the_last",
        failures,
    );
}

#[test]
fn the_background_thread_takes_none_of_the_programs_signals() {
    // `background_thread=on` starts a thread of ours once the program has a second thread (the
    // program starts one, which allocates, and joins it). Ours must block every signal: a
    // signal the program blocked to read it from a signalfd killed the process, and
    // PostgreSQL's postmaster hung with its handler run on our thread (session 71's breaker;
    // the program below failed in every mode before the fix). Under glibc's malloc the
    // program has no such thread and passes too.
    let bin = program("background_signals");
    let failures = std::iter::once(Under::Glibc)
        .chain(modes())
        .filter_map(|u| {
            let out = run_under_with(&bin, &[], u, 60, &[], "background_thread=on,decay_ms=10");
            let so = match check_ok(
                &out,
                "background_signals",
                "background_signals ok ",
                &u.name(),
            ) {
                Ok(so) => so,
                Err(e) => return Some(e),
            };
            let others: Option<u32> = field(so.lines().last().unwrap_or(""), "others");
            let want = if matches!(u, Under::Glibc) { 0 } else { 1 };
            (others != Some(want)).then(|| {
                format!(
                    "background_signals [{}]: {others:?} other threads, not {want}",
                    u.name()
                )
            })
        })
        .collect();
    report(
        "the_background_thread_takes_none_of_the_programs_signals",
        failures,
    );
}

#[test]
fn successful_calls_keep_errno_under_contended_locks() {
    // Eight threads (more than CPUs) allocate, reallocate, free each other's blocks and trim
    // with errno set to a value of their own: a contended lock's futex wait returning EAGAIN
    // or EINTR must not show. Session 70's second review found it did in fallback mode. A
    // build whose `os::futex_wait` does not keep errno fails here in one run in five (the
    // program says why); `os::linux::tests::system_calls_keep_errno` catches it every time.
    per_mode_and_options(
        "successful_calls_keep_errno_under_contended_locks",
        ("errno_contended", "errno_contended ok calls="),
        "",
        |_, _| false,
    );
}

#[test]
fn nothing_freed_stays_in_use_when_a_thread_exit_cannot_be_armed() {
    // What each mode keeps per thread (own mode's registration, owner return's outbox, the
    // fallback's magazine) only the thread-exit destructor gives back, and
    // `pthread_setspecific`, which arms it, can fail (ENOMEM for a key past the first 32). A
    // worker whose arm is refused frees another thread's blocks and its own; once it ended,
    // `stats.allocated` must be where it was. Failed on 1b3b873 (found in session 25's
    // review): with `membarrier=off`, 32,768 bytes (the outbox's objects, glibc and own modes)
    // and 64 (the magazine's, fallback) stayed in use for good.
    per_mode_and_options(
        "nothing_freed_stays_in_use_when_a_thread_exit_cannot_be_armed",
        ("exit_key_refused", "exit_key_refused ok objects="),
        " premise=1 ",
        |mode, options| matches!(mode, "own" | "fallback") || two_slabs_for_certain(mode, options),
    );
}

/// Runs the program `name` (no arguments) in the three modes, with no extra option and with
/// `membarrier=off` (slabs by CPU: two pinned threads' slabs then differ for certain); each run
/// must end with a line starting with `prefix`, and that line must contain `premise` wherever
/// `premise_holds(mode, options)` — where the program's premise is certain and it must say it
/// checked it.
fn per_mode_and_options(
    test: &str,
    (name, prefix): (&str, &str),
    premise: &str,
    premise_holds: impl Fn(&str, &str) -> bool + Sync,
) {
    let bin = program(name);
    let results = in_parallel(|u| {
        ["", "membarrier=off"].map(|options| {
            let what = format!("{name} [{options}]");
            let out = run_under_with(&bin, &[], u, 90, &[], options);
            let so = check_ok(&out, &what, prefix, &u.name())?;
            let said = so.lines().last().unwrap_or("").contains(premise);
            if premise_holds(&u.name(), options) && !said {
                return Err(format!("{what} [{}]: premise not checked: {so}", u.name()));
            }
            Ok(so)
        })
    });
    report_runs(test, results);
}

/// True when two pinned threads' rseq slabs differ for certain in `mode` with `options`: an
/// rseq mode (glibc or own), slabs by CPU (`membarrier=off`; with `mm_cid` the kernel may swap
/// two threads' ids), and CPUs 0 and 1 both in this process's affinity mask (which the
/// programs inherit), where they pin their two threads.
fn two_slabs_for_certain(mode: &str, options: &str) -> bool {
    static PINNABLE: OnceLock<bool> = OnceLock::new();
    let pinnable = *PINNABLE.get_or_init(|| {
        // SAFETY: a zeroed `cpu_set_t` is an empty set; `sched_getaffinity` writes at most its
        // size, and `CPU_ISSET` reads the set it filled.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0
                && libc::CPU_ISSET(0, &set)
                && libc::CPU_ISSET(1, &set)
        }
    });
    pinnable && options == "membarrier=off" && matches!(mode, "glibc" | "own")
}

// ---------------------------------------------------------------------------------------------
// Items 2 and 3: fork

/// Runs `name args_for(mode)` in the three modes at once, once with each of `options` (the
/// modes' own options with these added; "" for none); each run must print a last line
/// starting with `prefix`.
fn parallel_ok(
    test: &str,
    name: &str,
    prefix: &str,
    options: &[&str],
    args_for: impl Fn(Under) -> Vec<String> + Sync,
) {
    let bin = program(name);
    let results = in_parallel(|u| {
        let args = args_for(u);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        options
            .iter()
            .map(|o| {
                let out = run_under_with(&bin, &args, u, 90, &[], o);
                check_ok(&out, &format!("{name} [{o}]"), prefix, &u.name())
            })
            .collect::<Vec<_>>()
    });
    report_runs(test, results);
}

#[test]
fn kind02_fork_against_stdio_locks() {
    // 4 forking threads, 8 getline threads on a 50,000-character line, 1 fflush(NULL)
    // thread, 3 s; the program's watchdog (45 s: generous for a loaded machine) turns a
    // deadlock into a failure. Also with `background_thread=on`, whose thread takes
    // allocator locks of its own while the program forks.
    let dir = TempDir::new("fork_stdio");
    parallel_ok(
        "kind02_fork_against_stdio_locks",
        "fork_stdio",
        "fork_stdio ok forks=",
        &["", "background_thread=on,decay_ms=10"],
        |u| {
            vec![dir
                .join(&format!("line-{}.txt", u.name()))
                .display()
                .to_string()]
        },
    );
}

#[test]
fn kind03_fork_from_a_signal_handler_interrupting_malloc() {
    // Single-threaded; SIGPROF every 200 us of CPU forks from whatever allocator call it
    // interrupted, 300 times; watchdog 60 s (glibc's malloc: about 1 s on a quiet machine,
    // 10 s with the machine loaded 20 times over, so the deadline is generous). Also with
    // `background_thread=on`: with our thread started in the library's constructor the
    // program was no longer single-threaded, the fork handlers took the locks the interrupted
    // call held, and it hung in every mode (session 71's breaker; session 72's fix starts the
    // thread only once the program has a second thread).
    parallel_ok(
        "kind03_fork_from_a_signal_handler_interrupting_malloc",
        "fork_signal",
        "fork_signal ok forks=",
        &["", "background_thread=on,decay_ms=10"],
        |_| vec!["300".into()],
    );
}

#[test]
fn kind02_03_fork_from_threads_children_with_threads_and_spawn() {
    // 3 threads fork 10 times each while others allocate, trim, start threads and
    // posix_spawn; children use threads, trim and fork grandchildren (see fork_more.c). Also
    // with `background_thread=on`: our thread runs in the parent while it forks, and each
    // child with threads starts its own (session 72).
    parallel_ok(
        "kind02_03_fork_from_threads_children_with_threads_and_spawn",
        "fork_more",
        "fork_more ok forks=30 ",
        &["", "background_thread=on,decay_ms=10"],
        |_| vec!["10".into()],
    );
}

// ---------------------------------------------------------------------------------------------
// Item 8: impossible sizes answer as glibc

/// The transcript lines of `out` (all but the final "done" line), or the failure.
fn transcript(out: &Output, what: &str, done: &str, mode: &str) -> Result<Vec<String>, String> {
    let so = check_ok(out, what, done, mode)?;
    let mut lines: Vec<String> = so.lines().map(String::from).collect();
    lines.pop();
    Ok(lines)
}

/// Compares `ours` with glibc's transcript line by line; `compared` selects the lines that
/// must match (others are printed when they differ).
fn compare_transcripts(
    what: &str,
    glibc: &[String],
    ours: &[String],
    compared: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let g: Vec<&String> = glibc.iter().filter(|l| compared(l)).collect();
    let o: Vec<&String> = ours.iter().filter(|l| compared(l)).collect();
    for (a, b) in glibc
        .iter()
        .zip(ours)
        .filter(|(a, b)| a != b && !compared(a))
    {
        eprintln!("{what}: informational difference: glibc {a:?}, ours {b:?}");
    }
    if g.len() != o.len() {
        return Err(format!(
            "{what}: {} lines, glibc's malloc {}",
            o.len(),
            g.len()
        ));
    }
    let diffs: Vec<String> = g
        .iter()
        .zip(&o)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("glibc {a:?} / ours {b:?}"))
        .collect();
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {} of {} answers differ from glibc's, the first {}: {}",
            diffs.len(),
            g.len(),
            diffs.len().min(6),
            diffs[..diffs.len().min(6)].join("; ")
        ))
    }
}

/// Runs `name args` on glibc's malloc, then under each of `unders`; every transcript must
/// match glibc's in the lines `compared` selects. Returns the failures.
fn compare_with_glibc<'a>(
    name: &str,
    args: &[&str],
    done: &str,
    unders: impl Iterator<Item = Under<'a>>,
    compared: fn(&str) -> bool,
) -> Vec<String> {
    let bin = program(name);
    let what = format!("{name} {}", args.join(" "));
    let out = run_under(&bin, args, Under::Glibc, 60, &[]);
    let glibc = match transcript(&out, &what, done, "glibc-malloc") {
        Ok(t) => t,
        Err(e) => return vec![format!("the reference run failed: {e}")],
    };
    let mut failures = Vec::new();
    for u in unders {
        let out = run_under(&bin, args, u, 60, &[]);
        let r = transcript(&out, &what, done, &u.name()).and_then(|t| {
            compare_transcripts(&format!("{what} [{}]", u.name()), &glibc, &t, compared)
        });
        if let Err(e) = r {
            failures.push(e);
        }
    }
    failures
}

#[test]
fn kind08_impossible_sizes_answer_as_glibc() {
    let mut failures = Vec::new();
    for args in [&[][..], &["rlimit-as"][..]] {
        failures.extend(compare_with_glibc(
            "huge_sizes",
            args,
            "huge_sizes done",
            modes(),
            |_| true,
        ));
    }
    report("kind08_impossible_sizes_answer_as_glibc", failures);
}

// ---------------------------------------------------------------------------------------------
// Item 9: amortized growth

#[test]
fn kind09_realloc_growth_moves_are_logarithmic() {
    // Moves counted, not time: huge 16 -> 128 MiB and large 256 KiB -> 16 MiB in 4 KiB steps
    // at most 64 moves; small 16 B -> 256 KiB in 16 B steps at most 40 (one per size class was
    // 79; one class of headroom 48; a quarter of headroom 34); steps 8 B -> 64 KiB in 8 B
    // steps at most 32 moves and 4 bytes copied per byte reached (issue 12: one move per size
    // class, 79, copied 11.5x; one class of headroom 40 moves, 6.0x; a quarter of headroom
    // 29, 3.4x; mimalloc and snmalloc 5.5x, tcmalloc 3.2x); shrink 64 KiB -> 16 B in 16 B
    // steps at most 16 moves (once per halving, 11, kept in place down to half as tcmalloc
    // and mimalloc; kept only down to the class below, 39), and never more than 2x what was
    // asked held (`slack`, percent); large-shrink 300 KiB -> 4 KiB in 4 KiB steps the same.
    let bin = program("growth");
    // (run, field, the most it may read): every absolute bound of the runs' lines.
    let at_most = [
        ("huge", "moves", 64u64),
        ("large", "moves", 64),
        ("small", "moves", 40),
        ("steps", "moves", 32),
        ("shrink", "moves", 16),
        ("large-shrink", "moves", 16),
        ("shrink", "slack", 200),
        ("large-shrink", "slack", 200),
        // Whole pages shrunk from 300 KiB stay in place down to half, past the largest size
        // class too: about half the block copied per halving, under 300 KiB in all (290,816
        // B; 495,616 B when a shrink into the size classes always moved).
        ("large-shrink", "copied", 300 << 10),
    ];
    let copied_per_byte = [("steps", 4u64)];
    let mut failures = Vec::new();
    let reference = run_under(&bin, &[], Under::Glibc, 60, &[]);
    eprintln!(
        "growth on glibc's malloc: {}",
        text(&reference.stdout).trim_end()
    );
    for u in modes() {
        let out = run_under(&bin, &[], u, 60, &[]);
        let so = match check_ok(&out, "growth", "growth done", &u.name()) {
            Ok(s) => s,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        // A run's line, and one of its fields (u64::MAX when missing, which fails any bound).
        let line = |run: &str| {
            so.lines()
                .find(|l| l.starts_with(&format!("{run}: ")))
                .unwrap_or("")
        };
        let field = |line: &str, key: &str| -> u64 { field(line, key).unwrap_or(u64::MAX) };
        for (run, key, bound) in at_most {
            let line = line(run);
            if field(line, key) > bound {
                failures.push(format!(
                    "growth [{}]: {line} (at most {key}={bound}; a run stops at 2000 moves)",
                    u.name()
                ));
            }
        }
        for (run, per_byte) in copied_per_byte {
            let line = line(run);
            let (copied, reached) = (field(line, "copied"), field(line, "reached"));
            if copied == u64::MAX || reached == u64::MAX || copied > per_byte * reached {
                failures.push(format!(
                    "growth [{}]: {line} (at most {per_byte} bytes copied per byte reached)",
                    u.name()
                ));
            }
        }
    }
    report("kind09_realloc_growth_moves_are_logarithmic", failures);
}

// ---------------------------------------------------------------------------------------------
// Item 10: exhaustion and recovery under limits

/// Runs conformance program `name` with argument `which` under glibc's malloc (the reference,
/// which must pass too) and in the three modes; every run must print "`name` `which` ok ".
fn rlimit_test(name: &str, which: &str) {
    let bin = program(name);
    let mut failures = Vec::new();
    let out = run_under(&bin, &[which], Under::Glibc, 60, &[]);
    match check_ok(
        &out,
        &format!("{name} (reference)"),
        &format!("{name} {which} ok "),
        "glibc-malloc",
    ) {
        Ok(s) => eprintln!("glibc's malloc: {}", s.trim_end()),
        Err(e) => failures.push(e),
    }
    for u in modes() {
        let out = run_under(&bin, &[which], u, 60, &[]);
        match check_ok(&out, name, &format!("{name} {which} ok "), &u.name()) {
            Ok(s) => eprintln!("{}", s.trim_end()),
            Err(e) => failures.push(e),
        }
    }
    report(&format!("{name} {which}"), failures);
}

#[test]
fn buffers_grown_past_the_heap_give_back_the_spans_they_leave() {
    // Four buffers grown by realloc 100 bytes at a time to 40 MiB, into huge mappings of their
    // own: the resident set may peak at 1.6 times the live bytes (plus 16 MiB). Before the fix
    // (session 73's breaker) the large spans they left behind stayed resident for decay_ms:
    // 2.2x in every mode (glibc's malloc 1.0x, now 1.4x).
    let failures = cases_under_glibc_and_modes(
        ("grow_past_huge", "grow_past_huge ok"),
        &[&["40", "100", "4", "16"]],
    );
    report(
        "buffers_grown_past_the_heap_give_back_the_spans_they_leave",
        failures,
    );
}

#[test]
fn a_memory_limit_leaves_room_for_the_programs_thread_stacks() {
    // malloc(100), then 3 threads with default (8 MiB) stacks, under RLIMIT_AS of 50 and 68
    // MiB and RLIMIT_DATA of 48 MiB set before the program starts. Before the fix (session
    // 73's breaker) pthread_create failed with EAGAIN in every mode: the heap's first chunk
    // took 32 MiB of the limit. glibc's malloc too.
    let failures = cases_under_glibc_and_modes(
        ("rlimit_threads", "rlimit_threads ok"),
        &[&["as", "50", "3"], &["as", "68", "3"], &["data", "48", "3"]],
    );
    report(
        "a_memory_limit_leaves_room_for_the_programs_thread_stacks",
        failures,
    );
}

#[test]
fn a_vfork_child_that_allocates_leaves_the_other_threads_blocks_alone() {
    // vfork children that allocate (or call setenv before exec) while other threads allocate:
    // every child exits 0 and no block changes. Before the fix (session 73's breaker) both
    // rseq modes aborted in every run ("corrupted free list", "double free detected"), the
    // child running the per-CPU critical sections on its parent's unregistered rseq area.
    // `clone-alloc` and `clone-setenv`: the same children made by glibc's `clone` with
    // `CLONE_VM | CLONE_VFORK`; before session 74 both failed in the rseq modes (the breaker's
    // runs: every run in both; the review's: `clone-alloc` in both, `clone-setenv` in own).
    // `keydtor`: children of a key destructor run after the allocator's own, whose thread is
    // in bypass with glibc's area still live; it failed in glibc mode while only threads in
    // the rseq state were set aside (the session's review). glibc's malloc too.
    let failures = cases_under_glibc_and_modes_with(
        ("vfork_child", "vfork_child ok"),
        &[
            &["alloc", "2000", "3"],
            &["setenv", "3000", "1"],
            &["keydtor", "30", "2"],
            &["clone-alloc", "2000", "3"],
            &["clone-setenv", "3000", "1"],
        ],
        "",
        120,
    );
    report(
        "a_vfork_child_that_allocates_leaves_the_other_threads_blocks_alone",
        failures,
    );
}

#[test]
fn fork_handlers_registered_before_the_allocators_may_allocate() {
    // A library the program links (its constructor runs before a preloaded library's) and the
    // program's `.preinit_array` register fork handlers that allocate; two threads allocate
    // while the main thread forks. Before session 74 the allocator's handlers, registered from
    // its constructor after these, held its locks while they ran: `fork` hung in every mode
    // (session 74's breaker run). glibc's malloc too.
    let dir = programs_dir();
    let pic = [OsStr::new("-shared"), OsStr::new("-fPIC")];
    compile_in(
        &conf_dir(),
        &["atfork_early_lib.c"],
        &dir.join("libatfork_early.so"),
        &pic,
    );
    let (search, rpath) = (
        format!("-L{}", dir.display()),
        format!("-Wl,-rpath,{}", dir.display()),
    );
    let link = [
        OsStr::new(&search),
        OsStr::new("-Wl,--no-as-needed"),
        OsStr::new("-latfork_early"),
        OsStr::new(&rpath),
    ];
    let bin = dir.join("atfork_early");
    compile_in(&conf_dir(), &["atfork_early.c"], &bin, &link);
    let failures = cases_of_binary(&bin, ("atfork_early", "atfork_early ok"), &[&[]], "", 40);
    report(
        "fork_handlers_registered_before_the_allocators_may_allocate",
        failures,
    );
}

#[test]
fn a_program_with_its_own_mmap_runs() {
    // The program defines mmap and munmap (logging into malloc'd blocks); the loader binds
    // libc's callers to them. Before session 74 the allocator's own mappings went through them,
    // and the first one allocated under the page heap's lock: malloc hung in every mode.
    // glibc's malloc too.
    let failures = cases_under_glibc_and_modes(("own_mmap", "own_mmap ok"), &[&[]]);
    report("a_program_with_its_own_mmap_runs", failures);
}

#[test]
fn glibcs_other_names_for_malloc_are_ours() {
    // A block from `__libc_malloc` (or `__libc_calloc`, `__libc_memalign`, `__libc_valloc`,
    // `__libc_pvalloc`) is grown, measured and freed by the standard names, and one from
    // `malloc` by `__libc_realloc`, `__libc_free` and `cfree`, at four sizes. Before session 74
    // they were glibc's own: the first `malloc_usable_size` aborted, in every mode.
    let failures = cases_under_glibc_and_modes(("libc_names", "libc_names ok"), &[&[]]);
    report("glibcs_other_names_for_malloc_are_ours", failures);
}

#[test]
fn a_realloc_that_succeeds_after_a_refused_headroom_keeps_errno() {
    // Under an address-space limit, a realloc whose quarter of headroom is refused and whose
    // exact size still fits must succeed with errno as it was: before the fix (session 73's
    // review) it left ENOMEM, in every mode. glibc's malloc too.
    let failures = cases_under_glibc_and_modes(("rlimit_realloc", "rlimit_realloc ok"), &[&[]]);
    report(
        "a_realloc_that_succeeds_after_a_refused_headroom_keeps_errno",
        failures,
    );
}

#[test]
fn kind10_rlimit_as_exhaustion_and_recovery() {
    rlimit_test("rlimit", "as");
}

#[test]
fn kind10_rlimit_data_exhaustion_and_recovery() {
    rlimit_test("rlimit", "data");
}

#[test]
fn kind10_rlimit_as_freed_fills_serve_a_big_block_untrimmed() {
    rlimit_test("rlimit_fills", "as");
}

#[test]
fn kind10_rlimit_data_freed_fills_serve_a_big_block_untrimmed() {
    rlimit_test("rlimit_fills", "data");
}

#[test]
fn the_programs_own_c_library_functions_never_run_inside_the_allocator() {
    // A program's (or a preloaded library's) `syscall`, `clock_gettime`, `getrlimit`, `fstat`,
    // `fcntl`, `write`, `sched_yield` and `nanosleep`, each allocating: the allocator must call
    // none of them. Crashed (SIGSEGV) in every mode before session 75's system calls made
    // directly; `faketime` hung even `/bin/true` then.
    let failures = cases_under_glibc_and_modes(("own_libc", "own_libc ok"), &[&[]]);
    report(
        "the_programs_own_c_library_functions_never_run_inside_the_allocator",
        failures,
    );
}

#[test]
fn kind10_rlimit_data_above_a_gib_refills_every_round() {
    // Under an RLIMIT_DATA above 1 GiB chunks open 2 MiB at a time: fills until refused,
    // freed whole, six rounds, then every size up to 31 MiB and 20 blocks of 30 MiB with
    // nothing live. Failed in 9 of 9 runs across the three modes before the fix (session 75:
    // `trim` made part of a chunk read-write before unmapping it, a refusal ignored, and the
    // chunk's slot then refused every later chunk).
    let failures =
        cases_under_glibc_and_modes(("rlimit_data_refill", "rlimit_data_refill ok"), &[&["6"]]);
    report(
        "kind10_rlimit_data_above_a_gib_refills_every_round",
        failures,
    );
}

// ---------------------------------------------------------------------------------------------
// Item 11: small overflows

#[test]
fn kind11_small_overflow_never_crashes_or_hands_out_a_bad_pointer() {
    // The program completes (exit 0): never SIGSEGV/SIGBUS, never a misaligned or overlapping
    // block (exit 3). The contract also allows an abort with one line naming a block, which
    // is what the span free lists linked through the objects did; since session 20 spans keep
    // their free objects in bitmaps and nothing reads a free object's first word, so the
    // program must simply keep working. With owned spans on (`owned_spans=on`, the default,
    // whose lists run through free objects' first words again), in every mode (fallback mode's
    // since session 76), an overflow past a block of 257-960 B (the classes every thread routes
    // to them; a small class this program keeps busy is never routed) that reaches a free
    // neighbour's first word may instead stop the program with that one line (`malloc():
    // corrupted free list at 0x…`), as the contract allows.
    let bin = program("overflow");
    let mut failures = Vec::new();
    for u in modes() {
        for size in [16usize, 48, 208, 400, 1024, 3000] {
            for k in [1usize, 2, 8, 16] {
                let (s, ks) = (size.to_string(), k.to_string());
                let out = run_under(&bin, &[&s, &ks], u, 30, &[]);
                let err = text(&out.stderr);
                let completed = out.status.success()
                    && text(&out.stdout).starts_with("overflow ok ")
                    && text(&out.stdout).ends_with(&format!(" mode={}\n", u.name()));
                let stopped_by_the_owned_pop = support::owned_spans_on()
                    && (257..=960).contains(&size)
                    && matches!(u, Under::Ours(..))
                    && out.status.signal() == Some(libc::SIGABRT)
                    && err.lines().count() == 1
                    && err.starts_with("malloc(): corrupted free list at 0x");
                let ok = completed || stopped_by_the_owned_pop;
                if !ok {
                    failures.push(format!(
                        "overflow of {k} B past a {size}-byte block [{}]: {}; stdout {:?}; stderr {:?}",
                        u.name(),
                        status_words(&out),
                        text(&out.stdout).trim_end(),
                        err.trim_end()
                    ));
                }
            }
        }
    }
    report(
        "kind11_small_overflow_never_crashes_or_hands_out_a_bad_pointer",
        failures,
    );
}

// ---------------------------------------------------------------------------------------------
// Item 15: RSS after short-lived threads

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn rss_growth(out: &Output, mode: &str) -> Result<i64, String> {
    let so = check_ok(out, "thread_rss", "thread_rss growth=", mode)?;
    so.lines()
        .last()
        .and_then(|l| field(l, "growth"))
        .ok_or_else(|| format!("thread_rss [{mode}]: cannot parse {so:?}"))
}

#[test]
fn kind15_short_lived_threads_leave_rss_at_most_glibcs() {
    // 64 threads started together, each allocating 4 MiB of 16-240 B objects, holding them until
    // all have (the same 256 MiB peak in every run), then freeing them in allocation order; RSS
    // growth right after the joins, median of 7 runs against glibc's median of 7, runs
    // alternating between the allocators. Without the hold, how many threads overlap is the
    // scheduler's choice and single runs scattered by a factor of 3 on both sides, so the
    // comparison flipped from run to run; with it, glibc's malloc kept 301.7-301.8 MB (later
    // not always: below), the
    // build before the fix 303.0-303.7 MB (fails), this one 11-16 MB, and since session 28,
    // which keeps a cushion for threads that allocate again at once (the next test), 95-105
    // MiB. The release build: what users get.
    const RUNS: usize = 7;
    let bin = program("thread_rss");
    let unders = glibc_and_release_modes();
    let mut growth: Vec<Vec<i64>> = vec![Vec::new(); unders.len()];
    let mut failures = Vec::new();
    for _ in 0..RUNS {
        for (i, &u) in unders.iter().enumerate() {
            match rss_growth(&run_under(&bin, &[], u, 60, &[]), &u.name()) {
                Ok(g) => growth[i].push(g),
                Err(e) => failures.push(e),
            }
        }
    }
    let mib = |v: i64| v as f64 / 1048576.0;
    if failures.is_empty() {
        // glibc's own figure is not one: its runs fall near 71 MB, 123 MB or 301 MB (all three
        // in one run of session 30: [71.1, 75.9, 301.8, 123.0, 71.3, 301.8, 301.8] MB), by how
        // its arenas happened to be trimmed, so its median flips between the modes, and ours
        // (95-127 MB in alternated runs before and after that session's change, the tier not
        // involved: no burst growth here) lands on either side of it by chance. The bound is
        // glibc's median, or half its highest run (what glibc keeps when its arenas keep
        // their memory), whichever is larger: a build keeping every freed page (303 MB, the
        // bug this test was written for) still fails.
        let g = median(growth[0].clone()).max(growth[0].iter().max().unwrap() / 2);
        for (i, u) in unders.iter().enumerate().skip(1) {
            let o = median(growth[i].clone());
            let line = format!(
                "thread_rss [{}]: median RSS growth {:.1} MiB (runs {:?}), glibc's bound {:.1} MiB (runs {:?})",
                u.name(),
                mib(o),
                growth[i],
                mib(g),
                growth[0]
            );
            eprintln!("{line}");
            if o > g {
                failures.push(line);
            }
        }
    }
    report(
        "kind15_short_lived_threads_leave_rss_at_most_glibcs",
        failures,
    );
}

#[test]
fn threads_that_exit_round_after_round_do_not_fault_the_heap_back_in() {
    // Rounds of 8 threads, each allocating 8 MiB of small objects, freeing them and exiting,
    // new threads following at once (Node.js `worker_threads` in rounds: 9.2 s and 2.8 million
    // page faults against glibc's 6.7 s and 1.0 million before session 28). A shrinking heap
    // gives its free pages back down to a cushion of three quarters of its high-water mark, not
    // all of them: the later rounds' minor faults must stay under a quarter of the first's. The
    // build before: 73-76 % of the first round's faults in every mode (glibc's malloc about
    // 48 %); this one 6-13 %; since session 32, where a heap that grows back in rounds keeps
    // its free pages for the decay, 2-4 % (392-653 faults a round against 18,700). The
    // release build: what users get.
    let bin = program("thread_rounds");
    let mut failures = Vec::new();
    for u in glibc_and_release_modes() {
        let out = run_under(&bin, &[], u, 120, &[]);
        let so = match check_ok(&out, "thread_rounds", "thread_rounds first=", &u.name()) {
            Ok(so) => so,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let last = so.lines().last().unwrap_or("");
        let (Some(first), Some(later)) = (field::<i64>(last, "first"), field::<i64>(last, "later"))
        else {
            failures.push(format!("thread_rounds [{}]: cannot parse {so:?}", u.name()));
            continue;
        };
        let line = format!(
            "thread_rounds [{}]: first round {first} minor faults, later rounds {later} each",
            u.name()
        );
        eprintln!("{line}");
        if !matches!(u, Under::Glibc) && later * 4 > first {
            failures.push(line);
        }
    }
    report(
        "threads_that_exit_round_after_round_do_not_fault_the_heap_back_in",
        failures,
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 12: memory a burst freed is reused before fresh memory

#[test]
fn pages_a_burst_freed_are_reused_before_fresh_ones() {
    // Four rounds of `count` objects of `size` bytes, each filled, then all freed; a later
    // round may peak at most 4 MiB above the first (the build before the fix: +31 MiB for
    // 1 KiB, +18 MiB for 40,000 B, +21 MiB for 256 KiB). glibc's malloc runs it too.
    let failures = cases_under_glibc_and_modes(
        ("bursts_rss", "bursts_rss ok"),
        &[&["1024", "100000"], &["40000", "2000"], &["262144", "300"]],
    );
    report("pages_a_burst_freed_are_reused_before_fresh_ones", failures);
}

/// Runs the program `name` with each of `cases` (its arguments) under glibc's malloc and in the
/// three modes; each run must end with a line starting with `prefix` (logged). Returns the
/// failures, each naming its arguments.
fn cases_under_glibc_and_modes((name, prefix): (&str, &str), cases: &[&[&str]]) -> Vec<String> {
    cases_under_glibc_and_modes_with((name, prefix), cases, "", 60)
}

/// [`cases_under_glibc_and_modes`] with `options` added to each mode's, each run killed after
/// `secs`.
fn cases_under_glibc_and_modes_with(
    (name, prefix): (&str, &str),
    cases: &[&[&str]],
    options: &str,
    secs: u32,
) -> Vec<String> {
    cases_of_binary(&program(name), (name, prefix), cases, options, secs)
}

/// [`cases_under_glibc_and_modes_with`] for a program built some other way (`bin`).
fn cases_of_binary(
    bin: &Path,
    (name, prefix): (&str, &str),
    cases: &[&[&str]],
    options: &str,
    secs: u32,
) -> Vec<String> {
    let mut failures = Vec::new();
    for args in cases {
        for u in [Under::Glibc].into_iter().chain(modes()) {
            let out = run_under_with(bin, args, u, secs, &[], options);
            match check_ok(&out, name, prefix, &u.name()) {
                Ok(so) => eprintln!(
                    "{name} {args:?} [{}]: {}",
                    u.name(),
                    so.lines().last().unwrap_or("")
                ),
                Err(e) => failures.push(format!("{args:?}: {e}")),
            }
        }
    }
    failures
}

#[test]
fn zeroed_blocks_the_program_barely_touches_stay_lazy() {
    // calloc'd blocks of 16 MiB (populated before the fix) and of 256 KiB, 200 KiB and
    // 100,000 B (a size class's, cleared with memset before the fix; the last until session
    // 72), one byte written in each: the resident set may grow by a page a block (plus 8 MiB).
    // Before the fix: +640 MiB for 40 of 16 MiB, +500 MiB for 2,000 of 256 KiB (session 71's
    // breaker). And a block written whole is
    // followed by one resident at once (where populating is honoured). glibc's malloc too.
    let failures = cases_under_glibc_and_modes(
        ("calloc_sparse", "calloc_sparse ok"),
        &[
            &["sparse", "16777216", "40"],
            &["sparse", "262144", "1000"],
            &["sparse", "204800", "1000"],
            &["sparse", "100000", "2000", "beyond-glibc"],
            &["dense", "16777216"],
        ],
    );
    report(
        "zeroed_blocks_the_program_barely_touches_stay_lazy",
        failures,
    );
}

#[test]
fn buffers_grown_by_realloc_give_back_the_classes_they_leave() {
    // Many buffers grown by realloc a few bytes at a time, each size class they pass through
    // left behind: the resident set may grow by at most 2.5 times the live bytes (plus 4 MiB).
    // Before the fix (session 73) the blocks realloc moved out of the owned classes (288-960 B)
    // went onto the per-CPU stacks and their spans waited for a tick: 3.1x and 3.8x in the
    // rseq modes (fallback mode, with no owned spans, 2.1x and 2.0x; glibc's malloc 1.1x and
    // 1.3x).
    let failures = cases_under_glibc_and_modes(
        ("regrow", "regrow ok"),
        &[
            &["20000", "48", "0", "64", "25"],
            &["10000", "60", "0", "32", "25"],
        ],
    );
    report(
        "buffers_grown_by_realloc_give_back_the_classes_they_leave",
        failures,
    );
}

#[test]
fn a_program_that_locks_its_memory_keeps_a_small_heap_small() {
    // `mlockall(MCL_CURRENT | MCL_FUTURE)` makes every readable page resident. The resident set
    // may grow from before the lock by the bytes allocated after it plus 16 MiB plus 512 KiB a
    // CPU (the allocator's own tables). Before session 75 the heap's chunk was read-write whole,
    // 32 MiB, all of it resident once locked: 45 MB in every mode, against 5.1 MB under glibc's malloc
    // (4 MiB of blocks). Needs CAP_IPC_LOCK or a roomy RLIMIT_MEMLOCK; told and skipped without.
    let failures = cases_under_glibc_and_modes(("mlock_small", "mlock_small ok"), &[&["4096"]]);
    report(
        "a_program_that_locks_its_memory_keeps_a_small_heap_small",
        failures,
    );
}

// ---------------------------------------------------------------------------------------------
// The C library's documented behaviours, the shadow model, seccomp, valgrind

#[test]
fn libc_documented_behaviours_match_glibc() {
    // The program checks the behaviours itself; its transcript of edge-case answers ("= "
    // lines) must be glibc's. "~ " lines are printed where they differ, not compared.
    let unders = modes().chain([Under::Ours(&libs().release, Mode::Glibc)]);
    let failures = compare_with_glibc("basics", &[], "basics done", unders, |l| {
        l.starts_with("= ")
    });
    report("libc_documented_behaviours_match_glibc", failures);
}

#[test]
fn shadow_model_random_api_three_seeds() {
    // 4 threads, up to 2 s or 300,000 operations each, per seed and mode.
    let bin = program("shadow");
    let mut failures = Vec::new();
    for seed in ["1", "20240611", "977"] {
        for u in modes() {
            let out = run_under(&bin, &[seed, "4", "300000", "2"], u, 60, &[]);
            if let Err(e) = check_ok(&out, &format!("shadow {seed}"), "shadow ok ", &u.name()) {
                failures.push(e);
            }
        }
    }
    report("shadow_model_random_api_three_seeds", failures);
}

#[test]
fn seccomp_refusing_rseq_runs_in_fallback() {
    // The allocator starts under a filter that refuses rseq (EPERM, ENOSYS): every mode must
    // come out as fallback, and the programs work.
    let wrapper = program("seccomp_run");
    let basics = program("basics");
    let shadow = program("shadow");
    let mut failures = Vec::new();
    for errno in ["EPERM", "ENOSYS"] {
        for u in modes() {
            let out = run_under(&wrapper, &[errno, basics.to_str().unwrap()], u, 60, &[]);
            let what = format!("seccomp_run {errno} basics ({})", u.name());
            if let Err(e) = check_ok(&out, &what, "basics done", "fallback") {
                failures.push(e);
            }
            let args = [errno, shadow.to_str().unwrap(), "5", "3", "20000", "1"];
            let out = run_under(&wrapper, &args, u, 60, &[]);
            let what = format!("seccomp_run {errno} shadow ({})", u.name());
            if let Err(e) = check_ok(&out, &what, "shadow ok ", "fallback") {
                failures.push(e);
            }
        }
    }
    report("seccomp_refusing_rseq_runs_in_fallback", failures);
}

#[test]
fn valgrind_memcheck_subset_runs_in_fallback() {
    let Some(vg) = valgrind() else {
        eprintln!("valgrind is not installed (apt package `valgrind`): test skipped");
        return;
    };
    let mut failures = Vec::new();
    let runs: [(&str, &[&str], &str); 3] = [
        ("basics", &[], "basics done"),
        ("shadow", &["5", "3", "3000", "20", "16"], "shadow ok "),
        ("cxx_contract", &[], "cxx_contract ok forms=20 "),
    ];
    for (name, args, prefix) in runs {
        let out = run_valgrind(&vg, &program(name), args, &[]);
        if let Err(e) = check_ok(&out, &format!("valgrind {name}"), prefix, "fallback") {
            failures.push(e);
        }
    }
    report("valgrind_memcheck_subset_runs_in_fallback", failures);
}
