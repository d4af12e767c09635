//! The command line of `rseqmalloc-bench`, declared with clap's derive: the
//! flags, their defaults and their checks live on [`Options`] itself, and
//! clap writes `--help` and the error messages (exit status 2) from it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::ArgPredicate;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

const ABOUT: &str = "\
Run allocation workloads under rseqmalloc, glibc and the peer allocators side by side
(jemalloc, mimalloc, tcmalloc from Debian; mimalloc 3 and snmalloc built from their crates'
sources), and print time, CPU time, page faults and peak RSS with the spread of the repetitions.";

const AFTER_HELP: &str = "\
--quick is indicative only: one repetition of small scales, whose figures can move by 1.5x
between two runs on a busy machine. Compare allocators with the default run.
What each dependency is for: docs/design.md, section Dependencies.";

/// Where a machine-readable report goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    Stdout,
    File(PathBuf),
}

fn sink(value: &str) -> Result<Sink, String> {
    Ok(if value == "-" {
        Sink::Stdout
    } else {
        Sink::File(value.into())
    })
}

/// Everything a run was asked to do.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(name = "rseqmalloc-bench", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Options {
    /// Small scales and 1 repetition: indicative only, about 30 s
    #[arg(long)]
    pub quick: bool,
    /// Repetitions of every (workload, allocator) [default: 3; 1 with --quick]
    #[arg(
        long,
        value_name = "N",
        default_value = "3",
        default_value_if("quick", ArgPredicate::Equals("true".into()), "1"),
        hide_default_value = true,
        value_parser = whole_number
    )]
    pub repeat: usize,
    /// Run only these workloads (see --list); they run in catalog order
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub workloads: Option<Vec<String>>,
    /// Use only these allocators, by name
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub allocators: Option<Vec<String>>,
    /// Add (or replace) an allocator: a malloc .so for LD_PRELOAD; repeatable
    #[arg(long = "allocator", value_name = "NAME=PATH", value_parser = named_path)]
    pub extra: Vec<(String, PathBuf)>,
    /// Build nothing: no cargo for librseqmalloc.so or the workload binary, no peer from source
    #[arg(long)]
    pub no_build: bool,
    /// Kill a run after SECS seconds and report it as a timeout
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    pub timeout: Duration,
    /// Multiply every workload's scale by F
    #[arg(long, value_name = "F", default_value = "1", value_parser = positive)]
    pub scale: f64,
    /// Write every cell as JSON to PATH ('-' = stdout; the table goes to stderr)
    #[arg(long, value_name = "PATH", value_parser = sink)]
    pub json: Option<Sink>,
    /// Write every cell as CSV to PATH ('-' = stdout; the table goes to stderr)
    #[arg(long, value_name = "PATH", value_parser = sink)]
    pub csv: Option<Sink>,
    /// Where to write the chart [default: <workspace>/bench-out/allocators.svg]
    #[arg(long, value_name = "PATH")]
    pub svg: Option<PathBuf>,
    /// Print the change of every figure against an earlier run's --json report
    #[arg(long, value_name = "PATH")]
    pub baseline: Option<PathBuf>,
    /// List the workloads and the allocators found, then exit
    #[arg(long)]
    pub list: bool,
}

impl Default for Options {
    fn default() -> Self {
        parse(["rseqmalloc-bench"]).expect("the defaults parse")
    }
}

impl Options {
    /// Whether to build what is run (librseqmalloc.so, the workload binary, the source peers).
    pub fn builds(&self) -> bool {
        !self.no_build
    }
}

/// Parses a command line (program name first). Errors, `--help` and
/// `--version` come back as clap errors, which print and exit themselves.
pub fn parse<I, T>(args: I) -> Result<Options, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut opts = Options::try_parse_from(args)?;
    for list in [&mut opts.workloads, &mut opts.allocators]
        .into_iter()
        .flatten()
    {
        *list = list
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    if opts.json == Some(Sink::Stdout) && opts.csv == Some(Sink::Stdout) {
        return Err(Options::command().error(
            ErrorKind::ArgumentConflict,
            "only one of --json and --csv can write to stdout",
        ));
    }
    Ok(opts)
}

fn whole_number(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("wants a whole number > 0".into()),
    }
}

fn positive(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err("wants a number > 0".into()),
    }
}

fn seconds(text: &str) -> Result<Duration, String> {
    positive(text).map(Duration::from_secs_f64)
}

/// `NAME=PATH`; allocator names are table labels and JSON keys, so plain.
fn named_path(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, path)) if valid_name(name) && !path.is_empty() => {
            Ok((name.to_string(), path.into()))
        }
        _ => Err("wants NAME=PATH, NAME of letters, digits, '-', '_' and '.'".into()),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, clap::Error> {
        parse(std::iter::once("rseqmalloc-bench").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let o = run(&[]).unwrap();
        assert_eq!(o, Options::default());
        assert_eq!(o.repeat, 3);
        assert_eq!(o.timeout, Duration::from_secs(60));
        assert_eq!(o.scale, 1.0);
        assert!(o.builds() && !o.quick && !o.list);
        Options::command().debug_assert();
    }

    #[test]
    fn quick_means_one_repetition_unless_told() {
        assert_eq!(run(&["--quick"]).unwrap().repeat, 1);
        assert_eq!(run(&["--quick", "--repeat", "2"]).unwrap().repeat, 2);
        assert_eq!(run(&["--repeat=5", "--quick"]).unwrap().repeat, 5);
    }

    #[test]
    fn lists_paths_and_sinks() {
        let o = run(&[
            "--workloads",
            "larson, single-churn,",
            "--allocators=glibc,jemalloc",
            "--allocator",
            "ghost=/x/libghost.so",
            "--allocator=other=/y.so",
            "--json",
            "-",
            "--csv=out.csv",
            "--svg",
            "c.svg",
            "--baseline",
            "old.json",
            "--no-build",
            "--timeout",
            "2.5",
        ])
        .unwrap();
        assert_eq!(o.workloads.unwrap(), ["larson", "single-churn"]);
        assert_eq!(o.allocators.unwrap(), ["glibc", "jemalloc"]);
        assert_eq!(
            o.extra,
            [
                ("ghost".to_string(), PathBuf::from("/x/libghost.so")),
                ("other".to_string(), PathBuf::from("/y.so"))
            ]
        );
        assert_eq!(o.json, Some(Sink::Stdout));
        assert_eq!(o.csv, Some(Sink::File("out.csv".into())));
        assert_eq!(o.svg, Some(PathBuf::from("c.svg")));
        assert_eq!(o.baseline, Some(PathBuf::from("old.json")));
        assert!(o.no_build);
        assert_eq!(o.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            &["--repeat", "0"][..],
            &["--repeat"],
            &["--timeout", "-1"],
            &["--scale", "inf"],
            &["--allocator", "noequals"],
            &["--allocator", "bad name=/x.so"],
            &["--frobnicate"],
            &["--quick=yes"],
            &["--json", "-", "--csv", "-"],
        ] {
            let err = run(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
    }

    #[test]
    fn help_and_list() {
        let help = run(&["-h"]).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        assert_eq!(help.exit_code(), 0);
        let text = help.to_string();
        assert!(text.contains("--allocator <NAME=PATH>"), "{text}");
        assert!(text.contains("indicative only"), "{text}");
        assert!(run(&["--list"]).unwrap().list);
    }
}
