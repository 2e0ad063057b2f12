//! Parameter naming (SPEC §1.4: `<binding>.<field>` under block prefixes) and the
//! diagnostics for names: undefined ones with suggestions, values that are not tensors.

use super::*;

impl<'a> Elaborator<'a> {
    pub(super) fn not_a_tensor(&mut self, v: &Value, span: Span) -> Poisoned {
        let what = match v {
            Value::Const(c) => format!("a constant ({})", c.kind_name()),
            Value::Multi(vs) => format!("{} values", vs.len()),
            Value::Tensor(_) => "a tensor".to_string(),
        };
        self.error(Diagnostic::error(format!("expected a tensor, found {what}")).at(span, "not a tensor"))
    }

    pub(super) fn undefined(&mut self, name: &str, span: Span, scope: &Scope) -> Poisoned {
        let mut d = Diagnostic::error(format!("undefined name `{name}`")).at(span, "not bound in this scope");
        if let Some(s) = suggest(name, scope.names.keys().map(String::as_str)) {
            d = d.with_help(format!("did you mean `{s}`?"));
        } else if scope.in_block {
            d = d.with_help("a block sees only its arguments and its own bindings; pass the value in as an argument");
        } else {
            d = d.with_help("bind it first with `NAME = ...`, or declare it with `input` or `param`");
        }
        self.error(d)
    }

    pub(super) fn too_large(&mut self, span: Span) -> Poisoned {
        if self.diags.iter().any(|d| d.message.starts_with("the model expands to more than")) {
            return Poisoned;
        }
        self.error(
            Diagnostic::error(format!("the model expands to more than {MAX_NODES} nodes"))
                .at(span, "while expanding this")
                .with_help("blocks calling blocks multiply; check for a block that calls another several times in a long chain"),
        )
    }

    pub(super) fn make_param(&mut self, name: String, ty: TensorType, span: Span) -> Result<NodeId, Poisoned> {
        if checked_numel(&ty.shape, ty.dtype.size_bytes()).is_none() {
            return Err(self.error(
                Diagnostic::error(format!("parameter `{name}` of shape {} is larger than the {} GiB tensor limit", ShapeDisplay(&ty.shape), nnc_runtime::MAX_TENSOR_BYTES >> 30))
                    .at(span, "creates this parameter"),
            ));
        }
        if let Some(first) = self.param_spans.get(&name) {
            let first = first.clone();
            return Err(self.error(
                Diagnostic::error(format!("parameter `{name}` is defined twice"))
                    .at(span, "defined again here")
                    .also(first, "first defined here")
                    .with_help("give one of the layers its own name with `name=\"...\"` or bind it to a different name"),
            ));
        }
        self.param_spans.insert(name.clone(), span.clone());
        // Parameter names are the contract with weight files; a value that happens to hold
        // the name already gives it up.
        if let Some(existing) = self.graph.by_name(&name) {
            let renamed = self.graph.fresh_name(&format!("{name}_value"));
            self.graph.rename(existing, renamed);
        }
        let id = self.graph.add(Node { name: name.clone(), kind: NodeKind::Param, ty, span: Some(span), tile: None, kernel: None }, &[]);
        Ok(id)
    }

    /// A name for a non-root node of the statement: `<binding>.<what>`.
    pub(super) fn inner_name(&self, ctx: &StmtCtx, what: &str) -> String {
        format!("{}.{what}", ctx.param_base)
    }
}

pub(super) fn valid_param_prefix(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') && !s.starts_with('.') && !s.ends_with('.') && !s.contains("..")
}

/// The candidate closest to `name` by edit distance, if it is close enough to be a typo.
pub(super) fn suggest<'s>(name: &str, candidates: impl Iterator<Item = &'s str>) -> Option<&'s str> {
    let limit = (name.len() / 3).max(1);
    candidates.map(|c| (edit_distance(name, c), c)).filter(|(d, _)| *d <= limit).min().map(|(_, c)| c)
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
