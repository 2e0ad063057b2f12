//! The bodies of the fuzz targets in `fuzz/`: each takes the fuzzer's bytes, feeds them to
//! one reader of user input (or, for [`differential`], reads a whole model from them), and
//! panics only on a bug: a crash, a broken invariant, or executors that disagree. Errors the
//! input deserves are the expected outcome.
//!
//! They live here rather than in `fuzz/` so that `cargo test` compiles them and replays the
//! committed corpora and crash regressions through them (`tests/fuzz_corpora.rs`) on every
//! run, without libFuzzer or a nightly toolchain.

use crate::accel::{self, isa::Insn, AccelConfig};
use crate::driver::{build_graph, check_memory_budget, Source};
use crate::ir::{parse::parse_graph, print::print_graph, verify::verify, Graph};
use crate::passes::{self, PassContext};
use crate::target::CpuTarget;
use crate::testing::{differential, random_model};
use crate::{interp, summary, weights};
use arbitrary::Unstructured;

/// Every target, by the name of its directory under `fuzz/corpus/`.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("source_pipeline", source_pipeline),
    ("ir_text", ir_text),
    ("safetensors", safetensors),
    ("npy", npy),
    ("accel_config", accel_config),
    ("isa_decode", isa_decode),
    ("differential", differential),
];

/// Models whose parameters and activations exceed this get no weights drawn: the fuzzer
/// should spend its time on many small inputs, not on one large allocation.
const FUZZ_MODEL_BYTES: u64 = 4 << 20;

/// Interpret only models this cheap.
const FUZZ_INTERP_MACS: u64 = 200_000;

/// Source bytes through the whole front end, then weights, the passes at -O2 (with the CPU
/// passes) and, for small models, the interpreter.
pub fn source_pipeline(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let src = Source::from_string("fuzz.nn", text);
    let Ok(graph) = build_graph(&src, None, &Default::default()) else { return };
    verify(&graph).unwrap_or_else(|e| panic!("elaboration produced an invalid graph: {e}"));
    optimize_small(graph);
}

/// Bind random weights, optimize with every pass and interpret, if the graph is small enough.
fn optimize_small(graph: Graph) {
    if check_memory_budget(&graph).is_err() {
        return;
    }
    let s = summary::summarize(&graph);
    if s.params.saturating_mul(4).saturating_add(s.peak_activation_bytes) > FUZZ_MODEL_BYTES {
        return;
    }
    let mut g = graph.clone();
    if weights::bind_weights(&mut g, weights::random_weights(&graph, 1), "random").is_err() {
        return;
    }
    let target = CpuTarget::reference();
    passes::optimize_with(&mut g, 2, &PassContext { cpu: Some(&target), quantize: None, bf16: false, prune: None }, true, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    if s.macs <= FUZZ_INTERP_MACS && s.activation_bytes <= 1 << 20 && g.inputs.iter().all(|&i| g.node(i).ty.dtype == nnc_runtime::DType::F32) {
        let inputs = differential::random_inputs(&g, 2);
        // Errors (an int8 op given the wrong data, say) are fine; panics are not.
        let _ = interp::run(&g, &inputs);
    }
}

/// IR text: whatever parses and verifies must print and parse back to the same text, and
/// survive the pipeline.
pub fn ir_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(graph) = parse_graph(text) else { return };
    if verify(&graph).is_err() {
        return;
    }
    let printed = print_graph(&graph);
    let back = parse_graph(&printed).unwrap_or_else(|e| panic!("printed IR does not parse back: {e}\n{printed}"));
    assert_eq!(print_graph(&back), printed, "printed IR does not round-trip");
    optimize_small(graph);
}

/// A small model every weights file is bound against: every parameter kind nnc has.
const WEIGHTS_MODEL: &str = "model w {\n input x: f32[1, 2, 4, 4]\n c = conv2d(x, filters=2, kernel=3, padding=1)\n b = batch_norm(c)\n output y = dense(flatten(b), units=3)\n}\n";

/// safetensors bytes, read and then bound to a model by name.
pub fn safetensors(data: &[u8]) {
    let Ok(file) = nnc_runtime::weights::parse_safetensors(data, "fuzz.safetensors") else { return };
    let mut graph = build_graph(&Source::from_string("w.nn", WEIGHTS_MODEL), None, &Default::default()).expect("the weights model compiles");
    if weights::bind_weights(&mut graph, file, "fuzz.safetensors").is_ok() {
        verify(&graph).unwrap_or_else(|e| panic!("bound weights broke the graph: {e}"));
        let _ = interp::run(&graph, &differential::random_inputs(&graph, 1));
    }
}

/// `.npy` bytes: what loads must hold as many elements as its shape says.
pub fn npy(data: &[u8]) {
    if let Ok((shape, labels)) = nnc_runtime::npy::read_npy_integers_bytes(data, "fuzz.npy") {
        assert_eq!(labels.len(), shape.iter().product::<usize>(), "loaded integers do not match their shape");
    }
    let Ok(array) = nnc_runtime::npy::read_npy_bytes(data, "fuzz.npy") else { return };
    let t = &array.tensor;
    assert_eq!(t.to_f32_vec().len(), t.shape().iter().product::<usize>(), "a loaded array's data does not match its shape");
}

/// An accelerator configuration: TOML text, then `--set KEY=VALUE` overrides, then
/// validation; a valid configuration lowers, runs and reports a one-layer model.
pub fn accel_config(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(toml) = u.arbitrary::<&str>() else { return };
    let Ok(sets) = u.arbitrary::<Vec<(&str, &str)>>() else { return };
    let Ok(mut config) = AccelConfig::from_toml(toml, "fuzz.toml") else { return };
    for (k, v) in sets {
        if config.set(k, v).is_err() {
            return;
        }
    }
    if config.validate().is_err() {
        return;
    }
    // Memories are allocated whole; keep the run small.
    if config.scratchpad_kib > 4096 || config.accumulator_kib > 4096 || config.rows * config.cols > 1 << 16 {
        return;
    }
    let src = "model a {\n input x: f32[3, 20]\n h = relu(dense(x, units=7))\n output y = dense(h, units=5)\n}\n";
    let mut g = build_graph(&Source::from_string("a.nn", src), None, &Default::default()).expect("the model compiles");
    let drawn = weights::random_weights(&g, 1);
    weights::bind_weights(&mut g, drawn, "random").expect("random weights bind");
    let inputs = differential::random_inputs(&g, 1);
    let quantize = config.dtype == accel::config::ElemType::Int8;
    let calibration = passes::Calibration::new(vec![inputs.clone()]);
    let cx = PassContext { cpu: None, quantize: quantize.then_some(&calibration), bf16: false, prune: None };
    passes::optimize_with(&mut g, 2, &cx, true, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    let Ok(program) = accel::lower(&g, &config) else { return };
    let outcome = accel::run(&program, &inputs).unwrap_or_else(|e| panic!("a lowered program failed to run: {e}"));
    let report = accel::report::json_report(&program, &outcome.timing);
    assert_eq!(report["total_cycles"].as_u64(), Some(outcome.timing.total_cycles), "the report's cycles are the run's");
    let _ = accel::report::table(&program, &outcome.timing);
}

/// An instruction stream: whatever decodes must re-encode to an encoding that decodes to the
/// same instructions, and list without panicking.
pub fn isa_decode(data: &[u8]) {
    let Ok(insns) = Insn::decode_program(data) else { return };
    for insn in insns {
        let again = Insn::decode(&insn.encode()).expect("an encoded instruction decodes");
        assert_eq!(again, insn, "decode ∘ encode is not the identity");
        let _ = insn.to_string();
    }
}

/// A random valid model on a sample of every executor; they must all agree.
pub fn differential(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let seed = u.arbitrary::<u16>().unwrap_or(0) as u64;
    let plan_choice = u.arbitrary::<u8>().unwrap_or(0) as u64;
    let model = random_model::random_model(u.take_rest());
    if let Err(f) = differential::check(&model.source, seed, &differential::Plan::sampled(plan_choice)) {
        panic!("{f}");
    }
}
