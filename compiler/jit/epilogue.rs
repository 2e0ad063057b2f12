//! The argument and epilogue layer every lowering shares: a tensor as a kernel sees it
//! ([`Arg`]), and what a fused op's steps do to a
//! product's result (inside the runtime GEMM's tile stores where they can, else as one pass
//! over the result), and the elementwise arithmetic of those steps.

use crate::ir::TensorType;
use crate::jit::memplan::Loc;
use crate::jit::builder::{GemmTail, KernelBuilder, TailActivation, F32};
use cranelift_codegen::ir::{InstBuilder, Type, Value};
use crate::ops::fused::Step;
use crate::ops::{BinaryKind, UnaryKind};
use nnc_runtime::Activation;

/// A tensor as a kernel sees it: where it lives and its type.
#[derive(Clone, Copy)]
pub struct Arg<'t> {
    pub loc: Loc,
    pub ty: &'t TensorType,
}

/// Elements of a tensor type, as the i64 that kernel arithmetic uses.
pub(crate) fn numel(t: &TensorType) -> i64 {
    t.numel() as i64
}

/// The elementwise function of a unary op on a scalar or vector.
pub fn apply_unary(k: &mut KernelBuilder, kind: &UnaryKind, ty: Type, x: Value) -> Value {
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

/// A fused op's steps, applied to values on their way to memory. Each binary step reads an
/// extra operand: of the result's shape (read at the result's index), one value, or a
/// broadcast row (read at the index within the row).
pub struct Epilogue<'f> {
    pub steps: &'f [Step],
    extras: Vec<(Value, Extent)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extent {
    Full,
    Single,
    /// A row of this many elements.
    Row(i64),
}

impl Epilogue<'_> {
    pub fn none() -> Epilogue<'static> {
        Epilogue { steps: &[], extras: Vec::new() }
    }

    pub fn new<'f>(k: &mut KernelBuilder, steps: &'f [Step], extras: &[Arg], out: &TensorType) -> Epilogue<'f> {
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
    /// operand's base address) followed by an optional ReLU, ReLU6 or GELU.
    pub fn runtime_form(&self) -> Option<(Option<Value>, TailActivation)> {
        // A leading residual add: the GEMM adds a full-shape matrix with C's strides.
        let (residual, rest) = if self.steps.first() == Some(&Step::ADD) {
            if self.extras[0].1 != Extent::Full {
                return None;
            }
            (Some(self.extras[0].0), &self.steps[1..])
        } else {
            (None, self.steps)
        };
        let act = match rest {
            [] => TailActivation::Act(Activation::None),
            [Step::Unary(UnaryKind::Gelu)] => TailActivation::Gelu,
            [step] => TailActivation::Act(step.activation()?),
            [_, _, ..] => return None,
        };
        Some((residual, act))
    }

    /// The runtime tail of a GEMM whose C block starts `c_offset` elements into the result:
    /// `bias` (already offset to the block), then the steps if the runtime can do them.
    /// Returns whether the steps are left for [`apply_in_place`].
    pub fn gemm_tail(&self, k: &mut KernelBuilder, bias: Option<Value>, bias_per_row: bool, c_offset: Value) -> (GemmTail, bool) {
        match self.runtime_form() {
            Some((residual, act)) => {
                let residual = residual.map(|r| k.elem(r, c_offset));
                (GemmTail { bias, bias_per_row, residual, act }, false)
            }
            None => (GemmTail { bias, bias_per_row, residual: None, act: TailActivation::Act(Activation::None) }, true),
        }
    }

    /// `v` (of type `ty`, the result's element `index` onwards) after every step; only for
    /// [`Epilogue::elementwise`] epilogues.
    pub fn apply(&self, k: &mut KernelBuilder, ty: Type, v: Value, index: Value) -> Value {
        debug_assert!(self.elementwise(), "broadcast rows need the row index");
        self.apply_at(k, ty, v, index, index)
    }

    /// `v` after every step, where `index` is its element of the result and `in_row` its
    /// position in the broadcast row.
    fn apply_at(&self, k: &mut KernelBuilder, ty: Type, mut v: Value, index: Value, in_row: Value) -> Value {
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
    pub(crate) fn run_over(&self, k: &mut KernelBuilder, src: Value, dst: Value, numel: i64) {
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
pub fn apply_in_place(k: &mut KernelBuilder, out: Arg, epi: &Epilogue) {
    if epi.steps.is_empty() {
        return;
    }
    let o = k.ptr(out.loc);
    epi.run_over(k, o, o, numel(out.ty));
}

pub(crate) fn apply_binary(k: &mut KernelBuilder, kind: BinaryKind, a: Value, b: Value) -> Value {
    match kind {
        BinaryKind::Add => k.b.ins().fadd(a, b),
        BinaryKind::Sub => k.b.ins().fsub(a, b),
        BinaryKind::Mul => k.b.ins().fmul(a, b),
        BinaryKind::Div => k.b.ins().fdiv(a, b),
    }
}
