//! ONNX nodes to graph IR, one node at a time in the file's (topological) order.
//!
//! Every op node is built through the op table (`Op::build` and `Op::infer`, the same
//! definitions `.nn` calls go through), so an imported graph obeys the rules of a written one
//! and the IR's shape rules check it. Values known at import time stay [`Val::Const`] and are
//! folded (shape subgraphs); the exporters' multi-node patterns are recognised where their
//! first node is reached ([`super::patterns`]); operators that need more than a call with
//! their attributes are translated in [`super::operators`].

use super::constant::ConstTensor;
use super::patterns::{self, Uses};
use super::proto::{data_type, AttributeProto, NodeProto};
use crate::ir::{Graph, Node, NodeId, NodeKind, TensorType};
use crate::ops::{CallArgs, Const, Op, Operand};
use std::collections::{HashMap, HashSet};

/// A value of the ONNX graph as the importer holds it.
#[derive(Clone, Debug)]
pub enum Val {
    /// Known now; becomes a constant node (a `param` of the written model) only when an op of
    /// the model reads it.
    Const(ConstTensor),
    /// Computed by the model.
    Node(NodeId),
    /// The result of a `Pad` that only convolutions may read: the unpadded value and the
    /// padding `[top, left, bottom, right]` to add to theirs.
    Padded(NodeId, [usize; 4]),
}

pub struct Importer<'a> {
    pub graph: Graph,
    pub values: HashMap<String, Val>,
    pub opset: i64,
    pub nodes: &'a [NodeProto],
    pub uses: Uses,
    /// Nodes a pattern already translated.
    pub consumed: HashSet<usize>,
    /// Activation scales of QuantizeLinear/DequantizeLinear pairs, by the value quantized.
    pub activation_scales: HashMap<NodeId, f32>,
    /// Constant nodes made for ONNX values, so each is declared once.
    const_nodes: HashMap<String, NodeId>,
    /// Identifiers given out, for readable unique names.
    taken: HashSet<String>,
}

/// An identifier made from an ONNX name: `/layer1/layer1.0/conv1/Conv_output_0` (PyTorch's
/// module path, whose `layer1/layer1.0` repeats the parent) becomes `layer1_0_conv1_Conv`.
pub fn readable(name: &str) -> String {
    let name = name.strip_suffix("_output_0").unwrap_or(name);
    let segments: Vec<&str> = name.split('/').collect();
    let kept: Vec<&str> = segments.iter().enumerate().filter(|&(i, s)| !(i + 1 < segments.len() && !s.is_empty() && segments[i + 1].starts_with(&format!("{s}.")))).map(|(_, s)| *s).collect();
    let name = kept.join("/");
    let mut s = String::with_capacity(name.len());
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if !(c == '_' && (s.is_empty() || s.ends_with('_'))) {
            s.push(c);
        }
    }
    while s.ends_with('_') {
        s.pop();
    }
    const RESERVED: &[&str] = &["model", "block", "input", "output", "param", "return", "true", "false", "f32", "f16", "bf16", "i8", "i32"];
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) || RESERVED.contains(&s.as_str()) {
        s.insert_str(0, "v_");
    }
    s
}

pub fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

pub fn attr_int(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).and_then(|a| a.i).unwrap_or(default)
}

pub fn attr_float(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).and_then(|a| a.f).unwrap_or(default)
}

/// An f32 from the file as the f64 its shortest decimal names (`1e-5`, not
/// `9.999999747378752e-6`), so written sources read as the model's author wrote them; the f32
/// it rounds back to is the same.
pub fn decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

pub fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

pub fn attr_str(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).and_then(|a| a.s.as_ref()).map(|s| String::from_utf8_lossy(s).into_owned())
}

/// How an ONNX node is referred to in messages: its name, else its first output.
pub fn node_label(node: &NodeProto) -> String {
    match node.name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => format!("(node producing `{}`)", node.output.first().map(String::as_str).unwrap_or("?")),
    }
}

pub(super) fn ints_const(v: &[i64]) -> Const {
    Const::List(v.iter().map(|&x| Const::Int(x)).collect())
}

pub(super) fn usizes_const(v: &[usize]) -> Const {
    Const::List(v.iter().map(|&x| Const::Int(x as i64)).collect())
}

/// An axis in `0..rank` from ONNX's `-rank..rank`.
pub fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if a < -r || a >= r {
        return Err(format!("axis {a} is out of range for rank {rank}"));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

impl<'a> Importer<'a> {
    pub fn new(name: &str, nodes: &'a [NodeProto], opset: i64, graph_outputs: &[String]) -> Importer<'a> {
        Importer { graph: Graph::new(name), values: HashMap::new(), opset, nodes, uses: Uses::of(nodes, graph_outputs), consumed: HashSet::new(), activation_scales: HashMap::new(), const_nodes: HashMap::new(), taken: HashSet::new() }
    }

    /// A fresh identifier from an ONNX name.
    pub fn ident(&mut self, onnx_name: &str) -> String {
        let base = readable(onnx_name);
        let mut name = base.clone();
        let mut k = 1;
        while self.taken.contains(&name) || self.graph.by_name(&name).is_some() {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    pub fn get(&self, name: &str) -> Result<&Val, String> {
        self.values.get(name).ok_or_else(|| format!("value `{name}` is used before anything defines it (the graph is not in topological order, or an initializer is missing)"))
    }

    /// Input `i` of `node`, if present (ONNX marks an omitted optional input with "").
    pub fn input(&self, node: &NodeProto, i: usize) -> Result<Option<Val>, String> {
        match node.input.get(i).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(n) => self.get(n).cloned().map(Some),
        }
    }

    pub fn required(&self, node: &NodeProto, i: usize) -> Result<Val, String> {
        self.input(node, i)?.ok_or_else(|| format!("input {i} is required"))
    }

    pub fn constant(&self, node: &NodeProto, i: usize, what: &str) -> Result<Option<ConstTensor>, String> {
        match self.input(node, i)? {
            None => Ok(None),
            Some(Val::Const(c)) => Ok(Some(c)),
            Some(_) => Err(format!("{what} (input {i}) must be known when importing, but the model computes it")),
        }
    }

    pub fn shape_of(&self, v: &Val) -> Vec<usize> {
        match v {
            Val::Const(c) => c.shape.clone(),
            Val::Node(id) => self.graph.node(*id).ty.shape.clone(),
            Val::Padded(id, p) => {
                let mut s = self.graph.node(*id).ty.shape.clone();
                let r = s.len();
                s[r - 2] += p[0] + p[2];
                s[r - 1] += p[1] + p[3];
                s
            }
        }
    }

    /// Bind the node's `k`-th output.
    pub fn set(&mut self, node: &NodeProto, k: usize, v: Val) {
        if let Some(name) = node.output.get(k).filter(|n| !n.is_empty()) {
            self.values.insert(name.clone(), v);
        }
    }

    /// The value as a node of the model: constants become constant nodes, declared once.
    pub fn node_of(&mut self, onnx_name: &str, v: &Val) -> Result<NodeId, String> {
        match v {
            Val::Node(id) => Ok(*id),
            Val::Padded(..) => Err(format!("`{onnx_name}` is the result of a Pad that feeds something other than a convolution; nnc folds Pad only into the convolution after it")),
            Val::Const(c) => {
                if let Some(&id) = self.const_nodes.get(onnx_name) {
                    return Ok(id);
                }
                let id = self.const_node(onnx_name, c.clone())?;
                self.const_nodes.insert(onnx_name.to_string(), id);
                Ok(id)
            }
        }
    }

    /// A new constant node (a parameter of the written model) holding `c`.
    pub fn const_node(&mut self, onnx_name: &str, c: ConstTensor) -> Result<NodeId, String> {
        if !c.is_float() {
            return Err(format!("`{onnx_name}` is an integer tensor, which an nnc model cannot compute with"));
        }
        if c.shape.contains(&0) {
            return Err(format!("`{onnx_name}` is an empty tensor (shape {:?}), which an nnc model cannot hold", c.shape));
        }
        let name = self.ident(onnx_name);
        let t = c.to_tensor();
        let ty = TensorType::f32(c.shape.clone());
        Ok(self.graph.add(Node { name, kind: NodeKind::Const(t), ty, span: None, tile: None, kernel: None }, &[]))
    }

    /// A rank-0 constant: written as a number literal.
    pub fn scalar_node(&mut self, hint: &str, v: f32) -> NodeId {
        let name = self.ident(&format!("{hint}_scalar"));
        self.graph.add(Node { name, kind: NodeKind::Const(nnc_runtime::Tensor::f32(vec![], vec![v])), ty: TensorType::f32(vec![]), span: None, tile: None, kernel: None }, &[])
    }

    /// Build op `op` on `operands` with keywords `kw` through the op table, named after the
    /// ONNX value `onnx_name`.
    pub fn op(&mut self, onnx_name: &str, op: &'static str, operands: &[NodeId], kw: Vec<(&str, Const)>) -> Result<NodeId, String> {
        let typed: Vec<Operand> = operands.iter().map(|&o| Operand { ty: self.graph.node(o).ty.clone(), span: 0..0 }).collect();
        let mut args = CallArgs::new(op, typed, 0..0);
        for (k, v) in kw {
            args.push_keyword(k.to_string(), v, 0..0).map_err(|e| e.message)?;
        }
        let built = Op::build(op, &mut args).ok_or_else(|| format!("nnc has no op `{op}`"))?.map_err(|e| e.message)?;
        if !built.implicit.is_empty() {
            return Err(format!("{op}: every weight is passed explicitly on import"));
        }
        let types: Vec<&TensorType> = operands.iter().map(|&o| &self.graph.node(o).ty).collect();
        let ty = built.op.infer(&types).map_err(|e| e.message)?;
        let name = self.ident(onnx_name);
        Ok(self.graph.add(Node { name, kind: NodeKind::Op(built.op), ty, span: None, tile: None, kernel: None }, operands))
    }

    /// Translate node `index` (and, for a pattern, the nodes it absorbs).
    pub fn translate(&mut self, index: usize) -> Result<(), String> {
        let node = &self.nodes[index];
        let op_type = node.op_type.as_deref().unwrap_or("");
        let out = node.output.first().cloned().unwrap_or_default();
        // Exporters' multi-node patterns first: their first node is this one.
        if patterns::try_patterns(self, index)? {
            return Ok(());
        }
        // Folding: every input known, and an op whose value can be computed now.
        let inputs: Vec<Option<Val>> = (0..node.input.len()).map(|i| self.input(node, i)).collect::<Result<_, _>>()?;
        let all_const = inputs.iter().all(|v| matches!(v, None | Some(Val::Const(_))));
        if all_const && super::fold::foldable(op_type) {
            let consts: Vec<Option<ConstTensor>> = inputs.into_iter().map(|v| v.map(|v| match v {
                Val::Const(c) => c,
                Val::Node(_) | Val::Padded(..) => unreachable!("checked all constant"),
            })).collect();
            let folded = super::fold::fold(self, node, &consts)?;
            self.set(node, 0, Val::Const(folded));
            return Ok(());
        }
        let v = match op_type {
            "Identity" | "Dropout" => self.required(node, 0)?,
            "Shape" => {
                let shape = self.shape_of(&self.required(node, 0)?);
                let r = shape.len() as i64;
                let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let (start, end) = (clampi(attr_int(node, "start", 0)), clampi(attr_int(node, "end", r)));
                let dims: Vec<i64> = shape[start..end.max(start)].iter().map(|&d| d as i64).collect();
                Val::Const(ConstTensor::i64(vec![dims.len()], dims))
            }
            "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Sqrt" | "Abs" | "Neg" | "Gelu" => {
                if op_type == "Gelu" && attr_str(node, "approximate").is_some_and(|a| a != "none") {
                    return Err("Gelu with approximate=\"tanh\" is not supported (nnc's gelu is the exact erf form)".into());
                }
                let x = self.node_input(node, 0)?;
                let name = match op_type {
                    "Relu" => "relu",
                    "Sigmoid" => "sigmoid",
                    "Tanh" => "tanh",
                    "Exp" => "exp",
                    "Sqrt" => "sqrt",
                    "Abs" => "abs",
                    "Neg" => "neg",
                    _ => "gelu",
                };
                Val::Node(self.op(&out, name, &[x], vec![])?)
            }
            "LeakyRelu" => {
                let x = self.node_input(node, 0)?;
                Val::Node(self.op(&out, "leaky_relu", &[x], vec![("alpha", Const::Float(decimal(attr_float(node, "alpha", 0.01))))])?)
            }
            "Clip" => self.clip(node, &out)?,
            "Add" | "Sub" | "Mul" | "Div" => self.binary(node, &out)?,
            "Pow" => {
                let x = self.node_input(node, 0)?;
                let rank = self.graph.node(x).ty.rank();
                let e = self.constant(node, 1, "the exponent")?.filter(|c| c.shape.len() <= rank).and_then(|c| c.scalar()).ok_or("Pow is imported with a single known exponent")?;
                match e {
                    1.0 => Val::Node(x),
                    2.0 => Val::Node(self.op(&out, "mul", &[x, x], vec![])?),
                    0.5 => Val::Node(self.op(&out, "sqrt", &[x], vec![])?),
                    _ => return Err(format!("Pow with exponent {e} is not supported (only 0.5, 1 and 2)")),
                }
            }
            "MatMul" => self.matmul(index, &out)?,
            "Gemm" => self.gemm(node, &out)?,
            "Conv" => self.conv(node, &out)?,
            "Pad" => self.pad(node)?,
            "MaxPool" | "AveragePool" => self.pool(node, &out)?,
            "GlobalAveragePool" => {
                let x = self.node_input(node, 0)?;
                Val::Node(self.op(&out, "global_avg_pool", &[x], vec![])?)
            }
            "BatchNormalization" => {
                if attr_int(node, "training_mode", 0) != 0 {
                    return Err("BatchNormalization in training mode is not supported".into());
                }
                let operands = (0..5).map(|i| self.node_input(node, i)).collect::<Result<Vec<_>, _>>()?;
                Val::Node(self.op(&out, "batch_norm", &operands, vec![("eps", Const::Float(decimal(attr_float(node, "epsilon", 1e-5))))])?)
            }
            "LayerNormalization" => {
                let x = self.node_input(node, 0)?;
                let rank = self.graph.node(x).ty.rank();
                if axis(attr_int(node, "axis", -1), rank)? != rank - 1 {
                    return Err("LayerNormalization is imported over the last axis only".into());
                }
                let w = self.node_input(node, 1)?;
                let d = self.graph.node(x).ty.shape[rank - 1];
                let b = match self.input(node, 2)? {
                    Some(_) => self.node_input(node, 2)?,
                    None => self.const_node(&format!("{out}_bias"), ConstTensor::f32(vec![d], vec![0.0; d]))?,
                };
                Val::Node(self.op(&out, "layer_norm", &[x, w, b], vec![("eps", Const::Float(decimal(attr_float(node, "epsilon", 1e-5))))])?)
            }
            "Softmax" => {
                let x = self.node_input(node, 0)?;
                let rank = self.graph.node(x).ty.rank();
                let a = axis(attr_int(node, "axis", if self.opset >= 13 { -1 } else { 1 }), rank)?;
                if self.opset < 13 && a != rank - 1 {
                    return Err(format!("Softmax before opset 13 normalizes axes {a}.. together; nnc imports it over the last axis only"));
                }
                Val::Node(self.op(&out, "softmax", &[x], vec![("axis", Const::Int(a as i64))])?)
            }
            "Flatten" => {
                let x = self.node_input(node, 0)?;
                let shape = self.graph.node(x).ty.shape.clone();
                let a = flatten_axis(attr_int(node, "axis", 1), shape.len())?;
                if a == 1 && shape.len() >= 2 {
                    Val::Node(self.op(&out, "flatten", &[x], vec![])?)
                } else {
                    let outer: usize = shape[..a].iter().product();
                    let inner: usize = shape[a..].iter().product();
                    Val::Node(self.op(&out, "reshape", &[x], vec![("shape", usizes_const(&[outer, inner]))])?)
                }
            }
            "Reshape" => {
                let x = self.node_input(node, 0)?;
                let target = self.constant(node, 1, "the target shape")?.ok_or("Reshape needs a shape")?.ints();
                let shape = reshape_target(&self.graph.node(x).ty.shape, &target, attr_int(node, "allowzero", 0) != 0)?;
                Val::Node(self.op(&out, "reshape", &[x], vec![("shape", usizes_const(&shape))])?)
            }
            "Squeeze" | "Unsqueeze" => {
                let x = self.node_input(node, 0)?;
                let shape = self.graph.node(x).ty.shape.clone();
                let axes = match attr_ints(node, "axes") {
                    Some(a) => Some(a),
                    None => self.constant(node, 1, "the axes")?.map(|c| c.ints()),
                };
                let new = super::fold::squeeze_shape(op_type, &shape, axes.as_deref())?;
                Val::Node(self.op(&out, "reshape", &[x], vec![("shape", usizes_const(&new))])?)
            }
            "Transpose" => {
                let x = self.node_input(node, 0)?;
                let rank = self.graph.node(x).ty.rank();
                let perm = attr_ints(node, "perm").unwrap_or_else(|| (0..rank as i64).rev().collect());
                Val::Node(self.op(&out, "transpose", &[x], vec![("perm", ints_const(&perm))])?)
            }
            "Concat" => {
                let mut operands = Vec::new();
                for (i, name) in node.input.iter().enumerate() {
                    if name.is_empty() {
                        continue;
                    }
                    let v = self.required(node, i)?;
                    if matches!(&v, Val::Const(c) if c.len() == 0) {
                        continue;
                    }
                    operands.push(self.node_of(name, &v)?);
                }
                let rank = operands.first().map(|&o| self.graph.node(o).ty.rank()).ok_or("Concat has no inputs")?;
                let a = axis(attr_int(node, "axis", 0), rank)?;
                if operands.len() == 1 {
                    Val::Node(operands[0])
                } else {
                    Val::Node(self.op(&out, "concat", &operands, vec![("axis", Const::Int(a as i64))])?)
                }
            }
            "Slice" => self.slice(node, &out)?,
            "Cast" => {
                let to = attr_int(node, "to", 1) as i32;
                if to != data_type::FLOAT {
                    return Err(format!("Cast of a computed value to {} is not supported (nnc models compute in f32)", data_type::name(to)));
                }
                self.required(node, 0)?
            }
            "LSTM" => self.lstm(node)?,
            "Attention" => self.attention(node, &out)?,
            "QuantizeLinear" => self.quantize_pair(index)?,
            "DequantizeLinear" => return Err("DequantizeLinear of a computed value is imported only right after the QuantizeLinear that made it".into()),
            other => return Err(format!("{other} is not supported")),
        };
        self.set(node, 0, v);
        Ok(())
    }

    /// Input `i` as a model node.
    pub fn node_input(&mut self, node: &NodeProto, i: usize) -> Result<NodeId, String> {
        let v = self.required(node, i)?;
        let name = node.input[i].clone();
        self.node_of(&name, &v)
    }

}

/// Elements of `shape`, if the count fits in a tensor nnc can hold.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| (n as u64).saturating_mul(4) <= nnc_runtime::MAX_TENSOR_BYTES)
}

/// `Flatten`'s axis in `0..=rank` (ONNX: `[-rank, rank]`, negative counted from the end).
pub fn flatten_axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if a < -r || a > r {
        return Err(format!("Flatten axis {a} is out of range for rank {rank}"));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// ONNX `Reshape`'s target (0 copies the input's size unless `allowzero`, one -1 is
/// inferred) as a concrete shape.
pub fn reshape_target(input: &[usize], target: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let total = checked_numel(input).ok_or_else(|| format!("shape {input:?} is too large"))?;
    let mut shape = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                shape.push(1);
            }
            0 if !allowzero => shape.push(*input.get(i).ok_or_else(|| format!("Reshape copies axis {i}, which the input of shape {input:?} lacks"))?),
            d if d >= 0 => shape.push(d as usize),
            _ => return Err(format!("Reshape target {target:?} is not a shape")),
        }
    }
    let known = checked_numel(&shape).ok_or_else(|| format!("Reshape target {target:?} is too large"))?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(format!("cannot reshape {input:?} to {target:?}"));
        }
        shape[i] = total / known;
    } else if known != total {
        return Err(format!("cannot reshape {input:?} ({total} elements) to {target:?}"));
    }
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onnx_names_become_readable_identifiers() {
        assert_eq!(readable("/layer1/layer1.0/conv1/Conv_output_0"), "layer1_0_conv1_Conv");
        assert_eq!(readable("layer1.0.conv1.weight"), "layer1_0_conv1_weight");
        assert_eq!(readable("onnx::MatMul_123"), "onnx_MatMul_123");
        assert_eq!(readable("123"), "v_123");
        assert_eq!(readable("input"), "v_input");
        assert_eq!(readable("/"), "v_");
    }

    #[test]
    fn reshape_targets_resolve_zero_and_minus_one() {
        assert_eq!(reshape_target(&[2, 3, 4], &[0, -1], false).unwrap(), [2, 12]);
        assert_eq!(reshape_target(&[2, 3, 4], &[-1, 4], false).unwrap(), [6, 4]);
        assert_eq!(reshape_target(&[2, 0], &[0, 5], true).unwrap(), [0, 5]);
        assert_eq!(reshape_target(&[2, 3], &[0, 5], false).unwrap_err(), "cannot reshape [2, 3] (6 elements) to [0, 5]");
        assert!(reshape_target(&[2, 3], &[-1, -1], false).is_err());
        assert!(reshape_target(&[2, 3], &[4, -1], false).is_err());
    }
}
