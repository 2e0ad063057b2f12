//! Weights repacked once, at compile time, in the order their kernels read them, as the
//! kernel plan asks (`Prepack`): GEMM panels of A for row-major convolutions through the
//! GEMM, of B (the weight's transpose) for dense layers through it, blocks of units for
//! dense layers as dot products; for channel-vector convolutions, GEMM panels of B (NHWC), the depthwise
//! `[tap][channel]` order or NCHW4c filter blocks; an LSTM's transposed weights; and int8
//! weights as the integer GEMM's panels; pruned weights as compressed sparse rows; Winograd
//! convolutions' filters transformed.

use super::memplan::{Loc, MemoryPlan};
use crate::ir::{Graph, NodeId};
use crate::kernel_plan::{Kernel, KernelPlan, Prepack};
use crate::ops::Op;
use crate::target::Tile;
use std::collections::HashMap;

use nnc_runtime::floats::Floats;

/// Packs the weights of every node whose plan asks for it, reading the constants' values
/// from `consts` (in `Loc::Const` order). Returns each packing node's buffers (one per
/// convolution group), in schedule order.
pub fn prepack_weights(graph: &Graph, plans: &HashMap<NodeId, KernelPlan>, plan: &MemoryPlan, consts: &[&[f32]]) -> Vec<(NodeId, Vec<Floats>)> {
    use rayon::prelude::*;
    // Nodes pack independently (Winograd's filter transforms take milliseconds each), so on
    // all cores; the buffers come back in schedule order, so the result does not depend on
    // the thread count.
    let order = graph.topo_order();
    order.par_iter().filter_map(|&id| plans.get(&id).and_then(|kp| pack_node(graph, id, kp, plan, consts)).map(|b| (id, b))).collect()
}

/// The packed buffers of node `id` as its plan asks, or `None` when it packs nothing.
fn pack_node(graph: &Graph, id: NodeId, kp: &KernelPlan, plan: &MemoryPlan, consts: &[&[f32]]) -> Option<Vec<Floats>> {
    let operands = graph.operands(id);
    let const_at = |i: usize| match plan.locs.get(&operands[i]).copied() {
        Some(Loc::Const(c)) => Some(c),
        _ => None,
    };
    let mut buffers: Vec<Floats> = Vec::new();
    // A requantizing int8 product's per-channel scales, after its weights.
    let scale_table = match graph.node(id).op() {
        Some(Op::Fused(crate::ops::fused::Fused { requantize: Some(rq), .. })) => Some(rq.scales.per_channel(graph.node(id).ty.shape[rq.scales.axis])),
        _ => None,
    };
    match kp.prepack {
        // Made by `jit::compile` once the constants' addresses are final.
        Prepack::ReferenceNode => return None,
        Prepack::Nothing if scale_table.is_none() => return None,
        Prepack::Nothing => {}
        Prepack::LstmWeights => {
            let Op::Lstm(l) = graph.node(id).op().expect("an lstm") else { unreachable!("only lstm plans pack lstm weights") };
            let at: Option<Vec<usize>> = (1..operands.len()).map(const_at).collect();
            let at = at.expect("the plan packs lstm weights only when they are constant");
            let biases = (at.len() == 4).then(|| (consts[at[2]], consts[at[3]]));
            buffers.extend(lstm_weights(consts[at[0]], consts[at[1]], biases, 4 * l.hidden).map(|v| Floats::lines_copy_of(&v)));
        }
        Prepack::ChannelWeights => {
            let w = const_at(1).expect("the plan packs weights only when they are constant");
            let ws = &graph.node(operands[1]).ty.shape;
            buffers.extend(channel_weights(kp.kernel, consts[w], ws, kp.tile, kp.bf16));
        }
        Prepack::ScaleTable => {
            let node = graph.node(id);
            let scales = if let Some(Op::Dequantize(d)) = node.op() {
                &d.scales
            } else if let Some(Op::Requantize(r)) = node.op() {
                &r.scales
            } else {
                unreachable!("only dequantize and requantize plan scale tables")
            };
            buffers.push(Floats::lines_copy_of(&scales.per_channel(graph.node(operands[0]).ty.shape[scales.axis])));
        }
        Prepack::Int8Weights => {
            let w = const_at(1).expect("the plan packs weights only when they are constant");
            buffers.extend(int8_weights(graph.node(id).op().and_then(|op| op.product()).expect("int8 weights belong to products"), consts[w], &graph.node(operands[1]).ty.shape));
        }
        Prepack::GemmB => {
            let w = const_at(1).expect("the plan packs weights only when they are constant");
            let ws = &graph.node(operands[1]).ty.shape;
            let (units, features) = (ws[0], ws[1]);
            let blk = nnc_runtime::gemm::Blocking { kc: kp.tile.kc, mc: kp.tile.mc, nc: kp.tile.nc };
            use nnc_runtime::gemm::{pack_b_all, pack_b_all_bf16, packed_b_bf16_len, packed_b_len};
            let mut buf = Floats::zeroed_lines(if kp.bf16 { packed_b_bf16_len(features, units, blk) } else { packed_b_len(features, units, blk) });
            // SAFETY: the weight holds `units × features` floats; B = Wᵀ reads `w[j, p]` at
            // row stride 1 and column stride `features`; `buf` has room for the packing.
            unsafe {
                if kp.bf16 {
                    pack_b_all_bf16(features, units, consts[w].as_ptr(), 1, features as isize, blk, &mut buf)
                } else {
                    pack_b_all(features, units, consts[w].as_ptr(), 1, features as isize, blk, &mut buf)
                }
            }
            buffers.push(buf);
        }
        Prepack::GemvBlocks => {
            let w = const_at(1).expect("the plan packs weights only when they are constant");
            let ws = &graph.node(operands[1]).ty.shape;
            buffers.push(Floats::lines_copy_of(&nnc_runtime::gemm::gemv::pack_blocked(ws[0], ws[1], consts[w])));
        }
        Prepack::SparseRows => {
            let w = const_at(1).expect("the plan packs weights only when they are constant");
            let ws = &graph.node(operands[1]).ty.shape;
            // A convolution's `[F, C, kh, kw]` (ungrouped) or a dense layer's
            // `[units, features]`, both row-major rows of the product's A.
            let rows = ws[0];
            buffers.push(Floats::lines_copy_of(&nnc_runtime::gemm::sparse::encode_csr(rows, ws[1..].iter().product(), consts[w])));
        }
        Prepack::WinogradFilters => {
            let w = const_at(1).expect("the plan transforms filters only when they are constant");
            let ws = &graph.node(operands[1]).ty.shape;
            let out = &graph.node(id).ty.shape;
            // NHWC images multiply the filters as the right operand, always.
            let winograd_tile = kp.kernel.winograd_tile().expect("Winograd filters belong to a Winograd kernel");
            buffers.push(if graph.node(operands[0]).ty.layout == crate::ir::Layout::Nhwc {
                use nnc_runtime::gemm::winograd::{transform_filters_nhwc_into, transformed_filters_nhwc_len};
                let mut filters = Floats::zeroed_lines(transformed_filters_nhwc_len(ws[0], ws[1], winograd_tile));
                transform_filters_nhwc_into(consts[w], ws[0], ws[1], winograd_tile, &mut filters);
                filters
            } else {
                debug_assert_eq!(winograd_tile, nnc_runtime::gemm::winograd::Tile::F4, "row-major Winograd is F(4×4) only");
                Floats::lines_copy_of(&nnc_runtime::gemm::winograd::transform_filters(consts[w], ws[0], ws[1], out[2], out[3]))
            });
        }
        Prepack::GemmA => {
            let w = const_at(1).expect("the plan packs weights only when they are constant");
            let groups = match graph.node(id).op().and_then(|op| op.product()).expect("GemmA plans are products") {
                crate::ops::Product::Conv2d(c) => c.groups,
                crate::ops::Product::Dense(_) | crate::ops::Product::MatMul(_) => unreachable!("only convolutions pack A panels (KernelPlan::new)"),
            };
            let ws = &graph.node(operands[1]).ty.shape;
            let (fg, kk) = (ws[0] / groups, ws[1] * ws[2] * ws[3]);
            let blk = nnc_runtime::gemm::Blocking { kc: kp.tile.kc, mc: kp.tile.mc, nc: kp.tile.nc };
            for g in 0..groups {
                let weights = consts[w][g * fg * kk..].as_ptr();
                let buf = if kp.bf16 {
                    let mut buf = Floats::zeroed_lines(nnc_runtime::gemm::packed_a_bf16_len(fg, kk, blk));
                    // SAFETY: the weight buffer holds `groups·fg × kk` floats, row-major.
                    unsafe { nnc_runtime::gemm::pack_a_all_bf16(fg, kk, weights, kk as isize, 1, blk, &mut buf) };
                    buf
                } else {
                    let mut buf = Floats::zeroed_lines(nnc_runtime::gemm::packed_a_len(fg, kk, blk));
                    // SAFETY: as above.
                    unsafe { nnc_runtime::gemm::pack_a_all(fg, kk, weights, kk as isize, 1, blk, &mut buf) };
                    buf
                };
                buffers.push(buf);
            }
        }
    }
    buffers.extend(scale_table.map(|v| Floats::lines_copy_of(&v)));
    Some(buffers)
}

/// Constant weights `[F, C/groups, kh, kw]` (row-major) in the order a kernel reads them:
/// `[kh·kw][C]` for the vector depthwise kernel (a tap's weights for consecutive channels side by
/// side), packed GEMM panels of `W[(ky·kw + kx)·C + c][f]` for the NHWC GEMM, and
/// `[F/4][C][kh][kw][4]` for the NCHW4c blocked kernel (four filters' weights for one input channel
/// and tap side by side). `bf16`: the NHWC GEMM's panels in the bf16 kernel's pairs.
fn channel_weights(kernel: Kernel, w: &[f32], wshape: &[usize], tile: Tile, bf16: bool) -> Option<Floats> {
    let [f, cg, kh, kw] = wshape[..] else { return None };
    let taps = kh * kw;
    match kernel {
        Kernel::VectorDepthwise => {
            let mut out = Floats::zeroed_lines(taps * f);
            for ch in 0..f {
                for t in 0..taps {
                    out[t * f + ch] = w[ch * taps + t];
                }
            }
            Some(out)
        }
        Kernel::NhwcGemm => {
            let k = cg * taps;
            // A transpose, by blocks of 16 filters: their 16 weight rows stay in cache while
            // each is read once, and each written row of B gets a whole cache line at a time.
            let mut b = vec![0.0; k * f];
            for block in (0..f).step_by(16) {
                let filters = block..(block + 16).min(f);
                for t in 0..taps {
                    for ch in 0..cg {
                        let row = (t * cg + ch) * f;
                        for oc in filters.clone() {
                            b[row + oc] = w[(oc * cg + ch) * taps + t];
                        }
                    }
                }
            }
            let blk = nnc_runtime::gemm::Blocking { kc: tile.kc, mc: tile.mc, nc: tile.nc };
            use nnc_runtime::gemm::{pack_b_all, pack_b_all_bf16, packed_b_bf16_len, packed_b_len};
            let mut packed = Floats::zeroed_lines(if bf16 { packed_b_bf16_len(k, f, blk) } else { packed_b_len(k, f, blk) });
            // SAFETY: `b` holds the `k × f` row-major matrix; `packed` has room for its packing.
            unsafe {
                if bf16 {
                    pack_b_all_bf16(k, f, b.as_ptr(), f as isize, 1, blk, &mut packed)
                } else {
                    pack_b_all(k, f, b.as_ptr(), f as isize, 1, blk, &mut packed)
                }
            }
            Some(packed)
        }
        Kernel::Nchw4cBlocked => {
            let mut out = Floats::zeroed_lines(f * cg * taps);
            for oc in 0..f {
                for ch in 0..cg {
                    for t in 0..taps {
                        out[((oc / 4 * cg + ch) * taps + t) * 4 + oc % 4] = w[(oc * cg + ch) * taps + t];
                    }
                }
            }
            Some(out)
        }
        _ => None,
    }
}

/// `W_ihᵀ` (`[I][4H]`), `W_hhᵀ` (`[H][4H]`) and `b_ih + b_hh` (`[4H]`, zeros without
/// biases), from the row-major `W_ih [4H, I]`, `W_hh [4H, H]` and biases.
fn lstm_weights(w_ih: &[f32], w_hh: &[f32], biases: Option<(&[f32], &[f32])>, four_h: usize) -> [Vec<f32>; 3] {
    let transpose = |w: &[f32]| {
        let cols = w.len() / four_h;
        let mut t = vec![0.0; w.len()];
        for r in 0..four_h {
            for c in 0..cols {
                t[c * four_h + r] = w[r * cols + c];
            }
        }
        t
    };
    let bias = match biases {
        Some((a, b)) => a.iter().zip(b).map(|(x, y)| x + y).collect(),
        None => vec![0.0; four_h],
    };
    [transpose(w_ih), transpose(w_hh), bias]
}

/// Int8 weights (stored as bytes in the constant's words) packed for the integer GEMM: a
/// convolution's `[F, C/groups, kh, kw]` as each group's A panels (`W_g: F/groups × K`), a
/// dense layer's `[units, features]` as the B panels of its transpose, a matmul's `[k, n]`
/// as B panels. Each buffer is f32 words holding the packed bytes.
fn int8_weights(product: crate::ops::Product, w: &[f32], shape: &[usize]) -> Vec<Floats> {
    use nnc_runtime::gemm::int8::{pack_a_i8_all, pack_b_i8_all, packed_a_i8_len, packed_b_i8_len};
    let codes = w.as_ptr() as *const i8;
    let words = |bytes: usize| Floats::zeroed_lines(bytes.div_ceil(4));
    match product {
        crate::ops::Product::Conv2d(c) => {
            let (fg, kk) = (shape[0] / c.groups, shape[1] * shape[2] * shape[3]);
            (0..c.groups)
                .map(|g| {
                    let mut buf = words(packed_a_i8_len(fg, kk));
                    // SAFETY: the constant holds `F·K` codes, row-major; group `g`'s rows
                    // start at `g·fg·K`; the buffer has room for the packing.
                    unsafe { pack_a_i8_all(fg, kk, codes.add(g * fg * kk), kk as isize, 1, as_bytes_mut(&mut buf)) };
                    buf
                })
                .collect()
        }
        crate::ops::Product::Dense(_) => {
            let (units, features) = (shape[0], shape[1]);
            let mut buf = words(packed_b_i8_len(features, units));
            // SAFETY: the constant holds `units × features` codes; B = Wᵀ reads `w[j, p]`.
            unsafe { pack_b_i8_all(features, units, codes, 1, features as isize, as_bytes_mut(&mut buf)) };
            vec![buf]
        }
        crate::ops::Product::MatMul(_) => {
            let (k, n) = (shape[0], shape[1]);
            let mut buf = words(packed_b_i8_len(k, n));
            // SAFETY: the constant holds the `k × n` codes, row-major.
            unsafe { pack_b_i8_all(k, n, codes, n as isize, 1, as_bytes_mut(&mut buf)) };
            vec![buf]
        }
    }
}

/// The bytes of a word buffer (the constants are stored as f32 words, whatever they hold).
fn as_bytes_mut(words: &mut [f32]) -> &mut [u8] {
    // SAFETY: the bytes are the words' own, u8 has no alignment and every bit pattern is a
    // valid f32 and u8; the borrow keeps `words` exclusively ours.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, std::mem::size_of_val(words)) }
}
