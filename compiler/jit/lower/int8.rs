//! Kernels for quantized graphs: `quantize`, `dequantize` and `requantize`, int8 matrix
//! products (i8 codes, i32 bias, wrapping i32 accumulation) and max pooling on codes. Each
//! computes the interpreter's bits: conversions use the same IEEE operations in the same
//! order as `ops::quant` (a division by the output scale, not a multiplication by its
//! inverse; rounding half to even; saturation; NaN to 0), and integer accumulation wraps,
//! so any summation order gives the same result.

use crate::ir::TensorType;
use crate::jit::builder::{KernelBuilder, F32};
use crate::jit::epilogue::Arg;
use crate::ops::quant::{Scales, QMAX};
use crate::ops::{Conv2d, MatMul, Pool};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData as MemFlags, Value};
use nnc_runtime::{Activation, DType};

const I32: types::Type = types::I32;

fn flags() -> MemFlags {
    // Addresses are in bounds by construction, as for every kernel.
    MemFlags::trusted()
}

/// Address of element `index` of a buffer of `bytes`-byte elements.
fn addr(k: &mut KernelBuilder, base: Value, index: Value, bytes: i64) -> Value {
    let off = if bytes == 1 { index } else { k.b.ins().imul_imm_s(index, bytes) };
    k.b.ins().iadd(base, off)
}

/// Element `index` of an i8 or i32 buffer, as an i32.
fn load_int(k: &mut KernelBuilder, dtype: DType, base: Value, index: Value) -> Value {
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

fn store_i8(k: &mut KernelBuilder, v: Value, base: Value, index: Value) {
    let a = addr(k, base, index, 1);
    k.b.ins().istore8(flags(), v, a, 0);
}

fn store_i32(k: &mut KernelBuilder, v: Value, base: Value, index: Value) {
    let a = addr(k, base, index, 4);
    k.b.ins().store(flags(), v, a, 0);
}

/// `(x / scale).round_ties_even().clamp(-127, 127) as i8` (`ops::quant::quantize_value`),
/// as an i32. NaN saturates to 0, as Rust's cast does.
fn quantize_value(k: &mut KernelBuilder, x: Value, scale: Value) -> Value {
    let q = k.b.ins().fdiv(x, scale);
    let q = k.b.ins().nearest(q);
    let (lo, hi) = (k.c(F32, -QMAX), k.c(F32, QMAX));
    let q = k.b.ins().fmax(q, lo);
    let q = k.b.ins().fmin(q, hi);
    k.b.ins().fcvt_to_sint_sat(I32, q)
}

/// `Activation::apply`, with NaN kept.
fn activate(k: &mut KernelBuilder, act: Activation, v: Value) -> Value {
    let zero = k.c(F32, 0.0);
    match act {
        Activation::None => v,
        Activation::Relu => {
            let neg = k.b.ins().fcmp(FloatCC::LessThan, v, zero);
            k.b.ins().select(neg, zero, v)
        }
        Activation::Relu6 => {
            let six = k.c(F32, 6.0);
            let neg = k.b.ins().fcmp(FloatCC::LessThan, v, zero);
            let v = k.b.ins().select(neg, zero, v);
            let big = k.b.ins().fcmp(FloatCC::GreaterThan, v, six);
            k.b.ins().select(big, six, v)
        }
    }
}

/// Visit every element of a value of `ty` with the scale that applies to it: `outer × C ×
/// inner` loops along the scales' axis, the scale of channel `c` loaded from the table at
/// `table` (the plan's prepacked scales), or one constant for a per-tensor scale.
fn for_each_scaled(k: &mut KernelBuilder, ty: &TensorType, scales: &Scales, table: Option<u64>, f: &mut dyn FnMut(&mut KernelBuilder, Value, Value)) {
    let n = ty.numel() as i64;
    match table.filter(|_| scales.values.len() > 1) {
        None => {
            let s = k.c(F32, scales.values[0]);
            k.for_const(0, n, |k, i| f(k, i, s));
        }
        Some(table) => {
            let axis = scales.axis;
            let c = ty.shape[axis] as i64;
            let inner: i64 = ty.shape[axis + 1..].iter().product::<usize>() as i64;
            let outer = n / (c * inner);
            let t = k.int(table as i64);
            k.for_const(0, outer, |k, o| {
                k.for_const(0, c, |k, ch| {
                    let s = k.load(F32, t, ch);
                    let row = k.b.ins().imul_imm_s(o, c * inner);
                    let at = k.b.ins().imul_imm_s(ch, inner);
                    let base = k.b.ins().iadd(row, at);
                    k.for_const(0, inner, |k, i| {
                        let idx = k.b.ins().iadd(base, i);
                        f(k, idx, s);
                    });
                });
            });
        }
    }
}

pub(crate) fn quantize(k: &mut KernelBuilder, scale: f32, args: &[Arg], out: Arg) {
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let s = k.c(F32, scale);
    k.for_const(0, out.ty.numel() as i64, |k, i| {
        let v = k.load(F32, x, i);
        let q = quantize_value(k, v, s);
        store_i8(k, q, o, i);
    });
}

/// `q as f32 · scale[c]`.
pub(crate) fn dequantize(k: &mut KernelBuilder, scales: &Scales, args: &[Arg], out: Arg) {
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let dtype = args[0].ty.dtype;
    let table = k.prepacked.first().copied();
    for_each_scaled(k, args[0].ty, scales, table, &mut |k, i, s| {
        let q = load_int(k, dtype, x, i);
        let v = k.b.ins().fcvt_from_sint(F32, q);
        let v = k.b.ins().fmul(v, s);
        k.store(v, o, i);
    });
}

/// `ops::quant::requantize_value` on every accumulator.
pub(crate) fn requantize(k: &mut KernelBuilder, scales: &Scales, out_scale: f32, act: Activation, args: &[Arg], out: Arg) {
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let table = k.prepacked.first().copied();
    let os = k.c(F32, out_scale);
    for_each_scaled(k, args[0].ty, scales, table, &mut |k, i, s| {
        let acc = load_int(k, DType::I32, x, i);
        let v = k.b.ins().fcvt_from_sint(F32, acc);
        let v = k.b.ins().fmul(v, s);
        let v = activate(k, act, v);
        let q = quantize_value(k, v, os);
        store_i8(k, q, o, i);
    });
}

/// `acc + a·b` in wrapping i32 arithmetic.
fn mac(k: &mut KernelBuilder, acc: Value, a: Value, b: Value) -> Value {
    let p = k.b.ins().imul(a, b);
    k.b.ins().iadd(acc, p)
}

/// An int8 dense layer: `out[r, u] = bias[u] + Σᵢ x[r, i]·w[u, i]`, wrapping.
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
            let acc = k.var(I32, init);
            let wr = k.b.ins().imul_imm_s(u, features);
            k.for_const(0, features, |k, i| {
                let xi = k.b.ins().iadd(xr, i);
                let wi = k.b.ins().iadd(wr, i);
                let a = load_int(k, DType::I8, x, xi);
                let b = load_int(k, DType::I8, w, wi);
                let cur = k.b.use_var(acc);
                let next = mac(k, cur, a, b);
                k.b.def_var(acc, next);
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
                    let a = load_int(k, DType::I8, pa, ai);
                    let b = load_int(k, DType::I8, pb, bi);
                    let cur = k.b.use_var(acc);
                    let next = mac(k, cur, a, b);
                    k.b.def_var(acc, next);
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
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = k.b.ins().imul_imm_s(y, sh);
                                let iy = k.b.ins().iadd_imm_s(iy, ky * dh - pt);
                                let ix = k.b.ins().imul_imm_s(xo, sw);
                                let ix = k.b.ins().iadd_imm_s(ix, kx * dw - pl);
                                let y_ok = k.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, iy, h);
                                let x_ok = k.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, ix, w);
                                let inside = k.b.ins().band(y_ok, x_ok);
                                k.if_else(
                                    inside,
                                    |k| {
                                        let xi = k.b.ins().imul_imm_s(iy, w);
                                        let xi = k.b.ins().iadd(xi, ix);
                                        let xi = k.b.ins().iadd(xi, plane);
                                        let wi = k.b.ins().imul_imm_s(oc, cg);
                                        let wi = k.b.ins().iadd(wi, ci);
                                        let wi = k.b.ins().imul_imm_s(wi, kh * kw);
                                        let wi = k.b.ins().iadd_imm_s(wi, ky * kw + kx);
                                        let a = load_int(k, DType::I8, x, xi);
                                        let bw = load_int(k, DType::I8, wt, wi);
                                        let cur = k.b.use_var(acc);
                                        let next = mac(k, cur, a, bw);
                                        k.b.def_var(acc, next);
                                    },
                                    |_| {},
                                );
                            }
                        }
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

/// Max pooling on int8 codes: the largest code among the taps inside the image (padding
/// never wins, as in the float kernel).
pub(crate) fn max_pool(k: &mut KernelBuilder, p: &Pool, args: &[Arg], out: Arg) {
    let [n, c, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let [kh, kw] = p.kernel.map(|v| v as i64);
    let [sh, sw] = p.stride.map(|v| v as i64);
    let (pt, pl) = (p.padding[0] as i64, p.padding[1] as i64);
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    k.for_const(0, n * c, |k, plane| {
        k.for_const(0, oh, |k, y| {
            k.for_const(0, ow, |k, xo| {
                let lowest = k.b.ins().iconst(I32, i8::MIN as i64);
                let acc = k.var(I32, lowest);
                for ky in 0..kh {
                    for kx in 0..kw {
                        let iy = k.b.ins().imul_imm_s(y, sh);
                        let iy = k.b.ins().iadd_imm_s(iy, ky - pt);
                        let ix = k.b.ins().imul_imm_s(xo, sw);
                        let ix = k.b.ins().iadd_imm_s(ix, kx - pl);
                        let y_ok = k.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, iy, h);
                        let x_ok = k.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, ix, w);
                        let inside = k.b.ins().band(y_ok, x_ok);
                        k.if_else(
                            inside,
                            |k| {
                                let xi = k.b.ins().imul_imm_s(plane, h);
                                let xi = k.b.ins().iadd(xi, iy);
                                let xi = k.b.ins().imul_imm_s(xi, w);
                                let xi = k.b.ins().iadd(xi, ix);
                                let v = load_int(k, DType::I8, x, xi);
                                let cur = k.b.use_var(acc);
                                let next = k.b.ins().smax(cur, v);
                                k.b.def_var(acc, next);
                            },
                            |_| {},
                        );
                    }
                }
                let v = k.b.use_var(acc);
                let oi = k.b.ins().imul_imm_s(plane, oh);
                let oi = k.b.ins().iadd(oi, y);
                let oi = k.b.ins().imul_imm_s(oi, ow);
                let oi = k.b.ins().iadd(oi, xo);
                store_i8(k, v, o, oi);
            });
        });
    });
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
