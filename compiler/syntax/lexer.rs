//! Tokens of the `.nn` language (logos) and the layer that makes statements line-based.
//!
//! logos produces raw tokens; [`Lexer`] then decides which newlines end a statement: none
//! inside `(...)` or `[...]`, and never two terminators in a row. It also bounds bracket
//! nesting and statement length, so that no input can build an AST deep enough to overflow
//! the stack later on.

use logos::Logos;
use std::fmt;

pub type Span = std::ops::Range<usize>;

/// Deepest bracket nesting accepted. Real models nest a handful of levels.
pub const MAX_NESTING: usize = 64;
/// Most tokens accepted in one statement; bounds expression depth (e.g. `- - - ... x`).
pub const MAX_STATEMENT_TOKENS: usize = 4096;

#[derive(Logos, Clone, Debug, PartialEq)]
#[logos(skip r"[ \t\r\f]+")]
#[logos(skip(r"#[^\n]*", allow_greedy = true))]
pub enum Token {
    #[token("model")]
    Model,
    #[token("block")]
    Block,
    #[token("input")]
    Input,
    #[token("output")]
    Output,
    #[token("param")]
    Param,
    #[token("return")]
    Return,
    #[token("true")]
    True,
    #[token("false")]
    False,
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice().to_string())]
    Ident(String),
    #[regex(r"[0-9]+", |lex| lex.slice().to_string(), priority = 3)]
    Int(String),
    #[regex(r"[0-9]+\.[0-9]*([eE][+-]?[0-9]+)?", |lex| lex.slice().to_string())]
    #[regex(r"[0-9]+[eE][+-]?[0-9]+", |lex| lex.slice().to_string())]
    Float(String),
    #[regex(r#""([^"\\\n]|\\.)*""#, |lex| lex.slice().to_string())]
    Str(String),
    #[token("\n")]
    Newline,
    #[token(";")]
    Semi,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token(",")]
    Comma,
    #[token("=")]
    Eq,
    #[token(":")]
    Colon,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("@")]
    At,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Token::Model => "`model`",
            Token::Block => "`block`",
            Token::Input => "`input`",
            Token::Output => "`output`",
            Token::Param => "`param`",
            Token::Return => "`return`",
            Token::True => "`true`",
            Token::False => "`false`",
            Token::Ident(s) => return write!(f, "identifier `{s}`"),
            Token::Int(s) | Token::Float(s) => return write!(f, "number `{s}`"),
            Token::Str(_) => "string",
            Token::Newline => "end of line",
            Token::Semi => "`;`",
            Token::LBrace => "`{`",
            Token::RBrace => "`}`",
            Token::LParen => "`(`",
            Token::RParen => "`)`",
            Token::LBracket => "`[`",
            Token::RBracket => "`]`",
            Token::Comma => "`,`",
            Token::Eq => "`=`",
            Token::Colon => "`:`",
            Token::Plus => "`+`",
            Token::Minus => "`-`",
            Token::Star => "`*`",
            Token::Slash => "`/`",
            Token::At => "`@`",
        };
        f.write_str(s)
    }
}

/// A problem found while tokenizing. Lexing continues after all but [`LexErrorKind::TooDeep`]
/// and [`LexErrorKind::StatementTooLong`].
#[derive(Clone, Debug, PartialEq)]
pub struct LexError {
    pub kind: LexErrorKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LexErrorKind {
    UnexpectedChar(char),
    UnterminatedString,
    TooDeep,
    StatementTooLong,
    UnmatchedClose(char),
}

impl fmt::Display for LexErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LexErrorKind::UnexpectedChar(c) => write!(f, "unexpected character {c:?}"),
            LexErrorKind::UnterminatedString => write!(f, "unterminated string"),
            LexErrorKind::TooDeep => write!(f, "brackets nest more than {MAX_NESTING} levels deep"),
            LexErrorKind::StatementTooLong => write!(f, "statement is longer than {MAX_STATEMENT_TOKENS} tokens"),
            LexErrorKind::UnmatchedClose(c) => write!(f, "unmatched `{c}`"),
        }
    }
}

/// Token stream in the `(start, token, end)` form lalrpop's external lexer interface takes.
/// Errors are collected in [`Lexer::errors`] rather than handed to the parser, so that one bad
/// character does not stop the parse.
pub struct Lexer<'src> {
    inner: logos::SpannedIter<'src, Token>,
    src: &'src str,
    brackets: Vec<char>,
    previous: Option<Token>,
    statement_tokens: usize,
    stopped: bool,
    pub errors: Vec<LexError>,
}

impl<'src> Lexer<'src> {
    pub fn new(src: &'src str) -> Self {
        Lexer {
            inner: Token::lexer(src).spanned(),
            src,
            brackets: Vec::new(),
            previous: None,
            statement_tokens: 0,
            stopped: false,
            errors: Vec::new(),
        }
    }

    /// True when lexing stopped early; the parser's complaints about the truncated input are
    /// then noise.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    fn stop(&mut self, kind: LexErrorKind, span: Span) -> Option<(usize, Token, usize)> {
        self.errors.push(LexError { kind, span });
        self.stopped = true;
        None
    }
}

fn is_terminator(t: &Option<Token>) -> bool {
    matches!(t, None | Some(Token::Newline | Token::Semi | Token::LBrace | Token::RBrace))
}

impl Iterator for Lexer<'_> {
    type Item = (usize, Token, usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped {
            return None;
        }
        loop {
            let (result, span) = self.inner.next()?;
            let token = match result {
                Ok(t) => t,
                Err(()) => {
                    let c = self.src[span.start..].chars().next().unwrap_or('\u{fffd}');
                    let kind = if c == '"' { LexErrorKind::UnterminatedString } else { LexErrorKind::UnexpectedChar(c) };
                    let span = if c == '"' { span.start..self.src[span.start..].find('\n').map_or(self.src.len(), |i| span.start + i) } else { span };
                    self.errors.push(LexError { kind, span: span.clone() });
                    if c == '"' {
                        // Skip to the end of the line so the rest of the string is not re-lexed.
                        let consumed = self.inner.span().end;
                        self.inner.bump(span.end.saturating_sub(consumed));
                    }
                    continue;
                }
            };
            match token {
                Token::LParen | Token::LBracket => {
                    if self.brackets.len() >= MAX_NESTING {
                        return self.stop(LexErrorKind::TooDeep, span);
                    }
                    self.brackets.push(if token == Token::LParen { ')' } else { ']' });
                }
                Token::RParen | Token::RBracket => {
                    let close = if token == Token::RParen { ')' } else { ']' };
                    if self.brackets.last() == Some(&close) {
                        self.brackets.pop();
                    } else if self.brackets.is_empty() {
                        self.errors.push(LexError { kind: LexErrorKind::UnmatchedClose(close), span });
                        continue;
                    } else {
                        // Mismatched kind: let the parser report it where it sees it.
                        self.brackets.pop();
                    }
                }
                Token::Newline if !self.brackets.is_empty() => continue,
                _ => {}
            }
            if matches!(token, Token::Newline | Token::Semi | Token::LBrace | Token::RBrace) {
                // An end of statement or a brace resets bracket tracking so that one unclosed
                // `(` cannot swallow the rest of the file.
                self.brackets.clear();
                self.statement_tokens = 0;
                if matches!(token, Token::Newline | Token::Semi) && is_terminator(&self.previous) {
                    continue;
                }
            } else {
                self.statement_tokens += 1;
                if self.statement_tokens > MAX_STATEMENT_TOKENS {
                    return self.stop(LexErrorKind::StatementTooLong, span);
                }
            }
            self.previous = Some(token.clone());
            return Some((span.start, token, span.end));
        }
    }
}

/// The value of a string literal token, with `\"` and `\\` unescaped.
/// Returns `Err(offset)` of the first unknown escape.
pub fn unescape(lit: &str) -> Result<String, usize> {
    let body = &lit[1..lit.len() - 1];
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((_, c)) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((i, _)) => return Err(i),
                None => return Err(body.len()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Token> {
        Lexer::new(src).map(|(_, t, _)| t).collect()
    }

    #[test]
    fn newlines_inside_brackets_are_ignored() {
        let toks = kinds("a = f(x,\n  y)\n\n\nb = 1");
        let newlines = toks.iter().filter(|t| **t == Token::Newline).count();
        assert_eq!(newlines, 1);
    }

    #[test]
    fn numbers_and_comments() {
        assert_eq!(
            kinds("1 2. 0.5 1e-5 # comment\n"),
            vec![
                Token::Int("1".into()),
                Token::Float("2.".into()),
                Token::Float("0.5".into()),
                Token::Float("1e-5".into()),
                Token::Newline
            ]
        );
    }

    #[test]
    fn deep_nesting_stops() {
        let src = "(".repeat(100_000);
        let mut lx = Lexer::new(&src);
        let n = lx.by_ref().count();
        assert_eq!(n, MAX_NESTING);
        assert_eq!(lx.errors[0].kind, LexErrorKind::TooDeep);
    }

    #[test]
    fn unescape_strings() {
        assert_eq!(unescape(r#""a\"b\\c""#), Ok("a\"b\\c".to_string()));
        assert!(unescape(r#""\n""#).is_err());
    }
}
