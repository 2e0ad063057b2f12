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
use args::{Backend, Cli, Command, CommonArgs, Emit, InputArgs, OptimizeArgs, Target, WeightArgs};
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

fn reject_unavailable(opt: &OptimizeArgs) -> CmdResult {
    if opt.target == Target::Accel {
        return Err(not_available("the accelerator target (`--target accel`)", "the systolic-accelerator work (issue 4)"));
    }
    if opt.quantize.is_some() || !opt.calibrate.is_empty() {
        return Err(not_available("int8 quantization (`--quantize`, `--calibrate`)", "the quantization pass (issue 4)"));
    }
    Ok(())
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
fn optimize(graph: &mut Graph, opt: &OptimizeArgs, target: Option<&CpuTarget>) -> CmdResult {
    let dump = opt.dump_after.as_deref();
    if let Some(pass) = dump.filter(|p| *p != "all") {
        let entry = passes::PIPELINE.iter().find(|p| p.name == pass);
        let level = entry.map_or(0, |p| p.min_opt_level);
        if opt.opt_level < level {
            eprintln!("warning: pass `{pass}` runs from -O{level}; at -O{} it does not run, so nothing is dumped", opt.opt_level);
        } else if target.is_none() && entry.is_some_and(|p| matches!(p.run, passes::PassFn::Cpu(_))) {
            eprintln!("warning: pass `{pass}` decides for the JIT and does not run for the interpreter, so nothing is dumped");
        }
    }
    let mut hook = |name: &str, g: &Graph| {
        if dump == Some("all") || dump == Some(name) {
            eprint!("// ----- IR after {name} -----\n{}", print::print_graph(g));
        }
    };
    passes::optimize(graph, opt.opt_level, target, cfg!(debug_assertions), &mut hook).map_err(|e| Diagnostic::error(e.to_string()))?;
    Ok(())
}

fn jit_options(opt: &OptimizeArgs) -> jit::JitOptions {
    jit::JitOptions { ukernels: opt.ukernels == args::OnOff::On, threads: opt.threads.unwrap_or(1) as usize }
}

fn compile(session: &mut Session, a: &args::CompileArgs) -> CmdResult {
    reject_unavailable(&a.opt)?;
    let text = match a.emit {
        Emit::Obj => return Err(not_available("`--emit obj`", "ahead-of-time object files (the JIT compiles in memory)")),
        Emit::Clif | Emit::Asm => {
            let mut graph = graph_for(session, &a.common, &DimBindings::new())?;
            // Weights are baked into the code; without a file, listings use random ones.
            let w = WeightArgs { weights: a.weights.weights.clone(), random_weights: a.weights.random_weights.or(Some(0)) };
            driver::check_memory_budget(&graph)?;
            bind_params(session, &mut graph, &w, false)?;
            optimize(&mut graph, &a.opt, Some(&CpuTarget::host(a.opt.ukernels == args::OnOff::On)))?;
            let mut listing = jit::Listing { clif: a.emit == Emit::Clif, asm: a.emit == Emit::Asm, text: String::new() };
            jit::compile_with_listing(&graph, &jit_options(&a.opt), &mut listing).map_err(|e| Diagnostic::error(e.to_string()))?;
            listing.text
        }
        Emit::Isa => return Err(not_available("`--emit isa`", "the systolic-accelerator work (issue 4)")),
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
            optimize(&mut graph, &a.opt, Some(&CpuTarget::host(a.opt.ukernels == args::OnOff::On)))?;
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
fn read_inputs(session: &Session, model: &ast::Model, io: &InputArgs, dims: &mut DimBindings) -> Result<BTreeMap<String, InputValue>, Failure> {
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
            InputValue::Random(seed) => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let data = (0..ty.numel()).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                Tensor::from_f32(ty.dtype, ty.shape.clone(), data).expect("the shape was checked when the graph was built")
            }
        };
        out.push(t);
    }
    Ok(out)
}

/// Everything `run` and `sim` share up to having a graph and its inputs.
fn prepare(session: &mut Session, common: &CommonArgs, io: &InputArgs, w: &WeightArgs) -> Result<(Graph, Vec<Tensor>), Failure> {
    let file = load(session, common)?;
    let model = elaborate::select_model(&file, common.model.as_deref())?;
    let mut dims = dims_from_flags(common)?;
    let values = read_inputs(session, model, io, &mut dims)?;
    let mut graph = elaborate::elaborate(&file, model, &dims)?;
    driver::check_memory_budget(&graph)?;
    let inputs = materialize_inputs(&graph, values)?;
    bind_params(session, &mut graph, w, true)?;
    Ok((graph, inputs))
}

fn run(session: &mut Session, a: &args::RunArgs) -> CmdResult {
    reject_unavailable(&a.opt)?;
    if a.backend == Backend::Accel {
        return Err(not_available("the accelerator backend (`--backend accel`)", "the systolic-accelerator work (issue 4)"));
    }
    if a.opt.threads.is_some_and(|t| t > 1) && a.backend != Backend::Jit {
        session.emit(&[Diagnostic::warning("--threads splits the JIT's kernels; the interpreter runs on one thread")]);
    }
    let (mut graph, inputs) = prepare(session, &a.common, &a.io, &a.weights)?;
    let target = (a.backend == Backend::Jit).then(|| CpuTarget::host(a.opt.ukernels == args::OnOff::On));
    optimize(&mut graph, &a.opt, target.as_ref())?;
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
    // The options are declared (so that usage errors are reported as such) but the
    // accelerator model is not part of this build yet.
    let _ = (session, a);
    Err(not_available("`nnc sim` (the modeled systolic-array accelerator)", "the systolic-accelerator work (issue 4)"))
}
