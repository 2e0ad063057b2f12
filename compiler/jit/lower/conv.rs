//! Row-major convolutions: direct loops over each tap's valid output range, through the
//! runtime GEMM (im2col, or the input planes themselves when pointwise), and strided
//! depthwise ones with the window unrolled.

use crate::jit::builder::{GemmOperand, KernelBuilder, F32, F32X4, LANES};
use crate::jit::epilogue::{apply_in_place, Epilogue};
use crate::jit::epilogue::Arg;
use crate::jit::memplan::Loc;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value};
use crate::kernel_plan::conv_is_pointwise;
use crate::ops::Conv2d;

/// `max(0, ceil(a / s))` and `min(limit, floor(b / s) + 1)` (or 0 when `b < 0`): the range
/// of output positions whose input tap lands inside the image.
pub(crate) fn valid_range(k: &mut KernelBuilder, a: Value, b: Value, s: i64, limit: i64) -> (Value, Value) {
    let zero = k.int(0);
    let a0 = k.b.ins().smax(a, zero);
    let a1 = k.b.ins().iadd_imm_s(a0, s - 1);
    let lo = k.b.ins().sdiv_imm_s(a1, s);
    let neg = k.b.ins().icmp(IntCC::SignedLessThan, b, zero);
    let q = k.b.ins().sdiv_imm_s(b, s);
    let q1 = k.b.ins().iadd_imm_s(q, 1);
    let lim = k.int(limit);
    let hi = k.b.ins().smin(q1, lim);
    let hi = k.b.ins().select(neg, zero, hi);
    // An empty range must come out as `lo == hi`: callers derive vector trip counts from
    // `hi − lo`, which must not go negative (`lo` can exceed `limit` when a tap only ever
    // lands in the padding).
    let hi = k.b.ins().smax(hi, lo);
    (lo, hi)
}

/// Element index of `w[oc, ci, ky, kx]` in a row-major `[F, cg, kh, kw]` weight.
pub fn conv_weight_index(k: &mut KernelBuilder, [oc, ci, ky, kx]: [Value; 4], [cg, kh, kw]: [i64; 3]) -> Value {
    let i = k.b.ins().imul_imm_s(oc, cg);
    let i = k.b.ins().iadd(i, ci);
    let i = k.b.ins().imul_imm_s(i, kh);
    let i = k.b.ins().iadd(i, ky);
    let i = k.b.ins().imul_imm_s(i, kw);
    k.b.ins().iadd(i, kx)
}

pub(crate) fn conv2d(k: &mut KernelBuilder, c: &Conv2d, args: &[Arg], out: Arg) {
    let [n, ch, h, w] = args[0].ty.shape[..] else { unreachable!("rank checked") };
    let [f, cg, kh, kw] = args[1].ty.shape[..] else { unreachable!("rank checked") };
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let (h, w, ch, cg, kh, kw) = (h as i64, w as i64, ch as i64, cg as i64, kh as i64, kw as i64);
    let fg = (f / c.groups) as i64;
    let [sh, sw] = c.stride.map(|v| v as i64);
    let [dh, dw] = c.dilation.map(|v| v as i64);
    let (pt, pl) = (c.padding[0] as i64, c.padding[1] as i64);
    let (x, wt, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    k.for_const(0, n as i64, |k, b| {
        k.for_const(0, f as i64, |k, oc| {
            let plane_idx = k.b.ins().imul_imm_s(b, f as i64);
            let plane_idx = k.b.ins().iadd(plane_idx, oc);
            let plane_off = k.b.ins().imul_imm_s(plane_idx, oh * ow);
            let plane = k.elem(o, plane_off);
            let init = match bias {
                Some(bp) => k.load(F32, bp, oc),
                None => k.c(F32, 0.0),
            };
            k.for_vectorized(oh * ow, |k, i, ty| {
                let v = if ty == F32 { init } else { k.b.ins().splat(ty, init) };
                k.store(v, plane, i);
            });
            let group = k.b.ins().sdiv_imm_s(oc, fg);
            k.for_const(0, cg, |k, ci| {
                let in_ch = k.b.ins().imul_imm_s(group, cg);
                let in_ch = k.b.ins().iadd(in_ch, ci);
                let in_idx = k.b.ins().imul_imm_s(b, ch);
                let in_idx = k.b.ins().iadd(in_idx, in_ch);
                let in_off = k.b.ins().imul_imm_s(in_idx, h * w);
                let in_plane = k.elem(x, in_off);
                k.for_const(0, kh, |k, ky| {
                    // Output rows whose tap ky lands in the image: iy = y·sh + ky·dh − pt ∈ [0, h).
                    let kyd = k.b.ins().imul_imm_s(ky, dh);
                    let pt_v = k.int(pt);
                    let a = k.b.ins().isub(pt_v, kyd);
                    let hm = k.int(h - 1 + pt);
                    let bnd = k.b.ins().isub(hm, kyd);
                    let (y_lo, y_hi) = valid_range(k, a, bnd, sh, oh);
                    k.for_const(0, kw, |k, kx| {
                        let kxd = k.b.ins().imul_imm_s(kx, dw);
                        let pl_v = k.int(pl);
                        let a = k.b.ins().isub(pl_v, kxd);
                        let wm = k.int(w - 1 + pl);
                        let bnd = k.b.ins().isub(wm, kxd);
                        let (x_lo, x_hi) = valid_range(k, a, bnd, sw, ow);
                        // The weight tap, broadcast.
                        let widx = conv_weight_index(k, [oc, ci, ky, kx], [cg, kh, kw]);
                        let wv = k.load(F32, wt, widx);
                        let wv4 = k.b.ins().splat(F32X4, wv);
                        k.for_range(y_lo, y_hi, 1, |k, y| {
                            let iy = k.b.ins().imul_imm_s(y, sh);
                            let iy = k.b.ins().iadd(iy, kyd);
                            let iy = k.b.ins().iadd_imm_s(iy, -pt);
                            let in_row_off = k.b.ins().imul_imm_s(iy, w);
                            let in_row = k.elem(in_plane, in_row_off);
                            let out_row_off = k.b.ins().imul_imm_s(y, ow);
                            let out_row = k.elem(plane, out_row_off);
                            if sw == 1 {
                                // ix = ox + kx·dw − pl: contiguous in both rows.
                                let shift = k.b.ins().iadd_imm_s(kxd, -pl);
                                let count = k.b.ins().isub(x_hi, x_lo);
                                let vec_count = k.b.ins().band_imm_s(count, !(LANES - 1));
                                let vec_end = k.b.ins().iadd(x_lo, vec_count);
                                k.for_range(x_lo, vec_end, LANES, |k, ox| {
                                    let ix = k.b.ins().iadd(ox, shift);
                                    let xv = k.load(F32X4, in_row, ix);
                                    let cur = k.load(F32X4, out_row, ox);
                                    let r = k.fma(wv4, xv, cur);
                                    k.store(r, out_row, ox);
                                });
                                k.for_range(vec_end, x_hi, 1, |k, ox| {
                                    let ix = k.b.ins().iadd(ox, shift);
                                    let xv = k.load(F32, in_row, ix);
                                    let cur = k.load(F32, out_row, ox);
                                    let r = k.fma(wv, xv, cur);
                                    k.store(r, out_row, ox);
                                });
                            } else {
                                k.for_range(x_lo, x_hi, 1, |k, ox| {
                                    let ix = k.b.ins().imul_imm_s(ox, sw);
                                    let ix = k.b.ins().iadd(ix, kxd);
                                    let ix = k.b.ins().iadd_imm_s(ix, -pl);
                                    let xv = k.load(F32, in_row, ix);
                                    let cur = k.load(F32, out_row, ox);
                                    let r = k.fma(wv, xv, cur);
                                    k.store(r, out_row, ox);
                                });
                            }
                        });
                    });
                });
            });
        });
    });
}

/// Convolution as one matrix product per image and group: `out[F_g, P] = W_g[F_g, C_g·kh·kw] ·
/// col[C_g·kh·kw, P]` (P = output pixels), the bias (one per row) and `epi` applied by the
/// GEMM as it stores each tile.
pub(crate) fn conv2d_gemm(k: &mut KernelBuilder, c: &Conv2d, args: &[Arg], out: Arg, scratch: Option<Loc>, epi: &Epilogue) {
    let [n, ch, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let [f, cg, kh, kw] = args[1].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let p = oh * ow;
    let groups = c.groups as i64;
    let fg = f / groups;
    let kk = cg * kh * kw;
    let pointwise = conv_is_pointwise(c, &[args[0].ty, args[1].ty]);
    let (x, wt, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    let col = scratch.map(|s| k.ptr(s));
    let mut steps_left = false;
    k.for_const(0, n, |k, b| {
        let img_off = k.b.ins().imul_imm_s(b, ch * h * w);
        let img = k.elem(x, img_off);
        for g in 0..groups {
            let gin = k.int(g * cg * h * w);
            let gin = k.elem(img, gin);
            let b_mat = if pointwise {
                (gin, h * w, 1)
            } else {
                let col = col.expect("im2col scratch is planned");
                let i = |v: usize| v as i64;
                k.im2col(gin, [cg, h, w], [kh, kw], c.stride.map(i), c.dilation.map(i), [i(c.padding[0]), i(c.padding[1])], [oh, ow], col);
                (col, p, 1)
            };
            let c_off = k.b.ins().imul_imm_s(b, f * p);
            let c_off = k.b.ins().iadd_imm_s(c_off, g * fg * p);
            let og = k.elem(o, c_off);
            let group_bias = bias.map(|bp| {
                let at = k.int(g * fg);
                k.elem(bp, at)
            });
            let (tail, left) = epi.gemm_tail(k, group_bias, true, c_off);
            steps_left = left;
            let a = match k.prepacked.get(g as usize) {
                Some(&packed) => GemmOperand::Packed(k.data_addr(packed)),
                None => {
                    let wg = k.int(g * fg * kk);
                    GemmOperand::Strided(k.elem(wt, wg), kk, 1)
                }
            };
            k.gemm([fg, p, kk], a, GemmOperand::Strided(b_mat.0, b_mat.1, b_mat.2), (og, p, 1), false, &tail);
        }
    });
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

/// A stride-1 3×3 convolution by Winograd F(4×4, 3×3) (NCHW or NHWC) or F(2×2, 3×3) (NHWC),
/// as the plan's kernel says, one runtime call per image on the filters transformed at
/// compile time (`Prepack::WinogradFilters`), the bias and `epi` applied by the runtime as it
/// stores each output channel (what it cannot do, after).
pub(crate) fn conv2d_winograd(k: &mut KernelBuilder, kernel: crate::kernel_plan::Kernel, c: &Conv2d, args: &[Arg], out: Arg, scratch: Option<Loc>, epi: &Epilogue) {
    let [n, ch, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let f = args[1].ty.shape[0] as i64;
    let p = out.ty.shape[2] as i64 * out.ty.shape[3] as i64;
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    let scratch = k.ptr(scratch.expect("winograd scratch is planned"));
    let u = k.data_addr(*k.prepacked.first().expect("winograd filters are transformed at compile time"));
    let padding = c.padding.map(|v| v as i64);
    // Channels-last images take the runtime's NHWC form (transforms on vectors of channels).
    let nhwc = args[0].ty.layout == crate::ir::Layout::Nhwc;
    let winograd_tile = kernel.winograd_tile().expect("a Winograd kernel");
    let mut steps_left = false;
    k.for_const(0, n, |k, b| {
        let img_off = k.b.ins().imul_imm_s(b, ch * h * w);
        let img = k.elem(x, img_off);
        let c_off = k.b.ins().imul_imm_s(b, f * p);
        let oimg = k.elem(o, c_off);
        let (tail, left) = epi.gemm_tail(k, bias, !nhwc, c_off);
        steps_left = left;
        k.winograd(winograd_tile, [ch, h, w, f], padding, nhwc, img, u, oimg, scratch, &tail);
    });
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

/// A stride-1 row-major convolution with few input channels by the runtime's direct kernel
/// (`nnc_conv_direct`), one image per call: output rows as vectors, several filters at once,
/// the weights read as they are (nothing packed).
pub(crate) fn conv2d_direct_rows(k: &mut KernelBuilder, c: &Conv2d, args: &[Arg], out: Arg, epi: &Epilogue) {
    let [n, ch, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let [f, _, kh, kw] = args[1].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let (x, wt, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    let dilation = c.dilation.map(|v| v as i64);
    let pad = [c.padding[0] as i64, c.padding[1] as i64];
    let mut steps_left = false;
    k.for_const(0, n, |k, b| {
        let img_off = k.b.ins().imul_imm_s(b, ch * h * w);
        let img = k.elem(x, img_off);
        let o_off = k.b.ins().imul_imm_s(b, f * oh * ow);
        let oimg = k.elem(o, o_off);
        let (tail, left) = epi.gemm_tail(k, bias, true, o_off);
        steps_left = left;
        k.conv_direct([ch, h, w, f], [kh, kw], dilation, pad, [oh, ow], img, wt, oimg, &tail);
    });
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

/// Depthwise convolution with the window unrolled: each output sums its taps in a register
/// (the channel's weights stay in registers too) and is stored once. Taps in the padding read
/// a clamped, in-bounds address and are masked to zero.
pub(crate) fn conv2d_depthwise(k: &mut KernelBuilder, c: &Conv2d, args: &[Arg], out: Arg) {
    let [n, ch, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let [f, _, kh, kw] = args[1].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let mult = f / ch;
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let [sh, sw] = c.stride.map(|v| v as i64);
    let [dh, dw] = c.dilation.map(|v| v as i64);
    let (pt, pl) = (c.padding[0] as i64, c.padding[1] as i64);
    let (x, wt, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    k.for_const(0, n, |k, b| {
        k.for_const(0, f, |k, oc| {
            // Filter oc reads input channel oc / mult.
            let ic = k.b.ins().sdiv_imm_s(oc, mult);
            let plane_idx = k.b.ins().imul_imm_s(b, ch);
            let plane_idx = k.b.ins().iadd(plane_idx, ic);
            let in_off = k.b.ins().imul_imm_s(plane_idx, h * w);
            let xin = k.elem(x, in_off);
            let out_idx = k.b.ins().imul_imm_s(b, f);
            let out_idx = k.b.ins().iadd(out_idx, oc);
            let out_off = k.b.ins().imul_imm_s(out_idx, oh * ow);
            let xout = k.elem(o, out_off);
            let w_off = k.b.ins().imul_imm_s(oc, kh * kw);
            let wrow = k.elem(wt, w_off);
            let taps: Vec<Value> = (0..kh * kw).map(|t| k.load_at(F32, wrow, t)).collect();
            let init = match bias {
                Some(bp) => k.load(F32, bp, oc),
                None => k.c(F32, 0.0),
            };
            k.for_const(0, oh, |k, y| {
                let y0 = k.b.ins().imul_imm_s(y, sh);
                let y0 = k.b.ins().iadd_imm_s(y0, -pt);
                k.for_const(0, ow, |k, xo| {
                    let x0 = k.b.ins().imul_imm_s(xo, sw);
                    let x0 = k.b.ins().iadd_imm_s(x0, -pl);
                    let zf = k.c(F32, 0.0);
                    let mut acc = init;
                    for ky in 0..kh {
                        let iy = k.b.ins().iadd_imm_s(y0, ky * dh);
                        let (y_in, iyc) = k.clamp_index(iy, h - 1);
                        let row = k.b.ins().imul_imm_s(iyc, w);
                        for kx in 0..kw {
                            let ix = k.b.ins().iadd_imm_s(x0, kx * dw);
                            let (x_in, ixc) = k.clamp_index(ix, w - 1);
                            let inside = k.b.ins().band(y_in, x_in);
                            let idx = k.b.ins().iadd(row, ixc);
                            let v = k.load(F32, xin, idx);
                            let v = k.b.ins().select(inside, v, zf);
                            acc = k.fma(taps[(ky * kw + kx) as usize], v, acc);
                        }
                    }
                    let oi = k.b.ins().imul_imm_s(y, ow);
                    let oi = k.b.ins().iadd(oi, xo);
                    k.store(acc, xout, oi);
                });
            });
        });
    });
}
