//! The compiler's stages as the commands run them, through `driver`: reading and elaborating
//! the source, binding weights, calibrating and optimizing (with `--dump-after`), and the
//! accelerator configuration from the flags.

use super::args::{self, AccelArgs, CommonArgs, InputArgs, OptimizeArgs, QuantizeArgs, WeightArgs};
use super::inputs::{materialize_inputs, random_tensors, read_inputs};
use super::{CmdResult, Failure, Session};
use crate::accel;
use crate::diagnostics::Diagnostic;
use crate::driver::{self, Source};
use crate::elaborate::{self, DimBindings};
use crate::ir::Graph;
use crate::syntax::ast;
use crate::target::CpuTarget;
use crate::{jit, passes};
use nnc_runtime::npy::read_npy;
use nnc_runtime::Tensor;
use std::path::Path;

pub(super) fn load(session: &mut Session, common: &CommonArgs) -> Result<ast::File, Failure> {
    let src = if common.file.extension().is_some_and(|e| e == "onnx") {
        let imported = import_onnx(&common.file, &dims_from_flags(common)?)?;
        session.imported_weights = Some(nnc_runtime::weights::WeightsFile { tensors: imported.weights, unsupported: Default::default() });
        session.imported_scales = imported.activation_scales.into_iter().collect();
        Source::from_string(format!("{} (imported)", common.file.display()), imported.source)
    } else {
        Source::read(&common.file)?
    };
    session.source = Some(src);
    let src = session.source.as_ref().expect("just set");
    Ok(driver::parse(src)?)
}

/// Import an ONNX model, named after its file.
pub(super) fn import_onnx(path: &Path, dims: &DimBindings) -> Result<crate::onnx::Imported, Failure> {
    let bytes = nnc_runtime::read_regular_file(path).map_err(|e| Diagnostic::error(format!("cannot read {}: {e}", path.display())))?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let model = crate::onnx::model_name(&stem);
    Ok(crate::onnx::import(&bytes, &model, dims, &path.display().to_string())?)
}

pub(super) fn dims_from_flags(common: &CommonArgs) -> Result<DimBindings, Failure> {
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

/// The file, and the flags' dims with every symbolic input dimension they leave unbound
/// taken as 1 (a batch of one): for commands whose answer does not depend on it (`check`,
/// `prune`).
pub(super) fn load_with_unbound_dims_as_one(session: &mut Session, common: &CommonArgs) -> Result<(ast::File, DimBindings), Failure> {
    let file = load(session, common)?;
    let model = elaborate::select_model(&file, common.model.as_deref())?;
    let mut dims = dims_from_flags(common)?;
    for (_, ty) in elaborate::declared_inputs(model) {
        for d in &ty.dims {
            if let ast::Dim::Symbol(s) = d {
                dims.entry(s.name.clone()).or_insert(1);
            }
        }
    }
    Ok((file, dims))
}

/// Parse, select and elaborate, with dims from the flags plus `extra`.
pub(super) fn graph_for(session: &mut Session, common: &CommonArgs, extra: &DimBindings) -> Result<Graph, Failure> {
    let file = load(session, common)?;
    let mut dims = dims_from_flags(common)?;
    dims.extend(extra.iter().map(|(k, v)| (k.clone(), *v)));
    Ok(driver::elaborate(&file, common.model.as_deref(), &dims)?)
}

/// How many calibration runs at most: enough for stable ranges, bounded in time.
pub(super) const MAX_CALIBRATION_RUNS: usize = 256;

/// Runs on seeded random inputs when no `--calibrate` file is given.
pub(super) const RANDOM_CALIBRATION_RUNS: u64 = 4;

/// The percentile `--calibrate-method percentile` takes (ONNX Runtime's default).
const CALIBRATION_PERCENTILE: f64 = 99.999;

/// Calibration through the JIT (the interpreter where the JIT refuses the graph): ResNet-18's
/// four runs take about 0.4 s instead of 7.
fn on_the_jit(runs: Vec<Vec<Tensor>>, opt: &QuantizeArgs) -> passes::Calibration {
    let method = match opt.calibrate_method.unwrap_or(args::CalibrateMethod::Minmax) {
        args::CalibrateMethod::Minmax => passes::RangeMethod::MaxAbs,
        args::CalibrateMethod::Percentile => passes::RangeMethod::Percentile(CALIBRATION_PERCENTILE),
        args::CalibrateMethod::Entropy => passes::RangeMethod::Entropy,
    };
    passes::Calibration { observe: Some(crate::jit::observe), method, ..passes::Calibration::new(runs) }
}

/// [`RANDOM_CALIBRATION_RUNS`] runs on seeded uniform [-1, 1) inputs, through the JIT.
pub(super) fn random_calibration(graph: &Graph) -> passes::Calibration {
    let runs = (0..RANDOM_CALIBRATION_RUNS).map(|seed| random_tensors(graph, 1_000 + seed)).collect();
    passes::Calibration { observe: Some(crate::jit::observe), ..passes::Calibration::new(runs) }
}

/// The calibration set for `--quantize int8`: `--calibrate` files split along axis 0 into
/// runs of the model's input shape, or seeded random inputs (said on stderr).
pub(super) fn calibration(session: &Session, graph: &Graph, opt: &QuantizeArgs) -> Result<Option<passes::Calibration>, Failure> {
    // A model quantized by its author (ONNX QDQ) runs in int8 with its own scales, as ONNX
    // Runtime runs it; any value without one is calibrated as usual.
    let imported = |c: passes::Calibration| passes::Calibration { scales: session.imported_scales.clone(), ..c };
    if opt.quantize.is_none() && !session.imported_scales.is_empty() && opt.calibrate.is_empty() && opt.calibrate_method.is_none() {
        return Ok(Some(imported(random_calibration(graph))));
    }
    if opt.quantize.is_none() {
        if !opt.calibrate.is_empty() {
            return Err(Diagnostic::error("--calibrate gives data for quantization, but --quantize is not set").with_help("add `--quantize int8`").into());
        }
        if opt.calibrate_method.is_some() {
            return Err(Diagnostic::error("--calibrate-method chooses how quantization calibrates, but --quantize is not set").with_help("add `--quantize int8`").into());
        }
        return Ok(None);
    }
    if opt.quantize == Some(args::Quantize::Bf16) {
        // Rounding to bf16 needs no ranges.
        if !opt.calibrate.is_empty() || opt.calibrate_method.is_some() {
            return Err(Diagnostic::error("--quantize bf16 rounds to bfloat16 and needs no calibration").with_help("drop --calibrate and --calibrate-method, or use `--quantize int8`").into());
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
    if opt.calibrate.is_empty() && !session.imported_scales.is_empty() {
        return Ok(Some(imported(passes::Calibration { method: on_the_jit(Vec::new(), opt).method, ..random_calibration(graph) })));
    }
    if opt.calibrate.is_empty() {
        session.emit_once(
            Diagnostic::warning(format!("no --calibrate data: int8 activation ranges come from {RANDOM_CALIBRATION_RUNS} runs on seeded uniform [-1, 1) inputs"))
                .with_help("pass `--calibrate NAME=FILE.npy` with representative inputs for accurate scales"),
        );
        return Ok(Some(passes::Calibration { method: on_the_jit(Vec::new(), opt).method, ..random_calibration(graph) }));
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
    Ok(Some(on_the_jit((0..runs).map(|r| sets.iter().map(|s| s[r].clone()).collect()).collect(), opt)))
}

/// Bind parameters from `--weights` or `--random-weights`; a model with parameters needs one.
pub(super) fn bind_params(session: &Session, graph: &mut Graph, w: &WeightArgs, required: bool) -> CmdResult {
    if let Some(path) = &w.weights {
        let warnings = driver::bind(graph, driver::Weights::File(path))?;
        session.emit(&warnings);
    } else if let Some(seed) = w.random_weights {
        driver::bind(graph, driver::Weights::Random(seed))?;
    } else if let Some(imported) = &session.imported_weights {
        let warnings = driver::bind(graph, driver::Weights::Tensors(imported.clone()))?;
        session.emit(&warnings);
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
pub(super) fn optimize(session: &Session, graph: &mut Graph, opt: &OptimizeArgs, target: Option<&CpuTarget>) -> CmdResult {
    let calibration = calibration(session, graph, &opt.quant)?;
    // The CPU passes decide layouts and tiles for the JIT, which runs float graphs only.
    let target = if calibration.is_some() { None } else { target };
    let bf16 = opt.quant.quantize == Some(args::Quantize::Bf16);
    let prune = opt.prune.options();
    passes::prune::check(graph, &prune).map_err(Diagnostic::error)?;
    let cx = passes::PassContext { cpu: target, quantize: calibration.as_ref(), bf16, prune: Some(&prune) };
    for (flag, pass) in [("--dump-before", &opt.dump_before), ("--dump-after", &opt.dump_after)] {
        let Some(pass) = pass.as_deref().filter(|p| *p != "all") else { continue };
        let entry = passes::PIPELINE.iter().find(|p| p.name == pass).expect("clap checks pass names");
        if !passes::runs(entry, opt.opt_level, &cx) {
            let why = if opt.opt_level < entry.min_opt_level {
                format!("it runs from -O{}, not at -O{}", entry.min_opt_level, opt.opt_level)
            } else if matches!(entry.run, passes::PassFn::Cpu(_)) {
                "it decides for the JIT and does not run for the interpreter or the accelerator".to_string()
            } else if matches!(entry.run, passes::PassFn::Prune(_)) {
                "it runs only with --prune".to_string()
            } else {
                format!("it runs only with --quantize {}", entry.name.trim_start_matches("quantize-"))
            };
            eprintln!("warning: {flag} {pass}: the pass does not run here ({why}), so nothing is dumped");
        }
    }
    let mut dump = passes::DumpIr { before: opt.dump_before.clone(), after: opt.dump_after.clone() };
    let mut times = passes::PassTimes::default();
    let mut instruments: Vec<&mut dyn passes::Instrumentation> = vec![&mut dump];
    if opt.time_passes {
        instruments.push(&mut times);
    }
    driver::optimize(graph, opt.opt_level, &cx, &mut passes::Each(instruments)).map_err(|e| Diagnostic::error(e.to_string()))?;
    if opt.time_passes {
        eprint!("{}", times.render());
    }
    Ok(())
}

/// The options with `--prune blocks:F` (no block size) sized to `config`'s folds.
pub(super) fn blocks_for_array(opt: &OptimizeArgs, config: &accel::AccelConfig) -> OptimizeArgs {
    let mut opt = opt.clone();
    opt.prune.specs = opt.prune.options().with_array(config.rows as usize, config.cols as usize).specs;
    opt
}

pub(super) fn jit_options(opt: &OptimizeArgs) -> jit::JitOptions {
    jit::JitOptions { ukernels: opt.ukernels == args::OnOff::On, threads: opt.threads.unwrap_or(1) as usize, sparse: opt.sparse_kernels == args::OnOff::On, kernels: opt.kernels.iter().fold(Default::default(), |all, set| all.union(*set)), fuse_producers: opt.fuse_producers == args::OnOff::On, outputs_in_place: true, bf16_kernel: None }
}

/// The CPU the flags compile for (`--ukernels`, `--sparse-kernels`).
pub(super) fn cpu_target(opt: &OptimizeArgs) -> crate::target::CpuTarget {
    jit_options(opt).target()
}

/// The accelerator configuration from the flags: a preset or file (default `edge`), then
/// `--set`, `--array`, `--dataflow` and `--memory`, validated.
pub(super) fn accel_config(a: &AccelArgs) -> Result<accel::AccelConfig, Failure> {
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
pub(super) fn accel_program(graph: &Graph, config: &accel::AccelConfig) -> Result<accel::Program, Failure> {
    accel::lower(graph, config).map_err(|e| Diagnostic::error(e.to_string()).into())
}

/// Everything `run` and `sim` share up to having a graph and its inputs.
pub(super) fn prepare(session: &mut Session, common: &CommonArgs, io: &InputArgs, w: &WeightArgs, random_missing: bool) -> Result<(Graph, Vec<Tensor>), Failure> {
    let file = load(session, common)?;
    let model = elaborate::select_model(&file, common.model.as_deref())?;
    let mut dims = dims_from_flags(common)?;
    let values = read_inputs(session, model, io, &mut dims, random_missing)?;
    let mut graph = crate::driver::elaborate(&file, common.model.as_deref(), &dims)?;
    // Checked before inputs are materialized, whether or not the model has weights.
    crate::driver::check_memory_budget(&graph)?;
    let inputs = materialize_inputs(&graph, values)?;
    bind_params(session, &mut graph, w, true)?;
    Ok((graph, inputs))
}
