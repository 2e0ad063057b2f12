//! The JIT end to end: every distinct ResNet-18 convolution on its own (GFLOP/s), and each
//! example model's latency in f32, quantized to int8 and in bf16 mixed precision, all with the
//! runtime microkernels (the default).
//! Run: `cargo bench --bench jit`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nnc::driver::{build_graph, Source};
use nnc::{jit, passes, weights};
use nnc_runtime::Tensor;
use std::path::PathBuf;

fn compile(src: &str, name: &str) -> (jit::Executable, Vec<Tensor>, u64) {
    let mut g = build_graph(&Source::from_string(name, src), None, &Default::default()).unwrap();
    let w = weights::random_weights(&g, 1);
    weights::bind_weights(&mut g, w, "random").unwrap();
    let macs = nnc::summary::summarize(&g).macs;
    passes::optimize(&mut g, 2, Some(&nnc::target::CpuTarget::host(true)), false, &mut |_, _| {}).unwrap();
    let inputs = g.inputs.iter().map(|&i| Tensor::f32(g.node(i).ty.shape.clone(), vec![0.5; g.node(i).ty.numel()])).collect();
    (jit::compile(&g, &Default::default()).unwrap(), inputs, macs)
}

/// (channels in, size in, filters, kernel, stride, padding) of each distinct convolution.
const RESNET18_CONVS: &[(usize, usize, usize, usize, usize, usize)] = &[
    (3, 224, 64, 7, 2, 3),
    (64, 56, 64, 3, 1, 1),
    (64, 56, 128, 3, 2, 1),
    (64, 56, 128, 1, 2, 0),
    (128, 28, 128, 3, 1, 1),
    (128, 28, 256, 3, 2, 1),
    (128, 28, 256, 1, 2, 0),
    (256, 14, 256, 3, 1, 1),
    (256, 14, 512, 3, 2, 1),
    (256, 14, 512, 1, 2, 0),
    (512, 7, 512, 3, 1, 1),
];

fn resnet18_convolutions(c: &mut Criterion) {
    let mut group = c.benchmark_group("resnet18 conv");
    for &(ci, size, f, k, s, p) in RESNET18_CONVS {
        let src = format!("model c {{\n input x: f32[1, {ci}, {size}, {size}]\n output y = conv2d(x, filters={f}, kernel={k}, stride={s}, padding={p}, bias=false)\n}}");
        let (exe, inputs, macs) = compile(&src, "conv.nn");
        let mut ws = exe.workspace();
        // Throughput in FLOPs (2 per MAC).
        group.throughput(Throughput::Elements(2 * macs));
        group.bench_function(format!("{ci}x{size}x{size} -> {f} k{k} s{s}"), |b| b.iter(|| exe.run(&mut ws, &inputs).unwrap()));
    }
    group.finish();
}

fn models(c: &mut Criterion) {
    let mut group = c.benchmark_group("model");
    group.sample_size(20);
    for name in ["mlp", "lenet5", "resnet18", "mobilenet_v2", "transformer", "lstm"] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.nn"));
        let (exe, inputs, _) = compile(&std::fs::read_to_string(path).unwrap(), name);
        let mut ws = exe.workspace();
        group.bench_function(name, |b| b.iter(|| exe.run(&mut ws, &inputs).unwrap()));
    }
    group.finish();
}

/// A model quantized to int8 (calibrated on its benchmark input), or in bf16 mixed precision
/// (`bf16`), compiled for this CPU.
fn compile_quantized(src: &str, name: &str, bf16: bool) -> (jit::Executable, Vec<Tensor>) {
    let mut g = build_graph(&Source::from_string(name, src), None, &Default::default()).unwrap();
    let w = weights::random_weights(&g, 1);
    weights::bind_weights(&mut g, w, "random").unwrap();
    let inputs: Vec<Tensor> = g.inputs.iter().map(|&i| Tensor::f32(g.node(i).ty.shape.clone(), (0..g.node(i).ty.numel()).map(|j| ((j * 7919) % 2000) as f32 / 1000.0 - 1.0).collect())).collect();
    let calibration = passes::Calibration::new(vec![inputs.clone()]);
    let target = nnc::target::CpuTarget::host(true);
    let quantize = (!bf16).then_some(&calibration);
    passes::optimize_with(&mut g, 2, &passes::PassContext { cpu: Some(&target), quantize, bf16, prune: None }, false, &mut |_, _| {}).unwrap();
    (jit::compile(&g, &Default::default()).unwrap(), inputs)
}

fn models_quantized(c: &mut Criterion) {
    for (group_name, bf16) in [("model int8", false), ("model bf16", true)] {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(20);
        for name in ["mlp", "lenet5", "resnet18", "mobilenet_v2", "transformer"] {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.nn"));
            let (exe, inputs) = compile_quantized(&std::fs::read_to_string(path).unwrap(), name, bf16);
            let mut ws = exe.workspace();
            group.bench_function(name, |b| b.iter(|| exe.run(&mut ws, &inputs).unwrap()));
        }
        group.finish();
    }
}

criterion_group!(benches, resnet18_convolutions, models, models_quantized);
criterion_main!(benches);
