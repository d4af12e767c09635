//! Shared by the integration tests that run one of their own `#[ignore]`d tests in a child
//! process: the rseq mode and the options are chosen once per process, so each setting needs a
//! process of its own.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long a child may run before it is killed. The longest takes seconds; a heap corrupted
/// by a bug can deadlock a panicking child, which must fail the test rather than stall CI.
const CHILD_DEADLINE: Duration = Duration::from_secs(300);

/// Runs this binary's test `name` alone in a child process, with `RSEQMALLOC_OPTIONS` and
/// `GLIBC_TUNABLES` cleared and then `env` set (the child test's own marker variable among
/// them); asserts that it ran — exactly one test passed — and succeeded within the deadline;
/// returns its stdout.
pub fn run_child_test(name: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        name,
        "--nocapture",
        "--include-ignored",
        "--test-threads",
        "1",
    ])
    .env_remove("GLIBC_TUNABLES")
    .env_remove("RSEQMALLOC_OPTIONS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let timed_out = wait_done.recv_timeout(CHILD_DEADLINE).is_err();
        if timed_out {
            // SAFETY: kill has no memory arguments. The pid could only name another process
            // if the child were reaped and its pid reused in the microseconds between
            // `wait_with_output` and `done`, at exactly the deadline.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        timed_out
    });
    let out = child.wait_with_output().unwrap();
    // The watchdog is gone if it killed the child: the message below says so.
    let _ = done.send(());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !watchdog.join().unwrap(),
        "{name} hung for {CHILD_DEADLINE:?} and was killed:\n{stdout}\n{stderr}"
    );
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} failed ({:?}, signal {:?}):\n{stdout}\n{stderr}",
        out.status,
        out.status.signal()
    );
    stdout
}

/// Runs this binary's test `name` in a child process with `marker` set and then `env`, as
/// [`run_child_test`], and returns the fields of its `RESULT ` line, which it must print.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all print RESULT"
)]
pub fn child_result(name: &str, marker: &str, env: &[(&str, &str)]) -> HashMap<String, String> {
    let mut all = vec![(marker, "1")];
    all.extend_from_slice(env);
    let stdout = run_child_test(name, &all);
    let r = result_fields(&stdout);
    assert!(!r.is_empty(), "no RESULT line in:\n{stdout}");
    r
}

/// Field `k` of a child's `RESULT ` line ([`result_fields`]), a number.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all print RESULT"
)]
pub fn num(r: &HashMap<String, String>, k: &str) -> u64 {
    r[k].parse().unwrap()
}

/// The `key=value` fields of the child's `RESULT ` line (empty if it printed none).
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all print RESULT"
)]
pub fn result_fields(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .find_map(|l| l.split_once("RESULT "))
        .map_or("", |(_, r)| r)
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The three rseq modes every behaviour test runs in, as (the mode's name as
/// `rseqmalloc::RseqMode` prints it, the options that select it, `GLIBC_TUNABLES`): glibc's
/// area, our own registration (glibc told not to register), and the fallback.
pub const MODES: [(&str, &str, &str); 3] = [
    ("Glibc", "", ""),
    ("Own", "", "glibc.pthread.rseq=0"),
    ("Fallback", "rseq=off", ""),
];

/// The mode a child asked to run in `mode` (a name of [`MODES`]) runs in here: `mode` where
/// the critical sections can run — x86_64, with the rseq system call answering — and the
/// fallback everywhere else (aarch64 builds only the fallback; qemu-user answers `ENOSYS`; a
/// seccomp filter may answer `ENOSYS` or `EPERM`). A call with a null area and length 0
/// registers nothing: where rseq exists it fails with `EINVAL`.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all run children in the modes"
)]
pub fn expected_mode(mode: &'static str) -> &'static str {
    static CRITICAL_SECTIONS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let possible = *CRITICAL_SECTIONS.get_or_init(|| {
        // SAFETY: rseq with a null area, length 0 and flags 0 only fails.
        let r =
            unsafe { libc::syscall(libc::SYS_rseq, std::ptr::null_mut::<u8>(), 0u32, 0i32, 0u32) };
        let err = std::io::Error::last_os_error().raw_os_error();
        let possible = cfg!(target_arch = "x86_64") && r == -1 && err == Some(libc::EINVAL);
        if !possible {
            eprintln!(
                "note: no rseq critical sections here (rseq answered {r}, errno {err:?}): \
                 every mode is expected to run the fallback"
            );
        }
        possible
    });
    if possible {
        mode
    } else {
        "Fallback"
    }
}

/// Runs the child test `name` once in each of [`MODES`], with `marker` set (the variable the
/// child acts under) and `options` (comma-separated, may be empty) after the mode's own; the
/// child must print [`say_mode`]'s line, which is checked against the mode meant (see
/// [`expected_mode`]). Returns each mode's name and the child's stdout.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all run children in the modes"
)]
pub fn run_in_modes(name: &str, marker: &str, options: &str) -> Vec<(&'static str, String)> {
    MODES
        .iter()
        .map(|&(mode, rseq, tunables)| {
            let options = join_options(&[rseq, options]);
            let out = run_child_test(
                name,
                &[
                    (marker, "1"),
                    ("RSEQMALLOC_OPTIONS", &options),
                    ("GLIBC_TUNABLES", tunables),
                ],
            );
            assert_ran_in(name, mode, &out);
            (mode, out)
        })
        .collect()
}

/// `RSEQMALLOC_OPTIONS` lists joined with commas, the empty ones left out.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all run children in the modes"
)]
pub fn join_options(lists: &[&str]) -> String {
    lists
        .iter()
        .filter(|o| !o.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(",")
}

/// Asserts that the child `what`, asked to run in `mode`, says (its [`say_mode`] line in
/// `stdout`) it ran in the mode [`expected_mode`] gives for it here.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all run children in the modes"
)]
pub fn assert_ran_in(what: &str, mode: &'static str, stdout: &str) {
    let expected = expected_mode(mode);
    assert!(
        stdout.contains(&format!("rseq mode {expected}\n")),
        "{what} did not run in mode {expected}:\n{stdout}"
    );
}

/// Whether this process is a child [`run_in_modes`] started with `marker` set; if so, prints
/// the line it checks: the rseq mode this process runs in (the test harness has allocated by
/// then, so the mode is chosen). The parent's copy of a child test does nothing.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all run children in the modes"
)]
pub fn in_child(marker: &str) -> bool {
    let child = std::env::var_os(marker).is_some();
    if child {
        say_mode();
    }
    child
}

/// Makes sure the background thread (`background_thread=on`) runs: it starts at an
/// allocation's slow path once the program has had a second thread (session 72), and a thread
/// whose first call frees, or whose allocations a warm cache serves, leaves it to a later one.
/// A thread that allocates a large block (always a slow path) starts it at once.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all start the background thread"
)]
pub fn start_background_thread() {
    std::thread::spawn(|| drop(std::hint::black_box(vec![1u8; 1 << 20])))
        .join()
        .unwrap();
}

/// Prints the line [`run_in_modes`] checks (for a child that is not started by marker).
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all run children in the modes"
)]
pub fn say_mode() {
    println!("rseq mode {:?}", rseqmalloc::rseq_mode());
}

/// The CPUs the calling thread may run on, in order.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all pin threads"
)]
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed `cpu_set_t` is an empty set; the call takes its size and fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins the calling thread to CPU `cpu`; fails the test when the kernel refuses.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all pin threads"
)]
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed `cpu_set_t` with one CPU set, applied to this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0,
            "cannot pin to CPU {cpu}"
        );
    }
}
