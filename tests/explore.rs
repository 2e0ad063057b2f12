//! `nnc compare`, `nnc sweep` and the charts (SPEC §6), driven as a user drives them: sweep
//! and compare rows against `nnc sim` on the same configurations, shards against the whole
//! grid, charts parsed as SVG and searched for their series, bad flags refused.

mod common;

use assert_cmd::Command;
use common::repo;
use serde_json::Value;
use std::path::Path;

fn nnc() -> Command {
    let mut c = Command::cargo_bin("nnc").unwrap();
    c.current_dir(repo()).env("NO_COLOR", "1").timeout(std::time::Duration::from_secs(300));
    c
}

/// (exit code, stdout, stderr); a panic fails the test.
fn run(args: &[&str]) -> (i32, String, String) {
    let o = nnc().args(args).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(!err.contains("panicked"), "nnc panicked on {args:?}:\n{err}");
    (o.status.code().unwrap_or(-1), out, err)
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "{args:?} failed:\n{err}");
    out
}

fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn sim_report(dir: &Path, args: &[&str]) -> Value {
    let report = dir.join("sim.json");
    let mut all = vec!["sim", "--report", report.to_str().unwrap()];
    all.extend_from_slice(args);
    ok(&all);
    serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Every sweep row's cycles, energy and traffic are `nnc sim`'s for that configuration, in
/// f32 and in int8 (the sweep times without values; sim runs them).
#[test]
fn sweep_rows_equal_sim_on_the_same_configuration() {
    let dir = tempfile::tempdir().unwrap();
    for (quant, extra) in [(None, vec![]), (Some("int8"), vec!["--quantize", "int8", "--set", "dtype=int8"])] {
        let out = dir.path().join("rows.jsonl");
        let mut args = vec!["sweep", "examples/lenet5.nn", "--random-weights", "3", "--vary", "array=8x8,16x16", "--vary", "dataflow=ws,os", "--vary", "accumulator_kib=64", "--output", out.to_str().unwrap()];
        if quant.is_some() {
            args.extend(["--quantize", "int8"]);
        }
        let table = ok(&args);
        assert!(table.contains("4 configurations timed"), "{table}");
        let rows = json_lines(&out);
        assert_eq!(rows.len(), 4);
        // Sorted by latency.
        assert!(rows.windows(2).all(|w| w[0]["latency_us"].as_f64() <= w[1]["latency_us"].as_f64()));
        for row in &rows {
            let (array, dataflow) = (row["array"].as_str().unwrap(), row["dataflow"].as_str().unwrap());
            let mut sim = vec!["examples/lenet5.nn", "--random-weights", "3", "--array", array, "--dataflow", dataflow, "--set", "accumulator_kib=64"];
            sim.extend(extra.iter().copied());
            let r = sim_report(dir.path(), &sim);
            assert_eq!(row["total_cycles"], r["total_cycles"], "{array} {dataflow} {quant:?}");
            assert_eq!(row["compute_cycles"], r["compute_cycles"], "{array} {dataflow} {quant:?}");
            let bytes = r["dram_bytes_read"].as_u64().unwrap() + r["dram_bytes_written"].as_u64().unwrap();
            assert_eq!(row["dram_bytes"].as_u64(), Some(bytes));
            assert!(close(row["energy_uj"].as_f64().unwrap(), r["energy_pj"]["total"].as_f64().unwrap() * 1e-6));
            assert!(close(row["latency_us"].as_f64().unwrap(), r["latency_us"].as_f64().unwrap()));
        }
    }
}

/// The shards of a grid, concatenated, are the whole grid's rows.
#[test]
fn shards_together_are_the_whole_grid() {
    let dir = tempfile::tempdir().unwrap();
    let grid = ["sweep", "examples/mlp.nn", "--random-weights", "1", "--vary", "rows=4,8,16", "--vary", "cols=4,8", "--vary", "dataflow=ws,os", "--jobs", "2"];
    let whole = dir.path().join("whole.csv");
    let mut args = grid.to_vec();
    args.extend(["--output", whole.to_str().unwrap()]);
    ok(&args);
    let lines = |p: &Path| -> Vec<String> { std::fs::read_to_string(p).unwrap().lines().map(String::from).collect() };
    let want = lines(&whole);
    assert_eq!(want.len(), 13, "a header and 12 rows");
    let mut got: Vec<String> = Vec::new();
    for k in 1..=5 {
        let part = dir.path().join(format!("part{k}.csv"));
        let shard = format!("{k}/5");
        let mut args = grid.to_vec();
        args.extend(["--shard", &shard, "--output", part.to_str().unwrap()]);
        ok(&args);
        let rows = lines(&part);
        assert_eq!(rows[0], want[0], "every shard has the header");
        got.extend(rows.into_iter().skip(1));
    }
    // Pareto marks are relative to the rows a shard sees; compare the rows without them.
    let strip = |r: &String| r.rsplit_once(',').unwrap().0.to_string();
    let mut got: Vec<String> = got.iter().map(strip).collect();
    let mut want: Vec<String> = want[1..].iter().map(strip).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

/// `nnc compare`: the CPU rows first, then one row per configuration whose latency and
/// energy are `nnc sim`'s, and ratios against the CPU row of the same precision.
#[test]
fn compare_sets_the_cpu_beside_each_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("cmp.json");
    let plot = dir.path().join("cmp.svg");
    let out = ok(&["compare", "examples/mlp.nn", "--random-weights", "2", "--input", "x=random:1", "--config", "edge", "--config", "gemmini", "--cpu-watts", "10", "--per-layer", "--report", report.to_str().unwrap(), "--plot", plot.to_str().unwrap()]);
    assert!(out.contains("cpu f32 (1 thread)") && out.contains("gemmini (16x16 int8)"), "{out}");
    // The per-layer table: a row per layer, a column per target.
    let h1 = out.lines().find(|l| l.starts_with("h1 ")).unwrap_or_else(|| panic!("no h1 row in:\n{out}"));
    assert_eq!(h1.split_whitespace().count(), 5, "{h1}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let targets = r["targets"].as_array().unwrap();
    let names: Vec<&str> = targets.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cpu f32 (1 thread)", "cpu int8 (1 thread)", "edge (32x32 f32)", "gemmini (16x16 int8)"]);
    for t in targets {
        for key in ["name", "kind", "latency_us", "energy_uj", "macs"] {
            assert!(!t[key].is_null(), "{key} missing from {t}");
        }
    }
    let cpu = &targets[0];
    assert_eq!(cpu["kind"], "cpu");
    // Energy is power × time.
    assert!(close(cpu["energy_uj"].as_f64().unwrap(), 10.0 * cpu["latency_us"].as_f64().unwrap()));
    for (t, config, extra) in [(&targets[2], "edge", vec![]), (&targets[3], "gemmini", vec!["--quantize", "int8"])] {
        let mut args = vec!["examples/mlp.nn", "--random-weights", "2", "--input", "x=random:1", "--config", config];
        args.extend(extra.iter().copied());
        let sim = sim_report(dir.path(), &args);
        assert_eq!(t["kind"], "accel");
        assert!(close(t["latency_us"].as_f64().unwrap(), sim["latency_us"].as_f64().unwrap()), "{config}");
        assert!(close(t["energy_uj"].as_f64().unwrap(), sim["energy_pj"]["total"].as_f64().unwrap() * 1e-6), "{config}");
        let baseline = if config == "gemmini" { &targets[1] } else { cpu };
        assert!(close(t["speedup"].as_f64().unwrap(), baseline["latency_us"].as_f64().unwrap() / t["latency_us"].as_f64().unwrap()));
        assert!(close(t["energy_ratio"].as_f64().unwrap(), baseline["energy_uj"].as_f64().unwrap() / t["energy_uj"].as_f64().unwrap()));
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert_svg(&svg, &["CPU f32", "CPU int8", "edge", "gemmini", "Latency per inference", "Energy per inference", "latency (µs, log scale)"]);
}

/// An SVG that parses, with these texts among its `<text>` elements.
fn assert_svg(svg: &str, texts: &[&str]) {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not well-formed SVG: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let all: Vec<String> = doc.descendants().filter(|n| n.has_tag_name("text")).map(|n| n.text().unwrap_or("").to_string()).collect();
    for t in texts {
        assert!(all.iter().any(|a| a.contains(t)), "no text `{t}` in the chart; texts: {all:?}");
    }
}

#[test]
fn charts_parse_and_carry_their_series() {
    let dir = tempfile::tempdir().unwrap();
    let (pareto, layers, roofline) = (dir.path().join("p.svg"), dir.path().join("l.svg"), dir.path().join("r.svg"));
    ok(&["sweep", "examples/lenet5.nn", "--random-weights", "1", "--vary", "array=8x8,16x16,32x32", "--vary", "dram_gbps=4,64", "--plot", pareto.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&pareto).unwrap();
    assert_svg(&svg, &["6 accelerator designs", "Pareto-optimal", "latency–energy front", "latency per inference (µs, log scale)", "energy per inference (µJ, log scale)"]);
    // Six designs: one circle each, plus the legend's markers.
    let circles = roxmltree::Document::parse(&svg).unwrap().descendants().filter(|n| n.has_tag_name("circle")).count();
    assert!((6..=8).contains(&circles), "{circles} circles");
    ok(&["sim", "examples/lenet5.nn", "--random-weights", "1", "--plot", layers.to_str().unwrap(), "--roofline", roofline.to_str().unwrap()]);
    assert_svg(&std::fs::read_to_string(&layers).unwrap(), &["c1", "logits", "compute", "stall", "MAC", "DRAM", "cycles", "energy (µJ)"]);
    assert_svg(&std::fs::read_to_string(&roofline).unwrap(), &["roof:", "MACs per DRAM byte", "MACs per cycle", "c3", "layer on the array"]);
}

/// Malformed --vary, --shard and --output values: usage errors exit 2, model/configuration
/// errors exit 1, each with a message that says what is wrong.
#[test]
fn bad_sweep_flags_are_refused_clearly() {
    let base = ["sweep", "examples/mlp.nn", "--random-weights", "1"];
    let thousand: String = (1..=1000).map(|v| v.to_string()).collect::<Vec<_>>().join(",");
    let (rows, cols) = (format!("rows={thousand}"), format!("cols={thousand}"));
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--vary", "bogus=1,2"], 1, "unknown configuration key `bogus`"),
        (vec!["--vary", "rows="], 2, "empty value"),
        (vec!["--vary", "rows"], 2, "expected KEY=V1,V2"),
        (vec!["--vary", "array=0x4"], 2, "not a positive array size"),
        (vec!["--vary", "array=16"], 2, "expected ROWSxCOLS"),
        (vec!["--vary", "dataflow=ws,diagonal"], 1, "dataflow=diagonal"),
        (vec!["--vary", "rows=4", "--vary", "rows=8"], 1, "given twice"),
        (vec!["--vary", &rows, "--vary", &cols, "--vary", "dataflow=ws,os"], 1, "2000000 configurations"),
        (vec!["--vary", "rows=4", "--shard", "0/2"], 2, "1 ≤ K ≤ N"),
        (vec!["--vary", "rows=4", "--shard", "3/2"], 2, "1 ≤ K ≤ N"),
        (vec!["--vary", "rows=4", "--output", "rows.txt"], 1, ".csv or .jsonl"),
        (vec!["--vary", "rows=4", "--output-dir", "out"], 1, "--output-dir has nothing to write"),
        (vec!["--vary", "array=64x64", "--vary", "scratchpad_kib=8"], 1, "no configuration of the grid can be built"),
        (vec![], 2, "--vary"),
    ];
    for (extra, code, message) in cases {
        let mut args = base.to_vec();
        args.extend(extra.iter().copied());
        let (got, _, err) = run(&args);
        assert_eq!(got, code, "{extra:?}: {err}");
        assert!(err.contains(message), "{extra:?}: expected `{message}` in:\n{err}");
    }
    let (code, _, err) = run(&["compare", "examples/mlp.nn", "--random-weights", "1", "--cpu-watts", "-3"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["compare", "examples/mlp.nn", "--random-weights", "1", "--config", "nosuch"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown accelerator preset `nosuch`"), "{err}");
}
