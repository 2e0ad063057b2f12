//! Elementwise kernels: unary ops, binary ops with broadcasting, and anchorless fused
//! chains, which all run as one pass over the result.

use crate::jit::builder::{broadcast_strides, for_rows, KernelBuilder, F32};
use crate::jit::epilogue::{apply_binary, apply_unary, Epilogue};
use crate::jit::epilogue::{numel, Arg};
use crate::ops::strides;
use cranelift_codegen::ir::InstBuilder;
use crate::ops::fused::Fused;
use crate::ops::{Binary, Unary};

pub(crate) fn unary(k: &mut KernelBuilder, u: &Unary, args: &[Arg], out: Arg) {
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    k.for_vectorized_split(numel(out.ty), |k, i, ty| {
        let v = k.load(ty, x, i);
        let y = apply_unary(k, &u.kind, ty, v);
        k.store(y, o, i);
    });
}

/// `out = x`, element for element.
pub(crate) fn copy(k: &mut KernelBuilder, x: Arg, out: Arg) {
    let (x, o) = (k.ptr(x.loc), k.ptr(out.loc));
    k.for_vectorized_split(numel(out.ty), |k, i, ty| {
        let v = k.load(ty, x, i);
        k.store(v, o, i);
    });
}

/// A fused op's steps as one vectorized pass that loads the anchor's result (or the chain's
/// seed), applies every step while each vector is in registers, and stores it once.
pub(crate) fn apply_steps(k: &mut KernelBuilder, f: &Fused, seed: Arg, extras: &[Arg], out: Arg) {
    let (s, o) = (k.ptr(seed.loc), k.ptr(out.loc));
    let epi = Epilogue::new(k, &f.steps, extras, out.ty);
    epi.run_over(k, s, o, numel(out.ty));
}

pub(crate) fn binary(k: &mut KernelBuilder, bin: &Binary, args: &[Arg], out: Arg) {
    let (a, b, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let shape = &out.ty.shape;
    if args[0].ty.shape == *shape && args[1].ty.shape == *shape {
        k.for_vectorized_split(numel(out.ty), |k, i, ty| {
            let x = k.load(ty, a, i);
            let y = k.load(ty, b, i);
            let r = apply_binary(k, bin.kind, x, y);
            k.store(r, o, i);
        });
        return;
    }
    if shape.is_empty() {
        let zero = k.int(0);
        let x = k.load(F32, a, zero);
        let y = k.load(F32, b, zero);
        let r = apply_binary(k, bin.kind, x, y);
        k.store(r, o, zero);
        return;
    }
    let sa = broadcast_strides(&args[0].ty.shape, shape);
    let sb = broadcast_strides(&args[1].ty.shape, shape);
    let so: Vec<i64> = strides(shape).iter().map(|&s| s as i64).collect();
    let last = shape.len() - 1;
    let row = shape[last] as i64;
    let (la, lb) = (sa[last], sb[last]);
    for_rows(k, shape, &[sa.clone(), sb.clone(), so], &mut |k, offs| {
        let pa = k.elem(a, offs[0]);
        let pb = k.elem(b, offs[1]);
        let po = k.elem(o, offs[2]);
        // Along the last axis each operand is contiguous (stride 1) or a broadcast scalar.
        k.for_vectorized(row, |k, i, ty| {
            let zero = k.int(0);
            let x = if la == 0 { let s = k.load(F32, pa, zero); if ty == F32 { s } else { k.b.ins().splat(ty, s) } } else { k.load(ty, pa, i) };
            let y = if lb == 0 { let s = k.load(F32, pb, zero); if ty == F32 { s } else { k.b.ins().splat(ty, s) } } else { k.load(ty, pb, i) };
            let r = apply_binary(k, bin.kind, x, y);
            k.store(r, po, i);
        });
    });
}
