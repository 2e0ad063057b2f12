//! The cost model that ranks kernels whose speed depends on the layout (convolutions and
//! pooling), in picoseconds measured on this code generator.

use super::*;

// The cost model, in picoseconds, measured on this code generator (BENCHMARKS.md,
// "Layouts"). Only what differs between layouts is priced.
/// One multiply-accumulate of a depthwise convolution, row-major and in a channel-vector
/// layout.
const DEPTHWISE_PS_PER_MAC_NCHW: u64 = 600;
const DEPTHWISE_PS_PER_MAC_VECTOR: u64 = 100;
/// The same in NHWC through the runtime's full-width kernel (`gemm::depthwise`; 54–59 ps on
/// MobileNetV2's 112²×32 and 56²×144 layers).
const DEPTHWISE_PS_PER_MAC_RUNTIME: u64 = 57;
/// One multiply-accumulate of a dense convolution through the GEMM microkernels when every
/// register tile is full: NHWC patches are runs of channels, cheaper to gather than NCHW's
/// (1×1 convolutions gather nothing). Divided by the tile utilization: NCHW multiplies
/// `[filters × pixels]`, NHWC `[pixels × filters]`, so few filters waste most of a tile
/// in one layout and little in the other.
const GEMM_CONV_PS_PER_MAC_NCHW: u64 = 32;
const GEMM_CONV_PS_PER_MAC_NHWC: u64 = 29;
const GEMM_POINTWISE_PS_PER_MAC: u64 = 29;
/// One multiply-accumulate of the runtime's direct kernel for few input channels
/// (`conv_direct`), divided by the lanes its rows fill: LeNet-5's first layer (1 channel,
/// 5×5, 6 filters, 28² out, 28 of every 32 lanes) took 3.4 µs with its bias and ReLU, 29 ps a
/// multiply-add.
const DIRECT_ROWS_PS_PER_MAC: u64 = 25;
/// One multiply-accumulate of a dense convolution without microkernels, row-major (direct
/// loops) and NCHW4c (register-blocked).
const DIRECT_CONV_PS_PER_MAC_NCHW: u64 = 640;
const DIRECT_CONV_PS_PER_MAC_NCHW4C: u64 = 100;
/// One window tap of one output of a pooling, row-major (scalar) and vectorized.
const POOL_PS_PER_TAP_NCHW: u64 = 1430;
const POOL_PS_PER_TAP_VECTOR: u64 = 440;
/// The same in NHWC f32 through the runtime's full-width kernel (`gemm::pool`, microkernels
/// on): ResNet-18's stem pooling (112²×64, 3×3, stride 2) in the network, its input fresh
/// from the convolution.
const POOL_PS_PER_TAP_RUNTIME: u64 = 85;

/// One multiply-accumulate of a dense layer through the GEMM and as dot products.
const GEMM_DENSE_PS_PER_MAC: u64 = 21;
const DOT_PS_PER_MAC: u64 = 87;
/// The same through the runtime's full-width dot products (`gemm::gemv`, microkernels on):
/// the MLP's 784→512 layer at batch 1.
const DOT_PS_PER_MAC_RUNTIME: u64 = 50;
/// The sparse kernels (`nnc_runtime::gemm::sparse`), measured on ResNet-18's convolutions,
/// the transformer's and the MLP's dense layers at 50–90% sparsity (BENCHMARKS.md,
/// "Pruning"): each nonzero weight costs a fixed part per pass over B (its row of B comes
/// from L2 or beyond) plus one multiply-accumulate per column it is broadcast over; with few
/// columns each nonzero is one gathered multiply-accumulate; unfolding (im2col) and
/// transposing cost per element moved.
const SPARSE_PS_PER_NONZERO: u64 = 2000;
const SPARSE_PS_PER_MAC: u64 = 40;
const SPARSE_GATHER_PS_PER_MAC: u64 = 265;
const SPARSE_PS_PER_MOVED: u64 = 250;

/// Winograd F(4×4, 3×3) (`nnc_runtime::gemm::winograd`), fitted to ResNet-18's stride-1 3×3
/// convolutions at 56², 28², 14² and 7² (BENCHMARKS.md): each tile of each input channel
/// transformed in and of each filter transformed out, the 36 products at the GEMM's rate
/// over its tile utilization, and the transformed filters (four times the filters' bytes)
/// streamed once per image, which is what makes 7×7 layers with 512 channels lose.
const WINOGRAD_PS_PER_TILE_TRANSFORM: u64 = 46_000;
const WINOGRAD_GEMM_PS_PER_MAC: u64 = 28;
const WINOGRAD_PS_PER_FILTER_BYTE: u64 = 60;
/// The same for NHWC images (`winograd::conv3x3_nhwc`: transforms on vectors of channels,
/// the products reading the transformed tiles in place), fitted to ResNet-18's shapes
/// (56²×64, 28²×128, 14²×256, 7²×512: 0.65, 0.63, 0.73 and 1.9 ms on one thread, against
/// 2.4, 2.3, 2.3 and 2.6 ms by the GEMM). The filter bytes are priced above what one layer
/// alone measures (30 ps): in a whole network the transformed filters, four times the
/// filters, come from memory, and with two threads a 7²×512 layer is bandwidth-bound
/// (2.0 ms against the GEMM's 1.4), besides costing 38 MB and 30 ms of compile time.
const WINOGRAD_NHWC_PS_PER_TILE_TRANSFORM: u64 = 2_000;
const WINOGRAD_NHWC_GEMM_PS_PER_MAC: u64 = 18;
const WINOGRAD_NHWC_PS_PER_FILTER_BYTE: u64 = 85;
/// The same for F(2×2, 3×3) (NHWC only). Its transforms write and read 16 values per tile
/// and channel against F(4×4)'s 36, but each output takes 4 products per input channel
/// against 2.25, and its tiles cover a quarter of the outputs. Fitted in ResNet-18 (one
/// thread): its 7²×512 layers take F(2×2) (1.33–1.73 ms against 2.26–2.31 by the GEMM; on
/// two threads 0.78–0.98 against 1.23–1.29), its 14²×256 ones keep F(4×4) (0.93–0.99 ms
/// against 1.02–1.05 by F(2×2)), and larger images keep it by far.
const WINOGRAD_F2_PS_PER_TILE_TRANSFORM: u64 = 1_000;
const WINOGRAD_F2_PS_PER_MAC: u64 = 21;

/// Utilization of the GEMM's `mr × nr` register tiles over an `m × n` product, in
/// thousandths (at least 1).
fn tile_use(m: usize, n: usize, target: &CpuTarget) -> u64 {
    (1000 * m * n / (m.next_multiple_of(target.mr) * n.next_multiple_of(target.nr_for(n)))).max(1) as u64
}

/// Estimated time of a Winograd convolution with `tile` (the caller checked that it applies).
fn winograd_ps(tile: nnc_runtime::gemm::winograd::Tile, operands: &Operands, out: &TensorType, target: &CpuTarget) -> u64 {
    let t = &operands.types;
    let (images, c, k) = (t[0].shape[0] as u64, t[0].shape[1], out.shape[1]);
    let tiles = nnc_runtime::gemm::winograd::tiles(tile, out.shape[2], out.shape[3]);
    let block = nnc_runtime::gemm::winograd::block_tiles(tile, out.shape[2], out.shape[3]);
    let nhwc = t[0].layout == Layout::Nhwc;
    // The products are `k × tiles` or `tiles × k`, as the runtime orients them (always the
    // latter in NHWC).
    let (m, n) = if !nhwc && nnc_runtime::gemm::winograd::filters_left(k, block) { (k, block) } else { (block, k) };
    let used = tile_use(m, n, target);
    let (per_mac, per_transform, per_filter_byte) = if tile == nnc_runtime::gemm::winograd::Tile::F2 {
        (WINOGRAD_F2_PS_PER_MAC, WINOGRAD_F2_PS_PER_TILE_TRANSFORM, WINOGRAD_NHWC_PS_PER_FILTER_BYTE)
    } else if nhwc {
        (WINOGRAD_NHWC_GEMM_PS_PER_MAC, WINOGRAD_NHWC_PS_PER_TILE_TRANSFORM, WINOGRAD_NHWC_PS_PER_FILTER_BYTE)
    } else {
        (WINOGRAD_GEMM_PS_PER_MAC, WINOGRAD_PS_PER_TILE_TRANSFORM, WINOGRAD_PS_PER_FILTER_BYTE)
    };
    let points = tile.points();
    let macs = (points * k * c * tiles) as u64;
    let gemm = macs.saturating_mul(per_mac).saturating_mul(1000) / used;
    let transforms = (((c + k) * tiles) as u64).saturating_mul(per_transform);
    // The transformed filters are read once per block of tiles.
    let filters = ((points * k * c * 4 * tiles.div_ceil(block)) as u64).saturating_mul(per_filter_byte);
    images.saturating_mul(gemm.saturating_add(transforms).saturating_add(filters))
}

/// Estimated run time of `op` with `kernel`, in picoseconds, for the ops whose speed depends
/// on their layout (convolutions and pooling) or on their weights' sparsity (products whose
/// sparse kernel competes with the dense ones); 0 for the rest.
pub fn estimated_ps(kernel: Kernel, op: &Op, operands: &Operands, out: &TensorType, target: &CpuTarget) -> u64 {
    let types = &operands.types[..];
    if let Some(tile) = kernel.winograd_tile() {
        return winograd_ps(tile, operands, out, target);
    }
    if kernel == Kernel::Sparse || matches!(op.product(), Some(Product::Dense(_))) {
        return product_ps(kernel, op, operands, out, target);
    }
    if let Op::Pool(p) = op {
        let taps = (out.numel() * p.kernel[0] * p.kernel[1]) as u64;
        let runtime = target.ukernels && out.layout == Layout::Nhwc && out.dtype == nnc_runtime::DType::F32;
        let ps = match kernel {
            Kernel::ChannelVector if runtime => POOL_PS_PER_TAP_RUNTIME,
            Kernel::ChannelVector => POOL_PS_PER_TAP_VECTOR,
            _ => POOL_PS_PER_TAP_NCHW,
        };
        return taps.saturating_mul(ps);
    }
    let Some((Product::Conv2d(c), t)) = product_operands(op, types) else { return 0 };
    let macs = Product::Conv2d(c.clone()).macs(&t, out);
    let per = |ps: u64| macs.saturating_mul(ps);
    if c.groups > 1 {
        return per(match kernel {
            Kernel::VectorDepthwise if target.ukernels && t[0].layout == Layout::Nhwc => DEPTHWISE_PS_PER_MAC_RUNTIME,
            Kernel::VectorDepthwise => DEPTHWISE_PS_PER_MAC_VECTOR,
            _ => DEPTHWISE_PS_PER_MAC_NCHW,
        });
    }
    let (filters, pixels) = (t[1].shape[0], out.shape[2] * out.shape[3]);
    let used = |m: usize, n: usize| tile_use(m, n, target);
    let windowed = taps(&t) > 1;
    let gemm = |ps: u64, used: u64| macs.saturating_mul(ps).saturating_mul(1000) / used;
    match kernel {
        Kernel::DirectRows => {
            let ow = out.shape[3];
            let lanes = nnc_runtime::gemm::conv_direct::lanes();
            let block = if ow > lanes { 2 * lanes } else { lanes };
            let used = (1000 * ow / ow.next_multiple_of(block).max(1)).max(1) as u64;
            gemm(DIRECT_ROWS_PS_PER_MAC, used)
        }
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
        | Kernel::Sparse
        | Kernel::Winograd
        | Kernel::WinogradF2
        | Kernel::Reference => per(DIRECT_CONV_PS_PER_MAC_NCHW),
    }
}

/// A dense layer's or a sparse product's estimated time: the multiply-accumulates each
/// kernel does (only the nonzero weights' for [`Kernel::Sparse`]) and what it moves.
fn product_ps(kernel: Kernel, op: &Op, operands: &Operands, out: &TensorType, target: &CpuTarget) -> u64 {
    let Some((product, t)) = product_operands(op, &operands.types) else { return 0 };
    let macs = product.macs(&t, out);
    let density = operands.weight_density.unwrap_or(1.0);
    let nonzero_macs = (macs as f64 * density) as u64;
    let nonzeros = (t[1].numel() as f64 * density) as u64;
    // Each nonzero broadcast over `columns` of B: a fixed part and its multiply-adds.
    let broadcast = |columns: usize| nonzeros.saturating_mul(SPARSE_PS_PER_NONZERO + columns as u64 * SPARSE_PS_PER_MAC);
    match (kernel, &product) {
        (Kernel::Sparse, Product::Conv2d(c)) => {
            let (images, pixels) = (t[0].shape[0] as u64, out.shape[2] * out.shape[3]);
            let unfolded = if conv_is_pointwise(c, &t) { 0 } else { (reduction(&t) * pixels) as u64 };
            images.saturating_mul(broadcast(pixels).saturating_add(unfolded.saturating_mul(SPARSE_PS_PER_MOVED)))
        }
        (Kernel::Sparse, _) => {
            let (units, features) = (t[1].shape[0], t[1].shape[1]);
            let rows = t[0].numel() / features;
            if rows <= nnc_runtime::gemm::sparse::GATHER_MAX_COLUMNS {
                nonzero_macs.saturating_mul(SPARSE_GATHER_PS_PER_MAC)
            } else {
                let moved = ((features + 2 * units) * rows) as u64;
                broadcast(rows).saturating_add(moved.saturating_mul(SPARSE_PS_PER_MOVED))
            }
        }
        (Kernel::Gemm, _) => macs.saturating_mul(GEMM_DENSE_PS_PER_MAC),
        (Kernel::Dot, _) => macs.saturating_mul(if target.ukernels { DOT_PS_PER_MAC_RUNTIME } else { DOT_PS_PER_MAC }),
        // A dense layer has no other float kernel; int8 and reference ones are not priced.
        (
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
            | Kernel::Reference,
            _,
        ) => 0,
    }
}
