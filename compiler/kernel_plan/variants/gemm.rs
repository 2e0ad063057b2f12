//! The GEMM through the runtime's microkernels (`nnc_runtime::gemm`): [`Kernel::Gemm`] for
//! dense layers, matmuls and row-major convolutions (im2col, or none when pointwise), and
//! [`Kernel::NhwcGemm`] for NHWC convolutions over pixel-major patches.

use super::super::*;

/// One multiply-accumulate of a dense convolution through the GEMM microkernels when every
/// register tile is full: NHWC patches are runs of channels, cheaper to gather than NCHW's
/// (1×1 convolutions gather nothing). Divided by the tile utilization: NCHW multiplies
/// `[filters × pixels]`, NHWC `[pixels × filters]`, so few filters waste most of a tile
/// in one layout and little in the other.
const CONV_PS_PER_MAC_NCHW: u64 = 32;
const CONV_PS_PER_MAC_NHWC: u64 = 29;
const POINTWISE_PS_PER_MAC: u64 = 29;

/// One multiply-accumulate of a dense layer.
const DENSE_PS_PER_MAC: u64 = 21;

/// Utilization of the GEMM's `mr × nr` register tiles over an `m × n` product, in
/// thousandths (at least 1).
pub(crate) fn tile_use(m: usize, n: usize, target: &CpuTarget) -> u64 {
    (1000 * m * n / (m.next_multiple_of(target.mr) * n.next_multiple_of(target.nr_for(n)))).max(1) as u64
}

/// A dense layer's estimated time.
pub(crate) fn dense_ps(macs: u64) -> u64 {
    macs.saturating_mul(DENSE_PS_PER_MAC)
}

/// An ungrouped convolution's estimated time with `kernel` ([`Kernel::Gemm`] or
/// [`Kernel::NhwcGemm`]), `windowed` unless 1×1, over its register tiles' utilization.
pub(crate) fn conv_ps(kernel: Kernel, macs: u64, windowed: bool, filters: usize, pixels: usize, target: &CpuTarget) -> u64 {
    let (per_mac, used) = match kernel {
        Kernel::NhwcGemm => (if windowed { CONV_PS_PER_MAC_NHWC } else { POINTWISE_PS_PER_MAC }, tile_use(pixels, filters, target)),
        _ => (if windowed { CONV_PS_PER_MAC_NCHW } else { POINTWISE_PS_PER_MAC }, tile_use(filters, pixels, target)),
    };
    macs.saturating_mul(per_mac).saturating_mul(1000) / used
}
