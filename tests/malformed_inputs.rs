//! Malformed input of every kind: sources, weights files, .npy files and flags. None may
//! panic, abort or hang; each gets a diagnostic and exit code 1 (2 for usage errors).

mod common;

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Case {
    name: &'static str,
    /// Source text (bytes, so invalid UTF-8 can be written).
    source: Vec<u8>,
    /// Extra files: (file name, bytes).
    files: Vec<(&'static str, Vec<u8>)>,
    /// Arguments after `nnc`; `{src}` is the source path, `{dir}` the case directory.
    args: &'static str,
    code: i32,
    /// Text the diagnostic must contain.
    expect: &'static str,
}

const LENET: &str = "model lenet5 {\n input image: f32[1, 1, 28, 28]\n c1 = conv2d(image, filters=6, kernel=5, padding=2)\n output y = relu(c1)\n}\n";

fn src(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// A safetensors file holding one f32 tensor `c1.weight` [6, 1, 5, 5] and `c1.bias` [6].
fn good_weights() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let mut m = std::collections::BTreeMap::new();
    m.insert("c1.weight".to_string(), nnc_runtime::Tensor::f32(vec![6, 1, 5, 5], vec![0.1; 150]));
    m.insert("c1.bias".to_string(), nnc_runtime::Tensor::f32(vec![6], vec![0.0; 6]));
    nnc_runtime::weights::write_safetensors(&path, &m).unwrap();
    std::fs::read(path).unwrap()
}

fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn cases() -> Vec<Case> {
    let run_lenet = "run {src} --backend interp --random-weights 1 --input image={dir}/x.npy";
    let weights = good_weights();
    let st_header_len = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    vec![
        Case { name: "invalid utf-8", source: b"model m {\n input x: f32[1]\xff\xfe\n}".to_vec(), files: vec![], args: "check {src}", code: 1, expect: "not valid UTF-8" },
        Case { name: "empty file", source: src(""), files: vec![], args: "check {src}", code: 1, expect: "defines no model" },
        Case { name: "100k nested parens", source: format!("model m {{\n input x: f32[1]\n output y = {}x{}\n}}", "(".repeat(100_000), ")".repeat(100_000)).into_bytes(), files: vec![], args: "check {src}", code: 1, expect: "nest more than" },
        Case { name: "100k nested lists", source: format!("model m {{\n input x: f32[1]\n output y = reshape(x, {}1{})\n}}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(), files: vec![], args: "check {src}", code: 1, expect: "nest more than" },
        Case { name: "100k unary minus", source: format!("model m {{\n input x: f32[1]\n output y = {}x\n}}", "-".repeat(100_000)).into_bytes(), files: vec![], args: "check {src}", code: 1, expect: "longer than" },
        Case { name: "100k-term sum", source: format!("model m {{\n input x: f32[1]\n output y = x{}\n}}", " + x".repeat(100_000)).into_bytes(), files: vec![], args: "check {src}", code: 1, expect: "longer than" },
        Case { name: "4000 nested unary minus (accepted depth)", source: format!("model m {{\n input x: f32[1]\n output y = {}x\n}}", "-".repeat(4000)).into_bytes(), files: vec![], args: "check {src}", code: 0, expect: "" },
        Case { name: "dimension beyond u64", source: src("model m {\n input x: f32[99999999999999999999999]\n output x\n}"), files: vec![], args: "check {src}", code: 1, expect: "too large" },
        Case { name: "dimensions overflow when multiplied", source: src("model m {\n input x: f32[4294967296, 4294967296, 4294967296]\n output x\n}"), files: vec![], args: "check {src}", code: 1, expect: "larger than the 4 GiB limit" },
        Case { name: "tensor above the memory limit", source: src("model m {\n input x: f32[100000, 100000]\n output x\n}"), files: vec![], args: "check {src}", code: 1, expect: "larger than the 4 GiB limit" },
        Case { name: "zero dimension", source: src("model m {\n input x: f32[0, 3]\n output x\n}"), files: vec![], args: "check {src}", code: 1, expect: "at least 1" },
        Case { name: "negative dimension", source: src("model m {\n input x: f32[-3]\n output x\n}"), files: vec![], args: "check {src}", code: 1, expect: "unexpected `-`" },
        Case { name: "implicit weight above the limit", source: src("model m {\n input x: f32[1, 100000]\n output y = dense(x, units=100000)\n}"), files: vec![], args: "check {src}", code: 1, expect: "larger than the 4 GiB tensor limit" },
        Case { name: "op result above the limit", source: src("model m {\n input x: f32[1, 1, 8, 8]\n output y = conv2d(x, filters=1, kernel=1, padding=1000000)\n}"), files: vec![], args: "check {src}", code: 1, expect: "limit" },
        Case { name: "huge integer literal", source: src("model m {\n input x: f32[1, 4]\n output y = dense(x, units=99999999999999999999)\n}"), files: vec![], args: "check {src}", code: 1, expect: "too large" },
        Case { name: "lstm hidden overflow", source: src("model m {\n input x: f32[2, 1, 4]\n output y = lstm(x, hidden=1000000000000)\n}"), files: vec![], args: "check {src}", code: 1, expect: "`y.weight_ih` of shape [4000000000000, 4] is larger than the 4 GiB tensor limit" },
        Case { name: "unterminated string", source: src("model m {\n input x: f32[1]\n output y = conv2d(x, padding=\"same)\n}"), files: vec![], args: "check {src}", code: 1, expect: "unterminated string" },
        Case { name: "stray characters", source: src("model m {\n input x: f32[1] $ ?\n output x\n}"), files: vec![], args: "check {src}", code: 1, expect: "unexpected character" },
        Case { name: "unclosed model", source: src("model m {\n input x: f32[1]\n"), files: vec![], args: "check {src}", code: 1, expect: "unexpected end of file" },
        Case { name: "lone closing brace", source: src("}"), files: vec![], args: "check {src}", code: 1, expect: "unexpected `}`" },
        Case { name: "NUL bytes", source: vec![0, 0, 0, b'\n', 0], files: vec![], args: "check {src}", code: 1, expect: "unexpected character" },
        Case { name: "mutual block recursion", source: src("block a(x) { return b(x) }\nblock b(x) { return a(x) }\nmodel m {\n input x: f32[1]\n output y = a(x)\n}"), files: vec![], args: "check {src}", code: 1, expect: "calls itself" },
        Case { name: "slice step of i64 minimum", source: src("model m {\n input x: f32[4]\n output y = slice(x, step=-9223372036854775808)\n}"), files: vec![], args: "check {src}", code: 1, expect: "too large" },
        Case { name: "slice with extreme bounds", source: src("model m {\n input x: f32[4]\n output y = slice(x, start=-9223372036854775807, end=9223372036854775807, step=9223372036854775807)\n}"), files: vec![], args: "check {src}", code: 0, expect: "" },
        Case { name: "pool padding beyond half the kernel", source: src("model m {\n input x: f32[1, 1, 4, 4]\n output y = max_pool(x, kernel=2, padding=2)\n}"), files: vec![], args: "check {src}", code: 1, expect: "more than half the kernel" },
        Case { name: "kernel larger than input", source: src("model m {\n input x: f32[1, 1, 4, 4]\n output y = conv2d(x, filters=2, kernel=9)\n}"), files: vec![], args: "check {src}", code: 1, expect: "does not fit" },
        Case { name: "truncated safetensors", source: src(LENET), files: vec![("w.safetensors", weights[..weights.len() / 2].to_vec())], args: "run {src} --backend interp --weights {dir}/w.safetensors --input image=random:1", code: 1, expect: "not a valid safetensors file" },
        Case { name: "safetensors header length lies", source: src(LENET), files: vec![("w.safetensors", [&u64::MAX.to_le_bytes()[..], &weights[8..]].concat())], args: "run {src} --backend interp --weights {dir}/w.safetensors --input image=random:1", code: 1, expect: "not a valid safetensors file" },
        Case { name: "safetensors with garbage header", source: src(LENET), files: vec![("w.safetensors", [&16u64.to_le_bytes()[..], b"{not json at all"].concat())], args: "run {src} --backend interp --weights {dir}/w.safetensors --input image=random:1", code: 1, expect: "not a valid safetensors file" },
        Case { name: "safetensors offsets beyond the data", source: src(LENET), files: vec![("w.safetensors", { let h = br#"{"c1.bias":{"dtype":"F32","shape":[6],"data_offsets":[0,1000000]}}"#; [&(h.len() as u64).to_le_bytes()[..], h, &[0u8; 24]].concat() })], args: "run {src} --backend interp --weights {dir}/w.safetensors --input image=random:1", code: 1, expect: "not a valid safetensors file" },
        Case { name: "safetensors f64 tensor", source: src(LENET), files: vec![("w.safetensors", { let h = br#"{"c1.bias":{"dtype":"F64","shape":[6],"data_offsets":[0,48]}}"#; [&(h.len() as u64).to_le_bytes()[..], h, &[0u8; 48]].concat() })], args: "run {src} --backend interp --weights {dir}/w.safetensors --input image=random:1", code: 1, expect: "cannot load" },
        Case { name: "safetensors header cut mid-way", source: src(LENET), files: vec![("w.safetensors", weights[..8 + st_header_len / 2].to_vec())], args: "run {src} --backend interp --weights {dir}/w.safetensors --input image=random:1", code: 1, expect: "not a valid safetensors file" },
        Case { name: "empty weights file", source: src(LENET), files: vec![("w.safetensors", vec![])], args: "run {src} --backend interp --weights {dir}/w.safetensors --input image=random:1", code: 1, expect: "not a valid safetensors file" },
        Case { name: "missing weights file", source: src(LENET), files: vec![], args: "run {src} --backend interp --weights {dir}/nope.safetensors --input image=random:1", code: 1, expect: "cannot read" },
        Case { name: "truncated npy data", source: src(LENET), files: vec![("x.npy", npy("<f4", "(1, 1, 28, 28)", &[0; 100]))], args: run_lenet, code: 1, expect: "promises" },
        Case { name: "npy shape overflowing u64", source: src(LENET), files: vec![("x.npy", npy("<f4", "(18446744073709551615, 18446744073709551615)", &[0; 8]))], args: run_lenet, code: 1, expect: "of shape [18446744073709551615, 18446744073709551615] is larger than the 4 GiB limit" },
        Case { name: "npy header claims a huge array", source: src(LENET), files: vec![("x.npy", npy("<f4", "(100000, 100000, 100)", &[0; 8]))], args: run_lenet, code: 1, expect: "limit" },
        Case { name: "npy bad magic", source: src(LENET), files: vec![("x.npy", b"PK\x03\x04 this is a zip".to_vec())], args: run_lenet, code: 1, expect: "not a valid .npy file" },
        Case { name: "npy cut inside header", source: src(LENET), files: vec![("x.npy", npy("<f4", "(1, 1, 28, 28)", &[])[..20].to_vec())], args: run_lenet, code: 1, expect: "not a valid .npy file" },
        Case { name: "npy integer dtype", source: src(LENET), files: vec![("x.npy", npy("<i8", "(1, 1, 28, 28)", &[0; 784 * 8]))], args: run_lenet, code: 1, expect: "nnc reads f32" },
        Case { name: "npy big-endian", source: src(LENET), files: vec![("x.npy", npy(">f4", "(1, 1, 28, 28)", &[0; 784 * 4]))], args: run_lenet, code: 1, expect: "big-endian" },
        Case { name: "npy object array", source: src(LENET), files: vec![("x.npy", npy("|O", "(1,)", &[0; 8]))], args: run_lenet, code: 1, expect: "holds '|O' data; nnc reads f32" },
        Case { name: "npy wrong shape", source: src(LENET), files: vec![("x.npy", npy("<f4", "(1, 28, 28)", &[0; 784 * 4]))], args: run_lenet, code: 1, expect: "is declared [1, 1, 28, 28]" },
        Case { name: "npy garbage header dict", source: src(LENET), files: vec![("x.npy", npy("<f4", "((((", &[0; 16]))], args: run_lenet, code: 1, expect: "not a valid .npy file" },
        Case { name: "input without =", source: src(LENET), files: vec![], args: "run {src} --backend interp --random-weights 1 --input image", code: 2, expect: "is not NAME=FILE.npy" },
        Case { name: "input with a bad seed", source: src(LENET), files: vec![], args: "run {src} --backend interp --random-weights 1 --input image=random:-4", code: 2, expect: "is not a seed" },
        Case { name: "integer tensors through arithmetic-free ops that need floats", source: src("model m {\n input x: f32[4]\n param q: i8[4]\n output z = transpose(q)\n}"), files: vec![], args: "run {src} --backend interp --random-weights 1 --input x=random:1", code: 1, expect: "works on float tensors" },
        Case { name: "zero-sized dimension from an npy file", source: src("model m {\n input x: f32[1, 3, H, 4]\n output y = global_avg_pool(x)\n}"), files: vec![("x.npy", npy("<f4", "(1, 3, 0, 4)", &[]))], args: "run {src} --backend interp --input x={dir}/x.npy", code: 1, expect: "at least 1" },
        Case { name: "unknown escape before a multi-byte character", source: "model m {\n input x: f32[1, 1, 2, 2]\n output y = conv2d(x, filters=1, kernel=1, padding=\"\\é\")\n}".as_bytes().to_vec(), files: vec![], args: "check {src}", code: 1, expect: "unknown escape" },
        Case { name: "exponential block expansion", source: { let mut s = String::from("block b0(x) { return relu(x) }\n"); for i in 1..=40 { s.push_str(&format!("block b{i}(x) {{\n a = b{}(x)\n return b{}(a)\n}}\n", i - 1, i - 1)); } s.push_str("model m {\n input x: f32[2]\n output y = b40(x)\n}\n"); s.into_bytes() }, files: vec![], args: "check {src}", code: 1, expect: "expands to more than" },
        Case { name: "deep chain of blocks", source: { let mut s = String::new(); for i in 0..5000 { s.push_str(&format!("block c{i}(x) {{ return c{}(x) }}\n", i + 1)); } s.push_str("block c5000(x) { return relu(x) }\nmodel m {\n input x: f32[2]\n output y = c0(x)\n}\n"); s.into_bytes() }, files: vec![], args: "check {src}", code: 1, expect: "nest more than 64 deep" },
        Case { name: "huge slice counted, not enumerated", source: src("model m {\n input x: f32[1073741823]\n output y = slice(x, start=1)\n}"), files: vec![], args: "check {src}", code: 0, expect: "" },
        Case { name: "source is /dev/zero", source: src(LENET), files: vec![], args: "check /dev/zero", code: 1, expect: "not a regular file" },
        Case { name: "bench count too large", source: src(LENET), files: vec![], args: "run {src} --backend interp --random-weights 1 --input image=random:1 --bench 4294967295", code: 2, expect: "4294967295 is not in 1..=1000000" },
        Case { name: "model too large to run", source: src("model m {\n input x: f32[1, 30000]\n a = dense(x, units=30000)\n b = dense(a, units=30000)\n c = dense(b, units=30000)\n d = dense(c, units=30000)\n e = dense(d, units=30000)\n output y = dense(e, units=30000)\n}"), files: vec![], args: "run {src} --backend interp --random-weights 1 --input x=random:1", code: 1, expect: "more than the 16.00 GiB nnc allows" },
        Case { name: "malformed --set", source: src(LENET), files: vec![], args: "sim {src} --set rows", code: 2, expect: "KEY=VALUE" },
        Case { name: "malformed --array", source: src(LENET), files: vec![], args: "sim {src} --array 16by16", code: 2, expect: "ROWSxCOLS" },
        Case { name: "input given twice", source: src(LENET), files: vec![], args: "run {src} --backend interp --random-weights 1 --input image=random:1 --input image=random:2", code: 1, expect: "given twice" },
        Case { name: "missing source file", source: src(LENET), files: vec![], args: "check {dir}/nope.nn", code: 1, expect: "cannot read" },
        Case { name: "source is a directory", source: src(LENET), files: vec![], args: "check {dir}", code: 1, expect: "cannot read" },
        Case { name: "output dir is a file", source: src(LENET), files: vec![("taken", vec![1])], args: "run {src} --backend interp --random-weights 1 --input image=random:1 --output-dir {dir}/taken", code: 1, expect: "cannot create" },
        Case { name: "dim of zero", source: src(LENET), files: vec![], args: "check {src} --dim N=0", code: 2, expect: "at least 1" },
        Case { name: "dim not a number", source: src(LENET), files: vec![], args: "check {src} --dim N=lots", code: 2, expect: "not a positive integer" },
        Case { name: "unknown model", source: src(LENET), files: vec![], args: "check {src} --model resnet", code: 1, expect: "no model named `resnet`" },
    ]
}

fn run_case(case: &Case, dir: &Path) -> (i32, String) {
    let src_path: PathBuf = dir.join("model.nn");
    std::fs::write(&src_path, &case.source).unwrap();
    for (name, bytes) in &case.files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let args = case.args.replace("{src}", src_path.to_str().unwrap()).replace("{dir}", dir.to_str().unwrap());
    let out = Command::cargo_bin("nnc").unwrap().args(args.split(' ')).env("NO_COLOR", "1").timeout(Duration::from_secs(60)).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn malformed_inputs_never_crash() {
    let cases = cases();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for case in &cases {
        let dir = tempfile::tempdir().unwrap();
        let (code, stderr) = run_case(case, dir.path());
        let ok = code == case.code && !stderr.contains("panicked") && stderr.contains(case.expect) && (code == 0 || !stderr.trim().is_empty());
        if !ok {
            failures.push(format!("{}: exit {code} (want {}), stderr:\n{stderr}", case.name, case.code));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n---\n"));
}
