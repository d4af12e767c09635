//! The SVG chart: per workload, each allocator's wall time and peak RSS as
//! a ratio to glibc, drawn with plotters' SVG backend (text as SVG `<text>`,
//! so no font library is needed). The y axis is log2 of the ratio, labelled
//! as ratios, so 0.5x and 2x sit equally far from the 1.0x line the bars
//! start from.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::allocators::{GLIBC, RSEQMALLOC};
use crate::report::{Report, Row};

const SIZE: (u32, u32) = (1280, 900);
const FONT: &str = "sans-serif";

/// Writes the chart of `report` to `path` (an `.svg` file).
pub fn write_svg(report: &Report, path: &Path) -> Result<(), String> {
    let allocators: Vec<&str> = report
        .setup
        .allocators
        .iter()
        .map(|a| a.name.as_str())
        .filter(|n| *n != GLIBC)
        .collect();
    if !report.setup.allocators.iter().any(|a| a.name == GLIBC) {
        return Err("glibc, the baseline, was not measured".into());
    }
    if allocators.is_empty() {
        return Err("no allocator besides glibc was measured".into());
    }
    draw(report, &allocators, path).map_err(|e| e.to_string())
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(report: &Report, allocators: &[&str], path: &Path) -> DrawResult {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Allocators against glibc (ratio, log scale: below 1.0 is better; x = crashed, failed or timed out)",
        (FONT, 20),
    )?;
    let (top, bottom) = root.split_vertically(SIZE.1 as i32 / 2 - 20);
    panel(&top, report, allocators, "Wall time / glibc", |r| {
        r.time_vs_glibc
    })?;
    panel(&bottom, report, allocators, "Peak RSS / glibc", |r| {
        r.rss_vs_glibc
    })?;
    root.present()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &Report,
    allocators: &[&str],
    title: &str,
    metric: fn(&Row) -> Option<f64>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let workloads = &report.setup.workloads;
    let row = |w: &str, a: &str| {
        report
            .cells
            .iter()
            .find(|r| r.cell.workload == w && r.cell.allocator == a)
    };
    let values: Vec<f64> = report.cells.iter().filter_map(metric).collect();
    // In log2 units, with a margin below and room above for the legend.
    let lo = (values.iter().copied().fold(1.0, f64::min).max(1e-3) / 1.2).log2();
    let hi = (values.iter().copied().fold(1.0, f64::max) * 1.2).log2();
    let hi = hi + (hi - lo) * 0.35;
    let n = workloads.len() as f64;

    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 17))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5..n - 0.5, lo..hi)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(workloads.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                workloads.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_labels(10)
        .y_label_formatter(&|y| format!("{:.2}x", y.exp2()))
        .label_style((FONT, 13))
        .draw()?;

    let width = 0.8 / allocators.len() as f64;
    for (k, &allocator) in allocators.iter().enumerate() {
        let color = color_of(allocator, k);
        let left = |i: usize| i as f64 - 0.4 + k as f64 * width;
        let bars = workloads.iter().enumerate().filter_map(|(i, w)| {
            let ratio = row(w, allocator).and_then(metric)?;
            let x = left(i);
            Some(Rectangle::new(
                [(x + width * 0.08, 0.0), (x + width * 0.92, ratio.log2())],
                color.filled(),
            ))
        });
        chart
            .draw_series(bars)?
            .label(allocator)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled()));
        let failures = workloads.iter().enumerate().filter_map(|(i, w)| {
            let failed = row(w, allocator).is_some_and(|r| !r.cell.is_ok());
            failed.then(|| {
                Text::new(
                    "x",
                    (left(i) + width / 2.0, 0.0),
                    (FONT, 16)
                        .into_font()
                        .color(&RED)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                )
            })
        });
        chart.draw_series(failures)?;
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(-0.5, 0.0), (n - 0.5, 0.0)],
        BLACK.stroke_width(1),
    )))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
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
        _ => return Palette99::pick(index + 4).to_rgba(),
    };
    rgb.to_rgba()
}
