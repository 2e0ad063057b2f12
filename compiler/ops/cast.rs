//! `cast(x) dtype="bf16"`: a float value in another float dtype (f32, f16, bf16), rounded to
//! nearest-even when narrowing and exact when widening. IR-only: `--quantize bf16` inserts it
//! around matrix products (mixed precision); sources never name it.

use super::{checked_type, Built, CallArgs, Const, Op, OpError, OpResult};
use crate::ir::TensorType;
use nnc_runtime::DType;

#[derive(Clone, Debug, PartialEq)]
pub struct Cast {
    pub to: DType,
}

impl Cast {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 1, "x")?;
        let to = match args.take("dtype") {
            Some((Const::Str(s), span)) => DType::from_name(&s).filter(|d| d.is_float()).ok_or_else(|| OpError::new(format!("cast: `dtype` is f32, f16 or bf16, not \"{s}\"")).at(span))?,
            Some((_, span)) => return Err(OpError::new("cast: `dtype` is a string").at(span)),
            None => return Err(OpError::new("cast: needs `dtype=`").at(args.span.clone())),
        };
        args.finish(&["dtype"])?;
        Built::plain(Op::Cast(Cast { to }))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let x = operands[0];
        if !x.dtype.is_float() {
            return Err(OpError::new(format!("cast converts between float dtypes, not from {}", x.dtype)));
        }
        checked_type("cast", self.to, x.shape.clone())
    }

    /// The values as they are; the result tensor rounds them to `to` as every float result
    /// of a narrow dtype is rounded.
    pub fn eval(&self, x: &[&[f32]], _shapes: &[&[usize]], _out: &[usize]) -> Vec<f32> {
        x[0].to_vec()
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        vec![("dtype", Const::Str(self.to.name().to_string()))]
    }

    pub fn traits(&self) -> super::Traits {
        super::Traits { elementwise: true, ..super::Traits::PLAIN }
    }
}
