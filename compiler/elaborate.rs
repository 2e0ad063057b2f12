//! Elaboration: one model of a parsed file becomes a typed graph.
//!
//! This is where names are resolved, blocks are inlined under their parameter prefixes,
//! implicit layer parameters are created and named (SPEC §1.4), constants are evaluated, and
//! every op is built and type-checked through its one definition in `ops`. Errors do not stop
//! elaboration: a failed statement binds its names to a poisoned value that silently absorbs
//! later uses, so one run reports every independent mistake without cascades.

use crate::diagnostics::Diagnostic;
use crate::ir::{DType, Graph, Node, NodeId, NodeKind, ShapeDisplay, TensorType};
use crate::ops::{positional_attrs, CallArgs, Const, Op, OpError, Operand, OP_NAMES};
use crate::syntax::ast::{self, Arg, BinOp, Block, Expr, ExprKind, Ident, Item, Model, Stmt, StmtKind, TypeExpr};
use crate::syntax::lexer::{unescape, Span};
use nnc_runtime::tensor::checked_numel;
use nnc_runtime::Tensor;
use std::collections::{BTreeMap, HashMap};

/// Symbolic dimension bindings (`--dim N=32`, or taken from input files).
pub type DimBindings = BTreeMap<String, usize>;

/// Deepest chain of block calls. Real models nest a few levels; the bound keeps
/// elaboration's recursion far from the stack's end.
pub const MAX_BLOCK_DEPTH: usize = 64;
/// Most nodes a model may expand to. Blocks calling blocks can multiply a short source into
/// an exponential graph; this stops that with an error instead of exhausting memory.
pub const MAX_NODES: usize = 1_000_000;

/// Pick the model to compile: the one named, or the only one in the file.
pub fn select_model<'a>(file: &'a ast::File, name: Option<&str>) -> Result<&'a Model, Diagnostic> {
    let models: Vec<&Model> = file.items.iter().filter_map(|i| if let Item::Model(m) = i { Some(m) } else { None }).collect();
    let names = || models.iter().map(|m| m.name.name.as_str()).collect::<Vec<_>>().join(", ");
    match name {
        Some(n) => models.iter().copied().find(|m| m.name.name == n).ok_or_else(|| {
            if models.is_empty() {
                Diagnostic::error(format!("no model named `{n}`: the file defines no models"))
            } else {
                Diagnostic::error(format!("no model named `{n}`")).with_note(format!("the file defines: {}", names()))
            }
        }),
        None => match models.len() {
            0 => Err(Diagnostic::error("the file defines no model").with_help("write `model NAME { ... }` with at least one input and one output")),
            1 => Ok(models[0]),
            _ => Err(Diagnostic::error(format!("the file defines {} models ({}); choose one with --model NAME", models.len(), names()))),
        },
    }
}

/// The declared inputs of a model, in order (for binding symbolic dims from input files).
pub fn declared_inputs(model: &Model) -> Vec<(&Ident, &TypeExpr)> {
    model.body.iter().filter_map(|s| if let StmtKind::Input { name, ty } = &s.kind { Some((name, ty)) } else { None }).collect()
}

/// Elaborate `model` (with the blocks of `file`) into a graph. On error, the diagnostics say
/// why and no graph is returned.
pub fn elaborate(file: &ast::File, model: &Model, dims: &DimBindings) -> Result<Graph, Vec<Diagnostic>> {
    let mut e = Elaborator { graph: Graph::new(model.name.name.clone()), diags: Vec::new(), blocks: HashMap::new(), dims, call_stack: Vec::new(), param_spans: HashMap::new() };
    e.collect_items(file);
    e.model(model);
    if e.diags.iter().any(Diagnostic::is_error) {
        Err(e.diags)
    } else {
        Ok(e.graph)
    }
}

/// What a name is bound to.
#[derive(Clone, Debug)]
enum Value {
    Tensor(NodeId),
    Const(Const),
    /// Several results of a block; only valid directly on the right of `a, b = ...`.
    Multi(Vec<NodeId>),
}

/// An error was reported for this expression already; callers propagate silently.
struct Poisoned;

type Eval = Result<Value, Poisoned>;

#[derive(Clone)]
struct Binding {
    value: Option<Value>,
    span: Span,
}

#[derive(Default)]
struct Scope {
    names: HashMap<String, Binding>,
    /// Prefix for names made in this scope: "" in a model, "b1." inside block call `b1`.
    prefix: String,
    in_block: bool,
}

/// Naming context of the statement being elaborated.
struct StmtCtx {
    /// Node name for the expression's root: the statement's full binding name, e.g. "b1.conv1".
    binding: String,
    /// Node names for the roots of several results (`a, b = blk(x)`).
    multi: Vec<String>,
    /// Where the statement's parameter-creating layer call is, if it had one.
    layer: Option<Span>,
    /// The enclosing scope's prefix ("" or "b1."): `name="fc"` on a call means `<scope>fc`.
    scope: String,
    /// What the statement's implicit parameters and inner nodes are named under: the binding
    /// ("b1.conv1" → "b1.conv1.weight"); in a block's `return`, the block call's own prefix.
    param_base: String,
}

impl StmtCtx {
    fn statement(scope: &Scope, local: &str) -> StmtCtx {
        let full = format!("{}{local}", scope.prefix);
        StmtCtx { binding: full.clone(), multi: Vec::new(), layer: None, scope: scope.prefix.clone(), param_base: full }
    }
}

struct Elaborator<'a> {
    graph: Graph,
    diags: Vec<Diagnostic>,
    blocks: HashMap<&'a str, &'a Block>,
    dims: &'a DimBindings,
    call_stack: Vec<(String, Span)>,
    /// Where each parameter was created, for "defined twice" errors.
    param_spans: HashMap<String, Span>,
}

impl<'a> Elaborator<'a> {
    fn error(&mut self, d: Diagnostic) -> Poisoned {
        self.diags.push(d);
        Poisoned
    }

    fn op_error(&mut self, e: OpError, fallback: Span) -> Poisoned {
        let (span, label) = match e.span {
            Some(s) => (s, "here"),
            None => (fallback, "in this call"),
        };
        let mut d = Diagnostic::error(e.message).at(span, label);
        if let Some(h) = e.help {
            d = d.with_help(h);
        }
        self.error(d)
    }

    fn collect_items(&mut self, file: &'a ast::File) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for item in &file.items {
            let name = match item {
                Item::Model(m) => &m.name,
                Item::Block(b) => {
                    self.blocks.entry(b.name.name.as_str()).or_insert(b);
                    &b.name
                }
            };
            if let Some(first) = seen.get(name.name.as_str()) {
                let d = Diagnostic::error(format!("`{}` is defined twice", name.name)).at(name.span.clone(), "defined again here").also(first.clone(), "first defined here").with_help("give each model and block its own name");
                self.diags.push(d);
            } else {
                seen.insert(&name.name, name.span.clone());
            }
            if let Item::Block(b) = item {
                if OP_NAMES.contains(&b.name.name.as_str()) {
                    self.diags.push(Diagnostic::error(format!("block `{}` has the name of a built-in op", b.name.name)).at(b.name.span.clone(), "shadows the op").with_help("rename the block"));
                }
            }
        }
    }

    fn model(&mut self, model: &'a Model) {
        let mut scope = Scope::default();
        for stmt in &model.body {
            self.stmt(stmt, &mut scope);
        }
        if self.graph.inputs.is_empty() && !model.body.iter().any(|s| matches!(s.kind, StmtKind::Error)) {
            self.diags.push(Diagnostic::error(format!("model `{}` has no input", model.name.name)).at(model.name.span.clone(), "declared here").with_help("declare one, e.g. `input x: f32[1, 3, 224, 224]`"));
        }
        let has_output_stmt = model.body.iter().any(|s| matches!(s.kind, StmtKind::Output { .. }));
        if !has_output_stmt && !model.body.iter().any(|s| matches!(s.kind, StmtKind::Error)) {
            self.diags.push(Diagnostic::error(format!("model `{}` has no output", model.name.name)).at(model.name.span.clone(), "declared here").with_help("mark a result with `output NAME` or `output NAME = expr`"));
        }
    }

    fn resolve_type(&mut self, ty: &TypeExpr) -> Result<TensorType, Poisoned> {
        let dtype = DType::from_name(&ty.dtype.name).ok_or_else(|| {
            self.error(Diagnostic::error(format!("unknown dtype `{}`", ty.dtype.name)).at(ty.dtype.span.clone(), "not a dtype").with_help("use one of f32, f16, bf16, i8, i32"))
        })?;
        let mut shape = Vec::with_capacity(ty.dims.len());
        for d in &ty.dims {
            match d {
                ast::Dim::Fixed(text, span) => match text.parse::<usize>() {
                    Ok(v) if v >= 1 => shape.push(v),
                    Ok(_) => return Err(self.error(Diagnostic::error("dimensions must be at least 1").at(span.clone(), "zero-sized dimension"))),
                    Err(_) => return Err(self.error(Diagnostic::error(format!("dimension {text} is too large")).at(span.clone(), "too large"))),
                },
                ast::Dim::Symbol(id) => match self.dims.get(&id.name) {
                    Some(&v) if v >= 1 => shape.push(v),
                    Some(_) => return Err(self.error(Diagnostic::error(format!("symbolic dimension `{}` is bound to 0", id.name)).at(id.span.clone(), "zero-sized dimension").with_help("dimensions must be at least 1"))),
                    None => {
                        return Err(self.error(
                            Diagnostic::error(format!("symbolic dimension `{}` is not bound", id.name))
                                .at(id.span.clone(), "unbound")
                                .with_help(format!("bind it with `--dim {}=SIZE`; `run` and `sim` also take it from the input file's shape", id.name)),
                        ))
                    }
                },
            }
        }
        if checked_numel(&shape, dtype.size_bytes()).is_none() {
            return Err(self.error(
                Diagnostic::error(format!("a tensor of shape {} is larger than the {} GiB limit", ShapeDisplay(&shape), nnc_runtime::MAX_TENSOR_BYTES >> 30)).at(ty.span.clone(), "too large"),
            ));
        }
        Ok(TensorType::new(dtype, shape))
    }

    fn bind(&mut self, scope: &mut Scope, name: &Ident, value: Option<Value>) {
        if let Some(prev) = scope.names.get(&name.name) {
            let d = Diagnostic::error(format!("`{}` is already bound", name.name))
                .at(name.span.clone(), "bound again here")
                .also(prev.span.clone(), "first bound here")
                .with_help("names bind once per scope; choose a new name for the new value");
            self.diags.push(d);
            return;
        }
        scope.names.insert(name.name.clone(), Binding { value, span: name.span.clone() });
    }

    fn stmt(&mut self, stmt: &'a Stmt, scope: &mut Scope) {
        match &stmt.kind {
            StmtKind::Error | StmtKind::MisplacedReturn => {}
            StmtKind::Input { name, ty } => {
                if scope.in_block {
                    self.diags.push(Diagnostic::error("`input` declarations belong in a model").at(stmt.span.clone(), "inside a block").with_help("pass the tensor to the block as an argument"));
                    return;
                }
                let value = self.resolve_type(ty).ok().map(|ty| {
                    let index = self.graph.inputs.len();
                    let id = self.graph.add(Node { name: name.name.clone(), kind: NodeKind::Input { index }, ty, span: Some(name.span.clone()), tile: None, kernel: None }, &[]);
                    self.graph.inputs.push(id);
                    Value::Tensor(id)
                });
                self.bind(scope, name, value);
            }
            StmtKind::Param { name, ty } => {
                let full = format!("{}{}", scope.prefix, name.name);
                let value = self.resolve_type(ty).ok().and_then(|ty| self.make_param(full, ty, name.span.clone()).ok()).map(Value::Tensor);
                self.bind(scope, name, value);
            }
            StmtKind::Let { names, value } => {
                let mut ctx = StmtCtx::statement(scope, &names[0].name);
                if names.len() > 1 {
                    ctx.multi = names.iter().map(|n| format!("{}{}", scope.prefix, n.name)).collect();
                }
                let result = self.expr(value, scope, &mut ctx, true);
                match (names.len(), result) {
                    (_, Err(Poisoned)) => names.iter().for_each(|n| self.bind(scope, n, None)),
                    (1, Ok(Value::Multi(vs))) => {
                        self.diags.push(
                            Diagnostic::error(format!("this block returns {} values, but one name is bound", vs.len()))
                                .at(value.span.clone(), format!("{} values", vs.len()))
                                .with_help(format!("bind every result: `{} = ...`", (0..vs.len()).map(|i| format!("r{i}")).collect::<Vec<_>>().join(", "))),
                        );
                        self.bind(scope, &names[0], None);
                    }
                    (1, Ok(v)) => self.bind(scope, &names[0], Some(v)),
                    (n, Ok(Value::Multi(vs))) if vs.len() == n => {
                        for (name, id) in names.iter().zip(vs) {
                            self.bind(scope, name, Some(Value::Tensor(id)));
                        }
                    }
                    (n, Ok(v)) => {
                        let got = if let Value::Multi(vs) = &v { vs.len() } else { 1 };
                        self.diags.push(Diagnostic::error(format!("{n} names are bound but the value has {got}")).at(stmt.span.clone(), "count mismatch").with_help("several names take the results of a block that returns as many values"));
                        names.iter().for_each(|n| self.bind(scope, n, None));
                    }
                }
            }
            StmtKind::Output { name, value } => {
                if scope.in_block {
                    self.diags.push(Diagnostic::error("`output` belongs in a model").at(stmt.span.clone(), "inside a block").with_help("a block hands results back with `return`"));
                    return;
                }
                let id = if let Some(value) = value {
                    let mut ctx = StmtCtx::statement(scope, &name.name);
                    let result = self.expr(value, scope, &mut ctx, true);
                    let id = match result {
                        Ok(Value::Tensor(id)) => Some(id),
                        Ok(other) => {
                            self.not_a_tensor(&other, value.span.clone());
                            None
                        }
                        Err(Poisoned) => None,
                    };
                    self.bind(scope, name, id.map(Value::Tensor));
                    id
                } else {
                    match scope.names.get(&name.name) {
                        Some(Binding { value: Some(Value::Tensor(id)), .. }) => Some(*id),
                        Some(Binding { value: None, .. }) => None,
                        Some(Binding { value: Some(other), .. }) => {
                            let other = other.clone();
                            self.not_a_tensor(&other, name.span.clone());
                            None
                        }
                        None => {
                            self.undefined(&name.name, name.span.clone(), scope);
                            None
                        }
                    }
                };
                if let Some(id) = id {
                    if self.graph.outputs.iter().any(|(n, _)| *n == name.name) {
                        self.diags.push(Diagnostic::error(format!("`{}` is marked as an output twice", name.name)).at(name.span.clone(), "again here"));
                    } else {
                        self.graph.outputs.push((name.name.clone(), id));
                    }
                }
            }
        }
    }

    fn not_a_tensor(&mut self, v: &Value, span: Span) -> Poisoned {
        let what = match v {
            Value::Const(c) => format!("a constant ({})", c.kind_name()),
            Value::Multi(vs) => format!("{} values", vs.len()),
            Value::Tensor(_) => "a tensor".to_string(),
        };
        self.error(Diagnostic::error(format!("expected a tensor, found {what}")).at(span, "not a tensor"))
    }

    fn undefined(&mut self, name: &str, span: Span, scope: &Scope) -> Poisoned {
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

    fn too_large(&mut self, span: Span) -> Poisoned {
        if self.diags.iter().any(|d| d.message.starts_with("the model expands to more than")) {
            return Poisoned;
        }
        self.error(
            Diagnostic::error(format!("the model expands to more than {MAX_NODES} nodes"))
                .at(span, "while expanding this")
                .with_help("blocks calling blocks multiply; check for a block that calls another several times in a long chain"),
        )
    }

    fn make_param(&mut self, name: String, ty: TensorType, span: Span) -> Result<NodeId, Poisoned> {
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
    fn inner_name(&self, ctx: &StmtCtx, what: &str) -> String {
        format!("{}.{what}", ctx.param_base)
    }

    fn expr(&mut self, e: &'a Expr, scope: &mut Scope, ctx: &mut StmtCtx, root: bool) -> Eval {
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

    fn binary(&mut self, op: BinOp, a: (Value, Span), b: (Value, Span), span: Span, ctx: &mut StmtCtx, root: bool) -> Eval {
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

    fn const_arith(&mut self, op: BinOp, x: &Const, y: &Const, span: Span) -> Eval {
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

    fn scalar(&mut self, v: f64, dtype: DType, span: Span, ctx: &StmtCtx) -> NodeId {
        let dtype = if dtype.is_float() { dtype } else { DType::F32 };
        let t = Tensor::from_f32(dtype, vec![], vec![v as f32]).expect("a scalar has one element");
        let name = self.inner_name(ctx, "const");
        self.graph.add(Node { name, kind: NodeKind::Const(t), ty: TensorType::new(dtype, vec![]), span: Some(span), tile: None, kernel: None }, &[])
    }

    fn call(&mut self, callee: &'a Ident, args: &'a [Arg], span: Span, scope: &mut Scope, ctx: &mut StmtCtx, root: bool) -> Eval {
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
    fn apply_op(&mut self, op_name: &str, tensors: Vec<(NodeId, Span)>, keywords: Vec<(String, Const, Span)>, span: Span, ctx: &mut StmtCtx, root: bool) -> Eval {
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

    #[allow(clippy::too_many_arguments)]
    fn block_call(&mut self, block: &'a Block, callee: &Ident, args: &'a [Arg], span: Span, scope: &mut Scope, ctx: &mut StmtCtx, root: bool) -> Eval {
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

fn valid_param_prefix(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') && !s.starts_with('.') && !s.ends_with('.') && !s.contains("..")
}

/// The candidate closest to `name` by edit distance, if it is close enough to be a typo.
fn suggest<'s>(name: &str, candidates: impl Iterator<Item = &'s str>) -> Option<&'s str> {
    let limit = (name.len() / 3).max(1);
    candidates.map(|c| (edit_distance(name, c), c)).filter(|(d, _)| *d <= limit).min().map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
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
