//! `fused`: a matrix-product op (`conv2d`, `dense`, `matmul`) followed by an elementwise
//! epilogue of activations and residual additions, computed as one op. The `fuse-epilogues`
//! pass makes these so backends can apply the epilogue while the product's result is hot,
//! instead of in separate passes over memory.
//!
//! Operands: the anchor op's operands, then one extra operand per `add` step (each of the
//! result's exact shape). In IR text:
//! `%y = fused(%x, %w, %b, %skip) anchor="conv2d" epilogue=["add", "relu"] stride=[1, 1] ...`

use super::{CallArgs, Const, Op, OpError, OpResult, UnaryKind};
use crate::ir::{ShapeDisplay, TensorType};

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// An activation without attributes.
    Unary(UnaryKind),
    /// Add the next extra operand.
    Add,
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::Unary(k) => k.name(),
            Step::Add => "add",
        }
    }

    /// The steps fusion accepts: attribute-free activations (so the IR text stays a list of
    /// names) and `add`.
    pub fn from_name(name: &str) -> Option<Step> {
        if name == "add" {
            return Some(Step::Add);
        }
        match UnaryKind::from_name(name)? {
            k @ (UnaryKind::Relu | UnaryKind::Relu6 | UnaryKind::Sigmoid | UnaryKind::Tanh | UnaryKind::Gelu | UnaryKind::Silu) => Some(Step::Unary(k)),
            UnaryKind::Exp | UnaryKind::Sqrt | UnaryKind::Abs | UnaryKind::Neg | UnaryKind::LeakyRelu { .. } | UnaryKind::Clip { .. } => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Fused {
    pub anchor: Box<Op>,
    pub steps: Vec<Step>,
}

/// Whether `op` can anchor a fused op.
pub fn can_anchor(op: &Op) -> bool {
    matches!(op, Op::Conv2d(_) | Op::Dense(_) | Op::MatMul(_))
}

impl Fused {
    /// Operands that belong to the anchor (the rest feed `add` steps).
    pub fn anchor_operands(&self, total: usize) -> usize {
        total - self.steps.iter().filter(|s| **s == Step::Add).count()
    }

    /// `conv2d+add+relu`, for profiles and summaries.
    pub fn label(&self) -> String {
        std::iter::once(self.anchor.name()).chain(self.steps.iter().map(Step::name)).collect::<Vec<_>>().join("+")
    }

    pub fn build(args: &mut CallArgs) -> OpResult<super::Built> {
        let anchor_name = match args.take("anchor") {
            Some((Const::Str(s), _)) => s,
            _ => return Err(OpError::new("fused: needs `anchor=\"conv2d\"` (or dense, matmul)").at(args.span.clone())),
        };
        let steps = match args.take("epilogue") {
            Some((Const::List(items), span)) => items
                .iter()
                .map(|c| match c {
                    Const::Str(s) => Step::from_name(s).ok_or_else(|| OpError::new(format!("fused: `{s}` cannot be an epilogue step")).at(span.clone())),
                    other => Err(OpError::new(format!("fused: epilogue steps are names, not `{other}`")).at(span.clone())),
                })
                .collect::<OpResult<Vec<Step>>>()?,
            _ => return Err(OpError::new("fused: needs `epilogue=[...]`").at(args.span.clone())),
        };
        let extra = steps.iter().filter(|s| **s == Step::Add).count();
        if args.operands.len() <= extra {
            return Err(OpError::new("fused: too few operands for its `add` steps").at(args.span.clone()));
        }
        let anchor_name: &'static str = super::OP_NAMES.iter().copied().find(|n| *n == anchor_name).ok_or_else(|| OpError::new(format!("fused: unknown anchor op `{anchor_name}`")))?;
        let mut inner = args.split_off(anchor_name, args.operands.len() - extra);
        let built = Op::build(anchor_name, &mut inner).expect("a known op name")?;
        if !built.implicit.is_empty() || !can_anchor(&built.op) {
            return Err(OpError::new(format!("fused: `{anchor_name}` with these operands cannot anchor a fused op")));
        }
        Ok(super::Built { op: Op::Fused(Fused { anchor: Box::new(built.op), steps }), implicit: Vec::new() })
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let n = self.anchor_operands(operands.len());
        let ty = self.anchor.infer(&operands[..n])?;
        for extra in &operands[n..] {
            if extra.shape != ty.shape || extra.dtype != ty.dtype {
                return Err(OpError::new(format!("fused: an added operand is {}{} but the result is {}", extra.dtype, ShapeDisplay(&extra.shape), ty)));
            }
        }
        Ok(ty)
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        let mut a = vec![("anchor", Const::Str(self.anchor.name().to_string())), ("epilogue", Const::List(self.steps.iter().map(|s| Const::Str(s.name().to_string())).collect()))];
        a.extend(self.anchor.attrs());
        a
    }

    /// Apply the epilogue to the anchor's result, in place.
    pub fn apply_epilogue(&self, out: &mut [f32], extras: &[&[f32]]) {
        let mut next = 0;
        for step in &self.steps {
            match step {
                Step::Unary(k) => out.iter_mut().for_each(|v| *v = k.apply(*v as f64) as f32),
                Step::Add => {
                    out.iter_mut().zip(extras[next]).for_each(|(v, e)| *v += e);
                    next += 1;
                }
            }
        }
    }
}
