//! `fused`: several ops computed as one. Two shapes of group:
//!
//! - an **anchored** group: a matrix product (`conv2d`, `dense`, `matmul`) followed by an
//!   elementwise epilogue, applied while the product's result is at hand;
//! - an **elementwise chain**: no anchor; the first operand is the seed and every step
//!   transforms it, so the chain is one loop over memory instead of one per op;
//! - an **int8 product that requantizes**: an anchor on int8 codes whose i32 accumulators
//!   become int8 codes as they are stored (`epilogue=["requantize"]` with the requantize's
//!   attributes), so the accumulators never reach memory.
//!
//! Operands: the anchor's operands (or the seed, of the result's shape), then one extra operand
//! per binary step: of the result's shape, a single value, or a broadcast row (the result's
//! trailing dimensions, repeated over the leading ones, as NumPy broadcasts `[C]` against
//! `[N, C]`). In IR text:
//! `%y = fused(%x, %w, %b, %skip) anchor="conv2d" epilogue=["add", "relu"] stride=[1, 1] ...`
//! `%z = fused(%a, %b) epilogue=["sigmoid", "mul"]`

use super::{BinaryKind, CallArgs, Const, Op, OpError, OpResult, Product, UnaryKind};
use crate::ir::{ShapeDisplay, TensorType};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// An activation without attributes.
    Unary(UnaryKind),
    /// Combine with the next extra operand: `v ∘ e`, or `e ∘ v` when `reversed` (only for the
    /// non-commutative `sub` and `div`, spelled `rsub` and `rdiv`).
    Binary { kind: BinaryKind, reversed: bool },
}

impl Step {
    pub const ADD: Step = Step::Binary { kind: BinaryKind::Add, reversed: false };

    /// The step for `v ∘ e` (`reversed`: `e ∘ v`), normalized so commutative ops are never
    /// reversed.
    pub fn binary(kind: BinaryKind, reversed: bool) -> Step {
        Step::Binary { kind, reversed: reversed && matches!(kind, BinaryKind::Sub | BinaryKind::Div) }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Step::Unary(k) => k.name(),
            Step::Binary { kind: BinaryKind::Sub, reversed: true } => "rsub",
            Step::Binary { kind: BinaryKind::Div, reversed: true } => "rdiv",
            Step::Binary { kind, .. } => kind.name(),
        }
    }

    /// The steps fusion accepts: attribute-free unary ops (so the IR text stays a list of
    /// names) and the four arithmetic ops, by their names in the op table.
    pub fn from_name(name: &str) -> Option<Step> {
        match name {
            "rsub" => return Some(Step::binary(BinaryKind::Sub, true)),
            "rdiv" => return Some(Step::binary(BinaryKind::Div, true)),
            _ => {}
        }
        let name: &'static str = super::OP_NAMES.iter().copied().find(|n| *n == name)?;
        for operands in [1, 2] {
            let ty = TensorType::new(nnc_runtime::DType::F32, vec![1]);
            let mut args = CallArgs::new(name, vec![super::Operand { ty, span: 0..0 }; operands], 0..0);
            let Some(Ok(built)) = Op::build(name, &mut args) else { continue };
            match Step::of(&built.op) {
                Some(StepOf::Unary(step)) => return Some(step),
                Some(StepOf::Binary(kind)) => return Some(Step::binary(kind, false)),
                None => {}
            }
        }
        None
    }

    /// The step `op` would be in a fused group, if it can be one: an attribute-free unary
    /// op, or a binary op (whose operands' shapes the fusion pass still has to check).
    pub fn of(op: &Op) -> Option<StepOf> {
        match op {
            Op::Unary(u) => (!u.kind.has_attributes()).then_some(StepOf::Unary(Step::Unary(u.kind))),
            Op::Binary(b) => Some(StepOf::Binary(b.kind)),
            Op::Conv2d(_)
            | Op::Dense(_)
            | Op::MatMul(_)
            | Op::BatchNorm(_)
            | Op::LayerNorm(_)
            | Op::Lstm(_)
            | Op::Softmax(_)
            | Op::Pool(_)
            | Op::GlobalAvgPool(_)
            | Op::Flatten(_)
            | Op::Reshape(_)
            | Op::Transpose(_)
            | Op::Concat(_)
            | Op::Slice(_)
            | Op::Attention(_)
            | Op::Fused(_)
            | Op::ConvertLayout(_)
            | Op::Quantize(_)
            | Op::Dequantize(_)
            | Op::Requantize(_)
            | Op::Cast(_) => None,
        }
    }

    /// The activation the step is, if an activation unit or a GEMM epilogue can apply it.
    pub fn activation(&self) -> Option<nnc_runtime::Activation> {
        match self {
            Step::Unary(k) => super::Unary { kind: *k }.traits().activation,
            Step::Binary { .. } => None,
        }
    }

    pub fn is_binary(&self) -> bool {
        matches!(self, Step::Binary { .. })
    }

    /// The step on one value; `extra` is the next extra operand's element for binary steps.
    pub fn apply(&self, v: f32, extra: f32) -> f32 {
        match *self {
            Step::Unary(k) => k.apply(v as f64) as f32,
            Step::Binary { kind, reversed: false } => kind.apply(v, extra),
            Step::Binary { kind, reversed: true } => kind.apply(extra, v),
        }
    }
}

/// What an elementwise op contributes to a fused group: a whole step (unary), or a binary
/// kind whose direction depends on which operand the group is.
pub enum StepOf {
    Unary(Step),
    Binary(BinaryKind),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Fused {
    /// The product the steps follow, or `None` for an elementwise chain.
    pub anchor: Option<Product>,
    pub steps: Vec<Step>,
    /// An int8 anchor's requantization (then there are no steps).
    pub requantize: Option<super::Requantize>,
}

/// How an extra operand of `extra_shape` is read against a result of `out_shape`, if it can
/// be: element `i` of the result reads element `i mod len` of the operand, which is the
/// broadcast when the operand is the whole result, one value, or its trailing dimensions.
pub fn extra_fits(extra_shape: &[usize], out_shape: &[usize]) -> bool {
    let numel: usize = extra_shape.iter().product();
    numel == 1 || (extra_shape.len() <= out_shape.len() && out_shape.ends_with(extra_shape))
}

/// The product `op` is, if it can anchor a fused op: a matrix product that is not already
/// fused.
pub fn anchor_of(op: &Op) -> Option<Product> {
    if let Op::Fused(_) = op {
        return None;
    }
    op.product()
}

impl Fused {
    /// Operands that belong to the anchor, or 1 (the seed) for a chain; the rest feed binary
    /// steps.
    pub fn anchor_operands(&self, total: usize) -> usize {
        total - self.steps.iter().filter(|s| s.is_binary()).count()
    }

    /// `conv2d+add+relu`, `sigmoid+mul` or `conv2d+requantize`, for profiles and summaries.
    pub fn label(&self) -> String {
        let requantize = self.requantize.as_ref().map(|_| "requantize");
        self.anchor.iter().map(|a| a.name()).chain(self.steps.iter().map(Step::name)).chain(requantize).collect::<Vec<_>>().join("+")
    }

    pub fn build(args: &mut CallArgs) -> OpResult<super::Built> {
        let anchor_name = match args.take("anchor") {
            Some((Const::Str(s), _)) => Some(s),
            None => None,
            Some((_, span)) => return Err(OpError::new("fused: `anchor` names an op: `anchor=\"conv2d\"` (or dense, matmul)").at(span)),
        };
        let requantize_only = matches!(args.peek("epilogue"), Some(Const::List(items)) if items == &[Const::Str("requantize".into())]);
        let steps = match args.take("epilogue") {
            _ if requantize_only => Vec::new(),
            Some((Const::List(items), span)) => items
                .iter()
                .map(|c| match c {
                    Const::Str(s) => Step::from_name(s).ok_or_else(|| OpError::new(format!("fused: `{s}` cannot be an epilogue step")).at(span.clone())),
                    other => Err(OpError::new(format!("fused: epilogue steps are names, not `{other}`")).at(span.clone())),
                })
                .collect::<OpResult<Vec<Step>>>()?,
            _ => return Err(OpError::new("fused: needs `epilogue=[...]`").at(args.span.clone())),
        };
        let requantize = if requantize_only { Some(super::Requantize::from_keywords(args)?) } else { None };
        let extra = steps.iter().filter(|s| s.is_binary()).count();
        if args.operands.len() <= extra {
            return Err(OpError::new("fused: too few operands for its binary steps").at(args.span.clone()));
        }
        let Some(anchor_name) = anchor_name else {
            args.finish(&[])?;
            if args.operands.len() != extra + 1 || steps.is_empty() {
                return Err(OpError::new("fused: an elementwise chain takes one seed operand plus one per binary step, and at least one step").at(args.span.clone()));
            }
            if requantize.is_some() {
                return Err(OpError::new("fused: a requantize epilogue needs an int8 anchor").at(args.span.clone()));
            }
            return Ok(super::Built { op: Op::Fused(Fused { anchor: None, steps, requantize }), implicit: Vec::new() });
        };
        let anchor_name: &'static str = super::OP_NAMES.iter().copied().find(|n| *n == anchor_name).ok_or_else(|| OpError::new(format!("fused: unknown anchor op `{anchor_name}`")))?;
        let mut inner = args.split_off(anchor_name, args.operands.len() - extra);
        let built = Op::build(anchor_name, &mut inner).expect("a known op name")?;
        let anchor = anchor_of(&built.op).filter(|_| built.implicit.is_empty());
        let Some(anchor) = anchor else {
            return Err(OpError::new(format!("fused: `{anchor_name}` with these operands cannot anchor a fused op")));
        };
        Ok(super::Built { op: Op::Fused(Fused { anchor: Some(anchor), steps, requantize }), implicit: Vec::new() })
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let n = self.anchor_operands(operands.len());
        let ty = match &self.anchor {
            Some(anchor) => anchor.infer(&operands[..n])?,
            None => TensorType::new(operands[0].dtype, operands[0].shape.clone()),
        };
        if let Some(rq) = &self.requantize {
            if ty.dtype != nnc_runtime::DType::I32 {
                return Err(OpError::new(format!("fused: a requantize epilogue follows an int8 product, not a {} one", ty.dtype)));
            }
            // Backends apply per-channel scales along the product's output channels.
            let channels = self.anchor.as_ref().map(|a| a.channel_axis(ty.rank()));
            if rq.scales.values.len() > 1 && Some(rq.scales.axis) != channels {
                return Err(OpError::new(format!("fused: a requantize epilogue scales along the product's channel axis, not axis {}", rq.scales.axis)));
            }
            return rq.infer(&[&ty]);
        }
        if self.anchor.is_none() && operands[0].shape != ty.shape {
            return Err(OpError::new("fused: the seed of an elementwise chain must have the result's shape"));
        }
        let mut row: Option<&[usize]> = None;
        for extra in &operands[n..] {
            if !extra_fits(&extra.shape, &ty.shape) || extra.dtype != ty.dtype {
                return Err(OpError::new(format!("fused: an extra operand is {}{}, which does not broadcast to the result {}", extra.dtype, ShapeDisplay(&extra.shape), ty)));
            }
            // Backends read every broadcast row with one row loop, so all rows are one length.
            let numel = extra.numel();
            if numel != 1 && numel != ty.numel() {
                match row {
                    Some(r) if r.iter().product::<usize>() != numel => {
                        return Err(OpError::new(format!("fused: broadcast rows {} and {} differ in length; one fused op reads one row length", ShapeDisplay(r), ShapeDisplay(&extra.shape))));
                    }
                    Some(_) => {}
                    None => row = Some(&extra.shape),
                }
            }
        }
        Ok(ty)
    }

    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        let names = self.steps.iter().map(|s| s.name()).chain(self.requantize.as_ref().map(|_| "requantize"));
        let epilogue = ("epilogue", Const::List(names.map(|n| Const::Str(n.to_string())).collect()));
        match &self.anchor {
            Some(anchor) => {
                let mut a = vec![("anchor", Const::Str(anchor.name().to_string())), epilogue];
                a.extend(anchor.attrs());
                a.extend(self.requantize.iter().flat_map(|rq| rq.attrs()));
                a
            }
            None => vec![epilogue],
        }
    }

    /// Apply the steps to the anchor's result (or the seed), in place; extras broadcast as
    /// [`extra_fits`] says.
    pub fn apply_steps(&self, out: &mut [f32], extras: &[&[f32]]) {
        let mut next = 0;
        for step in &self.steps {
            if step.is_binary() {
                let e = extras[next];
                out.iter_mut().enumerate().for_each(|(i, v)| *v = step.apply(*v, e[i % e.len()]));
                next += 1;
            } else {
                out.iter_mut().for_each(|v| *v = step.apply(*v, 0.0));
            }
        }
    }
}

impl Fused {
    /// An anchorless chain is elementwise; an anchored group is its product.
    pub fn traits(&self) -> super::Traits {
        super::Traits { elementwise: self.anchor.is_none(), product: self.anchor.clone(), ..super::Traits::PLAIN }
    }
}
