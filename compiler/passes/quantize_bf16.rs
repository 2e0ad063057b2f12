//! bf16 mixed precision (`--quantize bf16`), as PyTorch's autocast does it on the CPU:
//!
//! - every f32 matrix product (`conv2d`, `dense`, `matmul`) takes its operands in bfloat16
//!   (weights rounded once, here; computed operands through a `cast`), accumulates in f32 and
//!   rounds its result to bf16;
//! - ops whose accuracy bf16 would ruin (softmax, layer and batch norm, exp, attention, the
//!   LSTM) take f32: a bf16 operand is widened by a `cast` first;
//! - every other op runs in the dtype of its computed operands: bf16 if all of them are (its
//!   constants are then rounded to bf16, as a Python scalar adopts a tensor's dtype), else
//!   f32 with its bf16 operands widened;
//! - the model's outputs keep their dtype (a `cast` back to f32 where needed).
//!
//! So activations flow between layers in bf16, relu and residual adds included, and a
//! product's epilogue still fuses with it. Each op computes in f32 and rounds its result
//! (the invariant of f16/bf16 values), so the graph stays within bf16 rounding of the f32
//! one; BENCHMARKS.md records the accuracy on the trained examples.

use crate::ir::{Graph, Node, NodeId, NodeKind, TensorType};
use crate::ops::{Cast, Op, UnaryKind};
use nnc_runtime::DType;
use std::collections::HashMap;

pub fn quantize_bf16(graph: &mut Graph) -> bool {
    let is_f32_product = |g: &Graph, id: NodeId| matches!(g.node(id).op(), Some(Op::Conv2d(_) | Op::Dense(_) | Op::MatMul(_))) && g.node(id).ty.dtype == DType::F32;
    if !graph.node_ids().any(|id| is_f32_product(graph, id)) {
        return false;
    }
    let declared: Vec<DType> = graph.outputs.iter().map(|&(_, o)| graph.node(o).ty.dtype).collect();
    let mut casts = Casts::default();
    for id in graph.topo_order() {
        let Some(op) = graph.node(id).op().cloned() else { continue };
        if matches!(op, Op::Cast(_)) {
            continue;
        }
        let operands = graph.operands(id);
        let floats: Vec<bool> = operands.iter().map(|&o| graph.node(o).ty.dtype.is_float()).collect();
        if !floats.iter().all(|&f| f) {
            continue;
        }
        let computed_bf16 = |g: &Graph| operands.iter().filter(|&&o| !matches!(g.node(o).kind, NodeKind::Const(_))).all(|&o| g.node(o).ty.dtype == DType::BF16);
        let want = if is_f32_product(graph, id) {
            DType::BF16
        } else if keeps_f32(&op) {
            DType::F32
        } else if operands.iter().any(|&o| !matches!(graph.node(o).kind, NodeKind::Const(_))) && computed_bf16(graph) {
            DType::BF16
        } else {
            DType::F32
        };
        let new: Vec<NodeId> = operands.iter().map(|&o| casts.to(graph, o, want)).collect();
        if new != operands {
            graph.set_operands(id, &new);
        }
        // Operands that kept their node may have changed dtype too.
        let ty = op.infer(&graph.operand_types(id)).expect("operands of one float dtype type-check as the f32 ones did");
        graph.node_mut(id).ty = ty;
    }
    let outputs = graph.outputs.clone();
    for ((name, o), dtype) in outputs.into_iter().zip(declared) {
        let restored = casts.to(graph, o, dtype);
        if let Some(slot) = graph.outputs.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = restored;
        }
    }
    // The f32 weights the products no longer read.
    super::eliminate_dead_code(graph);
    true
}

/// Ops that compute in f32 whatever their operands: their results would lose too much in
/// bf16 (PyTorch's autocast lists them as f32 ops).
fn keeps_f32(op: &Op) -> bool {
    match op {
        Op::Softmax(_) | Op::LayerNorm(_) | Op::BatchNorm(_) | Op::Attention(_) | Op::Lstm(_) => true,
        Op::Unary(u) => matches!(u.kind, UnaryKind::Exp),
        _ => false,
    }
}

/// Each value in another float dtype, made once however many ops read it.
#[derive(Default)]
struct Casts(HashMap<(NodeId, DType), NodeId>);

impl Casts {
    /// `v` in `dtype`: itself, a rounded copy of a constant, the value a `cast` converted
    /// (widening a bf16 value and narrowing it again is exact), or a new `cast`.
    fn to(&mut self, graph: &mut Graph, v: NodeId, dtype: DType) -> NodeId {
        let node = graph.node(v);
        if node.ty.dtype == dtype {
            return v;
        }
        if let Some(&c) = self.0.get(&(v, dtype)) {
            return c;
        }
        let ty = node.ty.with_dtype(dtype);
        let base = format!("{}.{dtype}", node.name);
        let c = match (&node.kind, node.op()) {
            (NodeKind::Const(t), _) => {
                let t = nnc_runtime::Tensor::from_f32(dtype, t.shape().to_vec(), t.to_f32_vec()).expect("same shape");
                add(graph, &base, NodeKind::Const(t), ty, &[])
            }
            (_, Some(Op::Cast(_))) if graph.node(graph.operands(v)[0]).ty.dtype == dtype && dtype == DType::BF16 => graph.operands(v)[0],
            _ => add(graph, &base, NodeKind::Op(Op::Cast(Cast { to: dtype })), ty, &[v]),
        };
        self.0.insert((v, dtype), c);
        c
    }
}

fn add(graph: &mut Graph, name: &str, kind: NodeKind, ty: TensorType, operands: &[NodeId]) -> NodeId {
    graph.add(Node { name: name.to_string(), kind, ty, span: None, tile: None, kernel: None }, operands)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{bound_graph, check_pass, random_inputs};

    #[test]
    fn passes_the_generic_pass_checks() {
        check_pass("quantize-bf16", "model m {\n input x: f32[1, 3, 8, 8]\n c = conv2d(x, filters=4, kernel=3, padding=1)\n output y = dense(flatten(relu(c)), units=5)\n}\n");
    }

    /// The IR after the pass, constants elided.
    fn ir(g: &Graph) -> String {
        crate::ir::print::print_graph(g)
    }

    #[test]
    fn activations_flow_in_bf16_between_products_and_f32_ops_get_f32() {
        let src = "model m {\n input x: f32[2, 8]\n h = dense(x, units=8)\n r = relu(h) + dense(x, units=8, name=\"skip\")\n s = softmax(dense(r, units=4))\n output y = s * 2\n}\n";
        let mut g = bound_graph(src, 7);
        assert!(quantize_bf16(&mut g));
        let text = ir(&g);
        // One cast of `x` serves both products that read it; every weight is a bf16 constant.
        assert_eq!(text.matches("cast(%x)").count(), 1, "{text}");
        let dtype = |name: &str| g.node(g.by_name(name).unwrap_or_else(|| panic!("no {name} in {text}"))).ty.dtype;
        for name in ["h", "r.dense", "r"] {
            assert_eq!(dtype(name), DType::BF16, "{name}: {text}");
        }
        // softmax widens its operand, and `s * 2` runs in f32 like its operand.
        assert_eq!(dtype("s"), DType::F32, "{text}");
        assert_eq!(dtype("y"), DType::F32, "{text}");
        for id in g.node_ids() {
            if g.node(id).op().is_some_and(|op| op.product().is_some()) {
                assert!(g.operand_types(id).iter().all(|t| t.dtype == DType::BF16), "{text}");
            }
        }
        assert!(!quantize_bf16(&mut g), "a second run finds no f32 product");
    }

    #[test]
    fn outputs_keep_their_dtype() {
        let src = "model m {\n input x: f32[2, 8]\n h = dense(x, units=8, bias=false)\n output y = relu(dense(h, units=4))\n}\n";
        let mut g = bound_graph(src, 3);
        quantize_bf16(&mut g);
        let (_, y) = g.outputs[0];
        assert_eq!(g.node(y).ty.dtype, DType::F32, "{}", ir(&g));
        assert!(matches!(g.node(y).op(), Some(Op::Cast(Cast { to: DType::F32 }))), "{}", ir(&g));
        // The second product reads `h` (bf16) directly.
        let h = g.by_name("h").expect("h keeps its name");
        assert!(g.users(h).iter().all(|&(u, _)| g.node(u).op().is_some_and(|op| op.product().is_some())), "{}", ir(&g));
    }

    #[test]
    fn results_stay_within_bf16_rounding_of_the_f32_graph() {
        let src = "model m {\n input x: f32[4, 32]\n h = dense(x, units=32)\n output y = dense(relu(h), units=8)\n}\n";
        let g = bound_graph(src, 11);
        let mut q = g.clone();
        quantize_bf16(&mut q);
        let inputs = random_inputs(&g, 5);
        let want = crate::interp::run(&g, &inputs).unwrap()[0].to_f32_vec();
        let got = crate::interp::run(&q, &inputs).unwrap()[0].to_f32_vec();
        // Each dense rounds 2 operands and its result to 8 significant bits: relative error
        // per product at most about 3·2^-8 of the dot product's magnitude (sum of |terms|).
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = want.iter().zip(&got).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err > 0.0, "bf16 rounding must be visible");
        assert!(err <= 8.0 * 2f32.powi(-8) * (1.0 + scale), "error {err} against magnitude {scale}");
    }
}
