//! Lowering a graph to the accelerator's instruction stream.
//!
//! Every value gets a DRAM buffer (views such as `flatten` share their operand's). Matrix
//! products (`conv2d`, `dense`, `matmul`, or a `fused` op anchored on one) whose operands
//! are the array's element type run on the array as GEMMs: a convolution is the product
//! `[Ho·Wo × C·kh·kw] · [C·kh·kw × F]` per image and group, its left operand gathered by the
//! DMA's im2col address generator. The consumer that finishes a product (`requantize`,
//! `dequantize`, `relu`, `relu6`) runs in the activation unit on the way out, with the bias.
//! Every other op runs on the vector unit, one `vector` instruction per node.

mod gemm;
mod schedule;

use super::config::{AccelConfig, ElemType};
use super::isa::{Deps, Insn};
// The program types were defined here first; their old paths keep working.
pub use super::program::*;
use crate::ir::{Graph, NodeId, NodeKind, TensorType};
use crate::ops::quant::Activation;
use crate::ops::{Op, Product};
use nnc_runtime::DType;
use std::collections::HashMap;
use gemm::lower_product;

struct Lowering<'a> {
    config: &'a AccelConfig,
    graph: &'a Graph,
    insns: Vec<Insn>,
    convs: Vec<ConvDesc>,
    acts: Vec<ActDesc>,
    dram_top: u64,
    init: Vec<(u64, Vec<u8>)>,
    values: HashMap<NodeId, Buffer>,
    layers: Vec<Layer>,
    steps_only: std::collections::HashSet<NodeId>,
    on_chip: Vec<(u64, u64)>,
    /// Whether constants are written into the DRAM image (not for timing only).
    with_data: bool,
}

/// The most instructions a program may have (each takes about 60 bytes while simulated).
pub const MAX_INSTRUCTIONS: usize = 10_000_000;

impl<'a> Lowering<'a> {
    fn alloc(&mut self, bytes: u64) -> u64 {
        // 64-byte aligned, as a DMA engine wants its bursts.
        let at = self.dram_top.next_multiple_of(64);
        self.dram_top = at + bytes.max(1);
        at
    }

    /// A buffer for a computed value (or an input): on chip when the configuration keeps
    /// activations there and this one takes at most half of the buffer. The tile slots are
    /// modeled as separate (the TPU streams A straight from its Unified Buffer), so the
    /// buffer's capacity is not shared between the two; see docs/accelerator.md's limits.
    fn alloc_value(&mut self, id: NodeId, ty: &TensorType) -> Buffer {
        let buf = Buffer { addr: 0, dtype: ty.dtype, shape: ty.shape.clone() };
        let addr = self.alloc(buf.bytes());
        if self.config.activations_on_chip && buf.bytes() <= self.config.scratchpad_kib * 1024 / 2 {
            self.on_chip.push((addr, addr + buf.bytes()));
        }
        let buf = Buffer { addr, ..buf };
        self.values.insert(id, buf.clone());
        buf
    }

    /// Reserve `len` bytes of DRAM for a constant and, when the program carries data, write
    /// `bytes()` there (not called when lowering for timing only).
    fn put(&mut self, len: u64, bytes: impl FnOnce() -> Vec<u8>) -> u64 {
        let at = self.alloc(len);
        if self.with_data {
            let bytes = bytes();
            debug_assert_eq!(bytes.len() as u64, len);
            self.init.push((at, bytes));
        }
        at
    }

    fn fence(&mut self) {
        if !matches!(self.insns.last(), None | Some(Insn::Fence)) {
            self.insns.push(Insn::Fence);
        }
    }
}

/// The element type the array computes in, as a graph dtype check.
fn array_takes(config: &AccelConfig, dtype: DType) -> bool {
    match config.dtype {
        ElemType::Int8 => dtype == DType::I8,
        ElemType::F32 | ElemType::Bf16 => dtype.is_float(),
    }
}

/// The product a node computes on the array, if any, and the fused op it anchors.
fn array_product(op: &Op) -> Option<(Product, Option<&crate::ops::fused::Fused>)> {
    let product = op.product()?;
    let fused = if let Op::Fused(f) = op { Some(f) } else { None };
    Some((product, fused))
}

pub fn lower(graph: &Graph, config: &AccelConfig) -> Result<Program, LowerError> {
    lower_shared(std::sync::Arc::new(graph.clone()), config, true)
}

/// Lower for [`crate::accel::time`] only: the same instructions and addresses as [`lower`],
/// but no DRAM image, and the graph shared rather than copied, so a design sweep lowers a
/// model once per configuration at little cost.
pub fn lower_for_timing(graph: &std::sync::Arc<Graph>, config: &AccelConfig) -> Result<Program, LowerError> {
    lower_shared(graph.clone(), config, false)
}

fn lower_shared(shared: std::sync::Arc<Graph>, config: &AccelConfig, with_data: bool) -> Result<Program, LowerError> {
    let graph = &*shared;
    let mut lw = Lowering {
        config,
        graph,
        insns: Vec::new(),
        convs: Vec::new(),
        acts: Vec::new(),
        dram_top: 0,
        init: Vec::new(),
        values: HashMap::new(),
        layers: Vec::new(),
        steps_only: Default::default(),
        on_chip: Vec::new(),
        with_data,
    };
    // Nodes whose work another node's activation unit does.
    let mut absorbed: HashMap<NodeId, NodeId> = HashMap::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        match &node.kind {
            NodeKind::Input { .. } => {
                lw.alloc_value(id, &node.ty);
            }
            NodeKind::Param => return Err(LowerError::UnboundParam(node.name.clone())),
            NodeKind::Const(t) => {
                let addr = lw.put(node.ty.numel() as u64 * dram_type(node.ty.dtype).bytes(), || tensor_bytes(t));
                lw.values.insert(id, Buffer { addr, dtype: node.ty.dtype, shape: node.ty.shape.clone() });
            }
            NodeKind::Op(op) => {
                if let Some(&producer) = absorbed.get(&id) {
                    // Written by the producer's stores.
                    let buf = lw.values[&producer].clone();
                    lw.values.insert(id, Buffer { shape: node.ty.shape.clone(), dtype: node.ty.dtype, ..buf });
                    continue;
                }
                if op.traits().view {
                    let src = lw.values[&graph.operands(id)[0]].clone();
                    lw.values.insert(id, Buffer { shape: node.ty.shape.clone(), ..src });
                    continue;
                }
                let operand_types = graph.operand_types(id);
                if let Some((product, fused)) = array_product(op) {
                    let n_anchor = fused.map_or(operand_types.len(), |f| f.anchor_operands(operand_types.len()));
                    let in_dtype = operand_types[0].dtype;
                    // Convolution and dense weights are laid out for the array at compile
                    // time; computed ones leave the product to the vector unit.
                    let weights_known = !product.has_weight_operand() || matches!(graph.node(graph.operands(id)[1]).kind, NodeKind::Const(_));
                    if array_takes(config, in_dtype) && operand_types[1].dtype == in_dtype && weights_known {
                        let epilogue = fused.map_or_else(|| absorbable_consumer(graph, id, config), |f| fused_activation(f, n_anchor, operand_types.len()).map(|a| (Vec::new(), a)));
                        lower_product(&mut lw, id, &product, n_anchor, epilogue.clone(), &mut absorbed)?;
                        if fused.is_some() && epilogue.is_none() {
                            // The anchor's result is in the output buffer; the vector unit
                            // finishes the chain in place.
                            lw.steps_only.insert(id);
                            let start = lw.insns.len();
                            lw.insns.push(Insn::Vector { deps: Deps::default(), node: id.index() as u32 });
                            lw.layers.push(Layer { name: format!("{}.steps", node.name), op: "fused steps".into(), unit: Unit::Vector, start, end: start + 1, macs: 0, tiles: None, skipped_folds: 0, skipped_macs: 0, skipped_tiles: 0 });
                            lw.fence();
                        }
                        continue;
                    }
                    if config.dtype == ElemType::Int8 && in_dtype.is_float() && weights_known {
                        return Err(LowerError::DtypeMismatch {
                            config: config.name.clone(),
                            dtype: "int8",
                            node: node.name.clone(),
                            got: in_dtype.to_string(),
                            help: "quantize the model with `--quantize int8` (it quantizes products of f32 values whose weights are known), or use an f32 configuration such as `--config edge`",
                        });
                    }
                    if config.dtype != ElemType::Int8 && in_dtype == DType::I8 {
                        return Err(LowerError::DtypeMismatch {
                            config: config.name.clone(),
                            dtype: config.dtype.name(),
                            node: node.name.clone(),
                            got: "int8".into(),
                            help: "run quantized models with an int8 configuration (`--config tpu-v1`, `--config gemmini` or `--set dtype=int8`)",
                        });
                    }
                }
                lw.alloc_value(id, &node.ty);
                let start = lw.insns.len();
                lw.insns.push(Insn::Vector { deps: Deps::default(), node: id.index() as u32 });
                let macs = op.macs(&operand_types, &node.ty);
                lw.layers.push(Layer { name: node.name.clone(), op: op.label(), unit: Unit::Vector, start, end: start + 1, macs, tiles: None, skipped_folds: 0, skipped_macs: 0, skipped_tiles: 0 });
                lw.fence();
            }
        }
    }
    if lw.dram_top > crate::driver::MEMORY_BUDGET_BYTES {
        return Err(LowerError::TooBig {
            what: format!("{} of memory image", crate::summary::human_bytes(lw.dram_top)),
            limit: crate::summary::human_bytes(crate::driver::MEMORY_BUDGET_BYTES),
        });
    }
    let inputs = graph.inputs.iter().map(|i| lw.values[i].clone()).collect();
    let outputs = graph.outputs.iter().map(|(_, o)| lw.values[o].clone()).collect();
    Ok(Program {
        config: config.clone(),
        insns: lw.insns,
        convs: lw.convs,
        acts: lw.acts,
        dram_bytes: lw.dram_top.next_multiple_of(64),
        init: lw.init,
        values: lw.values,
        inputs,
        outputs,
        layers: lw.layers,
        steps_only: lw.steps_only,
        on_chip: lw.on_chip,
        without_data: !with_data,
        graph: shared,
    })
}

/// The activation of a `fused` op whose steps the activation unit can do alone: its
/// requantization (the table's address filled in when it is written), or its one
/// activation.
fn fused_activation(f: &crate::ops::fused::Fused, n_anchor: usize, n_operands: usize) -> Option<ActKind> {
    if let Some(r) = &f.requantize {
        return Some(ActKind::Requantize { scales: 0, out_scale: r.out_scale, activation: r.activation });
    }
    if n_operands != n_anchor {
        return None;
    }
    match f.steps.as_slice() {
        [] => Some(ActKind::Float(Activation::None)),
        [step] => step.activation().map(ActKind::Float),
        _ => None,
    }
}

/// The sole consumer the activation unit can absorb: `requantize`/`dequantize` after an int8
/// product, `relu`/`relu6` after a float one. Returns it and the activation.
fn absorbable_consumer(graph: &Graph, id: NodeId, config: &AccelConfig) -> Option<(Vec<NodeId>, ActKind)> {
    let default = if config.dtype == ElemType::Int8 { ActKind::Raw } else { ActKind::Float(Activation::None) };
    let sole_user = |v: NodeId| {
        let users = graph.users(v);
        (users.len() == 1 && !graph.is_output(v)).then(|| users[0].0)
    };
    let activation_of = |v: NodeId| graph.node(v).op().and_then(|op| op.traits().activation);
    let Some(user) = sole_user(id) else { return Some((Vec::new(), default)) };
    let int8 = config.dtype == ElemType::Int8;
    // The activation unit scales per output column: per-channel scales must run along the
    // product's columns (a convolution's channels, a dense layer's units).
    let column_axis = graph.node(id).op().and_then(|op| op.product()).map(|p| p.channel_axis(graph.node(id).ty.rank()));
    let per_column = |s: &crate::ops::quant::Scales| s.values.len() == 1 || Some(s.axis) == column_axis;
    let consumer = graph.node(user).op()?;
    if !int8 {
        return Some(match activation_of(user) {
            Some(act) => (vec![user], ActKind::Float(act)),
            None => (Vec::new(), default),
        });
    }
    // Placeholders: the table addresses are filled in when the tables are written.
    if let Op::Requantize(r) = consumer {
        if per_column(&r.scales) {
            return Some((vec![user], ActKind::Requantize { scales: 0, out_scale: r.out_scale, activation: r.activation }));
        }
    }
    if let Op::Dequantize(d) = consumer {
        if per_column(&d.scales) {
            return Some(match sole_user(user).and_then(|a| activation_of(a).map(|act| (a, act))) {
                Some((a, activation)) => (vec![user, a], ActKind::Dequantize { scales: 0, activation }),
                None => (vec![user], ActKind::Dequantize { scales: 0, activation: Activation::None }),
            });
        }
    }
    Some((Vec::new(), default))
}

/// A per-channel table of f32 scales (`n` entries) for a requantize/dequantize consumer, or
/// a requantizing fused product.
fn scale_table(graph: &Graph, consumer: NodeId, channels: usize) -> Vec<u8> {
    let values = if let Some(Op::Requantize(r) | Op::Fused(crate::ops::fused::Fused { requantize: Some(r), .. })) = graph.node(consumer).op() {
        r.scales.per_channel(channels)
    } else if let Some(Op::Dequantize(d)) = graph.node(consumer).op() {
        d.scales.per_channel(channels)
    } else {
        unreachable!("scale tables belong to requantize and dequantize")
    };
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
