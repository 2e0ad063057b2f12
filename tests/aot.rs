//! Ahead-of-time libraries (`nnc compile --emit lib|header|obj`, SPEC §7) as a C programmer
//! uses them: compile, link with the system `cc` exactly as the SPEC says, run, and compare
//! with `nnc run --backend jit` bit for bit.

mod common;

use assert_cmd::Command;
use common::repo;
use npyz::WriterBuilder;
use std::path::{Path, PathBuf};

fn nnc(args: &[&str]) -> std::process::Output {
    let o = Command::cargo_bin("nnc").unwrap().current_dir(repo()).env("NO_COLOR", "1").args(args).output().unwrap();
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "nnc panicked on {args:?}");
    o
}

fn ok(args: &[&str]) {
    let o = nnc(args);
    assert!(o.status.success(), "nnc {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// The system C compiler, or `None` (the tests then say so and pass).
fn c_compiler() -> Option<String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    std::process::Command::new(&cc).arg("--version").output().ok().filter(|o| o.status.success()).map(|_| cc)
}

/// `(name, element count)` of the header's inputs or outputs (`kind` = "INPUT"/"OUTPUT"),
/// in index order, read back from its macros.
fn header_items(header: &str, model: &str, kind: &str) -> Vec<(String, usize)> {
    let prefix = format!("#define NNC_{}_{kind}_", model.to_ascii_uppercase());
    let mut items = Vec::new();
    for line in header.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else { continue };
        if let Some((item, value)) = rest.split_once("_SIZE ") {
            items.push((item.to_string(), value.trim().parse().unwrap()));
        }
    }
    items
}

/// A C function `int function(int argc, char **argv)` that reads each input from a raw f32
/// file and writes each output to one: `argv` = `_ in0 .. inN out0 .. outM`. Named `main`,
/// it is the whole program.
fn harness(model: &str, function: &str, inputs: &[(String, usize)], outputs: &[(String, usize)]) -> String {
    let m = model.to_ascii_uppercase();
    let mut c = format!("#include <stdio.h>\n#include <stdlib.h>\n#include \"{model}.h\"\nint {function}(int argc, char **argv) {{\n");
    c += &format!("    if (argc != {}) return 10;\n", 1 + inputs.len() + outputs.len());
    c += &format!("    const float *inputs[{}];\n    float *outputs[{}];\n", inputs.len().max(1), outputs.len().max(1));
    for (i, (name, _)) in inputs.iter().enumerate() {
        c += &format!("    {{ size_t n = NNC_{m}_INPUT_{name}_SIZE; float *p = malloc(4 * n); FILE *f = fopen(argv[{}], \"rb\"); if (!f || fread(p, 4, n, f) != n) return 11; fclose(f); inputs[NNC_{m}_INPUT_{name}_INDEX] = p; }}\n", 1 + i);
    }
    for (name, _) in outputs {
        c += &format!("    outputs[NNC_{m}_OUTPUT_{name}_INDEX] = malloc(4 * NNC_{m}_OUTPUT_{name}_SIZE);\n");
    }
    c += &format!("    void *ws = malloc(nnc_{model}_workspace_size());\n    int rc = nnc_{model}_run(ws, inputs, outputs);\n    if (rc != 0) return 20 + rc;\n");
    for (j, (name, _)) in outputs.iter().enumerate() {
        c += &format!("    {{ FILE *f = fopen(argv[{}], \"wb\"); if (!f || fwrite(outputs[{j}], 4, NNC_{m}_OUTPUT_{name}_SIZE, f) != NNC_{m}_OUTPUT_{name}_SIZE) return 12; fclose(f); }}\n", 1 + inputs.len() + j);
    }
    c += "    return 0;\n}\n";
    c
}

fn write_npy(path: &Path, shape: &[u64], data: &[f32]) {
    let mut w = npyz::WriteOptions::new().default_dtype().shape(shape).writer(std::fs::File::create(path).unwrap()).begin_nd().unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// One model as a library: its file, its C name, its inputs' shapes and the flags it is
/// compiled (and run) with.
struct Case<'a> {
    file: &'a str,
    model: &'a str,
    input_shapes: &'a [(&'a str, &'a [u64])],
    flags: &'a [&'a str],
}

fn library_matches_jit(cc: &str, file: &str, model: &str, input_shapes: &[(&str, &[u64])], flags: &[&str]) {
    libraries_match_jit(cc, &[Case { file, model, input_shapes, flags }]);
}

/// Compile each case's model (with its flags) as a library, link one C program with all of
/// them, run it on deterministic inputs, and compare every output with `nnc run --backend
/// jit` bit for bit.
fn libraries_match_jit(cc: &str, cases: &[Case]) {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| -> PathBuf { dir.path().join(name) };
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut program = String::new();
    let mut libraries = Vec::new();
    let mut prog_args = Vec::new();
    let mut expected = Vec::new();
    for case in cases {
        let Case { file, model, input_shapes, flags } = *case;
        let lib = d(&format!("lib{model}.a"));
        let header_path = d(&format!("{model}.h"));
        let mut args = vec!["compile", file, "--emit", "lib"];
        args.extend(flags);
        let lib_s = s(&lib);
        args.extend(["-o", &lib_s]);
        ok(&args);
        let header_s = s(&header_path);
        let mut args = vec!["compile", file, "--emit", "header", "-o", &header_s];
        args.extend(flags);
        ok(&args);
        let header = std::fs::read_to_string(&header_path).unwrap();
        let (inputs, outputs) = (header_items(&header, model, "INPUT"), header_items(&header, model, "OUTPUT"));
        assert_eq!(inputs.len(), input_shapes.len(), "{file}: inputs in the header:\n{header}");
        let function = if cases.len() == 1 { "main".to_string() } else { format!("run_{model}") };
        program += &harness(model, &function, &inputs, &outputs);
        libraries.push(format!("lib{model}.a"));

        let jit_dir = d(&format!("jit_{model}"));
        let mut run_args: Vec<String> = vec!["run".into(), file.into(), "--backend".into(), "jit".into(), "--output-dir".into(), s(&jit_dir)];
        run_args.extend(flags.iter().map(|f| f.to_string()));
        let mut args = vec!["_".to_string()];
        for (i, ((name, n), (input, shape))) in inputs.iter().zip(input_shapes).enumerate() {
            assert_eq!(name, &input.to_ascii_uppercase());
            assert_eq!(*n as u64, shape.iter().product::<u64>());
            let data: Vec<f32> = (0..*n).map(|j| (((j * 7919 + i * 31) % 1000) as f32 / 500.0) - 1.0).collect();
            let npy = d(&format!("{model}_{input}.npy"));
            write_npy(&npy, shape, &data);
            let raw = d(&format!("{model}_{input}.f32"));
            std::fs::write(&raw, data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
            run_args.extend(["--input".into(), format!("{input}={}", s(&npy))]);
            args.push(s(&raw));
        }
        let run_refs: Vec<&str> = run_args.iter().map(|a| a.as_str()).collect();
        ok(&run_refs);
        for (name, n) in &outputs {
            let out = d(&format!("{model}_{name}.out"));
            args.push(s(&out));
            let jit = jit_dir.join(format!("{}.npy", name.to_ascii_lowercase()));
            let jit = nnc_runtime::npy::read_npy(&jit).unwrap_or_else(|e| panic!("{file}: {}: {e}", jit.display())).tensor.to_f32_vec();
            assert_eq!(jit.len(), *n);
            expected.push((file, flags, name.clone(), out, jit));
        }
        prog_args.push(args);
    }
    if cases.len() > 1 {
        // `main` hands each model's function its own slice of the arguments.
        program += "int main(int argc, char **argv) {\n    int at = 0, rc;\n";
        for (case, args) in cases.iter().zip(&prog_args) {
            program += &format!("    if (at + {n} > argc) return 13;\n    if ((rc = run_{m}({n}, argv + at)) != 0) return rc;\n    at += {n} - 1;\n", n = args.len(), m = case.model);
        }
        program += "    return 0;\n}\n";
    }
    std::fs::write(d("main.c"), program).unwrap();
    let exe = d("prog");
    // Exactly SPEC §7's link line (with every library), plus where the files are.
    let build = std::process::Command::new(cc).current_dir(dir.path()).arg("main.c").args(&libraries).args(["-lm", "-lpthread", "-o"]).arg(&exe).output().unwrap();
    assert!(build.status.success(), "{libraries:?}: cc failed:\n{}", String::from_utf8_lossy(&build.stderr));
    // The program's own arguments: each model's after the first's `_` (argv[0]).
    let args: Vec<&String> = prog_args.iter().flat_map(|a| &a[1..]).collect();
    let ran = std::process::Command::new(&exe).args(&args).output().unwrap();
    assert_eq!(ran.status.code(), Some(0), "{libraries:?}: the C program failed: {}", String::from_utf8_lossy(&ran.stderr));
    for (file, flags, name, out, jit) in &expected {
        let c_bytes = std::fs::read(out).unwrap();
        let c: Vec<f32> = c_bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(c.len(), jit.len(), "{file}: output {name}");
        for (i, (a, b)) in c.iter().zip(jit).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{file} {flags:?}: output {name}[{i}]: C {a} vs JIT {b}");
        }
    }
}

#[test]
fn c_programs_linked_with_the_library_compute_what_the_jit_computes() {
    let Some(cc) = c_compiler() else {
        eprintln!("skipped: no C compiler (`cc --version` failed)");
        return;
    };
    let weights = ["--random-weights", "3"];
    let w = |extra: &[&'static str]| -> Vec<&'static str> { weights.iter().copied().chain(extra.iter().copied()).collect() };
    library_matches_jit(&cc, "examples/lenet5.nn", "lenet5", &[("image", &[1, 1, 28, 28])], &w(&[]));
    library_matches_jit(&cc, "examples/mlp.nn", "mlp", &[("x", &[1, 784])], &w(&[]));
    // Constants of every packed kind: sparse rows, int8 panels and scale tables, LSTM weights,
    // channel-vector filters (MobileNetV2's depthwise), attention and layer norm.
    library_matches_jit(&cc, "examples/mlp.nn", "mlp", &[("x", &[1, 784])], &w(&["--prune", "magnitude:0.9"]));
    library_matches_jit(&cc, "examples/lenet5.nn", "lenet5", &[("image", &[1, 1, 28, 28])], &w(&["--quantize", "int8"]));
    library_matches_jit(&cc, "examples/lstm.nn", "lstm", &[("x", &[16, 1, 32])], &w(&[]));
    library_matches_jit(&cc, "examples/transformer.nn", "transformer", &[("x", &[1, 128, 256])], &w(&[]));
    library_matches_jit(&cc, "examples/mobilenet_v2.nn", "mobilenet_v2", &[("image", &[1, 3, 224, 224])], &w(&[]));
    // int8 depthwise convolutions, the input's quantization and the global average pool
    // of a quantized graph (summed as the interpreter sums it) on the runtime's kernels.
    library_matches_jit(&cc, "examples/mobilenet_v2.nn", "mobilenet_v2", &[("image", &[1, 3, 224, 224])], &w(&["--quantize", "int8"]));
    // The float ops of a quantized transformer (GELU, layer norms, attention) and LSTM on
    // the runtime's copies of the interpreter's definitions.
    library_matches_jit(&cc, "examples/transformer.nn", "transformer", &[("x", &[1, 128, 256])], &w(&["--quantize", "int8"]));
    library_matches_jit(&cc, "examples/lstm.nn", "lstm", &[("x", &[16, 1, 32])], &w(&["--quantize", "int8"]));
    // A quantized classifier's softmax, on the runtime's copy of the interpreter's.
    let dir = tempfile::tempdir().unwrap();
    let classifier = dir.path().join("classifier.nn");
    std::fs::write(&classifier, "model classifier {\n    input x: f32[4, 16]\n    output y = softmax(dense(x, units=8))\n}\n").unwrap();
    library_matches_jit(&cc, classifier.to_str().unwrap(), "classifier", &[("x", &[4, 16])], &w(&["--quantize", "int8"]));
    // Trained weights from a file, a symbolic batch bound by --dim.
    library_matches_jit(&cc, "examples/digits_cnn/digits_cnn.nn", "digits_cnn", &[("x", &[4, 1, 8, 8])], &["--weights", "examples/digits_cnn/digits_cnn.safetensors", "--dim", "N=4"]);
}

/// Libraries of different models link into one program: the runtime's members are the
/// same in each (one nnc build), so the linker takes each entry point from the first archive
/// that defines it, and the later models call those kernels.
#[test]
fn libraries_of_several_models_link_into_one_program() {
    let Some(cc) = c_compiler() else {
        eprintln!("skipped: no C compiler (`cc --version` failed)");
        return;
    };
    let w = &["--random-weights", "5"];
    // Each later model calls kernels the earlier ones do not (the LSTM step, sparse rows).
    libraries_match_jit(
        &cc,
        &[
            Case { file: "examples/lenet5.nn", model: "lenet5", input_shapes: &[("image", &[1, 1, 28, 28])], flags: w },
            Case { file: "examples/lstm.nn", model: "lstm", input_shapes: &[("x", &[16, 1, 32])], flags: w },
            Case { file: "examples/mlp.nn", model: "mlp", input_shapes: &[("x", &[1, 784])], flags: &["--random-weights", "5", "--prune", "magnitude:0.9"] },
        ],
    );
}

/// Null pointers are refused with 1 before anything is read or written.
#[test]
fn null_pointers_are_refused() {
    let Some(cc) = c_compiler() else {
        eprintln!("skipped: no C compiler (`cc --version` failed)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&["compile", "examples/mlp.nn", "--random-weights", "1", "--emit", "lib", "-o", d.join("libmlp.a").to_str().unwrap()]);
    ok(&["compile", "examples/mlp.nn", "--emit", "header", "-o", d.join("mlp.h").to_str().unwrap()]);
    let main = r#"#include <stdio.h>
#include <stdlib.h>
#include "mlp.h"
int main(void) {
    static float x[NNC_MLP_INPUT_X_SIZE], y[NNC_MLP_OUTPUT_LOGITS_SIZE];
    void *ws = malloc(nnc_mlp_workspace_size());
    const float *in[1] = {x}, *no_in[1] = {NULL};
    float *out[1] = {y}, *no_out[1] = {NULL};
    printf("%d %d %d %d %d %d\n", nnc_mlp_run(NULL, in, out), nnc_mlp_run(ws, NULL, out), nnc_mlp_run(ws, in, NULL),
           nnc_mlp_run(ws, no_in, out), nnc_mlp_run(ws, in, no_out), nnc_mlp_run(ws, in, out));
    return 0;
}
"#;
    std::fs::write(d.join("main.c"), main).unwrap();
    let build = std::process::Command::new(&cc).current_dir(d).args(["main.c", "libmlp.a", "-lm", "-lpthread", "-o", "prog"]).output().unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let ran = std::process::Command::new(d.join("prog")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "1 1 1 1 1 0\n");
}

#[test]
fn the_object_alone_defines_the_entry_points_and_imports_the_runtime() {
    use object::{Object, ObjectSymbol};
    let dir = tempfile::tempdir().unwrap();
    let obj = dir.path().join("lenet5.o");
    ok(&["compile", "examples/lenet5.nn", "--random-weights", "1", "--emit", "obj", "-o", obj.to_str().unwrap()]);
    let bytes = std::fs::read(&obj).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    let global = |name: &str| file.symbols().find(|s| s.name() == Ok(name)).map(|s| (s.is_definition(), s.is_global()));
    assert_eq!(global("nnc_lenet5_run"), Some((true, true)));
    assert_eq!(global("nnc_lenet5_workspace_size"), Some((true, true)));
    assert_eq!(global("nnc_cpu_features").map(|s| s.0), Some(false), "runtime entry points are left to the library");
    assert!(file.symbols().any(|s| s.name() == Ok("nnc_gemm") && s.is_undefined()));
}

#[test]
fn models_the_library_cannot_hold_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib.a");
    let lib = lib.to_str().unwrap();
    // No weights: a library bakes them in, so they are required.
    let o = nnc(&["compile", "examples/lenet5.nn", "--emit", "lib", "-o", lib]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no weights were given"));
    // bf16 values need rounding the library does not do.
    let o = nnc(&["compile", "examples/mlp.nn", "--random-weights", "1", "--quantize", "bf16", "--emit", "lib", "-o", lib]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot be compiled ahead of time"), "{err}");
    // A chain of float ops fused in a quantized graph (a sigmoid, then a scale) has the
    // interpreter's bits only inside nnc.
    let model = dir.path().join("chain.nn");
    std::fs::write(&model, "model m {\n    input x: f32[1, 16]\n    output y = sigmoid(dense(x, units=8)) * 2\n}\n").unwrap();
    let o = nnc(&["compile", model.to_str().unwrap(), "--random-weights", "1", "--quantize", "int8", "--emit", "lib", "-o", lib]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("runs on the interpreter's reference kernel"), "{err}");
}
