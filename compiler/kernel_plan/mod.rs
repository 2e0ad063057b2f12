//! The kernel plan: which CPU kernel computes each node, decided once per node.
//!
//! A [`Kernel`] names an algorithm (a GEMM through the runtime's microkernels, a direct
//! convolution, a vectorized depthwise one, dot products, ...). Which kernels can compute a
//! node depends on its op, its operands' shapes and layouts, whether its weights are known
//! at compile time and the target; [`choose`] picks one by a cost model (no search), and the
//! `select-kernels` pass records it on the node (`kernel="gemm"` in IR dumps). Everything
//! that follows from that choice is derived here, in one place, by [`KernelPlan`]: the
//! matrix product it runs (which `select-tiles` blocks for the caches), the scratch memory it
//! needs (which the memory plan reserves and the lowering uses, so they cannot disagree),
//! whether it can be split across threads, and which weights the JIT packs at compile time.
//! The JIT lowers each node by its plan; `select-layouts` asks [`choose`] and
//! [`estimated_ps`] what a node would run as in another layout.

use crate::ir::{Graph, Layout, NodeId, NodeKind, TensorType};
use crate::ops::{Conv2d, MatMul, Op, Product};
use crate::target::{CpuTarget, Tile, CRANELIFT_TILE};
use std::collections::{HashMap, HashSet};

mod cost;
mod fold_head_transposes;
mod fuse_conv_depthwise;
mod select;
mod variants;

pub use cost::estimated_ps;
pub use fold_head_transposes::{attention_heads, folded_head_transposes, HeadFold};
pub use fuse_conv_depthwise::{fused_producers, ring_floats, MIN_FUSED_BYTES};
pub use select::{available, choose};
pub use variants::depthwise::is_int8_vector_depthwise;
pub use variants::direct_rows::DIRECT_ROWS_MAX_TAPS;
pub use variants::winograd::winograd_shaped;
use select::preferred;

/// See the module documentation. The names are what IR text prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// No code: the result is a view of its operand's bytes (reshape, flatten).
    View,
    /// One pass over the result, element by element: unary ops, binary ops and elementwise
    /// chains whose operands have the result's shape (or are single values).
    Elementwise,
    /// A loop over rows of the result, for binary ops and chains with broadcast operands.
    Broadcast,
    /// A matrix product through the runtime's GEMM microkernels: dense and matmul layers,
    /// row-major convolutions (through im2col, or directly when pointwise), and attention (the
    /// runtime's fused kernel: per block of query rows, the scores, their softmax and the
    /// product with `v`). The epilogue runs on each register tile.
    Gemm,
    /// A dense layer as dot products: with few rows, a GEMM tile would mostly compute
    /// padding. With microkernels on, the runtime's full-width kernel
    /// (`nnc_runtime::gemm::gemv`, split across threads by units); otherwise `f32x4` loops.
    Dot,
    /// A matmul through Cranelift's own `f32x4` register tiles over a packed panel of B
    /// (without microkernels).
    RegisterTiles,
    /// A row-major convolution as loops over each tap's valid output range.
    Direct,
    /// A strided row-major depthwise convolution with its window unrolled.
    DepthwiseUnrolled,
    /// A depthwise convolution in a channel-vector layout: multiply-adds along channels. In
    /// NHWC with constant weights and microkernels on, the runtime's kernel at the CPU's full
    /// vector width (`nnc_runtime::gemm::depthwise`); otherwise Cranelift's `f32x4` loops.
    VectorDepthwise,
    /// An NHWC convolution as a GEMM over pixel-major patches, weights packed at compile time.
    NhwcGemm,
    /// An NCHW4c convolution, four filters per vector, register-blocked over pixels.
    Nchw4cBlocked,
    /// A convolution in a channel-vector layout as scalar loops (what the others miss).
    VectorDirect,
    /// Pooling in a channel-vector layout, vectorized along channels: in NHWC f32 with
    /// microkernels on, the runtime's kernel at the CPU's full vector width
    /// (`nnc_runtime::gemm::pool`); otherwise Cranelift's `f32x4` windows.
    ChannelVector,
    /// The op's own loop nest (normalizations, softmax, pooling, data movement, LSTM,
    /// attention without microkernels, layout conversions, int8 conversions).
    Loops,
    /// An int8 product through the runtime's integer GEMM (AVX-512 VNNI, AVX2 or portable
    /// microkernels): convolutions through an int8 im2col (or directly when pointwise),
    /// weights packed at compile time.
    Int8Gemm,
    /// An int8 depthwise convolution (column stride 1 or 2, no dilation, at most 25 taps):
    /// with the runtime's kernels, `nnc_runtime::gemm::int8_depthwise` (full-width f32
    /// vectors, exact for codes, the requantization fused); otherwise Cranelift code, eight
    /// outputs of a row at a time: codes widened to i16, multiplied by the tap's weight and
    /// accumulated in i32.
    Int8Depthwise,
    /// An int8 product in Cranelift code: i8 codes, wrapping i32 accumulation.
    Int8Dot,
    /// A row-major f32 convolution or dense layer whose constant weights are mostly zeros
    /// (pruned): the weights stored as compressed sparse rows at compile time, only their
    /// nonzeros multiplied, by the runtime's sparse kernels (`nnc_runtime::gemm::sparse`).
    Sparse,
    /// An f32 stride-1 3×3 convolution (row-major or NHWC) by Winograd F(4×4, 3×3)
    /// (`nnc_runtime::gemm::winograd`): 36 products on transformed tiles, 2.25
    /// multiplications per output instead of 9, the filters transformed at compile time.
    Winograd,
    /// The same by Winograd F(2×2, 3×3), NHWC only: 16 products, 4 multiplications per output,
    /// transformed filters 16/9 of the filters' size instead of 4× (for small images with
    /// many channels, where streaming F(4×4)'s filters costs more than it saves).
    WinogradF2,
    /// A row-major f32 stride-1 convolution with few input channels, computed directly by the
    /// runtime (`nnc_runtime::gemm::conv_direct`): output rows as vectors at the CPU's full
    /// width, several filters' sums in registers, no im2col (which for a reduction of 25, as
    /// LeNet-5's first layer has, costs as much as the product).
    DirectRows,
    /// The interpreter's own semantics, called from generated code: for float ops inside
    /// quantized graphs whose native kernels round differently from the interpreter, so that
    /// the JIT gives the interpreter's bits there (SPEC §5). The runtime's definitions
    /// (`nnc_runtime::reference`, see [`reference_in_runtime`]) where it has them, else a
    /// call back into `Op::eval` ([`Prepack::ReferenceNode`]).
    Reference,
}

impl Kernel {
    pub const ALL: [Kernel; 22] = [
        Kernel::View,
        Kernel::Elementwise,
        Kernel::Broadcast,
        Kernel::Gemm,
        Kernel::Dot,
        Kernel::RegisterTiles,
        Kernel::Direct,
        Kernel::DepthwiseUnrolled,
        Kernel::VectorDepthwise,
        Kernel::NhwcGemm,
        Kernel::Nchw4cBlocked,
        Kernel::VectorDirect,
        Kernel::ChannelVector,
        Kernel::Loops,
        Kernel::Int8Gemm,
        Kernel::Int8Depthwise,
        Kernel::Int8Dot,
        Kernel::Sparse,
        Kernel::Winograd,
        Kernel::WinogradF2,
        Kernel::DirectRows,
        Kernel::Reference,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::View => "view",
            Kernel::Elementwise => "elementwise",
            Kernel::Broadcast => "broadcast",
            Kernel::Gemm => "gemm",
            Kernel::Dot => "dot",
            Kernel::RegisterTiles => "register-tiles",
            Kernel::Direct => "direct",
            Kernel::DepthwiseUnrolled => "depthwise-unrolled",
            Kernel::VectorDepthwise => "vector-depthwise",
            Kernel::NhwcGemm => "nhwc-gemm",
            Kernel::Nchw4cBlocked => "nchw4c-blocked",
            Kernel::VectorDirect => "vector-direct",
            Kernel::ChannelVector => "channel-vector",
            Kernel::Loops => "loops",
            Kernel::Int8Gemm => "int8-gemm",
            Kernel::Int8Depthwise => "int8-depthwise",
            Kernel::Int8Dot => "int8-dot",
            Kernel::Sparse => "sparse",
            Kernel::Winograd => "winograd-f4x3",
            Kernel::WinogradF2 => "winograd-f2x3",
            Kernel::DirectRows => "direct-rows",
            Kernel::Reference => "reference",
        }
    }

    pub fn from_name(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The Winograd tile a Winograd kernel computes with.
    pub fn winograd_tile(self) -> Option<nnc_runtime::gemm::winograd::Tile> {
        match self {
            Kernel::Winograd => Some(nnc_runtime::gemm::winograd::Tile::F4),
            Kernel::WinogradF2 => Some(nnc_runtime::gemm::winograd::Tile::F2),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of kernels: the ones `--kernels` asks for, wherever they can compute a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KernelSet(u32);

impl KernelSet {
    pub fn contains(self, k: Kernel) -> bool {
        self.0 & Self::bit(k) != 0
    }

    pub fn with(self, k: Kernel) -> KernelSet {
        KernelSet(self.0 | Self::bit(k))
    }

    pub fn union(self, other: KernelSet) -> KernelSet {
        KernelSet(self.0 | other.0)
    }

    fn bit(k: Kernel) -> u32 {
        1 << Kernel::ALL.iter().position(|&a| a == k).expect("every kernel is in ALL")
    }

    /// `gemm,direct`: kernel names (as IR text prints them), comma-separated.
    pub fn parse(text: &str) -> Result<KernelSet, String> {
        text.split(',').map(str::trim).filter(|n| !n.is_empty()).try_fold(KernelSet::default(), |set, name| {
            Kernel::from_name(name).map(|k| set.with(k)).ok_or_else(|| format!("unknown kernel `{name}` (kernels: {})", Kernel::ALL.map(|k| k.name()).join(", ")))
        })
    }
}

// One bit per kernel.
const _: () = assert!(Kernel::ALL.len() <= 32);

/// What the JIT packs at compile time for a kernel, from constant weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepack {
    Nothing,
    /// A row-major convolution through the GEMM: each group's weights as packed A panels.
    GemmA,
    /// A dense layer through the GEMM: its weights' transpose as packed B panels.
    GemmB,
    /// A dense layer as the runtime's dot products: its weights in blocks of units
    /// (`gemv::pack_blocked`), one sequential stream.
    GemvBlocks,
    /// A channel-vector convolution: weights in the order its kernel reads them (depthwise
    /// `[tap][C]`, NHWC packed B panels, NCHW4c blocks of four filters).
    ChannelWeights,
    /// An LSTM: transposed input and hidden weights and the summed bias.
    LstmWeights,
    /// A `dequantize` or `requantize` with per-channel scales: the scales as an f32 table.
    ScaleTable,
    /// An int8 product through the integer GEMM: a convolution's weights as packed A panels
    /// (one buffer per group), a dense layer's or matmul's as packed B panels.
    Int8Weights,
    /// A sparse product: the weights as compressed sparse rows (`sparse::encode_csr`), a
    /// convolution's `[F, C·kh·kw]`, a dense layer's `[units, features]`.
    SparseRows,
    /// The filters of a Winograd convolution, transformed (`G g Gᵀ`, 36 matrices `K × C`).
    WinogradFilters,
    /// A reference kernel that calls back into the interpreter: the op and where its
    /// operands and result live.
    ReferenceNode,
}

/// Everything that follows from a node's kernel: see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelPlan {
    pub kernel: Kernel,
    /// `[m, n, k]` of the matrix product the kernel runs through a GEMM (attention's first).
    pub gemm: Option<[usize; 3]>,
    /// The cache blocking of that product (the node's `tile`, or derived the same way).
    pub tile: Tile,
    /// Arena bytes the kernel needs while it runs, beyond its operands and result.
    pub scratch_bytes: usize,
    /// Whether the kernel can run as tasks over disjoint shares of its outermost loop.
    pub splits: bool,
    pub prepack: Prepack,
    /// The runtime GEMM multiplies in bf16 (`Precision::Bf16`): the product's operands are
    /// bf16 values and the CPU has the bf16 kernel. Its prepacked weights are bf16 pairs.
    pub bf16: bool,
}

/// The values of a graph known at compile time: constants, parameters (whose weights will
/// be bound) and what ops compute from those alone, which `fold-constants` turns into
/// constants once weights are bound (so the JIT can repack them).
pub struct Known {
    values: HashSet<NodeId>,
    /// The fraction of nonzero values of each f32 constant matrix (rank ≥ 2): what the
    /// sparse kernel's cost depends on.
    densities: HashMap<NodeId, f64>,
    /// The graph holds int8 values: a quantized graph, whose float ops must give the
    /// interpreter's bits too (a float that rounds differently can flip a code downstream).
    interpreter_bits: bool,
}

impl Known {
    pub fn of(graph: &Graph) -> Known {
        let mut known = HashSet::new();
        for id in graph.topo_order() {
            let k = match graph.node(id).kind {
                NodeKind::Const(_) | NodeKind::Param => true,
                NodeKind::Input { .. } => false,
                NodeKind::Op(_) => graph.operands(id).iter().all(|o| known.contains(o)),
            };
            if k {
                known.insert(id);
            }
        }
        let interpreter_bits = graph.node_ids().any(|id| graph.node(id).ty.dtype == nnc_runtime::DType::I8);
        let densities = graph
            .node_ids()
            .filter_map(|id| match &graph.node(id).kind {
                NodeKind::Const(t) if t.shape().len() >= 2 && !t.is_empty() && t.as_f32().is_some() => Some((id, t.nonzeros() as f64 / t.len() as f64)),
                _ => None,
            })
            .collect();
        Known { values: known, densities, interpreter_bits }
    }

    /// The fraction of nonzero values of an f32 constant matrix.
    pub fn density(&self, id: NodeId) -> Option<f64> {
        self.densities.get(&id).copied()
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.values.contains(&id)
    }

    /// Whether the graph's results must be the interpreter's bits (it is quantized).
    pub fn interpreter_bits(&self) -> bool {
        self.interpreter_bits
    }
}

/// Whether `id` is a constant or parameter node.
pub fn is_weight_node(graph: &Graph, id: NodeId) -> bool {
    matches!(graph.node(id).kind, NodeKind::Const(_) | NodeKind::Param)
}

/// A node's operands as the plan sees them: types, and whether each is known at compile
/// time.
pub struct Operands<'a> {
    pub types: Vec<&'a TensorType>,
    pub constant: Vec<bool>,
    /// Whether the result must be the interpreter's bits (the node is in a quantized graph).
    pub interpreter_bits: bool,
    /// The fraction of nonzeros of the weights (operand 1), when they are an f32 constant.
    pub weight_density: Option<f64>,
    /// Whether operand 1 is a weight itself (a constant or parameter node), not a value
    /// computed from weights: kernels that transform weights at compile time need its values.
    pub weight_is_leaf: bool,
}

impl<'a> Operands<'a> {
    pub fn of(graph: &'a Graph, id: NodeId, known: &Known) -> Operands<'a> {
        let operands = graph.operands(id);
        let constant = operands.iter().map(|&o| known.contains(o)).collect();
        let weight_density = operands.get(1).and_then(|&w| known.density(w));
        let weight_is_leaf = operands.get(1).is_some_and(|&w| is_weight_node(graph, w));
        Operands { types: graph.operand_types(id), constant, interpreter_bits: known.interpreter_bits, weight_density, weight_is_leaf }
    }

    /// Whether every operand from `first` on is known at compile time.
    fn constant_from(&self, first: usize) -> bool {
        self.constant.iter().skip(first).all(|&c| c)
    }
}

/// Why a node has no plan.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("the JIT has no kernel for `{0}` here")]
    NoKernel(&'static str),
    #[error("kernel `{kernel}` cannot compute `{op}` here; it can run as {}", .available.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))]
    Unavailable { kernel: Kernel, op: String, available: Vec<Kernel> },
}

/// Window taps up to which the channel-vector kernels unroll their window.
pub const MAX_UNROLLED_TAPS: usize = 49;

/// Taps up to which a strided row-major depthwise convolution is unrolled.
pub const MAX_UNROLLED_DEPTHWISE_TAPS: usize = 25;

/// Rows from which a dense layer runs through the GEMM rather than as dot products.
pub const GEMM_MIN_ROWS: usize = 8;

/// Reduction length from which a grouped row-major convolution runs through the GEMM (with
/// microkernels): below it, each output sums too few products for packing to pay.
pub const GEMM_MIN_CONV_REDUCTION: usize = 16;

/// The same for an ungrouped convolution, whose one product has all the filters: it was 16
/// too until channel pruning made 1×1 convolutions over 8 channels, where (at 112×112 with
/// 48 filters) the GEMM takes 0.47 ms and the direct loops 3.06 ms.
pub const GEMM_MIN_UNGROUPED_CONV_REDUCTION: usize = 4;

impl KernelPlan {
    /// The plan of `id` on `target`: its recorded kernel and tile if `select-kernels` and
    /// `select-tiles` ran, else the ones they would choose. A recorded kernel that `target`
    /// cannot run (it was chosen for another one, say with microkernels) is chosen again.
    pub fn for_node(graph: &Graph, id: NodeId, known: &Known, target: &CpuTarget) -> Result<KernelPlan, PlanError> {
        let node = graph.node(id);
        let op = node.op().expect("only ops have kernels");
        let operands = Operands::of(graph, id, known);
        let recorded = node.kernel.filter(|k| available(op, &operands, &node.ty, target).contains(k));
        KernelPlan::new(op, &operands, &node.ty, target, recorded, node.tile)
    }

    /// The plan for `op` with `kernel` (or the chosen one) and `tile` (or the derived one).
    pub fn new(op: &Op, operands: &Operands, out: &TensorType, target: &CpuTarget, kernel: Option<Kernel>, tile: Option<Tile>) -> Result<KernelPlan, PlanError> {
        let available = available(op, operands, out, target);
        let kernel = match kernel {
            None => preferred(&available, target).ok_or(PlanError::NoKernel(op.name()))?,
            Some(k) if available.contains(&k) => k,
            Some(k) => return Err(PlanError::Unavailable { kernel: k, op: op.label(), available }),
        };
        let types = &operands.types;
        let gemm = gemm_shape(kernel, op, types, out);
        let tile = tile.unwrap_or_else(|| {
            let [m, n, k] = gemm.unwrap_or([usize::MAX / 2; 3]);
            target.gemm_tile(m, n, k)
        });
        Ok(KernelPlan {
            kernel,
            gemm,
            scratch_bytes: scratch_bytes(kernel, op, operands, out, &tile, target.ukernels),
            splits: splits(kernel, op),
            prepack: prepack(kernel, op, operands, target.ukernels),
            bf16: matches!(kernel, Kernel::Gemm | Kernel::NhwcGemm) && product_operands(op, types).is_some_and(|(_, t)| t[..2].iter().all(|t| t.dtype == nnc_runtime::DType::BF16)) && target.bf16_products(),
            tile,
        })
    }
}

/// Window taps of a convolution's weights `[F, C/groups, kh, kw]`.
pub(crate) fn taps(types: &[&TensorType]) -> usize {
    types[1].shape[2] * types[1].shape[3]
}

/// Products summed per output of a convolution: `C/groups · kh · kw`.
pub(crate) fn reduction(types: &[&TensorType]) -> usize {
    types[1].shape[1] * taps(types)
}

/// Whether a convolution is 1×1, stride 1 and unpadded: the GEMM multiplies the input planes
/// directly, with no im2col.
pub fn conv_is_pointwise(c: &Conv2d, types: &[&TensorType]) -> bool {
    taps(types) == 1 && c.stride == [1, 1] && c.padding == [0; 4]
}

/// The anchor of a fused op, or the op itself, with its own operands.
pub(crate) fn product_operands<'t>(op: &Op, types: &[&'t TensorType]) -> Option<(Product, Vec<&'t TensorType>)> {
    let product = op.product()?;
    let n = if let Op::Fused(f) = op { f.anchor_operands(types.len()) } else { types.len() };
    Some((product, types[..n].to_vec()))
}

/// `[m, n, k]` of the GEMM `kernel` runs for `op`.
fn gemm_shape(kernel: Kernel, op: &Op, types: &[&TensorType], out: &TensorType) -> Option<[usize; 3]> {
    match kernel {
        Kernel::Gemm | Kernel::RegisterTiles | Kernel::NhwcGemm | Kernel::Int8Gemm => {}
        Kernel::View
        | Kernel::Elementwise
        | Kernel::Broadcast
        | Kernel::Dot
        | Kernel::Direct
        | Kernel::DepthwiseUnrolled
        | Kernel::VectorDepthwise
        | Kernel::Nchw4cBlocked
        | Kernel::VectorDirect
        | Kernel::ChannelVector
        | Kernel::Loops
        | Kernel::Int8Depthwise
        | Kernel::Int8Dot
        | Kernel::Sparse
        | Kernel::Winograd
        | Kernel::WinogradF2
        | Kernel::DirectRows
        | Kernel::Reference => return None,
    }
    if let Op::Attention(_) = op {
        let (q, k) = (&types[0].shape, &types[1].shape);
        let r = q.len();
        return Some([q[r - 2], k[r - 2], q[r - 1]]);
    }
    let (product, types) = product_operands(op, types)?;
    let w = &types[1].shape;
    Some(match (kernel, product) {
        (Kernel::NhwcGemm, _) => [out.shape[2] * out.shape[3], w[0], reduction(&types)],
        (_, Product::Conv2d(c)) => [w[0] / c.groups, out.shape[2] * out.shape[3], reduction(&types)],
        (_, Product::Dense(_)) => [types[0].numel() / w[1], w[0], w[1]],
        (_, Product::MatMul(_)) => {
            let (_, m, k, n) = MatMul::dims(&types[0].shape, &types[1].shape);
            [m, n, k]
        }
    })
}

fn scratch_bytes(kernel: Kernel, op: &Op, operands: &Operands, out: &TensorType, tile: &Tile, ukernels: bool) -> usize {
    let types = &operands.types;
    match kernel {
        // The runtime's fused attention keeps its score blocks in per-thread buffers.
        Kernel::Gemm if matches!(op, Op::Attention(_)) => 0,
        // One group's unfolded image, unless the input planes are the patches already.
        Kernel::Gemm => match product_operands(op, types) {
            Some((Product::Conv2d(c), t)) if !conv_is_pointwise(&c, &t) => reduction(&t) * out.shape[2] * out.shape[3] * 4,
            Some(_) | None => 0,
        },
        // One group's unfolded image of int8 codes, unless the input planes are the patches.
        Kernel::Int8Gemm => match product_operands(op, types) {
            Some((Product::Conv2d(c), t)) if !conv_is_pointwise(&c, &t) => (reduction(&t) * out.shape[2] * out.shape[3]).next_multiple_of(4),
            Some(_) | None => 0,
        },
        // A requantizing int8 product whose kernel stores accumulators: them, in i32. (The
        // runtime's depthwise kernel requantizes as it stores.)
        Kernel::Int8Depthwise if ukernels => 0,
        Kernel::Int8Depthwise | Kernel::Int8Dot if matches!(op, Op::Fused(f) if f.requantize.is_some()) => out.numel() * 4,
        // The unfolded image of a windowed convolution; a dense layer's input and output
        // transposed when it has too many rows to gather.
        Kernel::Sparse => match product_operands(op, types) {
            Some((Product::Conv2d(c), t)) if !conv_is_pointwise(&c, &t) => reduction(&t) * out.shape[2] * out.shape[3] * 4,
            Some((Product::Dense(_), t)) => {
                let (units, features) = (t[1].shape[0], t[1].shape[1]);
                let rows = t[0].numel() / features;
                nnc_runtime::gemm::sparse::spmm_scratch_floats(units, features, rows, [1, features as isize], units as isize) * 4
            }
            Some(_) | None => 0,
        },
        // One image's transformed input and products.
        Kernel::Winograd | Kernel::WinogradF2 => {
            let t = &types[0].shape;
            let winograd_tile = kernel.winograd_tile().expect("a Winograd kernel");
            nnc_runtime::gemm::winograd::scratch_floats(winograd_tile, t[1], out.shape[1], out.shape[2], out.shape[3]) * 4
        }
        // A packed kc × NR panel of B.
        Kernel::RegisterTiles => tile.kc * CRANELIFT_TILE.1 * 4,
        Kernel::Loops => {
            if let Op::Lstm(l) = op {
                lstm_scratch_floats(types[0].shape[1], types[0].shape[2], l.hidden, operands.constant_from(1)) * 4
            } else {
                0
            }
        }
        Kernel::View
        | Kernel::Elementwise
        | Kernel::Broadcast
        | Kernel::Dot
        | Kernel::Direct
        | Kernel::DepthwiseUnrolled
        | Kernel::VectorDepthwise
        | Kernel::NhwcGemm
        | Kernel::Nchw4cBlocked
        | Kernel::VectorDirect
        | Kernel::ChannelVector
        | Kernel::Int8Depthwise
        | Kernel::Int8Dot
        | Kernel::DirectRows
        | Kernel::Reference => 0,
    }
}

/// Floats of an LSTM's scratch, in the order its kernel lays them out: the gate
/// pre-activations of one row (`4H`), the cell state and the zero initial hidden state of
/// every batch row (`N·H` each), and, when the weights are not packed at compile time, their
/// transposes and the summed bias (`(I + H + 1)·4H`).
pub fn lstm_scratch_floats(batch: usize, input: usize, hidden: usize, weights_constant: bool) -> usize {
    let transposed = if weights_constant { 0 } else { (input + hidden + 1) * 4 * hidden };
    4 * hidden + 2 * batch * hidden + transposed
}

fn splits(kernel: Kernel, op: &Op) -> bool {
    match kernel {
        Kernel::Elementwise | Kernel::VectorDepthwise | Kernel::Nchw4cBlocked => true,
        // Layout conversions split by blocks of pixels.
        Kernel::Loops if matches!(op, Op::ConvertLayout(_)) => true,
        // Pooling windows split by output rows; a global pool is one reduction per plane.
        Kernel::ChannelVector => !matches!(op, Op::GlobalAvgPool(_)),
        Kernel::View
        | Kernel::Broadcast
        | Kernel::Gemm
        | Kernel::Dot
        | Kernel::RegisterTiles
        | Kernel::Direct
        | Kernel::DepthwiseUnrolled
        | Kernel::NhwcGemm
        | Kernel::VectorDirect
        | Kernel::Loops
        | Kernel::Int8Gemm
        | Kernel::Int8Depthwise
        | Kernel::Int8Dot
        | Kernel::Sparse
        | Kernel::Winograd
        | Kernel::WinogradF2
        | Kernel::DirectRows
        | Kernel::Reference => false,
    }
}

fn prepack(kernel: Kernel, op: &Op, operands: &Operands, ukernels: bool) -> Prepack {
    let weight_constant = operands.constant.get(1).copied().unwrap_or(false);
    match kernel {
        // Only the runtime's dot products read blocked weights (Cranelift's loops read rows).
        Kernel::Dot if ukernels && weight_constant && matches!(op.product(), Some(Product::Dense(_))) => Prepack::GemvBlocks,
        Kernel::Gemm if weight_constant && matches!(op.product(), Some(Product::Conv2d(_))) => Prepack::GemmA,
        Kernel::Gemm if weight_constant && matches!(op.product(), Some(Product::Dense(_))) => Prepack::GemmB,
        // A matmul's B is packed only when one matrix serves every batch.
        Kernel::Int8Gemm if weight_constant && (!matches!(op.product(), Some(Product::MatMul(_))) || operands.types[1].shape.len() == 2) => Prepack::Int8Weights,
        Kernel::VectorDepthwise if weight_constant => Prepack::ChannelWeights,
        Kernel::NhwcGemm | Kernel::Nchw4cBlocked => Prepack::ChannelWeights,
        Kernel::Loops if matches!(op, Op::Lstm(_)) && operands.constant_from(1) => Prepack::LstmWeights,
        Kernel::Loops if per_channel_scales(op) => Prepack::ScaleTable,
        Kernel::Sparse => Prepack::SparseRows,
        Kernel::Winograd | Kernel::WinogradF2 => Prepack::WinogradFilters,
        Kernel::Gemm
        | Kernel::VectorDepthwise
        | Kernel::Loops
        | Kernel::View
        | Kernel::Elementwise
        | Kernel::Broadcast
        | Kernel::Dot
        | Kernel::RegisterTiles
        | Kernel::Direct
        | Kernel::DepthwiseUnrolled
        | Kernel::VectorDirect
        | Kernel::ChannelVector
        | Kernel::Int8Gemm
        | Kernel::Int8Depthwise
        | Kernel::Int8Dot
        | Kernel::DirectRows => Prepack::Nothing,
        // The runtime's copy of the interpreter's semantics needs nothing prepared.
        Kernel::Reference if ukernels && reference_in_runtime(op, operands) => Prepack::Nothing,
        // The node's own description, which the generated call passes to the interpreter.
        Kernel::Reference => Prepack::ReferenceNode,
    }
}

/// An op whose interpreter semantics the runtime carries (`nnc_runtime::reference`), so
/// that its reference kernel is a call into the runtime (which a library compiled ahead of
/// time links) rather than back into nnc.
#[derive(Clone, Copy, Debug)]
pub enum RuntimeReference<'a> {
    Unary(nnc_runtime::reference::Transcendental),
    LayerNorm(&'a crate::ops::LayerNorm),
    Attention(&'a crate::ops::Attention),
    Lstm(&'a crate::ops::Lstm),
    Softmax(&'a crate::ops::Softmax),
}

impl<'a> RuntimeReference<'a> {
    /// The runtime's definition of `op`, if it has one: transcendental activations, layer
    /// normalization, softmax, attention and the LSTM. Any other op keeps the call into nnc.
    pub fn of(op: &'a Op) -> Option<RuntimeReference<'a>> {
        Some(match op {
            Op::Unary(u) => RuntimeReference::Unary(u.kind.transcendental()?),
            Op::LayerNorm(ln) => RuntimeReference::LayerNorm(ln),
            Op::Attention(a) => RuntimeReference::Attention(a),
            Op::Lstm(l) => RuntimeReference::Lstm(l),
            Op::Softmax(s) => RuntimeReference::Softmax(s),
            // The rest: exact natively, or (batch norm, fused chains) only in nnc.
            Op::Conv2d(_) | Op::Dense(_) | Op::MatMul(_) | Op::BatchNorm(_) | Op::Binary(_) | Op::Pool(_) | Op::GlobalAvgPool(_) | Op::Flatten(_) | Op::Reshape(_) | Op::Transpose(_) | Op::Concat(_) | Op::Slice(_) | Op::Fused(_) | Op::ConvertLayout(_) | Op::Quantize(_) | Op::Dequantize(_) | Op::Requantize(_) | Op::Cast(_) => return None,
        })
    }
}

/// Whether the reference kernel of `op` on these operands calls the runtime
/// ([`RuntimeReference`]): an op it carries, on f32 row-major operands.
pub fn reference_in_runtime(op: &Op, operands: &Operands) -> bool {
    let plain = operands.types.iter().all(|t| t.dtype == nnc_runtime::DType::F32 && t.layout == Layout::RowMajor);
    plain && RuntimeReference::of(op).is_some()
}

/// Whether `op` converts with one scale per channel (a table the kernel indexes).
fn per_channel_scales(op: &Op) -> bool {
    if let Op::Dequantize(d) = op {
        d.scales.values.len() > 1
    } else if let Op::Requantize(r) = op {
        r.scales.values.len() > 1
    } else {
        false
    }
}
