//! Compile time of the front end and optimizer per example model, and latency of the
//! reference interpreter on the small ones. The JIT's benchmarks join these with issue 3.
//! Run: `cargo bench --bench frontend`.

use criterion::{criterion_group, criterion_main, Criterion};
use nnc::driver::{build_graph, Source};
use nnc::{interp, passes, weights};
use nnc_runtime::Tensor;
use std::hint::black_box;
use std::path::PathBuf;

const EXAMPLES: &[&str] = &["lenet5", "mlp", "resnet18", "mobilenet_v2", "transformer", "lstm"];

fn source(name: &str) -> Source {
    Source::read(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.nn"))).unwrap()
}

fn compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    for name in EXAMPLES {
        let src = source(name);
        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut g = build_graph(black_box(&src), None, &Default::default()).unwrap();
                passes::optimize(&mut g, 2, None, false, &mut |_, _| {}).unwrap();
                g
            })
        });
    }
    group.finish();
}

fn interpret(c: &mut Criterion) {
    let mut group = c.benchmark_group("interp");
    for name in ["lenet5", "mlp", "lstm"] {
        let mut g = build_graph(&source(name), None, &Default::default()).unwrap();
        let w = weights::random_weights(&g, 1);
        weights::bind_weights(&mut g, w, "random").unwrap();
        passes::optimize(&mut g, 2, None, false, &mut |_, _| {}).unwrap();
        let inputs: Vec<Tensor> = g.inputs.iter().map(|&i| Tensor::f32(g.node(i).ty.shape.clone(), vec![0.5; g.node(i).ty.numel()])).collect();
        group.bench_function(name, |b| b.iter(|| interp::run(black_box(&g), &inputs).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, compile, interpret);
criterion_main!(benches);
