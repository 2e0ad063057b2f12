//! Normalizations and softmax: row kernels that reduce a row, then rescale it.

use crate::jit::builder::{KernelBuilder, F32, F32X4};
use crate::jit::epilogue::{numel, Arg};
use super::movement::copy;
use cranelift_codegen::ir::{InstBuilder, Value};
use crate::ops::{BatchNorm, LayerNorm, Softmax};

pub(crate) fn batch_norm(k: &mut KernelBuilder, bn: &BatchNorm, args: &[Arg], out: Arg) {
    let shape = &args[0].ty.shape;
    let c = shape[1] as i64;
    let inner: i64 = shape[2..].iter().product::<usize>() as i64;
    let outer = shape[0] as i64;
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let (g, be, mean, var) = (k.ptr(args[1].loc), k.ptr(args[2].loc), k.ptr(args[3].loc), k.ptr(args[4].loc));
    k.for_const(0, outer, |k, n| {
        k.for_const(0, c, |k, ch| {
            let eps = k.c(F32, bn.eps as f32);
            let v = k.load(F32, var, ch);
            let ve = k.b.ins().fadd(v, eps);
            let sd = k.b.ins().sqrt(ve);
            let gv = k.load(F32, g, ch);
            let scale = k.b.ins().fdiv(gv, sd);
            let mv = k.load(F32, mean, ch);
            let bv = k.load(F32, be, ch);
            let ms = k.b.ins().fmul(mv, scale);
            let shift = k.b.ins().fsub(bv, ms);
            let row = k.b.ins().imul_imm_s(n, c);
            let row = k.b.ins().iadd(row, ch);
            let off = k.b.ins().imul_imm_s(row, inner);
            let (xr, or) = (k.elem(x, off), k.elem(o, off));
            k.for_vectorized(inner, |k, i, ty| {
                let xv = k.load(ty, xr, i);
                let (s, t) = if ty == F32 { (scale, shift) } else { (k.b.ins().splat(ty, scale), k.b.ins().splat(ty, shift)) };
                let r = k.fma(xv, s, t);
                k.store(r, or, i);
            });
        });
    });
}

/// Sum of `n` contiguous floats.
pub(crate) fn sum(k: &mut KernelBuilder, p: Value, n: i64) -> Value {
    let zero4 = k.c(F32X4, 0.0);
    let zero = k.c(F32, 0.0);
    let (acc4, acc) = (k.var(F32X4, zero4), k.var(F32, zero));
    k.for_vectorized(n, |k, i, ty| {
        let v = k.load(ty, p, i);
        let var = if ty == F32 { acc } else { acc4 };
        let cur = k.b.use_var(var);
        let next = k.b.ins().fadd(cur, v);
        k.b.def_var(var, next);
    });
    let v = k.b.use_var(acc4);
    let s = k.hsum(v);
    let t = k.b.use_var(acc);
    k.b.ins().fadd(s, t)
}

/// Layer normalization through the runtime (`nnc_layer_norm`): its rows at full vector width
/// split across threads, or with `reference` the interpreter's f64 rows.
pub(crate) fn layer_norm_runtime(k: &mut KernelBuilder, ln: &LayerNorm, args: &[Arg], out: Arg, reference: bool) {
    let d = *args[0].ty.shape.last().expect("rank checked") as i64;
    let rows = numel(args[0].ty) / d;
    let (x, wt, bs, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(args[2].loc), k.ptr(out.loc));
    k.layer_norm([rows, d], x, wt, bs, o, ln.eps, reference);
}

pub(crate) fn layer_norm(k: &mut KernelBuilder, ln: &LayerNorm, args: &[Arg], out: Arg) {
    if k.runtime.is_some() {
        return layer_norm_runtime(k, ln, args, out, false);
    }
    let d = *args[0].ty.shape.last().expect("rank checked") as i64;
    let rows = numel(args[0].ty) / d;
    let (x, wt, bs, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(args[2].loc), k.ptr(out.loc));
    k.for_const(0, rows, |k, r| {
        let off = k.b.ins().imul_imm_s(r, d);
        let (xr, or) = (k.elem(x, off), k.elem(o, off));
        let total = sum(k, xr, d);
        let inv_d = k.c(F32, 1.0 / d as f32);
        let mean = k.b.ins().fmul(total, inv_d);
        // Variance from centred values (two passes): stable where E[x²]−E[x]² is not.
        let zero4 = k.c(F32X4, 0.0);
        let zero = k.c(F32, 0.0);
        let (acc4, acc) = (k.var(F32X4, zero4), k.var(F32, zero));
        k.for_vectorized(d, |k, i, ty| {
            let v = k.load(ty, xr, i);
            let m = if ty == F32 { mean } else { k.b.ins().splat(ty, mean) };
            let c = k.b.ins().fsub(v, m);
            let var = if ty == F32 { acc } else { acc4 };
            let cur = k.b.use_var(var);
            let next = k.fma(c, c, cur);
            k.b.def_var(var, next);
        });
        let v4 = k.b.use_var(acc4);
        let sq = k.hsum(v4);
        let t = k.b.use_var(acc);
        let sq = k.b.ins().fadd(sq, t);
        let var = k.b.ins().fmul(sq, inv_d);
        let eps = k.c(F32, ln.eps as f32);
        let ve = k.b.ins().fadd(var, eps);
        let sd = k.b.ins().sqrt(ve);
        let one = k.c(F32, 1.0);
        let inv = k.b.ins().fdiv(one, sd);
        k.for_vectorized(d, |k, i, ty| {
            let v = k.load(ty, xr, i);
            let (m, s) = if ty == F32 { (mean, inv) } else { (k.b.ins().splat(ty, mean), k.b.ins().splat(ty, inv)) };
            let c = k.b.ins().fsub(v, m);
            let nrm = k.b.ins().fmul(c, s);
            let g = k.load(ty, wt, i);
            let bb = k.load(ty, bs, i);
            let r = k.fma(nrm, g, bb);
            k.store(r, or, i);
        });
    });
}

pub(crate) fn softmax(k: &mut KernelBuilder, s: &Softmax, args: &[Arg], out: Arg) {
    let shape = &args[0].ty.shape;
    let len = shape[s.axis] as i64;
    let inner: i64 = shape[s.axis + 1..].iter().product::<usize>() as i64;
    let outer: i64 = shape[..s.axis].iter().product::<usize>() as i64;
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    if inner == 1 {
        // Contiguous lanes (softmax over the last axis): copy, then the vectorized row softmax.
        k.for_const(0, outer, |k, ou| {
            let off = k.b.ins().imul_imm_s(ou, len);
            let (xr, or) = (k.elem(x, off), k.elem(o, off));
            copy(k, xr, or, len);
            let n = k.int(len);
            softmax_row(k, or, n, 1.0);
        });
        return;
    }
    k.for_const(0, outer, |k, ou| {
        k.for_const(0, inner, |k, inn| {
            // Element j of this lane is at (ou·len + j)·inner + inn.
            let base = k.b.ins().imul_imm_s(ou, len * inner);
            let base = k.b.ins().iadd(base, inn);
            let at = |k: &mut KernelBuilder, j: Value| {
                let s = k.b.ins().imul_imm_s(j, inner);
                k.b.ins().iadd(base, s)
            };
            let ninf = k.c(F32, f32::NEG_INFINITY);
            let max = k.var(F32, ninf);
            k.for_const(0, len, |k, j| {
                let idx = at(k, j);
                let v = k.load(F32, x, idx);
                let m = k.b.use_var(max);
                let m2 = k.max_nan(m, v);
                k.b.def_var(max, m2);
            });
            let zero = k.c(F32, 0.0);
            let total = k.var(F32, zero);
            k.for_const(0, len, |k, j| {
                let idx = at(k, j);
                let v = k.load(F32, x, idx);
                let m = k.b.use_var(max);
                let d = k.b.ins().fsub(v, m);
                let e = k.exp(F32, d);
                k.store(e, o, idx);
                let t = k.b.use_var(total);
                let t2 = k.b.ins().fadd(t, e);
                k.b.def_var(total, t2);
            });
            let t = k.b.use_var(total);
            let one = k.c(F32, 1.0);
            let inv = k.b.ins().fdiv(one, t);
            k.for_const(0, len, |k, j| {
                let idx = at(k, j);
                let e = k.load(F32, o, idx);
                let r = k.b.ins().fmul(e, inv);
                k.store(r, o, idx);
            });
        });
    });
}

/// Numerically stable softmax of `len` contiguous floats at `row`, in place, after scaling
/// them by `scale`: vectorized max, exponentials and normalization.
pub(crate) fn softmax_row(k: &mut KernelBuilder, row: Value, len: Value, scale: f32) {
    let ninf4 = k.c(F32X4, f32::NEG_INFINITY);
    let ninf = k.c(F32, f32::NEG_INFINITY);
    let (mx4, mx) = (k.var(F32X4, ninf4), k.var(F32, ninf));
    k.for_vectorized_dyn(len, |k, i, ty| {
        let v = k.load(ty, row, i);
        let var = if ty == F32 { mx } else { mx4 };
        let cur = k.b.use_var(var);
        let next = k.max_nan(cur, v);
        k.b.def_var(var, next);
    });
    let m4 = k.b.use_var(mx4);
    let m4 = k.hmax(m4);
    let m1 = k.b.use_var(mx);
    let m = k.max_nan(m4, m1);
    let zero4 = k.c(F32X4, 0.0);
    let zero = k.c(F32, 0.0);
    let (s4, s1) = (k.var(F32X4, zero4), k.var(F32, zero));
    k.for_vectorized_dyn(len, |k, i, ty| {
        let v = k.load(ty, row, i);
        let (mv, sv) = if ty == F32 { (m, k.c(F32, scale)) } else { (k.b.ins().splat(ty, m), k.c(ty, scale)) };
        // exp(scale·(v − max)): the max of scaled scores is scale·max as scale > 0.
        let d = k.b.ins().fsub(v, mv);
        let d = k.b.ins().fmul(d, sv);
        let e = k.exp(ty, d);
        k.store(e, row, i);
        let var = if ty == F32 { s1 } else { s4 };
        let cur = k.b.use_var(var);
        let next = k.b.ins().fadd(cur, e);
        k.b.def_var(var, next);
    });
    let t4 = k.b.use_var(s4);
    let t4 = k.hsum(t4);
    let t1 = k.b.use_var(s1);
    let total = k.b.ins().fadd(t4, t1);
    let one = k.c(F32, 1.0);
    let inv = k.b.ins().fdiv(one, total);
    k.for_vectorized_dyn(len, |k, i, ty| {
        let v = k.load(ty, row, i);
        let iv = if ty == F32 { inv } else { k.b.ins().splat(ty, inv) };
        let r = k.b.ins().fmul(v, iv);
        k.store(r, row, i);
    });
}
