//! ONNX import (`nnc import`, and `.onnx` files given to any command): an ONNX model becomes
//! a `.nn` model (written by `ir::source`, one statement per op, explicit `param`s named after
//! the initializers) and its weights.
//!
//! The ONNX graph is translated into graph IR through the op table ([`import`]), folding what
//! is known at import time ([`fold`]) and recognising exporters' decompositions
//! ([`patterns`]); the IR is then written as source, and the source elaborated again to check
//! it. Every command that takes a `.onnx` file runs that source, so an imported model and
//! its written `.nn` are the same model.

mod constant;
mod fold;
mod import;
mod operators;
mod patterns;
pub mod proto;

use crate::diagnostics::Diagnostic;
use crate::elaborate::DimBindings;
use crate::ir::NodeKind;
use import::{node_label, Importer, Val};
use nnc_runtime::Tensor;
use prost::Message;
use std::collections::{BTreeMap, HashMap};

/// The opsets of the default domain the importer reads.
pub const OPSETS: std::ops::RangeInclusive<i64> = 11..=24;

/// Every ONNX operator the importer knows, with what it becomes. Some are imported only in
/// a form or a pattern (see `docs/onnx.md`); those say why when a model uses them otherwise.
pub const OPERATORS: &[&str] = &[
    "Abs", "Add", "Attention", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "DequantizeLinear", "Div", "Dropout", "Equal", "Erf", "Exp", "Expand", "Flatten", "Gather", "Gelu", "Gemm", "GlobalAveragePool", "Identity", "LayerNormalization", "LeakyRelu", "LSTM", "MatMul", "MaxPool", "Mul", "Neg", "Pad", "Pow", "QuantizeLinear", "Range", "Reciprocal", "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Softmax", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze", "Where",
];

/// An imported model: its `.nn` source and the tensors its parameters name.
#[derive(Debug)]
pub struct Imported {
    pub model: String,
    pub source: String,
    pub weights: BTreeMap<String, Tensor>,
    /// The scales of the model's QuantizeLinear/DequantizeLinear pairs, by the name of the
    /// value each quantizes in the written model; empty for a float model.
    pub activation_scales: BTreeMap<String, f32>,
}

/// A model name (an identifier) from a file name: `resnet-18.v2` becomes `resnet_18_v2`.
pub fn model_name(stem: &str) -> String {
    import::readable(stem)
}

fn error(message: impl Into<String>) -> Diagnostic {
    Diagnostic::error(message.into())
}

/// Import the ONNX model in `bytes`, naming it `model` (an identifier); `dims` binds the
/// symbolic input sizes; `origin` names the file in the written header.
pub fn import(bytes: &[u8], model: &str, dims: &DimBindings, origin: &str) -> Result<Imported, Diagnostic> {
    let proto = proto::ModelProto::decode(bytes).map_err(|e| error(format!("{origin} is not a valid ONNX model: {e}")).with_help("ONNX files are protobuf ModelProto messages, as torch.onnx.export and onnx.save write them"))?;
    let graph = proto.graph.as_ref().ok_or_else(|| error(format!("{origin} has no graph")))?;
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.as_deref().is_none_or(|d| d.is_empty() || d == "ai.onnx"))
        .and_then(|o| o.version)
        .ok_or_else(|| error(format!("{origin} imports no opset of the default ONNX domain")))?;
    if !OPSETS.contains(&opset) {
        return Err(error(format!("{origin} uses opset {opset}; nnc imports opsets {} to {}", OPSETS.start(), OPSETS.end())).with_help("convert it with onnx.version_converter.convert_version(model, 17)"));
    }
    unsupported_operators(graph, origin)?;
    if let Some(n) = graph.node.iter().find(|n| n.output.first().is_none_or(|o| o.is_empty())) {
        return Err(error(format!("{origin}: node {} ({}) has no output", node_label(n), n.op_type.as_deref().unwrap_or("?"))));
    }
    if graph.output.is_empty() {
        return Err(error(format!("{origin}: the graph has no outputs")));
    }
    // Folding a batch norm into the convolution before it would move the scale a QDQ pair
    // gives its output; ONNX Runtime's quantizer expects them folded first anyway.
    let quantized = graph.node.iter().any(|n| n.op_type.as_deref() == Some("QuantizeLinear"));
    if let Some(n) = graph.node.iter().find(|n| quantized && n.op_type.as_deref() == Some("BatchNormalization")) {
        return Err(error(format!("{origin}: a quantized (QDQ) model with a BatchNormalization ({}) is not supported", node_label(n)))
            .with_help("fold batch norms into the convolutions before quantizing (onnxruntime.quantization.quant_pre_process does)"));
    }
    if !graph.sparse_initializer.is_empty() {
        return Err(error(format!("{origin} has sparse initializers, which nnc does not import")));
    }
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone().unwrap_or_default()).collect();
    let mut im = Importer::new(model, &graph.node, opset, &outputs);
    for t in &graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        let c = constant::decode(t).map_err(|e| error(format!("{origin}: {e}")))?;
        im.values.insert(name, Val::Const(c));
    }
    add_inputs(&mut im, graph, dims, origin)?;
    for index in 0..graph.node.len() {
        if im.consumed.contains(&index) {
            continue;
        }
        let node = &graph.node[index];
        im.translate(index).map_err(|e| error(format!("{origin}: node {} ({}): {e}", node_label(node), node.op_type.as_deref().unwrap_or("?"))))?;
    }
    for name in &outputs {
        let v = im.get(name).map_err(|e| error(format!("{origin}: output: {e}")))?.clone();
        let id = match v {
            Val::Node(id) if !matches!(im.graph.node(id).kind, NodeKind::Input { .. }) => id,
            Val::Node(_) => return Err(error(format!("{origin}: output `{name}` is an input passed through, which an nnc model cannot declare"))),
            Val::Const(_) => return Err(error(format!("{origin}: output `{name}` is a constant; nnc models compute their outputs"))),
            Val::Padded(..) => return Err(error(format!("{origin}: output `{name}` is a Pad's result; nnc folds Pad only into convolutions"))),
        };
        // Outputs keep their (readable) names; the written source reserves them.
        let mut ident = import::readable(name);
        while im.graph.outputs.iter().any(|(o, _)| *o == ident) || im.graph.inputs.iter().any(|&i| im.graph.node(i).name == ident) {
            ident.push('_');
        }
        im.graph.outputs.push((ident, id));
    }
    let producer = proto.producer_name.as_deref().filter(|p| !p.is_empty()).unwrap_or("an unnamed producer");
    let header = format!("Imported by `nnc import` from {origin} ({producer}, opset {opset}).");
    let source = crate::ir::source::to_source(&im.graph, &header, &HashMap::new()).map_err(|e| error(format!("{origin}: the imported model cannot be written: {e}")))?;
    // The written model must check as any other: elaborating it is also what finds which
    // constants became parameters.
    let written = crate::driver::build_graph(&crate::driver::Source::from_string(format!("{model}.nn"), source.clone()), None, &DimBindings::new())
        .map_err(|d| error(format!("{origin}: the imported model does not check: {}", d.iter().map(|d| d.message.clone()).collect::<Vec<_>>().join("; "))))?;
    let mut weights = BTreeMap::new();
    for name in written.param_names() {
        let id = im.graph.by_name(&name).ok_or_else(|| error(format!("{origin}: parameter `{name}` has no tensor (an importer bug)")))?;
        let NodeKind::Const(t) = &im.graph.node(id).kind else { return Err(error(format!("{origin}: `{name}` is not a constant (an importer bug)"))) };
        weights.insert(name, t.clone());
    }
    let mut activation_scales = BTreeMap::new();
    for (&id, &s) in &im.activation_scales {
        let name = im.graph.outputs.iter().find(|(_, o)| *o == id).map_or_else(|| im.graph.node(id).name.clone(), |(n, _)| n.clone());
        if written.by_name(&name).is_none() {
            return Err(error(format!("{origin}: the quantized value `{name}` is not in the written model (an importer bug)")));
        }
        activation_scales.insert(name, s);
    }
    Ok(Imported { model: model.to_string(), source, weights, activation_scales })
}

/// One error listing every operator the model uses that nnc does not import, with the nodes
/// that use each.
fn unsupported_operators(graph: &proto::GraphProto, origin: &str) -> Result<(), Diagnostic> {
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in &graph.node {
        let op = n.op_type.clone().unwrap_or_default();
        let domain = n.domain.as_deref().unwrap_or("");
        let key = if domain.is_empty() || domain == "ai.onnx" {
            if OPERATORS.contains(&op.as_str()) {
                continue;
            }
            op
        } else {
            format!("{domain}.{op}")
        };
        missing.entry(key).or_default().push(node_label(n));
    }
    if missing.is_empty() {
        return Ok(());
    }
    let count = missing.len();
    let mut d = error(format!("{origin} uses {count} operator{} that nnc does not import: {}", if count == 1 { "" } else { "s" }, missing.keys().cloned().collect::<Vec<_>>().join(", ")));
    for (op, nodes) in &missing {
        const SHOWN: usize = 5;
        let more = if nodes.len() > SHOWN { format!(" and {} more", nodes.len() - SHOWN) } else { String::new() };
        d = d.with_note(format!("{op}: {}{more}", nodes.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ")));
    }
    Err(d.with_help("docs/onnx.md lists the operators nnc imports"))
}

fn add_inputs(im: &mut Importer, graph: &proto::GraphProto, dims: &DimBindings, origin: &str) -> Result<(), Diagnostic> {
    let mut unbound: Vec<String> = Vec::new();
    for input in &graph.input {
        let name = input.name.clone().unwrap_or_default();
        if im.values.contains_key(&name) {
            // Older exporters list initializers among the inputs.
            continue;
        }
        let tensor = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).ok_or_else(|| error(format!("{origin}: input `{name}` is not a tensor")))?;
        let elem = tensor.elem_type.unwrap_or(0);
        if elem != proto::data_type::FLOAT {
            return Err(error(format!("{origin}: input `{name}` is {}; nnc models take f32 inputs", proto::data_type::name(elem))));
        }
        let shape = tensor.shape.as_ref().ok_or_else(|| error(format!("{origin}: input `{name}` has no shape")).with_help("nnc compiles for static shapes: export with a fixed input shape"))?;
        let mut sizes = Vec::with_capacity(shape.dim.len());
        for d in &shape.dim {
            match (d.dim_value, d.dim_param.as_deref()) {
                (Some(v), _) if v > 0 => sizes.push(v as usize),
                (_, Some(p)) if !p.is_empty() => match dims.get(p) {
                    Some(&v) => sizes.push(v),
                    None => {
                        if !unbound.contains(&p.to_string()) {
                            unbound.push(p.to_string());
                        }
                        sizes.push(1);
                    }
                },
                _ => return Err(error(format!("{origin}: input `{name}` has an axis of unknown size")).with_help("export with a fixed input shape")),
            }
        }
        if import::checked_numel(&sizes).is_none() {
            return Err(error(format!("{origin}: input `{name}` of shape {sizes:?} is too large")));
        }
        let ident = im.ident(&name);
        let index = im.graph.inputs.len();
        let id = im.graph.add(crate::ir::Node { name: ident, kind: NodeKind::Input { index }, ty: crate::ir::TensorType::f32(sizes), span: None, tile: None, kernel: None }, &[]);
        im.graph.inputs.push(id);
        im.values.insert(name, Val::Node(id));
    }
    if !unbound.is_empty() {
        let list = unbound.join(", ");
        return Err(error(format!("{origin}: the input size{} {list} {} symbolic", if unbound.len() == 1 { "" } else { "s" }, if unbound.len() == 1 { "is" } else { "are" }))
            .with_help(format!("bind {} with --dim, e.g. `--dim {}=1`", if unbound.len() == 1 { "it" } else { "each" }, unbound[0])));
    }
    if im.graph.inputs.is_empty() {
        return Err(error(format!("{origin}: the model has no inputs")));
    }
    Ok(())
}
