//! int8 depthwise convolution ([`Kernel::Int8Depthwise`](crate::kernel_plan::Kernel)): one
//! filter per channel, stride 1 or 2 along rows, no dilation.
//!
//! With the runtime's kernels, one call to `nnc_depthwise_i8` (full-width vectors, the
//! requantization fused: [`runtime`]). Otherwise generated code, below, into i32 accumulators:
//!
//! Per plane, the bias and the window's weights are loaded once. Along each output row, the
//! outputs whose every tap column is inside the row ([`VectorSpan`]) run eight at a time:
//! per tap, eight codes sign-extended to `i16x8` (at stride 2 the even bytes of a 16-byte
//! load), multiplied by the tap's weight in i16 (|−128 · −128| fits) and widened into two
//! `i32x4` accumulators. i32 addition wraps and is associative, so the sums are the
//! interpreter's bit for bit, in any order. The other outputs, and window rows outside the
//! image, are handled one output at a time with each tap tested against the image.

use super::int8::{flags, load_int, mac, store_i32};
use super::window::{for_each_tap_inside, for_window_rows_inside, VectorSpan, Window};
use crate::jit::builder::{IgemmRequantize, KernelBuilder};
use crate::jit::epilogue::Arg;
use crate::ops::Conv2d;
use cranelift_codegen::ir::{types, ConstantData, InstBuilder, Value};
use nnc_runtime::DType;

/// Outputs per vector step: one `i16x8` of products.
const LANES: i64 = 8;

/// The convolution through the runtime's kernel: into `out`'s codes with `requantize`, else
/// its i32 accumulators.
pub(crate) fn runtime(k: &mut KernelBuilder, c: &Conv2d, args: &[Arg], out: Arg, requantize: Option<&IgemmRequantize>) {
    let dims = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let window = [args[1].ty.shape[2] as i64, args[1].ty.shape[3] as i64];
    let out_size = [out.ty.shape[2] as i64, out.ty.shape[3] as i64];
    let (x, wt, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    let pad = [c.padding[0] as i64, c.padding[1] as i64];
    k.depthwise_i8(dims, out_size, window, c.stride.map(|v| v as i64), pad, x, wt, bias, o, requantize);
}

pub(crate) fn depthwise(k: &mut KernelBuilder, c: &Conv2d, args: &[Arg], out: Arg) {
    let [n, ch, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let [kh, kw] = [args[1].ty.shape[2] as i64, args[1].ty.shape[3] as i64];
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let [sh, sw] = c.stride.map(|v| v as i64);
    let g = Window { h, w, kh, kw, sh, sw, dh: 1, dw: 1, pt: c.padding[0] as i64, pl: c.padding[1] as i64 };
    let (x, wt, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    // A step reads 8 codes per tap at stride 1, one 16-byte vector at stride 2.
    let span = VectorSpan::over_row([sw, kw, g.pl], w, ow, LANES, LANES * sw);
    let (vlo, vhi) = span.map_or((0, 0), |s| (s.lo, s.hi));
    k.for_const(0, n, |k, b| {
        k.for_const(0, ch, |k, chan| {
            let plane = k.b.ins().imul_imm_s(b, ch);
            let plane = k.b.ins().iadd(plane, chan);
            let b0 = match bias {
                Some(bp) => load_int(k, DType::I32, bp, chan),
                None => k.b.ins().iconst(types::I32, 0),
            };
            let taps: Vec<Value> = (0..kh * kw)
                .map(|t| {
                    let wi = k.b.ins().imul_imm_s(chan, kh * kw);
                    let wi = k.b.ins().iadd_imm_s(wi, t);
                    load_int(k, DType::I8, wt, wi)
                })
                .collect();
            k.for_const(0, oh, |k, y| {
                let out_row = k.b.ins().imul_imm_s(plane, oh);
                let out_row = k.b.ins().iadd(out_row, y);
                let out_row = k.b.ins().imul_imm_s(out_row, ow);
                let row = Row { plane, y, out_row, bias: b0 };
                if vlo < vhi {
                    let tap_vectors: Vec<Value> = taps
                        .iter()
                        .map(|&t| {
                            let t16 = k.b.ins().ireduce(types::I16, t);
                            k.b.ins().splat(types::I16X8, t16)
                        })
                        .collect();
                    scalar_outputs(k, &g, x, o, &taps, &row, 0, vlo);
                    let (lo, hi) = (k.int(vlo), k.int(vhi));
                    k.for_range(lo, hi, LANES, |k, ox0| vector_outputs(k, &g, x, o, &tap_vectors, &row, ox0));
                    scalar_outputs(k, &g, x, o, &taps, &row, vhi, ow);
                } else {
                    scalar_outputs(k, &g, x, o, &taps, &row, 0, ow);
                }
            });
        });
    });
}

/// One output row: its input plane, row index, first output element and the plane's bias.
struct Row {
    plane: Value,
    y: Value,
    out_row: Value,
    bias: Value,
}

/// Outputs `lo..hi` of a row one at a time, each tap tested against the image.
#[allow(clippy::too_many_arguments)]
fn scalar_outputs(k: &mut KernelBuilder, g: &Window, x: Value, o: Value, taps: &[Value], row: &Row, lo: i64, hi: i64) {
    k.for_const(lo, hi, |k, xo| {
        let acc = k.var(types::I32, row.bias);
        let plane_start = k.b.ins().imul_imm_s(row.plane, g.h * g.w);
        for_each_tap_inside(k, g, row.y, xo, |k, ky, kx, at| {
            let xi = k.b.ins().iadd(plane_start, at);
            let v = load_int(k, DType::I8, x, xi);
            let cur = k.b.use_var(acc);
            let next = mac(k, cur, v, taps[(ky * g.kw + kx) as usize]);
            k.b.def_var(acc, next);
        });
        let v = k.b.use_var(acc);
        let oi = k.b.ins().iadd(row.out_row, xo);
        store_i32(k, v, o, oi);
    });
}

/// Outputs `ox0..ox0 + 8` of a row, whose tap columns are all inside it.
fn vector_outputs(k: &mut KernelBuilder, g: &Window, x: Value, o: Value, taps: &[Value], row: &Row, ox0: Value) {
    let &Window { h, w, kh, kw, sh, sw, pt, pl, .. } = g;
    let init = k.b.ins().splat(types::I32X4, row.bias);
    let (acc_lo, acc_hi) = (k.var(types::I32X4, init), k.var(types::I32X4, init));
    // At stride 2, lane `j` takes byte `2j` of the load (the upper eight lanes are unused).
    let even = (sw == 2).then(|| {
        let mask: Vec<u8> = (0..16u8).map(|j| if j < 8 { 2 * j } else { 0 }).collect();
        k.b.func.dfg.immediates.push(ConstantData::from(mask))
    });
    let col0 = k.b.ins().imul_imm_s(ox0, sw);
    for_window_rows_inside(k, row.y, [kh, sh, pt, h], |k, ky, iy| {
        let at = k.b.ins().imul_imm_s(row.plane, h);
        let at = k.b.ins().iadd(at, iy);
        let at = k.b.ins().imul_imm_s(at, w);
        let at = k.b.ins().iadd(at, col0);
        let at = k.b.ins().iadd(x, at);
        let (mut lo, mut hi) = (k.b.use_var(acc_lo), k.b.use_var(acc_hi));
        for kx in 0..kw {
            let offset = (kx - pl) as i32;
            let codes = match even {
                None => k.b.ins().sload8x8(flags(), at, offset),
                Some(mask) => {
                    let v = k.b.ins().load(types::I8X16, flags(), at, offset);
                    let v = k.b.ins().shuffle(v, v, mask);
                    k.b.ins().swiden_low(v)
                }
            };
            let p = k.b.ins().imul(codes, taps[(ky * kw + kx) as usize]);
            let (p_lo, p_hi) = (k.b.ins().swiden_low(p), k.b.ins().swiden_high(p));
            lo = k.b.ins().iadd(lo, p_lo);
            hi = k.b.ins().iadd(hi, p_hi);
        }
        k.b.def_var(acc_lo, lo);
        k.b.def_var(acc_hi, hi);
    });
    let oi = k.b.ins().iadd(row.out_row, ox0);
    let oi = k.b.ins().imul_imm_s(oi, 4);
    let at = k.b.ins().iadd(o, oi);
    let (lo, hi) = (k.b.use_var(acc_lo), k.b.use_var(acc_hi));
    k.b.ins().store(flags(), lo, at, 0);
    k.b.ins().store(flags(), hi, at, 16);
}
