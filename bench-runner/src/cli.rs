//! The command line of `rseqmalloc-bench`: lexopt splits it (`--flag value`,
//! `--flag=value`, a value where none belongs, an unknown flag), this file
//! checks each value into [`Options`] and holds the help text.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;

pub const USAGE: &str = "\
rseqmalloc-bench: run allocation workloads under rseqmalloc, glibc and the peer allocators side
by side (jemalloc, mimalloc, tcmalloc from Debian; mimalloc 3 and snmalloc built from their
crates' sources), and print time, CPU time, page faults and peak RSS with the spread of the
repetitions.

usage: cargo run --release -p rseqmalloc-bench [-- OPTIONS]

options:
  --quick                 small scales and 1 repetition: indicative only, about 30 s
  --repeat N              repetitions of every (workload, allocator) [3; 1 with --quick]
  --workloads A,B         run only these workloads (see --list); they run in catalog order
  --allocators A,B        use only these allocators, by name
  --allocator NAME=PATH   add (or replace) an allocator: a malloc .so for LD_PRELOAD; repeatable
  --candidate NAME=PATH   add another build of rseqmalloc (e.g. the one before a change), run
                          side by side: compared with rseqmalloc, never counted as a peer, run
                          even when --allocators leaves it out; with --repeat 3 or more, each
                          workload's runs are paired pass by pass, with a confidence interval
  --env NAME:VAR=VALUE    set VAR=VALUE in the environment of NAME's runs only (e.g.
                          --candidate off=target/release/librseqmalloc.so
                          --env off:RSEQMALLOC_OPTIONS=owner_return=off); repeatable
  --no-build              build nothing: no cargo for librseqmalloc.so or the workload binary,
                          no peer from source
  --timeout SECS          kill a run after SECS seconds and report it as a timeout [60]
  --scale F               multiply every workload's scale by F [1]
  --json PATH             write every cell as JSON to PATH ('-' = stdout; the table goes to stderr)
  --csv PATH              write every cell as CSV to PATH ('-' = stdout; the table goes to stderr)
  --svg PATH              where to write the chart [<workspace>/bench-out/allocators.svg]
  --baseline PATH         print the change of every figure against an earlier run's --json report
  --list                  list the workloads and the allocators found, then exit
  -h, --help              print this help

--quick is indicative only: one repetition of small scales, whose figures can move by 1.5x
between two runs on a busy machine. Compare allocators with the default run.
What each dependency is for: docs/design.md, section Dependencies.
";

/// Where a machine-readable report goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    Stdout,
    File(PathBuf),
}

impl Sink {
    fn from(value: OsString) -> Sink {
        if value == "-" {
            Sink::Stdout
        } else {
            Sink::File(value.into())
        }
    }
}

/// Everything a run was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub quick: bool,
    pub repeat: usize,
    pub workloads: Option<Vec<String>>,
    pub allocators: Option<Vec<String>>,
    /// `--allocator NAME=PATH` and `--candidate NAME=PATH`, in the order given.
    pub extra: Vec<(String, PathBuf)>,
    /// The names given with `--candidate`: other builds of rseqmalloc, not peers.
    pub candidates: Vec<String>,
    /// `--env NAME:VAR=VALUE`: (allocator, variable, value), in the order given.
    pub env: Vec<(String, String, String)>,
    pub no_build: bool,
    pub timeout: Duration,
    pub scale: f64,
    pub json: Option<Sink>,
    pub csv: Option<Sink>,
    pub svg: Option<PathBuf>,
    pub baseline: Option<PathBuf>,
    pub list: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quick: false,
            repeat: 3,
            workloads: None,
            allocators: None,
            extra: Vec::new(),
            candidates: Vec::new(),
            env: Vec::new(),
            no_build: false,
            timeout: Duration::from_secs(60),
            scale: 1.0,
            json: None,
            csv: None,
            svg: None,
            baseline: None,
            list: false,
        }
    }
}

impl Options {
    /// Whether to build what is run (librseqmalloc.so, the workload binary, the source peers).
    pub fn builds(&self) -> bool {
        !self.no_build
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(Box<Options>),
    Help,
}

/// Parses the arguments after the program name; `Err` is the message for a
/// bad command line (exit status 2).
pub fn parse(args: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Command, String> {
    let mut opts = Options::default();
    let mut repeat = None;
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let flag = match &arg {
            Long(name) => format!("--{name}"),
            Short(c) => format!("-{c}"),
            Value(_) => String::new(),
        };
        let value = |parser: &mut lexopt::Parser| parser.value().map_err(|e| e.to_string());
        let checked = |parser: &mut lexopt::Parser,
                       check: fn(&str) -> Result<f64, &'static str>| {
            value(parser)?
                .parse_with(check)
                .map_err(|e| format!("{flag}: {e}"))
        };
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("list") => opts.list = true,
            Long("quick") => opts.quick = true,
            Long("no-build") => opts.no_build = true,
            Long("repeat") => repeat = Some(checked(&mut parser, whole_number)? as usize),
            Long("timeout") => {
                opts.timeout = Duration::from_secs_f64(checked(&mut parser, positive)?)
            }
            Long("scale") => opts.scale = checked(&mut parser, positive)?,
            Long("workloads") => opts.workloads = Some(list_of(value(&mut parser)?)),
            Long("allocators") => opts.allocators = Some(list_of(value(&mut parser)?)),
            Long(which @ ("allocator" | "candidate")) => {
                let which = which.to_string();
                let v = value(&mut parser)?.string().map_err(|e| e.to_string())?;
                match v.split_once('=') {
                    Some((name, path)) if valid_name(name) && !path.is_empty() => {
                        let candidate = which == "candidate";
                        if candidate && name == crate::allocators::RSEQMALLOC {
                            return Err(format!(
                                "--candidate needs a name of its own, not '{name}'"
                            ));
                        }
                        opts.candidates.retain(|n| n != name);
                        if candidate {
                            opts.candidates.push(name.to_string());
                        }
                        opts.extra.push((name.to_string(), path.into()))
                    }
                    _ => return Err(format!("--{which} wants NAME=PATH, got '{v}'")),
                }
            }
            Long("env") => {
                let v = value(&mut parser)?.string().map_err(|e| e.to_string())?;
                opts.env.push(env_setting(&v)?);
            }
            Long("json") => opts.json = Some(Sink::from(value(&mut parser)?)),
            Long("csv") => opts.csv = Some(Sink::from(value(&mut parser)?)),
            Long("svg") => opts.svg = Some(value(&mut parser)?.into()),
            Long("baseline") => opts.baseline = Some(value(&mut parser)?.into()),
            _ => return Err(format!("{} (see --help)", arg.unexpected())),
        }
    }
    opts.repeat = repeat.unwrap_or(if opts.quick { 1 } else { 3 });
    if opts.json == Some(Sink::Stdout) && opts.csv == Some(Sink::Stdout) {
        return Err("only one of --json and --csv can write to stdout".into());
    }
    Ok(Command::Run(Box::new(opts)))
}

fn whole_number(text: &str) -> Result<f64, &'static str> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n as f64),
        _ => Err("wants a whole number > 0"),
    }
}

fn positive(text: &str) -> Result<f64, &'static str> {
    match text.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err("wants a number > 0"),
    }
}

/// A comma-separated list, items trimmed, empty ones dropped.
fn list_of(value: OsString) -> Vec<String> {
    value
        .to_string_lossy()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// `NAME:VAR=VALUE` as (allocator, variable, value). `LD_PRELOAD` is the allocator's own.
fn env_setting(text: &str) -> Result<(String, String, String), String> {
    let parsed = text.split_once(':').and_then(|(name, setting)| {
        let (var, value) = setting.split_once('=')?;
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '_';
        (valid_name(name) && !var.is_empty() && var.chars().all(plain))
            .then(|| (name.to_string(), var.to_string(), value.to_string()))
    });
    match parsed {
        Some((_, var, _)) if var == "LD_PRELOAD" => Err(
            "--env cannot set LD_PRELOAD: give the library with --allocator or --candidate".into(),
        ),
        Some(setting) => Ok(setting),
        None => Err(format!("--env wants NAME:VAR=VALUE, got '{text}'")),
    }
}

/// Allocator names are table labels and JSON keys: keep them plain.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().copied())? {
            Command::Run(o) => Ok(*o),
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let o = run(&[]).unwrap();
        assert_eq!(o, Options::default());
        assert_eq!(o.repeat, 3);
        assert_eq!(o.timeout, Duration::from_secs(60));
        assert!(o.builds() && !o.quick && !o.list);
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
        assert!(!o.builds());
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
        assert_eq!(o.timeout, Duration::from_millis(2500));
        assert!(o.candidates.is_empty());
    }

    #[test]
    fn candidates_are_extra_allocators_marked_as_such() {
        let o = run(&[
            "--candidate",
            "before=/a.so",
            "--allocator=ghost=/b.so",
            "--candidate=ghost=/c.so",
            "--candidate=other=/d.so",
            "--allocator",
            "other=/e.so",
        ])
        .unwrap();
        // The last flag for a name decides what it is.
        assert_eq!(o.candidates, ["before", "ghost"]);
        assert_eq!(o.extra.len(), 5);
        assert_eq!(o.extra[4], ("other".to_string(), PathBuf::from("/e.so")));
    }

    #[test]
    fn env_settings_keep_everything_after_the_first_equals_sign() {
        let o = run(&[
            "--env",
            "off:RSEQMALLOC_OPTIONS=owner_return=off,stats=text",
            "--env=tc:EMPTY=",
        ])
        .unwrap();
        let setting = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            o.env,
            [
                setting("off", "RSEQMALLOC_OPTIONS", "owner_return=off,stats=text"),
                setting("tc", "EMPTY", "")
            ]
        );
    }

    #[test]
    fn rejects_bad_input() {
        for (bad, says) in [
            (&["--repeat", "0"][..], "--repeat: "),
            (&["--repeat"], "missing argument for option '--repeat'"),
            (&["--timeout", "-1"], "--timeout: "),
            (&["--scale", "inf"], "--scale: "),
            (&["--allocator", "noequals"], "wants NAME=PATH"),
            (&["--allocator", "bad name=/x.so"], "wants NAME=PATH"),
            (&["--candidate", "noequals"], "--candidate wants NAME=PATH"),
            (
                &["--candidate", "rseqmalloc=/x.so"],
                "needs a name of its own",
            ),
            (
                &["--frobnicate"],
                "invalid option '--frobnicate' (see --help)",
            ),
            (&["--quick=yes"], "unexpected argument for option '--quick'"),
            (&["--json", "-", "--csv", "-"], "only one of"),
            (&["--env", "off"], "--env wants NAME:VAR=VALUE"),
            (&["--env", "off:=1"], "--env wants NAME:VAR=VALUE"),
            (&["--env", "off:A B=1"], "--env wants NAME:VAR=VALUE"),
            (&["--env", "bad name:A=1"], "--env wants NAME:VAR=VALUE"),
            (&["--env", "off:LD_PRELOAD=/x.so"], "cannot set LD_PRELOAD"),
        ] {
            let err = run(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn help_and_list() {
        assert_eq!(parse(["-h"]).unwrap(), Command::Help);
        assert_eq!(parse(["--list", "--help"]).unwrap(), Command::Help);
        assert!(run(&["--list"]).unwrap().list);
        assert!(USAGE.contains("--allocator NAME=PATH") && USAGE.contains("indicative only"));
        assert!(USAGE.contains("--env NAME:VAR=VALUE"));
    }
}
