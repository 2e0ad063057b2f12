//! Binding parameters to values: from a weights file (by name, with the checks of SPEC §3) or
//! drawn deterministically for `--random-weights SEED`.

use crate::diagnostics::Diagnostic;
use crate::ir::{Graph, NodeId, NodeKind, ShapeDisplay, TensorType};
use crate::ops::Init;
use nnc_runtime::weights::WeightsFile;
use nnc_runtime::{DType, Tensor};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::collections::BTreeMap;

/// Replace every parameter node with a constant holding its value from `weights`.
/// Errors: every missing parameter (all listed in one diagnostic), and every shape or dtype
/// mismatch. Tensors in the file that no parameter uses come back as warnings.
pub fn bind_weights(graph: &mut Graph, weights: WeightsFile, file: &str) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
    let WeightsFile { tensors: mut weights, mut unsupported } = weights;
    let mut errors = Vec::new();
    let mut missing = Vec::new();
    let params: Vec<(NodeId, String, TensorType)> = graph
        .node_ids()
        .filter(|&n| matches!(graph.node(n).kind, NodeKind::Param))
        .map(|n| (n, graph.node(n).name.clone(), graph.node(n).ty.clone()))
        .collect();
    let mut bound = Vec::new();
    for (id, name, ty) in params {
        if let Some(dtype) = unsupported.remove(&name) {
            errors.push(Diagnostic::error(format!("weight `{name}` in {file} has dtype {dtype}, which nnc cannot load; the model declares {} (shape {})", ty.dtype, ShapeDisplay(&ty.shape))).with_help("save it as F32 (or F16, BF16, I8, I32)"));
            continue;
        }
        match weights.remove(&name) {
            None => missing.push(name),
            Some(t) if t.shape() != ty.shape.as_slice() => errors.push(
                Diagnostic::error(format!("weight `{name}` in {file} has shape {}, but the model expects {}", ShapeDisplay(t.shape()), ShapeDisplay(&ty.shape)))
                    .with_help("check that the weights were exported from the same architecture"),
            ),
            Some(t) if t.dtype() != ty.dtype => errors.push(
                Diagnostic::error(format!("weight `{name}` in {file} has dtype {}, but the model declares {} (shape {})", t.dtype(), ty.dtype, ShapeDisplay(&ty.shape)))
                    .with_help("convert the tensor before saving, e.g. `tensor.float()` in PyTorch"),
            ),
            Some(t) => bound.push((id, t)),
        }
    }
    if !missing.is_empty() {
        missing.sort();
        let list = missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
        errors.insert(
            0,
            Diagnostic::error(format!("{} has no tensor for {} parameter{}: {list}", file, missing.len(), if missing.len() == 1 { "" } else { "s" }))
                .with_help("the weights file must hold every parameter by name (see `nnc summary` for the names); --random-weights SEED draws synthetic ones"),
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for (id, t) in bound {
        graph.node_mut(id).kind = NodeKind::Const(t);
    }
    // PyTorch's batch norms carry an int64 `num_batches_tracked` counter that inference never
    // reads: a torchvision ResNet-18 `state_dict` has twenty. One line says so; every other
    // unused tensor gets its own warning, since it may be a misnamed weight.
    let (counters, unused): (Vec<&String>, Vec<&String>) = weights.keys().chain(unsupported.keys()).partition(|k| is_batch_norm_counter(k, &unsupported));
    let mut warnings: Vec<Diagnostic> = unused.iter().map(|k| Diagnostic::warning(format!("{file}: tensor `{k}` is not a parameter of model `{}` and is ignored", graph.name))).collect();
    if !counters.is_empty() {
        let n = counters.len();
        warnings.push(Diagnostic::warning(format!(
            "{file}: ignored {n} PyTorch batch-norm counter{} (`{}`{}), which inference does not use",
            if n == 1 { "" } else { "s" },
            counters[0],
            if n == 1 { String::new() } else { format!(" and {} more `*.num_batches_tracked`", n - 1) }
        )));
    }
    Ok(warnings)
}

/// Whether an unused tensor is a batch norm's `num_batches_tracked` counter (integer-typed).
fn is_batch_norm_counter(name: &str, unsupported: &BTreeMap<String, String>) -> bool {
    (name == "num_batches_tracked" || name.ends_with(".num_batches_tracked")) && unsupported.contains_key(name)
}

/// Deterministic synthetic weights for every parameter: the same seed and parameter name
/// always give the same tensor, whatever else the model contains.
pub fn random_weights(graph: &Graph, seed: u64) -> WeightsFile {
    WeightsFile { tensors: random_tensors(graph, seed), unsupported: BTreeMap::new() }
}

fn random_tensors(graph: &Graph, seed: u64) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    for id in graph.node_ids() {
        let node = graph.node(id);
        if !matches!(node.kind, NodeKind::Param) {
            continue;
        }
        let init = init_for(graph, id);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(node.name.as_bytes()));
        let n = node.ty.numel();
        let values: Vec<f32> = draw(init, n, &mut rng);
        let tensor = match node.ty.dtype {
            DType::I8 => Tensor::from_i8(node.ty.shape.clone(), values.iter().map(|v| (v * 64.0).round().clamp(-127.0, 127.0) as i8).collect()),
            DType::I32 => Tensor::from_i32(node.ty.shape.clone(), values.iter().map(|v| (v * 1024.0).round() as i32).collect()),
            d => Tensor::from_f32(d, node.ty.shape.clone(), values),
        }
        .expect("drawn values match the parameter's shape");
        out.insert(node.name.clone(), tensor);
    }
    out
}

/// The initialization the first op using this parameter asks for; parameters no op gives a
/// role (e.g. an explicit `param` added to activations) get small uniform values.
fn init_for(graph: &Graph, param: NodeId) -> Init {
    for (user, pos) in graph.users(param) {
        if let Some(op) = graph.node(user).op() {
            if let Some(init) = op.param_init(pos, &graph.operand_types(user)) {
                return init;
            }
        }
    }
    let ty = &graph.node(param).ty;
    Init::UniformFanIn { fan_in: ty.shape.last().copied().unwrap_or(1) }
}

fn draw(init: Init, n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let uniform = |rng: &mut ChaCha8Rng, lo: f32, hi: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(lo..hi)).collect() };
    match init {
        Init::HeNormal { fan_in } => {
            let std = (2.0 / fan_in.max(1) as f32).sqrt();
            let normal = Normal::new(0.0f32, std).expect("a positive standard deviation");
            (0..n).map(|_| normal.sample(rng)).collect()
        }
        Init::UniformFanIn { fan_in } => {
            let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
            uniform(rng, -bound, bound)
        }
        Init::BnWeight => uniform(rng, 0.8, 1.2),
        Init::BnBias => uniform(rng, -0.1, 0.1),
        Init::BnMean => uniform(rng, -0.1, 0.1),
        Init::BnVar => uniform(rng, 0.5, 1.5),
        Init::LnWeight => uniform(rng, 0.9, 1.1),
        Init::LnBias => uniform(rng, -0.05, 0.05),
    }
}

/// FNV-1a: a stable hash (unlike std's), so seeds mean the same thing across builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}
