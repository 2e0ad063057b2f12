//! Layouts at the op level: the `convert_layout` op that layout selection inserts, and the
//! rule saying which operands of each op may take a non-row-major layout.
//!
//! Values keep logical shapes whatever their layout, so `convert_layout` is the identity on
//! values; it exists so that a change of memory order is an explicit, costed node in the IR.

use super::{CallArgs, Const, Op, OpError, OpResult};
use crate::ir::{Layout, ShapeDisplay, TensorType};

#[derive(Clone, Debug, PartialEq)]
pub struct ConvertLayout {
    pub to: Layout,
}

impl ConvertLayout {
    pub fn build(args: &mut CallArgs) -> OpResult<super::Built> {
        args.expect_operands(1, 1, "x")?;
        let to = match args.take("to") {
            Some((Const::Str(s), span)) => Layout::from_name(&s).ok_or_else(|| OpError::new(format!("convert_layout: unknown layout `{s}` (nchw, nhwc or nchw4c)")).at(span))?,
            _ => return Err(OpError::new("convert_layout: needs `to=\"nchw\"`, `to=\"nhwc\"` or `to=\"nchw4c\"`").at(args.span.clone())),
        };
        args.finish(&[])?;
        super::Built::plain(Op::ConvertLayout(ConvertLayout { to }))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let x = operands[0];
        if x.rank() != 4 {
            return Err(OpError::new(format!("convert_layout takes rank-4 values, not {}", ShapeDisplay(&x.shape))));
        }
        Ok(x.with_layout(self.to))
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        vec![("to", Const::Str(self.to.name().to_string()))]
    }
}

/// Which operands of an op may take the layout the op runs in, when that is not row-major.
/// All of them share that layout, every other operand is row-major, and the result has it
/// too when `result` is set (else the result is row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct Follows {
    pub operands: Vec<usize>,
    pub result: bool,
}

/// The layout rule of `op` on operands of these shapes: `None` if it runs row-major only.
/// Every backend that reads layouts implements exactly these combinations.
pub fn follows(op: &Op, operands: &[&TensorType], result_shape: &[usize]) -> Option<Follows> {
    let result_rank = result_shape.len();
    let all = |n: usize| Follows { operands: (0..n).collect(), result: true };
    if result_rank != 4 {
        return None;
    }
    match op {
        Op::Unary(_) | Op::Cast(_) => Some(all(1)),
        // Without broadcasting: every operand is the result's shape.
        Op::Binary(_) => (operands[0].shape == operands[1].shape).then(|| all(2)),
        // Channels-last convolutions: dense ones, and depthwise ones with one filter per
        // channel. Weights and bias stay row-major (backends repack constants as they like).
        Op::Conv2d(c) => {
            let (ch, f) = (operands[0].shape[1], operands[1].shape[0]);
            (c.groups == 1 || (c.groups == ch && f == ch)).then(|| Follows { operands: vec![0], result: true })
        }
        Op::Pool(_) => Some(all(1)),
        // The result `[N, C, 1, 1]` has the same bytes in either layout: call it row-major.
        Op::GlobalAvgPool(_) => Some(Follows { operands: vec![0], result: false }),
        Op::ConvertLayout(_) => None,
        Op::Fused(f) => {
            let n = f.anchor_operands(operands.len());
            // Broadcast extra operands are read by row-major index.
            if operands[n..].iter().any(|e| e.shape != result_shape) {
                return None;
            }
            let mut inner = match &f.anchor {
                Some(anchor) => follows(&anchor.op(), &operands[..n], result_shape)?,
                None => all(1),
            };
            inner.operands.extend(n..operands.len());
            Some(inner)
        }
        Op::Dense(_)
        | Op::MatMul(_)
        | Op::BatchNorm(_)
        | Op::LayerNorm(_)
        | Op::Lstm(_)
        | Op::Softmax(_)
        | Op::Flatten(_)
        | Op::Reshape(_)
        | Op::Transpose(_)
        | Op::Concat(_)
        | Op::Slice(_)
        | Op::Attention(_)
        | Op::Quantize(_)
        | Op::Dequantize(_)
        | Op::Requantize(_) => None,
    }
}

/// The result layout of `op` given its operands' layouts, or why the combination is invalid.
pub fn result_layout(op: &Op, operands: &[&TensorType], result_shape: &[usize]) -> OpResult<Layout> {
    if let Op::ConvertLayout(c) = op {
        if c.to == Layout::Nchw4c && !result_shape[1].is_multiple_of(4) {
            return Err(OpError::new("convert_layout: nchw4c needs a channel count that is a multiple of 4"));
        }
        return Ok(c.to);
    }
    let rule = follows(op, operands, result_shape);
    let following = rule.as_ref().map_or(&[][..], |r| &r.operands[..]);
    let mut chosen: Option<Layout> = None;
    for (i, t) in operands.iter().enumerate() {
        if following.contains(&i) {
            match chosen {
                None => chosen = Some(t.layout),
                Some(l) if l != t.layout => return Err(OpError::new(format!("{}: operands in layouts {} and {} (insert a convert_layout)", op.name(), l.name(), t.layout.name()))),
                Some(_) => {}
            }
        } else if t.layout != Layout::RowMajor {
            return Err(OpError::new(format!("{}: operand {i} must be row-major (nchw), not {}", op.name(), t.layout.name())));
        }
    }
    if chosen == Some(Layout::Nchw4c) {
        let partial = |shape: &[usize]| shape.len() != 4 || !shape[1].is_multiple_of(4);
        let result_blocked = rule.as_ref().is_some_and(|r| r.result);
        if following.iter().any(|&i| partial(&operands[i].shape)) || (result_blocked && partial(result_shape)) {
            return Err(OpError::new(format!("{}: nchw4c needs channel counts that are multiples of 4", op.name())));
        }
    }
    Ok(match rule {
        Some(r) if r.result => chosen.unwrap_or(Layout::RowMajor),
        _ => Layout::RowMajor,
    })
}

impl ConvertLayout {
    /// Not elementwise: the same logical element sits at another byte offset.
    pub fn traits(&self) -> super::Traits {
        super::Traits::PLAIN
    }
}
