//! The picture of a run (`--plot FILE.svg` or `.png`): on the left the latency
//! distribution of every phase as a CDF over a log axis, on the right throughput over time
//! in 250 ms buckets (MB/s, or operations per second when the run moved no bytes).
//!
//! Fonts: plotters is built with `ab_glyph` and without `ttf`, so it never looks for system
//! fonts through fontconfig; DejaVu Sans, embedded in the binary by the `dejavu` crate, is
//! registered as `sans-serif` before drawing. Text layout needs a font for SVG too, so both
//! formats work on a machine with no font package at all.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::Report;
use crate::stats::BUCKET_MS;

const SIZE: (u32, u32) = (1200, 500);
const FONT: &str = "sans-serif";
/// Series colours, dark enough on white (Palette99's third is a pale yellow).
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
/// Points drawn per CDF: enough for a smooth curve, few enough for a small SVG.
const CDF_POINTS: usize = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    pub fn of(path: &Path) -> anyhow::Result<Format> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => bail!(
                "--plot {}: the file must end in .svg or .png",
                path.display()
            ),
        }
    }
}

fn register_font() -> anyhow::Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if !ok {
        bail!("the embedded DejaVu Sans font could not be loaded");
    }
    Ok(())
}

/// Draws `report` to `path`, as SVG or PNG by its extension.
pub fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    let format = Format::of(path)?;
    register_font()?;
    let fail = |e: String| anyhow!("plotting {}: {e}", path.display());
    match format {
        Format::Svg => {
            let root = SVGBackend::new(path, SIZE).into_drawing_area();
            draw_on(&root, report).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))?;
        }
        Format::Png => {
            let root = BitMapBackend::new(path, SIZE).into_drawing_area();
            draw_on(&root, report).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))?;
        }
    }
    Ok(())
}

fn draw_on<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let title = format!(
        "shoal-bench {} against {}",
        r.scenario,
        r.targets.join(", ")
    );
    let area = root.titled(&title, (FONT, 20)).map_err(e)?;
    let (left, right) = area.split_horizontally(SIZE.0 / 2);
    latency_cdf(&left, r).map_err(e)?;
    throughput(&right, r).map_err(e)?;
    Ok(())
}

fn latency_cdf<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &Report,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let floor = 0.001;
    let all = r.samples.iter().flat_map(|p| p.ms.iter().copied());
    let lo = all.clone().fold(f64::INFINITY, f64::min).max(floor);
    let hi = all.fold(0.0, f64::max).max(lo);
    // Whole decades: plotters labels a log axis at powers of ten only, so a range inside
    // one decade would have no labels at all.
    let (lo, hi) = if lo.is_finite() {
        let lo = 10f64.powf(lo.log10().floor());
        (lo, 10f64.powf(hi.log10().ceil()).max(lo * 10.0))
    } else {
        (1.0, 10.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption("latency distribution (CDF)", (FONT, 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency, ms (log)")
        .y_desc("fraction at or below")
        .x_label_formatter(&|v| short(*v))
        .label_style((FONT, 12))
        .draw()?;
    for (i, p) in r
        .samples
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.ms.is_empty())
    {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                cdf_steps(&p.ms, floor),
                color.stroke_width(2),
            ))?
            .label(format!("{} ({})", p.name, p.ms.len()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
}

/// The empirical CDF of sorted samples as a step line, thinned to about `CDF_POINTS`
/// steps (every sample when there are fewer; the last one always).
fn cdf_steps(sorted: &[f64], floor: f64) -> Vec<(f64, f64)> {
    let n = sorted.len();
    let stride = n.div_ceil(CDF_POINTS).max(1);
    let mut points = Vec::with_capacity(2 * CDF_POINTS + 2);
    let mut below = 0.0;
    let mut idx = 0;
    loop {
        let x = sorted[idx].max(floor);
        let frac = (idx + 1) as f64 / n as f64;
        points.push((x, below));
        points.push((x, frac));
        below = frac;
        if idx == n - 1 {
            return points;
        }
        idx = (idx + stride).min(n - 1);
    }
}

/// An axis label without trailing zeros (`0.1`, `10`, `250`).
fn short(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn throughput<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &Report,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let bucket = BUCKET_MS as f64 / 1000.0;
    let by_bytes = r.timeline.bytes.iter().any(|b| *b > 0);
    let (values, unit): (&[u64], String) = if by_bytes {
        (&r.timeline.bytes, "MB/s".into())
    } else {
        (&r.timeline.ops, format!("{}/s", r.throughput.ops_unit))
    };
    // Each bucket as a step; the last one is as wide as the run's tail, not a full bucket.
    let mut points = Vec::with_capacity(values.len() * 2);
    for (i, v) in values.iter().enumerate() {
        let start = i as f64 * bucket;
        let width = (r.elapsed_s - start).clamp(0.001, bucket);
        let rate = *v as f64 / width / if by_bytes { 1e6 } else { 1.0 };
        points.push((start, rate));
        points.push((start + width, rate));
    }
    let x_max = points.last().map_or(1.0, |p| p.0).max(bucket);
    let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("throughput per {BUCKET_MS} ms"), (FONT, 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the clock started")
        .y_desc(unit)
        .label_style((FONT, 12))
        .draw()?;
    chart.draw_series(LineSeries::new(points, COLORS[0].stroke_width(2)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn formats_by_extension() {
        let check =
            |p: &str, want: Option<Format>| assert_eq!(Format::of(Path::new(p)).ok(), want, "{p}");
        check("a.svg", Some(Format::Svg));
        check("a.PNG", Some(Format::Png));
        check("a.jpg", None);
        check("a", None);
    }

    #[test]
    fn cdf_steps_rise_to_one() {
        let steps = cdf_steps(&[1.0, 2.0, 3.0], 0.001);
        assert_eq!(
            steps,
            [
                (1.0, 0.0),
                (1.0, 1.0 / 3.0),
                (2.0, 1.0 / 3.0),
                (2.0, 2.0 / 3.0),
                (3.0, 2.0 / 3.0),
                (3.0, 1.0)
            ]
        );
        let many: Vec<f64> = (0..10_000).map(f64::from).collect();
        let steps = cdf_steps(&many, 0.001);
        assert!(steps.len() <= 2 * CDF_POINTS + 2, "{}", steps.len());
        assert_eq!(steps.last(), Some(&(9999.0, 1.0)));
        assert_eq!(
            steps[0],
            (0.001, 0.0),
            "zero is drawn at the floor of the log axis"
        );
    }

    #[test]
    fn labels() {
        assert_eq!(short(10.0), "10");
        assert_eq!(short(0.1), "0.1");
        assert_eq!(short(250.0), "250");
        assert_eq!(short(0.001), "0.001");
    }

    #[test]
    fn both_formats_are_drawn() {
        let dir = std::env::temp_dir().join(format!("shoal-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["p.svg", "p.png"] {
            let path = dir.join(name);
            draw(&sample(), &path).unwrap();
            let len = std::fs::metadata(&path).unwrap().len();
            assert!(len > 1000, "{name} is {len} bytes");
        }
        let svg = std::fs::read_to_string(dir.join("p.svg")).unwrap();
        assert!(
            svg.contains("latency distribution"),
            "the SVG has its captions"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
