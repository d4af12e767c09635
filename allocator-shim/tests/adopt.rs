//! What a new user meets around the allocator (issue 14) and the allocator's output contract
//! (issue 11, items 12 and 13): messages, reports, options, the version, the C install, the
//! rest of glibc's malloc API, `RTLD_DEEPBIND`. Every behaviour is checked in the three rseq
//! modes; the harness (`support/`) builds `librseqmalloc.so` and runs C programs from `tests/c`
//! under it as children with a watchdog.

mod support;

use std::ffi::OsStr;
use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::*;

/// A command running `bin` under `so` in `mode` with `options` added to the mode's own
/// `RSEQMALLOC_OPTIONS` (the fallback mode's `rseq=off` comes first).
fn command_in(bin: impl AsRef<OsStr>, so: &Path, mode: Mode, options: &str) -> Command {
    let mut cmd = command(bin, Some(so), 60);
    mode.apply(&mut cmd);
    let mut all = String::new();
    if mode == Mode::Fallback {
        all.push_str("rseq=off");
    }
    if !options.is_empty() {
        if !all.is_empty() {
            all.push(',');
        }
        all.push_str(options);
    }
    if !all.is_empty() {
        cmd.env("RSEQMALLOC_OPTIONS", all);
    }
    cmd
}

/// Compiles `tests/c/<name>.c` into `dir`.
fn program(dir: &TempDir, name: &str) -> PathBuf {
    let bin = dir.join(name);
    compile(&[&format!("{name}.c")], &bin, &[]);
    bin
}

/// `tests/c/writespy.c` as a shared object, to preload after the library.
fn write_spy(dir: &TempDir) -> PathBuf {
    let so = dir.join("writespy.so");
    compile(
        &["writespy.c"],
        &so,
        &[OsStr::new("-shared"), OsStr::new("-fPIC")],
    );
    so
}

/// `LD_PRELOAD` value for the library followed by the write spy.
fn with_spy(so: &Path, spy: &Path) -> PathBuf {
    PathBuf::from(format!("{}:{}", so.display(), spy.display()))
}

/// Splits stderr written under the write spy into the allocator's writes (one `<…>` frame per
/// write call) and everything else.
fn frames(stderr: &[u8]) -> (Vec<String>, String) {
    let s = String::from_utf8_lossy(stderr);
    let (mut framed, mut rest) = (Vec::new(), String::new());
    let mut t = s.as_ref();
    while let Some(i) = t.find('<') {
        rest.push_str(&t[..i]);
        let j = t[i..].find('>').expect("unterminated frame") + i;
        framed.push(t[i + 1..j].to_string());
        t = &t[j + 1..];
    }
    rest.push_str(t);
    (framed, rest)
}

/// One message line as a write: whole, ending in its only newline, nothing unprintable.
fn assert_one_line(write: &str, what: &str) {
    assert!(
        write.ends_with('\n') && write.matches('\n').count() == 1,
        "{what}: not one whole line in one write: {write:?}"
    );
    assert!(
        write[..write.len() - 1].chars().all(|c| !c.is_control()),
        "{what}: control character in {write:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 11, item 12: every line whole, one line, one write(2), whatever the input.

#[test]
fn messages_are_whole_single_lines_each_written_once() {
    let libs = libs();
    let dir = TempDir::new("lines");
    let bin = program(&dir, "output");
    let spy = write_spy(&dir);
    let so = with_spy(&libs.checked, &spy);
    let long_key = "k".repeat(250);
    let long_value = "9".repeat(300);
    let bad = format!(
        "{long_key}=1,decay_ms={long_value}x,bad\nnewline=on,huge_pages=\u{1}weird,stats=json"
    );
    for mode in MODES {
        let what = format!("output plain [{}]", mode.name());
        let out = run_ok(command_in(&bin, &so, mode, &bad).arg("plain"), &what);
        assert_eq!(stdout(&out), "program stdout\n", "{}", show(&out));
        let (writes, rest) = frames(&out.stderr);
        assert_eq!(rest, "program stderr\n", "{what}: {}", show(&out));
        assert_eq!(
            writes.len(),
            5,
            "{what}: four warnings and the report:\n{writes:#?}"
        );
        for w in &writes {
            assert_one_line(w, &what);
        }
        for w in &writes[..4] {
            assert!(w.starts_with("rseqmalloc: ignoring "), "{w:?}");
            assert!(w.ends_with(" (default kept)\n") || w.contains("…"), "{w:?}");
        }
        // The long items are cut visibly; the newline and the control byte are escaped.
        assert!(writes[0].contains("kkkk…"), "{:?}", writes[0]);
        assert!(writes[1].contains("9999…"), "{:?}", writes[1]);
        assert!(writes[2].contains("'bad\\nnewline=on'"), "{:?}", writes[2]);
        assert!(
            writes[3].contains("'huge_pages=\\x01weird'"),
            "{:?}",
            writes[3]
        );
        let json: serde_json::Value = serde_json::from_str(&writes[4]).expect("JSON report");
        assert!(json["rseqmalloc"]["classes"].is_array(), "{json}");

        // The text report: every line its own write.
        let what = format!("output plain, stats=text [{}]", mode.name());
        let out = run_ok(
            command_in(&bin, &so, mode, "stats=text").arg("plain"),
            &what,
        );
        let (writes, rest) = frames(&out.stderr);
        assert_eq!(rest, "program stderr\n", "{what}: {}", show(&out));
        assert!(writes.len() >= 3, "{what}: {writes:#?}");
        for w in &writes {
            assert_one_line(w, &what);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 11, item 13: the allocator's output never changes what the program does or writes.

#[test]
fn output_never_lands_in_a_file_the_program_put_on_fd_2() {
    let libs = libs();
    let dir = TempDir::new("reuse-fd2");
    let bin = program(&dir, "output");
    for mode in MODES {
        let data = dir.join(&format!("data-{}", mode.name()));
        let what = format!("output reuse-fd2 [{}]", mode.name());
        let out = run_ok(
            command_in(&bin, &libs.checked, mode, "stats=text,bogus_key=1")
                .arg("reuse-fd2")
                .arg(&data),
            &what,
        );
        assert_eq!(stdout(&out), "wrote data on fd 2\n", "{}", show(&out));
        assert_eq!(
            fs::read_to_string(&data).unwrap(),
            "program data\n",
            "{what}: the data file holds more than the program wrote"
        );
        // The warning (before main) and the report (at exit) went to the original stderr.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("rseqmalloc: ignoring unknown key"), "{err}");
        assert!(err.contains(": allocated "), "{what}: no report:\n{err}");
    }
}

#[test]
fn a_broken_stderr_pipe_never_kills_the_program() {
    let libs = libs();
    let dir = TempDir::new("epipe");
    let bin = program(&dir, "output");
    for mode in MODES {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors were just created and are owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read); // every write to the pipe now fails with EPIPE
        let what = format!("output quiet, stderr a broken pipe [{}]", mode.name());
        let out = run(
            command_in(
                &bin,
                &libs.checked,
                mode,
                "stats=text,bogus_key=1,verbose=on",
            )
            .arg("quiet")
            .stderr(Stdio::from(write)),
            &what,
        );
        assert_eq!(
            (out.status.code(), out.status.signal()),
            (Some(0), None),
            "{what}: {}",
            show(&out)
        );
        assert_eq!(stdout(&out), "program stdout\n", "{what}");
    }
}

#[test]
fn stats_file_gets_the_report_with_the_pid_in_its_name() {
    let libs = libs();
    let dir = TempDir::new("stats-file");
    let bin = program(&dir, "output");
    for mode in MODES {
        let pattern = dir.join(&format!("report-{}.%p", mode.name()));
        let what = format!("output pid, stats_file [{}]", mode.name());
        let out = run_ok(
            command_in(
                &bin,
                &libs.checked,
                mode,
                &format!("stats=text,stats_file={}", pattern.display()),
            )
            .arg("pid"),
            &what,
        );
        assert!(out.stderr.is_empty(), "{what}: {}", show(&out));
        let pid = stdout(&out).trim().to_string();
        let file = dir.join(&format!("report-{}.{pid}", mode.name()));
        let report =
            fs::read_to_string(&file).unwrap_or_else(|e| panic!("{what}: {}: {e}", file.display()));
        let prefix = format!("rseqmalloc[{pid}]: ");
        assert!(report.lines().count() >= 3, "{report}");
        for line in report.lines() {
            assert!(line.starts_with(&prefix), "{what}: {line:?}");
        }
        assert!(report.contains(": allocated "), "{report}");
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 14: a check that works.

/// The README's check: the report appears for any program, here `ls`, which closes stderr in
/// its own exit handler before the report runs.
#[test]
fn readme_check_prints_the_report_for_ls() {
    let libs = libs();
    let ls = require("ls", "coreutils");
    for mode in MODES {
        let what = format!("ls with stats=text [{}]", mode.name());
        let out = run_ok(
            command_in(&ls, &libs.release, mode, "stats=text")
                .arg("/")
                .stdout(Stdio::null()),
            &what,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("");
        assert!(
            first.starts_with("rseqmalloc[")
                && first.contains(&format!("rseq mode {}", mode.name())),
            "{what}: {err}"
        );
        assert!(err.contains("]: allocated "), "{what}: {err}");
    }
}
