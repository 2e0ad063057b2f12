//! The arguments of one op call, as both the `.nn` elaborator and the IR text parser see them:
//! tensor operands first, then keyword attributes holding compile-time constants.
//!
//! Op builders read attributes through the typed getters here, which produce the diagnostics
//! ("conv2d: `stride` must be a positive integer or a list of 2") and track which keywords were
//! used, so that a misspelt keyword is reported rather than ignored.

use crate::ir::TensorType;
use crate::syntax::lexer::Span;
use std::fmt;

/// A compile-time constant argument.
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    List(Vec<Const>),
}

impl Const {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Const::Int(_) => "an integer",
            Const::Float(_) => "a number",
            Const::Str(_) => "a string",
            Const::Bool(_) => "a boolean",
            Const::List(_) => "a list",
        }
    }
}

impl fmt::Display for Const {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Const::Int(v) => write!(f, "{v}"),
            Const::Float(v) => write!(f, "{}", format_float(*v)),
            Const::Str(s) => write!(f, "\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
            Const::Bool(b) => write!(f, "{b}"),
            Const::List(items) => {
                f.write_str("[")?;
                for (i, c) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Shortest text that reads back as the same f64, always with a `.` or exponent so it reads
/// back as a float.
pub fn format_float(v: f64) -> String {
    let s = format!("{v:?}");
    if s.contains(['.', 'e', 'E', 'n', 'i']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// An error from an op's builder or shape rule. `span` is set when the problem is one
/// argument; otherwise the caller points at the whole call.
#[derive(Clone, Debug, PartialEq)]
pub struct OpError {
    pub message: String,
    pub span: Option<Span>,
    pub help: Option<String>,
}

impl OpError {
    pub fn new(message: impl Into<String>) -> OpError {
        OpError { message: message.into(), span: None, help: None }
    }
    pub fn at(mut self, span: Span) -> OpError {
        self.span = Some(span);
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> OpError {
        self.help = Some(help.into());
        self
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// A tensor operand: its type and where it was written.
#[derive(Clone, Debug)]
pub struct Operand {
    pub ty: TensorType,
    pub span: Span,
}

pub struct Keyword {
    pub name: String,
    pub value: Const,
    pub span: Span,
    used: bool,
}

/// One call's arguments.
pub struct CallArgs {
    pub op: &'static str,
    pub operands: Vec<Operand>,
    keywords: Vec<Keyword>,
    pub span: Span,
}

impl CallArgs {
    pub fn new(op: &'static str, operands: Vec<Operand>, span: Span) -> CallArgs {
        CallArgs { op, operands, keywords: Vec::new(), span }
    }

    pub fn push_keyword(&mut self, name: String, value: Const, span: Span) -> OpResult<()> {
        if self.keywords.iter().any(|k| k.name == name) {
            return Err(OpError::new(format!("{}: keyword `{name}` is given twice", self.op)).at(span));
        }
        self.keywords.push(Keyword { name, value, span, used: false });
        Ok(())
    }

    /// Take a keyword's value, marking it used.
    /// A keyword's value, without marking it used.
    pub fn peek(&self, name: &str) -> Option<&Const> {
        self.keywords.iter().find(|k| k.name == name).map(|k| &k.value)
    }

    pub fn take(&mut self, name: &str) -> Option<(Const, Span)> {
        let k = self.keywords.iter_mut().find(|k| k.name == name)?;
        k.used = true;
        Some((k.value.clone(), k.span.clone()))
    }

    fn type_error(&self, name: &str, want: &str, got: &Const, span: Span) -> OpError {
        OpError::new(format!("{}: `{name}` must be {want}, not {} (`{got}`)", self.op, got.kind_name())).at(span)
    }

    pub fn int(&mut self, name: &str) -> OpResult<Option<i64>> {
        match self.take(name) {
            None => Ok(None),
            Some((Const::Int(v), _)) => Ok(Some(v)),
            Some((c, span)) => Err(self.type_error(name, "an integer", &c, span)),
        }
    }

    /// A strictly positive integer that fits in memory-size arithmetic.
    pub fn positive(&mut self, name: &str) -> OpResult<Option<usize>> {
        let span = self.keyword_span(name);
        match self.int(name)? {
            None => Ok(None),
            Some(v) if (1..=(1 << 40)).contains(&v) => Ok(Some(v as usize)),
            Some(v) => Err(OpError::new(format!("{}: `{name}` must be a positive integer, not {v}", self.op)).at(span.unwrap_or(self.span.clone()))),
        }
    }

    pub fn required_positive(&mut self, name: &str, why: &str) -> OpResult<usize> {
        match self.positive(name)? {
            Some(v) => Ok(v),
            None => Err(self.missing(name, why)),
        }
    }

    /// The error for a missing required keyword, pointing at a likely misspelling of it.
    pub fn missing(&self, name: &str, why: &str) -> OpError {
        let typo = self.keywords.iter().find(|k| !k.used && close_spelling(&k.name, name));
        match typo {
            Some(k) => OpError::new(format!("{}: unknown keyword argument `{}`", self.op, k.name)).at(k.span.clone()).help(format!("did you mean `{name}=`?")),
            None => OpError::new(format!("{}: missing `{name}=`", self.op)).at(self.span.clone()).help(why.to_string()),
        }
    }

    pub fn float(&mut self, name: &str) -> OpResult<Option<f64>> {
        match self.take(name) {
            None => Ok(None),
            Some((Const::Int(v), _)) => Ok(Some(v as f64)),
            Some((Const::Float(v), _)) => Ok(Some(v)),
            Some((c, span)) => Err(self.type_error(name, "a number", &c, span)),
        }
    }

    pub fn bool(&mut self, name: &str) -> OpResult<Option<bool>> {
        match self.take(name) {
            None => Ok(None),
            Some((Const::Bool(v), _)) => Ok(Some(v)),
            Some((c, span)) => Err(self.type_error(name, "`true` or `false`", &c, span)),
        }
    }

    /// An integer or a list of integers, as a list.
    pub fn int_list(&mut self, name: &str) -> OpResult<Option<(Vec<i64>, Span)>> {
        match self.take(name) {
            None => Ok(None),
            Some((Const::Int(v), span)) => Ok(Some((vec![v], span))),
            Some((Const::List(items), span)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in &items {
                    match item {
                        Const::Int(v) => out.push(*v),
                        other => return Err(self.type_error(name, "an integer or a list of integers", other, span)),
                    }
                }
                Ok(Some((out, span)))
            }
            Some((c, span)) => Err(self.type_error(name, "an integer or a list of integers", &c, span)),
        }
    }

    /// A per-spatial-axis pair of positive integers (`stride`, `kernel`, `dilation`): an int
    /// applies to both axes.
    pub fn pair(&mut self, name: &str, min: i64) -> OpResult<Option<[usize; 2]>> {
        let Some((v, span)) = self.int_list(name)? else { return Ok(None) };
        let pair = match v[..] {
            [a] => [a, a],
            [a, b] => [a, b],
            _ => return Err(OpError::new(format!("{}: `{name}` takes an integer or a list of 2, not {} values", self.op, v.len())).at(span)),
        };
        if pair.iter().any(|&x| x < min || x > (1 << 30)) {
            return Err(OpError::new(format!("{}: `{name}` values must be at least {min}, got {v:?}", self.op)).at(span));
        }
        Ok(Some([pair[0] as usize, pair[1] as usize]))
    }

    pub fn keyword_span(&self, name: &str) -> Option<Span> {
        self.keywords.iter().find(|k| k.name == name).map(|k| k.span.clone())
    }

    /// A call of `op` on the first `n` operands with every keyword not yet taken: how a
    /// composite op hands the rest of its arguments to an inner op.
    pub fn split_off(&mut self, op: &'static str, n: usize) -> CallArgs {
        let mut inner = CallArgs::new(op, self.operands[..n].to_vec(), self.span.clone());
        for k in self.keywords.iter_mut().filter(|k| !k.used) {
            k.used = true;
            inner.keywords.push(Keyword { name: k.name.clone(), value: k.value.clone(), span: k.span.clone(), used: false });
        }
        inner
    }

    /// Error for every keyword no getter asked for.
    pub fn finish(&self, accepted: &[&str]) -> OpResult<()> {
        if let Some(k) = self.keywords.iter().find(|k| !k.used) {
            let help = if accepted.is_empty() {
                format!("{} takes no keyword arguments", self.op)
            } else {
                format!("{} accepts {}", self.op, accepted.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "))
            };
            return Err(OpError::new(format!("{}: unknown keyword argument `{}`", self.op, k.name)).at(k.span.clone()).help(help));
        }
        Ok(())
    }

    /// Check the operand count is within `min..=max`.
    pub fn expect_operands(&self, min: usize, max: usize, what: &str) -> OpResult<()> {
        let n = self.operands.len();
        if n < min || n > max {
            let span = if n > max { self.operands[max].span.clone() } else { self.span.clone() };
            let count = if min == max { format!("{min}") } else { format!("{min} to {max}") };
            return Err(OpError::new(format!("{} takes {count} tensor argument{} ({what}), but {n} {} given", self.op, if max == 1 { "" } else { "s" }, if n == 1 { "was" } else { "were" })).at(span));
        }
        Ok(())
    }

    pub fn operand(&self, i: usize) -> &TensorType {
        &self.operands[i].ty
    }
}

/// Whether `a` is a plausible misspelling of `b`: one edit apart, or a prefix of it.
fn close_spelling(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let (short, long) = if a.len() <= b.len() { (&a, &b) } else { (&b, &a) };
    let prefix = short.iter().zip(long.iter()).take_while(|(x, y)| x == y).count();
    let suffix = short.iter().rev().zip(long.iter().rev()).take_while(|(x, y)| x == y).count();
    // One substitution (same length) or one insertion (length differs by one).
    prefix + suffix >= long.len() - 1 && a != b
}
