//! `nnc sim`: the model on the modeled accelerator, with its report, trace and table.

use super::args;
use super::inputs::emit_outputs;
use super::pipeline::{accel_config, accel_program, optimize, prepare};
use super::{write_output, CmdResult, Session};
use crate::accel;
use crate::diagnostics::Diagnostic;
use std::path::Path;

pub(super) fn sim(session: &mut Session, a: &args::SimArgs) -> CmdResult {
    let config = accel_config(&a.accel)?;
    let (mut graph, inputs) = prepare(session, &a.common, &a.io, &a.weights, true)?;
    optimize(session, &mut graph, &super::pipeline::blocks_for_array(&a.opt, &config), None)?;
    let program = accel_program(&graph, &config)?;
    let outcome = accel::run(&program, &inputs).map_err(|e| Diagnostic::error(e.to_string()))?;
    let write_json = |path: &Path, value: serde_json::Value| -> CmdResult {
        let text = serde_json::to_string_pretty(&value).expect("reports serialize");
        std::fs::write(path, text + "\n").map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", path.display())).into())
    };
    // What skipping pruned zeros saved: the same model timed with every fold run.
    let skipped = program.layers.iter().any(|l| l.skipped_folds > 0);
    let without = if skipped {
        let mut all = config.clone();
        all.skip_zero_weights = false;
        let p = accel::lower_for_timing(&program.graph, &all).map_err(|e| Diagnostic::error(e.to_string()))?;
        Some(accel::time(&p).map_err(|e| Diagnostic::error(e.to_string()))?)
    } else {
        None
    };
    if let Some(path) = &a.report {
        let mut report = accel::report::json_report(&program, &outcome.timing);
        if let Some(w) = &without {
            report["without_skipping"] = serde_json::json!({ "total_cycles": w.total_cycles, "energy_pj": w.counters.energy(&config.energy).total });
        }
        write_json(path, report)?;
    }
    if let Some(path) = &a.trace {
        write_json(path, accel::report::trace(&program, &outcome.timing))?;
    }
    write_output(None, &accel::report::table(&program, &outcome.timing))?;
    if let Some(w) = &without {
        let (t, e) = (outcome.timing.total_cycles as f64, outcome.timing.counters.energy(&config.energy).total);
        let (tw, ew) = (w.total_cycles as f64, w.counters.energy(&config.energy).total);
        outln!("without skipping: {} cycles, {:.1} µJ; skipping changes cycles by {:+.1}% and energy by {:+.1}%", w.total_cycles, ew * 1e-6, 100.0 * (t / tw - 1.0), 100.0 * (e / ew - 1.0));
    }
    let title = |what: &str| format!("{} on {} ({}x{} {}, {}): {what}", graph.name, config.name, config.rows, config.cols, config.dtype.name(), if config.dataflow == accel::config::Dataflow::Ws { "ws" } else { "os" });
    if let Some(path) = &a.plot {
        let svg = crate::charts::layer_breakdown(&title("cycles and energy per layer"), &layer_bars(&program, &outcome.timing)).map_err(Diagnostic::error)?;
        write_output(Some(path), &svg)?;
    }
    if let Some(path) = &a.roofline {
        let roof = crate::charts::Roof { peak_macs_per_cycle: (config.rows * config.cols) as f64, dram_bytes_per_cycle: config.dram_bytes_per_cycle() };
        let svg = crate::charts::roofline(&title("roofline"), &roof, &roofline_points(&program, &outcome.timing)).map_err(Diagnostic::error)?;
        write_output(Some(path), &svg)?;
    }
    match a.io.output_dir.as_deref() {
        Some(dir) => emit_outputs(&graph, &outcome.outputs, Some(dir)),
        None => Ok(()),
    }
}

fn layer_bars(p: &accel::Program, t: &accel::Timing) -> Vec<crate::charts::LayerBar> {
    p.layers
        .iter()
        .zip(&t.layer_cycles)
        .zip(&t.layer_counters)
        .map(|((l, &cycles), lc)| {
            let e = lc.energy(&p.config.energy);
            let compute = lc.compute_cycles.min(cycles);
            crate::charts::LayerBar { name: l.name.clone(), compute_cycles: compute, stall_cycles: cycles - compute, energy_pj: [e.mac, e.vector, e.scratchpad, e.accumulator, e.dram] }
        })
        .collect()
}

/// Layers that do multiply-accumulates and move DRAM bytes (a layer whose data stays on chip
/// has no place on the DRAM roofline).
fn roofline_points(p: &accel::Program, t: &accel::Timing) -> Vec<crate::charts::RooflinePoint> {
    p.layers
        .iter()
        .zip(&t.layer_cycles)
        .zip(&t.layer_counters)
        .filter_map(|((l, &cycles), lc)| {
            let bytes = lc.dram_read + lc.dram_written;
            (l.macs > 0 && bytes > 0 && cycles > 0).then(|| crate::charts::RooflinePoint {
                name: l.name.clone(),
                macs_per_byte: l.macs as f64 / bytes as f64,
                macs_per_cycle: l.macs as f64 / cycles as f64,
                array: l.unit == accel::program::Unit::Array,
            })
        })
        .collect()
}
