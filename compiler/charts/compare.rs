//! `nnc compare --plot`: latency and energy per inference of each target, side by side.

use super::{err, exp_label, lg, log_range, si, PALETTE};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One target's bar.
pub struct Bar {
    pub name: String,
    /// The CPU (measured) or an accelerator (modeled): the bar's colour.
    pub cpu: bool,
    pub latency_us: f64,
    pub energy_uj: f64,
}

/// Two panels of bars on log axes: latency (µs) and energy (µJ) per inference.
pub fn compare_bars(title: &str, bars: &[Bar]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
        let (left, right) = root.split_horizontally(500);
        let n = bars.len();
        let names: Vec<String> = bars.iter().map(|b| b.name.clone()).collect();
        let panels: [(&DrawingArea<SVGBackend, _>, &str, &str, fn(&Bar) -> f64); 2] = [
            (&left, "Latency per inference", "latency (µs, log scale)", |b| b.latency_us),
            (&right, "Energy per inference", "energy (µJ, log scale)", |b| b.energy_uj),
        ];
        for (area, caption, y_desc, value) in panels {
            let range = log_range(bars.iter().map(value));
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 18))
                .margin(12)
                .margin_bottom(40)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), range.clone())
                .map_err(err)?;
            let label = |v: &SegmentValue<usize>| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => names.get(*i).cloned().unwrap_or_default(),
                SegmentValue::Last => String::new(),
            };
            chart
                .configure_mesh()
            .light_line_style(WHITE)
                .disable_x_mesh()
                .x_labels(n)
                .x_label_formatter(&label)
                .x_label_style(("sans-serif", 13))
                .y_desc(y_desc)
                .y_label_formatter(&exp_label)
                .draw()
                .map_err(err)?;
            chart
                .draw_series(bars.iter().enumerate().map(|(i, b)| {
                    let colour = if b.cpu { PALETTE[1] } else { PALETTE[0] };
                    let mut r = Rectangle::new([(SegmentValue::Exact(i), range.start), (SegmentValue::Exact(i + 1), lg(value(b)))], colour.filled());
                    r.set_margin(0, 0, 12, 12);
                    r
                }))
                .map_err(err)?;
            chart
                .draw_series(bars.iter().enumerate().map(|(i, b)| {
                    Text::new(si(value(b)), (SegmentValue::CenterOf(i), lg(value(b) * 1.05)), ("sans-serif", 13).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom)))
                }))
                .map_err(err)?;
        }
        // A legend for the two colours, once, along the bottom.
        let bottom = root.dim_in_pixel().1 as i32 - 24;
        for (k, (label, colour)) in [("CPU, measured", PALETTE[1]), ("accelerator, modeled", PALETTE[0])].into_iter().enumerate() {
            let x = 330 + 200 * k as i32;
            root.draw(&Rectangle::new([(x, bottom), (x + 14, bottom + 14)], colour.filled())).map_err(err)?;
            root.draw(&Text::new(label, (x + 20, bottom), ("sans-serif", 14))).map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}
