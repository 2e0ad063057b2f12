//! How long simulating a model on the accelerator takes: ResNet-18 at 128×128 (int8, ws),
//! split into lowering, and executing (functional model plus the cycle and energy model);
//! and timing alone (what `nnc sweep` does per configuration: lowering without a DRAM image,
//! then the cycle and energy model without values), whose target is under 20 ms.
//! Run: `cargo bench --bench accel`.

use criterion::{criterion_group, criterion_main, Criterion};
use nnc::accel::{self, AccelConfig};
use nnc::driver::{build_graph, Source};
use nnc::{passes, weights};
use nnc_runtime::Tensor;
use std::path::PathBuf;

fn resnet_int8() -> (nnc::ir::Graph, Vec<Tensor>) {
    let src = Source::read(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/resnet18.nn")).unwrap();
    let mut g = build_graph(&src, None, &Default::default()).unwrap();
    let w = weights::random_weights(&g, 1);
    weights::bind_weights(&mut g, w, "random").unwrap();
    let ty = g.node(g.inputs[0]).ty.clone();
    let input = Tensor::f32(ty.shape.clone(), (0..ty.numel()).map(|i| ((i * 7919) % 2000) as f32 / 1000.0 - 1.0).collect());
    let calibration = passes::Calibration::new(vec![vec![input.clone()]]);
    passes::optimize_with(&mut g, 2, &passes::PassContext { cpu: None, quantize: Some(&calibration), bf16: false, prune: None }, false, &mut |_, _| {}).unwrap();
    (g, vec![input])
}

fn simulate(c: &mut Criterion) {
    let (graph, inputs) = resnet_int8();
    let mut config = AccelConfig::preset("tpu-v1").unwrap();
    config.rows = 128;
    config.cols = 128;
    let mut group = c.benchmark_group("accel_resnet18_128x128");
    group.sample_size(10);
    group.bench_function("lower", |b| b.iter(|| accel::lower(&graph, &config).unwrap()));
    let program = accel::lower(&graph, &config).unwrap();
    group.bench_function("run", |b| b.iter(|| accel::run(&program, &inputs).unwrap()));
    let shared = std::sync::Arc::new(graph.clone());
    group.bench_function("lower_for_timing", |b| b.iter(|| accel::lower_for_timing(&shared, &config).unwrap()));
    group.bench_function("lower_for_timing+time", |b| b.iter(|| accel::time(&accel::lower_for_timing(&shared, &config).unwrap()).unwrap()));
    group.finish();
    // The smallest array a sweep usually takes has the most instructions (520k at 8×8).
    let mut group = c.benchmark_group("accel_resnet18_timing_only");
    group.sample_size(10);
    for size in [8, 16, 32] {
        let mut small = AccelConfig::preset("gemmini").unwrap();
        small.rows = size;
        small.cols = size;
        group.bench_function(format!("lower_for_timing {size}x{size}"), |b| b.iter(|| accel::lower_for_timing(&shared, &small).unwrap()));
        let program = accel::lower_for_timing(&shared, &small).unwrap();
        group.bench_function(format!("time {size}x{size}"), |b| b.iter(|| accel::time(&program).unwrap()));
    }
    group.finish();
}

/// A 100-design grid of ResNet-18 (int8) on two threads, as `nnc sweep` runs it: the
/// 1,000-design target (< 30 s on 2 cores) is ten of these.
fn sweep(c: &mut Criterion) {
    use nnc::explore::{grid::Axis, sweep, Grid};
    let (graph, _) = resnet_int8();
    let graph = std::sync::Arc::new(graph);
    let base = AccelConfig::preset("gemmini").unwrap();
    let axis = |key: &str, values: &[&str]| Axis { key: key.into(), values: values.iter().map(|v| v.to_string()).collect() };
    let mut grid = Grid::new(
        vec![axis("array", &["8x8", "16x16", "32x32", "64x64", "128x128"]), axis("dataflow", &["ws", "os"]), axis("scratchpad_kib", &["256", "1024"]), axis("dram_gbps", &["8", "16", "32", "64", "128"])],
        &base,
    )
    .unwrap();
    grid.scale_accumulator(&base);
    let mut group = c.benchmark_group("sweep_resnet18");
    group.sample_size(10);
    group.bench_function("100 designs, 2 jobs", |b| {
        b.iter(|| sweep::sweep(&grid, 0..grid.len(), &base, &|_| Ok(graph.clone()), 2, &|| {}).unwrap())
    });
    group.finish();
}

criterion_group!(benches, simulate, sweep);
criterion_main!(benches);
