//! Pruned products against their dense kernels, in one run: each layer (single thread) with
//! 90% of its weights zero (`magnitude:0.9`), compiled once with the sparse kernels and once
//! with `--sparse-kernels off` (the dense kernel of the same shape), and ResNet-18 end to end
//! unpruned, at `magnitude:0.9` and at `channels:0.5`.
//! Run: `cargo bench --bench pruning`.

use criterion::{criterion_group, criterion_main, Criterion};
use nnc::driver::{build_graph, Source};
use nnc::passes::prune::{PruneOptions, PruneSpec};
use nnc::{jit, passes, weights};
use nnc_runtime::Tensor;

fn compile(src: &str, prune: Option<PruneSpec>, sparse: bool) -> (jit::Executable, Vec<Tensor>) {
    let mut g = build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap();
    let w = weights::random_weights(&g, 1);
    weights::bind_weights(&mut g, w, "random").unwrap();
    let options = jit::JitOptions { sparse, ..Default::default() };
    let target = options.target();
    let prune = prune.map(|spec| PruneOptions { specs: vec![spec], skip: Vec::new() });
    passes::optimize_with(&mut g, 2, &passes::PassContext { cpu: Some(&target), quantize: None, bf16: false, prune: prune.as_ref() }, false, &mut |_, _| {}).unwrap();
    let inputs = g.inputs.iter().map(|&i| Tensor::f32(g.node(i).ty.shape.clone(), (0..g.node(i).ty.numel()).map(|j| ((j * 7919) % 2000) as f32 / 1000.0 - 1.0).collect())).collect();
    (jit::compile(&g, &options).unwrap(), inputs)
}

/// (name, model) of each layer: the MLP's first layer at batch 1, the transformer's two
/// feed-forward products, and ResNet-18's 3×3 convolutions at their four sizes.
const LAYERS: &[(&str, &str)] = &[
    ("mlp dense 784->512 batch 1", "model m {\n input x: f32[1, 784]\n output y = dense(x, units=512)\n}"),
    ("transformer linear1 128x256->1024", "model m {\n input x: f32[1, 128, 256]\n output y = dense(x, units=1024)\n}"),
    ("transformer linear2 128x1024->256", "model m {\n input x: f32[1, 128, 1024]\n output y = dense(x, units=256)\n}"),
    ("resnet18 conv 64x56x56 3x3", "model m {\n input x: f32[1, 64, 56, 56]\n output y = conv2d(x, filters=64, kernel=3, padding=1, bias=false)\n}"),
    ("resnet18 conv 128x28x28 3x3", "model m {\n input x: f32[1, 128, 28, 28]\n output y = conv2d(x, filters=128, kernel=3, padding=1, bias=false)\n}"),
    ("resnet18 conv 256x14x14 3x3", "model m {\n input x: f32[1, 256, 14, 14]\n output y = conv2d(x, filters=256, kernel=3, padding=1, bias=false)\n}"),
    ("resnet18 conv 512x7x7 3x3", "model m {\n input x: f32[1, 512, 7, 7]\n output y = conv2d(x, filters=512, kernel=3, padding=1, bias=false)\n}"),
];

fn layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("pruned 90%");
    for &(name, src) in LAYERS {
        for (kernel, sparse) in [("sparse", true), ("dense", false)] {
            let (exe, inputs) = compile(src, Some(PruneSpec::Magnitude(0.9)), sparse);
            let mut ws = exe.workspace();
            group.bench_function(format!("{name} {kernel}"), |b| b.iter(|| exe.run(&mut ws, &inputs).unwrap()));
        }
    }
    group.finish();
}

fn resnet18(c: &mut Criterion) {
    let mut group = c.benchmark_group("resnet18 pruned");
    group.sample_size(10);
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/resnet18.nn")).unwrap();
    for (name, spec) in [("unpruned", None), ("magnitude:0.9", Some(PruneSpec::Magnitude(0.9))), ("channels:0.5", Some(PruneSpec::Channels(0.5)))] {
        let (exe, inputs) = compile(&src, spec, true);
        let mut ws = exe.workspace();
        group.bench_function(name, |b| b.iter(|| exe.run(&mut ws, &inputs).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, layers, resnet18);
criterion_main!(benches);
