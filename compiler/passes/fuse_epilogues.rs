//! Elementwise fusion: an elementwise op (an attribute-free activation, or arithmetic without
//! broadcasting) applied to the result of a `conv2d`, `dense` or `matmul`, of another such
//! elementwise op, or of a group already fused, joins it as one more step of a `fused` op.
//! Backends then compute the whole group in one pass: `relu(conv(x) + skip)` becomes one
//! `fused` op anchored on the convolution with epilogue `[add, relu]`, and
//! `sigmoid(a) * b` an elementwise chain `fused(a, b) epilogue=["sigmoid", "mul"]`.
//! Only values used once are absorbed, so no result is computed twice.
//!
//! In a quantized graph, a `requantize` of an int8 product's accumulators joins the product
//! the same way (`fused(..) anchor="conv2d" epilogue=["requantize"]`): the accumulators are
//! requantized as they leave the GEMM's register tiles and never reach memory.

use crate::ir::{Graph, NodeId, NodeKind};
use crate::ops::fused::{anchor_of, extra_fits, Fused, Step, StepOf};
use crate::ops::{BinaryKind, Op, Product};

/// The step an elementwise op would be as part of a group, if it can be one: attribute-free
/// unary ops, and binary ops where one operand has the result's shape and the other
/// broadcasts as a fused op's extra operand can (`extra_fits`).
fn as_step(graph: &Graph, id: NodeId) -> Option<BinaryOrUnary> {
    match Step::of(graph.node(id).op()?)? {
        StepOf::Unary(step) => Some(BinaryOrUnary::Unary(step)),
        StepOf::Binary(kind) => full_side(graph, id).map(|_| BinaryOrUnary::Binary(kind)),
    }
}

/// For a binary op: which operand (0 or 1) has the result's shape while the other can be an
/// extra operand, preferring the first.
fn full_side(graph: &Graph, id: NodeId) -> Option<usize> {
    let out = &graph.node(id).ty.shape;
    let ops = graph.operands(id);
    let shape = |i: usize| &graph.node(ops[i]).ty.shape;
    (0..2).find(|&i| shape(i) == out && extra_fits(shape(1 - i), out))
}

enum BinaryOrUnary {
    Unary(Step),
    Binary(BinaryKind),
}

/// `id` can absorb one more step: it is a product, a fused group or a fusable elementwise op,
/// and its value is used once, by the consumer, and is not a model output.
fn absorbable(graph: &Graph, id: NodeId) -> bool {
    let groupable = graph.node(id).op().is_some_and(|op| op.product().is_some() || matches!(op, Op::Fused(f) if f.requantize.is_none()) || as_step(graph, id).is_some());
    groupable && graph.users(id).len() == 1 && !graph.is_output(id)
}

/// `id` as a group: its anchor (if a product), steps and operands (a binary op's operand of
/// the result's shape first, as the chain's seed).
fn as_group(graph: &Graph, id: NodeId) -> (Option<Product>, Vec<Step>, Vec<NodeId>) {
    let op = graph.node(id).op().expect("absorbable nodes are ops").clone();
    let operands = graph.operands(id);
    if let Op::Fused(f) = op {
        return (f.anchor, f.steps, operands);
    }
    if let Some(anchor) = anchor_of(&op) {
        return (Some(anchor), Vec::new(), operands);
    }
    match as_step(graph, id).expect("absorbable elementwise op") {
        BinaryOrUnary::Unary(step) => (None, vec![step], operands),
        BinaryOrUnary::Binary(kind) => {
            let seed = full_side(graph, id).expect("a fusable binary op has a full-shape side");
            (None, vec![Step::binary(kind, seed == 1)], vec![operands[seed], operands[1 - seed]])
        }
    }
}

/// Extra operands that broadcast as rows must share one row length, so the group runs as
/// one loop over rows (full-shape and single-value extras fit any loop).
fn one_row_length(graph: &Graph, out: &[usize], extras: &[NodeId]) -> bool {
    let numel: usize = out.iter().product();
    let mut rows = extras.iter().map(|&e| graph.node(e).ty.numel()).filter(|&n| n != 1 && n != numel);
    match rows.next() {
        Some(first) => rows.all(|n| n == first),
        None => true,
    }
}

/// `requantize(p)` → `fused(p's operands) anchor=p epilogue=["requantize"]` for an int8
/// product `p` used only there.
fn fuse_requantize(graph: &mut Graph) -> bool {
    let mut changed = false;
    for id in graph.topo_order() {
        let Some(Op::Requantize(rq)) = graph.node(id).op() else { continue };
        let rq = rq.clone();
        let producer = graph.operands(id)[0];
        let Some(anchor) = graph.node(producer).op().and_then(anchor_of) else { continue };
        if graph.users(producer).len() != 1 || graph.is_output(producer) {
            continue;
        }
        let operands = graph.operands(producer);
        graph.node_mut(id).kind = NodeKind::Op(Op::Fused(Fused { anchor: Some(anchor), steps: Vec::new(), requantize: Some(rq) }));
        graph.set_operands(id, &operands);
        let layer_name = graph.node(producer).name.clone();
        graph.remove(producer);
        graph.rename(id, layer_name);
        changed = true;
    }
    changed
}

pub fn fuse_epilogues(graph: &mut Graph) -> bool {
    let mut changed = fuse_requantize(graph);
    for id in graph.topo_order() {
        if !graph.contains(id) {
            continue;
        }
        let operands = graph.operands(id);
        // The step this node adds, which operand is the group it joins, and the extra operand.
        let (step, producer, extra) = match as_step(graph, id) {
            Some(BinaryOrUnary::Unary(step)) if absorbable(graph, operands[0]) => (step, operands[0], None),
            Some(BinaryOrUnary::Binary(kind)) if operands[0] != operands[1] => {
                // The group must be the operand of the result's shape; the other is the extra.
                let out = &graph.node(id).ty.shape;
                let joins = |i: usize| graph.node(operands[i]).ty.shape == *out && extra_fits(&graph.node(operands[1 - i]).ty.shape, out) && absorbable(graph, operands[i]);
                if joins(0) {
                    (Step::binary(kind, false), operands[0], Some(operands[1]))
                } else if joins(1) {
                    (Step::binary(kind, true), operands[1], Some(operands[0]))
                } else {
                    continue;
                }
            }
            _ => continue,
        };
        let (anchor, mut steps, mut new_operands) = as_group(graph, producer);
        let first_extra = new_operands.len() - steps.iter().filter(|s| s.is_binary()).count();
        let mut extras = new_operands[first_extra..].to_vec();
        extras.extend(extra);
        if !one_row_length(graph, &graph.node(id).ty.shape, &extras) {
            continue;
        }
        steps.push(step);
        new_operands.extend(extra);
        graph.node_mut(id).kind = NodeKind::Op(Op::Fused(Fused { anchor, steps, requantize: None }));
        graph.set_operands(id, &new_operands);
        // An anchored group is the layer: it keeps the product's name (`c1`, not `s2.relu`).
        // A chain computes its last op's value and keeps that name.
        let layer_name = graph.node(producer).name.clone();
        let anchored = matches!(graph.node(id).op(), Some(Op::Fused(Fused { anchor: Some(_), .. })));
        graph.remove(producer);
        if anchored {
            graph.rename(id, layer_name);
        }
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use crate::passes::testing::check_pass;

    #[test]
    fn fuses_bias_activation_and_residual_chains() {
        check_pass(
            "fuse-epilogues",
            "model m {
                input x: f32[1, 4, 6, 6]
                c1 = conv2d(x, filters=4, kernel=3, padding=1)
                c2 = conv2d(relu(c1), filters=4, kernel=3, padding=1)
                r = relu(c2 + x)
                d = dense(flatten(r), units=8)
                output y = gelu(d)
            }",
        );
    }

    #[test]
    fn fuses_broadcast_rows_but_leaves_shared_results_alone() {
        let ir = check_pass(
            "fuse-epilogues",
            "model m {
                input x: f32[2, 8]
                input b: f32[8]
                d = dense(x, units=8)
                e = relu(d)
                output y = d + e
                output z = dense(x, units=8, name=\"other\") + b
                output w = (x * 2 + b) * 3
            }",
        );
        // `d` has two users: nothing absorbs it.
        assert!(ir.contains("= add(%d, %e)") || ir.contains("= fused(%d, %d)"), "{ir}");
        assert!(ir.contains(r#"anchor="dense" epilogue=["add"]"#), "{ir}");
        assert!(ir.contains(r#"epilogue=["mul", "add", "mul"]"#), "{ir}");
    }

    #[test]
    fn fuses_elementwise_chains_without_a_product() {
        let ir = check_pass(
            "fuse-epilogues",
            "model m {
                input a: f32[2, 8]
                input b: f32[2, 8]
                input c: f32[8]
                s = sigmoid(a) * b
                t = b - tanh(s)
                u = exp(t) / a
                output y = relu(u) + c
                output z = neg(a)
            }",
        );
        // One loop for the whole chain, the broadcast row `c` included; the lone `neg` stays.
        assert!(ir.contains(r#"%y = fused(%a, %b, %b, %a, %c) epilogue=["sigmoid", "mul", "tanh", "rsub", "exp", "div", "relu", "add"]"#), "{ir}");
        assert!(ir.contains("%z = neg(%a)"), "{ir}");
    }
}
