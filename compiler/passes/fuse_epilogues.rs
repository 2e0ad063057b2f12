//! Elementwise fusion: an elementwise op (an attribute-free activation, or arithmetic without
//! broadcasting) applied to the result of a `conv2d`, `dense` or `matmul`, of another such
//! elementwise op, or of a group already fused, joins it as one more step of a `fused` op.
//! Backends then compute the whole group in one pass: `relu(conv(x) + skip)` becomes one
//! `fused` op anchored on the convolution with epilogue `[add, relu]`, and
//! `sigmoid(a) * b` an elementwise chain `fused(a, b) epilogue=["sigmoid", "mul"]`.
//! Only values used once are absorbed, so no result is computed twice.

use crate::ir::{Graph, NodeId, NodeKind};
use crate::ops::fused::{can_anchor, Fused, Step};
use crate::ops::{BinaryKind, Op};

/// The step an elementwise op would be as part of a group, if it can be one: attribute-free
/// unary ops, and binary ops without broadcasting.
fn as_step(graph: &Graph, id: NodeId) -> Option<BinaryOrUnary> {
    match graph.node(id).op()? {
        Op::Unary(u) => match Step::from_name(u.kind.name())? {
            step @ Step::Unary(_) => Some(BinaryOrUnary::Unary(step)),
            Step::Binary { .. } => None,
        },
        Op::Binary(b) => {
            let out = &graph.node(id).ty.shape;
            graph.operands(id).iter().all(|&o| graph.node(o).ty.shape == *out).then_some(BinaryOrUnary::Binary(b.kind))
        }
        _ => None,
    }
}

enum BinaryOrUnary {
    Unary(Step),
    Binary(BinaryKind),
}

/// `id` can absorb one more step: it is a product, a fused group or a fusable elementwise op,
/// and its value is used once, by the consumer, and is not a model output.
fn absorbable(graph: &Graph, id: NodeId) -> bool {
    let groupable = match graph.node(id).op() {
        Some(Op::Fused(_)) => true,
        Some(op) => can_anchor(op) || as_step(graph, id).is_some(),
        None => false,
    };
    groupable && graph.users(id).len() == 1 && !graph.is_output(id)
}

/// `id` as a group: its anchor (if a product), steps and operands.
fn as_group(graph: &Graph, id: NodeId) -> (Option<Box<Op>>, Vec<Step>) {
    let op = graph.node(id).op().expect("absorbable nodes are ops").clone();
    match op {
        Op::Fused(f) => (f.anchor, f.steps),
        op if can_anchor(&op) => (Some(Box::new(op)), Vec::new()),
        _ => match as_step(graph, id).expect("absorbable elementwise op") {
            BinaryOrUnary::Unary(step) => (None, vec![step]),
            BinaryOrUnary::Binary(kind) => (None, vec![Step::binary(kind, false)]),
        },
    }
}

pub fn fuse_epilogues(graph: &mut Graph) -> bool {
    let mut changed = false;
    for id in graph.topo_order() {
        if !graph.contains(id) {
            continue;
        }
        let operands = graph.operands(id);
        // The step this node adds, which operand is the group it joins, and the extra operand.
        let (step, producer, extra) = match as_step(graph, id) {
            Some(BinaryOrUnary::Unary(step)) if absorbable(graph, operands[0]) => (step, operands[0], None),
            Some(BinaryOrUnary::Binary(kind)) if operands[0] != operands[1] => {
                if absorbable(graph, operands[0]) {
                    (Step::binary(kind, false), operands[0], Some(operands[1]))
                } else if absorbable(graph, operands[1]) {
                    (Step::binary(kind, true), operands[1], Some(operands[0]))
                } else {
                    continue;
                }
            }
            _ => continue,
        };
        let (anchor, mut steps) = as_group(graph, producer);
        steps.push(step);
        let mut new_operands = graph.operands(producer);
        new_operands.extend(extra);
        graph.node_mut(id).kind = NodeKind::Op(Op::Fused(Fused { anchor, steps }));
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
    fn leaves_shared_and_broadcast_results_alone() {
        check_pass(
            "fuse-epilogues",
            "model m {
                input x: f32[2, 8]
                input b: f32[8]
                d = dense(x, units=8)
                e = relu(d)
                output y = d + e
                output z = dense(x, units=8, name=\"other\") + b
            }",
        );
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
        // One loop for the whole chain; the broadcast add and the lone `neg` stay as they are.
        assert!(ir.contains(r#"%y.relu = fused(%a, %b, %b, %a) epilogue=["sigmoid", "mul", "tanh", "rsub", "exp", "div", "relu"]"#), "{ir}");
        assert!(ir.contains("= add(") && ir.contains("= neg(%a)"), "{ir}");
    }
}
