//! Attention: the runtime's fused kernel (with microkernels), or an online softmax over keys
//! in Cranelift code.

use crate::jit::builder::{KernelBuilder, F32};
use crate::jit::epilogue::Arg;
use cranelift_codegen::ir::InstBuilder;
use super::dense::dot;
use crate::ops::Attention;

/// Attention through the runtime (`nnc_attention`): its fused kernel (per block of query
/// rows, scores, softmax and the product with `v`, the score block kept in cache), or with
/// `reference` the interpreter's f64 attention.
pub(crate) fn attention_runtime(k: &mut KernelBuilder, a: &Attention, args: &[Arg], out: Arg, reference: bool) {
    let s = &args[0].ty.shape;
    let r = s.len();
    let (sq, d) = (s[r - 2] as i64, s[r - 1] as i64);
    let sk = args[1].ty.shape[r - 2] as i64;
    let dv = args[2].ty.shape[r - 1] as i64;
    let batches: i64 = s[..r - 2].iter().product::<usize>() as i64;
    let (q, kp, v, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(args[2].loc), k.ptr(out.loc));
    k.attention([batches, sq, sk, d, dv], q, kp, v, o, a.causal, reference);
}

/// Scaled dot-product attention with an online softmax (one pass over the keys, rescaling
/// the running sum when the running maximum grows), so no score matrix is stored.
pub(crate) fn attention(k: &mut KernelBuilder, a: &Attention, args: &[Arg], out: Arg) {
    let s = &args[0].ty.shape;
    let r = s.len();
    let (sq, d) = (s[r - 2] as i64, s[r - 1] as i64);
    let sk = args[1].ty.shape[r - 2] as i64;
    let dv = args[2].ty.shape[r - 1] as i64;
    let batches: i64 = s[..r - 2].iter().product::<usize>() as i64;
    let scale = 1.0 / (d as f32).sqrt();
    let (q, kp, v, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(args[2].loc), k.ptr(out.loc));
    k.for_const(0, batches, |k, b| {
        let qo = k.b.ins().imul_imm_s(b, sq * d);
        let ko = k.b.ins().imul_imm_s(b, sk * d);
        let vo = k.b.ins().imul_imm_s(b, sk * dv);
        let oo = k.b.ins().imul_imm_s(b, sq * dv);
        let (qb, kb, vb, ob) = (k.elem(q, qo), k.elem(kp, ko), k.elem(v, vo), k.elem(o, oo));
        k.for_const(0, sq, |k, i| {
            let qr_off = k.b.ins().imul_imm_s(i, d);
            let qr = k.elem(qb, qr_off);
            let or_off = k.b.ins().imul_imm_s(i, dv);
            let orow = k.elem(ob, or_off);
            k.for_vectorized(dv, |k, j, ty| {
                let z = k.c(ty, 0.0);
                k.store(z, orow, j);
            });
            let ninf = k.c(F32, f32::NEG_INFINITY);
            let zero = k.c(F32, 0.0);
            let (mx, l) = (k.var(F32, ninf), k.var(F32, zero));
            let end = if a.causal {
                let i1 = k.b.ins().iadd_imm_s(i, 1);
                let skv = k.int(sk);
                k.b.ins().smin(i1, skv)
            } else {
                k.int(sk)
            };
            let start = k.int(0);
            k.for_range(start, end, 1, |k, j| {
                let kr_off = k.b.ins().imul_imm_s(j, d);
                let kr = k.elem(kb, kr_off);
                let sc = dot(k, qr, kr, d);
                let sv = k.c(F32, scale);
                let sc = k.b.ins().fmul(sc, sv);
                let m = k.b.use_var(mx);
                let m2 = k.max_nan(m, sc);
                let dm = k.b.ins().fsub(m, m2);
                let corr = k.exp(F32, dm);
                let ds = k.b.ins().fsub(sc, m2);
                let p = k.exp(F32, ds);
                let lv = k.b.use_var(l);
                let l2 = k.fma(lv, corr, p);
                k.b.def_var(l, l2);
                k.b.def_var(mx, m2);
                let vr_off = k.b.ins().imul_imm_s(j, dv);
                let vr = k.elem(vb, vr_off);
                k.for_vectorized(dv, |k, c, ty| {
                    let (cv, pv) = if ty == F32 { (corr, p) } else { (k.b.ins().splat(ty, corr), k.b.ins().splat(ty, p)) };
                    let cur = k.load(ty, orow, c);
                    let vv = k.load(ty, vr, c);
                    let scaled = k.b.ins().fmul(cur, cv);
                    let r = k.fma(pv, vv, scaled);
                    k.store(r, orow, c);
                });
            });
            let lv = k.b.use_var(l);
            let one = k.c(F32, 1.0);
            let inv = k.b.ins().fdiv(one, lv);
            k.for_vectorized(dv, |k, c, ty| {
                let iv = if ty == F32 { inv } else { k.b.ins().splat(ty, inv) };
                let cur = k.load(ty, orow, c);
                let r = k.b.ins().fmul(cur, iv);
                k.store(r, orow, c);
            });
        });
    });
}
