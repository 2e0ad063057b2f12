//! Checks every pass must pass, shared by the passes' unit tests and the filetests: the IR
//! verifies afterwards, a second run changes nothing, and the interpreter computes the same
//! outputs (on random weights and inputs) before and after.

use crate::driver::{build_graph, Source};
use crate::ir::{print::print_graph, verify::verify, Graph};
use crate::{interp, weights};
use nnc_runtime::weights::WeightsFile;
use nnc_runtime::Tensor;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;

/// Look up a pass by its CLI name; CPU passes run for the fixed reference target, so their
/// results do not depend on the machine running the tests, and quantization calibrates on
/// [`calibration_for`] the graph it is given.
pub fn pass_by_name(name: &str) -> impl Fn(&mut Graph) -> bool {
    let name = name.to_string();
    let run = super::PIPELINE.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no pass named {name}")).run;
    move |g: &mut Graph| match run {
        super::PassFn::Graph(f) => f(g),
        super::PassFn::Cpu(f) => f(g, &crate::target::CpuTarget::reference()),
        super::PassFn::Quantize(f) => {
            let calibration = calibration_for(g);
            f(g, &calibration)
        }
        super::PassFn::MixedPrecision(f) => f(g),
        // Half of every known weight; weights still unbound as parameters are left alone.
        super::PassFn::Prune(f) => f(g, &super::prune::PruneOptions { specs: vec![super::prune::PruneSpec::Magnitude(0.5)], skip: Vec::new() }).expect("magnitude pruning cannot fail"),
    }
}

/// Four runs of seeded uniform [-1, 1) inputs: the calibration set of pass tests.
pub fn calibration_for(graph: &Graph) -> super::Calibration {
    super::Calibration::new((100..104).map(|seed| random_inputs(graph, seed)).collect())
}

/// Whether a pass changes values by design (within its own tolerance, not float rounding).
fn approximates(pass: &str) -> bool {
    super::PIPELINE.iter().any(|p| p.name == pass && matches!(p.run, super::PassFn::Quantize(_) | super::PassFn::MixedPrecision(_)))
}

/// Seeded random inputs for every graph input.
pub fn random_inputs(graph: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    graph
        .inputs
        .iter()
        .map(|&id| {
            let ty = &graph.node(id).ty;
            let data = (0..ty.numel()).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            Tensor::from_f32(ty.dtype, ty.shape.clone(), data).expect("shape matches")
        })
        .collect()
}

/// Outputs with `weights` bound as constants (the graph may already have none left).
pub fn run_with_weights(graph: &Graph, weights: &WeightsFile, inputs: &[Tensor]) -> Vec<Tensor> {
    let mut g = graph.clone();
    let used: BTreeMap<String, Tensor> = g.param_names().into_iter().map(|n| { let t = weights.tensors[&n].clone(); (n, t) }).collect();
    weights::bind_weights(&mut g, WeightsFile { tensors: used, unsupported: BTreeMap::new() }, "random").expect("random weights fit");
    interp::run(&g, inputs).expect("interpreter runs")
}

/// Assert two output lists agree within `|a − b| ≤ tol·(1 + |b|)`.
pub fn assert_close(got: &[Tensor], want: &[Tensor], tol: f32) {
    assert_eq!(got.len(), want.len(), "output count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.shape(), w.shape(), "output {i} shape");
        for (j, (a, b)) in g.to_f32_vec().iter().zip(w.to_f32_vec()).enumerate() {
            assert!((a - b).abs() <= tol * (1.0 + b.abs()), "output {i} element {j}: {a} vs {b}");
        }
    }
}

/// Assert two output lists agree within `|a − b| ≤ tol`.
pub fn assert_close_abs(got: &[Tensor], want: &[Tensor], tol: f32) {
    assert_eq!(got.len(), want.len(), "output count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.shape(), w.shape(), "output {i} shape");
        for (j, (a, b)) in g.to_f32_vec().iter().zip(w.to_f32_vec()).enumerate() {
            assert!((a - b).abs() <= tol, "output {i} element {j}: {a} vs {b} (tolerance {tol})");
        }
    }
}

/// The generic pass checks on `graph`; returns the graph after the pass.
pub fn check_pass_on_graph(pass: &str, graph: &Graph) -> Graph {
    let run = pass_by_name(pass);
    let mut after = graph.clone();
    run(&mut after);
    verify(&after).unwrap_or_else(|e| panic!("{pass} broke the IR:\n{e}\n{}", print_graph(&after)));
    let mut twice = after.clone();
    run(&mut twice);
    assert_eq!(print_graph(&twice), print_graph(&after), "{pass} is not idempotent");
    for seed in [1, 2] {
        // Weights are drawn from the graph before the pass: their distribution depends on
        // which op consumes them, which passes change.
        let w = weights::random_weights(graph, seed);
        let inputs = random_inputs(graph, seed);
        let before_out = run_with_weights(graph, &w, &inputs);
        let after_out = run_with_weights(&after, &w, &inputs);
        if approximates(pass) {
            // int8 keeps about two significant digits of each layer's range.
            let range = before_out.iter().flat_map(|t| t.to_f32_vec()).fold(0f32, |m, v| m.max(v.abs()));
            assert_close_abs(&after_out, &before_out, 0.05 * (1.0 + range));
        } else {
            assert_close(&after_out, &before_out, 1e-4);
        }
    }
    after
}

/// [`check_pass_on_graph`] on a `.nn` source, both before and after binding weights (passes
/// must work on graphs with parameters and on graphs with constants). Returns the IR text
/// after the pass on the graph with parameters.
pub fn check_pass(pass: &str, source: &str) -> String {
    let graph = build_graph(&Source::from_string("test.nn", source), None, &Default::default()).unwrap_or_else(|d| panic!("{d:?}"));
    let after = check_pass_on_graph(pass, &graph);
    let mut bound = graph.clone();
    weights::bind_weights(&mut bound, weights::random_weights(&graph, 7), "random").expect("random weights fit");
    check_pass_on_graph(pass, &bound);
    print_graph(&after)
}

/// A graph from `.nn` source with seeded random weights bound as constants.
pub fn bound_graph(source: &str, seed: u64) -> Graph {
    let mut g = build_graph(&Source::from_string("test.nn", source), None, &Default::default()).unwrap_or_else(|d| panic!("{d:?}"));
    let w = weights::random_weights(&g, seed);
    weights::bind_weights(&mut g, w, "random").expect("random weights fit");
    g
}
