//! What a run found, in three forms: the text table (absolute figures with
//! the spread of the repetitions, ratios to glibc for every allocator,
//! ratios to the best peer for rseqmalloc, geometric means, latency
//! percentiles, warnings), JSON (`--json`) and CSV (`--csv`).

use std::io::{self, Write};

use comfy_table::{CellAlignment, Table};
use serde::Serialize;

use crate::allocators::{Allocator, Skipped, GLIBC, RSEQMALLOC};
use crate::baseline::Comparison;
use crate::paired::{self, PairedWorkload};
use crate::run::Cell;

/// A single-threaded cell whose median wall time exceeds its user + system
/// time by this factor waited for a CPU: the machine was busy.
pub const BUSY_FACTOR: f64 = 1.5;

/// The machine a run was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
}

impl Host {
    pub fn probe() -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.split_whitespace().collect::<Vec<_>>().join(" "))
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|r| format!("Linux {}", r.trim()))
            .unwrap_or_else(|_| "unknown".into());
        Host {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
        }
    }
}

/// The 1, 5 and 15 minute load averages, from `/proc/loadavg`.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// How a run was set up (everything in the report but the results).
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// UTC, `YYYY-MM-DD HH:MM UTC`, when the runs started.
    pub date: String,
    /// The workspace's git commit (`-dirty` when it has uncommitted changes).
    pub commit: Option<String>,
    pub host: Host,
    pub repeat: usize,
    pub quick: bool,
    pub timeout_s: f64,
    /// Wall time of all the runs, in seconds.
    pub elapsed_s: f64,
    /// Load averages (1, 5, 15 min) just before the first run and after the last.
    pub load_before: Option<[f64; 3]>,
    pub load_after: Option<[f64; 3]>,
    pub allocators: Vec<AllocatorInfo>,
    pub skipped: Vec<Skipped>,
    /// Workloads that were asked for but cannot run here (a program missing).
    pub skipped_workloads: Vec<Skipped>,
    pub workloads: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AllocatorInfo {
    pub name: String,
    /// The `LD_PRELOAD` library; `null` for glibc.
    pub library: Option<String>,
    /// Its version, where the runner can tell.
    pub version: Option<String>,
    /// Another build of rseqmalloc (`--candidate`), not a peer (absent in older reports).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub candidate: bool,
    /// Variables set for its runs only (`--env`), as `[variable, value]` pairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
}

impl Setup {
    /// Whether `name` is another build of rseqmalloc (`--candidate`), not a peer.
    pub fn is_candidate(&self, name: &str) -> bool {
        self.allocators
            .iter()
            .any(|a| a.name == name && a.candidate)
    }
}

impl AllocatorInfo {
    /// `name version`, or the name alone, then any `--env` settings in brackets.
    pub fn label(&self) -> String {
        let mut label = match &self.version {
            Some(v) => format!("{} {v}", self.name),
            None => self.name.clone(),
        };
        if !self.env.is_empty() {
            let settings: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            label += &format!(" [{}]", settings.join(" "));
        }
        label
    }
}

impl From<&Allocator> for AllocatorInfo {
    fn from(a: &Allocator) -> Self {
        AllocatorInfo {
            name: a.name.clone(),
            library: a.preload.as_ref().map(|p| p.display().to_string()),
            version: a.version.clone(),
            candidate: a.candidate,
            env: a.env.clone(),
        }
    }
}

/// A cell with its ratios (`null` where a side is missing or failed).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub cell: Cell,
    pub time_vs_glibc: Option<f64>,
    pub rss_vs_glibc: Option<f64>,
    /// rseqmalloc's rows only: against the fastest other allocator.
    pub time_vs_best_peer: Option<f64>,
    pub time_best_peer: Option<String>,
    /// rseqmalloc's rows only: against the smallest other allocator.
    pub rss_vs_best_peer: Option<f64>,
    pub rss_best_peer: Option<String>,
    /// rseqmalloc's rows only: median CPU time (user + system) against the other allocator
    /// whose median CPU time is lowest. Wall time is what the targets read, but on a shared
    /// host a run's wall time also counts the time its threads waited for a CPU, which CPU time
    /// does not (docs/benchmarks.md, "Session 57": `batch` read 1.16x its best peer's wall
    /// time and about 1.03x its CPU time).
    pub cpu_vs_best_peer: Option<f64>,
    pub cpu_best_peer: Option<String>,
    /// Single-threaded workloads only: median wall time / median user+system time,
    /// when above [`BUSY_FACTOR`] (the child waited for a CPU: the figure is noisy).
    pub busy: Option<f64>,
}

/// An allocator's geometric means over the workloads where both it and
/// its reference succeeded (`workloads` says how many).
#[derive(Debug, Clone, Serialize)]
pub struct Geomean {
    pub allocator: String,
    pub workloads: usize,
    pub time_vs_glibc: Option<f64>,
    pub rss_vs_glibc: Option<f64>,
    pub best_peer_workloads: usize,
    pub time_vs_best_peer: Option<f64>,
    pub rss_vs_best_peer: Option<f64>,
    /// Over the same workloads, the CPU time against each workload's best peer for CPU time
    /// ([`Row::cpu_vs_best_peer`]).
    pub cpu_vs_best_peer: Option<f64>,
}

/// Everything `--json` writes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub setup: Setup,
    pub cells: Vec<Row>,
    pub geomean: Vec<Geomean>,
    /// The change against `--baseline`, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Comparison>,
    /// rseqmalloc against each `--candidate` build, same run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vs_candidates: Vec<VsCandidate>,
    /// rseqmalloc against the peer that is fastest (smallest) over the whole run.
    pub vs_best_overall: BestOverall,
}

/// rseqmalloc against the single peer (candidates excluded) that does best over the whole run,
/// one figure at a time: for each peer, the geomean over the workloads both completed of
/// rseqmalloc's median over the peer's; the peer is the one this ratio is highest against
/// (the fastest, or the smallest). The performance issue's runner target reads "geomean time
/// ≤ 0.9x the best peer's"; `time_vs_best_peer` in [`Geomean`] is the stricter reading (a best
/// peer per workload), and `above` lists what its other target ("no workload above 1.1x its
/// best peer") counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BestOverall {
    pub time: Option<Overall>,
    pub peak_rss: Option<Overall>,
    /// Workloads where rseqmalloc's time is above [`ABOVE`] times its best peer's, with the ratio.
    pub above: Vec<(String, f64)>,
    /// Per workload, rseqmalloc's runs paired by repetition with those of the workload's best
    /// peer for time (the `time_best_peer` of its row): the median of the ratios and an
    /// interval for it, so that "above 1.1x" can be told from the machine's noise (a best
    /// peer picked as the lowest of several noisy medians flatters the peers). Its
    /// `peak_rss` is against that same peer, not against the best peer for RSS.
    pub paired: Vec<PairedWithPeer>,
}

/// One workload of [`BestOverall::paired`].
#[derive(Debug, Clone, Serialize)]
pub struct PairedWithPeer {
    pub peer: String,
    #[serde(flatten)]
    pub paired: PairedWorkload,
}

/// One figure of [`BestOverall`].
#[derive(Debug, Clone, Serialize)]
pub struct Overall {
    pub peer: String,
    pub ratio: f64,
    pub workloads: usize,
}

/// The performance issue's bound for any one workload against its best peer.
pub const ABOVE: f64 = 1.1;

/// rseqmalloc against another build of itself measured in the same run (`--candidate`):
/// geometric means over the workloads where both succeeded.
#[derive(Debug, Clone, Serialize)]
pub struct VsCandidate {
    pub candidate: String,
    pub workloads: usize,
    /// Geomean of rseqmalloc's median time / the candidate's.
    pub time: Option<f64>,
    /// Geomean of rseqmalloc's median peak RSS / the candidate's.
    pub peak_rss: Option<f64>,
    /// Per workload, the two builds' runs paired by repetition (`paired`): the median ratio
    /// and a confidence interval for it.
    pub paired: Vec<PairedWorkload>,
}

impl Report {
    pub fn new(setup: Setup, cells: Vec<Cell>) -> Self {
        let ok = |workload: &str, allocator: &str| ok_cell(&cells, workload, allocator);
        let rows: Vec<Row> = cells
            .iter()
            .map(|cell| {
                let glibc = ok(&cell.workload, GLIBC).filter(|_| cell.is_ok());
                let (best_time, best_rss, best_cpu) =
                    if cell.allocator == RSEQMALLOC && cell.is_ok() {
                        let peers: Vec<&Cell> = cells
                            .iter()
                            .filter(|c| {
                                c.workload == cell.workload
                                    && c.allocator != RSEQMALLOC
                                    && !setup.is_candidate(&c.allocator)
                            })
                            .collect();
                        (
                            best(&peers, |c| c.time_ms),
                            best(&peers, |c| c.peak_rss_mib),
                            best(&peers, |c| c.cpu_ms),
                        )
                    } else {
                        (None, None, None)
                    };
                let single =
                    rseqmalloc_bench::find(&cell.workload).is_some_and(|w| w.single_threaded);
                Row {
                    time_vs_glibc: glibc.and_then(|g| ratio(cell.time_ms, g.time_ms)),
                    rss_vs_glibc: glibc.and_then(|g| ratio(cell.peak_rss_mib, g.peak_rss_mib)),
                    time_vs_best_peer: best_time.and_then(|b| ratio(cell.time_ms, b.time_ms)),
                    time_best_peer: best_time.map(|b| b.allocator.clone()),
                    rss_vs_best_peer: best_rss
                        .and_then(|b| ratio(cell.peak_rss_mib, b.peak_rss_mib)),
                    rss_best_peer: best_rss.map(|b| b.allocator.clone()),
                    cpu_vs_best_peer: best_cpu.and_then(|b| ratio(cell.cpu_ms, b.cpu_ms)),
                    cpu_best_peer: best_cpu.map(|b| b.allocator.clone()),
                    busy: ratio(cell.time_ms, cell.cpu_ms).filter(|r| single && *r > BUSY_FACTOR),
                    cell: cell.clone(),
                }
            })
            .collect();
        let geomean = setup
            .allocators
            .iter()
            .map(|a| {
                let mine: Vec<&Row> = rows.iter().filter(|r| r.cell.allocator == a.name).collect();
                let vs_glibc: Vec<&&Row> =
                    mine.iter().filter(|r| r.time_vs_glibc.is_some()).collect();
                let vs_best: Vec<&&Row> = mine
                    .iter()
                    .filter(|r| r.time_vs_best_peer.is_some())
                    .collect();
                Geomean {
                    allocator: a.name.clone(),
                    workloads: vs_glibc.len(),
                    time_vs_glibc: geometric_mean(vs_glibc.iter().filter_map(|r| r.time_vs_glibc)),
                    rss_vs_glibc: geometric_mean(vs_glibc.iter().filter_map(|r| r.rss_vs_glibc)),
                    best_peer_workloads: vs_best.len(),
                    time_vs_best_peer: geometric_mean(
                        vs_best.iter().filter_map(|r| r.time_vs_best_peer),
                    ),
                    rss_vs_best_peer: geometric_mean(
                        vs_best.iter().filter_map(|r| r.rss_vs_best_peer),
                    ),
                    cpu_vs_best_peer: geometric_mean(
                        vs_best.iter().filter_map(|r| r.cpu_vs_best_peer),
                    ),
                }
            })
            .collect();
        let vs_candidates = setup
            .allocators
            .iter()
            .filter(|a| a.candidate)
            .map(|a| {
                let pairs: Vec<(&Cell, &Cell)> = cells
                    .iter()
                    .filter(|c| c.allocator == RSEQMALLOC && c.is_ok())
                    .filter_map(|c| ok(&c.workload, &a.name).map(|k| (c, k)))
                    .collect();
                VsCandidate {
                    candidate: a.name.clone(),
                    workloads: pairs.len(),
                    time: geometric_mean(
                        pairs
                            .iter()
                            .filter_map(|(c, k)| ratio(c.time_ms, k.time_ms)),
                    ),
                    peak_rss: geometric_mean(
                        pairs
                            .iter()
                            .filter_map(|(c, k)| ratio(c.peak_rss_mib, k.peak_rss_mib)),
                    ),
                    paired: pairs
                        .iter()
                        .filter_map(|(c, k)| paired::compare(c, k))
                        .collect(),
                }
            })
            .collect();
        let vs_best_overall = BestOverall {
            time: best_overall(&setup, &cells, |c| c.time_ms),
            peak_rss: best_overall(&setup, &cells, |c| c.peak_rss_mib),
            above: rows
                .iter()
                .filter_map(|r| Some((r.cell.workload.clone(), r.time_vs_best_peer?)))
                .filter(|(_, t)| *t > ABOVE)
                .collect(),
            paired: rows
                .iter()
                .filter(|r| r.cell.allocator == RSEQMALLOC)
                .filter_map(|r| {
                    let peer = r.time_best_peer.as_ref()?;
                    let theirs = ok(&r.cell.workload, peer)?;
                    Some(PairedWithPeer {
                        peer: peer.clone(),
                        paired: paired::compare(&r.cell, theirs)?,
                    })
                })
                .collect(),
        };
        Report {
            setup,
            cells: rows,
            geomean,
            baseline: None,
            vs_candidates,
            vs_best_overall,
        }
    }

    /// The header: when, what, where, under which load.
    pub fn write_header(&self, out: &mut dyn Write) -> io::Result<()> {
        let s = &self.setup;
        writeln!(
            out,
            "rseqmalloc-bench {}: {} workloads x {} allocators, median of {} run{} each{}, {:.0} s",
            s.date,
            s.workloads.len(),
            s.allocators.len(),
            s.repeat,
            if s.repeat == 1 { "" } else { "s" },
            if s.quick {
                " (--quick: indicative only)"
            } else {
                ""
            },
            s.elapsed_s,
        )?;
        writeln!(
            out,
            "host: {} CPUs, {}, {}; load average (1/5/15 min) {} before, {} after",
            s.host.cpus,
            s.host.cpu_model,
            s.host.kernel,
            load(s.load_before),
            load(s.load_after),
        )?;
        writeln!(
            out,
            "commit: {}",
            s.commit
                .as_deref()
                .unwrap_or("unknown (not a git checkout)")
        )?;
        let labels: Vec<String> = s.allocators.iter().map(AllocatorInfo::label).collect();
        writeln!(out, "allocators: {}", labels.join(", "))?;
        writeln!(
            out,
            "ratios below 1.00x are better; best peer = the best allocator other than rseqmalloc{}, per workload and figure;\n\
             spread = (max - min) / median of the repetitions; minflt = minor page faults",
            if self.vs_candidates.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = self.vs_candidates.iter().map(|v| v.candidate.as_str()).collect();
                format!(" and its candidate builds ({})", names.join(", "))
            }
        )
    }

    /// The human-readable report: header, table, latency, geomeans, warnings.
    pub fn write_table(&self, out: &mut dyn Write) -> io::Result<()> {
        let s = &self.setup;
        self.write_header(out)?;
        writeln!(out)?;

        let mut cells = table(&[
            ("workload", false),
            ("allocator", false),
            ("time ms", true),
            ("spread", true),
            ("user ms", true),
            ("sys ms", true),
            ("minflt", true),
            ("peak MiB", true),
            ("spread", true),
            ("time/glibc", true),
            ("RSS/glibc", true),
            ("time/best peer", false),
            ("RSS/best peer", false),
        ]);
        let mut last_workload = "";
        for row in &self.cells {
            let c = &row.cell;
            let workload = if c.workload == last_workload {
                String::new()
            } else {
                c.workload.clone()
            };
            last_workload = &c.workload;
            if !c.is_ok() {
                cells.add_row(vec![workload, c.allocator.clone(), c.summary.clone()]);
                continue;
            }
            let busy_mark = if row.busy.is_some() { "*" } else { "" };
            cells.add_row(vec![
                workload,
                c.allocator.clone(),
                format!("{}{busy_mark}", num(c.time_ms, 1)),
                percent(c.time_spread()),
                num(c.user_ms, 1),
                num(c.sys_ms, 1),
                count(c.minflt),
                num(c.peak_rss_mib, 1),
                percent(c.rss_spread()),
                times(row.time_vs_glibc),
                times(row.rss_vs_glibc),
                versus(row.time_vs_best_peer, &row.time_best_peer),
                versus(row.rss_vs_best_peer, &row.rss_best_peer),
            ]);
        }
        writeln!(out, "{}", cells.trim_fmt())?;

        let latency_rows: Vec<&Row> = self
            .cells
            .iter()
            .filter(|r| r.cell.latency.is_some())
            .collect();
        if !latency_rows.is_empty() {
            writeln!(out)?;
            let mut lat = table(&[
                ("latency", false),
                ("allocator", false),
                ("p50 ns", true),
                ("p99 ns", true),
                ("p99.9 ns", true),
            ]);
            for row in latency_rows {
                let l = row.cell.latency.expect("filtered");
                lat.add_row(vec![
                    row.cell.workload.clone(),
                    row.cell.allocator.clone(),
                    format!("{:.0}", l.p50_ns),
                    format!("{:.0}", l.p99_ns),
                    format!("{:.0}", l.p999_ns),
                ]);
            }
            writeln!(out, "{}", lat.trim_fmt())?;
        }

        writeln!(out)?;
        let mut means = table(&[
            ("geomean", false),
            ("workloads", true),
            ("time/glibc", true),
            ("RSS/glibc", true),
            ("time/best peer", true),
            ("RSS/best peer", true),
            ("CPU/best peer", true),
        ]);
        for g in &self.geomean {
            means.add_row(vec![
                g.allocator.clone(),
                format!("{}/{}", g.workloads, s.workloads.len()),
                times(g.time_vs_glibc),
                times(g.rss_vs_glibc),
                times(g.time_vs_best_peer),
                times(g.rss_vs_best_peer),
                times(g.cpu_vs_best_peer),
            ]);
        }
        writeln!(out, "{}", means.trim_fmt())?;

        if let Some(g) = self.geomean.iter().find(|g| g.allocator == RSEQMALLOC) {
            writeln!(out)?;
            match (g.time_vs_glibc, g.rss_vs_glibc) {
                (Some(t), Some(r)) => writeln!(
                    out,
                    "rseqmalloc vs glibc: {} the time, {} the peak RSS (geomean of {} workloads)",
                    times(Some(t)),
                    times(Some(r)),
                    g.workloads
                )?,
                _ => writeln!(out, "rseqmalloc vs glibc: no workload where both succeeded")?,
            }
            if let (Some(t), Some(r)) = (g.time_vs_best_peer, g.rss_vs_best_peer) {
                writeln!(
                    out,
                    "rseqmalloc vs the best peer of each workload: {} the time, {} the peak RSS",
                    times(Some(t)),
                    times(Some(r))
                )?;
            }
            if let Some(c) = g.cpu_vs_best_peer {
                let above: Vec<(String, f64)> = self
                    .cells
                    .iter()
                    .filter(|r| r.cell.allocator == RSEQMALLOC)
                    .filter_map(|r| {
                        let v = r.cpu_vs_best_peer.filter(|v| *v > ABOVE)?;
                        Some((r.cell.workload.clone(), v))
                    })
                    .collect();
                writeln!(
                    out,
                    "the same by CPU time (user + system, against each workload's lowest): {}; \
                     above {ABOVE}x: {}",
                    times(Some(c)),
                    counted_list(&above)
                )?;
            }
            let o = &self.vs_best_overall;
            if let (Some(t), Some(r)) = (&o.time, &o.peak_rss) {
                writeln!(
                    out,
                    "rseqmalloc vs the best peer overall: {} the time of {} ({} workloads), {} the peak RSS of {} ({})",
                    times(Some(t.ratio)),
                    t.peer,
                    t.workloads,
                    times(Some(r.ratio)),
                    r.peer,
                    r.workloads
                )?;
                writeln!(
                    out,
                    "workloads above {ABOVE}x their best peer's time: {}",
                    counted_list(&o.above)
                )?;
                write_paired_with_peers(out, &o.paired)?;
            }
        }
        for v in &self.vs_candidates {
            writeln!(
                out,
                "rseqmalloc vs candidate {}: {} the time, {} the peak RSS (geomean of {} workloads, same run)",
                v.candidate,
                times(v.time),
                times(v.peak_rss),
                v.workloads
            )?;
        }
        for v in &self.vs_candidates {
            write_paired(out, v)?;
        }
        self.write_warnings(out)
    }

    /// One line per single-threaded workload whose cells waited for a
    /// CPU, and one if `--quick` was used.
    fn write_warnings(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut busy: Vec<(&str, Vec<String>)> = Vec::new();
        for row in self.cells.iter() {
            let Some(factor) = row.busy else { continue };
            let entry = format!("{} {factor:.2}x", row.cell.allocator);
            match busy.last_mut() {
                Some((w, list)) if *w == row.cell.workload => list.push(entry),
                _ => busy.push((&row.cell.workload, vec![entry])),
            }
        }
        if !busy.is_empty() || self.setup.quick {
            writeln!(out)?;
        }
        for (workload, list) in busy {
            writeln!(
                out,
                "warning: {workload} is single-threaded, yet its wall time exceeded {BUSY_FACTOR}x its \
                 user+system time under {}: it waited for a CPU (a busy machine), so those times (marked *) \
                 are noisy",
                list.join(", ")
            )?;
        }
        if self.setup.quick {
            writeln!(
                out,
                "note: --quick runs small scales once; its figures are indicative only (they can move by \
                 1.5x between two runs); compare allocators with the default run"
            )?;
        }
        Ok(())
    }

    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        writeln!(out)
    }

    /// One record per cell, failures included (their figures empty).
    pub fn write_csv(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut writer = csv::Writer::from_writer(out);
        for row in &self.cells {
            writer.serialize(CsvRecord::from(row))?;
        }
        writer.flush()
    }
}

/// The columns of `--csv`: a cell's figures without its runs.
#[derive(Serialize)]
struct CsvRecord<'a> {
    workload: &'a str,
    allocator: &'a str,
    scale: f64,
    status: crate::run::Status,
    summary: &'a str,
    time_ms: Option<f64>,
    time_min_ms: Option<f64>,
    time_max_ms: Option<f64>,
    cpu_ms: Option<f64>,
    user_ms: Option<f64>,
    sys_ms: Option<f64>,
    minflt: Option<f64>,
    peak_rss_mib: Option<f64>,
    peak_rss_min_mib: Option<f64>,
    peak_rss_max_mib: Option<f64>,
    ops: Option<u64>,
    p50_ns: Option<f64>,
    p99_ns: Option<f64>,
    p999_ns: Option<f64>,
    time_vs_glibc: Option<f64>,
    rss_vs_glibc: Option<f64>,
    time_vs_best_peer: Option<f64>,
    time_best_peer: Option<&'a str>,
    rss_vs_best_peer: Option<f64>,
    rss_best_peer: Option<&'a str>,
    cpu_vs_best_peer: Option<f64>,
    cpu_best_peer: Option<&'a str>,
    busy: Option<f64>,
    detail: Option<&'a str>,
}

impl<'a> From<&'a Row> for CsvRecord<'a> {
    fn from(row: &'a Row) -> Self {
        let c = &row.cell;
        CsvRecord {
            workload: &c.workload,
            allocator: &c.allocator,
            scale: c.scale,
            status: c.status,
            summary: &c.summary,
            time_ms: c.time_ms,
            time_min_ms: c.time_range_ms.map(|r| r[0]),
            time_max_ms: c.time_range_ms.map(|r| r[1]),
            cpu_ms: c.cpu_ms,
            user_ms: c.user_ms,
            sys_ms: c.sys_ms,
            minflt: c.minflt,
            peak_rss_mib: c.peak_rss_mib,
            peak_rss_min_mib: c.peak_rss_range_mib.map(|r| r[0]),
            peak_rss_max_mib: c.peak_rss_range_mib.map(|r| r[1]),
            ops: c.ops,
            p50_ns: c.latency.map(|l| l.p50_ns),
            p99_ns: c.latency.map(|l| l.p99_ns),
            p999_ns: c.latency.map(|l| l.p999_ns),
            time_vs_glibc: row.time_vs_glibc,
            rss_vs_glibc: row.rss_vs_glibc,
            time_vs_best_peer: row.time_vs_best_peer,
            time_best_peer: row.time_best_peer.as_deref(),
            rss_vs_best_peer: row.rss_vs_best_peer,
            rss_best_peer: row.rss_best_peer.as_deref(),
            cpu_vs_best_peer: row.cpu_vs_best_peer,
            cpu_best_peer: row.cpu_best_peer.as_deref(),
            busy: row.busy,
            detail: c.detail.as_deref(),
        }
    }
}

/// A borderless table: a rule under the header, columns two spaces apart,
/// each column `(title, right-aligned)`.
pub fn table(columns: &[(&str, bool)]) -> Table {
    use comfy_table::{LineStyle, TableStyle};
    let mut t = Table::new();
    t.load_style(TableStyle::new().header_separator(LineStyle::none().fill('-')));
    t.set_header(columns.iter().map(|(title, _)| *title).collect::<Vec<_>>());
    for (i, (_, right)) in columns.iter().enumerate() {
        let column = t.column_mut(i).expect("declared column");
        column.set_padding((0, 2));
        if *right {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// [`BestOverall`]'s figure: rseqmalloc against each peer (geomean of the per-workload ratios
/// where both completed), and of those the highest ratio; `None` without rseqmalloc or peers.
fn best_overall(
    setup: &Setup,
    cells: &[Cell],
    figure: fn(&Cell) -> Option<f64>,
) -> Option<Overall> {
    setup
        .allocators
        .iter()
        .filter(|a| a.name != RSEQMALLOC && !a.candidate)
        .filter_map(|a| {
            let ratios: Vec<f64> = cells
                .iter()
                .filter(|c| c.allocator == RSEQMALLOC && c.is_ok())
                .filter_map(|c| ratio(figure(c), figure(ok_cell(cells, &c.workload, &a.name)?)))
                .collect();
            Some(Overall {
                peer: a.name.clone(),
                workloads: ratios.len(),
                ratio: geometric_mean(ratios.into_iter())?,
            })
        })
        .max_by(|a, b| a.ratio.total_cmp(&b.ratio))
}

/// The successful cell of `allocator` on `workload`, if any.
fn ok_cell<'a>(cells: &'a [Cell], workload: &str, allocator: &str) -> Option<&'a Cell> {
    cells
        .iter()
        .find(|c| c.workload == workload && c.allocator == allocator && c.is_ok())
}

/// The successful cell with the lowest `figure` (time or RSS), if any.
fn best<'a>(cells: &[&'a Cell], figure: fn(&Cell) -> Option<f64>) -> Option<&'a Cell> {
    cells
        .iter()
        .filter(|c| c.is_ok())
        .filter_map(|c| Some((*c, figure(c)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The geometric mean, or `None` for no values.
pub fn geometric_mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v.ln(), n + 1));
    (n > 0).then(|| (sum / n as f64).exp())
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

pub fn times(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.2}x"))
}

/// A spread as a whole percentage; `-` for one repetition (no spread).
fn percent(v: Option<f64>) -> String {
    match v {
        Some(v) if v > 0.0 => format!("{:.0}%", v * 100.0),
        Some(_) => "0%".into(),
        None => "-".into(),
    }
}

/// The paired comparison with one candidate: a row per workload with enough pairs, then how
/// many workloads the run resolved, faster or slower, smaller or larger.
fn write_paired(out: &mut dyn Write, v: &VsCandidate) -> io::Result<()> {
    let rows: Vec<&PairedWorkload> = v
        .paired
        .iter()
        .filter(|p| p.time.is_some_and(|t| t.pairs >= paired::MIN_PAIRS))
        .collect();
    writeln!(out)?;
    if rows.is_empty() {
        return writeln!(
            out,
            "rseqmalloc / {}, paired by repetition: needs --repeat {} or more",
            v.candidate,
            paired::MIN_PAIRS
        );
    }
    writeln!(
        out,
        "rseqmalloc / {}, paired by repetition: median of the ratios [interval, its confidence]; \
         * = the interval excludes 1.00x",
        v.candidate
    )?;
    let mut t = table(&[
        ("workload", false),
        ("pairs", true),
        ("time", false),
        ("peak RSS", false),
    ]);
    for p in &rows {
        let pairs = p.time.map_or(0, |i| i.pairs);
        t.add_row(vec![
            p.workload.clone(),
            pairs.to_string(),
            interval(p.time),
            interval(p.peak_rss),
        ]);
    }
    writeln!(out, "{}", t.trim_fmt())?;
    let tally = |get: fn(&PairedWorkload) -> Option<paired::Interval>, less: &str, more: &str| {
        let below = rows
            .iter()
            .filter_map(|p| get(p))
            .filter(|i| i.hi < 1.0)
            .count();
        let above = rows
            .iter()
            .filter_map(|p| get(p))
            .filter(|i| i.lo > 1.0)
            .count();
        format!(
            "{} of {} ({below} {less}, {above} {more})",
            below + above,
            rows.len()
        )
    };
    writeln!(
        out,
        "resolved: time {}, peak RSS {}",
        tally(|p| p.time, "faster", "slower"),
        tally(|p| p.peak_rss, "smaller", "larger")
    )
}

/// The summary line of [`BestOverall::paired`]: with enough pairs, how many workloads' time
/// intervals against their best peer lie wholly above 1.1x, wholly at or below it, or across
/// it (each listed with its interval), and the geomean of the paired medians.
fn write_paired_with_peers(out: &mut dyn Write, all: &[PairedWithPeer]) -> io::Result<()> {
    let rows: Vec<(&PairedWithPeer, paired::Interval)> = all
        .iter()
        .filter_map(|p| Some((p, p.paired.time?)))
        .filter(|(_, t)| t.pairs >= paired::MIN_PAIRS)
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let side = |want: paired::Side| -> Vec<String> {
        rows.iter()
            .filter(|(_, t)| t.against(ABOVE) == want)
            .map(|(p, t)| {
                format!(
                    "{} {:.2}x [{:.2}-{:.2}] vs {}",
                    p.paired.workload, t.median, t.lo, t.hi, p.peer
                )
            })
            .collect()
    };
    let list = |v: &[String]| {
        if v.is_empty() {
            String::new()
        } else {
            format!(": {}", v.join("; "))
        }
    };
    let (above, across) = (side(paired::Side::Above), side(paired::Side::Across));
    let below = rows.len() - above.len() - across.len();
    let short = all.len() - rows.len();
    writeln!(
        out,
        "the same, paired by repetition with each workload's best peer (median [interval]): \
         geomean {}; {} of {} wholly above {ABOVE}x{}; {below} at or below; {} across it{}{}",
        times(geometric_mean(rows.iter().map(|(_, t)| t.median))),
        above.len(),
        rows.len(),
        list(&above),
        across.len(),
        list(&across),
        if short == 0 {
            String::new()
        } else {
            format!(
                " ({short} with fewer than {} pairs left out)",
                paired::MIN_PAIRS
            )
        }
    )
}

/// `0.97x [0.93-1.01, 94%]`, with `*` when the interval excludes 1.
/// `N (name ratio, …)`, or `0`: workloads with their ratios, counted.
fn counted_list(items: &[(String, f64)]) -> String {
    if items.is_empty() {
        return "0".into();
    }
    let named: Vec<String> = items
        .iter()
        .map(|(w, t)| format!("{w} {}", times(Some(*t))))
        .collect();
    format!("{} ({})", items.len(), named.join(", "))
}

fn interval(i: Option<paired::Interval>) -> String {
    i.map_or_else(String::new, |i| {
        format!(
            "{:.2}x [{:.2}-{:.2}, {:.0}%]{}",
            i.median,
            i.lo,
            i.hi,
            i.confidence * 100.0,
            if i.resolved() { " *" } else { "" }
        )
    })
}

/// A count in k or M above ten thousand.
fn count(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 1e7 => format!("{:.1}M", v / 1e6),
        Some(v) if v >= 1e4 => format!("{:.0}k", v / 1e3),
        Some(v) => format!("{v:.0}"),
    }
}

fn load(l: Option<[f64; 3]>) -> String {
    l.map_or_else(
        || "unknown".into(),
        |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"),
    )
}

fn versus(v: Option<f64>, peer: &Option<String>) -> String {
    match (v, peer) {
        (Some(v), Some(p)) => format!("{v:.2}x {p}"),
        _ => String::new(),
    }
}

/// Now in UTC, `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute()
    )
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::measure::Sample;
    use crate::run::Status;

    pub fn cell(workload: &str, allocator: &str, ms: f64, mib: f64) -> Cell {
        Cell {
            workload: workload.into(),
            allocator: allocator.into(),
            scale: 1.0,
            status: Status::Ok,
            summary: "ok".into(),
            detail: None,
            time_ms: Some(ms),
            time_range_ms: Some([ms * 0.9, ms * 1.1]),
            cpu_ms: Some(ms),
            user_ms: Some(ms * 0.75),
            sys_ms: Some(ms * 0.25),
            minflt: Some(20_000.0),
            peak_rss_mib: Some(mib),
            peak_rss_range_mib: Some([mib, mib]),
            ops: Some(1),
            latency: None,
            runs: vec![Sample {
                wall_ms: ms,
                cpu_ms: ms,
                user_ms: ms * 0.75,
                sys_ms: ms * 0.25,
                minflt: 20_000,
                max_rss_kib: (mib * 1024.0) as u64,
                ops: 1,
                latency: None,
            }],
        }
    }

    pub fn setup(allocators: &[&str]) -> Setup {
        Setup {
            date: "2026-01-01 00:00 UTC".into(),
            commit: Some("0123456789ab".into()),
            host: Host {
                cpus: 2,
                cpu_model: "test".into(),
                kernel: "Linux test".into(),
            },
            repeat: 1,
            quick: true,
            timeout_s: 60.0,
            elapsed_s: 1.0,
            load_before: Some([0.5, 0.25, 0.125]),
            load_after: Some([1.5, 0.5, 0.25]),
            allocators: allocators
                .iter()
                .map(|n| AllocatorInfo {
                    name: n.to_string(),
                    library: None,
                    version: Some(format!("{n}-1.0")),
                    candidate: false,
                    env: vec![],
                })
                .collect(),
            skipped: vec![],
            skipped_workloads: vec![],
            workloads: vec!["a".into(), "b".into()],
        }
    }

    /// A `--candidate` build is compared with rseqmalloc and never chosen as its best peer,
    /// even where it is the fastest or smallest other allocator.
    #[test]
    fn a_candidate_build_is_compared_not_a_peer() {
        let mut s = setup(&["rseqmalloc", "glibc", "jemalloc", "before"]);
        s.allocators[3].candidate = true;
        s.allocators[3].env = vec![("RSEQMALLOC_OPTIONS".into(), "owner_return=off".into())];
        let report = Report::new(
            s,
            vec![
                cell("a", "rseqmalloc", 50.0, 20.0),
                cell("a", "glibc", 100.0, 10.0),
                cell("a", "jemalloc", 80.0, 40.0),
                cell("a", "before", 40.0, 5.0),
                cell("b", "rseqmalloc", 200.0, 10.0),
                cell("b", "glibc", 100.0, 10.0),
                cell("b", "before", 100.0, 20.0),
            ],
        );
        assert_eq!(report.cells[0].time_best_peer.as_deref(), Some("jemalloc"));
        assert_eq!(report.cells[0].rss_best_peer.as_deref(), Some("glibc"));
        assert_eq!(report.cells[4].time_best_peer.as_deref(), Some("glibc"));
        let v = &report.vs_candidates[..];
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].candidate.as_str(), v[0].workloads), ("before", 2));
        // sqrt(50/40 * 200/100) and sqrt(20/5 * 10/20)
        assert!((v[0].time.unwrap() - 2.5f64.sqrt()).abs() < 1e-12);
        assert!((v[0].peak_rss.unwrap() - 2f64.sqrt()).abs() < 1e-12);
        let text = table_text(&report);
        for expected in [
            "other than rseqmalloc and its candidate builds (before)",
            "rseqmalloc vs candidate before: 1.58x the time, 1.41x the peak RSS (geomean of 2 workloads, same run)",
            "before before-1.0 [RSEQMALLOC_OPTIONS=owner_return=off]",
        ] {
            assert!(text.contains(expected), "no '{expected}' in\n{text}");
        }
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["vs_candidates"][0]["candidate"], "before");
        assert_eq!(json["allocators"][3]["candidate"], true);
        assert!(json["allocators"][0].get("candidate").is_none());
        let env = &json["allocators"][3]["env"][0];
        assert_eq!(
            (&env[0], &env[1]),
            (&"RSEQMALLOC_OPTIONS".into(), &"owner_return=off".into())
        );
        assert!(json["allocators"][0].get("env").is_none());
    }

    /// `cell` with one run per entry of `ms` (in pass order), each of `mib` peak RSS.
    fn cell_runs(workload: &str, allocator: &str, ms: &[f64], mib: f64) -> Cell {
        let mut c = cell(workload, allocator, ms[ms.len() / 2], mib);
        let one = c.runs[0];
        c.runs = ms.iter().map(|&t| Sample { wall_ms: t, ..one }).collect();
        c
    }

    /// The text report of `report`.
    fn table_text(report: &Report) -> String {
        let mut text = Vec::new();
        report.write_table(&mut text).unwrap();
        String::from_utf8(text).unwrap()
    }

    /// The candidate comparison pairs the two builds' runs pass by pass: a steady 10 % gain
    /// under drift that makes each build's own runs spread by 2x is resolved, a mixed one is
    /// not, and a failed candidate cell is left out.
    #[test]
    fn a_candidate_is_compared_run_by_run() {
        let mut s = setup(&["rseqmalloc", "glibc", "before"]);
        s.allocators[2].candidate = true;
        s.repeat = 5;
        s.workloads = vec!["a".into(), "b".into(), "c".into()];
        let drift = [100.0, 150.0, 200.0, 120.0, 180.0];
        let faster: Vec<f64> = drift.iter().map(|t| t * 0.9).collect();
        let mut failed = cell("c", "before", 0.0, 0.0);
        failed.status = Status::Crashed;
        failed.summary = "crashed: SIGSEGV".into();
        let report = Report::new(
            s,
            vec![
                cell_runs("a", "rseqmalloc", &faster, 10.0),
                cell_runs("a", "glibc", &drift, 10.0),
                cell_runs("a", "before", &drift, 10.0),
                cell_runs("b", "rseqmalloc", &[100.0, 95.0, 105.0, 100.0, 98.0], 10.0),
                cell_runs("b", "glibc", &drift, 10.0),
                cell_runs("b", "before", &[100.0, 100.0, 100.0, 100.0, 100.0], 10.0),
                cell_runs("c", "rseqmalloc", &drift, 10.0),
                cell_runs("c", "glibc", &drift, 10.0),
                failed,
            ],
        );
        let p = &report.vs_candidates[0].paired;
        assert_eq!(p.len(), 2, "the failed cell has no pairs: {p:?}");
        let a = p[0].time.unwrap();
        assert_eq!((p[0].workload.as_str(), a.pairs), ("a", 5));
        assert!((a.median - 0.9).abs() < 1e-12 && (a.hi - 0.9).abs() < 1e-12);
        assert!(a.resolved());
        let b = p[1].time.unwrap();
        assert!((b.median - 1.0).abs() < 1e-12 && b.lo < 1.0 && b.hi > 1.0);
        assert!(!b.resolved());
        assert_eq!(p[0].peak_rss.unwrap().median, 1.0);

        let text = table_text(&report);
        for expected in [
            "rseqmalloc / before, paired by repetition: median of the ratios",
            "0.90x [0.90-0.90, 94%] *",
            "1.00x [0.95-1.05, 94%]",
            "resolved: time 1 of 2 (1 faster, 0 slower), peak RSS 0 of 2 (0 smaller, 0 larger)",
        ] {
            assert!(text.contains(expected), "no '{expected}' in\n{text}");
        }
        let json = serde_json::to_value(&report).unwrap();
        let a = &json["vs_candidates"][0]["paired"][0];
        assert_eq!(a["workload"], "a");
        assert_eq!(a["time"]["pairs"], 5);
        assert_eq!(a["time"]["confidence"], 0.9375);
    }

    /// Against each workload's best peer, the runs are paired pass by pass too: a steady 1.2x
    /// under drift lies wholly above 1.1x, a steady 0.9x at or below it, a mixed one across it;
    /// the peer is the workload's best by median, never a candidate.
    #[test]
    fn the_best_peer_of_each_workload_is_compared_run_by_run() {
        let mut s = setup(&["rseqmalloc", "glibc", "jemalloc", "cand"]);
        s.allocators[3].candidate = true;
        s.repeat = 5;
        s.workloads = vec!["a".into(), "b".into(), "c".into(), "d".into(), "e".into()];
        let drift = [100.0, 150.0, 200.0, 120.0, 180.0];
        let scaled = |k: f64| drift.iter().map(|t| t * k).collect::<Vec<f64>>();
        let slow = [1.2, 1.0, 1.25, 0.95, 1.3];
        let crashed = |w: &str, a: &str| {
            let mut c = cell(w, a, 0.0, 0.0);
            c.status = Status::Crashed;
            c.summary = "crashed: SIGSEGV".into();
            c
        };
        let mixed: Vec<f64> = drift.iter().zip(slow).map(|(t, k)| t * k).collect();
        let report = Report::new(
            s,
            vec![
                cell_runs("a", "rseqmalloc", &scaled(1.2), 10.0),
                cell_runs("a", "glibc", &scaled(1.5), 10.0),
                cell_runs("a", "jemalloc", &drift, 10.0),
                cell_runs("a", "cand", &scaled(0.5), 10.0),
                cell_runs("b", "rseqmalloc", &scaled(0.9), 10.0),
                cell_runs("b", "glibc", &drift, 10.0),
                cell_runs("b", "jemalloc", &scaled(1.1), 10.0),
                cell_runs("c", "rseqmalloc", &mixed, 10.0),
                cell_runs("c", "glibc", &drift, 10.0),
                cell_runs("c", "jemalloc", &scaled(2.0), 10.0),
                // The fastest peer crashed: the next one is the best peer.
                cell_runs("d", "rseqmalloc", &drift, 10.0),
                cell_runs("d", "glibc", &drift, 10.0),
                crashed("d", "jemalloc"),
                // rseqmalloc crashed: nothing to pair.
                crashed("e", "rseqmalloc"),
                cell_runs("e", "glibc", &drift, 10.0),
            ],
        );
        let p = &report.vs_best_overall.paired;
        let got: Vec<(&str, &str, paired::Side)> = p
            .iter()
            .map(|p| {
                let t = p.paired.time.unwrap();
                (
                    p.paired.workload.as_str(),
                    p.peer.as_str(),
                    t.against(ABOVE),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", "jemalloc", paired::Side::Above),
                ("b", "glibc", paired::Side::AtOrBelow),
                ("c", "glibc", paired::Side::Across),
                ("d", "glibc", paired::Side::AtOrBelow),
            ]
        );
        let a = p[0].paired.time.unwrap();
        assert!(
            (a.median - 1.2).abs() < 1e-12 && (a.lo - 1.2).abs() < 1e-12,
            "{a:?}"
        );
        let text = table_text(&report);
        let expected = "the same, paired by repetition with each workload's best peer (median \
                        [interval]): geomean 1.07x; 1 of 4 wholly above 1.1x: a 1.20x [1.20-1.20] \
                        vs jemalloc; 2 at or below; 1 across it: c 1.20x [0.95-1.30] vs glibc\n";
        assert!(text.contains(expected), "no '{expected}' in\n{text}");
        let json = serde_json::to_value(&report).unwrap();
        let a = &json["vs_best_overall"]["paired"][0];
        assert_eq!(
            (a["workload"].as_str(), a["peer"].as_str()),
            (Some("a"), Some("jemalloc"))
        );
        assert_eq!(a["time"]["pairs"], 5);
    }

    /// With fewer than three repetitions there is no paired line against the best peers.
    #[test]
    fn no_paired_best_peer_line_below_three_repetitions() {
        let report = Report::new(
            setup(&["rseqmalloc", "glibc"]),
            vec![
                cell_runs("a", "rseqmalloc", &[90.0, 95.0], 10.0),
                cell_runs("a", "glibc", &[100.0, 100.0], 10.0),
            ],
        );
        assert_eq!(report.vs_best_overall.paired.len(), 1);
        let text = table_text(&report);
        assert!(text.contains("workloads above 1.1x"), "{text}");
        assert!(!text.contains("paired by repetition with each"), "{text}");
    }

    /// With fewer than three repetitions the pairs say too little for an interval: one line.
    #[test]
    fn paired_intervals_need_three_repetitions() {
        let mut s = setup(&["rseqmalloc", "glibc", "before"]);
        s.allocators[2].candidate = true;
        let report = Report::new(
            s,
            vec![
                cell_runs("a", "rseqmalloc", &[90.0, 95.0], 10.0),
                cell_runs("a", "glibc", &[100.0, 100.0], 10.0),
                cell_runs("a", "before", &[100.0, 100.0], 10.0),
            ],
        );
        let text = table_text(&report);
        assert!(
            text.contains("rseqmalloc / before, paired by repetition: needs --repeat 3 or more"),
            "{text}"
        );
        assert!(!text.contains("resolved:"), "{text}");
    }

    /// The "geomean time against the best peer's" takes one peer for the whole run:
    /// the one rseqmalloc compares worst with, over the workloads both completed.
    #[test]
    fn the_best_peer_overall_is_one_peer_for_the_whole_run() {
        let names = ["rseqmalloc", "glibc", "jemalloc", "cand"];
        let mut s = setup(&names);
        s.allocators[3].candidate = true;
        // (time ms, peak MiB) of workload a, then b, in the order of `names`.
        let figures = [
            [(50.0, 20.0), (100.0, 10.0), (25.0, 40.0), (1.0, 1.0)],
            [(100.0, 10.0), (50.0, 20.0), (400.0, 40.0), (1.0, 1.0)],
        ];
        let cells = ["a", "b"]
            .iter()
            .zip(figures)
            .flat_map(|(w, row)| names.iter().zip(row).map(|(a, (t, r))| cell(w, a, t, r)))
            .collect();
        let report = Report::new(s, cells);
        let o = &report.vs_best_overall;
        let t = o.time.as_ref().unwrap();
        // Against glibc sqrt(0.5 * 2) = 1, against jemalloc sqrt(2 * 0.25) = 0.71: glibc is the
        // faster peer over the run, though jemalloc is the best of workload a (2.00x there).
        assert_eq!((t.peer.as_str(), t.workloads), ("glibc", 2));
        assert!((t.ratio - 1.0).abs() < 1e-12, "{t:?}");
        let r = o.peak_rss.as_ref().unwrap();
        assert_eq!(r.peer, "glibc"); // sqrt(2 * 0.5) = 1 against sqrt(0.5 * 0.25)
        assert_eq!(
            o.above,
            vec![("a".to_string(), 2.0), ("b".to_string(), 2.0)],
            "the candidate is never a peer"
        );
        let text = table_text(&report);
        for expected in [
            "rseqmalloc vs the best peer overall: 1.00x the time of glibc (2 workloads), 1.00x the peak RSS of glibc (2)",
            "workloads above 1.1x their best peer's time: 2 (a 2.00x, b 2.00x)",
        ] {
            assert!(text.contains(expected), "no '{expected}' in\n{text}");
        }
    }

    #[test]
    fn ratios_best_peers_and_geomeans() {
        let mut crashed = cell("b", "jemalloc", 0.0, 0.0);
        crashed.status = Status::Crashed;
        crashed.summary = "crashed: SIGSEGV".into();
        crashed.time_ms = None;
        crashed.peak_rss_mib = None;
        let report = Report::new(
            setup(&["rseqmalloc", "glibc", "jemalloc"]),
            vec![
                cell("a", "rseqmalloc", 50.0, 20.0),
                cell("a", "glibc", 100.0, 10.0),
                cell("a", "jemalloc", 80.0, 40.0),
                cell("b", "rseqmalloc", 200.0, 10.0),
                cell("b", "glibc", 100.0, 10.0),
                crashed,
            ],
        );
        let row = &report.cells[0];
        assert_eq!(row.time_vs_glibc, Some(0.5));
        assert_eq!(row.rss_vs_glibc, Some(2.0));
        assert_eq!(row.time_vs_best_peer, Some(50.0 / 80.0));
        assert_eq!(row.time_best_peer.as_deref(), Some("jemalloc"));
        assert_eq!(row.rss_best_peer.as_deref(), Some("glibc"));
        assert_eq!(
            report.cells[2].time_vs_best_peer, None,
            "only for rseqmalloc"
        );
        assert_eq!(report.cells[5].time_vs_glibc, None, "failed cell");

        let g = &report.geomean[0];
        assert_eq!(g.workloads, 2);
        assert!((g.time_vs_glibc.unwrap() - 1.0).abs() < 1e-12); // sqrt(0.5 * 2)
        assert_eq!(report.geomean[2].workloads, 1);

        let text = table_text(&report);
        for expected in [
            "crashed: SIGSEGV",
            "0.62x jemalloc",
            "rseqmalloc vs glibc: 1.00x the time",
            "load average (1/5/15 min) 0.50 0.25 0.12 before, 1.50 0.50 0.25 after",
            "commit: 0123456789ab",
            "allocators: rseqmalloc rseqmalloc-1.0, glibc glibc-1.0, jemalloc jemalloc-1.0",
            "indicative only",
            "20k",
        ] {
            assert!(text.contains(expected), "no '{expected}' in\n{text}");
        }
        // 100 ms with a range of 90-110 ms: a 20 % spread beside the median.
        let glibc_a = text
            .lines()
            .find(|l| l.contains("glibc") && l.contains("100.0"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(glibc_a.contains("20%"), "{glibc_a}");

        let mut csv = Vec::new();
        report.write_csv(&mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.lines().count(), 7);
        // Workload b: 2.00x glibc, its only peer that completed, so above the 1.1x bound.
        assert_eq!(report.vs_best_overall.above, vec![("b".to_string(), 2.0)]);
        assert!(
            csv.lines()
                .next()
                .unwrap()
                .starts_with("workload,allocator,scale,status,summary,time_ms,time_min_ms"),
            "{csv}"
        );
        assert!(
            csv.contains("b,jemalloc,1.0,crashed,crashed: SIGSEGV,"),
            "{csv}"
        );

        let json: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&report).unwrap()).unwrap();
        assert_eq!(json["cells"].as_array().unwrap().len(), 6);
        assert_eq!(json["cells"][5]["status"], "crashed");
        assert_eq!(json["cells"][0]["time_vs_glibc"], 0.5);
        assert!((json["cells"][1]["time_range_ms"][1].as_f64().unwrap() - 110.0).abs() < 1e-9);
        assert_eq!(json["commit"], "0123456789ab");
        assert_eq!(json["allocators"][2]["version"], "jemalloc-1.0");
        assert_eq!(json["load_after"][0], 1.5);
    }

    /// The best peer by CPU time is chosen apart from the best by wall time, and rseqmalloc's
    /// geomean against it is printed beside the wall-time one, with its workloads above 1.1x.
    #[test]
    fn the_best_peer_by_cpu_time_is_its_own() {
        let with_cpu = |workload: &str, allocator: &str, ms: f64, cpu: f64| {
            let mut c = cell(workload, allocator, ms, 10.0);
            c.cpu_ms = Some(cpu);
            c
        };
        let report = Report::new(
            setup(&["rseqmalloc", "glibc", "jemalloc"]),
            vec![
                with_cpu("a", "rseqmalloc", 110.0, 90.0),
                with_cpu("a", "glibc", 120.0, 120.0),
                with_cpu("a", "jemalloc", 100.0, 100.0),
                with_cpu("b", "rseqmalloc", 100.0, 130.0),
                with_cpu("b", "glibc", 150.0, 100.0),
                with_cpu("b", "jemalloc", 140.0, 110.0),
            ],
        );
        let (a, b) = (&report.cells[0], &report.cells[3]);
        assert_eq!(a.cpu_vs_best_peer, Some(0.9));
        assert_eq!(a.cpu_best_peer.as_deref(), Some("jemalloc"));
        assert_eq!(a.time_vs_best_peer, Some(1.1));
        assert_eq!(b.cpu_vs_best_peer, Some(1.3));
        assert_eq!(b.cpu_best_peer.as_deref(), Some("glibc"));
        assert_eq!(b.time_best_peer.as_deref(), Some("jemalloc"));
        assert_eq!(
            report.cells[1].cpu_vs_best_peer, None,
            "only for rseqmalloc"
        );
        let g = &report.geomean[0];
        assert!((g.cpu_vs_best_peer.unwrap() - (0.9f64 * 1.3).sqrt()).abs() < 1e-12);
        assert_eq!(report.geomean[1].cpu_vs_best_peer, None);

        let text = table_text(&report);
        let expected = "the same by CPU time (user + system, against each workload's lowest): \
                        1.08x; above 1.1x: 1 (b 1.30x)";
        assert!(text.contains(expected), "no '{expected}' in\n{text}");
        let mut csv = Vec::new();
        report.write_csv(&mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert!(
            csv.lines()
                .next()
                .unwrap()
                .contains("cpu_vs_best_peer,cpu_best_peer"),
            "{csv}"
        );
        assert!(csv.contains(",1.3,glibc,"), "{csv}");
    }

    #[test]
    fn busy_single_threaded_cells_are_flagged() {
        let mut waited = cell("single-churn", "glibc", 300.0, 1.0);
        waited.cpu_ms = Some(100.0);
        let mut threaded = cell("larson", "glibc", 300.0, 1.0);
        threaded.cpu_ms = Some(100.0);
        let report = Report::new(setup(&["glibc"]), vec![waited, threaded]);
        assert_eq!(report.cells[0].busy, Some(3.0));
        assert_eq!(report.cells[1].busy, None, "threads may wait on each other");
        let text = table_text(&report);
        assert!(text.contains("300.0*"), "{text}");
        assert!(
            text.contains(
                "warning: single-churn is single-threaded, yet its wall time exceeded 1.5x its \
                 user+system time under glibc 3.00x"
            ),
            "{text}"
        );
        assert!(!text.contains("warning: larson"), "{text}");
    }

    #[test]
    fn helpers() {
        assert_eq!(geometric_mean([2.0, 8.0].into_iter()), Some(4.0));
        assert_eq!(geometric_mean(std::iter::empty()), None);
        assert_eq!(count(Some(2_490_000.0)), "2490k");
        assert_eq!(count(Some(24_900_000.0)), "24.9M");
        assert_eq!(count(Some(999.0)), "999");
        assert_eq!(percent(Some(0.034)), "3%");
        assert_eq!(percent(None), "-");
        let now = utc_now();
        assert!(now.len() == 20 && now.ends_with(" UTC"), "{now}");
    }
}
