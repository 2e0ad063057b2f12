//! `nnc sim --plot`: per layer, cycles split into compute and stall, and energy by
//! component, as horizontal stacked bars (the first layer on top).

use super::{err, si, PALETTE};
use plotters::prelude::*;

/// One layer's numbers.
pub struct LayerBar {
    pub name: String,
    pub compute_cycles: u64,
    pub stall_cycles: u64,
    /// Energy in pJ by component, in the order of [`ENERGY_PARTS`].
    pub energy_pj: [f64; 5],
}

pub const ENERGY_PARTS: [&str; 5] = ["MAC", "vector", "scratchpad", "accumulator", "DRAM"];

pub fn layer_breakdown(title: &str, layers: &[LayerBar]) -> Result<String, String> {
    let n = layers.len().max(1);
    let height = (140 + 18 * n as u32).min(30_000);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
        let (left, right) = root.split_horizontally(640);
        let names: Vec<String> = layers.iter().map(|l| l.name.clone()).collect();
        // Row i from the top is layer i.
        let row = |i: usize| n - 1 - i;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) if *i < n => names.get(n - 1 - *i).cloned().unwrap_or_default(),
            _ => String::new(),
        };

        let max_cycles = layers.iter().map(|l| l.compute_cycles + l.stall_cycles).max().unwrap_or(1).max(1) as f64;
        let mut chart = ChartBuilder::on(&left)
            .caption("Cycles per layer", ("sans-serif", 17))
            .margin(10)
            .x_label_area_size(45)
            .y_label_area_size(190)
            .build_cartesian_2d(0.0..max_cycles * 1.3, (0..n - 1).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&label)
            .y_label_style(("sans-serif", 12))
            .x_desc("cycles")
            .x_label_formatter(&|v| si(*v))
            .draw()
            .map_err(err)?;
        let parts: [(&str, RGBColor, fn(&LayerBar) -> (f64, f64)); 2] = [
            ("compute", PALETTE[0], |l| (0.0, l.compute_cycles as f64)),
            ("stall", PALETTE[1], |l| (l.compute_cycles as f64, (l.compute_cycles + l.stall_cycles) as f64)),
        ];
        for (name, colour, span) in parts {
            chart
                .draw_series(layers.iter().enumerate().map(|(i, l)| {
                    let (a, b) = span(l);
                    let mut r = Rectangle::new([(a, SegmentValue::Exact(row(i))), (b, SegmentValue::Exact(row(i) + 1))], colour.filled());
                    r.set_margin(2, 2, 0, 0);
                    r
                }))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.9)).border_style(BLACK).label_font(("sans-serif", 13)).draw().map_err(err)?;

        let max_energy = layers.iter().map(|l| l.energy_pj.iter().sum::<f64>()).fold(0.0, f64::max).max(1.0) * 1e-6;
        let mut chart = ChartBuilder::on(&right)
            .caption("Energy per layer", ("sans-serif", 17))
            .margin(10)
            .x_label_area_size(45)
            .y_label_area_size(10)
            .build_cartesian_2d(0.0..max_energy * 1.3, (0..n - 1).into_segmented())
            .map_err(err)?;
        chart.configure_mesh().light_line_style(WHITE).disable_y_mesh().y_labels(n).y_label_formatter(&|_| String::new()).x_desc("energy (µJ)").x_label_formatter(&|v| si(*v)).draw().map_err(err)?;
        for (k, part) in ENERGY_PARTS.iter().enumerate() {
            let colour = PALETTE[k + 2];
            chart
                .draw_series(layers.iter().enumerate().map(|(i, l)| {
                    let a: f64 = l.energy_pj[..k].iter().sum::<f64>() * 1e-6;
                    let b = a + l.energy_pj[k] * 1e-6;
                    let mut r = Rectangle::new([(a, SegmentValue::Exact(row(i))), (b, SegmentValue::Exact(row(i) + 1))], colour.filled());
                    r.set_margin(2, 2, 0, 0);
                    r
                }))
                .map_err(err)?
                .label(*part)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.9)).border_style(BLACK).label_font(("sans-serif", 13)).draw().map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_layer_and_part() {
        let layers: Vec<LayerBar> = (0..3).map(|i| LayerBar { name: format!("conv{i}"), compute_cycles: 1000 * (i + 1), stall_cycles: 300, energy_pj: [5e6, 0.0, 1e6, 1e6, 8e6] }).collect();
        let svg = layer_breakdown("test model", &layers).unwrap();
        for text in ["conv0", "conv2", "compute", "stall", "DRAM", "cycles", "energy (µJ)"] {
            assert!(svg.contains(text), "{text} missing");
        }
    }
}
