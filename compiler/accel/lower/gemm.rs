//! Mapping products onto the array: each convolution (per image and group), dense layer or
//! matmul batch becomes GEMM instances, with weights transposed at compile time and the
//! activation unit's tables written.

use crate::accel::config::ElemType;
use crate::accel::program::*;
use crate::accel::tiling::choose_tiles;
use crate::ir::{NodeId, NodeKind, TensorType};
use crate::ops::quant::Activation;
use crate::ops::Product;
use nnc_runtime::tensor::Data;
use nnc_runtime::Tensor;
use std::collections::HashMap;
use super::schedule::{emit_gemm, ASource, GemmInstance};
use super::scale_table;
use super::Lowering;

/// `epilogue`: the consumers the activation unit takes over (in order) and what it does.
pub(super) fn lower_product(lw: &mut Lowering, id: NodeId, product: &Product, n_anchor: usize, epilogue: Option<(Vec<NodeId>, ActKind)>, absorbed: &mut HashMap<NodeId, NodeId>) -> Result<(), LowerError> {
    let graph = lw.graph;
    let node = graph.node(id);
    let operands: Vec<NodeId> = graph.operands(id)[..n_anchor].to_vec();
    let types: Vec<&TensorType> = operands.iter().map(|&o| &graph.node(o).ty).collect();
    // A fused op whose steps the vector unit finishes rounds once, after them.
    let steps_follow = epilogue.is_none() && matches!(node.op(), Some(crate::ops::Op::Fused(_)));
    let (consumers, mut kind) = epilogue.unwrap_or((Vec::new(), if lw.config.dtype == ElemType::Int8 { ActKind::Raw } else { ActKind::Float(Activation::None) }));
    // The stored value: the last consumer's when the activation unit does their work.
    let out_ty = match consumers.last() {
        Some(&c) => graph.node(c).ty.clone(),
        None => node.ty.clone(),
    };
    let out = lw.alloc_value(id, &out_ty);
    for &c in &consumers {
        absorbed.insert(c, id);
    }
    let in_buf = lw.values[&operands[0]].clone();
    let w_buf = lw.values[&operands[1]].clone();
    let bias_buf = operands.get(2).map(|b| lw.values[b].clone());
    let start = lw.insns.len();
    let macs = product.macs(&types, &node.ty);
    // (m, k, n, instances, channels)
    let (m, k, n, instances, channels) = match product {
        Product::Conv2d(c) => {
            let [batch, ch, h, w] = types[0].shape[..] else { unreachable!("conv input is rank 4") };
            let [f, cg, kh, kw] = types[1].shape[..] else { unreachable!("conv weight is rank 4") };
            let (ho, wo) = (node.ty.shape[2], node.ty.shape[3]);
            let fg = f / c.groups;
            let k = cg * kh * kw;
            // B per group: the weights transposed to [k × fg], written once at compile time.
            let NodeKind::Const(weights) = &graph.node(operands[1]).kind else {
                return Err(LowerError::Internal(format!("`{}`: the array was given a convolution whose weights are computed at run time", node.name)));
            };
            let b_type = w_buf.dram_type();
            let mut b_addrs = Vec::new();
            for g in 0..c.groups {
                b_addrs.push(lw.put((fg * k) as u64 * b_type.bytes(), || transpose_rows(weights, g * fg, fg, k)));
            }
            // One im2col descriptor per group; the image's offset is in each instruction.
            let mut conv_ids = Vec::with_capacity(c.groups);
            for g in 0..c.groups {
                lw.convs.push(ConvDesc {
                    c: ch as u32,
                    h: h as u32,
                    w: w as u32,
                    c0: (g * cg) as u32,
                    cg: cg as u32,
                    kh: kh as u32,
                    kw: kw as u32,
                    stride: [c.stride[0] as u32, c.stride[1] as u32],
                    pad: [c.padding[0] as u32, c.padding[1] as u32],
                    dilation: [c.dilation[0] as u32, c.dilation[1] as u32],
                    wo: wo as u32,
                    src: in_buf.dram_type(),
                });
                conv_ids.push((lw.convs.len() - 1) as u32);
            }
            let mut instances = Vec::new();
            for b in 0..batch {
                for (g, (&b_addr, &conv_id)) in b_addrs.iter().zip(&conv_ids).enumerate() {
                    let out_bytes = out.dram_type().bytes();
                    instances.push(GemmInstance {
                        a: ASource::Im2col { dram: in_buf.addr + (b * ch * h * w) as u64 * in_buf.dram_type().bytes(), conv: conv_id },
                        b: b_addr,
                        b_stride: fg as u32,
                        b_type,
                        c: out.addr + ((b * f + g * fg) * ho * wo) as u64 * out_bytes,
                        c_row_stride: 1,
                        c_col_stride: (ho * wo) as u32,
                        c0: (g * fg) as u32,
                    });
                }
            }
            (ho * wo, k, fg, instances, f)
        }
        Product::Dense(_) => {
            let [units, features] = types[1].shape[..] else { unreachable!("dense weight is rank 2") };
            let rows = types[0].shape.iter().product::<usize>() / features;
            let NodeKind::Const(t) = &graph.node(operands[1]).kind else {
                return Err(LowerError::Internal(format!("`{}`: the array was given a dense layer whose weights are computed at run time", node.name)));
            };
            let b_addr = lw.put((units * features) as u64 * w_buf.dram_type().bytes(), || transpose_rows(t, 0, units, features));
            let instance = GemmInstance {
                a: ASource::Matrix { dram: in_buf.addr, stride: features as u32, dtype: in_buf.dram_type() },
                b: b_addr,
                b_stride: units as u32,
                b_type: w_buf.dram_type(),
                c: out.addr,
                c_row_stride: units as u32,
                c_col_stride: 1,
                c0: 0,
            };
            (rows, features, units, vec![instance], units)
        }
        Product::MatMul(_) => {
            let (batches, m, k, n) = crate::ops::MatMul::dims(&types[0].shape, &types[1].shape);
            let mut instances = Vec::new();
            for bi in 0..batches {
                let (ia, ib) = crate::ops::MatMul::batch_operands(&types[0].shape, &types[1].shape, bi);
                let (ab, bb, ob) = (in_buf.dram_type().bytes(), w_buf.dram_type().bytes(), out.dram_type().bytes());
                instances.push(GemmInstance {
                    a: ASource::Matrix { dram: in_buf.addr + (ia * m * k) as u64 * ab, stride: k as u32, dtype: in_buf.dram_type() },
                    b: w_buf.addr + (ib * k * n) as u64 * bb,
                    b_stride: n as u32,
                    b_type: w_buf.dram_type(),
                    c: out.addr + (bi * m * n) as u64 * ob,
                    c_row_stride: n as u32,
                    c_col_stride: 1,
                    c0: 0,
                });
            }
            (m, k, n, instances, n)
        }
    };
    // The activation unit's tables.
    let bias = bias_buf.map(|b| b.addr);
    // The table is the absorbed consumer's, or a requantizing fused op's own.
    if let (Some(&c), ActKind::Requantize { scales, .. } | ActKind::Dequantize { scales, .. }) = (consumers.first().or(Some(&id)), &mut kind) {
        *scales = lw.put(channels as u64 * 4, || scale_table(graph, c, channels));
    }
    lw.acts.push(ActDesc { bias, kind, rounds_to: if steps_follow { nnc_runtime::DType::F32 } else { out.dtype } });
    let act = (lw.acts.len() - 1) as u32;
    let tiles = choose_tiles(lw.config, m, k, n);
    if !crate::accel::tiling::tile_fits(lw.config, tiles) {
        return Err(LowerError::Internal(format!("`{}`: tile {tiles:?} does not fit the memories", node.name)));
    }
    let zeros = if lw.config.skip_zero_weights { ZeroBlocks::of(graph, product, &operands, k, n) } else { None };
    let skipped = emit_gemm(lw, &node.name, [m, k, n], &tiles, &instances, act, zeros.as_ref())?;
    let name = node.name.clone();
    let mut label = node.op().map(|o| o.label()).unwrap_or_default();
    for &c in &consumers {
        label = format!("{label}+{}", graph.node(c).op().map(|o| o.name()).unwrap_or_default());
    }
    lw.layers.push(Layer { name, op: label, unit: Unit::Array, start, end: lw.insns.len(), macs, tiles: Some(tiles), skipped_folds: skipped.folds, skipped_macs: skipped.macs, skipped_tiles: skipped.tiles });
    lw.fence();
    Ok(())
}

/// Which blocks of each GEMM instance's B (`k × n`) hold only zeros, read from the weight
/// constant itself, so the lowering with and without a DRAM image decides alike. A block is
/// scanned when asked about and the scan stops at the first nonzero weight, so dense weights
/// cost about one read per fold; only blocks that are really zero are read whole.
pub(super) struct ZeroBlocks<'g> {
    weights: Weights<'g>,
    k: usize,
    n: usize,
    groups: usize,
}

enum Weights<'g> {
    F32(&'g [f32]),
    I8(&'g [i8]),
}

impl<'g> ZeroBlocks<'g> {
    fn of(graph: &'g crate::ir::Graph, product: &Product, operands: &[NodeId], k: usize, n: usize) -> Option<ZeroBlocks<'g>> {
        let NodeKind::Const(w) = &graph.node(operands[1]).kind else { return None };
        // Dense layers and convolutions store B transposed, W[group·n + column][k].
        let groups = match product {
            Product::Conv2d(c) => c.groups,
            Product::Dense(_) => 1,
            // A matmul's B is a computed value or a constant stored as B itself.
            Product::MatMul(_) => return None,
        };
        let weights = match w.data() {
            Data::F32(v) => Weights::F32(v),
            Data::I8(v) => Weights::I8(v),
            Data::I32(_) => return None,
        };
        Some(ZeroBlocks { weights, k, n, groups })
    }

    /// Whether B's rows `k0..k0+kf` and columns `n0..n0+nf` are all zero for `instance`.
    pub(super) fn is_zero(&self, instance: usize, k0: usize, kf: usize, n0: usize, nf: usize) -> bool {
        let g = instance % self.groups;
        (n0..n0 + nf).all(|column| {
            let at = (g * self.n + column) * self.k + k0;
            match self.weights {
                Weights::F32(w) => w[at..at + kf].iter().all(|&x| x == 0.0),
                Weights::I8(w) => w[at..at + kf].iter().all(|&x| x == 0),
            }
        })
    }
}

/// Rows `r0..r0+rows` of a row-major `[_, cols]` constant, transposed to `[cols × rows]`.
pub(super) fn transpose_rows(t: &Tensor, r0: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * cols * 4);
    match t.data() {
        Data::I8(v) => {
            for c in 0..cols {
                out.extend((0..rows).map(|r| v[(r0 + r) * cols + c] as u8));
            }
        }
        Data::F32(v) => {
            for c in 0..cols {
                for r in 0..rows {
                    out.extend_from_slice(&v[(r0 + r) * cols + c].to_le_bytes());
                }
            }
        }
        Data::I32(v) => {
            for c in 0..cols {
                for r in 0..rows {
                    out.extend_from_slice(&v[(r0 + r) * cols + c].to_le_bytes());
                }
            }
        }
    }
    out
}
