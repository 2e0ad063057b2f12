//! Embedding nnc in an application: compile a model from a string once, load trained
//! weights, and classify a batch of inputs with the JIT-compiled code.
//!
//! Run: `cargo run --release --example embed`

use nnc::driver::{compile, CompileOptions, Source};
use nnc_runtime::npy::read_npy;
use nnc_runtime::weights::read_safetensors;
use std::path::Path;

const MODEL: &str = "
model digits {
    input x: f32[N, 64]
    h = dense(x, units=64)
    output logits = dense(relu(h), units=10)
}
";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/digits");
    let images = read_npy(&dir.join("test_x.npy"))?.tensor;
    let batch = images.shape()[0];

    let mut options = CompileOptions::default();
    options.dims.insert("N".into(), batch);
    let weights = read_safetensors(&dir.join("digits.safetensors"))?;
    let exe = compile(&Source::from_string("digits.nn", MODEL), weights, &options)?;

    // A workspace holds the activation memory; reuse it across runs.
    let mut workspace = exe.workspace();
    let logits = exe.run(&mut workspace, &[images])?.remove(0);
    let predictions: Vec<usize> = logits
        .as_f32()
        .expect("float output")
        .chunks_exact(10)
        .map(|row| (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).expect("ten classes"))
        .collect();
    println!("classified {batch} digits; the first ten are {:?}", &predictions[..10]);
    println!("activation memory: {} bytes", exe.arena_bytes());
    Ok(())
}
