//! `batch_norm` (inference form, channel axis 1) and `layer_norm` (last axis).

use super::{common_float, expect_shape, Built, CallArgs, Const, ImplicitParam, Op, OpError, OpResult};
use crate::ir::{ShapeDisplay, TensorType};

fn eps(args: &mut CallArgs) -> OpResult<f64> {
    let span = args.keyword_span("eps");
    let eps = args.float("eps")?.unwrap_or(1e-5);
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(OpError::new(format!("{}: `eps` must be a non-negative number, not {eps}", args.op)).at(span.unwrap_or(args.span.clone())));
    }
    Ok(eps)
}

/// Explicit parameters (`batch_norm(x, gamma, beta, mean, var)`) or none, in which case the
/// call creates them with these field names and shape `[size]`.
fn params(args: &mut CallArgs, fields: &'static [&'static str], size: usize) -> OpResult<Vec<ImplicitParam>> {
    let n = args.operands.len();
    if n == 1 {
        let x = args.operand(0).clone();
        Ok(fields.iter().map(|&field| ImplicitParam { field, ty: x.with_shape(vec![size]) }).collect())
    } else if n == fields.len() + 1 {
        Ok(Vec::new())
    } else {
        let list = fields.join(", ");
        Err(OpError::new(format!("{} takes either just `x` or `x, {list}`, but {n} tensors were given", args.op)).at(args.span.clone()))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub eps: f64,
}

const BN_FIELDS: &[&str] = &["weight", "bias", "running_mean", "running_var"];

impl BatchNorm {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 5, "x, and optionally weight, bias, running_mean, running_var")?;
        let x = args.operand(0).clone();
        if x.rank() < 2 {
            return Err(OpError::new(format!("batch_norm normalizes channel axis 1, so it needs rank 2 or more, but `x` has shape {}", ShapeDisplay(&x.shape))).at(args.operands[0].span.clone()));
        }
        let implicit = params(args, BN_FIELDS, x.shape[1])?;
        let eps = eps(args)?;
        args.finish(&["eps"])?;
        Ok(Built { op: Op::BatchNorm(BatchNorm { eps }), implicit })
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let dtype = common_float("batch_norm", operands)?;
        let x = operands[0];
        if x.rank() < 2 || operands.len() != 5 {
            return Err(OpError::new("batch_norm takes x of rank 2 or more and four [C] parameters"));
        }
        for (t, what) in operands[1..].iter().zip(BN_FIELDS) {
            expect_shape("batch_norm", what, t, &[x.shape[1]])?;
        }
        Ok(TensorType::new(dtype, x.shape.clone()))
    }

    pub fn eval(&self, x: &[&[f32]], shapes: &[&[usize]], _out: &[usize]) -> Vec<f32> {
        let shape = shapes[0];
        let c = shape[1];
        let inner: usize = shape[2..].iter().product();
        let (gamma, beta, mean, var) = (x[1], x[2], x[3], x[4]);
        x[0].iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = (i / inner) % c;
                let inv = 1.0 / (var[ch] as f64 + self.eps).sqrt();
                ((v as f64 - mean[ch] as f64) * inv * gamma[ch] as f64 + beta[ch] as f64) as f32
            })
            .collect()
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        vec![("eps", Const::Float(self.eps))]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    pub eps: f64,
}

impl LayerNorm {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 3, "x, and optionally weight and bias")?;
        let x = args.operand(0).clone();
        let Some(&d) = x.shape.last() else {
            return Err(OpError::new("layer_norm normalizes the last axis, so it needs rank 1 or more, but `x` is a scalar").at(args.operands[0].span.clone()));
        };
        let implicit = params(args, &["weight", "bias"], d)?;
        let eps = eps(args)?;
        args.finish(&["eps"])?;
        Ok(Built { op: Op::LayerNorm(LayerNorm { eps }), implicit })
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let dtype = common_float("layer_norm", operands)?;
        let x = operands[0];
        let d = *x.shape.last().ok_or_else(|| OpError::new("layer_norm needs rank 1 or more"))?;
        for (t, what) in operands[1..].iter().zip(["weight", "bias"]) {
            expect_shape("layer_norm", what, t, &[d])?;
        }
        Ok(TensorType::new(dtype, x.shape.clone()))
    }

    pub fn eval(&self, x: &[&[f32]], shapes: &[&[usize]], _out: &[usize]) -> Vec<f32> {
        let d = *shapes[0].last().expect("rank checked");
        let mut out = vec![0.0f32; x[0].len()];
        if d > 0 {
            for (row, o) in x[0].chunks_exact(d).zip(out.chunks_exact_mut(d)) {
                nnc_runtime::reference::layer_norm_row(row, x[1], x[2], self.eps, o);
            }
        }
        out
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        vec![("eps", Const::Float(self.eps))]
    }
}

impl BatchNorm {
    pub fn traits(&self) -> super::Traits {
        super::Traits::PLAIN
    }
}

impl LayerNorm {
    pub fn traits(&self) -> super::Traits {
        super::Traits::PLAIN
    }
}
