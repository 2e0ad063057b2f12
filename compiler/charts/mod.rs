//! SVG charts drawn with plotters (SPEC §6): `nnc compare`'s bars, `nnc sweep`'s
//! latency–energy plane, and `nnc sim`'s per-layer breakdown and roofline. Each chart is one
//! file with one entry point that takes plain numbers and returns the SVG text, so commands
//! and tests share it and nothing here knows about the compiler.

mod compare;
mod layers;
mod pareto;
mod roofline;

pub use compare::{compare_bars, Bar};
pub use layers::{layer_breakdown, LayerBar};
pub use pareto::{pareto_plane, Design};
pub use roofline::{roofline, Roof, RooflinePoint};

use plotters::style::RGBColor;

/// Any plotters error, as text: the SVG backend writes to a string, so they are rare.
pub(crate) fn err<E: std::fmt::Display>(e: E) -> String {
    format!("cannot draw the chart: {e}")
}

/// A colour-blind-safe palette (Okabe–Ito).
pub(crate) const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // green
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(204, 121, 167), // purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(240, 228, 66),  // yellow
];

/// Tick labels for log axes: 1, 10, 100, 1k, 10k... (plotters' default prints 1e3).
pub(crate) fn si(v: f64) -> String {
    let a = v.abs();
    let (x, unit) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if x.abs() >= 100.0 || x == x.round() {
        format!("{x:.0}{unit}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}{unit}")
    } else {
        format!("{x:.2}").trim_end_matches('0').trim_end_matches('.').to_string() + unit
    }
}

/// Log axes are drawn as linear axes over log10 of the values, labelled with the values:
/// plotters' own log scale labels only whole decades, too few for a two-decade chart.
pub(crate) fn lg(v: f64) -> f64 {
    v.max(1e-30).log10()
}

/// The label of a log10 coordinate.
pub(crate) fn exp_label(v: &f64) -> String {
    si(10f64.powf(*v))
}

/// A log10 axis range covering `values` with a little room on both sides.
pub(crate) fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let r = value_range(values);
    lg(r.start)..lg(r.end)
}

/// The value range covering `values` with a little room on both sides.
fn value_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 0.1..10.0;
    }
    if hi / lo < 3.0 {
        // Keep at least half a decade in view, or the axis shows a single tick label.
        let mid = (lo * hi).sqrt();
        return mid / 2.0..mid * 2.0;
    }
    lo / 1.3..hi * 1.3
}

#[cfg(test)]
mod tests {
    #[test]
    fn si_labels_are_short() {
        assert_eq!(super::si(1000.0), "1k");
        assert_eq!(super::si(2.5e6), "2.5M");
        assert_eq!(super::si(0.25), "0.25");
        assert_eq!(super::si(12.0), "12");
    }
}
