//! Op calls: arguments evaluated and sorted into tensors, positional constants and keywords,
//! the op built through its one definition, implicit parameters created.

use super::*;

impl<'a> Elaborator<'a> {
    pub(super) fn call(&mut self, callee: &'a Ident, args: &'a [Arg], span: Span, scope: &mut Scope, ctx: &mut StmtCtx, root: bool) -> Eval {
        if let Some(block) = self.blocks.get(callee.name.as_str()).copied() {
            return self.block_call(block, callee, args, span, scope, ctx, root);
        }
        let Some(op_name) = OP_NAMES.iter().copied().find(|n| *n == callee.name) else {
            let candidates = OP_NAMES.iter().copied().chain(self.blocks.keys().copied());
            let mut d = Diagnostic::error(format!("unknown op `{}`", callee.name)).at(callee.span.clone(), "no op or block has this name");
            d = match suggest(&callee.name, candidates) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help("see the list of operators in SPEC §1.5, or define a `block` with this name"),
            };
            return Err(self.error(d));
        };
        // Evaluate arguments: tensors positionally, constants as keywords.
        let mut positional = Vec::new();
        let mut keywords = Vec::new();
        let mut poisoned = false;
        let mut seen_keyword: Option<Span> = None;
        for arg in args {
            match arg {
                Arg::Positional(e) => {
                    if let Some(kw) = &seen_keyword {
                        self.diags.push(Diagnostic::error("positional argument after a keyword argument").at(e.span.clone(), "positional").also(kw.clone(), "keyword before it").with_help("put tensors first, then `key=value` arguments"));
                        poisoned = true;
                        continue;
                    }
                    match self.expr(e, scope, ctx, false) {
                        Ok(v @ (Value::Tensor(_) | Value::Const(_))) => positional.push((v, e.span.clone())),
                        Ok(v) => {
                            self.not_a_tensor(&v, e.span.clone());
                            poisoned = true;
                        }
                        Err(Poisoned) => poisoned = true,
                    }
                }
                Arg::Keyword(k, e) => {
                    seen_keyword = Some(k.span.start..e.span.end);
                    match self.expr(e, scope, ctx, false) {
                        Ok(Value::Const(c)) => keywords.push((k.name.clone(), c, k.span.start..e.span.end)),
                        Ok(_) => {
                            self.diags.push(Diagnostic::error(format!("keyword argument `{}` must be a constant", k.name)).at(e.span.clone(), "a tensor").with_help("tensors are passed positionally, before keyword arguments"));
                            poisoned = true;
                        }
                        Err(Poisoned) => poisoned = true,
                    }
                }
            }
        }
        if poisoned {
            return Err(Poisoned);
        }
        // `add(x, 2.0)` is `x + 2.0` (SPEC §1.5): the call forms of the operators take exactly
        // what the operators take, numbers on either side included, through the same path.
        if let (Some(op), [_, _], []) = (BinOp::from_call_name(op_name), positional.as_slice(), keywords.as_slice()) {
            let mut it = positional.into_iter();
            let (a, b) = (it.next().expect("two operands"), it.next().expect("two operands"));
            return self.binary(op, a, b, span, ctx, root);
        }
        let mut tensors = Vec::new();
        let mut positional_consts = Vec::new();
        for (v, s) in positional {
            match v {
                Value::Tensor(id) => tensors.push((id, s)),
                Value::Const(c) => positional_consts.push((c, s)),
                Value::Multi(_) => unreachable!("several values are refused above"),
            }
        }
        // Constants passed positionally fill the op's positional attributes (`reshape(x, [2, -1])`).
        let names = positional_attrs(op_name);
        if positional_consts.len() > names.len() {
            let (c, s) = &positional_consts[names.len()];
            return Err(self.error(Diagnostic::error(format!("{op_name}: expected a tensor, found the constant `{c}`")).at(s.clone(), "not a tensor").with_help(format!("{op_name}'s options are keyword arguments, e.g. `key={c}`"))));
        }
        for ((c, s), name) in positional_consts.into_iter().zip(names) {
            keywords.insert(0, (name.to_string(), c, s));
        }
        self.apply_op(op_name, tensors, keywords, span, ctx, root)
    }

    /// Build `op_name` on these operands, creating implicit parameters if the op asks for them,
    /// type-check it and add it to the graph.
    pub(super) fn apply_op(&mut self, op_name: &str, tensors: Vec<(NodeId, Span)>, keywords: Vec<(String, Const, Span)>, span: Span, ctx: &mut StmtCtx, root: bool) -> Eval {
        let op_name: &'static str = OP_NAMES.iter().copied().find(|n| *n == op_name).expect("callers pass known op names");
        let operands: Vec<Operand> = tensors.iter().map(|(id, s)| Operand { ty: self.graph.node(*id).ty.clone(), span: s.clone() }).collect();
        let mut args = CallArgs::new(op_name, operands, span.clone());
        let mut param_prefix = None;
        for (k, c, s) in keywords {
            if k == "name" {
                match c {
                    Const::Str(n) if valid_param_prefix(&n) => param_prefix = Some((n, s)),
                    other => return Err(self.error(Diagnostic::error(format!("`name` must be a non-empty string of letters, digits, `_` and `.`, not `{other}`")).at(s, "invalid name"))),
                }
                continue;
            }
            if let Err(e) = args.push_keyword(k, c, s) {
                return Err(self.op_error(e, span));
            }
        }
        let built = match Op::build(op_name, &mut args) {
            Some(Ok(b)) => b,
            Some(Err(e)) => return Err(self.op_error(e, span)),
            None => unreachable!("OP_NAMES lists only buildable ops"),
        };
        let mut operand_ids: Vec<NodeId> = tensors.iter().map(|(id, _)| *id).collect();
        if !built.implicit.is_empty() {
            if let (Some(first), None) = (&ctx.layer, &param_prefix) {
                let first = first.clone();
                return Err(self.error(
                    Diagnostic::error("a second layer in this statement would create parameters")
                        .at(span, "second layer")
                        .also(first, "first layer")
                        .with_help("put each layer in its own statement, or name this one with `name=\"...\"`"),
                ));
            }
            if param_prefix.is_none() {
                ctx.layer = Some(span.clone());
            }
            let prefix = match &param_prefix {
                Some((n, _)) => format!("{}{n}", ctx.scope),
                None => ctx.param_base.clone(),
            };
            for p in &built.implicit {
                let id = self.make_param(format!("{prefix}.{}", p.field), p.ty.clone(), span.clone())?;
                operand_ids.push(id);
            }
        } else if let Some((_, s)) = param_prefix {
            return Err(self.error(Diagnostic::error(format!("`name=` names parameters, but this {op_name} call creates none")).at(s, "nothing to name")));
        }
        if self.graph.node_count() > MAX_NODES {
            return Err(self.too_large(span));
        }
        let types: Vec<&TensorType> = operand_ids.iter().map(|&id| &self.graph.node(id).ty).collect();
        let ty = match built.op.infer(&types) {
            Ok(t) => t,
            Err(e) => return Err(self.op_error(e, span)),
        };
        let name = if root { ctx.binding.clone() } else { self.inner_name(ctx, op_name) };
        let id = self.graph.add(Node { name, kind: NodeKind::Op(built.op), ty, span: Some(span), tile: None, kernel: None }, &operand_ids);
        Ok(Value::Tensor(id))
    }

}
