//! Expressions: names, literals, unary minus and the arithmetic operators, with constant
//! folding of arithmetic on numbers.

use super::*;

impl<'a> Elaborator<'a> {
    pub(super) fn expr(&mut self, e: &'a Expr, scope: &mut Scope, ctx: &mut StmtCtx, root: bool) -> Eval {
        match &e.kind {
            ExprKind::Error => Err(Poisoned),
            ExprKind::Name(n) => match scope.names.get(n) {
                Some(Binding { value: Some(v), .. }) => Ok(v.clone()),
                Some(Binding { value: None, .. }) => Err(Poisoned),
                None => Err(self.undefined(n, e.span.clone(), scope)),
            },
            ExprKind::Number { text, is_int: true } => match text.parse::<i64>() {
                Ok(v) => Ok(Value::Const(Const::Int(v))),
                Err(_) => Err(self.error(Diagnostic::error(format!("integer {text} is too large")).at(e.span.clone(), "out of range"))),
            },
            ExprKind::Number { text, is_int: false } => match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Value::Const(Const::Float(v))),
                _ => Err(self.error(Diagnostic::error(format!("number {text} is out of range")).at(e.span.clone(), "out of range"))),
            },
            ExprKind::Str(lit) => match unescape(lit) {
                Ok(s) => Ok(Value::Const(Const::Str(s))),
                Err(off) => {
                    // The span must end on a character boundary, whatever follows the `\`.
                    let width = lit[1 + off..].chars().next().map_or(1, char::len_utf8);
                    let at = e.span.start + 1 + off;
                    Err(self.error(Diagnostic::error("unknown escape in string").at(at..at + width, "here").with_help("strings support only `\\\"` and `\\\\`")))
                }
            },
            ExprKind::Bool(b) => Ok(Value::Const(Const::Bool(*b))),
            ExprKind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut poisoned = false;
                for item in items {
                    match self.expr(item, scope, ctx, false) {
                        Ok(Value::Const(c)) => out.push(c),
                        Ok(_) => {
                            self.diags.push(Diagnostic::error("lists hold constants, not tensors").at(item.span.clone(), "a tensor").with_help("use `concat(...)` to join tensors"));
                            poisoned = true;
                        }
                        Err(Poisoned) => poisoned = true,
                    }
                }
                if poisoned {
                    Err(Poisoned)
                } else {
                    Ok(Value::Const(Const::List(out)))
                }
            }
            ExprKind::Neg(inner) => match self.expr(inner, scope, ctx, false)? {
                Value::Const(Const::Int(v)) => Ok(Value::Const(Const::Int(v.checked_neg().ok_or_else(|| self.error(Diagnostic::error("integer overflow").at(e.span.clone(), "here")))?))),
                Value::Const(Const::Float(v)) => Ok(Value::Const(Const::Float(-v))),
                Value::Const(c) => Err(self.error(Diagnostic::error(format!("cannot negate {}", c.kind_name())).at(e.span.clone(), "here"))),
                Value::Tensor(id) => self.apply_op("neg", vec![(id, inner.span.clone())], Vec::new(), e.span.clone(), ctx, root),
                v @ Value::Multi(_) => Err(self.not_a_tensor(&v, inner.span.clone())),
            },
            ExprKind::Binary { op, lhs, rhs } => {
                let a = self.expr(lhs, scope, ctx, false);
                let b = self.expr(rhs, scope, ctx, false);
                let (a, b) = (a?, b?);
                self.binary(*op, (a, lhs.span.clone()), (b, rhs.span.clone()), e.span.clone(), ctx, root)
            }
            ExprKind::Call { callee, args } => self.call(callee, args, e.span.clone(), scope, ctx, root),
        }
    }

    pub(super) fn binary(&mut self, op: BinOp, a: (Value, Span), b: (Value, Span), span: Span, ctx: &mut StmtCtx, root: bool) -> Eval {
        // Constant arithmetic (block arguments such as `filters * 2`).
        if let (Value::Const(x), Value::Const(y)) = (&a.0, &b.0) {
            return self.const_arith(op, x, y, span);
        }
        let name = op.call_name();
        let dtype = [&a.0, &b.0].iter().find_map(|v| if let Value::Tensor(id) = v { Some(self.graph.node(*id).ty.dtype) } else { None }).unwrap_or(DType::F32);
        let mut operands = Vec::with_capacity(2);
        for (v, s) in [a, b] {
            let id = match v {
                Value::Tensor(id) => id,
                Value::Const(Const::Int(n)) if op != BinOp::MatMul => self.scalar(n as f64, dtype, s.clone(), ctx),
                Value::Const(Const::Float(x)) if op != BinOp::MatMul => self.scalar(x, dtype, s.clone(), ctx),
                other => return Err(self.not_a_tensor(&other, s)),
            };
            operands.push((id, s));
        }
        self.apply_op(name, operands, Vec::new(), span, ctx, root)
    }

    pub(super) fn const_arith(&mut self, op: BinOp, x: &Const, y: &Const, span: Span) -> Eval {
        let r = match (x, y) {
            (Const::Int(p), Const::Int(q)) => match op {
                BinOp::Add => p.checked_add(*q).map(Const::Int),
                BinOp::Sub => p.checked_sub(*q).map(Const::Int),
                BinOp::Mul => p.checked_mul(*q).map(Const::Int),
                BinOp::Div if *q != 0 => Some(Const::Float(*p as f64 / *q as f64)),
                BinOp::Div | BinOp::MatMul => None,
            },
            (Const::Int(_) | Const::Float(_), Const::Int(_) | Const::Float(_)) => {
                let f = |c: &Const| if let Const::Int(v) = c { *v as f64 } else if let Const::Float(v) = c { *v } else { 0.0 };
                let (p, q) = (f(x), f(y));
                match op {
                    BinOp::Add => Some(Const::Float(p + q)),
                    BinOp::Sub => Some(Const::Float(p - q)),
                    BinOp::Mul => Some(Const::Float(p * q)),
                    BinOp::Div => Some(Const::Float(p / q)),
                    BinOp::MatMul => None,
                }
            }
            _ => None,
        };
        match r {
            Some(c) => Ok(Value::Const(c)),
            None => Err(self.error(Diagnostic::error(format!("cannot compute `{x} {} {y}` on constants", op.symbol())).at(span, "invalid constant arithmetic"))),
        }
    }

    pub(super) fn scalar(&mut self, v: f64, dtype: DType, span: Span, ctx: &StmtCtx) -> NodeId {
        let dtype = if dtype.is_float() { dtype } else { DType::F32 };
        let t = Tensor::from_f32(dtype, vec![], vec![v as f32]).expect("a scalar has one element");
        let name = self.inner_name(ctx, "const");
        self.graph.add(Node { name, kind: NodeKind::Const(t), ty: TensorType::new(dtype, vec![]), span: Some(span), tile: None, kernel: None }, &[])
    }
}
