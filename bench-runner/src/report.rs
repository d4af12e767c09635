//! What a run found, in three forms: the text table (absolute figures,
//! ratios to glibc for every allocator, ratios to the best peer for
//! rseqmalloc, geometric means), JSON (`--json`) and CSV (`--csv`).

use std::io::{self, Write};

use serde::Serialize;

use crate::allocators::{Allocator, Skipped, GLIBC, RSEQMALLOC};
use crate::run::Cell;

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

/// How a run was set up (everything in the report but the results).
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// UTC, `YYYY-MM-DD HH:MM`.
    pub date: String,
    pub host: Host,
    pub repeat: usize,
    pub quick: bool,
    pub timeout_s: f64,
    /// Wall time of all the runs, in seconds.
    pub elapsed_s: f64,
    pub allocators: Vec<AllocatorInfo>,
    pub skipped: Vec<Skipped>,
    pub workloads: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AllocatorInfo {
    pub name: String,
    /// The `LD_PRELOAD` library; `null` for glibc.
    pub library: Option<String>,
}

impl From<&Allocator> for AllocatorInfo {
    fn from(a: &Allocator) -> Self {
        AllocatorInfo {
            name: a.name.clone(),
            library: a.preload.as_ref().map(|p| p.display().to_string()),
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
}

/// Everything `--json` writes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub setup: Setup,
    pub cells: Vec<Row>,
    pub geomean: Vec<Geomean>,
}

impl Report {
    pub fn new(setup: Setup, cells: Vec<Cell>) -> Self {
        let ok = |workload: &str, allocator: &str| {
            cells
                .iter()
                .find(|c| c.workload == workload && c.allocator == allocator && c.is_ok())
        };
        let rows: Vec<Row> = cells
            .iter()
            .map(|cell| {
                let glibc = ok(&cell.workload, GLIBC).filter(|_| cell.is_ok());
                let (best_time, best_rss) = if cell.allocator == RSEQMALLOC && cell.is_ok() {
                    let peers: Vec<&Cell> = cells
                        .iter()
                        .filter(|c| c.workload == cell.workload && c.allocator != RSEQMALLOC)
                        .collect();
                    (
                        best(&peers, |c| c.time_ms),
                        best(&peers, |c| c.peak_rss_mib),
                    )
                } else {
                    (None, None)
                };
                Row {
                    time_vs_glibc: glibc.and_then(|g| ratio(cell.time_ms, g.time_ms)),
                    rss_vs_glibc: glibc.and_then(|g| ratio(cell.peak_rss_mib, g.peak_rss_mib)),
                    time_vs_best_peer: best_time.and_then(|b| ratio(cell.time_ms, b.time_ms)),
                    time_best_peer: best_time.map(|b| b.allocator.clone()),
                    rss_vs_best_peer: best_rss
                        .and_then(|b| ratio(cell.peak_rss_mib, b.peak_rss_mib)),
                    rss_best_peer: best_rss.map(|b| b.allocator.clone()),
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
                }
            })
            .collect();
        Report {
            setup,
            cells: rows,
            geomean,
        }
    }

    /// The human-readable table.
    pub fn write_table(&self, out: &mut dyn Write) -> io::Result<()> {
        let s = &self.setup;
        writeln!(
            out,
            "rseqmalloc-bench {}: {} workloads x {} allocators, median of {} run{} each{}, {:.0} s",
            s.date,
            s.workloads.len(),
            s.allocators.len(),
            s.repeat,
            if s.repeat == 1 { "" } else { "s" },
            if s.quick { " (--quick)" } else { "" },
            s.elapsed_s,
        )?;
        writeln!(
            out,
            "host: {} CPUs, {}, {}",
            s.host.cpus, s.host.cpu_model, s.host.kernel
        )?;
        writeln!(
            out,
            "ratios below 1.00x are better; best peer = the best allocator other than rseqmalloc, per workload and figure"
        )?;
        writeln!(out)?;

        let mut table = Table::new(&[
            ("workload", Align::Left),
            ("allocator", Align::Left),
            ("time ms", Align::Right),
            ("CPU ms", Align::Right),
            ("peak MiB", Align::Right),
            ("time/glibc", Align::Right),
            ("RSS/glibc", Align::Right),
            ("time/best peer", Align::Left),
            ("RSS/best peer", Align::Left),
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
                table.note(vec![workload, c.allocator.clone()], c.summary.clone());
                continue;
            }
            table.row(vec![
                workload,
                c.allocator.clone(),
                num(c.time_ms, 1),
                num(c.cpu_ms, 1),
                num(c.peak_rss_mib, 1),
                times(row.time_vs_glibc),
                times(row.rss_vs_glibc),
                versus(row.time_vs_best_peer, &row.time_best_peer),
                versus(row.rss_vs_best_peer, &row.rss_best_peer),
            ]);
        }
        table.write(out)?;

        writeln!(out)?;
        let mut means = Table::new(&[
            ("geomean", Align::Left),
            ("workloads", Align::Right),
            ("time/glibc", Align::Right),
            ("RSS/glibc", Align::Right),
            ("time/best peer", Align::Right),
            ("RSS/best peer", Align::Right),
        ]);
        for g in &self.geomean {
            means.row(vec![
                g.allocator.clone(),
                format!("{}/{}", g.workloads, s.workloads.len()),
                times(g.time_vs_glibc),
                times(g.rss_vs_glibc),
                times(g.time_vs_best_peer),
                times(g.rss_vs_best_peer),
            ]);
        }
        means.write(out)?;

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
        }
        Ok(())
    }

    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        writeln!(out)
    }

    /// One line per cell, failures included (their figures empty).
    pub fn write_csv(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "workload,allocator,scale,status,summary,time_ms,cpu_ms,peak_rss_mib,ops,\
             time_vs_glibc,rss_vs_glibc,time_vs_best_peer,time_best_peer,rss_vs_best_peer,rss_best_peer,detail"
        )?;
        for row in &self.cells {
            let c = &row.cell;
            let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
            let fields = [
                c.workload.clone(),
                c.allocator.clone(),
                c.scale.to_string(),
                serde_json::to_value(c.status)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                c.summary.clone(),
                opt(c.time_ms),
                opt(c.cpu_ms),
                opt(c.peak_rss_mib),
                c.ops.map_or(String::new(), |o| o.to_string()),
                opt(row.time_vs_glibc),
                opt(row.rss_vs_glibc),
                opt(row.time_vs_best_peer),
                row.time_best_peer.clone().unwrap_or_default(),
                opt(row.rss_vs_best_peer),
                row.rss_best_peer.clone().unwrap_or_default(),
                c.detail.clone().unwrap_or_default(),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            writeln!(out, "{}", line.join(","))?;
        }
        Ok(())
    }
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

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
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

fn times(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.2}x"))
}

fn versus(v: Option<f64>, peer: &Option<String>) -> String {
    match (v, peer) {
        (Some(v), Some(p)) => format!("{v:.2}x {p}"),
        _ => String::new(),
    }
}

fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Today's date and time in UTC, `YYYY-MM-DD HH:MM UTC`, without a date crate.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

enum Line {
    Cells(Vec<String>),
    /// Leading cells, then free text over the remaining columns.
    Note(Vec<String>, String),
}

/// A plain-text table with columns as wide as their widest cell.
struct Table {
    columns: Vec<(String, Align)>,
    lines: Vec<Line>,
}

impl Table {
    fn new(columns: &[(&str, Align)]) -> Self {
        Table {
            columns: columns.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
            lines: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.lines.push(Line::Cells(cells));
    }

    fn note(&mut self, lead: Vec<String>, text: String) {
        self.lines.push(Line::Note(lead, text));
    }

    fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.columns.iter().map(|(h, _)| h.len()).collect();
        for line in &self.lines {
            let cells = match line {
                Line::Cells(c) | Line::Note(c, _) => c,
            };
            for (w, c) in widths.iter_mut().zip(cells) {
                *w = (*w).max(c.chars().count());
            }
        }
        let render = |cells: &[String]| -> String {
            let parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .zip(&self.columns)
                .map(|((c, &w), (_, align))| match align {
                    Align::Left => format!("{c:<w$}"),
                    Align::Right => format!("{c:>w$}"),
                })
                .collect();
            parts.join("  ")
        };
        let header: Vec<String> = self.columns.iter().map(|(h, _)| h.clone()).collect();
        writeln!(out, "{}", render(&header).trim_end())?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        writeln!(out, "{}", rule.join("  "))?;
        for line in &self.lines {
            match line {
                Line::Cells(c) => writeln!(out, "{}", render(c).trim_end())?,
                Line::Note(lead, text) => writeln!(out, "{}  {text}", render(lead))?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Sample;
    use crate::run::Status;

    fn cell(workload: &str, allocator: &str, ms: f64, mib: f64) -> Cell {
        Cell {
            workload: workload.into(),
            allocator: allocator.into(),
            scale: 1.0,
            status: Status::Ok,
            summary: "ok".into(),
            detail: None,
            time_ms: Some(ms),
            cpu_ms: Some(ms),
            peak_rss_mib: Some(mib),
            ops: Some(1),
            runs: vec![Sample {
                wall_ms: ms,
                cpu_ms: ms,
                max_rss_kib: (mib * 1024.0) as u64,
                ops: 1,
            }],
        }
    }

    fn setup(allocators: &[&str]) -> Setup {
        Setup {
            date: "2026-01-01 00:00 UTC".into(),
            host: Host {
                cpus: 2,
                cpu_model: "test".into(),
                kernel: "Linux test".into(),
            },
            repeat: 1,
            quick: true,
            timeout_s: 60.0,
            elapsed_s: 1.0,
            allocators: allocators
                .iter()
                .map(|n| AllocatorInfo {
                    name: n.to_string(),
                    library: None,
                })
                .collect(),
            skipped: vec![],
            workloads: vec!["a".into(), "b".into()],
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

        let mut text = Vec::new();
        report.write_table(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("crashed: SIGSEGV"), "{text}");
        assert!(text.contains("0.62x jemalloc"), "{text}");
        assert!(
            text.contains("rseqmalloc vs glibc: 1.00x the time"),
            "{text}"
        );

        let mut csv = Vec::new();
        report.write_csv(&mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.lines().count(), 7);
        assert!(
            csv.contains("b,jemalloc,1,crashed,crashed: SIGSEGV,"),
            "{csv}"
        );

        let json: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&report).unwrap()).unwrap();
        assert_eq!(json["cells"].as_array().unwrap().len(), 6);
        assert_eq!(json["cells"][5]["status"], "crashed");
        assert_eq!(json["cells"][0]["time_vs_glibc"], 0.5);
    }

    #[test]
    fn helpers() {
        assert_eq!(geometric_mean([2.0, 8.0].into_iter()), Some(4.0));
        assert_eq!(geometric_mean(std::iter::empty()), None);
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
