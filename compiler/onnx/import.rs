//! ONNX nodes to graph IR, one node at a time in the file's (topological) order.
//!
//! Every op node is built through the op table (`Op::build` and `Op::infer`, the same
//! definitions `.nn` calls go through), so an imported graph obeys the rules of a written one
//! and the IR's shape rules check it. Values known at import time stay [`Val::Const`] and are
//! folded (shape subgraphs); the exporters' multi-node patterns are recognised where their
//! first node is reached ([`super::patterns`]).

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

fn ints_const(v: &[i64]) -> Const {
    Const::List(v.iter().map(|&x| Const::Int(x)).collect())
}

fn usizes_const(v: &[usize]) -> Const {
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

    /// `QuantizeLinear → DequantizeLinear` on a computed value, as nnc's int8 quantization
    /// does it: symmetric int8 (zero point 0) with one scale per tensor. The pair leaves the
    /// value as it is in the graph and records its scale, which `--quantize int8` (implied for
    /// such models) then uses instead of calibrating.
    fn quantize_pair(&mut self, index: usize) -> Result<Val, String> {
        let node = &self.nodes[index];
        let x = self.node_input(node, 0)?;
        let scale = self.constant(node, 1, "the scale")?.ok_or("QuantizeLinear needs a scale")?;
        let s = scale.scalar().ok_or("QuantizeLinear of a computed value is imported with one scale per tensor")? as f32;
        let zero = self.constant(node, 2, "the zero point")?;
        match &zero {
            Some(z) if z.onnx_type == data_type::INT8 && z.values().iter().all(|&v| v == 0.0) => {}
            Some(z) if z.onnx_type == data_type::INT8 => return Err("asymmetric int8 (a nonzero zero point) is not supported: nnc's int8 is symmetric; quantize activations symmetrically (ONNX Runtime: extra_options={\"ActivationSymmetric\": True})".into()),
            _ => return Err("uint8 activations are not supported: nnc's int8 is symmetric; quantize activations as QInt8 with ActivationSymmetric".into()),
        }
        if !(s > 0.0 && s.is_finite()) {
            return Err(format!("scale {s} is not a positive number"));
        }
        let out = &node.output[0];
        let dq = self.uses.only_reader(out).filter(|&i| self.nodes[i].op_type.as_deref() == Some("DequantizeLinear") && !self.consumed.contains(&i)).ok_or("QuantizeLinear is imported only when one DequantizeLinear alone reads it")?;
        let dq_node = &self.nodes[dq];
        let same = |i: usize, want: &Option<ConstTensor>| match (dq_node.input.get(i).filter(|n| !n.is_empty()).and_then(|n| self.values.get(n)), want) {
            (Some(Val::Const(c)), Some(w)) => c.values() == w.values(),
            (None, None) => true,
            _ => false,
        };
        if dq_node.input.first() != Some(out) || !same(1, &Some(scale.clone())) || !same(2, &zero) {
            return Err("the DequantizeLinear after this QuantizeLinear uses another scale or zero point".into());
        }
        if let Some(&prev) = self.activation_scales.get(&x) {
            if prev != s {
                return Err(format!("`{}` is quantized with two scales ({prev} and {s})", node.input[0]));
            }
        }
        self.activation_scales.insert(x, s);
        self.consumed.insert(dq);
        self.values.insert(dq_node.output[0].clone(), Val::Node(x));
        Ok(Val::Node(x))
    }

    fn clip(&mut self, node: &NodeProto, out: &str) -> Result<Val, String> {
        let x = self.node_input(node, 0)?;
        // Opset 11 on (all nnc imports): the bounds are inputs.
        let bound = |i: usize, what: &str| -> Result<Option<f64>, String> {
            match self.constant(node, i, what)? {
                None => Ok(None),
                Some(c) => c.scalar().map(|v| Some(decimal(v as f32))).ok_or_else(|| format!("Clip's {what} must be one number")),
            }
        };
        let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
        Ok(Val::Node(match (lo, hi) {
            (Some(l), Some(h)) if l == 0.0 && h == 6.0 => self.op(out, "relu6", &[x], vec![])?,
            (Some(l), None) if l == 0.0 => self.op(out, "relu", &[x], vec![])?,
            (None, None) => x,
            (l, h) => {
                let mut kw = Vec::new();
                if let Some(l) = l {
                    kw.push(("min", Const::Float(l)));
                }
                if let Some(h) = h {
                    kw.push(("max", Const::Float(h)));
                }
                self.op(out, "clip", &[x], kw)?
            }
        }))
    }

    /// An operand of an elementwise op: a single known number whose rank does not widen the
    /// result is a literal, anything else a node.
    fn elementwise_operand(&mut self, node: &NodeProto, i: usize, other_rank: usize) -> Result<NodeId, String> {
        let v = self.required(node, i)?;
        if let Val::Const(c) = &v {
            if let Some(s) = c.scalar().filter(|_| c.shape.len() <= other_rank && c.is_float()) {
                return Ok(self.scalar_node(&node.input[i], s as f32));
            }
        }
        let name = node.input[i].clone();
        self.node_of(&name, &v)
    }

    fn binary(&mut self, node: &NodeProto, out: &str) -> Result<Val, String> {
        let ranks: Vec<usize> = (0..2).map(|i| self.required(node, i).map(|v| self.shape_of(&v).len())).collect::<Result<_, _>>()?;
        let a = self.elementwise_operand(node, 0, ranks[1])?;
        let b = self.elementwise_operand(node, 1, ranks[0])?;
        let name = match node.op_type.as_deref() {
            Some("Add") => "add",
            Some("Sub") => "sub",
            Some("Mul") => "mul",
            _ => "div",
        };
        Ok(Val::Node(self.op(out, name, &[a, b], vec![])?))
    }

    /// `MatMul` by a known 2-D matrix is a dense layer (its weight transposed to
    /// `[units, features]`), taking the bias of an `Add` that alone reads it.
    fn matmul(&mut self, index: usize, out: &str) -> Result<Val, String> {
        let node = &self.nodes[index];
        let b = self.required(node, 1)?;
        if let Val::Const(w) = &b {
            if w.shape.len() == 2 && w.is_float() {
                let (features, units) = (w.shape[0], w.shape[1]);
                let wt = w.gather(vec![units, features], |i| (i % features) * units + i / features);
                let weight_name = node.input[1].clone();
                let x = self.node_input(node, 0)?;
                let weight = self.const_node(&weight_name, wt)?;
                if let Some((add_index, bias_name, bias)) = patterns::bias_add(self, index, units) {
                    let bias = self.const_node(&bias_name, bias)?;
                    let add = &self.nodes[add_index];
                    let add_out = add.output[0].clone();
                    let y = self.op(&add_out, "dense", &[x, weight, bias], vec![])?;
                    self.consumed.insert(add_index);
                    self.values.insert(add_out, Val::Node(y));
                    return Ok(Val::Node(y));
                }
                return Ok(Val::Node(self.op(out, "dense", &[x, weight], vec![("bias", Const::Bool(false))])?));
            }
        }
        let a = self.node_input(node, 0)?;
        let bn = self.node_input(node, 1)?;
        Ok(Val::Node(self.op(out, "matmul", &[a, bn], vec![])?))
    }

    fn gemm(&mut self, node: &NodeProto, out: &str) -> Result<Val, String> {
        let (alpha, beta) = (attr_float(node, "alpha", 1.0), attr_float(node, "beta", 1.0));
        let (trans_a, trans_b) = (attr_int(node, "transA", 0) != 0, attr_int(node, "transB", 0) != 0);
        let Some(b) = self.constant(node, 1, "B").ok().flatten().filter(|b| b.shape.len() == 2 && b.is_float()) else {
            return Err("Gemm is imported with a known 2-D B (a dense layer)".into());
        };
        let mut x = self.node_input(node, 0)?;
        if trans_a {
            x = self.op(&format!("{out}_a"), "transpose", &[x], vec![("perm", ints_const(&[1, 0]))])?;
        }
        let (r, c) = (b.shape[0], b.shape[1]);
        // The dense weight is [units, features]: B itself when transposed, else Bᵀ.
        let (units, features) = if trans_b { (r, c) } else { (c, r) };
        let w = if trans_b { b.clone() } else { b.gather(vec![units, features], |i| (i % features) * units + i / features) };
        let w = w.like(vec![units, features], w.values().into_iter().map(|v| v * alpha as f64).collect());
        let weight = self.const_node(&node.input[1], w)?;
        let bias = match self.constant(node, 2, "C")? {
            None => None,
            Some(cst) => {
                let vals = cst.values();
                let per_unit: Vec<f32> = match (cst.len(), cst.shape.as_slice()) {
                    (1, _) => vec![vals[0] as f32 * beta; units],
                    (n, [_] | [1, _]) if n == units => vals.iter().map(|&v| v as f32 * beta).collect(),
                    _ => return Err(format!("Gemm's C of shape {:?} is not a bias per unit", cst.shape)),
                };
                Some(self.const_node(&node.input[2], ConstTensor::f32(vec![units], per_unit))?)
            }
        };
        Ok(Val::Node(match bias {
            Some(bias) => self.op(out, "dense", &[x, weight, bias], vec![])?,
            None => self.op(out, "dense", &[x, weight], vec![("bias", Const::Bool(false))])?,
        }))
    }

    fn conv(&mut self, node: &NodeProto, out: &str) -> Result<Val, String> {
        let (x, extra) = match self.required(node, 0)? {
            Val::Padded(id, p) => (id, p),
            v => (self.node_of(&node.input[0].clone(), &v)?, [0; 4]),
        };
        let Some(w) = self.constant(node, 1, "the filter")? else { return Err("Conv needs a filter".into()) };
        if w.shape.len() != 4 {
            return Err(format!("Conv is imported in 2-D only; the filter has shape {:?}", w.shape));
        }
        if self.graph.node(x).ty.rank() != 4 {
            return Err(format!("Conv is imported in 2-D only; the input has shape {:?}", self.graph.node(x).ty.shape));
        }
        // `auto_pad` sizes the padding for the input as the Conv sees it: after a folded Pad.
        let in_shape = self.shape_of(&Val::Padded(x, extra));
        let stride = attr_ints(node, "strides").unwrap_or(vec![1, 1]);
        let dilation = attr_ints(node, "dilations").unwrap_or(vec![1, 1]);
        let kernel = [w.shape[2], w.shape[3]];
        let pads = self.pads(node, &in_shape, kernel, &stride, &dilation)?;
        let padding: Vec<usize> = (0..4).map(|i| pads[i].checked_add(extra[i]).ok_or("padding is too large")).collect::<Result<_, _>>()?;
        let weight = self.const_node(&node.input[1], w)?;
        let mut operands = vec![x, weight];
        if self.input(node, 2)?.is_some() {
            operands.push(self.node_input(node, 2)?);
        }
        let mut kw = vec![("stride", ints_const(&stride)), ("padding", usizes_const(&padding)), ("dilation", ints_const(&dilation)), ("groups", Const::Int(attr_int(node, "group", 1)))];
        if operands.len() == 2 {
            kw.push(("bias", Const::Bool(false)));
        }
        Ok(Val::Node(self.op(out, "conv2d", &operands, kw)?))
    }

    /// Padding `[top, left, bottom, right]` from `pads` or `auto_pad`.
    fn pads(&self, node: &NodeProto, in_shape: &[usize], kernel: [usize; 2], stride: &[i64], dilation: &[i64]) -> Result<[usize; 4], String> {
        const LARGEST: i64 = 1 << 20;
        if stride.len() != 2 || dilation.len() != 2 || stride.iter().chain(dilation).any(|&v| !(1..=LARGEST).contains(&v)) {
            return Err(format!("strides {stride:?} and dilations {dilation:?} must be two positive numbers (at most {LARGEST})"));
        }
        if in_shape.len() != 4 {
            return Err(format!("a 2-D window needs an input of rank 4, not {in_shape:?}"));
        }
        match attr_str(node, "auto_pad").as_deref().unwrap_or("NOTSET") {
            "NOTSET" => {
                let p = attr_ints(node, "pads").unwrap_or(vec![0; 4]);
                if p.len() != 4 || p.iter().any(|&v| !(0..1 << 20).contains(&v)) {
                    return Err(format!("pads {p:?} must be four non-negative numbers"));
                }
                // ONNX orders pads [top, left, bottom, right], as nnc does.
                Ok([p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize])
            }
            "VALID" => Ok([0; 4]),
            mode @ ("SAME_UPPER" | "SAME_LOWER") => {
                let mut p = [0; 4];
                for d in 0..2 {
                    // In i128: sizes, strides and dilations are bounded, their products not.
                    let size = in_shape[2 + d] as i128;
                    let (s, dl) = (stride[d] as i128, dilation[d] as i128);
                    let out = (size + s - 1) / s;
                    let span = (kernel[d] as i128 - 1) * dl + 1;
                    let total = usize::try_from(((out - 1) * s + span - size).max(0)).map_err(|_| "SAME padding is too large")?;
                    let (small, big) = (total / 2, total - total / 2);
                    (p[d], p[d + 2]) = if mode == "SAME_UPPER" { (small, big) } else { (big, small) };
                }
                Ok(p)
            }
            other => Err(format!("auto_pad \"{other}\" is not an ONNX mode")),
        }
    }

    fn pad(&mut self, node: &NodeProto) -> Result<Val, String> {
        let mode = attr_str(node, "mode").unwrap_or_else(|| "constant".into());
        // Opset 11 on: pads and value are inputs.
        let pads = self.constant(node, 1, "the pads")?.map(|c| c.ints());
        let value = self.constant(node, 2, "the padding value")?.and_then(|c| c.scalar()).unwrap_or(0.0);
        let x = self.node_input(node, 0)?;
        let rank = self.graph.node(x).ty.rank();
        let pads = pads.ok_or("Pad needs pads")?;
        if mode != "constant" || value != 0.0 || rank != 4 || pads.len() != 8 || self.input(node, 3)?.is_some() {
            return Err("Pad is imported only as zero padding of the two spatial axes of an NCHW tensor, folded into the convolution that reads it".into());
        }
        // [begin N, C, H, W, end N, C, H, W]
        if pads[0] != 0 || pads[1] != 0 || pads[4] != 0 || pads[5] != 0 || pads.iter().any(|&p| p < 0) {
            return Err(format!("Pad {pads:?} pads more than the spatial axes"));
        }
        Ok(Val::Padded(x, [pads[2] as usize, pads[3] as usize, pads[6] as usize, pads[7] as usize]))
    }

    fn pool(&mut self, node: &NodeProto, out: &str) -> Result<Val, String> {
        let max = node.op_type.as_deref() == Some("MaxPool");
        if node.output.len() > 1 && !node.output[1].is_empty() {
            return Err("MaxPool's Indices output is not supported".into());
        }
        let x = self.node_input(node, 0)?;
        let in_shape = self.graph.node(x).ty.shape.clone();
        if in_shape.len() != 4 {
            return Err(format!("pooling is imported in 2-D only; the input has shape {in_shape:?}"));
        }
        let kernel = attr_ints(node, "kernel_shape").filter(|k| k.len() == 2 && k.iter().all(|&v| (1..1 << 20).contains(&v))).ok_or("pooling is imported in 2-D with a kernel_shape of two sizes")?;
        let kernel = [kernel[0] as usize, kernel[1] as usize];
        let stride = attr_ints(node, "strides").unwrap_or(vec![1, 1]);
        let dilation = attr_ints(node, "dilations").unwrap_or(vec![1, 1]);
        if dilation != [1, 1] {
            return Err("dilated pooling is not supported".into());
        }
        let pads = self.pads(node, &in_shape, kernel, &stride, &dilation)?;
        if !max && attr_int(node, "count_include_pad", 0) != 0 && pads.iter().any(|&p| p > 0) {
            return Err("AveragePool with count_include_pad=1 and padding is not supported (nnc leaves padded cells out of the average)".into());
        }
        if attr_int(node, "ceil_mode", 0) != 0 {
            // Ceil mode changes the result only where a last window would start inside.
            for d in 0..2 {
                let span = in_shape[2 + d] + pads[d] + pads[d + 2];
                if span < kernel[d] || (span - kernel[d]) % stride[d] as usize != 0 {
                    return Err("pooling with ceil_mode=1 is supported only where it rounds nothing".into());
                }
            }
        }
        let kw = vec![("kernel", usizes_const(&kernel)), ("stride", ints_const(&stride)), ("padding", usizes_const(&pads))];
        Ok(Val::Node(self.op(out, if max { "max_pool" } else { "avg_pool" }, &[x], kw)?))
    }

    fn slice(&mut self, node: &NodeProto, out: &str) -> Result<Val, String> {
        let x = self.node_input(node, 0)?;
        let shape = self.graph.node(x).ty.shape.clone();
        let spec = super::fold::slice_spec(self, node, shape.len())?;
        let mut v = x;
        for (k, (a, start, end, step)) in spec.iter().enumerate() {
            // ONNX's "to the end" sentinels are beyond any axis: clamped as Python does.
            let len = shape[*a] as i64;
            let clamp = |b: i64| b.clamp(-len - 1, len);
            let name = if k + 1 == spec.len() { out.to_string() } else { format!("{}_axis{a}", out.strip_suffix("_output_0").unwrap_or(out)) };
            v = self.op(&name, "slice", &[v], vec![("axis", Const::Int(*a as i64)), ("start", Const::Int(clamp(*start))), ("end", Const::Int(clamp(*end))), ("step", Const::Int(*step))])?;
        }
        Ok(Val::Node(v))
    }

    /// ONNX `LSTM` (forward, zero initial state, no peepholes) as nnc's `lstm`: gates
    /// reordered from ONNX's i, o, f, c to PyTorch's i, f, g, o; `Y` is `[T, 1, N, H]`
    /// and `Y_h` the last step.
    fn lstm(&mut self, node: &NodeProto) -> Result<Val, String> {
        if attr_str(node, "direction").is_some_and(|d| d != "forward") || attr_int(node, "layout", 0) != 0 || attr_int(node, "input_forget", 0) != 0 || attr(node, "clip").is_some() || attr(node, "activations").is_some() {
            return Err("LSTM is imported forward, in layout 0, with default activations and no clip".into());
        }
        for (i, what) in [(4, "sequence_lens"), (7, "peepholes P")] {
            if self.input(node, i)?.is_some() {
                return Err(format!("LSTM with {what} is not supported"));
            }
        }
        for (i, what) in [(5, "initial_h"), (6, "initial_c")] {
            match self.input(node, i)? {
                None => {}
                Some(Val::Const(c)) if c.values().iter().all(|&v| v == 0.0) => {}
                Some(_) => return Err(format!("LSTM with a nonzero {what} is not supported")),
            }
        }
        if node.output.get(2).is_some_and(|n| !n.is_empty()) {
            return Err("LSTM's Y_c output is not supported".into());
        }
        let x = self.node_input(node, 0)?;
        let w = self.constant(node, 1, "W")?.ok_or("LSTM needs W")?;
        let r = self.constant(node, 2, "R")?.ok_or("LSTM needs R")?;
        let h = w.shape.get(1).copied().unwrap_or(0) / 4;
        if w.shape.len() != 3 || w.shape[0] != 1 || w.shape[1] != 4 * h || r.shape != [1, 4 * h, h] || h == 0 {
            return Err(format!("LSTM weights of shapes {:?} and {:?} are not one direction's", w.shape, r.shape));
        }
        // Rows of gate blocks [i, o, f, c] → [i, f, c, o].
        let reorder = |t: &ConstTensor, cols: usize| -> ConstTensor {
            let blocks = [0usize, 2, 3, 1];
            t.gather(vec![4 * h, cols], |i| {
                let (row, col) = (i / cols, i % cols);
                (blocks[row / h] * h + row % h) * cols + col
            })
        };
        let wih = reorder(&w, w.shape[2]);
        let whh = reorder(&r, h);
        let wih = self.const_node(&node.input[1], wih)?;
        let whh = self.const_node(&node.input[2], whh)?;
        let mut operands = vec![x, wih, whh];
        if let Some(b) = self.constant(node, 3, "B")? {
            if b.shape != [1, 8 * h] {
                return Err(format!("LSTM bias of shape {:?} is not [1, {}]", b.shape, 8 * h));
            }
            let half = |k: usize| b.gather(vec![4 * h, 1], move |i| k * 4 * h + i);
            let (bi, bh) = (reorder(&half(0), 1), reorder(&half(1), 1));
            let flat = |t: ConstTensor| ConstTensor { shape: vec![4 * h], ..t };
            operands.push(self.const_node(&format!("{}_ih", node.input[3]), flat(bi))?);
            operands.push(self.const_node(&format!("{}_hh", node.input[3]), flat(bh))?);
        }
        let y_name = node.output.first().cloned().unwrap_or_default();
        let kw = if operands.len() == 3 { vec![("bias", Const::Bool(false))] } else { vec![] };
        let seq = self.op(&format!("{y_name}_steps"), "lstm", &operands, kw)?;
        let [t, n] = [self.graph.node(seq).ty.shape[0], self.graph.node(seq).ty.shape[1]];
        if let Some(yh) = node.output.get(1).filter(|n| !n.is_empty()).cloned() {
            let last = self.op(&yh, "slice", &[seq], vec![("axis", Const::Int(0)), ("start", Const::Int(t as i64 - 1)), ("end", Const::Int(t as i64))])?;
            self.values.insert(yh, Val::Node(last));
        }
        if y_name.is_empty() {
            return Ok(Val::Node(seq));
        }
        Ok(Val::Node(self.op(&y_name, "reshape", &[seq], vec![("shape", usizes_const(&[t, 1, n, h]))])?))
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
