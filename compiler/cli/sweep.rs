//! `nnc sweep`: time the model on every configuration of a grid (SPEC §6), in parallel and
//! without computing values; print the rows sorted by latency with the Pareto-optimal ones
//! marked, and write them as CSV or JSON lines and as a latency–energy chart.

use super::args::{self, SweepArgs};
use super::pipeline::{accel_config, blocks_for_array, optimize, prepare};
use super::{write_output, CmdResult, Failure, Session};
use crate::accel::config::ElemType;
use crate::accel::AccelConfig;
use crate::diagnostics::Diagnostic;
use crate::explore::{sweep::{self, Row, COLUMNS}, Grid};
use crate::ir::Graph;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

pub(super) fn sweep(session: &mut Session, a: &SweepArgs) -> CmdResult {
    if a.io.output_dir.is_some() {
        return Err(Diagnostic::error("a sweep times the model without computing its outputs, so --output-dir has nothing to write").with_help("use `nnc sim --output-dir` for one configuration's outputs").into());
    }
    if a.opt.threads.is_some() {
        session.emit(&[Diagnostic::warning("--threads splits the JIT's kernels; a sweep uses --jobs for its configurations")]);
    }
    let output_kind = match &a.output {
        None => None,
        Some(p) => match p.extension().and_then(|e| e.to_str()) {
            Some("csv") => Some(false),
            Some("jsonl") => Some(true),
            _ => return Err(Diagnostic::error(format!("--output {}: the file must end in .csv or .jsonl", p.display())).into()),
        },
    };
    let mut base = accel_config(&a.accel)?;
    if let Some(q) = a.opt.quant.quantize {
        // `--quantize` says what the designs compute in.
        base.set("dtype", match q {
            args::Quantize::Int8 => "int8",
            args::Quantize::Bf16 => "bf16",
        })
        .map_err(Diagnostic::error)?;
    }
    let mut grid = Grid::new(a.vary.clone(), &base).map_err(Diagnostic::error)?;
    if !a.accel.set.iter().any(|(k, _)| k == "accumulator_kib") {
        grid.scale_accumulator(&base);
    }
    let range = match a.shard {
        Some((k, n)) => grid.shard(k, n),
        None => 0..grid.len(),
    };
    let (graph, _) = prepare(session, &a.common, &a.io, &a.weights, true)?;
    // The graph each design needs, optimized once per kind: int8 designs run the quantized
    // model, float ones the float (or, with --quantize bf16, the bf16) model, and
    // `--prune blocks:F` without a size prunes in the design's fold shape.
    let mut graphs: HashMap<DesignKey, Arc<Graph>> = HashMap::new();
    for i in range.clone() {
        let Ok(c) = grid.config(&base, i) else { continue };
        if let std::collections::hash_map::Entry::Vacant(e) = graphs.entry(design_key(&a.opt, &c)) {
            e.insert(Arc::new(graph_for_design(session, &graph, &a.opt, &c)?));
        }
    }
    let jobs = a.jobs.map(|j| j as usize).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar = if std::io::stderr().is_terminal() { indicatif::ProgressBar::new(range.len() as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} configurations, {elapsed} elapsed, about {eta} left").expect("a valid template"));
    let start = Instant::now();
    let graph_for = |c: &AccelConfig| graphs.get(&design_key(&a.opt, c)).cloned().ok_or_else(|| format!("internal error: no graph for a {} design", c.dtype.name()));
    let swept = sweep::sweep(&grid, range, &base, &graph_for, jobs, &|| bar.inc(1)).map_err(Diagnostic::error)?;
    bar.finish_and_clear();
    if let Some((_, why)) = swept.invalid.first() {
        let n = swept.invalid.len();
        let d = Diagnostic::warning(format!("{n} of the grid's configurations cannot be built and are left out; the first: {why}"));
        if swept.rows.is_empty() {
            return Err(Diagnostic::error(format!("no configuration of the grid can be built ({n} tried); the first: {why}")).into());
        }
        session.emit(&[d]);
    }
    let rows = swept.rows;
    let seconds = start.elapsed().as_secs_f64();

    write_output(None, &table(&grid, &rows))?;
    let on_front = rows.iter().filter(|r| r.pareto).count();
    outln!("{} configurations timed in {:.2} s ({:.0} per second, {jobs} jobs); {on_front} Pareto-optimal (*) over latency, energy and area", rows.len(), seconds, rows.len() as f64 / seconds.max(1e-9));
    if let (Some(path), Some(jsonl)) = (&a.output, output_kind) {
        let text = if jsonl { jsonl_rows(&grid, &rows) } else { csv_rows(&grid, &rows) };
        write_output(Some(path), &text)?;
    }
    if let Some(path) = &a.plot {
        let designs: Vec<crate::charts::Design> = rows.iter().map(|r| crate::charts::Design { label: r.values.join(" "), latency_us: r.design.latency_us, energy_uj: r.design.energy_uj(), pareto: r.pareto }).collect();
        let title = format!("{}: {} accelerator designs ({})", graph.name, rows.len(), grid.axes.iter().map(|a| a.key.as_str()).collect::<Vec<_>>().join(" × "));
        let svg = crate::charts::pareto_plane(&title, &designs).map_err(Diagnostic::error)?;
        write_output(Some(path), &svg)?;
    }
    Ok(())
}

/// What a design's graph depends on: its element type and, when `--prune blocks:F` gives no
/// block size, its fold shape.
pub(super) type DesignKey = (&'static str, u32, u32);

pub(super) fn design_key(opt: &args::OptimizeArgs, c: &AccelConfig) -> DesignKey {
    let sized_by_array = opt.prune.specs.iter().any(|s| matches!(s, crate::passes::prune::PruneSpec::Blocks { block: None, .. }));
    if sized_by_array {
        (c.dtype.name(), c.rows, c.cols)
    } else {
        (c.dtype.name(), 0, 0)
    }
}

/// The model optimized for a design: in its element type, pruned blocks in its fold shape.
pub(super) fn graph_for_design(session: &Session, graph: &Graph, opt: &args::OptimizeArgs, c: &AccelConfig) -> Result<Graph, Failure> {
    let mut opt = blocks_for_array(opt, c);
    match c.dtype {
        ElemType::Int8 => opt.quant.quantize = Some(args::Quantize::Int8),
        // A float design runs the float model, bf16-rounded when --quantize bf16 asked.
        ElemType::F32 | ElemType::Bf16 if opt.quant.quantize == Some(args::Quantize::Int8) => {
            opt.quant = args::QuantizeArgs { quantize: None, calibrate: Vec::new(), calibrate_method: None };
        }
        ElemType::F32 | ElemType::Bf16 => {}
    }
    let mut g = graph.clone();
    optimize(session, &mut g, &opt, None)?;
    Ok(g)
}

fn table(grid: &Grid, rows: &[Row]) -> String {
    use std::fmt::Write;
    let keys: Vec<&str> = grid.axes.iter().map(|a| a.key.as_str()).collect();
    let widths: Vec<usize> = keys.iter().enumerate().map(|(k, key)| rows.iter().map(|r| r.values[k].len()).max().unwrap_or(0).max(key.len())).collect();
    let mut s = String::new();
    for (key, w) in keys.iter().zip(&widths) {
        let _ = write!(s, "{key:<w$}  ");
    }
    let _ = writeln!(s, "{:>12}  {:>11}  {:>11}  {:>6}  {:>10}  {:>8}  {:>8}  pareto", "cycles", "latency µs", "energy µJ", "util", "DRAM B", "on-chip", "mm²");
    for r in rows {
        for (v, w) in r.values.iter().zip(&widths) {
            let _ = write!(s, "{v:<w$}  ");
        }
        let d = &r.design;
        let _ = writeln!(
            s,
            "{:>12}  {:>11.1}  {:>11.1}  {:>5.1}%  {:>10}  {:>5} KiB  {:>8.1}  {}",
            d.total_cycles,
            d.latency_us,
            d.energy_uj(),
            100.0 * d.utilization,
            d.dram_bytes,
            d.onchip_kib,
            d.area_mm2,
            if r.pareto { "*" } else { "" }
        );
    }
    s
}

fn csv_field(v: &serde_json::Value) -> String {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn csv_rows(grid: &Grid, rows: &[Row]) -> String {
    let mut header: Vec<String> = grid.axes.iter().map(|a| a.key.clone()).collect();
    header.extend(COLUMNS.iter().map(|c| c.to_string()));
    let mut out = header.iter().map(|h| csv_field(&h.as_str().into())).collect::<Vec<_>>().join(",") + "\n";
    for r in rows {
        let fields: Vec<String> = r.values.iter().map(|v| csv_field(&v.as_str().into())).chain(r.fields().iter().map(csv_field)).collect();
        out += &(fields.join(",") + "\n");
    }
    out
}

fn jsonl_rows(grid: &Grid, rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        let mut obj = serde_json::Map::new();
        for (a, v) in grid.axes.iter().zip(&r.values) {
            obj.insert(a.key.clone(), v.as_str().into());
        }
        for (c, v) in COLUMNS.iter().zip(r.fields()) {
            obj.insert(c.to_string(), v);
        }
        out += &(serde_json::Value::Object(obj).to_string() + "\n");
    }
    out
}

