//! The latency-over-time plot: p50 and p99 of the requests started in each slice of the run,
//! as an SVG file any browser opens.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::report::Report;

/// Writes `report`'s timeline to `file` (SVG).
pub fn write(file: &Path, report: &Report) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("plot {}: {e}", file.display());
    let t = &report.timeline;
    let x_end = t
        .last()
        .map_or(1.0, |b| b.start_s)
        .max(report.duration_s)
        .max(0.001);
    let y_end = t.iter().map(|b| b.p99_ms).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(file, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let caption = format!(
        "shop-load {}: {} requests, {:.0}/s, {} at once",
        report.mode, report.requests, report.requests_per_s, report.concurrency
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_end, 0.0..y_end)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| err(&e))?;
    let series = [
        (
            "p50",
            BLUE,
            t.iter().map(|b| (b.start_s, b.p50_ms)).collect::<Vec<_>>(),
        ),
        (
            "p99",
            RED,
            t.iter().map(|b| (b.start_s, b.p99_ms)).collect(),
        ),
    ];
    for (label, color, points) in series {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
