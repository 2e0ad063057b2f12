//! Post-training int8 quantization of every matrix product (`conv2d`, `dense`, `matmul`).
//!
//! - Weights: symmetric, one scale per output channel (`max|w| / 127` over the channel).
//! - Activations: symmetric, one scale per tensor, `max|x| / 127` over the calibration runs
//!   (the float graph runs on them, on the calibration's executor, and every product input's
//!   range is recorded).
//! - Biases: int32 at the accumulator's scale `s_x · s_w[c]`, so they are added exactly.
//! - The product accumulates in int32 and is followed by `dequantize` back to f32, so every
//!   other op stays float. Where the f32 value (after at most one `relu`/`relu6`) only feeds
//!   another quantized product, the `dequantize → activation → quantize` chain is folded into
//!   one `requantize` and int8 flows straight from layer to layer: the epilogue requantizes.
//!
//! The folding is exact by construction (`requantize` is defined as that chain), so the
//! quantized graph means the same whatever was folded; its accuracy against the float graph
//! is what calibration decides.

use super::calibration::Calibration;
use crate::ir::{Graph, Node, NodeId, NodeKind, TensorType};
use crate::ops::quant::{quantize_value, Activation, Scales, QMAX};
use crate::ops::{Codes, Dequantize, Op, Product, Quantize, Requantize};
use nnc_runtime::{DType, Tensor};
use std::collections::HashMap;

/// How a product's operands are quantized.
struct Plan {
    node: NodeId,
    /// Operand slots holding activations (quantized per tensor at run time).
    activations: Vec<usize>,
}

pub fn quantize_int8(graph: &mut Graph, calibration: &Calibration) -> bool {
    let mut plans: Vec<Plan> = graph.topo_order().into_iter().filter_map(|id| plan(graph, id)).collect();
    // A model that carries its own scales (ONNX QDQ) is quantized where its author quantized
    // it: products whose every activation has a scale. The others stay float, as ONNX
    // Runtime runs them.
    if !calibration.scales.is_empty() {
        plans.retain(|p| p.activations.iter().all(|&slot| calibration.scales.contains_key(&graph.node(graph.operands(p.node)[slot]).name)));
    }
    if plans.is_empty() {
        return false;
    }
    let scales = activation_scales(graph, &plans, calibration);
    let mut quantized: HashMap<NodeId, NodeId> = HashMap::new();
    // A product's float result moves to its new `dequantize`; its calibrated range stays
    // recorded under the product.
    let mut origin: HashMap<NodeId, NodeId> = HashMap::new();
    for p in &plans {
        let dq = rewrite(graph, p, &scales, &origin, &mut quantized);
        origin.insert(dq, p.node);
    }
    hoist_quantize(graph);
    fold_requantize(graph);
    super::eliminate_dead_code(graph);
    true
}

/// `quantize(view(x))` → `view(quantize(x))` for `flatten`, `reshape` and `max_pool`, which
/// commute with a monotone quantizer (NaN aside), so int8 codes flow through them and the
/// producer's epilogue can requantize. A `max_pool` whose value also feeds float ops (a
/// ResNet stem's pool feeds the first residual) pools codes all the same, and the float ops
/// read its dequantized codes, as ONNX Runtime's QDQ graphs do: pooling 4 bytes per value
/// less, in the requantizing epilogue's layout, is worth the float users' rounding.
fn hoist_quantize(graph: &mut Graph) {
    loop {
        let mut changed = false;
        for q in graph.topo_order() {
            if !graph.contains(q) {
                continue;
            }
            let Some(Op::Quantize(quant)) = graph.node(q).op() else { continue };
            let quant = quant.clone();
            let v = graph.operands(q)[0];
            // Ops that only move or select values (`Codes::Moves`) commute with quantization.
            let Some(view) = graph.node(v).op().filter(|op| op.traits().codes == Codes::Moves).cloned() else { continue };
            let shared_pool = matches!(view, Op::Pool(_)) && graph.users(v).len() > 1;
            if (graph.users(v).len() != 1 && !shared_pool) || graph.is_output(v) {
                continue;
            }
            let x = graph.operands(v)[0];
            let base = format!("{}.q", graph.node(x).name);
            let scale = quant.scale;
            let xq = add_op(graph, &base, Op::Quantize(quant), &[x]);
            let name = graph.node(v).name.clone();
            let codes = add_op(graph, &format!("{name}.i8"), view, &[xq]);
            graph.replace_uses(q, codes);
            graph.remove(q);
            if shared_pool {
                let dq = add_op(graph, &format!("{name}.dq"), Op::Dequantize(Dequantize { scales: Scales { values: vec![scale], axis: 0 } }), &[codes]);
                graph.replace_uses(v, dq);
            }
            graph.remove(v);
            changed = true;
        }
        if !changed {
            return;
        }
    }
}

/// Products whose weights are known: conv2d and dense with constant weight (and bias),
/// matmul of any two float operands.
fn plan(graph: &Graph, id: NodeId) -> Option<Plan> {
    let node = graph.node(id);
    let op = node.op()?;
    let operands = graph.operands(id);
    if operands.iter().any(|&o| graph.node(o).ty.dtype != DType::F32) {
        return None;
    }
    let is_const = |o: NodeId| matches!(graph.node(o).kind, NodeKind::Const(_));
    // Plain products only: a fused group's steps would need float values in between.
    if let Op::Fused(_) = op {
        return None;
    }
    match op.product()? {
        Product::Conv2d(_) | Product::Dense(_) => operands[1..].iter().all(|&o| is_const(o)).then(|| Plan { node: id, activations: vec![0] }),
        Product::MatMul(_) => Some(Plan { node: id, activations: (0..2).filter(|&i| !is_const(operands[i])).collect() }),
    }
}

/// The scale of every activation operand of the plans: the model's own where it carries one
/// (`Calibration::scales`), else from the range calibration observes.
fn activation_scales(graph: &mut Graph, plans: &[Plan], calibration: &Calibration) -> HashMap<NodeId, f32> {
    let mut nodes: Vec<NodeId> = plans.iter().flat_map(|p| p.activations.iter().map(|&slot| graph.operands(p.node)[slot]).collect::<Vec<_>>()).collect();
    nodes.sort();
    nodes.dedup();
    let (given, observed): (Vec<NodeId>, Vec<NodeId>) = nodes.into_iter().partition(|&n| calibration.scales.contains_key(&graph.node(n).name));
    let mut scales: HashMap<NodeId, f32> = given.into_iter().map(|n| (n, normal_scale(calibration.scales[&graph.node(n).name]))).collect();
    if !observed.is_empty() {
        scales.extend(super::calibration::ranges(graph, &observed, calibration).into_iter().map(|(n, range)| (n, scale_for(range))));
    }
    scales
}

fn scale_for(max_abs: f32) -> f32 {
    if max_abs > 0.0 && max_abs.is_finite() {
        normal_scale(max_abs / QMAX)
    } else {
        1.0
    }
}

/// A scale that every op accepts: positive, normal and finite. Ranges at the edges of f32
/// (denormal data, products of huge scales) saturate rather than reach 0 or infinity.
fn normal_scale(s: f32) -> f32 {
    s.clamp(f32::MIN_POSITIVE, f32::MAX)
}

fn add_node(graph: &mut Graph, name: &str, kind: NodeKind, ty: TensorType, operands: &[NodeId]) -> NodeId {
    let name = graph.fresh_name(name);
    graph.add(Node { name, kind, ty, span: None, tile: None, kernel: None }, operands)
}

fn add_op(graph: &mut Graph, name: &str, op: Op, operands: &[NodeId]) -> NodeId {
    let types: Vec<&TensorType> = operands.iter().map(|&o| &graph.node(o).ty).collect();
    let ty = op.infer(&types).expect("quantization builds well-typed ops");
    add_node(graph, name, NodeKind::Op(op), ty, operands)
}

fn const_data(graph: &Graph, id: NodeId) -> Vec<f32> {
    match &graph.node(id).kind {
        NodeKind::Const(t) => t.to_f32_vec(),
        _ => unreachable!("planned operands are constants"),
    }
}

/// Per-row scales of a constant whose axis 0 is the output channel, and its codes.
fn quantize_per_channel(w: &[f32], channels: usize) -> (Vec<f32>, Vec<i8>) {
    let per = w.len() / channels.max(1);
    let scales: Vec<f32> = (0..channels).map(|c| scale_for(w[c * per..][..per].iter().fold(0.0f32, |m, x| m.max(x.abs())))).collect();
    let codes = w.iter().enumerate().map(|(i, &v)| quantize_value(v, scales[i / per])).collect();
    (scales, codes)
}

/// Returns the `dequantize` that now carries the product's float value.
fn rewrite(graph: &mut Graph, p: &Plan, scales: &HashMap<NodeId, f32>, origin: &HashMap<NodeId, NodeId>, quantized: &mut HashMap<NodeId, NodeId>) -> NodeId {
    let id = p.node;
    let name = graph.node(id).name.clone();
    let op = graph.node(id).op().expect("planned nodes are ops").clone();
    let operands = graph.operands(id);
    // One `quantize` per activation value, shared by all the products that read it.
    let mut activation_q = |graph: &mut Graph, x: NodeId| -> (NodeId, f32) {
        let scale = scales[origin.get(&x).unwrap_or(&x)];
        let q = *quantized.entry(x).or_insert_with(|| {
            let base = format!("{}.q", graph.node(x).name);
            add_op(graph, &base, Op::Quantize(Quantize { scale }), &[x])
        });
        (q, scale)
    };
    let product = op.product().expect("planned nodes are products");
    let (new_operands, dq_scales) = match &product {
        Product::Conv2d(_) | Product::Dense(_) => {
            let (xq, sx) = activation_q(graph, operands[0]);
            let w_ty = graph.node(operands[1]).ty.clone();
            let channels = w_ty.shape[0];
            let (sw, codes) = quantize_per_channel(&const_data(graph, operands[1]), channels);
            let w_name = format!("{}.q", graph.node(operands[1]).name);
            let wq = add_node(graph, &w_name, NodeKind::Const(Tensor::from_i8(w_ty.shape.clone(), codes).expect("same shape")), TensorType::new(DType::I8, w_ty.shape), &[]);
            let acc_scales: Vec<f32> = sw.iter().map(|s| normal_scale(sx * s)).collect();
            let mut new = vec![xq, wq];
            if let Some(&b) = operands.get(2) {
                let bias: Vec<i32> = const_data(graph, b).iter().zip(&acc_scales).map(|(&v, &s)| (v / s).round_ties_even().clamp(i32::MIN as f32, i32::MAX as f32) as i32).collect();
                let b_name = format!("{}.q", graph.node(b).name);
                let n = bias.len();
                new.push(add_node(graph, &b_name, NodeKind::Const(Tensor::from_i32(vec![n], bias).expect("1-D")), TensorType::new(DType::I32, vec![n]), &[]));
            }
            let rank = graph.node(id).ty.rank();
            (new, Scales { values: acc_scales, axis: product.channel_axis(rank) })
        }
        Product::MatMul(_) => {
            let mut new = Vec::new();
            let mut scale = 1.0f32;
            for (slot, &o) in operands.iter().enumerate() {
                if p.activations.contains(&slot) {
                    let (q, s) = activation_q(graph, o);
                    new.push(q);
                    scale *= s;
                } else {
                    let data = const_data(graph, o);
                    let s = scale_for(data.iter().fold(0.0f32, |m, x| m.max(x.abs())));
                    let ty = graph.node(o).ty.clone();
                    let codes = data.iter().map(|&v| quantize_value(v, s)).collect();
                    let c_name = format!("{}.q", graph.node(o).name);
                    new.push(add_node(graph, &c_name, NodeKind::Const(Tensor::from_i8(ty.shape.clone(), codes).expect("same shape")), TensorType::new(DType::I8, ty.shape), &[]));
                    scale *= s;
                }
            }
            (new, Scales { values: vec![normal_scale(scale)], axis: 0 })
        }
    };
    let users = graph.users(id);
    let was_output = graph.is_output(id);
    graph.set_operands(id, &new_operands);
    let types: Vec<&TensorType> = new_operands.iter().map(|&o| &graph.node(o).ty).collect();
    graph.node_mut(id).ty = op.infer(&types).expect("int8 product is well-typed");
    let dq = add_op(graph, &format!("{name}.dq"), Op::Dequantize(Dequantize { scales: dq_scales }), &[id]);
    for (user, _) in users {
        let ops: Vec<NodeId> = graph.operands(user).into_iter().map(|o| if o == id { dq } else { o }).collect();
        graph.set_operands(user, &ops);
    }
    if was_output {
        for (_, o) in graph.outputs.iter_mut() {
            if *o == id {
                *o = dq;
            }
        }
    }
    dq
}

/// `dequantize(acc) → [relu|relu6] → quantize` with nothing else reading the float values:
/// one `requantize(acc)`.
fn fold_requantize(graph: &mut Graph) {
    for dq in graph.topo_order() {
        if !graph.contains(dq) {
            continue;
        }
        let Some(Op::Dequantize(d)) = graph.node(dq).op() else { continue };
        let scales = d.scales.clone();
        let acc = graph.operands(dq)[0];
        if graph.node(acc).ty.dtype != DType::I32 {
            continue;
        }
        let mut value = dq;
        let mut activation = Activation::None;
        let sole_user = |graph: &Graph, v: NodeId| {
            let users = graph.users(v);
            (users.len() == 1 && !graph.is_output(v)).then(|| users[0].0)
        };
        if let Some(u) = sole_user(graph, value) {
            if let Some(a) = graph.node(u).op().and_then(|op| op.traits().activation) {
                activation = a;
                value = u;
            }
        }
        let Some(q) = sole_user(graph, value) else { continue };
        let Some(Op::Quantize(quant)) = graph.node(q).op() else { continue };
        let out_scale = quant.scale;
        let name = format!("{}.rq", graph.node(acc).name);
        let rq = add_op(graph, &name, Op::Requantize(Requantize { scales, out_scale, activation }), &[acc]);
        graph.replace_uses(q, rq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp;
    use crate::passes::testing::bound_graph;

    fn calibration_for(graph: &Graph, runs: usize) -> Calibration {
        use rand::{RngExt, SeedableRng};
        let runs = (0..runs as u64)
            .map(|seed| {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                graph.inputs.iter().map(|&i| {
                    let ty = &graph.node(i).ty;
                    Tensor::f32(ty.shape.clone(), (0..ty.numel()).map(|_| rng.random_range(-1.0f32..1.0)).collect())
                }).collect()
            })
            .collect();
        Calibration::new(runs)
    }

    const SRC: &str = "model m {
        input x: f32[1, 3, 8, 8]
        h = relu(conv2d(x, filters=4, kernel=3, padding=1))
        y = dense(flatten(h), units=5)
        output y
    }";

    #[test]
    fn quantizes_products_and_folds_requantize_between_them() {
        let mut g = bound_graph(SRC, 3);
        let cal = calibration_for(&g, 2);
        assert!(quantize_int8(&mut g, &cal));
        crate::ir::verify::verify(&g).unwrap();
        let ops: Vec<&str> = g.topo_order().into_iter().filter_map(|id| g.node(id).op().map(|o| o.name())).collect();
        // The dense's input quantize moved above the flatten, so conv → relu → quantize
        // became one requantize and int8 codes flow through the flatten.
        assert!(ops.contains(&"requantize") && ops.contains(&"dequantize") && !ops.contains(&"relu"), "{ops:?}");

        let conv = g.node_ids().find(|&i| matches!(g.node(i).op(), Some(Op::Conv2d(_)))).unwrap();
        assert_eq!(g.node(conv).ty.dtype, DType::I32);
        // The quantized graph tracks the float one.
        let x = &cal.runs[0];
        let reference = bound_graph(SRC, 3);
        let want = interp::run(&reference, x).unwrap()[0].to_f32_vec();
        let got = interp::run(&g, x).unwrap()[0].to_f32_vec();
        let max = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, b) in want.iter().zip(&got) {
            assert!((a - b).abs() <= 0.05 * max, "{a} vs {b}");
        }
    }

    #[test]
    fn chain_of_convs_requantizes_in_the_epilogue() {
        let mut g = bound_graph(
            "model m {
                input x: f32[1, 2, 6, 6]
                a = relu(conv2d(x, filters=4, kernel=3, padding=1))
                y = conv2d(a, filters=3, kernel=1)
                output y
            }",
            1,
        );
        let cal = calibration_for(&g, 1);
        quantize_int8(&mut g, &cal);
        crate::ir::verify::verify(&g).unwrap();
        let rq: Vec<_> = g.node_ids().filter(|&i| matches!(g.node(i).op(), Some(Op::Requantize(r)) if r.activation == Activation::Relu)).collect();
        assert_eq!(rq.len(), 1, "{}", crate::ir::print::print_graph(&g));
        assert!(!g.node_ids().any(|i| matches!(g.node(i).op(), Some(Op::Unary(_)))), "the relu moved into the requantize");
    }

    #[test]
    fn quantized_ir_prints_and_parses_back() {
        let mut g = bound_graph(
            "model m {
                input x: f32[1, 1, 3, 3]
                h = max_pool(relu(conv2d(x, filters=1, kernel=2)), kernel=2)
                y = dense(flatten(h), units=2)
                output y
            }",
            5,
        );
        let cal = calibration_for(&g, 1);
        quantize_int8(&mut g, &cal);
        let text = crate::ir::print::print_graph(&g);
        assert!(text.contains("max_pool(%") && text.contains(": i8[1, 1, 1, 1]"), "the max pool runs on codes:\n{text}");
        let back = crate::ir::parse::parse_graph(&text).unwrap();
        assert_eq!(crate::ir::print::print_graph(&back), text);
        let x = &cal.runs[0];
        assert_eq!(interp::run(&back, x).unwrap(), interp::run(&g, x).unwrap());
    }

    /// A ResNet stem: the pool feeds a product and a residual add. It pools codes, the add
    /// reads them dequantized, and conv → relu → quantize became one requantize.
    #[test]
    fn a_pool_shared_with_float_ops_pools_codes() {
        let src = "model m {
            input x: f32[1, 2, 8, 8]
            p = max_pool(relu(conv2d(x, filters=4, kernel=3, padding=1)), kernel=3, stride=2, padding=1)
            y = conv2d(p, filters=4, kernel=3, padding=1) + p
            output y
        }";
        let mut g = bound_graph(src, 2);
        let cal = calibration_for(&g, 2);
        quantize_int8(&mut g, &cal);
        crate::ir::verify::verify(&g).unwrap();
        let text = crate::ir::print::print_graph(&g);
        let pool = g.node_ids().find(|&i| matches!(g.node(i).op(), Some(Op::Pool(_)))).unwrap();
        assert_eq!(g.node(pool).ty.dtype, DType::I8, "{text}");
        assert!(g.node_ids().any(|i| matches!(g.node(i).op(), Some(Op::Requantize(r)) if r.activation == Activation::Relu)), "{text}");
        let reference = bound_graph(src, 2);
        let x = &cal.runs[0];
        let want = interp::run(&reference, x).unwrap()[0].to_f32_vec();
        let got = interp::run(&g, x).unwrap()[0].to_f32_vec();
        let max = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, b) in want.iter().zip(&got) {
            assert!((a - b).abs() <= 0.05 * max, "{a} vs {b}");
        }
    }

    #[test]
    fn integer_bias_is_at_the_accumulator_scale() {
        let (scales, codes) = quantize_per_channel(&[1.0, -0.5, 0.0, 0.25], 2);
        assert_eq!(scales, vec![1.0 / 127.0, 0.25 / 127.0]);
        assert_eq!(codes, vec![127, -64, 0, 127]);
    }
}
