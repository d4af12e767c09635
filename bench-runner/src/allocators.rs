//! Which allocators a run compares, where their libraries are and which
//! versions they are: rseqmalloc (built from this workspace), glibc (no
//! preload), the peers Debian installs (jemalloc, mimalloc 2, tcmalloc), the
//! peers built from source (`peers`: mimalloc 3, snmalloc) and any
//! `--allocator NAME=PATH`. Also owns the cargo invocations that build
//! librseqmalloc.so and the workload binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::cli::Options;
use crate::peers;

/// The allocator this project builds; the one the table compares to the rest.
pub const RSEQMALLOC: &str = "rseqmalloc";
/// The baseline: the C library's own malloc, i.e. no `LD_PRELOAD`.
pub const GLIBC: &str = "glibc";

/// Where a distribution installs shared libraries.
const LIBRARY_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib",
    "/usr/local/lib",
    "/lib/x86_64-linux-gnu",
];

/// An installed peer: its name, the file names it may have, and the Debian
/// package that installs it.
struct Peer {
    name: &'static str,
    files: &'static [&'static str],
    package: &'static str,
}

const PEERS: &[Peer] = &[
    Peer {
        name: "jemalloc",
        files: &["libjemalloc.so.2"],
        package: "libjemalloc2",
    },
    Peer {
        name: "mimalloc",
        files: &[
            "libmimalloc.so.2",
            "libmimalloc.so.2.1",
            "libmimalloc.so.2.0",
        ],
        package: "libmimalloc2.0",
    },
    Peer {
        name: "tcmalloc",
        files: &["libtcmalloc_minimal.so.4"],
        package: "libtcmalloc-minimal4",
    },
];

/// One allocator a run measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocator {
    pub name: String,
    /// The library given to `LD_PRELOAD`; `None` for glibc.
    pub preload: Option<PathBuf>,
    /// Its version, where the runner can tell (package, sources, crate).
    pub version: Option<String>,
    /// Another build of rseqmalloc (`--candidate`): compared with rseqmalloc, not a peer.
    pub candidate: bool,
    /// Variables set for this allocator's runs only (`--env`), after the runner's own
    /// environment: (variable, value), the last setting of a variable winning.
    pub env: Vec<(String, String)>,
}

/// An allocator that was asked for but cannot be run, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

/// The built-in names, in the order the table shows them.
pub fn builtin_names() -> Vec<&'static str> {
    [RSEQMALLOC, GLIBC]
        .into_iter()
        .chain(PEERS.iter().map(|p| p.name))
        .chain(peers::SOURCE_PEERS.iter().map(|p| p.name))
        .collect()
}

/// The names of the allocators `opts` selects, in table order; an unknown
/// name in `--allocators` is an error. A `--candidate` is always selected:
/// it was given to be compared with rseqmalloc.
pub fn selected_names(opts: &Options) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = builtin_names().into_iter().map(String::from).collect();
    for (name, _) in &opts.extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    if let Some((unknown, _, _)) = opts.env.iter().find(|(n, _, _)| !names.contains(n)) {
        return Err(format!(
            "--env for unknown allocator '{unknown}' (known: {})",
            names.join(",")
        ));
    }
    if let Some(wanted) = &opts.allocators {
        if let Some(unknown) = wanted.iter().find(|w| !names.contains(w)) {
            return Err(format!(
                "unknown allocator '{unknown}' (known: {}; add others with --allocator NAME=PATH)",
                names.join(",")
            ));
        }
        names.retain(|n| wanted.contains(n) || opts.candidates.contains(n));
    }
    Ok(names)
}

/// Resolves the allocators `opts` selects, building rseqmalloc and the
/// source peers first if they are among them (and `--no-build` was not
/// given). An allocator that cannot be run is skipped, with the reason.
pub fn resolve(opts: &Options, workspace: &Path) -> Result<(Vec<Allocator>, Vec<Skipped>), String> {
    let names = selected_names(opts)?;
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for name in names {
        type Located = Result<(Option<PathBuf>, Option<String>), String>;
        let located: Located =
            if let Some((_, path)) = opts.extra.iter().rev().find(|(n, _)| *n == name) {
                existing(path).map(|p| (Some(p), None))
            } else if name == GLIBC {
                Ok((None, glibc_version()))
            } else if name == RSEQMALLOC {
                rseqmalloc(workspace, &target_dir(workspace), opts.builds())
                    .map(|p| (Some(p), rseqmalloc_version(workspace)))
            } else if let Some(source_peer) = peers::find(&name) {
                peers::locate(
                    source_peer,
                    workspace,
                    &target_dir(workspace),
                    opts.builds(),
                )
                .map(|(p, v)| (Some(p), Some(v)))
            } else {
                peer(&name)
            };
        let checked = located.and_then(|(preload, version)| {
            check_exports(preload.as_deref()).map(|()| (preload, version))
        });
        match checked {
            Ok((preload, version)) => found.push(Allocator {
                candidate: opts.candidates.contains(&name),
                env: env_of(opts, &name),
                name,
                preload,
                version,
            }),
            Err(reason) => skipped.push(Skipped { name, reason }),
        }
    }
    Ok((found, skipped))
}

/// The `--env` settings for allocator `name`, one per variable (the last given wins), in the
/// order the variables were first given.
fn env_of(opts: &Options, name: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for (_, var, value) in opts.env.iter().filter(|(n, _, _)| n == name) {
        match env.iter_mut().find(|(v, _)| v == var) {
            Some(setting) => setting.1 = value.clone(),
            None => env.push((var.clone(), value.clone())),
        }
    }
    env
}

fn existing(path: &Path) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(format!("{} not found", path.display()))
    }
}

/// Refuses a library that, by its ELF dynamic symbol table, does not define
/// `malloc`: preloading it would silently measure glibc under its name. A
/// file `object` cannot parse is let through (the dynamic loader will
/// complain at run time, and that is reported per cell).
fn check_exports(preload: Option<&Path>) -> Result<(), String> {
    let Some(path) = preload else { return Ok(()) };
    match defines(path, "malloc") {
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        Ok(Some(false)) => Err(format!("{} does not export malloc", path.display())),
        Ok(_) => Ok(()),
    }
}

/// Whether the dynamic symbol table of the shared library at `path`
/// defines `name`; `Ok(None)` if it is not an object file `object` reads.
fn defines(path: &Path, name: &str) -> std::io::Result<Option<bool>> {
    use object::{Object, ObjectSymbol};
    let file = std::fs::File::open(path)?;
    // SAFETY: the mapping is only read while `map` lives; a library that
    // someone truncates meanwhile could fault, which is a crash of this
    // run's set-up, not undefined behaviour in what is measured.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let Ok(elf) = object::File::parse(&*map) else {
        return Ok(None);
    };
    Ok(Some(elf.dynamic_symbols().any(|sym| {
        !sym.is_undefined() && sym.name_bytes().is_ok_and(|n| n == name.as_bytes())
    })))
}

/// The first of `files` present in the usual library directories.
pub fn find_library(files: &[&str]) -> Option<PathBuf> {
    LIBRARY_DIRS
        .iter()
        .flat_map(|dir| files.iter().map(move |f| Path::new(dir).join(f)))
        .find(|p| p.is_file())
}

/// A Debian peer's library and its package's version.
fn peer(name: &str) -> Result<(Option<PathBuf>, Option<String>), String> {
    let peer = PEERS.iter().find(|p| p.name == name).expect("known peer");
    let lib = find_library(peer.files)
        .ok_or_else(|| format!("not installed (apt-get install {})", peer.package))?;
    Ok((Some(lib), package_version(peer.package)))
}

/// The installed version of a Debian package, by `dpkg-query`.
fn package_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["--show", "--showformat=${Version}", package])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let version = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!version.is_empty()).then_some(version)
}

/// The C library's version, as it reports it (`2.36`).
fn glibc_version() -> Option<String> {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    version.to_str().ok().map(String::from)
}

/// rseqmalloc's crate version from the workspace's manifest, with the commit.
fn rseqmalloc_version(workspace: &Path) -> Option<String> {
    let version = metadata(workspace)?["packages"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "rseqmalloc")?["version"]
        .as_str()?
        .to_string();
    Some(match git_commit(workspace) {
        Some(commit) => format!("{version} ({commit})"),
        None => version,
    })
}

/// The workspace's git commit (12 hex digits), `-dirty` if files differ from it.
pub fn git_commit(workspace: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(workspace)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
    };
    let head = git(&["rev-parse", "--short=12", "HEAD"]).filter(|o| o.status.success())?;
    let head = String::from_utf8(head.stdout).ok()?.trim().to_string();
    let clean = git(&["diff", "--quiet", "HEAD", "--"]).is_some_and(|o| o.status.success());
    Some(if clean { head } else { format!("{head}-dirty") })
}

/// The cargo to run: the one that started us (`CARGO`), else `cargo` on PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `cargo metadata --no-deps` of the workspace, once per run.
fn metadata(workspace: &Path) -> Option<&'static serde_json::Value> {
    static METADATA: OnceLock<Option<serde_json::Value>> = OnceLock::new();
    METADATA
        .get_or_init(|| {
            cargo()
                .args([
                    "metadata",
                    "--format-version",
                    "1",
                    "--no-deps",
                    "--manifest-path",
                ])
                .arg(workspace.join("Cargo.toml"))
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|out| out.status.success())
                .and_then(|out| serde_json::from_slice(&out.stdout).ok())
        })
        .as_ref()
}

/// The workspace's target directory, as cargo itself resolves it
/// (`CARGO_TARGET_DIR`, `build.target-dir`, ...) per `cargo metadata`; if
/// cargo cannot say, `CARGO_TARGET_DIR` (relative to the current directory,
/// as cargo reads it) or `<workspace>/target`.
pub fn target_dir(workspace: &Path) -> PathBuf {
    if let Some(dir) = metadata(workspace).and_then(|m| m["target_directory"].as_str()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => std::env::current_dir()
            .map(|cwd| cwd.join(&dir))
            .unwrap_or_else(|_| dir.into()),
        _ => workspace.join("target"),
    }
}

/// Builds librseqmalloc.so in `workspace` (unless `build` is false) and
/// returns its path under `target`.
fn rseqmalloc(workspace: &Path, target: &Path, build: bool) -> Result<PathBuf, String> {
    let so = target.join("release").join("librseqmalloc.so");
    if build {
        eprintln!("building librseqmalloc.so: cargo build --release -p rseqmalloc-shim");
        let status = cargo()
            .args([
                "build",
                "--release",
                "-p",
                "rseqmalloc-shim",
                "--manifest-path",
            ])
            .arg(workspace.join("Cargo.toml"))
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!(
                "`cargo build --release -p rseqmalloc-shim` failed ({status})"
            ));
        }
    }
    if so.is_file() {
        Ok(so)
    } else if build {
        Err(format!("{} not found after the build", so.display()))
    } else {
        Err(format!(
            "{} not found (not built yet: run without --no-build)",
            so.display()
        ))
    }
}

/// Finds `rseqmalloc-workload` beside this executable, first building it with
/// the same profile (unless `build` is false): `cargo run` builds only the
/// runner, and a stale workload binary would measure old code.
pub fn workload_binary(workspace: &Path, build: bool) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this executable: {e}"))?;
    let dir = exe.parent().ok_or("this executable has no directory")?;
    let bin = dir.join("rseqmalloc-workload");
    if build {
        let mut cmd = cargo();
        cmd.args([
            "build",
            "-p",
            "rseqmalloc-bench",
            "--bin",
            "rseqmalloc-workload",
        ]);
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(profile) => {
                cmd.args(["--profile", profile]);
            }
            None => {}
        }
        let status = cmd
            .arg("--manifest-path")
            .arg(workspace.join("Cargo.toml"))
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building rseqmalloc-workload failed ({status})"));
        }
    }
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found: build it with `cargo build --release -p rseqmalloc-bench`",
            bin.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(allocators: &[&str], extra: &[(&str, &str)]) -> Options {
        Options {
            allocators: Some(allocators.iter().map(|s| s.to_string()).collect()),
            extra: extra
                .iter()
                .map(|(n, p)| (n.to_string(), PathBuf::from(p)))
                .collect(),
            no_build: true,
            ..Options::default()
        }
    }

    #[test]
    fn glibc_needs_no_library_and_ghosts_are_skipped() {
        let o = opts(
            &["glibc", "ghost"],
            &[("ghost", "/nonexistent/libghost.so")],
        );
        let (found, skipped) = resolve(&o, Path::new("/nonexistent")).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "glibc");
        assert_eq!(found[0].preload, None);
        let version = found[0].version.as_deref().expect("glibc says its version");
        assert!(version.starts_with("2."), "{version}");
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].name, "ghost");
        assert!(skipped[0].reason.contains("/nonexistent/libghost.so"));
    }

    /// `--allocators` narrows the peers, never the candidates given beside it.
    #[test]
    fn a_candidate_is_selected_without_being_listed() {
        let mut o = opts(&["rseqmalloc", "glibc"], &[("before", "/tmp/before.so")]);
        o.candidates = vec!["before".into()];
        let names = selected_names(&o).unwrap();
        assert_eq!(names, ["rseqmalloc", "glibc", "before"]);
        o.candidates.clear();
        assert_eq!(selected_names(&o).unwrap(), ["rseqmalloc", "glibc"]);
    }

    /// `--env` reaches only the allocator it names; a later setting of a variable wins.
    #[test]
    fn env_settings_reach_their_allocator_only() {
        let mut o = opts(&["glibc"], &[("other", "/nonexistent/other.so")]);
        let setting = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        o.env = vec![
            setting("glibc", "A", "1"),
            setting("other", "A", "2"),
            setting("glibc", "B", "x=y"),
            setting("glibc", "A", "3"),
        ];
        let (found, _) = resolve(&o, Path::new("/nonexistent")).unwrap();
        assert_eq!(found[0].name, "glibc");
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(found[0].env, [pair("A", "3"), pair("B", "x=y")]);
        assert_eq!(env_of(&o, "other"), [pair("A", "2")]);
        assert!(env_of(&o, "tcmalloc").is_empty());
        o.env.push(setting("nosuch", "A", "1"));
        let err = resolve(&o, Path::new("/nonexistent")).unwrap_err();
        assert!(
            err.contains("--env for unknown allocator 'nosuch'"),
            "{err}"
        );
    }

    #[test]
    fn unknown_selection_is_an_error() {
        let err = resolve(&opts(&["glibc", "nosuch"], &[]), Path::new("/")).unwrap_err();
        assert!(err.contains("nosuch"), "{err}");
    }

    #[test]
    fn rseqmalloc_without_build_is_absent_until_built() {
        let err = rseqmalloc(
            Path::new("/nonexistent"),
            Path::new("/nonexistent/target"),
            false,
        )
        .unwrap_err();
        assert!(
            err.contains("/nonexistent/target/release/librseqmalloc.so not found"),
            "{err}"
        );
    }

    #[test]
    fn elf_exports_are_read() {
        let text = std::env::temp_dir().join(format!("not-an-elf-{}", std::process::id()));
        std::fs::write(&text, "not an elf").unwrap();
        assert_eq!(defines(&text, "malloc").unwrap(), None);
        assert_eq!(check_exports(Some(&text)), Ok(()), "let through");
        let _ = std::fs::remove_file(&text);
        let libc = find_library(&["libc.so.6"]).expect("glibc is installed");
        let libm = find_library(&["libm.so.6"]).expect("libm is installed");
        assert_eq!(defines(&libc, "malloc").unwrap(), Some(true));
        assert_eq!(defines(&libc, "no_such_symbol_here").unwrap(), Some(false));
        // libm imports malloc (undefined there) but does not define it.
        assert_eq!(defines(&libm, "malloc").unwrap(), Some(false));
        assert!(check_exports(Some(&libm))
            .unwrap_err()
            .contains("does not export malloc"));
        assert!(check_exports(Some(Path::new("/nonexistent.so")))
            .unwrap_err()
            .contains("cannot read"));
        assert_eq!(check_exports(None), Ok(()));
    }

    #[test]
    fn peers_name_their_package_and_version() {
        assert!(find_library(&["libdefinitely-not-here.so.9"]).is_none());
        for p in PEERS {
            match peer(p.name) {
                Err(e) => assert!(e.contains(p.package), "{e}"),
                Ok((lib, version)) => {
                    assert!(lib.is_some_and(|l| l.is_file()));
                    let v = version.unwrap_or_else(|| panic!("{}: no version", p.name));
                    assert!(v.starts_with(|c: char| c.is_ascii_digit()), "{v}");
                }
            }
        }
        assert_eq!(package_version("no-such-package-here"), None);
    }
}
