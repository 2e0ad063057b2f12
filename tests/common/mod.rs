//! Helpers shared by the integration tests.
#![allow(dead_code)]

use nnc::driver::{build_graph, Source};
use nnc::ir::Graph;
use nnc::{interp, weights};
use nnc_runtime::npy::read_npy;
use nnc_runtime::Tensor;
use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Build the only model of a `.nn` file, panicking with rendered diagnostics on error.
pub fn graph_from_file(path: &Path) -> Graph {
    let src = Source::read(path).unwrap_or_else(|d| panic!("{}", d.message));
    build_graph(&src, None, &Default::default()).unwrap_or_else(|d| panic!("{}", nnc::diagnostics::render(&d, &src.name, &src.text, false)))
}

/// A fixture directory: `model.nn`, optional `weights.safetensors`, `<input>.npy` per input and
/// `expected/<output>.npy` per output. Returns the graph with its weights bound, the inputs
/// and the expected outputs.
pub fn load_fixture(dir: &Path) -> (Graph, Vec<Tensor>, Vec<Tensor>) {
    let mut graph = graph_from_file(&dir.join("model.nn"));
    let wpath = dir.join("weights.safetensors");
    if wpath.exists() {
        let w = nnc_runtime::weights::read_safetensors(&wpath).unwrap();
        let warnings = weights::bind_weights(&mut graph, w, "weights").unwrap_or_else(|d| panic!("{d:?}"));
        assert!(warnings.is_empty(), "unused weights in {}: {warnings:?}", dir.display());
    }
    let inputs: Vec<Tensor> = graph.inputs.iter().map(|&id| read_npy(&dir.join(format!("{}.npy", graph.node(id).name))).unwrap().tensor).collect();
    let want = graph.outputs.iter().map(|(name, _)| read_npy(&dir.join("expected").join(format!("{name}.npy"))).unwrap().tensor).collect();
    (graph, inputs, want)
}

/// [`load_fixture`], run on the interpreter: (outputs computed, expected).
pub fn run_fixture(dir: &Path) -> (Vec<Tensor>, Vec<Tensor>) {
    let (graph, inputs, want) = load_fixture(dir);
    let got = interp::run(&graph, &inputs).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    (got, want)
}

/// Largest violation of `|a − b| ≤ tol·(1 + |b|)` as a message, or `None` when all agree.
pub fn compare(got: &[Tensor], want: &[Tensor], tol: f32) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{} outputs, expected {}", got.len(), want.len()));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g.shape() != w.shape() {
            return Some(format!("output {i}: shape {:?}, expected {:?}", g.shape(), w.shape()));
        }
        for (j, (a, b)) in g.to_f32_vec().iter().zip(w.to_f32_vec()).enumerate() {
            // Negated so that a NaN on either side is a mismatch.
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            if !((a - b).abs() <= tol * (1.0 + b.abs())) {
                return Some(format!("output {i} element {j}: got {a}, expected {b}"));
            }
        }
    }
    None
}
