//! ONNX import (SPEC §7): the fixtures `scripts/onnx_fixtures.py` wrote, with ONNX Runtime's
//! outputs, imported and run on every backend; the written `.nn` is the same model; bad files
//! are clear errors.

mod common;

use assert_cmd::Command;
use common::repo;
use nnc::onnx::proto;
use nnc_runtime::npy::read_npy;
use prost::Message;
use std::path::{Path, PathBuf};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn nnc(args: &[&str]) -> Out {
    let o = Command::cargo_bin("nnc").unwrap().current_dir(repo()).env("NO_COLOR", "1").args(args).output().unwrap();
    let out = Out { code: o.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() };
    assert!(!out.stderr.contains("panicked"), "nnc panicked on {args:?}:\n{}", out.stderr);
    out
}

fn fixture(name: &str) -> String {
    format!("tests/fixtures/onnx/{name}")
}

/// `(fixture, input names, output names, extra flags)`.
const FIXTURES: &[(&str, &[&str], &[&str], &[&str])] = &[
    ("resnet_block", &["image"], &["logits"], &[]),
    ("transformer_layer", &["x"], &["y"], &[]),
    ("transformer_layer_opset18", &["x"], &["y"], &[]),
    ("small_ops", &["image"], &["scores"], &[]),
    ("opset20_ops", &["x"], &["gram"], &[]),
    ("lstm", &["x"], &["y", "h_n"], &[]),
    ("mlp_opset11", &["x"], &["logits"], &["--dim", "batch=3"]),
    ("attention_opset23", &["x"], &["y"], &[]),
];

fn run_fixture(name: &str, inputs: &[&str], flags: &[&str], backend: &str, out_dir: &Path) {
    let file = fixture(&format!("{name}.onnx"));
    let mut args: Vec<String> = vec!["run".into(), file, "--backend".into(), backend.into(), "--output-dir".into(), out_dir.to_str().unwrap().into()];
    for (k, input) in inputs.iter().enumerate() {
        args.push("--input".into());
        args.push(format!("{input}={}", fixture(&format!("{name}.in.{k}.npy"))));
    }
    args.extend(flags.iter().map(|f| f.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = nnc(&refs);
    assert_eq!(o.code, 0, "{name} on {backend}: {}", o.stderr);
}

fn read(path: &Path) -> Vec<f32> {
    read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).tensor.to_f32_vec()
}

#[test]
fn every_fixture_matches_onnx_runtime_on_the_interpreter_and_the_jit() {
    let dir = tempfile::tempdir().unwrap();
    for (name, inputs, outputs, flags) in FIXTURES {
        for backend in ["interp", "jit"] {
            let out = dir.path().join(format!("{name}-{backend}"));
            run_fixture(name, inputs, flags, backend, &out);
            for (k, output) in outputs.iter().enumerate() {
                let got = read(&out.join(format!("{output}.npy")));
                let want = read(&repo().join(fixture(&format!("{name}.out.{k}.npy"))));
                assert_eq!(got.len(), want.len(), "{name} {output}");
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{name} on {backend}: {output}[{i}] = {g}, ONNX Runtime {w}");
                }
            }
        }
    }
}

#[test]
fn the_accelerator_runs_imported_models_too() {
    let dir = tempfile::tempdir().unwrap();
    for (name, inputs, outputs, flags) in FIXTURES.iter().filter(|f| ["resnet_block", "small_ops", "mlp_opset11"].contains(&f.0)) {
        let out = dir.path().join(name);
        run_fixture(name, inputs, flags, "accel", &out);
        let got = read(&out.join(format!("{}.npy", outputs[0])));
        let want = read(&repo().join(fixture(&format!("{name}.out.0.npy"))));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-3 * (1.0 + w.abs()), "{name} on accel: {g} vs {w}");
        }
    }
}

#[test]
fn the_written_model_is_the_imported_model() {
    let dir = tempfile::tempdir().unwrap();
    for (name, inputs, outputs, flags) in FIXTURES {
        let written = dir.path().join(name);
        let mut args = vec!["import", &fixture(&format!("{name}.onnx"))].into_iter().map(String::from).collect::<Vec<_>>();
        args.extend(["--output-dir".into(), written.to_str().unwrap().into()]);
        args.extend(flags.iter().map(|f| f.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = nnc(&refs);
        assert_eq!(o.code, 0, "{name}: {}", o.stderr);
        assert!(o.stdout.contains(&format!("{name}.nn")), "{}", o.stdout);
        let nn = written.join(format!("{name}.nn"));
        let text = std::fs::read_to_string(&nn).unwrap();
        assert!(text.starts_with("# Imported by `nnc import`") && text.contains(&format!("model {name} {{")), "{text}");
        // Explicit parameters, one statement per op.
        assert!(text.lines().filter(|l| l.trim_start().starts_with("param ")).count() >= 1, "{text}");
        // The written source and weights run to the .onnx run's outputs bit for bit.
        let from_onnx = dir.path().join(format!("{name}-onnx"));
        run_fixture(name, inputs, flags, "jit", &from_onnx);
        let from_nn = dir.path().join(format!("{name}-nn"));
        let mut args: Vec<String> = vec!["run".into(), nn.to_str().unwrap().into(), "--weights".into(), written.join(format!("{name}.safetensors")).to_str().unwrap().into(), "--output-dir".into(), from_nn.to_str().unwrap().into()];
        for (k, input) in inputs.iter().enumerate() {
            args.extend(["--input".into(), format!("{input}={}", fixture(&format!("{name}.in.{k}.npy")))]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = nnc(&refs);
        assert_eq!(o.code, 0, "{name}: {}\n{text}", o.stderr);
        for output in *outputs {
            let (a, b) = (read(&from_onnx.join(format!("{output}.npy"))), read(&from_nn.join(format!("{output}.npy"))));
            assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{name} {output}");
        }
    }
}

#[test]
fn exporter_patterns_become_nnc_ops() {
    let dir = tempfile::tempdir().unwrap();
    let text = |name: &str| {
        let o = nnc(&["import", &fixture(&format!("{name}.onnx")), "--output-dir", dir.path().to_str().unwrap()]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        std::fs::read_to_string(dir.path().join(format!("{name}.nn"))).unwrap()
    };
    let t = text("transformer_layer");
    // MatMul+Add as dense, decomposed GELU and layer norm, shape subgraphs folded.
    assert_eq!(t.matches("= dense(").count(), 6, "{t}");
    assert_eq!(t.matches("= gelu(").count(), 1, "{t}");
    assert_eq!(t.matches("layer_norm(").count(), 2, "{t}");
    assert!(t.contains("reshape(self_attn_q_Add, [1, 8, 2, 16])"), "{t}");
    for gone in ["erf", "Shape", "Gather", "Concat", "ReduceMean", "pow"] {
        assert!(!t.contains(gone), "{gone} left in:\n{t}");
    }
    let s = text("small_ops");
    // Pad folded into the convolution, Clip(0, 6) as relu6, Gemm's alpha and beta in the weights.
    assert!(s.contains("conv_Conv = conv2d(image, conv_weight, conv_bias, stride=[1, 1], padding=[1, 1, 1, 1]"), "{s}");
    assert!(s.contains("relu6(") && !s.contains("clip("), "{s}");
    assert!(s.contains("dense(Flatten, head_weight_t, head_bias"), "{s}");
    // Opset 23's Attention as nnc's (causal; its scale applied to the queries), SiLU's
    // Sigmoid and Mul as one op.
    let a = text("attention_opset23");
    assert!(a.contains("attention(") && a.contains("causal=true") && a.contains("silu(") && !a.contains("sigmoid("), "{a}");
    let r = text("resnet_block");
    assert_eq!(r.matches("batch_norm(").count(), 4, "{r}");
    assert!(r.contains("param fc_weight: f32[10, 16]"), "{r}");
}

#[test]
fn every_command_takes_an_onnx_file() {
    let f = fixture("resnet_block.onnx");
    let o = nnc(&["check", &f]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (0, "", ""));
    let o = nnc(&["summary", &f]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("conv2d") && o.stdout.contains("dense"), "{}", o.stdout);
    let o = nnc(&["compile", &f, "--emit", "ir"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("kernel="), "{}", o.stdout);
    let o = nnc(&["sim", &f, "--input", "image=random:1", "--config", "gemmini", "--quantize", "int8"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    // Weights from a file replace the initializers: random ones give other logits.
    let (a, b) = (nnc(&["run", &f, "--input", "image=random:1"]), nnc(&["run", &f, "--input", "image=random:1", "--random-weights", "2"]));
    assert_eq!((a.code, b.code), (0, 0));
    assert_ne!(a.stdout, b.stdout);
}

#[test]
fn unsupported_operators_are_listed_in_one_error() {
    let o = nnc(&["run", &fixture("unsupported.onnx"), "--input", "x=random:1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("uses 3 operators that nnc does not import: HardSwish, ReduceMax, Resize"), "{}", o.stderr);
    assert!(o.stderr.contains("Resize: /up/Resize, /down/Resize"), "{}", o.stderr);
    assert!(o.stderr.contains("HardSwish: /HardSwish"), "{}", o.stderr);
    let o = nnc(&["import", &fixture("unsupported.onnx"), "--output-dir", "/tmp/never-written"]);
    assert_eq!(o.code, 1);
    assert!(!Path::new("/tmp/never-written/unsupported.nn").exists());
}

/// A minimal valid model (`y = relu(x)`, x: f32[1, 4]) to break in one way per case.
fn tiny(opset: i64) -> proto::ModelProto {
    let vi = |name: &str, dims: Vec<proto::Dimension>| proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto { tensor_type: Some(proto::TypeProtoTensor { elem_type: Some(1), shape: Some(proto::TensorShapeProto { dim: dims }) }) }),
    };
    let dim = |v: i64| proto::Dimension { dim_value: Some(v), dim_param: None };
    proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        producer_name: Some("test".into()),
        graph: Some(proto::GraphProto {
            node: vec![proto::NodeProto { input: vec!["x".into()], output: vec!["y".into()], name: Some("relu".into()), op_type: Some("Relu".into()), ..Default::default() }],
            name: Some("g".into()),
            input: vec![vi("x", vec![dim(1), dim(4)])],
            output: vec![vi("y", vec![])],
            ..Default::default()
        }),
    }
}

fn write_model(dir: &Path, name: &str, m: &proto::ModelProto) -> PathBuf {
    let p = dir.join(format!("{name}.onnx"));
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

#[test]
fn malformed_and_unusual_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let check = |path: &Path, extra: &[&str], want: &str| {
        let mut args = vec!["run", path.to_str().unwrap(), "--input", "x=random:1"];
        args.extend(extra);
        let o = nnc(&args);
        assert_eq!(o.code, 1, "{}: {}", path.display(), o.stderr);
        assert!(o.stderr.contains(want), "{}: want {want:?} in:\n{}", path.display(), o.stderr);
    };
    // The minimal model itself runs.
    let ok = write_model(d, "tiny", &tiny(13));
    assert_eq!(nnc(&["run", ok.to_str().unwrap(), "--input", "x=random:1"]).code, 0);
    // Not protobuf, truncated, empty.
    let garbage = d.join("garbage.onnx");
    std::fs::write(&garbage, b"\xff\xff\xff\xff not a model").unwrap();
    check(&garbage, &[], "is not a valid ONNX model");
    let bytes = std::fs::read(repo().join(fixture("resnet_block.onnx"))).unwrap();
    for cut in [7, 100, bytes.len() / 2, bytes.len() - 3] {
        let t = d.join(format!("cut{cut}.onnx"));
        std::fs::write(&t, &bytes[..cut]).unwrap();
        let o = nnc(&["check", t.to_str().unwrap()]);
        assert_eq!(o.code, 1, "cut at {cut}: {}", o.stderr);
    }
    let empty = d.join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    check(&empty, &[], "has no graph");
    // Opsets outside 11..=24.
    check(&write_model(d, "old", &tiny(9)), &[], "uses opset 9; nnc imports opsets 11 to 24");
    // A symbolic input size needs --dim, which then makes it work.
    let mut sym = tiny(13);
    sym.graph.as_mut().unwrap().input[0].r#type.as_mut().unwrap().tensor_type.as_mut().unwrap().shape.as_mut().unwrap().dim[0] = proto::Dimension { dim_value: None, dim_param: Some("batch".into()) };
    let sym = write_model(d, "sym", &sym);
    check(&sym, &[], "--dim batch=1");
    assert_eq!(nnc(&["run", sym.to_str().unwrap(), "--input", "x=random:1", "--dim", "batch=2"]).code, 0);
    // An integer input.
    let mut int_input = tiny(13);
    int_input.graph.as_mut().unwrap().input[0].r#type.as_mut().unwrap().tensor_type.as_mut().unwrap().elem_type = Some(7);
    check(&write_model(d, "int", &int_input), &[], "input `x` is int64");
    // An initializer kept in an external file, and one whose data is short.
    let mut ext = tiny(13);
    let g = ext.graph.as_mut().unwrap();
    g.initializer.push(proto::TensorProto { dims: vec![4], data_type: Some(1), name: Some("b".into()), data_location: Some(1), ..Default::default() });
    g.node.push(proto::NodeProto { input: vec!["y".into(), "b".into()], output: vec!["z".into()], op_type: Some("Add".into()), ..Default::default() });
    g.output[0].name = Some("z".into());
    check(&write_model(d, "ext", &ext), &[], "external file");
    let mut short = ext.clone();
    short.graph.as_mut().unwrap().initializer[0] = proto::TensorProto { dims: vec![4], data_type: Some(1), name: Some("b".into()), raw_data: Some(vec![0; 6]), ..Default::default() };
    check(&write_model(d, "short", &short), &[], "has 6 bytes of data, not 16");
    // An input nothing defines, and an op fed a value from later in the file.
    let mut missing = tiny(13);
    missing.graph.as_mut().unwrap().node[0].input[0] = "nowhere".into();
    check(&write_model(d, "missing", &missing), &[], "`nowhere` is used before anything defines it");
    // Shapes that do not fit an op are the op's own diagnostic, naming the node.
    let mut bad_matmul = tiny(13);
    let g = bad_matmul.graph.as_mut().unwrap();
    g.initializer.push(proto::TensorProto { dims: vec![3, 2], data_type: Some(1), name: Some("w".into()), float_data: vec![0.0; 6], ..Default::default() });
    g.node.push(proto::NodeProto { input: vec!["y".into(), "w".into()], output: vec!["z".into()], name: Some("mm".into()), op_type: Some("MatMul".into()), ..Default::default() });
    g.output[0].name = Some("z".into());
    check(&write_model(d, "badmm", &bad_matmul), &[], "node mm (MatMul)");
    // A node without outputs.
    let mut no_out = tiny(13);
    no_out.graph.as_mut().unwrap().node.push(proto::NodeProto { input: vec!["y".into()], name: Some("sink".into()), op_type: Some("Relu".into()), ..Default::default() });
    check(&write_model(d, "noout", &no_out), &[], "node sink (Relu) has no output");
    // Axes out of range for a scalar, windows on values that are not images.
    let mut flat = tiny(13);
    flat.graph.as_mut().unwrap().node[0] = proto::NodeProto { input: vec!["x".into()], output: vec!["y".into()], name: Some("pool".into()), op_type: Some("MaxPool".into()), attribute: vec![proto::AttributeProto { name: Some("kernel_shape".into()), ints: vec![2, 2], ..Default::default() }, proto::AttributeProto { name: Some("ceil_mode".into()), i: Some(1), ..Default::default() }], ..Default::default() };
    check(&write_model(d, "pool1d", &flat), &[], "2-D only");
    // Quantization nnc's symmetric int8 cannot express: uint8 activations.
    let mut uint8 = tiny(13);
    let g = uint8.graph.as_mut().unwrap();
    g.initializer.push(proto::TensorProto { dims: vec![], data_type: Some(1), name: Some("s".into()), float_data: vec![0.1], ..Default::default() });
    g.initializer.push(proto::TensorProto { dims: vec![], data_type: Some(2), name: Some("zp".into()), raw_data: Some(vec![0]), ..Default::default() });
    g.node.insert(0, proto::NodeProto { input: vec!["x".into(), "s".into(), "zp".into()], output: vec!["q".into()], name: Some("quant".into()), op_type: Some("QuantizeLinear".into()), ..Default::default() });
    g.node.insert(1, proto::NodeProto { input: vec!["q".into(), "s".into(), "zp".into()], output: vec!["xd".into()], op_type: Some("DequantizeLinear".into()), ..Default::default() });
    g.node[2].input[0] = "xd".into();
    check(&write_model(d, "uint8", &uint8), &[], "uint8 activations are not supported");
}

/// Every fixture with bytes flipped, dropped and repeated at deterministic places: importing
/// may fail, never panic (in process, so a panic fails the test with its message).
#[test]
fn mutated_models_never_crash_the_importer() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut imported = 0;
    for (name, ..) in FIXTURES {
        let bytes = std::fs::read(repo().join(fixture(&format!("{name}.onnx")))).unwrap();
        for _ in 0..150 {
            let mut b = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % b.len();
                match next() % 3 {
                    0 => b[at] ^= 1 << (next() % 8),
                    1 => {
                        b.remove(at);
                    }
                    _ => b[at] = (next() % 256) as u8,
                }
            }
            let dims: nnc::elaborate::DimBindings = [("batch".to_string(), 2)].into_iter().collect();
            if nnc::onnx::import(&b, name, &dims, "mutated.onnx").is_ok() {
                imported += 1;
            }
        }
    }
    // Some mutations land in weights and still import: the harness reaches the whole importer.
    assert!(imported > 50, "{imported}");
}

/// ONNX's `Flatten` counts a negative axis from the end: axis -1 of `[1, 2, 3, 4]` is
/// `[6, 4]`.
#[test]
fn flatten_takes_negative_axes_as_onnx_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = tiny(13);
    let g = m.graph.as_mut().unwrap();
    let dims = [1, 2, 3, 4].map(|v| proto::Dimension { dim_value: Some(v), dim_param: None });
    g.input[0].r#type.as_mut().unwrap().tensor_type.as_mut().unwrap().shape.as_mut().unwrap().dim = dims.to_vec();
    g.node[0] = proto::NodeProto { input: vec!["x".into()], output: vec!["y".into()], name: Some("flat".into()), op_type: Some("Flatten".into()), attribute: vec![proto::AttributeProto { name: Some("axis".into()), i: Some(-1), ..Default::default() }], ..Default::default() };
    let p = write_model(dir.path(), "flat", &m);
    let o = nnc(&["run", p.to_str().unwrap(), "--input", "x=random:1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("y: f32[6, 4]"), "{}", o.stdout);
}

#[test]
fn quantized_models_run_in_int8_with_their_own_scales() {
    let dir = tempfile::tempdir().unwrap();
    let want = read(&repo().join(fixture("qdq_cnn.out.0.npy")));
    let step = read(&repo().join(fixture("qdq_cnn.step.npy")))[0];
    let mut results = Vec::new();
    for (backend, extra) in [("interp", &[][..]), ("jit", &[][..]), ("accel", &["--config", "gemmini"][..])] {
        let out = dir.path().join(backend);
        let mut args = vec!["run", "tests/fixtures/onnx/qdq_cnn.onnx", "--backend", backend, "--input", "image=tests/fixtures/onnx/qdq_cnn.in.0.npy", "--output-dir", out.to_str().unwrap()];
        args.extend(extra);
        let o = nnc(&args);
        assert_eq!(o.code, 0, "{backend}: {}", o.stderr);
        // The model's scales are used: nothing is calibrated, so nothing warns about it.
        assert!(!o.stderr.contains("calibrate"), "{}", o.stderr);
        let got = read(&out.join("logits.npy"));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= step, "{backend}: logits[{i}] = {g}, ONNX Runtime {w}, one step {step}");
        }
        results.push(got);
    }
    // int8 is exact: every backend computes the same codes.
    assert_eq!(results[0], results[1]);
    assert_eq!(results[1], results[2]);
    let o = nnc(&["compile", "tests/fixtures/onnx/qdq_cnn.onnx", "--emit", "ir"]);
    assert!(o.stdout.contains("quantize(") && o.stdout.contains("i8["), "{}", o.stdout);
    // The written .nn is the float model, and import says so.
    let o = nnc(&["import", "tests/fixtures/onnx/qdq_cnn.onnx", "--output-dir", dir.path().join("w").to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("is quantized") && o.stderr.contains("--quantize int8"), "{}", o.stderr);
}
