//! `--baseline previous.json`: the change of every cell's median time and
//! peak RSS against an earlier run's JSON report, and per allocator the
//! geometric mean of those changes. Only cells that succeeded in both runs
//! at the same scale are compared; the rest are named with the reason.

use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::report::{geometric_mean, ratio, table, times, Report};

/// The part of an earlier `--json` report that a comparison reads (older
/// reports without the newer fields parse too).
#[derive(Debug, Deserialize)]
pub struct Earlier {
    pub date: String,
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub quick: bool,
    pub cells: Vec<EarlierCell>,
}

#[derive(Debug, Deserialize)]
pub struct EarlierCell {
    pub workload: String,
    pub allocator: String,
    pub scale: f64,
    pub status: String,
    pub time_ms: Option<f64>,
    pub peak_rss_mib: Option<f64>,
}

/// Reads an earlier `--json` report.
pub fn load(path: &Path) -> Result<Earlier, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read --baseline {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "--baseline {} is not a rseqmalloc-bench JSON report: {e}",
            path.display()
        )
    })
}

/// One cell, then and now (`change` = now / then).
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub workload: String,
    pub allocator: String,
    pub time_then_ms: Option<f64>,
    pub time_now_ms: Option<f64>,
    pub time_change: Option<f64>,
    pub rss_then_mib: Option<f64>,
    pub rss_now_mib: Option<f64>,
    pub rss_change: Option<f64>,
    /// Why the cell was not compared, if it was not.
    pub not_compared: Option<String>,
}

/// An allocator's geometric mean of its cells' changes.
#[derive(Debug, Clone, Serialize)]
pub struct MeanChange {
    pub allocator: String,
    pub workloads: usize,
    pub time_change: Option<f64>,
    pub rss_change: Option<f64>,
}

/// The whole comparison, as printed and as put in the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub path: String,
    pub date: String,
    pub commit: Option<String>,
    pub quick: bool,
    pub changes: Vec<Change>,
    pub geomean: Vec<MeanChange>,
}

/// Compares `report` with the earlier run read from `path`.
pub fn compare(path: &Path, earlier: &Earlier, report: &Report) -> Comparison {
    let changes: Vec<Change> = report
        .cells
        .iter()
        .map(|row| {
            let now = &row.cell;
            let then = earlier
                .cells
                .iter()
                .find(|c| c.workload == now.workload && c.allocator == now.allocator);
            let not_compared = match then {
                None => Some("not in the baseline".to_string()),
                Some(t) if (t.scale - now.scale).abs() > 1e-9 * now.scale => {
                    Some(format!("scale {} then, {} now", t.scale, now.scale))
                }
                Some(t) if t.status != "ok" => Some(format!("{} then", t.status)),
                Some(_) if !now.is_ok() => Some(format!("{} now", now.summary)),
                Some(_) => None,
            };
            let compared = then.filter(|_| not_compared.is_none());
            Change {
                workload: now.workload.clone(),
                allocator: now.allocator.clone(),
                time_then_ms: then.and_then(|t| t.time_ms),
                time_now_ms: now.time_ms,
                time_change: compared.and_then(|t| ratio(now.time_ms, t.time_ms)),
                rss_then_mib: then.and_then(|t| t.peak_rss_mib),
                rss_now_mib: now.peak_rss_mib,
                rss_change: compared.and_then(|t| ratio(now.peak_rss_mib, t.peak_rss_mib)),
                not_compared,
            }
        })
        .collect();
    let geomean = report
        .setup
        .allocators
        .iter()
        .map(|a| {
            let mine: Vec<&Change> = changes
                .iter()
                .filter(|c| c.allocator == a.name && c.time_change.is_some())
                .collect();
            MeanChange {
                allocator: a.name.clone(),
                workloads: mine.len(),
                time_change: geometric_mean(mine.iter().filter_map(|c| c.time_change)),
                rss_change: geometric_mean(mine.iter().filter_map(|c| c.rss_change)),
            }
        })
        .collect();
    Comparison {
        path: path.display().to_string(),
        date: earlier.date.clone(),
        commit: earlier.commit.clone(),
        quick: earlier.quick,
        changes,
        geomean,
    }
}

impl Comparison {
    /// The change table and its geometric means.
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "change against {} ({}{}{}): now / then, below 1.00x = faster or smaller now",
            self.path,
            self.date,
            self.commit
                .as_deref()
                .map_or(String::new(), |c| format!(", commit {c}")),
            if self.quick { ", --quick" } else { "" },
        )?;
        writeln!(out)?;
        let mut t = table(&[
            ("workload", false),
            ("allocator", false),
            ("time ms then", true),
            ("now", true),
            ("change", true),
            ("peak MiB then", true),
            ("now", true),
            ("change", true),
        ]);
        let mut last = "";
        for c in self.changes.iter().filter(|c| c.not_compared.is_none()) {
            let workload = if c.workload == last {
                String::new()
            } else {
                c.workload.clone()
            };
            last = &c.workload;
            let ms = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
            t.add_row(vec![
                workload,
                c.allocator.clone(),
                ms(c.time_then_ms),
                ms(c.time_now_ms),
                times(c.time_change),
                ms(c.rss_then_mib),
                ms(c.rss_now_mib),
                times(c.rss_change),
            ]);
        }
        if t.row_count() > 0 {
            writeln!(out, "{}", t.trim_fmt())?;
        } else {
            writeln!(out, "no cell to compare")?;
        }
        // The rest, one line per workload and reason.
        let mut skipped: Vec<(&str, &str, Vec<&str>)> = Vec::new();
        for c in &self.changes {
            let Some(why) = &c.not_compared else { continue };
            match skipped
                .iter_mut()
                .find(|(w, r, _)| *w == c.workload && *r == why)
            {
                Some((_, _, allocators)) => allocators.push(&c.allocator),
                None => skipped.push((&c.workload, why, vec![&c.allocator])),
            }
        }
        for (workload, why, allocators) in skipped {
            writeln!(
                out,
                "not compared: {workload} x {}: {why}",
                allocators.join(", ")
            )?;
        }
        if self.geomean.iter().all(|g| g.workloads == 0) {
            return Ok(());
        }
        writeln!(out)?;
        let mut means = table(&[
            ("geomean change", false),
            ("workloads", true),
            ("time", true),
            ("peak RSS", true),
        ]);
        for g in &self.geomean {
            means.add_row(vec![
                g.allocator.clone(),
                g.workloads.to_string(),
                times(g.time_change),
                times(g.rss_change),
            ]);
        }
        writeln!(out, "{}", means.trim_fmt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{cell, setup};

    #[test]
    fn changes_per_cell_and_geomeans() {
        let earlier: Earlier = serde_json::from_str(
            r#"{"date": "2026-01-01 00:00 UTC", "commit": "abc", "quick": false, "extra": 1,
                "cells": [
                  {"workload": "a", "allocator": "glibc", "scale": 1.0, "status": "ok",
                   "time_ms": 200.0, "peak_rss_mib": 10.0},
                  {"workload": "b", "allocator": "glibc", "scale": 0.5, "status": "ok",
                   "time_ms": 100.0, "peak_rss_mib": 10.0},
                  {"workload": "a", "allocator": "jemalloc", "scale": 1.0, "status": "crashed",
                   "time_ms": null, "peak_rss_mib": null}
                ]}"#,
        )
        .unwrap();
        let report = Report::new(
            setup(&["glibc", "jemalloc"]),
            vec![
                cell("a", "glibc", 100.0, 20.0),
                cell("b", "glibc", 100.0, 10.0),
                cell("a", "jemalloc", 50.0, 10.0),
                cell("b", "jemalloc", 50.0, 10.0),
            ],
        );
        let cmp = compare(Path::new("old.json"), &earlier, &report);
        assert_eq!(cmp.changes[0].time_change, Some(0.5));
        assert_eq!(cmp.changes[0].rss_change, Some(2.0));
        assert_eq!(
            cmp.changes[1].not_compared.as_deref(),
            Some("scale 0.5 then, 1 now")
        );
        assert_eq!(cmp.changes[2].not_compared.as_deref(), Some("crashed then"));
        assert_eq!(
            cmp.changes[3].not_compared.as_deref(),
            Some("not in the baseline")
        );
        assert_eq!(cmp.geomean[0].workloads, 1);
        assert_eq!(cmp.geomean[0].time_change, Some(0.5));
        assert_eq!(cmp.geomean[1].workloads, 0);

        let mut text = Vec::new();
        cmp.write(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("change against old.json (2026-01-01 00:00 UTC, commit abc)"),
            "{text}"
        );
        assert!(text.contains("0.50x") && text.contains("2.00x"), "{text}");
        assert!(
            text.contains("not compared: a x jemalloc: crashed then"),
            "{text}"
        );
        assert!(
            text.contains("not compared: b x glibc: scale 0.5 then, 1 now"),
            "{text}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_report_is_refused() {
        let dir = std::env::temp_dir().join(format!("baseline-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "{\"cells\": 3}").unwrap();
        assert!(load(&bad)
            .unwrap_err()
            .contains("is not a rseqmalloc-bench JSON report"));
        assert!(load(&dir.join("missing.json"))
            .unwrap_err()
            .contains("cannot read --baseline"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
