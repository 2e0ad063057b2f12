//! `nnc compare`: the model on this CPU through the JIT (measured) and on accelerator
//! configurations (modeled), side by side (SPEC §6): latency, throughput, energy with its
//! breakdown, MACs per second, and speedup and energy ratio against the CPU run in the same
//! precision.

use super::args::{self, CompareArgs};
use super::pipeline::{jit_options, optimize, prepare};
use super::sweep::{design_key, graph_for_design, DesignKey};
use super::{fmt_time, write_output, CmdResult, Failure, Session};
use crate::accel::{self, config::ElemType, AccelConfig};
use crate::diagnostics::Diagnostic;
use crate::explore::cpu_energy;
use crate::ir::Graph;
use nnc_runtime::Tensor;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// What the CPU computes in, for a row and for matching accelerator rows to it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Precision {
    F32,
    Bf16,
    Int8,
}

impl Precision {
    fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

/// One row of the comparison.
struct Target {
    name: String,
    /// The chart's bar label.
    short: String,
    cpu: bool,
    precision: &'static str,
    /// The CPU row this one is measured against.
    baseline: Precision,
    latency_us: f64,
    energy_uj: f64,
    /// Energy by component (accelerators), µJ.
    breakdown: Option<[(&'static str, f64); 5]>,
    macs: u64,
    config: Option<AccelConfig>,
    layers: Vec<Value>,
}

pub(super) fn compare(session: &mut Session, a: &CompareArgs) -> CmdResult {
    let specs: Vec<String> = if a.configs.is_empty() { ["edge", "gemmini", "tpu-v1"].map(String::from).to_vec() } else { a.configs.clone() };
    let forced = a.opt.quant.quantize.map(|q| match q {
        args::Quantize::Int8 => ElemType::Int8,
        args::Quantize::Bf16 => ElemType::Bf16,
    });
    let mut configs = Vec::new();
    for spec in &specs {
        let mut c = AccelConfig::load(spec).map_err(Diagnostic::error)?;
        if AccelConfig::preset(spec).is_none() {
            // A file's `name` says which preset it starts from; the file itself names the target.
            c.name = std::path::Path::new(spec).file_stem().map_or(spec.clone(), |s| s.to_string_lossy().into_owned());
        }
        for (k, v) in &a.set {
            c.set(k, v).map_err(|e| Diagnostic::error(format!("--set {k}={v}: {e}")))?;
        }
        if let Some(d) = forced {
            // `--quantize` says what every target computes in.
            c.set("dtype", d.name()).map_err(Diagnostic::error)?;
        }
        c.validate().map_err(|e| Diagnostic::error(format!("--config {spec}: invalid accelerator configuration: {e}")))?;
        configs.push(c);
    }
    let float = if forced == Some(ElemType::Bf16) { Precision::Bf16 } else { Precision::F32 };
    let baseline_of = |d: ElemType| if d == ElemType::Int8 { Precision::Int8 } else { float };
    let mut precisions: Vec<Precision> = Vec::new();
    if forced != Some(ElemType::Int8) {
        precisions.push(float);
    }
    if configs.iter().any(|c| c.dtype == ElemType::Int8) || forced == Some(ElemType::Int8) {
        precisions.push(Precision::Int8);
    }

    let (graph, inputs) = prepare(session, &a.common, &a.io, &a.weights, true)?;
    let threads = a.opt.threads.unwrap_or(1) as usize;
    let watts = cpu_energy::cpu_watts(threads, a.cpu_watts);
    let mut targets = Vec::new();
    for &p in &precisions {
        targets.push(measure_cpu(session, &graph, &inputs, a, p, watts)?);
    }
    let mut graphs: std::collections::HashMap<DesignKey, Arc<Graph>> = Default::default();
    for c in &configs {
        let g = match graphs.entry(design_key(&a.opt, c)) {
            std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Arc::new(graph_for_design(session, &graph, &a.opt, c)?)).clone(),
        };
        targets.push(model_accel(&g, c, baseline_of(c.dtype))?);
    }

    let cpu_row = |p: Precision| targets.iter().find(|t| t.cpu && t.precision == p.name()).map(|t| (t.latency_us, t.energy_uj));
    let ratios: Vec<(f64, f64)> = targets.iter().map(|t| cpu_row(t.baseline).map_or((1.0, 1.0), |(l, e)| (l / t.latency_us, e / t.energy_uj))).collect();
    write_output(None, &table(&targets, &ratios, watts, threads))?;
    if a.per_layer {
        write_output(None, &per_layer_table(&targets))?;
    }
    if let Some(path) = &a.report {
        let list: Vec<Value> = targets
            .iter()
            .zip(&ratios)
            .map(|(t, (speedup, energy_ratio))| {
                json!({
                    "name": t.name,
                    "kind": if t.cpu { "cpu" } else { "accel" },
                    "precision": t.precision,
                    "latency_us": t.latency_us,
                    "inferences_per_s": 1e6 / t.latency_us,
                    "energy_uj": t.energy_uj,
                    "energy_breakdown_uj": t.breakdown.map(|b| b.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()),
                    "macs": t.macs,
                    "macs_per_s": t.macs as f64 / (t.latency_us * 1e-6),
                    "baseline": format!("cpu {}", t.baseline.name()),
                    "speedup": speedup,
                    "energy_ratio": energy_ratio,
                    "config": t.config.as_ref().map(|c| serde_json::to_value(c).expect("configs serialize")),
                    "layers": t.layers,
                })
            })
            .collect();
        let report = json!({ "model": graph.name, "cpu_watts": watts, "threads": threads, "cpu": crate::target::cpu_model_name(), "targets": list });
        write_output(Some(path), &(serde_json::to_string_pretty(&report).expect("reports serialize") + "\n"))?;
    }
    if let Some(path) = &a.plot {
        let bars: Vec<crate::charts::Bar> = targets.iter().map(|t| crate::charts::Bar { name: t.short.clone(), cpu: t.cpu, latency_us: t.latency_us, energy_uj: t.energy_uj }).collect();
        let svg = crate::charts::compare_bars(&format!("{}: this CPU (measured) and accelerators (modeled)", graph.name), &bars).map_err(Diagnostic::error)?;
        write_output(Some(path), &svg)?;
    }
    Ok(())
}

/// The JIT on this CPU: median latency over repeated runs, per-kernel times from one
/// profiled run, energy from the power model.
fn measure_cpu(session: &Session, graph: &Graph, inputs: &[Tensor], a: &CompareArgs, p: Precision, watts: f64) -> Result<Target, Failure> {
    let mut g = graph.clone();
    let mut opt = a.opt.clone();
    opt.quant.quantize = match p {
        Precision::F32 => None,
        Precision::Bf16 => Some(args::Quantize::Bf16),
        Precision::Int8 => Some(args::Quantize::Int8),
    };
    if p != Precision::Int8 {
        opt.quant.calibrate.clear();
        opt.quant.calibrate_method = None;
    }
    let target = super::pipeline::cpu_target(&a.opt);
    optimize(session, &mut g, &opt, Some(&target))?;
    let macs = graph_macs(&g);
    let exe = crate::jit::compile(&g, &jit_options(&a.opt)).map_err(|e| Diagnostic::error(e.to_string()))?;
    let mut ws = exe.workspace();
    let jit_err = |e: crate::jit::JitError| Failure::from(Diagnostic::error(e.to_string()));
    // Every run computes into the first run's outputs, as an application running the model
    // in a loop would (`Executable::run_into`): fresh result buffers are page faults.
    let mut outputs = exe.run(&mut ws, inputs).map_err(jit_err)?;
    let mut times = Vec::new();
    let started = Instant::now();
    loop {
        let t = Instant::now();
        exe.run_into(&mut ws, inputs, &mut outputs).map_err(jit_err)?;
        times.push(t.elapsed().as_secs_f64());
        let enough = match a.bench {
            Some(n) => times.len() >= n as usize,
            None => times.len() >= 1000 || (times.len() >= 5 && started.elapsed().as_secs_f64() > 0.5),
        };
        if enough {
            break;
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let profile = exe.run_profiled(&mut ws, inputs, &mut outputs).map_err(jit_err)?;
    let layers = profile.iter().map(|(name, op, t)| json!({ "name": name, "op": op, "latency_us": t * 1e6 })).collect();
    let threads = a.opt.threads.unwrap_or(1);
    Ok(Target {
        name: format!("cpu {} ({} thread{})", p.name(), threads, if threads == 1 { "" } else { "s" }),
        short: format!("CPU {}", p.name()),
        cpu: true,
        precision: p.name(),
        baseline: p,
        latency_us: median * 1e6,
        energy_uj: cpu_energy::energy_uj(watts, median),
        breakdown: None,
        macs,
        config: None,
        layers,
    })
}

/// One accelerator configuration, timed without values.
fn model_accel(graph: &Arc<Graph>, c: &AccelConfig, baseline: Precision) -> Result<Target, Failure> {
    let program = accel::lower_for_timing(graph, c).map_err(|e| Diagnostic::error(format!("{}: {e}", c.name)))?;
    let t = accel::time(&program).map_err(|e| Diagnostic::error(format!("{}: {e}", c.name)))?;
    let e = t.counters.energy(&c.energy);
    let layers = program
        .layers
        .iter()
        .zip(&t.layer_cycles)
        .zip(&t.layer_counters)
        .map(|((l, &cycles), lc)| json!({ "name": l.name, "op": l.op, "latency_us": c.latency_us(cycles), "energy_uj": lc.energy(&c.energy).total * 1e-6, "macs": l.macs }))
        .collect();
    // The model's MACs, as for the CPU rows (zero folds an array skips still count as work
    // the model asks for, so MAC/s compares like with like).
    let model_macs: u64 = program.layers.iter().map(|l| l.macs).sum();
    Ok(Target {
        name: format!("{} ({}x{} {})", c.name, c.rows, c.cols, c.dtype.name()),
        short: c.name.clone(),
        cpu: false,
        precision: c.dtype.name(),
        baseline,
        latency_us: c.latency_us(t.total_cycles),
        energy_uj: e.total * 1e-6,
        breakdown: Some([("mac", e.mac * 1e-6), ("vector", e.vector * 1e-6), ("scratchpad", e.scratchpad * 1e-6), ("accumulator", e.accumulator * 1e-6), ("dram", e.dram * 1e-6)]),
        macs: model_macs,
        config: Some(c.clone()),
        layers,
    })
}

/// Each layer's latency on every target (µs), rows in order of first appearance. Layers
/// are matched by node name; a target that has no such layer (the CPU fused it into
/// another, or an int8 graph's `quantize`) shows `-`.
fn per_layer_table(targets: &[Target]) -> String {
    use std::fmt::Write;
    let mut names: Vec<&str> = Vec::new();
    for t in targets {
        for l in &t.layers {
            let n = l["name"].as_str().unwrap_or("");
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let width = names.iter().map(|n| n.len()).max().unwrap_or(5).max(5);
    let cols: Vec<usize> = targets.iter().map(|t| t.short.len().max(9)).collect();
    let mut s = format!("\n{:<width$}", "layer (µs)");
    for (t, w) in targets.iter().zip(&cols) {
        let _ = write!(s, "  {:>w$}", t.short);
    }
    s.push('\n');
    for n in names {
        let _ = write!(s, "{n:<width$}");
        for (t, w) in targets.iter().zip(&cols) {
            let cell = t.layers.iter().find(|l| l["name"].as_str() == Some(n)).and_then(|l| l["latency_us"].as_f64()).map_or("-".to_string(), |v| format!("{v:.1}"));
            let _ = write!(s, "  {cell:>w$}");
        }
        s.push('\n');
    }
    s
}

/// Microjoules as µJ, mJ or J.
fn fmt_energy(uj: f64) -> String {
    if uj >= 1e6 {
        format!("{:.3} J", uj * 1e-6)
    } else if uj >= 1e3 {
        format!("{:.3} mJ", uj * 1e-3)
    } else {
        format!("{uj:.1} µJ")
    }
}

fn graph_macs(g: &Graph) -> u64 {
    g.node_ids().filter_map(|id| g.node(id).op().map(|op| op.macs(&g.operand_types(id), &g.node(id).ty))).sum()
}

fn table(targets: &[Target], ratios: &[(f64, f64)], watts: f64, threads: usize) -> String {
    use std::fmt::Write;
    let width = targets.iter().map(|t| t.name.len()).max().unwrap_or(6).max(6);
    let mut s = format!("{:<width$}  {:>10}  {:>10}  {:>12}  {:>10}  {:>8}  {:>8}  energy breakdown\n", "target", "latency", "inf/s", "energy/inf", "MAC/s", "speedup", "energy÷");
    for (t, (speedup, energy_ratio)) in targets.iter().zip(ratios) {
        let breakdown = match &t.breakdown {
            Some(parts) => parts.iter().filter(|(_, v)| *v > 0.0).map(|(k, v)| format!("{k} {:.0}%", 100.0 * v / t.energy_uj)).collect::<Vec<_>>().join(", "),
            None => format!("{watts:.2} W × time"),
        };
        let _ = writeln!(
            s,
            "{:<width$}  {:>10}  {:>10.1}  {:>12}  {:>10}  {:>7.2}×  {:>7.2}×  {breakdown}",
            t.name,
            fmt_time(t.latency_us * 1e-6),
            1e6 / t.latency_us,
            fmt_energy(t.energy_uj),
            crate::charts::si(t.macs as f64 / (t.latency_us * 1e-6)),
            speedup,
            energy_ratio,
        );
    }
    let _ = writeln!(s, "speedup and energy÷ are against the CPU row of the same precision (int8 accelerators against the CPU's int8 run); CPU energy assumes {watts:.2} W for {threads} thread{} (--cpu-watts)", if threads == 1 { "" } else { "s" });
    s
}
