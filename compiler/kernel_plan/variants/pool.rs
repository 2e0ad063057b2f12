//! Pooling: row-major scalar loops ([`Kernel::Loops`]) or vectorized along channels
//! ([`Kernel::ChannelVector`]: `nnc_runtime::gemm::pool` in NHWC f32 with microkernels on,
//! Cranelift's `f32x4` windows otherwise).

use super::super::*;
use crate::ops::Pool;

/// One window tap of one output of a pooling, row-major (scalar) and vectorized.
const PS_PER_TAP_NCHW: u64 = 1430;
const PS_PER_TAP_VECTOR: u64 = 440;
/// The same in NHWC f32 through the runtime's full-width kernel (`gemm::pool`, microkernels
/// on): ResNet-18's stem pooling (112²×64, 3×3, stride 2) in the network, its input fresh
/// from the convolution.
const PS_PER_TAP_RUNTIME: u64 = 85;

/// A pooling's estimated time with `kernel`.
pub(crate) fn estimated_ps(kernel: Kernel, p: &Pool, out: &TensorType, target: &CpuTarget) -> u64 {
    let taps = (out.numel() * p.kernel[0] * p.kernel[1]) as u64;
    let runtime = target.ukernels && out.layout == Layout::Nhwc && out.dtype == nnc_runtime::DType::F32;
    let ps = match kernel {
        Kernel::ChannelVector if runtime => PS_PER_TAP_RUNTIME,
        Kernel::ChannelVector => PS_PER_TAP_VECTOR,
        _ => PS_PER_TAP_NCHW,
    };
    taps.saturating_mul(ps)
}
