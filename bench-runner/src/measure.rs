//! One measured run: start the workload binary as a child (with the
//! allocator in `LD_PRELOAD`), enforce the timeout, reap it with `wait4` to
//! get its own rusage, and classify what happened.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// What one child run measured.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Wall-clock time from spawn to exit, in milliseconds.
    pub wall_ms: f64,
    /// User plus system CPU time of the child (all its threads), in ms.
    pub cpu_ms: f64,
    /// User CPU time of the child, in ms.
    #[serde(default)]
    pub user_ms: f64,
    /// System CPU time of the child, in ms.
    #[serde(default)]
    pub sys_ms: f64,
    /// Minor page faults of the child (`ru_minflt`).
    #[serde(default)]
    pub minflt: u64,
    /// Peak resident set size of the child (`ru_maxrss`), in KiB.
    pub max_rss_kib: u64,
    /// The operation count the workload printed.
    pub ops: u64,
    /// Per-operation latency percentiles, from workloads that print them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

/// Per-operation latency percentiles a workload printed (`p50_ns=...`,
/// `p99_ns=...`, `p999_ns=...` before its `ops=` line), in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    pub p50_ns: f64,
    pub p99_ns: f64,
    pub p999_ns: f64,
}

impl Latency {
    /// The percentiles in `stdout`, if all three are there.
    fn parse(stdout: &str) -> Option<Latency> {
        let value = |key: &str| {
            stdout
                .lines()
                .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
                .next_back()
                .and_then(|v| v.parse::<f64>().ok())
        };
        Some(Latency {
            p50_ns: value("p50_ns")?,
            p99_ns: value("p99_ns")?,
            p999_ns: value("p999_ns")?,
        })
    }
}

/// How one child run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok(Sample),
    /// Killed by a signal (its name, e.g. `SIGSEGV`).
    Crashed {
        signal: String,
        detail: String,
    },
    /// Exited non-zero, printed no `ops=` line, or ran without its allocator.
    Failed {
        reason: String,
        detail: String,
    },
    /// Still running at the deadline; killed.
    Timeout,
}

/// Runs `program args...` once with `preload` (or no `LD_PRELOAD` at all)
/// and `env` added to the runner's environment, and waits at most `timeout`
/// for it. The runner passes the workload binary with `<workload> <scale>`.
pub fn run_once(
    program: &Path,
    args: &[&str],
    preload: Option<&Path>,
    env: &[(String, String)],
    timeout: Duration,
) -> std::io::Result<Outcome> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match preload {
        Some(lib) => cmd.env("LD_PRELOAD", lib),
        None => cmd.env_remove("LD_PRELOAD"),
    };
    cmd.envs(env.iter().map(|(var, value)| (var, value)));

    reset_peak_rss();
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    // The watchdog kills the child at the deadline unless told it exited.
    // The child is only reaped after the watchdog is joined, so its pid
    // cannot have been reused by then.
    let (exited, exit_seen) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || match exit_seen.recv_timeout(timeout) {
        Err(mpsc::RecvTimeoutError::Timeout) => {
            // SAFETY: plain syscall; `pid` is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            true
        }
        _ => false,
    });
    let waited = wait_exit(pid);
    let wall = start.elapsed();
    drop(exited);
    let timed_out = watchdog.join().expect("watchdog thread");
    waited?;
    let (status, usage) = reap(pid)?;
    // `child` must not wait() again: it is already reaped.
    drop(child);

    let stdout = String::from_utf8_lossy(&stdout.join().expect("stdout reader")).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();
    let detail = last_lines(&stderr, 3);

    if timed_out {
        return Ok(Outcome::Timeout);
    }
    if libc::WIFSIGNALED(status) {
        return Ok(Outcome::Crashed {
            signal: signal_name(libc::WTERMSIG(status)),
            detail,
        });
    }
    let code = libc::WEXITSTATUS(status);
    if code != 0 {
        return Ok(Outcome::Failed {
            reason: format!("exit {code}"),
            detail,
        });
    }
    if stderr.contains("cannot be preloaded") {
        return Ok(Outcome::Failed {
            reason: "LD_PRELOAD ignored".into(),
            detail,
        });
    }
    let ops = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| l.trim().strip_prefix("ops="))
        .and_then(|n| n.parse::<u64>().ok());
    let Some(ops) = ops else {
        return Ok(Outcome::Failed {
            reason: "no ops line".into(),
            detail: last_lines(&stdout, 3),
        });
    };
    let (user_ms, sys_ms) = (
        timeval_secs(usage.ru_utime) * 1e3,
        timeval_secs(usage.ru_stime) * 1e3,
    );
    Ok(Outcome::Ok(Sample {
        wall_ms: wall.as_secs_f64() * 1e3,
        cpu_ms: user_ms + sys_ms,
        user_ms,
        sys_ms,
        minflt: u64::try_from(usage.ru_minflt).unwrap_or(0),
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        ops,
        latency: Latency::parse(&stdout),
    }))
}

/// Lowers this process's recorded peak RSS to its current RSS (Linux >= 4.0).
///
/// Linux starts a child's `ru_maxrss` at the peak RSS of the address space
/// it had before `exec`, which for a `posix_spawn`ed child is this process's:
/// without the reset every figure would be at least the runner's own peak.
/// What remains is a floor of the runner's current RSS (~3 MiB), below what
/// any workload uses. Best effort: on failure the floor is just higher.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Reads a child's pipe to the end on a thread of its own.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error just ends the capture; the exit status still counts.
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Blocks until `pid` has exited, leaving it unreaped (`WNOWAIT`).
fn wait_exit(pid: libc::pid_t) -> std::io::Result<()> {
    loop {
        // SAFETY: `info` is a valid out-pointer; zeroed is a valid siginfo_t.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let id = libc::id_t::try_from(pid).expect("child pid is positive");
        // SAFETY: plain syscall with valid arguments.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reaps `pid`, returning its wait status and its own resource usage.
fn reap(pid: libc::pid_t) -> std::io::Result<(libc::c_int, libc::rusage)> {
    loop {
        let mut status = 0;
        // SAFETY: zeroed is a valid rusage; both out-pointers are valid.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: plain syscall with valid arguments.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            return Ok((status, usage));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn timeval_secs(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

/// `SIGSEGV` for 11, and so on; `signal N` for the unusual ones.
pub fn signal_name(signal: libc::c_int) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        libc::SIGINT => "SIGINT",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// The last `n` non-empty lines of `text`, joined by " | ".
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn sh(script: &str, timeout: Duration) -> Outcome {
        run_once(Path::new("/bin/sh"), &["-c", script], None, &[], timeout)
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    #[test]
    fn success_reads_the_last_ops_line() {
        match sh("echo ops=1; echo ops=42; echo", 10 * SECOND) {
            Outcome::Ok(s) => {
                assert_eq!(s.ops, 42);
                assert!(s.wall_ms > 0.0 && s.max_rss_kib > 0, "{s:?}");
                assert!(s.minflt > 0, "a new process faults its pages in: {s:?}");
                assert_eq!(s.latency, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn latency_lines_are_read() {
        let script = "echo p50_ns=120; echo p99_ns=900.5; echo p999_ns=15000; echo ops=7";
        let Outcome::Ok(s) = sh(script, 10 * SECOND) else {
            panic!("{script} failed")
        };
        assert_eq!(
            s.latency,
            Some(Latency {
                p50_ns: 120.0,
                p99_ns: 900.5,
                p999_ns: 15000.0
            })
        );
        let Outcome::Ok(partial) = sh("echo p50_ns=1; echo ops=1", 10 * SECOND) else {
            panic!("partial")
        };
        assert_eq!(partial.latency, None, "all three or none");
    }

    #[test]
    fn failures_are_classified() {
        assert_eq!(
            sh("echo boom >&2; exit 3", 10 * SECOND),
            Outcome::Failed {
                reason: "exit 3".into(),
                detail: "boom".into()
            }
        );
        assert!(matches!(
            sh("echo no count here", 10 * SECOND),
            Outcome::Failed { reason, .. } if reason == "no ops line"
        ));
        assert!(matches!(
            sh("kill -SEGV $$", 10 * SECOND),
            Outcome::Crashed { signal, .. } if signal == "SIGSEGV"
        ));
    }

    #[test]
    fn a_hung_child_is_killed_at_the_deadline() {
        let start = Instant::now();
        assert_eq!(
            sh("exec sleep 30", Duration::from_millis(200)),
            Outcome::Timeout
        );
        assert!(start.elapsed() < 10 * SECOND);
    }

    #[test]
    fn cpu_time_is_the_childs() {
        let Outcome::Ok(s) = sh(
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo ops=1",
            30 * SECOND,
        ) else {
            panic!("busy loop failed")
        };
        assert!(s.cpu_ms > 1.0, "{s:?}");
        assert!(s.cpu_ms <= s.wall_ms * 1.5 + 5.0, "{s:?}");
        assert!((s.user_ms + s.sys_ms - s.cpu_ms).abs() < 1e-9, "{s:?}");
        assert!(s.user_ms > 0.0, "{s:?}");
    }

    /// The settings reach the child, replacing the runner's own value of a variable.
    #[test]
    fn env_reaches_the_child() {
        let env = [
            ("RSEQMALLOC_BENCH_TEST_A".to_string(), "x=1".to_string()),
            ("PATH".to_string(), "/bin:/usr/bin".to_string()),
        ];
        let script =
            r#"[ "$RSEQMALLOC_BENCH_TEST_A" = x=1 ] && [ "$PATH" = /bin:/usr/bin ] && echo ops=3"#;
        let outcome = run_once(
            Path::new("/bin/sh"),
            &["-c", script],
            None,
            &env,
            10 * SECOND,
        )
        .expect("sh runs");
        assert!(
            matches!(outcome, Outcome::Ok(Sample { ops: 3, .. })),
            "{outcome:?}"
        );
    }

    #[test]
    fn missing_program_is_an_error() {
        assert!(run_once(Path::new("/nonexistent/bin"), &[], None, &[], SECOND).is_err());
    }

    #[test]
    fn names_and_lines() {
        assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
        assert_eq!(signal_name(64), "signal 64");
        assert_eq!(last_lines("a\n\nb\nc\n\n", 2), "b | c");
        assert_eq!(last_lines("", 2), "");
    }
}
