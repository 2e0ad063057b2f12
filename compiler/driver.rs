//! The pipeline in one place, as stages: source text → AST → typed graph ([`build_graph`],
//! or [`parse`] and [`elaborate`] when the caller needs the AST in between), weights bound
//! ([`bind`]), passes run ([`optimize`]), native code ([`compile`], every stage at once).
//! The CLI, the tests and embedding applications all go through here; none of them strings
//! the compiler's modules together itself.

use crate::diagnostics::Diagnostic;
use crate::elaborate::{self, DimBindings};
use crate::ir::Graph;
use crate::syntax::{self, ast};
use std::path::Path;

/// A source file, checked to be UTF-8.
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, Diagnostic> {
        let name = path.display().to_string();
        let bytes = nnc_runtime::read_regular_file(path).map_err(|e| Diagnostic::error(format!("cannot read {name}: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Diagnostic::error(format!("{name} is not valid UTF-8 (invalid byte at offset {})", e.utf8_error().valid_up_to()))
                .with_help("nnc sources must be UTF-8 text")
        })?;
        Ok(Source { name, text })
    }

    pub fn from_string(name: impl Into<String>, text: impl Into<String>) -> Source {
        Source { name: name.into(), text: text.into() }
    }
}

/// Parse a source; errors are every syntax error found.
pub fn parse(src: &Source) -> Result<ast::File, Vec<Diagnostic>> {
    let (file, diags) = syntax::parse(&src.text);
    if diags.is_empty() {
        Ok(file)
    } else {
        Err(diags)
    }
}

/// The most memory a model may need to run (parameters plus the peak of live activations),
/// checked before any weight is drawn or loaded: past it the process would be killed, which is
/// worse than an error. The machine class nnc targets has 24 GiB.
pub const MEMORY_BUDGET_BYTES: u64 = 16 << 30;

/// Refuse a model whose parameters and live activations together exceed the budget.
pub fn check_memory_budget(graph: &Graph) -> Result<(), Diagnostic> {
    let s = crate::summary::summarize(graph);
    // Parameters are stored as f32 whatever their dtype's width.
    let need = s.params.saturating_mul(4).saturating_add(s.peak_activation_bytes);
    if need > MEMORY_BUDGET_BYTES {
        return Err(Diagnostic::error(format!(
            "running model `{}` needs {} ({} of parameters, {} of live activations), more than the {} nnc allows",
            graph.name,
            crate::summary::human_bytes(need),
            crate::summary::human_bytes(s.params.saturating_mul(4)),
            crate::summary::human_bytes(s.peak_activation_bytes),
            crate::summary::human_bytes(MEMORY_BUDGET_BYTES)
        )));
    }
    Ok(())
}

/// Parse and elaborate the selected model.
pub fn build_graph(src: &Source, model: Option<&str>, dims: &DimBindings) -> Result<Graph, Vec<Diagnostic>> {
    let file = parse(src)?;
    elaborate(&file, model, dims)
}

/// Elaborate the model `model` (or the only one) of a parsed file.
pub fn elaborate(file: &ast::File, model: Option<&str>, dims: &DimBindings) -> Result<Graph, Vec<Diagnostic>> {
    let m = elaborate::select_model(file, model).map_err(|d| vec![d])?;
    elaborate::elaborate(file, m, dims)
}

/// Where a model's weights come from.
pub enum Weights<'a> {
    /// A safetensors file.
    File(&'a Path),
    /// Tensors already read.
    Tensors(nnc_runtime::weights::WeightsFile),
    /// Deterministic synthetic weights (`--random-weights SEED`).
    Random(u64),
}

/// Bind a model's parameters, after checking it fits the memory budget (weights are drawn or
/// loaded only then). Returns the warnings (unused tensors in a file).
pub fn bind(graph: &mut Graph, weights: Weights) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
    check_memory_budget(graph).map_err(|d| vec![d])?;
    match weights {
        Weights::File(path) => {
            let tensors = nnc_runtime::weights::read_safetensors(path).map_err(|e| vec![Diagnostic::error(e.to_string())])?;
            crate::weights::bind_weights(graph, tensors, &path.display().to_string())
        }
        Weights::Tensors(tensors) => crate::weights::bind_weights(graph, tensors, "weights"),
        Weights::Random(seed) => {
            let tensors = crate::weights::random_weights(graph, seed);
            crate::weights::bind_weights(graph, tensors, "random weights")
        }
    }
}

/// Run the passes enabled at `opt_level` for where the graph is going (`cx`), with
/// `instrument` called around each (IR dumps, pass timing). The verifier runs after every
/// pass in debug builds.
pub fn optimize(graph: &mut Graph, opt_level: u8, cx: &crate::passes::PassContext, instrument: &mut dyn crate::passes::Instrumentation) -> Result<(), crate::passes::PassError> {
    crate::passes::run_pipeline(graph, opt_level, cx, cfg!(debug_assertions), instrument)
}

/// Everything [`compile`] needs besides the source and the weights.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// The model to compile when the source defines several.
    pub model: Option<String>,
    /// Sizes of symbolic dimensions.
    pub dims: DimBindings,
    /// `-O` level, 0 to 3.
    pub opt_level: u8,
    pub jit: crate::jit::JitOptions,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { model: None, dims: DimBindings::new(), opt_level: 2, jit: Default::default() }
    }
}

/// Why [`compile`] failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source or the weights have errors; the text is the rendered diagnostics.
    #[error("{0}")]
    Diagnostics(String),
    #[error(transparent)]
    Jit(#[from] crate::jit::JitError),
    #[error(transparent)]
    Pass(#[from] crate::passes::PassError),
}

/// Compile a model to native code in one call: parse, elaborate, bind `weights`, optimize and
/// JIT-compile. The result runs many times, from any thread.
pub fn compile(src: &Source, weights: nnc_runtime::weights::WeightsFile, options: &CompileOptions) -> Result<crate::jit::Executable, Error> {
    let render = |d: &[Diagnostic]| crate::diagnostics::render(d, &src.name, &src.text, false);
    let mut graph = build_graph(src, options.model.as_deref(), &options.dims).map_err(|d| Error::Diagnostics(render(&d)))?;
    bind(&mut graph, Weights::Tensors(weights)).map_err(|d| Error::Diagnostics(render(&d)))?;
    // The target the JIT compiles for (microkernels, sparse kernels, kernels asked for).
    let target = options.jit.target();
    optimize(&mut graph, options.opt_level, &crate::passes::PassContext { cpu: Some(&target), quantize: None, bf16: false, prune: None }, &mut crate::passes::Each(Vec::new()))?;
    Ok(crate::jit::compile(&graph, &options.jit)?)
}
