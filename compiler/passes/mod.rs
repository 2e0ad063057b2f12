//! The optimization pipeline: one readable list of passes, each gated by the `-O` level at
//! which it starts to run.
//!
//! Every pass is a free function `fn(&mut Graph) -> bool` (true if it changed anything) in its
//! own file; passes that decide for the CPU code generator (layouts, tiles) also take the
//! [`CpuTarget`] and run only when compiling for one. Passes never change a graph's inputs or
//! outputs, nor the values the outputs take (up to float rounding). The verifier runs after
//! every pass in debug builds and tests.

mod calibration;
mod eliminate_dead_code;
mod fold_batch_norm;
mod fold_constants;
mod fuse_epilogues;
pub mod prune;
mod quantize_bf16;
mod quantize_int8;
mod select_kernels;
mod select_layouts;
mod select_tiles;

pub use eliminate_dead_code::eliminate_dead_code;
pub use fold_batch_norm::fold_batch_norm;
pub use fold_constants::fold_constants;
pub use fuse_epilogues::fuse_epilogues;
pub use calibration::{Calibration, ObserveFn, RangeMethod};
pub use quantize_bf16::quantize_bf16;
pub use quantize_int8::quantize_int8;
pub use select_kernels::select_kernels;
pub use select_layouts::select_layouts;
pub use select_tiles::select_tiles;

#[cfg(test)]
mod filetests;
#[cfg(test)]
pub mod testing;

use crate::ir::{verify::verify, Graph};
use crate::target::CpuTarget;

pub struct Pass {
    /// The name `--dump-after` takes.
    pub name: &'static str,
    /// The lowest `-O` level that runs it.
    pub min_opt_level: u8,
    pub run: PassFn,
}

#[derive(Clone, Copy)]
pub enum PassFn {
    /// Target-independent.
    Graph(fn(&mut Graph) -> bool),
    /// A decision for the CPU code generator; skipped when compiling for no CPU.
    Cpu(fn(&mut Graph, &CpuTarget) -> bool),
    /// Runs only when quantization is asked for (`--quantize int8`), at every `-O` level.
    Quantize(fn(&mut Graph, &Calibration) -> bool),
    /// Runs only when mixed precision is asked for (`--quantize bf16`), at every `-O` level.
    MixedPrecision(fn(&mut Graph) -> bool),
    /// Runs only when pruning is asked for (`--prune`), at every `-O` level.
    Prune(fn(&mut Graph, &prune::PruneOptions) -> Result<bool, String>),
}

/// What the passes may know about where the graph is going.
#[derive(Clone, Copy, Default)]
pub struct PassContext<'a> {
    /// The CPU the JIT compiles for; `None` for the interpreter and the accelerator.
    pub cpu: Option<&'a CpuTarget>,
    /// Inputs to calibrate int8 quantization on; `None` keeps the graph float.
    pub quantize: Option<&'a Calibration>,
    /// bf16 mixed precision for the matrix products (`--quantize bf16`).
    pub bf16: bool,
    /// `--prune` and `--prune-skip`; `None` or empty prunes nothing.
    pub prune: Option<&'a prune::PruneOptions>,
}

/// The pipeline, in order.
pub const PIPELINE: &[Pass] = &[
    // First: pruning ranks the weights as declared, before batch norms fold into them.
    Pass { name: "prune", min_opt_level: 0, run: PassFn::Prune(prune::prune) },
    Pass { name: "fold-batch-norm", min_opt_level: 2, run: PassFn::Graph(fold_batch_norm) },
    Pass { name: "fold-constants", min_opt_level: 1, run: PassFn::Graph(fold_constants) },
    Pass { name: "quantize-int8", min_opt_level: 0, run: PassFn::Quantize(quantize_int8) },
    Pass { name: "quantize-bf16", min_opt_level: 0, run: PassFn::MixedPrecision(quantize_bf16) },
    Pass { name: "fuse-epilogues", min_opt_level: 2, run: PassFn::Graph(fuse_epilogues) },
    Pass { name: "eliminate-dead-code", min_opt_level: 1, run: PassFn::Graph(eliminate_dead_code) },
    Pass { name: "select-layouts", min_opt_level: 2, run: PassFn::Cpu(select_layouts) },
    Pass { name: "select-kernels", min_opt_level: 1, run: PassFn::Cpu(select_kernels) },
    Pass { name: "select-tiles", min_opt_level: 1, run: PassFn::Cpu(select_tiles) },
];

pub fn pass_names() -> Vec<&'static str> {
    PIPELINE.iter().map(|p| p.name).collect()
}

/// A pass left the graph broken: a compiler bug, reported with what the verifier found.
#[derive(Debug, thiserror::Error)]
#[error("internal compiler error: the IR is invalid after pass `{pass}`:\n{problems}")]
pub struct PassError {
    pub pass: &'static str,
    pub problems: String,
}

/// Hooks the pass manager calls around every pass it runs: IR dumps (`--dump-before`,
/// `--dump-after`) and pass timing (`--time-passes`) are instrumentation, not pipeline steps.
pub trait Instrumentation {
    fn before_pass(&mut self, _pass: &'static str, _graph: &Graph) {}
    fn after_pass(&mut self, _pass: &'static str, _graph: &Graph) {}
}

/// A closure called after each pass.
pub struct AfterPass<'a>(pub &'a mut dyn FnMut(&str, &Graph));

impl Instrumentation for AfterPass<'_> {
    fn after_pass(&mut self, pass: &'static str, graph: &Graph) {
        (self.0)(pass, graph)
    }
}

/// Several instrumentations, called in order.
pub struct Each<'a>(pub Vec<&'a mut dyn Instrumentation>);

impl Instrumentation for Each<'_> {
    fn before_pass(&mut self, pass: &'static str, graph: &Graph) {
        self.0.iter_mut().for_each(|i| i.before_pass(pass, graph));
    }
    fn after_pass(&mut self, pass: &'static str, graph: &Graph) {
        self.0.iter_mut().for_each(|i| i.after_pass(pass, graph));
    }
}

/// Prints the IR before and/or after the named pass (or `all`) to stderr, under a banner
/// (`// ----- IR after fuse-epilogues -----`).
#[derive(Default)]
pub struct DumpIr {
    pub before: Option<String>,
    pub after: Option<String>,
}

impl DumpIr {
    fn matches(which: &Option<String>, pass: &str) -> bool {
        which.as_deref().is_some_and(|w| w == "all" || w == pass)
    }
}

impl Instrumentation for DumpIr {
    fn before_pass(&mut self, pass: &'static str, graph: &Graph) {
        if DumpIr::matches(&self.before, pass) {
            eprint!("// ----- IR before {pass} -----\n{}", crate::ir::print::print_graph(graph));
        }
    }
    fn after_pass(&mut self, pass: &'static str, graph: &Graph) {
        if DumpIr::matches(&self.after, pass) {
            eprint!("// ----- IR after {pass} -----\n{}", crate::ir::print::print_graph(graph));
        }
    }
}

/// The wall time of every pass that ran, in order (`--time-passes`).
#[derive(Default)]
pub struct PassTimes {
    pub times: Vec<(&'static str, std::time::Duration)>,
    started: Option<std::time::Instant>,
}

impl Instrumentation for PassTimes {
    fn before_pass(&mut self, _pass: &'static str, _graph: &Graph) {
        self.started = Some(std::time::Instant::now());
    }
    fn after_pass(&mut self, pass: &'static str, _graph: &Graph) {
        if let Some(t) = self.started.take() {
            self.times.push((pass, t.elapsed()));
        }
    }
}

impl PassTimes {
    /// A table: each pass's time and share of the total.
    pub fn render(&self) -> String {
        let total: f64 = self.times.iter().map(|(_, d)| d.as_secs_f64()).sum();
        let mut out = String::from("pass                   time      share\n");
        for (name, d) in &self.times {
            let t = d.as_secs_f64();
            out.push_str(&format!("{name:<20} {:>8.3} ms {:>6.1}%\n", t * 1e3, if total > 0.0 { 100.0 * t / total } else { 0.0 }));
        }
        out.push_str(&format!("{:<20} {:>8.3} ms\n", "total", total * 1e3));
        out
    }
}

/// Run every pass enabled at `opt_level` (the CPU passes only with a `target`); `after_pass`
/// sees the graph after each one (the `--dump-after` hook). `verify_each` runs the verifier
/// after every pass.
pub fn optimize(graph: &mut Graph, opt_level: u8, target: Option<&CpuTarget>, verify_each: bool, after_pass: &mut dyn FnMut(&str, &Graph)) -> Result<(), PassError> {
    optimize_with(graph, opt_level, &PassContext { cpu: target, quantize: None, bf16: false, prune: None }, verify_each, after_pass)
}

/// [`optimize`] with everything the passes may be told.
pub fn optimize_with(graph: &mut Graph, opt_level: u8, cx: &PassContext, verify_each: bool, after_pass: &mut dyn FnMut(&str, &Graph)) -> Result<(), PassError> {
    run_pipeline(graph, opt_level, cx, verify_each, &mut AfterPass(after_pass))
}

/// Whether `pass` runs for this level and context.
pub fn runs(pass: &Pass, opt_level: u8, cx: &PassContext) -> bool {
    opt_level >= pass.min_opt_level
        && match pass.run {
            PassFn::Graph(_) => true,
            PassFn::Cpu(_) => cx.cpu.is_some(),
            PassFn::Quantize(_) => cx.quantize.is_some(),
            PassFn::MixedPrecision(_) => cx.bf16,
            PassFn::Prune(_) => cx.prune.is_some_and(|p| !p.is_empty()),
        }
}

/// The pass manager: every pass of [`PIPELINE`] that [`runs`], in order, with `instrument`
/// called around each and the verifier after each when `verify_each`.
pub fn run_pipeline(graph: &mut Graph, opt_level: u8, cx: &PassContext, verify_each: bool, instrument: &mut dyn Instrumentation) -> Result<(), PassError> {
    for pass in PIPELINE.iter().filter(|p| runs(p, opt_level, cx)) {
        instrument.before_pass(pass.name, graph);
        match pass.run {
            PassFn::Graph(run) => {
                run(graph);
            }
            PassFn::Cpu(run) => {
                run(graph, cx.cpu.expect("`runs` checked the target"));
            }
            PassFn::Quantize(run) => {
                run(graph, cx.quantize.expect("`runs` checked the calibration"));
            }
            PassFn::MixedPrecision(run) => {
                run(graph);
            }
            PassFn::Prune(run) => {
                run(graph, cx.prune.expect("`runs` checked the options")).map_err(|problems| PassError { pass: pass.name, problems })?;
            }
        }
        if verify_each {
            verify(graph).map_err(|problems| PassError { pass: pass.name, problems })?;
        }
        instrument.after_pass(pass.name, graph);
    }
    Ok(())
}
