//! The cost model that ranks kernels whose speed depends on the layout (convolutions and
//! pooling), in picoseconds measured on this code generator.

use super::*;

// The cost model, in picoseconds, measured on this code generator (BENCHMARKS.md,
// "Layouts"). Only what differs between layouts is priced.
/// One multiply-accumulate of a depthwise convolution, row-major and in a channel-vector
/// layout.
const DEPTHWISE_PS_PER_MAC_NCHW: u64 = 600;
const DEPTHWISE_PS_PER_MAC_VECTOR: u64 = 100;
/// One multiply-accumulate of a dense convolution through the GEMM microkernels when every
/// register tile is full: NHWC patches are runs of channels, cheaper to gather than NCHW's
/// (1×1 convolutions gather nothing). Divided by the tile utilization: NCHW multiplies
/// `[filters × pixels]`, NHWC `[pixels × filters]`, so few filters waste most of a tile
/// in one layout and little in the other.
const GEMM_CONV_PS_PER_MAC_NCHW: u64 = 32;
const GEMM_CONV_PS_PER_MAC_NHWC: u64 = 29;
const GEMM_POINTWISE_PS_PER_MAC: u64 = 29;
/// One multiply-accumulate of a dense convolution without microkernels, row-major (direct
/// loops) and NCHW4c (register-blocked).
const DIRECT_CONV_PS_PER_MAC_NCHW: u64 = 640;
const DIRECT_CONV_PS_PER_MAC_NCHW4C: u64 = 100;
/// One window tap of one output of a pooling, row-major (scalar) and vectorized.
const POOL_PS_PER_TAP_NCHW: u64 = 1430;
const POOL_PS_PER_TAP_VECTOR: u64 = 440;

/// Estimated run time of `op` with `kernel`, in picoseconds, for the ops whose speed depends
/// on their layout (convolutions and pooling); 0 for the rest.
pub fn estimated_ps(kernel: Kernel, op: &Op, types: &[&TensorType], out: &TensorType, target: &CpuTarget) -> u64 {
    if let Op::Pool(p) = op {
        let taps = (out.numel() * p.kernel[0] * p.kernel[1]) as u64;
        let ps = if kernel == Kernel::ChannelVector { POOL_PS_PER_TAP_VECTOR } else { POOL_PS_PER_TAP_NCHW };
        return taps.saturating_mul(ps);
    }
    let Some((Product::Conv2d(c), t)) = product_operands(op, types) else { return 0 };
    let macs = Product::Conv2d(c.clone()).macs(&t, out);
    let per = |ps: u64| macs.saturating_mul(ps);
    if c.groups > 1 {
        return per(if kernel == Kernel::VectorDepthwise { DEPTHWISE_PS_PER_MAC_VECTOR } else { DEPTHWISE_PS_PER_MAC_NCHW });
    }
    let (filters, pixels) = (t[1].shape[0], out.shape[2] * out.shape[3]);
    // Utilization of `mr × nr` tiles over an `m × n` product, in thousandths.
    let used = |m: usize, n: usize| (1000 * m * n / (m.next_multiple_of(target.mr) * n.next_multiple_of(target.nr))).max(1) as u64;
    let windowed = taps(&t) > 1;
    let gemm = |ps: u64, used: u64| macs.saturating_mul(ps).saturating_mul(1000) / used;
    match kernel {
        Kernel::Gemm => gemm(if windowed { GEMM_CONV_PS_PER_MAC_NCHW } else { GEMM_POINTWISE_PS_PER_MAC }, used(filters, pixels)),
        Kernel::NhwcGemm => gemm(if windowed { GEMM_CONV_PS_PER_MAC_NHWC } else { GEMM_POINTWISE_PS_PER_MAC }, used(pixels, filters)),
        Kernel::Nchw4cBlocked => per(DIRECT_CONV_PS_PER_MAC_NCHW4C),
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
        | Kernel::Reference => per(DIRECT_CONV_PS_PER_MAC_NCHW),
    }
}
