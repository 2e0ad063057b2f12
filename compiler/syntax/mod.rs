//! Source text to AST: the logos lexer, the lalrpop parser and their diagnostics.

pub mod ast;
pub mod lexer;

#[allow(clippy::all, unused_parens, dead_code, unused_imports)]
mod grammar {
    include!(concat!(env!("OUT_DIR"), "/nn.rs"));
}

use crate::diagnostics::Diagnostic;
use lalrpop_util::ParseError;
use lexer::{LexError, Lexer, Token};

pub fn binary(op: ast::BinOp, lhs: ast::Expr, rhs: ast::Expr, span: lexer::Span) -> ast::Expr {
    ast::Expr { kind: ast::ExprKind::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span }
}

/// Parse a whole file. Always returns an AST (possibly with `Error` statements) together with
/// every lexical and syntax error found; the caller stops if there are any.
pub fn parse(src: &str) -> (ast::File, Vec<Diagnostic>) {
    let mut lexer = Lexer::new(src);
    let mut recovered = Vec::new();
    let result = grammar::FileParser::new().parse(&mut recovered, &mut lexer);
    let mut diags: Vec<Diagnostic> = lexer.errors.iter().map(lex_diagnostic).collect();
    let stopped = lexer.stopped();
    let mut push = |e: ParseError<usize, Token, LexError>| {
        // After the lexer gave up, the parser only sees a truncated file; its complaints about
        // that would bury the real error.
        if !stopped {
            diags.push(parse_diagnostic(e, src.len()));
        }
    };
    for r in recovered {
        push(r.error);
    }
    let file = match result {
        Ok(f) => f,
        Err(e) => {
            push(e);
            ast::File { items: Vec::new() }
        }
    };
    diags.sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
    (file, diags)
}

fn lex_diagnostic(e: &LexError) -> Diagnostic {
    use lexer::LexErrorKind as K;
    let d = Diagnostic::error(e.kind.to_string()).at(e.span.clone(), "here");
    match e.kind {
        K::TooDeep => d.with_help("bind intermediate results to names instead of nesting calls this deeply"),
        K::StatementTooLong => d.with_help("split the statement into several, binding intermediate results to names"),
        K::UnterminatedString => d.with_help("close the string with `\"` on the same line"),
        K::UnexpectedChar(_) | K::UnmatchedClose(_) => d,
    }
}

fn describe_expected(expected: &[String]) -> String {
    let mut names: Vec<String> = expected
        .iter()
        .map(|e| match e.as_str() {
            "IDENT" => "identifier".to_string(),
            "INT" | "FLOAT" => "number".to_string(),
            "STR" => "string".to_string(),
            "NEWLINE" => "end of line".to_string(),
            other => format!("`{}`", other.trim_matches('"')),
        })
        .collect();
    names.dedup();
    match names.len() {
        0 => String::new(),
        1 => format!("expected {}", names[0]),
        n if n <= 6 => format!("expected one of {}", names.join(", ")),
        _ => format!("expected one of {}, ...", names[..6].join(", ")),
    }
}

fn parse_diagnostic(e: ParseError<usize, Token, LexError>, eof: usize) -> Diagnostic {
    match e {
        ParseError::UnrecognizedToken { token: (l, t, r), expected } => {
            let d = Diagnostic::error(format!("unexpected {t}")).at(l..r, describe_expected(&expected));
            match t {
                Token::Return => d.with_help("`return` ends a block: it must be the block's last statement, and models have none"),
                Token::Input | Token::Output | Token::Param | Token::Model | Token::Block => {
                    d.with_help(format!("{t} starts a statement; end the previous statement with a newline or `;`"))
                }
                _ => d,
            }
        }
        ParseError::UnrecognizedEof { location, expected } => {
            Diagnostic::error("unexpected end of file").at(location.min(eof)..location.min(eof), describe_expected(&expected))
        }
        ParseError::ExtraToken { token: (l, t, r) } => Diagnostic::error(format!("unexpected {t}")).at(l..r, "not expected here"),
        ParseError::InvalidToken { location } => Diagnostic::error("invalid token").at(location..location + 1, "here"),
        ParseError::User { error } => lex_diagnostic(&error),
    }
}
