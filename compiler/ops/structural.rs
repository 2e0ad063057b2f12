//! Ops that move data without arithmetic: `flatten`, `reshape`, `transpose`, `concat`, `slice`.

use super::{checked_type, normalize_axis, strides, Built, CallArgs, Const, Op, OpError, OpResult};
use crate::ir::{ShapeDisplay, TensorType};

fn list(v: &[usize]) -> Const {
    Const::List(v.iter().map(|&x| Const::Int(x as i64)).collect())
}

#[derive(Clone, Debug, PartialEq)]
pub struct Flatten;

impl Flatten {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 1, "x")?;
        if args.operand(0).rank() == 0 {
            return Err(OpError::new("flatten needs a tensor of rank 1 or more ([N, ...]), not a scalar").at(args.operands[0].span.clone()));
        }
        args.finish(&[])?;
        Built::plain(Op::Flatten(Flatten))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        super::float_or_codes("flatten", operands)?;
        let x = operands[0];
        let n = *x.shape.first().ok_or_else(|| OpError::new("flatten needs rank 1 or more"))?;
        Ok(x.with_shape(vec![n, x.shape[1..].iter().product()]))
    }

    pub fn eval(&self, x: &[&[f32]], _shapes: &[&[usize]], _out: &[usize]) -> Vec<f32> {
        x[0].to_vec()
    }
}

/// The target shape is stored resolved (no `-1`), so the op's type never depends on its input.
#[derive(Clone, Debug, PartialEq)]
pub struct Reshape {
    pub shape: Vec<usize>,
}

impl Reshape {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 1, "x, then the new shape as a list")?;
        let (dims, span) = args.take("shape").map(|(c, s)| (Some(c), s)).unwrap_or((None, args.span.clone()));
        let Some(Const::List(dims)) = dims else {
            return Err(OpError::new("reshape: missing the new shape").at(span).help("write `reshape(x, [d0, d1, ...])`, with at most one -1"));
        };
        let x = args.operand(0);
        let numel = x.numel();
        let mut shape = Vec::with_capacity(dims.len());
        let mut infer_at = None;
        for (i, d) in dims.iter().enumerate() {
            match d {
                Const::Int(-1) if infer_at.is_none() => {
                    infer_at = Some(i);
                    shape.push(1);
                }
                Const::Int(-1) => return Err(OpError::new("reshape: only one dimension may be -1").at(span)),
                Const::Int(v) if *v >= 1 && *v <= 1 << 40 => shape.push(*v as usize),
                other => return Err(OpError::new(format!("reshape: dimensions must be positive integers or -1, not `{other}`")).at(span)),
            }
        }
        let known = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| OpError::new("reshape: the new shape is too large").at(span.clone()))?;
        if let Some(i) = infer_at {
            if !numel.is_multiple_of(known) {
                return Err(OpError::new(format!("reshape: cannot infer the -1 in {}: {numel} elements of {} are not divisible by {known}", Const::List(dims.clone()), ShapeDisplay(&x.shape))).at(span));
            }
            shape[i] = numel / known;
        } else if known != numel {
            return Err(OpError::new(format!("reshape: {} has {numel} elements, but the new shape {} has {known}", ShapeDisplay(&x.shape), ShapeDisplay(&shape)))
                .at(span)
                .help("the element count must stay the same; use -1 for one dimension to have it inferred"));
        }
        args.finish(&["shape"])?;
        Built::plain(Op::Reshape(Reshape { shape }))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        super::float_or_codes("reshape", operands)?;
        let x = operands[0];
        let n: usize = self.shape.iter().product();
        if n != x.numel() {
            return Err(OpError::new(format!("reshape: {} does not have the {n} elements of {}", ShapeDisplay(&x.shape), ShapeDisplay(&self.shape))));
        }
        Ok(x.with_shape(self.shape.clone()))
    }

    pub fn eval(&self, x: &[&[f32]], _shapes: &[&[usize]], _out: &[usize]) -> Vec<f32> {
        x[0].to_vec()
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        vec![("shape", list(&self.shape))]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Transpose {
    pub perm: Vec<usize>,
}

impl Transpose {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 1, "x")?;
        let rank = args.operand(0).rank();
        let perm = match args.int_list("perm")? {
            // NumPy's default: reverse the axes.
            None => (0..rank).rev().collect(),
            Some((p, span)) => {
                let mut perm = Vec::with_capacity(p.len());
                for &a in &p {
                    perm.push(normalize_axis("transpose", a, rank).map_err(|e| e.at(span.clone()))?);
                }
                let mut seen = perm.clone();
                seen.sort_unstable();
                if seen != (0..rank).collect::<Vec<_>>() {
                    return Err(OpError::new(format!("transpose: perm {p:?} is not a permutation of the {rank} axes")).at(span));
                }
                perm
            }
        };
        args.finish(&["perm"])?;
        Built::plain(Op::Transpose(Transpose { perm }))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        super::common_float("transpose", operands)?;
        let x = operands[0];
        if self.perm.len() != x.rank() {
            return Err(OpError::new(format!("transpose: perm has {} axes but the input has rank {}", self.perm.len(), x.rank())));
        }
        Ok(x.with_shape(self.perm.iter().map(|&a| x.shape[a]).collect()))
    }

    pub fn eval(&self, x: &[&[f32]], shapes: &[&[usize]], out: &[usize]) -> Vec<f32> {
        let in_strides = strides(shapes[0]);
        let n: usize = out.iter().product();
        let mut result = Vec::with_capacity(n);
        let mut coord = vec![0usize; out.len()];
        for _ in 0..n {
            let src: usize = coord.iter().zip(&self.perm).map(|(&c, &a)| c * in_strides[a]).sum();
            result.push(x[0][src]);
            // Advance the output coordinate in row-major order.
            for axis in (0..out.len()).rev() {
                coord[axis] += 1;
                if coord[axis] < out[axis] {
                    break;
                }
                coord[axis] = 0;
            }
        }
        result
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        vec![("perm", list(&self.perm))]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Concat {
    pub axis: usize,
}

impl Concat {
    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, usize::MAX, "the tensors to join")?;
        let rank = args.operand(0).rank();
        if rank == 0 {
            return Err(OpError::new("concat cannot join scalars").at(args.operands[0].span.clone()));
        }
        let span = args.keyword_span("axis").unwrap_or(args.span.clone());
        let axis = normalize_axis("concat", args.int("axis")?.unwrap_or(0), rank).map_err(|e| e.at(span))?;
        args.finish(&["axis"])?;
        Built::plain(Op::Concat(Concat { axis }))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let dtype = super::common_float("concat", operands)?;
        let first = &operands[0].shape;
        if self.axis >= first.len() {
            return Err(OpError::new(format!("concat: axis {} is out of range for shape {}", self.axis, ShapeDisplay(first))));
        }
        let mut shape = first.clone();
        shape[self.axis] = 0;
        for t in operands {
            let same_rank = t.shape.len() == first.len();
            if !same_rank || t.shape.iter().zip(first).enumerate().any(|(i, (a, b))| i != self.axis && a != b) {
                return Err(OpError::new(format!(
                    "concat: shapes {} and {} differ outside axis {}",
                    ShapeDisplay(first),
                    ShapeDisplay(&t.shape),
                    self.axis
                )));
            }
            shape[self.axis] += t.shape[self.axis];
        }
        checked_type("concat", dtype, shape)
    }

    pub fn eval(&self, x: &[&[f32]], shapes: &[&[usize]], out: &[usize]) -> Vec<f32> {
        let outer: usize = out[..self.axis].iter().product();
        let mut result = Vec::with_capacity(out.iter().product());
        for o in 0..outer {
            for (data, shape) in x.iter().zip(shapes) {
                let chunk: usize = shape[self.axis..].iter().product();
                result.extend_from_slice(&data[o * chunk..][..chunk]);
            }
        }
        result
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        vec![("axis", Const::Int(self.axis as i64))]
    }
}

/// One-axis slice with Python semantics: negative bounds count from the end, out-of-range
/// bounds clamp, and a negative step walks backwards.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    pub axis: usize,
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Slice {
    /// The first index and the number of indices selected along an axis of length `len`
    /// (Python's `slice.indices`), computed without enumerating them.
    pub fn range(&self, len: usize) -> (usize, usize) {
        let len = len as i64;
        let norm = |v: i64| if v < 0 { v.saturating_add(len) } else { v };
        let (start, end) = if self.step > 0 {
            (norm(self.start).clamp(0, len), norm(self.end).clamp(0, len))
        } else {
            (norm(self.start).clamp(-1, len - 1), norm(self.end).clamp(-1, len - 1))
        };
        let span = if self.step > 0 { end - start } else { start - end };
        let step = self.step.unsigned_abs();
        let count = if span <= 0 { 0 } else { (span as u64).div_ceil(step) };
        (start.max(0) as usize, count as usize)
    }

    /// The selected indices, in order.
    pub fn indices(&self, len: usize) -> impl Iterator<Item = usize> {
        let (start, count) = self.range(len);
        let step = self.step;
        (0..count).map(move |k| (start as i64 + k as i64 * step) as usize)
    }

    pub fn build(args: &mut CallArgs) -> OpResult<Built> {
        args.expect_operands(1, 1, "x")?;
        let rank = args.operand(0).rank();
        if rank == 0 {
            return Err(OpError::new("slice cannot slice a scalar").at(args.operands[0].span.clone()));
        }
        let axis_span = args.keyword_span("axis").unwrap_or(args.span.clone());
        let axis = normalize_axis("slice", args.int("axis")?.unwrap_or(0), rank).map_err(|e| e.at(axis_span))?;
        let step_span = args.keyword_span("step").unwrap_or(args.span.clone());
        let step = args.int("step")?.unwrap_or(1);
        if step == 0 {
            return Err(OpError::new("slice: `step` cannot be 0").at(step_span));
        }
        let start = args.int("start")?.unwrap_or(if step > 0 { 0 } else { i64::MAX });
        let end = args.int("end")?.unwrap_or(if step > 0 { i64::MAX } else { i64::MIN });
        args.finish(&["axis", "start", "end", "step"])?;
        let slice = Slice { axis, start, end, step };
        if slice.range(args.operand(0).shape[axis]).1 == 0 {
            return Err(OpError::new(format!("slice selects nothing from axis {axis} of shape {}", ShapeDisplay(&args.operand(0).shape)))
                .at(args.span.clone())
                .help("nnc tensors cannot be empty; check `start`, `end` and `step`"));
        }
        Built::plain(Op::Slice(slice))
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        super::common_float("slice", operands)?;
        let x = operands[0];
        if self.axis >= x.rank() {
            return Err(OpError::new(format!("slice: axis {} is out of range for shape {}", self.axis, ShapeDisplay(&x.shape))));
        }
        let n = self.range(x.shape[self.axis]).1;
        if n == 0 {
            return Err(OpError::new(format!("slice selects nothing from shape {}", ShapeDisplay(&x.shape))));
        }
        let mut shape = x.shape.clone();
        shape[self.axis] = n;
        Ok(x.with_shape(shape))
    }

    pub fn eval(&self, x: &[&[f32]], shapes: &[&[usize]], _out: &[usize]) -> Vec<f32> {
        let shape = shapes[0];
        let inner: usize = shape[self.axis + 1..].iter().product();
        let outer: usize = shape[..self.axis].iter().product();
        let mut out = Vec::with_capacity(outer * self.range(shape[self.axis]).1 * inner);
        for o in 0..outer {
            for i in self.indices(shape[self.axis]) {
                out.extend_from_slice(&x[0][(o * shape[self.axis] + i) * inner..][..inner]);
            }
        }
        out
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        vec![("axis", Const::Int(self.axis as i64)), ("start", Const::Int(self.start)), ("end", Const::Int(self.end)), ("step", Const::Int(self.step))]
    }
}

impl Flatten {
    pub fn traits(&self) -> super::Traits {
        super::Traits { view: true, codes: super::Codes::Moves, ..super::Traits::PLAIN }
    }
}

impl Reshape {
    pub fn traits(&self) -> super::Traits {
        super::Traits { view: true, codes: super::Codes::Moves, ..super::Traits::PLAIN }
    }
}

impl Transpose {
    pub fn traits(&self) -> super::Traits {
        super::Traits::PLAIN
    }
}

impl Concat {
    pub fn traits(&self) -> super::Traits {
        super::Traits::PLAIN
    }
}

impl Slice {
    pub fn traits(&self) -> super::Traits {
        super::Traits::PLAIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_slice_semantics() {
        let s = |start, end, step| Slice { axis: 0, start, end, step }.indices(5).collect::<Vec<_>>();
        assert_eq!(s(1, 3, 1), vec![1, 2]);
        assert_eq!(s(-2, 100, 1), vec![3, 4]);
        assert_eq!(s(0, 5, 2), vec![0, 2, 4]);
        assert_eq!(s(i64::MAX, i64::MIN, -1), vec![4, 3, 2, 1, 0]);
        assert_eq!(s(-1, -4, -2), vec![4, 2]);
        assert!(s(3, 1, 1).is_empty());
        assert_eq!(s(1, i64::MAX, i64::MAX), vec![1]);
        assert_eq!(Slice { axis: 0, start: 1, end: i64::MAX, step: 1 }.range(1 << 40), (1, (1 << 40) - 1));
    }
}
