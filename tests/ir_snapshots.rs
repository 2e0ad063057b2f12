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

#[test]
fn lstm_raw() {
    insta::assert_snapshot!(print_graph(&graph("lstm.nn")));
}
