//! Exporters' multi-node forms of nnc ops, recognised at their first node:
//! - GELU as PyTorch writes it: `Div(x, √2) → Erf → Add(1) → Mul(x) → Mul(0.5)` (or
//!   `Mul(x, 1/√2)` first);
//! - layer norm decomposed: `ReduceMean → Sub → Pow(2) → ReduceMean → Add(eps) → Sqrt → Div`,
//!   then optionally `Mul(γ) → Add(β)`;
//! - SiLU as PyTorch writes it: `Sigmoid(x) → Mul(x)`;
//! - `MatMul` by a weight followed by `Add` of a bias (found by `Importer::matmul` through
//!   [`bias_add`]).
//!
//! A pattern matches only where its inner values have no other reader and are not graph
//! outputs, so recognising it never changes what the model computes.

use super::constant::ConstTensor;
use super::import::{attr_int, attr_ints, Importer, Val};
use super::proto::NodeProto;
use crate::ops::Const;
use std::collections::{HashMap, HashSet};

/// Who reads each value: `(node index, input position)`; graph outputs count as readers.
pub struct Uses {
    readers: HashMap<String, Vec<(usize, usize)>>,
    outputs: HashSet<String>,
}

impl Uses {
    pub fn of(nodes: &[NodeProto], graph_outputs: &[String]) -> Uses {
        let mut readers: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for (k, name) in n.input.iter().enumerate() {
                if !name.is_empty() {
                    readers.entry(name.clone()).or_default().push((i, k));
                }
            }
        }
        Uses { readers, outputs: graph_outputs.iter().cloned().collect() }
    }

    /// The one node that reads `value` (at any positions), if it is the only reader and the
    /// value is not a graph output.
    pub fn only_reader(&self, value: &str) -> Option<usize> {
        if self.outputs.contains(value) {
            return None;
        }
        let r = self.readers.get(value)?;
        let first = r.first()?.0;
        r.iter().all(|&(i, _)| i == first).then_some(first)
    }

    /// Every reader node of `value` (distinct), unless it is a graph output.
    fn readers(&self, value: &str) -> Option<Vec<usize>> {
        if self.outputs.contains(value) {
            return None;
        }
        let mut v: Vec<usize> = self.readers.get(value)?.iter().map(|&(i, _)| i).collect();
        v.dedup();
        Some(v)
    }
}

fn op_is(n: &NodeProto, t: &str) -> bool {
    n.op_type.as_deref() == Some(t) && n.domain.as_deref().is_none_or(|d| d.is_empty() || d == "ai.onnx")
}

/// The node's other input than `value`, when `value` is one of exactly two inputs.
fn other_input<'n>(n: &'n NodeProto, value: &str) -> Option<&'n str> {
    match n.input.as_slice() {
        [a, b] if a == value => Some(b),
        [a, b] if b == value => Some(a),
        _ => None,
    }
}

/// A known single number of rank 0 or 1 (a higher rank would widen what it is combined with).
fn known_scalar(im: &Importer, name: &str) -> Option<f64> {
    match im.values.get(name) {
        Some(Val::Const(c)) if c.shape.len() <= 1 => c.scalar(),
        _ => None,
    }
}

fn near(v: Option<f64>, want: f64) -> bool {
    v.is_some_and(|v| (v - want).abs() <= 1e-4 * want.abs().max(1.0))
}

/// Try every pattern whose first node is `index`; true when one matched (and was imported).
pub fn try_patterns(im: &mut Importer, index: usize) -> Result<bool, String> {
    // Activations written as several nodes: one unary op on `x`.
    for (op, found) in [("gelu", gelu(im, index)), ("silu", silu(im, index))] {
        let Some(m) = found else { continue };
        let x = im.node_of(&m.x, &im.get(&m.x)?.clone())?;
        let y = im.op(&m.out, op, &[x], vec![])?;
        im.consumed.extend(m.absorbed);
        im.values.insert(m.out, Val::Node(y));
        return Ok(true);
    }
    if let Some(m) = layer_norm(im, index) {
        let x = im.node_of(&m.x, &im.get(&m.x)?.clone())?;
        let d = *im.graph.node(x).ty.shape.last().ok_or("layer norm of a scalar")?;
        let gamma = match &m.gamma {
            Some((name, c)) if c.len() == d => im.const_node(name, ConstTensor { shape: vec![d], ..c.clone() })?,
            Some(_) => return Ok(false),
            None => im.const_node(&format!("{}_weight", m.out), ConstTensor::f32(vec![d], vec![1.0; d]))?,
        };
        let beta = match &m.beta {
            Some((name, c)) if c.len() == d => im.const_node(name, ConstTensor { shape: vec![d], ..c.clone() })?,
            Some(_) => return Ok(false),
            None => im.const_node(&format!("{}_bias", m.out), ConstTensor::f32(vec![d], vec![0.0; d]))?,
        };
        let y = im.op(&m.out, "layer_norm", &[x, gamma, beta], vec![("eps", Const::Float(m.eps))])?;
        im.consumed.extend(m.absorbed);
        im.values.insert(m.out, Val::Node(y));
        return Ok(true);
    }
    Ok(false)
}

struct Match {
    x: String,
    out: String,
    absorbed: Vec<usize>,
}

/// The next node in a chain: the only reader of `value`, of type `t`, not yet consumed.
fn next(im: &Importer, value: &str, t: &str) -> Option<usize> {
    let i = im.uses.only_reader(value)?;
    (op_is(&im.nodes[i], t) && !im.consumed.contains(&i)).then_some(i)
}

fn gelu(im: &Importer, index: usize) -> Option<Match> {
    let n = &im.nodes[index];
    let x = n.input.first()?.clone();
    let scale = known_scalar(im, n.input.get(1)?);
    let scaled = (op_is(n, "Div") && near(scale, std::f64::consts::SQRT_2)) || (op_is(n, "Mul") && near(scale, std::f64::consts::FRAC_1_SQRT_2));
    if !scaled || matches!(im.values.get(&x), Some(Val::Const(_)) | None) {
        return None;
    }
    let erf = next(im, &n.output[0], "Erf")?;
    let add = next(im, &im.nodes[erf].output[0], "Add")?;
    if !near(known_scalar(im, other_input(&im.nodes[add], &im.nodes[erf].output[0])?), 1.0) {
        return None;
    }
    let times_x = next(im, &im.nodes[add].output[0], "Mul")?;
    if other_input(&im.nodes[times_x], &im.nodes[add].output[0])? != x {
        return None;
    }
    let half = next(im, &im.nodes[times_x].output[0], "Mul")?;
    if !near(known_scalar(im, other_input(&im.nodes[half], &im.nodes[times_x].output[0])?), 0.5) {
        return None;
    }
    Some(Match { x, out: im.nodes[half].output[0].clone(), absorbed: vec![erf, add, times_x, half] })
}

fn silu(im: &Importer, index: usize) -> Option<Match> {
    let n = &im.nodes[index];
    if !op_is(n, "Sigmoid") {
        return None;
    }
    let x = n.input.first()?.clone();
    if matches!(im.values.get(&x), Some(Val::Const(_)) | None) {
        return None;
    }
    let mul = next(im, n.output.first()?, "Mul")?;
    if other_input(&im.nodes[mul], &n.output[0])? != x {
        return None;
    }
    Some(Match { x, out: im.nodes[mul].output.first()?.clone(), absorbed: vec![mul] })
}

struct LayerNormMatch {
    x: String,
    out: String,
    eps: f64,
    gamma: Option<(String, ConstTensor)>,
    beta: Option<(String, ConstTensor)>,
    absorbed: Vec<usize>,
}

/// Whether `ReduceMean` node `i`, on a value of rank `rank`, averages over the last axis only,
/// keeping it.
fn mean_over_last_axis(im: &Importer, i: usize, rank: usize) -> bool {
    let n = &im.nodes[i];
    let axes = attr_ints(n, "axes").or_else(|| match n.input.get(1).and_then(|a| im.values.get(a)) {
        Some(Val::Const(c)) => Some(c.ints()),
        _ => None,
    });
    let rank = rank as i64;
    attr_int(n, "keepdims", 1) == 1 && axes.is_some_and(|a| a.len() == 1 && (a[0] == -1 || a[0] == rank - 1))
}

fn layer_norm(im: &Importer, index: usize) -> Option<LayerNormMatch> {
    let mean = &im.nodes[index];
    let x = mean.input.first()?.clone();
    let rank = im.shape_of(im.values.get(&x)?).len();
    if !op_is(mean, "ReduceMean") || !mean_over_last_axis(im, index, rank) {
        return None;
    }
    let sub = next(im, &mean.output[0], "Sub")?;
    if im.nodes[sub].input.as_slice() != [x.clone(), mean.output[0].clone()] {
        return None;
    }
    let centered = im.nodes[sub].output[0].clone();
    let readers = im.uses.readers(&centered)?;
    let [first, second] = readers.as_slice() else { return None };
    let (pow, div) = if op_is(&im.nodes[*first], "Pow") { (*first, *second) } else { (*second, *first) };
    if !op_is(&im.nodes[pow], "Pow") || !op_is(&im.nodes[div], "Div") || im.nodes[pow].input.first() != Some(&centered) || !near(known_scalar(im, im.nodes[pow].input.get(1)?), 2.0) {
        return None;
    }
    let var = next(im, &im.nodes[pow].output[0], "ReduceMean")?;
    if !mean_over_last_axis(im, var, rank) {
        return None;
    }
    let add = next(im, &im.nodes[var].output[0], "Add")?;
    let eps = known_scalar(im, other_input(&im.nodes[add], &im.nodes[var].output[0])?)?;
    let sqrt = next(im, &im.nodes[add].output[0], "Sqrt")?;
    if next(im, &im.nodes[sqrt].output[0], "Div") != Some(div) || im.nodes[div].input.as_slice() != [centered.clone(), im.nodes[sqrt].output[0].clone()] {
        return None;
    }
    let mut absorbed = vec![sub, pow, var, add, sqrt, div];
    let mut out = im.nodes[div].output[0].clone();
    // γ and β of shape [D] exactly: another shape would broadcast differently.
    let known_vector = |name: &str| match im.values.get(name) {
        Some(Val::Const(c)) if c.is_float() && c.shape.len() == 1 => Some((name.to_string(), c.clone())),
        _ => None,
    };
    let mut gamma = None;
    let mut beta = None;
    if let Some(mul) = next(im, &out, "Mul") {
        if let Some(g) = other_input(&im.nodes[mul], &out).and_then(known_vector) {
            gamma = Some(g);
            absorbed.push(mul);
            out = im.nodes[mul].output[0].clone();
            if let Some(add) = next(im, &out, "Add") {
                if let Some(b) = other_input(&im.nodes[add], &out).and_then(known_vector) {
                    beta = Some(b);
                    absorbed.push(add);
                    out = im.nodes[add].output[0].clone();
                }
            }
        }
    }
    Some(LayerNormMatch { x, out, eps, gamma, beta, absorbed })
}

/// For `MatMul` node `index` with `units` columns: the `Add` that alone reads its result and
/// adds a known bias of `units` values, as `(node index, bias name, bias)`.
pub fn bias_add(im: &Importer, index: usize, units: usize) -> Option<(usize, String, ConstTensor)> {
    let out = &im.nodes[index].output[0];
    let add = next(im, out, "Add")?;
    let bias_name = other_input(&im.nodes[add], out)?;
    match im.values.get(bias_name) {
        Some(Val::Const(c)) if c.is_float() && c.len() == units && c.shape.last() == Some(&units) && c.shape.len() <= 1 => Some((add, bias_name.to_string(), ConstTensor { shape: vec![units], ..c.clone() })),
        _ => None,
    }
}
