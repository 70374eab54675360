//! PNG charts (plotters, bitmap backend): propagation latency against the number of
//! replicas, and memory per replica against live entries. Text needs a TrueType font,
//! read at run time (`--font`, or DejaVu Sans / Liberation Sans from the usual paths).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::BenchError;
use crate::report::Results;

const FONT: &str = "sans-serif";
const CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers the chart font. `Err` says what to install when none is found.
pub fn load_font(explicit: Option<&Path>) -> Result<PathBuf, BenchError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                BenchError::Chart(
                    "no TrueType font for chart text: install fonts-dejavu-core or pass --font"
                        .into(),
                )
            })?,
    };
    let bytes = std::fs::read(&path)?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| BenchError::Chart(format!("{} is not a usable font", path.display())))?;
    Ok(path)
}

fn chart_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Chart(e.to_string())
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// A log-log line chart of named series.
fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<(), BenchError> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Ok(());
    }
    let (x0, x1) = (x0 / 1.5, x1 * 1.5);
    let (y0, y1) = ((y0 / 2.0).max(1e-3), (y1 * 2.0).max(1e-2));
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(chart_err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style((FONT, 14))
        .x_label_formatter(&|x| format_number(*x))
        .y_label_formatter(&|y| format_number(*y))
        .draw()
        .map_err(chart_err)?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(chart_err)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(chart_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(chart_err)?;
    root.present().map_err(chart_err)?;
    Ok(())
}

fn format_number(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Draws the charts that `results` has data for into `dir`; returns their paths.
pub fn draw(results: &Results, dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
    let mut written = Vec::new();
    if !results.propagation.is_empty() {
        let pick = |f: fn(&crate::report::PropagationRow) -> f64| {
            results
                .propagation
                .iter()
                .map(|r| (r.ready as f64, f(r).max(0.01)))
                .collect::<Vec<_>>()
        };
        let path = dir.join("propagation.png");
        line_chart(
            &path,
            "Revoke call answered -> every replica holds it",
            "replicas (one NATS connection each, several processes)",
            "milliseconds",
            &[
                ("p50".into(), pick(|r| r.all_after_answer.p50_ms)),
                ("p99".into(), pick(|r| r.all_after_answer.p99_ms)),
                ("max".into(), pick(|r| r.all_after_answer.max_ms)),
            ],
        )?;
        written.push(path);
        let path = dir.join("propagation_cpu.png");
        line_chart(
            &path,
            "CPU one delta costs, by fleet size",
            "replicas (one NATS connection each, several processes)",
            "CPU per delta",
            &[
                (
                    "per replica (us)".into(),
                    pick(|r| r.cpu_per_delta_per_replica_us),
                ),
                (
                    "whole fleet (ms)".into(),
                    pick(|r| r.fleet_cpu_per_delta_ms),
                ),
            ],
        )?;
        written.push(path);
    }
    let memory: Vec<_> = results
        .sizes
        .iter()
        .filter_map(|s| s.memory.as_ref().map(|m| (s.live_entries as f64, m)))
        .collect();
    if !memory.is_empty() {
        let mib = |b: f64| b / f64::from(1u32 << 20);
        let mut series = vec![(
            "revocast replica (Bloom bitmaps)".to_owned(),
            memory
                .iter()
                .map(|(n, m)| (*n, mib(m.revocast_filter_bytes as f64)))
                .collect::<Vec<_>>(),
        )];
        series.push((
            "revocast replica, whole heap (allocator)".to_owned(),
            memory
                .iter()
                .map(|(n, m)| (*n, mib(m.revocast_replica_heap_bytes.max(1) as f64)))
                .collect(),
        ));
        let sets: Vec<_> = memory
            .iter()
            .filter_map(|(n, m)| m.hashset_heap_bytes.map(|b| (*n, mib(b as f64))))
            .collect();
        if !sets.is_empty() {
            series.push(("HashSet<String> replica".into(), sets));
        }
        let redis: Vec<_> = memory
            .iter()
            .filter_map(|(n, m)| m.redis_used_memory_bytes.map(|b| (*n, mib(b as f64))))
            .collect();
        if !redis.is_empty() {
            series.push(("Redis used_memory".into(), redis));
        }
        let path = dir.join("memory.png");
        line_chart(
            &path,
            "Memory for the revoked set, by live entries",
            "live revoked tokens",
            "MiB",
            &series,
        )?;
        written.push(path);
    }
    Ok(written)
}
