//! The peers built from source: mimalloc 3 and snmalloc, from the C and
//! C++ sources bundled in their Rust crates (`libmimalloc-sys`,
//! `snmalloc-sys`). Cargo downloads and unpacks the crates (`cargo metadata`
//! on `bench-runner/peers/Cargo.toml`, a manifest of its own that is never
//! built), and the runner compiles each allocator once as an `LD_PRELOAD`
//! library into `<target>/peers/<name>-<version>/`, where later runs find it.
//! A missing compiler or cmake, or no way to fetch the crates, skips the
//! peer with one line; the tests (`--no-build`) only use what is cached.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A peer built from a crate's bundled sources.
pub struct SourcePeer {
    pub name: &'static str,
    /// The crate that bundles the sources.
    krate: &'static str,
    /// The library file the build leaves in the peer's directory.
    file: &'static str,
    /// The programs the build runs, each with the Debian package that has it.
    tools: &'static [(&'static str, &'static str)],
    /// The allocator's version, from its sources and the crate's version.
    version: fn(source: &Path, crate_version: &str) -> String,
    /// Builds `file` into the directory given, logging to the file given.
    build: fn(source: &Path, out: &Path, log: &Path) -> Result<(), String>,
}

pub const SOURCE_PEERS: &[SourcePeer] = &[
    SourcePeer {
        name: "mimalloc3",
        krate: "libmimalloc-sys",
        file: "libmimalloc.so",
        tools: &[("cc", "gcc")],
        version: mimalloc_version,
        build: build_mimalloc,
    },
    SourcePeer {
        name: "snmalloc",
        krate: "snmalloc-sys",
        file: "libsnmallocshim.so",
        tools: &[("cmake", "cmake"), ("c++", "g++")],
        version: |_, crate_version| crate_version.to_string(),
        build: build_snmalloc,
    },
];

pub fn find(name: &str) -> Option<&'static SourcePeer> {
    SOURCE_PEERS.iter().find(|p| p.name == name)
}

/// The peer's library and its version: the cached build if there is one,
/// else (when `build`) built now. `Err` is the reason to skip it.
pub fn locate(
    peer: &SourcePeer,
    workspace: &Path,
    target: &Path,
    build: bool,
) -> Result<(PathBuf, String), String> {
    let peers_dir = target.join("peers");
    if !build {
        return cached(peer, &peers_dir).ok_or_else(|| {
            format!(
                "not built yet (the runner builds it into {} when run without --no-build)",
                peers_dir.display()
            )
        });
    }
    let (source, crate_version) = source_of(peer.krate, workspace)?;
    let version = (peer.version)(&source, &crate_version);
    let dir = peers_dir.join(format!("{}-{version}", peer.name));
    let lib = dir.join(peer.file);
    let label = format!("{version} ({} {crate_version})", peer.krate);
    if lib.is_file() {
        return Ok((lib, label));
    }
    for (tool, package) in peer.tools {
        if !runs(tool) {
            return Err(format!("needs {tool} to build (apt-get install {package})"));
        }
    }
    eprintln!(
        "building {} {version} from {} {crate_version} into {} (once)",
        peer.name,
        peer.krate,
        dir.display()
    );
    let work = peers_dir.join(format!("{}-{version}.build", peer.name));
    let log = peers_dir.join(format!("{}-{version}.log", peer.name));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    (peer.build)(&source, &work, &log)?;
    // Only a finished library gets the final name: an interrupted build is redone.
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::write(dir.join(LABEL), &label)
        .and_then(|()| std::fs::rename(work.join(peer.file), &lib))
        .map_err(|e| format!("cannot keep the built {}: {e}", peer.file))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok((lib, label))
}

/// The file beside a built library that holds its version label.
const LABEL: &str = "version";

/// The newest cached build of `peer`, with its version label.
fn cached(peer: &SourcePeer, peers_dir: &Path) -> Option<(PathBuf, String)> {
    let prefix = format!("{}-", peer.name);
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(peers_dir)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let version = name.strip_prefix(&prefix)?;
            let dir = peers_dir.join(&name);
            let lib = dir.join(peer.file);
            if version.ends_with(".build") || !lib.is_file() {
                return None;
            }
            let label = std::fs::read_to_string(dir.join(LABEL))
                .map_or_else(|_| version.to_string(), |l| l.trim().to_string());
            Some((label, lib))
        })
        .collect();
    found.sort();
    found.pop().map(|(label, lib)| (lib, label))
}

/// A package cargo resolved for the peers' manifest: name, version, directory.
type Package = (String, String, PathBuf);

/// Where cargo unpacked `krate` (downloading it if needed), and its version.
fn source_of(krate: &str, workspace: &Path) -> Result<(PathBuf, String), String> {
    static PACKAGES: OnceLock<Result<Vec<Package>, String>> = OnceLock::new();
    let packages = PACKAGES.get_or_init(|| {
        let manifest = workspace
            .join("bench-runner")
            .join("peers")
            .join("Cargo.toml");
        let out = crate::allocators::cargo()
            .args([
                "metadata",
                "--format-version",
                "1",
                "--locked",
                "--manifest-path",
            ])
            .arg(&manifest)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
            return Err(format!("cannot fetch its crate's sources ({last})"));
        }
        let metadata: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("cargo metadata printed no JSON: {e}"))?;
        Ok(metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let dir = Path::new(p["manifest_path"].as_str()?).parent()?;
                Some((
                    p["name"].as_str()?.to_string(),
                    p["version"].as_str()?.to_string(),
                    dir.to_path_buf(),
                ))
            })
            .collect())
    });
    let packages = packages.as_ref().map_err(String::clone)?;
    packages
        .iter()
        .find(|(name, _, _)| name == krate)
        .map(|(_, version, dir)| (dir.clone(), version.clone()))
        .ok_or_else(|| format!("{krate} is not in bench-runner/peers/Cargo.toml"))
}

/// Whether `tool --version` runs.
fn runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs one build step, appending its output to `log`.
fn step(cmd: &mut Command, log: &Path) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    let err = file
        .try_clone()
        .map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed ({status}); see {}",
            cmd.get_program(),
            log.display()
        ))
    }
}

/// `MI_MALLOC_VERSION 30302` in `mimalloc.h` is 3.3.2.
fn mimalloc_version(source: &Path, crate_version: &str) -> String {
    let header = source.join("c_src/mimalloc/v3/include/mimalloc.h");
    std::fs::read_to_string(header)
        .ok()
        .and_then(|text| {
            let line = text
                .lines()
                .find(|l| l.contains("#define MI_MALLOC_VERSION"))?;
            let n: u32 = line.split_whitespace().nth(2)?.parse().ok()?;
            Some(format!("{}.{}.{}", n / 10000, n / 100 % 100, n % 100))
        })
        .unwrap_or_else(|| format!("from libmimalloc-sys {crate_version}"))
}

/// mimalloc as its CMake build makes the shared library on Linux, in one
/// translation unit (`static.c`, which the crate's own build compiles too).
fn build_mimalloc(source: &Path, out: &Path, log: &Path) -> Result<(), String> {
    let v3 = source.join("c_src/mimalloc/v3");
    let mut cc = Command::new("cc");
    cc.args([
        "-O3",
        "-DNDEBUG",
        "-DMI_BUILD_RELEASE",
        "-DMI_MALLOC_OVERRIDE",
        "-DMI_SHARED_LIB",
        "-DMI_SHARED_LIB_EXPORT",
        "-fPIC",
        "-shared",
        "-fvisibility=hidden",
        "-ftls-model=initial-exec",
        "-fno-builtin-malloc",
        "-Wno-unknown-pragmas",
    ])
    .arg("-I")
    .arg(v3.join("include"))
    .arg(v3.join("src/static.c"))
    .arg("-o")
    .arg(out.join("libmimalloc.so"))
    .args(["-lpthread", "-lrt", "-latomic"]);
    step(&mut cc, log)
}

/// snmalloc's own CMake build of its `LD_PRELOAD` shim, `libsnmallocshim.so`.
fn build_snmalloc(source: &Path, out: &Path, log: &Path) -> Result<(), String> {
    let build = out.join("cmake");
    step(
        Command::new("cmake")
            .arg("-S")
            .arg(source.join("upstream"))
            .arg("-B")
            .arg(&build)
            .args(["-DCMAKE_BUILD_TYPE=Release", "-DSNMALLOC_BUILD_TESTING=OFF"]),
        log,
    )?;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    step(
        Command::new("cmake")
            .arg("--build")
            .arg(&build)
            .args(["--target", "snmallocshim", "-j"])
            .arg(jobs.to_string()),
        log,
    )?;
    std::fs::rename(
        build.join("libsnmallocshim.so"),
        out.join("libsnmallocshim.so"),
    )
    .map_err(|e| format!("cmake left no libsnmallocshim.so: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_build_only_the_cache_counts() {
        let dir = std::env::temp_dir().join(format!("peers-test-{}", std::process::id()));
        let target = dir.join("target");
        let peer = find("snmalloc").expect("known");
        let err = locate(peer, &dir, &target, false).unwrap_err();
        assert!(err.contains("not built yet"), "{err}");
        let cached_dir = target.join("peers").join("snmalloc-0.7.6");
        std::fs::create_dir_all(&cached_dir).unwrap();
        std::fs::write(cached_dir.join("libsnmallocshim.so"), b"").unwrap();
        assert_eq!(
            locate(peer, &dir, &target, false).unwrap(),
            (cached_dir.join("libsnmallocshim.so"), "0.7.6".to_string())
        );
        std::fs::write(cached_dir.join(LABEL), "0.7.6 (snmalloc-sys 0.7.6)\n").unwrap();
        // An interrupted build is not a cached one.
        let partial = target.join("peers").join("snmalloc-0.7.7.build");
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join("libsnmallocshim.so"), b"").unwrap();
        assert_eq!(
            locate(peer, &dir, &target, false).unwrap().1,
            "0.7.6 (snmalloc-sys 0.7.6)"
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert!(find("nosuch").is_none());
    }

    #[test]
    fn mimalloc_version_reads_the_header() {
        let dir = std::env::temp_dir().join(format!("mi-version-{}", std::process::id()));
        let include = dir.join("c_src/mimalloc/v3/include");
        std::fs::create_dir_all(&include).unwrap();
        std::fs::write(
            include.join("mimalloc.h"),
            "#pragma once\n#define MI_MALLOC_VERSION 30302   // major + 2 digits\n",
        )
        .unwrap();
        assert_eq!(mimalloc_version(&dir, "0.1.49"), "3.3.2");
        assert_eq!(
            mimalloc_version(Path::new("/nonexistent"), "0.1.49"),
            "from libmimalloc-sys 0.1.49"
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!runs("/nonexistent/tool"));
    }
}
