//! Reading a float graph's intermediate values through the JIT: int8 calibration's
//! executor ([`crate::passes::Calibration::observe`]).

use super::{compile, JitOptions};
use crate::ir::{Graph, NodeId};
use nnc_runtime::Tensor;

/// Runs `graph` on each of `runs` and hands `each` the values of `nodes`, in order, run by
/// run (so memory holds one run's values however many runs there are).
///
/// The observed values become the compiled graph's only outputs, so the memory plan keeps
/// each one alive to the end and nothing they do not need is computed; model inputs among
/// them are read from the run itself. The graph's outputs are swapped for the compilation
/// and restored (a copy would duplicate every weight). Errors (a graph the JIT refuses, such
/// as an f16 model) are returned for the caller to fall back to the interpreter.
pub fn observe(graph: &mut Graph, nodes: &[NodeId], runs: &[Vec<Tensor>], each: &mut dyn FnMut(&[Tensor])) -> Result<(), String> {
    let inputs = graph.inputs.clone();
    let input_slot = |n: NodeId| inputs.iter().position(|&i| i == n);
    let observed = nodes.iter().filter(|&&n| input_slot(n).is_none()).map(|&n| (format!("observed.{}", n.index()), n)).collect();
    let exe = if nodes.iter().all(|&n| input_slot(n).is_some()) {
        None
    } else {
        let outputs = std::mem::replace(&mut graph.outputs, observed);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let exe = compile(graph, &JitOptions { ukernels: true, threads, ..Default::default() });
        graph.outputs = outputs;
        Some(exe.map_err(|e| e.to_string())?)
    };
    let mut ws = exe.as_ref().map(|e| e.workspace());
    for run in runs {
        let computed = match (&exe, ws.as_mut()) {
            (Some(exe), Some(ws)) => exe.run(ws, run).map_err(|e| e.to_string())?,
            _ => Vec::new(),
        };
        let mut computed = computed.into_iter();
        let values = nodes
            .iter()
            .map(|&n| match input_slot(n) {
                Some(k) => run.get(k).cloned().ok_or_else(|| format!("calibration run has no input {k}")),
                None => computed.next().ok_or_else(|| "the JIT returned fewer values than observed".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        each(&values);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::driver::{build_graph, Source};
    use crate::ir::NodeId;
    use crate::testing::differential::random_inputs;
    use crate::{interp, weights};
    use std::collections::HashMap;

    /// The JIT's observed values are the interpreter's, within f32 rounding, for inputs and
    /// intermediate values alike, on every run.
    #[test]
    fn observed_values_match_the_interpreters() {
        let src = "model m {\n input x: f32[1, 3, 8, 8]\n c = conv2d(x, filters=4, kernel=3, padding=1)\n r = relu(c)\n p = max_pool(r, kernel=2, stride=2)\n output y = dense(flatten(p), units=5)\n}";
        let mut g = build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap();
        let w = weights::random_weights(&g, 1);
        weights::bind_weights(&mut g, w, "w").unwrap();
        let pick = |name: &str| g.topo_order().into_iter().find(|&id| g.node(id).name == name).unwrap();
        let nodes: Vec<NodeId> = ["x", "r", "p"].into_iter().map(pick).collect();
        let runs: Vec<_> = (0..3).map(|s| random_inputs(&g, s)).collect();
        let outputs = g.outputs.clone();
        let mut got = Vec::new();
        super::observe(&mut g, &nodes, &runs, &mut |values| got.push(values.to_vec())).unwrap();
        assert_eq!(g.outputs, outputs, "the graph's outputs are restored");
        assert_eq!(got.len(), runs.len());
        for (run, values) in runs.iter().zip(&got) {
            let mut want: HashMap<NodeId, Vec<f32>> = HashMap::new();
            interp::run_observed(&g, run, &mut |id, t| {
                want.insert(id, t.as_f32().unwrap().to_vec());
            })
            .unwrap();
            want.insert(nodes[0], run[0].as_f32().unwrap().to_vec());
            assert_eq!(values.len(), nodes.len());
            for (n, v) in nodes.iter().zip(values) {
                let (v, w) = (v.as_f32().unwrap(), &want[n]);
                assert_eq!(v.len(), w.len());
                assert!(v.iter().zip(w).all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs())), "{}", g.node(*n).name);
            }
        }
    }
}
