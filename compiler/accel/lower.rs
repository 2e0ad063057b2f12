//! Lowering a graph to the accelerator's instruction stream.
//!
//! Every value gets a DRAM buffer (views such as `flatten` share their operand's). Matrix
//! products (`conv2d`, `dense`, `matmul`, or a `fused` op anchored on one) whose operands
//! are the array's element type run on the array as GEMMs: a convolution is the product
//! `[Ho·Wo × C·kh·kw] · [C·kh·kw × F]` per image and group, its left operand gathered by the
//! DMA's im2col address generator. The consumer that finishes a product (`requantize`,
//! `dequantize`, `relu`, `relu6`) runs in the activation unit on the way out, with the bias.
//! Every other op runs on the vector unit, one `vector` instruction per node.

use super::config::{AccelConfig, Dataflow, ElemType};
use super::isa::{DramType, Deps, Insn};
use super::tiling::{choose_tiles, Tiles};
use crate::ir::{Graph, NodeId, NodeKind, TensorType};
use crate::ops::quant::Activation;
use crate::ops::{Op, Product};
use nnc_runtime::tensor::Data;
use nnc_runtime::{DType, Tensor};
use std::collections::HashMap;

/// Where a value lives in DRAM.
#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    pub addr: u64,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl Buffer {
    pub fn dram_type(&self) -> DramType {
        dram_type(self.dtype)
    }

    pub fn bytes(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64 * self.dram_type().bytes()
    }
}

pub fn dram_type(d: DType) -> DramType {
    match d {
        DType::I8 => DramType::I8,
        DType::I32 => DramType::I32,
        DType::F32 | DType::F16 | DType::BF16 => DramType::F32,
    }
}

/// The im2col address generator's view of one convolution (per image and group).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvDesc {
    /// Channels, height and width of the input image.
    pub c: u32,
    pub h: u32,
    pub w: u32,
    /// First channel of the group and channels per group.
    pub c0: u32,
    pub cg: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride: [u32; 2],
    /// Top and left padding.
    pub pad: [u32; 2],
    pub dilation: [u32; 2],
    /// Output width (rows of the im2col matrix run over output pixels, row-major).
    pub wo: u32,
    pub src: DramType,
}

impl ConvDesc {
    /// The input element behind im2col entry `(m, k)`, or `None` in the padding.
    #[inline]
    pub fn source(&self, m: u32, k: u32) -> Option<u64> {
        let (oy, ox) = (m / self.wo, m % self.wo);
        let taps = self.kh * self.kw;
        let (ci, tap) = (k / taps, k % taps);
        let (ky, kx) = (tap / self.kw, tap % self.kw);
        let iy = (oy * self.stride[0] + ky * self.dilation[0]) as i64 - self.pad[0] as i64;
        let ix = (ox * self.stride[1] + kx * self.dilation[1]) as i64 - self.pad[1] as i64;
        if iy < 0 || ix < 0 || iy >= self.h as i64 || ix >= self.w as i64 {
            return None;
        }
        Some((((self.c0 + ci) as u64 * self.h as u64) + iy as u64) * self.w as u64 + ix as u64)
    }

    /// Distinct input bytes a block of rows `m0..m0+rows`, columns `k0..k0+cols` reads: the
    /// DMA fetches each input row segment once and replicates taps on chip.
    pub fn block_dram_bytes(&self, m0: u32, rows: u32, k0: u32, cols: u32) -> u64 {
        let taps = self.kh * self.kw;
        let channels = ((k0 + cols).div_ceil(taps) - k0 / taps) as u64;
        let (oy0, oy1) = (m0 / self.wo, (m0 + rows - 1) / self.wo);
        let span = (oy1 - oy0) * self.stride[0] + (self.kh - 1) * self.dilation[0] + 1;
        let in_rows = span.min(self.h) as u64;
        let in_cols = if oy1 > oy0 { self.w as u64 } else { (((rows - 1) * self.stride[1] + (self.kw - 1) * self.dilation[1] + 1).min(self.w)) as u64 };
        channels * in_rows * in_cols * self.src.bytes()
    }
}

/// What the activation unit does to a stored accumulator.
#[derive(Clone, Debug, PartialEq)]
pub enum ActKind {
    /// Float accumulators: add the bias, apply the activation, write f32.
    Float(Activation),
    /// Int32 accumulators written as they are (plus the bias).
    Raw,
    /// Int32 → int8 by `requantize_value` with per-channel scales from the table at `scales`.
    Requantize { scales: u64, out_scale: f32, activation: Activation },
    /// Int32 → f32 with per-channel scales from the table at `scales`, then the activation
    /// (a `relu` after the `dequantize`).
    Dequantize { scales: u64, activation: Activation },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActDesc {
    /// Per-channel bias table (i32 for int8 arrays, f32 otherwise), added first.
    pub bias: Option<u64>,
    pub kind: ActKind,
}

impl ActDesc {
    pub fn out_type(&self) -> DramType {
        match self.kind {
            ActKind::Float(_) | ActKind::Dequantize { .. } => DramType::F32,
            ActKind::Raw => DramType::I32,
            ActKind::Requantize { .. } => DramType::I8,
        }
    }
}

/// Where the array ran a layer or the vector unit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Array,
    Vector,
}

/// One graph node's share of the program, for the per-layer report.
#[derive(Clone, Debug)]
pub struct Layer {
    pub name: String,
    pub op: String,
    pub unit: Unit,
    /// Instructions `insns[start..end]`.
    pub start: usize,
    pub end: usize,
    pub macs: u64,
    pub tiles: Option<Tiles>,
}

/// A lowered model: instructions, descriptors and the initial DRAM image.
#[derive(Clone, Debug)]
pub struct Program {
    pub config: AccelConfig,
    pub insns: Vec<Insn>,
    pub convs: Vec<ConvDesc>,
    pub acts: Vec<ActDesc>,
    pub dram_bytes: u64,
    /// Constants and tables, written into DRAM before the run.
    pub init: Vec<(u64, Vec<u8>)>,
    pub values: HashMap<NodeId, Buffer>,
    pub inputs: Vec<Buffer>,
    pub outputs: Vec<Buffer>,
    pub layers: Vec<Layer>,
    /// The graph the vector unit's instructions refer to (by node index).
    pub graph: Graph,
    /// For `fused` nodes whose anchor ran on the array: the vector unit applies only the steps.
    pub steps_only: std::collections::HashSet<NodeId>,
    /// Sorted address ranges `[start, end)` of values resident on chip.
    pub on_chip: Vec<(u64, u64)>,
}

impl Program {
    /// Whether the value at `addr` lives in the on-chip buffer rather than DRAM.
    pub fn on_chip(&self, addr: u64) -> bool {
        let i = self.on_chip.partition_point(|&(start, _)| start <= addr);
        i > 0 && addr < self.on_chip[i - 1].1
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error("the {config} configuration computes {dtype} on its array, but `{node}` is a {got} product; {help}")]
    DtypeMismatch { config: String, dtype: &'static str, node: String, got: String, help: &'static str },
    #[error("parameter `{0}` has no value: load weights or use --random-weights")]
    UnboundParam(String),
    #[error("`{node}`: {what} does not fit the accelerator's 32-byte instruction encoding")]
    TooLarge { node: String, what: String },
    #[error("internal compiler error: {0}")]
    Internal(String),
    #[error("the accelerator program for this model would need {what}, more than the {limit} nnc allows")]
    TooBig { what: String, limit: String },
}

fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    match t.data() {
        Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::I8(v) => v.iter().map(|&x| x as u8).collect(),
        Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

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
}

/// The most instructions a program may have (each takes about 60 bytes while simulated).
pub const MAX_INSTRUCTIONS: usize = 10_000_000;

/// One GEMM the array runs: `C[m × n] = A[m × k] · B[k × n]` (+ bias, through `act`).
struct GemmInstance {
    a: ASource,
    /// B, row-major `k × n` (row stride `b_stride`).
    b: u64,
    b_stride: u32,
    b_type: DramType,
    c: u64,
    c_row_stride: u32,
    c_col_stride: u32,
    /// Global channel of column 0, for per-channel tables.
    c0: u32,
}

enum ASource {
    Matrix { dram: u64, stride: u32, dtype: DramType },
    Im2col { dram: u64, conv: u32 },
}

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

    fn put(&mut self, bytes: Vec<u8>) -> u64 {
        let at = self.alloc(bytes.len() as u64);
        self.init.push((at, bytes));
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
                let addr = lw.put(tensor_bytes(t));
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
                            lw.layers.push(Layer { name: format!("{}.steps", node.name), op: "fused steps".into(), unit: Unit::Vector, start, end: start + 1, macs: 0, tiles: None });
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
                lw.layers.push(Layer { name: node.name.clone(), op: op.label(), unit: Unit::Vector, start, end: start + 1, macs, tiles: None });
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
        graph: graph.clone(),
        steps_only: lw.steps_only,
        on_chip: lw.on_chip,
    })
}

/// The activation of a `fused` op whose steps the activation unit can do alone.
fn fused_activation(f: &crate::ops::fused::Fused, n_anchor: usize, n_operands: usize) -> Option<ActKind> {
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

/// A per-channel table of f32 scales (`n` entries) for a requantize/dequantize consumer.
fn scale_table(graph: &Graph, consumer: NodeId, channels: usize) -> Vec<u8> {
    let values = if let Some(Op::Requantize(r)) = graph.node(consumer).op() {
        r.scales.per_channel(channels)
    } else if let Some(Op::Dequantize(d)) = graph.node(consumer).op() {
        d.scales.per_channel(channels)
    } else {
        unreachable!("scale tables belong to requantize and dequantize")
    };
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `epilogue`: the consumers the activation unit takes over (in order) and what it does.
fn lower_product(lw: &mut Lowering, id: NodeId, product: &Product, n_anchor: usize, epilogue: Option<(Vec<NodeId>, ActKind)>, absorbed: &mut HashMap<NodeId, NodeId>) -> Result<(), LowerError> {
    let graph = lw.graph;
    let node = graph.node(id);
    let operands: Vec<NodeId> = graph.operands(id)[..n_anchor].to_vec();
    let types: Vec<&TensorType> = operands.iter().map(|&o| &graph.node(o).ty).collect();
    let (consumers, mut kind) = epilogue.unwrap_or((Vec::new(), if lw.config.dtype == ElemType::Int8 { ActKind::Raw } else { ActKind::Float(Activation::None) }));
    // The stored value: the last consumer's when the activation unit does their work.
    let out_ty = match consumers.last() {
        Some(&c) => graph.node(c).ty.clone(),
        None => node.ty.clone(),
    };
    let out = lw.alloc_value(id, &out_ty);
    for &c in &consumers {
        absorbed.insert(c, id);
    }
    let in_buf = lw.values[&operands[0]].clone();
    let w_buf = lw.values[&operands[1]].clone();
    let bias_buf = operands.get(2).map(|b| lw.values[b].clone());
    let start = lw.insns.len();
    let macs = product.macs(&types, &node.ty);
    // (m, k, n, instances, channels)
    let (m, k, n, instances, channels) = match product {
        Product::Conv2d(c) => {
            let [batch, ch, h, w] = types[0].shape[..] else { unreachable!("conv input is rank 4") };
            let [f, cg, kh, kw] = types[1].shape[..] else { unreachable!("conv weight is rank 4") };
            let (ho, wo) = (node.ty.shape[2], node.ty.shape[3]);
            let fg = f / c.groups;
            let k = cg * kh * kw;
            // B per group: the weights transposed to [k × fg], written once at compile time.
            let weights = match &graph.node(operands[1]).kind {
                NodeKind::Const(t) => Some(t.clone()),
                _ => None,
            };
            let b_type = w_buf.dram_type();
            let mut b_addrs = Vec::new();
            for g in 0..c.groups {
                let bytes = match &weights {
                    Some(t) => transpose_rows(t, g * fg, fg, k),
                    None => return Err(LowerError::Internal(format!("`{}`: the array was given a convolution whose weights are computed at run time", node.name))),
                };
                b_addrs.push(lw.put(bytes));
            }
            // One im2col descriptor per group; the image's offset is in each instruction.
            let mut conv_ids = Vec::with_capacity(c.groups);
            for g in 0..c.groups {
                lw.convs.push(ConvDesc {
                    c: ch as u32,
                    h: h as u32,
                    w: w as u32,
                    c0: (g * cg) as u32,
                    cg: cg as u32,
                    kh: kh as u32,
                    kw: kw as u32,
                    stride: [c.stride[0] as u32, c.stride[1] as u32],
                    pad: [c.padding[0] as u32, c.padding[1] as u32],
                    dilation: [c.dilation[0] as u32, c.dilation[1] as u32],
                    wo: wo as u32,
                    src: in_buf.dram_type(),
                });
                conv_ids.push((lw.convs.len() - 1) as u32);
            }
            let mut instances = Vec::new();
            for b in 0..batch {
                for (g, (&b_addr, &conv_id)) in b_addrs.iter().zip(&conv_ids).enumerate() {
                    let out_bytes = out.dram_type().bytes();
                    instances.push(GemmInstance {
                        a: ASource::Im2col { dram: in_buf.addr + (b * ch * h * w) as u64 * in_buf.dram_type().bytes(), conv: conv_id },
                        b: b_addr,
                        b_stride: fg as u32,
                        b_type,
                        c: out.addr + ((b * f + g * fg) * ho * wo) as u64 * out_bytes,
                        c_row_stride: 1,
                        c_col_stride: (ho * wo) as u32,
                        c0: (g * fg) as u32,
                    });
                }
            }
            (ho * wo, k, fg, instances, f)
        }
        Product::Dense(_) => {
            let [units, features] = types[1].shape[..] else { unreachable!("dense weight is rank 2") };
            let rows = types[0].shape.iter().product::<usize>() / features;
            let t = match &graph.node(operands[1]).kind {
                NodeKind::Const(t) => t.clone(),
                _ => return Err(LowerError::Internal(format!("`{}`: the array was given a dense layer whose weights are computed at run time", node.name))),
            };
            let b_addr = lw.put(transpose_rows(&t, 0, units, features));
            let instance = GemmInstance {
                a: ASource::Matrix { dram: in_buf.addr, stride: features as u32, dtype: in_buf.dram_type() },
                b: b_addr,
                b_stride: units as u32,
                b_type: w_buf.dram_type(),
                c: out.addr,
                c_row_stride: units as u32,
                c_col_stride: 1,
                c0: 0,
            };
            (rows, features, units, vec![instance], units)
        }
        Product::MatMul(_) => {
            let (batches, m, k, n) = crate::ops::MatMul::dims(&types[0].shape, &types[1].shape);
            let mut instances = Vec::new();
            for bi in 0..batches {
                let (ia, ib) = crate::ops::MatMul::batch_operands(&types[0].shape, &types[1].shape, bi);
                let (ab, bb, ob) = (in_buf.dram_type().bytes(), w_buf.dram_type().bytes(), out.dram_type().bytes());
                instances.push(GemmInstance {
                    a: ASource::Matrix { dram: in_buf.addr + (ia * m * k) as u64 * ab, stride: k as u32, dtype: in_buf.dram_type() },
                    b: w_buf.addr + (ib * k * n) as u64 * bb,
                    b_stride: n as u32,
                    b_type: w_buf.dram_type(),
                    c: out.addr + (bi * m * n) as u64 * ob,
                    c_row_stride: n as u32,
                    c_col_stride: 1,
                    c0: 0,
                });
            }
            (m, k, n, instances, n)
        }
    };
    // The activation unit's tables.
    let bias = bias_buf.map(|b| b.addr);
    if let (Some(&c), ActKind::Requantize { scales, .. } | ActKind::Dequantize { scales, .. }) = (consumers.first(), &mut kind) {
        *scales = lw.put(scale_table(graph, c, channels));
    }
    lw.acts.push(ActDesc { bias, kind });
    let act = (lw.acts.len() - 1) as u32;
    let tiles = choose_tiles(lw.config, m, k, n);
    if !super::tiling::tile_fits(lw.config, tiles) {
        return Err(LowerError::Internal(format!("`{}`: tile {tiles:?} does not fit the memories", node.name)));
    }
    emit_gemm(lw, &node.name, [m, k, n], &tiles, &instances, act)?;
    let name = node.name.clone();
    let mut label = node.op().map(|o| o.label()).unwrap_or_default();
    for &c in &consumers {
        label = format!("{label}+{}", graph.node(c).op().map(|o| o.name()).unwrap_or_default());
    }
    lw.layers.push(Layer { name, op: label, unit: Unit::Array, start, end: lw.insns.len(), macs, tiles: Some(tiles) });
    lw.fence();
    Ok(())
}

/// Rows `r0..r0+rows` of a row-major `[_, cols]` constant, transposed to `[cols × rows]`.
fn transpose_rows(t: &Tensor, r0: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * cols * 4);
    match t.data() {
        Data::I8(v) => {
            for c in 0..cols {
                out.extend((0..rows).map(|r| v[(r0 + r) * cols + c] as u8));
            }
        }
        Data::F32(v) => {
            for c in 0..cols {
                for r in 0..rows {
                    out.extend_from_slice(&v[(r0 + r) * cols + c].to_le_bytes());
                }
            }
        }
        Data::I32(v) => {
            for c in 0..cols {
                for r in 0..rows {
                    out.extend_from_slice(&v[(r0 + r) * cols + c].to_le_bytes());
                }
            }
        }
    }
    out
}

/// One input tile of the schedule: which instance and block, and its spad slot.
struct InputTile {
    inst: usize,
    m0: usize,
    tm: usize,
    k0: usize,
    tk: usize,
    n0: usize,
    tn: usize,
    /// Index of the output tile it contributes to.
    out: usize,
    first_k: bool,
    last_k: bool,
}

/// The double-buffered tile loop of one GEMM: loads run one tile ahead of compute, stores
/// drain each finished output tile. Tokens express the four hazards (see `isa`).
fn emit_gemm(lw: &mut Lowering, name: &str, [m, k, n]: [usize; 3], t: &Tiles, instances: &[GemmInstance], act: u32) -> Result<(), LowerError> {
    let (rows, cols) = (lw.config.rows as usize, lw.config.cols as usize);
    let spad_slot = (lw.config.scratchpad_elems() / 2) as usize;
    let acc_slot = (lw.config.accumulator_elems() / 2) as usize;
    let mut tiles = Vec::new();
    let mut out_count = 0;
    for inst in 0..instances.len() {
        for n0 in (0..n).step_by(t.tn) {
            for m0 in (0..m).step_by(t.tm) {
                for k0 in (0..k).step_by(t.tk) {
                    if tiles.len() >= MAX_INSTRUCTIONS {
                        return Err(LowerError::TooBig { what: format!("more than {MAX_INSTRUCTIONS} tiles in `{name}`"), limit: format!("{MAX_INSTRUCTIONS} instructions") });
                    }
                    tiles.push(InputTile { inst, m0, tm: t.tm.min(m - m0), k0, tk: t.tk.min(k - k0), n0, tn: t.tn.min(n - n0), out: out_count, first_k: k0 == 0, last_k: k0 + t.tk >= k });
                }
                out_count += 1;
            }
        }
    }
    let folds_per_tile = |t: &InputTile| match lw.config.dataflow {
        Dataflow::Ws => 2 * t.tk.div_ceil(rows) * t.tn.div_ceil(cols),
        Dataflow::Os => t.tm.div_ceil(rows) * t.tn.div_ceil(cols),
    };
    let expected = tiles.iter().map(|t| 3 + folds_per_tile(t)).fold(lw.insns.len(), usize::saturating_add);
    if expected > MAX_INSTRUCTIONS {
        return Err(LowerError::TooBig { what: format!("{expected} instructions by `{name}`"), limit: format!("{MAX_INSTRUCTIONS}") });
    }
    let check = |_: &Lowering, insn: Insn| -> Result<Insn, LowerError> {
        if insn.fits_encoding() {
            Ok(insn)
        } else {
            Err(LowerError::TooLarge { node: name.to_string(), what: format!("instruction `{insn}`") })
        }
    };
    let emit_loads = |lw: &mut Lowering, i: usize, tile: &InputTile| -> Result<(), LowerError> {
        let inst = &instances[tile.inst];
        let base = (i % 2 * spad_slot) as u32;
        let (a_at, b_at) = (base, base + (tile.tm * tile.tk) as u32);
        let a = match inst.a {
            ASource::Matrix { dram, stride, dtype } => Insn::LoadSpad {
                deps: Deps { pop_next: i >= 2, ..Deps::default() },
                dram: dram + (tile.m0 as u64 * stride as u64 + tile.k0 as u64) * dtype.bytes(),
                spad: a_at,
                rows: tile.tm as u32,
                cols: tile.tk as u32,
                stride,
                src: dtype,
            },
            ASource::Im2col { dram, conv } => Insn::LoadIm2col { deps: Deps { pop_next: i >= 2, ..Deps::default() }, dram, spad: a_at, conv, m0: tile.m0 as u32, rows: tile.tm as u32, k0: tile.k0 as u32, cols: tile.tk as u32 },
        };
        let insn = check(lw, a)?;
        lw.insns.push(insn);
        let b = Insn::LoadSpad {
            deps: Deps { push_next: true, ..Deps::default() },
            dram: inst.b + (tile.k0 as u64 * inst.b_stride as u64 + tile.n0 as u64) * inst.b_type.bytes(),
            spad: b_at,
            rows: tile.tk as u32,
            cols: tile.tn as u32,
            stride: inst.b_stride,
            src: inst.b_type,
        };
        let insn = check(lw, b)?;
        lw.insns.push(insn);
        Ok(())
    };
    let emit_compute = |lw: &mut Lowering, i: usize, tile: &InputTile| -> Result<(), LowerError> {
        let base = (i % 2 * spad_slot) as u32;
        let (a_at, b_at) = (base, base + (tile.tm * tile.tk) as u32);
        let acc_at = (tile.out % 2 * acc_slot) as u32;
        let mut body = Vec::new();
        match lw.config.dataflow {
            Dataflow::Ws => {
                for n0 in (0..tile.tn).step_by(cols) {
                    let nf = cols.min(tile.tn - n0);
                    for k0 in (0..tile.tk).step_by(rows) {
                        let kf = rows.min(tile.tk - k0);
                        body.push(Insn::Preload { deps: Deps::default(), spad: b_at + (k0 * tile.tn + n0) as u32, k: kf as u32, n: nf as u32, stride: tile.tn as u32 });
                        body.push(Insn::Compute {
                            deps: Deps::default(),
                            accumulate: !(tile.first_k && k0 == 0),
                            a: a_at + k0 as u32,
                            a_stride: tile.tk as u32,
                            b: 0,
                            b_stride: 0,
                            acc: acc_at + n0 as u32,
                            acc_stride: tile.tn as u32,
                            m: tile.tm as u32,
                            k: kf as u32,
                            n: nf as u32,
                        });
                    }
                }
            }
            Dataflow::Os => {
                for n0 in (0..tile.tn).step_by(cols) {
                    let nf = cols.min(tile.tn - n0);
                    for m0 in (0..tile.tm).step_by(rows) {
                        let mf = rows.min(tile.tm - m0);
                        body.push(Insn::Compute {
                            deps: Deps::default(),
                            accumulate: !tile.first_k,
                            a: a_at + (m0 * tile.tk) as u32,
                            a_stride: tile.tk as u32,
                            b: b_at + n0 as u32,
                            b_stride: tile.tn as u32,
                            acc: acc_at + (m0 * tile.tn + n0) as u32,
                            acc_stride: tile.tn as u32,
                            m: mf as u32,
                            k: tile.tk as u32,
                            n: nf as u32,
                        });
                    }
                }
            }
        }
        let last = body.len() - 1;
        // RAW on the spad slot (loads done), WAR on the acc slot (store of out - 2 done).
        let deps0 = body[0].deps_mut().expect("array instructions carry deps");
        deps0.pop_prev = true;
        deps0.pop_next = tile.first_k && tile.out >= 2;
        let has_later_input = i + 2 < tiles.len();
        let deps_last = body[last].deps_mut().expect("array instructions carry deps");
        deps_last.push_prev = has_later_input;
        deps_last.push_next = tile.last_k;
        for insn in body {
            let insn = check(lw, insn)?;
            lw.insns.push(insn);
        }
        if tile.last_k {
            let inst = &instances[tile.inst];
            let ob = lw.acts[act as usize].out_type().bytes();
            let store = Insn::Store {
                deps: Deps { pop_prev: true, push_prev: tile.out + 2 < out_count, ..Deps::default() },
                acc: acc_at,
                acc_stride: tile.tn as u32,
                dram: inst.c + (tile.m0 as u64 * inst.c_row_stride as u64 + tile.n0 as u64 * inst.c_col_stride as u64) * ob,
                rows: tile.tm as u32,
                cols: tile.tn as u32,
                row_stride: inst.c_row_stride,
                col_stride: inst.c_col_stride,
                act,
                c0: inst.c0 + tile.n0 as u32,
            };
            let insn = check(lw, store)?;
            lw.insns.push(insn);
        }
        Ok(())
    };
    for i in 0..tiles.len() {
        emit_loads(lw, i, &tiles[i])?;
        if i >= 1 {
            emit_compute(lw, i - 1, &tiles[i - 1])?;
        }
    }
    if let Some(last) = tiles.len().checked_sub(1) {
        emit_compute(lw, last, &tiles[last])?;
    }
    Ok(())
}
