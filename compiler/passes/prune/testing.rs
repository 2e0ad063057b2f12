//! A two-layer model with hand-written weights, for the pruning passes' tests.

use crate::driver::{build_graph, Source};
use crate::ir::{Graph, NodeKind};
use nnc_runtime::Tensor;
use std::collections::BTreeMap;

/// `fc2(relu(fc1(x)))` with x: [1, 2], fc1: 2→2, fc2: 2→2; biases 0.1.
pub fn mlp(fc1: &[f32; 4], fc2: &[f32; 4]) -> Graph {
    let src = "model m {\n  input x: f32[1, 2]\n  fc1 = dense(x, units=2)\n  output fc2 = dense(relu(fc1), units=2)\n}\n";
    let mut g = build_graph(&Source::from_string("m.nn", src.to_string()), None, &Default::default()).expect("the model compiles");
    let mut w: BTreeMap<String, Tensor> = BTreeMap::new();
    w.insert("fc1.weight".into(), Tensor::f32(vec![2, 2], fc1.to_vec()));
    w.insert("fc2.weight".into(), Tensor::f32(vec![2, 2], fc2.to_vec()));
    w.insert("fc1.bias".into(), Tensor::f32(vec![2], vec![0.1, 0.1]));
    w.insert("fc2.bias".into(), Tensor::f32(vec![2], vec![0.1, 0.1]));
    crate::weights::bind_weights(&mut g, nnc_runtime::weights::WeightsFile { tensors: w, unsupported: BTreeMap::new() }, "test").expect("the weights bind");
    g
}

/// A constant's values by node name.
pub fn weight(g: &Graph, name: &str) -> Vec<f32> {
    let id = g.node_ids().find(|&i| g.node(i).name == name).unwrap_or_else(|| panic!("no node {name}"));
    match &g.node(id).kind {
        NodeKind::Const(t) => t.to_f32_vec(),
        _ => panic!("{name} is not a constant"),
    }
}
