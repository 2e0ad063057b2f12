//! The `nnc` command line as a user drives it: each command, each exit-code class (0 success,
//! 1 user error, 2 usage), real outputs checked by value.

mod common;

use assert_cmd::Command;
use common::repo;
use nnc_runtime::npy::read_npy;
use npyz::WriterBuilder;
use std::path::Path;

fn nnc() -> Command {
    let mut c = Command::cargo_bin("nnc").unwrap();
    c.current_dir(repo()).env("NO_COLOR", "1").timeout(std::time::Duration::from_secs(120));
    c
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Out {
    let o = nnc().args(args).output().unwrap();
    let out = Out { code: o.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() };
    assert!(!out.stderr.contains("panicked"), "nnc panicked on {args:?}:\n{}", out.stderr);
    out
}

const EXAMPLES: &[(&str, &str)] = &[
    ("examples/lenet5.nn", "image"),
    ("examples/mlp.nn", "x"),
    ("examples/resnet18.nn", "image"),
    ("examples/mobilenet_v2.nn", "image"),
    ("examples/transformer.nn", "x"),
    ("examples/lstm.nn", "x"),
];

#[test]
fn check_accepts_every_example_silently() {
    for (file, _) in EXAMPLES.iter().chain(&[("examples/digits/digits.nn", ""), ("examples/digits_cnn/digits_cnn.nn", "")]) {
        let o = run(&["check", file]);
        assert_eq!(o.code, 0, "{file}: {}", o.stderr);
        assert!(o.stdout.is_empty() && o.stderr.is_empty());
    }
}

#[test]
fn every_example_runs_with_random_weights_and_gives_finite_outputs() {
    let dir = tempfile::tempdir().unwrap();
    for (file, input) in EXAMPLES {
        let out_dir = dir.path().join(Path::new(file).file_stem().unwrap());
        let o = run(&["run", file, "--backend", "interp", "--random-weights", "1", "--input", &format!("{input}=random:7"), "--output-dir", out_dir.to_str().unwrap()]);
        assert_eq!(o.code, 0, "{file}: {}", o.stderr);
        let written: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
        assert_eq!(written.len(), 1, "{file}: one output file");
        let t = read_npy(&written[0].as_ref().unwrap().path()).unwrap().tensor;
        let v = t.to_f32_vec();
        assert!(v.iter().all(|x| x.is_finite()), "{file}: non-finite output");
        assert!(v.iter().any(|&x| x != 0.0), "{file}: all-zero output");
    }
}

#[test]
fn random_weights_and_inputs_are_deterministic() {
    let args = ["run", "examples/lenet5.nn", "--backend", "interp", "--random-weights", "3", "--input", "image=random:4"];
    let a = run(&args);
    let b = run(&args);
    assert_eq!(a.code, 0);
    assert_eq!(a.stdout, b.stdout);
    let c = run(&["run", "examples/lenet5.nn", "--backend", "interp", "--random-weights", "4", "--input", "image=random:4"]);
    assert_ne!(a.stdout, c.stdout, "another seed gives other weights");
}

#[test]
fn every_opt_level_gives_the_same_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for level in ["-O0", "-O1", "-O2", "-O3"] {
        let out = dir.path().join(level);
        let o = run(&["run", "examples/resnet18.nn", level, "--backend", "interp", "--random-weights", "1", "--input", "image=random:1", "--output-dir", out.to_str().unwrap()]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        results.push(read_npy(&out.join("logits.npy")).unwrap().tensor.to_f32_vec());
    }
    for r in &results[1..] {
        for (a, b) in r.iter().zip(&results[0]) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

#[test]
fn lenet5_with_weights_file_matches_onnx_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let fx = "tests/fixtures/lenet5_ort";
    let o = run(&["run", "examples/lenet5.nn", "--backend", "interp", "--weights", &format!("{fx}/weights.safetensors"), "--input", &format!("image={fx}/image.npy"), "--output-dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let got = read_npy(&dir.path().join("logits.npy")).unwrap().tensor;
    let want = read_npy(&repo().join(fx).join("expected/logits.npy")).unwrap().tensor;
    assert_eq!(common::compare(&[got], &[want], 1e-4), None);
}

#[test]
fn digits_example_reproduces_the_training_scripts_accuracy() {
    for backend in ["interp", "jit"] {
        digits_accuracy(backend);
    }
}

fn digits_accuracy(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = "examples/digits";
    let o = run(&["run", &format!("{d}/digits.nn"), "--backend", backend, "--weights", &format!("{d}/digits.safetensors"), "--input", &format!("x={d}/test_x.npy"), "--output-dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let logits = read_npy(&dir.path().join("logits.npy")).unwrap().tensor;
    let labels: Vec<i64> = npyz::NpyFile::new(&std::fs::read(repo().join(d).join("test_y.npy")).unwrap()[..]).unwrap().into_vec().unwrap();
    let n = labels.len();
    assert_eq!(logits.shape(), &[n, 10], "N is bound from the input file");
    let v = logits.to_f32_vec();
    let correct = (0..n).filter(|&i| {
        let row = &v[i * 10..][..10];
        let argmax = (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        argmax as i64 == labels[i]
    }).count();
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(repo().join(d).join("accuracy.json")).unwrap()).unwrap();
    assert_eq!(correct as u64, report["correct"].as_u64().unwrap());
    assert_eq!(n as u64, report["n"].as_u64().unwrap());
    assert!(correct as f64 / n as f64 > 0.95, "accuracy {correct}/{n}");
}

#[test]
fn symbolic_dims_bind_from_flags_and_report_when_unbound() {
    let o = run(&["run", "examples/digits/digits.nn", "--backend", "interp", "--random-weights", "1", "--dim", "N=3", "--input", "x=random:1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with("logits: f32[3, 10]"), "{}", o.stdout);
    let o = run(&["summary", "examples/digits/digits.nn"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("symbolic dimension `N` is not bound") && o.stderr.contains("--dim N=SIZE"), "{}", o.stderr);
}

#[test]
fn summary_reports_layers_and_totals() {
    let o = run(&["summary", "examples/lenet5.nn"]);
    assert_eq!(o.code, 0);
    for needle in ["c1 ", "conv2d", "f32[1, 6, 28, 28] nchw", "117,600", "61,706", "416,520", "peak"] {
        assert!(o.stdout.contains(needle), "missing {needle:?} in\n{}", o.stdout);
    }
    // torchvision's ResNet-18 has 11,689,512 trainable parameters plus 9,600 batch-norm running
    // statistics (state_dict entries, which nnc counts as parameters), and 1.814 GMACs.
    let o = run(&["summary", "examples/resnet18.nn"]);
    assert!(o.stdout.contains("parameters: 11,699,112"), "{}", o.stdout);
    assert!(o.stdout.contains("MACs: 1,814,073,344"), "{}", o.stdout);
    // torchvision's MobileNetV2: 3,504,872 trainable + 34,112 running statistics; 300.8 MMACs.
    let o = run(&["summary", "examples/mobilenet_v2.nn"]);
    assert!(o.stdout.contains("parameters: 3,538,984") && o.stdout.contains("MACs: 300,774,272"), "{}", o.stdout);
}

#[test]
fn compile_emits_each_form() {
    let ir_raw = run(&["compile", "examples/resnet18.nn", "--emit", "ir-raw"]);
    assert_eq!(ir_raw.code, 0);
    assert!(ir_raw.stdout.contains("batch_norm("));
    let ir = run(&["compile", "examples/resnet18.nn", "--emit", "ir"]);
    assert_eq!(ir.code, 0);
    assert!(!ir.stdout.contains("batch_norm("), "-O2 folds every batch norm into its convolution");
    // Without weights, stderr says the plan is not `nnc run`'s (no Winograd without constant
    // filters); with them, it picks Winograd and says nothing.
    assert!(ir.stderr.contains("note: no weights bound") && !ir.stdout.contains("winograd"), "{}", ir.stderr);
    let ir = run(&["compile", "examples/resnet18.nn", "--emit", "ir", "--random-weights", "1"]);
    assert!(!ir.stdout.contains("= mul(") && ir.stdout.contains("= const <"), "with weights the folded arithmetic becomes constants");
    assert!(!ir.stderr.contains("note: no weights bound"), "{}", ir.stderr);
    let dot = run(&["compile", "examples/lenet5.nn", "--emit", "dot"]);
    assert!(dot.stdout.starts_with("digraph \"lenet5\"") && dot.stdout.contains("->"));
    let ast = run(&["compile", "examples/lenet5.nn", "--emit", "ast"]);
    assert!(ast.stdout.contains("Model(") && ast.stdout.contains("\"conv2d\""));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lenet.ir");
    let o = run(&["compile", "examples/lenet5.nn", "--emit", "ir", "-o", out.to_str().unwrap()]);
    assert_eq!(o.code, 0);
    assert!(std::fs::read_to_string(out).unwrap().starts_with("graph lenet5 {"));
}

#[test]
fn dump_after_prints_banners_to_stderr() {
    let o = run(&["compile", "examples/resnet18.nn", "--emit", "ir", "--dump-after", "all"]);
    assert_eq!(o.code, 0);
    for pass in ["fold-batch-norm", "fold-constants", "fuse-epilogues", "eliminate-dead-code", "select-layouts", "select-tiles"] {
        assert!(o.stderr.contains(&format!("// ----- IR after {pass} -----")), "{pass}");
    }
    // The CPU passes leave layouts and tiles in the dump.
    assert!(o.stderr.contains(" nhwc") && o.stderr.contains(" tile=\"") && o.stderr.contains("convert_layout("), "{}", o.stderr);
    let o = run(&["compile", "examples/lenet5.nn", "--emit", "ir", "--dump-after", "fold-constants", "-O0"]);
    assert!(o.stderr.contains("does not run"), "{}", o.stderr);
    let o = run(&["run", "examples/lenet5.nn", "--random-weights", "1", "--input", "image=random:1", "--backend", "interp", "--dump-after", "select-layouts"]);
    assert!(o.stderr.contains("does not run for the interpreter"), "{}", o.stderr);
}

#[test]
fn object_files_need_weights_and_the_accelerator_commands_run() {
    // A library or object holds the weights, so it is not made from none (tests/aot.rs has
    // the rest).
    let o = run(&["compile", "examples/lenet5.nn", "--emit", "obj"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("no weights were given"), "{}", o.stderr);
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    // `run --backend accel` computes what the interpreter computes.
    let mut logits = Vec::new();
    for backend in ["accel", "interp"] {
        let o = run(&["run", "examples/lenet5.nn", "--backend", backend, "--random-weights", "1", "--input", "image=random:1", "--output-dir", &path(backend)]);
        assert_eq!(o.code, 0, "{backend}: {}", o.stderr);
        logits.push(read_npy(&dir.path().join(backend).join("logits.npy")).unwrap().tensor);
    }
    assert_eq!(logits[0].shape(), &[1, 10]);
    assert_eq!(common::compare(&logits[..1], &logits[1..], 1e-4), None);

    // `sim`: the report is consistent with itself, the model and the printed table.
    let o = run(&["sim", "examples/lenet5.nn", "--random-weights", "1", "--input", "image=random:1", "--report", &path("r.json")]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path("r.json")).unwrap()).unwrap();
    let u = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} missing in {r}"));
    assert_eq!(u("macs"), 416_520, "LeNet-5's MACs, as `nnc summary` counts them");
    assert_eq!(u("total_cycles"), u("compute_cycles") + u("stall_cycles"));
    let layers: Vec<&str> = r["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(layers, ["c1", "s2", "c3", "s4", "f5", "f6", "logits"]);
    let layer_macs: u64 = r["layers"].as_array().unwrap().iter().map(|l| l["macs"].as_u64().unwrap()).sum();
    assert_eq!(layer_macs, u("macs"));
    let e = &r["energy_pj"];
    let parts: f64 = ["mac", "scratchpad", "accumulator", "dram", "vector"].iter().map(|k| e[k].as_f64().unwrap()).sum();
    assert!((parts - e["total"].as_f64().unwrap()).abs() <= 1e-6 * parts, "{e}");
    assert!((r["latency_us"].as_f64().unwrap() - u("total_cycles") as f64 / 800.0).abs() < 1e-9, "edge runs at 800 MHz");
    assert!(o.stdout.contains(&format!("total: {} cycles", u("total_cycles"))), "{}", o.stdout);

    // `--emit isa`: the listing has the instructions the report counts, of every kind LeNet needs.
    let o = run(&["compile", "examples/lenet5.nn", "--emit", "isa"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let numbered: Vec<&str> = o.stdout.lines().filter(|l| l.trim_start().split(':').next().is_some_and(|n| n.parse::<u64>().is_ok())).collect();
    assert_eq!(numbered.len() as u64, u("instructions"), "{}", o.stdout);
    assert!(o.stdout.starts_with(&format!("; nnc accelerator program for edge ({} instructions", u("instructions"))));
    for kind in ["load.im2col", "load.spad", "preload", "compute", "store", "vector", "fence"] {
        assert!(numbered.iter().any(|l| l.split_whitespace().nth(1) == Some(kind)), "no {kind} in {}", o.stdout);
    }

    // Quantizing needs weights to quantize; the warning says where the ranges came from.
    let o = run(&["compile", "examples/lenet5.nn", "--emit", "ir", "--quantize", "int8", "--random-weights", "1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    // At -O2 each requantize joined its product's epilogue.
    assert!(o.stderr.contains("no --calibrate data") && o.stdout.contains("epilogue=[\"requantize\"]") && !o.stdout.contains("requantize("), "{}", o.stdout);
}

/// `nnc run --quantize int8` runs on the JIT and prints the interpreter's values exactly,
/// with the microkernels (the integer GEMM) and without, on one and two threads.
#[test]
fn int8_models_run_on_the_jit_with_the_interpreters_values() {
    for (model, input) in [("examples/lenet5.nn", "image"), ("examples/mlp.nn", "x")] {
        let input = format!("{input}=random:2");
        let base = ["run", model, "--random-weights", "1", "--input", &input, "--quantize", "int8"];
        let reference = run(&[&base[..], &["--backend", "interp"]].concat());
        assert_eq!(reference.code, 0, "{}", reference.stderr);
        assert!(reference.stdout.contains('['), "{}", reference.stdout);
        for extra in [&["--threads", "1"][..], &["--threads", "2"], &["--ukernels", "off"]] {
            let jit = run(&[&base[..], &["--backend", "jit"], extra].concat());
            assert_eq!(jit.code, 0, "{model} {extra:?}: {}", jit.stderr);
            assert_eq!(jit.stdout, reference.stdout, "{model} {extra:?}");
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["frobnicate"],
        vec!["check"],
        vec!["check", "examples/lenet5.nn", "--no-such-flag"],
        vec!["run", "examples/lenet5.nn", "-O7"],
        vec!["run", "examples/lenet5.nn", "--dim", "N=0"],
        vec!["run", "examples/lenet5.nn", "--dim", "N"],
        vec!["run", "examples/lenet5.nn", "--backend", "gpu"],
        vec!["compile", "examples/lenet5.nn", "--emit", "wasm"],
        vec!["compile", "examples/lenet5.nn", "--emit", "ir", "--dump-after", "no-such-pass"],
        vec!["run", "examples/lenet5.nn", "--weights", "a", "--random-weights", "1"],
        vec!["run", "examples/lenet5.nn", "--bench", "0"],
        vec!["sim", "examples/lenet5.nn", "--dataflow", "diagonal"],
    ] {
        let o = run(&args);
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
    }
    assert_eq!(run(&["--help"]).code, 0);
    assert_eq!(run(&["--version"]).code, 0);
}

#[test]
fn input_errors_exit_1_with_what_is_wrong() {
    let base = ["run", "examples/lenet5.nn", "--backend", "interp", "--random-weights", "1"];
    let with = |extra: &[&str]| run(&[&base[..], extra].concat());
    let o = with(&[]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("no value for input `image`") && o.stderr.contains("random:SEED"), "{}", o.stderr);
    let o = with(&["--input", "img=random:1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("has no such input") && o.stderr.contains("`image`"), "{}", o.stderr);
    let o = with(&["--input", "image=tests/fixtures/ops/relu/x.npy"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("but input `image` is declared [1, 1, 28, 28]"), "{}", o.stderr);
    let o = run(&["run", "examples/lenet5.nn", "--backend", "interp", "--input", "image=random:1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("has 10 parameters but no weights were given"), "{}", o.stderr);
}

#[test]
fn weights_errors_list_every_missing_name_and_both_shapes() {
    let fx = "tests/fixtures/lenet5_ort/weights.safetensors";
    // LeNet's weights for the MLP: four names are missing, `logits.*` have other shapes; all
    // of it is reported in one run.
    let o = run(&["run", "examples/mlp.nn", "--backend", "interp", "--weights", fx, "--input", "x=random:1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("has no tensor for 4 parameters: `h1.bias`, `h1.weight`, `h2.bias`, `h2.weight`"), "{}", o.stderr);
    assert!(o.stderr.contains("weight `logits.weight`") && o.stderr.contains("[10, 84]") && o.stderr.contains("[10, 512]"), "{}", o.stderr);
    // Same names, other shapes.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("m.nn");
    std::fs::write(&src, "model m {\n input image: f32[1, 1, 28, 28]\n c1 = conv2d(image, filters=6, kernel=3)\n output y = relu(c1)\n}\n").unwrap();
    let o = run(&["run", src.to_str().unwrap(), "--backend", "interp", "--weights", fx, "--input", "image=random:1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("weight `c1.weight`") && o.stderr.contains("[6, 1, 5, 5]") && o.stderr.contains("[6, 1, 3, 3]"), "{}", o.stderr);
    // Unused tensors only warn.
    std::fs::write(&src, "model m {\n input image: f32[1, 1, 28, 28]\n c1 = conv2d(image, filters=6, kernel=5)\n output y = relu(c1)\n}\n").unwrap();
    let o = run(&["run", src.to_str().unwrap(), "--backend", "interp", "--weights", fx, "--input", "image=random:1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("warning") && o.stderr.contains("`f5.weight` is not a parameter"), "{}", o.stderr);
}

#[test]
fn f64_inputs_are_converted_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<f64> = (0..784).map(|i| (i as f64 / 784.0).sin() * 1.000000123).collect();
    let write = |name: &str, f: &dyn Fn(&Path)| {
        let path = dir.path().join(name);
        f(&path);
        path
    };
    let f64_path = write("x64.npy", &|p| {
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[1, 784]).writer(std::fs::File::create(p).unwrap()).begin_nd().unwrap();
        w.extend(data.iter().copied()).unwrap();
        w.finish().unwrap();
    });
    // The same values rounded to f32 by hand: the converted input must be exactly this.
    let f32_path = write("x32.npy", &|p| {
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[1, 784]).writer(std::fs::File::create(p).unwrap()).begin_nd().unwrap();
        w.extend(data.iter().map(|&v| v as f32)).unwrap();
        w.finish().unwrap();
    });
    let mut outs = Vec::new();
    for (input, out) in [(&f64_path, "o64"), (&f32_path, "o32")] {
        let out_dir = dir.path().join(out);
        let o = run(&["run", "examples/mlp.nn", "--backend", "interp", "--random-weights", "1", "--input", &format!("x={}", input.display()), "--output-dir", out_dir.to_str().unwrap()]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        outs.push((o.stderr, read_npy(&out_dir.join("logits.npy")).unwrap().tensor));
    }
    assert!(outs[0].0.contains("warning") && outs[0].0.contains("f64 data converted to f32"), "{}", outs[0].0);
    assert!(!outs[1].0.contains("warning"), "{}", outs[1].0);
    assert_eq!(outs[0].1.to_f32_vec(), outs[1].1.to_f32_vec(), "the f64 input gives the f32 input's outputs");
}

#[test]
fn syntax_errors_show_the_line_and_a_caret_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bad.nn");
    std::fs::write(&src, "model m {\n  input x: f32[2]\n  y = relu(x,\n  output y\n}\n").unwrap();
    let o = run(&["check", src.to_str().unwrap()]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("Error: unexpected `output`") && o.stderr.contains("bad.nn:4:3"), "{}", o.stderr);
    // The source line, and under it an underline that starts below `output` and marks the
    // token (ariadne draws the caret as `┬` on a `─` underline).
    let lines: Vec<&str> = o.stderr.lines().collect();
    let at = lines.iter().position(|l| l.trim_end().ends_with("│   output y") && l.trim_start().starts_with('4')).unwrap_or_else(|| panic!("no source line 4 in\n{}", o.stderr));
    let column = lines[at][..lines[at].find("output").unwrap()].chars().count();
    let under: Vec<char> = lines[at + 1].chars().collect();
    assert_eq!(&under[column..column + 6].iter().collect::<String>(), "───┬──", "the underline is not under `output`:\n{}", o.stderr);
    assert!(under[..column].iter().all(|c| *c == ' ' || *c == '│'), "the underline starts before `output`:\n{}", o.stderr);
}

#[test]
fn bench_prints_median_and_spread() {
    let o = run(&["run", "examples/mlp.nn", "--backend", "interp", "--random-weights", "1", "--input", "x=random:1", "--bench", "5"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("bench: 5 runs") && o.stdout.contains("median") && o.stdout.contains("min"), "{}", o.stdout);
}

#[test]
fn pytorch_int64_buffers_are_ignored_with_one_summary_warning() {
    // A state_dict export carries `num_batches_tracked` as int64 next to each batch norm's
    // statistics; they are no parameters of the model and must not stop the load, nor print
    // a warning each (ResNet-18 has twenty). A genuinely unused tensor still gets its own.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("m.nn");
    std::fs::write(&src, "model m {\n input x: f32[1, 2]\n a = batch_norm(x)\n output y = batch_norm(a)\n}\n").unwrap();
    let mut data = Vec::new();
    let mut entries = Vec::new();
    let mut add = |name: &str, dtype: &str, shape: &str, bytes: Vec<u8>| {
        let start = data.len();
        data.extend(bytes);
        entries.push(format!("\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{start},{}]}}", data.len()));
    };
    let f32s = |v: [f32; 2]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    for layer in ["a", "y"] {
        for (field, values) in [("weight", [1.0f32, 2.0]), ("bias", [0.0, 1.0]), ("running_mean", [0.0, 0.5]), ("running_var", [1.0, 4.0])] {
            add(&format!("{layer}.{field}"), "F32", "[2]", f32s(values));
        }
        add(&format!("{layer}.num_batches_tracked"), "I64", "[]", 7i64.to_le_bytes().to_vec());
    }
    add("z.weight", "F32", "[2]", f32s([3.0, 3.0]));
    let header = format!("{{{}}}", entries.join(","));
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    let weights = dir.path().join("w.safetensors");
    std::fs::write(&weights, bytes).unwrap();
    let x = dir.path().join("x.npy");
    let mut w = npyz::WriteOptions::new().default_dtype().shape(&[1, 2]).writer(std::fs::File::create(&x).unwrap()).begin_nd().unwrap();
    w.extend([0.5f32, -1.0]).unwrap();
    w.finish().unwrap();
    let out = dir.path().join("out");
    let o = run(&["run", src.to_str().unwrap(), "--backend", "interp", "--weights", weights.to_str().unwrap(), "--input", &format!("x={}", x.display()), "--output-dir", out.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let warnings: Vec<&str> = o.stderr.lines().filter(|l| l.contains("arning")).collect();
    assert_eq!(warnings.len(), 2, "{}", o.stderr);
    assert!(o.stderr.contains("ignored 2 PyTorch batch-norm counters (`a.num_batches_tracked` and 1 more `*.num_batches_tracked`)"), "{}", o.stderr);
    assert!(o.stderr.contains("tensor `z.weight` is not a parameter"), "{}", o.stderr);
    // The statistics were bound: each batch norm is (x − mean)/√(var + 1e-5)·weight + bias.
    let bn = |v: [f32; 2]| [(v[0] - 0.0) / (1.0f32 + 1e-5).sqrt() * 1.0 + 0.0, (v[1] - 0.5) / (4.0f32 + 1e-5).sqrt() * 2.0 + 1.0];
    let want = bn(bn([0.5, -1.0]));
    let got = read_npy(&out.join("y.npy")).unwrap().tensor.to_f32_vec();
    assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{got:?} vs {want:?}");
}

#[test]
fn jit_is_the_default_backend_and_agrees_with_the_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for extra in [&["--backend", "interp"][..], &[][..], &["--ukernels", "off"][..]] {
        let out = dir.path().join(outs.len().to_string());
        let mut args = vec!["run", "examples/resnet18.nn", "--random-weights", "2", "--input", "image=random:2", "--output-dir", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert_eq!(o.code, 0, "{extra:?}: {}", o.stderr);
        outs.push(read_npy(&out.join("logits.npy")).unwrap().tensor);
    }
    assert_eq!(common::compare(&outs[1..], &[outs[0].clone(), outs[0].clone()], 1e-4), None);
}

/// `--emit ir` notes what the JIT decides about pairs of nodes, which no node's attributes
/// record: MobileNetV2's expansions computed inside the depthwise kernels they feed, the
/// transformer's head transposes read and written in place by the attention kernel. The
/// notes are comments, so the text still parses as IR.
#[test]
fn emitted_ir_notes_fused_pairs_and_folded_transposes() {
    let mobilenet = run(&["compile", "examples/mobilenet_v2.nn", "--random-weights", "1", "--emit", "ir"]);
    assert_eq!(mobilenet.code, 0, "{}", mobilenet.stderr);
    let line = |text: &str, node: &str| text.lines().find(|l| l.trim_start().starts_with(&format!("%{node} = "))).unwrap_or_else(|| panic!("no %{node}")).to_string();
    let producer = line(&mobilenet.stdout, "features.0.conv");
    assert!(producer.ends_with("nhwc  // no kernel of its own: %features.1.conv.0.conv's kernel computes it, a window of rows at a time"), "{producer}");
    let consumer = line(&mobilenet.stdout, "features.1.conv.0.conv");
    assert!(consumer.contains(r#"kernel="vector-depthwise""#) && consumer.ends_with("// also computes %features.0.conv, keeping only a window of its rows"), "{consumer}");
    // Pairs whose producer result stays in L2 are not fused.
    let pairs = mobilenet.stdout.matches("// also computes").count();
    assert!((1..17).contains(&pairs), "{pairs} fused pairs");
    assert_eq!(mobilenet.stdout.matches("// no kernel of its own").count(), pairs);
    // `--kernels` without the runtime's depthwise kernel: nothing fused, nothing noted.
    let off = run(&["compile", "examples/mobilenet_v2.nn", "--random-weights", "1", "--emit", "ir", "--ukernels", "off"]);
    assert_eq!(off.code, 0, "{}", off.stderr);
    assert!(!off.stdout.contains("//"), "{}", off.stdout);
    // `--fuse-producers off`: the same kernels, each node its own.
    let apart = run(&["compile", "examples/mobilenet_v2.nn", "--random-weights", "1", "--emit", "ir", "--fuse-producers", "off"]);
    assert_eq!(apart.code, 0, "{}", apart.stderr);
    assert!(!apart.stdout.contains("//"), "{}", apart.stdout);
    assert!(line(&apart.stdout, "features.1.conv.0.conv").contains(r#"kernel="vector-depthwise""#));

    let transformer = run(&["compile", "examples/transformer.nn", "--emit", "ir"]);
    assert_eq!(transformer.code, 0, "{}", transformer.stderr);
    for head in ["q", "k", "v"] {
        assert!(line(&transformer.stdout, &format!("self_attn.{head}")).ends_with("// no kernel: %self_attn.context.attention reads the heads in place"));
    }
    assert!(line(&transformer.stdout, "self_attn.context.transpose").ends_with("// no kernel: %self_attn.context.attention writes its heads here in place"));
    let graph = nnc::ir::parse::parse_graph(&transformer.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert!(graph.node_ids().count() > 20);
}

#[test]
fn compile_emits_cranelift_ir_and_machine_code() {
    // Generated code's own arithmetic (microkernels off: with them, LeNet-5's products and
    // pooling are runtime calls).
    let clif = run(&["compile", "examples/lenet5.nn", "--emit", "clif", "--ukernels", "off"]);
    assert_eq!(clif.code, 0, "{}", clif.stderr);
    assert!(clif.stdout.contains("; kernel") && clif.stdout.contains("function u0:") && clif.stdout.contains(" fma "), "{}", &clif.stdout[..clif.stdout.len().min(2000)]);
    let asm = run(&["compile", "examples/lenet5.nn", "--emit", "asm", "--ukernels", "off"]);
    assert_eq!(asm.code, 0, "{}", asm.stderr);
    assert!(asm.stdout.contains("vfmadd") || asm.stdout.contains("fmadd"), "{}", &asm.stdout[..asm.stdout.len().min(2000)]);
}

/// The plan `summary` reports is the one `run` compiles: after layout selection, fusion and
/// Winograd's constant filters (the plan of MobileNetV2 as written was 10.7 MiB, of the
/// compiled graph 2.30).
#[test]
fn summary_reports_the_memory_plan_the_jit_compiles() {
    let plan_line = |text: &str, prefix: &str| text.lines().find_map(|l| l.strip_prefix(prefix)).map(|l| l.split(" (liveness").next().unwrap_or(l).trim_start_matches(' ').to_string());
    for (model, input) in [("examples/mobilenet_v2.nn", "image=random:1"), ("examples/lenet5.nn", "image=random:1")] {
        let summary = run(&["summary", model]);
        assert_eq!(summary.code, 0, "{}", summary.stderr);
        let planned = plan_line(&summary.stdout, "JIT memory plan:").unwrap_or_else(|| panic!("{}", summary.stdout));
        let ran = run(&["run", model, "--random-weights", "1", "--input", input, "--bench", "1"]);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        let compiled = ran.stdout.lines().chain(ran.stderr.lines()).find_map(|l| l.split_once(", arena ").map(|(_, a)| a.split(" (liveness").next().unwrap_or(a).to_string())).unwrap_or_else(|| panic!("{}{}", ran.stdout, ran.stderr));
        assert_eq!(planned, format!("{compiled} arena"), "{model}");
    }
}

#[test]
fn half_precision_models_run_on_the_interpreter_the_jit_and_the_accelerator_alike() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("h.nn");
    std::fs::write(&src, "model h {\n input x: bf16[1, 4]\n output y = relu(x) * 3 + x\n}\n").unwrap();
    let mut printed = Vec::new();
    for backend in ["jit", "interp", "accel"] {
        let o = run(&["run", src.to_str().unwrap(), "--backend", backend, "--input", "x=random:1"]);
        assert_eq!(o.code, 0, "{backend}: {}", o.stderr);
        assert!(o.stdout.starts_with("y: bf16[1, 4]"), "{backend}: {}", o.stdout);
        printed.push(o.stdout);
    }
    // Elementwise ops are exact in f32 before each result is rounded, so all agree.
    assert!(printed.iter().all(|p| *p == printed[0]), "{printed:?}");
}

/// Writes `values` as a little-endian `.npy` of element type `T`, shape `[len]`.
fn write_npy_vector<T: npyz::Serialize + npyz::AutoSerialize + Copy>(path: &Path, values: &[T]) {
    let mut out = Vec::new();
    let mut w = npyz::WriteOptions::new().default_dtype().shape(&[values.len() as u64]).writer(&mut out).begin_nd().unwrap();
    w.extend(values.iter().copied()).unwrap();
    w.finish().unwrap();
    std::fs::write(path, out).unwrap();
}

/// The trained digits CNN (conv–batch_norm–relu ×2, pool, dense): top-1 on its 360 held-out
/// images pinned exactly, as `train_digits_cnn.py` recorded it (354) on every backend; int8
/// calibrated on 360 training images the test never saw (355 with minmax and percentile, 354
/// with entropy) on the JIT and the interpreter, and on the accelerator's int8 array; bf16
/// mixed precision (354) on every backend. The MLP keeps its 349 in bf16 too.
#[test]
fn digits_cnn_accuracy_in_f32_int8_and_bf16() {
    let d = "examples/digits_cnn";
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(repo().join(d).join("accuracy.json")).unwrap()).unwrap();
    assert_eq!((report["correct"].as_u64(), report["n"].as_u64()), (Some(354), Some(360)));
    let (model, weights, x, y) = (format!("{d}/digits_cnn.nn"), format!("{d}/digits_cnn.safetensors"), format!("x={d}/test_x.npy"), format!("{d}/test_y.npy"));
    let calibrate = format!("x={d}/calib_x.npy");
    let dir = tempfile::tempdir().unwrap();
    let base = ["run", &model, "--weights", &weights, "--input", &x, "--labels", &y, "--output-dir", dir.path().to_str().unwrap()];
    let accuracy = |extra: &[&str]| {
        let o = run(&[&base[..], extra].concat());
        assert_eq!(o.code, 0, "{extra:?}: {}", o.stderr);
        o.stdout.trim().to_string()
    };
    for backend in ["jit", "interp", "accel"] {
        assert_eq!(accuracy(&["--backend", backend]), "accuracy: 354/360 (98.3%)", "f32 {backend}");
        assert_eq!(accuracy(&["--backend", backend, "--quantize", "bf16"]), "accuracy: 354/360 (98.3%)", "bf16 {backend}");
    }
    for backend in ["jit", "interp"] {
        for (method, want) in [("minmax", "355/360 (98.6%)"), ("percentile", "355/360 (98.6%)"), ("entropy", "354/360 (98.3%)")] {
            assert_eq!(accuracy(&["--backend", backend, "--quantize", "int8", "--calibrate", &calibrate, "--calibrate-method", method]), format!("accuracy: {want}"), "int8 {method} {backend}");
        }
    }
    assert_eq!(accuracy(&["--backend", "accel", "--config", "tpu-v1", "--quantize", "int8", "--calibrate", &calibrate]), "accuracy: 355/360 (98.6%)", "int8 accel");
    let d = "examples/digits";
    let o = run(&["run", &format!("{d}/digits.nn"), "--weights", &format!("{d}/digits.safetensors"), "--input", &format!("x={d}/test_x.npy"), "--labels", &format!("{d}/test_y.npy"), "--quantize", "bf16", "--output-dir", dir.path().to_str().unwrap()]);
    assert_eq!((o.code, o.stdout.trim()), (0, "accuracy: 349/360 (96.9%)"), "{}", o.stderr);
}

/// `--quantize bf16` needs no calibration and says so; `--dump-after quantize-bf16` shows the
/// products' bf16 operands.
#[test]
fn bf16_mixed_precision_from_the_command_line() {
    let o = run(&["run", "examples/mlp.nn", "--random-weights", "1", "--input", "x=random:1", "--quantize", "bf16", "--calibrate", "x=examples/digits/test_x.npy"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("--quantize bf16 rounds to bfloat16 and needs no calibration"), "{}", o.stderr);
    let o = run(&["compile", "examples/mlp.nn", "--random-weights", "1", "--quantize", "bf16", "--emit", "ir", "--dump-after", "quantize-bf16"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("IR after quantize-bf16") && o.stderr.contains("cast(%x) dtype=\"bf16\""), "{}", o.stderr);
    let o = run(&["summary", "examples/mlp.nn", "--random-weights", "1", "--quantize", "bf16"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("SQNR"), "{}", o.stdout);
}

/// `--labels`: the trained digits MLP's top-1 on its 360 held-out images, pinned exactly on
/// every backend (349, as `train_digits.py` recorded in accuracy.json), and for int8 (350,
/// calibrated on the same images) on the JIT and the interpreter alike; labels of any
/// integer width; files that do not fit the model are errors.
#[test]
fn labels_report_top1_accuracy_on_the_trained_digits() {
    let d = "examples/digits";
    let (model, weights, x, y) = (format!("{d}/digits.nn"), format!("{d}/digits.safetensors"), format!("x={d}/test_x.npy"), format!("{d}/test_y.npy"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let base = ["run", &model, "--weights", &weights, "--input", &x, "--output-dir", out];
    for backend in ["jit", "interp", "accel"] {
        let o = run(&[&base[..], &["--labels", &y, "--backend", backend]].concat());
        assert_eq!(o.code, 0, "{backend}: {}", o.stderr);
        assert_eq!(o.stdout.trim(), "accuracy: 349/360 (96.9%)", "{backend}");
    }
    let calibrate = format!("x={d}/test_x.npy");
    for backend in ["jit", "interp"] {
        let o = run(&[&base[..], &["--labels", &y, "--backend", backend, "--quantize", "int8", "--calibrate", &calibrate]].concat());
        assert_eq!(o.code, 0, "int8 {backend}: {}", o.stderr);
        assert_eq!(o.stdout.trim(), "accuracy: 350/360 (97.2%)", "int8 {backend}");
    }
    // Each calibration method, pinned (entropy clips the largest activations a little more).
    for (method, want) in [("minmax", "350/360 (97.2%)"), ("percentile", "350/360 (97.2%)"), ("entropy", "349/360 (96.9%)")] {
        let o = run(&[&base[..], &["--labels", &y, "--quantize", "int8", "--calibrate", &calibrate, "--calibrate-method", method]].concat());
        assert_eq!(o.code, 0, "{method}: {}", o.stderr);
        assert_eq!(o.stdout.trim(), format!("accuracy: {want}"), "{method}");
    }
    let o = run(&[&base[..], &["--calibrate-method", "entropy"]].concat());
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("--calibrate-method chooses how quantization calibrates, but --quantize is not set"), "{}", o.stderr);
    // The same labels as uint8.
    let labels: Vec<u8> = {
        let (_, v) = nnc_runtime::npy::read_npy_integers(&repo().join(&y)).unwrap();
        v.iter().map(|&l| l as u8).collect()
    };
    let small = dir.path().join("labels_u8.npy");
    write_npy_vector(&small, &labels);
    let o = run(&[&base[..], &["--labels", small.to_str().unwrap()]].concat());
    assert_eq!((o.code, o.stdout.trim()), (0, "accuracy: 349/360 (96.9%)"), "{}", o.stderr);
    // Float labels, one label short, a class the output does not have.
    let short = dir.path().join("short.npy");
    write_npy_vector(&short, &labels[1..]);
    let wrong = dir.path().join("wrong.npy");
    write_npy_vector(&wrong, &[10i64; 360]);
    for (file, message) in [
        (format!("{d}/test_x.npy"), "expected integers"),
        (short.to_str().unwrap().to_string(), "holds 359 labels, but input `x` has 360 rows"),
        (wrong.to_str().unwrap().to_string(), "label 10 of row 0 is not one of the 10 classes of output `logits`"),
    ] {
        let o = run(&[&base[..], &["--labels", &file]].concat());
        assert_eq!(o.code, 1, "{file}");
        assert!(o.stderr.contains(message), "{file}: {}", o.stderr);
    }
}

/// `nnc summary --quantize int8`: after the model's table, each int8 product's SQNR against
/// float on the calibration inputs (at most 8), one row per product in order; without
/// weights it is an error, and without `--quantize` the summary is the model's alone.
#[test]
fn summary_reports_each_products_quantization_error() {
    let o = run(&["summary", "examples/lenet5.nn", "--random-weights", "1", "--quantize", "int8"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let section = o.stdout.split("int8 quantization error: SQNR of each product's accumulator against float, on 4 calibration inputs").nth(1).expect("the error section");
    let rows: Vec<(&str, f64)> = section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells.len() == 4 && cells[3] == "dB").then(|| (cells[0], cells[2].parse().unwrap()))
        })
        .collect();
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), ["c1", "c3", "f5", "f6", "logits"]);
    // 8-bit codes bound the first layer's SQNR near 6 dB per bit; errors compound downstream.
    assert!(rows.iter().all(|r| (15.0..55.0).contains(&r.1)), "{rows:?}");
    assert!(rows[0].1 > rows[4].1, "{rows:?}");
    let o = run(&["summary", "examples/lenet5.nn", "--quantize", "int8"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("model `lenet5` has 10 parameters but no weights were given"), "{}", o.stderr);
    let o = run(&["summary", "examples/lenet5.nn", "--random-weights", "1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!o.stdout.contains("SQNR"), "{}", o.stdout);
}

/// `args` (an `nnc run` with `--quantize int8` or not) on the interpreter, the JIT and the
/// accelerator (with `accel_args` there): the JIT and the accelerator give the
/// interpreter's `logits`, within 1e-4 in f32 and exactly in int8.
fn backends_agree(dir: &std::path::Path, args: &[&str], accel_args: &[&str]) {
    let int8 = args.contains(&"int8");
    let mut logits = Vec::new();
    for backend in ["interp", "jit", "accel"] {
        let out = dir.join(format!("agree-{backend}"));
        let mut all = [args, &["--backend", backend, "--output-dir", out.to_str().unwrap()]].concat();
        if backend == "accel" {
            all.extend_from_slice(accel_args);
        }
        let o = run(&all);
        assert_eq!(o.code, 0, "{backend} {args:?}: {}", o.stderr);
        logits.push(read_npy(&out.join("logits.npy")).unwrap().tensor);
    }
    let tol = if int8 { 0.0 } else { 1e-4 };
    assert_eq!(common::compare(&logits[1..2], &logits[..1], tol), None, "jit {args:?}");
    assert_eq!(common::compare(&logits[2..], &logits[..1], tol), None, "accel {args:?}");
}

/// `--prune magnitude|global`: the digits models' accuracy pinned (one-shot pruning, no
/// fine-tuning); a pruned model gives the interpreter's outputs on the JIT and the
/// accelerator, in f32 and int8; `summary` reports the densities; bad specs and skips are
/// refused with exit 2 (malformed) or 1 (nothing to skip, no weights).
#[test]
fn unstructured_pruning_from_the_command_line() {
    let d = "examples/digits";
    let (model, weights, x, y) = (format!("{d}/digits.nn"), format!("{d}/digits.safetensors"), format!("x={d}/test_x.npy"), format!("{d}/test_y.npy"));
    for (spec, want) in [("magnitude:0.5", "344/360"), ("global:0.5", "352/360"), ("global:0.7", "331/360")] {
        let o = run(&["run", &model, "--weights", &weights, "--input", &x, "--labels", &y, "--prune", spec]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert!(o.stdout.contains(&format!("accuracy: {want}")), "{spec}: {}", o.stdout);
    }
    let dir = tempfile::tempdir().unwrap();
    let lenet = ["run", "examples/lenet5.nn", "--random-weights", "1", "--input", "image=random:1", "--prune", "global:0.7", "--prune-skip", "c1"];
    backends_agree(dir.path(), &lenet, &[]);
    backends_agree(dir.path(), &[&lenet[..], &["--quantize", "int8"]].concat(), &["--config", "gemmini"]);
    let o = run(&["summary", "examples/lenet5.nn", "--random-weights", "1", "--prune", "magnitude:0.75", "--prune-skip", "c1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let row = |out: &str, w: &str| out.lines().skip_while(|l| !l.starts_with("pruning:")).find(|l| l.starts_with(w)).unwrap_or_else(|| panic!("no {w} row:\n{out}")).to_string();
    let cells = |w: &str| row(&o.stdout, w).split_whitespace().map(str::to_string).collect::<Vec<_>>();
    // weight, params, nonzero, density, MACs, MACs the JIT still does, its kernel.
    assert_eq!(cells("c1.weight")[1..6], ["150", "150", "100.0%", "117,600", "117,600"], "{}", o.stdout);
    // At 25% density c3 stays on the dense NHWC GEMM (its 16 filters fill the narrow 8×16
    // tile: 5.5 µs against the sparse kernel's 18), and so do the dense layers on the dot
    // kernel; at 10% the dense layers go sparse.
    assert_eq!(cells("c3.weight")[1..], ["2,400", "600", "25.0%", "240,000", "240,000", "nhwc-gemm"], "{}", o.stdout);
    assert_eq!(cells("f5.weight")[6], "dot", "{}", o.stdout);
    assert_eq!(cells("total")[1..], ["61,470", "15,480", "25.2%", "416,520", "416,520"], "{}", o.stdout);
    let o9 = run(&["summary", "examples/lenet5.nn", "--random-weights", "1", "--prune", "magnitude:0.9", "--prune-skip", "c1"]);
    assert_eq!(o9.code, 0, "{}", o9.stderr);
    let cells9 = |w: &str| row(&o9.stdout, w).split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(cells9("f5.weight")[1..6], ["48,000", "4,800", "10.0%", "48,000", "4,800"], "{}", o9.stdout);
    assert_eq!(cells9("f5.weight")[6], "sparse", "{}", o9.stdout);
    let o = run(&["compile", "examples/lenet5.nn", "--random-weights", "1", "--prune", "magnitude:0.75", "--emit", "ir", "-O0"]);
    assert!(o.stdout.contains("%c3.weight = const <2400 values, density 0.250>"), "{}", o.stdout);
    for (args, code, message) in [
        (&["--prune", "magnitude:1.5"][..], 2, "below 1"),
        (&["--prune", "channels:-1"][..], 2, "at least 0"),
        (&["--prune", "pruneall:0.5"][..], 2, "unknown pruning kind"),
        (&["--prune", "magnitude:0.5", "--prune-skip", "c9"][..], 1, "--prune-skip c9 names no prunable layer"),
        (&["--prune-skip", "c1"][..], 1, "no --prune is given"),
    ] {
        let mut all = vec!["run", "examples/lenet5.nn", "--random-weights", "1", "--input", "image=random:1"];
        all.extend_from_slice(args);
        let o = run(&all);
        assert_eq!(o.code, code, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(message), "{args:?}: {}", o.stderr);
    }
    let o = run(&["run", "examples/lenet5.nn", "--input", "image=random:1", "--prune", "magnitude:0.5"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    // `nnc prune` writes a model and weights that, without --prune, give the pruned run's outputs.
    let written = dir.path().join("written");
    let o = run(&["prune", "examples/lenet5.nn", "--random-weights", "4", "--prune", "global:0.8", "--prune", "blocks:0.3:2x5", "--output-dir", written.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("wrote"), "{}", o.stdout);
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let o = run(&["run", "examples/lenet5.nn", "--random-weights", "4", "--prune", "global:0.8", "--prune", "blocks:0.3:2x5", "--input", "image=random:3", "--output-dir", a_dir.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let (nn, st) = (written.join("lenet5.nn"), written.join("lenet5.safetensors"));
    let o = run(&["run", nn.to_str().unwrap(), "--weights", st.to_str().unwrap(), "--input", "image=random:3", "--output-dir", b_dir.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(read_npy(&a_dir.join("logits.npy")).unwrap().tensor, read_npy(&b_dir.join("logits.npy")).unwrap().tensor);
    let o = run(&["prune", "examples/lenet5.nn", "--random-weights", "4", "--output-dir", written.to_str().unwrap()]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("needs at least one --prune"), "{}", o.stderr);
    // Blocks of the array's fold shape: the accelerator skips those folds and says so.
    let o = run(&["sim", "examples/lenet5.nn", "--random-weights", "1", "--input", "image=random:1", "--prune", "blocks:0.5", "--config", "gemmini", "--quantize", "int8"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("folds skipped") && o.stdout.contains("without skipping:"), "{}", o.stdout);
}

/// `--prune channels:F`: the pruned graph has fewer channels (summary's parameters and MACs
/// fall), gives the interpreter's outputs on the JIT and the accelerator, in f32 and int8, and
/// `nnc prune` writes a smaller model (the `.nn` declares the new sizes, the weights keep
/// their names) that runs without `--prune` to the pruned run's outputs, bit for bit.
#[test]
fn structured_pruning_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    for model in ["examples/resnet18.nn", "examples/digits_cnn/digits_cnn.nn"] {
        // The digits CNN's batch is symbolic, and stays so in the written model.
        let (input, dims) = if model.contains("digits") { ("x=random:2", &["--dim", "N=4"][..]) } else { ("image=random:2", &[][..]) };
        let written = dir.path().join("written");
        let o = run(&["prune", model, "--random-weights", "3", "--prune", "channels:0.5", "--output-dir", written.to_str().unwrap()]);
        assert_eq!(o.code, 0, "{model}: {}", o.stderr);
        let stem = std::path::Path::new(model).file_stem().unwrap().to_str().unwrap();
        let (nn, st) = (written.join(format!("{stem}.nn")), written.join(format!("{stem}.safetensors")));
        let text = std::fs::read_to_string(&nn).unwrap();
        assert!(text.starts_with("# Written by `nnc prune` (channels:0.5)"), "{text}");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let o = run(&[&["run", model, "--random-weights", "3", "--prune", "channels:0.5", "--input", input, "--output-dir", a.to_str().unwrap()], dims].concat());
        assert_eq!(o.code, 0, "{}", o.stderr);
        let o = run(&[&["run", nn.to_str().unwrap(), "--weights", st.to_str().unwrap(), "--input", input, "--output-dir", b.to_str().unwrap()], dims].concat());
        assert_eq!(o.code, 0, "{}", o.stderr);
        for entry in std::fs::read_dir(&a).unwrap() {
            let f = entry.unwrap().file_name();
            assert_eq!(read_npy(&a.join(&f)).unwrap().tensor, read_npy(&b.join(&f)).unwrap().tensor, "{model}: {f:?}");
        }
    }
    // ResNet-18 at channels:0.5: the residual streams and the blocks' inner channels halve,
    // the stem's input and the classifier's output stay.
    let o = run(&["summary", "examples/resnet18.nn", "--random-weights", "1", "--prune", "channels:0.5"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let row = |w: &str| o.stdout.lines().skip_while(|l| !l.starts_with("pruning:")).find(|l| l.starts_with(w)).unwrap_or_else(|| panic!("no {w}:\n{}", o.stdout)).split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(row("conv1.weight")[1..3], ["9,408", "4,704"], "{}", o.stdout);
    assert_eq!(row("layer1.0.conv1.weight")[1..3], ["36,864", "9,216"], "{}", o.stdout);
    assert_eq!(row("fc.weight")[1..3], ["512,000", "256,000"], "{}", o.stdout);
    // Every backend, f32 and int8, on the digits CNN.
    let cnn = ["run", "examples/digits_cnn/digits_cnn.nn", "--weights", "examples/digits_cnn/digits_cnn.safetensors", "--input", "x=examples/digits_cnn/test_x.npy", "--prune", "channels:0.25"];
    backends_agree(dir.path(), &cnn, &[]);
    backends_agree(dir.path(), &[&cnn[..], &["--quantize", "int8", "--calibrate", "x=examples/digits_cnn/calib_x.npy"]].concat(), &["--config", "gemmini"]);
}

/// `--kernels NAME,...` puts a kernel wherever it can run (IR text shows it), and an unknown
/// name is a usage error that lists the kernels.
#[test]
fn kernels_asked_for_by_name() {
    let o = run(&["compile", "examples/lenet5.nn", "--random-weights", "1", "--emit", "ir", "--kernels", "direct,dot"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains(r#"kernel="direct""#) && o.stdout.contains(r#"kernel="dot""#) && !o.stdout.contains(r#"kernel="gemm""#), "{}", o.stdout);
    let o = run(&["run", "examples/lenet5.nn", "--random-weights", "1", "--input", "image=random:1", "--kernels", "fastest"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("unknown kernel `fastest`") && o.stderr.contains("nhwc-gemm"), "{}", o.stderr);
}

/// A reader that closes the pipe early (`nnc run ... | head -1`) is not a crash: nnc stops
/// writing and exits 0 without a panic message.
#[test]
fn a_closed_stdout_pipe_is_not_a_crash() {
    let bin = assert_cmd::cargo::cargo_bin("nnc");
    let mut child = std::process::Command::new(bin)
        .current_dir(repo())
        .args(["run", "examples/mlp.nn", "--random-weights", "1", "--input", "x=random:1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before nnc writes anything (it compiles first).
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(o.status.code(), Some(0), "{stderr}");
}
