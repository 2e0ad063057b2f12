//! Kernels for quantized graphs: `quantize`, `dequantize` and `requantize`, int8 matrix
//! products (i8 codes, i32 bias, wrapping i32 accumulation) and max pooling on codes. Each
//! computes the interpreter's bits: conversions use the same IEEE operations in the same
//! order as `ops::quant` (a division by the output scale, not a multiplication by its
//! inverse; rounding half to even; saturation; NaN to 0), and integer accumulation wraps,
//! so any summation order gives the same result.

use crate::ir::TensorType;
use crate::jit::builder::{GemmOperand, IgemmRequantize, KernelBuilder, F32, F32X4};
use crate::jit::memplan::Loc;
use super::window::{for_each_tap_inside, Window};
use crate::jit::builder::DataAddr;
use crate::kernel_plan::{conv_is_pointwise, Kernel};
use crate::jit::epilogue::Arg;
use crate::ops::quant::{Scales, QMAX};
use crate::ops::{Conv2d, MatMul, Product, Requantize};
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData as MemFlags, Value};
use cranelift_frontend::Variable;
use nnc_runtime::{Activation, DType};

const I32: types::Type = types::I32;

pub(super) fn flags() -> MemFlags {
    // Addresses are in bounds by construction, as for every kernel; alignment is not
    // promised (see `builder::flags`).
    MemFlags::new().with_notrap()
}

/// Address of element `index` of a buffer of `bytes`-byte elements.
fn addr(k: &mut KernelBuilder, base: Value, index: Value, bytes: i64) -> Value {
    let off = if bytes == 1 { index } else { k.b.ins().imul_imm_s(index, bytes) };
    k.b.ins().iadd(base, off)
}

/// Element `index` of an i8 or i32 buffer, as an i32.
pub(super) fn load_int(k: &mut KernelBuilder, dtype: DType, base: Value, index: Value) -> Value {
    match dtype {
        DType::I8 => {
            let a = addr(k, base, index, 1);
            k.b.ins().sload8(I32, flags(), a, 0)
        }
        DType::I32 => {
            let a = addr(k, base, index, 4);
            k.b.ins().load(I32, flags(), a, 0)
        }
        DType::F32 | DType::F16 | DType::BF16 => unreachable!("integer operands"),
    }
}

pub(super) fn store_i8(k: &mut KernelBuilder, v: Value, base: Value, index: Value) {
    let a = addr(k, base, index, 1);
    k.b.ins().istore8(flags(), v, a, 0);
}

pub(super) fn store_i32(k: &mut KernelBuilder, v: Value, base: Value, index: Value) {
    let a = addr(k, base, index, 4);
    k.b.ins().store(flags(), v, a, 0);
}

/// Codes converted per vector step: one `i8x16`, four `f32x4` or `i32x4`.
const STEP: i64 = 16;

/// `(x / scale).round_ties_even().clamp(-127, 127) as i8` (`ops::quant::quantize_value`),
/// as an i32 (or `i32x4` for `f32x4` operands). NaN saturates to 0, as Rust's cast does:
/// the clamp keeps it and the saturating conversion maps it to 0.
fn quantize_value(k: &mut KernelBuilder, ty: types::Type, x: Value, scale: Value) -> Value {
    let q = k.b.ins().fdiv(x, scale);
    let q = k.b.ins().nearest(q);
    let (lo, hi) = (k.c(ty, -QMAX), k.c(ty, QMAX));
    let q = k.max_keep_nan(ty, q, lo);
    let q = k.min_keep_nan(ty, q, hi);
    if ty == F32X4 && cfg!(target_arch = "x86_64") {
        // `q` is integral and in range, or NaN: zeroing NaN leaves a plain truncating
        // conversion (one `cvttps2dq`) where the saturating one costs a fix-up sequence.
        let ordered = k.cmp(cranelift_codegen::ir::condcodes::FloatCC::Equal, q, q);
        let zero = k.c(F32X4, 0.0);
        let q = k.select(F32X4, ordered, q, zero);
        return k.b.ins().x86_cvtt2dq(types::I32X4, q);
    }
    k.b.ins().fcvt_to_sint_sat(if ty == F32 { I32 } else { types::I32X4 }, q)
}

/// `Activation::apply` on an `f32` or `f32x4`, with NaN kept.
fn activate(k: &mut KernelBuilder, ty: types::Type, act: Activation, v: Value) -> Value {
    match act {
        Activation::None => v,
        Activation::Relu => {
            let zero = k.c(ty, 0.0);
            k.max_keep_nan(ty, v, zero)
        }
        Activation::Relu6 => {
            let (zero, six) = (k.c(ty, 0.0), k.c(ty, 6.0));
            let v = k.max_keep_nan(ty, v, zero);
            k.min_keep_nan(ty, v, six)
        }
    }
}

/// Four `i32x4` of codes in `-127..=127` narrowed (exactly) to one `i8x16`, stored at code
/// `index` of `base`.
fn store_codes16(k: &mut KernelBuilder, q: [Value; 4], base: Value, index: Value) {
    let lo = k.b.ins().snarrow(q[0], q[1]);
    let hi = k.b.ins().snarrow(q[2], q[3]);
    let codes = k.b.ins().snarrow(lo, hi);
    let a = addr(k, base, index, 1);
    k.b.ins().store(flags(), codes, a, 0);
}

/// Sixteen integers from element `index` of an i8 or i32 buffer as four `f32x4`.
fn load_ints16_as_f32(k: &mut KernelBuilder, dtype: DType, base: Value, index: Value) -> [Value; 4] {
    let ints: [Value; 4] = match dtype {
        DType::I8 => {
            let a = addr(k, base, index, 1);
            let v = k.b.ins().load(types::I8X16, flags(), a, 0);
            let (lo, hi) = (k.b.ins().swiden_low(v), k.b.ins().swiden_high(v));
            [k.b.ins().swiden_low(lo), k.b.ins().swiden_high(lo), k.b.ins().swiden_low(hi), k.b.ins().swiden_high(hi)]
        }
        DType::I32 => {
            let a = addr(k, base, index, 4);
            [0, 16, 32, 48].map(|off| k.b.ins().load(types::I32X4, flags(), a, off))
        }
        DType::F32 | DType::F16 | DType::BF16 => unreachable!("integer operands"),
    };
    ints.map(|v| k.b.ins().fcvt_from_sint(F32X4, v))
}

/// Runs over elements `start..start + len`: sixteen at a time through `vector(index)`, the
/// rest one at a time through `scalar(index)`.
fn for_run(k: &mut KernelBuilder, start: Value, len: i64, vector: &mut dyn FnMut(&mut KernelBuilder, Value), scalar: &mut dyn FnMut(&mut KernelBuilder, Value)) {
    let vec_end = len - len % STEP;
    if vec_end > 0 {
        let end = k.b.ins().iadd_imm_s(start, vec_end);
        k.for_range(start, end, STEP, |k, i| vector(k, i));
    }
    if vec_end < len {
        let (lo, hi) = (k.b.ins().iadd_imm_s(start, vec_end), k.b.ins().iadd_imm_s(start, len));
        k.for_range(lo, hi, 1, |k, i| scalar(k, i));
    }
}

/// Every contiguous run of a value of `ty` that shares one scale, with that scale: the
/// whole value for a per-tensor scale; else `outer × C` runs of `inner` elements along the
/// scales' axis, the scale of channel `c` loaded from the table at `table` (the plan's
/// prepacked scales).
fn for_each_scaled_run(k: &mut KernelBuilder, ty: &TensorType, scales: &Scales, table: Option<DataAddr>, f: &mut dyn FnMut(&mut KernelBuilder, Value, i64, Value)) {
    let n = ty.numel() as i64;
    match table.filter(|_| scales.values.len() > 1) {
        None => {
            let s = k.c(F32, scales.values[0]);
            let zero = k.int(0);
            f(k, zero, n, s);
        }
        Some(table) => {
            let axis = scales.axis;
            let c = ty.shape[axis] as i64;
            let inner: i64 = ty.shape[axis + 1..].iter().product::<usize>() as i64;
            let outer = n / (c * inner);
            let t = k.data_addr(table);
            k.for_const(0, outer, |k, o| {
                k.for_const(0, c, |k, ch| {
                    let s = k.load(F32, t, ch);
                    let row = k.b.ins().imul_imm_s(o, c * inner);
                    let at = k.b.ins().imul_imm_s(ch, inner);
                    let base = k.b.ins().iadd(row, at);
                    f(k, base, inner, s);
                });
            });
        }
    }
}

/// `ops::quant::quantize_value` on every value: the runtime's vector loop
/// (`quant::quantize_slice`) with microkernels on, else sixteen values a step here.
pub(crate) fn quantize(k: &mut KernelBuilder, scale: f32, args: &[Arg], out: Arg) {
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    if k.runtime.is_some() {
        return k.quantize_codes(x, o, out.ty.numel() as i64, scale);
    }
    let (s, s4) = (k.c(F32, scale), k.c(F32X4, scale));
    let zero = k.int(0);
    for_run(
        k,
        zero,
        out.ty.numel() as i64,
        &mut |k, i| {
            let q = [0, 4, 8, 12].map(|d| {
                let at = k.b.ins().iadd_imm_s(i, d);
                let v = k.load(F32X4, x, at);
                quantize_value(k, F32X4, v, s4)
            });
            store_codes16(k, q, o, i);
        },
        &mut |k, i| {
            let v = k.load(F32, x, i);
            let q = quantize_value(k, F32, v, s);
            store_i8(k, q, o, i);
        },
    );
}

/// `q as f32 · scale[c]`.
pub(crate) fn dequantize(k: &mut KernelBuilder, scales: &Scales, args: &[Arg], out: Arg) {
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let dtype = args[0].ty.dtype;
    let table = k.prepacked.first().copied();
    for_each_scaled_run(k, args[0].ty, scales, table, &mut |k, start, len, s| {
        let s4 = k.b.ins().splat(F32X4, s);
        for_run(
            k,
            start,
            len,
            &mut |k, i| {
                let v = load_ints16_as_f32(k, dtype, x, i);
                for (d, v) in v.into_iter().enumerate() {
                    let y = k.b.ins().fmul(v, s4);
                    let at = k.b.ins().iadd_imm_s(i, 4 * d as i64);
                    k.store(y, o, at);
                }
            },
            &mut |k, i| {
                let q = load_int(k, dtype, x, i);
                let v = k.b.ins().fcvt_from_sint(F32, q);
                let v = k.b.ins().fmul(v, s);
                k.store(v, o, i);
            },
        );
    });
}

/// `ops::quant::requantize_value` on every accumulator.
pub(crate) fn requantize(k: &mut KernelBuilder, scales: &Scales, out_scale: f32, act: Activation, args: &[Arg], out: Arg) {
    let table = k.prepacked.first().copied();
    requantize_with(k, scales, table, out_scale, act, args[0], out);
}

/// [`requantize`] of the accumulators `acc`, per-channel scales from `table`.
fn requantize_with(k: &mut KernelBuilder, scales: &Scales, table: Option<DataAddr>, out_scale: f32, act: Activation, acc: Arg, out: Arg) {
    let (x, o) = (k.ptr(acc.loc), k.ptr(out.loc));
    let (os, os4) = (k.c(F32, out_scale), k.c(F32X4, out_scale));
    for_each_scaled_run(k, acc.ty, scales, table, &mut |k, start, len, s| {
        let s4 = k.b.ins().splat(F32X4, s);
        for_run(
            k,
            start,
            len,
            &mut |k, i| {
                let v = load_ints16_as_f32(k, DType::I32, x, i);
                let q = v.map(|v| {
                    let v = k.b.ins().fmul(v, s4);
                    let v = activate(k, F32X4, act, v);
                    quantize_value(k, F32X4, v, os4)
                });
                store_codes16(k, q, o, i);
            },
            &mut |k, i| {
                let acc = load_int(k, DType::I32, x, i);
                let v = k.b.ins().fcvt_from_sint(F32, acc);
                let v = k.b.ins().fmul(v, s);
                let v = activate(k, F32, act, v);
                let q = quantize_value(k, F32, v, os);
                store_i8(k, q, o, i);
            },
        );
    });
}

/// `acc + a·b` in wrapping i32 arithmetic.
pub(super) fn mac(k: &mut KernelBuilder, acc: Value, a: Value, b: Value) -> Value {
    let p = k.b.ins().imul(a, b);
    k.b.ins().iadd(acc, p)
}

/// `acc += pa[ai]·pb[bi]` for int8 codes, into the i32 variable `acc`.
fn mac_codes(k: &mut KernelBuilder, acc: Variable, (pa, ai): (Value, Value), (pb, bi): (Value, Value)) {
    let a = load_int(k, DType::I8, pa, ai);
    let b = load_int(k, DType::I8, pb, bi);
    let cur = k.b.use_var(acc);
    let next = mac(k, cur, a, b);
    k.b.def_var(acc, next);
}

/// An int8 dense layer: `out[r, u] = bias[u] + Σᵢ x[r, i]·w[u, i]`, wrapping, as dot
/// products along the features (both operands are contiguous there).
pub(crate) fn dense(k: &mut KernelBuilder, args: &[Arg], out: Arg) {
    let (units, features) = (args[1].ty.shape[0] as i64, args[1].ty.shape[1] as i64);
    let rows = args[0].ty.numel() as i64 / features;
    let (x, w, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    k.for_const(0, rows, |k, r| {
        let xr = k.b.ins().imul_imm_s(r, features);
        k.for_const(0, units, |k, u| {
            let init = match bias {
                Some(b) => load_int(k, DType::I32, b, u),
                None => k.b.ins().iconst(I32, 0),
            };
            let wr = k.b.ins().imul_imm_s(u, features);
            // Sixteen features a step: codes widened to i16, products summed in pairs into
            // i32 lanes (`pmaddwd`; a pair of i8·i8 products always fits), the lanes added
            // at the end; the remaining features one at a time. Wrapping i32 addition in
            // any order gives the interpreter's sum.
            let vector_end = features - features % STEP;
            let init = if vector_end > 0 {
                let zero = k.b.ins().iconst(I32, 0);
                let zero = k.b.ins().splat(types::I32X4, zero);
                let lanes = k.var(types::I32X4, zero);
                let end = k.int(vector_end);
                let start = k.int(0);
                k.for_range(start, end, STEP, |k, i| {
                    let xa = k.b.ins().iadd(xr, i);
                    let xa = k.b.ins().iadd(x, xa);
                    let wa = k.b.ins().iadd(wr, i);
                    let wa = k.b.ins().iadd(w, wa);
                    let (xv, wv) = (k.b.ins().load(types::I8X16, flags(), xa, 0), k.b.ins().load(types::I8X16, flags(), wa, 0));
                    let mut sum = k.b.use_var(lanes);
                    for half in 0..2 {
                        let (xh, wh) = if half == 0 { (k.b.ins().swiden_low(xv), k.b.ins().swiden_low(wv)) } else { (k.b.ins().swiden_high(xv), k.b.ins().swiden_high(wv)) };
                        // The tree Cranelift lowers to one `pmaddwd`.
                        let (xl, wl) = (k.b.ins().swiden_low(xh), k.b.ins().swiden_low(wh));
                        let (xu, wu) = (k.b.ins().swiden_high(xh), k.b.ins().swiden_high(wh));
                        let (lo, hi) = (k.b.ins().imul(xl, wl), k.b.ins().imul(xu, wu));
                        let pairs = k.b.ins().iadd_pairwise(lo, hi);
                        sum = k.b.ins().iadd(sum, pairs);
                    }
                    k.b.def_var(lanes, sum);
                });
                let sum = k.b.use_var(lanes);
                let total = k.hsum(sum);
                k.b.ins().iadd(init, total)
            } else {
                init
            };
            let acc = k.var(I32, init);
            k.for_const(vector_end, features, |k, i| {
                let xi = k.b.ins().iadd(xr, i);
                let wi = k.b.ins().iadd(wr, i);
                mac_codes(k, acc, (x, xi), (w, wi));
            });
            let v = k.b.use_var(acc);
            let oi = k.b.ins().imul_imm_s(r, units);
            let oi = k.b.ins().iadd(oi, u);
            store_i32(k, v, o, oi);
        });
    });
}

/// An int8 matmul with NumPy batching: `out[.., i, j] = Σₖ a[.., i, k]·b[.., k, j]`.
pub(crate) fn matmul(k: &mut KernelBuilder, args: &[Arg], out: Arg) {
    let (sa, sb) = (&args[0].ty.shape, &args[1].ty.shape);
    let (batches, m, kk, n) = MatMul::dims(sa, sb);
    let (pa, pb, po) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    for bi in 0..batches {
        // Which batch of each operand feeds this one (0 where broadcast), known now.
        let (ia, ib) = MatMul::batch_operands(sa, sb, bi);
        let (a0, b0, o0) = ((ia * m * kk) as i64, (ib * kk * n) as i64, (bi * m * n) as i64);
        let (m, kk, n) = (m as i64, kk as i64, n as i64);
        k.for_const(0, m, |k, i| {
            k.for_const(0, n, |k, j| {
                let zero = k.b.ins().iconst(I32, 0);
                let acc = k.var(I32, zero);
                k.for_const(0, kk, |k, p| {
                    let ai = k.b.ins().imul_imm_s(i, kk);
                    let ai = k.b.ins().iadd(ai, p);
                    let ai = k.b.ins().iadd_imm_s(ai, a0);
                    let bi = k.b.ins().imul_imm_s(p, n);
                    let bi = k.b.ins().iadd(bi, j);
                    let bi = k.b.ins().iadd_imm_s(bi, b0);
                    mac_codes(k, acc, (pa, ai), (pb, bi));
                });
                let v = k.b.use_var(acc);
                let oi = k.b.ins().imul_imm_s(i, n);
                let oi = k.b.ins().iadd(oi, j);
                let oi = k.b.ins().iadd_imm_s(oi, o0);
                store_i32(k, v, po, oi);
            });
        });
    }
}

/// An int8 convolution, direct: each output sums its filter's taps over its group's
/// channels; taps in the padding are skipped by a bounds test (the address is formed only
/// inside the image).
pub(crate) fn conv2d(k: &mut KernelBuilder, c: &Conv2d, args: &[Arg], out: Arg) {
    let [n, ch, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let [f, cg, kh, kw] = args[1].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let fg = f / c.groups as i64;
    let [sh, sw] = c.stride.map(|v| v as i64);
    let [dh, dw] = c.dilation.map(|v| v as i64);
    let (pt, pl) = (c.padding[0] as i64, c.padding[1] as i64);
    let (x, wt, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    let win = Window { h, w, kh, kw, sh, sw, dh, dw, pt, pl };
    k.for_const(0, n, |k, b| {
        k.for_const(0, f, |k, oc| {
            let group = k.b.ins().sdiv_imm_s(oc, fg);
            k.for_const(0, oh, |k, y| {
                k.for_const(0, ow, |k, xo| {
                    let init = match bias {
                        Some(bp) => load_int(k, DType::I32, bp, oc),
                        None => k.b.ins().iconst(I32, 0),
                    };
                    let acc = k.var(I32, init);
                    k.for_const(0, cg, |k, ci| {
                        let cin = k.b.ins().imul_imm_s(group, cg);
                        let cin = k.b.ins().iadd(cin, ci);
                        let plane = k.b.ins().imul_imm_s(b, ch);
                        let plane = k.b.ins().iadd(plane, cin);
                        let plane = k.b.ins().imul_imm_s(plane, h * w);
                        for_each_tap_inside(k, &win, y, xo, |k, ky, kx, at| {
                            let xi = k.b.ins().iadd(at, plane);
                            let wi = k.b.ins().imul_imm_s(oc, cg);
                            let wi = k.b.ins().iadd(wi, ci);
                            let wi = k.b.ins().imul_imm_s(wi, kh * kw);
                            let wi = k.b.ins().iadd_imm_s(wi, ky * kw + kx);
                            mac_codes(k, acc, (x, xi), (wt, wi));
                        });
                    });
                    let v = k.b.use_var(acc);
                    let oi = k.b.ins().imul_imm_s(b, f);
                    let oi = k.b.ins().iadd(oi, oc);
                    let oi = k.b.ins().imul_imm_s(oi, oh);
                    let oi = k.b.ins().iadd(oi, y);
                    let oi = k.b.ins().imul_imm_s(oi, ow);
                    let oi = k.b.ins().iadd(oi, xo);
                    store_i32(k, v, o, oi);
                });
            });
        });
    });
}

/// An int8 product through the runtime's integer GEMM (`Kernel::Int8Gemm`): C is wrapping
/// i32, as the interpreter computes it.
///
/// - convolution, per image and group: `out[F_g, P] = W_g · col` with `col[K, P]` the int8
///   im2col, or the input planes themselves when pointwise; the bias per row (filter);
/// - dense: `out[rows, units] = x · Wᵀ`, the bias per column;
/// - matmul: per batch, `out = a · b`.
///
/// Weights come packed (`Prepack::Int8Weights`) when constant.
pub(crate) fn gemm(k: &mut KernelBuilder, product: &Product, args: &[Arg], out: Arg, scratch: Option<Loc>) {
    let packed = k.prepacked.clone();
    gemm_with(k, product, args, out, scratch, &packed, None);
}

/// A fused int8 product that requantizes (`fused(..) epilogue=["requantize"]`): through the
/// integer GEMM, whose epilogue requantizes each register tile as it stores it; with the
/// other int8 kernels, the accumulators into the scratch the plan reserved, then
/// [`requantize`] from there. The scale table is the last prepacked buffer.
pub(crate) fn product_requantized(k: &mut KernelBuilder, kernel: Kernel, product: &Product, rq: &Requantize, args: &[Arg], out: Arg, scratch: Option<Loc>) {
    let (&table, weights) = k.prepacked.split_last().expect("the scale table is prepacked");
    let weights = weights.to_vec();
    if kernel == Kernel::Int8Gemm {
        return gemm_with(k, product, args, out, scratch, &weights, Some((rq, table)));
    }
    if let (Product::Conv2d(c), Kernel::Int8Depthwise, Some(_)) = (product, kernel, k.runtime) {
        let single = rq.scales.values.len() == 1;
        let requantize = IgemmRequantize { scales: k.data_addr(table), per_row: true, single, out_scale: rq.out_scale, activation: rq.activation };
        return super::int8_depthwise::runtime(k, c, args, out, Some(&requantize));
    }
    let acc_ty = out.ty.with_dtype(DType::I32);
    let acc = Arg { loc: scratch.expect("accumulator scratch is planned"), ty: &acc_ty };
    k.prepacked = weights;
    match (product, kernel) {
        (Product::Conv2d(c), Kernel::Int8Depthwise) => super::int8_depthwise::depthwise(k, c, args, acc),
        (Product::Conv2d(c), _) => conv2d(k, c, args, acc),
        (Product::Dense(_), _) => dense(k, args, acc),
        (Product::MatMul(_), _) => matmul(k, args, acc),
    }
    requantize_with(k, &rq.scales, Some(table), rq.out_scale, rq.activation, acc, out);
}

/// [`gemm`] with the weights `packed` (when constant), requantizing with the scale table at
/// the given address when `rq` is set.
fn gemm_with(k: &mut KernelBuilder, product: &Product, args: &[Arg], out: Arg, scratch: Option<Loc>, packed: &[DataAddr], rq: Option<(&Requantize, DataAddr)>) {
    let (x, w, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    // Bytes per result: codes, or i32 accumulators.
    let ob = if rq.is_some() { 1 } else { 4 };
    // The epilogue for results whose first row (channel, when `per_row`) is `first`. The
    // table holds one scale per channel, or the single one (then read for every result).
    let epilogue = |k: &mut KernelBuilder, first: i64, per_row: bool| {
        rq.map(|(r, table)| {
            let single = r.scales.values.len() == 1;
            let scales = k.data_addr(table.offset(if single { 0 } else { 4 * first }));
            IgemmRequantize { scales, per_row, single, out_scale: r.out_scale, activation: r.activation }
        })
    };
    let at = |k: &mut KernelBuilder, base: Value, bytes: i64| if bytes == 0 { base } else { k.b.ins().iadd_imm_s(base, bytes) };
    match product {
        Product::Conv2d(c) => {
            let [n, ch, h, wd] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
            let [f, cg, kh, kw] = args[1].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
            let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
            let (p, groups) = (oh * ow, c.groups as i64);
            let (fg, kk) = (f / groups, cg * kh * kw);
            let pointwise = conv_is_pointwise(c, &[args[0].ty, args[1].ty]);
            let col = scratch.map(|s| k.ptr(s));
            k.for_const(0, n, |k, b| {
                let img_off = k.b.ins().imul_imm_s(b, ch * h * wd);
                let img = k.b.ins().iadd(x, img_off);
                let out_off = k.b.ins().imul_imm_s(b, f * p * ob);
                let out_img = k.b.ins().iadd(o, out_off);
                for g in 0..groups {
                    let planes = at(k, img, g * cg * h * wd);
                    let b_mat = if pointwise {
                        GemmOperand::Strided(planes, h * wd, 1)
                    } else {
                        let col = col.expect("im2col scratch is planned");
                        let i = |v: usize| v as i64;
                        k.im2col_i8(planes, [cg, h, wd], [kh, kw], c.stride.map(i), c.dilation.map(i), [i(c.padding[0]), i(c.padding[1])], [oh, ow], col);
                        GemmOperand::Strided(col, p, 1)
                    };
                    let a_mat = match packed.get(g as usize) {
                        Some(&pk) => GemmOperand::Packed(k.data_addr(pk)),
                        None => GemmOperand::Strided(at(k, w, g * fg * kk), kk, 1),
                    };
                    let og = at(k, out_img, g * fg * p * ob);
                    let gb = bias.map(|bp| at(k, bp, g * fg * 4));
                    let requantize = epilogue(k, g * fg, true);
                    k.igemm([fg, p, kk], a_mat, b_mat, (og, p, 1), gb, true, requantize.as_ref());
                }
            });
        }
        Product::Dense(_) => {
            let (units, features) = (args[1].ty.shape[0] as i64, args[1].ty.shape[1] as i64);
            let rows = args[0].ty.numel() as i64 / features;
            let b_mat = match packed.first() {
                Some(&pk) => GemmOperand::Packed(k.data_addr(pk)),
                // Wᵀ is W read with row stride 1 and column stride `features`.
                None => GemmOperand::Strided(w, 1, features),
            };
            let requantize = epilogue(k, 0, false);
            k.igemm([rows, units, features], GemmOperand::Strided(x, features, 1), b_mat, (o, units, 1), bias, false, requantize.as_ref());
        }
        Product::MatMul(_) => {
            let (sa, sb) = (&args[0].ty.shape, &args[1].ty.shape);
            let (batches, m, kk, n) = MatMul::dims(sa, sb);
            for bi in 0..batches {
                // Which batch of each operand feeds this one (0 where broadcast), known now.
                let (ia, ib) = MatMul::batch_operands(sa, sb, bi);
                let (m, kk, n) = (m as i64, kk as i64, n as i64);
                let a_mat = GemmOperand::Strided(at(k, x, ia as i64 * m * kk), kk, 1);
                let b_mat = match packed.first() {
                    Some(&pk) => GemmOperand::Packed(k.data_addr(pk)),
                    None => GemmOperand::Strided(at(k, w, ib as i64 * kk * n), n, 1),
                };
                let oc = at(k, o, bi as i64 * m * n * ob);
                let requantize = epilogue(k, 0, false);
                k.igemm([m, n, kk], a_mat, b_mat, (oc, n, 1), None, false, requantize.as_ref());
            }
        }
    }
}

/// Whether a value of this type holds int8 codes or accumulators rather than floats.
pub(crate) fn is_integer(ty: &TensorType) -> bool {
    matches!(ty.dtype, DType::I8 | DType::I32)
}

/// Bytes one element of `dtype` takes in the JIT's memory (floats of every width are stored
/// as f32, as the interpreter stores them).
pub fn stored_bytes(dtype: DType) -> usize {
    match dtype {
        DType::I8 => 1,
        DType::I32 | DType::F32 | DType::F16 | DType::BF16 => 4,
    }
}
