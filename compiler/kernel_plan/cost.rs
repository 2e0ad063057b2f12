//! The price list: each kernel's estimated time for a node, from its variant's own cost
//! model ([`super::variants`]). Only kernels whose speed depends on the layout
//! (convolutions and pooling) or on the weights' sparsity (products whose sparse kernel
//! competes with the dense ones) are priced.

use super::variants::{depthwise, direct, direct_rows, dot, gemm, pool, sparse, winograd};
use super::*;

/// Estimated run time of `op` with `kernel`, in picoseconds, for the ops whose speed depends
/// on their layout (convolutions and pooling) or on their weights' sparsity (products whose
/// sparse kernel competes with the dense ones); 0 for the rest.
pub fn estimated_ps(kernel: Kernel, op: &Op, operands: &Operands, out: &TensorType, target: &CpuTarget) -> u64 {
    let types = &operands.types[..];
    if let Some(tile) = kernel.winograd_tile() {
        return winograd::estimated_ps(tile, operands, out, target);
    }
    if kernel == Kernel::Sparse || matches!(op.product(), Some(Product::Dense(_))) {
        return product_ps(kernel, op, operands, out, target);
    }
    if let Op::Pool(p) = op {
        return pool::estimated_ps(kernel, p, out, target);
    }
    let Some((Product::Conv2d(c), t)) = product_operands(op, types) else { return 0 };
    let macs = Product::Conv2d(c.clone()).macs(&t, out);
    if c.groups > 1 {
        return depthwise::estimated_ps(kernel, macs, t[0], target);
    }
    let (filters, pixels) = (t[1].shape[0], out.shape[2] * out.shape[3]);
    match kernel {
        Kernel::DirectRows => direct_rows::conv_ps(macs, out),
        Kernel::Gemm | Kernel::NhwcGemm => gemm::conv_ps(kernel, macs, taps(&t) > 1, filters, pixels, target),
        Kernel::Nchw4cBlocked => direct::nchw4c_conv_ps(macs),
        Kernel::View
        | Kernel::Elementwise
        | Kernel::Broadcast
        | Kernel::Dot
        | Kernel::RegisterTiles
        | Kernel::Direct
        | Kernel::DepthwiseUnrolled
        | Kernel::VectorDepthwise
        | Kernel::VectorDirect
        | Kernel::ChannelVector
        | Kernel::Loops
        | Kernel::Int8Gemm
        | Kernel::Int8Depthwise
        | Kernel::Int8Dot
        | Kernel::Sparse
        | Kernel::Winograd
        | Kernel::WinogradF2
        | Kernel::Reference => direct::conv_ps(macs),
    }
}

/// A dense layer's or a sparse product's estimated time.
fn product_ps(kernel: Kernel, op: &Op, operands: &Operands, out: &TensorType, target: &CpuTarget) -> u64 {
    let Some((product, t)) = product_operands(op, &operands.types) else { return 0 };
    match kernel {
        Kernel::Sparse => sparse::estimated_ps(&product, &t, out, operands.weight_density.unwrap_or(1.0)),
        Kernel::Gemm => gemm::dense_ps(product.macs(&t, out)),
        Kernel::Dot => dot::dense_ps(product.macs(&t, out), target),
        // A dense layer has no other float kernel; int8 and reference ones are not priced.
        Kernel::View
        | Kernel::Elementwise
        | Kernel::Broadcast
        | Kernel::RegisterTiles
        | Kernel::Direct
        | Kernel::DepthwiseUnrolled
        | Kernel::VectorDepthwise
        | Kernel::NhwcGemm
        | Kernel::Nchw4cBlocked
        | Kernel::VectorDirect
        | Kernel::ChannelVector
        | Kernel::Loops
        | Kernel::Int8Gemm
        | Kernel::Int8Depthwise
        | Kernel::Int8Dot
        | Kernel::Winograd
        | Kernel::WinogradF2
        | Kernel::DirectRows
        | Kernel::Reference => 0,
    }
}
