//! `rseqmalloc-bench`: answers "is rseqmalloc faster and smaller than what I
//! use now?" by running the workloads of `rseqmalloc-workload` as child
//! processes under each allocator (via `LD_PRELOAD`) and reporting wall time,
//! CPU time and peak RSS side by side, as a table, JSON, CSV and an SVG chart.
//!
//! This file only wires the modules together: `cli` (arguments),
//! `allocators` and `peers` (which libraries, building rseqmalloc and the
//! source peers), `run` and `measure` (the schedule and one child run),
//! `report` (table, JSON, CSV), `baseline` (`--baseline`) and `chart` (SVG).

mod allocators;
mod baseline;
mod chart;
mod cli;
mod measure;
mod paired;
mod peers;
mod report;
mod run;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use allocators::Skipped;
use cli::{Command, Options, Sink};
use rseqmalloc_bench::{Workload, WORKLOADS};

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(opts)) => *opts,
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rseqmalloc-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if opts.list {
        return list(&opts);
    }
    let baseline = match &opts.baseline {
        None => None,
        Some(path) => match baseline::load(path) {
            Ok(b) => Some((path.clone(), b)),
            Err(e) => {
                eprintln!("rseqmalloc-bench: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let checked = allocators::selected_names(&opts).and(select_workloads(&opts));
    match checked {
        Err(e) => {
            eprintln!("rseqmalloc-bench: {e}");
            ExitCode::from(2)
        }
        Ok((workloads, skipped)) => match run(&opts, workloads, skipped, baseline) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rseqmalloc-bench: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The workspace root: this crate lives in `<workspace>/bench-runner`.
fn workspace() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn list(opts: &Options) -> ExitCode {
    println!("workloads (default scale, quick scale):");
    for w in WORKLOADS {
        println!(
            "  {:<18} {:>5} {:>5}  {}",
            w.name, w.default_scale, w.quick_scale, w.stresses
        );
    }
    let no_build = Options {
        no_build: true,
        ..opts.clone()
    };
    match allocators::resolve(&no_build, &workspace()) {
        Ok((found, skipped)) => {
            println!("allocators:");
            for a in found {
                let lib = a
                    .preload
                    .map_or("(no LD_PRELOAD)".into(), |p| p.display().to_string());
                let version = a.version.unwrap_or_else(|| "version unknown".into());
                println!("  {:<18} {version}: {lib}", a.name);
            }
            for s in skipped {
                println!("  {:<18} unavailable: {}", s.name, s.reason);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rseqmalloc-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// The workloads a run selects, each with its scale.
type Selected = Vec<(&'static Workload, f64)>;

/// The workloads `opts` selects, each with the scale to run it at, and
/// those of them that cannot run here (a program they drive is missing).
fn select_workloads(opts: &Options) -> Result<(Selected, Vec<Skipped>), String> {
    let chosen: Vec<&'static Workload> = match &opts.workloads {
        None => WORKLOADS.iter().collect(),
        Some(names) => {
            if let Some(bad) = names.iter().find(|n| rseqmalloc_bench::find(n).is_none()) {
                return Err(format!(
                    "unknown workload '{bad}' (known: {})",
                    rseqmalloc_bench::names()
                ));
            }
            // Keep the catalog's order, whatever order they were named in.
            WORKLOADS
                .iter()
                .filter(|w| names.iter().any(|n| n == w.name))
                .collect()
        }
    };
    let mut skipped = Vec::new();
    let mut selected = Vec::new();
    for w in chosen {
        if let Some(program) = w.needs.filter(|p| !on_path(p.name)) {
            skipped.push(Skipped {
                name: w.name.to_string(),
                reason: format!(
                    "needs {} (apt-get install {})",
                    program.name, program.package
                ),
            });
            continue;
        }
        let base = if opts.quick {
            w.quick_scale
        } else {
            w.default_scale
        };
        selected.push((w, base * opts.scale));
    }
    Ok((selected, skipped))
}

/// Whether `program` is an executable file in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Runs the benchmark. Exit status: 0 when the report was written, even if
/// some cells crashed or failed (they are in it); 1 when it could not run.
fn run(
    opts: &Options,
    workloads: Selected,
    skipped_workloads: Vec<Skipped>,
    baseline: Option<(PathBuf, baseline::Earlier)>,
) -> Result<(), String> {
    let workspace = workspace();
    // With JSON or CSV on stdout, everything meant for people goes to stderr.
    let mut human: Box<dyn Write> =
        if opts.json == Some(Sink::Stdout) || opts.csv == Some(Sink::Stdout) {
            Box::new(io::stderr())
        } else {
            Box::new(io::stdout())
        };
    let io_err = |e: io::Error| format!("cannot write the report: {e}");

    for s in &skipped_workloads {
        writeln!(human, "skipped workload {}: {}", s.name, s.reason).map_err(io_err)?;
    }
    let (found, skipped) = allocators::resolve(opts, &workspace)?;
    for s in &skipped {
        writeln!(human, "skipped {}: {}", s.name, s.reason).map_err(io_err)?;
    }
    human.flush().map_err(io_err)?;
    if found.is_empty() {
        return Err("no allocator left to run".into());
    }
    if workloads.is_empty() {
        return Err("no workload left to run".into());
    }
    let workload_bin = allocators::workload_binary(&workspace, opts.builds())?;

    let date = report::utc_now();
    let load_before = report::load_average();
    let started = std::time::Instant::now();
    let plan = run::Plan {
        workload_bin: &workload_bin,
        workloads,
        allocators: &found,
        repeat: opts.repeat,
        timeout: opts.timeout,
    };
    let cells = run::run_all(&plan, &mut io::stderr());

    let setup = report::Setup {
        date,
        commit: allocators::git_commit(&workspace),
        host: report::Host::probe(),
        repeat: opts.repeat,
        quick: opts.quick,
        timeout_s: opts.timeout.as_secs_f64(),
        elapsed_s: started.elapsed().as_secs_f64(),
        load_before,
        load_after: report::load_average(),
        allocators: found.iter().map(report::AllocatorInfo::from).collect(),
        skipped,
        skipped_workloads,
        workloads: plan
            .workloads
            .iter()
            .map(|(w, _)| w.name.to_string())
            .collect(),
    };
    let mut report = report::Report::new(setup, cells);
    writeln!(human).map_err(io_err)?;
    report.write_table(&mut human).map_err(io_err)?;
    if let Some((path, earlier)) = &baseline {
        let comparison = baseline::compare(path, earlier, &report);
        writeln!(human).map_err(io_err)?;
        comparison.write(&mut human).map_err(io_err)?;
        report.baseline = Some(comparison);
    }

    if let Some(sink) = &opts.json {
        emit(sink, "JSON", &mut human, |out| report.write_json(out))?;
    }
    if let Some(sink) = &opts.csv {
        emit(sink, "CSV", &mut human, |out| report.write_csv(out))?;
    }
    let svg = opts
        .svg
        .clone()
        .unwrap_or_else(|| workspace.join("bench-out").join("allocators.svg"));
    if let Some(dir) = svg.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    match chart::write_svg(&report, &svg) {
        Ok(()) => writeln!(human, "chart: {}", svg.display()),
        Err(e) => writeln!(human, "chart: not written ({e})"),
    }
    .map_err(io_err)?;
    human.flush().map_err(io_err)
}

/// Writes one machine-readable form to its sink and says where it went.
fn emit(
    sink: &Sink,
    what: &str,
    human: &mut dyn Write,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), String> {
    match sink {
        Sink::Stdout => {
            let mut out = io::stdout().lock();
            write(&mut out).and_then(|()| out.flush())
        }
        Sink::File(path) => {
            let file =
                File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            let mut out = BufWriter::new(file);
            write(&mut out)
                .and_then(|()| out.flush())
                .and_then(|()| writeln!(human, "{what}: {}", path.display()))
        }
    }
    .map_err(|e| format!("cannot write {what}: {e}"))
}
