//! How much quantization changed each matrix product: the signal-to-quantization-noise ratio
//! of its int8 accumulator (rescaled to float) or bf16 result against the float graph's value
//! of the same product, over calibration inputs (`nnc summary --quantize int8|bf16`).

use crate::interp;
use crate::ir::{Graph, NodeId};
use crate::ops::Op;
use crate::passes::ObserveFn;
use nnc_runtime::{DType, Tensor};
use std::collections::HashMap;
use std::fmt::Write;

/// One product's error.
pub struct LayerError {
    pub name: String,
    pub op: &'static str,
    /// `10·log10(Σ f² / Σ (f − q)²)` over the finite float values `f`, with `q` the
    /// rescaled int8 accumulator: +∞ when they agree exactly, −∞ when the float value is
    /// zero and the accumulator is not, NaN when there was nothing to compare.
    pub sqnr_db: f64,
}

/// The error of every int8 or bf16 product of `quantized` that has a float counterpart of the same
/// name in `float` (the graph as quantization received it), on `runs`. `observe` runs a graph
/// and reads values (the JIT's); the interpreter does where it is `None` or fails.
pub fn per_product(float: &mut Graph, quantized: &mut Graph, runs: &[Vec<Tensor>], observe: Option<ObserveFn>) -> Vec<LayerError> {
    let by_name: HashMap<String, NodeId> = float.node_ids().map(|id| (float.node(id).name.clone(), id)).collect();
    let mut layers = Vec::new();
    for id in quantized.topo_order() {
        let node = quantized.node(id);
        let Some(op) = node.op() else { continue };
        if op.product().is_none() || !matches!(node.ty.dtype, DType::I32 | DType::BF16) {
            continue;
        }
        // An int8 accumulator's scales are its dequantize's or requantize's; a bf16 result is
        // its own value.
        let scales = if node.ty.dtype == DType::BF16 {
            Some(crate::ops::quant::Scales { values: vec![1.0], axis: 0 })
        } else {
            quantized.users(id).iter().find_map(|&(u, _)| match quantized.node(u).op() {
                Some(Op::Dequantize(d)) => Some(d.scales.clone()),
                Some(Op::Requantize(r)) => Some(r.scales.clone()),
                _ => None,
            })
        };
        if let (Some(scales), Some(&f)) = (scales, by_name.get(&node.name)) {
            layers.push((id, f, scales, node.name.clone(), op.name()));
        }
    }
    let float_nodes: Vec<NodeId> = layers.iter().map(|l| l.1).collect();
    let quant_nodes: Vec<NodeId> = layers.iter().map(|l| l.0).collect();
    let float_values = observed(float, &float_nodes, runs, observe);
    let quant_values = observed(quantized, &quant_nodes, runs, observe);
    let mut power = vec![(0.0f64, 0.0f64); layers.len()];
    // A run that failed on either graph is left out of both.
    for (fv, qv) in float_values.iter().zip(&quant_values).filter_map(|(f, q)| f.as_ref().zip(q.as_ref())) {
        for (((f, q), layer), (signal, noise)) in fv.iter().zip(qv).zip(&layers).zip(power.iter_mut()) {
            let (f, q) = (f.to_f32_vec(), q.to_f32_vec());
            let scale = layer.2.index_fn(&quantized.node(layer.0).ty.shape);
            for (i, (&f, &acc)) in f.iter().zip(&q).enumerate().filter(|(_, (f, _))| f.is_finite()) {
                let (f, approx) = (f as f64, acc as f64 * scale(i) as f64);
                *signal += f * f;
                *noise += (f - approx) * (f - approx);
            }
        }
    }
    layers
        .into_iter()
        .zip(power)
        .map(|((_, _, _, name, op), (signal, noise))| LayerError { name, op, sqnr_db: 10.0 * (signal / noise).log10() })
        .collect()
}

/// Per run, the values of `nodes`, or `None` where the run failed.
fn observed(graph: &mut Graph, nodes: &[NodeId], runs: &[Vec<Tensor>], observe: Option<ObserveFn>) -> Vec<Option<Vec<Tensor>>> {
    let mut values = Vec::new();
    if let Some(run) = observe {
        if run(graph, nodes, runs, &mut |v| values.push(Some(v.to_vec()))).is_ok() {
            return values;
        }
        values.clear();
    }
    let slot: HashMap<NodeId, usize> = nodes.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    for inputs in runs {
        let mut run_values: Vec<Option<Tensor>> = vec![None; nodes.len()];
        let ok = interp::run_observed(graph, inputs, &mut |id, t| {
            if let Some(&i) = slot.get(&id) {
                run_values[i] = Some(t.clone());
            }
        })
        .is_ok();
        values.push(ok.then(|| run_values.into_iter().collect::<Option<Vec<_>>>()).flatten());
    }
    values
}

/// The table `nnc summary --quantize int8` prints after the model's.
/// The table `nnc summary` prints; `precision` names the quantization (`int8`, `bf16`).
pub fn render(precision: &str, layers: &[LayerError], runs: usize) -> String {
    let what = if precision == "int8" { "accumulator" } else { "result" };
    let mut out = format!("\n{precision} quantization error: SQNR of each product's {what} against float, on {runs} calibration input{} (higher is better)\n", if runs == 1 { "" } else { "s" });
    let name_w = layers.iter().map(|l| l.name.chars().count()).max().unwrap_or(5).max(5);
    let op_w = layers.iter().map(|l| l.op.len()).max().unwrap_or(2).max(2);
    writeln!(out, "{:<name_w$}  {:<op_w$}  {:>9}", "layer", "op", "SQNR").unwrap();
    for l in layers {
        let db = match l.sqnr_db {
            v if v.is_finite() => format!("{v:.1} dB"),
            v if v == f64::INFINITY => "exact".to_string(),
            v if v == f64::NEG_INFINITY => "-inf dB".to_string(),
            _ => "n/a".to_string(),
        };
        writeln!(out, "{:<name_w$}  {:<op_w$}  {db:>9}", l.name, l.op).unwrap();
    }
    out
}
