//! The accelerator program: DRAM buffers, the descriptor tables (im2col geometry,
//! activation-unit parameters), the layers a report lists, and the instruction stream.

use super::config::AccelConfig;
use super::isa::{DramType, Insn};
use super::tiling::Tiles;
use crate::ir::{Graph, NodeId};
use crate::ops::quant::Activation;
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
    /// The result's float dtype: f16/bf16 results are rounded to it as they are stored (the
    /// memory holds them as f32 words).
    pub rounds_to: DType,
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
    /// Folds left out because their weights are all zero, and the MACs they would have done.
    pub skipped_folds: u64,
    pub skipped_macs: u64,
    /// Input tiles left out whole (every fold zero, inside the reduction): neither their
    /// weights nor their activations are loaded.
    pub skipped_tiles: u64,
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
    pub graph: std::sync::Arc<Graph>,
    /// For `fused` nodes whose anchor ran on the array: the vector unit applies only the steps.
    pub steps_only: std::collections::HashSet<NodeId>,
    /// Sorted address ranges `[start, end)` of values resident on chip.
    pub on_chip: Vec<(u64, u64)>,
    /// Lowered for timing only: `init` is empty and the program cannot compute values.
    pub without_data: bool,
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

pub(super) fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    match t.data() {
        Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::I8(v) => v.iter().map(|&x| x as u8).collect(),
        Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// Why a program could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the model has {expected} inputs but {got} were given")]
    InputCount { expected: usize, got: usize },
    #[error("input {index} must have shape {expected:?}, but has shape {got:?}")]
    InputShape { index: usize, expected: Vec<usize>, got: Vec<usize> },
    #[error("internal error: the instruction stream is inconsistent: {0}")]
    Program(String),
}
