//! The SVG chart: per workload, and for the geometric mean over them, each
//! allocator's wall time and peak RSS as a ratio to glibc, drawn with
//! plotters' SVG backend (text as SVG `<text>`, so no font library is
//! needed). The y axis is log2 of the ratio, labelled as ratios, so 0.5x and
//! 2x sit equally far from the 1.0x line the bars start from; every bar
//! carries its value. The title says when, on how many CPUs and in which
//! mode the figures were made.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::allocators::{GLIBC, RSEQMALLOC};
use crate::report::{Geomean, Report, Row};

const SIZE: (u32, u32) = (1900, 1200);
const FONT: &str = "sans-serif";
/// The last group of bars: each allocator's geometric mean over the workloads.
const GEOMEAN: &str = "geomean";

/// Writes the chart of `report` to `path` (an `.svg` file).
pub fn write_svg(report: &Report, path: &Path) -> Result<(), String> {
    if !report.setup.allocators.iter().any(|a| a.name == GLIBC) {
        return Err("glibc, the baseline, was not measured".into());
    }
    let allocators: Vec<(&str, String)> = report
        .setup
        .allocators
        .iter()
        .filter(|a| a.name != GLIBC)
        .map(|a| (a.name.as_str(), a.label()))
        .collect();
    if allocators.is_empty() {
        return Err("no allocator besides glibc was measured".into());
    }
    draw(report, &allocators, path).map_err(|e| e.to_string())
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// One figure of the chart: its panel title, a cell's ratio, a geomean's.
struct Metric {
    title: &'static str,
    cell: fn(&Row) -> Option<f64>,
    mean: fn(&Geomean) -> Option<f64>,
}

fn title(report: &Report) -> String {
    let s = &report.setup;
    let mode = if s.quick {
        format!(
            "--quick, {} repetition{} (indicative only)",
            s.repeat,
            if s.repeat == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "default run, median of {} repetition{}",
            s.repeat,
            if s.repeat == 1 { "" } else { "s" }
        )
    };
    format!(
        "rseqmalloc-bench {}: {} CPUs, {mode}{}",
        s.date,
        s.host.cpus,
        s.commit
            .as_deref()
            .map_or(String::new(), |c| format!(", commit {c}"))
    )
}

fn draw(report: &Report, allocators: &[(&str, String)], path: &Path) -> DrawResult {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&title(report), (FONT, 22))?;
    let (note, rest) = root.split_vertically(24);
    note.draw(&Text::new(
        "ratio to glibc, log scale: below 1.00 is better; the last group is the geometric mean \
         over the workloads; x = crashed, failed or timed out",
        (SIZE.0 as i32 / 2, 4),
        (FONT, 15)
            .into_font()
            .color(&BLACK.mix(0.7))
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    let (top, bottom) = rest.split_vertically((SIZE.1 as i32 - 60) / 2);
    let time = Metric {
        title: "Wall time / glibc",
        cell: |r| r.time_vs_glibc,
        mean: |g| g.time_vs_glibc,
    };
    let rss = Metric {
        title: "Peak RSS / glibc",
        cell: |r| r.rss_vs_glibc,
        mean: |g| g.rss_vs_glibc,
    };
    panel(&top, report, allocators, &time)?;
    panel(&bottom, report, allocators, &rss)?;
    root.present()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &Report,
    allocators: &[(&str, String)],
    metric: &Metric,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let mut groups: Vec<&str> = report.setup.workloads.iter().map(String::as_str).collect();
    groups.push(GEOMEAN);
    // The ratio of `allocator` in `group`, and whether its cell failed.
    let value = |group: &str, allocator: &str| -> (Option<f64>, bool) {
        if group == GEOMEAN {
            let mean = report.geomean.iter().find(|g| g.allocator == allocator);
            return (mean.and_then(metric.mean), false);
        }
        let row = report
            .cells
            .iter()
            .find(|r| r.cell.workload == group && r.cell.allocator == allocator);
        (
            row.and_then(metric.cell),
            row.is_some_and(|r| !r.cell.is_ok()),
        )
    };
    let values: Vec<f64> = groups
        .iter()
        .flat_map(|g| allocators.iter().filter_map(move |(a, _)| value(g, a).0))
        .collect();
    // In log2 units, with room below and above for the values and the legend.
    let lo = (values.iter().copied().fold(1.0, f64::min).max(1e-3) / 1.25).log2();
    let hi = (values.iter().copied().fold(1.0, f64::max) * 1.25).log2();
    let (lo, hi) = (lo - (hi - lo) * 0.12, hi + (hi - lo) * 0.45);
    let n = groups.len() as f64;

    let mut chart = ChartBuilder::on(area)
        .caption(metric.title, (FONT, 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5..n - 0.5, lo..hi)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                groups
                    .get(i as usize)
                    .map_or(String::new(), |g| g.to_string())
            } else {
                String::new()
            }
        })
        .y_labels(10)
        .max_light_lines(1)
        .y_label_formatter(&|y| format!("{:.2}x", y.exp2()))
        .label_style((FONT, 12))
        .draw()?;

    // The geomean group stands apart behind a light band.
    chart.draw_series(std::iter::once(Rectangle::new(
        [(n - 1.5, lo), (n - 0.5, hi)],
        RGBColor(0xee, 0xee, 0xee).filled(),
    )))?;

    let width = 0.84 / allocators.len() as f64;
    for (k, (allocator, label)) in allocators.iter().enumerate() {
        let color = color_of(allocator, k);
        let left = |i: usize| i as f64 - 0.42 + k as f64 * width;
        let bars = groups.iter().enumerate().filter_map(|(i, g)| {
            let ratio = value(g, allocator).0?;
            let x = left(i);
            Some(Rectangle::new(
                [(x + width * 0.08, 0.0), (x + width * 0.92, ratio.log2())],
                color.filled(),
            ))
        });
        chart
            .draw_series(bars)?
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled()));
        // The value at the end of each bar, written along it.
        let labels = groups.iter().enumerate().filter_map(|(i, g)| {
            let ratio = value(g, allocator).0?;
            let up = ratio >= 1.0;
            let font = (FONT, 11)
                .into_font()
                .transform(FontTransform::Rotate270)
                .color(&BLACK)
                .pos(Pos::new(
                    if up { HPos::Left } else { HPos::Right },
                    VPos::Center,
                ));
            let gap = (hi - lo) * 0.006 * if up { 1.0 } else { -1.0 };
            Some(Text::new(
                format!("{ratio:.2}"),
                (left(i) + width / 2.0, ratio.log2() + gap),
                font,
            ))
        });
        chart.draw_series(labels)?;
        let failures = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| value(g, allocator).1)
            .map(|(i, _)| {
                Text::new(
                    "x",
                    (left(i) + width / 2.0, 0.0),
                    (FONT, 16)
                        .into_font()
                        .color(&RED)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                )
            });
        chart.draw_series(failures)?;
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(-0.5, 0.0), (n - 0.5, 0.0)],
        BLACK.stroke_width(1),
    )))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}

/// A fixed colour per well-known allocator (rseqmalloc stands out), so
/// charts of different runs compare at a glance; others from a palette.
fn color_of(allocator: &str, index: usize) -> RGBAColor {
    let rgb = match allocator {
        RSEQMALLOC => RGBColor(0x1f, 0x5f, 0xbf),
        "jemalloc" => RGBColor(0xc0, 0x39, 0x2b),
        "mimalloc" => RGBColor(0x27, 0x9d, 0x4f),
        "tcmalloc" => RGBColor(0xe6, 0x7e, 0x22),
        "mimalloc3" => RGBColor(0x8e, 0x44, 0xad),
        "snmalloc" => RGBColor(0x16, 0xa0, 0x85),
        _ => return Palette99::pick(index + 4).to_rgba(),
    };
    rgb.to_rgba()
}
