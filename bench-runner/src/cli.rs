//! The command line of `rseqmalloc-bench`: a small hand-written parser
//! (`--flag value` or `--flag=value`) into [`Options`], and the help text.

use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
rseqmalloc-bench: run allocation workloads under rseqmalloc, glibc, jemalloc,
mimalloc and tcmalloc side by side, and print time, CPU time and peak RSS.

usage: cargo run --release -p rseqmalloc-bench [-- OPTIONS]

options:
  --quick                 small scales and 1 repetition (well under 30 s)
  --repeat N              repetitions of every (workload, allocator) [3; 1 with --quick]
  --workloads A,B         run only these workloads (see --list)
  --allocators A,B        use only these allocators, by name
  --allocator NAME=PATH   add (or replace) an allocator: a malloc .so for LD_PRELOAD; repeatable
  --no-build              do not run cargo to build librseqmalloc.so or the workload binary
  --timeout SECS          kill a run after SECS seconds and report it as a timeout [60]
  --scale F               multiply every workload's scale by F [1]
  --json PATH             write every cell as JSON to PATH ('-' = stdout; the table goes to stderr)
  --csv PATH              write every cell as CSV to PATH ('-' = stdout; the table goes to stderr)
  --svg PATH              where to write the chart [<workspace>/bench-out/allocators.svg]
  --list                  list the workloads and the allocators found, then exit
  -h, --help              print this help
";

/// Where a machine-readable report goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    Stdout,
    File(PathBuf),
}

impl Sink {
    fn parse(value: String) -> Sink {
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
    /// `--allocator NAME=PATH`, in the order given.
    pub extra: Vec<(String, PathBuf)>,
    pub build: bool,
    pub timeout: Duration,
    pub scale: f64,
    pub json: Option<Sink>,
    pub csv: Option<Sink>,
    pub svg: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quick: false,
            repeat: 3,
            workloads: None,
            allocators: None,
            extra: Vec::new(),
            build: true,
            timeout: Duration::from_secs(60),
            scale: 1.0,
            json: None,
            csv: None,
            svg: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(Options),
    List(Options),
    Help,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut opts = Options::default();
    let mut repeat = None;
    let mut list = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--list" => list = true,
            "--quick" => opts.quick = true,
            "--no-build" => opts.build = false,
            "--repeat" => repeat = Some(number::<usize>(&value()?).filter(|n| *n > 0)),
            "--timeout" => {
                let secs = number::<f64>(&value()?).filter(|s| *s > 0.0 && s.is_finite());
                opts.timeout = Duration::from_secs_f64(secs.ok_or("--timeout must be > 0")?);
            }
            "--scale" => {
                let scale = number::<f64>(&value()?).filter(|s| *s > 0.0 && s.is_finite());
                opts.scale = scale.ok_or("--scale must be > 0")?;
            }
            "--workloads" => opts.workloads = Some(list_of(&value()?)),
            "--allocators" => opts.allocators = Some(list_of(&value()?)),
            "--allocator" => {
                let v = value()?;
                match v.split_once('=') {
                    Some((name, path)) if valid_name(name) && !path.is_empty() => {
                        opts.extra.push((name.to_string(), path.into()))
                    }
                    _ => return Err(format!("--allocator wants NAME=PATH, got '{v}'")),
                }
            }
            "--json" => opts.json = Some(Sink::parse(value()?)),
            "--csv" => opts.csv = Some(Sink::parse(value()?)),
            "--svg" => opts.svg = Some(value()?.into()),
            _ => return Err(format!("unknown argument '{flag}' (see --help)")),
        }
        if inline.is_some() && matches!(flag.as_str(), "--quick" | "--no-build" | "--list") {
            return Err(format!("{flag} takes no value"));
        }
    }
    match repeat {
        Some(None) => return Err("--repeat wants a whole number > 0".into()),
        Some(Some(n)) => opts.repeat = n,
        None if opts.quick => opts.repeat = 1,
        None => {}
    }
    if opts.json == Some(Sink::Stdout) && opts.csv == Some(Sink::Stdout) {
        return Err("only one of --json and --csv can write to stdout".into());
    }
    Ok(if list {
        Command::List(opts)
    } else {
        Command::Run(opts)
    })
}

/// `Some(n)` if `text` parses; `None` (reported by the caller) if not.
fn number<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.trim().parse().ok()
}

fn list_of(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Allocator names are used as table labels and JSON keys: keep them plain.
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
        match parse(args.iter().map(|s| s.to_string()))? {
            Command::Run(o) => Ok(o),
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let o = run(&[]).unwrap();
        assert_eq!(o, Options::default());
        assert_eq!(o.repeat, 3);
        assert!(o.build);
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
            "larson, single-churn",
            "--allocators=glibc,jemalloc",
            "--allocator",
            "ghost=/x/libghost.so",
            "--allocator=other=/y.so",
            "--json",
            "-",
            "--csv=out.csv",
            "--svg",
            "c.svg",
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
        assert!(!o.build);
        assert_eq!(o.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            &["--repeat", "0"][..],
            &["--repeat"],
            &["--timeout", "-1"],
            &["--allocator", "noequals"],
            &["--allocator", "bad name=/x.so"],
            &["--frobnicate"],
            &["--quick=yes"],
            &["--json", "-", "--csv", "-"],
        ] {
            assert!(parse(bad.iter().map(|s| s.to_string())).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn help_and_list() {
        assert_eq!(parse(["-h".to_string()]).unwrap(), Command::Help);
        assert!(matches!(
            parse(["--list".to_string()]).unwrap(),
            Command::List(_)
        ));
    }
}
