//! Reads the IR text that `print` writes, so that filetests can state a pass's input and
//! expected output as IR. Ops are rebuilt through the same `Op::build` the `.nn` front end
//! uses, and every declared type is checked against the op's shape rule.

use super::{Graph, Layout, Node, NodeKind, TensorType};
use crate::ops::{CallArgs, Const, Op, Operand};
use logos::Logos;
use nnc_runtime::{DType, Tensor};

#[derive(Logos, Clone, Debug, PartialEq)]
#[logos(skip r"[ \t\r]+")]
#[logos(skip(r"//[^\n]*", allow_greedy = true))]
enum Tok {
    #[regex(r"%[A-Za-z0-9_.]+", |l| l.slice()[1..].to_string())]
    Value(String),
    #[regex(r"[A-Za-z_][A-Za-z0-9_.]*", |l| l.slice().to_string())]
    Word(String),
    #[regex(r"-?[0-9]+", |l| l.slice().parse::<i64>().ok(), priority = 3)]
    Int(i64),
    #[regex(r"-?[0-9]+\.[0-9]*([eE][+-]?[0-9]+)?|-?[0-9]+[eE][+-]?[0-9]+", |l| l.slice().parse::<f64>().ok())]
    Float(f64),
    #[regex(r#""([^"\\\n]|\\.)*""#, |l| { let s = l.slice(); s[1..s.len() - 1].replace("\\\"", "\"").replace("\\\\", "\\") })]
    Str(String),
    #[token("\n")]
    Newline,
    #[token("=")]
    Eq,
    #[token(":")]
    Colon,
    #[token(",")]
    Comma,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("<")]
    Lt,
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

type PResult<T> = Result<T, String>;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }
    fn line(&self) -> usize {
        self.toks.get(self.pos).or(self.toks.last()).map_or(1, |(_, l)| *l)
    }
    fn err<T>(&self, msg: impl std::fmt::Display) -> PResult<T> {
        Err(format!("line {}: {msg}", self.line()))
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }
    fn expect(&mut self, want: Tok) -> PResult<()> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            other => {
                self.pos -= 1;
                self.err(format!("expected {want:?}, found {other:?}"))
            }
        }
    }
    fn word(&mut self) -> PResult<String> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w),
            other => {
                self.pos -= 1;
                self.err(format!("expected a word, found {other:?}"))
            }
        }
    }
    fn value(&mut self) -> PResult<String> {
        match self.next() {
            Some(Tok::Value(v)) => Ok(v),
            other => {
                self.pos -= 1;
                self.err(format!("expected a %value, found {other:?}"))
            }
        }
    }
    fn skip_newlines(&mut self) {
        while self.peek() == Some(&Tok::Newline) {
            self.pos += 1;
        }
    }

    fn constant(&mut self) -> PResult<Const> {
        match self.next() {
            Some(Tok::Int(v)) => Ok(Const::Int(v)),
            Some(Tok::Float(v)) => Ok(Const::Float(v)),
            Some(Tok::Str(s)) => Ok(Const::Str(s)),
            Some(Tok::Word(w)) if w == "true" || w == "false" => Ok(Const::Bool(w == "true")),
            Some(Tok::Word(w)) if w == "inf" || w == "NaN" => Ok(Const::Float(if w == "inf" { f64::INFINITY } else { f64::NAN })),
            Some(Tok::LBracket) => {
                let mut items = Vec::new();
                while self.peek() != Some(&Tok::RBracket) {
                    items.push(self.constant()?);
                    if self.peek() == Some(&Tok::Comma) {
                        self.pos += 1;
                    }
                }
                self.expect(Tok::RBracket)?;
                Ok(Const::List(items))
            }
            other => {
                self.pos -= 1;
                self.err(format!("expected a constant, found {other:?}"))
            }
        }
    }

    fn ty(&mut self) -> PResult<TensorType> {
        let dtype_name = self.word()?;
        let dtype = DType::from_name(&dtype_name).ok_or_else(|| format!("line {}: unknown dtype `{dtype_name}`", self.line()))?;
        let Const::List(dims) = self.constant()? else { return self.err("expected a shape list") };
        let shape = dims
            .iter()
            .map(|d| match d {
                Const::Int(v) if *v >= 1 => Ok(*v as usize),
                other => Err(format!("line {}: bad dimension `{other}`", self.line())),
            })
            .collect::<PResult<Vec<usize>>>()?;
        let mut layout = Layout::RowMajor;
        if let Some(Tok::Word(w)) = self.peek() {
            if let Some(l) = Layout::from_name(w) {
                if shape.len() != 4 {
                    return self.err(format!("the {w} layout needs rank 4"));
                }
                layout = l;
                self.pos += 1;
            }
        }
        Ok(TensorType { dtype, shape, layout })
    }
}

/// Parse IR text into a graph. Errors name the line.
pub fn parse_graph(text: &str) -> Result<Graph, String> {
    let mut toks = Vec::new();
    let mut lexer = Tok::lexer(text);
    while let Some(t) = lexer.next() {
        let line = text[..lexer.span().start].matches('\n').count() + 1;
        match t {
            Ok(t) => toks.push((t, line)),
            Err(()) => return Err(format!("line {line}: unexpected `{}`", lexer.slice())),
        }
    }
    let mut p = Parser { toks, pos: 0 };
    p.skip_newlines();
    if p.word()? != "graph" {
        return p.err("expected `graph NAME {`");
    }
    let mut graph = Graph::new(p.word()?);
    p.expect(Tok::LBrace)?;
    let mut inputs: Vec<(usize, super::NodeId)> = Vec::new();
    loop {
        p.skip_newlines();
        match p.peek() {
            Some(Tok::RBrace) => break,
            Some(Tok::Word(w)) if w == "output" => {
                p.pos += 1;
                let name = p.word()?;
                p.expect(Tok::Eq)?;
                let v = p.value()?;
                let id = graph.by_name(&v).ok_or_else(|| format!("line {}: output of undefined value %{v}", p.line()))?;
                graph.outputs.push((name, id));
                continue;
            }
            _ => {}
        }
        let name = p.value()?;
        if graph.by_name(&name).is_some() {
            return p.err(format!("%{name} is defined twice"));
        }
        p.expect(Tok::Eq)?;
        let what = p.word()?;
        let (kind, operands, args) = match what.as_str() {
            "input" => {
                let Const::Int(i) = p.constant()? else { return p.err("expected an input index") };
                (NodeKind::Input { index: i as usize }, Vec::new(), None)
            }
            "param" => (NodeKind::Param, Vec::new(), None),
            "const" => {
                if p.peek() == Some(&Tok::Lt) {
                    return p.err("this constant was elided when printed (`const <N values>`); filetests need constants of at most 16 values");
                }
                let values = match p.constant()? {
                    Const::Int(v) => vec![v as f32],
                    Const::Float(v) => vec![v as f32],
                    Const::List(items) => items.iter().map(|c| if let Const::Int(v) = c { *v as f32 } else if let Const::Float(v) = c { *v as f32 } else { f32::NAN }).collect(),
                    other => return p.err(format!("bad constant `{other}`")),
                };
                (NodeKind::Const(Tensor::f32(vec![values.len()], values)), Vec::new(), None)
            }
            op => {
                p.expect(Tok::LParen)?;
                let mut operands = Vec::new();
                while p.peek() != Some(&Tok::RParen) {
                    let v = p.value()?;
                    operands.push(graph.by_name(&v).ok_or_else(|| format!("line {}: use of undefined value %{v}", p.line()))?);
                    if p.peek() == Some(&Tok::Comma) {
                        p.pos += 1;
                    }
                }
                p.expect(Tok::RParen)?;
                let mut keywords = Vec::new();
                while let Some(Tok::Word(_)) = p.peek() {
                    let key = p.word()?;
                    p.expect(Tok::Eq)?;
                    keywords.push((key, p.constant()?));
                }
                (NodeKind::Param, operands, Some((op.to_string(), keywords)))
            }
        };
        p.expect(Tok::Colon)?;
        let ty = p.ty()?;
        let line = p.line();
        let (mut tile, mut kernel) = (None, None);
        let kind = match (kind, args) {
            (NodeKind::Const(t), None) => {
                if t.len() != ty.numel() {
                    return Err(format!("line {line}: constant has {} values but type {ty}", t.len()));
                }
                let values = t.to_f32_vec();
                let integer = |lo: f32, hi: f32| -> Result<(), String> {
                    match values.iter().find(|v| v.fract() != 0.0 || **v < lo || **v > hi) {
                        Some(v) => Err(format!("line {line}: {v} is not a value of type {}", ty.dtype)),
                        None => Ok(()),
                    }
                };
                let tensor = match ty.dtype {
                    nnc_runtime::DType::I8 => {
                        integer(-128.0, 127.0)?;
                        Tensor::from_i8(ty.shape.clone(), values.iter().map(|&v| v as i8).collect())
                    }
                    nnc_runtime::DType::I32 => {
                        integer(-2_147_483_648.0, 2_147_483_520.0)?;
                        Tensor::from_i32(ty.shape.clone(), values.iter().map(|&v| v as i32).collect())
                    }
                    _ => Tensor::from_f32(ty.dtype, ty.shape.clone(), values),
                };
                NodeKind::Const(tensor.map_err(|e| format!("line {line}: {e}"))?)
            }
            (k, None) => k,
            (_, Some((op_name, keywords))) => {
                let op_name: &'static str = crate::ops::OP_NAMES.iter().chain(crate::ops::IR_ONLY_OP_NAMES).copied().find(|n| *n == op_name).ok_or_else(|| format!("line {line}: unknown op `{op_name}`"))?;
                let ops = operands.iter().map(|&o| Operand { ty: graph.node(o).ty.clone(), span: 0..0 }).collect();
                let mut args = CallArgs::new(op_name, ops, 0..0);
                for (k, c) in keywords {
                    // The schedule, not an attribute of the op.
                    if k == "tile" {
                        let Const::Str(t) = c else { return Err(format!("line {line}: `tile` is a string")) };
                        tile = Some(t.parse().map_err(|e| format!("line {line}: {e}"))?);
                        continue;
                    }
                    // A string: the kernel plan. (Pooling's window, `kernel=[kh, kw]`, is a list.)
                    if let (true, Const::Str(name)) = (k == "kernel", &c) {
                        let names = || crate::kernel_plan::Kernel::ALL.map(|k| k.name()).join(", ");
                        kernel = Some(crate::kernel_plan::Kernel::from_name(name).ok_or_else(|| format!("line {line}: unknown kernel `{name}` (one of {})", names()))?);
                        continue;
                    }
                    args.push_keyword(k, c, 0..0).map_err(|e| format!("line {line}: {}", e.message))?;
                }
                let built = Op::build(op_name, &mut args).expect("the name is a known op").map_err(|e| format!("line {line}: {}", e.message))?;
                if !built.implicit.is_empty() {
                    return Err(format!("line {line}: {op_name} is missing its parameter operands"));
                }
                let types: Vec<&TensorType> = operands.iter().map(|&o| &graph.node(o).ty).collect();
                let inferred = built.op.infer(&types).map_err(|e| format!("line {line}: {}", e.message))?;
                if inferred != ty {
                    return Err(format!("line {line}: declared type {ty} but {op_name} infers {inferred}"));
                }
                NodeKind::Op(built.op)
            }
        };
        let index = if let NodeKind::Input { index } = kind { Some(index) } else { None };
        let id = graph.add(Node { name, kind, ty, span: None, tile, kernel }, &operands);
        if let Some(i) = index {
            inputs.push((i, id));
        }
    }
    inputs.sort();
    for (expected, (i, id)) in inputs.into_iter().enumerate() {
        if i != expected {
            return Err(format!("inputs must be numbered 0, 1, ...; missing input {expected}"));
        }
        graph.inputs.push(id);
    }
    Ok(graph)
}
