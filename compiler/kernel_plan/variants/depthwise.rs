//! Depthwise convolutions: [`Kernel::VectorDepthwise`] (multiply-adds along channels in a
//! channel-vector layout: `nnc_runtime::gemm::depthwise` in NHWC with microkernels on,
//! Cranelift's `f32x4` loops otherwise), [`Kernel::DepthwiseUnrolled`] (a strided
//! row-major one with its window unrolled) and [`Kernel::Int8Depthwise`] (`gemm::int8_depthwise`).

use super::super::*;

/// One multiply-accumulate of a depthwise convolution, row-major and in a channel-vector
/// layout. A grouped convolution costs the row-major rate with any kernel but the vector one.
const PS_PER_MAC_NCHW: u64 = 600;
const PS_PER_MAC_VECTOR: u64 = 100;
/// The same in NHWC through the runtime's full-width kernel (`gemm::depthwise`; 54–59 ps on
/// MobileNetV2's 112²×32 and 56²×144 layers).
const PS_PER_MAC_RUNTIME: u64 = 57;

/// A grouped convolution's estimated time with `kernel` (`image` is its input's type).
pub(crate) fn estimated_ps(kernel: Kernel, macs: u64, image: &TensorType, target: &CpuTarget) -> u64 {
    macs.saturating_mul(match kernel {
        Kernel::VectorDepthwise if target.ukernels && image.layout == Layout::Nhwc => PS_PER_MAC_RUNTIME,
        Kernel::VectorDepthwise => PS_PER_MAC_VECTOR,
        _ => PS_PER_MAC_NCHW,
    })
}

/// Whether an int8 convolution is depthwise (one channel, one filter per group) at a stride
/// along rows of 1 or 2, undilated, with a window small enough to unroll: what
/// [`Kernel::Int8Depthwise`] runs.
pub fn is_int8_vector_depthwise(c: &Conv2d, types: &[&TensorType]) -> bool {
    let (channels, filters) = (types[0].shape[1], types[1].shape[0]);
    c.groups == channels && filters == channels && c.dilation == [1, 1] && matches!(c.stride[1], 1 | 2) && taps(types) <= MAX_UNROLLED_DEPTHWISE_TAPS
}

/// Whether a row-major convolution is depthwise, strided, with a window small enough to
/// unroll: what [`Kernel::DepthwiseUnrolled`] runs. At stride 1 the direct loops vectorize
/// along rows and win; strided, they are scalar and the unrolled form is 1.5× faster
/// (MobileNetV2's stride-2 layers).
pub(crate) fn is_small_depthwise(c: &Conv2d, types: &[&TensorType]) -> bool {
    types[1].shape[1] == 1 && c.groups == types[0].shape[1] && taps(types) <= MAX_UNROLLED_DEPTHWISE_TAPS && c.stride != [1, 1]
}
