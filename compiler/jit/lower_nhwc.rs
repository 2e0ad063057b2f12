//! Channels-last (NHWC) kernels: convolutions, global average pooling and the layout
//! conversions that `select-layouts` inserts.
//!
//! Channels-last puts a pixel's channels side by side, so `f32x4` vectors run along channels:
//! a depthwise convolution becomes vector FMAs with no shuffles and no strided access, and a
//! dense convolution a matrix product `out[pixels, filters] = patches[pixels, taps·C] ·
//! W[taps·C, filters]` whose patches are contiguous runs of C floats.
//!
//! Weights stay row-major in the IR; the JIT repacks constant ones at compile time
//! ([`pack_weights`]) into the order these kernels read. A convolution whose weights are
//! computed at run time has no repacked copy and takes the direct kernel.

use super::kernel::{Kernel, RuntimeFns, F32, F32X4, LANES};
use super::lower::{apply_in_place, conv_is_pointwise, conv_uses_gemm, Arg, Epilogue};
use super::memplan::Loc;
use crate::ir::{Layout, TensorType};
use crate::ops::Conv2d;
use crate::target::Tile;
use cranelift_codegen::ir::{InstBuilder, Type, Value};

/// Taps up to which the depthwise kernel unrolls its window; larger windows take the direct
/// kernel.
const MAX_DEPTHWISE_TAPS: usize = 49;

/// Output pixels the depthwise kernel computes at once along a row: each weight vector it
/// loads serves four FMAs.
const PIXEL_TILE: i64 = 4;

/// How the JIT runs a channels-last convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NhwcConv {
    /// One filter per channel: vector FMAs along channels, the window unrolled.
    Depthwise,
    /// A matrix product through the runtime GEMM, weights packed at compile time.
    Gemm,
    /// Scalar loops, for what the others do not cover.
    Direct,
}

pub fn nhwc_conv_kind(c: &Conv2d, operands: &[&TensorType], ukernels: bool) -> NhwcConv {
    let w = &operands[1].shape;
    if c.groups > 1 {
        // The layout rule admits only depthwise convolutions with groups > 1.
        if w[2] * w[3] <= MAX_DEPTHWISE_TAPS { NhwcConv::Depthwise } else { NhwcConv::Direct }
    } else if ukernels && conv_uses_gemm(operands, true) {
        NhwcConv::Gemm
    } else {
        NhwcConv::Direct
    }
}

/// The shape `[m, n, k]` of a channels-last convolution's matrix product.
pub fn gemm_shape(operands: &[&TensorType], out: &TensorType) -> [usize; 3] {
    let w = &operands[1].shape;
    [out.shape[2] * out.shape[3], w[0], w[1] * w[2] * w[3]]
}

/// Floats of scratch a channels-last convolution needs: the unfolded patches, unless the
/// input already is the patch matrix (1×1, stride 1, no padding).
pub fn scratch_floats(c: &Conv2d, operands: &[&TensorType], out: &TensorType, ukernels: bool) -> usize {
    if nhwc_conv_kind(c, operands, ukernels) != NhwcConv::Gemm || conv_is_pointwise(c, operands) {
        return 0;
    }
    let [m, _, k] = gemm_shape(operands, out);
    m * k
}

/// Constant weights `[F, C/groups, kh, kw]` (row-major) in the order a channels-last kernel
/// reads them: `[kh·kw][C]` for a depthwise kernel (a tap's weights for consecutive channels
/// side by side), and packed GEMM panels of `W[(ky·kw + kx)·C + c][f]` for the GEMM kernel.
pub fn pack_weights(kind: NhwcConv, w: &[f32], wshape: &[usize], tile: Tile) -> Option<Vec<f32>> {
    let [f, cg, kh, kw] = wshape[..] else { return None };
    match kind {
        NhwcConv::Depthwise => {
            let taps = kh * kw;
            let mut out = vec![0.0; taps * f];
            for ch in 0..f {
                for t in 0..taps {
                    out[t * f + ch] = w[ch * taps + t];
                }
            }
            Some(out)
        }
        NhwcConv::Gemm => {
            let k = cg * kh * kw;
            let mut b = vec![0.0; k * f];
            for oc in 0..f {
                for ch in 0..cg {
                    for t in 0..kh * kw {
                        b[(t * cg + ch) * f + oc] = w[(oc * cg + ch) * kh * kw + t];
                    }
                }
            }
            let blk = nnc_runtime::gemm::Blocking { kc: tile.kc, mc: tile.mc, nc: tile.nc };
            let mut packed = vec![0.0; nnc_runtime::gemm::packed_b_len(k, f, blk)];
            // SAFETY: `b` holds the `k × f` row-major matrix; `packed` has room for its packing.
            unsafe { nnc_runtime::gemm::pack_b_all(k, f, b.as_ptr(), f as isize, 1, blk, &mut packed) };
            Some(packed)
        }
        NhwcConv::Direct => None,
    }
}

fn shape4(t: &TensorType) -> [i64; 4] {
    let [a, b, c, d] = t.shape[..] else { unreachable!("rank checked") };
    [a as i64, b as i64, c as i64, d as i64]
}

/// A channels-last convolution, with `epi` applied to each result on its way to memory.
pub fn conv2d(k: &mut Kernel, c: &Conv2d, args: &[Arg], out: Arg, scratch: Option<Loc>, epi: &Epilogue) {
    let kind = nhwc_conv_kind(c, &[args[0].ty, args[1].ty], k.runtime.is_some());
    let packed = k.prepacked.first().copied();
    match (kind, packed, k.runtime) {
        (NhwcConv::Depthwise, _, _) => depthwise(k, c, args, out, packed, epi),
        (NhwcConv::Gemm, Some(w), Some(rt)) => gemm(k, rt, c, args, out, w, scratch, epi),
        _ => direct(k, c, args, out, epi),
    }
}

/// First and one-past-last output index whose every tap `i·s − p + t·d` (t < taps) lands in
/// `[0, len)`: the interior that needs no bounds checks.
fn interior(len: i64, out: i64, s: i64, p: i64, taps: i64, d: i64) -> (i64, i64) {
    let lo = (p + s - 1).div_euclid(s).clamp(0, out);
    let last_ok = len - 1 + p - (taps - 1) * d;
    let hi = if last_ok < 0 { 0 } else { (last_ok / s + 1).clamp(0, out) };
    (lo, hi.max(lo))
}

/// Depthwise convolution, one filter per channel: along each output row, tiles of four
/// pixels in the interior (every weight vector loaded once for four FMAs) and single pixels
/// with clamped, masked taps at the borders; channels in `f32x4` vectors.
fn depthwise(k: &mut Kernel, c: &Conv2d, args: &[Arg], out: Arg, packed: Option<u64>, epi: &Epilogue) {
    let [n, ch, h, w] = shape4(args[0].ty);
    let [_, _, kh, kw] = shape4(args[1].ty);
    let [_, _, oh, ow] = shape4(out.ty);
    let [sh, sw] = c.stride.map(|v| v as i64);
    let [dh, dw] = c.dilation.map(|v| v as i64);
    let (pt, pl) = (c.padding[0] as i64, c.padding[1] as i64);
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    // Weights as `[tap][channel]`: repacked at compile time, or gathered from `[C, 1, kh, kw]`.
    let weights = match packed {
        Some(addr) => WeightSource::Packed(k.b.ins().iconst(cranelift_codegen::ir::types::I64, addr as i64)),
        None => WeightSource::Rows(k.ptr(args[1].loc)),
    };
    let (y_lo, y_hi) = interior(h, oh, sh, pt, kh, dh);
    let (x_lo, x_hi) = interior(w, ow, sw, pl, kw, dw);
    let geo = DwGeometry { ch, h, w, ow, kh, kw, sh, sw, dh, dw, pt, pl };
    k.for_const(0, n, |k, b| {
        let img_off = k.b.ins().imul_imm_s(b, h * w * ch);
        let img = k.elem(x, img_off);
        // Results are addressed from the start of the whole output (not this image's), so
        // that the epilogue reads its extra operands at the same index.
        let first_row = k.b.ins().imul_imm_s(b, oh);
        let row = |k: &mut Kernel, oy: Value, inside_rows: bool| {
            let masked = |k: &mut Kernel, lo: i64, hi: i64| {
                k.for_const(lo, hi, |k, ox| dw_pixels(k, &geo, img, o, first_row, &weights, bias, epi, oy, ox, 1, true));
            };
            if !inside_rows {
                masked(k, 0, ow);
                return;
            }
            masked(k, 0, x_lo);
            let tiles = (x_hi - x_lo) / PIXEL_TILE;
            k.for_const(0, tiles, |k, t| {
                let ox = k.b.ins().imul_imm_s(t, PIXEL_TILE);
                let ox = k.b.ins().iadd_imm_s(ox, x_lo);
                dw_pixels(k, &geo, img, o, first_row, &weights, bias, epi, oy, ox, PIXEL_TILE, false);
            });
            k.for_const(x_lo + tiles * PIXEL_TILE, x_hi, |k, ox| dw_pixels(k, &geo, img, o, first_row, &weights, bias, epi, oy, ox, 1, false));
            masked(k, x_hi, ow);
        };
        k.for_const(0, y_lo, |k, oy| row(k, oy, false));
        k.for_const(y_lo, y_hi, |k, oy| row(k, oy, true));
        k.for_const(y_hi, oh, |k, oy| row(k, oy, false));
    });
}

struct DwGeometry {
    ch: i64,
    h: i64,
    w: i64,
    ow: i64,
    kh: i64,
    kw: i64,
    sh: i64,
    sw: i64,
    dh: i64,
    dw: i64,
    pt: i64,
    pl: i64,
}

enum WeightSource {
    /// `[tap][channel]`, contiguous along channels.
    Packed(Value),
    /// The row-major `[C, 1, kh, kw]` weight: a channel's taps are contiguous.
    Rows(Value),
}

impl WeightSource {
    /// The weights of tap `t` for the channels `ci..ci+lanes(ty)` (`ci4` is `ci·4`).
    fn load(&self, k: &mut Kernel, ty: Type, t: i64, ci: Value, ci4: Value, geo: &DwGeometry) -> Value {
        match *self {
            WeightSource::Packed(p) => {
                let at = k.b.ins().iadd(p, ci4);
                k.load_input_at(ty, at, t * geo.ch)
            }
            WeightSource::Rows(p) => {
                let taps = geo.kh * geo.kw;
                let lane = |k: &mut Kernel, l: i64| {
                    let i = k.b.ins().iadd_imm_s(ci, l);
                    let i = k.b.ins().imul_imm_s(i, taps);
                    let i = k.b.ins().iadd_imm_s(i, t);
                    k.load(F32, p, i)
                };
                if ty == F32 {
                    return lane(k, 0);
                }
                let first = lane(k, 0);
                let mut v = k.b.ins().splat(F32X4, first);
                for l in 1..LANES {
                    let s = lane(k, l);
                    v = k.b.ins().insertlane(v, s, l as u8);
                }
                v
            }
        }
    }
}

/// `count` consecutive output pixels of row `oy` from column `ox`, all channels, of the image
/// whose input is at `img` and whose first output row is row `first_row` of `out`. With
/// `masked`, taps may fall in the padding: their index is clamped and the value zeroed.
///
/// Unmasked, every input a pixel tile reads lies at a constant offset from the start of its
/// window row, so each load is one instruction (`row + channel·4 + constant`) and the integer
/// work per vector is one shift.
#[allow(clippy::too_many_arguments)]
fn dw_pixels(k: &mut Kernel, g: &DwGeometry, img: Value, out: Value, first_row: Value, weights: &WeightSource, bias: Option<Value>, epi: &Epilogue, oy: Value, ox: Value, count: i64, masked: bool) {
    let iy0 = k.b.ins().imul_imm_s(oy, g.sh);
    let iy0 = k.b.ins().iadd_imm_s(iy0, -g.pt);
    let ix0 = k.b.ins().imul_imm_s(ox, g.sw);
    let ix0 = k.b.ins().iadd_imm_s(ix0, -g.pl);
    let taps = (g.kh * g.kw) as usize;
    // Per window row: the address of its first tap for the first pixel (unmasked), or per tap
    // and pixel the clamped element offset and whether it is inside (masked).
    let mut rows = Vec::new();
    let mut clamped: Vec<Vec<(Value, Value)>> = Vec::new();
    if masked {
        for p in 0..count {
            let mut per_tap = Vec::with_capacity(taps);
            let ixp = k.b.ins().iadd_imm_s(ix0, p * g.sw);
            for ky in 0..g.kh {
                let iy = k.b.ins().iadd_imm_s(iy0, ky * g.dh);
                let (y_in, iyc) = k.clamp_index(iy, g.h - 1);
                for kx in 0..g.kw {
                    let ix = k.b.ins().iadd_imm_s(ixp, kx * g.dw);
                    let (x_in, ixc) = k.clamp_index(ix, g.w - 1);
                    let pix = k.b.ins().imul_imm_s(iyc, g.w);
                    let pix = k.b.ins().iadd(pix, ixc);
                    let off = k.b.ins().imul_imm_s(pix, g.ch);
                    per_tap.push((off, k.b.ins().band(y_in, x_in)));
                }
            }
            clamped.push(per_tap);
        }
    } else {
        for ky in 0..g.kh {
            let iy = k.b.ins().iadd_imm_s(iy0, ky * g.dh);
            let pix = k.b.ins().imul_imm_s(iy, g.w);
            let pix = k.b.ins().iadd(pix, ix0);
            let off = k.b.ins().imul_imm_s(pix, g.ch);
            rows.push(k.elem(img, off));
        }
    }
    let out_row = k.b.ins().iadd(first_row, oy);
    let out_pix = k.b.ins().imul_imm_s(out_row, g.ow);
    let out_pix = k.b.ins().iadd(out_pix, ox);
    let out_base = k.b.ins().imul_imm_s(out_pix, g.ch);
    let out_ptr = k.elem(out, out_base);
    k.for_vectorized(g.ch, |k, ci, ty| {
        let ci4 = k.b.ins().ishl_imm_s(ci, 2);
        let init = match bias {
            Some(bp) => {
                let at = k.b.ins().iadd(bp, ci4);
                k.load_at(ty, at, 0)
            }
            None => k.c(ty, 0.0),
        };
        let row_at: Vec<Value> = rows.iter().map(|&r| k.b.ins().iadd(r, ci4)).collect();
        let mut accs = vec![init; count as usize];
        for t in 0..taps {
            let wv = weights.load(k, ty, t as i64, ci, ci4, g);
            let (ky, kx) = (t as i64 / g.kw, t as i64 % g.kw);
            for (p, acc) in accs.iter_mut().enumerate() {
                let xv = if masked {
                    let (off, inside) = clamped[p][t];
                    let idx = k.b.ins().iadd(off, ci);
                    let v = k.load(ty, img, idx);
                    let zero = k.c(ty, 0.0);
                    k.b.ins().select(inside, v, zero)
                } else {
                    k.load_input_at(ty, row_at[ky as usize], (kx * g.dw + p as i64 * g.sw) * g.ch)
                };
                // `acc + w·x` as an add of a product, not an FMA: Cranelift emits pure values
                // depth-first in operand order, so with the accumulator first the chain
                // interleaves with its loads; `fma(w, x, acc)` would emit every load of the
                // window before the first FMA and spill.
                let prod = k.b.ins().fmul(wv, xv);
                *acc = k.b.ins().fadd(*acc, prod);
            }
        }
        let at = k.b.ins().iadd(out_ptr, ci4);
        for (p, acc) in accs.into_iter().enumerate() {
            let v = if epi.steps.is_empty() {
                acc
            } else {
                let idx = k.b.ins().iadd_imm_s(out_base, p as i64 * g.ch);
                let idx = k.b.ins().iadd(idx, ci);
                epi.apply(k, ty, acc, idx)
            };
            k.store_at(v, at, p as i64 * g.ch);
        }
    });
}

/// A dense channels-last convolution as one matrix product per image:
/// `out[P, F] = patches[P, kh·kw·C] · W[kh·kw·C, F]` (P = output pixels), with W packed at
/// compile time, and the bias (one per column) and `epi` applied by the GEMM. A 1×1,
/// stride-1, unpadded convolution multiplies the input itself.
#[allow(clippy::too_many_arguments)]
fn gemm(k: &mut Kernel, rt: RuntimeFns, c: &Conv2d, args: &[Arg], out: Arg, packed_w: u64, scratch: Option<Loc>, epi: &Epilogue) {
    let [n, ch, h, w] = shape4(args[0].ty);
    let [m, f, kk] = gemm_shape(&[args[0].ty, args[1].ty], out.ty).map(|v| v as i64);
    let [_, _, kh, kw] = shape4(args[1].ty);
    let [_, _, oh, ow] = shape4(out.ty);
    let pointwise = conv_is_pointwise(c, &[args[0].ty, args[1].ty]);
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    let col = scratch.map(|s| k.ptr(s));
    let mut steps_left = false;
    k.for_const(0, n, |k, b| {
        let img_off = k.b.ins().imul_imm_s(b, h * w * ch);
        let img = k.elem(x, img_off);
        let out_off = k.b.ins().imul_imm_s(b, m * f);
        let oimg = k.elem(o, out_off);
        let (tail, left) = epi.gemm_tail(k, bias, false, out_off);
        steps_left = left;
        let (a, rsa) = if pointwise {
            (img, ch)
        } else {
            let col = col.expect("patch scratch is planned");
            let mut call = vec![img];
            for v in [ch, h, w, kh, kw, c.stride[0] as i64, c.stride[1] as i64, c.dilation[0] as i64, c.dilation[1] as i64, c.padding[0] as i64, c.padding[1] as i64, oh, ow] {
                call.push(k.int(v));
            }
            call.push(col);
            k.b.ins().call(rt.im2col_nhwc, &call);
            (col, kk)
        };
        let wp = k.int(packed_w as i64);
        let mut call = vec![k.int(m), k.int(f), k.int(kk), a, k.int(rsa), k.int(1), wp, oimg, k.int(f), k.int(1), k.int(0)];
        call.extend(k.gemm_tail());
        call.extend(k.tail_args(&tail));
        k.b.ins().call(rt.sgemm_packed_b, &call);
    });
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

/// Any channels-last convolution the layout rule admits, with scalar loops: each output sums
/// its filter's taps over the channels of its group, padded taps masked to zero.
fn direct(k: &mut Kernel, c: &Conv2d, args: &[Arg], out: Arg, epi: &Epilogue) {
    let [n, ch, h, w] = shape4(args[0].ty);
    let [f, cg, kh, kw] = shape4(args[1].ty);
    let [_, _, oh, ow] = shape4(out.ty);
    let fg = f / c.groups as i64;
    let [sh, sw] = c.stride.map(|v| v as i64);
    let [dh, dw] = c.dilation.map(|v| v as i64);
    let (pt, pl) = (c.padding[0] as i64, c.padding[1] as i64);
    let (x, wt, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    k.for_const(0, n * oh * ow, |k, pix| {
        // pix = (b·oh + oy)·ow + ox
        let ox = k.b.ins().srem_imm_s(pix, ow);
        let boy = k.b.ins().sdiv_imm_s(pix, ow);
        let oy = k.b.ins().srem_imm_s(boy, oh);
        let b = k.b.ins().sdiv_imm_s(boy, oh);
        let img_off = k.b.ins().imul_imm_s(b, h * w * ch);
        let img = k.elem(x, img_off);
        let iy0 = k.b.ins().imul_imm_s(oy, sh);
        let iy0 = k.b.ins().iadd_imm_s(iy0, -pt);
        let ix0 = k.b.ins().imul_imm_s(ox, sw);
        let ix0 = k.b.ins().iadd_imm_s(ix0, -pl);
        k.for_const(0, f, |k, oc| {
            let init = match bias {
                Some(bp) => k.load(F32, bp, oc),
                None => k.c(F32, 0.0),
            };
            let acc = k.var(F32, init);
            let group = k.b.ins().sdiv_imm_s(oc, fg);
            let ch0 = k.b.ins().imul_imm_s(group, cg);
            k.for_const(0, kh, |k, ky| {
                let kyd = k.b.ins().imul_imm_s(ky, dh);
                let iy = k.b.ins().iadd(iy0, kyd);
                let (y_in, iyc) = k.clamp_index(iy, h - 1);
                k.for_const(0, kw, |k, kx| {
                    let kxd = k.b.ins().imul_imm_s(kx, dw);
                    let ix = k.b.ins().iadd(ix0, kxd);
                    let (x_in, ixc) = k.clamp_index(ix, w - 1);
                    let inside = k.b.ins().band(y_in, x_in);
                    let pixel = k.b.ins().imul_imm_s(iyc, w);
                    let pixel = k.b.ins().iadd(pixel, ixc);
                    let pixel = k.b.ins().imul_imm_s(pixel, ch);
                    let pixel = k.b.ins().iadd(pixel, ch0);
                    k.for_const(0, cg, |k, ci| {
                        let xi = k.b.ins().iadd(pixel, ci);
                        let xv = k.load(F32, img, xi);
                        let zero = k.c(F32, 0.0);
                        let xv = k.b.ins().select(inside, xv, zero);
                        // w[oc, ci, ky, kx]
                        let wi = k.b.ins().imul_imm_s(oc, cg);
                        let wi = k.b.ins().iadd(wi, ci);
                        let wi = k.b.ins().imul_imm_s(wi, kh);
                        let wi = k.b.ins().iadd(wi, ky);
                        let wi = k.b.ins().imul_imm_s(wi, kw);
                        let wi = k.b.ins().iadd(wi, kx);
                        let wv = k.load(F32, wt, wi);
                        let cur = k.b.use_var(acc);
                        let next = k.fma(wv, xv, cur);
                        k.b.def_var(acc, next);
                    });
                });
            });
            let oi = k.b.ins().imul_imm_s(pix, f);
            let oi = k.b.ins().iadd(oi, oc);
            let v = k.b.use_var(acc);
            let v = epi.apply(k, F32, v, oi);
            k.store(v, o, oi);
        });
    });
}

/// Global average pooling of a channels-last input: each image's pixels summed as vectors
/// along channels into the result row, then scaled. The result `[N, C, 1, 1]` has the same
/// bytes in either layout.
pub fn global_avg_pool(k: &mut Kernel, args: &[Arg], out: Arg) {
    let [n, ch, h, w] = shape4(args[0].ty);
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let inv = 1.0 / (h * w) as f32;
    k.for_const(0, n, |k, b| {
        let row_off = k.b.ins().imul_imm_s(b, ch);
        let row = k.elem(o, row_off);
        k.for_vectorized(ch, |k, i, ty| {
            let z = k.c(ty, 0.0);
            k.store(z, row, i);
        });
        let img_off = k.b.ins().imul_imm_s(b, h * w * ch);
        let img = k.elem(x, img_off);
        k.for_const(0, h * w, |k, p| {
            let pix_off = k.b.ins().imul_imm_s(p, ch);
            let pix = k.elem(img, pix_off);
            k.for_vectorized(ch, |k, i, ty| {
                let v = k.load(ty, pix, i);
                let cur = k.load(ty, row, i);
                let s = k.b.ins().fadd(cur, v);
                k.store(s, row, i);
            });
        });
        k.for_vectorized(ch, |k, i, ty| {
            let v = k.load(ty, row, i);
            let s = k.c(ty, inv);
            let r = k.b.ins().fmul(v, s);
            k.store(r, row, i);
        });
    });
}

/// A change of memory order between NCHW and NHWC: a transpose of each image between
/// `[C, H·W]` and `[H·W, C]`, reading the source contiguously.
pub fn convert_layout(k: &mut Kernel, arg: Arg, out: Arg) {
    let [n, ch, h, w] = shape4(arg.ty);
    let hw = h * w;
    let (x, o) = (k.ptr(arg.loc), k.ptr(out.loc));
    // Source and destination strides of (channel, pixel).
    let (rows, cols, dst_row, dst_col) = match (arg.ty.layout, out.ty.layout) {
        (Layout::RowMajor, Layout::Nhwc) => (ch, hw, 1, ch),
        (Layout::Nhwc, Layout::RowMajor) => (hw, ch, 1, hw),
        _ => {
            // Same layout: a copy.
            k.for_vectorized(n * ch * hw, |k, i, ty| {
                let v = k.load(ty, x, i);
                k.store(v, o, i);
            });
            return;
        }
    };
    k.for_const(0, n, |k, b| {
        let img_off = k.b.ins().imul_imm_s(b, ch * hw);
        let (src, dst) = (k.elem(x, img_off), k.elem(o, img_off));
        k.for_const(0, rows, |k, r| {
            let src_row_off = k.b.ins().imul_imm_s(r, cols);
            let src_row = k.elem(src, src_row_off);
            let dst_base = k.b.ins().imul_imm_s(r, dst_row);
            k.for_const(0, cols, |k, c| {
                let v = k.load(F32, src_row, c);
                let di = k.b.ins().imul_imm_s(c, dst_col);
                let di = k.b.ins().iadd(di, dst_base);
                k.store(v, dst, di);
            });
        });
    });
}
