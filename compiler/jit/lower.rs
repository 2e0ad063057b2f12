//! Op → Cranelift lowering: one kernel function per op node, with every shape, stride and
//! offset baked in as constants. Loops run over exactly the elements of the verified shapes,
//! so every access is in bounds by construction. Inner loops over contiguous memory use
//! `f32x4` with a scalar remainder.
//!
//! These kernels are the straightforward, correct baseline; fusion, blocked layouts and
//! register-blocked GEMM microkernels come on top of them.

use super::kernel::{GemmTail, Kernel, RuntimeFns, F32, F32X4, LANES};
use nnc_runtime::gemm::Activation;
use super::{lower_channels, lower_lstm};
use super::memplan::Loc;
use crate::ir::{Layout, TensorType};
use crate::target::Tile;
use crate::ops::fused::{Fused, Step};
use crate::ops::{strides, Attention, BatchNorm, Binary, BinaryKind, Concat, Conv2d, LayerNorm, Op, Pool, PoolKind, Slice, Softmax, Transpose, Unary, UnaryKind};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Type, Value};

/// A tensor as a kernel sees it: where it lives and its type.
#[derive(Clone, Copy)]
pub struct Arg<'t> {
    pub loc: Loc,
    pub ty: &'t TensorType,
}

/// Whether a convolution runs as im2col + GEMM (with microkernels on): worth it once each
/// output sums enough products; depthwise-like convolutions stay on the direct loops.
pub fn conv_uses_gemm(operands: &[&TensorType], ukernels: bool) -> bool {
    let w = &operands[1].shape;
    ukernels && w[1] * w[2] * w[3] >= 16
}

/// Whether a 1×1, stride-1, unpadded convolution can multiply the input planes directly.
pub fn conv_is_pointwise(c: &Conv2d, operands: &[&TensorType]) -> bool {
    let w = &operands[1].shape;
    w[2] == 1 && w[3] == 1 && c.stride == [1, 1] && c.padding == [0; 4]
}

/// Extra arena bytes an op needs while it runs.
/// `weights_constant`: every operand but the first is a constant, so weights can be
/// repacked at compile time instead of in scratch.
pub fn scratch_bytes(op: &Op, operands: &[&TensorType], out: &TensorType, ukernels: bool, tile: &Tile, weights_constant: bool) -> usize {
    match op {
        // Channel-vector convolutions gather their patches while packing.
        Op::Conv2d(_) if operands[0].layout != Layout::RowMajor => 0,
        Op::Fused(f) => f.anchor.as_ref().map_or(0, |a| scratch_bytes(a, &operands[..f.anchor_operands(operands.len())], out, ukernels, tile, weights_constant)),
        // The gate pre-activations of a row, the cell state of every batch row, and the zero
        // initial hidden state.
        Op::Lstm(l) => lower_lstm::scratch_floats(operands[0].shape[1], operands[0].shape[2], l.hidden, weights_constant) * 4,
        // One group's unfolded image.
        Op::Conv2d(c) if conv_uses_gemm(operands, ukernels) && !conv_is_pointwise(c, operands) => {
            let w = &operands[1].shape;
            w[1] * w[2] * w[3] * out.shape[2] * out.shape[3] * 4
        }
        // A packed kc × 8 panel of B for the register-tiled GEMM.
        Op::MatMul(_) if !ukernels => tile.kc * TILE_N as usize * 4,
        // One score matrix, reused across the batch.
        Op::Attention(_) if ukernels => {
            let (q, k) = (&operands[0].shape, &operands[1].shape);
            q[q.len() - 2] * k[k.len() - 2] * 4
        }
        Op::Conv2d(_)
        | Op::Dense(_)
        | Op::MatMul(_)
        | Op::BatchNorm(_)
        | Op::LayerNorm(_)
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Softmax(_)
        | Op::Pool(_)
        | Op::GlobalAvgPool(_)
        | Op::Flatten(_)
        | Op::Reshape(_)
        | Op::Transpose(_)
        | Op::Concat(_)
        | Op::Slice(_)
        | Op::Attention(_)
        | Op::ConvertLayout(_)
        | Op::Quantize(_)
        | Op::Dequantize(_)
        | Op::Requantize(_) => 0,
    }
}

/// The shape `[m, n, k]` of the matrix product a node's kernel runs through a GEMM (the
/// first, for attention), if it runs one: what `select-tiles` blocks for the caches.
pub fn gemm_shape(op: &Op, operands: &[&TensorType], out: &TensorType, ukernels: bool) -> Option<[usize; 3]> {
    match op {
        Op::Fused(f) => f.anchor.as_ref().and_then(|a| gemm_shape(a, &operands[..f.anchor_operands(operands.len())], out, ukernels)),
        Op::Conv2d(c) if operands[0].layout != Layout::RowMajor => {
            (lower_channels::conv_kind(c, operands, ukernels) == lower_channels::ConvKind::Gemm).then(|| lower_channels::gemm_shape(operands, out))
        }
        Op::Conv2d(c) if conv_uses_gemm(operands, ukernels) => {
            let w = &operands[1].shape;
            Some([w[0] / c.groups, out.shape[2] * out.shape[3], w[1] * w[2] * w[3]])
        }
        Op::Dense(_) => {
            let (units, features) = (operands[1].shape[0], operands[1].shape[1]);
            let rows = operands[0].numel() / features;
            (ukernels && rows as i64 >= GEMM_MIN_ROWS).then_some([rows, units, features])
        }
        Op::MatMul(_) => {
            let g = matmul_geometry(operands[0], operands[1]);
            Some([g.m, g.n, g.kk].map(|v| v as usize))
        }
        Op::Attention(_) if ukernels => {
            let (q, kk) = (&operands[0].shape, &operands[1].shape);
            let r = q.len();
            Some([q[r - 2], kk[r - 2], q[r - 1]])
        }
        Op::Conv2d(_)
        | Op::Attention(_)
        | Op::BatchNorm(_)
        | Op::LayerNorm(_)
        | Op::Lstm(_)
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Softmax(_)
        | Op::Pool(_)
        | Op::GlobalAvgPool(_)
        | Op::Flatten(_)
        | Op::Reshape(_)
        | Op::Transpose(_)
        | Op::Concat(_)
        | Op::Slice(_)
        | Op::ConvertLayout(_)
        | Op::Quantize(_)
        | Op::Dequantize(_)
        | Op::Requantize(_) => None,
    }
}

/// Numerically stable softmax of `len` contiguous floats at `row`, in place, after scaling
/// them by `scale`: vectorized max, exponentials and normalization.
fn softmax_row(k: &mut Kernel, row: Value, len: Value, scale: f32) {
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

/// Attention as two matrix products around a row softmax: `S = q·kᵀ`, `P = softmax(S/√d)`
/// (masked rows end at the diagonal and are zero beyond it), `out = P·v`.
fn attention_gemm(k: &mut Kernel, rt: RuntimeFns, a: &Attention, args: &[Arg], out: Arg, scratch: Loc) {
    let s = &args[0].ty.shape;
    let r = s.len();
    let (sq, d) = (s[r - 2] as i64, s[r - 1] as i64);
    let sk = args[1].ty.shape[r - 2] as i64;
    let dv = args[2].ty.shape[r - 1] as i64;
    let batches: i64 = s[..r - 2].iter().product::<usize>() as i64;
    let scale = 1.0 / (d as f32).sqrt();
    let (q, kp, v, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(args[2].loc), k.ptr(out.loc));
    let scores = k.ptr(scratch);
    k.for_const(0, batches, |k, b| {
        let qo = k.b.ins().imul_imm_s(b, sq * d);
        let ko = k.b.ins().imul_imm_s(b, sk * d);
        let vo = k.b.ins().imul_imm_s(b, sk * dv);
        let oo = k.b.ins().imul_imm_s(b, sq * dv);
        let (qb, kb, vb, ob) = (k.elem(q, qo), k.elem(kp, ko), k.elem(v, vo), k.elem(o, oo));
        k.sgemm(rt.sgemm, [sq, sk, d], (qb, d, 1), (kb, 1, d), (scores, sk, 1), false, &GemmTail::NONE);
        k.for_const(0, sq, |k, i| {
            let row_off = k.b.ins().imul_imm_s(i, sk);
            let row = k.elem(scores, row_off);
            let len = if a.causal {
                let i1 = k.b.ins().iadd_imm_s(i, 1);
                let skv = k.int(sk);
                k.b.ins().smin(i1, skv)
            } else {
                k.int(sk)
            };
            softmax_row(k, row, len, scale);
            if a.causal {
                let end = k.int(sk);
                k.for_range(len, end, 1, |k, j| {
                    let z = k.c(F32, 0.0);
                    k.store(z, row, j);
                });
            }
        });
        k.sgemm(rt.sgemm, [sq, dv, sk], (scores, sk, 1), (vb, dv, 1), (ob, dv, 1), false, &GemmTail::NONE);
    });
}

/// Whether the kernel of `op` can run as tasks splitting its outermost loop (its lowering
/// takes its share from `Kernel::split`): elementwise ops without broadcasting, and the
/// windowed kernels of channel-vector layouts. `packed_weights`: whether a convolution's
/// weights were repacked (the blocked kernel needs them).
pub fn splits(op: &Op, operands: &[&TensorType], out: &TensorType, ukernels: bool, packed_weights: bool) -> bool {
    let vector = |t: &TensorType| t.layout != Layout::RowMajor;
    match op {
        Op::Unary(_) => true,
        Op::Binary(_) => operands[0].shape == out.shape && operands[1].shape == out.shape,
        Op::Fused(f) => match f.anchor.as_deref() {
            // Broadcast rows run as a loop over rows, which is not split.
            None => operands[1..].iter().all(|e| e.shape == out.shape || e.numel() == 1),
            Some(anchor) => splits(anchor, &operands[..f.anchor_operands(operands.len())], out, ukernels, packed_weights),
        },
        Op::Conv2d(c) if vector(operands[0]) => match lower_channels::conv_kind(c, operands, ukernels) {
            lower_channels::ConvKind::Depthwise => true,
            lower_channels::ConvKind::Blocked => packed_weights,
            lower_channels::ConvKind::Gemm | lower_channels::ConvKind::Direct => false,
        },
        Op::Pool(_) => vector(operands[0]),
        Op::Conv2d(_)
        | Op::Dense(_)
        | Op::MatMul(_)
        | Op::BatchNorm(_)
        | Op::LayerNorm(_)
        | Op::Lstm(_)
        | Op::Softmax(_)
        | Op::GlobalAvgPool(_)
        | Op::Flatten(_)
        | Op::Reshape(_)
        | Op::Transpose(_)
        | Op::Concat(_)
        | Op::Slice(_)
        | Op::Attention(_)
        | Op::ConvertLayout(_)
        | Op::Quantize(_)
        | Op::Dequantize(_)
        | Op::Requantize(_) => false,
    }
}

/// Whether the op needs code at all: views (`reshape`, `flatten`) share their operand's memory.
pub fn needs_kernel(op: &Op) -> bool {
    match op {
        Op::Flatten(_) | Op::Reshape(_) => false,
        Op::Fused(_) | Op::ConvertLayout(_) | Op::Quantize(_) | Op::Dequantize(_) | Op::Requantize(_) => true,
        Op::Conv2d(_)
        | Op::Dense(_)
        | Op::MatMul(_)
        | Op::BatchNorm(_)
        | Op::LayerNorm(_)
        | Op::Lstm(_)
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Softmax(_)
        | Op::Pool(_)
        | Op::GlobalAvgPool(_)
        | Op::Transpose(_)
        | Op::Concat(_)
        | Op::Slice(_)
        | Op::Attention(_) => true,
    }
}

/// Emit the body of `op`'s kernel.
pub fn lower(k: &mut Kernel, op: &Op, args: &[Arg], out: Arg, scratch: Option<Loc>) {
    match op {
        Op::Fused(f) => {
            let n = f.anchor_operands(args.len());
            match f.anchor.as_deref() {
                Some(anchor) => {
                    let epi = Epilogue::new(k, &f.steps, &args[n..], out.ty);
                    lower_product(k, anchor, &args[..n], out, scratch, &epi);
                }
                None => apply_steps(k, f, args[0], &args[1..], out),
            }
        }
        Op::Unary(u) => unary(k, u, args, out),
        Op::Binary(b) => binary(k, b, args, out),
        Op::Conv2d(_) | Op::Dense(_) | Op::MatMul(_) => lower_product(k, op, args, out, scratch, &Epilogue::none()),
        Op::BatchNorm(bn) => batch_norm(k, bn, args, out),
        Op::LayerNorm(ln) => layer_norm(k, ln, args, out),
        Op::Lstm(l) => {
            let weights = match k.prepacked[..] {
                [wih, whh, bias] => lower_lstm::Weights::Packed([wih, whh, bias]),
                _ => lower_lstm::Weights::Operands,
            };
            lower_lstm::lstm(k, l.hidden, args, out, scratch.expect("lstm has scratch"), weights);
        }
        Op::Softmax(s) => softmax(k, s, args, out),
        Op::Pool(p) if args[0].ty.layout != Layout::RowMajor => lower_channels::pool(k, p, args, out),
        Op::Pool(p) => pool(k, p, args, out),
        Op::GlobalAvgPool(_) if args[0].ty.layout != Layout::RowMajor => lower_channels::global_avg_pool(k, args, out),
        Op::GlobalAvgPool(_) => global_avg_pool(k, args, out),
        Op::ConvertLayout(_) => lower_channels::convert_layout(k, args[0], out),
        // `compile` refuses graphs with integer values (JitError::UnsupportedDType) before
        // any kernel is lowered, and every graph holding these ops has one.
        Op::Quantize(_) | Op::Dequantize(_) | Op::Requantize(_) => unreachable!("int8 graphs are refused before lowering"),
        Op::Transpose(t) => transpose(k, t, args, out),
        Op::Concat(c) => concat(k, c, args, out),
        Op::Slice(s) => slice(k, s, args, out),
        Op::Attention(a) => match k.runtime {
            Some(rt) => attention_gemm(k, rt, a, args, out, scratch.expect("attention scratch is planned")),
            None => attention(k, a, args, out),
        },
        Op::Flatten(_) | Op::Reshape(_) => unreachable!("views have no kernel"),
    }
}

/// A matrix product (the anchor of a fused op, or alone), with `epi` applied to its result:
/// inside the runtime GEMM's tile stores where it can, else in a pass after the product.
fn lower_product(k: &mut Kernel, op: &Op, args: &[Arg], out: Arg, scratch: Option<Loc>, epi: &Epilogue) {
    match op {
        Op::Conv2d(c) if args[0].ty.layout != Layout::RowMajor => lower_channels::conv2d(k, c, args, out, epi),
        Op::Conv2d(c) => match k.runtime {
            Some(rt) if conv_uses_gemm(&[args[0].ty, args[1].ty], true) => conv2d_gemm(k, rt, c, args, out, scratch, epi),
            _ => {
                if is_small_depthwise(c, args) {
                    conv2d_depthwise(k, c, args, out);
                } else {
                    conv2d(k, c, args, out);
                }
                apply_in_place(k, out, epi);
            }
        },
        Op::Dense(_) => match k.runtime {
            // A few rows make a matrix-vector product: the GEMM tile (8 rows × 32 columns)
            // would mostly compute padding, so dot products do better.
            Some(rt) if numel(args[0].ty) / args[1].ty.shape[1] as i64 >= GEMM_MIN_ROWS => dense_gemm(k, rt, args, out, epi),
            Some(_) | None => {
                dense(k, args, out);
                apply_in_place(k, out, epi);
            }
        },
        Op::MatMul(_) => match k.runtime {
            Some(rt) => matmul_gemm(k, rt, args, out, epi),
            None => {
                matmul(k, args, out, scratch.expect("matmul panel scratch is planned"));
                apply_in_place(k, out, epi);
            }
        },
        _ => unreachable!("only matrix products anchor fused ops"),
    }
}

fn numel(t: &TensorType) -> i64 {
    t.numel() as i64
}

/// The elementwise function of a unary op on a scalar or vector.
pub fn apply_unary(k: &mut Kernel, kind: &UnaryKind, ty: Type, x: Value) -> Value {
    match *kind {
        UnaryKind::Relu => {
            let zero = k.c(ty, 0.0);
            k.max_keep_nan(ty, x, zero)
        }
        UnaryKind::Relu6 => {
            let zero = k.c(ty, 0.0);
            let six = k.c(ty, 6.0);
            let y = k.max_keep_nan(ty, x, zero);
            k.min_keep_nan(ty, y, six)
        }
        UnaryKind::Sigmoid => k.sigmoid(ty, x),
        UnaryKind::Tanh => k.tanh(ty, x),
        UnaryKind::Gelu => {
            let inv_sqrt2 = k.c(ty, std::f32::consts::FRAC_1_SQRT_2);
            let half = k.c(ty, 0.5);
            let one = k.c(ty, 1.0);
            let xs = k.b.ins().fmul(x, inv_sqrt2);
            let e = k.erf(ty, xs);
            let e1 = k.b.ins().fadd(e, one);
            let hx = k.b.ins().fmul(x, half);
            k.b.ins().fmul(hx, e1)
        }
        UnaryKind::Silu => {
            let s = k.sigmoid(ty, x);
            k.b.ins().fmul(x, s)
        }
        UnaryKind::Exp => k.exp(ty, x),
        UnaryKind::Sqrt => k.b.ins().sqrt(x),
        UnaryKind::Abs => k.b.ins().fabs(x),
        UnaryKind::Neg => k.b.ins().fneg(x),
        UnaryKind::LeakyRelu { alpha } => {
            let a = k.c(ty, alpha as f32);
            let zero = k.c(ty, 0.0);
            let scaled = k.b.ins().fmul(x, a);
            let neg = k.cmp(cranelift_codegen::ir::condcodes::FloatCC::LessThan, x, zero);
            k.select(ty, neg, scaled, x)
        }
        UnaryKind::Clip { min, max } => {
            let mut y = x;
            if min.is_finite() {
                let lo = k.c(ty, min as f32);
                y = k.max_keep_nan(ty, y, lo);
            }
            if max.is_finite() {
                let hi = k.c(ty, max as f32);
                y = k.min_keep_nan(ty, y, hi);
            }
            y
        }
    }
}

fn unary(k: &mut Kernel, u: &Unary, args: &[Arg], out: Arg) {
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    k.for_vectorized_split(numel(out.ty), |k, i, ty| {
        let v = k.load(ty, x, i);
        let y = apply_unary(k, &u.kind, ty, v);
        k.store(y, o, i);
    });
}

/// A fused op's steps, applied to values on their way to memory. Each binary step reads an
/// extra operand: of the result's shape (read at the result's index), one value, or a
/// broadcast row (read at the index within the row).
pub struct Epilogue<'f> {
    pub steps: &'f [Step],
    extras: Vec<(Value, Extent)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Extent {
    Full,
    Single,
    /// A row of this many elements.
    Row(i64),
}

impl Epilogue<'_> {
    pub fn none() -> Epilogue<'static> {
        Epilogue { steps: &[], extras: Vec::new() }
    }

    pub fn new<'f>(k: &mut Kernel, steps: &'f [Step], extras: &[Arg], out: &TensorType) -> Epilogue<'f> {
        let extras = extras
            .iter()
            .map(|e| {
                let extent = match e.ty.numel() {
                    n if n == out.numel() => Extent::Full,
                    1 => Extent::Single,
                    n => Extent::Row(n as i64),
                };
                (k.ptr(e.loc), extent)
            })
            .collect();
        Epilogue { steps, extras }
    }

    /// The length of the rows broadcast extras repeat, if any extra is one.
    fn row(&self) -> Option<i64> {
        self.extras.iter().find_map(|&(_, e)| if let Extent::Row(n) = e { Some(n) } else { None })
    }

    /// Whether every extra is read at the result's own index (or is a single value), so the
    /// steps can run inside a kernel's own loops in any layout.
    pub fn elementwise(&self) -> bool {
        self.row().is_none()
    }

    /// The steps as a runtime GEMM epilogue, if they are one: an optional residual add (its
    /// operand's base address) followed by an optional ReLU or ReLU6.
    pub fn runtime_form(&self) -> Option<(Option<Value>, Activation)> {
        let (residual, rest) = match self.steps.first() {
            Some(&Step::ADD) if self.extras[0].1 == Extent::Full => (Some(self.extras[0].0), &self.steps[1..]),
            Some(&Step::ADD) => return None,
            _ => (None, self.steps),
        };
        let act = match rest {
            [] => Activation::None,
            [Step::Unary(UnaryKind::Relu)] => Activation::Relu,
            [Step::Unary(UnaryKind::Relu6)] => Activation::Relu6,
            _ => return None,
        };
        Some((residual, act))
    }

    /// The runtime tail of a GEMM whose C block starts `c_offset` elements into the result:
    /// `bias` (already offset to the block), then the steps if the runtime can do them.
    /// Returns whether the steps are left for [`apply_in_place`].
    pub fn gemm_tail(&self, k: &mut Kernel, bias: Option<Value>, bias_per_row: bool, c_offset: Value) -> (GemmTail, bool) {
        match self.runtime_form() {
            Some((residual, act)) => {
                let residual = residual.map(|r| k.elem(r, c_offset));
                (GemmTail { bias, bias_per_row, residual, act }, false)
            }
            None => (GemmTail { bias, bias_per_row, residual: None, act: Activation::None }, true),
        }
    }

    /// `v` (of type `ty`, the result's element `index` onwards) after every step; only for
    /// [`Epilogue::elementwise`] epilogues.
    pub fn apply(&self, k: &mut Kernel, ty: Type, v: Value, index: Value) -> Value {
        debug_assert!(self.elementwise(), "broadcast rows need the row index");
        self.apply_at(k, ty, v, index, index)
    }

    /// `v` after every step, where `index` is its element of the result and `in_row` its
    /// position in the broadcast row.
    fn apply_at(&self, k: &mut Kernel, ty: Type, mut v: Value, index: Value, in_row: Value) -> Value {
        let mut next = 0;
        for step in self.steps {
            v = match *step {
                Step::Unary(kind) => apply_unary(k, &kind, ty, v),
                Step::Binary { kind, reversed } => {
                    let (ptr, extent) = self.extras[next];
                    let e = match extent {
                        Extent::Full => k.load(ty, ptr, index),
                        Extent::Row(_) => k.load(ty, ptr, in_row),
                        Extent::Single => {
                            let s = k.load_at(F32, ptr, 0);
                            if ty == F32 { s } else { k.b.ins().splat(ty, s) }
                        }
                    };
                    next += 1;
                    if reversed { apply_binary(k, kind, e, v) } else { apply_binary(k, kind, v, e) }
                }
            };
        }
        v
    }

    /// `dst[i] = steps(src[i])` over a result of `numel` elements: one flat vectorized loop
    /// (split across tasks when the kernel is), or, with broadcast rows, a loop over rows.
    fn run_over(&self, k: &mut Kernel, src: Value, dst: Value, numel: i64) {
        match self.row() {
            None => k.for_vectorized_split(numel, |k, i, ty| {
                let v = k.load(ty, src, i);
                let v = self.apply(k, ty, v, i);
                k.store(v, dst, i);
            }),
            Some(len) => k.for_const(0, numel / len, |k, r| {
                let base = k.b.ins().imul_imm_s(r, len);
                let (s, d) = (k.elem(src, base), k.elem(dst, base));
                k.for_vectorized(len, |k, j, ty| {
                    let v = k.load(ty, s, j);
                    let i = k.b.ins().iadd(base, j);
                    let v = self.apply_at(k, ty, v, i, j);
                    k.store(v, d, j);
                });
            }),
        }
    }
}

/// Run `epi` over a finished result in memory.
pub fn apply_in_place(k: &mut Kernel, out: Arg, epi: &Epilogue) {
    if epi.steps.is_empty() {
        return;
    }
    let o = k.ptr(out.loc);
    epi.run_over(k, o, o, numel(out.ty));
}

/// A fused op's steps as one vectorized pass that loads the anchor's result (or the chain's
/// seed), applies every step while each vector is in registers, and stores it once.
fn apply_steps(k: &mut Kernel, f: &Fused, seed: Arg, extras: &[Arg], out: Arg) {
    let (s, o) = (k.ptr(seed.loc), k.ptr(out.loc));
    let epi = Epilogue::new(k, &f.steps, extras, out.ty);
    epi.run_over(k, s, o, numel(out.ty));
}

fn apply_binary(k: &mut Kernel, kind: BinaryKind, a: Value, b: Value) -> Value {
    match kind {
        BinaryKind::Add => k.b.ins().fadd(a, b),
        BinaryKind::Sub => k.b.ins().fsub(a, b),
        BinaryKind::Mul => k.b.ins().fmul(a, b),
        BinaryKind::Div => k.b.ins().fdiv(a, b),
    }
}

/// Strides of `shape` read as a broadcast operand of a result with `out.len()` axes: 0 on
/// broadcast axes.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<i64> {
    let s = strides(shape);
    let pad = out.len() - shape.len();
    (0..out.len()).map(|d| if d < pad || shape[d - pad] == 1 { 0 } else { s[d - pad] as i64 }).collect()
}

/// Nested loops over all axes of `shape` but the last, calling `f` with each operand's
/// element offset for the start of the row (`stride_sets[j]` are operand j's strides).
fn for_rows(k: &mut Kernel, shape: &[usize], stride_sets: &[Vec<i64>], f: &mut dyn FnMut(&mut Kernel, &[Value])) {
    fn go(k: &mut Kernel, shape: &[usize], axis: usize, stride_sets: &[Vec<i64>], offsets: Vec<Value>, f: &mut dyn FnMut(&mut Kernel, &[Value])) {
        if axis + 1 >= shape.len() {
            f(k, &offsets);
            return;
        }
        k.for_const(0, shape[axis] as i64, |k, i| {
            let next: Vec<Value> = offsets.iter().zip(stride_sets).map(|(&o, s)| {
                let step = k.b.ins().imul_imm_s(i, s[axis]);
                k.b.ins().iadd(o, step)
            }).collect();
            go(k, shape, axis + 1, stride_sets, next, f);
        });
    }
    let zero = k.int(0);
    go(k, shape, 0, stride_sets, vec![zero; stride_sets.len()], f);
}

fn binary(k: &mut Kernel, bin: &Binary, args: &[Arg], out: Arg) {
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

/// Rows below which a dense layer runs as dot products rather than through GEMM.
const GEMM_MIN_ROWS: i64 = 8;

/// Dot product of `n` contiguous floats at `a` and `b`: four independent `f32x4`
/// accumulators over 16-float steps (one chain would wait on FMA latency), then 4-float
/// steps, then single floats.
fn dot(k: &mut Kernel, a: Value, b: Value, n: i64) -> Value {
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

fn dense(k: &mut Kernel, args: &[Arg], out: Arg) {
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

/// The sizes of a NumPy matmul (1-D operands promoted) and the per-batch element strides of
/// each operand (0 where broadcast) and of the result, over the batch axes plus a trailing
/// axis of length 1 so that `for_rows` visits every batch once.
struct MatMulGeometry {
    m: i64,
    kk: i64,
    n: i64,
    loop_shape: Vec<usize>,
    strides: [Vec<i64>; 3],
}

fn matmul_geometry(a: &TensorType, b: &TensorType) -> MatMulGeometry {
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

fn matmul(k: &mut Kernel, args: &[Arg], out: Arg, panel: Loc) {
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

/// Rows and columns of the register tile of the Cranelift-generated GEMM: 12 `f32x4`
/// accumulators, two vectors of B and a broadcast of A fit x86-64's 16 xmm registers.
const TILE_M: i64 = crate::target::CRANELIFT_TILE.0 as i64;
const TILE_N: i64 = crate::target::CRANELIFT_TILE.1 as i64;

/// `C[i0..i0+6, j0..j0+8] (+)= A[i0.., pc..pc+kc]·panel`, with row-major A (`m × kk`) and C
/// (`m × n`) and `panel` the packed `kc × 8` slab of B. The first slab (`pc == 0`) writes C,
/// later ones add to it.
#[allow(clippy::too_many_arguments)]
fn gemm_tile(k: &mut Kernel, a: Value, panel: Value, c: Value, i0: Value, j0: Value, pc: i64, kc: i64, kk: i64, n: i64) {
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
fn matmul_region(k: &mut Kernel, pa: Value, pb: Value, po: Value, rows: (i64, i64), cols: (i64, i64), kk: i64, n: i64) {
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

/// `max(0, ceil(a / s))` and `min(limit, floor(b / s) + 1)` (or 0 when `b < 0`): the range
/// of output positions whose input tap lands inside the image.
fn valid_range(k: &mut Kernel, a: Value, b: Value, s: i64, limit: i64) -> (Value, Value) {
    let zero = k.int(0);
    let a0 = k.b.ins().smax(a, zero);
    let a1 = k.b.ins().iadd_imm_s(a0, s - 1);
    let lo = k.b.ins().sdiv_imm_s(a1, s);
    let neg = k.b.ins().icmp(IntCC::SignedLessThan, b, zero);
    let q = k.b.ins().sdiv_imm_s(b, s);
    let q1 = k.b.ins().iadd_imm_s(q, 1);
    let lim = k.int(limit);
    let hi = k.b.ins().smin(q1, lim);
    let hi = k.b.ins().select(neg, zero, hi);
    // An empty range must come out as `lo == hi`: callers derive vector trip counts from
    // `hi − lo`, which must not go negative (`lo` can exceed `limit` when a tap only ever
    // lands in the padding).
    let hi = k.b.ins().smax(hi, lo);
    (lo, hi)
}

/// Element index of `w[oc, ci, ky, kx]` in a row-major `[F, cg, kh, kw]` weight.
pub fn conv_weight_index(k: &mut Kernel, [oc, ci, ky, kx]: [Value; 4], [cg, kh, kw]: [i64; 3]) -> Value {
    let i = k.b.ins().imul_imm_s(oc, cg);
    let i = k.b.ins().iadd(i, ci);
    let i = k.b.ins().imul_imm_s(i, kh);
    let i = k.b.ins().iadd(i, ky);
    let i = k.b.ins().imul_imm_s(i, kw);
    k.b.ins().iadd(i, kx)
}

fn conv2d(k: &mut Kernel, c: &Conv2d, args: &[Arg], out: Arg) {
    let [n, ch, h, w] = args[0].ty.shape[..] else { unreachable!("rank checked") };
    let [f, cg, kh, kw] = args[1].ty.shape[..] else { unreachable!("rank checked") };
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let (h, w, ch, cg, kh, kw) = (h as i64, w as i64, ch as i64, cg as i64, kh as i64, kw as i64);
    let fg = (f / c.groups) as i64;
    let [sh, sw] = c.stride.map(|v| v as i64);
    let [dh, dw] = c.dilation.map(|v| v as i64);
    let (pt, pl) = (c.padding[0] as i64, c.padding[1] as i64);
    let (x, wt, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    k.for_const(0, n as i64, |k, b| {
        k.for_const(0, f as i64, |k, oc| {
            let plane_idx = k.b.ins().imul_imm_s(b, f as i64);
            let plane_idx = k.b.ins().iadd(plane_idx, oc);
            let plane_off = k.b.ins().imul_imm_s(plane_idx, oh * ow);
            let plane = k.elem(o, plane_off);
            let init = match bias {
                Some(bp) => k.load(F32, bp, oc),
                None => k.c(F32, 0.0),
            };
            k.for_vectorized(oh * ow, |k, i, ty| {
                let v = if ty == F32 { init } else { k.b.ins().splat(ty, init) };
                k.store(v, plane, i);
            });
            let group = k.b.ins().sdiv_imm_s(oc, fg);
            k.for_const(0, cg, |k, ci| {
                let in_ch = k.b.ins().imul_imm_s(group, cg);
                let in_ch = k.b.ins().iadd(in_ch, ci);
                let in_idx = k.b.ins().imul_imm_s(b, ch);
                let in_idx = k.b.ins().iadd(in_idx, in_ch);
                let in_off = k.b.ins().imul_imm_s(in_idx, h * w);
                let in_plane = k.elem(x, in_off);
                k.for_const(0, kh, |k, ky| {
                    // Output rows whose tap ky lands in the image: iy = y·sh + ky·dh − pt ∈ [0, h).
                    let kyd = k.b.ins().imul_imm_s(ky, dh);
                    let pt_v = k.int(pt);
                    let a = k.b.ins().isub(pt_v, kyd);
                    let hm = k.int(h - 1 + pt);
                    let bnd = k.b.ins().isub(hm, kyd);
                    let (y_lo, y_hi) = valid_range(k, a, bnd, sh, oh);
                    k.for_const(0, kw, |k, kx| {
                        let kxd = k.b.ins().imul_imm_s(kx, dw);
                        let pl_v = k.int(pl);
                        let a = k.b.ins().isub(pl_v, kxd);
                        let wm = k.int(w - 1 + pl);
                        let bnd = k.b.ins().isub(wm, kxd);
                        let (x_lo, x_hi) = valid_range(k, a, bnd, sw, ow);
                        // The weight tap, broadcast.
                        let widx = conv_weight_index(k, [oc, ci, ky, kx], [cg, kh, kw]);
                        let wv = k.load(F32, wt, widx);
                        let wv4 = k.b.ins().splat(F32X4, wv);
                        k.for_range(y_lo, y_hi, 1, |k, y| {
                            let iy = k.b.ins().imul_imm_s(y, sh);
                            let iy = k.b.ins().iadd(iy, kyd);
                            let iy = k.b.ins().iadd_imm_s(iy, -pt);
                            let in_row_off = k.b.ins().imul_imm_s(iy, w);
                            let in_row = k.elem(in_plane, in_row_off);
                            let out_row_off = k.b.ins().imul_imm_s(y, ow);
                            let out_row = k.elem(plane, out_row_off);
                            if sw == 1 {
                                // ix = ox + kx·dw − pl: contiguous in both rows.
                                let shift = k.b.ins().iadd_imm_s(kxd, -pl);
                                let count = k.b.ins().isub(x_hi, x_lo);
                                let vec_count = k.b.ins().band_imm_s(count, !(LANES - 1));
                                let vec_end = k.b.ins().iadd(x_lo, vec_count);
                                k.for_range(x_lo, vec_end, LANES, |k, ox| {
                                    let ix = k.b.ins().iadd(ox, shift);
                                    let xv = k.load(F32X4, in_row, ix);
                                    let cur = k.load(F32X4, out_row, ox);
                                    let r = k.fma(wv4, xv, cur);
                                    k.store(r, out_row, ox);
                                });
                                k.for_range(vec_end, x_hi, 1, |k, ox| {
                                    let ix = k.b.ins().iadd(ox, shift);
                                    let xv = k.load(F32, in_row, ix);
                                    let cur = k.load(F32, out_row, ox);
                                    let r = k.fma(wv, xv, cur);
                                    k.store(r, out_row, ox);
                                });
                            } else {
                                k.for_range(x_lo, x_hi, 1, |k, ox| {
                                    let ix = k.b.ins().imul_imm_s(ox, sw);
                                    let ix = k.b.ins().iadd(ix, kxd);
                                    let ix = k.b.ins().iadd_imm_s(ix, -pl);
                                    let xv = k.load(F32, in_row, ix);
                                    let cur = k.load(F32, out_row, ox);
                                    let r = k.fma(wv, xv, cur);
                                    k.store(r, out_row, ox);
                                });
                            }
                        });
                    });
                });
            });
        });
    });
}

/// Convolution as one matrix product per image and group: `out[F_g, P] = W_g[F_g, C_g·kh·kw] ·
/// col[C_g·kh·kw, P]` (P = output pixels), the bias (one per row) and `epi` applied by the
/// GEMM as it stores each tile.
fn conv2d_gemm(k: &mut Kernel, rt: RuntimeFns, c: &Conv2d, args: &[Arg], out: Arg, scratch: Option<Loc>, epi: &Epilogue) {
    let [n, ch, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let [f, cg, kh, kw] = args[1].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let p = oh * ow;
    let groups = c.groups as i64;
    let fg = f / groups;
    let kk = cg * kh * kw;
    let pointwise = conv_is_pointwise(c, &[args[0].ty, args[1].ty]);
    let (x, wt, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    let col = scratch.map(|s| k.ptr(s));
    let mut steps_left = false;
    k.for_const(0, n, |k, b| {
        let img_off = k.b.ins().imul_imm_s(b, ch * h * w);
        let img = k.elem(x, img_off);
        for g in 0..groups {
            let gin = k.int(g * cg * h * w);
            let gin = k.elem(img, gin);
            let b_mat = if pointwise {
                (gin, h * w, 1)
            } else {
                let col = col.expect("im2col scratch is planned");
                let mut a = vec![gin];
                for v in [cg, h, w, kh, kw, c.stride[0] as i64, c.stride[1] as i64, c.dilation[0] as i64, c.dilation[1] as i64, c.padding[0] as i64, c.padding[1] as i64, oh, ow] {
                    a.push(k.int(v));
                }
                a.push(col);
                k.b.ins().call(rt.im2col, &a);
                (col, p, 1)
            };
            let c_off = k.b.ins().imul_imm_s(b, f * p);
            let c_off = k.b.ins().iadd_imm_s(c_off, g * fg * p);
            let og = k.elem(o, c_off);
            let group_bias = bias.map(|bp| {
                let at = k.int(g * fg);
                k.elem(bp, at)
            });
            let (tail, left) = epi.gemm_tail(k, group_bias, true, c_off);
            steps_left = left;
            if let Some(&packed) = k.prepacked.get(g as usize) {
                let mut a = vec![k.int(fg), k.int(p), k.int(kk), k.int(packed as i64), b_mat.0, k.int(b_mat.1), k.int(b_mat.2)];
                a.extend([og, k.int(p), k.int(1), k.int(0)]);
                a.extend(k.gemm_tail());
                a.extend(k.tail_args(&tail));
                k.b.ins().call(rt.sgemm_packed_a, &a);
            } else {
                let wg = k.int(g * fg * kk);
                let wg = k.elem(wt, wg);
                k.sgemm(rt.sgemm, [fg, p, kk], (wg, kk, 1), b_mat, (og, p, 1), false, &tail);
            }
        }
    });
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

/// `out[rows, units] = x[rows, features] · weightᵀ + bias` as one product, the bias (one per
/// column) and `epi` applied by the GEMM.
fn dense_gemm(k: &mut Kernel, rt: RuntimeFns, args: &[Arg], out: Arg, epi: &Epilogue) {
    let (units, features) = (args[1].ty.shape[0] as i64, args[1].ty.shape[1] as i64);
    let rows = numel(args[0].ty) / features;
    let (x, w, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    let zero = k.int(0);
    let (tail, steps_left) = epi.gemm_tail(k, bias, false, zero);
    // weightᵀ is the weight read with row stride 1 and column stride `features`.
    k.sgemm(rt.sgemm, [rows, units, features], (x, features, 1), (w, 1, features), (o, units, 1), false, &tail);
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

fn matmul_gemm(k: &mut Kernel, rt: RuntimeFns, args: &[Arg], out: Arg, epi: &Epilogue) {
    let MatMulGeometry { m, kk, n, loop_shape: shape, strides: [a_str, b_str, o_str] } = matmul_geometry(args[0].ty, args[1].ty);
    let (a, b, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let mut steps_left = false;
    for_rows(k, &shape, &[a_str, b_str, o_str], &mut |k, offs| {
        let (pa, pb, po) = (k.elem(a, offs[0]), k.elem(b, offs[1]), k.elem(o, offs[2]));
        let (tail, left) = epi.gemm_tail(k, None, false, offs[2]);
        steps_left = left;
        k.sgemm(rt.sgemm, [m, n, kk], (pa, kk, 1), (pb, n, 1), (po, n, 1), false, &tail);
    });
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

/// Depthwise (one input channel per filter), strided, with a window small enough to unroll.
/// At stride 1 the direct loops vectorize along rows and win; strided, they are scalar and
/// this register-accumulating form is 1.5× faster (MobileNetV2's stride-2 layers).
fn is_small_depthwise(c: &Conv2d, args: &[Arg]) -> bool {
    let w = &args[1].ty.shape;
    w[1] == 1 && c.groups == args[0].ty.shape[1] && w[2] * w[3] <= UNROLLED_POOL_TAPS && c.stride != [1, 1]
}

/// Depthwise convolution with the window unrolled: each output sums its taps in a register
/// (the channel's weights stay in registers too) and is stored once. Taps in the padding read
/// a clamped, in-bounds address and are masked to zero.
fn conv2d_depthwise(k: &mut Kernel, c: &Conv2d, args: &[Arg], out: Arg) {
    let [n, ch, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let [f, _, kh, kw] = args[1].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let mult = f / ch;
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let [sh, sw] = c.stride.map(|v| v as i64);
    let [dh, dw] = c.dilation.map(|v| v as i64);
    let (pt, pl) = (c.padding[0] as i64, c.padding[1] as i64);
    let (x, wt, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    k.for_const(0, n, |k, b| {
        k.for_const(0, f, |k, oc| {
            // Filter oc reads input channel oc / mult.
            let ic = k.b.ins().sdiv_imm_s(oc, mult);
            let plane_idx = k.b.ins().imul_imm_s(b, ch);
            let plane_idx = k.b.ins().iadd(plane_idx, ic);
            let in_off = k.b.ins().imul_imm_s(plane_idx, h * w);
            let xin = k.elem(x, in_off);
            let out_idx = k.b.ins().imul_imm_s(b, f);
            let out_idx = k.b.ins().iadd(out_idx, oc);
            let out_off = k.b.ins().imul_imm_s(out_idx, oh * ow);
            let xout = k.elem(o, out_off);
            let w_off = k.b.ins().imul_imm_s(oc, kh * kw);
            let wrow = k.elem(wt, w_off);
            let taps: Vec<Value> = (0..kh * kw).map(|t| k.load_at(F32, wrow, t)).collect();
            let init = match bias {
                Some(bp) => k.load(F32, bp, oc),
                None => k.c(F32, 0.0),
            };
            k.for_const(0, oh, |k, y| {
                let y0 = k.b.ins().imul_imm_s(y, sh);
                let y0 = k.b.ins().iadd_imm_s(y0, -pt);
                k.for_const(0, ow, |k, xo| {
                    let x0 = k.b.ins().imul_imm_s(xo, sw);
                    let x0 = k.b.ins().iadd_imm_s(x0, -pl);
                    let zf = k.c(F32, 0.0);
                    let mut acc = init;
                    for ky in 0..kh {
                        let iy = k.b.ins().iadd_imm_s(y0, ky * dh);
                        let (y_in, iyc) = k.clamp_index(iy, h - 1);
                        let row = k.b.ins().imul_imm_s(iyc, w);
                        for kx in 0..kw {
                            let ix = k.b.ins().iadd_imm_s(x0, kx * dw);
                            let (x_in, ixc) = k.clamp_index(ix, w - 1);
                            let inside = k.b.ins().band(y_in, x_in);
                            let idx = k.b.ins().iadd(row, ixc);
                            let v = k.load(F32, xin, idx);
                            let v = k.b.ins().select(inside, v, zf);
                            acc = k.fma(taps[(ky * kw + kx) as usize], v, acc);
                        }
                    }
                    let oi = k.b.ins().imul_imm_s(y, ow);
                    let oi = k.b.ins().iadd(oi, xo);
                    k.store(acc, xout, oi);
                });
            });
        });
    });
}

fn batch_norm(k: &mut Kernel, bn: &BatchNorm, args: &[Arg], out: Arg) {
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
fn sum(k: &mut Kernel, p: Value, n: i64) -> Value {
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

fn layer_norm(k: &mut Kernel, ln: &LayerNorm, args: &[Arg], out: Arg) {
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

fn softmax(k: &mut Kernel, s: &Softmax, args: &[Arg], out: Arg) {
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
            let at = |k: &mut Kernel, j: Value| {
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

/// Windows of at most this many taps are unrolled at compile time.
const UNROLLED_POOL_TAPS: usize = 25;

fn pool(k: &mut Kernel, p: &Pool, args: &[Arg], out: Arg) {
    let [_, _, h, w] = args[0].ty.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked");
    let [kh, kw] = p.kernel.map(|v| v as i64);
    let init = |k: &mut Kernel| match p.kind {
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
fn for_each_window(k: &mut Kernel, p: &Pool, args: &[Arg], out: Arg, window: &mut dyn FnMut(&mut Kernel, Value, Value, Value) -> Value) {
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

fn global_avg_pool(k: &mut Kernel, args: &[Arg], out: Arg) {
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

/// Copy `n` contiguous floats.
fn copy(k: &mut Kernel, src: Value, dst: Value, n: i64) {
    k.for_vectorized(n, |k, i, ty| {
        let v = k.load(ty, src, i);
        k.store(v, dst, i);
    });
}

fn transpose(k: &mut Kernel, t: &Transpose, args: &[Arg], out: Arg) {
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

fn concat(k: &mut Kernel, c: &Concat, args: &[Arg], out: Arg) {
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

fn slice(k: &mut Kernel, s: &Slice, args: &[Arg], out: Arg) {
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

/// Scaled dot-product attention with an online softmax (one pass over the keys, rescaling
/// the running sum when the running maximum grows), so no score matrix is stored.
fn attention(k: &mut Kernel, a: &Attention, args: &[Arg], out: Arg) {
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

