//! Row-major pooling: windows of up to 25 taps unrolled with clamped, masked taps; larger
//! ones as loops over the part inside the image. And global average pooling.

use crate::jit::builder::{KernelBuilder, F32};
use crate::jit::epilogue::Arg;
use super::norm::sum;
use cranelift_codegen::ir::{InstBuilder, Value};
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
        // The window unrolled: each tap reads a clamped (always in-bounds) address and is
        // masked out when it falls in the padding, so the inner code has no loops or branches.
        for_each_window(k, p, args, out, &mut |k, xin, y0, x0| {
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
    for_each_window(k, p, args, out, &mut |k, xin, y0, x0| {
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

/// Every output pixel of every plane of a pooling op: `window(input plane, y0, x0)` computes
/// the value of the window whose top-left input cell is (y0, x0) (negative in the padding).
pub(crate) fn for_each_window(k: &mut KernelBuilder, p: &Pool, args: &[Arg], out: Arg, window: &mut dyn FnMut(&mut KernelBuilder, Value, Value, Value) -> Value) {
    let [n, c, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let [sh, sw] = p.stride.map(|v| v as i64);
    let (pt, pl) = (p.padding[0] as i64, p.padding[1] as i64);
    k.for_const(0, n * c, |k, plane| {
        let in_off = k.b.ins().imul_imm_s(plane, h * w);
        let xin = k.elem(x, in_off);
        let out_off = k.b.ins().imul_imm_s(plane, oh * ow);
        let xout = k.elem(o, out_off);
        k.for_const(0, oh, |k, y| {
            let y0 = k.b.ins().imul_imm_s(y, sh);
            let y0 = k.b.ins().iadd_imm_s(y0, -pt);
            k.for_const(0, ow, |k, xo| {
                let x0 = k.b.ins().imul_imm_s(xo, sw);
                let x0 = k.b.ins().iadd_imm_s(x0, -pl);
                let r = window(k, xin, y0, x0);
                let oi = k.b.ins().imul_imm_s(y, ow);
                let oi = k.b.ins().iadd(oi, xo);
                k.store(r, xout, oi);
            });
        });
    });
}

pub(crate) fn global_avg_pool(k: &mut KernelBuilder, args: &[Arg], out: Arg) {
    let s = &args[0].ty.shape;
    let hw = (s[2] * s[3]) as i64;
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    k.for_const(0, (s[0] * s[1]) as i64, |k, plane| {
        let off = k.b.ins().imul_imm_s(plane, hw);
        let p = k.elem(x, off);
        let total = sum(k, p, hw);
        let inv = k.c(F32, 1.0 / hw as f32);
        let r = k.b.ins().fmul(total, inv);
        k.store(r, o, plane);
    });
}
