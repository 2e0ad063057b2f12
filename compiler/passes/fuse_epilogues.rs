//! Epilogue fusion: an activation or a residual `add` applied to the result of a `conv2d`,
//! `dense` or `matmul` (or of an op already fused) becomes part of that op, a `fused` op, so
//! backends compute it while the product's result is at hand. `relu(conv(x) + skip)` becomes
//! one `fused` op with epilogue `[add, relu]`.

use crate::ir::{Graph, NodeId, NodeKind};
use crate::ops::fused::{can_anchor, Fused, Step};
use crate::ops::{BinaryKind, Op};

/// The product (or fused op) `id` can absorb one more step: its value is used once, by the
/// consumer, and is not a model output.
fn absorbable(graph: &Graph, id: NodeId) -> bool {
    let anchored = match graph.node(id).op() {
        Some(Op::Fused(_)) => true,
        Some(op) => can_anchor(op),
        None => false,
    };
    anchored && graph.users(id).len() == 1 && !graph.is_output(id)
}

pub fn fuse_epilogues(graph: &mut Graph) -> bool {
    let mut changed = false;
    for id in graph.topo_order() {
        if !graph.contains(id) {
            continue;
        }
        let operands = graph.operands(id);
        // The step this node would add, and which operand is the product.
        let (step, producer, extra) = match graph.node(id).op() {
            Some(Op::Unary(u)) => match Step::from_name(u.kind.name()) {
                Some(step @ Step::Unary(_)) if absorbable(graph, operands[0]) => (step, operands[0], None),
                _ => continue,
            },
            Some(Op::Binary(b)) if b.kind == BinaryKind::Add => {
                let out_shape = &graph.node(id).ty.shape;
                // No broadcasting: the added operand must be the result's own shape.
                let same = |n: NodeId| graph.node(n).ty.shape == *out_shape;
                if same(operands[0]) && same(operands[1]) && absorbable(graph, operands[0]) && operands[0] != operands[1] {
                    (Step::Add, operands[0], Some(operands[1]))
                } else if same(operands[0]) && same(operands[1]) && absorbable(graph, operands[1]) && operands[0] != operands[1] {
                    (Step::Add, operands[1], Some(operands[0]))
                } else {
                    continue;
                }
            }
            _ => continue,
        };
        let producer_op = graph.node(producer).op().expect("absorbable nodes are ops").clone();
        let (anchor, mut steps) = match producer_op {
            Op::Fused(f) => (f.anchor, f.steps),
            op => (Box::new(op), Vec::new()),
        };
        steps.push(step);
        let mut new_operands = graph.operands(producer);
        new_operands.extend(extra);
        graph.node_mut(id).kind = NodeKind::Op(Op::Fused(Fused { anchor, steps }));
        graph.set_operands(id, &new_operands);
        // The fused op is the layer: it keeps the product's name (`c1`, not `s2.relu`).
        let layer_name = graph.node(producer).name.clone();
        graph.remove(producer);
        graph.rename(id, layer_name);
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
}
