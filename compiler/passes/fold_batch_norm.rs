//! Fold an inference `batch_norm` into the `conv2d` or `dense` that feeds it:
//! `bn(conv(x, w, b))` = `conv(x, w·s, (b − mean)·s + beta)` with `s = gamma / √(var + eps)`
//! per output channel. The new weight and bias are written as ops on the parameters, so the
//! pass works without weights; once weights are bound, `fold-constants` turns them into
//! constants and the batch norm costs nothing at run time.

use crate::ir::{Graph, Node, NodeId, NodeKind, TensorType};
use crate::ops::{Binary, BinaryKind, Op, Reshape, Unary, UnaryKind};
use nnc_runtime::Tensor;

pub fn fold_batch_norm(graph: &mut Graph) -> bool {
    let mut changed = false;
    for bn in graph.topo_order() {
        let Some(Op::BatchNorm(attrs)) = graph.node(bn).op() else { continue };
        let eps = attrs.eps;
        let operands = graph.operands(bn);
        let producer = operands[0];
        // A product with its own weights whose output channels run along axis 1, the axis
        // batch_norm normalizes: a convolution, or a dense layer at rank 2.
        let rank = graph.node(producer).ty.rank();
        let producer_ok = graph.node(producer).op().and_then(crate::ops::fused::anchor_of).is_some_and(|p| p.has_weight_operand() && p.channel_axis(rank) == 1);
        // The producer's own value must not be needed elsewhere, since it changes meaning.
        if !producer_ok || graph.users(producer).len() != 1 || graph.is_output(producer) {
            continue;
        }
        let [_, gamma, beta, mean, var] = operands[..] else { continue };
        let conv_operands = graph.operands(producer);
        let (x, w, bias) = (conv_operands[0], conv_operands[1], conv_operands.get(2).copied());
        let base = graph.node(producer).name.clone();
        let channel_ty = graph.node(gamma).ty.clone();
        let dtype = channel_ty.dtype;
        let add = |graph: &mut Graph, what: &str, op: Op, operands: &[NodeId]| -> NodeId {
            let types: Vec<&TensorType> = operands.iter().map(|&o| &graph.node(o).ty).collect();
            let ty = op.infer(&types).expect("folded batch-norm arithmetic is well-typed");
            graph.add(Node { name: format!("{base}.{what}"), kind: NodeKind::Op(op), ty, span: None, tile: None, kernel: None }, operands)
        };
        let eps_node = graph.add(
            Node { name: format!("{base}.bn_eps"), kind: NodeKind::Const(Tensor::from_f32(dtype, vec![], vec![eps as f32]).expect("scalar")), ty: TensorType::new(dtype, vec![]), span: None, tile: None, kernel: None },
            &[],
        );
        let bin = |kind| Op::Binary(Binary { kind });
        let var_eps = add(graph, "bn_var_eps", bin(BinaryKind::Add), &[var, eps_node]);
        let std = add(graph, "bn_std", Op::Unary(Unary { kind: UnaryKind::Sqrt }), &[var_eps]);
        let scale = add(graph, "bn_scale", bin(BinaryKind::Div), &[gamma, std]);
        let w_rank = graph.node(w).ty.rank();
        let mut scale_shape = vec![1; w_rank];
        scale_shape[0] = channel_ty.shape[0];
        let scale_w = add(graph, "bn_scale_w", Op::Reshape(Reshape { shape: scale_shape }), &[scale]);
        let new_w = add(graph, "folded_weight", bin(BinaryKind::Mul), &[w, scale_w]);
        let shifted = match bias {
            Some(b) => add(graph, "bn_shift", bin(BinaryKind::Sub), &[b, mean]),
            None => add(graph, "bn_shift", Op::Unary(Unary { kind: UnaryKind::Neg }), &[mean]),
        };
        let scaled = add(graph, "bn_scaled_shift", bin(BinaryKind::Mul), &[shifted, scale]);
        let new_b = add(graph, "folded_bias", bin(BinaryKind::Add), &[scaled, beta]);
        graph.set_operands(producer, &[x, new_w, new_b]);
        graph.replace_uses(bn, producer);
        graph.remove(bn);
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use crate::passes::testing::check_pass;

    #[test]
    fn folds_into_conv_and_dense() {
        check_pass(
            "fold-batch-norm",
            "model m {
                input x: f32[1, 3, 6, 6]
                c = conv2d(x, filters=4, kernel=3, padding=1)
                b = batch_norm(c)
                nb = conv2d(relu(b), filters=4, kernel=3, bias=false)
                b2 = batch_norm(nb, eps=0.001)
                d = dense(flatten(b2), units=5)
                output y = batch_norm(d)
            }",
        );
    }

    #[test]
    fn leaves_shared_producer_alone() {
        check_pass(
            "fold-batch-norm",
            "model m {
                input x: f32[1, 2, 4, 4]
                c = conv2d(x, filters=2, kernel=1)
                b = batch_norm(c)
                output y = b + c
            }",
        );
    }
}
