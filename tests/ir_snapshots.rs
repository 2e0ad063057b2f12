//! IR dumps are a product feature: these snapshots pin the text form of real models before
//! and after optimization. Review changes with `cargo insta review`, or re-bless with
//! `INSTA_UPDATE=always cargo test --test ir_snapshots`.

use nnc::driver::{build_graph, Source};
use nnc::target::CpuTarget;
use nnc::ir::print::print_graph;
use nnc::passes;
use std::path::PathBuf;

fn graph(example: &str) -> nnc::ir::Graph {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples").join(example);
    build_graph(&Source::read(&path).unwrap(), None, &Default::default()).unwrap()
}

fn optimized(example: &str) -> String {
    let mut g = graph(example);
    passes::optimize(&mut g, 2, Some(&CpuTarget::reference()), true, &mut |_, _| {}).unwrap();
    print_graph(&g)
}

#[test]
fn lenet5_raw() {
    insta::assert_snapshot!(print_graph(&graph("lenet5.nn")));
}

#[test]
fn lenet5_optimized() {
    insta::assert_snapshot!(optimized("lenet5.nn"));
}

#[test]
fn transformer_raw() {
    insta::assert_snapshot!(print_graph(&graph("transformer.nn")));
}

#[test]
fn resnet18_optimized() {
    insta::assert_snapshot!(optimized("resnet18.nn"));
}

/// The kernel of every convolution of ResNet-18 with weights bound (Winograd needs constant
/// filters), on the reference target: F(4×4) on the 56², 28² and 14² stride-1 layers,
/// F(2×2) on the 7×7×512 ones, the GEMM for the strided and 1×1 ones. Winograd on NHWC
/// images needs AVX2 or AVX-512 (`nhwc_available`), so elsewhere the snapshot is skipped.
#[test]
fn resnet18_convolution_kernels_with_weights() {
    if !nnc_runtime::gemm::winograd::nhwc_available() {
        return;
    }
    let mut g = graph("resnet18.nn");
    let w = nnc::weights::random_weights(&g, 1);
    nnc::weights::bind_weights(&mut g, w, "random").unwrap();
    passes::optimize(&mut g, 2, Some(&CpuTarget::reference()), true, &mut |_, _| {}).unwrap();
    let lines: Vec<String> = g
        .node_ids()
        .filter(|&id| g.node(id).op().and_then(|op| op.product()).is_some_and(|p| matches!(p, nnc::ops::Product::Conv2d(_))))
        .map(|id| format!("{} {}", g.node(id).name, g.node(id).kernel.map_or("-", |k| k.name())))
        .collect();
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn lstm_raw() {
    insta::assert_snapshot!(print_graph(&graph("lstm.nn")));
}

/// LeNet-5 quantized to int8 (seeded weights, one seeded calibration run): where the
/// quantize, requantize and dequantize nodes go, and their scales.
#[test]
fn lenet5_quantized_int8() {
    use rand::{RngExt, SeedableRng};
    let mut g = graph("lenet5.nn");
    let w = nnc::weights::random_weights(&g, 1);
    nnc::weights::bind_weights(&mut g, w, "random").unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let ty = g.node(g.inputs[0]).ty.clone();
    let x = nnc_runtime::Tensor::f32(ty.shape.clone(), (0..ty.numel()).map(|_| rng.random_range(-1.0f32..1.0)).collect());
    let calibration = passes::Calibration::new(vec![vec![x]]);
    passes::optimize_with(&mut g, 2, &passes::PassContext { cpu: None, quantize: Some(&calibration), bf16: false, prune: None }, true, &mut |_, _| {}).unwrap();
    insta::assert_snapshot!(print_graph(&g));
}
