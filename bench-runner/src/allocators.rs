//! Which allocators a run compares and where their libraries are: rseqmalloc
//! (built from this workspace), glibc (no preload), the installed peers
//! (jemalloc, mimalloc, tcmalloc) and any `--allocator NAME=PATH`. Also owns
//! the cargo invocations that build librseqmalloc.so and the workload binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cli::Options;

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
        .collect()
}

/// The names of the allocators `opts` selects, in table order; an unknown
/// name in `--allocators` is an error.
pub fn selected_names(opts: &Options) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = builtin_names().into_iter().map(String::from).collect();
    for (name, _) in &opts.extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    if let Some(wanted) = &opts.allocators {
        if let Some(unknown) = wanted.iter().find(|w| !names.contains(w)) {
            return Err(format!(
                "unknown allocator '{unknown}' (known: {}; add others with --allocator NAME=PATH)",
                names.join(",")
            ));
        }
        names.retain(|n| wanted.contains(n));
    }
    Ok(names)
}

/// Resolves the allocators `opts` selects, building rseqmalloc first if it
/// is among them (and `--no-build` was not given). An allocator that cannot
/// be run is skipped, with the reason.
pub fn resolve(opts: &Options, workspace: &Path) -> Result<(Vec<Allocator>, Vec<Skipped>), String> {
    let names = selected_names(opts)?;
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for name in names {
        let located = if let Some((_, path)) = opts.extra.iter().rev().find(|(n, _)| *n == name) {
            existing(path)
        } else if name == GLIBC {
            Ok(None)
        } else if name == RSEQMALLOC {
            rseqmalloc(workspace, &target_dir(workspace), opts.build).map(Some)
        } else {
            peer(&name).map(Some)
        };
        match located.and_then(|preload| check_exports(preload.as_deref()).map(|()| preload)) {
            Ok(preload) => found.push(Allocator { name, preload }),
            Err(reason) => skipped.push(Skipped { name, reason }),
        }
    }
    Ok((found, skipped))
}

fn existing(path: &Path) -> Result<Option<PathBuf>, String> {
    if path.is_file() {
        Ok(Some(path.to_path_buf()))
    } else {
        Err(format!("{} not found", path.display()))
    }
}

/// Refuses a library that, by its ELF dynamic symbol table, does not define
/// `malloc`: preloading it would silently measure glibc under its name. A
/// file this parser cannot read is let through (the dynamic loader will
/// complain at run time, and that is reported per cell).
fn check_exports(preload: Option<&Path>) -> Result<(), String> {
    let Some(path) = preload else { return Ok(()) };
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match elf::defines(&bytes, "malloc") {
        Some(false) => Err(format!("{} does not export malloc", path.display())),
        _ => Ok(()),
    }
}

/// Just enough of ELF64 (little-endian) to look a name up in `.dynsym`.
mod elf {
    fn u16_at(b: &[u8], at: usize) -> Option<usize> {
        Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?).into())
    }

    fn u32_at(b: &[u8], at: usize) -> Option<usize> {
        usize::try_from(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?)).ok()
    }

    fn u64_at(b: &[u8], at: usize) -> Option<usize> {
        usize::try_from(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?)).ok()
    }

    /// Whether the dynamic symbol table defines `name`; `None` if `bytes`
    /// is not a 64-bit little-endian ELF file with one.
    pub fn defines(bytes: &[u8], name: &str) -> Option<bool> {
        const SHT_DYNSYM: usize = 11;
        if bytes.get(..6)? != b"\x7fELF\x02\x01" {
            return None;
        }
        let (shoff, shentsize, shnum) = (
            u64_at(bytes, 0x28)?,
            u16_at(bytes, 0x3a)?,
            u16_at(bytes, 0x3c)?,
        );
        let section = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
        let dynsym = (0..shnum).find_map(|i| {
            let at = section(i)?;
            (u32_at(bytes, at + 4)? == SHT_DYNSYM).then_some(at)
        })?;
        let (symoff, symsize, entsize) = (
            u64_at(bytes, dynsym + 24)?,
            u64_at(bytes, dynsym + 32)?,
            u64_at(bytes, dynsym + 56)?.max(24),
        );
        let strtab = section(u32_at(bytes, dynsym + 40)?)?;
        let stroff = u64_at(bytes, strtab + 24)?;
        let found = (0..symsize / entsize).any(|i| {
            let sym = symoff + i * entsize;
            let defined = u16_at(bytes, sym + 6).is_some_and(|shndx| shndx != 0);
            let name_at = u32_at(bytes, sym).map(|n| stroff + n);
            defined
                && name_at.is_some_and(|at| {
                    bytes
                        .get(at..)
                        .and_then(|rest| rest.split(|&c| c == 0).next())
                        .is_some_and(|sym_name| sym_name == name.as_bytes())
                })
        });
        Some(found)
    }
}

/// The first of `files` present in the usual library directories.
pub fn find_library(files: &[&str]) -> Option<PathBuf> {
    LIBRARY_DIRS
        .iter()
        .flat_map(|dir| files.iter().map(move |f| Path::new(dir).join(f)))
        .find(|p| p.is_file())
}

fn peer(name: &str) -> Result<PathBuf, String> {
    let peer = PEERS.iter().find(|p| p.name == name).expect("known peer");
    find_library(peer.files)
        .ok_or_else(|| format!("not installed (apt-get install {})", peer.package))
}

/// The cargo to run: the one that started us (`CARGO`), else `cargo` on PATH.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The workspace's target directory, as cargo itself resolves it
/// (`CARGO_TARGET_DIR`, `build.target-dir`, ...) per `cargo metadata`; if
/// cargo cannot say, `CARGO_TARGET_DIR` (relative to the current directory,
/// as cargo reads it) or `<workspace>/target`.
pub fn target_dir(workspace: &Path) -> PathBuf {
    let metadata = cargo()
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
        .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok());
    if let Some(dir) = metadata
        .as_ref()
        .and_then(|m| m["target_directory"].as_str())
    {
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
            build: false,
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
        assert_eq!(
            found,
            [Allocator {
                name: "glibc".into(),
                preload: None
            }]
        );
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].name, "ghost");
        assert!(skipped[0].reason.contains("/nonexistent/libghost.so"));
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
        assert_eq!(elf::defines(b"not an elf", "malloc"), None);
        let libc = find_library(&["libc.so.6"]).expect("glibc is installed");
        let libm = find_library(&["libm.so.6"]).expect("libm is installed");
        let libc = std::fs::read(libc).unwrap();
        assert_eq!(elf::defines(&libc, "malloc"), Some(true));
        assert_eq!(elf::defines(&libc, "no_such_symbol_here"), Some(false));
        assert_eq!(
            elf::defines(&std::fs::read(&libm).unwrap(), "malloc"),
            Some(false)
        );
        assert!(check_exports(Some(&libm))
            .unwrap_err()
            .contains("does not export malloc"));
        assert_eq!(check_exports(None), Ok(()));
    }

    #[test]
    fn missing_peer_names_its_package() {
        assert!(find_library(&["libdefinitely-not-here.so.9"]).is_none());
        for p in PEERS {
            if find_library(p.files).is_none() {
                assert!(peer(p.name).unwrap_err().contains(p.package));
            }
        }
    }
}
