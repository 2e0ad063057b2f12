//! [`Kernel::Winograd`] and [`Kernel::WinogradF2`]: stride-1 3×3 convolutions as Winograd
//! F(4×4, 3×3) or F(2×2, 3×3) (`nnc_runtime::gemm::winograd`), filters transformed at
//! compile time.

use super::super::*;
use super::gemm::tile_use;
use nnc_runtime::gemm::winograd::{block_tiles, filters_left, nhwc_available, tiles, Tile};

/// F(4×4, 3×3) on row-major images, fitted to ResNet-18's stride-1 3×3 convolutions at 56²,
/// 28², 14² and 7² (BENCHMARKS.md): each tile of each input channel transformed in and of
/// each filter transformed out, the 36 products at the GEMM's rate over its tile
/// utilization, and the transformed filters (four times the filters' bytes) streamed once
/// per image, which is what makes 7×7 layers with 512 channels lose.
const PS_PER_TILE_TRANSFORM: u64 = 46_000;
const GEMM_PS_PER_MAC: u64 = 28;
const PS_PER_FILTER_BYTE: u64 = 60;
/// The same for NHWC images (`winograd::conv3x3_nhwc`: transforms on vectors of channels,
/// the products reading the transformed tiles in place), fitted to ResNet-18's shapes
/// (56²×64, 28²×128, 14²×256, 7²×512: 0.65, 0.63, 0.73 and 1.9 ms on one thread, against
/// 2.4, 2.3, 2.3 and 2.6 ms by the GEMM). The filter bytes are priced above what one layer
/// alone measures (30 ps): in a whole network the transformed filters, four times the
/// filters, come from memory, and with two threads a 7²×512 layer is bandwidth-bound
/// (2.0 ms against the GEMM's 1.4), besides costing 38 MB and 30 ms of compile time.
const NHWC_PS_PER_TILE_TRANSFORM: u64 = 2_000;
const NHWC_GEMM_PS_PER_MAC: u64 = 18;
const NHWC_PS_PER_FILTER_BYTE: u64 = 85;
/// The same for F(2×2, 3×3) (NHWC only; its filter bytes cost F(4×4)'s NHWC rate). Its
/// transforms write and read 16 values per tile and channel against F(4×4)'s 36, but each
/// output takes 4 products per input channel against 2.25, and its tiles cover a quarter of
/// the outputs. Fitted in ResNet-18 (one thread): its 7²×512 layers take F(2×2) (1.33–1.73
/// ms against 2.26–2.31 by the GEMM; on two threads 0.78–0.98 against 1.23–1.29), its
/// 14²×256 ones keep F(4×4) (0.93–0.99 ms against 1.02–1.05 by F(2×2)), and larger images
/// keep it by far.
const F2_PS_PER_TILE_TRANSFORM: u64 = 1_000;
const F2_PS_PER_MAC: u64 = 21;

/// Whether it can compute this product: an f32 (or bf16 computed in f32:
/// [`super::products_in_f32`]) row-major (or, where the runtime has its vector transforms,
/// NHWC) ungrouped 3×3 convolution, stride 1, no dilation, with filters
/// that are a constant node (transformed at compile time; a value merely computable from
/// constants, as in unoptimized IR, is not one), on a target with the runtime's kernels.
/// F(2×2) only for NHWC images (the row-major kernel has F(4×4)'s transforms alone).
pub(crate) fn applies(tile: Tile, product: &Product, operands: &Operands, target: &CpuTarget) -> bool {
    let types = &operands.types;
    let Product::Conv2d(c) = product else { return false };
    let f32s = super::products_in_f32(types, target);
    let layout = match types[0].layout {
        Layout::RowMajor => tile == Tile::F4,
        Layout::Nhwc => nhwc_available(),
        Layout::Nchw4c => false,
    };
    target.ukernels && f32s && layout && winograd_shaped(c, types[1]) && operands.constant.get(1) == Some(&true) && operands.weight_is_leaf
}

/// The shape half of [`applies`]: an ungrouped 3×3 convolution, stride 1, no dilation
/// (`filters` is its weight's type).
pub fn winograd_shaped(c: &Conv2d, filters: &TensorType) -> bool {
    c.groups == 1 && c.stride == [1, 1] && c.dilation == [1, 1] && filters.shape.get(2..) == Some(&[3, 3][..])
}

/// Estimated time of the convolution with `tile` (the caller checked that it applies).
pub(crate) fn estimated_ps(tile: Tile, operands: &Operands, out: &TensorType, target: &CpuTarget) -> u64 {
    let t = &operands.types;
    let (images, c, k) = (t[0].shape[0] as u64, t[0].shape[1], out.shape[1]);
    let tiles = tiles(tile, out.shape[2], out.shape[3]);
    let block = block_tiles(tile, out.shape[2], out.shape[3]);
    let nhwc = t[0].layout == Layout::Nhwc;
    // The products are `k × tiles` or `tiles × k`, as the runtime orients them (always the
    // latter in NHWC).
    let (m, n) = if !nhwc && filters_left(k, block) { (k, block) } else { (block, k) };
    let used = tile_use(m, n, target);
    let (per_mac, per_transform, per_filter_byte) = if tile == Tile::F2 {
        (F2_PS_PER_MAC, F2_PS_PER_TILE_TRANSFORM, NHWC_PS_PER_FILTER_BYTE)
    } else if nhwc {
        (NHWC_GEMM_PS_PER_MAC, NHWC_PS_PER_TILE_TRANSFORM, NHWC_PS_PER_FILTER_BYTE)
    } else {
        (GEMM_PS_PER_MAC, PS_PER_TILE_TRANSFORM, PS_PER_FILTER_BYTE)
    };
    let points = tile.points();
    let macs = (points * k * c * tiles) as u64;
    let gemm = macs.saturating_mul(per_mac).saturating_mul(1000) / used;
    let transforms = (((c + k) * tiles) as u64).saturating_mul(per_transform);
    // The transformed filters are read once per block of tiles.
    let filters = ((points * k * c * 4 * tiles.div_ceil(block)) as u64).saturating_mul(per_filter_byte);
    images.saturating_mul(gemm.saturating_add(transforms).saturating_add(filters))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The choices the NHWC constants were fitted to, on ResNet-18's 3×3 layers: F(4×4) from
    /// 56²×64 to 14²×256, F(2×2) at 7²×512, both priced below the NHWC GEMM.
    #[test]
    fn resnet18_layers_price_as_they_measured() {
        let target = CpuTarget::reference();
        for (size, channels, best) in [(56, 64, Tile::F4), (28, 128, Tile::F4), (14, 256, Tile::F4), (7, 512, Tile::F2)] {
            let image = TensorType { layout: Layout::Nhwc, ..TensorType::f32(vec![1, channels, size, size]) };
            let filters = TensorType::f32(vec![channels, channels, 3, 3]);
            let operands = super::super::test_operands(&image, &filters, None);
            let c = Conv2d { stride: [1, 1], padding: [1; 4], dilation: [1, 1], groups: 1 };
            for tile in [Tile::F4, Tile::F2] {
                assert!(nhwc_available() <= applies(tile, &Product::Conv2d(c.clone()), &operands, &target), "{size}²×{channels} {tile:?}");
            }
            let [f4, f2] = [Tile::F4, Tile::F2].map(|tile| estimated_ps(tile, &operands, &image, &target));
            let macs = (9 * channels * channels * size * size) as u64;
            let gemm = super::super::gemm::conv_ps(Kernel::NhwcGemm, macs, true, channels, size * size, &target);
            let (chosen, other) = if best == Tile::F4 { (f4, f2) } else { (f2, f4) };
            assert!(chosen < other && chosen < gemm, "{size}²×{channels}: F4 {f4}, F2 {f2}, GEMM {gemm} ps");
        }
    }

    #[test]
    fn only_stride_one_undilated_3x3_convolutions_of_constant_filters_apply() {
        let target = CpuTarget::reference();
        let image = TensorType::f32(vec![1, 8, 16, 16]);
        let filters = TensorType::f32(vec![8, 8, 3, 3]);
        let operands = super::super::test_operands(&image, &filters, None);
        let conv = |stride, dilation, groups| Product::Conv2d(Conv2d { stride: [stride; 2], padding: [1; 4], dilation: [dilation; 2], groups });
        assert!(applies(Tile::F4, &conv(1, 1, 1), &operands, &target));
        // Row-major images have F(4×4)'s transforms only.
        assert!(!applies(Tile::F2, &conv(1, 1, 1), &operands, &target));
        for product in [conv(2, 1, 1), conv(1, 2, 1), conv(1, 1, 2)] {
            assert!(!applies(Tile::F4, &product, &operands, &target));
        }
        let computed = crate::kernel_plan::Operands { weight_is_leaf: false, ..super::super::test_operands(&image, &filters, None) };
        assert!(!applies(Tile::F4, &conv(1, 1, 1), &computed, &target), "filters computed from constants are not transformed at compile time");
        let five = TensorType::f32(vec![8, 8, 5, 5]);
        assert!(!applies(Tile::F4, &conv(1, 1, 1), &super::super::test_operands(&image, &five, None), &target));
    }
}
