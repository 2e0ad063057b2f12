//! The interpreter against independently computed references: every op fixture (ONNX Runtime,
//! cross-checked with NumPy float64 by `tests/fixtures/gen_op_fixtures.py`), and LeNet-5 with
//! real weights against ONNX Runtime.

mod common;

use common::{compare, repo, run_fixture};

#[test]
fn every_op_fixture_matches_its_reference() {
    let root = repo().join("tests/fixtures/ops");
    let mut dirs: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    assert!(dirs.len() >= 80, "expected the full fixture set, found {}", dirs.len());
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| {
            let (got, want) = run_fixture(d);
            compare(&got, &want, 1e-4).map(|m| format!("{}: {m}", d.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} fixtures differ:\n{}", failures.len(), dirs.len(), failures.join("\n"));
}

#[test]
fn lenet5_matches_onnx_runtime_within_1e_4() {
    let (got, want) = run_fixture(&repo().join("tests/fixtures/lenet5_ort"));
    assert_eq!(compare(&got, &want, 1e-4), None);
    // Tighter than required: the reference interpreter accumulates in f32/f64 like ORT.
    let max = got[0].to_f32_vec().iter().zip(want[0].to_f32_vec()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max < 1e-5, "max |Δ| = {max}");
}
