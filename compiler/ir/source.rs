//! A graph written back as `.nn` source: one statement per op, layers with their parameters
//! named as before (`name="layer1.0.conv1"` gives `layer1.0.conv1.weight`), so the graph's
//! weights, saved under their names, bind to the written model.
//!
//! This is how `nnc prune` writes a model whose layers shrank (`channels:F`): its shapes
//! no longer match the source's block arguments, so the model is written flat from the
//! pruned graph. Elaborating the written source gives the same graph up to node names.

use crate::ir::{Graph, NodeId, NodeKind};
use crate::ops::{Const, Op};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// Each layer's parameters as its call creates them: (op name, field names in operand order).
fn layer_fields(op: &Op) -> Option<&'static [&'static str]> {
    Some(match op {
        Op::Conv2d(_) | Op::Dense(_) | Op::LayerNorm(_) => &["weight", "bias"],
        Op::BatchNorm(_) => &["weight", "bias", "running_mean", "running_var"],
        Op::Lstm(_) => &["weight_ih", "weight_hh", "bias_ih", "bias_hh"],
        Op::MatMul(_) | Op::Unary(_) | Op::Binary(_) | Op::Softmax(_) | Op::Pool(_) | Op::GlobalAvgPool(_) | Op::Flatten(_) | Op::Reshape(_) | Op::Transpose(_) | Op::Concat(_) | Op::Slice(_) | Op::Attention(_) | Op::Fused(_) | Op::ConvertLayout(_) | Op::Quantize(_) | Op::Dequantize(_) | Op::Requantize(_) | Op::Cast(_) => return None,
    })
}

/// Words an identifier of the written model may not be.
const RESERVED: &[&str] = &["model", "block", "input", "output", "param", "return", "true", "false", "f32", "f16", "bf16", "i8", "i32"];

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !RESERVED.contains(&s)
}

/// Identifiers for the graph's values: a value's own name where it is one, else its name
/// with every other character made `_` (and a numeric suffix where that collides).
struct Idents {
    taken: HashSet<String>,
    of: HashMap<NodeId, String>,
}

impl Idents {
    fn assign(&mut self, id: NodeId, name: &str) -> String {
        let mut base: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        if !is_ident(&base) {
            base = format!("v_{base}");
        }
        let mut ident = base.clone();
        let mut n = 1;
        while self.taken.contains(&ident) {
            ident = format!("{base}_{n}");
            n += 1;
        }
        self.taken.insert(ident.clone());
        self.of.insert(id, ident.clone());
        ident
    }
}

/// The graph (weights bound as constants) as a `.nn` model, or why it cannot be written: an
/// op the language has no call for (the quantization and layout ops passes add), a constant
/// that is neither a layer's parameter nor a single number, or parameters named in a way
/// neither form of the language can declare.
///
/// `symbolic` names input dimensions that were symbols in the original model (by input name,
/// one entry per axis), written back as those symbols so the model still takes any size
/// there; unless the graph reshapes, whose target shapes were resolved with the sizes bound.
pub fn to_source(graph: &Graph, header: &str, symbolic: &HashMap<String, Vec<Option<String>>>) -> Result<String, String> {
    let reshapes = graph.node_ids().any(|id| matches!(graph.node(id).op(), Some(Op::Reshape(_))));
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "# {line}");
    }
    let _ = writeln!(out, "model {} {{", graph.name);
    let mut idents = Idents { taken: HashSet::new(), of: HashMap::new() };
    // Inputs and outputs keep their names; nothing else may take them.
    for &id in &graph.inputs {
        idents.taken.insert(graph.node(id).name.clone());
    }
    for (name, _) in &graph.outputs {
        idents.taken.insert(name.clone());
    }
    for &id in &graph.inputs {
        let node = graph.node(id);
        if !is_ident(&node.name) {
            return Err(format!("input `{}` is not a name the language can declare", node.name));
        }
        idents.of.insert(id, node.name.clone());
        let dims: Vec<String> = node.ty.shape.iter().enumerate().map(|(axis, d)| match symbolic.get(&node.name).and_then(|s| s.get(axis)).cloned().flatten() {
            Some(sym) if !reshapes => sym,
            _ => d.to_string(),
        }).collect();
        let _ = writeln!(out, "    input {}: {}[{}]", node.name, node.ty.dtype.name(), dims.join(", "));
    }
    // The layer that owns each parameter, and the name prefix its call takes.
    let mut owned: HashSet<NodeId> = HashSet::new();
    let mut prefix: HashMap<NodeId, String> = HashMap::new();
    for id in graph.topo_order() {
        let Some(fields) = graph.node(id).op().and_then(layer_fields) else { continue };
        let params = &graph.operands(id)[1..];
        let common = params.first().and_then(|&p| graph.node(p).name.strip_suffix(&format!(".{}", fields[0])).map(str::to_string));
        let implicit = common.as_ref().is_some_and(|c| params.iter().zip(fields.iter()).all(|(&p, f)| graph.node(p).name == format!("{c}.{f}") && graph.users(p).len() == 1));
        match (implicit, common) {
            (true, Some(c)) => {
                owned.extend(params.iter().copied());
                prefix.insert(id, c);
            }
            _ => {
                // Explicit parameters: `param NAME: type`, passed positionally.
                for &p in params {
                    let name = &graph.node(p).name;
                    if !is_ident(name) {
                        return Err(format!("parameter `{name}` of layer `{}` cannot be declared: neither `<layer>.{}` nor a plain name", graph.node(id).name, fields[0]));
                    }
                }
            }
        }
    }
    let outputs: HashMap<NodeId, &str> = graph.outputs.iter().map(|(n, id)| (*id, n.as_str())).collect();
    let mut declared: HashSet<NodeId> = HashSet::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        let op = match &node.kind {
            NodeKind::Input { .. } => continue,
            NodeKind::Param => return Err(format!("parameter `{}` has no value: bind the weights first", node.name)),
            NodeKind::Const(_) => continue,
            NodeKind::Op(op) => op,
        };
        let operands = graph.operands(id);
        let mut args: Vec<String> = Vec::new();
        for (i, &o) in operands.iter().enumerate() {
            if owned.contains(&o) {
                continue;
            }
            let on = graph.node(o);
            let text = match &on.kind {
                NodeKind::Const(t) if layer_fields(op).is_some() && i > 0 => {
                    // An explicit parameter, declared once.
                    if declared.insert(o) {
                        let _ = writeln!(out, "    param {}: {}", on.name, type_text(&on.ty));
                        idents.taken.insert(on.name.clone());
                    }
                    let _ = t;
                    on.name.clone()
                }
                NodeKind::Const(t) if t.len() == 1 && on.ty.rank() == 0 => {
                    let v = t.to_f32_vec()[0];
                    if !v.is_finite() {
                        return Err(format!("constant `{}` is {v}, which the language has no literal for", on.name));
                    }
                    format_number(v)
                }
                // A named tensor (a parameter an op other than a layer reads): declared.
                NodeKind::Const(_) if is_ident(&on.name) => {
                    if declared.insert(o) {
                        let _ = writeln!(out, "    param {}: {}", on.name, type_text(&on.ty));
                        idents.taken.insert(on.name.clone());
                    }
                    on.name.clone()
                }
                NodeKind::Const(_) => return Err(format!("constant `{}` ({}) is neither a parameter nor a single number", on.name, type_text(&on.ty))),
                _ => idents.of.get(&o).cloned().ok_or_else(|| format!("`{}` is used before it is defined", on.name))?,
            };
            args.push(text);
        }
        let call = call_text(graph, id, op, args, prefix.get(&id))?;
        match outputs.get(&id) {
            Some(name) if !idents.of.contains_key(&id) => {
                idents.of.insert(id, name.to_string());
                let _ = writeln!(out, "    output {name} = {call}");
            }
            _ => {
                let ident = idents.assign(id, &node.name);
                let _ = writeln!(out, "    {ident} = {call}");
            }
        }
    }
    // Outputs whose value is also another output, or an input: bound by name.
    for (name, id) in &graph.outputs {
        if idents.of.get(id).is_some_and(|i| i != name) {
            let _ = writeln!(out, "    output {name} = {}", idents.of[id]);
        }
    }
    out.push_str("}\n");
    Ok(out)
}

/// The call for `op` on `args` (its operands' text, layer parameters left out when the call
/// creates them under `prefix`).
fn call_text(graph: &Graph, id: NodeId, op: &Op, mut args: Vec<String>, prefix: Option<&String>) -> Result<String, String> {
    let operands = graph.operands(id);
    let has_bias = |n: usize| operands.len() > n;
    let mut kw: Vec<String> = Vec::new();
    let name = op.name();
    match op {
        Op::Conv2d(c) => {
            let w = &graph.node(operands[1]).ty.shape;
            let list = |v: &[usize]| format!("[{}]", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "));
            if prefix.is_some() {
                kw.push(format!("filters={}", w[0]));
                kw.push(format!("kernel={}", list(&w[2..4])));
            }
            kw.push(format!("stride={}", list(&c.stride)));
            kw.push(format!("padding={}", list(&c.padding)));
            kw.push(format!("dilation={}", list(&c.dilation)));
            kw.push(format!("groups={}", c.groups));
            kw.push(format!("bias={}", has_bias(2)));
        }
        Op::Dense(_) => {
            if prefix.is_some() {
                kw.push(format!("units={}", graph.node(operands[1]).ty.shape[0]));
            }
            kw.push(format!("bias={}", has_bias(2)));
        }
        Op::Lstm(_) => kw.push(format!("bias={}", has_bias(3))),
        Op::Reshape(r) => args.push(format!("[{}]", r.shape.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))),
        Op::Slice(sl) => {
            // `i64::MIN` (a reversed slice's default end) has no literal: `-len-1` means the
            // same (Python's rule clamps bounds beyond the axis).
            let len = graph.node(operands[0]).ty.shape[sl.axis] as i64;
            let clamp = |v: i64| if v == i64::MIN { -len - 1 } else { v };
            kw.push(format!("axis={}", sl.axis));
            kw.push(format!("start={}", clamp(sl.start)));
            kw.push(format!("end={}", clamp(sl.end)));
            kw.push(format!("step={}", sl.step));
        }
        Op::Cast(_) | Op::ConvertLayout(_) | Op::Quantize(_) | Op::Dequantize(_) | Op::Requantize(_) | Op::Fused(_) => {
            return Err(format!("`{}` ({name}) has no call in the language: write the model before optimization passes", graph.node(id).name));
        }
        // Their IR attributes are the call's keywords.
        Op::MatMul(_) | Op::BatchNorm(_) | Op::LayerNorm(_) | Op::Unary(_) | Op::Binary(_) | Op::Softmax(_) | Op::Pool(_) | Op::GlobalAvgPool(_) | Op::Flatten(_) | Op::Transpose(_) | Op::Concat(_) | Op::Attention(_) => {}
    }
    if !matches!(op, Op::Conv2d(_) | Op::Reshape(_) | Op::Slice(_)) {
        kw.extend(op.attrs().into_iter().map(|(k, v): (&str, Const)| format!("{k}={v}")));
    }
    if let Some(p) = prefix {
        kw.push(format!("name={}", Const::Str(p.clone())));
    }
    args.extend(kw);
    Ok(format!("{name}({})", args.join(", ")))
}

fn type_text(ty: &crate::ir::TensorType) -> String {
    format!("{}[{}]", ty.dtype.name(), ty.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

/// A number as the lexer reads it back exactly (negative ones through unary minus).
fn format_number(v: f32) -> String {
    let text = format!("{v:?}");
    if text.contains(['.', 'e']) || !v.is_finite() { text } else { format!("{text}.0") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{build_graph, Source};
    use crate::ir::print::print_graph;

    /// Written and elaborated again, a model gives the same graph text up to node names, and
    /// its parameters keep their names.
    #[test]
    fn written_models_elaborate_to_the_same_graph() {
        for name in ["lenet5", "resnet18", "mobilenet_v2", "transformer", "lstm", "mlp"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.nn"));
            let g = build_graph(&Source::read(&path).unwrap(), None, &Default::default()).unwrap();
            let mut bound = g.clone();
            crate::weights::bind_weights(&mut bound, crate::weights::random_weights(&g, 1), "random").unwrap();
            let text = to_source(&bound, "test", &HashMap::new()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let back = build_graph(&Source::from_string("w.nn", text.clone()), None, &Default::default()).unwrap_or_else(|d| panic!("{name}: {d:?}\n{text}"));
            let mut names_a = g.param_names();
            let mut names_b = back.param_names();
            names_a.sort();
            names_b.sort();
            assert_eq!(names_a, names_b, "{name}");
            // The same ops with the same attributes and types, ignoring names.
            let ops = |g: &Graph| {
                let mut v: Vec<String> = print_graph(g).lines().filter(|l| l.contains('(')).map(|l| {
                    let rhs = l.split_once(" = ").map_or(l, |(_, r)| r);
                    let (call, rest) = rhs.split_once('(').unwrap_or((rhs, ""));
                    format!("{call} {}", rest.split_once(')').map_or("", |(_, attrs)| attrs))
                }).collect();
                v.sort();
                v
            };
            assert_eq!(ops(&g), ops(&back), "{name}\n{text}");
        }
    }

    /// Found by review: a reversed slice's default end (`i64::MIN`) has no literal, and a
    /// named tensor read by an arithmetic op is a parameter to declare.
    #[test]
    fn reversed_slices_and_named_tensors_write_back() {
        let src = "model m {\n input x: f32[1, 4, 3, 3]\n param scale: f32[4, 1, 1]\n r = slice(x, axis=1, start=-1, step=-1) * scale\n output y = relu(r)\n}";
        let g = build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap();
        let mut bound = g.clone();
        crate::weights::bind_weights(&mut bound, crate::weights::random_weights(&g, 1), "random").unwrap();
        let text = to_source(&bound, "test", &HashMap::new()).unwrap();
        assert!(text.contains("param scale: f32[4, 1, 1]"), "{text}");
        let back = build_graph(&Source::from_string("w.nn", text.clone()), None, &Default::default()).unwrap_or_else(|d| panic!("{d:?}\n{text}"));
        assert_eq!(back.node(back.outputs[0].1).ty.shape, [1, 4, 3, 3]);
    }
}
