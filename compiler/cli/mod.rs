//! The `nnc` command line: argument handling in `args`, the commands here. Every failure is a
//! diagnostic on stderr and exit code 1; clap's usage errors exit with 2.

pub mod args;
mod tensor_text;

use crate::diagnostics::{render, Diagnostic};
use crate::driver::{self, Source};
use crate::elaborate::{self, DimBindings};
use crate::ir::{print, Graph};
use crate::syntax::ast;
use crate::target::CpuTarget;
use crate::{interp, jit, passes, summary, weights};
use args::{AccelArgs, Backend, Cli, Command, CommonArgs, Emit, InputArgs, OptimizeArgs, Target, WeightArgs};
use crate::accel;
use clap::Parser;
use nnc_runtime::npy::{read_npy, write_npy};
use nnc_runtime::Tensor;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

/// Run the CLI on the process arguments; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    // Deeply nested but valid expressions recurse in elaboration; give that room.
    let worker = std::thread::Builder::new().stack_size(256 << 20).spawn(move || run_command(cli));
    match worker.map(|h| h.join()) {
        Ok(Ok(code)) => code,
        // A panic is a compiler bug; its message has been printed by the panic hook.
        Ok(Err(_)) => 101,
        Err(e) => {
            eprintln!("error: cannot start the compiler thread: {e}");
            1
        }
    }
}

/// Diagnostics, rendered against the source when there is one.
struct Failure {
    diags: Vec<Diagnostic>,
}

impl From<Diagnostic> for Failure {
    fn from(d: Diagnostic) -> Failure {
        Failure { diags: vec![d] }
    }
}

impl From<Vec<Diagnostic>> for Failure {
    fn from(diags: Vec<Diagnostic>) -> Failure {
        Failure { diags }
    }
}

type CmdResult = Result<(), Failure>;

/// Context for printing diagnostics: the source file, once it has been read.
struct Session {
    source: Option<Source>,
    color: bool,
}

impl Session {
    fn emit(&self, diags: &[Diagnostic]) {
        if diags.is_empty() {
            return;
        }
        let (name, text) = self.source.as_ref().map_or(("", ""), |s| (s.name.as_str(), s.text.as_str()));
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(render(diags, name, text, self.color).as_bytes());
    }
}

fn run_command(cli: Cli) -> i32 {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut session = Session { source: None, color };
    let result = match cli.command {
        Command::Check(a) => check(&mut session, &a),
        Command::Summary(a) => summary_cmd(&mut session, &a),
        Command::Compile(a) => compile(&mut session, &a),
        Command::Run(a) => run(&mut session, &a),
        Command::Sim(a) => sim(&mut session, &a),
    };
    match result {
        Ok(()) => 0,
        Err(f) => {
            session.emit(&f.diags);
            1
        }
    }
}

fn not_available(what: &str, issue: &str) -> Failure {
    Diagnostic::error(format!("{what} is not available yet in this build of nnc"))
        .with_note(format!("it arrives with {issue}"))
        .with_help("use `--backend interp` (the reference interpreter) to run models today")
        .into()
}

fn load(session: &mut Session, common: &CommonArgs) -> Result<ast::File, Failure> {
    let src = Source::read(&common.file)?;
    session.source = Some(src);
    let src = session.source.as_ref().expect("just set");
    Ok(driver::parse(src)?)
}

fn dims_from_flags(common: &CommonArgs) -> Result<DimBindings, Failure> {
    let mut dims = DimBindings::new();
    for (name, size) in &common.dims {
        if let Some(prev) = dims.insert(name.clone(), *size) {
            if prev != *size {
                return Err(Diagnostic::error(format!("--dim {name} is given twice, as {prev} and {size}")).into());
            }
        }
    }
    Ok(dims)
}

/// Parse, select and elaborate, with dims from the flags plus `extra`.
fn graph_for(session: &mut Session, common: &CommonArgs, extra: &DimBindings) -> Result<Graph, Failure> {
    let file = load(session, common)?;
    let model = elaborate::select_model(&file, common.model.as_deref())?;
    let mut dims = dims_from_flags(common)?;
    dims.extend(extra.iter().map(|(k, v)| (k.clone(), *v)));
    Ok(elaborate::elaborate(&file, model, &dims)?)
}

/// `check` type-checks models with symbolic dimensions too: those not bound by `--dim` are
/// taken as 1 (a batch of one), which is what a reader of the model would try first.
fn check(session: &mut Session, a: &CommonArgs) -> CmdResult {
    let file = load(session, a)?;
    let model = elaborate::select_model(&file, a.model.as_deref())?;
    let mut dims = dims_from_flags(a)?;
    for (_, ty) in elaborate::declared_inputs(model) {
        for d in &ty.dims {
            if let ast::Dim::Symbol(s) = d {
                dims.entry(s.name.clone()).or_insert(1);
            }
        }
    }
    elaborate::elaborate(&file, model, &dims)?;
    Ok(())
}

fn summary_cmd(session: &mut Session, a: &CommonArgs) -> CmdResult {
    let graph = graph_for(session, a, &DimBindings::new())?;
    print!("{}", summary::summarize(&graph).render());
    Ok(())
}

/// How many calibration runs at most: enough for stable ranges, bounded in time.
const MAX_CALIBRATION_RUNS: usize = 256;
/// Runs on seeded random inputs when no `--calibrate` file is given.
const RANDOM_CALIBRATION_RUNS: u64 = 4;

/// The calibration set for `--quantize int8`: `--calibrate` files split along axis 0 into
/// runs of the model's input shape, or seeded random inputs (said on stderr).
fn calibration(session: &Session, graph: &Graph, opt: &OptimizeArgs) -> Result<Option<passes::Calibration>, Failure> {
    if opt.quantize.is_none() {
        if !opt.calibrate.is_empty() {
            return Err(Diagnostic::error("--calibrate gives data for quantization, but --quantize is not set").with_help("add `--quantize int8`").into());
        }
        return Ok(None);
    }
    if !graph.param_names().is_empty() {
        return Err(Diagnostic::error("--quantize int8 quantizes the weights, but none are loaded")
            .with_help("pass `--weights FILE.safetensors`, or `--random-weights SEED`")
            .into());
    }
    if let Some(&i) = graph.inputs.iter().find(|&&i| graph.node(i).ty.dtype != nnc_runtime::DType::F32) {
        let n = graph.node(i);
        return Err(Diagnostic::error(format!("input `{}` is declared {}; --quantize int8 calibrates f32 inputs only", n.name, n.ty.dtype)).with_help("declare it f32").into());
    }
    let names: Vec<String> = graph.inputs.iter().map(|&i| graph.node(i).name.clone()).collect();
    if opt.calibrate.is_empty() {
        session.emit(&[Diagnostic::warning(format!("no --calibrate data: int8 activation ranges come from {RANDOM_CALIBRATION_RUNS} runs on seeded uniform [-1, 1) inputs"))
            .with_help("pass `--calibrate NAME=FILE.npy` with representative inputs for accurate scales")]);
        let runs = (0..RANDOM_CALIBRATION_RUNS).map(|seed| random_tensors(graph, 1_000 + seed)).collect();
        return Ok(Some(passes::Calibration { runs }));
    }
    let mut per_input: Vec<Option<Vec<Tensor>>> = vec![None; names.len()];
    for (name, file) in &opt.calibrate {
        let Some(k) = names.iter().position(|n| n == name) else {
            return Err(Diagnostic::error(format!("--calibrate names `{name}`, but model `{}` has no such input", graph.name)).with_note(format!("its inputs are {}", names.join(", "))).into());
        };
        if per_input[k].is_some() {
            return Err(Diagnostic::error(format!("--calibrate `{name}` is given twice")).into());
        }
        let arr = read_npy(Path::new(file)).map_err(|e| Diagnostic::error(e.to_string()))?;
        let ty = &graph.node(graph.inputs[k]).ty;
        let shape = arr.tensor.shape();
        let batch = ty.shape.first().copied().unwrap_or(1);
        if ty.rank() == 0 || shape.len() != ty.rank() || shape[1..] != ty.shape[1..] || shape[0] % batch != 0 || shape[0] == 0 {
            return Err(Diagnostic::error(format!(
                "{file} has shape {}, but calibration data for `{name}` must stack inputs of shape {} on axis 0",
                crate::ir::ShapeDisplay(shape),
                crate::ir::ShapeDisplay(&ty.shape)
            ))
            .into());
        }
        let data = arr.tensor.to_f32_vec();
        let chunk = ty.numel();
        let runs = (data.len() / chunk).min(MAX_CALIBRATION_RUNS);
        per_input[k] = Some((0..runs).map(|r| Tensor::f32(ty.shape.clone(), data[r * chunk..][..chunk].to_vec())).collect());
    }
    let missing: Vec<&str> = names.iter().zip(&per_input).filter(|(_, v)| v.is_none()).map(|(n, _)| n.as_str()).collect();
    if !missing.is_empty() {
        return Err(Diagnostic::error(format!("--calibrate gives no data for input{} {}", if missing.len() == 1 { "" } else { "s" }, missing.join(", "))).into());
    }
    let sets: Vec<Vec<Tensor>> = per_input.into_iter().map(|v| v.expect("checked above")).collect();
    let runs = sets.iter().map(|s| s.len()).min().unwrap_or(0);
    Ok(Some(passes::Calibration { runs: (0..runs).map(|r| sets.iter().map(|s| s[r].clone()).collect()).collect() }))
}

/// Seeded uniform [-1, 1) data of a float type: `--input NAME=random:SEED`, and the
/// calibration fallback.
fn random_tensor(ty: &crate::ir::TensorType, seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let data = (0..ty.numel()).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_f32(ty.dtype, ty.shape.clone(), data).expect("the shape was checked when the graph was built")
}

/// One random tensor per graph input, all from `seed`'s stream of seeds.
fn random_tensors(graph: &Graph, seed: u64) -> Vec<Tensor> {
    graph.inputs.iter().enumerate().map(|(i, &id)| random_tensor(&graph.node(id).ty, seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9)))).collect()
}

/// Bind parameters from `--weights` or `--random-weights`; a model with parameters needs one.
fn bind_params(session: &Session, graph: &mut Graph, w: &WeightArgs, required: bool) -> CmdResult {
    if let Some(path) = &w.weights {
        let file = path.display().to_string();
        let file_tensors = nnc_runtime::weights::read_safetensors(path).map_err(|e| Diagnostic::error(e.to_string()))?;
        let warnings = weights::bind_weights(graph, file_tensors, &file)?;
        session.emit(&warnings);
    } else if let Some(seed) = w.random_weights {
        let tensors = weights::random_weights(graph, seed);
        weights::bind_weights(graph, tensors, "random weights")?;
    } else if required {
        let n = graph.param_names().len();
        if n > 0 {
            return Err(Diagnostic::error(format!("model `{}` has {n} parameters but no weights were given", graph.name))
                .with_help("pass `--weights FILE.safetensors`, or `--random-weights SEED` for synthetic ones")
                .into());
        }
    }
    Ok(())
}

/// Run the pass pipeline; `target` is the CPU the JIT compiles for (`None` for the
/// interpreter, which needs no layouts or tiles).
fn optimize(session: &Session, graph: &mut Graph, opt: &OptimizeArgs, target: Option<&CpuTarget>) -> CmdResult {
    let calibration = calibration(session, graph, opt)?;
    let dump = opt.dump_after.as_deref();
    if let Some(pass) = dump.filter(|p| *p != "all") {
        let entry = passes::PIPELINE.iter().find(|p| p.name == pass);
        let level = entry.map_or(0, |p| p.min_opt_level);
        if opt.opt_level < level {
            eprintln!("warning: pass `{pass}` runs from -O{level}; at -O{} it does not run, so nothing is dumped", opt.opt_level);
        } else if target.is_none() && entry.is_some_and(|p| matches!(p.run, passes::PassFn::Cpu(_))) {
            eprintln!("warning: pass `{pass}` decides for the JIT and does not run for the interpreter or the accelerator, so nothing is dumped");
        } else if opt.quantize.is_none() && entry.is_some_and(|p| matches!(p.run, passes::PassFn::Quantize(_))) {
            eprintln!("warning: pass `{pass}` runs only with --quantize int8, so nothing is dumped");
        }
    }
    let mut hook = |name: &str, g: &Graph| {
        if dump == Some("all") || dump == Some(name) {
            eprint!("// ----- IR after {name} -----\n{}", print::print_graph(g));
        }
    };
    // The CPU passes decide layouts and tiles for the JIT, which runs float graphs only.
    let target = if calibration.is_some() { None } else { target };
    let cx = passes::PassContext { cpu: target, quantize: calibration.as_ref() };
    passes::optimize_with(graph, opt.opt_level, &cx, cfg!(debug_assertions), &mut hook).map_err(|e| Diagnostic::error(e.to_string()))?;
    Ok(())
}

fn jit_options(opt: &OptimizeArgs) -> jit::JitOptions {
    jit::JitOptions { ukernels: opt.ukernels == args::OnOff::On, threads: opt.threads.unwrap_or(1) as usize }
}

/// The accelerator configuration from the flags: a preset or file (default `edge`), then
/// `--set`, `--array`, `--dataflow` and `--memory`, validated.
fn accel_config(a: &AccelArgs) -> Result<accel::AccelConfig, Failure> {
    let mut config = accel::AccelConfig::load(a.config.as_deref().unwrap_or("edge")).map_err(Diagnostic::error)?;
    for (k, v) in &a.set {
        config.set(k, v).map_err(|e| Diagnostic::error(format!("--set {k}={v}: {e}")))?;
    }
    if let Some((r, c)) = a.array {
        config.rows = r;
        config.cols = c;
    }
    if let Some(d) = a.dataflow {
        config.dataflow = match d {
            args::Dataflow::Ws => accel::config::Dataflow::Ws,
            args::Dataflow::Os => accel::config::Dataflow::Os,
        };
    }
    if let Some(m) = a.memory {
        config.memory = match m {
            args::Memory::Ideal => accel::config::MemoryModel::Ideal,
            args::Memory::Modeled => accel::config::MemoryModel::Modeled,
        };
    }
    config.validate().map_err(|e| Diagnostic::error(format!("invalid accelerator configuration: {e}")))?;
    Ok(config)
}

/// Lower an optimized graph for the accelerator.
fn accel_program(graph: &Graph, config: &accel::AccelConfig) -> Result<accel::Program, Failure> {
    accel::lower(graph, config).map_err(|e| Diagnostic::error(e.to_string()).into())
}

fn compile(session: &mut Session, a: &args::CompileArgs) -> CmdResult {
    let for_accel = a.opt.target == Target::Accel || a.emit == Emit::Isa;
    if for_accel && matches!(a.emit, Emit::Clif | Emit::Asm) {
        return Err(Diagnostic::error(format!("--emit {} lists CPU code; the accelerator's program is `--emit isa`", if a.emit == Emit::Clif { "clif" } else { "asm" })).into());
    }
    let text = match a.emit {
        Emit::Obj => return Err(not_available("`--emit obj`", "ahead-of-time object files (the JIT compiles in memory)")),
        Emit::Clif | Emit::Asm => {
            let mut graph = graph_for(session, &a.common, &DimBindings::new())?;
            // Weights are baked into the code; without a file, listings use random ones.
            let w = WeightArgs { weights: a.weights.weights.clone(), random_weights: a.weights.random_weights.or(Some(0)) };
            driver::check_memory_budget(&graph)?;
            bind_params(session, &mut graph, &w, false)?;
            optimize(session, &mut graph, &a.opt, Some(&CpuTarget::host(a.opt.ukernels == args::OnOff::On)))?;
            let mut listing = jit::Listing { clif: a.emit == Emit::Clif, asm: a.emit == Emit::Asm, text: String::new() };
            jit::compile_with_listing(&graph, &jit_options(&a.opt), &mut listing).map_err(|e| Diagnostic::error(e.to_string()))?;
            listing.text
        }
        Emit::Isa => {
            let config = accel_config(&a.accel)?;
            let mut graph = graph_for(session, &a.common, &DimBindings::new())?;
            let w = WeightArgs { weights: a.weights.weights.clone(), random_weights: a.weights.random_weights.or(Some(0)) };
            driver::check_memory_budget(&graph)?;
            bind_params(session, &mut graph, &w, false)?;
            optimize(session, &mut graph, &a.opt, None)?;
            let program = accel_program(&graph, &config)?;
            if let Some(out) = &a.output {
                if out.extension().is_some_and(|e| e == "bin") {
                    return std::fs::write(out, accel::report::binary(&program)).map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", out.display())).into());
                }
            }
            accel::report::listing(&program)
        }
        Emit::Ast => {
            let file = load(session, &a.common)?;
            format!("{file:#?}\n")
        }
        Emit::IrRaw => print::print_graph(&graph_for(session, &a.common, &DimBindings::new())?),
        Emit::Ir | Emit::Dot => {
            let mut graph = graph_for(session, &a.common, &DimBindings::new())?;
            if a.weights.weights.is_some() || a.weights.random_weights.is_some() {
                driver::check_memory_budget(&graph)?;
            }
            bind_params(session, &mut graph, &a.weights, false)?;
            let cpu = (!for_accel).then(|| CpuTarget::host(a.opt.ukernels == args::OnOff::On));
            optimize(session, &mut graph, &a.opt, cpu.as_ref())?;
            if a.emit == Emit::Ir {
                print::print_graph(&graph)
            } else {
                print::print_dot(&graph)
            }
        }
    };
    write_output(a.output.as_deref(), &text)
}

fn write_output(path: Option<&Path>, text: &str) -> CmdResult {
    match path {
        Some(p) => std::fs::write(p, text).map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", p.display())).into()),
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`nnc ... | head`) is not an error worth reporting.
            let _ = out.write_all(text.as_bytes());
            Ok(())
        }
    }
}

/// An `--input` value before the model's types are known.
enum InputValue {
    File(Tensor),
    Random(u64),
}

/// Read `--input` files, check the names against the model's declared inputs, and bind
/// symbolic dimensions from the files' shapes.
/// With `random_missing`, inputs not given are seeded random data (for `nnc sim`).
fn read_inputs(session: &Session, model: &ast::Model, io: &InputArgs, dims: &mut DimBindings, random_missing: bool) -> Result<BTreeMap<String, InputValue>, Failure> {
    let declared = elaborate::declared_inputs(model);
    let names = || declared.iter().map(|(n, _)| format!("`{}`", n.name)).collect::<Vec<_>>().join(", ");
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for spec in &io.inputs {
        let name = spec.name.as_str();
        let Some((_, ty)) = declared.iter().find(|(n, _)| n.name == name) else {
            errors.push(Diagnostic::error(format!("--input names `{name}`, but model `{}` has no such input", model.name.name)).with_note(format!("its inputs are {}", names())));
            continue;
        };
        if out.contains_key(name) {
            errors.push(Diagnostic::error(format!("--input `{name}` is given twice")));
            continue;
        }
        let value = match &spec.source {
            args::InputSource::Random(seed) => InputValue::Random(*seed),
            args::InputSource::File(path) => match read_npy(path) {
                Ok(arr) => {
                    let file = path.display().to_string();
                    if arr.converted_from_f64 {
                        session.emit(&[Diagnostic::warning(format!("{file}: f64 data converted to f32"))]);
                    }
                    if let Err(d) = bind_dims_from_shape(name, &file, ty, arr.tensor.shape(), dims) {
                        errors.push(d);
                        continue;
                    }
                    InputValue::File(arr.tensor)
                }
                Err(e) => {
                    errors.push(Diagnostic::error(e.to_string()));
                    continue;
                }
            },
        };
        out.insert(name.to_string(), value);
    }
    let missing: Vec<String> = declared.iter().filter(|(n, _)| !out.contains_key(&n.name)).map(|(n, _)| format!("`{}`", n.name)).collect();
    if errors.is_empty() && !missing.is_empty() && random_missing {
        // Simulation is about time and energy: seeded data stands in for what is not given.
        session.emit(&[Diagnostic::warning(format!("no --input for {}: using seeded random data (`random:0`)", missing.join(", ")))]);
        for (n, _) in &declared {
            out.entry(n.name.clone()).or_insert(InputValue::Random(0));
        }
        return Ok(out);
    }
    if errors.is_empty() && !missing.is_empty() {
        errors.push(
            Diagnostic::error(format!("no value for input{} {}", if missing.len() == 1 { "" } else { "s" }, missing.join(", ")))
                .with_help("give each input with `--input NAME=FILE.npy`, or `--input NAME=random:SEED` for seeded random data"),
        );
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.into())
    }
}

fn bind_dims_from_shape(name: &str, file: &str, ty: &ast::TypeExpr, shape: &[usize], dims: &mut DimBindings) -> Result<(), Diagnostic> {
    let declared: Vec<String> = ty.dims.iter().map(|d| match d {
        ast::Dim::Fixed(t, _) => t.clone(),
        ast::Dim::Symbol(s) => s.name.clone(),
    }).collect();
    let mismatch = || Diagnostic::error(format!("{file} has shape {}, but input `{name}` is declared [{}]", crate::ir::ShapeDisplay(shape), declared.join(", ")));
    if shape.len() != ty.dims.len() {
        return Err(mismatch());
    }
    for (d, &size) in ty.dims.iter().zip(shape) {
        match d {
            ast::Dim::Fixed(t, _) => {
                if t.parse::<usize>().ok() != Some(size) {
                    return Err(mismatch());
                }
            }
            ast::Dim::Symbol(s) if size == 0 => {
                return Err(Diagnostic::error(format!("{file} gives `{}` = 0; dimensions must be at least 1", s.name)));
            }
            ast::Dim::Symbol(s) => match dims.get(&s.name) {
                Some(&bound) if bound != size => {
                    return Err(Diagnostic::error(format!("{file} gives `{}` = {size}, but it is already bound to {bound}", s.name)).with_help("every use of a symbolic dimension must have the same size"));
                }
                Some(_) => {}
                None => {
                    dims.insert(s.name.clone(), size);
                }
            },
        }
    }
    Ok(())
}

/// Turn input sources into tensors of the graph's input types.
fn materialize_inputs(graph: &Graph, sources: BTreeMap<String, InputValue>) -> Result<Vec<Tensor>, Failure> {
    let mut sources = sources;
    let mut out = Vec::with_capacity(graph.inputs.len());
    for &id in &graph.inputs {
        let node = graph.node(id);
        let ty = &node.ty;
        if !ty.dtype.is_float() {
            return Err(Diagnostic::error(format!("input `{}` is declared {}; nnc runs float inputs only", node.name, ty.dtype)).with_help("declare it f32").into());
        }
        let t = match sources.remove(&node.name).expect("read_inputs checked every input is given") {
            InputValue::File(t) => Tensor::from_f32(ty.dtype, ty.shape.clone(), t.to_f32_vec()).map_err(|e| Diagnostic::error(format!("input `{}`: {e}", node.name)))?,
            InputValue::Random(seed) => random_tensor(ty, seed),
        };
        out.push(t);
    }
    Ok(out)
}

/// Everything `run` and `sim` share up to having a graph and its inputs.
fn prepare(session: &mut Session, common: &CommonArgs, io: &InputArgs, w: &WeightArgs, random_missing: bool) -> Result<(Graph, Vec<Tensor>), Failure> {
    let file = load(session, common)?;
    let model = elaborate::select_model(&file, common.model.as_deref())?;
    let mut dims = dims_from_flags(common)?;
    let values = read_inputs(session, model, io, &mut dims, random_missing)?;
    let mut graph = elaborate::elaborate(&file, model, &dims)?;
    driver::check_memory_budget(&graph)?;
    let inputs = materialize_inputs(&graph, values)?;
    bind_params(session, &mut graph, w, true)?;
    Ok((graph, inputs))
}

fn run(session: &mut Session, a: &args::RunArgs) -> CmdResult {
    if a.opt.target == Target::Accel && a.backend != Backend::Accel {
        return Err(Diagnostic::error("--target accel compiles for the accelerator; run it with `--backend accel` (or `nnc sim` for its report)").into());
    }
    if a.opt.quantize.is_some() && a.backend == Backend::Jit {
        return Err(Diagnostic::error("the JIT runs float models only; int8 graphs run on `--backend interp` (the reference) or `--backend accel`").with_note("int8 on the CPU is planned work").into());
    }
    if a.backend == Backend::Accel {
        if a.bench.is_some() || a.profile {
            return Err(Diagnostic::error("--bench and --profile time the CPU backends; `nnc sim` reports the accelerator's time").into());
        }
        let config = accel_config(&a.accel)?;
        let (mut graph, inputs) = prepare(session, &a.common, &a.io, &a.weights, false)?;
        optimize(session, &mut graph, &a.opt, None)?;
        let program = accel_program(&graph, &config)?;
        let outcome = accel::run(&program, &inputs).map_err(|e| Diagnostic::error(e.to_string()))?;
        return emit_outputs(&graph, &outcome.outputs, a.io.output_dir.as_deref());
    }
    if a.opt.threads.is_some_and(|t| t > 1) && a.backend != Backend::Jit {
        session.emit(&[Diagnostic::warning("--threads splits the JIT's kernels; the interpreter runs on one thread")]);
    }
    let (mut graph, inputs) = prepare(session, &a.common, &a.io, &a.weights, false)?;
    let target = (a.backend == Backend::Jit).then(|| CpuTarget::host(a.opt.ukernels == args::OnOff::On));
    optimize(session, &mut graph, &a.opt, target.as_ref())?;
    let backend = if a.backend == Backend::Jit { "jit" } else { "interp" };
    let compile_start = Instant::now();
    let exe = match a.backend {
        Backend::Jit => Some(jit::compile(&graph, &jit_options(&a.opt)).map_err(|e| Diagnostic::error(e.to_string()))?),
        Backend::Interp | Backend::Accel => None,
    };
    let compile_time = compile_start.elapsed().as_secs_f64();
    let mut ws = exe.as_ref().map(|e| e.workspace());
    let mut run_once = || match (&exe, &mut ws) {
        (Some(exe), Some(ws)) => exe.run(ws, &inputs).map_err(|e| Failure::from(Diagnostic::error(e.to_string()))),
        _ => interp::run(&graph, &inputs).map_err(|e| Failure::from(Diagnostic::error(e.to_string()))),
    };
    let outputs = run_once()?;

    if let Some(n) = a.bench {
        let mut times = Vec::new();
        for _ in 0..n {
            let start = Instant::now();
            run_once()?;
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "bench: {n} runs after 1 warm-up: median {} (min {}, max {}), backend {backend}",
            fmt_time(median),
            fmt_time(times[0]),
            fmt_time(times[times.len() - 1])
        );
        if let Some(exe) = &exe {
            println!("jit: compiled in {}, arena {} (liveness lower bound {})", fmt_time(compile_time), summary::human_bytes(exe.arena_bytes() as u64), summary::human_bytes(exe.arena_lower_bound_bytes() as u64));
        }
    }
    drop(run_once);
    if a.profile {
        let (Some(exe), Some(ws)) = (&exe, &mut ws) else {
            return Err(Diagnostic::error("--profile times the JIT's kernels; it needs --backend jit").into());
        };
        let (_, mut profile) = exe.run_profiled(ws, &inputs).map_err(|e| Diagnostic::error(e.to_string()))?;
        let total: f64 = profile.iter().map(|p| p.2).sum();
        profile.sort_by(|a, b| b.2.total_cmp(&a.2));
        let width = profile.iter().map(|p| p.0.len()).max().unwrap_or(4).max(4);
        println!("{:<width$}  {:<16}  {:>10}  {:>6}", "node", "op", "time", "share");
        for (name, op, t) in &profile {
            println!("{name:<width$}  {op:<16}  {:>10}  {:>5.1}%", fmt_time(*t), 100.0 * t / total);
        }
        println!("{:<width$}  {:<16}  {:>10}", "total", "", fmt_time(total));
    }
    emit_outputs(&graph, &outputs, a.io.output_dir.as_deref())
}

fn fmt_time(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn emit_outputs(graph: &Graph, outputs: &[Tensor], dir: Option<&Path>) -> CmdResult {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Diagnostic::error(format!("cannot create {}: {e}", dir.display())))?;
            for ((name, _), t) in graph.outputs.iter().zip(outputs) {
                let path = dir.join(format!("{name}.npy"));
                write_npy(&path, t).map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", path.display())))?;
            }
            Ok(())
        }
        None => {
            let mut text = String::new();
            for ((name, id), t) in graph.outputs.iter().zip(outputs) {
                let ty = &graph.node(*id).ty;
                text.push_str(&format!("{name}: {}{}\n{}\n", ty.dtype, crate::ir::ShapeDisplay(&ty.shape), tensor_text::format_tensor(t)));
            }
            write_output(None, &text)
        }
    }
}

fn sim(session: &mut Session, a: &args::SimArgs) -> CmdResult {
    let config = accel_config(&a.accel)?;
    let (mut graph, inputs) = prepare(session, &a.common, &a.io, &a.weights, true)?;
    optimize(session, &mut graph, &a.opt, None)?;
    let program = accel_program(&graph, &config)?;
    let outcome = accel::run(&program, &inputs).map_err(|e| Diagnostic::error(e.to_string()))?;
    let write_json = |path: &Path, value: serde_json::Value| -> CmdResult {
        let text = serde_json::to_string_pretty(&value).expect("reports serialize");
        std::fs::write(path, text + "\n").map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", path.display())).into())
    };
    if let Some(path) = &a.report {
        write_json(path, accel::report::json_report(&program, &outcome))?;
    }
    if let Some(path) = &a.trace {
        write_json(path, accel::report::trace(&program, &outcome))?;
    }
    write_output(None, &accel::report::table(&program, &outcome))?;
    match a.io.output_dir.as_deref() {
        Some(dir) => emit_outputs(&graph, &outcome.outputs, Some(dir)),
        None => Ok(()),
    }
}
