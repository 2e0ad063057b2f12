//! `nnc sim --roofline`: each layer at (MACs per DRAM byte, MACs per cycle) under the
//! configured machine's roofs: the array's peak and the DRAM bandwidth slope.

use super::{err, exp_label, lg, log_range, si, PALETTE};
use plotters::prelude::*;

/// The machine: `rows × cols` MACs per cycle, DRAM bytes per cycle.
pub struct Roof {
    pub peak_macs_per_cycle: f64,
    pub dram_bytes_per_cycle: f64,
}

/// One layer.
pub struct RooflinePoint {
    pub name: String,
    pub macs_per_byte: f64,
    pub macs_per_cycle: f64,
    /// Ran on the array (else on the vector unit).
    pub array: bool,
}

pub fn roofline(title: &str, roof: &Roof, points: &[RooflinePoint]) -> Result<String, String> {
    let ridge = roof.peak_macs_per_cycle / roof.dram_bytes_per_cycle;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 700)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let x = log_range(points.iter().map(|p| p.macs_per_byte).chain([ridge / 4.0, ridge * 4.0]));
        let y = log_range(points.iter().map(|p| p.macs_per_cycle).chain([roof.peak_macs_per_cycle * 1.5]));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(55)
            .y_label_area_size(75)
            .build_cartesian_2d(x.clone(), y.clone())
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("operational intensity (MACs per DRAM byte, log scale)")
            .y_desc("throughput (MACs per cycle, log scale)")
            .x_labels(12)
            .y_labels(12)
            .x_label_formatter(&exp_label)
            .y_label_formatter(&exp_label)
            .draw()
            .map_err(err)?;
        let bound = |i: f64| (roof.dram_bytes_per_cycle * i).min(roof.peak_macs_per_cycle);
        let samples: Vec<(f64, f64)> = (0..=400).map(|k| x.start + (x.end - x.start) * k as f64 / 400.0).map(|lx| (lx, lg(bound(10f64.powf(lx))))).filter(|p| p.1 >= y.start).collect();
        chart
            .draw_series(LineSeries::new(samples, BLACK.stroke_width(2)))
            .map_err(err)?
            .label(format!("roof: {} MACs/cycle peak, {:.1} B/cycle DRAM (ridge {} MACs/B)", si(roof.peak_macs_per_cycle), roof.dram_bytes_per_cycle, si(ridge)))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
        for (array, label, colour) in [(true, "layer on the array", PALETTE[0]), (false, "layer on the vector unit", PALETTE[1])] {
            chart
                .draw_series(points.iter().filter(|p| p.array == array && p.macs_per_byte > 0.0 && p.macs_per_cycle > 0.0).map(|p| Circle::new((lg(p.macs_per_byte), lg(p.macs_per_cycle)), 5, colour.filled())))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
        }
        // Layers of the same shape land on the same spot: one label for each spot.
        let mut spots: Vec<(f64, f64, String, usize)> = Vec::new();
        for p in points.iter().filter(|p| p.macs_per_byte > 0.0 && p.macs_per_cycle > 0.0) {
            let (x, y) = (lg(p.macs_per_byte), lg(p.macs_per_cycle));
            match spots.iter_mut().find(|s| (s.0 - x).abs() < 0.02 && (s.1 - y).abs() < 0.02) {
                Some(s) => s.3 += 1,
                None => spots.push((x, y, p.name.clone(), 0)),
            }
        }
        if spots.len() <= 40 {
            chart
                .draw_series(spots.iter().map(|(x, y, name, more)| {
                    let label = if *more > 0 { format!("{name} (+{more})") } else { name.clone() };
                    EmptyElement::at((*x, *y)) + Text::new(label, (7, -5), ("sans-serif", 11))
                }))
                .map_err(err)?;
        }
        chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.9)).border_style(BLACK).label_font(("sans-serif", 14)).draw().map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
