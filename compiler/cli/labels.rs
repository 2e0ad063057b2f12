//! `nnc run --labels FILE.npy`: the first output's top-1 accuracy against class labels.

use super::{CmdResult, Failure};
use crate::diagnostics::Diagnostic;
use crate::ir::{Graph, ShapeDisplay};
use nnc_runtime::Tensor;
use std::path::Path;

/// Prints `accuracy: C/N (P%)` when `labels` is given: the labels file holds one integer
/// class per row of the first input, and row `i`'s prediction is the argmax of the first
/// output's row `i` (over its last axis; the first maximum wins and NaN counts as the
/// maximum, as in NumPy and PyTorch).
pub(super) fn report(graph: &Graph, inputs: &[Tensor], outputs: &[Tensor], labels: Option<&Path>) -> CmdResult {
    let Some(path) = labels else { return Ok(()) };
    let (shape, labels) = nnc_runtime::npy::read_npy_integers(path).map_err(|e| Diagnostic::error(e.to_string()))?;
    let (correct, n) = top1(graph, inputs, outputs, &shape, &labels, &path.display().to_string())?;
    outln!("accuracy: {correct}/{n} ({:.1}%)", 100.0 * correct as f64 / n as f64);
    Ok(())
}

/// `(correct, rows)`, after checking that the labels match the first input's rows and the
/// first output's classes.
fn top1(graph: &Graph, inputs: &[Tensor], outputs: &[Tensor], shape: &[usize], labels: &[i64], file: &str) -> Result<(usize, usize), Failure> {
    let (Some(input), Some(output)) = (inputs.first(), outputs.first()) else {
        return Err(Diagnostic::error("--labels scores the first output against the first input's rows, but the model has no input or no output").into());
    };
    let (input_name, output_name) = (&graph.node(graph.inputs[0]).name, &graph.outputs[0].0);
    if shape.len() != 1 {
        return Err(Diagnostic::error(format!("{file} has shape {}; labels are a vector, one class per row of `{input_name}`", ShapeDisplay(shape))).into());
    }
    let rows = input.shape().first().copied().unwrap_or(1);
    if labels.len() != rows {
        return Err(Diagnostic::error(format!("{file} holds {} labels, but input `{input_name}` has {rows} rows ({})", labels.len(), ShapeDisplay(input.shape()))).into());
    }
    let classes = output.shape().last().copied().unwrap_or(1);
    let scores = output.to_f32_vec();
    if scores.len() != rows * classes {
        return Err(Diagnostic::error(format!(
            "output `{output_name}` has shape {}, not one row of class scores per input row ({rows} × classes)",
            ShapeDisplay(output.shape())
        ))
        .into());
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l < 0 || l as u64 >= classes as u64) {
        return Err(Diagnostic::error(format!("{file}: label {l} of row {i} is not one of the {classes} classes of output `{output_name}`")).into());
    }
    let correct = scores.chunks_exact(classes).zip(labels).filter(|(row, &l)| argmax(row) == l as usize).count();
    Ok((correct, rows))
}

/// Index of the first maximum; the first NaN if there is one.
fn argmax(row: &[f32]) -> usize {
    if let Some(i) = row.iter().position(|v| v.is_nan()) {
        return i;
    }
    row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_takes_the_first_maximum_and_nan_first() {
        assert_eq!(argmax(&[0.5, 2.0, 2.0, -1.0]), 1);
        assert_eq!(argmax(&[-3.0]), 0);
        assert_eq!(argmax(&[1.0, f32::NAN, 5.0, f32::NAN]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    }
}
