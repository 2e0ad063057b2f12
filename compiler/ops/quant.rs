//! The int8 quantization ops that `--quantize int8` inserts: `quantize` (f32 → i8),
//! `dequantize` (i8 or i32 → f32) and `requantize` (an i32 accumulator → i8, with the
//! activation between). They are IR-only: sources never name them.
//!
//! The scheme is symmetric (zero point 0) with the range [-127, 127], so negation is exact
//! and a product of two codes never needs more than 14 bits. Every rounding is written down
//! here once and shared: the interpreter evaluates these functions, and the accelerator's
//! activation unit calls the same ones, which is what makes the two bit-identical.

use super::{checked_type, Built, CallArgs, Const, Op, OpError, OpResult};
use crate::ir::{ShapeDisplay, TensorType};
use nnc_runtime::{DType, Tensor};

/// An f32 attribute as the f64 its shortest decimal spells, so IR text shows `0.0123`
/// rather than the f32's exact binary expansion; reading it back gives the same f32.
fn attr(v: f32) -> Const {
    Const::Float(format!("{v:e}").parse().expect("an f32 prints as a number"))
}

pub use nnc_runtime::quant::{quantize_value, requantize_value, QMAX};
pub use nnc_runtime::Activation;

/// Per-channel scales along `axis`, or one scale for the whole tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Scales {
    pub values: Vec<f32>,
    pub axis: usize,
}

impl Scales {
    /// The scale of flat element `i` of a tensor of `shape`.
    pub(crate) fn index_fn<'a>(&'a self, shape: &[usize]) -> impl Fn(usize) -> f32 + 'a {
        let inner: usize = shape.get(self.axis + 1..).map_or(1, |s| s.iter().product());
        let len = self.values.len();
        move |i| if len == 1 { self.values[0] } else { self.values[(i / inner) % len] }
    }

    fn check(&self, op: &str, x: &TensorType) -> OpResult<()> {
        if self.values.is_empty() || self.values.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(OpError::new(format!("{op}: scales must be positive and finite")));
        }
        if self.values.len() > 1 && x.shape.get(self.axis) != Some(&self.values.len()) {
            return Err(OpError::new(format!("{op}: {} per-channel scales along axis {} do not fit shape {}", self.values.len(), self.axis, ShapeDisplay(&x.shape))));
        }
        Ok(())
    }

    /// One scale per channel for `channels` channels (a per-tensor scale repeated).
    pub fn per_channel(&self, channels: usize) -> Vec<f32> {
        (0..channels).map(|c| if self.values.len() == 1 { self.values[0] } else { self.values[c] }).collect()
    }

    fn attrs(&self) -> Vec<(&'static str, Const)> {
        vec![("scale", Const::List(self.values.iter().map(|&s| attr(s)).collect())), ("axis", Const::Int(self.axis as i64))]
    }

    fn build(args: &mut CallArgs) -> OpResult<Scales> {
        let values = match args.take("scale") {
            Some((Const::List(items), span)) => items
                .iter()
                .map(|c| match c {
                    Const::Float(v) => Ok(*v as f32),
                    Const::Int(v) => Ok(*v as f32),
                    other => Err(OpError::new(format!("{}: scales must be numbers, not {}", args.op, other.kind_name())).at(span.clone())),
                })
                .collect::<OpResult<Vec<f32>>>()?,
            Some((Const::Float(v), _)) => vec![v as f32],
            _ => return Err(OpError::new(format!("{}: needs `scale=[...]`", args.op)).at(args.span.clone())),
        };
        let axis = args.int("axis")?.unwrap_or(0);
        if !(0..=8).contains(&axis) {
            return Err(OpError::new(format!("{}: axis {axis} is out of range", args.op)).at(args.span.clone()));
        }
        Ok(Scales { values, axis: axis as usize })
    }
}

/// `quantize(x) scale=s`: f32 → i8 with one scale for the tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantize {
    pub scale: f32,
}

/// `dequantize(q) scale=[...] axis=a`: i8 or i32 → f32, `q · scale[c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dequantize {
    pub scales: Scales,
}

/// `requantize(acc) scale=[...] axis=a out_scale=s activation="relu"`: i32 → i8 by
/// [`requantize_value`].
#[derive(Clone, Debug, PartialEq)]
pub struct Requantize {
    pub scales: Scales,
    pub out_scale: f32,
    pub activation: Activation,
}

fn positive_scale(op: &str, s: f64) -> OpResult<f32> {
    let v = s as f32;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(OpError::new(format!("{op}: the scale must be positive and finite, not {s}")))
    }
}

impl Quantize {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 1, "x")?;
        let s = args.float("scale")?.ok_or_else(|| OpError::new("quantize: needs `scale=`").at(args.span.clone()))?;
        let scale = positive_scale("quantize", s)?;
        args.finish(&["scale"])?;
        Built::plain(Op::Quantize(Quantize { scale }))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let x = operands[0];
        if x.dtype != DType::F32 {
            return Err(OpError::new(format!("quantize takes an f32 tensor, not {}", x.dtype)));
        }
        checked_type("quantize", DType::I8, x.shape.clone())
    }

    pub fn eval(&self, x: &Tensor) -> Tensor {
        let data = x.as_f32().expect("quantize takes f32").iter().map(|&v| quantize_value(v, self.scale)).collect();
        Tensor::from_i8(x.shape().to_vec(), data).expect("same shape")
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        vec![("scale", attr(self.scale))]
    }
}

impl Dequantize {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 1, "q")?;
        let scales = Scales::build(args)?;
        args.finish(&["scale", "axis"])?;
        Built::plain(Op::Dequantize(Dequantize { scales }))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let x = operands[0];
        if !matches!(x.dtype, DType::I8 | DType::I32) {
            return Err(OpError::new(format!("dequantize takes an i8 or i32 tensor, not {}", x.dtype)));
        }
        self.scales.check("dequantize", x)?;
        checked_type("dequantize", DType::F32, x.shape.clone())
    }

    pub fn eval(&self, x: &Tensor) -> Tensor {
        let scale = self.scales.index_fn(x.shape());
        let data = match x.data() {
            nnc_runtime::tensor::Data::I8(q) => q.iter().enumerate().map(|(i, &v)| v as f32 * scale(i)).collect(),
            nnc_runtime::tensor::Data::I32(q) => q.iter().enumerate().map(|(i, &v)| v as f32 * scale(i)).collect(),
            nnc_runtime::tensor::Data::F32(_) => unreachable!("dequantize takes integers"),
        };
        Tensor::f32(x.shape().to_vec(), data)
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        self.scales.attrs()
    }
}

impl Requantize {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 1, "acc")?;
        let rq = Requantize::from_keywords(args)?;
        args.finish(&["scale", "axis", "out_scale", "activation"])?;
        Built::plain(Op::Requantize(rq))
    }

    /// The attributes from `scale=`, `axis=`, `out_scale=` and `activation=` (also a fused
    /// int8 product's, whose other keywords are its anchor's).
    pub fn from_keywords(args: &mut CallArgs) -> OpResult<Requantize> {
        let scales = Scales::build(args)?;
        let s = args.float("out_scale")?.ok_or_else(|| OpError::new("requantize: needs `out_scale=`").at(args.span.clone()))?;
        let out_scale = positive_scale("requantize", s)?;
        let activation = match args.take("activation") {
            None => Activation::None,
            Some((Const::Str(s), span)) => Activation::from_name(&s).ok_or_else(|| OpError::new(format!("requantize: unknown activation \"{s}\" (none, relu or relu6)")).at(span))?,
            Some((_, span)) => return Err(OpError::new("requantize: `activation` is a string").at(span)),
        };
        Ok(Requantize { scales, out_scale, activation })
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let x = operands[0];
        if x.dtype != DType::I32 {
            return Err(OpError::new(format!("requantize takes an i32 accumulator, not {}", x.dtype)));
        }
        self.scales.check("requantize", x)?;
        checked_type("requantize", DType::I8, x.shape.clone())
    }

    pub fn eval(&self, x: &Tensor) -> Tensor {
        let scale = self.scales.index_fn(x.shape());
        let nnc_runtime::tensor::Data::I32(acc) = x.data() else { unreachable!("requantize takes i32") };
        let data = acc.iter().enumerate().map(|(i, &v)| requantize_value(v, scale(i), self.activation, self.out_scale)).collect();
        Tensor::from_i8(x.shape().to_vec(), data).expect("same shape")
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        let mut a = self.scales.attrs();
        a.push(("out_scale", attr(self.out_scale)));
        a.push(("activation", Const::Str(self.activation.name().to_string())));
        a
    }
}

/// The dtypes of a matrix product's operands (`conv2d`, `dense`, `matmul`): all one float
/// dtype (the result has it), or int8 codes with an optional int32 bias (the result is the
/// int32 accumulator).
pub fn product_dtype(op: &str, operands: &[&TensorType]) -> OpResult<DType> {
    if operands[0].dtype == DType::I8 {
        let ok = operands.get(1).is_some_and(|w| w.dtype == DType::I8) && operands.get(2).is_none_or(|b| b.dtype == DType::I32);
        if !ok {
            let got: Vec<String> = operands.iter().map(|t| t.dtype.to_string()).collect();
            return Err(OpError::new(format!("{op}: an int8 product takes i8 operands and an i32 bias, not ({})", got.join(", "))));
        }
        return Ok(DType::I32);
    }
    super::common_float(op, operands)
}

/// Widen int8 codes for exact integer arithmetic. Accumulation wraps (two's complement), so
/// any summation order gives the same bits: the property that lets a tiled backend match the
/// interpreter exactly.
pub fn widen(t: &Tensor) -> Vec<std::num::Wrapping<i32>> {
    match t.data() {
        nnc_runtime::tensor::Data::I8(v) => v.iter().map(|&x| std::num::Wrapping(x as i32)).collect(),
        nnc_runtime::tensor::Data::I32(v) => v.iter().map(|&x| std::num::Wrapping(x)).collect(),
        nnc_runtime::tensor::Data::F32(_) => unreachable!("integer operands"),
    }
}

impl Quantize {
    pub fn traits(&self) -> super::Traits {
        super::Traits { codes: super::Codes::Converts, ..super::Traits::PLAIN }
    }
}

impl Dequantize {
    pub fn traits(&self) -> super::Traits {
        super::Traits { codes: super::Codes::Converts, ..super::Traits::PLAIN }
    }
}

impl Requantize {
    pub fn traits(&self) -> super::Traits {
        super::Traits { codes: super::Codes::Converts, ..super::Traits::PLAIN }
    }
}
