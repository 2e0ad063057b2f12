//! Filetests: `tests/filetests/*.nnir` hold a pass's input IR and its exact expected output in
//! one file:
//!
//! ```text
//! // pass: fold-batch-norm
//! graph m { ... }
//! // ----- expected -----
//! graph m { ... }
//! ```
//!
//! Each file also gets the generic pass checks (verifier, idempotence, unchanged interpreter
//! outputs). `NNC_BLESS=1 cargo test filetests` rewrites the expected halves from the current
//! output; review the diff before committing.

use super::testing::check_pass_on_graph;
use crate::ir::{parse::parse_graph, print::print_graph};
use std::path::PathBuf;

const SEPARATOR: &str = "// ----- expected -----";

#[test]
fn filetests() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).expect("tests/filetests exists").map(|e| e.expect("readable entry").path()).filter(|p| p.extension().is_some_and(|e| e == "nnir")).collect();
    files.sort();
    assert!(!files.is_empty());
    let bless = std::env::var_os("NNC_BLESS").is_some();
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable filetest");
        let (input, expected) = text.split_once(SEPARATOR).unwrap_or((&text, ""));
        let pass = input.lines().find_map(|l| l.strip_prefix("// pass: ")).unwrap_or_else(|| panic!("{}: no `// pass: NAME` line", path.display())).trim();
        let graph = parse_graph(input).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let after = check_pass_on_graph(pass, &graph);
        let got = print_graph(&after);
        if got.trim() != expected.trim() {
            if bless {
                std::fs::write(path, format!("{}{SEPARATOR}\n{got}", input.trim_end_matches('\n').to_string() + "\n")).expect("writable filetest");
            } else {
                let diff = similar::TextDiff::from_lines(expected.trim(), got.trim()).unified_diff().context_radius(2).header("expected", "got").to_string();
                failures.push(format!("{}:\n{diff}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{} filetest(s) differ (NNC_BLESS=1 to accept):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn printed_ir_parses_back_identically() {
    for example in ["lenet5", "mlp", "resnet18", "mobilenet_v2", "transformer", "lstm"] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{example}.nn"));
        let src = crate::driver::Source::read(&path).expect("example exists");
        let mut graph = crate::driver::build_graph(&src, None, &Default::default()).expect("example compiles");
        // Before and after the pipeline, which introduces `fused` ops.
        for level in [0, 2] {
            super::optimize(&mut graph, level, Some(&crate::target::CpuTarget::reference()), true, &mut |_, _| {}).expect("passes keep the IR valid");
            let text = print_graph(&graph);
            let back = parse_graph(&text).unwrap_or_else(|e| panic!("{example} -O{level}: {e}"));
            assert_eq!(print_graph(&back), text, "{example} -O{level}");
        }
    }
}
