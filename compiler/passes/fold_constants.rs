//! Constant folding: an op whose operands are all constants is evaluated at compile time
//! (with the reference semantics) and becomes a constant itself. With weights bound, this is
//! what turns the arithmetic `fold-batch-norm` leaves on parameters into plain weights.

use crate::ir::{Graph, NodeKind};

pub fn fold_constants(graph: &mut Graph) -> bool {
    let mut changed = false;
    for id in graph.topo_order() {
        let node = graph.node(id);
        let NodeKind::Op(op) = &node.kind else { continue };
        let operands = graph.operands(id);
        let values: Option<Vec<_>> = operands
            .iter()
            .map(|&o| match &graph.node(o).kind {
                NodeKind::Const(t) => Some(t),
                NodeKind::Input { .. } | NodeKind::Param | NodeKind::Op(_) => None,
            })
            .collect();
        let Some(values) = values else { continue };
        let folded = op.eval(&values, &node.ty);
        graph.node_mut(id).kind = NodeKind::Const(folded);
        graph.set_operands(id, &[]);
        // Drop constants this fold consumed for good, so a chain of folds on large weights
        // holds one intermediate at a time rather than all of them until dead-code removal.
        for o in operands {
            if graph.contains(o) && graph.users(o).is_empty() && !graph.is_output(o) {
                graph.remove(o);
            }
        }
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use crate::passes::testing::check_pass;

    #[test]
    fn folds_literal_arithmetic() {
        check_pass(
            "fold-constants",
            "block scaled(x, s=0.5) {
                return x * s
            }
            model m {
                input x: f32[4]
                y = scaled(x)
                output z = y + 1
            }",
        );
    }
}
