//! Block calls: a block's body inlined under the call's parameter prefix, with its
//! arguments bound and its results returned.

use super::*;

impl<'a> Elaborator<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn block_call(&mut self, block: &'a Block, callee: &Ident, args: &'a [Arg], span: Span, scope: &mut Scope, ctx: &mut StmtCtx, root: bool) -> Eval {
        if let Some(pos) = self.call_stack.iter().position(|(n, _)| *n == block.name.name) {
            let cycle: Vec<&str> = self.call_stack[pos..].iter().map(|(n, _)| n.as_str()).chain([block.name.name.as_str()]).collect();
            return Err(self.error(
                Diagnostic::error(format!("block `{}` calls itself ({})", block.name.name, cycle.join(" → ")))
                    .at(callee.span.clone(), "recursive call")
                    .also(block.name.span.clone(), "block defined here")
                    .with_help("blocks are expanded at compile time, so recursion would never end; unroll it by hand"),
            ));
        }
        // Bind arguments to parameters.
        let mut bound: Vec<Option<(Value, Span)>> = vec![None; block.params.len()];
        let mut prefix_name = None;
        let mut poisoned = false;
        let mut positional = 0;
        for arg in args {
            match arg {
                Arg::Positional(e) => {
                    let v = self.expr(e, scope, ctx, false);
                    if positional >= block.params.len() {
                        self.diags.push(Diagnostic::error(format!("block `{}` takes {} arguments, but more were given", block.name.name, block.params.len())).at(e.span.clone(), "extra argument").also(block.name.span.clone(), "block defined here"));
                        return Err(Poisoned);
                    }
                    match v {
                        Ok(v) => bound[positional] = Some((v, e.span.clone())),
                        Err(Poisoned) => poisoned = true,
                    }
                    positional += 1;
                }
                Arg::Keyword(k, e) if k.name == "name" => match self.expr(e, scope, ctx, false) {
                    Ok(Value::Const(Const::Str(n))) if valid_param_prefix(&n) => prefix_name = Some(n),
                    Ok(_) => {
                        self.diags.push(Diagnostic::error("`name` must be a non-empty string of letters, digits, `_` and `.`").at(e.span.clone(), "invalid name"));
                        poisoned = true;
                    }
                    Err(Poisoned) => poisoned = true,
                },
                Arg::Keyword(k, e) => {
                    let Some(i) = block.params.iter().position(|p| p.name.name == k.name) else {
                        let mut d = Diagnostic::error(format!("block `{}` has no parameter `{}`", block.name.name, k.name)).at(k.span.clone(), "unknown keyword").also(block.name.span.clone(), "block defined here");
                        if let Some(s) = suggest(&k.name, block.params.iter().map(|p| p.name.name.as_str())) {
                            d = d.with_help(format!("did you mean `{s}`?"));
                        }
                        self.diags.push(d);
                        poisoned = true;
                        continue;
                    };
                    if bound[i].is_some() {
                        self.diags.push(Diagnostic::error(format!("argument `{}` is given twice", k.name)).at(k.span.clone(), "again here"));
                        poisoned = true;
                        continue;
                    }
                    match self.expr(e, scope, ctx, false) {
                        Ok(v) => bound[i] = Some((v, e.span.clone())),
                        Err(Poisoned) => poisoned = true,
                    }
                }
            }
        }
        if poisoned {
            return Err(Poisoned);
        }
        let block_prefix = match &prefix_name {
            Some(n) => format!("{}{n}", ctx.scope),
            None => ctx.param_base.clone(),
        };
        let mut inner = Scope { names: HashMap::new(), prefix: format!("{block_prefix}."), in_block: true };
        for (param, value) in block.params.iter().zip(bound) {
            let value = match value {
                Some((v, _)) => v,
                None => match &param.default {
                    Some(default) => {
                        // Defaults are constants evaluated in an empty scope.
                        let mut empty = Scope { in_block: true, ..Scope::default() };
                        let mut dctx = StmtCtx::statement(&inner, &param.name.name);
                        match self.expr(default, &mut empty, &mut dctx, false)? {
                            v @ Value::Const(_) => v,
                            _ => return Err(self.error(Diagnostic::error("a default value must be a constant").at(default.span.clone(), "not a constant"))),
                        }
                    }
                    None => {
                        return Err(self.error(
                            Diagnostic::error(format!("missing argument `{}` of block `{}`", param.name.name, block.name.name))
                                .at(span, "call is missing an argument")
                                .also(param.name.span.clone(), "parameter declared here"),
                        ))
                    }
                },
            };
            inner.names.insert(param.name.name.clone(), Binding { value: Some(value), span: param.name.span.clone() });
        }
        if self.call_stack.len() >= MAX_BLOCK_DEPTH {
            return Err(self.error(
                Diagnostic::error(format!("block calls nest more than {MAX_BLOCK_DEPTH} deep"))
                    .at(callee.span.clone(), "too deep")
                    .with_help("flatten the chain of blocks calling blocks"),
            ));
        }
        if self.graph.node_count() > MAX_NODES {
            return Err(self.too_large(span));
        }
        let params_before = self.param_spans.len();
        self.call_stack.push((block.name.name.clone(), callee.span.clone()));
        let before = self.diags.len();
        for stmt in &block.body {
            self.stmt(stmt, &mut inner);
        }
        // The returned values take the caller's binding names when the call is the root of
        // the caller's statement, so `b1 = basic(x)` yields a node named `b1`.
        let mut results = Vec::with_capacity(block.returns.len());
        let mut failed = self.diags[before..].iter().any(Diagnostic::is_error);
        for (i, ret) in block.returns.iter().enumerate() {
            let binding = if !root {
                format!("{block_prefix}.out")
            } else if block.returns.len() == 1 {
                ctx.binding.clone()
            } else {
                ctx.multi.get(i).cloned().unwrap_or_else(|| format!("{block_prefix}.out{i}"))
            };
            // A layer in the return expression is named like one called in the caller's
            // statement: `b1 = blk(x)` returning `dense(x, units=3)` makes `b1.weight`.
            let mut rctx = StmtCtx { binding, multi: Vec::new(), layer: None, scope: inner.prefix.clone(), param_base: block_prefix.clone() };
            match self.expr(ret, &mut inner, &mut rctx, true) {
                Ok(Value::Tensor(id)) => results.push(id),
                Ok(v) => {
                    self.not_a_tensor(&v, ret.span.clone());
                    failed = true;
                }
                Err(Poisoned) => failed = true,
            }
        }
        self.call_stack.pop();
        if failed {
            return Err(Poisoned);
        }
        // A block that made parameters under the statement's own name (no `name=`) is the
        // statement's one layer, like a direct layer call.
        if self.param_spans.len() > params_before && prefix_name.is_none() {
            if let Some(first) = ctx.layer.clone() {
                return Err(self.error(
                    Diagnostic::error("a second layer in this statement would create parameters")
                        .at(span, "second layer")
                        .also(first, "first layer")
                        .with_help("put each layer in its own statement, or name this one with `name=\"...\"`"),
                ));
            }
            ctx.layer = Some(span);
        }
        Ok(if results.len() == 1 { Value::Tensor(results[0]) } else { Value::Multi(results) })
    }
}
