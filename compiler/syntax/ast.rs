//! The abstract syntax tree of a `.nn` file, exactly as written (no name resolution yet).

use super::lexer::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Model(Model),
    Block(Block),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: Ident,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub name: Ident,
    pub params: Vec<BlockParam>,
    pub body: Vec<Stmt>,
    pub returns: Vec<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BlockParam {
    pub name: Ident,
    pub default: Option<Expr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    Input { name: Ident, ty: TypeExpr },
    Param { name: Ident, ty: TypeExpr },
    /// `a = e` or `a, b = e`.
    Let { names: Vec<Ident>, value: Expr },
    /// `output x` or `output y = e`.
    Output { name: Ident, value: Option<Expr> },
    /// `return` inside a block but not as its last statement, kept for a clear diagnostic.
    MisplacedReturn,
    /// A statement the parser could not read; its error has been reported.
    Error,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TypeExpr {
    pub dtype: Ident,
    pub dims: Vec<Dim>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    /// A literal size; the text is kept so that out-of-range values get a diagnostic.
    Fixed(String, Span),
    Symbol(Ident),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    MatMul,
}

impl BinOp {
    /// Every operator of the language, so that callers can list them.
    pub const ALL: [BinOp; 5] = [BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div, BinOp::MatMul];

    /// The op that the operator is a spelling of (`+` is `add`).
    pub fn call_name(self) -> &'static str {
        match self {
            BinOp::Add => "add",
            BinOp::Sub => "sub",
            BinOp::Mul => "mul",
            BinOp::Div => "div",
            BinOp::MatMul => "matmul",
        }
    }

    /// The operator whose call form is `name(a, b)`, if `name` is one.
    pub fn from_call_name(name: &str) -> Option<BinOp> {
        BinOp::ALL.into_iter().find(|op| op.call_name() == name)
    }

    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::MatMul => "@",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Name(String),
    /// A number literal as written; `is_int` when it has no `.` or exponent.
    Number { text: String, is_int: bool },
    Str(String),
    Bool(bool),
    List(Vec<Expr>),
    Neg(Box<Expr>),
    Binary { op: BinOp, lhs: Box<Expr>, rhs: Box<Expr> },
    Call { callee: Ident, args: Vec<Arg> },
    /// An expression the parser could not read; its error has been reported.
    Error,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Positional(Expr),
    Keyword(Ident, Expr),
}
