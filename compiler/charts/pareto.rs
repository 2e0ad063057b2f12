//! `nnc sweep --plot`: every design on the latency–energy plane, the Pareto-optimal ones
//! (over latency, energy and area) highlighted and the latency–energy front drawn.

use super::{err, exp_label, lg, log_range, PALETTE};
use plotters::prelude::*;

/// One swept design.
pub struct Design {
    pub label: String,
    pub latency_us: f64,
    pub energy_uj: f64,
    /// Pareto-optimal over latency, energy and area.
    pub pareto: bool,
}

/// Scatter on log–log axes, with the 2-D front as a step line and its designs labelled.
pub fn pareto_plane(title: &str, designs: &[Design]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 700)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let x = log_range(designs.iter().map(|d| d.latency_us));
        let y = log_range(designs.iter().map(|d| d.energy_uj));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(55)
            .y_label_area_size(75)
            .build_cartesian_2d(x, y)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("latency per inference (µs, log scale)")
            .y_desc("energy per inference (µJ, log scale)")
            .x_labels(12)
            .y_labels(12)
            .x_label_formatter(&exp_label)
            .y_label_formatter(&exp_label)
            .draw()
            .map_err(err)?;
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(designs.iter().filter(|d| !d.pareto).map(|d| Circle::new((lg(d.latency_us), lg(d.energy_uj)), 3, grey.filled())))
            .map_err(err)?
            .label("design")
            .legend(move |(x, y)| Circle::new((x + 8, y), 3, grey.filled()));
        chart
            .draw_series(designs.iter().filter(|d| d.pareto).map(|d| Circle::new((lg(d.latency_us), lg(d.energy_uj)), 4, PALETTE[3].filled())))
            .map_err(err)?
            .label("Pareto-optimal (latency, energy, area)")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, PALETTE[3].filled()));
        // The latency–energy front: sorted by latency, keep each design that lowers energy.
        let mut order: Vec<&Design> = designs.iter().filter(|d| d.latency_us > 0.0 && d.energy_uj > 0.0).collect();
        order.sort_by(|a, b| a.latency_us.total_cmp(&b.latency_us).then(a.energy_uj.total_cmp(&b.energy_uj)));
        let mut front: Vec<&Design> = Vec::new();
        for d in order {
            if front.last().is_none_or(|f| d.energy_uj < f.energy_uj) {
                front.push(d);
            }
        }
        let steps: Vec<(f64, f64)> = front.windows(2).flat_map(|w| [(lg(w[0].latency_us), lg(w[0].energy_uj)), (lg(w[1].latency_us), lg(w[0].energy_uj))]).chain(front.last().map(|d| (lg(d.latency_us), lg(d.energy_uj)))).collect();
        chart
            .draw_series(LineSeries::new(steps, PALETTE[0].stroke_width(2)))
            .map_err(err)?
            .label("latency–energy front")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], PALETTE[0].stroke_width(2)));
        // Label the front's designs (few), not every point.
        if front.len() <= 12 {
            chart
                .draw_series(front.iter().map(|d| EmptyElement::at((lg(d.latency_us), lg(d.energy_uj))) + Text::new(d.label.clone(), (7, -14), ("sans-serif", 12))))
                .map_err(err)?;
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.9)).border_style(BLACK).label_font(("sans-serif", 14)).draw().map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
