//! Row-major pooling: windows of up to 25 taps unrolled with clamped, masked taps (max
//! pooling's interior outputs four at a time), larger ones as loops over the part inside the
//! image; max pooling on int8 codes (its interior 16 / stride codes at a time); and global
//! average pooling.

use crate::jit::builder::{KernelBuilder, F32, F32X4};
use crate::jit::epilogue::Arg;
use super::int8::{flags, load_int, store_i8};
use super::window::{for_each_tap_inside, for_window_rows_inside, VectorSpan, Window};
use super::norm::sum;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData as MemFlags, Value};
use nnc_runtime::DType;
use crate::ops::{Pool, PoolKind};

/// Windows of at most this many taps are unrolled at compile time.
pub(crate) const UNROLLED_POOL_TAPS: usize = 25;

pub(crate) fn pool(k: &mut KernelBuilder, p: &Pool, args: &[Arg], out: Arg) {
    let [_, _, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let [kh, kw] = p.kernel.map(|v| v as i64);
    let init = |k: &mut KernelBuilder| match p.kind {
        PoolKind::Max => k.c(F32, f32::NEG_INFINITY),
        PoolKind::Avg => k.c(F32, 0.0),
    };
    if p.kernel[0] * p.kernel[1] <= UNROLLED_POOL_TAPS {
        let ow = out.ty.shape[3] as i64;
        // Four outputs per step read four floats per tap at stride 1, two vectors' worth at 2.
        let sw = p.stride[1] as i64;
        let span = (p.kind == PoolKind::Max && matches!(sw, 1 | 2)).then(|| VectorSpan::of(p, w, ow, 4, 4 * sw)).flatten();
        // The window unrolled: each tap reads a clamped (always in-bounds) address and is
        // masked out when it falls in the padding, so the inner code has no loops or branches.
        let mut interior = |k: &mut KernelBuilder, xin, xout, y, ox0| max_pool_vector_f32(k, p, [h, w, ow], xin, xout, y, ox0);
        let vector = span.as_ref().map(|s| (s, &mut interior as &mut dyn FnMut(&mut KernelBuilder, Value, Value, Value, Value)));
        for_each_window(k, p, args, out, vector, &mut |k, xin, y0, x0| {
            let mut acc = init(k);
            let mut count = k.c(F32, 0.0);
            for ky in 0..kh {
                let iy = k.b.ins().iadd_imm_s(y0, ky);
                let (y_in, iyc) = k.clamp_index(iy, h - 1);
                let row = k.b.ins().imul_imm_s(iyc, w);
                for kx in 0..kw {
                    let ix = k.b.ins().iadd_imm_s(x0, kx);
                    let (x_in, ixc) = k.clamp_index(ix, w - 1);
                    let inside = k.b.ins().band(y_in, x_in);
                    let idx = k.b.ins().iadd(row, ixc);
                    let v = k.load(F32, xin, idx);
                    match p.kind {
                        PoolKind::Max => {
                            let m = k.max_nan(acc, v);
                            acc = k.b.ins().select(inside, m, acc);
                        }
                        PoolKind::Avg => {
                            let zf = k.c(F32, 0.0);
                            let one = k.c(F32, 1.0);
                            let vv = k.b.ins().select(inside, v, zf);
                            acc = k.b.ins().fadd(acc, vv);
                            let inc = k.b.ins().select(inside, one, zf);
                            count = k.b.ins().fadd(count, inc);
                        }
                    }
                }
            }
            if p.kind == PoolKind::Avg {
                acc = k.b.ins().fdiv(acc, count);
            }
            acc
        });
        return;
    }
    // Large windows: loops over the part of the window inside the image.
    for_each_window(k, p, args, out, None, &mut |k, xin, y0, x0| {
        let zero = k.int(0);
        let ys = k.b.ins().smax(y0, zero);
        let y1 = k.b.ins().iadd_imm_s(y0, kh);
        let hv = k.int(h);
        let ye = k.b.ins().smin(y1, hv);
        let xs = k.b.ins().smax(x0, zero);
        let x1 = k.b.ins().iadd_imm_s(x0, kw);
        let wv = k.int(w);
        let xe = k.b.ins().smin(x1, wv);
        let start = init(k);
        let acc = k.var(F32, start);
        k.for_range(ys, ye, 1, |k, yy| {
            let row = k.b.ins().imul_imm_s(yy, w);
            k.for_range(xs, xe, 1, |k, xx| {
                let idx = k.b.ins().iadd(row, xx);
                let v = k.load(F32, xin, idx);
                let cur = k.b.use_var(acc);
                let next = match p.kind {
                    PoolKind::Max => k.max_nan(cur, v),
                    PoolKind::Avg => k.b.ins().fadd(cur, v),
                };
                k.b.def_var(acc, next);
            });
        });
        let mut r = k.b.use_var(acc);
        if p.kind == PoolKind::Avg {
            // Only cells inside the image count (count_include_pad = 0).
            let dy = k.b.ins().isub(ye, ys);
            let dx = k.b.ins().isub(xe, xs);
            let cnt = k.b.ins().imul(dy, dx);
            let cf = k.b.ins().fcvt_from_sint(F32, cnt);
            r = k.b.ins().fdiv(r, cf);
        }
        r
    });
}

/// Max pooling of outputs `ox0..ox0 + 4` of row `y` of one plane, all of whose tap columns
/// are inside the row ([`VectorSpan`]): per tap an `f32x4` of four outputs (at stride 2, the
/// even lanes of two loads) into a NaN-propagating maximum; window rows outside the image are
/// skipped.
#[allow(clippy::too_many_arguments)]
fn max_pool_vector_f32(k: &mut KernelBuilder, p: &Pool, [h, w, ow]: [i64; 3], xin: Value, xout: Value, y: Value, ox0: Value) {
    use cranelift_codegen::ir::{ConstantData, Endianness};
    let [kh, kw] = p.kernel.map(|v| v as i64);
    let [sh, sw] = p.stride.map(|v| v as i64);
    let (pt, pl) = (p.padding[0] as i64, p.padding[1] as i64);
    let lowest = k.c(F32X4, f32::NEG_INFINITY);
    let acc = k.var(F32X4, lowest);
    let lanes_cast = MemFlags::new().with_endianness(Endianness::Little);
    // Bytes of floats 0 and 2 of each of two vectors: their even lanes, in order.
    let even = (sw == 2).then(|| {
        let mask: Vec<u8> = [0u8, 2, 4, 6].iter().flat_map(|&f| (0..4).map(move |b| f * 4 + b)).collect();
        k.b.func.dfg.immediates.push(ConstantData::from(mask))
    });
    let col0 = k.b.ins().imul_imm_s(ox0, sw);
    for_window_rows_inside(k, y, [kh, sh, pt, h], |k, _, iy| {
        let row = k.b.ins().imul_imm_s(iy, w);
        let row = k.b.ins().iadd(row, col0);
        let mut m = k.b.use_var(acc);
        for kx in 0..kw {
            let at = kx - pl;
            let load = |k: &mut KernelBuilder, d: i64| {
                let idx = k.b.ins().iadd_imm_s(row, d);
                k.load(F32X4, xin, idx)
            };
            let v = match even {
                None => load(k, at),
                Some(mask) => {
                    let a = load(k, at);
                    let b = load(k, at + 4);
                    let a = k.b.ins().bitcast(types::I8X16, lanes_cast, a);
                    let b = k.b.ins().bitcast(types::I8X16, lanes_cast, b);
                    let v = k.b.ins().shuffle(a, b, mask);
                    k.b.ins().bitcast(F32X4, lanes_cast, v)
                }
            };
            m = k.max_nan(m, v);
        }
        k.b.def_var(acc, m);
    });
    let r = k.b.use_var(acc);
    let oi = k.b.ins().imul_imm_s(y, ow);
    let oi = k.b.ins().iadd(oi, ox0);
    k.store(r, xout, oi);
}

/// Every output pixel of every plane of a pooling op: `window(input plane, y0, x0)` computes
/// the value of the window whose top-left input cell is (y0, x0) (negative in the padding).
/// With a `vector` span, its outputs of each row go instead through the vector body
/// `(input plane, output plane, y, ox0)`, which stores them itself.
#[allow(clippy::type_complexity)]
pub(crate) fn for_each_window(
    k: &mut KernelBuilder,
    p: &Pool,
    args: &[Arg],
    out: Arg,
    mut vector: Option<(&VectorSpan, &mut dyn FnMut(&mut KernelBuilder, Value, Value, Value, Value))>,
    window: &mut dyn FnMut(&mut KernelBuilder, Value, Value, Value) -> Value,
) {
    let [n, c, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let [sh, sw] = p.stride.map(|v| v as i64);
    let (pt, pl) = (p.padding[0] as i64, p.padding[1] as i64);
    let scalar_columns = match &vector {
        Some((span, _)) => vec![(0, span.lo), (span.hi, ow)],
        None => vec![(0, ow)],
    };
    k.for_const(0, n * c, |k, plane| {
        let in_off = k.b.ins().imul_imm_s(plane, h * w);
        let xin = k.elem(x, in_off);
        let out_off = k.b.ins().imul_imm_s(plane, oh * ow);
        let xout = k.elem(o, out_off);
        k.for_const(0, oh, |k, y| {
            let y0 = k.b.ins().imul_imm_s(y, sh);
            let y0 = k.b.ins().iadd_imm_s(y0, -pt);
            for &(lo, hi) in &scalar_columns {
                k.for_const(lo, hi, |k, xo| {
                    let x0 = k.b.ins().imul_imm_s(xo, sw);
                    let x0 = k.b.ins().iadd_imm_s(x0, -pl);
                    let r = window(k, xin, y0, x0);
                    let oi = k.b.ins().imul_imm_s(y, ow);
                    let oi = k.b.ins().iadd(oi, xo);
                    k.store(r, xout, oi);
                });
            }
            if let Some((span, body)) = vector.as_mut() {
                let (lo, hi) = (k.int(span.lo), k.int(span.hi));
                k.for_range(lo, hi, span.lanes, |k, ox0| body(k, xin, xout, y, ox0));
            }
        });
    });
}

/// `global_avg_pool` of NCHW planes: with microkernels on, the runtime's `plane_mean` (the
/// interpreter's definition: summed in f64, so quantized graphs may run it natively);
/// otherwise summed here in f32 and scaled by `1/hw`.
pub(crate) fn global_avg_pool(k: &mut KernelBuilder, args: &[Arg], out: Arg) {
    let s = &args[0].ty.shape;
    let hw = (s[2] * s[3]) as i64;
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    if k.runtime.is_some() {
        return k.plane_means(x, o, (s[0] * s[1]) as i64, hw);
    }
    k.for_const(0, (s[0] * s[1]) as i64, |k, plane| {
        let off = k.b.ins().imul_imm_s(plane, hw);
        let p = k.elem(x, off);
        let total = sum(k, p, hw);
        let inv = k.c(F32, 1.0 / hw as f32);
        let r = k.b.ins().fmul(total, inv);
        k.store(r, o, plane);
    });
}

/// Max pooling on int8 codes: the largest code among the taps inside the image (padding
/// never wins, as in the float kernel).
///
/// At strides 1, 2 and 4 the outputs whose every tap column is inside the row, and whose
/// 16-byte loads stay inside it, run `16 / stride` at a time: per tap, one `i8x16` load
/// (its even or every fourth byte picked by a shuffle when strided) and a `pmaxsb`; rows of
/// the window outside the image are skipped. The rest run one output at a time.
pub(crate) fn max_pool_int8(k: &mut KernelBuilder, p: &Pool, args: &[Arg], out: Arg) {
    let [n, c, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let [kh, kw] = p.kernel.map(|v| v as i64);
    let [sh, sw] = p.stride.map(|v| v as i64);
    let (pt, pl) = (p.padding[0] as i64, p.padding[1] as i64);
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let g = Window { h, w, kh, kw, sh, sw, dh: 1, dw: 1, pt, pl };
    // Outputs `vlo..vhi` run as vectors of `lanes`, each step one 16-byte load per tap.
    let lanes = match sw {
        1 | 2 | 4 => 16 / sw,
        _ => 0,
    };
    let span = (lanes > 0).then(|| VectorSpan::of(p, w, ow, lanes, 16)).flatten();
    let (vlo, vhi) = span.map_or((0, 0), |s| (s.lo, s.hi));
    k.for_const(0, n * c, |k, plane| {
        k.for_const(0, oh, |k, y| {
            let out_row = k.b.ins().imul_imm_s(plane, oh);
            let out_row = k.b.ins().iadd(out_row, y);
            let out_row = k.b.ins().imul_imm_s(out_row, ow);
            if vlo < vhi {
                max_pool_int8_scalar(k, &g, x, o, plane, y, out_row, 0, vlo);
                let (lo, hi) = (k.int(vlo), k.int(vhi));
                k.for_range(lo, hi, lanes, |k, ox0| max_pool_int8_vector(k, &g, lanes, x, o, plane, y, out_row, ox0));
                max_pool_int8_scalar(k, &g, x, o, plane, y, out_row, vhi, ow);
            } else {
                max_pool_int8_scalar(k, &g, x, o, plane, y, out_row, 0, ow);
            }
        });
    });
}

/// Outputs `lo..hi` of output row `y` one at a time, each tap tested against the image.
#[allow(clippy::too_many_arguments)]
fn max_pool_int8_scalar(k: &mut KernelBuilder, g: &Window, x: Value, o: Value, plane: Value, y: Value, out_row: Value, lo: i64, hi: i64) {
    k.for_const(lo, hi, |k, xo| {
        let lowest = k.b.ins().iconst(types::I32, i8::MIN as i64);
        let acc = k.var(types::I32, lowest);
        let plane_start = k.b.ins().imul_imm_s(plane, g.h * g.w);
        for_each_tap_inside(k, g, y, xo, |k, _, _, at| {
            let xi = k.b.ins().iadd(plane_start, at);
            let v = load_int(k, DType::I8, x, xi);
            let cur = k.b.use_var(acc);
            let next = k.b.ins().smax(cur, v);
            k.b.def_var(acc, next);
        });
        let v = k.b.use_var(acc);
        let oi = k.b.ins().iadd(out_row, xo);
        store_i8(k, v, o, oi);
    });
}

/// Outputs `ox0..ox0 + lanes` of output row `y`, whose tap columns are all inside the row.
#[allow(clippy::too_many_arguments)]
fn max_pool_int8_vector(k: &mut KernelBuilder, g: &Window, lanes: i64, x: Value, o: Value, plane: Value, y: Value, out_row: Value, ox0: Value) {
    use cranelift_codegen::ir::{ConstantData, Endianness};
    let &Window { h, w, kh, kw, sh, sw, pt, pl, .. } = g;
    let lowest = k.b.ins().iconst(types::I8, i8::MIN as i64);
    let lowest = k.b.ins().splat(types::I8X16, lowest);
    let acc = k.var(types::I8X16, lowest);
    // Lane `j` of the result is byte `j·sw` of a load (the rest are never stored).
    let pick = (sw > 1).then(|| {
        let mask: Vec<u8> = (0..16).map(|j| if j < lanes { (j * sw) as u8 } else { 0 }).collect();
        k.b.func.dfg.immediates.push(ConstantData::from(mask))
    });
    let col0 = k.b.ins().imul_imm_s(ox0, sw);
    for_window_rows_inside(k, y, [kh, sh, pt, h], |k, _, iy| {
        let row = k.b.ins().imul_imm_s(plane, h);
        let row = k.b.ins().iadd(row, iy);
        let row = k.b.ins().imul_imm_s(row, w);
        let row = k.b.ins().iadd(row, col0);
        let at = k.b.ins().iadd(x, row);
        let mut m = k.b.use_var(acc);
        for kx in 0..kw {
            let v = k.b.ins().load(types::I8X16, flags(), at, (kx - pl) as i32);
            let v = match pick {
                Some(mask) => k.b.ins().shuffle(v, v, mask),
                None => v,
            };
            m = k.b.ins().smax(m, v);
        }
        k.b.def_var(acc, m);
    });
    let v = k.b.use_var(acc);
    let oi = k.b.ins().iadd(out_row, ox0);
    let at = k.b.ins().iadd(o, oi);
    match lanes {
        16 => {
            k.b.ins().store(flags(), v, at, 0);
        }
        8 | 4 => {
            let (vty, lty) = if lanes == 8 { (types::I64X2, types::I64) } else { (types::I32X4, types::I32) };
            let cast = k.b.ins().bitcast(vty, MemFlags::new().with_endianness(Endianness::Little), v);
            let low = k.b.ins().extractlane(cast, 0);
            debug_assert_eq!(k.b.func.dfg.value_type(low), lty);
            k.b.ins().store(flags(), low, at, 0);
        }
        _ => unreachable!("vector pooling runs 16, 8 or 4 outputs"),
    }
}
