//! The IR verifier: the invariants every pass must preserve. Runs after every pass in tests
//! and debug builds.

use super::{Graph, Layout, NodeKind};

/// Check the graph; the error lists every broken invariant found.
pub fn verify(graph: &Graph) -> Result<(), String> {
    let mut problems = Vec::new();
    if graph.has_cycle() {
        problems.push("the graph has a cycle".to_string());
    }
    for (i, &id) in graph.inputs.iter().enumerate() {
        if !graph.contains(id) {
            problems.push(format!("input {i} refers to a removed node"));
        } else if !matches!(graph.node(id).kind, NodeKind::Input { index } if index == i) {
            problems.push(format!("input {i} (`{}`) is not an input node with index {i}", graph.node(id).name));
        }
    }
    if graph.outputs.is_empty() {
        problems.push("the graph has no outputs".to_string());
    }
    for (name, id) in &graph.outputs {
        if !graph.contains(*id) {
            problems.push(format!("output `{name}` refers to a removed node"));
        } else if graph.node(*id).ty.layout != Layout::RowMajor {
            // A graph's interface is in logical order; layouts are internal.
            problems.push(format!("output `{name}` is {}, not row-major", graph.node(*id).ty.layout.name()));
        }
    }
    for id in graph.node_ids() {
        let node = graph.node(id);
        if graph.by_name(&node.name) != Some(id) {
            problems.push(format!("`{}` is not registered under its name", node.name));
        }
        let operands = graph.operand_types(id);
        match &node.kind {
            NodeKind::Input { .. } | NodeKind::Param | NodeKind::Const(_) if node.ty.layout != Layout::RowMajor => {
                problems.push(format!("`{}` is a leaf in layout {}; inputs and weights are row-major", node.name, node.ty.layout.name()));
            }
            NodeKind::Input { .. } | NodeKind::Param => {
                if !operands.is_empty() {
                    problems.push(format!("`{}` is a leaf but has operands", node.name));
                }
            }
            NodeKind::Const(t) => {
                if t.shape() != node.ty.shape.as_slice() || t.dtype() != node.ty.dtype {
                    problems.push(format!("constant `{}` holds {:?} but is typed {}", node.name, t, node.ty));
                }
            }
            NodeKind::Op(op) => match op.infer(&operands) {
                Ok(ty) if ty == node.ty => {}
                Ok(ty) => problems.push(format!("`{}` is typed {} but its {} infers {}", node.name, node.ty, op.name(), ty)),
                Err(e) => problems.push(format!("`{}`: {}", node.name, e.message)),
            },
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
