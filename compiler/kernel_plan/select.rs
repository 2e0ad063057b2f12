//! Which kernels can compute a node, best first: the rules per op and product, and the
//! interpreter-bits rule for float ops inside quantized graphs.

use super::variants::{depthwise, direct_rows, sparse, winograd};
use super::*;
use nnc_runtime::gemm::winograd::Tile as WinogradTile;

/// The kernel to run: the best of those [`available`] that the target asks for by name
/// (`--kernels`), else the one the cost model ranks first.
pub fn choose(op: &Op, operands: &Operands, out: &TensorType, target: &CpuTarget) -> Option<Kernel> {
    preferred(&available(op, operands, out, target), target)
}

/// [`choose`] among `available` (best first).
pub(super) fn preferred(available: &[Kernel], target: &CpuTarget) -> Option<Kernel> {
    available.iter().copied().find(|&k| target.forced_kernels.contains(k)).or(available.first().copied())
}

/// Every kernel that can compute `op` on these operands for `target`, best first (by the
/// measured costs behind [`estimated_ps`] and the rules in each arm). Empty when the JIT has
/// none.
pub fn available(op: &Op, operands: &Operands, out: &TensorType, target: &CpuTarget) -> Vec<Kernel> {
    if operands.interpreter_bits && !native_kernels_match_interpreter(op, &operands.types, target) {
        return vec![Kernel::Reference];
    }
    native_kernels(op, operands, out, target)
}

/// Whether the JIT's native kernels compute `op` bit for bit as the interpreter does: ops that
/// only move or select values, one correctly rounded f32 operation per element, the int8
/// ops, whose conversions use the interpreter's operations in its order, and a row-major
/// `global_avg_pool` with the runtime's kernels (its `plane_mean` is the interpreter's).
/// Transcendentals, other float reductions (which the interpreter sums in f64) and scaled
/// ops do not.
fn native_kernels_match_interpreter(op: &Op, types: &[&TensorType], target: &CpuTarget) -> bool {
    use crate::ops::UnaryKind;
    let unary_exact = |k: &UnaryKind| match k {
        UnaryKind::Relu | UnaryKind::Relu6 | UnaryKind::Abs | UnaryKind::Neg | UnaryKind::Clip { .. } | UnaryKind::Sqrt => true,
        UnaryKind::Sigmoid | UnaryKind::Tanh | UnaryKind::Gelu | UnaryKind::Silu | UnaryKind::Exp | UnaryKind::LeakyRelu { .. } => false,
    };
    match op {
        Op::Unary(u) => unary_exact(&u.kind),
        Op::Binary(_) | Op::Flatten(_) | Op::Reshape(_) | Op::Transpose(_) | Op::Concat(_) | Op::Slice(_) | Op::ConvertLayout(_) => true,
        Op::Quantize(_) | Op::Dequantize(_) | Op::Requantize(_) | Op::Cast(_) => true,
        Op::Pool(p) => p.kind == crate::ops::PoolKind::Max,
        // int8 products are exact; float ones sum in another order.
        Op::Conv2d(_) | Op::Dense(_) | Op::MatMul(_) => types[0].dtype == nnc_runtime::DType::I8,
        // An int8 product requantizing as it stores: integer products and the shared rounding.
        Op::Fused(f) if f.requantize.is_some() => true,
        Op::Fused(f) => {
            f.anchor.is_none()
                && f.steps.iter().all(|s| match s {
                    crate::ops::fused::Step::Unary(k) => unary_exact(k),
                    crate::ops::fused::Step::Binary { .. } => true,
                })
        }
        Op::GlobalAvgPool(_) => target.ukernels && types[0].layout == Layout::RowMajor,
        Op::BatchNorm(_) | Op::LayerNorm(_) | Op::Lstm(_) | Op::Softmax(_) | Op::Attention(_) => false,
    }
}

/// The native kernels for `op`, best first.
fn native_kernels(op: &Op, operands: &Operands, out: &TensorType, target: &CpuTarget) -> Vec<Kernel> {
    let types = &operands.types;
    let channel_layout = types.first().is_some_and(|t| t.layout != Layout::RowMajor);
    match op {
        Op::Conv2d(_) | Op::Dense(_) | Op::MatMul(_) => product_kernels(&op.product().expect("a product"), operands, out, target),
        Op::Fused(f) => match &f.anchor {
            Some(anchor) => {
                let n = f.anchor_operands(types.len());
                product_kernels(anchor, &Operands { types: types[..n].to_vec(), constant: operands.constant[..n].to_vec(), interpreter_bits: operands.interpreter_bits, weight_density: operands.weight_density, weight_is_leaf: operands.weight_is_leaf }, out, target)
            }
            // Broadcast rows run as a loop over rows.
            None if types[1..].iter().all(|e| e.shape == out.shape || e.numel() == 1) => vec![Kernel::Elementwise],
            None => vec![Kernel::Broadcast],
        },
        Op::Unary(_) | Op::Cast(_) => vec![Kernel::Elementwise],
        Op::Binary(_) if types.iter().all(|t| t.shape == out.shape) => vec![Kernel::Elementwise],
        Op::Binary(_) => vec![Kernel::Broadcast],
        Op::Attention(_) if target.ukernels => vec![Kernel::Gemm, Kernel::Loops],
        Op::Attention(_) => vec![Kernel::Loops],
        // The vector kernel unrolls the window; larger windows have no channel-vector kernel
        // (and `select-layouts` keeps them row-major).
        Op::Pool(p) if channel_layout => {
            if p.kernel[0] * p.kernel[1] <= MAX_UNROLLED_TAPS && types[0].dtype.is_float() {
                vec![Kernel::ChannelVector]
            } else {
                Vec::new()
            }
        }
        Op::GlobalAvgPool(_) if channel_layout => vec![Kernel::ChannelVector],
        Op::Flatten(_) | Op::Reshape(_) => vec![Kernel::View],
        Op::BatchNorm(_)
        | Op::LayerNorm(_)
        | Op::Lstm(_)
        | Op::Softmax(_)
        | Op::Pool(_)
        | Op::GlobalAvgPool(_)
        | Op::Transpose(_)
        | Op::Concat(_)
        | Op::Slice(_)
        | Op::ConvertLayout(_) => vec![Kernel::Loops],
        Op::Quantize(_) | Op::Dequantize(_) | Op::Requantize(_) => vec![Kernel::Loops],
    }
}

/// Kernels for a matrix product (alone or anchoring a fused op), best first.
fn product_kernels(product: &Product, operands: &Operands, out: &TensorType, target: &CpuTarget) -> Vec<Kernel> {
    let mut kernels = dense_product_kernels(product, operands, target);
    let op = product.op();
    // The specialised kernels, where they apply: first where the cost model prices them below
    // the best kernel so far (Winograd and the direct kernel for few channels against the
    // GEMM; sparse at this density against the dense ones), else last, so that `--kernels`
    // can still ask for them.
    let candidates = [
        (Kernel::Winograd, winograd::applies(WinogradTile::F4, product, operands, target)),
        (Kernel::WinogradF2, winograd::applies(WinogradTile::F2, product, operands, target)),
        (Kernel::DirectRows, direct_rows::applies(product, operands, target)),
        (Kernel::Sparse, sparse::applies(product, operands, target)),
    ];
    for (kernel, applies) in candidates {
        if !applies {
            continue;
        }
        let faster = kernels.first().is_none_or(|&best| estimated_ps(kernel, &op, operands, out, target) < estimated_ps(best, &op, operands, out, target));
        if faster {
            kernels.insert(0, kernel);
        } else {
            kernels.push(kernel);
        }
    }
    kernels
}

/// The dense kernels for a matrix product, best first.
fn dense_product_kernels(product: &Product, operands: &Operands, target: &CpuTarget) -> Vec<Kernel> {
    let types = &operands.types;
    if types[0].dtype == nnc_runtime::DType::I8 {
        // Even a depthwise convolution, which fills one row of the GEMM's 8-row register
        // tile, runs faster there than in the scalar loops: MobileNetV2 int8 41.7 -> 28.4 ms,
        // LeNet-5's first convolution (6 filters) 233 -> 11 µs.
        let depthwise = matches!(product, Product::Conv2d(c) if is_int8_vector_depthwise(c, types)).then_some(Kernel::Int8Depthwise);
        let gemm = target.ukernels.then_some(Kernel::Int8Gemm);
        return depthwise.into_iter().chain(gemm).chain([Kernel::Int8Dot]).collect();
    }
    match product {
        Product::Conv2d(c) if types[0].layout != Layout::RowMajor => {
            // Weights repacked at compile time need weights known then.
            let packable = operands.constant.get(1).copied().unwrap_or(false);
            let unrolled = taps(types) <= MAX_UNROLLED_TAPS;
            let mut ks = Vec::new();
            if c.groups > 1 {
                // The layout rule admits only depthwise convolutions with groups > 1.
                if unrolled {
                    ks.push(Kernel::VectorDepthwise);
                }
            } else {
                match types[0].layout {
                    Layout::Nhwc if target.ukernels && reduction(types) >= GEMM_MIN_UNGROUPED_CONV_REDUCTION && packable => ks.push(Kernel::NhwcGemm),
                    Layout::Nchw4c if unrolled && packable => ks.push(Kernel::Nchw4cBlocked),
                    Layout::Nhwc | Layout::Nchw4c | Layout::RowMajor => {}
                }
            }
            ks.push(Kernel::VectorDirect);
            ks
        }
        Product::Conv2d(c) => {
            let mut ks = Vec::new();
            let min_reduction = if c.groups == 1 { GEMM_MIN_UNGROUPED_CONV_REDUCTION } else { GEMM_MIN_CONV_REDUCTION };
            if target.ukernels && reduction(types) >= min_reduction {
                ks.push(Kernel::Gemm);
            }
            if depthwise::is_small_depthwise(c, types) {
                ks.push(Kernel::DepthwiseUnrolled);
            }
            ks.push(Kernel::Direct);
            ks
        }
        Product::Dense(_) => {
            let rows = types[0].numel() / types[1].shape[1];
            match (target.ukernels, rows >= GEMM_MIN_ROWS) {
                (true, true) => vec![Kernel::Gemm, Kernel::Dot],
                (true, false) => vec![Kernel::Dot, Kernel::Gemm],
                (false, _) => vec![Kernel::Dot],
            }
        }
        Product::MatMul(_) if target.ukernels => vec![Kernel::Gemm, Kernel::RegisterTiles],
        Product::MatMul(_) => vec![Kernel::RegisterTiles],
    }
}
