//! `ember bench -npl ... --plot FILE.svg`: the roofline of this machine with the batched test's
//! points. The bandwidth roof (the measured read bandwidth times operations per byte) and the
//! compute roof (the measured int8 dot-product peak of the instruction the kernels use) bound
//! what any kernel can reach; each decode step is a point at its arithmetic intensity
//! (operations per byte of weights and KV read) and achieved operations per second: one
//! sequence sits on the bandwidth slope, more sequences climb it, prefill sits near the compute
//! roof. Both axes are log10. Drawn by the `splot` crate; the style sheet is ours, inlined so
//! the file stands alone.

use std::path::Path;

use anyhow::{Context as _, Result};
use splot::{Chart, Domain, Edge, Plot};

/// One measured point: arithmetic intensity (operations per byte) and operations per second.
pub struct Point {
    pub series: String,
    pub intensity: f64,
    pub ops: f64,
}

/// Write the roofline of `bandwidth` (bytes/s) and `peak` (operations/s) with `points` to `path`.
pub fn write(path: &Path, title: &str, bandwidth: f64, peak: f64, points: &[Point]) -> Result<()> {
    let log = |v: f64| v.max(1e-9).log10();
    let ridge = peak / bandwidth;
    let lo = points
        .iter()
        .map(|p| p.intensity)
        .fold(ridge, f64::min)
        .min(1.0)
        / 2.0;
    let hi = points.iter().map(|p| p.intensity).fold(ridge, f64::max) * 4.0;
    let roof: Vec<(f64, f64)> = [lo, ridge, hi]
        .iter()
        .map(|&ai| (log(ai), log((bandwidth * ai).min(peak) / 1e9)))
        .collect();
    let mut names: Vec<&str> = Vec::new();
    for p in points {
        if !names.contains(&p.series.as_str()) {
            names.push(&p.series);
        }
    }
    let series: Vec<Vec<(f64, f64)>> = names
        .iter()
        .map(|n| {
            points
                .iter()
                .filter(|p| p.series == *n)
                .map(|p| (log(p.intensity), log(p.ops / 1e9)))
                .collect()
        })
        .collect();
    let y_max = log(peak / 1e9) + 0.5;
    let y_min = series
        .iter()
        .flatten()
        .map(|&(_, y)| y)
        .chain(roof.iter().map(|&(_, y)| y))
        .fold(y_max, f64::min)
        - 0.5;
    // the legend, in the title (the crate draws legends only into HTML pages)
    let color_names = [
        "gray", "red", "blue", "green", "purple", "orange", "brown", "cyan",
    ];
    let legend: Vec<String> = std::iter::once("roof")
        .chain(names.iter().copied())
        .zip(color_names.iter().cycle())
        .map(|(n, c)| format!("{n} ({c})"))
        .collect();
    let title = format!("{title}: {}", legend.join(", "));
    let mut chart = Chart::new()
        .title(title.as_str())
        .domain(
            Domain::from(&roof[..])
                .set_x(&[(log(lo), 0.0), (log(hi), 0.0)])
                .set_y(&[(0.0, y_min), (0.0, y_max)]),
        )
        .axis("log10 operations per byte read", Edge::Bottom)
        .axis("log10 GOPS", Edge::Left)
        .plot(Plot::line("roof: bandwidth, then int8 peak", &roof));
    for (n, s) in names.iter().zip(&series) {
        chart = chart.plot(Plot::scatter(n, s));
    }
    let svg = inline_style(&chart.to_string());
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
}

/// Colours per series (the roof first).
const COLORS: [&str; 8] = [
    "#777", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf",
];

/// Type, strokes and each series' colour and marker for the chart's classes, in place of the
/// external style sheet the crate links to (plain properties: not every SVG viewer knows CSS
/// variables).
fn style() -> String {
    let mut s = String::from(
        "svg{background:#fff}\
         .title{fill:#222;font:30px sans-serif}.axis{fill:#222;font:40px sans-serif}\
         .tick{fill:#222;font:30px sans-serif}.axis-line{stroke:#222;stroke-width:2px}\
         .grid-x,.grid-y{stroke:#999;stroke-width:1px;stroke-dasharray:2 6}\
         .plot{clip-path:url(#clip-plot)}.plot-label{fill:#222;font:30px sans-serif}\
         .plot-line{fill:none;stroke-width:5px}.plot-scatter{fill:none;stroke:none;stroke-width:6px}",
    );
    for (i, c) in COLORS.iter().enumerate() {
        let m = format!("url(#marker-{i})");
        s.push_str(&format!(
            ".plot-{i}.plot-line{{stroke:{c}}}marker.plot-{i}{{fill:{c}}}\
             .plot-{i}.plot-scatter{{marker-start:{m};marker-mid:{m};marker-end:{m}}}"
        ));
    }
    s
}

/// The chart's SVG as a file of its own: the SVG namespace on the root (which the crate leaves
/// to an embedding page), and its style-sheet link replaced by [`style`].
fn inline_style(svg: &str) -> String {
    let svg = svg.replacen("<svg ", "<svg xmlns=\"http://www.w3.org/2000/svg\" ", 1);
    let svg = svg.as_str();
    let style = format!("<style>{}</style>", style());
    match svg.find("<link") {
        Some(a) => match svg[a..].find("/>") {
            Some(b) => format!("{}{style}{}", &svg[..a], &svg[a + b + 2..]),
            None => svg.to_string(),
        },
        None => svg.replacen('>', &format!(">{style}"), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_roofline_is_a_standalone_svg_with_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roof.svg");
        let points = [
            Point {
                series: "decode".into(),
                intensity: 2.0,
                ops: 40e9,
            },
            Point {
                series: "decode".into(),
                intensity: 16.0,
                ops: 300e9,
            },
            Point {
                series: "prefill".into(),
                intensity: 500.0,
                ops: 900e9,
            },
        ];
        write(&path, "test", 20e9, 1e12, &points).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<style>"), "{svg}");
        assert!(!svg.contains("splot.css"));
        for name in ["decode", "prefill", "roof"] {
            assert!(svg.contains(name), "{name} missing");
        }
    }
}
