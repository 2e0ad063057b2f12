//! `nnc check` and `nnc summary`.

use super::args::{CommonArgs, SummaryArgs};
use super::pipeline::{bind_params, calibration, graph_for, load_with_unbound_dims_as_one};
use super::{CmdResult, Session};
use crate::diagnostics::Diagnostic;
use crate::elaborate::{self, DimBindings};
use crate::ir::Graph;
use crate::{driver, passes, quantization_error, summary};

/// `check` type-checks models with symbolic dimensions too: those not bound by `--dim` are
/// taken as 1 (a batch of one), which is what a reader of the model would try first.
pub(super) fn check(session: &mut Session, a: &CommonArgs) -> CmdResult {
    let (file, dims) = load_with_unbound_dims_as_one(session, a)?;
    let model = elaborate::select_model(&file, a.model.as_deref())?;
    elaborate::elaborate(&file, model, &dims)?;
    Ok(())
}

/// Calibration inputs the quantization error is measured on, at most.
const ERROR_RUNS: usize = 8;

pub(super) fn summary(session: &mut Session, a: &SummaryArgs) -> CmdResult {
    let graph = graph_for(session, &a.common, &DimBindings::new())?;
    let mut bound = graph.clone();
    let prune = a.prune.options();
    bind_params(session, &mut bound, &a.weights, a.quant.quantize.is_some() || !prune.is_empty())?;
    if !prune.is_empty() || !prune.skip.is_empty() {
        passes::prune::check(&bound, &prune).map_err(Diagnostic::error)?;
    }
    let bf16 = a.quant.quantize == Some(super::args::Quantize::Bf16);
    let calibration = calibration(session, &bound, &a.quant)?;
    let plan = jit_memory_plan(&bound, &prune, calibration.as_ref(), bf16);
    out!("{}", summary::summarize(&graph).with_jit_plan(plan).render());
    if !prune.is_empty() || !prune.skip.is_empty() {
        out!("{}", pruning_table(&bound, &prune).map_err(Diagnostic::error)?);
    }
    let calibration = match calibration {
        Some(c) => c,
        // bf16 needs no calibration; its error is measured on the same random inputs.
        None if bf16 => super::pipeline::random_calibration(&bound),
        None => return Ok(()),
    };
    // The float graph as quantization receives it (after the passes before it, at -O2, as
    // `nnc run` quantizes), against the quantized graph.
    let mut before = BeforePass { pass: if bf16 { "quantize-bf16" } else { "quantize-int8" }, graph: None, after: None };
    let mut optimized = bound;
    let cx = passes::PassContext { cpu: None, quantize: (!bf16).then_some(&calibration), bf16, prune: Some(&prune) };
    driver::optimize(&mut optimized, 2, &cx, &mut before).map_err(|e| Diagnostic::error(e.to_string()))?;
    let (Some(mut float), Some(mut quantized)) = (before.graph, before.after) else { return Ok(()) };
    let runs = &calibration.runs[..calibration.runs.len().min(ERROR_RUNS)];
    let layers = quantization_error::per_product(&mut float, &mut quantized, runs, calibration.observe);
    out!("{}", quantization_error::render(if bf16 { "bf16" } else { "int8" }, &layers, runs.len()));
    Ok(())
}

/// The JIT's memory plan of `bound` as `nnc run --backend jit` compiles it: -O2, one thread,
/// the same pruning and quantization, and seeded random weights where none are bound (the
/// plan depends on weight values only through pruning, which needs real ones). The reason
/// when the JIT cannot compile the model.
fn jit_memory_plan(bound: &Graph, prune: &passes::prune::PruneOptions, int8: Option<&passes::Calibration>, bf16: bool) -> Result<crate::jit::memplan::MemoryPlan, String> {
    let mut graph = bound.clone();
    if !graph.param_names().is_empty() {
        driver::bind(&mut graph, driver::Weights::Random(0)).map_err(|d| d.first().map_or_else(String::new, |d| d.message.clone()))?;
    }
    let options = crate::jit::JitOptions::default();
    let target = options.target();
    // As `nnc run` does: layouts and tiles are chosen for float graphs only.
    let cx = passes::PassContext { cpu: int8.is_none().then_some(&target), quantize: int8, bf16, prune: Some(prune) };
    driver::optimize(&mut graph, 2, &cx, &mut passes::Each(Vec::new())).map_err(|e| e.to_string())?;
    crate::jit::memory_plan(&graph, &options).map_err(|e| e.to_string())
}

/// Keeps copies of the graph as it is before and after `pass` runs: later passes (fusion)
/// change which node holds a product's value, not the value.
struct BeforePass {
    pass: &'static str,
    graph: Option<Graph>,
    after: Option<Graph>,
}

impl passes::Instrumentation for BeforePass {
    fn before_pass(&mut self, pass: &'static str, graph: &Graph) {
        if pass == self.pass {
            self.graph = Some(graph.clone());
        }
    }
    fn after_pass(&mut self, pass: &'static str, graph: &Graph) {
        if pass == self.pass {
            self.after = Some(graph.clone());
        }
    }
}

/// Each pruned weight's density after `--prune`, with totals.
fn pruning_table(graph: &Graph, prune: &passes::prune::PruneOptions) -> Result<String, String> {
    let mut pruned = graph.clone();
    passes::prune::prune(&mut pruned, prune)?;
    Ok(density_table(graph, &pruned, prune))
}

/// Per pruned layer: its weight's parameters and nonzeros, its multiply-accumulates before
/// and the ones the JIT still does after, and the kernel it runs the layer on (`sparse`
/// where it skips the zeros), with totals.
pub(super) fn density_table(original: &Graph, pruned: &Graph, prune: &passes::prune::PruneOptions) -> String {
    use std::fmt::Write;
    let before: std::collections::HashMap<String, passes::prune::Density> = passes::prune::density(original).into_iter().map(|d| (d.weight.clone(), d)).collect();
    let rows = passes::prune::density(pruned);
    let kernels = jit_kernels(pruned);
    let width = rows.iter().map(|r| r.weight.len()).max().unwrap_or(6).max(6);
    let mut s = format!(
        "\npruning: {}\n{:<width$}  {:>12}  {:>12}  {:>8}  {:>14}  {:>14}  {}\n",
        prune.specs.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
        "weight",
        "params",
        "nonzero",
        "density",
        "MACs",
        "MACs after",
        "JIT kernel"
    );
    let [mut n, mut nz, mut macs, mut after] = [0u64; 4];
    for r in &rows {
        let (params, full_macs) = before.get(&r.weight).map_or((r.params, r.macs), |b| (b.params, b.macs));
        let kernel = kernels.get(&r.layer).copied();
        // The work still done: only the nonzero weights' on the sparse kernel, all on others.
        let done = if kernel == Some(crate::kernel_plan::Kernel::Sparse) { r.nonzero_macs() } else { r.macs };
        let kernel = kernel.map_or("-".to_string(), |k| k.to_string());
        let _ = writeln!(s, "{:<width$}  {:>12}  {:>12}  {:>7.1}%  {:>14}  {:>14}  {kernel}", r.weight, summary::thousands(params), summary::thousands(r.nonzero), 100.0 * r.nonzero as f64 / params.max(1) as f64, summary::thousands(full_macs), summary::thousands(done));
        n += params;
        nz += r.nonzero;
        macs += full_macs;
        after += done;
    }
    let _ = writeln!(s, "{:<width$}  {:>12}  {:>12}  {:>7.1}%  {:>14}  {:>14}", "total", summary::thousands(n), summary::thousands(nz), 100.0 * nz as f64 / n.max(1) as f64, summary::thousands(macs), summary::thousands(after));
    let _ = writeln!(s, "MACs after: the work the JIT still does: on the `sparse` kernel only the nonzero weights' MACs, on a dense one (kept where the cost model finds it faster at that density) all of them; the accelerator skips folds whose weights are all zero, counted by `nnc sim`");
    s
}

/// The kernel the JIT runs each layer on, by layer name, after the -O2 passes for this CPU
/// with the default code generation (`summary` and `prune` take no `--ukernels` or
/// `--sparse-kernels`); fusion keeps the layer's name on the node that computes it.
fn jit_kernels(graph: &Graph) -> std::collections::HashMap<String, crate::kernel_plan::Kernel> {
    let mut g = graph.clone();
    let target = crate::target::CpuTarget::host(true);
    if passes::optimize(&mut g, 2, Some(&target), false, &mut |_, _| {}).is_err() {
        return Default::default();
    }
    g.node_ids().filter_map(|id| Some((g.node(id).name.clone(), g.node(id).kernel?))).collect()
}
