//! The reference interpreter: evaluates a graph node by node with each op's reference
//! semantics (`Op::eval`). Written for clarity; it is the oracle every other backend is
//! tested against.

use crate::ir::{Graph, NodeId, NodeKind, ShapeDisplay};
use nnc_runtime::Tensor;
use std::borrow::Cow;
use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InterpError {
    #[error("the model has {expected} inputs but {got} were given")]
    InputCount { expected: usize, got: usize },
    #[error("input `{name}` must have shape {expected} and dtype {dtype}, but the given tensor is {got}")]
    InputMismatch { name: String, expected: String, dtype: String, got: String },
    #[error("parameter `{0}` has no value: load weights or use --random-weights")]
    UnboundParam(String),
}

/// Run `graph` on `inputs` (in declaration order) and return its outputs in declaration order.
/// Intermediate values are dropped after their last use.
pub fn run(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, InterpError> {
    run_observed(graph, inputs, &mut |_, _| {})
}

/// [`run`], showing every value to `observe` as it is computed (calibration reads ranges
/// this way).
pub fn run_observed(graph: &Graph, inputs: &[Tensor], observe: &mut dyn FnMut(NodeId, &Tensor)) -> Result<Vec<Tensor>, InterpError> {
    run_general(graph, inputs, observe, &mut |_, t| t)
}

/// [`run`], passing every op's result through `perturb` before anything uses it. The
/// differential tests use it to add rounding noise and so measure how much a graph amplifies
/// rounding (`testing::differential`).
pub fn run_perturbed(graph: &Graph, inputs: &[Tensor], perturb: &mut dyn FnMut(NodeId, Tensor) -> Tensor) -> Result<Vec<Tensor>, InterpError> {
    run_general(graph, inputs, &mut |_, _| {}, perturb)
}

fn run_general(
    graph: &Graph,
    inputs: &[Tensor],
    observe: &mut dyn FnMut(NodeId, &Tensor),
    perturb: &mut dyn FnMut(NodeId, Tensor) -> Tensor,
) -> Result<Vec<Tensor>, InterpError> {
    if inputs.len() != graph.inputs.len() {
        return Err(InterpError::InputCount { expected: graph.inputs.len(), got: inputs.len() });
    }
    let mut remaining_uses: HashMap<NodeId, usize> = graph.node_ids().map(|n| (n, graph.users(n).len())).collect();
    for (_, o) in &graph.outputs {
        *remaining_uses.entry(*o).or_default() += 1;
    }
    // Constants (weights) are borrowed from the graph; only computed values are owned.
    let mut values: HashMap<NodeId, Cow<'_, Tensor>> = HashMap::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        let value = match &node.kind {
            NodeKind::Input { index } => {
                let t = &inputs[*index];
                if t.shape() != node.ty.shape.as_slice() || t.dtype() != node.ty.dtype {
                    return Err(InterpError::InputMismatch {
                        name: node.name.clone(),
                        expected: ShapeDisplay(&node.ty.shape).to_string(),
                        dtype: node.ty.dtype.to_string(),
                        got: format!("{}{}", t.dtype(), ShapeDisplay(t.shape())),
                    });
                }
                Cow::Borrowed(t)
            }
            NodeKind::Param => return Err(InterpError::UnboundParam(node.name.clone())),
            NodeKind::Const(t) => Cow::Borrowed(t),
            NodeKind::Op(op) => {
                let operands = graph.operands(id);
                let args: Vec<&Tensor> = operands.iter().map(|o| values[o].as_ref()).collect();
                let out = op.eval(&args, &node.ty);
                for o in operands {
                    let n = remaining_uses.get_mut(&o).expect("every node has a use count");
                    *n -= 1;
                    if *n == 0 {
                        values.remove(&o);
                    }
                }
                Cow::Owned(perturb(id, out))
            }
        };
        observe(id, &value);
        values.insert(id, value);
    }
    Ok(graph.outputs.iter().map(|(_, o)| values[o].as_ref().clone()).collect())
}
