//! `lstm`: one unidirectional LSTM layer over `x[T, N, I]`, zero initial state, PyTorch gate
//! order (i, f, g, o), returning every step's hidden state `[T, N, H]`.

use super::{checked_type, common_float, expect_shape, Built, CallArgs, Const, ImplicitParam, Op, OpError, OpResult};
use crate::ir::{ShapeDisplay, TensorType};

#[derive(Clone, Debug, PartialEq)]
pub struct Lstm {
    pub hidden: usize,
}

impl Lstm {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 5, "x, and optionally weight_ih, weight_hh, bias_ih, bias_hh")?;
        let x = args.operand(0).clone();
        if x.rank() != 3 {
            return Err(OpError::new(format!("lstm expects x of shape [T, N, I], but `x` has shape {}", ShapeDisplay(&x.shape))).at(args.operands[0].span.clone()));
        }
        let bias_kw = args.bool("bias")?;
        let mut implicit = Vec::new();
        let hidden = if args.operands.len() == 1 {
            let h = args.required_positive("hidden", "an lstm without weight tensors creates them: give `hidden=`")?;
            let i = x.shape[2];
            let four_h = h.checked_mul(4).ok_or_else(|| OpError::new("lstm: `hidden` is too large"))?;
            implicit.push(ImplicitParam { field: "weight_ih", ty: x.with_shape(vec![four_h, i]) });
            implicit.push(ImplicitParam { field: "weight_hh", ty: x.with_shape(vec![four_h, h]) });
            if bias_kw.unwrap_or(true) {
                implicit.push(ImplicitParam { field: "bias_ih", ty: x.with_shape(vec![four_h]) });
                implicit.push(ImplicitParam { field: "bias_hh", ty: x.with_shape(vec![four_h]) });
            }
            h
        } else {
            let n = args.operands.len();
            if n != 3 && n != 5 {
                return Err(OpError::new(format!("lstm takes x, weight_ih, weight_hh and optionally bias_ih, bias_hh: 1, 3 or 5 tensors, not {n}")).at(args.span.clone()));
            }
            let whh = args.operand(2).clone();
            let h = *whh.shape.get(1).ok_or_else(|| OpError::new(format!("lstm: weight_hh must have shape [4H, H], not {}", ShapeDisplay(&whh.shape))).at(args.operands[2].span.clone()))?;
            if let Some(span) = args.keyword_span("hidden") {
                if args.positive("hidden")? != Some(h) {
                    return Err(OpError::new(format!("lstm: `hidden=` disagrees with weight_hh of shape {}", ShapeDisplay(&whh.shape))).at(span));
                }
            }
            h
        };
        args.finish(&["hidden", "bias"])?;
        Ok(Built { op: Op::Lstm(Lstm { hidden }), implicit })
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        if operands.len() != 3 && operands.len() != 5 {
            return Err(OpError::new(format!("lstm takes x, weight_ih, weight_hh and optionally bias_ih, bias_hh; got {} operands", operands.len())));
        }
        let dtype = common_float("lstm", operands)?;
        let x = operands[0];
        if x.rank() != 3 {
            return Err(OpError::new(format!("lstm expects x of shape [T, N, I], got {}", ShapeDisplay(&x.shape))));
        }
        let h = self.hidden;
        expect_shape("lstm", "weight_ih", operands[1], &[4 * h, x.shape[2]])?;
        expect_shape("lstm", "weight_hh", operands[2], &[4 * h, h])?;
        for (t, what) in operands[3..].iter().zip(["bias_ih", "bias_hh"]) {
            expect_shape("lstm", what, t, &[4 * h])?;
        }
        checked_type("lstm", dtype, vec![x.shape[0], x.shape[1], h])
    }

    pub fn eval(&self, x: &[&[f32]], shapes: &[&[usize]], _out: &[usize]) -> Vec<f32> {
        let [steps, batch, input] = shapes[0][..] else { unreachable!("lstm input has rank 3") };
        let shape = nnc_runtime::reference::LstmShape { steps, batch, input, hidden: self.hidden };
        let mut out = vec![0.0f32; steps * batch * self.hidden];
        nnc_runtime::reference::lstm(shape, x[0], x[1], x[2], x.get(3).copied(), x.get(4).copied(), &mut out);
        out
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        vec![("hidden", Const::Int(self.hidden as i64))]
    }

    pub fn macs(&self, operands: &[&TensorType], _out: &TensorType) -> u64 {
        let x = &operands[0].shape;
        let h = self.hidden;
        (x[0] * x[1] * 4 * h * (x[2] + h)) as u64
    }
}

impl Lstm {
    pub fn traits(&self) -> super::Traits {
        super::Traits::PLAIN
    }
}
