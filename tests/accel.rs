//! The accelerator against the interpreter (exactly for int8, within float tolerance for f32
//! and bf16), its cycle model on hand-computable cases, and its configuration errors.

mod common;

use assert_cmd::Command;
use nnc::accel::{self, AccelConfig};
use nnc::driver::{build_graph, Source};
use nnc::ir::Graph;
use nnc::{interp, passes, weights};
use nnc_runtime::Tensor;
use rand::{RngExt, SeedableRng};

fn random_inputs(graph: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    graph.inputs.iter().map(|&id| {
        let ty = &graph.node(id).ty;
        Tensor::f32(ty.shape.clone(), (0..ty.numel()).map(|_| rng.random_range(-1.0f32..1.0)).collect())
    }).collect()
}

fn bound(graph: &Graph, seed: u64) -> Graph {
    let mut g = graph.clone();
    weights::bind_weights(&mut g, weights::random_weights(graph, seed), "random").unwrap();
    g
}

/// Optimize for the accelerator (quantizing on `calibration` if given).
fn optimized(graph: &Graph, level: u8, calibration: Option<&passes::Calibration>) -> Graph {
    let mut g = graph.clone();
    passes::optimize_with(&mut g, level, &passes::PassContext { cpu: None, quantize: calibration, bf16: false, prune: None }, true, &mut |_, _| {}).unwrap();
    g
}

fn accel_outputs(graph: &Graph, config: &AccelConfig, inputs: &[Tensor]) -> (Vec<Tensor>, accel::Outcome) {
    let program = accel::lower(graph, config).unwrap_or_else(|e| panic!("{e}"));
    let outcome = accel::run(&program, inputs).unwrap();
    (outcome.outputs.clone(), outcome)
}

fn config(preset: &str, sets: &[(&str, &str)]) -> AccelConfig {
    let mut c = AccelConfig::preset(preset).unwrap();
    for (k, v) in sets {
        c.set(k, v).unwrap();
    }
    c.validate().unwrap();
    c
}

const EXAMPLES: &[&str] = &["lenet5", "mlp", "lstm", "transformer", "mobilenet_v2"];

#[test]
fn float_examples_match_the_interpreter() {
    for name in EXAMPLES {
        let g = bound(&common::graph_from_file(&common::repo().join(format!("examples/{name}.nn"))), 1);
        let inputs = random_inputs(&g, 2);
        let want = interp::run(&g, &inputs).unwrap();
        let opt = optimized(&g, 2, None);
        for c in [config("edge", &[]), config("edge", &[("rows", "8"), ("cols", "4"), ("dataflow", "\"os\"")])] {
            let (got, _) = accel_outputs(&opt, &c, &inputs);
            if let Some(e) = common::compare(&got, &want, 1e-4) {
                panic!("{name} on {}x{} {:?}: {e}", c.rows, c.cols, c.dataflow);
            }
        }
    }
}

#[test]
fn int8_examples_match_the_interpreter_on_the_quantized_graph_exactly() {
    for name in EXAMPLES {
        let g = bound(&common::graph_from_file(&common::repo().join(format!("examples/{name}.nn"))), 1);
        let calibration = passes::Calibration::new(vec![random_inputs(&g, 10), random_inputs(&g, 11)]);
        let q = optimized(&g, 2, Some(&calibration));
        let inputs = random_inputs(&g, 3);
        let want = interp::run(&q, &inputs).unwrap();
        for c in [config("gemmini", &[]), config("gemmini", &[("dataflow", "\"os\""), ("rows", "4"), ("cols", "8"), ("scratchpad_kib", "4"), ("accumulator_kib", "2")])] {
            let (got, _) = accel_outputs(&q, &c, &inputs);
            assert_eq!(got, want, "{name} on {}x{} {:?}", c.rows, c.cols, c.dataflow);
        }
    }
}

/// ResNet-18 on tpu-v1, int8, bit for bit: the acceptance case. Too slow for a
/// debug build (1.8 G MACs interpreted twice); run it with
/// `cargo test --release --test accel -- --ignored`.
#[test]
#[ignore]
fn resnet18_int8_on_tpu_v1_matches_the_interpreter_exactly() {
    let g = bound(&common::graph_from_file(&common::repo().join("examples/resnet18.nn")), 1);
    let calibration = passes::Calibration::new(vec![random_inputs(&g, 10)]);
    let q = optimized(&g, 2, Some(&calibration));
    let inputs = random_inputs(&g, 3);
    let (got, _) = accel_outputs(&q, &config("tpu-v1", &[]), &inputs);
    assert_eq!(got, interp::run(&q, &inputs).unwrap());
}

/// ResNet-18 with its structure intact (stem, four stages of two blocks, strided 3×3
/// convolutions with 1×1 projection shortcuts, every batch norm and residual add, pooling,
/// fc) but 4× fewer channels, a 64×64 image and 10 classes: seconds instead of minutes.
fn reduced_resnet18() -> Graph {
    let text = std::fs::read_to_string(common::repo().join("examples/resnet18.nn")).unwrap();
    let reduced = text
        .replace("f32[1, 3, 224, 224]", "f32[1, 3, 64, 64]")
        .replace("filters=64", "filters=16")
        .replace(", 64, name=", ", 16, name=")
        .replace(", 128, name=", ", 32, name=")
        .replace(", 256, name=", ", 64, name=")
        .replace(", 512, name=", ", 128, name=")
        .replace("units=1000", "units=10");
    let reduced = build_graph(&Source::from_string("resnet18_reduced.nn", reduced), None, &Default::default()).unwrap();
    // The same ops in the same order, with the same parameter names, as the full model.
    let full = common::graph_from_file(&common::repo().join("examples/resnet18.nn"));
    let ops = |g: &Graph| -> Vec<String> { g.topo_order().into_iter().map(|id| format!("{} {}", g.node(id).name, g.node(id).op().map_or("-", |o| o.name()))).collect() };
    assert_eq!(ops(&reduced), ops(&full), "the reduced ResNet-18 is structurally the full one");
    assert_eq!(reduced.node(reduced.outputs[0].1).ty.shape, vec![1, 10]);
    reduced
}

/// The reduced ResNet-18 on the accelerator: f32 against the interpreter on two arrays and
/// both dataflows, int8 bit for bit on tpu-v1 and on a small output-stationary Gemmini.
#[test]
fn reduced_resnet18_runs_on_the_accelerator_in_f32_and_int8() {
    let g = bound(&reduced_resnet18(), 1);
    let inputs = random_inputs(&g, 2);
    let want = interp::run(&g, &inputs).unwrap();
    let opt = optimized(&g, 2, None);
    for c in [config("edge", &[]), config("edge", &[("rows", "8"), ("cols", "8"), ("dataflow", "\"os\""), ("scratchpad_kib", "16"), ("accumulator_kib", "8")])] {
        let program = accel::lower(&opt, &c).unwrap();
        let outcome = accel::run(&program, &inputs).unwrap();
        assert_eq!(common::compare(&outcome.outputs, &want, 1e-4), None, "{}x{} {:?}", c.rows, c.cols, c.dataflow);
        // All 20 convolutions (batch norms folded in) and the fc run on the array.
        let report = accel::report::json_report(&program, &outcome.timing);
        let on_array = |prefix: &str| report["layers"].as_array().unwrap().iter().filter(|l| l["op"].as_str().unwrap().starts_with(prefix) && l["unit"] == "array").count();
        assert_eq!((on_array("conv2d"), on_array("dense")), (20, 1), "{}", report["layers"]);
    }
    let calibration = passes::Calibration::new(vec![random_inputs(&g, 10), random_inputs(&g, 11)]);
    let q = optimized(&g, 2, Some(&calibration));
    let want = interp::run(&q, &inputs).unwrap();
    for c in [config("tpu-v1", &[]), config("gemmini", &[("dataflow", "\"os\""), ("rows", "4"), ("cols", "8"), ("scratchpad_kib", "8"), ("accumulator_kib", "4")])] {
        let (got, _) = accel_outputs(&q, &c, &inputs);
        assert_eq!(got, want, "int8 on {}x{} {:?}", c.rows, c.cols, c.dataflow);
    }
}

/// bf16 on the array rounds both operands of every product to 8 significant bits (unit
/// roundoff u = 2⁻⁸) and accumulates in f32. For one output y = Σₖ aₖbₖ (+ bias) that gives
/// |Δy| ≤ ((1 + u)² − 1)·Σₖ|aₖ||bₖ| from the operands, plus at most k·2⁻²⁴·Σₖ|aₖ||bₖ| from
/// each side's f32 summation: a bound per element, from the reduction length k and the
/// magnitudes, that the test computes by running the same layer on |x| with |W| and no bias.
#[test]
fn bf16_products_stay_within_the_bound_of_bf16_rounding() {
    let u = 2f32.powi(-8);
    // LeNet-5's three product shapes: the 5×5 convolutions (k = 25, 150) and fc5 (k = 400).
    for (layer, input, k) in [
        ("conv2d(x, filters=6, kernel=5, padding=2)", "f32[1, 1, 28, 28]", 25),
        ("conv2d(x, filters=16, kernel=5)", "f32[1, 6, 14, 14]", 150),
        ("dense(x, units=120)", "f32[3, 400]", 400),
    ] {
        let src = format!("model p {{\n input x: {input}\n output y = {layer}\n}}\n");
        let graph = build_graph(&Source::from_string("p.nn", src), None, &Default::default()).unwrap();
        let drawn = weights::random_weights(&graph, 1);
        let mut g = graph.clone();
        weights::bind_weights(&mut g, weights::random_weights(&graph, 1), "random").unwrap();
        // The magnitude layer: |W|, zero bias, applied to |x|.
        let mut magnitudes = drawn;
        for (name, t) in magnitudes.tensors.iter_mut() {
            let v = t.to_f32_vec().iter().map(|x| if name.ends_with("bias") { 0.0 } else { x.abs() }).collect();
            *t = Tensor::f32(t.shape().to_vec(), v);
        }
        let mut m = graph.clone();
        weights::bind_weights(&mut m, magnitudes, "random").unwrap();
        let inputs = random_inputs(&g, 2);
        let abs_inputs: Vec<Tensor> = inputs.iter().map(|t| Tensor::f32(t.shape().to_vec(), t.to_f32_vec().iter().map(|x| x.abs()).collect())).collect();
        let want = interp::run(&g, &inputs).unwrap()[0].to_f32_vec();
        let sum_abs = interp::run(&m, &abs_inputs).unwrap()[0].to_f32_vec();
        let per_unit = (1.0 + u) * (1.0 + u) - 1.0 + 2.0 * k as f32 * 2f32.powi(-24);
        for dataflow in ["\"ws\"", "\"os\""] {
            let (got, _) = accel_outputs(&optimized(&g, 2, None), &config("edge", &[("dtype", "\"bf16\""), ("dataflow", dataflow)]), &inputs);
            let got = got[0].to_f32_vec();
            let mut tightest = 0f32;
            for (i, ((a, b), s)) in got.iter().zip(&want).zip(&sum_abs).enumerate() {
                let bound = per_unit * s;
                assert!((a - b).abs() <= bound, "{layer} {dataflow} element {i}: {a} vs {b}, bound {bound}");
                tightest = tightest.max((a - b).abs() / bound);
            }
            // The bound is not vacuous: some element uses a good part of it, and bf16 rounding
            // is far above f32's.
            assert!(tightest > 0.05, "{layer} {dataflow}: errors use at most {tightest} of the bound");
            assert!(common::compare(&[Tensor::f32(vec![got.len()], got)], &[Tensor::f32(vec![want.len()], want.clone())], 1e-5).is_some(), "bf16 rounding must be visible");
        }
    }
}

/// A one-dense-layer model: C[m × n] = x[m × k] · W[k × n], no bias.
fn dense_cycles(m: usize, k: usize, n: usize, sets: &[(&str, &str)]) -> u64 {
    let src = format!("model d {{\n  input x: f32[{m}, {k}]\n  output y = dense(x, units={n}, bias=false)\n}}\n");
    let g = bound(&build_graph(&Source::from_string("d.nn", src), None, &Default::default()).unwrap(), 1);
    let opt = optimized(&g, 0, None);
    let mut all = vec![("memory", "\"ideal\""), ("fold_overlap", "false"), ("rows", "8"), ("cols", "4")];
    all.extend_from_slice(sets);
    let c = config("edge", &all);
    let inputs = random_inputs(&g, 1);
    let (got, outcome) = accel_outputs(&opt, &c, &inputs);
    assert!(common::compare(&got, &interp::run(&g, &inputs).unwrap(), 1e-5).is_none());
    outcome.timing.layer_cycles[0]
}

/// Event counts and energy of one weight-stationary fold, by hand: x[20×8]·W[8×4] in f32.
#[test]
fn energy_events_of_one_fold() {
    let src = "model d {\n  input x: f32[20, 8]\n  output y = dense(x, units=4, bias=false)\n}\n";
    let g = bound(&build_graph(&Source::from_string("d.nn", src), None, &Default::default()).unwrap(), 1);
    let c = config("edge", &[("rows", "8"), ("cols", "4")]);
    let program = accel::lower(&optimized(&g, 0, None), &c).unwrap();
    let o = accel::run(&program, &random_inputs(&g, 1)).unwrap();
    let e = &o.timing.counters;
    assert_eq!(e.macs, 20 * 8 * 4);
    // DRAM: A and B in, C out, 4 bytes each.
    assert_eq!((e.dram_read, e.dram_written), ((20 * 8 + 8 * 4) * 4, 20 * 4 * 4));
    // Scratchpad: A and B written by DMA, B read by the preload, A read by the stream.
    assert_eq!(e.spad_bytes, (20 * 8 + 8 * 4 + 8 * 4 + 20 * 8) * 4);
    // Accumulators: each sum written once (no accumulate), then read by the store.
    assert_eq!(e.acc_bytes, 2 * 20 * 4 * 4);
    let pj = e.energy(&c.energy);
    let want = 640.0 * 4.6 + 1536.0 * 2.5 + 640.0 * 2.5 + 1088.0 * 162.5;
    assert!((pj.total - want).abs() < 1e-6 * want, "{} vs {want}", pj.total);
}

#[test]
fn cycle_counts_of_hand_computable_cases() {
    let (r, c) = (8u64, 4u64);
    // Weight-stationary, one fold: 2 loads (1 issue cycle each), preload R, compute
    // M + R + C − 2, store 1. The array's instructions have no issue cycle, so a fold is
    // SCALE-Sim's 2R + C + M − 2.
    let m = 20;
    assert_eq!(dense_cycles(20, 8, 4, &[("dataflow", "\"ws\"")]), 2 + (2 * r + c + m - 2) + 1);
    // Four folds (k = 2R, n = 2C), strictly one after another.
    assert_eq!(dense_cycles(20, 16, 8, &[("dataflow", "\"ws\"")]), 2 + 4 * (2 * r + c + m - 2) + 1);
    // The same with fold overlap: weights preload behind the previous fold and the skew is
    // paid once: R + (M + R + C − 2), then three times M.
    assert_eq!(dense_cycles(20, 16, 8, &[("dataflow", "\"ws\""), ("fold_overlap", "true")]), 2 + r + (m + r + c - 2) + 3 * m + 1);
    // Output-stationary, one fold (M ≤ R, N ≤ C): compute K + R + C − 2.
    let k = 30;
    assert_eq!(dense_cycles(8, 30, 4, &[("dataflow", "\"os\"")]), 2 + (k + r + c - 2) + 1);
    // Three row folds by two column folds.
    assert_eq!(dense_cycles(24, 30, 8, &[("dataflow", "\"os\"")]), 2 + 6 * (k + r + c - 2) + 1);
}

/// The TPU v1 roofline at a scale a debug build simulates quickly: a 32x32 array with DRAM
/// at 16 bytes per cycle, so the ridge is 32·32 / 16 = 64 MACs per weight byte (the full
/// preset's is 65536 / 48.6 ≈ 1350), and DRAM, not the array's 32 B/cycle weight shift,
/// is what starves it at small batch, as in the TPU.
#[test]
fn tpu_roofline_memory_bound_dense_compute_bound_conv() {
    let tpu = config("tpu-v1", &[("rows", "32"), ("cols", "32"), ("dram_gbps", "11.2")]);
    // (array cycles, MACs, DRAM bytes) of the first layer of each model.
    let first_layer = |src: &str| {
        let g = bound(&build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap(), 1);
        let cal = passes::Calibration::new(vec![random_inputs(&g, 1)]);
        let q = optimized(&g, 2, Some(&cal));
        let program = accel::lower(&q, &tpu).unwrap();
        let outcome = accel::run(&program, &random_inputs(&g, 2)).unwrap();
        let l = program.layers.iter().position(|l| l.unit == accel::lower::Unit::Array).unwrap();
        let c = &outcome.timing.layer_counters[l];
        (outcome.timing.layer_cycles[l] as f64, program.layers[l].macs as f64, (c.dram_read + c.dram_written) as f64)
    };
    let dense = |batch: usize| format!("model d {{\n  input x: f32[{batch}, 512]\n  h = relu(dense(x, units=512))\n  output y = dense(h, units=4)\n}}\n");
    let peak = 32.0 * 32.0;
    let bpc = tpu.dram_bytes_per_cycle();
    // Batch 1: one MAC per weight byte, far below the ridge: the weights' DRAM time is the time.
    let (cycles, macs, dram) = first_layer(&dense(1));
    assert!(cycles >= dram / bpc && cycles < 1.2 * dram / bpc, "batch 1: {cycles} cycles for {dram} DRAM bytes");
    assert!(macs / (cycles * peak) < 0.05);
    // Batch 256: 256 MACs per weight byte, far above it: the array is busy.
    let (cycles, macs, _) = first_layer(&dense(256));
    assert!(macs / (cycles * peak) > 0.8, "batch 256 utilization {}", macs / (cycles * peak));
    // A convolution reuses each weight Ho·Wo times: bound by the array, not by DRAM.
    let (cycles, _, dram) = first_layer("model c {\n  input x: f32[1, 32, 28, 28]\n  h = relu(conv2d(x, filters=32, kernel=3, padding=1))\n  output y = conv2d(h, filters=4, kernel=1)\n}\n");
    assert!(dram / bpc < 0.1 * cycles, "conv: {dram} DRAM bytes in {cycles} cycles");
}

fn nnc() -> Command {
    Command::cargo_bin("nnc").unwrap()
}

#[test]
fn sim_prints_a_report_and_writes_json_and_trace() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let trace = dir.path().join("t.json");
    let out = nnc()
        .args(["sim", "examples/lenet5.nn", "--random-weights", "1", "--input", "image=random:1", "--report"])
        .arg(&report)
        .arg("--trace")
        .arg(&trace)
        .current_dir(common::repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("accelerator: edge") && text.contains("c1") && text.contains("total:"), "{text}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for key in ["config", "total_cycles", "compute_cycles", "stall_cycles", "utilization", "macs", "dram_bytes_read", "dram_bytes_written", "energy_pj", "latency_us", "instructions", "layers"] {
        assert!(r.get(key).is_some(), "report lacks {key}");
    }
    let e = &r["energy_pj"];
    let parts: f64 = ["mac", "vector", "scratchpad", "accumulator", "dram"].iter().map(|k| e[k].as_f64().unwrap()).sum();
    assert!((parts - e["total"].as_f64().unwrap()).abs() < 1e-6 * parts);
    assert_eq!(r["total_cycles"].as_u64().unwrap(), r["compute_cycles"].as_u64().unwrap() + r["stall_cycles"].as_u64().unwrap());
    let t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    assert_eq!(t["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X").count() as u64, r["instructions"].as_u64().unwrap());
}

/// The acceptance command, on LeNet-5 so that a debug build runs it quickly: `nnc
/// sim` without `--input` simulates seeded random data, and its outputs are the
/// interpreter's on the quantized graph, bit for bit.
#[test]
fn sim_without_inputs_matches_the_interpreter_on_the_quantized_graph() {
    let dir = tempfile::tempdir().unwrap();
    let sim = nnc().args(["sim", "examples/lenet5.nn", "--random-weights", "1", "--quantize", "int8", "--config", "tpu-v1", "--output-dir"]).arg(dir.path().join("accel")).current_dir(common::repo()).output().unwrap();
    assert!(sim.status.success(), "{}", String::from_utf8_lossy(&sim.stderr));
    assert!(String::from_utf8_lossy(&sim.stderr).contains("using seeded random data (`random:0`)"));
    assert!(String::from_utf8_lossy(&sim.stdout).contains("total:"));
    let interp = nnc().args(["run", "examples/lenet5.nn", "--random-weights", "1", "--quantize", "int8", "--backend", "interp", "--input", "image=random:0", "--output-dir"]).arg(dir.path().join("interp")).current_dir(common::repo()).output().unwrap();
    assert!(interp.status.success(), "{}", String::from_utf8_lossy(&interp.stderr));
    assert_eq!(std::fs::read(dir.path().join("accel/logits.npy")).unwrap(), std::fs::read(dir.path().join("interp/logits.npy")).unwrap());
}

#[test]
fn emit_isa_lists_the_program() {
    let out = nnc().args(["compile", "examples/mlp.nn", "--emit", "isa", "--quantize", "int8", "--config", "gemmini"]).current_dir(common::repo()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for word in ["load.spad", "preload", "compute", "store", "[push_next]", "requantize to i8"] {
        assert!(text.contains(word), "listing lacks {word}:\n{text}");
    }
}

#[test]
fn configuration_errors_are_diagnosed() {
    let toml_dir = tempfile::tempdir().unwrap();
    let bad_key = toml_dir.path().join("bad.toml");
    std::fs::write(&bad_key, "rows = 8\nwarp_drive = true\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--set".into(), "rows=0".into()], "at least one row"),
        (vec!["--config".into(), "tpu-v1".into(), "--set".into(), "scratchpad_kib=64".into()], "cannot hold one double-buffered 256x256 tile"),
        (vec!["--config".into(), "tpu-v2".into()], "unknown accelerator preset `tpu-v2`"),
        (vec!["--set".into(), "colour=3".into()], "unknown configuration key `colour`"),
        (vec!["--config".into(), bad_key.display().to_string()], "warp_drive"),
        (vec!["--config".into(), "gemmini".into()], "quantize the model with `--quantize int8`"),
        (vec!["--set".into(), "clock_mhz=1e300".into()], "clock_mhz must be between"),
        (vec!["--set".into(), "scratchpad_kib=18014398509481984".into()], "above 1 GiB"),
        (vec!["--set".into(), "dram_latency_cycles=9000000000000000000".into()], "dram_latency_cycles must be at most"),
        (vec!["--set".into(), "dram_gbps=0".into()], "dram_gbps must be between"),
    ];
    for (extra, message) in cases {
        let out = nnc().args(["sim", "examples/mlp.nn", "--random-weights", "1", "--input", "x=random:1"]).args(&extra).current_dir(common::repo()).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = nnc().args(["sim", "examples/mlp.nn", "--array", "0x4"]).current_dir(common::repo()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a zero array size is a usage error");
}

/// A tall output-stationary array with a scratchpad that holds little more than two folds:
/// the tiles must still fit, and the results still match.
#[test]
fn tall_output_stationary_array_with_a_tight_scratchpad() {
    let g = bound(&common::graph_from_file(&common::repo().join("examples/lenet5.nn")), 1);
    let inputs = random_inputs(&g, 2);
    let want = interp::run(&g, &inputs).unwrap();
    let c = config("edge", &[("rows", "64"), ("cols", "2"), ("dataflow", "\"os\""), ("scratchpad_kib", "2"), ("accumulator_kib", "1")]);
    let (got, _) = accel_outputs(&optimized(&g, 2, None), &c, &inputs);
    assert!(common::compare(&got, &want, 1e-4).is_none(), "{:?}", common::compare(&got, &want, 1e-4));
}

/// Calibration data at the edges of f32 (denormal and huge) still gives valid scales.
#[test]
fn extreme_calibration_ranges_give_valid_scales() {
    let g = bound(&common::graph_from_file(&common::repo().join("examples/mlp.nn")), 1);
    for v in [1e-44f32, 3e38] {
        let run: Vec<Tensor> = g.inputs.iter().map(|&i| { let ty = &g.node(i).ty; Tensor::f32(ty.shape.clone(), vec![v; ty.numel()]) }).collect();
        let q = optimized(&g, 2, Some(&passes::Calibration::new(vec![run])));
        let inputs = random_inputs(&g, 3);
        let (got, _) = accel_outputs(&q, &config("gemmini", &[]), &inputs);
        assert_eq!(got, interp::run(&q, &inputs).unwrap());
    }
}

/// fp32 against int8 top-1 accuracy on the trained digits model: calibrate on the first 60
/// test images, score the other 300.
#[test]
fn int8_digits_keep_their_accuracy() {
    let root = common::repo().join("examples/digits");
    let x = nnc_runtime::npy::read_npy(&root.join("test_x.npy")).unwrap().tensor.to_f32_vec();
    let y = std::fs::read(root.join("test_y.npy")).unwrap();
    let labels: Vec<i64> = nnc_runtime::npy::read_npy(&root.join("test_y.npy")).map(|a| a.tensor.to_f32_vec().iter().map(|&v| v as i64).collect()).unwrap_or_else(|_| {
        // int64 labels: the last 360 × 8 bytes of the file.
        y[y.len() - 360 * 8..].chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
    });
    let src = Source::read(&root.join("digits.nn")).unwrap();
    let mut dims = nnc::elaborate::DimBindings::new();
    dims.insert("N".into(), 1);
    let mut g = build_graph(&src, None, &dims).unwrap();
    weights::bind_weights(&mut g, nnc_runtime::weights::read_safetensors(&root.join("digits.safetensors")).unwrap(), "w").unwrap();
    let image = |i: usize| vec![Tensor::f32(vec![1, 64], x[i * 64..][..64].to_vec())];
    let calibration = passes::Calibration::new((0..60).map(image).collect());
    let float = optimized(&g, 2, None);
    let q = optimized(&g, 2, Some(&calibration));
    let argmax = |t: &Tensor| t.to_f32_vec().iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as i64;
    let (mut f_ok, mut q_ok) = (0, 0);
    let program = accel::lower(&q, &config("gemmini", &[])).unwrap();
    for i in 60..360 {
        f_ok += (argmax(&interp::run(&float, &image(i)).unwrap()[0]) == labels[i]) as usize;
        let q_out = interp::run(&q, &image(i)).unwrap();
        assert_eq!(accel::run(&program, &image(i)).unwrap().outputs, q_out);
        q_ok += (argmax(&q_out[0]) == labels[i]) as usize;
    }
    eprintln!("digits top-1 on 300 test images: fp32 {f_ok}/300, int8 {q_ok}/300");
    assert!(f_ok >= 285, "fp32 accuracy {f_ok}/300");
    assert!(q_ok + 3 >= f_ok, "int8 {q_ok}/300 against fp32 {f_ok}/300");
}

/// Block-pruned models: the folds whose weights are all zero are skipped (whole tiles not
/// even loaded), the outputs stay the interpreter's (exactly in int8), timing alone gives
/// the same cycles, and skipping takes fewer cycles and DRAM reads than running every fold. A convolution with bias, a residual-free
/// two-conv stack and a dense layer, on small arrays where blocks match folds, ws and os.
#[test]
fn zero_weight_folds_are_skipped_without_changing_results() {
    let src = "model p {\n  input x: f32[1, 8, 10, 10]\n  h = relu(conv2d(x, filters=16, kernel=3, padding=1))\n  g = relu(conv2d(h, filters=16, kernel=3, padding=1, groups=2))\n  output y = dense(flatten(g), units=24)\n}\n";
    let g = bound(&build_graph(&Source::from_string("p.nn", src.to_string()), None, &Default::default()).unwrap(), 5);
    let inputs = random_inputs(&g, 2);
    let want_f32 = interp::run(&g, &inputs).unwrap();
    let mut tiles_left_out = 0;
    for dataflow in ["\"ws\"", "\"os\""] {
        for int8 in [false, true] {
            let mut pruned = g.clone();
            let opts = passes::prune::PruneOptions { specs: vec![passes::prune::PruneSpec::Blocks { fraction: 0.6, block: Some((4, 4)) }], skip: Vec::new() };
            passes::prune::prune(&mut pruned, &opts).unwrap();
            let calibration = passes::Calibration::new(vec![inputs.clone()]);
            let q = optimized(&pruned, 2, int8.then_some(&calibration));
            let dtype = if int8 { "\"int8\"" } else { "\"f32\"" };
            let sets = [("rows", "4"), ("cols", "4"), ("dataflow", dataflow), ("dtype", dtype), ("scratchpad_kib", "2"), ("accumulator_kib", "1")];
            let (got, outcome) = accel_outputs(&q, &config("edge", &sets), &inputs);
            let want = interp::run(&q, &inputs).unwrap();
            if int8 {
                assert_eq!(got, want, "{dataflow} int8");
            } else {
                assert_eq!(common::compare(&got, &want, 1e-4), None, "{dataflow} f32");
                // Pruning changed the model: it no longer computes the unpruned outputs.
                assert!(common::compare(&got, &want_f32, 1e-4).is_some());
            }
            let program = accel::lower(&q, &config("edge", &sets)).unwrap();
            let skipped: u64 = program.layers.iter().map(|l| l.skipped_folds).sum();
            assert!(skipped > 0, "{dataflow} int8={int8}: nothing skipped");
            let shared = std::sync::Arc::new(q.clone());
            assert_eq!(accel::time(&accel::lower_for_timing(&shared, &config("edge", &sets)).unwrap()).unwrap(), outcome.timing);
            let mut all = sets.to_vec();
            all.push(("skip_zero_weights", "false"));
            let (every, slow) = accel_outputs(&q, &config("edge", &all), &inputs);
            assert_eq!(common::compare(&every, &got, 1e-4), None);
            assert!(slow.timing.total_cycles > outcome.timing.total_cycles, "{dataflow} int8={int8}: {} vs {}", slow.timing.total_cycles, outcome.timing.total_cycles);
            // Tiles inside a reduction whose weights are all zero are not even loaded.
            let tiles: u64 = program.layers.iter().map(|l| l.skipped_tiles).sum();
            if tiles > 0 {
                assert!(slow.timing.counters.dram_read > outcome.timing.counters.dram_read, "{dataflow} int8={int8}");
            }
            tiles_left_out += tiles;
        }
    }
    assert!(tiles_left_out > 0, "no tile left out in any configuration");
}
