//! The schedule of a run and its aggregation: every repetition runs every
//! workload under every allocator (allocators interleaved, their order
//! rotated each repetition, so drifting machine noise hits them all alike),
//! and each (workload, allocator) cell keeps the median of its repetitions.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use rseqmalloc_bench::Workload;

use crate::allocators::Allocator;
use crate::measure::{self, Latency, Outcome, Sample};

/// What to run.
pub struct Plan<'a> {
    pub workload_bin: &'a Path,
    /// Each workload with the scale to pass it.
    pub workloads: Vec<(&'static Workload, f64)>,
    pub allocators: &'a [Allocator],
    pub repeat: usize,
    pub timeout: Duration,
}

/// How a cell ended: the first failure of any repetition wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Crashed,
    Failed,
    Timeout,
}

/// The result of one workload under one allocator.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cell {
    pub workload: String,
    pub allocator: String,
    pub scale: f64,
    pub status: Status,
    /// `ok`, `crashed: SIGSEGV`, `failed: exit 3`, `timeout`, ...
    pub summary: String,
    /// The child's last lines of stderr, for a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Medians over the repetitions, each beside the lowest and highest
    /// repetition (all absent unless `status` is ok).
    pub time_ms: Option<f64>,
    pub time_range_ms: Option<[f64; 2]>,
    pub cpu_ms: Option<f64>,
    pub user_ms: Option<f64>,
    pub sys_ms: Option<f64>,
    pub minflt: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub peak_rss_range_mib: Option<[f64; 2]>,
    pub ops: Option<u64>,
    /// Medians of each latency percentile, for workloads that print them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// Every successful repetition, in order.
    pub runs: Vec<Sample>,
}

impl Cell {
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    fn new(workload: &str, allocator: &str, scale: f64) -> Self {
        Cell {
            workload: workload.to_string(),
            allocator: allocator.to_string(),
            scale,
            status: Status::Ok,
            summary: "ok".into(),
            detail: None,
            time_ms: None,
            time_range_ms: None,
            cpu_ms: None,
            user_ms: None,
            sys_ms: None,
            minflt: None,
            peak_rss_mib: None,
            peak_rss_range_mib: None,
            ops: None,
            latency: None,
            runs: Vec::new(),
        }
    }

    fn fail(&mut self, status: Status, summary: String, detail: String) {
        self.status = status;
        self.summary = summary;
        self.detail = Some(detail).filter(|d| !d.is_empty());
    }

    fn finish(&mut self) {
        if !self.is_ok() || self.runs.is_empty() {
            return;
        }
        let all = |f: &dyn Fn(&Sample) -> f64| self.runs.iter().map(f).collect::<Vec<f64>>();
        let wall = all(&|s| s.wall_ms);
        let rss = all(&|s| s.max_rss_kib as f64 / 1024.0);
        self.time_ms = Some(median(wall.clone()));
        self.time_range_ms = range(&wall);
        self.cpu_ms = Some(median(all(&|s| s.cpu_ms)));
        self.user_ms = Some(median(all(&|s| s.user_ms)));
        self.sys_ms = Some(median(all(&|s| s.sys_ms)));
        self.minflt = Some(median(all(&|s| s.minflt as f64)));
        self.peak_rss_mib = Some(median(rss.clone()));
        self.peak_rss_range_mib = range(&rss);
        self.ops = self.runs.last().map(|s| s.ops);
        let latencies: Vec<Latency> = self.runs.iter().filter_map(|s| s.latency).collect();
        if latencies.len() == self.runs.len() {
            let of = |f: fn(&Latency) -> f64| median(latencies.iter().map(f).collect());
            self.latency = Some(Latency {
                p50_ns: of(|l| l.p50_ns),
                p99_ns: of(|l| l.p99_ns),
                p999_ns: of(|l| l.p999_ns),
            });
        }
    }

    /// (max - min) / median of the wall time over the repetitions.
    pub fn time_spread(&self) -> Option<f64> {
        spread(self.time_range_ms, self.time_ms)
    }

    /// (max - min) / median of the peak RSS over the repetitions.
    pub fn rss_spread(&self) -> Option<f64> {
        spread(self.peak_rss_range_mib, self.peak_rss_mib)
    }
}

fn spread(range: Option<[f64; 2]>, median: Option<f64>) -> Option<f64> {
    match (range, median) {
        (Some([lo, hi]), Some(m)) if m > 0.0 => Some((hi - lo) / m),
        _ => None,
    }
}

/// The lowest and highest value; `None` for none.
fn range(values: &[f64]) -> Option<[f64; 2]> {
    let lo = values.iter().copied().reduce(f64::min)?;
    let hi = values.iter().copied().reduce(f64::max)?;
    Some([lo, hi])
}

/// Runs the plan, writing a progress line per run to `progress`; returns
/// one cell per (workload, allocator), workloads outermost.
pub fn run_all(plan: &Plan, progress: &mut dyn Write) -> Vec<Cell> {
    let n_alloc = plan.allocators.len();
    let mut cells: Vec<Cell> = plan
        .workloads
        .iter()
        .flat_map(|(w, scale)| {
            plan.allocators
                .iter()
                .map(move |a| Cell::new(w.name, &a.name, *scale))
        })
        .collect();
    let total = cells.len() * plan.repeat;
    let mut done = 0;
    for rep in 0..plan.repeat {
        for (wi, (workload, scale)) in plan.workloads.iter().enumerate() {
            for k in 0..n_alloc {
                let ai = (k + rep) % n_alloc;
                let allocator = &plan.allocators[ai];
                let cell = &mut cells[wi * n_alloc + ai];
                done += 1;
                if !cell.is_ok() {
                    continue; // failed in an earlier repetition: not worth rerunning
                }
                let scale_arg = scale.to_string();
                let outcome = measure::run_once(
                    plan.workload_bin,
                    &[workload.name, &scale_arg],
                    allocator.preload.as_deref(),
                    &allocator.env,
                    plan.timeout,
                );
                let shown = record(cell, outcome);
                // Progress is best effort: a closed stderr must not stop the run.
                let _ = writeln!(
                    progress,
                    "[{done}/{total}] {} × {} rep {}/{}: {shown}",
                    workload.name,
                    allocator.name,
                    rep + 1,
                    plan.repeat
                );
            }
        }
    }
    for cell in &mut cells {
        cell.finish();
    }
    cells
}

/// Adds one run's outcome to its cell; returns how to show it.
fn record(cell: &mut Cell, outcome: std::io::Result<Outcome>) -> String {
    match outcome {
        Ok(Outcome::Ok(sample)) => {
            let shown = format!(
                "{:.0} ms, {:.1} MiB",
                sample.wall_ms,
                sample.max_rss_kib as f64 / 1024.0
            );
            cell.runs.push(sample);
            return shown;
        }
        Ok(Outcome::Crashed { signal, detail }) => {
            cell.fail(Status::Crashed, format!("crashed: {signal}"), detail)
        }
        Ok(Outcome::Failed { reason, detail }) => {
            cell.fail(Status::Failed, format!("failed: {reason}"), detail)
        }
        Ok(Outcome::Timeout) => cell.fail(Status::Timeout, "timeout".into(), String::new()),
        Err(e) => cell.fail(Status::Failed, "failed: cannot start".into(), e.to_string()),
    }
    cell.summary.clone()
}

/// The median (mean of the middle two for an even count); NaN for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![7.0]), 7.0);
        assert!(median(vec![]).is_nan());
    }

    fn sample(ms: f64, kib: u64) -> Sample {
        Sample {
            wall_ms: ms,
            cpu_ms: ms / 2.0,
            user_ms: ms / 4.0,
            sys_ms: ms / 4.0,
            minflt: kib / 4,
            max_rss_kib: kib,
            ops: 10,
            latency: Some(Latency {
                p50_ns: ms,
                p99_ns: 10.0 * ms,
                p999_ns: 100.0 * ms,
            }),
        }
    }

    #[test]
    fn cells_take_medians_and_keep_the_first_failure() {
        let mut cell = Cell::new("w", "a", 1.0);
        for (ms, kib) in [(30.0, 2048), (10.0, 1024), (20.0, 4096)] {
            record(&mut cell, Ok(Outcome::Ok(sample(ms, kib))));
        }
        cell.finish();
        assert_eq!(cell.time_ms, Some(20.0));
        assert_eq!(cell.time_range_ms, Some([10.0, 30.0]));
        assert_eq!(cell.time_spread(), Some(1.0));
        assert_eq!(cell.cpu_ms, Some(10.0));
        assert_eq!(cell.user_ms, Some(5.0));
        assert_eq!(cell.sys_ms, Some(5.0));
        assert_eq!(cell.minflt, Some(512.0));
        assert_eq!(cell.peak_rss_mib, Some(2.0));
        assert_eq!(cell.peak_rss_range_mib, Some([1.0, 4.0]));
        assert_eq!(cell.rss_spread(), Some(1.5));
        assert_eq!(cell.ops, Some(10));
        assert_eq!(cell.latency.map(|l| l.p99_ns), Some(200.0));

        let mut bad = Cell::new("w", "b", 1.0);
        record(&mut bad, Ok(Outcome::Ok(sample(1.0, 1))));
        let shown = record(
            &mut bad,
            Ok(Outcome::Crashed {
                signal: "SIGSEGV".into(),
                detail: "x".into(),
            }),
        );
        bad.finish();
        assert_eq!(shown, "crashed: SIGSEGV");
        assert_eq!(bad.status, Status::Crashed);
        assert_eq!(bad.time_ms, None);
        assert_eq!(bad.detail.as_deref(), Some("x"));
    }
}
