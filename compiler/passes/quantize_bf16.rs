//! bf16 mixed precision (`--quantize bf16`), as PyTorch's autocast does it on the CPU: every
//! f32 matrix product (`conv2d`, `dense`, `matmul`) takes its operands in bfloat16 (weights
//! rounded once, here; computed operands through a `cast`), accumulates in f32 and rounds its
//! result to bf16; a `cast` back to f32 feeds every other op, which stays f32. A product that
//! consumes another's result takes the bf16 value directly, since widening and narrowing
//! again is exact.
//!
//! Attention and the LSTM keep f32, as their softmax and recurrences would lose most to bf16.

use crate::ir::{Graph, Node, NodeId, NodeKind, TensorType};
use crate::ops::{Cast, Op};
use nnc_runtime::{DType, Tensor};
use std::collections::HashMap;

pub fn quantize_bf16(graph: &mut Graph) -> bool {
    let products: Vec<NodeId> = graph
        .topo_order()
        .into_iter()
        .filter(|&id| matches!(graph.node(id).op(), Some(Op::Conv2d(_) | Op::Dense(_) | Op::MatMul(_))) && graph.node(id).ty.dtype == DType::F32)
        .collect();
    // Each f32 value narrowed once, however many products read it.
    let mut narrowed: HashMap<NodeId, NodeId> = HashMap::new();
    for &p in &products {
        let operands: Vec<NodeId> = graph.operands(p).iter().map(|&o| narrow(graph, o, &mut narrowed)).collect();
        graph.set_operands(p, &operands);
        let op = graph.node(p).op().expect("a product").clone();
        let ty = op.infer(&graph.operand_types(p)).expect("bf16 operands of one dtype type-check as the f32 ones did");
        graph.node_mut(p).ty = ty;
        let base = format!("{}.f32", graph.node(p).name);
        let wide = add(graph, &base, NodeKind::Op(Op::Cast(Cast { to: DType::F32 })), graph.node(p).ty.with_dtype(DType::F32), &[p]);
        graph.replace_uses(p, wide);
        // `replace_uses` also moved the cast's own operand onto itself.
        graph.set_operands(wide, &[p]);
    }
    !products.is_empty()
}

/// `v` in bf16: a rounded copy of a constant, the bf16 value a `cast` to f32 widened, or a
/// new `cast`.
fn narrow(graph: &mut Graph, v: NodeId, narrowed: &mut HashMap<NodeId, NodeId>) -> NodeId {
    if let Some(&n) = narrowed.get(&v) {
        return n;
    }
    let node = graph.node(v);
    let base = format!("{}.bf16", node.name);
    let ty = node.ty.with_dtype(DType::BF16);
    let n = match (&node.kind, node.op()) {
        (NodeKind::Const(t), _) => {
            let t = Tensor::from_f32(DType::BF16, t.shape().to_vec(), t.to_f32_vec()).expect("same shape");
            add(graph, &base, NodeKind::Const(t), ty, &[])
        }
        (_, Some(Op::Cast(Cast { to: DType::F32 }))) if graph.node(graph.operands(v)[0]).ty.dtype == DType::BF16 => graph.operands(v)[0],
        _ => add(graph, &base, NodeKind::Op(Op::Cast(Cast { to: DType::BF16 })), ty, &[v]),
    };
    narrowed.insert(v, n);
    n
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

    #[test]
    fn products_take_bf16_operands_and_feed_f32_ops_through_one_cast() {
        let src = "model m {\n input x: f32[2, 8]\n h = dense(x, units=8)\n output y = dense(relu(h), units=4) + dense(x, units=4, name=\"skip\")\n}\n";
        let mut g = bound_graph(src, 7);
        assert!(quantize_bf16(&mut g));
        let text = crate::ir::print::print_graph(&g);
        // One cast of `x` serves both products that read it; every weight is a bf16 constant.
        assert_eq!(text.matches("cast(%x)").count(), 1, "{text}");
        for id in g.node_ids() {
            let n = g.node(id);
            if let Some(Op::Dense(_)) = n.op() {
                assert_eq!(n.ty.dtype, DType::BF16, "{text}");
                assert!(g.operand_types(id).iter().all(|t| t.dtype == DType::BF16), "{text}");
                assert!(g.users(id).iter().all(|&(u, _)| matches!(g.node(u).op(), Some(Op::Cast(Cast { to: DType::F32 })))), "{text}");
            }
        }
        assert!(g.outputs.iter().all(|&(_, o)| g.node(o).ty.dtype == DType::F32));
        assert!(!quantize_bf16(&mut g), "a second run finds no f32 product");
    }

    #[test]
    fn a_product_of_a_product_reads_the_bf16_value_without_a_round_trip() {
        let src = "model m {\n input x: f32[2, 8]\n h = dense(x, units=8, bias=false)\n output y = dense(h, units=4)\n}\n";
        let mut g = bound_graph(src, 3);
        quantize_bf16(&mut g);
        let y = g.outputs[0].1;
        let product = g.operands(y)[0];
        let h = g.by_name("h").expect("h keeps its name");
        assert_eq!(g.operands(product)[0], h, "{}", crate::ir::print::print_graph(&g));
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
