//! [`Kernel::DirectRows`]: the runtime's direct convolution for few input channels
//! (`nnc_runtime::gemm::conv_direct`), which reads the image in place with no im2col.

use super::super::*;

/// The most taps per output (`channels·kh·kw`) of a convolution the direct kernel takes:
/// "few input channels" (one channel with a 5×5 window, three with 3×3). At 75 taps (three
/// channels, 5×5, 64 filters, 112²) it measured a tie with the GEMM (1.38–1.40 against
/// 1.38 ms), and at LeNet-5's `c3` (150 taps, ten outputs a row) slower (7.4 against 5.2 µs
/// by the NHWC GEMM).
pub const DIRECT_ROWS_MAX_TAPS: usize = 32;

/// One multiply-accumulate, divided by the lanes its rows fill: LeNet-5's first layer (1
/// channel, 5×5, 6 filters, 28² out, 28 of every 32 lanes) took 3.4 µs with its bias and
/// ReLU, 29 ps a multiply-add.
const PS_PER_MAC: u64 = 25;

/// Whether it can compute this product: an f32 (or bf16 computed in f32) row-major
/// ungrouped stride-1 convolution with a window (a pointwise one has no im2col to save: 16
/// channels into 64 at 56² took 134 µs this way against 79 by the GEMM) and at most
/// [`DIRECT_ROWS_MAX_TAPS`] taps per output, on a target with the runtime's kernels.
pub(crate) fn applies(product: &Product, operands: &Operands, target: &CpuTarget) -> bool {
    let types = &operands.types;
    let Product::Conv2d(c) = product else { return false };
    let f32s = super::products_in_f32(types, target);
    let windowed = types[1].shape[2] * types[1].shape[3] > 1;
    target.ukernels && f32s && types[0].layout == Layout::RowMajor && c.groups == 1 && c.stride == [1, 1] && windowed && reduction(types) <= DIRECT_ROWS_MAX_TAPS
}

/// A convolution's estimated time: its rows advance two vectors at a time when wider than
/// one, so the last block's unused lanes are paid for.
pub(crate) fn conv_ps(macs: u64, out: &TensorType) -> u64 {
    let ow = out.shape[3];
    let lanes = nnc_runtime::gemm::conv_direct::lanes();
    let block = if ow > lanes { 2 * lanes } else { lanes };
    let used = (1000 * ow / ow.next_multiple_of(block).max(1)).max(1) as u64;
    macs.saturating_mul(PS_PER_MAC).saturating_mul(1000) / used
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LeNet-5's first convolution (1 channel, 5×5, 6 filters, 28² out), which the constant
    /// was measured on, prices below the GEMM; windows of more than 32 taps and 1×1
    /// convolutions are not taken.
    #[test]
    fn few_input_channels_with_a_window_apply_and_price_below_the_gemm() {
        let target = CpuTarget::reference();
        let conv = Product::Conv2d(Conv2d { stride: [1, 1], padding: [0; 4], dilation: [1, 1], groups: 1 });
        let image = TensorType::f32(vec![1, 1, 32, 32]);
        let out = TensorType::f32(vec![1, 6, 28, 28]);
        let case = |channels: usize, window: usize| TensorType::f32(vec![6, channels, window, window]);
        let lenet = case(1, 5);
        assert!(applies(&conv, &super::super::test_operands(&image, &lenet, None), &target));
        let macs = (25 * 6 * 28 * 28) as u64;
        assert!(conv_ps(macs, &out) < super::super::gemm::conv_ps(Kernel::Gemm, macs, true, 6, 28 * 28, &target));
        for weights in [case(2, 5), case(8, 1)] {
            assert!(!applies(&conv, &super::super::test_operands(&image, &weights, None), &target), "{:?}", weights.shape);
        }
    }
}
