//! Pruning (SPEC §5): `--prune SPEC`, applied in order before every other pass, to the
//! weight matrices of `conv2d`, `dense` and `lstm` layers whose weights are known. Each kind
//! is one file with one entry point; this module parses specs, finds the prunable weights
//! and checks `--prune-skip` names.
//!
//! What is here: unstructured pruning, `magnitude:F` (each layer) and `global:F` (one
//! threshold over all layers), which zero weights as PyTorch's `l1_unstructured` and
//! `global_unstructured` do, block pruning, `blocks:F[:RxC]`, and structured pruning,
//! `channels:F`, which removes channels (and everything coupled to them) from the graph.
//! The accelerator skips folds whose weights are all zero; the JIT's sparse kernels skip
//! zero weights where its cost model finds that faster.

mod blocks;
mod channels;
mod global;
mod magnitude;
#[cfg(test)]
mod testing;

pub use blocks::{prune_blocks, DEFAULT_BLOCK};
pub use channels::prune_channels;
pub use global::prune_global;
pub use magnitude::prune_magnitude;

use crate::ir::{Graph, NodeId, NodeKind};
use crate::ops::Op;
use nnc_runtime::Tensor;

/// One `--prune` spec.
#[derive(Clone, Debug, PartialEq)]
pub enum PruneSpec {
    /// In each layer, the fraction `F` of weights with the smallest |w| become zero.
    Magnitude(f64),
    /// One threshold over all layers: the fraction `F` of all their weights become zero.
    Global(f64),
    /// Structured: the fraction `F` of output channels with the smallest L1 norm removed.
    Channels(f64),
    /// Block sparsity: the fraction `F` of `rows × cols` blocks with the smallest L2 norm.
    Blocks { fraction: f64, block: Option<(usize, usize)> },
}

impl PruneSpec {
    /// `magnitude:0.5`, `global:0.9`, `channels:0.25`, `blocks:0.5`, `blocks:0.5:16x16`.
    pub fn parse(s: &str) -> Result<PruneSpec, String> {
        let mut parts = s.split(':');
        let kind = parts.next().unwrap_or("");
        let fraction = |text: Option<&str>| -> Result<f64, String> {
            let text = text.ok_or_else(|| format!("`{s}` gives no fraction: write {kind}:F with 0 ≤ F < 1, e.g. {kind}:0.5"))?;
            match text.parse::<f64>() {
                Ok(f) if (0.0..1.0).contains(&f) => Ok(f),
                Ok(f) => Err(format!("`{s}`: the fraction must be at least 0 and below 1, not {f}")),
                Err(_) => Err(format!("`{s}`: `{text}` is not a fraction (a number from 0 up to 1)")),
            }
        };
        let spec = match kind {
            "magnitude" => PruneSpec::Magnitude(fraction(parts.next())?),
            "global" => PruneSpec::Global(fraction(parts.next())?),
            "channels" => PruneSpec::Channels(fraction(parts.next())?),
            "blocks" => {
                let f = fraction(parts.next())?;
                let block = match parts.next() {
                    None => None,
                    Some(b) => {
                        let (r, c) = b.split_once(['x', 'X']).ok_or_else(|| format!("`{s}`: the block must be RxC, e.g. 16x16, not `{b}`"))?;
                        let dim = |v: &str| v.parse::<usize>().ok().filter(|&n| (1..=4096).contains(&n)).ok_or_else(|| format!("`{s}`: `{v}` is not a block size from 1 to 4096"));
                        Some((dim(r)?, dim(c)?))
                    }
                };
                PruneSpec::Blocks { fraction: f, block }
            }
            other => return Err(format!("unknown pruning kind `{other}` (kinds: magnitude:F, global:F, channels:F, blocks:F[:RxC])")),
        };
        if parts.next().is_some() {
            return Err(format!("`{s}` has more parts than {kind} takes"));
        }
        Ok(spec)
    }
}

/// Everything `--prune` and `--prune-skip` ask for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PruneOptions {
    pub specs: Vec<PruneSpec>,
    /// Layers left untouched: a layer's name (its binding) or a parameter-name prefix.
    pub skip: Vec<String>,
}

impl PruneOptions {
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Block specs without a block size take the fold of a `rows × cols` array: `cols`
    /// output channels by `rows` inputs, so a pruned block is a fold the array skips.
    pub fn with_array(mut self, rows: usize, cols: usize) -> PruneOptions {
        for s in &mut self.specs {
            if let PruneSpec::Blocks { block: block @ None, .. } = s {
                *block = Some((cols, rows));
            }
        }
        self
    }
}

/// A prunable weight: the constant and the layer that uses it.
pub(super) struct Weight {
    pub id: NodeId,
    pub layer: NodeId,
}

/// Whether `skip` names this layer or weight: the layer's name, or a prefix of the
/// weight's name ending at a `.` (`layer1.0.conv2` skips `layer1.0.conv2.weight`, `layer1`
/// skips every weight under it).
fn skipped(graph: &Graph, w: &Weight, skip: &[String]) -> bool {
    let (layer, weight) = (&graph.node(w.layer).name, &graph.node(w.id).name);
    skip.iter().any(|s| s == layer || weight == s || weight.strip_prefix(s.as_str()).is_some_and(|rest| rest.starts_with('.')))
}

/// The weight matrices `--prune` may change, each once, in topological order: `conv2d`'s
/// and `dense`'s weight, `lstm`'s `weight_ih` and `weight_hh`, when they are constants.
pub(super) fn prunable(graph: &Graph, skip: &[String]) -> Vec<Weight> {
    let mut out: Vec<Weight> = Vec::new();
    for layer in graph.topo_order() {
        let weights: &[usize] = match graph.node(layer).op() {
            Some(Op::Conv2d(_) | Op::Dense(_)) => &[1],
            Some(Op::Lstm(_)) => &[1, 2],
            _ => continue,
        };
        let operands = graph.operands(layer);
        for &i in weights {
            let Some(&id) = operands.get(i) else { continue };
            if matches!(graph.node(id).kind, NodeKind::Const(_)) && !out.iter().any(|w| w.id == id) {
                out.push(Weight { id, layer });
            }
        }
    }
    out.retain(|w| !skipped(graph, w, skip));
    out
}

/// Checks before pruning: the weights are bound and every `--prune-skip` names a prunable
/// layer or weight.
pub fn check(graph: &Graph, opts: &PruneOptions) -> Result<(), String> {
    if opts.specs.is_empty() {
        if !opts.skip.is_empty() {
            return Err("--prune-skip leaves layers out of pruning, but no --prune is given".into());
        }
        return Ok(());
    }
    if !graph.param_names().is_empty() {
        return Err("--prune changes weights, but none are loaded: pass `--weights FILE.safetensors` or `--random-weights SEED`".into());
    }
    let all = prunable(graph, &[]);
    for s in &opts.skip {
        if !all.iter().any(|w| skipped(graph, w, std::slice::from_ref(s))) {
            return Err(format!("--prune-skip {s} names no prunable layer or weight of model `{}`", graph.name));
        }
    }
    Ok(())
}

/// Apply every spec in order (the `prune` pass). [`check`] must have passed. Whether the
/// graph changed, or why structured pruning could not keep it consistent (a compiler bug).
pub fn prune(graph: &mut Graph, opts: &PruneOptions) -> Result<bool, String> {
    for spec in &opts.specs {
        match *spec {
            PruneSpec::Magnitude(f) => prune_magnitude(graph, f, &opts.skip),
            PruneSpec::Global(f) => prune_global(graph, f, &opts.skip),
            PruneSpec::Blocks { fraction, block } => prune_blocks(graph, fraction, block.unwrap_or(DEFAULT_BLOCK), &opts.skip),
            PruneSpec::Channels(f) => prune_channels(graph, f, &opts.skip)?,
        }
    }
    Ok(!opts.specs.is_empty())
}

/// One prunable weight's size, how many of its entries are not zero, and its layer's work.
pub struct Density {
    /// The layer's name (its node, which fusion keeps).
    pub layer: String,
    pub weight: String,
    pub params: u64,
    pub nonzero: u64,
    /// The layer's multiply-accumulates, zeros included.
    pub macs: u64,
}

impl Density {
    /// The multiply-accumulates with a nonzero weight: the work a kernel that skips zeros
    /// still does (a layer's MACs are spread evenly over its weights, which holds for
    /// convolutions, dense layers and an LSTM's two matrices alike).
    pub fn nonzero_macs(&self) -> u64 {
        (self.macs as f64 * self.nonzero as f64 / self.params.max(1) as f64).round() as u64
    }
}

/// Every prunable weight's density, in topological order.
pub fn density(graph: &Graph) -> Vec<Density> {
    prunable(graph, &[])
        .iter()
        .map(|w| {
            // Counted on the tensor (cached there), not on a copy of its values.
            let NodeKind::Const(t) = &graph.node(w.id).kind else { unreachable!("prunable weights are constants") };
            let (params, nonzero) = (t.len(), t.nonzeros());
            let layer = graph.node(w.layer);
            let op = layer.op().expect("layers are ops");
            // An LSTM's MACs are shared by its two matrices in proportion to their sizes.
            let share = match op {
                Op::Lstm(_) => {
                    let sizes: Vec<u64> = graph.operands(w.layer).iter().skip(1).take(2).map(|&o| graph.node(o).ty.numel() as u64).collect();
                    params as f64 / sizes.iter().sum::<u64>().max(1) as f64
                }
                _ => 1.0,
            };
            let macs = (op.macs(&graph.operand_types(w.layer), &layer.ty) as f64 * share).round() as u64;
            Density { layer: layer.name.clone(), weight: graph.node(w.id).name.clone(), params: params as u64, nonzero: nonzero as u64, macs }
        })
        .collect()
}

impl std::fmt::Display for PruneSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PruneSpec::Magnitude(x) => write!(f, "magnitude:{x}"),
            PruneSpec::Global(x) => write!(f, "global:{x}"),
            PruneSpec::Channels(x) => write!(f, "channels:{x}"),
            PruneSpec::Blocks { fraction, block: None } => write!(f, "blocks:{fraction}"),
            PruneSpec::Blocks { fraction, block: Some((r, c)) } => write!(f, "blocks:{fraction}:{r}x{c}"),
        }
    }
}

/// `round(F·n)` as PyTorch computes it: Python's `round`, half to even.
pub(super) fn count(fraction: f64, n: usize) -> usize {
    ((fraction * n as f64).round_ties_even() as usize).min(n)
}

/// The weight's values.
pub(super) fn values(graph: &Graph, id: NodeId) -> Vec<f32> {
    match &graph.node(id).kind {
        NodeKind::Const(t) => t.to_f32_vec(),
        _ => unreachable!("prunable weights are constants"),
    }
}

/// Zero the listed positions of a weight.
pub(super) fn zero(graph: &mut Graph, id: NodeId, positions: impl IntoIterator<Item = usize>) {
    let NodeKind::Const(t) = &graph.node(id).kind else { unreachable!("prunable weights are constants") };
    let (dtype, shape) = (t.dtype(), t.shape().to_vec());
    let mut data = t.to_f32_vec();
    for p in positions {
        data[p] = 0.0;
    }
    graph.node_mut(id).kind = NodeKind::Const(Tensor::from_f32(dtype, shape, data).expect("same shape, and zero is every float dtype's"));
}

/// Positions of `data` in increasing |w|, ties by position (PyTorch's `topk` leaves the
/// order of ties unspecified; this one is deterministic).
pub(super) fn by_magnitude(data: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by(|&a, &b| data[a].abs().total_cmp(&data[b].abs()).then(a.cmp(&b)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        assert_eq!(PruneSpec::parse("magnitude:0.5"), Ok(PruneSpec::Magnitude(0.5)));
        assert_eq!(PruneSpec::parse("global:0"), Ok(PruneSpec::Global(0.0)));
        assert_eq!(PruneSpec::parse("blocks:0.5:8x16"), Ok(PruneSpec::Blocks { fraction: 0.5, block: Some((8, 16)) }));
        assert!(PruneSpec::parse("magnitude:1.5").unwrap_err().contains("below 1"));
        assert!(PruneSpec::parse("magnitude:1").unwrap_err().contains("below 1"));
        assert!(PruneSpec::parse("channels:-1").unwrap_err().contains("at least 0"));
        assert!(PruneSpec::parse("random:0.5").unwrap_err().contains("unknown pruning kind `random`"));
        assert!(PruneSpec::parse("magnitude").unwrap_err().contains("gives no fraction"));
        assert!(PruneSpec::parse("magnitude:x").unwrap_err().contains("not a fraction"));
        assert!(PruneSpec::parse("magnitude:0.5:3").unwrap_err().contains("more parts"));
        assert!(PruneSpec::parse("blocks:0.5:0x4").unwrap_err().contains("block size"));
    }

    #[test]
    fn counts_round_half_to_even_as_python() {
        // round(0.5 * 5) = round(2.5) = 2; round(0.5 * 7) = round(3.5) = 4.
        assert_eq!(count(0.5, 5), 2);
        assert_eq!(count(0.5, 7), 4);
        assert_eq!(count(0.3, 10), 3);
        assert_eq!(count(0.0, 10), 0);
    }
}
