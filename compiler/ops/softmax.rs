//! `softmax` along one axis and scaled dot-product `attention`.

use super::{checked_type, common_float, normalize_axis, Built, CallArgs, Const, Op, OpError, OpResult};
use crate::ir::{ShapeDisplay, TensorType};

#[derive(Clone, Debug, PartialEq)]
pub struct Softmax {
    /// Non-negative after building.
    pub axis: usize,
}

// Softmax of one lane in f64: the runtime's definition, which its reference attention shares.

impl Softmax {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 1, "x")?;
        let rank = args.operand(0).rank();
        if rank == 0 {
            return Err(OpError::new("softmax needs a tensor of rank 1 or more, not a scalar").at(args.operands[0].span.clone()));
        }
        let span = args.keyword_span("axis").unwrap_or(args.span.clone());
        let axis = normalize_axis("softmax", args.int("axis")?.unwrap_or(-1), rank).map_err(|e| e.at(span))?;
        args.finish(&["axis"])?;
        Built::plain(Op::Softmax(Softmax { axis }))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let dtype = common_float("softmax", operands)?;
        if self.axis >= operands[0].rank() {
            return Err(OpError::new(format!("softmax: axis {} is out of range for shape {}", self.axis, ShapeDisplay(&operands[0].shape))));
        }
        Ok(TensorType::new(dtype, operands[0].shape.clone()))
    }

    pub fn eval(&self, x: &[&[f32]], shapes: &[&[usize]], _out: &[usize]) -> Vec<f32> {
        let shape = shapes[0];
        let (outer, inner): (usize, usize) = (shape[..self.axis].iter().product(), shape[self.axis + 1..].iter().product());
        let mut out = vec![0.0f32; x[0].len()];
        // SAFETY: both buffers hold the operand's `outer·len·inner` values.
        unsafe { nnc_runtime::reference::softmax(1, outer, shape[self.axis], inner, x[0].as_ptr(), out.as_mut_ptr()) };
        out
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        vec![("axis", Const::Int(self.axis as i64))]
    }
}

/// `softmax(q·kᵀ/√d [+ causal mask])·v` over `q[..., Sq, d]`, `k[..., Sk, d]`, `v[..., Sk, dv]`.
/// The causal mask is aligned top-left, as PyTorch's `is_causal`: query i sees keys j ≤ i.
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub causal: bool,
}

impl Attention {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(3, 3, "q, k and v")?;
        let causal = args.bool("causal")?.unwrap_or(false);
        args.finish(&["causal"])?;
        Built::plain(Op::Attention(Attention { causal }))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let dtype = common_float("attention", operands)?;
        let (q, k, v) = (&operands[0].shape, &operands[1].shape, &operands[2].shape);
        let shapes = || format!("q {}, k {}, v {}", ShapeDisplay(q), ShapeDisplay(k), ShapeDisplay(v));
        if q.len() < 2 || k.len() != q.len() || v.len() != q.len() {
            return Err(OpError::new(format!("attention: q, k and v must have one rank of 2 or more, [..., S, d]; got {}", shapes())));
        }
        let r = q.len();
        if q[..r - 2] != k[..r - 2] || q[..r - 2] != v[..r - 2] {
            return Err(OpError::new(format!("attention: the batch dimensions must be equal; got {}", shapes())));
        }
        if q[r - 1] != k[r - 1] {
            return Err(OpError::new(format!("attention: q and k must have the same last dimension d; got {}", shapes())));
        }
        if k[r - 2] != v[r - 2] {
            return Err(OpError::new(format!("attention: k and v must have the same sequence length; got {}", shapes())));
        }
        let mut out = q.clone();
        out[r - 1] = v[r - 1];
        checked_type("attention", dtype, out)
    }

    pub fn eval(&self, x: &[&[f32]], shapes: &[&[usize]], _out: &[usize]) -> Vec<f32> {
        let r = shapes[0].len();
        let s = nnc_runtime::reference::AttentionShape { batches: shapes[0][..r - 2].iter().product(), sq: shapes[0][r - 2], sk: shapes[1][r - 2], d: shapes[0][r - 1], dv: shapes[2][r - 1], causal: self.causal };
        let mut out = vec![0.0f32; s.batches * s.sq * s.dv];
        // SAFETY: the operands were type-checked against these shapes, and `out` is new.
        unsafe { nnc_runtime::reference::attention(1, s, x[0].as_ptr(), x[1].as_ptr(), x[2].as_ptr(), out.as_mut_ptr()) };
        out
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        vec![("causal", Const::Bool(self.causal))]
    }

    pub fn macs(&self, operands: &[&TensorType], out: &TensorType) -> u64 {
        let q = &operands[0].shape;
        let r = q.len();
        let sk = operands[1].shape[r - 2];
        let batches: usize = q[..r - 2].iter().product();
        // q·kᵀ plus the weighted sum of v.
        (batches * q[r - 2] * sk * q[r - 1] + out.numel() * sk) as u64
    }
}

impl Softmax {
    pub fn traits(&self) -> super::Traits {
        super::Traits::PLAIN
    }
}

impl Attention {
    pub fn traits(&self) -> super::Traits {
        super::Traits::PLAIN
    }
}
