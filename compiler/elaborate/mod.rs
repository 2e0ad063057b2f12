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

mod block;
mod call;
mod expr;
mod names;

use names::{suggest, valid_param_prefix};


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
}
