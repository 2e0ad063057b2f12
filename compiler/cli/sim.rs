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
    optimize(session, &mut graph, &a.opt, None)?;
    let program = accel_program(&graph, &config)?;
    let outcome = accel::run(&program, &inputs).map_err(|e| Diagnostic::error(e.to_string()))?;
    let write_json = |path: &Path, value: serde_json::Value| -> CmdResult {
        let text = serde_json::to_string_pretty(&value).expect("reports serialize");
        std::fs::write(path, text + "\n").map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", path.display())).into())
    };
    if let Some(path) = &a.report {
        write_json(path, accel::report::json_report(&program, &outcome))?;
    }
    if let Some(path) = &a.trace {
        write_json(path, accel::report::trace(&program, &outcome))?;
    }
    write_output(None, &accel::report::table(&program, &outcome))?;
    match a.io.output_dir.as_deref() {
        Some(dir) => emit_outputs(&graph, &outcome.outputs, Some(dir)),
        None => Ok(()),
    }
}
