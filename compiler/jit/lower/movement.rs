//! Data movement: transpose, concat and slice copy elements without arithmetic.

use crate::jit::builder::{for_rows, KernelBuilder, F32, F32X4, LANES};
use crate::jit::epilogue::Arg;
use cranelift_codegen::ir::{InstBuilder, Value};
use crate::ops::{strides, Concat, Slice, Transpose};

/// Runs of at most this many floats are copied by straight-line code: a head's 64 floats
/// moved by a loop cost its transposes 10 µs per 32K floats.
const UNROLLED_COPY: i64 = 64;

/// Copy `n` contiguous floats.
pub(crate) fn copy(k: &mut KernelBuilder, src: Value, dst: Value, n: i64) {
    if n <= UNROLLED_COPY {
        for at in (0..n - n % LANES).step_by(LANES as usize).chain(n - n % LANES..n) {
            let ty = if at < n - n % LANES { F32X4 } else { F32 };
            let i = k.int(at);
            let v = k.load(ty, src, i);
            k.store(v, dst, i);
        }
        return;
    }
    k.for_vectorized(n, |k, i, ty| {
        let v = k.load(ty, src, i);
        k.store(v, dst, i);
    });
}

pub(crate) fn transpose(k: &mut KernelBuilder, t: &Transpose, args: &[Arg], out: Arg) {
    let in_strides = strides(&args[0].ty.shape);
    let out_shape = &out.ty.shape;
    if out_shape.is_empty() {
        let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
        copy(k, x, o, 1);
        return;
    }
    let src: Vec<i64> = t.perm.iter().map(|&a| in_strides[a] as i64).collect();
    let dst: Vec<i64> = strides(out_shape).iter().map(|&s| s as i64).collect();
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let last = out_shape.len() - 1;
    let (ls, ld) = (src[last], dst[last]);
    let row = out_shape[last] as i64;
    for_rows(k, out_shape, &[src, dst], &mut |k, offs| {
        let (ps, pd) = (k.elem(x, offs[0]), k.elem(o, offs[1]));
        if ls == 1 {
            copy(k, ps, pd, row);
        } else {
            k.for_const(0, row, |k, i| {
                let si = k.b.ins().imul_imm_s(i, ls);
                let v = k.load(F32, ps, si);
                let di = k.b.ins().imul_imm_s(i, ld);
                k.store(v, pd, di);
            });
        }
    });
}

pub(crate) fn concat(k: &mut KernelBuilder, c: &Concat, args: &[Arg], out: Arg) {
    let outer: i64 = out.ty.shape[..c.axis].iter().product::<usize>() as i64;
    let out_chunk: i64 = out.ty.shape[c.axis..].iter().product::<usize>() as i64;
    let o = k.ptr(out.loc);
    let mut at = 0i64;
    for a in args {
        let chunk: i64 = a.ty.shape[c.axis..].iter().product::<usize>() as i64;
        let src = k.ptr(a.loc);
        k.for_const(0, outer, |k, i| {
            let so = k.b.ins().imul_imm_s(i, chunk);
            let ps = k.elem(src, so);
            let d = k.b.ins().imul_imm_s(i, out_chunk);
            let d = k.b.ins().iadd_imm_s(d, at);
            let pd = k.elem(o, d);
            copy(k, ps, pd, chunk);
        });
        at += chunk;
    }
}

pub(crate) fn slice(k: &mut KernelBuilder, s: &Slice, args: &[Arg], out: Arg) {
    let shape = &args[0].ty.shape;
    let len = shape[s.axis] as i64;
    let inner: i64 = shape[s.axis + 1..].iter().product::<usize>() as i64;
    let outer: i64 = shape[..s.axis].iter().product::<usize>() as i64;
    let (start, count) = s.range(shape[s.axis]);
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    k.for_const(0, outer, |k, ou| {
        k.for_const(0, count as i64, |k, j| {
            // Source index along the axis: start + j·step.
            let idx = k.b.ins().imul_imm_s(j, s.step);
            let idx = k.b.ins().iadd_imm_s(idx, start as i64);
            let src = k.b.ins().imul_imm_s(ou, len);
            let src = k.b.ins().iadd(src, idx);
            let src = k.b.ins().imul_imm_s(src, inner);
            let dst = k.b.ins().imul_imm_s(ou, count as i64);
            let dst = k.b.ins().iadd(dst, j);
            let dst = k.b.ins().imul_imm_s(dst, inner);
            let (ps, pd) = (k.elem(x, src), k.elem(o, dst));
            copy(k, ps, pd, inner);
        });
    });
}
