//! Dead-code elimination: remove every node no output depends on. Inputs stay, since they are
//! the model's interface even when unused.

use crate::ir::{Graph, NodeKind};
use std::collections::HashSet;

pub fn eliminate_dead_code(graph: &mut Graph) -> bool {
    let mut live = HashSet::new();
    let mut stack: Vec<_> = graph.outputs.iter().map(|(_, id)| *id).collect();
    while let Some(id) = stack.pop() {
        if live.insert(id) {
            stack.extend(graph.operands(id));
        }
    }
    let dead: Vec<_> = graph.node_ids().filter(|id| !live.contains(id) && !matches!(graph.node(*id).kind, NodeKind::Input { .. })).collect();
    for &id in &dead {
        graph.remove(id);
    }
    !dead.is_empty()
}

#[cfg(test)]
mod tests {
    use crate::passes::testing::check_pass;

    #[test]
    fn removes_unused_chain_keeps_inputs() {
        check_pass(
            "eliminate-dead-code",
            "model m {
                input x: f32[2, 3]
                input unused: f32[1]
                a = relu(x)
                dead = sigmoid(a) * 2
                output y = tanh(a)
            }",
        );
    }
}
