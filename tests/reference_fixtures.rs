//! Every executor against independently computed references: every op fixture (ONNX Runtime,
//! cross-checked with NumPy float64 by `tests/fixtures/gen_op_fixtures.py`) and LeNet-5 with
//! real weights (ONNX Runtime), on the interpreter, the JIT (-O0…-O3, microkernels on and
//! off, one and two threads) and the accelerator (-O0…-O3, both dataflows). Without this
//! the JIT and the accelerator would only ever be compared with the interpreter, and the
//! accelerator's vector unit runs the interpreter's own `eval`.

mod common;

use common::{compare, load_fixture, repo};
use nnc::testing::differential::{Executor, Plan};

fn fixture_dirs() -> Vec<std::path::PathBuf> {
    let root = repo().join("tests/fixtures/ops");
    let mut dirs: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

/// The interpreter on the unoptimized graph, then every float executor of the full plan.
fn executors() -> Vec<Option<Executor>> {
    std::iter::once(None).chain(Plan::full().executors().into_iter().map(Some)).collect()
}

#[test]
fn every_op_fixture_matches_its_reference_on_every_executor() {
    let dirs = fixture_dirs();
    assert!(dirs.len() >= 80, "expected the full fixture set, found {}", dirs.len());
    let executors = executors();
    assert_eq!(executors.len(), 1 + 3 + 16 + 8);
    let mut failures = Vec::new();
    for d in &dirs {
        let (graph, inputs, want) = load_fixture(d);
        for e in &executors {
            let got = match e {
                None => nnc::interp::run(&graph, &inputs).map_err(|e| e.to_string()),
                Some(e) => e.run(&graph, &inputs),
            };
            let name = e.map_or("interp".to_string(), |e| e.to_string());
            match got {
                Ok(got) => {
                    if let Some(m) = compare(&got, &want, 1e-4) {
                        failures.push(format!("{} on {name}: {m}", d.file_name().unwrap().to_string_lossy()));
                    }
                }
                Err(err) => failures.push(format!("{} on {name}: {err}", d.file_name().unwrap().to_string_lossy())),
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} runs differ:\n{}", failures.len(), dirs.len() * executors.len(), failures.join("\n"));
}

#[test]
fn lenet5_matches_onnx_runtime_on_every_executor() {
    let (graph, inputs, want) = load_fixture(&repo().join("tests/fixtures/lenet5_ort"));
    for e in executors() {
        let got = match e {
            None => nnc::interp::run(&graph, &inputs).unwrap(),
            Some(e) => e.run(&graph, &inputs).unwrap(),
        };
        let name = e.map_or("interp".to_string(), |e| e.to_string());
        assert_eq!(compare(&got, &want, 1e-4), None, "{name}");
        // Tighter than required: every executor accumulates in f32 (or f64) like ORT.
        let max = got[0].to_f32_vec().iter().zip(want[0].to_f32_vec()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max < 1e-5, "{name}: max |Δ| = {max}");
    }
}
