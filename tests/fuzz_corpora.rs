//! The fuzz targets without libFuzzer: every committed corpus input and every crash
//! regression (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) replayed through the
//! target's body (`nnc::testing::fuzz`), and the targets' entry points checked against the
//! bodies so neither side drifts. `cargo fuzz` campaigns are documented in docs/testing.md.

mod common;

use nnc::testing::fuzz::TARGETS;
use std::path::PathBuf;

fn inputs(dir: &str, target: &str) -> Vec<PathBuf> {
    let path = common::repo().join("fuzz").join(dir).join(target);
    let Ok(entries) = std::fs::read_dir(&path) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_and_crash_regression_replays_cleanly() {
    let mut replayed = 0;
    for (target, body) in TARGETS {
        let corpus = inputs("corpus", target);
        assert!(!corpus.is_empty(), "fuzz/corpus/{target} is empty");
        for file in corpus.iter().chain(&inputs("regressions", target)) {
            let data = std::fs::read(file).unwrap();
            // A panic names the file, so a failing input can be run again with `cargo fuzz run`.
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{target} panics on {}", file.display());
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} inputs");
}

#[test]
fn every_target_has_an_entry_point_and_a_cargo_bin() {
    let fuzz = common::repo().join("fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
    for (target, _) in TARGETS {
        let entry = std::fs::read_to_string(fuzz.join("fuzz_targets").join(format!("{target}.rs"))).unwrap_or_else(|_| panic!("fuzz/fuzz_targets/{target}.rs is missing"));
        assert!(entry.contains(&format!("nnc::testing::fuzz::{target}(data)")), "fuzz_targets/{target}.rs does not call its body");
        assert!(manifest.contains(&format!("name = \"{target}\"\npath = \"fuzz_targets/{target}.rs\"")), "fuzz/Cargo.toml has no [[bin]] for {target}");
    }
    let entries = std::fs::read_dir(fuzz.join("fuzz_targets")).unwrap().count();
    assert_eq!(entries, TARGETS.len(), "an entry point without a body in nnc::testing::fuzz::TARGETS");
}

/// The fuzz targets still compile against the library (`cargo check` of `fuzz/`, its own
/// workspace and target directory; no libFuzzer run, no nightly toolchain).
#[test]
fn fuzz_targets_build() {
    let fuzz = common::repo().join("fuzz");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["check", "--quiet", "--bins", "--manifest-path"])
        .arg(fuzz.join("Cargo.toml"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "the fuzz targets do not build:\n{}", String::from_utf8_lossy(&out.stderr));
}
