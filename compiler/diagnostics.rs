//! Diagnostics: what went wrong, where in the source, and how to fix it; rendered by ariadne.

use ariadne::{Config, IndexType, Label, Report, ReportKind, Source};
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One message for the user. A diagnostic without a span (e.g. about a weights file) renders
/// as a plain `error: ...` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub span: Option<Range<usize>>,
    pub label: String,
    pub secondary: Vec<(Range<usize>, String)>,
    pub notes: Vec<String>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Error, message: message.into(), span: None, label: String::new(), secondary: Vec::new(), notes: Vec::new(), help: None }
    }

    pub fn warning(message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(message) }
    }

    /// The primary location, with a short label under the caret.
    pub fn at(mut self, span: Range<usize>, label: impl Into<String>) -> Diagnostic {
        self.span = Some(span);
        self.label = label.into();
        self
    }

    pub fn also(mut self, span: Range<usize>, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Render diagnostics against the source they point into. `color` is off for files, pipes and
/// tests so output is stable.
pub fn render(diags: &[Diagnostic], file_name: &str, src: &str, color: bool) -> String {
    let mut out = Vec::new();
    for d in diags {
        render_one(d, file_name, src, color, &mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn render_one(d: &Diagnostic, file_name: &str, src: &str, color: bool, out: &mut Vec<u8>) {
    let kind = match d.severity {
        Severity::Error => ReportKind::Error,
        Severity::Warning => ReportKind::Warning,
    };
    let Some(span) = d.span.clone() else {
        let word = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out.extend_from_slice(format!("{word}: {}\n", d.message).as_bytes());
        for n in &d.notes {
            out.extend_from_slice(format!("  = note: {n}\n").as_bytes());
        }
        if let Some(h) = &d.help {
            out.extend_from_slice(format!("  = help: {h}\n").as_bytes());
        }
        return;
    };
    let clamp = |r: Range<usize>| r.start.min(src.len())..r.end.min(src.len()).max(r.start.min(src.len()));
    let span = clamp(span);
    let config = Config::default().with_color(color).with_index_type(IndexType::Byte);
    let mut report = Report::build(kind, (file_name, span.clone())).with_config(config).with_message(&d.message);
    let mut primary = Label::new((file_name, span)).with_order(0);
    if !d.label.is_empty() {
        primary = primary.with_message(&d.label);
    }
    report = report.with_label(primary);
    for (i, (s, l)) in d.secondary.iter().enumerate() {
        report = report.with_label(Label::new((file_name, clamp(s.clone()))).with_message(l).with_order(i as i32 + 1));
    }
    for n in &d.notes {
        report = report.with_note(n);
    }
    if let Some(h) = &d.help {
        report = report.with_help(h);
    }
    // Writing into a Vec cannot fail.
    let _ = report.finish().write((file_name, Source::from(src)), &mut *out);
}
