//! Dense layers and matmuls: through the runtime GEMM, as dot products (few rows), or, without
//! microkernels, through Cranelift's own register tiles over a packed panel.

use crate::ir::TensorType;
use crate::jit::builder::{GemmOperand, KernelBuilder, broadcast_strides, for_rows, F32, F32X4, LANES};
use crate::jit::epilogue::{apply_in_place, Epilogue};
use crate::jit::epilogue::{numel, Arg};
use crate::jit::memplan::Loc;
use crate::ops::strides;
use cranelift_codegen::ir::{InstBuilder, Value};

/// Dot product of `n` contiguous floats at `a` and `b`: four independent `f32x4`
/// accumulators over 16-float steps (one chain would wait on FMA latency), then 4-float
/// steps, then single floats.
pub(crate) fn dot(k: &mut KernelBuilder, a: Value, b: Value, n: i64) -> Value {
    let zero4 = k.c(F32X4, 0.0);
    let zero = k.c(F32, 0.0);
    let accs: Vec<_> = (0..4).map(|_| k.var(F32X4, zero4)).collect();
    let acc = k.var(F32, zero);
    let wide_end = n - n % 16;
    if wide_end > 0 {
        let (l, h) = (k.int(0), k.int(wide_end));
        k.for_range(l, h, 16, |k, i| {
            for (u, &var) in accs.iter().enumerate() {
                let iu = k.b.ins().iadd_imm_s(i, 4 * u as i64);
                let x = k.load(F32X4, a, iu);
                let y = k.load(F32X4, b, iu);
                let cur = k.b.use_var(var);
                let next = k.fma(x, y, cur);
                k.b.def_var(var, next);
            }
        });
    }
    let vec_end = n - n % LANES;
    if vec_end > wide_end {
        let (l, h) = (k.int(wide_end), k.int(vec_end));
        k.for_range(l, h, LANES, |k, i| {
            let x = k.load(F32X4, a, i);
            let y = k.load(F32X4, b, i);
            let cur = k.b.use_var(accs[0]);
            let next = k.fma(x, y, cur);
            k.b.def_var(accs[0], next);
        });
    }
    if n > vec_end {
        let (l, h) = (k.int(vec_end), k.int(n));
        k.for_range(l, h, 1, |k, i| {
            let x = k.load(F32, a, i);
            let y = k.load(F32, b, i);
            let cur = k.b.use_var(acc);
            let next = k.fma(x, y, cur);
            k.b.def_var(acc, next);
        });
    }
    let v: Vec<Value> = accs.iter().map(|&var| k.b.use_var(var)).collect();
    let s01 = k.b.ins().fadd(v[0], v[1]);
    let s23 = k.b.ins().fadd(v[2], v[3]);
    let s = k.b.ins().fadd(s01, s23);
    let s = k.hsum(s);
    let tail = k.b.use_var(acc);
    k.b.ins().fadd(s, tail)
}

pub(crate) fn dense(k: &mut KernelBuilder, args: &[Arg], out: Arg) {
    let (units, features) = (args[1].ty.shape[0] as i64, args[1].ty.shape[1] as i64);
    let rows = numel(args[0].ty) / features;
    let (x, w, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    k.for_const(0, rows, |k, r| {
        let xo = k.b.ins().imul_imm_s(r, features);
        let xr = k.elem(x, xo);
        k.for_const(0, units, |k, u| {
            let wo = k.b.ins().imul_imm_s(u, features);
            let wr = k.elem(w, wo);
            let mut s = dot(k, xr, wr, features);
            if let Some(bp) = bias {
                let bv = k.load(F32, bp, u);
                s = k.b.ins().fadd(s, bv);
            }
            let oi = k.b.ins().imul_imm_s(r, units);
            let oi = k.b.ins().iadd(oi, u);
            k.store(s, o, oi);
        });
    });
}

/// `out[rows, units] = x[rows, features] · weightᵀ + bias` as the runtime's full-width dot
/// products (`nnc_gemv`), which apply the bias and `epi` as they store; constant weights
/// were blocked at compile time (`Prepack::GemvBlocks`).
pub(crate) fn dense_gemv(k: &mut KernelBuilder, args: &[Arg], out: Arg, epi: &Epilogue) {
    let (units, features) = (args[1].ty.shape[0] as i64, args[1].ty.shape[1] as i64);
    let rows = numel(args[0].ty) / features;
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let (w, blocked) = match k.prepacked.first() {
        Some(&packed) => (k.data_addr(packed), true),
        None => (k.ptr(args[1].loc), false),
    };
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    let zero = k.int(0);
    let (tail, steps_left) = epi.gemm_tail(k, bias, false, zero);
    k.gemv([rows, units, features], x, (w, blocked), o, &tail);
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

/// `out[rows, units] = x[rows, features] · weightᵀ + bias` as one product, the bias (one per
/// column) and `epi` applied by the GEMM.
pub(crate) fn dense_gemm(k: &mut KernelBuilder, args: &[Arg], out: Arg, epi: &Epilogue) {
    let (units, features) = (args[1].ty.shape[0] as i64, args[1].ty.shape[1] as i64);
    let rows = numel(args[0].ty) / features;
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    let zero = k.int(0);
    let (tail, steps_left) = epi.gemm_tail(k, bias, false, zero);
    // weightᵀ, packed at compile time (`Prepack::GemmB`), or the weight read with row stride
    // 1 and column stride `features`. (The weight's own address only when it is read: the
    // executable frees constants no kernel asked for.)
    let b = match k.prepacked.first() {
        Some(&packed) => GemmOperand::Packed(k.data_addr(packed)),
        None => GemmOperand::Strided(k.ptr(args[1].loc), 1, features),
    };
    k.gemm([rows, units, features], GemmOperand::Strided(x, features, 1), b, (o, units, 1), false, &tail);
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

/// The sizes of a NumPy matmul (1-D operands promoted) and the per-batch element strides of
/// each operand (0 where broadcast) and of the result, over the batch axes plus a trailing
/// axis of length 1 so that `for_rows` visits every batch once.
pub(crate) struct MatMulGeometry {
    m: i64,
    kk: i64,
    n: i64,
    loop_shape: Vec<usize>,
    strides: [Vec<i64>; 3],
}

pub(crate) fn matmul_geometry(a: &TensorType, b: &TensorType) -> MatMulGeometry {
    let (sa, sb) = (&a.shape, &b.shape);
    let a2: Vec<usize> = if sa.len() == 1 { vec![1, sa[0]] } else { sa.clone() };
    let b2: Vec<usize> = if sb.len() == 1 { vec![sb[0], 1] } else { sb.clone() };
    let (m, kk) = (a2[a2.len() - 2] as i64, a2[a2.len() - 1] as i64);
    let n = b2[b2.len() - 1] as i64;
    let batch = crate::ops::broadcast_shapes(&a2[..a2.len() - 2], &b2[..b2.len() - 2]).expect("checked by the shape rule");
    let mut loop_shape = batch.clone();
    loop_shape.push(1);
    let stride_for = |full: &[usize], mat: i64| -> Vec<i64> {
        let mut bs = broadcast_strides(&full[..full.len() - 2], &batch).iter().map(|s| s * mat).collect::<Vec<_>>();
        bs.push(0);
        bs
    };
    let mut o_str: Vec<i64> = strides(&batch).iter().map(|&s| s as i64 * m * n).collect();
    o_str.push(0);
    MatMulGeometry { m, kk, n, loop_shape, strides: [stride_for(&a2, m * kk), stride_for(&b2, kk * n), o_str] }
}

pub(crate) fn matmul(k: &mut KernelBuilder, args: &[Arg], out: Arg, panel: Loc) {
    let MatMulGeometry { m, kk, n, loop_shape: shape, strides: [a_str, b_str, o_str] } = matmul_geometry(args[0].ty, args[1].ty);
    let (a, b, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let panel = k.ptr(panel);
    let (full_m, full_n) = (m - m % TILE_M, n - n % TILE_N);
    for_rows(k, &shape, &[a_str, b_str, o_str], &mut |k, offs| {
        let (pa, pb, po) = (k.elem(a, offs[0]), k.elem(b, offs[1]), k.elem(o, offs[2]));
        // Whole 6×8 tiles in registers, K in slabs of `kc` whose 8-column panels of B are
        // copied contiguous first (rows of B a power-of-two apart would fight over the same
        // cache sets); the rows and columns left over take the loops below.
        if full_m > 0 {
            let kc_max = k.tile.kc.max(1) as i64;
            for pc in (0..kk).step_by(kc_max as usize) {
                let kc = kc_max.min(kk - pc);
                k.for_const(0, full_n / TILE_N, |k, tj| {
                    let j0 = k.b.ins().imul_imm_s(tj, TILE_N);
                    let src_off = k.b.ins().iadd_imm_s(j0, pc * n);
                    let src = k.elem(pb, src_off);
                    k.for_const(0, kc, |k, p| {
                        let so = k.b.ins().imul_imm_s(p, n);
                        let row = k.elem(src, so);
                        let v0 = k.load_at(F32X4, row, 0);
                        let v1 = k.load_at(F32X4, row, 4);
                        let d = k.b.ins().imul_imm_s(p, TILE_N);
                        k.store(v0, panel, d);
                        let d4 = k.b.ins().iadd_imm_s(d, 4);
                        k.store(v1, panel, d4);
                    });
                    k.for_const(0, full_m / TILE_M, |k, ti| {
                        let i0 = k.b.ins().imul_imm_s(ti, TILE_M);
                        gemm_tile(k, pa, panel, po, i0, j0, pc, kc, kk, n);
                    });
                });
            }
        }
        matmul_region(k, pa, pb, po, (full_m, m), (0, n), kk, n);
        matmul_region(k, pa, pb, po, (0, full_m), (full_n, n), kk, n);
    });
}

pub(crate) fn matmul_gemm(k: &mut KernelBuilder, args: &[Arg], out: Arg, epi: &Epilogue) {
    let MatMulGeometry { m, kk, n, loop_shape: shape, strides: [a_str, b_str, o_str] } = matmul_geometry(args[0].ty, args[1].ty);
    let (a, b, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let mut steps_left = false;
    for_rows(k, &shape, &[a_str, b_str, o_str], &mut |k, offs| {
        let (pa, pb, po) = (k.elem(a, offs[0]), k.elem(b, offs[1]), k.elem(o, offs[2]));
        let (tail, left) = epi.gemm_tail(k, None, false, offs[2]);
        steps_left = left;
        k.gemm([m, n, kk], GemmOperand::Strided(pa, kk, 1), GemmOperand::Strided(pb, n, 1), (po, n, 1), false, &tail);
    });
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

/// Rows and columns of the register tile of the Cranelift-generated GEMM: 12 `f32x4`
/// accumulators, two vectors of B and a broadcast of A fit x86-64's 16 xmm registers.
pub(crate) const TILE_M: i64 = crate::target::CRANELIFT_TILE.0 as i64;

pub(crate) const TILE_N: i64 = crate::target::CRANELIFT_TILE.1 as i64;

/// `C[i0..i0+6, j0..j0+8] (+)= A[i0.., pc..pc+kc]·panel`, with row-major A (`m × kk`) and C
/// (`m × n`) and `panel` the packed `kc × 8` slab of B. The first slab (`pc == 0`) writes C,
/// later ones add to it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_tile(k: &mut KernelBuilder, a: Value, panel: Value, c: Value, i0: Value, j0: Value, pc: i64, kc: i64, kk: i64, n: i64) {
    let c_row0 = k.b.ins().imul_imm_s(i0, n);
    let c_row0 = k.b.ins().iadd(c_row0, j0);
    let c0 = k.elem(c, c_row0);
    let mut accs = Vec::with_capacity((TILE_M * 2) as usize);
    for r in 0..TILE_M {
        for h in 0..2 {
            let init = if pc == 0 { k.c(F32X4, 0.0) } else { k.load_at(F32X4, c0, r * n + 4 * h) };
            accs.push(k.var(F32X4, init));
        }
    }
    let a_row0 = k.b.ins().imul_imm_s(i0, kk);
    let a_row0 = k.b.ins().iadd_imm_s(a_row0, pc);
    let a0 = k.elem(a, a_row0);
    k.for_const(0, kc, |k, p| {
        let b_off = k.b.ins().imul_imm_s(p, TILE_N);
        let brow = k.elem(panel, b_off);
        let bv0 = k.load_at(F32X4, brow, 0);
        let bv1 = k.load_at(F32X4, brow, 4);
        let acol = k.elem(a0, p);
        // The same A element is loaded once per FMA, through two different base addresses so
        // that Cranelift does not merge the loads: x86's FMA overwrites a multiplicand, and a
        // broadcast used by one FMA only can be that operand without a register copy or spill.
        // (The FMA's result then sits in the broadcast's register, so the loop's back edge
        // moves the 12 accumulators into place; unrolling the loop to halve those moves made
        // Cranelift hoist the second step's loads and spill.)
        let one = k.int(1);
        let acol_next = k.elem(acol, one);
        for r in 0..TILE_M {
            for (h, bv) in [bv0, bv1].into_iter().enumerate() {
                let av = if h == 0 { k.load_at(F32, acol, r * kk) } else { k.load_at(F32, acol_next, r * kk - 1) };
                let av = k.b.ins().splat(F32X4, av);
                let var = accs[(2 * r) as usize + h];
                let cur = k.b.use_var(var);
                let next = k.fma(av, bv, cur);
                k.b.def_var(var, next);
            }
        }
    });
    for r in 0..TILE_M {
        for h in 0..2 {
            let v = k.b.use_var(accs[(2 * r + h) as usize]);
            let at = k.int(r * n + 4 * h);
            k.store(v, c0, at);
        }
    }
}

/// `C[rows, cols] = A[rows, :]·B[:, cols]` one row at a time: zero the row, then add each
/// `A[i, p]·B[p, cols]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_region(k: &mut KernelBuilder, pa: Value, pb: Value, po: Value, rows: (i64, i64), cols: (i64, i64), kk: i64, n: i64) {
    let width = cols.1 - cols.0;
    if rows.0 >= rows.1 || width <= 0 {
        return;
    }
    let (pb, po) = {
        let c0 = k.int(cols.0);
        (k.elem(pb, c0), k.elem(po, c0))
    };
    k.for_const(rows.0, rows.1, |k, i| {
            let orow_off = k.b.ins().imul_imm_s(i, n);
            let orow = k.elem(po, orow_off);
            k.for_vectorized(width, |k, j, ty| {
                let z = k.c(ty, 0.0);
                k.store(z, orow, j);
            });
            k.for_const(0, kk, |k, p| {
                let ai = k.b.ins().imul_imm_s(i, kk);
                let ai = k.b.ins().iadd(ai, p);
                let av = k.load(F32, pa, ai);
                let brow_off = k.b.ins().imul_imm_s(p, n);
                let brow = k.elem(pb, brow_off);
                k.for_vectorized(width, |k, j, ty| {
                    let s = if ty == F32 { av } else { k.b.ins().splat(ty, av) };
                    let bv = k.load(ty, brow, j);
                    let cur = k.load(ty, orow, j);
                    let r = k.fma(s, bv, cur);
                    k.store(r, orow, j);
                });
            });
    });
}
